//! The executor: hosts in parallel (forks), tasks in order per host, handlers
//! at the end of each play (or at `flush_handlers`) when notified by a change.
//! This file holds the engine's types; the work is split by stage:
//! `scheduling` (plays and hosts), `connect`, `context` (variables, become),
//! `facts` (facts and prefetched observations), `tasks`, `loops` (a module
//! task and its items), `handlers`, `gates` (releases and deploy gates),
//! `run_once`, `session` (deploy lock, pending handlers, audit) and
//! `rollback` (release replay).

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
mod connect;
mod context;
mod facts;
mod gates;
mod handlers;
mod hostvars;
mod lockstep;
mod loops;
pub mod rollback;
mod run_once;
mod scheduling;
mod session;
mod tasks;
pub use hostvars::{HostvarsStore, inventory_hostvars};
pub use session::{Interrupt, RunSession, SessionOutcome};

use facts::{FACTS_SCRIPT, facts_layer, py_repr, python_interpreter};
use gates::is_deploy_gate;
use loops::loop_layer;

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
    /// `--fresh-connection`: a new SSH master per host, closed at the end,
    /// instead of a warm one kept for the next run (`connection::warm`).
    pub fresh_connection: bool,
    /// `images.lock`: images used by tag, pinned, or collected by `deployer pin`.
    pub images: Arc<crate::project::images_lock::ImagePolicy>,
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
    /// The `--forks` slot this host holds while it runs tasks.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// How many enclosing block sections have a `rescue` or `always` that
    /// may still answer a failure (run/lockstep.rs counts failures outside).
    protected: usize,
    /// Failed by another host's failure under `any_errors_fatal`: no failure
    /// of its own to count or rescue.
    peer_failed: bool,
    /// `max_fail_percentage` exceeded: nothing more runs on this host in this
    /// play, not even `rescue`, `always` or handlers.
    aborted: bool,
    /// The task running now is a command whose next task touching the host
    /// runs a command too (run/tasks.rs): what this one may have changed is
    /// checked by that one's execution (`ModuleCtx::restamp_later`).
    restamp_later: bool,
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
            permit: None,
            protected: 0,
            peer_failed: false,
            aborted: false,
            restamp_later: false,
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
    /// Every host's facts and runtime values, for `hostvars` (run/hostvars.rs).
    pub hostvars: Arc<HostvarsStore>,
    /// `throttle`: one semaphore per throttled task (by address), shared by
    /// the hosts that reach it.
    pub throttles: std::sync::Mutex<HashMap<usize, Arc<Semaphore>>>,
}

#[derive(Debug)]
pub struct Outcome {
    pub stats: Vec<(String, HostStats)>,
    pub changed: bool,
    pub failed: bool,
    /// Lock refusals, interruption, audit entries.
    pub session: SessionOutcome,
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
    /// The batch's lock step, when `any_errors_fatal` or
    /// `max_fail_percentage` needs one (run/lockstep.rs).
    lockstep: Option<&'a lockstep::Lockstep>,
}

impl ReleaseStage for Recorder {
    fn save_snippet(&self, path: &str) -> Option<String> {
        Recorder::save_snippet(self, path)
    }
    fn release_id(&self) -> Option<&str> {
        Some(&self.id)
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
