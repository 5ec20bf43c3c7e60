//! The host-key rule: deployer always verifies a target's host key against a
//! known-hosts file that persists, and nothing in the inventory or an ssh
//! config file can turn that off.
//!
//! - `StrictHostKeyChecking` is `yes` (default) or `accept-new` (trust on
//!   first use, recorded in a persistent file); `no`/`off` are refused.
//! - `UserKnownHostsFile`/`GlobalKnownHostsFile` naming `none`, anything under
//!   `/dev`, `/proc` or `/sys`, or a path that is not an existing regular file
//!   (a missing file, a link to `/dev/null`) are refused, on the command line
//!   and in `-F` files: with them, `accept-new` accepts any key on every run.
//!   A file under `/tmp` that exists is accepted (a checkout there keeps its
//!   testbed's known-hosts file); paths with ssh's `%` tokens are checked for
//!   the prefixes only.
//! - `KnownHostsCommand` is always `none` (deployer's own config file says so
//!   before it includes the user's), and a `-F` file that sets it is refused:
//!   such a command can vouch for any key.

use std::path::{Path, PathBuf};

/// Refuses a known-hosts file that does not keep what it learns.
pub fn check_known_hosts_file(option: &str, value: &str) -> Result<(), String> {
    for f in value.split_whitespace() {
        let lower = f.to_ascii_lowercase();
        let temporary = ["/dev/", "/proc/", "/sys/"]
            .iter()
            .any(|p| f.starts_with(p));
        if lower == "none" || temporary {
            return Err(format!(
                "{option}={f} is refused: deployer checks host keys against a known-hosts file that persists (with '{f}' any key would be accepted on every run)"
            ));
        }
        if f.contains('%') {
            continue;
        }
        let path = match (f.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => Path::new(&home).join(rest),
            _ => PathBuf::from(f),
        };
        // Follows links on purpose: a link to /dev/null is not a file that keeps keys.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(format!(
                "{option}={f} is refused: deployer checks host keys against a known-hosts file that persists (with '{f}' any key would be accepted on every run)"
            ));
        }
    }
    Ok(())
}

/// Refuses an ssh config file (and the files it includes by plain path) that
/// changes how host keys are checked.
pub fn check_config_file(path: &Path) -> Result<(), String> {
    check_config_depth(path, 0)
}

fn check_config_depth(path: &Path, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Err(format!("{}: Include nested too deeply", path.display()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the ssh config file {}: {e}", path.display()))?;
    for (n, key, value) in config_lines(&text) {
        let value = value.trim_matches('"');
        let at = || format!("{}:{}", path.display(), n + 1);
        match key.to_ascii_lowercase().as_str() {
            "knownhostscommand" if !value.eq_ignore_ascii_case("none") => {
                return Err(format!(
                    "{}: KnownHostsCommand is refused: deployer checks host keys against known-hosts files only",
                    at()
                ));
            }
            "userknownhostsfile" | "globalknownhostsfile" => {
                check_known_hosts_file(key, value).map_err(|e| format!("{}: {e}", at()))?
            }
            "stricthostkeychecking"
                if matches!(value.to_ascii_lowercase().as_str(), "no" | "off" | "false") =>
            {
                return Err(format!(
                    "{}: StrictHostKeyChecking {value} is refused: deployer verifies host keys",
                    at()
                ));
            }
            "include" => {
                for inc in value.split_whitespace() {
                    // Patterns other than a `*` in the last part are not followed.
                    for p in include_files(path, inc).unwrap_or_default() {
                        if p.exists() {
                            check_config_depth(&p, depth + 1)?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The option lines of an ssh config file: line number (from 0), keyword
/// and value (trimmed, quotes kept), past blank lines and comments.
pub(super) fn config_lines(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines().enumerate().filter_map(|(n, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        Some(match line.find(|c: char| c.is_whitespace() || c == '=') {
            Some(i) => (
                n,
                &line[..i],
                line[i..]
                    .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
                    .trim(),
            ),
            None => (n, line, ""),
        })
    })
}

/// Where ssh looks for an `Include`d file: `~` is the home directory, a
/// relative path is under `/etc/ssh` for the system files and `~/.ssh` for
/// user files.
fn include_path(from: &Path, inc: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let (Some(rest), Some(h)) = (inc.strip_prefix("~/"), &home) {
        return h.join(rest);
    }
    let p = Path::new(inc);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    if from.starts_with("/etc") {
        return Path::new("/etc/ssh").join(p);
    }
    match home {
        Some(h) => h.join(".ssh").join(p),
        None => from.parent().unwrap_or(Path::new("/")).join(p),
    }
}

/// The files one word of an `Include` names, in ssh's order: a plain path
/// (whether or not it exists), or the files matching a `*` in its last part
/// (`/etc/ssh/ssh_config.d/*.conf`). `None` for any other pattern.
pub(super) fn include_files(from: &Path, inc: &str) -> Option<Vec<PathBuf>> {
    let p = include_path(from, inc);
    let s = p.to_str()?;
    if !s.contains(['*', '?', '[']) {
        return Some(vec![p]);
    }
    let dir = p.parent()?;
    let name = p.file_name()?.to_str()?;
    if dir.to_str()?.contains(['*', '?', '[']) || name.contains(['?', '[']) {
        return None;
    }
    let (pre, post) = name.split_once('*')?;
    if post.contains('*') {
        return None;
    }
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
            })
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(_) => return None,
    };
    found.sort();
    Some(found)
}

/// The text of deployer's own ssh config: `KnownHostsCommand none` first (in
/// ssh the first value wins), then the configuration ssh would have read,
/// then, where that configuration leaves connecting to `ssh`, deployer's own
/// connect (see [`super::dial`]).
pub fn wrapper_config(user_config: Option<&Path>, host: &str) -> String {
    let mut s = String::from(
        "# Written by deployer: host keys come from known-hosts files only.\nKnownHostsCommand none\n",
    );
    match user_config {
        Some(p) => s.push_str(&format!("Include \"{}\"\n", p.display())),
        None => {
            if let Some(h) = std::env::var_os("HOME") {
                s.push_str(&format!(
                    "Include \"{}\"\n",
                    Path::new(&h).join(".ssh/config").display()
                ));
            }
            s.push_str("Include /etc/ssh/ssh_config\n");
        }
    }
    if let Some(block) = super::dial::config_block(user_config, host) {
        s.push_str(&block);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_persistent_known_hosts_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = dir.path().join("known_hosts");
        std::fs::write(&kept, "").expect("write");
        let null_link = dir.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &null_link).expect("symlink");
        let missing = dir.path().join("missing");
        for bad in [
            "/dev/null",
            "none",
            "/proc/self/fd/0",
            "/tmp/deployer-no-such-known-hosts",
            null_link.to_str().expect("utf-8"),
            missing.to_str().expect("utf-8"),
        ] {
            assert!(
                check_known_hosts_file("UserKnownHostsFile", bad).is_err(),
                "{bad}"
            );
        }
        assert!(
            check_known_hosts_file("UserKnownHostsFile", kept.to_str().expect("utf-8")).is_ok()
        );
    }

    #[test]
    fn config_files_that_change_host_key_checking_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                "Host x\n  KnownHostsCommand /bin/echo %H ssh-ed25519 AAAA\n",
                true,
            ),
            ("Host x\n  UserKnownHostsFile /dev/null\n", true),
            (
                "Host *\n  UserKnownHostsFile=/tmp/deployer-no-such-known-hosts\n",
                true,
            ),
            ("Host x\n  StrictHostKeyChecking no\n", true),
            (
                "Host x\n  KnownHostsCommand none\n  HostName 127.0.0.1\n",
                false,
            ),
            (
                "Host x\n  UserKnownHostsFile KEPT\n  StrictHostKeyChecking yes\n",
                false,
            ),
        ];
        let kept = dir.path().join("known_hosts");
        std::fs::write(&kept, "").expect("write");
        let kept = kept.to_str().expect("utf-8");
        for (i, (text, refused)) in cases.iter().enumerate() {
            let text = &text.replace("KEPT", kept);
            let p = dir.path().join(format!("c{i}"));
            std::fs::write(&p, text).expect("write");
            assert_eq!(check_config_file(&p).is_err(), *refused, "{text}");
        }
        let inner = dir.path().join("c0");
        let outer = dir.path().join("outer");
        std::fs::write(&outer, format!("Include {}\n", inner.display())).expect("write");
        let e = check_config_file(&outer).expect_err("included file refused");
        assert!(e.contains("c0:2"), "{e}");
    }

    /// A file included through a `*` pattern is checked too: a
    /// `UserKnownHostsFile /dev/null` there is refused like anywhere else.
    #[test]
    fn files_included_by_a_pattern_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("conf.d");
        std::fs::create_dir(&d).expect("dir");
        std::fs::write(d.join("a.conf"), "Host x\n  Port 2222\n").expect("write");
        std::fs::write(d.join("b.conf"), "Host x\n  UserKnownHostsFile /dev/null\n")
            .expect("write");
        std::fs::write(d.join("b.txt"), "Host x\n  StrictHostKeyChecking no\n").expect("write");
        let outer = dir.path().join("outer");
        std::fs::write(&outer, format!("Include {}/*.conf\n", d.display())).expect("write");
        let e = check_config_file(&outer).expect_err("b.conf refused");
        assert!(e.contains("b.conf:2"), "{e}");
        std::fs::remove_file(d.join("b.conf")).expect("rm");
        // b.txt does not match the pattern: not read.
        assert_eq!(check_config_file(&outer), Ok(()));
    }
}
