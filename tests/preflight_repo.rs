//! The pre-flight (what `check`, `plan`, `apply` and `rollback` validate
//! before any connection) over the repository's own projects: the example
//! project (`playbooks/site.yml`, `playbooks/demo.yml` with every role under
//! `roles/`) and the benchmark project (`bench/site.yml`) must give no finding
//! at all: a false positive there would stop a correct run. The variables a
//! template gets at render time (`template_path` and the other template
//! variables, `item`, loop variables, `register` results, facts, Ansible's
//! magic variables) count as defined; a name that nothing defines is still
//! reported, with its file and line. No host is contacted (no testbed needed).

use std::path::{Path, PathBuf};

use deployer::lint::Finding;
use deployer::preflight::{RunInput, check};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn preflight(
    playbook: &Path,
    inventories: &[PathBuf],
    extra: &[String],
    password_file: Option<&Path>,
) -> Vec<Finding> {
    let extra = deployer::project::parse_extra_vars(extra).expect("extra vars");
    let passwords = password_file.map(|f| {
        deployer::vault::VaultPasswords::new(&[f.to_path_buf()], &[], false).expect("password")
    });
    check(&RunInput {
        playbook: Some(playbook),
        inventories,
        extra_var_names: extra.keys().cloned().collect(),
        passwords: passwords.as_ref(),
    })
}

fn show(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{}: [{}] {}",
                f.file.display(),
                f.line,
                f.col,
                f.rule,
                f.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_project_has_no_preflight_finding() {
    let r = repo();
    // As the README runs it against production (the inventory file is only
    // read: nothing connects) and against the testbed (its extra vars).
    let inventory = vec![r.join("inventory/production/hosts.yml")];
    let password = r.join("tests/fixtures/vault-password.txt");
    let testbed_vars = format!(
        "@{}",
        r.join("tests/fixtures/plane-testbed-vars.yml").display()
    );
    for (playbook, extra) in [
        ("playbooks/site.yml", vec![]),
        ("playbooks/site.yml", vec![testbed_vars.clone()]),
        ("playbooks/demo.yml", vec![]),
    ] {
        let pb = r.join(playbook);
        let found = preflight(&pb, &inventory, &extra, Some(&password));
        assert!(
            found.is_empty(),
            "{playbook} {extra:?}: {} false positive(s):\n{}",
            found.len(),
            show(&found)
        );
    }
    // Without a vault password the vault is only checked for its format (a
    // run that uses no secret needs none): still nothing to report.
    let found = preflight(&r.join("playbooks/demo.yml"), &inventory, &[], None);
    assert!(found.is_empty(), "{}", show(&found));
}

#[test]
fn the_example_playbooks_reach_every_role_of_the_repository() {
    // The test above judges a role's files only when a playbook reaches it:
    // together, site.yml and demo.yml must reach every role under roles/.
    let r = repo();
    let mut roles: Vec<String> = std::fs::read_dir(r.join("roles"))
        .expect("roles/")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    roles.sort();
    assert!(roles.len() >= 5, "{roles:?}");
    let mut reached = std::collections::BTreeSet::new();
    for pb in ["playbooks/site.yml", "playbooks/demo.yml"] {
        let book =
            deployer::project::load_playbook(&r.join(pb), &deployer::modules::registry::Registry)
                .expect("the example playbook loads");
        for play in &book.plays {
            let all: Vec<_> = play
                .tasks
                .iter()
                .chain(play.handlers.iter())
                .cloned()
                .collect();
            for t in deployer::project::flatten_tasks(&all) {
                let rel = t
                    .loc
                    .file
                    .strip_prefix(&r)
                    .unwrap_or(&t.loc.file)
                    .to_path_buf();
                let mut parts = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned());
                if parts.next().as_deref() == Some("roles")
                    && let Some(role) = parts.next()
                {
                    reached.insert(role);
                }
            }
        }
    }
    let reached: Vec<String> = reached.into_iter().collect();
    assert_eq!(reached, roles);
}

#[test]
fn the_benchmark_project_has_no_preflight_finding() {
    let r = repo();
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("hosts.yml");
    std::fs::write(
        &inv,
        "all:\n  hosts:\n    bench1: {ansible_host: 127.0.0.1, ansible_port: 1}\n",
    )
    .expect("inventory");
    let found = preflight(
        &r.join("bench/site.yml"),
        &[inv],
        &["bench_root=/srv/bench".to_string()],
        None,
    );
    assert!(found.is_empty(), "{}", show(&found));
}

/// What a template and a task get at render time is defined; only the one
/// name nothing defines is reported, at its file and line.
#[test]
fn render_time_variables_are_defined_and_a_real_undefined_name_is_still_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let write = |p: &str, text: &str| {
        let path = d.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "hosts.yml",
        "all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n",
    );
    write(
        "site.yml",
        "- name: Render time
  hosts: all
  gather_facts: true
  roles:
    - web
",
    );
    write(
        "roles/web/tasks/main.yml",
        "- name: Uptime
  ansible.builtin.command: cat /proc/uptime
  register: uptime_result
  changed_when: false
- name: Sites
  ansible.builtin.template:
    src: site.conf.j2
    dest: \"/etc/web/{{ site.name }}.conf\"
    mode: \"0644\"
  loop: \"{{ web_sites }}\"
  loop_control:
    loop_var: site
    index_var: site_index
    extended: true
- name: Lines
  ansible.builtin.debug:
    msg: \"{{ item }} {{ ansible_loop.index }} {{ inventory_hostname }} {{ group_names }} {{ playbook_dir }} {{ role_path }} {{ ansible_facts.hostname }} {{ uptime_result.stdout }} {{ hostvars[inventory_hostname].ansible_host }}\"
  loop: [a, b]
  loop_control:
    extended: true
- name: Keyed
  ansible.builtin.debug:
    msg: \"{{ item.key }}={{ item.value }}\"
  with_dict: \"{{ {'a': 1} }}\"
- name: Broken on purpose
  ansible.builtin.debug:
    msg: \"{{ nowhere_defined_name }}\"
",
    );
    write(
        "roles/web/defaults/main.yml",
        "web_sites:\n  - {name: one}\n",
    );
    write(
        "roles/web/templates/site.conf.j2",
        "# {{ ansible_managed }}
# from {{ template_path }} ({{ template_fullpath }}, {{ template_destpath }}) on {{ template_host }} by {{ template_uid }}
server_name {{ site.name }}; # {{ site_index }} of {{ ansible_loop.length }}
{% for n in range(3) %}{{ n }} {{ loop.index }}{% endfor %}
{% set local_name = 'x' %}{{ local_name }}
uptime {{ uptime_result.stdout }} on {{ ansible_facts['hostname'] }} {{ ansible_hostname }} {{ inventory_hostname_short }} {{ groups['all'] }} {{ role_name }}
",
    );
    let found = preflight(&d.join("site.yml"), &[d.join("hosts.yml")], &[], None);
    let names: Vec<(String, usize, &str)> = found
        .iter()
        .map(|f| {
            (
                f.file
                    .strip_prefix(d)
                    .unwrap_or(&f.file)
                    .display()
                    .to_string(),
                f.line,
                f.rule,
            )
        })
        .collect();
    assert_eq!(
        names,
        [(
            "roles/web/tasks/main.yml".to_string(),
            27,
            "ref-undefined-var"
        )],
        "{}",
        show(&found)
    );
    assert!(
        found[0].message.contains("'nowhere_defined_name'"),
        "{}",
        show(&found)
    );
}
