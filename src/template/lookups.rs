//! `lookup()`, `query()`/`q()` and the `with_<lookup>` loops: lookup plugins
//! run on the control machine, as in Ansible, with the task's variables.
//!
//! Files are searched the way Ansible's `find_file_in_search_path` does: for
//! a relative name, `<role>/<files|templates>/NAME`, `<role>/NAME`, then the
//! same under the playbook's directory. `lookup()` returns Ansible's munged
//! result (one element as itself, several strings joined with `,`);
//! `query()` and `lookup(..., wantlist=True)` the list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// The lookup plugins of `ansible.builtin` deployer runs.
pub const LOOKUPS: &[&str] = &[
    "env",
    "file",
    "template",
    "first_found",
    "fileglob",
    "varnames",
    "vars",
    "password",
    "pipe",
    "items",
    "list",
    "dict",
    "indexed_items",
    "together",
    "nested",
    "sequence",
    "subelements",
    "lines",
    "random_choice",
];

/// `ansible.builtin` lookups deployer does not run: "not supported yet".
pub const NOT_YET_LOOKUPS: &[&str] = &[
    "config",
    "csvfile",
    "ini",
    "inventory_hostnames",
    "unvault",
    "url",
];

/// The name under which `with_<lookup>` hands its (templated) terms to
/// [`loop_items`]; set by the loader as a task variable.
pub const LOOP_TERMS_VAR: &str = "__deployer_loop_terms";

/// Registers `lookup`, `query`, `q` and the loader's `with_*` helper.
pub fn register(env: &mut Environment<'static>) {
    env.add_global("lookup", Value::from_object(LookupFn { query: false }));
    env.add_global("query", Value::from_object(LookupFn { query: true }));
    env.add_global("q", Value::from_object(LookupFn { query: true }));
    env.add_function("__deployer_with", with_loop);
}

/// Why a lookup name is refused, or `None` when deployer runs it.
pub fn refusal(name: &str) -> Option<String> {
    let short = short_name(name);
    if LOOKUPS.contains(&short) && is_builtin(name) {
        return None;
    }
    if NOT_YET_LOOKUPS.contains(&short) && is_builtin(name) {
        return Some(format!(
            "lookup plugin '{name}' is not supported yet by deployer"
        ));
    }
    if !name.contains('.') || is_builtin(name) {
        let hint = nearest(short, LOOKUPS.iter().chain(NOT_YET_LOOKUPS))
            .map(|n| format!(" (did you mean '{n}'?)"))
            .unwrap_or_default();
        return Some(format!("unknown lookup plugin '{name}'{hint}"));
    }
    Some(format!(
        "lookup plugin '{name}' (from a collection) is not supported yet by deployer"
    ))
}

fn is_builtin(name: &str) -> bool {
    !name.contains('.')
        || name.starts_with("ansible.builtin.")
        || name.starts_with("ansible.legacy.")
}

fn short_name(name: &str) -> &str {
    name.strip_prefix("ansible.builtin.")
        .or_else(|| name.strip_prefix("ansible.legacy."))
        .unwrap_or(name)
}

/// The closest of `candidates` to `name` (edit distance at most 3).
pub fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, c)| c)
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[derive(Debug)]
struct LookupFn {
    query: bool,
}

impl Object for LookupFn {
    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs) = split_args(args)?;
        let Some((name, terms)) = positional.split_first() else {
            return Err(lookup_error("lookup() needs the name of a lookup plugin"));
        };
        let name = name
            .as_str()
            .ok_or_else(|| lookup_error("the lookup plugin name must be a string"))?
            .to_string();
        let mut opts = Options::new(kwargs);
        let wantlist = self.query || opts.take_bool("wantlist")?.unwrap_or(false);
        let errors = opts.take_str("errors")?.unwrap_or_else(|| "strict".into());
        let result = run(state, &name, terms.to_vec(), &mut opts, None);
        let list = match result {
            Ok(l) => l,
            Err(e) if errors == "ignore" || errors == "warn" => {
                let _ = e;
                return Ok(if wantlist {
                    Value::from(Vec::<Value>::new())
                } else {
                    Value::from(())
                });
            }
            Err(e) => return Err(e),
        };
        if wantlist {
            return Ok(Value::from(list));
        }
        Ok(munge(list))
    }
}

/// Ansible's `lookup()` result without `wantlist`: nothing is `None`, one
/// element is that element, several strings are joined with commas, other
/// lists stay lists.
fn munge(list: Vec<Value>) -> Value {
    match list.len() {
        0 => Value::from(()),
        1 => list.into_iter().next().unwrap_or_default(),
        _ if list.iter().all(|v| v.kind() == ValueKind::String) => Value::from(
            list.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => Value::from(list),
    }
}

/// `with_<name>: terms` as Ansible's task executor runs it: the templated
/// terms, a string made a one-element list, given to the lookup, its list
/// the loop's items.
fn with_loop(
    state: &State,
    name: String,
    terms: Value,
    module: Option<String>,
) -> Result<Value, Error> {
    let terms = match terms.kind() {
        ValueKind::String => vec![terms],
        ValueKind::Seq | ValueKind::Iterable => terms.try_iter()?.collect(),
        _ => vec![terms],
    };
    // Ansible picks the directory from the task's action name.
    let module = module.unwrap_or_default();
    let subdir = ["template", "var", "file"]
        .into_iter()
        .find(|s| module.contains(s))
        .unwrap_or("file");
    let subdir = format!("{subdir}s");
    let mut opts = Options::new(Vec::new());
    run(state, &name, terms, &mut opts, Some(&subdir)).map(Value::from)
}

/// Keyword arguments by name, in the order given.
type NamedArgs = Vec<(String, Value)>;

fn split_args(args: &[Value]) -> Result<(Vec<Value>, NamedArgs), Error> {
    let mut positional = Vec::new();
    let mut kwargs = Vec::new();
    for a in args {
        if a.is_kwargs() {
            let kw = Kwargs::try_from(a.clone())?;
            for k in kw.args() {
                kwargs.push((k.to_string(), kw.get::<Value>(k)?));
            }
        } else {
            positional.push(a.clone());
        }
    }
    Ok((positional, kwargs))
}

/// Keyword options of one lookup call; each option is taken once, and what
/// is left over is an error naming it.
struct Options(Vec<(String, Value)>);

impl Options {
    fn new(kw: Vec<(String, Value)>) -> Options {
        Options(kw)
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }

    fn take_str(&mut self, name: &str) -> Result<Option<String>, Error> {
        match self.take(name) {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => Ok(Some(
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| crate::template::py_str(&v)),
            )),
        }
    }

    fn take_bool(&mut self, name: &str) -> Result<Option<bool>, Error> {
        Ok(self.take(name).map(|v| super::filters::to_bool(&v)))
    }

    fn finish(&self, lookup: &str) -> Result<(), Error> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(lookup_error(format!(
                "lookup '{lookup}': unknown option '{k}'"
            ))),
        }
    }
}

fn lookup_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn string_term(lookup: &str, v: &Value) -> Result<String, Error> {
    v.as_str().map(str::to_string).ok_or_else(|| {
        lookup_error(format!(
            "lookup '{lookup}': expected a string term, got {}",
            crate::template::py_repr(v)
        ))
    })
}

/// Runs lookup `name` with `terms`; its result as a list.
/// `subdir`: where `first_found` looks inside each search root (`files`
/// for a `with_first_found` of most modules, none for `lookup()`).
fn run(
    state: &State,
    name: &str,
    terms: Vec<Value>,
    opts: &mut Options,
    subdir: Option<&str>,
) -> Result<Vec<Value>, Error> {
    if let Some(why) = refusal(name) {
        return Err(lookup_error(why));
    }
    let short = short_name(name);
    let out = match short {
        "env" => {
            let default = opts.take_str("default")?;
            let mut out = Vec::new();
            for t in &terms {
                let var = string_term(short, t)?;
                match std::env::var(&var) {
                    Ok(v) => out.push(Value::from(v)),
                    Err(_) => match &default {
                        Some(d) => out.push(Value::from(d.clone())),
                        None => out.push(Value::from("")),
                    },
                }
            }
            out
        }
        "file" => {
            let lstrip = opts.take_bool("lstrip")?.unwrap_or(false);
            let rstrip = opts.take_bool("rstrip")?.unwrap_or(true);
            let mut out = Vec::new();
            for t in &terms {
                let term = string_term(short, t)?;
                let path = find_file(state, Some("files"), &term).map_err(|searched| {
                    lookup_error(format!(
                        "lookup 'file': could not find '{term}' (searched: {searched})"
                    ))
                })?;
                let mut text = read_text(&path)?;
                if lstrip {
                    text = text.trim_start().to_string();
                }
                if rstrip {
                    text = text.trim_end().to_string();
                }
                out.push(Value::from(text));
            }
            out
        }
        "template" => {
            let extra = opts.take("template_vars");
            let _ = opts.take_bool("convert_data")?;
            let mut out = Vec::new();
            for t in &terms {
                let term = string_term(short, t)?;
                let path = find_file(state, Some("templates"), &term).map_err(|searched| {
                    lookup_error(format!(
                        "lookup 'template': could not find '{term}' (searched: {searched})"
                    ))
                })?;
                let text = read_text(&path)?;
                let vars = task_vars(state);
                let ctx = match &extra {
                    Some(e) if e.kind() == ValueKind::Map => {
                        minijinja::value::merge_maps([e.clone(), vars])
                    }
                    _ => vars,
                };
                let rendered = crate::template::render_file(
                    state.env(),
                    &path.display().to_string(),
                    &text,
                    ctx,
                )?;
                out.push(Value::from(rendered));
            }
            out
        }
        "first_found" => first_found(state, &terms, opts, subdir)?,
        "fileglob" => {
            let mut out = Vec::new();
            for t in &terms {
                let term = string_term(short, t)?;
                out.extend(fileglob(state, &term).into_iter().map(Value::from));
            }
            out
        }
        "varnames" => {
            let names = all_var_names(state);
            let mut out = Vec::new();
            for t in &terms {
                let term = string_term(short, t)?;
                let re = regex::Regex::new(&term).map_err(|e| {
                    lookup_error(format!("lookup 'varnames': bad pattern '{term}': {e}"))
                })?;
                out.extend(
                    names
                        .iter()
                        .filter(|n| re.is_match(n))
                        .map(|n| Value::from(n.as_str())),
                );
            }
            out
        }
        "vars" => {
            let default = opts.take("default");
            let mut out = Vec::new();
            for t in &terms {
                let term = string_term(short, t)?;
                let v = match state.lookup("vars").filter(|v| !v.is_undefined()) {
                    Some(vars) => vars.get_attr(&term).ok(),
                    None => state.lookup(&term),
                }
                .filter(|v| !v.is_undefined());
                match (v, &default) {
                    (Some(v), _) => out.push(v),
                    (None, Some(d)) => out.push(d.clone()),
                    (None, None) => {
                        return Err(lookup_error(format!(
                            "lookup 'vars': no variable named '{term}'"
                        )));
                    }
                }
            }
            out
        }
        "password" => {
            let mut out = Vec::new();
            for t in &terms {
                out.push(Value::from(password(state, &string_term(short, t)?)?));
            }
            out
        }
        "pipe" => {
            let mut out = Vec::new();
            for t in &terms {
                out.push(Value::from(pipe(state, &string_term(short, t)?)?));
            }
            out
        }
        "lines" => {
            let mut out = Vec::new();
            for t in &terms {
                let text = pipe(state, &string_term(short, t)?)?;
                out.extend(text.lines().map(|l| Value::from(l.to_string())));
            }
            out
        }
        "items" => {
            let mut out = Vec::new();
            for t in terms {
                match t.kind() {
                    ValueKind::Seq | ValueKind::Iterable => out.extend(t.try_iter()?),
                    _ => out.push(t),
                }
            }
            out
        }
        "list" => terms,
        "dict" => {
            let mut out = Vec::new();
            for t in &terms {
                if t.kind() != ValueKind::Map {
                    return Err(lookup_error(format!(
                        "with_dict expects a dict, got {}",
                        crate::template::py_repr(t)
                    )));
                }
                for k in t.try_iter()? {
                    let v = t.get_item(&k)?;
                    out.push(Value::from_pairs([("key", k), ("value", v)]));
                }
            }
            out
        }
        "indexed_items" => {
            let items = if terms.len() == 1 && is_list(&terms[0]) {
                terms[0].try_iter()?.collect()
            } else {
                terms
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| Value::from(vec![Value::from(i), v]))
                .collect()
        }
        "together" => {
            let lists = list_of_lists(short, &terms)?;
            let len = lists.iter().map(Vec::len).max().unwrap_or(0);
            (0..len)
                .map(|i| {
                    Value::from(
                        lists
                            .iter()
                            .map(|l| l.get(i).cloned().unwrap_or(Value::from(())))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect()
        }
        "nested" => {
            let lists = list_of_lists(short, &terms)?;
            let mut acc: Vec<Vec<Value>> = vec![Vec::new()];
            for l in &lists {
                let mut next = Vec::new();
                for prefix in &acc {
                    for v in l {
                        let mut p = prefix.clone();
                        p.push(v.clone());
                        next.push(p);
                    }
                }
                acc = next;
            }
            if lists.is_empty() {
                Vec::new()
            } else {
                acc.into_iter().map(Value::from).collect()
            }
        }
        "sequence" => {
            let mut out = Vec::new();
            for t in &terms {
                out.extend(sequence(&string_term(short, t)?)?);
            }
            out
        }
        "subelements" => subelements(&terms, opts)?,
        "random_choice" => {
            if terms.is_empty() {
                Vec::new()
            } else {
                let i = rand::random_range(0..terms.len());
                vec![terms[i].clone()]
            }
        }
        _ => {
            return Err(lookup_error(format!(
                "lookup plugin '{name}' is not supported yet by deployer"
            )));
        }
    };
    opts.finish(short)?;
    Ok(out)
}

fn is_list(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

fn list_of_lists(lookup: &str, terms: &[Value]) -> Result<Vec<Vec<Value>>, Error> {
    terms
        .iter()
        .map(|t| {
            if is_list(t) {
                Ok(t.try_iter()?.collect())
            } else {
                Err(lookup_error(format!(
                    "with_{lookup}: expected a list of lists, got {}",
                    crate::template::py_repr(t)
                )))
            }
        })
        .collect()
}

fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| lookup_error(format!("cannot read {}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| lookup_error(format!("{} is not UTF-8 text", path.display())))
}

/// `ansible_search_path`: the task's role, then the playbook's directory.
fn search_roots(state: &State) -> Vec<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut roots = Vec::new();
    for var in ["role_path", "playbook_dir"] {
        if let Some(p) = state
            .lookup(var)
            .and_then(|v| v.as_str().map(PathBuf::from))
        {
            // Relative (a playbook named without a directory): from here.
            let p = if p.is_absolute() { p } else { cwd.join(p) };
            if !roots.contains(&p) {
                roots.push(p);
            }
        }
    }
    if roots.is_empty()
        && let Ok(cwd) = std::env::current_dir()
    {
        roots.push(cwd);
    }
    roots
}

/// The candidates Ansible tries for `source` under `subdir` (none for a
/// plain `lookup('first_found')`), in order: for a role task the role, its
/// `tasks/`, then the playbook's directory.
fn candidates(state: &State, subdir: Option<&str>, source: &str) -> Vec<PathBuf> {
    if Path::new(source).is_absolute() {
        return vec![PathBuf::from(source)];
    }
    if let Some(rest) = source.strip_prefix("~/")
        && let Ok(home) = std::env::var("HOME")
    {
        return vec![Path::new(&home).join(rest)];
    }
    let mut roots = search_roots(state);
    if let Some(role) = state
        .lookup("role_path")
        .and_then(|v| v.as_str().map(PathBuf::from))
    {
        let tasks = role.join("tasks");
        let at = roots.iter().position(|r| *r == role).map_or(0, |i| i + 1);
        roots.insert(at, tasks);
    }
    let mut out = Vec::new();
    for root in roots {
        if let Some(sub) = subdir
            && source.split('/').next() != Some(sub)
        {
            out.push(root.join(sub).join(source));
        }
        out.push(root.join(source));
    }
    out
}

/// The first existing candidate, or the list searched (for the error).
fn find_file(state: &State, subdir: Option<&str>, source: &str) -> Result<PathBuf, String> {
    let c = candidates(state, subdir, source);
    c.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        c.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn fileglob(state: &State, term: &str) -> Vec<String> {
    let (dir, file) = match term.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, term),
    };
    let dirs: Vec<PathBuf> = match dir {
        Some(d) => find_file(state, Some("files"), if d.is_empty() { "/" } else { d })
            .ok()
            .into_iter()
            .collect(),
        None => search_roots(state)
            .into_iter()
            .flat_map(|r| [r.join("files"), r])
            .collect(),
    };
    // Python's glob lists a directory in the order the file system gives
    // (no sorting) and skips dot files unless the pattern names them.
    let Ok(pattern) = glob::Pattern::new(file) else {
        return Vec::new();
    };
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let found: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                (!name.starts_with('.') || file.starts_with('.')) && pattern.matches(&name)
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// `first_found`: the terms are file names or `{files, paths, skip}` maps.
fn first_found(
    state: &State,
    terms: &[Value],
    opts: &mut Options,
    subdir: Option<&str>,
) -> Result<Vec<Value>, Error> {
    let mut skip = opts.take_bool("skip")?.unwrap_or(false);
    let mut kw_files = opts.take("files");
    let kw_paths = opts.take("paths");
    let mut files: Vec<String> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let split = |v: &Value, out: &mut Vec<String>| -> Result<(), Error> {
        let items: Vec<Value> = if is_list(v) {
            v.try_iter()?.collect()
        } else {
            vec![v.clone()]
        };
        for i in items {
            let s = string_term("first_found", &i)?;
            // Ansible splits strings on , and ; (not : for paths here).
            out.extend(
                s.split([',', ';'])
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string),
            );
        }
        Ok(())
    };
    let mut flat: Vec<Value> = Vec::new();
    for t in terms {
        if is_list(t) {
            flat.extend(t.try_iter()?);
        } else {
            flat.push(t.clone());
        }
    }
    for t in &flat {
        if t.kind() == ValueKind::Map {
            if let Ok(f) = t.get_attr("files")
                && !f.is_undefined()
            {
                split(&f, &mut files)?;
            }
            if let Ok(p) = t.get_attr("paths")
                && !p.is_undefined()
            {
                split(&p, &mut paths)?;
            }
            if let Ok(s) = t.get_attr("skip")
                && !s.is_undefined()
            {
                skip = super::filters::to_bool(&s);
            }
        } else {
            files.push(string_term("first_found", t)?);
        }
    }
    if let Some(f) = kw_files.take() {
        split(&f, &mut files)?;
    }
    if let Some(p) = kw_paths {
        split(&p, &mut paths)?;
    }
    let mut tried = Vec::new();
    for f in &files {
        let names: Vec<String> = if paths.is_empty() {
            vec![f.clone()]
        } else {
            paths
                .iter()
                .map(|p| Path::new(p).join(f).display().to_string())
                .collect()
        };
        for n in names {
            for c in candidates(state, subdir, &n) {
                if c.exists() {
                    return Ok(vec![Value::from(c.display().to_string())]);
                }
                tried.push(c.display().to_string());
            }
        }
    }
    if skip {
        return Ok(Vec::new());
    }
    Err(lookup_error(format!(
        "first_found: no file was found (tried: {})",
        tried.join(", ")
    )))
}

/// The task's variables as one value: deployer's variables object, or in a
/// plain template context the variables the template sees.
fn task_vars(state: &State) -> Value {
    if let Some(v) = state.lookup("vars").filter(|v| !v.is_undefined()) {
        return v;
    }
    Value::from_pairs(
        state
            .known_variables()
            .into_iter()
            .filter_map(|k| state.lookup(&k).map(|v| (k.to_string(), v)))
            .collect::<Vec<_>>(),
    )
}

/// Every variable name of the task, as `varnames` sees them.
fn all_var_names(state: &State) -> Vec<String> {
    let Some(vars) = state.lookup("vars").filter(|v| !v.is_undefined()) else {
        // A plain template context (no deployer variables object).
        let globals: Vec<String> = state.env().globals().map(|(k, _)| k.to_string()).collect();
        return state
            .known_variables()
            .into_iter()
            .map(|k| k.to_string())
            .filter(|k| !globals.contains(k))
            .collect();
    };
    match vars.try_iter() {
        Ok(it) => it
            .filter_map(|k| k.as_str().map(str::to_string))
            .filter(|k| !k.starts_with("__deployer"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `password`: a file on the control machine holding a generated password,
/// made on first use (owner-only) and read afterwards.
fn password(state: &State, term: &str) -> Result<String, Error> {
    let mut words = crate::shell::split(term)
        .ok_or_else(|| lookup_error("lookup 'password': unbalanced quotes"))?
        .into_iter();
    let path = words
        .next()
        .ok_or_else(|| lookup_error("lookup 'password' needs a file name"))?;
    let mut length = 20usize;
    let mut chars: Option<Vec<char>> = None;
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| {
            lookup_error(format!("lookup 'password': expected key=value, got '{w}'"))
        })?;
        match k {
            "length" => {
                length = v.parse().map_err(|_| {
                    lookup_error(format!("lookup 'password': length '{v}' is not a number"))
                })?
            }
            "chars" => chars = Some(password_chars(v)),
            "encrypt" | "seed" | "ident" => {
                return Err(lookup_error(format!(
                    "lookup 'password': option '{k}' is not supported yet by deployer"
                )));
            }
            other => {
                return Err(lookup_error(format!(
                    "lookup 'password': unknown option '{other}' (expected length, chars)"
                )));
            }
        }
    }
    let chars = chars.unwrap_or_else(|| password_chars("ascii_letters,digits,.,:-_"));
    let generate = || -> String {
        (0..length)
            .map(|_| chars[rand::random_range(0..chars.len())])
            .collect()
    };
    if path == "/dev/null" {
        return Ok(generate());
    }
    let file = if Path::new(&path).is_absolute() {
        PathBuf::from(&path)
    } else {
        search_roots(state)
            .last()
            .cloned()
            .unwrap_or_default()
            .join(&path)
    };
    if let Ok(text) = std::fs::read_to_string(&file) {
        let first = text.lines().next().unwrap_or_default();
        let pw = first.split(" salt=").next().unwrap_or_default().to_string();
        crate::secrets::register(&pw);
        return Ok(pw);
    }
    let pw = generate();
    crate::secrets::register(&pw);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| lookup_error(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(&file, &format!("{pw}\n"))?;
    Ok(pw)
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| lookup_error(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| lookup_error(format!("cannot write {}: {e}", path.display())))
}

/// Ansible's `chars=` groups: names of Python's `string` constants, or
/// literal characters; `,,` is a comma.
fn password_chars(spec: &str) -> Vec<char> {
    let mut out = Vec::new();
    let spec = spec.replace(",,", "\u{0}");
    for part in spec.split(',') {
        let part = part.replace('\u{0}', ",");
        let set: String = match part.as_str() {
            "ascii_letters" => ('a'..='z').chain('A'..='Z').collect(),
            "ascii_lowercase" => ('a'..='z').collect(),
            "ascii_uppercase" => ('A'..='Z').collect(),
            "digits" => ('0'..='9').collect(),
            "hexdigits" => "0123456789abcdefABCDEF".into(),
            "octdigits" => "01234567".into(),
            "punctuation" => "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".into(),
            other => other.into(),
        };
        for c in set.chars() {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

/// `pipe`: a command run by `/bin/sh` on the control machine in the
/// playbook's directory; its stdout without trailing whitespace.
fn pipe(state: &State, cmd: &str) -> Result<String, Error> {
    let dir = state
        .lookup("playbook_dir")
        .and_then(|v| v.as_str().map(PathBuf::from))
        .filter(|p| p.is_dir());
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c").arg(cmd);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| lookup_error(format!("lookup 'pipe': cannot run /bin/sh: {e}")))?;
    if !out.status.success() {
        return Err(lookup_error(format!(
            "lookup 'pipe': the command exited with {} ({})",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// `with_sequence`: `start=1 end=5 stride=1 format=%d`, or `[start-]end[/stride][:format]`.
fn sequence(term: &str) -> Result<Vec<Value>, Error> {
    let bad = |m: String| lookup_error(format!("with_sequence '{term}': {m}"));
    let parse_num = |s: &str| -> Result<i64, Error> {
        let s = s.trim();
        let r = if let Some(h) = s.strip_prefix("0x") {
            i64::from_str_radix(h, 16)
        } else if let Some(o) = s.strip_prefix("0o") {
            i64::from_str_radix(o, 8)
        } else {
            s.parse()
        };
        r.map_err(|_| bad(format!("'{s}' is not a number")))
    };
    let (mut start, mut end, mut stride, mut count, mut format) =
        (1i64, None::<i64>, 1i64, None::<i64>, "%d".to_string());
    if term.contains('=') {
        for w in term.split_whitespace() {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| bad(format!("expected key=value, got '{w}'")))?;
            match k {
                "start" => start = parse_num(v)?,
                "end" => end = Some(parse_num(v)?),
                "stride" => stride = parse_num(v)?,
                "count" => count = Some(parse_num(v)?),
                "format" => format = v.to_string(),
                other => return Err(bad(format!("unknown option '{other}'"))),
            }
        }
    } else {
        let (rest, fmt) = match term.split_once(':') {
            Some((r, f)) => (r, Some(f)),
            None => (term, None),
        };
        if let Some(f) = fmt {
            format = f.to_string();
        }
        let (rest, st) = match rest.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (rest, None),
        };
        if let Some(s) = st {
            stride = parse_num(s)?;
        }
        match rest.split_once('-') {
            Some((a, b)) if !a.is_empty() => {
                start = parse_num(a)?;
                end = Some(parse_num(b)?);
            }
            _ => end = Some(parse_num(rest)?),
        }
    }
    if let Some(c) = count {
        if end.is_some() {
            return Err(bad("can't specify both count and end".into()));
        }
        end = Some(if c == 0 {
            start - stride
        } else {
            start + (c - 1) * stride
        });
        if c == 0 {
            return Ok(Vec::new());
        }
    }
    let end = end.ok_or_else(|| bad("must specify count or end".into()))?;
    if stride == 0 {
        return Ok(Vec::new());
    }
    if (stride > 0 && end < start) || (stride < 0 && end > start) {
        return Err(bad("to count backwards make stride negative".into()));
    }
    let mut out = Vec::new();
    let mut i = start;
    while (stride > 0 && i <= end) || (stride < 0 && i >= end) {
        out.push(Value::from(printf_int(&format, i).map_err(bad)?));
        i += stride;
    }
    Ok(out)
}

/// Python's `format % i` for one integer conversion (`%d`, `%02x`, `host%03d`).
fn printf_int(format: &str, i: i64) -> Result<String, String> {
    let re = regex::Regex::new(r"%([-0 +]*)(\d*)([dixXo])").map_err(|e| e.to_string())?;
    let Some(m) = re.captures(format) else {
        return Err(format!("format '{format}' has no integer conversion"));
    };
    let flags = m.get(1).map_or("", |x| x.as_str());
    let width: usize = m.get(2).and_then(|x| x.as_str().parse().ok()).unwrap_or(0);
    let body = match m.get(3).map_or("d", |x| x.as_str()) {
        "x" => format!("{:x}", i),
        "X" => format!("{:X}", i),
        "o" => format!("{:o}", i),
        _ => i.to_string(),
    };
    let padded = if flags.contains('-') {
        format!("{body:<width$}")
    } else if flags.contains('0') {
        let (sign, digits) = match body.strip_prefix('-') {
            Some(d) => ("-", d.to_string()),
            None => ("", body.clone()),
        };
        format!("{sign}{digits:0>w$}", w = width.saturating_sub(sign.len()))
    } else {
        format!("{body:>width$}")
    };
    let whole = m.get(0).map_or(0..0, |x| x.range());
    Ok(format!(
        "{}{}{}",
        &format[..whole.start],
        padded,
        &format[whole.end..]
    )
    .replace("%%", "%"))
}

/// `with_subelements: [list, 'key']` (`[list, 'key', {skip_missing: true}]`):
/// each element paired with each item of its `key` list.
fn subelements(terms: &[Value], opts: &mut Options) -> Result<Vec<Value>, Error> {
    let bad = |m: &str| lookup_error(format!("subelements lookup {m}"));
    if terms.len() < 2 || terms.len() > 3 {
        return Err(bad(
            "expects a list of two or three items: a list, a key and optional flags",
        ));
    }
    let mut skip_missing = opts.take_bool("skip_missing")?.unwrap_or(false);
    if let Some(flags) = terms.get(2) {
        if flags.kind() != ValueKind::Map {
            return Err(bad("expects a dictionary as its third item"));
        }
        for k in flags.try_iter()? {
            match k.as_str() {
                Some("skip_missing") => {
                    skip_missing = super::filters::to_bool(&flags.get_item(&k)?)
                }
                _ => return Err(bad(&format!("got an unknown flag {k}"))),
            }
        }
    }
    let key = terms[1]
        .as_str()
        .ok_or_else(|| bad("expects a key name (a string) as its second item"))?;
    let elements: Vec<Value> = match terms[0].kind() {
        ValueKind::Map => {
            let d = &terms[0];
            d.try_iter()?
                .map(|k| d.get_item(&k))
                .collect::<Result<_, _>>()?
        }
        _ if is_list(&terms[0]) => terms[0].try_iter()?.collect(),
        _ => return Err(bad("expects a list or a dict as its first item")),
    };
    let mut out = Vec::new();
    for e in elements {
        if e.kind() == ValueKind::Map && e.get_attr("skipped").is_ok_and(|s| s.is_true()) {
            continue;
        }
        let mut sub = e.clone();
        for part in key.split('.') {
            let next = sub.get_attr(part).ok().filter(|v| !v.is_undefined());
            match next {
                Some(v) => sub = v,
                None if skip_missing => {
                    sub = Value::UNDEFINED;
                    break;
                }
                None => {
                    return Err(bad(&format!(
                        "could not find '{key}' key in iterated item {}",
                        crate::template::py_repr(&e)
                    )));
                }
            }
        }
        if sub.is_undefined() {
            continue;
        }
        if !is_list(&sub) {
            return Err(bad(&format!("the key '{key}' should point to a list")));
        }
        // Ansible pops the list out of the element it pairs.
        let parts: Vec<&str> = key.split('.').collect();
        let element = without_path(&e, &parts)?;
        for s in sub.try_iter()? {
            out.push(Value::from(vec![element.clone(), s]));
        }
    }
    Ok(out)
}

/// `map` with the key at `path` removed (nested maps rebuilt).
fn without_path(map: &Value, path: &[&str]) -> Result<Value, Error> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(map.clone());
    };
    if map.kind() != ValueKind::Map {
        return Ok(map.clone());
    }
    let mut pairs = Vec::new();
    for k in map.try_iter()? {
        let v = map.get_item(&k)?;
        if k.as_str() == Some(first) {
            if rest.is_empty() {
                continue;
            }
            pairs.push((k, without_path(&v, rest)?));
        } else {
            pairs.push((k, v));
        }
    }
    Ok(Value::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn env() -> Environment<'static> {
        crate::template::environment()
    }

    #[test]
    fn munged_and_listed_results() {
        let e = env();
        let r = |s: &str| e.render_str(s, context! {}).unwrap();
        assert_eq!(r("{{ lookup('items', ['a', 'b']) }}"), "a,b");
        assert_eq!(r("{{ lookup('items', ['a']) }}"), "a");
        assert_eq!(r("{{ query('items', ['a']) }}"), "['a']");
        assert_eq!(r("{{ lookup('list', 1, 2, wantlist=True) }}"), "[1, 2]");
        assert_eq!(r("{{ lookup('items', [1, 2]) }}"), "[1, 2]");
    }

    #[test]
    fn sequences_as_ansible_formats_them() {
        let s = |t: &str| {
            sequence(t)
                .unwrap()
                .into_iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(s("start=1 end=3"), "1 2 3");
        assert_eq!(
            s("start=0 end=8 stride=4 format=host%02d"),
            "host00 host04 host08"
        );
        assert_eq!(s("4"), "1 2 3 4");
        assert_eq!(s("2-6/2:x%x"), "x2 x4 x6");
        assert_eq!(s("start=5 count=2"), "5 6");
        assert!(sequence("start=5 end=1").is_err());
    }

    #[test]
    fn unknown_and_unsupported_lookups_are_told_apart() {
        assert!(refusal("file").is_none());
        assert!(refusal("ansible.builtin.env").is_none());
        assert!(
            refusal("url")
                .unwrap()
                .contains("not supported yet by deployer")
        );
        let e = refusal("fiel").unwrap();
        assert!(
            e.contains("unknown lookup plugin 'fiel'") && e.contains("'file'"),
            "{e}"
        );
        assert!(
            refusal("community.general.onepassword")
                .unwrap()
                .contains("not supported yet")
        );
    }

    #[test]
    fn loops_pair_and_cross() {
        let e = env();
        let r = |s: &str| e.render_str(s, context! {}).unwrap();
        assert_eq!(
            r("{{ query('together', [1, 2, 3], ['a', 'b']) }}"),
            "[[1, 'a'], [2, 'b'], [3, None]]"
        );
        assert_eq!(
            r("{{ query('nested', [1, 2], ['a', 'b']) }}"),
            "[[1, 'a'], [1, 'b'], [2, 'a'], [2, 'b']]"
        );
        assert_eq!(
            r("{{ query('dict', {'a': 1}) }}"),
            "[{'key': 'a', 'value': 1}]"
        );
        assert_eq!(
            r("{{ query('indexed_items', ['x', 'y']) }}"),
            "[[0, 'x'], [1, 'y']]"
        );
        assert_eq!(
            r("{{ query('subelements', [{'n': 'u', 'k': [1, 2]}], 'k') | length }}"),
            "2"
        );
        assert!(
            e.render_str("{{ query('subelements', [{'n': 'u'}], 'k') }}", context! {})
                .is_err()
        );
        assert_eq!(
            r("{{ query('subelements', [{'n': 'u'}], 'k', {'skip_missing': True}) }}"),
            "[]"
        );
    }

    #[test]
    fn files_found_in_role_then_playbook_dir() {
        let dir = tempfile::tempdir().unwrap();
        let role = dir.path().join("roles/r");
        std::fs::create_dir_all(role.join("files")).unwrap();
        std::fs::create_dir_all(role.join("templates")).unwrap();
        std::fs::write(role.join("files/a.txt"), "role a\n\n").unwrap();
        std::fs::write(dir.path().join("b.txt"), "pb b").unwrap();
        std::fs::write(role.join("templates/t.j2"), "hi {{ who }}\n").unwrap();
        let e = env();
        let ctx = context! {
            role_path => role.display().to_string(),
            playbook_dir => dir.path().display().to_string(),
            who => "you",
        };
        let r = |s: &str| e.render_str(s, ctx.clone());
        assert_eq!(r("{{ lookup('file', 'a.txt') }}").unwrap(), "role a");
        assert_eq!(r("{{ lookup('file', 'b.txt') }}").unwrap(), "pb b");
        let err = crate::template::render_error_message(
            &r("{{ lookup('file', 'nope.txt') }}").unwrap_err(),
        );
        assert!(err.contains("could not find 'nope.txt'"), "{err}");
        assert_eq!(r("{{ lookup('template', 't.j2') }}").unwrap(), "hi you\n");
        assert!(
            r("{{ lookup('first_found', ['x', 'b.txt']) }}")
                .unwrap()
                .ends_with("/b.txt")
        );
        // lookup() looks in the roots themselves, with_first_found in files/.
        assert!(r("{{ lookup('first_found', ['a.txt']) }}").is_err());
        assert!(
            r("{{ __deployer_with('first_found', ['a.txt'], 'copy') | first }}")
                .unwrap()
                .ends_with("/files/a.txt")
        );
        assert!(r("{{ lookup('first_found', ['x', 'y']) }}").is_err());
        assert_eq!(
            r("{{ lookup('first_found', ['x'], skip=True) }}").unwrap(),
            ""
        );
        assert!(
            r("{{ query('fileglob', '*.txt') }}")
                .unwrap()
                .contains("a.txt")
        );
        assert_eq!(r("{{ lookup('pipe', 'echo hi; echo') }}").unwrap(), "hi");
        assert!(r("{{ lookup('pipe', 'exit 3') }}").is_err());
        assert_eq!(r("{{ lookup('vars', 'who') }}").unwrap(), "you");
        assert_eq!(r("{{ lookup('vars', 'x', default='d') }}").unwrap(), "d");
        assert_eq!(r("{{ query('varnames', '^wh') }}").unwrap(), "['who']");
        let pw_file = dir.path().join("creds/pw");
        let t = format!(
            "{{{{ lookup('password', '{} length=12') }}}}",
            pw_file.display()
        );
        let first = r(&t).unwrap();
        assert_eq!(first.len(), 12);
        assert_eq!(r(&t).unwrap(), first);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&pw_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "password file must be private");
    }
}
