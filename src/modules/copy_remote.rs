//! `copy` with `remote_src: true`: `src` is a file on the host, copied to
//! `dest` there as Ansible's copy module does it (the action plugin hands
//! such a task straight to the module).
//!
//! `changed` when the source's SHA-1 differs from the destination's (or the
//! destination is a link), then when `mode`/`owner`/`group` differ. The copy
//! keeps the source's mode and times (`shutil.copystat`); a file it replaces
//! does not give its owner or mode (`keep_dest_attrs=False`), a new one gets
//! 0666 less the umask. `dest` naming a directory receives the source's file
//! name. Returns `dest`, `src`, `checksum`, `md5sum`, `backup_file` and the
//! destination's attributes, as Ansible's.
//!
//! A directory as `src` is copied as Ansible's `copy_directory` does: into
//! `dest` under its own name, or its content into `dest` when `src` ends in
//! `/`; a new tree keeps modes and times (`copytree`), files that differ
//! (same size and time, else same bytes, is the same) or are missing are
//! copied with the source's mode, `owner`/`group` apply to the whole tree.
//!
//! Not supported yet: links and special files inside a source directory, a
//! `dest` ending in `/` whose directory does not exist (Ansible creates it).

use serde_json::json;

use super::files::Attrs;
use super::observe::{FileKind, Want};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::shell_quote;
use crate::connection::write::{self, RemoteWrite};

/// What the task asks (the `copy` arguments `remote_src` reads).
pub(crate) struct RemoteCopy<'a> {
    pub src: &'a str,
    pub dest: &'a str,
    pub attrs: Attrs,
    pub backup: bool,
    pub force: bool,
    pub validate: Option<&'a str>,
}

/// The source as the host reports it.
struct Source {
    sha1: String,
    md5: String,
}

/// `os.path.basename`.
fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// `os.path.join`.
fn join(a: &str, b: &str) -> String {
    if b.starts_with('/') || a.is_empty() {
        b.to_string()
    } else if a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

pub(crate) async fn copy_remote(
    ctx: &mut ModuleCtx<'_>,
    t: RemoteCopy<'_>,
) -> Result<ModuleResult, String> {
    let src = t.src;
    // Ansible's module makes a bare name relative to its working directory.
    let mut dest = if t.dest.contains('/') {
        t.dest.to_string()
    } else {
        format!("./{}", t.dest)
    };
    let q = shell_quote(src);
    let d = shell_quote(dest.trim_end_matches('/'));
    let script = format!(
        "if [ ! -e {q} ]; then echo N; exit 0; fi\n\
         if [ ! -r {q} ]; then echo R; exit 0; fi\n\
         if [ -d {q} ]; then echo D; elif [ -f {q} ]; then\n\
           printf 'F\\t%s\\t%s\\n' \"$(sha1sum < {q} | cut -d' ' -f1)\" \"$(md5sum < {q} | cut -d' ' -f1)\"\n\
         else echo O; fi\n\
         if [ -d {d} ]; then echo 'T\tdir'; elif [ -e {d} ]; then echo 'T\tother'; else echo 'T\tnone'; fi\n"
    );
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let text = out.stdout_str();
    let first = text.lines().next().unwrap_or_default();
    let source = match first.split('\t').collect::<Vec<_>>().as_slice() {
        ["N"] => return Ok(ModuleResult::failed(format!("Source {src} not found"))),
        ["R"] => return Ok(ModuleResult::failed(format!("Source {src} not readable"))),
        ["D"] => None,
        ["F", sha1, md5] => Some(Source {
            sha1: sha1.to_string(),
            md5: md5.to_string(),
        }),
        _ => {
            return Ok(ModuleResult::failed(format!(
                "Cannot copy invalid source '{src}': not a file"
            )));
        }
    };
    let dest_kind = text
        .lines()
        .find_map(|l| l.strip_prefix("T\t"))
        .unwrap_or("none");
    if dest.ends_with('/') && dest_kind == "none" {
        return Err(format!(
            "copy: remote_src to a directory that does not exist yet ({dest}) is not supported yet by deployer"
        ));
    }
    let Some(source) = source else {
        return copy_dir(ctx, &t, &dest, dest_kind == "dir").await;
    };
    if dest_kind == "dir" {
        dest = join(&dest, basename(src));
    }
    let obs = ctx
        .observed
        .one(
            ctx.conn,
            ctx.become_.as_ref(),
            &dest,
            Want {
                content: false,
                sha1: true,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut r = ModuleResult::ok();
    r.data.insert("dest".into(), json!(dest));
    r.data.insert("src".into(), json!(src));
    if obs.exists && !t.force {
        r.msg = Some("file already exists".into());
        super::files::add_path_info(ctx, &mut r, &dest).await?;
        return Ok(r);
    }
    if obs.exists && obs.kind == FileKind::Directory {
        return Err(format!("copy: {dest} is a directory"));
    }
    let is_link = obs.exists && obs.kind == FileKind::Link;
    let content_changed =
        is_link || !obs.exists || obs.sha1.as_deref() != Some(source.sha1.as_str());
    // What the copy leaves before `mode`/`owner`/`group` apply: the source's
    // mode over an existing file, 0666 less the umask for a new one (the
    // write does that), the writing user as owner.
    let attr_changes = if content_changed {
        Vec::new()
    } else {
        t.attrs.changes(&obs)
    };
    r.data.insert("md5sum".into(), json!(source.md5));
    r.data.insert("checksum".into(), json!(source.sha1));
    if !content_changed && attr_changes.is_empty() {
        super::files::add_path_info(ctx, &mut r, &dest).await?;
        return Ok(r);
    }
    r.changed = true;
    if ctx.diff {
        let mut attributes = attr_changes.clone();
        if !obs.exists {
            attributes.push("state: absent -> file".into());
        }
        r.diffs.push(FileDiff {
            path: dest.clone(),
            before: None,
            after: None,
            attributes,
            note: content_changed.then(|| format!("content copied from {src} on the host")),
        });
    }
    if ctx.check {
        return Ok(r);
    }
    let pa = t.attrs.path_attrs();
    let script = if content_changed {
        let produce = format!(
            "cp --preserve=mode,timestamps -- {q} new || __dw_fail \"cannot copy {}\"",
            src.replace(['"', '\\', '$', '`'], "")
        );
        let script = RemoteWrite::new(&dest, b"")
            .produce(Some(&produce))
            .keep_attrs(false)
            .owner(pa.owner)
            .group(pa.group)
            .mode(pa.mode)
            .backup(t.backup)
            .validate(t.validate)
            .script()?;
        format!("{}{script}", ctx.release_save(&dest))
    } else {
        format!(
            "{}{}",
            ctx.release_save(&dest),
            write::attributes_script(&dest, &pa, false)?
        )
    };
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    ctx.release_saved(&dest, &out.stdout_str());
    ctx.observed.forget(&dest);
    if let Some(b) = write::outcome(&dest, &out)?.backup_file {
        r.data.insert("backup_file".into(), json!(b));
    }
    super::files::add_path_info(ctx, &mut r, &dest).await?;
    Ok(r)
}

/// One entry of a tree listing (relative path, from `find -printf`).
#[derive(Debug, Clone)]
struct Entry {
    kind: char,
    size: String,
    mtime: String,
    owner: String,
    group: String,
    sha: Option<String>,
}

/// A tree as the host lists it: relative path to entry (`""` is the root).
type Tree = std::collections::BTreeMap<String, Entry>;

/// The script listing the tree at `root` (nothing when it is not a
/// directory): `@T` then one line per path, `@H` then the SHA-256s.
fn tree_script(root: &str, tag: &str) -> String {
    let q = shell_quote(root);
    format!(
        "if [ -d {q} ] && [ ! -L {q} ]; then echo '@{tag}'; (cd -P -- {q} && find . -printf '%y\\t%s\\t%T@\\t%u\\t%g\\t%P\\n' && echo '@{tag}H' && find . -type f -exec sha256sum -- {{}} +); fi\n"
    )
}

fn parse_trees(text: &str) -> Result<std::collections::HashMap<String, Tree>, String> {
    let mut trees: std::collections::HashMap<String, Tree> = std::collections::HashMap::new();
    let mut cur: Option<(String, bool)> = None;
    for line in text.lines() {
        if let Some(tag) = line.strip_prefix('@') {
            cur = Some(match tag.strip_suffix('H') {
                Some(t) => (t.to_string(), true),
                None => (tag.to_string(), false),
            });
            trees
                .entry(cur.as_ref().map(|c| c.0.clone()).unwrap_or_default())
                .or_default();
            continue;
        }
        let Some((tag, hashes)) = &cur else { continue };
        let Some(tree) = trees.get_mut(tag) else {
            continue;
        };
        if *hashes {
            if let Some((h, p)) = line.split_once("  ") {
                let p = p.strip_prefix("./").unwrap_or(p).to_string();
                if let Some(e) = tree.get_mut(&p) {
                    e.sha = Some(h.to_string());
                }
            }
            continue;
        }
        let f: Vec<&str> = line.splitn(6, '\t').collect();
        let [kind, size, mtime, owner, group, path] = f.as_slice() else {
            return Err(format!("copy: cannot read the listing line '{line}'"));
        };
        tree.insert(
            path.to_string(),
            Entry {
                kind: kind.chars().next().unwrap_or('?'),
                size: size.to_string(),
                mtime: mtime.to_string(),
                owner: owner.to_string(),
                group: group.to_string(),
                sha: None,
            },
        );
    }
    Ok(trees)
}

/// What copying a directory does, as Ansible's `copy_directory`.
#[derive(Debug, PartialEq, Eq)]
enum DirOp {
    /// `shutil.copytree` of the source's `rel` to the destination's.
    Tree(String),
    /// `copyfile` + `copymode` over an existing file (its owner kept).
    Replace(String),
    /// `copyfile` + `copymode` to a new file.
    New(String),
    /// `chown`/`chgrp` of a destination path (`rel`).
    Chown(String),
}

fn children<'a>(tree: &'a Tree, rel: &str) -> Vec<(&'a str, &'a Entry)> {
    tree.iter()
        .filter(|(p, _)| {
            !p.is_empty()
                && match rel {
                    "" => !p.contains('/'),
                    r => p
                        .strip_prefix(r)
                        .and_then(|x| x.strip_prefix('/'))
                        .is_some_and(|x| !x.contains('/')),
                }
        })
        .map(|(p, e)| (p.rsplit('/').next().unwrap_or(p), e))
        .collect()
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// `filecmp.cmp(shallow=True)`: the same type, size and mtime are the same
/// file; else the same size and bytes.
fn same_file(a: &Entry, b: &Entry) -> bool {
    (a.size == b.size && a.mtime == b.mtime)
        || (a.size == b.size && a.sha == b.sha && a.sha.is_some())
}

/// `copy_diff_files`, `copy_left_only` and `copy_common_dirs` from `rel` down.
fn compare(src: &Tree, dest: &Tree, rel: &str, ops: &mut Vec<DirOp>) {
    let theirs: std::collections::HashMap<&str, &Entry> = children(dest, rel).into_iter().collect();
    for (name, s) in children(src, rel) {
        let path = join_rel(rel, name);
        match theirs.get(name) {
            None if s.kind == 'd' => ops.push(DirOp::Tree(path)),
            None if s.kind == 'f' => ops.push(DirOp::New(path)),
            None => {}
            Some(d) if s.kind == 'f' && d.kind == 'f' && !same_file(s, d) => {
                ops.push(DirOp::Replace(path));
            }
            Some(d) if s.kind == 'd' && d.kind == 'd' => compare(src, dest, &path, ops),
            Some(_) => {}
        }
    }
}

/// The plan of `copy_directory(src/, target)`: `dest_tree` is `None` when
/// the target does not exist.
fn plan_directory(
    src: &Tree,
    dest_tree: Option<&Tree>,
    owner: Option<&str>,
    group: Option<&str>,
) -> Vec<DirOp> {
    let mut ops = Vec::new();
    match dest_tree {
        None => ops.push(DirOp::Tree(String::new())),
        Some(d) => {
            compare(src, d, "", &mut ops);
            // `chown_recursive` of what was there (what the copy makes is
            // owned as asked by the copy itself).
            for (p, e) in d {
                if owner.is_some_and(|o| o != e.owner) || group.is_some_and(|g| g != e.group) {
                    ops.push(DirOp::Chown(p.clone()));
                }
            }
        }
    }
    ops
}

/// A directory as `src`: Ansible's `copy_directory`, then `mode`/`owner`/
/// `group` on the reported `dest`.
async fn copy_dir(
    ctx: &mut ModuleCtx<'_>,
    t: &RemoteCopy<'_>,
    dest_param: &str,
    dest_is_dir: bool,
) -> Result<ModuleResult, String> {
    let src = t.src;
    if src.contains('\n') || dest_param.contains('\n') {
        return Err("copy: paths with a newline are not supported yet by deployer".into());
    }
    // The reported dest: a directory dest gets the source's base name.
    let dest = if dest_is_dir {
        join(dest_param, basename(src))
    } else {
        dest_param.to_string()
    };
    let target = if src.ends_with('/') {
        dest_param.to_string()
    } else {
        join(dest_param, basename(src))
    };
    let target = target.trim_end_matches('/').to_string();
    let src_root = src.trim_end_matches('/').to_string();
    let script = format!(
        "{}{}if [ -e {q} ] || [ -L {q} ]; then echo '@X'; fi\n",
        tree_script(&src_root, "S"),
        tree_script(&target, "D"),
        q = shell_quote(&target)
    );
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let trees = parse_trees(&out.stdout_str())?;
    let Some(src_tree) = trees.get("S") else {
        return Ok(ModuleResult::failed(format!("Source {src} not found")));
    };
    if src_tree.values().any(|e| e.kind != 'f' && e.kind != 'd') {
        return Err(format!(
            "copy: remote_src of a directory holding links or special files ({src}) is not supported yet by deployer"
        ));
    }
    let dest_tree = trees.get("D");
    if dest_tree.is_none() && trees.contains_key("X") {
        return Err(format!("copy: {target} exists and is not a directory"));
    }
    let ops = plan_directory(
        src_tree,
        dest_tree,
        t.attrs.owner.as_deref(),
        t.attrs.group.as_deref(),
    );
    let mut r = ModuleResult::ok();
    r.data.insert("dest".into(), json!(dest));
    r.data.insert("src".into(), json!(src));
    r.data.insert("md5sum".into(), json!(null));
    r.data.insert("checksum".into(), json!(null));
    r.changed = !ops.is_empty();
    // `mode` (and owner, group) on the reported dest, as
    // `set_fs_attributes_if_different` does after the copy.
    let dest_obs = ctx
        .observed
        .one(ctx.conn, ctx.become_.as_ref(), &dest, Want::default())
        .await
        .map_err(|e| e.to_string())?;
    let attr_changes = if dest_obs.exists {
        t.attrs.changes(&dest_obs)
    } else {
        Vec::new()
    };
    if !attr_changes.is_empty() || (!dest_obs.exists && t.attrs.mode.is_some()) {
        r.changed = true;
    }
    if ctx.check || !r.changed {
        if dest_obs.exists {
            super::files::add_path_info(ctx, &mut r, &dest).await?;
        }
        return Ok(r);
    }
    let s = shell_quote(&src_root);
    let d = shell_quote(&target);
    let owner = t.attrs.owner.as_deref().map(shell_quote);
    let group = t.attrs.group.as_deref().map(shell_quote);
    let mut script = String::from("set -e\n");
    let own = |p: &str| {
        let mut x = String::new();
        if let Some(o) = &owner {
            x.push_str(&format!("chown -h -- {o} {p}\n"));
        }
        if let Some(g) = &group {
            x.push_str(&format!("chgrp -h -- {g} {p}\n"));
        }
        x
    };
    for op in &ops {
        match op {
            DirOp::Tree(rel) => {
                let (sp, dp) = if rel.is_empty() {
                    (s.clone(), d.clone())
                } else {
                    (
                        shell_quote(&format!("{src_root}/{rel}")),
                        shell_quote(&format!("{target}/{rel}")),
                    )
                };
                script.push_str(&format!(
                    "mkdir -p -- \"$(dirname -- {dp})\"\ncp -R -P --preserve=mode,timestamps -T -- {sp} {dp}\n"
                ));
                if owner.is_some() || group.is_some() {
                    if let Some(o) = &owner {
                        script.push_str(&format!("chown -R -h -- {o} {dp}\n"));
                    }
                    if let Some(g) = &group {
                        script.push_str(&format!("chgrp -R -h -- {g} {dp}\n"));
                    }
                }
            }
            DirOp::Replace(rel) | DirOp::New(rel) => {
                let sp = shell_quote(&format!("{src_root}/{rel}"));
                let dp = shell_quote(&format!("{target}/{rel}"));
                let dir = shell_quote(&match rel.rsplit_once('/') {
                    Some((p, _)) => format!("{target}/{p}"),
                    None => target.clone(),
                });
                script.push_str(&format!(
                    "t=$(mktemp -p {dir} .deployer-copy.XXXXXX)\ncp -- {sp} \"$t\"\nchmod --reference={sp} \"$t\"\n"
                ));
                if matches!(op, DirOp::Replace(_)) {
                    script.push_str(&format!("chown --reference={dp} \"$t\"\n"));
                }
                script.push_str(&format!("mv -f -T -- \"$t\" {dp}\n"));
                script.push_str(&own(&dp));
            }
            DirOp::Chown(rel) => {
                let dp = if rel.is_empty() {
                    d.clone()
                } else {
                    shell_quote(&format!("{target}/{rel}"))
                };
                script.push_str(&own(&dp));
            }
        }
    }
    let pa = t.attrs.path_attrs();
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Ok(ModuleResult::failed(format!(
            "Failed to copy {src:?} to {dest:?}: {}",
            out.stderr_str().trim()
        )));
    }
    if !pa.is_empty() {
        let out = ctx
            .conn
            .run_script(
                &write::attributes_script(&dest, &pa, false)?,
                ctx.become_.as_ref(),
            )
            .await
            .map_err(|e| e.to_string())?;
        write::outcome(&dest, &out)?;
    }
    ctx.observed.forget(&dest);
    super::files::add_path_info(ctx, &mut r, &dest).await?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, char, &str)]) -> Tree {
        entries
            .iter()
            .map(|(p, k, sha)| {
                (
                    p.to_string(),
                    Entry {
                        kind: *k,
                        size: "1".into(),
                        mtime: sha.to_string(),
                        owner: "root".into(),
                        group: "root".into(),
                        sha: Some(sha.to_string()),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn directories_are_compared_as_copy_directory_does() {
        let src = tree(&[
            ("", 'd', ""),
            ("a", 'f', "1"),
            ("b", 'f', "2"),
            ("sub", 'd', ""),
            ("sub/c", 'f', "3"),
            ("new", 'd', ""),
            ("new/x", 'f', "4"),
        ]);
        let dest = tree(&[
            ("", 'd', ""),
            ("a", 'f', "1"),
            ("b", 'f', "9"),
            ("sub", 'd', ""),
            ("extra", 'f', "5"),
        ]);
        assert_eq!(
            plan_directory(&src, Some(&dest), None, None),
            vec![
                DirOp::Replace("b".into()),
                DirOp::Tree("new".into()),
                DirOp::New("sub/c".into())
            ]
        );
        assert_eq!(
            plan_directory(&src, None, None, None),
            vec![DirOp::Tree(String::new())]
        );
        assert!(plan_directory(&src, Some(&src), None, None).is_empty());
        assert_eq!(plan_directory(&src, Some(&src), Some("root"), None), vec![]);
        assert_eq!(
            plan_directory(&src, Some(&src), Some("nobody"), None).len(),
            src.len()
        );
    }

    #[test]
    fn paths_join_as_python_does() {
        assert_eq!(basename("/srv/a/b.conf"), "b.conf");
        assert_eq!(join("/etc/app", "b.conf"), "/etc/app/b.conf");
        assert_eq!(join("/etc/app/", "b.conf"), "/etc/app/b.conf");
    }
}
