//! `deployer lint --format json` and `--format sarif` validate against their schemas
//! (schemas/lint-output.schema.json, ours; schemas/sarif-2.1.0/, the official OASIS one)
//! on the whole broken-project corpus and on the clean repository; documents broken by hand
//! must fail, so a schema that accepts anything would fail these tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use jsonschema::Validator;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator(rel: &str) -> Validator {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{rel} is not a schema: {e}"))
}

fn lint_json(dir: &Path, format: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["lint", "--format", format])
        .current_dir(dir)
        .output()
        .expect("run deployer lint");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}: exit {:?}: {}",
        dir.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The repository (clean) and every broken project of the lint corpus.
fn projects() -> Vec<PathBuf> {
    let base = root().join("tests/fixtures/lint");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .expect("tests/fixtures/lint")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "the corpus is there: {dirs:?}");
    dirs.insert(0, root());
    dirs
}

/// A named edit that makes a valid document invalid.
type Breaker = (&'static str, fn(&mut Value));

fn errors(v: &Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_valid(v: &Validator, doc: &Value, what: &str) {
    let errs = errors(v, doc);
    assert!(errs.is_empty(), "{what} does not validate: {errs:#?}");
}

fn assert_invalid(v: &Validator, doc: &Value, what: &str) {
    assert!(
        !v.is_valid(doc),
        "{what} validates but must not: {}",
        serde_json::to_string_pretty(doc).unwrap_or_default()
    );
}

#[test]
fn lint_json_output_validates_against_its_schema() {
    let v = validator("schemas/lint-output.schema.json");
    let mut findings = 0;
    let mut no_column = 0;
    let mut no_snippet = 0;
    for dir in projects() {
        let doc = lint_json(&dir, "json");
        assert_valid(&v, &doc, &format!("{} --format json", dir.display()));
        for f in doc["findings"].as_array().into_iter().flatten() {
            findings += 1;
            no_column += usize::from(f["col"] == 0);
            no_snippet += usize::from(f["snippet"].is_null());
        }
    }
    // The corpus exercises the optional shapes, not only the common one.
    assert!(findings >= 13, "{findings} findings");
    assert!(
        no_column >= 1 && no_snippet >= 1,
        "{no_column} {no_snippet}"
    );
}

#[test]
fn lint_json_schema_rejects_broken_documents() {
    let v = validator("schemas/lint-output.schema.json");
    let good = lint_json(&root().join("tests/fixtures/lint/role-cycle"), "json");
    assert_valid(&v, &good, "role-cycle");
    assert!(!good["findings"].as_array().expect("findings").is_empty());
    // A finding about a whole file (line 0, no column, no snippet) is a valid shape too.
    let mut whole_file = good.clone();
    whole_file["findings"][0]["line"] = json!(0);
    whole_file["findings"][0]["col"] = json!(0);
    whole_file["findings"][0]["snippet"] = Value::Null;
    assert_valid(&v, &whole_file, "a whole-file finding");
    let breakers: &[Breaker] = &[
        ("version 2", |d| d["version"] = json!(2)),
        ("no summary", |d| {
            d.as_object_mut().expect("object").remove("summary");
        }),
        ("unknown top-level key", |d| d["extra"] = json!(true)),
        ("negative error count", |d| {
            d["summary"]["errors"] = json!(-1)
        }),
        ("severity fatal", |d| {
            d["findings"][0]["severity"] = json!("fatal")
        }),
        ("line as a string", |d| {
            d["findings"][0]["line"] = json!("2")
        }),
        ("no rule", |d| {
            d["findings"][0]
                .as_object_mut()
                .expect("finding")
                .remove("rule");
        }),
        ("rule id with a space", |d| {
            d["findings"][0]["rule"] = json!("ref role")
        }),
        ("empty message", |d| d["findings"][0]["message"] = json!("")),
        ("snippet as a number", |d| {
            d["findings"][0]["snippet"] = json!(3)
        }),
        ("findings as an object", |d| d["findings"] = json!({})),
    ];
    for (what, breaker) in breakers {
        let mut doc = good.clone();
        breaker(&mut doc);
        assert_invalid(&v, &doc, what);
    }
}

#[test]
fn lint_sarif_output_validates_against_the_oasis_schema() {
    let v = validator("schemas/sarif-2.1.0/sarif-schema-2.1.0.json");
    let mut results = 0;
    for dir in projects() {
        let doc = lint_json(&dir, "sarif");
        assert_valid(&v, &doc, &format!("{} --format sarif", dir.display()));
        results += doc["runs"][0]["results"].as_array().map_or(0, Vec::len);
    }
    assert!(results >= 13, "{results} results");
}

#[test]
fn sarif_schema_rejects_broken_documents() {
    let v = validator("schemas/sarif-2.1.0/sarif-schema-2.1.0.json");
    let good = lint_json(&root().join("tests/fixtures/lint/role-cycle"), "sarif");
    assert_valid(&v, &good, "role-cycle sarif");
    let result = "/runs/0/results/0";
    assert!(good.pointer(result).is_some(), "a result to break");
    let breakers: &[Breaker] = &[
        ("version 2.0.0", |d| d["version"] = json!("2.0.0")),
        ("no runs", |d| {
            d.as_object_mut().expect("object").remove("runs");
        }),
        ("run without tool", |d| {
            d["runs"][0].as_object_mut().expect("run").remove("tool");
        }),
        ("driver without name", |d| {
            d["runs"][0]["tool"]["driver"]
                .as_object_mut()
                .expect("driver")
                .remove("name");
        }),
        ("level fatal", |d| {
            d["runs"][0]["results"][0]["level"] = json!("fatal")
        }),
        ("result without message", |d| {
            d["runs"][0]["results"][0]
                .as_object_mut()
                .expect("result")
                .remove("message");
        }),
        ("startLine 0", |d| {
            d["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
                json!(0)
        }),
        ("unknown result property", |d| {
            d["runs"][0]["results"][0]["severity"] = json!("error")
        }),
        ("rule without id", |d| {
            d["runs"][0]["tool"]["driver"]["rules"][0]
                .as_object_mut()
                .expect("rule")
                .remove("id");
        }),
    ];
    for (what, breaker) in breakers {
        let mut doc = good.clone();
        breaker(&mut doc);
        assert_invalid(&v, &doc, what);
    }
}
