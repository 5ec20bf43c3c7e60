//! Modules that only talk to the engine: debug, assert, fail, set_fact, pause.

use serde_json::{Map, Value as Json, json};

use super::{ModuleCtx, ModuleResult};

pub fn obj(pairs: &[(&str, Json)]) -> Map<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn only_keys(module: &str, args: &Json, allowed: &[&str]) -> Result<Map<String, Json>, String> {
    let m = args.as_object().cloned().unwrap_or_default();
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "invalid arguments for {module}: unknown argument '{k}' (expected one of: {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(m)
}

pub fn debug(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let m = only_keys("debug", &args, &["msg", "var", "verbosity"])?;
    let mut r = ModuleResult::ok();
    if let Some(var) = m.get("var").and_then(|v| v.as_str()) {
        let value = ctx
            .vars
            .render_value(&format!("{{{{ {var} }}}}"))
            .unwrap_or_else(|_| minijinja::Value::from("VARIABLE IS NOT DEFINED!"));
        r.data
            .insert(var.to_string(), crate::vars::value_to_json(&value)?);
    } else {
        r.msg = Some(match m.get("msg") {
            None => "Hello world!".into(),
            Some(Json::String(s)) => s.clone(),
            Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
        });
        if let Some(v) = m.get("msg") {
            r.data.insert("msg".into(), v.clone());
        }
    }
    Ok(r)
}

pub fn assert(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let m = only_keys(
        "assert",
        &args,
        &["that", "fail_msg", "msg", "success_msg", "quiet"],
    )?;
    let that: Vec<String> = match m.get("that") {
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
        _ => return Err("assert: `that` is required (a condition or a list of conditions)".into()),
    };
    for cond in &that {
        if !ctx.vars.condition(cond)? {
            let msg = m
                .get("fail_msg")
                .or_else(|| m.get("msg"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| "Assertion failed".into());
            let mut r = ModuleResult::failed(msg);
            r.data.insert("assertion".into(), json!(cond));
            r.data.insert("evaluated_to".into(), json!(false));
            return Ok(r);
        }
    }
    let mut r = ModuleResult::ok();
    r.msg = Some(
        m.get("success_msg")
            .and_then(|v| v.as_str())
            .unwrap_or("All assertions passed")
            .to_string(),
    );
    Ok(r)
}

pub fn fail(args: Json) -> Result<ModuleResult, String> {
    let m = only_keys("fail", &args, &["msg"])?;
    Ok(ModuleResult::failed(
        m.get("msg")
            .and_then(|v| v.as_str())
            .unwrap_or("Failed as requested from task"),
    ))
}

pub fn set_fact(args: Json) -> Result<ModuleResult, String> {
    let mut m = args
        .as_object()
        .cloned()
        .ok_or("set_fact: expected key: value pairs")?;
    m.remove("cacheable");
    if m.is_empty() {
        return Err("set_fact: no facts given".into());
    }
    let mut r = ModuleResult::ok();
    r.data
        .insert("ansible_facts".into(), Json::Object(m.clone()));
    r.facts = m;
    Ok(r)
}

pub async fn pause(args: Json) -> Result<ModuleResult, String> {
    let m = only_keys("pause", &args, &["seconds", "minutes", "prompt"])?;
    if m.contains_key("prompt") && !m.contains_key("seconds") && !m.contains_key("minutes") {
        return Err("pause: interactive prompts are not supported; give seconds or minutes".into());
    }
    let num = |k: &str| {
        m.get(k)
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0)
    };
    let secs = num("seconds") + 60 * num("minutes");
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    Ok(ModuleResult::ok())
}
