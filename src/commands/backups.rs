//! `deployer backups` (what each host keeps) and `deployer restore` (one
//! PostgreSQL backup back into its container, checksum first, the live
//! database replaced only after the copy loaded completely).

use crate::cli::{BackupArgs, OutputFormat, ReleaseArgs, RestoreArgs};
use crate::connection::{Become, Connection};
use crate::modules::backup::{self, restore};
use crate::run::Engine;
use crate::run::rollback::{Locks, this_run_holder};
use crate::secrets::mask;
use crate::state::lock::LockHolder;

fn engine_for(a: &BackupArgs) -> Result<(Engine, Vec<String>), String> {
    let ra = ReleaseArgs {
        inventory: a.inventory.clone(),
        limit: a.limit.clone(),
        extra_vars: a.extra_vars.clone(),
        keep_releases: None,
        format: a.format,
        fresh_connection: a.fresh_connection,
        vault: crate::cli::PasswordArgs {
            vault_password_files: a.vault.vault_password_files.clone(),
            vault_ids: a.vault.vault_ids.clone(),
            ask_vault_password: a.vault.ask_vault_password,
        },
    };
    super::release_engine(&ra, false)
}

/// The user the host's backup directory is read and written as: the one its
/// release state uses (root when the host becomes root).
pub fn become_for(engine: &Engine, host: &str) -> Option<Become> {
    engine.state_location(host).and_then(|(l, _)| l.become_)
}

fn root_of(a: &BackupArgs) -> Result<String, String> {
    let root = a
        .dir
        .clone()
        .unwrap_or_else(|| backup::DEFAULT_DIR.to_string());
    backup::check_dir("--dir", &root)?;
    Ok(root)
}

/// `deployer backups`: every backup on every targeted host, oldest first.
pub async fn backups(a: BackupArgs) -> i32 {
    let (engine, hosts, root) = match engine_for(&a).and_then(|(e, h)| Ok((e, h, root_of(&a)?))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            return 1;
        }
    };
    let json = a.format == Some(OutputFormat::Json);
    let results = futures::future::join_all(hosts.iter().map(|h| {
        let engine = &engine;
        let root = &root;
        async move {
            let r = async {
                let conn = engine.connect_host(h).await?;
                let b = become_for(engine, h);
                let r = backup::list(&conn, b.as_ref(), root).await;
                conn.close().await;
                r
            }
            .await;
            (h.clone(), r)
        }
    }))
    .await;
    let mut code = 0;
    let mut rows = Vec::new();
    for (host, r) in results {
        match r {
            Ok(list) => {
                if !json {
                    if list.is_empty() {
                        println!("{host}: no backups in {root}");
                    } else {
                        println!("{host}:");
                    }
                }
                for m in list {
                    if json {
                        let mut v = backup::manifest_json(&m);
                        if let Some(o) = v.as_object_mut() {
                            o.insert("inventory_host".into(), host.clone().into());
                        }
                        rows.push(v);
                    } else {
                        println!(
                            "  {:<40} {:<8} {:<20} {:>12} {}  {}  {}",
                            m.id,
                            m.kind,
                            m.name,
                            m.size,
                            &m.sha256[..16.min(m.sha256.len())],
                            m.created,
                            m.release.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
            Err(e) => {
                code = 1;
                eprintln!("{host}: error: {}", mask(&e));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Array(rows)).unwrap_or_default()
        );
    }
    code
}

/// `deployer restore`: exit 0 restored, 1 refused or failed, 2 without `--yes`
/// (the plan is printed, nothing changes).
pub async fn restore_cmd(a: RestoreArgs) -> i32 {
    match restore_inner(&a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            1
        }
    }
}

async fn restore_inner(a: &RestoreArgs) -> Result<i32, String> {
    backup::check_id(&a.backup)?;
    if let Some(into) = &a.into {
        backup::check_name("--into", into)?;
    }
    let root = root_of(&a.common)?;
    let (engine, hosts) = engine_for(&a.common)?;
    let [host] = hosts.as_slice() else {
        return Err(format!(
            "restore works on one host: -l selects {} hosts ({}); name the one that holds backup {}",
            hosts.len(),
            hosts.join(", "),
            a.backup
        ));
    };
    let conn = std::sync::Arc::new(engine.connect_host(host).await?);
    let b = become_for(&engine, host);
    let locks = Locks::default();
    let holder = this_run_holder();
    let r = restore_on(a, &root, host, &engine, &conn, b.as_ref(), &locks, &holder).await;
    locks.release(&engine, &holder).await;
    if let Ok(c) = std::sync::Arc::try_unwrap(conn) {
        c.close().await;
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn restore_on(
    a: &RestoreArgs,
    root: &str,
    host: &str,
    engine: &Engine,
    conn: &std::sync::Arc<Connection>,
    b: Option<&Become>,
    locks: &Locks,
    holder: &LockHolder,
) -> Result<i32, String> {
    let list = backup::list(conn, b, root).await?;
    let Some(m) = list.iter().find(|m| m.id == a.backup) else {
        return Err(format!(
            "host {host}: no backup '{}' in {root} (`deployer backups -l {host}` lists them); nothing was changed",
            a.backup
        ));
    };
    let req = restore::plan(m, conn, b, a.into.as_deref(), a.container.as_deref())?;
    println!(
        "restore of backup {} ({} of {}, {} bytes, {}) on {host}:",
        m.id, m.kind, m.name, m.size, m.created
    );
    for (i, line) in req.describe().iter().enumerate() {
        println!("  {}. {line}", i + 1);
    }
    if !a.yes {
        println!("nothing was changed: run again with --yes to restore");
        return Ok(2);
    }
    // The deploy lock: no apply, rollback or other restore on this host meanwhile.
    locks
        .acquire(engine, host, conn, holder)
        .await
        .map_err(|e| format!("host {host}: {e}; nothing was restored"))?;
    let done = req.run().await?;
    println!("{host}: {done}");
    Ok(0)
}

/// An engine over one inventory and the one host it selects.
fn one_host(
    inventory: &std::path::Path,
    host: Option<&str>,
    dir: Option<&str>,
    vault: &crate::cli::PasswordArgs,
    side: &str,
) -> Result<(Engine, String), String> {
    let a = BackupArgs {
        inventory: vec![inventory.to_path_buf()],
        limit: host.map(str::to_string),
        extra_vars: Vec::new(),
        format: None,
        dir: dir.map(str::to_string),
        fresh_connection: false,
        vault: crate::cli::PasswordArgs {
            vault_password_files: vault.vault_password_files.clone(),
            vault_ids: vault.vault_ids.clone(),
            ask_vault_password: vault.ask_vault_password,
        },
    };
    let (engine, hosts) = engine_for(&a)?;
    match hosts.as_slice() {
        [h] => Ok((engine, h.clone())),
        _ => Err(format!(
            "the {side} inventory {} selects {} hosts ({}): name one with --{side}-host",
            inventory.display(),
            hosts.len(),
            hosts.join(", ")
        )),
    }
}

/// `deployer refresh-staging`: exit 0 refreshed, 1 refused or failed, 2
/// without `--yes` (the plan is printed, nothing changes).
pub async fn refresh_staging(a: crate::cli::RefreshStagingArgs) -> i32 {
    match refresh_inner(&a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            1
        }
    }
}

async fn refresh_inner(a: &crate::cli::RefreshStagingArgs) -> Result<i32, String> {
    backup::check_name("--database", &a.database)?;
    if let Some(p) = &a.project {
        backup::check_name("--project", p)?;
    }
    let root = a
        .dir
        .clone()
        .unwrap_or_else(|| backup::DEFAULT_DIR.to_string());
    backup::check_dir("--dir", &root)?;
    let sql = std::fs::read_to_string(&a.anonymise)
        .map_err(|e| format!("--anonymise {}: {e}", a.anonymise.display()))?;
    if sql.trim().is_empty() {
        return Err(format!(
            "--anonymise {}: the file is empty: staging would get production's data as it is",
            a.anonymise.display()
        ));
    }
    let (prod, prod_host) = one_host(
        &a.production,
        a.production_host.as_deref(),
        a.dir.as_deref(),
        &a.vault,
        "production",
    )?;
    let (staging, staging_host) = one_host(
        &a.staging,
        a.staging_host.as_deref(),
        a.dir.as_deref(),
        &a.vault,
        "staging",
    )?;
    if std::fs::canonicalize(&a.production).ok() == std::fs::canonicalize(&a.staging).ok()
        && prod_host == staging_host
    {
        return Err(format!(
            "production and staging are the same host ({prod_host}): refusing to refresh production from itself"
        ));
    }
    let pconn = prod.connect_host(&prod_host).await?;
    let sconn = match staging.connect_host(&staging_host).await {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            pconn.close().await;
            return Err(e);
        }
    };
    let locks = Locks::default();
    let holder = this_run_holder();
    let pb = become_for(&prod, &prod_host);
    let sb = become_for(&staging, &staging_host);
    let r = async {
        let list = backup::list(&pconn, pb.as_ref(), &root).await?;
        let newest = list
            .iter()
            .rev()
            .find(|m| {
                m.kind == "postgres"
                    && m.name == a.database
                    && a.project.as_ref().is_none_or(|p| *p == m.project)
            })
            .ok_or_else(|| {
                format!(
                    "production host {prod_host}: no backup of database '{}' in {root}; nothing was changed",
                    a.database
                )
            })?;
        let container = a
            .container
            .clone()
            .or_else(|| newest.container.clone())
            .ok_or("give --container")?;
        let req = restore::Request {
            source: &pconn,
            source_become: pb.as_ref(),
            target: &sconn,
            target_become: sb.as_ref(),
            socket: crate::connection::docker::DEFAULT_SOCKET.to_string(),
            manifest: newest,
            container,
            into: a.database.clone(),
            login_user: newest
                .login_user
                .clone()
                .unwrap_or_else(|| "postgres".into()),
            after_load_sql: Some((a.anonymise.display().to_string(), sql.clone())),
        };
        req.check()?;
        println!(
            "refresh of staging ({staging_host}) from production backup {} ({}, {} bytes, {}) on {prod_host}:",
            newest.id, newest.name, newest.size, newest.created
        );
        for (i, line) in req.describe().iter().enumerate() {
            println!("  {}. {line}", i + 1);
        }
        if !a.yes {
            println!("nothing was changed: run again with --yes to refresh staging");
            return Ok(2);
        }
        // The staging host's deploy lock: no apply or restore there meanwhile.
        locks
            .acquire(&staging, &staging_host, &sconn, &holder)
            .await
            .map_err(|e| format!("staging host {staging_host}: {e}; nothing was changed"))?;
        let done = restore::restore(&req).await?;
        println!("{staging_host}: {done}, anonymised with {}", a.anonymise.display());
        Ok(0)
    }
    .await;
    locks.release(&staging, &holder).await;
    pconn.close().await;
    if let Ok(c) = std::sync::Arc::try_unwrap(sconn) {
        c.close().await;
    }
    r
}
