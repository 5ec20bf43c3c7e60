//! Differential test: the bench role (`bench/site.yml`) applied by the REAL
//! `ansible-playbook` to one testbed host and by `deployer` to another must
//! leave every managed file byte-identical, with the same type, mode, owner,
//! group and link target; both must report the same counts on the first run
//! and 0 changed on the second.
//!
//! Needs the testbed (`tests/testbed/up.sh 3`) and ansible-core in
//! `$DEPLOYER_ANSIBLE_BIN_DIR` or `/opt/deployer-ci/venv/bin`; FAILS (never
//! skips) when either is missing.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{deployer, on_host, recap, repo, testbed_inventory};

/// No other test uses this directory.
const ROOT: &str = "/srv/diff-bench";
const ANSIBLE_HOST: &str = "tb1";
const DEPLOYER_HOST: &str = "tb2";

fn ansible_playbook() -> PathBuf {
    let dir = std::env::var_os("DEPLOYER_ANSIBLE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/deployer-ci/venv/bin"));
    let bin = dir.join("ansible-playbook");
    assert!(
        bin.is_file(),
        "{} not found. This test needs the real ansible-core:\n  \
         python3 -m venv /opt/deployer-ci/venv && /opt/deployer-ci/venv/bin/pip install ansible-core==2.19.14\n\
         or point DEPLOYER_ANSIBLE_BIN_DIR at a directory containing ansible-playbook.",
        bin.display()
    );
    bin
}

/// Ansible's recap counters for one host, from `host : ok=N changed=N ...`.
fn ansible_recap(stdout: &str, host: &str) -> BTreeMap<String, u64> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(host) && l.contains("changed="))
        .unwrap_or_else(|| panic!("no recap line for {host} in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

struct Ansible {
    home: tempfile::TempDir,
}

impl Ansible {
    fn new() -> Self {
        Ansible {
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn apply(&self) -> String {
        let out = Command::new(ansible_playbook())
            .arg("-i")
            .arg(testbed_inventory())
            .arg("-l")
            .arg(ANSIBLE_HOST)
            .arg("-e")
            .arg(format!("bench_root={ROOT}"))
            .arg(repo().join("bench/site.yml"))
            .current_dir(self.home.path())
            .env("ANSIBLE_CONFIG", repo().join("bench/ansible.cfg"))
            .env("ANSIBLE_HOME", self.home.path().join("home"))
            .env("ANSIBLE_LOCAL_TEMP", self.home.path().join("tmp"))
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
}

fn deployer_apply() -> serde_json::Value {
    let inv = testbed_inventory();
    let out = deployer(
        &repo().join("bench"),
        &[
            "apply",
            "site.yml",
            "-i",
            inv.to_str().expect("utf-8 path"),
            "-l",
            DEPLOYER_HOST,
            "-e",
            &format!("bench_root={ROOT}"),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "deployer apply failed:\n{}", out.all());
    recap(&out.stdout)["hosts"][DEPLOYER_HOST].clone()
}

/// Every path under ROOT: type, mode, owner, group, link target and sha256,
/// collected in one SSH execution.
fn tree(host: &str) -> BTreeMap<String, String> {
    let script = format!(
        "cd {ROOT} && find . -printf '%p\\t%y %m %u %g %l\\n' && echo '--' && \
         find . -type f -exec sha256sum {{}} +"
    );
    let out = on_host(host, &script);
    let (meta, sums) = out
        .split_once("--\n")
        .unwrap_or_else(|| panic!("cannot list {ROOT} on {host}:\n{out}"));
    let mut map = BTreeMap::new();
    for l in meta.lines() {
        let (p, m) = l.split_once('\t').expect("find line");
        map.insert(p.to_string(), m.to_string());
    }
    for l in sums.lines() {
        let (h, p) = l.split_once("  ").expect("sha256sum line");
        map.get_mut(p)
            .unwrap_or_else(|| panic!("{p} hashed but not listed"))
            .push_str(&format!(" sha256={h}"));
    }
    map
}

#[test]
fn bench_role_gives_the_same_files_as_ansible_playbook() {
    let ansible = Ansible::new();
    ansible_playbook();
    for h in [ANSIBLE_HOST, DEPLOYER_HOST] {
        on_host(h, &format!("rm -rf {ROOT}"));
    }

    // First run: both in parallel (Ansible takes tens of seconds).
    let (a1, d1) = std::thread::scope(|s| {
        let a = s.spawn(|| ansible.apply());
        let d = deployer_apply();
        (a.join().expect("ansible thread"), d)
    });
    let a1 = ansible_recap(&a1, ANSIBLE_HOST);
    for k in ["ok", "changed", "failed", "skipped"] {
        assert_eq!(
            d1[k].as_u64(),
            a1.get(k).copied(),
            "first run: '{k}' differs: ansible {a1:?}, deployer {d1}"
        );
    }

    let a = tree(ANSIBLE_HOST);
    let d = tree(DEPLOYER_HOST);
    assert!(a.len() > 25, "too few files managed by ansible: {a:?}");
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

    // Second run: nothing to change for either.
    let (a2, d2) = std::thread::scope(|s| {
        let a = s.spawn(|| ansible.apply());
        let d = deployer_apply();
        (a.join().expect("ansible thread"), d)
    });
    let a2 = ansible_recap(&a2, ANSIBLE_HOST);
    assert_eq!(a2.get("changed"), Some(&0), "ansible re-run: {a2:?}");
    assert_eq!(d2["changed"].as_u64(), Some(0), "deployer re-run: {d2}");
    assert_eq!(d2["failed"].as_u64(), Some(0), "deployer re-run: {d2}");
    // One SSH session per host: the lock, the batched observation, the two
    // `changed_when: false` commands, audit and lock release all run in the
    // host's one root shell. (5 with a session per script.)
    assert_eq!(
        d2["remote_executions"].as_u64(),
        Some(1),
        "deployer no-op re-run: one remote session per host: {d2}"
    );
    assert_eq!(
        d2["ok"].as_u64(),
        a2.get("ok").copied(),
        "re-run ok counts: ansible {a2:?}, deployer {d2}"
    );

    for h in [ANSIBLE_HOST, DEPLOYER_HOST] {
        on_host(h, &format!("rm -rf {ROOT}"));
    }
}
