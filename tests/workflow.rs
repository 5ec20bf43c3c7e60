//! The example workflow (.github/workflows/deploy.yml): its plan step, run by
//! bash as GitHub runs it, lets the job continue to apply only when the plan
//! exits 0 (nothing to change) or 2 (changes planned). A crash (101), an
//! interrupt (130, 143) or an error (1) must stop the job before apply.

mod common;

use std::process::Command;

/// The `run:` script of the step named `name`, unindented.
fn step_script(workflow: &str, name: &str) -> String {
    let start = workflow
        .find(&format!("- name: {name}"))
        .unwrap_or_else(|| panic!("no step '{name}' in the workflow"));
    let rest = &workflow[start..];
    let run = rest.find("run: |").expect("the step has a run: | block") + "run: |".len();
    let mut lines = Vec::new();
    let mut indent = None;
    for line in rest[run..].lines().skip(1) {
        if line.trim().is_empty() {
            lines.push(String::new());
            continue;
        }
        let n = line.len() - line.trim_start().len();
        let i = *indent.get_or_insert(n);
        if n < i {
            break;
        }
        lines.push(line[i..].to_string());
    }
    lines.join("\n") + "\n"
}

#[test]
fn plan_step_continues_only_on_exit_0_or_2() {
    let workflow = std::fs::read_to_string(common::repo().join(".github/workflows/deploy.yml"))
        .expect("read deploy.yml");
    let script = step_script(&workflow, "Plan (check mode, secrets masked)");
    assert!(script.contains("deployer plan"), "{script}");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("target/release");
    std::fs::create_dir_all(&bin).expect("mkdir");
    // A stand-in for the binary: prints a plan line, exits with $FAKE_RC.
    let fake = bin.join("deployer");
    std::fs::write(&fake, "#!/bin/sh\necho '# plan'\nexit \"$FAKE_RC\"\n").expect("write");
    Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .expect("chmod");
    for (rc, continues) in [
        (0, true),
        (2, true),
        (1, false),
        (101, false),
        (130, false),
        (143, false),
    ] {
        // GitHub's default shell for run steps: bash -e {0}.
        let out = Command::new("bash")
            .arg("-e")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env("FAKE_RC", rc.to_string())
            .env("PLAYBOOK", "site.yml")
            .env("GITHUB_STEP_SUMMARY", dir.path().join("summary.md"))
            .output()
            .expect("bash");
        assert_eq!(
            out.status.success(),
            continues,
            "plan exit {rc}: the step {} (stderr: {})",
            if continues {
                "must let apply run"
            } else {
                "must stop the job"
            },
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The workflow's top-level `env:` entries (`KEY: value`), in order.
fn workflow_env(workflow: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut inside = false;
    for line in workflow.lines() {
        if line == "env:" {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("  ") || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.trim().split_once(':') {
                env.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
            }
        }
    }
    env
}

/// Every file the workflow points deployer at exists in the repository (a
/// missing inventory would fail the deploy job on its first run on main).
#[test]
fn every_path_the_workflow_names_exists() {
    let repo = common::repo();
    let workflow = std::fs::read_to_string(repo.join(".github/workflows/deploy.yml"))
        .expect("read deploy.yml");
    let env = workflow_env(&workflow);
    let paths: Vec<&(String, String)> = env.iter().filter(|(_, v)| v.contains('/')).collect();
    for key in ["PRODUCTION_INVENTORY", "STAGING_INVENTORY", "PLAYBOOK"] {
        assert!(
            paths.iter().any(|(k, _)| k == key),
            "the workflow names {key} in env: {env:?}"
        );
    }
    for (key, path) in paths {
        assert!(
            repo.join(path).exists(),
            "deploy.yml: env {key} names {path}, which is not in the repository"
        );
    }
}

/// Every `deployer ...` command line of the workflow parses: the binary given
/// the same subcommand and flags plus `--help` exits 0 (clap refuses an
/// unknown flag or value before it prints help).
#[test]
fn every_deployer_command_of_the_workflow_parses() {
    let repo = common::repo();
    let workflow = std::fs::read_to_string(repo.join(".github/workflows/deploy.yml"))
        .expect("read deploy.yml");
    let env = workflow_env(&workflow);
    let mut checked = 0;
    for line in workflow.lines() {
        let Some(at) = line.find("./target/release/deployer ") else {
            continue;
        };
        let mut cmd = &line[at + "./target/release/deployer ".len()..];
        // Stop at the shell's redirections and operators.
        for stop in [" >", " ||", " &&", " |", ";"] {
            if let Some(i) = cmd.find(stop) {
                cmd = &cmd[..i];
            }
        }
        let args: Vec<String> = cmd
            .split_whitespace()
            .map(|w| {
                let w = w.trim_matches('"');
                match w.strip_prefix('$') {
                    Some(var) => env
                        .iter()
                        .find(|(k, _)| k == var)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| {
                            panic!("deploy.yml: ${var} is not in the workflow's env")
                        }),
                    None => w.to_string(),
                }
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
            .args(&args)
            .arg("--help")
            .output()
            .expect("run deployer");
        assert!(
            out.status.success(),
            "deploy.yml: `deployer {}` does not parse: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the lint, plan and apply commands, found {checked}"
    );
}

/// The branch picks the environment: main deploys with the production
/// inventory, staging with the staging one, any other branch stops the job.
#[test]
fn the_branch_picks_the_inventory() {
    let workflow = std::fs::read_to_string(common::repo().join(".github/workflows/deploy.yml"))
        .expect("read deploy.yml");
    let env = workflow_env(&workflow);
    let var = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} not in the workflow's env"))
    };
    let script = step_script(&workflow, "Inventory from the branch");
    let dir = tempfile::tempdir().expect("tempdir");
    for (branch, want) in [
        ("main", Some(var("PRODUCTION_INVENTORY"))),
        ("staging", Some(var("STAGING_INVENTORY"))),
        ("feature-x", None),
    ] {
        let github_env = dir.path().join(format!("env-{branch}"));
        let out = Command::new("bash")
            .arg("-e")
            .arg("-c")
            .arg(&script)
            .env("GITHUB_REF_NAME", branch)
            .env("GITHUB_ENV", &github_env)
            .env("PRODUCTION_INVENTORY", var("PRODUCTION_INVENTORY"))
            .env("STAGING_INVENTORY", var("STAGING_INVENTORY"))
            .output()
            .expect("bash");
        let written = std::fs::read_to_string(&github_env).unwrap_or_default();
        match want {
            Some(inv) => {
                assert!(out.status.success(), "{branch}: {out:?}");
                assert_eq!(written, format!("DEPLOYER_INVENTORY={inv}\n"), "{branch}");
            }
            None => {
                assert!(!out.status.success(), "{branch} must deploy nowhere");
                assert_eq!(written, "", "{branch}");
            }
        }
    }
    assert!(var("PRODUCTION_INVENTORY").contains("production"));
    assert!(var("STAGING_INVENTORY").contains("staging"));
}
