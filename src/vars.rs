//! Variables of one host at one task: the layers in Ansible's precedence order,
//! resolved lazily. A variable's template is rendered only when something reads
//! it, with the same context, so variables can refer to other variables; a
//! vault value is decrypted only when read, and registered as a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use minijinja::Environment;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value};

use crate::project::Vars;
use crate::yaml::{Node, Yaml};

/// Key under which a whole-file vault vars file sits until it is decrypted.
pub const VAULT_FILE_MARKER: &str = "__deployer_vault_file__";

#[derive(Clone, Debug)]
pub enum VarValue {
    /// As written in a YAML file: templated and decrypted when read.
    Node(Node),
    /// Already a value: facts, registered results, `set_fact`, loop items.
    Value(Value),
}

/// Decrypts vault values on first use and caches the result for the run.
pub struct VaultAccess {
    passwords: Option<crate::vault::VaultPasswords>,
    files: Mutex<HashMap<PathBuf, Result<Vars, String>>>,
}

impl std::fmt::Debug for VaultAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultAccess")
    }
}

impl VaultAccess {
    pub fn new(passwords: Option<crate::vault::VaultPasswords>) -> VaultAccess {
        VaultAccess {
            passwords,
            files: Mutex::new(HashMap::new()),
        }
    }

    pub fn passwords(&self) -> Option<&crate::vault::VaultPasswords> {
        self.passwords.as_ref()
    }

    pub fn decrypt_text(&self, cipher: &str, origin: &str) -> Result<String, String> {
        let Some(pw) = &self.passwords else {
            return Err(format!(
                "{origin}: this value is vault-encrypted, but no vault password was given (use --vault-password-file, --vault-id or DEPLOYER_VAULT_PASSWORD_FILE)"
            ));
        };
        let plain = crate::vault::decrypt(cipher.trim().as_bytes(), pw, origin)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8(plain)
            .map_err(|_| format!("{origin}: decrypted vault value is not UTF-8"))?;
        crate::secrets::register(&text);
        Ok(text)
    }

    /// A whole-file vault vars file, decrypted and parsed once per run; every
    /// string in it is registered as a secret.
    pub fn vars_file(&self, path: &Path, cipher: &str) -> Result<Vars, String> {
        if let Ok(files) = self.files.lock()
            && let Some(r) = files.get(path)
        {
            return r.clone();
        }
        let result = (|| {
            let text = self.decrypt_text(cipher, &path.display().to_string())?;
            let node = crate::yaml::parse_str(&text, path).map_err(|e| e.to_string())?;
            register_strings(&node);
            crate::project::inventory::vars_from_map(&node, "a vault vars file")
                .map_err(|e| e.to_string())
        })();
        if let Ok(mut files) = self.files.lock() {
            files.insert(path.to_path_buf(), result.clone());
        }
        result
    }
}

fn register_strings(node: &Node) {
    match &node.value {
        Yaml::Str(s) => crate::secrets::register(s),
        Yaml::Seq(items) => items.iter().for_each(register_strings),
        Yaml::Map(m) => m.iter().for_each(|(_, v)| register_strings(v)),
        _ => {}
    }
}

/// The merged variables of one host for one task, as a minijinja object.
#[derive(Debug)]
pub struct VarContext {
    vars: IndexMap<String, VarValue>,
    /// Whole-file vaults in the layers, searched when a name is not found.
    vault_files: Vec<Node>,
    cache: Mutex<HashMap<String, Value>>,
    resolving: Mutex<Vec<String>>,
    /// The first error met while resolving a variable: minijinja's object
    /// protocol cannot return one, so the caller picks it up from here.
    pub error: Mutex<Option<String>>,
    env: Arc<Environment<'static>>,
    vault: Arc<VaultAccess>,
}

impl VarContext {
    pub fn new(
        layers: Vec<IndexMap<String, VarValue>>,
        env: Arc<Environment<'static>>,
        vault: Arc<VaultAccess>,
    ) -> Arc<VarContext> {
        let refs: Vec<&IndexMap<String, VarValue>> = layers.iter().collect();
        Self::from_layers(&refs, env, vault)
    }

    /// [`VarContext::new`] from borrowed layers, lowest precedence first: a
    /// name keeps the place it first appeared at and the value of the last
    /// layer that has it, and only those values are copied (a task's context
    /// is built from a dozen layers, most of them shared by every task).
    pub fn from_layers(
        layers: &[&IndexMap<String, VarValue>],
        env: Arc<Environment<'static>>,
        vault: Arc<VaultAccess>,
    ) -> Arc<VarContext> {
        let mut winners: IndexMap<&str, &VarValue> = IndexMap::new();
        let mut vault_files = Vec::new();
        for layer in layers {
            for (k, v) in layer.iter() {
                if k == VAULT_FILE_MARKER {
                    if let VarValue::Node(n) = v {
                        vault_files.push(n.clone());
                    }
                    continue;
                }
                winners.insert(k.as_str(), v);
            }
        }
        let vars: IndexMap<String, VarValue> = winners
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Arc::new(VarContext {
            vars,
            vault_files,
            cache: Mutex::new(HashMap::new()),
            resolving: Mutex::new(Vec::new()),
            error: Mutex::new(None),
            env,
            vault,
        })
    }

    /// The same variables with one more layer on top (loop items, a registered
    /// result for `changed_when`), sharing nothing mutable with `self`.
    pub fn extended(&self, layer: IndexMap<String, VarValue>) -> Arc<VarContext> {
        let mut vars = self.vars.clone();
        for (k, v) in layer {
            vars.insert(k, v);
        }
        Arc::new(VarContext {
            vars,
            vault_files: self.vault_files.clone(),
            cache: Mutex::new(HashMap::new()),
            resolving: Mutex::new(Vec::new()),
            error: Mutex::new(None),
            env: self.env.clone(),
            vault: self.vault.clone(),
        })
    }

    pub fn value(self: &Arc<Self>) -> Value {
        Value::from_dyn_object(self.clone())
    }

    pub fn env(&self) -> &Environment<'static> {
        &self.env
    }

    pub fn vault(&self) -> &Arc<VaultAccess> {
        &self.vault
    }

    pub fn take_error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    fn set_error(&self, msg: String) {
        if let Ok(mut e) = self.error.lock()
            && e.is_none()
        {
            *e = Some(msg);
        }
    }

    /// Reads one variable, rendering and decrypting as needed.
    pub fn lookup(self: &Arc<Self>, name: &str) -> Option<Value> {
        if let Ok(c) = self.cache.lock()
            && let Some(v) = c.get(name)
        {
            return Some(v.clone());
        }
        let raw = match self.vars.get(name) {
            Some(v) => v.clone(),
            None => self.from_vault_files(name)?,
        };
        {
            let Ok(mut r) = self.resolving.lock() else {
                return None;
            };
            if r.iter().any(|x| x == name) {
                let cycle = format!("{} -> {name}", r.join(" -> "));
                drop(r);
                self.set_error(format!("variable '{name}' refers to itself: {cycle}"));
                return None;
            }
            r.push(name.to_string());
        }
        let result = match raw {
            VarValue::Value(v) => Ok(v),
            VarValue::Node(n) => self.resolve_node(&n),
        };
        if let Ok(mut r) = self.resolving.lock() {
            r.pop();
        }
        match result {
            Ok(v) => {
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(name.to_string(), v.clone());
                }
                Some(v)
            }
            Err(e) => {
                self.set_error(format!("in variable '{name}': {e}"));
                None
            }
        }
    }

    fn from_vault_files(self: &Arc<Self>, name: &str) -> Option<VarValue> {
        for f in &self.vault_files {
            let Yaml::Vault(cipher) = &f.value else {
                continue;
            };
            match self.vault.vars_file(&f.loc.file, cipher) {
                Ok(vars) => {
                    if let Some(n) = vars.get(name) {
                        return Some(VarValue::Node(n.clone()));
                    }
                }
                Err(e) => {
                    self.set_error(e);
                    return None;
                }
            }
        }
        None
    }

    /// Turns a YAML node into a value: strings are templates, vault values are
    /// decrypted, containers are resolved element by element.
    pub fn resolve_node(self: &Arc<Self>, n: &Node) -> Result<Value, String> {
        Ok(match &n.value {
            Yaml::Null => Value::from(()),
            Yaml::Bool(b) => Value::from(*b),
            Yaml::Int(i) => Value::from(*i),
            Yaml::Float(f) => Value::from(*f),
            Yaml::Str(s) => self
                .render_value(s)
                .map_err(|e| format!("{}: {e}", n.loc))?,
            Yaml::Vault(c) => Value::from(self.vault.decrypt_text(c, &n.loc.to_string())?),
            Yaml::Seq(items) => Value::from(
                items
                    .iter()
                    .map(|i| self.resolve_node(i))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Yaml::Map(m) => {
                let mut out: IndexMap<String, Value> = IndexMap::new();
                for (k, v) in m {
                    let key = match &k.value {
                        Yaml::Str(s) if s.contains("{{") => self
                            .render_string(s)
                            .map_err(|e| format!("{}: {e}", k.loc))?,
                        _ => crate::yaml::key_string(k),
                    };
                    out.insert(key, self.resolve_node(v)?);
                }
                Value::from_pairs(out)
            }
        })
    }

    /// Renders a string with Ansible's native types (`"{{ 3 }}"` is 3).
    pub fn render_value(self: &Arc<Self>, s: &str) -> Result<Value, String> {
        if !crate::template::is_possibly_template(s) {
            return Ok(Value::from(s));
        }
        crate::template::render_value(&self.env, s, self.value()).map_err(|e| self.explain(&e))
    }

    pub fn render_string(self: &Arc<Self>, s: &str) -> Result<String, String> {
        if !crate::template::is_possibly_template(s) {
            return Ok(s.to_string());
        }
        crate::template::render_str(&self.env, s, self.value()).map_err(|e| self.explain(&e))
    }

    pub fn condition(self: &Arc<Self>, expr: &str) -> Result<bool, String> {
        let e = expr.trim();
        let e = e
            .strip_prefix("{{")
            .and_then(|x| x.strip_suffix("}}"))
            .unwrap_or(e);
        crate::template::eval_condition(&self.env, e, self.value())
            .map_err(|err| self.explain(&err))
    }

    /// A template error, with the cause found while resolving a variable if any.
    pub fn explain(&self, e: &minijinja::Error) -> String {
        let base = crate::template::render_error_message(e);
        match self.take_error() {
            Some(inner) => format!("{base} ({inner})"),
            None => base,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.vars.keys().cloned().collect()
    }
}

impl Object for VarContext {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if name == "vars" {
            return Some(self.value());
        }
        self.lookup(name)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.vars.keys().map(|k| Value::from(k.as_str())).collect())
    }
}

/// Converts plain JSON (module results, facts) to a template value.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// Converts a rendered template value to JSON (module arguments).
pub fn value_to_json(v: &Value) -> Result<serde_json::Value, String> {
    serde_json::to_value(v).map_err(|e| format!("value cannot be used as data: {e}"))
}

pub fn layer_from_vars(vars: &Vars) -> IndexMap<String, VarValue> {
    vars.iter()
        .map(|(k, v)| (k.clone(), VarValue::Node(v.clone())))
        .collect()
}
