//! docker_network and docker_container against the real testbed (the Docker
//! API through each host's SSH master), Docker reached as root through `become`
//! by a user outside the docker group, and Docker bad input. All testbed hosts
//! share the machine's one engine: every name here is `common::scoped`.

mod common;

use std::process::Command;

use common::*;

const IMAGE: &str = TEST_IMAGE;

fn rm_containers(names: &[&str]) {
    for n in names {
        docker_cleanup(&["rm", "-f", n]);
    }
}

fn rm_networks(names: &[&str]) {
    for n in names {
        docker_cleanup(&["network", "rm", n]);
    }
}

/// A second octet for this testbed's subnets (10.X.n.0/24), so side-by-side
/// testbeds on the one engine do not ask for overlapping pools.
fn octet() -> u32 {
    let h = testbed_id()
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    100 + h % 100
}

/// A one-play playbook on `host` with these tasks (YAML, 4 spaces deep).
fn play(host: &str, become_: bool, tasks: &str) -> tempfile::TempDir {
    let site =
        format!("- hosts: {host}\n  become: {become_}\n  gather_facts: false\n  tasks:\n{tasks}");
    project(&[("site.yml", &site)])
}

fn networks_tasks(front: &str, back: &str, egress: &str, backend_subnet: &str) -> String {
    format!(
        "    - name: frontend
      community.docker.docker_network:
        name: {front}
        labels: {{tier: front}}
        attachable: true
    - name: backend
      community.docker.docker_network:
        name: {back}
        internal: true
        ipam_config:
          - subnet: {backend_subnet}
            gateway: {gw}
    - name: egress
      docker_network:
        name: {egress}
        ipam_config: [{{subnet: '10.{o}.3.0/24'}}]
",
        gw = backend_subnet.replace(".0/24", ".1"),
        o = octet(),
    )
}

#[test]
fn networks_are_created_idempotent_and_a_differing_one_is_recreated_only_when_free() {
    ensure_test_image();
    let front = scoped("dm-frontend");
    let back = scoped("dm-backend");
    let egress = scoped("dm-egress");
    let squatter = scoped("dm-squatter");
    rm_containers(&[&squatter]);
    rm_networks(&[&front, &back, &egress]);
    let o = octet();
    let subnet = format!("10.{o}.2.0/24");
    let p = play(
        "tb1",
        true,
        &networks_tasks(&front, &back, &egress, &subnet),
    );

    let first = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(first.code, 0, "{}", first.all());
    for n in ["frontend", "backend", "egress"] {
        assert!(
            first.stdout.contains(&format!("changed: [tb1] {n}")),
            "{}",
            first.all()
        );
    }
    assert_eq!(
        docker(&[
            "network",
            "inspect",
            "-f",
            "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
            &back
        ]),
        format!("true 10.{o}.2.0/24 10.{o}.2.1")
    );
    assert_eq!(
        docker(&[
            "network",
            "inspect",
            "-f",
            "{{.Attachable}} {{index .Labels \"tier\"}}",
            &front
        ]),
        "true front"
    );

    // Second apply: nothing changes.
    let id_before = docker(&["network", "inspect", "-f", "{{.Id}}", &back]);
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

    // A different subnet: check names the difference and changes nothing.
    let moved = format!("10.{o}.9.0/24");
    let p2 = play("tb1", true, &networks_tasks(&front, &back, &egress, &moved));
    let check = deployer(p2.path(), &["check", "--diff", "-i", &inv(), "site.yml"]);
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(
        check.stdout.contains(&format!(
            "ipam_config: [10.{o}.2.0/24 gw 10.{o}.2.1] -> [10.{o}.9.0/24 gw 10.{o}.9.1]"
        )),
        "{}",
        check.all()
    );
    assert!(
        check
            .stdout
            .contains("recreate (settings differ, no container attached)"),
        "{}",
        check.all()
    );
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Id}}", &back]),
        id_before
    );

    // With a container attached, the apply refuses and names it.
    docker(&[
        "run",
        "-d",
        "--name",
        &squatter,
        "--network",
        &back,
        IMAGE,
        "sleep",
        "600",
    ]);
    let refused = deployer(p2.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stdout.contains(&format!(
            "network {back} differs (ipam_config: [10.{o}.2.0/24 gw 10.{o}.2.1] -> [10.{o}.9.0/24 gw 10.{o}.9.1]) but containers are attached to it ({squatter})"
        )),
        "{}",
        refused.all()
    );
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Id}}", &back]),
        id_before,
        "the network was left as it is"
    );

    // Free again: recreated with the new subnet.
    rm_containers(&[&squatter]);
    let third = deployer(p2.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(third.code, 0, "{}", third.all());
    assert!(
        third.stdout.contains("changed: [tb1] backend"),
        "{}",
        third.all()
    );
    assert_ne!(
        docker(&["network", "inspect", "-f", "{{.Id}}", &back]),
        id_before
    );
    assert!(
        docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &back
        ])
        .contains(&moved)
    );

    // state: absent removes them; a second time changes nothing.
    let absent = format!(
        "    - name: gone\n      docker_network:\n        name: '{{{{ item }}}}'\n        state: absent\n      loop: [{front}, {back}, {egress}]\n"
    );
    let p3 = play("tb1", true, &absent);
    let gone = deployer(p3.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(gone.code, 0, "{}", gone.all());
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &format!("name={front}")]),
        ""
    );
    let again = deployer(
        p3.path(),
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(
        total(&recap(&again.stdout), "changed"),
        0,
        "{}",
        again.all()
    );
}

fn container_task(
    name: &str,
    net: &str,
    volume: &str,
    mode: &str,
    mem: &str,
    token: &str,
) -> String {
    format!(
        "    - name: net
      docker_network:
        name: {net}
    - name: web
      community.docker.docker_container:
        name: {name}
        image: {IMAGE}
        command: [httpd, -f, -p, '8080', -h, /www]
        env:
          MODE: '{mode}'
          API_TOKEN: '{token}'
          PRICE: '$5'
        published_ports: ['127.0.0.1::8080']
        networks:
          - name: {net}
            aliases: [www]
        volumes: ['{volume}:/data']
        mounts:
          - {{type: tmpfs, target: /run}}
        capabilities: [NET_BIND_SERVICE]
        cap_drop: [ALL]
        memory: {mem}
        cpus: 0.5
        healthcheck:
          test: [CMD, wget, -q, -O-, 'http://127.0.0.1:8080/health']
          interval: 1s
          retries: 5
        restart_policy: unless-stopped
        labels: {{app: web}}
        read_only: true
        security_opts: [no-new-privileges]
        tmpfs: ['/tmp:size=1m']
        stop_timeout: 1
"
    )
}

fn id_and_start(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", name])
}

#[test]
fn a_container_is_created_left_alone_and_recreated_with_a_masked_field_diff() {
    ensure_test_image();
    let name = scoped("dm-web");
    let net = scoped("dm-web-net");
    let volume = scoped("dm-web-data");
    rm_containers(&[&name]);
    rm_networks(&[&net]);
    docker_cleanup(&["volume", "rm", &volume]);
    let p = play(
        "tb2",
        true,
        &container_task(&name, &net, &volume, "blue", "64M", "t0k3n-one"),
    );
    // Check mode on a fresh host: the network an earlier task would create is
    // a note, not an error.
    let dry = deployer(p.path(), &["check", "--diff", "-i", &inv(), "site.yml"]);
    assert_eq!(dry.code, 2, "{}", dry.all());
    assert!(
        dry.stdout.contains(&format!(
            "external network {net} (used by container {name}) does not exist on the host"
        )) && dry.stdout.contains("create (no container yet)"),
        "{}",
        dry.all()
    );
    let first = deployer(
        p.path(),
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(
        total(&recap(&first.stdout), "changed"),
        2,
        "{}",
        first.all()
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.HostConfig.CapDrop}} {{.HostConfig.CapAdd}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.SecurityOpt}} {{index .Config.Labels \"app\"}}",
            &name
        ]),
        "true [ALL] [NET_BIND_SERVICE] 67108864 500000000 unless-stopped true [no-new-privileges] web"
    );
    let aliases = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{join $v.Aliases \",\"}} {{end}}",
        &name,
    ]);
    assert!(
        aliases.contains(&format!("{net}=")) && aliases.contains("www"),
        "{aliases}"
    );
    assert_eq!(
        docker(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo $PRICE; grep -c /run /proc/mounts"
        ]),
        "$5\n1"
    );
    // The run result names the image it left running (the rollback work pins it).
    let images = events(&first.stdout)
        .into_iter()
        .find(|e| e["event"] == "images")
        .unwrap_or_else(|| panic!("no images event in {}", first.stdout));
    let image_id = docker(&["image", "inspect", "-f", "{{.Id}}", IMAGE]);
    assert_eq!(images["images"][&name]["image"], IMAGE, "{images}");
    assert_eq!(images["images"][&name]["image_id"], image_id.as_str());
    // A locally built image has no repo digest: its id stands for it.
    assert_eq!(images["images"][&name]["digest"], image_id.as_str());

    // Second apply: nothing changes, the container is not restarted.
    let before = id_and_start(&name);
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
    assert_eq!(id_and_start(&name), before);

    // Changes: check names each field, secrets masked, and changes nothing.
    let p2 = play(
        "tb2",
        true,
        &container_task(&name, &net, &volume, "green", "96M", "t0k3n-two"),
    );
    let check = deployer(p2.path(), &["check", "--diff", "-i", &inv(), "site.yml"]);
    assert_eq!(check.code, 2, "{}", check.all());
    let out = &check.stdout;
    for want in [
        format!("container {name}"),
        "recreate (configuration changed)".to_string(),
        "env MODE: changed ('blue' -> 'green')".to_string(),
        "env API_TOKEN: changed (******** -> ********)".to_string(),
        "memory: 67108864 -> 100663296".to_string(),
    ] {
        assert!(out.contains(&want), "{want} missing in:\n{out}");
    }
    assert!(!out.contains("t0k3n"), "{out}");
    assert_eq!(id_and_start(&name), before, "check changed something");

    let third = deployer(p2.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(third.code, 0, "{}", third.all());
    assert!(
        third.stdout.contains("changed: [tb2] web"),
        "{}",
        third.all()
    );
    assert!(!third.all().contains("t0k3n"), "{}", third.all());
    assert_ne!(id_and_start(&name), before);
    assert_eq!(docker(&["exec", &name, "sh", "-c", "echo $MODE"]), "green");

    // stopped, then started again, then absent (twice: the second changes nothing).
    let state = |s: &str| {
        play(
            "tb2",
            true,
            &format!(
                "    - name: state\n      docker_container:\n        name: {name}\n        image: {IMAGE}\n        state: {s}\n        stop_timeout: 1\n"
            ),
        )
    };
    let stopped = deployer(
        state("stopped").path(),
        &["apply", "-i", &inv(), "site.yml"],
    );
    assert_eq!(stopped.code, 0, "{}", stopped.all());
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &name]),
        "false"
    );
    let absent = state("absent");
    let gone = deployer(absent.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(gone.code, 0, "{}", gone.all());
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{name}$")]),
        ""
    );
    let again = deployer(
        absent.path(),
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(
        total(&recap(&again.stdout), "changed"),
        0,
        "{}",
        again.all()
    );
    rm_networks(&[&net]);
    docker_cleanup(&["volume", "rm", &volume]);
}

#[test]
fn unsupported_arguments_are_load_errors_at_their_line_and_nothing_runs() {
    let name = scoped("dm-priv");
    let p = play(
        "tb1",
        true,
        &format!(
            "    - name: web\n      docker_container:\n        name: {name}\n        image: {IMAGE}\n        privileged: true\n"
        ),
    );
    let r = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains(
            "site.yml:9:9: error[schema-unknown-arg] docker_container has no argument 'privileged'"
        ),
        "{}",
        r.all()
    );
    assert!(
        !r.stdout.contains("[tb1]"),
        "a host was contacted: {}",
        r.all()
    );
    let p = play(
        "tb1",
        true,
        "    - name: n\n      community.docker.docker_network:\n        name: x\n        scope: swarm\n",
    );
    let r = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains(
            "site.yml:8:9: error[schema-unknown-arg] docker_network has no argument 'scope'"
        ),
        "{}",
        r.all()
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{name}$")]),
        ""
    );
}

/// Makes a login user on `host` outside the docker group (with passwordless
/// sudo when `sudo` is set) and returns an inventory that logs in as it.
fn outsider(host: &str, user: &str, sudo: bool, dir: &std::path::Path) -> String {
    let sudoers = if sudo {
        format!(
            "printf '{user} ALL=(ALL) NOPASSWD:ALL\\n' >/etc/sudoers.d/{user}; chmod 0440 /etc/sudoers.d/{user}"
        )
    } else {
        format!("rm -f /etc/sudoers.d/{user}")
    };
    let out = on_host(
        host,
        &format!(
            "set -e; id {user} >/dev/null 2>&1 || {{ useradd -m -s /bin/sh {user}; usermod -p '*' {user}; }}
             mkdir -p /home/{user}/.ssh; cp /root/.ssh/authorized_keys /home/{user}/.ssh/
             chown -R {user}: /home/{user}/.ssh; chmod 700 /home/{user}/.ssh
             {sudoers}
             if su -s /bin/sh -c 'test -w /var/run/docker.sock' {user}; then echo CAN-OPEN; fi
             id -nG {user}"
        ),
    );
    assert_eq!(out.trim(), user, "{user} must not reach the socket: {out}");
    let text = std::fs::read_to_string(testbed_inventory()).expect("inventory");
    let text = text
        .replace("ansible_user: deploy", &format!("ansible_user: {user}"))
        // The play's `become` decides (the variable would win over it).
        .replace("    ansible_become: true\n", "");
    let path = dir.join("outsider.yml");
    std::fs::write(&path, text).expect("write inventory");
    path.display().to_string()
}

#[test]
fn become_reaches_docker_as_root_for_a_login_user_outside_the_docker_group() {
    let net = scoped("dm-become");
    rm_networks(&[&net]);
    let task = |become_: bool| {
        play(
            "tb3",
            become_,
            &format!("    - name: net\n      docker_network:\n        name: {net}\n"),
        )
    };
    let without = task(false);
    let inv = outsider("tb3", "nodock", true, without.path());
    let r = deployer(without.path(), &["apply", "-i", &inv, "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains(
            "Docker: the SSH login user 'nodock' may not open /var/run/docker.sock (root:"
        ) && r.stdout.contains("set `become: true`"),
        "{}",
        r.all()
    );
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &format!("name=^{net}$")]),
        ""
    );

    // become: true reaches the engine as root through the SSH master (sudo -n bridge).
    let with = task(true);
    let r = deployer(with.path(), &["apply", "-i", &inv, "site.yml"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("changed: [tb3] net"), "{}", r.all());
    assert_ne!(
        docker(&["network", "ls", "-q", "--filter", &format!("name=^{net}$")]),
        ""
    );
    let again = deployer(
        with.path(),
        &["apply", "-i", &inv, "site.yml", "--format", "json"],
    );
    assert_eq!(
        total(&recap(&again.stdout), "changed"),
        0,
        "{}",
        again.all()
    );

    // Nothing of the relay is left on the host once the run is over.
    // A command that fails when a relay directory or process is left. The
    // brackets keep the text `deployer-docker` out of this very shell's
    // command line, which pgrep -f would otherwise match.
    on_host(
        "tb3",
        "test -z \"$(ls -d /tmp/deployer-docke[r]-* 2>/dev/null)\" && ! pgrep -f '[d]eployer-docker'",
    );

    // The per-connection bridge (used where python3 is missing) works too.
    rm_networks(&[&net]);
    let o = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["apply", "-i", &inv, "site.yml", "--format", "json"])
        .current_dir(with.path())
        .env("DEPLOYER_DOCKER_BRIDGE", "stdio")
        .output()
        .expect("run deployer");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert_eq!(total(&recap(&stdout), "changed"), 1, "{stdout}");
    assert_ne!(
        docker(&["network", "ls", "-q", "--filter", &format!("name=^{net}$")]),
        ""
    );

    // A user sudo refuses: the error says so.
    let refused = task(true);
    let inv = outsider("tb3", "nosudo", false, refused.path());
    let r = deployer(refused.path(), &["apply", "-i", &inv, "site.yml"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .contains("cannot reach Docker as 'root' through sudo: sudo:"),
        "{}",
        r.all()
    );
    rm_networks(&[&net]);
}

#[test]
fn a_container_with_a_missing_image_or_network_is_a_clear_error_and_nothing_is_left() {
    ensure_test_image();
    let name = scoped("dm-bad");
    rm_containers(&[&name]);
    let run = |args: &str| {
        let p = play(
            "tb1",
            true,
            &format!("    - name: web\n      docker_container:\n        name: {name}\n{args}"),
        );
        deployer(p.path(), &["apply", "-i", &inv(), "site.yml"])
    };
    let r = run("        image: deployer-test-nonexistent:9\n");
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains(&format!(
            "container {name}: image deployer-test-nonexistent:9 does not exist on the host and cannot be pulled"
        )),
        "{}",
        r.all()
    );
    let r = run(&format!(
        "        image: {IMAGE}\n        pull: never\n        networks: [{{name: {name}-nonet}}]\n"
    ));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains(&format!(
            "external network {name}-nonet (used by container {name}) does not exist on the host: create it first (docker_network)"
        )),
        "{}",
        r.all()
    );
    let r = run(&format!("        image: {IMAGE}\n        state: present\n"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all()
            .contains("state=present (created but not started) is not supported"),
        "{}",
        r.all()
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{name}$")]),
        ""
    );
}
