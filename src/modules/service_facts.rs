//! `service_facts`: the host's services as the fact `services`, as Ansible's
//! `ansible.builtin.service_facts` gathers them: SysV scripts from
//! `service --status-all` (`source: sysv`, `state` running/stopped), then on a
//! systemd host every `*.service` of `systemctl list-units` and
//! `list-unit-files` (`source: systemd`, `state`, `status`). It changes
//! nothing, so check mode runs it too.
//!
//! It takes no arguments. Not supported yet: upstart (`initctl`), RedHat's
//! `chkconfig`, OpenRC, and the BSD/AIX service tools.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFactsArgs {}

pub struct ServiceFacts;

impl Module for ServiceFacts {
    fn name(&self) -> &'static str {
        "service_facts"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.service_facts"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<ServiceFactsArgs>()
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// One execution: the tools there are, then each listing under a marker.
const SCRIPT: &str = r#"export LANG=C LC_ALL=C
has() { command -v "$1" >/dev/null 2>&1; }
if has initctl || has chkconfig || has rc-status; then echo '@unsupported'; fi
if has service && ! has chkconfig && ! has rc-status; then echo '@sysv'; service --status-all 2>/dev/null; fi
if has systemctl && { [ -e /run/systemd/system/ ] || [ -e /dev/.run/systemd/ ] || [ -e /dev/.systemd/ ]; }; then
  echo '@units'; systemctl list-units --no-pager --type service --all --plain 2>/dev/null
  echo '@files'; files=$(systemctl list-unit-files --no-pager --type service --all 2>/dev/null)
  printf '%s\n' "$files"
  echo '@show'
  printf '%s\n' "$files" | grep -F '.service' | while read -r n _rest; do
    s=$(systemctl show "$n" --property=ActiveState 2>/dev/null); printf '%s\t%s\t%s\n' "$n" "$?" "$s"
  done
fi
"#;

const BAD_STATES: [&str; 3] = ["not-found", "masked", "failed"];

/// The fact from the script's output: pure.
pub fn parse(out: &str) -> Result<Map<String, Json>, String> {
    let mut section = "";
    let mut services = Map::new();
    let mut shows: std::collections::HashMap<&str, (bool, &str)> = Default::default();
    let mut files: Vec<(&str, &str)> = Vec::new();
    for line in out.lines() {
        if let Some(s) = line.strip_prefix('@')
            && ["unsupported", "sysv", "units", "files", "show"].contains(&s)
        {
            if s == "unsupported" {
                return Err("service_facts: upstart, chkconfig and OpenRC hosts are not supported yet by deployer".into());
            }
            section = s;
            continue;
        }
        match section {
            "sysv" => {
                // ^\s*\[ (\+|\-) \]\s+(.+)$
                let t = line.trim_start();
                let Some(rest) = t.strip_prefix("[ ") else {
                    continue;
                };
                let mut ch = rest.chars();
                let state = match ch.next() {
                    Some('+') => "running",
                    Some('-') => "stopped",
                    _ => continue,
                };
                let Some(name) = ch.as_str().strip_prefix(" ]") else {
                    continue;
                };
                if !name.starts_with(char::is_whitespace) {
                    continue;
                }
                let name = name.trim_start();
                if name.is_empty() {
                    continue;
                }
                services.insert(
                    name.to_string(),
                    json!({"name": name, "state": state, "source": "sysv"}),
                );
            }
            "units" if line.contains(".service") => {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 4 {
                    continue;
                }
                let head = &fields[..fields.len() - 1];
                let status = BAD_STATES
                    .iter()
                    .find(|b| head.contains(b))
                    .copied()
                    .unwrap_or(fields[2]);
                let state = if fields[3] == "running" {
                    "running"
                } else {
                    "stopped"
                };
                services.insert(
                    fields[0].to_string(),
                    json!({"name": fields[0], "state": state, "status": status, "source": "systemd"}),
                );
            }
            "files" if line.contains(".service") => {
                let mut it = line.split_whitespace();
                match (it.next(), it.next()) {
                    (Some(n), Some(s)) => files.push((n, s)),
                    _ => {
                        return Err(format!(
                            "Malformed output discovered from systemd list-unit-files: {line}"
                        ));
                    }
                }
            }
            "show" => {
                let mut f = line.splitn(3, '\t');
                if let (Some(n), Some(rc), Some(s)) = (f.next(), f.next(), f.next()) {
                    shows.insert(n, (rc == "0", s));
                }
            }
            _ => {}
        }
    }
    for (name, status) in files {
        match services.get_mut(name) {
            None => {
                let state = match shows.get(name) {
                    Some((true, s)) if !s.is_empty() => {
                        s.replace("ActiveState=", "").trim_end().to_string()
                    }
                    _ => "unknown".to_string(),
                };
                services.insert(
                    name.to_string(),
                    json!({"name": name, "state": state, "status": status, "source": "systemd"}),
                );
            }
            Some(Json::Object(s)) => {
                let bad = s
                    .get("status")
                    .and_then(Json::as_str)
                    .is_some_and(|v| BAD_STATES.contains(&v));
                if !bad {
                    s.insert("status".into(), json!(status));
                }
            }
            Some(_) => {}
        }
    }
    Ok(services)
}

impl PlanApply for ServiceFacts {
    type Args = ServiceFactsArgs;
    type Observed = String;
    type Changes = std::convert::Infallible;

    fn observe<'a>(
        &'a self,
        _: &'a ServiceFactsArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let out = ctx
                .conn
                .run_script(SCRIPT, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(out.stdout_str())
        })
    }

    fn plan(
        &self,
        _: ServiceFactsArgs,
        out: String,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<std::convert::Infallible>, String> {
        let services = parse(&out)?;
        if services.is_empty() {
            let mut r = ModuleResult::ok();
            r.skipped = true;
            r.msg = Some("Failed to find any services. This can be due to privileges or some other configuration issue.".into());
            return Ok(Plan::unchanged(r));
        }
        let mut facts = Map::new();
        facts.insert("services".into(), Json::Object(services));
        Ok(Plan::unchanged(super::setup::facts_result(ctx, facts)))
    }

    fn apply<'a>(
        &'a self,
        changes: std::convert::Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        super::misc::nothing_to_apply(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_as_ansible_gathers_them() {
        let out = "@sysv\n [ + ]  cron\n [ - ]  procps\n [ ? ]  odd\n@units\n\
                   cron.service loaded active running Regular background program processing daemon\n\
                   auditd.service not-found inactive dead auditd.service\n\
                   @files\nUNIT FILE STATE VENDOR PRESET\ncron.service enabled enabled\n\
                   getty@.service enabled enabled\nauditd.service masked enabled\n\
                   @show\ngetty@.service\t1\t\ncron.service\t0\tActiveState=active\n";
        let s = parse(out).unwrap();
        assert_eq!(
            s["cron"],
            json!({"name": "cron", "state": "running", "source": "sysv"})
        );
        assert_eq!(s["procps"]["state"], "stopped");
        assert!(!s.contains_key("odd"));
        assert_eq!(s["cron.service"]["status"], "enabled");
        assert_eq!(s["cron.service"]["state"], "running");
        assert_eq!(s["auditd.service"]["status"], "not-found");
        assert_eq!(s["getty@.service"]["state"], "unknown");
        assert_eq!(s["getty@.service"]["status"], "enabled");
        assert!(parse("@unsupported\n").is_err());
    }
}
