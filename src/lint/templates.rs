//! Jinja: every template file and every templated string is compiled with the
//! engine's environment ([`crate::template::environment`]); syntax errors,
//! filters and tests the engine does not implement, and the variables used
//! (for `ref-undefined-var`) are reported with file:line.

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;

use super::Linter;
use super::schema::is_templated;
use crate::yaml::{Loc, Node, Yaml};

/// Every templated string in the node (values of any depth).
pub fn walk_strings(l: &mut Linter, n: &Node) {
    match &n.value {
        Yaml::Str(s) if is_templated(s) => check_str(l, s, &n.loc),
        Yaml::Seq(items) => {
            for i in items {
                walk_strings(l, i);
            }
        }
        Yaml::Map(m) => {
            for (_, v) in m {
                walk_strings(l, v);
            }
        }
        _ => {}
    }
}

/// Bare expressions (`when`, `changed_when`, `that`): a string or a list of them.
pub fn walk_exprs(l: &mut Linter, n: &Node) {
    match &n.value {
        Yaml::Str(s) => check_expr(l, s, &n.loc),
        Yaml::Seq(items) => {
            for i in items {
                walk_exprs(l, i);
            }
        }
        _ => {}
    }
}

pub fn check_expr(l: &mut Linter, expr: &str, loc: &Loc) {
    if is_templated(expr) {
        return check_str(l, expr, loc);
    }
    let names = match l.env.compile_expression(expr) {
        Ok(e) => e.undeclared_variables(false),
        Err(e) => {
            l.report(
                "jinja-syntax",
                loc,
                format!("expression `{expr}` does not compile: {}", err_text(&e)),
            );
            return;
        }
    };
    scan_filters_tests(l, expr, 0, &|_| loc.clone());
    record_uses(l, names, expr, &|_| loc.clone());
}

pub fn check_str(l: &mut Linter, s: &str, loc: &Loc) {
    let names = match l.env.template_from_named_str("<string>", s) {
        Ok(t) => t.undeclared_variables(false),
        Err(e) => {
            l.report(
                "jinja-syntax",
                loc,
                format!("template string does not compile: {}", err_text(&e)),
            );
            return;
        }
    };
    // A block scalar (`key: |`) starts on the line after its indicator.
    let block = loc.line > 0
        && l.source_line(&loc.file, loc.line)
            .is_some_and(|ln| matches!(ln.chars().nth(loc.col), Some('|' | '>')));
    let at = |off: usize| -> Loc {
        let extra = s[..off.min(s.len())].matches('\n').count() + usize::from(block);
        let mut l2 = loc.clone();
        if extra > 0 {
            l2.line += extra;
            l2.col = 0;
        }
        l2
    };
    for (start, end) in regions(s) {
        scan_filters_tests(l, &s[start..end], start, &at);
    }
    record_uses(l, names, s, &at);
}

/// What the template module (and the `template` lookup) puts on top of the
/// task's variables while it renders a template file
/// ([`crate::template::template_file_vars`]; `ansible_managed` is an
/// `ansible_` name).
pub const TEMPLATE_FILE_VARS: &[&str] = &[
    "template_host",
    "template_path",
    "template_uid",
    "template_destpath",
    "template_fullpath",
];

/// Ansible's template variables deployer does not provide: a template using
/// them fails when it renders, so the pre-flight says so.
const TEMPLATE_FILE_VARS_NOT_YET: &[&str] = &["template_mtime", "template_run_date"];

pub fn check_template_file(l: &mut Linter, path: &Path, text: &str) {
    let name = path.display().to_string();
    let names = match l.env.template_from_named_str(&name, text) {
        Ok(t) => {
            let mut names = t.undeclared_variables(false);
            names.retain(|n| !TEMPLATE_FILE_VARS.contains(&n.as_str()));
            names
        }
        Err(e) => {
            let line = e.line().unwrap_or(0);
            l.report_at(
                "jinja-syntax",
                path,
                line,
                if line > 0 { 1 } else { 0 },
                format!("template does not compile: {}", err_text(&e)),
            );
            return;
        }
    };
    let at = |off: usize| -> Loc {
        let before = &text[..off.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|p| p + 1).unwrap_or(0);
        Loc::new(path, line, col)
    };
    for (start, end) in regions(text) {
        scan_filters_tests(l, &text[start..end], start, &at);
    }
    let mut names = names;
    for n in TEMPLATE_FILE_VARS_NOT_YET {
        if names.remove(*n) && !guarded(text, n) {
            let pos = find_word(text, n).unwrap_or(0);
            l.report(
                "jinja-unsupported-var",
                &at(pos),
                format!("template variable '{n}' (set by Ansible's template module) is not provided by deployer yet"),
            );
        }
    }
    record_uses(l, names, text, &at);
}

fn err_text(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Byte ranges of `{{ ... }}` and `{% ... %}` in a template.
fn regions(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = s[i..].find('{') {
        let start = i + p;
        let close = match s[start + 1..].chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                i = start + 1;
                continue;
            }
        };
        let end = s[start + 2..]
            .find(close)
            .map(|e| start + 2 + e)
            .unwrap_or(s.len());
        if close != "#}" {
            out.push((start + 2, end));
        }
        i = (end + 2).min(s.len());
        // `{% raw %}` ... `{% endraw %}`: text, not Jinja.
        if close == "%}" && block_name(&s[start + 2..end]) == "raw" {
            let mut j = i;
            loop {
                let Some(p) = s[j..].find("{%") else {
                    i = s.len();
                    break;
                };
                let open = j + p;
                let Some(e) = s[open + 2..].find("%}") else {
                    i = s.len();
                    break;
                };
                let close_at = open + 2 + e;
                j = close_at + 2;
                if block_name(&s[open + 2..close_at]) == "endraw" {
                    i = j;
                    break;
                }
            }
        }
        if i >= s.len() {
            break;
        }
    }
    out
}

/// The statement of a `{% ... %}` body, without whitespace control marks.
fn block_name(body: &str) -> &str {
    body.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace())
}

fn filter_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\|\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
            .unwrap_or_else(|_| unreachable!())
    })
}

fn test_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\bis\s+(?:not\s+)?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
            .unwrap_or_else(|_| unreachable!())
    })
}

/// String literals blanked out (same length), so `'a|b'` is not a filter.
fn blank_strings(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                for _ in 0..c.len_utf8() {
                    out.push(' ');
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

fn lookup_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"\b(?:lookup|query|q)\s*\(\s*['"]([A-Za-z0-9_.]+)['"]"#)
            .unwrap_or_else(|_| unreachable!())
    })
}

fn scan_filters_tests(l: &mut Linter, code: &str, offset: usize, at: &dyn Fn(usize) -> Loc) {
    // Lookups run when the task runs: an unknown or unsupported plugin is
    // reported now, not after connecting.
    for c in lookup_re().captures_iter(code) {
        if let Some(m) = c.get(1)
            && let Some(why) = crate::template::lookups::refusal(m.as_str())
        {
            l.report("jinja-unknown-lookup", &at(offset + m.start()), why);
        }
    }
    let code = blank_strings(code);
    let mut filters = Vec::new();
    for c in filter_re().captures_iter(&code) {
        if let Some(m) = c.get(1) {
            filters.push((m.as_str().to_string(), m.start()));
        }
    }
    let mut tests = Vec::new();
    for c in test_re().captures_iter(&code) {
        if let Some(m) = c.get(1) {
            tests.push((m.as_str().to_string(), m.start()));
        }
    }
    for (name, pos) in filters {
        if !l.filter_exists(&name) {
            l.report(
                "jinja-unknown-filter",
                &at(offset + pos),
                format!("filter '{name}' is not implemented by deployer"),
            );
        }
    }
    for (name, pos) in tests {
        if !l.test_exists(&name) {
            l.report(
                "jinja-unknown-test",
                &at(offset + pos),
                format!("test '{name}' is not implemented by deployer"),
            );
        }
    }
}

/// Names used, minus those guarded by `is defined`/`default` in the same text.
fn record_uses(l: &mut Linter, names: HashSet<String>, text: &str, at: &dyn Fn(usize) -> Loc) {
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort();
    for name in names {
        if guarded(text, &name) {
            continue;
        }
        let pos = find_word(text, &name).unwrap_or(0);
        l.know.uses.push((name, at(pos)));
    }
}

fn find_word(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = text[from..].find(name) {
        let s = from + p;
        let e = s + name.len();
        let before = text[..s].chars().next_back();
        let after = text[e..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
        if !word(before) && !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return Some(s);
        }
        from = e;
    }
    None
}

///
/// Whether `name`, as a whole word, is followed (after any attribute or
/// subscript: `.x`, `['y']`) by `is [not] defined|undefined|none` or by a
/// `default`/`d` filter. Scanned by hand: it runs for every name in every
/// template of the project before each run, and a regex built per name (with
/// Unicode word classes) cost about 0.1 s of start-up on a 34-task role.
fn guarded(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let starts_word = |s: &str, w: &str| s.strip_prefix(w).is_some_and(|r| !r.starts_with(word));
    let mut from = 0;
    while let Some(i) = text[from..].find(name) {
        let s = from + i;
        let e = s + name.len();
        from = s + name.chars().next().map_or(1, char::len_utf8);
        if text[..s].chars().next_back().is_some_and(word) || text[e..].starts_with(word) {
            continue;
        }
        let rest = text[e..]
            .trim_start_matches(|c: char| word(c) || matches!(c, '.' | '[' | ']' | '\'' | '"'))
            .trim_start();
        if let Some(r) = rest.strip_prefix("is")
            && r.starts_with(char::is_whitespace)
        {
            let r = r.trim_start();
            let r = match r.strip_prefix("not") {
                Some(x) if x.starts_with(char::is_whitespace) => x.trim_start(),
                _ => r,
            };
            if ["defined", "undefined", "none"]
                .iter()
                .any(|t| r.starts_with(t))
            {
                return true;
            }
        }
        if let Some(r) = rest.strip_prefix('|') {
            let r = r.trim_start();
            if starts_word(r, "default") || starts_word(r, "d") {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod guard_tests {
    /// The regex this scanner replaces, as the oracle.
    fn by_regex(text: &str, name: &str) -> bool {
        let pat = format!(
            r"\b{}\b[\w.\[\]'\x22]*\s*(?:is\s+(?:not\s+)?(?:defined|undefined|none)|\|\s*(?:default|d)\b)",
            regex::escape(name)
        );
        regex::Regex::new(&pat).is_ok_and(|re| re.is_match(text))
    }

    #[test]
    fn guarded_agrees_with_the_regex() {
        let texts = [
            "{{ foo }}",
            "{{ foo | default('x') }}",
            "{{ foo|d(1) }}",
            "{{ foo | defaults }}",
            "{{ foo | dict2items }}",
            "{% if foo is defined %}{{ foo }}{% endif %}",
            "{% if foo is not defined %}x{% endif %}",
            "{% if foo is   undefined %}",
            "{% if foo is none %}",
            "{% if foo is string %}",
            "{% if foo isdefined %}",
            "{{ foo.bar['baz'] | default(2) }}",
            "{{ foo['a'].b is defined }}",
            "{{ myfoo | default(1) }} {{ foo }}",
            "{{ foo_bar | default(1) }} {{ foo }}",
            "{{ foo }} {{ foo | default(0) }}",
            "{{ x.foo | default(0) }}",
            "{{ foo\n | default(0) }}",
            "{{ foo | \n default(0) }}",
            "{{ éfoo | default(0) }}",
            "{{ foo is not none }}",
            "{{ foo is notdefined }}",
            "",
        ];
        for t in texts {
            for n in ["foo", "bar", "foo_bar", "x"] {
                assert_eq!(super::guarded(t, n), by_regex(t, n), "{n} in {t:?}");
            }
        }
    }
}
