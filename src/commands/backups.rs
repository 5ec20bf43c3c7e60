//! `deployer backups` (what each host keeps) and `deployer restore` (one
//! PostgreSQL backup back into its container, checksum first, the live
//! database replaced only after the copy loaded completely).

use crate::cli::{BackupArgs, OutputFormat, ReleaseArgs, RestoreArgs};
use crate::connection::{Become, Connection};
use crate::modules::backup::{self, Manifest, restore};
use crate::run::Engine;
use crate::secrets::mask;

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
    let conn = engine.connect_host(host).await?;
    let b = become_for(&engine, host);
    let r = restore_on(a, &root, host, &conn, b.as_ref()).await;
    conn.close().await;
    r
}

async fn restore_on(
    a: &RestoreArgs,
    root: &str,
    host: &str,
    conn: &Connection,
    b: Option<&Become>,
) -> Result<i32, String> {
    let list = backup::list(conn, b, root).await?;
    let Some(m) = list.iter().find(|m| m.id == a.backup) else {
        return Err(format!(
            "host {host}: no backup '{}' in {root} (`deployer backups -l {host}` lists them); nothing was changed",
            a.backup
        ));
    };
    let req = request(a, m, conn, b)?;
    req.check()
        .map_err(|e| format!("host {host}: {e}; nothing was changed"))?;
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
    let done = restore::restore(&req).await?;
    println!("{host}: {done}");
    Ok(0)
}

fn request<'a>(
    a: &RestoreArgs,
    m: &'a Manifest,
    conn: &'a Connection,
    b: Option<&'a Become>,
) -> Result<restore::Request<'a>, String> {
    let container = a
        .container
        .clone()
        .or_else(|| m.container.clone())
        .ok_or_else(|| format!("backup {} names no container: give --container", m.id))?;
    Ok(restore::Request {
        source: conn,
        source_become: b,
        target: conn,
        target_become: b,
        socket: crate::connection::docker::DEFAULT_SOCKET.to_string(),
        manifest: m,
        container,
        into: a.into.clone().unwrap_or_else(|| m.name.clone()),
        login_user: m.login_user.clone().unwrap_or_else(|| "postgres".into()),
        after_load_sql: None,
    })
}
