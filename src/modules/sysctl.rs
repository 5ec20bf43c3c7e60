//! `sysctl` (`ansible.posix.sysctl`): a kernel parameter in a sysctl file
//! (and optionally in the running kernel), deciding `changed` and rewriting
//! the file line for line as the collection's module does (one `key=value`
//! per key, the first occurrence kept, comments kept).
//!
//! Observe (one execution): `sysctl -e -n NAME`, the file's real path and
//! content. Plan (pure): the new file and what to run. Apply: `sysctl -w`
//! (with `sysctl_set`), the file written with
//! [`crate::connection::write::RemoteWrite`] at its real path (as Ansible
//! writes through a link such as `/etc/sysctl.d/99-sysctl.conf`), then
//! `sysctl -p FILE` (with `reload`, the default).
//!
//! Supported: `name` (`key`), `value` (`val`), `state`, `reload`,
//! `sysctl_set`, `ignoreerrors`, `sysctl_file`. It returns `changed` only, as
//! Ansible's does.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::args::{de_bool, de_opt_string, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;
use crate::connection::write::RemoteWrite;

fn yes() -> bool {
    true
}

fn default_file() -> String {
    "/etc/sysctl.conf".into()
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum SysctlState {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SysctlArgs {
    #[serde(alias = "key", deserialize_with = "de_string")]
    pub name: String,
    #[serde(default, alias = "val", deserialize_with = "de_opt_string")]
    pub value: Option<String>,
    #[serde(default)]
    pub state: SysctlState,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub reload: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub sysctl_set: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub ignoreerrors: bool,
    #[serde(default = "default_file", deserialize_with = "de_string")]
    pub sysctl_file: String,
}

pub struct Sysctl;

impl Module for Sysctl {
    fn name(&self) -> &'static str {
        "sysctl"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.posix.sysctl"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<SysctlArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") && !args.contains_key("key") {
            return Err("missing required argument: name".into());
        }
        let absent = args.get("state").and_then(Json::as_str) == Some("absent");
        if !absent && !args.contains_key("value") && !args.contains_key("val") {
            return Err("state is present but all of the following are missing: value".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// `_parse_value`: booleans as 1/0, strings stripped.
fn parse_value(v: Option<&str>) -> String {
    let Some(v) = v else { return String::new() };
    match v.to_ascii_lowercase().as_str() {
        "y" | "yes" | "on" | "1" | "true" | "t" => "1".into(),
        "n" | "no" | "off" | "0" | "false" | "f" => "0".into(),
        _ => v.trim().to_string(),
    }
}

fn values_equal(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.split_whitespace().eq(b.split_whitespace()))
}

#[derive(Debug, Default)]
pub struct SysctlObserved {
    /// The running value (`sysctl -e -n`), None when it cannot be read.
    pub proc_value: Option<String>,
    /// The file's real path (links resolved, as Ansible writes it).
    pub real_path: String,
    /// The file's lines (None: no such regular file).
    pub content: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct SysctlWork {
    pub set_proc: bool,
    /// The new file content, when the file changes.
    pub write: Option<String>,
    pub reload: bool,
}

/// The plan: pure.
pub fn plan_sysctl(a: &SysctlArgs, o: &SysctlObserved) -> Result<(bool, SysctlWork), String> {
    let name = a.name.trim();
    if name.is_empty() {
        return Err("name cannot be blank".into());
    }
    let value = parse_value(a.value.as_deref());
    if a.state == SysctlState::Present && a.value.is_none() {
        return Err("value cannot be None".into());
    }
    if a.state == SysctlState::Present && a.value.as_deref() == Some("") {
        return Err("value cannot be blank".into());
    }
    let lines: Vec<String> = o
        .content
        .as_deref()
        .map(|c| {
            c.split_inclusive('\n')
                .map(|l| l.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut file_value: Option<String> = None;
    for l in &lines {
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') || !l.contains('=') {
            continue;
        }
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.trim() == name {
            file_value = Some(v.trim().to_string());
        }
    }
    // fix_lines: first occurrence of each key, normalized.
    let mut fixed = Vec::new();
    let mut checked: Vec<String> = Vec::new();
    for l in &lines {
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') || !l.contains('=') {
            fixed.push(l.clone());
            continue;
        }
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if checked.contains(&k) {
            continue;
        }
        checked.push(k.clone());
        if k == name {
            if a.state == SysctlState::Present {
                fixed.push(format!("{k}={value}"));
            }
        } else {
            fixed.push(format!("{k}={v}"));
        }
    }
    if !checked.iter().any(|k| k == name) && a.state == SysctlState::Present {
        fixed.push(format!("{name}={value}"));
    }
    let mut changed = false;
    let mut write = false;
    let mut set_proc = false;
    match (&file_value, a.state) {
        (None, SysctlState::Present) => {
            changed = true;
            write = true;
        }
        (None, SysctlState::Absent) => {}
        (Some(f), SysctlState::Absent) if !f.is_empty() => {
            changed = true;
            write = true;
        }
        (Some(f), _) if *f != value => {
            changed = true;
            write = true;
        }
        _ => {
            if a.reload && !values_equal(o.proc_value.as_deref(), &value) {
                changed = true;
            }
        }
    }
    if a.sysctl_set && a.state == SysctlState::Present {
        if o.proc_value.is_none() {
            changed = true;
        } else if !values_equal(o.proc_value.as_deref(), &value) {
            changed = true;
            set_proc = true;
        }
    }
    let content: String = fixed.iter().map(|l| format!("{}\n", l.trim())).collect();
    Ok((
        changed,
        SysctlWork {
            set_proc,
            write: write.then_some(content),
            reload: changed && a.reload,
        },
    ))
}

const MARK: &str = "__deployer_sysctl__";

/// The error lines `sysctl` prints with exit code 0 that Ansible counts as
/// failures.
fn stderr_failed(err: &str) -> bool {
    err.lines().any(|l| {
        l.starts_with("sysctl: setting key \"")
            && (l.ends_with("\": Invalid argument") || l.ends_with("\": Read-only file system"))
    })
}

impl PlanApply for Sysctl {
    type Args = SysctlArgs;
    type Observed = SysctlObserved;
    type Changes = (SysctlArgs, SysctlWork, String);

    fn observe<'a>(
        &'a self,
        a: &'a SysctlArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<SysctlObserved, String>> {
        Box::pin(async move {
            let n = shell_quote(a.name.trim());
            let f = shell_quote(&a.sysctl_file);
            let script = format!(
                "export LANG=C LC_ALL=C LC_MESSAGES=C\n\
                 command -v sysctl >/dev/null 2>&1 || {{ echo 'sysctl not found on the host' >&2; exit 3; }}\n\
                 v=$(sysctl -e -n -- {n} 2>/dev/null) && printf '{MARK}V\\t%s\\n' \"$v\"\n\
                 printf '{MARK}R\\t%s\\n' \"$(readlink -m -- {f})\"\n\
                 if [ -f {f} ]; then echo '{MARK}F'; cat -- {f}; fi\n\
                 exit 0\n"
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(out.stderr_str().trim().to_string());
            }
            let stdout = out.stdout_str();
            let mut o = SysctlObserved::default();
            let (head, body) = match stdout.split_once(&format!("{MARK}F\n")) {
                Some((h, b)) => (h, Some(b)),
                None => (stdout.as_str(), None),
            };
            o.content = body.map(str::to_string);
            for l in head.lines() {
                if let Some(v) = l.strip_prefix(&format!("{MARK}V\t")) {
                    o.proc_value = Some(v.to_string());
                } else if let Some(r) = l.strip_prefix(&format!("{MARK}R\t")) {
                    o.real_path = r.to_string();
                }
            }
            if o.real_path.is_empty() {
                o.real_path = a.sysctl_file.clone();
            }
            Ok(o)
        })
    }

    fn plan(
        &self,
        a: SysctlArgs,
        o: SysctlObserved,
        _: &ModuleCtx<'_>,
    ) -> Result<Plan<(SysctlArgs, SysctlWork, String)>, String> {
        match plan_sysctl(&a, &o) {
            Err(e) => Ok(Plan::unchanged(ModuleResult::failed(e))),
            Ok((changed, w)) => {
                let r = ModuleResult {
                    changed,
                    ..Default::default()
                };
                let work = w.set_proc || w.write.is_some() || w.reload;
                Ok(Plan {
                    result: r,
                    changes: work.then_some((a, w, o.real_path)),
                })
            }
        }
    }

    fn apply<'a>(
        &'a self,
        (a, w, real): (SysctlArgs, SysctlWork, String),
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let e = if a.ignoreerrors { "-e " } else { "" };
            let env = "export LANG=C LC_ALL=C LC_MESSAGES=C\n";
            if w.set_proc {
                let value = parse_value(a.value.as_deref());
                let kv = shell_quote(&format!("{}={value}", a.name.trim()));
                let out = ctx
                    .conn
                    .run_script(&format!("{env}sysctl {e}-w {kv}\n"), ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                let err = out.stderr_str();
                if out.rc != 0 || stderr_failed(&err) {
                    return Ok(ModuleResult::failed(format!(
                        "setting {} failed: {}{}",
                        a.name.trim(),
                        out.stdout_str(),
                        err
                    )));
                }
            }
            if let Some(content) = &w.write {
                let script = format!(
                    "{}{}",
                    ctx.release_save(&real),
                    RemoteWrite::new(&real, content.as_bytes()).script()?
                );
                let out = ctx
                    .conn
                    .run_script(&script, ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                ctx.release_saved(&real, &out.stdout_str());
                if out.rc != 0 {
                    return Ok(ModuleResult::failed(format!(
                        "writing {real} failed: {}",
                        out.stderr_str().trim()
                    )));
                }
            }
            if w.reload {
                let out = ctx
                    .conn
                    .run_script(
                        &format!("{env}sysctl {e}-p {}\n", shell_quote(&a.sysctl_file)),
                        ctx.become_.as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let err = out.stderr_str();
                if out.rc != 0 || stderr_failed(&err) {
                    r.failed = true;
                    r.msg = Some(format!(
                        "Failed to reload sysctl: {}{}",
                        out.stdout_str(),
                        err
                    ));
                }
            }
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, value: &str) -> SysctlArgs {
        SysctlArgs {
            name: name.into(),
            value: Some(value.into()),
            reload: false,
            sysctl_file: "/etc/sysctl.conf".into(),
            ..Default::default()
        }
    }

    #[test]
    fn rewrites_the_file_as_ansible() {
        let o = SysctlObserved {
            proc_value: Some("0".into()),
            real_path: "/etc/sysctl.conf".into(),
            content: Some("# c\n a = 1 \nb=2\na=1\n\n".into()),
        };
        let (changed, w) = plan_sysctl(&args("a", "yes"), &o).unwrap();
        assert!(!changed && w.write.is_none());
        let (changed, w) = plan_sysctl(&args("b", "5"), &o).unwrap();
        assert!(changed);
        assert_eq!(w.write.as_deref(), Some("# c\na=1\nb=5\n\n"));
        let (_, w) = plan_sysctl(&args("c", "1 2"), &o).unwrap();
        assert_eq!(w.write.as_deref(), Some("# c\na=1\nb=2\n\nc=1 2\n"));
        let mut gone = args("a", "");
        gone.state = SysctlState::Absent;
        gone.value = None;
        let (changed, w) = plan_sysctl(&gone, &o).unwrap();
        assert!(changed);
        assert_eq!(w.write.as_deref(), Some("# c\nb=2\n\n"));
        let mut set = args("a", "1");
        set.sysctl_set = true;
        let (changed, w) = plan_sysctl(&set, &o).unwrap();
        assert!(changed && w.set_proc && w.write.is_none());
    }
}
