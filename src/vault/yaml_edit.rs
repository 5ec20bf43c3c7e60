//! Minimal, comment- and order-preserving edits of the top-level keys of a YAML
//! block mapping (what `set_keys` needs). It works on lines: a top-level entry is a
//! `key:` line at column 0 plus the following lines that are indented, blank,
//! comments or column-0 sequence items (`- x`, YAML allows those under a key).

use super::VaultError;

/// Quote `s` as a YAML double-quoted scalar that round-trips exactly.
pub fn quote_yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if ((c as u32) >= 0x80 && (c as u32) < 0xa0) || c == '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A valid variable name (what ansible accepts as a var name).
fn valid_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

enum LineKind {
    /// A top-level `key:` line.
    Key(String),
    /// Blank or comment.
    Gap,
    /// Indented content or a column-0 `- ` item (belongs to the previous key).
    Continuation,
    /// `---`, `...` or a `%` directive.
    Marker,
    /// `{}`: an empty flow mapping, which we may drop.
    EmptyFlowMap,
}

fn classify(line: &str, origin: &str, line_no: usize) -> Result<LineKind, VaultError> {
    let content = line.trim_end_matches(['\r', '\n']);
    let trimmed = content.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(LineKind::Gap);
    }
    if content.starts_with([' ', '\t']) {
        return Ok(LineKind::Continuation);
    }
    if content.starts_with("---") || content.starts_with("...") || content.starts_with('%') {
        return Ok(LineKind::Marker);
    }
    if content == "-" || content.starts_with("- ") || content.starts_with("-\t") {
        return Ok(LineKind::Continuation);
    }
    if trimmed == "{}" {
        return Ok(LineKind::EmptyFlowMap);
    }
    let err = |detail: &str| VaultError::Yaml {
        origin: origin.to_string(),
        detail: format!("line {line_no}: {detail}"),
    };
    if content.starts_with(['[', '{', '?', '&', '*', '!', '|', '>']) {
        return Err(err(
            "unsupported top-level construct (expected a block mapping of `key: value` lines)",
        ));
    }
    // Quoted key.
    if let Some(q) = content.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let rest = &content[1..];
        let mut key = String::new();
        let mut chars = rest.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == q {
                if q == '\'' && rest[i + 1..].starts_with('\'') {
                    key.push('\'');
                    chars.next();
                    continue;
                }
                end = Some(i + 1);
                break;
            }
            if c == '\\' && q == '"' {
                // Only simple escapes matter for variable names.
                if let Some((_, e)) = chars.next() {
                    key.push(e);
                }
                continue;
            }
            key.push(c);
        }
        let Some(end) = end else {
            return Err(err("unterminated quoted key"));
        };
        if rest[end..].trim_start().starts_with(':') {
            return Ok(LineKind::Key(key));
        }
        return Err(err("expected `:` after a quoted key"));
    }
    // Plain key: up to the first `:` followed by whitespace or end of line.
    let bytes = content.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b':' && bytes.get(i + 1).is_none_or(|n| *n == b' ' || *n == b'\t') {
            return Ok(LineKind::Key(content[..i].trim_end().to_string()));
        }
        if *b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            break;
        }
    }
    Err(err(
        "expected a top-level `key: value` line (the document must be a YAML mapping)",
    ))
}

/// Set or replace top-level keys of a YAML mapping document given as text.
pub fn set_top_level_keys(
    text: &str,
    updates: &[(&str, &str)],
    origin: &str,
) -> Result<String, VaultError> {
    for (k, _) in updates {
        if !valid_key(k) {
            return Err(VaultError::Yaml {
                origin: origin.to_string(),
                detail: format!(
                    "invalid key `{}` (expected a variable name: letters, digits and `_`, not starting with a digit)",
                    k.escape_debug()
                ),
            });
        }
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut kinds = Vec::with_capacity(lines.len());
    let mut seen_key = false;
    let mut seen_content = false;
    for (i, line) in lines.iter().enumerate() {
        let kind = classify(line, origin, i + 1)?;
        match &kind {
            LineKind::Key(_) => {
                seen_key = true;
                seen_content = true;
            }
            LineKind::Continuation if !seen_key => {
                return Err(VaultError::Yaml {
                    origin: origin.to_string(),
                    detail: format!(
                        "line {}: content before the first top-level key (expected a YAML mapping)",
                        i + 1
                    ),
                });
            }
            LineKind::Marker if line.starts_with("---") && seen_content => {
                return Err(VaultError::Yaml {
                    origin: origin.to_string(),
                    detail: format!(
                        "line {}: a second YAML document (expected a single mapping)",
                        i + 1
                    ),
                });
            }
            LineKind::EmptyFlowMap => seen_content = true,
            _ => {}
        }
        kinds.push(kind);
    }

    // Build the output.
    let value_for = |key: &str| -> Option<&str> {
        // Last update wins if the same key is given twice.
        updates
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    };
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len() + 64 * updates.len());
    let mut done: Vec<&str> = Vec::new();
    let mut i = 0;
    let has_keys = seen_key;
    while i < lines.len() {
        match &kinds[i] {
            LineKind::Key(key) => {
                if let Some(v) = value_for(key) {
                    // Span: the key line and its continuation, up to its last content line.
                    let mut last = i;
                    let mut j = i + 1;
                    while j < lines.len() {
                        match kinds[j] {
                            LineKind::Continuation => {
                                let t = lines[j].trim();
                                if !t.starts_with('#') {
                                    last = j;
                                }
                            }
                            LineKind::Gap => {}
                            _ => break,
                        }
                        j += 1;
                    }
                    out.push_str(key);
                    out.push_str(": ");
                    out.push_str(&quote_yaml_string(v));
                    out.push_str(newline);
                    if let Some((k, _)) = updates.iter().find(|(k, _)| k == key) {
                        done.push(k);
                    }
                    i = last + 1;
                    continue;
                }
                out.push_str(lines[i]);
            }
            LineKind::EmptyFlowMap if !has_keys && !updates.is_empty() => {}
            _ => out.push_str(lines[i]),
        }
        i += 1;
    }
    let mut appended: Vec<&str> = Vec::new();
    for (k, _) in updates {
        if done.contains(k) || appended.contains(k) {
            continue;
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(newline);
        }
        out.push_str(k);
        out.push_str(": ");
        out.push_str(&quote_yaml_string(value_for(k).unwrap_or_default()));
        out.push_str(newline);
        appended.push(k);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_yaml_string("abc"), "\"abc\"");
        assert_eq!(quote_yaml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote_yaml_string("l1\nl2\t\u{1}"), "\"l1\\nl2\\t\\x01\"");
        assert_eq!(quote_yaml_string("{{ x }}: #y"), "\"{{ x }}: #y\"");
    }

    #[test]
    fn replaces_and_appends_keeping_order_and_comments() {
        let src = "---\n# top comment\na: 1\nb:\n  nested: true\n  # inner\n  more: [1]\n\n# about c\nc: |\n  block\n  text\nlist:\n- x\n- y\n";
        let out =
            set_top_level_keys(src, &[("b", "new"), ("d", "dd"), ("list", "z")], "f").unwrap();
        assert_eq!(
            out,
            "---\n# top comment\na: 1\nb: \"new\"\n\n# about c\nc: |\n  block\n  text\nlist: \"z\"\nd: \"dd\"\n"
        );
    }

    #[test]
    fn quoted_keys_and_no_trailing_newline() {
        let out = set_top_level_keys("'a': 1\n\"b\" : 2", &[("b", "x")], "f").unwrap();
        assert_eq!(out, "'a': 1\nb: \"x\"\n");
        let out = set_top_level_keys("a: 1", &[("z", "x")], "f").unwrap();
        assert_eq!(out, "a: 1\nz: \"x\"\n");
        let out = set_top_level_keys("", &[("z", "x")], "f").unwrap();
        assert_eq!(out, "z: \"x\"\n");
        let out = set_top_level_keys("{}\n", &[("z", "x")], "f").unwrap();
        assert_eq!(out, "z: \"x\"\n");
    }

    #[test]
    fn rejects_non_mappings_and_bad_keys() {
        for bad in ["- a\n- b\n", "[1, 2]\n", "a: 1\n---\nb: 2\n", "just text\n"] {
            assert!(
                matches!(
                    set_top_level_keys(bad, &[("k", "v")], "f"),
                    Err(VaultError::Yaml { .. })
                ),
                "{bad:?}"
            );
        }
        for key in ["", "1a", "a-b", "a b", "a:b"] {
            assert!(matches!(
                set_top_level_keys("a: 1\n", &[(key, "v")], "f"),
                Err(VaultError::Yaml { .. })
            ));
        }
    }
}
