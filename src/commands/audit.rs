//! `deployer audit`: the last runs, from the local run log and each host's
//! audit log.

use serde_json::json;

use crate::cli::{AuditArgs, AuditFormat};
use crate::secrets::mask;
use crate::state::audit;

use super::{project_root, state_engine};

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
    let engine = match state_engine(&a.hosts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", mask(&e));
            return 1;
        }
    };
    let project = crate::state::project_id(&root);
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
