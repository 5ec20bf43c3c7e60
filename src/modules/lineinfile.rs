//! `lineinfile`: a faithful port of the text logic of Ansible's
//! `lib/ansible/modules/lineinfile.py` (ansible-core 2.19). File I/O,
//! `validate`, `backup` and file attributes are the caller's job.

use serde::Deserialize;
use serde_json::Value;

use super::args::{de_bool, de_opt_string, de_string};
pub use super::text_edit::TextEdit;
use super::text_edit::{LINESEP, PyRegex, expand_match, into_string, readlines, rstrip_crlf};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineState {
    #[default]
    Present,
    Absent,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineinfileArgs {
    #[serde(
        alias = "dest",
        alias = "destfile",
        alias = "name",
        deserialize_with = "de_string"
    )]
    pub path: String,
    #[serde(default, alias = "value", deserialize_with = "de_opt_string")]
    pub line: Option<String>,
    #[serde(default, alias = "regex", deserialize_with = "de_opt_string")]
    pub regexp: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub search_string: Option<String>,
    #[serde(default)]
    pub state: LineState,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub insertafter: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub insertbefore: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub create: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub backrefs: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub firstmatch: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub group: Option<String>,
    #[serde(default)]
    pub mode: Option<Value>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub validate: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub unsafe_writes: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub seuser: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub serole: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub setype: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub selevel: Option<String>,
    #[serde(default, alias = "attr", deserialize_with = "de_opt_string")]
    pub attributes: Option<String>,
}

/// Ansible's argument checks, in the order it makes them (before any file
/// system access apart from the "is a directory" check, which the caller makes).
fn validate_args(args: &LineinfileArgs) -> Result<(), String> {
    let mut exclusive = Vec::new();
    if args.insertbefore.is_some() && args.insertafter.is_some() {
        exclusive.push("insertbefore|insertafter");
    }
    if args.regexp.is_some() && args.search_string.is_some() {
        exclusive.push("regexp|search_string");
    }
    // Ansible counts backrefs as given even when false; a bool can't tell.
    if args.backrefs && args.search_string.is_some() {
        exclusive.push("backrefs|search_string");
    }
    if !exclusive.is_empty() {
        return Err(format!(
            "parameters are mutually exclusive: {}",
            exclusive.join(", ")
        ));
    }
    Ok(())
}

/// Warnings Ansible emits for these arguments (an empty regexp or search_string).
pub fn lineinfile_warnings(args: &LineinfileArgs) -> Vec<String> {
    let mut msg = String::new();
    if args.regexp.as_deref() == Some("") {
        msg = "The regular expression is an empty string, which will match every line in the file. \
               This may have unintended consequences, such as replacing the last line in the file rather than appending. \
               If this is desired, use '^' to match every line in the file and avoid this warning."
            .into();
    } else if args.search_string.as_deref() == Some("") {
        msg = "The search string is an empty string, which will match every line in the file. \
               This may have unintended consequences, such as replacing the last line in the file rather than appending."
            .into();
    }
    if msg.is_empty() { vec![] } else { vec![msg] }
}

/// Plans a `lineinfile` run. `existing` is the file's content, `None` when the
/// file does not exist. `Err` carries Ansible's failure message.
pub fn plan_lineinfile(existing: Option<&str>, args: &LineinfileArgs) -> Result<TextEdit, String> {
    validate_args(args)?;
    match args.state {
        LineState::Present => {
            if args.backrefs && args.regexp.is_none() {
                return Err("regexp is required with backrefs=true".into());
            }
            let Some(line) = args.line.as_deref() else {
                return Err("line is required with state=present".into());
            };
            let (ins_aft, ins_bef) = match (&args.insertafter, &args.insertbefore) {
                (None, None) => (Some("EOF"), None),
                (a, b) => (a.as_deref(), b.as_deref()),
            };
            present(existing, args, line, ins_aft, ins_bef)
        }
        LineState::Absent => {
            if args.regexp.is_none() && args.search_string.is_none() && args.line.is_none() {
                return Err(
                    "one of line, search_string, or regexp is required with state=absent".into(),
                );
            }
            absent(existing, args)
        }
    }
}

fn present(
    existing: Option<&str>,
    args: &LineinfileArgs,
    line: &str,
    insertafter: Option<&str>,
    insertbefore: Option<&str>,
) -> Result<TextEdit, String> {
    let mut b_lines = match existing {
        None if !args.create => {
            return Err(format!("Destination {} does not exist !", args.path));
        }
        None => Vec::new(),
        Some(s) => readlines(s.as_bytes()),
    };
    let original: Vec<u8> = b_lines.concat();

    let bre_m = args.regexp.as_deref().map(PyRegex::new).transpose()?;
    let bre_ins = if let Some(a) = insertafter.filter(|a| *a != "BOF" && *a != "EOF") {
        Some(PyRegex::new(a)?)
    } else if let Some(b) = insertbefore.filter(|b| *b != "BOF") {
        Some(PyRegex::new(b)?)
    } else {
        None
    };
    let truthy = |o: Option<&str>| o.is_some_and(|s| !s.is_empty());

    // index0: line where regexp/search_string/exact line matched;
    // index1: line where insertafter/insertbefore applies.
    let mut index0: isize = -1;
    let mut index1: isize = -1;
    let mut found_line: Option<usize> = None; // Python's `match`
    let b_line = line.as_bytes();

    if let Some(re) = &bre_m {
        for (n, cur) in b_lines.iter().enumerate() {
            if re.is_match(cur) {
                index0 = n as isize;
                found_line = Some(n);
                if args.firstmatch {
                    break;
                }
            }
        }
    }
    if let Some(ss) = &args.search_string {
        let needle = ss.as_bytes();
        for (n, cur) in b_lines.iter().enumerate() {
            if contains(cur, needle) {
                index0 = n as isize;
                found_line = Some(n);
                if args.firstmatch {
                    break;
                }
            }
        }
    }
    if found_line.is_none() {
        for (n, cur) in b_lines.iter().enumerate() {
            if b_line == rstrip_crlf(cur) {
                index0 = n as isize;
            } else if let Some(ins) = &bre_ins
                && ins.is_match(cur)
            {
                if truthy(insertafter) {
                    index1 = n as isize + 1;
                    if args.firstmatch {
                        break;
                    }
                }
                if truthy(insertbefore) {
                    index1 = n as isize;
                    if args.firstmatch {
                        break;
                    }
                }
            }
        }
    }

    let mut msg = "";
    let mut changed = false;
    let with_sep = |l: &[u8]| [l, LINESEP].concat();
    let ends_with_eol = |l: &[u8]| matches!(l.last(), Some(b'\n' | b'\r'));

    if index0 != -1 {
        let i0 = index0 as usize;
        let mut new_line = match (&bre_m, found_line) {
            (Some(re), Some(n)) if args.backrefs => {
                let caps = re
                    .search(&b_lines[n])
                    .ok_or_else(|| "internal error: regexp match vanished".to_string())?;
                expand_match(&re.re, &caps, b_line)?
            }
            _ => b_line.to_vec(),
        };
        if !new_line.ends_with(LINESEP) {
            new_line.extend_from_slice(LINESEP);
        }
        // Ansible has an insertafter/insertbefore branch here for "nothing
        // matched", but index0 is only ever set by a match, so it is dead.
        if b_lines[i0] != new_line {
            b_lines[i0] = new_line;
            msg = "line replaced";
            changed = true;
        }
    } else if args.backrefs {
        // Nothing: the line can't be built without a match for the backrefs.
    } else if insertbefore == Some("BOF") || insertafter == Some("BOF") {
        b_lines.insert(0, with_sep(b_line));
        msg = "line added";
        changed = true;
    } else if insertafter == Some("EOF") || index1 == -1 {
        if let Some(last) = b_lines.last()
            && !ends_with_eol(last)
        {
            b_lines.push(LINESEP.to_vec());
        }
        b_lines.push(with_sep(b_line));
        msg = "line added";
        changed = true;
    } else if truthy(insertafter) {
        let i1 = index1 as usize;
        if b_lines.len() == i1 {
            // index1 >= 1 here: it is a matched line number plus one.
            if rstrip_crlf(&b_lines[i1 - 1]) != b_line {
                b_lines.push(with_sep(b_line));
                msg = "line added";
                changed = true;
            }
        } else if b_line != rstrip_crlf(&b_lines[i1]) {
            b_lines.insert(i1, with_sep(b_line));
            msg = "line added";
            changed = true;
        }
    } else {
        b_lines.insert(index1 as usize, with_sep(b_line));
        msg = "line added";
        changed = true;
    }

    let content = b_lines.concat();
    // A replacement can be byte-identical to the line's old form only when
    // nothing changed, so `changed` already reflects the content.
    debug_assert!(changed || content == original);
    Ok(TextEdit {
        content: into_string(content)?,
        changed,
        msg: msg.to_string(),
    })
}

fn absent(existing: Option<&str>, args: &LineinfileArgs) -> Result<TextEdit, String> {
    let Some(existing) = existing else {
        return Ok(TextEdit {
            content: String::new(),
            changed: false,
            msg: "file not present".into(),
        });
    };
    let b_lines = readlines(existing.as_bytes());
    let re = args.regexp.as_deref().map(PyRegex::new).transpose()?;
    let b_line = args.line.as_deref().unwrap_or("None").as_bytes();
    let mut found = 0usize;
    let kept: Vec<Vec<u8>> = b_lines
        .into_iter()
        .filter(|cur| {
            let m = if let Some(re) = &re {
                re.is_match(cur)
            } else if let Some(ss) = &args.search_string {
                contains(cur, ss.as_bytes())
            } else {
                b_line == rstrip_crlf(cur)
            };
            if m {
                found += 1;
            }
            !m
        })
        .collect();
    let changed = found > 0;
    Ok(TextEdit {
        content: into_string(kept.concat())?,
        changed,
        msg: if changed {
            format!("{found} line(s) removed")
        } else {
            String::new()
        },
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
