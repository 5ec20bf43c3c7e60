//! Releases, rollback and health-gated automatic rollback on the
//! real testbed: deploy A, deploy B (changed template + new image), roll back
//! to A (files byte for byte, containers by image ID), deploy a C whose
//! healthcheck fails and watch it return to B by itself; plus the bad inputs.
//! Every Docker object is named with `scoped` (this testbed's id first).

mod common;

use std::process::Command;

use common::*;

const BASE_IMAGE: &str = "deployer-test-busybox:1";

/// The base test image, and `tag` built from it with its own LABEL (so its
/// image ID differs from every other tag's). Returns the image ID.
fn image(tag: &str) -> String {
    let o = Command::new(repo().join("tests/testbed/build-test-image.sh"))
        .arg(BASE_IMAGE)
        .output()
        .expect("build-test-image.sh");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker build");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        write!(
            stdin,
            "FROM {BASE_IMAGE}\nLABEL deployer.test.version={tag}\n"
        )
        .expect("write");
    }
    let o = child.wait_with_output().expect("docker build");
    assert!(
        o.status.success(),
        "building {tag}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    docker(&["image", "inspect", "-f", "{{.Id}}", tag])
}

fn cleanup(project: &str, dir: &str) {
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    for id in ids.lines().filter(|l| !l.is_empty()) {
        docker(&["rm", "-f", id]);
    }
    for n in docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={project}"),
    ])
    .lines()
    {
        docker(&["network", "rm", n]);
    }
    on_host("tb1", &format!("rm -rf {dir}"));
}

/// A project that renders `app.conf` and a compose file on tb1 and converges
/// the stack with `wait: true` (a deploy gate). Versions differ by `-e`.
fn stack_project(dir: &str, compose_project: &str) -> tempfile::TempDir {
    let site = format!(
        "- hosts: tb1\n  become: true\n  gather_facts: false\n  tasks:\n\
         \x20   - name: app dir\n      file: {{path: {dir}, state: directory, mode: '0755'}}\n\
         \x20   - name: app config\n      template: {{src: app.conf.j2, dest: {dir}/app.conf, mode: '0644'}}\n\
         \x20   - name: compose file\n      template: {{src: compose.yml.j2, dest: {dir}/compose.yml}}\n\
         \x20   - name: stack\n      community.docker.docker_compose_v2:\n        project_src: {dir}\n        wait: true\n        wait_timeout: 15\n"
    );
    let compose = format!(
        "name: {compose_project}\nservices:\n  web:\n    image: \"{{{{ image }}}}\"\n    command: [httpd, -f, -p, '8080', -h, /www]\n    healthcheck:\n\
         {{% if healthy | bool %}}\n      test: [CMD, wget, -q, -O-, 'http://127.0.0.1:8080/health']\n{{% else %}}\n      test: [CMD, 'false']\n{{% endif %}}\n\
         \x20     interval: 1s\n      timeout: 2s\n      retries: 2\n"
    );
    project(&[
        ("site.yml", site.as_str()),
        (
            "templates/app.conf.j2",
            "# app\nversion={{ version }}\nimage={{ image }}\n",
        ),
        ("templates/compose.yml.j2", compose.as_str()),
    ])
}

fn deploy(p: &tempfile::TempDir, version: &str, image: &str, healthy: bool, extra: &[&str]) -> Out {
    let inv = inv();
    let v = format!("version={version}");
    let i = format!("image={image}");
    let h = format!("healthy={healthy}");
    let mut args = vec![
        "apply", "site.yml", "-i", &inv, "--format", "json", "-e", &v, "-e", &i, "-e", &h,
    ];
    args.extend_from_slice(extra);
    deployer(p.path(), &args)
}

fn releases(p: &tempfile::TempDir) -> Vec<serde_json::Value> {
    let inv = inv();
    let o = deployer(
        p.path(),
        &["releases", "-i", &inv, "-l", "tb1", "--format", "json"],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("json");
    v["releases"].as_array().cloned().unwrap_or_default()
}

/// The project's release state on the hosts (the project id is the temp
/// directory's name).
fn state_dir(p: &tempfile::TempDir) -> String {
    format!(
        "/var/lib/deployer/{}",
        p.path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("none")
    )
}

fn container_image(project: &str) -> String {
    docker(&["inspect", "-f", "{{.Image}}", &format!("{project}-web-1")])
}

const CONF_A: &str = "# app\nversion=A\nimage=IMG\n";

#[test]
fn deploy_rollback_and_automatic_rollback_on_a_failed_healthcheck() {
    let project = scoped("rel-stack");
    let dir = format!("/srv/{project}");
    cleanup(&project, &dir);
    let tag_a = format!("{}:a", scoped("relimg"));
    let tag_b = format!("{}:b", scoped("relimg"));
    let id_a = image(&tag_a);
    let id_b = image(&tag_b);
    assert_ne!(id_a, id_b);
    let p = stack_project(&dir, &project);

    // A, then the same A again: a no-op run records no release and costs no
    // extra remote execution.
    let a = deploy(&p, "A", &tag_a, true, &[]);
    assert_eq!(a.code, 0, "{}", a.all());
    assert_eq!(releases(&p).len(), 1);
    let again = deploy(&p, "A", &tag_a, true, &[]);
    assert_eq!(again.code, 0, "{}", again.all());
    let r = recap(&again.stdout);
    assert_eq!(r["hosts"]["tb1"]["changed"], 0, "{}", again.all());
    assert!(
        r["hosts"]["tb1"]["remote_executions"]
            .as_u64()
            .unwrap_or(99)
            <= 5,
        "{}",
        again.stdout
    );
    // (At most 3 before the deploy lock; the lock adds
    // its 2: take it at the start, audit + release at the end. Releases add none.)
    assert_eq!(releases(&p).len(), 1, "a no-op run wrote a release");
    let conf_a = on_host("tb1", &format!("cat {dir}/app.conf"));
    assert_eq!(conf_a, CONF_A.replace("IMG", &tag_a));
    assert_eq!(container_image(&project), id_a);

    // B: changed template and a new image.
    let b = deploy(&p, "B", &tag_b, true, &[]);
    assert_eq!(b.code, 0, "{}", b.all());
    assert_eq!(container_image(&project), id_b);
    let list = releases(&p);
    assert_eq!(list.len(), 2);
    let rel_b = &list[1];
    assert_eq!(rel_b["kind"], "apply");
    assert_eq!(rel_b["status"], "ok");
    let conf_rec = rel_b["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == format!("{dir}/app.conf"))
        .expect("app.conf recorded");
    assert_eq!(conf_rec["previous"]["state"], "file");
    assert_eq!(conf_rec["previous"]["mode"], "0644");
    let web = &rel_b["compose"][0]["services"]["web"];
    assert_eq!(web["before"]["image_id"], id_a.as_str());
    assert_eq!(web["after"]["image_id"], id_b.as_str());
    assert_eq!(web["before"]["image"], tag_a.as_str());
    assert_eq!(web["after"]["spec"]["image"], tag_b.as_str());
    assert_ne!(web["before"]["config_hash"], web["after"]["config_hash"]);
    assert_eq!(rel_b["images_needed"], serde_json::json!([id_a]));
    // The state is private to root on the host.
    let perms = on_host(
        "tb1",
        &format!(
            "stat -c '%a %U' {}/releases/{}",
            state_dir(&p),
            rel_b["id"].as_str().unwrap_or("")
        ),
    );
    assert_eq!(perms.trim(), "700 root");

    // rollback --check --diff: shows A's content coming back, changes nothing.
    let inv = inv();
    let check = deployer(
        p.path(),
        &["rollback", "-i", &inv, "-l", "tb1", "--check", "--diff"],
    );
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(
        check.stdout.contains("-version=B") && check.stdout.contains("+version=A"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("web"), "{}", check.stdout);
    assert_eq!(
        on_host("tb1", &format!("cat {dir}/app.conf")),
        CONF_A.replace("IMG", &tag_b).replace("=A", "=B")
    );
    assert_eq!(container_image(&project), id_b);
    assert_eq!(releases(&p).len(), 2);

    // rollback: A's files byte for byte (and mode), A's container by image ID.
    let rb = deployer(p.path(), &["rollback", "-i", &inv, "-l", "tb1"]);
    assert_eq!(rb.code, 0, "{}", rb.all());
    assert_eq!(on_host("tb1", &format!("cat {dir}/app.conf")), conf_a);
    assert_eq!(
        on_host("tb1", &format!("stat -c '%a %U' {dir}/app.conf")).trim(),
        "644 root"
    );
    assert_eq!(container_image(&project), id_a);
    let list = releases(&p);
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["kind"], "rollback");
    assert_eq!(list[2]["undoes"], serde_json::json!([rel_b["id"]]));
    // Re-applying A after the rollback changes nothing: the host is exactly A.
    let a3 = deploy(&p, "A", &tag_a, true, &[]);
    assert_eq!(
        recap(&a3.stdout)["hosts"]["tb1"]["changed"],
        0,
        "{}",
        a3.all()
    );

    // B again, then C whose healthcheck fails: back to B by itself.
    let b2 = deploy(&p, "B", &tag_b, true, &[]);
    assert_eq!(b2.code, 0, "{}", b2.all());
    let conf_b = on_host("tb1", &format!("cat {dir}/app.conf"));
    let c = deploy(&p, "C", &tag_a, false, &[]);
    assert_ne!(c.code, 0, "{}", c.all());
    let out = c.all();
    eprintln!("{out}");
    assert!(out.contains("deploy gate failed"), "{out}");
    assert!(out.contains("fresh SSH connection"), "{out}");
    assert_eq!(on_host("tb1", &format!("cat {dir}/app.conf")), conf_b);
    assert_eq!(container_image(&project), id_b);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.State.Health.Status}}",
            &format!("{project}-web-1")
        ]),
        "healthy"
    );
    let list = releases(&p);
    let n = list.len();
    assert_eq!(list[n - 2]["status"], "failed");
    assert_eq!(list[n - 1]["kind"], "auto-rollback");

    // --no-auto-rollback: the failed C stays.
    let c2 = deploy(&p, "C", &tag_a, false, &["--no-auto-rollback"]);
    assert_ne!(c2.code, 0, "{}", c2.all());
    assert!(
        c2.all().contains("automatic rollback is off"),
        "{}",
        c2.all()
    );
    assert!(on_host("tb1", &format!("cat {dir}/app.conf")).contains("version=C"));

    cleanup(&project, &dir);
    on_host("tb1", &format!("rm -rf {}", state_dir(&p)));
}

#[test]
fn bad_rollbacks_are_refused_and_change_nothing() {
    let project = scoped("rel-bad");
    let dir = format!("/srv/{project}");
    cleanup(&project, &dir);
    let tag_x = format!("{}:x", scoped("relgone"));
    let tag_y = format!("{}:y", scoped("relgone"));
    image(&tag_x);
    let id_y = image(&tag_y);
    let p = stack_project(&dir, &project);
    let inv = inv();

    // Nothing deployed yet, on any host.
    let o = deployer(p.path(), &["rollback", "-i", &inv]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("no release of project"), "{}", o.all());

    // One release only: no earlier release.
    assert_eq!(deploy(&p, "X", &tag_x, true, &[]).code, 0);
    let o = deployer(p.path(), &["rollback", "-i", &inv, "-l", "tb1"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("no earlier release"), "{}", o.all());

    // Unknown id.
    assert_eq!(deploy(&p, "Y", &tag_y, true, &[]).code, 0);
    let before = on_host("tb1", &format!("cat {dir}/app.conf; cat {dir}/compose.yml"));
    let o = deployer(
        p.path(),
        &[
            "rollback",
            "-i",
            &inv,
            "-l",
            "tb1",
            "--to",
            "20000101T000000Z-000000",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("unknown release"), "{}", o.all());
    assert!(o.stderr.contains("nothing was changed"), "{}", o.all());

    // The release records are checked before any lock is taken: with the
    // deploy lock held by a run of another machine, an unknown id is still
    // refused for what it is, and that lock is left as it was.
    let ghost = r#"{"run_id":"20260101T000000Z-dead","who":"ghost@elsewhere","since":"2026-01-01T00:00:00Z","revision":null,"dirty":false,"command":"deployer apply","message":null,"pid":4242}"#;
    let lock = format!("{}/lock", state_dir(&p));
    on_host("tb1", &format!("echo '{ghost}' > {lock}"));
    let o = deployer(
        p.path(),
        &[
            "rollback",
            "-i",
            &inv,
            "-l",
            "tb1",
            "--to",
            "20000101T000000Z-000000",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("unknown release"), "{}", o.all());
    assert!(!o.all().contains("ghost@elsewhere"), "{}", o.all());
    assert!(on_host("tb1", &format!("cat {lock}")).contains("ghost@elsewhere"));
    on_host("tb1", &format!("rm -f {lock}"));

    // Before any connection: every targeted host's connection settings
    // (here a key file that does not exist) and its inventory.
    let text = std::fs::read_to_string(testbed_inventory()).expect("inventory");
    let nokey: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("ansible_ssh_private_key_file:") {
                "    ansible_ssh_private_key_file: /nonexistent/deployer-test-key".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(nokey.contains("/nonexistent/deployer-test-key"), "{text}");
    std::fs::write(p.path().join("inv-nokey.yml"), nokey).expect("inventory");
    let o = deployer(
        p.path(),
        &["rollback", "-i", "inv-nokey.yml", "-l", "tb1,tb2"],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    for want in [
        "rollback refused before connecting to any host, nothing was changed",
        "tb1: ansible_ssh_private_key_file /nonexistent/deployer-test-key",
        "tb2: ansible_ssh_private_key_file /nonexistent/deployer-test-key",
    ] {
        assert!(o.stderr.contains(want), "missing {want:?}:\n{}", o.all());
    }
    std::fs::write(
        p.path().join("inv-broken.yml"),
        "all:\n  hosts:\n    tb1: {ansible_host: [127.0.0.1}\n",
    )
    .expect("inventory");
    let o = deployer(p.path(), &["rollback", "-i", "inv-broken.yml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("inv-broken.yml:3:")
            && o.stderr.contains("before connecting to any host"),
        "{}",
        o.all()
    );

    // The image the earlier release needs is gone: refused, listed.
    docker_ok(&["rmi", &tag_x]);
    let o = deployer(p.path(), &["rollback", "-i", &inv, "-l", "tb1"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("which is gone from the host") && o.stderr.contains("service web"),
        "{}",
        o.all()
    );
    assert_eq!(
        on_host("tb1", &format!("cat {dir}/app.conf; cat {dir}/compose.yml")),
        before
    );
    assert_eq!(container_image(&project), id_y);
    assert_eq!(releases(&p).len(), 2);

    cleanup(&project, &dir);
    on_host("tb1", &format!("rm -rf {}", state_dir(&p)));
    docker(&["rmi", &tag_y]);
}

#[test]
fn a_failed_uri_gate_restores_files_and_absent_files_are_removed() {
    let dir = format!("/srv/{}", scoped("rel-gate"));
    on_host("tb1", &format!("rm -rf {dir}"));
    let site = format!(
        "- hosts: tb1\n  become: true\n  gather_facts: false\n  tasks:\n\
         \x20   - file: {{path: {dir}, state: directory}}\n\
         \x20   - copy: {{dest: '{dir}/conf', content: \"v={{{{ v }}}}\\n\", mode: '0600'}}\n\
         \x20   - copy: {{dest: '{dir}/extra-{{{{ v }}}}', content: \"new\\n\"}}\n\
         \x20   - name: port gate\n      wait_for: {{port: \"{{{{ port }}}}\", host: 127.0.0.1, timeout: 1}}\n      vars: {{deployer_gate: true}}\n"
    );
    let p = project(&[("site.yml", &site)]);
    let inv = inv();
    // sshd listens on 22 in every testbed host: the gate passes.
    let ok = deployer(
        p.path(),
        &[
            "apply", "site.yml", "-i", &inv, "-e", "v=1", "-e", "port=22",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.all());
    let bad = deployer(
        p.path(),
        &["apply", "site.yml", "-i", &inv, "-e", "v=2", "-e", "port=1"],
    );
    assert_ne!(bad.code, 0, "{}", bad.all());
    assert!(bad.all().contains("deploy gate failed"), "{}", bad.all());
    assert_eq!(on_host("tb1", &format!("cat {dir}/conf")), "v=1\n");
    assert_eq!(
        on_host("tb1", &format!("stat -c %a {dir}/conf")).trim(),
        "600"
    );
    assert_eq!(
        on_host("tb1", &format!("ls {dir}"))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["conf", "extra-1"]
    );
    // A rollback opens no vault, so it cannot mask secrets: the content of a
    // file that is not world-readable is not shown.
    let check = deployer(
        p.path(),
        &["rollback", "-i", &inv, "-l", "tb1", "--check", "--diff"],
    );
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(
        check.stdout.contains("not world-readable") && !check.stdout.contains("v=2"),
        "{}",
        check.stdout
    );
    // A rollback holds the deploy lock too: a lock held by another run refuses
    // it with the holder's details, and nothing changes.
    let before = releases(&p).len();
    let ghost = r#"{"run_id":"20260101T000000Z-dead","who":"ghost@elsewhere","since":"2026-01-01T00:00:00Z","revision":null,"dirty":false,"command":"deployer apply site.yml","message":null,"pid":4242}"#;
    let sd = state_dir(&p);
    on_host("tb1", &format!("echo '{ghost}' > {sd}/lock"));
    let locked = deployer(p.path(), &["rollback", "-i", &inv, "-l", "tb1"]);
    assert_eq!(locked.code, 1, "{}", locked.all());
    assert!(
        locked.stderr.contains("ghost@elsewhere") && locked.stderr.contains("deploy lock"),
        "{}",
        locked.all()
    );
    assert_eq!(on_host("tb1", &format!("cat {dir}/conf")), "v=1\n");
    assert_eq!(releases(&p).len(), before);
    on_host("tb1", &format!("rm -f {sd}/lock"));
    // Pruning: only the newest N releases stay.
    let ok = deployer(
        p.path(),
        &[
            "apply",
            "site.yml",
            "-i",
            &inv,
            "-e",
            "v=3",
            "-e",
            "port=22",
            "--keep-releases",
            "2",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.all());
    let kept = releases(&p);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[1]["files"].to_string().contains("extra-3"));
    on_host("tb1", &format!("rm -rf {dir} {}", state_dir(&p)));
}

#[test]
fn a_first_deploy_that_fails_its_gate_leaves_nothing_behind() {
    let project = scoped("rel-first");
    let dir = format!("/srv/{project}");
    cleanup(&project, &dir);
    let tag = format!("{}:first", scoped("relimg"));
    image(&tag);
    let p = stack_project(&dir, &project);
    let o = deploy(&p, "F", &tag, false, &[]);
    assert_ne!(o.code, 0, "{}", o.all());
    assert!(o.all().contains("deploy gate failed"), "{}", o.all());
    assert!(o.all().contains("fresh SSH connection"), "{}", o.all());
    // The containers, the files and the directory the release made are gone.
    assert_eq!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ]),
        ""
    );
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name={project}")
        ]),
        ""
    );
    assert_eq!(
        on_host(
            "tb1",
            &format!("test -e {dir} && echo present || echo gone")
        )
        .trim(),
        "gone"
    );
    let list = releases(&p);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[1]["kind"], "auto-rollback");
    cleanup(&project, &dir);
    on_host("tb1", &format!("rm -rf {}", state_dir(&p)));
    docker(&["rmi", &tag]);
}
