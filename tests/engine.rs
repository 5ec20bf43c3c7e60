//! The engine against the real testbed: three Debian hosts running OpenSSH.
//! Each test works under its own directory on the hosts, so tests can run in parallel.

mod common;

use common::*;

/// A ~30-task role: templates, copies, files, lineinfile, blockinfile, commands.
fn thirty_task_project(root: &str) -> tempfile::TempDir {
    let mut tasks = format!(
        "- name: root dir\n  ansible.builtin.file:\n    path: {root}\n    state: directory\n    mode: '0755'\n"
    );
    for i in 0..10 {
        tasks.push_str(&format!(
            "- name: template {i}\n  ansible.builtin.template:\n    src: conf.j2\n    dest: {root}/conf{i}.txt\n    mode: '0640'\n  vars:\n    idx: {i}\n  notify: note change\n"
        ));
    }
    for i in 0..6 {
        tasks.push_str(&format!(
            "- name: copy {i}\n  ansible.builtin.copy:\n    content: \"copy {i} of {{{{ app_name }}}}\\n\"\n    dest: {root}/copy{i}.txt\n"
        ));
    }
    for i in 0..5 {
        tasks.push_str(&format!("- name: dir {i}\n  ansible.builtin.file:\n    path: {root}/d{i}\n    state: directory\n"));
    }
    for i in 0..4 {
        tasks.push_str(&format!(
            "- name: line {i}\n  ansible.builtin.lineinfile:\n    path: {root}/lines.txt\n    regexp: '^key{i}='\n    line: 'key{i}=v{i}'\n    create: true\n"
        ));
    }
    tasks.push_str(&format!(
        "- name: block\n  ansible.builtin.blockinfile:\n    path: {root}/lines.txt\n    block: |\n      one\n      two\n"
    ));
    for i in 0..3 {
        tasks.push_str(&format!(
            "- name: command {i}\n  ansible.builtin.command: touch {root}/cmd{i}\n  args:\n    creates: {root}/cmd{i}\n"
        ));
    }
    tasks.push_str("- name: link\n  ansible.builtin.file:\n    src: ");
    tasks.push_str(&format!(
        "{root}/conf0.txt\n    dest: {root}/link0\n    state: link\n"
    ));
    project(&[
        (
            "site.yml",
            "- hosts: testbed\n  become: true\n  gather_facts: false\n  roles:\n    - bench\n",
        ),
        (
            "roles/bench/defaults/main.yml",
            "app_name: demo\nport_base: 8000\n",
        ),
        (
            "roles/bench/templates/conf.j2",
            "# template {{ idx }}\nname={{ app_name }}\nport={{ port_base + idx }}\nhost={{ inventory_hostname }}\n",
        ),
        ("roles/bench/tasks/main.yml", &tasks),
        (
            "roles/bench/handlers/main.yml",
            &format!("- name: note change\n  ansible.builtin.command: touch {root}/handler-ran\n"),
        ),
    ])
}

#[test]
fn thirty_tasks_converge_then_rerun_is_idempotent_and_cheap() {
    let root = "/srv/dt-thirty";
    let p = thirty_task_project(root);
    for h in ["tb1", "tb2", "tb3"] {
        on_host(h, &format!("rm -rf {root}"));
    }
    let dir = p.path();
    let first = deployer(
        dir,
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(first.code, 0, "{}", first.all());
    let r1 = recap(&first.stdout);
    assert!(
        total(&r1, "changed") >= 3 * 30,
        "first apply should change everything: {r1}"
    );
    for h in ["tb1", "tb2", "tb3"] {
        let conf = on_host(
            h,
            &format!(
                "cat {root}/conf3.txt; stat -c %a {root}/conf3.txt; cat {root}/lines.txt; ls {root}/handler-ran"
            ),
        );
        assert!(conf.contains(&format!("port=8003\nhost={h}\n")), "{conf}");
        assert!(conf.contains("640\n"), "{conf}");
        assert!(
            conf.contains(
                "key3=v3\n# BEGIN ANSIBLE MANAGED BLOCK\none\ntwo\n# END ANSIBLE MANAGED BLOCK\n"
            ),
            "{conf}"
        );
        assert!(conf.contains("handler-ran"), "{conf}");
    }
    let second = deployer(
        dir,
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(second.code, 0, "{}", second.all());
    let r2 = recap(&second.stdout);
    assert_eq!(
        total(&r2, "changed"),
        0,
        "second apply must change nothing: {}",
        second.stdout
    );
    for (h, s) in r2["hosts"].as_object().expect("hosts") {
        let n = s["remote_executions"].as_u64().expect("count");
        assert!(
            n <= 3,
            "{h}: {n} remote executions on an idempotent re-run (limit 3)"
        );
    }

    // Edit one template: check --diff shows exactly that change and exits 2.
    std::fs::write(
        dir.join("roles/bench/templates/conf.j2"),
        "# template {{ idx }}\nname={{ app_name }}\nport={{ port_base + idx }}\nhost={{ inventory_hostname }}\nextra=1\n",
    )
    .expect("edit");
    let check = deployer(
        dir,
        &["check", "--diff", "-i", &inv(), "site.yml", "-l", "tb1"],
    );
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(check.stdout.contains("+extra=1"), "{}", check.stdout);
    assert_eq!(
        check.stdout.matches("changed: [tb1]").count(),
        10,
        "only the 10 templates change:\n{}",
        check.stdout
    );
    assert!(
        !on_host("tb1", &format!("cat {root}/conf0.txt")).contains("extra=1"),
        "check mode must not write"
    );
}

#[test]
fn handlers_run_once_only_when_notified_by_a_change() {
    let root = "/srv/dt-handlers";
    on_host("tb2", &format!("rm -rf {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: tb2\n  become: true\n  gather_facts: false\n  tasks:\n    - file: {{path: {root}, state: directory}}\n    - copy: {{content: 'a', dest: {root}/a}}\n      notify: [count]\n    - copy: {{content: 'b', dest: {root}/b}}\n      notify: count\n  handlers:\n    - name: count\n      shell: echo x >> {root}/count\n"
        ),
    )]);
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(on_host("tb2", &format!("cat {root}/count")), "x\n");
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        on_host("tb2", &format!("cat {root}/count")),
        "x\n",
        "no change, no handler"
    );
}

#[test]
fn tags_select_tasks_with_always_and_never() {
    let root = "/srv/dt-tags";
    on_host("tb3", &format!("rm -rf {root}; mkdir -p {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: tb3\n  become: true\n  gather_facts: false\n  tasks:\n    - copy: {{content: x, dest: {root}/plane}}\n      tags: plane\n    - copy: {{content: x, dest: {root}/other}}\n      tags: other\n    - copy: {{content: x, dest: {root}/always}}\n      tags: always\n    - copy: {{content: x, dest: {root}/never}}\n      tags: never\n    - block:\n        - copy: {{content: x, dest: {root}/inblock}}\n      tags: plane\n"
        ),
    )]);
    let out = deployer(
        p.path(),
        &["apply", "-i", &inv(), "site.yml", "--tags", "plane"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        on_host("tb3", &format!("cd {root} && ls | sort | tr '\\n' ' '")),
        "always inblock plane "
    );
    let out = deployer(
        p.path(),
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "--skip-tags",
            "plane,always",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        on_host("tb3", &format!("cd {root} && ls | sort | tr '\\n' ' '")),
        "always inblock other plane "
    );
}

#[test]
fn become_is_needed_for_root_owned_paths() {
    let p = project(&[(
        "site.yml",
        "- hosts: tb1\n  gather_facts: true\n  become: false\n  tasks:\n    - command: id -un\n      register: who\n      changed_when: false\n    - command: id -un\n      become: true\n      register: root\n      changed_when: false\n    - assert:\n        that:\n          - who.stdout == 'deploy'\n          - root.stdout == 'root'\n          - ansible_user_id == 'deploy'\n    - copy: {content: x, dest: /root/dt-no-become}\n",
    )]);
    // Without `ansible_become` (a variable would win over the keywords, as in
    // Ansible): the play's `become: false` and the task's `become: true` decide.
    let text = std::fs::read_to_string(testbed_inventory()).expect("inventory");
    assert!(text.contains("    ansible_become: true\n"), "{text}");
    std::fs::write(
        p.path().join("inv.yml"),
        text.replace("    ansible_become: true\n", ""),
    )
    .expect("write inventory");
    let out = deployer(p.path(), &["apply", "-i", "inv.yml", "site.yml"]);
    assert_eq!(
        out.code,
        1,
        "writing to /root without become must fail:\n{}",
        out.all()
    );
    assert!(out.stdout.contains("ok: [tb1] assert"), "{}", out.stdout);
    assert!(out.stdout.contains("failed: [tb1] copy"), "{}", out.stdout);
}

#[test]
fn loops_register_when_and_changed_when() {
    let root = "/srv/dt-loops";
    on_host("tb1", &format!("rm -rf {root}; mkdir -p {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: tb1\n  become: true\n  gather_facts: false\n  vars:\n    names: [a, b, c]\n  tasks:\n    - copy:\n        content: \"{{{{ item }}}}\\n\"\n        dest: \"{root}/{{{{ item }}}}\"\n      loop: \"{{{{ names }}}}\"\n      when: item != 'b'\n      register: copied\n    - shell: ls {root} | wc -l\n      register: count\n      changed_when: false\n      failed_when: count.stdout | int != 2\n    - debug:\n        msg: \"{{{{ copied.results | length }}}} results, changed={{{{ copied.changed }}}}\"\n    - set_fact:\n        total: \"{{{{ count.stdout | int + 1 }}}}\"\n    - assert:\n        that: total | int == 3\n"
        ),
    )]);
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("3 results, changed=True"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("skipping: [tb1] copy => (item=b)"),
        "{}",
        out.stdout
    );
}

#[test]
fn block_rescue_always() {
    let root = "/srv/dt-block";
    on_host("tb2", &format!("rm -rf {root}; mkdir -p {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: tb2\n  become: true\n  gather_facts: false\n  tasks:\n    - block:\n        - command: /bin/false\n        - copy: {{content: x, dest: {root}/not-reached}}\n      rescue:\n        - copy: {{content: x, dest: {root}/rescued}}\n      always:\n        - copy: {{content: x, dest: {root}/always}}\n    - copy: {{content: x, dest: {root}/after}}\n"
        ),
    )]);
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(
        out.code,
        0,
        "rescued failures do not fail the run:\n{}",
        out.all()
    );
    assert_eq!(
        on_host("tb2", &format!("cd {root} && ls | sort | tr '\\n' ' '")),
        "after always rescued "
    );
}

#[test]
fn unknown_module_is_a_load_error_with_file_and_line_and_nothing_runs() {
    let root = "/srv/dt-badmodule";
    on_host("tb1", &format!("rm -rf {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: tb1\n  become: true\n  tasks:\n    - file: {{path: {root}, state: directory}}\n    - copyy:\n        dest: /tmp/x\n"
        ),
    )]);
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("site.yml:5:7: error[schema-unknown-module] unknown module 'copyy'"),
        "{}",
        out.stderr
    );
    assert_eq!(
        on_host("tb1", &format!("test -e {root} && echo yes || echo no")),
        "no\n",
        "a load error changes nothing"
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "- hosts: all\n  tasks:\n    - name: x\n      copy: {dest: /tmp/x, content: [unclosed\n",
            "site.yml:",
        ),
        (
            "- hosts: all\n  tasks:\n    - file:\n        path: /x\n      colour: red\n",
            "site.yml:5:7: error[schema-task-keyword] unknown task keyword 'colour'",
        ),
        (
            "- hosts: all\n  roles: [missing_role]\n",
            "role 'missing_role' not found",
        ),
        (
            "- hosts: all\n  tasks:\n    - copy: {content: a, dest: /tmp/a}\n      notify: nobody\n",
            "notifies 'nobody', but no handler",
        ),
        (
            "- hosts: all\n  tasks:\n    - file: {path: /a}\n      loop: [1]\n      with_items: [2]\n",
            "a task can have only one loop",
        ),
        (
            "- hosts: all\n  tasks:\n    - a: 1\n      b: 2\n",
            "unknown task keyword 'a'",
        ),
        (
            "- hosts: all\n  tasks:\n    - file: {path: /a}\n      copy: {dest: /b}\n",
            "this one names file and copy",
        ),
        (
            "- hosts: all\n  tasks:\n    - community.docker.docker_image: {name: x}\n",
            "docker_image is not implemented",
        ),
        (
            "- hosts: all\n  strategy: debug\n  tasks: []\n",
            "strategy 'debug' (the interactive task debugger) is not supported yet",
        ),
        (
            "- hosts: all\n  strategy: fastest\n  tasks: []\n",
            "unknown strategy 'fastest' (expected linear, free or host_pinned)",
        ),
        (
            "- hosts: all\n  strategy: \"{{ s }}\"\n  tasks: []\n",
            "a templated strategy is not supported yet",
        ),
        (
            "- hosts: all\n  serial: [1, '5x']\n  tasks: []\n",
            "serial: expected a number of hosts or a percentage",
        ),
        (
            "- hosts: all\n  max_fail_percentage: lots\n  tasks: []\n",
            "max_fail_percentage: expected a percentage",
        ),
        (
            "- hosts: all\n  tasks:\n    - command: /bin/true\n      async: 10\n",
            "site.yml:4:7: error[schema-task-keyword] the task keyword 'async' is not supported yet by deployer",
        ),
    ];
    for (yaml, expected) in cases {
        let p = project(&[("site.yml", yaml)]);
        let out = deployer(p.path(), &["check", "-i", &inv(), "site.yml"]);
        assert_eq!(out.code, 1, "{yaml}\n{}", out.all());
        assert!(
            out.stderr.contains(expected),
            "expected '{expected}' for:\n{yaml}\ngot: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn undefined_variable_in_a_template_names_file_line_and_variable() {
    let p = project(&[
        (
            "site.yml",
            "- hosts: tb2\n  gather_facts: false\n  tasks:\n    - template: {src: t.j2, dest: /tmp/dt-undefined}\n",
        ),
        (
            "templates/t.j2",
            "line one\nvalue={{ not_defined_anywhere }}\n",
        ),
    ]);
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("t.j2:2"), "{}", out.all());
    assert!(out.all().contains("not_defined_anywhere"), "{}", out.all());
}

#[test]
fn unreachable_host_is_reported_by_name() {
    let p = project(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    ghost:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n      ansible_user: nobody\n",
        ),
        (
            "site.yml",
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - ping:\n",
        ),
    ]);
    let out = deployer(p.path(), &["apply", "-i", "hosts.yml", "site.yml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("unreachable: [ghost]"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("unreachable=1"), "{}", out.stdout);
}

#[test]
fn file_module_states_and_stat_results() {
    let root = "/srv/dt-file";
    on_host("tb3", &format!("rm -rf {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: tb3\n  become: true\n  gather_facts: false\n  tasks:\n    - file: {{path: {root}/a/b, state: directory, mode: '0750', owner: deploy}}\n    - file: {{path: {root}/t, state: touch}}\n    - file: {{src: {root}/t, dest: {root}/l, state: link}}\n    - file: {{path: {root}/gone, state: absent}}\n    - stat: {{path: {root}/a/b}}\n      register: st\n    - assert:\n        that:\n          - st.stat.isdir\n          - st.stat.mode == '0750'\n          - st.stat.pw_name == 'deploy'\n"
        ),
    )]);
    let out = deployer(
        p.path(),
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        on_host(
            "tb3",
            &format!("readlink {root}/l; stat -c '%a %U' {root}/a/b")
        ),
        format!("{root}/t\n750 deploy\n")
    );
}

#[test]
fn plan_json_and_markdown_describe_changes() {
    let p = project(&[(
        "site.yml",
        "- hosts: tb1\n  become: true\n  gather_facts: false\n  tasks:\n    - copy: {content: \"new\\n\", dest: /srv/dt-plan-never-written}\n",
    )]);
    let out = deployer(
        p.path(),
        &["plan", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan is JSON");
    assert_eq!(plan["would_change"], true);
    assert_eq!(plan["tasks"][0]["status"], "changed");
    assert_eq!(plan["tasks"][0]["diffs"][0]["after"], "new\n");
    let md = deployer(
        p.path(),
        &["plan", "-i", &inv(), "site.yml", "--format", "markdown"],
    );
    assert!(
        md.stdout.contains("```diff") && md.stdout.contains("+new"),
        "{}",
        md.stdout
    );
    assert_eq!(
        on_host(
            "tb1",
            "test -e /srv/dt-plan-never-written && echo yes || echo no"
        ),
        "no\n"
    );
}

#[test]
fn wait_for_fail_ignore_errors_and_include_tasks() {
    let root = "/srv/dt-waitfor";
    on_host(
        "tb1",
        &format!("rm -rf {root}; mkdir -p {root}; touch {root}/ready"),
    );
    let p = project(&[
        (
            "site.yml",
            &format!(
                "- hosts: tb1\n  become: true\n  gather_facts: false\n  tasks:\n    - wait_for: {{path: {root}/ready, timeout: 5}}\n    - wait_for: {{port: 22, timeout: 5}}\n    - wait_for: {{path: {root}/never, timeout: 1}}\n      register: timed_out\n      ignore_errors: true\n    - fail: {{msg: boom}}\n      ignore_errors: true\n    - include_tasks: more.yml\n    - assert:\n        that:\n          - timed_out is failed\n          - from_include == 'yes'\n"
            ),
        ),
        ("more.yml", "- set_fact:\n    from_include: 'yes'\n"),
    ]);
    let out = deployer(
        p.path(),
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let r = recap(&out.stdout);
    assert_eq!(r["hosts"]["tb1"]["ignored"], 2, "{r}");
    let failed_msgs: Vec<String> = events(&out.stdout)
        .iter()
        .filter(|e| e["status"] == "failed")
        .map(|e| e["msg"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        failed_msgs
            .iter()
            .any(|m| m.contains("Timeout when waiting for")),
        "{failed_msgs:?}"
    );
    assert!(failed_msgs.iter().any(|m| m == "boom"), "{failed_msgs:?}");
}

#[test]
fn uri_fetches_from_the_target_and_checks_the_status() {
    let root = "/srv/dt-uri";
    on_host(
        "tb2",
        &format!(
            "rm -rf {root}; mkdir -p {root}; echo '{{\"ok\": true}}' > {root}/status.json; cd {root} && setsid -f python3 -m http.server 18081 --bind 127.0.0.1 </dev/null >/dev/null 2>&1; sleep 1"
        ),
    );
    let p = project(&[(
        "site.yml",
        "- hosts: tb2\n  gather_facts: false\n  tasks:\n    - uri: {url: 'http://127.0.0.1:18081/status.json', return_content: true}\n      register: r\n    - assert:\n        that:\n          - r.status == 200\n          - r.json.ok\n    - uri: {url: 'http://127.0.0.1:18081/missing'}\n      register: missing\n      ignore_errors: true\n    - assert:\n        that:\n          - missing is failed\n          - missing.status == 404\n",
    )]);
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    // The bracket keeps pkill from matching (and killing) this very shell.
    on_host_status("tb2", "pkill -f '[h]ttp.server 18081'");
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("Status code was 404"), "{}", out.stdout);
}

#[test]
fn a_role_sees_the_defaults_of_the_roles_it_depends_on() {
    let p = project(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
        ),
        (
            "site.yml",
            "- hosts: all\n  gather_facts: false\n  roles: [app]\n",
        ),
        (
            "roles/db/defaults/main.yml",
            "db_port: 5432\nshared: from-db\n",
        ),
        (
            "roles/db/tasks/main.yml",
            "- ansible.builtin.debug: {msg: \"db sees {{ shared }}\"}\n",
        ),
        ("roles/app/meta/main.yml", "dependencies: [db]\n"),
        ("roles/app/defaults/main.yml", "shared: from-app\n"),
        (
            "roles/app/tasks/main.yml",
            "- ansible.builtin.debug: {msg: \"app sees port {{ db_port }} and {{ shared }}\"}\n",
        ),
    ]);
    let out = deployer(p.path(), &["apply", "-i", "hosts.yml", "site.yml"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("app sees port 5432 and from-app"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("db sees from-db"), "{}", out.stdout);
    forget_local_state(p.path());
}

/// Regression: a role's tags (from `roles:` or a meta dependency) and its
/// `when` did not reach the tasks inside its blocks or included files, so
/// `--tags plane` skipped roles/postgresql (a block) without a word, and a
/// role's `when: false` did not stop its blocks.
#[test]
fn role_tags_and_when_reach_the_tasks_in_its_blocks_and_includes() {
    let p = project(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
        ),
        (
            "site.yml",
            "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: top\n      tags: [picked]\n      when: run_top | default(true) | bool\n",
        ),
        (
            "roles/top/meta/main.yml",
            "dependencies:\n  - role: dep\n    tags: [picked]\n",
        ),
        (
            "roles/top/tasks/main.yml",
            "- name: in top's block\n  block:\n    - name: top block task\n      debug: {msg: top-block}\n- name: top include\n  include_tasks: more.yml\n",
        ),
        (
            "roles/top/tasks/more.yml",
            "- name: top included task\n  debug: {msg: top-included}\n",
        ),
        (
            "roles/dep/tasks/main.yml",
            "- name: dep block\n  when: true\n  block:\n    - name: dep block task\n      debug: {msg: dep-block}\n",
        ),
    ]);
    let ran = |extra: &[&str]| -> Vec<(String, String)> {
        let mut args = vec![
            "apply",
            "-i",
            "hosts.yml",
            "site.yml",
            "--tags",
            "picked",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = deployer(p.path(), &args);
        assert_eq!(out.code, 0, "{}", out.all());
        events(&out.stdout)
            .into_iter()
            .filter(|e| e["event"] == "task_result")
            .map(|e| {
                (
                    e["task"].as_str().unwrap_or_default().to_string(),
                    e["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let got = ran(&[]);
    for task in ["dep block task", "top block task", "top included task"] {
        assert!(
            got.contains(&(task.to_string(), "ok".to_string())),
            "{task} did not run under --tags picked: {got:?}"
        );
    }
    let got = ran(&["-e", "run_top=false"]);
    assert!(
        got.iter()
            .all(|(t, s)| t == "dep block task" && s == "ok" || s == "skipped"),
        "the role's when: false did not stop its tasks: {got:?}"
    );
    assert!(
        got.contains(&("top block task".to_string(), "skipped".to_string())),
        "{got:?}"
    );
}

/// The most intervals (`start end` in seconds, one per host) open at once.
fn most_at_once(intervals: &[(f64, f64)]) -> usize {
    intervals
        .iter()
        .map(|(s, _)| intervals.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

/// `throttle` on a task (templated) and on a block: at most that many hosts
/// run the task at once, as ansible-playbook does on the same three hosts
/// (each host records when its command ran; the host clocks are one clock).
/// The block comes first: deployer's hosts do not wait for each other between
/// tasks, so after a one-at-a-time task they reach the next one staggered.
/// A throttle that is not a number fails the task naming the value.
/// Each command lasts 4 s: on a loaded machine ansible-playbook's workers
/// start the three hosts' commands more than 2 s apart (CI once saw its free
/// task at 2 hosts at once with a 2 s command).
#[test]
fn throttle_limits_the_hosts_running_a_task_at_once_as_ansible() {
    let cmd = "date +%s.%N; sleep 4; date +%s.%N";
    let site = format!(
        "- hosts: testbed\n  gather_facts: false\n  vars:\n    one: 1\n  tasks:\n\
         \x20   - name: free\n      ansible.builtin.shell: \"{cmd}\"\n      register: free\n\
         \x20   - block:\n        - name: two at a time\n          ansible.builtin.shell: \"{cmd}\"\n          register: double\n      throttle: 2\n\
         \x20   - name: one at a time\n      ansible.builtin.shell: \"{cmd}\"\n      register: single\n      throttle: \"{{{{ one }}}}\"\n\
         \x20   - name: record\n      ansible.builtin.copy:\n        content: \"{{{{ free.stdout_lines | join(' ') }}}}\\n{{{{ single.stdout_lines | join(' ') }}}}\\n{{{{ double.stdout_lines | join(' ') }}}}\\n\"\n        dest: \"{{{{ out }}}}/{{{{ inventory_hostname }}}}\"\n      delegate_to: localhost\n"
    );
    let p = project(&[("site.yml", &site)]);
    let concurrency = |out: &std::path::Path| -> Vec<usize> {
        let mut per_task: Vec<Vec<(f64, f64)>> = vec![Vec::new(); 3];
        for host in ["tb1", "tb2", "tb3"] {
            let text = std::fs::read_to_string(out.join(host)).expect("recorded");
            for (i, line) in text.lines().enumerate() {
                let v: Vec<f64> = line
                    .split_whitespace()
                    .map(|x| x.parse().expect("time"))
                    .collect();
                per_task[i].push((v[0], v[1]));
            }
        }
        per_task.iter().map(|iv| most_at_once(iv)).collect()
    };
    let a_out = tempfile::tempdir().expect("tmp");
    let a = ansible_playbook(
        p.path(),
        &["site.yml", "-e", &format!("out={}", a_out.path().display())],
    );
    assert_eq!(a.code, 0, "{}", a.all());
    let d_out = tempfile::tempdir().expect("tmp");
    let d = deployer(
        p.path(),
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            &format!("out={}", d_out.path().display()),
        ],
    );
    assert_eq!(d.code, 0, "{}", d.all());
    let (ansible, ours) = (concurrency(a_out.path()), concurrency(d_out.path()));
    assert_eq!(ansible, vec![3, 1, 2], "ansible-playbook");
    assert_eq!(ours, ansible, "deployer");

    let bad = project(&[(
        "site.yml",
        "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - name: odd throttle\n      ansible.builtin.command: /bin/true\n      throttle: \"{{ 'x' }}\"\n",
    )]);
    let o = deployer(bad.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.all()
            .contains("Failed to convert the throttle value to an integer: 'x'"),
        "{}",
        o.all()
    );
}
