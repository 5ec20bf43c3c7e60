//! The Docker side of compose convergence: observing the project's
//! containers, networks and images, and executing a plan's operations. Every
//! error names the service (or network) and the daemon's own message.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, ImageInspect, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures::StreamExt;
use serde_json::{Value as Json, json};

use super::Pull;
use super::plan::{self, Action, ObservedContainer, Operation, State};
use super::spec::{ComposeProject, ComposeService, DependsCondition, config_hash};
use crate::project::images_lock::{self, ImagePolicy, Pin};

/// What the engine converges: a compose project (Compose's labels, found by
/// project label) or one `docker_container` (found by name, labelled only
/// with deployer's hash and spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Compose,
    Container,
}

/// The config hash of a container made by `docker_container`.
pub const LABEL_CONTAINER_HASH: &str = "io.deployer.config-hash";

pub struct Engine<'a> {
    pub kind: EngineKind,
    pub docker: &'a Docker,
    pub project: &'a ComposeProject,
    pub config_files: Vec<String>,
    pub working_dir: String,
    pub stop_timeout: Option<i32>,
    /// Pulls and health waits report where they are here.
    pub progress: crate::report::TaskProgress,
    /// `images.lock`: how image tags are treated.
    pub images: &'a ImagePolicy,
    /// The host, for messages and `deployer pin`.
    pub host: &'a str,
}

#[derive(Debug, Default)]
pub struct ImageState {
    /// Service -> the local image ID its tag points to.
    pub ids: BTreeMap<String, String>,
    /// Images check mode would pull.
    pub to_pull: Vec<String>,
    pub pulled_any: bool,
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The daemon's message without bollard's wrapping.
pub(crate) fn reason(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

impl Engine<'_> {
    fn noun(&self) -> &'static str {
        match self.kind {
            EngineKind::Compose => "service",
            EngineKind::Container => "container",
        }
    }

    fn container_name(&self, s: &ComposeService) -> String {
        s.spec
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}-1", self.project.name, s.name))
    }

    fn project_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{}={}", plan::LABEL_PROJECT, self.project.name)],
        )])
    }

    /// The project's containers (not one-off ones), inspected.
    pub async fn observe(&self) -> Result<Vec<ObservedContainer>, String> {
        if self.kind == EngineKind::Container {
            return self.observe_by_name().await;
        }
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.project_filter()),
                ..Default::default()
            }))
            .await
            .map_err(|e| {
                format!(
                    "listing the containers of project {}: {}",
                    self.project.name,
                    reason(&e)
                )
            })?;
        let mut out = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            let info = match self.docker.inspect_container(&id, None).await {
                Ok(i) => i,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(format!("inspecting container {id}: {}", reason(&e))),
            };
            let labels = info
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            if labels.get(plan::LABEL_ONEOFF).map(String::as_str) == Some("True") {
                continue;
            }
            out.push(observed_container(id, &info, None, plan::LABEL_CONFIG_HASH));
        }
        Ok(out)
    }

    /// `docker_container`: the one container of that name, whoever made it.
    async fn observe_by_name(&self) -> Result<Vec<ObservedContainer>, String> {
        let mut out = Vec::new();
        for s in &self.project.services {
            let name = self.container_name(s);
            match self.docker.inspect_container(&name, None).await {
                Ok(info) => out.push(observed_container(
                    info.id.clone().unwrap_or_default(),
                    &info,
                    Some(&s.name),
                    LABEL_CONTAINER_HASH,
                )),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(format!("inspecting container {name}: {}", reason(&e))),
            }
        }
        Ok(out)
    }

    /// Makes sure every image is there (pulling as the policy says, never in
    /// check mode) and returns their IDs. With an `images.lock`, the locked
    /// image is what the tag must point to (pulled by digest and tagged when
    /// it does not); under `deployer pin`, each image is resolved and collected.
    pub async fn check_images(
        &self,
        order: &[String],
        pull: Pull,
        state: State,
        check: bool,
    ) -> Result<ImageState, String> {
        let noun = self.noun();
        let mut st = ImageState::default();
        if state == State::Absent {
            return Ok(st);
        }
        for name in order {
            let Some(s) = self.project.service(name) else {
                continue;
            };
            let image = &s.spec.image;
            let local = match self.docker.inspect_image(image).await {
                Ok(i) => Some(i),
                Err(e) if is_not_found(&e) => None,
                Err(e) => {
                    return Err(format!(
                        "{noun} {name}: inspecting image {image}: {}",
                        reason(&e)
                    ));
                }
            };
            let pinned_in_project = image.contains("@sha256:");
            match self.images {
                ImagePolicy::Locked(lock) if !pinned_in_project => {
                    let Some(pin) = lock.images.get(image.as_str()) else {
                        return Err(format!(
                            "{noun} {name}: image {image} is not in {}: the lock is older than the \
                             project; run `deployer pin -i INVENTORY` and commit the lock",
                            lock.path.display()
                        ));
                    };
                    if let Some(id) = self
                        .pinned(name, image, pin, local, pull, check, &mut st)
                        .await?
                    {
                        st.ids.insert(name.clone(), id);
                    }
                    continue;
                }
                ImagePolicy::Collect(_)
                    if !pinned_in_project && !self.images.collected(image, self.host) =>
                {
                    let pin = self.resolve(name, image, local.as_ref()).await?;
                    self.images.collect(image, pin, self.host)?;
                }
                _ => {}
            }
            let local = local.and_then(|i| i.id);
            let must_pull = match (pull, &local) {
                (Pull::Never, None) => {
                    return Err(format!(
                        "{noun} {name}: image {image} does not exist on the host, and pull is never"
                    ));
                }
                (Pull::Always, _) | (Pull::Missing, None) => true,
                _ => false,
            };
            if must_pull && check {
                if local.is_none() {
                    st.to_pull.push(image.clone());
                }
            } else if must_pull {
                self.pull(name, image, image, local.is_none()).await?;
                let after = self
                    .docker
                    .inspect_image(image)
                    .await
                    .map_err(|e| {
                        format!("{noun} {name}: image {image} after pulling: {}", reason(&e))
                    })?
                    .id;
                st.pulled_any |= after != local;
                if let Some(id) = after {
                    st.ids.insert(name.clone(), id);
                }
                continue;
            }
            if let Some(id) = local {
                st.ids.insert(name.clone(), id);
            }
        }
        Ok(st)
    }

    /// Pulls `from` (a tag or `repo@digest`), reporting progress as `image`.
    async fn pull(&self, name: &str, image: &str, from: &str, missing: bool) -> Result<(), String> {
        let noun = self.noun();
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        let mut pull = PullProgress::default();
        self.progress.start(
            "image_pull",
            &format!("pulling {from}"),
            json!({"service": name, "image": image}),
        );
        while let Some(item) = stream.next().await {
            if let Ok(info) = &item
                && pull.add(info)
            {
                self.progress.update(
                    "image_pull",
                    &format!("pulling {from}: {}", pull.text()),
                    pull.json(name, image),
                );
            }
            if let Err(e) = item {
                return Err(format!(
                    "{noun} {name}: image {from} {}and cannot be pulled: {}",
                    if missing {
                        "does not exist on the host "
                    } else {
                        ""
                    },
                    reason(&e)
                ));
            }
        }
        self.progress.end(
            "image_pull",
            &format!("pulled {from}: {}", pull.text()),
            pull.json(name, image),
        );
        Ok(())
    }

    /// The locked image for `image`: its ID when the tag points to it (after
    /// pulling it by digest and moving the tag back, outside check mode).
    #[allow(clippy::too_many_arguments)]
    async fn pinned(
        &self,
        name: &str,
        image: &str,
        pin: &Pin,
        local: Option<ImageInspect>,
        pull: Pull,
        check: bool,
        st: &mut ImageState,
    ) -> Result<Option<String>, String> {
        let noun = self.noun();
        let repo = images_lock::repository(image);
        let local_id = local.as_ref().and_then(|i| i.id.clone());
        let is_pinned = |i: &ImageInspect| match pin {
            Pin::Digest(d) => i.repo_digests.iter().flatten().any(|rd| {
                rd.rsplit_once('@')
                    .is_some_and(|(r, dd)| dd == d && r == repo)
            }),
            Pin::Id(id) => i.id.as_deref() == Some(id.as_str()),
        };
        if local.as_ref().is_some_and(is_pinned) {
            return Ok(local_id);
        }
        let Pin::Digest(digest) = pin else {
            return Err(format!(
                "{noun} {name}: image {image} on the host is {}, but images.lock pins {}: \
                 a local image no registry serves cannot be pulled by digest; load the pinned \
                 image on the host or run `deployer pin` to accept this one",
                local_id.as_deref().unwrap_or("missing"),
                pin.text()
            ));
        };
        if pull == Pull::Never {
            return Err(format!(
                "{noun} {name}: image {image} on the host is not the pinned {digest} \
                 (images.lock), and pull is never"
            ));
        }
        let by_digest = format!("{repo}@{digest}");
        if check {
            st.to_pull.push(format!("{image} ({by_digest})"));
            return Ok(None);
        }
        self.pull(name, image, &by_digest, local.is_none()).await?;
        self.docker
            .tag_image(
                &by_digest,
                Some(
                    bollard::query_parameters::TagImageOptionsBuilder::default()
                        .repo(repo)
                        .tag(images_lock::tag(image))
                        .build(),
                ),
            )
            .await
            .map_err(|e| {
                format!(
                    "{noun} {name}: tagging {by_digest} as {image}: {}",
                    reason(&e)
                )
            })?;
        let after =
            self.docker.inspect_image(image).await.map_err(|e| {
                format!("{noun} {name}: image {image} after pulling: {}", reason(&e))
            })?;
        if !is_pinned(&after) {
            return Err(format!(
                "{noun} {name}: image {image} is still not the pinned {digest} after pulling {by_digest}"
            ));
        }
        st.pulled_any = true;
        Ok(after.id)
    }

    /// `deployer pin`: what `image` is, asked of the registry through the host's
    /// engine (the manifest digest, as `docker pull` would get it), else the
    /// local image's registry digest, else its ID.
    async fn resolve(
        &self,
        name: &str,
        image: &str,
        local: Option<&ImageInspect>,
    ) -> Result<Pin, String> {
        let noun = self.noun();
        let registry = self.docker.inspect_registry_image(image, None).await;
        if let Ok(d) = &registry
            && let Some(digest) = d.descriptor.digest.as_ref().filter(|d| !d.is_empty())
        {
            return Ok(Pin::Digest(digest.clone()));
        }
        let repo = images_lock::repository(image);
        let Some(local) = local else {
            return Err(format!(
                "{noun} {name}: image {image} is not on host {} and its registry cannot be asked: {}",
                self.host,
                match registry {
                    Err(e) => reason(&e),
                    Ok(_) => "the registry gave no digest".to_string(),
                }
            ));
        };
        if let Some(d) = local.repo_digests.iter().flatten().find_map(|rd| {
            rd.rsplit_once('@')
                .filter(|(r, _)| *r == repo)
                .map(|(_, d)| d)
        }) {
            return Ok(Pin::Digest(d.to_string()));
        }
        local.id.clone().map(Pin::Id).ok_or_else(|| {
            format!(
                "{noun} {name}: image {image} has no ID on host {}",
                self.host
            )
        })
    }

    /// External networks and volumes must exist already. In check mode a
    /// missing one is returned as a note instead: an earlier task of the run
    /// (`docker_network`) may be what creates it.
    pub async fn check_external(&self, check: bool) -> Result<Vec<String>, String> {
        let noun = self.noun();
        let mut notes = Vec::new();
        for n in self.project.networks.iter().filter(|n| n.external) {
            match self.docker.inspect_network(&n.name, None).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    let users: Vec<&str> = self
                        .project
                        .services
                        .iter()
                        .filter(|s| s.spec.networks.contains_key(&n.name))
                        .map(|s| s.name.as_str())
                        .collect();
                    let msg = format!(
                        "external network {} (used by {noun} {}) does not exist on the host: create it first (docker_network)",
                        n.name,
                        users.join(", ")
                    );
                    if !check {
                        return Err(msg);
                    }
                    notes.push(msg);
                }
                Err(e) => return Err(format!("network {}: {}", n.name, reason(&e))),
            }
        }
        for v in self.project.volumes.iter().filter(|v| v.external) {
            match self.docker.inspect_volume(&v.name).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    let msg = format!("external volume {} does not exist on the host", v.name);
                    if !check {
                        return Err(msg);
                    }
                    notes.push(msg);
                }
                Err(e) => return Err(format!("volume {}: {}", v.name, reason(&e))),
            }
        }
        Ok(notes)
    }

    pub async fn ensure_networks_and_volumes(&self) -> Result<bool, String> {
        let mut changed = false;
        for n in self.project.networks.iter().filter(|n| !n.external) {
            match self.docker.inspect_network(&n.name, None).await {
                Ok(_) => continue,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(format!("network {}: {}", n.name, reason(&e))),
            }
            let mut labels: HashMap<String, String> = n.labels.clone().into_iter().collect();
            labels.insert(plan::LABEL_PROJECT.into(), self.project.name.clone());
            labels.insert(plan::LABEL_NETWORK.into(), n.key.clone());
            self.docker
                .create_network(NetworkCreateRequest {
                    name: n.name.clone(),
                    driver: n.driver.clone(),
                    internal: Some(n.internal),
                    labels: Some(labels),
                    ipam: (!n.subnets.is_empty()).then(|| Ipam {
                        config: Some(
                            n.subnets
                                .iter()
                                .map(|(subnet, gateway)| IpamConfig {
                                    subnet: Some(subnet.clone()),
                                    gateway: gateway.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("creating network {}: {}", n.name, reason(&e)))?;
            changed = true;
        }
        for v in self.project.volumes.iter().filter(|v| !v.external) {
            match self.docker.inspect_volume(&v.name).await {
                Ok(_) => continue,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(format!("volume {}: {}", v.name, reason(&e))),
            }
            let mut labels: HashMap<String, String> = v.labels.clone().into_iter().collect();
            labels.insert(plan::LABEL_PROJECT.into(), self.project.name.clone());
            labels.insert(plan::LABEL_VOLUME.into(), v.key.clone());
            self.docker
                .create_volume(VolumeCreateRequest {
                    name: Some(v.name.clone()),
                    driver: v.driver.clone(),
                    labels: Some(labels),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("creating volume {}: {}", v.name, reason(&e)))?;
            changed = true;
        }
        Ok(changed)
    }

    /// Runs the operations in order (they come in depends_on order), waiting
    /// for `service_healthy` / `service_completed_successfully` dependencies
    /// before starting a service.
    pub async fn execute(
        &self,
        ops: &[Operation],
        state: State,
        wait_timeout: Duration,
        image_ids: &BTreeMap<String, String>,
    ) -> Result<bool, String> {
        let noun = self.noun();
        let mut changed = false;
        for op in ops {
            let starts = matches!(
                (op.action, state),
                (Action::Start | Action::Restart, _)
                    | (
                        Action::Create | Action::Recreate,
                        State::Present | State::Restarted
                    )
            );
            if starts && let Some(s) = self.project.service(&op.service) {
                for (dep, cond) in &s.depends_on {
                    if *cond != DependsCondition::ServiceStarted {
                        self.wait_service(dep, Some(*cond), wait_timeout)
                            .await
                            .map_err(|e| format!("{noun} {} waits for {dep}: {e}", op.service))?;
                    }
                }
            }
            let svc = &op.service;
            let ctx = |what: &str, e: bollard::errors::Error| {
                format!("{noun} {svc}: {what}: {}", reason(&e))
            };
            match op.action {
                Action::Unchanged => continue,
                Action::Create | Action::Recreate => {
                    let s = self
                        .project
                        .service(svc)
                        .ok_or_else(|| format!("{noun} {svc} is not in the project"))?;
                    if let (Action::Recreate, Some(old)) = (op.action, &op.container) {
                        self.stop_and_remove(old)
                            .await
                            .map_err(|e| ctx("removing the old container", e))?;
                    }
                    let id = self.create(s, image_ids.get(svc)).await?;
                    if state != State::Stopped {
                        self.docker.start_container(&id, None).await.map_err(|e| {
                            ctx(
                                "starting the new container (it is left created, not running)",
                                e,
                            )
                        })?;
                    }
                }
                Action::Start | Action::Restart | Action::Stop | Action::Remove => {
                    let c = op.container.clone().unwrap_or_default();
                    let r = match op.action {
                        Action::Start => self.docker.start_container(&c, None).await,
                        Action::Restart => self.docker.restart_container(&c, None).await,
                        Action::Stop => self.docker.stop_container(&c, self.stop_options()).await,
                        _ => self.stop_and_remove(&c).await,
                    };
                    r.map_err(|e| ctx(op.action.word(), e))?;
                }
            }
            changed = true;
        }
        Ok(changed)
    }

    fn stop_options(&self) -> Option<StopContainerOptions> {
        self.stop_timeout.map(|t| StopContainerOptions {
            t: Some(t),
            ..Default::default()
        })
    }

    async fn stop_and_remove(&self, container: &str) -> Result<(), bollard::errors::Error> {
        match self
            .docker
            .stop_container(container, self.stop_options())
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(e),
        }
        self.docker
            .remove_container(
                container,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
    }

    /// Creates a service's container (not started) with Compose's labels.
    async fn create(
        &self,
        s: &ComposeService,
        image_id: Option<&String>,
    ) -> Result<String, String> {
        let noun = self.noun();
        let sp = &s.spec;
        let name = self.container_name(s);
        let mut labels: HashMap<String, String> = sp.labels.clone().into_iter().collect();
        let spec_label = serde_json::to_string(&plan::spec_for_label(sp)).unwrap_or_default();
        let ours: Vec<(&str, String)> = match self.kind {
            EngineKind::Compose => vec![
                (plan::LABEL_PROJECT, self.project.name.clone()),
                (plan::LABEL_SERVICE, s.name.clone()),
                (plan::LABEL_CONFIG_HASH, config_hash(sp)),
                (plan::LABEL_NUMBER, "1".into()),
                (plan::LABEL_ONEOFF, "False".into()),
                (plan::LABEL_CONFIG_FILES, self.config_files.join(",")),
                (plan::LABEL_WORKING_DIR, self.working_dir.clone()),
                (plan::LABEL_SPEC, spec_label),
            ],
            EngineKind::Container => vec![
                (LABEL_CONTAINER_HASH, config_hash(sp)),
                (plan::LABEL_SPEC, spec_label),
            ],
        };
        for (k, v) in ours {
            labels.insert(k.to_string(), v);
        }
        if let (Some(id), EngineKind::Compose) = (image_id, self.kind) {
            labels.insert(plan::LABEL_IMAGE.into(), id.clone());
        }
        let mut exposed: Vec<String> = sp
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.target, p.protocol))
            .chain(sp.expose.iter().cloned())
            .collect();
        exposed.sort();
        exposed.dedup();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &sp.ports {
            bindings
                .entry(format!("{}/{}", p.target, p.protocol))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.published.clone()),
                });
        }
        let restart = sp.restart.as_deref().map(|r| {
            let (name, count) = r.split_once(':').unwrap_or((r, ""));
            RestartPolicy {
                name: Some(match name {
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    _ => RestartPolicyNameEnum::NO,
                }),
                maximum_retry_count: count.parse().ok(),
            }
        });
        let mut nets = sp.networks.iter();
        let first = nets.next();
        let body = ContainerCreateBody {
            image: Some(sp.image.clone()),
            cmd: sp.command.clone(),
            entrypoint: sp.entrypoint.clone(),
            env: Some(
                sp.environment
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            healthcheck: sp.healthcheck.as_ref().map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(h.interval),
                timeout: Some(h.timeout),
                start_period: Some(h.start_period),
                retries: Some(h.retries),
                ..Default::default()
            }),
            user: sp.user.clone(),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: (!sp.binds.is_empty()).then(|| sp.binds.clone()),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                cap_add: (!sp.cap_add.is_empty()).then(|| sp.cap_add.clone()),
                cap_drop: (!sp.cap_drop.is_empty()).then(|| sp.cap_drop.clone()),
                memory: sp.memory,
                nano_cpus: sp.nano_cpus,
                restart_policy: restart,
                readonly_rootfs: Some(sp.read_only),
                security_opt: (!sp.security_opt.is_empty()).then(|| sp.security_opt.clone()),
                tmpfs: (!sp.tmpfs.is_empty()).then(|| sp.tmpfs.clone().into_iter().collect()),
                network_mode: first.map(|(n, _)| n.clone()),
                ..Default::default()
            }),
            networking_config: first.map(|(n, aliases)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    n.clone(),
                    EndpointSettings {
                        aliases: Some(aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| {
                format!(
                    "{noun} {}: creating container {name}: {}",
                    s.name,
                    reason(&e)
                )
            })?;
        // API 1.41 attaches one network at creation; the others are connected here.
        for (n, aliases) in nets {
            self.docker
                .connect_network(
                    n,
                    NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(aliases.clone()),
                            ..Default::default()
                        }),
                    },
                )
                .await
                .map_err(|e| {
                    format!(
                        "{noun} {}: connecting to network {n}: {}",
                        s.name,
                        reason(&e)
                    )
                })?;
        }
        Ok(created.id)
    }

    async fn inspect_service(&self, service: &str) -> Result<ContainerInspectResponse, String> {
        let noun = self.noun();
        let s = self
            .project
            .service(service)
            .ok_or_else(|| format!("no {noun} {service}"))?;
        self.docker
            .inspect_container(&self.container_name(s), None)
            .await
            .map_err(|e| format!("{noun} {service}: {}", reason(&e)))
    }

    /// Waits until a service's container is ready: running and healthy (if it
    /// has a healthcheck), or exited 0 for `service_completed_successfully`.
    async fn wait_service(
        &self,
        service: &str,
        cond: Option<DependsCondition>,
        timeout: Duration,
    ) -> Result<(), String> {
        let noun = self.noun();
        let deadline = Instant::now() + timeout;
        let started = Instant::now();
        let waiting_for = if cond == Some(DependsCondition::ServiceCompletedSuccessfully) {
            "to complete"
        } else {
            "to be healthy"
        };
        self.progress.start(
            "health_wait",
            &format!("waiting for {noun} {service} {waiting_for}"),
            json!({"service": service}),
        );
        let result = loop {
            let info = match self.inspect_service(service).await {
                Ok(i) => i,
                Err(e) => break Err(e),
            };
            let st = info.state.clone().unwrap_or_default();
            let health = st.health.clone();
            let status = health.as_ref().and_then(|h| h.status);
            let running = st.running.unwrap_or(false);
            let exit = st.exit_code.unwrap_or(0);
            let (text, detail) = health_progress(noun, service, waiting_for, &info, started);
            self.progress.update("health_wait", &text, detail);
            if cond == Some(DependsCondition::ServiceCompletedSuccessfully) {
                if !running {
                    break if exit == 0 {
                        Ok(())
                    } else {
                        Err(format!("{noun} {service} exited with code {exit}"))
                    };
                }
            } else {
                if !running && !st.restarting.unwrap_or(false) {
                    break Err(format!(
                        "{noun} {service} is not running (exit code {exit})"
                    ));
                }
                match status {
                    None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) => {
                        if running {
                            break Ok(());
                        }
                    }
                    Some(HealthStatusEnum::HEALTHY) => break Ok(()),
                    Some(HealthStatusEnum::UNHEALTHY) => {
                        break Err(format!(
                            "{noun} {service} is unhealthy; last health checks:\n{}",
                            health_log(&info)
                        ));
                    }
                    Some(HealthStatusEnum::STARTING) => {}
                }
            }
            if Instant::now() >= deadline {
                break Err(format!(
                    "{noun} {service} did not become {} within {}s; last health checks:\n{}",
                    if cond == Some(DependsCondition::ServiceCompletedSuccessfully) {
                        "complete"
                    } else {
                        "healthy"
                    },
                    timeout.as_secs(),
                    health_log(&info)
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let secs = started.elapsed().as_secs();
        match &result {
            Ok(()) => self.progress.end(
                "health_wait",
                &format!("{noun} {service} ready after {secs}s"),
                json!({"service": service, "ready": true, "seconds": secs}),
            ),
            Err(_) => self.progress.end(
                "health_wait",
                &format!("{noun} {service} not ready after {secs}s"),
                json!({"service": service, "ready": false, "seconds": secs}),
            ),
        }
        result
    }

    /// `wait: true`: every service running, and healthy where it has a
    /// healthcheck; a one-shot job (see `ComposeProject::is_one_shot`) exited 0.
    pub async fn wait_ready(&self, order: &[String], timeout: Duration) -> Result<(), String> {
        for s in order {
            let cond = self
                .project
                .is_one_shot(s)
                .then_some(DependsCondition::ServiceCompletedSuccessfully);
            self.wait_service(s, cond, timeout).await?;
        }
        Ok(())
    }

    /// `state: absent`: the project's containers go.
    pub async fn remove_all(&self, ops: &[Operation]) -> Result<bool, String> {
        let noun = self.noun();
        let mut changed = false;
        for op in ops.iter().filter(|o| o.action == Action::Remove) {
            if let Some(c) = &op.container {
                self.stop_and_remove(c)
                    .await
                    .map_err(|e| format!("{noun} {}: removing {c}: {}", op.service, reason(&e)))?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// `state: absent`: the networks this project created go too.
    pub async fn remove_networks(&self) -> Result<bool, String> {
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(self.project_filter()),
            }))
            .await
            .map_err(|e| format!("listing networks: {}", reason(&e)))?;
        let mut changed = false;
        for n in nets {
            let Some(name) = n.name else { continue };
            match self.docker.remove_network(&name).await {
                Ok(()) => changed = true,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(format!("removing network {name}: {}", reason(&e))),
            }
        }
        Ok(changed)
    }

    /// What runs now: per service the container, image and image digest
    /// (the rollback work pins these).
    pub async fn running_images(&self, order: &[String]) -> Result<Json, String> {
        let mut out = serde_json::Map::new();
        for s in order {
            let Ok(info) = self.inspect_service(s).await else {
                continue;
            };
            let image_id = info.image.clone().unwrap_or_default();
            let digest = match self.docker.inspect_image(&image_id).await {
                Ok(i) => i
                    .repo_digests
                    .and_then(|d| d.into_iter().next())
                    .unwrap_or_else(|| image_id.clone()),
                Err(_) => image_id.clone(),
            };
            out.insert(
                s.clone(),
                json!({
                    "container": info.id,
                    "image": info.config.as_ref().and_then(|c| c.image.clone()),
                    "image_id": image_id,
                    "digest": digest,
                }),
            );
        }
        Ok(Json::Object(out))
    }
}

/// A container as the plan sees it. `service` overrides the compose service
/// label (a `docker_container` has none); `hash_label` is where its config
/// hash is.
fn observed_container(
    id: String,
    info: &ContainerInspectResponse,
    service: Option<&str>,
    hash_label: &str,
) -> ObservedContainer {
    let labels = info
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let env = info
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let state = info.state.clone().unwrap_or_default();
    ObservedContainer {
        id,
        name: info
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        service: match service {
            Some(s) => s.to_string(),
            None => labels.get(plan::LABEL_SERVICE).cloned().unwrap_or_default(),
        },
        number: labels
            .get(plan::LABEL_NUMBER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        config_hash: labels.get(hash_label).cloned().unwrap_or_default(),
        running: state.running.unwrap_or(false),
        exit_code: if state.running.unwrap_or(false) {
            None
        } else {
            state.exit_code
        },
        image_id: info.image.clone().unwrap_or_default(),
        started_at: state.started_at.clone().unwrap_or_default(),
        spec: labels
            .get(plan::LABEL_SPEC)
            .and_then(|s| serde_json::from_str(s).ok()),
        env,
    }
}

/// An image pull's bytes, summed over its layers from the daemon's progress
/// messages (`Downloading` with current/total; a layer `Download complete` or
/// `Pull complete` counts as fully done, one that `Already exists` as nothing
/// to download).
#[derive(Default)]
struct PullProgress {
    /// Layer id -> (bytes done, total bytes when known).
    layers: BTreeMap<String, (u64, Option<u64>)>,
}

impl PullProgress {
    /// Takes one message; true when the byte counts or a layer's state changed.
    fn add(&mut self, info: &bollard::models::CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (&info.id, &info.status) else {
            return false;
        };
        let d = info.progress_detail.as_ref();
        let current = d
            .and_then(|d| d.current)
            .and_then(|c| u64::try_from(c).ok());
        let total = d
            .and_then(|d| d.total)
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0);
        let new = !self.layers.contains_key(id);
        let entry = self.layers.entry(id.clone()).or_insert((0, None));
        let before = *entry;
        match status.as_str() {
            "Downloading" => {
                entry.0 = current.unwrap_or(entry.0);
                entry.1 = total.or(entry.1);
            }
            // Nothing to download for this layer.
            "Already exists" => *entry = (0, Some(0)),
            "Download complete" | "Pull complete" => {
                let t = entry.1.unwrap_or(entry.0);
                *entry = (t, Some(t));
            }
            _ => {}
        }
        new || *entry != before
    }

    fn done(&self) -> u64 {
        self.layers.values().map(|(d, _)| d).sum()
    }

    fn total(&self) -> Option<u64> {
        self.layers.values().map(|(_, t)| *t).sum()
    }

    /// "12.3 MB of 40.1 MB" (or "12.3 MB" while a layer's size is unknown).
    fn text(&self) -> String {
        match self.total() {
            Some(t) => format!(
                "{} of {}",
                crate::report::human_bytes(self.done()),
                crate::report::human_bytes(t)
            ),
            None => crate::report::human_bytes(self.done()),
        }
    }

    fn json(&self, service: &str, image: &str) -> Json {
        json!({
            "service": service,
            "image": image,
            "bytes_done": self.done(),
            "bytes_total": self.total(),
            "layers": self.layers.len(),
        })
    }
}

/// A health wait's status-line text and event fields: the container's health
/// status (or running state), how long it has waited, and the last health
/// check's exit code and first output line.
fn health_progress(
    noun: &str,
    service: &str,
    waiting_for: &str,
    info: &ContainerInspectResponse,
    started: Instant,
) -> (String, Json) {
    let st = info.state.as_ref();
    let health = st.and_then(|s| s.health.as_ref());
    let status = match health.and_then(|h| h.status) {
        Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => st
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        Some(h) => h.to_string(),
    };
    let last = health
        .and_then(|h| h.log.as_ref())
        .and_then(|l| l.last())
        .map(|r| {
            let line = r
                .output
                .as_deref()
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .chars()
                .take(120)
                .collect::<String>();
            (r.exit_code.unwrap_or(-1), line)
        });
    let secs = started.elapsed().as_secs();
    let mut text = format!("waiting for {noun} {service} {waiting_for} ({secs}s): {status}");
    if let Some((code, line)) = &last {
        text.push_str(&format!("; last check exit {code}"));
        if !line.is_empty() {
            text.push_str(&format!(": {line}"));
        }
    }
    let detail = json!({
        "service": service,
        "health": status,
        "seconds": secs,
        "last_check_exit": last.as_ref().map(|(c, _)| *c),
        "last_check_output": last.as_ref().map(|(_, l)| l.clone()),
    });
    (text, detail)
}

fn health_log(info: &ContainerInspectResponse) -> String {
    let log = info
        .state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.log.clone())
        .unwrap_or_default();
    if log.is_empty() {
        return "  (no health check has run yet)".into();
    }
    log.iter()
        .rev()
        .take(3)
        .rev()
        .map(|r| {
            format!(
                "  exit {}: {}",
                r.exit_code.unwrap_or(-1),
                r.output.clone().unwrap_or_default().trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::PullProgress;
    use bollard::models::{CreateImageInfo, ProgressDetail};

    fn msg(id: &str, status: &str, current: Option<i64>, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail { current, total }),
            ..Default::default()
        }
    }

    /// The daemon's pull messages, as `docker pull` sends them for a
    /// two-layer image whose first layer is already present.
    #[test]
    fn pull_bytes_are_summed_over_layers() {
        let mut p = PullProgress::default();
        assert!(!p.add(&CreateImageInfo {
            status: Some("Pulling from library/x".into()),
            ..Default::default()
        }));
        assert!(p.add(&msg("a", "Pulling fs layer", None, None)));
        assert!(p.add(&msg("b", "Already exists", None, None)));
        assert!(p.add(&msg("a", "Downloading", Some(1_000_000), Some(4_000_000))));
        assert_eq!(p.text(), "1.0 MB of 4.0 MB");
        // The same count again is not news.
        assert!(!p.add(&msg("a", "Downloading", Some(1_000_000), Some(4_000_000))));
        assert!(p.add(&msg("a", "Downloading", Some(3_500_000), Some(4_000_000))));
        assert!(p.add(&msg("a", "Download complete", None, None)));
        assert_eq!(p.text(), "4.0 MB of 4.0 MB");
        let j = p.json("api", "reg/x:1");
        assert_eq!(j["bytes_done"], 4_000_000);
        assert_eq!(j["bytes_total"], 4_000_000);
        assert_eq!(j["layers"], 2);
        // A layer whose size is not known yet: bytes only.
        assert!(p.add(&msg("c", "Waiting", None, None)));
        assert_eq!(p.text(), "4.0 MB");
    }
}
