//! `pam_limits` (`community.general.pam_limits`): one `domain type item
//! value` line of `/etc/security/limits.conf` (or `dest`), edited line for
//! line as the collection's module does (its tab-separated new line, its
//! comment handling, `use_max`/`use_min`). The file is read and written
//! through the path `lineinfile` uses (observed in the batch,
//! [`crate::connection::write::RemoteWrite`], `--diff`, check mode, backup).
//! Unlike the collection, an unchanged file is not rewritten.
//!
//! Supported: `domain`, `limit_type`, `limit_item`, `value`, `use_max`,
//! `use_min`, `backup`, `dest`, `comment`.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::args::{de_bool, de_opt_string, de_string};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::text_edit::TextEdit;
use super::{ModuleCtx, parse_args};

const ITEMS: &[&str] = &[
    "core",
    "data",
    "fsize",
    "memlock",
    "nofile",
    "rss",
    "stack",
    "cpu",
    "nproc",
    "as",
    "maxlogins",
    "maxsyslogins",
    "priority",
    "locks",
    "sigpending",
    "msgqueue",
    "nice",
    "rtprio",
    "chroot",
];

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LimitType {
    #[serde(rename = "soft")]
    Soft,
    #[serde(rename = "hard")]
    Hard,
    #[serde(rename = "-")]
    Both,
}

impl LimitType {
    fn as_str(self) -> &'static str {
        match self {
            LimitType::Soft => "soft",
            LimitType::Hard => "hard",
            LimitType::Both => "-",
        }
    }
}

fn default_dest() -> String {
    "/etc/security/limits.conf".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PamLimitsArgs {
    #[serde(deserialize_with = "de_string")]
    pub domain: String,
    pub limit_type: LimitType,
    #[serde(deserialize_with = "de_string")]
    pub limit_item: String,
    #[serde(deserialize_with = "de_string")]
    pub value: String,
    #[serde(default, deserialize_with = "de_bool")]
    pub use_max: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub use_min: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default = "default_dest", deserialize_with = "de_string")]
    pub dest: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub comment: Option<String>,
}

pub struct PamLimits;

impl Module for PamLimits {
    fn name(&self) -> &'static str {
        "pam_limits"
    }
    fn fqcn(&self) -> &'static str {
        "community.general.pam_limits"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PamLimitsArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        for k in ["domain", "limit_type", "limit_item", "value"] {
            if !args.contains_key(k) {
                return Err(format!("missing required argument: {k}"));
            }
        }
        if let Some(Json::String(i)) = super::args::literal(args, "limit_item")
            && !ITEMS.contains(&i.as_str())
        {
            return Err(format!(
                "limit_item: value of limit_item must be one of: {}, got: {i}",
                ITEMS.join(", ")
            ));
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a: PamLimitsArgs = parse_args("pam_limits", args)?;
            if !ITEMS.contains(&a.limit_item.as_str()) {
                return Err(format!(
                    "value of limit_item must be one of: {}, got: {}",
                    ITEMS.join(", "),
                    a.limit_item
                ));
            }
            if a.use_max && a.use_min {
                return Err("Cannot use use_min and use_max at the same time.".into());
            }
            valid_value(&a.limit_item, &a.value, "")?;
            let attrs = super::files::Attrs::from_json(None, None, None)?;
            let dest = a.dest.clone();
            let mut r = super::files::text_module(ctx, &dest, attrs, a.backup, None, |e| {
                plan_limits(e, &a).map(|(edit, _)| edit)
            })
            .await?;
            // Ansible's result: changed, msg (no dest, no checksum).
            r.data.remove("dest");
            r.data.remove("checksum");
            Ok(r)
        })
    }
}

fn is_digits(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())
}

fn valid_value(item: &str, value: &str, prefix: &str) -> Result<(), String> {
    if item == "nice" || item == "priority" {
        if !value
            .trim()
            .parse::<i64>()
            .is_ok_and(|v| (-20..=19).contains(&v))
        {
            return Err(format!(
                "{prefix} Value of '{value}' for item '{item}' is invalid. Value must be a number in the range -20 to 19 inclusive. Refer to the limits.conf(5) manual pages for more details."
            ));
        }
    } else if !(["unlimited", "infinity", "-1"].contains(&value) || is_digits(value)) {
        return Err(format!(
            "{prefix} Value of '{value}' for item '{item}' is invalid. Value must either be 'unlimited', 'infinity' or -1, all of which indicate no limit, or a limit of 0 or larger. Refer to the limits.conf(5) manual pages for more details."
        ));
    }
    Ok(())
}

/// The edit and the module's `msg` (the line written or found): pure.
pub fn plan_limits(
    existing: Option<&str>,
    a: &PamLimitsArgs,
) -> Result<(TextEdit, String), String> {
    let content = existing.unwrap_or("");
    let mut changed = existing.is_none();
    let mut new_comment = a.comment.clone().unwrap_or_default();
    let mut message = String::new();
    let mut out = String::new();
    let mut found = false;
    let mut new_value = a.value.clone();
    let ltype = a.limit_type.as_str();
    for line in content.split_inclusive('\n') {
        if line.starts_with('#') {
            out.push_str(line);
            continue;
        }
        let normalized = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if normalized.is_empty() {
            out.push_str(line);
            continue;
        }
        let fields_part = normalized.split('#').next().unwrap_or("").trim_end();
        let old_comment = line.split_once('#').map(|(_, c)| c).unwrap_or("");
        if new_comment.is_empty() {
            new_comment = old_comment.to_string();
        }
        let fields: Vec<&str> = fields_part.split(' ').collect();
        if fields.len() != 4 {
            out.push_str(line);
            continue;
        }
        let (ld, lt, li, actual) = (fields[0], fields[1], fields[2], fields[3]);
        valid_value(
            li,
            actual,
            &format!("Invalid configuration found in '{}'.", a.dest),
        )?;
        if ld == a.domain && lt == ltype && li == a.limit_item {
            found = true;
            if a.value == actual {
                message = line.to_string();
                out.push_str(line);
                continue;
            }
            let (actual_unl, value_unl) = if lt != "nice" && lt != "priority" {
                (
                    ["unlimited", "infinity", "-1"].contains(&actual),
                    ["unlimited", "infinity", "-1"].contains(&a.value.as_str()),
                )
            } else {
                (false, false)
            };
            let int = |v: &str| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("invalid literal for int() with base 10: '{v}'"))
            };
            if a.use_max {
                new_value = if actual_unl {
                    actual.to_string()
                } else if value_unl {
                    a.value.clone()
                } else {
                    int(&a.value)?.max(int(actual)?).to_string()
                };
            }
            if a.use_min {
                new_value = if actual_unl && value_unl {
                    actual.to_string()
                } else if actual_unl {
                    a.value.clone()
                } else if value_unl {
                    actual.to_string()
                } else {
                    int(&a.value)?.min(int(actual)?).to_string()
                };
            }
            if new_value != actual {
                changed = true;
                if !new_comment.is_empty() {
                    new_comment = format!("\t#{new_comment}");
                }
                let nl = format!(
                    "{}\t{ltype}\t{}\t{new_value}{new_comment}\n",
                    a.domain, a.limit_item
                );
                message = nl.clone();
                out.push_str(&nl);
            } else {
                message = line.to_string();
                out.push_str(line);
            }
        } else {
            out.push_str(line);
        }
    }
    if !found {
        changed = true;
        if !new_comment.is_empty() {
            new_comment = format!("\t#{new_comment}");
        }
        let nl = format!(
            "{}\t{ltype}\t{}\t{new_value}{new_comment}\n",
            a.domain, a.limit_item
        );
        message = nl.clone();
        out.push_str(&nl);
    }
    let changed = changed && out != content || existing.is_none();
    Ok((
        TextEdit {
            content: out,
            changed,
            msg: message.clone(),
        },
        message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(domain: &str, t: LimitType, item: &str, value: &str) -> PamLimitsArgs {
        PamLimitsArgs {
            domain: domain.into(),
            limit_type: t,
            limit_item: item.into(),
            value: value.into(),
            use_max: false,
            use_min: false,
            backup: false,
            dest: "/etc/security/limits.conf".into(),
            comment: None,
        }
    }

    #[test]
    fn edits_as_the_collection() {
        let file = "# limits\n*\tsoft\tcore\t0\n@adm hard nofile 1024\n";
        let (e, msg) =
            plan_limits(Some(file), &args("@adm", LimitType::Hard, "nofile", "4096")).unwrap();
        assert!(e.changed);
        assert_eq!(
            e.content,
            "# limits\n*\tsoft\tcore\t0\n@adm\thard\tnofile\t4096\n"
        );
        assert_eq!(msg, "@adm\thard\tnofile\t4096\n");
        let (e, _) = plan_limits(
            Some(&e.content),
            &args("@adm", LimitType::Hard, "nofile", "4096"),
        )
        .unwrap();
        assert!(!e.changed);
        let mut m = args("@adm", LimitType::Hard, "nofile", "100");
        m.use_max = true;
        let (e, _) = plan_limits(Some("@adm hard nofile 1024\n"), &m).unwrap();
        assert!(!e.changed);
        let (e, _) =
            plan_limits(None, &args("deploy", LimitType::Both, "nproc", "unlimited")).unwrap();
        assert!(e.changed);
        assert_eq!(e.content, "deploy\t-\tnproc\tunlimited\n");
        assert!(valid_value("nofile", "x", "").is_err());
        assert!(valid_value("nice", "-5", "").is_ok());
    }
}
