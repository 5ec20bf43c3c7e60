//! Errors of the vault layer.
//!
//! Every variant names the file (`origin`: a path, or `path:line` for an inline
//! `!vault` value) and says what was expected. No variant ever carries a password
//! or decrypted plaintext.

use std::path::PathBuf;

/// Errors raised while reading, decrypting, encrypting or writing vault data.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The data does not start with the `$ANSIBLE_VAULT;` header.
    #[error(
        "{origin}: not vault-encrypted data (expected a first line starting with `$ANSIBLE_VAULT;`)"
    )]
    NotVault { origin: String },

    /// The header line is not `$ANSIBLE_VAULT;<version>;<cipher>[;<vault-id>]`.
    #[error(
        "{origin}: malformed vault header: {detail} (expected `$ANSIBLE_VAULT;1.1;AES256` or `$ANSIBLE_VAULT;1.2;AES256;<vault-id>`)"
    )]
    MalformedHeader { origin: String, detail: String },

    /// A format version other than 1.1 / 1.2.
    #[error("{origin}: unsupported vault format version `{version}` (expected 1.1 or 1.2)")]
    UnknownVersion { origin: String, version: String },

    /// A cipher other than AES256.
    #[error("{origin}: unsupported vault cipher `{cipher}` (expected AES256)")]
    UnknownCipher { origin: String, cipher: String },

    /// Header present, but no encrypted payload after it.
    #[error(
        "{origin}: vault data has a header but no encrypted body (expected hex lines after the header)"
    )]
    EmptyBody { origin: String },

    /// Lines of the (inline) vault value are not consistently indented.
    #[error(
        "{origin}: bad indentation at line {line} of the vault value (expected every line of the encrypted body to use the same indentation as the first)"
    )]
    BadIndentation { origin: String, line: usize },

    /// Something that should be hexadecimal is not.
    #[error("{origin}: invalid hex in the {layer}{at} (expected hexadecimal digits)")]
    BadHex {
        origin: String,
        /// Which layer: "vault body", "salt", "HMAC" or "ciphertext".
        layer: &'static str,
        /// " at line N" for the outer body, else empty.
        at: String,
    },

    /// The payload ends early or misses one of its parts.
    #[error("{origin}: vault data is truncated or incomplete: {detail}")]
    Truncated { origin: String, detail: String },

    /// No configured password produced a matching HMAC.
    #[error(
        "{origin}: decryption failed: no vault password matched (tried vault ids: {tried}){unavailable} (wrong password, or the file was modified/corrupted: HMAC check failed)"
    )]
    DecryptionFailed {
        origin: String,
        /// Comma separated labels of the passwords that were tried.
        tried: String,
        /// Description of password sources that could not be loaded, if any.
        unavailable: String,
    },

    /// HMAC matched but the PKCS#7 padding is invalid.
    #[error("{origin}: decrypted data has invalid PKCS#7 padding (expected 1-16 padding bytes)")]
    BadPadding { origin: String },

    /// Encrypted data was found but no password is configured at all.
    #[error(
        "{origin} is vault-encrypted but no vault password was given (expected --vault-password-file, --vault-id or DEPLOYER_VAULT_PASSWORD_FILE)"
    )]
    NoPassword { origin: String },

    /// Encrypted data, but none of the configured password sources could be loaded.
    #[error("{origin} is vault-encrypted but no vault password could be loaded: {detail}")]
    PasswordUnavailable { origin: String, detail: String },

    /// A password source could not be read/run.
    #[error("vault password source {source_desc}: {detail}")]
    PasswordSource { source_desc: String, detail: String },

    /// The vault id given on the command line / API is not usable.
    #[error("invalid vault id `{id}`: {detail}")]
    InvalidVaultId { id: String, detail: String },

    /// Input to encrypt is already vault data.
    #[error("{origin}: input is already vault-encrypted (expected plaintext)")]
    AlreadyEncrypted { origin: String },

    /// I/O failure on a named path.
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The OS random generator failed.
    #[error("could not obtain random bytes for the vault salt: {0}")]
    Random(String),

    /// `set_keys` could not edit the YAML document.
    #[error("{origin}: cannot update vault YAML: {detail}")]
    Yaml { origin: String, detail: String },

    /// The editor failed.
    #[error("editor `{editor}` failed: {detail}")]
    Editor { editor: String, detail: String },

    /// Invalid command-line usage.
    #[error("{0}")]
    Usage(String),
}

impl VaultError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        VaultError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
