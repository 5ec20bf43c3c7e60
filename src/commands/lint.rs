//! `deployer lint`: checks the project without contacting any host (the rules
//! live in [`crate::lint`]).

/// Runs lint. Exit 0: no error-level finding, 1: errors, 2: usage.
pub fn lint(a: crate::lint::cli::LintArgs) -> i32 {
    crate::lint::cli::run(a)
}
