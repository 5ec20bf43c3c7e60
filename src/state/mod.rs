//! Per-host deployment state kept on each managed host.
//!
//! Layout, under [`state_root`] on the host (owned by root, mode 0700 when the
//! host's `become` is set; otherwise the SSH user's own directory is used, see
//! [`state_root`]):
//!
//! ```text
//! /var/lib/deployer/<project>/
//!   lock                   deploy lock (JSON: who, when, revision, message, pid)
//!   audit.log              append-only JSON lines: time, performer, revision, command, changes
//!   pending-handlers.json  handler notifications not yet fired (survive a failed run)
//!   releases/<id>/         one release: release.json + saved files (see releases.rs)
//! ```
//!
//! `<project>` is [`project_id`]: the first line of the project root's
//! `.deployer-project` file when there is one (so every checkout of the project,
//! whatever its directory is called, shares one lock and one release history),
//! else the project root directory's name; reduced to `[A-Za-z0-9._-]`.

use std::path::{Path, PathBuf};

pub mod audit;
pub mod lock;
pub mod pending;
pub mod releases;

/// The file in the project root that names the project on the hosts.
pub const PROJECT_FILE: &str = ".deployer-project";

/// Root of the state directory used when the host runs tasks as root.
pub const SYSTEM_STATE_ROOT: &str = "/var/lib/deployer";

/// Root used when the host has no `become` (relative to the SSH user's home).
pub const USER_STATE_ROOT: &str = ".local/state/deployer";

/// The project's identifier on hosts: the first non-empty line of the project
/// root's [`PROJECT_FILE`], else the project root's directory name; every
/// character outside `[A-Za-z0-9._-]` replaced by `_`.
pub fn project_id(project_root: &Path) -> String {
    let named = std::fs::read_to_string(project_root.join(PROJECT_FILE))
        .ok()
        .and_then(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        });
    let name = named.unwrap_or_else(|| {
        project_root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "project".to_string())
    });
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.chars().all(|c| c == '.') {
        "project".to_string()
    } else {
        id
    }
}

/// The project root on the control machine: the current directory (deployer
/// runs from the project's root, as every command expects). Its name is the
/// project's [`project_id`] on the hosts, and it holds the local run log
/// (`.deployer/`).
pub fn project_root(cwd: &Path) -> PathBuf {
    cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf())
}

/// The state directory for `project` on a host: `/var/lib/deployer/<project>`
/// with become, `~/.local/state/deployer/<project>` without.
pub fn state_root(project: &str, become_root: bool) -> String {
    if become_root {
        format!("{SYSTEM_STATE_ROOT}/{project}")
    } else {
        format!("$HOME/{USER_STATE_ROOT}/{project}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_id_is_a_safe_directory_name() {
        let dir = std::env::temp_dir().join("deployer state: test!");
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert_eq!(project_id(&dir), "deployer_state__test_");
        // .deployer-project names it, whatever the checkout's directory is called.
        std::fs::write(dir.join(PROJECT_FILE), "\n  plane on sese \n").expect("write");
        assert_eq!(project_id(&dir), "plane_on_sese");
        std::fs::remove_file(dir.join(PROJECT_FILE)).expect("rm");
        assert_eq!(state_root("p", true), "/var/lib/deployer/p");
        assert_eq!(state_root("p", false), "$HOME/.local/state/deployer/p");
    }
}
