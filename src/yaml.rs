//! YAML with locations: every node keeps the file, line and column it came from,
//! so any later error (an unknown keyword, a bad argument, an undefined variable)
//! can point at it. Scalars are resolved the way Ansible's PyYAML loader does
//! (YAML 1.1: `yes`/`no`/`on`/`off` are booleans, `0644` is octal), and the
//! `!vault` tag is kept so the value can be decrypted lazily.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use saphyr_parser::{Event, Parser, ScalarStyle};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub file: Arc<PathBuf>,
    pub line: usize,
    pub col: usize,
}

impl Loc {
    pub fn new(file: &Path, line: usize, col: usize) -> Loc {
        Loc {
            file: Arc::new(file.to_path_buf()),
            line,
            col,
        }
    }
    pub fn file_only(file: &Path) -> Loc {
        Loc::new(file, 0, 0)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col + 1)
        }
    }
}

/// An error that points at a place in a file the user wrote.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{loc}: {msg}")]
pub struct LocatedError {
    pub loc: Loc,
    pub msg: String,
}

impl LocatedError {
    pub fn new(loc: &Loc, msg: impl Into<String>) -> LocatedError {
        LocatedError {
            loc: loc.clone(),
            msg: msg.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// An inline `!vault |` value: the ciphertext, decrypted only when used.
    Vault(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Yaml,
    pub loc: Loc,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Yaml::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Yaml::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self.value, Yaml::Null)
    }
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
    /// The mapping's entries with string keys, or an error naming `what` was expected.
    pub fn expect_map(&self, what: &str) -> Result<Vec<(&str, &Node)>, LocatedError> {
        let map = self.as_map().ok_or_else(|| {
            LocatedError::new(
                &self.loc,
                format!("expected {what} (a mapping), got {}", self.kind()),
            )
        })?;
        map.iter()
            .map(|(k, v)| match &k.value {
                Yaml::Str(s) => Ok((s.as_str(), v)),
                _ => Err(LocatedError::new(
                    &k.loc,
                    format!("expected a string key in {what}, got {}", k.kind()),
                )),
            })
            .collect()
    }
    pub fn expect_seq(&self, what: &str) -> Result<&[Node], LocatedError> {
        self.as_seq().ok_or_else(|| {
            LocatedError::new(
                &self.loc,
                format!("expected {what} (a list), got {}", self.kind()),
            )
        })
    }
    pub fn expect_str(&self, what: &str) -> Result<String, LocatedError> {
        match &self.value {
            Yaml::Str(s) => Ok(s.clone()),
            Yaml::Int(i) => Ok(i.to_string()),
            Yaml::Float(f) => Ok(f.to_string()),
            Yaml::Bool(b) => Ok(b.to_string()),
            _ => Err(LocatedError::new(
                &self.loc,
                format!("expected {what} (a string), got {}", self.kind()),
            )),
        }
    }
    /// A string, or a list of strings (Ansible accepts both for `tags`, `notify`, ...).
    pub fn expect_str_list(&self, what: &str) -> Result<Vec<String>, LocatedError> {
        match &self.value {
            Yaml::Seq(items) => items.iter().map(|i| i.expect_str(what)).collect(),
            Yaml::Null => Ok(Vec::new()),
            _ => Ok(vec![self.expect_str(what)?]),
        }
    }
    pub fn kind(&self) -> &'static str {
        match self.value {
            Yaml::Null => "null",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) => "an integer",
            Yaml::Float(_) => "a number",
            Yaml::Str(_) => "a string",
            Yaml::Vault(_) => "a vault value",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }
    /// Plain JSON (vault values become their ciphertext marker; callers that
    /// need secrets use the `vars` layer instead).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Yaml::Null => J::Null,
            Yaml::Bool(b) => J::Bool(*b),
            Yaml::Int(i) => J::from(*i),
            Yaml::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Yaml::Str(s) => J::String(s.clone()),
            Yaml::Vault(_) => J::String("********".into()),
            Yaml::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Yaml::Map(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    out.insert(key_string(k), v.to_json());
                }
                J::Object(out)
            }
        }
    }
}

pub fn key_string(k: &Node) -> String {
    match &k.value {
        Yaml::Str(s) => s.clone(),
        Yaml::Int(i) => i.to_string(),
        Yaml::Bool(b) => {
            if *b {
                "True".into()
            } else {
                "False".into()
            }
        }
        Yaml::Float(f) => f.to_string(),
        Yaml::Null => "None".into(),
        _ => String::new(),
    }
}

/// Reads and parses one YAML file (the first document; Ansible files have one).
pub fn load_file(path: &Path) -> Result<Node, LocatedError> {
    let bytes = std::fs::read(path)
        .map_err(|e| LocatedError::new(&Loc::file_only(path), format!("cannot read file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        LocatedError::new(
            &Loc::file_only(path),
            format!("file is not valid UTF-8: {e}"),
        )
    })?;
    parse_str(&text, path)
}

pub fn parse_str(text: &str, path: &Path) -> Result<Node, LocatedError> {
    let file = Arc::new(path.to_path_buf());
    let mut builder = Builder {
        file,
        anchors: IndexMap::new(),
        stack: Vec::new(),
        root: None,
    };
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| {
            let m = e.marker();
            LocatedError::new(
                &Loc::new(path, m.line(), m.col()),
                format!("YAML syntax error: {}", e.info()),
            )
        })?;
        let loc = Loc {
            file: builder.file.clone(),
            line: span.start.line(),
            col: span.start.col(),
        };
        builder.event(event, loc)?;
        if builder.root.is_some() {
            break;
        }
    }
    Ok(builder.root.unwrap_or(Node {
        value: Yaml::Null,
        loc: Loc::new(path, 1, 0),
    }))
}

/// Parses every document of a YAML stream (`from_yaml_all`).
pub fn parse_all_str(text: &str, path: &Path) -> Result<Vec<Node>, LocatedError> {
    let file = Arc::new(path.to_path_buf());
    let mut builder = Builder {
        file,
        anchors: IndexMap::new(),
        stack: Vec::new(),
        root: None,
    };
    let mut docs = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| {
            let m = e.marker();
            LocatedError::new(
                &Loc::new(path, m.line(), m.col()),
                format!("YAML syntax error: {}", e.info()),
            )
        })?;
        let loc = Loc {
            file: builder.file.clone(),
            line: span.start.line(),
            col: span.start.col(),
        };
        builder.event(event, loc)?;
        if let Some(root) = builder.root.take() {
            docs.push(root);
        }
    }
    Ok(docs)
}

enum Frame {
    Seq(Node, usize, Vec<Node>),
    Map(Node, usize, Vec<(Node, Node)>, Option<Node>),
}

struct Builder {
    file: Arc<PathBuf>,
    anchors: IndexMap<usize, Node>,
    stack: Vec<Frame>,
    root: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, loc: Loc) -> Result<(), LocatedError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let value = resolve_scalar(&text, style, tag.as_deref(), &loc)?;
                self.push(Node { value, loc }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(
                    Node {
                        value: Yaml::Null,
                        loc,
                    },
                    anchor,
                    Vec::new(),
                ));
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(
                    Node {
                        value: Yaml::Null,
                        loc,
                    },
                    anchor,
                    Vec::new(),
                    None,
                ));
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq(mut n, anchor, items)) => {
                    n.value = Yaml::Seq(items);
                    self.push(n, anchor)
                }
                _ => Err(LocatedError::new(
                    &loc,
                    "YAML structure error: unexpected end of list",
                )),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map(mut n, anchor, items, _)) => {
                    n.value = Yaml::Map(items);
                    self.push(n, anchor)
                }
                _ => Err(LocatedError::new(
                    &loc,
                    "YAML structure error: unexpected end of mapping",
                )),
            },
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                    LocatedError::new(&loc, "YAML alias refers to an unknown anchor")
                })?;
                self.push(node, 0)
            }
            _ => Ok(()),
        }
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), LocatedError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq(_, _, items)) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map(_, _, items, pending)) => match pending.take() {
                None => {
                    *pending = Some(node);
                    Ok(())
                }
                Some(key) => {
                    // `<<: *anchor` merge keys, as PyYAML does.
                    if key.as_str() == Some("<<") && matches!(key.value, Yaml::Str(_)) {
                        let merged: Vec<Node> = match &node.value {
                            Yaml::Map(_) => vec![node.clone()],
                            Yaml::Seq(s) => s.clone(),
                            _ => {
                                return Err(LocatedError::new(
                                    &node.loc,
                                    "a merge key `<<` expects a mapping",
                                ));
                            }
                        };
                        for m in merged {
                            if let Yaml::Map(entries) = m.value {
                                for (k, v) in entries {
                                    if !items.iter().any(|(ek, _)| ek.value == k.value) {
                                        items.push((k, v));
                                    }
                                }
                            }
                        }
                        return Ok(());
                    }
                    if let Some((first, _)) = items.iter().find(|(k, _)| k.value == key.value) {
                        return Err(LocatedError::new(
                            &key.loc,
                            format!(
                                "duplicate key '{}' (first defined at line {})",
                                key_string(&key),
                                first.loc.line
                            ),
                        ));
                    }
                    items.push((key, node));
                    Ok(())
                }
            },
        }
    }
}

fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&str>,
    loc: &Loc,
) -> Result<Yaml, LocatedError> {
    match tag {
        Some("!vault") | Some("!vault-encrypted") => return Ok(Yaml::Vault(text.to_string())),
        Some("!unsafe") => return Ok(Yaml::Str(text.to_string())),
        Some("tag:yaml.org,2002:str") | Some("!!str") => return Ok(Yaml::Str(text.to_string())),
        Some("tag:yaml.org,2002:int") | Some("!!int") => {
            return parse_int(text).map(Yaml::Int).ok_or_else(|| {
                LocatedError::new(
                    loc,
                    format!("'{text}' is tagged !!int but is not an integer"),
                )
            });
        }
        Some(t) if !t.starts_with("tag:yaml.org") && !t.starts_with("!!") => {
            return Err(LocatedError::new(
                loc,
                format!("unsupported YAML tag '{t}' (supported: !vault, !unsafe)"),
            ));
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Yaml::Str(text.to_string()));
    }
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Yaml::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Yaml::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            Yaml::Bool(false)
        }
        _ => {
            if let Some(i) = parse_int(text) {
                Yaml::Int(i)
            } else if let Some(f) = parse_float(text) {
                Yaml::Float(f)
            } else {
                Yaml::Str(text.to_string())
            }
        }
    })
}

/// YAML 1.1 integers as PyYAML reads them: `0644` is octal, `0o644`, `0x1f`, `1_000`.
fn parse_int(text: &str) -> Option<i64> {
    let t = text.replace('_', "");
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, t.strip_prefix('+').unwrap_or(&t).to_string()),
    };
    if body.is_empty() || !body.chars().next()?.is_ascii_digit() {
        return None;
    }
    let v = if let Some(h) = body.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = body.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = body.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse_float(text: &str) -> Option<f64> {
    let t = text.replace('_', "");
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        ".inf" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" => return Some(f64::NEG_INFINITY),
        ".nan" => return Some(f64::NAN),
        _ => {}
    }
    // PyYAML requires a dot or exponent and a leading digit/sign/dot.
    if !(t.contains('.') || lower.contains('e')) {
        return None;
    }
    if !t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
        return None;
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Node {
        parse_str(s, Path::new("t.yml")).expect("parse")
    }

    #[test]
    fn scalars_resolve_like_pyyaml() {
        let n = p("a: yes\nb: 0644\nc: '0644'\nd: 1.5\ne: ~\nf: hello\ng: 0x1f\n");
        assert_eq!(n.get("a").map(|n| &n.value), Some(&Yaml::Bool(true)));
        assert_eq!(n.get("b").map(|n| &n.value), Some(&Yaml::Int(0o644)));
        assert_eq!(
            n.get("c").map(|n| &n.value),
            Some(&Yaml::Str("0644".into()))
        );
        assert_eq!(n.get("d").map(|n| &n.value), Some(&Yaml::Float(1.5)));
        assert_eq!(n.get("e").map(|n| &n.value), Some(&Yaml::Null));
        assert_eq!(n.get("g").map(|n| &n.value), Some(&Yaml::Int(31)));
    }

    #[test]
    fn nodes_keep_line_numbers() {
        let n = p("x: 1\nlist:\n  - a\n  - b\n");
        let list = n.get("list").and_then(|l| l.as_seq()).expect("list");
        assert_eq!(list[1].loc.line, 4);
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_lines() {
        let e = parse_str("a: 1\nb: 2\na: 3\n", Path::new("d.yml")).expect_err("dup");
        assert_eq!(e.loc.line, 3);
        assert!(
            e.msg.contains("duplicate key 'a'") && e.msg.contains("line 1"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn vault_tag_is_kept() {
        let n = p("pw: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n          6162\n");
        assert!(
            matches!(n.get("pw").map(|n| &n.value), Some(Yaml::Vault(s)) if s.starts_with("$ANSIBLE_VAULT"))
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse_str("a: 1\nb: [1, 2\nc: 3\n", Path::new("s.yml")).expect_err("syntax");
        assert!(e.to_string().starts_with("s.yml:"), "{e}");
        assert!(e.msg.contains("YAML syntax error"));
    }

    #[test]
    fn merge_keys_merge() {
        let n = p("base: &b\n  x: 1\nother:\n  <<: *b\n  y: 2\n");
        let o = n.get("other").expect("other");
        assert!(o.get("x").is_some() && o.get("y").is_some());
    }
}
