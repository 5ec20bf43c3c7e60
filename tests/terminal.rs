//! What a person at a terminal and a CI log see: a status line with the
//! running task on a terminal (recorded through a real tmux pane), no control
//! characters at all in pipes, `-v`/`-vv` diagnostics on stderr without file
//! contents, and short result lines. Runs against the real testbed (tb1).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A project whose one play copies a file and runs a slow command on tb1,
/// under `root` on the host.
fn slow_project(root: &str, secret_like: &str) -> tempfile::TempDir {
    project(&[(
        "site.yml",
        &format!(
            "- hosts: tb1\n  become: true\n  gather_facts: false\n  tasks:\n    - name: the directory\n      ansible.builtin.file:\n        path: {root}\n        state: directory\n    - name: a file with data\n      ansible.builtin.copy:\n        content: \"{secret_like}\\n\"\n        dest: {root}/data.txt\n        mode: '0600'\n    - name: a slow step\n      ansible.builtin.command: sleep 4\n      changed_when: false\n"
        ),
    )])
}

/// 120 characters of mixed case: its base64 is a long mixed-case run.
fn data_value() -> String {
    "Fixture-Data-NotASecret-".repeat(5)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn assert_no_control_characters(what: &str, text: &str) {
    let bad: Vec<(usize, char)> = text
        .char_indices()
        .filter(|(_, c)| c.is_control() && *c != '\n' && *c != '\t')
        .take(5)
        .collect();
    assert!(
        bad.is_empty(),
        "{what} has control characters {bad:?}:\n{text}"
    );
}

#[test]
fn piped_output_has_no_control_characters_and_verbose_shows_executions_not_data() {
    let root = "/srv/terminal-piped";
    on_host("tb1", &format!("rm -rf {root}"));
    let data = data_value();
    let p = slow_project(root, &data);
    let plain = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert_no_control_characters("stdout", &plain.stdout);
    assert_no_control_characters("stderr", &plain.stderr);
    assert!(
        plain.stdout.contains("changed: [tb1] a file with data"),
        "{}",
        plain.stdout
    );
    assert!(
        !plain.stderr.contains("remote execution"),
        "no diagnostics without -v"
    );

    on_host("tb1", &format!("rm -f {root}/data.txt"));
    let v = deployer(p.path(), &["apply", "-v", "-i", &inv(), "site.yml"]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert_no_control_characters("stderr of -v", &v.stderr);
    let executions: Vec<&str> = v
        .stderr
        .lines()
        .filter(|l| l.contains("remote execution"))
        .collect();
    assert!(
        executions.len() >= 3,
        "-v logs each remote execution:\n{}",
        v.stderr
    );
    assert!(
        executions
            .iter()
            .all(|l| l.contains("host=tb1") && l.contains("rc=") && l.contains("ms=")),
        "each names host, exit status and duration:\n{}",
        v.stderr
    );
    assert!(
        executions.iter().any(|l| l.contains("user=root")),
        "and the user:\n{}",
        v.stderr
    );
    assert!(!v.stderr.contains("script:"), "scripts only with -vv");

    on_host("tb1", &format!("rm -f {root}/data.txt"));
    let vv = deployer(
        p.path(),
        &["apply", "-vv", "--color", "never", "-i", &inv(), "site.yml"],
    );
    assert_eq!(vv.code, 0, "{}", vv.all());
    assert!(
        vv.stderr.contains("script:"),
        "-vv shows scripts:\n{}",
        vv.stderr
    );
    assert!(
        vv.stderr.contains("base64 characters>"),
        "file data shown as its length"
    );
    let encoded = base64(format!("{data}\n").as_bytes());
    assert!(
        !vv.all().contains(&encoded[..40]),
        "the file's content (base64) appears in -vv output"
    );
    assert!(
        !vv.stderr.contains(&data),
        "the file's content appears in -vv output"
    );
    assert_eq!(on_host("tb1", &format!("cat {root}/data.txt")).trim(), data);
}

#[test]
fn colour_is_off_in_pipes_and_on_with_color_always_unless_never() {
    let root = "/srv/terminal-colour";
    on_host("tb1", &format!("rm -rf {root}"));
    let p = slow_project(root, "colour");
    let always = deployer(
        p.path(),
        &["apply", "--color", "always", "-i", &inv(), "site.yml"],
    );
    assert_eq!(always.code, 0, "{}", always.all());
    assert!(
        always.stdout.contains("\x1b[33mchanged\x1b[0m: [tb1]"),
        "{}",
        always.stdout
    );
    let never = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["apply", "--color", "auto", "-i", &inv(), "site.yml"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run deployer");
    assert!(never.status.success());
    assert_no_control_characters("NO_COLOR stdout", &String::from_utf8_lossy(&never.stdout));
}

/// The status line, as a terminal shows it: deployer runs in a real tmux
/// pane and the pane is captured while the slow task runs.
#[test]
fn a_terminal_shows_the_running_task_with_its_elapsed_time() {
    let root = "/srv/terminal-tmux";
    on_host("tb1", &format!("rm -rf {root}"));
    let p = slow_project(root, "tmux");
    let session = format!("deployer-terminal-{}-{}", testbed_id(), std::process::id());
    let log = p.path().join("pane.log");
    let cmd = format!(
        "{} apply -i {} site.yml; echo EXIT=$? ; sleep 60",
        env!("CARGO_BIN_EXE_deployer"),
        inv()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "40",
            "-c",
        ])
        .arg(p.path())
        .arg(&cmd)
        .status()
        .expect("tmux");
    assert!(started.success(), "tmux new-session failed");
    let capture = || {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut saw_running = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        last = capture();
        if saw_running.is_none()
            && let Some(line) = last
                .lines()
                .find(|l| l.contains("running: [tb1] a slow step"))
        {
            saw_running = Some(line.to_string());
        }
        if last.contains("EXIT=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    std::fs::write(&log, &last).ok();
    let running = saw_running.unwrap_or_else(|| panic!("no status line seen; last pane:\n{last}"));
    assert!(
        running.trim_end().ends_with('s') && running.chars().any(|c| c.is_ascii_digit()),
        "the status line gives the elapsed seconds: {running}"
    );
    assert!(last.contains("EXIT=0"), "the run ended well:\n{last}");
    assert!(
        !last.contains("running: "),
        "the status line is erased at the end:\n{last}"
    );
    assert!(last.contains("ok: [tb1] a slow step"), "{last}");
}

/// A compose project on tb1 whose one service becomes healthy about 4 s
/// after it starts; until then its check fails saying `warming-up-check`.
fn slow_health_project(prefix: &str, dir: &str) -> tempfile::TempDir {
    let site = format!(
        "- hosts: tb1\n  become: true\n  gather_facts: false\n  tasks:\n\
         \x20   - name: project dir\n      file: {{path: {dir}, state: directory}}\n\
         \x20   - name: compose file\n      copy:\n        dest: {dir}/compose.yml\n        content: |\n\
         \x20         name: {prefix}\n\
         \x20         services:\n\
         \x20           slow:\n\
         \x20             image: {TEST_IMAGE}\n\
         \x20             command: [sh, -c, 'sleep 4; touch /tmp/ready; exec sleep 1000000']\n\
         \x20             healthcheck:\n\
         \x20               test: ['CMD-SHELL', 'test -e /tmp/ready || {{ echo warming-up-check; exit 1; }}']\n\
         \x20               interval: 1s\n\
         \x20               retries: 60\n\
         \x20   - name: the stack\n      community.docker.docker_compose_v2:\n        project_src: {dir}\n        wait: true\n        wait_timeout: 60\n        timeout: 1\n"
    );
    project(&[("site.yml", &site)])
}

fn remove_compose_project(prefix: &str) {
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

/// A health wait says where it is: JSON `task_progress` events with the
/// container's health status and its last check's output, then whether it
/// became ready; `-vv` logs each Docker API call (method and path); on a
/// terminal the status line shows the wait.
#[test]
fn health_waits_report_status_and_last_check_and_vv_logs_docker_calls() {
    ensure_test_image();
    let prefix = scoped("terminal-health");
    let dir = format!("/srv/{prefix}");
    remove_compose_project(&prefix);
    on_host("tb1", &format!("rm -rf {dir}"));
    let p = slow_health_project(&prefix, &dir);

    let r = deployer(
        p.path(),
        &["apply", "-i", &inv(), "site.yml", "--format", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let waits: Vec<serde_json::Value> = events(&r.stdout)
        .into_iter()
        .filter(|e| e["event"] == "task_progress" && e["step"] == "health_wait")
        .collect();
    assert!(
        waits
            .iter()
            .all(|e| e["host"] == "tb1" && e["task"] == "the stack" && e["service"] == "slow"),
        "{waits:#?}"
    );
    assert_eq!(
        waits.first().map(|e| &e["phase"]),
        Some(&"start".into()),
        "{waits:#?}"
    );
    let last = waits.last().expect("health_wait events");
    assert_eq!(last["phase"], "end", "{waits:#?}");
    assert_eq!(last["ready"], true, "{waits:#?}");
    assert!(
        waits.iter().any(|e| e["phase"] == "progress"
            && e["health"] == "starting"
            && e["last_check_output"] == "warming-up-check"
            && e["last_check_exit"] == 1
            && e["msg"]
                .as_str()
                .is_some_and(|m| m.contains("starting; last check exit 1: warming-up-check"))),
        "a progress event with the health status and the last check's output: {waits:#?}"
    );

    // A re-run (no change, still waits for health) under -vv: Docker API calls.
    let vv = deployer(
        p.path(),
        &["apply", "-vv", "--color", "never", "-i", &inv(), "site.yml"],
    );
    assert_eq!(vv.code, 0, "{}", vv.all());
    assert_no_control_characters("stdout", &vv.stdout);
    assert_no_control_characters("stderr of -vv", &vv.stderr);
    let calls: Vec<&str> = vv
        .stderr
        .lines()
        .filter(|l| l.contains("docker: GET /") || l.contains("docker: POST /"))
        .collect();
    assert!(
        calls
            .iter()
            .any(|l| l.contains("host=tb1") && l.contains("/containers/")),
        "-vv logs the Docker API calls:\n{}",
        vv.stderr
    );
    let v = deployer(p.path(), &["apply", "-v", "-i", &inv(), "site.yml"]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(
        !v.stderr.contains("docker: GET /"),
        "API calls only with -vv"
    );

    // On a terminal: the status line shows the wait with its health status.
    remove_compose_project(&prefix);
    let session = format!("deployer-health-{}-{}", testbed_id(), std::process::id());
    let cmd = format!(
        "{} apply -i {} site.yml; echo EXIT=$? ; sleep 60",
        env!("CARGO_BIN_EXE_deployer"),
        inv()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "200",
            "-y",
            "40",
            "-c",
        ])
        .arg(p.path())
        .arg(&cmd)
        .status()
        .expect("tmux");
    assert!(started.success(), "tmux new-session failed");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut saw = None;
    let mut pane = String::new();
    while Instant::now() < deadline {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .expect("tmux capture-pane");
        pane = String::from_utf8_lossy(&o.stdout).into_owned();
        if saw.is_none()
            && let Some(l) = pane.lines().find(|l| {
                l.contains("running: [tb1] the stack")
                    && l.contains("waiting for service slow to be healthy")
            })
        {
            saw = Some(l.to_string());
        }
        if pane.contains("EXIT=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    remove_compose_project(&prefix);
    on_host("tb1", &format!("rm -rf {dir}"));
    let saw =
        saw.unwrap_or_else(|| panic!("no health wait on the status line; last pane:\n{pane}"));
    assert!(saw.contains("(") && saw.contains("s): "), "{saw}");
    assert!(pane.contains("EXIT=0"), "{pane}");
}
