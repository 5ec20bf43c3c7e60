//! `images.lock` and `deployer pin` against a real registry: Debian's
//! `docker-registry` (the CNCF distribution registry) on a loopback port, the
//! testbed's Docker engine pulling from it. A tag is pushed, pinned, moved to
//! another image in the registry; apply still runs the pinned image (pulled by
//! digest, the tag moved back), refuses an image the lock does not have, and
//! runs the new one once pinned again. Needs `tests/testbed/up.sh`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

/// A registry serving from a temporary directory on 127.0.0.1:PORT, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry, installed by tests/testbed/install-deps.sh)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Registry {
                    child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not listen on 127.0.0.1:{port}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new image (TEST_IMAGE with a label) tagged `reference` and pushed: its
/// image ID and its registry digest.
fn push_variant(reference: &str, label: &str) -> (String, String) {
    let holder = scoped(&format!("pin-build-{label}"));
    docker_cleanup(&["rm", "-f", &holder]);
    docker_ok(&["create", "--name", &holder, TEST_IMAGE, "true"]);
    docker_ok(&[
        "commit",
        "--change",
        &format!("LABEL deployer.test.variant={label}"),
        &holder,
        reference,
    ]);
    docker_cleanup(&["rm", "-f", &holder]);
    docker_ok(&["push", reference]);
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", reference]);
    let repo = reference.rsplit_once(':').unwrap().0;
    let digests = docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", reference]);
    let digests: Vec<String> = serde_json::from_str(&digests).unwrap();
    let digest = digests
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")))
        .unwrap_or_else(|| panic!("no digest of {repo} in {digests:?}"))
        .to_string();
    (id, digest)
}

fn playbook(dir: &Path, name: &str, image: &str) {
    std::fs::write(
        dir.join("site.yml"),
        format!(
            "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - name: app\n      community.docker.docker_container:\n        name: {name}\n        image: {image}\n        command: [sleep, '3600']\n        state: started\n        stop_timeout: 1\n"
        ),
    )
    .unwrap();
}

fn running_image(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Image}}", name])
}

#[test]
fn pin_locks_digests_and_apply_runs_the_locked_image() {
    ensure_test_image();
    let reg = Registry::start();
    let repo = format!("127.0.0.1:{}/{}/app", reg.port, scoped("pin"));
    let (v1_id, v1_digest) = push_variant(&format!("{repo}:1"), "one");
    let name = scoped("pin-app");
    docker_cleanup(&["rm", "-f", &name]);
    let dir = project(&[]);
    playbook(dir.path(), &name, &format!("{repo}:1"));

    // pin: the registry's digest of :1, written to images.lock.
    let pin = deployer(dir.path(), &["pin", "-i", &inv(), "site.yml"]);
    assert_eq!(pin.code, 0, "{}", pin.all());
    assert!(pin.stdout.contains("added"), "{}", pin.stdout);
    let lock = std::fs::read_to_string(dir.path().join("images.lock")).unwrap();
    assert!(
        lock.contains(&format!("{repo}:1:\n  digest: {v1_digest}\n")),
        "{lock}"
    );
    // pin changed nothing on the host.
    assert_eq!(
        docker(&["ps", "-a", "-q", "-f", &format!("name=^{name}$")]),
        ""
    );

    // The tag moves, in the registry and on the host, to another image.
    let (v2_id, v2_digest) = push_variant(&format!("{repo}:1"), "two");
    assert_ne!(v1_digest, v2_digest);
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &format!("{repo}:1")]),
        v2_id
    );

    // check predicts a pull by digest; apply runs the pinned image.
    let check = deployer(dir.path(), &["check", "-i", &inv(), "site.yml"]);
    assert_eq!(check.code, 2, "{}", check.all());
    let apply = deployer(dir.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(running_image(&name), v1_id);
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &format!("{repo}:1")]),
        v1_id,
        "the tag is moved back to the pinned image"
    );
    let again = deployer(
        dir.path(),
        &["apply", "-i", &inv(), "--format", "json", "site.yml"],
    );
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        total(&recap(&again.stdout), "changed"),
        0,
        "{}",
        again.all()
    );

    // A version the lock does not have: refused, the container untouched.
    let (_v3_id, v3_digest) = push_variant(&format!("{repo}:2"), "three");
    playbook(dir.path(), &name, &format!("{repo}:2"));
    for cmd in ["check", "apply"] {
        let stale = deployer(dir.path(), &[cmd, "-i", &inv(), "site.yml"]);
        assert_eq!(stale.code, 1, "{cmd}: {}", stale.all());
        assert!(
            stale.all().contains(&format!("image {repo}:2 is not in"))
                && stale.all().contains("deployer pin"),
            "{cmd}: {}",
            stale.all()
        );
    }
    assert_eq!(running_image(&name), v1_id);
    let lint = deployer(dir.path(), &["lint", "--format", "json"]);
    assert!(lint.stdout.contains("image-not-locked"), "{}", lint.all());

    // pin again (whole playbook): :2 added, :1 gone; apply runs :2.
    let pin = deployer(dir.path(), &["pin", "-i", &inv(), "site.yml"]);
    assert_eq!(pin.code, 0, "{}", pin.all());
    assert!(
        pin.stdout.contains("removed") && pin.stdout.contains("added"),
        "{}",
        pin.stdout
    );
    let lock = std::fs::read_to_string(dir.path().join("images.lock")).unwrap();
    assert!(
        lock.contains(&format!("{repo}:2:\n  digest: {v3_digest}\n"))
            && !lock.contains(&format!("{repo}:1:")),
        "{lock}"
    );
    let apply = deployer(dir.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let want = docker(&["image", "inspect", "-f", "{{.Id}}", &format!("{repo}:2")]);
    assert_eq!(running_image(&name), want);

    docker_cleanup(&["rm", "-f", &name]);
    for t in [":1", ":2"] {
        docker_cleanup(&["rmi", &format!("{repo}{t}")]);
    }
}

#[test]
fn local_images_pin_by_id_and_a_different_one_is_refused() {
    ensure_test_image();
    // A registry address nobody listens on (loopback): pin falls back to the
    // local image's ID.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let image = format!("127.0.0.1:{closed}/{}/local:1", scoped("pin"));
    docker_ok(&["tag", TEST_IMAGE, &image]);
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &image]);
    let name = scoped("pin-local");
    docker_cleanup(&["rm", "-f", &name]);
    let dir = project(&[]);
    playbook(dir.path(), &name, &image);
    let pin = deployer(dir.path(), &["pin", "-i", &inv(), "site.yml"]);
    assert_eq!(pin.code, 0, "{}", pin.all());
    let lock = std::fs::read_to_string(dir.path().join("images.lock")).unwrap();
    assert!(lock.contains(&format!("{image}:\n  id: {id}\n")), "{lock}");
    let apply = deployer(dir.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(running_image(&name), id);

    // The lock names another image: it cannot be pulled by ID, so apply refuses.
    let other = format!("sha256:{}", "0".repeat(64));
    std::fs::write(
        dir.path().join("images.lock"),
        format!("{image}:\n  id: {other}\n"),
    )
    .unwrap();
    let refused = deployer(dir.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.all().contains(&other) && refused.all().contains("cannot be pulled by digest"),
        "{}",
        refused.all()
    );
    assert_eq!(running_image(&name), id, "the container is untouched");

    // A broken lock is an error naming its line, before any host is contacted.
    std::fs::write(
        dir.path().join("images.lock"),
        format!("{image}:\n  id: 12\n"),
    )
    .unwrap();
    let bad = deployer(dir.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stderr.contains("images.lock:2"), "{}", bad.all());

    docker_cleanup(&["rm", "-f", &name]);
    docker_cleanup(&["rmi", &image]);
}
