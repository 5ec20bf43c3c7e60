//! cargo-fuzz target (nightly): `cargo +nightly fuzz run yaml_loader`. The body is
//! `deployer::fuzzing::yaml_loader`, also driven on stable by tests/fuzz_harness.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deployer::fuzzing::yaml_loader(data);
});
