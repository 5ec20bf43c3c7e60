//! `ini_file` (`community.general.ini_file`): an option, its values, or a
//! whole section of an INI file, edited line for line as the collection's
//! module does (a port of its `do_ini`: sections found by `[name]`, options
//! matched active or commented out, `exclusive`, `allow_no_value`,
//! `section_has_values`, `no_extra_spaces`, `ignore_spaces`). The file is
//! read and written through the path `lineinfile` uses (observed in the
//! batch, [`crate::connection::write::RemoteWrite`], `--diff`, check mode,
//! backup, owner/group/mode).
//!
//! Supported: `path` (`dest`), `section`, `section_has_values`, `option`,
//! `value`, `values`, `backup`, `state`, `exclusive`, `no_extra_spaces`,
//! `ignore_spaces`, `allow_no_value`, `modify_inactive_option`, `create`,
//! `owner`, `group`, `mode`. Not supported yet: `follow: true`, the SELinux
//! options, `attributes`. Differences: files with `\r` line ends are
//! edited as written (Python reads them as `\n`); in check mode a change of
//! owner, group or mode alone is reported (the collection reports it only
//! when it applies it).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_list, de_opt_string, de_string};
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::text_edit::TextEdit;
use super::{ModuleCtx, parse_args};
use crate::connection::shell_quote;

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum IniState {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SectionHasValues {
    #[serde(deserialize_with = "de_string")]
    pub option: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub values: Option<Vec<String>>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct IniArgs {
    #[serde(alias = "dest", deserialize_with = "de_string")]
    pub path: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub section: Option<String>,
    #[serde(default)]
    pub section_has_values: Option<Vec<SectionHasValues>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub option: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list_keep")]
    pub values: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default)]
    pub state: IniState,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub exclusive: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub no_extra_spaces: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub ignore_spaces: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub allow_no_value: bool,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub modify_inactive_option: bool,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub create: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub follow: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub group: Option<String>,
    #[serde(default)]
    pub mode: Option<Json>,
    #[serde(default, deserialize_with = "de_bool")]
    pub unsafe_writes: bool,
}

/// A list of strings kept as given (a string is one value, not split at commas).
fn de_opt_list_keep<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let v = Json::deserialize(d)?;
    match v {
        Json::String(s) => Ok(Some(vec![s])),
        other => de_opt_list(other).map_err(serde::de::Error::custom),
    }
}

pub struct IniFile;

impl Module for IniFile {
    fn name(&self) -> &'static str {
        "ini_file"
    }
    fn fqcn(&self) -> &'static str {
        "community.general.ini_file"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<IniArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("path") && !args.contains_key("dest") {
            return Err("missing required argument: path".into());
        }
        if args.contains_key("value") && args.contains_key("values") {
            return Err("parameters are mutually exclusive: value|values".into());
        }
        if super::args::literal(args, "follow")
            .and_then(super::args::parse_bool)
            .unwrap_or(false)
        {
            return Err("ini_file: follow: true is not supported yet by deployer".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a: IniArgs = parse_args("ini_file", args)?;
            if a.follow {
                return Err("ini_file: follow: true is not supported yet by deployer".into());
            }
            if a.state == IniState::Present
                && !a.allow_no_value
                && a.value.is_none()
                && a.values.as_ref().is_none_or(|v| v.is_empty())
            {
                return Err("Parameter 'value(s)' must be defined if state=present and allow_no_value=False.".into());
            }
            let attrs =
                super::files::Attrs::from_json(a.mode.as_ref(), a.owner.clone(), a.group.clone())?;
            let path = a.path.clone();
            // A new file's directory is made first, as the collection does.
            if a.create && !ctx.check {
                let out = ctx
                    .conn
                    .run_script(
                        &format!(
                            "p={}\n[ -e \"$p\" ] || mkdir -p -- \"$(dirname -- \"$p\")\"\n",
                            shell_quote(&path)
                        ),
                        ctx.become_.as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if out.rc != 0 {
                    return Err(out.stderr_str().trim().to_string());
                }
            }
            let mut r =
                super::files::text_module(ctx, &path, attrs, a.backup, None, |e| plan_ini(e, &a))
                    .await?;
            // Ansible's result: changed, msg, path, and the path's
            // attributes when it exists (no dest, no checksum).
            r.data.remove("dest");
            r.data.remove("checksum");
            r.data.insert("path".into(), json!(path));
            super::files::add_path_info(ctx, &mut r, &path).await?;
            Ok(r)
        })
    }
}

/// `match_opt` / `match_active_opt`: whether `line` sets `option` (commented
/// out too when `inactive`), and group 2 (the comment sign) and group 8 (the
/// value) of the collection's pattern.
fn match_opt(option: &str, line: &str, inactive: bool) -> Option<(bool, String)> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let has_nl = body.len() != line.len();
    let skip = |s: &str| s.trim_start_matches([' ', '\t']).to_string();
    let mut rest = skip(body);
    let mut commented = false;
    if inactive && (rest.starts_with('#') || rest.starts_with(';')) {
        commented = true;
        rest = skip(&rest[1..]);
    }
    let after = rest.strip_prefix(option)?;
    // `.` in the value never crosses a line end: a value with `\n` inside
    // ends there.
    let after_sp = after.trim_start_matches([' ', '\t']);
    if let Some(v) = after_sp.strip_prefix('=') {
        let v = v.trim_start_matches([' ', '\t']);
        let v = v.split('\n').next().unwrap_or("");
        return Some((commented, v.to_string()));
    }
    // `$`: the end, or just before a final line end.
    if after_sp.is_empty() && (has_nl || !body.contains('\n')) {
        return Some((commented, String::new()));
    }
    None
}

/// `^\[\s*SECTION\s*]`.
fn is_section(line: &str, section: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix(section.trim()) else {
        return false;
    };
    rest.trim_start().starts_with(']')
}

/// `^[ \t]*([#;].*)?$`: a blank or comment line.
fn blank_or_comment(line: &str) -> bool {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let t = body.trim_start_matches([' ', '\t']);
    (t.is_empty() || t.starts_with('#') || t.starts_with(';')) && !t.contains('\n')
}

struct Cond {
    option: String,
    values: Vec<String>,
}

fn section_has(conds: &Option<Vec<Cond>>, lines: &[String]) -> bool {
    let Some(conds) = conds else { return true };
    conds.iter().all(|c| {
        lines.iter().any(|l| {
            match_opt(&c.option, l, true)
                .is_some_and(|(_, v)| c.values.is_empty() || c.values.contains(&v))
        })
    })
}

/// The edit: pure (a port of the collection's `do_ini`).
pub fn plan_ini(existing: Option<&str>, a: &IniArgs) -> Result<TextEdit, String> {
    if existing.is_none() && !a.create {
        return Err(format!("Destination {} does not exist!", a.path));
    }
    let text = existing.unwrap_or("");
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut values: Vec<String> = Vec::new();
    let given: Vec<String> = match (&a.value, &a.values) {
        (Some(v), _) => vec![v.clone()],
        (None, Some(vs)) => vs.clone(),
        (None, None) => Vec::new(),
    };
    for v in given {
        if !values.contains(&v) {
            values.push(v);
        }
    }
    let conds: Option<Vec<Cond>> = a.section_has_values.as_ref().map(|cs| {
        cs.iter()
            .map(|c| Cond {
                option: c.option.clone(),
                values: match (&c.value, &c.values) {
                    (Some(v), _) => vec![v.clone()],
                    (None, Some(vs)) => vs.clone(),
                    (None, None) => Vec::new(),
                },
            })
            .collect()
    });
    let mut ini: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let mut changed = false;
    if ini.is_empty() {
        ini.push("\n".into());
    }
    if let Some(last) = ini.last_mut()
        && !last.ends_with('\n')
    {
        last.push('\n');
        changed = true;
    }
    let fake = "ad01e11446efb704fcdbdb21f2c43757423d91c5";
    ini.insert(0, format!("[{fake}]"));
    ini.push("[".into());
    let section = a
        .section
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| fake.to_string());
    let mut within = false;
    let (mut start, mut end) = (0, 0);
    let fmt = |o: &str, v: &str| {
        if a.no_extra_spaces {
            format!("{o}={v}\n")
        } else {
            format!("{o} = {v}\n")
        }
    };
    for (i, line) in ini.iter().enumerate() {
        if within && line.starts_with('[') {
            if section_has(&conds, &ini[start..i]) {
                end = i;
                break;
            }
            within = false;
            start = 0;
            end = 0;
        }
        if is_section(line, &section) {
            within = true;
            start = i;
        }
    }
    let before: Vec<String> = ini[..start].to_vec();
    let mut sec: Vec<String> = ini[start..end].to_vec();
    let after: Vec<String> = ini[end..].to_vec();
    let mut marked = vec![false; sec.len()];
    let inactive = a.modify_inactive_option;
    let mut msg = "OK".to_string();
    let mut no_value_present = false;
    let update = |sec: &mut Vec<String>,
                  marked: &mut Vec<bool>,
                  i: usize,
                  newline: String,
                  option: &str,
                  changed: &mut bool,
                  msg: &mut String| {
        let mut opt_changed = None;
        if a.ignore_spaces
            && let Some((false, old)) = match_opt(option, &sec[i], true)
        {
            let new = match_opt(option, &newline, true).map(|m| m.1);
            opt_changed = Some(Some(old) != new);
        }
        let oc = opt_changed.unwrap_or(sec[i] != newline);
        if oc {
            sec[i] = newline;
            *changed = true;
            *msg = "option changed".into();
        }
        marked[i] = true;
    };
    let option = a.option.clone().filter(|o| !o.is_empty());
    if a.state == IniState::Present
        && let Some(opt) = &option
    {
        for i in 0..sec.len() {
            let Some((_, v)) = match_opt(opt, &sec[i], inactive) else {
                continue;
            };
            if !values.is_empty() && values.contains(&v) {
                let newline = if v.is_empty() && a.allow_no_value {
                    no_value_present = true;
                    format!("{opt}\n")
                } else {
                    fmt(opt, &v)
                };
                update(
                    &mut sec,
                    &mut marked,
                    i,
                    newline,
                    opt,
                    &mut changed,
                    &mut msg,
                );
                if let Some(p) = values.iter().position(|x| *x == v) {
                    values.remove(p);
                }
            } else if values.is_empty() && a.allow_no_value {
                update(
                    &mut sec,
                    &mut marked,
                    i,
                    format!("{opt}\n"),
                    opt,
                    &mut changed,
                    &mut msg,
                );
                no_value_present = true;
                break;
            }
        }
    }
    if a.state == IniState::Present && a.exclusive && !a.allow_no_value {
        let opt = option.clone().unwrap_or_default();
        if !values.is_empty() {
            for i in 0..sec.len() {
                if !marked[i] && match_opt(&opt, &sec[i], inactive).is_some() {
                    let v = values.remove(0);
                    update(
                        &mut sec,
                        &mut marked,
                        i,
                        fmt(&opt, &v),
                        &opt,
                        &mut changed,
                        &mut msg,
                    );
                    if values.is_empty() {
                        break;
                    }
                }
            }
        }
        let mut i = sec.len();
        while i > 1 {
            i -= 1;
            if !marked[i] && match_opt(&opt, &sec[i], inactive).is_some() {
                sec.remove(i);
                marked.remove(i);
                changed = true;
                msg = "option changed".into();
            }
        }
    }
    if a.state == IniState::Present {
        let mut i = sec.len();
        while i > 0 {
            if !blank_or_comment(&sec[i - 1]) {
                if let Some(opt) = &option
                    && !values.is_empty()
                {
                    for v in values.iter().rev() {
                        sec.insert(i, fmt(opt, v));
                        msg = "option added".into();
                        changed = true;
                    }
                } else if let Some(opt) = &option
                    && values.is_empty()
                    && a.allow_no_value
                    && !no_value_present
                {
                    sec.insert(i, format!("{opt}\n"));
                    msg = "option added".into();
                    changed = true;
                }
                break;
            }
            i -= 1;
        }
    }
    if a.state == IniState::Absent {
        if let Some(opt) = &option {
            if a.exclusive {
                let kept: Vec<String> = sec
                    .iter()
                    .filter(|l| match_opt(opt, l, false).is_none())
                    .cloned()
                    .collect();
                if kept != sec {
                    changed = true;
                    msg = "option changed".into();
                    sec = kept;
                }
            } else if !values.is_empty() {
                let kept: Vec<String> = sec
                    .iter()
                    .filter(|l| !match_opt(opt, l, false).is_some_and(|(_, v)| values.contains(&v)))
                    .cloned()
                    .collect();
                if kept != sec {
                    changed = true;
                    msg = "option changed".into();
                    sec = kept;
                }
            }
        } else if !sec.is_empty() {
            sec.clear();
            msg = "section removed".into();
            changed = true;
        }
    }
    let mut out: Vec<String> = before;
    out.extend(sec);
    out.extend(after);
    out.remove(0);
    out.pop();
    if !within && a.state == IniState::Present {
        out.push(format!("[{section}]\n"));
        msg = "section and option added".into();
        if let Some(cs) = &conds {
            for c in cs {
                if Some(&c.option) != option.as_ref() {
                    if !c.values.is_empty() {
                        for v in &c.values {
                            out.push(fmt(&c.option, v));
                        }
                    } else if a.allow_no_value {
                        out.push(format!("{}\n", c.option));
                    }
                } else if !a.exclusive {
                    for v in &c.values {
                        if !values.contains(v) {
                            values.push(v.clone());
                        }
                    }
                }
            }
        }
        match &option {
            Some(opt) if !values.is_empty() => {
                for v in &values {
                    out.push(fmt(opt, v));
                }
            }
            Some(opt) if a.allow_no_value => out.push(format!("{opt}\n")),
            _ => msg = "only section added".into(),
        }
        changed = true;
    }
    let content: String = out.concat();
    Ok(TextEdit {
        changed,
        content,
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(section: &str, option: &str, value: &str) -> IniArgs {
        serde_json::from_value(json!({
            "path": "/f", "section": section, "option": option, "value": value
        }))
        .expect("args")
    }

    #[test]
    fn edits_as_the_collection() {
        let f = "[a]\nx = 1\n; y = 2\n\n[b]\nz=3\n";
        let e = plan_ini(Some(f), &args("a", "x", "1")).unwrap();
        assert!(!e.changed, "{e:?}");
        let e = plan_ini(Some(f), &args("a", "y", "5")).unwrap();
        assert_eq!(e.content, "[a]\nx = 1\ny = 5\n\n[b]\nz=3\n");
        assert_eq!(e.msg, "option changed");
        let e = plan_ini(Some(f), &args("b", "w", "7")).unwrap();
        assert_eq!(e.content, "[a]\nx = 1\n; y = 2\n\n[b]\nz=3\nw = 7\n");
        assert_eq!(e.msg, "option added");
        let e = plan_ini(Some(f), &args("c", "k", "v")).unwrap();
        assert_eq!(e.content, format!("{f}[c]\nk = v\n"));
        assert_eq!(e.msg, "section and option added");
        let e = plan_ini(None, &args("c", "k", "v")).unwrap();
        assert_eq!(e.content, "\n[c]\nk = v\n");
        let mut gone = args("a", "x", "1");
        gone.state = IniState::Absent;
        let e = plan_ini(Some(f), &gone).unwrap();
        assert_eq!(e.content, "[a]\n; y = 2\n\n[b]\nz=3\n");
        assert_eq!(match_opt("x", "  # x=1\n", true), Some((true, "1".into())));
        assert_eq!(match_opt("x", "xy=1\n", true), None);
        assert_eq!(match_opt("x", "x\n", true), Some((false, String::new())));
    }
}
