//! Shell completions, man pages and `--version`, run as a user would: the bash
//! completion script is sourced by a real bash and asked to complete.

use std::process::Command;

fn deployer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(args)
        .output()
        .expect("run deployer")
}

/// Sources the generated script in bash and returns what `_deployer` offers
/// for the command line `words` (the last word being completed).
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script}\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT={point}\n_deployer deployer '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(&program)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let out = deployer(&["completions", "bash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("deployer.bash");
    std::fs::write(&script, &out.stdout).expect("write the script");

    let subcommands = bash_complete(&script, &["deployer", "ap"]);
    assert_eq!(subcommands, vec!["apply".to_string()], "completing 'ap'");

    let all = bash_complete(&script, &["deployer", ""]);
    for expected in [
        "apply",
        "check",
        "plan",
        "lint",
        "rollback",
        "vault",
        "completions",
        "man",
    ] {
        assert!(
            all.contains(&expected.to_string()),
            "{expected} missing from {all:?}"
        );
    }

    let flags = bash_complete(&script, &["deployer", "apply", "--ta"]);
    assert_eq!(flags, vec!["--tags".to_string()], "completing 'apply --ta'");
}

#[test]
fn completions_exist_for_zsh_and_fish_and_refuse_unknown_shells() {
    for shell in ["zsh", "fish"] {
        let out = deployer(&["completions", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("rollback"),
            "{shell} script lacks the rollback subcommand"
        );
    }
    let out = deployer(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

#[test]
fn man_pages_are_written_for_every_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = deployer(&["man", "--out-dir", &dir.path().display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "deployer.1",
        "deployer-apply.1",
        "deployer-vault.1",
        "deployer-rollback.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is not a man page"
        );
    }
    let apply = std::fs::read_to_string(dir.path().join("deployer-apply.1")).expect("read");
    assert!(apply.contains("deployer\\-apply") || apply.contains("deployer-apply"));
    assert!(apply.contains("tags"), "the apply page documents --tags");
}

#[test]
fn version_names_the_commit() {
    let out = deployer(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let expected_prefix = format!("deployer {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_prefix), "{text}");
    // Built from this checkout: the revision is the short commit id, maybe
    // with -dirty; outside git it says so.
    let rev = text
        .trim()
        .trim_start_matches(&expected_prefix)
        .trim_end_matches(')');
    let commit = rev.trim_end_matches("-dirty");
    assert!(
        rev == "unknown revision"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "revision part: {rev}"
    );
}
