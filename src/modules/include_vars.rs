//! `include_vars`: loads variables from YAML/JSON files on the control
//! machine (vault-encrypted files and values included) into the host's
//! variables, as Ansible's `ansible.builtin.include_vars`. Values stay as
//! written and are templated when used, as in Ansible.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_list, de_opt_string, de_opt_u64};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::yaml::{Node, Yaml};

/// `include_vars` arguments. The free form (`include_vars: file.yml`) arrives
/// as `file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncludeVarsArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    file: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    dir: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    depth: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    files_matching: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list")]
    ignore_files: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_list")]
    extensions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    hash_behaviour: Option<String>,
}

pub struct IncludeVars;

impl Module for IncludeVars {
    fn name(&self) -> &'static str {
        "include_vars"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.include_vars"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<IncludeVarsArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        let given = ["file", "dir"]
            .iter()
            .filter(|k| args.contains_key(**k))
            .count();
        if given != 1 {
            return Err("exactly one of file (or the free form) or dir is required".into());
        }
        if let Some(h) = args.get("hash_behaviour").and_then(Json::as_str)
            && h != "replace"
        {
            return Err(format!(
                "hash_behaviour '{h}' is not supported yet by deployer (only replace)"
            ));
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Loads one vars file: a mapping at the top (or empty), decrypted when the
/// whole file is a vault.
fn load(path: &Path, ctx: &ModuleCtx<'_>) -> Result<Vec<(String, Node)>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("{}: cannot read vars file: {e}", path.display()))?;
    if crate::vault::is_encrypted(&bytes) {
        let cipher = String::from_utf8_lossy(&bytes).into_owned();
        return Ok(ctx
            .vars
            .vault()
            .vars_file(path, &cipher)?
            .into_iter()
            .collect());
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("{}: vars file is not valid UTF-8: {e}", path.display()))?;
    let node = crate::yaml::parse_str(&text, path).map_err(|e| e.to_string())?;
    match &node.value {
        Yaml::Null => Ok(Vec::new()),
        Yaml::Map(m) => Ok(m
            .iter()
            .map(|(k, v)| (crate::yaml::key_string(k), v.clone()))
            .collect()),
        _ => Err(format!(
            "{}: a vars file must hold a mapping at the top, got {}",
            node.loc,
            node.kind()
        )),
    }
}

/// The files of `dir` Ansible would load: sorted, recursing to `depth`
/// (0 = unlimited), with the given extensions, matching `files_matching`,
/// skipping `ignore_files`.
fn dir_files(
    dir: &Path,
    depth: u64,
    exts: &[String],
    matching: Option<&regex::Regex>,
    ignore: &[glob::Pattern],
) -> Result<Vec<PathBuf>, String> {
    fn walk(d: &Path, level: u64, depth: u64, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| format!("{}: {e}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if depth == 0 || level < depth {
                    walk(&p, level + 1, depth, out)?;
                }
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut all = Vec::new();
    walk(dir, 1, depth, &mut all)?;
    Ok(all
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            exts.contains(&ext)
                && matching.is_none_or(|r| r.is_match(&name))
                && !ignore.iter().any(|g| g.matches(&name))
        })
        .collect())
}

impl PlanApply for IncludeVars {
    type Args = IncludeVarsArgs;
    type Observed = ();
    type Changes = Infallible;

    fn observe<'a>(
        &'a self,
        _: &'a IncludeVarsArgs,
        _: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<(), String>> {
        super::registry::observe_nothing()
    }

    fn plan(
        &self,
        a: IncludeVarsArgs,
        _: (),
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<Infallible>, String> {
        if a.hash_behaviour.as_deref().is_some_and(|h| h != "replace") {
            return Err(
                "include_vars: hash_behaviour other than replace is not supported yet by deployer"
                    .into(),
            );
        }
        let files: Vec<PathBuf> = match (a.file, a.dir) {
            (Some(f), None) => vec![ctx.find_source(&f, "vars")?],
            (None, Some(d)) => {
                let dir = ctx.find_source(&d, "vars")?;
                if !dir.is_dir() {
                    return Err(format!(
                        "include_vars: {} is not a directory",
                        dir.display()
                    ));
                }
                let exts = a
                    .extensions
                    .unwrap_or_else(|| vec!["yaml".into(), "yml".into(), "json".into()]);
                let matching = a
                    .files_matching
                    .as_deref()
                    .map(regex::Regex::new)
                    .transpose()
                    .map_err(|e| format!("include_vars: files_matching: {e}"))?;
                let ignore: Vec<glob::Pattern> = a
                    .ignore_files
                    .unwrap_or_default()
                    .iter()
                    .map(|g| {
                        glob::Pattern::new(g)
                            .map_err(|e| format!("include_vars: ignore_files '{g}': {e}"))
                    })
                    .collect::<Result<_, _>>()?;
                dir_files(
                    &dir,
                    a.depth.unwrap_or(0),
                    &exts,
                    matching.as_ref(),
                    &ignore,
                )?
            }
            _ => {
                return Err(
                    "include_vars: exactly one of file (or the free form) or dir is required"
                        .into(),
                );
            }
        };
        let mut vars: Vec<(String, Node)> = Vec::new();
        for f in &files {
            for (k, v) in load(f, ctx)? {
                vars.retain(|(k0, _)| *k0 != k);
                vars.push((k, v));
            }
        }
        let mut r = ModuleResult::ok();
        let shown: Map<String, Json> = vars.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        match a.name {
            Some(name) => {
                // All of them under one name, a mapping.
                let node = Node {
                    value: Yaml::Map(
                        vars.into_iter()
                            .map(|(k, v)| {
                                (
                                    Node {
                                        value: Yaml::Str(k),
                                        loc: v.loc.clone(),
                                    },
                                    v,
                                )
                            })
                            .collect(),
                    ),
                    loc: crate::yaml::Loc::file_only(
                        files
                            .first()
                            .map(PathBuf::as_path)
                            .unwrap_or(Path::new("include_vars")),
                    ),
                };
                r.data.insert(
                    "ansible_facts".into(),
                    json!({ name.clone(): Json::Object(shown) }),
                );
                r.var_nodes.push((name, node));
            }
            None => {
                r.data.insert("ansible_facts".into(), Json::Object(shown));
                r.var_nodes = vars;
            }
        }
        r.data.insert(
            "ansible_included_var_files".into(),
            json!(
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
            ),
        );
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
