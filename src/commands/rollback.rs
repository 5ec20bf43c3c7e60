//! `deployer rollback`: undo the newest release on each host (or every release
//! newer than `--to ID`), under the deploy lock. The replay itself is the
//! engine's ([`crate::run::rollback`]): deploy gates use it too.

use crate::cli::ReleaseArgs;
use crate::run::rollback::RollbackRequest;

/// Rolls the targeted hosts back. Exit 0 done, 1 refused or failed, 2 `--check` with changes.
pub async fn rollback(
    common: ReleaseArgs,
    to: Option<String>,
    check: bool,
    diff: bool,
    with_data: bool,
    backup_dirs: Vec<String>,
) -> i32 {
    match super::release_engine(&common, diff) {
        Ok((engine, hosts)) => {
            let req = RollbackRequest {
                to,
                check,
                with_data,
                backup_dirs,
            };
            crate::run::rollback::rollback(&engine, &hosts, &req).await
        }
        Err(e) => {
            eprintln!("error: {}", crate::secrets::mask(&e));
            1
        }
    }
}
