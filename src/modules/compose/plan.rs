//! Observed state -> reconcile -> plan: a list of operations, each with the
//! human cause, as Compose's `reconcile.go` does. Pure: check mode stops here.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::spec::{ComposeProject, ServiceSpec, config_hash};
use crate::secrets;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_IMAGE: &str = "com.docker.compose.image";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
/// The spec the container was made from (environment values as hashes), so a
/// later run can say which field changed.
pub const LABEL_SPEC: &str = "io.deployer.compose.spec";

/// A container of the project as the engine reports it.
#[derive(Debug, Clone, Default)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    pub config_hash: String,
    pub running: bool,
    /// The exit code of a container that is not running.
    pub exit_code: Option<i64>,
    pub image_id: String,
    pub started_at: String,
    /// The `LABEL_SPEC` label, parsed.
    pub spec: Option<ServiceSpec>,
    /// `Config.Env` of the container (includes the image's own variables).
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Recreate,
    Start,
    Stop,
    Restart,
    Remove,
    Unchanged,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Recreate => "recreate",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Remove => "remove",
            Action::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub service: String,
    pub action: Action,
    pub cause: String,
    /// Field-level changes (recreate) or what is made (create), secrets masked.
    pub changes: Vec<String>,
    /// The existing container this operation acts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Present,
    Absent,
    Stopped,
    Restarted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recreate {
    Auto,
    Always,
    Never,
}

pub struct ReconcileOptions<'a> {
    pub state: State,
    pub recreate: Recreate,
    pub remove_orphans: bool,
    /// The services to converge, in start order.
    pub order: &'a [String],
    /// The local image ID each service's image tag points to, when known.
    pub image_ids: &'a BTreeMap<String, String>,
}

/// The spec as stored in the label: environment values replaced by a hash,
/// so the label does not repeat secrets.
pub fn spec_for_label(spec: &ServiceSpec) -> ServiceSpec {
    let mut s = spec.clone();
    for v in s.environment.values_mut() {
        *v = value_hash(v);
    }
    s
}

fn value_hash(v: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(v.as_bytes())))
}

pub fn reconcile(
    project: &ComposeProject,
    observed: &[ObservedContainer],
    opts: &ReconcileOptions<'_>,
) -> Vec<Operation> {
    let mut ops = Vec::new();
    if opts.state == State::Absent {
        for c in observed {
            ops.push(Operation {
                service: c.service.clone(),
                action: Action::Remove,
                cause: "state is absent".into(),
                changes: Vec::new(),
                container: Some(c.name.clone()),
            });
        }
        return ops;
    }
    for name in opts.order {
        let Some(service) = project.service(name) else {
            continue;
        };
        let mut mine: Vec<&ObservedContainer> =
            observed.iter().filter(|c| &c.service == name).collect();
        mine.sort_by_key(|c| c.number);
        // One container per service: any extra replica goes.
        for extra in mine.iter().skip(1) {
            ops.push(Operation {
                service: name.clone(),
                action: Action::Remove,
                cause: format!("extra replica {}", extra.number),
                changes: Vec::new(),
                container: Some(extra.name.clone()),
            });
        }
        let Some(c) = mine.first() else {
            ops.push(Operation {
                service: name.clone(),
                action: Action::Create,
                cause: "no container yet".into(),
                changes: creation_summary(&service.spec),
                container: None,
            });
            continue;
        };
        let hash = config_hash(&service.spec);
        let image_moved = opts
            .image_ids
            .get(name)
            .is_some_and(|id| !c.image_id.is_empty() && *id != c.image_id);
        let recreate = match opts.recreate {
            Recreate::Never => None,
            Recreate::Always => Some(("recreate is always".to_string(), Vec::new())),
            Recreate::Auto if c.config_hash != hash => Some((
                "configuration changed".to_string(),
                match &c.spec {
                    Some(old) => spec_changes(old, &c.env, &service.spec),
                    None => vec!["(made without a recorded spec: every field may differ)".into()],
                },
            )),
            Recreate::Auto if image_moved => Some((
                format!(
                    "image {} now points to a different image",
                    service.spec.image
                ),
                Vec::new(),
            )),
            Recreate::Auto => None,
        };
        if let Some((cause, changes)) = recreate {
            ops.push(Operation {
                service: name.clone(),
                action: Action::Recreate,
                cause,
                changes,
                container: Some(c.name.clone()),
            });
            continue;
        }
        let (action, cause) = match (opts.state, c.running) {
            // A one-shot job (migrator) that already ran to success with this
            // configuration is done: starting it again would change nothing
            // but the run count.
            (State::Present, false) if project.is_one_shot(name) && c.exit_code == Some(0) => {
                (Action::Unchanged, "one-shot job completed successfully")
            }
            (State::Present, false) => (Action::Start, "container is stopped"),
            (State::Stopped, true) => (Action::Stop, "state is stopped"),
            (State::Restarted, _) => (Action::Restart, "state is restarted"),
            _ => (Action::Unchanged, "up to date"),
        };
        ops.push(Operation {
            service: name.clone(),
            action,
            cause: cause.into(),
            changes: Vec::new(),
            container: Some(c.name.clone()),
        });
    }
    if opts.remove_orphans {
        for c in observed {
            if project.service(&c.service).is_none() {
                ops.push(Operation {
                    service: c.service.clone(),
                    action: Action::Remove,
                    cause: format!("orphan: service '{}' is not in the compose file", c.service),
                    changes: Vec::new(),
                    container: Some(c.name.clone()),
                });
            }
        }
    }
    ops
}

fn creation_summary(spec: &ServiceSpec) -> Vec<String> {
    let mut out = vec![format!("image: {}", spec.image)];
    if !spec.environment.is_empty() {
        out.push(format!(
            "env: {}",
            spec.environment
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !spec.networks.is_empty() {
        out.push(format!(
            "networks: {}",
            spec.networks.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

/// Names that say a value is secret even when it is not from the vault (a
/// rotated secret's old value is no longer registered for masking).
fn sensitive_name(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|w| k.contains(w))
}

fn shown(key: &str, value: &str, other: Option<&str>) -> String {
    if sensitive_name(key)
        || secrets::contains_secret(value)
        || other.is_some_and(secrets::contains_secret)
    {
        secrets::MASK.to_string()
    } else {
        format!("'{value}'")
    }
}

/// Field-level differences between the spec a container was made from (the
/// label, env values hashed; `old_env` its real environment) and the desired
/// one. Secret values print as `********`.
pub fn spec_changes(
    old: &ServiceSpec,
    old_env: &BTreeMap<String, String>,
    new: &ServiceSpec,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in &new.environment {
        match old.environment.get(k) {
            None => out.push(format!("env {k}: added ({})", shown(k, v, None))),
            Some(h) if *h != value_hash(v) => {
                let before = old_env.get(k).map(String::as_str);
                let was = before.map_or("?".to_string(), |b| shown(k, b, Some(v)));
                out.push(format!(
                    "env {k}: changed ({was} -> {})",
                    shown(k, v, before)
                ));
            }
            Some(_) => {}
        }
    }
    for k in old.environment.keys() {
        if !new.environment.contains_key(k) {
            out.push(format!("env {k}: removed"));
        }
    }
    let (Ok(serde_json::Value::Object(o)), Ok(serde_json::Value::Object(n))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return out;
    };
    for (field, nv) in &n {
        if field == "environment" {
            continue;
        }
        let ov = o.get(field).cloned().unwrap_or(serde_json::Value::Null);
        if ov != *nv {
            out.push(secrets::mask(&format!(
                "{field}: {} -> {}",
                compact(&ov),
                compact(nv)
            )));
        }
    }
    out
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::compose::spec::parse_project;

    fn project(env_value: &str, mem: &str) -> ComposeProject {
        let text = format!(
            "services:\n  api:\n    image: api:1\n    environment:\n      MODE: '{env_value}'\n      API_TOKEN: t0k\n    mem_limit: {mem}\n    cap_drop: [ALL]\n  web:\n    image: web:1\n    depends_on: [api]\n"
        );
        let mut p = parse_project(
            &[("/p/compose.yml".into(), text)],
            "/p",
            Some("t"),
            &BTreeMap::new(),
        )
        .expect("parses");
        for s in &mut p.services {
            crate::modules::compose::spec::resolve_environment(s, &BTreeMap::new()).expect("env");
        }
        p
    }

    fn observed_from(p: &ComposeProject) -> Vec<ObservedContainer> {
        p.services
            .iter()
            .map(|s| ObservedContainer {
                id: format!("id-{}", s.name),
                name: format!("t-{}-1", s.name),
                service: s.name.clone(),
                number: 1,
                config_hash: config_hash(&s.spec),
                running: true,
                image_id: "sha256:img".into(),
                spec: Some(spec_for_label(&s.spec)),
                env: s.spec.environment.clone(),
                ..Default::default()
            })
            .collect()
    }

    fn opts<'a>(order: &'a [String], ids: &'a BTreeMap<String, String>) -> ReconcileOptions<'a> {
        ReconcileOptions {
            state: State::Present,
            recreate: Recreate::Auto,
            remove_orphans: true,
            order,
            image_ids: ids,
        }
    }

    #[test]
    fn nothing_to_do_when_hashes_match() {
        let p = project("a", "64m");
        let order = vec!["api".to_string(), "web".to_string()];
        let ids = BTreeMap::new();
        let ops = reconcile(&p, &observed_from(&p), &opts(&order, &ids));
        assert!(ops.iter().all(|o| o.action == Action::Unchanged), "{ops:?}");
    }

    #[test]
    fn a_changed_env_value_and_limit_recreate_only_that_service_with_a_field_diff() {
        let before = project("a", "64m");
        let after = project("b", "128m");
        let order = vec!["api".to_string(), "web".to_string()];
        let ids = BTreeMap::new();
        let ops = reconcile(&after, &observed_from(&before), &opts(&order, &ids));
        assert_eq!(ops[0].action, Action::Recreate);
        assert_eq!(
            ops[0].changes,
            vec![
                "env MODE: changed ('a' -> 'b')".to_string(),
                "memory: 67108864 -> 134217728".to_string()
            ]
        );
        assert_eq!(ops[1].action, Action::Unchanged);
    }

    #[test]
    fn sensitive_values_are_masked_and_orphans_removed() {
        let mut before = observed_from(&project("a", "64m"));
        before.push(ObservedContainer {
            name: "t-old-1".into(),
            service: "old".into(),
            number: 1,
            ..Default::default()
        });
        let mut after = project("a", "64m");
        after.services[0]
            .spec
            .environment
            .insert("API_TOKEN".into(), "n3w".into());
        let order = vec!["api".to_string(), "web".to_string()];
        let ids = BTreeMap::new();
        let ops = reconcile(&after, &before, &opts(&order, &ids));
        assert_eq!(
            ops[0].changes,
            vec!["env API_TOKEN: changed (******** -> ********)"]
        );
        let orphan = ops.last().expect("ops");
        assert_eq!(
            (orphan.action, orphan.service.as_str()),
            (Action::Remove, "old")
        );
    }

    #[test]
    fn a_completed_one_shot_job_stays_done_and_a_failed_one_is_started() {
        let text = "services:\n  migrator:\n    image: i:1\n    restart: \"no\"\n  api:\n    image: i:1\n    depends_on:\n      migrator: {condition: service_completed_successfully}\n  web:\n    image: i:1\n";
        let mut p = parse_project(
            &[("c.yml".into(), text.into())],
            "/srv/t",
            Some("t"),
            &BTreeMap::new(),
        )
        .expect("parses");
        for s in &mut p.services {
            crate::modules::compose::spec::resolve_environment(s, &BTreeMap::new()).expect("env");
        }
        assert!(p.is_one_shot("migrator") && !p.is_one_shot("api"));
        let order = vec!["migrator".to_string(), "api".to_string(), "web".to_string()];
        let ids = BTreeMap::new();
        let mut obs = observed_from(&p);
        for c in &mut obs {
            if c.service != "api" {
                c.running = false;
                c.exit_code = Some(0);
            }
        }
        let ops = reconcile(&p, &obs, &opts(&order, &ids));
        let actions: Vec<_> = ops.iter().map(|o| (o.service.as_str(), o.action)).collect();
        assert_eq!(
            actions,
            vec![
                ("migrator", Action::Unchanged),
                ("api", Action::Unchanged),
                // Not a one-shot: a stopped service is started, whatever its exit code.
                ("web", Action::Start)
            ]
        );
        obs[0].exit_code = Some(1);
        let ops = reconcile(&p, &obs, &opts(&order, &ids));
        assert_eq!(ops[0].action, Action::Start);
    }

    #[test]
    fn missing_containers_are_created_and_a_moved_image_recreates() {
        let p = project("a", "64m");
        let order = vec!["api".to_string(), "web".to_string()];
        let ids = BTreeMap::from([("web".to_string(), "sha256:other".to_string())]);
        let obs: Vec<_> = observed_from(&p)
            .into_iter()
            .filter(|c| c.service == "web")
            .collect();
        let ops = reconcile(&p, &obs, &opts(&order, &ids));
        assert_eq!(ops[0].action, Action::Create);
        assert_eq!(ops[1].action, Action::Recreate);
        assert!(ops[1].cause.contains("different image"), "{:?}", ops[1]);
    }
}
