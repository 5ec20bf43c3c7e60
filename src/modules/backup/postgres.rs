//! `deployer.backup.postgres`: dumps databases of a PostgreSQL container
//! (`pg_dump -Fc`, run in the container through the host's Docker API) into
//! the host's backup directory, then applies retention. See [`super`].
//!
//! ```yaml
//! - deployer.backup.postgres:
//!     container: plane-db
//!     databases: [plane]          # or database: plane
//!     project: plane
//!     login_user: plane           # the PostgreSQL role (default postgres)
//!     retention: {daily: 7, weekly: 4, monthly: 3}
//! ```

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::retention::PolicyArg;
use super::{Manifest, Producer, SystemClock, backup_dir, check_dir, check_name, new_id};
use crate::args::{de_opt_list, de_opt_string, de_string};
use crate::modules::registry::{
    ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply,
};
use crate::modules::{ModuleCtx, ModuleResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBackupArgs {
    /// The PostgreSQL container (name or id) on the host.
    #[serde(deserialize_with = "de_string")]
    container: String,
    /// The databases to dump (a list, or one name).
    #[serde(default, deserialize_with = "de_opt_list")]
    databases: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    database: Option<String>,
    /// The project the backups belong to (a directory level).
    #[serde(deserialize_with = "de_string")]
    project: String,
    /// The PostgreSQL role pg_dump connects as (local socket).
    #[serde(default, deserialize_with = "de_opt_string")]
    login_user: Option<String>,
    /// The backup root on the host.
    #[serde(default, deserialize_with = "de_opt_string")]
    dest: Option<String>,
    #[serde(default)]
    retention: Option<PolicyArg>,
    /// The release this backup is taken for (kept in the manifest).
    #[serde(default, deserialize_with = "de_opt_string")]
    release: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    docker_host: Option<String>,
    /// Also copy each backup to this directory of the control machine
    /// (relative: to the playbook's directory).
    #[serde(default, deserialize_with = "de_opt_string")]
    copy_to_control: Option<String>,
    /// Back up only what exists: a container that does not exist yet, or a
    /// database not created yet, is skipped with a note instead of failing
    /// (a backup before a risky change, on the first install).
    #[serde(default, deserialize_with = "crate::args::de_bool")]
    if_present: bool,
}

/// What the backup will do, checked.
pub struct Job {
    container: String,
    databases: Vec<String>,
    project: String,
    login_user: String,
    root: String,
    policy: super::retention::Policy,
    release: Option<String>,
    socket: String,
    copy_to_control: Option<String>,
    if_present: bool,
    /// What `if_present` skipped, for the message.
    skipped: Vec<String>,
}

impl PgBackupArgs {
    fn job(&self) -> Result<Job, String> {
        let mut databases = self.databases.clone().unwrap_or_default();
        databases.extend(self.database.clone());
        if databases.is_empty() {
            return Err("backup.postgres: give `databases` (a list) or `database`".into());
        }
        for d in &databases {
            check_name("backup.postgres: database", d)?;
        }
        check_name("backup.postgres: project", &self.project)?;
        let login_user = self.login_user.clone().unwrap_or_else(|| "postgres".into());
        check_name("backup.postgres: login_user", &login_user)?;
        let root = self
            .dest
            .clone()
            .unwrap_or_else(|| super::DEFAULT_DIR.to_string());
        check_dir("backup.postgres: dest", &root)?;
        Ok(Job {
            container: self.container.clone(),
            databases,
            project: self.project.clone(),
            login_user,
            root,
            policy: self.retention.clone().unwrap_or_default().policy(),
            release: self.release.clone(),
            socket: crate::modules::compose::docker_socket(
                "backup.postgres",
                self.docker_host.as_deref(),
            )?,
            copy_to_control: self.copy_to_control.clone(),
            if_present: self.if_present,
            skipped: Vec::new(),
        })
    }
}

/// The databases that exist among `wanted`, read in the container.
pub async fn existing_databases(
    docker: &bollard::Docker,
    host: &str,
    container: &str,
    login_user: &str,
    wanted: &[String],
) -> Result<Vec<String>, String> {
    let list = wanted
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!("SELECT datname FROM pg_database WHERE datname IN ({list});\n");
    let out = super::exec_collect(
        docker,
        container,
        &[
            "psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            login_user,
            "-d",
            "postgres",
        ],
        None,
        Some(sql.as_bytes()),
    )
    .await
    .map_err(|e| format!("host {host}: {e}"))?;
    if out.code != 0 {
        return Err(format!(
            "host {host}: container '{container}': psql as '{login_user}' failed (exit {}): {}",
            out.code, out.stderr
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

pub struct BackupPostgres;

impl Module for BackupPostgres {
    fn name(&self) -> &'static str {
        "backup.postgres"
    }
    fn fqcn(&self) -> &'static str {
        "deployer.backup.postgres"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PgBackupArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        if args.contains_key("databases") || args.contains_key("database") {
            Ok(())
        } else {
            Err("one of databases or database is required".into())
        }
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for BackupPostgres {
    type Args = PgBackupArgs;
    type Observed = Job;
    type Changes = Job;

    /// Checks what a backup needs, read-only: the container runs and every
    /// database exists (check mode reports the same errors).
    fn observe<'a>(
        &'a self,
        args: &'a PgBackupArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Job, String>> {
        Box::pin(async move {
            let mut job = args.job()?;
            if let Some(d) = &job.copy_to_control {
                super::control_root(ctx.playbook_dir, d)?;
            }
            let host = ctx.conn.name.clone();
            let docker = ctx
                .conn
                .docker(&job.socket, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if job.if_present
                && let Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                }) = docker.inspect_container(&job.container, None).await
            {
                job.skipped
                    .push(format!("container '{}' does not exist yet", job.container));
                job.databases.clear();
                return Ok(job);
            }
            super::require_running(&docker, &host, &job.container).await?;
            let found = existing_databases(
                &docker,
                &host,
                &job.container,
                &job.login_user,
                &job.databases,
            )
            .await?;
            if job.if_present {
                let (present, absent): (Vec<String>, Vec<String>) = job
                    .databases
                    .iter()
                    .cloned()
                    .partition(|d| found.contains(d));
                job.skipped.extend(
                    absent
                        .iter()
                        .map(|d| format!("database '{d}' does not exist yet")),
                );
                job.databases = present;
                return Ok(job);
            }
            let missing: Vec<&String> = job
                .databases
                .iter()
                .filter(|d| !found.contains(d))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "host {host}: container '{}': database {} does not exist; nothing was written to {}",
                    job.container,
                    missing
                        .iter()
                        .map(|d| format!("'{d}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    backup_dir(&job.root, &job.project, missing[0]),
                ));
            }
            Ok(job)
        })
    }

    fn plan(&self, _: PgBackupArgs, job: Job, ctx: &ModuleCtx<'_>) -> Result<Plan<Job>, String> {
        if job.databases.is_empty() {
            let mut result = ModuleResult::ok();
            result.msg = Some(format!(
                "nothing to back up on {} (if_present): {}",
                ctx.conn.name,
                job.skipped.join(", ")
            ));
            return Ok(Plan::unchanged(result));
        }
        let mut result = ModuleResult::ok();
        result.changed = true;
        result.msg = Some(format!(
            "would back up database(s) {} of container '{}' on {} to {}",
            job.databases.join(", "),
            job.container,
            ctx.conn.name,
            backup_dir(&job.root, &job.project, "<database>")
        ));
        if let Some(d) = &job.copy_to_control {
            let root = super::control_root(ctx.playbook_dir, d)?;
            let msg = result.msg.take().unwrap_or_default();
            result.msg = Some(format!(
                "{msg}, and copy each to {} on the control machine",
                root.display()
            ));
        }
        Ok(Plan {
            result,
            changes: Some(job),
        })
    }

    fn apply<'a>(
        &'a self,
        job: Job,
        mut result: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let mut done = Vec::new();
            let mut lines = Vec::new();
            for db in &job.databases {
                let (m, pruned) = dump_one(&job, db, ctx).await?;
                let copied = match &job.copy_to_control {
                    Some(d) => {
                        let root = super::control_root(ctx.playbook_dir, d)?;
                        Some(
                            super::copy_to_control(ctx.conn, ctx.become_.as_ref(), &m, &root)
                                .await?,
                        )
                    }
                    None => None,
                };
                lines.push(format!(
                    "{} ({} bytes, sha256 {}){}{}",
                    m.file,
                    m.size,
                    &m.sha256[..12.min(m.sha256.len())],
                    copied
                        .as_ref()
                        .map(|p| format!(", copied to {}", p.display()))
                        .unwrap_or_default(),
                    if pruned.is_empty() {
                        String::new()
                    } else {
                        format!("; pruned {}", pruned.join(", "))
                    }
                ));
                let mut v = super::manifest_json(&m);
                if let Some(o) = v.as_object_mut() {
                    o.insert("pruned".into(), json!(pruned));
                    if let Some(p) = &copied {
                        o.insert("control_copy".into(), json!(p.display().to_string()));
                    }
                }
                done.push(v);
            }
            result.msg = Some(format!(
                "backed up: {}{}",
                lines.join("; "),
                if job.skipped.is_empty() {
                    String::new()
                } else {
                    format!(" (skipped: {})", job.skipped.join(", "))
                }
            ));
            result.data.insert("backups".into(), Json::Array(done));
            Ok(result)
        })
    }
}

/// One database: `pg_dump -Fc` in the container, streamed into the store.
async fn dump_one(
    job: &Job,
    db: &str,
    ctx: &ModuleCtx<'_>,
) -> Result<(Manifest, Vec<String>), String> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures::StreamExt;
    let host = ctx.conn.name.clone();
    let docker = ctx
        .conn
        .docker(&job.socket, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let (id, created) = new_id(db, &SystemClock);
    let dir = backup_dir(&job.root, &job.project, db);
    let manifest = Manifest {
        id,
        kind: "postgres".into(),
        project: job.project.clone(),
        name: db.to_string(),
        container: Some(job.container.clone()),
        host: host.clone(),
        created,
        size: 0,
        sha256: String::new(),
        file: String::new(),
        format: "pg_dump -Fc".into(),
        release: job
            .release
            .clone()
            .or_else(|| ctx.release.and_then(|r| r.release_id()).map(str::to_string)),
        login_user: Some(job.login_user.clone()),
        volume: None,
        path: None,
    };
    let container = job.container.clone();
    let exec = docker
        .create_exec(
            &container,
            CreateExecOptions::<String> {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(
                    ["pg_dump", "-Fc", "-U", &job.login_user, "-d", db]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                ),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("host {host}: container '{container}': cannot run pg_dump: {e}"))?;
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| format!("host {host}: container '{container}': cannot run pg_dump: {e}"))?;
    let StartExecResults::Attached { output, .. } = started else {
        return Err(format!(
            "host {host}: container '{container}': pg_dump did not attach"
        ));
    };
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let err2 = stderr.clone();
    let chunks = output.filter_map(move |c| {
        let item = match c {
            Ok(bollard::container::LogOutput::StdOut { message }) => Some(Ok(message.to_vec())),
            Ok(bollard::container::LogOutput::StdErr { message }) => {
                if let Ok(mut e) = err2.lock() {
                    e.extend_from_slice(&message);
                }
                None
            }
            Ok(_) => None,
            Err(e) => Some(Err(format!("reading pg_dump's output: {e}"))),
        };
        futures::future::ready(item)
    });
    let exec_id = exec.id.clone();
    let docker2 = docker.clone();
    let finished = async move {
        let code = super::exec_code(&docker2, &exec_id).await?;
        if code == 0 {
            return Ok(());
        }
        let text = stderr
            .lock()
            .map(|e| String::from_utf8_lossy(&e).trim().to_string())
            .unwrap_or_default();
        Err(format!(
            "container '{container}': pg_dump of database '{db}' failed (exit {code}): {}",
            crate::secrets::mask(&text)
        ))
    };
    super::store(
        ctx.conn,
        ctx.become_.as_ref(),
        &dir,
        manifest,
        "dump",
        Producer::Stdin,
        Box::pin(chunks),
        finished,
        &job.policy,
    )
    .await
    .map_err(|e| format!("{e} (container '{}')", job.container))
}
