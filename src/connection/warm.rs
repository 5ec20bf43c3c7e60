//! Warm connections across runs: after a run, the SSH master to each host
//! stays up for [`IDLE_SECS`] (OpenSSH's `ControlPersist`, as Ansible does with
//! `ControlPersist=60s`), and the next run to the same host with the same
//! options uses it instead of a new TCP connection and authentication.
//! `--fresh-connection` (or `DEPLOYER_FRESH_CONNECTION=1`) turns it off.
//!
//! Masters live in a private per-user directory: `$DEPLOYER_SSH_CONTROL_DIR`,
//! else `$XDG_RUNTIME_DIR/deployer-ssh`, else `~/.cache/deployer/ssh`. That
//! directory, the per-target directory inside it, each master's directory and
//! its socket must be owned by this user and (directories) have no group or
//! other permission bits, or they are not used: deployer only reuses a master
//! it created itself, in a place nobody else can put one. A per-target
//! directory is named by a hash of everything that makes the connection: the
//! address, port, user, key file, known-hosts file and ssh config (paths and
//! contents), host key checking, and deployer's own ssh config.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::SshTarget;

/// How long a master stays up after its last use.
pub const IDLE_SECS: usize = 60;

/// How long a reused master has to start a shell before it is given up for a
/// new connection (its TCP connection may have died with the host).
pub const PROBE: Duration = Duration::from_secs(5);

/// A master directory younger than this is never removed: another run may
/// be authenticating into it right now.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// The private directory for this target's masters, made when missing.
/// An error says why warm connections cannot be used (the run then opens a
/// fresh connection).
pub fn target_dir(target: &SshTarget, wrapper_config: &str) -> Result<PathBuf, String> {
    let root = root_dir()?;
    ensure_private(&root)?;
    let dir = root.join(key(target, wrapper_config));
    ensure_private(&dir)?;
    // `<dir>/.ssh-connectionXXXXXX/master` must fit in a Unix socket address.
    if dir.as_os_str().len() + 30 > 100 {
        return Err(format!(
            "{} is too long a path for an ssh control socket",
            dir.display()
        ));
    }
    Ok(dir)
}

fn root_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("DEPLOYER_SSH_CONTROL_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        if is_private_dir(&d) {
            return Ok(d.join("deployer-ssh"));
        }
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(Path::new(&h).join(".cache/deployer/ssh")),
        None => Err("neither XDG_RUNTIME_DIR nor HOME is set".into()),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn is_private_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .is_ok_and(|m| m.file_type().is_dir() && m.uid() == euid() && m.mode() & 0o077 == 0)
}

/// Makes `p` (mode 0700) when missing, then requires a directory, not a
/// link, owned by this user with no group or other bits.
pub fn ensure_private(p: &Path) -> Result<(), String> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot make {}: {e}", p.display())),
    }
    let m = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if !m.file_type().is_dir() {
        return Err(format!("{} is not a directory", p.display()));
    }
    if m.uid() != euid() {
        return Err(format!(
            "{} belongs to uid {}, not to this user: not used for ssh masters",
            p.display(),
            m.uid()
        ));
    }
    if m.mode() & 0o077 != 0 {
        return Err(format!(
            "{} has mode {:04o}; ssh masters are kept only in a private (0700) directory",
            p.display(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The per-target directory's name: what makes two connections the same.
pub fn key(target: &SshTarget, wrapper_config: &str) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("host", target.host.as_bytes());
    field("port", format!("{:?}", target.port).as_bytes());
    field("user", format!("{:?}", target.user).as_bytes());
    field(
        "checking",
        format!("{:?}", target.strict_host_key_checking).as_bytes(),
    );
    field("wrapper", wrapper_config.as_bytes());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let files = [
        ("key", target.key_file.clone()),
        (
            "known_hosts",
            target
                .known_hosts_file
                .clone()
                .or_else(|| home.as_ref().map(|h| h.join(".ssh/known_hosts"))),
        ),
        (
            "config",
            target
                .config_file
                .clone()
                .or_else(|| home.as_ref().map(|h| h.join(".ssh/config"))),
        ),
    ];
    for (name, path) in files {
        match path {
            Some(p) => {
                field(name, p.as_os_str().as_encoded_bytes());
                field(name, &std::fs::read(&p).unwrap_or_default());
            }
            None => field(name, b""),
        }
    }
    let d = h.finalize();
    d.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// The masters found in a target's directory that are this user's: control
/// socket and log, newest first. Directories of masters that are gone (no
/// socket, left for longer than a run takes to authenticate) are removed.
pub fn candidates(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(".ssh-connection") {
            continue;
        }
        let d = e.path();
        let Ok(m) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if !m.file_type().is_dir() || m.uid() != euid() || m.mode() & 0o077 != 0 {
            continue;
        }
        let ctl = d.join("master");
        let socket_ok = std::fs::symlink_metadata(&ctl)
            .is_ok_and(|s| s.file_type().is_socket() && s.uid() == euid());
        if socket_ok {
            found.push((m.mtime(), ctl, d.join("log")));
        } else if m
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER)
        {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, c, l)| (c, l)).collect()
}

/// A master that did not answer: its directory goes (its socket is dead or
/// the master was told to exit).
pub fn discard(ctl: &Path) {
    if let Some(d) = ctl.parent()
        && d.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".ssh-connection"))
    {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_private_directories_of_this_user_are_used() {
        let base = tempfile::tempdir().expect("tempdir");
        let d = base.path().join("ctl");
        ensure_private(&d).expect("made");
        assert_eq!(
            std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let e = ensure_private(&d).expect_err("group/other bits");
        assert!(e.contains("0755"), "{e}");
        // A link to a private directory is not that directory.
        let real = base.path().join("real");
        ensure_private(&real).expect("made");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        assert!(ensure_private(&link).is_err());
        // A directory with no live socket, recent: kept; nothing offered.
        let m = real.join(".ssh-connectionABCDEF");
        ensure_private(&m).expect("made");
        assert!(candidates(&real).is_empty());
        assert!(m.exists());
        // A socket in a directory that is not private is not offered.
        let s = real.join(".ssh-connectionOPEN12");
        ensure_private(&s).expect("made");
        let _l = std::os::unix::net::UnixListener::bind(s.join("master")).expect("bind");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        assert!(candidates(&real).is_empty());
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(candidates(&real).len(), 1);
    }

    #[test]
    fn the_key_changes_with_every_connection_option() {
        let t = SshTarget {
            host: "10.0.0.1".into(),
            port: Some(22),
            user: Some("deploy".into()),
            key_file: None,
            known_hosts_file: None,
            config_file: None,
            strict_host_key_checking: openssh::KnownHosts::Strict,
        };
        let k = key(&t, "cfg");
        assert_eq!(k, key(&t, "cfg"));
        assert_ne!(k, key(&t, "other"));
        let mut u = t.clone();
        u.port = Some(2222);
        assert_ne!(k, key(&u, "cfg"));
        let mut u = t.clone();
        u.user = Some("root".into());
        assert_ne!(k, key(&u, "cfg"));
        let mut u = t.clone();
        u.strict_host_key_checking = openssh::KnownHosts::Add;
        assert_ne!(k, key(&u, "cfg"));
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("kh");
        std::fs::write(&kh, "a").expect("write");
        let mut u = t.clone();
        u.known_hosts_file = Some(kh.clone());
        let k1 = key(&u, "cfg");
        std::fs::write(&kh, "b").expect("write");
        assert_ne!(
            k1,
            key(&u, "cfg"),
            "known-hosts contents are part of the key"
        );
    }
}
