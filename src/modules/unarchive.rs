//! `unarchive`: a tar archive (plain, gzip, bzip2, xz, zstd) unpacked into an
//! existing directory with the host's GNU tar, as Ansible's
//! `ansible.builtin.unarchive` does: the archive is listed (the handler is
//! the first of Tgz, Tar, TarBzip, TarXz, TarZstd that lists it), `tar
//! --diff` against the destination decides `changed` with Ansible's rules
//! (owner, group, mode, mtime, content, size, symlink, missing files), and
//! only then is it extracted. An archive on the controller (`files/` of the
//! role or playbook) is first written to a private directory on the host with
//! [`RemoteWrite`] (0600) and removed afterwards.
//!
//! Check mode predicts the change from `tar --diff` (Ansible's skips tar
//! archives in check mode). Returns `handler`, `dest`, `src`,
//! `extract_results` (`cmd`, `rc`, `out`, `err`), `files` (`list_files`) and
//! the destination's attributes.
//!
//! `owner`, `group` and `mode` (octal) are Ansible's: tar gets `--owner=`/
//! `--group=` (which GNU tar only uses when it creates an archive), their
//! `Uid/Gid/Mode differs` lines no longer make the archive "not unpacked",
//! and after every run outside check mode each path the archive lists, then
//! each top directory, gets them where it differs (a symbolic link its own
//! owner and group; a link has no mode): that alone reports `changed`. The
//! users and groups are looked up before anything is extracted (Ansible
//! looks them up after, so there a missing user fails with the archive
//! unpacked). Check mode predicts from `tar --diff` and the paths' attributes.
//!
//! Supported: `src`, `dest`, `remote_src` (`copy: false`), `creates`,
//! `list_files`, `keep_newer`, `exclude`, `include`, `extra_opts`,
//! `validate_certs`, `io_buffer_size`, `decrypt`, `owner`, `group`, `mode`
//! (octal). Not supported yet: zip archives, a symbolic `mode`, the other file
//! attributes (`seuser`, `attributes`, ...), a URL as `src`, vault-encrypted
//! archives. Like Ansible's, extraction is tar's own (it is not routed through
//! `RemoteWrite`); the attributes are changed without following links
//! ([`crate::connection::write::attributes_script`]).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{
    de_bool, de_opt_bool, de_opt_list, de_opt_string, de_opt_u64, de_present, de_string,
};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{ModuleCtx, ModuleResult, parse_args};
use crate::args::Mode;
use crate::connection::shell_quote;
use crate::connection::write::{PathAttrs, RemoteWrite, attributes_script};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnarchiveArgs {
    #[serde(deserialize_with = "de_string")]
    pub src: String,
    #[serde(deserialize_with = "de_string")]
    pub dest: String,
    #[serde(default, deserialize_with = "de_bool")]
    pub remote_src: bool,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub copy: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub creates: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub list_files: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub keep_newer: bool,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub exclude: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub include: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub extra_opts: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub validate_certs: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub io_buffer_size: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub decrypt: Option<bool>,
    #[serde(default, deserialize_with = "de_present")]
    pub owner: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    pub group: Option<Json>,
    #[serde(default, deserialize_with = "de_present")]
    pub mode: Option<Json>,
}

pub struct Unarchive;

impl Module for Unarchive {
    fn name(&self) -> &'static str {
        "unarchive"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.unarchive"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<UnarchiveArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        for k in ["src", "dest"] {
            if !args.contains_key(k) {
                return Err(format!("missing required argument: {k}"));
            }
        }
        if args.contains_key("include") && args.contains_key("exclude") {
            return Err("parameters are mutually exclusive: include|exclude".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a: UnarchiveArgs = parse_args("unarchive", args)?;
            let attrs = Wanted::of(&a)?;
            let remote = a.remote_src || a.copy == Some(false);
            if remote && a.src.contains("://") {
                return Err("unarchive: a URL as src is not supported yet by deployer (download it with get_url first)".into());
            }
            // The action plugin's `creates`: before anything is transferred.
            if let Some(c) = &a.creates {
                let out = ctx
                    .conn
                    .run_script(
                        &format!("if [ -e {} ]; then echo yes; fi\n", shell_quote(c)),
                        ctx.become_.as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if out.stdout_str().trim() == "yes" {
                    let mut r = ModuleResult::ok();
                    r.skipped = true;
                    r.msg = Some(format!("skipped, since {c} exists"));
                    return Ok(r);
                }
            }
            let mut staging = None;
            let src = if remote {
                a.src.clone()
            } else {
                let path = ctx.find_source(&a.src, "files")?;
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if crate::vault::is_encrypted(&bytes) {
                    return Err(format!(
                        "unarchive: {} is vault-encrypted: not supported yet by deployer",
                        path.display()
                    ));
                }
                let out = ctx
                    .conn
                    .run_script(
                        "umask 077; mktemp -d /tmp/deployer-unarchive.XXXXXXXX\n",
                        ctx.become_.as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let dir = out.stdout_str().trim().to_string();
                if out.rc != 0 || !dir.starts_with("/tmp/deployer-unarchive.") {
                    return Err(format!(
                        "unarchive: no private directory on the host: {}",
                        out.stderr_str().trim()
                    ));
                }
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("archive")
                    .to_string();
                let remote_path = format!("{dir}/{name}");
                staging = Some(dir);
                let w = RemoteWrite::new(&remote_path, &bytes).mode(Some(0o600));
                if let Err(e) = ctx.conn.write_file(&w, ctx.become_.as_ref()).await {
                    cleanup(ctx, staging.as_deref()).await;
                    return Err(format!("Source '{}' failed to transfer: {e}", a.src));
                }
                remote_path
            };
            let r = unpack(&a, &attrs, &src, ctx).await;
            cleanup(ctx, staging.as_deref()).await;
            r
        })
    }
}

async fn cleanup(ctx: &mut ModuleCtx<'_>, dir: Option<&str>) {
    if let Some(d) = dir {
        let _ = ctx
            .conn
            .run_script(
                &format!("rm -rf -- {}\n", shell_quote(d)),
                ctx.become_.as_ref(),
            )
            .await;
    }
}

/// The handlers Ansible tries for tar archives, in its order: class name
/// and tar's compression flag.
const HANDLERS: &[(&str, &str)] = &[
    ("TgzArchive", "-z"),
    ("TarArchive", ""),
    ("TarBzipArchive", "-j"),
    ("TarXzArchive", "-J"),
    ("TarZstdArchive", "--use-compress-program=zstd"),
];

/// The owner, group and mode a task asks for.
#[derive(Default)]
struct Wanted {
    owner: Option<String>,
    group: Option<String>,
    mode: Option<u32>,
}

impl Wanted {
    fn of(a: &UnarchiveArgs) -> Result<Wanted, String> {
        let name = |v: &Option<Json>| match v {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let mode = match &a.mode {
            None | Some(Json::Null) => None,
            Some(m) => match Mode::parse(m).map_err(|e| format!("unarchive: mode: {e}"))? {
                Mode::Octal(m) => Some(m),
                Mode::Symbolic(s) => {
                    return Err(format!(
                        "unarchive: symbolic mode '{s}' is not supported yet by deployer: give an octal mode such as '0755'"
                    ));
                }
            },
        };
        Ok(Wanted {
            owner: name(&a.owner),
            group: name(&a.group),
            mode,
        })
    }

    fn is_empty(&self) -> bool {
        self.owner.is_none() && self.group.is_none() && self.mode.is_none()
    }
}

/// tar's words after `-C DEST` (flag, options, `--owner`/`--group`, excludes,
/// `-f SRC`, includes), for `action` (`--list`, `--diff`, `--extract`).
fn tar_words(a: &UnarchiveArgs, action: &str, flag: &str, src: &str) -> Vec<String> {
    let mut w: Vec<String> = vec![action.into(), "-C".into(), a.dest.clone()];
    if !flag.is_empty() {
        w.push(flag.into());
    }
    if let Some(o) = a.extra_opts.as_ref().filter(|o| !o.is_empty()) {
        w.push("--show-transformed-names".into());
        w.extend(o.iter().cloned());
    }
    if action != "--list" {
        // As Ansible's handler (GNU tar uses them only when creating).
        for (flag, v) in [("--owner=", &a.owner), ("--group=", &a.group)] {
            match v {
                None | Some(Json::Null) => {}
                Some(Json::String(s)) if s.is_empty() => {}
                Some(Json::String(s)) => w.push(format!("{flag}{}", py_quote(s))),
                Some(other) => w.push(format!("{flag}{other}")),
            }
        }
    }
    if action != "--list" && a.keep_newer {
        w.push("--keep-newer-files".into());
    }
    for e in a.exclude.iter().flatten() {
        w.push(format!("--exclude={}", e.trim_end_matches('/')));
    }
    w.push("-f".into());
    w.push(src.into());
    w.extend(a.include.iter().flatten().cloned());
    w
}

fn quoted(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `shlex.quote`, which Ansible applies to `--owner=`/`--group=`
/// (the word is one argument either way: a name needing quotes keeps them).
fn py_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

/// What `tar --diff` printed that means the archive is not unpacked yet
/// (Ansible's `is_unarchived`): as root, an owner or group that differs unless
/// the task sets it; a mode that differs unless the task sets it.
fn differs(diff_output: &str, root: bool, w: &Wanted) -> bool {
    diff_output.lines().any(|l| {
        if l.ends_with(": : Warning: Cannot stat: No such file or directory") {
            return false;
        }
        (root && w.owner.is_none() && l.ends_with(": Uid differs"))
            || (root && w.group.is_none() && l.ends_with(": Gid differs"))
            || (w.mode.is_none() && l.ends_with(": Mode differs"))
            || l.ends_with(": Mod time differs")
            || l.ends_with(": Warning: Cannot stat: No such file or directory")
            || l.contains(": Invalid owner")
            || l.contains(": Invalid group")
            || l.ends_with(": Symlink differs")
            || l.ends_with(": Contents differ")
            || l.ends_with(": Size differs")
    })
}

async fn unpack(
    a: &UnarchiveArgs,
    attrs: &Wanted,
    src: &str,
    ctx: &mut ModuleCtx<'_>,
) -> Result<ModuleResult, String> {
    let (s, d) = (shell_quote(src), shell_quote(&a.dest));
    let mut script = format!(
        "export LANG=C LC_ALL=C LC_MESSAGES=C LANGUAGE=C\n\
         if [ ! -e {s} ]; then echo S:missing; exit 0; fi\n\
         if [ ! -r {s} ]; then echo S:unreadable; exit 0; fi\n\
         if [ ! -s {s} ]; then echo S:empty; exit 0; fi\n\
         if [ ! -d {d} ]; then echo S:nodir; exit 0; fi\n\
         echo \"U:$(id -u)\"\n\
         tar=$(command -v gtar || command -v tar) || {{ echo S:notar; exit 0; }}\n\
         echo \"T:$tar\"\n\
         \"$tar\" --version 2>/dev/null | head -n1 | grep -q '^tar.*GNU' || {{ echo S:notgnu; exit 0; }}\n"
    );
    for (name, flag) in HANDLERS {
        let list = quoted(&tar_words(a, "--list", flag, src));
        let diff = quoted(&tar_words(a, "--diff", flag, src));
        script.push_str(&format!(
            "if l=$(cd {d} && \"$tar\" {list} 2>/dev/null) && [ -n \"$l\" ]; then echo H:{name}; \
             printf '%s\\n' \"$l\" | sed 's/^/F:/'; \
             o=$(cd {d} && \"$tar\" {diff} 2>&1); echo \"R:$?\"; printf '%s\\n' \"$o\" | sed 's/^/D:/'; exit 0; fi\n"
        ));
    }
    script.push_str(&format!(
        "if command -v unzip >/dev/null 2>&1 && unzip -l {s} >/dev/null 2>&1; then echo S:zip; exit 0; fi\necho S:nohandler\n"
    ));
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!(
            "unarchive: probing {src} failed: {}",
            out.stderr_str().trim()
        ));
    }
    let text = out.stdout_str();
    let tag = |p: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(p))
            .map(str::to_string)
    };
    let tar = tag("T:").unwrap_or_else(|| "tar".into());
    if let Some(status) = tag("S:") {
        let msg = match status.as_str() {
            "missing" if a.remote_src || a.copy == Some(false) => {
                format!("Source '{src}' does not exist")
            }
            "missing" => format!("Source '{src}' failed to transfer"),
            "unreadable" => format!("Source '{src}' not readable"),
            "empty" => format!("Invalid archive '{src}', the file is 0 bytes"),
            "nodir" => format!("Destination '{}' is not a directory", a.dest),
            "zip" => return Err("unarchive: zip archives are not supported yet by deployer".into()),
            "notar" => format!(
                "Failed to find handler for \"{src}\". Make sure the required command to extract the file is installed.\nUnable to find required 'gtar' or 'tar' binary in the path"
            ),
            "notgnu" => format!(
                "Failed to find handler for \"{src}\". Make sure the required command to extract the file is installed.\nCommand \"{tar}\" detected as tar type None. GNU tar required."
            ),
            _ => format!(
                "Failed to find handler for \"{src}\". Make sure the required command to extract the file is installed.\nCommand \"{tar}\" could not handle archive: Unable to list files in the archive"
            ),
        };
        return Ok(ModuleResult::failed(msg));
    }
    let handler = tag("H:").unwrap_or_default();
    let flag = HANDLERS
        .iter()
        .find(|(n, _)| *n == handler)
        .map(|(_, f)| *f)
        .unwrap_or("");
    let root = tag("U:").as_deref() == Some("0");
    let files: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("F:"))
        .map(|f| f.strip_prefix('/').unwrap_or(f).to_string())
        .collect();
    let diff: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("D:"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut r = ModuleResult::ok();
    r.data.insert("handler".into(), json!(handler));
    r.data.insert("dest".into(), json!(a.dest));
    r.data.insert("src".into(), json!(src));
    // The users and groups first: a name that does not exist fails before
    // anything is extracted.
    let ids = match resolve_ids(ctx, attrs).await? {
        Ok(ids) => ids,
        Err(failed) => return Ok(failed),
    };
    let unpacked = !differs(&diff, root, attrs);
    if !unpacked {
        r.changed = true;
        if !ctx.check {
            let mut words = vec![tar.clone()];
            words.extend(tar_words(a, "--extract", flag, src));
            let cmd = format!(
                "export LANG=C LC_ALL=C LC_MESSAGES=C LANGUAGE=C\ncd {d} && exec {}\n",
                quoted(&words)
            );
            let out = ctx
                .conn
                .run_script(&cmd, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            r.data.insert(
                "extract_results".into(),
                json!({"cmd": words, "rc": out.rc, "out": out.stdout_str(), "err": out.stderr_str()}),
            );
            if out.rc != 0 {
                let mut f = ModuleResult::failed(format!("failed to unpack {src} to {}", a.dest));
                f.data = r.data;
                return Ok(f);
            }
        }
    }
    if !attrs.is_empty() && set_attributes(ctx, attrs, ids, &attr_paths(&a.dest, &files)).await? {
        r.changed = true;
    }
    if a.list_files {
        r.data.insert("files".into(), json!(files));
    }
    super::files::add_path_info(ctx, &mut r, &a.dest).await?;
    Ok(r)
}

/// The uid and gid `owner` and `group` name (a number is taken as is, as
/// Ansible's `int(owner)`), or the failed result Ansible gives for a name
/// that does not exist.
async fn resolve_ids(
    ctx: &mut ModuleCtx<'_>,
    w: &Wanted,
) -> Result<Result<(Option<u32>, Option<u32>), ModuleResult>, String> {
    let mut script = String::new();
    if let Some(o) = w.owner.as_deref().filter(|o| o.parse::<u32>().is_err()) {
        script.push_str(&format!(
            "printf 'U:%s\\n' \"$(getent passwd -- {} | cut -d: -f3)\"\n",
            shell_quote(o)
        ));
    }
    if let Some(g) = w.group.as_deref().filter(|g| g.parse::<u32>().is_err()) {
        script.push_str(&format!(
            "printf 'G:%s\\n' \"$(getent group -- {} | cut -d: -f3)\"\n",
            shell_quote(g)
        ));
    }
    let text = if script.is_empty() {
        String::new()
    } else {
        let out = ctx
            .conn
            .run_script(&script, ctx.become_.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        out.stdout_str().to_string()
    };
    let id = |given: Option<&str>, tag: &str| -> Option<Option<u32>> {
        let given = given?;
        Some(given.parse::<u32>().ok().or_else(|| {
            text.lines()
                .find_map(|l| l.strip_prefix(tag))
                .and_then(|v| v.trim().parse().ok())
        }))
    };
    let uid = id(w.owner.as_deref(), "U:");
    let gid = id(w.group.as_deref(), "G:");
    if let (Some(None), Some(o)) = (uid, &w.owner) {
        return Ok(Err(ModuleResult::failed(format!(
            "chown failed: failed to look up user {o}"
        ))));
    }
    if let (Some(None), Some(g)) = (gid, &w.group) {
        return Ok(Err(ModuleResult::failed(format!(
            "chgrp failed: failed to look up group {g}"
        ))));
    }
    Ok(Ok((uid.flatten(), gid.flatten())))
}

/// The paths Ansible gives the attributes to, in its order: every path the
/// archive lists, then each top directory of a path with a `/` (each once;
/// `.` components dropped; a name with `..`, which tar does not extract,
/// left out).
fn attr_paths(dest: &str, files: &[String]) -> Vec<String> {
    let join = |f: &str| -> Option<String> {
        let mut parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        for c in f.split('/') {
            match c {
                "" | "." => {}
                ".." => return None,
                c => parts.push(c),
            }
        }
        let root = if dest.starts_with('/') { "/" } else { "" };
        Some(format!("{root}{}", parts.join("/")))
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: Option<String>| {
        if let Some(p) = p
            && !out.contains(&p)
        {
            out.push(p);
        }
    };
    for f in files {
        push(join(f));
    }
    for f in files {
        if let Some((top, _)) = f.split_once('/') {
            push(join(top));
        }
    }
    out
}

/// Gives `paths` the owner, group and mode asked where they differ
/// (Ansible's `set_fs_attributes_if_different`: owner, group, then mode; a
/// symbolic link gets its own owner and group and keeps its mode). Returns
/// whether anything differed; in check mode it changes nothing.
async fn set_attributes(
    ctx: &mut ModuleCtx<'_>,
    w: &Wanted,
    (uid, gid): (Option<u32>, Option<u32>),
    paths: &[String],
) -> Result<bool, String> {
    let mut todo: Vec<(String, PathAttrs<'_>, bool)> = Vec::new();
    for chunk in paths.chunks(200) {
        let mut script = String::from("export LC_ALL=C\n");
        for p in chunk {
            script.push_str(&format!(
                "stat -c 'A:%u %g %a %F' -- {} 2>/dev/null || echo A:missing\n",
                shell_quote(p)
            ));
        }
        let out = ctx
            .conn
            .run_script(&script, ctx.become_.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let text = out.stdout_str();
        let seen: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("A:")).collect();
        if seen.len() != chunk.len() {
            return Err(format!(
                "unarchive: reading the unpacked paths' attributes failed: {}",
                out.stderr_str().trim()
            ));
        }
        for (p, st) in chunk.iter().zip(seen) {
            let f: Vec<&str> = st.splitn(4, ' ').collect();
            let [u, g, m, kind] = f[..] else {
                // Not there (check mode, before extraction): it will differ.
                todo.push((p.clone(), PathAttrs::default(), false));
                continue;
            };
            let link = kind == "symbolic link";
            let mut want = PathAttrs::default();
            if uid.is_some_and(|id| u.parse() != Ok(id)) {
                want.owner = w.owner.as_deref();
            }
            if gid.is_some_and(|id| g.parse() != Ok(id)) {
                want.group = w.group.as_deref();
            }
            if !link
                && let Some(mode) = w.mode
                && u32::from_str_radix(m, 8) != Ok(mode)
            {
                want.mode = Some(mode);
            }
            if !want.is_empty() {
                todo.push((p.clone(), want, link));
            }
        }
    }
    if todo.is_empty() || ctx.check {
        return Ok(!todo.is_empty());
    }
    for chunk in todo.chunks(50) {
        let mut script = String::new();
        for (p, want, link) in chunk {
            if want.is_empty() {
                return Err(format!("unarchive: {p} was not unpacked"));
            }
            script.push_str(&attributes_script(p, want, *link)?);
        }
        let out = ctx
            .conn
            .run_script(&script, ctx.become_.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        if out.rc != 0 {
            return Err(format!(
                "unarchive: setting owner, group or mode failed: {}",
                out.stderr_str().trim()
            ));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_diff_lines_as_ansible_reads_them() {
        let none = Wanted::default();
        assert!(!differs("", true, &none));
        assert!(differs(
            "tar: a/b: Warning: Cannot stat: No such file or directory",
            true,
            &none
        ));
        assert!(!differs(
            "tar: : Warning: Cannot stat: No such file or directory",
            true,
            &none
        ));
        assert!(differs("a/b: Mod time differs", false, &none));
        assert!(differs("a/b: Uid differs", true, &none));
        assert!(!differs("a/b: Uid differs", false, &none));
        assert!(differs("a/c: Contents differ", false, &none));
        // What the task sets anyway does not count.
        let set = Wanted {
            owner: Some("www-data".into()),
            group: None,
            mode: Some(0o640),
        };
        assert!(!differs("a/b: Uid differs\na/b: Mode differs", true, &set));
        assert!(differs("a/b: Gid differs", true, &set));
    }

    #[test]
    fn attributes_go_to_every_listed_path_then_the_top_directories() {
        let files: Vec<String> = ["app/", "app/bin/run", "./etc/x.conf", "../evil", "app/bin/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            attr_paths("/opt/d/", &files),
            [
                "/opt/d/app",
                "/opt/d/app/bin/run",
                "/opt/d/etc/x.conf",
                "/opt/d/app/bin",
                "/opt/d"
            ]
        );
    }

    #[test]
    fn owner_and_group_reach_tar_as_ansible_quotes_them() {
        let a: UnarchiveArgs = serde_json::from_value(json!({
            "src": "/s.tgz", "dest": "/d", "owner": "www-data", "group": 33
        }))
        .unwrap();
        assert_eq!(
            tar_words(&a, "--extract", "", "/s.tgz"),
            [
                "--extract",
                "-C",
                "/d",
                "--owner=www-data",
                "--group=33",
                "-f",
                "/s.tgz"
            ]
        );
        assert_eq!(py_quote("a b"), "'a b'");
        let sym: UnarchiveArgs = serde_json::from_value(json!({
            "src": "/s.tgz", "dest": "/d", "mode": "u+x"
        }))
        .unwrap();
        assert!(Wanted::of(&sym).is_err_and(|e| e.contains("not supported yet")));
    }

    #[test]
    fn tar_words_follow_ansibles_order() {
        let a: UnarchiveArgs = serde_json::from_value(json!({
            "src": "/s.tgz", "dest": "/d", "exclude": ["x/"], "keep_newer": true
        }))
        .unwrap();
        assert_eq!(
            tar_words(&a, "--diff", "-z", "/s.tgz"),
            [
                "--diff",
                "-C",
                "/d",
                "-z",
                "--keep-newer-files",
                "--exclude=x",
                "-f",
                "/s.tgz"
            ]
        );
        assert_eq!(
            tar_words(&a, "--list", "", "/s.tgz"),
            ["--list", "-C", "/d", "--exclude=x", "-f", "/s.tgz"]
        );
    }
}
