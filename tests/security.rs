//! Security against a local unprivileged user of a target (`mallory`, made on
//! the testbed host by these tests) and against leaks of the run's secrets.
//!
//! - the swap attack: mallory swaps every temporary name deployer makes in his
//!   directory for links to root-only files while root writes there;
//! - the polling reader: mallory reads everything he can in a directory where
//!   a 0600 file is rewritten again and again;
//! - values with here-document delimiters, `$()`, backticks, quotes and
//!   newlines through stdin, uri body and headers, creates, removes, validate;
//! - `ps` sampling during `uri` requests that carry secrets.
//!
//! Each test uses its own paths on tb2, so they run in parallel with each
//! other and with the other test binaries.

mod common;

use std::sync::Once;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;

const HOST: &str = "tb2";

/// Creates the unprivileged local user `mallory` on [`HOST`] once.
fn mallory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        on_host(
            HOST,
            "flock /tmp/.sec-mallory.lock sh -c 'id mallory >/dev/null 2>&1 || useradd -m -s /bin/sh mallory'",
        );
        assert!(
            on_host(HOST, "id -u mallory").trim().parse::<u32>().is_ok(),
            "could not create the user mallory on {HOST}"
        );
    });
}

/// Starts a Python program as mallory in the background on [`HOST`]; it runs
/// until `stop` exists, then writes its result to `result`.
fn start_as_mallory(name: &str, program: &str, args: &[&str]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(program);
    let args: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    on_host(
        HOST,
        &format!(
            "echo {b64} | base64 -d > /home/mallory/{name}.py && chown mallory /home/mallory/{name}.py && \
             setsid -f runuser -u mallory -- python3 /home/mallory/{name}.py {} </dev/null >/dev/null 2>&1; sleep 0.5",
            args.join(" ")
        ),
    );
}

/// Stops a program started by [`start_as_mallory`] and reads its result.
fn stop_mallory(stop: &str, result: &str) -> String {
    on_host(HOST, &format!("touch {stop}"));
    let t0 = Instant::now();
    loop {
        // Not written yet is a failing cat: keep polling.
        let (_, r, _) = on_host_status(HOST, &format!("cat {result}"));
        if !r.trim().is_empty() {
            return r.trim().to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "mallory's program did not stop"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const SWAPPER: &str = r#"
import os, sys
d, victim, victimdir, stop, result, mode = sys.argv[1:7]
swaps = 0
n = 0
while not os.path.exists(stop):
    try:
        names = os.listdir(d)
    except OSError:
        continue
    for e in names:
        p = os.path.join(d, e)
        try:
            if e.startswith('.deployer'):
                if os.path.isdir(p) and not os.path.islink(p):
                    n += 1
                    os.rename(p, os.path.join(d, 'moved-%d' % n))
                    os.symlink(victimdir, p)
                    swaps += 1
                elif not os.path.islink(p):
                    os.unlink(p)
                    os.symlink(victim, p)
                    swaps += 1
            elif mode == 'dest' and e.startswith('f') and not os.path.islink(p):
                os.unlink(p)
                os.symlink(victim, p)
                swaps += 1
        except OSError:
            pass
open(result, 'w').write(str(swaps))
"#;

/// The state of the root-only files mallory aims at.
fn victims() -> String {
    on_host(
        HOST,
        "stat -c '%U %G %a %s' /root/sec-victim; sha256sum < /root/sec-victim; stat -c '%U %a' /root/sec-victimdir; ls -A /root/sec-victimdir | wc -l; find / -xdev -user mallory ! -path '/home/mallory*' ! -path '/proc/*' 2>/dev/null | head",
    )
}

#[test]
fn swap_attack_in_the_destination_directory_never_wins() {
    mallory();
    let d = "/home/mallory/drop";
    on_host(
        HOST,
        &format!(
            "rm -rf {d} /home/mallory/swap.*; rm -rf /root/sec-victim /root/sec-victimdir; \
             printf 'root only\\n' > /root/sec-victim; chmod 600 /root/sec-victim; mkdir -m 700 /root/sec-victimdir; \
             install -d -o mallory -g mallory {d}; \
             for i in $(seq 0 99); do runuser -u mallory -- ln -s /root/sec-victim {d}/f$i; done"
        ),
    );
    let before = victims();
    assert!(before.starts_with("root root 600 10\n"), "{before}");
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: {HOST}\n  gather_facts: false\n  become: true\n  tasks:\n\
             \x20   - copy: {{content: \"attack-{{{{ item }}}}\\n\", dest: \"{d}/f{{{{ item }}}}\", owner: mallory, mode: '0644'}}\n\
             \x20     loop: \"{{{{ range(100) | list }}}}\"\n      ignore_errors: true\n\
             \x20   - file: {{path: \"{d}/f{{{{ item }}}}\", owner: mallory, mode: '0640'}}\n\
             \x20     loop: \"{{{{ range(30) | list }}}}\"\n      ignore_errors: true\n"
        ),
    )]);
    // Phase 1: temporary names swapped; phase 2 (same run, second task) the
    // destinations themselves swapped for links while owner and mode change.
    start_as_mallory(
        "swap",
        SWAPPER,
        &[
            d,
            "/root/sec-victim",
            "/root/sec-victimdir",
            "/home/mallory/swap.stop",
            "/home/mallory/swap.result",
            "dest",
        ],
    );
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    let swaps: u64 = stop_mallory("/home/mallory/swap.stop", "/home/mallory/swap.result")
        .parse()
        .expect("swap count");
    let after = victims();
    assert_eq!(after, before, "mallory won: {}", out.all());
    // Every destination that is a regular file has the content deployer wrote
    // and belongs to mallory; each write either happened or failed clearly.
    let files = on_host(
        HOST,
        &format!(
            "for i in $(seq 0 99); do f={d}/f$i; if [ -f $f ] && [ ! -L $f ]; then echo \"$i $(stat -c %U $f) $(cat $f)\"; fi; done"
        ),
    );
    let mut written = 0;
    for line in files.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        assert_eq!(w.len(), 3, "{line}");
        assert_eq!(w[1], "mallory", "{line}");
        assert_eq!(w[2], format!("attack-{}", w[0]), "{line}");
        written += 1;
    }
    let failed = out.stdout.matches("failed: [").count();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let mut reasons: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("failed: ["))
        .map(|(i, l)| {
            let next = lines.get(i + 1).copied().unwrap_or("");
            format!("{l} {next}")
                .split("=>")
                .last()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .collect();
    reasons.sort();
    reasons.dedup();
    println!("refusals: {reasons:#?}");
    let changed = out.stdout.matches("changed: [").count();
    println!(
        "swap attack: {swaps} swaps by mallory; {changed} writes done, {failed} refused; {written} files still in place at the end; 0 wins"
    );
    assert!(
        swaps > 0,
        "the attacker never swapped anything: {}",
        out.all()
    );
    assert_eq!(
        out.stdout.matches("changed: [").count() + out.stdout.matches("ok: [").count() + failed,
        out.stdout.matches(": [tb2]").count(),
        "{}",
        out.stdout
    );
    on_host(HOST, &format!("rm -rf {d} /home/mallory/moved-*"));
}

const READER: &str = r#"
import os, sys
d, marker, stop, result = sys.argv[1:5]
tries = 0
hits = 0
public = 0
while not os.path.exists(stop):
    for root, dirs, files in os.walk(d):
        for f in files + dirs:
            p = os.path.join(root, f)
            try:
                with open(p, 'rb') as fh:
                    data = fh.read()
            except OSError:
                continue
            finally:
                tries += 1
            if marker.encode() in data:
                if f == 'public':
                    public += 1
                else:
                    hits += 1
open(result, 'w').write('%d %d %d' % (tries, hits, public))
"#;

#[test]
fn a_polling_reader_never_reads_a_0600_file_being_written() {
    mallory();
    let d = "/srv/sec-poll";
    on_host(
        HOST,
        &format!(
            "rm -rf {d} /home/mallory/poll.*; mkdir -m 755 {d}; printf 'pollsecret public\\n' > {d}/public; chmod 644 {d}/public"
        ),
    );
    let p = project(&[
        (
            "site.yml",
            &format!(
                "- hosts: {HOST}\n  gather_facts: false\n  become: true\n  tasks:\n\
             \x20   - copy: {{content: \"pollsecret-{{{{ item }}}}\\n\", dest: \"{d}/password\", mode: '0600'}}\n\
             \x20     loop: \"{{{{ range(120) | list }}}}\"\n\
             \x20   - template: {{src: t.j2, dest: \"{d}/rendered-{{{{ item }}}}\", mode: '0600'}}\n\
             \x20     loop: \"{{{{ range(30) | list }}}}\"\n"
            ),
        ),
        ("templates/t.j2", "pollsecret {{ item }}\n"),
    ]);
    start_as_mallory(
        "poll",
        READER,
        &[
            d,
            "pollsecret",
            "/home/mallory/poll.stop",
            "/home/mallory/poll.result",
        ],
    );
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    let r = stop_mallory("/home/mallory/poll.stop", "/home/mallory/poll.result");
    assert_eq!(out.code, 0, "{}", out.all());
    let n: Vec<u64> = r.split(' ').map(|x| x.parse().expect("number")).collect();
    let (tries, hits, public) = (n[0], n[1], n[2]);
    println!(
        "polling reader: {tries} open attempts, {hits} reads of a 0600 file, {public} reads of the 0644 control file"
    );
    assert!(
        public > 0,
        "the reader never read even the public file: {r}"
    );
    assert_eq!(hits, 0, "mallory read a 0600 file's content {hits} times");
    assert_eq!(
        on_host(
            HOST,
            &format!("stat -c '%U %a' {d}/password; cat {d}/password")
        ),
        "root 600\npollsecret-119\n"
    );
    on_host(HOST, &format!("rm -rf {d}"));
}

/// A value that runs a command if any part of deployer lets it become shell
/// text: here-document delimiters (old and new), `$()`, backticks, quotes,
/// `;` and newlines.
fn payload(tag: &str) -> String {
    format!(
        "line one\n__DEPLOYER_STDIN__\ntouch /tmp/sec-pwned-{tag}-heredoc\n__DEPLOYER_BODY__\ntouch /tmp/sec-pwned-{tag}-body\n__DEPLOYER_EOF__\n\
         $(touch /tmp/sec-pwned-{tag}-subst) `touch /tmp/sec-pwned-{tag}-backtick` '\"; touch /tmp/sec-pwned-{tag}-quote; echo \"'\nend"
    )
}

const ECHO_SERVER: &str = r#"
import http.server, json, sys, time
port, log, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    def handle_one(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n).decode('utf-8', 'replace')
        with open(log, 'a') as f:
            f.write(json.dumps({'path': self.path, 'headers': dict(self.headers), 'body': body}) + '\n')
        time.sleep(delay)
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.end_headers()
        self.wfile.write(b'{"ok": true}')
    do_GET = do_POST = do_PUT = handle_one
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()
"#;

fn start_server(port: u16, log: &str, delay: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ECHO_SERVER);
    on_host(
        HOST,
        &format!(
            "rm -f {log}; echo {b64} | base64 -d > /tmp/sec-server-{port}.py; \
             setsid -f python3 /tmp/sec-server-{port}.py {port} {log} {delay} </dev/null >/dev/null 2>&1; \
             for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done",
        ),
    );
}

fn stop_server(port: u16) {
    on_host(
        HOST,
        // The bracket keeps pkill from matching (and killing) this very shell.
        &format!("pkill -f '[s]ec-server-{port}.py' ; rm -f /tmp/sec-server-{port}.py"),
    );
}

#[test]
fn injection_values_never_run_a_command() {
    let tag = "inj";
    on_host(
        HOST,
        &format!("rm -f /tmp/sec-pwned-{tag}-*; rm -rf /srv/sec-inj; mkdir -p /srv/sec-inj"),
    );
    let value = payload(tag);
    let vars = serde_json::json!({
        "payload": value,
        "payload_line": value.replace('\n', " "),
    });
    let p = project(&[
        ("vars.yml", &vars.to_string()),
        (
            "site.yml",
            &format!(
                "- hosts: {HOST}\n  gather_facts: false\n  become: true\n  vars_files: [vars.yml]\n  tasks:\n\
                 \x20   - command: cat\n      args: {{stdin: \"{{{{ payload }}}}\"}}\n      register: c\n\
                 \x20   - assert: {{that: [\"c.stdout == payload\"]}}\n\
                 \x20   - shell: cat\n      args: {{stdin: \"{{{{ payload }}}}\", stdin_add_newline: false}}\n      register: s\n\
                 \x20   - assert: {{that: [\"s.stdout == payload\"]}}\n\
                 \x20   - command: /bin/true\n      args: {{creates: \"/srv/sec-inj/none*{{{{ payload_line }}}}\"}}\n\
                 \x20   - command: /bin/true\n      args: {{removes: \"/srv/sec-inj/none*{{{{ payload_line }}}}\"}}\n\
                 \x20   - command: /bin/true\n      args: {{creates: \"/srv/sec-inj/{{{{ payload_line }}}}\"}}\n\
                 \x20   - copy: {{content: \"{{{{ payload }}}}\", dest: /srv/sec-inj/validated, validate: \"test -s %s $(touch /tmp/sec-pwned-{tag}-validate) `touch /tmp/sec-pwned-{tag}-validate2`\"}}\n\
                 \x20     ignore_errors: true\n\
                 \x20   - copy: {{content: \"{{{{ payload }}}}\", dest: /srv/sec-inj/plain, validate: \"grep -q end %s\"}}\n\
                 \x20   - uri:\n        url: http://127.0.0.1:18391/inj\n        method: POST\n        body: \"{{{{ payload }}}}\"\n        headers: {{X-Payload: \"{{{{ payload_line }}}}\"}}\n\
                 \x20   - uri:\n        url: http://127.0.0.1:18391/inj-json\n        method: POST\n        body_format: json\n        body: {{value: \"{{{{ payload }}}}\"}}\n\
                 \x20   - uri:\n        url: http://127.0.0.1:18391/inj-header\n        headers: {{X-Bad: \"a\\nX-Injected: 1\"}}\n      ignore_errors: true\n      register: bad_header\n\
                 \x20   - assert: {{that: [\"bad_header is failed\", \"'line break' in bad_header.msg\"]}}\n"
            ),
        ),
    ]);
    start_server(18391, "/tmp/sec-inj-server.log", "0");
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    let log = on_host(HOST, "cat /tmp/sec-inj-server.log");
    stop_server(18391);
    let pwned = on_host(HOST, &format!("ls /tmp/ | grep sec-pwned-{tag} || true"));
    assert_eq!(pwned.trim(), "", "commands ran:\n{}", out.all());
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        on_host(HOST, "cat /srv/sec-inj/plain"),
        value,
        "copy wrote something else"
    );
    assert!(
        on_host(HOST, "ls /srv/sec-inj/validated 2>&1").contains("No such file"),
        "a validate with extra words must fail (no shell runs it)"
    );
    let reqs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line"))
        .collect();
    assert_eq!(reqs.len(), 2, "{log}");
    assert_eq!(reqs[0]["body"], value.as_str());
    assert_eq!(
        reqs[0]["headers"]["X-Payload"],
        value.replace('\n', " ").as_str()
    );
    let j: serde_json::Value =
        serde_json::from_str(reqs[1]["body"].as_str().expect("body")).expect("json body");
    assert_eq!(j["value"], value.as_str());
    on_host(HOST, "rm -rf /srv/sec-inj /tmp/sec-inj-server.log");
}

const PS_SAMPLER: &str = r#"
import os, sys
# The marker comes reversed: this program's own argv must not match it.
markers, stop, result = [sys.argv[1][::-1]], sys.argv[2], sys.argv[3]
samples = 0
hits = []
while not os.path.exists(stop):
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                args = f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
        except OSError:
            continue
        samples += 1
        for m in markers:
            if m in args:
                hits.append(args[:200])
open(result, 'w').write('%d\n%s' % (samples, '\n'.join(hits)))
"#;

#[test]
fn uri_secrets_never_appear_in_any_process_argv() {
    mallory();
    on_host(HOST, "rm -f /home/mallory/ps.*");
    let p = project(&[(
        "site.yml",
        &format!(
            "- hosts: {HOST}\n  gather_facts: false\n  become: true\n  vars:\n    token: sec-bearer-Q7rT\n  tasks:\n\
             \x20   - uri:\n        url: \"http://127.0.0.1:18392/api?token=sec-url-Q7rT\"\n        method: POST\n\
             \x20       headers: {{Authorization: \"Bearer {{{{ token }}}}\"}}\n        body_format: json\n        body: {{password: sec-body-Q7rT}}\n\
             \x20     loop: [1, 2, 3]\n"
        ),
    )]);
    start_server(18392, "/tmp/sec-ps-server.log", "1.5");
    start_as_mallory(
        "ps",
        PS_SAMPLER,
        &["Tr7Q", "/home/mallory/ps.stop", "/home/mallory/ps.result"],
    );
    let out = deployer(p.path(), &["apply", "-i", &inv(), "site.yml"]);
    let r = stop_mallory("/home/mallory/ps.stop", "/home/mallory/ps.result");
    let log = on_host(HOST, "cat /tmp/sec-ps-server.log");
    stop_server(18392);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut lines = r.lines();
    let samples: u64 = lines.next().and_then(|s| s.parse().ok()).expect("samples");
    let hits: Vec<&str> = lines.collect();
    println!(
        "ps sampling during uri: {samples} process samples, {} with a secret",
        hits.len()
    );
    assert!(samples > 100, "too few samples: {r}");
    assert!(hits.is_empty(), "secrets in argv: {hits:?}");
    // The secrets did reach the server, three times.
    assert_eq!(log.matches("Bearer sec-bearer-Q7rT").count(), 3, "{log}");
    assert_eq!(log.matches("sec-body-Q7rT").count(), 3, "{log}");
    assert_eq!(log.matches("token=sec-url-Q7rT").count(), 3, "{log}");
    on_host(HOST, "rm -f /tmp/sec-ps-server.log /home/mallory/ps.*");
}

/// Runs deployer with `HOME` set to `home` (its ~/.ssh/config is then read).
fn deployer_with_home(dir: &std::path::Path, home: &std::path::Path, args: &[&str]) -> Out {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
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

#[test]
fn host_key_checking_cannot_be_bypassed() {
    let kh = repo().join("tests/testbed/state/known_hosts");
    let p = project(&[(
        "site.yml",
        "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - command: touch /tmp/sec-hostkey-ran\n",
    )]);
    let dir = p.path();
    std::fs::write(
        dir.join("vouching.cfg"),
        format!("Host *\n  KnownHostsCommand /bin/cat {}\n", kh.display()),
    )
    .expect("cfg");
    std::fs::write(
        dir.join("devnull.cfg"),
        "Host *\n  UserKnownHostsFile /dev/null\n",
    )
    .expect("cfg");
    std::fs::write(dir.join("empty_known_hosts"), "").expect("kh");
    on_host("tb1", "rm -f /tmp/sec-hostkey-ran");
    let bypasses = [
        "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=accept-new".to_string(),
        "-o UserKnownHostsFile=/tmp/fresh-known-hosts -o StrictHostKeyChecking=accept-new"
            .to_string(),
        "-o StrictHostKeyChecking=no".to_string(),
        format!("-F {}", dir.join("vouching.cfg").display()),
        format!("-F {}", dir.join("devnull.cfg").display()),
    ];
    for args in &bypasses {
        let out = deployer(
            dir,
            &[
                "apply",
                "-i",
                &inv(),
                "site.yml",
                "-e",
                &format!("ansible_ssh_common_args='{args}'"),
            ],
        );
        assert_ne!(out.code, 0, "{args} was accepted:\n{}", out.all());
        assert!(out.all().contains("refused"), "{args}:\n{}", out.all());
    }
    // A KnownHostsCommand in ~/.ssh/config that vouches for the right keys
    // while the known-hosts file deployer is told to use is empty: deployer's
    // own config sets KnownHostsCommand none first, so the key is not trusted.
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
    std::fs::copy(dir.join("vouching.cfg"), home.join(".ssh/config")).expect("cp");
    let out = deployer_with_home(
        dir,
        &home,
        &[
            "apply",
            "-i",
            &inv(),
            "site.yml",
            "-e",
            &format!(
                "ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes'",
                dir.join("empty_known_hosts").display()
            ),
        ],
    );
    assert_ne!(
        out.code,
        0,
        "a KnownHostsCommand was trusted:\n{}",
        out.all()
    );
    assert!(out.all().contains("unreachable"), "{}", out.all());
    // A command that fails when the file exists: a command ran on a host
    // whose key was not verified.
    on_host("tb1", "test ! -e /tmp/sec-hostkey-ran");
}
