//! Restoring a PostgreSQL backup into a container, so that the live database
//! is never dropped before its replacement loaded completely:
//!
//! 1. the backup file's sha256 on the host must match its manifest (else
//!    nothing is touched);
//! 2. the dump is loaded into a new database `<target>_restore_<n>`
//!    (`pg_restore --exit-on-error`, streamed from the backup's host), its
//!    sha256 checked again on the way; an optional SQL file (anonymisation)
//!    runs in it;
//! 3. only then, in one step: connections to the target are closed, the
//!    target is renamed aside and the new database takes its name; the old
//!    copy is dropped last.
//!
//! Any failure before step 3 drops the new database and leaves the target as
//! it was.

use bollard::Docker;

use super::{Manifest, check_name, exec_collect};
use crate::connection::{Become, Connection, shell_quote};

/// One restore: where the backup is, where it goes.
pub struct Request<'a> {
    /// The host holding the backup file.
    pub source: &'a Connection,
    pub source_become: Option<&'a Become>,
    /// The host whose container receives it (the same host, or staging).
    pub target: &'a Connection,
    pub target_become: Option<&'a Become>,
    pub socket: String,
    pub manifest: &'a Manifest,
    pub container: String,
    /// The database to replace (or create).
    pub into: String,
    pub login_user: String,
    /// SQL run in the new copy before it replaces the target.
    pub after_load_sql: Option<(String, String)>,
}

impl Request<'_> {
    /// The plan, in words (what `--yes` would do).
    pub fn describe(&self) -> Vec<String> {
        let m = self.manifest;
        let mut v = vec![
            format!(
                "verify {} on {} against its sha256 {}",
                m.file, self.source.name, m.sha256
            ),
            format!(
                "load it with pg_restore into a new database '{}' in container '{}' on {}",
                temp_name(&self.into),
                self.container,
                self.target.name
            ),
        ];
        if let Some((name, _)) = &self.after_load_sql {
            v.push(format!("run {name} in that new database"));
        }
        v.push(format!(
            "then replace database '{}' with it (connections to '{}' are closed; the old copy is dropped only after the swap)",
            self.into, self.into
        ));
        v
    }

    pub fn check(&self) -> Result<(), String> {
        if self.manifest.kind != "postgres" {
            return Err(format!(
                "backup {} is a {} backup: restoring it is not supported yet by deployer (only PostgreSQL backups are restored)",
                self.manifest.id, self.manifest.kind
            ));
        }
        check_name("--into", &self.into)?;
        check_name("login user", &self.login_user)?;
        super::check_dir("backup file", &self.manifest.file)?;
        Ok(())
    }
}

/// The temporary database a restore loads into.
pub fn temp_name(into: &str) -> String {
    let base: String = into.chars().take(40).collect();
    format!("{base}_restore_tmp")
}

fn verify_script(file: &str) -> String {
    let q = shell_quote(file);
    format!(
        "set -e\n\
         [ -f {q} ] && [ ! -L {q} ] || {{ echo \"backup file {f} is missing on the host\" >&2; exit 3; }}\n\
         __s=$(sha256sum < {q})\n\
         printf '%s\\n' \"${{__s%% *}}\"\n",
        f = file.replace(['"', '$', '`', '\\'], "_")
    )
}

pub(super) fn cat_script(file: &str) -> String {
    let q = shell_quote(file);
    format!("set -e\n[ -f {q} ] && [ ! -L {q} ]\nexec cat -- {q}\n")
}

/// psql with `sql` on stdin, in database `db`; an error names host and container.
async fn psql(docker: &Docker, r: &Request<'_>, db: &str, sql: &str) -> Result<String, String> {
    let out = exec_collect(
        docker,
        &r.container,
        &[
            "psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            &r.login_user,
            "-d",
            db,
        ],
        None,
        Some(sql.as_bytes()),
    )
    .await
    .map_err(|e| format!("host {}: {e}", r.target.name))?;
    if out.code != 0 {
        return Err(format!(
            "host {}: container '{}': psql in database '{db}' failed (exit {}): {}",
            r.target.name,
            r.container,
            out.code,
            crate::secrets::mask(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs the restore; returns a one-line summary.
pub async fn restore(r: &Request<'_>) -> Result<String, String> {
    r.check()?;
    let m = r.manifest;
    let src = &r.source.name;
    let untouched = format!(
        "nothing was restored; database '{}' in container '{}' on {} is untouched",
        r.into, r.container, r.target.name
    );
    // 1. The checksum, before anything.
    let out = r
        .source
        .run_script(&verify_script(&m.file), r.source_become)
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!(
            "host {src}: {} ({untouched})",
            out.stderr_str().trim()
        ));
    }
    let sum = out.stdout_str().trim().to_string();
    if sum != m.sha256 {
        return Err(format!(
            "host {src}: backup {} at {} fails its checksum (manifest sha256 {}, file {sum}): {untouched}",
            m.id, m.file, m.sha256
        ));
    }
    let docker = r
        .target
        .docker(&r.socket, r.target_become)
        .await
        .map_err(|e| e.to_string())?;
    super::require_running(&docker, &r.target.name, &r.container)
        .await
        .map_err(|e| format!("{e}: {untouched}"))?;
    let temp = temp_name(&r.into);
    let target_exists = !psql(
        &docker,
        r,
        "postgres",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{}';\n", r.into),
    )
    .await?
    .is_empty();
    let owner = if target_exists {
        psql(
            &docker,
            r,
            "postgres",
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{}';\n",
                r.into
            ),
        )
        .await?
    } else {
        m.login_user.clone().unwrap_or_else(|| r.login_user.clone())
    };
    check_name("database owner", &owner)?;
    // 2. A new database, loaded completely.
    psql(
        &docker,
        r,
        "postgres",
        &format!(
            "DROP DATABASE IF EXISTS \"{temp}\";\nCREATE DATABASE \"{temp}\" OWNER \"{owner}\" TEMPLATE template0;\n"
        ),
    )
    .await
    .map_err(|e| format!("{e}: {untouched}"))?;
    let loaded = load(&docker, r, &temp).await;
    let loaded = match (loaded, &r.after_load_sql) {
        (Ok(()), Some((name, sql))) => psql(&docker, r, &temp, sql)
            .await
            .map(|_| ())
            .map_err(|e| format!("{name}: {e}")),
        (other, _) => other,
    };
    if let Err(e) = loaded {
        let _ = psql(
            &docker,
            r,
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{temp}\";\n"),
        )
        .await;
        return Err(format!("{e}; {untouched}"));
    }
    // 3. The swap.
    let into = &r.into;
    let old = format!(
        "{}_before_restore",
        into.chars().take(40).collect::<String>()
    );
    let swap = if target_exists {
        format!(
            "DROP DATABASE IF EXISTS \"{old}\";\n\
             ALTER DATABASE \"{into}\" WITH ALLOW_CONNECTIONS false;\n\
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{into}' AND pid <> pg_backend_pid();\n\
             DO $$ BEGIN FOR i IN 1..100 LOOP PERFORM pg_stat_clear_snapshot(); \
             IF NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = '{into}' AND pid <> pg_backend_pid()) THEN RETURN; END IF; \
             PERFORM pg_sleep(0.1); END LOOP; RAISE EXCEPTION 'connections to {into} did not close'; END $$;\n\
             BEGIN;\n\
             ALTER DATABASE \"{into}\" RENAME TO \"{old}\";\n\
             ALTER DATABASE \"{temp}\" RENAME TO \"{into}\";\n\
             COMMIT;\n\
             ALTER DATABASE \"{old}\" WITH ALLOW_CONNECTIONS true;\n"
        )
    } else {
        format!("ALTER DATABASE \"{temp}\" RENAME TO \"{into}\";\n")
    };
    if let Err(e) = psql(&docker, r, "postgres", &swap).await {
        // Back as it was: the target takes connections again, the copy goes.
        let _ = psql(
            &docker,
            r,
            "postgres",
            &format!(
                "ALTER DATABASE \"{into}\" WITH ALLOW_CONNECTIONS true;\nDROP DATABASE IF EXISTS \"{temp}\";\n"
            ),
        )
        .await;
        return Err(format!("{e}; {untouched}"));
    }
    if target_exists
        && let Err(e) = psql(
            &docker,
            r,
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{old}\";\n"),
        )
        .await
    {
        return Ok(format!(
            "restored backup {} into database '{into}' of container '{}' on {}; the previous copy is kept as '{old}' (dropping it failed: {e})",
            m.id, r.container, r.target.name
        ));
    }
    Ok(format!(
        "restored backup {} ({} bytes) into database '{into}' of container '{}' on {}{}",
        m.id,
        m.size,
        r.container,
        r.target.name,
        if target_exists {
            " (the previous copy was replaced after the new one loaded completely)"
        } else {
            ""
        }
    ))
}

/// `cat` on the backup's host, streamed into `pg_restore` in the container;
/// the sha256 is checked on the way.
async fn load(docker: &Docker, r: &Request<'_>, temp: &str) -> Result<(), String> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures::StreamExt;
    use sha2::Digest;
    let host = &r.target.name;
    let c = &r.container;
    let exec = docker
        .create_exec(
            c,
            CreateExecOptions::<String> {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(
                    [
                        "pg_restore",
                        "--exit-on-error",
                        "--no-password",
                        "-U",
                        &r.login_user,
                        "-d",
                        temp,
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                ),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("host {host}: container '{c}': cannot run pg_restore: {e}"))?;
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| format!("host {host}: container '{c}': cannot run pg_restore: {e}"))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(format!(
            "host {host}: container '{c}': pg_restore did not attach"
        ));
    };
    let mut hasher = sha2::Sha256::new();
    let mut seen = |b: &[u8]| hasher.update(b);
    let script = cat_script(&r.manifest.file);
    let pipe = r
        .source
        .run_piped_out(&script, r.source_become, &mut input, &mut seen);
    let collect = async {
        let mut text = Vec::new();
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(bollard::container::LogOutput::StdErr { message })
                | Ok(bollard::container::LogOutput::StdOut { message }) => {
                    if text.len() < 64 * 1024 {
                        text.extend_from_slice(&message)
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&text).trim().to_string()
    };
    let (piped, text) = tokio::join!(pipe, collect);
    let code = super::exec_code(docker, &exec.id).await?;
    let (out, sent) = piped.map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!(
            "host {}: reading {} failed: {}",
            r.source.name,
            r.manifest.file,
            out.stderr_str().trim()
        ));
    }
    if code != 0 {
        return Err(format!(
            "host {host}: container '{c}': pg_restore into '{temp}' failed (exit {code}): {}",
            crate::secrets::mask(&text)
        ));
    }
    sent.map_err(|e| format!("host {host}: container '{c}': feeding pg_restore: {e}"))?;
    let sum = hex::encode(hasher.finalize());
    if sum != r.manifest.sha256 {
        return Err(format!(
            "host {}: {} changed while it was read (sha256 {sum}, manifest {})",
            r.source.name, r.manifest.file, r.manifest.sha256
        ));
    }
    Ok(())
}

/// A restore, planned: a database or a volume.
pub enum Planned<'a> {
    Database(Request<'a>),
    Volume(VolumeRequest<'a>),
}

impl Planned<'_> {
    pub fn describe(&self) -> Vec<String> {
        match self {
            Planned::Database(r) => r.describe(),
            Planned::Volume(r) => r.describe(),
        }
    }
    pub async fn run(&self) -> Result<String, String> {
        match self {
            Planned::Database(r) => restore(r).await,
            Planned::Volume(r) => restore_volume(r).await,
        }
    }
}

/// The restore of `m` on the host of `conn`, into its own database or
/// volume unless `into`/`container` say otherwise.
pub fn plan<'a>(
    m: &'a Manifest,
    conn: &'a Connection,
    b: Option<&'a Become>,
    into: Option<&str>,
    container: Option<&str>,
) -> Result<Planned<'a>, String> {
    let host = &conn.name;
    let socket = crate::connection::docker::DEFAULT_SOCKET.to_string();
    match m.kind.as_str() {
        "postgres" => {
            let container = container
                .map(str::to_string)
                .or_else(|| m.container.clone())
                .ok_or_else(|| format!("backup {} names no container: give --container", m.id))?;
            let req = Request {
                source: conn,
                source_become: b,
                target: conn,
                target_become: b,
                socket,
                manifest: m,
                container,
                into: into.map(str::to_string).unwrap_or_else(|| m.name.clone()),
                login_user: m.login_user.clone().unwrap_or_else(|| "postgres".into()),
                after_load_sql: None,
            };
            req.check()
                .map_err(|e| format!("host {host}: {e}; nothing was changed"))?;
            Ok(Planned::Database(req))
        }
        "volume" => {
            if into.is_some() {
                return Err(format!(
                    "host {host}: --into names a database: backup {} is a volume backup, restored where it was read from; nothing was changed",
                    m.id
                ));
            }
            let req = VolumeRequest {
                conn,
                become_: b,
                socket,
                manifest: m,
                container: container.map(str::to_string),
            };
            req.check()
                .map_err(|e| format!("host {host}: {e}; nothing was changed"))?;
            Ok(Planned::Volume(req))
        }
        other => Err(format!(
            "host {host}: backup {} is a '{other}' backup: restoring it is not supported yet by deployer; nothing was changed",
            m.id
        )),
    }
}

/// Restoring a volume backup (`deployer.backup.volume`): a Docker named
/// volume through a running container that mounts it, or a directory of the
/// host. As for databases, the live files are replaced only once the whole
/// backup was unpacked next to them:
///
/// 1. the backup file's sha256 on the host must match its manifest;
/// 2. the tar is unpacked into a new private directory beside the live one
///    (a directory of the host: `.<name>.restore.XXXXXX` in its parent; a
///    volume: `.deployer-restore.XXXXXX` inside the volume, streamed through
///    the Docker API with its sha256 checked on the way);
/// 3. then the live entries are moved aside, the restored ones take their
///    place (renames only), and the old copy is deleted last.
pub struct VolumeRequest<'a> {
    pub conn: &'a Connection,
    pub become_: Option<&'a Become>,
    pub socket: String,
    pub manifest: &'a Manifest,
    /// The container a volume is restored through (default: one that mounts it).
    pub container: Option<String>,
}

impl VolumeRequest<'_> {
    pub fn check(&self) -> Result<(), String> {
        let m = self.manifest;
        if m.kind != "volume" {
            return Err(format!(
                "backup {} is a {} backup, not a volume backup",
                m.id, m.kind
            ));
        }
        super::check_dir("backup file", &m.file)?;
        match (&m.volume, &m.path) {
            (Some(v), None) => check_name("volume", v),
            (None, Some(p)) => {
                super::check_dir("directory", p)?;
                if p.trim_end_matches('/').is_empty() {
                    return Err(format!("backup {}: refusing to restore over /", m.id));
                }
                Ok(())
            }
            _ => Err(format!(
                "backup {}: its manifest names neither the volume nor the directory it was read from (a backup made by an older deployer): restore it by hand with tar from {}",
                m.id, m.file
            )),
        }
    }

    pub fn describe(&self) -> Vec<String> {
        let m = self.manifest;
        let host = &self.conn.name;
        let mut v = vec![format!(
            "verify {} on {host} against its sha256 {}",
            m.file, m.sha256
        )];
        match (&m.volume, &m.path) {
            (Some(vol), _) => {
                let through = self
                    .container
                    .clone()
                    .map(|c| format!("container '{c}'"))
                    .unwrap_or_else(|| "a running container that mounts it".into());
                v.push(format!(
                    "unpack it into a new directory inside volume '{vol}' through {through} on {host}"
                ));
                v.push(
                    "then replace the volume's files with it (renames; the old files are deleted only after the swap)"
                        .to_string(),
                );
            }
            (_, Some(p)) => {
                v.push(format!(
                    "unpack it into a new directory next to {p} on {host}"
                ));
                v.push(format!(
                    "then replace {p} with it (renames; the old copy is deleted only after the swap)"
                ));
            }
            _ => {}
        }
        v
    }
}

/// Restores a volume backup; returns a one-line summary.
pub async fn restore_volume(r: &VolumeRequest<'_>) -> Result<String, String> {
    r.check()?;
    match (&r.manifest.volume, &r.manifest.path) {
        (_, Some(p)) => restore_directory(r, p).await,
        (Some(v), _) => restore_named_volume(r, v).await,
        _ => Err("the backup names no volume or directory".into()),
    }
}

fn directory_script(file: &str, sum: &str, path: &str) -> String {
    format!(
        "set -e\n\
         umask 077\n\
         __f={f}\n\
         __sum={sum}\n\
         __p={p}\n\
         __fail() {{ printf '%s\\n' \"$1\" >&2; exit 3; }}\n\
         [ -f \"$__f\" ] && [ ! -L \"$__f\" ] || __fail \"backup file $__f is missing on the host\"\n\
         __s=$(sha256sum < \"$__f\")\n\
         [ \"${{__s%% *}}\" = \"$__sum\" ] || {{ printf 'CHECKSUM\\t%s\\n' \"${{__s%% *}}\"; exit 4; }}\n\
         __parent=$(dirname -- \"$__p\")\n\
         __base=$(basename -- \"$__p\")\n\
         [ -d \"$__parent\" ] && [ ! -L \"$__parent\" ] || __fail \"$__parent is not a directory on the host\"\n\
         cd -P -- \"$__parent\"\n\
         case \"$(stat -c %A .)\" in ?????w????|????????w?) __fail \"$__parent is writable by other users: refusing to restore in it\" ;; esac\n\
         [ ! -L \"./$__base\" ] || __fail \"$__p is a symbolic link: refusing to replace it\"\n\
         [ ! -e \"./$__base\" ] || [ -d \"./$__base\" ] || __fail \"$__p is not a directory\"\n\
         __new=$(mktemp -d \"./.$__base.restore.XXXXXX\") || __fail \"cannot create a temporary directory in $__parent\"\n\
         __ok=\n\
         trap '[ -n \"$__ok\" ] || rm -rf -- \"$__new\"' EXIT\n\
         tar -C \"$__new\" -xpf \"$__f\" || __fail \"unpacking $__f into $__parent failed\"\n\
         __old=\n\
         if [ -e \"./$__base\" ]; then __old=\"./.$__base.before-restore.$$\"; rm -rf -- \"$__old\"; mv -T -- \"./$__base\" \"$__old\"; fi\n\
         mv -T -- \"$__new\" \"./$__base\"\n\
         __ok=1\n\
         [ -z \"$__old\" ] || rm -rf -- \"$__old\"\n\
         sync . 2>/dev/null || true\n",
        f = shell_quote(file),
        sum = shell_quote(sum),
        p = shell_quote(path.trim_end_matches('/')),
    )
}

async fn restore_directory(r: &VolumeRequest<'_>, path: &str) -> Result<String, String> {
    let m = r.manifest;
    let host = &r.conn.name;
    let untouched = format!("nothing was restored; {path} on {host} is untouched");
    let out = r
        .conn
        .run_script(&directory_script(&m.file, &m.sha256, path), r.become_)
        .await
        .map_err(|e| e.to_string())?;
    if out.rc == 4 {
        let seen = out
            .stdout_str()
            .lines()
            .find_map(|l| l.strip_prefix("CHECKSUM\t").map(str::to_string))
            .unwrap_or_default();
        return Err(format!(
            "host {host}: backup {} at {} fails its checksum (manifest sha256 {}, file {seen}): {untouched}",
            m.id, m.file, m.sha256
        ));
    }
    if out.rc != 0 {
        return Err(format!(
            "host {host}: {} ({untouched})",
            out.stderr_str().trim()
        ));
    }
    Ok(format!(
        "restored backup {} ({} bytes) into {path} on {host} (the previous copy was replaced after the new one was unpacked completely)",
        m.id, m.size
    ))
}

/// The swap inside a volume, run by `sh` in the container with the mount
/// point and the staging directory as `$1` and `$2` (never shell text).
const VOLUME_SWAP: &str = r#"set -e
m=$1; d=$2
case $d in "$m"/.deployer-restore.*) ;; *) echo "unexpected staging directory $d" >&2; exit 3 ;; esac
n=0; top=
for e in "$d"/* "$d"/.[!.]* "$d"/..?*; do [ -e "$e" ] || [ -L "$e" ] || continue; n=$((n+1)); top=$e; done
[ "$n" = 1 ] && [ -d "$top" ] && [ ! -L "$top" ] || { echo "the backup does not hold exactly one directory" >&2; exit 3; }
o=$(mktemp -d "$m/.deployer-before-restore.XXXXXX")
for e in "$m"/* "$m"/.[!.]* "$m"/..?*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  case $e in "$d"|"$o") continue ;; esac
  mv -- "$e" "$o"/ || { echo "moving $e aside failed; the previous files are in $o" >&2; exit 3; }
done
for e in "$top"/* "$top"/.[!.]* "$top"/..?*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  mv -- "$e" "$m"/ || { echo "moving the restored $e into place failed; the previous files are in $o" >&2; exit 3; }
done
chown "$(stat -c %u:%g "$top")" "$m" 2>/dev/null || true
chmod "$(stat -c %a "$top")" "$m" 2>/dev/null || true
rm -rf -- "$d" "$o"
"#;

/// Where `container` mounts `volume`.
async fn mount_of(
    docker: &Docker,
    host: &str,
    container: &str,
    volume: &str,
) -> Result<String, String> {
    let info = docker
        .inspect_container(container, None)
        .await
        .map_err(|e| format!("host {host}: inspecting container '{container}': {e}"))?;
    info.mounts
        .unwrap_or_default()
        .into_iter()
        .find_map(|m| {
            (m.name.as_deref() == Some(volume))
                .then_some(m.destination)
                .flatten()
        })
        .ok_or_else(|| {
            format!("host {host}: container '{container}' does not mount volume '{volume}'")
        })
}

async fn restore_named_volume(r: &VolumeRequest<'_>, volume: &str) -> Result<String, String> {
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let m = r.manifest;
    let host = &r.conn.name;
    let untouched = format!("nothing was restored; volume '{volume}' on {host} is untouched");
    // 1. The checksum, before anything.
    let out = r
        .conn
        .run_script(&verify_script(&m.file), r.become_)
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!(
            "host {host}: {} ({untouched})",
            out.stderr_str().trim()
        ));
    }
    let sum = out.stdout_str().trim().to_string();
    if sum != m.sha256 {
        return Err(format!(
            "host {host}: backup {} at {} fails its checksum (manifest sha256 {}, file {sum}): {untouched}",
            m.id, m.file, m.sha256
        ));
    }
    let docker = r
        .conn
        .docker(&r.socket, r.become_)
        .await
        .map_err(|e| e.to_string())?;
    let (container, mount) = match &r.container {
        Some(c) => (c.clone(), mount_of(&docker, host, c, volume).await?),
        None => super::volume::mounting_container(&docker, host, volume).await?,
    };
    super::require_running(&docker, host, &container)
        .await
        .map_err(|e| {
            format!(
                "{e} (a volume is restored through a running container that mounts it): {untouched}"
            )
        })?;
    let untouched = format!(
        "nothing was restored; volume '{volume}' (mounted at {mount} in container '{container}') on {host} is untouched"
    );
    // 2. A private directory inside the volume, filled with the whole backup.
    let made = exec_collect(
        &docker,
        &container,
        &[
            "sh",
            "-c",
            "set -e; umask 077; mktemp -d \"$1/.deployer-restore.XXXXXX\"",
            "sh",
            &mount,
        ],
        None,
        None,
    )
    .await
    .map_err(|e| format!("host {host}: {e}: {untouched}"))?;
    let staging = String::from_utf8_lossy(&made.stdout).trim().to_string();
    if made.code != 0 || !staging.starts_with(&format!("{mount}/.deployer-restore.")) {
        return Err(format!(
            "host {host}: container '{container}': cannot create a directory in {mount}: {}: {untouched}",
            made.stderr
        ));
    }
    let discard = || async {
        let _ = exec_collect(
            &docker,
            &container,
            &["rm", "-rf", "--", &staging],
            None,
            None,
        )
        .await;
    };
    let (mut writer, reader) = tokio::io::duplex(256 * 1024);
    let mut hasher = sha2::Sha256::new();
    let mut seen = |b: &[u8]| hasher.update(b);
    let script = cat_script(&m.file);
    let feed = async {
        let fed = r
            .conn
            .run_piped_out(&script, r.become_, &mut writer, &mut seen)
            .await;
        let _ = writer.shutdown().await;
        fed
    };
    let upload = docker.upload_to_container(
        &container,
        Some(
            bollard::query_parameters::UploadToContainerOptionsBuilder::default()
                .path(&staging)
                .build(),
        ),
        bollard::body_try_stream(upload_body(reader)),
    );
    let (fed, uploaded) = tokio::join!(feed, upload);
    let problem = match (fed, uploaded) {
        (Err(e), _) => Some(format!("reading {}: {e}", m.file)),
        (Ok((out, _)), _) if out.rc != 0 => Some(format!(
            "reading {} failed: {}",
            m.file,
            out.stderr_str().trim()
        )),
        (_, Err(e)) => Some(format!(
            "container '{container}': unpacking into {staging} failed: {e}"
        )),
        _ => None,
    };
    let got = hex::encode(hasher.finalize());
    let problem = problem.or_else(|| {
        (got != m.sha256).then(|| {
            format!(
                "{} changed while it was read (sha256 {got}, manifest {})",
                m.file, m.sha256
            )
        })
    });
    if let Some(p) = problem {
        discard().await;
        return Err(format!("host {host}: {p}: {untouched}"));
    }
    // 3. The swap (renames), the old files deleted last.
    let swapped = exec_collect(
        &docker,
        &container,
        &["sh", "-c", VOLUME_SWAP, "sh", &mount, &staging],
        None,
        None,
    )
    .await
    .map_err(|e| format!("host {host}: {e}"))?;
    if swapped.code != 0 {
        discard().await;
        return Err(format!(
            "host {host}: container '{container}': replacing the files of volume '{volume}' at {mount} failed: {}",
            swapped.stderr
        ));
    }
    Ok(format!(
        "restored backup {} ({} bytes) into volume '{volume}' (mounted at {mount} in container '{container}') on {host} (the previous files were replaced after the new ones were unpacked completely)",
        m.id, m.size
    ))
}

/// The bytes read from `rd`, as a request body (`B` is the HTTP client's
/// byte buffer type).
fn upload_body<B: From<Vec<u8>> + Send + 'static>(
    rd: tokio::io::DuplexStream,
) -> impl futures::Stream<Item = Result<B, std::io::Error>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(rd), |rd| async move {
        let mut rd = rd?;
        let mut buf = vec![0u8; 64 * 1024];
        match rd.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(B::from(buf)), Some(rd)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
