//! Runs the real `deployer` binary against the real testbed (tests/testbed/up.sh).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The testbed inventory; tests fail (never skip) when the testbed is not up.
pub fn testbed_inventory() -> PathBuf {
    let p = std::env::var_os("DEPLOYER_TESTBED_INVENTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("tests/testbed/inventory.yml"));
    assert!(
        p.exists(),
        "testbed inventory {} missing: run tests/testbed/up.sh 3 first",
        p.display()
    );
    p
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn deployer(dir: &Path, args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(args)
        .current_dir(dir)
        .env_remove("DEPLOYER_INVENTORY")
        .env_remove("DEPLOYER_VAULT_PASSWORD_FILE")
        .output()
        .expect("run deployer");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs a shell command on a testbed host as root, for assertions: its
/// stdout. The command must succeed (a failed ssh or a failing command is a
/// test failure, never an empty string that passes an absence check); test
/// absence with a command that fails when the thing exists (`test ! -e`).
pub fn on_host(host: &str, script: &str) -> String {
    let (code, stdout, stderr) = on_host_status(host, script);
    assert_eq!(
        code, 0,
        "on {host}: `{script}` exited {code}: {stderr}\nstdout: {stdout}"
    );
    stdout
}

/// [`on_host`] for a command whose failure is an answer (polling for a file
/// that appears later): exit code, stdout, stderr. ssh's own failure (255)
/// is still a test failure.
pub fn on_host_status(host: &str, script: &str) -> (i32, String, String) {
    let cfg = repo().join("tests/testbed/state/ssh_config");
    // A bounded wait: a remote command that keeps the session open must fail
    // the test, not hang the CI.
    let o = Command::new("timeout")
        .arg("60")
        .arg("ssh")
        .arg("-F")
        .arg(&cfg)
        .arg(format!("root@{host}"))
        .arg(script)
        .output()
        .expect("ssh");
    let code = o.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        code != 255 && code != 124,
        "ssh to {host} failed ({code}) running `{script}`: {stderr}"
    );
    (
        code,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr,
    )
}

/// A temporary project: files given as (relative path, content).
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (p, c) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, c).expect("write");
    }
    dir
}

/// The recap event of a `--output json` run.
pub fn recap(stdout: &str) -> serde_json::Value {
    events(stdout)
        .into_iter()
        .find(|v| v["event"] == "recap")
        .unwrap_or_else(|| panic!("no recap event in:\n{stdout}"))
}

pub fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// Sum of a recap counter over all hosts.
pub fn total(recap: &serde_json::Value, key: &str) -> u64 {
    recap["hosts"]
        .as_object()
        .map(|h| h.values().map(|s| s[key].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

/// The testbed's id (`TESTBED_ID`, as given to tests/testbed/up.sh; default `tb`).
/// All testbeds share the machine's one Docker engine, so every Docker object a
/// test makes carries [`scoped`] names: side-by-side testbeds never collide.
pub fn testbed_id() -> String {
    std::env::var("TESTBED_ID").unwrap_or_else(|_| "tb".to_string())
}

/// `name` made unique to this testbed: `<testbed id>-<name>` (the id first, so
/// that a name filter for one testbed never matches another's objects).
pub fn scoped(name: &str) -> String {
    format!("{}-{name}", testbed_id())
}

/// Removes the deploy state (lock, audit log, pending handlers) that
/// a run of the temporary project `dir` left on THIS machine through an
/// `ansible_connection: local` host.
pub fn forget_local_state(dir: &Path) {
    let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let _ = std::fs::remove_dir_all(Path::new("/var/lib/deployer").join(&name));
    if let Some(home) = std::env::var_os("HOME") {
        let _ = std::fs::remove_dir_all(Path::new(&home).join(".local/state/deployer").join(&name));
    }
}

/// The testbed inventory as an argument.
pub fn inv() -> String {
    testbed_inventory().display().to_string()
}

/// The tiny local test image (tests/testbed/build-test-image.sh).
pub const TEST_IMAGE: &str = "deployer-test-busybox:1";

/// Builds [`TEST_IMAGE`] if it is missing (no registry involved).
pub fn ensure_test_image() {
    let o = Command::new(repo().join("tests/testbed/build-test-image.sh"))
        .arg(TEST_IMAGE)
        .output()
        .expect("build-test-image.sh");
    assert!(
        o.status.success(),
        "building {TEST_IMAGE}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `docker` on this machine (the same engine the hosts use): stdout,
/// trimmed. The command must succeed, so that "nothing is listed" never
/// passes because the docker CLI failed; cleanup that may find nothing to
/// remove uses [`docker_cleanup`].
pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker");
    assert!(
        o.status.success(),
        "docker {args:?} exited {}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `docker rm`/`network rm`/`volume rm` of something that may already be
/// gone: the exit status is not looked at.
pub fn docker_cleanup(args: &[&str]) {
    let _ = Command::new("docker").args(args).output().expect("docker");
}

/// `docker` that must succeed.
pub fn docker_ok(args: &[&str]) {
    let o = Command::new("docker").args(args).output().expect("docker");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A program of the CI venv's ansible-core (`$DEPLOYER_ANSIBLE_BIN_DIR`, else
/// /opt/deployer-ci/venv/bin); the test FAILS (never skips) when it is missing.
pub fn ansible_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("DEPLOYER_ANSIBLE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/deployer-ci/venv/bin"));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} not found: run tests/testbed/install-deps.sh (ansible-core 2.19.14 in /opt/deployer-ci/venv)",
        bin.display()
    );
    bin
}

/// The real `ansible-playbook` run in `dir` against the testbed inventory
/// (unless `args` give `-i`), with its own ANSIBLE_HOME (so parallel tests share no control sockets).
pub fn ansible_playbook(dir: &Path, args: &[&str]) -> Out {
    let home = dir.join(".ansible-home");
    let mut cmd = Command::new(ansible_bin("ansible-playbook"));
    if !args.contains(&"-i") {
        cmd.arg("-i").arg(testbed_inventory());
    }
    let o = cmd
        .args(args)
        .current_dir(dir)
        .env("ANSIBLE_CONFIG", repo().join("bench/ansible.cfg"))
        .env("ANSIBLE_HOME", &home)
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ansible-playbook");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Ansible's recap counters for `host`, from its `host : ok=N changed=N ...` line.
pub fn ansible_recap(stdout: &str, host: &str) -> std::collections::BTreeMap<String, u64> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(host) && l.contains("changed="))
        .unwrap_or_else(|| panic!("no recap line for {host} in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// The Plane stand-in (tests/plane_standin/server.py) on a loopback port it
/// binds itself (`--port 0`), with `API_KEY_RATE_LIMIT` = `rate`: the process,
/// killed and reaped when dropped, and the port it printed once listening.
/// Nothing is sent to it before it listens: no port picked here and freed for
/// it (another process could take it), no connection probe (which can connect
/// to itself on a port in the ephemeral range before the stand-in is up).
pub struct PlaneStandin {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for PlaneStandin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn plane_standin(rate: &str) -> PlaneStandin {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new("python3")
        .arg(repo().join("tests/plane_standin/server.py"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("API_KEY_RATE_LIMIT", rate)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the stand-in");
    let stderr = child.stderr.take().expect("stand-in stderr");
    let mut s = PlaneStandin { child, port: 0 };
    let mut lines = BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        let n = lines.read_line(&mut line).expect("stand-in stderr");
        assert!(n > 0, "the Plane stand-in ended before it listened");
        if let Some(port) = line
            .trim_end()
            .strip_prefix("plane stand-in listening on 127.0.0.1:")
        {
            s.port = port.parse().expect("the stand-in's port");
            eprint!("{line}");
            break;
        }
        eprint!("{line}");
    }
    // The rest of its stderr is passed on, so it never fills the pipe.
    std::thread::spawn(move || {
        let mut err = std::io::stderr();
        for l in lines.lines().map_while(Result::ok) {
            let _ = writeln!(err, "{l}");
        }
    });
    s
}
