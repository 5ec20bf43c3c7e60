//! ansible-vault compatible encryption.
//!
//! * [`decrypt`] / [`encrypt`]: the `$ANSIBLE_VAULT;1.1;AES256` and
//!   `$ANSIBLE_VAULT;1.2;AES256;<vault-id>` formats (PBKDF2-HMAC-SHA256, AES-256-CTR,
//!   HMAC-SHA256 verified in constant time before decrypting), for whole files and
//!   inline `!vault |` values.
//! * [`VaultPasswords`]: labelled password sources, loaded lazily.
//! * [`set_keys`]: change top-level keys of an encrypted YAML file in place.
//! * [`cli`]: the `deployer vault` subcommands.
//!
//! Nothing here ever puts a password or plaintext into an error or a log line.

pub mod cli;
mod error;
mod format;
mod passwords;
mod yaml_edit;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub use error::VaultError;
pub use format::{Envelope, HEADER_PREFIX, parse};
pub use passwords::{DEFAULT_ID, PASSWORD_FILE_ENV, VaultPasswords};
pub use yaml_edit::quote_yaml_string;

/// True when `data` starts with `$ANSIBLE_VAULT;`.
pub fn is_encrypted(data: &[u8]) -> bool {
    format::is_encrypted(data)
}

/// The result of a successful decryption, with what is needed to re-encrypt
/// the same way.
pub struct Decrypted {
    /// The plaintext (zeroized on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The vault id in the blob's header (`None` for 1.1).
    pub header_vault_id: Option<String>,
    /// Label of the password that worked.
    pub label: String,
    /// The password that worked (zeroized on drop; never print it).
    pub password: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext", &"<redacted>")
            .field("header_vault_id", &self.header_vault_id)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Decrypt a vault blob (a whole file, or the text of an inline `!vault |` value
/// with any consistent indentation). `origin` is `path` or `path:line`, used in
/// error messages. Tries the password whose label matches the vault id of a 1.2
/// header first, then all the others in order, like ansible.
pub fn decrypt(
    data: &[u8],
    passwords: &VaultPasswords,
    origin: &str,
) -> Result<Vec<u8>, VaultError> {
    decrypt_detailed(data, passwords, origin).map(|d| d.plaintext.to_vec())
}

/// [`decrypt`], also returning the header vault id and the password that worked.
pub fn decrypt_detailed(
    data: &[u8],
    passwords: &VaultPasswords,
    origin: &str,
) -> Result<Decrypted, VaultError> {
    let env = format::parse(data, origin)?;
    if passwords.is_empty() {
        return Err(VaultError::NoPassword {
            origin: origin.to_string(),
        });
    }
    let mut tried = Vec::new();
    let mut unavailable = Vec::new();
    for idx in passwords.try_order(env.vault_id.as_deref()) {
        let password = match passwords.load(idx) {
            Ok(p) => p,
            Err(e) => {
                unavailable.push(e.to_string());
                continue;
            }
        };
        tried.push(passwords.label(idx).to_string());
        if let format::Attempt::Ok(plaintext) = format::try_decrypt(&env, &password, origin)? {
            return Ok(Decrypted {
                plaintext,
                header_vault_id: env.vault_id,
                label: passwords.label(idx).to_string(),
                password,
            });
        }
    }
    if tried.is_empty() {
        return Err(VaultError::PasswordUnavailable {
            origin: origin.to_string(),
            detail: unavailable.join("; "),
        });
    }
    Err(VaultError::DecryptionFailed {
        origin: origin.to_string(),
        tried: tried.join(", "),
        unavailable: if unavailable.is_empty() {
            String::new()
        } else {
            format!("; could not load: {}", unavailable.join("; "))
        },
    })
}

/// Encrypt `plaintext`. Header 1.1 when `vault_id` is `None` or `"default"`, else
/// `1.2;<vault_id>`. The salt is 32 random bytes, or `ANSIBLE_VAULT_ENCRYPT_SALT`
/// when set (as ansible does), which makes the output reproducible.
pub fn encrypt(
    plaintext: &[u8],
    password: &[u8],
    vault_id: Option<&str>,
) -> Result<String, VaultError> {
    let salt = format::default_salt()?;
    format::encrypt_with_salt(plaintext, password, vault_id, &salt)
}

/// [`encrypt`] with an explicit salt (deterministic output, for tests).
pub fn encrypt_with_salt(
    plaintext: &[u8],
    password: &[u8],
    vault_id: Option<&str>,
    salt: &[u8],
) -> Result<String, VaultError> {
    format::encrypt_with_salt(plaintext, password, vault_id, salt)
}

/// Format an encrypted blob as an inline YAML value, like
/// `ansible-vault encrypt_string`: `name: !vault |` then the lines indented by 10
/// spaces (no trailing newline). Without a name, just `!vault |` and the lines.
pub fn format_inline(ciphertext: &str, name: Option<&str>) -> String {
    let mut out = match name {
        Some(n) => format!("{n}: !vault |"),
        None => "!vault |".to_string(),
    };
    for line in ciphertext.lines() {
        out.push('\n');
        out.push_str("          ");
        out.push_str(line);
    }
    out
}

/// Decrypt a whole-file vault YAML, set or replace top-level `key: value` entries
/// (values written as safely double-quoted YAML strings), keep the other keys,
/// their order and comments, re-encrypt with the same vault id and password and
/// write atomically (the file keeps its mode and owner). On any error nothing is written.
pub fn set_keys(
    path: &Path,
    passwords: &VaultPasswords,
    updates: &[(&str, &str)],
) -> Result<(), VaultError> {
    let origin = path.display().to_string();
    let data = std::fs::read(path).map_err(|e| VaultError::io(path, "reading", e))?;
    let dec = decrypt_detailed(&data, passwords, &origin)?;
    let text = std::str::from_utf8(&dec.plaintext).map_err(|_| VaultError::Yaml {
        origin: origin.clone(),
        detail: "decrypted content is not UTF-8 text (expected a YAML mapping)".into(),
    })?;
    let updated = Zeroizing::new(yaml_edit::set_top_level_keys(text, updates, &origin)?);
    let out = encrypt(
        updated.as_bytes(),
        &dec.password,
        dec.header_vault_id.as_deref(),
    )?;
    write_atomic(path, out.as_bytes(), 0o600)
}

/// Write `data` to `path` atomically: a temporary file in the same directory,
/// fsync, rename over `path`, fsync the directory. An existing file keeps its
/// mode, owner and group (the temporary file gets them before any data is
/// written); a new file gets `mode`. A symlink at `path` is followed (its
/// target is replaced), as ansible-vault does.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), VaultError> {
    write_atomic_with(path, data, mode, 0o7777)
}

/// [`write_atomic`] for plaintext secrets (`vault decrypt` into a file): as
/// that, but never readable by group or others whatever the old file's mode.
pub fn write_atomic_private(path: &Path, data: &[u8]) -> Result<(), VaultError> {
    write_atomic_with(path, data, 0o600, 0o7700)
}

fn write_atomic_with(path: &Path, data: &[u8], mode: u32, keep: u32) -> Result<(), VaultError> {
    use std::os::unix::fs::MetadataExt;
    let target: PathBuf = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|e| VaultError::io(path, "resolving symlink", e))?
        }
        _ => path.to_path_buf(),
    };
    let old = std::fs::metadata(&target).ok().filter(|m| m.is_file());
    let mode = old.as_ref().map_or(mode, |m| m.mode() & keep);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Created 0600 (never wider while empty or being written); owner, group
    // and final mode set before the data.
    let mut tmp = tempfile::Builder::new()
        .prefix(".deployer-vault-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(|e| VaultError::io(&dir, "creating a temporary file in", e))?;
    let tmp_path = tmp.path().to_path_buf();
    if let Some(m) = &old {
        let f = tmp.as_file();
        if std::os::unix::fs::fchown(f, Some(m.uid()), Some(m.gid())).is_err() {
            // Not root: the group may still be ours to give.
            let _ = std::os::unix::fs::fchown(f, None, Some(m.gid()));
        }
    }
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| VaultError::io(&tmp_path, "setting permissions of", e))?;
    tmp.write_all(data)
        .map_err(|e| VaultError::io(&tmp_path, "writing", e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| VaultError::io(&tmp_path, "syncing", e))?;
    tmp.persist(&target)
        .map_err(|e| VaultError::io(&target, "renaming the temporary file onto", e.error))?;
    // Make the rename durable; some filesystems refuse fsync on directories.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
