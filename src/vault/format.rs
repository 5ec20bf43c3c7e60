//! The ansible-vault 1.1 / 1.2 AES256 envelope: parsing, key derivation,
//! encryption and decryption. Pure functions, no I/O.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::VaultError;

/// The magic prefix of every vault blob.
pub const HEADER_PREFIX: &str = "$ANSIBLE_VAULT;";
/// Hex line width used when writing.
const LINE_WIDTH: usize = 80;
const PBKDF2_ROUNDS: u32 = 10_000;
const KEY_LEN: usize = 32;
const IV_LEN: usize = 16;
const HMAC_LEN: usize = 32;
const BLOCK: usize = 16;
/// Default salt length (what ansible uses).
pub const SALT_LEN: usize = 32;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// The parsed, still encrypted, envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub version: String,
    pub cipher: String,
    /// The vault id from a 1.2 header (or a 4th field of any header, as ansible reads it).
    pub vault_id: Option<String>,
    pub salt: Vec<u8>,
    pub hmac: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

struct Keys {
    // Zeroized on drop.
    material: Zeroizing<[u8; 2 * KEY_LEN + IV_LEN]>,
}

impl Keys {
    fn derive(password: &[u8], salt: &[u8]) -> Self {
        let mut material = Zeroizing::new([0u8; 2 * KEY_LEN + IV_LEN]);
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, PBKDF2_ROUNDS, &mut material[..]);
        Keys { material }
    }
    fn cipher_key(&self) -> &[u8] {
        &self.material[..KEY_LEN]
    }
    fn hmac_key(&self) -> &[u8] {
        &self.material[KEY_LEN..2 * KEY_LEN]
    }
    fn iv(&self) -> &[u8] {
        &self.material[2 * KEY_LEN..]
    }
    fn ctr(&self) -> Result<Aes256Ctr, VaultError> {
        // Lengths are fixed by construction; map the impossible error anyway.
        Aes256Ctr::new_from_slices(self.cipher_key(), self.iv())
            .map_err(|_| VaultError::Random("internal error: bad AES key/IV length".into()))
    }
    fn mac(&self) -> Result<HmacSha256, VaultError> {
        <HmacSha256 as KeyInit>::new_from_slice(self.hmac_key())
            .map_err(|_| VaultError::Random("internal error: bad HMAC key length".into()))
    }
}

/// True when `data` starts with `$ANSIBLE_VAULT;` (exactly like ansible: no
/// leading whitespace allowed).
pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(HEADER_PREFIX.as_bytes())
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn trim_bytes(data: &[u8]) -> &[u8] {
    let start = data.iter().position(|b| !is_ws(*b)).unwrap_or(data.len());
    let end = data
        .iter()
        .rposition(|b| !is_ws(*b))
        .map_or(start, |p| p + 1);
    &data[start..end]
}

fn decode_hex(
    hex_bytes: &[u8],
    origin: &str,
    layer: &'static str,
    at: String,
) -> Result<Vec<u8>, VaultError> {
    if !hex_bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err(VaultError::BadHex {
            origin: origin.to_string(),
            layer,
            at,
        });
    }
    if !hex_bytes.len().is_multiple_of(2) {
        return Err(VaultError::Truncated {
            origin: origin.to_string(),
            detail: format!("the {layer} has an odd number of hex digits"),
        });
    }
    hex::decode(hex_bytes).map_err(|_| VaultError::BadHex {
        origin: origin.to_string(),
        layer,
        at,
    })
}

/// Parse a vault blob (whole file, or the text of an inline `!vault |` value with
/// any consistent indentation and surrounding whitespace).
pub fn parse(data: &[u8], origin: &str) -> Result<Envelope, VaultError> {
    let data = trim_bytes(data);
    if !is_encrypted(data) {
        return Err(VaultError::NotVault {
            origin: origin.to_string(),
        });
    }
    let mut lines = data.split(|b| *b == b'\n');
    let header = lines.next().unwrap_or_default();
    let header =
        std::str::from_utf8(trim_bytes(header)).map_err(|_| VaultError::MalformedHeader {
            origin: origin.to_string(),
            detail: "header is not ASCII".into(),
        })?;
    let fields: Vec<&str> = header.split(';').map(str::trim).collect();
    if fields.len() < 3 {
        return Err(VaultError::MalformedHeader {
            origin: origin.to_string(),
            detail: "missing version or cipher field".into(),
        });
    }
    let version = fields[1];
    let cipher = fields[2];
    if version != "1.1" && version != "1.2" {
        return Err(VaultError::UnknownVersion {
            origin: origin.to_string(),
            version: version.chars().take(16).collect(),
        });
    }
    if cipher != "AES256" {
        return Err(VaultError::UnknownCipher {
            origin: origin.to_string(),
            cipher: cipher.chars().take(32).collect(),
        });
    }
    let vault_id = match fields.get(3) {
        Some(id) if !id.is_empty() => Some((*id).to_string()),
        _ => None,
    };
    if version == "1.2" && vault_id.is_none() {
        return Err(VaultError::MalformedHeader {
            origin: origin.to_string(),
            detail: "format 1.2 requires a vault id as 4th field".into(),
        });
    }
    if fields.len() > 4 {
        return Err(VaultError::MalformedHeader {
            origin: origin.to_string(),
            detail: "too many `;`-separated fields".into(),
        });
    }

    // Body: every non-blank line must share the first body line's indentation.
    let mut body = Vec::with_capacity(data.len());
    let mut indent: Option<&[u8]> = None;
    for (idx, raw) in lines.enumerate() {
        let line_no = idx + 2; // 1-based, header is line 1
        let line = match raw.iter().rposition(|b| !is_ws(*b)) {
            Some(p) => &raw[..=p],
            None => continue, // blank line
        };
        let ind_len = line.iter().position(|b| !is_ws(*b)).unwrap_or(0);
        let (ind, content) = line.split_at(ind_len);
        match indent {
            None => indent = Some(ind),
            Some(expected) if expected != ind => {
                return Err(VaultError::BadIndentation {
                    origin: origin.to_string(),
                    line: line_no,
                });
            }
            Some(_) => {}
        }
        if !content.iter().all(u8::is_ascii_hexdigit) {
            return Err(VaultError::BadHex {
                origin: origin.to_string(),
                layer: "vault body",
                at: format!(" at line {line_no}"),
            });
        }
        body.extend_from_slice(content);
    }
    if body.is_empty() {
        return Err(VaultError::EmptyBody {
            origin: origin.to_string(),
        });
    }
    let inner = decode_hex(&body, origin, "vault body", String::new())?;
    let mut parts = inner.splitn(3, |b| *b == b'\n');
    let (salt_hex, hmac_hex, ct_hex) = match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(h), Some(c)) => (s, h, c),
        _ => {
            return Err(VaultError::Truncated {
                origin: origin.to_string(),
                detail: "expected salt, HMAC and ciphertext separated by newlines inside the body"
                    .into(),
            });
        }
    };
    let salt = decode_hex(salt_hex, origin, "salt", String::new())?;
    let hmac = decode_hex(hmac_hex, origin, "HMAC", String::new())?;
    let ciphertext = decode_hex(ct_hex, origin, "ciphertext", String::new())?;
    if salt.is_empty() {
        return Err(VaultError::Truncated {
            origin: origin.to_string(),
            detail: "the salt is empty".into(),
        });
    }
    if hmac.len() != HMAC_LEN {
        return Err(VaultError::Truncated {
            origin: origin.to_string(),
            detail: format!("the HMAC is {} bytes (expected {HMAC_LEN})", hmac.len()),
        });
    }
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK) {
        return Err(VaultError::Truncated {
            origin: origin.to_string(),
            detail: format!(
                "the ciphertext is {} bytes (expected a non-zero multiple of {BLOCK})",
                ciphertext.len()
            ),
        });
    }
    Ok(Envelope {
        version: version.to_string(),
        cipher: cipher.to_string(),
        vault_id,
        salt,
        hmac,
        ciphertext,
    })
}

/// Outcome of trying one password on an envelope.
pub enum Attempt {
    Ok(Zeroizing<Vec<u8>>),
    /// HMAC mismatch: wrong password (or tampered data).
    WrongPassword,
}

/// Try to decrypt with one password. The HMAC is verified in constant time before
/// anything is decrypted.
pub fn try_decrypt(env: &Envelope, password: &[u8], origin: &str) -> Result<Attempt, VaultError> {
    let keys = Keys::derive(password, &env.salt);
    let mut mac = keys.mac()?;
    mac.update(&env.ciphertext);
    if mac.verify_slice(&env.hmac).is_err() {
        return Ok(Attempt::WrongPassword);
    }
    let mut buf = Zeroizing::new(env.ciphertext.clone());
    keys.ctr()?.apply_keystream(&mut buf[..]);
    let pad = buf.last().copied().map_or(0, usize::from);
    if pad == 0
        || pad > BLOCK
        || pad > buf.len()
        || !buf[buf.len() - pad..]
            .iter()
            .all(|b| usize::from(*b) == pad)
    {
        return Err(VaultError::BadPadding {
            origin: origin.to_string(),
        });
    }
    let new_len = buf.len() - pad;
    buf.truncate(new_len);
    Ok(Attempt::Ok(buf))
}

/// Check a vault id is usable in a header.
pub fn validate_vault_id(id: &str) -> Result<(), VaultError> {
    let bad = |detail: &str| VaultError::InvalidVaultId {
        id: id.to_string(),
        detail: detail.to_string(),
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.contains(';') {
        return Err(bad("the character `;` is not allowed in vault ids"));
    }
    if id.chars().any(char::is_whitespace) || id.chars().any(char::is_control) {
        return Err(bad(
            "whitespace and control characters are not allowed in vault ids",
        ));
    }
    Ok(())
}

/// Encrypt with an explicit salt; see [`super::encrypt_with_salt`].
pub fn encrypt_with_salt(
    plaintext: &[u8],
    password: &[u8],
    vault_id: Option<&str>,
    salt: &[u8],
) -> Result<String, VaultError> {
    if password.is_empty() {
        return Err(VaultError::PasswordSource {
            source_desc: "(encryption)".into(),
            detail: "the vault password is empty (expected a non-empty password)".into(),
        });
    }
    if salt.is_empty() {
        return Err(VaultError::Usage(
            "empty salt passed to vault encrypt".into(),
        ));
    }
    if is_encrypted(plaintext) {
        return Err(VaultError::AlreadyEncrypted {
            origin: "<input>".into(),
        });
    }
    let header = match vault_id {
        None | Some("default") => "$ANSIBLE_VAULT;1.1;AES256".to_string(),
        Some(id) => {
            validate_vault_id(id)?;
            format!("$ANSIBLE_VAULT;1.2;AES256;{id}")
        }
    };
    let keys = Keys::derive(password, salt);
    let pad = BLOCK - plaintext.len() % BLOCK;
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + pad));
    buf.extend_from_slice(plaintext);
    buf.resize(plaintext.len() + pad, pad as u8);
    keys.ctr()?.apply_keystream(&mut buf[..]);
    let mut mac = keys.mac()?;
    mac.update(&buf);
    let tag = mac.finalize().into_bytes();

    let mut inner = String::with_capacity(2 * (salt.len() + tag.len() + buf.len()) + 2);
    inner.push_str(&hex::encode(salt));
    inner.push('\n');
    inner.push_str(&hex::encode(tag));
    inner.push('\n');
    inner.push_str(&hex::encode(&buf[..]));
    let outer = hex::encode(inner.as_bytes());

    let mut out = String::with_capacity(header.len() + outer.len() + outer.len() / LINE_WIDTH + 2);
    out.push_str(&header);
    out.push('\n');
    // `outer` is ASCII hex, so byte chunks are valid str boundaries.
    for chunk in outer.as_bytes().chunks(LINE_WIDTH) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}

/// The salt ansible would use: `ANSIBLE_VAULT_ENCRYPT_SALT` if set and non-empty,
/// else 32 random bytes from the OS.
pub fn default_salt() -> Result<Vec<u8>, VaultError> {
    if let Some(s) = std::env::var_os("ANSIBLE_VAULT_ENCRYPT_SALT") {
        use std::os::unix::ffi::OsStrExt;
        if !s.is_empty() {
            return Ok(s.as_bytes().to_vec());
        }
    }
    use rand::TryRng;
    let mut salt = vec![0u8; SALT_LEN];
    rand::rngs::SysRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| VaultError::Random(e.to_string()))?;
    Ok(salt)
}
