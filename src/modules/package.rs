//! `package` and `service`: Ansible's generic front ends, dispatching as
//! Ansible's do on `ansible_pkg_mgr` / `ansible_service_mgr` (from the facts,
//! or found on the host when facts were not gathered). deployer implements
//! apt and systemd; any other manager is a clear "not supported yet" failure.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_bool, de_opt_list, de_opt_string};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{ModuleCtx, ModuleResult, parse_args};

/// `package`'s own arguments (`name`, `state`, `use`) and those of the
/// package managers it hands the task to: Ansible's package action passes
/// every argument on, and the manager's module refuses those it does not
/// take (`enablerepo` on apt) when the task runs. Only `use` is read from
/// the struct; the rest is the load-time schema, forwarded as given.
#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct PackageArgs {
    #[serde(deserialize_with = "de_opt_list", default)]
    name: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string", rename = "use")]
    use_: Option<String>,
    // dnf/yum's (and zypper's), refused by apt at run time as Ansible does.
    #[serde(default)]
    enablerepo: Option<Json>,
    #[serde(default)]
    disablerepo: Option<Json>,
    #[serde(default)]
    disable_gpg_check: Option<Json>,
    #[serde(default)]
    exclude: Option<Json>,
    #[serde(default)]
    install_weak_deps: Option<Json>,
    #[serde(default)]
    skip_broken: Option<Json>,
    #[serde(default)]
    update_only: Option<Json>,
    #[serde(default)]
    releasever: Option<Json>,
    #[serde(default)]
    conf_file: Option<Json>,
    #[serde(default)]
    validate_certs: Option<Json>,
    // apt's (and dnf's).
    #[serde(default, alias = "update-cache")]
    update_cache: Option<Json>,
    #[serde(default)]
    cache_valid_time: Option<Json>,
    #[serde(default)]
    purge: Option<Json>,
    #[serde(default, alias = "install-recommends")]
    install_recommends: Option<Json>,
    #[serde(default, alias = "default-release")]
    default_release: Option<Json>,
    #[serde(default)]
    dpkg_options: Option<Json>,
    #[serde(default)]
    lock_timeout: Option<Json>,
    #[serde(default)]
    force_apt_get: Option<Json>,
    #[serde(
        default,
        alias = "allow-downgrade",
        alias = "allow_downgrades",
        alias = "allow-downgrades"
    )]
    allow_downgrade: Option<Json>,
    #[serde(default, alias = "allow-unauthenticated")]
    allow_unauthenticated: Option<Json>,
    #[serde(default)]
    allow_change_held_packages: Option<Json>,
    #[serde(default)]
    policy_rc_d: Option<Json>,
}

/// How `ansible_pkg_mgr` is found when facts were not gathered.
pub(super) const PKG_MGR_PROBE: &str =
    "if [ -x /usr/bin/apt-get ]; then echo apt; else echo unknown; fi";

/// A fact of the host, or what a probe on the host says when facts were not
/// gathered (Ansible's action plugin gathers just that fact then).
pub(super) async fn fact_or_probe(
    ctx: &mut ModuleCtx<'_>,
    fact: &str,
    probe: &str,
) -> Result<String, String> {
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
            let mut forwarded = match &args {
                Json::Object(m) => m.clone(),
                _ => Map::new(),
            };
            let a: PackageArgs = parse_args("package", args)?;
            let mgr = match a.use_.as_deref() {
                Some(u) if u != "auto" => u.to_string(),
                _ => fact_or_probe(ctx, "ansible_pkg_mgr", PKG_MGR_PROBE).await?,
            };
            if mgr != "apt" {
                return Ok(ModuleResult::failed(format!(
                    "package: the package manager '{mgr}' is not supported yet by deployer (supported: apt)"
                )));
            }
            // As Ansible's package action: every argument but `use` goes to
            // the manager's module, which refuses what it does not take.
            forwarded.remove("use");
            forwarded.retain(|_, v| !v.is_null());
            let apt_names = super::apt::Apt.args().names.unwrap_or(&[]);
            let mut unsupported: Vec<&str> = forwarded
                .keys()
                .map(String::as_str)
                .filter(|k| !apt_names.contains(k))
                .collect();
            if !unsupported.is_empty() {
                unsupported.sort_unstable();
                let mut supported: Vec<&str> = apt_names.to_vec();
                supported.sort_unstable();
                return Ok(ModuleResult::failed(format!(
                    "Unsupported parameters for (ansible.legacy.apt) module: {}. Supported parameters include: {}.",
                    unsupported.join(", "),
                    supported.join(", ")
                )));
            }
            super::registry::plan_apply(&super::apt::Apt, Json::Object(forwarded), ctx).await
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
    // The service module's, which the systemd module does not take: Ansible
    // drops them (with a warning) on systemd hosts.
    #[serde(default)]
    sleep: Option<Json>,
    #[serde(default)]
    pattern: Option<Json>,
    #[serde(default)]
    runlevel: Option<Json>,
    #[serde(default, alias = "args")]
    arguments: Option<Json>,
    // The systemd module's.
    #[serde(default, deserialize_with = "de_opt_bool")]
    masked: Option<bool>,
    #[serde(default, alias = "daemon-reload", deserialize_with = "de_opt_bool")]
    daemon_reload: Option<bool>,
    #[serde(default, alias = "daemon-reexec", deserialize_with = "de_opt_bool")]
    daemon_reexec: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    no_block: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    force: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    scope: Option<String>,
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
        // deployer runs `service` on systemd hosts only, where Ansible checks
        // the task as its systemd module does: `daemon_reload` alone is valid.
        let mut sd = args.clone();
        for k in ["use", "sleep", "pattern", "runlevel", "arguments", "args"] {
            sd.remove(k);
        }
        super::systemd::Systemd.check_combination(&sd)
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
            let mut put = |k: &str, v: Json| {
                if !v.is_null() {
                    m.insert(k.into(), v);
                }
            };
            put("name", json!(a.name));
            put("state", json!(a.state));
            put("enabled", json!(a.enabled));
            put("masked", json!(a.masked));
            put("daemon_reload", json!(a.daemon_reload));
            put("daemon_reexec", json!(a.daemon_reexec));
            put("no_block", json!(a.no_block));
            put("force", json!(a.force));
            put("scope", json!(a.scope));
            // As Ansible's service action on systemd: these are dropped.
            let ignored: Vec<String> = [
                ("sleep", &a.sleep),
                ("pattern", &a.pattern),
                ("runlevel", &a.runlevel),
                ("arguments", &a.arguments),
            ]
            .iter()
            .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
            .map(|(k, _)| format!("Ignoring \"{k}\" as it is not used in \"systemd\""))
            .collect();
            if !ignored.is_empty() {
                let mut r =
                    super::registry::plan_apply(&super::systemd::Systemd, Json::Object(m), ctx)
                        .await?;
                r.data.insert("warnings".into(), json!(ignored));
                return Ok(r);
            }
            super::registry::plan_apply(&super::systemd::Systemd, Json::Object(m), ctx).await
        })
    }
}
