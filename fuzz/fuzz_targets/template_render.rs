//! cargo-fuzz target (nightly): `cargo +nightly fuzz run template_render`. The body is
//! `deployer::fuzzing::template_render`, also driven on stable by tests/fuzz_harness.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deployer::fuzzing::template_render(data);
});
