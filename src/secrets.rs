//! Masking by construction: every value that came out of the vault, and
//! every `-e` value given on the command line, is registered here, and every
//! printer (human output, JSON events, diffs, errors, logs, records) passes
//! its text through [`mask`]. A rendered string that contains a secret
//! therefore prints as `********` wherever the secret appears in it, with or
//! without `no_log`.
//!
//! # What is masked
//!
//! For each registered secret, and for each line of a multi-line secret:
//! the text itself and the forms it takes when printed inside a larger
//! value: JSON-escaped (`to_json`, `--format json` of a dict, `"a\"b"`, with
//! and without `\uXXXX` for non-ASCII), Python-repr (`debug` of a dict,
//! `'it\'s'`), YAML double-quoted and single-quoted (`'it''s'`), and
//! shell-quoted (`'it'\''s'`, a recorded command line).
//!
//! # Short secrets
//!
//! A secret (or a line of one) of at least [`ANYWHERE_MIN`] characters is
//! masked wherever it appears. A shorter one is masked too, whatever its
//! length, but only where it stands as a whole token: the characters just
//! before and after it are not letters, digits or `_` (so the secret `ab`
//! masks `pw=ab` and `"ab"` but not `about`). A short secret with no letter
//! or digit at all (`!!`) is masked only between whitespace or the ends of
//! the text. Lines of a multi-line secret that have no letter or digit (`}`,
//! `-----`) carry nothing secret and are not registered on their own.

use std::sync::RwLock;

pub const MASK: &str = "********";

/// Secrets of at least this many characters are masked wherever they appear;
/// shorter ones only as whole tokens (see the module doc).
pub const ANYWHERE_MIN: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    /// Masked only as a whole token.
    token: bool,
    /// Has no letter or digit: a token only between whitespace.
    symbols: bool,
}

static SECRETS: RwLock<Vec<Pattern>> = RwLock::new(Vec::new());

/// Remembers a secret value: the value, each line of a multi-line value, and
/// the escaped forms of each (see the module doc).
pub fn register(secret: &str) {
    let whole = secret.trim_end_matches(['\n', '\r']);
    let mut bases: Vec<&str> = vec![whole];
    if whole.contains('\n') {
        bases.extend(
            whole
                .lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| l.chars().any(char::is_alphanumeric)),
        );
        // The trimmed line too: diffs and YAML blocks re-indent lines.
        bases.extend(
            whole
                .lines()
                .map(str::trim)
                .filter(|l| l.chars().any(char::is_alphanumeric)),
        );
    }
    let mut add: Vec<String> = Vec::new();
    for b in bases {
        if b.trim().is_empty() {
            continue;
        }
        for f in forms(b) {
            if !add.contains(&f) {
                add.push(f);
            }
        }
    }
    if let Ok(mut s) = SECRETS.write() {
        for a in add {
            let p = Pattern {
                token: a.chars().count() < ANYWHERE_MIN,
                symbols: !a.chars().any(char::is_alphanumeric),
                text: a,
            };
            if !s.iter().any(|x| x.text == p.text) {
                s.push(p);
            }
        }
        // Longest first (the matches are merged anyway; this keeps the
        // common case of one long secret cheap to find).
        s.sort_by_key(|x| std::cmp::Reverse(x.text.len()));
    }
}

/// The text and its escaped forms.
fn forms(s: &str) -> Vec<String> {
    let mut out = vec![s.to_string()];
    let json = |ascii: bool| {
        let mut o = String::new();
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                '\x08' => o.push_str("\\b"),
                '\x0c' => o.push_str("\\f"),
                c if (c as u32) < 0x20 || (ascii && (c as u32) > 0x7e) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        o.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => o.push(c),
            }
        }
        o
    };
    out.push(json(false));
    out.push(json(true));
    // serde_json escapes `/` never and control characters as \u00XX; the
    // same as above. Python repr, in either quote.
    for quote in ['\'', '"'] {
        let mut o = String::new();
        for c in s.chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                c if c == quote => {
                    o.push('\\');
                    o.push(c);
                }
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    o.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => o.push(c),
            }
        }
        out.push(o);
    }
    // YAML single-quoted ('' for '), and a shell-quoted word ('\'' or '"'"' for ').
    out.push(s.replace('\'', "''"));
    out.push(s.replace('\'', "'\\''"));
    out.push(s.replace('\'', "'\"'\"'"));
    // YAML double-quoted: as JSON, plus `\x..`/`\e` spellings libyaml uses
    // for other control characters.
    let mut y = String::new();
    for c in s.chars() {
        match c {
            '"' => y.push_str("\\\""),
            '\\' => y.push_str("\\\\"),
            '\n' => y.push_str("\\n"),
            '\t' => y.push_str("\\t"),
            '\r' => y.push_str("\\r"),
            '\x1b' => y.push_str("\\e"),
            '\0' => y.push_str("\\0"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                y.push_str(&format!("\\x{:02X}", c as u32))
            }
            c => y.push(c),
        }
    }
    out.push(y);
    let mut seen = Vec::new();
    out.retain(|f| {
        if f.is_empty() || seen.contains(f) {
            false
        } else {
            seen.push(f.clone());
            true
        }
    });
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte ranges of `text` where a registered secret appears (as masked).
fn matches(secrets: &[Pattern], text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    for p in secrets {
        let pat = p.text.as_str();
        let mut from = 0;
        while let Some(i) = text[from..].find(pat) {
            let start = from + i;
            let end = start + pat.len();
            let ok = if !p.token {
                true
            } else {
                let before = text[..start].chars().next_back();
                let after = text[end..].chars().next();
                if p.symbols {
                    before.is_none_or(char::is_whitespace) && after.is_none_or(char::is_whitespace)
                } else {
                    let first = pat.chars().next().is_some_and(is_word);
                    let last = pat.chars().next_back().is_some_and(is_word);
                    let glued_before = first && before.is_some_and(is_word);
                    let glued_after = last && after.is_some_and(is_word);
                    !(glued_before || glued_after)
                }
            };
            if ok {
                ranges.push((start, end));
            }
            // Next possible start: the next character.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    ranges.sort_unstable();
    ranges
}

pub fn mask(text: &str) -> String {
    let Ok(secrets) = SECRETS.read() else {
        return MASK.to_string();
    };
    if secrets.is_empty() {
        return text.to_string();
    }
    let ranges = matches(&secrets, text);
    if ranges.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut i = 0;
    while i < ranges.len() {
        let (start, mut end) = ranges[i];
        i += 1;
        while i < ranges.len() && ranges[i].0 <= end {
            end = end.max(ranges[i].1);
            i += 1;
        }
        if start < at {
            // Overlaps a range already masked.
            at = at.max(end);
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

pub fn contains_secret(text: &str) -> bool {
    SECRETS
        .read()
        .map(|s| !matches(&s, text).is_empty())
        .unwrap_or(true)
}

/// Registers a value of `-e` given on the command line (`key=value` and
/// inline JSON/YAML) as a secret when its key names one (`password`, `db_pw`,
/// `api_key`, `token`, `secret`, ...). Other `-e` values (a prefix, a
/// version, a container name) stay readable in output, as in Ansible; the
/// run's records keep only the keys of every `-e` whatever its name.
/// Numbers and booleans are never registered (they would mask every counter
/// of the recap); `-e @file` values are the file's own business (its
/// secrets come from the vault like any other).
pub fn register_extra_value(key: &str, value: &str) {
    let v = value.trim();
    if v.is_empty() || is_plain_scalar(v) || !key_names_a_secret(key) {
        return;
    }
    register(value);
}

/// Whether a variable's name says it holds a secret.
pub fn key_names_a_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "pass",
        "pw",
        "secret",
        "token",
        "key",
        "credential",
        "private",
        "auth",
        "cert",
        "salt",
        "cookie",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// `80`, `-1.5`, `true`, `no`, `null`: not a secret on its own.
fn is_plain_scalar(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
    ) {
        return true;
    }
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|c| *c == '.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is global: every test uses its own values.

    #[test]
    fn registered_values_are_masked_inside_larger_strings() {
        register("fixture-s3cret-value");
        assert_eq!(
            mask("DATABASE_URL=postgres://u:fixture-s3cret-value@db/x"),
            "DATABASE_URL=postgres://u:********@db/x"
        );
        assert!(contains_secret("a fixture-s3cret-value b"));
        assert_eq!(mask("nothing here"), "nothing here");
    }

    #[test]
    fn escaped_forms_are_masked() {
        let s = "q\"uo'te\\bs-Zk8";
        register(s);
        let json = serde_json::to_string(&serde_json::json!({"pw": s})).expect("json");
        assert_eq!(mask(&json), "{\"pw\":\"********\"}");
        assert_eq!(
            mask(&crate::template::py_repr(&crate::vars::json_to_value(
                &serde_json::json!({"pw": s})
            ))),
            "{'pw': '********'}"
        );
        assert_eq!(mask("pw: 'q\"uo''te\\bs-Zk8'"), "pw: '********'");
        assert_eq!(mask("pw: \"q\\\"uo'te\\\\bs-Zk8\""), "pw: \"********\"");
        assert_eq!(mask("-e 'pw=q\"uo'\\''te\\bs-Zk8'"), "-e 'pw=********'");
        assert!(!mask(&format!("{s:?}")).contains("Zk8"));
    }

    #[test]
    fn every_line_of_a_multi_line_secret_is_masked() {
        register("-----BEGIN KEY-----\nMIIEpAxyzLONGLINE\nab\n}\n-----END KEY-----\n");
        let diff = "+-----BEGIN KEY-----\n+MIIEpAxyzLONGLINE\n+ab\n+}\n+-----END KEY-----\n";
        let m = mask(diff);
        assert!(!m.contains("MIIEpA"), "{m}");
        assert!(!m.contains("+ab\n"), "{m}");
        assert!(!m.contains("BEGIN KEY"), "{m}");
        // A line with no letter or digit is left alone: JSON stays JSON.
        assert_eq!(mask("{\"a\": {}}"), "{\"a\": {}}");
        // The JSON form of the whole value, newlines escaped.
        let j = serde_json::to_string("x\nMIIEpAxyzLONGLINE\nab\n").expect("json");
        assert!(!mask(&j).contains("MIIEpA"));
    }

    #[test]
    fn short_secrets_are_masked_as_whole_tokens() {
        register("q7");
        assert_eq!(mask("pw=q7 and \"q7\""), "pw=******** and \"********\"");
        assert_eq!(mask("aq7 q7b q7_"), "aq7 q7b q7_");
        register("!!");
        assert_eq!(mask("x !! y!!"), "x ******** y!!");
        assert!(contains_secret("q7"));
        assert!(!contains_secret("q77"));
    }

    #[test]
    fn extra_values_skip_numbers_and_booleans() {
        assert!(is_plain_scalar("80"));
        assert!(is_plain_scalar("-1.5"));
        assert!(is_plain_scalar("Yes"));
        assert!(!is_plain_scalar("1.2.3"));
        assert!(!is_plain_scalar("hunter2"));
        register_extra_value("db_password", "4242");
        assert_eq!(mask("ok=4242"), "ok=4242");
        register_extra_value("api_token", "xv-secret-Kp");
        assert_eq!(mask("v=xv-secret-Kp"), "v=********");
        // A value whose key does not name a secret stays readable.
        register_extra_value("prefix", "xv-prefix-Lm");
        assert_eq!(mask("name=xv-prefix-Lm_api"), "name=xv-prefix-Lm_api");
        assert!(key_names_a_secret("db_pw") && key_names_a_secret("VAULT_PASS"));
        assert!(!key_names_a_secret("plane_testbed_prefix") && !key_names_a_secret("version"));
    }
}
