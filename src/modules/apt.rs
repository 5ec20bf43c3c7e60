//! `apt` (and `package` on hosts whose `ansible_pkg_mgr` is apt): Debian
//! packages through the host's own `apt-get` and `dpkg-query`, as Ansible's
//! `ansible.builtin.apt` decides (`changed` exactly when it would be).
//!
//! Observe (one execution): the apt lists' timestamp, `dpkg-query` status
//! and `apt-cache policy` of the named packages. Plan (pure): what to
//! install, upgrade or remove, and whether the cache is refreshed. Apply:
//! `apt-get update`, then one `apt-get install` or `apt-get remove`.
//!
//! Supported: `name` (`pkg`, `package`; a list), `state` present, latest,
//! absent; `update_cache`, `cache_valid_time`, `purge`,
//! `install_recommends`, `default_release`, `dpkg_options`, `lock_timeout`,
//! `force_apt_get`, `allow_downgrade`, `allow_unauthenticated`,
//! `allow_change_held_packages`, `policy_rc_d`. Not supported yet (load-time
//! error): `deb`, `upgrade`, `autoremove`, `autoclean`, `clean`,
//! `only_upgrade`, `fail_on_autoremove`, `force`, states `build-dep`/`fixed`,
//! version pins (`pkg=1.2`) and wildcards.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_bool, de_opt_list, de_opt_string, de_opt_u64};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum AptState {
    #[default]
    Present,
    Latest,
    Absent,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct AptArgs {
    #[serde(
        default,
        alias = "pkg",
        alias = "package",
        deserialize_with = "de_opt_list"
    )]
    pub name: Option<Vec<String>>,
    #[serde(default)]
    pub state: AptState,
    #[serde(default, alias = "update-cache", deserialize_with = "de_opt_bool")]
    pub update_cache: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub cache_valid_time: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub purge: Option<bool>,
    #[serde(
        default,
        alias = "install-recommends",
        deserialize_with = "de_opt_bool"
    )]
    pub install_recommends: Option<bool>,
    #[serde(default, alias = "default-release", deserialize_with = "de_opt_string")]
    pub default_release: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub dpkg_options: Option<String>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub lock_timeout: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub force_apt_get: Option<bool>,
    #[serde(
        default,
        alias = "allow-downgrade",
        alias = "allow_downgrades",
        alias = "allow-downgrades",
        deserialize_with = "de_opt_bool"
    )]
    pub allow_downgrade: Option<bool>,
    #[serde(
        default,
        alias = "allow-unauthenticated",
        deserialize_with = "de_opt_bool"
    )]
    pub allow_unauthenticated: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub allow_change_held_packages: Option<bool>,
    /// While apt-get installs or removes, `/usr/sbin/policy-rc.d` exits
    /// with this code (101: packages do not start or stop services), the
    /// existing one put back afterwards, as Ansible's apt module does.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub policy_rc_d: Option<u64>,
}

/// A Debian package name (with an optional `:arch`); anything else is
/// refused before a host is contacted, so a name never becomes shell text.
pub fn valid_name(n: &str) -> bool {
    let (name, arch) = match n.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (n, None),
    };
    let ok_name = name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    ok_name
        && arch.is_none_or(|a| {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn check_names(names: &[String]) -> Result<(), String> {
    for n in names {
        if n.contains('=') || n.contains('*') || n.contains('?') || n.contains('[') {
            return Err(format!(
                "package '{n}': version pins and wildcards are not supported yet by deployer"
            ));
        }
        if !valid_name(n) {
            return Err(format!("'{n}' is not a valid Debian package name"));
        }
    }
    Ok(())
}

pub struct Apt;

impl Module for Apt {
    fn name(&self) -> &'static str {
        "apt"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.apt"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<AptArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        let has = |k: &str| args.get(k).is_some_and(|v| !v.is_null());
        if ![
            "name",
            "pkg",
            "package",
            "update_cache",
            "update-cache",
            "cache_valid_time",
        ]
        .iter()
        .any(|k| has(k))
        {
            return Err("one of name or update_cache is required".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// One package as the host has it.
#[derive(Debug, Default, Clone)]
pub struct PkgState {
    /// dpkg's status abbreviation (`ii`, `rc`, ...), empty when unknown to dpkg.
    pub status: String,
    pub version: String,
    /// `apt-cache policy`'s candidate; None when apt does not know the package.
    pub candidate: Option<String>,
}

impl PkgState {
    fn installed(&self) -> bool {
        // "ii" installed; "iU"/"iF"/"iH": unpacked or half-configured count
        // as installed for Ansible (python-apt's is_installed).
        self.status.len() >= 2
            && self.status.as_bytes()[1] != b'n'
            && self.status.as_bytes()[1] != b'c'
    }
    fn has_files(&self) -> bool {
        self.status.len() >= 2 && self.status.as_bytes()[1] == b'c'
    }
}

#[derive(Debug, Default)]
pub struct AptObserved {
    pub stamp: i64,
    pub now: i64,
    pub pkgs: BTreeMap<String, PkgState>,
}

const MARK: &str = "__deployer_apt__";

/// The observation script for `names` (validated names only).
fn observe_script(names: &[String]) -> String {
    let words: Vec<String> = names.iter().map(|n| shell_quote(n)).collect();
    let list = words.join(" ");
    format!(
        r#"if [ -e /var/lib/apt/periodic/update-success-stamp ]; then s=$(stat -c %Y /var/lib/apt/periodic/update-success-stamp); elif [ -e /var/lib/apt/lists ]; then s=$(stat -c %Y /var/lib/apt/lists); else s=0; fi
printf '{MARK}stamp\t%s\t%s\n' "$s" "$(date +%s)"
command -v apt-get >/dev/null 2>&1 || {{ echo 'apt-get not found on the host' >&2; exit 3; }}
{q}
{p}
"#,
        q = if names.is_empty() {
            String::new()
        } else {
            format!(
                "dpkg-query -W -f='{MARK}dpkg\\t${{Package}}\\t${{db:Status-Abbrev}}\\t${{Version}}\\n' -- {list} 2>/dev/null || true"
            )
        },
        p = if names.is_empty() {
            String::new()
        } else {
            format!("LC_ALL=C apt-cache policy -- {list} 2>/dev/null || true")
        },
    )
}

/// Parses [`observe_script`]'s output.
pub fn parse_observed(out: &str, names: &[String]) -> AptObserved {
    let mut o = AptObserved::default();
    for n in names {
        o.pkgs.insert(n.clone(), PkgState::default());
    }
    let mut current: Option<String> = None;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{MARK}stamp\t")) {
            let mut it = rest.split('\t');
            o.stamp = it.next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            o.now = it.next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix(&format!("{MARK}dpkg\t")) {
            let f: Vec<&str> = rest.split('\t').collect();
            if f.len() == 3 {
                let key = names
                    .iter()
                    .find(|n| n.split(':').next() == Some(f[0]))
                    .cloned()
                    .unwrap_or_else(|| f[0].to_string());
                let e = o.pkgs.entry(key).or_default();
                e.status = f[1].trim().to_string();
                e.version = f[2].to_string();
            }
        } else if !line.starts_with(' ') && line.ends_with(':') {
            current = Some(line.trim_end_matches(':').to_string());
        } else if let Some(c) = line.trim().strip_prefix("Candidate:")
            && let Some(name) = &current
        {
            let c = c.trim();
            let key = names
                .iter()
                .find(|n| *n == name || n.split(':').next() == Some(name))
                .cloned()
                .unwrap_or_else(|| name.clone());
            let e = o.pkgs.entry(key).or_default();
            e.candidate = if c == "(none)" {
                None
            } else {
                Some(c.to_string())
            };
        }
    }
    o
}

#[derive(Debug, PartialEq, Eq)]
pub struct AptChanges {
    pub update_cache: bool,
    pub install: Vec<String>,
    pub remove: Vec<String>,
}

/// The plan: pure.
pub fn plan_apt(a: &AptArgs, o: &AptObserved) -> Result<(AptChanges, ModuleResult), String> {
    let names = a.name.clone().unwrap_or_default();
    let mut r = ModuleResult::ok();
    let wants_update = a.update_cache == Some(true) || a.cache_valid_time.unwrap_or(0) > 0;
    let valid = a.cache_valid_time.unwrap_or(0) as i64;
    let update_cache = wants_update && o.stamp + valid < o.now;
    let mut install = Vec::new();
    let mut remove = Vec::new();
    for n in &names {
        let p = o.pkgs.get(n).cloned().unwrap_or_default();
        match a.state {
            AptState::Present | AptState::Latest => {
                // A refreshed cache may know packages the current one does not.
                if p.candidate.is_none() && !p.installed() && !update_cache {
                    return Err(format!("No package matching '{n}' is available"));
                }
                let outdated = a.state == AptState::Latest
                    && p.candidate.as_deref().is_some_and(|c| c != p.version);
                if !p.installed()
                    || outdated
                    || (update_cache && a.state == AptState::Latest && p.candidate.is_none())
                {
                    install.push(n.clone());
                }
            }
            AptState::Absent => {
                if p.installed() || (a.purge == Some(true) && p.has_files()) {
                    remove.push(n.clone());
                }
            }
        }
    }
    if wants_update {
        r.data.insert("cache_updated".into(), json!(update_cache));
        r.data.insert("cache_update_time".into(), json!(o.stamp));
    }
    // With packages, `changed` is about the packages; alone, about the cache.
    r.changed = if names.is_empty() {
        update_cache
    } else {
        !install.is_empty() || !remove.is_empty()
    };
    Ok((
        AptChanges {
            update_cache,
            install,
            remove,
        },
        r,
    ))
}

/// `apt-get` options from the arguments, as Ansible builds them.
fn apt_get_options(a: &AptArgs) -> Result<String, String> {
    let mut o = Vec::new();
    let dpkg = a
        .dpkg_options
        .clone()
        .unwrap_or_else(|| "force-confdef,force-confold".into());
    for d in dpkg.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '=')
        {
            return Err(format!("dpkg_options: '{d}' is not a dpkg option"));
        }
        o.push(format!("-o \"Dpkg::Options::=--{d}\""));
    }
    o.push(format!(
        "-o DPkg::Lock::Timeout={}",
        a.lock_timeout.unwrap_or(60)
    ));
    match a.install_recommends {
        Some(true) => o.push("-o APT::Install-Recommends=yes".into()),
        Some(false) => o.push("-o APT::Install-Recommends=no".into()),
        None => {}
    }
    if let Some(rel) = &a.default_release {
        o.push(format!("-t {}", shell_quote(rel)));
    }
    if a.allow_unauthenticated == Some(true) {
        o.push("--allow-unauthenticated".into());
    }
    if a.allow_downgrade == Some(true) {
        o.push("--allow-downgrades".into());
    }
    if a.allow_change_held_packages == Some(true) {
        o.push("--allow-change-held-packages".into());
    }
    Ok(o.join(" "))
}

async fn apply_apt(
    a: &AptArgs,
    c: AptChanges,
    mut r: ModuleResult,
    ctx: &mut ModuleCtx<'_>,
) -> Result<ModuleResult, String> {
    let opts = apt_get_options(a)?;
    let env = "export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C\n";
    if c.update_cache {
        let script = format!(
            "{env}apt-get update -q -o DPkg::Lock::Timeout={} >/dev/null || exit $?\nif [ -e /var/lib/apt/periodic/update-success-stamp ]; then stat -c %Y /var/lib/apt/periodic/update-success-stamp; else stat -c %Y /var/lib/apt/lists; fi\n",
            a.lock_timeout.unwrap_or(60)
        );
        let out = ctx
            .conn
            .run_script(&script, ctx.become_.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        if out.rc != 0 {
            let mut f = ModuleResult::failed(format!(
                "Failed to update apt cache: {}",
                out.stderr_str().trim()
            ));
            f.data = r.data;
            return Ok(f);
        }
        let after: i64 = out.stdout_str().trim().parse().unwrap_or(0);
        let before = r
            .data
            .get("cache_update_time")
            .and_then(Json::as_i64)
            .unwrap_or(0);
        let updated = after != before;
        r.data.insert("cache_updated".into(), json!(updated));
        r.data.insert("cache_update_time".into(), json!(after));
        if a.name.as_ref().is_none_or(|n| n.is_empty()) {
            r.changed = updated;
            return Ok(r);
        }
        // The refreshed cache may change what needs installing.
        let names = a.name.clone().unwrap_or_default();
        let out = ctx
            .conn
            .run_script(&observe_script(&names), ctx.become_.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let mut o = parse_observed(&out.stdout_str(), &names);
        o.stamp = o.now; // fresh: no second update
        let no_update = AptArgs {
            update_cache: None,
            cache_valid_time: None,
            ..a.clone()
        };
        let (c2, r2) = match plan_apt(&no_update, &o) {
            Ok(p) => p,
            Err(msg) => {
                let mut f = ModuleResult::failed(msg);
                f.data = r.data;
                return Ok(f);
            }
        };
        r.changed = r2.changed;
        return finish(a, c2, r, &opts, env, ctx).await;
    }
    finish(a, c, r, &opts, env, ctx).await
}

async fn finish(
    a: &AptArgs,
    c: AptChanges,
    mut r: ModuleResult,
    opts: &str,
    env: &str,
    ctx: &mut ModuleCtx<'_>,
) -> Result<ModuleResult, String> {
    let (verb, list) = if !c.install.is_empty() {
        ("install", &c.install)
    } else if !c.remove.is_empty() {
        ("remove", &c.remove)
    } else {
        return Ok(r);
    };
    let words: Vec<String> = list.iter().map(|n| shell_quote(n)).collect();
    let purge = if verb == "remove" && a.purge == Some(true) {
        " --purge"
    } else {
        ""
    };
    let cmd = format!("apt-get -y -q {opts}{purge} {verb} {}", words.join(" "));
    let script = match a.policy_rc_d {
        None => format!("{env}{cmd}\n"),
        Some(code) => {
            let code = code.min(255);
            format!(
                "{env}__dw_prc=/usr/sbin/policy-rc.d\n__dw_bak=\n\
                 if [ -e \"$__dw_prc\" ] || [ -L \"$__dw_prc\" ]; then __dw_bak=$(mktemp -d) && mv \"$__dw_prc\" \"$__dw_bak/\" || exit 1; fi\n\
                 printf '#!/bin/sh\\nexit %d\\n' {code} >\"$__dw_prc\" && chmod 0755 \"$__dw_prc\" || exit 1\n\
                 {cmd}\n__dw_rc=$?\n\
                 if [ -n \"$__dw_bak\" ]; then mv \"$__dw_bak/policy-rc.d\" \"$__dw_prc\" && rmdir \"$__dw_bak\"; else rm -f \"$__dw_prc\"; fi\n\
                 exit $__dw_rc\n"
            )
        }
    };
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    r.data.insert("stdout".into(), json!(out.stdout_str()));
    r.data.insert("stderr".into(), json!(out.stderr_str()));
    if out.rc != 0 {
        r.failed = true;
        r.msg = Some(format!("'{cmd}' failed: {}", out.stderr_str().trim()));
    }
    Ok(r)
}

/// What apply needs: the changes and the arguments (options, purge).
pub struct AptWork {
    args: AptArgs,
    changes: AptChanges,
}

impl PlanApply for Apt {
    type Args = AptArgs;
    type Observed = AptObserved;
    type Changes = AptWork;

    fn observe<'a>(
        &'a self,
        a: &'a AptArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<AptObserved, String>> {
        Box::pin(async move {
            let names = a.name.clone().unwrap_or_default();
            check_names(&names)?;
            apt_get_options(a)?;
            let out = ctx
                .conn
                .run_script(&observe_script(&names), ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(out.stderr_str().trim().to_string());
            }
            Ok(parse_observed(&out.stdout_str(), &names))
        })
    }

    fn plan(&self, a: AptArgs, o: AptObserved, _: &ModuleCtx<'_>) -> Result<Plan<AptWork>, String> {
        let (c, r) = match plan_apt(&a, &o) {
            Ok(p) => p,
            Err(msg) => return Ok(Plan::unchanged(ModuleResult::failed(msg))),
        };
        let nothing = !c.update_cache && c.install.is_empty() && c.remove.is_empty();
        Ok(Plan {
            result: r,
            changes: (!nothing).then_some(AptWork {
                args: a,
                changes: c,
            }),
        })
    }

    fn apply<'a>(
        &'a self,
        work: AptWork,
        planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move { apply_apt(&work.args, work.changes, planned, ctx).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(stamp: i64, now: i64, pkgs: &[(&str, &str, &str, Option<&str>)]) -> AptObserved {
        AptObserved {
            stamp,
            now,
            pkgs: pkgs
                .iter()
                .map(|(n, s, v, c)| {
                    (
                        n.to_string(),
                        PkgState {
                            status: s.to_string(),
                            version: v.to_string(),
                            candidate: c.map(str::to_string),
                        },
                    )
                })
                .collect(),
        }
    }

    fn args(names: &[&str], state: AptState) -> AptArgs {
        AptArgs {
            name: Some(names.iter().map(|s| s.to_string()).collect()),
            state,
            ..Default::default()
        }
    }

    #[test]
    fn present_latest_absent() {
        let o = obs(
            100,
            200,
            &[
                ("tree", "ii", "2.1.0-1", Some("2.1.0-1")),
                ("hello", "", "", Some("2.10-3")),
                ("old", "ii", "1.0", Some("1.1")),
                ("gone", "rc", "1.0", Some("1.0")),
            ],
        );
        let (c, r) = plan_apt(&args(&["tree", "hello"], AptState::Present), &o).unwrap();
        assert_eq!(c.install, vec!["hello"]);
        assert!(r.changed);
        let (c, r) = plan_apt(&args(&["tree"], AptState::Present), &o).unwrap();
        assert!(c.install.is_empty() && !r.changed);
        let (c, _) = plan_apt(&args(&["tree", "old"], AptState::Latest), &o).unwrap();
        assert_eq!(c.install, vec!["old"]);
        let (c, _) = plan_apt(&args(&["tree", "gone", "hello"], AptState::Absent), &o).unwrap();
        assert_eq!(c.remove, vec!["tree"]);
        let mut p = args(&["gone"], AptState::Absent);
        p.purge = Some(true);
        let (c, _) = plan_apt(&p, &o).unwrap();
        assert_eq!(c.remove, vec!["gone"]);
    }

    #[test]
    fn unknown_package_and_cache() {
        let o = obs(100, 10_000, &[("nope", "", "", None)]);
        assert_eq!(
            plan_apt(&args(&["nope"], AptState::Present), &o).unwrap_err(),
            "No package matching 'nope' is available"
        );
        let cache_only = AptArgs {
            update_cache: Some(true),
            cache_valid_time: Some(3600),
            ..Default::default()
        };
        let (c, r) = plan_apt(&cache_only, &o).unwrap();
        assert!(c.update_cache && r.changed);
        let fresh = obs(190, 200, &[]);
        let (c, r) = plan_apt(&cache_only, &fresh).unwrap();
        assert!(!c.update_cache && !r.changed);
        assert!(
            valid_name("libc6:amd64")
                && valid_name("g++")
                && !valid_name("a;b")
                && !valid_name("X")
        );
        assert!(
            check_names(&["pkg=1.0".into()])
                .unwrap_err()
                .contains("not supported yet")
        );
    }

    #[test]
    fn parses_dpkg_and_policy() {
        let out = format!(
            "{MARK}stamp\t100\t200\n{MARK}dpkg\ttree\tii \t2.1.0-1\nhello:\n  Installed: (none)\n  Candidate: 2.10-3\n  Version table:\ntree:\n  Installed: 2.1.0-1\n  Candidate: 2.1.0-1\n"
        );
        let o = parse_observed(&out, &["tree".into(), "hello".into(), "nope".into()]);
        assert_eq!(o.stamp, 100);
        assert_eq!(o.pkgs["tree"].status, "ii");
        assert_eq!(o.pkgs["hello"].candidate.as_deref(), Some("2.10-3"));
        assert!(o.pkgs["nope"].candidate.is_none());
    }
}
