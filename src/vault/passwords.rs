//! Vault password sources, loaded lazily (a file is read, a script run, or the
//! user prompted only when a decryption actually needs that password).

use std::fmt;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use zeroize::Zeroizing;

use super::VaultError;
use super::format::validate_vault_id;

/// Environment variable naming a fallback password file (or script).
pub const PASSWORD_FILE_ENV: &str = "DEPLOYER_VAULT_PASSWORD_FILE";
/// The label of passwords given without a vault id.
pub const DEFAULT_ID: &str = "default";

/// Where a password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A file (read and stripped) or an executable (run, stdout used).
    File(PathBuf),
    /// Ask on the terminal.
    Prompt,
    /// A password given directly by the library caller.
    Literal(Zeroizing<Vec<u8>>),
}

impl fmt::Debug for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKind::File(p) => write!(f, "File({})", p.display()),
            SourceKind::Prompt => write!(f, "Prompt"),
            SourceKind::Literal(_) => write!(f, "Literal(<redacted>)"),
        }
    }
}

struct Source {
    label: String,
    kind: SourceKind,
    /// Loaded password (None until first needed).
    cache: Mutex<Option<Zeroizing<Vec<u8>>>>,
}

impl Source {
    fn new(label: String, kind: SourceKind) -> Self {
        let cache = match &kind {
            SourceKind::Literal(p) => Some(p.clone()),
            _ => None,
        };
        Source {
            label,
            kind,
            cache: Mutex::new(cache),
        }
    }

    fn describe(&self) -> String {
        match &self.kind {
            SourceKind::File(p) => format!("`{}@{}`", self.label, p.display()),
            SourceKind::Prompt => format!("`{}@prompt`", self.label),
            SourceKind::Literal(_) => format!("`{}` (given by the caller)", self.label),
        }
    }

    fn load(&self, confirm: bool) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pw) = guard.as_ref() {
            return Ok(pw.clone());
        }
        let pw = match &self.kind {
            SourceKind::File(path) => load_file(path, &self.label)?,
            SourceKind::Prompt => prompt(&self.label, confirm)?,
            SourceKind::Literal(p) => p.clone(),
        };
        if pw.is_empty() {
            return Err(VaultError::PasswordSource {
                source_desc: self.describe(),
                detail: "the password is empty (expected a non-empty password)".into(),
            });
        }
        *guard = Some(pw.clone());
        Ok(pw)
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `something-client` or `something-client.ext`: a script that takes `--vault-id`.
fn is_client_script(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s.ends_with("-client"))
}

fn load_file(path: &Path, label: &str) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let desc = || format!("`{}` ({label})", path.display());
    if is_executable(path) {
        let mut cmd = Command::new(path);
        if is_client_script(path) {
            cmd.arg("--vault-id").arg(label);
        }
        // stderr is inherited so scripts can prompt / report.
        let out = cmd
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| VaultError::PasswordSource {
                source_desc: desc(),
                detail: format!(
                    "could not run the password script: {e} (if it is not a script, remove its executable bit)"
                ),
            })?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            return Err(VaultError::PasswordSource {
                source_desc: desc(),
                detail: format!(
                    "password script exited with {} (expected exit status 0 and the password on stdout)",
                    out.status
                ),
            });
        }
        // Like ansible: only CR/LF are stripped from a script's output.
        let start = stdout
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(stdout.len());
        let end = stdout
            .iter()
            .rposition(|b| *b != b'\r' && *b != b'\n')
            .map_or(start, |p| p + 1);
        return Ok(Zeroizing::new(stdout[start..end].to_vec()));
    }
    let data = Zeroizing::new(std::fs::read(path).map_err(|e| VaultError::PasswordSource {
        source_desc: desc(),
        detail: format!("could not read the password file: {e}"),
    })?);
    if super::is_encrypted(&data) {
        return Err(VaultError::PasswordSource {
            source_desc: desc(),
            detail: "the password file is itself vault-encrypted (expected a plaintext password)"
                .into(),
        });
    }
    // Like ansible: surrounding whitespace is stripped.
    let trimmed = data.trim_ascii();
    Ok(Zeroizing::new(trimmed.to_vec()))
}

fn prompt(label: &str, confirm: bool) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let desc = format!("`{label}@prompt`");
    let (first, second) = if confirm {
        (
            format!("New vault password ({label}): "),
            Some(format!("Confirm new vault password ({label}): ")),
        )
    } else {
        (format!("Vault password ({label}): "), None)
    };
    let read = |msg: &str| -> Result<Zeroizing<String>, VaultError> {
        rpassword::prompt_password(msg)
            .map(Zeroizing::new)
            .map_err(|e| VaultError::PasswordSource {
                source_desc: desc.clone(),
                detail: format!("could not read the password from the terminal: {e}"),
            })
    };
    let pw = read(&first)?;
    if let Some(second) = second {
        let again = read(&second)?;
        if pw.trim() != again.trim() {
            return Err(VaultError::PasswordSource {
                source_desc: desc,
                detail: "passwords do not match".into(),
            });
        }
    }
    Ok(Zeroizing::new(pw.trim().as_bytes().to_vec()))
}

/// Labelled vault password sources.
pub struct VaultPasswords {
    sources: Vec<Source>,
}

impl fmt::Debug for VaultPasswords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.sources.iter().map(|s| (&s.label, &s.kind)))
            .finish()
    }
}

/// Parse `label@source` (no `@`: label `default`).
fn split_vault_id(spec: &str) -> Result<(String, SourceKind), VaultError> {
    let (label, source) = match spec.split_once('@') {
        Some((l, s)) => (l, s),
        None => (DEFAULT_ID, spec),
    };
    let label = if label.is_empty() { DEFAULT_ID } else { label };
    validate_vault_id(label)?;
    if source.is_empty() {
        return Err(VaultError::InvalidVaultId {
            id: label.to_string(),
            detail:
                "no password source after `@` (expected label@file, label@script or label@prompt)"
                    .into(),
        });
    }
    let kind = if source == "prompt" || source == "prompt_ask_vault_pass" {
        SourceKind::Prompt
    } else {
        SourceKind::File(PathBuf::from(source))
    };
    Ok((label.to_string(), kind))
}

impl VaultPasswords {
    /// Build the password set from the CLI options.
    ///
    /// Order (which is also the order passwords are tried): `--vault-id`s, then
    /// `--vault-password-file`s (label `default`), then a prompt if `ask`. When none
    /// of these is given, `DEPLOYER_VAULT_PASSWORD_FILE` is used, and failing that a
    /// prompt if stdin is a terminal. Nothing is read until needed.
    pub fn new(
        password_files: &[PathBuf],
        vault_ids: &[String],
        ask: bool,
    ) -> Result<Self, VaultError> {
        let mut sources = Vec::new();
        for spec in vault_ids {
            let (label, kind) = split_vault_id(spec)?;
            sources.push(Source::new(label, kind));
        }
        for file in password_files {
            sources.push(Source::new(
                DEFAULT_ID.into(),
                SourceKind::File(file.clone()),
            ));
        }
        if ask && !sources.iter().any(|s| s.kind == SourceKind::Prompt) {
            sources.push(Source::new(DEFAULT_ID.into(), SourceKind::Prompt));
        }
        if sources.is_empty() {
            if let Some(file) = std::env::var_os(PASSWORD_FILE_ENV).filter(|v| !v.is_empty()) {
                sources.push(Source::new(
                    DEFAULT_ID.into(),
                    SourceKind::File(file.into()),
                ));
            } else if std::io::stdin().is_terminal() {
                sources.push(Source::new(DEFAULT_ID.into(), SourceKind::Prompt));
            }
        }
        Ok(VaultPasswords { sources })
    }

    /// No password source at all.
    pub fn empty() -> Self {
        VaultPasswords {
            sources: Vec::new(),
        }
    }

    /// A single password given directly (library use, tests).
    pub fn from_password(label: &str, password: &[u8]) -> Result<Self, VaultError> {
        let mut p = Self::empty();
        p.add_password(label, password)?;
        Ok(p)
    }

    /// Add a password given directly.
    pub fn add_password(&mut self, label: &str, password: &[u8]) -> Result<(), VaultError> {
        validate_vault_id(label)?;
        self.sources.push(Source::new(
            label.to_string(),
            SourceKind::Literal(Zeroizing::new(password.to_vec())),
        ));
        Ok(())
    }

    /// No password source configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Labels in order (for messages).
    pub fn labels(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.label.clone()).collect()
    }

    /// Indices of the sources to try for a blob whose header names `vault_id`:
    /// those with a matching label first, then all others, in order (like ansible).
    pub(crate) fn try_order(&self, vault_id: Option<&str>) -> Vec<usize> {
        let mut order: Vec<usize> = Vec::with_capacity(self.sources.len());
        if let Some(id) = vault_id {
            order.extend((0..self.sources.len()).filter(|i| self.sources[*i].label == id));
        }
        let rest: Vec<usize> = (0..self.sources.len())
            .filter(|i| !order.contains(i))
            .collect();
        order.extend(rest);
        order
    }

    pub(crate) fn label(&self, idx: usize) -> &str {
        self.sources
            .get(idx)
            .map_or(DEFAULT_ID, |s| s.label.as_str())
    }

    /// Load (lazily) the password of source `idx`.
    pub(crate) fn load(&self, idx: usize) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        match self.sources.get(idx) {
            Some(s) => s.load(false),
            None => Err(VaultError::Usage(
                "internal error: no such password source".into(),
            )),
        }
    }

    /// The password (and its label) to encrypt with, as `ansible-vault` picks it:
    /// the source labelled `encrypt_vault_id` if given, else the only source
    /// (several sources without `--encrypt-vault-id` is an error). A prompt asks
    /// for confirmation when `confirm` is set.
    pub fn for_encrypt(
        &self,
        encrypt_vault_id: Option<&str>,
        confirm: bool,
    ) -> Result<(String, Zeroizing<Vec<u8>>), VaultError> {
        let source = match encrypt_vault_id {
            Some(id) => self.sources.iter().find(|s| s.label == id).ok_or_else(|| {
                VaultError::Usage(format!(
                    "did not find a match for --encrypt-vault-id={id} in the known vault ids [{}]",
                    self.labels().join(", ")
                ))
            })?,
            None => match self.sources.as_slice() {
                [] => {
                    return Err(VaultError::Usage(
                        "a vault password is required (expected --vault-password-file, --vault-id or DEPLOYER_VAULT_PASSWORD_FILE)".into(),
                    ));
                }
                [one] => one,
                _ => {
                    return Err(VaultError::Usage(format!(
                        "the vault ids [{}] are available to encrypt; choose one with --encrypt-vault-id",
                        self.labels().join(", ")
                    )));
                }
            },
        };
        let pw = source.load(confirm && source.kind == SourceKind::Prompt)?;
        Ok((source.label.clone(), pw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_vault_id_forms() {
        let (l, k) = split_vault_id("dev@/tmp/pw").unwrap();
        assert_eq!(l, "dev");
        assert_eq!(k, SourceKind::File("/tmp/pw".into()));
        let (l, k) = split_vault_id("/tmp/pw").unwrap();
        assert_eq!(l, "default");
        assert_eq!(k, SourceKind::File("/tmp/pw".into()));
        let (l, k) = split_vault_id("prod@prompt").unwrap();
        assert_eq!(l, "prod");
        assert_eq!(k, SourceKind::Prompt);
        assert!(matches!(
            split_vault_id("a;b@x"),
            Err(VaultError::InvalidVaultId { .. })
        ));
        assert!(matches!(
            split_vault_id("a@"),
            Err(VaultError::InvalidVaultId { .. })
        ));
    }

    #[test]
    fn try_order_prefers_header_id() {
        let mut p = VaultPasswords::empty();
        p.add_password("a", b"1").unwrap();
        p.add_password("b", b"2").unwrap();
        p.add_password("c", b"3").unwrap();
        assert_eq!(p.try_order(Some("b")), vec![1, 0, 2]);
        assert_eq!(p.try_order(None), vec![0, 1, 2]);
        assert_eq!(p.try_order(Some("zzz")), vec![0, 1, 2]);
    }

    #[test]
    fn debug_does_not_show_password() {
        let p = VaultPasswords::from_password("x", b"super-secret-fixture").unwrap();
        assert!(!format!("{p:?}").contains("super-secret-fixture"));
    }
}
