//! Loading a project: inventory, playbooks, plays, roles, tasks and handlers.
//! Everything is checked here, before any host is contacted.

pub mod config;
pub mod images_lock;
pub mod inventory;
pub mod task;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::yaml::{self, Loc, LocatedError, Node, Yaml};
pub use inventory::{Inventory, Vars};
pub use task::{IncludeChoice, ModuleCatalog, Scope, Task, TaskKind};

#[derive(Debug)]
pub struct Role {
    pub name: String,
    pub path: PathBuf,
    pub defaults: Vars,
    pub vars: Vars,
    /// Parameters given where the role is used (`roles: [{role: x, foo: 1}]`).
    pub params: Vars,
    pub parent: Option<Arc<Role>>,
}

impl Role {
    /// The role and the roles it was pulled in by, innermost first.
    pub fn chain(self: &Arc<Role>) -> Vec<Arc<Role>> {
        let mut out = vec![self.clone()];
        let mut cur = self.parent.clone();
        while let Some(r) = cur {
            cur = r.parent.clone();
            out.push(r);
        }
        out
    }
}

#[derive(Debug)]
pub struct Play {
    pub name: String,
    pub loc: Loc,
    pub hosts: String,
    pub vars: Vars,
    pub vars_files: Vec<(String, Loc)>,
    pub use_become: bool,
    pub become_user: Option<String>,
    pub gather_facts: bool,
    /// `gather_subset` (Ansible's default: `all`).
    pub gather_subset: Vec<String>,
    pub tags: Vec<String>,
    pub tasks: Vec<Task>,
    pub handlers: Vec<Task>,
    pub base_dir: PathBuf,
    /// `serial`: batch sizes, the last one repeated (empty: one batch).
    pub serial: Vec<Serial>,
    /// `any_errors_fatal` of the play (blocks and tasks may set their own).
    pub any_errors_fatal: bool,
    /// `max_fail_percentage`.
    pub max_fail_percentage: Option<f64>,
    /// `strategy` (unset: deployer's default, see [`Strategy`]).
    pub strategy: Option<Strategy>,
}

/// A play's `strategy`. Without one, deployer runs each host's tasks as soon
/// as the host is ready and brings the hosts together after every task only
/// where the play needs it (`any_errors_fatal`, `max_fail_percentage`, a
/// play that reads `hostvars`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `linear`: every host finishes a task before any host starts the
    /// next one (Ansible's `plugins/strategy/linear.py`).
    Linear,
    /// `free` and `host_pinned`: each host goes through the play at its own
    /// pace; a host keeps its `--forks` slot until its play ends (as
    /// `host_pinned`; with at least as many forks as hosts, as `free`).
    Free,
}

/// Reads a play's `strategy`: `linear`, `free` or `host_pinned` (with or
/// without `ansible.builtin.`); `debug` and others are refused.
pub fn parse_strategy(v: &Node) -> Result<Strategy, LocatedError> {
    let s = v.expect_str("strategy")?;
    if s.contains("{{") {
        return Err(LocatedError::new(
            &v.loc,
            "a templated strategy is not supported yet by deployer: write linear, free or host_pinned",
        ));
    }
    match s.strip_prefix("ansible.builtin.").unwrap_or(&s) {
        "linear" => Ok(Strategy::Linear),
        "free" | "host_pinned" => Ok(Strategy::Free),
        "debug" => Err(LocatedError::new(
            &v.loc,
            "strategy 'debug' (the interactive task debugger) is not supported yet by deployer",
        )),
        other => Err(LocatedError::new(
            &v.loc,
            format!("unknown strategy '{other}' (expected linear, free or host_pinned)"),
        )),
    }
}

/// One entry of a play's `serial`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Serial {
    /// A number of hosts (zero or less: all the remaining hosts).
    Count(i64),
    /// A percentage of the play's hosts, at least one host.
    Percent(i64),
}

impl Play {
    /// The play's hosts in batches, as Ansible's
    /// `PlaybookExecutor._get_serialized_batches` cuts them: a percentage is
    /// of all the play's hosts (rounded down, at least 1), the last entry
    /// repeats, and a size of zero or less takes every remaining host.
    pub fn batches(&self, hosts: &[String]) -> Vec<Vec<String>> {
        let total = hosts.len();
        let mut rest: std::collections::VecDeque<String> = hosts.iter().cloned().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while !rest.is_empty() {
            let size = match self.serial.get(i) {
                None => -1,
                Some(Serial::Count(n)) => *n,
                Some(Serial::Percent(p)) => {
                    let n = ((*p as f64 / 100.0) * total as f64) as i64;
                    if n == 0 { 1 } else { n }
                }
            };
            if size <= 0 {
                out.push(rest.drain(..).collect());
                break;
            }
            let take = (size as usize).min(rest.len());
            out.push(rest.drain(..take).collect());
            if i + 1 < self.serial.len() {
                i += 1;
            }
        }
        out
    }
}

impl Play {
    /// A play with no tasks and no variables of its own, for commands that need
    /// a host's inventory-level context only (deploy state, releases).
    pub fn empty(name: &str, loc: Loc, hosts: &str, base_dir: PathBuf) -> Play {
        Play {
            name: name.into(),
            loc,
            hosts: hosts.into(),
            vars: Vars::new(),
            vars_files: Vec::new(),
            use_become: false,
            become_user: None,
            gather_facts: false,
            gather_subset: vec!["all".into()],
            tags: Vec::new(),
            tasks: Vec::new(),
            handlers: Vec::new(),
            base_dir,
            serial: Vec::new(),
            any_errors_fatal: false,
            max_fail_percentage: None,
            strategy: None,
        }
    }
}

#[derive(Debug)]
pub struct Playbook {
    pub path: PathBuf,
    pub plays: Vec<Play>,
}

pub const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "roles",
    "pre_tasks",
    "tasks",
    "post_tasks",
    "handlers",
    "vars",
    "vars_files",
    "become",
    "become_user",
    "become_method",
    "gather_facts",
    "gather_subset",
    "tags",
    "any_errors_fatal",
    "max_fail_percentage",
    "serial",
    "strategy",
    "environment",
];

/// Loads a playbook with its imports, roles and task files, checking every
/// task's module and argument names against `modules` (the module registry).
/// Touches no host.
pub fn load_playbook(path: &Path, modules: &dyn ModuleCatalog) -> Result<Playbook, LocatedError> {
    let mut plays = Vec::new();
    load_playbook_into(path, modules, &mut plays, &mut Vec::new())?;
    Ok(Playbook {
        path: path.to_path_buf(),
        plays,
    })
}

fn load_playbook_into(
    path: &Path,
    modules: &dyn ModuleCatalog,
    plays: &mut Vec<Play>,
    stack: &mut Vec<PathBuf>,
) -> Result<(), LocatedError> {
    if stack.iter().any(|p| p == path) {
        return Err(LocatedError::new(
            &Loc::file_only(path),
            "import_playbook cycle",
        ));
    }
    stack.push(path.to_path_buf());
    let root = yaml::load_file(path)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for play in root.expect_seq("a playbook (a list of plays)")? {
        if let Some(imp) = play
            .get("import_playbook")
            .or_else(|| play.get("ansible.builtin.import_playbook"))
        {
            let file = imp.expect_str("a playbook path")?;
            load_playbook_into(&base_dir.join(file), modules, plays, stack)?;
            continue;
        }
        plays.push(load_play(play, &base_dir, modules)?);
    }
    stack.pop();
    Ok(())
}

fn load_play(
    node: &Node,
    base_dir: &Path,
    modules: &dyn ModuleCatalog,
) -> Result<Play, LocatedError> {
    let entries = node.expect_map("a play")?;
    for (k, v) in &entries {
        if !PLAY_KEYS.contains(k) {
            return Err(LocatedError::new(
                &v.loc,
                format!(
                    "unknown play keyword '{k}' (expected one of: {})",
                    PLAY_KEYS.join(", ")
                ),
            ));
        }
    }
    let get = |k: &str| node.get(k);
    let hosts = get("hosts")
        .ok_or_else(|| LocatedError::new(&node.loc, "a play needs `hosts`"))?
        .expect_str_list("a host pattern")?
        .join(":");
    let name = match get("name") {
        Some(n) => n.expect_str("a play name")?,
        None => hosts.clone(),
    };
    let vars = match get("vars") {
        Some(v) => inventory::vars_from_map(v, "play vars")?,
        None => Vars::new(),
    };
    let mut vars_files = Vec::new();
    if let Some(vf) = get("vars_files") {
        for f in vf.expect_seq("vars_files")? {
            vars_files.push((f.expect_str("a vars file path")?, f.loc.clone()));
        }
    }
    // ansible.cfg's [privilege_escalation] gives the defaults a play overrides.
    let cfg = config::current()?;
    let use_become = get("become")
        .map(|b| task::expect_bool(b, "become"))
        .transpose()?
        .or_else(|| cfg.bool("become"))
        .unwrap_or(false);
    let become_user = get("become_user")
        .map(|b| b.expect_str("become_user"))
        .transpose()?
        .or_else(|| cfg.text("become_user"));
    let gather_facts = get("gather_facts")
        .map(|b| task::expect_bool(b, "gather_facts"))
        .transpose()?
        .unwrap_or(true);
    let gather_subset = match get("gather_subset") {
        Some(v) => {
            let list = v.expect_str_list("a gather_subset name")?;
            crate::facts::subsets(&list).map_err(|e| LocatedError::new(&v.loc, e))?;
            list
        }
        None => vec!["all".into()],
    };
    let tags = get("tags")
        .map(|t| t.expect_str_list("a tag"))
        .transpose()?
        .unwrap_or_default();
    let serial = match get("serial") {
        Some(v) => serial_entries(v)?,
        None => Vec::new(),
    };
    let any_errors_fatal = get("any_errors_fatal")
        .map(|b| {
            if b.as_str().is_some_and(|s| s.contains("{{")) {
                return Err(LocatedError::new(
                    &b.loc,
                    "a templated any_errors_fatal is not supported yet by deployer: use true or false",
                ));
            }
            task::expect_bool(b, "any_errors_fatal")
        })
        .transpose()?
        .unwrap_or(false);
    let max_fail_percentage = get("max_fail_percentage").map(percent).transpose()?;
    let strategy = get("strategy").map(parse_strategy).transpose()?;
    if let Some(m) = get("become_method")
        && m.expect_str("become_method")? != "sudo"
    {
        return Err(LocatedError::new(
            &m.loc,
            "only become_method: sudo is supported",
        ));
    }

    let play_scope = Arc::new(Scope {
        role: None,
        vars: Vec::new(),
        base_dir: base_dir.to_path_buf(),
    });
    let mut roles_dirs = vec![base_dir.join("roles"), base_dir.join("..").join("roles")];
    roles_dirs.extend(config::roles_path()?);
    let mut ctx = LoadCtx {
        roles_dirs,
        role_stack: Vec::new(),
        modules,
    };

    let mut tasks = Vec::new();
    let mut handlers = Vec::new();
    if let Some(pre) = get("pre_tasks") {
        tasks.extend(ctx.parse_tasks(pre, &play_scope, false)?);
    }
    if let Some(roles) = get("roles") {
        for r in roles.expect_seq("a list of roles")? {
            let (name, params, role_tags, when) = role_ref(r)?;
            let (mut rt, rh) = ctx.load_role(&name, &r.loc, params, None, "main", Vec::new())?;
            for t in &mut rt {
                task::add_tags_deep(t, &role_tags);
                task::prepend_when_deep(t, &when);
            }
            tasks.extend(rt);
            handlers.extend(rh);
        }
    }
    if let Some(t) = get("tasks") {
        tasks.extend(ctx.parse_tasks(t, &play_scope, false)?);
    }
    if let Some(t) = get("post_tasks") {
        tasks.extend(ctx.parse_tasks(t, &play_scope, false)?);
    }
    if let Some(h) = get("handlers") {
        handlers.extend(ctx.parse_tasks(h, &play_scope, true)?);
    }
    // Play tags apply to every task in the play.
    for t in tasks.iter_mut() {
        task::add_tags_deep(t, &tags);
    }
    if let Some(env) = get("environment") {
        for t in tasks.iter_mut().chain(handlers.iter_mut()) {
            task::prepend_environment_deep(t, env);
        }
    }
    check_notifications(&tasks, &handlers)?;
    Ok(Play {
        name,
        loc: node.loc.clone(),
        hosts,
        vars,
        vars_files,
        use_become,
        become_user,
        gather_facts,
        gather_subset,
        tags,
        tasks,
        handlers,
        base_dir: base_dir.to_path_buf(),
        serial,
        any_errors_fatal,
        max_fail_percentage,
        strategy,
    })
}

/// `serial`: a number, a percentage (`"30%"`) or a list of them, as Ansible
/// reads them (`pct_to_int`: a string without `%` is a whole number).
fn serial_entries(v: &Node) -> Result<Vec<Serial>, LocatedError> {
    let items: Vec<&Node> = match &v.value {
        Yaml::Seq(items) => items.iter().collect(),
        _ => vec![v],
    };
    let mut out = Vec::new();
    for item in items {
        let bad = |what: &str| {
            LocatedError::new(
                &item.loc,
                format!(
                    "serial: expected a number of hosts or a percentage such as \"30%\", got {what}"
                ),
            )
        };
        let entry = match &item.value {
            Yaml::Int(n) => Serial::Count(*n),
            Yaml::Float(f) if f.is_finite() => Serial::Count(f.trunc() as i64),
            Yaml::Str(s) if s.contains("{{") || s.contains("{%") => {
                return Err(LocatedError::new(
                    &item.loc,
                    "a templated serial is not supported yet by deployer: give a number or a percentage",
                ));
            }
            Yaml::Str(s) => match s.trim().strip_suffix('%') {
                Some(p) => Serial::Percent(p.trim().parse().map_err(|_| bad(&format!("'{s}'")))?),
                None => Serial::Count(s.trim().parse().map_err(|_| bad(&format!("'{s}'")))?),
            },
            _ => return Err(bad(item.kind())),
        };
        out.push(entry);
    }
    Ok(out)
}

/// `max_fail_percentage`: a number, with or without `%` (Ansible's `percent`
/// field type).
fn percent(v: &Node) -> Result<f64, LocatedError> {
    let bad = |what: &str| {
        LocatedError::new(
            &v.loc,
            format!("max_fail_percentage: expected a percentage such as 30 or \"30%\", got {what}"),
        )
    };
    match &v.value {
        Yaml::Int(n) => Ok(*n as f64),
        Yaml::Float(f) if f.is_finite() => Ok(*f),
        Yaml::Str(s) if s.contains("{{") || s.contains("{%") => Err(LocatedError::new(
            &v.loc,
            "a templated max_fail_percentage is not supported yet by deployer: give a number",
        )),
        Yaml::Str(s) => s
            .replace('%', "")
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| bad(&format!("'{s}'"))),
        _ => Err(bad(v.kind())),
    }
}

/// A notify that no handler answers to is an error at load time (Ansible fails at
/// run time, when the task changes; we fail before touching any host).
fn check_notifications(tasks: &[Task], handlers: &[Task]) -> Result<(), LocatedError> {
    let mut all = flatten_tasks(tasks);
    let hs = flatten_tasks(handlers);
    all.extend(hs.iter().copied());
    for t in all {
        for n in &t.notify {
            let found = hs
                .iter()
                .any(|h| h.name.as_deref() == Some(n.as_str()) || h.listen.iter().any(|l| l == n));
            if !found && !n.contains("{{") {
                return Err(LocatedError::new(
                    &t.loc,
                    format!(
                        "task '{}' notifies '{n}', but no handler has that name or listens to it",
                        t.display_name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

type RoleRef = (String, Vars, Vec<String>, Vec<String>);

fn role_ref(r: &Node) -> Result<RoleRef, LocatedError> {
    match &r.value {
        Yaml::Str(s) => Ok((s.clone(), Vars::new(), Vec::new(), Vec::new())),
        Yaml::Map(_) => {
            let mut name = None;
            let mut params = Vars::new();
            let mut tags = Vec::new();
            let mut when = Vec::new();
            for (k, v) in r.expect_map("a role reference")? {
                match k {
                    "role" | "name" => name = Some(v.expect_str("a role name")?),
                    "tags" => tags = v.expect_str_list("a tag")?,
                    "when" => when = task::conditions(v)?,
                    "vars" => {
                        for (vk, vv) in inventory::vars_from_map(v, "role vars")? {
                            params.insert(vk, vv);
                        }
                    }
                    // Keywords in Ansible, not role parameters: refused rather than
                    // passed to the role as variables nobody reads.
                    "become" | "become_user" | "become_method" | "delegate_to"
                    | "ignore_errors" | "diff" | "no_log" | "check_mode" | "run_once"
                    | "environment" | "remote_user" | "any_errors_fatal" | "loop"
                    | "with_items" | "notify" => {
                        return Err(LocatedError::new(
                            &v.loc,
                            format!(
                                "'{k}' on a role reference is not supported yet by deployer; set it in the play or on the role's tasks"
                            ),
                        ));
                    }
                    other => {
                        params.insert(other.to_string(), v.clone());
                    }
                }
            }
            let name =
                name.ok_or_else(|| LocatedError::new(&r.loc, "a role reference needs `role:`"))?;
            Ok((name, params, tags, when))
        }
        _ => Err(LocatedError::new(
            &r.loc,
            format!("expected a role name or mapping, got {}", r.kind()),
        )),
    }
}

struct LoadCtx<'m> {
    roles_dirs: Vec<PathBuf>,
    role_stack: Vec<String>,
    modules: &'m dyn ModuleCatalog,
}

impl LoadCtx<'_> {
    fn parse_tasks(
        &mut self,
        node: &Node,
        scope: &Arc<Scope>,
        is_handler: bool,
    ) -> Result<Vec<Task>, LocatedError> {
        let modules = self.modules;
        let (dirs, st) = (self.roles_dirs.clone(), self.role_stack.clone());
        let mut load_file =
            move |n: &Node, file: &str, scope: &Arc<Scope>| -> Result<Vec<Task>, LocatedError> {
                load_task_file(n, file, scope, &dirs, &st, modules)
            };
        let roles_dirs = self.roles_dirs.clone();
        let stack = self.role_stack.clone();
        let mut load_role = |n: &Node,
                             name: &str,
                             scope: &Arc<Scope>|
         -> Result<Vec<Task>, LocatedError> {
            let mut sub = LoadCtx {
                roles_dirs: roles_dirs.clone(),
                role_stack: stack.clone(),
                modules,
            };
            let tasks_from = n
                .get("tasks_from")
                .map(|t| t.expect_str("tasks_from"))
                .transpose()?;
            let (t, h) = sub.load_role(
                name,
                &n.loc,
                Vars::new(),
                scope.role.clone(),
                tasks_from.as_deref().unwrap_or("main"),
                scope.vars.clone(),
            )?;
            if !h.is_empty() {
                return Err(LocatedError::new(
                    &n.loc,
                    format!(
                        "role '{name}' has handlers; use it under `roles:` so its handlers are part of the play"
                    ),
                ));
            }
            Ok(t)
        };
        let mut loader = task::TaskLoader {
            load_file: &mut load_file,
            load_role: &mut load_role,
            modules,
        };
        task::parse_tasks(node, scope, &mut loader, is_handler)
    }

    fn find_role(&self, name: &str, loc: &Loc) -> Result<PathBuf, LocatedError> {
        if name.matches('.').count() == 2 {
            return match config::collection_role(name)? {
                Ok(p) => Ok(p.canonicalize().unwrap_or(p)),
                Err(tried) => {
                    let coll = name.rsplit_once('.').map_or(name, |(c, _)| c);
                    Err(LocatedError::new(
                        loc,
                        format!(
                            "role '{name}' not found: collection '{coll}' has no such role or is not installed (looked in {}; set collections_path in ansible.cfg or ANSIBLE_COLLECTIONS_PATH)",
                            tried
                                .iter()
                                .map(|d| d.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            };
        }
        for d in &self.roles_dirs {
            let p = d.join(name);
            if p.is_dir() {
                return Ok(p.canonicalize().unwrap_or(p));
            }
        }
        Err(LocatedError::new(
            loc,
            format!(
                "role '{name}' not found (looked in {})",
                self.roles_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    /// Loads a role and its `meta/main.yml` dependencies (dependencies first).
    fn load_role(
        &mut self,
        name: &str,
        loc: &Loc,
        params: Vars,
        parent: Option<Arc<Role>>,
        tasks_from: &str,
        // Vars of the blocks and the include around an included role (its
        // `vars:` among them): its tasks see them.
        outer_vars: Vec<Vars>,
    ) -> Result<(Vec<Task>, Vec<Task>), LocatedError> {
        if self.role_stack.iter().any(|r| r == name) {
            return Err(LocatedError::new(
                loc,
                format!(
                    "role dependency cycle: {} -> {name}",
                    self.role_stack.join(" -> ")
                ),
            ));
        }
        let path = self.find_role(name, loc)?;
        let defaults = inventory::load_vars_entry(&path.join("defaults"), "main")?;
        let vars = inventory::load_vars_entry(&path.join("vars"), "main")?;
        let role = Arc::new(Role {
            name: name.to_string(),
            path: path.clone(),
            defaults,
            vars,
            params,
            parent,
        });
        self.role_stack.push(name.to_string());
        let mut tasks = Vec::new();
        let mut handlers = Vec::new();
        let meta = find_yaml(&path.join("meta"), "main");
        if let Some(meta) = meta {
            let m = yaml::load_file(&meta)?;
            if let Some(deps) = m.get("dependencies")
                && !deps.is_null()
            {
                for d in deps.expect_seq("role dependencies")? {
                    let (dname, dparams, dtags, dwhen) = role_ref(d)?;
                    let (mut dt, dh) =
                        self.load_role(&dname, &d.loc, dparams, None, "main", Vec::new())?;
                    for t in &mut dt {
                        task::add_tags_deep(t, &dtags);
                        task::prepend_when_deep(t, &dwhen);
                    }
                    tasks.extend(dt);
                    handlers.extend(dh);
                }
            }
        }
        let scope = Arc::new(Scope {
            role: Some(role.clone()),
            vars: outer_vars,
            base_dir: path.join("tasks"),
        });
        match find_yaml(&path.join("tasks"), tasks_from) {
            Some(f) => {
                let node = yaml::load_file(&f)?;
                tasks.extend(self.parse_tasks(&node, &scope, false)?);
            }
            None if tasks_from != "main" => {
                return Err(LocatedError::new(
                    loc,
                    format!("role '{name}' has no tasks/{tasks_from}.yml"),
                ));
            }
            None => {}
        }
        if let Some(f) = find_yaml(&path.join("handlers"), "main") {
            let node = yaml::load_file(&f)?;
            let hscope = Arc::new(Scope {
                role: Some(role.clone()),
                vars: Vec::new(),
                base_dir: path.join("handlers"),
            });
            handlers.extend(self.parse_tasks(&node, &hscope, true)?);
        }
        self.role_stack.pop();
        Ok((tasks, handlers))
    }
}

fn find_yaml(dir: &Path, stem: &str) -> Option<PathBuf> {
    for cand in [
        format!("{stem}.yml"),
        format!("{stem}.yaml"),
        stem.to_string(),
    ] {
        let p = dir.join(&cand);
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

fn load_task_file(
    at: &Node,
    file: &str,
    scope: &Arc<Scope>,
    roles_dirs: &[PathBuf],
    role_stack: &[String],
    modules: &dyn ModuleCatalog,
) -> Result<Vec<Task>, LocatedError> {
    let mut cands = vec![scope.base_dir.join(file)];
    if let Some(role) = &scope.role {
        cands.push(role.path.join("tasks").join(file));
    }
    let path = cands.iter().find(|p| p.is_file()).ok_or_else(|| {
        LocatedError::new(
            &at.loc,
            format!(
                "task file '{file}' not found (looked at {})",
                cands
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    // A file that includes itself (directly or through others) would be
    // loaded forever: refused.
    thread_local! {
        static LOADING: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let canon = path.canonicalize().unwrap_or_else(|_| path.clone());
    if LOADING.with(|l| l.borrow().contains(&canon)) {
        return Err(LocatedError::new(
            &at.loc,
            format!(
                "task file '{file}' includes itself ({}): recursive includes are not supported yet by deployer",
                path.display()
            ),
        ));
    }
    let node = yaml::load_file(path)?;
    let inner = Arc::new(Scope {
        role: scope.role.clone(),
        vars: scope.vars.clone(),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    });
    let mut ctx = LoadCtx {
        roles_dirs: roles_dirs.to_vec(),
        role_stack: role_stack.to_vec(),
        modules,
    };
    LOADING.with(|l| l.borrow_mut().push(canon));
    let out = ctx.parse_tasks(&node, &inner, false);
    LOADING.with(|l| l.borrow_mut().pop());
    out
}

/// Extra vars from `-e key=value`, `-e '{"json": 1}'` and `-e @file.yml`.
pub fn parse_extra_vars(items: &[String]) -> Result<Vars, LocatedError> {
    let mut out = Vars::new();
    for item in items {
        let cli = Path::new("<command line -e>");
        if let Some(file) = item.strip_prefix('@') {
            for (k, v) in inventory::load_vars_file(Path::new(file))? {
                out.insert(k, v);
            }
        } else if item.trim_start().starts_with('{') {
            let node = yaml::parse_str(item, cli)?;
            register_extra_strings("", &node);
            for (k, v) in inventory::vars_from_map(&node, "extra vars")? {
                out.insert(k, v);
            }
        } else {
            let words = crate::shell::split(item).ok_or_else(|| {
                LocatedError::new(&Loc::file_only(cli), "unbalanced quotes in -e")
            })?;
            for w in words {
                let (k, v) = w.split_once('=').ok_or_else(|| {
                    LocatedError::new(
                        &Loc::file_only(cli),
                        format!(
                            "expected -e key=value, -e @file or -e '{{...}}', got a word without '=' ({} characters; not shown: -e values are treated as secrets)",
                            w.chars().count()
                        ),
                    )
                })?;
                crate::secrets::register_extra_value(k, v);
                out.insert(
                    k.to_string(),
                    Node {
                        value: Yaml::Str(v.to_string()),
                        loc: Loc::file_only(cli),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The string values of an inline `-e '{...}'` whose key (or an enclosing
/// key) names a secret, registered as secrets.
fn register_extra_strings(key: &str, node: &Node) {
    match &node.value {
        Yaml::Str(s) => crate::secrets::register_extra_value(key, s),
        Yaml::Seq(items) => items.iter().for_each(|i| register_extra_strings(key, i)),
        Yaml::Map(m) => m.iter().for_each(|(k, v)| {
            let name = k.as_str().unwrap_or_default();
            let key = if crate::secrets::key_names_a_secret(key) {
                key
            } else {
                name
            };
            register_extra_strings(key, v)
        }),
        _ => {}
    }
}

/// The tasks that run, in order: blocks and loaded includes opened up.
pub fn flatten_tasks(tasks: &[Task]) -> Vec<&Task> {
    fn walk<'a>(ts: &'a [Task], out: &mut Vec<&'a Task>) {
        for t in ts {
            match &t.kind {
                TaskKind::Block {
                    block,
                    rescue,
                    always,
                } => {
                    walk(block, out);
                    walk(rescue, out);
                    walk(always, out);
                }
                TaskKind::IncludeTasks {
                    tasks: Some(inner), ..
                } => walk(inner, out),
                _ => out.push(t),
            }
        }
    }
    let mut out = Vec::new();
    walk(tasks, &mut out);
    out
}
