//! `blockinfile`: a faithful port of the text logic of Ansible's
//! `lib/ansible/modules/blockinfile.py` (ansible-core 2.19). File I/O,
//! `validate`, `backup` and file attributes are the caller's job.

use serde::Deserialize;
use serde_json::Value;

use super::args::{de_bool, de_opt_string, de_string};
pub use super::lineinfile::LineState;
pub use super::text_edit::TextEdit;
use super::text_edit::{LINESEP, PyRegex, expand_template, into_string, splitlines_keepends};

fn default_marker() -> String {
    "# {mark} ANSIBLE MANAGED BLOCK".into()
}
fn default_begin() -> String {
    "BEGIN".into()
}
fn default_end() -> String {
    "END".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockinfileArgs {
    #[serde(
        alias = "dest",
        alias = "destfile",
        alias = "name",
        deserialize_with = "de_string"
    )]
    pub path: String,
    #[serde(default, alias = "content", deserialize_with = "de_string")]
    pub block: String,
    #[serde(default = "default_marker", deserialize_with = "de_string")]
    pub marker: String,
    #[serde(default = "default_begin", deserialize_with = "de_string")]
    pub marker_begin: String,
    #[serde(default = "default_end", deserialize_with = "de_string")]
    pub marker_end: String,
    #[serde(default)]
    pub state: LineState,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub insertafter: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub insertbefore: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub create: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub append_newline: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub prepend_newline: bool,
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

impl Default for BlockinfileArgs {
    fn default() -> Self {
        BlockinfileArgs {
            path: String::new(),
            block: String::new(),
            marker: default_marker(),
            marker_begin: default_begin(),
            marker_end: default_end(),
            state: LineState::Present,
            insertafter: None,
            insertbefore: None,
            create: false,
            backup: false,
            append_newline: false,
            prepend_newline: false,
            owner: None,
            group: None,
            mode: None,
            validate: None,
            unsafe_writes: false,
            seuser: None,
            serole: None,
            setype: None,
            selevel: None,
            attributes: None,
        }
    }
}

/// `re.sub(b'{mark}', b(mark), marker) + linesep`: the replacement is a
/// Python template (backslash escapes are processed) encoded as latin-1.
fn marker_line(marker: &str, mark: &str, which: &str) -> Result<Vec<u8>, String> {
    if !mark.is_ascii() {
        return Err(format!(
            "{which} must be ASCII: Ansible writes it latin-1 encoded, which deployer does not reproduce"
        ));
    }
    let repl = expand_template(mark.as_bytes(), 0, &|_| None, &|i| {
        (i == 0).then(|| b"{mark}".to_vec())
    })
    .map_err(|e| format!("{which}: {e}"))?;
    let mut out = Vec::new();
    let m = marker.as_bytes();
    let mut i = 0;
    while i < m.len() {
        if m[i..].starts_with(b"{mark}") {
            out.extend_from_slice(&repl);
            i += b"{mark}".len();
        } else {
            out.push(m[i]);
            i += 1;
        }
    }
    out.extend_from_slice(LINESEP);
    Ok(out)
}

/// Plans a `blockinfile` run. `existing` is the file's content, `None` when
/// the file does not exist. `Err` carries Ansible's failure message.
pub fn plan_blockinfile(
    existing: Option<&str>,
    args: &BlockinfileArgs,
) -> Result<TextEdit, String> {
    if args.insertbefore.is_some() && args.insertafter.is_some() {
        return Err("parameters are mutually exclusive: insertbefore|insertafter".into());
    }
    let present = args.state == LineState::Present;
    let (original, mut lines) = match existing {
        None if !args.create => return Err(format!("Path {} does not exist !", args.path)),
        None => (None, Vec::new()),
        Some(s) => (Some(s.as_bytes()), splitlines_keepends(s.as_bytes())),
    };
    if !present && original.is_none() {
        return Ok(TextEdit {
            content: String::new(),
            changed: false,
            msg: format!("File {} not present", args.path),
        });
    }

    let mut insertafter = args.insertafter.as_deref();
    let insertbefore = args.insertbefore.as_deref();
    if insertbefore.is_none() && insertafter.is_none() {
        insertafter = Some("EOF");
    }
    // Note: insertafter=BOF and insertbefore=EOF are regexps here, as in Ansible.
    let insertre = if let Some(a) = insertafter.filter(|a| *a != "EOF") {
        Some(PyRegex::new(a)?)
    } else if let Some(b) = insertbefore.filter(|b| *b != "BOF") {
        Some(PyRegex::new(b)?)
    } else {
        None
    };

    let marker0 = marker_line(&args.marker, &args.marker_begin, "marker_begin")?;
    let marker1 = marker_line(&args.marker, &args.marker_end, "marker_end")?;
    let blocklines: Vec<Vec<u8>> = if present && !args.block.is_empty() {
        let mut block = args.block.as_bytes().to_vec();
        if !block.ends_with(LINESEP) {
            block.extend_from_slice(LINESEP);
        }
        let mut v = vec![marker0.clone()];
        v.extend(splitlines_keepends(&block));
        v.push(marker1.clone());
        v
    } else {
        Vec::new()
    };

    let mut n0: Option<usize> = None;
    let mut n1: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        if *line == marker0 {
            n0 = Some(i);
        }
        if *line == marker1 {
            n1 = Some(i);
        }
    }

    let mut n0 = match (n0, n1) {
        (Some(a), Some(b)) if a < b => {
            lines.drain(a..=b);
            a
        }
        (Some(a), Some(b)) => {
            lines.drain(b..=a);
            b
        }
        _ => {
            let mut n0 = None;
            if let Some(re) = &insertre {
                if re.multiline {
                    let Some(orig) = original else {
                        return Err(
                            "a MULTILINE insertafter/insertbefore on a missing file makes Ansible fail (TypeError)"
                                .into(),
                        );
                    };
                    if let Some(m) = re.re.find(orig) {
                        // Ansible counts '\n' in the decoded text up to the
                        // match's *byte* offset used as a character index.
                        let upto = if insertafter.is_some() {
                            m.end()
                        } else {
                            m.start()
                        };
                        let text = String::from_utf8_lossy(orig);
                        n0 = Some(text.chars().take(upto).filter(|c| *c == '\n').count());
                    }
                } else {
                    for (i, line) in lines.iter().enumerate() {
                        if re.is_match(line) {
                            n0 = Some(i);
                        }
                    }
                }
                match n0 {
                    None => lines.len(),
                    Some(n) if insertafter.is_some() => n + 1,
                    Some(n) => n,
                }
            } else if insertbefore.is_some() {
                0 // insertbefore=BOF
            } else {
                lines.len() // insertafter=EOF
            }
        }
    };

    if n0 > lines.len() {
        // Python fails here with IndexError (a MULTILINE insertafter matching
        // the file's final newline).
        return Err("IndexError: list index out of range".into());
    }
    // Ensure there is a line separator before the block (even when removing).
    if n0 > 0
        && let Some(prev) = lines.get_mut(n0 - 1)
        && !prev.ends_with(LINESEP)
    {
        prev.extend_from_slice(LINESEP);
    }

    if args.prepend_newline
        && present
        && n0 != 0
        && lines.get(n0 - 1).map(Vec::as_slice) != Some(LINESEP)
    {
        lines.insert(n0, LINESEP.to_vec());
        n0 += 1;
    }

    let nblock = blocklines.len();
    lines.splice(n0..n0, blocklines);

    if args.append_newline && present {
        let after = n0 + nblock;
        if after < lines.len() && lines[after] != LINESEP {
            lines.insert(after, LINESEP.to_vec());
        }
    }

    let result = lines.concat();
    let (changed, msg) = if original == Some(result.as_slice()) {
        (false, "")
    } else if original.is_none() {
        (true, "File created")
    } else if nblock == 0 {
        (true, "Block removed")
    } else {
        (true, "Block inserted")
    };
    Ok(TextEdit {
        content: into_string(result)?,
        changed,
        msg: msg.into(),
    })
}
