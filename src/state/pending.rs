//! Handler notifications that survive a failed run (unlike Ansible's: ansible/ansible#1350).
//!
//! Ansible forgets that a task notified a handler when a later task fails, so
//! the re-run (where nothing changes any more) never restarts the service.
//! deployer writes the notifications still pending when a host stops (failed,
//! interrupted) to `pending-handlers.json` in the host's state directory; the
//! next apply loads them and fires those handlers at the normal handler point
//! of the play that has them, then removes the file.

use serde::{Deserialize, Serialize};

use crate::connection::shell_quote;
use crate::state::lock::MARK;

pub const FILE: &str = "pending-handlers.json";

/// One notification not yet acted on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingHandler {
    /// What was notified: a handler's name or a `listen` topic.
    pub notification: String,
    /// The play whose handlers it belongs to.
    pub play: String,
    /// The run whose task notified it.
    pub run_id: String,
    /// When that run started.
    pub since: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingFile {
    pub pending: Vec<PendingHandler>,
}

/// Prints the pending file (if any) in a `pending` section.
pub fn read_sh() -> String {
    // `cat` only when there is a file (usually there is none).
    format!("echo '{MARK}pending'; [ ! -e \"$D/{FILE}\" ] || cat \"$D/{FILE}\" 2>/dev/null; echo\n")
}

/// Replaces the pending file atomically with `list`, or removes it when empty.
pub fn write_sh(list: &[PendingHandler]) -> String {
    if list.is_empty() {
        return format!(
            "if [ -e \"$D/{FILE}\" ] || [ -L \"$D/{FILE}\" ]; then rm -f \"$D/{FILE}\"; fi\n"
        );
    }
    let json = serde_json::to_string(&PendingFile {
        pending: list.to_vec(),
    })
    .unwrap_or_default();
    format!(
        "printf '%s\\n' {} > \"$D/.pending.$$\" && mv -f \"$D/.pending.$$\" \"$D/{FILE}\" || echo '{MARK}error cannot write {FILE}'\n",
        shell_quote(&crate::secrets::mask(&json))
    )
}

/// The pending notifications from a script's `pending` section. A file that
/// is not ours to read is an error naming it, not an empty list.
pub fn parse(
    sections: &[(String, Vec<String>)],
    state_dir: &str,
) -> Result<Vec<PendingHandler>, String> {
    let Some((_, body)) = sections.iter().find(|(m, _)| m == "pending") else {
        return Ok(Vec::new());
    };
    let text = body.join("\n");
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str::<PendingFile>(text.trim())
        .map(|f| f.pending)
        .map_err(|e| {
            format!("{state_dir}/{FILE} is not a pending-handlers file ({e}): fix or remove it")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::lock::sections;

    #[test]
    fn pending_notifications_round_trip_through_the_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let run = |body: String| {
            let o = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("D={}\n{body}", shell_quote(&d)))
                .output()
                .expect("sh");
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        assert_eq!(parse(&sections(&run(read_sh())), &d), Ok(Vec::new()));
        let list = vec![PendingHandler {
            notification: "restart app's worker".into(),
            play: "Site".into(),
            run_id: "r1".into(),
            since: "2026-11-22T06:15:00Z".into(),
        }];
        run(write_sh(&list));
        assert_eq!(parse(&sections(&run(read_sh())), &d), Ok(list));
        run(write_sh(&[]));
        assert!(!dir.path().join(FILE).exists());
        std::fs::write(dir.path().join(FILE), "{oops").expect("write");
        let e = parse(&sections(&run(read_sh())), &d).expect_err("corrupt");
        assert!(e.contains(FILE) && e.contains(&d), "{e}");
    }
}
