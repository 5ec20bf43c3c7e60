//! `deployer releases`: each host's releases (what each apply changed), oldest first.

use crate::cli::{OutputFormat, ReleaseArgs};

/// Lists the releases of every targeted host.
pub async fn releases(a: ReleaseArgs) -> i32 {
    match super::release_engine(&a, false) {
        Ok((engine, hosts)) => {
            crate::run::rollback::list(&engine, &hosts, a.format == Some(OutputFormat::Json)).await
        }
        Err(e) => {
            eprintln!("error: {}", crate::secrets::mask(&e));
            1
        }
    }
}
