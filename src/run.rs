//! The executor: hosts in parallel (forks), tasks in order per host, handlers
//! at the end of each play (or at `flush_handlers`) when notified by a change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::{IndexMap, IndexSet};
use minijinja::Environment;
use minijinja::value::Value;
use serde_json::{Value as Json, json};
use tokio::sync::Semaphore;

use crate::connection::{Become, Connection, SshTarget};
use crate::modules::observe::{Observations, Want};
use crate::modules::{self, ModuleCtx, ModuleResult, ReleaseSave, ReleaseStage};
use crate::project::{Inventory, Play, Playbook, Task, TaskKind, Vars};
use crate::report::{HostStats, Reporter, Status};
use crate::state::releases::Recorder;
use crate::vars::{VarContext, VarValue, VaultAccess, layer_from_vars};

// The deploy lock, audit log and pending handlers of a run: see run/session.rs.
pub mod rollback;
mod run_once;
mod session;
pub use session::{Interrupt, RunSession, SessionOutcome};

pub const OMIT: &str = crate::template::OMIT_PLACEHOLDER;

pub struct RunOptions {
    pub check: bool,
    pub diff: bool,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub limit: Option<String>,
    pub forks: usize,
    pub extra_vars: Vars,
    /// The project's id on hosts (`state::project_id`).
    pub project: String,
    /// `--keep-releases` (else the `deployer_keep_releases` variable, else 5).
    pub keep_releases: Option<usize>,
    /// Roll a host back when a deploy gate fails after changes (`--no-auto-rollback` clears it).
    pub auto_rollback: bool,
}

type Layer = IndexMap<String, VarValue>;

struct HostState {
    name: String,
    conn: Option<Arc<Connection>>,
    /// set_fact results and registered variables.
    runtime: Layer,
    facts: Option<Layer>,
    notified: IndexSet<String>,
    observed: Observations,
    failed: bool,
    ended: bool,
    /// Running notified handlers: as in Ansible, `--tags`/`--skip-tags` do not
    /// filter them (the task that notified was selected).
    in_handlers: bool,
    stats: HostStats,
    /// The deploy lock and pending handlers (run/session.rs).
    session: session::HostSession,
    /// This run's release on the host, and the deploy
    /// gate that failed on it, if any.
    release: Option<Arc<crate::state::releases::Recorder>>,
    gate_failure: Option<String>,
    changed_tasks: Vec<String>,
    /// How often this host has reached each `run_once` task (by address).
    run_once_reached: HashMap<usize, usize>,
}

impl HostState {
    fn new(name: &str) -> HostState {
        HostState {
            name: name.to_string(),
            conn: None,
            runtime: Layer::new(),
            facts: None,
            notified: IndexSet::new(),
            observed: Observations::default(),
            failed: false,
            ended: false,
            in_handlers: false,
            stats: HostStats::default(),
            session: Default::default(),
            release: None,
            gate_failure: None,
            changed_tasks: Vec::new(),
            run_once_reached: HashMap::new(),
        }
    }
}

pub struct Engine {
    pub inventory: Arc<Inventory>,
    pub opts: Arc<RunOptions>,
    pub env: Arc<Environment<'static>>,
    pub vault: Arc<VaultAccess>,
    pub reporter: Arc<Reporter>,
    pub playbook_dir: PathBuf,
    /// Deploy lock, pending handlers, audit; `None`: no host state.
    pub session: Option<Arc<RunSession>>,
}

#[derive(Debug)]
pub struct Outcome {
    pub stats: Vec<(String, HostStats)>,
    pub changed: bool,
    pub failed: bool,
    /// Lock refusals, interruption, audit entries.
    pub session: SessionOutcome,
}

impl Engine {
    pub async fn run(&self, pb: &Playbook) -> Outcome {
        let mut states: IndexMap<String, HostState> = IndexMap::new();
        let release_id = crate::state::releases::new_release_id();
        // Every host's deploy lock before any change (refused: nothing ran).
        if let Some(s) = &self.session
            && let Some(refused) = self.begin_session(s, pb, &mut states).await
        {
            return refused;
        }
        for play in &pb.plays {
            if self.interrupted() {
                break;
            }
            let mut hosts = match self.inventory.select(&play.hosts) {
                Ok(h) => h,
                Err(e) => {
                    self.reporter.warning(&format!("{}: {e}", play.loc));
                    continue;
                }
            };
            if let Some(limit) = &self.opts.limit {
                match self.inventory.select(limit) {
                    Ok(allowed) => hosts.retain(|h| allowed.contains(h)),
                    Err(e) => self.reporter.warning(&e),
                }
            }
            let matched = !hosts.is_empty();
            hosts.retain(|h| !states.get(h).is_some_and(|s| s.failed));
            if hosts.is_empty() {
                // Hosts that failed or were unreachable are in the recap;
                // "no hosts matched" is only for a pattern that matched none.
                if !matched {
                    self.reporter.warning(&format!(
                        "play '{}': no hosts matched '{}'",
                        play.name, play.hosts
                    ));
                }
                continue;
            }
            self.reporter.play_start(&play.name, &hosts);
            let sem = Arc::new(Semaphore::new(self.opts.forks.max(1)));
            let run_once = run_once::RunOnce::new(&hosts);
            let mut futures = Vec::new();
            for h in &hosts {
                let state = states.shift_remove(h).unwrap_or_else(|| HostState::new(h));
                let sem = sem.clone();
                let run_once = &run_once;
                let release_id = &release_id;
                futures.push(async move {
                    let _permit = sem.acquire().await;
                    let mut state = state;
                    state.ended = false;
                    self.run_play_on_host(play, &mut state, run_once, release_id)
                        .await;
                    run_once.finished(&state.name);
                    state
                });
            }
            for s in futures::future::join_all(futures).await {
                states.insert(s.name.clone(), s);
            }
        }
        // Record each changed host's release, then roll
        // back the hosts whose deploy gate failed.
        futures::future::join_all(states.values_mut().map(|s| self.finish_release(s))).await;
        // Pending handlers, audit line, lock release.
        let session = match &self.session {
            Some(s) => self.end_session(s, &mut states).await,
            None => SessionOutcome::default(),
        };
        self.finish(&mut states, session).await
    }

    /// Recap counts, connections closed.
    async fn finish(
        &self,
        states: &mut IndexMap<String, HostState>,
        session: SessionOutcome,
    ) -> Outcome {
        let states = std::mem::take(states);
        let mut stats = Vec::new();
        let mut changed = false;
        let mut failed = false;
        let mut to_close = Vec::new();
        for (name, s) in states {
            let mut st = s.stats.clone();
            st.remote_executions = s.conn.as_ref().map(|c| c.executions()).unwrap_or(0);
            changed |= st.changed > 0;
            failed |= st.failed > 0 || st.unreachable > 0;
            stats.push((name, st));
            if let Some(c) = s.conn
                && let Ok(c) = Arc::try_unwrap(c)
            {
                to_close.push(c);
            }
        }
        Connection::close_all(to_close).await;
        Outcome {
            stats,
            changed,
            failed: failed || !session.refused.is_empty() || session.interrupted,
            session,
        }
    }

    async fn run_play_on_host(
        &self,
        play: &Play,
        st: &mut HostState,
        run_once: &run_once::RunOnce,
        release_id: &str,
    ) {
        let play_layers = match self.play_layers(play) {
            Ok(l) => l,
            Err(e) => {
                self.fail_host(st, &play.name, &play.loc.to_string(), &e);
                return;
            }
        };
        if st.conn.is_none() {
            match self.connect(&st.name, play, &play_layers).await {
                Ok(c) => st.conn = Some(Arc::new(c)),
                Err(e) => {
                    st.stats.unreachable += 1;
                    st.failed = true;
                    self.reporter.task_result(
                        &st.name,
                        "connect",
                        &play.loc.to_string(),
                        Status::Unreachable,
                        Some(&e),
                        &[],
                        None,
                    );
                    return;
                }
            }
        }
        if play.gather_facts
            && st.facts.is_none()
            && let Err(e) = self.gather_facts(play, st, &play_layers).await
        {
            self.fail_host(st, "Gathering Facts", &play.loc.to_string(), &e);
            return;
        }
        if st.release.is_none() && !self.opts.check {
            st.release = self.new_recorder(&st.name, release_id, "apply");
        }
        // One round trip for the state of every file the play will look at.
        self.prefetch(play, st, &play_layers).await;
        self.restore_pending(play, st); // handlers a failed run left notified
        let ctx = PlayCtx {
            play,
            layers: &play_layers,
            run_once,
        };
        self.run_tasks(&ctx, &play.tasks, st).await;
        if !st.failed {
            self.flush_handlers(&ctx, st).await;
        }
        if st.gate_failure.is_some() {
            // A failed deploy gate: roll back now, not after the other hosts' plays.
            self.finish_release(st).await;
        }
    }

    fn fail_host(&self, st: &mut HostState, task: &str, loc: &str, msg: &str) {
        st.failed = true;
        st.stats.failed += 1;
        self.reporter
            .task_result(&st.name, task, loc, Status::Failed, Some(msg), &[], None);
    }

    /// Layers that do not change during a play: play vars and vars_files.
    fn play_layers(&self, play: &Play) -> Result<PlayLayers, String> {
        let vars = layer_from_vars(&play.vars);
        // Every role the play uses exposes its defaults and vars to the whole
        // play, as Ansible does (private_role_vars off): a role sees the
        // defaults of the roles it depends on.
        let mut role_defaults = Layer::new();
        let mut role_vars = Layer::new();
        let mut seen: Vec<*const crate::project::Role> = Vec::new();
        let mut all = crate::project::flatten_tasks(&play.tasks);
        all.extend(crate::project::flatten_tasks(&play.handlers));
        for t in all {
            let Some(role) = &t.scope.role else { continue };
            for r in role.chain().iter().rev() {
                let ptr = Arc::as_ptr(r);
                if seen.contains(&ptr) {
                    continue;
                }
                seen.push(ptr);
                role_defaults.extend(layer_from_vars(&r.defaults));
                role_vars.extend(layer_from_vars(&r.vars));
            }
        }
        let mut files = Layer::new();
        for (f, loc) in &play.vars_files {
            if f.contains("{{") {
                return Err(format!(
                    "{loc}: templated vars_files paths are not supported yet"
                ));
            }
            let path = play.base_dir.join(f);
            let loaded =
                crate::project::inventory::load_vars_file(&path).map_err(|e| e.to_string())?;
            for (k, v) in loaded {
                files.insert(k, VarValue::Node(v));
            }
        }
        Ok(PlayLayers {
            vars,
            files,
            role_defaults,
            role_vars,
        })
    }

    fn context(
        &self,
        play: &Play,
        pl: &PlayLayers,
        st: &HostState,
        task: Option<&Task>,
    ) -> Arc<VarContext> {
        let mut layers: Vec<Layer> = vec![pl.role_defaults.clone()];
        let role_chain = task
            .and_then(|t| t.scope.role.as_ref())
            .map(|r| r.chain())
            .unwrap_or_default();
        // The task's own role (and the roles that pulled it in) win over others'.
        for r in role_chain.iter().rev() {
            layers.push(layer_from_vars(&r.defaults));
        }
        for g in self.inventory.host_groups(&st.name) {
            if let Some(group) = self.inventory.groups.get(&g) {
                layers.push(layer_from_vars(&group.vars));
            }
        }
        if let Some(h) = self.inventory.hosts.get(&st.name) {
            layers.push(layer_from_vars(&h.vars));
        }
        if let Some(f) = &st.facts {
            layers.push(f.clone());
        }
        layers.push(self.magic_vars(play, st, task));
        layers.push(pl.vars.clone());
        layers.push(pl.files.clone());
        layers.push(pl.role_vars.clone());
        for r in role_chain.iter().rev() {
            layers.push(layer_from_vars(&r.vars));
        }
        if let Some(t) = task {
            for v in &t.scope.vars {
                layers.push(layer_from_vars(v));
            }
            layers.push(layer_from_vars(&t.vars));
        }
        layers.push(st.runtime.clone());
        for r in role_chain.iter().rev() {
            layers.push(layer_from_vars(&r.params));
        }
        layers.push(layer_from_vars(&self.opts.extra_vars));
        VarContext::new(layers, self.env.clone(), self.vault.clone())
    }

    fn magic_vars(&self, play: &Play, st: &HostState, task: Option<&Task>) -> Layer {
        let mut m = Layer::new();
        let v = |x: Json| VarValue::Value(crate::vars::json_to_value(&x));
        let groups: serde_json::Map<String, Json> = self
            .inventory
            .groups
            .keys()
            .map(|g| (g.clone(), json!(self.inventory.group_hosts(g))))
            .collect();
        let group_names: Vec<String> = self
            .inventory
            .host_groups(&st.name)
            .into_iter()
            .filter(|g| g != "all" && g != "ungrouped")
            .collect();
        m.insert("inventory_hostname".into(), v(json!(st.name)));
        m.insert(
            "inventory_hostname_short".into(),
            v(json!(st.name.split('.').next().unwrap_or(&st.name))),
        );
        m.insert("groups".into(), v(Json::Object(groups)));
        m.insert("group_names".into(), v(json!(group_names)));
        m.insert(
            "playbook_dir".into(),
            v(json!(self.playbook_dir.display().to_string())),
        );
        m.insert("ansible_check_mode".into(), v(json!(self.opts.check)));
        m.insert("ansible_diff_mode".into(), v(json!(self.opts.diff)));
        m.insert("ansible_play_name".into(), v(json!(play.name)));
        if let Some(role) = task.and_then(|t| t.scope.role.as_ref()) {
            m.insert("role_name".into(), v(json!(role.name)));
            m.insert(
                "role_path".into(),
                v(json!(role.path.display().to_string())),
            );
        }
        m
    }

    async fn connect(
        &self,
        host: &str,
        play: &Play,
        pl: &PlayLayers,
    ) -> Result<Connection, String> {
        let st = HostState::new(host);
        let ctx = self.context(play, pl, &st, None);
        let get = |k: &str| -> Result<Option<String>, String> {
            match ctx.lookup(k) {
                Some(v) if !v.is_undefined() && !v.is_none() => Ok(Some(v.to_string())),
                // A name defined nowhere is simply absent (a whole-file vault
                // that cannot be opened is no reason to fail here).
                _ => match (ctx.take_error(), ctx.names().iter().any(|n| n == k)) {
                    (Some(e), true) => Err(e),
                    _ => Ok(None),
                },
            }
        };
        if get("ansible_connection")?.as_deref() == Some("local") {
            return Ok(Connection::local(host));
        }
        let addr = get("ansible_host")?.unwrap_or_else(|| host.to_string());
        let port = match get("ansible_port")?.or(get("ansible_ssh_port")?) {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("ansible_port '{p}' is not a port number"))?,
            ),
            None => None,
        };
        let mut target = SshTarget {
            host: addr,
            port,
            user: get("ansible_user")?.or(get("ansible_ssh_user")?),
            key_file: get("ansible_ssh_private_key_file")?.map(|p| expand_home(&p)),
            known_hosts_file: None,
            config_file: None,
            strict_host_key_checking: openssh::KnownHosts::Strict,
        };
        if let Some(args) = get("ansible_ssh_common_args")? {
            apply_ssh_args(&mut target, &args)?;
        }
        if let Some(args) = get("ansible_ssh_extra_args")? {
            apply_ssh_args(&mut target, &args)?;
        }
        Connection::connect(host, &target)
            .await
            .map_err(|e| crate::secrets::mask(&e.to_string()))
    }

    fn become_for(
        &self,
        play: &Play,
        task: Option<&Task>,
        ctx: &Arc<VarContext>,
    ) -> Result<Option<Become>, String> {
        // A value that is not a boolean is an error, as in Ansible ("could
        // not be converted to 'bool'"), never a silent fallback to the play.
        let var_bool = |k: &str| -> Result<Option<bool>, String> {
            let Some(v) = ctx.lookup(k).filter(|v| !v.is_undefined() && !v.is_none()) else {
                return Ok(None);
            };
            let j = crate::vars::value_to_json(&v).unwrap_or(Json::Null);
            crate::args::parse_bool(&j)
                .map(Some)
                .ok_or_else(|| format!("{k}: the value {j} could not be converted to a boolean"))
        };
        let looked_up = var_bool("ansible_become");
        let _ = ctx.take_error();
        // A task's `become` wins; then the `ansible_become` variable; then the play's.
        let on = match task.and_then(|t| t.use_become) {
            Some(b) => b,
            None => looked_up?.unwrap_or(play.use_become),
        };
        if !on {
            return Ok(None);
        }
        let user = task
            .and_then(|t| t.become_user.clone())
            .or_else(|| play.become_user.clone())
            .or_else(|| {
                ctx.lookup("ansible_become_user")
                    .filter(|v| !v.is_undefined())
                    .map(|v| v.to_string())
            })
            .unwrap_or_else(|| "root".into());
        let user = ctx.render_string(&user)?;
        let password = ctx
            .lookup("ansible_become_password")
            .or_else(|| ctx.lookup("ansible_become_pass"))
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map(|v| v.to_string());
        let _ = ctx.take_error();
        Ok(Some(Become { user, password }))
    }

    async fn gather_facts(
        &self,
        play: &Play,
        st: &mut HostState,
        pl: &PlayLayers,
    ) -> Result<(), String> {
        let ctx = self.context(play, pl, st, None);
        let b = self.become_for(play, None, &ctx)?;
        let conn = st.conn.clone().ok_or("not connected")?;
        let script = FACTS_SCRIPT;
        let out = conn
            .run_script(script, b.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        if out.rc != 0 {
            return Err(format!(
                "gathering facts failed: {}",
                out.stderr_str().trim()
            ));
        }
        st.facts = Some(facts_layer(&out.stdout_str()));
        Ok(())
    }

    async fn prefetch(&self, play: &Play, st: &mut HostState, pl: &PlayLayers) {
        let mut reqs: Vec<(String, Want)> = Vec::new();
        let tasks = crate::project::flatten_tasks(&play.tasks);
        let handlers = crate::project::flatten_tasks(&play.handlers);
        let selected = tasks.into_iter().filter(|t| self.selected(t));
        for t in selected.chain(handlers) {
            let TaskKind::Module { name, args } = &t.kind else {
                continue;
            };
            let keys = match modules::registry::find(name) {
                Some(m) if !m.prefetch().is_empty() => m.prefetch(),
                _ => continue,
            };
            let ctx = self.context(play, pl, st, Some(t));
            let items: Vec<Option<Value>> = match &t.loop_items {
                None => vec![None],
                Some(l) => match ctx.resolve_node(l) {
                    Ok(v) => match v.try_iter() {
                        Ok(it) => it.map(Some).collect(),
                        Err(_) => continue,
                    },
                    Err(_) => continue,
                },
            };
            for item in items {
                let c = match item {
                    None => ctx.clone(),
                    Some(i) => {
                        let mut l = Layer::new();
                        l.insert(t.loop_var.clone(), VarValue::Value(i));
                        ctx.extended(l)
                    }
                };
                for (k, want) in keys {
                    if let Some(node) = args.get(k)
                        && let Ok(v) = c.resolve_node(node)
                        && let Some(p) = v.as_str()
                        && p.starts_with('/')
                        && !p.ends_with('/')
                        && !p.contains(['*', '?'])
                    {
                        reqs.push((p.to_string(), *want));
                    }
                    let _ = c.take_error();
                }
            }
        }
        if reqs.is_empty() {
            return;
        }
        let ctx = self.context(play, pl, st, None);
        let Ok(b) = self.become_for(play, None, &ctx) else {
            return;
        };
        let b = b.or_else(|| {
            // Observe as root when any task of the play becomes root.
            crate::project::flatten_tasks(&play.tasks)
                .iter()
                .any(|t| t.use_become == Some(true))
                .then(|| Become {
                    user: "root".into(),
                    password: None,
                })
        });
        if let Some(conn) = st.conn.clone() {
            // A failed prefetch only costs speed: modules observe on demand.
            let _ = st.observed.fetch(&conn, b.as_ref(), &reqs).await;
        }
    }

    /// Tag selection with Ansible's rules: `always` runs unless skipped by name,
    /// `never` runs only when asked for by one of its other tags.
    fn selected(&self, t: &Task) -> bool {
        let tags = &t.tags;
        let has = |x: &str| tags.iter().any(|t| t == x);
        if self.opts.skip_tags.iter().any(|s| {
            has(s) || (s == "tagged" && !tags.is_empty()) || (s == "untagged" && tags.is_empty())
        }) {
            return false;
        }
        if has("always") && !self.opts.skip_tags.iter().any(|s| s == "always") {
            return true;
        }
        if self.opts.tags.is_empty() || self.opts.tags.iter().any(|x| x == "all") {
            return !has("never");
        }
        self.opts.tags.iter().any(|s| {
            (s != "never" && has(s))
                || (s == "never" && has("never"))
                || (s == "tagged" && !tags.is_empty())
                || (s == "untagged" && tags.is_empty())
        })
    }

    fn run_tasks<'a>(
        &'a self,
        ctx: &'a PlayCtx<'a>,
        tasks: &'a [Task],
        st: &'a mut HostState,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            for t in tasks {
                if self.interrupted() {
                    st.failed = true;
                }
                if st.failed || st.ended {
                    return;
                }
                self.run_task(ctx, t, st).await;
            }
        })
    }

    async fn run_task(&self, pc: &PlayCtx<'_>, t: &Task, st: &mut HostState) {
        let loc = t.loc.to_string();
        match &t.kind {
            TaskKind::Block {
                block,
                rescue,
                always,
            } => {
                self.run_tasks(pc, block, st).await;
                if st.failed && !rescue.is_empty() {
                    st.failed = false;
                    st.stats.failed = st.stats.failed.saturating_sub(1);
                    st.stats.rescued += 1;
                    self.run_tasks(pc, rescue, st).await;
                }
                if !always.is_empty() {
                    let was_failed = st.failed;
                    st.failed = false;
                    self.run_tasks(pc, always, st).await;
                    st.failed |= was_failed;
                }
                return;
            }
            TaskKind::FlushHandlers => {
                self.flush_handlers(pc, st).await;
                return;
            }
            TaskKind::MetaNoop => return,
            TaskKind::ClearFacts => {
                let ctx = self.context(pc.play, pc.layers, st, Some(t));
                match self.conditions_hold(&ctx, &t.when) {
                    // Gathered facts only: set_fact values stay, as in Ansible.
                    Ok(true) => st.facts = None,
                    Ok(false) => {}
                    Err(e) => self.fail_host(st, &t.display_name(), &loc, &e),
                }
                return;
            }
            TaskKind::EndHost | TaskKind::EndPlay => {
                let ctx = self.context(pc.play, pc.layers, st, Some(t));
                match self.conditions_hold(&ctx, &t.when) {
                    Ok(true) => st.ended = true,
                    Ok(false) => {}
                    Err(e) => self.fail_host(st, &t.display_name(), &loc, &e),
                }
                return;
            }
            TaskKind::IncludeTasks { file, tasks } => {
                if !st.in_handlers && !self.selected(t) {
                    return;
                }
                let Some(inner) = tasks else {
                    return self.fail_host(st, &t.display_name(), &loc, &format!("include_tasks with a templated file name ('{file}') is not supported yet by deployer"));
                };
                let ctx = self.context(pc.play, pc.layers, st, Some(t));
                let items = match self.loop_items(&ctx, t) {
                    Ok(items) => items,
                    Err(e) => return self.fail_host(st, &t.display_name(), &loc, &e),
                };
                // As Ansible: without a loop the include runs once; with one,
                // once per item (its `when` evaluated per item), the loop
                // variables visible to the included tasks.
                let runs: Vec<Option<usize>> = match &items {
                    None => vec![None],
                    Some(list) => (0..list.len()).map(Some).collect(),
                };
                for run in runs {
                    let layer = match (run, &items) {
                        (Some(i), Some(list)) => {
                            if i > 0 {
                                self.loop_pause(t).await;
                            }
                            loop_layer(t, i, list)
                        }
                        _ => Layer::new(),
                    };
                    let c = ctx.extended(layer.clone());
                    match self.conditions_hold(&c, &t.when) {
                        Ok(true) => {}
                        Ok(false) => {
                            st.stats.skipped += 1;
                            self.reporter.task_result(
                                &st.name,
                                &t.display_name(),
                                &loc,
                                Status::Skipped,
                                None,
                                &[],
                                None,
                            );
                            continue;
                        }
                        Err(e) => return self.fail_host(st, &t.display_name(), &loc, &e),
                    }
                    // The loop variables live as long as the included tasks run.
                    let saved: Vec<(String, Option<VarValue>)> = layer
                        .into_iter()
                        .map(|(k, v)| {
                            let old = st.runtime.insert(k.clone(), v);
                            (k, old)
                        })
                        .collect();
                    self.run_tasks(pc, inner, st).await;
                    for (k, old) in saved {
                        match old {
                            Some(v) => {
                                st.runtime.insert(k, v);
                            }
                            None => {
                                st.runtime.shift_remove(&k);
                            }
                        }
                    }
                    if st.failed || st.ended {
                        break;
                    }
                }
                return;
            }
            TaskKind::Module { .. } => {}
        }
        if !st.in_handlers && !self.selected(t) {
            return;
        }
        if t.run_once {
            self.run_task_once(pc, t, st).await;
            return;
        }
        self.run_module_task(pc, t, st).await;
    }

    /// The items of a task's `loop`, or None without one.
    fn loop_items(&self, ctx: &Arc<VarContext>, t: &Task) -> Result<Option<Vec<Value>>, String> {
        let Some(l) = &t.loop_items else {
            return Ok(None);
        };
        let v = ctx.resolve_node(l)?;
        if v.is_none() || v.is_undefined() {
            return Ok(Some(Vec::new()));
        }
        match v.try_iter() {
            Ok(it) if v.as_str().is_none() => Ok(Some(it.collect())),
            _ => Err(format!("loop: expected a list, got {v}")),
        }
    }

    /// `loop_control.pause`: the wait before every item but the first.
    async fn loop_pause(&self, t: &Task) {
        if let Some(p) = t.loop_pause.filter(|p| *p > 0.0) {
            let _ = self
                .until_interrupted(async {
                    tokio::time::sleep(std::time::Duration::from_secs_f64(p)).await;
                    Ok(())
                })
                .await;
        }
    }

    fn conditions_hold(&self, ctx: &Arc<VarContext>, when: &[String]) -> Result<bool, String> {
        for w in when {
            if !ctx.condition(w)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs one module task (with its loop) and returns what it left on the
    /// host: its registered value, the variables it set, whether it failed.
    async fn run_module_task(
        &self,
        pc: &PlayCtx<'_>,
        t: &Task,
        st: &mut HostState,
    ) -> run_once::Shared {
        let failed = |registered| run_once::Shared {
            registered,
            facts: Vec::new(),
            failed: true,
        };
        let loc = t.loc.to_string();
        let name = t.display_name();
        let TaskKind::Module { name: module, args } = &t.kind else {
            return run_once::Shared {
                registered: Json::Null,
                facts: Vec::new(),
                failed: false,
            };
        };
        let base_ctx = self.context(pc.play, pc.layers, st, Some(t));
        let display_name = base_ctx
            .render_string(&name)
            .unwrap_or_else(|_| name.clone());
        let items = match self.loop_items(&base_ctx, t) {
            Ok(items) => items,
            Err(e) => {
                self.fail_host(st, &display_name, &loc, &e);
                return failed(Json::Null);
            }
        };
        let mut results = Vec::new();
        let mut last_msg: Option<String> = None;
        let mut any_changed = false;
        let mut any_failed = false;
        let mut all_skipped = true;
        let mut facts = Vec::new();
        let runs: Vec<Option<(usize, Value)>> = match &items {
            None => vec![None],
            Some(list) => list.iter().cloned().enumerate().map(Some).collect(),
        };
        let looped = items.is_some();
        for run in runs {
            let (ctx, label) = match &run {
                None => (base_ctx.clone(), None),
                Some((i, item)) => {
                    if *i > 0 {
                        self.loop_pause(t).await;
                    }
                    let c =
                        base_ctx.extended(loop_layer(t, *i, items.as_deref().unwrap_or_default()));
                    let label = match &t.loop_label {
                        Some(lbl) => c.render_string(lbl).unwrap_or_else(|_| lbl.clone()),
                        None => py_repr(item),
                    };
                    (c, Some(label))
                }
            };
            let (status, res) = self.run_once_item(pc, t, module, args, &ctx, st).await;
            let mut rj = res.to_json();
            if let (Some((_, item)), Some(m)) = (&run, rj.as_object_mut()) {
                m.insert(
                    t.loop_var.clone(),
                    crate::vars::value_to_json(item).unwrap_or(Json::Null),
                );
                m.insert("ansible_loop_var".into(), json!(t.loop_var));
            }
            let shown_msg = if t.no_log {
                Some("the output has been hidden due to the fact that 'no_log: true' was specified for this result".to_string())
            } else {
                res.msg.clone()
            };
            // The task's `diff` (its own, or its block's) wins over --diff both
            // ways, as in Ansible: `diff: false` hides what a module computed
            // anyway (containers, networks), `diff: true` shows it without --diff.
            let show_diff = t.diff.unwrap_or(self.opts.diff);
            let diffs = if t.no_log || !show_diff {
                Vec::new()
            } else {
                res.diffs.clone()
            };
            self.reporter.task_result_diff(
                &st.name,
                &display_name,
                &loc,
                status,
                shown_msg.as_deref(),
                &diffs,
                label.as_deref(),
                show_diff,
            );
            if !t.no_log
                && matches!(status, Status::Changed | Status::Ok)
                && let Some(images) = res.data.get("images")
            {
                self.reporter.images(&st.name, &display_name, &loc, images);
            }
            match status {
                Status::Changed => any_changed = true,
                Status::Failed => {
                    any_failed = true;
                    last_msg = shown_msg.clone();
                }
                _ => {}
            }
            if status != Status::Skipped {
                all_skipped = false;
            }
            if status == Status::Changed || status == Status::Ok {
                for (k, v) in &res.facts {
                    st.runtime
                        .insert(k.clone(), VarValue::Value(crate::vars::json_to_value(v)));
                    facts.push((k.clone(), v.clone()));
                }
            }
            results.push(rj);
            if any_failed && !t.ignore_errors && !looped {
                break;
            }
        }
        let registered = if looped {
            json!({
                "results": results, "changed": any_changed, "failed": any_failed,
                "skipped": all_skipped && !results.is_empty(),
                "msg": if any_failed { "One or more items failed" } else { "All items completed" },
            })
        } else {
            results.into_iter().next().unwrap_or(Json::Null)
        };
        if let Some(r) = &t.register {
            st.runtime.insert(
                r.clone(),
                VarValue::Value(crate::vars::json_to_value(&registered)),
            );
        }
        // Count once per task, as Ansible's recap does.
        if any_failed {
            if t.ignore_errors {
                st.stats.ignored += 1;
            } else {
                st.failed = true;
                st.stats.failed += 1;
                // A failed deploy gate.
                if st.gate_failure.is_none() && is_deploy_gate(t, module, args, &base_ctx) {
                    st.gate_failure =
                        Some(format!("{display_name}: {}", last_msg.unwrap_or_default()));
                }
            }
        } else if any_changed {
            st.changed_tasks.push(display_name.clone());
            st.stats.changed += 1;
            st.stats.ok += 1;
            for n in &t.notify {
                let n = base_ctx.render_string(n).unwrap_or_else(|_| n.clone());
                st.notified.insert(n);
            }
        } else if all_skipped {
            st.stats.skipped += 1;
        } else {
            st.stats.ok += 1;
        }
        run_once::Shared {
            registered,
            facts,
            failed: any_failed && !t.ignore_errors,
        }
    }

    /// A `run_once` task: the play's first host runs it (see run/run_once.rs),
    /// the others wait for it and take its registered value, its variables
    /// and its failure, as Ansible does; only the host that ran it reports
    /// and counts it, and only its handlers are notified.
    async fn run_task_once(&self, pc: &PlayCtx<'_>, t: &Task, st: &mut HostState) {
        let addr = t as *const Task as usize;
        let reached = st.run_once_reached.entry(addr).or_insert(0);
        let key = (addr, *reached);
        *reached += 1;
        let turn = self
            .until_interrupted(async { Ok(pc.run_once.reach(&st.name, key).await) })
            .await;
        let shared = match turn {
            Ok(run_once::Turn::Run(runner)) => {
                let result = self.run_module_task(pc, t, st).await;
                runner.finish(result);
                return;
            }
            Ok(run_once::Turn::Take(shared)) => shared,
            Err(e) => {
                return self.fail_host(st, &t.display_name(), &t.loc.to_string(), &e);
            }
        };
        if let Some(r) = &t.register {
            st.runtime.insert(
                r.clone(),
                VarValue::Value(crate::vars::json_to_value(&shared.registered)),
            );
        }
        for (k, v) in &shared.facts {
            st.runtime
                .insert(k.clone(), VarValue::Value(crate::vars::json_to_value(v)));
        }
        if shared.failed {
            // Ansible marks every host failed; only the runner counts the failure.
            st.failed = true;
        }
    }

    async fn run_once_item(
        &self,
        pc: &PlayCtx<'_>,
        t: &Task,
        module: &str,
        args: &crate::yaml::Node,
        ctx: &Arc<VarContext>,
        st: &mut HostState,
    ) -> (Status, ModuleResult) {
        match self.conditions_hold(ctx, &t.when) {
            Ok(true) => {}
            Ok(false) => {
                let mut r = ModuleResult::ok();
                r.skipped = true;
                r.data
                    .insert("skip_reason".into(), json!("Conditional result was False"));
                return (Status::Skipped, r);
            }
            Err(e) => return (Status::Failed, ModuleResult::failed(e)),
        }
        let rendered = match ctx.resolve_node(args) {
            Ok(v) => v,
            Err(e) => return (Status::Failed, ModuleResult::failed(e)),
        };
        let mut json_args = match crate::vars::value_to_json(&rendered) {
            Ok(j) => j,
            Err(e) => return (Status::Failed, ModuleResult::failed(e)),
        };
        if let Some(m) = json_args.as_object_mut() {
            m.retain(|_, v| v.as_str() != Some(OMIT));
        }
        let become_ = match self.become_for(pc.play, Some(t), ctx) {
            Ok(b) => b,
            Err(e) => return (Status::Failed, ModuleResult::failed(e)),
        };
        let local;
        let conn: &Connection = if t.delegate_to.is_some() {
            local = Connection::local("localhost");
            &local
        } else {
            match &st.conn {
                Some(c) => c,
                None => return (Status::Unreachable, ModuleResult::failed("not connected")),
            }
        };
        let check = t.check_mode.unwrap_or(self.opts.check);
        let mut local_obs = Observations::default();
        let observed = if t.delegate_to.is_some() {
            &mut local_obs
        } else {
            &mut st.observed
        };
        let mut mctx = ModuleCtx {
            conn,
            become_: if t.delegate_to.is_some() {
                None
            } else {
                become_
            },
            check,
            diff: t.diff.unwrap_or(self.opts.diff),
            observed,
            vars: ctx,
            task: t,
            playbook_dir: &self.playbook_dir,
            release: if t.delegate_to.is_some() {
                None
            } else {
                st.release.as_deref().map(|r| r as &dyn ReleaseStage)
            },
            saved: Vec::new(),
        };
        let outcome = self
            .until_interrupted(modules::run(module, json_args, &mut mctx))
            .await;
        // What the module saved counts even when it failed or was interrupted.
        if let Some(rec) = mctx.release.and(st.release.as_deref()) {
            record_saved(rec, &t.display_name(), std::mem::take(&mut mctx.saved));
        }
        let mut res = match outcome {
            Ok(r) => r,
            Err(e) => ModuleResult::failed(e),
        };
        if let Some(cw) = &t.changed_when {
            match self.eval_with_result(ctx, t, &res, cw) {
                Ok(v) => res.changed = v,
                Err(e) => res = ModuleResult::failed(e),
            }
        }
        if let Some(fw) = &t.failed_when {
            match self.eval_with_result(ctx, t, &res, fw) {
                Ok(v) => {
                    res.failed = v;
                    if v && res.msg.is_none() {
                        res.msg = Some("failed_when condition was true".into());
                    }
                }
                Err(e) => res = ModuleResult::failed(e),
            }
        }
        let status = if res.failed {
            Status::Failed
        } else if res.skipped {
            Status::Skipped
        } else if res.changed {
            Status::Changed
        } else {
            Status::Ok
        };
        (status, res)
    }

    /// `changed_when`/`failed_when` see the task's result under its register name.
    fn eval_with_result(
        &self,
        ctx: &Arc<VarContext>,
        t: &Task,
        res: &ModuleResult,
        conds: &[String],
    ) -> Result<bool, String> {
        // As in Ansible, only the registered name is added (not the result's keys).
        let c = match &t.register {
            Some(r) => {
                let mut layer = Layer::new();
                layer.insert(
                    r.clone(),
                    VarValue::Value(crate::vars::json_to_value(&res.to_json())),
                );
                ctx.extended(layer)
            }
            None => ctx.clone(),
        };
        for cond in conds {
            if !c.condition(cond)? {
                return Ok(false);
            }
        }
        Ok(!conds.is_empty())
    }

    fn flush_handlers<'a>(
        &'a self,
        pc: &'a PlayCtx<'a>,
        st: &'a mut HostState,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(self.flush_handlers_inner(pc, st))
    }

    async fn flush_handlers_inner(&self, pc: &PlayCtx<'_>, st: &mut HostState) {
        loop {
            if st.notified.is_empty() || st.failed {
                return;
            }
            let notified = std::mem::take(&mut st.notified);
            let mut ran_any = false;
            for (i, h) in pc.play.handlers.iter().enumerate() {
                let hit = h.name.as_deref().is_some_and(|n| notified.contains(n))
                    || h.listen.iter().any(|l| notified.contains(l));
                if hit {
                    ran_any = true;
                    let outer = std::mem::replace(&mut st.in_handlers, true);
                    self.run_task(pc, h, st).await;
                    st.in_handlers = outer;
                    if st.failed {
                        // Pending handlers: what this and the later handlers answer
                        // stays pending (saved for the next apply).
                        for later in &pc.play.handlers[i..] {
                            for n in later.name.iter().chain(later.listen.iter()) {
                                if notified.contains(n) {
                                    st.notified.insert(n.clone());
                                }
                            }
                        }
                        return;
                    }
                }
            }
            if !ran_any {
                return;
            }
        }
    }
}

// ---- Releases, rollback and deploy gates -------------------------------------

/// A deploy gate: a `docker_compose_v2` task with `wait: true` (its services
/// must become healthy), or a `uri`/`wait_for` task whose vars set
/// `deployer_gate: true`. A task var, not a tag: Ansible accepts and ignores
/// it, and `--tags`/`--skip-tags` cannot deselect a gate by accident.
fn is_deploy_gate(t: &Task, module: &str, args: &crate::yaml::Node, ctx: &Arc<VarContext>) -> bool {
    let truthy = |n: &crate::yaml::Node| {
        let v = ctx
            .resolve_node(n)
            .ok()
            .and_then(|v| crate::vars::value_to_json(&v).ok())
            .unwrap_or(Json::Null);
        crate::args::parse_bool(&v).unwrap_or(false)
    };
    match module {
        "docker_compose_v2" => args.get("wait").is_some_and(truthy),
        "uri" | "wait_for" => t.vars.get("deployer_gate").is_some_and(truthy),
        _ => false,
    }
}

impl Engine {
    /// A play-less context for `host`: inventory, extra and magic vars only,
    /// so `apply` and `rollback` read the same host-level settings.
    pub fn host_context(&self, host: &str) -> Result<(Play, Arc<VarContext>), String> {
        let play = Play::empty(
            "releases",
            crate::yaml::Loc::new(Path::new("<releases>"), 0, 0),
            host,
            self.playbook_dir.clone(),
        );
        let pl = self.play_layers(&play)?;
        let ctx = self.context(&play, &pl, &HostState::new(host), None);
        Ok((play, ctx))
    }

    /// Where `host` keeps its release state, and how many releases it keeps;
    /// None when the host opts out (`deployer_releases: false`).
    pub fn state_location(
        &self,
        host: &str,
    ) -> Option<(crate::state::releases::StateLocation, usize)> {
        let (_, ctx) = self.host_context(host).ok()?;
        let get = |k: &str| {
            let v = ctx
                .lookup(k)
                .filter(|v| !v.is_undefined() && !v.is_none())
                .and_then(|v| crate::vars::value_to_json(&v).ok());
            let _ = ctx.take_error();
            v
        };
        let flag = |k: &str| get(k).and_then(|v| crate::args::parse_bool(&v));
        if flag("deployer_releases") == Some(false) {
            return None;
        }
        let login = get("ansible_user").or_else(|| get("ansible_ssh_user"));
        let login = login.as_ref().and_then(|v| v.as_str());
        let password = get("ansible_become_password")
            .or_else(|| get("ansible_become_pass"))
            .and_then(|v| v.as_str().map(str::to_string));
        let loc = crate::state::releases::StateLocation::for_host(
            &self.opts.project,
            login,
            flag("ansible_become").unwrap_or(false),
            password,
        );
        let keep = self.opts.keep_releases.or_else(|| {
            get("deployer_keep_releases").and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .map(|n| n as usize)
            })
        });
        Some((loc, keep.unwrap_or(crate::state::releases::DEFAULT_KEEP)))
    }

    fn new_recorder(
        &self,
        host: &str,
        id: &str,
        kind: &str,
    ) -> Option<Arc<crate::state::releases::Recorder>> {
        let (loc, keep) = self.state_location(host)?;
        Some(Arc::new(crate::state::releases::Recorder::new(
            id,
            &self.opts.project,
            host,
            kind,
            loc,
            keep,
        )))
    }

    /// Opens a connection to `host` for the release commands.
    pub async fn connect_host(&self, host: &str) -> Result<Connection, String> {
        let (play, _) = self.host_context(host)?;
        let pl = self.play_layers(&play)?;
        self.connect(host, &play, &pl).await
    }

    /// End of the run on one host: write its release when it changed, then
    /// roll back if a deploy gate failed after changes.
    async fn finish_release(&self, st: &mut HostState) {
        // Taken: a host's release is finished once (at a failed gate, or at the end).
        let (Some(rec), Some(conn)) = (st.release.take(), st.conn.clone()) else {
            return;
        };
        if self.opts.check || (rec.is_empty() && st.stats.changed == 0) {
            return;
        }
        let status = if st.failed { "failed" } else { "ok" };
        let record = rec.record(
            crate::state::releases::git_revision(&self.playbook_dir),
            status,
            st.gate_failure.clone(),
            crate::state::releases::TaskSummary {
                ok: st.stats.ok,
                changed: st.stats.changed,
                failed: st.stats.failed,
                changed_tasks: st.changed_tasks.clone(),
            },
            Vec::new(),
        );
        let written = conn
            .run_script(&rec.finalize_script(&record), rec.location.become_.as_ref())
            .await;
        let loc = "<release>";
        match written {
            Ok(o) if o.rc == 0 => {}
            Ok(o) => {
                self.fail_host(
                    st,
                    &format!("release {}", rec.id),
                    loc,
                    &format!(
                        "writing the release record failed: {}",
                        o.stderr_str().trim()
                    ),
                );
                return;
            }
            Err(e) => {
                self.fail_host(st, &format!("release {}", rec.id), loc, &e.to_string());
                return;
            }
        }
        let Some(gate) = st.gate_failure.clone() else {
            return;
        };
        if !self.opts.auto_rollback {
            self.reporter.warning(&format!(
                "{}: deploy gate failed ({gate}); automatic rollback is off (--no-auto-rollback): the host stays on release {}",
                st.name, rec.id
            ));
            return;
        }
        rollback::auto_rollback(self, &st.name, &conn, &rec, &gate).await;
    }
}

/// Variables that do not change during a play.
struct PlayLayers {
    vars: Layer,
    files: Layer,
    role_defaults: Layer,
    role_vars: Layer,
}

struct PlayCtx<'a> {
    play: &'a Play,
    layers: &'a PlayLayers,
    run_once: &'a run_once::RunOnce,
}

/// Facts, one `name\tvalue` line each (also appended to the run's first
/// execution on a host by run/session.rs, to save a round trip).
const FACTS_SCRIPT: &str = r#". /etc/os-release 2>/dev/null
printf 'hostname\t%s\n' "$(uname -n | cut -d. -f1)"
printf 'nodename\t%s\n' "$(uname -n)"
printf 'fqdn\t%s\n' "$(hostname -f 2>/dev/null || uname -n)"
printf 'distribution\t%s\n' "${NAME%% *}"
printf 'distribution_version\t%s\n' "${VERSION_ID:-}"
printf 'distribution_major_version\t%s\n' "${VERSION_ID%%.*}"
printf 'distribution_release\t%s\n' "${VERSION_CODENAME:-}"
printf 'os_family\t%s\n' "$(case "${ID_LIKE:-$ID}" in *debian*|debian) echo Debian;; *rhel*|*fedora*) echo RedHat;; *) echo "${ID:-unknown}";; esac)"
printf 'architecture\t%s\n' "$(uname -m)"
printf 'kernel\t%s\n' "$(uname -r)"
printf 'system\t%s\n' "$(uname -s)"
printf 'user_id\t%s\n' "$(id -un)"
printf 'user_dir\t%s\n' "$HOME"
printf 'processor_vcpus\t%s\n' "$(nproc 2>/dev/null || echo 1)"
printf 'memtotal_mb\t%s\n' "$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo 2>/dev/null)"
"#;

/// The facts layer from [`FACTS_SCRIPT`]'s output.
fn facts_layer(stdout: &str) -> Layer {
    let mut facts = serde_json::Map::new();
    for line in stdout.lines() {
        if let Some((k, v)) = line.split_once('\t') {
            let val = match k {
                "processor_vcpus" | "memtotal_mb" => {
                    v.parse::<i64>().map(Json::from).unwrap_or(json!(v))
                }
                _ => json!(v),
            };
            facts.insert(k.to_string(), val);
        }
    }
    let mut layer = Layer::new();
    for (k, v) in &facts {
        layer.insert(
            format!("ansible_{k}"),
            VarValue::Value(crate::vars::json_to_value(v)),
        );
    }
    layer.insert(
        "ansible_facts".into(),
        VarValue::Value(crate::vars::json_to_value(&Json::Object(facts))),
    );
    layer
}

/// The variables of item `i` of a loop over `items`: the loop variable,
/// `index_var`, `ansible_loop_var`, and with `extended` the `ansible_loop`
/// mapping Ansible defines (index, index0, revindex, revindex0, first, last,
/// length, allitems, previtem, nextitem).
fn loop_layer(t: &Task, i: usize, items: &[Value]) -> Layer {
    let mut l = Layer::new();
    let item = items.get(i).cloned().unwrap_or(Value::UNDEFINED);
    l.insert(t.loop_var.clone(), VarValue::Value(item));
    l.insert(
        "ansible_loop_var".into(),
        VarValue::Value(Value::from(t.loop_var.as_str())),
    );
    if let Some(iv) = &t.index_var {
        l.insert(iv.clone(), VarValue::Value(Value::from(i)));
        l.insert(
            "ansible_index_var".into(),
            VarValue::Value(Value::from(iv.as_str())),
        );
    }
    if t.loop_extended {
        let n = items.len();
        let mut m: Vec<(&str, Value)> = vec![
            ("allitems", Value::from(items.to_vec())),
            ("index", Value::from(i + 1)),
            ("index0", Value::from(i)),
            ("revindex", Value::from(n - i)),
            ("revindex0", Value::from(n - i - 1)),
            ("first", Value::from(i == 0)),
            ("last", Value::from(i + 1 == n)),
            ("length", Value::from(n)),
        ];
        if i > 0 {
            m.push(("previtem", items[i - 1].clone()));
        }
        if i + 1 < n {
            m.push(("nextitem", items[i + 1].clone()));
        }
        l.insert("ansible_loop".into(), VarValue::Value(Value::from_pairs(m)));
    }
    l
}

fn py_repr(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(rest))
            .unwrap_or_else(|| PathBuf::from(p)),
        None => PathBuf::from(p),
    }
}

/// The subset of ssh options deployer maps onto its SSH session; anything
/// else is refused rather than silently dropped.
fn apply_ssh_args(t: &mut SshTarget, args: &str) -> Result<(), String> {
    let words = crate::shell::split(args).ok_or("ansible_ssh_common_args: unbalanced quotes")?;
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let opt = if w == "-o" {
            it.next()
                .ok_or("ansible_ssh_common_args: -o needs a value")?
        } else if let Some(o) = w.strip_prefix("-o") {
            o.to_string()
        } else if w == "-F" {
            t.config_file = Some(PathBuf::from(
                it.next()
                    .ok_or("ansible_ssh_common_args: -F needs a file")?,
            ));
            continue;
        } else {
            return Err(format!(
                "ansible_ssh_common_args: unsupported ssh argument '{w}' (supported: -F FILE, -o UserKnownHostsFile=, -o StrictHostKeyChecking=)"
            ));
        };
        let (k, v) = opt.split_once('=').ok_or_else(|| {
            format!("ansible_ssh_common_args: expected -o Key=Value, got '{opt}'")
        })?;
        match k.to_ascii_lowercase().as_str() {
            "userknownhostsfile" => t.known_hosts_file = Some(PathBuf::from(v)),
            "stricthostkeychecking" => {
                t.strict_host_key_checking = match v.to_ascii_lowercase().as_str() {
                    "yes" => openssh::KnownHosts::Strict,
                    "accept-new" => openssh::KnownHosts::Add,
                    other => {
                        return Err(format!(
                            "StrictHostKeyChecking={other} is refused: deployer verifies host keys (use yes or accept-new)"
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "ansible_ssh_common_args: unsupported ssh option '{k}' (supported: UserKnownHostsFile, StrictHostKeyChecking)"
                ));
            }
        }
    }
    Ok(())
}

impl ReleaseStage for Recorder {
    fn save_snippet(&self, path: &str) -> Option<String> {
        Recorder::save_snippet(self, path)
    }
}

/// Records in the host's release what a module saved (see [`ReleaseSave`]).
pub(crate) fn record_saved(rec: &Recorder, task: &str, saved: Vec<ReleaseSave>) {
    for s in saved {
        match s {
            ReleaseSave::File { path, stdout } => rec.note_saved(&path, task, &stdout),
            ReleaseSave::ComposeBefore {
                project,
                args,
                before,
            } => rec.note_compose_before(&project, task, args, before),
            ReleaseSave::ComposeAfter { project, after } => rec.note_compose_after(&project, after),
        }
    }
}
