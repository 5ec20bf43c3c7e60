//! Modules: each one turns desired arguments and observed state into a plan
//! (pure, so check mode can never touch a host), then applies it. Every module
//! is listed once, in [`registry::MODULES`]; read the top of `registry.rs` to
//! add one.

pub mod accounts;
pub mod apt;
pub mod apt_key;
pub mod apt_repository;
/// Argument coercion lives at the crate root (loading uses it too); modules
/// keep naming it `super::args`.
pub use crate::args;
pub mod authorized_key;
pub mod backup;
pub mod blockinfile;
pub mod command;
pub mod compose;
pub mod copy_remote;
pub mod cron;
pub mod deb822_repository;
pub mod docker_container;
pub mod docker_network;
pub mod files;
pub mod find;
pub mod get_url;
pub mod getent;
pub mod hostname;
pub mod include_vars;
pub mod ini_file;
pub mod lineinfile;
pub mod locale_gen;
pub mod misc;
pub mod mount;
pub mod mysql;
pub mod observe;
pub mod other_os;
pub mod package;
pub mod package_facts;
pub mod pam_limits;
pub mod pep440;
pub mod pip;
pub mod plane_users;
pub mod postgresql;
pub mod postgresql_privs;
pub mod registry;
pub mod replace;
pub mod service_facts;
pub mod setup;
pub mod slurp;
pub mod sysctl;
pub mod systemd;
pub mod text_edit;
pub mod timezone;
pub mod unarchive;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::connection::{Become, Connection};
use crate::project::Task;
use crate::state::releases::ContainerState;
use crate::vars::VarContext;
use observe::Observations;

/// One file's change, for `--diff` output and the JSON plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileDiff {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
    /// Attribute changes such as `mode: 0644 -> 0600`.
    pub attributes: Vec<String>,
    /// Set when the content is binary or too large to show.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ModuleResult {
    pub changed: bool,
    pub failed: bool,
    pub skipped: bool,
    pub msg: Option<String>,
    pub data: Map<String, Json>,
    pub diffs: Vec<FileDiff>,
    /// Facts or variables the module sets on the host (`set_fact`).
    pub facts: Map<String, Json>,
    /// Variables as written in a YAML file, templated when used
    /// (`include_vars`), set on the host after `facts`.
    pub var_nodes: Vec<(String, crate::yaml::Node)>,
}

impl ModuleResult {
    pub fn ok() -> ModuleResult {
        ModuleResult::default()
    }
    pub fn failed(msg: impl Into<String>) -> ModuleResult {
        ModuleResult {
            failed: true,
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
    /// The registered value, shaped as Ansible shapes it.
    pub fn to_json(&self) -> Json {
        let mut m = self.data.clone();
        m.insert("changed".into(), Json::Bool(self.changed));
        if self.failed {
            m.insert("failed".into(), Json::Bool(true));
        } else {
            m.entry("failed").or_insert(Json::Bool(false));
        }
        if self.skipped {
            m.insert("skipped".into(), Json::Bool(true));
        }
        if let Some(msg) = &self.msg {
            m.entry("msg").or_insert(Json::String(msg.clone()));
        }
        if !self.diffs.is_empty() {
            m.insert(
                "diff".into(),
                serde_json::to_value(&self.diffs).unwrap_or(Json::Null),
            );
        }
        Json::Object(m)
    }
}

/// The host's release being recorded, as a module sees it: where a write
/// script saves the previous state of what it changes. The executor provides
/// it (None in check mode and for delegated tasks).
pub trait ReleaseStage: Sync {
    /// The shell snippet that saves `path`'s current state and prints one
    /// `P\t...` line; None when this release already saved the path. Put it at
    /// the head of the script that changes the path, under `set -e`.
    fn save_snippet(&self, path: &str) -> Option<String>;
    /// The release's id (backups taken during it name it in their manifest,
    /// so `rollback --with-data` finds them).
    fn release_id(&self) -> Option<&str> {
        None
    }
}

/// What a module saved for the host's release. Modules push these to
/// [`ModuleCtx::saved`] as they go; the executor records them in the release
/// after the module returns, fails or is interrupted (so a half-done change
/// is still in the record a rollback reads). Modules never write release
/// records themselves.
#[derive(Debug, Clone)]
pub enum ReleaseSave {
    /// A script that began with [`ModuleCtx::release_save`]'s snippet for
    /// `path` ran and printed `stdout`.
    File { path: String, stdout: String },
    /// A compose project about to change: its containers as they were.
    ComposeBefore {
        project: String,
        /// The module's arguments that locate the project.
        args: Json,
        before: BTreeMap<String, Option<ContainerState>>,
    },
    /// The compose project's containers after the change.
    ComposeAfter {
        project: String,
        after: BTreeMap<String, ContainerState>,
    },
}

/// What a module gets to do its work: the host, its observed state, the
/// variables of the task, and the run's mode.
pub struct ModuleCtx<'a> {
    pub conn: &'a Connection,
    pub become_: Option<Become>,
    pub check: bool,
    pub diff: bool,
    pub observed: &'a mut Observations,
    pub vars: &'a Arc<VarContext>,
    pub task: &'a Task,
    pub playbook_dir: &'a Path,
    /// The host's release being recorded; None in check mode and for
    /// delegated tasks. File modules put its save snippet in their write.
    pub release: Option<&'a dyn ReleaseStage>,
    /// What the module saved for the release, for the executor to record.
    pub saved: Vec<ReleaseSave>,
    /// Where a long step is (image pulls, health waits, the Plane hook's
    /// users), for the terminal's status line and JSON events.
    pub progress: crate::report::TaskProgress,
    /// How container and compose tasks treat image tags (`images.lock`).
    pub images: &'a crate::project::images_lock::ImagePolicy,
    /// A command or shell task may leave the check of what it changed to the
    /// next task, a command too (`Observations::leave_unstamped`).
    pub restamp_later: bool,
}

impl ModuleCtx<'_> {
    /// The task's `environment:` (play, blocks, task; inner wins) rendered
    /// for this host, as shell lines exporting each variable. Values are
    /// single-quoted, never shell text; names must be valid identifiers.
    pub fn environment_exports(&self) -> Result<String, String> {
        let mut merged: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
        for node in &self.task.environment {
            let v = self.vars.resolve_node(node)?;
            if v.is_none() {
                continue;
            }
            if v.kind() != minijinja::value::ValueKind::Map {
                return Err(format!(
                    "{}: environment: expected a mapping of variable names to values, got {}",
                    node.loc,
                    crate::template::py_repr(&v)
                ));
            }
            for key in v.try_iter().map_err(|e| e.to_string())? {
                let name = crate::template::py_str(&key);
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!(
                        "{}: environment: '{name}' is not a valid variable name",
                        node.loc
                    ));
                }
                let value = v.get_item(&key).map_err(|e| e.to_string())?;
                merged.insert(name, crate::template::py_str(&value));
            }
        }
        Ok(merged
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", crate::template::filters::shell_quote(v)))
            .collect())
    }

    /// The snippet saving `path`'s previous state for the release, to run at
    /// the head of the script that changes it (empty when not recording).
    pub fn release_save(&self, path: &str) -> String {
        match (self.release, self.check) {
            (Some(r), false) => r.save_snippet(path).unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Hands the executor what [`Self::release_save`]'s snippet printed.
    pub fn release_saved(&mut self, path: &str, stdout: &str) {
        if self.release.is_some() && !self.check {
            self.saved.push(ReleaseSave::File {
                path: path.to_string(),
                stdout: stdout.to_string(),
            });
        }
    }

    /// Whether this task records a release (not check mode, not delegated).
    pub fn recording(&self) -> bool {
        self.release.is_some() && !self.check
    }
}

impl ModuleCtx<'_> {
    /// Finds a `src` for template/copy: the role's `templates/` or `files/`,
    /// then the task file's directory, then the playbook's, as Ansible does.
    pub fn find_source(&self, src: &str, kind: &str) -> Result<PathBuf, String> {
        let p = Path::new(src);
        if p.is_absolute() {
            return if p.exists() {
                Ok(p.to_path_buf())
            } else {
                Err(format!("could not find src '{src}'"))
            };
        }
        let mut cands = Vec::new();
        if let Some(role) = &self.task.scope.role {
            for r in role.chain() {
                cands.push(r.path.join(kind).join(src));
                cands.push(r.path.join(src));
            }
        }
        cands.push(self.task.scope.base_dir.join(kind).join(src));
        cands.push(self.task.scope.base_dir.join(src));
        cands.push(self.playbook_dir.join(kind).join(src));
        cands.push(self.playbook_dir.join(src));
        if let Some(parent) = self.playbook_dir.parent() {
            cands.push(parent.join(kind).join(src));
        }
        cands.into_iter().find(|c| c.exists()).ok_or_else(|| {
            format!("could not find {kind} source '{src}' (searched the role's {kind}/ directory, the task's directory and the playbook's)")
        })
    }
}

/// Runs the module `name` (a short name, as loading leaves it) on one host,
/// through the registry's table.
pub async fn run(name: &str, args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    match registry::find(name) {
        Some(m) => m.run(args, ctx).await,
        None => Err(format!("module '{name}' is not implemented")),
    }
}

/// Parses module arguments into the module's typed parameters, naming the
/// module and the offending argument on error.
pub fn parse_args<T: serde::de::DeserializeOwned>(module: &str, args: Json) -> Result<T, String> {
    serde_json::from_value(args).map_err(|e| format!("invalid arguments for {module}: {e}"))
}
