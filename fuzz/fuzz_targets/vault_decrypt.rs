//! Feed arbitrary bytes to the vault parser/decryptor: it must return an error
//! (or plaintext), never panic. Run with `cargo +nightly fuzz run vault_decrypt`.
#![no_main]

use std::sync::OnceLock;

use deployer::vault::{VaultPasswords, decrypt};
use libfuzzer_sys::fuzz_target;

static PASSWORDS: OnceLock<VaultPasswords> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let passwords = PASSWORDS.get_or_init(|| {
        VaultPasswords::from_password("default", b"fuzz-fixture-password")
            .unwrap_or_else(|_| VaultPasswords::empty())
    });
    let _ = decrypt(data, passwords, "fuzz-input");
});
