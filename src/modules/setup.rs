//! `setup` as a task: gathers the facts again (with `gather_subset` and
//! `filter`), as Ansible's `ansible.builtin.setup`. The facts are merged into
//! the host's existing facts, as Ansible does.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::args::de_opt_list;
use super::{ModuleCtx, ModuleResult, parse_args};

/// `setup`'s arguments. `fact_path` (local facts) and `gather_timeout` are
/// refused rather than ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupArgs {
    #[serde(default, deserialize_with = "de_opt_list")]
    gather_subset: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_list")]
    filter: Option<Vec<String>>,
}

pub const ARGS: &[&str] = &["gather_subset", "filter"];

pub async fn setup(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: SetupArgs = parse_args("setup", args)?;
    let subset = a.gather_subset.unwrap_or_else(|| vec!["all".into()]);
    // Validate before touching the host.
    crate::facts::subsets(&subset)?;
    let out = ctx
        .conn
        .run_script(crate::facts::SCRIPT, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Ok(ModuleResult::failed(format!(
            "gathering facts failed: {}",
            out.stderr_str().trim()
        )));
    }
    let interp = ctx
        .vars
        .lookup("ansible_python_interpreter")
        .filter(|v| !v.is_undefined() && !v.is_none())
        .map(|v| v.to_string());
    let _ = ctx.vars.take_error();
    let all = crate::facts::parse(&out.stdout_str(), interp.as_deref());
    let selected = crate::facts::select(&all, &subset)?;
    let facts = crate::facts::filter(selected, &a.filter.unwrap_or_default());
    // Merged into what the host already has (a narrower gather keeps the rest).
    let mut merged: Map<String, Json> = ctx
        .vars
        .lookup("ansible_facts")
        .filter(|v| !v.is_undefined())
        .and_then(|v| crate::vars::value_to_json(&v).ok())
        .and_then(|j| j.as_object().cloned())
        .unwrap_or_default();
    let _ = ctx.vars.take_error();
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
    Ok(r)
}
