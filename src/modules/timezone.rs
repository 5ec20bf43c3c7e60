//! `timezone` (`community.general.timezone`): the system time zone, set with
//! `timedatectl` as the collection does on a host where `timedatectl` works
//! (systemd). `changed` when the zone differs; the registered result carries
//! `diff` (`before`/`after` `name`) and, once changed, `msg` naming the
//! command run, as Ansible's.
//!
//! Supported: `name`. Not supported yet: `hwclock` (`rtc`), and hosts without
//! a working `timedatectl` (the collection edits `/etc/timezone` there).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_string, de_present};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimezoneArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    pub name: Option<String>,
    #[serde(default, alias = "rtc", deserialize_with = "de_present")]
    pub hwclock: Option<Json>,
}

pub struct Timezone;

const HWCLOCK: &str = "timezone: hwclock is not supported yet by deployer";

impl Module for Timezone {
    fn name(&self) -> &'static str {
        "timezone"
    }
    fn fqcn(&self) -> &'static str {
        "community.general.timezone"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<TimezoneArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if args.contains_key("hwclock") || args.contains_key("rtc") {
            return Err(HWCLOCK.into());
        }
        if !args.contains_key("name") {
            return Err("one of the following is required: hwclock, name".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// What the host says.
pub struct TzObserved {
    /// `timedatectl`'s path when it runs.
    timedatectl: Option<String>,
    /// The zone `timedatectl status` reports.
    current: Option<String>,
    /// Whether `/usr/share/zoneinfo/NAME` is a file.
    known: bool,
}

/// `Time zone: NAME (...)` from `timedatectl status`.
pub fn parse_status(status: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let l = l.trim_start();
        let rest = l
            .strip_prefix("Time zone")
            .or_else(|| l.strip_prefix("Timezone"))?;
        let v = rest.trim_start().strip_prefix(':')?;
        v.split_whitespace().next().map(str::to_string)
    })
}

impl PlanApply for Timezone {
    type Args = TimezoneArgs;
    type Observed = TzObserved;
    /// The zone to set, and `timedatectl`'s path.
    type Changes = (String, String);

    fn observe<'a>(
        &'a self,
        a: &'a TimezoneArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<TzObserved, String>> {
        Box::pin(async move {
            if a.hwclock.is_some() {
                return Err(HWCLOCK.into());
            }
            let name = a.name.clone().unwrap_or_default();
            let zone = shell_quote(&format!("/usr/share/zoneinfo/{name}"));
            let script = format!(
                "t=$(command -v timedatectl) || t=\n\
                 if [ -n \"$t\" ] && \"$t\" >/dev/null 2>&1; then echo \"T$t\"; LC_ALL=C \"$t\" status; fi\n\
                 if [ -f {zone} ]; then echo K; fi\n"
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let text = out.stdout_str();
            let timedatectl = text
                .lines()
                .find_map(|l| l.strip_prefix('T').filter(|p| p.starts_with('/')))
                .map(str::to_string);
            Ok(TzObserved {
                timedatectl,
                current: parse_status(&text),
                known: text.lines().any(|l| l == "K"),
            })
        })
    }

    fn plan(
        &self,
        a: TimezoneArgs,
        o: TzObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<(String, String)>, String> {
        let name = a.name.unwrap_or_default();
        let Some(bin) = o.timedatectl else {
            return Err(
                "timezone: hosts without a working timedatectl are not supported yet by deployer"
                    .into(),
            );
        };
        if !o.known {
            return Ok(Plan::unchanged(ModuleResult::failed(format!(
                "Error message:\ngiven timezone \"{name}\" is not available"
            ))));
        }
        let Some(current) = o.current else {
            return Err("timezone: no time zone in `timedatectl status`".into());
        };
        let mut r = ModuleResult::ok();
        r.data.insert(
            "diff".into(),
            json!({"before": {"name": current}, "after": {"name": name}}),
        );
        if current == name {
            return Ok(Plan::unchanged(r));
        }
        r.changed = true;
        if ctx.diff {
            r.diffs.push(FileDiff {
                path: "timezone".into(),
                before: Some(format!("name: {current}\n")),
                after: Some(format!("name: {name}\n")),
                attributes: Vec::new(),
                note: None,
            });
        }
        Ok(Plan {
            result: r,
            changes: Some((name, bin)),
        })
    }

    fn apply<'a>(
        &'a self,
        (name, bin): (String, String),
        mut planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let script = format!(
                "{} set-timezone {} || exit 1\nLC_ALL=C {} status\n",
                shell_quote(&bin),
                shell_quote(&name),
                shell_quote(&bin)
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let msg = format!("executed `{bin} set-timezone {name}`");
            if out.rc != 0 {
                return Ok(ModuleResult::failed(format!(
                    "timezone: {msg} failed: {}",
                    out.stderr_str().trim()
                )));
            }
            let after = parse_status(&out.stdout_str());
            if after.as_deref() != Some(name.as_str()) {
                return Ok(ModuleResult::failed(format!(
                    "Error message:\nstill not desired state, though changes have made - planned: {{'name': '{name}'}}, after: {{'name': '{}'}}\nOther message(s):\n{msg}",
                    after.unwrap_or_default()
                )));
            }
            planned.msg = Some(msg);
            Ok(planned)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_zone_from_timedatectl_status() {
        let s = "               Local time: Wed 2026-12-02 05:12:41 UTC\n                Time zone: Etc/UTC (UTC, +0000)\n";
        assert_eq!(parse_status(s).as_deref(), Some("Etc/UTC"));
        assert_eq!(
            parse_status("Timezone: Europe/Berlin (CET)"),
            Some("Europe/Berlin".into())
        );
        assert_eq!(parse_status("nothing"), None);
    }
}
