//! Jinja: every template file and every templated string is compiled with the
//! engine's environment ([`crate::template::environment`]); syntax errors,
//! filters and tests the engine does not implement, and the variables used
//! (for `ref-undefined-var`) are reported with file:line.

use std::collections::HashSet;
use std::path::Path;

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

// The three scanners below find what these patterns would (Unicode `\b` and
// `\s`, leftmost matches that do not overlap), without compiling a regular
// expression on every run (~0.6 ms at each start, more than the rest of the
// scan):
//   lookups  \b(?:lookup|query|q)\s*\(\s*['"]([A-Za-z0-9_.]+)['"]
//   filters  \|\s*(NAME)
//   tests    \bis\s+(?:not\s+)?(NAME)
// where NAME is [A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*.

/// A word character for `\b`: a letter, a digit or `_` (Unicode's `\w`
/// also counts combining marks and connector punctuation, which never
/// precede a name in a template's expression).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a word starts at byte `i` of `s` (`\b` before a word character).
fn word_starts_at(s: &str, i: usize) -> bool {
    s[..i].chars().next_back().is_none_or(|c| !is_word(c))
}

/// The length of the whitespace (Unicode `\s`) at the start of `s`.
fn spaces(s: &str) -> usize {
    s.len() - s.trim_start_matches(char::is_whitespace).len()
}

/// The length of a dotted name (`a.b_c`) at the start of `s`, 0 when none.
fn dotted_name(s: &str) -> usize {
    let b = s.as_bytes();
    let ident = |at: usize| -> usize {
        match b.get(at) {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                1 + b[at + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count()
            }
            _ => 0,
        }
    };
    let mut end = ident(0);
    if end == 0 {
        return 0;
    }
    while b.get(end) == Some(&b'.') {
        match ident(end + 1) {
            0 => break,
            n => end += 1 + n,
        }
    }
    end
}

/// `(name, byte offset)` of each lookup plugin named as a literal:
/// `lookup('env', ...)`, `query("file", ...)`, `q('x')`.
fn lookup_names(code: &str) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let found = ["lookup", "query", "q"].iter().find_map(|kw| {
            if !rest.starts_with(kw) || !word_starts_at(code, i) {
                return None;
            }
            let mut at = kw.len();
            at += spaces(&rest[at..]);
            if !rest[at..].starts_with('(') {
                return None;
            }
            at += 1;
            at += spaces(&rest[at..]);
            if !rest[at..].starts_with(['\'', '"']) {
                return None;
            }
            at += 1;
            let n = rest[at..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                .count();
            if n == 0 || !rest[at + n..].starts_with(['\'', '"']) {
                return None;
            }
            Some((at, n))
        });
        match found {
            Some((at, n)) => {
                out.push((&code[i + at..i + at + n], i + at));
                i += at + n + 1;
            }
            None => i += 1,
        }
    }
    out
}

/// `(name, byte offset)` of each filter applied (`| default`, `|ns.f`).
fn filter_names(code: &str) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].find('|') {
        let bar = i + p;
        let at = bar + 1 + spaces(&code[bar + 1..]);
        let n = dotted_name(&code[at..]);
        if n > 0 {
            out.push((&code[at..at + n], at));
            i = at + n;
        } else {
            i = bar + 1;
        }
    }
    out
}

/// `(name, byte offset)` of each test (`is defined`, `is not none`).
fn test_names(code: &str) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].find("is") {
        let start = i + p;
        let ws = spaces(&code[start + 2..]);
        if ws == 0 || !word_starts_at(code, start) {
            i = start + 1;
            continue;
        }
        let at = start + 2 + ws;
        // `not` and its space, unless no name follows them (then `not`
        // itself is the name, as the pattern backtracks).
        let after_not = code[at..]
            .strip_prefix("not")
            .map(|r| (r, spaces(r)))
            .filter(|(_, n)| *n > 0)
            .map(|(_, n)| at + 3 + n)
            .filter(|&a| dotted_name(&code[a..]) > 0);
        let at = after_not.unwrap_or(at);
        let n = dotted_name(&code[at..]);
        if n > 0 {
            out.push((&code[at..at + n], at));
            i = at + n;
        } else {
            i = start + 1;
        }
    }
    out
}

fn scan_filters_tests(l: &mut Linter, code: &str, offset: usize, at: &dyn Fn(usize) -> Loc) {
    // Lookups run when the task runs: an unknown or unsupported plugin is
    // reported now, not after connecting.
    for (name, pos) in lookup_names(code) {
        if let Some(why) = crate::template::lookups::refusal(name) {
            l.report("jinja-unknown-lookup", &at(offset + pos), why);
        }
    }
    let code = blank_strings(code);
    let filters = filter_names(&code);
    let tests = test_names(&code);
    for (name, pos) in filters {
        if !l.filter_exists(name) {
            l.report(
                "jinja-unknown-filter",
                &at(offset + pos),
                format!("filter '{name}' is not implemented by deployer"),
            );
        }
    }
    for (name, pos) in tests {
        if !l.test_exists(name) {
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

#[cfg(test)]
mod scanner_tests {
    use super::{filter_names, lookup_names, test_names};

    const NAME: &str = r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)";

    /// The patterns the scanners replace, as the oracle: `(name, offset)` of
    /// the first group of every match.
    fn by_regex(re: &regex::Regex, text: &str) -> Vec<(String, usize)> {
        re.captures_iter(text)
            .filter_map(|c| c.get(1))
            .map(|m| (m.as_str().to_string(), m.start()))
            .collect()
    }

    fn owned(v: Vec<(&str, usize)>) -> Vec<(String, usize)> {
        v.into_iter().map(|(s, i)| (s.to_string(), i)).collect()
    }

    fn patterns() -> [regex::Regex; 3] {
        [
            r#"\b(?:lookup|query|q)\s*\(\s*['"]([A-Za-z0-9_.]+)['"]"#.to_string(),
            format!(r"\|\s*{NAME}"),
            format!(r"\bis\s+(?:not\s+)?{NAME}"),
        ]
        .map(|p| regex::Regex::new(&p).unwrap_or_else(|e| panic!("{e}")))
    }

    fn agree(re: &[regex::Regex; 3], text: &str) {
        assert_eq!(
            owned(lookup_names(text)),
            by_regex(&re[0], text),
            "lookups in {text:?}"
        );
        assert_eq!(
            owned(filter_names(text)),
            by_regex(&re[1], text),
            "filters in {text:?}"
        );
        assert_eq!(
            owned(test_names(text)),
            by_regex(&re[2], text),
            "tests in {text:?}"
        );
    }

    #[test]
    fn scanners_agree_with_the_patterns_on_known_texts() {
        let re = patterns();
        for t in [
            "",
            "x | default('a') | to_nice_json",
            "x|d(1)|ns.f|a.|b..c| 1x |_y",
            "a || b",
            "y is defined and z is not none",
            "this is x",
            "x is not (y)",
            "x is notdefined",
            "x is\tnot\n  sameas y",
            "xis defined",
            "is",
            "is ",
            "a is is b",
            "lookup('env', 'HOME') ~ query(\"file\", x) ~ q('a.b_c')",
            "lookup ( 'env' ) ~ lookup('') ~ lookup('x\") ~ alookup('x') ~ q ('y'",
            "é is defined ~ éis x ~ (is y) ~ _is z ~ 1is w",
            "x | \u{a0}upper ~ y is\u{2003}odd",
        ] {
            agree(&re, t);
        }
    }

    /// Random texts from the pieces the patterns care about.
    #[test]
    fn scanners_agree_with_the_patterns_on_random_texts() {
        let pieces = [
            "is", "not", " ", "  ", "\t", "\n", "|", "||", "lookup", "query", "q", "(", ")", "'",
            "\"", ".", "a", "_", "1", "x9", "defined", "é", "\u{a0}", "is not", "| d", "ns.f",
            "..",
        ];
        let re = patterns();
        let mut next = crate::fuzzing::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let len = (next() % 14) as usize;
            let text: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            agree(&re, &text);
        }
    }
}
