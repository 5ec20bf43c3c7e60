//! The `plane_users` hook against the Plane stand-in on loopback: users, roles and
//! tokens provisioned, tokens stored in the vault and never printed, a re-run
//! changes nothing, a role change is planned then applied.

mod common;

use std::net::TcpListener;

use common::*;

fn standin() -> (PlaneStandin, u16) {
    let s = plane_standin("1000/minute");
    let port = s.port;
    (s, port)
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

const ADMIN_PW: &str = "fixture-Adm1n-pw-Qx7vLr2mZt9wBk4Ns8";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A project against the stand-in on `port` with the agents `(id, role)`.
fn site_with(port: u16, agents: &[(&str, &str)]) -> String {
    let mut list = String::new();
    for (id, role) in agents {
        list.push_str(&format!(
            "          - {{id: {id}, email: {id}@example.test, role: {role}}}\n"
        ));
    }
    format!(
        "- hosts: localhost\n  gather_facts: false\n  vars_files: [secrets.yml]\n  tasks:\n    - name: Provision Plane users\n      deployer.plane.plane_users:\n        api_url: http://127.0.0.1:{port}\n        workspace: {{name: Javisi, slug: javisi}}\n        admin: {{email: admin@example.test, first_name: Admin}}\n        admin_password: \"{{{{ vault_plane_admin_password }}}}\"\n        vault_file: secrets.yml\n        agents:\n{list}"
    )
}

struct Proj {
    dir: tempfile::TempDir,
    pw: String,
}

impl Proj {
    fn new(site: &str) -> Proj {
        let pw = repo()
            .join("tests/fixtures/vault-password.txt")
            .display()
            .to_string();
        let dir = project(&[
            (
                "hosts.yml",
                "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n",
            ),
            ("site.yml", site),
            (
                "secrets.yml",
                &format!("vault_plane_admin_password: {ADMIN_PW}\n"),
            ),
        ]);
        let p = Proj { dir, pw };
        let enc = p.cli(&["vault", "encrypt", "secrets.yml"]);
        assert_eq!(enc.code, 0, "{}", enc.all());
        p
    }
    fn cli(&self, args: &[&str]) -> Out {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--vault-password-file", &self.pw]);
        deployer(self.dir.path(), &all)
    }
    fn apply(&self) -> Out {
        self.cli(&["apply", "-i", "hosts.yml", "site.yml"])
    }
    fn site(&self, text: &str) {
        std::fs::write(self.dir.path().join("site.yml"), text).expect("site.yml");
    }
    /// The vault's keys and values.
    fn vault(&self) -> std::collections::BTreeMap<String, String> {
        let v = self.cli(&["vault", "view", "secrets.yml"]);
        assert_eq!(v.code, 0, "{}", v.all());
        v.stdout
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.trim().trim_matches('"').to_string()))
            .collect()
    }
    /// Removes one key from the vault (a lost secret).
    fn forget(&self, key: &str) {
        let d = self.cli(&["vault", "decrypt", "secrets.yml"]);
        assert_eq!(d.code, 0, "{}", d.all());
        let path = self.dir.path().join("secrets.yml");
        let text = std::fs::read_to_string(&path).expect("read");
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(kept, text, "{key} was in the vault");
        std::fs::write(&path, kept).expect("write");
        let e = self.cli(&["vault", "encrypt", "secrets.yml"]);
        assert_eq!(e.code, 0, "{}", e.all());
    }
}

impl Drop for Proj {
    fn drop(&mut self) {
        forget_local_state(self.dir.path());
    }
}

fn user<'a>(state: &'a serde_json::Value, email: &str) -> &'a serde_json::Value {
    state["users"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["email"] == email))
        .unwrap_or_else(|| panic!("no user {email} in {state}"))
}

fn workspace_of(state: &serde_json::Value, slug: &str) -> serde_json::Value {
    state["workspaces"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["slug"] == slug))
        .cloned()
        .unwrap_or_else(|| panic!("no workspace {slug} in {state}"))
}

/// A v1 call's status for `token` (403 once revoked).
fn token_status(port: u16, token: &str) -> u16 {
    block_on(async {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/api/v1/users/me/"))
            .header("X-API-Key", token)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    })
}

/// Real Plane's admin sign-up without a User-Agent writes the admin's user,
/// then fails (HTTP 500) before making it the instance admin; from then on
/// sign-up answers 5180 forever. The hook says exactly what to run, changes
/// nothing, and resumes once that is done.
#[test]
fn a_half_created_admin_is_reported_with_the_repair_and_the_next_run_resumes() {
    let (_s, port) = standin();
    // The half-created state, made as it happens: a client without a User-Agent.
    block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let r = http
            .get(format!("{base}/auth/get-csrf-token/"))
            .send()
            .await
            .expect("csrf");
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| h.split(';').next().filter(|c| c.starts_with("csrftoken=")))
            .expect("csrftoken cookie")
            .to_string();
        let token = r.json::<serde_json::Value>().await.expect("json")["csrf_token"]
            .as_str()
            .expect("token")
            .to_string();
        let r = http
            .post(format!("{base}/api/instances/admins/sign-up/"))
            .header("Cookie", cookie)
            .form(&[
                ("email", "admin@example.test"),
                ("password", ADMIN_PW),
                ("first_name", "Admin"),
                ("csrfmiddlewaretoken", token.as_str()),
            ])
            .send()
            .await
            .expect("sign-up");
        assert_eq!(r.status().as_u16(), 500, "no User-Agent: Plane's 500");
    });
    let st = standin_state(port);
    assert_eq!(st["is_setup_done"], false);
    assert_eq!(user(&st, "admin@example.test")["is_instance_admin"], false);

    let p = Proj::new(&site_with(port, &[("a1", "Member")]));
    let out = p.apply();
    assert_eq!(out.code, 1, "{}", out.all());
    for part in [
        "Plane already has a user admin@example.test that is not its instance admin",
        "5180 ADMIN_USER_ALREADY_EXIST",
        "python manage.py create_instance_admin admin@example.test",
        "Instance.objects.update(is_setup_done=True)",
    ] {
        assert!(out.stdout.contains(part), "{part}: {}", out.stdout);
    }
    assert!(
        !p.vault().keys().any(|k| k.contains("token")),
        "nothing was created"
    );

    // What the message says to run, done in the stand-in's api.
    standin_call(
        port,
        "POST",
        "/__standin__/manage",
        Some(
            serde_json::json!({"command": "create_instance_admin", "email": "admin@example.test"}),
        ),
    );
    standin_call(
        port,
        "POST",
        "/__standin__/manage",
        Some(serde_json::json!({"command": "finish_setup"})),
    );
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    let v = p.vault();
    assert!(v["vault_plane_admin_token"].starts_with("plane_api_"));
    assert!(v["vault_plane_a1_token"].starts_with("plane_api_"));
    let ws = workspace_of(&standin_state(port), "javisi");
    assert_eq!(ws["members"].as_array().map(Vec::len), Some(2), "{ws}");
}

/// Each partial state a failed run leaves (Plane answering 500 mid-run) is
/// resumed by the next run; a lost token is replaced and the old one revoked.
#[test]
fn partial_states_resume_and_a_replaced_token_is_revoked() {
    let (_s, port) = standin();
    let p = Proj::new(&site_with(port, &[("a1", "Member")]));
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());

    // A lost token: a new one is made and the old one stops working.
    let old = p.vault()["vault_plane_a1_token"].clone();
    assert_eq!(token_status(port, &old), 200);
    p.forget("vault_plane_a1_token");
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("revoke 1 older token(s) of a1@example.test"),
        "{}",
        out.stdout
    );
    let new = p.vault()["vault_plane_a1_token"].clone();
    assert_ne!(new, old);
    assert_eq!(token_status(port, &new), 200);
    assert_eq!(
        token_status(port, &old),
        403,
        "the replaced token is revoked"
    );
    assert_eq!(user(&standin_state(port), "a1@example.test")["tokens"], 1);

    // Invited and signed up, but the invitation not accepted (500 while
    // listing it); meanwhile the role asked for changed. (a2 first: the fault
    // hits the next listing.)
    p.site(&site_with(port, &[("a2", "Member"), ("a1", "Member")]));
    standin_call(
        port,
        "POST",
        "/__standin__/faults",
        Some(
            serde_json::json!({"fail_next": 1, "status": 500, "path_prefix": "/api/users/me/workspaces/invitations/"}),
        ),
    );
    let out = p.apply();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("list invitations of a2@example.test: HTTP 500"),
        "{}",
        out.stdout
    );
    let st = standin_state(port);
    assert_eq!(user(&st, "a2@example.test")["tokens"], 0);
    assert_eq!(
        workspace_of(&st, "javisi")["invitations"],
        serde_json::json!([{"email": "a2@example.test", "role": 15}])
    );
    assert!(p.vault().contains_key("vault_plane_a2_password"));
    p.site(&site_with(port, &[("a1", "Member"), ("a2", "Admin")]));
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    let ws = workspace_of(&standin_state(port), "javisi");
    assert_eq!(ws["invitations"], serde_json::json!([]));
    assert!(
        ws["members"].as_array().is_some_and(
            |ms| ms.contains(&serde_json::json!({"email": "a2@example.test", "role": 20}))
        ),
        "{ws}"
    );

    // A user without a token (500 on creating it).
    p.site(&site_with(
        port,
        &[("a1", "Member"), ("a2", "Admin"), ("a3", "Guest")],
    ));
    standin_call(
        port,
        "POST",
        "/__standin__/faults",
        Some(
            serde_json::json!({"fail_next": 1, "status": 500, "path_prefix": "/api/users/api-tokens/"}),
        ),
    );
    let out = p.apply();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("create a token for a3@example.test: HTTP 500"),
        "{}",
        out.stdout
    );
    assert_eq!(user(&standin_state(port), "a3@example.test")["tokens"], 0);
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(user(&standin_state(port), "a3@example.test")["tokens"], 1);
    let again = p.cli(&["apply", "-i", "hosts.yml", "site.yml", "--format", "json"]);
    assert_eq!(
        total(&recap(&again.stdout), "changed"),
        0,
        "{}",
        again.stdout
    );
}

/// The workspace slug held by another owner: a clear error; once that owner
/// invites the admin, the next run accepts and goes on.
#[test]
fn a_workspace_of_another_owner_is_an_error_until_the_admin_is_invited() {
    let (_s, port) = standin();
    let base = format!("http://127.0.0.1:{port}");
    let mut owner = deployer::plane::Session::default();
    block_on(async {
        let c = deployer::plane::PlaneClient::new(&base).expect("client");
        c.form(
            "admin",
            &mut deployer::plane::Session::default(),
            "/api/instances/admins/sign-up/",
            &[
                ("email", "admin@example.test"),
                ("password", ADMIN_PW),
                ("first_name", "Admin"),
            ],
        )
        .await
        .expect("admin");
        c.form(
            "owner",
            &mut owner,
            "/auth/sign-up/",
            &[
                ("email", "owner@example.test"),
                ("password", "fixture-0wner-pw-Lk3mQz8vTr5nWx1c"),
            ],
        )
        .await
        .expect("owner");
        c.session_json(
            "workspace",
            &mut owner,
            reqwest::Method::POST,
            "/api/workspaces/",
            Some(&serde_json::json!({"name": "Theirs", "slug": "javisi"})),
        )
        .await
        .expect("workspace");
    });
    let p = Proj::new(&site_with(port, &[("a1", "Member")]));
    let out = p.apply();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("workspace javisi: the slug is taken in Plane by a workspace admin@example.test is not a member of"),
        "{}",
        out.stdout
    );
    block_on(async {
        let c = deployer::plane::PlaneClient::new(&base).expect("client");
        c.session_json(
            "invite",
            &mut owner,
            reqwest::Method::POST,
            "/api/workspaces/javisi/invitations/",
            Some(&serde_json::json!({"emails": [{"email": "admin@example.test", "role": 20}]})),
        )
        .await
        .expect("invite");
    });
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    let ws = workspace_of(&standin_state(port), "javisi");
    for who in ["admin@example.test", "a1@example.test"] {
        assert!(
            ws["members"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["email"] == who)),
            "{who}: {ws}"
        );
    }
}

/// A wrong admin password in the vault: a clear error naming the admin and
/// the step, nothing changed in Plane or the vault; with the right password
/// back the next run changes nothing.
#[test]
fn a_wrong_admin_password_is_a_clear_error_that_changes_nothing() {
    let (_s, port) = standin();
    let p = Proj::new(&site_with(port, &[("a1", "Member")]));
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    let before = p.vault();
    let state_before = standin_state(port);

    p.forget("vault_plane_admin_password");
    let d = p.cli(&["vault", "decrypt", "secrets.yml"]);
    assert_eq!(d.code, 0, "{}", d.all());
    let path = p.dir.path().join("secrets.yml");
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("vault_plane_admin_password: fixture-Wr0ng-pw-Hk2vQs8nLm4xTz7c\n");
    std::fs::write(&path, text).expect("write");
    assert_eq!(p.cli(&["vault", "encrypt", "secrets.yml"]).code, 0);

    let out = p.apply();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(
            "sign in as admin@example.test: the admin password in the vault is wrong (Plane error 5065)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        !out.all().contains("fixture-Wr0ng-pw"),
        "the password is not printed"
    );
    let after = p.vault();
    for (k, v) in &before {
        if k != "vault_plane_admin_password" {
            assert_eq!(after.get(k), Some(v), "{k} kept");
        }
    }
    assert_eq!(standin_state(port)["users"], state_before["users"]);

    p.forget("vault_plane_admin_password");
    let d = p.cli(&["vault", "decrypt", "secrets.yml"]);
    assert_eq!(d.code, 0, "{}", d.all());
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(&format!("vault_plane_admin_password: {ADMIN_PW}\n"));
    std::fs::write(&path, text).expect("write");
    assert_eq!(p.cli(&["vault", "encrypt", "secrets.yml"]).code, 0);
    let again = p.cli(&["apply", "-i", "hosts.yml", "site.yml", "--format", "json"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        total(&recap(&again.stdout), "changed"),
        0,
        "{}",
        again.stdout
    );
}

/// An agent's email already used by a person's own account: a clear error
/// naming the agent, the user and the step, before anything is asked of
/// that account (no invitation sent to it, no token made); the agents done
/// before keep their tokens, and with another email the next run goes on.
#[test]
fn an_agent_email_used_by_a_human_is_a_clear_error_and_the_human_is_left_alone() {
    let (_s, port) = standin();
    let p = Proj::new(&site_with(port, &[("a1", "Member")]));
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    block_on(async {
        let c =
            deployer::plane::PlaneClient::new(&format!("http://127.0.0.1:{port}")).expect("client");
        c.form(
            "a human signs up",
            &mut deployer::plane::Session::default(),
            "/auth/sign-up/",
            &[
                ("email", "human@example.test"),
                ("password", "fixture-Hum4n-pw-Rt6yUb1nMq9wZx3k"),
            ],
        )
        .await
        .expect("human");
    });
    let a1_token = p.vault()["vault_plane_a1_token"].clone();

    let site = site_with(port, &[("a1", "Member"), ("a2", "Member")])
        .replace("a2@example.test", "human@example.test");
    p.site(&site);
    let out = p.apply();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("sign in as human@example.test: Plane has a user human@example.test whose password is not the one stored under vault_plane_a2_password (Plane error 5065): if it is a person's own account, give agent 'a2' another email"),
        "{}",
        out.stdout
    );
    let st = standin_state(port);
    assert_eq!(user(&st, "human@example.test")["tokens"], 0);
    let ws = workspace_of(&st, "javisi");
    assert_eq!(
        ws["invitations"],
        serde_json::json!([]),
        "the human is not invited"
    );
    assert!(
        !ws["members"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["email"] == "human@example.test")),
        "{ws}"
    );
    assert_eq!(p.vault()["vault_plane_a1_token"], a1_token);
    assert_eq!(token_status(port, &a1_token), 200);

    p.site(&site_with(port, &[("a1", "Member"), ("a2", "Member")]));
    let out = p.apply();
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(p.vault()["vault_plane_a2_token"].starts_with("plane_api_"));
}
