//! `setup` as a task: gathers the facts again (with `gather_subset` and
//! `filter`), as Ansible's `ansible.builtin.setup`. The facts are merged into
//! the host's existing facts, as Ansible does.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use std::convert::Infallible;

use super::args::de_opt_list;
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};

/// `setup`'s arguments. `fact_path` (local facts) and `gather_timeout` are
/// refused rather than ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupArgs {
    #[serde(default, deserialize_with = "de_opt_list")]
    gather_subset: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_list")]
    filter: Option<Vec<String>>,
}

pub struct Setup;

impl Module for Setup {
    fn name(&self) -> &'static str {
        "setup"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.setup"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<SetupArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        match args.get("gather_subset") {
            Some(Json::String(s)) => crate::facts::subsets(std::slice::from_ref(s)).map(|_| ()),
            Some(Json::Array(a)) => crate::facts::subsets(
                &a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>(),
            )
            .map(|_| ()),
            _ => Ok(()),
        }
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

impl PlanApply for Setup {
    type Args = SetupArgs;
    /// The gathering script's output and the host's facts so far.
    type Observed = (String, Map<String, Json>);
    type Changes = Infallible;

    fn observe<'a>(
        &'a self,
        a: &'a SetupArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Self::Observed, String>> {
        Box::pin(async move {
            // Validate before touching the host.
            crate::facts::subsets(a.gather_subset.as_deref().unwrap_or(&["all".into()]))?;
            let out = ctx
                .conn
                .run_script(crate::facts::SCRIPT, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(format!(
                    "gathering facts failed: {}",
                    out.stderr_str().trim()
                ));
            }
            let before: Map<String, Json> = ctx
                .vars
                .lookup("ansible_facts")
                .filter(|v| !v.is_undefined())
                .and_then(|v| crate::vars::value_to_json(&v).ok())
                .and_then(|j| j.as_object().cloned())
                .unwrap_or_default();
            let _ = ctx.vars.take_error();
            Ok((out.stdout_str(), before))
        })
    }

    fn plan(
        &self,
        a: SetupArgs,
        (stdout, before): Self::Observed,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<Infallible>, String> {
        let subset = a.gather_subset.unwrap_or_else(|| vec!["all".into()]);
        let interp = ctx
            .vars
            .lookup("ansible_python_interpreter")
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map(|v| v.to_string());
        let _ = ctx.vars.take_error();
        let all = crate::facts::parse(&stdout, interp.as_deref());
        let selected = crate::facts::select(&all, &subset)?;
        let facts = crate::facts::filter(selected, &a.filter.unwrap_or_default());
        // Merged into what the host already has (a narrower gather keeps the rest).
        let mut merged = before;
        let mut r = ModuleResult::ok();
        let mut shown = Map::new();
        for (k, v) in &facts {
            merged.insert(k.clone(), v.clone());
            let name = if k == "gather_subset" || k == "module_setup" {
                k.clone()
            } else {
                format!("ansible_{k}")
            };
            shown.insert(name.clone(), v.clone());
            r.facts.insert(name, v.clone());
        }
        r.facts.insert("ansible_facts".into(), Json::Object(merged));
        r.data.insert("ansible_facts".into(), Json::Object(shown));
        Ok(Plan::unchanged(r))
    }

    fn apply<'a>(
        &'a self,
        changes: Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        super::misc::nothing_to_apply(changes)
    }
}

/// A result that sets `facts` as Ansible sets a module's `ansible_facts`:
/// each as a host variable of its own name, merged into `ansible_facts`, and
/// registered under `ansible_facts`.
pub(crate) fn facts_result(ctx: &ModuleCtx<'_>, facts: Map<String, Json>) -> ModuleResult {
    let mut r = ModuleResult::ok();
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
    r.data.insert("ansible_facts".into(), Json::Object(facts));
    r
}
