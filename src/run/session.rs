//! The run's use of the per-host state (src/state/): take
//! the deploy lock on every host before anything changes (one remote
//! execution per host, which also reads the pending handlers and, when it
//! can, gathers the facts), fire handlers left pending by a failed run, and
//! at the end write the pending handlers, append the audit line and release
//! the lock (one execution per host). Every exit path goes through the end:
//! success, a failed task, an error, and SIGINT/SIGTERM (see [`Interrupt`]).
//! Also the remote side of `deployer lock status|release` and `deployer audit`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::{Semaphore, watch};

use super::{Engine, HostState, Outcome};
use crate::connection::{Become, Output};
use crate::project::{Play, Playbook, TaskKind};
use crate::report::Status;
use crate::state::audit::{self, HostAudit, TaskCount};
use crate::state::lock::{self, LockHolder, LockState, MARK};
use crate::state::pending::{self, PendingHandler};

/// Set once by SIGINT/SIGTERM: running tasks stop, hosts finish through the
/// end of the run (pending handlers saved, audit written, lock released).
#[derive(Clone)]
pub struct Interrupt {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Interrupt {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_set(&self) -> bool {
        *self.tx.borrow()
    }

    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// What a run needs to keep state on its hosts.
pub struct RunSession {
    /// The project's name on the hosts ([`crate::state::project_id`]).
    pub project: String,
    /// Where the local run log lives (`.deployer/runs.jsonl`).
    pub project_root: std::path::PathBuf,
    /// This run's identity, written into the lock and the audit log; made
    /// when first needed ([`RunSession::holder`]).
    holder: tokio::sync::OnceCell<LockHolder>,
    /// The checkout's `(HEAD, dirty)` for the holder, from a `git` process
    /// that runs while the project loads and the first connection opens.
    revision: futures::future::Shared<tokio::sync::oneshot::Receiver<(Option<String>, bool)>>,
    /// The command line (secrets masked) and `--message`, for the holder.
    command: String,
    message: Option<String>,
    /// Check mode: the lock is only looked at (a held lock is a warning),
    /// pending handlers are shown but kept, nothing is written.
    pub check: bool,
    /// `--lock-wait`: how long to wait for locks held by others.
    pub lock_wait: Option<Duration>,
    pub interrupt: Interrupt,
}

impl RunSession {
    /// A session whose holder waits for `revision` only when first asked for
    /// (a check run, which takes no lock, may never wait for it).
    pub fn new(
        project: String,
        project_root: std::path::PathBuf,
        revision: tokio::sync::oneshot::Receiver<(Option<String>, bool)>,
        command: String,
        message: Option<String>,
        check: bool,
        lock_wait: Option<Duration>,
    ) -> Self {
        use futures::FutureExt;
        RunSession {
            project,
            project_root,
            holder: tokio::sync::OnceCell::new(),
            revision: revision.shared(),
            command,
            message,
            check,
            lock_wait,
            interrupt: Interrupt::default(),
        }
    }

    /// This run's identity. The first call waits for the checkout's revision
    /// (a `git` that failed or was never started counts as no checkout);
    /// every later call returns the same holder.
    pub async fn holder(&self) -> &LockHolder {
        self.holder
            .get_or_init(|| async {
                let revision = self.revision.clone().await.unwrap_or((None, false));
                LockHolder::for_this_run_at(revision, self.command.clone(), self.message.clone())
            })
            .await
    }
}

/// Per-host state of the session.
#[derive(Default)]
pub(super) struct HostSession {
    /// This run holds the host's lock (so the end must release it).
    locked: bool,
    /// The state directory as the host named it.
    state_dir: String,
    become_: Option<Become>,
    /// Loaded from `pending-handlers.json`, not yet matched to a play of this run.
    restored: Vec<PendingHandler>,
    /// Restored notifications handed to a play (their origin, if they stay pending).
    handed: Vec<PendingHandler>,
    /// The pending file could not be read: leave it alone.
    pending_unreadable: bool,
    current_play: String,
}

/// What the engine reports back about the session.
#[derive(Debug, Default)]
pub struct SessionOutcome {
    /// Hosts locked by someone else (the run was refused, nothing changed).
    pub refused: Vec<String>,
    pub interrupted: bool,
    /// One audit entry per host whose lock this run held.
    pub audit: Vec<HostAudit>,
    /// Locks that could not be released, and the like.
    pub notes: Vec<String>,
}

/// What [`Engine::lock_script`] built, and what reading its answer needs.
struct LockScript<'p> {
    script: String,
    become_: Option<Become>,
    /// The observations it carries (paths and wants, as whom).
    observe: Option<super::facts::Prefetch>,
    with_facts: Option<(&'p [String], Option<String>)>,
}

enum Begun {
    Ready,
    Held(Option<LockHolder>),
    /// The host is marked failed or unreachable.
    Failed,
}

impl Engine {
    pub(super) fn interrupted(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.interrupt.is_set())
    }

    /// Runs `f` unless the run is interrupted first.
    pub(super) async fn until_interrupted<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        match &self.session {
            None => f.await,
            Some(s) => tokio::select! {
                r = f => r,
                _ = s.interrupt.wait() => Err("interrupted (SIGINT/SIGTERM): stopped; the run ends here".into()),
            },
        }
    }

    /// Takes every targeted host's lock (or, in check mode, looks at it).
    /// Returns the outcome of a refused run: some host is locked by another
    /// run (after `--lock-wait`), in which case every lock this run took is
    /// released again and nothing was changed anywhere.
    pub(super) async fn begin_session(
        &self,
        s: &RunSession,
        pb: &Playbook,
        states: &mut IndexMap<String, HostState>,
    ) -> Option<Outcome> {
        let mut plays_of: IndexMap<String, Vec<&Play>> = IndexMap::new();
        for play in &pb.plays {
            let Ok(mut hosts) = self.inventory.select(&play.hosts) else {
                continue;
            };
            if let Some(limit) = &self.opts.limit {
                match self.inventory.select(limit) {
                    Ok(allowed) => hosts.retain(|h| allowed.contains(h)),
                    Err(_) => continue,
                }
            }
            for h in hosts {
                plays_of.entry(h).or_default().push(play);
            }
        }
        let deadline = s.lock_wait.map(|d| Instant::now() + d);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sem = Arc::new(Semaphore::new(self.opts.forks.max(1)));
            let mut futures = Vec::new();
            for (h, plays) in &plays_of {
                let mut st = states.shift_remove(h).unwrap_or_else(|| HostState::new(h));
                let sem = sem.clone();
                futures.push(async move {
                    let _permit = sem.acquire().await;
                    let begun = if st.failed {
                        Begun::Failed
                    } else {
                        self.begin_host(s, plays, &mut st).await
                    };
                    (st, begun)
                });
            }
            let mut held = Vec::new();
            for (st, begun) in futures::future::join_all(futures).await {
                if let Begun::Held(h) = begun {
                    held.push((st.name.clone(), h));
                }
                states.insert(st.name.clone(), st);
            }
            if held.is_empty() || s.check {
                for (host, h) in held {
                    self.reporter.warning(&format!(
                        "{host} is locked by {}: an apply may be running there, so this check may not show what will be",
                        h.map(|h| h.describe()).unwrap_or_else(|| "another run".into())
                    ));
                }
                return None;
            }
            // Give back what this attempt took: two runs waiting for each
            // other's hosts must not deadlock.
            self.release_all(s, states).await;
            let now = Instant::now();
            let wait = deadline.filter(|d| *d > now).map(|d| d - now);
            if let (Some(left), false) = (wait, s.interrupt.is_set()) {
                // A little jitter, so two waiting runs do not retry in step.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos();
                let pause = Duration::from_millis(1000 + u64::from(nanos % 1500)).min(left);
                if attempt == 1 {
                    for (host, h) in &held {
                        self.reporter.warning(&format!(
                            "waiting up to {} for the deploy lock on {host}, held by {}",
                            lock::human_duration(left),
                            h.as_ref()
                                .map(|h| h.describe())
                                .unwrap_or_else(|| "another run".into())
                        ));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = s.interrupt.wait() => {}
                }
            }
            let mut session = SessionOutcome {
                interrupted: s.interrupt.is_set(),
                ..Default::default()
            };
            for (host, h) in held {
                if self.reporter.format == crate::report::Format::Json {
                    // JSON consumers get it on stdout too (people read stderr).
                    let holder = h.as_ref().map(|h| h.describe());
                    self.reporter.note(
                        &host,
                        &format!("locked by {}", holder.as_deref().unwrap_or("another run")),
                    );
                }
                session.refused.push(match h {
                    Some(h) => format!("{host} is locked by {}", h.describe()),
                    None => format!("{host} is locked by another run (it was released while being read: try again)"),
                });
            }
            return Some(self.finish(states, session).await);
        }
    }

    /// One execution on the host: state directory, lock, pending handlers,
    /// and the facts when the first play wants them with the same `become`.
    async fn begin_host(&self, s: &RunSession, plays: &[&Play], st: &mut HostState) -> Begun {
        let Some(first) = plays.first() else {
            return Begun::Ready;
        };
        let loc = first.loc.to_string();
        let layers = match self.play_layers(first) {
            Ok(l) => l,
            Err(e) => {
                self.fail_host(st, &first.name, &loc, &e);
                return Begun::Failed;
            }
        };
        // The connection starts first; the lock script is built while it
        // authenticates and goes out with it (one round trip fewer).
        let (script_tx, script_rx) = tokio::sync::oneshot::channel::<String>();
        let name = st.name.clone();
        let connecting = async {
            if st.conn.is_some() {
                return None;
            }
            use futures::FutureExt;
            Some(
                self.connect(&name, first, &layers, Some(script_rx.shared()))
                    .await,
            )
        };
        let building = async {
            // The lock names this run, revision included: waited for here,
            // while the connection opens (check mode takes no lock).
            let holder = if s.check {
                None
            } else {
                Some(s.holder().await)
            };
            let built = self.lock_script(s, holder, first, &layers, st);
            if let Ok(b) = &built {
                let _ = script_tx.send(b.script.clone());
            }
            built
        };
        let (connected, built) = tokio::join!(connecting, building);
        match connected {
            Some(Ok(c)) => st.conn = Some(Arc::new(c)),
            Some(Err(e)) => {
                st.stats.unreachable += 1;
                st.failed = true;
                self.reporter.task_result(
                    &st.name,
                    "connect",
                    &loc,
                    Status::Unreachable,
                    Some(&e),
                    &[],
                    None,
                );
                return Begun::Failed;
            }
            None => {}
        }
        let LockScript {
            script,
            become_,
            observe,
            with_facts,
        } = match built {
            Ok(b) => b,
            Err(e) => {
                self.fail_host(st, "deploy lock", &loc, &e);
                return Begun::Failed;
            }
        };
        let Some(conn) = st.conn.clone() else {
            return Begun::Failed;
        };
        let out = match conn.run_script(&script, become_.as_ref()).await {
            Ok(o) => o,
            Err(e) => {
                st.stats.unreachable += 1;
                st.failed = true;
                let msg = crate::secrets::mask(&e.to_string());
                self.reporter.task_result(
                    &st.name,
                    "deploy lock",
                    &loc,
                    Status::Unreachable,
                    Some(&msg),
                    &[],
                    None,
                );
                return Begun::Failed;
            }
        };
        let stdout = out.stdout_str();
        let secs = lock::sections(&stdout);
        let state_dir = state_dir_of(&secs);
        if out.rc != 0 || !secs.iter().any(|(m, _)| m == "end") {
            let why =
                lock::script_error(&secs).unwrap_or_else(|| out.stderr_str().trim().to_string());
            let msg = format!("deploy state in {state_dir}: {why} (exit code {})", out.rc);
            // A lock taken before the failure is still ours to give back.
            if lock::lock_state(&secs) == Some(LockState::Acquired) {
                st.session.locked = true;
                st.session.state_dir = state_dir;
                st.session.become_ = become_;
                st.session.pending_unreadable = true;
            }
            self.fail_host(st, "deploy lock", &loc, &msg);
            return Begun::Failed;
        }
        if let Some((todo, b)) = observe
            && let Some((_, body)) = secs.iter().find(|(m, _)| m == "observe")
        {
            let mut out = body.join("\n");
            out.push('\n');
            st.observed.fetched(b.as_ref(), todo, &out);
        }
        st.session.state_dir = state_dir.clone();
        st.session.become_ = become_;
        let lock_state = if s.check {
            lock::lock_state(&secs)
        } else {
            lock::as_seen_by(lock::lock_state(&secs), s.holder().await)
        };
        match lock_state {
            Some(LockState::Acquired) => st.session.locked = true,
            // A holder of this machine whose process is gone (a killed run):
            // taken over, with a note.
            Some(LockState::Held(Some(h)))
                if !s.check && matches!(h.liveness(), lock::Liveness::Gone(_)) =>
            {
                let took = lock::take_over_on(
                    &conn,
                    st.session.become_.as_ref(),
                    &s.project,
                    &h,
                    s.holder().await,
                )
                .await;
                match took {
                    Ok(LockState::Acquired) => {
                        st.session.locked = true;
                        self.reporter.note(&st.name, &lock::took_over_note(&h));
                    }
                    Ok(LockState::Held(other)) => return Begun::Held(other),
                    Ok(other) => {
                        let msg = format!("taking over a stale deploy lock: {other:?}");
                        self.fail_host(st, "deploy lock", &loc, &msg);
                        return Begun::Failed;
                    }
                    Err(e) => {
                        self.fail_host(st, "deploy lock", &loc, &e);
                        return Begun::Failed;
                    }
                }
            }
            Some(LockState::Held(h)) if !s.check => return Begun::Held(h),
            Some(LockState::Held(h)) => {
                self.finish_begin(s, st, &secs, with_facts, &loc);
                return Begun::Held(h);
            }
            _ => {}
        }
        self.finish_begin(s, st, &secs, with_facts, &loc);
        if st.failed {
            Begun::Failed
        } else {
            Begun::Ready
        }
    }

    /// The first script on a host: the state directory, the deploy lock
    /// (or a look at it in check mode), pending handlers, the first play's
    /// file observations when they are read as the same user, and the facts
    /// when that play wants them with the same `become`.
    fn lock_script<'p>(
        &self,
        s: &RunSession,
        holder: Option<&LockHolder>,
        first: &'p Play,
        layers: &super::PlayLayers,
        st: &HostState,
    ) -> Result<LockScript<'p>, String> {
        let ctx = self.context(first, layers, st, None);
        let (facts_become, become_) = self
            .become_for(first, None, &ctx)
            .and_then(|f| Ok((Some(f), self.state_become(&st.name)?)))?;
        let same_become = |a: &Option<Become>, b: &Option<Become>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a.user == b.user && a.password == b.password,
            _ => false,
        };
        let with_facts = (first.gather_facts
            && st.facts.is_none()
            && facts_become.is_some_and(|fb| same_become(&fb, &become_)))
        .then(|| {
            (
                first.gather_subset.as_slice(),
                super::python_interpreter(&ctx),
            )
        });
        let mut script = String::from("umask 077\n");
        script.push_str(&lock::state_dir_sh(&s.project));
        script.push_str(&match holder {
            Some(h) => lock::acquire_sh(h),
            None => lock::peek_sh(),
        });
        script.push_str(&pending::read_sh());
        // The first play's file observations ride along when they are read
        // as the same user: read-only, so harmless when the lock turns out
        // held, and one round trip fewer. Paths that need facts not known
        // yet are left to the play's own prefetch.
        let observe = self
            .prefetch_requests(first, st, layers)
            .filter(|(_, b)| same_become(b, &become_))
            .map(|(reqs, b)| (st.observed.to_fetch(&reqs), b))
            .filter(|(todo, _)| !todo.is_empty());
        if let Some((todo, _)) = &observe {
            script.push_str(&format!("echo '{MARK}observe'\n"));
            script.push_str(&crate::modules::observe::observe_script(todo));
        }
        script.push_str(&format!("echo '{MARK}end'\n"));
        if with_facts.is_some() {
            script.push_str(super::FACTS_SCRIPT);
        }
        Ok(LockScript {
            script,
            become_,
            observe,
            with_facts,
        })
    }

    fn finish_begin(
        &self,
        _s: &RunSession,
        st: &mut HostState,
        secs: &[(String, Vec<String>)],
        with_facts: Option<(&[String], Option<String>)>,
        loc: &str,
    ) {
        match pending::parse(secs, &st.session.state_dir) {
            Ok(p) => st.session.restored = p,
            Err(e) => {
                st.session.pending_unreadable = true;
                self.fail_host(st, "pending handlers", loc, &e);
                return;
            }
        }
        if let Some((subset, interp)) = with_facts
            && let Some((_, body)) = secs.iter().find(|(m, _)| m == "end")
        {
            match super::facts_layer(&body.join("\n"), subset, interp.as_deref()) {
                Ok(l) => st.facts = Some(l),
                Err(e) => self.fail_host(st, "Gathering Facts", loc, &e),
            }
        }
    }

    /// At a play's start: notifications left pending by an earlier run that
    /// one of this play's handlers answers are notified again, so they fire
    /// at the play's handler point even if no task notifies them this time.
    pub(super) fn restore_pending(&self, play: &Play, st: &mut HostState) {
        st.session.current_play = play.name.clone();
        if st.session.restored.is_empty() {
            return;
        }
        let handlers = crate::project::flatten_tasks(&play.handlers);
        let answers = |n: &str| {
            handlers.iter().any(|h| {
                matches!(h.kind, TaskKind::Module { .. })
                    && (h.name.as_deref() == Some(n) || h.listen.iter().any(|l| l == n))
            })
        };
        let (hit, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.session.restored)
            .into_iter()
            .partition(|p| answers(&p.notification));
        st.session.restored = keep;
        for p in hit {
            self.reporter.note(
                &st.name,
                &format!(
                    "handler '{}': pending from run {} ({}, play '{}'), fires at this play's handler point",
                    p.notification, p.run_id, p.since, p.play
                ),
            );
            st.notified.insert(p.notification.clone());
            st.session.handed.push(p);
        }
    }

    /// Gives back the locks this run took (a refused or interrupted start).
    async fn release_all(&self, s: &RunSession, states: &mut IndexMap<String, HostState>) {
        let holder = s.holder().await;
        let mut futures = Vec::new();
        for st in states.values_mut().filter(|st| st.session.locked) {
            futures.push(async move {
                let script = format!(
                    "{}{}",
                    lock::state_dir_sh(&s.project),
                    lock::release_sh(holder)
                );
                let r = self.run_state_script(st, &script).await;
                st.session.locked = false;
                (st.name.clone(), r)
            });
        }
        for (host, r) in futures::future::join_all(futures).await {
            if let Err(e) = r {
                self.reporter.warning(&format!(
                    "{host}: could not release the deploy lock: {e}; release it with `deployer lock release -l {host}`"
                ));
            }
        }
    }

    async fn run_state_script(&self, st: &HostState, script: &str) -> Result<Output, String> {
        let conn = st.conn.clone().ok_or("not connected")?;
        conn.run_script(script, st.session.become_.as_ref())
            .await
            .map_err(|e| crate::secrets::mask(&e.to_string()))
    }

    /// The end of the run on every host whose lock it holds: pending
    /// handlers saved (or cleared), the audit line appended, the lock
    /// released, in one execution per host.
    pub(super) async fn end_session(
        &self,
        s: &RunSession,
        states: &mut IndexMap<String, HostState>,
    ) -> SessionOutcome {
        let mut out = SessionOutcome {
            interrupted: s.interrupt.is_set(),
            ..Default::default()
        };
        if s.check {
            return out;
        }
        let plan = self
            .reporter
            .plan
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let interrupted = out.interrupted;
        let holder = s.holder().await;
        let mut futures = Vec::new();
        for st in states.values_mut().filter(|st| st.session.locked) {
            let mut entry = HostAudit::new(holder, &st.name);
            for t in plan.iter().filter(|t| t.host == st.name) {
                match t.status {
                    Status::Changed => {
                        match entry.changed_tasks.iter_mut().find(|c| c.task == t.task) {
                            Some(c) => c.count += 1,
                            None => entry.changed_tasks.push(TaskCount {
                                task: t.task.clone(),
                                count: 1,
                            }),
                        }
                    }
                    Status::Failed | Status::Unreachable if st.failed => {
                        entry.failed_tasks.push(t.task.clone())
                    }
                    _ => {}
                }
            }
            entry.changed = st.stats.changed;
            entry.result = if interrupted {
                "interrupted"
            } else if st.failed || st.stats.failed > 0 {
                "failed"
            } else {
                "ok"
            }
            .into();
            let mut pending_list: Vec<PendingHandler> = st
                .notified
                .iter()
                .map(
                    |n| match st.session.handed.iter().find(|p| &p.notification == n) {
                        Some(p) => p.clone(),
                        None => PendingHandler {
                            notification: n.clone(),
                            play: st.session.current_play.clone(),
                            run_id: holder.run_id.clone(),
                            since: holder.since.clone(),
                        },
                    },
                )
                .collect();
            pending_list.extend(st.session.restored.iter().cloned());
            entry.pending_handlers = pending_list
                .iter()
                .map(|p| p.notification.clone())
                .collect();
            for p in &pending_list {
                self.reporter.note(
                    &st.name,
                    &format!(
                        "handler '{}' did not run: saved as pending, the next apply fires it",
                        p.notification
                    ),
                );
            }
            let mut script = String::from("umask 077\n");
            script.push_str(&lock::state_dir_sh(&s.project));
            if !st.session.pending_unreadable {
                script.push_str(&pending::write_sh(&pending_list));
            }
            script.push_str(&audit::append_sh(&entry));
            script.push_str(&lock::release_sh(holder));
            futures.push(async move {
                let r = self.run_state_script(st, &script).await;
                st.session.locked = false;
                (st.name.clone(), entry, r)
            });
        }
        for (host, entry, r) in futures::future::join_all(futures).await {
            let secs = match &r {
                Ok(o) => lock::sections(&o.stdout_str()),
                Err(_) => Vec::new(),
            };
            let problem = match (&r, lock::lock_state(&secs), lock::script_error(&secs)) {
                (Err(e), _, _) => Some(format!(
                    "{host}: the end of the run could not reach the host ({e}): the deploy lock stays; release it with `deployer lock release -l {host}`"
                )),
                (Ok(_), _, Some(e)) => Some(format!("{host}: {e}")),
                (Ok(_), Some(LockState::Released), None) => None,
                (Ok(_), Some(LockState::NotOurs(h)), None) => Some(format!(
                    "{host}: the deploy lock was no longer this run's at the end ({})",
                    h.map(|h| format!("now held by {}", h.describe()))
                        .unwrap_or_else(|| "it had been removed".into())
                )),
                (Ok(o), _, None) => Some(format!(
                    "{host}: releasing the deploy lock failed: {}",
                    o.stderr_str().trim()
                )),
            };
            if let Some(p) = problem {
                self.reporter.warning(&p);
                out.notes.push(p);
            }
            out.audit.push(entry);
        }
        out
    }

    /// `deployer lock status|release` and `deployer audit`: runs
    /// `script(host)` (after the state directory is set in `D`) on every
    /// inventory host in `limit`, connected as a run would, with the host's
    /// `ansible_become` (or root with `become`).
    pub async fn state_query(
        &self,
        limit: Option<&str>,
        script: &(dyn Fn(&str) -> String + Sync),
        project: &str,
    ) -> Vec<(String, Result<(String, Vec<(String, Vec<String>)>), String>)> {
        let play = self.state_play();
        let hosts = match self.inventory.select(limit.unwrap_or("all")) {
            Ok(h) => h,
            Err(e) => return vec![("--limit".into(), Err(e))],
        };
        let layers = match self.play_layers(&play) {
            Ok(l) => l,
            Err(e) => return hosts.into_iter().map(|h| (h, Err(e.clone()))).collect(),
        };
        let sem = Arc::new(Semaphore::new(self.opts.forks.max(1)));
        let mut futures = Vec::new();
        for h in hosts {
            let (sem, play, layers) = (sem.clone(), &play, &layers);
            futures.push(async move {
                let _permit = sem.acquire().await;
                let r = async {
                    let conn = self.connect(&h, play, layers, None).await?;
                    let b = self.state_become(&h)?;
                    let full = format!("{}{}", lock::state_dir_sh(project), script(&h));
                    let o = conn
                        .run_script(&full, b.as_ref())
                        .await
                        .map_err(|e| crate::secrets::mask(&e.to_string()));
                    conn.close().await;
                    let o = o?;
                    let secs = lock::sections(&o.stdout_str());
                    if o.rc != 0 {
                        return Err(lock::script_error(&secs)
                            .unwrap_or_else(|| o.stderr_str().trim().to_string()));
                    }
                    Ok((state_dir_of(&secs), secs))
                }
                .await;
                (h, r)
            });
        }
        futures::future::join_all(futures).await
    }
}

impl Engine {
    /// A play-less play: inventory, extra and magic variables only.
    fn state_play(&self) -> Play {
        Play::empty(
            "deployer state",
            crate::yaml::Loc::file_only(std::path::Path::new("<command line>")),
            "all",
            self.playbook_dir.clone(),
        )
    }

    /// As whom the host's state is read and written, from host-level
    /// variables only (so `apply`, `rollback`, `lock` and `audit` agree, the
    /// same rule as the releases' `StateLocation::for_host`): nobody else
    /// when the SSH login is root; root when `ansible_become` is true (the
    /// system directory); else the login user (its own directory).
    pub(super) fn state_become(&self, host: &str) -> Result<Option<Become>, String> {
        let play = self.state_play();
        let layers = self.play_layers(&play)?;
        let ctx = self.context(&play, &layers, &HostState::new(host), None);
        let get = |k: &str| {
            let v = ctx
                .lookup(k)
                .filter(|v| !v.is_undefined() && !v.is_none())
                .and_then(|v| crate::vars::value_to_json(&v).ok());
            let _ = ctx.take_error();
            v
        };
        let login = get("ansible_user").or_else(|| get("ansible_ssh_user"));
        if login.as_ref().and_then(|v| v.as_str()) == Some("root") {
            return Ok(None);
        }
        let become_root = get("ansible_become")
            .and_then(|v| crate::args::parse_bool(&v))
            .unwrap_or(false);
        Ok(become_root.then(|| Become {
            user: "root".into(),
            password: get("ansible_become_password")
                .or_else(|| get("ansible_become_pass"))
                .and_then(|v| v.as_str().map(str::to_string)),
        }))
    }
}

fn state_dir_of(secs: &[(String, Vec<String>)]) -> String {
    secs.iter()
        .find_map(|(m, _)| m.strip_prefix("state ").map(str::to_string))
        .unwrap_or_else(|| "the state directory".into())
}
