//! Releases and deploy gates: where a host keeps its release state, the
//! recorder of this run's release, writing it at the end, and the deploy
//! gates (a healthcheck wait or a `deployer_gate` task) whose failure rolls
//! the host back.

use super::*;

/// A deploy gate: a `docker_compose_v2` task with `wait: true` (its services
/// must become healthy), or a `uri`/`wait_for` task whose vars set
/// `deployer_gate: true`. A task var, not a tag: Ansible accepts and ignores
/// it, and `--tags`/`--skip-tags` cannot deselect a gate by accident.
pub(super) fn is_deploy_gate(
    t: &Task,
    module: &str,
    args: &crate::yaml::Node,
    ctx: &Arc<VarContext>,
) -> bool {
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

    pub(super) fn new_recorder(
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
    /// How `host` would be reached (its connection settings resolved and
    /// checked), without contacting it.
    pub fn plan_connection(&self, host: &str) -> Result<(), String> {
        let (play, _) = self.host_context(host)?;
        let pl = self.play_layers(&play)?;
        self.connect_plan(host, &play, &pl).map(|_| ())
    }

    pub async fn connect_host(&self, host: &str) -> Result<Connection, String> {
        let (play, _) = self.host_context(host)?;
        let pl = self.play_layers(&play)?;
        self.connect(host, &play, &pl, None).await
    }

    /// End of the run on one host: write its release when it changed, then
    /// roll back if a deploy gate failed after changes.
    pub(super) async fn finish_release(&self, st: &mut HostState) {
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
