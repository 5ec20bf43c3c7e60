//! YAML-level rules: unreadable, binary and non-UTF-8 files, syntax errors,
//! every duplicate key (not only the first), tabs, truthy words and unquoted
//! octal modes. These need the text as written, so they scan the parser's events
//! rather than the resolved tree.

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::Linter;
use crate::yaml::{Loc, Node};

/// The file as text, or `None` after reporting why it cannot be read as text.
pub fn read_text(l: &mut Linter, path: &Path) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            l.report(
                "file-unreadable",
                &Loc::file_only(path),
                format!("cannot read: {e}"),
            );
            return None;
        }
    };
    if let Some(pos) = bytes.iter().position(|b| *b == 0) {
        let line = bytes[..pos].iter().filter(|b| **b == b'\n').count() + 1;
        l.report_at(
            "file-binary",
            path,
            line,
            0,
            "binary data (a NUL byte) in a file that should be text",
        );
        return None;
    }
    match String::from_utf8(bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            let upto = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes[..upto].iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = bytes[..upto]
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(0);
            l.report_at(
                "file-encoding",
                path,
                line,
                upto - line_start + 1,
                format!(
                    "not valid UTF-8 (byte 0x{:02x} at offset {upto}); save the file as UTF-8",
                    bytes.get(upto).copied().unwrap_or(0)
                ),
            );
            None
        }
    }
}

const TRUTHY: &[&str] = &[
    "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
];

enum Frame {
    Map {
        expect_key: bool,
        key: Option<String>,
        keys: HashMap<String, usize>,
    },
    Seq,
}

/// Text-level checks, then the tree. Returns the tree when the file parses.
pub fn check_yaml_text(l: &mut Linter, path: &Path, text: &str) -> Option<Node> {
    for (i, line) in text.lines().enumerate() {
        let indent: &str = &line[..line.len() - line.trim_start().len()];
        if let Some(col) = indent.find('\t') {
            l.report_at(
                "yaml-tabs",
                path,
                i + 1,
                col + 1,
                "a tab in the indentation: indent YAML with spaces",
            );
        }
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut dup_found = false;
    for ev in Parser::new_from_str(text) {
        let (event, span) = match ev {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                l.report_at(
                    "yaml-syntax",
                    path,
                    m.line().max(1),
                    m.col() + 1,
                    format!("YAML syntax error: {}", e.info()),
                );
                return None;
            }
        };
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let starts_node = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(_)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
        );
        if starts_node {
            // Is this node a key or a value of the enclosing mapping?
            let mut is_value_of: Option<Option<String>> = None;
            if let Some(Frame::Map {
                expect_key,
                key,
                keys,
            }) = stack.last_mut()
            {
                if *expect_key {
                    *expect_key = false;
                    *key = None;
                    if let Event::Scalar(t, _, _, _) = &event {
                        let k = t.to_string();
                        if k != "<<" {
                            if let Some(first) = keys.get(&k) {
                                dup_found = true;
                                l.report_at(
                                    "yaml-duplicate-key",
                                    path,
                                    line,
                                    col,
                                    format!("duplicate key '{k}' (first defined at line {first}): one of the values is silently lost"),
                                );
                            } else {
                                keys.insert(k.clone(), line);
                            }
                        }
                        *key = Some(k);
                    }
                } else {
                    *expect_key = true;
                    is_value_of = Some(key.clone());
                }
            }
            if let Event::Scalar(t, style, _, tag) = &event
                && style == &ScalarStyle::Plain
                && tag.is_none()
            {
                let in_map_value = is_value_of.is_some();
                let in_seq = matches!(stack.last(), Some(Frame::Seq));
                if (in_map_value || in_seq) && TRUTHY.contains(&t.as_ref()) {
                    let b = matches!(t.to_ascii_lowercase().as_str(), "yes" | "on");
                    l.report_at(
                        "yaml-truthy",
                        path,
                        line,
                        col,
                        format!("'{t}' is a YAML 1.1 boolean: write {b}"),
                    );
                }
                if let Some(Some(k)) = &is_value_of
                    && k == "mode"
                    && !t.is_empty()
                    && t.chars().all(|c| c.is_ascii_digit())
                {
                    let msg = if t.starts_with('0') {
                        format!("unquoted mode {t} is read as an integer; quote it: mode: \"{t}\"")
                    } else {
                        format!(
                            "mode {t} is the decimal number {t} (0o{:o}), not 0{t}: write mode: \"0{t}\"",
                            t.parse::<u64>().unwrap_or(0)
                        )
                    };
                    l.report_at("yaml-octal-mode", path, line, col, msg);
                }
            }
        }
        match event {
            Event::MappingStart(..) => stack.push(Frame::Map {
                expect_key: true,
                key: None,
                keys: HashMap::new(),
            }),
            Event::SequenceStart(..) => stack.push(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    if dup_found {
        return None;
    }
    match crate::yaml::parse_str(text, path) {
        Ok(n) => Some(n),
        Err(e) => {
            let rule = if e.msg.starts_with("duplicate key") {
                "yaml-duplicate-key"
            } else {
                "yaml-syntax"
            };
            l.report(rule, &e.loc, e.msg);
            None
        }
    }
}
