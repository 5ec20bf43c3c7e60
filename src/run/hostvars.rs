//! `hostvars`: every inventory host's variables, as Ansible's `HostVars`
//! (`lib/ansible/vars/hostvars.py`) gives them to templates. For a host it is
//! what `VariableManager.get_vars(host=...)` returns without a play: the
//! inventory's group and host variables, the host's gathered facts, its
//! `set_fact` and registered values, the extra variables (`-e`) and the
//! magic variables of the host (`inventory_hostname`, `group_names`,
//! `groups`...). Play, role and task variables are not in it, as in Ansible.
//!
//! Each host's values are resolved lazily, in that host's own context (a
//! group variable `"{{ inventory_hostname }}-x"` read through
//! `hostvars['b']` gives `b-x`). Hosts publish their facts and runtime values
//! to a store shared by the run ([`HostvarsStore`]) after gathering facts and
//! after every task; a play whose text mentions `hostvars` runs its hosts in
//! lock step (run/scheduling.rs), as Ansible's linear strategy does, so a host
//! reads what the others set in earlier tasks.

use std::sync::Mutex;

use minijinja::value::{Enumerator, Object, ObjectRepr};

use super::*;

/// What one host has added to its inventory variables during the run.
#[derive(Clone, Default)]
struct Snapshot {
    facts: Option<Layer>,
    runtime: Layer,
}

/// The facts and runtime values of every host of the run, by host name.
#[derive(Default)]
pub struct HostvarsStore {
    hosts: Mutex<HashMap<String, Snapshot>>,
    /// `groups` (every group's hosts), built once: the inventory does not
    /// change during a run, and building it for every task of every host
    /// grew with hosts x groups x tasks.
    groups: std::sync::OnceLock<Value>,
}

impl HostvarsStore {
    pub(super) fn publish(&self, name: &str, facts: &Option<Layer>, runtime: &Layer) {
        if let Ok(mut h) = self.hosts.lock() {
            h.insert(
                name.to_string(),
                Snapshot {
                    facts: facts.clone(),
                    runtime: runtime.clone(),
                },
            );
        }
    }

    /// The `groups` magic variable of `inventory` (the run's one inventory).
    fn groups(&self, inventory: &Inventory) -> Value {
        self.groups
            .get_or_init(|| {
                let groups: serde_json::Map<String, Json> = inventory
                    .groups
                    .keys()
                    .map(|g| (g.clone(), json!(inventory.group_hosts(g))))
                    .collect();
                crate::vars::json_to_value(&Json::Object(groups))
            })
            .clone()
    }

    fn get(&self, name: &str) -> Snapshot {
        self.hosts
            .lock()
            .ok()
            .and_then(|h| h.get(name).cloned())
            .unwrap_or_default()
    }
}

/// The `hostvars` mapping of one task's context.
pub(super) struct HostVars {
    inventory: Arc<Inventory>,
    check: bool,
    diff: bool,
    extra_vars: Vars,
    env: Arc<Environment<'static>>,
    vault: Arc<VaultAccess>,
    store: Arc<HostvarsStore>,
    playbook_dir: PathBuf,
    cache: Mutex<HashMap<String, Value>>,
}

impl std::fmt::Debug for HostVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hostvars")
    }
}

impl Engine {
    pub(super) fn hostvars(&self) -> Value {
        Value::from_object(HostVars {
            inventory: self.inventory.clone(),
            check: self.opts.check,
            diff: self.opts.diff,
            extra_vars: self.opts.extra_vars.clone(),
            env: self.env.clone(),
            vault: self.vault.clone(),
            store: self.hostvars.clone(),
            playbook_dir: self.playbook_dir.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }
}

/// `hostvars` of an inventory outside a run: inventory variables only (no
/// facts, no runtime values, no extra variables). For tests that compare
/// template rendering with Ansible's (tests/template_oracle.rs).
pub fn inventory_hostvars(
    inventory: Arc<Inventory>,
    env: Arc<Environment<'static>>,
    vault: Arc<VaultAccess>,
) -> Value {
    Value::from_object(HostVars {
        inventory,
        check: false,
        diff: false,
        extra_vars: Vars::default(),
        env,
        vault,
        store: Arc::new(HostvarsStore::default()),
        playbook_dir: PathBuf::new(),
        cache: Mutex::new(HashMap::new()),
    })
}

/// The inventory's variables of a host: its groups' (`all` first, children
/// after parents) then its own.
pub(super) fn inventory_layers(inventory: &Inventory, host: &str) -> Vec<Layer> {
    let mut layers = Vec::new();
    for g in inventory.host_groups(host) {
        if let Some(group) = inventory.groups.get(&g) {
            layers.push(layer_from_vars(&group.vars));
        }
    }
    if let Some(h) = inventory.hosts.get(host) {
        layers.push(layer_from_vars(&h.vars));
    }
    layers
}

/// The facts layer of a host: its gathered facts, or Ansible's empty
/// `ansible_facts` mapping before any gathering.
pub(super) fn facts_or_empty(facts: &Option<Layer>) -> Layer {
    match facts {
        Some(f) => f.clone(),
        None => Layer::from_iter([(
            "ansible_facts".to_string(),
            VarValue::Value(crate::vars::json_to_value(&json!({}))),
        )]),
    }
}

/// The magic variables that belong to a host rather than to a play.
pub(super) fn host_magic_vars(
    inventory: &Inventory,
    store: &HostvarsStore,
    (check, diff): (bool, bool),
    playbook_dir: &Path,
    host: &str,
) -> Layer {
    let mut m = Layer::new();
    let v = |x: Json| VarValue::Value(crate::vars::json_to_value(&x));
    let group_names: Vec<String> = inventory
        .host_groups(host)
        .into_iter()
        .filter(|g| g != "all" && g != "ungrouped")
        .collect();
    m.insert("inventory_hostname".into(), v(json!(host)));
    m.insert(
        "inventory_hostname_short".into(),
        v(json!(host.split('.').next().unwrap_or(host))),
    );
    m.insert("groups".into(), VarValue::Value(store.groups(inventory)));
    m.insert("group_names".into(), v(json!(group_names)));
    m.insert(
        "playbook_dir".into(),
        v(json!(playbook_dir.display().to_string())),
    );
    m.insert("ansible_check_mode".into(), v(json!(check)));
    m.insert("ansible_diff_mode".into(), v(json!(diff)));
    m
}

impl Object for HostVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if !self.inventory.hosts.contains_key(name) {
            // Undefined, as Ansible's `hostvars['unknown']`.
            return None;
        }
        if let Ok(c) = self.cache.lock()
            && let Some(v) = c.get(name)
        {
            return Some(v.clone());
        }
        let snap = self.store.get(name);
        let mut layers = inventory_layers(&self.inventory, name);
        layers.push(facts_or_empty(&snap.facts));
        layers.push(host_magic_vars(
            &self.inventory,
            &self.store,
            (self.check, self.diff),
            &self.playbook_dir,
            name,
        ));
        layers.push(snap.runtime);
        layers.push(layer_from_vars(&self.extra_vars));
        let ctx = VarContext::new(layers, self.env.clone(), self.vault.clone());
        let v = ctx.value();
        if let Ok(mut c) = self.cache.lock() {
            c.insert(name.to_string(), v.clone());
        }
        Some(v)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.inventory
                .hosts
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// Whether a play reads `hostvars` anywhere: its tasks and handlers (keywords
/// and arguments), its variables, its roles' variables and template files,
/// and the inventory's variables.
pub(super) fn play_mentions_hostvars(play: &Play, inventory: &Inventory) -> bool {
    fn node(n: &crate::yaml::Node) -> bool {
        use crate::yaml::Yaml;
        match &n.value {
            Yaml::Str(s) => s.contains("hostvars"),
            Yaml::Seq(items) => items.iter().any(node),
            Yaml::Map(m) => m.iter().any(|(k, v)| node(k) || node(v)),
            _ => false,
        }
    }
    fn vars(v: &Vars) -> bool {
        v.values().any(node)
    }
    fn text(s: &str) -> bool {
        s.contains("hostvars")
    }
    fn dir_mentions(dir: &Path, depth: usize) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        rd.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                depth < 8 && dir_mentions(&p, depth + 1)
            } else {
                std::fs::read(&p).is_ok_and(|b| b.windows(8).any(|w| w == b"hostvars"))
            }
        })
    }
    if vars(&play.vars) || play.vars_files.iter().any(|(f, _)| text(f)) {
        return true;
    }
    if inventory.groups.values().any(|g| vars(&g.vars))
        || inventory.hosts.values().any(|h| vars(&h.vars))
    {
        return true;
    }
    let mut all = crate::project::flatten_tasks(&play.tasks);
    all.extend(crate::project::flatten_tasks(&play.handlers));
    let mut roles: Vec<PathBuf> = Vec::new();
    for t in &all {
        let mentions = t.when.iter().any(|w| text(w))
            || t.loop_items.as_ref().is_some_and(node)
            || vars(&t.vars)
            || t.scope.vars.iter().any(vars)
            || t.changed_when.iter().flatten().any(|w| text(w))
            || t.failed_when.iter().flatten().any(|w| text(w))
            || t.until.iter().flatten().any(|w| text(w))
            || t.delegate_to.as_deref().is_some_and(text)
            || t.environment.iter().any(node)
            || t.templated_flags.iter().any(|(_, s)| text(s))
            || match &t.kind {
                TaskKind::Module { args, .. } => node(args),
                TaskKind::IncludeTasks { file, .. } => text(file),
                _ => false,
            };
        if mentions {
            return true;
        }
        if let Some(role) = &t.scope.role {
            for r in role.chain() {
                if vars(&r.defaults) || vars(&r.vars) || vars(&r.params) {
                    return true;
                }
                if !roles.contains(&r.path) {
                    roles.push(r.path.clone());
                }
            }
        }
    }
    roles.iter().any(|r| dir_mentions(&r.join("templates"), 0))
        || dir_mentions(&play.base_dir.join("templates"), 0)
}
