//! Release hook for compose: what a project's containers were
//! before a change and are after it, for `release.json`. Docker API calls
//! only (no remote execution); environment values stay hashed.

use std::collections::BTreeMap;

use bollard::Docker;
use serde_json::{Value as Json, json};

use super::ComposeArgs;
use super::plan::{ObservedContainer, spec_for_label};
use super::spec::{ComposeProject, config_hash};
use crate::state::releases::ContainerState;

/// The arguments that locate the project again at rollback time (and its
/// `wait`, so a rollback waits for health as the deploy did).
pub(super) fn locating_args(a: &ComposeArgs, project: &str) -> Json {
    json!({
        "project_src": a.project_src,
        "files": a.files,
        "project_name": project,
        "env_files": a.env_files,
        "docker_host": a.docker_host,
        "timeout": a.timeout,
        "wait": a.wait,
        "wait_timeout": a.wait_timeout,
    })
}

async fn repo_digest(docker: &Docker, image_id: &str) -> Option<String> {
    if image_id.is_empty() {
        return None;
    }
    docker
        .inspect_image(image_id)
        .await
        .ok()
        .and_then(|i| i.repo_digests)
        .and_then(|d| d.into_iter().next())
}

/// Every service of the project (and every container it has) as it is now.
pub(super) async fn before(
    docker: &Docker,
    project: &ComposeProject,
    observed: &[ObservedContainer],
) -> BTreeMap<String, Option<ContainerState>> {
    let mut out: BTreeMap<String, Option<ContainerState>> = project
        .services
        .iter()
        .map(|s| (s.name.clone(), None))
        .collect();
    for c in observed {
        if out.get(&c.service).is_some_and(|v| v.is_some()) {
            continue;
        }
        let image = c.spec.as_ref().map(|s| s.image.clone()).unwrap_or_default();
        out.insert(
            c.service.clone(),
            Some(ContainerState {
                container: c.name.clone(),
                image,
                image_id: c.image_id.clone(),
                repo_digest: repo_digest(docker, &c.image_id).await,
                config_hash: c.config_hash.clone(),
                running: c.running,
                spec: c.spec.as_ref().and_then(|s| serde_json::to_value(s).ok()),
            }),
        );
    }
    out
}

/// The services as they run after the change (`running` is the module's
/// `images` result: container, image, image_id, digest per service).
pub(super) fn after(project: &ComposeProject, running: &Json) -> BTreeMap<String, ContainerState> {
    let mut out = BTreeMap::new();
    let Some(map) = running.as_object() else {
        return out;
    };
    for (name, r) in map {
        let Some(s) = project.service(name) else {
            continue;
        };
        let image_id = r["image_id"].as_str().unwrap_or_default().to_string();
        let digest = r["digest"].as_str().unwrap_or_default();
        out.insert(
            name.clone(),
            ContainerState {
                container: r["container"].as_str().unwrap_or_default().to_string(),
                image: s.spec.image.clone(),
                repo_digest: (digest != image_id && !digest.is_empty()).then(|| digest.to_string()),
                image_id,
                config_hash: config_hash(&s.spec),
                running: true,
                spec: serde_json::to_value(spec_for_label(&s.spec)).ok(),
            },
        );
    }
    out
}
