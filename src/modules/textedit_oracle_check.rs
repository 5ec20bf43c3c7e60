//! Differential tests: `plan_lineinfile` / `plan_blockinfile` against results
//! recorded from the real ansible-core modules (see tools/textedit_oracle.py).

use super::blockinfile::{BlockinfileArgs, plan_blockinfile};
use super::lineinfile::{LineinfileArgs, plan_lineinfile};
use super::text_edit::TextEdit;

pub enum Expect {
    Fail(&'static str),
    Ok {
        after: Option<&'static str>,
        changed: bool,
        msg: &'static str,
        after2: Option<&'static str>,
        changed2: bool,
    },
}

pub struct Case {
    pub name: &'static str,
    pub module: &'static str,
    pub before: Option<&'static str>,
    pub args: &'static str,
    pub expect: Expect,
}

fn plan(module: &str, args: &str, existing: Option<&str>) -> Result<TextEdit, String> {
    match module {
        "lineinfile" => {
            let a: LineinfileArgs = serde_json::from_str(args).map_err(|e| e.to_string())?;
            plan_lineinfile(existing, &a)
        }
        _ => {
            let a: BlockinfileArgs = serde_json::from_str(args).map_err(|e| e.to_string())?;
            plan_blockinfile(existing, &a)
        }
    }
}

/// The file after applying a plan: unchanged plans do not write.
fn apply(before: Option<&str>, edit: &TextEdit) -> Option<String> {
    if edit.changed {
        Some(edit.content.clone())
    } else {
        before.map(str::to_string)
    }
}

fn check(case: &Case) -> Result<(), String> {
    let got = plan(case.module, case.args, case.before);
    match (&case.expect, got) {
        (Expect::Fail(msg), Err(e)) if e == *msg => Ok(()),
        (Expect::Fail(msg), other) => Err(format!("expected failure {msg:?}, got {other:?}")),
        (Expect::Ok { .. }, Err(e)) => Err(format!("unexpected failure: {e}")),
        (
            Expect::Ok {
                after,
                changed,
                msg,
                after2,
                changed2,
            },
            Ok(edit),
        ) => {
            let a1 = apply(case.before, &edit);
            if a1.as_deref() != *after || edit.changed != *changed || edit.msg != *msg {
                return Err(format!(
                    "first run: got ({a1:?}, {}, {:?}), want ({after:?}, {changed}, {msg:?})",
                    edit.changed, edit.msg
                ));
            }
            let edit2 = plan(case.module, case.args, a1.as_deref())
                .map_err(|e| format!("second run failed: {e}"))?;
            let a2 = apply(a1.as_deref(), &edit2);
            if a2.as_deref() != *after2 || edit2.changed != *changed2 {
                return Err(format!(
                    "second run: got ({a2:?}, {}), want ({after2:?}, {changed2})",
                    edit2.changed
                ));
            }
            Ok(())
        }
    }
}

#[test]
fn matches_ansible() {
    let failures: Vec<String> = super::textedit_oracle::CASES
        .iter()
        .filter_map(|c| check(c).err().map(|e| format!("{}: {e}", c.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Ansible:\n{}",
        failures.len(),
        super::textedit_oracle::CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn ansible_crashes_become_errors() {
    // Ansible raises IndexError / TypeError on these; deployer fails cleanly.
    let r = plan(
        "blockinfile",
        r#"{"path": "/f", "block": "x", "insertafter": "(?m)b\n"}"#,
        Some("a\nb\n"),
    );
    assert!(r.is_err());
    let r = plan(
        "blockinfile",
        r#"{"path": "/f", "block": "x", "create": true, "insertafter": "(?m)b"}"#,
        None,
    );
    assert!(r.is_err());
    let r = plan(
        "lineinfile",
        r#"{"path": "/f", "regexp": "^a(?=b)", "line": "x"}"#,
        Some("ab\n"),
    );
    assert!(r.is_err_and(|e| e.starts_with("regexp uses a construct deployer does not support")));
}

#[test]
fn args_accept_aliases_and_reject_unknown() {
    assert!(
        serde_json::from_str::<LineinfileArgs>(
            r#"{"dest": "/f", "value": "x", "regex": "y", "create": "yes", "backrefs": "no"}"#
        )
        .is_ok_and(|a| a.path == "/f" && a.create && !a.backrefs && a.regexp.is_some())
    );
    assert!(serde_json::from_str::<LineinfileArgs>(r#"{"path": "/f", "bogus": 1}"#).is_err());
    assert!(
        serde_json::from_str::<BlockinfileArgs>(r#"{"name": "/f", "content": "x"}"#)
            .is_ok_and(|a| a.block == "x" && a.marker == "# {mark} ANSIBLE MANAGED BLOCK")
    );
}
