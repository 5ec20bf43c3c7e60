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
        // The bracket keeps pkill from matching this very shell, and the file
        // name is built from parts so the shell's own command line does not
        // hold it either; pkill's "no process" (1) is fine.
        &format!(
            "f=/tmp/sec-server-; f=\"$f{port}.py\"; pkill -f '[s]ec-server-{port}[.]py'; rm -f \"$f\""
        ),
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
    // A validate with extra words must fail (no shell runs it): the file its
    // shell text would have made is absent.
    on_host(HOST, "test ! -e /srv/sec-inj/validated");
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

/// The run's secrets: `-e` values (one with quotes and a backslash), vault
/// values (one multi-line, one of two characters). Each has a core that
/// greps uniquely.
const E_SECRET: &str = "sec-eval-Zq81x";
const E_JSON_SECRET: &str = "sec-js\"on\\Zq82x";
const V_SECRET: &str = "sec-v'au\"lt\\Zq83x";
const V_MULTI: &str =
    "-----BEGIN FIXTURE-----\nZq84xLINEONE\nZq85xLINETWO\nQ7\n-----END FIXTURE-----\n";
const V_SHORT: &str = "k7";
const CORES: [&str; 5] = ["Zq81x", "Zq82x", "Zq83x", "Zq84x", "Zq85x"];

fn vault(dir: &std::path::Path, args: &[&str]) -> Out {
    let pw = repo().join("tests/fixtures/vault-password.txt");
    let mut a: Vec<String> = vec!["vault".into()];
    a.extend(args.iter().map(|s| s.to_string()));
    a.push("--vault-password-file".into());
    a.push(pw.display().to_string());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    deployer(dir, &a)
}

/// Lines of `text` that hold a secret's core, or the short secret as a token.
fn leaks(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            CORES.iter().any(|c| l.contains(c))
                || l.contains("pin=k7")
                || l.contains("'k7'")
                || l.contains("\"k7\"")
        })
        .map(|l| l.chars().take(300).collect())
        .collect()
}

#[test]
fn secrets_of_a_run_are_in_no_output_and_no_state_file() {
    let root = "/srv/sec-leak";
    let name = format!("sec-leak-{}", testbed_id());
    on_host(
        HOST,
        &format!("rm -rf {root} /var/lib/deployer/{name}; mkdir -p {root}"),
    );
    let vars = serde_json::json!({
        "v_secret": V_SECRET,
        "v_multi": V_MULTI,
        "v_short": V_SHORT,
    });
    let p = project(&[
        (".deployer-project", &name),
        ("group_vars/all/vault.yml", &vars.to_string()),
        (
            "site.yml",
            &format!(
                "- hosts: {HOST}\n  gather_facts: false\n  become: true\n  tasks:\n\
                 \x20   - copy: {{content: \"key={{{{ api_key }}}} js={{{{ db_pw }}}} v={{{{ v_secret }}}}\\n\", dest: {root}/conf, mode: '0600'}}\n\
                 \x20   - template: {{src: t.j2, dest: {root}/multi, mode: '0600'}}\n\
                 \x20   - debug: {{var: bundle}}\n\
                 \x20     vars: {{bundle: {{a: \"{{{{ api_key }}}}\", b: \"{{{{ db_pw }}}}\", c: \"{{{{ v_secret }}}}\", d: \"{{{{ v_multi }}}}\", e: \"{{{{ v_short }}}}\"}}}}\n\
                 \x20   - debug: {{msg: \"{{{{ {{'a': api_key, 'b': db_pw, 'c': v_secret, 'd': v_multi}} | to_json }}}}\"}}\n\
                 \x20   - debug: {{msg: \"{{{{ {{'a': api_key, 'b': db_pw, 'c': v_secret, 'd': v_multi}} | to_nice_yaml }}}}\"}}\n\
                 \x20   - debug: {{msg: \"pin={{{{ v_short }}}} lines={{{{ v_multi }}}}\"}}\n\
                 \x20   - shell: cat\n      args: {{stdin: \"{{{{ v_secret }}}} {{{{ db_pw }}}}\"}}\n      register: echoed\n      changed_when: false\n\
                 \x20   - debug: {{var: echoed}}\n\
                 \x20   - fail: {{msg: \"failing with {{{{ api_key }}}} {{{{ v_secret }}}} pin={{{{ v_short }}}}\"}}\n      ignore_errors: true\n\
                 \x20   - command: \"false {{{{ db_pw }}}}\"\n      ignore_errors: true\n      changed_when: false\n"
            ),
        ),
        ("templates/t.j2", "{{ v_multi }}"),
    ]);
    let enc = vault(p.path(), &["encrypt", "group_vars/all/vault.yml"]);
    assert_eq!(enc.code, 0, "{}", enc.all());
    let pw = repo().join("tests/fixtures/vault-password.txt");
    let pw = pw.display().to_string();
    let inv = inv();
    let e1 = format!("api_key={E_SECRET}");
    let e2 = serde_json::json!({ "db_pw": E_JSON_SECRET }).to_string();
    let base = [
        "-i",
        inv.as_str(),
        "site.yml",
        "--vault-password-file",
        pw.as_str(),
        "-e",
        e1.as_str(),
        "-e",
        e2.as_str(),
    ];
    let run = |cmd: &str, extra: &[&str]| {
        let mut a = vec![cmd];
        a.extend_from_slice(&base);
        a.extend_from_slice(extra);
        deployer(p.path(), &a)
    };
    let outs = [
        ("apply --diff", run("apply", &["--diff"])),
        (
            "check --diff --format json",
            run("check", &["--diff", "--format", "json"]),
        ),
        ("apply --format json", run("apply", &["--format", "json"])),
    ];
    // The runs did what they say: the files hold the secrets in clear.
    assert_eq!(outs[0].1.code, 0, "{}", outs[0].1.all());
    assert!(
        outs[0].1.stdout.contains("changed: [tb2]"),
        "{}",
        outs[0].1.stdout
    );
    assert!(
        outs[0].1.all().contains("pin=********"),
        "{}",
        outs[0].1.all()
    );
    assert!(
        outs[0].1.all().contains("failing with"),
        "{}",
        outs[0].1.all()
    );
    assert_eq!(
        on_host(HOST, &format!("cat {root}/conf")),
        format!("key={E_SECRET} js={E_JSON_SECRET} v={V_SECRET}\n")
    );
    assert_eq!(on_host(HOST, &format!("cat {root}/multi")), V_MULTI);
    let mut found = Vec::new();
    for (what, o) in &outs {
        for l in leaks(&o.all()) {
            found.push(format!("{what}: {l}"));
        }
    }
    // Every state file: the run log here, and everything deployer keeps on
    // the host (lock, audit, releases, pending handlers) and in its temp dirs.
    let local = std::fs::read_to_string(p.path().join(".deployer/runs.jsonl")).expect("runs.jsonl");
    assert!(local.contains("api_key=********"), "{local}");
    assert!(local.contains("\"db_pw\\\":\\\"********\\\""), "{local}");
    for l in leaks(&local) {
        found.push(format!(".deployer/runs.jsonl: {l}"));
    }
    let state = on_host(
        HOST,
        &format!(
            "cd /var/lib/deployer/{name} && find . -type f | sort | while read -r f; do echo \"== $f\"; cat \"$f\"; echo; done; \
             echo '== /tmp, /root'; grep -rIl -e Zq81x -e Zq82x -e Zq83x -e Zq84x -e Zq85x /tmp /root /var/tmp 2>/dev/null; true"
        ),
    );
    assert!(state.contains("== ./audit.log"), "{state}");
    assert!(state.contains("release.json"), "{state}");
    for l in leaks(&state) {
        found.push(format!("host state: {l}"));
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    println!(
        "secrets grep: 3 runs' output, runs.jsonl and {} host state files: 0 hits",
        state.matches("\n== ").count()
    );
    // Modes: 0600 files in 0700 directories, here and on the host.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&p.path().join(".deployer")), 0o700);
    assert_eq!(mode(&p.path().join(".deployer/runs.jsonl")), 0o600);
    let wide = on_host(
        HOST,
        &format!(
            "find /var/lib/deployer/{name} \\( -type f ! -perm 600 \\) -o \\( -type d ! -perm 700 \\) | head"
        ),
    );
    assert_eq!(wide, "", "state files or directories not private");
    on_host(HOST, &format!("rm -rf {root} /var/lib/deployer/{name}"));
}

/// `deployer vault edit` with an editor that sleeps: the plaintext is in a
/// private directory while it runs and gone after SIGTERM, SIGINT (sent to
/// deployer) and after the editor fails; the vault file is unchanged.
#[test]
fn vault_edit_removes_its_plaintext_on_signals_and_editor_failure() {
    use std::os::unix::fs::PermissionsExt;
    let p = project(&[("secret.yml", "password: sec-edit-Zq86x\n")]);
    let dir = p.path();
    let enc = vault(dir, &["encrypt", "secret.yml"]);
    assert_eq!(enc.code, 0, "{}", enc.all());
    std::fs::set_permissions(
        dir.join("secret.yml"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    let before = std::fs::read(dir.join("secret.yml")).expect("read");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    std::fs::write(
        dir.join("sleepy.sh"),
        "#!/bin/sh\nexec sleep 60 </dev/null >/dev/null 2>&1\n",
    )
    .expect("editor");
    std::fs::write(
        dir.join("failing.sh"),
        "#!/bin/sh\necho changed >> \"$1\"\nexit 3\n",
    )
    .expect("editor");
    for e in ["sleepy.sh", "failing.sh"] {
        std::fs::set_permissions(dir.join(e), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let pw = repo().join("tests/fixtures/vault-password.txt");
    let start = |editor: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
            .args(["vault", "edit", "secret.yml", "--vault-password-file"])
            .arg(&pw)
            .current_dir(dir)
            .env("EDITOR", dir.join(editor))
            .env("TMPDIR", &tmp)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("vault edit")
    };
    let plaintext_files = || -> Vec<(std::path::PathBuf, u32, String)> {
        let mut out = Vec::new();
        for d in std::fs::read_dir(&tmp).expect("ls").flatten() {
            let m = std::fs::metadata(d.path())
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            out.push((d.path(), m, String::new()));
            if d.path().is_dir() {
                for f in std::fs::read_dir(d.path()).expect("ls").flatten() {
                    let fm = std::fs::metadata(f.path())
                        .expect("meta")
                        .permissions()
                        .mode()
                        & 0o777;
                    let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                    out.push((f.path(), fm, text));
                }
            }
        }
        out
    };
    for (sig, code) in [("TERM", 143), ("INT", 130)] {
        let child = start("sleepy.sh");
        let t0 = Instant::now();
        let seen = loop {
            let f = plaintext_files();
            if f.iter().any(|(_, _, t)| t.contains("Zq86x")) {
                break f;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the editor never got the plaintext"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // While the editor runs: a 0700 directory holding a 0600 file.
        assert!(
            seen.iter().any(|(p, m, _)| p.is_dir() && *m == 0o700),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|(p, m, t)| p.is_file() && *m == 0o600 && t.contains("Zq86x")),
            "{seen:?}"
        );
        let k = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(k.success());
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(code),
            "SIG{sig}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            plaintext_files(),
            Vec::new(),
            "SIG{sig} left the plaintext behind"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("was removed"));
    }
    let out = start("failing.sh").wait_with_output().expect("wait");
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        plaintext_files(),
        Vec::new(),
        "a failed editor left the plaintext behind"
    );
    assert_eq!(std::fs::read(dir.join("secret.yml")).expect("read"), before);
    // SIGKILL cannot be caught: the plaintext stays in its private
    // directory until the next `vault edit` of this user removes it.
    let child = start("sleepy.sh");
    let t0 = Instant::now();
    while !plaintext_files()
        .iter()
        .any(|(_, _, t)| t.contains("Zq86x"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the editor never got the plaintext"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let k = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(k.success());
    // Not wait_with_output: the orphaned editor keeps the pipes open.
    let mut child = child;
    let _ = child.wait().expect("wait");
    assert!(
        plaintext_files()
            .iter()
            .any(|(p, m, _)| p.is_dir() && *m == 0o700)
    );
    let out = start("failing.sh").wait_with_output().expect("wait");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("removed the plaintext left by an interrupted vault edit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        plaintext_files(),
        Vec::new(),
        "the plaintext of the killed edit is still there"
    );
    // A rekey keeps the file's mode.
    let newpw = dir.join("newpw");
    std::fs::write(&newpw, "another-password\n").expect("pw");
    let r = vault(
        dir,
        &[
            "rekey",
            "secret.yml",
            "--new-vault-password-file",
            newpw.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let m = std::fs::metadata(dir.join("secret.yml"))
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(m, 0o640, "rekey changed the file's mode");
    assert_ne!(std::fs::read(dir.join("secret.yml")).expect("read"), before);
}

/// The state of the root-only directory mallory points his links at.
fn victim2() -> String {
    on_host(
        HOST,
        "stat -c '%U %a' /root/sec-victim2; ls -A /root/sec-victim2; cat /root/sec-victim2/keep; stat -c '%y %U %a' /root/sec-victim2/keep",
    )
}

/// Links mallory plants in his own directories, and a directory he swaps for
/// a link between two runs: `file state=directory`, `state=absent`,
/// `state=link`, `state=touch`, a mode change (also of a hard link to a
/// root-only file, made here by root as mallory could where the kernel's
/// `fs.protected_hardlinks` is off), a write, the release save and rollback's restore all refuse to go
/// through them, and nothing outside his directory changes.
#[test]
fn links_planted_by_a_local_user_are_never_followed() {
    mallory();
    let d = "/home/mallory/plant";
    let name = format!("sec-plant-{}", testbed_id());
    on_host(
        HOST,
        &format!(
            "rm -rf {d} /root/sec-victim2 /var/lib/deployer/{name}; mkdir -m 700 /root/sec-victim2; \
             printf 'root-only-Zq90x\\n' > /root/sec-victim2/keep; chmod 600 /root/sec-victim2/keep; \
             install -d -o mallory -g mallory {d} {d}/r; runuser -u mallory -- ln -s /root/sec-victim2 {d}/sub; \
             rm -rf /root/sec-hl; mkdir -m 700 /root/sec-hl; echo hl > /root/sec-hl/f; chmod 600 /root/sec-hl/f; \
             ln /root/sec-hl/f {d}/hl"
        ),
    );
    let before = victim2();
    assert!(
        before.starts_with("root 700\nkeep\nroot-only-Zq90x\n"),
        "{before}"
    );
    let p = project(&[
        (".deployer-project", &name),
        (
            "site.yml",
            &format!(
                "- hosts: {HOST}\n  gather_facts: false\n  become: true\n  tasks:\n\
                 \x20   - file: {{path: {d}/sub/made/deeper, state: directory, mode: '0777'}}\n      ignore_errors: true\n\
                 \x20   - file: {{path: {d}/sub/keep, state: absent}}\n      ignore_errors: true\n\
                 \x20   - file: {{path: {d}/sub/keep, mode: '0644', owner: mallory}}\n      ignore_errors: true\n\
                 \x20   - copy: {{content: \"x\\n\", dest: {d}/sub/keep, owner: mallory}}\n      ignore_errors: true\n\
                 \x20   - file: {{path: {d}/sub/lnk, src: /etc/hostname, state: link}}\n      ignore_errors: true\n\
                 \x20   - file: {{path: {d}/sub/keep, state: touch}}\n      ignore_errors: true\n\
                 \x20   - file: {{path: {d}/hl, mode: '0644', owner: mallory}}\n      ignore_errors: true\n\
                 \x20   - file: {{path: {d}/sub, state: absent}}\n      when: remove_link | default(false) | bool\n\
                 \x20   - copy: {{content: \"{{{{ version }}}}\\n\", dest: {d}/r/conf, owner: mallory, mode: '0644'}}\n"
            ),
        ),
    ]);
    let inv = inv();
    let run = |extra: &[&str]| {
        let mut a = vec!["apply", "-i", inv.as_str(), "site.yml"];
        a.extend_from_slice(extra);
        deployer(p.path(), &a)
    };
    let first = run(&["-e", "version=one"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(
        first.stdout.matches("failed: [tb2]").count(),
        7,
        "{}",
        first.stdout
    );
    assert!(
        first
            .all()
            .contains("is a symbolic link owned by another user"),
        "{}",
        first.all()
    );
    assert_eq!(
        victim2(),
        before,
        "something went through the link:\n{}",
        first.all()
    );
    assert!(
        first.all().contains("it has other hard links"),
        "{}",
        first.all()
    );
    assert_eq!(
        on_host(HOST, "stat -c '%U %a' /root/sec-hl/f"),
        "root 600\n",
        "a mode or owner went through the hard link"
    );
    on_host(HOST, &format!("rm -rf {d}/hl /root/sec-hl"));
    // A second run: the release saves r/conf ("one") before writing "two".
    let second = run(&["-e", "version=two"]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(on_host(HOST, &format!("cat {d}/r/conf")), "two\n");
    // mallory swaps his directory r for a link to the root-only directory:
    // rollback must not restore "one" into /root/sec-victim2/conf.
    on_host(
        HOST,
        &format!(
            "runuser -u mallory -- sh -c 'mv {d}/r {d}/r-moved && ln -s /root/sec-victim2 {d}/r'"
        ),
    );
    let rb = deployer(p.path(), &["rollback", "-i", &inv, "-l", HOST]);
    assert_ne!(
        rb.code,
        0,
        "rollback through mallory's link succeeded:\n{}",
        rb.all()
    );
    assert!(rb.all().contains("symbolic link"), "{}", rb.all());
    assert_eq!(
        victim2(),
        before,
        "rollback went through the link:\n{}",
        rb.all()
    );
    assert_eq!(on_host(HOST, &format!("cat {d}/r-moved/conf")), "two\n");
    // The release save never copied the root-only file into the state.
    let state = on_host(
        HOST,
        &format!("grep -rl Zq90x /var/lib/deployer/{name} 2>/dev/null; ls /root/sec-victim2"),
    );
    assert_eq!(
        state, "keep\n",
        "root-only content copied into the release state"
    );
    // A link mallory owns is removed as a link (never followed).
    let third = run(&["-e", "version=three", "-e", "remove_link=true"]);
    assert_eq!(victim2(), before, "{}", third.all());
    assert_eq!(on_host(HOST, &format!("ls -A {d}")), "r\nr-moved\n");
    on_host(
        HOST,
        &format!("rm -rf {d} /root/sec-victim2 /var/lib/deployer/{name}"),
    );
}
