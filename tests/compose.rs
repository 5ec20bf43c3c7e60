//! docker_compose_v2 against the real testbed: the Docker API reached through
//! each host's SSH master. All testbed hosts share the machine's one engine,
//! so every project, container and network name here starts with the test's
//! own prefix.

mod common;

use common::*;

const IMAGE: &str = TEST_IMAGE;

/// Removes everything a test made: containers and networks by name prefix.
fn cleanup(prefix: &str) {
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={prefix}"),
    ]);
    for id in ids.lines().filter(|l| !l.is_empty()) {
        docker_cleanup(&["rm", "-f", id]);
    }
    let nets = docker(&["network", "ls", "-q", "--filter", &format!("name={prefix}")]);
    for n in nets.lines().filter(|l| !l.is_empty()) {
        docker_cleanup(&["network", "rm", n]);
    }
}

/// A playbook that writes the compose file and .env on tb1, then converges.
/// `module_args` are extra lines of the module's arguments (8 spaces deep).
fn stack_project(dir: &str, compose: &str, env: &str, module_args: &str) -> tempfile::TempDir {
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("          {l}\n"))
            .collect::<String>()
    };
    let site = format!(
        "- hosts: tb1\n  become: true\n  gather_facts: false\n  tasks:\n\
         \x20   - name: project dir\n      file: {{path: {dir}, state: directory}}\n\
         \x20   - name: compose file\n      copy:\n        dest: {dir}/compose.yml\n        content: |\n{}\
         \x20   - name: env\n      copy:\n        dest: {dir}/.env\n        content: |\n{}\
         \x20   - name: stack\n      community.docker.docker_compose_v2:\n        project_src: {dir}\n{module_args}",
        indent(compose),
        if env.is_empty() {
            "          # empty\n".to_string()
        } else {
            indent(env)
        }
    );
    project(&[("site.yml", &site)])
}

fn plane_compose(prefix: &str) -> String {
    r#"name: PREFIX
services:
  web:
    image: IMAGE
    command: [httpd, -f, -p, '8080', -h, /www]
    env_file: .env
    networks: [frontend, egress]
    cap_drop: [ALL]
    mem_limit: 64m
    depends_on:
      api: {condition: service_healthy}
  api:
    image: IMAGE
    command: [httpd, -f, -p, '8080', -h, /www]
    env_file: .env
    environment:
      ROLE: api
    networks:
      backend:
        aliases: [api-internal]
      frontend: {}
    cap_drop: [ALL]
    cap_add: [NET_BIND_SERVICE]
    cpus: 0.5
    mem_limit: 64m
    healthcheck:
      test: [CMD, wget, -q, -O-, 'http://127.0.0.1:8080/health']
      interval: 1s
      timeout: 2s
      retries: 5
  worker:
    image: IMAGE
    command: [sleep, '1000000']
    environment:
      QUEUE: default
    networks: [backend]
    deploy:
      resources:
        limits: {cpus: '0.25', memory: 32m}
networks:
  frontend: {}
  backend:
    ipam:
      config: [{subnet: 10.231.7.0/24}]
  egress:
    external: true
    name: PREFIX-egress
"#
    .replace("PREFIX", prefix)
    .replace("IMAGE", IMAGE)
}

/// Container ID and start time of each of the project's containers.
fn ids_and_starts(prefix: &str) -> Vec<String> {
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={prefix}"),
    ]);
    let mut out: Vec<String> = ids
        .lines()
        .map(|id| {
            docker(&[
                "inspect",
                "-f",
                "{{.Id}} {{.Name}} {{.State.StartedAt}}",
                id,
            ])
        })
        .collect();
    out.sort();
    out
}

#[test]
fn plane_shaped_stack_converges_is_idempotent_and_an_env_change_recreates_exactly_its_users() {
    ensure_test_image();
    let prefix = &scoped("cmptest-plane");
    let dir = "/srv/cmptest-plane";
    cleanup(prefix);
    docker(&["network", "create", &format!("{prefix}-egress")]);
    let args = "        wait: true\n        wait_timeout: 60\n        timeout: 1\n";
    let compose = plane_compose(prefix);
    let p = stack_project(dir, &compose, "APP_MODE=blue\nSHARED=1\n", args);
    let first = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(
        first.stdout.contains("changed: [tb1] stack"),
        "{}",
        first.all()
    );

    // The containers carry Compose's labels and the spec's limits and caps.
    let services = docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={prefix}"),
        "--filter",
        "label=com.docker.compose.oneoff=False",
        "--format",
        "{{.Label \"com.docker.compose.service\"}} {{.Label \"com.docker.compose.container-number\"}}",
    ]);
    let mut services: Vec<&str> = services.lines().collect();
    services.sort();
    assert_eq!(services, vec!["api 1", "web 1", "worker 1"]);
    let api = format!("{prefix}-api-1");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.CapDrop}} {{.HostConfig.CapAdd}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.State.Health.Status}}",
            &api
        ]),
        "[ALL] [NET_BIND_SERVICE] 67108864 500000000 healthy"
    );
    let hash = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"com.docker.compose.config-hash\"}}",
        &api,
    ]);
    assert_eq!(hash.len(), 64, "{hash}");
    assert!(
        docker(&[
            "network",
            "inspect",
            "-f",
            "{{.IPAM.Config}}",
            &format!("{prefix}_backend")
        ])
        .contains("10.231.7.0/24")
    );
    let nets = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{join $v.Aliases \",\"}} {{end}}",
        &api,
    ]);
    assert!(
        nets.contains(&format!("{prefix}_backend=")) && nets.contains("api-internal"),
        "{nets}"
    );

    // Second apply: nothing changes, no container restarts.
    let before = ids_and_starts(prefix);
    let second = deployer(
        p.path(),
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(
        total(&recap(&second.stdout), "changed"),
        0,
        "{}",
        second.all()
    );
    assert_eq!(ids_and_starts(prefix), before);

    // One key of .env changes: check names the services and the key, and exits 2.
    let p2 = stack_project(dir, &compose, "APP_MODE=green\nSHARED=1\n", args);
    let check = deployer(p2.path(), &["check", "--diff", "-i", &inv(), "site.yml"]);
    assert_eq!(check.code, 2, "{}", check.all());
    let out = check.stdout.clone();
    assert!(
        out.contains(&format!(
            "compose {prefix}/api: recreate (configuration changed)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("compose {prefix}/web: recreate")),
        "{out}"
    );
    assert!(
        out.contains("env APP_MODE: changed ('blue' -> 'green')"),
        "{out}"
    );
    assert!(!out.contains(&format!("compose {prefix}/worker")), "{out}");
    assert_eq!(ids_and_starts(prefix), before, "check changed something");

    let third = deployer(p2.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(third.code, 0, "{}", third.all());
    let after = ids_and_starts(prefix);
    let worker_before: Vec<_> = before.iter().filter(|l| l.contains("-worker-")).collect();
    let worker_after: Vec<_> = after.iter().filter(|l| l.contains("-worker-")).collect();
    assert_eq!(worker_before, worker_after, "worker does not use .env");
    for s in ["-api-", "-web-"] {
        let b: Vec<_> = before.iter().filter(|l| l.contains(s)).collect();
        let a: Vec<_> = after.iter().filter(|l| l.contains(s)).collect();
        assert_ne!(a, b, "{s} was not recreated");
    }
    assert_eq!(
        docker(&["exec", &api, "sh", "-c", "echo $APP_MODE"]),
        "green"
    );

    // state: absent removes the containers and the project's networks.
    let down = stack_project(
        dir,
        &compose,
        "APP_MODE=green\nSHARED=1\n",
        "        state: absent\n        timeout: 1\n",
    );
    let r = deployer(down.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(ids_and_starts(prefix).is_empty());
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name={prefix}_")
        ]),
        ""
    );
    cleanup(prefix);
}

#[test]
fn an_unhealthy_service_fails_with_its_health_log() {
    ensure_test_image();
    let prefix = &scoped("cmptest-unhealthy");
    cleanup(prefix);
    let compose = format!(
        "name: {prefix}\nservices:\n  sick:\n    image: {IMAGE}\n    command: [sleep, '1000000']\n    healthcheck:\n      test: ['CMD-SHELL', 'echo probe-said-no; exit 1']\n      interval: 1s\n      retries: 1\n"
    );
    let p = stack_project(
        "/srv/cmptest-unhealthy",
        &compose,
        "",
        "        wait: true\n        wait_timeout: 20\n        timeout: 1\n",
    );
    let r = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("service sick is unhealthy"),
        "{}",
        r.all()
    );
    assert!(r.stdout.contains("probe-said-no"), "{}", r.all());
    cleanup(prefix);
}

#[test]
fn bad_inputs_are_clear_errors() {
    ensure_test_image();
    let prefix = &scoped("cmptest-bad");
    cleanup(prefix);
    let dir = "/srv/cmptest-bad";
    let run = |compose: &str| {
        let p = stack_project(dir, compose, "", "        timeout: 1\n");
        deployer(p.path(), &["apply", "-i", &inv(), "site.yml"])
    };
    // An unknown key, with the compose file's path and line.
    let r = run(&format!(
        "name: {prefix}\nservices:\n  a:\n    image: {IMAGE}\n    privileged: true\n"
    ));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains(&format!(
            "{dir}/compose.yml:5:5: unsupported compose service key 'privileged'"
        )),
        "{}",
        r.all()
    );
    // An image that is not there and cannot be pulled (no registry).
    let r = run(&format!(
        "name: {prefix}\nservices:\n  a:\n    image: deployer-test-nonexistent:9\n"
    ));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("service a: image deployer-test-nonexistent:9 does not exist on the host and cannot be pulled"),
        "{}",
        r.all()
    );
    // An external network that does not exist.
    let r = run(&format!(
        "name: {prefix}\nservices:\n  a:\n    image: {IMAGE}\n    networks: [ext]\nnetworks:\n  ext:\n    external: true\n    name: {prefix}-missing\n"
    ));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains(&format!(
            "external network {prefix}-missing (used by service a) does not exist"
        )),
        "{}",
        r.all()
    );
    assert!(
        ids_and_starts(prefix).is_empty(),
        "nothing half-done is left"
    );
    cleanup(prefix);
}

#[test]
fn a_taken_port_and_a_missing_daemon_are_clear_errors_naming_the_service() {
    ensure_test_image();
    let prefix = &scoped("cmptest-bad2");
    cleanup(prefix);
    let dir = "/srv/cmptest-bad2";
    // A port this test holds: Docker cannot publish it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let compose = format!(
        "name: {prefix}\nservices:\n  a:\n    image: {IMAGE}\n    command: [sleep, '600']\n    ports: ['127.0.0.1:{port}:8080']\n"
    );
    let p = stack_project(dir, &compose, "", "        timeout: 1\n");
    let r = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .contains("service a: starting the new container (it is left created, not running): ")
            && r.stdout.contains("address already in use"),
        "{}",
        r.all()
    );
    // What is left is reported, and is not running.
    let left = ids_and_starts(prefix);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.State.Status}}",
            &format!("{prefix}-a-1")
        ]),
        "created"
    );
    drop(held);
    cleanup(prefix);

    // No daemon behind the socket: as root through the sudo bridge (become)...
    let compose = format!("name: {prefix}\nservices:\n  a:\n    image: {IMAGE}\n");
    let args = "        docker_host: unix:///var/run/no-docker.sock\n";
    let p = stack_project(dir, &compose, "", args);
    let r = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains(
            "host tb1: Docker: reaching Docker as 'root': no Docker daemon socket at /var/run/no-docker.sock (is Docker installed and running?)"
        ),
        "{}",
        r.all()
    );
    // ...and as the login user through a forwarded socket.
    let site = format!(
        "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - name: stack\n      docker_compose_v2:\n        project_src: {dir}\n{args}"
    );
    let p = project(&[("site.yml", &site)]);
    let text = std::fs::read_to_string(testbed_inventory()).expect("inventory");
    std::fs::write(
        p.path().join("inv.yml"),
        text.replace("    ansible_become: true\n", ""),
    )
    .expect("write");
    let r = deployer(p.path(), &["apply", "-i", "inv.yml", "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains(
            "host tb1: Docker: no Docker daemon socket at /var/run/no-docker.sock on the host: is Docker installed and running?"
        ),
        "{}",
        r.all()
    );
    assert!(ids_and_starts(prefix).is_empty());
}
