//! Schema rules, and the walk over playbooks, task files, handlers, vars and
//! role metadata that feeds every other rule family. Unlike the loader, the
//! walk goes on after a problem, so one run reports all of them.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use super::{Linter, Target, conventions, references, templates};
use crate::modules::registry;
use crate::project::PLAY_KEYS;
use crate::project::task::{TASK_KEYWORDS, merge_args};
use crate::yaml::{Loc, Node, Yaml};

/// The project a file belongs to: where roles and playbooks are.
#[derive(Debug, Default)]
pub struct Project {
    pub root: PathBuf,
    pub roles_dirs: Vec<PathBuf>,
    /// Playbooks seen (for the real loader).
    pub playbooks: Vec<PathBuf>,
    /// Directories templates/files are also looked up in (playbook dirs, root).
    pub extra_dirs: Vec<PathBuf>,
}

impl Project {
    pub fn discover(t: &Target) -> Project {
        let root = t.root.clone();
        let mut roles_dirs = vec![root.join("roles")];
        let mut extra_dirs = vec![root.clone(), root.join("playbooks")];
        for f in &t.files {
            if let Some(d) = f.parent()
                && d.file_name().is_some_and(|n| n == "playbooks")
                && !extra_dirs.contains(&d.to_path_buf())
            {
                extra_dirs.push(d.to_path_buf());
                roles_dirs.push(d.join("roles"));
            }
        }
        Project {
            root,
            roles_dirs,
            playbooks: Vec::new(),
            extra_dirs,
        }
    }

    pub fn find_role(&self, name: &str) -> Option<PathBuf> {
        if name.matches('.').count() == 2 {
            return crate::project::config::collection_role(name)
                .ok()
                .and_then(Result::ok);
        }
        self.roles_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_dir())
            .or_else(|| {
                crate::project::config::roles_path()
                    .ok()?
                    .into_iter()
                    .map(|d| d.join(name))
                    .find(|p| p.is_dir())
            })
    }
}

/// Where a task stands: for `templates/`, `files/` and task file lookups.
#[derive(Clone, Debug)]
pub struct TaskCtx {
    pub role_dir: Option<PathBuf>,
    pub base_dir: PathBuf,
    pub is_handler: bool,
    /// The role directory, or the playbook, whose tasks these are.
    pub scope_key: PathBuf,
}

/// A role file: `roles/NAME/SUB/...`.
fn role_part(path: &Path) -> Option<(PathBuf, String, String)> {
    let comps: Vec<_> = path.components().collect();
    let i = comps.iter().rposition(|c| c.as_os_str() == "roles")?;
    let name = comps.get(i + 1)?.as_os_str().to_str()?.to_string();
    let sub = comps.get(i + 2)?.as_os_str().to_str()?.to_string();
    if i + 3 >= comps.len() {
        return None;
    }
    let role_dir: PathBuf = comps[..i + 2].iter().collect();
    Some((role_dir, name, sub))
}

pub fn lint_yaml_file(l: &mut Linter, project: &mut Project, path: &Path, node: &Node) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if conventions::is_compose_file(name) {
        return;
    }
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Some((role_dir, role_name, sub)) = role_part(path) {
        let ctx = TaskCtx {
            role_dir: Some(role_dir.clone()),
            base_dir: base_dir.clone(),
            is_handler: sub == "handlers",
            scope_key: role_dir.clone(),
        };
        match sub.as_str() {
            "tasks" | "handlers" => task_list(l, project, node, &ctx),
            "defaults" | "vars" => vars_map(l, node, "role variables"),
            "meta" => role_meta(l, project, &role_name, node),
            _ => {}
        }
        return;
    }
    let comps: Vec<_> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if comps.iter().any(|c| c == "group_vars" || c == "host_vars") {
        vars_map(l, node, "inventory variables");
        return;
    }
    if comps.iter().any(|c| c == "inventory" || c == "inventories") {
        inventory_file(l, node);
        return;
    }
    match &node.value {
        Yaml::Seq(items) => {
            let is_playbook = items.iter().any(|i| {
                i.get("hosts").is_some()
                    || i.get("import_playbook").is_some()
                    || i.get("ansible.builtin.import_playbook").is_some()
            });
            if is_playbook {
                playbook(l, project, path, node);
            } else {
                let ctx = TaskCtx {
                    role_dir: None,
                    base_dir: base_dir.clone(),
                    is_handler: false,
                    scope_key: path.to_path_buf(),
                };
                task_list(l, project, node, &ctx);
            }
        }
        Yaml::Map(_) => vars_map(l, node, "variables"),
        _ => {}
    }
}

/// A YAML inventory: every host and group variable is defined.
fn inventory_file(l: &mut Linter, node: &Node) {
    fn walk(l: &mut Linter, n: &Node) {
        let Some(m) = n.as_map() else { return };
        for (k, v) in m {
            match k.as_str() {
                Some("vars") => vars_map(l, v, "inventory variables"),
                Some("hosts") => {
                    if let Some(hosts) = v.as_map() {
                        for (_, hv) in hosts {
                            if hv.as_map().is_some() {
                                vars_map(l, hv, "host variables");
                            }
                        }
                    }
                }
                _ => walk(l, v),
            }
        }
    }
    walk(l, node);
}

/// A mapping of variables: names defined, values checked for secrets and Jinja.
pub fn vars_map(l: &mut Linter, node: &Node, what: &str) {
    if node.is_null() {
        return;
    }
    let Some(m) = node.as_map() else {
        if let Yaml::Vault(_) = node.value {
            return;
        }
        l.report(
            "schema-structure",
            &node.loc,
            format!("expected {what} (a mapping), got {}", node.kind()),
        );
        return;
    };
    for (k, v) in m {
        let Some(name) = k.as_str() else { continue };
        l.know.defined.insert(name.to_string());
        l.know.values.insert(name.to_string(), v.clone());
        conventions::check_secret(l, name, v);
        templates::walk_strings(l, v);
    }
}

fn role_meta(l: &mut Linter, project: &Project, role: &str, node: &Node) {
    let Some(deps) = node.get("dependencies") else {
        l.know.role_deps.entry(role.to_string()).or_default();
        return;
    };
    let mut out = Vec::new();
    if !deps.is_null() {
        let Some(items) = deps.as_seq() else {
            l.report(
                "schema-structure",
                &deps.loc,
                "expected role dependencies (a list)",
            );
            return;
        };
        for d in items {
            if let Some((name, loc)) = role_ref(l, d) {
                references::check_role_exists(l, project, &name, &loc);
                out.push((name, loc));
            }
        }
    }
    l.know.role_deps.insert(role.to_string(), out);
}

/// A role reference (`- name`, `- role: name`, with params): its name, params defined.
fn role_ref(l: &mut Linter, r: &Node) -> Option<(String, Loc)> {
    match &r.value {
        Yaml::Str(s) => Some((s.clone(), r.loc.clone())),
        Yaml::Map(m) => {
            let mut name = None;
            for (k, v) in m {
                let Some(key) = k.as_str() else { continue };
                match key {
                    "role" | "name" => name = v.as_str().map(|s| (s.to_string(), v.loc.clone())),
                    "tags" => {}
                    "when" => templates::walk_exprs(l, v),
                    "vars" => vars_map(l, v, "role vars"),
                    "become" | "become_user" | "become_method" | "delegate_to" | "ignore_errors"
                    | "diff" | "no_log" | "check_mode" | "run_once" | "environment"
                    | "remote_user" | "any_errors_fatal" | "loop" | "with_items" | "notify" => l
                        .report(
                            "schema-play-keyword",
                            &k.loc,
                            format!(
                                "'{key}' on a role reference is not supported yet by deployer; set it in the play or on the role's tasks"
                            ),
                        ),
                    other => {
                        l.know.defined.insert(other.to_string());
                        l.know.values.insert(other.to_string(), v.clone());
                        conventions::check_secret(l, other, v);
                        templates::walk_strings(l, v);
                    }
                }
            }
            if name.is_none() {
                l.report("schema-structure", &r.loc, "a role reference needs `role:`");
            }
            name
        }
        _ => {
            l.report(
                "schema-structure",
                &r.loc,
                format!("expected a role name or mapping, got {}", r.kind()),
            );
            None
        }
    }
}

fn playbook(l: &mut Linter, project: &mut Project, path: &Path, node: &Node) {
    project.playbooks.push(path.to_path_buf());
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let Some(plays) = node.as_seq() else { return };
    for play in plays {
        let Some(entries) = play.as_map() else {
            l.report(
                "schema-structure",
                &play.loc,
                format!("expected a play (a mapping), got {}", play.kind()),
            );
            continue;
        };
        if let Some(imp) = play
            .get("import_playbook")
            .or_else(|| play.get("ansible.builtin.import_playbook"))
        {
            if let Some(f) = imp.as_str()
                && !is_templated(f)
                && !base_dir.join(f).is_file()
            {
                l.report(
                    "ref-task-file",
                    &imp.loc,
                    format!("import_playbook target '{f}' not found next to the playbook"),
                );
            }
            continue;
        }
        let ctx = TaskCtx {
            role_dir: None,
            base_dir: base_dir.clone(),
            is_handler: false,
            scope_key: path.to_path_buf(),
        };
        for (k, v) in entries {
            let Some(key) = k.as_str() else { continue };
            if !PLAY_KEYS.contains(&key) {
                l.report(
                    "schema-play-keyword",
                    &k.loc,
                    format!(
                        "unknown play keyword '{key}' (expected one of: {})",
                        PLAY_KEYS.join(", ")
                    ),
                );
                continue;
            }
            match key {
                "strategy" => {
                    if let Err(e) = crate::project::parse_strategy(v) {
                        l.report("schema-play-keyword", &v.loc, e.msg.clone());
                    }
                }
                "become_method" if v.as_str() != Some("sudo") => l.report(
                    "schema-play-keyword",
                    &v.loc,
                    "only become_method: sudo is supported",
                ),
                "vars" => vars_map(l, v, "play vars"),
                "vars_files" => vars_files(l, &base_dir, v),
                "roles" => match v.as_seq() {
                    Some(roles) => {
                        for r in roles {
                            if let Some((name, loc)) = role_ref(l, r) {
                                references::check_role_exists(l, project, &name, &loc);
                            }
                        }
                    }
                    None if v.is_null() => {}
                    None => l.report("schema-structure", &v.loc, "expected a list of roles"),
                },
                "pre_tasks" | "tasks" | "post_tasks" => task_list(l, project, v, &ctx),
                "handlers" => {
                    let h = TaskCtx {
                        is_handler: true,
                        ..ctx.clone()
                    };
                    task_list(l, project, v, &h);
                }
                "hosts" | "name" => templates::walk_strings(l, v),
                _ => {}
            }
        }
        if play.get("hosts").is_none() {
            l.report("schema-structure", &play.loc, "a play needs `hosts`");
        }
    }
}

fn vars_files(l: &mut Linter, base_dir: &Path, v: &Node) {
    let Some(items) = v.as_seq() else {
        l.report("schema-structure", &v.loc, "expected vars_files (a list)");
        return;
    };
    for f in items {
        let Some(name) = f.as_str() else { continue };
        if is_templated(name) {
            continue;
        }
        let p = base_dir.join(name);
        if !p.is_file() {
            l.report(
                "ref-vars-file",
                &f.loc,
                format!(
                    "vars file '{name}' not found (relative to {})",
                    base_dir.display()
                ),
            );
            continue;
        }
        let bytes = std::fs::read(&p).unwrap_or_default();
        if crate::vault::is_encrypted(&bytes) {
            l.know.has_vault_file = true;
            continue;
        }
        // Its names are defined; its problems are reported when it is linted itself.
        if let Ok(vars) = crate::project::inventory::load_vars_file(&p) {
            for (k, v) in vars {
                l.know.values.insert(k.clone(), v);
                l.know.defined.insert(k);
            }
        }
    }
}

pub fn task_list(l: &mut Linter, project: &Project, node: &Node, ctx: &TaskCtx) {
    if node.is_null() {
        return;
    }
    let Some(items) = node.as_seq() else {
        l.report(
            "schema-structure",
            &node.loc,
            format!("expected a list of tasks, got {}", node.kind()),
        );
        return;
    };
    for item in items {
        task(l, project, item, ctx);
    }
}

pub fn is_templated(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

const META_ACTIONS: &[&str] = &[
    "flush_handlers",
    "noop",
    "clear_facts",
    "reset_connection",
    "refresh_inventory",
    "end_play",
    "end_host",
];

const INCLUDES: &[&str] = &[
    "import_tasks",
    "include_tasks",
    "import_role",
    "include_role",
    "meta",
];

fn task(l: &mut Linter, project: &Project, node: &Node, ctx: &TaskCtx) {
    let Some(entries) = node.as_map() else {
        l.report(
            "schema-structure",
            &node.loc,
            format!("expected a task (a mapping), got {}", node.kind()),
        );
        return;
    };
    let mut modules: Vec<(&Node, &Node, String)> = Vec::new();
    let mut unknown: Vec<&Node> = Vec::new();
    let mut args_kw: Option<&Node> = None;
    let mut has_block = false;
    let mut has_rescue = false;
    let mut has_loop: Option<&Node> = None;
    let mut has_changed_when = false;
    let mut handler_name: Option<String> = None;
    let mut topics: Vec<String> = Vec::new();
    for (k, v) in entries {
        let Some(key) = k.as_str() else {
            l.report("schema-structure", &k.loc, "a task key must be a string");
            continue;
        };
        let short = key.strip_prefix("ansible.builtin.").unwrap_or(key);
        match key {
            "name" => {
                templates::walk_strings(l, v);
                handler_name = v.as_str().map(str::to_string);
            }
            "listen" => {
                if !ctx.is_handler {
                    l.report(
                        "schema-task-keyword",
                        &k.loc,
                        "'listen' is valid only in handlers",
                    );
                }
                topics = str_list(v);
            }
            "when" | "failed_when" => templates::walk_exprs(l, v),
            "changed_when" => {
                has_changed_when = true;
                templates::walk_exprs(l, v);
            }
            k2 if k2 == "loop" || k2.starts_with("with_") => {
                if let Some(lookup) = k2.strip_prefix("with_")
                    && let Some(why) = crate::template::lookups::refusal(lookup)
                {
                    l.report("schema-task-keyword", &k.loc, format!("{k2}: {why}"));
                }
                if let Some(prev) = has_loop {
                    l.report(
                        "schema-task-keyword",
                        &k.loc,
                        format!(
                            "a task can have only one loop (another at line {})",
                            prev.loc.line
                        ),
                    );
                }
                // `loop:` takes a list; the `with_<lookup>:` forms pass their
                // terms to the lookup (`with_sequence: start=1 end=5`,
                // `with_fileglob: "*.conf"`, `with_dict: {a: 1}` are valid).
                if k2 == "loop" && !loop_value_can_be_a_list(v) {
                    l.report(
                        "schema-arg-type",
                        &v.loc,
                        format!(
                            "{key} needs a list (or a template that gives one), got {}",
                            match &v.value {
                                Yaml::Map(_) => "a mapping".to_string(),
                                Yaml::Str(s) => format!("the string '{s}'"),
                                Yaml::Bool(b) => format!("the boolean {b}"),
                                Yaml::Int(i) => format!("the number {i}"),
                                Yaml::Float(f) => format!("the number {f}"),
                                _ => "a value that is not a list".to_string(),
                            }
                        ),
                    );
                }
                has_loop = Some(k);
                templates::walk_strings(l, v);
            }
            "loop_control" => match v.as_map() {
                Some(m) => {
                    for (lk, lv) in m {
                        match lk.as_str() {
                            Some("loop_var" | "index_var") => {
                                if let Some(s) = lv.as_str() {
                                    l.know.defined.insert(s.to_string());
                                }
                            }
                            Some("label") => templates::walk_strings(l, lv),
                            Some("pause" | "extended") => {}
                            other => l.report(
                                "schema-task-keyword",
                                &lk.loc,
                                format!(
                                    "unknown loop_control key '{}': expected loop_var, index_var, label, pause, extended",
                                    other.unwrap_or("?")
                                ),
                            ),
                        }
                    }
                }
                None => l.report(
                    "schema-structure",
                    &v.loc,
                    "expected loop_control (a mapping)",
                ),
            },
            "register" => {
                if let Some(s) = v.as_str() {
                    l.know.defined.insert(s.to_string());
                }
            }
            "notify" => {
                for n in str_list(v) {
                    l.know.notified.push((n, v.loc.clone()));
                }
            }
            "vars" => vars_map(l, v, "task vars"),
            "args" => args_kw = Some(v),
            "block" => {
                has_block = true;
                task_list(l, project, v, ctx);
            }
            "rescue" | "always" => {
                has_rescue = true;
                task_list(l, project, v, ctx);
            }
            _ if crate::project::task::NOT_YET_KEYWORDS.contains(&key) => l.report(
                "schema-task-keyword",
                &k.loc,
                format!("the task keyword '{key}' is not supported yet by deployer"),
            ),
            "become_method" if v.as_str() != Some("sudo") => l.report(
                "schema-task-keyword",
                &v.loc,
                "become_method: only sudo is supported",
            ),
            "local_action" => l.report(
                "schema-task-keyword",
                &k.loc,
                "local_action is not supported: use delegate_to: localhost",
            ),
            _ if TASK_KEYWORDS.contains(&key) => templates::walk_strings(l, v),
            _ if INCLUDES.contains(&short)
                || key.starts_with("ansible.legacy.")
                    && INCLUDES.contains(&key.trim_start_matches("ansible.legacy.")) =>
            {
                modules.push((
                    k,
                    v,
                    short.trim_start_matches("ansible.legacy.").to_string(),
                ))
            }
            _ if let Some(m) = registry::find(key) => modules.push((k, v, m.name().to_string())),
            _ if registry::not_yet(key).is_some() => modules.push((k, v, key.to_string())),
            _ => unknown.push(k),
        }
    }
    if ctx.is_handler {
        l.know.handlers.push(super::HandlerDef {
            name: handler_name,
            topics,
            loc: node.loc.clone(),
        });
    }
    for k in &unknown {
        let key = k.as_str().unwrap_or("");
        if modules.is_empty() && !has_block && (key.contains('.') || unknown.len() == 1) {
            l.report(
                "schema-unknown-module",
                &k.loc,
                format!(
                    "unknown module '{key}' ({}deployer runs: {})",
                    registry::nearest(key)
                        .map(|n| format!("did you mean '{n}'? "))
                        .unwrap_or_default(),
                    registry::names().join(", ")
                ),
            );
            // Still check what it can: images of docker modules.
            if let Some(v) = node.get(key) {
                conventions::check_task_images(l, key, v);
            }
        } else {
            l.report(
                "schema-task-keyword",
                &k.loc,
                format!(
                    "unknown task keyword '{key}' (task keywords: {})",
                    TASK_KEYWORDS.join(", ")
                ),
            );
        }
    }
    if has_rescue && !has_block {
        l.report("schema-structure", &node.loc, "rescue/always need a block");
    }
    if has_block {
        if let Some((k, _, _)) = modules.first() {
            l.report(
                "schema-two-modules",
                &k.loc,
                "a block cannot also name a module",
            );
        }
        return;
    }
    if modules.len() > 1 {
        let names: Vec<&str> = modules.iter().filter_map(|(k, _, _)| k.as_str()).collect();
        l.report(
            "schema-two-modules",
            &modules[1].0.loc,
            format!(
                "a task runs one module, but this one names {}",
                names.join(" and ")
            ),
        );
    }
    let Some((mkey, mval, short)) = modules.first().cloned() else {
        if unknown.is_empty() {
            l.report(
                "schema-no-module",
                &node.loc,
                format!(
                    "this task names no module (expected one of: {})",
                    registry::names().join(", ")
                ),
            );
        }
        return;
    };
    let key = mkey.as_str().unwrap_or("");
    conventions::check_fqcn(l, key, &mkey.loc);
    match short.as_str() {
        "import_tasks" | "include_tasks" => {
            let file = match &mval.value {
                Yaml::Map(_) => mval.get("file").and_then(Node::as_str),
                _ => mval.as_str(),
            };
            match file {
                Some(f) => references::check_task_file(l, ctx, f, &mval.loc),
                None => l.report(
                    "schema-missing-arg",
                    &mval.loc,
                    format!("{short} needs a file name"),
                ),
            }
        }
        "import_role" | "include_role" => {
            let Some(m) = mval.as_map() else {
                l.report(
                    "schema-arg-type",
                    &mval.loc,
                    format!("{short} expects a mapping with `name`"),
                );
                return;
            };
            for (k, v) in m {
                match k.as_str() {
                    Some("name" | "tasks_from" | "public" | "apply") => {}
                    Some("vars") => vars_map(l, v, "role vars"),
                    other => l.report(
                        "schema-unknown-arg",
                        &k.loc,
                        format!(
                            "unknown {short} argument '{}': expected name, tasks_from",
                            other.unwrap_or("?")
                        ),
                    ),
                }
            }
            match mval.get("name").and_then(Node::as_str) {
                Some(name) => {
                    references::check_role_exists(l, project, name, &mval.loc);
                    if let Some(tf) = mval.get("tasks_from").and_then(Node::as_str)
                        && let Some(dir) = project.find_role(name)
                        && !is_templated(tf)
                    {
                        let t = dir.join("tasks");
                        if ![tf.to_string(), format!("{tf}.yml"), format!("{tf}.yaml")]
                            .iter()
                            .any(|c| t.join(c).is_file())
                        {
                            l.report(
                                "ref-task-file",
                                &mval.loc,
                                format!("role '{name}' has no tasks/{tf}.yml"),
                            );
                        }
                    }
                }
                None => l.report(
                    "schema-missing-arg",
                    &mval.loc,
                    format!("{short} needs a role name"),
                ),
            }
        }
        "meta" => match mval.as_str() {
            Some(a) if META_ACTIONS.contains(&a) => {}
            _ => l.report(
                "schema-arg-type",
                &mval.loc,
                format!("meta action must be one of: {}", META_ACTIONS.join(", ")),
            ),
        },
        m if let Some(why) = registry::not_yet(m) => {
            l.report(
                "schema-unsupported-module",
                &mkey.loc,
                format!("module '{m}': {why}"),
            );
            templates::walk_strings(l, mval);
            if let Some(a) = args_kw {
                templates::walk_strings(l, a);
            }
            conventions::check_compose_task(l, ctx, mval, args_kw);
            conventions::check_task_images(l, m, mval);
        }
        _ => {
            let args = match merge_args(&short, mval, args_kw) {
                Ok(a) => a,
                Err(e) => {
                    l.report("schema-arg-type", &e.loc, e.msg);
                    return;
                }
            };
            module_args(l, &short, &args, &mkey.loc);
            match short.as_str() {
                "template" => references::check_source(l, project, ctx, &args, "templates"),
                "copy" => references::check_source(l, project, ctx, &args, "files"),
                "command" | "shell"
                    if !has_changed_when
                        && args.get("creates").is_none()
                        && args.get("removes").is_none() =>
                {
                    l.report(
                        "command-changed-when",
                        &mkey.loc,
                        format!("{short} without changed_when, creates or removes always reports changed: say when it changes (changed_when: false for a read-only command)"),
                    );
                }
                "docker_compose_v2" => {
                    conventions::check_compose_task(l, ctx, mval, args_kw);
                    conventions::check_task_images(l, &short, mval);
                }
                "docker_container" => conventions::check_task_images(l, &short, mval),
                "include_vars" => include_vars_names(l, ctx, &args),
                "set_fact" => {
                    if let Some(m) = args.as_map() {
                        for (k, v) in m {
                            if let Some(name) = k.as_str()
                                && name != "cacheable"
                            {
                                l.know.defined.insert(name.to_string());
                                l.know.values.insert(name.to_string(), v.clone());
                                conventions::check_secret(l, name, v);
                            }
                        }
                    }
                }
                // getent sets the fact getent_<database>.
                "getent" => {
                    if let Some(db) = args.get("database").and_then(|v| v.as_str()) {
                        l.know.defined.insert(format!("getent_{db}"));
                    }
                }
                // package_facts and service_facts set `packages` and `services`.
                "package_facts" => {
                    l.know.defined.insert("packages".into());
                }
                "service_facts" => {
                    l.know.defined.insert("services".into());
                }
                _ => {}
            }
            if short == "template" {
                conventions::note_env_template(l, ctx, &args);
            }
            // Jinja in the arguments.
            if let Some(m) = args.as_map() {
                for (k, v) in m {
                    match (short.as_str(), k.as_str()) {
                        ("assert", Some("that")) => templates::walk_exprs(l, v),
                        ("debug", Some("var")) => templates::walk_exprs(l, v),
                        _ => templates::walk_strings(l, v),
                    }
                }
            }
        }
    }
}

fn str_list(v: &Node) -> Vec<String> {
    match &v.value {
        Yaml::Seq(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Yaml::Str(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The module's arguments, checked by the module's own argument type and
/// its constraints between arguments (both from the module registry).
pub fn module_args(l: &mut Linter, module: &str, args: &Node, at: &Loc) {
    let Some(m) = registry::find(module) else {
        return;
    };
    let Json::Object(map) = args.to_json() else {
        return;
    };
    if crate::modules::other_os::is_other_os(module) {
        l.report(
            "module-other-os",
            at,
            format!(
                "{module} is the package module of another operating system: deployer loads it but fails the task on a host that reaches it (not supported yet by deployer)"
            ),
        );
        let names = m.args().names.unwrap_or(&[]);
        for k in map.keys().filter(|k| !names.contains(&k.as_str())) {
            let expected = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
            let msg = format!(
                "unknown field `{k}`, expected one of {}",
                expected.join(", ")
            );
            report_arg_error(l, module, args, at, &msg);
        }
    }
    if let Err(msg) = tolerant(&m.args().parse, map.clone()) {
        report_arg_error(l, module, args, at, &msg);
    }
    if let Err(msg) = m.check_combination(&map) {
        // A message about one argument ("state must be ...") points at its value.
        let about = args.as_map().and_then(|m| {
            m.iter().find(|(k, _)| {
                k.as_str().is_some_and(|k| {
                    msg.strip_prefix(k)
                        .is_some_and(|r| r.starts_with(' ') || r.starts_with(':'))
                })
            })
        });
        match about {
            Some((_, v)) => l.report("schema-arg-type", &v.loc, format!("{module}: {msg}")),
            None => l.report("schema-missing-arg", at, format!("{module}: {msg}")),
        }
    }
}

/// Parses, forgiving a templated value where a type is expected (its type is
/// only known once rendered).
fn tolerant(
    check: &dyn Fn(Json) -> Result<(), String>,
    mut map: Map<String, Json>,
) -> Result<(), String> {
    for _ in 0..16 {
        let msg = match check(Json::Object(map.clone())) {
            Ok(()) => return Ok(()),
            Err(m) => m,
        };
        let culprit = map
            .iter()
            .find(|(_, v)| matches!(v, Json::String(s) if is_templated(s) && msg.contains(s.as_str())))
            .map(|(k, _)| k.clone());
        let Some(k) = culprit else { return Err(msg) };
        let mut replaced = false;
        for (cand, marks) in [
            (json!(true), ["boolean `true`", "got true"]),
            (json!(1), ["integer `1`", "got 1"]),
            (json!([]), ["sequence", "got []"]),
            (json!({}), ["map", "got {}"]),
        ] {
            let mut trial = map.clone();
            trial.insert(k.clone(), cand);
            match check(Json::Object(trial.clone())) {
                Ok(()) => return Ok(()),
                Err(m2) if !marks.iter().any(|mk| m2.contains(mk)) => {
                    map = trial;
                    replaced = true;
                    break;
                }
                Err(_) => {}
            }
        }
        if !replaced {
            map.remove(&k);
        }
    }
    Ok(())
}

fn report_arg_error(l: &mut Linter, module: &str, args: &Node, at: &Loc, msg: &str) {
    let backticked = |m: &str| -> Option<String> {
        let s = m.find('`')? + 1;
        let e = m[s..].find('`')? + s;
        Some(m[s..e].to_string())
    };
    let key_loc = |name: &str| -> Option<Loc> {
        args.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(k, _)| k.loc.clone())
    };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let name = backticked(rest).unwrap_or_default();
        let loc = key_loc(&name).unwrap_or_else(|| at.clone());
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        l.report(
            "schema-unknown-arg",
            &loc,
            format!("{module} has no argument '{name}' (expected {expected})"),
        );
    } else if let Some(rest) = msg.strip_prefix("missing field ") {
        let name = backticked(rest).unwrap_or_default();
        l.report(
            "schema-missing-arg",
            at,
            format!("{module}: the argument '{name}' is required"),
        );
    } else {
        // Point at the value the message quotes, when it can be found.
        let loc = args
            .as_map()
            .and_then(|m| {
                m.iter().find(|(_, v)| {
                    let t = v.to_json().to_string();
                    t.len() > 2 && msg.contains(&t)
                        || v.as_str()
                            .is_some_and(|s| !s.is_empty() && msg.contains(&format!("`{s}`")))
                })
            })
            .map(|(_, v)| v.loc.clone())
            .unwrap_or_else(|| at.clone());
        l.report(
            "schema-arg-type",
            &loc,
            format!("invalid arguments for {module}: {msg}"),
        );
    }
}

/// A `loop` value whose type is known without rendering is a list; a
/// templated string may render to one.
fn loop_value_can_be_a_list(v: &Node) -> bool {
    match &v.value {
        Yaml::Seq(_) | Yaml::Null | Yaml::Vault(_) => true,
        Yaml::Str(s) => is_templated(s),
        _ => false,
    }
}

/// The names an `include_vars` task defines: `name:` itself, else the keys
/// of the file it loads (found where the engine looks: the role's `vars/`,
/// the role, the playbook's `vars/`, the playbook's directory). A directory,
/// a templated path or an encrypted file defines names lint cannot know.
fn include_vars_names(l: &mut Linter, ctx: &TaskCtx, args: &Node) {
    if let Some(name) = args.get("name").and_then(Node::as_str) {
        if is_templated(name) {
            l.know.names_unknown = true;
        } else {
            l.know.defined.insert(name.to_string());
        }
        return;
    }
    let Some(file) = args.get("file").and_then(Node::as_str) else {
        l.know.names_unknown = true;
        return;
    };
    if is_templated(file) {
        l.know.names_unknown = true;
        return;
    }
    let p = Path::new(file);
    let mut cands: Vec<PathBuf> = Vec::new();
    if p.is_absolute() {
        cands.push(p.to_path_buf());
    } else {
        if let Some(r) = &ctx.role_dir {
            cands.push(r.join("vars").join(file));
            cands.push(r.join(file));
        }
        cands.push(ctx.base_dir.join("vars").join(file));
        cands.push(ctx.base_dir.join(file));
    }
    let Some(found) = cands.into_iter().find(|c| c.is_file()) else {
        l.know.names_unknown = true;
        return;
    };
    let bytes = std::fs::read(&found).unwrap_or_default();
    if crate::vault::is_encrypted(&bytes) {
        l.know.names_unknown = true;
        return;
    }
    match crate::project::inventory::load_vars_file(&found) {
        Ok(vars) => {
            for (k, v) in vars {
                l.know.values.entry(k.clone()).or_insert(v);
                l.know.defined.insert(k);
            }
        }
        Err(_) => l.know.names_unknown = true,
    }
}
