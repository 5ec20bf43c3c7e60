//! Release records: what one `apply` (or `rollback`) changed
//! on a host, kept under `<state root>/releases/<id>/` so it can be undone.
//!
//! A [`Recorder`] lives for one run on one host. Modules ask it for a shell
//! snippet that saves a file's previous state (content copy, mode, owner, or
//! "absent") and put that snippet at the head of the very script that changes
//! the file: saving costs no extra remote execution, and a file is never
//! changed without its previous state saved first (the snippet runs under
//! `set -e`). The copies go to `releases/.staging-<id>/files/`; at the end of
//! the run, only when something changed, one execution writes `release.json`,
//! renames the staging directory to `releases/<id>` and prunes to the last N.
//! A no-op run never creates the staging directory and costs nothing.
//!
//! Compose projects are recorded through the Docker API (no remote
//! execution): each service's container before and after, its image tag, the
//! image ID (`sha256:...`) and RepoDigest when the image has one, the config
//! hash and the effective spec (environment values as hashes, so no secret
//! lands in `release.json`). Images are never pruned by deployer;
//! `images_needed` names the image IDs a rollback to the state before this
//! release needs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::connection::{Become, shell_quote};

/// Kept releases per host when neither `--keep-releases` nor the variable
/// `deployer_keep_releases` says otherwise.
pub const DEFAULT_KEEP: usize = 5;

/// Where a host keeps its release state and as whom it is written.
#[derive(Debug, Clone)]
pub struct StateLocation {
    /// A shell word (safe unquoted): `/var/lib/deployer/<project>` or
    /// `~user/.local/state/deployer/<project>`.
    pub root: String,
    /// Run state scripts (finalize, list, rollback) as this user.
    pub become_: Option<Become>,
}

impl StateLocation {
    /// The host's state location: the system root (written as root) when the
    /// SSH login is root or the host becomes root (`ansible_become`);
    /// otherwise the login user's own directory. Decided from host-level
    /// variables only, so `apply` and `rollback` agree.
    pub fn for_host(
        project: &str,
        login: Option<&str>,
        become_root: bool,
        become_password: Option<String>,
    ) -> StateLocation {
        let is_root = login == Some("root");
        if is_root || become_root {
            return StateLocation {
                root: super::state_root(project, true),
                become_: (!is_root).then(|| Become {
                    user: "root".into(),
                    password: become_password,
                }),
            };
        }
        let home = match login {
            Some(u)
                if !u.is_empty()
                    && u.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
            {
                format!("~{u}")
            }
            _ => "\"$HOME\"".to_string(),
        };
        StateLocation {
            root: format!("{home}/{}/{project}", super::USER_STATE_ROOT),
            become_: None,
        }
    }

    pub fn releases(&self) -> String {
        format!("{}/releases", self.root)
    }
}

/// A sortable release id shared by every host of one run: UTC time to the
/// millisecond (two runs in one second still sort in order) plus a short
/// random suffix (`20261122T061500.042Z-3fa9c1`).
pub fn new_release_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let r: u32 = rand::random();
    let secs = utc_compact(now.as_secs());
    format!(
        "{}.{:03}Z-{:06x}",
        secs.trim_end_matches('Z'),
        now.subsec_millis(),
        r & 0xff_ffff
    )
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
pub fn utc_compact(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// RFC 3339 UTC for a Unix time.
pub fn utc_rfc3339(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Howard Hinnant's days-to-civil, for UTC without a date crate.
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn now_rfc3339() -> String {
    utc_rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GitRevision {
    pub revision: String,
    pub dirty: bool,
}

/// The project's git revision and dirty flag (local `git`; None outside a
/// repository or without git).
pub fn git_revision(dir: &std::path::Path) -> Option<GitRevision> {
    if !super::lock::may_be_in_git(dir) {
        return None;
    }
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let revision = run(&["rev-parse", "HEAD"])?;
    let dirty = run(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    Some(GitRevision { revision, dirty })
}

/// `user@machine` of the person running deployer.
pub fn performer() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

/// The command line as recorded: `-e` keys only, never their values
/// (see [`crate::state::audit::masked_command_line`]).
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    crate::state::audit::masked_command_line(&args)
}

/// What a file was before the release changed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PreviousFile {
    Absent,
    File {
        mode: String,
        owner: String,
        group: String,
        sha256: String,
        /// Relative to the release directory.
        saved: String,
    },
    Directory {
        mode: String,
        owner: String,
        group: String,
    },
    Link {
        target: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub path: String,
    pub task: String,
    pub previous: PreviousFile,
}

/// One service's container at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerState {
    pub container: String,
    /// The image reference of the spec (a tag).
    pub image: String,
    /// The local image ID (`sha256:...`): what a rollback restores by.
    pub image_id: String,
    /// The registry digest when the image has one (local builds have none).
    #[serde(default)]
    pub repo_digest: Option<String>,
    pub config_hash: String,
    pub running: bool,
    /// The effective spec, environment values as hashes.
    #[serde(default)]
    pub spec: Option<Json>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceRecord {
    pub before: Option<ContainerState>,
    pub after: Option<ContainerState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComposeRecord {
    pub project: String,
    pub task: String,
    /// The module's arguments that locate the project (project_src, files,
    /// project_name, env_files, docker_host, timeout).
    pub args: Json,
    pub services: BTreeMap<String, ServiceRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskSummary {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub changed_tasks: Vec<String>,
}

/// `release.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseRecord {
    pub id: String,
    pub project: String,
    pub host: String,
    /// `apply`, `rollback` or `auto-rollback`.
    pub kind: String,
    pub created_at: String,
    pub who: String,
    pub command: String,
    pub git: Option<GitRevision>,
    /// `ok`, or `failed` (the run failed after changing the host).
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    pub tasks: TaskSummary,
    pub files: Vec<FileRecord>,
    pub compose: Vec<ComposeRecord>,
    /// Image IDs the state before this release runs (never pruned by deployer).
    pub images_needed: Vec<String>,
    /// For a rollback: the releases it undid, newest first.
    #[serde(default)]
    pub undoes: Vec<String>,
}

impl ReleaseRecord {
    /// One line of `deployer releases`.
    pub fn summary(&self) -> String {
        let rev = match &self.git {
            Some(g) => format!(
                "{}{}",
                &g.revision[..g.revision.len().min(12)],
                if g.dirty { "+dirty" } else { "" }
            ),
            None => "-".into(),
        };
        let services: usize = self.compose.iter().map(|c| c.services.len()).sum();
        let mut changes = format!("{} file(s), {} service(s)", self.files.len(), services);
        if !self.undoes.is_empty() {
            changes.push_str(&format!(", undoes {}", self.undoes.join(" ")));
        }
        format!(
            "{}  {}  {:<14} {:<7} {:<20} {:<14} {}",
            self.id, self.created_at, self.kind, self.status, self.who, rev, changes
        )
    }
}

#[derive(Default)]
struct RecorderInner {
    files: Vec<FileRecord>,
    saved: HashSet<String>,
    compose: Vec<ComposeRecord>,
    next: usize,
}

/// Collects one host's release during a run.
pub struct Recorder {
    pub id: String,
    pub project: String,
    pub host: String,
    pub kind: String,
    pub location: StateLocation,
    pub keep: usize,
    inner: Mutex<RecorderInner>,
}

impl Recorder {
    pub fn new(
        id: &str,
        project: &str,
        host: &str,
        kind: &str,
        location: StateLocation,
        keep: usize,
    ) -> Recorder {
        Recorder {
            id: id.to_string(),
            project: project.to_string(),
            host: host.to_string(),
            kind: kind.to_string(),
            location,
            keep: keep.max(1),
            inner: Mutex::new(RecorderInner::default()),
        }
    }

    /// `releases/.staging-<id>`: where the copies go until the release is final.
    pub fn stage(&self) -> String {
        format!("{}/.staging-{}", self.location.releases(), self.id)
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .map(|i| i.files.is_empty() && i.compose.is_empty())
            .unwrap_or(true)
    }

    /// The shell snippet that saves `path`'s current state into the staging
    /// directory and prints one `P\t...` line; None when this release already
    /// saved the path (its state before the release is what counts). Put it at
    /// the head of the script that changes the file, under `set -e`.
    pub fn save_snippet(&self, path: &str) -> Option<String> {
        let mut inner = self.inner.lock().ok()?;
        if inner.saved.contains(path) {
            return None;
        }
        let n = inner.next;
        inner.next += 1;
        Some(save_snippet(&self.stage(), n, path))
    }

    /// Reads the `P\t` line a save snippet printed and records the path.
    pub fn note_saved(&self, path: &str, task: &str, stdout: &str) {
        let Some(previous) = parse_saved(stdout) else {
            return;
        };
        if let Ok(mut inner) = self.inner.lock()
            && inner.saved.insert(path.to_string())
        {
            inner.files.push(FileRecord {
                path: path.to_string(),
                task: task.to_string(),
                previous,
            });
        }
    }

    /// Records several paths whose save snippets ran in one script, in
    /// order (each printed one `P\t` line).
    pub fn note_saved_all(&self, paths: &[String], task: &str, stdout: &str) {
        let lines = stdout.lines().filter(|l| l.starts_with("P\t"));
        for (path, line) in paths.iter().zip(lines) {
            self.note_saved(path, task, line);
        }
    }

    /// A compose project about to change: the containers as they are now.
    /// Recorded once per project and release (the first state counts).
    pub fn note_compose_before(
        &self,
        project: &str,
        task: &str,
        args: Json,
        before: BTreeMap<String, Option<ContainerState>>,
    ) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.compose.iter().any(|c| c.project == project) {
                return;
            }
            inner.compose.push(ComposeRecord {
                project: project.to_string(),
                task: task.to_string(),
                args,
                services: before
                    .into_iter()
                    .map(|(s, b)| {
                        (
                            s,
                            ServiceRecord {
                                before: b,
                                after: None,
                            },
                        )
                    })
                    .collect(),
            });
        }
    }

    /// The project's containers after the change.
    pub fn note_compose_after(&self, project: &str, after: BTreeMap<String, ContainerState>) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(c) = inner.compose.iter_mut().find(|c| c.project == project)
        {
            for (s, a) in after {
                c.services.entry(s).or_default().after = Some(a);
            }
        }
    }

    /// The record as it stands.
    pub fn record(
        &self,
        git: Option<GitRevision>,
        status: &str,
        message: Option<String>,
        tasks: TaskSummary,
        undoes: Vec<String>,
    ) -> ReleaseRecord {
        let inner = self
            .inner
            .lock()
            .map(|i| (i.files.clone(), i.compose.clone()));
        let (files, compose) = inner.unwrap_or_default();
        let mut images: Vec<String> = compose
            .iter()
            .flat_map(|c| c.services.values())
            .filter_map(|s| s.before.as_ref().map(|b| b.image_id.clone()))
            .filter(|i| !i.is_empty())
            .collect();
        images.sort();
        images.dedup();
        ReleaseRecord {
            id: self.id.clone(),
            project: self.project.clone(),
            host: self.host.clone(),
            kind: self.kind.clone(),
            created_at: now_rfc3339(),
            who: performer(),
            command: command_line(),
            git,
            status: status.to_string(),
            message: message.map(|m| crate::secrets::mask(&m)),
            tasks,
            files,
            compose,
            images_needed: images,
            undoes,
        }
    }

    /// The one script that makes the release final: release.json written,
    /// the staging directory renamed, older releases beyond `keep` removed.
    pub fn finalize_script(&self, record: &ReleaseRecord) -> String {
        use base64::Engine as _;
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let mut wrapped = String::new();
        for chunk in b64.as_bytes().chunks(76) {
            wrapped.push_str(std::str::from_utf8(chunk).unwrap_or(""));
            wrapped.push('\n');
        }
        let r = self.location.releases();
        let id = &self.id;
        format!(
            "set -e\numask 077\nR={r}\nS=\"$R/.staging-{id}\"\nmkdir -p \"$S\"\n\
             base64 -d > \"$S/release.json.tmp\" <<'__DEPLOYER_EOF__'\n{wrapped}__DEPLOYER_EOF__\n\
             mv -f \"$S/release.json.tmp\" \"$S/release.json\"\nsync \"$S/release.json\" 2>/dev/null || true\n\
             mv \"$S\" \"$R/{id}\"\n\
             (cd -P -- \"$R\" && {check} && ls -1 | grep -v '^\\.' | sort | head -n -{keep} | while read -r d; do rm -rf -- \"./$d\"; done) || echo \"release: old releases under $R not pruned: its path is not private to $(id -un)\" >&2\n\
             sync \"$R\" 2>/dev/null || true\n",
            keep = self.keep,
            check = PRIVATE_CWD,
        )
    }
}

/// Shell that succeeds only when every directory from `/` to the working
/// directory (physical path) belongs to root or the running user and is not
/// writable by anyone else (sticky directories excepted): nobody else can
/// then swap a name on the way, and `rm -rf` of a name here is safe.
const PRIVATE_CWD: &str = "__p=$(pwd -P); __me=$(id -u); __ok=1; while :; do __i=$(stat -c '%u %a' -- \"${__p:-/}\") || __ok=; case ${__i% *} in 0|\"$__me\") ;; *) __ok= ;; esac; __m=0${__i#* }; if [ $(( __m & 022 )) != 0 ] && [ $(( __m & 01000 )) = 0 ]; then __ok=; fi; [ -n \"$__p\" ] || break; __p=${__p%/*}; done; [ -n \"$__ok\" ]";

/// See [`Recorder::save_snippet`]. Runs in a subshell so its umask (0077:
/// copies readable by the state owner only) does not leak into the write.
/// The path's directory is entered through
/// [`crate::connection::write::WALK_LIB`]'s walk and the file is read
/// relative to it with `O_NOFOLLOW` (`dd iflag=nofollow`) and `O_NONBLOCK`
/// (a FIFO swapped in cannot hang it): a link another user plants never
/// makes root copy a file from elsewhere into the release (which a rollback
/// would then write back where that user can read it).
pub fn save_snippet(stage: &str, n: usize, path: &str) -> String {
    use crate::connection::write::{WALK_LIB, go_args, split_path};
    let q = shell_quote(path);
    let (dir, name) = split_path(path);
    let nq = shell_quote(&name);
    format!(
        "( umask 077; S={stage}; mkdir -p \"$S/files\" || exit 1\n{WALK_LIB}__dw_dest={q}\n\
         if [ ! -d {dq} ]; then printf 'P\\tabsent\\n'; exit 0; fi\n\
         __dw_go {go}\n__dw_n=./{nq}\n\
         if [ -L \"$__dw_n\" ]; then t=$(readlink -- \"$__dw_n\") || exit 1; printf 'P\\tlink\\t%s\\n' \"$t\"\n\
         elif [ -f \"$__dw_n\" ]; then dd if=\"$__dw_n\" of=\"$S/files/{n}\" iflag=nofollow,nonblock status=none || exit 1; a=$(stat -c '%a\t%U\t%G' -- \"$__dw_n\") || exit 1; \
         h=$(sha256sum < \"$S/files/{n}\" | cut -d' ' -f1); [ -n \"$h\" ] || exit 1; printf 'P\\tfile\\t%s\\t%s\\tfiles/{n}\\n' \"$a\" \"$h\"\n\
         elif [ -d \"$__dw_n\" ]; then a=$(stat -c '%a\t%U\t%G' -- \"$__dw_n\") || exit 1; printf 'P\\tdirectory\\t%s\\n' \"$a\"\n\
         elif [ -e \"$__dw_n\" ]; then echo 'release: cannot save '{q}': not a regular file, directory or link' >&2; exit 1\n\
         else printf 'P\\tabsent\\n'; fi ) || {{ echo 'release: could not save the previous state of '{q}' under '{stage}' (is the release state writable by this task'\"'\"'s user?)' >&2; exit 1; }}\n",
        dq = shell_quote(&dir),
        go = go_args(&dir),
    )
}

/// The previous state a save snippet printed.
pub fn parse_saved(stdout: &str) -> Option<PreviousFile> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("P\t"))?;
    let f: Vec<&str> = line.split('\t').collect();
    let mode = |m: &str| format!("{:0>4}", m);
    match f.as_slice() {
        ["absent"] => Some(PreviousFile::Absent),
        ["link", target] => Some(PreviousFile::Link {
            target: target.to_string(),
        }),
        ["file", m, o, g, sha, saved] => Some(PreviousFile::File {
            mode: mode(m),
            owner: o.to_string(),
            group: g.to_string(),
            sha256: sha.to_string(),
            saved: saved.to_string(),
        }),
        ["directory", m, o, g] => Some(PreviousFile::Directory {
            mode: mode(m),
            owner: o.to_string(),
            group: g.to_string(),
        }),
        _ => None,
    }
}

/// The script that prints every release of the host (one execution).
pub fn list_script(loc: &StateLocation) -> String {
    format!(
        "R={}\n[ -d \"$R\" ] || exit 0\nfor d in \"$R\"/*/; do [ -f \"$d/release.json\" ] || continue; printf '\\036\\n'; cat \"$d/release.json\"; done\n",
        loc.releases()
    )
}

/// Parses [`list_script`]'s output into releases, oldest first.
pub fn parse_list(stdout: &str) -> Result<Vec<ReleaseRecord>, String> {
    let mut out = Vec::new();
    for chunk in stdout.split('\u{1e}') {
        let c = chunk.trim();
        if c.is_empty() {
            continue;
        }
        let r: ReleaseRecord = serde_json::from_str(c)
            .map_err(|e| format!("a release.json on the host cannot be read: {e}"))?;
        out.push(r);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_dates_are_utc() {
        assert_eq!(utc_compact(0), "19700101T000000Z");
        assert_eq!(utc_rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(utc_compact(951_782_400), "20000229T000000Z");
        let a = new_release_id();
        assert_eq!(a.len(), "20261122T061500.042Z-3fa9c1".len());
        assert!(a.as_bytes()[15] == b'.' && a.contains("Z-"), "{a}");
    }

    #[test]
    fn saved_lines_parse_into_previous_states() {
        assert_eq!(parse_saved("x\nP\tabsent\n"), Some(PreviousFile::Absent));
        assert_eq!(
            parse_saved("P\tfile\t644\troot\tstaff\tabc\tfiles/3\n"),
            Some(PreviousFile::File {
                mode: "0644".into(),
                owner: "root".into(),
                group: "staff".into(),
                sha256: "abc".into(),
                saved: "files/3".into()
            })
        );
        assert_eq!(
            parse_saved("P\tlink\t/etc/x\n"),
            Some(PreviousFile::Link {
                target: "/etc/x".into()
            })
        );
        assert_eq!(parse_saved("nothing"), None);
    }

    #[test]
    fn a_path_is_saved_once_per_release() {
        let loc = StateLocation::for_host("p", Some("deploy"), true, None);
        assert_eq!(loc.root, "/var/lib/deployer/p");
        let r = Recorder::new("20260101T000000Z-000001", "p", "h", "apply", loc, 5);
        assert!(r.is_empty());
        let s = r.save_snippet("/etc/a b").expect("first");
        assert!(s.contains("'/etc/a b'") && s.contains("files/0"));
        r.note_saved("/etc/a b", "t", "P\tabsent\n");
        assert!(r.save_snippet("/etc/a b").is_none());
        assert!(!r.is_empty());
        let user = StateLocation::for_host("p", Some("deploy"), false, None);
        assert_eq!(user.root, "~deploy/.local/state/deployer/p");
        assert!(user.become_.is_none());
    }

    #[test]
    fn list_output_parses_oldest_first() {
        let loc = StateLocation::for_host("p", Some("root"), false, None);
        let mk = |id: &str| {
            let r = Recorder::new(id, "p", "h", "apply", loc.clone(), 5);
            serde_json::to_string(&r.record(None, "ok", None, TaskSummary::default(), vec![]))
                .expect("json")
        };
        let out = format!("\u{1e}\n{}\n\u{1e}\n{}\n", mk("2"), mk("1"));
        let l = parse_list(&out).expect("parse");
        assert_eq!(
            l.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert!(parse_list("\u{1e}{bad").is_err());
    }
}
