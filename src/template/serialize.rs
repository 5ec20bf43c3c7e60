//! JSON and YAML output formatted like Python's `json.dumps` and PyYAML's
//! `yaml.dump`, and loaders from JSON/YAML text into minijinja values.

use std::collections::HashMap;
use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};
use saphyr_parser::{Event, Parser, ScalarStyle};

use super::py_float;

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn entries(value: &Value) -> Result<Vec<(Value, Value)>, Error> {
    let mut out = Vec::new();
    for key in value.try_iter()? {
        let item = value.get_item(&key)?;
        out.push((key, item));
    }
    Ok(out)
}

fn float_of(value: &Value) -> Option<f64> {
    f64::try_from(value.clone()).ok()
}

// ---------------------------------------------------------------------------
// JSON

/// Options of Python's `json.dumps` that the filters use.
pub struct JsonOptions {
    pub indent: Option<usize>,
    pub sort_keys: bool,
    pub ensure_ascii: bool,
    /// `,` with an indent, `, ` without (Python's default separators).
    pub item_sep: &'static str,
}

/// Serializes like Python's `json.dumps(value, indent=, sort_keys=, separators=(item_sep, ': '))`.
pub fn to_json(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    json_write(value, opts, 0, &mut out)?;
    Ok(out)
}

fn json_newline(opts: &JsonOptions, level: usize, out: &mut String) {
    if let Some(indent) = opts.indent {
        out.push('\n');
        out.push_str(&" ".repeat(indent * level));
    }
}

fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_key(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
        ValueKind::None => "null".to_string(),
        ValueKind::Number => json_number(key),
        _ => {
            return Err(invalid(format!(
                "keys must be str, int, float, bool or None, not {}",
                key.kind()
            )));
        }
    })
}

fn json_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match float_of(value) {
        Some(f) if f.is_nan() => "NaN".into(),
        Some(f) if f.is_infinite() => if f > 0.0 { "Infinity" } else { "-Infinity" }.into(),
        Some(f) => py_float(f),
        None => value.to_string(),
    }
}

fn json_write(
    value: &Value,
    opts: &JsonOptions,
    level: usize,
    out: &mut String,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {
            value.get_attr("__undefined__")?;
            return Err(Error::from(ErrorKind::UndefinedError));
        }
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&json_number(value)),
        ValueKind::String => {
            json_string(value.as_str().unwrap_or_default(), opts.ensure_ascii, out)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(opts.item_sep);
                }
                json_newline(opts, level + 1, out);
                json_write(item, opts, level + 1, out)?;
            }
            json_newline(opts, level, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut items = entries(value)?;
            if items.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                items.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(opts.item_sep);
                }
                json_newline(opts, level + 1, out);
                json_string(&json_key(k)?, opts.ensure_ascii, out);
                out.push_str(": ");
                json_write(v, opts, level + 1, out)?;
            }
            json_newline(opts, level, out);
            out.push('}');
        }
        ValueKind::Bytes => {
            return Err(invalid("Object of type bytes is not JSON serializable"));
        }
        _ => json_string(&value.to_string(), opts.ensure_ascii, out),
    }
    Ok(())
}

/// Converts parsed JSON into a minijinja value, keeping key order.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json_to_value).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => Value::from_pairs(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_value(v))),
        ),
    }
}

// ---------------------------------------------------------------------------
// YAML output

/// PyYAML's `default_flow_style`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlowStyle {
    /// `None`: flow style for collections of scalars only.
    Auto,
    /// `True`: everything in flow style.
    Flow,
    /// `False`: everything in block style.
    Block,
}

const BEST_WIDTH: usize = 80;

/// Serializes like `yaml.dump(value, indent=indent, default_flow_style=style,
/// allow_unicode=True)` (keys sorted, as PyYAML does by default).
pub fn to_yaml(value: &Value, indent: usize, style: FlowStyle) -> Result<String, Error> {
    let indent = if (2..10).contains(&indent) { indent } else { 2 };
    let mut e = Emitter {
        out: String::new(),
        best_indent: indent,
        style,
        column: 0,
        whitespace: true,
        indention: true,
        indent: None,
        indents: Vec::new(),
        flow_level: 0,
        open_ended: false,
    };
    let node = Node::build(value)?;
    e.node(&node, true, false, false, false)?;
    if !e.out.ends_with('\n') {
        e.line_break();
    }
    // Ansible's dumper never ends a document with `...` (PyYAML's plain one
    // does after a bare scalar).
    Ok(e.out)
}

/// A value prepared for emitting: keys sorted, scalars pre-rendered.
enum Node {
    Scalar { text: String, plain_ok: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn build(value: &Value) -> Result<Node, Error> {
        Ok(match value.kind() {
            ValueKind::Undefined => {
                value.get_attr("__undefined__")?;
                return Err(Error::from(ErrorKind::UndefinedError));
            }
            ValueKind::None => Node::Scalar {
                text: "null".into(),
                plain_ok: true,
            },
            ValueKind::Bool => Node::Scalar {
                text: if value.is_true() { "true" } else { "false" }.into(),
                plain_ok: true,
            },
            ValueKind::Number => {
                let text = if value.is_integer() {
                    value.to_string()
                } else {
                    match float_of(value) {
                        Some(f) if f.is_nan() => ".nan".into(),
                        Some(f) if f.is_infinite() => if f > 0.0 { ".inf" } else { "-.inf" }.into(),
                        Some(f) => {
                            let r = py_float(f).to_lowercase();
                            if !r.contains('.') && r.contains('e') {
                                r.replacen('e', ".0e", 1)
                            } else {
                                r
                            }
                        }
                        None => value.to_string(),
                    }
                };
                Node::Scalar {
                    text,
                    plain_ok: true,
                }
            }
            ValueKind::String => {
                let s = value.as_str().unwrap_or_default();
                Node::Scalar {
                    text: s.to_string(),
                    plain_ok: !resolves_to_non_string(s),
                }
            }
            ValueKind::Seq | ValueKind::Iterable => Node::Seq(
                value
                    .try_iter()?
                    .map(|v| Node::build(&v))
                    .collect::<Result<_, _>>()?,
            ),
            ValueKind::Map => {
                let mut items = entries(value)?;
                items.sort_by(|a, b| a.0.cmp(&b.0));
                Node::Map(
                    items
                        .iter()
                        .map(|(k, v)| Ok((Node::build(k)?, Node::build(v)?)))
                        .collect::<Result<_, Error>>()?,
                )
            }
            _ => {
                let s = value.to_string();
                Node::Scalar {
                    plain_ok: !resolves_to_non_string(&s),
                    text: s,
                }
            }
        })
    }

    fn is_collection(&self) -> bool {
        !matches!(self, Node::Scalar { .. })
    }

    fn is_empty_collection(&self) -> bool {
        match self {
            Node::Seq(s) => s.is_empty(),
            Node::Map(m) => m.is_empty(),
            Node::Scalar { .. } => false,
        }
    }

    /// PyYAML `Auto` style: a collection goes flow when it holds no collections.
    fn is_leaf_collection(&self) -> bool {
        match self {
            Node::Seq(s) => s.iter().all(|n| !n.is_collection()),
            Node::Map(m) => m
                .iter()
                .all(|(k, v)| !k.is_collection() && !v.is_collection()),
            Node::Scalar { .. } => false,
        }
    }
}

/// Would PyYAML's resolver read this plain scalar as something other than a string?
fn resolves_to_non_string(s: &str) -> bool {
    use std::sync::OnceLock;
    static RES: OnceLock<Vec<regex::Regex>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
            r"^(?:<<|=|~|null|Null|NULL|)$",
            r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
        ]
        .iter()
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect()
    });
    res.iter().any(|re| re.is_match(s))
}

struct Analysis {
    multiline: bool,
    allow_flow_plain: bool,
    allow_block_plain: bool,
    allow_single_quoted: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_ws_or_end(c: Option<char>) -> bool {
    matches!(
        c,
        None | Some('\0' | ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
    )
}

/// PyYAML's `Emitter.analyze_scalar` (with `allow_unicode=True`).
fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            multiline: false,
            allow_flow_plain: false,
            allow_block_plain: true,
            allow_single_quoted: true,
        };
    }
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut block_ind = false;
    let mut flow_ind = false;
    let mut line_breaks = false;
    let mut special = false;
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    if text.starts_with("---") || text.starts_with("...") {
        block_ind = true;
        flow_ind = true;
    }
    let mut preceded_ws = true;
    let mut followed_ws = n == 1 || is_ws_or_end(chars.get(1).copied());
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                flow_ind = true;
                block_ind = true;
            }
            if c == '?' || c == ':' {
                flow_ind = true;
                if followed_ws {
                    block_ind = true;
                }
            }
            if c == '-' && followed_ws {
                flow_ind = true;
                block_ind = true;
            }
        } else {
            if ",?[]{}".contains(c) {
                flow_ind = true;
            }
            if c == ':' {
                flow_ind = true;
                if followed_ws {
                    block_ind = true;
                }
            }
            if c == '#' && preceded_ws {
                flow_ind = true;
                block_ind = true;
            }
        }
        if is_break(c) {
            line_breaks = true;
        }
        if !(c == '\n' || (' '..='~').contains(&c)) {
            let printable_unicode = (c == '\u{85}'
                || ('\u{a0}'..='\u{d7ff}').contains(&c)
                || ('\u{e000}'..='\u{fffd}').contains(&c)
                || ('\u{10000}'..'\u{10ffff}').contains(&c))
                && c != '\u{feff}';
            if !printable_unicode {
                special = true;
            }
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == n - 1 {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            if i == 0 {
                leading_break = true;
            }
            if i == n - 1 {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = is_ws_or_end(Some(c));
        followed_ws = i + 1 >= n - 1 || is_ws_or_end(chars.get(i + 2).copied());
    }
    let mut a = Analysis {
        multiline: line_breaks,
        allow_flow_plain: true,
        allow_block_plain: true,
        allow_single_quoted: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
    }
    if break_space {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
        a.allow_single_quoted = false;
    }
    if space_break || special {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
        a.allow_single_quoted = false;
    }
    if line_breaks {
        a.allow_flow_plain = false;
        a.allow_block_plain = false;
    }
    if flow_ind {
        a.allow_flow_plain = false;
    }
    if block_ind {
        a.allow_block_plain = false;
    }
    a
}

struct Emitter {
    out: String,
    best_indent: usize,
    style: FlowStyle,
    column: usize,
    whitespace: bool,
    indention: bool,
    indent: Option<usize>,
    indents: Vec<Option<usize>>,
    flow_level: usize,
    open_ended: bool,
}

impl Emitter {
    fn write(&mut self, s: &str) {
        self.column += s.chars().count();
        self.out.push_str(s);
    }

    fn line_break(&mut self) {
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
        self.out.push('\n');
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.line_break();
        }
        if self.column < indent {
            self.whitespace = true;
            let pad = " ".repeat(indent - self.column);
            self.write(&pad);
        }
    }

    fn indicator(&mut self, ind: &str, need_ws: bool, whitespace: bool, indention: bool) {
        if self.whitespace || !need_ws {
            self.write(ind);
        } else {
            self.write(&format!(" {ind}"));
        }
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
        self.open_ended = false;
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        match self.indent {
            None => self.indent = Some(if flow { self.best_indent } else { 0 }),
            Some(i) if !indentless => self.indent = Some(i + self.best_indent),
            Some(_) => {}
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().flatten();
    }

    fn node(
        &mut self,
        node: &Node,
        root: bool,
        seq_ctx: bool,
        map_ctx: bool,
        simple_key: bool,
    ) -> Result<(), Error> {
        match node {
            Node::Scalar { text, plain_ok } => {
                self.increase_indent(true, false);
                self.scalar(text, *plain_ok, root, simple_key);
                self.pop_indent();
            }
            Node::Seq(items) => {
                let flow = self.flow_level > 0
                    || node.is_empty_collection()
                    || match self.style {
                        FlowStyle::Flow => true,
                        FlowStyle::Block => false,
                        FlowStyle::Auto => node.is_leaf_collection(),
                    };
                if flow {
                    self.flow_sequence(items)?;
                } else {
                    let indentless = map_ctx && !self.indention;
                    self.increase_indent(false, indentless);
                    for item in items {
                        self.write_indent();
                        self.indicator("-", true, false, true);
                        self.node(item, false, true, false, false)?;
                    }
                    self.pop_indent();
                }
            }
            Node::Map(entries) => {
                let flow = self.flow_level > 0
                    || node.is_empty_collection()
                    || match self.style {
                        FlowStyle::Flow => true,
                        FlowStyle::Block => false,
                        FlowStyle::Auto => node.is_leaf_collection(),
                    };
                if flow {
                    self.flow_mapping(entries)?;
                } else {
                    self.increase_indent(false, false);
                    for (k, v) in entries {
                        self.write_indent();
                        if is_simple_key(k) {
                            self.node(k, false, false, true, true)?;
                            self.indicator(":", false, false, false);
                        } else {
                            self.indicator("?", true, false, true);
                            self.node(k, false, false, true, false)?;
                            self.write_indent();
                            self.indicator(":", true, false, true);
                        }
                        self.node(v, false, false, true, false)?;
                    }
                    self.pop_indent();
                }
            }
        }
        let _ = seq_ctx;
        Ok(())
    }

    fn flow_sequence(&mut self, items: &[Node]) -> Result<(), Error> {
        self.indicator("[", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            self.node(item, false, true, false, false)?;
        }
        self.pop_indent();
        self.flow_level -= 1;
        self.indicator("]", false, false, false);
        Ok(())
    }

    fn flow_mapping(&mut self, entries: &[(Node, Node)]) -> Result<(), Error> {
        self.indicator("{", true, true, false);
        self.flow_level += 1;
        self.increase_indent(true, false);
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                self.indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            if is_simple_key(k) {
                self.node(k, false, false, true, true)?;
                self.indicator(":", false, false, false);
            } else {
                self.indicator("?", true, false, false);
                self.node(k, false, false, true, false)?;
                self.indicator(":", true, false, false);
            }
            self.node(v, false, false, true, false)?;
        }
        self.pop_indent();
        self.flow_level -= 1;
        self.indicator("}", false, false, false);
        Ok(())
    }

    fn scalar(&mut self, text: &str, plain_ok: bool, root: bool, simple_key: bool) {
        let a = analyze(text);
        let plain_allowed = if self.flow_level > 0 {
            a.allow_flow_plain
        } else {
            a.allow_block_plain
        };
        if plain_ok && !(simple_key && (text.is_empty() || a.multiline)) && plain_allowed {
            self.plain(text, !simple_key, root);
        } else if a.allow_single_quoted && !(simple_key && a.multiline) {
            self.single_quoted(text, !simple_key);
        } else {
            self.double_quoted(text);
        }
    }

    fn plain(&mut self, text: &str, split: bool, root: bool) {
        if root {
            self.open_ended = true;
        }
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        let (mut start, mut end) = (0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH && split {
                        self.write_indent();
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        let s: String = chars[start..end].iter().collect();
                        self.write(&s);
                    }
                    start = end;
                }
            } else if breaks {
                if ch.is_none_or(|c| !is_break(c)) {
                    if chars[start] == '\n' {
                        self.line_break();
                    }
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.line_break();
                        } else {
                            self.out.push(br);
                            self.column = 0;
                        }
                    }
                    self.write_indent();
                    self.whitespace = false;
                    self.indention = false;
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || is_break(c)) {
                let s: String = chars[start..end].iter().collect();
                self.write(&s);
                start = end;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
            end += 1;
        }
    }

    fn single_quoted(&mut self, text: &str, split: bool) {
        self.indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        let (mut start, mut end) = (0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end
                        && self.column > BEST_WIDTH
                        && split
                        && start != 0
                        && end != chars.len()
                    {
                        self.write_indent();
                    } else {
                        let s: String = chars[start..end].iter().collect();
                        self.write(&s);
                    }
                    start = end;
                }
            } else if breaks {
                if ch.is_none_or(|c| !is_break(c)) {
                    if chars[start] == '\n' {
                        self.line_break();
                    }
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.line_break();
                        } else {
                            self.out.push(br);
                            self.column = 0;
                        }
                    }
                    self.write_indent();
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || is_break(c) || c == '\'') && start < end {
                let s: String = chars[start..end].iter().collect();
                self.write(&s);
                start = end;
            }
            if ch == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
            end += 1;
        }
        self.indicator("'", false, false, false);
    }

    fn double_quoted(&mut self, text: &str) {
        self.indicator("\"", true, false, false);
        let mut s = String::new();
        for c in text.chars() {
            let esc = match c {
                '\0' => Some("0"),
                '\x07' => Some("a"),
                '\x08' => Some("b"),
                '\t' => Some("t"),
                '\n' => Some("n"),
                '\x0b' => Some("v"),
                '\x0c' => Some("f"),
                '\r' => Some("r"),
                '\x1b' => Some("e"),
                '"' => Some("\""),
                '\\' => Some("\\"),
                '\u{85}' => Some("N"),
                '\u{a0}' => Some("_"),
                '\u{2028}' => Some("L"),
                '\u{2029}' => Some("P"),
                _ => None,
            };
            if let Some(e) = esc {
                s.push('\\');
                s.push_str(e);
            } else if (' '..='~').contains(&c)
                || (('\u{a0}'..='\u{d7ff}').contains(&c) || ('\u{e000}'..='\u{fffd}').contains(&c))
                    && c != '\u{feff}'
            {
                s.push(c);
            } else if (c as u32) <= 0xff {
                let _ = write!(s, "\\x{:02X}", c as u32);
            } else if (c as u32) <= 0xffff {
                let _ = write!(s, "\\u{:04X}", c as u32);
            } else {
                let _ = write!(s, "\\U{:08X}", c as u32);
            }
        }
        self.write(&s);
        self.indicator("\"", false, false, false);
    }
}

fn is_simple_key(node: &Node) -> bool {
    match node {
        Node::Scalar { text, .. } => text.chars().count() < 128 && !text.chars().any(is_break),
        other => other.is_empty_collection(),
    }
}

// ---------------------------------------------------------------------------
// YAML input

/// Loads the first YAML document of `text` like PyYAML's `yaml.load`
/// (YAML 1.1 scalars: `yes`/`no`/`on`/`off` are booleans).
pub fn from_yaml(text: &str) -> Result<Value, Error> {
    Ok(load_yaml(text, false)?
        .into_iter()
        .next()
        .unwrap_or(Value::from(())))
}

/// Every document of a YAML stream (`from_yaml_all`).
pub fn from_yaml_all(text: &str) -> Result<Value, Error> {
    Ok(Value::from(load_yaml(text, true)?))
}

fn load_yaml(text: &str, all: bool) -> Result<Vec<Value>, Error> {
    enum Frame {
        Seq(Vec<Value>, usize),
        Map(Vec<(Value, Value)>, Option<Value>, usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Value> = HashMap::new();
    let mut result: Option<Value> = None;
    let mut docs: Vec<Value> = Vec::new();

    fn push(stack: &mut [Frame], result: &mut Option<Value>, v: Value) {
        match stack.last_mut() {
            Some(Frame::Seq(items, _)) => items.push(v),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                Some(k) => {
                    if let Some(slot) = entries.iter_mut().find(|(ek, _)| *ek == k) {
                        slot.1 = v;
                    } else {
                        entries.push((k, v));
                    }
                }
                None => *pending = Some(v),
            },
            None => {
                if result.is_none() {
                    *result = Some(v);
                }
            }
        }
    }

    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| invalid(format!("from_yaml: {e}")))?;
        let _ = span;
        match event {
            Event::DocumentEnd => {
                if let Some(doc) = result.take() {
                    docs.push(doc);
                    if !all {
                        break;
                    }
                } else if all {
                    docs.push(Value::from(()));
                }
            }
            Event::Scalar(s, style, anchor, tag) => {
                let v = yaml_scalar(&s, style, tag.as_ref().map(|t| t.suffix.as_str()));
                if anchor > 0 {
                    anchors.insert(anchor, v.clone());
                }
                push(&mut stack, &mut result, v);
            }
            Event::Alias(id) => {
                let v = anchors.get(&id).cloned().unwrap_or(Value::from(()));
                push(&mut stack, &mut result, v);
            }
            Event::SequenceStart(anchor, _) => stack.push(Frame::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => stack.push(Frame::Map(Vec::new(), None, anchor)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (v, anchor) = match stack.pop() {
                    Some(Frame::Seq(items, a)) => (Value::from(items), a),
                    Some(Frame::Map(entries, _, a)) => (Value::from_pairs(entries), a),
                    None => return Err(invalid("from_yaml: unbalanced document")),
                };
                if anchor > 0 {
                    anchors.insert(anchor, v.clone());
                }
                push(&mut stack, &mut result, v);
            }
            _ => {}
        }
    }
    if let Some(doc) = result {
        docs.push(doc);
    }
    Ok(docs)
}

fn yaml_scalar(s: &str, style: ScalarStyle, tag: Option<&str>) -> Value {
    match tag {
        Some("str") => return Value::from(s),
        Some("int") => {
            if let Some(i) = yaml_int(s) {
                return Value::from(i);
            }
        }
        Some("float") => {
            if let Ok(f) = s.replace('_', "").parse::<f64>() {
                return Value::from(f);
            }
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Value::from(s);
    }
    let t = s;
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Value::from(()),
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::from(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::from(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::from(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::from(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::from(f64::NAN),
        _ => {}
    }
    if resolves_to_non_string(t) {
        if let Some(i) = yaml_int(t) {
            return Value::from(i);
        }
        if let Ok(f) = t.replace('_', "").parse::<f64>() {
            return Value::from(f);
        }
    }
    Value::from(t)
}

fn yaml_int(s: &str) -> Option<i64> {
    let s = s.replace('_', "");
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    let n = if let Some(h) = body.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = body.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    Some(if neg { -n } else { n })
}

// The expected outputs of these serializers come from PyYAML and Python's
// json through ansible-core: tests/template_oracle/cases/serialize.yml,
// compared by tests/template_oracle.rs.
