//! Warm connections across runs and the one remote shell per host, against
//! the real testbed: a run leaves its SSH master up for the next run, which
//! reuses it (one SSH session per host for the whole run, no new master);
//! `--fresh-connection` neither reuses nor leaves one; a control directory that
//! is not private to this user is never used; a master that died is replaced.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const ROOT: &str = "/srv/dt-warm";
const ROOT2: &str = "/srv/dt-warm-private";

fn playbook(root: &str) -> String {
    format!(
        r#"- hosts: tb2
  become: true
  gather_facts: false
  tasks:
    - name: dir
      ansible.builtin.file:
        path: {root}
        state: directory
    - name: a file
      ansible.builtin.copy:
        content: "warm\n"
        dest: {root}/f.txt
        mode: "0600"
    - name: a command
      ansible.builtin.command: cat {root}/f.txt
      register: out
      changed_when: false
    - name: its output
      ansible.builtin.assert:
        that:
          - out.stdout == 'warm'
    # What ssh passes on (SendEnv LANG; sshd's AcceptEnv LANG; sudo keeps
    # it): the same through a warm master's control socket as through a
    # master's own session.
    - name: the environment ssh passes on
      ansible.builtin.command: printenv LANG
      register: lang
      changed_when: false
    - name: LANG as this run's
      ansible.builtin.assert:
        that:
          - lang.stdout == 'en_US.UTF-8'
"#
    )
}

fn run(dir: &Path, ctl: &Path, extra: &[&str]) -> Out {
    let inv = testbed_inventory().display().to_string();
    let mut args = vec!["apply", "-i", &inv, "site.yml", "--format", "json"];
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(&args)
        .current_dir(dir)
        .env_remove("DEPLOYER_INVENTORY")
        .env_remove("DEPLOYER_FRESH_CONNECTION")
        .env("DEPLOYER_SSH_CONTROL_DIR", ctl)
        .env("LANG", "en_US.UTF-8")
        .output()
        .expect("run deployer");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The master sockets under a control directory.
fn masters(ctl: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for t in std::fs::read_dir(ctl).into_iter().flatten().flatten() {
        for m in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
            let s = m.path().join("master");
            if s.exists() {
                found.push(s);
            }
        }
    }
    found
}

fn master_pid(sock: &Path) -> Option<u32> {
    let o = Command::new("ssh")
        .arg("-S")
        .arg(sock)
        .args(["-O", "check", "none"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    let pid = text.split("pid=").nth(1)?;
    pid.trim().trim_end_matches(')').parse().ok()
}

fn stop(sock: &Path) {
    let _ = Command::new("ssh")
        .arg("-S")
        .arg(sock)
        .args(["-O", "exit", "none"])
        .output();
}

fn sessions(out: &Out) -> u64 {
    recap(&out.stdout)["hosts"]["tb2"]["remote_executions"]
        .as_u64()
        .unwrap_or(99)
}

#[test]
fn a_second_run_reuses_the_master_the_first_left_up() {
    let dir = project(&[("site.yml", &playbook(ROOT))]);
    let ctl = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(ctl.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    on_host("tb2", &format!("rm -rf {ROOT}"));

    let first = run(dir.path(), ctl.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    // Every script ran as root in one shell: one SSH session.
    assert_eq!(sessions(&first), 1, "{}", first.stdout);
    let m1 = masters(ctl.path());
    assert_eq!(m1.len(), 1, "one master left up: {m1:?} {}", first.all());
    let pid = master_pid(&m1[0]).expect("the master is up after the run");
    let mode = std::fs::metadata(m1[0].parent().expect("dir"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the master's directory is private");

    let second = run(dir.path(), ctl.path(), &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(recap(&second.stdout)["hosts"]["tb2"]["changed"], 0);
    assert_eq!(sessions(&second), 1, "{}", second.stdout);
    assert_eq!(masters(ctl.path()), m1, "the same master, no new one");
    assert_eq!(master_pid(&m1[0]), Some(pid));

    // --fresh-connection: its own master, closed at the end; the warm one is left alone.
    let fresh = run(dir.path(), ctl.path(), &["--fresh-connection"]);
    assert_eq!(fresh.code, 0, "{}", fresh.all());
    assert_eq!(sessions(&fresh), 1, "{}", fresh.stdout);
    assert_eq!(masters(ctl.path()), m1);

    // A master that died (killed, its socket left behind) is replaced.
    // SAFETY: kill(2) on the pid ssh reported for our own master.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = run(dir.path(), ctl.path(), &[]);
    assert_eq!(after.code, 0, "{}", after.all());
    let m2 = masters(ctl.path());
    assert_eq!(m2.len(), 1, "{m2:?}");
    assert_ne!(m2, m1, "a new master replaced the dead one");
    for m in m2 {
        stop(&m);
    }
    on_host("tb2", &format!("rm -rf {ROOT}"));
}

#[test]
fn a_control_directory_that_is_not_private_is_never_used() {
    let dir = project(&[("site.yml", &playbook(ROOT2))]);
    for (what, prepare) in [("group/other bits", 0o755u32), ("another user's", 0o700u32)] {
        let ctl = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(ctl.path(), std::fs::Permissions::from_mode(prepare))
            .expect("chmod");
        if what == "another user's" {
            std::os::unix::fs::chown(ctl.path(), Some(65534), Some(65534)).expect("chown");
        }
        let out = run(dir.path(), ctl.path(), &[]);
        assert_eq!(out.code, 0, "{what}: {}", out.all());
        assert!(
            out.all().contains("no warm ssh connection"),
            "{what}: {}",
            out.all()
        );
        assert!(masters(ctl.path()).is_empty(), "{what}: a master was left");
        std::os::unix::fs::chown(ctl.path(), Some(0), Some(0)).ok();
    }
    on_host("tb2", &format!("rm -rf {ROOT2}"));
}
