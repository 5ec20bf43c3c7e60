//! What is known of a host before its tasks: gathered facts (one script)
//! and the play's file observations, prefetched in one batch.

use super::*;

/// The paths a play will look at, and the `become` to observe them with.
pub(super) type Prefetch = (Vec<(String, Want)>, Option<Become>);

impl Engine {
    pub(super) async fn gather_facts(
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
        let interp = python_interpreter(&ctx);
        st.facts = Some(facts_layer(
            &out.stdout_str(),
            &play.gather_subset,
            interp.as_deref(),
        )?);
        Ok(())
    }

    pub(super) async fn prefetch(&self, play: &Play, st: &mut HostState, pl: &PlayLayers) {
        let Some((reqs, b)) = self.prefetch_requests(play, st, pl) else {
            return;
        };
        if let Some(conn) = st.conn.clone() {
            // A failed prefetch only costs speed: modules observe on demand.
            let _ = st.observed.fetch(&conn, b.as_ref(), &reqs).await;
        }
    }

    /// Every file path the play's selected tasks and its handlers will look
    /// at (as far as it can be known before they run), and the `become` to
    /// observe them with. `None`: nothing to prefetch.
    pub(super) fn prefetch_requests(
        &self,
        play: &Play,
        st: &HostState,
        pl: &PlayLayers,
    ) -> Option<Prefetch> {
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
            return None;
        }
        let ctx = self.context(play, pl, st, None);
        let b = self.become_for(play, None, &ctx).ok()?;
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
        Some((reqs, b))
    }
}

/// The facts script (also appended to the run's first execution on a host
/// by run/session.rs, to save a round trip).
pub(super) const FACTS_SCRIPT: &str = crate::facts::SCRIPT;

/// The facts layer from [`FACTS_SCRIPT`]'s output: every fact as
/// `ansible_NAME` and under `ansible_facts`, limited to the play's
/// `gather_subset`.
pub(super) fn facts_layer(
    stdout: &str,
    subset: &[String],
    interpreter: Option<&str>,
) -> Result<Layer, String> {
    let all = crate::facts::parse(stdout, interpreter);
    let facts = crate::facts::select(&all, subset)?;
    Ok(facts_to_layer(facts))
}

/// The host's `ansible_python_interpreter`, when set (the `python` fact's
/// `executable`).
pub(super) fn python_interpreter(ctx: &Arc<VarContext>) -> Option<String> {
    let v = ctx
        .lookup("ansible_python_interpreter")
        .filter(|v| !v.is_undefined() && !v.is_none())
        .map(|v| v.to_string());
    let _ = ctx.take_error();
    v
}

/// `ansible_NAME` variables and `ansible_facts` for facts without the prefix.
fn facts_to_layer(facts: serde_json::Map<String, Json>) -> Layer {
    let mut layer = Layer::new();
    for (k, v) in &facts {
        if k == "gather_subset" || k == "module_setup" {
            layer.insert(k.clone(), VarValue::Value(crate::vars::json_to_value(v)));
            continue;
        }
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

pub(super) fn py_repr(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}
