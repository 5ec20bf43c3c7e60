//! A command re-observes the cached files in its own execution (no extra
//! round trip after a `command`/`shell`). Pinned here against the real testbed:
//! the command's stdout and stderr stay exact, later tasks see what the command
//! did to cached files, and a command run as another user falls back to a
//! refetch as the reading user.

mod common;

use common::*;

const ROOT: &str = "/srv/dt-cmdobs";

fn playbook() -> String {
    format!(
        r#"- hosts: tb1
  become: true
  gather_facts: false
  tasks:
    - name: root
      ansible.builtin.file:
        path: {ROOT}
        state: directory
    - name: a cached file, already as wanted
      ansible.builtin.copy:
        content: "before\n"
        dest: {ROOT}/f.txt
    - name: output without a newline
      ansible.builtin.shell: printf 'no newline'
      register: out1
      changed_when: false
    - name: changes the cached file, prints on both streams
      ansible.builtin.shell: "echo after > {ROOT}/f.txt; echo line1; echo; echo err >&2"
      register: out2
      changed_when: false
    - name: exact streams
      ansible.builtin.assert:
        that:
          - out1.stdout == 'no newline'
          - out1.stdout_lines == ['no newline']
          - out2.stdout == 'line1'
          - out2.stderr == 'err'
    - name: the command's write is seen (ok, not changed)
      ansible.builtin.copy:
        content: "after\n"
        dest: {ROOT}/f.txt
    - name: a command removes the cached file
      ansible.builtin.command: rm -f {ROOT}/f.txt
      changed_when: false
    - name: stat sees it gone
      ansible.builtin.stat:
        path: {ROOT}/f.txt
      register: st
    - name: gone
      ansible.builtin.assert:
        that:
          - not st.stat.exists
    - name: a command as another user (the cache was read as root)
      ansible.builtin.command: touch /tmp/dt-cmdobs-deploy
      become_user: deploy
      changed_when: false
    - name: root-owned file written after it
      ansible.builtin.copy:
        content: "g\n"
        dest: {ROOT}/g.txt
        mode: "0600"
"#
    )
}

#[test]
fn commands_refresh_the_observation_cache_in_their_own_execution() {
    // Already converged before the run, so these paths stay in the cache (a
    // file deployer writes itself is dropped from it and re-read on demand).
    on_host(
        "tb1",
        &format!(
            "rm -rf {ROOT} /tmp/dt-cmdobs-deploy; mkdir -p {ROOT}; echo before > {ROOT}/f.txt"
        ),
    );
    let dir = project(&[("site.yml", &playbook())]);
    let inv = testbed_inventory().display().to_string();
    let out = deployer(
        dir.path(),
        &["apply", "-i", &inv, "site.yml", "--format", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        !out.all().contains("__DEPLOYER_OBSERVE_"),
        "the separator leaked: {}",
        out.all()
    );
    let ev = events(&out.stdout);
    let result = |name: &str| {
        ev.iter()
            .find(|e| e["event"] == "task_result" && e["task"] == name)
            .unwrap_or_else(|| panic!("no result for '{name}' in {}", out.stdout))
            .clone()
    };
    assert_eq!(
        result("the command's write is seen (ok, not changed)")["status"],
        "ok",
        "the copy saw stale content: {}",
        out.stdout
    );
    assert_eq!(
        result("root-owned file written after it")["status"],
        "changed"
    );
    let r = recap(&out.stdout);
    // Only g.txt: the rest was there, and the copy after the shell sees its write.
    assert_eq!(r["hosts"]["tb1"]["changed"], 1, "{r}");
    // Remote executions are SSH sessions: every script as root (the lock, the
    // prefetch, 3 commands, the refetch after the command as `deploy`, the
    // write of g.txt, the release record, audit + lock release) runs in the
    // host's one root shell; the command as `deploy` gets its own session.
    // (10 with a session per script.)
    assert_eq!(r["hosts"]["tb1"]["remote_executions"], 2, "{r}");
    let files = on_host(
        "tb1",
        &format!("ls {ROOT}; stat -c '%a %U' {ROOT}/g.txt; cat {ROOT}/g.txt"),
    );
    assert_eq!(files, "g.txt\n600 root\ng\n");
    on_host("tb1", &format!("rm -rf {ROOT} /tmp/dt-cmdobs-deploy"));
}

/// A command followed by another command leaves the check of what it changed
/// to that one (one `stat` for both). When the next command does not run
/// after all (`when: false`), the first task that reads the host checks
/// first: later tasks still see what the commands did.
#[test]
fn a_command_leaves_its_check_to_the_next_command() {
    let root = "/srv/dt-cmdobs-later";
    on_host(
        "tb1",
        &format!("rm -rf {root}; mkdir -p {root}; echo before > {root}/f.txt"),
    );
    let playbook = format!(
        r#"- hosts: tb1
  become: true
  gather_facts: false
  tasks:
    - name: a cached file, already as wanted
      ansible.builtin.copy:
        content: "before\n"
        dest: {root}/f.txt
    - name: first change
      ansible.builtin.shell: echo after > {root}/f.txt
      changed_when: false
    - name: evaluated on the controller
      ansible.builtin.debug:
        msg: between
    - name: a command that does not run
      ansible.builtin.command: "true"
      when: false
    - name: the first change is seen
      ansible.builtin.copy:
        content: "after\n"
        dest: {root}/f.txt
    - name: second change
      ansible.builtin.shell: echo again > {root}/f.txt
      changed_when: false
    - name: a command that runs
      ansible.builtin.command: "true"
      changed_when: false
    - name: the second change is seen
      ansible.builtin.copy:
        content: "again\n"
        dest: {root}/f.txt
"#
    );
    let dir = project(&[("site.yml", &playbook)]);
    let inv = testbed_inventory().display().to_string();
    let out = deployer(
        dir.path(),
        &["apply", "-vv", "-i", &inv, "site.yml", "--format", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let ev = events(&out.stdout);
    let status = |name: &str| {
        ev.iter()
            .find(|e| e["event"] == "task_result" && e["task"] == name)
            .unwrap_or_else(|| panic!("no result for '{name}' in {}", out.stdout))["status"]
            .clone()
    };
    assert_eq!(status("the first change is seen"), "ok", "{}", out.stdout);
    assert_eq!(status("the second change is seen"), "ok", "{}", out.stdout);
    assert_eq!(recap(&out.stdout)["hosts"]["tb1"]["changed"], 0);
    // The checks that ran (the scripts are traced with -vv): the copy's,
    // before it reads the cache, and the second command's, for both changes.
    // A check after each command would make three.
    let checks = out.stderr.matches("stat -c 'T|%d:%i:%s:%z|%n'").count();
    assert_eq!(checks, 2, "{}", out.stderr);
    assert_eq!(on_host("tb1", &format!("cat {root}/f.txt")), "again\n");
    on_host("tb1", &format!("rm -rf {root}"));
}
