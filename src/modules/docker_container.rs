//! `community.docker.docker_container` for single containers, on the compose
//! machinery: the arguments are translated to one compose service, so the
//! container gets the same spec, config hash, field-level diff and secret
//! masking as a compose service. Only Ansible's argument names are accepted
//! (the fields of `ContainerArgs`); the loader refuses any other at its
//! file:line.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_bool, de_opt_string, de_opt_u64};
use super::compose::engine::{Engine, EngineKind};
use super::compose::plan::{self, Action, Recreate, State};
use super::compose::spec::{self, ComposeProject, ComposeService, NetworkDef, VolumeDef};
use super::compose::{Pull, docker_socket};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{FileDiff, ModuleCtx, ModuleResult, parse_args};
use crate::yaml::{Loc, Node, Yaml};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    image: Option<String>,
    #[serde(default)]
    command: Option<Json>,
    #[serde(default)]
    entrypoint: Option<Json>,
    #[serde(default)]
    env: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    env_file: Option<String>,
    #[serde(default, alias = "ports")]
    published_ports: Option<Json>,
    #[serde(default, alias = "exposed", alias = "expose")]
    exposed_ports: Option<Json>,
    #[serde(default)]
    networks: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    networks_cli_compatible: Option<bool>,
    #[serde(default)]
    volumes: Option<Json>,
    #[serde(default)]
    mounts: Option<Json>,
    #[serde(default)]
    capabilities: Option<Json>,
    #[serde(default)]
    cap_drop: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    memory: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    cpus: Option<String>,
    #[serde(default)]
    healthcheck: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    restart_policy: Option<String>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    restart_retries: Option<u64>,
    #[serde(default)]
    labels: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    user: Option<String>,
    #[serde(default)]
    read_only: Option<Json>,
    #[serde(default)]
    security_opts: Option<Json>,
    #[serde(default)]
    tmpfs: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    recreate: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    restart: Option<bool>,
    #[serde(default)]
    pull: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    stop_timeout: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    docker_host: Option<String>,
}

const HEALTHCHECK_KEYS: &[&str] = &["test", "interval", "timeout", "start_period", "retries"];
const NETWORK_KEYS: &[&str] = &["name", "aliases"];
const MOUNT_KEYS: &[&str] = &["source", "target", "type", "read_only"];

pub async fn docker_container(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: ContainerArgs = parse_args("docker_container", args)?;
    let name = a
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("docker_container: name is required")?;
    let mut state = match a.state.as_deref().unwrap_or("started") {
        "started" => State::Present,
        "stopped" => State::Stopped,
        "absent" => State::Absent,
        "present" => {
            return Err(
                "docker_container: state=present (created but not started) is not supported: use started or stopped".into(),
            );
        }
        o => {
            return Err(format!(
                "docker_container: state must be started, stopped or absent, got '{o}'"
            ));
        }
    };
    if a.restart == Some(true) && state == State::Present {
        state = State::Restarted;
    }
    let pull = match &a.pull {
        None | Some(Json::Null) => Pull::Missing,
        Some(v) => match super::args::parse_bool(v) {
            Some(true) => Pull::Always,
            Some(false) => Pull::Missing,
            None => match v.as_str() {
                Some("always") => Pull::Always,
                Some("missing") => Pull::Missing,
                Some("never") => Pull::Never,
                _ => {
                    return Err(format!(
                        "docker_container: pull must be always, missing, never or a boolean, got {v}"
                    ));
                }
            },
        },
    };
    if a.networks_cli_compatible == Some(false) {
        return Err(
            "docker_container: networks_cli_compatible=false (also joining the default bridge network) is not supported".into(),
        );
    }
    let socket = docker_socket("docker_container", a.docker_host.as_deref())?;
    let mut project = if state == State::Absent {
        ComposeProject {
            name: name.clone(),
            services: vec![ComposeService {
                name: name.clone(),
                spec: spec::ServiceSpec {
                    container_name: Some(name.clone()),
                    ..Default::default()
                },
                env_files: Vec::new(),
                environment: Default::default(),
                depends_on: Default::default(),
            }],
            networks: Vec::new(),
            volumes: Vec::new(),
        }
    } else {
        container_project(&a, &name, &ctx.task.loc).map_err(|e| e.to_string())?
    };
    let env_paths: Vec<String> = project.services[0]
        .env_files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    let env_contents = if env_paths.is_empty() {
        Default::default()
    } else {
        super::compose::read_files(&env_paths, ctx).await?
    };
    if state != State::Absent {
        spec::resolve_environment(&mut project.services[0], &env_contents)
            .map_err(|e| format!("docker_container: {e}"))?;
    }
    let docker = ctx
        .conn
        .docker(&socket, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let engine = Engine {
        kind: EngineKind::Container,
        docker: &docker,
        project: &project,
        config_files: Vec::new(),
        working_dir: String::new(),
        stop_timeout: a.stop_timeout.map(|t| t as i32),
        progress: ctx.progress.clone(),
        images: ctx.images,
        host: &ctx.conn.name,
    };
    let order = vec![name.clone()];
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
            recreate: if a.recreate == Some(true) {
                Recreate::Always
            } else {
                Recreate::Auto
            },
            remove_orphans: false,
            order: &order,
            image_ids: &images.ids,
        },
    );
    let mut r = ModuleResult::ok();
    r.changed = ops.iter().any(|o| o.action != Action::Unchanged) || !images.to_pull.is_empty();
    for img in &images.to_pull {
        r.diffs.push(FileDiff {
            path: format!("container {name}: image"),
            before: None,
            after: None,
            attributes: vec![format!("pull {img}")],
            note: None,
        });
    }
    if !notes.is_empty() {
        r.diffs.push(FileDiff {
            path: format!("container {name}: missing"),
            before: None,
            after: None,
            attributes: notes,
            note: None,
        });
    }
    for o in ops.iter().filter(|o| o.action != Action::Unchanged) {
        let mut attributes = vec![format!("{} ({})", o.action.word(), o.cause)];
        attributes.extend(o.changes.iter().map(|c| crate::secrets::mask(c)));
        r.diffs.push(FileDiff {
            path: format!("container {name}"),
            before: None,
            after: None,
            attributes,
            note: None,
        });
    }
    let action = ops.first().map_or(
        if state == State::Absent {
            "absent"
        } else {
            "unchanged"
        },
        |o| o.action.word(),
    );
    r.msg = Some(format!("{name}: {action}"));
    r.data.insert("action".into(), json!(action));
    r.data.insert(
        "actions".into(),
        serde_json::to_value(&ops).unwrap_or(Json::Null),
    );
    if ctx.check {
        return Ok(r);
    }
    let mut changed = images.pulled_any;
    if state == State::Absent {
        changed |= engine.remove_all(&ops).await?;
    } else {
        changed |= engine
            .execute(&ops, state, std::time::Duration::from_secs(60), &images.ids)
            .await?;
        let running = engine.running_images(&order).await?;
        if let Some(c) = running.get(&name) {
            r.data.insert("container".into(), c.clone());
        }
        r.data.insert("images".into(), running);
    }
    r.changed |= changed;
    Ok(r)
}

/// The arguments as a one-service compose project: the networks it joins are
/// external (they must exist: `docker_network` makes them), named volumes are
/// created by Docker on first use.
fn container_project(
    a: &ContainerArgs,
    name: &str,
    loc: &Loc,
) -> Result<ComposeProject, crate::yaml::LocatedError> {
    let bad = |m: String| crate::yaml::LocatedError::new(loc, format!("docker_container: {m}"));
    let mut def = Map::new();
    let mut put = |k: &str, v: &Option<Json>| {
        if let Some(v) = v.as_ref().filter(|v| !v.is_null()) {
            def.insert(k.to_string(), v.clone());
        }
    };
    put("image", &a.image.clone().map(Json::String));
    put("command", &a.command);
    put("entrypoint", &a.entrypoint);
    put("environment", &a.env);
    put("env_file", &a.env_file.clone().map(Json::String));
    put("ports", &a.published_ports);
    put("expose", &a.exposed_ports);
    put("cap_add", &a.capabilities);
    put("cap_drop", &a.cap_drop);
    put("mem_limit", &a.memory.clone().map(Json::String));
    put("cpus", &a.cpus.clone().map(Json::String));
    put("labels", &a.labels);
    put("user", &a.user.clone().map(Json::String));
    put("read_only", &a.read_only);
    put("security_opt", &a.security_opts);
    put("tmpfs", &a.tmpfs);
    put("container_name", &Some(Json::String(name.to_string())));
    if let Some(policy) = &a.restart_policy {
        let restart = match (policy.as_str(), a.restart_retries) {
            ("on-failure", Some(n)) => format!("on-failure:{n}"),
            (p, _) => p.to_string(),
        };
        def.insert("restart".into(), Json::String(restart));
    } else if a.restart_retries.is_some() {
        return Err(bad(
            "restart_retries needs restart_policy: on-failure".into()
        ));
    }
    if let Some(h) = a.healthcheck.as_ref().filter(|h| !h.is_null()) {
        let m = h
            .as_object()
            .ok_or_else(|| bad(format!("healthcheck must be a mapping, got {h}")))?;
        if let Some(k) = m.keys().find(|k| !HEALTHCHECK_KEYS.contains(&k.as_str())) {
            return Err(bad(format!(
                "healthcheck.{k} is not supported (supported: {})",
                HEALTHCHECK_KEYS.join(", ")
            )));
        }
        def.insert("healthcheck".into(), h.clone());
    }
    let mut networks = Vec::new();
    if let Some(list) = a.networks.as_ref().filter(|n| !n.is_null()) {
        let list = list
            .as_array()
            .ok_or_else(|| bad(format!("networks must be a list, got {list}")))?;
        let mut svc_nets = Map::new();
        for n in list {
            let (net, aliases) = match n {
                Json::String(s) => (s.clone(), None),
                Json::Object(m) => {
                    if let Some(k) = m.keys().find(|k| !NETWORK_KEYS.contains(&k.as_str())) {
                        return Err(bad(format!(
                            "networks: '{k}' is not supported (supported: {})",
                            NETWORK_KEYS.join(", ")
                        )));
                    }
                    let net = m
                        .get("name")
                        .and_then(Json::as_str)
                        .ok_or_else(|| bad("networks: every entry needs a name".into()))?;
                    (net.to_string(), m.get("aliases").cloned())
                }
                other => return Err(bad(format!("networks: expected a mapping, got {other}"))),
            };
            let mut entry = Map::new();
            if let Some(al) = aliases.filter(|a| !a.is_null()) {
                entry.insert("aliases".into(), al);
            }
            svc_nets.insert(net.clone(), Json::Object(entry));
            networks.push(NetworkDef {
                key: net.clone(),
                name: net,
                external: true,
                driver: None,
                internal: false,
                subnets: Vec::new(),
                labels: Default::default(),
            });
        }
        def.insert("networks".into(), Json::Object(svc_nets));
    }
    let mut volume_defs: Vec<VolumeDef> = Vec::new();
    let mut named = |src: &str| {
        if !volume_defs.iter().any(|v| v.key == src) {
            volume_defs.push(VolumeDef {
                key: src.to_string(),
                name: src.to_string(),
                external: false,
                driver: None,
                labels: Default::default(),
            });
        }
    };
    let mut mounts = Vec::new();
    if let Some(v) = a.volumes.as_ref().filter(|v| !v.is_null()) {
        let list = v
            .as_array()
            .ok_or_else(|| bad(format!("volumes must be a list, got {v}")))?;
        for item in list {
            let s = item
                .as_str()
                .ok_or_else(|| bad(format!("volumes: expected SOURCE:TARGET[:ro], got {item}")))?;
            let src = s.split(':').next().unwrap_or("");
            if src.starts_with(['.', '~']) {
                return Err(bad(format!(
                    "volumes: the bind source in '{s}' must be an absolute path"
                )));
            }
            if !src.starts_with('/') && s.contains(':') {
                named(src);
            }
            mounts.push(item.clone());
        }
    }
    if let Some(v) = a.mounts.as_ref().filter(|v| !v.is_null()) {
        let list = v
            .as_array()
            .ok_or_else(|| bad(format!("mounts must be a list, got {v}")))?;
        for m in list {
            let o = m
                .as_object()
                .ok_or_else(|| bad(format!("mounts: expected a mapping, got {m}")))?;
            if let Some(k) = o.keys().find(|k| !MOUNT_KEYS.contains(&k.as_str())) {
                return Err(bad(format!(
                    "mounts: '{k}' is not supported (supported: {})",
                    MOUNT_KEYS.join(", ")
                )));
            }
            let kind = o.get("type").and_then(Json::as_str).unwrap_or("volume");
            let src = o.get("source").and_then(Json::as_str).unwrap_or("");
            match kind {
                "volume" if !src.is_empty() => named(src),
                "volume" => {
                    return Err(bad(
                        "mounts: a volume mount needs a source (anonymous volumes are not supported)"
                            .into(),
                    ));
                }
                "bind" if !src.starts_with('/') => {
                    return Err(bad(format!(
                        "mounts: the bind source '{src}' must be an absolute path"
                    )));
                }
                _ => {}
            }
            let mut o = o.clone();
            o.entry("type").or_insert(Json::String("volume".into()));
            mounts.push(Json::Object(o));
        }
    }
    if !mounts.is_empty() {
        def.insert("volumes".into(), Json::Array(mounts));
    }
    let node = json_to_node(&Json::Object(def), loc);
    let service =
        spec::parse_service(name, &node, &networks, &volume_defs).map_err(|e| bad(e.msg))?;
    Ok(ComposeProject {
        name: name.to_string(),
        services: vec![service],
        networks,
        volumes: volume_defs,
    })
}

/// Module arguments (already rendered) as a YAML node at the task's location;
/// `$` is escaped, as the compose parser would interpolate it.
fn json_to_node(j: &Json, loc: &Loc) -> Node {
    let value = match j {
        Json::Null => Yaml::Null,
        Json::Bool(b) => Yaml::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Int(i),
            None => Yaml::Float(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Yaml::Str(s.replace('$', "$$")),
        Json::Array(items) => Yaml::Seq(items.iter().map(|i| json_to_node(i, loc)).collect()),
        Json::Object(m) => Yaml::Map(
            m.iter()
                .map(|(k, v)| {
                    (
                        Node {
                            value: Yaml::Str(k.clone()),
                            loc: loc.clone(),
                        },
                        json_to_node(v, loc),
                    )
                })
                .collect(),
        ),
    };
    Node {
        value,
        loc: loc.clone(),
    }
}

// The registry's entry. Not yet split into plan and apply (plans, and outside check mode applies, in one function).

/// `docker_container`: one container, converged as a one-service compose project.
pub struct DockerContainer;

impl Module for DockerContainer {
    fn name(&self) -> &'static str {
        "docker_container"
    }
    fn fqcn(&self) -> &'static str {
        "community.docker.docker_container"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<ContainerArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") && !args.contains_key("network_name") {
            return Err("`name` is required".into());
        }
        if super::args::literal(args, "state").and_then(|v| v.as_str()) == Some("present") {
            return Err(
                "state=present (created but not started) is not supported: use started or stopped"
                    .into(),
            );
        }
        super::args::check_choice(args, "state", &["started", "stopped", "absent"])
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(docker_container(args, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn project(args: Json) -> Result<ComposeProject, String> {
        let a: ContainerArgs = parse_args("docker_container", args)?;
        let loc = Loc::new(Path::new("/p/site.yml"), 7, 7);
        container_project(&a, "web", &loc).map_err(|e| e.to_string())
    }

    #[test]
    fn arguments_become_the_same_spec_as_a_compose_service() {
        let p = project(json!({
            "name": "web", "image": "img:1", "command": "httpd -f -p 80",
            "env": {"MODE": "a", "PRICE": "$5"}, "published_ports": ["127.0.0.1:8080:80"],
            "networks": [{"name": "front", "aliases": ["www"]}, {"name": "back"}],
            "volumes": ["/srv/data:/data:ro", "cache:/cache"],
            "mounts": [{"type": "tmpfs", "target": "/run"}],
            "capabilities": ["NET_BIND_SERVICE"], "cap_drop": ["ALL"],
            "memory": "64M", "cpus": 0.5, "restart_policy": "on-failure", "restart_retries": 3,
            "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "retries": 2},
            "labels": {"a": "b"}, "user": "1000", "read_only": true,
            "security_opts": ["no-new-privileges"], "tmpfs": ["/tmp:size=1m"],
        }))
        .expect("parses");
        let s = &p.services[0].spec;
        assert_eq!(s.container_name.as_deref(), Some("web"));
        assert_eq!(
            s.command.as_deref(),
            Some(&["httpd".to_string(), "-f".into(), "-p".into(), "80".into()][..])
        );
        assert_eq!(
            p.services[0].environment.get("PRICE").map(String::as_str),
            Some("$5"),
            "no compose interpolation"
        );
        assert_eq!(
            s.networks.get("front"),
            Some(&vec!["web".to_string(), "www".to_string()])
        );
        assert!(p.networks.iter().all(|n| n.external));
        assert_eq!(s.binds, vec!["/srv/data:/data:ro", "cache:/cache"]);
        assert_eq!(s.tmpfs.get("/run").map(String::as_str), Some(""));
        assert_eq!(s.tmpfs.get("/tmp").map(String::as_str), Some("size=1m"));
        assert_eq!(s.memory, Some(64 << 20));
        assert_eq!(s.nano_cpus, Some(500_000_000));
        assert_eq!(s.restart.as_deref(), Some("on-failure:3"));
        assert_eq!(s.healthcheck.as_ref().map(|h| h.retries), Some(2));
        assert!(s.read_only);
        assert_eq!(p.volumes.len(), 1);
    }

    #[test]
    fn unsupported_arguments_and_values_are_clear_errors() {
        let e = project(json!({"name": "web", "image": "i:1", "privileged": true})).unwrap_err();
        assert!(e.contains("unknown field `privileged`"), "{e}");
        let e = project(json!({"name": "web", "image": "i:1",
            "healthcheck": {"test": "true", "start_interval": "1s"}}))
        .unwrap_err();
        assert!(
            e.starts_with(
                "/p/site.yml:7:8: docker_container: healthcheck.start_interval is not supported"
            ),
            "{e}"
        );
        let e = project(json!({"name": "web", "image": "i:1", "volumes": ["./d:/d"]})).unwrap_err();
        assert!(e.contains("must be an absolute path"), "{e}");
        let e = project(json!({"name": "web", "image": "i:1", "memory": "lots"})).unwrap_err();
        assert!(e.contains("expected a size"), "{e}");
        let e = project(json!({"name": "web"})).unwrap_err();
        assert!(e.contains("has no image"), "{e}");
    }

    #[test]
    fn every_listed_argument_is_accepted() {
        for a in DockerContainer.args().names.unwrap_or_default() {
            let j = json!({ *a: null });
            assert!(
                serde_json::from_value::<ContainerArgs>(j).is_ok(),
                "{a} is listed but not accepted"
            );
        }
    }
}
