//! Records which commit the binary was built from, for `deployer --version`:
//! `DEPLOYER_GIT_REV` is the short commit id, with `-dirty` when tracked files
//! differ from it, or `unknown revision` outside a git checkout (a source
//! tarball) or without git.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let rev = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            // `diff-index` lists tracked files that differ from HEAD.
            let dirty = git(&["diff-index", "--name-only", "HEAD", "--"])
                .map(|changed| !changed.is_empty())
                .unwrap_or(false);
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        _ => "unknown revision".to_string(),
    };
    println!("cargo:rustc-env=DEPLOYER_GIT_REV={rev}");
    // Re-run when the commit or the binary's own sources change (the dirty
    // mark is about those). Not on git's index, nor on tests/ or roles/: a
    // `git status` (deployer runs one to record the checkout's revision)
    // rewrites the index, the testbed writes under tests/, and either would
    // rebuild the binary (minutes at opt-level 3) before every `cargo run`.
    // In a worktree `.git` is a file; `git rev-parse --git-dir` finds the
    // real directory.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head_ref}");
        }
    }
    for path in ["src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
