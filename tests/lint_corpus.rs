//! `deployer lint` on a corpus of broken projects (tests/fixtures/lint/): each
//! yields at least its expected finding, exits 1, and never panics; the
//! repository itself is clean; JSON and SARIF have their documented shapes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lint(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("lint")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run deployer lint")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Fixture directory -> (rule, file, line) that must be among its findings.
const CORPUS: &[(&str, &str, &str, u64)] = &[
    ("syntax-error", "yaml-syntax", "playbooks/site.yml", 0),
    (
        "binary-file",
        "file-binary",
        "roles/r/templates/logo.conf.j2",
        1,
    ),
    ("non-utf8", "file-encoding", "roles/r/defaults/main.yml", 1),
    ("role-cycle", "ref-role-cycle", "roles/c/meta/main.yml", 2),
    (
        "unknown-module",
        "schema-unknown-module",
        "playbooks/site.yml",
        5,
    ),
    (
        "missing-template",
        "ref-template",
        "roles/r/tasks/main.yml",
        3,
    ),
    (
        "unpinned-image",
        "image-pinned",
        "roles/r/templates/docker-compose.yml.j2",
        3,
    ),
    (
        "plaintext-password",
        "plaintext-secret",
        "inventory/group_vars/all.yml",
        1,
    ),
    (
        "duplicate-keys",
        "yaml-duplicate-key",
        "playbooks/site.yml",
        3,
    ),
    (
        "handler-missing",
        "ref-handler-missing",
        "playbooks/site.yml",
        9,
    ),
    (
        "restarted-env",
        "compose-restarted-env",
        "roles/r/handlers/main.yml",
        4,
    ),
    ("odd-shapes", "schema-structure", "playbooks/site.yml", 4),
    ("bad-jinja", "jinja-syntax", "roles/r/tasks/main.yml", 3),
];

#[test]
fn every_broken_project_is_reported_without_a_panic() {
    let base = root().join("tests/fixtures/lint");
    let mut listed: Vec<String> = std::fs::read_dir(&base)
        .expect("fixtures")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = CORPUS.iter().map(|c| c.0.to_string()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(listed, expected, "every fixture has an expectation");
    for (dir, rule, file, line) in CORPUS {
        let out = lint(&base.join(dir), &["--format", "json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{dir}: panic: {stderr}");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{dir}: exit code; stderr: {stderr}"
        );
        let v = json_of(&out);
        let findings = v["findings"].as_array().expect("findings");
        let hit = findings.iter().any(|f| {
            f["rule"] == *rule
                && f["file"] == *file
                && (*line == 0 || f["line"].as_u64() == Some(*line))
        });
        assert!(
            hit,
            "{dir}: expected {rule} at {file}:{line}, got {findings:#?}"
        );
        // Human output of the same project names the place too.
        let human = lint(&base.join(dir), &[]);
        let text = String::from_utf8_lossy(&human.stdout);
        assert!(
            text.contains(&format!("[{rule}]")) && text.contains(file),
            "{dir}: {text}"
        );
    }
}

#[test]
fn the_repository_itself_is_clean() {
    let out = lint(&root(), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no findings"), "{text}");
}

#[test]
fn sarif_has_the_2_1_0_shape() {
    let out = lint(
        &root().join("tests/fixtures/lint/restarted-env"),
        &["--format", "sarif"],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["version"], "2.1.0");
    assert!(
        v["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("sarif-2.1.0"))
    );
    let run = &v["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "deployer-lint");
    let rules = driver["rules"].as_array().expect("rules");
    assert!(rules.iter().all(|r| r["id"].is_string()
        && r["shortDescription"]["text"].is_string()
        && matches!(
            r["defaultConfiguration"]["level"].as_str(),
            Some("error" | "warning")
        )));
    let results = run["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        let idx = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(
            rules[idx]["id"], r["ruleId"],
            "ruleIndex points at the rule"
        );
        assert!(matches!(r["level"].as_str(), Some("error" | "warning")));
        assert!(r["message"]["text"].is_string());
        let loc = &r["locations"][0]["physicalLocation"];
        let uri = loc["artifactLocation"]["uri"].as_str().expect("uri");
        assert!(
            !uri.starts_with('/') && !uri.contains('\\'),
            "relative URI: {uri}"
        );
        if let Some(line) = loc["region"]["startLine"].as_u64() {
            assert!(line >= 1);
        }
    }
}

#[test]
fn json_output_and_usage_errors() {
    let out = lint(
        &root().join("tests/fixtures/lint/unknown-module"),
        &["--format", "json"],
    );
    let v = json_of(&out);
    assert_eq!(v["version"], 1);
    assert!(v["summary"]["errors"].as_u64().is_some_and(|n| n >= 1));
    let f = &v["findings"][0];
    for k in [
        "rule", "severity", "file", "line", "col", "message", "snippet",
    ] {
        assert!(f.get(k).is_some(), "finding has {k}: {f}");
    }
    // A path that does not exist, or a bad flag, is a usage error (2).
    assert_eq!(lint(&root(), &["no/such/dir"]).status.code(), Some(2));
    assert_eq!(lint(&root(), &["--format", "xml"]).status.code(), Some(2));
}

/// Literal values of secret-named keys (`*password*`, `*token*`, ...) in the
/// YAML files under `dir`, as written (quotes off).
fn secret_literals(dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_symlink() || name == "target" || name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            secret_literals(&p, out);
            continue;
        }
        let wanted = [".yml", ".yaml", ".j2", ".ini", ".env"];
        if !wanted.iter().any(|x| name.ends_with(x)) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        for line in text.lines() {
            let t = line.trim_start().trim_start_matches("- ");
            let Some((k, v)) = t.split_once(':') else {
                continue;
            };
            let k = k.trim().trim_matches('"');
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if deployer::lint::conventions::is_secret_name(k)
                && v.len() >= 3
                && !v.starts_with("!vault")
                && !v.contains("{{")
                && !matches!(v, "|" | ">" | "true" | "false" | "null")
            {
                out.push(v.to_string());
            }
        }
    }
}

/// No output format of lint prints a secret literal of any fixture (the
/// plaintext-secret rule shows the key and masks the value), nor of the
/// repository itself.
#[test]
fn lint_prints_no_secret_value_of_any_fixture_in_any_format() {
    let base = root().join("tests/fixtures/lint");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.push(root());
    let mut checked = 0;
    for dir in &dirs {
        let mut secrets = Vec::new();
        secret_literals(dir, &mut secrets);
        if dir == &root() {
            // The repository's secrets are vault-encrypted: no literal to find.
            secrets.retain(|s| !s.starts_with('$'));
        }
        for format in [
            &[][..],
            &["--format", "json"][..],
            &["--format", "sarif"][..],
        ] {
            let out = lint(dir, format);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            for s in &secrets {
                assert!(
                    !text.contains(s.as_str()),
                    "{} ({format:?}) prints the secret value {s:?}:\n{text}",
                    dir.display()
                );
                checked += 1;
            }
        }
    }
    // The corpus has plaintext secrets to mask (else this proves nothing).
    assert!(checked >= 3, "{checked} secret values checked");
}
