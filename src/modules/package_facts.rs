//! `package_facts`: the installed packages as the fact `packages` (name to a
//! list of `{name, version, arch, category, origin, source}`), as Ansible's
//! `ansible.builtin.package_facts` reports them through python-apt, read here
//! with `dpkg-query` and the apt lists (no Python on the host): `origin` is
//! the `Origin` of the first list's Release that has the installed version,
//! empty when none has it. It changes nothing, so check mode runs it too.
//!
//! Supported: `manager` (`auto`, `apt`), `strategy`. Not supported yet: the
//! other package managers (rpm, pacman, apk, portage, pkg, pkg_info).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_opt_list, de_opt_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageFactsArgs {
    #[serde(default, deserialize_with = "de_opt_list")]
    pub manager: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub strategy: Option<String>,
}

pub struct PackageFacts;

fn check_manager(m: &[String]) -> Result<(), String> {
    for name in m {
        if name != "auto" && name != "apt" {
            return Err(format!(
                "package_facts: manager '{name}' is not supported yet by deployer (auto, apt)"
            ));
        }
    }
    Ok(())
}

impl Module for PackageFacts {
    fn name(&self) -> &'static str {
        "package_facts"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.package_facts"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PackageFactsArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        match super::args::literal(args, "manager") {
            Some(Json::String(s)) => check_manager(std::slice::from_ref(s))?,
            Some(Json::Array(a)) => check_manager(
                &a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>(),
            )?,
            _ => {}
        }
        if let Some(Json::String(s)) = super::args::literal(args, "strategy")
            && s != "first"
            && s != "all"
        {
            return Err(format!(
                "value of strategy must be one of: first, all, got: {s}"
            ));
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Installed packages (`I` lines) and the lists that carry their versions
/// (`O` lines, with the list's origin and the record's section), in one
/// execution.
const SCRIPT: &str = r#"export LC_ALL=C
command -v dpkg-query >/dev/null 2>&1 || { echo N; exit 0; }
echo "A$(dpkg --print-architecture)"
inst=$(dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\t${Section}\t${db:Status-Status}\n')
printf '%s\n' "$inst" | sed 's/^/I\t/'
for f in /var/lib/apt/lists/*_Packages; do
  [ -f "$f" ] || continue
  base=${f##*/}
  rel=${base%%_dists_*}_dists_$(printf '%s' "${base#*_dists_}" | cut -d_ -f1)_
  o=
  for r in "/var/lib/apt/lists/${rel}InRelease" "/var/lib/apt/lists/${rel}Release"; do
    if [ -f "$r" ]; then o=$(sed -n 's/^Origin: *//p' "$r" | head -n1); break; fi
  done
  printf '%s\n' "$inst" | awk -F'\t' -v o="$o" '
    NR == FNR { k[$1 "\t" $2 "\t" $3] = 1; next }
    /^Package: / { p = $0; sub(/^Package: */, "", p) }
    /^Version: / { v = $0; sub(/^Version: */, "", v) }
    /^Architecture: / { a = $0; sub(/^Architecture: */, "", a) }
    /^Section: / { s = $0; sub(/^Section: */, "", s) }
    /^$/ { if (p != "" && ((p "\t" v "\t" a) in k)) print "O\t" p "\t" v "\t" a "\t" o "\t" s; p = ""; s = "" }
    END { if (p != "" && ((p "\t" v "\t" a) in k)) print "O\t" p "\t" v "\t" a "\t" o "\t" s }
  ' - "$f"
done
"#;

/// The fact from the script's output: pure.
pub fn parse(out: &str) -> Result<Map<String, Json>, String> {
    if out.lines().next() == Some("N") {
        return Err(
            "package_facts: hosts without dpkg are not supported yet by deployer (apt only)".into(),
        );
    }
    let native = out
        .lines()
        .find_map(|l| l.strip_prefix('A'))
        .unwrap_or_default()
        .to_string();
    // (name, version, arch) -> (origin, section) of the first list that
    // carries the installed version.
    type Listed = std::collections::HashMap<(String, String, String), (String, String)>;
    let mut listed = Listed::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() == 6 && f[0] == "O" {
            listed
                .entry((f[1].into(), f[2].into(), f[3].into()))
                .or_insert_with(|| (f[4].to_string(), f[5].to_string()));
        }
    }
    let mut packages = Map::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() != 6 || f[0] != "I" {
            continue;
        }
        let (name, version, arch, section, status) = (f[1], f[2], f[3], f[4], f[5]);
        // python-apt's `is_installed`: an installed version exists.
        if status == "not-installed" || status == "config-files" || status.is_empty() {
            continue;
        }
        let key = if arch == native || arch == "all" {
            name.to_string()
        } else {
            format!("{name}:{arch}")
        };
        // python-apt reads the version's section from apt's cache, where a
        // list's record wins over dpkg's status (lsb-base: misc, not oldlibs).
        let (origin, section) =
            match listed.get(&(name.to_string(), version.to_string(), arch.to_string())) {
                Some((o, s)) if !s.is_empty() => (o.clone(), s.clone()),
                Some((o, _)) => (o.clone(), section.to_string()),
                None => (String::new(), section.to_string()),
            };
        let entry = json!({
            "name": key,
            "version": version,
            "arch": arch,
            "category": section,
            "origin": origin,
            "source": "apt",
        });
        match packages.get_mut(&key) {
            Some(Json::Array(list)) => list.push(entry),
            _ => {
                packages.insert(key, json!([entry]));
            }
        }
    }
    Ok(packages)
}

impl PlanApply for PackageFacts {
    type Args = PackageFactsArgs;
    type Observed = String;
    type Changes = std::convert::Infallible;

    fn observe<'a>(
        &'a self,
        a: &'a PackageFactsArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            check_manager(a.manager.as_deref().unwrap_or_default())?;
            let out = ctx
                .conn
                .run_script(SCRIPT, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(format!(
                    "package_facts: listing the packages failed: {}",
                    out.stderr_str().trim()
                ));
            }
            Ok(out.stdout_str())
        })
    }

    fn plan(
        &self,
        _: PackageFactsArgs,
        out: String,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<std::convert::Infallible>, String> {
        let mut facts = Map::new();
        facts.insert("packages".into(), Json::Object(parse(&out)?));
        Ok(Plan::unchanged(super::setup::facts_result(ctx, facts)))
    }

    fn apply<'a>(
        &'a self,
        changes: std::convert::Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        super::misc::nothing_to_apply(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_as_python_apt_lists_them() {
        let out = "Aamd64\nI\tbash\t5.2\tamd64\tshells\tinstalled\nI\tgone\t1\tamd64\tutils\tconfig-files\n\
                   I\tlibc6\t2.36\ti386\tlibs\tinstalled\nI\ttzdata\t2024a\tall\tlocaldata\tinstalled\n\
                   I\tlsb-base\t11.6\tall\toldlibs\tinstalled\n\
                   O\ttzdata\t2024a\tall\tDebian\t\n\
                   O\tlsb-base\t11.6\tall\tDebian\tmisc\nO\tlsb-base\t11.6\tall\tOther\toldlibs\n";
        let p = parse(out).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p["lsb-base"][0]["category"], "misc");
        assert_eq!(p["lsb-base"][0]["origin"], "Debian");
        assert_eq!(p["bash"][0]["origin"], "");
        assert_eq!(p["libc6:i386"][0]["name"], "libc6:i386");
        assert_eq!(p["tzdata"][0]["origin"], "Debian");
        assert_eq!(p["tzdata"][0]["category"], "localdata");
        assert!(parse("N\n").is_err());
    }
}
