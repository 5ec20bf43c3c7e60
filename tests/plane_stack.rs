//! The example project end to end on tb1 of the testbed ("End to
//! end"): `apply playbooks/site.yml --tags plane` on a COPY of the project (its
//! vault receives the tokens; the repository's secrets.yml is never touched),
//! with the testbed inventory put beside the production one so that the real
//! inventory/production/group_vars/all (admin, ten agents, vault) is used.
//!
//! Real: PostgreSQL and Redis (Debian's packages, tests/testbed/build-service-images.sh),
//! database and user `plane` with the shared password, the split-DNS records
//! file, the SSH port forward to the api container (no published port).
//! Stand-ins: Plane's images (tests/fixtures/plane-testbed-vars.yml).
//! All testbed hosts share one Docker engine: every name carries PREFIX.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// `<testbed id>-deployer-plane-it`: unique to this testbed (see common::scoped).
struct Prefix;
impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&scoped("deployer-plane-it"))
    }
}
const PREFIX: Prefix = Prefix;

const AGENTS: [&str; 10] = [
    "concierge",
    "builder",
    "writer",
    "artist",
    "explorer",
    "tutor",
    "marketer",
    "cfo",
    "maintainer",
    "messenger",
];

/// `docker exec -i` with `input` on stdin (secrets never on a command line).
fn docker_exec_stdin(container: &str, script: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker exec");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let o = child.wait_with_output().expect("docker exec");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

fn script(path: &str, args: &[&str]) {
    let o = Command::new(repo().join(path))
        .args(args)
        .output()
        .expect(path);
    assert!(
        o.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn build_images() {
    script("tests/testbed/build-test-image.sh", &[]);
    script("tests/plane_standin/build-image.sh", &[]);
    script("tests/testbed/build-service-images.sh", &[]);
}

fn cleanup() {
    for stack in ["plane", "postgresql", "redis"] {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={PREFIX}-{stack}"),
        ]);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            docker_cleanup(&["rm", "-f", id]);
        }
    }
    for v in ["postgresql_data", "redis_data"] {
        docker_cleanup(&["volume", "rm", &format!("{PREFIX}_{v}")]);
    }
    script(
        "tests/testbed/plane-networks.sh",
        &["down", &PREFIX.to_string()],
    );
    on_host("tb1", &format!("rm -rf /srv/{PREFIX}"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// The project's inventory, roles and playbooks in a temp dir, with the
/// testbed inventory as inventory/production/testbed.yml (so it reads
/// production's group_vars: the admin, the agents and the fixture vault).
fn project_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["inventory", "roles", "playbooks"] {
        copy_dir(&repo().join(d), &dir.path().join(d));
    }
    std::fs::copy(
        testbed_inventory(),
        dir.path().join("inventory/production/testbed.yml"),
    )
    .expect("testbed inventory");
    dir
}

fn vault_password_file() -> String {
    repo()
        .join("tests/fixtures/vault-password.txt")
        .display()
        .to_string()
}

fn run(dir: &Path, command: &str, extra: &[&str]) -> Out {
    run_tags(dir, command, "plane", extra)
}

fn run_tags(dir: &Path, command: &str, tags: &str, extra: &[&str]) -> Out {
    let vars = format!(
        "@{}",
        repo()
            .join("tests/fixtures/plane-testbed-vars.yml")
            .display()
    );
    let prefix = format!("plane_testbed_prefix={PREFIX}");
    let pw = vault_password_file();
    let mut args = vec![
        command,
        "-i",
        "inventory/production/testbed.yml",
        "playbooks/site.yml",
        "--tags",
        tags,
        "-e",
        &vars,
        "-e",
        &prefix,
        "--vault-password-file",
        &pw,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    deployer(dir, &args)
}

/// `name status` of a stack's containers, sorted.
fn containers(stack: &str) -> Vec<String> {
    let mut v: Vec<String> = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={PREFIX}-{stack}"),
        "--format",
        "{{.Names}} {{.State}} {{.Status}}",
    ])
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

fn healthy(stack: &str, container: &str) -> bool {
    containers(stack)
        .iter()
        .any(|l| l.starts_with(&format!("{container} running")) && l.contains("(healthy)"))
}

/// (task, status, msg) of every task result.
fn results(stdout: &str) -> Vec<(String, String, String)> {
    events(stdout)
        .into_iter()
        .filter(|e| e["event"] == "task_result")
        .map(|e| {
            (
                e["task"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
                e["msg"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The decrypted vault of the copy as key -> value (kept in memory, never printed).
fn vault(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let view = deployer(
        dir,
        &[
            "vault",
            "view",
            "inventory/production/group_vars/all/secrets.yml",
            "--vault-password-file",
            &vault_password_file(),
        ],
    );
    assert_eq!(view.code, 0, "vault view failed: {}", view.stderr);
    view.stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

#[test]
fn plane_end_to_end_stack_users_tokens_idempotence_and_one_role_change() {
    build_images();
    cleanup();
    script(
        "tests/testbed/plane-networks.sh",
        &["up", &PREFIX.to_string()],
    );
    let copy = project_copy();
    let dir = copy.path();
    let before = std::fs::read(repo().join("inventory/production/group_vars/all/secrets.yml"))
        .expect("read");

    // --- first apply: stack, database, cache, DNS records, users and tokens ---
    let first = run(dir, "apply", &[]);
    assert_eq!(first.code, 0, "{}", first.all());

    for c in ["postgresql", "redis"] {
        assert!(
            healthy(c, &format!("{PREFIX}_{c}")),
            "{c} not healthy: {:?}",
            containers(c)
        );
    }
    for svc in ["api", "worker", "beat_worker", "web"] {
        assert!(
            healthy("plane", &format!("{PREFIX}_plane_{svc}")),
            "{svc} not healthy: {:?}",
            containers("plane")
        );
    }
    assert!(
        containers("plane").iter().any(|l| l
            .starts_with(&format!("{PREFIX}_plane_migrator exited"))
            && l.contains("Exited (0)")),
        "migrator did not complete: {:?}",
        containers("plane")
    );
    // No port of the stack is published: the hook went through SSH.
    let published = docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={PREFIX}-plane"),
        "--format",
        "{{.Ports}}",
    ]);
    assert!(
        !published.contains("->"),
        "a port is published: {published}"
    );

    // Progress of the long steps, as JSON events for CI: the hook's admin,
    // workspace and each user n of 11, and the health waits of the stack.
    let progress: Vec<serde_json::Value> = first
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "task_progress")
        .collect();
    let hook: Vec<String> = progress
        .iter()
        .filter(|e| e["step"] == "plane_users" && e["phase"] == "progress")
        .map(|e| e["msg"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        hook.len(),
        11 + 3,
        "admin, workspace, 10 users, roles?, verify: {hook:#?}"
    );
    assert!(
        hook[0].starts_with("admin ") && hook[0].ends_with("(user 1 of 11)"),
        "{hook:#?}"
    );
    assert!(hook[1].starts_with("workspace "), "{hook:#?}");
    for n in 2..=11 {
        assert!(
            hook.iter()
                .any(|m| m.starts_with(&format!("user {n} of 11: "))),
            "user {n} of 11 missing: {hook:#?}"
        );
    }
    assert!(
        progress
            .iter()
            .any(|e| e["step"] == "plane_users" && e["phase"] == "end"),
        "{progress:#?}"
    );
    assert!(
        progress.iter().any(|e| e["step"] == "health_wait"
            && e["phase"] == "end"
            && e["service"] == "plane-api"
            && e["ready"] == true),
        "the api's health wait: {progress:#?}"
    );

    let secrets = vault(dir);
    // Database and user `plane` with the shared password (seed 0.2), over TCP
    // with password authentication; the migrator's table proves the .env's
    // DATABASE_URL works.
    let pg_password = secrets
        .get("vault_postgresql_password")
        .expect("vault_postgresql_password");
    let rows = docker_exec_stdin(
        &format!("{PREFIX}_postgresql"),
        "read -r PGPASSWORD && export PGPASSWORD && psql -h 127.0.0.1 -U plane -d plane -tA -c 'SELECT count(*) FROM django_migrations'",
        &format!("{pg_password}\n"),
    );
    assert_eq!(rows, "0", "psql as plane with the shared password");
    let wrong = docker_exec_stdin(
        &format!("{PREFIX}_postgresql"),
        "read -r PGPASSWORD && export PGPASSWORD && psql -h 127.0.0.1 -U plane -d plane -tA -c 'SELECT 1'",
        "not-the-password\n",
    );
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    // Redis asks for its password (the worker's healthcheck used both DBs of the .env).
    let noauth = docker(&[
        "exec",
        &format!("{PREFIX}_redis"),
        "sh",
        "-c",
        "REDISCLI_AUTH= redis-cli ping",
    ]);
    assert!(noauth.contains("NOAUTH"), "{noauth}");

    // The api answers Plane's health path (GET / on 8000), from inside its network.
    let health = docker(&[
        "exec",
        &format!("{PREFIX}_plane_api"),
        "curl",
        "-fsS",
        "http://127.0.0.1:8000/",
    ]);
    assert!(health.contains("\"status\": \"OK\""), "{health}");
    let mode = on_host("tb1", &format!("stat -c '%a %U' /srv/{PREFIX}/plane/.env"));
    assert_eq!(mode.trim(), "600 root");
    let env = docker(&["exec", &format!("{PREFIX}_plane_api"), "env"]);
    for key in [
        "SECRET_KEY=",
        "DATABASE_URL=postgresql://plane:",
        "REDIS_URL=redis://",
        "AMQP_URL=redis://",
    ] {
        assert!(env.contains(key), "{key} missing from the api env");
    }
    // Split DNS: the Plane record, only because plane_subdomain is set.
    let records = on_host("tb1", &format!("cat /srv/{PREFIX}/extra-records.json"));
    assert!(
        records.contains("\"name\": \"work.plane.test\"") && records.contains("100.64.0.10"),
        "{records}"
    );

    // 11 users, 11 tokens in the copy's vault, 10 generated passwords; no
    // value in the run's output; the repository's vault untouched.
    let mut tokens = vec!["vault_plane_admin_token".to_string()];
    tokens.extend(AGENTS.iter().map(|a| format!("vault_plane_{a}_token")));
    for key in &tokens {
        let t = secrets
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the vault"));
        assert!(t.starts_with("plane_api_"), "{key} is not a Plane token");
        assert!(
            !first.all().contains(t.as_str()),
            "{key} leaked into the output"
        );
    }
    for a in AGENTS {
        assert!(
            secrets.contains_key(&format!("vault_plane_{a}_password")),
            "vault_plane_{a}_password missing"
        );
    }
    assert_eq!(
        std::fs::read(repo().join("inventory/production/group_vars/all/secrets.yml"))
            .expect("read"),
        before,
        "the repository's vault was modified"
    );
    // Seed DoD "Fonctionnel", through the public API v1 with the stored tokens
    // (sent on stdin, never on a command line): the ten agents are members
    // with their roles, the concierge (Admin) creates the project "VPAI".
    let api = format!("{PREFIX}_plane_api");
    let v1 = |token: &str, method: &str, path: &str, body: &str| {
        docker_exec_stdin(
            &api,
            &format!(
                "curl -sS -X {method} -H @- -H 'Content-Type: application/json' {} \
                 http://127.0.0.1:8000/api/v1/workspaces/javisi/{path}",
                if body.is_empty() {
                    String::new()
                } else {
                    format!("--data '{body}'")
                }
            ),
            &format!("X-API-Key: {token}\n"),
        )
    };
    let members: serde_json::Value = serde_json::from_str(&v1(
        &secrets["vault_plane_admin_token"],
        "GET",
        "members/",
        "",
    ))
    .expect("members JSON");
    let role_of = |email: &str| {
        members
            .as_array()
            .and_then(|m| m.iter().find(|u| u["email"] == email))
            .and_then(|u| u["role"].as_i64())
    };
    assert_eq!(members.as_array().map(Vec::len), Some(11), "{members}");
    assert_eq!(role_of("concierge@agents.javisi.local"), Some(20));
    let display_name = |email: &str| {
        members
            .as_array()
            .and_then(|m| m.iter().find(|u| u["email"] == email))
            .and_then(|u| u["display_name"].as_str().map(str::to_string))
    };
    assert_eq!(
        display_name("concierge@agents.javisi.local").as_deref(),
        Some("Mobutoo (Concierge AI)")
    );
    assert_eq!(
        display_name("mobuone@ewutelo.cloud").as_deref(),
        Some("Mobuone (Human)")
    );
    for a in &AGENTS[1..] {
        assert_eq!(
            role_of(&format!("{a}@agents.javisi.local")),
            Some(15),
            "{a}"
        );
    }
    let project = v1(
        &secrets["vault_plane_concierge_token"],
        "POST",
        "projects/",
        r#"{"name": "VPAI", "identifier": "VPAI"}"#,
    );
    assert!(project.contains("\"identifier\": \"VPAI\""), "{project}");
    // Seed security: every Plane container drops all capabilities and is limited.
    for svc in ["migrator", "api", "worker", "beat_worker", "web"] {
        let hc = docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.CapDrop}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
            &format!("{PREFIX}_plane_{svc}"),
        ]);
        let mut f = hc.split(' ');
        assert_eq!(f.next(), Some(r#"["ALL"]"#), "{svc}: {hc}");
        assert!(
            f.all(|n| n.parse::<u64>().is_ok_and(|n| n > 0)),
            "{svc}: {hc}"
        );
    }

    let hook = results(&first.stdout)
        .into_iter()
        .find(|(t, _, _)| t == "Plane users, roles and API tokens (stored in the vault)")
        .expect("the hook ran");
    assert_eq!(hook.1, "changed", "{hook:?}");

    // --- second apply: nothing to do ---
    let second = run(dir, "apply", &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    let r = recap(&second.stdout);
    assert_eq!(total(&r, "changed"), 0, "{}", second.all());
    // Measured 7 before the deploy lock: the batched observation, the
    // PostgreSQL role's two psql commands (create-if-missing, connect check),
    // and the re-reads of the observed files that follow commands (a command
    // may change any file). The run's own two on top (lock + pending
    // handlers at the start, audit + release at the end).
    assert!(total(&r, "remote_executions") <= 9, "{r}");

    // --- one agent's role changed: check --diff shows exactly that change ---
    let main = dir.join("inventory/production/group_vars/all/main.yml");
    let text = std::fs::read_to_string(&main).expect("main.yml");
    let edited = text.replace(
        "display_name: \"Imhotep (Builder AI)\", role: \"Member\"",
        "display_name: \"Imhotep (Builder AI)\", role: \"Admin\"",
    );
    assert_ne!(text, edited, "the builder's line in main.yml changed shape");
    std::fs::write(&main, edited).expect("edit main.yml");
    let check = run(dir, "check", &["--diff"]);
    assert_eq!(check.code, 2, "{}", check.all());
    let changed: Vec<_> = results(&check.stdout)
        .into_iter()
        .filter(|(_, s, _)| s == "changed")
        .collect();
    assert_eq!(
        changed,
        vec![(
            "Plane users, roles and API tokens (stored in the vault)".to_string(),
            "changed".to_string(),
            // A summary line, then one line per action.
            "would: 1 role changed\nwould change builder@agents.javisi.local's role to Admin"
                .to_string()
        )],
        "{}",
        check.stdout
    );
    std::fs::write(&main, text).expect("restore main.yml");

    // --- an .env change: the handler recreates the whole stack (recreate: always) ---
    let third = run(dir, "apply", &["-e", "plane_gunicorn_workers=3"]);
    assert_eq!(third.code, 0, "{}", third.all());
    assert!(
        results(&third.stdout)
            .iter()
            .any(|(t, s, _)| t == "recreate plane stack" && s == "changed"),
        "{}",
        third.stdout
    );
    let env = docker(&["exec", &format!("{PREFIX}_plane_api"), "env"]);
    assert!(
        env.contains("GUNICORN_WORKERS=3"),
        "the new .env is not loaded"
    );

    // Plane down: the hook alone (--tags plane_users) says which container and host.
    docker(&["stop", &api]);
    let down = run_tags(dir, "apply", "plane_users", &[]);
    assert_eq!(down.code, 1, "{}", down.all());
    assert!(
        down.stdout.contains(&format!(
            "plane_users: the api container '{api}' on tb1 is not running"
        )),
        "{}",
        down.stdout
    );

    cleanup();
}
