//! Modules that only talk to the engine: debug, assert, fail, set_fact, pause,
//! ping. They observe nothing and change nothing on the host, so their plan is
//! their whole result.

use std::convert::Infallible;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::de_present;
use super::registry::{
    ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, observe_nothing, plan_apply,
};
use super::{ModuleCtx, ModuleResult, parse_args};

pub fn obj(pairs: &[(&str, Json)]) -> Map<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `apply` of a module whose plan never has changes (every read-only module).
pub(super) fn nothing_to_apply<'a>(changes: Infallible) -> ModuleFuture<'a> {
    match changes {}
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugArgs {
    #[serde(default, deserialize_with = "de_present")]
    msg: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    var: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    verbosity: Option<Json>,
}

/// `debug`: prints a message or a variable.
pub struct Debug;

impl Module for Debug {
    fn name(&self) -> &'static str {
        "debug"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.debug"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<DebugArgs>()
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for Debug {
    type Args = DebugArgs;
    type Observed = ();
    type Changes = Infallible;
    fn observe<'a>(
        &'a self,
        _: &'a DebugArgs,
        _: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<(), String>> {
        observe_nothing()
    }
    fn plan(&self, a: DebugArgs, _: (), ctx: &ModuleCtx<'_>) -> Result<Plan<Infallible>, String> {
        // As Ansible: shown only from that many `-v` on; below it the task is
        // skipped ("Verbosity threshold not met.").
        let verbosity = match &a.verbosity {
            None | Some(Json::Null) => 0,
            Some(Json::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("debug: verbosity must be a whole number, got {n}"))?,
            Some(Json::String(t)) => t
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("debug: verbosity must be a whole number, got '{t}'"))?,
            Some(other) => {
                return Err(format!(
                    "debug: verbosity must be a whole number, got {other}"
                ));
            }
        };
        if verbosity > i64::from(crate::ui::verbosity()) {
            let mut r = ModuleResult::ok();
            r.skipped = true;
            r.data.insert(
                "skipped_reason".into(),
                json!("Verbosity threshold not met."),
            );
            return Ok(Plan::unchanged(r));
        }
        let mut r = ModuleResult::ok();
        if let Some(var) = a.var.as_ref().and_then(|v| v.as_str()) {
            let value = ctx
                .vars
                .render_value(&format!("{{{{ {var} }}}}"))
                .unwrap_or_else(|_| minijinja::Value::from("VARIABLE IS NOT DEFINED!"));
            r.data
                .insert(var.to_string(), crate::vars::value_to_json(&value)?);
        } else {
            r.msg = Some(match &a.msg {
                None => "Hello world!".into(),
                Some(Json::String(s)) => s.clone(),
                Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
            });
            if let Some(v) = a.msg {
                r.data.insert("msg".into(), v);
            }
        }
        Ok(Plan::unchanged(r))
    }
    fn apply<'a>(
        &'a self,
        changes: Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        nothing_to_apply(changes)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertArgs {
    #[serde(default, deserialize_with = "de_present")]
    that: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    fail_msg: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    msg: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    success_msg: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    quiet: Option<Json>,
}

/// `assert`: fails unless every condition holds.
pub struct Assert;

impl Module for Assert {
    fn name(&self) -> &'static str {
        "assert"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.assert"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<AssertArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if args.contains_key("that") {
            Ok(())
        } else {
            Err("`that` is required".into())
        }
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for Assert {
    type Args = AssertArgs;
    type Observed = ();
    type Changes = Infallible;
    fn observe<'a>(
        &'a self,
        _: &'a AssertArgs,
        _: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<(), String>> {
        observe_nothing()
    }
    fn plan(&self, a: AssertArgs, _: (), ctx: &ModuleCtx<'_>) -> Result<Plan<Infallible>, String> {
        let quiet = match &a.quiet {
            None | Some(Json::Null) => false,
            Some(v) => crate::args::parse_bool(v)
                .ok_or_else(|| format!("assert: quiet must be a boolean, got {v}"))?,
        };
        let that: Vec<String> = match &a.that {
            Some(Json::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect(),
            Some(Json::String(s)) => vec![s.clone()],
            Some(Json::Bool(b)) => vec![b.to_string()],
            _ => {
                return Err(
                    "assert: `that` is required (a condition or a list of conditions)".into(),
                );
            }
        };
        for cond in &that {
            if !ctx.vars.condition(cond)? {
                let msg = a
                    .fail_msg
                    .as_ref()
                    .or(a.msg.as_ref())
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| "Assertion failed".into());
                let mut r = ModuleResult::failed(msg);
                r.data.insert("assertion".into(), json!(cond));
                r.data.insert("evaluated_to".into(), json!(false));
                return Ok(Plan::unchanged(r));
            }
        }
        let mut r = ModuleResult::ok();
        let msg = a
            .success_msg
            .as_ref()
            .and_then(|v| v.as_str())
            .unwrap_or("All assertions passed")
            .to_string();
        if quiet {
            // Registered as usual, not shown on the result line (Ansible's
            // quiet drops only `_ansible_verbose_always`).
            r.data.insert("msg".into(), json!(msg));
        } else {
            r.msg = Some(msg);
        }
        Ok(Plan::unchanged(r))
    }
    fn apply<'a>(
        &'a self,
        changes: Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        nothing_to_apply(changes)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailArgs {
    #[serde(default, deserialize_with = "de_present")]
    msg: Option<Json>,
}

/// `fail`: fails the host with a message.
pub struct Fail;

impl Module for Fail {
    fn name(&self) -> &'static str {
        "fail"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.fail"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<FailArgs>()
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for Fail {
    type Args = FailArgs;
    type Observed = ();
    type Changes = Infallible;
    fn observe<'a>(
        &'a self,
        _: &'a FailArgs,
        _: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<(), String>> {
        observe_nothing()
    }
    fn plan(&self, a: FailArgs, _: (), _: &ModuleCtx<'_>) -> Result<Plan<Infallible>, String> {
        Ok(Plan::unchanged(ModuleResult::failed(
            a.msg
                .as_ref()
                .and_then(|v| v.as_str())
                .unwrap_or("Failed as requested from task"),
        )))
    }
    fn apply<'a>(
        &'a self,
        changes: Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        nothing_to_apply(changes)
    }
}

/// `set_fact`: sets host variables. Takes any argument name (each is a fact);
/// `cacheable` is accepted and ignored.
pub struct SetFact;

impl Module for SetFact {
    fn name(&self) -> &'static str {
        "set_fact"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.set_fact"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::free_form::<Json>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if args.keys().all(|k| k == "cacheable") {
            Err("no facts given".into())
        } else {
            Ok(())
        }
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for SetFact {
    type Args = Json;
    type Observed = ();
    type Changes = Infallible;
    fn observe<'a>(
        &'a self,
        _: &'a Json,
        _: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<(), String>> {
        observe_nothing()
    }
    fn plan(&self, args: Json, _: (), _: &ModuleCtx<'_>) -> Result<Plan<Infallible>, String> {
        let Json::Object(mut m) = args else {
            return Err("set_fact: expected key: value pairs".into());
        };
        m.remove("cacheable");
        if m.is_empty() {
            return Err("set_fact: no facts given".into());
        }
        let mut r = ModuleResult::ok();
        r.data
            .insert("ansible_facts".into(), Json::Object(m.clone()));
        r.facts = m;
        Ok(Plan::unchanged(r))
    }
    fn apply<'a>(
        &'a self,
        changes: Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        nothing_to_apply(changes)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingArgs {
    #[serde(default, deserialize_with = "de_present")]
    data: Option<Json>,
}

/// `ping`: answers `pong` (the connection was made to get here).
pub struct Ping;

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.ping"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PingArgs>()
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for Ping {
    type Args = PingArgs;
    type Observed = ();
    type Changes = Infallible;
    fn observe<'a>(
        &'a self,
        _: &'a PingArgs,
        _: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<(), String>> {
        observe_nothing()
    }
    fn plan(&self, a: PingArgs, _: (), _: &ModuleCtx<'_>) -> Result<Plan<Infallible>, String> {
        // As Ansible's ping: answers `data` (default "pong"); `crash` fails.
        let data = match &a.data {
            None | Some(Json::Null) => "pong".to_string(),
            Some(Json::String(t)) => t.clone(),
            Some(other) => other.to_string(),
        };
        if data == "crash" {
            return Err("boom".into());
        }
        Ok(Plan::unchanged(ModuleResult {
            data: obj(&[("ping", Json::String(data))]),
            ..Default::default()
        }))
    }
    fn apply<'a>(
        &'a self,
        changes: Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        nothing_to_apply(changes)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseArgs {
    #[serde(default, deserialize_with = "de_present")]
    seconds: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    minutes: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    prompt: Option<Json>,
}

/// `pause`: waits (in check mode too, as Ansible does). Not split into plan and
/// apply: it has nothing to plan, its work is the wait.
pub struct Pause;

impl Module for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.pause"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PauseArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        super::args::check_number(args, "seconds")?;
        super::args::check_number(args, "minutes")
    }
    fn run<'a>(&'a self, args: Json, _ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(pause(args))
    }
}

async fn pause(args: Json) -> Result<ModuleResult, String> {
    let a: PauseArgs = parse_args("pause", args)?;
    if a.prompt.is_some() && a.seconds.is_none() && a.minutes.is_none() {
        return Err("pause: interactive prompts are not supported; give seconds or minutes".into());
    }
    let num = |v: &Option<Json>| {
        v.as_ref()
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0)
    };
    let secs = num(&a.seconds) + 60 * num(&a.minutes);
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    Ok(ModuleResult::ok())
}
