//! File modules: template, copy, file, lineinfile, blockinfile, stat. They share
//! one converge step: compare the desired content and attributes with what was
//! observed, diff, and (outside check mode) write atomically.

use serde::Deserialize;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::args::{Mode, de_bool, de_opt_bool, de_opt_string, de_string};
use super::observe::{FileKind, ObservedFile, Want};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{FileDiff, ModuleCtx, ModuleResult, parse_args};
use crate::connection::write::{self, PathAttrs, RemoteWrite};

/// Owner, group and mode a task asks for (any may be left to the existing file).
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    pub mode: Option<Mode>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Attrs {
    pub(crate) fn from_json(
        mode: Option<&Json>,
        owner: Option<String>,
        group: Option<String>,
    ) -> Result<Attrs, String> {
        let mode = match mode {
            None | Some(Json::Null) => None,
            Some(m) => Some(Mode::parse(m)?),
        };
        if let Some(Mode::Symbolic(s)) = &mode {
            return Err(format!(
                "symbolic file modes ('{s}') are not supported yet: use an octal mode such as '0644'"
            ));
        }
        Ok(Attrs { mode, owner, group })
    }

    /// What differs between these attributes and an existing file.
    pub(crate) fn changes(&self, obs: &ObservedFile) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(Mode::Octal(m)) = &self.mode
            && obs.mode != *m
        {
            out.push(format!("mode: {:04o} -> {:04o}", obs.mode, m));
        }
        if let Some(o) = &self.owner
            && *o != obs.owner
            && *o != obs.uid.to_string()
        {
            out.push(format!("owner: {} -> {o}", obs.owner));
        }
        if let Some(g) = &self.group
            && *g != obs.group
            && *g != obs.gid.to_string()
        {
            out.push(format!("group: {} -> {g}", obs.group));
        }
        out
    }

    /// These attributes for [`write::attributes_script`] and [`RemoteWrite`].
    pub(crate) fn path_attrs(&self) -> PathAttrs<'_> {
        PathAttrs {
            owner: self.owner.as_deref(),
            group: self.group.as_deref(),
            mode: match &self.mode {
                Some(Mode::Octal(m)) => Some(*m),
                _ => None,
            },
        }
    }
}

/// The SELinux context arguments (`seuser`, `serole`, `setype`,
/// `selevel`). Where SELinux is disabled or absent Ansible ignores them
/// (`selinux_enabled()` is false, so no context is read or set, and nothing
/// is reported): deployer does the same. Where it is enabled, setting
/// contexts is not supported yet: the task fails before anything changes.
pub(crate) async fn selinux_context_args(
    ctx: &ModuleCtx<'_>,
    module: &str,
    given: [&Option<String>; 4],
) -> Result<(), String> {
    if given.iter().all(|g| g.as_deref().is_none_or(str::is_empty)) {
        return Ok(());
    }
    // Ansible's test: `selinuxenabled` (without the Python bindings), or
    // libselinux's, which looks for the mounted selinuxfs. Asked once per
    // host and run, not once per task.
    let enabled = ctx
        .conn
        .selinux_enabled
        .get_or_try_init(|| async {
            let out = ctx
                .conn
                .run_script(
                    "if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then echo E; \
                     elif [ -e /sys/fs/selinux/enforce ]; then echo E; else echo D; fi\n",
                    ctx.become_.as_ref(),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<bool, String>(out.stdout_str().trim() != "D")
        })
        .await?;
    if !enabled {
        return Ok(());
    }
    Err(format!(
        "{module}: seuser, serole, setype and selevel on a host where SELinux is enabled are not supported yet by deployer"
    ))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn text_for_diff(data: &[u8]) -> Option<String> {
    if data.len() > 1024 * 1024 || data.contains(&0) {
        return None;
    }
    String::from_utf8(data.to_vec()).ok()
}

/// Converges one regular file to `content` (None: keep the content, attributes only).
async fn converge_file(
    ctx: &mut ModuleCtx<'_>,
    dest: &str,
    content: Option<&[u8]>,
    attrs: &Attrs,
    backup: bool,
    validate: Option<&str>,
    force: bool,
) -> Result<ModuleResult, String> {
    let obs = ctx
        .observed
        .one(ctx.conn, ctx.become_.as_ref(), dest, Want::default())
        .await
        .map_err(|e| e.to_string())?;
    if obs.exists && obs.kind == FileKind::Directory {
        return Err(format!("Destination {dest} is a directory"));
    }
    let new_sha = content.map(sha256_hex);
    let content_changed = match (&new_sha, obs.exists) {
        (None, _) => false,
        (Some(_), false) => true,
        (Some(_), true) if !force => false,
        (Some(h), true) => obs.sha256.as_deref() != Some(h.as_str()),
    };
    // A new file gets its owner and mode in the write itself; only an
    // existing file has attributes to compare.
    let attr_changes = match (obs.exists, content_changed) {
        (true, _) => attrs.changes(&obs),
        (false, true) => Vec::new(),
        (false, false) => return Err(format!("file {dest} does not exist")),
    };
    let mut result = ModuleResult::ok();
    result.data.insert("dest".into(), json!(dest));
    if let Some(h) = &new_sha {
        result.data.insert("checksum".into(), json!(h));
    }
    if !content_changed && attr_changes.is_empty() {
        return Ok(result);
    }
    result.changed = true;
    if ctx.diff {
        let mut d = FileDiff {
            path: dest.to_string(),
            before: None,
            after: None,
            attributes: attr_changes.clone(),
            note: None,
        };
        if content_changed {
            let before = if obs.exists {
                let full = ctx
                    .observed
                    .one(
                        ctx.conn,
                        ctx.become_.as_ref(),
                        dest,
                        Want {
                            content: true,
                            sha1: false,
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                full.content.unwrap_or_default()
            } else {
                Vec::new()
            };
            let after = content.unwrap_or_default();
            match (text_for_diff(&before), text_for_diff(after)) {
                (Some(b), Some(a)) => {
                    d.before = Some(b);
                    d.after = Some(a);
                }
                _ => d.note = Some("binary or large file: content differs".into()),
            }
            if !obs.exists {
                d.attributes.push("state: absent -> file".into());
            }
        }
        result.diffs.push(d);
    }
    if ctx.check {
        // Later tasks of this check run plan against what this one would
        // write (a compose module reading the .env rendered just before).
        if let (true, Some(c)) = (content_changed, content) {
            ctx.observed.record(
                dest,
                ObservedFile {
                    exists: true,
                    kind: FileKind::File,
                    size: c.len() as u64,
                    sha256: new_sha.clone(),
                    sha1: None,
                    content: Some(c.to_vec()),
                    ..obs.clone()
                },
            );
        }
        return Ok(result);
    }
    let script = if content_changed {
        let pa = attrs.path_attrs();
        RemoteWrite::new(dest, content.unwrap_or_default())
            .owner(pa.owner)
            .group(pa.group)
            .mode(pa.mode)
            .backup(backup)
            .validate(validate)
            .script()?
    } else {
        write::attributes_script(dest, &attrs.path_attrs(), false)?
    };
    // For the release: the previous state is saved by the same script.
    let script = format!("{}{script}", ctx.release_save(dest));
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    ctx.release_saved(dest, &out.stdout_str());
    ctx.observed.forget(dest);
    if let Some(b) = write::outcome(dest, &out)?.backup_file {
        result.data.insert("backup_file".into(), json!(b));
    }
    Ok(result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateArgs {
    #[serde(deserialize_with = "de_string")]
    src: String,
    #[serde(deserialize_with = "de_string")]
    dest: String,
    #[serde(default)]
    mode: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    group: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    backup: bool,
    #[serde(default, deserialize_with = "de_opt_bool")]
    force: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    validate: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    newline_sequence: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    trim_blocks: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    lstrip_blocks: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    seuser: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    serole: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    setype: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    selevel: Option<String>,
}

pub async fn template(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: TemplateArgs = parse_args("template", args)?;
    selinux_context_args(
        ctx,
        "template",
        [&a.seuser, &a.serole, &a.setype, &a.selevel],
    )
    .await?;
    if a.newline_sequence
        .as_deref()
        .is_some_and(|n| n != "\\n" && n != "\n")
    {
        return Err("template: only newline_sequence '\\n' is supported".into());
    }
    if a.trim_blocks == Some(false) || a.lstrip_blocks == Some(true) {
        return Err(
            "template: trim_blocks: false and lstrip_blocks: true are not supported yet".into(),
        );
    }
    let path = ctx.find_source(&a.src, "templates")?;
    let source = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read template {}: {e}", path.display()))?;
    let name = path.display().to_string();
    let user_managed = ctx.vars.names().iter().any(|n| n == "ansible_managed");
    let vars = ctx.vars.extended(crate::template::template_file_vars(
        &a.src,
        &path,
        &a.dest,
        user_managed,
    ));
    let rendered = crate::template::render_file(vars.env(), &name, &source, vars.value())
        .map_err(|e| vars.explain(&e))?;
    let attrs = Attrs::from_json(a.mode.as_ref(), a.owner, a.group)?;
    converge_file(
        ctx,
        &a.dest,
        Some(rendered.as_bytes()),
        &attrs,
        a.backup,
        a.validate.as_deref(),
        a.force.unwrap_or(true),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CopyArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    src: Option<String>,
    #[serde(default)]
    content: Option<Json>,
    #[serde(deserialize_with = "de_string")]
    dest: String,
    #[serde(default)]
    mode: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    group: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    backup: bool,
    #[serde(default, deserialize_with = "de_opt_bool")]
    force: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    validate: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    remote_src: bool,
    #[serde(default, deserialize_with = "de_opt_bool")]
    decrypt: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    seuser: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    serole: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    setype: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    selevel: Option<String>,
}

pub async fn copy(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: CopyArgs = parse_args("copy", args)?;
    selinux_context_args(ctx, "copy", [&a.seuser, &a.serole, &a.setype, &a.selevel]).await?;
    // With `content`, Ansible's action plugin never reads `remote_src`.
    if let (true, None, Some(src)) = (a.remote_src, &a.content, &a.src) {
        let attrs = Attrs::from_json(a.mode.as_ref(), a.owner.clone(), a.group.clone())?;
        return super::copy_remote::copy_remote(
            ctx,
            super::copy_remote::RemoteCopy {
                src,
                dest: &a.dest,
                attrs,
                backup: a.backup,
                force: a.force.unwrap_or(true),
                validate: a.validate.as_deref(),
            },
        )
        .await;
    }
    let mut dest = a.dest.clone();
    let data: Vec<u8> = match (&a.src, &a.content) {
        (Some(_), Some(_)) => return Err("copy: src and content are mutually exclusive".into()),
        (None, None) => return Err("copy: one of src or content is required".into()),
        (None, Some(c)) => match c {
            Json::String(s) => s.clone().into_bytes(),
            // Ansible writes non-string content as JSON.
            other => serde_json::to_string(other)
                .map_err(|e| e.to_string())?
                .into_bytes(),
        },
        (Some(src), None) => {
            let path = ctx.find_source(src, "files")?;
            if path.is_dir() {
                return Err(format!(
                    "copy: copying a directory ({}) is not supported yet",
                    path.display()
                ));
            }
            if dest.ends_with('/') {
                dest = format!(
                    "{dest}{}",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
                );
            }
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if crate::vault::is_encrypted(&bytes) && a.decrypt != Some(false) {
                ctx.vars
                    .vault()
                    .decrypt_text(
                        &String::from_utf8_lossy(&bytes),
                        &path.display().to_string(),
                    )?
                    .into_bytes()
            } else {
                bytes
            }
        }
    };
    let attrs = Attrs::from_json(a.mode.as_ref(), a.owner, a.group)?;
    converge_file(
        ctx,
        &dest,
        Some(&data),
        &attrs,
        a.backup,
        a.validate.as_deref(),
        a.force.unwrap_or(true),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileArgs {
    #[serde(alias = "dest", alias = "name", deserialize_with = "de_string")]
    path: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default)]
    mode: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    group: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    src: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    recurse: bool,
    #[serde(default, deserialize_with = "de_bool")]
    force: bool,
    #[serde(default, deserialize_with = "de_opt_bool")]
    follow: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    modification_time: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    modification_time_format: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    access_time: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    access_time_format: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    seuser: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    serole: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    setype: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    selevel: Option<String>,
}

/// What `modification_time` / `access_time` ask for, as Ansible's file
/// module reads them: unset is `now` for `state=touch` and `preserve`
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Preserve,
    Now,
}

fn stamp(key: &str, v: Option<&str>, state: &str) -> Result<Stamp, String> {
    match v {
        None => Ok(if state == "touch" {
            Stamp::Now
        } else {
            Stamp::Preserve
        }),
        Some("preserve") => Ok(Stamp::Preserve),
        Some("now") => Ok(Stamp::Now),
        Some(other) => Err(format!(
            "file: {key} '{other}': a timestamp is not supported yet by deployer (preserve or now)"
        )),
    }
}

/// The `touch` that sets the times `now` asks for (none for two `preserve`).
fn stamp_script(path: &str, mtime: Stamp, atime: Stamp) -> Result<Option<String>, String> {
    let flags = match (mtime, atime) {
        (Stamp::Preserve, Stamp::Preserve) => return Ok(None),
        (Stamp::Now, Stamp::Now) => "",
        (Stamp::Now, Stamp::Preserve) => "-m",
        (Stamp::Preserve, Stamp::Now) => "-a",
    };
    Ok(Some(write::touch_script_with(path, flags)?))
}

/// Where a link at `path` to `src` points: `src` itself when absolute, else
/// `src` next to the link, with `.` and `..` folded (as the kernel resolves
/// it when no directory on the way is a link).
fn link_target_path(path: &str, src: &str) -> String {
    let base = if src.starts_with('/') {
        String::new()
    } else {
        path.rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or("")
            .to_string()
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in base.split('/').chain(src.split('/')) {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

pub async fn file(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: FileArgs = parse_args("file", args)?;
    selinux_context_args(ctx, "file", [&a.seuser, &a.serole, &a.setype, &a.selevel]).await?;
    if a.recurse {
        return Err("file: recurse is not supported yet".into());
    }
    let attrs = Attrs::from_json(a.mode.as_ref(), a.owner.clone(), a.group.clone())?;
    let path = a.path.trim_end_matches('/').to_string();
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    let obs = ctx
        .observed
        .one(ctx.conn, ctx.become_.as_ref(), &path, Want::default())
        .await
        .map_err(|e| e.to_string())?;
    let state = a.state.clone().unwrap_or_else(|| {
        if !obs.exists {
            "file".into()
        } else {
            match obs.kind {
                FileKind::Directory => "directory".into(),
                FileKind::Link => "link".into(),
                _ => "file".into(),
            }
        }
    });
    let kind_name = |k: FileKind| match k {
        FileKind::File => "file",
        FileKind::Directory => "directory",
        FileKind::Link => "link",
        FileKind::Other => "other",
    };
    let mtime = stamp("modification_time", a.modification_time.as_deref(), &state)?;
    let atime = stamp("access_time", a.access_time.as_deref(), &state)?;
    if (mtime, atime) != (Stamp::Preserve, Stamp::Preserve)
        && !matches!(state.as_str(), "touch" | "file" | "directory")
    {
        return Err(format!(
            "file: modification_time/access_time with state={state} are not supported yet by deployer"
        ));
    }
    let _ = (&a.modification_time_format, &a.access_time_format);
    let mut changes: Vec<String> = Vec::new();
    let script: String = match state.as_str() {
        "absent" => {
            if !obs.exists {
                String::new()
            } else {
                changes.push(format!("state: {} -> absent", kind_name(obs.kind)));
                write::remove_script(&path)?
            }
        }
        "directory" => {
            if obs.exists && obs.kind != FileKind::Directory {
                return Err(format!(
                    "{path} already exists as a {}",
                    kind_name(obs.kind)
                ));
            }
            if !obs.exists {
                changes.push("state: absent -> directory".into());
                write::mkdir_script(&path, &attrs.path_attrs())
            } else {
                changes.extend(attrs.changes(&obs));
                let mut script = write::attributes_script(&path, &attrs.path_attrs(), false)?;
                if let Some(t) = stamp_script(&path, mtime, atime)? {
                    changes.push("times: updated".into());
                    script.push_str(&t);
                }
                script
            }
        }
        "file" => {
            if !obs.exists {
                return Err(format!("file ({path}) is absent, cannot continue"));
            }
            if obs.kind == FileKind::Link
                && (attrs.mode.is_some() || attrs.owner.is_some() || attrs.group.is_some())
            {
                return Err(format!(
                    "file: {path} is a link: setting mode, owner or group through it (follow) is not supported yet by deployer; use state=link with src"
                ));
            }
            changes.extend(attrs.changes(&obs));
            let mut script = write::attributes_script(&path, &attrs.path_attrs(), false)?;
            if let Some(t) = stamp_script(&path, mtime, atime)? {
                changes.push("times: updated".into());
                script.push_str(&t);
            }
            script
        }
        "touch" => {
            let stamps = stamp_script(&path, mtime, atime)?;
            if !obs.exists {
                changes.push("state: absent -> file".into());
                // A new empty file, created like any other written file.
                let pa = attrs.path_attrs();
                RemoteWrite::new(&path, b"")
                    .owner(pa.owner)
                    .group(pa.group)
                    .mode(pa.mode)
                    .script()?
            } else {
                // As Ansible: an existing file changes when its attributes
                // differ or a time is set (`now`); two `preserve` leave the
                // times alone.
                changes.extend(attrs.changes(&obs));
                if stamps.is_some() {
                    changes.push("times: updated".into());
                }
                // -h: a link's own times; never creates through a link.
                format!(
                    "{}{}",
                    stamps.unwrap_or_default(),
                    write::attributes_script(&path, &attrs.path_attrs(), false)?
                )
            }
        }
        "link" => {
            let src = a
                .src
                .clone()
                .ok_or("file: src is required for state=link")?;
            if obs.exists && obs.kind != FileKind::Link && !a.force {
                return Err(format!(
                    "refusing to convert from {} to symlink for {path}",
                    kind_name(obs.kind)
                ));
            }
            let mut script = String::new();
            let relink = obs.link_target.as_deref() != Some(src.as_str());
            if relink {
                changes.push(format!(
                    "src: {} -> {src}",
                    obs.link_target.clone().unwrap_or_else(|| "(none)".into())
                ));
                script.push_str(&write::link_script(&path, &src)?);
            }
            // As Ansible's file module: with follow (the default) mode, owner
            // and group are the link target's, set in the same run as the
            // link; with follow=false owner and group are the link's own.
            if a.follow.unwrap_or(true) {
                let target = link_target_path(&path, &src);
                let tobs = ctx
                    .observed
                    .one(ctx.conn, ctx.become_.as_ref(), &target, Want::default())
                    .await
                    .map_err(|e| e.to_string())?;
                if tobs.exists && tobs.kind == FileKind::Link {
                    return Err(format!(
                        "file: {path} -> {target} is itself a link: following a chain of links is not supported yet by deployer"
                    ));
                }
                // A link to nothing has no attributes to set (Ansible warns and skips).
                if tobs.exists {
                    changes.extend(attrs.changes(&tobs));
                    script.push_str(&write::attributes_script(
                        &target,
                        &attrs.path_attrs(),
                        false,
                    )?);
                }
            } else {
                if attrs.mode.is_some() {
                    return Err(
                        "file: mode on the link itself (state=link, follow=false) is not supported yet by deployer".into(),
                    );
                }
                let own = if relink {
                    // The new link is owned by whoever makes it: set both.
                    let mut c = Vec::new();
                    if let Some(o) = &attrs.owner {
                        c.push(format!("owner: -> {o}"));
                    }
                    if let Some(g) = &attrs.group {
                        c.push(format!("group: -> {g}"));
                    }
                    c
                } else {
                    attrs.changes(&obs)
                };
                if !own.is_empty() {
                    changes.extend(own);
                    script.push_str(&write::attributes_script(&path, &attrs.path_attrs(), true)?);
                }
            }
            script
        }
        "hard" => return Err("file: state=hard is not supported yet".into()),
        other => {
            return Err(format!(
                "file: unknown state '{other}': expected file, directory, link, absent or touch"
            ));
        }
    };
    let mut result = ModuleResult::ok();
    result.data.insert("path".into(), json!(path));
    result.data.insert("state".into(), json!(state));
    if changes.is_empty() {
        return Ok(result);
    }
    result.changed = true;
    if ctx.diff {
        result.diffs.push(FileDiff {
            path: path.clone(),
            before: None,
            after: None,
            attributes: changes,
            note: None,
        });
    }
    if ctx.check {
        return Ok(result);
    }
    // For the release: the previous state is saved by the same script.
    let save = ctx.release_save(&path);
    let out = ctx
        .conn
        .run_script(&format!("{save}set -e\n{script}"), ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    ctx.release_saved(&path, &out.stdout_str());
    ctx.observed.forget_tree(&path);
    if out.rc != 0 {
        return Err(format!("file {path}: {}", out.stderr_str().trim()));
    }
    Ok(result)
}

pub(crate) async fn text_module(
    ctx: &mut ModuleCtx<'_>,
    path: &str,
    attrs: Attrs,
    backup: bool,
    validate: Option<&str>,
    plan: impl FnOnce(Option<&str>) -> Result<super::text_edit::TextEdit, String>,
) -> Result<ModuleResult, String> {
    let obs = ctx
        .observed
        .one(
            ctx.conn,
            ctx.become_.as_ref(),
            path,
            Want {
                content: true,
                sha1: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let existing = match (&obs.exists, &obs.content) {
        (false, _) => None,
        (true, Some(c)) => Some(
            String::from_utf8(c.clone()).map_err(|_| format!("{path} is not a UTF-8 text file"))?,
        ),
        (true, None) => return Err(format!("{path} is not a regular file or cannot be read")),
    };
    let edit = plan(existing.as_deref())?;
    let mut result = if edit.changed {
        converge_file(
            ctx,
            path,
            Some(edit.content.as_bytes()),
            &attrs,
            backup,
            validate,
            true,
        )
        .await?
    } else if obs.exists {
        converge_file(ctx, path, None, &attrs, false, None, true).await?
    } else {
        ModuleResult::ok()
    };
    result.msg = Some(edit.msg);
    Ok(result)
}

/// The stat script whose output [`path_info_from`] reads (`path` quoted here).
pub(crate) fn path_info_script(path: &str) -> String {
    let q = crate::connection::shell_quote(path);
    format!("if [ -e {q} ]; then stat -c '%a\t%U\t%G\t%u\t%g\t%s\t%F\t%h' -- {q}; fi\n")
}

/// Ansible's `add_path_info` from one line of [`path_info_script`]: what
/// every module that returns `path` (or `dest`) of an existing file reports
/// beside it (`uid`, `gid`, `owner`, `group`, `mode`, `state`, `size`).
pub(crate) fn path_info_from(r: &mut ModuleResult, line: &str) {
    let f: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
    if f.len() != 8 {
        return;
    }
    let uid = f[3].parse::<u64>().unwrap_or(0);
    let gid = f[4].parse::<u64>().unwrap_or(0);
    let name = |n: &str, id: u64| {
        if n == "UNKNOWN" {
            id.to_string()
        } else {
            n.to_string()
        }
    };
    let state = match f[6] {
        "symbolic link" => "link",
        "directory" => "directory",
        _ if f[7].parse::<u64>().unwrap_or(1) > 1 => "hard",
        _ => "file",
    };
    r.data.insert("uid".into(), json!(uid));
    r.data.insert("gid".into(), json!(gid));
    r.data.insert("owner".into(), json!(name(f[1], uid)));
    r.data.insert("group".into(), json!(name(f[2], gid)));
    r.data
        .insert("mode".into(), json!(format!("0{:0>3}", f[0])));
    r.data.insert("state".into(), json!(state));
    r.data
        .insert("size".into(), json!(f[5].parse::<u64>().unwrap_or(0)));
}

/// [`path_info_from`] read from the host.
pub(crate) async fn add_path_info(
    ctx: &mut ModuleCtx<'_>,
    r: &mut ModuleResult,
    path: &str,
) -> Result<(), String> {
    let out = ctx
        .conn
        .run_script(&path_info_script(path), ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    path_info_from(r, &out.stdout_str());
    Ok(())
}

pub async fn lineinfile(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: super::lineinfile::LineinfileArgs = parse_args("lineinfile", args)?;
    selinux_context_args(
        ctx,
        "lineinfile",
        [&a.seuser, &a.serole, &a.setype, &a.selevel],
    )
    .await?;
    let attrs = Attrs::from_json(a.mode.as_ref(), a.owner.clone(), a.group.clone())?;
    let path = a.path.clone();
    text_module(
        ctx,
        &path,
        attrs,
        a.backup,
        a.validate.clone().as_deref(),
        |e| super::lineinfile::plan_lineinfile(e, &a),
    )
    .await
}

pub async fn blockinfile(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: super::blockinfile::BlockinfileArgs = parse_args("blockinfile", args)?;
    selinux_context_args(
        ctx,
        "blockinfile",
        [&a.seuser, &a.serole, &a.setype, &a.selevel],
    )
    .await?;
    let attrs = Attrs::from_json(a.mode.as_ref(), a.owner.clone(), a.group.clone())?;
    let path = a.path.clone();
    text_module(
        ctx,
        &path,
        attrs,
        a.backup,
        a.validate.clone().as_deref(),
        |e| super::blockinfile::plan_blockinfile(e, &a),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatArgs {
    #[serde(alias = "dest", alias = "name", deserialize_with = "de_string")]
    path: String,
    #[serde(default, deserialize_with = "de_opt_bool")]
    get_checksum: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    checksum_algorithm: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    follow: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    get_mime: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    get_attributes: Option<bool>,
}

pub async fn stat(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: StatArgs = parse_args("stat", args)?;
    let algo = a.checksum_algorithm.as_deref().unwrap_or("sha1");
    if algo != "sha1" && algo != "sha256" {
        return Err(format!(
            "stat: checksum_algorithm '{algo}' is not supported (sha1, sha256)"
        ));
    }
    if a.follow == Some(true) {
        return Err("stat: follow=true is not supported yet by deployer".into());
    }
    // The result never has mimetype/charset nor attributes: asking for them
    // explicitly is refused (false, what deployer does, is accepted).
    for (arg, asked) in [
        ("get_mime", a.get_mime),
        ("get_attributes", a.get_attributes),
    ] {
        if asked == Some(true) {
            return Err(format!(
                "stat: {arg}=true is not supported yet by deployer (set it to false)"
            ));
        }
    }
    let want_sum = a.get_checksum.unwrap_or(true);
    let obs = ctx
        .observed
        .one(
            ctx.conn,
            ctx.become_.as_ref(),
            &a.path,
            Want {
                content: false,
                sha1: want_sum && algo == "sha1",
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let stat = if !obs.exists {
        json!({"exists": false})
    } else {
        let mut s = json!({
            "exists": true,
            "path": a.path,
            "mode": format!("{:04o}", obs.mode),
            "isdir": obs.kind == FileKind::Directory,
            "isreg": obs.kind == FileKind::File,
            "islnk": obs.kind == FileKind::Link,
            "uid": obs.uid,
            "gid": obs.gid,
            "pw_name": obs.owner,
            "gr_name": obs.group,
            "size": obs.size,
            "mtime": obs.mtime,
        });
        if let (Some(m), true) = (s.as_object_mut(), want_sum && obs.kind == FileKind::File) {
            let sum = if algo == "sha1" {
                obs.sha1.clone()
            } else {
                obs.sha256.clone()
            };
            if let Some(sum) = sum {
                m.insert("checksum".into(), json!(sum));
            }
        }
        if let (Some(m), Some(t)) = (s.as_object_mut(), &obs.link_target) {
            m.insert("lnk_target".into(), json!(t));
            m.insert("lnk_source".into(), json!(t));
        }
        s
    };
    let mut r = ModuleResult::ok();
    r.data.insert("stat".into(), stat);
    Ok(r)
}

// The registry's entries for the file modules. Not yet split into plan and apply (plans, and outside check mode applies, in one function).

/// `template`: renders a Jinja2 template to a file.
pub struct Template;

impl Module for Template {
    fn name(&self) -> &'static str {
        "template"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.template"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<TemplateArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        super::args::check_mode(args)
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[(
            "dest",
            Want {
                content: false,
                sha1: false,
            },
        )]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(template(args, ctx))
    }
}

/// `copy`: writes a local file or given content to a file.
pub struct Copy;

impl Module for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.copy"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<CopyArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        let has = |k: &str| args.contains_key(k);
        if !has("src") && !has("content") {
            return Err("one of src or content is required".into());
        }
        if has("src") && has("content") {
            return Err("src and content are mutually exclusive".into());
        }
        super::args::check_mode(args)
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[(
            "dest",
            Want {
                content: false,
                sha1: false,
            },
        )]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(copy(args, ctx))
    }
}

/// `file`: a file's state (file, directory, link, absent, touch) and attributes.
pub struct File;

impl Module for File {
    fn name(&self) -> &'static str {
        "file"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.file"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<FileArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        super::args::check_choice(
            args,
            "state",
            &["file", "directory", "link", "absent", "touch", "hard"],
        )?;
        super::args::check_not_yet(args, "recurse")?;
        for key in ["modification_time", "access_time"] {
            super::args::check_choice(args, key, &["preserve", "now"])
                .map_err(|e| format!("{e} (a timestamp is not supported yet by deployer)"))?;
        }
        super::args::check_mode(args)
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[
            (
                "path",
                Want {
                    content: false,
                    sha1: false,
                },
            ),
            (
                "dest",
                Want {
                    content: false,
                    sha1: false,
                },
            ),
            (
                "name",
                Want {
                    content: false,
                    sha1: false,
                },
            ),
        ]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(file(args, ctx))
    }
}

/// `lineinfile`: one line in a file.
pub struct Lineinfile;

impl Module for Lineinfile {
    fn name(&self) -> &'static str {
        "lineinfile"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.lineinfile"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<super::lineinfile::LineinfileArgs>()
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[
            (
                "path",
                Want {
                    content: true,
                    sha1: false,
                },
            ),
            (
                "dest",
                Want {
                    content: true,
                    sha1: false,
                },
            ),
            (
                "name",
                Want {
                    content: true,
                    sha1: false,
                },
            ),
        ]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(lineinfile(args, ctx))
    }
}

/// `blockinfile`: a marked block in a file.
pub struct Blockinfile;

impl Module for Blockinfile {
    fn name(&self) -> &'static str {
        "blockinfile"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.blockinfile"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<super::blockinfile::BlockinfileArgs>()
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[
            (
                "path",
                Want {
                    content: true,
                    sha1: false,
                },
            ),
            (
                "dest",
                Want {
                    content: true,
                    sha1: false,
                },
            ),
            (
                "name",
                Want {
                    content: true,
                    sha1: false,
                },
            ),
        ]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(blockinfile(args, ctx))
    }
}

/// `stat`: reads a path's state (Ansible's result shape).
pub struct Stat;

impl Module for Stat {
    fn name(&self) -> &'static str {
        "stat"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.stat"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<StatArgs>()
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[(
            "path",
            Want {
                content: false,
                sha1: true,
            },
        )]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(stat(args, ctx))
    }
}
