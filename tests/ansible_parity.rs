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
    // A project may bring its own inventory (see `without_become`).
    let own_inv = dir.join("inventory.yml").exists();
    if own_inv {
        a_args.extend(["-i", "inventory.yml"]);
    }
    a_args.extend_from_slice(extra);
    let a = ansible_playbook(dir, &a_args);
    assert_eq!(a.code, codes.0, "ansible-playbook exit code:\n{}", a.all());
    let inv = if own_inv {
        "inventory.yml".to_string()
    } else {
        inv()
    };
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

/// `ls -A` and every file's content under `dir` on `host`, one execution
/// (one line per file: a missing final newline does not count, as deployer's
/// templates drop it where Ansible keeps it).
fn listing(host: &str, dir: &str) -> String {
    on_host(
        host,
        &format!(
            "cd {dir} && for f in $(ls -A | sort); do printf '%s: %s\\n' \"$f\" \"$(cat \"$f\")\"; done"
        ),
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

/// The testbed inventory without its `ansible_become: true`: in Ansible that
/// variable overrides every `become` keyword, which would hide what `apply:`
/// and the include keywords do.
fn without_become() -> String {
    let text = std::fs::read_to_string(common::testbed_inventory()).expect("read inventory");
    let out: String = text
        .lines()
        .filter(|l| l.trim() != "ansible_become: true")
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        out.len(),
        text.len() + usize::from(!text.ends_with('\n')),
        "no ansible_become line to drop"
    );
    out
}

/// include_tasks / include_role / import_role: `apply:` reaches the included
/// tasks and the include's own `become` does not; `vars:` reach the role;
/// `loop:` runs the include per item with `loop_control` (loop_var,
/// index_var, extended); `meta: clear_facts` forgets the gathered facts;
/// `loop_control.pause` waits between items.
#[test]
fn includes_apply_vars_loops_loop_control_and_clear_facts() {
    let root = "/srv/parity-includes";
    clean(root);
    let inventory = without_become();
    let dir = project(&[
        ("inventory.yml", inventory.as_str()),
        (
            "site.yml",
            r#"- hosts: tb1
  gather_facts: true
  tasks:
    - file: {path: "{{ root }}", state: directory, owner: deploy, mode: "0755"}
      become: true
    - include_tasks:
        file: who.yml
        apply: {become: true}
      vars: {tag: applied}
    - include_tasks: items.yml
      loop: [a, b, c]
      loop_control: {loop_var: it, index_var: idx, extended: true}
    - include_role: {name: r1}
      vars: {r1_value: include}
    - import_role: {name: r1}
      vars: {r1_value: import}
    - include_role:
        name: r1
        apply: {become: true}
      vars: {r1_value: include-applied}
    - shell: date +%s%N >> {{ root }}/times
      loop: [1, 2]
      loop_control: {pause: 1}
    - meta: clear_facts
    - copy:
        dest: "{{ root }}/facts"
        content: "{{ ansible_hostname | default('cleared') }}\n"
"#,
        ),
        ("who.yml", "- shell: id -un > {{ root }}/who-{{ tag }}\n"),
        (
            "items.yml",
            "- shell: echo \"{{ it }} {{ idx }} {{ ansible_loop.index }}/{{ ansible_loop.length }} first={{ ansible_loop.first }} last={{ ansible_loop.last }} prev={{ ansible_loop.previtem | default('-') }}\" > {{ root }}/item-{{ it }}\n",
        ),
        (
            "roles/r1/tasks/main.yml",
            "- shell: echo \"{{ r1_value | default('unset') }} $(id -un)\" > {{ root }}/role-{{ r1_value | default('unset') }}\n",
        ),
    ]);
    // No release records: with no become by default, the release state of
    // the deploy user would be made by the first task that becomes root.
    let (a, d) = both(dir.path(), root, &["-e", "deployer_releases=false"], (0, 0));
    // Ansible also counts each include (and fact gathering) as ok; deployer
    // counts the tasks that ran: compare what changed and what failed.
    for key in ["changed", "failed", "skipped"] {
        assert_eq!(
            ansible_recap(&a, "tb1")[key],
            ansible_recap(&d, "tb1")[key],
            "{key}\nansible:\n{a}\ndeployer:\n{d}"
        );
    }
    let listings: Vec<String> = ["ansible", "deployer"]
        .iter()
        .map(|tool| listing("tb1", &format!("{root}-{tool}")))
        .collect();
    let without_times = |l: &str| {
        l.lines()
            .filter(|x| !x.starts_with("times:") && !x.chars().all(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_times(&listings[0]),
        without_times(&listings[1]),
        "ansible vs deployer"
    );
    let want = "facts: cleared
item-a: a 0 1/3 first=True last=False prev=-
item-b: b 1 2/3 first=False last=False prev=a
item-c: c 2 3/3 first=False last=True prev=b
role-import: import deploy
role-include: include deploy
role-include-applied: include-applied root
who-applied: root";
    assert_eq!(without_times(&listings[1]), want, "deployer:\n{d}");
    // loop_control.pause: the second item ran at least a second after the first.
    for tool in ["ansible", "deployer"] {
        let t = on_host("tb1", &format!("cat {root}-{tool}/times"));
        let ns: Vec<u128> = t.lines().map(|l| l.trim().parse().expect("ns")).collect();
        assert_eq!(ns.len(), 2, "{tool}: {t}");
        assert!(ns[1] - ns[0] >= 950_000_000, "{tool} did not pause: {t}");
    }
    clean(root);
}

/// `file: state=link` with mode and owner: as Ansible (follow, the
/// default), they are the target's, set in the run that makes the link; the
/// second run changes nothing.
#[test]
fn file_link_sets_the_targets_mode_and_owner_in_the_same_run() {
    let root = "/srv/parity-link";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb2
  gather_facts: false
  tasks:
    - file: {path: "{{ root }}", state: directory}
    - copy: {dest: "{{ root }}/target", content: "t\n"}
    - file: {path: "{{ root }}/link", src: "{{ root }}/target", state: link, mode: "0640", owner: deploy}
"#,
    )]);
    let (a, d) = both(dir.path(), root, &[], (0, 0));
    same_recaps(&a, &d, &["tb2"]);
    for tool in ["ansible", "deployer"] {
        let got = on_host(
            "tb2",
            &format!("cd {root}-{tool} && stat -c '%n %a %U' target && readlink link"),
        );
        assert_eq!(
            got,
            format!("target 640 deploy\n{root}-{tool}/target\n"),
            "{tool}"
        );
    }
    let (a, d) = both(dir.path(), root, &[], (0, 0));
    same_recaps(&a, &d, &["tb2"]);
    assert_eq!(ansible_recap(&d, "tb2")["changed"], 0, "{d}");
    clean(root);
}

/// Loops on a block or an import, and `register` on a block, are errors in
/// Ansible: both tools refuse the playbook before changing anything.
#[test]
fn loops_on_blocks_and_imports_and_register_on_a_block_are_refused() {
    let root = "/srv/parity-refused";
    clean(root);
    for (case, tasks) in [
        (
            "block loop",
            "    - block:\n        - file: {path: \"{{ root }}\", state: directory}\n      loop: [1, 2]\n",
        ),
        (
            "block register",
            "    - block:\n        - file: {path: \"{{ root }}\", state: directory}\n      register: r\n",
        ),
        (
            "import loop",
            "    - import_tasks: t.yml\n      loop: [1, 2]\n",
        ),
        (
            "become on an include",
            "    - include_tasks: t.yml\n      become: true\n",
        ),
    ] {
        let site = format!("- hosts: tb3\n  gather_facts: false\n  tasks:\n{tasks}");
        let dir = project(&[
            ("site.yml", site.as_str()),
            (
                "t.yml",
                "- file: {path: \"{{ root }}\", state: directory}\n",
            ),
        ]);
        let a = ansible_playbook(
            dir.path(),
            &["site.yml", "-e", &format!("root={root}-ansible")],
        );
        assert_ne!(a.code, 0, "{case}: ansible accepted it:\n{}", a.all());
        let d = deployer(
            dir.path(),
            &[
                "apply",
                "-i",
                &inv(),
                "site.yml",
                "-e",
                &format!("root={root}-deployer"),
            ],
        );
        assert_ne!(d.code, 0, "{case}: deployer accepted it:\n{}", d.all());
        assert!(
            d.all().contains("site.yml:"),
            "{case}: no file:line in\n{}",
            d.all()
        );
        on_host(
            "tb3",
            &format!("test ! -e {root}-ansible && test ! -e {root}-deployer"),
        );
    }
}

/// Task keywords that change what runs: pre_tasks and post_tasks order,
/// with_items (flattened once) and with_list (not), check_mode on a task,
/// args (chdir), become_user, and loop_control.label shown instead of the item.
#[test]
fn task_keywords_order_with_lists_check_mode_args_become_user_and_label() {
    let root = "/srv/parity-task-keywords";
    clean(root);
    let dir = project(&[(
        "site.yml",
        r#"- hosts: tb3
  gather_facts: false
  pre_tasks:
    - file: {path: "{{ root }}", state: directory, mode: "0777"}
    - shell: echo pre >> {{ root }}/order
  post_tasks:
    - shell: echo post >> {{ root }}/order
  tasks:
    - shell: echo task >> {{ root }}/order
    - shell: echo {{ item }} >> {{ root }}/items
      with_items: [[a, b], c]
    - shell: echo {{ item | length }} >> {{ root }}/list
      with_list: [[a, b], c]
    - copy: {dest: "{{ root }}/check", content: "x"}
      check_mode: true
    - command: pwd
      args: {chdir: /tmp}
      register: where
    - shell: id -un > {{ root }}/user
      become_user: deploy
    - copy: {dest: "{{ root }}/where", content: "{{ where.stdout }}"}
    - debug: {msg: "{{ item.n }}"}
      loop: [{n: 1, hidden: not-in-the-label}]
      loop_control: {label: "item-{{ item.n }}"}
"#,
    )]);
    let (a, d) = both(dir.path(), root, &[], (0, 0));
    same_recaps(&a, &d, &["tb3"]);
    let want = "items: a\nb\nc\nlist: 2\n1\norder: pre\ntask\npost\nuser: deploy\nwhere: /tmp\n";
    for tool in ["ansible", "deployer"] {
        assert_eq!(listing("tb3", &format!("{root}-{tool}")), want, "{tool}");
    }
    for (tool, out) in [("ansible", &a), ("deployer", &d)] {
        assert!(out.contains("(item=item-1)"), "{tool}:\n{out}");
        assert!(!out.contains("not-in-the-label"), "{tool}:\n{out}");
    }
    clean(root);
}
