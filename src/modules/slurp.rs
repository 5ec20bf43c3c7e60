//! `slurp`: a file of the host, base64-encoded in the registered result
//! (`content`, `encoding: base64`, `source`), as Ansible's
//! `ansible.builtin.slurp`. It changes nothing, so check mode runs it too.
//!
//! Supported: `src` (`path`).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::de_string;
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SlurpArgs {
    #[serde(alias = "path", deserialize_with = "de_string")]
    pub src: String,
}

pub struct Slurp;

impl Module for Slurp {
    fn name(&self) -> &'static str {
        "slurp"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.slurp"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<SlurpArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("src") && !args.contains_key("path") {
            return Err("missing required argument: src".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// The file's base64 text, or Ansible's message for why it cannot be read.
pub type Slurped = Result<String, String>;

impl PlanApply for Slurp {
    type Args = SlurpArgs;
    type Observed = Slurped;
    type Changes = std::convert::Infallible;

    fn observe<'a>(
        &'a self,
        a: &'a SlurpArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Slurped, String>> {
        Box::pin(async move {
            let s = shell_quote(&a.src);
            let script = format!(
                "if [ -d {s} ]; then echo 'D'; exit 0; fi\n\
                 if [ ! -e {s} ]; then echo 'N'; exit 0; fi\n\
                 if [ ! -r {s} ]; then echo 'R'; exit 0; fi\n\
                 echo 'C'; base64 -w0 < {s}\n"
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(out.stderr_str().trim().to_string());
            }
            let stdout = out.stdout_str();
            let (tag, rest) = stdout.split_once('\n').unwrap_or((stdout.as_str(), ""));
            Ok(match tag {
                "C" => Ok(rest.trim().to_string()),
                "D" => Err(format!(
                    "Source is a directory and must be a file: {}",
                    a.src
                )),
                "N" => Err(format!("File not found: {}", a.src)),
                _ => Err(format!("File is not readable: {}", a.src)),
            })
        })
    }

    fn plan(
        &self,
        a: SlurpArgs,
        o: Slurped,
        _: &ModuleCtx<'_>,
    ) -> Result<Plan<std::convert::Infallible>, String> {
        Ok(Plan::unchanged(match o {
            Ok(content) => {
                let mut r = ModuleResult::ok();
                r.data.insert("content".into(), json!(content));
                r.data.insert("source".into(), json!(a.src));
                r.data.insert("encoding".into(), json!("base64"));
                r
            }
            Err(msg) => ModuleResult::failed(msg),
        }))
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
