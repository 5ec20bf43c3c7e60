//! A host that cannot be reached is reported as such in the recap, the JSON
//! events and the plan (JSON and markdown): never "No changes." when a host
//! was not even looked at, and no false "no hosts matched" for later plays.
mod common;

use common::*;

/// Two plays on a host whose SSH port is closed (nothing listens on port 1).
fn unreachable_project() -> tempfile::TempDir {
    project(&[
        (
            "inv.yml",
            "all:\n  hosts:\n    down:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n      ansible_user: nobody\n",
        ),
        (
            "site.yml",
            "- name: First\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n- name: Second\n  hosts: all\n  gather_facts: false\n  tasks:\n    - name: Ping again\n      ansible.builtin.ping:\n",
        ),
    ])
}

#[test]
fn the_markdown_plan_names_the_unreachable_host_and_never_says_no_changes() {
    let p = unreachable_project();
    let md = deployer(
        p.path(),
        &["plan", "--format", "markdown", "-i", "inv.yml", "site.yml"],
    );
    assert_eq!(md.code, 1, "{}", md.all());
    assert!(!md.stdout.contains("No changes."), "{}", md.stdout);
    assert!(
        md.stdout
            .contains("| host | ok | would change | failed | unreachable | skipped |"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("| down | 0 | 0 | 0 | 1 | 0 |"),
        "{}",
        md.stdout
    );
    assert!(md.stdout.contains("### UNREACHABLE: down"), "{}", md.stdout);
    assert!(!md.all().contains("no hosts matched"), "{}", md.all());

    let js = deployer(
        p.path(),
        &["plan", "--format", "json", "-i", "inv.yml", "site.yml"],
    );
    assert_eq!(js.code, 1, "{}", js.all());
    let v: serde_json::Value = serde_json::from_str(&js.stdout).expect("plan json");
    assert_eq!(v["unreachable"], serde_json::json!(["down"]), "{v}");
    assert_eq!(v["complete"], false, "{v}");
    assert_eq!(v["hosts"]["down"]["unreachable"], 1, "{v}");
}

#[test]
fn apply_reports_the_unreachable_host_in_the_recap_and_json_without_a_false_no_hosts_matched() {
    let p = unreachable_project();
    let human = deployer(p.path(), &["apply", "-i", "inv.yml", "site.yml"]);
    assert_eq!(human.code, 1, "{}", human.all());
    assert!(
        human.stdout.contains("unreachable: [down]"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("UNREACHABLE: down"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("unreachable=1"), "{}", human.stdout);
    assert!(!human.all().contains("no hosts matched"), "{}", human.all());

    let json = deployer(
        p.path(),
        &["apply", "-i", "inv.yml", "site.yml", "--format", "json"],
    );
    assert_eq!(json.code, 1, "{}", json.all());
    let r = recap(&json.stdout);
    assert_eq!(r["unreachable"], serde_json::json!(["down"]), "{r}");
    assert_eq!(total(&r, "unreachable"), 1, "{r}");
    assert!(!json.all().contains("no hosts matched"), "{}", json.all());

    // A pattern that really matches nothing still says so.
    std::fs::write(
        p.path().join("none.yml"),
        "- name: Nobody\n  hosts: no_such_group\n  gather_facts: false\n  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n",
    )
    .expect("write");
    let none = deployer(p.path(), &["apply", "-i", "inv.yml", "none.yml"]);
    assert!(
        none.all().contains("no hosts matched 'no_such_group'"),
        "{}",
        none.all()
    );
}
