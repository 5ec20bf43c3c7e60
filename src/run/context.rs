//! Variables as a task sees them: the play's layers (vars, vars_files, role
//! defaults and vars), the host's layers with magic variables, and whom a task
//! becomes.

use super::*;

impl Engine {
    /// Layers that do not change during a play: play vars and vars_files.
    pub(super) fn play_layers(&self, play: &Play) -> Result<PlayLayers, String> {
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

    pub(super) fn context(
        &self,
        play: &Play,
        pl: &PlayLayers,
        st: &HostState,
        task: Option<&Task>,
    ) -> Arc<VarContext> {
        use std::borrow::Cow;
        // Layers the play and the host share are borrowed, not copied.
        let mut layers: Vec<Cow<'_, Layer>> = vec![Cow::Borrowed(&pl.role_defaults)];
        let role_chain = task
            .and_then(|t| t.scope.role.as_ref())
            .map(|r| r.chain())
            .unwrap_or_default();
        // The task's own role (and the roles that pulled it in) win over others'.
        for r in role_chain.iter().rev() {
            layers.push(Cow::Owned(layer_from_vars(&r.defaults)));
        }
        layers.extend(
            hostvars::inventory_layers(&self.inventory, &st.name)
                .into_iter()
                .map(Cow::Owned),
        );
        layers.push(Cow::Owned(hostvars::facts_or_empty(&st.facts)));
        layers.push(Cow::Owned(self.magic_vars(play, st, task)));
        layers.push(Cow::Borrowed(&pl.vars));
        layers.push(Cow::Borrowed(&pl.files));
        layers.push(Cow::Borrowed(&pl.role_vars));
        for r in role_chain.iter().rev() {
            layers.push(Cow::Owned(layer_from_vars(&r.vars)));
        }
        if let Some(t) = task {
            for v in &t.scope.vars {
                layers.push(Cow::Owned(layer_from_vars(v)));
            }
            layers.push(Cow::Owned(layer_from_vars(&t.vars)));
        }
        layers.push(Cow::Borrowed(&st.runtime));
        for r in role_chain.iter().rev() {
            layers.push(Cow::Owned(layer_from_vars(&r.params)));
        }
        layers.push(Cow::Owned(layer_from_vars(&self.opts.extra_vars)));
        let refs: Vec<&Layer> = layers.iter().map(|l| l.as_ref()).collect();
        VarContext::from_layers(&refs, self.env.clone(), self.vault.clone())
    }

    pub(super) fn magic_vars(&self, play: &Play, st: &HostState, task: Option<&Task>) -> Layer {
        let mut m = hostvars::host_magic_vars(
            &self.inventory,
            &self.hostvars,
            (self.opts.check, self.opts.diff),
            &self.playbook_dir,
            &st.name,
        );
        let v = |x: Json| VarValue::Value(crate::vars::json_to_value(&x));
        m.insert("hostvars".into(), VarValue::Value(self.hostvars()));
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

    pub(super) fn become_for(
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
        // As Ansible's PlayContext.set_task_and_variable_override: the
        // `ansible_become` / `ansible_become_user` variables (inventory, vars,
        // -e) win over the task's and the play's `become` / `become_user`
        // keywords (a task's `become: false` does not undo an inventory's
        // `ansible_become: true`).
        let on = match looked_up? {
            Some(b) => b,
            None => task.and_then(|t| t.use_become).unwrap_or(play.use_become),
        };
        if !on {
            return Ok(None);
        }
        let user = ctx
            .lookup("ansible_become_user")
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map(|v| v.to_string())
            .or_else(|| task.and_then(|t| t.become_user.clone()))
            .or_else(|| play.become_user.clone())
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
}
