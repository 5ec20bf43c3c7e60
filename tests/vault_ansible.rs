//! Interoperability of `deployer vault` with the REAL ansible-core.
//!
//! The tools are looked up in `$DEPLOYER_ANSIBLE_BIN_DIR`, else
//! `/opt/deployer-ci/venv/bin`. If they are missing the tests FAIL (never skip):
//!
//! ```sh
//! python3 -m venv /opt/deployer-ci/venv
//! /opt/deployer-ci/venv/bin/pip install ansible-core==2.19.14
//! ```
//!
//! All passwords and secrets here are test fixtures with obviously fake values.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const FIXTURE_PASSWORD: &str = "deployer-test-only-vault-password";

fn fixture_pw() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-password.txt")
}

fn ansible_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("DEPLOYER_ANSIBLE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/deployer-ci/venv/bin"));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} not found. These tests need the real ansible-core. Install it with:\n  \
         python3 -m venv /opt/deployer-ci/venv && /opt/deployer-ci/venv/bin/pip install ansible-core==2.19.14\n\
         or point DEPLOYER_ANSIBLE_BIN_DIR at a directory containing ansible-vault and ansible-playbook.",
        bin.display()
    );
    bin
}

/// A scratch directory that also hosts ansible's home/tmp.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.write(name, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
    fn deployer(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
        c.arg("vault")
            .current_dir(self.dir.path())
            .env_remove("DEPLOYER_VAULT_PASSWORD_FILE")
            .env_remove("ANSIBLE_VAULT_ENCRYPT_SALT")
            .env_remove("EDITOR")
            .stdin(Stdio::null());
        c
    }
    fn ansible(&self, tool: &str) -> Command {
        let mut c = Command::new(ansible_bin(tool));
        c.current_dir(self.dir.path())
            .env("ANSIBLE_HOME", self.path(".ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", self.path(".ansible-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env_remove("ANSIBLE_VAULT_ENCRYPT_SALT")
            .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
            .env_remove("ANSIBLE_VAULT_IDENTITY_LIST")
            .stdin(Stdio::null());
        c
    }
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded");
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn deployer_files_are_read_by_ansible_vault() {
    let s = Scratch::new();
    let plain = "db_password: fake-db-password-1\nsecret_key: fake-secret-key\n";
    let f = s.write("secrets.yml", plain);
    ok(s.deployer()
        .arg("encrypt")
        .arg(&f)
        .arg("--vault-password-file")
        .arg(fixture_pw()));
    let data = std::fs::read_to_string(&f).unwrap();
    assert!(data.starts_with("$ANSIBLE_VAULT;1.1;AES256\n"), "{data}");
    assert!(!data.contains("fake-db-password"));
    assert_eq!(mode(&f), 0o600);
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg(&f));
    assert_eq!(stdout(&out), plain);

    // 1.2 with a vault id.
    let g = s.write("prod.yml", plain);
    let id = format!("prod@{}", fixture_pw().display());
    ok(s.deployer()
        .arg("encrypt")
        .arg(&g)
        .arg("--vault-id")
        .arg(&id));
    assert!(
        std::fs::read_to_string(&g)
            .unwrap()
            .starts_with("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    );
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-id")
        .arg(&id)
        .arg(&g));
    assert_eq!(stdout(&out), plain);

    // create with an editor script.
    let editor = s.script("editor.sh", "printf 'created: fake-value\\n' > \"$1\"");
    let c = s.path("sub/created.yml");
    ok(s.deployer()
        .arg("create")
        .arg(&c)
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .env("EDITOR", &editor));
    assert_eq!(mode(&c), 0o600);
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg(&c));
    assert_eq!(stdout(&out), "created: fake-value\n");
    let out = fails(
        s.deployer()
            .arg("create")
            .arg(&c)
            .arg("--vault-password-file")
            .arg(fixture_pw())
            .env("EDITOR", &editor),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("use 'edit'"));
}

#[test]
fn same_salt_gives_byte_identical_output_to_ansible_vault() {
    let s = Scratch::new();
    let plain = "hello: world\n";
    let a = s.write("a.yml", plain);
    let b = s.write("b.yml", plain);
    let salt = "0123456789abcdef0123456789abcdef";
    ok(s.deployer()
        .arg("encrypt")
        .arg(&a)
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .env("ANSIBLE_VAULT_ENCRYPT_SALT", salt));
    ok(s.ansible("ansible-vault")
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg(&b)
        .env("ANSIBLE_VAULT_ENCRYPT_SALT", salt));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let id = format!("mylabel@{}", fixture_pw().display());
    let c = s.write("c.yml", plain);
    let d = s.write("d.yml", plain);
    ok(s.deployer()
        .arg("encrypt")
        .arg(&c)
        .arg("--vault-id")
        .arg(&id)
        .env("ANSIBLE_VAULT_ENCRYPT_SALT", salt));
    ok(s.ansible("ansible-vault")
        .arg("encrypt")
        .arg("--vault-id")
        .arg(&id)
        .arg(&d)
        .env("ANSIBLE_VAULT_ENCRYPT_SALT", salt));
    assert_eq!(std::fs::read(&c).unwrap(), std::fs::read(&d).unwrap());
}

#[test]
fn ansible_vault_files_are_read_by_deployer() {
    let s = Scratch::new();
    let plain = "api_token: fake-api-token-abc\n";
    let f = s.write("v11.yml", plain);
    ok(s.ansible("ansible-vault")
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg(&f));
    assert!(
        std::fs::read_to_string(&f)
            .unwrap()
            .starts_with("$ANSIBLE_VAULT;1.1;AES256\n")
    );
    let out = ok(s
        .deployer()
        .arg("view")
        .arg(&f)
        .arg("--vault-password-file")
        .arg(fixture_pw()));
    assert_eq!(stdout(&out), plain);

    let g = s.write("v12.yml", plain);
    let id = format!("mylabel@{}", fixture_pw().display());
    ok(s.ansible("ansible-vault")
        .arg("encrypt")
        .arg("--vault-id")
        .arg(&id)
        .arg(&g));
    assert!(
        std::fs::read_to_string(&g)
            .unwrap()
            .starts_with("$ANSIBLE_VAULT;1.2;AES256;mylabel\n")
    );
    // Header id first; a wrong `default` password listed before it is skipped.
    let wrong = s.write("wrong.txt", "deployer-test-only-wrong-password\n");
    let out = ok(s
        .deployer()
        .arg("view")
        .arg(&g)
        .arg("--vault-password-file")
        .arg(&wrong)
        .arg("--vault-id")
        .arg(&id));
    assert_eq!(stdout(&out), plain);
    let out = ok(s
        .deployer()
        .arg("decrypt")
        .arg(&g)
        .arg("--output")
        .arg("-")
        .arg("--vault-id")
        .arg(&id));
    assert_eq!(stdout(&out), plain);
    // In-place decrypt writes the plaintext with 0600.
    ok(s.deployer()
        .arg("decrypt")
        .arg(&g)
        .arg("--vault-id")
        .arg(&id));
    assert_eq!(std::fs::read_to_string(&g).unwrap(), plain);
    assert_eq!(mode(&g), 0o600);

    // The env fallback.
    let out = ok(s
        .deployer()
        .arg("view")
        .arg(&f)
        .env("DEPLOYER_VAULT_PASSWORD_FILE", fixture_pw()));
    assert_eq!(stdout(&out), plain);
}

#[test]
fn inline_values_both_directions_and_ansible_playbook() {
    let s = Scratch::new();
    let out = ok(s
        .deployer()
        .arg("encrypt-string")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg("--name")
        .arg("db_password")
        .arg("fake-inline-db-password"));
    let inline = stdout(&out);
    assert!(
        inline.starts_with("db_password: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n"),
        "{inline}"
    );
    assert!(inline.ends_with('\n'));
    s.write(
        "vars.yml",
        &format!("plain_var: visible\n{inline}other: after\n"),
    );
    s.write(
        "play.yml",
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars_files:\n    - vars.yml\n  tasks:\n    - debug: var=db_password\n    - debug: var=other\n",
    );
    let out = ok(s
        .ansible("ansible-playbook")
        .arg("-i")
        .arg("localhost,")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg("play.yml"));
    let text = stdout(&out);
    assert!(
        text.contains("\"db_password\": \"fake-inline-db-password\""),
        "{text}"
    );
    assert!(text.contains("\"other\": \"after\""), "{text}");

    // stdin + vault id, read by ansible-playbook with the labelled id.
    let id = format!("dev@{}", fixture_pw().display());
    let mut child = s
        .deployer()
        .arg("encrypt-string")
        .arg("--vault-id")
        .arg(&id)
        .arg("--stdin-name")
        .arg("token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"fake-stdin-token")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let inline = stdout(&out);
    assert!(inline.contains("$ANSIBLE_VAULT;1.2;AES256;dev"), "{inline}");
    s.write("vars.yml", &inline);
    s.write(
        "play.yml",
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars_files:\n    - vars.yml\n  tasks:\n    - debug: var=token\n",
    );
    let out = ok(s
        .ansible("ansible-playbook")
        .arg("-i")
        .arg("localhost,")
        .arg("--vault-id")
        .arg(&id)
        .arg("play.yml"));
    assert!(
        stdout(&out).contains("\"token\": \"fake-stdin-token\""),
        "{}",
        stdout(&out)
    );

    // ansible-vault encrypt_string output, indented, is read by deployer's decrypt.
    let out = ok(s
        .ansible("ansible-vault")
        .arg("encrypt_string")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg("--name")
        .arg("k")
        .arg("fake-from-ansible"));
    let text = stdout(&out);
    let scalar: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let pws = deployer::vault::VaultPasswords::new(&[fixture_pw()], &[], false).unwrap();
    let plain = deployer::vault::decrypt(scalar.as_bytes(), &pws, "vars.yml:1").unwrap();
    assert_eq!(plain, b"fake-from-ansible");
}

#[test]
fn rekey_is_read_by_ansible_vault() {
    let s = Scratch::new();
    let plain = "k: fake-rekey-value\n";
    let f = s.write("r.yml", plain);
    ok(s.deployer()
        .arg("encrypt")
        .arg(&f)
        .arg("--vault-password-file")
        .arg(fixture_pw()));
    let new_pw = s.write("new.txt", "deployer-test-only-new-password\n");
    ok(s.deployer()
        .arg("rekey")
        .arg(&f)
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg("--new-vault-password-file")
        .arg(&new_pw));
    assert!(
        std::fs::read_to_string(&f)
            .unwrap()
            .starts_with("$ANSIBLE_VAULT;1.1;AES256\n")
    );
    assert_eq!(mode(&f), 0o600);
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-password-file")
        .arg(&new_pw)
        .arg(&f));
    assert_eq!(stdout(&out), plain);
    fails(
        s.ansible("ansible-vault")
            .arg("view")
            .arg("--vault-password-file")
            .arg(fixture_pw())
            .arg(&f),
    );

    // To a new vault id.
    let new_id = format!("newid@{}", fixture_pw().display());
    ok(s.deployer()
        .arg("rekey")
        .arg(&f)
        .arg("--vault-password-file")
        .arg(&new_pw)
        .arg("--new-vault-id")
        .arg(&new_id));
    assert!(
        std::fs::read_to_string(&f)
            .unwrap()
            .starts_with("$ANSIBLE_VAULT;1.2;AES256;newid\n")
    );
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-id")
        .arg(&new_id)
        .arg(&f));
    assert_eq!(stdout(&out), plain);

    // Wrong old password: error names the file, nothing is written.
    let before = std::fs::read(&f).unwrap();
    let out = fails(
        s.deployer()
            .arg("rekey")
            .arg(&f)
            .arg("--vault-password-file")
            .arg(&new_pw)
            .arg("--new-vault-password-file")
            .arg(&new_pw),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("r.yml") && err.contains("decryption failed"),
        "{err}"
    );
    assert!(!err.contains("deployer-test-only"), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), before);
}

#[test]
fn edit_changes_are_read_by_ansible_and_unchanged_edit_keeps_bytes() {
    let s = Scratch::new();
    let plain = "a: fake-one\n";
    let f = s.write("e.yml", plain);
    let id = format!("mylabel@{}", fixture_pw().display());
    ok(s.ansible("ansible-vault")
        .arg("encrypt")
        .arg("--vault-id")
        .arg(&id)
        .arg(&f));
    let log = s.path("editor-saw.txt");
    let editor = s.script(
        "edit.sh",
        &format!(
            "ls -l \"$1\" | cut -c1-10 > '{log}'\necho \"$1\" >> '{log}'\nprintf 'b: fake-two\\n' >> \"$1\"",
            log = log.display()
        ),
    );
    ok(s.deployer()
        .arg("edit")
        .arg(&f)
        .arg("--vault-id")
        .arg(&id)
        .env("EDITOR", &editor));
    let data = std::fs::read_to_string(&f).unwrap();
    assert!(
        data.starts_with("$ANSIBLE_VAULT;1.2;AES256;mylabel\n"),
        "vault id kept: {data}"
    );
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-id")
        .arg(&id)
        .arg(&f));
    assert_eq!(stdout(&out), "a: fake-one\nb: fake-two\n");
    // The temp file was private and is gone.
    let saw = std::fs::read_to_string(&log).unwrap();
    let mut lines = saw.lines();
    assert_eq!(lines.next(), Some("-rw-------"), "{saw}");
    let temp = lines.next().unwrap();
    assert!(!Path::new(temp).exists(), "temp file {temp} left behind");

    // An editor that changes nothing: bytes unchanged.
    let before = std::fs::read(&f).unwrap();
    ok(s.deployer()
        .arg("edit")
        .arg(&f)
        .arg("--vault-id")
        .arg(&id)
        .env("EDITOR", "true"));
    assert_eq!(std::fs::read(&f).unwrap(), before);
    // A failing editor: error, bytes unchanged.
    let bad = s.script("bad.sh", "printf 'zzz' >> \"$1\"; exit 3");
    fails(
        s.deployer()
            .arg("edit")
            .arg(&f)
            .arg("--vault-id")
            .arg(&id)
            .env("EDITOR", &bad),
    );
    assert_eq!(std::fs::read(&f).unwrap(), before);
}

#[test]
fn executable_password_file() {
    let s = Scratch::new();
    let plain = "k: fake-script-value\n";
    let f = s.write("x.yml", plain);
    ok(s.ansible("ansible-vault")
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(fixture_pw())
        .arg(&f));
    let script = s.script("pw.sh", &format!("echo {FIXTURE_PASSWORD}"));
    let out = ok(s
        .deployer()
        .arg("view")
        .arg(&f)
        .arg("--vault-password-file")
        .arg(&script));
    assert_eq!(stdout(&out), plain);
    let id = format!("lbl@{}", script.display());
    let out = ok(s.deployer().arg("view").arg(&f).arg("--vault-id").arg(&id));
    assert_eq!(stdout(&out), plain);
    // ...and the same script works for ansible-vault reading deployer's output.
    let g = s.write("y.yml", plain);
    ok(s.deployer()
        .arg("encrypt")
        .arg(&g)
        .arg("--vault-password-file")
        .arg(&script));
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-password-file")
        .arg(&script)
        .arg(&g));
    assert_eq!(stdout(&out), plain);

    let failing = s.script("fail.sh", "exit 1");
    let out = fails(
        s.deployer()
            .arg("view")
            .arg(&f)
            .arg("--vault-password-file")
            .arg(&failing),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.yml") && err.contains("fail.sh"), "{err}");
}

#[test]
fn set_keys_keeps_order_and_is_read_by_ansible_vault() {
    let s = Scratch::new();
    let plain = "# generated tokens (fake)\nzeta: first-fake\nagent_token: old-fake-token\nalpha:\n  nested: fake\n";
    let f = s.write("tokens.yml", plain);
    let id = format!("ops@{}", fixture_pw().display());
    ok(s.ansible("ansible-vault")
        .arg("encrypt")
        .arg("--vault-id")
        .arg(&id)
        .arg(&f));
    let pws = deployer::vault::VaultPasswords::new(&[], std::slice::from_ref(&id), false).unwrap();
    deployer::vault::set_keys(
        &f,
        &pws,
        &[
            ("agent_token", "new-fake-token: \"x\" #y"),
            ("new_key", "fake-new"),
        ],
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&f)
            .unwrap()
            .starts_with("$ANSIBLE_VAULT;1.2;AES256;ops\n")
    );
    assert_eq!(mode(&f), 0o600);
    let out = ok(s
        .ansible("ansible-vault")
        .arg("view")
        .arg("--vault-id")
        .arg(&id)
        .arg(&f));
    assert_eq!(
        stdout(&out),
        "# generated tokens (fake)\nzeta: first-fake\nagent_token: \"new-fake-token: \\\"x\\\" #y\"\nalpha:\n  nested: fake\nnew_key: \"fake-new\"\n"
    );
    // ansible parses the quoted value back to the exact string.
    s.write(
        "play.yml",
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars_files:\n    - tokens.yml\n  tasks:\n    - debug: var=agent_token\n",
    );
    let out = ok(s
        .ansible("ansible-playbook")
        .arg("-i")
        .arg("localhost,")
        .arg("--vault-id")
        .arg(&id)
        .arg("play.yml"));
    assert!(
        stdout(&out).contains(r#""agent_token": "new-fake-token: \"x\" #y""#),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_input_errors_name_the_file_and_write_nothing() {
    let s = Scratch::new();
    let f = s.write("c.yml", "k: fake\n");
    ok(s.deployer()
        .arg("encrypt")
        .arg(&f)
        .arg("--vault-password-file")
        .arg(fixture_pw()));
    let good = std::fs::read_to_string(&f).unwrap();
    let wrong = s.write("wrong.txt", "deployer-test-only-wrong-password");
    let cases = [
        ("wrongpw.yml", good.clone(), "decryption failed"),
        ("trunc.yml", good[..good.len() / 2].to_string(), "truncated"),
        (
            "hex.yml",
            // The first body character (always hex) made into a non-hex one.
            format!(
                "$ANSIBLE_VAULT;1.1;AES256\nz{}",
                &good["$ANSIBLE_VAULT;1.1;AES256\n".len() + 1..]
            ),
            "invalid hex",
        ),
        ("ver.yml", good.replacen("1.1", "1.3", 1), "version `1.3`"),
        (
            "cipher.yml",
            good.replacen("AES256", "DES", 1),
            "cipher `DES`",
        ),
        (
            "empty.yml",
            "$ANSIBLE_VAULT;1.1;AES256\n".to_string(),
            "no encrypted body",
        ),
    ];
    for (name, content, expect) in cases {
        let p = s.write(name, &content);
        let pwfile = if name == "wrongpw.yml" {
            &wrong
        } else {
            &fixture_pw()
        };
        let out = fails(
            s.deployer()
                .arg("decrypt")
                .arg(&p)
                .arg("--vault-password-file")
                .arg(pwfile),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name) && err.contains(expect), "{name}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("deployer-test-only"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            content,
            "{name} modified"
        );
    }
    // Several files, one bad: none is written.
    let g = s.write("g.yml", &good);
    let bad = s.write("bad.yml", "$ANSIBLE_VAULT;1.1;AES256\nzz\n");
    fails(
        s.deployer()
            .arg("decrypt")
            .arg(&g)
            .arg(&bad)
            .arg("--vault-password-file")
            .arg(fixture_pw()),
    );
    assert_eq!(std::fs::read_to_string(&g).unwrap(), good);
    // No password at all (stdin is not a terminal).
    let out = fails(s.deployer().arg("view").arg(&g));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    // Encrypting twice is refused.
    let out = fails(
        s.deployer()
            .arg("encrypt")
            .arg(&g)
            .arg("--vault-password-file")
            .arg(fixture_pw()),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already vault-encrypted"));
    assert_eq!(std::fs::read_to_string(&g).unwrap(), good);
}
