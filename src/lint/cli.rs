//! `deployer lint [PATHS] [-i INV] [--format human|json|sarif]`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Severity, default_target, lint, output, target_for};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintFormat {
    Human,
    Json,
    Sarif,
}

#[derive(Args, Debug)]
pub struct LintArgs {
    /// Files or directories (default: the project in the current directory:
    /// playbooks/, roles/, inventory/, top-level playbooks).
    pub paths: Vec<PathBuf>,
    /// Inventories whose variables count as defined (and which must load).
    #[arg(short = 'i', long = "inventory", value_delimiter = ',')]
    pub inventory: Vec<PathBuf>,
    /// human, json or sarif (for code scanning).
    #[arg(long = "format", value_enum, default_value = "human")]
    pub format: LintFormat,
}

/// Lints and prints; returns the exit code (0 clean or warnings only, 1 errors, 2 usage).
pub fn run(a: LintArgs) -> i32 {
    for p in a.paths.iter().chain(a.inventory.iter()) {
        if !p.exists() {
            eprintln!("error: {}: no such file or directory", p.display());
            return 2;
        }
    }
    let targets = if a.paths.is_empty() {
        // The current directory, as the empty relative path: findings read `roles/x/...`.
        vec![default_target(std::path::Path::new(""), &a.inventory)]
    } else {
        target_for(&a.paths, &a.inventory)
    };
    let findings = lint(&targets);
    match a.format {
        LintFormat::Human => print!("{}", output::human(&findings)),
        LintFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&output::json(&findings)).unwrap_or_default()
        ),
        LintFormat::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&output::sarif(&findings)).unwrap_or_default()
        ),
    }
    if findings.iter().any(|f| f.severity == Severity::Error) {
        1
    } else {
        0
    }
}
