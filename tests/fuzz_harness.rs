//! A stable, libFuzzer-free driver for the fuzz targets (`fuzz/`): the
//! same bodies (`deployer::fuzzing`) run on every committed corpus input and
//! then on mutations of them (bit flips, byte edits, splices, Jinja/YAML/INI
//! tokens) for a fixed time per target. A panic or an input slower than
//! 10 s (a loaded CI machine) fails the test and names the input (hex, and a file under
//! `target/fuzz-findings/`). cargo-fuzz itself needs a nightly toolchain,
//! which a fresh machine cannot get from crates.io; with one, run
//! `cargo +nightly fuzz run <target> fuzz/corpus/<target>`.
//!
//! `DEPLOYER_FUZZ_SECONDS` (default 8) sets the time per target,
//! `DEPLOYER_FUZZ_SEED` replays a sequence.

use std::path::PathBuf;
use std::time::{Duration, Instant};

type Target = fn(&[u8]);

const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "|",
    "-",
    ":",
    "[",
    "]",
    "{",
    "}",
    "\n",
    "  ",
    "\t",
    "'",
    "\"",
    "&a",
    "*a",
    "!vault",
    "<<:",
    "? ",
    "---",
    "...",
    "\\u00e9",
    "=",
    "[g:vars]",
    "[g:children]",
    "$ANSIBLE_VAULT;1.1;AES256\n",
    "$ANSIBLE_VAULT;1.2;AES256;dev\n",
    "0x",
    "0o",
    ".inf",
    "~",
    "\u{feff}",
    " if ",
    " else ",
    " endif ",
    " is ",
    " not ",
    " in ",
    "default(",
    ")",
    "(",
    ".",
    ",",
    "%",
    "raw",
    "endraw",
    "\r\n",
    "\0",
    "\u{1F600}",
    "[1:3]",
    "h[a:c]",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut d = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len() + 1);
        match rng.below(7) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(d.len());
                d.drain(at.min(end)..end);
            }
            2 => d.insert(at, rng.next() as u8),
            3 | 4 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                d.splice(at..at, t.iter().copied());
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(64)).min(other.len());
                d.splice(at..at, other[from..to].iter().copied());
            }
            _ if !d.is_empty() => {
                // Repeat a slice (nesting, long lines).
                let from = rng.below(d.len());
                let to = (from + rng.below(32)).min(d.len());
                let piece = d[from..to].to_vec();
                d.splice(at..at, piece);
            }
            _ => {}
        }
    }
    d.truncate(8192);
    d
}

fn findings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings")
}

/// Runs `target` on `input`; a panic or a slow input is returned as an error.
fn one(name: &str, target: Target, input: &[u8]) -> Result<(), String> {
    let t = Instant::now();
    let r = std::panic::catch_unwind(|| target(input));
    let took = t.elapsed();
    let why = match r {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("panicked: {msg}")
        }
        Ok(()) if took > Duration::from_secs(10) => format!("took {took:?}"),
        Ok(()) => return Ok(()),
    };
    let dir = findings_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{name}-{:016x}", fxhash(input)));
    let _ = std::fs::write(&file, input);
    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
    Err(format!(
        "{name}: {why} on input {} ({} bytes, hex {hex}); replay: cargo +nightly fuzz run {name} {}",
        file.display(),
        input.len(),
        file.display()
    ))
}

fn fxhash(d: &[u8]) -> u64 {
    d.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

fn drive(name: &str, target: Target) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    corpus.sort();
    assert!(!corpus.is_empty(), "no corpus in {}", dir.display());
    let mut errors = Vec::new();
    for input in &corpus {
        if let Err(e) = one(name, target, input) {
            errors.push(e);
        }
    }
    let secs: u64 = std::env::var("DEPLOYER_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let seed = std::env::var("DEPLOYER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fxhash(name.as_bytes()) | 1);
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < Duration::from_secs(secs) && errors.len() < 5 {
        let base = corpus[rng.below(corpus.len())].clone();
        let input = mutate(&mut rng, &base, &corpus);
        if let Err(e) = one(name, target, &input) {
            errors.push(e);
        }
        runs += 1;
    }
    eprintln!(
        "{name}: {} corpus inputs, {runs} mutations in {secs} s (seed {seed})",
        corpus.len()
    );
    for e in &errors {
        eprintln!("{e}");
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn fuzz_yaml_loader() {
    drive("yaml_loader", deployer::fuzzing::yaml_loader);
}

#[test]
fn fuzz_ini_inventory() {
    drive("ini_inventory", deployer::fuzzing::ini_inventory);
}

#[test]
fn fuzz_template_render() {
    drive("template_render", deployer::fuzzing::template_render);
}

#[test]
fn fuzz_vault_decrypt() {
    drive("vault_decrypt", deployer::fuzzing::vault_decrypt);
}
