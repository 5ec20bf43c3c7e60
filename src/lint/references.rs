//! References: roles, templates, files, task files, handlers, variables and
//! role dependency cycles. Variables are checked conservatively: a name is
//! reported only when nothing anywhere in the project could define it.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::Linter;
use super::schema::{Project, TaskCtx, is_templated};
use crate::yaml::{Loc, Node};

pub fn check_role_exists(l: &mut Linter, project: &Project, name: &str, loc: &Loc) {
    if is_templated(name) || project.find_role(name).is_some() {
        return;
    }
    l.report(
        "ref-role",
        loc,
        format!(
            "role '{name}' not found (looked in {})",
            project
                .roles_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
}

pub fn check_task_file(l: &mut Linter, ctx: &TaskCtx, file: &str, loc: &Loc) {
    if is_templated(file) {
        return;
    }
    let mut cands = vec![ctx.base_dir.join(file)];
    if let Some(r) = &ctx.role_dir {
        cands.push(r.join("tasks").join(file));
    }
    if !cands.iter().any(|c| c.is_file()) {
        l.report(
            "ref-task-file",
            loc,
            format!(
                "task file '{file}' not found (looked at {})",
                cands
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
}

/// `src` of template (in `templates/`) or copy (in `files/`), where the engine looks.
pub fn check_source(l: &mut Linter, project: &Project, ctx: &TaskCtx, args: &Node, kind: &str) {
    let Some(src_node) = args.get("src") else {
        return;
    };
    let Some(src) = src_node.as_str() else { return };
    if is_templated(src) {
        return;
    }
    let p = Path::new(src);
    if p.is_absolute() {
        return; // a path on the controller lint cannot judge
    }
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(r) = &ctx.role_dir {
        cands.push(r.join(kind).join(src));
        cands.push(r.join(src));
    }
    cands.push(ctx.base_dir.join(kind).join(src));
    cands.push(ctx.base_dir.join(src));
    for d in &project.extra_dirs {
        cands.push(d.join(kind).join(src));
        cands.push(d.join(src));
    }
    if cands.iter().any(|c| c.exists()) {
        return;
    }
    let rule = if kind == "templates" {
        "ref-template"
    } else {
        "ref-file"
    };
    let place = match &ctx.role_dir {
        Some(r) => format!("{}/{kind}/", r.display()),
        None => format!("{}/{kind}/", ctx.base_dir.display()),
    };
    l.report(
        rule,
        &src_node.loc,
        format!(
            "{kind} source '{src}' not found (expected in {place} or the playbook's directory)"
        ),
    );
}

/// An inventory (`-i` or `inventory/`): loaded by the engine's loader; its names are defined.
pub fn load_inventory(l: &mut Linter, path: &Path) {
    match crate::project::Inventory::load(&[path.to_path_buf()]) {
        Ok(inv) => {
            for g in inv.groups.values() {
                for (k, v) in &g.vars {
                    l.know.defined.insert(k.clone());
                    l.know.values.entry(k.clone()).or_insert_with(|| v.clone());
                    if k == crate::vars::VAULT_FILE_MARKER {
                        l.know.has_vault_file = true;
                    }
                }
            }
            for h in inv.hosts.values() {
                for (k, v) in &h.vars {
                    l.know.defined.insert(k.clone());
                    l.know.values.entry(k.clone()).or_insert_with(|| v.clone());
                    if k == crate::vars::VAULT_FILE_MARKER {
                        l.know.has_vault_file = true;
                    }
                }
            }
        }
        Err(e) => {
            // Syntax problems of its YAML files are reported by the YAML rules.
            let already = l.findings.iter().any(|f| {
                f.file == *e.loc.file && f.rule.starts_with("yaml-") || f.rule.starts_with("file-")
            });
            if !already {
                l.report("inventory-load", &e.loc, e.msg);
            }
        }
    }
}

/// Names the engine always provides (magic variables, facts, Jinja globals).
const MAGIC: &[&str] = &[
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "hostvars",
    "playbook_dir",
    "role_name",
    "role_path",
    "omit",
    "item",
    "vars",
    "environment",
    "lookup",
    "query",
    "q",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "loop",
];

/// The whole-project checks: handlers, variables, role cycles.
pub fn finish(l: &mut Linter, _project: &Project) {
    // Handlers notified but not defined, and defined but never notified.
    let handlers = l.know.handlers.clone();
    let answers = |n: &str| {
        handlers
            .iter()
            .any(|h| h.name.as_deref() == Some(n) || h.topics.iter().any(|t| t == n))
    };
    for (n, loc) in l.know.notified.clone() {
        if !is_templated(&n) && !answers(&n) {
            l.report(
                "ref-handler-missing",
                &loc,
                format!("notifies '{n}', but no handler has that name or listens to it"),
            );
        }
    }
    let notified: HashSet<String> = l.know.notified.iter().map(|(n, _)| n.clone()).collect();
    // A templated notify could name any handler: then none is reported unused.
    if !notified.iter().any(|n| is_templated(n)) {
        for h in &handlers {
            let used = h.name.as_ref().is_some_and(|n| notified.contains(n))
                || h.topics.iter().any(|t| notified.contains(t));
            if !used {
                let what = h.name.clone().unwrap_or_else(|| "(unnamed)".into());
                l.report(
                    "ref-handler-unused",
                    &h.loc,
                    format!("handler '{what}' is never notified, so it never runs"),
                );
            }
        }
    }

    // Variables defined nowhere (unless an include_vars may define any name).
    if l.know.names_unknown {
        l.know.uses.clear();
    }
    let globals: HashSet<String> = l.env.globals().map(|(k, _)| k.to_string()).collect();
    let mut seen = HashSet::new();
    for (name, loc) in std::mem::take(&mut l.know.uses) {
        if l.know.defined.contains(&name)
            || globals.contains(&name)
            || MAGIC.contains(&name.as_str())
            || name.starts_with("ansible_")
            || (l.know.has_vault_file && name.starts_with("vault_"))
        {
            continue;
        }
        // One finding per name and line.
        if !seen.insert((name.clone(), loc.file.clone(), loc.line)) {
            continue;
        }
        l.report(
            "ref-undefined-var",
            &loc,
            format!("variable '{name}' is defined nowhere (no inventory, role default, vars, vars_files, set_fact, register or loop defines it)"),
        );
    }

    // Role dependency cycles.
    let deps = l.know.role_deps.clone();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in deps.keys() {
        let mut path = vec![start.clone()];
        find_cycles(l, &deps, &mut path, &mut reported);
    }
}

fn find_cycles(
    l: &mut Linter,
    deps: &std::collections::BTreeMap<String, Vec<(String, Loc)>>,
    path: &mut Vec<String>,
    reported: &mut BTreeSet<Vec<String>>,
) {
    if path.len() > 64 {
        return;
    }
    let Some(cur) = path.last().cloned() else {
        return;
    };
    let Some(next) = deps.get(&cur) else { return };
    for (d, loc) in next {
        if let Some(i) = path.iter().position(|p| p == d) {
            let mut cycle: Vec<String> = path[i..].to_vec();
            // One report per cycle, whatever role it was entered from.
            let mut key = cycle.clone();
            key.sort();
            if reported.insert(key) {
                cycle.push(d.clone());
                l.report(
                    "ref-role-cycle",
                    loc,
                    format!("role dependency cycle: {}", cycle.join(" -> ")),
                );
            }
            continue;
        }
        path.push(d.clone());
        find_cycles(l, deps, path, reported);
        path.pop();
    }
}
