//! Play and host scheduling: the run over every play, hosts side by side
//! (bounded by `--forks`), each host's plays in order with its session (deploy
//! lock, pending handlers, audit), the end-of-play handler flush and the
//! host's release at the end; a failed host stops there.

use super::*;

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
            if hosts.is_empty() {
                self.reporter.warning(&format!(
                    "play '{}': no hosts matched '{}'",
                    play.name, play.hosts
                ));
                continue;
            }
            // `serial`: the play runs batch after batch, hosts that failed
            // before keeping their place in the batches, as in Ansible.
            let mut end_playbook = false;
            for batch in play.batches(&hosts) {
                if self.interrupted() {
                    break;
                }
                let alive: Vec<String> = batch
                    .iter()
                    .filter(|h| !states.get(*h).is_some_and(|s| s.failed))
                    .cloned()
                    .collect();
                if alive.is_empty() {
                    // Hosts that failed or were unreachable are in the recap.
                    continue;
                }
                let aborted = self
                    .run_batch(play, &alive, batch.len(), &mut states, &release_id)
                    .await;
                // As PlaybookExecutor: when every host of a batch failed in it
                // (or max_fail_percentage was exceeded), no later batch and no
                // later play runs.
                let newly_failed = alive
                    .iter()
                    .filter(|h| states.get(*h).is_some_and(|s| s.failed))
                    .count();
                if aborted || newly_failed == batch.len() {
                    end_playbook = true;
                    break;
                }
            }
            if end_playbook {
                break;
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

    /// One batch of a play: its hosts side by side, bounded by `--forks`, in
    /// lock step when `any_errors_fatal` or `max_fail_percentage` asks for
    /// it. True when `max_fail_percentage` was exceeded.
    async fn run_batch(
        &self,
        play: &Play,
        hosts: &[String],
        batch_size: usize,
        states: &mut IndexMap<String, HostState>,
        release_id: &str,
    ) -> bool {
        self.reporter.play_start(&play.name, hosts);
        let sem = Arc::new(Semaphore::new(self.opts.forks.max(1)));
        let run_once = run_once::RunOnce::new(hosts);
        // A play that reads `hostvars` runs its hosts in lock step, as
        // Ansible's linear strategy: a host sees what the others gathered
        // and set in the tasks before. `strategy: linear` always does;
        // `free` only for any_errors_fatal and max_fail_percentage.
        let together = match play.strategy {
            Some(crate::project::Strategy::Linear) => hosts.len() > 1,
            Some(crate::project::Strategy::Free) => false,
            None => hosts.len() > 1 && hostvars::play_mentions_hostvars(play, &self.inventory),
        };
        let lockstep = (needs_lockstep(play) || together).then(|| {
            lockstep::Lockstep::new(hosts, batch_size, play.max_fail_percentage, sem.clone())
        });
        let mut futures = Vec::new();
        for h in hosts {
            let state = states.shift_remove(h).unwrap_or_else(|| HostState::new(h));
            let sem = sem.clone();
            let run_once = &run_once;
            let lockstep = lockstep.as_ref();
            futures.push(async move {
                let mut state = state;
                state.permit = sem.acquire_owned().await.ok();
                state.ended = false;
                state.peer_failed = false;
                state.aborted = false;
                state.protected = 0;
                self.run_play_on_host(play, &mut state, run_once, lockstep, release_id)
                    .await;
                if let Some(ls) = lockstep {
                    ls.leave(&state.name);
                }
                run_once.finished(&state.name);
                state.permit = None;
                state
            });
        }
        for s in futures::future::join_all(futures).await {
            states.insert(s.name.clone(), s);
        }
        lockstep.is_some_and(|l| l.aborted())
    }

    /// Recap counts, connections closed.
    pub(super) async fn finish(
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

    pub(super) async fn run_play_on_host(
        &self,
        play: &Play,
        st: &mut HostState,
        run_once: &run_once::RunOnce,
        lockstep: Option<&lockstep::Lockstep>,
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
            match self.connect(&st.name, play, &play_layers, None).await {
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
                    // Unreachable: fatal to the others under any_errors_fatal,
                    // not counted by max_fail_percentage (as in Ansible).
                    self.lockstep_step(lockstep, st, false, play.any_errors_fatal)
                        .await;
                    return;
                }
            }
        }
        if play.gather_facts
            && st.facts.is_none()
            && let Err(e) = self.gather_facts(play, st, &play_layers).await
        {
            self.fail_host(st, "Gathering Facts", &play.loc.to_string(), &e);
            self.lockstep_step(lockstep, st, true, play.any_errors_fatal)
                .await;
            return;
        }
        self.hostvars.publish(&st.name, &st.facts, &st.runtime);
        // Gathering facts is a task every host of the batch runs.
        if play.gather_facts
            && !self
                .lockstep_step(lockstep, st, true, play.any_errors_fatal)
                .await
        {
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
            lockstep,
        };
        self.run_tasks(&ctx, &play.tasks, st).await;
        if let Some(ls) = lockstep {
            ls.leave(&st.name);
        }
        if !st.failed {
            self.flush_handlers(&ctx, st).await;
        }
        if st.gate_failure.is_some() {
            // A failed deploy gate: roll back now, not after the other hosts' plays.
            self.finish_release(st).await;
        }
    }

    pub(super) fn fail_host(&self, st: &mut HostState, task: &str, loc: &str, msg: &str) {
        st.failed = true;
        st.stats.failed += 1;
        self.reporter
            .task_result(&st.name, task, loc, Status::Failed, Some(msg), &[], None);
    }
}

/// Whether a play's hosts must meet after every task: `any_errors_fatal` or
/// `max_fail_percentage` on the play, or `any_errors_fatal` on any task.
fn needs_lockstep(play: &Play) -> bool {
    fn any_fatal(tasks: &[Task]) -> bool {
        tasks.iter().any(|t| {
            t.any_errors_fatal == Some(true)
                || match &t.kind {
                    TaskKind::Block {
                        block,
                        rescue,
                        always,
                    } => any_fatal(block) || any_fatal(rescue) || any_fatal(always),
                    TaskKind::IncludeTasks {
                        tasks: Some(inner), ..
                    } => any_fatal(inner),
                    _ => false,
                }
        })
    }
    play.any_errors_fatal || play.max_fail_percentage.is_some() || any_fatal(&play.tasks)
}
