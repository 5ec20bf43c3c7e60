//! The deploy lock on the real testbed (concurrent applies, --lock-wait,
//! SIGINT, stale locks), the audit logs, and handlers that stay pending when
//! a run fails.
//!
//! No assertion here is about elapsed time (timing belongs in bench/): a run
//! that must hold the lock waits for a gate file the test creates on the
//! host, and "at once" / "waits" are asserted as the order of events (which
//! run ended while which other was still running, what each printed before
//! the test moved on, the order of the host's audit log). Time limits below
//! only keep a broken run from hanging CI; they never judge speed.
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The project's name on the hosts: its directory's name.
fn project_name(project: &Path) -> String {
    project
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}

/// The project's state directory on the hosts (the testbed becomes root).
fn state_dir(project: &Path) -> String {
    format!("/var/lib/deployer/{}", project_name(project))
}

/// `inv.yml` in `dir`: the testbed inventory with `from` replaced by `to`.
fn testbed_inventory_with(dir: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(testbed_inventory()).expect("inventory");
    assert!(text.contains(from), "{text}");
    std::fs::write(dir.join("inv.yml"), text.replace(from, to)).expect("write inventory");
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(args)
        .current_dir(dir)
        .env_remove("DEPLOYER_INVENTORY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deployer")
}

fn finish(c: Child) -> Out {
    let o = c.wait_with_output().expect("wait");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A running deployer whose stdout and stderr are read as they come, so the
/// test can wait for a line it prints before moving on.
struct Watched {
    child: Child,
    text: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Watched {
    fn spawn(dir: &Path, args: &[&str]) -> Watched {
        let mut child = spawn(dir, args);
        let text = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for stream in [out, err] {
            let text = text.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut t) = text.lock() {
                        t.push_str(&line);
                        t.push('\n');
                    }
                }
            }));
        }
        Watched {
            child,
            text,
            readers,
        }
    }

    fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits until the run has printed `needle` (it must still be running
    /// or have printed it before ending).
    fn wait_for_line(&mut self, needle: &str) {
        let start = Instant::now();
        while !self.text().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The readers end at the end of the streams.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                assert!(
                    self.text().contains(needle),
                    "the run ended ({status}) without printing {needle:?}:\n{}",
                    self.text()
                );
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "no {needle:?} from the run (a hang, not a slow machine):\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.code().unwrap_or(-1), self.text())
    }
}

/// Waits (bounded) until `script` prints something on `host`.
fn wait_on_host(host: &str, script: &str, what: &str) -> String {
    let start = Instant::now();
    loop {
        // Not there yet is a failing command: keep waiting.
        let (_, out, _) = on_host_status(host, script);
        if !out.trim().is_empty() {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what} on {host}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sudo_cat(host: &str, path: &str) -> String {
    on_host(host, &format!("sudo cat {path}"))
}

/// `path` on `host` is absent or empty (a command that fails otherwise).
fn absent_or_empty(host: &str, path: &str) {
    on_host(host, &format!("sudo test ! -s {path}"));
}

/// A play on one host: a file with `{{ content }}`, then, when `gate` is
/// given, a wait (holding the lock) until the file `{{ gate }}` exists on the
/// host: the test decides when the run may end.
fn slow_project(host: &str, root: &str) -> tempfile::TempDir {
    project(&[(
        "site.yml",
        &format!(
            "- name: Slow play
  hosts: {host}
  become: true
  gather_facts: false
  tasks:
    - name: The directory
      ansible.builtin.file:
        path: {root}
        state: directory
        mode: \"0755\"
    - name: Who wrote last
      ansible.builtin.copy:
        content: \"{{{{ content }}}}\\n\"
        dest: {root}/writer
        mode: \"0644\"
    - name: Hold the lock until the test opens the gate
      ansible.builtin.wait_for:
        path: \"{{{{ gate | default('/nonexistent') }}}}\"
        timeout: 900
        sleep: 1
      when: gate is defined
"
        ),
    )])
}

#[test]
fn two_concurrent_applies_one_runs_the_other_fails_at_once_or_waits() {
    let host = "tb1";
    let root = "/srv/dt-lock-concurrent";
    let gate = format!("{root}.gate");
    on_host(host, &format!("sudo rm -rf {root} {gate}"));
    let p = slow_project(host, root);
    let dir = p.path();
    let lock = format!("{}/lock", state_dir(dir));
    let gate_arg = format!("gate={gate}");
    let mut a = Watched::spawn(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=A",
            "-e",
            &gate_arg,
            "--message",
            "release first",
        ],
    );
    let a_pid = a.child.id();
    let held = wait_on_host(host, &format!("sudo cat {lock} 2>/dev/null"), "A's lock");
    assert!(held.contains("\"message\":\"release first\""), "{held}");

    // B fails with A's details and changes nothing, while A still holds
    // the lock: A cannot end before the test opens its gate, so B ending
    // first shows that B did not wait for A.
    let b = deployer(dir, &["apply", "-i", &inv(), "site.yml", "-e", "content=B"]);
    assert_eq!(b.code, 1, "{}", b.all());
    assert!(a.running(), "A ended before B:\n{}", a.text());
    assert!(
        sudo_cat(host, &lock).contains("\"message\":\"release first\""),
        "A's lock is still there when B has ended"
    );
    for want in [
        "tb1 is locked by ",
        &format!("pid {a_pid}"),
        "message: \"release first\"",
        // The holder's command line: -e keys, never values.
        "content=********",
        "nothing was changed on any host",
    ] {
        assert!(b.stderr.contains(want), "missing {want:?} in:\n{}", b.all());
    }
    assert!(!b.stdout.contains("changed:"), "{}", b.stdout);
    assert_eq!(on_host(host, &format!("cat {root}/writer")).trim(), "A");
    on_host(host, &format!("touch {gate}"));
    let (code, text) = a.finish();
    assert_eq!(code, 0, "{text}");
    assert_eq!(on_host(host, &format!("cat {root}/writer")).trim(), "A");
    absent_or_empty(host, &lock);

    // With --lock-wait, B waits for A and then runs: B says it waits, is
    // still waiting (running) after that, and writes only after A's gate
    // opened and A ended; the host's audit log has A2 before B.
    on_host(host, &format!("rm -f {gate}"));
    let mut a = Watched::spawn(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=A2",
            "-e",
            &gate_arg,
            "--message",
            "release second",
        ],
    );
    wait_on_host(host, &format!("sudo cat {lock} 2>/dev/null"), "A2's lock");
    let mut b = Watched::spawn(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=B",
            "--lock-wait",
            "15m",
            "--message",
            "release third",
        ],
    );
    b.wait_for_line("waiting up to");
    assert!(b.running(), "B ended while A2 held the lock:\n{}", b.text());
    assert!(a.running(), "{}", a.text());
    assert_eq!(on_host(host, &format!("cat {root}/writer")).trim(), "A2");
    on_host(host, &format!("touch {gate}"));
    let (a_code, a_text) = a.finish();
    let (b_code, b_text) = b.finish();
    assert_eq!(a_code, 0, "{a_text}");
    assert_eq!(b_code, 0, "{b_text}");
    assert_eq!(on_host(host, &format!("cat {root}/writer")).trim(), "B");
    absent_or_empty(host, &lock);
    let audit = sudo_cat(host, &format!("{}/audit.log", state_dir(dir)));
    let pos = |m: &str| audit.lines().position(|l| l.contains(m));
    assert!(
        pos("release first\"").is_some()
            && pos("release first\"") < pos("release second")
            && pos("release second") < pos("release third"),
        "{audit}"
    );
    on_host(
        host,
        &format!("sudo rm -rf {root} {gate} {}", state_dir(dir)),
    );
}

#[test]
fn sigint_during_an_apply_releases_the_lock_and_keeps_the_notified_handler() {
    let host = "tb2";
    let root = "/srv/dt-lock-sigint";
    on_host(host, &format!("sudo rm -rf {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- name: Interrupted play
  hosts: {host}
  become: true
  gather_facts: false
  tasks:
    - name: Config
      ansible.builtin.copy:
        content: \"v={{{{ v }}}}\\n\"
        dest: {root}.conf
        mode: \"0644\"
      notify: restart app
    - name: Long step
      ansible.builtin.pause:
        seconds: \"{{{{ hold | default(0) }}}}\"
  handlers:
    - name: restart app
      ansible.builtin.shell: echo restarted >> {root}.restarts
"
        ),
    )]);
    let dir = p.path();
    let sd = state_dir(dir);
    on_host(host, &format!("sudo rm -f {root}.conf {root}.restarts"));
    let a = spawn(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "v=1",
            "-e",
            "hold=120",
        ],
    );
    // Once the config is written, the run is in its long step (120 s: a
    // run that ignored the interrupt would end with 0, not 130).
    wait_on_host(host, &format!("cat {root}.conf 2>/dev/null"), "the config");
    let kill = Command::new("kill")
        .args(["-INT", &a.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let a = finish(a);
    assert_eq!(a.code, 130, "{}", a.all());
    assert!(a.stderr.contains("interrupted"), "{}", a.all());
    absent_or_empty(host, &format!("{sd}/lock"));
    let pending = sudo_cat(host, &format!("{sd}/pending-handlers.json"));
    assert!(
        pending.contains("\"notification\":\"restart app\""),
        "{pending}"
    );
    let audit = sudo_cat(host, &format!("{sd}/audit.log"));
    assert!(audit.contains("\"result\":\"interrupted\""), "{audit}");
    on_host(host, &format!("test ! -e {root}.restarts"));

    // The next apply changes nothing but fires the pending handler.
    let b = deployer(dir, &["apply", "-i", &inv(), "site.yml", "-e", "v=1"]);
    assert_eq!(b.code, 0, "{}", b.all());
    assert!(
        b.stdout
            .contains("handler 'restart app': pending from run "),
        "{}",
        b.stdout
    );
    assert_eq!(
        on_host(host, &format!("cat {root}.restarts")),
        "restarted\n"
    );
    absent_or_empty(host, &format!("{sd}/pending-handlers.json"));
    on_host(
        host,
        &format!("sudo rm -rf {root}.conf {root}.restarts {sd}"),
    );
}

/// A task stopped by SIGINT while it ran may have changed its host: its
/// notification is kept pending (the handler fires on the next apply), as
/// a copy whose file was written just before the signal must.
#[test]
fn sigint_in_the_middle_of_a_notifying_task_keeps_its_handler_pending() {
    let host = "tb2";
    let root = "/srv/dt-lock-midtask";
    on_host(host, &format!("sudo rm -rf {root} {root}.restarts"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- name: Interrupted task
  hosts: {host}
  become: true
  gather_facts: false
  tasks:
    - name: Changes, then runs long
      ansible.builtin.shell: mkdir -p {root} && sleep 120
      notify: restart app
  handlers:
    - name: restart app
      ansible.builtin.shell: echo restarted >> {root}.restarts
"
        ),
    )]);
    let dir = p.path();
    let sd = state_dir(dir);
    let a = spawn(dir, &["apply", "-i", &inv(), "site.yml"]);
    wait_on_host(host, &format!("test -d {root} && echo yes"), "the change");
    let kill = Command::new("kill")
        .args(["-INT", &a.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let a = finish(a);
    assert_eq!(a.code, 130, "{}", a.all());
    let pending = sudo_cat(host, &format!("{sd}/pending-handlers.json"));
    assert!(
        pending.contains("\"notification\":\"restart app\""),
        "{pending}"
    );
    on_host(host, &format!("test ! -e {root}.restarts"));
    on_host(
        host,
        &format!("sudo pkill -f 'slee[p] 120'; sudo rm -rf {root} {root}.restarts {sd}; true"),
    );
}

#[test]
fn a_handler_notified_before_a_failing_task_runs_on_the_next_apply() {
    let host = "tb3";
    let root = "/srv/dt-pending";
    on_host(host, &format!("sudo rm -rf {root}"));
    let p = project(&[(
        "site.yml",
        &format!(
            "- name: App
  hosts: {host}
  become: true
  gather_facts: true
  tasks:
    - name: The directory
      ansible.builtin.file:
        path: {root}
        state: directory
        mode: \"0755\"
    - name: App config
      ansible.builtin.copy:
        content: \"version={{{{ version }}}}\\n\"
        dest: {root}/app.conf
        mode: \"0644\"
      notify: restart app
    - name: A later step that fails
      ansible.builtin.fail:
        msg: migration failed
      when: fail_now | default(false) | bool
  handlers:
    - name: restart app
      ansible.builtin.shell: echo \"restart with $(cat {root}/app.conf)\" >> {root}/restarts
      failed_when: handler_fails | default(false) | bool
"
        ),
    )]);
    let dir = p.path();
    let sd = state_dir(dir);
    let inventory = inv();
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", "-i", inventory.as_str(), "site.yml"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--format", "json"]);
        deployer(dir, &args)
    };
    let first = apply(&["-e", "version=1"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(
        on_host(host, &format!("cat {root}/restarts")),
        "restart with version=1\n"
    );

    // The config changes, then a later task fails: the handler did not run.
    let failed = apply(&["-e", "version=2", "-e", "fail_now=true"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert_eq!(
        on_host(host, &format!("cat {root}/restarts")),
        "restart with version=1\n"
    );
    let pending = sudo_cat(host, &format!("{sd}/pending-handlers.json"));
    assert!(
        pending.contains("\"notification\":\"restart app\""),
        "{pending}"
    );
    assert!(pending.contains("\"play\":\"App\""), "{pending}");
    assert!(
        failed.stdout.contains("saved as pending"),
        "{}",
        failed.stdout
    );

    // Ansible would never restart now (nothing changes); deployer does.
    let next = apply(&["-e", "version=2"]);
    assert_eq!(next.code, 0, "{}", next.all());
    let r = recap(&next.stdout);
    assert_eq!(
        total(&r, "changed"),
        1,
        "only the handler changes: {}",
        next.stdout
    );
    assert!(
        events(&next.stdout).iter().any(|e| e["event"] == "note"
            && e["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("handler 'restart app': pending from run "))),
        "{}",
        next.stdout
    );
    assert_eq!(
        on_host(host, &format!("cat {root}/restarts")),
        "restart with version=1\nrestart with version=2\n"
    );
    absent_or_empty(host, &format!("{sd}/pending-handlers.json"));

    // And then it is done: an idempotent re-run, cheap.
    let again = apply(&["-e", "version=2"]);
    assert_eq!(again.code, 0, "{}", again.all());
    let r = recap(&again.stdout);
    assert_eq!(total(&r, "changed"), 0, "{}", again.stdout);
    let n = r["hosts"][host]["remote_executions"]
        .as_u64()
        .expect("count");
    assert!(n <= 3, "{n} remote executions on an idempotent re-run");
    assert_eq!(
        on_host(host, &format!("wc -l < {root}/restarts")).trim(),
        "2"
    );

    // The audit trail: each host's log and the local run log.
    let audit = sudo_cat(host, &format!("{sd}/audit.log"));
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4, "{audit}");
    assert_eq!(lines[1]["result"], "failed");
    assert_eq!(lines[1]["failed_tasks"][0], "A later step that fails");
    assert_eq!(lines[1]["pending_handlers"][0], "restart app");
    assert_eq!(lines[1]["changed_tasks"][0]["task"], "App config");
    assert_eq!(lines[2]["changed_tasks"][0]["task"], "restart app");
    assert_eq!(lines[3]["result"], "ok");
    let local = std::fs::read_to_string(dir.join(".deployer/runs.jsonl")).expect("runs.jsonl");
    assert_eq!(local.lines().count(), 4, "{local}");

    // A handler that fails stays pending too, and fires at the next apply.
    let handler_failed = apply(&["-e", "version=3", "-e", "handler_fails=true"]);
    assert_eq!(handler_failed.code, 1, "{}", handler_failed.all());
    let pending = sudo_cat(host, &format!("{sd}/pending-handlers.json"));
    assert!(
        pending.contains("\"notification\":\"restart app\""),
        "{pending}"
    );
    let next = apply(&["-e", "version=3"]);
    assert_eq!(next.code, 0, "{}", next.all());
    absent_or_empty(host, &format!("{sd}/pending-handlers.json"));
    assert_eq!(
        on_host(host, &format!("tail -n 2 {root}/restarts")),
        "restart with version=3\nrestart with version=3\n"
    );
    on_host(host, &format!("sudo rm -rf {root} {sd}"));
}

#[test]
fn stale_lock_status_release_check_warning_and_the_audit_command() {
    let host = "tb2";
    let root = "/srv/dt-lock-stale";
    on_host(host, &format!("sudo rm -rf {root}"));
    let p = slow_project(host, root);
    let dir = p.path();
    let sd = state_dir(dir);
    // A lock left by a run that died on another machine.
    let ghost = r#"{"run_id":"20260101T000000Z-dead","who":"ghost@elsewhere","since":"2026-01-01T00:00:00Z","revision":"abcdef1234567890","dirty":false,"command":"deployer apply site.yml","message":"the night deploy","pid":4242}"#;
    on_host(
        host,
        &format!("sudo mkdir -p {sd} && echo '{ghost}' | sudo tee {sd}/lock >/dev/null"),
    );
    let status = deployer(dir, &["lock", "status", "-i", &inv(), "-l", host]);
    assert_eq!(status.code, 0, "{}", status.all());
    assert!(
        status.stdout.contains(&format!(
            "{host}: locked by ghost@elsewhere since 2026-01-01T00:00:00Z"
        )) && status.stdout.contains("message: \"the night deploy\""),
        "{}",
        status.stdout
    );

    // apply refuses and changes nothing; check only warns.
    let refused = deployer(dir, &["apply", "-i", &inv(), "site.yml", "-e", "content=x"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stderr.contains("ghost@elsewhere") && refused.stderr.contains("pid 4242"),
        "{}",
        refused.all()
    );
    assert_eq!(
        on_host(host, &format!("ls {root} 2>&1 >/dev/null | wc -l")).trim(),
        "1"
    );
    // Waiting for it, then Ctrl-C: the wait ends (exit 130 within its 5
    // minutes of --lock-wait), nothing changed.
    let mut waiting = Watched::spawn(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=x",
            "--lock-wait",
            "5m",
        ],
    );
    // The run has reached its wait once it says so.
    waiting.wait_for_line("for the deploy lock on tb2, held by ghost@elsewhere");
    assert!(waiting.running(), "{}", waiting.text());
    Command::new("kill")
        .args(["-INT", &waiting.child.id().to_string()])
        .status()
        .expect("kill");
    let (code, text) = waiting.finish();
    assert_eq!(code, 130, "{text}");
    assert!(sudo_cat(host, &format!("{sd}/lock")).contains("ghost@elsewhere"));
    assert_eq!(
        on_host(host, &format!("ls {root} 2>&1 >/dev/null | wc -l")).trim(),
        "1"
    );
    let check = deployer(dir, &["check", "-i", &inv(), "site.yml", "-e", "content=x"]);
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(
        check
            .stdout
            .contains("[WARNING]: tb2 is locked by ghost@elsewhere"),
        "{}",
        check.stdout
    );
    assert!(sudo_cat(host, &format!("{sd}/lock")).contains("ghost@elsewhere"));

    let release = deployer(dir, &["lock", "release", "-i", &inv(), "-l", host]);
    assert_eq!(release.code, 0, "{}", release.all());
    assert!(
        release
            .stdout
            .contains(&format!("{host}: released the lock of ghost@elsewhere")),
        "{}",
        release.stdout
    );
    let status = deployer(dir, &["lock", "status", "-i", &inv(), "-l", host]);
    assert!(
        status.stdout.contains(&format!("{host}: free")),
        "{}",
        status.stdout
    );

    // A lock from this machine: stale when its process is gone, kept
    // (without --force) while it runs.
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let local_lock = |pid: u32| {
        format!(
            r#"{{"run_id":"r-{pid}","who":"someone@{}","since":"2026-01-01T00:00:00Z","revision":null,"dirty":false,"command":"deployer apply","message":null,"pid":{pid}}}"#,
            machine.trim()
        )
    };
    let put = |json: String| {
        on_host(
            host,
            &format!("echo '{json}' | sudo tee {sd}/lock >/dev/null"),
        )
    };
    put(local_lock(u32::MAX - 1));
    let status = deployer(dir, &["lock", "status", "-i", &inv(), "-l", host]);
    assert!(
        status
            .stdout
            .contains("stale: process 4294967294 is no longer running"),
        "{}",
        status.stdout
    );
    let release = deployer(dir, &["lock", "release", "-i", &inv(), "-l", host]);
    assert_eq!(release.code, 0, "{}", release.all());
    put(local_lock(std::process::id()));
    let refused = deployer(dir, &["lock", "release", "-i", &inv(), "-l", host]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused
            .stdout
            .contains("not released: its run is still going"),
        "{}",
        refused.stdout
    );
    let forced = deployer(
        dir,
        &["lock", "release", "--force", "-i", &inv(), "-l", host],
    );
    assert_eq!(forced.code, 0, "{}", forced.all());
    absent_or_empty(host, &format!("{sd}/lock"));

    // Now the apply runs; the audit command shows both logs, secrets masked.
    let ok = deployer(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=y",
            "-e",
            "db_password=hunter2-not-logged",
            "--message",
            "after the ghost",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.all());
    let audit = deployer(
        dir,
        &[
            "audit",
            "-i",
            &inv(),
            "-l",
            host,
            "-n",
            "5",
            "--format",
            "json",
        ],
    );
    assert_eq!(audit.code, 0, "{}", audit.all());
    assert!(!audit.all().contains("hunter2"), "{}", audit.all());
    let ev = events(&audit.stdout);
    let local: Vec<_> = ev.iter().filter(|e| e["source"] == "local").collect();
    let remote: Vec<_> = ev.iter().filter(|e| e["source"] == "host").collect();
    assert_eq!(
        local.len(),
        3,
        "refused, interrupted wait, ok: {}",
        audit.stdout
    );
    assert_eq!(
        (&local[0]["run"]["result"], &local[1]["run"]["result"]),
        (&json!("locked"), &json!("locked"))
    );
    assert_eq!(local[2]["run"]["result"], "ok");
    assert_eq!(local[2]["run"]["message"], "after the ghost");
    assert!(
        local[2]["run"]["command"]
            .as_str()
            .is_some_and(|c| c.contains("db_password=********")),
        "{}",
        audit.stdout
    );
    assert_eq!(remote.len(), 1, "{}", audit.stdout);
    assert_eq!(remote[0]["host"], host);
    assert_eq!(remote[0]["entry"]["message"], "after the ghost");
    assert_eq!(
        remote[0]["entry"]["changed_tasks"][0]["task"],
        "The directory"
    );
    let human = deployer(dir, &["audit", "-i", &inv(), "-l", host]);
    assert!(
        human
            .stdout
            .contains(&format!("== {host}: {sd}/audit.log (last 1)")),
        "{}",
        human.stdout
    );
    on_host(host, &format!("sudo rm -rf {root} {sd}"));
}

#[test]
fn without_become_the_state_lives_in_the_login_users_home() {
    let host = "tb1";
    let p = project(&[(
        "site.yml",
        &format!(
            "- name: As the login user
  hosts: {host}
  gather_facts: false
  tasks:
    - name: A file of the user's
      ansible.builtin.copy:
        content: \"mine\"
        dest: /tmp/dt-lock-user.txt
"
        ),
    )]);
    let dir = p.path();
    let name = project_name(dir);
    // The testbed inventory, without `ansible_become`.
    testbed_inventory_with(dir, "ansible_become: true", "ansible_become: false");
    let args = ["-i", "inv.yml"];
    let out = deployer(dir, &[&["apply", "site.yml"][..], &args].concat());
    assert_eq!(out.code, 0, "{}", out.all());
    let user_dir = format!("/home/deploy/.local/state/deployer/{name}");
    let audit = on_host(
        host,
        &format!("cat {user_dir}/audit.log; stat -c %a {user_dir}"),
    );
    assert!(
        audit.contains("\"result\":\"ok\"") && audit.ends_with("700\n"),
        "{audit}"
    );
    assert_eq!(
        on_host(
            host,
            &format!("sudo ls /var/lib/deployer/{name} 2>&1 | grep -c 'No such'")
        )
        .trim(),
        "1"
    );
    let status = deployer(dir, &[&["lock", "status", "-l", host][..], &args].concat());
    assert!(
        status
            .stdout
            .contains(&format!("{host}: free ({user_dir})")),
        "{}",
        status.all()
    );
    on_host(host, &format!("rm -rf {user_dir} /tmp/dt-lock-user.txt"));
}

/// The lock script is written into a new connection before its root shell is
/// ready (one round trip fewer). Where `sudo` refuses (a login user that may
/// not use it without a password), that shell never starts: the run fails on
/// the host with sudo's own words, and the lock script ran nowhere, neither
/// as root nor as the login user who received it.
#[test]
fn a_lock_script_sent_with_the_connection_never_runs_where_sudo_refuses() {
    let host = "tb1";
    let user = "dt-nosudo";
    on_host(
        host,
        &format!(
            "flock /tmp/.{user}.lock sh -c 'id {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}; usermod -p \"*\" {user}'
mkdir -p /home/{user}/.ssh && cp /home/deploy/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys
chown -R {user}: /home/{user}/.ssh && chmod 700 /home/{user}/.ssh && chmod 600 /home/{user}/.ssh/authorized_keys
rm -f /etc/sudoers.d/{user}"
        ),
    );
    let p = project(&[(
        "site.yml",
        &format!(
            "- name: As root through sudo
  hosts: {host}
  gather_facts: false
  tasks:
    - name: A file of root's
      ansible.builtin.copy:
        content: \"root's\"
        dest: /root/dt-nosudo.txt
"
        ),
    )]);
    let dir = p.path();
    let name = project_name(dir);
    testbed_inventory_with(
        dir,
        "ansible_user: deploy",
        &format!("ansible_user: {user}"),
    );
    let out = deployer(
        dir,
        &["apply", "--fresh-connection", "-i", "inv.yml", "site.yml"],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains("a password is required"),
        "{}",
        out.all()
    );
    // Nothing of the project's state anywhere: not root's, not the user's.
    let left = on_host(
        host,
        &format!(
            "ls -d /var/lib/deployer/{name} /home/{user}/.local/state/deployer/{name} /root/dt-nosudo.txt 2>/dev/null | wc -l"
        ),
    );
    assert_eq!(left.trim(), "0", "{}", out.all());
}
