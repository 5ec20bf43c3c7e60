//! cargo-fuzz target (nightly): `cargo +nightly fuzz run vault_decrypt`. The body is
//! `deployer::fuzzing::vault_decrypt`, also driven on stable by tests/fuzz_harness.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deployer::fuzzing::vault_decrypt(data);
});
