//! Masking by construction: every value that came out of the vault is
//! registered here when it is decrypted, and every printer (human output,
//! JSON events, diffs, errors, logs) passes its text through [`mask`].
//! A rendered string that contains a secret therefore prints as `********`
//! wherever the secret appears in it, with or without `no_log`.

use std::sync::RwLock;

pub const MASK: &str = "********";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a decrypted value (and each of its lines, so a multi-line secret
/// split across diff lines is still masked).
pub fn register(secret: &str) {
    let mut add = vec![secret.trim_end_matches('\n').to_string()];
    if secret.contains('\n') {
        add.extend(
            secret
                .lines()
                .filter(|l| l.trim().len() >= 4)
                .map(str::to_string),
        );
    }
    if let Ok(mut s) = SECRETS.write() {
        for a in add {
            if !a.is_empty() && !s.contains(&a) {
                s.push(a);
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

pub fn mask(text: &str) -> String {
    let Ok(secrets) = SECRETS.read() else {
        return MASK.to_string();
    };
    if secrets.is_empty() {
        return text.to_string();
    }
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

pub fn contains_secret(text: &str) -> bool {
    SECRETS
        .read()
        .map(|s| s.iter().any(|x| text.contains(x.as_str())))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
