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
//! Not supported yet: a directory as `src` (Ansible's recursive copy), a
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
        ["D"] => {
            return Err(format!(
                "copy: remote_src with a directory as src ({src}) is not supported yet by deployer"
            ));
        }
        ["F", sha1, md5] => Source {
            sha1: sha1.to_string(),
            md5: md5.to_string(),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_as_python_does() {
        assert_eq!(basename("/srv/a/b.conf"), "b.conf");
        assert_eq!(join("/etc/app", "b.conf"), "/etc/app/b.conf");
        assert_eq!(join("/etc/app/", "b.conf"), "/etc/app/b.conf");
    }
}
