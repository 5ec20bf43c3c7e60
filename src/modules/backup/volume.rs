//! `deployer.backup.volume`: a Docker named volume (read through a container
//! that mounts it, with the Docker API's archive call) or a directory of the
//! host (`tar` on the host), kept as a tar in the host's backup directory,
//! then retention. See [`super`].
//!
//! ```yaml
//! - deployer.backup.volume:
//!     volume: plane_uploads      # or path: /srv/plane/uploads
//!     project: plane
//! ```
//!
//! `deployer restore` puts a volume backup back (see [`super::restore`]); the
//! tar is an ordinary archive of the volume's files.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::retention::PolicyArg;
use super::{Manifest, Producer, SystemClock, backup_dir, check_dir, check_name, new_id};
use crate::args::{de_opt_string, de_string};
use crate::modules::registry::{
    ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply,
};
use crate::modules::{ModuleCtx, ModuleResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeBackupArgs {
    /// A Docker named volume.
    #[serde(default, deserialize_with = "de_opt_string")]
    volume: Option<String>,
    /// A directory of the host (a bind mount's source).
    #[serde(default, deserialize_with = "de_opt_string")]
    path: Option<String>,
    /// The backup's name (directory level): the volume's name, or the
    /// directory's last component.
    #[serde(default, deserialize_with = "de_opt_string")]
    name: Option<String>,
    #[serde(deserialize_with = "de_string")]
    project: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    dest: Option<String>,
    #[serde(default)]
    retention: Option<PolicyArg>,
    #[serde(default, deserialize_with = "de_opt_string")]
    release: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    docker_host: Option<String>,
    /// Also copy the backup to this directory of the control machine
    /// (relative: to the playbook's directory).
    #[serde(default, deserialize_with = "de_opt_string")]
    copy_to_control: Option<String>,
}

pub enum Source {
    /// The volume, read through `container` at `mount`.
    Volume {
        volume: String,
        container: String,
        mount: String,
    },
    Path(String),
}

pub struct Job {
    source: Source,
    name: String,
    project: String,
    root: String,
    policy: super::retention::Policy,
    release: Option<String>,
    socket: String,
    copy_to_control: Option<std::path::PathBuf>,
}

pub struct BackupVolume;

impl Module for BackupVolume {
    fn name(&self) -> &'static str {
        "backup.volume"
    }
    fn fqcn(&self) -> &'static str {
        "deployer.backup.volume"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<VolumeBackupArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        match (args.contains_key("volume"), args.contains_key("path")) {
            (true, false) | (false, true) => Ok(()),
            _ => Err("exactly one of volume or path is required".into()),
        }
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for BackupVolume {
    type Args = VolumeBackupArgs;
    type Observed = Job;
    type Changes = Job;

    fn observe<'a>(
        &'a self,
        a: &'a VolumeBackupArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Job, String>> {
        Box::pin(async move {
            let host = ctx.conn.name.clone();
            check_name("backup.volume: project", &a.project)?;
            let root = a
                .dest
                .clone()
                .unwrap_or_else(|| super::DEFAULT_DIR.to_string());
            check_dir("backup.volume: dest", &root)?;
            let socket =
                crate::modules::compose::docker_socket("backup.volume", a.docker_host.as_deref())?;
            let (source, default_name) = match (&a.volume, &a.path) {
                (Some(v), None) => {
                    let docker = ctx
                        .conn
                        .docker(&socket, ctx.become_.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                    let (container, mount) = mounting_container(&docker, &host, v).await?;
                    (
                        Source::Volume {
                            volume: v.clone(),
                            container,
                            mount,
                        },
                        v.clone(),
                    )
                }
                (None, Some(p)) => {
                    check_dir("backup.volume: path", p)?;
                    let base = p
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    (Source::Path(p.clone()), base)
                }
                _ => {
                    return Err("backup.volume: exactly one of volume or path is required".into());
                }
            };
            let name = a.name.clone().unwrap_or(default_name);
            check_name("backup.volume: name", &name)?;
            let copy_to_control = a
                .copy_to_control
                .as_deref()
                .map(|d| super::control_root(ctx.playbook_dir, d))
                .transpose()?;
            Ok(Job {
                source,
                name,
                project: a.project.clone(),
                root,
                policy: a.retention.clone().unwrap_or_default().policy(),
                release: a.release.clone(),
                socket,
                copy_to_control,
            })
        })
    }

    fn plan(
        &self,
        _: VolumeBackupArgs,
        job: Job,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<Job>, String> {
        let what = match &job.source {
            Source::Volume {
                volume, container, ..
            } => format!("volume '{volume}' (through container '{container}')"),
            Source::Path(p) => format!("directory {p}"),
        };
        let mut result = ModuleResult::ok();
        result.changed = true;
        result.msg = Some(format!(
            "would back up {what} on {} to {}",
            ctx.conn.name,
            backup_dir(&job.root, &job.project, &job.name)
        ));
        if let Some(root) = &job.copy_to_control {
            let msg = result.msg.take().unwrap_or_default();
            result.msg = Some(format!(
                "{msg}, and copy it to {} on the control machine",
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
            use futures::StreamExt;
            let host = ctx.conn.name.clone();
            let (id, created) = new_id(&job.name, &SystemClock);
            let dir = backup_dir(&job.root, &job.project, &job.name);
            let manifest = Manifest {
                id,
                kind: "volume".into(),
                project: job.project.clone(),
                name: job.name.clone(),
                container: match &job.source {
                    Source::Volume { container, .. } => Some(container.clone()),
                    Source::Path(_) => None,
                },
                host: host.clone(),
                created,
                size: 0,
                sha256: String::new(),
                file: String::new(),
                format: "tar".into(),
                release: job
                    .release
                    .clone()
                    .or_else(|| ctx.release.and_then(|r| r.release_id()).map(str::to_string)),
                login_user: None,
                volume: match &job.source {
                    Source::Volume { volume, .. } => Some(volume.clone()),
                    Source::Path(_) => None,
                },
                path: match &job.source {
                    Source::Volume { .. } => None,
                    Source::Path(p) => Some(p.clone()),
                },
            };
            let stored = match &job.source {
                Source::Volume {
                    container, mount, ..
                } => {
                    let docker = ctx
                        .conn
                        .docker(&job.socket, ctx.become_.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                    let c = container.clone();
                    let tar = docker
                        .download_from_container(
                            container,
                            Some(
                                bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
                                    .path(mount)
                                    .build(),
                            ),
                        )
                        .map(move |r| {
                            r.map(|b| b.to_vec()).map_err(|e| {
                                format!("container '{c}': reading the volume's files: {e}")
                            })
                        });
                    super::store(
                        ctx.conn,
                        ctx.become_.as_ref(),
                        &dir,
                        manifest,
                        "tar",
                        Producer::Stdin,
                        Box::pin(tar),
                        async { Ok(()) },
                        &job.policy,
                    )
                    .await?
                }
                Source::Path(p) => {
                    super::store(
                        ctx.conn,
                        ctx.become_.as_ref(),
                        &dir,
                        manifest,
                        "tar",
                        Producer::Tar(p.clone()),
                        futures::stream::empty(),
                        async { Ok(()) },
                        &job.policy,
                    )
                    .await?
                }
            };
            let (m, pruned) = stored;
            let copied = match &job.copy_to_control {
                Some(root) => {
                    Some(super::copy_to_control(ctx.conn, ctx.become_.as_ref(), &m, root).await?)
                }
                None => None,
            };
            result.msg = Some(format!(
                "backed up: {} ({} bytes){}{}",
                m.file,
                m.size,
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
            result.data.insert("backups".into(), Json::Array(vec![v]));
            Ok(result)
        })
    }
}

/// A container that mounts `volume` (running ones first), and where.
pub async fn mounting_container(
    docker: &bollard::Docker,
    host: &str,
    volume: &str,
) -> Result<(String, String), String> {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let mut filters = std::collections::HashMap::new();
    filters.insert("volume".to_string(), vec![volume.to_string()]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| format!("host {host}: listing containers: {e}"))?;
    let mut list = list;
    list.sort_by_key(|c| c.state.as_ref().map(|s| s.to_string()) != Some("running".into()));
    for c in list {
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .or(c.id.clone())
            .unwrap_or_default();
        let mount = c.mounts.unwrap_or_default().into_iter().find_map(|m| {
            (m.name.as_deref() == Some(volume))
                .then_some(m.destination)
                .flatten()
        });
        if let Some(mount) = mount {
            return Ok((name, mount));
        }
    }
    Err(format!(
        "host {host}: no container mounts volume '{volume}' (deployer reads a volume through a container that mounts it); nothing was written"
    ))
}
