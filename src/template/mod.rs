//! Ansible-compatible templating on top of minijinja.
//!
//! [`environment`] builds a [`minijinja::Environment`] that behaves like
//! Ansible's templar: strict undefined handling, `trim_blocks`, trailing
//! newlines kept, no auto-escaping, Python-style rendering of booleans,
//! `None`, lists and dicts, Python string/dict/list methods, and the
//! Ansible filters and tests registered by [`register`].

pub mod filters;
pub mod serialize;

use std::fmt::Write as _;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

pub use filters::register;

/// Value of the `omit` global: a module argument whose templated value is
/// exactly this string is to be left out, as in Ansible.
pub const OMIT_PLACEHOLDER: &str = "__omit_place_holder__deployer__";

/// Name under which bare expressions (`when:` conditions, native values)
/// are reported in error messages.
const EXPR_NAME: &str = "<expression>";

/// A minijinja Environment configured like Ansible's templating.
///
/// * `UndefinedBehavior::Strict`: any use of an undefined variable is an
///   error, except in `is defined`/`is undefined`/`default` checks.
/// * `trim_blocks = true`, `lstrip_blocks = false`,
///   `keep_trailing_newline = true` (Ansible's template module defaults).
/// * no auto-escaping, whatever the template's extension.
/// * values print like Python does: `True`, `False`, `['a', None]`,
///   `{'k': 'v'}`, `1.0`; a bare `None` prints as the empty string
///   (Ansible's finalize).
/// * Python methods on strings, dicts and lists (`x.items()`,
///   `s.split(',')`, `s.startswith('a')`, `d.keys()`).
/// * the `omit` global ([`OMIT_PLACEHOLDER`]).
/// * all Ansible filters and tests of [`filters`] registered.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Debug mode makes minijinja remember where an undefined value came
    // from, which gives error messages the variable's name.
    env.set_debug(true);
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(false)
        .keep_trailing_newline(false)
        .build();
    // The default delimiters are always valid; keep the defaults otherwise.
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(filters::python_method);
    env.set_formatter(|out, _state, value| {
        // Like Ansible's finalize: a bare `None` prints as nothing.
        if value.is_none() {
            return Ok(());
        }
        if value.is_undefined() {
            // Only the "silent" undefined of an inline `if` without `else`
            // reaches the formatter (strict mode stops the others): Jinja
            // prints it as nothing, but it cannot be a value on its own.
            record_printed(value);
            return Ok(());
        }
        check_no_undefined(value)?;
        record_printed(value);
        let mut s = String::new();
        py_str_into(value, &mut s);
        out.write_str(&s)
            .map_err(|_| Error::from(ErrorKind::WriteFailure))
    });
    env.add_global("omit", OMIT_PLACEHOLDER);
    register(&mut env);
    env
}

/// Fails (strict mode) when a list or dict about to be printed holds an
/// undefined value.
fn check_no_undefined(value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {
            // The error of `get_attr` on an undefined value names its origin.
            value.get_attr("__undefined__")?;
            Err(Error::from(ErrorKind::UndefinedError))
        }
        ValueKind::Seq => {
            for item in value.try_iter()? {
                check_no_undefined(&item)?;
            }
            Ok(())
        }
        ValueKind::Map => {
            for key in value.try_iter()? {
                check_no_undefined(&value.get_item(&key)?)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Renders `source` (a template given as a string) with `ctx`, as text:
/// Ansible's result ([`render_value`]) as Python's `str()` of it, `None`
/// as the empty string.
pub fn render_str(env: &Environment, source: &str, ctx: Value) -> Result<String, Error> {
    let value = render_native(env, TEMPLATE_NAME, source, ctx, true)?;
    Ok(text_of(&value))
}

/// Renders a value the way Ansible 2.19 templates module arguments and
/// variables: a template whose output is exactly one `{{ expr }}` (or one
/// value out of blocks, comments and `None`s) gives that expression's own
/// value (`"{{ 3 }}"` is the integer 3, `"{{ [1, 2] }}"` a list, `"{{ x
/// }}\n"` is still `x`'s value); anything else gives the text, with the
/// template's trailing newlines kept. Backslashes in string literals inside
/// `{{ }}` are literal, as Ansible escapes them for templates written in YAML.
pub fn render_value(env: &Environment, source: &str, ctx: Value) -> Result<Value, Error> {
    render_native(env, TEMPLATE_NAME, source, ctx, true)
}

/// Renders a file of the template module like Ansible's template action:
/// the same rules as [`render_value`] without backslash escaping, then
/// `str()` of the result (`None` is the empty file).
pub fn render_file(
    env: &Environment,
    name: &str,
    source: &str,
    ctx: Value,
) -> Result<String, Error> {
    let value = render_native(env, name, source, ctx, false)?;
    Ok(text_of(&value))
}

/// The text of a rendered value: strings as they are, `None` as nothing,
/// everything else as Python's `str()`.
fn text_of(value: &Value) -> String {
    if value.is_none() {
        return String::new();
    }
    py_str(value)
}

/// The default `ansible_managed` (ansible-core's `DEFAULT_MANAGED_STR`).
pub const ANSIBLE_MANAGED: &str = "Ansible managed";

/// The variables Ansible's template action adds for a template file:
/// `template_path` (the `src` as given), `template_fullpath`,
/// `template_destpath`, `template_host` (this machine's name),
/// `template_uid` (the file owner's name) and `ansible_managed`; a layer to
/// put on top of the task's variables. `ansible_managed` is left out when
/// `user_managed` is true (a variable of that name is set). The file's
/// dates (`template_mtime`, `template_run_date`) are not provided.
pub fn template_file_vars(
    src: &str,
    fullpath: &std::path::Path,
    dest: &str,
    user_managed: bool,
) -> indexmap::IndexMap<String, crate::vars::VarValue> {
    use crate::vars::VarValue;
    let mut m = indexmap::IndexMap::new();
    let v = |s: &str| VarValue::Value(Value::from(s));
    m.insert("template_host".into(), v(&hostname()));
    m.insert("template_path".into(), v(src));
    if let Some(owner) = file_owner(fullpath) {
        m.insert("template_uid".into(), owner);
    }
    m.insert("template_destpath".into(), v(dest));
    m.insert(
        "template_fullpath".into(),
        v(&fullpath.display().to_string()),
    );
    if !user_managed {
        m.insert("ansible_managed".into(), v(ANSIBLE_MANAGED));
    }
    m
}

/// This machine's host name (`os.uname()[1]`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The owner of `path` by name (from /etc/passwd), else by number.
fn file_owner(path: &std::path::Path) -> Option<crate::vars::VarValue> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(path).ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    });
    Some(crate::vars::VarValue::Value(match name {
        Some(n) => Value::from(n),
        None => Value::from(uid),
    }))
}

/// Name under which string templates are reported in error messages.
const TEMPLATE_NAME: &str = "<template>";

thread_local! {
    /// The values printed by `{{ }}` during each native rendering in
    /// progress on this thread (innermost last): a lazily rendered variable
    /// renders inside another rendering.
    static PRINTED: std::cell::RefCell<Vec<Vec<Value>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a value printed by `{{ }}` for the innermost native rendering.
fn record_printed(value: &Value) {
    PRINTED.with(|p| {
        if let Some(frame) = p.borrow_mut().last_mut() {
            frame.push(value.clone());
        }
    });
}

/// Pops the printed-values frame of a native rendering, also when the
/// rendering fails.
struct PrintedFrame;

impl PrintedFrame {
    fn push() -> PrintedFrame {
        PRINTED.with(|p| p.borrow_mut().push(Vec::new()));
        PrintedFrame
    }

    fn take(&self) -> Vec<Value> {
        PRINTED.with(|p| {
            p.borrow_mut()
                .last_mut()
                .map(std::mem::take)
                .unwrap_or_default()
        })
    }
}

impl Drop for PrintedFrame {
    fn drop(&mut self) {
        PRINTED.with(|p| {
            p.borrow_mut().pop();
        });
    }
}

/// Whether Ansible would template `source` at all: it starts a Jinja
/// variable, block or comment.
pub fn is_possibly_template(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// Ansible 2.19's `Templar.template` on a string: see [`render_value`].
fn render_native(
    env: &Environment,
    name: &str,
    source: &str,
    ctx: Value,
    escape_backslashes: bool,
) -> Result<Value, Error> {
    if !is_possibly_template(source) {
        return Ok(Value::from(source));
    }
    // Jinja turns every newline of the template into `\n` and drops one
    // trailing newline (the environment does the latter).
    let mut prepared = normalize_newlines(source);
    if escape_backslashes {
        prepared = escape_expression_backslashes(&prepared);
    }
    let frame = PrintedFrame::push();
    let out = env.render_named_str(name, &prepared, ctx)?;
    let printed: Vec<Value> = frame.take().into_iter().filter(|v| !v.is_none()).collect();
    drop(frame);
    let result = match printed.as_slice() {
        // Jinja's output had no node at all: Ansible's result is None.
        [] if out.is_empty() => return Ok(Value::from(())),
        [only] if only.is_undefined() && out.is_empty() => {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                format!(
                    "{name}: the template's only value is undefined (an inline `if` without `else` that is false)"
                ),
            ));
        }
        // One node: its own value.
        [only] if py_str(only) == out => only.clone(),
        _ => Value::from(out),
    };
    let Some(text) = result.as_str() else {
        return Ok(result);
    };
    // Ansible appends the template's trailing newlines that the output lacks.
    let want = trailing_newlines(source);
    let have = trailing_newlines(text);
    if want > have {
        let mut s = text.to_string();
        s.push_str(&"\n".repeat(want - have));
        return Ok(Value::from(s));
    }
    Ok(result)
}

fn trailing_newlines(s: &str) -> usize {
    s.bytes().rev().take_while(|b| *b == b'\n').count()
}

/// `\r\n` and `\r` as `\n`, like Jinja's lexer.
fn normalize_newlines(s: &str) -> String {
    if !s.contains('\r') {
        return s.to_string();
    }
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Ansible's `escape_backslashes`: inside `{{ }}`, a string literal's
/// backslashes are not escapes (Jinja sees each one doubled). Rewrites each
/// such literal so that minijinja reads the same characters; raw blocks,
/// comments and `{% %}` tags are left alone.
fn escape_expression_backslashes(src: &str) -> String {
    if !src.contains('\\') {
        return src.to_string();
    }
    let mut out = String::with_capacity(src.len() + 8);
    let mut rest = src;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        if after.starts_with("{#") {
            let end = after.find("#}").map_or(after.len(), |e| e + 2);
            out.push_str(&rest[..start + end]);
            rest = &rest[start + end..];
        } else if after.starts_with("{%") {
            let end = tag_end(after, "%}");
            let tag = &after[..end];
            out.push_str(&rest[..start + end]);
            rest = &rest[start + end..];
            let words: Vec<&str> = tag
                .trim_start_matches("{%")
                .trim_end_matches("%}")
                .trim_matches(['-', '+', ' ', '\t', '\n'])
                .split_whitespace()
                .collect();
            if words == ["raw"] {
                // Everything up to the endraw tag is data.
                let mut idx = 0;
                let mut found = None;
                while let Some(pos) = rest[idx..].find("{%") {
                    let cand = &rest[idx + pos..];
                    let e = tag_end(cand, "%}");
                    let inner: Vec<&str> = cand[..e]
                        .trim_start_matches("{%")
                        .trim_end_matches("%}")
                        .trim_matches(['-', '+', ' ', '\t', '\n'])
                        .split_whitespace()
                        .collect();
                    if inner == ["endraw"] {
                        found = Some(idx + pos + e);
                        break;
                    }
                    idx += pos + 2;
                }
                let end = found.unwrap_or(rest.len());
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
        } else if after.starts_with("{{") {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            // Inside the expression up to its `}}`.
            loop {
                let Some(i) = rest.find(['\'', '"', '}']) else {
                    out.push_str(rest);
                    rest = "";
                    break;
                };
                let c = rest.as_bytes()[i] as char;
                if c == '}' {
                    if rest[i..].starts_with("}}") {
                        out.push_str(&rest[..i + 2]);
                        rest = &rest[i + 2..];
                        break;
                    }
                    out.push_str(&rest[..=i]);
                    rest = &rest[i + 1..];
                    continue;
                }
                out.push_str(&rest[..i]);
                let body = &rest[i + 1..];
                // Jinja's string token: backslash escapes the next character.
                let mut end = None;
                let mut chars = body.char_indices();
                while let Some((j, ch)) = chars.next() {
                    if ch == '\\' {
                        chars.next();
                    } else if ch == c {
                        end = Some(j);
                        break;
                    }
                }
                let Some(end) = end else {
                    // Unterminated: let the parser report it.
                    out.push_str(&rest[i..]);
                    rest = "";
                    break;
                };
                let raw = &body[..end];
                out.push(c);
                for ch in raw.chars() {
                    if ch == '\\' || ch == c {
                        out.push('\\');
                    }
                    out.push(ch);
                }
                out.push(c);
                rest = &body[end + 1..];
            }
        } else {
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Length of a `{% %}` tag starting at `s`, strings inside it skipped.
fn tag_end(s: &str, close: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, ch) in s.char_indices().skip(2) {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == q {
                quote = None;
            }
        } else if ch == '\'' || ch == '"' {
            quote = Some(ch);
        } else if s[i..].starts_with(close) {
            return i + close.len();
        }
    }
    s.len()
}

/// Evaluates a `when:`-style bare expression (no braces) to a boolean, as
/// ansible-core 2.19 does: the result must be a boolean (`x is defined`,
/// `s | bool`, `l | length > 0`); a string, number, list or `None` is an
/// error ("Conditionals must have a boolean result"), and so is an empty
/// expression or an undefined result.
pub fn eval_condition(env: &Environment, expr: &str, ctx: Value) -> Result<bool, Error> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "Empty conditional expressions are not allowed.",
        ));
    }
    let compiled = env.compile_expression(trimmed)?;
    let value = compiled.eval(ctx.clone())?;
    if value.is_undefined() {
        // Re-run as a template to get an error naming the variable.
        let source = format!("{{% if {trimmed} %}}{{% endif %}}");
        env.render_named_str(EXPR_NAME, &source, ctx)?;
        return Err(Error::new(
            ErrorKind::UndefinedError,
            format!("conditional '{trimmed}' is undefined"),
        ));
    }
    if value.kind() == ValueKind::Bool {
        return Ok(value.is_true());
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "Conditional result ({}) of '{trimmed}' was derived from value of type '{}'. Conditionals must have a boolean result (compare it, or use `| bool` or `| length > 0`).",
            if value.is_true() { "True" } else { "False" },
            filters::python_type_name(&value),
        ),
    ))
}

/// Formats a template error as `NAME:LINE: message`, followed by the
/// chain of underlying causes (`: cause`).
///
/// Undefined-variable errors read `undefined variable 'foo'`; a failed
/// `mandatory` filter reads `Mandatory variable 'foo' not defined.`.
pub fn render_error_message(err: &Error) -> String {
    let mut msg = String::new();
    if let Some(name) = err.name() {
        msg.push_str(name);
        if let Some(line) = err.line() {
            let _ = write!(msg, ":{line}");
        }
        msg.push_str(": ");
    }
    let undefined_name = err
        .detail()
        .and_then(undefined_name_in_detail)
        .map(str::to_owned);
    let mut chain_start: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(err);
    if let Some(mandatory) = chain_start.and_then(|s| s.downcast_ref::<filters::MandatoryError>()) {
        match (&mandatory.0, &undefined_name) {
            (Some(custom), _) => msg.push_str(custom),
            (None, Some(name)) => {
                let _ = write!(msg, "Mandatory variable '{name}' not defined.");
            }
            (None, None) => msg.push_str("Mandatory variable not defined."),
        }
        chain_start = std::error::Error::source(mandatory);
    } else {
        match (err.kind(), err.detail(), &undefined_name) {
            (ErrorKind::UndefinedError, Some(detail), Some(name)) => {
                let _ = write!(msg, "undefined variable '{name}'");
                if let Some(rest) = detail_after_undefined(detail) {
                    msg.push_str(rest);
                }
            }
            (ErrorKind::UndefinedError, None, _) => msg.push_str("undefined variable"),
            (kind, Some(detail), _) => {
                let _ = write!(msg, "{kind}: {detail}");
            }
            (kind, None, _) => {
                let _ = write!(msg, "{kind}");
            }
        }
        // Name the expression at fault (the filter or test and its input).
        if undefined_name.is_none()
            && let Some(snippet) = error_snippet(err)
        {
            let _ = write!(msg, " (in `{snippet}`)");
        }
    }
    let mut source = chain_start;
    while let Some(cause) = source {
        let text = match cause.downcast_ref::<Error>() {
            Some(inner) => render_error_message(inner),
            None => cause.to_string(),
        };
        let _ = write!(msg, ": {text}");
        if cause.downcast_ref::<Error>().is_some() {
            // The nested minijinja error already printed its own chain.
            break;
        }
        source = cause.source();
    }
    msg
}

/// The template text of the expression an error points at, on one line and
/// at most 120 characters long.
fn error_snippet(err: &Error) -> Option<String> {
    let range = err.range()?;
    let source = err.template_source()?;
    let text = source.get(range)?.trim();
    if text.is_empty() {
        return None;
    }
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(if one_line.chars().count() > 120 {
        let cut: String = one_line.chars().take(117).collect();
        format!("{cut}...")
    } else {
        one_line
    })
}

/// Extracts `foo` from minijinja details like "`foo` is undefined" or
/// "... (`foo.bar` is undefined)".
fn undefined_name_in_detail(detail: &str) -> Option<&str> {
    let end = detail.find("` is undefined")?;
    let start = detail[..end].rfind('`')? + 1;
    Some(&detail[start..end])
}

/// Whatever follows "`x` is undefined" in a detail, like " (from line 3)".
fn detail_after_undefined(detail: &str) -> Option<&str> {
    let idx = detail.find("` is undefined")? + "` is undefined".len();
    let rest = &detail[idx..];
    let rest = rest.strip_suffix(')').unwrap_or(rest);
    let rest = rest.strip_prefix(',').unwrap_or(rest);
    if rest.trim().is_empty() {
        None
    } else {
        Some(rest)
    }
}

/// Python's `str(value)`: strings as they are, everything else as
/// [`py_repr`] gives it.
pub fn py_str(value: &Value) -> String {
    let mut s = String::new();
    py_str_into(value, &mut s);
    s
}

fn py_str_into(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Undefined => {}
        _ => py_repr_into(value, out),
    }
}

/// Python's `repr(value)`: `True`, `None`, `'text'`, `[1, 'a']`,
/// `{'k': 'v'}`, floats like `1.0`/`1e+20`.
pub fn py_repr(value: &Value) -> String {
    let mut s = String::new();
    py_repr_into(value, &mut s);
    s
}

fn py_repr_into(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&py_number(value)),
        ValueKind::String => py_string_repr(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr_into(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = value.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr_into(&key, out);
                    out.push_str(": ");
                    let item = value.get_item(&key).unwrap_or_default();
                    py_repr_into(&item, out);
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Number formatting like Python: floats always have a `.` or exponent.
pub(crate) fn py_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) => py_float(f),
        Err(_) => value.to_string(),
    }
}

/// Python's `repr(float)`.
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (sci.clone(), 0),
    };
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn py_string_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(src: &str, ctx: Value) -> Result<String, Error> {
        render_str(&environment(), src, ctx)
    }

    #[test]
    fn strict_undefined_errors_when_printed() {
        let err = render("{{ missing }}", context! {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
        assert_eq!(
            render_error_message(&err),
            "<template>:1: undefined variable 'missing'"
        );
    }

    #[test]
    fn default_and_defined_checks_work_on_undefined() {
        let ctx = context! { foo => context! { a => 1 } };
        assert_eq!(
            render("{{ missing | default('x') }}", ctx.clone()).unwrap(),
            "x"
        );
        assert_eq!(render("{{ missing | d('y') }}", ctx.clone()).unwrap(), "y");
        assert_eq!(
            render(
                "{% if missing is defined %}a{% else %}b{% endif %}",
                ctx.clone()
            )
            .unwrap(),
            "b"
        );
        assert_eq!(
            render("{% if missing is undefined %}u{% endif %}", ctx.clone()).unwrap(),
            "u"
        );
        assert_eq!(
            render("{{ foo.bar | default('x') }}", ctx.clone()).unwrap(),
            "x"
        );
        assert_eq!(render("{{ foo.a | default('x') }}", ctx).unwrap(), "1");
    }

    #[test]
    fn omit_global() {
        assert_eq!(
            render("{{ x | default(omit) }}", context! {}).unwrap(),
            OMIT_PLACEHOLDER
        );
    }

    #[test]
    fn if_on_undefined_is_an_error() {
        assert!(render("{% if missing %}x{% endif %}", context! {}).is_err());
    }

    #[test]
    fn trim_blocks_and_trailing_newline() {
        let out = render("{% if true %}\nyes\n{% endif %}\nend\n", context! {}).unwrap();
        assert_eq!(out, "yes\nend\n");
        let out = render("  {% if true %}x{% endif %}", context! {}).unwrap();
        assert_eq!(out, "  x");
    }

    #[test]
    fn no_autoescape_even_for_html_names() {
        let env = environment();
        let out = env
            .render_named_str("page.html.j2", "{{ s }}", context! { s => "<a & b>" })
            .unwrap();
        assert_eq!(out, "<a & b>");
        let out = env
            .render_named_str("conf.json.j2", "{{ s }}", context! { s => "a\"b" })
            .unwrap();
        assert_eq!(out, "a\"b");
    }

    #[test]
    fn values_print_like_python() {
        let ctx = context! { t => true, f => false, n => (), l => vec![Value::from("a"), Value::from(1)], x => 1.0 };
        assert_eq!(
            render("{{ t }} {{ f }} {{ n }} {{ l }} {{ x }}", ctx).unwrap(),
            "True False  ['a', 1] 1.0"
        );
        assert_eq!(
            render("{{ [none, 'x'] }}", context! {}).unwrap(),
            "[None, 'x']"
        );
        let err = render("{{ [1, missing] }}", context! {}).unwrap_err();
        assert_eq!(
            render_error_message(&err),
            "<template>:1: undefined variable 'missing'"
        );
        let m = Value::from_pairs([("k", Value::from("v")), ("n", Value::from(2))]);
        assert_eq!(
            render("{{ m }}", context! { m }).unwrap(),
            "{'k': 'v', 'n': 2}"
        );
    }

    #[test]
    fn python_methods_work() {
        let ctx = context! { s => "a,b", d => context! { k => "v" } };
        assert_eq!(
            render(
                "{{ s.split(',') | join('-') }} {{ s.startswith('a') }} {% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %} {{ d.keys() | list | join }}",
                ctx
            )
            .unwrap(),
            "a-b True k=v k"
        );
    }

    #[test]
    fn error_message_has_name_and_line() {
        let env = environment();
        let err = env
            .render_named_str("template.j2", "a\nb\n{{ foo }}\n", context! {})
            .unwrap_err();
        assert_eq!(
            render_error_message(&err),
            "template.j2:3: undefined variable 'foo'"
        );
        let err = env
            .render_named_str("t.j2", "{{ 1 + }}", context! {})
            .unwrap_err();
        assert!(render_error_message(&err).starts_with("t.j2:1: syntax error: "));
    }

    #[test]
    fn error_message_includes_source_chain() {
        let err = Error::new(ErrorKind::InvalidOperation, "outer")
            .with_source(std::io::Error::other("disk full"));
        assert_eq!(
            render_error_message(&err),
            "invalid operation: outer: disk full"
        );
    }

    #[test]
    fn mandatory_message_names_variable() {
        let env = environment();
        let err = env
            .render_named_str("m.j2", "x\n{{ foo | mandatory }}", context! {})
            .unwrap_err();
        assert_eq!(
            render_error_message(&err),
            "m.j2:2: Mandatory variable 'foo' not defined."
        );
        let err = env
            .render_named_str("m.j2", "{{ foo | mandatory('need foo') }}", context! {})
            .unwrap_err();
        assert_eq!(render_error_message(&err), "m.j2:1: need foo");
        assert_eq!(
            env.render_str("{{ foo | mandatory }}", context! { foo => 1 })
                .unwrap(),
            "1"
        );
    }

    // What conditions and native values evaluate to is compared with
    // ansible-core itself by the template oracle (tests/template_oracle.rs);
    // these check deployer's error messages.
    #[test]
    fn condition_errors_name_the_cause() {
        let env = environment();
        let ctx = context! { s => "yes" };
        let err = eval_condition(&env, "missing", ctx.clone()).unwrap_err();
        assert!(
            render_error_message(&err).contains("missing"),
            "{}",
            render_error_message(&err)
        );
        assert!(eval_condition(&env, "missing.x", ctx.clone()).is_err());
        let msg = render_error_message(&eval_condition(&env, "s", ctx.clone()).unwrap_err());
        assert!(
            msg.contains("'s'") && msg.contains("type 'str'") && msg.contains("boolean"),
            "{msg}"
        );
        let msg = render_error_message(&eval_condition(&env, " ", ctx).unwrap_err());
        assert!(msg.contains("Empty conditional"), "{msg}");
    }

    #[test]
    fn native_rendering_recovers_after_errors() {
        // A failed rendering must not leave its printed-values frame behind.
        let env = environment();
        assert!(render_value(&env, "{{ nope }}", context! {}).is_err());
        assert_eq!(
            render_value(&env, "{{ 3 }}", context! {}).unwrap(),
            Value::from(3)
        );
        PRINTED.with(|p| assert!(p.borrow().is_empty()));
    }

    #[test]
    fn py_float_repr() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.5), "0.5");
        assert_eq!(py_float(1e20), "1e+20");
        assert_eq!(py_float(1.5e-7), "1.5e-07");
        assert_eq!(py_float(123456.789), "123456.789");
    }
}
