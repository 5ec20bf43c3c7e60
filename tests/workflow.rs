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
