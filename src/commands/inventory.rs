//! `deployer inventory`: what the loader understood of the inventory (groups,
//! a host's variables, the group graph). Touches no host.

use std::path::PathBuf;

use crate::project::Inventory;

use super::load_inventory;

/// Prints the inventory as `--graph`, `--host NAME` or the group list.
pub fn show(paths: &[PathBuf], graph: bool, host: Option<&str>, _list: bool) -> i32 {
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
