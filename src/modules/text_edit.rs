//! Shared pieces of the `lineinfile` and `blockinfile` ports: the planned
//! edit, Python-compatible regular expressions over bytes, Python's line
//! splitting, and `Match.expand` template expansion.
//!
//! Ansible runs these modules on bytes (`re.compile(to_bytes(regexp))`), so
//! patterns are compiled as `regex::bytes` with Unicode disabled, which gives
//! Python's bytes-pattern semantics: ASCII `\w`/`\d`/`\s`/`\b`, ASCII-only
//! case folding, `.` matching any byte but `\n`.

use regex::bytes::{Captures, Regex, RegexBuilder};

/// The planned result of a text-editing module.
///
/// `content` is the whole file after the edit. When `changed` is false the
/// file must not be written (and, for a missing file, not created).
/// `msg` is Ansible's message before any file-attribute suffix
/// (" and ownership, perms or SE linux context changed").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub content: String,
    pub changed: bool,
    pub msg: String,
}

pub(crate) const LINESEP: &[u8] = b"\n";

/// A compiled Python regular expression.
#[derive(Debug, Clone)]
pub(crate) struct PyRegex {
    pub re: Regex,
    /// `re.MULTILINE` is among the pattern's global flags (`(?m)` at the start).
    pub multiline: bool,
}

impl PyRegex {
    pub fn new(pattern: &str) -> Result<PyRegex, String> {
        let (translated, multiline) = translate(pattern)?;
        let re = RegexBuilder::new(&format!("(?-u){translated}"))
            .build()
            .map_err(|e| {
                format!("regexp uses a construct deployer does not support: '{pattern}': {e}")
            })?;
        Ok(PyRegex { re, multiline })
    }

    pub fn search<'h>(&self, hay: &'h [u8]) -> Option<Captures<'h>> {
        self.re.captures(hay)
    }

    pub fn is_match(&self, hay: &[u8]) -> bool {
        self.re.is_match(hay)
    }
}

fn unsupported(pattern: &str, what: &str) -> String {
    format!("regexp uses a construct deployer does not support: {what} in '{pattern}'")
}

fn invalid(pattern: &str, what: &str) -> String {
    format!("invalid regular expression '{pattern}': {what}")
}

/// Translates a Python `re` pattern into Rust `regex` syntax.
///
/// Returns the translated pattern and whether `re.MULTILINE` is a global flag.
/// Python's `$` without MULTILINE matches at the end or before a final `\n`;
/// on the single lines these modules search, Rust's `(?m:$)` is the same.
fn translate(p: &str) -> Result<(String, bool), String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::new();
    let mut i = 0;

    // Global flags: only allowed at the start of the expression.
    let mut multiline = false;
    let mut verbose = false;
    while chars.len() >= i + 3 && chars[i] == '(' && chars[i + 1] == '?' {
        let mut j = i + 2;
        let mut flags = String::new();
        while j < chars.len() && "aiLmsux".contains(chars[j]) {
            flags.push(chars[j]);
            j += 1;
        }
        if flags.is_empty() || j >= chars.len() || chars[j] != ')' {
            break;
        }
        if flags.contains('u') {
            return Err(invalid(p, "cannot use UNICODE flag with a bytes pattern"));
        }
        multiline |= flags.contains('m');
        verbose |= flags.contains('x');
        let kept: String = flags.chars().filter(|c| "imsx".contains(*c)).collect();
        if !kept.is_empty() {
            out.push_str(&format!("(?{kept})"));
        }
        i = j + 1;
    }
    let global_multiline = multiline;

    // (multiline, verbose) in effect outside each open group.
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut prev_quantifier = false;

    while i < chars.len() {
        let c = chars[i];
        let was_quantifier = prev_quantifier;
        prev_quantifier = false;
        match c {
            '\\' => {
                let (s, n) = translate_escape(p, &chars, i, false)?;
                out.push_str(&s);
                i += n;
            }
            '[' => {
                let n = translate_class(p, &chars, i, &mut out)?;
                i += n;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    let rest: String = chars[i + 2..].iter().take(3).collect();
                    if rest.starts_with('=') || rest.starts_with('!') {
                        return Err(unsupported(p, "look-ahead"));
                    }
                    if rest.starts_with("<=") || rest.starts_with("<!") {
                        return Err(unsupported(p, "look-behind"));
                    }
                    if rest.starts_with("P=") {
                        return Err(unsupported(p, "named backreference (?P=...)"));
                    }
                    if rest.starts_with('>') {
                        return Err(unsupported(p, "atomic group (?>...)"));
                    }
                    if rest.starts_with('(') {
                        return Err(unsupported(p, "conditional group (?(...)...)"));
                    }
                    if rest.starts_with('#') {
                        // Comment group: skipped entirely.
                        let mut j = i + 3;
                        while j < chars.len() && chars[j] != ')' {
                            j += 1;
                        }
                        if j >= chars.len() {
                            return Err(invalid(p, "missing ), unterminated comment"));
                        }
                        i = j + 1;
                        continue;
                    }
                    if rest.starts_with(':') || rest.starts_with("P<") {
                        stack.push((multiline, verbose));
                        out.push_str("(?");
                        i += 2;
                        continue;
                    }
                    if rest.starts_with('<') {
                        return Err(invalid(p, "unknown extension ?<"));
                    }
                    // Scoped flags (?flags-flags:...) or misplaced global flags.
                    let mut j = i + 2;
                    let mut on = String::new();
                    let mut off = String::new();
                    let mut neg = false;
                    while j < chars.len() && ("aiLmsux".contains(chars[j]) || chars[j] == '-') {
                        if chars[j] == '-' {
                            neg = true;
                        } else if neg {
                            off.push(chars[j]);
                        } else {
                            on.push(chars[j]);
                        }
                        j += 1;
                    }
                    match chars.get(j) {
                        Some(':') => {
                            stack.push((multiline, verbose));
                            if on.contains('m') {
                                multiline = true;
                            }
                            if off.contains('m') {
                                multiline = false;
                            }
                            if on.contains('x') {
                                verbose = true;
                            }
                            if off.contains('x') {
                                verbose = false;
                            }
                            let keep = |s: &str| -> String {
                                s.chars().filter(|c| "imsx".contains(*c)).collect()
                            };
                            let (on, off) = (keep(&on), keep(&off));
                            if off.is_empty() {
                                out.push_str(&format!("(?{on}:"));
                            } else {
                                out.push_str(&format!("(?{on}-{off}:"));
                            }
                            i = j + 1;
                            continue;
                        }
                        Some(')') => {
                            return Err(invalid(
                                p,
                                "global flags not at the start of the expression",
                            ));
                        }
                        _ => return Err(invalid(p, "unknown extension")),
                    }
                }
                stack.push((multiline, verbose));
                out.push('(');
                i += 1;
            }
            ')' => {
                match stack.pop() {
                    Some((m, v)) => {
                        multiline = m;
                        verbose = v;
                    }
                    None => return Err(invalid(p, "unbalanced parenthesis")),
                }
                out.push(')');
                i += 1;
            }
            '$' => {
                out.push_str(if multiline { "$" } else { "(?m:$)" });
                i += 1;
            }
            '{' => {
                // Python treats `{` literally unless it forms {m}, {m,}, {,n}, {m,n}.
                let mut j = i + 1;
                let mut lo = String::new();
                let mut hi = String::new();
                while j < chars.len() && chars[j].is_ascii_digit() {
                    lo.push(chars[j]);
                    j += 1;
                }
                let comma = chars.get(j) == Some(&',');
                if comma {
                    j += 1;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        hi.push(chars[j]);
                        j += 1;
                    }
                }
                let valid = (comma || !lo.is_empty()) && chars.get(j) == Some(&'}');
                if valid {
                    let lo = if lo.is_empty() { "0".to_string() } else { lo };
                    if comma {
                        out.push_str(&format!("{{{lo},{hi}}}"));
                    } else {
                        out.push_str(&format!("{{{lo}}}"));
                    }
                    prev_quantifier = true;
                    i = j + 1;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            '*' | '+' | '?' => {
                if was_quantifier && c == '+' {
                    return Err(unsupported(p, "possessive quantifier"));
                }
                out.push(c);
                // `*?` is a lazy quantifier; a `+` after it is still possessive
                // in Python, but that is vanishingly rare.
                prev_quantifier = c != '?' || !was_quantifier;
                i += 1;
            }
            '#' if verbose => {
                // Comment to end of line: copied verbatim, Rust's (?x) agrees.
                while i < chars.len() && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if !stack.is_empty() {
        return Err(invalid(p, "missing ), unterminated subpattern"));
    }
    Ok((out, global_multiline))
}

fn hex_byte(b: u32) -> String {
    format!("\\x{{{b:02X}}}")
}

/// Translates the escape at `chars[i]` (a backslash). Returns the Rust text
/// and how many chars were consumed.
fn translate_escape(
    p: &str,
    chars: &[char],
    i: usize,
    in_class: bool,
) -> Result<(String, usize), String> {
    let Some(&c) = chars.get(i + 1) else {
        return Err(invalid(p, "bad escape (end of pattern)"));
    };
    let octal = |start: usize, max: usize| -> (u32, usize) {
        let mut v = 0u32;
        let mut n = 0;
        while n < max {
            match chars.get(start + n).and_then(|c| c.to_digit(8)) {
                Some(d) => {
                    v = v * 8 + d;
                    n += 1;
                }
                None => break,
            }
        }
        (v, n)
    };
    match c {
        'd' | 'D' | 's' | 'S' | 'w' | 'W' => Ok((format!("\\{c}"), 2)),
        'n' | 't' | 'r' | 'f' | 'v' | 'a' => Ok((format!("\\{c}"), 2)),
        'b' if in_class => Ok((hex_byte(8), 2)),
        'A' | 'b' | 'B' if !in_class => Ok((format!("\\{c}"), 2)),
        'Z' if !in_class => Ok(("\\z".to_string(), 2)),
        'x' => {
            let h: String = chars.iter().skip(i + 2).take(2).collect();
            if h.len() == 2 && h.chars().all(|c| c.is_ascii_hexdigit()) {
                let v = u32::from_str_radix(&h, 16).unwrap_or(0);
                Ok((hex_byte(v), 4))
            } else {
                Err(invalid(p, &format!("incomplete escape \\x{h}")))
            }
        }
        '0' => {
            let (v, n) = octal(i + 2, 2);
            Ok((hex_byte(v), 2 + n))
        }
        '1'..='9' => {
            // Three octal digits form an octal escape; otherwise a group reference.
            let (v, n) = octal(i + 1, 3);
            if n == 3 {
                if v > 0o377 {
                    return Err(invalid(p, "octal escape value outside of range 0-0o377"));
                }
                Ok((hex_byte(v), 4))
            } else if in_class {
                Err(invalid(p, &format!("bad escape \\{c}")))
            } else {
                Err(unsupported(p, "backreference"))
            }
        }
        c if c.is_ascii_alphabetic() => Err(invalid(p, &format!("bad escape \\{c}"))),
        c if c.is_ascii() => Ok((hex_byte(c as u32), 2)),
        // A non-ASCII character escaped is itself.
        c => Ok((c.to_string(), 2)),
    }
}

/// Translates the character class starting at `chars[start]` (`[`), appending
/// to `out`. Returns the number of chars consumed.
fn translate_class(
    p: &str,
    chars: &[char],
    start: usize,
    out: &mut String,
) -> Result<usize, String> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(invalid(p, "unterminated character set"));
        };
        match c {
            ']' if !first => {
                out.push(']');
                return Ok(i + 1 - start);
            }
            '\\' => {
                let (s, n) = translate_escape(p, chars, i, true)?;
                out.push_str(&s);
                i += n;
            }
            '[' | ']' | '&' | '~' | '^' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                // Rust reads `--` as set difference; Python as a range or literal.
                out.push_str("\\-");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
        first = false;
    }
}

/// Python's `bytes.readlines()`: splits after each `\n`.
pub(crate) fn readlines(s: &[u8]) -> Vec<Vec<u8>> {
    s.split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Python's `bytes.splitlines(True)`: splits after `\n`, `\r\n` or a lone `\r`.
pub(crate) fn splitlines_keepends(s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\n' => {
                out.push(s[start..=i].to_vec());
                start = i + 1;
            }
            b'\r' => {
                if s.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                out.push(s[start..=i].to_vec());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < s.len() {
        out.push(s[start..].to_vec());
    }
    out
}

/// Python's `bytes.rstrip(b'\r\n')`.
pub(crate) fn rstrip_crlf(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && (s[end - 1] == b'\r' || s[end - 1] == b'\n') {
        end -= 1;
    }
    &s[..end]
}

/// Expands a Python replacement template (`Match.expand`, the `repl` of
/// `re.sub`) over bytes: `\1`, `\g<1>`, `\g<name>`, `\n`-style escapes, octal
/// escapes. `group(i)` returns the group's bytes, `None` when it did not
/// participate (expands to nothing) and `Err` when it does not exist.
pub(crate) fn expand_template(
    template: &[u8],
    group_count: usize,
    group_index: &dyn Fn(&str) -> Option<usize>,
    group: &dyn Fn(usize) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let err = |m: String| format!("invalid replacement template: {m}");
    let mut out = Vec::new();
    let mut i = 0;
    let t = template;
    let is_oct = |b: Option<&u8>| matches!(b, Some(b'0'..=b'7'));
    let is_dig = |b: Option<&u8>| matches!(b, Some(b'0'..=b'9'));
    let add_group = |out: &mut Vec<u8>, idx: usize| -> Result<(), String> {
        if idx > group_count {
            return Err(err(format!("invalid group reference {idx}")));
        }
        if let Some(g) = group(idx) {
            out.extend_from_slice(&g);
        }
        Ok(())
    };
    while i < t.len() {
        if t[i] != b'\\' {
            out.push(t[i]);
            i += 1;
            continue;
        }
        let Some(&c) = t.get(i + 1) else {
            return Err(err("bad escape (end of pattern)".into()));
        };
        i += 2;
        match c {
            b'g' => {
                if t.get(i) != Some(&b'<') {
                    return Err(err("missing <".into()));
                }
                let Some(close) = t[i + 1..].iter().position(|b| *b == b'>') else {
                    return Err(err("missing >, unterminated name".into()));
                };
                let name_bytes = &t[i + 1..i + 1 + close];
                if name_bytes.is_empty() {
                    return Err(err("missing group name".into()));
                }
                // The tokenizer decodes the template as latin-1.
                let name: String = name_bytes.iter().map(|b| *b as char).collect();
                i += close + 2;
                let is_ident = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_alphanumeric() || c == '_');
                let idx = if is_ident {
                    group_index(&name).ok_or_else(|| format!("unknown group name '{name}'"))?
                } else {
                    name.parse::<usize>()
                        .map_err(|_| err(format!("bad character in group name '{name}'")))?
                };
                add_group(&mut out, idx)?;
            }
            b'0' => {
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 2 && is_oct(t.get(i)) {
                    v = v * 8 + u32::from(t[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'1'..=b'9' => {
                if is_dig(t.get(i)) {
                    let d2 = t[i];
                    if c <= b'7' && d2 <= b'7' && is_oct(t.get(i + 1)) {
                        let v = u32::from(c - b'0') * 64
                            + u32::from(d2 - b'0') * 8
                            + u32::from(t[i + 1] - b'0');
                        if v > 0o377 {
                            return Err(err(format!(
                                "octal escape value \\{}{}{} outside of range 0-0o377",
                                c as char,
                                d2 as char,
                                t[i + 1] as char
                            )));
                        }
                        out.push(v as u8);
                        i += 2;
                    } else {
                        let idx = usize::from(c - b'0') * 10 + usize::from(d2 - b'0');
                        i += 1;
                        add_group(&mut out, idx)?;
                    }
                } else {
                    add_group(&mut out, usize::from(c - b'0'))?;
                }
            }
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' => out.push(b'\\'),
            c if c.is_ascii_alphabetic() => {
                return Err(err(format!("bad escape \\{}", c as char)));
            }
            c => {
                out.push(b'\\');
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// `Match.expand(template)` for a match of `re`.
pub(crate) fn expand_match(
    re: &Regex,
    caps: &Captures<'_>,
    template: &[u8],
) -> Result<Vec<u8>, String> {
    let names: Vec<Option<&str>> = re.capture_names().collect();
    expand_template(
        template,
        re.captures_len() - 1,
        &|name| names.iter().position(|n| *n == Some(name)),
        &|i| caps.get(i).map(|m| m.as_bytes().to_vec()),
    )
}

pub(crate) fn into_string(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes)
        .map_err(|_| "the edited file would not be valid UTF-8, which deployer cannot write".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        PyRegex::new(p)
            .map(|r| r.is_match(s.as_bytes()))
            .unwrap_or(false)
    }

    #[test]
    fn dollar_matches_before_final_newline() {
        assert!(m("^foo$", "foo\n"));
        assert!(!m("^foo$", "foo\r\n"));
        assert!(m("foo\\Z", "foo"));
        assert!(!m("foo\\Z", "foo\n"));
    }

    #[test]
    fn python_literal_braces_and_classes() {
        assert!(m("a{", "a{"));
        assert!(m("{x}", "{x}"));
        assert!(m("a{,2}b", "b"));
        assert!(m("[[]", "["));
        assert!(m("[]a]", "]"));
        assert!(m("\\<tag\\>", "<tag>"));
        assert!(m("(?i)HELLO", "hello"));
        assert!(m("caf\u{e9}", "caf\u{e9}"));
        assert!(!m("\\w", "\u{e9}"));
    }

    #[test]
    fn unsupported_constructs_are_errors() {
        for p in ["foo(?=bar)", "(?<!x)y", "(a)\\1", "(?P<n>a)(?P=n)"] {
            let e = PyRegex::new(p).err().unwrap_or_default();
            assert!(
                e.starts_with("regexp uses a construct deployer does not support"),
                "{e}"
            );
        }
        assert!(PyRegex::new("(").is_err());
        assert!(PyRegex::new("a(?i)b").is_err());
    }

    #[test]
    fn multiline_flag_detected() {
        assert!(
            PyRegex::new("(?m)^x$")
                .map(|r| r.multiline)
                .unwrap_or(false)
        );
        assert!(!PyRegex::new("(?i)x").map(|r| r.multiline).unwrap_or(true));
    }

    #[test]
    fn template_expansion() {
        let r = PyRegex::new("^(?P<k>\\w+)=(.*)$").unwrap_or_else(|e| panic!("{e}"));
        let caps = r.search(b"key=val\n").unwrap_or_else(|| panic!("no match"));
        let x = |t: &str| expand_match(&r.re, &caps, t.as_bytes());
        assert_eq!(x("\\1 is \\2").ok(), Some(b"key is val".to_vec()));
        assert_eq!(
            x("\\g<k>:\\g<2>\\t\\.").ok(),
            Some(b"key:val\t\\.".to_vec())
        );
        assert_eq!(x("\\101").ok(), Some(b"A".to_vec()));
        assert!(x("\\3").is_err());
        assert!(x("\\g<nope>").is_err());
        assert!(x("\\q").is_err());
    }

    #[test]
    fn splitting() {
        assert_eq!(
            readlines(b"a\r\nb\rc"),
            vec![b"a\r\n".to_vec(), b"b\rc".to_vec()]
        );
        assert_eq!(
            splitlines_keepends(b"a\r\nb\rc"),
            vec![b"a\r\n".to_vec(), b"b\r".to_vec(), b"c".to_vec()]
        );
        assert!(readlines(b"").is_empty());
    }
}
