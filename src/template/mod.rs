//! Ansible-compatible templating on top of minijinja.
//!
//! [`environment`] builds a [`minijinja::Environment`] that behaves like
//! Ansible's templar: strict undefined handling, `trim_blocks`, trailing
//! newlines kept, no auto-escaping, Python-style rendering of booleans,
//! `None`, lists and dicts, Python string/dict/list methods, and the
//! Ansible filters and tests registered by [`register`].

pub mod filters;
pub mod filters_ext;
pub mod lookups;
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
        .keep_trailing_newline(true)
        .build();
    // The default delimiters are always valid; keep the defaults otherwise.
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        // Like Ansible's finalize: a bare `None` prints as nothing.
        if value.is_none() {
            return Ok(());
        }
        check_no_undefined(value)?;
        let mut s = String::new();
        py_str_into(value, &mut s);
        out.write_str(&s)
            .map_err(|_| Error::from(ErrorKind::WriteFailure))
    });
    env.add_global("omit", OMIT_PLACEHOLDER);
    register(&mut env);
    filters_ext::register(&mut env);
    lookups::register(&mut env);
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

/// Renders `source` (a template given as a string) with `ctx`.
pub fn render_str(env: &Environment, source: &str, ctx: Value) -> Result<String, Error> {
    env.render_named_str("<template>", source, ctx)
}

/// Renders a value the way Ansible does with native types: when `source`
/// is exactly one `{{ expr }}` (surrounding whitespace ignored), the
/// expression's own value is returned (`"{{ 3 }}"` gives the integer 3,
/// `"{{ [1, 2] }}"` a list); otherwise `source` is rendered as a string.
pub fn render_value(env: &Environment, source: &str, ctx: Value) -> Result<Value, Error> {
    // An undefined result is rendered through the template engine below so
    // that the error names the undefined variable.
    if let Some(expr) = single_expression(source)
        && let Ok(compiled) = env.compile_expression(expr)
    {
        let value = compiled.eval(ctx.clone())?;
        // Line breaks around the expression (`content: |` holding `{{ x }}`)
        // are text Ansible keeps when x is a string ("x\n"); a list, dict or
        // number stays itself, as Ansible's native concatenation gives it.
        let padded = source.trim_matches([' ', '\t']) != source.trim();
        if !value.is_undefined() && !(padded && value.kind() == ValueKind::String) {
            return Ok(value);
        }
    }
    render_str(env, source, ctx).map(Value::from)
}

/// Evaluates a `when:`-style bare expression (no braces) to a boolean.
///
/// The result is taken by Jinja truthiness, except that the strings
/// `true`/`yes`/`on`/`1` and `false`/`no`/`off`/`0`/`` (any case) count
/// as the booleans they spell.  An undefined result is an error.
pub fn eval_condition(env: &Environment, expr: &str, ctx: Value) -> Result<bool, Error> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Ok(true);
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
    if let Some(s) = value.as_str() {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => return Ok(true),
            "false" | "no" | "off" | "0" | "" => return Ok(false),
            _ => {}
        }
    }
    Ok(value.is_true())
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

/// If `source` is exactly one `{{ expr }}`, returns `expr`.
fn single_expression(source: &str) -> Option<&str> {
    let s = source.trim();
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    if inner.contains("{{")
        || inner.contains("}}")
        || inner.contains("{%")
        || inner.contains("%}")
        || inner.contains("{#")
    {
        return None;
    }
    Some(inner.trim())
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

    #[test]
    fn eval_condition_cases() {
        let env = environment();
        let ctx = context! { x => 3, s => "no", yes_s => "Yes", r => context! { rc => 0 } };
        assert!(eval_condition(&env, "x > 2", ctx.clone()).unwrap());
        assert!(!eval_condition(&env, "x > 5", ctx.clone()).unwrap());
        assert!(!eval_condition(&env, "s", ctx.clone()).unwrap());
        assert!(eval_condition(&env, "yes_s", ctx.clone()).unwrap());
        assert!(eval_condition(&env, "r.rc == 0", ctx.clone()).unwrap());
        assert!(!eval_condition(&env, "missing is defined", ctx.clone()).unwrap());
        assert!(eval_condition(&env, "'False' | bool or true", ctx.clone()).unwrap());
        assert!(!eval_condition(&env, "'False'", ctx.clone()).unwrap());
        let err = eval_condition(&env, "missing", ctx.clone()).unwrap_err();
        assert!(
            render_error_message(&err).contains("missing"),
            "{}",
            render_error_message(&err)
        );
        assert!(eval_condition(&env, "missing.x", ctx).is_err());
    }

    #[test]
    fn render_value_native_types() {
        let env = environment();
        let ctx = context! { n => 3, l => vec![1, 2], name => "web" };
        assert_eq!(
            render_value(&env, "{{ 3 }}", ctx.clone()).unwrap(),
            Value::from(3)
        );
        assert_eq!(
            render_value(&env, " {{ n + 1 }} ", ctx.clone()).unwrap(),
            Value::from(4)
        );
        let l = render_value(&env, "{{ [1, 2] }}", ctx.clone()).unwrap();
        assert_eq!(l.kind(), ValueKind::Seq);
        assert_eq!(l, Value::from(vec![1, 2]));
        assert_eq!(
            render_value(&env, "{{ l }}", ctx.clone()).unwrap(),
            Value::from(vec![1, 2])
        );
        assert_eq!(
            render_value(&env, "{{- true -}}", ctx.clone()).unwrap(),
            Value::from(true)
        );
        assert_eq!(
            render_value(&env, "host-{{ name }}", ctx.clone()).unwrap(),
            Value::from("host-web")
        );
        assert_eq!(
            render_value(&env, "{{ n }}{{ n }}", ctx.clone()).unwrap(),
            Value::from("33")
        );
        assert_eq!(
            render_value(&env, "plain", ctx.clone()).unwrap(),
            Value::from("plain")
        );
        assert!(render_value(&env, "{{ missing }}", ctx).is_err());
    }

    #[test]
    fn a_trailing_line_break_keeps_the_text() {
        let env = environment();
        let ctx = context! { n => 3, s => "out" };
        assert_eq!(
            render_value(&env, "{{ s }}\n", ctx.clone()).unwrap(),
            Value::from("out\n")
        );
        assert_eq!(
            render_value(&env, "{{ [n, s] }}\n", ctx).unwrap(),
            Value::from(vec![Value::from(3), Value::from("out")])
        );
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
