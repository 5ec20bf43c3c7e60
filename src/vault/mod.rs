//! ansible-vault compatible encryption (placeholder until the vault branch lands).
pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(b"$ANSIBLE_VAULT;")
}
#[derive(Debug)]
pub struct VaultPasswords;
pub fn decrypt(_d: &[u8], _p: &VaultPasswords, origin: &str) -> Result<Vec<u8>, String> {
    Err(format!("{origin}: vault support is not merged yet"))
}
