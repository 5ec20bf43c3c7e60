//! Secrets from the vault never appear in output, and are only decrypted when used.

mod common;

use std::process::Command;

use common::*;

const FIXTURE_FILE_SECRET: &str = "fixture-file-secret-K2v9";
const FIXTURE_INLINE_SECRET: &str = "fixture-inline-secret-P7x3";

fn vault_cmd(dir: &std::path::Path, args: &[&str]) -> String {
    let pw = repo().join("tests/fixtures/vault-password.txt");
    let o = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("vault")
        .args(args)
        .arg("--vault-password-file")
        .arg(&pw)
        .current_dir(dir)
        .output()
        .expect("deployer vault");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn vault_values_are_masked_in_json_diff_output_and_deployed_in_clear() {
    let root = "/srv/dt-secrets";
    on_host("tb3", &format!("rm -rf {root}; mkdir -p {root}"));
    let p = project(&[
        (
            "site.yml",
            &format!(
                "- hosts: tb3\n  become: true\n  gather_facts: false\n  vars_files: [inline.yml]\n  tasks:\n    - template: {{src: env.j2, dest: {root}/.env, mode: '0600'}}\n    - debug: {{msg: \"url is {{{{ database_url }}}}\"}}\n    - copy: {{content: \"{{{{ inline_token }}}}\", dest: {root}/token}}\n      no_log: true\n"
            ),
        ),
        (
            "templates/env.j2",
            "DATABASE_URL={{ database_url }}\nAPI_TOKEN={{ inline_token }}\nPLAIN=visible\n",
        ),
        (
            "group_vars/all/main.yml",
            "database_url: \"postgres://plane:{{ vault_db_password }}@db/plane\"\n",
        ),
        (
            "group_vars/all/secrets.yml",
            &format!("vault_db_password: {FIXTURE_FILE_SECRET}\n"),
        ),
    ]);
    let dir = p.path();
    vault_cmd(dir, &["encrypt", "group_vars/all/secrets.yml"]);
    let inline = vault_cmd(
        dir,
        &[
            "encrypt-string",
            "--name",
            "inline_token",
            FIXTURE_INLINE_SECRET,
        ],
    );
    std::fs::write(dir.join("inline.yml"), inline).expect("write inline");

    let pw = repo()
        .join("tests/fixtures/vault-password.txt")
        .display()
        .to_string();
    let inv = testbed_inventory().display().to_string();
    for args in [
        vec![
            "apply",
            "--diff",
            "--format",
            "json",
            "-i",
            &inv,
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
        vec![
            "check",
            "--diff",
            "-i",
            &inv,
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    ] {
        let out = deployer(dir, &args);
        let all = out.all();
        assert!(
            !all.contains(FIXTURE_FILE_SECRET),
            "file secret leaked:\n{all}"
        );
        assert!(
            !all.contains(FIXTURE_INLINE_SECRET),
            "inline secret leaked:\n{all}"
        );
        assert!(!all.contains("panicked"), "{all}");
    }
    let env = on_host("tb3", &format!("cat {root}/.env; cat {root}/token"));
    assert!(
        env.contains(&format!(
            "DATABASE_URL=postgres://plane:{FIXTURE_FILE_SECRET}@db/plane"
        )),
        "{env}"
    );
    assert!(env.contains(FIXTURE_INLINE_SECRET), "{env}");

    // The diff after a change shows the masked line, not the secret.
    std::fs::write(
        dir.join("templates/env.j2"),
        "DATABASE_URL={{ database_url }}\nAPI_TOKEN={{ inline_token }}\nPLAIN=changed\n",
    )
    .expect("edit");
    let out = deployer(
        dir,
        &[
            "check",
            "--diff",
            "--format",
            "json",
            "-i",
            &inv,
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.contains("postgres://plane:********@db/plane"),
        "{}",
        out.stdout
    );
    assert!(!out.all().contains(FIXTURE_FILE_SECRET));
}

#[test]
fn a_run_that_uses_no_secret_needs_no_password_and_a_missing_one_names_the_file() {
    let p = project(&[
        (
            "site.yml",
            "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - debug: {msg: \"{{ plain }}\"}\n",
        ),
        ("group_vars/all/main.yml", "plain: hello\n"),
        (
            "group_vars/all/secrets.yml",
            "secret: fixture-never-decrypted\n",
        ),
        (
            "other.yml",
            "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - debug: {msg: \"{{ secret }}\"}\n",
        ),
    ]);
    let dir = p.path();
    vault_cmd(dir, &["encrypt", "group_vars/all/secrets.yml"]);
    let inv = testbed_inventory().display().to_string();
    let out = deployer(dir, &["apply", "-i", &inv, "site.yml"]);
    assert_eq!(out.code, 0, "no password needed:\n{}", out.all());
    let out = deployer(dir, &["apply", "-i", &inv, "other.yml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains("secrets.yml"),
        "the error names the vault file:\n{}",
        out.all()
    );
    assert!(out.all().contains("no vault password"), "{}", out.all());
}
