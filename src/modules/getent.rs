//! `getent`: a name-service database read with the host's `getent`, set as
//! the fact `getent_<database>` (a key's fields as a list; several entries
//! for one key as a list of lists), as Ansible's `ansible.builtin.getent`.
//!
//! Supported: `database`, `key`, `split`, `fail_key`, `service`. It changes
//! nothing, so check mode runs it too.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_string, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct GetentArgs {
    #[serde(deserialize_with = "de_string")]
    pub database: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub split: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub fail_key: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub service: Option<String>,
}

fn yes() -> bool {
    true
}

pub struct Getent;

impl Module for Getent {
    fn name(&self) -> &'static str {
        "getent"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.getent"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<GetentArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("database") {
            return Err("missing required argument: database".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// `getent`'s exit code and output.
pub struct GetentOut {
    rc: i32,
    stdout: String,
}

/// The fact from `getent`'s output, as Ansible's module builds it.
pub fn parse(out: &str, database: &str, split: Option<&str>) -> Map<String, Json> {
    let colon = ["passwd", "shadow", "group", "gshadow"];
    let split = split.or(colon.contains(&database).then_some(":"));
    let mut tree = Map::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in out.lines() {
        let record: Vec<String> = match split {
            Some(s) if !s.is_empty() => line.split(s).map(str::to_string).collect(),
            _ => line.split_whitespace().map(str::to_string).collect(),
        };
        let Some(k) = record.first().cloned() else {
            continue;
        };
        let rest = json!(record[1..]);
        match seen.get(&k).copied() {
            Some(n) => {
                if n == 1 {
                    let first = tree.remove(&k).unwrap_or(Json::Null);
                    tree.insert(k.clone(), json!([first]));
                }
                if let Some(Json::Array(a)) = tree.get_mut(&k) {
                    a.push(rest);
                }
                seen.insert(k, n + 1);
            }
            None => {
                tree.insert(k.clone(), rest);
                seen.insert(k, 1);
            }
        }
    }
    tree
}

impl PlanApply for Getent {
    type Args = GetentArgs;
    type Observed = GetentOut;
    type Changes = std::convert::Infallible;

    fn observe<'a>(
        &'a self,
        a: &'a GetentArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<GetentOut, String>> {
        Box::pin(async move {
            let mut cmd = format!("getent {}", shell_quote(&a.database));
            if let Some(k) = &a.key {
                cmd.push(' ');
                cmd.push_str(&shell_quote(k));
            }
            if let Some(s) = &a.service {
                cmd.push_str(" -s ");
                cmd.push_str(&shell_quote(s));
            }
            let script = format!(
                "command -v getent >/dev/null 2>&1 || {{ echo 'getent not found on the host' >&2; exit 127; }}\n{cmd}\n"
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc == 127 {
                return Err(out.stderr_str().trim().to_string());
            }
            Ok(GetentOut {
                rc: out.rc,
                stdout: out.stdout_str(),
            })
        })
    }

    fn plan(
        &self,
        a: GetentArgs,
        o: GetentOut,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<std::convert::Infallible>, String> {
        let fact = format!("getent_{}", a.database);
        let mut tree = Map::new();
        let mut r = ModuleResult::ok();
        match o.rc {
            0 => tree = parse(&o.stdout, &a.database, a.split.as_deref()),
            2 if !a.fail_key => {
                tree.insert(a.key.clone().unwrap_or_default(), Json::Null);
                r.msg = Some("One or more supplied key could not be found in the database.".into());
            }
            rc => {
                let msg = match rc {
                    1 => "Missing arguments, or database unknown.",
                    2 => "One or more supplied key could not be found in the database.",
                    3 => "Enumeration not supported on this database.",
                    _ => "Unexpected failure!",
                };
                return Ok(Plan::unchanged(ModuleResult::failed(msg)));
            }
        }
        let mut facts = Map::new();
        facts.insert(fact.clone(), Json::Object(tree));
        r.data
            .insert("ansible_facts".into(), Json::Object(facts.clone()));
        let mut merged = ctx
            .vars
            .lookup("ansible_facts")
            .filter(|v| !v.is_undefined())
            .and_then(|v| crate::vars::value_to_json(&v).ok())
            .and_then(|j| j.as_object().cloned())
            .unwrap_or_default();
        let _ = ctx.vars.take_error();
        for (k, v) in &facts {
            merged.insert(k.clone(), v.clone());
            r.facts.insert(k.clone(), v.clone());
        }
        r.facts.insert("ansible_facts".into(), Json::Object(merged));
        Ok(Plan::unchanged(r))
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
    fn builds_the_fact_as_ansible() {
        let t = parse(
            "root:x:0:0:root:/root:/bin/bash\nadm:x:4:\n",
            "passwd",
            None,
        );
        assert_eq!(
            t["root"],
            json!(["x", "0", "0", "root", "/root", "/bin/bash"])
        );
        assert_eq!(t["adm"], json!(["x", "4", ""]));
        let t = parse("ssh 22/tcp\nssh 22/udp\n", "services", None);
        assert_eq!(t["ssh"], json!([["22/tcp"], ["22/udp"]]));
    }
}
