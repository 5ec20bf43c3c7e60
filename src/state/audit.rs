//! The audit trail: an append-only JSON-lines `audit.log` in each
//! host's state directory (one line per apply that held the host's lock:
//! time, performer, revision, masked command line, changed tasks, result),
//! and a JSON-lines run log on the control machine, `.deployer/runs.jsonl`
//! in the project root (one line per apply, all hosts). `deployer audit` tails both.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::connection::shell_quote;
use crate::secrets::MASK;
use crate::state::lock::{LockHolder, MARK};

pub const HOST_FILE: &str = "audit.log";
pub const LOCAL_DIR: &str = ".deployer";
pub const LOCAL_FILE: &str = "runs.jsonl";

/// A task that changed something, and how many times (loop items, handlers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskCount {
    pub task: String,
    pub count: usize,
}

/// One host's line in its `audit.log` (and in the local run record).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostAudit {
    /// When the run finished on the host, RFC 3339 UTC.
    pub time: String,
    pub run_id: String,
    pub host: String,
    /// `user@machine` on the control side.
    pub performer: String,
    pub revision: Option<String>,
    #[serde(default)]
    pub dirty: bool,
    /// The command line, secret values masked.
    pub command: String,
    #[serde(default)]
    pub message: Option<String>,
    /// `ok`, `failed` or `interrupted`.
    pub result: String,
    /// Tasks that reported a change (counted once per task, as in the recap).
    pub changed: usize,
    #[serde(default)]
    pub changed_tasks: Vec<TaskCount>,
    #[serde(default)]
    pub failed_tasks: Vec<String>,
    /// Handlers still to fire at the next apply (see `pending-handlers.json`).
    #[serde(default)]
    pub pending_handlers: Vec<String>,
}

impl HostAudit {
    pub fn new(holder: &LockHolder, host: &str) -> HostAudit {
        HostAudit {
            time: crate::state::lock::rfc3339(std::time::SystemTime::now()),
            run_id: holder.run_id.clone(),
            host: host.to_string(),
            performer: holder.who.clone(),
            revision: holder.revision.clone(),
            dirty: holder.dirty,
            command: holder.command.clone(),
            message: holder.message.clone(),
            result: "ok".into(),
            changed: 0,
            changed_tasks: Vec::new(),
            failed_tasks: Vec::new(),
            pending_handlers: Vec::new(),
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} {} by {} {} changed={}",
            self.time, self.host, self.run_id, self.performer, self.result, self.changed
        );
        if let Some(r) = &self.revision {
            s.push_str(&format!(
                " rev={}{}",
                &r[..r.len().min(12)],
                if self.dirty { "+dirty" } else { "" }
            ));
        }
        s.push_str(&format!(" `{}`", self.command));
        if let Some(m) = &self.message {
            s.push_str(&format!(" \"{m}\""));
        }
        for t in &self.changed_tasks {
            s.push_str(&format!("\n    changed: {} (x{})", t.task, t.count));
        }
        for t in &self.failed_tasks {
            s.push_str(&format!("\n    failed: {t}"));
        }
        for h in &self.pending_handlers {
            s.push_str(&format!("\n    pending handler: {h}"));
        }
        s
    }
}

/// Appends `entry` to the host's `audit.log` (one JSON line, masked).
pub fn append_sh(entry: &HostAudit) -> String {
    let json = crate::secrets::mask(&serde_json::to_string(entry).unwrap_or_default());
    format!(
        "printf '%s\\n' {} >> \"$D/{HOST_FILE}\" || echo '{MARK}error cannot append to {HOST_FILE}'\n",
        shell_quote(&json)
    )
}

/// Prints the last `n` lines of the host's audit log in an `audit` section.
pub fn tail_sh(n: usize) -> String {
    format!("echo '{MARK}audit'; tail -n {n} \"$D/{HOST_FILE}\" 2>/dev/null || true\n")
}

/// The entries of an `audit` section; lines that are not entries are kept as text.
pub fn parse_tail(sections: &[(String, Vec<String>)]) -> Vec<Result<HostAudit, String>> {
    sections
        .iter()
        .filter(|(m, _)| m == "audit")
        .flat_map(|(_, body)| body.iter())
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|_| l.clone()))
        .collect()
}

/// One apply, as recorded on the control machine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub started: String,
    pub finished: String,
    pub performer: String,
    pub revision: Option<String>,
    #[serde(default)]
    pub dirty: bool,
    pub command: String,
    #[serde(default)]
    pub message: Option<String>,
    /// `ok`, `failed`, `interrupted` or `locked` (refused: a host was locked).
    pub result: String,
    #[serde(default)]
    pub hosts: Vec<HostAudit>,
    /// Locks held by others, unreachable hosts, locks that could not be released.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl RunRecord {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} by {} {} `{}`",
            self.started, self.run_id, self.performer, self.result, self.command
        );
        if let Some(r) = &self.revision {
            s.push_str(&format!(
                " rev={}{}",
                &r[..r.len().min(12)],
                if self.dirty { "+dirty" } else { "" }
            ));
        }
        if let Some(m) = &self.message {
            s.push_str(&format!(" \"{m}\""));
        }
        for h in &self.hosts {
            s.push_str(&format!(
                "\n    {}: {} changed={}",
                h.host, h.result, h.changed
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\n    note: {n}"));
        }
        s
    }
}

pub fn local_log(project_root: &Path) -> PathBuf {
    project_root.join(LOCAL_DIR).join(LOCAL_FILE)
}

/// Appends one run to `.deployer/runs.jsonl` (masked).
pub fn append_local(project_root: &Path, rec: &RunRecord) -> Result<(), String> {
    let path = local_log(project_root);
    let dir = project_root.join(LOCAL_DIR);
    private_dir(&dir)?;
    let line = crate::secrets::mask(&serde_json::to_string(rec).map_err(|e| e.to_string())?);
    let mut f = private_append(&path)?;
    writeln!(f, "{line}").map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes `dir` (and missing parents) as a private directory: created 0700
/// (never a moment with a wider mode), an existing one narrowed to 0700.
/// A link at `dir` is refused.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{}: is a symbolic link; deployer keeps its state in a real directory",
                dir.display()
            ));
        }
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(err)?;
            }
            return Ok(());
        }
        _ => {}
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)
}

/// Opens `path` for appending: created 0600, an existing file narrowed to
/// 0600, never through a link.
pub fn private_append(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    let m = f.metadata().map_err(err)?;
    if m.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    Ok(f)
}

/// The last `n` runs of `.deployer/runs.jsonl` (a line that is not a run is
/// returned as text, with its line number).
pub fn tail_local(project_root: &Path, n: usize) -> Result<Vec<Result<RunRecord, String>>, String> {
    let path = local_log(project_root);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    Ok(lines[start..]
        .iter()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{}:{}: not a run record ({e})", path.display(), i + 1))
        })
        .collect())
}

/// The command line as recorded in locks, audit logs, release records and
/// `runs.jsonl`: words shell-quoted, every `-e` value replaced by `********`
/// (its keys are kept: `-e 'db_password=******** port=********'`, a JSON
/// `-e` keeps its top-level keys, `-e @file` keeps the file name, anything
/// else is `********` whole), and any registered secret masked.
pub fn masked_command_line(args: &[String]) -> String {
    let mut out = vec!["deployer".to_string()];
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "-e" || a == "--extra-vars" {
            out.push(a.clone());
            if let Some(v) = it.next() {
                out.push(shell_quote(&extra_var_keys(v)));
            }
        } else if let Some(v) = a.strip_prefix("--extra-vars=") {
            out.push(format!("--extra-vars={}", shell_quote(&extra_var_keys(v))));
        } else if let Some(v) = a
            .strip_prefix("-e")
            .filter(|v| !v.is_empty() && !a.starts_with("--"))
        {
            out.push(format!("-e{}", shell_quote(&extra_var_keys(v))));
        } else {
            out.push(shell_quote(a));
        }
    }
    crate::secrets::mask(&out.join(" "))
}

/// An `-e` value with its keys kept and every value replaced by the mask.
fn extra_var_keys(v: &str) -> String {
    if v.starts_with('@') {
        return v.to_string();
    }
    if v.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde_json::Value>(v) {
            Ok(serde_json::Value::Object(m)) => serde_json::Value::Object(
                m.keys()
                    .map(|k| (k.clone(), serde_json::Value::String(MASK.into())))
                    .collect(),
            )
            .to_string(),
            _ => MASK.to_string(),
        };
    }
    match crate::shell::split(v) {
        Some(words) if !words.is_empty() && words.iter().all(|w| w.contains('=')) => words
            .iter()
            .map(|w| match w.split_once('=') {
                Some((k, _)) => format!("{k}={MASK}"),
                None => MASK.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => MASK.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn secret_extra_vars_are_masked_in_the_recorded_command_line() {
        let line = masked_command_line(&argv(&[
            "/usr/bin/deployer",
            "apply",
            "-i",
            "inv.yml",
            "-e",
            "db_password=hunter2 app_port=80",
            "--extra-vars={\"api_token\": \"t0k\", \"nested\": {\"secret\": \"s\", \"n\": 1}}",
            "-eadmin_token=zz",
            "-e",
            "@vars.yml",
            "-e",
            "weird: yaml-secret",
            "--message",
            "hot fix",
        ]));
        for leaked in [
            "hunter2",
            "t0k",
            "\"s\"",
            "zz",
            "yaml-secret",
            "80",
            "\"n\"",
        ] {
            assert!(!line.contains(leaked), "{leaked} leaked: {line}");
        }
        assert!(line.starts_with("deployer apply -i inv.yml -e"), "{line}");
        assert!(
            line.contains("'db_password=******** app_port=********'"),
            "{line}"
        );
        assert!(line.contains("\"nested\":\"********\""), "{line}");
        assert!(line.contains("-e'admin_token=********'"), "{line}");
        assert!(line.contains("@vars.yml"), "{line}");
        assert!(line.contains("'hot fix'"), "{line}");
    }

    #[test]
    fn local_runs_log_appends_and_tails() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(tail_local(dir.path(), 5), Ok(Vec::new()));
        for i in 0..3 {
            let rec = RunRecord {
                run_id: format!("r{i}"),
                started: "2026-11-22T06:15:00Z".into(),
                finished: "2026-11-22T06:15:09Z".into(),
                performer: "alice@laptop".into(),
                revision: None,
                dirty: false,
                command: "deployer apply".into(),
                message: None,
                result: "ok".into(),
                hosts: Vec::new(),
                notes: Vec::new(),
            };
            append_local(dir.path(), &rec).expect("append");
        }
        let last = tail_local(dir.path(), 2).expect("tail");
        let ids: Vec<String> = last
            .into_iter()
            .map(|r| r.expect("record").run_id)
            .collect();
        assert_eq!(ids, ["r1", "r2"]);
    }
}
