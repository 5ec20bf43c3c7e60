//! Argument coercion: Ansible's lenient spellings of booleans, integers,
//! strings, lists and file modes. Shared by loading (task keywords such as
//! `no_log: yes`) and the modules (their typed parameters), so neither imports
//! the other for it.
//!
//! Ansible converts module arguments to the type the module declares: `"yes"`,
//! `"True"` and `1` are all booleans, `"0644"` and `0644` are modes. Templated
//! arguments always arrive as strings, so every module parameter that is not a
//! string goes through these deserializers.

use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::Value;

/// Parses Ansible's boolean spellings.
pub fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "on" | "true" | "1" | "y" | "t" => Some(true),
            "no" | "off" | "false" | "0" | "n" | "f" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    parse_bool(&v).ok_or_else(|| D::Error::custom(format!("expected a boolean, got {v}")))
}

pub fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    parse_bool(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a boolean, got {v}")))
}

/// Any value, kept as given when present (even `null`): for `Option<Json>`
/// parameters with `#[serde(default, deserialize_with = "de_present")]`, where a
/// given `null` must differ from an absent argument.
pub fn de_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A string parameter that also accepts numbers and booleans, as Ansible does.
pub fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(if b { "True".into() } else { "False".into() })),
        other => Err(D::Error::custom(format!("expected a string, got {other}"))),
    }
}

pub fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de_opt_string(d)?.ok_or_else(|| D::Error::custom("expected a string, got null"))
}

pub fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a non-negative integer, got {v}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected a non-negative integer, got {v}"))),
        _ => Err(D::Error::custom(format!("expected an integer, got {v}"))),
    }
}

/// A list parameter that also accepts one string, or a comma-separated string.
pub fn de_opt_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        )),
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(D::Error::custom(format!(
                    "expected a list of strings, got {other}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(D::Error::custom(format!("expected a list, got {other}"))),
    }
}

/// A file mode: a quoted octal string (`"0644"`, `"644"`), an integer the YAML
/// loader already read as octal, or a symbolic mode (`u=rw,g=r,o=r`), which is
/// kept as text and applied with `chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Octal(u32),
    Symbolic(String),
}

impl Mode {
    pub fn parse(v: &Value) -> Result<Mode, String> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .filter(|m| *m <= 0o7777)
                .map(|m| Mode::Octal(m as u32))
                .ok_or_else(|| format!("expected a file mode, got {n}")),
            Value::String(s) => {
                let t = s.trim();
                if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
                    u32::from_str_radix(t, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .map(Mode::Octal)
                        .ok_or_else(|| format!("expected an octal file mode, got '{t}'"))
                } else if !t.is_empty() && t.chars().all(|c| "ugoa+-=rwxXst,".contains(c)) {
                    Ok(Mode::Symbolic(t.to_string()))
                } else {
                    Err(format!(
                        "expected a file mode such as '0644' or 'u=rw,g=r', got '{t}'"
                    ))
                }
            }
            other => Err(format!("expected a file mode, got {other}")),
        }
    }
}

/// A literal (not templated) argument value: what load-time checks judge.
pub fn literal<'a>(args: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    match args.get(key)? {
        Value::String(s) if s.contains("{{") || s.contains("{%") => None,
        Value::Null => None,
        v => Some(v),
    }
}

/// Load-time check for `Module::check_combination`: a literal `key` is one of `choices`.
pub fn check_choice(
    args: &serde_json::Map<String, Value>,
    key: &str,
    choices: &[&str],
) -> Result<(), String> {
    match literal(args, key) {
        Some(Value::String(s)) if choices.contains(&s.as_str()) => Ok(()),
        None => Ok(()),
        Some(v) => Err(format!(
            "{key} must be one of {}, got {}",
            choices.join(", "),
            match v {
                Value::String(s) => format!("'{s}'"),
                other => other.to_string(),
            }
        )),
    }
}

/// Load-time check: a literal `mode` is a valid file mode ([`Mode::parse`]).
pub fn check_mode(args: &serde_json::Map<String, Value>) -> Result<(), String> {
    match literal(args, "mode") {
        Some(v) => Mode::parse(v).map(|_| ()).map_err(|e| format!("mode: {e}")),
        None => Ok(()),
    }
}

/// Load-time check: an argument deployer accepts but does not implement
/// yet is refused when it is literally true.
pub fn check_not_yet(args: &serde_json::Map<String, Value>, key: &str) -> Result<(), String> {
    match literal(args, key) {
        Some(v) if parse_bool(v) == Some(true) => {
            Err(format!("{key} is not supported yet by deployer"))
        }
        _ => Ok(()),
    }
}

/// Load-time check: a literal `key` is a number (or a numeric string).
pub fn check_number(args: &serde_json::Map<String, Value>, key: &str) -> Result<(), String> {
    match literal(args, key) {
        None | Some(Value::Number(_)) => Ok(()),
        Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => Ok(()),
        Some(v) => Err(format!("{key} must be a number, got {v}")),
    }
}

pub fn de_opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    Mode::parse(&v).map(Some).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bools_follow_ansible_spellings() {
        assert_eq!(parse_bool(&json!("yes")), Some(true));
        assert_eq!(parse_bool(&json!("False")), Some(false));
        assert_eq!(parse_bool(&json!(1)), Some(true));
        assert_eq!(parse_bool(&json!("maybe")), None);
    }

    #[test]
    fn modes_accept_quoted_octal_and_symbolic() {
        assert_eq!(Mode::parse(&json!("0644")), Ok(Mode::Octal(0o644)));
        assert_eq!(Mode::parse(&json!("755")), Ok(Mode::Octal(0o755)));
        assert_eq!(Mode::parse(&json!(420)), Ok(Mode::Octal(0o644)));
        assert_eq!(
            Mode::parse(&json!("u=rw,g=r")),
            Ok(Mode::Symbolic("u=rw,g=r".into()))
        );
        assert!(Mode::parse(&json!("0999")).is_err());
    }
}
