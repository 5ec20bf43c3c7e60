//! Backups kept on the host: `deployer.backup.postgres` (databases dumped with
//! `pg_dump -Fc` in their container, through the Docker API) and
//! `deployer.backup.volume` (a named volume or a directory of the host, as a
//! tar). Each backup is a file and a manifest:
//!
//! ```text
//! /var/backups/deployer/<project>/<database or volume>/<id>.dump|.tar   0600
//! /var/backups/deployer/<project>/<database or volume>/<id>.json        0600 (the manifest)
//! ```
//!
//! every directory 0700, owned by the user the task becomes (root). The data
//! is streamed (never held whole in memory): from the container through the
//! Docker API to this machine and over SSH into a private staging directory
//! next to its destination (the safe-write rules of
//! [`crate::connection::write`]); its sha256 is computed on the way and again
//! on the host, and only a file whose two sums agree is renamed into place,
//! with its manifest. A failed dump (a database that does not exist, a full
//! disk) leaves nothing behind.
//!
//! After each successful backup, retention ([`retention`]) prunes the older
//! backups of the same database or volume.

pub mod postgres;
pub mod restore;
pub mod retention;
pub mod volume;

use std::time::SystemTime;

use bollard::Docker;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::connection::write::{RemoteWrite, prologue_making};
use crate::connection::{Become, Connection, shell_quote};

/// Where backups live unless a task says otherwise (`dest`).
pub const DEFAULT_DIR: &str = "/var/backups/deployer";

/// What a backup's manifest (`<id>.json`) says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    /// `postgres` or `volume`.
    pub kind: String,
    pub project: String,
    /// The database, or the volume (a directory's path for a directory).
    pub name: String,
    /// The container it was read from (none for a directory of the host).
    #[serde(default)]
    pub container: Option<String>,
    pub host: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub size: u64,
    pub sha256: String,
    /// The backup file's path on the host.
    pub file: String,
    /// `pg_dump -Fc` or `tar`.
    pub format: String,
    /// The release this backup was taken for, when one was named.
    #[serde(default)]
    pub release: Option<String>,
    /// The database role the dump was made as (postgres).
    #[serde(default)]
    pub login_user: Option<String>,
    /// The Docker named volume a volume backup was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// The host directory a volume backup was read from (`path:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Manifest {
    /// Seconds since the epoch of `created` (0 when unreadable).
    pub fn created_secs(&self) -> u64 {
        crate::state::lock::parse_rfc3339(&self.created).unwrap_or(0)
    }
}

/// The time backups are stamped with: the system clock, or a simulated one
/// in tests (retention over months runs in a millisecond).
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A new backup id: `<name>-<UTC time>` (`plane-20261202T014413Z`), sortable
/// per database and readable in listings.
pub fn new_id(name: &str, clock: &dyn Clock) -> (String, String) {
    let created = crate::state::lock::rfc3339(clock.now());
    let compact: String = created
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    (format!("{name}-{compact}"), created)
}

/// Names that become directory names and SQL identifiers: letters, digits,
/// `_` and `-`, not starting with `-`, at most 63 characters (PostgreSQL's limit).
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{s}' is not usable: expected 1 to 63 letters, digits, '_' or '-' (not starting with '-')"
        ))
    }
}

/// A backup id as `deployer restore --backup` takes it.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with(['-', '.'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "backup id '{id}' is malformed: ids are letters, digits, '_' and '-' (as `deployer backups` lists them)"
        ))
    }
}

/// An absolute directory without `..`, for `dest`.
pub fn check_dir(what: &str, d: &str) -> Result<(), String> {
    if !d.starts_with('/') || d.split('/').any(|p| p == "..") || d.contains('\n') {
        return Err(format!(
            "{what} '{d}' must be an absolute path without '..'"
        ));
    }
    Ok(())
}

/// The directory one database's or volume's backups live in.
pub fn backup_dir(root: &str, project: &str, name: &str) -> String {
    format!("{}/{project}/{name}", root.trim_end_matches('/'))
}

/// How the staged file is made on the host.
pub enum Producer {
    /// From the script's stdin (streamed by deployer).
    Stdin,
    /// `tar` of a directory of the host.
    Tar(String),
}

/// Prefix of staging directories (`mktemp -d`), next to the backups.
const STAGING: &str = ".deployer-backup.";

/// The first step on the host: make the backup directory (0700), stage the
/// data in a private directory there, and print `S\t<staging>\t<sha256>\t<size>`
/// and the existing manifests (`M\t<json>`, one a line).
pub fn stage_script(dir: &str, producer: &Producer) -> String {
    let mut s = String::from("set -e\numask 077\n");
    s.push_str(&prologue_making(&format!("{dir}/"), dir, true));
    s.push_str(&format!(
        "__dw_at=$(stat -c %d:%i .)\n\
         __dw_s=$(mktemp -d ./{STAGING}XXXXXX) || __dw_fail \"cannot create a temporary directory in $__dw_dir\"\n\
         __dw_s=${{__dw_s#./}}\n\
         __dw_keep=\n\
         trap 'if [ -z \"$__dw_keep\" ]; then cd -P -- \"$__dw_dir\" && rm -f -- \"./$__dw_s/new\" && rmdir -- \"./$__dw_s\"; fi 2>/dev/null; :' EXIT\n\
         cd -P -- \"$__dw_s\"\n\
         [ \"$(stat -c '%u %a' .)\" = \"$__dw_me 700\" ] && [ \"$(stat -c %d:%i ..)\" = \"$__dw_at\" ] || __dw_fail \"refusing to write in $__dw_dir: its temporary directory was replaced while in use\"\n"
    ));
    match producer {
        Producer::Stdin => s.push_str(
            "cat > new || __dw_fail \"writing the backup into $__dw_dir failed\"\n",
        ),
        Producer::Tar(path) => s.push_str(&format!(
            "[ -d {q} ] && [ ! -L {q} ] || __dw_fail \"{p} is not a directory on the host\"\n\
             tar -C {q} -cf - . > new || __dw_fail \"writing the backup of {p} into $__dw_dir failed\"\n",
            q = shell_quote(path),
            p = path.replace(['"', '$', '`', '\\'], "_"),
        )),
    }
    s.push_str(
        "sync new 2>/dev/null || true\n\
         __dw_sum=$(sha256sum new)\n\
         __dw_size=$(stat -c %s new)\n\
         __dw_keep=1\n\
         printf 'S\\t%s\\t%s\\t%s\\n' \"$__dw_s\" \"${__dw_sum%% *}\" \"$__dw_size\"\n\
         cd ..\n\
         for __dw_m in ./*.json; do [ -f \"$__dw_m\" ] && [ ! -L \"$__dw_m\" ] || continue; printf 'M\\t'; tr -d '\\n' < \"$__dw_m\"; echo; done\n",
    );
    s
}

/// What the stage step printed.
pub struct Staged {
    pub staging: String,
    pub sha256: String,
    pub size: u64,
    pub existing: Vec<Manifest>,
}

pub fn parse_staged(stdout: &str) -> Option<Staged> {
    let mut staged = None;
    let mut existing = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("S\t") {
            let mut p = rest.split('\t');
            let (Some(d), Some(sum), Some(size)) = (p.next(), p.next(), p.next()) else {
                continue;
            };
            if !d.starts_with(STAGING) || d.contains('/') {
                continue;
            }
            staged = Some((d.to_string(), sum.to_string(), size.parse().ok()?));
        } else if let Some(json) = line.strip_prefix("M\t")
            && let Ok(m) = serde_json::from_str::<Manifest>(json)
        {
            existing.push(m);
        }
    }
    let (staging, sha256, size) = staged?;
    Some(Staged {
        staging,
        sha256,
        size,
        existing,
    })
}

/// Removes a staged file (the dump failed or its sums disagree).
pub fn discard_script(dir: &str, staging: &str) -> String {
    let mut s = String::from("set -e\numask 077\n");
    s.push_str(&prologue_making(&format!("{dir}/"), dir, false));
    s.push_str(&format!(
        "__dw_s={}\n\
         case $__dw_s in {STAGING}*) ;; *) exit 0 ;; esac\n\
         [ -d \"./$__dw_s\" ] && [ ! -L \"./$__dw_s\" ] || exit 0\n\
         rm -f -- \"./$__dw_s/new\"\n\
         rmdir -- \"./$__dw_s\"\n",
        shell_quote(staging)
    ));
    s
}

/// The second step: the staged file (its sum checked once more) becomes
/// `<id>.<ext>` (0600), its manifest `<id>.json` (0600) is written, then the
/// backups `prune` names are removed.
pub fn commit_script(
    dir: &str,
    staged: &Staged,
    m: &Manifest,
    ext: &str,
    prune: &[String],
) -> Result<String, String> {
    let mut s = String::from("set -e\numask 077\n");
    s.push_str(&prologue_making(&format!("{dir}/"), dir, false));
    s.push_str(&format!(
        "__dw_at=$(stat -c %d:%i .)\n\
         __dw_s={staging}\n\
         __dw_file={file}\n\
         [ -d \"./$__dw_s\" ] && [ ! -L \"./$__dw_s\" ] || __dw_fail \"the staged backup in $__dw_dir/$__dw_s is gone\"\n\
         cd -P -- \"./$__dw_s\"\n\
         [ \"$(stat -c '%u %a' .)\" = \"$__dw_me 700\" ] && [ \"$(stat -c %d:%i ..)\" = \"$__dw_at\" ] || __dw_fail \"refusing to use $__dw_dir/$__dw_s: it was replaced while in use\"\n\
         __dw_sum=$(sha256sum new)\n\
         [ \"${{__dw_sum%% *}}\" = {sum} ] || __dw_fail \"the staged backup in $__dw_dir/$__dw_s changed on the host (checksum)\"\n\
         chmod 0600 new\n\
         [ ! -e \"../$__dw_file\" ] && [ ! -L \"../$__dw_file\" ] || __dw_fail \"$__dw_dir/$__dw_file exists already\"\n\
         mv -f -T -- new \"../$__dw_file\"\n\
         cd ..\n\
         rmdir -- \"./$__dw_s\"\n\
         sync . 2>/dev/null || true\n",
        staging = shell_quote(&staged.staging),
        file = shell_quote(&format!("{}.{ext}", m.id)),
        sum = shell_quote(&staged.sha256),
    ));
    let json = serde_json::to_string(m).map_err(|e| e.to_string())?;
    let manifest_path = format!("{dir}/{}.json", m.id);
    s.push_str(
        &RemoteWrite::new(&manifest_path, format!("{json}\n").as_bytes())
            .mode(Some(0o600))
            .script()?,
    );
    for id in prune {
        check_id(id)?;
        s.push_str(&format!(
            "rm -f -- {d} {j}\n",
            d = shell_quote(&format!("./{id}.{ext}")),
            j = shell_quote(&format!("./{id}.json")),
        ));
    }
    Ok(s)
}

/// Lists every manifest under `root` (`M\t<json>` lines), any project.
pub fn list_script(root: &str) -> String {
    format!(
        "set -e\n\
         __r={}\n\
         [ -d \"$__r\" ] || exit 0\n\
         cd -P -- \"$__r\"\n\
         for __m in ./*/*/*.json; do [ -f \"$__m\" ] && [ ! -L \"$__m\" ] || continue; printf 'M\\t'; tr -d '\\n' < \"$__m\"; echo; done\n",
        shell_quote(root)
    )
}

/// The manifests a [`list_script`] printed.
pub fn parse_list(stdout: &str) -> Vec<Manifest> {
    let mut v: Vec<Manifest> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("M\t"))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    v.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    v
}

/// Every backup manifest on the host, oldest first.
pub async fn list(
    conn: &Connection,
    become_: Option<&Become>,
    root: &str,
) -> Result<Vec<Manifest>, String> {
    let out = conn
        .run_script(&list_script(root), become_)
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!(
            "listing the backups in {root} failed: {}",
            out.stderr_str().trim()
        ));
    }
    Ok(parse_list(&out.stdout_str()))
}

/// What a command run in a container printed.
pub struct ExecOutput {
    pub code: i64,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `cmd` in `container` (no shell) with `stdin` as its input, and
/// collects what it printed and its exit code.
pub async fn exec_collect(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    user: Option<&str>,
    stdin: Option<&[u8]>,
) -> Result<ExecOutput, String> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use tokio::io::AsyncWriteExt;
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions::<String> {
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                user: user.map(str::to_string),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot run {} in container '{container}': {e}", cmd[0]))?;
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| format!("cannot run {} in container '{container}': {e}", cmd[0]))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    {
        if let Some(data) = stdin {
            let _ = input.write_all(data).await;
        }
        let _ = input.shutdown().await;
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(bollard::container::LogOutput::StdOut { message }) => {
                    stdout.extend_from_slice(&message)
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    stderr.extend_from_slice(&message)
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "reading the output of {} in container '{container}': {e}",
                        cmd[0]
                    ));
                }
            }
        }
    }
    let code = exec_code(docker, &exec.id).await?;
    Ok(ExecOutput {
        code,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
    })
}

/// The exit code of a finished exec (waits a little for the daemon to see it end).
pub async fn exec_code(docker: &Docker, id: &str) -> Result<i64, String> {
    for _ in 0..50 {
        let info = docker
            .inspect_exec(id)
            .await
            .map_err(|e| format!("inspecting a command run in a container: {e}"))?;
        if info.running != Some(true) {
            return Ok(info.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err("a command run in a container did not end".into())
}

/// The container's state: an error naming host and container unless it runs.
pub async fn require_running(docker: &Docker, host: &str, container: &str) -> Result<(), String> {
    match docker.inspect_container(container, None).await {
        Ok(info) => {
            let state = info.state.as_ref();
            if state.and_then(|s| s.running) == Some(true) {
                Ok(())
            } else {
                let status = state
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "not running".into());
                Err(format!(
                    "host {host}: container '{container}' is not running (status: {status})"
                ))
            }
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(format!(
            "host {host}: container '{container}' does not exist"
        )),
        Err(e) => Err(format!(
            "host {host}: inspecting container '{container}': {e}"
        )),
    }
}

/// Where `copy_to_control` puts a backup on this machine:
/// `<root>/<host>/<project>/<name>/`.
pub fn control_dir(root: &std::path::Path, m: &Manifest) -> std::path::PathBuf {
    root.join(&m.host).join(&m.project).join(&m.name)
}

/// The `copy_to_control` directory of a task: absolute, or relative to the
/// playbook's directory.
pub fn control_root(
    playbook_dir: &std::path::Path,
    dir: &str,
) -> Result<std::path::PathBuf, String> {
    let p = std::path::Path::new(dir);
    if dir.is_empty() || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!(
            "copy_to_control '{dir}': expected a directory on the control machine without '..'"
        ));
    }
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        playbook_dir.join(p)
    })
}

/// Copies a kept backup from the host to this machine (`copy_to_control`):
/// streamed into a private temporary file (0600, in directories made 0700),
/// its sha256 checked against the manifest, then renamed into place with
/// the manifest beside it. Returns the local path.
pub async fn copy_to_control(
    conn: &Connection,
    become_: Option<&Become>,
    m: &Manifest,
    root: &std::path::Path,
) -> Result<std::path::PathBuf, String> {
    use sha2::Digest;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use tokio::io::AsyncWriteExt;
    let dir = control_dir(root, m);
    let host = &conn.name;
    let ext = m.file.rsplit('.').next().unwrap_or("dump");
    let name = format!("{}.{ext}", m.id);
    let fail = |why: String| {
        format!(
            "host {host}: copying {} to {} on the control machine failed: {why}",
            m.file,
            dir.join(&name).display()
        )
    };
    for part in [&m.host, &m.project, &m.name] {
        if part.is_empty() || part.contains('/') || part.starts_with('.') {
            return Err(fail(format!("'{part}' is not usable as a directory name")));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(e.to_string()))?;
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("it is not a directory".into()));
    }
    let target = dir.join(&name);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(fail("the file exists already".into()));
    }
    let tmp = dir.join(format!(".{name}.part.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(e.to_string()))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = sha2::Sha256::new();
    let mut seen = |b: &[u8]| hasher.update(b);
    let piped = conn
        .run_piped_out(&restore::cat_script(&m.file), become_, &mut file, &mut seen)
        .await;
    let flushed = file.flush().await.and(file.sync_all().await);
    drop(file);
    let problem = match (piped, flushed) {
        (Err(e), _) => Some(e.to_string()),
        (Ok((out, _)), _) if out.rc != 0 => Some(format!(
            "reading it on the host failed: {}",
            out.stderr_str().trim()
        )),
        (Ok((_, Err(e))), _) => Some(e),
        (_, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let sum = hex::encode(hasher.finalize());
    let problem = problem.or_else(|| {
        (sum != m.sha256).then(|| format!("sha256 {sum} received, the manifest says {}", m.sha256))
    });
    if let Some(p) = problem {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(p));
    }
    std::fs::rename(&tmp, &target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e.to_string())
    })?;
    let json = serde_json::to_string_pretty(m).map_err(|e| fail(e.to_string()))?;
    let mtmp = dir.join(format!(".{}.json.part.{}", m.id, std::process::id()));
    let _ = std::fs::remove_file(&mtmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&mtmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{json}\n").as_bytes()))
        .and_then(|()| std::fs::rename(&mtmp, dir.join(format!("{}.json", m.id))))
        .map_err(|e| {
            let _ = std::fs::remove_file(&mtmp);
            fail(format!("writing the manifest: {e}"))
        })?;
    Ok(target)
}

/// The data of a finished backup, as the task registers it.
pub fn manifest_json(m: &Manifest) -> Json {
    serde_json::to_value(m).unwrap_or(Json::Null)
}

/// Streams `chunks` into a new backup on the host and keeps it when its
/// sha256 (computed here on the way, and on the host) agrees and `finished`
/// says the producer succeeded; then prunes by `policy`. `describe` names
/// what is backed up, for messages.
#[allow(clippy::too_many_arguments)]
pub async fn store<S, F>(
    conn: &Connection,
    become_: Option<&Become>,
    dir: &str,
    mut manifest: Manifest,
    ext: &str,
    producer: Producer,
    chunks: S,
    finished: F,
    policy: &retention::Policy,
) -> Result<(Manifest, Vec<String>), String>
where
    S: futures::Stream<Item = Result<Vec<u8>, String>> + Send + Unpin,
    F: std::future::Future<Output = Result<(), String>>,
{
    use sha2::Digest;
    let host = conn.name.clone();
    let target = format!("{dir}/{}.{ext}", manifest.id);
    let hasher = std::sync::Arc::new(std::sync::Mutex::new((sha2::Sha256::new(), 0u64)));
    let h2 = hasher.clone();
    let hashed = chunks.map(move |c| {
        if let Ok(bytes) = &c
            && let Ok(mut h) = h2.lock()
        {
            h.0.update(bytes);
            h.1 += bytes.len() as u64;
        }
        c
    });
    let script = stage_script(dir, &producer);
    let (out, fed) = conn
        .run_piped_in(&script, become_, hashed)
        .await
        .map_err(|e| e.to_string())?;
    let produced = finished.await;
    let staged = parse_staged(&out.stdout_str());
    let fail = |why: String| format!("host {host}: {why}; nothing was kept at {target}");
    let problem = if out.rc != 0 || staged.is_none() {
        Some(format!(
            "writing {target} failed: {}",
            crate::secrets::mask(out.stderr_str().trim())
        ))
    } else if let Err(e) = produced {
        Some(e)
    } else {
        fed.err()
    };
    let Some(staged) = staged.filter(|_| problem.is_none()) else {
        if let Some(s) = parse_staged(&out.stdout_str()) {
            let _ = conn
                .run_script(&discard_script(dir, &s.staging), become_)
                .await;
        }
        return Err(fail(problem.unwrap_or_else(|| "the backup failed".into())));
    };
    let (sum, size) = match hasher.lock() {
        Ok(h) => (hex::encode(h.0.clone().finalize()), h.1),
        Err(_) => return Err(fail("internal error: checksum state lost".into())),
    };
    let sum = match producer {
        // A tar made on the host: the host's sum is the only one.
        Producer::Tar(_) => staged.sha256.clone(),
        Producer::Stdin => sum,
    };
    if sum != staged.sha256 || (matches!(producer, Producer::Stdin) && size != staged.size) {
        let _ = conn
            .run_script(&discard_script(dir, &staged.staging), become_)
            .await;
        return Err(fail(format!(
            "the data arrived damaged (sha256 {sum} sent, {} written)",
            staged.sha256
        )));
    }
    manifest.sha256 = sum;
    manifest.size = staged.size;
    manifest.file = target.clone();
    let mut all = staged.existing.clone();
    all.retain(|m| m.kind == manifest.kind && m.id != manifest.id);
    all.push(manifest.clone());
    let pruned = retention::prune(&all, policy);
    let script = commit_script(dir, &staged, &manifest, ext, &pruned)?;
    let out = conn
        .run_script(&script, become_)
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        let _ = conn
            .run_script(&discard_script(dir, &staged.staging), become_)
            .await;
        return Err(fail(format!(
            "keeping the backup failed: {}",
            out.stderr_str().trim()
        )));
    }
    Ok((manifest, pruned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        assert!(check_name("database", "plane_db-1").is_ok());
        for bad in ["", "-x", "a b", "a/b", "x;rm", "é", &"a".repeat(64)] {
            assert!(check_name("database", bad).is_err(), "{bad}");
        }
        assert!(check_id("plane-20261202T014413Z").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert!(check_dir("dest", "/var/backups").is_ok());
        assert!(check_dir("dest", "rel").is_err());
        assert!(check_dir("dest", "/a/../b").is_err());
    }

    /// The stage and commit scripts run for real by the local shell: a
    /// streamed file kept 0600 in a 0700 tree with its manifest, older ones
    /// pruned, a damaged one discarded.
    #[tokio::test]
    async fn local_store_keeps_a_private_file_and_its_manifest() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("backups");
        let dir = backup_dir(&root.display().to_string(), "proj", "db");
        let c = Connection::local("localhost");
        struct At(u64);
        impl Clock for At {
            fn now(&self) -> SystemTime {
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.0)
            }
        }
        let mut ids = Vec::new();
        for day in 0..3u64 {
            let (id, created) = new_id("db", &At(1_790_000_000 + day * 86_400));
            let m = Manifest {
                id: id.clone(),
                kind: "postgres".into(),
                project: "proj".into(),
                name: "db".into(),
                container: Some("pg".into()),
                host: "localhost".into(),
                created,
                size: 0,
                sha256: String::new(),
                file: String::new(),
                format: "pg_dump -Fc".into(),
                release: None,
                login_user: None,
                volume: None,
                path: None,
            };
            let chunks: Vec<Result<Vec<u8>, String>> =
                vec![Ok(b"PGDMP".to_vec()), Ok(vec![day as u8; 100_000])];
            let policy = retention::Policy {
                daily: 2,
                weekly: 0,
                monthly: 0,
            };
            let (kept, _) = store(
                &c,
                None,
                &dir,
                m,
                "dump",
                Producer::Stdin,
                futures::stream::iter(chunks),
                async { Ok(()) },
                &policy,
            )
            .await
            .expect("store");
            assert_eq!(kept.size, 100_005);
            ids.push(id);
        }
        let mode = |p: &std::path::Path| {
            std::fs::symlink_metadata(p)
                .expect("meta")
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("proj")), 0o700);
        assert_eq!(mode(std::path::Path::new(&dir)), 0o700);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // The oldest was pruned (daily: 2), no staging directory left.
        assert_eq!(
            names,
            vec![
                format!("{}.dump", ids[1]),
                format!("{}.json", ids[1]),
                format!("{}.dump", ids[2]),
                format!("{}.json", ids[2]),
            ]
        );
        for n in &names {
            assert_eq!(mode(&std::path::Path::new(&dir).join(n)), 0o600, "{n}");
        }
        let listed = list(&c, None, &root.display().to_string())
            .await
            .expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].id, ids[2]);
        // A producer that failed: nothing kept, nothing left behind.
        let (id, created) = new_id("db", &At(1_790_400_000));
        let m = Manifest {
            id,
            created,
            ..listed[1].clone()
        };
        let e = store(
            &c,
            None,
            &dir,
            m,
            "dump",
            Producer::Stdin,
            futures::stream::iter(vec![Ok(b"partial".to_vec())]),
            async { Err("pg_dump failed: database \"x\" does not exist".to_string()) },
            &retention::Policy::default(),
        )
        .await
        .expect_err("must fail");
        assert!(
            e.contains("does not exist") && e.contains("nothing was kept"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 4);
    }
}
