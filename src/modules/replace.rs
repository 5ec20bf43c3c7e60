//! `replace`: every match of a regular expression in a file replaced, as
//! Ansible's `ansible.builtin.replace` does (`re.subn` with `re.MULTILINE`,
//! optionally only in the section between `after` and `before`, found with
//! `re.DOTALL`). The file is read and written through the same path as
//! `lineinfile` (observed in the batch, written with
//! [`crate::connection::write::RemoteWrite`], `--diff`, check mode, backup,
//! validate, owner/group/mode).
//!
//! Patterns follow Python's `re` over bytes (the translation `lineinfile`
//! uses): `\w`, `\d`, `\s` are ASCII classes, where Python's `str` patterns
//! would also match other Unicode letters and digits.
//!
//! Supported: `path` (`dest`, `destfile`, `name`), `regexp`, `replace`,
//! `after`, `before`, `backup`, `validate`, `encoding` (utf-8 only), `owner`,
//! `group`, `mode`. Not supported yet: other encodings, the SELinux options,
//! `attributes`.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::args::{de_bool, de_opt_string, de_string};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::text_edit::{PyRegex, TextEdit, expand_match, into_string};
use super::{ModuleCtx, parse_args};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceArgs {
    #[serde(
        alias = "dest",
        alias = "destfile",
        alias = "name",
        deserialize_with = "de_string"
    )]
    pub path: String,
    #[serde(deserialize_with = "de_string")]
    pub regexp: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub replace: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub after: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub before: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub validate: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub encoding: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub group: Option<String>,
    #[serde(default)]
    pub mode: Option<Json>,
    #[serde(default, deserialize_with = "de_bool")]
    pub unsafe_writes: bool,
}

pub struct Replace;

impl Module for Replace {
    fn name(&self) -> &'static str {
        "replace"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.replace"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<ReplaceArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !["path", "dest", "destfile", "name"]
            .iter()
            .any(|k| args.contains_key(*k))
        {
            return Err("missing required argument: path".into());
        }
        if !args.contains_key("regexp") {
            return Err("missing required argument: regexp".into());
        }
        if let Some(Json::String(e)) = super::args::literal(args, "encoding")
            && !is_utf8(e)
        {
            return Err(format!(
                "encoding '{e}' is not supported yet by deployer (utf-8 only)"
            ));
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a: ReplaceArgs = parse_args("replace", args)?;
            if let Some(e) = &a.encoding
                && !is_utf8(e)
            {
                return Err(format!(
                    "replace: encoding '{e}' is not supported yet by deployer (utf-8 only)"
                ));
            }
            // Compile before touching the host: a bad pattern fails alone.
            plan_replace(Some(""), &a)?;
            let attrs =
                super::files::Attrs::from_json(a.mode.as_ref(), a.owner.clone(), a.group.clone())?;
            let path = a.path.clone();
            let mut r = super::files::text_module(
                ctx,
                &path,
                attrs,
                a.backup,
                a.validate.clone().as_deref(),
                |e| plan_replace(e, &a),
            )
            .await?;
            // Ansible's result: changed, msg, rc (no dest, no checksum).
            r.data.remove("dest");
            r.data.remove("checksum");
            r.data.insert("rc".into(), Json::from(0));
            Ok(r)
        })
    }
}

fn is_utf8(e: &str) -> bool {
    matches!(
        e.to_ascii_lowercase().replace('_', "-").as_str(),
        "utf-8" | "utf8"
    )
}

/// The edit: pure (the file's text in, the new text and message out).
pub fn plan_replace(existing: Option<&str>, a: &ReplaceArgs) -> Result<TextEdit, String> {
    let Some(contents) = existing else {
        return Err(format!("Path {} does not exist !", a.path));
    };
    let pattern = match (&a.after, &a.before) {
        (Some(af), Some(bf)) if !af.is_empty() && !bf.is_empty() => {
            Some(format!("{af}(?P<subsection>.*?){bf}"))
        }
        (Some(af), _) if !af.is_empty() => Some(format!("{af}(?P<subsection>.*)")),
        (_, Some(bf)) if !bf.is_empty() => Some(format!("(?P<subsection>.*){bf}")),
        _ => None,
    };
    let bytes = contents.as_bytes();
    let (start, end) = match &pattern {
        Some(p) => {
            let re = PyRegex::new(&format!("(?s){p}"))?;
            match re
                .search(bytes)
                .and_then(|c| c.name("subsection").map(|m| (m.start(), m.end())))
            {
                Some(range) => range,
                None => {
                    return Ok(TextEdit {
                        content: contents.to_string(),
                        changed: false,
                        msg: format!(
                            "Pattern for before/after params did not match the given file: {p}"
                        ),
                    });
                }
            }
        }
        None => (0, bytes.len()),
    };
    let section = &bytes[start..end];
    let re = PyRegex::new(&format!("(?m){}", a.regexp))?;
    let template = a.replace.clone().unwrap_or_default();
    let mut out = Vec::with_capacity(section.len());
    let mut last = 0;
    let mut count = 0;
    for caps in re.re.captures_iter(section) {
        let Some(m) = caps.get(0) else { continue };
        out.extend_from_slice(&section[last..m.start()]);
        out.extend(expand_match(&re.re, &caps, template.as_bytes())?);
        last = m.end();
        count += 1;
    }
    out.extend_from_slice(&section[last..]);
    if count == 0 || out == section {
        return Ok(TextEdit {
            content: contents.to_string(),
            changed: false,
            msg: String::new(),
        });
    }
    let mut whole = bytes[..start].to_vec();
    whole.extend(out);
    whole.extend_from_slice(&bytes[end..]);
    Ok(TextEdit {
        content: into_string(whole)?,
        changed: true,
        msg: format!("{count} replacements made"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(regexp: &str, replace: &str) -> ReplaceArgs {
        ReplaceArgs {
            path: "/f".into(),
            regexp: regexp.into(),
            replace: Some(replace.into()),
            ..Default::default()
        }
    }

    #[test]
    fn substitutes_as_python_re_subn() {
        let e = plan_replace(Some("a=1\nb=2\na=3\n"), &args(r"^a=(\d)$", r"a=\1\1")).unwrap();
        assert_eq!(e.content, "a=11\nb=2\na=33\n");
        assert_eq!(e.msg, "2 replacements made");
        let e = plan_replace(Some("x\n"), &args("y", "z")).unwrap();
        assert!(!e.changed && e.msg.is_empty());
        // A match that replaces with itself is not a change.
        let e = plan_replace(Some("x\n"), &args("x", "x")).unwrap();
        assert!(!e.changed);
        let mut a = args("a", "b");
        a.after = Some("START".into());
        a.before = Some("END".into());
        let e = plan_replace(Some("a START a a END a"), &a).unwrap();
        assert_eq!(e.content, "a START b b END a");
        a.after = Some("NOPE".into());
        let e = plan_replace(Some("a"), &a).unwrap();
        assert!(!e.changed && e.msg.starts_with("Pattern for before/after"));
        assert_eq!(
            plan_replace(None, &args("a", "b")).unwrap_err(),
            "Path /f does not exist !"
        );
    }
}
