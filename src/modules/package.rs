//! `package` and `service`: Ansible's generic front ends, dispatching as
//! Ansible's do on `ansible_pkg_mgr` / `ansible_service_mgr` (from the facts,
//! or found on the host when facts were not gathered). deployer implements
//! apt and systemd; any other manager is a clear "not supported yet" failure.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_bool, de_opt_list, de_opt_string};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{ModuleCtx, ModuleResult, parse_args};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageArgs {
    #[serde(deserialize_with = "de_opt_list", default)]
    name: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string", rename = "use")]
    use_: Option<String>,
}

/// A fact of the host, or what a probe on the host says when facts were not
/// gathered (Ansible's action plugin gathers just that fact then).
async fn fact_or_probe(ctx: &mut ModuleCtx<'_>, fact: &str, probe: &str) -> Result<String, String> {
    let v = ctx
        .vars
        .lookup(fact)
        .filter(|v| !v.is_undefined() && !v.is_none())
        .map(|v| v.to_string());
    let _ = ctx.vars.take_error();
    if let Some(v) = v {
        return Ok(v);
    }
    let out = ctx
        .conn
        .run_script(probe, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(out.stdout_str().trim().to_string())
}

pub struct Package;

impl Module for Package {
    fn name(&self) -> &'static str {
        "package"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.package"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PackageArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") {
            return Err("missing required argument: name".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a: PackageArgs = parse_args("package", args)?;
            let mgr = match a.use_.as_deref() {
                Some(u) if u != "auto" => u.to_string(),
                _ => {
                    fact_or_probe(
                        ctx,
                        "ansible_pkg_mgr",
                        "if [ -x /usr/bin/apt-get ]; then echo apt; else echo unknown; fi",
                    )
                    .await?
                }
            };
            if mgr != "apt" {
                return Ok(ModuleResult::failed(format!(
                    "package: the package manager '{mgr}' is not supported yet by deployer (supported: apt)"
                )));
            }
            let mut m = Map::new();
            m.insert("name".into(), json!(a.name.unwrap_or_default()));
            if let Some(s) = a.state {
                m.insert("state".into(), json!(s));
            }
            super::registry::plan_apply(&super::apt::Apt, Json::Object(m), ctx).await
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceArgs {
    #[serde(deserialize_with = "de_opt_string", default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string", rename = "use")]
    use_: Option<String>,
}

pub struct Service;

impl Module for Service {
    fn name(&self) -> &'static str {
        "service"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.service"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<ServiceArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") {
            return Err("missing required argument: name".into());
        }
        if !args.contains_key("state") && !args.contains_key("enabled") {
            return Err("one of the following is required: state, enabled".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a: ServiceArgs = parse_args("service", args)?;
            let mgr = match a.use_.as_deref() {
                Some(u) if u != "auto" => u.to_string(),
                _ => {
                    fact_or_probe(
                        ctx,
                        "ansible_service_mgr",
                        "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd; else cat /proc/1/comm 2>/dev/null || echo service; fi",
                    )
                    .await?
                }
            };
            if mgr != "systemd" {
                return Ok(ModuleResult::failed(format!(
                    "service: the service manager '{mgr}' is not supported yet by deployer (supported: systemd)"
                )));
            }
            let mut m = Map::new();
            if let Some(n) = a.name {
                m.insert("name".into(), json!(n));
            }
            if let Some(s) = a.state {
                m.insert("state".into(), json!(s));
            }
            if let Some(e) = a.enabled {
                m.insert("enabled".into(), json!(e));
            }
            super::registry::plan_apply(&super::systemd::Systemd, Json::Object(m), ctx).await
        })
    }
}
