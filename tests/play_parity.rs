//! `serial`, `any_errors_fatal`, `max_fail_percentage` and the precedence of
//! `ansible_become` over the `become` keywords, each playbook run
//! by the REAL `ansible-playbook` and by `deployer` against the three testbed
//! hosts (in different directories): the same hosts run the same tasks, in
//! the same batches, and both tools report the same recap for every host.
//!
//! Batches are read from the hosts themselves: every host of a play writes
//! the time its first task started and its last task ended (with a one
//! second task between), so two hosts ran in the same batch exactly when
//! those intervals overlap (the hosts are containers on one clock).
//!
//! Needs the testbed (`tests/testbed/up.sh 3`) and ansible-core in
//! `$DEPLOYER_ANSIBLE_BIN_DIR` or `/opt/deployer-ci/venv/bin`; FAILS (never
//! skips) when either is missing. Each test uses its own directories under
//! /srv, so it runs in parallel with other tests.

mod common;

use std::collections::BTreeMap;

use common::{ansible_playbook, deployer, inv, on_host, project};

const HOSTS: [&str; 3] = ["tb1", "tb2", "tb3"];

/// Runs `site.yml` of `dir` with ansible-playbook (root `<root>-ansible`)
/// and with deployer (root `<root>-deployer`); checks both exit codes
/// (ansible-playbook exits 2 when a host failed, deployer 1) and returns
/// their stdouts.
fn both(dir: &std::path::Path, root: &str, failed: bool) -> (String, String) {
    let a_root = format!("root={root}-ansible");
    // A generous connection/become timeout: the testbed is shared and loaded.
    let a = ansible_playbook(dir, &["site.yml", "-T", "60", "-e", &a_root]);
    assert_eq!(
        a.code,
        if failed { 2 } else { 0 },
        "ansible-playbook exit code:\n{}",
        a.all()
    );
    let d_root = format!("root={root}-deployer");
    let d = deployer(dir, &["apply", "-i", &inv(), "site.yml", "-e", &d_root]);
    assert_eq!(
        d.code,
        if failed { 1 } else { 0 },
        "deployer exit code:\n{}",
        d.all()
    );
    (a.stdout, d.stdout)
}

/// A host's recap counters from a `host : ok=N changed=N ...` line (both
/// tools print one), or `None` when the host is not in the recap.
fn recap_of(stdout: &str, host: &str) -> Option<BTreeMap<String, u64>> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(host) && l.contains("changed="))?;
    let mut m: BTreeMap<String, u64> = line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect();
    m.remove("remote_executions");
    Some(m)
}

fn same_recaps(ansible: &str, deployer: &str) {
    for h in HOSTS {
        assert_eq!(
            recap_of(ansible, h),
            recap_of(deployer, h),
            "recap of {h}\nansible:\n{ansible}\ndeployer:\n{deployer}"
        );
    }
}

/// The names of the files under `dir` on `host` (none when it is absent).
fn files(host: &str, dir: &str) -> Vec<String> {
    on_host(
        host,
        &format!("if [ -d {dir} ]; then ls -A {dir} | grep -v -e '-start$' -e '-end$'; fi; true"),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// The batches play `play` ran in under `root`: hosts whose
/// `<play>-start`..`<play>-end` intervals overlap, e.g. `tb1 | tb2,tb3`.
fn batches(root: &str, play: &str) -> String {
    let mut spans: Vec<(u128, u128, &str)> = Vec::new();
    for h in HOSTS {
        let out = on_host(
            h,
            &format!(
                "if [ -e {root}/{play}-start ]; then cat {root}/{play}-start {root}/{play}-end; fi"
            ),
        );
        let nums: Vec<u128> = out
            .split_whitespace()
            .map(|n| n.parse().expect("a timestamp"))
            .collect();
        if let [start, end] = nums[..] {
            spans.push((start, end, h));
        }
    }
    spans.sort();
    let mut groups: Vec<(u128, Vec<&str>)> = Vec::new();
    for (start, end, h) in spans {
        match groups.last_mut() {
            Some((group_end, hosts)) if start < *group_end => {
                hosts.push(h);
                *group_end = (*group_end).max(end);
            }
            _ => groups.push((end, vec![h])),
        }
    }
    groups
        .into_iter()
        .map(|(_, mut hs)| {
            hs.sort();
            hs.join(",")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn clean(root: &str) {
    for h in HOSTS {
        on_host(h, &format!("rm -rf {root}-ansible {root}-deployer"));
    }
}

/// A play of `serial` batches that records when each host started and ended.
fn timed_play(name: &str, serial: &str) -> String {
    format!(
        r#"- name: {name}
  hosts: tb1:tb2:tb3
  gather_facts: false
  serial: {serial}
  tasks:
    - file: {{path: "{{{{ root }}}}", state: directory}}
    - shell: date +%s%N > {{{{ root }}}}/{name}-start
    - command: sleep 1
      changed_when: false
    - shell: date +%s%N > {{{{ root }}}}/{name}-end
"#
    )
}

/// `serial` as a list (the last size repeats), as a percentage of the
/// play's hosts (rounded down), and a batch whose every host failed ending
/// the play and the playbook: the next batch and the next play never run.
#[test]
fn serial_batches_and_a_failed_batch_ends_the_playbook() {
    let root = "/srv/parity-serial";
    clean(root);
    let site = [
        timed_play("listed", "[1, 2]"),
        timed_play("percent", "\"67%\""),
        r#"- name: failing
  hosts: tb1:tb2:tb3
  gather_facts: false
  serial: 1
  tasks:
    - command: "test {{ inventory_hostname }} != tb2"
    - copy: {dest: "{{ root }}/failing-after", content: "ran\n"}
- name: never
  hosts: tb1:tb3
  gather_facts: false
  tasks:
    - copy: {dest: "{{ root }}/never", content: "ran\n"}
"#
        .to_string(),
    ]
    .concat();
    let dir = project(&[("site.yml", &site)]);
    let (a, d) = both(dir.path(), root, true);
    same_recaps(&a, &d);
    for tool in ["ansible", "deployer"] {
        let r = format!("{root}-{tool}");
        assert_eq!(batches(&r, "listed"), "tb1 | tb2,tb3", "{tool}");
        assert_eq!(batches(&r, "percent"), "tb1,tb2 | tb3", "{tool}");
        assert_eq!(files("tb1", &r), ["failing-after"], "{tool}");
        assert!(files("tb2", &r).is_empty(), "{tool}");
        assert!(files("tb3", &r).is_empty(), "{tool}");
    }
    clean(root);
}

/// `any_errors_fatal` on the play: a failure on one host fails every host
/// after that task (the others count no failure), nothing after it runs,
/// and the later plays do not run either.
#[test]
fn any_errors_fatal_stops_every_host_after_the_failing_task() {
    let root = "/srv/parity-aef";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb1:tb2:tb3
  gather_facts: false
  any_errors_fatal: true
  tasks:
    - file: {path: "{{ root }}", state: directory}
    - name: slow on the failing host's peers
      shell: "sleep {{ 0 if inventory_hostname == 'tb3' else 1 }}; touch {{ root }}/first"
    - command: "test {{ inventory_hostname }} != tb3"
    - copy: {dest: "{{ root }}/after", content: "ran\n"}
- hosts: tb1
  gather_facts: false
  tasks:
    - copy: {dest: "{{ root }}/next-play", content: "ran\n"}
"#,
    )]);
    let (a, d) = both(dir.path(), root, true);
    same_recaps(&a, &d);
    for tool in ["ansible", "deployer"] {
        let r = format!("{root}-{tool}");
        for h in HOSTS {
            assert_eq!(files(h, &r), ["first"], "{tool} on {h}");
        }
    }
    clean(root);
}

/// `any_errors_fatal` on a block with a `rescue`: the failing host and the
/// hosts failed with it all run the rescue (only the failing host counts it
/// rescued) and go on; `ignore_errors` keeps a failure from being fatal.
#[test]
fn any_errors_fatal_on_a_block_leads_every_host_to_its_rescue() {
    let root = "/srv/parity-aef-block";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb1:tb2:tb3
  gather_facts: false
  tasks:
    - file: {path: "{{ root }}", state: directory}
    - name: ignored, so not fatal
      command: "test {{ inventory_hostname }} != tb1"
      any_errors_fatal: true
      ignore_errors: true
    - block:
        - command: "test {{ inventory_hostname }} != tb2"
        - copy: {dest: "{{ root }}/in-block", content: "ran\n"}
      any_errors_fatal: true
      rescue:
        - copy: {dest: "{{ root }}/rescued", content: "ran\n"}
    - copy: {dest: "{{ root }}/after", content: "ran\n"}
"#,
    )]);
    let (a, d) = both(dir.path(), root, false);
    same_recaps(&a, &d);
    let per_host = |tool: &str| -> Vec<Vec<String>> {
        HOSTS
            .iter()
            .map(|h| files(h, &format!("{root}-{tool}")))
            .collect()
    };
    let (a_files, d_files) = (per_host("ansible"), per_host("deployer"));
    assert_eq!(a_files, d_files, "files on tb1, tb2, tb3");
    // The failing host itself rescued; nobody wrote the block's second file.
    assert!(a_files[1].contains(&"rescued".to_string()), "{a_files:?}");
    assert!(
        a_files.iter().all(|f| !f.contains(&"in-block".to_string())),
        "{a_files:?}"
    );
    clean(root);
}

/// `max_fail_percentage`: at or below it the play goes on on the other
/// hosts; above it every host stops at once (no rescue, no handler) and the
/// playbook ends. Per batch, with `serial`.
#[test]
fn max_fail_percentage_stops_the_batch_and_the_playbook() {
    let root = "/srv/parity-maxfail";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- name: one of three may fail
  hosts: tb1:tb2:tb3
  gather_facts: false
  max_fail_percentage: 34
  tasks:
    - file: {path: "{{ root }}", state: directory}
    - command: "test {{ inventory_hostname }} != tb1"
    - copy: {dest: "{{ root }}/tolerated", content: "ran\n"}
- name: one of the batch of two fails
  hosts: tb2:tb3
  gather_facts: false
  max_fail_percentage: "40%"
  tasks:
    - copy: {dest: "{{ root }}/second-play", content: "ran\n"}
      notify: h
    - command: "test {{ inventory_hostname }} != tb3"
    - copy: {dest: "{{ root }}/second-after", content: "ran\n"}
  handlers:
    - name: h
      copy: {dest: "{{ root }}/handler", content: "ran\n"}
- name: never
  hosts: tb2
  gather_facts: false
  tasks:
    - copy: {dest: "{{ root }}/never", content: "ran\n"}
"#,
    )]);
    let (a, d) = both(dir.path(), root, true);
    same_recaps(&a, &d);
    for tool in ["ansible", "deployer"] {
        let r = format!("{root}-{tool}");
        assert!(files("tb1", &r).is_empty(), "{tool}");
        assert_eq!(files("tb2", &r), ["second-play", "tolerated"], "{tool}");
        assert_eq!(files("tb3", &r), ["second-play", "tolerated"], "{tool}");
    }
    clean(root);
}

/// The inventory's `ansible_become: true` (the testbed's) and
/// `ansible_become_user` win over the `become` / `become_user` keywords of a
/// task or a play, as connection variables do in Ansible; without the
/// variables, the keywords decide.
#[test]
fn become_variables_win_over_become_keywords() {
    let root = "/tmp/parity-become";
    clean(root);
    let site = r#"- hosts: tb1
  gather_facts: false
  become: false
  tasks:
    - file: {path: "{{ root }}", state: directory, mode: "0777"}
      become: true
    - command: id -un
      become: false
      register: task_false
      changed_when: false
    - command: id -un
      register: play_false
      changed_when: false
    - command: id -un
      become: true
      become_user: nobody
      register: task_user
      changed_when: false
    - command: id -un
      become: true
      register: task_true
      changed_when: false
    - copy:
        dest: "{{ root }}/who-{{ label }}"
        content: "{{ [task_false, play_false, task_user, task_true] | map(attribute='stdout') | join(' ') }}\n"
        mode: "0644"
"#;
    // The testbed's inventory as is, with `ansible_become_user: deploy`
    // added (the login user: Ansible cannot hand its copy module's files to
    // another unprivileged user without ACLs), and without `ansible_become`.
    let text = std::fs::read_to_string(common::testbed_inventory()).expect("inventory");
    assert!(text.contains("    ansible_become: true\n"), "{text}");
    let with_user = text.replace(
        "    ansible_become: true\n",
        "    ansible_become: true\n    ansible_become_user: deploy\n",
    );
    let without = text.replace("    ansible_become: true\n", "");
    let dir = project(&[
        ("site.yml", site),
        ("as-is.yml", &text),
        ("with-user.yml", &with_user),
        ("without.yml", &without),
    ]);
    for inv in ["as-is", "with-user", "without"] {
        let label = format!("label={inv}");
        let a_root = format!("root={root}-ansible");
        let a = ansible_playbook(
            dir.path(),
            &[
                "-i",
                &format!("{inv}.yml"),
                "-T",
                "60",
                "site.yml",
                "-e",
                &a_root,
                "-e",
                &label,
            ],
        );
        assert_eq!(a.code, 0, "ansible-playbook with {inv}:\n{}", a.all());
        let d_root = format!("root={root}-deployer");
        let d = deployer(
            dir.path(),
            &[
                "apply",
                "-i",
                &format!("{inv}.yml"),
                "site.yml",
                "-e",
                &d_root,
                "-e",
                &label,
                // Releases keep their state under /var/lib/deployer, which
                // the deploy user (the become user here) cannot write.
                "-e",
                "deployer_releases=false",
            ],
        );
        assert_eq!(d.code, 0, "deployer with {inv}:\n{}", d.all());
    }
    let who = |tool: &str| {
        on_host(
            "tb1",
            &format!("cd {root}-{tool} && for f in who-*; do echo \"$f: $(cat $f)\"; done"),
        )
    };
    let ansible = who("ansible");
    assert_eq!(
        ansible,
        "who-as-is: root root nobody root\n\
         who-with-user: deploy deploy deploy deploy\n\
         who-without: deploy deploy nobody root\n",
        "what ansible-playbook did"
    );
    assert_eq!(who("deployer"), ansible);
    clean(root);
}
