//! `deployer apply`, `check` and `plan`: load the inventory and the playbook,
//! run the engine inside a run session (identity, deploy locks, SIGINT/SIGTERM,
//! the local run log), then print the recap or the plan and pick the exit code.

use std::sync::Arc;

use crate::cli::{OutputFormat, RunArgs};
use crate::project;
use crate::project::images_lock::{ImagePolicy, ImagesLock};
use crate::report::{Format, Reporter};
use crate::run::{Engine, Interrupt, Outcome, RunOptions, RunSession};
use crate::secrets::mask;
use crate::state::audit::{self, RunRecord, masked_command_line};
use crate::state::lock;
use crate::vars::VaultAccess;

use super::{load_inventory, passwords_from, project_id, project_root};

/// What `deployer plan` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    Json,
    Markdown,
}

/// What a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Apply,
    Check,
    Plan(PlanFormat),
    /// `deployer pin`: check mode, resolving every image into `images.lock`.
    Pin,
}

/// `deployer apply` (`check`: with check mode set).
pub async fn apply(a: RunArgs) -> i32 {
    let mode = if a.check { Mode::Check } else { Mode::Apply };
    run_playbook(a, mode).await
}

/// `deployer check`: apply in check mode.
pub async fn check(a: RunArgs) -> i32 {
    run_playbook(a, Mode::Check).await
}

/// `deployer pin`: the playbook in check mode on the inventory's hosts, every
/// image a container or compose task uses resolved through the host's Docker
/// engine (the registry's digest, else the local image), written to `images.lock`.
pub async fn pin(a: RunArgs) -> i32 {
    run_playbook(a, Mode::Pin).await
}

/// `deployer plan`: check mode, printed as data.
pub async fn plan(a: RunArgs) -> i32 {
    let f = match a.format {
        None | Some(OutputFormat::Json) => PlanFormat::Json,
        Some(OutputFormat::Markdown) => PlanFormat::Markdown,
        Some(OutputFormat::Human) => {
            eprintln!("error: plan prints data: use --format json or --format markdown");
            return 1;
        }
    };
    run_playbook(a, Mode::Plan(f)).await
}

async fn run_playbook(a: RunArgs, mode: Mode) -> i32 {
    // The checkout's revision (for the lock and the audit) while the project loads.
    let revision = lock::git_revision_in_background(project_root());
    let check = mode != Mode::Apply;
    let plan = match mode {
        Mode::Plan(f) => Some(f),
        _ => None,
    };
    let partial = !a.tags.is_empty() || !a.skip_tags.is_empty() || a.limit.is_some();
    let loaded = (|| -> Result<_, String> {
        let extra = project::parse_extra_vars(&a.extra_vars).map_err(|e| e.to_string())?;
        let passwords = passwords_from(&a.vault)?;
        if a.inventory.is_empty() {
            load_inventory(&a.inventory)?;
        }
        // Everything knowable without a host, all at once, before any connection.
        // The playbook as the pre-flight loaded it (the same files, read once).
        let checked =
            super::preflight(Some(&a.playbook), &a.inventory, &extra, passwords.as_ref())?;
        let mut inv = load_inventory(&a.inventory)?;
        let pb = match checked {
            Some(pb) => pb,
            None => project::load_playbook(&a.playbook, &crate::modules::registry::Registry)
                .map_err(|e| e.to_string())?,
        };
        let pb_dir = a
            .playbook
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        // group_vars/ next to the playbook count too, as in Ansible.
        inv.load_vars_dirs(&pb_dir).map_err(|e| e.to_string())?;
        let lock_wait = a
            .lock_wait
            .as_deref()
            .map(crate::state::lock::parse_duration)
            .transpose()?;
        let images = match mode {
            Mode::Pin => ImagePolicy::Collect(Default::default()),
            _ => ImagePolicy::for_project(&project_root()).map_err(|e| e.to_string())?,
        };
        Ok((inv, pb, pb_dir, extra, passwords, lock_wait, images))
    })();
    let (inv, pb, pb_dir, extra, passwords, lock_wait, images) = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::mask(&e));
            return 1;
        }
    };
    let format = match (plan, a.format) {
        _ if mode == Mode::Pin => Format::Quiet,
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
    let images = Arc::new(images);
    let reporter = Arc::new(Reporter::new(format, a.diff || plan.is_some()));
    // Deploy lock, pending handlers and audit, named after the project root.
    let session = run_session(check, a.message.clone(), lock_wait, revision);
    let engine = Engine {
        inventory: Arc::new(inv),
        opts: Arc::new(RunOptions {
            check,
            diff: a.diff || plan.is_some(),
            tags: a.tags,
            skip_tags: a.skip_tags,
            limit: a.limit,
            forks: super::forks(a.forks),
            extra_vars: extra,
            project: project_id(),
            keep_releases: a.keep_releases,
            auto_rollback: !a.no_auto_rollback,
            fresh_connection: a.fresh_connection,
            images: images.clone(),
        }),
        env: Arc::new(crate::template::environment()),
        vault: Arc::new(VaultAccess::new(passwords)),
        reporter: reporter.clone(),
        playbook_dir: pb_dir.canonicalize().unwrap_or(pb_dir),
        session: Some(session.clone()),
        hostvars: Default::default(),
        throttles: Default::default(),
    };
    let signals = on_signals(session.interrupt.clone());
    let outcome = engine.run(&pb).await;
    signals.abort();
    if let Some(code) = after_run(&session, &outcome).await {
        return code;
    }
    if mode == Mode::Pin {
        if outcome.failed || outcome.session.interrupted {
            eprintln!("error: the run did not finish: images.lock was not written");
            return if outcome.session.interrupted { 130 } else { 1 };
        }
        return match write_lock(&images, partial) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {}", mask(&e));
                1
            }
        };
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

/// `deployer pin`'s end: the images the run resolved into `images.lock`. A run
/// limited by tags or hosts adds to the lock; a full run replaces it, so
/// images the project no longer uses leave it.
fn write_lock(images: &ImagePolicy, partial: bool) -> Result<(), String> {
    let ImagePolicy::Collect(found) = images else {
        return Err("pin: nothing was collected".into());
    };
    let found = found.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let root = project_root();
    let old = ImagesLock::load(&root).map_err(|e| e.to_string())?;
    let mut lock = ImagesLock {
        path: root.join(crate::project::images_lock::FILE),
        images: Default::default(),
    };
    if partial && let Some(old) = &old {
        lock.images = old.images.clone();
    }
    for (image, (pin, host)) in &found {
        let was = old.as_ref().and_then(|o| o.images.get(image));
        let what = match was {
            None => "added",
            Some(p) if p == pin => "unchanged",
            Some(_) => "changed",
        };
        println!("{what:9} {image}  {} (resolved on {host})", pin.text());
        lock.images.insert(image.clone(), pin.clone());
    }
    if let Some(old) = &old {
        for image in old.images.keys().filter(|i| !lock.images.contains_key(*i)) {
            println!("{:9} {image}  (no task uses it any more)", "removed");
        }
    }
    if found.is_empty() {
        println!("no container or compose task of this run uses an image");
    }
    lock.save()?;
    println!(
        "{}: {} image{}",
        lock.path.display(),
        lock.images.len(),
        if lock.images.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The session of an `apply`/`check`/`plan` run: who, what, where it is logged.
fn run_session(
    check: bool,
    message: Option<String>,
    lock_wait: Option<std::time::Duration>,
    revision: tokio::sync::oneshot::Receiver<(Option<String>, bool)>,
) -> Arc<RunSession> {
    let root = project_root();
    let argv: Vec<String> = std::env::args().collect();
    Arc::new(RunSession::new(
        crate::state::project_id(&root),
        root,
        revision,
        masked_command_line(&argv),
        message,
        check,
        lock_wait,
    ))
}

/// SIGINT/SIGTERM: the first stops the run (which then saves pending
/// handlers, writes the audit line and releases the locks); a second quits at once.
fn on_signals(interrupt: Interrupt) -> tokio::task::JoinHandle<()> {
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
async fn after_run(s: &RunSession, outcome: &Outcome) -> Option<i32> {
    let so = &outcome.session;
    if !s.check {
        let holder = s.holder().await;
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
            run_id: holder.run_id.clone(),
            started: holder.since.clone(),
            finished: lock::rfc3339(std::time::SystemTime::now()),
            performer: holder.who.clone(),
            revision: holder.revision.clone(),
            dirty: holder.dirty,
            command: holder.command.clone(),
            message: holder.message.clone(),
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
