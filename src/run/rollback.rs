//! Rollback: undo the newest release(s) on each
//! host, by the records in `releases/<id>/release.json`.
//!
//! `rollback` undoes the newest release (back to the one before it);
//! `rollback --to ID` undoes every release newer than ID, so the host is as
//! ID left it. For each file the state saved by the OLDEST undone release
//! that touched it is restored (content byte for byte, mode, owner; a file
//! that was absent is removed); for each compose service, the container it
//! had before that release, by image ID. The flow per run:
//!
//! 1. every targeted host: list releases, choose, verify that every saved
//!    copy (by sha256) and image ID still exists — one remote execution plus
//!    Docker API calls. Any problem on any host: refuse, list them all,
//!    change nothing anywhere.
//! 2. `--check`: print what would change (diffs) and stop.
//! 3. per host, one script restores every file: copies staged as temp files
//!    next to their targets first, then renamed in a burst that ignores
//!    hangups; the script is one shell function called on its last line, so
//!    a link that drops before the whole script arrived runs none of it.
//!    Then each compose project is converged from the restored files with
//!    each service's image tag pointing at the recorded image ID again
//!    (re-tagged if it moved); the result is checked by image ID.
//! 4. the rollback is recorded as a release of its own (kind `rollback`), so
//!    it can itself be undone.
//!
//! [`rollback`] is the one entry point of `deployer rollback`, so the deploy
//! lock can wrap it whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use indexmap::IndexMap;
use serde_json::{Value as Json, json};

use super::Engine;
use crate::connection::{Connection, shell_quote};
use crate::modules::backup::{self, restore};
use crate::modules::observe::{FileKind, Observations, ObservedFile};
use crate::modules::{FileDiff, ModuleCtx};
use crate::report::Status;
use crate::state::lock::{self, LockHolder, LockState};
use crate::state::releases::{
    ComposeRecord, ContainerState, FileRecord, PreviousFile, Recorder, ReleaseRecord,
    ServiceRecord, StateLocation, TaskSummary, git_revision, list_script, parse_list,
};

pub struct RollbackRequest {
    /// Roll back to this release (undo every newer one); None: undo the newest.
    pub to: Option<String>,
    pub check: bool,
    /// Also restore the backups taken during the undone releases (`--with-data`).
    pub with_data: bool,
    /// Where else backups are kept on the hosts (`--backup-dir`), searched
    /// after the default directory.
    pub backup_dirs: Vec<String>,
}

/// A file to restore and the release whose saved state it comes from.
#[derive(Debug, Clone)]
struct Restore {
    release: String,
    rec: FileRecord,
}

/// One host, ready to roll back.
struct HostPlan {
    host: String,
    conn: Arc<Connection>,
    loc: StateLocation,
    keep: usize,
    /// Undone releases, newest first.
    undo: Vec<String>,
    target: Option<String>,
    files: Vec<Restore>,
    compose: Vec<ComposeRecord>,
    /// Check mode: the saved copies and the current contents, for diffs.
    saved: BTreeMap<String, Vec<u8>>,
    current: BTreeMap<String, Vec<u8>>,
    current_kind: BTreeMap<String, String>,
    /// The host has no release of this project at all (nothing to undo).
    untouched: bool,
}

/// Which releases to undo: (undone newest first, the release rolled back to).
fn select(
    releases: &[ReleaseRecord],
    to: Option<&str>,
) -> Result<(Vec<ReleaseRecord>, Option<String>), String> {
    let ids = || {
        releases
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match to {
        None => {
            if releases.len() < 2 {
                return Err(if releases.is_empty() {
                    "no release recorded on this host: nothing to roll back".to_string()
                } else {
                    format!(
                        "no earlier release to roll back to (the only release is {})",
                        ids()
                    )
                });
            }
            let n = releases.len();
            Ok((
                vec![releases[n - 1].clone()],
                Some(releases[n - 2].id.clone()),
            ))
        }
        Some(id) => {
            let pos = releases.iter().position(|r| r.id == id).ok_or_else(|| {
                format!(
                    "unknown release '{id}' (releases on this host: {})",
                    if releases.is_empty() {
                        "none".to_string()
                    } else {
                        ids()
                    }
                )
            })?;
            Ok((
                releases[pos + 1..].iter().rev().cloned().collect(),
                Some(id.to_string()),
            ))
        }
    }
}

/// The union of the undone releases: the oldest one's saved state wins.
fn merge(undo: &[ReleaseRecord]) -> (Vec<Restore>, Vec<ComposeRecord>) {
    let mut files: IndexMap<String, Restore> = IndexMap::new();
    let mut compose: IndexMap<String, ComposeRecord> = IndexMap::new();
    for r in undo {
        for f in &r.files {
            files.insert(
                f.path.clone(),
                Restore {
                    release: r.id.clone(),
                    rec: f.clone(),
                },
            );
        }
        for c in &r.compose {
            let e = compose
                .entry(c.project.clone())
                .or_insert_with(|| ComposeRecord {
                    services: BTreeMap::new(),
                    ..c.clone()
                });
            e.args = c.args.clone();
            e.task = c.task.clone();
            for (svc, s) in &c.services {
                e.services.insert(
                    svc.clone(),
                    ServiceRecord {
                        before: s.before.clone(),
                        after: None,
                    },
                );
            }
        }
    }
    (
        files.into_values().collect(),
        compose.into_values().collect(),
    )
}

fn docker_socket(args: &Json) -> String {
    args["docker_host"]
        .as_str()
        .and_then(|h| h.strip_prefix("unix://"))
        .unwrap_or(crate::connection::docker::DEFAULT_SOCKET)
        .to_string()
}

/// Lists the host's releases (one execution).
async fn list_releases(
    conn: &Connection,
    loc: &StateLocation,
) -> Result<Vec<ReleaseRecord>, String> {
    let out = conn
        .run_script(&list_script(loc), loc.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!(
            "listing releases under {} failed: {}",
            loc.releases(),
            out.stderr_str().trim()
        ));
    }
    parse_list(&out.stdout_str())
}

/// The rollback's read-only pre-flight on one host: its release records
/// allow the request (`Ok(true)`: the host has no release of this project
/// and no `--to` was asked, so it is left alone).
async fn releases_needed(
    engine: &Engine,
    host: &str,
    conn: &Connection,
    req: &RollbackRequest,
) -> Result<bool, String> {
    let (loc, _) = engine
        .state_location(host)
        .ok_or("release recording is off for this host (deployer_releases: false)")?;
    let releases = list_releases(conn, &loc).await?;
    if releases.is_empty() && req.to.is_none() {
        return Ok(true);
    }
    select(&releases, req.to.as_deref()).map(|_| false)
}

/// Step 1 on one host: choose, then verify what the restore needs.
async fn prepare(
    engine: &Engine,
    host: &str,
    conn: Arc<Connection>,
    undo_only: Option<&str>,
    req: &RollbackRequest,
) -> Result<HostPlan, Vec<String>> {
    let one = |e: String| vec![e];
    let (loc, keep) = engine.state_location(host).ok_or_else(|| {
        one("release recording is off for this host (deployer_releases: false)".into())
    })?;
    let releases = list_releases(&conn, &loc).await.map_err(one)?;
    let untouched = releases.is_empty() && undo_only.is_none() && req.to.is_none();
    let (undo, target) = match undo_only {
        None if untouched => (Vec::new(), None),
        // Automatic rollback: undo exactly the release that just failed.
        Some(id) => {
            let pos = releases
                .iter()
                .position(|r| r.id == id)
                .ok_or_else(|| one(format!("release {id} is not on the host")))?;
            (
                vec![releases[pos].clone()],
                pos.checked_sub(1).map(|p| releases[p].id.clone()),
            )
        }
        None => select(&releases, req.to.as_deref()).map_err(one)?,
    };
    let (files, compose) = merge(&undo);
    let mut plan = HostPlan {
        host: host.to_string(),
        conn,
        loc,
        keep,
        undo: undo.iter().map(|r| r.id.clone()).collect(),
        target,
        files,
        compose,
        saved: BTreeMap::new(),
        current: BTreeMap::new(),
        current_kind: BTreeMap::new(),
        untouched,
    };
    let mut problems = verify_files(&mut plan, req.check).await;
    problems.extend(verify_images(&plan).await);
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// Every saved copy exists with its recorded sha256 (one execution); in
/// check mode the copies and the current contents come back too, for diffs.
async fn verify_files(plan: &mut HostPlan, with_content: bool) -> Vec<String> {
    if plan.files.is_empty() {
        return Vec::new();
    }
    let mut s = format!("R={}\n", plan.loc.releases());
    if with_content {
        s.push_str(crate::connection::write::WALK_LIB);
    }
    for (i, f) in plan.files.iter().enumerate() {
        let q = shell_quote(&f.rec.path);
        if let PreviousFile::File { saved, .. } = &f.rec.previous {
            let src = format!("\"$R/{}/{}\"", f.release, saved);
            s.push_str(&format!(
                "if [ -f {src} ]; then printf 'V\\t{i}\\t%s\\n' \"$(sha256sum < {src} | cut -d' ' -f1)\"; else printf 'V\\t{i}\\tmissing\\n'; fi\n"
            ));
            if with_content {
                s.push_str(&format!(
                    "if [ -f {src} ]; then printf 'S\\t{i}\\t'; base64 -w0 < {src}; echo; fi\n"
                ));
            }
        }
        if with_content {
            // The current content, for the diff: read through the walk (never
            // through a link another user planted on the way), in a subshell
            // whose failure only means "no content to show".
            let (dir, name) = crate::connection::write::split_path(&f.rec.path);
            s.push_str(&format!(
                "( __dw_dest={q}; __dw_go {} 2>/dev/null && if [ -f ./{n} ] && [ ! -L ./{n} ]; then printf 'C\\t{i}\\t'; base64 -w0 < ./{n}; echo; fi ) || true\n",
                crate::connection::write::go_args(&dir),
                n = shell_quote(&name),
            ));
        }
        s.push_str(&format!(
            "if [ -L {q} ]; then k=\"link $(readlink -- {q})\"; elif [ -f {q} ]; then k=\"file $(stat -c '%a %U %G' -- {q})\"; elif [ -d {q} ]; then k=\"directory $(stat -c '%a %U %G' -- {q})\"; else k=absent; fi; printf 'K\\t{i}\\t%s\\n' \"$k\"\n"
        ));
    }
    let out = match plan.conn.run_script(&s, plan.loc.become_.as_ref()).await {
        Ok(o) if o.rc == 0 => o.stdout_str(),
        Ok(o) => {
            return vec![format!(
                "verifying the saved files failed: {}",
                o.stderr_str().trim()
            )];
        }
        Err(e) => return vec![e.to_string()],
    };
    let mut sums: BTreeMap<usize, String> = BTreeMap::new();
    for line in out.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(tag), Some(i), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(i) = i.parse::<usize>() else { continue };
        let Some(f) = plan.files.get(i) else { continue };
        let path = f.rec.path.clone();
        let decode = |v: &str| base64::engine::general_purpose::STANDARD.decode(v.trim());
        match tag {
            "V" => {
                sums.insert(i, v.to_string());
            }
            "S" => {
                if let Ok(b) = decode(v) {
                    plan.saved.insert(path, b);
                }
            }
            "C" => {
                if let Ok(b) = decode(v) {
                    plan.current.insert(path, b);
                }
            }
            "K" => {
                plan.current_kind.insert(path, v.to_string());
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for (i, f) in plan.files.iter().enumerate() {
        if let PreviousFile::File { sha256, saved, .. } = &f.rec.previous {
            match sums.get(&i).map(String::as_str) {
                Some(h) if h == sha256 => {}
                Some("missing") | None => problems.push(format!(
                    "{}: the saved copy {}/{}/{saved} is gone",
                    f.rec.path,
                    plan.loc.releases(),
                    f.release
                )),
                Some(_) => problems.push(format!(
                    "{}: the saved copy in release {} does not match its recorded sha256",
                    f.rec.path, f.release
                )),
            }
        }
    }
    problems
}

/// Every image ID a restored service needs is still on the host.
async fn verify_images(plan: &HostPlan) -> Vec<String> {
    let mut problems = Vec::new();
    for c in &plan.compose {
        let needed: Vec<(&String, &ContainerState)> = c
            .services
            .iter()
            .filter_map(|(n, s)| s.before.as_ref().map(|b| (n, b)))
            .collect();
        if needed.is_empty() {
            continue;
        }
        let docker = match plan
            .conn
            .docker(&docker_socket(&c.args), plan.loc.become_.as_ref())
            .await
        {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("compose project {}: {e}", c.project));
                continue;
            }
        };
        for (svc, b) in needed {
            if b.image_id.is_empty() {
                problems.push(format!(
                    "compose project {}: service {svc}: no image ID was recorded",
                    c.project
                ));
                continue;
            }
            if docker.inspect_image(&b.image_id).await.is_err() {
                problems.push(format!(
                    "compose project {}: service {svc} needs image {} ({}), which is gone from the host",
                    c.project, b.image_id, b.image
                ));
            }
        }
    }
    problems
}

fn world_readable(mode: &str) -> bool {
    u32::from_str_radix(mode, 8).is_ok_and(|m| m & 0o004 != 0)
}

/// What the rollback would do to the files, as diffs.
fn file_diffs(plan: &HostPlan) -> Vec<FileDiff> {
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .ok()
            .filter(|_| !b.contains(&0))
    };
    let mut out = Vec::new();
    for f in &plan.files {
        let now = plan
            .current_kind
            .get(&f.rec.path)
            .cloned()
            .unwrap_or_else(|| "absent".into());
        let mut d = FileDiff {
            path: f.rec.path.clone(),
            before: None,
            after: None,
            attributes: Vec::new(),
            note: None,
        };
        match &f.rec.previous {
            PreviousFile::Absent => {
                if now == "absent" {
                    continue;
                }
                d.attributes.push(format!("state: {now} -> absent"));
            }
            PreviousFile::File {
                mode, owner, group, ..
            } => {
                let cur = plan.current.get(&f.rec.path).cloned().unwrap_or_default();
                let old = plan.saved.get(&f.rec.path).cloned().unwrap_or_default();
                let want = format!("file {} {owner} {group}", mode.trim_start_matches('0'));
                if cur == old && now == want {
                    continue;
                }
                // No vault is opened by a rollback, so its secrets are not
                // known for masking: content is shown only for files that
                // are world-readable before and after.
                let cur_mode = now.split_whitespace().nth(1).unwrap_or("0");
                if cur != old && !(world_readable(mode) && world_readable(cur_mode)) {
                    d.note = Some(format!(
                        "content differs (not shown: mode {} is not world-readable, the file may hold secrets)",
                        if world_readable(mode) {
                            cur_mode
                        } else {
                            mode.as_str()
                        }
                    ));
                } else if cur != old {
                    match (text(&cur), text(&old)) {
                        (Some(b), Some(a)) => {
                            d.before = Some(b);
                            d.after = Some(a);
                        }
                        _ => d.note = Some("binary or large file: content differs".into()),
                    }
                }
                if now != want {
                    d.attributes
                        .push(format!("{now} -> file {mode} {owner} {group}"));
                }
            }
            PreviousFile::Directory { mode, owner, group } => {
                let want = format!("directory {} {owner} {group}", mode.trim_start_matches('0'));
                if now == want {
                    continue;
                }
                d.attributes.push(format!("{now} -> {want}"));
            }
            PreviousFile::Link { target } => {
                if now == format!("link {target}") {
                    continue;
                }
                d.attributes.push(format!("{now} -> link {target}"));
            }
        }
        out.push(d);
    }
    out
}

/// The one script that restores every file (see the module doc). Every
/// path is reached through [`crate::connection::write::WALK_LIB`]'s walk
/// (never through a link another user could plant) and every new file or
/// link is made in a private staging directory inside its destination
/// directory, then renamed into place relative to it, as
/// [`crate::connection::write::RemoteWrite`] does.
fn restore_script(plan: &HostPlan, rec: &Recorder) -> String {
    use crate::connection::write::{WALK_LIB, go_args, split_path};
    let mut s = String::from("main() {\nset -e\n");
    s.push_str(WALK_LIB);
    s.push_str(&format!("R={}\n", plan.loc.releases()));
    for f in &plan.files {
        if let Some(snippet) = rec.save_snippet(&f.rec.path) {
            s.push_str(&snippet);
        }
    }
    // Staging directories left by a failure are removed through the walk too.
    let mut clean = String::from("__dw_clean() {\n");
    for (i, f) in plan.files.iter().enumerate() {
        if matches!(
            f.rec.previous,
            PreviousFile::File { .. } | PreviousFile::Link { .. }
        ) {
            let (dir, _) = split_path(&f.rec.path);
            clean.push_str(&format!(
                "[ -z \"$st{i}\" ] || ( __dw_go {} 2>/dev/null && rm -rf -- \"./$st{i}\" ) || :\n",
                go_args(&dir)
            ));
        }
    }
    clean.push_str(":\n}\n");
    s.push_str(&clean);
    s.push_str("trap '__dw_clean' EXIT\n");
    // Phase 1: everything that can fail happens before the first rename.
    for (i, f) in plan.files.iter().enumerate() {
        let q = shell_quote(&f.rec.path);
        let (dir, _) = split_path(&f.rec.path);
        let stage = format!(
            "st{i}=\n__dw_dest={q}\n__dw_mk=1\n__dw_go {go}\n__dw_mk=\n__dw_s=$(mktemp -d ./.deployer-write.XXXXXX)\n__dw_s=${{__dw_s#./}}\nst{i}=$__dw_s\n\
             __dw_d=$__dw_at\ncd -P -- \"./$__dw_s\"\n\
             case \"$(stat -c '%u %a' .)\" in \"$__dw_me 700\"|\"$__dw_me 2700\") true;; *) false;; esac && [ \"$(stat -c %d:%i ..)\" = \"$__dw_d\" ] || __dw_fail \"refusing to restore $__dw_dest: its temporary directory was replaced while in use\"\n",
            go = go_args(&dir)
        );
        match &f.rec.previous {
            PreviousFile::File {
                mode,
                owner,
                group,
                saved,
                ..
            } => {
                s.push_str(&stage);
                s.push_str(&format!(
                    "( umask 077; cp -- \"$R/{rel}/{saved}\" new )\nchown -- {own} new\nchmod {mode} new\nsync new 2>/dev/null || true\ncd /\n",
                    rel = f.release,
                    own = shell_quote(&format!("{owner}:{group}")),
                ));
            }
            PreviousFile::Link { target } => {
                s.push_str(&stage);
                s.push_str(&format!("ln -s -- {} new\ncd /\n", shell_quote(target)));
            }
            PreviousFile::Absent | PreviousFile::Directory { .. } => {}
        }
    }
    // Phase 2: the renames, in a burst that a dropped link cannot interrupt.
    s.push_str("trap '' HUP INT TERM PIPE\nset +e\nerr=\n");
    let mut dirs: Vec<(usize, &Restore)> = Vec::new();
    let mut absent: Vec<(usize, &Restore)> = Vec::new();
    for (i, f) in plan.files.iter().enumerate() {
        match &f.rec.previous {
            PreviousFile::Directory { .. } => dirs.push((i, f)),
            PreviousFile::Absent => absent.push((i, f)),
            _ => {}
        }
    }
    dirs.sort_by_key(|(_, f)| f.rec.path.len());
    for (_, f) in &dirs {
        if let PreviousFile::Directory { mode, owner, group } = &f.rec.previous {
            let q = shell_quote(&f.rec.path);
            s.push_str(&format!(
                "( __dw_dest={q}; __dw_mk=1; __dw_go {} && chown -- {} . && chmod {mode} . ) || err=\"$err {q}\"\n",
                go_args(&f.rec.path),
                shell_quote(&format!("{owner}:{group}"))
            ));
        }
    }
    for (i, f) in plan.files.iter().enumerate() {
        let q = shell_quote(&f.rec.path);
        let (dir, name) = split_path(&f.rec.path);
        if matches!(
            f.rec.previous,
            PreviousFile::File { .. } | PreviousFile::Link { .. }
        ) {
            s.push_str(&format!(
                "( __dw_dest={q}; __dw_go {go} && __dw_d=$__dw_at && cd -P -- \"./$st{i}\" && case \"$(stat -c '%u %a' .)\" in \"$__dw_me 700\"|\"$__dw_me 2700\") true;; *) false;; esac && [ \"$(stat -c %d:%i ..)\" = \"$__dw_d\" ] && mv -f -T -- new ../{n} && cd .. && rmdir -- \"./$st{i}\" ) && st{i}= || err=\"$err {q}\"\n",
                go = go_args(&dir),
                n = shell_quote(&name),
            ));
        }
    }
    absent.sort_by_key(|(_, f)| std::cmp::Reverse(f.rec.path.len()));
    for (_, f) in &absent {
        let q = shell_quote(&f.rec.path);
        let (dir, name) = split_path(&f.rec.path);
        s.push_str(&format!(
            "if [ -d {dq} ]; then ( __dw_dest={q}; __dw_go {go} && if [ -L ./{n} ] || [ -f ./{n} ]; then rm -f -- ./{n}; elif [ -d ./{n} ]; then rmdir -- ./{n} 2>/dev/null || printf 'W\\t%s\\n' {w}; fi ) || err=\"$err {q}\"; fi\n",
            dq = shell_quote(&dir),
            go = go_args(&dir),
            n = shell_quote(&name),
            w = shell_quote(&format!("{} was made by the release but is not empty now: left in place", f.rec.path))
        ));
    }
    s.push_str("sync 2>/dev/null || true\nif [ -n \"$err\" ]; then echo \"rollback: could not restore:$err\" >&2; exit 1; fi\necho DONE\n}\nmain\n");
    s
}

/// A task value for the compose module when it runs for a rollback.
fn rollback_task(name: &str) -> crate::project::Task {
    crate::project::Task {
        name: Some(name.to_string()),
        ..crate::project::Task::blank(
            crate::yaml::Loc::new(Path::new("<rollback>"), 0, 0),
            Arc::new(Default::default()),
        )
    }
}

/// `repo:tag` of an image reference (a registry port is not a tag).
fn split_tag(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

/// Converges one compose project back to its recorded services; returns
/// the module's diffs and whether it changed anything.
async fn restore_compose(
    engine: &Engine,
    plan: &HostPlan,
    c: &ComposeRecord,
    observed: &mut Observations,
    rec: Option<&Recorder>,
    check: bool,
) -> Result<(bool, Vec<FileDiff>), String> {
    let docker = plan
        .conn
        .docker(&docker_socket(&c.args), plan.loc.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    let existed = c.services.values().any(|s| s.before.is_some());
    // Pin: each recorded tag points at the recorded image ID again.
    for (svc, s) in &c.services {
        let Some(b) = &s.before else { continue };
        if b.image.is_empty() {
            continue;
        }
        let now = docker.inspect_image(&b.image).await.ok().and_then(|i| i.id);
        if now.as_deref() == Some(b.image_id.as_str()) {
            continue;
        }
        diffs.push(FileDiff {
            path: format!("compose {}/{svc}: image", c.project),
            before: None,
            after: None,
            attributes: vec![format!("tag {} -> {}", b.image, b.image_id)],
            note: None,
        });
        if !check {
            let (repo, tag) = split_tag(&b.image);
            docker
                .tag_image(
                    &b.image_id,
                    Some(bollard::query_parameters::TagImageOptions {
                        repo: Some(repo),
                        tag: Some(tag),
                    }),
                )
                .await
                .map_err(|e| {
                    format!("service {svc}: tagging {} as {}: {e}", b.image_id, b.image)
                })?;
        }
    }
    let mut args = serde_json::Map::new();
    for k in [
        "project_src",
        "files",
        "project_name",
        "env_files",
        "docker_host",
        "timeout",
        "wait",
        "wait_timeout",
    ] {
        if let Some(v) = c.args.get(k).filter(|v| !v.is_null()) {
            args.insert(k.into(), v.clone());
        }
    }
    args.insert(
        "state".into(),
        json!(if existed { "present" } else { "absent" }),
    );
    args.insert("remove_orphans".into(), json!(true));
    args.insert("pull".into(), json!("never"));
    let (_, vars) = engine.host_context(&plan.host)?;
    let task = rollback_task(&format!("rollback compose {}", c.project));
    let mut mctx = ModuleCtx {
        conn: &plan.conn,
        become_: plan.loc.become_.clone(),
        check,
        diff: true,
        observed,
        vars: &vars,
        task: &task,
        playbook_dir: &engine.playbook_dir,
        release: rec.map(|r| r as &dyn crate::modules::ReleaseStage),
        saved: Vec::new(),
        // Rolling back runs the images the release recorded, whatever the lock says now.
        images: &crate::project::images_lock::UNPINNED,
        restamp_later: false,
        progress: crate::report::TaskProgress::new(
            &engine.reporter,
            &plan.host,
            &task.display_name(),
        ),
    };
    let res = crate::modules::compose::docker_compose_v2(Json::Object(args), &mut mctx).await;
    if let Some(r) = rec {
        super::record_saved(r, &task.display_name(), std::mem::take(&mut mctx.saved));
    }
    let res = res?;
    diffs.extend(res.diffs.iter().cloned());
    if !check && existed {
        // The proof: each service runs the recorded image ID.
        let images = res.data.get("images").cloned().unwrap_or(Json::Null);
        for (svc, s) in &c.services {
            let Some(b) = &s.before else { continue };
            let now = images[svc]["image_id"].as_str().unwrap_or_default();
            if now != b.image_id {
                return Err(format!(
                    "service {svc} runs image {now} after the rollback, not the recorded {}",
                    b.image_id
                ));
            }
        }
    }
    Ok((res.changed || !diffs.is_empty(), diffs))
}

/// Restores compose projects in turn, reporting each; stops at the first
/// failure. Returns whether anything changed (or would).
async fn compose_phase(
    engine: &Engine,
    plan: &HostPlan,
    label: &str,
    projects: &[&ComposeRecord],
    observed: &mut Observations,
    rec: Option<&Recorder>,
    check: bool,
) -> Result<bool, String> {
    let mut changed = false;
    for c in projects {
        let r = restore_compose(engine, plan, c, observed, rec, check).await;
        engine.reporter.task_result(
            &plan.host,
            &format!("{label}: compose {}", c.project),
            "<rollback>",
            match &r {
                Ok((true, _)) => Status::Changed,
                Ok((false, _)) => Status::Ok,
                Err(_) => Status::Failed,
            },
            r.as_ref().err().map(String::as_str),
            r.as_ref().map(|(_, d)| d.as_slice()).unwrap_or(&[]),
            None,
        );
        match r {
            Ok((ch, _)) => changed |= ch,
            Err(e) => return Err(format!("compose project {}: {e}", c.project)),
        }
    }
    Ok(changed)
}

/// Step 2/3 on one host. Returns whether anything changed (or would).
async fn execute(
    engine: &Engine,
    plan: &HostPlan,
    check: bool,
    kind: &str,
    new_id: &str,
) -> Result<bool, String> {
    let reporter = &engine.reporter;
    let label = match &plan.target {
        Some(t) => format!("rollback to {t}"),
        None => "rollback to the state before the first release".to_string(),
    };
    let diffs = if check { file_diffs(plan) } else { Vec::new() };
    let mut observed = Observations::default();
    // Projects the undone releases created go first, while their compose
    // files (which the file restore may remove) are still there.
    let (new_projects, old_projects): (Vec<&ComposeRecord>, Vec<&ComposeRecord>) = plan
        .compose
        .iter()
        .partition(|c| c.services.values().all(|s| s.before.is_none()));
    if check {
        let mut changed = compose_phase(
            engine,
            plan,
            &label,
            &new_projects,
            &mut observed,
            None,
            true,
        )
        .await?;
        // The compose plan reads the files as the rollback would leave them.
        for f in &plan.files {
            match &f.rec.previous {
                PreviousFile::File { .. } => {
                    let bytes = plan.saved.get(&f.rec.path).cloned().unwrap_or_default();
                    observed.record(
                        &f.rec.path,
                        ObservedFile {
                            exists: true,
                            kind: FileKind::File,
                            size: bytes.len() as u64,
                            sha256: Some(crate::modules::files::sha256_hex(&bytes)),
                            content: Some(bytes),
                            ..ObservedFile::absent()
                        },
                    );
                }
                PreviousFile::Absent => {
                    let mut a = ObservedFile::absent();
                    a.content = Some(Vec::new());
                    observed.record(&f.rec.path, a);
                }
                _ => {}
            }
        }
        changed |= !diffs.is_empty();
        reporter.task_result(
            &plan.host,
            &format!("{label}: files"),
            "<rollback>",
            if diffs.is_empty() {
                Status::Ok
            } else {
                Status::Changed
            },
            Some(&format!("undoes {}", plan.undo.join(", "))),
            &diffs,
            None,
        );
        changed |= compose_phase(
            engine,
            plan,
            &label,
            &old_projects,
            &mut observed,
            None,
            true,
        )
        .await?;
        return Ok(changed);
    }
    let rec = Recorder::new(
        new_id,
        &engine.opts.project,
        &plan.host,
        kind,
        plan.loc.clone(),
        plan.keep,
    );
    let mut result: Result<(), String> = Ok(());
    if plan.files.is_empty() && plan.compose.is_empty() {
        reporter.task_result(
            &plan.host,
            &label,
            "<rollback>",
            Status::Ok,
            Some(&format!(
                "{} changed no file or container: nothing to restore (command and shell effects are not undone)",
                plan.undo.join(", ")
            )),
            &[],
            None,
        );
    }
    if let Err(e) = compose_phase(
        engine,
        plan,
        &label,
        &new_projects,
        &mut observed,
        Some(&rec),
        false,
    )
    .await
    {
        result = Err(e);
    }
    if result.is_ok() && !plan.files.is_empty() {
        let script = restore_script(plan, &rec);
        match plan
            .conn
            .run_script(&script, plan.loc.become_.as_ref())
            .await
        {
            Ok(o) => {
                let stdout = o.stdout_str();
                rec.note_saved_all(
                    &plan
                        .files
                        .iter()
                        .map(|f| f.rec.path.clone())
                        .collect::<Vec<_>>(),
                    &label,
                    &stdout,
                );
                for w in stdout.lines().filter_map(|l| l.strip_prefix("W\t")) {
                    reporter.warning(&format!("{}: {w}", plan.host));
                }
                if o.rc != 0 || !stdout.lines().any(|l| l == "DONE") {
                    result = Err(format!(
                        "restoring files failed (rc={}): {}",
                        o.rc,
                        o.stderr_str().trim()
                    ));
                }
            }
            Err(e) => result = Err(e.to_string()),
        }
        reporter.task_result(
            &plan.host,
            &format!("{label}: files"),
            "<rollback>",
            if result.is_ok() {
                Status::Changed
            } else {
                Status::Failed
            },
            Some(&match &result {
                Ok(()) => format!(
                    "{} path(s) restored; undoes {}",
                    plan.files.len(),
                    plan.undo.join(", ")
                ),
                Err(e) => e.clone(),
            }),
            &[],
            None,
        );
    }
    if result.is_ok()
        && let Err(e) = compose_phase(
            engine,
            plan,
            &label,
            &old_projects,
            &mut observed,
            Some(&rec),
            false,
        )
        .await
    {
        result = Err(e);
    }
    // The rollback is a release of its own (even a failed one: its saved
    // copies are what the host had before it).
    let record = rec.record(
        git_revision(&engine.playbook_dir),
        if result.is_ok() { "ok" } else { "failed" },
        result.as_ref().err().cloned(),
        TaskSummary {
            ok: 0,
            changed: plan.files.len() + plan.compose.len(),
            failed: usize::from(result.is_err()),
            changed_tasks: plan
                .files
                .iter()
                .map(|f| format!("restore {}", f.rec.path))
                .chain(
                    plan.compose
                        .iter()
                        .map(|c| format!("restore compose {}", c.project)),
                )
                .collect(),
        },
        plan.undo.clone(),
    );
    match plan
        .conn
        .run_script(&rec.finalize_script(&record), plan.loc.become_.as_ref())
        .await
    {
        Ok(o) if o.rc == 0 => {}
        Ok(o) => {
            return Err(format!(
                "writing the rollback's release record failed: {}",
                o.stderr_str().trim()
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    result.map(|()| true)
}

/// `deployer rollback`: the single entry point (wrap it with the deploy lock).
/// Exit code: 0 done (or nothing to do), 1 refused or failed, 2 check mode
/// with changes to make.
pub async fn rollback(engine: &Engine, hosts: &[String], req: &RollbackRequest) -> i32 {
    // The deploy lock: a rollback (not --check) holds every targeted
    // host's lock from before it reads the releases until it is done, so it
    // never interleaves with an apply or another rollback.
    let holder = (!req.check).then(this_run_holder);
    let locks = Locks::default();
    let code = rollback_locked(engine, hosts, req, holder.as_ref(), &locks).await;
    if let Some(holder) = &holder {
        locks.release(engine, holder).await;
    }
    code
}

/// The backups `rollback --with-data` restores on one host: those taken
/// during the undone releases (their manifest names the release).
async fn data_to_restore(
    engine: &Engine,
    p: &HostPlan,
    extra_dirs: &[String],
) -> Result<Vec<backup::Manifest>, String> {
    let b = engine.state_location(&p.host).and_then(|(l, _)| l.become_);
    let mut dirs = vec![backup::DEFAULT_DIR.to_string()];
    for d in extra_dirs {
        let d = d.trim_end_matches('/');
        if !d.starts_with('/') {
            return Err(format!(
                "--backup-dir {d}: expected an absolute path on the host"
            ));
        }
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_string());
        }
    }
    let mut list = Vec::new();
    for d in &dirs {
        list.extend(backup::list(&p.conn, b.as_ref(), d).await?);
    }
    let picked = backups_for_undo(&list, &p.undo);
    if picked.is_empty() {
        return Err(format!(
            "--with-data: no backup in {} was taken during the release(s) to undo ({}): there is no data to restore (take one with deployer.backup.postgres or deployer.backup.volume in the playbook, before the change; a backup kept elsewhere with dest: is found with --backup-dir DIR)",
            dirs.join(", "),
            p.undo.join(", ")
        ));
    }
    for m in &picked {
        restore::plan(m, &p.conn, b.as_ref(), None, None)?;
    }
    Ok(picked)
}

/// Of `list`, the backups to restore when the releases `undo` (newest first)
/// are undone: per database or volume, the one taken during the oldest
/// undone release (the data as it was before all of them), the earliest of
/// that release when there are several.
pub(crate) fn backups_for_undo(
    list: &[backup::Manifest],
    undo: &[String],
) -> Vec<backup::Manifest> {
    let rank = |m: &backup::Manifest| {
        m.release
            .as_ref()
            .and_then(|r| undo.iter().position(|u| u == r))
    };
    let mut best: BTreeMap<(String, String, String), (usize, backup::Manifest)> = BTreeMap::new();
    for m in list {
        let Some(pos) = rank(m) else { continue };
        let key = (m.kind.clone(), m.project.clone(), m.name.clone());
        let better = match best.get(&key) {
            None => true,
            Some((p, old)) => pos > *p || (pos == *p && m.created < old.created),
        };
        if better {
            best.insert(key, (pos, m.clone()));
        }
    }
    let mut v: Vec<backup::Manifest> = best.into_values().map(|(_, m)| m).collect();
    v.sort_by(|a, b| a.created.cmp(&b.created));
    v
}

/// The deploy lock's holder for this process (its command line masked).
pub(crate) fn this_run_holder() -> LockHolder {
    let argv: Vec<String> = std::env::args().collect();
    LockHolder::for_this_run(
        &crate::state::project_root(
            &std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from(".")),
        ),
        crate::state::audit::masked_command_line(&argv),
        None,
    )
}

/// The hosts whose deploy lock a command that is not a playbook run
/// (rollback, restore, refresh-staging) holds: taken with [`Locks::acquire`]
/// (a stale lock of a run that is gone is taken over), given back with
/// [`Locks::release`].
pub(crate) struct Locks {
    held: std::sync::Mutex<Vec<(Arc<Connection>, Option<crate::connection::Become>)>>,
}

impl Default for Locks {
    fn default() -> Self {
        Locks {
            held: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Locks {
    pub(crate) async fn acquire(
        &self,
        engine: &Engine,
        host: &str,
        conn: &Arc<Connection>,
        holder: &LockHolder,
    ) -> Result<(), String> {
        let become_ = engine.state_location(host).and_then(|(l, _)| l.become_);
        match lock::acquire_on(conn, become_.as_ref(), &engine.opts.project, holder).await {
            Ok(LockState::Acquired) => {
                if let Ok(mut h) = self.held.lock() {
                    h.push((conn.clone(), become_));
                }
                Ok(())
            }
            Ok(LockState::Held(Some(stale)))
                if matches!(stale.liveness(), lock::Liveness::Gone(_)) =>
            {
                let took = lock::take_over_on(
                    conn,
                    become_.as_ref(),
                    &engine.opts.project,
                    &stale,
                    holder,
                )
                .await;
                match took {
                    Ok(LockState::Acquired) => {
                        engine.reporter.note(host, &lock::took_over_note(&stale));
                        if let Ok(mut h) = self.held.lock() {
                            h.push((conn.clone(), become_));
                        }
                        Ok(())
                    }
                    Ok(LockState::Held(Some(other))) => {
                        Err(format!("the deploy lock is held by {}", other.describe()))
                    }
                    Ok(other) => Err(format!("could not take the deploy lock ({other:?})")),
                    Err(e) => Err(format!("could not take the deploy lock: {e}")),
                }
            }
            Ok(LockState::Held(Some(other))) => Err(format!(
                "the deploy lock is held by {} (if that run is gone: `deployer lock release -l {host}`)",
                other.describe()
            )),
            Ok(other) => Err(format!("could not take the deploy lock ({other:?})")),
            Err(e) => Err(format!("could not take the deploy lock: {e}")),
        }
    }

    pub(crate) async fn release(&self, engine: &Engine, holder: &LockHolder) {
        let held = match self.held.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => return,
        };
        futures::future::join_all(held.into_iter().map(|(conn, become_)| async move {
            if let Err(e) =
                lock::release_on(&conn, become_.as_ref(), &engine.opts.project, holder, None).await
            {
                eprintln!(
                    "warning: releasing the deploy lock: {}",
                    crate::secrets::mask(&e)
                );
            }
            if let Ok(c) = Arc::try_unwrap(conn) {
                c.close().await;
            }
        }))
        .await;
    }
}

async fn rollback_locked(
    engine: &Engine,
    hosts: &[String],
    req: &RollbackRequest,
    holder: Option<&LockHolder>,
    locks: &Locks,
) -> i32 {
    let reporter = &engine.reporter;
    // Pre-flight, before any connection: every targeted host can be reached
    // as its variables say (settings resolved, key readable) and records
    // releases.
    let mut refused = Vec::new();
    for h in hosts {
        if let Err(e) = engine.plan_connection(h) {
            refused.push(format!("{h}: {e}"));
        }
        if engine.state_location(h).is_none() {
            refused.push(format!(
                "{h}: release recording is off for this host (deployer_releases: false)"
            ));
        }
    }
    if !refused.is_empty() {
        eprintln!(
            "error: rollback refused before connecting to any host, nothing was changed:\n  {}",
            crate::secrets::mask(&refused.join("\n  "))
        );
        return 1;
    }
    // Then, read only (before any host's lock is taken): every host has the
    // release records the rollback needs.
    let checked = futures::future::join_all(hosts.iter().map(|h| async move {
        let conn = match engine.connect_host(h).await {
            Ok(c) => Arc::new(c),
            Err(e) => return (h.clone(), Err(e)),
        };
        match releases_needed(engine, h, &conn, req).await {
            Ok(untouched) => (h.clone(), Ok((conn, untouched))),
            Err(e) => {
                if let Ok(c) = Arc::try_unwrap(conn) {
                    c.close().await;
                }
                (h.clone(), Err(e))
            }
        }
    }))
    .await;
    let mut reached = Vec::new();
    for (h, c) in checked {
        match c {
            Ok(c) => reached.push((h, c)),
            Err(e) => refused.push(format!("{h}: {e}")),
        }
    }
    let close = |reached: Vec<(String, (Arc<Connection>, bool))>| async move {
        for (_, (conn, _)) in reached {
            if let Ok(c) = Arc::try_unwrap(conn) {
                c.close().await;
            }
        }
    };
    if !refused.is_empty() {
        eprintln!(
            "error: rollback refused, nothing was changed on any host:\n  {}",
            crate::secrets::mask(&refused.join("\n  "))
        );
        close(reached).await;
        return 1;
    }
    if reached.iter().all(|(_, (_, untouched))| *untouched) {
        eprintln!(
            "error: no release of project '{}' on any targeted host: nothing to roll back (run deployer from the project's directory)",
            engine.opts.project
        );
        close(reached).await;
        return 1;
    }
    let prepared =
        futures::future::join_all(reached.into_iter().map(|(h, (conn, _))| async move {
            if let Some(holder) = holder
                && let Err(e) = locks.acquire(engine, &h, &conn, holder).await
            {
                return (h.clone(), Err(vec![e]));
            }
            let p = prepare(engine, &h, conn, None, req).await;
            (h, p)
        }))
        .await;
    let mut plans = Vec::new();
    for (h, p) in prepared {
        match p {
            Ok(p) => plans.push(p),
            Err(problems) => refused.extend(problems.into_iter().map(|e| format!("{h}: {e}"))),
        }
    }
    if !refused.is_empty() {
        eprintln!(
            "error: rollback refused, nothing was changed on any host:\n  {}",
            crate::secrets::mask(&refused.join("\n  "))
        );
        close_all(plans).await;
        return 1;
    }
    if plans.iter().all(|p| p.untouched) {
        eprintln!(
            "error: no release of project '{}' on any targeted host: nothing to roll back (run deployer from the project's directory)",
            engine.opts.project
        );
        close_all(plans).await;
        return 1;
    }
    // --with-data: every host that has releases to undo has a backup taken
    // during them, and each can be restored; otherwise nothing changes.
    let mut data: BTreeMap<String, Vec<backup::Manifest>> = BTreeMap::new();
    if req.with_data {
        for p in plans.iter().filter(|p| !p.untouched && !p.undo.is_empty()) {
            match data_to_restore(engine, p, &req.backup_dirs).await {
                Ok(list) => {
                    data.insert(p.host.clone(), list);
                }
                Err(e) => refused.push(format!("{}: {e}", p.host)),
            }
        }
        if !refused.is_empty() {
            eprintln!(
                "error: rollback --with-data refused, nothing was changed on any host:\n  {}",
                crate::secrets::mask(&refused.join("\n  "))
            );
            close_all(plans).await;
            return 1;
        }
        for p in &plans {
            let b = engine.state_location(&p.host).and_then(|(l, _)| l.become_);
            for m in data.get(&p.host).into_iter().flatten() {
                if let Ok(planned) = restore::plan(m, &p.conn, b.as_ref(), None, None) {
                    reporter.note(
                        &p.host,
                        &format!(
                            "--with-data: {} restore backup {} ({} of {}, taken during release {}): {}",
                            if req.check { "would" } else { "will" },
                            m.id,
                            m.kind,
                            m.name,
                            m.release.as_deref().unwrap_or("?"),
                            planned.describe().join("; ")
                        ),
                    );
                }
            }
        }
    }
    let new_id = crate::state::releases::new_release_id();
    let mut changed = false;
    let mut failed = false;
    let results = futures::future::join_all(plans.iter().map(|p| async {
        if p.untouched {
            reporter.task_result(
                &p.host,
                "rollback",
                "<rollback>",
                Status::Skipped,
                Some("no release of this project on the host"),
                &[],
                None,
            );
            return Ok(false);
        }
        if p.undo.is_empty() {
            reporter.task_result(
                &p.host,
                &format!("rollback to {}", p.target.clone().unwrap_or_default()),
                "<rollback>",
                Status::Ok,
                Some("already there: no newer release to undo"),
                &[],
                None,
            );
            return Ok(false);
        }
        let changed = execute(engine, p, req.check, "rollback", &new_id).await?;
        if req.check {
            return Ok(changed || data.contains_key(&p.host));
        }
        let b = engine.state_location(&p.host).and_then(|(l, _)| l.become_);
        for m in data.get(&p.host).into_iter().flatten() {
            let done = match restore::plan(m, &p.conn, b.as_ref(), None, None) {
                Ok(planned) => planned.run().await,
                Err(e) => Err(e),
            };
            match done {
                Ok(summary) => reporter.task_result(
                    &p.host,
                    &format!("restore backup {}", m.id),
                    "<rollback>",
                    Status::Changed,
                    Some(&summary),
                    &[],
                    None,
                ),
                Err(e) => {
                    return Err(format!(
                        "the files and containers were rolled back, but restoring backup {} failed: {e}",
                        m.id
                    ));
                }
            }
        }
        Ok(true)
    }))
    .await;
    for (p, r) in plans.iter().zip(results) {
        match r {
            Ok(c) => changed |= c,
            Err(e) => {
                failed = true;
                reporter.task_result(
                    &p.host,
                    "rollback",
                    "<rollback>",
                    Status::Failed,
                    Some(&e),
                    &[],
                    None,
                );
            }
        }
    }
    close_all(plans).await;
    if failed {
        1
    } else if req.check && changed {
        2
    } else {
        0
    }
}

async fn close_all(plans: Vec<HostPlan>) {
    for p in plans {
        if let Ok(c) = Arc::try_unwrap(p.conn) {
            c.close().await;
        }
    }
}

/// Health-gated automatic rollback of one host: undo the release `failed`
/// (just recorded), record that as an `auto-rollback` release, then prove the
/// host still takes a fresh SSH connection.
pub async fn auto_rollback(
    engine: &Engine,
    host: &str,
    conn: &Arc<Connection>,
    failed: &Recorder,
    gate: &str,
) {
    let reporter = &engine.reporter;
    reporter.task_result(
        host,
        &format!("deploy gate failed: rolling back release {}", failed.id),
        "<rollback>",
        Status::Failed,
        Some(gate),
        &[],
        None,
    );
    let req = RollbackRequest {
        to: None,
        check: false,
        with_data: false,
        backup_dirs: Vec::new(),
    };
    let plan = match prepare(engine, host, conn.clone(), Some(&failed.id), &req).await {
        Ok(p) => p,
        Err(problems) => {
            reporter.task_result(
                host,
                "automatic rollback refused",
                "<rollback>",
                Status::Failed,
                Some(&problems.join("; ")),
                &[],
                None,
            );
            return;
        }
    };
    let new_id = crate::state::releases::new_release_id();
    if let Err(e) = execute(engine, &plan, false, "auto-rollback", &new_id).await {
        reporter.task_result(
            host,
            "automatic rollback",
            "<rollback>",
            Status::Failed,
            Some(&e),
            &[],
            None,
        );
        return;
    }
    match conn.confirm_fresh().await {
        Ok(()) => reporter.task_result(
            host,
            "rollback confirmed over a fresh SSH connection",
            "<rollback>",
            Status::Ok,
            Some(&format!(
                "host is back on {}",
                plan.target
                    .as_deref()
                    .unwrap_or("the state before its first release")
            )),
            &[],
            None,
        ),
        Err(e) => reporter.task_result(
            host,
            "rollback: a fresh SSH connection failed",
            "<rollback>",
            Status::Unreachable,
            Some(&e.to_string()),
            &[],
            None,
        ),
    }
}

/// `deployer releases`: each host's releases, oldest first.
pub async fn list(engine: &Engine, hosts: &[String], json_out: bool) -> i32 {
    let results = futures::future::join_all(hosts.iter().map(|h| async move {
        let r = async {
            let (loc, _) = engine
                .state_location(h)
                .ok_or("release recording is off for this host (deployer_releases: false)")?;
            let conn = engine.connect_host(h).await?;
            let r = list_releases(&conn, &loc).await;
            conn.close().await;
            r
        }
        .await;
        (h.clone(), r)
    }))
    .await;
    let mut code = 0;
    for (h, r) in results {
        match r {
            Ok(list) if json_out => println!(
                "{}",
                crate::secrets::mask(&json!({"host": h, "releases": list}).to_string())
            ),
            Ok(list) => {
                println!("{h}: {} release(s)", list.len());
                for r in &list {
                    println!("  {}", crate::secrets::mask(&r.summary()));
                }
            }
            Err(e) => {
                code = 1;
                eprintln!("error: {h}: {}", crate::secrets::mask(&e));
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    /// `--with-data` restores, per database or volume, the backup of the
    /// oldest undone release (the earliest one of it), nothing of releases
    /// that stay.
    #[test]
    fn with_data_picks_the_backup_of_the_oldest_undone_release() {
        let m = |id: &str, name: &str, created: &str, release: Option<&str>| backup::Manifest {
            id: id.into(),
            kind: "postgres".into(),
            project: "p".into(),
            name: name.into(),
            container: Some("pg".into()),
            host: "h".into(),
            created: created.into(),
            size: 1,
            sha256: String::new(),
            file: format!("/var/backups/deployer/p/{name}/{id}.dump"),
            format: "pg_dump -Fc".into(),
            release: release.map(str::to_string),
            login_user: None,
            volume: None,
            path: None,
        };
        let list = vec![
            m("a0", "app", "2026-01-01T00:00:00Z", Some("r1")),
            m("a1", "app", "2026-01-02T00:00:00Z", Some("r2")),
            m("a1b", "app", "2026-01-02T00:01:00Z", Some("r2")),
            m("a2", "app", "2026-01-03T00:00:00Z", Some("r3")),
            m("o3", "other", "2026-01-03T00:00:00Z", Some("r3")),
            m("n", "app", "2026-01-04T00:00:00Z", None),
        ];
        let ids = |v: Vec<backup::Manifest>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        // Undo r3 and r2 (newest first): app from r2 (its earliest), other from r3.
        assert_eq!(
            ids(backups_for_undo(&list, &["r3".into(), "r2".into()])),
            vec!["a1", "o3"]
        );
        assert_eq!(
            ids(backups_for_undo(&list, &["r3".into()])),
            vec!["a2", "o3"]
        );
        assert!(backups_for_undo(&list, &["r4".into()]).is_empty());
    }

    use super::*;

    fn rel(id: &str, files: &[(&str, PreviousFile)]) -> ReleaseRecord {
        let loc = StateLocation::for_host("p", Some("root"), false, None);
        let r = Recorder::new(id, "p", "h", "apply", loc, 5);
        let mut rec = r.record(None, "ok", None, TaskSummary::default(), vec![]);
        rec.files = files
            .iter()
            .map(|(p, prev)| FileRecord {
                path: p.to_string(),
                task: "t".into(),
                previous: prev.clone(),
            })
            .collect();
        rec
    }

    fn file(sha: &str) -> PreviousFile {
        PreviousFile::File {
            mode: "0644".into(),
            owner: "root".into(),
            group: "root".into(),
            sha256: sha.into(),
            saved: "files/0".into(),
        }
    }

    #[test]
    fn choosing_what_to_undo() {
        let rs = vec![rel("1", &[]), rel("2", &[]), rel("3", &[])];
        let (undo, to) = select(&rs, None).expect("default");
        assert_eq!((undo[0].id.as_str(), to.as_deref()), ("3", Some("2")));
        let (undo, to) = select(&rs, Some("1")).expect("to 1");
        assert_eq!(
            undo.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["3", "2"]
        );
        assert_eq!(to.as_deref(), Some("1"));
        assert!(select(&rs, Some("3")).expect("newest").0.is_empty());
        let e = select(&rs, Some("9")).expect_err("unknown");
        assert!(
            e.contains("unknown release '9'") && e.contains("1, 2, 3"),
            "{e}"
        );
        let e = select(&rs[..1], None).expect_err("only one");
        assert!(e.contains("no earlier release"), "{e}");
        assert!(select(&[], None).is_err());
    }

    #[test]
    fn the_oldest_undone_release_decides_each_file() {
        // newest first, as `select` gives them
        let undo = vec![
            rel(
                "3",
                &[("/a", file("a-before-3")), ("/c", PreviousFile::Absent)],
            ),
            rel(
                "2",
                &[("/a", file("a-before-2")), ("/b", file("b-before-2"))],
            ),
        ];
        let (files, _) = merge(&undo);
        let got: Vec<(String, String, PreviousFile)> = files
            .into_iter()
            .map(|f| (f.rec.path, f.release, f.rec.previous))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/a".into(), "2".into(), file("a-before-2")),
                ("/c".into(), "3".into(), PreviousFile::Absent),
                ("/b".into(), "2".into(), file("b-before-2")),
            ]
        );
    }

    /// A host plan on this machine: the state root and the files in `dir`.
    fn local_plan(dir: &Path, files: Vec<Restore>) -> HostPlan {
        HostPlan {
            host: "localhost".into(),
            conn: Arc::new(Connection::local("localhost")),
            loc: StateLocation {
                root: shell_quote(&dir.join("state").display().to_string()),
                become_: None,
            },
            keep: 5,
            undo: vec!["2".into()],
            target: Some("1".into()),
            files,
            compose: Vec::new(),
            saved: BTreeMap::new(),
            current: BTreeMap::new(),
            current_kind: BTreeMap::new(),
            untouched: false,
        }
    }

    #[tokio::test]
    async fn the_restore_script_puts_back_files_links_and_absence() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        std::fs::create_dir_all(d.join("state/releases/2/files")).expect("mkdir");
        std::fs::write(d.join("state/releases/2/files/0"), b"old\x00bytes\n").expect("w");
        std::fs::write(d.join("conf"), b"new\n").expect("w");
        std::fs::write(d.join("added"), b"added by the release\n").expect("w");
        std::os::unix::fs::symlink("/new-target", d.join("link")).expect("ln");
        let (uid, gid) = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(d.join("conf")).expect("meta");
            (m.uid(), m.gid())
        };
        let p = |n: &str| d.join(n).display().to_string();
        let restore = |path: String, previous: PreviousFile| Restore {
            release: "2".into(),
            rec: FileRecord {
                path,
                task: "t".into(),
                previous,
            },
        };
        let plan = local_plan(
            d,
            vec![
                restore(
                    p("conf"),
                    PreviousFile::File {
                        mode: "0604".into(),
                        owner: uid.to_string(),
                        group: gid.to_string(),
                        sha256: String::new(),
                        saved: "files/0".into(),
                    },
                ),
                restore(p("added"), PreviousFile::Absent),
                restore(
                    p("link"),
                    PreviousFile::Link {
                        target: "/old-target".into(),
                    },
                ),
            ],
        );
        let rec = Recorder::new("3", "p", "localhost", "rollback", plan.loc.clone(), 5);
        let script = restore_script(&plan, &rec);
        // A link that drops before the last line arrives runs nothing: the
        // script is one function, called on its last line.
        let cut = script
            .trim_end()
            .strip_suffix("main")
            .expect("ends with main");
        let o = plan.conn.run_script(cut, None).await.expect("run");
        assert_eq!(o.rc, 0, "{}", o.stderr_str());
        assert_eq!(std::fs::read(d.join("conf")).expect("r"), b"new\n");
        assert!(d.join("added").exists());
        // The whole script restores everything and saves what it replaces.
        let o = plan.conn.run_script(&script, None).await.expect("run");
        assert_eq!(o.rc, 0, "{}", o.stderr_str());
        assert!(o.stdout_str().contains("DONE"));
        assert_eq!(std::fs::read(d.join("conf")).expect("r"), b"old\x00bytes\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("conf"))
            .expect("m")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o604);
        assert!(!d.join("added").exists());
        assert_eq!(
            std::fs::read_link(d.join("link")).expect("link"),
            Path::new("/old-target")
        );
        assert_eq!(
            std::fs::read(d.join("state/releases/.staging-3/files/0")).expect("saved"),
            b"new\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(d)
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("deployer-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn a_restore_that_cannot_stage_a_file_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        std::fs::create_dir_all(d.join("state/releases/2/files")).expect("mkdir");
        std::fs::write(d.join("a"), b"new a\n").expect("w");
        std::fs::write(d.join("b"), b"new b\n").expect("w");
        std::fs::write(d.join("state/releases/2/files/0"), b"old a\n").expect("w");
        let p = |n: &str| d.join(n).display().to_string();
        let file = |saved: &str| PreviousFile::File {
            mode: "0644".into(),
            owner: "root".into(),
            group: "root".into(),
            sha256: String::new(),
            saved: saved.into(),
        };
        // b's saved copy is missing: staging fails before any rename.
        let plan = local_plan(
            d,
            vec![
                Restore {
                    release: "2".into(),
                    rec: FileRecord {
                        path: p("a"),
                        task: "t".into(),
                        previous: file("files/0"),
                    },
                },
                Restore {
                    release: "2".into(),
                    rec: FileRecord {
                        path: p("b"),
                        task: "t".into(),
                        previous: file("files/9"),
                    },
                },
            ],
        );
        let rec = Recorder::new("3", "p", "localhost", "rollback", plan.loc.clone(), 5);
        let o = plan
            .conn
            .run_script(&restore_script(&plan, &rec), None)
            .await
            .expect("run");
        assert_ne!(o.rc, 0);
        assert_eq!(std::fs::read(d.join("a")).expect("r"), b"new a\n");
        assert_eq!(std::fs::read(d.join("b")).expect("r"), b"new b\n");
    }

    #[test]
    fn image_references_split_into_repo_and_tag() {
        assert_eq!(split_tag("img:1"), ("img".into(), "1".into()));
        assert_eq!(
            split_tag("reg:5000/img"),
            ("reg:5000/img".into(), "latest".into())
        );
        assert_eq!(
            split_tag("reg:5000/img:v2"),
            ("reg:5000/img".into(), "v2".into())
        );
    }
}
