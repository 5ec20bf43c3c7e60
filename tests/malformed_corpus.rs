//! The malformed-project corpus: more than a hundred small projects, each
//! with one kind of bad input (YAML, inventory, roles, tasks, module
//! arguments, templates, vault, compose files, Plane hook arguments), run
//! with `deployer apply` (and some with `check`/`plan`) against a real,
//! reachable testbed host. Each must exit 1 with the file and line of the
//! problem, without a panic, without changing anything, and without any
//! connection: the run's SSH login user (`corpus`, made on tb1 for this test
//! only) must not appear in the host's sshd log. A control case proves the
//! count sees a connection when one is made.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const HOST: &str = "tb1";
const USER: &str = "corpus";

/// The testbed's tb1 alone, as the `corpus` user.
fn corpus_inventory() -> String {
    let inv = std::fs::read_to_string(testbed_inventory()).expect("inventory");
    let host = inv
        .lines()
        .find(|l| l.trim_start().starts_with("tb1: {ansible_host"))
        .unwrap_or_else(|| panic!("no tb1 in {inv}"))
        .trim();
    let vars: String = inv
        .lines()
        .skip_while(|l| *l != "  vars:")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(vars.contains("ansible_user: deploy"), "{inv}");
    format!("all:\n  hosts:\n    {host}\n{vars}")
        .replace("ansible_user: deploy", &format!("ansible_user: {USER}"))
}

fn container() -> String {
    format!("deployer-{}1", testbed_id())
}

/// Connections of the corpus user in tb1's sshd log.
fn connections() -> usize {
    let o = Command::new("docker")
        .args(["logs", &container()])
        .output()
        .expect("docker logs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    log.lines()
        .filter(|l| l.contains(&format!("for {USER} from")) || l.contains(&format!("user {USER} ")))
        .count()
}

fn make_corpus_user() {
    on_host(
        HOST,
        &format!(
            "id {USER} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {USER}; usermod -p '*' {USER}
mkdir -p /home/{USER}/.ssh && cp /root/.ssh/authorized_keys /home/{USER}/.ssh/authorized_keys
chown -R {USER}: /home/{USER}/.ssh && chmod 700 /home/{USER}/.ssh && chmod 600 /home/{USER}/.ssh/authorized_keys
printf '{USER} ALL=(ALL) NOPASSWD:ALL\\n' >/etc/sudoers.d/{USER} && chmod 0440 /etc/sudoers.d/{USER}"
        ),
    );
}

/// One malformed project.
struct Case {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    /// The file the error must name, and a text on the line it must name
    /// (`None`: the file only).
    file: &'static str,
    at: Option<&'static str>,
    /// Extra arguments (vault passwords, the command).
    args: Vec<&'static str>,
}

const HEAD: &str = "- name: Corpus\n  hosts: all\n  gather_facts: false\n  tasks:\n";

fn play(tasks: &str) -> Vec<u8> {
    format!("{HEAD}{tasks}").into_bytes()
}

fn case(
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    file: &'static str,
    at: &'static str,
) -> Case {
    Case {
        name,
        files,
        file,
        at: Some(at),
        args: Vec::new(),
    }
}

/// A case whose playbook is `site.yml` with `tasks`, the error on the line holding `at`.
fn task(name: &'static str, tasks: &str, at: &'static str) -> Case {
    case(name, vec![("site.yml", play(tasks))], "site.yml", at)
}

/// `site.yml` running role `r`, plus `files`.
fn role(
    name: &'static str,
    mut files: Vec<(&'static str, Vec<u8>)>,
    file: &'static str,
    at: &'static str,
) -> Case {
    files.push((
        "site.yml",
        b"- name: Corpus\n  hosts: all\n  gather_facts: false\n  roles:\n    - r\n".to_vec(),
    ));
    case(name, files, file, at)
}

fn s(t: &str) -> Vec<u8> {
    t.as_bytes().to_vec()
}

const VAULT_PASSWORD: &str = "corpus-vault-password\n";

/// A real vault blob of `plain` (deployer's own `vault encrypt-string`).
fn vault_blob(plain: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pw"), VAULT_PASSWORD).expect("pw");
    let o = deployer(
        dir.path(),
        &[
            "vault",
            "encrypt-string",
            "--vault-password-file",
            "pw",
            plain,
            "--name",
            "x",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    let text = o.stdout;
    // "x: !vault |\n  $ANSIBLE_VAULT;..." -> the blob lines, unindented.
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("$ANSIBLE_VAULT"))
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn indent(blob: &str, by: usize) -> String {
    blob.lines()
        .map(|l| format!("{}{l}", " ".repeat(by)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn corpus() -> Vec<Case> {
    let blob = vault_blob("s3cret-corpus-value");
    let mut c: Vec<Case> = Vec::new();
    let debug =
        |what: &str| format!("    - name: T\n      ansible.builtin.debug:\n        msg: {what}\n");

    // --- YAML ---------------------------------------------------------------
    c.push(task(
        "yaml-bad-indent",
        "    - name: T\n      ansible.builtin.debug:\n        msg: a\n       bad: indent\n",
        "bad: indent",
    ));
    c.push(task(
        "yaml-unclosed-quote",
        "    - name: T\n      ansible.builtin.debug:\n        msg: \"unclosed\n",
        "msg",
    ));
    c.push(task(
        "yaml-unclosed-flow",
        "    - name: T\n      ansible.builtin.debug: {msg: [a, b}\n",
        "debug",
    ));
    c.push(task(
        "yaml-duplicate-key",
        "    - name: T\n      ansible.builtin.debug:\n        msg: a\n        msg: b\n",
        "msg: b",
    ));
    c.push(task(
        "yaml-tab-indent",
        "    - name: T\n\t  ansible.builtin.debug:\n        msg: a\n",
        "name: T",
    ));
    c.push(task(
        "yaml-undefined-alias",
        "    - name: T\n      ansible.builtin.debug:\n        msg: *nothing\n",
        "nothing",
    ));
    c.push(case(
        "yaml-not-utf8",
        vec![(
            "site.yml",
            [
                HEAD.as_bytes(),
                b"    - name: caf\xe9\n      ansible.builtin.debug: {}\n",
            ]
            .concat(),
        )],
        "site.yml",
        "name: caf",
    ));
    c.push(case(
        "yaml-binary",
        vec![("site.yml", [HEAD.as_bytes(), b"    - name: T\0\n"].concat())],
        "site.yml",
        "name: T",
    ));
    c.push(case(
        "yaml-playbook-is-a-mapping",
        vec![("site.yml", s("name: Corpus\nhosts: all\n"))],
        "site.yml",
        "name: Corpus",
    ));
    c.push(case(
        "yaml-play-is-a-string",
        vec![("site.yml", s("- just a string\n"))],
        "site.yml",
        "just a string",
    ));
    c.push(task("yaml-tasks-not-a-list", "    name: T\n", "name: T"));
    c.push(task(
        "yaml-task-is-a-string",
        "    - ansible.builtin.debug\n",
        "debug",
    ));

    // --- play keywords ------------------------------------------------------
    c.push(case(
        "play-unknown-keyword",
        vec![(
            "site.yml",
            s("- name: Corpus\n  hosts: all\n  hostz: all\n  tasks: []\n"),
        )],
        "site.yml",
        "hostz",
    ));
    c.push(case(
        "play-without-hosts",
        vec![(
            "site.yml",
            s("- name: Corpus\n  tasks:\n    - ansible.builtin.ping:\n"),
        )],
        "site.yml",
        "tasks:",
    ));
    c.push(case(
        "play-vars-a-list",
        vec![(
            "site.yml",
            s("- name: Corpus\n  hosts: all\n  vars:\n    - a\n  tasks: []\n"),
        )],
        "site.yml",
        "- a",
    ));
    c.push(case(
        "play-roles-a-string",
        vec![("site.yml", s("- name: Corpus\n  hosts: all\n  roles: r\n"))],
        "site.yml",
        "roles: r",
    ));
    c.push(case(
        "play-missing-vars-file",
        vec![(
            "site.yml",
            s("- name: Corpus\n  hosts: all\n  vars_files:\n    - vars/missing.yml\n  tasks: []\n"),
        )],
        "site.yml",
        "vars/missing.yml",
    ));
    c.push(case("play-vars-file-not-a-mapping", vec![("site.yml", s("- name: Corpus\n  hosts: all\n  vars_files:\n    - vars/list.yml\n  tasks:\n    - ansible.builtin.ping:\n")), ("vars/list.yml", s("- a\n- b\n"))], "vars/list.yml", "- a"));
    c.push(case("play-vars-file-bad-yaml", vec![("site.yml", s("- name: Corpus\n  hosts: all\n  vars_files:\n    - vars/bad.yml\n  tasks:\n    - ansible.builtin.ping:\n")), ("vars/bad.yml", s("a: [1, 2\n"))], "vars/bad.yml", "#2"));
    c.push(case(
        "play-import-missing-playbook",
        vec![(
            "site.yml",
            s("- ansible.builtin.import_playbook: other.yml\n"),
        )],
        "site.yml",
        "other.yml",
    ));
    c.push(case(
        "play-imported-playbook-broken",
        vec![
            (
                "site.yml",
                s("- ansible.builtin.import_playbook: other.yml\n"),
            ),
            (
                "other.yml",
                play("    - name: T\n      ansible.builtin.nope_module: {}\n"),
            ),
        ],
        "other.yml",
        "nope_module",
    ));
    c.push(case("play-become-method", vec![("site.yml", s("- name: Corpus\n  hosts: all\n  become_method: su\n  tasks:\n    - ansible.builtin.ping:\n"))], "site.yml", "become_method"));

    // --- task keywords --------------------------------------------------------
    c.push(task(
        "task-unknown-keyword",
        "    - name: T\n      ansible.builtin.debug:\n        msg: a\n      whenn: true\n",
        "whenn",
    ));
    c.push(task("task-two-modules", "    - name: T\n      ansible.builtin.debug:\n        msg: a\n      ansible.builtin.ping:\n", "ping"));
    c.push(task(
        "task-no-module",
        "    - name: T\n      when: true\n",
        "name: T",
    ));
    c.push(task(
        "task-unknown-module",
        "    - name: T\n      ansible.builtin.frobnicate:\n        x: 1\n",
        "frobnicate",
    ));
    c.push(task(
        "task-unknown-short-module",
        "    - name: T\n      cpoy:\n        dest: /srv/corpus/x\n",
        "cpoy",
    ));
    c.push(task(
        "task-unsupported-module",
        "    - name: T\n      community.docker.docker_image:\n        name: x\n",
        "docker_image",
    ));
    c.push(task(
        "task-unknown-collection",
        "    - name: T\n      acme.widgets.spin:\n        speed: 3\n",
        "acme.widgets.spin",
    ));
    c.push(task("task-notify-missing-handler", "    - name: T\n      ansible.builtin.copy:\n        content: a\n        dest: /srv/corpus/x\n      notify: no such handler\n", "notify"));
    c.push(task(
        "task-include-missing-file",
        "    - name: T\n      ansible.builtin.include_tasks: missing.yml\n",
        "missing.yml",
    ));
    c.push(task(
        "task-import-missing-file",
        "    - name: T\n      ansible.builtin.import_tasks: missing.yml\n",
        "missing.yml",
    ));
    c.push(case(
        "task-imported-file-broken",
        vec![
            (
                "site.yml",
                play("    - name: T\n      ansible.builtin.import_tasks: more.yml\n"),
            ),
            (
                "more.yml",
                s("- name: U\n  ansible.builtin.copy:\n    dest: /srv/corpus/x\n    colour: red\n"),
            ),
        ],
        "more.yml",
        "colour",
    ));
    c.push(task(
        "task-rescue-without-block",
        "    - name: T\n      rescue:\n        - ansible.builtin.ping:\n",
        "name: T",
    ));
    c.push(task("task-loop-over-string", "    - name: T\n      ansible.builtin.debug:\n        msg: \"{{ item }}\"\n      loop: abc\n", "loop"));
    c.push(task("task-loop-over-mapping", "    - name: T\n      ansible.builtin.debug:\n        msg: \"{{ item }}\"\n      loop:\n        a: 1\n", "a: 1"));
    c.push(task(
        "task-meta-unknown",
        "    - name: T\n      ansible.builtin.meta: explode\n",
        "explode",
    ));
    c.push(task(
        "task-local-action",
        "    - name: T\n      local_action: ansible.builtin.ping\n",
        "local_action",
    ));
    c.push(task("task-delegate-elsewhere", "    - name: T\n      ansible.builtin.ping:\n      delegate_to: \"{{ nowhere_defined }}\"\n", "delegate_to"));
    c.push(task("task-loop-control-unknown", "    - name: T\n      ansible.builtin.debug:\n        msg: \"{{ item }}\"\n      loop: [1]\n      loop_control:\n        loop_vra: x\n", "loop_vra"));

    // --- module arguments -------------------------------------------------------
    c.push(task("arg-copy-unknown", "    - name: T\n      ansible.builtin.copy:\n        content: a\n        dest: /srv/corpus/x\n        colour: red\n", "colour"));
    c.push(task(
        "arg-copy-missing-dest",
        "    - name: T\n      ansible.builtin.copy:\n        content: a\n",
        "ansible.builtin.copy",
    ));
    c.push(task(
        "arg-template-missing-dest",
        "    - name: T\n      ansible.builtin.template:\n        src: t.j2\n",
        "ansible.builtin.template",
    ));
    c.push(task("arg-file-bad-state", "    - name: T\n      ansible.builtin.file:\n        path: /srv/corpus/x\n        state: squashed\n", "squashed"));
    c.push(task(
        "arg-file-missing-path",
        "    - name: T\n      ansible.builtin.file:\n        state: directory\n",
        "ansible.builtin.file",
    ));
    c.push(task("arg-file-bad-mode", "    - name: T\n      ansible.builtin.file:\n        path: /srv/corpus/x\n        state: directory\n        mode: \"0999\"\n", "0999"));
    c.push(task("arg-copy-bad-symbolic-mode", "    - name: T\n      ansible.builtin.copy:\n        content: a\n        dest: /srv/corpus/x\n        mode: \"u=rwx,q=z\"\n", "u=rwx"));
    c.push(task("arg-file-recurse", "    - name: T\n      ansible.builtin.file:\n        path: /srv/corpus\n        state: directory\n        recurse: true\n", "recurse"));
    c.push(task("arg-pip-editable", "    - name: T\n      ansible.builtin.pip:\n        name: /srv/corpus/src\n        editable: true\n", "editable"));
    c.push(task("arg-copy-bool-type", "    - name: T\n      ansible.builtin.copy:\n        content: a\n        dest: /srv/corpus/x\n        backup: [1, 2]\n", "backup"));
    c.push(task("arg-lineinfile-unknown", "    - name: T\n      ansible.builtin.lineinfile:\n        path: /srv/corpus/x\n        line: a\n        regex_typo: b\n", "regex_typo"));
    c.push(task(
        "arg-lineinfile-missing-path",
        "    - name: T\n      ansible.builtin.lineinfile:\n        line: a\n",
        "ansible.builtin.lineinfile",
    ));
    c.push(task("arg-blockinfile-bad-state", "    - name: T\n      ansible.builtin.blockinfile:\n        path: /srv/corpus/x\n        block: a\n        state: maybe\n", "maybe"));
    c.push(task("arg-command-warn", "    - name: T\n      ansible.builtin.command:\n        cmd: /bin/true\n        warn: false\n      changed_when: false\n", "warn"));
    c.push(task("arg-command-unknown", "    - name: T\n      ansible.builtin.command:\n        cmd: /bin/true\n        timeout_s: 3\n      changed_when: false\n", "timeout_s"));
    c.push(task("arg-shell-unknown", "    - name: T\n      ansible.builtin.shell:\n        cmd: /bin/true\n        executablez: /bin/sh\n      changed_when: false\n", "executablez"));
    c.push(task(
        "arg-stat-missing-path",
        "    - name: T\n      ansible.builtin.stat:\n        follow: true\n",
        "ansible.builtin.stat",
    ));
    c.push(task("arg-stat-unknown", "    - name: T\n      ansible.builtin.stat:\n        path: /etc\n        checksum_algo: sha1\n", "checksum_algo"));
    c.push(task("arg-uri-follow-redirects-bool", "    - name: T\n      ansible.builtin.uri:\n        url: http://127.0.0.1:1/\n        follow_redirects_bool: true\n", "follow_redirects_bool"));
    c.push(task(
        "arg-uri-missing-url",
        "    - name: T\n      ansible.builtin.uri:\n        method: GET\n",
        "ansible.builtin.uri",
    ));
    c.push(task("arg-uri-bad-method-type", "    - name: T\n      ansible.builtin.uri:\n        url: http://127.0.0.1:1/\n        status_code: {a: 1}\n", "status_code"));
    c.push(task("arg-wait-for-unknown", "    - name: T\n      ansible.builtin.wait_for:\n        port: 22\n        hostt: localhost\n", "hostt"));
    c.push(task(
        "arg-wait-for-bad-type",
        "    - name: T\n      ansible.builtin.wait_for:\n        port: [22]\n",
        "port",
    ));
    c.push(task(
        "arg-debug-unknown",
        "    - name: T\n      ansible.builtin.debug:\n        mesage: a\n",
        "mesage",
    ));
    c.push(task(
        "arg-assert-missing-that",
        "    - name: T\n      ansible.builtin.assert:\n        fail_msg: no\n",
        "ansible.builtin.assert",
    ));
    c.push(task(
        "arg-fail-unknown",
        "    - name: T\n      ansible.builtin.fail:\n        message: a\n",
        "message",
    ));
    c.push(task(
        "arg-set-fact-list",
        "    - name: T\n      ansible.builtin.set_fact:\n        - a\n",
        "- a",
    ));
    c.push(task(
        "arg-pause-bad-type",
        "    - name: T\n      ansible.builtin.pause:\n        seconds: [1]\n",
        "seconds",
    ));
    c.push(task(
        "arg-pause-unknown",
        "    - name: T\n      ansible.builtin.pause:\n        secs: 1\n",
        "secs",
    ));
    c.push(task(
        "arg-ping-unknown",
        "    - name: T\n      ansible.builtin.ping:\n        dat: x\n",
        "dat",
    ));
    c.push(task("arg-docker-container-unknown", "    - name: T\n      community.docker.docker_container:\n        name: corpus\n        image: busybox:1\n        privileged_mode: true\n", "privileged_mode"));
    c.push(task(
        "arg-docker-container-missing-name",
        "    - name: T\n      community.docker.docker_container:\n        image: busybox:1\n",
        "community.docker.docker_container",
    ));
    c.push(task("arg-docker-container-bad-state", "    - name: T\n      community.docker.docker_container:\n        name: corpus\n        image: busybox:1\n        state: exploded\n", "exploded"));
    c.push(task("arg-docker-network-unknown", "    - name: T\n      community.docker.docker_network:\n        name: corpus\n        drivr: bridge\n", "drivr"));
    c.push(task("arg-docker-network-bad-state", "    - name: T\n      community.docker.docker_network:\n        name: corpus\n        state: sideways\n", "sideways"));
    c.push(task("arg-compose-remove-images", "    - name: T\n      community.docker.docker_compose_v2:\n        project_src: /srv/corpus\n        remove_images: all\n", "remove_images"));
    c.push(task("arg-compose-unknown", "    - name: T\n      community.docker.docker_compose_v2:\n        project_src: /srv/corpus\n        projekt_name: x\n", "projekt_name"));
    c.push(task("arg-compose-bad-state", "    - name: T\n      community.docker.docker_compose_v2:\n        project_src: /srv/corpus\n        state: upside_down\n", "upside_down"));
    c.push(task("arg-args-keyword-unknown", "    - name: T\n      ansible.builtin.copy:\n        content: a\n      args:\n        dest: /srv/corpus/x\n        colour: red\n", "colour"));

    // --- Plane hook arguments ---------------------------------------------------
    c.push(task("plane-unknown-arg", "    - name: T\n      plane_users:\n        api_url: http://127.0.0.1:1\n        colour: red\n", "colour"));
    c.push(task(
        "plane-missing-args",
        "    - name: T\n      plane_users:\n        api_url: http://127.0.0.1:1\n",
        "plane_users",
    ));
    c.push(task("plane-bad-type", "    - name: T\n      plane_users:\n        api_url: http://127.0.0.1:1\n        api_port: [1]\n        workspace: {name: w, slug: w}\n", "api_port"));

    // --- templates and expressions ------------------------------------------------
    let tmpl = |name: &'static str, body: &[u8], at: &'static str| {
        case(
            name,
            vec![
                (
                    "site.yml",
                    play(
                        "    - name: T\n      ansible.builtin.template:\n        src: t.j2\n        dest: /srv/corpus/t\n",
                    ),
                ),
                ("templates/t.j2", body.to_vec()),
            ],
            "templates/t.j2",
            at,
        )
    };
    c.push(tmpl("tmpl-unclosed-if", b"a\n{% if x %}\nb\n", "#3"));
    c.push(tmpl("tmpl-unclosed-expr", b"a\nb {{ x \nc\n", "c"));
    c.push(tmpl(
        "tmpl-unknown-filter",
        b"a\n{{ 1 | frobnicate }}\n",
        "frobnicate",
    ));
    c.push(tmpl(
        "tmpl-unknown-test",
        b"a\n{% if 1 is frobnicated %}x{% endif %}\n",
        "frobnicated",
    ));
    c.push(tmpl(
        "tmpl-undefined-var",
        b"a\nvalue={{ never_defined_var }}\n",
        "never_defined_var",
    ));
    c.push(tmpl("tmpl-not-utf8", b"a\ncaf\xe9 {{ 1 }}\n", "caf"));
    c.push(tmpl("tmpl-binary", b"a\0b\n", "a"));
    c.push(tmpl("tmpl-bad-endfor", b"a\n{% endfor %}\n", "endfor"));
    c.push(task("tmpl-missing-template", "    - name: T\n      ansible.builtin.template:\n        src: missing.j2\n        dest: /srv/corpus/t\n", "missing.j2"));
    c.push(task("tmpl-missing-copy-src", "    - name: T\n      ansible.builtin.copy:\n        src: missing.txt\n        dest: /srv/corpus/t\n", "missing.txt"));
    c.push(task(
        "expr-task-string-syntax",
        &debug("\"{{ 1 + }}\""),
        "1 +",
    ));
    c.push(task(
        "expr-task-unknown-filter",
        &debug("\"{{ 'a' | frobnicate }}\""),
        "frobnicate",
    ));
    c.push(task(
        "expr-task-undefined",
        &debug("\"{{ never_defined_var }}\""),
        "never_defined_var",
    ));
    c.push(task(
        "expr-when-syntax",
        "    - name: T\n      ansible.builtin.ping:\n      when: 1 +\n",
        "when",
    ));
    c.push(task(
        "expr-when-undefined",
        "    - name: T\n      ansible.builtin.ping:\n      when: never_defined_var\n",
        "when",
    ));
    c.push(task(
        "expr-when-unknown-test",
        "    - name: T\n      ansible.builtin.ping:\n      when: 1 is frobnicated\n",
        "when",
    ));
    c.push(task(
        "expr-changed-when-syntax",
        "    - name: T\n      ansible.builtin.command: /bin/true\n      changed_when: \"(\"\n",
        "changed_when",
    ));
    c.push(task(
        "expr-failed-when-unknown-filter",
        "    - name: T\n      ansible.builtin.ping:\n      failed_when: 1 | frobnicate\n",
        "failed_when",
    ));
    c.push(case("expr-vars-unknown-filter", vec![("site.yml", s("- name: Corpus\n  hosts: all\n  gather_facts: false\n  vars:\n    a: \"{{ 1 | frobnicate }}\"\n  tasks:\n    - ansible.builtin.ping:\n"))], "site.yml", "frobnicate"));
    c.push(task(
        "expr-unclosed-in-name",
        "    - name: \"{{ oops\"\n      ansible.builtin.ping:\n",
        "oops",
    ));

    // --- roles -------------------------------------------------------------------
    c.push(case(
        "role-missing",
        vec![(
            "site.yml",
            s("- name: Corpus\n  hosts: all\n  roles:\n    - no_such_role\n"),
        )],
        "site.yml",
        "no_such_role",
    ));
    c.push(role(
        "role-tasks-bad-yaml",
        vec![(
            "roles/r/tasks/main.yml",
            s("- name: T\n  ansible.builtin.debug: {msg: [a}\n"),
        )],
        "roles/r/tasks/main.yml",
        "debug",
    ));
    c.push(role(
        "role-tasks-unknown-module",
        vec![(
            "roles/r/tasks/main.yml",
            s("- name: T\n  ansible.builtin.nope: {}\n"),
        )],
        "roles/r/tasks/main.yml",
        "nope",
    ));
    c.push(role(
        "role-tasks-bad-arg",
        vec![(
            "roles/r/tasks/main.yml",
            s("- name: T\n  ansible.builtin.file:\n    path: /srv/corpus\n    stat: directory\n"),
        )],
        "roles/r/tasks/main.yml",
        "stat:",
    ));
    c.push(role(
        "role-defaults-a-list",
        vec![
            ("roles/r/tasks/main.yml", s("- ansible.builtin.ping:\n")),
            ("roles/r/defaults/main.yml", s("- a\n")),
        ],
        "roles/r/defaults/main.yml",
        "- a",
    ));
    c.push(role(
        "role-vars-bad-yaml",
        vec![
            ("roles/r/tasks/main.yml", s("- ansible.builtin.ping:\n")),
            ("roles/r/vars/main.yml", s("a: b: c\n")),
        ],
        "roles/r/vars/main.yml",
        "a: b",
    ));
    c.push(role(
        "role-meta-missing-dependency",
        vec![
            ("roles/r/tasks/main.yml", s("- ansible.builtin.ping:\n")),
            (
                "roles/r/meta/main.yml",
                s("dependencies:\n  - role: not_there\n"),
            ),
        ],
        "roles/r/meta/main.yml",
        "not_there",
    ));
    c.push(role(
        "role-meta-cycle",
        vec![
            ("roles/r/tasks/main.yml", s("- ansible.builtin.ping:\n")),
            ("roles/r/meta/main.yml", s("dependencies:\n  - role: q\n")),
            ("roles/q/tasks/main.yml", s("- ansible.builtin.ping:\n")),
            ("roles/q/meta/main.yml", s("dependencies:\n  - role: r\n")),
        ],
        "roles/",
        "role:",
    ));
    c.push(role("role-template-missing", vec![("roles/r/tasks/main.yml", s("- name: T\n  ansible.builtin.template:\n    src: gone.j2\n    dest: /srv/corpus/t\n"))], "roles/r/tasks/main.yml", "gone.j2"));
    c.push(role("role-template-broken", vec![("roles/r/tasks/main.yml", s("- name: T\n  ansible.builtin.template:\n    src: t.j2\n    dest: /srv/corpus/t\n")), ("roles/r/templates/t.j2", s("x\n{% for %}\n"))], "roles/r/templates/t.j2", "{% for %}"));
    c.push(role("role-handler-bad-module", vec![("roles/r/tasks/main.yml", s("- name: T\n  ansible.builtin.copy:\n    content: a\n    dest: /srv/corpus/x\n  notify: H\n")), ("roles/r/handlers/main.yml", s("- name: H\n  ansible.builtin.restart_all: {}\n"))], "roles/r/handlers/main.yml", "restart_all"));
    c.push(task(
        "role-include-missing",
        "    - name: T\n      ansible.builtin.include_role:\n        name: not_a_role\n",
        "not_a_role",
    ));
    c.push(task(
        "role-import-missing",
        "    - name: T\n      ansible.builtin.import_role:\n        name: not_a_role\n",
        "not_a_role",
    ));
    c.push(role(
        "role-include-tasks-missing",
        vec![(
            "roles/r/tasks/main.yml",
            s("- name: T\n  ansible.builtin.include_tasks: nothere.yml\n"),
        )],
        "roles/r/tasks/main.yml",
        "nothere.yml",
    ));

    // --- inventory -----------------------------------------------------------------
    let inv_case = |name: &'static str,
                    inv_name: &'static str,
                    inv: Vec<u8>,
                    file: &'static str,
                    at: &'static str| {
        let mut k = case(
            name,
            vec![
                ("site.yml", play("    - ansible.builtin.ping:\n")),
                (inv_name, inv),
            ],
            file,
            at,
        );
        k.args = vec!["--inventory-override", inv_name];
        k
    };
    c.push(inv_case(
        "inv-yaml-syntax",
        "bad.yml",
        s("all:\n  hosts:\n    tb1: {ansible_host: [127.0.0.1}\n"),
        "bad.yml",
        "tb1",
    ));
    c.push(inv_case(
        "inv-yaml-hosts-a-list",
        "bad.yml",
        s("all:\n  hosts:\n    - tb1\n"),
        "bad.yml",
        "- tb1",
    ));
    c.push(inv_case(
        "inv-yaml-unknown-key",
        "bad.yml",
        s("all:\n  hostz:\n    tb1: {}\n"),
        "bad.yml",
        "hostz",
    ));
    c.push(inv_case(
        "inv-yaml-duplicate-key",
        "bad.yml",
        s("all:\n  hosts:\n    tb1: {}\n    tb1: {}\n"),
        "bad.yml",
        "#4",
    ));
    c.push(inv_case(
        "inv-ini-bad-section",
        "hosts.ini",
        s("[servers\ntb1\n"),
        "hosts.ini",
        "[servers",
    ));
    c.push(inv_case(
        "inv-ini-bad-var",
        "hosts.ini",
        s("[servers]\ntb1 ansible_port\n"),
        "hosts.ini",
        "tb1",
    ));
    c.push(inv_case(
        "inv-ini-unknown-suffix",
        "hosts.ini",
        s("[servers]\ntb1\n[servers:varz]\na=1\n"),
        "hosts.ini",
        "servers:varz",
    ));
    c.push(inv_case(
        "inv-ini-unquoted-space",
        "hosts.ini",
        s("[servers]\ntb1 label=\"a b\n"),
        "hosts.ini",
        "label",
    ));
    c.push(case(
        "inv-group-vars-bad-yaml",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            ("group_vars/all.yml", s("a: [1\n")),
        ],
        "group_vars/all.yml",
        "#2",
    ));
    c.push(case(
        "inv-host-vars-a-list",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            ("host_vars/tb1.yml", s("- a\n")),
        ],
        "host_vars/tb1.yml",
        "- a",
    ));

    // --- vault -----------------------------------------------------------------------
    let corrupt = blob.replacen("\n", "\nzz", 1);
    c.push(case(
        "vault-file-unknown-version",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            (
                "group_vars/all.yml",
                format!("{}\n", blob.replacen("1.1", "9.9", 1)).into_bytes(),
            ),
        ],
        "group_vars/all.yml",
        "$ANSIBLE_VAULT",
    ));
    let mut k = case(
        "vault-file-corrupt",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            ("group_vars/all.yml", format!("{corrupt}\n").into_bytes()),
            ("pw", s(VAULT_PASSWORD)),
        ],
        "group_vars/all.yml",
        "$ANSIBLE_VAULT",
    );
    k.args = vec!["--vault-password-file", "pw"];
    c.push(k);
    let mut k = case(
        "vault-file-wrong-password",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            ("group_vars/all.yml", format!("{blob}\n").into_bytes()),
            ("pw", s("not-the-password\n")),
        ],
        "group_vars/all.yml",
        "$ANSIBLE_VAULT",
    );
    k.args = vec!["--vault-password-file", "pw"];
    c.push(k);
    let inline = format!("db_password: !vault |\n{}\n", indent(&blob, 2));
    let mut k = case(
        "vault-inline-wrong-password",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            ("group_vars/all.yml", inline.clone().into_bytes()),
            ("pw", s("not-the-password\n")),
        ],
        "group_vars/all.yml",
        "db_password",
    );
    k.args = vec!["--vault-password-file", "pw"];
    c.push(k);
    let inline_corrupt = format!("db_password: !vault |\n{}\n", indent(&corrupt, 2));
    c.push(case(
        "vault-inline-corrupt",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            ("group_vars/all.yml", inline_corrupt.into_bytes()),
        ],
        "group_vars/all.yml",
        "db_password",
    ));
    c.push(case(
        "vault-inline-truncated",
        vec![
            ("site.yml", play("    - ansible.builtin.ping:\n")),
            (
                "group_vars/all.yml",
                s("db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3132\n"),
            ),
        ],
        "group_vars/all.yml",
        "db_password",
    ));
    let mut k = case(
        "vault-vars-file-wrong-password",
        vec![
            (
                "site.yml",
                s(
                    "- name: Corpus\n  hosts: all\n  vars_files:\n    - secrets.yml\n  tasks:\n    - ansible.builtin.ping:\n",
                ),
            ),
            ("secrets.yml", format!("{blob}\n").into_bytes()),
            ("pw", s("not-the-password\n")),
        ],
        "secrets.yml",
        "$ANSIBLE_VAULT",
    );
    k.args = vec!["--vault-password-file", "pw"];
    c.push(k);
    let mut k = case(
        "vault-role-vars-wrong-password",
        vec![
            ("roles/r/tasks/main.yml", s("- ansible.builtin.ping:\n")),
            ("roles/r/vars/main.yml", inline.into_bytes()),
            ("pw", s("not-the-password\n")),
            (
                "site.yml",
                s("- name: Corpus\n  hosts: all\n  gather_facts: false\n  roles:\n    - r\n"),
            ),
        ],
        "roles/r/vars/main.yml",
        "db_password",
    );
    k.args = vec!["--vault-password-file", "pw"];
    c.push(k);

    // --- compose files ------------------------------------------------------------------
    let compose = |name: &'static str, body: &str, at: &'static str| {
        case(
            name,
            vec![
                (
                    "site.yml",
                    play(
                        "    - name: T\n      ansible.builtin.template:\n        src: docker-compose.yml.j2\n        dest: /srv/corpus/docker-compose.yml\n",
                    ),
                ),
                ("templates/docker-compose.yml.j2", s(body)),
            ],
            "templates/docker-compose.yml.j2",
            at,
        )
    };
    c.push(compose(
        "compose-template-syntax",
        "services:\n  app:\n    image: \"busybox:{{ tag \"\n",
        "busybox:{{ tag",
    ));
    c.push(compose(
        "compose-template-unknown-filter",
        "services:\n  app:\n    image: \"busybox:{{ tag | frobnicate }}\"\n",
        "frobnicate",
    ));
    c.push(compose(
        "compose-template-undefined",
        "services:\n  app:\n    image: \"busybox:{{ never_defined_tag }}\"\n",
        "never_defined_tag",
    ));
    c.push(case("compose-file-bad-yaml", vec![("site.yml", play("    - name: T\n      ansible.builtin.copy:\n        src: docker-compose.yml\n        dest: /srv/corpus/docker-compose.yml\n")), ("files/docker-compose.yml", s("services:\n  app: [image\n"))], "files/docker-compose.yml", "#3"));
    c.push(case("compose-file-duplicate-key", vec![("site.yml", play("    - name: T\n      ansible.builtin.copy:\n        src: docker-compose.yml\n        dest: /srv/corpus/docker-compose.yml\n")), ("files/docker-compose.yml", s("services:\n  app:\n    image: busybox:1\n    image: busybox:2\n"))], "files/docker-compose.yml", "image: busybox:2"));
    c.push(case("compose-env-template-broken", vec![("site.yml", play("    - name: T\n      ansible.builtin.template:\n        src: app.env.j2\n        dest: /srv/corpus/app.env\n")), ("templates/app.env.j2", s("A=1\nB={{ \n"))], "templates/app.env.j2", "B="));

    // --- the same through check and plan ---------------------------------------------------
    for (name, cmd) in [("check-unknown-arg", "check"), ("plan-unknown-arg", "plan")] {
        let mut k = task(
            name,
            "    - name: T\n      ansible.builtin.copy:\n        content: a\n        dest: /srv/corpus/x\n        colour: red\n",
            "colour",
        );
        k.args = vec!["--command", cmd];
        c.push(k);
    }

    // --- rollback: its inventories, vault and connection settings -----------------------
    let mut k = inv_case(
        "rollback-inv-yaml-syntax",
        "bad.yml",
        s("all:\n  hosts:\n    tb1: {ansible_host: [127.0.0.1}\n"),
        "bad.yml",
        "tb1",
    );
    k.args = vec!["--inventory-override", "bad.yml", "--command", "rollback"];
    c.push(k);
    let mut k = inv_case(
        "rollback-inv-ini-bad-section",
        "hosts.ini",
        s("[servers\ntb1\n"),
        "hosts.ini",
        "[servers",
    );
    k.args = vec!["--inventory-override", "hosts.ini", "--command", "rollback"];
    c.push(k);
    let mut k = case(
        "rollback-group-vars-bad-yaml",
        vec![("group_vars/all.yml", s("a: [1\n"))],
        "group_vars/all.yml",
        "#2",
    );
    k.args = vec!["--command", "rollback"];
    c.push(k);
    let mut k = case(
        "rollback-vault-file-corrupt",
        vec![
            ("group_vars/all.yml", format!("{corrupt}\n").into_bytes()),
            ("pw", s(VAULT_PASSWORD)),
        ],
        "group_vars/all.yml",
        "$ANSIBLE_VAULT",
    );
    k.args = vec!["--vault-password-file", "pw", "--command", "rollback"];
    c.push(k);
    // The key file named by the inventory does not exist: refused before
    // connecting, naming it.
    let nokey: String = corpus_inventory()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("ansible_ssh_private_key_file:") {
                "    ansible_ssh_private_key_file: missing-corpus-key\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let mut k = case(
        "rollback-key-file-missing",
        vec![("nokey.yml", nokey.into_bytes())],
        "missing-corpus-key",
        "",
    );
    k.at = None;
    k.args = vec!["--inventory-override", "nokey.yml", "--command", "rollback"];
    c.push(k);
    c
}

/// The line (1-based) of the first line of `text` holding `needle`, or the
/// line `#N` names (a syntax error at the end of a file is reported past its
/// last line, where the parser stopped).
fn line_of(text: &[u8], needle: &str) -> usize {
    if let Some(n) = needle.strip_prefix('#').and_then(|n| n.parse().ok()) {
        return n;
    }
    String::from_utf8_lossy(text)
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("'{needle}' is not in the case's file"))
}

fn run_case(k: &Case, inventory: &str) -> Result<(), String> {
    let dir = project(&[]);
    for (p, content) in &k.files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
    }
    std::fs::write(dir.path().join("inv.yml"), inventory).expect("inventory");
    let mut inv = "inv.yml".to_string();
    let mut command = "apply".to_string();
    let mut extra: Vec<String> = Vec::new();
    let mut it = k.args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--inventory-override" => inv = it.next().expect("value").to_string(),
            "--command" => command = it.next().expect("value").to_string(),
            other => extra.push(other.to_string()),
        }
    }
    let mut args: Vec<&str> = vec![command.as_str(), "-i", inv.as_str()];
    // `rollback` runs no playbook.
    if command != "rollback" {
        args.push("site.yml");
    }
    if command == "plan" {
        args.extend(["--format", "json"]);
    }
    args.extend(extra.iter().map(String::as_str));
    let before = connections();
    let out = deployer(dir.path(), &args);
    let after = connections();
    let all = out.all();
    let mut problems = Vec::new();
    if out.code != 1 {
        problems.push(format!("exit {} (expected 1)", out.code));
    }
    if all.contains("panicked") || all.contains("RUST_BACKTRACE") {
        problems.push("a panic".to_string());
    }
    if after != before {
        problems.push(format!(
            "{} connection(s) to {HOST} were made",
            after - before
        ));
    }
    let place = match k.at {
        Some(needle) => {
            let content = k
                .files
                .iter()
                .find(|(p, _)| *p == k.file)
                .map(|(_, c)| c.as_slice());
            match content {
                Some(c) => format!("{}:{}", k.file, line_of(c, needle)),
                // A directory prefix (e.g. a cycle reported in either role).
                None => k.file.to_string(),
            }
        }
        None => k.file.to_string(),
    };
    let named = all.lines().any(|l| {
        l.contains(&format!("{place}:")) || l.contains(&format!("{place} ")) || l.ends_with(&place)
    }) || (!place.contains(':') && all.contains(&place));
    if !named {
        problems.push(format!("the output does not name {place}"));
    }
    if all.contains("s3cret-corpus-value") {
        problems.push("the vault secret was printed".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}\n--- stdout\n{}--- stderr\n{}",
            k.name,
            problems.join("; "),
            out.stdout,
            out.stderr
        ))
    }
}

#[test]
fn every_malformed_project_fails_before_any_connection_with_file_and_line() {
    make_corpus_user();
    on_host(HOST, "rm -rf /srv/corpus");
    let inventory = corpus_inventory();
    // The control: a good project does connect, and the count sees it.
    let good = project(&[(
        "site.yml",
        std::str::from_utf8(&play("    - ansible.builtin.ping:\n")).expect("utf8"),
    )]);
    std::fs::write(good.path().join("inv.yml"), &inventory).expect("inventory");
    let before = connections();
    let ok = deployer(good.path(), &["apply", "-i", "inv.yml", "site.yml"]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(
        connections() > before,
        "the control run's connection is not in {}'s sshd log",
        container()
    );

    let cases = corpus();
    let mut names: Vec<&str> = cases.iter().map(|k| k.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for k in &cases {
        if let Err(e) = run_case(k, &inventory) {
            failures.push(e);
        }
    }
    // Nothing was changed on the host (the strict helper fails when the
    // absence check exits non-zero).
    on_host(HOST, "test ! -e /srv/corpus");
    assert!(
        failures.is_empty(),
        "{} of {} malformed projects were not refused cleanly before connecting:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} malformed projects: all refused before any connection",
        cases.len()
    );
    let _ = Path::new(".");
}
