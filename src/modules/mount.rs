//! `mount` (`ansible.posix.mount`) on Linux: a mount point in an fstab file
//! and in the running system, as the collection's module decides and
//! changes them.
//!
//! Observe (one execution): the fstab file, `/proc/self/mountinfo`, `mount
//! -v`, and whether the path exists and is a mount point (Python's
//! `os.path.ismount`: another device than its parent's, or the same inode).
//! Plan (pure): the new fstab (Ansible's line rules: comments, blank lines and
//! lines that do not split into 4 to 6 fields are kept; the entries of the
//! path are updated in place; a new entry is appended; `absent` removes the
//! 6-field lines of the path; spaces, `&` and `\` escaped as `\040`, `\046`,
//! `\134`), whether the path is mounted (a mount point, or, for a bind
//! mount, its `mountinfo` entry with `src` as source), and what to run.
//! Apply: the directories of the path (`mounted`/`ephemeral`), the fstab
//! written with [`RemoteWrite`] (owner and mode kept; `backup`), then
//! `mount`/`umount`/`mount -o remount` (falling back to umount and mount as
//! Ansible's does). A mount that fails puts the old fstab back, removes the
//! directories it made and fails "Error mounting PATH: ...".
//!
//! States: `mounted`, `unmounted`, `present`, `absent` (the entry removed;
//! when there was one, the path unmounted and its directory removed with
//! `rmdir`), `absent_from_fstab`, `remounted` (always `changed`),
//! `ephemeral` (mounted without fstab; fails when another source is mounted
//! there). Arguments: `path` (`name`), `state`, `src`, `fstype`, `opts`,
//! `dump`, `passno`, `fstab` (another file: `mount -T FILE`; made, with its
//! directories, when missing, except for `ephemeral`), `boot` (false adds
//! `noauto`), `backup`, `opts_no_log`. Returns Ansible's keys (`name`, `src`,
//! `fstype`, `opts`, `dump`, `passno`, `fstab`, `boot`, `backup_file`).
//!
//! Differences: Ansible makes a missing `fstab` file even in check mode;
//! deployer's check mode changes nothing. Other systems (BSD, Solaris) are
//! not supported yet: the task fails on a host that is not Linux.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_string, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;
use crate::connection::write::RemoteWrite;

fn yes() -> bool {
    true
}

fn zero() -> String {
    "0".into()
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum MountState {
    Absent,
    AbsentFromFstab,
    Mounted,
    Present,
    Unmounted,
    Remounted,
    Ephemeral,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct MountArgs {
    #[serde(alias = "name", deserialize_with = "de_string")]
    pub path: String,
    pub state: MountState,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub src: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub fstype: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub opts: Option<String>,
    #[serde(default = "zero", deserialize_with = "de_string")]
    pub dump: String,
    #[serde(default = "zero", deserialize_with = "de_string")]
    pub passno: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub fstab: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub boot: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub opts_no_log: bool,
}

pub struct Mount;

impl Module for Mount {
    fn name(&self) -> &'static str {
        "mount"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.posix.mount"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<MountArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("path") && !args.contains_key("name") {
            return Err("missing required argument: path".into());
        }
        if let Some(state) = args.get("state").and_then(Json::as_str)
            && let Some(msg) = required_if(state, |k| args.contains_key(k))
        {
            return Err(msg);
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Ansible's `required_if`: `mounted`, `present` and `ephemeral` need `src`
/// and `fstype`.
fn required_if(state: &str, has: impl Fn(&str) -> bool) -> Option<String> {
    if !["mounted", "present", "ephemeral"].contains(&state) {
        return None;
    }
    let missing: Vec<&str> = ["src", "fstype"].into_iter().filter(|k| !has(k)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "state is {state} but all of the following are missing: {}",
            missing.join(", ")
        )
    })
}

/// What Ansible's module computes from the arguments (`args`).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub src: Option<String>,
    pub fstype: Option<String>,
    pub opts: String,
    pub dump: String,
    pub passno: String,
    pub fstab: String,
    pub boot: bool,
    pub warnings: Vec<String>,
}

pub fn entry(a: &MountArgs) -> Entry {
    let mut opts = a.opts.clone().unwrap_or_else(|| "defaults".into());
    let mut warnings = Vec::new();
    let list: Vec<&str> = opts.split(',').collect();
    if a.boot && list.contains(&"noauto") {
        warnings.push("Ignore the 'boot' due to 'opts' contains 'noauto'.".to_string());
    } else if !a.boot {
        opts = format!("{opts},noauto");
    }
    Entry {
        name: a.path.clone(),
        src: a.src.clone(),
        fstype: a.fstype.clone(),
        opts,
        dump: a.dump.clone(),
        passno: a.passno.clone(),
        fstab: a.fstab.clone().unwrap_or_else(|| "/etc/fstab".into()),
        boot: a.boot,
        warnings,
    }
}

/// `_escape_fstab`.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('&', "\\046")
}

/// Python's `str.split()` (any whitespace, no empty fields).
fn split_ws(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// `_set_mount_save_old`: the new fstab lines and whether they changed.
pub fn set_mount(e: &Entry, fstab: &str) -> (String, bool) {
    let esc = |v: &Option<String>| v.as_deref().map(escape).unwrap_or_default();
    let want = [
        esc(&e.src),
        esc(&e.fstype),
        escape(&e.opts),
        escape(&e.dump),
        escape(&e.passno),
    ];
    let name = escape(&e.name);
    let mut out = String::new();
    let mut exists = false;
    let mut changed = false;
    for line in fstab.split_inclusive('\n') {
        let line = if line.ends_with('\n') {
            line.to_string()
        } else {
            format!("{line}\n")
        };
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            out.push_str(&line);
            continue;
        }
        let fields = split_ws(line.split('#').next().unwrap_or(""));
        if !(4..=6).contains(&fields.len()) {
            out.push_str(&line);
            continue;
        }
        // src name fstype opts [dump [passno]]; missing ones are the integer
        // 0 to Ansible, which never equals the string it compares with.
        let (lsrc, lname, lfs) = (fields[0], fields[1], fields[2]);
        if lname != name
            || (e.src.is_some()
                && lname == "none"
                && lfs == "swap"
                && Some(lsrc) != e.src.as_deref())
        {
            out.push_str(&line);
            continue;
        }
        exists = true;
        let have = [
            Some(lsrc),
            Some(lfs),
            Some(fields[3]),
            fields.get(4).copied(),
            fields.get(5).copied(),
        ];
        let mut ld: Vec<String> = Vec::new();
        for (h, w) in have.iter().zip(&want) {
            if *h != Some(w.as_str()) {
                changed = true;
                ld.push(w.clone());
            } else {
                ld.push(h.unwrap_or("0").to_string());
            }
        }
        if changed {
            out.push_str(&format!(
                "{} {lname} {} {} {} {}\n",
                ld[0], ld[1], ld[2], ld[3], ld[4]
            ));
        } else {
            out.push_str(&line);
        }
    }
    if !exists {
        out.push_str(&format!(
            "{} {name} {} {} {} {}\n",
            want[0], want[1], want[2], want[3], want[4]
        ));
        changed = true;
    }
    (out, changed)
}

/// `unset_mount`: the fstab without the path's 6-field lines.
pub fn unset_mount(e: &Entry, fstab: &str) -> (String, bool) {
    let name = escape(&e.name);
    let mut out = String::new();
    let mut changed = false;
    for line in fstab.split_inclusive('\n') {
        let t = line.trim();
        let f = split_ws(line);
        if t.is_empty() || t.starts_with('#') || f.len() != 6 {
            out.push_str(line);
            continue;
        }
        if f[1] != name
            || (e.src.is_some()
                && f[1] == "none"
                && f[2] == "swap"
                && Some(f[0]) != e.src.as_deref())
        {
            out.push_str(line);
            continue;
        }
        changed = true;
    }
    (out, changed)
}

/// `get_linux_mounts`: mount point to source (a bind mount's source is the
/// directory it shows).
pub fn linux_mounts(mountinfo: &str) -> HashMap<String, String> {
    struct Rec {
        id: i64,
        parent: i64,
        root: String,
        dst: String,
        src: String,
    }
    let mut recs: Vec<Rec> = Vec::new();
    for l in mountinfo.lines() {
        let f = split_ws(l.trim());
        if f.len() < 7 {
            continue;
        }
        let (Ok(id), Ok(parent)) = (f[0].parse(), f[1].parse()) else {
            continue;
        };
        recs.push(Rec {
            id,
            parent,
            root: f[3].to_string(),
            dst: f[4].to_string(),
            src: f[f.len() - 2].to_string(),
        });
    }
    // Python's dict keeps one record per id (the last).
    let mut order: Vec<i64> = Vec::new();
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    for (i, r) in recs.iter().enumerate() {
        if by_id.insert(r.id, i).is_none() {
            order.push(r.id);
        }
    }
    let mut mounts = HashMap::new();
    for id in order {
        let i = by_id[&id];
        let parent = recs[i].parent;
        let src = match by_id.get(&parent).copied() {
            Some(pi) if parent != 1 => {
                let (proot, pdst) = (recs[pi].root.clone(), recs[pi].dst.clone());
                if proot.len() > 1 && recs[i].root.starts_with(&format!("{proot}/")) {
                    recs[i].root = recs[i].root[proot.len()..].to_string();
                }
                if pdst != "/" {
                    recs[i].root = format!("{pdst}{}", recs[i].root);
                }
                recs[i].root.clone()
            }
            _ => recs[i].src.clone(),
        };
        mounts.insert(recs[i].dst.clone(), src);
    }
    mounts
}

#[derive(Debug, Default)]
pub struct MountObserved {
    pub linux: bool,
    /// The fstab's content; None when the file does not exist.
    pub fstab: Option<String>,
    pub mountinfo: String,
    /// `mount -v`.
    pub mount_v: String,
    pub path_exists: bool,
    /// `os.path.ismount(path)`.
    pub ismount: bool,
}

/// What apply runs, in order.
#[derive(Debug, Default)]
pub struct MountWork {
    /// Make the fstab (and its directories) when missing.
    pub create_fstab: bool,
    /// Make the path's directories (`mounted`, `ephemeral`).
    pub mkdir: bool,
    /// The new fstab, and the old one to put back if the mount fails.
    pub write: Option<(String, String)>,
    pub action: Action,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    Nothing,
    Mount,
    Umount,
    Remount,
    /// `absent`: unmount when mounted, then `rmdir` when it exists.
    UmountRmdir {
        mounted: bool,
        exists: bool,
    },
}

/// The plan: `changed`, the work, or Ansible's failure message.
pub fn plan_mount(
    a: &MountArgs,
    e: &Entry,
    o: &MountObserved,
) -> Result<(bool, MountWork), String> {
    let mounts = linux_mounts(&o.mountinfo);
    let mut w = MountWork {
        create_fstab: a.state != MountState::Ephemeral && o.fstab.is_none(),
        ..Default::default()
    };
    let old = o.fstab.clone().unwrap_or_default();
    let in_mounts = mounts.contains_key(&e.name);
    let mounted_any = o.ismount || in_mounts;
    let changed = match a.state {
        MountState::AbsentFromFstab => {
            let (new, changed) = unset_mount(e, &old);
            if changed {
                w.write = Some((new, old));
            }
            changed
        }
        MountState::Absent => {
            let (new, changed) = unset_mount(e, &old);
            if changed {
                w.write = Some((new, old));
                w.action = Action::UmountRmdir {
                    mounted: mounted_any,
                    exists: o.path_exists,
                };
            }
            changed
        }
        MountState::Unmounted => {
            if mounted_any {
                w.action = Action::Umount;
            }
            mounted_any
        }
        MountState::Present => {
            let (new, changed) = set_mount(e, &old);
            if changed {
                w.write = Some((new, old));
            }
            changed
        }
        MountState::Remounted => {
            w.action = Action::Remount;
            true
        }
        MountState::Mounted | MountState::Ephemeral => {
            w.mkdir = !o.path_exists;
            let mut changed = false;
            if a.state == MountState::Mounted {
                let (new, c) = set_mount(e, &old);
                if c {
                    w.write = Some((new, old));
                }
                changed = c;
            }
            let bind = mounts
                .get(&e.name)
                .is_some_and(|s| Some(s) == e.src.as_ref());
            if o.ismount || bind {
                if changed {
                    w.action = Action::Remount;
                }
                if a.state == MountState::Ephemeral {
                    if same_src(e, &mounts, o) {
                        changed = true;
                        w.action = Action::Remount;
                    } else {
                        return Err("Ephemeral mount point is already mounted with a different source than the specified one. Failing in order to prevent an unwanted unmount or override operation. Try replacing this command with a \"state: unmounted\" followed by a \"state: ephemeral\", or use a different destination path.".into());
                    }
                }
            } else {
                changed = true;
                w.action = Action::Mount;
            }
            changed
        }
    };
    Ok((changed, w))
}

/// `_is_same_mount_src`.
fn same_src(e: &Entry, mounts: &HashMap<String, String>, o: &MountObserved) -> bool {
    if !o.ismount && !mounts.contains_key(&e.name) {
        return false;
    }
    let src = e.src.as_deref().unwrap_or("");
    if mounts.get(&e.name).map(String::as_str) == Some(src) {
        return true;
    }
    o.mount_v.lines().any(|l| {
        let f = split_ws(l);
        f.len() > 2 && f[0] == src && f[2] == e.name
    })
}

const MARK: &str = "__deployer_mount__";

fn fstab_words(e: &Entry) -> Vec<String> {
    if e.fstab != "/etc/fstab" {
        vec!["-T".into(), e.fstab.clone()]
    } else {
        Vec::new()
    }
}

fn ephemeral_words(e: &Entry) -> Vec<String> {
    let mut w = vec!["-t".into(), e.fstype.clone().unwrap_or_default()];
    if e.opts != "defaults" {
        w.extend(["-o".into(), e.opts.clone()]);
    }
    w.push(e.src.clone().unwrap_or_default());
    w
}

fn quoted(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `mount(module, args)` as shell words.
fn mount_cmd(a: &MountArgs, e: &Entry) -> Vec<String> {
    let mut w = vec!["mount".to_string()];
    if a.state == MountState::Ephemeral {
        w.extend(ephemeral_words(e));
    } else {
        w.extend(fstab_words(e));
    }
    w.push(e.name.clone());
    w
}

/// `remount(module, args)`'s first try as shell words.
fn remount_cmd(a: &MountArgs, e: &Entry) -> Vec<String> {
    let mut w = vec!["mount".to_string(), "-o".to_string()];
    if a.state == MountState::Remounted && e.opts != "defaults" {
        w.push(format!("remount,{}", e.opts));
    } else {
        w.push("remount".into());
    }
    if a.state == MountState::Ephemeral {
        w.extend(ephemeral_words(e));
    } else {
        w.extend(fstab_words(e));
    }
    w.push(e.name.clone());
    w
}

impl PlanApply for Mount {
    type Args = MountArgs;
    type Observed = MountObserved;
    type Changes = (MountArgs, Entry, MountWork);

    fn observe<'a>(
        &'a self,
        a: &'a MountArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<MountObserved, String>> {
        Box::pin(async move {
            let e = entry(a);
            let (p, f) = (shell_quote(&e.name), shell_quote(&e.fstab));
            let script = format!(
                "export LANG=C LC_ALL=C\n\
                 [ \"$(uname -s)\" = Linux ] && echo {MARK}L\n\
                 if [ -e {p} ]; then echo {MARK}E; fi\n\
                 if [ -e {p} ] && [ ! -L {p} ]; then\n\
                 a=$(stat -c '%d %i' -- {p}) && b=$(stat -c '%d %i' -- \"$(realpath -- {p}/..)\") && \
                 if [ \"${{a% *}}\" != \"${{b% *}}\" ] || [ \"${{a#* }}\" = \"${{b#* }}\" ]; then echo {MARK}M; fi\n\
                 fi\n\
                 mount -v 2>/dev/null | sed 's/^/{MARK}V /'\n\
                 sed 's/^/{MARK}I /' /proc/self/mountinfo 2>/dev/null\n\
                 if [ -f {f} ]; then echo {MARK}F; cat -- {f}; fi\n\
                 exit 0\n"
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(format!(
                    "mount: reading the host failed: {}",
                    out.stderr_str().trim()
                ));
            }
            let text = out.stdout_str();
            let (head, body) = match text.split_once(&format!("{MARK}F\n")) {
                Some((h, b)) => (h, Some(b.to_string())),
                None => (text.as_str(), None),
            };
            let mut o = MountObserved {
                fstab: body,
                ..Default::default()
            };
            for l in head.lines() {
                match l.strip_prefix(MARK) {
                    Some("L") => o.linux = true,
                    Some("E") => o.path_exists = true,
                    Some("M") => o.ismount = true,
                    Some(r) if r.starts_with("V ") => {
                        o.mount_v.push_str(&r[2..]);
                        o.mount_v.push('\n');
                    }
                    Some(r) if r.starts_with("I ") => {
                        o.mountinfo.push_str(&r[2..]);
                        o.mountinfo.push('\n');
                    }
                    _ => {}
                }
            }
            Ok(o)
        })
    }

    fn plan(
        &self,
        a: MountArgs,
        o: MountObserved,
        _: &ModuleCtx<'_>,
    ) -> Result<Plan<(MountArgs, Entry, MountWork)>, String> {
        if !o.linux {
            return Ok(Plan::unchanged(ModuleResult::failed(
                "mount: only Linux hosts are supported yet by deployer",
            )));
        }
        let state = match a.state {
            MountState::Absent => "absent",
            MountState::AbsentFromFstab => "absent_from_fstab",
            MountState::Mounted => "mounted",
            MountState::Present => "present",
            MountState::Unmounted => "unmounted",
            MountState::Remounted => "remounted",
            MountState::Ephemeral => "ephemeral",
        };
        let given = |k: &str| match k {
            "src" => a.src.is_some(),
            _ => a.fstype.is_some(),
        };
        if let Some(msg) = required_if(state, given) {
            return Ok(Plan::unchanged(ModuleResult::failed(msg)));
        }
        let e = entry(&a);
        let opts_in_args = a.state == MountState::Ephemeral
            || a.state == MountState::Remounted && e.opts != "defaults";
        if a.opts_no_log && opts_in_args {
            return Ok(Plan::unchanged(ModuleResult::failed(
                "mount: opts_no_log with ephemeral or remounted is not supported yet by deployer: the options would show in the host's process list",
            )));
        }
        let (changed, w) = match plan_mount(&a, &e, &o) {
            Ok(x) => x,
            Err(msg) => return Ok(Plan::unchanged(ModuleResult::failed(msg))),
        };
        let mut r = ModuleResult {
            changed,
            ..Default::default()
        };
        r.data = result_data(&a, &e, "");
        let work = w.create_fstab || w.mkdir || w.write.is_some() || w.action != Action::Nothing;
        Ok(Plan {
            result: r,
            changes: work.then_some((a, e, w)),
        })
    }

    fn apply<'a>(
        &'a self,
        (a, e, w): (MountArgs, Entry, MountWork),
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let env = "export LANG=C LC_ALL=C\n";
            // 1. The fstab file (Ansible makes it, and its directory, when missing).
            if w.create_fstab && w.write.is_none() {
                let dir = crate::connection::write::split_path(&e.fstab).0;
                let script = format!(
                    "mkdir -p -- {}\n{}",
                    shell_quote(&dir),
                    RemoteWrite::new(&e.fstab, b"").script()?
                );
                run_ok(ctx, &script, &format!("Failed to open {}", e.fstab)).await?;
            }
            // 2. The path's directories, each one made recorded (to undo).
            let mut made: Vec<String> = Vec::new();
            if w.mkdir {
                let mut cur = String::new();
                let mut script = String::from(env);
                for c in e.name.trim_matches('/').split('/') {
                    cur = if e.name.starts_with('/') || !cur.is_empty() {
                        format!("{cur}/{c}")
                    } else {
                        c.to_string()
                    };
                    let q = shell_quote(&cur);
                    script.push_str(&format!(
                        "if [ ! -e {q} ]; then mkdir -- {q} && printf '{MARK}D %s\\n' {q} || {{ [ -d {q} ] || exit 1; }}; fi\n"
                    ));
                }
                let out = ctx
                    .conn
                    .run_script(&script, ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                if out.rc != 0 {
                    return Ok(ModuleResult::failed(format!(
                        "Error making dir {}: {}",
                        e.name,
                        out.stderr_str().trim()
                    )));
                }
                made = out
                    .stdout_str()
                    .lines()
                    .filter_map(|l| l.strip_prefix(&format!("{MARK}D ")))
                    .map(str::to_string)
                    .collect();
            }
            // 3. The new fstab.
            if let Some((new, _)) = &w.write {
                if w.create_fstab {
                    let dir = crate::connection::write::split_path(&e.fstab).0;
                    run_ok(
                        ctx,
                        &format!("mkdir -p -- {}\n", shell_quote(&dir)),
                        &format!("Failed to open {}", e.fstab),
                    )
                    .await?;
                }
                let wr = RemoteWrite::new(&e.fstab, new.as_bytes()).backup(a.backup);
                let done = ctx
                    .conn
                    .write_file(&wr, ctx.become_.as_ref())
                    .await
                    .map_err(|err| format!("writing {} failed: {err}", e.fstab))?;
                let backup = done.backup_file.unwrap_or_default();
                r.data.insert("backup_file".into(), json!(backup));
            }
            // 4. Mount, unmount, remount.
            let failed = match &w.action {
                Action::Nothing => None,
                Action::Mount => run_cmd(ctx, &mount_cmd(&a, &e)).await?,
                Action::Umount => run_cmd(ctx, &["umount".into(), e.name.clone()])
                    .await?
                    .map(|m| format!("Error unmounting {}: {m}", e.name)),
                Action::UmountRmdir { mounted, exists } => {
                    let mut f = None;
                    if *mounted {
                        f = run_cmd(ctx, &["umount".into(), e.name.clone()])
                            .await?
                            .map(|m| format!("Error unmounting {}: {m}", e.name));
                    }
                    if f.is_none() && *exists {
                        f = run_cmd(ctx, &["rmdir".into(), "--".into(), e.name.clone()])
                            .await?
                            .map(|m| format!("Error rmdir {}: {}", e.name, m.trim()));
                    }
                    return Ok(match f {
                        Some(m) => ModuleResult::failed(m),
                        None => r,
                    });
                }
                Action::Remount => remount(ctx, &a, &e).await?,
            };
            let Some(msg) = failed else {
                return Ok(r);
            };
            if matches!(w.action, Action::Umount) || a.state == MountState::Remounted {
                let m = if a.state == MountState::Remounted && !msg.starts_with("Options were") {
                    format!("Error remounting {}: {msg}", e.name)
                } else {
                    msg
                };
                return Ok(ModuleResult::failed(m));
            }
            // A failed mount: the old fstab back, the directories made removed.
            if let Some((_, old)) = &w.write {
                let wr = RemoteWrite::new(&e.fstab, old.as_bytes());
                let _ = ctx.conn.write_file(&wr, ctx.become_.as_ref()).await;
            }
            for d in made.iter().rev() {
                let _ = ctx
                    .conn
                    .run_script(
                        &format!("rmdir -- {}\n", shell_quote(d)),
                        ctx.become_.as_ref(),
                    )
                    .await;
            }
            Ok(ModuleResult::failed(format!(
                "Error mounting {}: {msg}",
                e.name
            )))
        })
    }
}

/// Runs a script that must succeed.
async fn run_ok(ctx: &mut ModuleCtx<'_>, script: &str, what: &str) -> Result<(), String> {
    let out = ctx
        .conn
        .run_script(script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!("{what}: {}", out.stderr_str().trim()));
    }
    Ok(())
}

/// Runs one command; its output when it fails (Ansible's `out + err`).
async fn run_cmd(ctx: &mut ModuleCtx<'_>, words: &[String]) -> Result<Option<String>, String> {
    let out = ctx
        .conn
        .run_script(&format!("{}\n", quoted(words)), ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    Ok((out.rc != 0).then(|| format!("{}{}", out.stdout_str(), out.stderr_str())))
}

/// `remount`: `mount -o remount`, else (without options asked) umount and mount.
async fn remount(
    ctx: &mut ModuleCtx<'_>,
    a: &MountArgs,
    e: &Entry,
) -> Result<Option<String>, String> {
    let Some(_) = run_cmd(ctx, &remount_cmd(a, e)).await? else {
        return Ok(None);
    };
    if a.state == MountState::Remounted && e.opts != "defaults" {
        return Ok(Some("Options were specified with remounted, but the remount command failed. Failing in order to prevent an unexpected mount result. Try replacing this command with a \"state: unmounted\" followed by a \"state: mounted\" using the full desired mount options instead.".into()));
    }
    if let Some(m) = run_cmd(ctx, &["umount".into(), e.name.clone()]).await? {
        return Ok(Some(m));
    }
    run_cmd(ctx, &mount_cmd(a, e)).await
}

/// The keys Ansible's module returns (`args`).
fn result_data(a: &MountArgs, e: &Entry, backup: &str) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("name".into(), json!(e.name));
    let opts = if a.opts_no_log {
        "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    } else {
        e.opts.as_str()
    };
    m.insert("opts".into(), json!(opts));
    m.insert("dump".into(), json!(e.dump));
    m.insert("passno".into(), json!(e.passno));
    m.insert("fstab".into(), json!(e.fstab));
    m.insert("boot".into(), json!(if e.boot { "yes" } else { "no" }));
    m.insert("backup_file".into(), json!(backup));
    if let Some(s) = &a.src {
        m.insert("src".into(), json!(s));
    }
    if let Some(f) = &a.fstype {
        m.insert("fstype".into(), json!(f));
    }
    if !e.warnings.is_empty() {
        m.insert("warnings".into(), json!(e.warnings));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Json) -> MountArgs {
        serde_json::from_value(v).expect("args")
    }

    #[test]
    fn fstab_lines_as_ansible_rewrites_them() {
        let a = args(
            json!({"path": "/srv/m", "state": "present", "src": "tmpfs", "fstype": "tmpfs", "opts": "size=1m"}),
        );
        let e = entry(&a);
        let fstab = "# comment\n\nproc /proc proc defaults 0 0\n/dev/x /srv/m ext4 defaults\n";
        let (new, changed) = set_mount(&e, fstab);
        assert!(changed);
        assert_eq!(
            new,
            "# comment\n\nproc /proc proc defaults 0 0\ntmpfs /srv/m tmpfs size=1m 0 0\n"
        );
        let (again, changed) = set_mount(&e, &new);
        assert!(!changed);
        assert_eq!(again, new);
        let (added, changed) = set_mount(&e, "proc /proc proc defaults 0 0");
        assert!(changed);
        assert_eq!(
            added,
            "proc /proc proc defaults 0 0\ntmpfs /srv/m tmpfs size=1m 0 0\n"
        );
        let (gone, changed) = unset_mount(&e, &new);
        assert!(changed);
        assert_eq!(gone, "# comment\n\nproc /proc proc defaults 0 0\n");
        // A 4-field entry is not removed (Ansible's unset wants 6 fields).
        let (kept, changed) = unset_mount(&e, "/dev/x /srv/m ext4 defaults\n");
        assert!(!changed);
        assert_eq!(kept, "/dev/x /srv/m ext4 defaults\n");
    }

    #[test]
    fn spaces_are_escaped_and_boot_false_adds_noauto() {
        let a = args(
            json!({"path": "/srv/a b", "state": "present", "src": "/x&y", "fstype": "none", "opts": "bind", "boot": false}),
        );
        let e = entry(&a);
        assert_eq!(e.opts, "bind,noauto");
        let (new, _) = set_mount(&e, "");
        assert_eq!(new, "/x\\046y /srv/a\\040b none bind,noauto 0 0\n");
        assert_eq!(
            required_if("mounted", |k| k == "src"),
            Some("state is mounted but all of the following are missing: fstype".into())
        );
    }

    #[test]
    fn bind_mount_sources_from_mountinfo() {
        let info = "100 50 0:40 / / rw - overlay overlay rw\n\
                    120 100 0:40 /srv/a /srv/b rw - overlay overlay rw\n\
                    130 100 0:55 / /srv/t rw - tmpfs tmpfs rw\n";
        let m = linux_mounts(info);
        assert_eq!(m["/"], "overlay");
        assert_eq!(m["/srv/b"], "/srv/a");
        assert_eq!(m["/srv/t"], "/");
    }
}
