//! The commands: one file per `deployer` subcommand, turning parsed arguments
//! (from [`crate::cli`]) into calls of the loader and the engine, and deciding
//! the exit code. `cli` only parses and dispatches here; nothing below
//! (`run`, `state`, `modules`, `project`, ...) imports this layer.

pub mod apply;
pub mod audit;
pub mod backups;
pub mod docs;
pub mod inventory;
pub mod lint;
pub mod lock;
pub mod releases;
pub mod rollback;
pub mod vault;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{OutputFormat, PasswordArgs, ReleaseArgs, StateArgs};
use crate::project::{self, Inventory};
use crate::report::{Format, Reporter};
use crate::run::{Engine, RunOptions};
use crate::vars::VaultAccess;

pub fn passwords_from(a: &PasswordArgs) -> Result<Option<crate::vault::VaultPasswords>, String> {
    // Nothing on the command line nor in DEPLOYER_VAULT_PASSWORD_FILE: the
    // Ansible configuration's vault_identity_list / vault_password_file.
    let (mut files, mut ids) = (a.vault_password_files.clone(), a.vault_ids.clone());
    let env_file = std::env::var_os("DEPLOYER_VAULT_PASSWORD_FILE").is_some_and(|v| !v.is_empty());
    if files.is_empty() && ids.is_empty() && !a.ask_vault_password && !env_file {
        let cfg = project::config::current().map_err(|e| e.to_string())?;
        if let Some(s) = cfg.get("vault_identity_list") {
            ids = s
                .raw
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
        }
        files.extend(cfg.path("vault_password_file"));
    }
    let p = crate::vault::VaultPasswords::new(&files, &ids, a.ask_vault_password)
        .map_err(|e| e.to_string())?;
    Ok(if p.is_empty() { None } else { Some(p) })
}

/// `-f`, else `forks` in ansible.cfg / ANSIBLE_FORKS, else 10.
pub fn forks(given: Option<usize>) -> usize {
    given
        .or_else(|| project::config::current().ok().and_then(|c| c.int("forks")))
        .unwrap_or(10)
}

/// `deployer config`: the Ansible settings deployer reads and their origin.
pub fn config() -> i32 {
    match project::config::current() {
        Ok(cfg) => {
            print!("{}", cfg.describe());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The project's id on hosts: the current directory's name (run deployer
/// from the project's root, as every command expects).
pub fn project_id() -> String {
    crate::state::project_id(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
}

/// The project's root directory on this machine (the current directory's
/// project root; run deployer from the project, as every command expects).
pub fn project_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    crate::state::project_root(&cwd)
}

/// The pre-flight ([`crate::preflight`]): every problem found is printed, and
/// the run stops before any connection.
pub fn preflight(
    playbook: Option<&std::path::Path>,
    inventories: &[PathBuf],
    extra: &crate::project::inventory::Vars,
    passwords: Option<&crate::vault::VaultPasswords>,
) -> Result<Option<crate::project::Playbook>, String> {
    let (findings, deferred, loaded) =
        crate::preflight::check_and_load(&crate::preflight::RunInput {
            playbook,
            inventories,
            extra_var_names: extra.keys().cloned().collect(),
            passwords,
        });
    if !deferred.is_empty() {
        crate::preflight::report_deferred(&deferred);
    }
    if findings.is_empty() {
        return Ok(loaded);
    }
    crate::preflight::report(&findings);
    Err(format!(
        "{} problem(s) found before connecting to any host; nothing was changed",
        findings.len()
    ))
}

/// An engine (no playbook) and the targeted hosts, for releases and rollback.
pub fn release_engine(a: &ReleaseArgs, diff: bool) -> Result<(Engine, Vec<String>), String> {
    // The pre-flight first: every problem of the inventories and the vault,
    // all at once, before anything is loaded for the run.
    let extra = project::parse_extra_vars(&a.extra_vars).map_err(|e| e.to_string())?;
    let passwords = passwords_from(&a.vault)?;
    let inventories = if a.inventory.is_empty() {
        project::config::current()
            .map_err(|e| e.to_string())?
            .inventory()
    } else {
        a.inventory.clone()
    };
    preflight(None, &inventories, &extra, passwords.as_ref())?;
    let mut inv = load_inventory(&a.inventory)?;
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    inv.load_vars_dirs(&cwd).map_err(|e| e.to_string())?;
    let format = match a.format {
        None | Some(OutputFormat::Human) => Format::Human,
        Some(OutputFormat::Json) => Format::Json,
        Some(OutputFormat::Markdown) => return Err("--format takes human or json here".into()),
    };
    let hosts = inv.select(a.limit.as_deref().unwrap_or("all"))?;
    if hosts.is_empty() {
        return Err(format!(
            "no host matches '{}'",
            a.limit.as_deref().unwrap_or("all")
        ));
    }
    let engine = Engine {
        inventory: Arc::new(inv),
        opts: Arc::new(RunOptions {
            check: false,
            diff,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            limit: a.limit.clone(),
            forks: 10,
            extra_vars: extra,
            project: project_id(),
            keep_releases: a.keep_releases,
            auto_rollback: false,
            fresh_connection: a.fresh_connection,
            images: Default::default(),
        }),
        env: Arc::new(crate::template::environment()),
        vault: Arc::new(VaultAccess::new(passwords)),
        reporter: Arc::new(Reporter::new(format, diff)),
        playbook_dir: cwd,
        session: None,
        hostvars: Default::default(),
        throttles: Default::default(),
    };
    Ok((engine, hosts))
}

pub fn load_inventory(paths: &[PathBuf]) -> Result<Inventory, String> {
    let cfg = project::config::current().map_err(|e| e.to_string())?;
    for w in cfg.warnings() {
        eprintln!("warning: {w}");
    }
    let from_cfg;
    let paths = if paths.is_empty() {
        from_cfg = cfg.inventory();
        &from_cfg
    } else {
        paths
    };
    if paths.is_empty() {
        return Err("no inventory given: pass -i FILE or set inventory in ansible.cfg (for the local testbed: -i tests/testbed/inventory.yml)".into());
    }
    let mut inv = Inventory::load(paths).map_err(|e| e.to_string())?;
    // ansible.cfg's connection defaults: below every inventory variable.
    if let Some(all) = inv.groups.get_mut("all") {
        let cfg_loc = crate::yaml::Loc::file_only(
            cfg.file
                .as_deref()
                .unwrap_or(std::path::Path::new("ansible.cfg")),
        );
        let defaults = [
            ("ansible_user", cfg.text("remote_user")),
            (
                "ansible_ssh_private_key_file",
                cfg.path("private_key_file")
                    .map(|p| p.display().to_string()),
            ),
        ];
        for (var, value) in defaults {
            if let Some(v) = value
                && !all.vars.contains_key(var)
            {
                all.vars.insert(
                    var.to_string(),
                    crate::yaml::Node {
                        value: crate::yaml::Yaml::Str(v),
                        loc: cfg_loc.clone(),
                    },
                );
            }
        }
    }
    Ok(inv)
}

/// An engine (no playbook) for the lock and audit commands: check mode, no output.
pub fn state_engine(a: &StateArgs) -> Result<Engine, String> {
    let inventory = load_inventory(&a.inventory)?;
    let passwords = passwords_from(&a.vault)?;
    Ok(Engine {
        inventory: Arc::new(inventory),
        opts: Arc::new(RunOptions {
            check: true,
            diff: false,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            limit: a.limit.clone(),
            forks: forks(a.forks),
            extra_vars: Default::default(),
            project: crate::state::project_id(&std::env::current_dir().unwrap_or_default()),
            keep_releases: None,
            auto_rollback: false,
            fresh_connection: a.fresh_connection,
            images: Default::default(),
        }),
        env: Arc::new(crate::template::environment()),
        vault: Arc::new(VaultAccess::new(passwords)),
        reporter: Arc::new(Reporter::new(Format::Quiet, false)),
        playbook_dir: std::env::current_dir().unwrap_or_default(),
        session: None,
        hostvars: Default::default(),
        throttles: Default::default(),
    })
}
