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
//! Supported: `src`, `dest`, `remote_src` (`copy: false`), `creates`,
//! `list_files`, `keep_newer`, `exclude`, `include`, `extra_opts`,
//! `validate_certs`, `io_buffer_size`, `decrypt`. Not supported yet: zip
//! archives, `owner`/`group`/`mode` and the other file attributes, a URL as
//! `src`, vault-encrypted archives. Like Ansible's, extraction is tar's own
//! (it is not routed through `RemoteWrite`).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{
    de_bool, de_opt_bool, de_opt_list, de_opt_string, de_opt_u64, de_present, de_string,
};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{ModuleCtx, ModuleResult, parse_args};
use crate::connection::shell_quote;
use crate::connection::write::RemoteWrite;

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

const ATTRS: &str = "unarchive: owner, group and mode are not supported yet by deployer (set them with file afterwards)";

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
        if ["owner", "group", "mode"]
            .iter()
            .any(|k| args.contains_key(*k))
        {
            return Err(ATTRS.into());
        }
        if args.contains_key("include") && args.contains_key("exclude") {
            return Err("parameters are mutually exclusive: include|exclude".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a: UnarchiveArgs = parse_args("unarchive", args)?;
            if a.owner.is_some() || a.group.is_some() || a.mode.is_some() {
                return Err(ATTRS.into());
            }
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
            let r = unpack(&a, &src, ctx).await;
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

/// tar's words after `-C DEST` (flag, options, excludes, `-f SRC`,
/// includes), for `action` (`--list`, `--diff`, `--extract`).
fn tar_words(a: &UnarchiveArgs, action: &str, flag: &str, src: &str) -> Vec<String> {
    let mut w: Vec<String> = vec![action.into(), "-C".into(), a.dest.clone()];
    if !flag.is_empty() {
        w.push(flag.into());
    }
    if let Some(o) = a.extra_opts.as_ref().filter(|o| !o.is_empty()) {
        w.push("--show-transformed-names".into());
        w.extend(o.iter().cloned());
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

/// What `tar --diff` printed that means the archive is not unpacked yet
/// (Ansible's `is_unarchived`, as root, with no owner/group/mode asked).
pub fn differs(diff_output: &str, root: bool) -> bool {
    diff_output.lines().any(|l| {
        if l.ends_with(": : Warning: Cannot stat: No such file or directory") {
            return false;
        }
        (root && (l.ends_with(": Uid differs") || l.ends_with(": Gid differs")))
            || l.ends_with(": Mode differs")
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
    let unpacked = !differs(&diff, root);
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
    if a.list_files {
        r.data.insert("files".into(), json!(files));
    }
    super::files::add_path_info(ctx, &mut r, &a.dest).await?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_diff_lines_as_ansible_reads_them() {
        assert!(!differs("", true));
        assert!(differs(
            "tar: a/b: Warning: Cannot stat: No such file or directory",
            true
        ));
        assert!(!differs(
            "tar: : Warning: Cannot stat: No such file or directory",
            true
        ));
        assert!(differs("a/b: Mod time differs", false));
        assert!(differs("a/b: Uid differs", true));
        assert!(!differs("a/b: Uid differs", false));
        assert!(differs("a/c: Contents differ", false));
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
