//! `docker_compose_v2`, natively: reads the compose file the previous tasks
//! rendered on the host, observes the project's containers through the Docker
//! API (over the host's SSH master), reconciles, and in apply mode executes
//! the plan. Check mode stops after the plan and never changes the host.

pub mod engine;
pub mod plan;
mod release;
pub mod spec;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::args::{de_bool, de_opt_list, de_opt_string, de_opt_u64};
use super::observe::{FileKind, Want};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{FileDiff, ModuleCtx, ModuleResult, ReleaseSave, parse_args};
use plan::{Action, Operation, Recreate, State};
use spec::ComposeProject;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    project_src: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list")]
    files: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    project_name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    recreate: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    remove_orphans: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pull: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list")]
    services: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_bool")]
    wait: bool,
    #[serde(default, deserialize_with = "de_opt_u64")]
    wait_timeout: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_list")]
    env_files: Option<Vec<String>>,
    /// Seconds to wait for a container to stop before it is killed.
    #[serde(default, deserialize_with = "de_opt_u64")]
    timeout: Option<u64>,
    /// `unix:///path/to/docker.sock` on the target.
    #[serde(default, deserialize_with = "de_opt_string")]
    docker_host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    Never,
    Missing,
    Always,
}

/// The project's inputs as read from the host.
struct HostFiles {
    compose: Vec<(String, String)>,
    interpolation: BTreeMap<String, String>,
}

pub async fn docker_compose_v2(
    args: Json,
    ctx: &mut ModuleCtx<'_>,
) -> Result<ModuleResult, String> {
    let a: ComposeArgs = parse_args("docker_compose_v2", args)?;
    let state = match a.state.as_deref().unwrap_or("present") {
        "present" => State::Present,
        "absent" => State::Absent,
        "stopped" => State::Stopped,
        "restarted" => State::Restarted,
        o => {
            return Err(format!(
                "docker_compose_v2: state must be present, absent, stopped or restarted, got '{o}'"
            ));
        }
    };
    let recreate = match a.recreate.as_deref().unwrap_or("auto") {
        "auto" => Recreate::Auto,
        "always" => Recreate::Always,
        "never" => Recreate::Never,
        o => {
            return Err(format!(
                "docker_compose_v2: recreate must be auto, always or never, got '{o}'"
            ));
        }
    };
    let pull = match a.pull.as_deref().unwrap_or("policy") {
        "never" => Pull::Never,
        "missing" | "policy" => Pull::Missing,
        "always" => Pull::Always,
        "build" => {
            return Err("docker_compose_v2: pull=build: building images is not supported".into());
        }
        o => {
            return Err(format!(
                "docker_compose_v2: pull must be never, missing, always or policy, got '{o}'"
            ));
        }
    };
    let socket = docker_socket("docker_compose_v2", a.docker_host.as_deref())?;
    let project_dir = a.project_src.clone().ok_or(
        "docker_compose_v2: project_src is required (inline definitions are not supported)",
    )?;
    let project_dir = project_dir.trim_end_matches('/').to_string();
    let files = read_project_files(&a, &project_dir, ctx).await?;
    let mut project = spec::parse_project(
        &files.compose,
        &project_dir,
        a.project_name.as_deref(),
        &files.interpolation,
    )
    .map_err(|e| e.to_string())?;
    let env_paths: Vec<String> = project
        .services
        .iter()
        .flat_map(|s| s.env_files.iter().map(|f| f.path.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let env_contents = if env_paths.is_empty() {
        BTreeMap::new()
    } else {
        read_files(&env_paths, ctx).await?
    };
    for s in &mut project.services {
        spec::resolve_environment(s, &env_contents)?;
    }
    let only = a.services.clone().filter(|s| !s.is_empty());
    let order = spec::start_order(&project, only.as_deref())
        .map_err(|e| format!("docker_compose_v2: {e}"))?;
    let docker = ctx
        .conn
        .docker(&socket, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let engine = engine::Engine {
        kind: engine::EngineKind::Compose,
        docker: &docker,
        project: &project,
        config_files: files.compose.iter().map(|f| f.0.clone()).collect(),
        working_dir: project_dir.clone(),
        stop_timeout: a.timeout.map(|t| t as i32),
        progress: ctx.progress.clone(),
        images: ctx.images,
        host: &ctx.conn.name,
    };
    let observed = engine.observe().await?;
    let images = engine.check_images(&order, pull, state, ctx.check).await?;
    let notes = if state != State::Absent {
        engine.check_external(ctx.check).await?
    } else {
        Vec::new()
    };
    let ops = plan::reconcile(
        &project,
        &observed,
        &plan::ReconcileOptions {
            state,
            recreate,
            remove_orphans: a.remove_orphans,
            order: &order,
            image_ids: &images.ids,
        },
    );
    let mut result = describe(&project, &ops, &images);
    if !notes.is_empty() {
        result.diffs.push(FileDiff {
            path: format!("compose {}: missing", project.name),
            before: None,
            after: None,
            attributes: notes,
            note: None,
        });
    }
    if ctx.check {
        return Ok(result);
    }
    // For the release: the containers as they are, before any change.
    let recording = ctx.recording() && result.changed;
    if recording {
        let before = release::before(&docker, &project, &observed).await;
        ctx.saved.push(ReleaseSave::ComposeBefore {
            project: project.name.clone(),
            args: release::locating_args(&a, &project.name),
            before,
        });
    }
    let wait_timeout = std::time::Duration::from_secs(a.wait_timeout.unwrap_or(120));
    let mut changed = images.pulled_any;
    if state == State::Absent {
        changed |= engine.remove_all(&ops).await?;
        changed |= engine.remove_networks().await?;
    } else {
        changed |= engine.ensure_networks_and_volumes().await?;
        changed |= engine
            .execute(&ops, state, wait_timeout, &images.ids)
            .await?;
        if a.wait && state != State::Stopped {
            engine.wait_ready(&order, wait_timeout).await?;
        }
    }
    result.changed = changed || result.changed;
    let running = engine.running_images(&order).await?;
    if recording {
        ctx.saved.push(ReleaseSave::ComposeAfter {
            project: project.name.clone(),
            after: release::after(&project, &running),
        });
    }
    result.data.insert("images".into(), running);
    Ok(result)
}

/// The daemon socket on the target: `docker_host` (`unix:///path`) or the default.
pub(crate) fn docker_socket(module: &str, docker_host: Option<&str>) -> Result<String, String> {
    match docker_host {
        None => Ok(crate::connection::docker::DEFAULT_SOCKET.to_string()),
        Some(h) => h
            .strip_prefix("unix://")
            .map(str::to_string)
            .ok_or_else(|| format!("{module}: docker_host must be unix:///path, got '{h}'")),
    }
}

/// The result of a plan: one diff entry per service that changes, a message
/// naming every service's action, and the operations as data.
fn describe(
    project: &ComposeProject,
    ops: &[Operation],
    images: &engine::ImageState,
) -> ModuleResult {
    let mut r = ModuleResult::ok();
    r.changed = ops.iter().any(|o| o.action != Action::Unchanged) || !images.to_pull.is_empty();
    for img in &images.to_pull {
        r.diffs.push(FileDiff {
            path: format!("compose {}: image", project.name),
            before: None,
            after: None,
            attributes: vec![format!("pull {img}")],
            note: None,
        });
    }
    for o in ops.iter().filter(|o| o.action != Action::Unchanged) {
        let mut attributes = vec![format!("{} ({})", o.action.word(), o.cause)];
        attributes.extend(o.changes.iter().map(|c| crate::secrets::mask(c)));
        r.diffs.push(FileDiff {
            path: format!("compose {}/{}", project.name, o.service),
            before: None,
            after: None,
            attributes,
            note: None,
        });
    }
    r.msg = Some(
        ops.iter()
            .map(|o| format!("{}: {}", o.service, o.action.word()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    r.data.insert("project".into(), json!(project.name));
    r.data.insert(
        "actions".into(),
        serde_json::to_value(ops).unwrap_or(Json::Null),
    );
    r
}

async fn read_project_files(
    a: &ComposeArgs,
    project_dir: &str,
    ctx: &mut ModuleCtx<'_>,
) -> Result<HostFiles, String> {
    let compose_names: Vec<String> = match &a.files {
        Some(f) if !f.is_empty() => f.clone(),
        _ => vec![
            "compose.yaml".into(),
            "compose.yml".into(),
            "docker-compose.yaml".into(),
            "docker-compose.yml".into(),
        ],
    };
    let explicit = a.files.as_ref().is_some_and(|f| !f.is_empty());
    let abs = |p: &str| {
        if p.starts_with('/') {
            p.to_string()
        } else {
            format!("{project_dir}/{p}")
        }
    };
    let compose_paths: Vec<String> = compose_names.iter().map(|p| abs(p)).collect();
    let env_paths: Vec<String> = match &a.env_files {
        Some(e) if !e.is_empty() => e.iter().map(|p| abs(p)).collect(),
        _ => vec![format!("{project_dir}/.env")],
    };
    let mut all = compose_paths.clone();
    all.extend(env_paths.iter().cloned());
    let contents = read_files(&all, ctx).await?;
    let mut compose = Vec::new();
    for p in &compose_paths {
        match contents.get(p).cloned().flatten() {
            Some(text) => {
                compose.push((p.clone(), text));
                if !explicit {
                    break;
                }
            }
            None if explicit => {
                return Err(format!(
                    "docker_compose_v2: compose file {p} does not exist on the host"
                ));
            }
            None => {}
        }
    }
    if compose.is_empty() {
        return Err(format!(
            "docker_compose_v2: no compose file in {project_dir} (looked for {})",
            compose_names.join(", ")
        ));
    }
    let mut interpolation = BTreeMap::new();
    for p in &env_paths {
        match contents.get(p).cloned().flatten() {
            Some(text) => {
                for (k, v) in spec::parse_env_file(&text).map_err(|e| format!("{p}: {e}"))? {
                    interpolation.insert(k, v);
                }
            }
            None if a.env_files.is_some() => {
                return Err(format!(
                    "docker_compose_v2: env file {p} does not exist on the host"
                ));
            }
            None => {}
        }
    }
    Ok(HostFiles {
        compose,
        interpolation,
    })
}

/// Reads files from the host in one execution (through the host's file
/// observations, so in check mode a file an earlier task would write reads
/// as it would be); `None` for a missing file.
pub(crate) async fn read_files(
    paths: &[String],
    ctx: &mut ModuleCtx<'_>,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let want = Want {
        content: true,
        sha1: false,
    };
    let requests: Vec<(String, Want)> = paths.iter().map(|p| (p.clone(), want)).collect();
    ctx.observed
        .fetch(ctx.conn, ctx.become_.as_ref(), &requests)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for p in paths {
        let text = match ctx.observed.get(p, want) {
            Some(f) if f.exists && f.kind == FileKind::File => {
                let bytes = f.content.clone().unwrap_or_default();
                Some(
                    String::from_utf8(bytes)
                        .map_err(|_| format!("docker_compose_v2: {p} is not UTF-8"))?,
                )
            }
            Some(f) if f.exists => {
                return Err(format!("docker_compose_v2: {p} is not a regular file"));
            }
            _ => None,
        };
        out.insert(p.clone(), text);
    }
    Ok(out)
}

// The registry's entry. Not yet split into plan and apply (plans, and outside check mode applies, in one function).

/// `docker_compose_v2`: a compose project, converged natively over the Docker API.
pub struct DockerComposeV2;

impl Module for DockerComposeV2 {
    fn name(&self) -> &'static str {
        "docker_compose_v2"
    }
    fn fqcn(&self) -> &'static str {
        "community.docker.docker_compose_v2"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<ComposeArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        crate::modules::args::check_choice(
            args,
            "state",
            &["present", "absent", "stopped", "restarted"],
        )
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(docker_compose_v2(args, ctx))
    }
}
