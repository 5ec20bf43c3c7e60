//! The `plane_users` hook against the Plane stand-in on loopback: users, roles and
//! tokens provisioned, tokens stored in the vault and never printed, a re-run
//! changes nothing, a role change is planned then applied.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

use common::*;

struct Standin(Child);

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn standin() -> (Standin, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("python3")
        .arg(repo().join("tests/plane_standin/server.py"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("API_KEY_RATE_LIMIT", "1000/minute")
        .spawn()
        .expect("python3 runs the stand-in");
    let s = Standin(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (s, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the Plane stand-in did not start");
}

fn playbook(port: u16, second_role: &str) -> String {
    format!(
        "- hosts: localhost\n  gather_facts: false\n  vars_files: [secrets.yml]\n  tasks:\n    - name: Provision Plane users\n      deployer.plane.plane_users:\n        api_url: http://127.0.0.1:{port}\n        workspace: {{name: Javisi, slug: javisi}}\n        admin: {{email: admin@example.test, first_name: Admin}}\n        admin_password: \"{{{{ vault_plane_admin_password }}}}\"\n        vault_file: secrets.yml\n        agents:\n          - {{id: a1, email: a1@example.test, display_name: Agent One, role: Admin}}\n          - {{id: a2, email: a2@example.test, display_name: Agent Two, role: {second_role}}}\n          - {{id: a3, email: a3@example.test, role: Member}}\n"
    )
}

#[test]
fn users_and_tokens_are_provisioned_into_the_vault_and_a_rerun_changes_nothing() {
    let (_s, port) = standin();
    let pw = repo()
        .join("tests/fixtures/vault-password.txt")
        .display()
        .to_string();
    let p = project(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
        ),
        ("site.yml", &playbook(port, "Member")),
        (
            "secrets.yml",
            "vault_plane_admin_password: fixture-Adm1n-pw-Qx7vLr2mZt9wBk4Ns8\n",
        ),
    ]);
    let dir = p.path();
    let enc = deployer(
        dir,
        &[
            "vault",
            "encrypt",
            "secrets.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(enc.code, 0, "{}", enc.all());

    let first = deployer(
        dir,
        &[
            "apply",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
            "--format",
            "json",
        ],
    );
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(
        total(&recap(&first.stdout), "changed"),
        1,
        "{}",
        first.stdout
    );

    let view = deployer(
        dir,
        &["vault", "view", "secrets.yml", "--vault-password-file", &pw],
    );
    assert_eq!(view.code, 0, "{}", view.all());
    for key in [
        "vault_plane_admin_token",
        "vault_plane_a1_token",
        "vault_plane_a2_token",
        "vault_plane_a3_token",
        "vault_plane_a1_password",
    ] {
        assert!(
            view.stdout.contains(key),
            "{key} missing from the vault:\n{}",
            view.stdout
                .lines()
                .map(|l| l.split(':').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        view.stdout
            .contains("vault_plane_admin_password: fixture-Adm1n"),
        "other keys kept"
    );
    // No token value appears in the run's output.
    for line in view.stdout.lines().filter(|l| l.contains("_token:")) {
        let token = line
            .split_once(':')
            .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\''))
            .unwrap_or("");
        assert!(token.starts_with("plane_api_"), "{line}");
        assert!(
            !first.all().contains(token),
            "a token leaked into the output"
        );
    }

    let again = deployer(
        dir,
        &[
            "apply",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
            "--format",
            "json",
        ],
    );
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        total(&recap(&again.stdout), "changed"),
        0,
        "second run changes nothing: {}",
        again.stdout
    );

    std::fs::write(dir.join("site.yml"), playbook(port, "Admin")).expect("edit");
    let check = deployer(
        dir,
        &[
            "check",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(
        check
            .stdout
            .contains("would change a2@example.test's role to Admin"),
        "{}",
        check.stdout
    );
    let apply = deployer(
        dir,
        &[
            "apply",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(apply.code, 0, "{}", apply.all());
    let after = deployer(
        dir,
        &[
            "check",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(after.code, 0, "{}", after.all());
    forget_local_state(dir);
}

#[test]
fn a_bad_role_and_an_unreachable_plane_are_clear_errors() {
    let pw = repo()
        .join("tests/fixtures/vault-password.txt")
        .display()
        .to_string();
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let p = project(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
        ),
        ("site.yml", &playbook(port, "Boss")),
        (
            "secrets.yml",
            "vault_plane_admin_password: fixture-Adm1n-pw-Qx7vLr2mZt9wBk4Ns8\n",
        ),
    ]);
    let dir = p.path();
    assert_eq!(
        deployer(
            dir,
            &[
                "vault",
                "encrypt",
                "secrets.yml",
                "--vault-password-file",
                &pw
            ]
        )
        .code,
        0
    );
    let out = deployer(
        dir,
        &[
            "apply",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("agent 'a2': role 'Boss' is not one of Admin, Member, Guest"),
        "{}",
        out.stdout
    );
    std::fs::write(dir.join("site.yml"), playbook(port, "Member")).expect("edit");
    let out = deployer(
        dir,
        &[
            "apply",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("check Plane's health: cannot reach Plane"),
        "{}",
        out.stdout
    );
    forget_local_state(dir);
}

/// The default reach (api_container): where the api is, and what is wrong
/// when it is not there, before anything is asked of Plane.
#[test]
fn the_api_container_reach_says_what_is_missing() {
    let pw = repo()
        .join("tests/fixtures/vault-password.txt")
        .display()
        .to_string();
    let missing = scoped("deployer-no-such-plane-api");
    let site = |reach: &str| {
        format!(
            "- hosts: localhost\n  gather_facts: false\n  vars_files: [secrets.yml]\n  tasks:\n    - name: Provision Plane users\n      deployer.plane.plane_users:\n{reach}        workspace: {{name: Javisi, slug: javisi}}\n        admin: {{email: admin@example.test, first_name: Admin}}\n        admin_password: \"{{{{ vault_plane_admin_password }}}}\"\n        vault_file: secrets.yml\n        agents:\n          - {{id: a1, email: a1@example.test, role: Admin, avatar: \"\"}}\n"
        )
    };
    let p = project(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
        ),
        (
            "secrets.yml",
            "vault_plane_admin_password: fixture-Adm1n-pw-Qx7vLr2mZt9wBk4Ns8\n",
        ),
    ]);
    let dir = p.path();
    assert_eq!(
        deployer(
            dir,
            &[
                "vault",
                "encrypt",
                "secrets.yml",
                "--vault-password-file",
                &pw
            ]
        )
        .code,
        0
    );
    let run = |cmd: &str, reach: &str| {
        std::fs::write(dir.join("site.yml"), site(reach)).expect("write site.yml");
        deployer(
            dir,
            &[
                cmd,
                "-i",
                "hosts.yml",
                "site.yml",
                "--vault-password-file",
                &pw,
            ],
        )
    };

    let out = run("apply", "");
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("give api_container (the api container, reached through the host's SSH connection) or api_url"),
        "{}",
        out.stdout
    );
    let both = format!("        api_url: http://127.0.0.1:9\n        api_container: {missing}\n");
    let out = run("apply", &both);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("not both"), "{}", out.stdout);

    let absent = format!("        api_container: {missing}\n");
    let out = run("apply", &absent);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "the api container '{missing}' does not exist on localhost (is the Plane stack up?)"
        )),
        "{}",
        out.stdout
    );
    // Check mode before the first apply: everything would be created.
    let out = run("check", &absent);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.contains("Plane is not running yet: would create the instance admin admin@example.test and a token; would create workspace javisi; would create user a1@example.test with role Admin and a token"),
        "{}",
        out.stdout
    );

    let avatar = format!("        api_container: {missing}\n");
    std::fs::write(
        dir.join("site.yml"),
        site(&avatar).replace("avatar: \"\"", "avatar: robot.png"),
    )
    .expect("write site.yml");
    let out = deployer(
        dir,
        &[
            "apply",
            "-i",
            "hosts.yml",
            "site.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("agent 'a1': setting an avatar is not supported yet"),
        "{}",
        out.stdout
    );
}

fn playbook_with_agents(port: u16, n: usize) -> String {
    let mut agents = String::new();
    for i in 1..=n {
        agents.push_str(&format!(
            "          - {{id: ag{i}, email: ag{i}@example.test, display_name: Agent {i}, role: {}}}\n",
            if i % 3 == 0 { "Admin" } else { "Member" }
        ));
    }
    format!(
        "- hosts: localhost\n  gather_facts: false\n  vars_files: [secrets.yml]\n  tasks:\n    - name: Provision Plane users\n      deployer.plane.plane_users:\n        api_url: http://127.0.0.1:{port}\n        workspace: {{name: Javisi, slug: javisi}}\n        admin: {{email: admin@example.test, first_name: Admin}}\n        admin_password: \"{{{{ vault_plane_admin_password }}}}\"\n        vault_file: secrets.yml\n        agents:\n{agents}"
    )
}

/// The stand-in's state (`GET /__standin__/state`: no secrets in it).
fn standin_state(port: u16) -> serde_json::Value {
    standin_call(port, "GET", "/__standin__/state", None)
}

/// One JSON call to the stand-in over plain HTTP/1.1 (test-only endpoints).
fn standin_call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    use std::io::{Read, Write};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tests\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    let (head, text) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.starts_with("HTTP/1.1 2"), "{method} {path}: {head}");
    if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(text).expect("JSON answer")
    }
}

/// Ten agents against a stand-in that throttles anonymous calls as Plane
/// does (30 a minute per IP) and answers 500 without a User-Agent: two
/// applies and a check in a row all pass, the second apply changes nothing,
/// and each run makes only a few anonymous calls.
#[test]
fn ten_agents_apply_apply_check_in_a_row_under_plane_s_anonymous_throttle() {
    let (_s, port) = standin();
    let pw = repo()
        .join("tests/fixtures/vault-password.txt")
        .display()
        .to_string();
    let p = project(&[
        (
            "hosts.yml",
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
        ),
        ("site.yml", &playbook_with_agents(port, 10)),
        (
            "secrets.yml",
            "vault_plane_admin_password: fixture-Adm1n-pw-Qx7vLr2mZt9wBk4Ns8\n",
        ),
    ]);
    let dir = p.path();
    let enc = deployer(
        dir,
        &[
            "vault",
            "encrypt",
            "secrets.yml",
            "--vault-password-file",
            &pw,
        ],
    );
    assert_eq!(enc.code, 0, "{}", enc.all());
    let run = |cmd: &str| {
        deployer(
            dir,
            &[
                cmd,
                "-i",
                "hosts.yml",
                "site.yml",
                "--vault-password-file",
                &pw,
                "--format",
                "json",
            ],
        )
    };
    let anonymous = || {
        standin_state(port)["anonymous_calls"]
            .as_u64()
            .expect("count")
    };
    let mut per_run = Vec::new();
    let first = run("apply");
    per_run.push(anonymous());
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(total(&recap(&first.stdout), "changed"), 1);
    let second = run("apply");
    per_run.push(anonymous() - per_run[0]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(
        total(&recap(&second.stdout), "changed"),
        0,
        "{}",
        second.stdout
    );
    let check = run("check");
    per_run.push(anonymous() - per_run[0] - per_run[1]);
    assert_eq!(check.code, 0, "{}", check.all());
    // Per run: the instance read and one CSRF token (none in check mode, which posts no form).
    assert!(
        per_run.iter().all(|n| *n <= 2),
        "anonymous calls per run: {per_run:?}"
    );
    let view = deployer(
        dir,
        &["vault", "view", "secrets.yml", "--vault-password-file", &pw],
    );
    assert_eq!(
        view.stdout
            .lines()
            .filter(|l| l.contains("_token:") && l.contains("plane_api_"))
            .count(),
        11,
        "a token for the admin and each agent"
    );
    forget_local_state(dir);
}
