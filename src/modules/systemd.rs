//! `systemd` / `systemd_service` (and `service` on systemd hosts): units
//! through the host's `systemctl`, deciding `changed` as Ansible's
//! `ansible.builtin.systemd_service` does.
//!
//! Observe (one execution): `systemctl show` of the unit and
//! `systemctl is-enabled`. Plan (pure): mask/unmask, enable/disable and
//! start/stop/restart/reload. Apply: `daemon-reload` first when asked, then
//! those `systemctl` calls, in Ansible's order.
//!
//! Supported: `name` (`service`, `unit`), `state`, `enabled`, `masked`,
//! `daemon_reload` (`daemon-reload`), `daemon_reexec`, `no_block`, `force`,
//! `scope: system`. Not supported yet: `scope: user`/`global` (refused).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_bool, de_opt_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SystemdArgs {
    #[serde(
        default,
        alias = "service",
        alias = "unit",
        deserialize_with = "de_opt_string"
    )]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<UnitState>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub masked: Option<bool>,
    #[serde(default, alias = "daemon-reload", deserialize_with = "de_opt_bool")]
    pub daemon_reload: Option<bool>,
    #[serde(default, alias = "daemon-reexec", deserialize_with = "de_opt_bool")]
    pub daemon_reexec: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub no_block: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub force: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub scope: Option<String>,
}

/// A unit name systemd accepts (no shell text reaches the host anyway: it is
/// quoted), checked so that a typo fails before anything runs.
fn valid_unit(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 256
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
}

pub struct Systemd;

impl Module for Systemd {
    fn name(&self) -> &'static str {
        "systemd_service"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.systemd_service"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "systemd",
            "ansible.builtin.systemd",
            "ansible.legacy.systemd",
        ]
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<SystemdArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        let has = |k: &str| args.get(k).is_some_and(|v| !v.is_null());
        if let Some(s) = args.get("scope").and_then(Json::as_str)
            && s != "system"
        {
            return Err(format!(
                "scope '{s}' is not supported yet by deployer (only system)"
            ));
        }
        if (has("state") || has("enabled") || has("masked"))
            && !(has("name") || has("service") || has("unit"))
        {
            return Err("state, enabled and masked need name".into());
        }
        if ![
            "state",
            "enabled",
            "masked",
            "daemon_reload",
            "daemon-reload",
            "daemon_reexec",
            "daemon-reexec",
        ]
        .iter()
        .any(|k| has(k))
        {
            return Err(
                "one of the following is required: state, enabled, masked, daemon_reload, daemon_reexec"
                    .into(),
            );
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

#[derive(Debug, Default)]
pub struct UnitObserved {
    /// `systemctl show` properties.
    pub status: Map<String, Json>,
    /// `systemctl is-enabled`: exit code and output.
    pub enabled_rc: i32,
    pub enabled_out: String,
    /// An init script of that name exists.
    pub initd: bool,
}

const MARK: &str = "__deployer_systemd__";

fn observe_script(unit: &str) -> String {
    let u = shell_quote(unit);
    format!(
        "command -v systemctl >/dev/null 2>&1 || {{ echo 'systemctl not found on the host' >&2; exit 3; }}\n\
         systemctl show {u} --no-pager 2>/dev/null || true\n\
         e=$(systemctl is-enabled {u} 2>/dev/null); rc=$?\n\
         printf '{MARK}enabled\\t%s\\t%s\\n' \"$rc\" \"$e\"\n\
         [ -x /etc/init.d/{base} ] && printf '{MARK}initd\\n'\n\
         exit 0\n",
        base = shell_quote(unit.strip_suffix(".service").unwrap_or(unit)),
    )
}

pub fn parse_observed(out: &str) -> UnitObserved {
    let mut o = UnitObserved::default();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{MARK}enabled\t")) {
            let (rc, text) = rest.split_once('\t').unwrap_or((rest, ""));
            o.enabled_rc = rc.trim().parse().unwrap_or(1);
            o.enabled_out = text.trim().to_string();
        } else if line == format!("{MARK}initd") {
            o.initd = true;
        } else if let Some((k, v)) = line.split_once('=') {
            o.status.insert(k.to_string(), json!(v));
        }
    }
    o
}

#[derive(Debug, PartialEq, Eq, Default)]
pub struct UnitChanges {
    pub daemon_reload: bool,
    pub daemon_reexec: bool,
    /// `mask` / `unmask`.
    pub mask: Option<bool>,
    /// `enable` / `disable`.
    pub enable: Option<bool>,
    /// `start`, `stop`, `restart`, `reload`.
    pub action: Option<&'static str>,
    pub unit: String,
    pub no_block: bool,
    pub force: bool,
}

fn status_str<'a>(o: &'a UnitObserved, k: &str) -> &'a str {
    o.status.get(k).and_then(Json::as_str).unwrap_or("")
}

/// The plan: pure.
pub fn plan_unit(a: &SystemdArgs, o: &UnitObserved) -> Result<(UnitChanges, ModuleResult), String> {
    let mut r = ModuleResult::ok();
    let mut c = UnitChanges {
        daemon_reload: a.daemon_reload == Some(true),
        daemon_reexec: a.daemon_reexec == Some(true),
        no_block: a.no_block == Some(true),
        force: a.force == Some(true),
        ..Default::default()
    };
    let Some(unit) = a.name.clone() else {
        // daemon-reload / daemon-reexec only: Ansible reports them unchanged.
        return Ok((c, r));
    };
    c.unit = unit.clone();
    r.data.insert("name".into(), json!(unit));
    let load = status_str(o, "LoadState");
    let masked_now = load == "masked" || status_str(o, "UnitFileState") == "masked";
    let found = (load != "not-found" && !load.is_empty()) || masked_now || o.initd;
    if let Some(m) = a.masked
        && m != masked_now
    {
        c.mask = Some(m);
        r.changed = true;
    }
    if !found && a.masked != Some(true) {
        return Err(format!(
            "Could not find the requested service {unit}: no such unit on the host"
        ));
    }
    if let Some(e) = a.enabled {
        let enabled_now = o.enabled_rc == 0;
        if e != enabled_now {
            c.enable = Some(e);
            r.changed = true;
        }
        r.data.insert("enabled".into(), json!(e));
    }
    if let Some(s) = a.state {
        let active = status_str(o, "ActiveState");
        let running = active == "active" || active == "activating";
        let deactivating = active == "deactivating";
        let action = match s {
            UnitState::Started => (!running).then_some("start"),
            UnitState::Stopped => (running || deactivating).then_some("stop"),
            UnitState::Restarted => Some(if running { "restart" } else { "start" }),
            UnitState::Reloaded => Some(if running { "reload" } else { "start" }),
        };
        let shown = match s {
            UnitState::Stopped => "stopped",
            _ => "started",
        };
        r.data.insert("state".into(), json!(shown));
        if action.is_some() {
            r.changed = true;
        }
        c.action = action;
    }
    r.data
        .insert("status".into(), Json::Object(o.status.clone()));
    Ok((c, r))
}

impl PlanApply for Systemd {
    type Args = SystemdArgs;
    type Observed = UnitObserved;
    type Changes = UnitChanges;

    fn observe<'a>(
        &'a self,
        a: &'a SystemdArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<UnitObserved, String>> {
        Box::pin(async move {
            let Some(unit) = &a.name else {
                return Ok(UnitObserved::default());
            };
            if !valid_unit(unit) {
                return Err(format!("'{unit}' is not a valid unit name"));
            }
            if a.scope.as_deref().is_some_and(|s| s != "system") {
                return Err(
                    "systemd: scope other than system is not supported yet by deployer".into(),
                );
            }
            // A unit file written earlier in the play is only seen after
            // daemon-reload: observe after it, as Ansible does (its reload
            // comes first and changes nothing the user sees).
            let pre = if a.daemon_reload == Some(true) && !ctx.check {
                "systemctl daemon-reload || exit $?\n"
            } else {
                ""
            };
            let out = ctx
                .conn
                .run_script(
                    &format!("{pre}{}", observe_script(unit)),
                    ctx.become_.as_ref(),
                )
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(out.stderr_str().trim().to_string());
            }
            Ok(parse_observed(&out.stdout_str()))
        })
    }

    fn plan(
        &self,
        mut a: SystemdArgs,
        o: UnitObserved,
        _: &ModuleCtx<'_>,
    ) -> Result<Plan<UnitChanges>, String> {
        // The daemon-reload already ran with the observation when a unit was named.
        if a.name.is_some() {
            a.daemon_reload = None;
        }
        match plan_unit(&a, &o) {
            Ok((c, r)) => {
                let any = c.daemon_reload
                    || c.daemon_reexec
                    || c.mask.is_some()
                    || c.enable.is_some()
                    || c.action.is_some();
                Ok(Plan {
                    result: r,
                    changes: any.then_some(c),
                })
            }
            Err(msg) => Ok(Plan::unchanged(ModuleResult::failed(msg))),
        }
    }

    fn apply<'a>(
        &'a self,
        c: UnitChanges,
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let u = shell_quote(&c.unit);
            let mut steps: Vec<(String, String)> = Vec::new();
            if c.daemon_reload {
                steps.push(("daemon-reload".into(), "systemctl daemon-reload".into()));
            }
            if c.daemon_reexec {
                steps.push(("daemon-reexec".into(), "systemctl daemon-reexec".into()));
            }
            let force = if c.force { " --force" } else { "" };
            if let Some(m) = c.mask {
                let verb = if m { "mask" } else { "unmask" };
                steps.push((verb.into(), format!("systemctl {verb}{force} {u}")));
            }
            if let Some(e) = c.enable {
                let verb = if e { "enable" } else { "disable" };
                steps.push((verb.into(), format!("systemctl {verb}{force} {u}")));
            }
            if let Some(action) = c.action {
                let nb = if c.no_block { " --no-block" } else { "" };
                steps.push((action.into(), format!("systemctl{nb} {action} {u}")));
            }
            for (verb, cmd) in steps {
                let out = ctx
                    .conn
                    .run_script(&format!("{cmd}\n"), ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                if out.rc != 0 {
                    r.failed = true;
                    r.msg = Some(format!(
                        "Unable to {verb} service {}: {}",
                        c.unit,
                        out.stderr_str().trim()
                    ));
                    return Ok(r);
                }
            }
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(load: &str, active: &str, file: &str, enabled_rc: i32) -> UnitObserved {
        let mut status = Map::new();
        status.insert("LoadState".into(), json!(load));
        status.insert("ActiveState".into(), json!(active));
        status.insert("UnitFileState".into(), json!(file));
        UnitObserved {
            status,
            enabled_rc,
            enabled_out: String::new(),
            initd: false,
        }
    }

    fn args(state: Option<UnitState>, enabled: Option<bool>) -> SystemdArgs {
        SystemdArgs {
            name: Some("cron".into()),
            state,
            enabled,
            ..Default::default()
        }
    }

    #[test]
    fn changed_as_ansible() {
        let stopped = observed("loaded", "inactive", "disabled", 1);
        let running = observed("loaded", "active", "enabled", 0);
        let (c, r) = plan_unit(&args(Some(UnitState::Started), Some(true)), &stopped).unwrap();
        assert_eq!(
            (c.action, c.enable, r.changed),
            (Some("start"), Some(true), true)
        );
        let (c, r) = plan_unit(&args(Some(UnitState::Started), Some(true)), &running).unwrap();
        assert_eq!((c.action, c.enable, r.changed), (None, None, false));
        let (c, r) = plan_unit(&args(Some(UnitState::Restarted), None), &running).unwrap();
        assert_eq!((c.action, r.changed), (Some("restart"), true));
        let (c, _) = plan_unit(&args(Some(UnitState::Reloaded), None), &stopped).unwrap();
        assert_eq!(c.action, Some("start"));
        let (c, r) = plan_unit(&args(Some(UnitState::Stopped), Some(false)), &stopped).unwrap();
        assert_eq!((c.action, r.changed), (None, false));
        let missing = observed("not-found", "inactive", "", 1);
        assert_eq!(
            plan_unit(&args(Some(UnitState::Started), None), &missing).unwrap_err(),
            "Could not find the requested service cron: no such unit on the host"
        );
        assert!(valid_unit("getty@tty1.service") && !valid_unit("a b") && !valid_unit("$(x)"));
    }
}
