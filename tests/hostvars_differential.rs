//! Differential test of `hostvars`: the project in tests/fixtures/hostvars
//! (testbed inventory plus fixture inventory with per-host, group and
//! templated variables) applied to all three testbed hosts by the REAL
//! `ansible-playbook` (files under /srv/diff-hv/ansible) and by `deployer`
//! (under /srv/diff-hv/deployer) must write the same files on every host and
//! report the same status for every task, on a first and a second run. The
//! files show, for every host, its inventory variables (one templated in that
//! host's own context), facts, `set_fact` and registered values, magic
//! variables and `-e` values as other hosts read them; and that play and role
//! variables are not in `hostvars`, as in Ansible.
//!
//! Needs the testbed (`tests/testbed/up.sh 3`) and ansible-core in
//! `$DEPLOYER_ANSIBLE_BIN_DIR` or `/opt/deployer-ci/venv/bin`; FAILS (never
//! skips) when either is missing.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{deployer, events, on_host, repo, testbed_inventory};

/// No other test uses this path.
const ROOT: &str = "/srv/diff-hv";
/// The strategy test's directory: outside `ROOT`, which the test beside it
/// removes on every host while this one may be writing.
const STRATEGY_DIR: &str = "/srv/diff-strategy";
const HOSTS: [&str; 3] = ["tb1", "tb2", "tb3"];

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/hostvars")
}

fn ansible_playbook() -> PathBuf {
    let dir = std::env::var_os("DEPLOYER_ANSIBLE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/deployer-ci/venv/bin"));
    let bin = dir.join("ansible-playbook");
    assert!(
        bin.is_file(),
        "{} not found: run tests/testbed/install-deps.sh",
        bin.display()
    );
    bin
}

fn ansible_apply(home: &std::path::Path) -> String {
    let out = Command::new(ansible_playbook())
        .arg("-i")
        .arg(testbed_inventory())
        .arg("-i")
        .arg(fixture().join("inventory.yml"))
        .arg(fixture().join("site.yml"))
        .arg("-e")
        .arg(format!("hv_root={ROOT}/ansible"))
        .current_dir(fixture())
        .env("ANSIBLE_CONFIG", fixture().join("ansible.cfg"))
        .env("ANSIBLE_HOME", home.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
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

/// The tests of this file apply the same project to the same hosts at once:
/// each waits for the others' deploy lock.
fn deployer_args<'a>(inv: &'a str, extra: &'a str, playbook: &'a str) -> Vec<&'a str> {
    vec![
        "apply",
        playbook,
        "-i",
        inv,
        "-i",
        "inventory.yml",
        "-e",
        extra,
        "--format",
        "json",
        "--lock-wait",
        "600s",
    ]
}

fn deployer_apply() -> Vec<serde_json::Value> {
    let inv = testbed_inventory();
    let extra = format!("hv_root={ROOT}/deployer");
    let out = deployer(
        &fixture(),
        &deployer_args(inv.to_str().expect("utf-8 path"), &extra, "site.yml"),
    );
    assert_eq!(out.code, 0, "deployer apply failed:\n{}", out.all());
    events(&out.stdout)
}

/// Per host, task name → statuses from ansible-playbook's default output.
fn ansible_statuses(stdout: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut task = String::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("TASK [") {
            let name = rest
                .split("] ")
                .next()
                .unwrap_or(rest)
                .trim_end_matches(']');
            task = name.split_once(" : ").map_or(name, |(_, n)| n).to_string();
            continue;
        }
        for (prefix, status) in [
            ("changed: [", "changed"),
            ("ok: [", "ok"),
            ("skipping: [", "skipped"),
            ("fatal: [", "failed"),
        ] {
            if let Some(rest) = line.strip_prefix(prefix)
                && task != "Gathering Facts"
            {
                let host = rest.split(']').next().unwrap_or_default().to_string();
                out.insert((host, task.clone()), status.to_string());
            }
        }
    }
    out
}

fn deployer_statuses(events: &[serde_json::Value]) -> BTreeMap<(String, String), String> {
    events
        .iter()
        .filter(|e| e["event"] == "task_result")
        .map(|e| {
            (
                (
                    e["host"].as_str().unwrap_or_default().to_string(),
                    e["task"].as_str().unwrap_or_default().to_string(),
                ),
                e["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every file one tool wrote on a host: name → mode and content, with the
/// tool's own root (the `-e` value some files print) written as `ROOT`.
fn files(host: &str, tool: &str) -> BTreeMap<String, String> {
    let dir = format!("{ROOT}/{tool}");
    let listing = on_host(
        host,
        &format!(
            "cd {dir} && for f in *; do printf '%s %s\\n' \"$f\" \"$(stat -c %a \"$f\")\"; done"
        ),
    );
    let mut out = BTreeMap::new();
    for line in listing.lines() {
        let (name, mode) = line.split_once(' ').expect("name and mode");
        let content = on_host(host, &format!("cat {dir}/{name}"));
        out.insert(
            name.to_string(),
            format!("mode {mode}\n{}", content.replace(&dir, "ROOT")),
        );
    }
    out
}

#[test]
fn hostvars_match_ansible_playbook_on_three_hosts() {
    ansible_playbook();
    let home = tempfile::tempdir().expect("tempdir");
    for h in HOSTS {
        on_host(h, &format!("rm -rf {ROOT}"));
    }
    for run in ["first run", "second run"] {
        let (a, ev) = std::thread::scope(|s| {
            let a = s.spawn(|| ansible_apply(home.path()));
            let d = deployer_apply();
            (a.join().expect("ansible thread"), d)
        });
        let a = ansible_statuses(&a);
        let d = deployer_statuses(&ev);
        assert_eq!(a.len(), 21, "{run}: tasks parsed from ansible: {a:#?}");
        assert_eq!(a, d, "{run}: per-host, per-task status differs");
        for h in HOSTS {
            let fa = files(h, "ansible");
            let fd = files(h, "deployer");
            assert_eq!(fa.len(), 3, "{run}: files on {h}: {fa:#?}");
            assert_eq!(fa, fd, "{run}: files on {h} differ");
        }
    }
    // What the files say, beyond agreeing: another host's templated group
    // variable rendered in its own context, and a fact it set.
    let args = on_host("tb1", &format!("cat {ROOT}/deployer/tb1-args.txt"));
    assert!(
        args.contains("first db: tb2-label-2\nits fact: fact-tb2-20\n"),
        "{args}"
    );
}

/// `hostvars` of a host not in the inventory is undefined: the task fails
/// naming its file and line, and writes nothing.
#[test]
fn unknown_host_in_hostvars_fails_the_task() {
    let inv = testbed_inventory();
    on_host("tb1", &format!("rm -f {ROOT}/bad.txt"));
    let out = deployer(
        &fixture(),
        &[
            "apply",
            "bad.yml",
            "-i",
            inv.to_str().expect("utf-8 path"),
            "-i",
            "inventory.yml",
            "--lock-wait",
            "600s",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("bad.yml:8:") && out.stdout.contains("no-such-host"),
        "{}",
        out.all()
    );
    on_host("tb1", &format!("test ! -e {ROOT}/bad.txt"));
}

/// `strategy: linear` keeps the hosts in step (tb2 starts the next task
/// after tb1 finished a slow one); `strategy: free` lets tb2 go on at once.
#[test]
fn strategy_linear_keeps_hosts_in_step_and_free_does_not() {
    let inv = testbed_inventory();
    on_host("tb1", &format!("rm -rf {STRATEGY_DIR}"));
    on_host("tb2", &format!("rm -rf {STRATEGY_DIR}"));
    let out = deployer(
        &fixture(),
        &[
            "apply",
            "strategy.yml",
            "-i",
            inv.to_str().expect("utf-8 path"),
            "--lock-wait",
            "600s",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let stamp = |host: &str, file: &str| -> u128 {
        let s = on_host(host, &format!("cat {STRATEGY_DIR}/{file}"));
        s.trim().parse().unwrap_or_else(|_| panic!("{file}: {s}"))
    };
    let (slow, next) = (stamp("tb1", "linear-slow"), stamp("tb2", "linear-next-tb2"));
    assert!(
        next >= slow,
        "linear: tb2 ran the next task {} ms before tb1 finished the slow one",
        (slow - next) / 1_000_000
    );
    let (slow, next) = (stamp("tb1", "free-slow"), stamp("tb2", "free-next-tb2"));
    assert!(
        next + 2_000_000_000 < slow,
        "free: tb2 waited for tb1 (next {next}, slow {slow})"
    );
}
