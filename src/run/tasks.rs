//! Task execution: tag selection, a task list in order, one task (blocks with
//! rescue/always, includes, meta actions, `when`), and `run_once` tasks, which
//! one host runs for the play.

use super::*;

/// The short name of a task's module (`command` for
/// `ansible.builtin.command`), `None` for other tasks.
fn module_of(t: &Task) -> Option<&'static str> {
    match &t.kind {
        TaskKind::Module { name, .. } => crate::modules::registry::find(name).map(|m| m.name()),
        _ => None,
    }
}

/// Whether `t` is a command (or shell) on this host, without a loop, and the
/// next task after it that touches the host — tasks that only evaluate on
/// the controller (`assert`, `debug`, `set_fact`, `fail`) skipped — is one
/// too. A command may change any file, so what earlier tasks observed is
/// checked after it (one `stat` in its execution); when another command comes
/// next, that one's check covers both. If the next command does not run after
/// all (`when`), the first task that reads the host checks first (one
/// execution more): never a stale observation, at worst a round trip.
fn command_follows(t: &Task, rest: &[Task]) -> bool {
    let is_command = |t: &Task| {
        matches!(module_of(t), Some("command" | "shell"))
            && t.delegate_to.is_none()
            && t.loop_items.is_none()
    };
    if !is_command(t) {
        return false;
    }
    rest.iter()
        .find(|n| !matches!(module_of(n), Some("assert" | "debug" | "set_fact" | "fail")))
        .is_some_and(is_command)
}

impl Engine {
    /// Tag selection with Ansible's rules: `always` runs unless skipped by name,
    /// `never` runs only when asked for by one of its other tags.
    pub(super) fn selected(&self, t: &Task) -> bool {
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

    pub(super) fn run_tasks<'a>(
        &'a self,
        ctx: &'a PlayCtx<'a>,
        tasks: &'a [Task],
        st: &'a mut HostState,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            for (i, t) in tasks.iter().enumerate() {
                if self.interrupted() {
                    st.failed = true;
                }
                if st.failed || st.ended {
                    return;
                }
                st.restamp_later = command_follows(t, &tasks[i + 1..]);
                self.run_task(ctx, t, st).await;
                st.restamp_later = false;
                // What the task set is visible to the others' `hostvars`.
                self.hostvars.publish(&st.name, &st.facts, &st.runtime);
                if ctx.lockstep.is_some() && !st.in_handlers && self.is_step(t) {
                    // `run_once` makes a failure fatal to all, as linear.py does.
                    let fatal = (t.any_errors_fatal.unwrap_or(ctx.play.any_errors_fatal)
                        || t.run_once)
                        && !t.ignore_errors;
                    let settled = st.protected == 0;
                    self.lockstep_step(ctx.lockstep, st, settled, fatal).await;
                }
            }
        })
    }

    /// A task all hosts of a batch meet after: every task but a block (its
    /// tasks are), and not one that tags leave out.
    fn is_step(&self, t: &Task) -> bool {
        match &t.kind {
            TaskKind::Block { .. } => false,
            TaskKind::Module { .. } | TaskKind::IncludeTasks { .. } => self.selected(t),
            _ => true,
        }
    }

    /// After a step (a task; connecting and gathering facts): the batch's
    /// verdict when the play runs in lock step (run/lockstep.rs). `st.failed`
    /// says whether the step failed on this host (it was not failed before);
    /// `settled`: no `rescue`/`always` can answer that failure any more.
    /// False: this host stops here.
    pub(super) async fn lockstep_step(
        &self,
        ls: Option<&lockstep::Lockstep>,
        st: &mut HostState,
        settled: bool,
        fatal: bool,
    ) -> bool {
        let Some(ls) = ls else {
            return true;
        };
        let failed = st.failed;
        match ls
            .step(&st.name, failed, settled, fatal, &mut st.permit)
            .await
        {
            lockstep::Verdict::Continue => !failed,
            lockstep::Verdict::PeerFailed => {
                if !st.failed {
                    st.failed = true;
                    st.peer_failed = true;
                }
                false
            }
            lockstep::Verdict::Abort => {
                st.failed = true;
                st.aborted = true;
                false
            }
        }
    }

    pub(super) async fn run_task(&self, pc: &PlayCtx<'_>, t: &Task, st: &mut HostState) {
        let loc = t.loc.to_string();
        match &t.kind {
            TaskKind::Block {
                block,
                rescue,
                always,
            } => {
                let guarded = !rescue.is_empty() || !always.is_empty();
                st.protected += usize::from(guarded);
                self.run_tasks(pc, block, st).await;
                st.protected -= usize::from(guarded);
                if st.aborted {
                    // max_fail_percentage: not even rescue or always runs.
                    return;
                }
                if st.failed && !rescue.is_empty() {
                    st.failed = false;
                    // Failed by another host's failure (any_errors_fatal): no
                    // failure of its own to take back.
                    if !std::mem::take(&mut st.peer_failed) {
                        st.stats.failed = st.stats.failed.saturating_sub(1);
                        st.stats.rescued += 1;
                    }
                    st.protected += usize::from(!always.is_empty());
                    self.run_tasks(pc, rescue, st).await;
                    st.protected -= usize::from(!always.is_empty());
                    if st.aborted {
                        return;
                    }
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
            TaskKind::ResetConnection => {
                // As Ansible's: no `when` (it resets regardless), no result
                // reported, nothing counted.
                if self.opts.check {
                    // Check mode changes nothing, connections included.
                    return;
                }
                let Some(old) = st.conn.clone() else { return };
                match old.reset().await {
                    Ok(Some(fresh)) => {
                        st.conn = Some(Arc::new(fresh));
                        if let Ok(old) = Arc::try_unwrap(old) {
                            old.close().await;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        st.stats.unreachable += 1;
                        st.failed = true;
                        self.reporter.task_result(
                            &st.name,
                            &t.display_name(),
                            &loc,
                            Status::Unreachable,
                            Some(&crate::secrets::mask(&e.to_string())),
                            &[],
                            None,
                        );
                    }
                }
                return;
            }
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
            TaskKind::IncludeTasks {
                file,
                tasks,
                dynamic,
            } => {
                if !st.in_handlers && !self.selected(t) {
                    return;
                }
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
                    // The file: fixed and loaded, or (templated, or not
                    // loading) chosen now, as Ansible reads it when the
                    // include runs.
                    let inner: &[Task] = match tasks {
                        Some(inner) => inner,
                        None => {
                            let name = if file.contains("{{") {
                                match c.render_string(file) {
                                    Ok(n) => n,
                                    Err(e) => {
                                        return self.fail_host(st, &t.display_name(), &loc, &e);
                                    }
                                }
                            } else {
                                file.clone()
                            };
                            match dynamic.iter().find(|d| d.name == name) {
                                Some(crate::project::IncludeChoice {
                                    tasks: Ok(inner), ..
                                }) => inner,
                                Some(crate::project::IncludeChoice { tasks: Err(e), .. }) => {
                                    return self.fail_host(st, &t.display_name(), &loc, e);
                                }
                                None => {
                                    return self.fail_host(
                                        st,
                                        &t.display_name(),
                                        &loc,
                                        &format!(
                                            "Could not find or access '{name}' (include_tasks '{file}': deployer reads the files such a name may give when the play is loaded, from the including file's directory and the role's tasks/; a templated directory is not supported yet)"
                                        ),
                                    );
                                }
                            }
                        }
                    };
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
            // As Ansible: throttle does not apply to a run_once task.
            self.run_task_once(pc, t, st).await;
            return;
        }
        let _permit = match self.throttle_permit(pc, t, st).await {
            Ok(p) => p,
            Err(e) => return self.fail_host(st, &t.display_name(), &loc, &e),
        };
        self.run_module_task(pc, t, st).await;
    }

    /// `throttle: N` (N > 0): waits until fewer than N hosts run this task,
    /// and holds the slot while this host runs it. The number is rendered
    /// with the host's variables, as Ansible's strategy does; the first host
    /// to reach the task sets the limit.
    async fn throttle_permit(
        &self,
        pc: &PlayCtx<'_>,
        t: &Task,
        st: &HostState,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, String> {
        let Some(text) = &t.throttle else {
            return Ok(None);
        };
        let ctx = self.context(pc.play, pc.layers, st, Some(t));
        let rendered = ctx
            .render_string(text)
            .map_err(|e| format!("Failed to convert the throttle value to an integer: {e}"))?;
        let n: i64 = rendered.trim().parse().map_err(|_| {
            format!("Failed to convert the throttle value to an integer: '{rendered}' is not one")
        })?;
        if n <= 0 {
            return Ok(None);
        }
        let sem = {
            let mut map = self.throttles.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(t as *const Task as usize)
                .or_insert_with(|| {
                    Arc::new(Semaphore::new((n as usize).min(Semaphore::MAX_PERMITS)))
                })
                .clone()
        };
        self.until_interrupted(async {
            sem.acquire_owned()
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .await
    }

    pub(super) fn conditions_hold(
        &self,
        ctx: &Arc<VarContext>,
        when: &[String],
    ) -> Result<bool, String> {
        for w in when {
            if !ctx.condition(w)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A `run_once` task: the play's first host runs it (see run/run_once.rs),
    /// the others wait for it and take its registered value, its variables
    /// and its failure, as Ansible does; only the host that ran it reports
    /// and counts it, and only its handlers are notified.
    pub(super) async fn run_task_once(&self, pc: &PlayCtx<'_>, t: &Task, st: &mut HostState) {
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
}
