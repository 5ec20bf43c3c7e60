//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`, run with cargo-fuzz
//! on a nightly toolchain) and of their stable, libFuzzer-free driver
//! (`tests/fuzz_harness.rs`, run by `cargo test`): one function per target,
//! fed arbitrary bytes. Each must return (an error is fine), never panic,
//! hang or exhaust memory.

use std::path::Path;
use std::sync::OnceLock;

/// The YAML loader: the parser every file goes through, the vars loader on
/// its result, and lint's YAML rules on the same text.
pub fn yaml_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.yml");
    if let Ok(node) = crate::yaml::parse_str(text, path) {
        let _ = crate::project::inventory::vars_from_map(&node, "fuzz input");
        let _ = node.expect_seq("fuzz input");
        let _ = node.expect_map("fuzz input");
    }
    let mut linter = crate::lint::Linter::new();
    let _ = crate::lint::yaml::check_yaml_text(&mut linter, path, text);
}

/// The INI inventory parser, and host selection on what it parsed.
pub fn ini_inventory(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(inv) = crate::project::inventory::Inventory::from_ini_str(text, Path::new("hosts")) {
        if let Ok(hosts) = inv.select("all") {
            for h in hosts.iter().take(16) {
                let _ = inv.host_groups(h);
            }
        }
        let _ = inv.select("all:!ungrouped");
    }
}

fn env() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(crate::template::environment)
}

/// Template rendering: every input is compiled with the engine's
/// environment, and rendered with a small context when it holds no
/// construct whose cost the input controls without bound (loops,
/// recursion, repetition): minijinja has no fuel limit in this build, so
/// `{% for %}` over `range(10**6)` nested three deep is slow by design, not a bug.
pub fn template_render(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 4096 {
        return;
    }
    let env = env();
    let Ok(_) = env.template_from_str(text) else {
        return;
    };
    const UNBOUNDED: &[&str] = &[
        "for",
        "range",
        "*",
        "macro",
        "call",
        "recursive",
        "include",
        "import",
        "extends",
        "loop",
        "product",
        "lookup",
        "query",
        "pause",
        "sleep",
        "repeat",
        "center",
        "indent",
        "format",
        "%",
        "ljust",
        "rjust",
        "zfill",
    ];
    if UNBOUNDED.iter().any(|w| text.contains(w)) {
        return;
    }
    let ctx = minijinja::context! {
        name => "fuzz",
        items => vec![1, 2, 3],
        mapping => minijinja::context! { a => 1, b => "two" },
        flag => true,
    };
    let _ = crate::template::render_str(env, text, ctx.clone());
    let _ = crate::template::render_value(env, text, ctx.clone());
    let _ = crate::template::eval_condition(env, text, ctx);
}

/// The vault decoder: the envelope parser and the decryption.
pub fn vault_decrypt(data: &[u8]) {
    static PASSWORDS: OnceLock<crate::vault::VaultPasswords> = OnceLock::new();
    let passwords = PASSWORDS.get_or_init(|| {
        crate::vault::VaultPasswords::from_password("default", b"fuzz-fixture-password")
            .unwrap_or_else(|_| crate::vault::VaultPasswords::empty())
    });
    let _ = crate::vault::decrypt(data, passwords, "fuzz-input");
}

/// A deterministic pseudo-random sequence (xorshift64) for tests that
/// generate or mutate inputs: the same seed gives the same cases every run.
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
