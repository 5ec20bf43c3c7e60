//! The layering rules of ARCHITECTURE.md, checked on the source: each layer
//! imports only the layers below it. A failure names the file, the line and
//! the rule. Reads files only (no testbed).

use std::path::{Path, PathBuf};

/// (folder under src/, paths it must not use, why)
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "state",
        &["crate::cli", "crate::commands", "crate::run"],
        "state holds records and their remote scripts; it never imports run or the command line",
    ),
    (
        "modules",
        &[
            "crate::cli",
            "crate::commands",
            "crate::run",
            "crate::project::inventory",
        ],
        "modules never import the command line, the executor or the inventory",
    ),
    (
        "connection",
        &["crate::cli", "crate::commands", "crate::run"],
        "connection is below the executor",
    ),
    (
        "project",
        &[
            "crate::cli",
            "crate::commands",
            "crate::run",
            "crate::modules",
            "crate::connection",
        ],
        "loading never touches a host and knows modules only through ModuleCatalog",
    ),
    (
        "vault",
        &["crate::cli", "crate::commands", "crate::run"],
        "vault is below the command layer",
    ),
    (
        "template",
        &["crate::cli", "crate::commands", "crate::run"],
        "template is below the executor",
    ),
    (
        "plane",
        &["crate::cli", "crate::commands", "crate::run"],
        "the Plane client is below the executor",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether `line` uses `path` as a path (not a longer name such as
/// `crate::runner`), outside a comment. `use crate::{run, ...}` groups are
/// caught too.
fn uses(line: &str, path: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let mut rest = code;
    while let Some(i) = rest.find(path) {
        let after = rest[i + path.len()..].chars().next();
        if !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return true;
        }
        rest = &rest[i + path.len()..];
    }
    // `use crate::{cli, ...}` / `use crate::project::{inventory, ...}`
    if let Some((parent, last)) = path.rsplit_once("::")
        && let Some(i) = code.find(&format!("{parent}::{{"))
    {
        let group = &code[i + parent.len() + 3..];
        let group = group.split('}').next().unwrap_or("");
        return group
            .split(',')
            .any(|item| item.trim().split("::").next() == Some(last));
    }
    false
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    let mut files_checked = 0;
    for (dir, forbidden, why) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(dir), &mut files);
        assert!(!files.is_empty(), "src/{dir} has no Rust files");
        for f in files {
            files_checked += 1;
            let text = std::fs::read_to_string(&f).expect("read source");
            for (n, line) in text.lines().enumerate() {
                for path in *forbidden {
                    if uses(line, path) {
                        broken.push(format!(
                            "{}:{}: uses {path}: {why}",
                            f.strip_prefix(&src).unwrap_or(&f).display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(files_checked > 30, "only {files_checked} files checked");
    assert!(
        broken.is_empty(),
        "layering rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_paths_and_groups_but_not_longer_names_or_comments() {
    assert!(uses("use crate::run::Engine;", "crate::run"));
    assert!(uses("    let e = crate::run::Engine {", "crate::run"));
    assert!(uses("use crate::{cli, vars};", "crate::cli"));
    assert!(uses(
        "use crate::project::{Task, inventory::Vars};",
        "crate::project::inventory"
    ));
    assert!(!uses("use crate::runner::X;", "crate::run"));
    assert!(!uses("// see crate::run::Engine", "crate::run"));
    assert!(!uses(
        "use crate::project::{Task, Scope};",
        "crate::project::inventory"
    ));
}

#[test]
fn no_tracker_numbers_in_code_docs_or_help() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.push(root.join("README.md"));
    files.push(root.join("ARCHITECTURE.md"));
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            let mut rest = lower.as_str();
            while let Some(i) = rest.find("issue ") {
                rest = &rest[i + 6..];
                if rest.starts_with(|c: char| c.is_ascii_digit()) {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                    break;
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "say what the thing is, not its tracker number:\n{}",
        found.join("\n")
    );
}
