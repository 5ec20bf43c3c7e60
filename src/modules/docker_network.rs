//! `community.docker.docker_network`: makes a Docker network exist with the
//! given settings (or not exist). A network whose settings differ is
//! recreated only when no container is attached to it; otherwise the task
//! fails naming the attached containers (Ansible silently disconnects them),
//! and nothing is changed. Only Ansible's argument names are accepted (the fields of `NetworkArgs`).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest, NetworkInspect};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::args::{de_opt_bool, de_opt_string};
use super::compose::docker_socket;
use super::compose::engine::{is_not_found, reason};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{FileDiff, ModuleCtx, ModuleResult, parse_args};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkArgs {
    #[serde(default, alias = "network_name", deserialize_with = "de_opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    driver: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string_map")]
    driver_options: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    internal: Option<bool>,
    #[serde(default)]
    ipam_config: Option<Vec<IpamArg>>,
    #[serde(default, deserialize_with = "de_opt_string_map")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    attachable: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    enable_ipv6: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    docker_host: Option<String>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpamArg {
    #[serde(default, deserialize_with = "de_opt_string")]
    subnet: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    gateway: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    iprange: Option<String>,
}

/// A mapping whose values Ansible turns into strings (`{mtu: 1400}`).
fn de_opt_string_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    use serde::de::Error as _;
    match Json::deserialize(d)? {
        Json::Null => Ok(None),
        Json::Object(m) => m
            .into_iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k, s)),
                Json::Number(n) => Ok((k, n.to_string())),
                Json::Bool(b) => Ok((k, b.to_string())),
                other => Err(D::Error::custom(format!(
                    "expected a string value for '{k}', got {other}"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        other => Err(D::Error::custom(format!("expected a mapping, got {other}"))),
    }
}

/// The network as it should be; `None` fields are left as Docker has them.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredNetwork {
    pub name: String,
    pub driver: String,
    pub driver_options: BTreeMap<String, String>,
    pub internal: Option<bool>,
    pub ipam: Option<Vec<IpamArg>>,
    pub labels: BTreeMap<String, String>,
    pub attachable: Option<bool>,
    pub enable_ipv6: Option<bool>,
}

/// Differences between an existing network and the desired one, as Ansible's
/// module compares them: options and labels as subsets (extra ones Docker or
/// someone else added do not count), the rest only when given.
pub fn differences(have: &NetworkInspect, want: &DesiredNetwork) -> Vec<String> {
    let mut out = Vec::new();
    let have_driver = have.driver.clone().unwrap_or_default();
    if have_driver != want.driver {
        out.push(format!("driver: {have_driver} -> {}", want.driver));
    }
    let have_opts = have.options.clone().unwrap_or_default();
    for (k, v) in &want.driver_options {
        if have_opts.get(k) != Some(v) {
            out.push(format!(
                "driver_options.{k}: {} -> {v}",
                have_opts.get(k).map_or("(none)", String::as_str)
            ));
        }
    }
    let have_labels = have.labels.clone().unwrap_or_default();
    for (k, v) in &want.labels {
        if have_labels.get(k) != Some(v) {
            out.push(format!(
                "labels.{k}: {} -> {v}",
                have_labels.get(k).map_or("(none)", String::as_str)
            ));
        }
    }
    let flag = |out: &mut Vec<String>, name: &str, have: Option<bool>, want: Option<bool>| {
        if let Some(w) = want
            && have.unwrap_or(false) != w
        {
            out.push(format!("{name}: {} -> {w}", have.unwrap_or(false)));
        }
    };
    flag(&mut out, "internal", have.internal, want.internal);
    flag(&mut out, "attachable", have.attachable, want.attachable);
    flag(&mut out, "enable_ipv6", have.enable_ipv6, want.enable_ipv6);
    if let Some(want_ipam) = &want.ipam {
        let have_ipam: Vec<IpamConfig> = have
            .ipam
            .as_ref()
            .and_then(|i| i.config.clone())
            .unwrap_or_default();
        let same = want_ipam.len() == have_ipam.len()
            && want_ipam.iter().all(|w| {
                have_ipam.iter().any(|h| {
                    h.subnet == w.subnet
                        && (w.gateway.is_none() || h.gateway == w.gateway)
                        && (w.iprange.is_none() || h.ip_range == w.iprange)
                })
            });
        if !same {
            let show = |s: &Option<String>, g: &Option<String>, r: &Option<String>| {
                let mut x = s.clone().unwrap_or_else(|| "(auto)".into());
                if let Some(g) = g {
                    x.push_str(&format!(" gw {g}"));
                }
                if let Some(r) = r {
                    x.push_str(&format!(" range {r}"));
                }
                x
            };
            out.push(format!(
                "ipam_config: [{}] -> [{}]",
                have_ipam
                    .iter()
                    .map(|h| show(&h.subnet, &h.gateway, &h.ip_range))
                    .collect::<Vec<_>>()
                    .join(", "),
                want_ipam
                    .iter()
                    .map(|w| show(&w.subnet, &w.gateway, &w.iprange))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

fn attached(have: &NetworkInspect) -> Vec<String> {
    let mut names: Vec<String> = have
        .containers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, e)| e.name.unwrap_or(id))
        .collect();
    names.sort();
    names
}

pub async fn docker_network(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: NetworkArgs = parse_args("docker_network", args)?;
    let name = a
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("docker_network: name is required")?;
    let present = match a.state.as_deref().unwrap_or("present") {
        "present" => true,
        "absent" => false,
        o => {
            return Err(format!(
                "docker_network: state must be present or absent, got '{o}'"
            ));
        }
    };
    if let Some(c) = a.ipam_config.iter().flatten().find(|c| c.subnet.is_none()) {
        return Err(format!(
            "docker_network: every ipam_config entry needs a subnet, got {c:?}"
        ));
    }
    let want = DesiredNetwork {
        name: name.clone(),
        driver: a.driver.clone().unwrap_or_else(|| "bridge".into()),
        driver_options: a.driver_options.clone().unwrap_or_default(),
        internal: a.internal,
        ipam: a.ipam_config.clone(),
        labels: a.labels.clone().unwrap_or_default(),
        attachable: a.attachable,
        enable_ipv6: a.enable_ipv6,
    };
    let socket = docker_socket("docker_network", a.docker_host.as_deref())?;
    let docker = ctx
        .conn
        .docker(&socket, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let have = match docker.inspect_network(&name, None).await {
        Ok(n) => Some(n),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(format!("network {name}: {}", reason(&e))),
    };
    let mut r = ModuleResult::ok();
    let diff = |attributes: Vec<String>| FileDiff {
        path: format!("network {name}"),
        before: None,
        after: None,
        attributes,
        note: None,
    };
    // (remove the existing one, create the desired one)
    let (remove, create) = match (&have, present) {
        (None, false) => (false, false),
        (None, true) => {
            r.diffs.push(diff(vec!["create (no network yet)".into()]));
            (false, true)
        }
        (Some(h), false) => {
            let users = attached(h);
            if !users.is_empty() {
                return Err(format!(
                    "network {name} cannot be removed: containers are attached to it ({}); remove them or take them off the network first",
                    users.join(", ")
                ));
            }
            r.diffs.push(diff(vec!["remove (state is absent)".into()]));
            (true, false)
        }
        (Some(h), true) => {
            let changes = differences(h, &want);
            if changes.is_empty() {
                (false, false)
            } else {
                let users = attached(h);
                if !users.is_empty() {
                    return Err(format!(
                        "network {name} differs ({}) but containers are attached to it ({}): it is left as it is; remove or disconnect them first, then re-run",
                        changes.join("; "),
                        users.join(", ")
                    ));
                }
                let mut attrs = vec!["recreate (settings differ, no container attached)".into()];
                attrs.extend(changes);
                r.diffs.push(diff(attrs));
                (true, true)
            }
        }
    };
    r.changed = remove || create;
    r.msg = Some(format!(
        "{name}: {}",
        match (remove, create) {
            (false, false) => "unchanged",
            (false, true) => "create",
            (true, false) => "remove",
            (true, true) => "recreate",
        }
    ));
    if ctx.check || !r.changed {
        if let Some(h) = &have
            && present
        {
            r.data.insert("network".into(), network_json(h));
        }
        return Ok(r);
    }
    if remove {
        docker
            .remove_network(&name)
            .await
            .map_err(|e| format!("removing network {name}: {}", reason(&e)))?;
    }
    if create {
        docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some(want.driver.clone()),
                internal: want.internal,
                attachable: want.attachable,
                enable_ipv6: want.enable_ipv6,
                options: (!want.driver_options.is_empty())
                    .then(|| want.driver_options.clone().into_iter().collect()),
                labels: (!want.labels.is_empty())
                    .then(|| want.labels.clone().into_iter().collect::<HashMap<_, _>>()),
                ipam: want.ipam.as_ref().map(|cfgs| Ipam {
                    config: Some(
                        cfgs.iter()
                            .map(|c| IpamConfig {
                                subnet: c.subnet.clone(),
                                gateway: c.gateway.clone(),
                                ip_range: c.iprange.clone(),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                format!(
                    "creating network {name}{}: {}",
                    if remove {
                        " (the old one was removed)"
                    } else {
                        ""
                    },
                    reason(&e)
                )
            })?;
        if let Ok(n) = docker.inspect_network(&name, None).await {
            r.data.insert("network".into(), network_json(&n));
        }
    }
    Ok(r)
}

fn network_json(n: &NetworkInspect) -> Json {
    json!({
        "Name": n.name,
        "Id": n.id,
        "Driver": n.driver,
        "Internal": n.internal,
        "Attachable": n.attachable,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": {"Config": n.ipam.as_ref().and_then(|i| i.config.as_ref()).map(|c| c.iter().map(|x| json!({
            "Subnet": x.subnet, "Gateway": x.gateway, "IPRange": x.ip_range,
        })).collect::<Vec<_>>())},
        "Labels": n.labels,
        "Options": n.options,
    })
}

// The registry's entry. Not yet split into plan and apply (plans, and outside check mode applies, in one function).

/// `docker_network`: a Docker network.
pub struct DockerNetwork;

impl Module for DockerNetwork {
    fn name(&self) -> &'static str {
        "docker_network"
    }
    fn fqcn(&self) -> &'static str {
        "community.docker.docker_network"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<NetworkArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") && !args.contains_key("network_name") {
            return Err("`name` is required".into());
        }
        super::args::check_choice(args, "state", &["present", "absent"])
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(docker_network(args, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing() -> NetworkInspect {
        NetworkInspect {
            name: Some("front".into()),
            driver: Some("bridge".into()),
            internal: Some(false),
            labels: Some(HashMap::from([
                ("team".to_string(), "web".to_string()),
                ("added.by.someone".to_string(), "x".to_string()),
            ])),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some("10.1.0.0/24".into()),
                    gateway: Some("10.1.0.1".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn desired() -> DesiredNetwork {
        DesiredNetwork {
            name: "front".into(),
            driver: "bridge".into(),
            driver_options: BTreeMap::new(),
            internal: None,
            ipam: Some(vec![IpamArg {
                subnet: Some("10.1.0.0/24".into()),
                gateway: None,
                iprange: None,
            }]),
            labels: BTreeMap::from([("team".to_string(), "web".to_string())]),
            attachable: None,
            enable_ipv6: None,
        }
    }

    #[test]
    fn a_matching_network_has_no_differences() {
        assert_eq!(differences(&existing(), &desired()), Vec::<String>::new());
    }

    #[test]
    fn each_differing_setting_is_named() {
        let mut w = desired();
        w.internal = Some(true);
        w.ipam = Some(vec![IpamArg {
            subnet: Some("10.2.0.0/24".into()),
            gateway: Some("10.2.0.1".into()),
            iprange: None,
        }]);
        w.labels.insert("team".into(), "api".into());
        w.driver = "macvlan".into();
        assert_eq!(
            differences(&existing(), &w),
            vec![
                "driver: bridge -> macvlan",
                "labels.team: web -> api",
                "internal: false -> true",
                "ipam_config: [10.1.0.0/24 gw 10.1.0.1] -> [10.2.0.0/24 gw 10.2.0.1]",
            ]
        );
    }

    #[test]
    fn arguments_outside_ansibles_are_refused() {
        let e = parse_args::<NetworkArgs>("docker_network", json!({"name": "x", "scope": "swarm"}))
            .err()
            .unwrap_or_default();
        assert!(e.contains("unknown field `scope`"), "{e}");
        let e = parse_args::<NetworkArgs>(
            "docker_network",
            json!({"name": "x", "ipam_config": [{"subnet": "10.0.0.0/8", "aux_addresses": {}}]}),
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("unknown field `aux_addresses`"), "{e}");
        for a in DockerNetwork.args().names.unwrap_or_default() {
            assert!(
                serde_json::from_value::<NetworkArgs>(json!({ *a: null })).is_ok(),
                "{a} is listed but not accepted"
            );
        }
    }
}
