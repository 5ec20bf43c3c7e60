//! ansible-vault compatible encryption (placeholder until the vault branch lands).
pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(b"$ANSIBLE_VAULT;")
}
#[derive(Debug)]
pub struct VaultPasswords;
pub fn decrypt(_d: &[u8], _p: &VaultPasswords, origin: &str) -> Result<Vec<u8>, String> {
    Err(format!("{origin}: vault support is not merged yet"))
}
pub mod cli {
    #[derive(clap::Args, Debug)]
    pub struct VaultArgs {
        pub rest: Vec<String>,
    }
    #[derive(clap::Args, Debug)]
    pub struct PasswordArgs {
        #[arg(long = "vault-password-file")]
        pub vault_password_file: Vec<std::path::PathBuf>,
    }
    pub fn run(_a: VaultArgs) -> Result<i32, String> {
        Err("vault is not merged yet".into())
    }
    pub fn passwords_from(_a: &PasswordArgs) -> Result<Option<super::VaultPasswords>, String> {
        Ok(None)
    }
}
