//! cargo-fuzz target (nightly): `cargo +nightly fuzz run ini_inventory`. The body is
//! `deployer::fuzzing::ini_inventory`, also driven on stable by tests/fuzz_harness.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deployer::fuzzing::ini_inventory(data);
});
