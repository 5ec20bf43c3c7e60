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

fn cat_script(file: &str) -> String {
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
