//! Issue 7 part A on the real testbed: the deploy lock (concurrent applies,
//! --lock-wait, SIGINT, stale locks), the audit logs, and handlers that stay
//! pending when a run fails.
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The project's state directory on the hosts (the testbed becomes root).
fn state_dir(project: &Path) -> String {
    let name = project
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    format!("/var/lib/deployer/{name}")
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

/// Waits (bounded) until `script` prints something on `host`.
fn wait_on_host(host: &str, script: &str, what: &str) -> String {
    let start = Instant::now();
    loop {
        let out = on_host(host, script);
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
    on_host(host, &format!("sudo cat {path} 2>/dev/null"))
}

/// A play on one host: a file with `{{ content }}`, then a pause of
/// `{{ hold }}` seconds (0 by default) during which the lock is held.
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
    - name: Hold the lock a while
      ansible.builtin.pause:
        seconds: \"{{{{ hold | default(0) }}}}\"
"
        ),
    )])
}

#[test]
fn two_concurrent_applies_one_runs_the_other_fails_at_once_or_waits() {
    let host = "tb1";
    let root = "/srv/dt-lock-concurrent";
    on_host(host, &format!("sudo rm -rf {root}"));
    let p = slow_project(host, root);
    let dir = p.path();
    let lock = format!("{}/lock", state_dir(dir));
    let a = spawn(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=A",
            "-e",
            "hold=6",
            "--message",
            "release A",
        ],
    );
    let a_pid = a.id();
    let held = wait_on_host(host, &format!("sudo cat {lock} 2>/dev/null"), "A's lock");
    assert!(held.contains("\"message\":\"release A\""), "{held}");

    // B fails at once with A's details and changes nothing.
    let t = Instant::now();
    let b = deployer(dir, &["apply", "-i", &inv(), "site.yml", "-e", "content=B"]);
    let took = t.elapsed();
    assert_eq!(b.code, 1, "{}", b.all());
    assert!(took < Duration::from_secs(5), "B took {took:?}");
    for want in [
        "tb1 is locked by ",
        &format!("pid {a_pid}"),
        "message: \"release A\"",
        // The holder's command line: -e keys, never values.
        "content=********",
        "nothing was changed on any host",
    ] {
        assert!(b.stderr.contains(want), "missing {want:?} in:\n{}", b.all());
    }
    assert!(!b.stdout.contains("changed:"), "{}", b.stdout);
    let a = finish(a);
    assert_eq!(a.code, 0, "{}", a.all());
    assert_eq!(on_host(host, &format!("cat {root}/writer")).trim(), "A");
    assert_eq!(sudo_cat(host, &lock), "", "A released its lock");

    // With --lock-wait, B waits for A and then runs.
    let a = spawn(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=A2",
            "-e",
            "hold=4",
        ],
    );
    wait_on_host(host, &format!("sudo cat {lock} 2>/dev/null"), "A2's lock");
    let t = Instant::now();
    let b = deployer(
        dir,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            "content=B",
            "--lock-wait",
            "60s",
        ],
    );
    let a = finish(a);
    assert_eq!(a.code, 0, "{}", a.all());
    assert_eq!(b.code, 0, "{}", b.all());
    assert!(b.all().contains("waiting up to"), "{}", b.all());
    assert!(t.elapsed() >= Duration::from_secs(2), "B did not wait");
    assert_eq!(on_host(host, &format!("cat {root}/writer")).trim(), "B");
    assert_eq!(sudo_cat(host, &lock), "");
    on_host(host, &format!("sudo rm -rf {root} {}", state_dir(dir)));
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
    // Once the config is written, the run is in its long step.
    wait_on_host(host, &format!("cat {root}.conf 2>/dev/null"), "the config");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &a.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let a = finish(a);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(a.code, 130, "{}", a.all());
    assert!(a.stderr.contains("interrupted"), "{}", a.all());
    assert_eq!(sudo_cat(host, &format!("{sd}/lock")), "", "lock released");
    let pending = sudo_cat(host, &format!("{sd}/pending-handlers.json"));
    assert!(
        pending.contains("\"notification\":\"restart app\""),
        "{pending}"
    );
    let audit = sudo_cat(host, &format!("{sd}/audit.log"));
    assert!(audit.contains("\"result\":\"interrupted\""), "{audit}");
    assert_eq!(
        on_host(host, &format!("cat {root}.restarts 2>/dev/null")),
        ""
    );

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
    assert_eq!(sudo_cat(host, &format!("{sd}/pending-handlers.json")), "");
    on_host(
        host,
        &format!("sudo rm -rf {root}.conf {root}.restarts {sd}"),
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
    assert_eq!(sudo_cat(host, &format!("{sd}/pending-handlers.json")), "");

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
    assert_eq!(sudo_cat(host, &format!("{sd}/pending-handlers.json")), "");
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
    // Waiting for it, then Ctrl-C: the wait ends at once, nothing changed.
    let waiting = spawn(
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
    // Long enough for the run to reach its wait on a loaded machine.
    std::thread::sleep(Duration::from_secs(10));
    let t = Instant::now();
    Command::new("kill")
        .args(["-INT", &waiting.id().to_string()])
        .status()
        .expect("kill");
    let waited = finish(waiting);
    assert_eq!(waited.code, 130, "{}", waited.all());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        waited
            .stdout
            .contains("for the deploy lock on tb2, held by ghost@elsewhere"),
        "{}",
        waited.all()
    );
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
    assert_eq!(sudo_cat(host, &format!("{sd}/lock")), "");

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
    let name = dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    // The testbed inventory, without `ansible_become`.
    let text = std::fs::read_to_string(testbed_inventory()).expect("inventory");
    assert!(text.contains("ansible_become: true"), "{text}");
    std::fs::write(
        dir.join("inv.yml"),
        text.replace("ansible_become: true", "ansible_become: false"),
    )
    .expect("write inventory");
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
