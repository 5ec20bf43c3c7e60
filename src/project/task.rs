//! Tasks, blocks and handlers as loaded: keywords checked, the module and its
//! arguments found, and block-level keywords pushed down into their tasks.

use std::path::PathBuf;
use std::sync::Arc;

use crate::yaml::{Loc, LocatedError, Node, Yaml};

use super::inventory::Vars;

/// Where a task came from: the role chain (for `templates/` and `files/` lookups
/// and role variables) and the vars of enclosing blocks.
#[derive(Debug, Default)]
pub struct Scope {
    pub role: Option<Arc<super::Role>>,
    /// Vars of enclosing blocks and includes, outermost first.
    pub vars: Vec<Vars>,
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub enum TaskKind {
    Module {
        name: String,
        args: Node,
    },
    Block {
        block: Vec<Task>,
        rescue: Vec<Task>,
        always: Vec<Task>,
    },
    /// `include_tasks`: loaded when the play is loaded if its file name is fixed,
    /// run as one unit whose `when` is evaluated once.
    IncludeTasks {
        file: String,
        tasks: Option<Vec<Task>>,
        /// When `tasks` is None: the files a templated name may give (each
        /// loaded, or why it does not load), or a fixed name's load error,
        /// chosen when the include runs. As in Ansible, a file that is
        /// never included is never an error.
        dynamic: Vec<IncludeChoice>,
    },
    FlushHandlers,
    /// `meta: noop`: changes nothing.
    MetaNoop,
    /// `meta: clear_facts`: forgets the host's gathered facts.
    ClearFacts,
    /// `meta: reset_connection`: a new SSH connection to the host for the
    /// tasks that follow (a new login: new group memberships apply).
    ResetConnection,
    EndPlay,
    EndHost,
}

/// A file an `include_tasks` may name, as the name renders (`setup-Debian.yml`).
#[derive(Debug, Clone)]
pub struct IncludeChoice {
    pub name: String,
    pub tasks: Result<Vec<Task>, String>,
}

/// The files a templated include name may give: the name's templated parts
/// (in its last component only) match any text, in `dirs`.
fn include_candidates(file: &str, dirs: &[PathBuf]) -> Vec<String> {
    let (dir_part, name_part) = match file.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, file),
    };
    if dir_part.is_some_and(|d| d.contains("{{") || d.contains("{%")) {
        return Vec::new();
    }
    let mut pattern = String::from("^");
    let mut rest = name_part;
    while let Some(i) = rest.find("{{") {
        pattern.push_str(&regex::escape(&rest[..i]));
        pattern.push_str(".*");
        rest = match rest[i..].find("}}") {
            Some(j) => &rest[i + j + 2..],
            None => "",
        };
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    let Ok(re) = regex::Regex::new(&pattern) else {
        return Vec::new();
    };
    let mut out = std::collections::BTreeSet::new();
    for d in dirs {
        let dir = match dir_part {
            Some(p) if p.starts_with('/') => PathBuf::from(p),
            Some(p) => d.join(p),
            None => d.clone(),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() && re.is_match(&n) {
                out.insert(match dir_part {
                    Some(p) => format!("{p}/{n}"),
                    None => n,
                });
            }
        }
    }
    out.into_iter().collect()
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: Option<String>,
    pub loc: Loc,
    pub kind: TaskKind,
    pub when: Vec<String>,
    pub loop_items: Option<Node>,
    pub loop_var: String,
    pub index_var: Option<String>,
    pub loop_label: Option<String>,
    /// `loop_control.pause`: seconds to wait between two items.
    pub loop_pause: Option<f64>,
    /// `loop_control.extended`: the `ansible_loop` variable.
    pub loop_extended: bool,
    pub register: Option<String>,
    pub notify: Vec<String>,
    pub listen: Vec<String>,
    pub changed_when: Option<Vec<String>>,
    pub failed_when: Option<Vec<String>>,
    pub ignore_errors: bool,
    pub tags: Vec<String>,
    pub no_log: bool,
    pub use_become: Option<bool>,
    pub become_user: Option<String>,
    pub check_mode: Option<bool>,
    pub diff: Option<bool>,
    pub run_once: bool,
    /// `any_errors_fatal` of the task or an enclosing block (unset: the play's).
    pub any_errors_fatal: Option<bool>,
    pub delegate_to: Option<String>,
    pub vars: Vars,
    pub scope: Arc<Scope>,
    /// Boolean keywords given as templates (`no_log: "{{ not debug }}"`):
    /// (keyword, template), rendered per host when the task runs.
    pub templated_flags: Vec<(String, String)>,
    /// `until` conditions; with `retries`/`delay` (templates or numbers).
    pub until: Option<Vec<String>>,
    pub retries: Option<String>,
    pub delay: Option<String>,
    /// `throttle` (a number or a template giving one): at most that many
    /// hosts run the task at once (0: no limit). A block's reaches its tasks.
    pub throttle: Option<String>,
    /// `environment` of the play, blocks and the task, outermost first: each
    /// a mapping (or a template giving one), rendered when the task runs.
    pub environment: Vec<Node>,
}

impl Task {
    /// A task with every keyword at its default and no module (`meta: noop`),
    /// at `loc` in `scope`: the loader fills it in, the engine's own tasks
    /// (rollback) use it as is.
    pub fn blank(loc: Loc, scope: Arc<Scope>) -> Task {
        Task {
            name: None,
            loc,
            kind: TaskKind::MetaNoop,
            when: Vec::new(),
            loop_items: None,
            loop_var: "item".into(),
            index_var: None,
            loop_label: None,
            loop_pause: None,
            loop_extended: false,
            register: None,
            notify: Vec::new(),
            listen: Vec::new(),
            changed_when: None,
            failed_when: None,
            ignore_errors: false,
            tags: Vec::new(),
            no_log: false,
            use_become: None,
            become_user: None,
            check_mode: None,
            diff: None,
            run_once: false,
            any_errors_fatal: None,
            delegate_to: None,
            vars: Vars::new(),
            scope,
            templated_flags: Vec::new(),
            until: None,
            retries: None,
            delay: None,
            throttle: None,
            environment: Vec::new(),
        }
    }

    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match &self.kind {
            TaskKind::Module { name, .. } => name.clone(),
            TaskKind::Block { .. } => "block".into(),
            TaskKind::IncludeTasks { file, .. } => format!("include {file}"),
            TaskKind::FlushHandlers => "meta: flush_handlers".into(),
            TaskKind::MetaNoop => "meta".into(),
            TaskKind::ClearFacts => "meta: clear_facts".into(),
            TaskKind::ResetConnection => "meta: reset_connection".into(),
            TaskKind::EndPlay => "meta: end_play".into(),
            TaskKind::EndHost => "meta: end_host".into(),
        }
    }
}

/// What loading needs to know about modules. The module registry implements it
/// (`modules::registry::Registry`): `project` does not import `modules`, the
/// caller of [`super::load_playbook`] hands the registry in.
pub trait ModuleCatalog: Sync {
    /// The short name of the module a task key names (`ansible.builtin.copy` →
    /// `copy`), if deployer runs it.
    fn resolve(&self, key: &str) -> Option<&'static str>;
    /// Every module's short name, for messages.
    fn names(&self) -> Vec<&'static str>;
    /// Why a module deployer knows of is refused ("not implemented: ..."), if it is.
    fn not_yet(&self, key: &str) -> Option<&'static str>;
    /// The module name closest to a misspelt key, if one is close.
    fn nearest(&self, key: &str) -> Option<&'static str>;
    /// The argument names a module takes; `None` when it takes any (`set_fact`).
    fn arg_names(&self, module: &str) -> Option<&'static [&'static str]>;
}

pub const TASK_KEYWORDS: &[&str] = &[
    "name",
    "when",
    "loop",
    "with_items",
    "with_list",
    "loop_control",
    "register",
    "notify",
    "listen",
    "changed_when",
    "failed_when",
    "ignore_errors",
    "tags",
    "no_log",
    "become",
    "become_user",
    "become_method",
    "check_mode",
    "diff",
    "run_once",
    "delegate_to",
    "vars",
    "args",
    "block",
    "rescue",
    "always",
    "environment",
    "until",
    "retries",
    "delay",
    "throttle",
    "remote_user",
    "any_errors_fatal",
];

/// Task keywords Ansible has that deployer does not run yet: loading fails
/// with "not supported yet" rather than "unknown".
pub const NOT_YET_KEYWORDS: &[&str] = &[
    "async",
    "poll",
    "connection",
    "port",
    "remote_user",
    "become_flags",
    "become_exe",
    "collections",
    "debugger",
    "delegate_facts",
    "module_defaults",
    "timeout",
];

/// Loads the tasks a task names (a task file, a role) from where it stands.
pub type LoadTasksFn<'a> =
    dyn FnMut(&Node, &str, &Arc<Scope>) -> Result<Vec<Task>, LocatedError> + 'a;

pub struct TaskLoader<'a> {
    pub load_file: &'a mut LoadTasksFn<'a>,
    pub load_role: &'a mut LoadTasksFn<'a>,
    /// The modules deployer runs (the module registry).
    pub modules: &'a dyn ModuleCatalog,
}

pub fn parse_tasks(
    list: &Node,
    scope: &Arc<Scope>,
    loader: &mut TaskLoader<'_>,
    is_handler: bool,
) -> Result<Vec<Task>, LocatedError> {
    if list.is_null() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in list.expect_seq("a list of tasks")? {
        out.extend(parse_task(item, scope, loader, is_handler)?);
    }
    Ok(out)
}

fn parse_task(
    node: &Node,
    scope: &Arc<Scope>,
    loader: &mut TaskLoader<'_>,
    is_handler: bool,
) -> Result<Vec<Task>, LocatedError> {
    let entries = node.expect_map("a task")?;
    let mut task = Task::blank(node.loc.clone(), scope.clone());
    let mut module: Option<(String, Node)> = None;
    let mut args_kw: Option<Node> = None;
    let (mut block, mut rescue, mut always) = (None, None, None);
    let mut with_terms: Option<(String, Node)> = None;
    for (key, value) in &entries {
        let key = *key;
        match key {
            "name" => task.name = Some(value.expect_str("a task name")?),
            "when" => task.when = conditions(value)?,
            "loop" => {
                if task.loop_items.is_some() {
                    return Err(LocatedError::new(
                        &value.loc,
                        "a task can have only one of loop / with_items / with_<lookup>",
                    ));
                }
                task.loop_items = Some((*value).clone());
            }
            k if k.starts_with("with_") => {
                if task.loop_items.is_some() {
                    return Err(LocatedError::new(
                        &key_loc(node, key),
                        "a task can have only one of loop / with_items / with_<lookup>",
                    ));
                }
                let lookup = &k["with_".len()..];
                if let Some(why) = crate::template::lookups::refusal(lookup) {
                    return Err(LocatedError::new(
                        &key_loc(node, key),
                        format!("{key}: {why}"),
                    ));
                }
                // As Ansible's executor: the terms are templated, then given to
                // the lookup, whose list is the loop (`__deployer_with`, below).
                with_terms = Some((lookup.to_string(), (*value).clone()));
            }
            "until" => task.until = Some(conditions(value)?),
            "retries" => task.retries = Some(int_or_template(value, "retries")?),
            "throttle" => task.throttle = Some(int_or_template(value, "throttle")?),
            "delay" => task.delay = Some(int_or_template(value, "delay")?),
            "environment" => task.environment.push((*value).clone()),
            "loop_control" => {
                for (k, v) in value.expect_map("loop_control")? {
                    match k {
                        "loop_var" => task.loop_var = v.expect_str("loop_var")?,
                        "index_var" => task.index_var = Some(v.expect_str("index_var")?),
                        "label" => task.loop_label = Some(v.expect_str("label")?),
                        "pause" => task.loop_pause = Some(seconds(v, "loop_control.pause")?),
                        "extended" => task.loop_extended = expect_bool(v, "extended")?,
                        other => {
                            return Err(LocatedError::new(
                                &v.loc,
                                format!(
                                    "unknown loop_control key '{other}': expected loop_var, index_var, label, pause, extended (not supported yet by deployer: extended_allitems, break_when)"
                                ),
                            ));
                        }
                    }
                }
            }
            "register" => task.register = Some(value.expect_str("a variable name")?),
            "notify" => task.notify = value.expect_str_list("a handler name")?,
            "listen" if is_handler => task.listen = value.expect_str_list("a topic")?,
            "changed_when" => task.changed_when = Some(conditions(value)?),
            "failed_when" => task.failed_when = Some(conditions(value)?),
            "ignore_errors" => {
                if let Some(t) = flag_template(value) {
                    task.templated_flags.push((key.into(), t));
                } else {
                    task.ignore_errors = expect_bool(value, "ignore_errors")?
                }
            }
            "tags" => task.tags = value.expect_str_list("a tag")?,
            "no_log" => {
                if let Some(t) = flag_template(value) {
                    task.templated_flags.push((key.into(), t));
                } else {
                    task.no_log = expect_bool(value, "no_log")?
                }
            }
            "become" => {
                if let Some(t) = flag_template(value) {
                    task.templated_flags.push((key.into(), t));
                } else {
                    task.use_become = Some(expect_bool(value, "become")?)
                }
            }
            "become_user" => task.become_user = Some(value.expect_str("become_user")?),
            "become_method" => {
                let m = value.expect_str("become_method")?;
                if m != "sudo" {
                    return Err(LocatedError::new(
                        &value.loc,
                        format!("become_method '{m}' is not supported: only sudo"),
                    ));
                }
            }
            "check_mode" => {
                if let Some(t) = flag_template(value) {
                    task.templated_flags.push((key.into(), t));
                } else {
                    task.check_mode = Some(expect_bool(value, "check_mode")?)
                }
            }
            "diff" => {
                if let Some(t) = flag_template(value) {
                    task.templated_flags.push((key.into(), t));
                } else {
                    task.diff = Some(expect_bool(value, "diff")?)
                }
            }
            "run_once" => {
                if flag_template(value).is_some() {
                    return Err(LocatedError::new(
                        &value.loc,
                        "a templated run_once is not supported yet by deployer: use true or false",
                    ));
                }
                task.run_once = expect_bool(value, "run_once")?
            }
            "any_errors_fatal" => {
                if flag_template(value).is_some() {
                    return Err(LocatedError::new(
                        &value.loc,
                        "a templated any_errors_fatal is not supported yet by deployer: use true or false",
                    ));
                }
                task.any_errors_fatal = Some(expect_bool(value, "any_errors_fatal")?)
            }
            "delegate_to" => task.delegate_to = Some(value.expect_str("delegate_to")?),
            "vars" => task.vars = super::inventory::vars_from_map(value, "task vars")?,
            "args" => args_kw = Some((*value).clone()),
            "block" => block = Some((*value).clone()),
            "rescue" => rescue = Some((*value).clone()),
            "always" => always = Some((*value).clone()),
            k if NOT_YET_KEYWORDS.contains(&k) => {
                return Err(LocatedError::new(
                    &key_loc(node, key),
                    format!("the task keyword '{key}' is not supported yet by deployer"),
                ));
            }
            "import_tasks"
            | "include_tasks"
            | "ansible.builtin.import_tasks"
            | "ansible.builtin.include_tasks" => {
                set_module(&mut module, key, value)?;
            }
            "import_role"
            | "include_role"
            | "ansible.builtin.import_role"
            | "ansible.builtin.include_role" => {
                set_module(&mut module, key, value)?;
            }
            "meta" | "ansible.builtin.meta" => set_module(&mut module, key, value)?,
            "local_action" => {
                return Err(LocatedError::new(
                    &value.loc,
                    "local_action is not supported: use delegate_to: localhost",
                ));
            }
            _ => {
                if loader.modules.resolve(key).is_some() {
                    set_module(&mut module, key, value)?;
                } else if let Some(why) = loader.modules.not_yet(key) {
                    return Err(LocatedError::new(
                        &key_loc(node, key),
                        format!("module '{key}': {why}"),
                    ));
                } else {
                    let known = TASK_KEYWORDS.contains(&key);
                    let msg = if known {
                        format!("'{key}' is not valid here")
                    } else {
                        unknown_key_message(key, loader.modules)
                    };
                    return Err(LocatedError::new(&key_loc(node, key), msg));
                }
            }
        }
    }
    if let Some((lookup, terms)) = with_terms {
        let module = module.as_ref().map(|(m, _)| m.as_str()).unwrap_or("");
        task.loop_items = Some(Node {
            value: Yaml::Str(format!(
                "{{{{ __deployer_with('{lookup}', {}, '{module}') }}}}",
                crate::template::lookups::LOOP_TERMS_VAR
            )),
            loc: terms.loc.clone(),
        });
        task.vars
            .insert(crate::template::lookups::LOOP_TERMS_VAR.to_string(), terms);
    }
    if let Some(b) = block {
        if module.is_some() {
            return Err(LocatedError::new(
                &node.loc,
                "a block cannot also name a module",
            ));
        }
        // Not attributes of a Block in Ansible (it refuses them at load).
        for k in BLOCK_REFUSES {
            if entries.iter().any(|(key, _)| key == k) {
                return Err(LocatedError::new(
                    &key_loc(node, k),
                    format!("'{k}' is not a valid keyword for a block (as in Ansible)"),
                ));
            }
        }
        let inner = Arc::new(Scope {
            role: scope.role.clone(),
            vars: {
                let mut v = scope.vars.clone();
                if !task.vars.is_empty() {
                    v.push(std::mem::take(&mut task.vars));
                }
                v
            },
            base_dir: scope.base_dir.clone(),
        });
        let parse =
            |n: Option<Node>, loader: &mut TaskLoader<'_>| -> Result<Vec<Task>, LocatedError> {
                let Some(n) = n else { return Ok(Vec::new()) };
                let mut ts = parse_tasks(&n, &inner, loader, is_handler)?;
                for t in &mut ts {
                    inherit(t, &task);
                }
                Ok(ts)
            };
        let block = parse(Some(b), loader)?;
        let rescue = parse(rescue, loader)?;
        let always = parse(always, loader)?;
        // The block's own `when` and tags were pushed into its tasks.
        task.when.clear();
        task.kind = TaskKind::Block {
            block,
            rescue,
            always,
        };
        return Ok(vec![task]);
    }
    if rescue.is_some() || always.is_some() {
        return Err(LocatedError::new(&node.loc, "rescue/always need a block"));
    }
    let Some((mkey, mval)) = module else {
        return Err(LocatedError::new(
            &node.loc,
            "this task names no module (expected one of: ".to_string()
                + &loader.modules.names().join(", ")
                + ")",
        ));
    };
    let short = mkey
        .strip_prefix("ansible.builtin.")
        .unwrap_or(&mkey)
        .to_string();
    let modules = loader.modules;
    let is_import = matches!(short.as_str(), "import_tasks" | "import_role");
    let is_include = matches!(short.as_str(), "include_tasks" | "include_role");
    if is_include {
        // Ansible's TaskInclude takes only these keywords (VALID_INCLUDE_KEYWORDS
        // in playbook/task_include.py); they are the include's own, not its tasks'.
        for (k, _) in &entries {
            let k = *k;
            if k == mkey.as_str()
                || matches!(
                    k,
                    "name"
                        | "when"
                        | "loop"
                        | "with_items"
                        | "with_list"
                        | "loop_control"
                        | "tags"
                        | "vars"
                )
            {
                continue;
            }
            let msg = if matches!(
                k,
                "ignore_errors" | "no_log" | "register" | "run_once" | "args"
            ) {
                format!("'{k}' on {short} is not supported yet by deployer")
            } else {
                format!(
                    "'{k}' is not a valid keyword for {short} (as in Ansible): put it in apply: or on the included tasks"
                )
            };
            return Err(LocatedError::new(&key_loc(node, k), msg));
        }
    }
    if is_import {
        for k in ["loop", "with_items", "with_list", "loop_control"] {
            if entries.iter().any(|(key, _)| *key == k) {
                return Err(LocatedError::new(
                    &key_loc(node, k),
                    format!(
                        "you cannot use loops on '{short}' (as in Ansible): use the include_ form"
                    ),
                ));
            }
        }
        for k in ["register", "changed_when", "failed_when", "args"] {
            if entries.iter().any(|(key, _)| *key == k) {
                return Err(LocatedError::new(
                    &key_loc(node, k),
                    format!("'{k}' on {short} is not supported yet by deployer"),
                ));
            }
        }
    }
    match short.as_str() {
        "import_tasks" | "include_tasks" => {
            let allowed: &[&str] = if short == "include_tasks" {
                &["file", "apply"]
            } else {
                &["file"]
            };
            let file = match &mval.value {
                Yaml::Map(_) => {
                    for (k, v) in mval.expect_map(&short)? {
                        if !allowed.contains(&k) {
                            return Err(LocatedError::new(
                                &v.loc,
                                format!(
                                    "invalid option for {short}: '{k}' (expected {})",
                                    allowed.join(", ")
                                ),
                            ));
                        }
                    }
                    mval.get("file")
                        .map(|f| f.expect_str("file"))
                        .transpose()?
                        .ok_or_else(|| {
                            LocatedError::new(&mval.loc, format!("{short} needs a file name"))
                        })?
                }
                _ => mval.expect_str("a task file name")?,
            };
            let apply = mval
                .get("apply")
                .map(|a| apply_keywords(a, scope, modules))
                .transpose()?;
            let inner = Arc::new(Scope {
                role: scope.role.clone(),
                vars: include_vars(scope, &task, apply.as_ref()),
                base_dir: scope.base_dir.clone(),
            });
            if short == "import_tasks" {
                let mut tasks = (loader.load_file)(&mval, &file, &inner)?;
                for t in &mut tasks {
                    inherit(t, &task);
                }
                return Ok(tasks);
            }
            // include_tasks is dynamic in Ansible: its file is read when the
            // include runs, so a file that does not load (another
            // distribution's package manager) is an error only if included.
            let mut load = |name: &str| -> Result<Vec<Task>, String> {
                let mut tasks =
                    (loader.load_file)(&mval, name, &inner).map_err(|e| e.to_string())?;
                // An include's own keywords are its own (Ansible); `apply:` reaches its tasks.
                if let Some(apply) = &apply {
                    for t in &mut tasks {
                        inherit(t, apply);
                    }
                }
                Ok(tasks)
            };
            if !file.contains("{{") {
                task.kind = match load(&file) {
                    Ok(tasks) => TaskKind::IncludeTasks {
                        file,
                        tasks: Some(tasks),
                        dynamic: Vec::new(),
                    },
                    Err(e) => TaskKind::IncludeTasks {
                        dynamic: vec![IncludeChoice {
                            name: file.clone(),
                            tasks: Err(e),
                        }],
                        file,
                        tasks: None,
                    },
                };
            } else {
                let mut dirs = vec![scope.base_dir.clone()];
                if let Some(role) = &scope.role {
                    dirs.push(role.path.join("tasks"));
                }
                let dynamic = include_candidates(&file, &dirs)
                    .into_iter()
                    .map(|name| IncludeChoice {
                        tasks: load(&name),
                        name,
                    })
                    .collect();
                task.kind = TaskKind::IncludeTasks {
                    file,
                    tasks: None,
                    dynamic,
                };
            }
        }
        "import_role" | "include_role" => {
            let name = mval
                .get("name")
                .ok_or_else(|| LocatedError::new(&mval.loc, format!("{short} needs a role name")))?
                .expect_str("a role name")?;
            let allowed: &[&str] = if short == "include_role" {
                &["name", "tasks_from", "public", "apply"]
            } else {
                &["name", "tasks_from", "public"]
            };
            for (k, v) in mval.expect_map(&short)? {
                if !allowed.contains(&k) {
                    return Err(LocatedError::new(
                        &v.loc,
                        format!(
                            "unknown {short} argument '{k}': expected {} (not supported yet by deployer: vars_from, defaults_from, handlers_from, allow_duplicates, rolespec_validate)",
                            allowed.join(", ")
                        ),
                    ));
                }
                // deployer exposes every role's defaults and vars to the whole
                // play (Ansible's `public: true`); a private role is not supported.
                if k == "public" && !expect_bool(v, "public")? {
                    return Err(LocatedError::new(
                        &v.loc,
                        "public: false is not supported yet by deployer (every role's defaults and vars are visible to the whole play, as with public: true)",
                    ));
                }
            }
            let apply = mval
                .get("apply")
                .map(|a| apply_keywords(a, scope, modules))
                .transpose()?;
            let inner = Arc::new(Scope {
                role: scope.role.clone(),
                vars: include_vars(scope, &task, apply.as_ref()),
                base_dir: scope.base_dir.clone(),
            });
            let mut tasks = (loader.load_role)(&mval, &name, &inner)?;
            if short == "import_role" {
                for t in &mut tasks {
                    inherit(t, &task);
                }
                return Ok(tasks);
            }
            if let Some(apply) = &apply {
                for t in &mut tasks {
                    inherit(t, apply);
                }
            }
            // Dynamic, as in Ansible: `when` and `loop` are the include's,
            // evaluated once (per item), and its keywords stay its own.
            task.kind = TaskKind::IncludeTasks {
                file: format!("role {name}"),
                tasks: Some(tasks),
                dynamic: Vec::new(),
            };
        }
        "meta" => {
            let what = mval.expect_str("a meta action")?;
            task.kind = match what.as_str() {
                "flush_handlers" => TaskKind::FlushHandlers,
                "noop" => TaskKind::MetaNoop,
                "clear_facts" => TaskKind::ClearFacts,
                "reset_connection" => TaskKind::ResetConnection,
                "end_play" => TaskKind::EndPlay,
                "end_host" => TaskKind::EndHost,
                other => {
                    return Err(LocatedError::new(
                        &mval.loc,
                        format!(
                            "meta action '{other}' is not supported yet by deployer (flush_handlers, noop, clear_facts, reset_connection, end_play, end_host)"
                        ),
                    ));
                }
            };
        }
        _ => {
            let name = loader.modules.resolve(&mkey).unwrap_or("").to_string();
            let args = merge_args(&name, &mval, args_kw.as_ref())?;
            check_arg_names(loader.modules, &name, &args)?;
            task.kind = TaskKind::Module { name, args };
        }
    }
    Ok(vec![task])
}

/// Keywords Ansible refuses on a block ("not a valid attribute for a Block").
const BLOCK_REFUSES: &[&str] = &[
    "loop",
    "with_items",
    "with_list",
    "loop_control",
    "register",
    "changed_when",
    "failed_when",
    "args",
];

/// Keywords `apply:` of an include may carry (those of a block).
const APPLY_KEYWORDS: &[&str] = &[
    "when",
    "tags",
    "become",
    "become_user",
    "become_method",
    "check_mode",
    "diff",
    "no_log",
    "ignore_errors",
    "run_once",
    "delegate_to",
    "vars",
    "notify",
    "environment",
    "remote_user",
    "any_errors_fatal",
];

/// The keywords of an include's `apply:`, as a task to inherit from.
fn apply_keywords(
    node: &Node,
    scope: &Arc<Scope>,
    modules: &dyn ModuleCatalog,
) -> Result<Task, LocatedError> {
    let entries = node.expect_map("apply (a mapping of block keywords)")?;
    for (k, v) in &entries {
        if !APPLY_KEYWORDS.contains(k) {
            return Err(LocatedError::new(
                &v.loc,
                format!(
                    "'{k}' is not valid in apply: (expected block keywords: {})",
                    APPLY_KEYWORDS.join(", ")
                ),
            ));
        }
    }
    let mut t = Task::blank(node.loc.clone(), scope.clone());
    let mut no_loader = |_: &Node, _: &str, _: &Arc<Scope>| -> Result<Vec<Task>, LocatedError> {
        Err(LocatedError::new(&node.loc, "apply: cannot load tasks"))
    };
    let mut no_role = |_: &Node, _: &str, _: &Arc<Scope>| -> Result<Vec<Task>, LocatedError> {
        Err(LocatedError::new(&node.loc, "apply: cannot load roles"))
    };
    let mut loader = TaskLoader {
        load_file: &mut no_loader,
        load_role: &mut no_role,
        modules,
    };
    // Parsed as a `meta: noop` task with these keywords: the same checks as a task.
    let mut with_noop = entries
        .iter()
        .map(|(k, v)| {
            (
                Node {
                    value: Yaml::Str(k.to_string()),
                    loc: v.loc.clone(),
                },
                (*v).clone(),
            )
        })
        .collect::<Vec<_>>();
    with_noop.push((
        Node {
            value: Yaml::Str("meta".into()),
            loc: node.loc.clone(),
        },
        Node {
            value: Yaml::Str("noop".into()),
            loc: node.loc.clone(),
        },
    ));
    let synthetic = Node {
        value: Yaml::Map(with_noop),
        loc: node.loc.clone(),
    };
    if let Some(parsed) = parse_task(&synthetic, scope, &mut loader, false)?.pop() {
        t = parsed;
    }
    Ok(t)
}

/// The vars an include's tasks see: the enclosing ones, the include's own
/// `vars:`, then its `apply:` vars.
fn include_vars(scope: &Scope, task: &Task, apply: Option<&Task>) -> Vec<Vars> {
    let mut v = scope.vars.clone();
    if !task.vars.is_empty() {
        v.push(task.vars.clone());
    }
    if let Some(a) = apply
        && !a.vars.is_empty()
    {
        v.push(a.vars.clone());
    }
    v
}

fn seconds(node: &Node, what: &str) -> Result<f64, LocatedError> {
    let n = match &node.value {
        Yaml::Int(i) => Some(*i as f64),
        Yaml::Float(f) => Some(*f),
        Yaml::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite() && *n >= 0.0).ok_or_else(|| {
        LocatedError::new(
            &node.loc,
            format!("expected a number of seconds for {what}"),
        )
    })
}

/// The tasks a block or an `include_tasks` holds (what actually runs).
fn children_mut(t: &mut Task) -> Vec<&mut Task> {
    match &mut t.kind {
        TaskKind::Block {
            block,
            rescue,
            always,
        } => block
            .iter_mut()
            .chain(rescue.iter_mut())
            .chain(always.iter_mut())
            .collect(),
        TaskKind::IncludeTasks {
            tasks: Some(inner), ..
        } => inner.iter_mut().collect(),
        _ => Vec::new(),
    }
}

/// Tags given from above (a block, an import, a role in `roles:` or a
/// dependency, a play) reach every task below, also inside nested blocks and
/// included files, as in Ansible: otherwise `--tags` would select the block
/// but none of the tasks in it.
pub fn add_tags_deep(t: &mut Task, tags: &[String]) {
    for tag in tags {
        if !t.tags.contains(tag) {
            t.tags.push(tag.clone());
        }
    }
    for c in children_mut(t) {
        add_tags_deep(c, tags);
    }
}

/// A `when` from above goes before the task's own. A block's own `when` is
/// never evaluated (it was pushed into its tasks), so a `when` from above goes
/// into the block's tasks too; an `include_tasks` evaluates it once, itself.
pub fn prepend_when_deep(t: &mut Task, when: &[String]) {
    if when.is_empty() {
        return;
    }
    if let TaskKind::Block { .. } = t.kind {
        for c in children_mut(t) {
            prepend_when_deep(c, when);
        }
        return;
    }
    let mut w = when.to_vec();
    w.append(&mut t.when);
    t.when = w;
}

/// A play's `environment` goes under every task's own (blocks included).
pub fn prepend_environment_deep(t: &mut Task, env: &Node) {
    for c in children_mut(t) {
        prepend_environment_deep(c, env);
    }
    t.environment.insert(0, env.clone());
}

/// Pushes a block's (or import's) `when`, tags, use_become and flags into a child task.
fn inherit(child: &mut Task, parent: &Task) {
    prepend_when_deep(child, &parent.when);
    add_tags_deep(child, &parent.tags);
    inherit_flags(child, parent);
}

fn inherit_flags(child: &mut Task, parent: &Task) {
    for c in children_mut(child) {
        inherit_flags(c, parent);
    }
    if !parent.environment.is_empty() {
        let mut env = parent.environment.clone();
        env.append(&mut child.environment);
        child.environment = env;
    }
    for (k, t) in &parent.templated_flags {
        let set_by_child = child.templated_flags.iter().any(|(ck, _)| ck == k)
            || match k.as_str() {
                "become" => child.use_become.is_some(),
                "check_mode" => child.check_mode.is_some(),
                "diff" => child.diff.is_some(),
                _ => false,
            };
        if !set_by_child {
            child.templated_flags.push((k.clone(), t.clone()));
        }
    }
    if child.use_become.is_none() {
        child.use_become = parent.use_become;
    }
    if child.become_user.is_none() {
        child.become_user = parent.become_user.clone();
    }
    if child.check_mode.is_none() {
        child.check_mode = parent.check_mode;
    }
    // `diff: false` on a block or an import hides the diffs of everything in
    // it (a task that writes a secret), as in Ansible.
    if child.diff.is_none() {
        child.diff = parent.diff;
    }
    child.no_log |= parent.no_log;
    child.ignore_errors |= parent.ignore_errors;
    if child.delegate_to.is_none() {
        child.delegate_to = parent.delegate_to.clone();
    }
    child.run_once |= parent.run_once;
    if child.throttle.is_none() {
        child.throttle = parent.throttle.clone();
    }
    if child.any_errors_fatal.is_none() {
        child.any_errors_fatal = parent.any_errors_fatal;
    }
    // A block's notify applies to its tasks, as in Ansible.
    for n in &parent.notify {
        if !child.notify.contains(n) {
            child.notify.push(n.clone());
        }
    }
}

/// An argument the module does not take is an error at its own line, before
/// any host is contacted.
fn check_arg_names(
    modules: &dyn ModuleCatalog,
    module: &str,
    args: &Node,
) -> Result<(), LocatedError> {
    let (Some(known), Some(map)) = (modules.arg_names(module), args.as_map()) else {
        return Ok(());
    };
    for (k, _) in map {
        let key = k.as_str().unwrap_or("");
        if !known.contains(&key) {
            let hint = crate::template::lookups::nearest(key, known.iter())
                .map(|n| format!("did you mean '{n}'? "))
                .unwrap_or_default();
            return Err(LocatedError::new(
                &k.loc,
                format!(
                    "{module}: unsupported argument '{key}' ({hint}supported: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn set_module(
    slot: &mut Option<(String, Node)>,
    key: &str,
    value: &Node,
) -> Result<(), LocatedError> {
    if let Some((prev, _)) = slot {
        return Err(LocatedError::new(
            &value.loc,
            format!("a task can run only one module, but names both '{prev}' and '{key}'"),
        ));
    }
    *slot = Some((key.to_string(), value.clone()));
    Ok(())
}

fn key_loc(node: &Node, key: &str) -> Loc {
    node.as_map()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, _)| k.loc.clone())
        })
        .unwrap_or_else(|| node.loc.clone())
}

/// Free-form `k=v` arguments split as Ansible's `split_args` does: on
/// whitespace, but never inside quotes or a `{{ }}` / `{% %}` block, so
/// `path={{ item.file }}` stays one word. Quotes outside Jinja are removed.
fn split_args_jinja(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if depth > 0 {
            if (c == '}' && next == Some('}')) || (c == '%' && next == Some('}')) {
                depth -= 1;
                cur.push(c);
                cur.push('}');
                i += 2;
                continue;
            }
            cur.push(c);
            i += 1;
            continue;
        }
        if c == '{' && matches!(next, Some('{') | Some('%')) {
            depth += 1;
            in_word = true;
            cur.push(c);
            cur.push(next.unwrap_or('{'));
            i += 2;
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' && next.is_some() => {
                cur.push(next.unwrap_or_default());
                i += 1;
            }
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    if quote.is_some() || depth > 0 {
        return None;
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// A boolean keyword's template (`"{{ not debug }}"`), if it is one.
fn flag_template(node: &Node) -> Option<String> {
    match &node.value {
        Yaml::Str(s) if s.contains("{{") || s.contains("{%") => Some(s.clone()),
        _ => None,
    }
}

/// `retries`/`delay`: a number, or a template giving one.
fn int_or_template(node: &Node, what: &str) -> Result<String, LocatedError> {
    match &node.value {
        Yaml::Int(i) => Ok(i.to_string()),
        Yaml::Str(s) if s.contains("{{") => Ok(s.clone()),
        Yaml::Str(s) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().to_string()),
        _ => Err(LocatedError::new(
            &node.loc,
            format!("expected a number for {what}, got {}", node.kind()),
        )),
    }
}

/// The message for a task key that is neither a keyword nor a module deployer
/// knows: the nearest name, and "not supported yet" for what Ansible has.
fn unknown_key_message(key: &str, modules: &dyn ModuleCatalog) -> String {
    if let Some(m) = key
        .split('.')
        .nth(2)
        .filter(|_| key.split('.').count() == 3)
    {
        let collection = key.rsplit_once('.').map(|(c, _)| c).unwrap_or(key);
        if modules.resolve(m).is_some() {
            return format!(
                "module '{m}' of collection '{collection}' is not supported yet by deployer (deployer runs {m} as ansible.builtin.{m})"
            );
        }
        return format!(
            "module '{m}' of collection '{collection}' is not supported yet by deployer"
        );
    }
    let modules_names = modules.names();
    let names = modules_names
        .iter()
        .chain(TASK_KEYWORDS)
        .chain(NOT_YET_KEYWORDS);
    match crate::template::lookups::nearest(key, names) {
        Some(n) => format!("unknown keyword or module '{key}' (did you mean '{n}'?)"),
        None => format!(
            "unknown keyword or module '{key}': neither a task keyword nor a module deployer knows"
        ),
    }
}

pub fn conditions(node: &Node) -> Result<Vec<String>, LocatedError> {
    match &node.value {
        Yaml::Bool(b) => Ok(vec![if *b { "true".into() } else { "false".into() }]),
        Yaml::Seq(items) => items
            .iter()
            .flat_map(|i| match conditions(i) {
                Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
            .collect(),
        _ => Ok(vec![node.expect_str("a condition")?]),
    }
}

pub fn expect_bool(node: &Node, what: &str) -> Result<bool, LocatedError> {
    match &node.value {
        Yaml::Bool(b) => Ok(*b),
        Yaml::Str(s) => {
            crate::args::parse_bool(&serde_json::Value::String(s.clone())).ok_or_else(|| {
                LocatedError::new(
                    &node.loc,
                    format!("expected a boolean for {what}, got '{s}'"),
                )
            })
        }
        _ => Err(LocatedError::new(
            &node.loc,
            format!("expected a boolean for {what}, got {}", node.kind()),
        )),
    }
}

/// A module's arguments as one mapping: `key=value` free form, a mapping, and the
/// `args:` keyword merged. `command`/`shell` keep their free form as `_raw_params`.
pub(crate) fn merge_args(
    module: &str,
    value: &Node,
    args_kw: Option<&Node>,
) -> Result<Node, LocatedError> {
    let mut entries: Vec<(Node, Node)> = Vec::new();
    let loc = value.loc.clone();
    let key = |k: &str, loc: &Loc| Node {
        value: Yaml::Str(k.to_string()),
        loc: loc.clone(),
    };
    match &value.value {
        Yaml::Null => {}
        Yaml::Map(m) => entries.extend(m.iter().cloned()),
        Yaml::Str(s) => {
            let free_form = matches!(module, "command" | "shell");
            let words = split_args_jinja(s)
                .ok_or_else(|| LocatedError::new(&loc, "unbalanced quotes in module arguments"))?;
            let mut raw = Vec::new();
            for w in &words {
                match w.split_once('=') {
                    Some((k, v))
                        if !k.is_empty()
                            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && (!free_form
                                || matches!(
                                    k,
                                    "chdir" | "creates" | "removes" | "executable" | "stdin"
                                )) =>
                    {
                        entries.push((
                            key(k, &loc),
                            Node {
                                value: Yaml::Str(v.to_string()),
                                loc: loc.clone(),
                            },
                        ));
                    }
                    _ => raw.push(w.clone()),
                }
            }
            if free_form {
                // Keep the command text as written (minus k=v options), not re-joined words.
                let mut text = s.clone();
                for (k, _) in &entries {
                    if let Some(k) = k.as_str()
                        && let Some(pos) = text.find(&format!("{k}="))
                    {
                        let end = text[pos..].find(' ').map(|e| pos + e).unwrap_or(text.len());
                        text.replace_range(pos..end, "");
                    }
                }
                entries.push((
                    key("_raw_params", &loc),
                    Node {
                        value: Yaml::Str(text.trim().to_string()),
                        loc: loc.clone(),
                    },
                ));
            } else if !raw.is_empty() {
                if module == "include_vars" && words.len() == 1 {
                    // `include_vars: file.yml`: the free form is the file.
                    entries.push((
                        key("file", &loc),
                        Node {
                            value: Yaml::Str(s.trim().to_string()),
                            loc: loc.clone(),
                        },
                    ));
                } else if module == "debug" || module == "fail" {
                    entries.push((
                        key("msg", &loc),
                        Node {
                            value: Yaml::Str(s.clone()),
                            loc: loc.clone(),
                        },
                    ));
                } else {
                    return Err(LocatedError::new(
                        &loc,
                        format!(
                            "expected key=value arguments for '{module}', got '{}'",
                            raw.join(" ")
                        ),
                    ));
                }
            }
        }
        _ => {
            return Err(LocatedError::new(
                &loc,
                format!(
                    "expected arguments for '{module}' as a mapping or key=value string, got {}",
                    value.kind()
                ),
            ));
        }
    }
    if let Some(a) = args_kw {
        for (k, v) in a
            .as_map()
            .ok_or_else(|| LocatedError::new(&a.loc, "expected args: to be a mapping"))?
        {
            if !entries.iter().any(|(ek, _)| ek.value == k.value) {
                entries.push((k.clone(), v.clone()));
            }
        }
    }
    Ok(Node {
        value: Yaml::Map(entries),
        loc,
    })
}

#[cfg(test)]
mod split_tests {
    #[test]
    fn free_form_words_keep_jinja_blocks_whole() {
        assert_eq!(
            super::split_args_jinja("path={{ item.file }} state=touch msg='a b'"),
            Some(vec![
                "path={{ item.file }}".to_string(),
                "state=touch".to_string(),
                "msg=a b".to_string()
            ])
        );
        assert_eq!(super::split_args_jinja("a='b"), None);
    }
}
