//! A module task: its loop items, each item's module call (with the
//! release's save hook), `changed_when`/`failed_when`, and the registered
//! result shaped as Ansible shapes it (`results` for a loop).

use super::*;

impl Engine {
    /// Runs one module task (with its loop) and returns what it left on the
    /// host: its registered value, the variables it set, whether it failed.
    pub(super) async fn run_module_task(
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
        // Boolean keywords given as templates, rendered for this host.
        let resolved;
        let t = if t.templated_flags.is_empty() {
            t
        } else {
            match resolve_templated_flags(t, &base_ctx) {
                Ok(r) => {
                    resolved = r;
                    &resolved
                }
                Err(e) => {
                    self.fail_host(st, &name, &loc, &e);
                    return run_once::Shared {
                        registered: Json::Null,
                        facts: Vec::new(),
                        failed: true,
                    };
                }
            }
        };
        let display_name = base_ctx
            .render_string(&name)
            .unwrap_or_else(|_| name.clone());
        self.reporter.task_start(&st.name, &display_name, &loc);
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
            let (status, res) = self.run_item_until(pc, t, module, args, &ctx, st).await;
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
                for (k, n) in &res.var_nodes {
                    st.runtime.insert(k.clone(), VarValue::Node(n.clone()));
                }
            }
            results.push(rj);
            if any_failed && !t.ignore_errors && !looped {
                break;
            }
        }
        let registered = if looped && results.is_empty() {
            // As Ansible: a loop over nothing is the task skipped.
            self.reporter.task_result(
                &st.name,
                &display_name,
                &loc,
                Status::Skipped,
                None,
                &[],
                None,
            );
            json!({
                "results": [], "changed": false, "skipped": true,
                "skipped_reason": "No items in the list",
            })
        } else if looped {
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
                // As Ansible's recap: an ignored failure also counts as ok,
                // and as changed when its result says so (a failed command).
                st.stats.ignored += 1;
                st.stats.ok += 1;
                if registered.get("changed").and_then(Json::as_bool) == Some(true) {
                    st.stats.changed += 1;
                }
            } else {
                st.failed = true;
                st.stats.failed += 1;
                // A task stopped by SIGINT/SIGTERM may have changed its host
                // before it was stopped (a file written, its result not yet
                // read): its notifications stay pending, so the next apply
                // fires the handlers (a restart too many is safe, one too few
                // is not).
                if self.interrupted() {
                    for n in &t.notify {
                        let n = base_ctx.render_string(n).unwrap_or_else(|_| n.clone());
                        st.notified.insert(n);
                    }
                }
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

    /// One item, retried as `until`/`retries`/`delay` say (Ansible's
    /// attempt loop: `retries` extra attempts, default 3 with `until`; the
    /// condition sees the result under the register name; out of attempts,
    /// the result fails).
    async fn run_item_until(
        &self,
        pc: &PlayCtx<'_>,
        t: &Task,
        module: &str,
        args: &crate::yaml::Node,
        ctx: &Arc<VarContext>,
        st: &mut HostState,
    ) -> (Status, ModuleResult) {
        if t.until.is_none() && t.retries.is_none() {
            return self.run_once_item(pc, t, module, args, ctx, st).await;
        }
        let number = |v: &Option<String>, default: i64| -> Result<i64, String> {
            let Some(text) = v else { return Ok(default) };
            let rendered = ctx.render_string(text)?;
            rendered
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("expected a number, got '{rendered}'"))
        };
        let retries = match number(&t.retries, 3) {
            Ok(r) => 1 + r.max(0),
            Err(e) => {
                return (
                    Status::Failed,
                    ModuleResult::failed(format!("retries: {e}")),
                );
            }
        };
        let delay = match number(&t.delay, 5) {
            Ok(d) if d < 0 => 1,
            Ok(d) => d,
            Err(e) => return (Status::Failed, ModuleResult::failed(format!("delay: {e}"))),
        };
        let until: Vec<String> = t
            .until
            .clone()
            .unwrap_or_else(|| vec!["not __deployer_result.failed".into()]);
        let mut attempt = 1;
        loop {
            let (status, mut res) = self.run_once_item(pc, t, module, args, ctx, st).await;
            if status == Status::Skipped || status == Status::Unreachable {
                return (status, res);
            }
            if retries > 1 {
                res.data.insert("attempts".into(), json!(attempt));
            }
            let mut layer = Layer::new();
            let value = VarValue::Value(crate::vars::json_to_value(&res.to_json()));
            if let Some(r) = &t.register {
                layer.insert(r.clone(), value.clone());
            }
            layer.insert("__deployer_result".into(), value);
            let c = ctx.extended(layer);
            let mut done = true;
            for cond in &until {
                match c.condition(cond) {
                    Ok(true) => {}
                    Ok(false) => {
                        done = false;
                        break;
                    }
                    Err(e) => return (Status::Failed, ModuleResult::failed(format!("until: {e}"))),
                }
            }
            if done {
                return (status, res);
            }
            if attempt >= retries {
                res.failed = true;
                res.data.insert("attempts".into(), json!(retries - 1));
                if res.msg.is_none() {
                    res.msg = Some(format!(
                        "the until condition was still false after {} attempts",
                        retries
                    ));
                }
                return (Status::Failed, res);
            }
            self.reporter.warning(&format!(
                "{}: {}: FAILED - RETRYING ({} retries left)",
                st.name,
                t.display_name(),
                retries - attempt
            ));
            attempt += 1;
            if self
                .until_interrupted(async {
                    tokio::time::sleep(std::time::Duration::from_secs(delay as u64)).await;
                    Ok::<(), String>(())
                })
                .await
                .is_err()
            {
                return (Status::Failed, ModuleResult::failed("interrupted"));
            }
        }
    }

    /// The items of a task's `loop`, or None without one.
    pub(super) fn loop_items(
        &self,
        ctx: &Arc<VarContext>,
        t: &Task,
    ) -> Result<Option<Vec<Value>>, String> {
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
    pub(super) async fn loop_pause(&self, t: &Task) {
        if let Some(p) = t.loop_pause.filter(|p| *p > 0.0) {
            let _ = self
                .until_interrupted(async {
                    tokio::time::sleep(std::time::Duration::from_secs_f64(p)).await;
                    Ok(())
                })
                .await;
        }
    }

    pub(super) async fn run_once_item(
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
        // `delegate_to`: the control machine for localhost, else a connection
        // of its own to that inventory host (the task's variables stay this host's).
        let delegate = match &t.delegate_to {
            None => None,
            Some(d) => match ctx.render_string(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    return (
                        Status::Failed,
                        ModuleResult::failed(format!("delegate_to: {e}")),
                    );
                }
            },
        };
        let local;
        let conn: &Connection = if let Some(d) = &delegate {
            if d == "localhost" || d == "127.0.0.1" || d == &st.name {
                local = if d == &st.name {
                    match &st.conn {
                        Some(_) => None,
                        None => {
                            return (Status::Unreachable, ModuleResult::failed("not connected"));
                        }
                    }
                } else {
                    Some(Connection::local("localhost"))
                };
            } else if self.inventory.hosts.contains_key(d) {
                match self.connect(d, pc.play, pc.layers, None).await {
                    Ok(c) => local = Some(c),
                    Err(e) => {
                        return (
                            Status::Failed,
                            ModuleResult::failed(format!("delegate_to '{d}': {e}")),
                        );
                    }
                }
            } else {
                return (
                    Status::Failed,
                    ModuleResult::failed(format!(
                        "delegate_to: host '{d}' is not in the inventory"
                    )),
                );
            }
            match (&local, &st.conn) {
                (Some(c), _) => c,
                (None, Some(c)) => c,
                (None, None) => {
                    return (Status::Unreachable, ModuleResult::failed("not connected"));
                }
            }
        } else {
            match &st.conn {
                Some(c) => c,
                None => return (Status::Unreachable, ModuleResult::failed("not connected")),
            }
        };
        let check = t.check_mode.unwrap_or(self.opts.check);
        let delegated = delegate.as_deref().is_some_and(|d| d != st.name);
        let on_control = delegate
            .as_deref()
            .is_some_and(|d| d == "localhost" || d == "127.0.0.1");
        // A task forced into check mode (`check_mode: true`) in a real run
        // plans against its own reads: what it would write must not become
        // what later tasks believe the host holds.
        let own_reads = delegated || (check && !self.opts.check);
        let restamp_later = st.restamp_later && !own_reads;
        let mut local_obs = Observations::default();
        let observed = if own_reads {
            &mut local_obs
        } else {
            &mut st.observed
        };
        let mut mctx = ModuleCtx {
            conn,
            become_: if on_control { None } else { become_ },
            check,
            diff: t.diff.unwrap_or(self.opts.diff),
            observed,
            vars: ctx,
            task: t,
            playbook_dir: &self.playbook_dir,
            release: if delegated {
                None
            } else {
                st.release.as_deref().map(|r| r as &dyn ReleaseStage)
            },
            saved: Vec::new(),
            images: &self.opts.images,
            restamp_later,
            progress: crate::report::TaskProgress::new(
                &self.reporter,
                &st.name,
                &ctx.render_string(&t.display_name())
                    .unwrap_or_else(|_| t.display_name()),
            ),
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
    pub(super) fn eval_with_result(
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
}

/// A copy of `t` with its templated boolean keywords rendered for one host.
fn resolve_templated_flags(t: &Task, ctx: &Arc<VarContext>) -> Result<Task, String> {
    let mut out = t.clone();
    for (k, tmpl) in &t.templated_flags {
        let v = ctx.render_value(tmpl).map_err(|e| format!("{k}: {e}"))?;
        let b = match v.as_str() {
            Some(s) => crate::modules::args::parse_bool(&Json::String(s.to_string()))
                .ok_or_else(|| format!("{k}: expected a boolean, the template gave '{s}'"))?,
            None => v.is_true(),
        };
        match k.as_str() {
            "no_log" => out.no_log = b,
            "ignore_errors" => out.ignore_errors = b,
            "become" => out.use_become = Some(b),
            "check_mode" => out.check_mode = Some(b),
            "diff" => out.diff = Some(b),
            _ => {
                return Err(format!(
                    "{k}: a templated value is not supported yet by deployer"
                ));
            }
        }
    }
    out.templated_flags.clear();
    Ok(out)
}

/// The variables of item `i` of a loop over `items`: the loop variable,
/// `index_var`, `ansible_loop_var`, and with `extended` the `ansible_loop`
/// mapping Ansible defines (index, index0, revindex, revindex0, first, last,
/// length, allitems, previtem, nextitem).
pub(super) fn loop_layer(t: &Task, i: usize, items: &[Value]) -> Layer {
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
