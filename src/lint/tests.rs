//! One test per rule: a small project in a tempdir, a failing and a passing example.

use std::path::Path;

use super::*;

/// Writes `files` (path, content) under a fresh project and lints it.
fn lint_project(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<Finding>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (p, c) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, c).expect("write");
    }
    let target = default_target(dir.path(), &[]);
    let findings = Linter::new().run(&target);
    (dir, findings)
}

fn has(findings: &[Finding], rule: &str, file: &str, line: usize) -> bool {
    findings
        .iter()
        .any(|f| f.rule == rule && f.line == line && f.file.ends_with(Path::new(file)))
}

fn rules(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{}:{}:{} {}", f.file.display(), f.line, f.rule, f.message))
        .collect()
}

/// `rule` is reported at `file:line` for `bad`, and not at all for `good`.
fn case(rule: &str, bad: &[(&str, &str)], file: &str, line: usize, good: &[(&str, &str)]) {
    let (_d, f) = lint_project(bad);
    assert!(
        has(&f, rule, file, line),
        "expected {rule} at {file}:{line}, got {:#?}",
        rules(&f)
    );
    let (_d, f) = lint_project(good);
    assert!(
        !f.iter().any(|x| x.rule == rule),
        "expected no {rule} in the good example, got {:#?}",
        rules(&f)
    );
}

fn pb(tasks: &str) -> String {
    format!("- name: P\n  hosts: all\n  tasks:\n{tasks}")
}

const ROLE_PB: &str = "- name: P\n  hosts: all\n  roles:\n    - r\n";

#[test]
fn file_binary() {
    case(
        "file-binary",
        &[("playbooks/a.yml", "a: 1\n\0\n")],
        "playbooks/a.yml",
        2,
        &[("playbooks/a.yml", "a: 1\n")],
    );
}

#[test]
fn file_encoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("playbooks")).expect("mkdir");
    std::fs::write(dir.path().join("playbooks/a.yml"), b"a: 1\nb: caf\xe9\n").expect("write");
    let f = Linter::new().run(&default_target(dir.path(), &[]));
    assert!(
        has(&f, "file-encoding", "playbooks/a.yml", 2),
        "{:#?}",
        rules(&f)
    );
}

#[test]
fn yaml_syntax() {
    case(
        "yaml-syntax",
        &[("playbooks/a.yml", "a: 1\nb: [1, 2\nc: 3\n")],
        "playbooks/a.yml",
        3,
        &[("playbooks/a.yml", "a: 1\nb: [1, 2]\nc: 3\n")],
    );
}

#[test]
fn yaml_duplicate_key_reports_every_duplicate() {
    let (_d, f) = lint_project(&[("playbooks/a.yml", "a: 1\nb: 2\na: 3\nb: 4\n")]);
    assert!(
        has(&f, "yaml-duplicate-key", "playbooks/a.yml", 3),
        "{:#?}",
        rules(&f)
    );
    assert!(
        has(&f, "yaml-duplicate-key", "playbooks/a.yml", 4),
        "{:#?}",
        rules(&f)
    );
    let (_d, f) = lint_project(&[("playbooks/a.yml", "a: 1\nb: 2\n")]);
    assert!(f.is_empty(), "{:#?}", rules(&f));
}

#[test]
fn yaml_tabs() {
    case(
        "yaml-tabs",
        &[("playbooks/a.yml", "a:\n\t- 1\n")],
        "playbooks/a.yml",
        2,
        &[("playbooks/a.yml", "a:\n  - \"\\t\"\n")],
    );
}

#[test]
fn yaml_truthy() {
    case(
        "yaml-truthy",
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n      ignore_errors: yes\n"),
        )],
        "playbooks/a.yml",
        6,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n      ignore_errors: true\n"),
        )],
    );
}

#[test]
fn yaml_octal_mode() {
    let t = |m: &str| {
        pb(&format!(
            "    - name: f\n      ansible.builtin.file:\n        path: /x\n        mode: {m}\n"
        ))
    };
    case(
        "yaml-octal-mode",
        &[("playbooks/a.yml", &t("0644"))],
        "playbooks/a.yml",
        7,
        &[("playbooks/a.yml", &t("\"0644\""))],
    );
    case(
        "yaml-octal-mode",
        &[("playbooks/a.yml", &t("644"))],
        "playbooks/a.yml",
        7,
        &[("playbooks/a.yml", &t("u=rw,g=r"))],
    );
}

#[test]
fn schema_play_keyword() {
    case(
        "schema-play-keyword",
        &[(
            "playbooks/a.yml",
            "- hosts: all\n  strategy: free\n  hostz: x\n",
        )],
        "playbooks/a.yml",
        3,
        &[("playbooks/a.yml", "- hosts: all\n  gather_facts: false\n")],
    );
}

#[test]
fn schema_task_keyword() {
    case(
        "schema-task-keyword",
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n      async: 10\n"),
        )],
        "playbooks/a.yml",
        6,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n      tags: [x]\n"),
        )],
    );
}

#[test]
fn schema_unknown_module() {
    case(
        "schema-unknown-module",
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.pingg:\n"),
        )],
        "playbooks/a.yml",
        5,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n"),
        )],
    );
}

#[test]
fn schema_unsupported_module() {
    case(
        "schema-unsupported-module",
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      community.docker.docker_image:\n        name: x\n"),
        )],
        "playbooks/a.yml",
        5,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n"),
        )],
    );
}

#[test]
fn module_other_os() {
    case(
        "module-other-os",
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      yum:\n        name: x\n      when: false\n"),
        )],
        "playbooks/a.yml",
        5,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      apt:\n        name: x\n"),
        )],
    );
    // A warning, not an error: the role loads.
    let (_d, f) = lint_project(&[(
        "playbooks/a.yml",
        &pb("    - name: t\n      community.general.pacman: {name: x, state: present}\n"),
    )]);
    assert!(
        f.iter()
            .all(|x| x.severity == Severity::Warning || x.rule != "module-other-os")
            && !f.iter().any(|x| x.severity == Severity::Error),
        "{:#?}",
        rules(&f)
    );
    // A misspelt argument is still an error, at its line.
    let (_d, f) = lint_project(&[(
        "playbooks/a.yml",
        &pb("    - name: t\n      ansible.builtin.dnf:\n        name: x\n        stat: present\n"),
    )]);
    assert!(
        has(&f, "schema-unknown-arg", "playbooks/a.yml", 7),
        "{:#?}",
        rules(&f)
    );
}

#[test]
fn schema_two_modules_and_no_module() {
    case(
        "schema-two-modules",
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n      ansible.builtin.debug:\n"),
        )],
        "playbooks/a.yml",
        6,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.debug:\n"),
        )],
    );
    case(
        "schema-no-module",
        &[("playbooks/a.yml", &pb("    - name: t\n      tags: [x]\n"))],
        "playbooks/a.yml",
        4,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.debug:\n"),
        )],
    );
}

#[test]
fn schema_args() {
    let t = |args: &str| {
        pb(&format!(
            "    - name: c\n      ansible.builtin.copy:\n{args}"
        ))
    };
    case(
        "schema-unknown-arg",
        &[(
            "playbooks/a.yml",
            &t("        content: x\n        dest: /x\n        destination: /y\n"),
        )],
        "playbooks/a.yml",
        8,
        &[(
            "playbooks/a.yml",
            &t("        content: x\n        dest: /x\n"),
        )],
    );
    case(
        "schema-missing-arg",
        &[("playbooks/a.yml", &t("        content: x\n"))],
        "playbooks/a.yml",
        5,
        &[(
            "playbooks/a.yml",
            &t("        content: x\n        dest: /x\n"),
        )],
    );
    case(
        "schema-arg-type",
        &[(
            "playbooks/a.yml",
            &t("        content: x\n        dest: /x\n        backup: maybe\n"),
        )],
        "playbooks/a.yml",
        8,
        // A templated value where a boolean is expected is only known once rendered.
        &[(
            "playbooks/a.yml",
            &t(
                "        content: x\n        dest: /x\n        backup: \"{{ inventory_hostname == 'a' }}\"\n",
            ),
        )],
    );
}

#[test]
fn schema_structure() {
    case(
        "schema-structure",
        &[
            ("roles/r/tasks/main.yml", "name: not a list\n"),
            ("playbooks/a.yml", ROLE_PB),
        ],
        "roles/r/tasks/main.yml",
        1,
        &[
            (
                "roles/r/tasks/main.yml",
                "- name: t\n  ansible.builtin.ping:\n",
            ),
            ("playbooks/a.yml", ROLE_PB),
        ],
    );
}

#[test]
fn ref_role() {
    case(
        "ref-role",
        &[("playbooks/a.yml", ROLE_PB)],
        "playbooks/a.yml",
        4,
        &[
            ("playbooks/a.yml", ROLE_PB),
            (
                "roles/r/tasks/main.yml",
                "- name: t\n  ansible.builtin.ping:\n",
            ),
        ],
    );
}

#[test]
fn ref_role_cycle() {
    case(
        "ref-role-cycle",
        &[
            ("roles/a/meta/main.yml", "dependencies:\n  - b\n"),
            ("roles/b/meta/main.yml", "dependencies:\n  - role: a\n"),
        ],
        "roles/b/meta/main.yml",
        2,
        &[
            ("roles/a/meta/main.yml", "dependencies:\n  - b\n"),
            ("roles/b/meta/main.yml", "dependencies: []\n"),
        ],
    );
}

#[test]
fn ref_template_and_file() {
    let tpl = "- name: t\n  ansible.builtin.template:\n    src: app.conf.j2\n    dest: /x\n";
    case(
        "ref-template",
        &[
            ("playbooks/a.yml", ROLE_PB),
            ("roles/r/tasks/main.yml", tpl),
        ],
        "roles/r/tasks/main.yml",
        3,
        &[
            ("playbooks/a.yml", ROLE_PB),
            ("roles/r/tasks/main.yml", tpl),
            ("roles/r/templates/app.conf.j2", "x\n"),
        ],
    );
    let cp = "- name: t\n  ansible.builtin.copy:\n    src: a.txt\n    dest: /x\n";
    case(
        "ref-file",
        &[("playbooks/a.yml", ROLE_PB), ("roles/r/tasks/main.yml", cp)],
        "roles/r/tasks/main.yml",
        3,
        &[
            ("playbooks/a.yml", ROLE_PB),
            ("roles/r/tasks/main.yml", cp),
            ("roles/r/files/a.txt", "x\n"),
        ],
    );
}

#[test]
fn ref_task_file_and_vars_file() {
    let inc = pb("    - name: i\n      ansible.builtin.include_tasks: more.yml\n");
    case(
        "ref-task-file",
        &[("playbooks/a.yml", &inc)],
        "playbooks/a.yml",
        5,
        &[
            ("playbooks/a.yml", &inc),
            ("playbooks/more.yml", "- name: t\n  ansible.builtin.ping:\n"),
        ],
    );
    let vf = "- hosts: all\n  vars_files:\n    - vars/x.yml\n";
    case(
        "ref-vars-file",
        &[("playbooks/a.yml", vf)],
        "playbooks/a.yml",
        3,
        &[("playbooks/a.yml", vf), ("playbooks/vars/x.yml", "x: 1\n")],
    );
}

#[test]
fn ref_handlers() {
    let t = |notify: &str, handler: &str| {
        format!(
            "- hosts: all\n  tasks:\n    - name: t\n      ansible.builtin.ping:\n      notify: {notify}\n  handlers:\n    - name: {handler}\n      ansible.builtin.ping:\n"
        )
    };
    case(
        "ref-handler-missing",
        &[("playbooks/a.yml", &t("restart app", "restart ap"))],
        "playbooks/a.yml",
        5,
        &[("playbooks/a.yml", &t("restart app", "restart app"))],
    );
    case(
        "ref-handler-unused",
        &[("playbooks/a.yml", &t("restart app", "restart ap"))],
        "playbooks/a.yml",
        7,
        &[("playbooks/a.yml", &t("restart app", "restart app"))],
    );
}

#[test]
fn ref_undefined_var() {
    let t = |v: &str| {
        pb(&format!(
            "    - name: d\n      ansible.builtin.debug:\n        msg: \"{{{{ {v} }}}}\"\n"
        ))
    };
    case(
        "ref-undefined-var",
        &[
            ("playbooks/a.yml", &t("app_portt")),
            ("roles/r/defaults/main.yml", "app_port: 1\n"),
        ],
        "playbooks/a.yml",
        6,
        &[
            (
                "playbooks/a.yml",
                &t("app_port ~ reg.rc ~ inventory_hostname ~ maybe | default(1)"),
            ),
            ("roles/r/defaults/main.yml", "app_port: 1\n"),
            (
                "roles/r/tasks/main.yml",
                "- name: s\n  ansible.builtin.stat:\n    path: /x\n  register: reg\n",
            ),
        ],
    );
}

#[test]
fn fqcn() {
    case(
        "fqcn",
        &[("playbooks/a.yml", &pb("    - name: t\n      ping:\n"))],
        "playbooks/a.yml",
        5,
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.ping:\n"),
        )],
    );
}

#[test]
fn command_changed_when() {
    case(
        "command-changed-when",
        &[(
            "playbooks/a.yml",
            &pb("    - name: t\n      ansible.builtin.command: ls\n"),
        )],
        "playbooks/a.yml",
        5,
        &[(
            "playbooks/a.yml",
            &pb(
                "    - name: t\n      ansible.builtin.command: ls\n      changed_when: false\n    - name: u\n      ansible.builtin.shell: touch /x\n      args:\n        creates: /x\n",
            ),
        )],
    );
}

const COMPOSE_OK: &str = "services:\n  app:\n    image: \"nginx:{{ nginx_version }}\"\n    cap_drop: [ALL]\n    mem_limit: 256m\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n";

#[test]
fn compose_rules() {
    let ok = [
        ("roles/r/templates/docker-compose.yml.j2", COMPOSE_OK),
        ("roles/r/defaults/main.yml", "nginx_version: \"1.27.3\"\n"),
    ];
    let bad_tag = [
        ("roles/r/templates/docker-compose.yml.j2", COMPOSE_OK),
        ("roles/r/defaults/main.yml", "nginx_version: stable\n"),
    ];
    case(
        "image-pinned",
        &bad_tag,
        "roles/r/templates/docker-compose.yml.j2",
        3,
        &ok,
    );
    // With an images.lock, an image missing from it is a warning (apply refuses it).
    let lock = format!("nginx:1.27.3:\n  digest: sha256:{}\n", "a".repeat(64));
    let stale = [
        ("roles/r/templates/docker-compose.yml.j2", COMPOSE_OK),
        ("roles/r/defaults/main.yml", "nginx_version: \"1.27.4\"\n"),
        ("images.lock", lock.as_str()),
    ];
    let locked = [
        ("roles/r/templates/docker-compose.yml.j2", COMPOSE_OK),
        ("roles/r/defaults/main.yml", "nginx_version: \"1.27.3\"\n"),
        ("images.lock", lock.as_str()),
    ];
    case(
        "image-not-locked",
        &stale,
        "roles/r/templates/docker-compose.yml.j2",
        3,
        &locked,
    );
    let broken = [
        ("roles/r/templates/docker-compose.yml.j2", COMPOSE_OK),
        ("roles/r/defaults/main.yml", "nginx_version: \"1.27.3\"\n"),
        ("images.lock", "nginx:1.27.3:\n  digest: latest\n"),
    ];
    case("load-error", &broken, "images.lock", 2, &locked);
    let bare = "services:\n  app:\n    image: nginx\n{% if x is defined %}\n    ports: [\"80:80\"]\n{% endif %}\n";
    let bad = [("roles/r/templates/docker-compose.yml.j2", bare)];
    case(
        "image-pinned",
        &bad,
        "roles/r/templates/docker-compose.yml.j2",
        3,
        &ok,
    );
    case(
        "compose-cap-drop",
        &bad,
        "roles/r/templates/docker-compose.yml.j2",
        2,
        &ok,
    );
    case(
        "compose-mem-limit",
        &bad,
        "roles/r/templates/docker-compose.yml.j2",
        2,
        &ok,
    );
    case(
        "compose-healthcheck",
        &bad,
        "roles/r/templates/docker-compose.yml.j2",
        2,
        &ok,
    );
}

#[test]
fn plaintext_secret() {
    case(
        "plaintext-secret",
        &[(
            "inventory/group_vars/all.yml",
            "db_password: hunter2\napi_key_file: /etc/k\n",
        )],
        "inventory/group_vars/all.yml",
        1,
        &[(
            "inventory/group_vars/all.yml",
            "db_password: \"{{ vault_db_password }}\"\napi_key_file: /etc/k\nvault_db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n",
        )],
    );
}

#[test]
fn compose_restarted_env() {
    let tasks = |state: &str| {
        format!(
            "- name: env\n  ansible.builtin.template:\n    src: app.env.j2\n    dest: /opt/app/.env\n    mode: \"0600\"\n- name: up\n  community.docker.docker_compose_v2:\n    project_src: /opt/app\n    state: {state}\n"
        )
    };
    let files = |s: &str| {
        vec![
            ("playbooks/a.yml", ROLE_PB.to_string()),
            ("roles/r/tasks/main.yml", tasks(s)),
            ("roles/r/templates/app.env.j2", "A=1\n".to_string()),
        ]
    };
    let bad = files("restarted");
    let good = files("present");
    let b: Vec<(&str, &str)> = bad.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let g: Vec<(&str, &str)> = good.iter().map(|(a, b)| (*a, b.as_str())).collect();
    case("compose-restarted-env", &b, "roles/r/tasks/main.yml", 9, &g);
}

#[test]
fn jinja_rules() {
    case(
        "jinja-syntax",
        &[("roles/r/templates/a.j2", "line\n{% if x %}\nno end\n")],
        "roles/r/templates/a.j2",
        3,
        &[(
            "roles/r/templates/a.j2",
            "line\n{% if x is defined %}\nend\n{% endif %}\n",
        )],
    );
    case(
        "jinja-unknown-filter",
        &[("roles/r/templates/a.j2", "a\n{{ 'x|y' | to_nice_yamll }}\n")],
        "roles/r/templates/a.j2",
        2,
        &[("roles/r/templates/a.j2", "a\n{{ 'x|y' | to_nice_yaml }}\n")],
    );
    case(
        "jinja-unknown-lookup",
        &[("roles/r/templates/a.j2", "a\n{{ lookup('fiel', 'x') }}\n")],
        "roles/r/templates/a.j2",
        2,
        &[("roles/r/templates/a.j2", "a\n{{ lookup('env', 'HOME') }}\n")],
    );
    case(
        "jinja-unknown-test",
        &[(
            "playbooks/a.yml",
            &pb(
                "    - name: t\n      ansible.builtin.ping:\n      when: inventory_hostname is flobbed\n",
            ),
        )],
        "playbooks/a.yml",
        6,
        &[(
            "playbooks/a.yml",
            &pb(
                "    - name: t\n      ansible.builtin.ping:\n      when: inventory_hostname is match('a')\n",
            ),
        )],
    );
}

#[test]
fn load_error_when_rules_miss_it() {
    // The loader refuses a role under `roles:` pulled in twice as include_role with handlers:
    // simplest stand-in: a role reference keyword lint models only as a play keyword.
    let (_d, f) = lint_project(&[(
        "playbooks/a.yml",
        "- hosts: all\n  tasks:\n    - name: t\n      ansible.builtin.meta: flush_handlers\n",
    )]);
    assert!(f.is_empty(), "{:#?}", rules(&f));
}

#[test]
fn ignore_comments() {
    let bad = pb(
        "    - name: t\n      ansible.builtin.command: ls  # deployer-lint: ignore[command-changed-when] read-only listing\n",
    );
    let (_d, f) = lint_project(&[("playbooks/a.yml", &bad)]);
    assert!(f.is_empty(), "{:#?}", rules(&f));
    // The line above works too; a missing reason silences nothing and is a finding.
    let above = pb(
        "    # deployer-lint: ignore[command-changed-when]\n    - name: t\n      ansible.builtin.command: ls\n",
    );
    let (_d, f) = lint_project(&[("playbooks/a.yml", &above)]);
    assert!(
        has(&f, "lint-ignore-reason", "playbooks/a.yml", 4),
        "{:#?}",
        rules(&f)
    );
    assert!(
        has(&f, "command-changed-when", "playbooks/a.yml", 6),
        "{:#?}",
        rules(&f)
    );
    let file_level = format!(
        "# deployer-lint: ignore-file[fqcn] legacy playbook, converted later\n# deployer-lint: ignore[no-such-rule] why\n{}",
        pb("    - name: t\n      ping:\n")
    );
    let (_d, f) = lint_project(&[("playbooks/a.yml", &file_level)]);
    assert!(!f.iter().any(|x| x.rule == "fqcn"), "{:#?}", rules(&f));
    assert!(
        has(&f, "lint-ignore-unknown", "playbooks/a.yml", 2),
        "{:#?}",
        rules(&f)
    );
}

#[test]
fn every_rule_has_a_rationale_and_unique_id() {
    let mut ids = std::collections::HashSet::new();
    for r in RULES {
        assert!(ids.insert(r.id), "duplicate rule id {}", r.id);
        assert!(!r.rationale.is_empty());
    }
}

#[test]
fn secret_names() {
    for n in [
        "db_password",
        "api_token",
        "SECRET_KEY",
        "plane_agent_tokens",
        "apikey",
    ] {
        assert!(conventions::is_secret_name(n), "{n}");
    }
    for n in [
        "keycloak_realm",
        "ssh_key_file",
        "password_length",
        "monkey_count",
        "token_url",
    ] {
        assert!(!conventions::is_secret_name(n), "{n}");
    }
}

#[test]
fn whole_file_vault_is_not_yaml_and_defines_vault_names() {
    let (_d, f) = lint_project(&[
        ("inventory/hosts.yml", "all:\n  hosts:\n    a:\n"),
        (
            "inventory/group_vars/all/secrets.yml",
            "$ANSIBLE_VAULT;1.1;AES256\n6162636465\n",
        ),
        (
            "inventory/group_vars/all/main.yml",
            "db_password: \"{{ vault_db_password }}\"\n",
        ),
    ]);
    assert!(f.is_empty(), "{:#?}", rules(&f));
}

#[test]
fn docker_container_and_network_arguments_are_checked() {
    let c = |args: &str| {
        pb(&format!(
            "    - name: t\n      community.docker.docker_container:\n        name: web\n        image: web:1.0\n{args}"
        ))
    };
    case(
        "schema-unknown-arg",
        &[("playbooks/a.yml", &c("        privileged: true\n"))],
        "playbooks/a.yml",
        8,
        &[("playbooks/a.yml", &c("        memory: 64M\n"))],
    );
    let n = |args: &str| {
        pb(&format!(
            "    - name: t\n      community.docker.docker_network:\n{args}"
        ))
    };
    case(
        "schema-missing-arg",
        &[("playbooks/a.yml", &n("        driver: bridge\n"))],
        "playbooks/a.yml",
        5,
        &[(
            "playbooks/a.yml",
            &n("        name: front\n        ipam_config: [{subnet: 10.9.0.0/24}]\n"),
        )],
    );
}

/// Every finding of every format: the plaintext secret's key is shown, its
/// value never (also not in the source snippet, nor in other findings).
#[test]
fn plaintext_secret_findings_show_the_key_and_mask_the_value() {
    let (_d, f) = lint_project(&[
        (
            "inventory/group_vars/all.yml",
            "db_password: Tr0ub4dor-and-3\napi_token: \"s3cr3t-token-value\"\nsession_key: |\n  multi-line-secret\n  second-line-secret\n",
        ),
        (
            "roles/r/templates/app.env.j2",
            "API_SECRET=env-literal-secret\nGOOD={{ x }}\n",
        ),
        (
            "playbooks/site.yml",
            "- name: P\n  hosts: all\n  tasks:\n    - name: t\n      ansible.builtin.debug:\n        msg: \"Tr0ub4dor-and-3 {{ undefined_thing | nope }}\"\n",
        ),
    ]);
    let secrets = [
        "Tr0ub4dor-and-3",
        "s3cr3t-token-value",
        "multi-line-secret",
        "second-line-secret",
        "env-literal-secret",
    ];
    let plain: Vec<&Finding> = f.iter().filter(|x| x.rule == "plaintext-secret").collect();
    assert!(plain.len() >= 4, "{:#?}", rules(&f));
    let snippets: Vec<&str> = plain.iter().filter_map(|x| x.snippet.as_deref()).collect();
    assert!(snippets.contains(&"db_password: ********"), "{snippets:?}");
    assert!(snippets.contains(&"api_token: ********"), "{snippets:?}");
    assert!(snippets.contains(&"API_SECRET=********"), "{snippets:?}");
    let all = serde_json::to_string(&f).expect("json");
    let human = output::human(&f);
    for s in secrets {
        assert!(!all.contains(s), "{s} in {all}");
        assert!(!human.contains(s), "{s} in {human}");
    }
    // The other finding on the line that repeats the secret is still there.
    assert!(
        f.iter().any(|x| x.rule == "jinja-unknown-filter"),
        "{:#?}",
        rules(&f)
    );
}

/// `{% raw %}` is text: a filter-looking thing inside it is not a finding.
#[test]
fn raw_blocks_are_not_jinja() {
    let (_d, f) = lint_project(&[
        (
            "roles/r/templates/t.j2",
            "{% raw %}{{ x | not_a_filter }} {% if y is not_a_test %}{% endraw %}\n{%- raw -%}\n{{ z | nor_this }}\n{%- endraw %}\n{{ 1 | bad_after_raw }}\n",
        ),
        (
            "roles/r/tasks/main.yml",
            "- name: t\n  ansible.builtin.debug:\n    msg: \"{% raw %}{{ a | nope_in_task }}{% endraw %}\"\n",
        ),
    ]);
    let unknown: Vec<String> = f
        .iter()
        .filter(|x| x.rule.starts_with("jinja-unknown"))
        .map(|x| format!("{}:{} {}", x.file.display(), x.line, x.message))
        .collect();
    assert_eq!(unknown.len(), 1, "{unknown:#?}");
    assert!(
        unknown[0].contains("bad_after_raw") && unknown[0].contains(":5 "),
        "{unknown:?}"
    );
}

/// A role with a link back to its parent (molecule layouts) and a link out
/// of the project: each file is read once, nothing outside is read.
#[test]
fn symlinks_back_into_or_out_of_the_project_are_not_followed() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        outside.path().join("evil.yml"),
        "- name: outside\n  hosts: all\n  tasks:\n    - bogus_module: {}\n",
    )
    .expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    for (f, c) in [
        ("playbooks/site.yml", ROLE_PB),
        (
            "roles/r/tasks/main.yml",
            "- name: t\n  ansible.builtin.debug:\n    msg: \"{{ 1 | nope }}\"\n",
        ),
        (
            "shared/extra.yml",
            "- name: e\n  ansible.builtin.debug:\n    msg: hi\n",
        ),
    ] {
        std::fs::create_dir_all(p.join(f).parent().expect("parent")).expect("mkdir");
        std::fs::write(p.join(f), c).expect("write");
    }
    std::fs::create_dir_all(p.join("roles/r/molecule/default")).expect("mkdir");
    std::os::unix::fs::symlink("../../..", p.join("roles/r/molecule/default/roles")).expect("link");
    std::os::unix::fs::symlink(p.join("roles"), p.join("roles/r/molecule/loop")).expect("link");
    std::os::unix::fs::symlink(outside.path(), p.join("roles/r/outside")).expect("link");
    std::os::unix::fs::symlink(
        outside.path().join("evil.yml"),
        p.join("playbooks/evil.yml"),
    )
    .expect("link");
    // A link to a directory elsewhere inside the project is followed.
    std::os::unix::fs::symlink(p.join("shared"), p.join("roles/r/tasks/shared")).expect("link");
    let target = default_target(p, &[]);
    assert!(
        target
            .files
            .iter()
            .any(|f| f.ends_with("roles/r/tasks/shared/extra.yml")),
        "{:?}",
        target.files
    );
    let mut names: Vec<String> = target
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    assert!(n < 10, "{names:#?}");
    let findings = Linter::new().run(&target);
    let nope: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.message.contains("nope"))
        .collect();
    assert_eq!(nope.len(), 1, "{:#?}", rules(&findings));
    assert!(
        !rules(&findings).iter().any(|r| r.contains("bogus_module")),
        "{:#?}",
        rules(&findings)
    );
}

/// A module deployer knows but does not run: lint says exactly what the
/// loader (and so apply) says.
#[test]
fn unsupported_module_wording_is_the_loaders() {
    let pb = "- name: P\n  hosts: all\n  tasks:\n    - name: t\n      community.docker.docker_image:\n        name: x\n";
    let (dir, f) = lint_project(&[("playbooks/site.yml", pb)]);
    let lint_msg = f
        .iter()
        .find(|x| x.rule == "schema-unsupported-module")
        .map(|x| x.message.clone())
        .unwrap_or_else(|| panic!("{:#?}", rules(&f)));
    let loader = crate::project::load_playbook(
        &dir.path().join("playbooks/site.yml"),
        &crate::modules::registry::Registry,
    )
    .expect_err("the loader refuses it");
    assert_eq!(lint_msg, loader.msg);
    assert_eq!(loader.loc.line, 5);
}
