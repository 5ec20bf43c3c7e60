//! Findings as text for people (grouped by file), JSON, and SARIF 2.1.0 for
//! code-scanning UIs.

use serde_json::{Value as Json, json};

use super::{Finding, RULES, Severity};

pub fn human(findings: &[Finding]) -> String {
    let mut out = String::new();
    let mut current: Option<&std::path::Path> = None;
    for f in findings {
        if current != Some(f.file.as_path()) {
            if current.is_some() {
                out.push('\n');
            }
            out.push_str(&format!("{}\n", f.file.display()));
            current = Some(f.file.as_path());
        }
        let place = match (f.line, f.col) {
            (0, _) => f.file.display().to_string(),
            (l, 0) => format!("{}:{l}", f.file.display()),
            (l, c) => format!("{}:{l}:{c}", f.file.display()),
        };
        out.push_str(&format!(
            "  {place}: {}[{}] {}\n",
            f.severity.as_str(),
            f.rule,
            f.message
        ));
        if let Some(s) = &f.snippet {
            out.push_str(&format!("    | {}\n", s.trim_end()));
            if f.col > 0 {
                let pad: String = s
                    .chars()
                    .take(f.col - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                out.push_str(&format!("    | {pad}^\n"));
            }
        }
    }
    out.push_str(&summary(findings));
    out
}

pub fn summary(findings: &[Finding]) -> String {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let mut files: Vec<&std::path::Path> = findings.iter().map(|f| f.file.as_path()).collect();
    files.dedup();
    if findings.is_empty() {
        "deployer lint: no findings\n".to_string()
    } else {
        format!(
            "{}deployer lint: {errors} error(s), {warnings} warning(s) in {} file(s)\n",
            if findings.is_empty() { "" } else { "\n" },
            files.len()
        )
    }
}

pub fn json(findings: &[Finding]) -> Json {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    json!({
        "version": 1,
        "findings": findings,
        "summary": { "errors": errors, "warnings": findings.len() - errors },
    })
}

/// SARIF 2.1.0 (OASIS), one run, every rule described, one result per finding.
pub fn sarif(findings: &[Finding]) -> Json {
    let rules: Vec<Json> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": r.rationale },
                "defaultConfiguration": { "level": level(r.severity) },
            })
        })
        .collect();
    let results: Vec<Json> = findings
        .iter()
        .map(|f| {
            let mut region = serde_json::Map::new();
            if f.line > 0 {
                region.insert("startLine".into(), json!(f.line));
                if f.col > 0 {
                    region.insert("startColumn".into(), json!(f.col));
                }
                if let Some(s) = &f.snippet {
                    region.insert("snippet".into(), json!({ "text": s }));
                }
            }
            let mut physical = json!({
                "artifactLocation": { "uri": uri(&f.file) },
            });
            if !region.is_empty() {
                physical["region"] = Json::Object(region);
            }
            json!({
                "ruleId": f.rule,
                "ruleIndex": RULES.iter().position(|r| r.id == f.rule).unwrap_or(0),
                "level": level(f.severity),
                "message": { "text": f.message },
                "locations": [ { "physicalLocation": physical } ],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [ {
            "tool": { "driver": {
                "name": "deployer-lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            } },
            "columnKind": "unicodeCodePoints",
            "results": results,
        } ],
    })
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A relative URI reference with `/` separators (SARIF's artifactLocation.uri).
fn uri(p: &std::path::Path) -> String {
    let s = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('#', "%23")
}
