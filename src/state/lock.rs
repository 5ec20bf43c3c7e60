//! The deploy lock: one per host and project, a file `lock` in the
//! host's state directory holding who took it, when, from which revision, for
//! which command and why. It is created atomically on the host: the holder's
//! JSON is written to a temporary file that is then hard-linked to `lock`
//! (`ln` fails when `lock` exists), so two runs can never both believe they
//! hold it, and a reader never sees a half-written holder.
//!
//! This file owns the holder record and the shell snippets; the run's use of
//! them (acquire before any change, release on every exit path) is in
//! `src/run/session.rs`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::connection::shell_quote;

/// Marks the lines of our own protocol in a state script's output.
pub const MARK: &str = "::deployer::";

/// Who holds (or would take) a lock. Never holds a secret: the command line
/// is masked (see [`crate::state::audit::masked_command_line`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockHolder {
    /// Identifies one run (also in the audit log and `.deployer/runs.jsonl`).
    pub run_id: String,
    /// `user@machine` on the control side.
    pub who: String,
    /// When the run started, RFC 3339 UTC.
    pub since: String,
    /// The project's git revision (`None` outside a git checkout).
    pub revision: Option<String>,
    /// Uncommitted changes in the checkout.
    #[serde(default)]
    pub dirty: bool,
    /// The deployer command line, secret values masked.
    pub command: String,
    /// `--message`.
    #[serde(default)]
    pub message: Option<String>,
    /// The deployer process on the control machine.
    pub pid: u32,
    /// That process's start time (clock ticks after boot, field 22 of
    /// `/proc/<pid>/stat`): a pid reused by another process is not the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// The control machine's boot id when the run started: after a reboot,
    /// no process of the holder's can still run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// Whether a lock's holder may still be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Another machine (or this machine cannot tell): the holder is respected.
    Unknown,
    /// The holder's process runs on this machine.
    Running,
    /// The holder was a process of this machine that no longer exists (why).
    Gone(String),
}

impl LockHolder {
    /// The identity of this run.
    pub fn for_this_run(project_root: &Path, command: String, message: Option<String>) -> Self {
        Self::for_this_run_at(git_revision(project_root), command, message)
    }

    /// [`LockHolder::for_this_run`] with the checkout's `(HEAD, dirty)`
    /// already known ([`git_revision_in_background`]).
    pub fn for_this_run_at(
        (revision, dirty): (Option<String>, bool),
        command: String,
        message: Option<String>,
    ) -> Self {
        let now = SystemTime::now();
        LockHolder {
            run_id: run_id(now),
            who: control_identity(),
            since: rfc3339(now),
            revision,
            dirty,
            command,
            message,
            pid: std::process::id(),
            start_time: process_start_time(std::process::id()),
            boot_id: boot_id(),
        }
    }

    /// One line for people: who, since when, revision, pid, command, message.
    pub fn describe(&self) -> String {
        let mut s = format!("{} since {}", self.who, self.since);
        if let Some(age) = age_of(&self.since) {
            s.push_str(&format!(" ({} ago)", human_duration(age)));
        }
        s.push_str(&format!(", pid {}", self.pid));
        if let Some(r) = &self.revision {
            s.push_str(&format!(
                ", revision {}{}",
                &r[..r.len().min(12)],
                if self.dirty { "+dirty" } else { "" }
            ));
        }
        s.push_str(&format!(", run {}: `{}`", self.run_id, self.command));
        if let Some(m) = &self.message {
            s.push_str(&format!(", message: \"{m}\""));
        }
        if let Some(note) = self.local_process_note() {
            s.push_str(&format!(" [{note}]"));
        }
        s
    }

    /// When the holder is this machine, whether its process still runs: a
    /// lock whose process is gone is stale (the next run takes it over).
    pub fn local_process_note(&self) -> Option<String> {
        match self.liveness() {
            Liveness::Gone(why) => Some(format!("stale: {why}")),
            _ => None,
        }
    }

    /// Is the holder a process of this machine that no longer exists?
    /// Only a holder recorded as `user@<this machine's name>` is judged, and
    /// only when this process can see every process of the machine (`/proc`
    /// mounted without `hidepid`, or the holder is the same user).
    pub fn liveness(&self) -> Liveness {
        let Some((user, machine)) = self.who.rsplit_once('@') else {
            return Liveness::Unknown;
        };
        if machine != machine_name() {
            return Liveness::Unknown;
        }
        if let (Some(then), Some(now)) = (&self.boot_id, boot_id())
            && *then != now
        {
            return Liveness::Gone(format!(
                "process {} ran before this machine restarted",
                self.pid
            ));
        }
        let proc_dir = format!("/proc/{}", self.pid);
        if Path::new(&proc_dir).exists() {
            return match (self.start_time, process_start_time(self.pid)) {
                (Some(then), Some(now)) if then != now => Liveness::Gone(format!(
                    "process {} is no longer running on this machine (the pid now belongs to another process)",
                    self.pid
                )),
                _ => Liveness::Running,
            };
        }
        let sees_all = Path::new("/proc/1/stat").exists()
            || control_identity().rsplit_once('@').map(|(u, _)| u) == Some(user);
        if !sees_all {
            return Liveness::Unknown;
        }
        Liveness::Gone(format!(
            "process {} is no longer running on this machine",
            self.pid
        ))
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The exact text the lock file holds for this run: `release` only removes
    /// a lock that contains it, so a run never removes another run's lock.
    /// The name of the temporary file [`acquire_sh`] links as the lock:
    /// `.lock.` and the run id (only its letters, digits and `-`, so the
    /// name needs no quoting).
    pub fn temp_name(&self) -> String {
        let id: String = self
            .run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        format!(".lock.{id}")
    }

    pub fn run_id_fragment(&self) -> String {
        format!("\"run_id\":{}", serde_json::json!(self.run_id))
    }
}

/// Shell that sets `D` to the state directory: `/var/lib/deployer/<project>`
/// when the script runs as root (with become, or as a root login), else the
/// login user's `~/.local/state/deployer/<project>` (see [`super::state_root`]).
///
/// It also sets `umask 077`: every state file and directory the script
/// makes (lock, audit log, pending handlers, releases) is created 0600/0700,
/// never readable by anyone else for a moment.
pub fn state_dir_sh(project: &str) -> String {
    // In the host's remote shell the uid is known (`DEPLOYER_UID`, set by
    // the shell itself): no `id` process.
    format!(
        "umask 077\nif [ \"${{DEPLOYER_UID:-$(id -u)}}\" -eq 0 ]; then D={}; else D=\"{}\"; fi\necho \"{MARK}state $D\"\n",
        shell_quote(&super::state_root(project, true)),
        super::state_root(project, false)
    )
}

/// Takes the lock (atomic `ln` of a complete temporary file), then prints
/// `acquired`, or `held` and the holder's JSON. The state directory is made
/// (0700, under `umask 077`) only when it is not already a directory: no
/// `mkdir`/`chmod` process on every run. The temporary file, a second name
/// of the lock once taken, is removed with the lock ([`release_sh`]): no
/// `rm` process here when the lock is free.
pub fn acquire_sh(holder: &LockHolder) -> String {
    format!(
        "if [ ! -d \"$D\" ] || [ -L \"$D\" ]; then mkdir -p \"$D\" && chmod 0700 \"$D\" || {{ echo '{MARK}error cannot create the state directory'; exit 3; }}; fi
T=\"$D/{temp}\"
printf '%s\\n' {json} > \"$T\" || {{ echo '{MARK}error cannot write in the state directory'; exit 3; }}
if ln \"$T\" \"$D/lock\" 2>/dev/null; then echo '{MARK}lock acquired'; else echo '{MARK}lock held'; cat \"$D/lock\" 2>/dev/null; echo; rm -f \"$T\"; fi
",
        temp = holder.temp_name(),
        json = shell_quote(&holder.to_json_line())
    )
}

/// Prints the lock's holder, if any, without taking it (check mode, status).
pub fn peek_sh() -> String {
    format!("echo '{MARK}lock peek'; cat \"$D/lock\" 2>/dev/null; echo\n")
}

/// Removes the lock only when `holder` (this run) holds it. The lock file is
/// one line ([`acquire_sh`]), read by the shell itself (no `grep` process).
pub fn release_sh(holder: &LockHolder) -> String {
    format!(
        "L=; [ -f \"$D/lock\" ] && IFS= read -r L < \"$D/lock\" 2>/dev/null
case $L in *{frag}*) rm -f \"$D/lock\" \"$D/{temp}\" && echo '{MARK}lock released' ;; *) echo '{MARK}lock not-ours'; cat \"$D/lock\" 2>/dev/null; echo; rm -f \"$D/{temp}\" ;; esac\n",
        frag = shell_quote(&holder.run_id_fragment()),
        temp = holder.temp_name()
    )
}

/// Removes whatever lock is there (`deployer lock release`), printing whose it was.
pub fn force_release_sh() -> String {
    format!(
        "if [ -e \"$D/lock\" ]; then echo '{MARK}lock removed'; cat \"$D/lock\"; echo; rm -f \"$D/lock\"; else echo '{MARK}lock none'; fi\n"
    )
}

/// Takes over the lock of `stale` (a holder whose process is gone, see
/// [`LockHolder::liveness`]) for `holder`, printing `acquired`, or `held` and
/// whoever holds it now. The lock is renamed aside first (one rename: of two
/// runs taking over at once, one gets the file); when it is no longer the stale
/// holder's (another run took it over first), it is put back. The new holder
/// is linked in complete, as in [`acquire_sh`].
pub fn take_over_sh(stale: &LockHolder, holder: &LockHolder) -> String {
    format!(
        "T=\"$D/.lock.$$\"; S=\"$D/.lock.stale.$$\"
printf '%s\\n' {json} > \"$T\" || {{ echo '{MARK}error cannot write in the state directory'; exit 3; }}
if mv \"$D/lock\" \"$S\" 2>/dev/null; then
  if grep -qF {old} \"$S\"; then
    if ln \"$T\" \"$D/lock\" 2>/dev/null; then echo '{MARK}lock acquired'; else echo '{MARK}lock held'; cat \"$D/lock\" 2>/dev/null; echo; fi
  else
    ln \"$S\" \"$D/lock\" 2>/dev/null; echo '{MARK}lock held'; cat \"$D/lock\" 2>/dev/null; echo
  fi
  rm -f \"$S\" \"$D/{stale_temp}\"
elif ln \"$T\" \"$D/lock\" 2>/dev/null; then echo '{MARK}lock acquired'
else echo '{MARK}lock held'; cat \"$D/lock\" 2>/dev/null; echo
fi
rm -f \"$T\"
",
        json = shell_quote(&holder.to_json_line()),
        old = shell_quote(&stale.run_id_fragment()),
        stale_temp = stale.temp_name()
    )
}

/// The one-line note of a takeover.
pub fn took_over_note(stale: &LockHolder) -> String {
    let why = match stale.liveness() {
        Liveness::Gone(why) => why,
        _ => format!("process {} is gone", stale.pid),
    };
    format!(
        "took over the deploy lock of run {} ({} since {}): {why}",
        stale.run_id, stale.who, stale.since
    )
}

/// Takes `holder`'s lock over `conn` when `stale` holds it and is gone.
pub async fn take_over_on(
    conn: &crate::connection::Connection,
    become_: Option<&crate::connection::Become>,
    project: &str,
    stale: &LockHolder,
    holder: &LockHolder,
) -> Result<LockState, String> {
    let script = format!(
        "umask 077\n{}{}",
        state_dir_sh(project),
        take_over_sh(stale, holder)
    );
    state_on(conn, become_, &script).await
}

/// For commands that are not playbook runs (`rollback`): takes the host's
/// lock over `conn` in one execution. `become_` must follow the host-level
/// rule (`StateLocation::for_host` / `Engine::state_become`), so the lock is
/// the one `apply` takes. `Acquired`, or `Held(holder)`.
pub async fn acquire_on(
    conn: &crate::connection::Connection,
    become_: Option<&crate::connection::Become>,
    project: &str,
    holder: &LockHolder,
) -> Result<LockState, String> {
    let script = format!("umask 077\n{}{}", state_dir_sh(project), acquire_sh(holder));
    state_on(conn, become_, &script).await
}

/// The other half of [`acquire_on`]: appends `audit` (if any) to the host's
/// audit log and releases the lock if it is still `holder`'s, in one execution.
pub async fn release_on(
    conn: &crate::connection::Connection,
    become_: Option<&crate::connection::Become>,
    project: &str,
    holder: &LockHolder,
    audit: Option<&crate::state::audit::HostAudit>,
) -> Result<LockState, String> {
    let mut script = format!("umask 077\n{}", state_dir_sh(project));
    if let Some(a) = audit {
        script.push_str(&crate::state::audit::append_sh(a));
    }
    script.push_str(&release_sh(holder));
    state_on(conn, become_, &script).await
}

async fn state_on(
    conn: &crate::connection::Connection,
    become_: Option<&crate::connection::Become>,
    script: &str,
) -> Result<LockState, String> {
    let out = conn
        .run_script(script, become_)
        .await
        .map_err(|e| crate::secrets::mask(&e.to_string()))?;
    let secs = sections(&out.stdout_str());
    if let Some(e) = script_error(&secs) {
        return Err(e);
    }
    match lock_state(&secs) {
        Some(st) if out.rc == 0 => Ok(st),
        _ => Err(format!(
            "the deploy lock: {} (exit code {})",
            out.stderr_str().trim(),
            out.rc
        )),
    }
}

/// What a state script said about the lock.
#[derive(Debug, Clone, PartialEq)]
pub enum LockState {
    Acquired,
    /// Held by someone else (`None`: released between our try and our read).
    Held(Option<LockHolder>),
    Free,
    Released,
    /// The lock was not ours any more at release time (someone force-released it).
    NotOurs(Option<LockHolder>),
    Removed(Option<LockHolder>),
}

/// Splits a state script's output into its sections: `(marker line, body lines)`.
pub fn sections(stdout: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in stdout.lines() {
        if let Some(m) = line.strip_prefix(MARK) {
            out.push((m.to_string(), Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(line.to_string());
        }
    }
    out
}

fn parse_holder(body: &[String]) -> Option<LockHolder> {
    body.iter()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l.trim()).ok())
}

/// The lock state reported in `sections`, if any.
pub fn lock_state(sections: &[(String, Vec<String>)]) -> Option<LockState> {
    for (m, body) in sections {
        let st = match m.as_str() {
            "lock acquired" => LockState::Acquired,
            "lock held" => LockState::Held(parse_holder(body)),
            "lock peek" => match parse_holder(body) {
                Some(h) => LockState::Held(Some(h)),
                None => LockState::Free,
            },
            "lock released" => LockState::Released,
            "lock not-ours" => LockState::NotOurs(parse_holder(body)),
            "lock removed" => LockState::Removed(parse_holder(body)),
            "lock none" => LockState::Free,
            _ => continue,
        };
        return Some(st);
    }
    None
}

/// What an acquiring script found, as `holder`'s run sees it: a lock held
/// under the run's own id is its own (the first script ran twice: once in a
/// shell the run gave up on as too slow, once in the one it uses).
pub fn as_seen_by(state: Option<LockState>, holder: &LockHolder) -> Option<LockState> {
    match state {
        Some(LockState::Held(Some(h))) if h.run_id == holder.run_id => Some(LockState::Acquired),
        other => other,
    }
}

/// An `error ...` section's text, if the script reported one.
pub fn script_error(sections: &[(String, Vec<String>)]) -> Option<String> {
    sections
        .iter()
        .find_map(|(m, _)| m.strip_prefix("error ").map(str::to_string))
}

/// `--lock-wait` values: `90`, `90s`, `5m`, `1h`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("--lock-wait: '{s}' is not a duration (examples: 30s, 5m, 1h, 1m30s)");
    let s = s.trim();
    if s.is_empty() {
        return Err(err());
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| err())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(err()),
        };
        total = total.checked_add(n * unit).ok_or_else(err)?;
    }
    if !num.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// `user@machine` of the control side.
pub fn control_identity() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", machine_name())
}

/// The login name of this process's uid (no `USER` in cron, CI, containers).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
    })
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks
/// after boot (the command name, field 2, may hold spaces and parentheses).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// This boot of the machine (Linux: a random id per boot).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// [`git_revision`] in a thread of its own, started at once: the `git`
/// process (tens of milliseconds on a loaded machine, more in a big
/// checkout) runs while the project loads and the first connection opens;
/// the answer is awaited only where the lock's holder is written.
pub fn git_revision_in_background(
    root: std::path::PathBuf,
) -> tokio::sync::oneshot::Receiver<(Option<String>, bool)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(git_revision(&root));
    });
    rx
}

/// Whether `git -C dir` could find a repository: a `.git` in `dir` or a
/// directory above it, or `GIT_DIR` set. Outside one no `git` process is
/// started (a failing `git rev-parse` cost a fork and exec on every run).
pub fn may_be_in_git(dir: &Path) -> bool {
    if std::env::var_os("GIT_DIR").is_some() {
        return true;
    }
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(c) => c.join(dir),
            // Unknown: let git decide.
            Err(_) => return true,
        }
    };
    abs.ancestors()
        .any(|d| std::fs::symlink_metadata(d.join(".git")).is_ok())
}

/// `(HEAD, dirty)` of the git checkout holding `root`; `(None, false)` outside
/// one. Dirty means a tracked file differs from HEAD (untracked files do not
/// count). One `git status` answers both (its `branch.oid` header is HEAD),
/// without taking the index's lock (`--no-optional-locks`), so a `git`
/// command the user runs meanwhile is not disturbed.
pub fn git_revision(root: &Path) -> (Option<String>, bool) {
    if !may_be_in_git(root) {
        return (None, false);
    }
    std::process::Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(root)
        .args([
            "status",
            "--porcelain=v2",
            "--branch",
            "--no-ahead-behind",
            "--untracked-files=no",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_status_v2(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or((None, false))
}

/// `git status --porcelain=v2 --branch`: HEAD from `# branch.oid` (absent
/// before the first commit, `(initial)`), dirty when any entry line follows.
fn parse_status_v2(out: &str) -> (Option<String>, bool) {
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("# branch.oid "))
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string);
    match head {
        Some(h) => (
            Some(h),
            out.lines().any(|l| !l.is_empty() && !l.starts_with('#')),
        ),
        None => (None, false),
    }
}

/// A sortable, unique-enough run id: `20261122T061500Z-1a2b`.
pub fn run_id(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let compact: String = rfc3339(now)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let salt = (d.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{compact}-{salt:04x}")
}

/// RFC 3339 UTC with seconds, e.g. `2026-11-22T06:15:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an [`rfc3339`] time.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?);
    let secs = days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?;
    u64::try_from(secs).ok()
}

fn age_of(since: &str) -> Option<Duration> {
    let then = parse_rfc3339(since)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(now.saturating_sub(then)))
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", (s + 30) / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

// Howard Hinnant's days <-> civil date algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with no `.git` above it starts no git process; one
    /// inside a checkout (at any depth) does.
    #[test]
    fn git_is_asked_only_inside_a_checkout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).expect("mkdir");
        if std::env::var_os("GIT_DIR").is_none()
            && !dir.path().ancestors().any(|d| d.join(".git").exists())
        {
            assert!(!may_be_in_git(&sub));
            assert_eq!(git_revision(&sub), (None, false));
        }
        std::fs::create_dir(dir.path().join(".git")).expect("mkdir .git");
        assert!(may_be_in_git(&sub));
        assert!(may_be_in_git(dir.path()));
    }

    /// HEAD and dirtiness from the one `git status`, checked against
    /// `git rev-parse HEAD` in a real repository: none before the first
    /// commit, clean after it, dirty with a changed tracked file, and not
    /// dirty for an untracked file alone.
    #[test]
    fn revision_and_dirtiness_come_from_one_git_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        assert_eq!(git_revision(dir.path()), (None, false));
        std::fs::write(dir.path().join("a.yml"), "a: 1\n").expect("write");
        git(&["add", "a.yml"]);
        git(&["commit", "-q", "-m", "first"]);
        let head = git(&["rev-parse", "HEAD"]);
        assert_eq!(git_revision(dir.path()), (Some(head.clone()), false));
        std::fs::write(dir.path().join("new.yml"), "b: 2\n").expect("write");
        assert_eq!(git_revision(dir.path()), (Some(head.clone()), false));
        std::fs::write(dir.path().join("a.yml"), "a: 2\n").expect("write");
        assert_eq!(git_revision(dir.path()), (Some(head), true));
    }

    #[test]
    fn status_v2_headers_and_entries() {
        let clean = "# branch.oid 0123abcd\n# branch.head main\n";
        assert_eq!(parse_status_v2(clean), (Some("0123abcd".into()), false));
        let dirty = format!("{clean}1 .M N... 100644 100644 100644 aa bb a.yml\n");
        assert_eq!(parse_status_v2(&dirty), (Some("0123abcd".into()), true));
        assert_eq!(
            parse_status_v2("# branch.oid (initial)\n# branch.head main\n"),
            (None, false)
        );
        assert_eq!(parse_status_v2(""), (None, false));
    }

    fn holder() -> LockHolder {
        LockHolder {
            run_id: "20261122T061500Z-1a2b".into(),
            who: "alice@laptop".into(),
            since: "2026-11-22T06:15:00Z".into(),
            revision: Some("0123456789abcdef0123".into()),
            dirty: true,
            command: "deployer apply -i inv.yml -e 'db_password=********'".into(),
            message: Some("it's friday".into()),
            pid: 4242,
            start_time: None,
            boot_id: None,
        }
    }

    #[test]
    fn times_round_trip_and_match_known_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_328_100);
        assert_eq!(rfc3339(t), "2026-11-22T06:15:00Z");
        assert_eq!(parse_rfc3339("2026-11-22T06:15:00Z"), Some(1_795_328_100));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert!(run_id(t).starts_with("20261122T061500Z-"));
    }

    #[test]
    fn durations_parse_or_name_the_bad_value() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "5x", "m", "10 minutes", "5m3"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("--lock-wait") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_holder_survives_the_shell_and_is_read_back() {
        let h = holder();
        // Run the real snippets in a scratch state directory.
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |body: String| {
            let script = format!(
                "D={}\n{body}",
                shell_quote(&dir.path().display().to_string())
            );
            let o = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .output()
                .expect("sh");
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let first = run(acquire_sh(&h));
        assert_eq!(lock_state(&sections(&first)), Some(LockState::Acquired));
        let mut other = h.clone();
        other.run_id = "other".into();
        let second = run(acquire_sh(&other));
        assert_eq!(
            lock_state(&sections(&second)),
            Some(LockState::Held(Some(h.clone())))
        );
        assert_eq!(
            as_seen_by(lock_state(&sections(&second)), &other),
            Some(LockState::Held(Some(h.clone())))
        );
        // The same run's script again: held, by this run, so its own.
        let again = run(acquire_sh(&h));
        assert_eq!(
            as_seen_by(lock_state(&sections(&again)), &h),
            Some(LockState::Acquired)
        );
        assert_eq!(
            lock_state(&sections(&run(release_sh(&other)))),
            Some(LockState::NotOurs(Some(h.clone())))
        );
        assert_eq!(
            lock_state(&sections(&run(peek_sh()))),
            Some(LockState::Held(Some(h.clone())))
        );
        assert_eq!(
            lock_state(&sections(&run(release_sh(&h)))),
            Some(LockState::Released)
        );
        assert_eq!(
            lock_state(&sections(&run(peek_sh()))),
            Some(LockState::Free)
        );
        // The same through a connection (what `rollback` uses), on this machine.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let conn = crate::connection::Connection::local("localhost");
        let project = format!("lock-unit-test-{}", std::process::id());
        let is_root = std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
        let state_dir = if is_root {
            format!("{}/{project}", crate::state::SYSTEM_STATE_ROOT)
        } else {
            format!(
                "{}/{}/{project}",
                std::env::var("HOME").unwrap_or_default(),
                crate::state::USER_STATE_ROOT
            )
        };
        let results = rt.block_on(async {
            (
                acquire_on(&conn, None, &project, &h).await,
                acquire_on(&conn, None, &project, &other).await,
                release_on(&conn, None, &project, &other, None).await,
                release_on(&conn, None, &project, &h, None).await,
            )
        });
        let _ = std::fs::remove_dir_all(&state_dir);
        // The parent too, when this test made it (remove_dir keeps a non-empty one).
        if let Some(parent) = Path::new(&state_dir).parent() {
            let _ = std::fs::remove_dir(parent);
        }
        assert_eq!(
            results,
            (
                Ok(LockState::Acquired),
                Ok(LockState::Held(Some(h.clone()))),
                Ok(LockState::NotOurs(Some(h.clone()))),
                Ok(LockState::Released)
            )
        );
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert!(left.is_empty(), "{left:?}");
        let d = h.describe();
        assert!(
            d.contains("alice@laptop since 2026-11-22T06:15:00Z")
                && d.contains("pid 4242")
                && d.contains("revision 0123456789ab+dirty")
                && d.contains("message: \"it's friday\""),
            "{d}"
        );
    }
}

#[cfg(test)]
mod takeover_tests {
    use super::*;

    fn holder(run_id: &str, who: String, pid: u32) -> LockHolder {
        LockHolder {
            run_id: run_id.into(),
            who,
            since: "2026-11-22T06:15:00Z".into(),
            revision: None,
            dirty: false,
            command: "deployer apply".into(),
            message: None,
            pid,
            start_time: None,
            boot_id: None,
        }
    }

    /// A pid no process has: above the kernel's pid_max.
    fn dead_pid() -> u32 {
        let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4_194_304);
        max + 1
    }

    #[test]
    fn liveness_tells_a_dead_local_holder_from_a_live_or_remote_one() {
        let me = control_identity();
        let dead = holder("dead", me.clone(), dead_pid());
        assert!(matches!(dead.liveness(), Liveness::Gone(_)), "{dead:?}");
        assert!(
            dead.describe().contains("stale: process"),
            "{}",
            dead.describe()
        );
        let mut alive = LockHolder::for_this_run(Path::new("."), "x".into(), None);
        assert_eq!(alive.liveness(), Liveness::Running);
        // The same pid with another start time: the pid was reused.
        alive.start_time = alive.start_time.map(|t| t + 1);
        assert!(matches!(alive.liveness(), Liveness::Gone(_)));
        // A holder recorded before a reboot.
        let mut rebooted = LockHolder::for_this_run(Path::new("."), "x".into(), None);
        rebooted.boot_id = Some("00000000-0000-0000-0000-000000000000".into());
        assert!(matches!(rebooted.liveness(), Liveness::Gone(w) if w.contains("restarted")));
        // Another machine's holder is never judged from here.
        let remote = holder("remote", "alice@some-other-machine".into(), dead_pid());
        assert_eq!(remote.liveness(), Liveness::Unknown);
        assert_eq!(remote.local_process_note(), None);
    }

    #[test]
    fn two_runs_taking_over_one_stale_lock_get_it_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |body: String| {
            let script = format!(
                "D={}\n{body}",
                shell_quote(&dir.path().display().to_string())
            );
            let o = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .output()
                .expect("sh");
            lock_state(&sections(&String::from_utf8_lossy(&o.stdout)))
        };
        let stale = holder("stale", control_identity(), dead_pid());
        let a = holder("run-a", control_identity(), std::process::id());
        let b = holder("run-b", control_identity(), std::process::id());
        assert_eq!(run(acquire_sh(&stale)), Some(LockState::Acquired));
        assert_eq!(run(take_over_sh(&stale, &a)), Some(LockState::Acquired));
        // The second one finds a's lock, puts it back and is refused.
        assert_eq!(
            run(take_over_sh(&stale, &b)),
            Some(LockState::Held(Some(a.clone())))
        );
        assert_eq!(run(peek_sh()), Some(LockState::Held(Some(a.clone()))));
        // A lock released meanwhile is simply taken.
        assert_eq!(run(release_sh(&a)), Some(LockState::Released));
        assert_eq!(run(take_over_sh(&stale, &b)), Some(LockState::Acquired));
        assert_eq!(run(peek_sh()), Some(LockState::Held(Some(b.clone()))));
        assert_eq!(run(release_sh(&b)), Some(LockState::Released));
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(took_over_note(&stale).contains("took over the deploy lock of run stale"));
    }
}
