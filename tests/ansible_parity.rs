//! Keywords deployer used to accept and then ignore (or get wrong), each run
//! by the REAL `ansible-playbook` and by `deployer` against the same testbed
//! hosts (in different directories), which must leave the same files and
//! report the same counts. Named after what they pin.
//!
//! Needs the testbed (`tests/testbed/up.sh 3`) and ansible-core in
//! `$DEPLOYER_ANSIBLE_BIN_DIR` or `/opt/deployer-ci/venv/bin`; FAILS (never
//! skips) when either is missing. Each test uses its own directories under
//! /srv, so the tests run in parallel with each other and with other binaries.

mod common;

use common::{ansible_playbook, ansible_recap, deployer, inv, on_host, project};

const HOSTS: [&str; 3] = ["tb1", "tb2", "tb3"];

/// Runs `site.yml` of `dir` with ansible-playbook (root `<root>-ansible`) and
/// with deployer (root `<root>-deployer`), both with `extra` arguments; returns
/// their stdouts after checking each exit code.
fn both(dir: &std::path::Path, root: &str, extra: &[&str], codes: (i32, i32)) -> (String, String) {
    let a_root = format!("root={root}-ansible");
    let d_root = format!("root={root}-deployer");
    let mut a_args = vec!["site.yml", "-e", &a_root];
    a_args.extend_from_slice(extra);
    let a = ansible_playbook(dir, &a_args);
    assert_eq!(a.code, codes.0, "ansible-playbook exit code:\n{}", a.all());
    let inv = inv();
    let mut d_args = vec!["apply", "-i", &inv, "site.yml", "-e", &d_root];
    if extra.contains(&"--check") {
        d_args[0] = "check";
    }
    d_args.extend(extra.iter().filter(|a| **a != "--check"));
    let d = deployer(dir, &d_args);
    assert_eq!(d.code, codes.1, "deployer exit code:\n{}", d.all());
    (a.stdout, d.stdout)
}

/// Both tools' recap counters agree on every host.
fn same_recaps(ansible: &str, deployer: &str, hosts: &[&str]) {
    for h in hosts {
        let a = ansible_recap(ansible, h);
        let mut d = ansible_recap(deployer, h);
        d.remove("remote_executions");
        assert_eq!(
            a, d,
            "recap of {h}\nansible:\n{ansible}\ndeployer:\n{deployer}"
        );
    }
}

/// `ls -A` and every file's content under `dir` on `host`, one execution.
fn listing(host: &str, dir: &str) -> String {
    on_host(
        host,
        &format!("cd {dir} && for f in $(ls -A | sort); do printf '%s: ' \"$f\"; cat \"$f\"; done"),
    )
}

fn clean(root: &str) {
    for h in HOSTS {
        on_host(h, &format!("rm -rf {root}-ansible {root}-deployer"));
    }
}

/// `run_once`: the first host runs the task (slowly, so the others really
/// wait), every host takes its registered value and its set_fact, `when` is
/// evaluated on the first host only, and the side effect happens once.
#[test]
fn run_once_first_host_runs_and_the_others_share_its_result() {
    let root = "/srv/parity-run-once";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb1:tb2:tb3
  gather_facts: false
  tasks:
    - file: {path: "{{ root }}", state: directory}
    - name: the first host runs it, slowly
      shell: sleep 2; hostname
      run_once: true
      register: who
      changed_when: false
    - set_fact:
        picked: "{{ inventory_hostname }}"
      run_once: true
    - name: when is evaluated on the first host only
      command: touch {{ root }}/when-ran
      run_once: true
      when: inventory_hostname != 'tb1'
      register: skipped_once
    - name: side effect once
      shell: echo {{ inventory_hostname }} >> {{ root }}/once.log
      run_once: true
      register: effect
    - copy:
        dest: "{{ root }}/seen"
        content: "who={{ who.stdout }} picked={{ picked }} skipped={{ skipped_once.skipped | default('undef') }} effect_changed={{ effect.changed }} rc={{ effect.rc }}\n"
"#,
    )]);
    let (a, d) = both(dir.path(), root, &[], (0, 0));
    same_recaps(&a, &d, &HOSTS);
    let seen = "seen: who=tb1 picked=tb1 skipped=True effect_changed=True rc=0\n";
    for h in HOSTS {
        let want = if h == "tb1" {
            format!("once.log: tb1\n{seen}")
        } else {
            seen.to_string()
        };
        for tool in ["ansible", "deployer"] {
            assert_eq!(listing(h, &format!("{root}-{tool}")), want, "{tool} on {h}");
        }
    }
    // Only the host that ran it reports it.
    assert!(
        d.contains("ok: [tb1] the first host runs it, slowly"),
        "{d}"
    );
    assert!(!d.contains("[tb2] the first host runs it"), "{d}");
    clean(root);
}

/// A failing `run_once` task fails every host of the play (only the host
/// that ran it counts the failure): nothing after it runs anywhere.
#[test]
fn run_once_failure_stops_every_host() {
    let root = "/srv/parity-run-once-fail";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb1:tb2:tb3
  gather_facts: false
  tasks:
    - file: {path: "{{ root }}", state: directory}
    - command: "test {{ inventory_hostname }} = tb2"
      run_once: true
    - copy: {dest: "{{ root }}/after", content: "ran\n"}
"#,
    )]);
    // ansible-playbook exits 2 on a failed task, deployer 1.
    let (a, d) = both(dir.path(), root, &[], (2, 1));
    same_recaps(&a, &d, &HOSTS);
    for h in HOSTS {
        for tool in ["ansible", "deployer"] {
            assert_eq!(listing(h, &format!("{root}-{tool}")), "", "{tool} on {h}");
        }
    }
    clean(root);
}

/// `diff: false` on a block hides the diff of every task inside it under
/// `check --diff` (the task writes a password); `diff: true` on a task shows
/// its diff without `--diff`. Both as ansible-playbook does.
#[test]
fn diff_false_on_a_block_hides_the_secret_and_diff_true_shows_without_the_flag() {
    let root = "/srv/parity-diff";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb1
  gather_facts: false
  tasks:
    - block:
        - copy: {dest: "{{ root }}-password.conf", content: "password=hunter2-in-a-block\n"}
        - block:
            - copy: {dest: "{{ root }}-nested.conf", content: "password=hunter2-nested\n"}
      diff: false
    - copy: {dest: "{{ root }}-public.conf", content: "visible=shown-by-its-diff\n"}
      diff: true
"#,
    )]);
    // deployer check exits 2: changes pending.
    let (a, d) = both(dir.path(), root, &["--check", "--diff"], (0, 2));
    for (tool, out) in [("ansible", &a), ("deployer", &d)] {
        assert!(
            !out.contains("hunter2"),
            "{tool} showed a diff inside diff: false:\n{out}"
        );
        assert!(out.contains("visible=shown-by-its-diff"), "{tool}:\n{out}");
    }
    // Without --diff, only the task that asks for its diff shows one.
    let (a, d) = both(dir.path(), root, &["--check"], (0, 2));
    for (tool, out) in [("ansible", &a), ("deployer", &d)] {
        assert!(!out.contains("hunter2"), "{tool}:\n{out}");
        assert!(
            out.contains("visible=shown-by-its-diff"),
            "{tool} hid the diff of diff: true:\n{out}"
        );
    }
    on_host(
        "tb1",
        &format!(
            "test ! -e {root}-ansible-password.conf && test ! -e {root}-deployer-password.conf"
        ),
    );
}

/// `ansible_become: maybe` is not a boolean: the task fails naming the
/// variable (Ansible: "could not be converted to 'bool'") instead of falling
/// back to the play's become.
#[test]
fn ansible_become_that_is_not_a_boolean_fails_the_task() {
    let root = "/srv/parity-become-maybe";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb1
  gather_facts: false
  vars:
    ansible_become: maybe
  tasks:
    - command: touch {{ root }}
"#,
    )]);
    let (a, d) = both(dir.path(), root, &[], (2, 1));
    same_recaps(&a, &d, &["tb1"]);
    assert!(a.contains("could not be converted to 'bool'"), "{a}");
    assert!(
        d.contains("ansible_become: the value \"maybe\" could not be converted to a boolean"),
        "{d}"
    );
    on_host(
        "tb1",
        &format!("test ! -e {root}-ansible && test ! -e {root}-deployer"),
    );
}
