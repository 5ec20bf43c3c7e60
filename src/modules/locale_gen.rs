//! `locale_gen`: compiled locales, as `community.general.locale_gen` manages
//! them on glibc systems: a locale must be listed in
//! `/usr/share/i18n/SUPPORTED` (or already be compiled); it is present when
//! `locale -a` lists it (encodings compared as the collection normalizes
//! them). A change uncomments (`present`) or comments out (`absent`) its line
//! in `/etc/locale.gen` (edited with the collection's expression, written with
//! [`RemoteWrite`]) and runs `locale-gen`.
//!
//! Supported: `name` (a list), `state`. Returns `name`, `mechanism`,
//! `ubuntu_mode`. Check mode predicts the change (the collection's reports
//! none in check mode). Not supported yet:
//! hosts without `/etc/locale.gen` that use Ubuntu's legacy
//! `/var/lib/locales/supported.d` (the task fails saying so).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::de_opt_list;
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::write::RemoteWrite;

const ETC_LOCALE_GEN: &str = "/etc/locale.gen";

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
pub enum LocaleState {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LocaleGenArgs {
    #[serde(deserialize_with = "de_list")]
    pub name: Vec<String>,
    #[serde(default)]
    pub state: LocaleState,
}

fn de_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    de_opt_list(d)?.ok_or_else(|| serde::de::Error::custom("expected a list of locales, got null"))
}

pub struct LocaleGen;

impl Module for LocaleGen {
    fn name(&self) -> &'static str {
        "locale_gen"
    }
    fn fqcn(&self) -> &'static str {
        "community.general.locale_gen"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<LocaleGenArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") {
            return Err("missing required argument: name".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// The collection's `fix_case`: encodings as `locale -a` may spell them.
fn fix_case(name: &str) -> String {
    let mut n = name.to_string();
    for (s, r) in [
        (".utf8", ".UTF-8"),
        (".eucjp", ".EUC-JP"),
        (".iso885915", ".ISO-8859-15"),
        (".cp1251", ".CP1251"),
        (".koi8r", ".KOI8-R"),
        (".armscii8", ".ARMSCII-8"),
        (".euckr", ".EUC-KR"),
        (".gbk", ".GBK"),
        (".gb18030", ".GB18030"),
        (".euctw", ".EUC-TW"),
    ] {
        n = n.replace(s, r);
    }
    n
}

/// What was read on the host.
pub enum Observed {
    /// A host this module cannot manage: the message.
    Unusable(String),
    Glibc {
        /// `/etc/locale.gen`.
        locale_gen: String,
        /// `/usr/share/i18n/SUPPORTED`.
        supported: String,
        /// `locale -a`.
        compiled: Vec<String>,
    },
}

fn not_present(names: &[String], compiled: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| !compiled.iter().any(|c| fix_case(n) == fix_case(c)))
        .cloned()
        .collect()
}

/// `set_locale_glibc`: each line matching `^#?\s*NAME (charset)` becomes
/// `NAME charset` (or `# NAME charset`).
fn edit_locale_gen(text: &str, names: &[String], enable: bool) -> Result<String, String> {
    let mut res = Vec::new();
    for n in names {
        let re = regex::Regex::new(&format!(r"^#?\s*{} (?P<charset>.+)", regex::escape(n)))
            .map_err(|e| format!("locale_gen: {e}"))?;
        res.push((re, n));
    }
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let mut body = body.to_string();
        for (re, n) in &res {
            let rep = if enable {
                format!("{n} ${{charset}}")
            } else {
                format!("# {n} ${{charset}}")
            };
            body = re.replace(&body, rep.as_str()).into_owned();
        }
        out.push_str(&body);
        out.push_str(nl);
    }
    Ok(out)
}

impl PlanApply for LocaleGen {
    type Args = LocaleGenArgs;
    type Observed = Observed;
    type Changes = String;

    fn observe<'a>(
        &'a self,
        _: &'a LocaleGenArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Observed, String>> {
        Box::pin(async move {
            let script = "if [ -e /etc/locale.gen ]; then echo glibc; elif [ -e /var/lib/locales/supported.d ]; then echo legacy; exit 0; else echo none; exit 0; fi\n\
                          base64 -w0 < /etc/locale.gen; echo\n\
                          base64 -w0 < /usr/share/i18n/SUPPORTED 2>/dev/null; echo\n\
                          LC_ALL=C locale -a\n";
            let out = ctx
                .conn
                .run_script(script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(format!(
                    "locale_gen: reading the locales failed: {}",
                    out.stderr_str().trim()
                ));
            }
            let text = out.stdout_str();
            let mut lines = text.lines();
            let d = |s: Option<&str>| -> Result<String, String> {
                base64::engine::general_purpose::STANDARD
                    .decode(s.unwrap_or("").trim())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| format!("locale_gen: bad read: {e}"))
            };
            Ok(match lines.next() {
                Some("glibc") => Observed::Glibc {
                    locale_gen: d(lines.next())?,
                    supported: d(lines.next())?,
                    compiled: lines.map(str::to_string).collect(),
                },
                Some("legacy") => Observed::Unusable(
                    "locale_gen: hosts with /var/lib/locales/supported.d and no /etc/locale.gen (Ubuntu's legacy mechanism) are not supported yet by deployer".into(),
                ),
                _ => Observed::Unusable(
                    "/var/lib/locales/supported.d and /etc/locale.gen are missing. Is the package \"locales\" installed?".into(),
                ),
            })
        })
    }

    fn plan(
        &self,
        a: LocaleGenArgs,
        o: Observed,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<String>, String> {
        let (locale_gen, supported, compiled) = match o {
            Observed::Unusable(m) => return Ok(Plan::unchanged(ModuleResult::failed(m))),
            Observed::Glibc {
                locale_gen,
                supported,
                compiled,
            } => (locale_gen, supported, compiled),
        };
        let avail = regex::Regex::new(r"^\s*#?\s*(?P<locale>\S+[\._\S]+) (?P<charset>\S+)\s*$")
            .map_err(|e| e.to_string())?;
        let listed: Vec<&str> = supported
            .lines()
            .filter_map(|l| avail.captures(l))
            .filter_map(|c| c.name("locale").map(|m| m.as_str()))
            .collect();
        let unknown: Vec<String> = a
            .name
            .iter()
            .filter(|n| !listed.contains(&n.as_str()))
            .cloned()
            .collect();
        let unknown = not_present(&unknown, &compiled);
        let mut r = ModuleResult::ok();
        r.data.insert("name".into(), json!(a.name));
        r.data.insert("mechanism".into(), json!("glibc"));
        r.data.insert("ubuntu_mode".into(), json!(false));
        if !unknown.is_empty() {
            r.failed = true;
            r.msg = Some(format!(
                "The following locales you have entered are not available on your system: {}",
                unknown.join(", ")
            ));
            return Ok(Plan::unchanged(r));
        }
        let present = not_present(&a.name, &compiled).is_empty();
        let want = a.state == LocaleState::Present;
        if present == want {
            return Ok(Plan::unchanged(r));
        }
        r.changed = true;
        let new = edit_locale_gen(&locale_gen, &a.name, want)?;
        if ctx.diff && new != locale_gen {
            r.diffs.push(FileDiff {
                path: ETC_LOCALE_GEN.into(),
                before: Some(locale_gen.clone()),
                after: Some(new.clone()),
                attributes: Vec::new(),
                note: None,
            });
        }
        Ok(Plan {
            result: r,
            changes: Some(new),
        })
    }

    fn apply<'a>(
        &'a self,
        new: String,
        r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let script = format!(
                "{}{}\nlocale-gen 2>&1\n",
                ctx.release_save(ETC_LOCALE_GEN),
                RemoteWrite::new(ETC_LOCALE_GEN, new.as_bytes())
                    .keep_if_same(true)
                    .script()?
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            ctx.release_saved(ETC_LOCALE_GEN, &out.stdout_str());
            if out.rc != 0 {
                return Ok(ModuleResult::failed(format!(
                    "locale_gen: writing {ETC_LOCALE_GEN} or running locale-gen failed: {}{}",
                    out.stdout_str().trim(),
                    out.stderr_str().trim()
                )));
            }
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_gen_lines_edit_as_the_collection() {
        let text = "# de_DE.UTF-8 UTF-8\n#  fr_FR ISO-8859-1\nen_US.UTF-8 UTF-8\n";
        assert_eq!(
            edit_locale_gen(text, &["de_DE.UTF-8".into(), "fr_FR".into()], true).expect("edit"),
            "de_DE.UTF-8 UTF-8\nfr_FR ISO-8859-1\nen_US.UTF-8 UTF-8\n"
        );
        assert_eq!(
            edit_locale_gen(text, &["en_US.UTF-8".into()], false).expect("edit"),
            "# de_DE.UTF-8 UTF-8\n#  fr_FR ISO-8859-1\n# en_US.UTF-8 UTF-8\n"
        );
        assert_eq!(fix_case("de_DE.utf8"), "de_DE.UTF-8");
    }
}
