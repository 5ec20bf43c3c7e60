//! `hostname` (`ansible.builtin.hostname`): the host's name, with the
//! strategy Ansible's module picks on Debian.
//!
//! Strategies: `systemd` (also `use: debian`, which Ansible maps to it, and
//! what it picks on a host that systemd runs) reads and sets the static
//! name (`hostnamectl --pretty --static set-hostname`, first) and the
//! transient one (`hostnamectl --transient set-hostname`); the file strategy
//! (a Debian-family host without systemd, `use` unset) reads and writes
//! `/etc/hostname` only, as Ansible's `FileStrategy` does (the running name
//! is not changed). `changed` when either name differs. Returns `name`,
//! `ansible_facts` (`ansible_hostname`, `ansible_nodename`, `ansible_fqdn`
//! and `ansible_domain`, the fqdn found as Python's `socket.getfqdn()` finds
//! it) and, when changed, `diff`.
//!
//! Not supported yet: `use` alpine, freebsd, macos, openbsd, openrc,
//! redhat, sles, solaris, and hosts of other distributions without systemd.
//! `use: generic` fails as Ansible's does (its generic strategy cannot read a
//! name).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{check_choice, de_opt_string, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostnameArgs {
    #[serde(deserialize_with = "de_string")]
    pub name: String,
    #[serde(default, rename = "use", deserialize_with = "de_opt_string")]
    pub use_: Option<String>,
}

pub struct Hostname;

const USES: &[&str] = &[
    "alpine", "debian", "freebsd", "generic", "macos", "macosx", "darwin", "openbsd", "openrc",
    "redhat", "sles", "solaris", "systemd",
];

/// Distributions whose hosts without systemd Ansible gives `FileStrategy`
/// (`/etc/hostname`), by `/etc/os-release` `ID`.
const FILE_DISTRIBUTIONS: &[&str] = &[
    "debian",
    "ubuntu",
    "kali",
    "parrot",
    "cumulus-linux",
    "kylin",
];

impl Module for Hostname {
    fn name(&self) -> &'static str {
        "hostname"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.hostname"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<HostnameArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        check_choice(args, "use", USES)?;
        if let Some(Json::String(u)) = super::args::literal(args, "use") {
            strategy_for_use(u)?;
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Systemd,
    File,
    Generic,
}

/// The strategy a `use` names, or why deployer refuses it.
fn strategy_for_use(u: &str) -> Result<Strategy, String> {
    match u {
        "systemd" | "debian" => Ok(Strategy::Systemd),
        "generic" => Ok(Strategy::Generic),
        other if USES.contains(&other) => Err(format!(
            "hostname: use={other} is not supported yet by deployer (systemd, debian and generic are)"
        )),
        other => Err(format!(
            "hostname: use must be one of {}, got '{other}'",
            USES.join(", ")
        )),
    }
}

/// What the host says.
pub struct HostnameObserved {
    /// Whether systemd runs the host (Ansible's `is_systemd_managed`).
    systemd: bool,
    /// `/etc/os-release`'s `ID`.
    distribution: String,
    /// `hostnamectl --transient status` (rc, out, err).
    transient: Option<(i32, String, String)>,
    /// `hostnamectl --static status` (rc, out, err).
    static_: Option<(i32, String, String)>,
    /// `hostnamectl`'s path.
    hostnamectl: Option<String>,
    /// `/etc/hostname`, stripped; empty when it is not a file.
    file: String,
    fqdn: String,
}

/// The work `apply` does.
pub struct HostnameWork {
    strategy: Strategy,
    name: String,
    set_permanent: bool,
    set_current: bool,
    hostnamectl: String,
}

/// Prints `F<fqdn>` as Python's `socket.getfqdn()` finds it: the kernel's
/// name resolved to an address, that address's canonical name and aliases,
/// the first holding a dot, else the canonical name; the name itself when
/// either lookup fails.
const FQDN_SCRIPT: &str = r#"n=$(uname -n)
f=$n
a=$(getent ahosts "$n" 2>/dev/null | awk 'NR==1{print $1}')
if [ -n "$a" ]; then
  set -- $(getent hosts "$a" 2>/dev/null | head -n 1)
  if [ $# -ge 2 ]; then
    shift
    f=$1
    for x in "$@"; do case $x in *.*) f=$x; break;; esac; done
  fi
fi
printf 'F%s\n' "$f"
"#;

/// Splits the observe script's output into its sections (`@NAME` lines).
fn sections(text: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut cur: Option<String> = None;
    for line in text.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("@@").map(str::trim_end) {
            cur = Some(name.to_string());
            out.entry(name.to_string()).or_insert_with(String::new);
        } else if let Some(s) = cur.as_ref().and_then(|c| out.get_mut(c)) {
            s.push_str(line);
        }
    }
    out
}

impl PlanApply for Hostname {
    type Args = HostnameArgs;
    type Observed = HostnameObserved;
    type Changes = HostnameWork;

    fn observe<'a>(
        &'a self,
        a: &'a HostnameArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<HostnameObserved, String>> {
        Box::pin(async move {
            if let Some(u) = &a.use_ {
                strategy_for_use(u)?;
            }
            let script = format!(
                "PATH=\"$PATH:/sbin:/usr/sbin:/usr/local/sbin\"\n\
                 t=$(command -v hostnamectl) || t=\n\
                 if command -v systemctl >/dev/null 2>&1 && {{ [ -e /run/systemd/system/ ] || [ -e /dev/.run/systemd/ ] || [ -e /dev/.systemd/ ]; }}; then echo @@systemd; fi\n\
                 echo @@id; (. /etc/os-release 2>/dev/null; printf '%s\\n' \"$ID\")\n\
                 if [ -n \"$t\" ]; then\n\
                   echo @@hostnamectl; printf '%s\\n' \"$t\"\n\
                   for k in transient static; do\n\
                     o=$(\"$t\" --$k status 2>/dev/null); r=$?; echo @@${{k}}_rc; echo $r; echo @@$k; printf '%s\\n' \"$o\"\n\
                     if [ $r -ne 0 ]; then echo @@${{k}}_err; \"$t\" --$k status 2>&1 >/dev/null; fi\n\
                   done\n\
                 fi\n\
                 if [ -f /etc/hostname ]; then echo @@file; cat /etc/hostname; echo; fi\n\
                 echo @@fqdn\n{FQDN_SCRIPT}"
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let s = sections(&out.stdout_str());
            let get = |k: &str| s.get(k).map(|v| v.trim().to_string());
            let cmd = |k: &str| {
                let rc = get(&format!("{k}_rc"))?.parse().ok()?;
                Some((
                    rc,
                    s.get(k).cloned().unwrap_or_default(),
                    s.get(&format!("{k}_err")).cloned().unwrap_or_default(),
                ))
            };
            Ok(HostnameObserved {
                systemd: s.contains_key("systemd"),
                distribution: get("id").unwrap_or_default(),
                transient: cmd("transient"),
                static_: cmd("static"),
                hostnamectl: get("hostnamectl"),
                file: get("file").unwrap_or_default(),
                fqdn: get("fqdn")
                    .and_then(|f| f.strip_prefix('F').map(str::to_string))
                    .unwrap_or_default(),
            })
        })
    }

    fn plan(
        &self,
        a: HostnameArgs,
        o: HostnameObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<HostnameWork>, String> {
        let strategy = match &a.use_ {
            Some(u) => strategy_for_use(u)?,
            None if o.systemd => Strategy::Systemd,
            None if FILE_DISTRIBUTIONS.contains(&o.distribution.as_str()) => Strategy::File,
            None => {
                return Err(format!(
                    "hostname: hosts of '{}' without systemd are not supported yet by deployer",
                    o.distribution
                ));
            }
        };
        let name = a.name;
        let failed = |m: String| Ok(Plan::unchanged(ModuleResult::failed(m)));
        let (current, permanent, hostnamectl) = match strategy {
            Strategy::Generic => {
                return failed(
                    "hostname: use=generic cannot read the host's name (Ansible's generic strategy is not implemented)"
                        .into(),
                );
            }
            Strategy::File => (o.file.clone(), o.file.clone(), String::new()),
            Strategy::Systemd => {
                let Some(t) = o.hostnamectl.clone() else {
                    return failed(
                        "Failed to find required executable \"hostnamectl\" in paths: $PATH:/sbin:/usr/sbin:/usr/local/sbin"
                            .into(),
                    );
                };
                let read = |c: &Option<(i32, String, String)>| -> Result<String, String> {
                    match c {
                        Some((0, out, _)) => Ok(out.trim().to_string()),
                        Some((rc, out, err)) => {
                            Err(format!("Command failed rc={rc}, out={out}, err={err}"))
                        }
                        None => Err("hostname: hostnamectl printed nothing".into()),
                    }
                };
                let current = match read(&o.transient) {
                    Ok(c) => c,
                    Err(m) => return failed(m),
                };
                let permanent = match read(&o.static_) {
                    Ok(p) => p,
                    Err(m) => return failed(m),
                };
                (current, permanent, t)
            }
        };
        let set_permanent = permanent != name;
        // The file strategy's current name is its permanent one, and setting
        // it does nothing.
        let set_current = current != name;
        if strategy == Strategy::Systemd && (set_permanent || set_current) && name.len() > 64 {
            return failed(
                "name cannot be longer than 64 characters on systemd servers, try a shorter name"
                    .into(),
            );
        }
        let changed = set_permanent || set_current;
        let before = if name != current {
            current.clone()
        } else {
            permanent.clone()
        };
        let mut r = result(ctx, &name, &o.fqdn);
        if changed {
            r.changed = true;
            r.data.insert(
                "diff".into(),
                json!({"after": format!("hostname = {name}\n"), "before": format!("hostname = {before}\n")}),
            );
            if ctx.diff {
                r.diffs.push(FileDiff {
                    path: "hostname".into(),
                    before: Some(format!("hostname = {before}\n")),
                    after: Some(format!("hostname = {name}\n")),
                    attributes: Vec::new(),
                    note: None,
                });
            }
        }
        if !changed {
            return Ok(Plan::unchanged(r));
        }
        Ok(Plan {
            result: r,
            changes: Some(HostnameWork {
                strategy,
                name,
                set_permanent,
                set_current,
                hostnamectl,
            }),
        })
    }

    fn apply<'a>(
        &'a self,
        w: HostnameWork,
        mut planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let name = shell_quote(&w.name);
            let mut steps = Vec::new();
            match w.strategy {
                Strategy::Systemd => {
                    let t = shell_quote(&w.hostnamectl);
                    if w.set_permanent {
                        steps.push(format!("{t} --pretty --static set-hostname {name}"));
                    }
                    if w.set_current {
                        steps.push(format!("{t} --transient set-hostname {name}"));
                    }
                }
                // A new file renamed over the old one: no moment with a
                // partial name, no link followed.
                Strategy::File => steps.push(format!(
                    "tmp=$(mktemp /etc/.hostname.XXXXXX) && printf '%s\\n' {name} > \"$tmp\" && chmod 0644 \"$tmp\" && mv -f \"$tmp\" /etc/hostname || {{ r=$?; rm -f \"$tmp\"; exit $r; }}"
                )),
                Strategy::Generic => {}
            }
            for step in steps {
                let out = ctx
                    .conn
                    .run_script(&format!("{step}\n"), ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                if out.rc != 0 {
                    return Ok(ModuleResult::failed(match w.strategy {
                        Strategy::File => {
                            format!("failed to update hostname: {}", out.stderr_str().trim())
                        }
                        _ => format!(
                            "Command failed rc={}, out={}, err={}",
                            out.rc,
                            out.stdout_str(),
                            out.stderr_str()
                        ),
                    }));
                }
            }
            let out = ctx
                .conn
                .run_script(FQDN_SCRIPT, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let fqdn = out
                .stdout_str()
                .lines()
                .find_map(|l| l.strip_prefix('F'))
                .unwrap_or_default()
                .to_string();
            let facts = facts(&w.name, &fqdn);
            planned
                .data
                .insert("ansible_facts".into(), Json::Object(facts.clone()));
            set_facts(ctx, &mut planned, &facts);
            Ok(planned)
        })
    }
}

/// The facts the module returns.
fn facts(name: &str, fqdn: &str) -> Map<String, Json> {
    let mut f = Map::new();
    f.insert(
        "ansible_hostname".into(),
        json!(name.split('.').next().unwrap_or_default()),
    );
    f.insert("ansible_nodename".into(), json!(name));
    f.insert("ansible_fqdn".into(), json!(fqdn));
    f.insert(
        "ansible_domain".into(),
        json!(fqdn.split_once('.').map(|x| x.1).unwrap_or_default()),
    );
    f
}

/// Sets the facts as Ansible does with a module's `ansible_*` facts: each a
/// host variable, and in `ansible_facts` without the prefix.
fn set_facts(ctx: &ModuleCtx<'_>, r: &mut ModuleResult, facts: &Map<String, Json>) {
    let mut merged = ctx
        .vars
        .lookup("ansible_facts")
        .filter(|v| !v.is_undefined())
        .and_then(|v| crate::vars::value_to_json(&v).ok())
        .and_then(|j| j.as_object().cloned())
        .unwrap_or_default();
    let _ = ctx.vars.take_error();
    for (k, v) in facts {
        merged.insert(
            k.strip_prefix("ansible_").unwrap_or(k).to_string(),
            v.clone(),
        );
        r.facts.insert(k.clone(), v.clone());
    }
    r.facts.insert("ansible_facts".into(), Json::Object(merged));
}

/// The result before any change: `name` and the facts.
fn result(ctx: &ModuleCtx<'_>, name: &str, fqdn: &str) -> ModuleResult {
    let mut r = ModuleResult::ok();
    r.data.insert("name".into(), json!(name));
    let f = facts(name, fqdn);
    r.data
        .insert("ansible_facts".into(), Json::Object(f.clone()));
    set_facts(ctx, &mut r, &f);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_shaped_as_ansible_shapes_them() {
        let f = facts("web1.example.test", "web1.example.test");
        assert_eq!(f["ansible_hostname"], "web1");
        assert_eq!(f["ansible_nodename"], "web1.example.test");
        assert_eq!(f["ansible_domain"], "example.test");
        assert_eq!(facts("db", "db")["ansible_domain"], "");
    }

    #[test]
    fn strategies_follow_use() {
        assert_eq!(strategy_for_use("debian"), Ok(Strategy::Systemd));
        assert_eq!(strategy_for_use("systemd"), Ok(Strategy::Systemd));
        assert_eq!(strategy_for_use("generic"), Ok(Strategy::Generic));
        assert!(
            strategy_for_use("redhat")
                .unwrap_err()
                .contains("not supported yet by deployer")
        );
        assert!(strategy_for_use("plan9").is_err());
    }

    #[test]
    fn output_sections_are_split() {
        let s = sections("@@a\nx\ny\n@@b\n@@c\nz\n");
        assert_eq!(s["a"], "x\ny\n");
        assert_eq!(s["b"], "");
        assert_eq!(s["c"], "z\n");
    }
}
