//! Differential test of keywords, loops, lookups and filters: the project in
//! tests/fixtures/keywords (roles kw_loops, kw_lookups, kw_filters, kw_flags)
//! applied by the REAL `ansible-playbook` to one testbed host and by
//! `deployer` to another must leave the same files (content, mode, owner),
//! the same file on the host both delegate to, and report the same status
//! (changed / ok / skipped / failed) for every task, on a first and a second
//! run.
//!
//! Needs the testbed (`tests/testbed/up.sh 3`) and ansible-core with passlib
//! in `$DEPLOYER_ANSIBLE_BIN_DIR` or `/opt/deployer-ci/venv/bin`
//! (tests/testbed/install-deps.sh installs both); FAILS (never skips) when
//! either is missing.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{deployer, events, on_host, recap, repo, testbed_inventory};

/// No other test uses these paths.
const ROOT: &str = "/srv/diff-kw";
const ANSIBLE_HOST: &str = "tb1";
const DEPLOYER_HOST: &str = "tb2";
/// Both runs delegate one task to this host (each writes its own file).
const DELEGATE_HOST: &str = "tb3";
/// What the `env` lookup reads on the control machine.
const CONTROL_VAR: (&str, &str) = ("KW_CONTROL_VAR", "from-control");

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/keywords")
}

fn ansible_playbook() -> PathBuf {
    let dir = std::env::var_os("DEPLOYER_ANSIBLE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/deployer-ci/venv/bin"));
    let bin = dir.join("ansible-playbook");
    assert!(
        bin.is_file(),
        "{} not found: run tests/testbed/install-deps.sh (ansible-core and passlib)",
        bin.display()
    );
    bin
}

fn ansible_apply(home: &std::path::Path) -> String {
    let out = Command::new(ansible_playbook())
        .arg("-i")
        .arg(testbed_inventory())
        .arg("-l")
        .arg(ANSIBLE_HOST)
        .arg(fixture().join("site.yml"))
        .current_dir(fixture())
        .env("ANSIBLE_CONFIG", fixture().join("ansible.cfg"))
        .env("ANSIBLE_HOME", home.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env(CONTROL_VAR.0, CONTROL_VAR.1)
        .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run ansible-playbook");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ansible-playbook failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn deployer_apply() -> (serde_json::Value, Vec<serde_json::Value>) {
    let inv = testbed_inventory();
    let out = deployer(
        &fixture(),
        &[
            "apply",
            "site.yml",
            "-i",
            inv.to_str().expect("utf-8 path"),
            "-l",
            DEPLOYER_HOST,
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "deployer apply failed:\n{}", out.all());
    (
        recap(&out.stdout)["hosts"][DEPLOYER_HOST].clone(),
        events(&out.stdout),
    )
}

/// A task's status from its per-item statuses, as both tools count it.
fn overall(statuses: &[String]) -> String {
    for s in ["changed", "failed", "ok"] {
        if statuses.iter().any(|x| x == s) {
            return s.to_string();
        }
    }
    "skipped".to_string()
}

/// Task name → status from ansible-playbook's default output.
fn ansible_statuses(stdout: &str) -> BTreeMap<String, String> {
    let mut per_task: Vec<(String, Vec<String>)> = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("TASK [") {
            let name = rest
                .split("] ")
                .next()
                .unwrap_or(rest)
                .trim_end_matches(']');
            let name = name.split_once(" : ").map_or(name, |(_, n)| n);
            per_task.push((name.to_string(), Vec::new()));
            continue;
        }
        let status = if line.starts_with("changed: [") {
            "changed"
        } else if line.starts_with("ok: [") {
            "ok"
        } else if line.starts_with("skipping: [") {
            "skipped"
        } else if line.starts_with("fatal: [") || line.starts_with("failed: [") {
            "failed"
        } else {
            continue;
        };
        if let Some((_, s)) = per_task.last_mut() {
            s.push(status.to_string());
        }
    }
    per_task
        .into_iter()
        .map(|(n, s)| (n, overall(&s)))
        .collect()
}

/// Task name → status from deployer's JSON events.
fn deployer_statuses(events: &[serde_json::Value]) -> BTreeMap<String, String> {
    let mut per_task: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "task_result") {
        let name = e["task"].as_str().unwrap_or_default().to_string();
        let status = e["status"].as_str().unwrap_or_default().to_string();
        per_task.entry(name).or_default().push(status);
    }
    per_task
        .into_iter()
        .map(|(n, s)| (n, overall(&s)))
        .collect()
}

/// Every path under ROOT with type, mode, owner, group and content (these
/// are small text files: a content diff reads better than a hash).
fn tree(host: &str) -> BTreeMap<String, String> {
    let script = format!(
        "cd {ROOT} && find . -printf '%p\\t%y %m %u %g\\n' | sort && echo '--' && \
         find . -type f | sort | while read -r f; do printf '== %s\\n' \"$f\"; cat \"$f\"; done"
    );
    let out = on_host(host, &script);
    let (meta, contents) = out
        .split_once("--\n")
        .unwrap_or_else(|| panic!("cannot list {ROOT} on {host}:\n{out}"));
    let mut map = BTreeMap::new();
    for l in meta.lines() {
        let (p, m) = l.split_once('\t').expect("find line");
        map.insert(p.to_string(), m.to_string());
    }
    let mut current: Option<String> = None;
    for l in contents.split_inclusive('\n') {
        if let Some(p) = l.strip_prefix("== ") {
            current = Some(p.trim_end().to_string());
            continue;
        }
        if let Some(p) = &current
            && let Some(entry) = map.get_mut(p)
        {
            entry.push_str(if entry.contains('\n') { "" } else { "\n" });
            entry.push_str(l);
        }
    }
    map
}

fn compare_trees() {
    let a = tree(ANSIBLE_HOST);
    let d = tree(DEPLOYER_HOST);
    assert!(a.len() > 30, "too few paths written by ansible: {a:#?}");
    let mut diffs = Vec::new();
    for p in a.keys().chain(d.keys().filter(|p| !a.contains_key(*p))) {
        let (x, y) = (a.get(p), d.get(p));
        if x != y {
            diffs.push(format!("{p}\n  ansible:  {x:?}\n  deployer: {y:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} path(s) differ under {ROOT}:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    let delegated = |h: &str| {
        on_host(
            DELEGATE_HOST,
            &format!(
                "stat -c '%a %U' /srv/diff-kw-delegated-{h} && cat /srv/diff-kw-delegated-{h}"
            ),
        )
    };
    let (da, dd) = (delegated(ANSIBLE_HOST), delegated(DEPLOYER_HOST));
    assert!(
        da.contains("delegated by 2"),
        "ansible's delegated file: {da:?}"
    );
    assert_eq!(da, dd, "the file both delegate to {DELEGATE_HOST} differs");
}

fn compare_statuses(run: &str, ansible_out: &str, events: &[serde_json::Value]) {
    let a = ansible_statuses(ansible_out);
    let d = deployer_statuses(events);
    assert!(
        a.len() >= 24,
        "{run}: too few tasks parsed from ansible: {a:#?}"
    );
    let mut diffs = Vec::new();
    for (task, status) in &a {
        if d.get(task) != Some(status) {
            diffs.push(format!(
                "{task}: ansible {status}, deployer {:?}",
                d.get(task)
            ));
        }
    }
    for task in d.keys().filter(|t| !a.contains_key(*t)) {
        diffs.push(format!("{task}: only deployer ran it"));
    }
    assert!(
        diffs.is_empty(),
        "{run}: per-task status differs:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn keywords_loops_lookups_and_filters_match_ansible_playbook() {
    ansible_playbook();
    // The env lookup reads deployer's environment, inherited from this test.
    // SAFETY: set before this test starts any thread; every test of this
    // binary that reads it wants the same value.
    unsafe { std::env::set_var(CONTROL_VAR.0, CONTROL_VAR.1) };
    let home = tempfile::tempdir().expect("tempdir");
    for h in [ANSIBLE_HOST, DEPLOYER_HOST] {
        on_host(h, &format!("rm -rf {ROOT}"));
        on_host(DELEGATE_HOST, &format!("rm -f /srv/diff-kw-delegated-{h}"));
    }
    for run in ["first run", "second run"] {
        let (a, (d, ev)) = std::thread::scope(|s| {
            let a = s.spawn(|| ansible_apply(home.path()));
            let d = deployer_apply();
            (a.join().expect("ansible thread"), d)
        });
        compare_statuses(run, &a, &ev);
        compare_trees();
        assert_eq!(d["failed"].as_u64(), Some(0), "{run}: deployer recap {d}");
        assert_eq!(d["ignored"].as_u64(), Some(1), "{run}: deployer recap {d}");
    }
}

/// Bad input changes nothing: a `with_first_found` without a match, a lookup
/// of a missing file and a `delegate_to` outside the inventory fail with
/// the task's file and line before that task changes anything.
#[test]
fn failing_lookups_and_delegation_name_the_task() {
    let inv = testbed_inventory();
    let dir = common::project(&[
        (
            "site.yml",
            "- hosts: tb3\n  gather_facts: false\n  tasks:\n    - name: no match\n      ansible.builtin.copy:\n        src: \"{{ item }}\"\n        dest: /tmp/kw-never-written\n      with_first_found:\n        - nope-a.txt\n        - nope-b.txt\n",
        ),
        (
            "file.yml",
            "- hosts: tb3\n  gather_facts: false\n  tasks:\n    - name: missing file\n      ansible.builtin.copy:\n        content: \"{{ lookup('file', 'missing.txt') }}\"\n        dest: /tmp/kw-never-written\n",
        ),
        (
            "delegate.yml",
            "- hosts: tb3\n  gather_facts: false\n  tasks:\n    - name: elsewhere\n      ansible.builtin.copy:\n        content: x\n        dest: /tmp/kw-never-written\n      delegate_to: not-in-inventory\n",
        ),
        (
            "unknown.yml",
            "- hosts: tb3\n  gather_facts: false\n  tasks:\n    - name: typo\n      ansible.builtin.debug:\n        msg: \"{{ lookup('fiel', 'x') }}\"\n",
        ),
    ]);
    on_host(DELEGATE_HOST, "rm -f /tmp/kw-never-written");
    let run = |pb: &str| {
        deployer(
            dir.path(),
            &["apply", pb, "-i", inv.to_str().expect("utf-8 path")],
        )
    };
    let o = run("site.yml");
    assert_ne!(o.code, 0, "{}", o.all());
    assert!(
        o.all().contains("site.yml:9") && o.all().contains("no file was found"),
        "{}",
        o.all()
    );
    let o = run("file.yml");
    assert_ne!(o.code, 0, "{}", o.all());
    assert!(
        o.all().contains("could not find 'missing.txt'") && o.all().contains("file.yml:"),
        "{}",
        o.all()
    );
    let o = run("delegate.yml");
    assert_ne!(o.code, 0, "{}", o.all());
    assert!(
        o.all()
            .contains("'not-in-inventory' is not in the inventory"),
        "{}",
        o.all()
    );
    let o = run("unknown.yml");
    assert_ne!(o.code, 0, "{}", o.all());
    assert!(
        o.all().contains("unknown lookup plugin 'fiel'") && o.all().contains("'file'"),
        "{}",
        o.all()
    );
    // Strict helper: the absence check itself exits 0 only when the file is absent.
    on_host(DELEGATE_HOST, "test ! -e /tmp/kw-never-written");
    common::forget_local_state(dir.path());
}
