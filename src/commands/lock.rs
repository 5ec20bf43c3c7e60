//! `deployer lock status|release`: who holds the deploy lock on each host, and
//! removing a stale one.

use crate::cli::{LockAction, LockArgs, StateArgs};
use crate::secrets::mask;
use crate::state::lock::{self, LockHolder, LockState};

use super::{project_root, state_engine};

pub async fn lock(a: LockArgs) -> i32 {
    match a.action {
        LockAction::Status(h) => lock_status(h).await,
        LockAction::Release { hosts, force } => lock_release(hosts, force).await,
    }
}

async fn lock_status(a: StateArgs) -> i32 {
    let engine = match state_engine(&a) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            return 1;
        }
    };
    let project = crate::state::project_id(&project_root());
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
    let engine = match state_engine(&a) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            return 1;
        }
    };
    let project = crate::state::project_id(&project_root());
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
