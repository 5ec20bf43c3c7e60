//! How output looks to the person running deployer: verbosity (`-v`, `-vv`)
//! and colour (`--color auto|always|never`, `NO_COLOR`). Set once by the
//! command line before anything runs; read by the reporter and by the
//! diagnostics of the connection layer (through `tracing`).
//!
//! Diagnostics go to stderr through `tracing`:
//! - `-v`: one line per remote execution (host, user, exit status, duration,
//!   the script's first line) and per Docker API connection opened;
//! - `-vv`: also each script's text and each Docker API call (method and
//!   path; never bodies or headers). Secrets are masked and long base64 runs
//!   (file contents on their way to a host) are shown as their length only,
//!   so a secret file's content never reaches the terminal, encoded or not.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static VERBOSITY: AtomicU8 = AtomicU8::new(0);
static COLOR: AtomicBool = AtomicBool::new(false);

/// When to colour the status words of human output.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour (also into pipes and files).
    Always,
    /// Never colour.
    Never,
}

/// Applies the command line's choices: verbosity (number of `-v`) and
/// colour, and starts the stderr diagnostics when `-v` was given.
pub fn init(verbosity: u8, color: ColorChoice) {
    use std::io::IsTerminal;
    VERBOSITY.store(verbosity, Ordering::Relaxed);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color_out = match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && std::io::stdout().is_terminal(),
    };
    COLOR.store(color_out, Ordering::Relaxed);
    if verbosity > 0 {
        let level = if verbosity >= 2 {
            tracing::Level::TRACE
        } else {
            tracing::Level::DEBUG
        };
        let color_err = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
        };
        let filter = tracing_subscriber::filter::Targets::new().with_target("deployer", level);
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(color_err)
                    .with_target(false)
                    .without_time(),
            )
            .with(filter)
            .try_init();
    }
}

/// The number of `-v` given (0 without).
pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// Whether human output on stdout is coloured.
pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// `text` in the ANSI colour `code` (e.g. "32" green) when colour is on.
pub fn paint(text: &str, code: &str) -> String {
    if color() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A script (or command) made fit for a diagnostic line: secrets masked,
/// and every run of 64 or more base64 characters (of both cases) replaced by its length, so
/// file contents (possibly secret) never appear even encoded.
pub fn script_for_log(script: &str) -> String {
    let masked = crate::secrets::mask(script);
    let mut out = String::with_capacity(masked.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        // Base64 of real content mixes cases; a long path or a hex digest does not.
        let mixed = run.chars().any(|c| c.is_ascii_uppercase())
            && run.chars().any(|c| c.is_ascii_lowercase());
        if run.len() >= 64 && mixed {
            out.push_str(&format!("<{} base64 characters>", run.len()));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in masked.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The start of a script on one line, for `-v`: its lines joined with `; `
/// (empty lines, `set`/`umask` and lone brackets skipped), shortened.
pub fn script_summary(script: &str) -> String {
    let lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("set ")
                && !l.starts_with("umask ")
                && !matches!(*l, "(" | ")" | "{" | "}")
        })
        .take(6)
        .collect();
    let line = script_for_log(&lines.join("; "));
    if line.chars().count() > 120 {
        let short: String = line.chars().take(120).collect();
        format!("{short}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_base64_runs_are_replaced_by_their_length() {
        let blob = "QUJDZGVm".repeat(20);
        let s = script_for_log(&format!("printf %s '{blob}' | base64 -d > \"$t\""));
        assert!(!s.contains(&blob));
        assert!(s.contains("<160 base64 characters>"), "{s}");
        assert!(s.contains("base64 -d"), "short words stay: {s}");
        let path = format!("/var/lib/{}/data", "volume".repeat(12));
        assert_eq!(script_for_log(&path), path, "a long path stays");
    }

    #[test]
    fn summary_skips_shell_setup_lines_and_shortens() {
        let script = format!("set -e\numask 077\n\ncat /etc/{}\n", "x".repeat(200));
        let s = script_summary(&script);
        assert!(s.starts_with("cat /etc/"), "{s}");
        assert!(s.ends_with('…'));
    }
}
