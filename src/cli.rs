//! The command line: parsing and dispatch only; exit codes are decided here,
//! in one place (documented in the README).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::project::{self, Inventory};
use crate::report::{Format, Reporter};
use crate::run::{Engine, RunOptions};
use crate::vars::VaultAccess;

#[derive(Parser, Debug)]
#[command(
    name = "deployer",
    version,
    about = "Converge servers from an Ansible-layout project, over SSH, with exact diffs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Converge the hosts.
    Apply(RunArgs),
    /// Dry run: what would change (nothing is changed). Exit 0: no change, 2: changes, 1: error.
    Check(RunArgs),
    /// Compute the plan (check mode) and print it as data (`--format json`, the default, or `markdown`).
    Plan(RunArgs),
    /// Show what the loader understood of the inventory.
    Inventory {
        #[arg(
            short = 'i',
            long = "inventory",
            env = "DEPLOYER_INVENTORY",
            value_delimiter = ','
        )]
        inventory: Vec<PathBuf>,
        #[arg(long)]
        graph: bool,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        list: bool,
    },
    /// ansible-vault compatible secrets.
    Vault(crate::vault::cli::VaultArgs),
    /// Check the project without contacting any host. Exit 0: no error-level finding, 1: errors, 2: usage.
    Lint(crate::lint::cli::LintArgs),
    /// The deploy lock on each host: `status`, or `release` a stale one (issue 7).
    Lock(crate::state::commands::LockArgs),
    /// The last runs: the local run log and each host's audit log (issue 7).
    Audit(crate::state::commands::AuditArgs),
    /// List each host's releases (what each apply changed), oldest first.
    Releases(ReleaseArgs),
    /// Undo the newest release on each host (or every release newer than --to ID):
    /// files byte for byte, containers by image ID. Exit 0 done, 1 refused or failed, 2 --check with changes.
    Rollback {
        #[command(flatten)]
        common: ReleaseArgs,
        /// Roll back to this release id (as `deployer releases` lists them).
        #[arg(long = "to", value_name = "ID")]
        to: Option<String>,
        /// Show what would change; change nothing.
        #[arg(short = 'C', long = "check")]
        check: bool,
        /// Show unified diffs.
        #[arg(short = 'D', long = "diff")]
        diff: bool,
    },
}

/// Options of `deployer releases` and `deployer rollback`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// Inventory file(s) or directories. There is no default, on purpose.
    #[arg(
        short = 'i',
        long = "inventory",
        env = "DEPLOYER_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    /// Extra variables: key=value, @file.yml, or a JSON/YAML mapping.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// Releases kept per host (default: the `deployer_keep_releases` variable, else 5).
    #[arg(long = "keep-releases", value_name = "N")]
    pub keep_releases: Option<usize>,
    /// human or json.
    #[arg(long = "format", value_enum)]
    pub format: Option<OutputFormat>,
    #[command(flatten)]
    pub vault: PasswordArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    Json,
    Markdown,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Lines for people (apply/check only).
    Human,
    /// One JSON event per line (apply/check), or the plan as one JSON document (plan).
    Json,
    /// The plan as a pull-request comment body (plan only).
    Markdown,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The playbook to run.
    #[arg(default_value = "playbooks/site.yml")]
    pub playbook: PathBuf,
    /// Inventory file(s) or directories. There is no default, on purpose.
    #[arg(
        short = 'i',
        long = "inventory",
        env = "DEPLOYER_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    #[arg(short = 't', long = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,
    #[arg(long = "skip-tags", value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// Extra variables: key=value, @file.yml, or a JSON/YAML mapping.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    #[arg(short = 'f', long = "forks", default_value_t = 10)]
    pub forks: usize,
    /// Show unified diffs of what changes (or would change).
    #[arg(short = 'D', long = "diff")]
    pub diff: bool,
    /// With apply: run in check mode (same as `deployer check`).
    #[arg(short = 'C', long = "check")]
    pub check: bool,
    /// Output format: human or json for apply/check; json (default) or markdown for plan.
    #[arg(long = "format", value_enum)]
    pub format: Option<OutputFormat>,
    /// Releases kept per host (default: the `deployer_keep_releases` variable, else 5).
    #[arg(long = "keep-releases", value_name = "N")]
    pub keep_releases: Option<usize>,
    /// Do not roll a host back when a deploy gate fails after changes.
    #[arg(long = "no-auto-rollback")]
    pub no_auto_rollback: bool,
    #[command(flatten)]
    pub vault: PasswordArgs,
    /// Why this run: kept in the deploy lock and the audit logs.
    #[arg(long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Wait up to this long (e.g. 30s, 5m) for deploy locks held by another run, instead of failing at once.
    #[arg(long = "lock-wait", value_name = "DURATION")]
    pub lock_wait: Option<String>,
}

/// Vault password options for runs (the same as `deployer vault`'s).
#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// Vault password file; if executable, it is run and its stdout is the password.
    #[arg(
        long = "vault-password-file",
        alias = "vault-pass-file",
        value_name = "FILE"
    )]
    pub vault_password_files: Vec<PathBuf>,
    /// Vault identity `label@source`, source being a file, an executable or `prompt`.
    #[arg(long = "vault-id", value_name = "LABEL@SOURCE")]
    pub vault_ids: Vec<String>,
    /// Ask for the vault password.
    #[arg(long = "ask-vault-password", alias = "ask-vault-pass", short = 'J')]
    pub ask_vault_password: bool,
}

pub(crate) fn passwords_from(
    a: &PasswordArgs,
) -> Result<Option<crate::vault::VaultPasswords>, String> {
    let p = crate::vault::VaultPasswords::new(
        &a.vault_password_files,
        &a.vault_ids,
        a.ask_vault_password,
    )
    .map_err(|e| e.to_string())?;
    Ok(if p.is_empty() { None } else { Some(p) })
}

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Apply(a) => {
            let check = a.check;
            run_playbook(a, check, None).await
        }
        Command::Check(a) => run_playbook(a, true, None).await,
        Command::Plan(run) => {
            let f = match run.format {
                None | Some(OutputFormat::Json) => PlanFormat::Json,
                Some(OutputFormat::Markdown) => PlanFormat::Markdown,
                Some(OutputFormat::Human) => {
                    eprintln!("error: plan prints data: use --format json or --format markdown");
                    return 1;
                }
            };
            run_playbook(run, true, Some(f)).await
        }
        Command::Inventory {
            inventory,
            graph,
            host,
            list,
        } => show_inventory(&inventory, graph, host.as_deref(), list),
        Command::Vault(v) => match crate::vault::cli::run(v) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {}", crate::secrets::mask(&e.to_string()));
                1
            }
        },
        Command::Lint(a) => crate::lint::cli::run(a),
        Command::Releases(a) => match release_engine(&a, false) {
            Ok((engine, hosts)) => {
                crate::state::rollback::list(&engine, &hosts, a.format == Some(OutputFormat::Json))
                    .await
            }
            Err(e) => {
                eprintln!("error: {}", crate::secrets::mask(&e));
                1
            }
        },
        Command::Rollback {
            common,
            to,
            check,
            diff,
        } => match release_engine(&common, diff) {
            Ok((engine, hosts)) => {
                let req = crate::state::rollback::RollbackRequest { to, check };
                crate::state::rollback::rollback(&engine, &hosts, &req).await
            }
            Err(e) => {
                eprintln!("error: {}", crate::secrets::mask(&e));
                1
            }
        },
        Command::Lock(a) => crate::state::commands::lock(a).await,
        Command::Audit(a) => crate::state::commands::audit(a).await,
    }
}

/// The project's id on hosts: the current directory's name (run deployer
/// from the project's root, as every command expects).
fn project_id() -> String {
    crate::state::project_id(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
}

/// An engine (no playbook) and the targeted hosts, for releases and rollback.
fn release_engine(a: &ReleaseArgs, diff: bool) -> Result<(Engine, Vec<String>), String> {
    let mut inv = load_inventory(&a.inventory)?;
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    inv.load_vars_dirs(&cwd).map_err(|e| e.to_string())?;
    let extra = project::parse_extra_vars(&a.extra_vars).map_err(|e| e.to_string())?;
    let passwords = passwords_from(&a.vault)?;
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
        }),
        env: Arc::new(crate::template::environment()),
        vault: Arc::new(VaultAccess::new(passwords)),
        reporter: Arc::new(Reporter::new(format, diff)),
        playbook_dir: cwd,
        session: None,
    };
    Ok((engine, hosts))
}

pub(crate) fn load_inventory(paths: &[PathBuf]) -> Result<Inventory, String> {
    if paths.is_empty() {
        return Err("no inventory given: pass -i FILE (for the local testbed: -i tests/testbed/inventory.yml)".into());
    }
    Inventory::load(paths).map_err(|e| e.to_string())
}

async fn run_playbook(a: RunArgs, check: bool, plan: Option<PlanFormat>) -> i32 {
    let loaded = (|| -> Result<_, String> {
        let mut inv = load_inventory(&a.inventory)?;
        let pb = project::load_playbook(&a.playbook, &crate::modules::registry::Registry)
            .map_err(|e| e.to_string())?;
        let pb_dir = a
            .playbook
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        // group_vars/ next to the playbook count too, as in Ansible.
        inv.load_vars_dirs(&pb_dir).map_err(|e| e.to_string())?;
        let extra = project::parse_extra_vars(&a.extra_vars).map_err(|e| e.to_string())?;
        let passwords = passwords_from(&a.vault)?;
        let lock_wait = a
            .lock_wait
            .as_deref()
            .map(crate::state::lock::parse_duration)
            .transpose()?;
        Ok((inv, pb, pb_dir, extra, passwords, lock_wait))
    })();
    let (inv, pb, pb_dir, extra, passwords, lock_wait) = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::mask(&e));
            return 1;
        }
    };
    let format = match (plan, a.format) {
        (Some(_), _) => Format::Quiet,
        (None, Some(OutputFormat::Json)) => Format::Json,
        (None, None | Some(OutputFormat::Human)) => Format::Human,
        (None, Some(OutputFormat::Markdown)) => {
            eprintln!(
                "error: --format markdown is for `deployer plan`; apply and check take human or json"
            );
            return 1;
        }
    };
    let reporter = Arc::new(Reporter::new(format, a.diff || plan.is_some()));
    // Issue 7: lock, pending handlers and audit, named after the project root.
    let session = crate::state::commands::run_session(check, a.message.clone(), lock_wait);
    let engine = Engine {
        inventory: Arc::new(inv),
        opts: Arc::new(RunOptions {
            check,
            diff: a.diff || plan.is_some(),
            tags: a.tags,
            skip_tags: a.skip_tags,
            limit: a.limit,
            forks: a.forks,
            extra_vars: extra,
            project: project_id(),
            keep_releases: a.keep_releases,
            auto_rollback: !a.no_auto_rollback,
        }),
        env: Arc::new(crate::template::environment()),
        vault: Arc::new(VaultAccess::new(passwords)),
        reporter: reporter.clone(),
        playbook_dir: pb_dir.canonicalize().unwrap_or(pb_dir),
        session: Some(session.clone()),
    };
    let signals = crate::state::commands::on_signals(session.interrupt.clone());
    let outcome = engine.run(&pb).await;
    signals.abort();
    if let Some(code) = crate::state::commands::after_run(&session, &outcome) {
        return code;
    }
    match plan {
        Some(PlanFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&reporter.plan_json(&outcome.stats)).unwrap_or_default()
        ),
        Some(PlanFormat::Markdown) => print!("{}", reporter.plan_markdown(&outcome.stats)),
        None => reporter.recap(&outcome.stats, check),
    }
    if outcome.session.interrupted {
        130
    } else if outcome.failed {
        1
    } else if check && outcome.changed {
        2
    } else {
        0
    }
}

fn show_inventory(paths: &[PathBuf], graph: bool, host: Option<&str>, _list: bool) -> i32 {
    let inv = match load_inventory(paths) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if let Some(h) = host {
        let Some(entry) = inv.hosts.get(h) else {
            eprintln!("error: host '{h}' is not in the inventory");
            return 1;
        };
        let mut merged = serde_json::Map::new();
        for g in inv.host_groups(h) {
            if let Some(group) = inv.groups.get(&g) {
                for (k, v) in &group.vars {
                    merged.insert(k.clone(), v.to_json());
                }
            }
        }
        for (k, v) in &entry.vars {
            merged.insert(k.clone(), v.to_json());
        }
        println!(
            "{}",
            crate::secrets::mask(&serde_json::to_string_pretty(&merged).unwrap_or_default())
        );
        return 0;
    }
    if graph {
        fn walk(inv: &Inventory, g: &str, depth: usize, out: &mut String) {
            out.push_str(&format!("{}@{g}:\n", "  |".repeat(depth)));
            if let Some(group) = inv.groups.get(g) {
                for c in &group.children {
                    walk(inv, c, depth + 1, out);
                }
                for h in &group.hosts {
                    out.push_str(&format!("{}--{h}\n", "  |".repeat(depth + 1)));
                }
            }
        }
        let mut out = String::new();
        walk(&inv, "all", 0, &mut out);
        print!("{out}");
        return 0;
    }
    let groups: serde_json::Map<String, serde_json::Value> = inv
        .groups
        .keys()
        .map(|g| (g.clone(), serde_json::json!(inv.group_hosts(g))))
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&groups).unwrap_or_default()
    );
    0
}
