//! `deployer vault`: ansible-vault compatible secrets (the subcommands live in
//! [`crate::vault::cli`]). Errors are printed masked.

/// Runs a vault subcommand and returns its exit code.
pub fn vault(a: crate::vault::cli::VaultArgs) -> i32 {
    match crate::vault::cli::run(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::mask(&e.to_string()));
            1
        }
    }
}
