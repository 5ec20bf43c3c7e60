//! Ansible's Jinja2 filters and tests for minijinja.
//!
//! Builtin minijinja filters that already behave like Ansible's (`default`,
//! `d`, `lower`, `upper`, `replace`, `join`, `split`, `length`, `first`,
//! `last`, `map`, `select`, `reject`, `selectattr`, `rejectattr`, `list`,
//! `unique`, `zip`, `min`, `max`, `sum`, `urlencode`, ...) are kept;
//! the ones below are added or replace the builtin.

use std::cmp::Ordering;

use base64::Engine as _;
use md5::Md5;
use minijinja::value::{Kwargs, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind};
use regex::Regex;
use sha1::Sha1;
use sha2::Digest;

use super::serialize;
use super::{py_repr, py_str};

/// Error source attached by the `mandatory` filter; carries the custom
/// message when one was given.
#[derive(Debug)]
pub struct MandatoryError(pub Option<String>);

impl std::fmt::Display for MandatoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(msg) => f.write_str(msg),
            None => f.write_str("Mandatory variable not defined."),
        }
    }
}

impl std::error::Error for MandatoryError {}

/// Registers the Ansible filters and tests on `env`.
pub fn register(env: &mut Environment<'_>) {
    env.add_filter("mandatory", mandatory);
    env.add_filter("bool", to_bool_filter);
    env.add_filter("int", int);
    env.add_filter("string", string);
    env.add_filter("regex_replace", regex_replace);
    env.add_filter("regex_search", regex_search);
    env.add_filter("regex_findall", regex_findall);
    env.add_filter("regex_escape", regex_escape);
    env.add_filter("combine", combine);
    env.add_filter("dict2items", dict2items);
    env.add_filter("items2dict", items2dict);
    env.add_filter("to_json", to_json);
    env.add_filter("to_nice_json", to_nice_json);
    env.add_filter("from_json", from_json);
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_nice_yaml);
    env.add_filter("from_yaml", from_yaml);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("hash", hash);
    env.add_filter("md5", md5);
    env.add_filter("sha1", sha1);
    env.add_filter("checksum", sha1);
    env.add_filter("basename", basename);
    env.add_filter("dirname", dirname);
    env.add_filter("splitext", splitext);
    env.add_filter("quote", quote);
    env.add_filter("ternary", ternary);
    env.add_filter("flatten", flatten);
    env.add_filter("product", product);
    env.add_filter("difference", difference);
    env.add_filter("intersect", intersect);
    env.add_filter("union", union);
    env.add_filter("symmetric_difference", symmetric_difference);
    env.add_filter("comment", comment);
    env.add_filter("type_debug", type_debug);
    env.add_filter("center", center);
    env.add_filter("float", float);
    env.add_filter("wordcount", wordcount);
    env.add_filter("replace", replace);
    env.add_filter("truncate", truncate);
    env.add_filter("urlencode", urlencode);
    env.add_filter("zip_longest", zip_longest);
    env.add_filter("sort", sort);
    env.add_filter("sum", sum);
    env.add_filter("from_yaml_all", from_yaml_all);
    env.add_test("sequence", test_sequence);
    env.add_test("abs", test_abs);
    env.add_test("callable", test_callable);
    env.add_global(
        "cycler",
        Value::from_function(minijinja_contrib::globals::cycler),
    );
    env.add_global(
        "joiner",
        Value::from_function(minijinja_contrib::globals::joiner),
    );
    env.add_global("dict", Value::from_function(dict));

    env.add_test("match", test_match);
    env.add_test("search", test_search);
    env.add_test("regex", test_regex);
    env.add_test("succeeded", test_success);
    env.add_test("success", test_success);
    env.add_test("successful", test_success);
    env.add_test("failed", test_failed);
    env.add_test("failure", test_failed);
    env.add_test("changed", test_changed);
    env.add_test("change", test_changed);
    env.add_test("skipped", test_skipped);
    env.add_test("skip", test_skipped);
    env.add_test("truthy", test_truthy);
    env.add_test("falsy", test_falsy);
    env.add_test("version", test_version);
    env.add_test("version_compare", test_version);
    env.add_test("subset", test_subset);
    env.add_test("superset", test_superset);
    env.add_test("contains", test_contains);
}

// ---------------------------------------------------------------------------
// helpers

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Fails like minijinja's strict mode does when `value` is undefined.
fn not_undefined(value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        // `get_attr` on an undefined value yields an error that remembers
        // where the value came from, so the message names the variable.
        value.get_attr("__undefined__")?;
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    Ok(())
}

/// Python's `to_text(value)`: strings as is, other values as `str()`.
fn text(value: &Value) -> Result<String, Error> {
    not_undefined(value)?;
    Ok(py_str(value))
}

fn is_sequence(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable)
}

fn items(value: &Value) -> Result<Vec<Value>, Error> {
    not_undefined(value)?;
    Ok(value.try_iter()?.collect())
}

fn map_entries(value: &Value) -> Result<Vec<(Value, Value)>, Error> {
    let mut out = Vec::new();
    for key in value.try_iter()? {
        let item = value.get_item(&key)?;
        out.push((key, item));
    }
    Ok(out)
}

/// Positional values and keyword arguments out of a `Rest<ValueOrKwargs>` (minijinja
/// passes keyword arguments as a final kwargs value).
fn split_kwargs(args: Vec<Value>) -> (Vec<Value>, Vec<(String, Value)>) {
    let mut pos = args;
    let mut kw = Vec::new();
    if pos.last().is_some_and(Value::is_kwargs)
        && let Some(kwv) = pos.pop()
        && let Ok(entries) = map_entries(&kwv)
    {
        kw = entries.into_iter().map(|(k, v)| (py_str(&k), v)).collect();
    }
    (pos, kw)
}

fn kw_get<'a>(kw: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    kw.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn dedup(values: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// filters

/// `mandatory(msg=None)`: fails when the value is undefined.
fn mandatory(value: &Value, msg: Option<String>) -> Result<Value, Error> {
    if !value.is_undefined() {
        return Ok(value.clone());
    }
    if let Some(msg) = msg {
        return Err(Error::new(ErrorKind::UndefinedError, msg.clone())
            .with_source(MandatoryError(Some(msg))));
    }
    let base = match value.get_attr("__mandatory__") {
        Err(err) => err,
        Ok(_) => Error::from(ErrorKind::UndefinedError),
    };
    Err(base.with_source(MandatoryError(None)))
}

/// Ansible's `bool`: 'yes', 'on', 'true', '1' (any case) and 1 are true.
pub fn to_bool(value: &Value) -> bool {
    match value.kind() {
        ValueKind::Bool => value.is_true(),
        ValueKind::String => matches!(
            value.as_str().unwrap_or_default().to_lowercase().as_str(),
            "yes" | "on" | "true" | "1"
        ),
        ValueKind::Number => {
            if value.is_integer() {
                value.as_i64() == Some(1)
            } else {
                f64::try_from(value.clone()).is_ok_and(|f| f == 1.0)
            }
        }
        _ => false,
    }
}

fn to_bool_filter(value: &Value) -> Result<bool, Error> {
    not_undefined(value)?;
    Ok(to_bool(value))
}

/// Jinja's `int(default=0, base=10)`: never fails, returns `default`.
fn int(
    value: &Value,
    default: Option<Value>,
    base: Option<u32>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    not_undefined(value)?;
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0)),
    };
    let base = match base {
        Some(b) => b,
        None => kwargs.get::<Option<u32>>("base")?.unwrap_or(10),
    };
    kwargs.assert_all_used()?;
    Ok(match value.kind() {
        ValueKind::Bool => Value::from(i64::from(value.is_true())),
        ValueKind::Number => {
            if value.is_integer() {
                value.clone()
            } else {
                match f64::try_from(value.clone()) {
                    Ok(f) if f.is_finite() => Value::from(f.trunc() as i64),
                    _ => default,
                }
            }
        }
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            match parse_py_int(s, base) {
                Some(i) => Value::from(i),
                None => match s.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() => Value::from(f.trunc() as i64),
                    _ => default,
                },
            }
        }
        _ => default,
    })
}

/// Python's `int(s, base)`.
fn parse_py_int(s: &str, base: u32) -> Option<i64> {
    let s = s.trim().replace('_', "");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, s.strip_prefix('+').unwrap_or(&s).to_string()),
    };
    let lower = digits.to_ascii_lowercase();
    let (base, digits) = match base {
        0 => {
            if let Some(r) = lower.strip_prefix("0x") {
                (16, r.to_string())
            } else if let Some(r) = lower.strip_prefix("0o") {
                (8, r.to_string())
            } else if let Some(r) = lower.strip_prefix("0b") {
                (2, r.to_string())
            } else {
                (10, lower)
            }
        }
        16 => (16, lower.strip_prefix("0x").unwrap_or(&lower).to_string()),
        8 => (8, lower.strip_prefix("0o").unwrap_or(&lower).to_string()),
        2 => (2, lower.strip_prefix("0b").unwrap_or(&lower).to_string()),
        b if (2..=36).contains(&b) => (b, lower),
        _ => return None,
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let n = i64::from_str_radix(&digits, base).ok()?;
    Some(if neg { -n } else { n })
}

/// Python's `str()` (`True`, `None`, `['a']`), unlike minijinja's builtin.
fn string(value: &Value) -> Result<Value, Error> {
    Ok(Value::from(text(value)?))
}

/// Translates a Python `re` pattern to Rust `regex` syntax.
fn py_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('Z') => out.push_str("\\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn compile_regex(pattern: &str, ignorecase: bool, multiline: bool) -> Result<Regex, Error> {
    regex::RegexBuilder::new(&py_pattern(pattern))
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .build()
        .map_err(|e| invalid(format!("invalid regular expression '{pattern}'")).with_source(e))
}

/// Translates a Python `re.sub` replacement (`\1`, `\g<name>`, `\n`) to
/// Rust's syntax (`${1}`, `${name}`, a newline; `$` escaped).
fn py_replacement(repl: &str) -> String {
    let mut out = String::with_capacity(repl.len());
    let chars: Vec<char> = repl.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            out.push_str("$$");
        } else if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n.is_ascii_digit() {
                let mut group = n.to_string();
                if i + 2 < chars.len() && chars[i + 2].is_ascii_digit() {
                    group.push(chars[i + 2]);
                    i += 1;
                }
                out.push_str(&format!("${{{group}}}"));
                i += 1;
            } else if n == 'g' && chars.get(i + 2) == Some(&'<') {
                let rest: String = chars[i + 3..].iter().collect();
                if let Some(end) = rest.find('>') {
                    out.push_str(&format!("${{{}}}", &rest[..end]));
                    i += 3 + rest[..end].chars().count();
                } else {
                    out.push_str("\\g<");
                    i += 2;
                }
            } else {
                match n {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    'a' => out.push('\x07'),
                    '\\' => out.push('\\'),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                i += 1;
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// `regex_replace(pattern, replacement, ignorecase=False, multiline=False, count=0, mandatory_count=0)`
fn regex_replace(
    value: &Value,
    pattern: Option<String>,
    replacement: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let value = text(value)?;
    let pattern = match pattern {
        Some(p) => p,
        None => kwargs.get::<Option<String>>("pattern")?.unwrap_or_default(),
    };
    let replacement = match replacement {
        Some(r) => r,
        None => kwargs
            .get::<Option<String>>("replacement")?
            .unwrap_or_default(),
    };
    let ignorecase = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    let count = kwargs.get::<Option<usize>>("count")?.unwrap_or(0);
    let mandatory_count = kwargs.get::<Option<usize>>("mandatory_count")?.unwrap_or(0);
    kwargs.assert_all_used()?;
    let re = compile_regex(&pattern, ignorecase, multiline)?;
    if mandatory_count > 0 {
        let found = re.find_iter(&value).count();
        let found = if count > 0 { found.min(count) } else { found };
        if found != mandatory_count {
            return Err(invalid(format!(
                "'{pattern}' should match {mandatory_count} times, but matches {found} times in '{value}'"
            )));
        }
    }
    Ok(re
        .replacen(&value, count, py_replacement(&replacement).as_str())
        .into_owned())
}

/// `regex_search(regex, '\\1', '\\g<name>', ignorecase=, multiline=)`:
/// the match, a list of the requested groups, or none.
fn regex_search(value: &Value, regex: String, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let value = text(value)?;
    let (pos, kw) = split_kwargs(args.into_values());
    let ignorecase = kw_get(&kw, "ignorecase").is_some_and(Value::is_true);
    let multiline = kw_get(&kw, "multiline").is_some_and(Value::is_true);
    enum Group {
        Index(usize),
        Name(String),
    }
    let mut groups = Vec::new();
    for arg in &pos {
        let arg = text(arg)?;
        if let Some(rest) = arg.strip_prefix("\\g<") {
            let name = rest.strip_suffix('>').unwrap_or(rest).to_string();
            match name.parse::<usize>() {
                Ok(i) => groups.push(Group::Index(i)),
                Err(_) => groups.push(Group::Name(name)),
            }
        } else if let Some(rest) = arg.strip_prefix('\\') {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let idx = digits
                .parse::<usize>()
                .map_err(|_| invalid("Unknown argument"))?;
            groups.push(Group::Index(idx));
        } else {
            return Err(invalid("Unknown argument"));
        }
    }
    let re = compile_regex(&regex, ignorecase, multiline)?;
    let Some(caps) = re.captures(&value) else {
        return Ok(Value::from(()));
    };
    if groups.is_empty() {
        return Ok(Value::from(caps.get(0).map_or("", |m| m.as_str())));
    }
    let mut out = Vec::new();
    for g in groups {
        let m = match &g {
            Group::Index(i) => {
                if *i > re.captures_len() - 1 {
                    return Err(invalid(format!("no such group: {i}")));
                }
                caps.get(*i)
            }
            Group::Name(n) => {
                if !re.capture_names().any(|x| x == Some(n.as_str())) {
                    return Err(invalid(format!("no such group: {n}")));
                }
                caps.name(n)
            }
        };
        out.push(m.map_or(Value::from(()), |m| Value::from(m.as_str())));
    }
    Ok(Value::from(out))
}

/// `regex_findall(regex, multiline=False, ignorecase=False)` like `re.findall`.
fn regex_findall(value: &Value, regex: String, kwargs: Kwargs) -> Result<Value, Error> {
    let value = text(value)?;
    let ignorecase = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let re = compile_regex(&regex, ignorecase, multiline)?;
    let ngroups = re.captures_len() - 1;
    let mut out = Vec::new();
    for caps in re.captures_iter(&value) {
        let group = |i: usize| Value::from(caps.get(i).map_or("", |m| m.as_str()));
        match ngroups {
            0 => out.push(group(0)),
            1 => out.push(group(1)),
            n => out.push(Value::from((1..=n).map(group).collect::<Vec<_>>())),
        }
    }
    Ok(Value::from(out))
}

/// `regex_escape(re_type='python')` like Python's `re.escape`.
fn regex_escape(value: &Value, re_type: Option<String>) -> Result<String, Error> {
    let s = text(value)?;
    let special: &str = match re_type.as_deref().unwrap_or("python") {
        "python" => "()[]{}?*+-|^$\\.&~# \t\n\r\x0b\x0c",
        "posix_basic" => "].[^$*\\",
        "posix_extended" => "^$.*+?[]|(){}\\",
        other => return Err(invalid(format!("Invalid regex type ({other})"))),
    };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// Ansible's `merge_hash(x, y, recursive, list_merge)`: `y` wins.
fn merge_hash(x: &Value, y: &Value, recursive: bool, list_merge: &str) -> Result<Value, Error> {
    let mut out = map_entries(x)?;
    for (key, yv) in map_entries(y)? {
        let Some(slot) = out.iter_mut().find(|(k, _)| *k == key) else {
            out.push((key, yv));
            continue;
        };
        let xv = slot.1.clone();
        slot.1 = if xv.kind() == ValueKind::Map && yv.kind() == ValueKind::Map {
            if recursive {
                merge_hash(&xv, &yv, recursive, list_merge)?
            } else {
                yv
            }
        } else if is_sequence(&xv) && is_sequence(&yv) {
            let xl = items(&xv)?;
            let yl = items(&yv)?;
            match list_merge {
                "replace" => yv,
                "keep" => xv,
                "append" => Value::from([xl, yl].concat()),
                "prepend" => Value::from([yl, xl].concat()),
                "append_rp" => Value::from(
                    xl.into_iter()
                        .filter(|v| !yl.contains(v))
                        .chain(yl.iter().cloned())
                        .collect::<Vec<_>>(),
                ),
                "prepend_rp" => Value::from(
                    yl.iter()
                        .cloned()
                        .chain(xl.into_iter().filter(|v| !yl.contains(v)))
                        .collect::<Vec<_>>(),
                ),
                other => {
                    return Err(invalid(format!(
                        "merge_hash: 'list_merge' argument can only be equal to 'replace', 'keep', 'append', 'prepend', 'append_rp' or 'prepend_rp', got '{other}'"
                    )));
                }
            }
        } else {
            yv
        };
    }
    Ok(Value::from_pairs(out))
}

/// `combine(*dicts, recursive=False, list_merge='replace')`.
fn combine(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    not_undefined(value)?;
    let (pos, kw) = split_kwargs(args.into_values());
    let mut recursive = false;
    let mut list_merge = "replace".to_string();
    for (k, v) in &kw {
        match k.as_str() {
            "recursive" => recursive = v.is_true(),
            "list_merge" => list_merge = text(v)?,
            _ => {
                return Err(invalid(
                    "'recursive' and 'list_merge' are the only valid keyword arguments",
                ));
            }
        }
    }
    let mut dicts = Vec::new();
    for term in std::iter::once(value).chain(pos.iter()) {
        not_undefined(term)?;
        if is_sequence(term) {
            dicts.extend(items(term)?);
        } else {
            dicts.push(term.clone());
        }
    }
    for d in &dicts {
        if d.kind() != ValueKind::Map {
            return Err(invalid(format!(
                "failed to combine variables, expected dicts but got a '{}'",
                type_name(d)
            )));
        }
    }
    let mut iter = dicts.into_iter();
    let Some(mut result) = iter.next() else {
        return Ok(Value::from_pairs(Vec::<(Value, Value)>::new()));
    };
    for d in iter {
        result = merge_hash(&result, &d, recursive, &list_merge)?;
    }
    Ok(result)
}

/// `dict2items(key_name='key', value_name='value')`.
fn dict2items(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    not_undefined(value)?;
    let key_name = kwargs
        .get::<Option<String>>("key_name")?
        .unwrap_or("key".into());
    let value_name = kwargs
        .get::<Option<String>>("value_name")?
        .unwrap_or("value".into());
    kwargs.assert_all_used()?;
    if value.kind() != ValueKind::Map {
        return Err(invalid(format!(
            "dict2items requires a dictionary, got {} instead.",
            type_name(value)
        )));
    }
    Ok(Value::from(
        map_entries(value)?
            .into_iter()
            .map(|(k, v)| Value::from_pairs([(key_name.clone(), k), (value_name.clone(), v)]))
            .collect::<Vec<_>>(),
    ))
}

/// `items2dict(key_name='key', value_name='value')`.
fn items2dict(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    not_undefined(value)?;
    let key_name = kwargs
        .get::<Option<String>>("key_name")?
        .unwrap_or("key".into());
    let value_name = kwargs
        .get::<Option<String>>("value_name")?
        .unwrap_or("value".into());
    kwargs.assert_all_used()?;
    if !is_sequence(value) {
        return Err(invalid(format!(
            "items2dict requires a list, got {} instead.",
            type_name(value)
        )));
    }
    let mut out: Vec<(Value, Value)> = Vec::new();
    for item in items(value)? {
        if item.kind() != ValueKind::Map {
            return Err(invalid(format!(
                "items2dict requires a list of dictionaries, got {} instead.",
                py_repr(value)
            )));
        }
        let k = item.get_attr(&key_name)?;
        let v = item.get_attr(&value_name)?;
        if k.is_undefined() || v.is_undefined() {
            return Err(invalid(format!(
                "items2dict requires each dictionary in the list to contain the keys '{key_name}' and '{value_name}', got {} instead.",
                py_repr(value)
            )));
        }
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(Value::from_pairs(out))
}

/// `to_json(indent=None, sort_keys=False)` like Python's `json.dumps`.
fn to_json(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent = kwargs.get::<Option<usize>>("indent")?;
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let opts = serialize::JsonOptions {
        indent,
        sort_keys,
        ensure_ascii,
        item_sep: if indent.is_some() { "," } else { ", " },
    };
    serialize::to_json(value, &opts)
}

/// `to_nice_json(indent=4, sort_keys=True)`.
fn to_nice_json(value: &Value, indent: Option<usize>, kwargs: Kwargs) -> Result<String, Error> {
    let indent = match indent {
        Some(i) => i,
        None => kwargs.get::<Option<usize>>("indent")?.unwrap_or(4),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(true);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let opts = serialize::JsonOptions {
        indent: Some(indent),
        sort_keys,
        ensure_ascii,
        item_sep: ",",
    };
    serialize::to_json(value, &opts)
}

fn from_json(value: &Value) -> Result<Value, Error> {
    let s = text(value)?;
    let parsed: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| invalid("from_json: invalid JSON").with_source(e))?;
    Ok(serialize::json_to_value(&parsed))
}

/// `to_yaml(indent=2, default_flow_style=None)`.
fn to_yaml(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent = kwargs.get::<Option<usize>>("indent")?.unwrap_or(2);
    let flow = kwargs.get::<Option<Value>>("default_flow_style")?;
    kwargs.assert_all_used()?;
    let style = match flow {
        None => serialize::FlowStyle::Auto,
        Some(v) if v.is_none() => serialize::FlowStyle::Auto,
        Some(v) if v.is_true() => serialize::FlowStyle::Flow,
        Some(_) => serialize::FlowStyle::Block,
    };
    serialize::to_yaml(value, indent, style)
}

/// `to_nice_yaml(indent=4)`: block style.
fn to_nice_yaml(value: &Value, indent: Option<usize>, kwargs: Kwargs) -> Result<String, Error> {
    let indent = match indent {
        Some(i) => i,
        None => kwargs.get::<Option<usize>>("indent")?.unwrap_or(4),
    };
    let flow = kwargs
        .get::<Option<bool>>("default_flow_style")?
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let style = if flow {
        serialize::FlowStyle::Flow
    } else {
        serialize::FlowStyle::Block
    };
    serialize::to_yaml(value, indent, style)
}

fn from_yaml(value: &Value) -> Result<Value, Error> {
    not_undefined(value)?;
    if value.is_none() {
        return Ok(Value::from(()));
    }
    match value.as_str() {
        Some(s) => serialize::from_yaml(s),
        None => Ok(value.clone()),
    }
}

/// `b64encode(encoding='utf-8', urlsafe=False)`.
fn b64encode(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let s = text(value)?;
    let urlsafe = kwargs.get::<Option<bool>>("urlsafe")?.unwrap_or(false);
    let _ = kwargs.get::<Option<String>>("encoding")?;
    kwargs.assert_all_used()?;
    Ok(if urlsafe {
        base64::engine::general_purpose::URL_SAFE.encode(s.as_bytes())
    } else {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    })
}

/// `b64decode(encoding='utf-8', urlsafe=False)`; invalid UTF-8 is replaced.
fn b64decode(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let s = text(value)?;
    let urlsafe = kwargs.get::<Option<bool>>("urlsafe")?.unwrap_or(false);
    let _ = kwargs.get::<Option<String>>("encoding")?;
    kwargs.assert_all_used()?;
    let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let engine = if urlsafe {
        base64::engine::general_purpose::URL_SAFE_PAD_INDIFFERENT
    } else {
        base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
    };
    let bytes = engine
        .decode(cleaned.as_bytes())
        .map_err(|e| invalid("b64decode: invalid base64 data").with_source(e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn hex_digest<D: Digest>(data: &[u8]) -> String {
    hex::encode(D::digest(data))
}

/// `hash(hashtype='sha1')`: md5, sha1, sha224, sha256, sha384, sha512.
fn hash(value: &Value, hashtype: Option<String>) -> Result<String, Error> {
    let data = text(value)?;
    let data = data.as_bytes();
    Ok(match hashtype.as_deref().unwrap_or("sha1") {
        "md5" => hex_digest::<Md5>(data),
        "sha1" => hex_digest::<Sha1>(data),
        "sha224" => hex_digest::<sha2::Sha224>(data),
        "sha256" => hex_digest::<sha2::Sha256>(data),
        "sha384" => hex_digest::<sha2::Sha384>(data),
        "sha512" => hex_digest::<sha2::Sha512>(data),
        other => return Err(invalid(format!("unsupported hash type {other}"))),
    })
}

fn md5(value: &Value) -> Result<String, Error> {
    Ok(hex_digest::<Md5>(text(value)?.as_bytes()))
}

fn sha1(value: &Value) -> Result<String, Error> {
    Ok(hex_digest::<Sha1>(text(value)?.as_bytes()))
}

/// `os.path.split` for POSIX paths.
fn path_split(p: &str) -> (String, String) {
    let i = p.rfind('/').map_or(0, |i| i + 1);
    let (head, tail) = p.split_at(i);
    let head = if !head.is_empty() && head.chars().any(|c| c != '/') {
        head.trim_end_matches('/')
    } else {
        head
    };
    (head.to_string(), tail.to_string())
}

fn basename(value: &Value) -> Result<String, Error> {
    Ok(path_split(&text(value)?).1)
}

fn dirname(value: &Value) -> Result<String, Error> {
    Ok(path_split(&text(value)?).0)
}

/// `os.path.splitext`: `[root, ext]`.
fn splitext(value: &Value) -> Result<Value, Error> {
    let p = text(value)?;
    let sep = p.rfind('/').map_or(0, |i| i + 1);
    if let Some(dot) = p.rfind('.')
        && dot >= sep
        && p[sep..dot].chars().any(|c| c != '.')
    {
        return Ok(Value::from(vec![
            p[..dot].to_string(),
            p[dot..].to_string(),
        ]));
    }
    Ok(Value::from(vec![p, String::new()]))
}

/// Python's `shlex.quote`.
pub fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
    {
        return s.into();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

fn quote(value: &Value) -> Result<String, Error> {
    not_undefined(value)?;
    if value.is_none() {
        return Ok(shell_quote(""));
    }
    Ok(shell_quote(&text(value)?))
}

/// `ternary(true_val, false_val, none_val=None)`.
fn ternary(
    value: &Value,
    true_val: Value,
    false_val: Value,
    none_val: Option<Value>,
) -> Result<Value, Error> {
    not_undefined(value)?;
    if value.is_none()
        && let Some(n) = none_val.filter(|n| !n.is_none())
    {
        return Ok(n);
    }
    Ok(if value.is_true() { true_val } else { false_val })
}

fn flatten_into(
    list: &Value,
    levels: Option<i64>,
    skip_nulls: bool,
    out: &mut Vec<Value>,
) -> Result<(), Error> {
    for element in items(list)? {
        if skip_nulls && (element.is_none() || matches!(element.as_str(), Some("None" | "null"))) {
            continue;
        }
        if is_sequence(&element) {
            match levels {
                None => flatten_into(&element, None, skip_nulls, out)?,
                Some(l) if l >= 1 => flatten_into(&element, Some(l - 1), skip_nulls, out)?,
                Some(_) => out.push(element),
            }
        } else {
            out.push(element);
        }
    }
    Ok(())
}

/// `flatten(levels=None, skip_nulls=True)`.
fn flatten(value: &Value, levels: Option<i64>, kwargs: Kwargs) -> Result<Value, Error> {
    let levels = match levels {
        Some(l) => Some(l),
        None => kwargs.get::<Option<i64>>("levels")?,
    };
    let skip_nulls = kwargs.get::<Option<bool>>("skip_nulls")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    flatten_into(value, levels, skip_nulls, &mut out)?;
    Ok(Value::from(out))
}

/// `itertools.product(a, *others)`: list of lists.
fn product(value: &Value, others: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let (pos, kw) = split_kwargs(others.into_values());
    let repeat = match kw_get(&kw, "repeat") {
        Some(r) => r
            .as_usize()
            .ok_or_else(|| invalid("repeat must be an integer"))?,
        None => 1,
    };
    let mut pools = vec![items(value)?];
    for o in &pos {
        pools.push(items(o)?);
    }
    let pools: Vec<Vec<Value>> = (0..repeat).flat_map(|_| pools.clone()).collect();
    let mut result: Vec<Vec<Value>> = vec![Vec::new()];
    for pool in &pools {
        let mut next = Vec::with_capacity(result.len() * pool.len());
        for prefix in &result {
            for item in pool {
                let mut combo = prefix.clone();
                combo.push(item.clone());
                next.push(combo);
            }
        }
        result = next;
    }
    Ok(Value::from(
        result.into_iter().map(Value::from).collect::<Vec<_>>(),
    ))
}

fn difference(a: &Value, b: &Value) -> Result<Value, Error> {
    let bl = items(b)?;
    Ok(Value::from(dedup(
        items(a)?.into_iter().filter(|x| !bl.contains(x)).collect(),
    )))
}

fn intersect(a: &Value, b: &Value) -> Result<Value, Error> {
    let bl = items(b)?;
    Ok(Value::from(dedup(
        items(a)?.into_iter().filter(|x| bl.contains(x)).collect(),
    )))
}

fn union(a: &Value, b: &Value) -> Result<Value, Error> {
    Ok(Value::from(dedup([items(a)?, items(b)?].concat())))
}

fn symmetric_difference(a: &Value, b: &Value) -> Result<Value, Error> {
    let al = items(a)?;
    let bl = items(b)?;
    let both: Vec<Value> = al.iter().filter(|x| bl.contains(x)).cloned().collect();
    Ok(Value::from(
        dedup([al, bl].concat())
            .into_iter()
            .filter(|x| !both.contains(x))
            .collect::<Vec<_>>(),
    ))
}

/// `comment(style='plain', decoration=, prefix=, postfix=, beginning=, end=, ...)`.
fn comment(value: &Value, style: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let text_in = text(value)?;
    let style = match style {
        Some(s) => s,
        None => kwargs
            .get::<Option<String>>("style")?
            .unwrap_or("plain".into()),
    };
    let (beginning, decoration, end) = match style.as_str() {
        "plain" => ("", "# ", ""),
        "erlang" => ("", "% ", ""),
        "c" => ("", "// ", ""),
        "cblock" => ("/*", " * ", " */"),
        "xml" => ("<!--", " - ", "-->"),
        other => return Err(invalid(format!("Invalid style '{other}'."))),
    };
    let get = |name: &str, default: String| -> Result<String, Error> {
        Ok(match kwargs.get::<Option<Value>>(name)? {
            Some(v) => text(&v)?,
            None => default,
        })
    };
    let prepostfix = get("decoration", decoration.to_string())?;
    let newline = get("newline", "\n".into())?;
    let beginning = get("beginning", beginning.into())?;
    let prefix = get("prefix", prepostfix.trim_end().to_string())?;
    let postfix = get("postfix", prepostfix.trim_end().to_string())?;
    let end = get("end", end.into())?;
    let decoration = prepostfix.clone();
    let prefix_count = kwargs.get::<Option<usize>>("prefix_count")?.unwrap_or(1);
    let postfix_count = kwargs.get::<Option<usize>>("postfix_count")?.unwrap_or(1);
    kwargs.assert_all_used()?;

    let mut out = String::new();
    if !beginning.is_empty() {
        out.push_str(&beginning);
        out.push_str(&newline);
    }
    if !prefix.is_empty() {
        let unit = if prefix != newline {
            format!("{prefix}{newline}")
        } else {
            newline.clone()
        };
        out.push_str(&unit.repeat(prefix_count));
    }
    let body = format!(
        "{decoration}{}",
        text_in.replace(&newline, &format!("{newline}{decoration}"))
    );
    let body = body.replace(
        &format!("{decoration}{newline}"),
        &format!("{}{newline}", decoration.trim_end()),
    );
    out.push_str(&body);
    for _ in 0..postfix_count {
        out.push_str(&newline);
        out.push_str(&postfix);
    }
    if !end.is_empty() {
        out.push_str(&newline);
        out.push_str(&end);
    }
    Ok(out)
}

/// Python's type name of a value (`str`, `int`, `list`, `NoneType`, ...).
pub fn python_type_name(value: &Value) -> &'static str {
    type_name(value)
}

/// Python's type name of a value.
fn type_name(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::Undefined => "AnsibleUndefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number => {
            if value.is_integer() {
                "int"
            } else {
                "float"
            }
        }
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

/// Jinja's `center(width=80)`: Python's `str.center`.
fn center(value: &Value, width: Option<usize>) -> Result<String, Error> {
    let s = text(value)?;
    let width = width.unwrap_or(80);
    let len = s.chars().count();
    if width <= len {
        return Ok(s);
    }
    let pad = width - len;
    // Python puts the extra space on the left when the string is odd-length.
    let left = pad / 2 + (pad & width & 1);
    Ok(format!("{}{s}{}", " ".repeat(left), " ".repeat(pad - left)))
}

/// Jinja's `float(default=0.0)`: Python's `float()` of the value, else `default`.
fn float(value: &Value, default: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    not_undefined(value)?;
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0.0)),
    };
    kwargs.assert_all_used()?;
    Ok(match value.kind() {
        ValueKind::Bool => Value::from(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).map_or(default, Value::from),
        ValueKind::String => {
            py_float_parse(value.as_str().unwrap_or_default()).map_or(default, Value::from)
        }
        _ => default,
    })
}

/// Python's `float(str)`: surrounding whitespace, `_` between digits,
/// `inf`/`nan` in any case.
fn py_float_parse(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok();
    }
    if t.is_empty()
        || t.starts_with('_')
        || t.ends_with('_')
        || t.contains("__")
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE_".contains(c))
    {
        return None;
    }
    t.replace('_', "").parse::<f64>().ok()
}

/// Jinja's `wordcount`: the number of `\w+` runs.
fn wordcount(value: &Value) -> Result<usize, Error> {
    let s = text(value)?;
    let mut count = 0;
    let mut in_word = false;
    for c in s.chars() {
        let w = c.is_alphanumeric() || c == '_';
        if w && !in_word {
            count += 1;
        }
        in_word = w;
    }
    Ok(count)
}

/// Jinja's `replace(old, new, count=None)`.
fn replace(value: &Value, old: &Value, new: &Value, count: Option<i64>) -> Result<String, Error> {
    let s = text(value)?;
    let (old, new) = (text(old)?, text(new)?);
    let Some(count) = count.filter(|c| *c >= 0) else {
        return Ok(s.replace(&old, &new));
    };
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if old.is_empty() {
        // Python inserts `new` before each character and at the end, up to `count` times.
        let mut out = String::new();
        let mut done = 0;
        for c in s.chars() {
            if done < count {
                out.push_str(&new);
                done += 1;
            }
            out.push(c);
        }
        if done < count {
            out.push_str(&new);
        }
        return Ok(out);
    }
    Ok(s.replacen(&old, &new, count))
}

/// Jinja's `truncate(length=255, killwords=False, end='...', leeway=5)`.
fn truncate(
    value: &Value,
    length: Option<usize>,
    killwords: Option<bool>,
    end: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let s = text(value)?;
    let length = match length {
        Some(l) => l,
        None => kwargs.get::<Option<usize>>("length")?.unwrap_or(255),
    };
    let killwords = match killwords {
        Some(k) => k,
        None => kwargs.get::<Option<bool>>("killwords")?.unwrap_or(false),
    };
    let end = match end {
        Some(e) => e,
        None => kwargs
            .get::<Option<String>>("end")?
            .unwrap_or_else(|| "...".into()),
    };
    let leeway = kwargs.get::<Option<usize>>("leeway")?.unwrap_or(5);
    kwargs.assert_all_used()?;
    let end_len = end.chars().count();
    if length < end_len {
        return Err(invalid(format!(
            "expected length >= {end_len}, got {length}"
        )));
    }
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= length + leeway {
        return Ok(s);
    }
    let head: String = chars[..length - end_len].iter().collect();
    if killwords {
        return Ok(head + &end);
    }
    let head = match head.rfind(' ') {
        Some(i) => head[..i].to_string(),
        None => head,
    };
    Ok(head + &end)
}

/// Python's `urllib.parse.quote_from_bytes(s, safe)`, with `+` for spaces
/// in query strings (Jinja's `url_quote(for_qs=True)`).
fn url_quote(s: &str, for_qs: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || (!for_qs && b == b'/') {
            out.push(b as char);
        } else if for_qs && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Jinja's `urlencode`: a string is quoted (`/` kept), a dict or list of
/// pairs becomes a query string.
fn urlencode(value: &Value) -> Result<String, Error> {
    not_undefined(value)?;
    let pairs: Vec<(Value, Value)> = match value.kind() {
        ValueKind::Map => map_entries(value)?,
        ValueKind::Seq | ValueKind::Iterable => {
            let mut out = Vec::new();
            for item in items(value)? {
                let kv = items(&item)?;
                if kv.len() != 2 {
                    return Err(invalid("urlencode: expected pairs of key and value"));
                }
                out.push((kv[0].clone(), kv[1].clone()));
            }
            out
        }
        _ => return Ok(url_quote(&py_str(value), false)),
    };
    Ok(pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                url_quote(&py_str(k), true),
                url_quote(&py_str(v), true)
            )
        })
        .collect::<Vec<_>>()
        .join("&"))
}

/// Python methods on strings, dicts and lists: minijinja-contrib's, plus
/// `str.partition`, `str.rsplit`, `str.zfill`, `str.center`, `list.index`.
pub fn python_method(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match (value.kind(), method, args) {
        (ValueKind::String, "partition", [sep]) | (ValueKind::String, "rpartition", [sep]) => {
            let s = value.as_str().unwrap_or_default();
            let sep = text(sep)?;
            if sep.is_empty() {
                return Err(invalid("empty separator"));
            }
            let found = if method == "partition" {
                s.find(&sep)
            } else {
                s.rfind(&sep)
            };
            Ok(Value::from(match found {
                Some(i) => vec![
                    s[..i].to_string(),
                    sep.clone(),
                    s[i + sep.len()..].to_string(),
                ],
                None if method == "partition" => vec![s.to_string(), String::new(), String::new()],
                None => vec![String::new(), String::new(), s.to_string()],
            }))
        }
        (ValueKind::String, "rsplit", [sep, ..]) if !sep.is_none() => {
            let s = value.as_str().unwrap_or_default();
            let sep = text(sep)?;
            if sep.is_empty() {
                return Err(invalid("empty separator"));
            }
            let max = match args.get(1) {
                Some(m) => i64::try_from(m.clone()).unwrap_or(-1),
                None => -1,
            };
            let mut parts: Vec<String> = if max < 0 {
                s.rsplit(sep.as_str()).map(str::to_owned).collect()
            } else {
                s.rsplitn(usize::try_from(max).unwrap_or(0) + 1, sep.as_str())
                    .map(str::to_owned)
                    .collect()
            };
            parts.reverse();
            Ok(Value::from(parts))
        }
        (ValueKind::String, "zfill", [width]) => {
            let s = value.as_str().unwrap_or_default();
            let width = width.as_usize().unwrap_or(0);
            let len = s.chars().count();
            if width <= len {
                return Ok(value.clone());
            }
            let (sign, rest) = match s.strip_prefix(['+', '-']) {
                Some(rest) => (&s[..1], rest),
                None => ("", s),
            };
            Ok(Value::from(format!(
                "{sign}{}{rest}",
                "0".repeat(width - len)
            )))
        }
        (ValueKind::String, "center", [width, ..]) => {
            let fill = match args.get(1) {
                Some(f) => text(f)?,
                None => " ".into(),
            };
            let mut chars = fill.chars();
            let (Some(fill), None) = (chars.next(), chars.next()) else {
                return Err(invalid(
                    "The fill character must be exactly one character long",
                ));
            };
            let s = value.as_str().unwrap_or_default();
            let width = width.as_usize().unwrap_or(0);
            let len = s.chars().count();
            if width <= len {
                return Ok(value.clone());
            }
            let pad = width - len;
            let left = pad / 2 + (pad & width & 1);
            let f = fill.to_string();
            Ok(Value::from(format!(
                "{}{s}{}",
                f.repeat(left),
                f.repeat(pad - left)
            )))
        }
        (ValueKind::Seq, "index", [needle]) => match items(value)?.iter().position(|v| v == needle)
        {
            Some(i) => Ok(Value::from(i)),
            None => Err(invalid(format!("{} is not in list", py_repr(needle)))),
        },
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// `zip_longest(*others, fillvalue=None)`: lists padded with `fillvalue`.
fn zip_longest(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let (pos, kw) = split_kwargs(args.into_values());
    let fill = kw_get(&kw, "fillvalue").cloned().unwrap_or(Value::from(()));
    let mut lists = vec![items(value)?];
    for p in &pos {
        lists.push(items(p)?);
    }
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    Ok(Value::from(
        (0..longest)
            .map(|i| {
                Value::from(
                    lists
                        .iter()
                        .map(|l| l.get(i).cloned().unwrap_or_else(|| fill.clone()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>(),
    ))
}

/// Python's ordering class of a value: values of different classes (or
/// dicts, None) cannot be compared with `<`.
fn order_class(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Number | ValueKind::Bool => "number",
        ValueKind::String => "str",
        ValueKind::Seq | ValueKind::Iterable => "list",
        _ => type_name(v),
    }
}

/// Fails like Python's `sorted` when two items cannot be ordered.
fn check_orderable(values: &[Value]) -> Result<(), Error> {
    let mut first: Option<&Value> = None;
    for v in values {
        let class = order_class(v);
        if values.len() > 1 && !matches!(class, "number" | "str" | "list") {
            return Err(invalid(format!(
                "'<' not supported between instances of '{}' and '{}'",
                type_name(v),
                type_name(v)
            )));
        }
        match first {
            Some(f) if order_class(f) != class => {
                return Err(invalid(format!(
                    "'<' not supported between instances of '{}' and '{}'",
                    type_name(v),
                    type_name(f)
                )));
            }
            None => first = Some(v),
            _ => {}
        }
    }
    Ok(())
}

/// Jinja's `sort(reverse=False, case_sensitive=False, attribute=None)`,
/// failing like Python on items that cannot be compared.
fn sort(state: &minijinja::State, value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    not_undefined(&value)?;
    let list = items(&value)?;
    match kwargs.get::<Option<String>>("attribute")? {
        Some(attr) if !attr.contains(',') => {
            let keys = list.iter().map(|v| get_path(v, &attr)).collect::<Vec<_>>();
            check_orderable(&keys)?;
        }
        Some(_) => {}
        None => check_orderable(&list)?,
    }
    minijinja::filters::sort(state, value, kwargs)
}

/// Jinja's `sum(attribute=None, start=0)`.
fn sum(value: &Value, attribute: Option<String>, kwargs: Kwargs) -> Result<Value, Error> {
    let attribute = match attribute {
        Some(a) => Some(a),
        None => kwargs.get::<Option<String>>("attribute")?,
    };
    let start = kwargs
        .get::<Option<Value>>("start")?
        .unwrap_or(Value::from(0));
    kwargs.assert_all_used()?;
    let mut total = start;
    for item in items(value)? {
        let item = match &attribute {
            Some(attr) => {
                let v = get_path(&item, attr);
                if v.is_undefined() {
                    return Err(Error::new(
                        ErrorKind::UndefinedError,
                        format!(
                            "object of type '{}' has no attribute '{attr}'",
                            type_name(&item)
                        ),
                    ));
                }
                v
            }
            None => item,
        };
        total = match (total.kind(), item.kind()) {
            (ValueKind::Seq, ValueKind::Seq) => {
                Value::from([items(&total)?, items(&item)?].concat())
            }
            (ValueKind::Number | ValueKind::Bool, ValueKind::Number | ValueKind::Bool) => {
                add_numbers(&numeric(&total), &numeric(&item))
            }
            _ => {
                return Err(invalid(format!(
                    "unsupported operand type(s) for +: '{}' and '{}'",
                    type_name(&total),
                    type_name(&item)
                )));
            }
        };
    }
    Ok(total)
}

/// `a.b.0` of a value (Jinja's attribute getter), undefined when missing.
fn get_path(value: &Value, path: &str) -> Value {
    let mut cur = value.clone();
    for part in path.split('.') {
        let next = match part.parse::<i64>() {
            Ok(i) if is_sequence(&cur) => cur.get_item(&Value::from(i)),
            _ => cur.get_item(&Value::from(part)),
        };
        cur = match next {
            Ok(v) if !v.is_undefined() => v,
            _ => return Value::UNDEFINED,
        };
    }
    cur
}

fn add_numbers(a: &Value, b: &Value) -> Value {
    if a.is_integer()
        && b.is_integer()
        && let (Ok(x), Ok(y)) = (i64::try_from(a.clone()), i64::try_from(b.clone()))
        && let Some(z) = x.checked_add(y)
    {
        return Value::from(z);
    }
    let x = f64::try_from(a.clone()).unwrap_or(f64::NAN);
    let y = f64::try_from(b.clone()).unwrap_or(f64::NAN);
    Value::from(x + y)
}

fn numeric(v: &Value) -> Value {
    if v.kind() == ValueKind::Bool {
        Value::from(i64::from(v.is_true()))
    } else {
        v.clone()
    }
}

fn from_yaml_all(value: &Value) -> Result<Value, Error> {
    let s = text(value)?;
    serialize::from_yaml_all(&s)
}

/// Jinja's `sequence` test: anything with a length and items (strings too).
fn test_sequence(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    )
}

/// Ansible's `abs` test: `os.path.isabs`.
fn test_abs(value: &Value) -> Result<bool, Error> {
    Ok(text(value)?.starts_with('/'))
}

/// Jinja's `callable` test: macros and functions.
fn test_callable(value: &Value) -> bool {
    value.kind() == ValueKind::Plain
}

/// Jinja's `dict(mapping_or_pairs=None, **kwargs)`.
fn dict(args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let (pos, kw) = split_kwargs(args.into_values());
    let mut out: Vec<(Value, Value)> = Vec::new();
    let put = |k: Value, v: Value, out: &mut Vec<(Value, Value)>| match out
        .iter_mut()
        .find(|(ek, _)| *ek == k)
    {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    };
    match pos.as_slice() {
        [] => {}
        [one] if one.kind() == ValueKind::Map => {
            for (k, v) in map_entries(one)? {
                put(k, v, &mut out);
            }
        }
        [one] if is_sequence(one) => {
            for pair in items(one)? {
                let kv = items(&pair)?;
                if kv.len() != 2 {
                    return Err(invalid(format!(
                        "dictionary update sequence element has length {}; 2 is required",
                        kv.len()
                    )));
                }
                put(kv[0].clone(), kv[1].clone(), &mut out);
            }
        }
        [other] => {
            return Err(invalid(format!(
                "'{}' object is not iterable",
                type_name(other)
            )));
        }
        _ => return Err(invalid("dict expected at most 1 argument")),
    }
    for (k, v) in kw {
        put(Value::from(k), v, &mut out);
    }
    Ok(Value::from_pairs(out))
}

fn type_debug(value: &Value) -> String {
    type_name(value).to_string()
}

// ---------------------------------------------------------------------------
// tests

fn regex_test(value: &Value, pattern: &str, kwargs: &Kwargs, mode: &str) -> Result<bool, Error> {
    not_undefined(value)?;
    let ignorecase = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    let mode = kwargs
        .get::<Option<String>>("match_type")?
        .unwrap_or(mode.to_string());
    kwargs.assert_all_used()?;
    let s = py_str(value);
    let pattern = match mode.as_str() {
        "match" => format!("\\A(?:{pattern})"),
        "fullmatch" => format!("\\A(?:{pattern})\\z"),
        _ => pattern.to_string(),
    };
    Ok(compile_regex(&pattern, ignorecase, multiline)?.is_match(&s))
}

/// `value is match(pattern)`: anchored at the start like `re.match`.
fn test_match(value: &Value, pattern: String, kwargs: Kwargs) -> Result<bool, Error> {
    regex_test(value, &pattern, &kwargs, "match")
}

fn test_search(value: &Value, pattern: String, kwargs: Kwargs) -> Result<bool, Error> {
    regex_test(value, &pattern, &kwargs, "search")
}

fn test_regex(value: &Value, pattern: String, kwargs: Kwargs) -> Result<bool, Error> {
    regex_test(value, &pattern, &kwargs, "search")
}

fn result_map<'a>(value: &'a Value, test: &str) -> Result<&'a Value, Error> {
    not_undefined(value)?;
    if value.kind() != ValueKind::Map {
        return Err(invalid(format!("The '{test}' test expects a dictionary")));
    }
    Ok(value)
}

fn result_flag(value: &Value, key: &str) -> Result<bool, Error> {
    let v = value.get_attr(key)?;
    Ok(!v.is_undefined() && v.is_true())
}

fn test_failed(value: &Value) -> Result<bool, Error> {
    result_flag(result_map(value, "failed")?, "failed")
}

fn test_success(value: &Value) -> Result<bool, Error> {
    Ok(!result_flag(result_map(value, "success")?, "failed")?)
}

fn test_changed(value: &Value) -> Result<bool, Error> {
    let value = result_map(value, "changed")?;
    let changed = value.get_attr("changed")?;
    if !changed.is_undefined() {
        return Ok(changed.is_true());
    }
    let results = value.get_attr("results")?;
    if is_sequence(&results) {
        for r in items(&results)? {
            if r.kind() == ValueKind::Map && result_flag(&r, "changed")? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn test_skipped(value: &Value) -> Result<bool, Error> {
    result_flag(result_map(value, "skipped")?, "skipped")
}

/// `truthy(convert_bool=False)`.
fn test_truthy(value: &Value, kwargs: Kwargs) -> Result<bool, Error> {
    not_undefined(value)?;
    let convert = kwargs.get::<Option<bool>>("convert_bool")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    if convert
        && (value.kind() == ValueKind::Bool
            || value.kind() == ValueKind::String
            || value.kind() == ValueKind::Number)
    {
        let lowered = py_str(value).to_lowercase();
        if matches!(
            lowered.as_str(),
            "no" | "off" | "false" | "0" | "n" | "f" | "0.0"
        ) {
            return Ok(false);
        }
        if matches!(
            lowered.as_str(),
            "yes" | "on" | "true" | "1" | "y" | "t" | "1.0"
        ) {
            return Ok(true);
        }
    }
    Ok(value.is_true())
}

fn test_falsy(value: &Value, kwargs: Kwargs) -> Result<bool, Error> {
    Ok(!test_truthy(value, kwargs)?)
}

#[derive(Debug, Clone, PartialEq)]
enum VersionPart {
    Num(u64),
    Text(String),
}

/// `distutils.version.LooseVersion` parsing.
fn loose_version(v: &str) -> Vec<VersionPart> {
    let mut parts = Vec::new();
    let mut chars = v.chars().peekable();
    let mut other = String::new();
    let flush = |other: &mut String, parts: &mut Vec<VersionPart>| {
        if !other.is_empty() {
            parts.push(VersionPart::Text(std::mem::take(other)));
        }
    };
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            flush(&mut other, &mut parts);
            let mut d = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                d.push(c);
                chars.next();
            }
            match d.parse::<u64>() {
                Ok(n) => parts.push(VersionPart::Num(n)),
                Err(_) => parts.push(VersionPart::Text(d)),
            }
        } else if c.is_ascii_lowercase() {
            flush(&mut other, &mut parts);
            let mut d = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_lowercase()) {
                d.push(c);
                chars.next();
            }
            parts.push(VersionPart::Text(d));
        } else if c == '.' {
            flush(&mut other, &mut parts);
            chars.next();
        } else {
            other.push(c);
            chars.next();
        }
    }
    flush(&mut other, &mut parts);
    parts
}

fn compare_versions(a: &str, b: &str) -> Result<Ordering, Error> {
    let (a, b) = (loose_version(a), loose_version(b));
    for (x, y) in a.iter().zip(b.iter()) {
        let ord = match (x, y) {
            (VersionPart::Num(x), VersionPart::Num(y)) => x.cmp(y),
            (VersionPart::Text(x), VersionPart::Text(y)) => x.cmp(y),
            _ => {
                return Err(invalid(
                    "Version comparison failed: '<' not supported between instances of 'int' and 'str'",
                ));
            }
        };
        if ord != Ordering::Equal {
            return Ok(ord);
        }
    }
    Ok(a.len().cmp(&b.len()))
}

/// `version(other, operator='eq', strict=None, version_type=None)`; the
/// comparison is always LooseVersion-style.
fn test_version(
    value: &Value,
    other: &Value,
    operator: Option<String>,
    kwargs: Kwargs,
) -> Result<bool, Error> {
    let operator = match operator {
        Some(op) => op,
        None => kwargs
            .get::<Option<String>>("operator")?
            .unwrap_or("eq".into()),
    };
    let _ = kwargs.get::<Option<Value>>("strict")?;
    let version_type = kwargs.get::<Option<String>>("version_type")?;
    kwargs.assert_all_used()?;
    let (a, b) = (text(value)?, text(other)?);
    if a.is_empty() {
        return Err(invalid("Input version value cannot be empty"));
    }
    if b.is_empty() {
        return Err(invalid("Version for comparison cannot be empty"));
    }
    let ord = match version_type.as_deref() {
        None | Some("loose") => compare_versions(&a, &b)?,
        Some("semver" | "semantic") => semver(&a)?.cmp(&semver(&b)?),
        Some(other) => {
            return Err(invalid(format!(
                "version_type '{other}' is not supported yet by deployer (loose, semver)"
            )));
        }
    };
    Ok(match operator.as_str() {
        "==" | "=" | "eq" => ord == Ordering::Equal,
        "<" | "lt" => ord == Ordering::Less,
        "<=" | "le" => ord != Ordering::Greater,
        ">" | "gt" => ord == Ordering::Greater,
        ">=" | "ge" => ord != Ordering::Less,
        "!=" | "<>" | "ne" => ord != Ordering::Equal,
        other => return Err(invalid(format!("Invalid operator type ({other})"))),
    })
}

/// A semantic version (semver.org 2.0.0) in the order of its precedence.
#[derive(Debug, PartialEq, Eq)]
struct SemVer {
    core: (u64, u64, u64),
    /// Pre-release identifiers: numbers sort before words.
    pre: Vec<Result<u64, String>>,
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (x, y) in self.pre.iter().zip(&other.pre) {
                        let o = match (x, y) {
                            (Ok(a), Ok(b)) => a.cmp(b),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(a), Err(b)) => a.cmp(b),
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn semver(v: &str) -> Result<SemVer, Error> {
    let bad = || invalid(format!("invalid semantic version '{v}'"));
    let no_build = v.split_once('+').map_or(v, |(head, _)| head);
    let (core, pre) = match no_build.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (no_build, None),
    };
    let nums: Vec<u64> = core
        .split('.')
        .map(|p| {
            if p.is_empty()
                || !p.chars().all(|c| c.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                Err(bad())
            } else {
                p.parse::<u64>().map_err(|_| bad())
            }
        })
        .collect::<Result<_, _>>()?;
    let [major, minor, patch] = nums[..] else {
        return Err(bad());
    };
    let pre = match pre {
        None => Vec::new(),
        Some(p) => p
            .split('.')
            .map(|id| {
                if id.is_empty() {
                    Err(bad())
                } else if id.chars().all(|c| c.is_ascii_digit()) {
                    id.parse::<u64>().map(Ok).map_err(|_| bad())
                } else {
                    Ok(Err(id.to_string()))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(SemVer {
        core: (major, minor, patch),
        pre,
    })
}

fn test_subset(value: &Value, other: &Value) -> Result<bool, Error> {
    let b = items(other)?;
    Ok(items(value)?.iter().all(|x| b.contains(x)))
}

fn test_superset(value: &Value, other: &Value) -> Result<bool, Error> {
    test_subset(other, value)
}

fn test_contains(value: &Value, item: &Value) -> Result<bool, Error> {
    Ok(items(value)?.contains(item))
}

// The expected results of these filters and tests come from ansible-core
// itself: tests/template_oracle/cases/*.yml, rendered by oracle.py with the
// CI venv and compared by tests/template_oracle.rs.
