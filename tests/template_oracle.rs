//! The template oracle: every case of `tests/template_oracle/cases/*.yml`
//! rendered by deployer and compared with what ansible-core's own Templar
//! gave for it (`tests/template_oracle/expected.json`, written by
//! `tests/template_oracle/oracle.py`; `.ci/run` regenerates it with the CI
//! venv and fails when the committed file is stale).
//!
//! Native results are compared by Python type and `repr`, file renderings
//! byte for byte; where Ansible fails, deployer must fail too, with the
//! template's name and line and the word the case gives in `err:` (the
//! variable or filter at fault). A case with `deployer:` is a deliberate
//! difference (listed in the README): deployer must give exactly that.
//! No host is contacted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deployer::project::inventory::{Group, Host, Inventory};
use deployer::template;
use deployer::vars::{VarContext, VarValue, VaultAccess, layer_from_vars};
use deployer::yaml::{Node, Yaml};
use indexmap::IndexMap;
use minijinja::value::{Value, ValueKind};

const CASES: &str = "tests/template_oracle/cases";
/// The corpus never shrinks below this.
const MIN_CASES: usize = 980;
const EXPECTED: &str = "tests/template_oracle/expected.json";
/// The template module's `src` and `dest` in file cases (as oracle.py names them).
const TEMPLATE_NAME: &str = "case.j2";
const TEMPLATE_DEST: &str = "/etc/oracle.conf";

struct Case {
    id: String,
    loc: String,
    kind: &'static str,
    src: String,
    vars: IndexMap<String, Node>,
    err: Option<String>,
    /// A deliberate difference: deployer's result (type-less repr, or text).
    deployer: Option<String>,
    /// A deliberate difference: deployer fails, mentioning this.
    deployer_err: Option<String>,
    /// The file's `hosts:` (name → inventory variables): `hostvars` of an
    /// inventory of those hosts, as Ansible's HostVars gives it.
    hosts: Option<Arc<IndexMap<String, IndexMap<String, Node>>>>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn map_get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Yaml::Map(m) => m
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn vars_of(node: Option<&Node>) -> IndexMap<String, Node> {
    let mut out = IndexMap::new();
    if let Some(Node {
        value: Yaml::Map(m),
        ..
    }) = node
    {
        for (k, v) in m {
            out.insert(deployer::yaml::key_string(k), v.clone());
        }
    }
    out
}

fn load_cases() -> Vec<Case> {
    let dir = root().join(CASES);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("cases directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let text = std::fs::read_to_string(&path).expect("case file");
        let doc = deployer::yaml::parse_str(&text, Path::new(&format!("{CASES}/{name}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let file_vars = vars_of(map_get(&doc, "vars"));
        let hosts = map_get(&doc, "hosts").map(|h| {
            Arc::new(
                vars_of(Some(h))
                    .into_iter()
                    .map(|(name, v)| (name, vars_of(Some(&v))))
                    .collect::<IndexMap<_, _>>(),
            )
        });
        let Some(Node {
            value: Yaml::Seq(cases),
            ..
        }) = map_get(&doc, "cases")
        else {
            panic!("{name}: no cases list");
        };
        for (i, case) in cases.iter().enumerate() {
            let mut vars = file_vars.clone();
            let (kind, src, err, deployer, deployer_err) = match &case.value {
                Yaml::Str(s) => ("t", s.clone(), None, None, None),
                Yaml::Map(_) => {
                    let kinds: Vec<&'static str> = ["t", "file", "when"]
                        .into_iter()
                        .filter(|k| map_get(case, k).is_some())
                        .collect();
                    assert_eq!(kinds.len(), 1, "{}: one of t, file, when", case.loc);
                    let src = map_get(case, kinds[0])
                        .and_then(Node::as_str)
                        .unwrap_or_else(|| panic!("{}: the template must be a string", case.loc))
                        .to_string();
                    for (k, v) in vars_of(map_get(case, "vars")) {
                        vars.insert(k, v);
                    }
                    let s = |k: &str| map_get(case, k).and_then(Node::as_str).map(str::to_owned);
                    (kinds[0], src, s("err"), s("deployer"), s("deployer_err"))
                }
                _ => panic!("{}: a case is a string or a map", case.loc),
            };
            out.push(Case {
                id: format!("{name}#{i}"),
                loc: case.loc.to_string(),
                kind,
                src,
                vars,
                err,
                deployer,
                deployer_err,
                hosts: hosts.clone(),
            });
        }
    }
    out
}

/// Python's type name of a native value.
fn type_name(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "AnsibleUndefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

/// What deployer gives for a case: `Ok((type, repr-or-text))` or the error.
fn render(
    case: &Case,
    env: &Arc<minijinja::Environment<'static>>,
) -> Result<(String, String), String> {
    let vault = Arc::new(VaultAccess::new(None));
    let mut layers: Vec<IndexMap<String, VarValue>> = Vec::new();
    if let Some(hosts) = &case.hosts {
        let mut inv = Inventory::default();
        let mut all = Group {
            name: "all".into(),
            ..Default::default()
        };
        for (name, vars) in hosts.iter() {
            all.hosts.insert(name.clone());
            inv.hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    vars: vars.clone(),
                },
            );
        }
        let ungrouped = Group {
            name: "ungrouped".into(),
            hosts: all.hosts.clone(),
            ..Default::default()
        };
        inv.groups.insert("all".into(), all);
        inv.groups.insert("ungrouped".into(), ungrouped);
        let hv = deployer::run::inventory_hostvars(Arc::new(inv), env.clone(), vault.clone());
        layers.push(IndexMap::from([(
            "hostvars".to_string(),
            VarValue::Value(hv),
        )]));
    }
    layers.push(layer_from_vars(&case.vars));
    let ctx = VarContext::new(layers, env.clone(), vault);
    match case.kind {
        "t" => {
            let v = ctx.render_value(&case.src)?;
            Ok((type_name(&v).to_string(), template::py_repr(&v)))
        }
        "when" => {
            let b = ctx.condition(&case.src)?;
            Ok(("bool".into(), if b { "True" } else { "False" }.into()))
        }
        "file" => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let full = dir.path().join(TEMPLATE_NAME);
            std::fs::write(&full, &case.src).map_err(|e| e.to_string())?;
            let user_managed = case.vars.contains_key("ansible_managed");
            let file_vars =
                template::template_file_vars(TEMPLATE_NAME, &full, TEMPLATE_DEST, user_managed);
            let ctx = ctx.extended(file_vars);
            let text = template::render_file(
                ctx.env(),
                &full.display().to_string(),
                &case.src,
                ctx.value(),
            )
            .map_err(|e| ctx.explain(&e))?;
            Ok(("str".into(), text))
        }
        _ => unreachable!(),
    }
}

/// Shows invisible characters: the string as a Rust literal.
fn visible(s: &str) -> String {
    format!("{s:?}")
}

fn first_difference(a: &str, b: &str) -> String {
    let (va, vb) = (visible(a), visible(b));
    let at = va
        .chars()
        .zip(vb.chars())
        .take_while(|(x, y)| x == y)
        .count();
    format!(
        "{}^ first difference",
        " ".repeat(at + "   ansible:  ".len())
    )
}

#[derive(serde::Deserialize)]
struct Expected {
    id: String,
    kind: String,
    src: String,
    ok: bool,
    #[serde(rename = "type")]
    ty: Option<String>,
    repr: Option<String>,
    text: Option<String>,
    error: Option<String>,
}

#[test]
fn deployer_renders_every_case_like_ansible() {
    let expected: Vec<Expected> = serde_json::from_str(
        &std::fs::read_to_string(root().join(EXPECTED)).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    let expected: HashMap<String, Expected> =
        expected.into_iter().map(|e| (e.id.clone(), e)).collect();
    let cases = load_cases();
    let env = Arc::new(template::environment());
    let mut failures = Vec::new();
    let mut deliberate = 0;
    for case in &cases {
        let Some(exp) = expected.get(&case.id) else {
            failures.push(format!(
                "{} ({}): not in {EXPECTED}; regenerate it with oracle.py",
                case.id, case.loc
            ));
            continue;
        };
        if exp.kind != case.kind || exp.src != case.src {
            failures.push(format!(
                "{} ({}): {EXPECTED} is stale for this case; regenerate it with oracle.py",
                case.id, case.loc
            ));
            continue;
        }
        let got = render(case, &env);
        let head = format!(
            "{} ({}) {}: {}",
            case.id,
            case.loc,
            case.kind,
            visible(&case.src)
        );
        let want: Result<(String, String), String> = if exp.ok {
            let value = match case.kind {
                "file" => exp.text.clone().unwrap_or_default(),
                _ => exp.repr.clone().unwrap_or_default(),
            };
            Ok((exp.ty.clone().unwrap_or_else(|| "str".into()), value))
        } else {
            Err(exp.error.clone().unwrap_or_default())
        };
        if let Some(d) = &case.deployer {
            // A deliberate difference: Ansible must still give something else.
            deliberate += 1;
            match &got {
                Ok((_, v)) if v == d && want.as_ref().map(|w| &w.1) != Ok(d) => {}
                _ => failures.push(format!(
                    "{head}\n   deliberate difference not as documented:\n   ansible:  {want:?}\n   deployer: {got:?}\n   documented deployer result: {}",
                    visible(d)
                )),
            }
            continue;
        }
        if let Some(word) = &case.deployer_err {
            deliberate += 1;
            match &got {
                Err(e) if e.contains(word.as_str()) && want.is_ok() => {}
                _ => failures.push(format!(
                    "{head}\n   deliberate difference not as documented (deployer fails mentioning {word:?}):\n   ansible:  {want:?}\n   deployer: {got:?}"
                )),
            }
            continue;
        }
        match (&want, &got) {
            (Ok((wt, wv)), Ok((gt, gv))) => {
                if wt != gt || wv != gv {
                    failures.push(format!(
                        "{head}\n   ansible:  {}  ({wt})\n   deployer: {}  ({gt})\n{}",
                        visible(wv),
                        visible(gv),
                        first_difference(wv, gv)
                    ));
                }
            }
            (Ok((wt, wv)), Err(e)) => failures.push(format!(
                "{head}\n   ansible:  {}  ({wt})\n   deployer failed: {e}",
                visible(wv)
            )),
            (Err(ae), Ok((gt, gv))) => failures.push(format!(
                "{head}\n   ansible failed: {ae}\n   deployer: {}  ({gt})",
                visible(gv)
            )),
            (Err(ae), Err(e)) => {
                let Some(word) = &case.err else {
                    failures.push(format!(
                        "{head}\n   both fail, but the case has no `err:` naming what the error must mention\n   ansible:  {ae}\n   deployer: {e}"
                    ));
                    continue;
                };
                let located = match case.kind {
                    "file" => e.contains(&format!("{TEMPLATE_NAME}:")),
                    "t" => e.contains("<template>:"),
                    _ => true,
                };
                if !e.contains(word.as_str()) || !located {
                    failures.push(format!(
                        "{head}\n   deployer's error must name the template and line and mention {word:?}\n   ansible:  {ae}\n   deployer: {e}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "template oracle: {} cases, {} deliberate differences, {} failures",
        cases.len(),
        deliberate,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Ansible:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert!(
        cases.len() >= MIN_CASES,
        "the corpus shrank: {} cases, at least {MIN_CASES} expected",
        cases.len()
    );
}
