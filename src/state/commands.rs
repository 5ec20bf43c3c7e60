//! The command-line side of issue 7 part A: `deployer lock status|release`,
//! `deployer audit`, and what `apply`/`check` do around the engine (the run's
//! identity, SIGINT/SIGTERM, the local run log, the refusal message).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::cli::PasswordArgs;
use crate::report::{Format, Reporter};
use crate::run::{Engine, Interrupt, Outcome, RunOptions, RunSession};
use crate::secrets::mask;
use crate::state::audit::{self, RunRecord, masked_command_line};
use crate::state::lock::{self, LockHolder, LockState};
use crate::vars::VaultAccess;

/// Which hosts, and how to reach them (as `apply` would).
#[derive(Args, Debug)]
pub struct StateArgs {
    /// Inventory file(s) or directories.
    #[arg(
        short = 'i',
        long = "inventory",
        env = "DEPLOYER_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    #[arg(short = 'f', long = "forks", default_value_t = 10)]
    pub forks: usize,
    #[command(flatten)]
    pub vault: PasswordArgs,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(subcommand)]
    pub action: LockAction,
}

#[derive(Subcommand, Debug)]
pub enum LockAction {
    /// Who holds the deploy lock on each host.
    Status(StateArgs),
    /// Remove a stale lock (a run that died without releasing it), saying whose it was.
    Release {
        #[command(flatten)]
        hosts: StateArgs,
        /// Also when the holder's process still runs on this machine.
        #[arg(long)]
        force: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditFormat {
    Human,
    Json,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub hosts: StateArgs,
    /// How many entries of each log.
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    #[arg(long = "format", value_enum, default_value = "human")]
    pub format: AuditFormat,
}

fn project_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    super::project_root(&cwd)
}

/// The session of an `apply`/`check`/`plan` run: who, what, where it is logged.
pub fn run_session(
    check: bool,
    message: Option<String>,
    lock_wait: Option<std::time::Duration>,
) -> Arc<RunSession> {
    let root = project_root();
    let argv: Vec<String> = std::env::args().collect();
    let holder = LockHolder::for_this_run(&root, masked_command_line(&argv), message);
    Arc::new(RunSession {
        project: super::project_id(&root),
        project_root: root,
        holder,
        check,
        lock_wait,
        interrupt: Interrupt::default(),
    })
}

/// SIGINT/SIGTERM: the first stops the run (which then saves pending
/// handlers, writes the audit line and releases the locks); a second quits at once.
pub fn on_signals(interrupt: Interrupt) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before returning, so no signal falls between.
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return tokio::spawn(async {});
    };
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                eprintln!(
                    "deployer: interrupted: stopping; pending handlers are saved and the deploy locks released (interrupt again to quit at once and leave the locks)"
                );
                interrupt.trigger();
            } else {
                eprintln!(
                    "deployer: quitting at once: deploy locks may stay held (see `deployer lock status`)"
                );
                std::process::exit(130);
            }
        }
    })
}

/// After the engine: the local run log (apply only) and a refused run's
/// message. `Some(code)` ends the command there (no recap: nothing ran).
pub fn after_run(s: &RunSession, outcome: &Outcome) -> Option<i32> {
    let so = &outcome.session;
    if !s.check {
        let result = if !so.refused.is_empty() {
            "locked"
        } else if so.interrupted {
            "interrupted"
        } else if outcome.failed {
            "failed"
        } else {
            "ok"
        };
        let rec = RunRecord {
            run_id: s.holder.run_id.clone(),
            started: s.holder.since.clone(),
            finished: lock::rfc3339(std::time::SystemTime::now()),
            performer: s.holder.who.clone(),
            revision: s.holder.revision.clone(),
            dirty: s.holder.dirty,
            command: s.holder.command.clone(),
            message: s.holder.message.clone(),
            result: result.into(),
            hosts: so.audit.clone(),
            notes: so.refused.iter().chain(&so.notes).cloned().collect(),
        };
        if let Err(e) = audit::append_local(&s.project_root, &rec) {
            eprintln!("warning: the local run log was not written: {}", mask(&e));
        }
    }
    if so.refused.is_empty() {
        return None;
    }
    for r in &so.refused {
        eprintln!("error: {}", mask(r));
    }
    eprintln!(
        "error: the deploy lock is held on {} host{}: nothing was changed on any host (wait for it with --lock-wait DURATION; if that run is gone, `deployer lock release -l HOST`)",
        so.refused.len(),
        if so.refused.len() == 1 { "" } else { "s" }
    );
    Some(if so.interrupted { 130 } else { 1 })
}

fn engine_for(a: &StateArgs) -> Result<Engine, String> {
    let inventory = crate::cli::load_inventory(&a.inventory)?;
    let passwords = crate::cli::passwords_from(&a.vault)?;
    Ok(Engine {
        inventory: Arc::new(inventory),
        opts: Arc::new(RunOptions {
            check: true,
            diff: false,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            limit: a.limit.clone(),
            forks: a.forks,
            extra_vars: Default::default(),
            project: crate::state::project_id(&std::env::current_dir().unwrap_or_default()),
            keep_releases: None,
            auto_rollback: false,
        }),
        env: Arc::new(crate::template::environment()),
        vault: Arc::new(VaultAccess::new(passwords)),
        reporter: Arc::new(Reporter::new(Format::Quiet, false)),
        playbook_dir: std::env::current_dir().unwrap_or_default(),
        session: None,
    })
}

pub async fn lock(a: LockArgs) -> i32 {
    match a.action {
        LockAction::Status(h) => lock_status(h).await,
        LockAction::Release { hosts, force } => lock_release(hosts, force).await,
    }
}

async fn lock_status(a: StateArgs) -> i32 {
    let engine = match engine_for(&a) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            return 1;
        }
    };
    let project = super::project_id(&project_root());
    let mut code = 0;
    let peek = |_: &str| lock::peek_sh();
    for (host, r) in engine
        .state_query(a.limit.as_deref(), &peek, &project)
        .await
    {
        match r {
            Ok((dir, secs)) => match lock::lock_state(&secs) {
                Some(LockState::Held(Some(h))) => {
                    println!("{host}: locked by {} ({dir}/lock)", mask(&h.describe()))
                }
                Some(LockState::Held(None)) => {
                    println!("{host}: locked ({dir}/lock is unreadable)")
                }
                _ => println!("{host}: free ({dir})"),
            },
            Err(e) => {
                code = 1;
                println!("{host}: error: {}", mask(&e));
            }
        }
    }
    code
}

async fn lock_release(a: StateArgs, force: bool) -> i32 {
    let engine = match engine_for(&a) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            return 1;
        }
    };
    let project = super::project_id(&project_root());
    let mut code = 0;
    let peek = |_: &str| lock::peek_sh();
    let mut to_release: Vec<(String, LockHolder)> = Vec::new();
    for (host, r) in engine
        .state_query(a.limit.as_deref(), &peek, &project)
        .await
    {
        match r {
            Ok((_, secs)) => match lock::lock_state(&secs) {
                Some(LockState::Held(Some(h))) => {
                    let alive_here =
                        h.who.rsplit_once('@').is_some_and(|(_, m)| {
                            lock::control_identity().ends_with(&format!("@{m}"))
                        }) && h.local_process_note().is_none();
                    if alive_here && !force {
                        code = 1;
                        println!(
                            "{host}: not released: its run is still going on this machine ({}); stop it, or use --force",
                            mask(&h.describe())
                        );
                    } else {
                        to_release.push((host, h));
                    }
                }
                Some(LockState::Held(None)) => {
                    code = 1;
                    println!("{host}: the lock file cannot be read: not released");
                }
                _ => println!("{host}: no lock"),
            },
            Err(e) => {
                code = 1;
                println!("{host}: error: {}", mask(&e));
            }
        }
    }
    if to_release.is_empty() {
        return code;
    }
    let names: Vec<&str> = to_release.iter().map(|(h, _)| h.as_str()).collect();
    let limit = names.join(":");
    // Only the lock that was read is removed: a run that took the lock in
    // between keeps it.
    let release = |host: &str| {
        to_release
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, holder)| lock::release_sh(holder))
            .unwrap_or_default()
    };
    for (host, r) in engine.state_query(Some(&limit), &release, &project).await {
        let holder = to_release.iter().find(|(h, _)| *h == host).map(|(_, l)| l);
        match (r, holder) {
            (Ok((_, secs)), Some(h)) => match lock::lock_state(&secs) {
                Some(LockState::Released) => {
                    println!("{host}: released the lock of {}", mask(&h.describe()))
                }
                Some(LockState::NotOurs(now)) => {
                    code = 1;
                    println!(
                        "{host}: the lock changed meanwhile ({}): not released",
                        now.map(|n| format!("now held by {}", mask(&n.describe())))
                            .unwrap_or_else(|| "it is gone".into())
                    );
                }
                _ => {
                    code = 1;
                    println!("{host}: releasing failed");
                }
            },
            (Err(e), _) => {
                code = 1;
                println!("{host}: error: {}", mask(&e));
            }
            (Ok(_), None) => {}
        }
    }
    code
}

pub async fn audit(a: AuditArgs) -> i32 {
    let root = project_root();
    let json = a.format == AuditFormat::Json;
    let mut code = 0;
    match audit::tail_local(&root, a.n) {
        Ok(runs) => {
            if !json {
                println!(
                    "== this machine: {} (last {})",
                    audit::local_log(&root).display(),
                    runs.len()
                );
            }
            for r in runs {
                match (r, json) {
                    (Ok(rec), true) => println!(
                        "{}",
                        mask(&json!({"source": "local", "run": rec}).to_string())
                    ),
                    (Ok(rec), false) => println!("{}", mask(&rec.describe())),
                    (Err(e), _) => {
                        code = 1;
                        eprintln!("warning: {}", mask(&e));
                    }
                }
            }
        }
        Err(e) => {
            code = 1;
            eprintln!("error: {}", mask(&e));
        }
    }
    if a.hosts.inventory.is_empty() {
        if !json {
            println!("(hosts not asked: pass -i INVENTORY for their audit logs)");
        }
        return code;
    }
    let engine = match engine_for(&a.hosts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            return 1;
        }
    };
    let project = super::project_id(&root);
    let n = a.n;
    let tail = move |_: &str| audit::tail_sh(n);
    for (host, r) in engine
        .state_query(a.hosts.limit.as_deref(), &tail, &project)
        .await
    {
        match r {
            Ok((dir, secs)) => {
                let entries = audit::parse_tail(&secs);
                if !json {
                    println!(
                        "== {host}: {dir}/{} (last {})",
                        audit::HOST_FILE,
                        entries.len()
                    );
                }
                for e in entries {
                    match (e, json) {
                        (Ok(e), true) => println!(
                            "{}",
                            mask(&json!({"source": "host", "host": host, "entry": e}).to_string())
                        ),
                        (Ok(e), false) => println!("{}", mask(&e.describe())),
                        (Err(line), _) => println!("{host}: (not an audit entry) {}", mask(&line)),
                    }
                }
            }
            Err(e) => {
                code = 1;
                if json {
                    println!(
                        "{}",
                        mask(&json!({"source": "host", "host": host, "error": e}).to_string())
                    );
                } else {
                    println!("== {host}: error: {}", mask(&e));
                }
            }
        }
    }
    code
}
