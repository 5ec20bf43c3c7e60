//! `deployer lint`: one pass over an Ansible-layout project that reports every
//! problem it can find (it never stops at the first), with file:line:column.
//!
//! The YAML is walked with [`crate::yaml`] (the parser the engine uses), module
//! arguments are checked with the modules' own argument types, templates with
//! the engine's minijinja environment, and each playbook is also loaded by the
//! real loader ([`crate::project::load_playbook`]) so lint knows the project
//! exactly as `apply` does. No host is ever contacted.
//!
//! Rule families: [`yaml`] (syntax, tabs, truthy, octal modes), [`schema`]
//! (keywords, modules, arguments), [`references`] (roles, templates, files,
//! handlers, includes, variables, dependency cycles), [`conventions`] (the
//! spec's: FQCN, changed_when, pinned images, cap_drop, limits, healthchecks,
//! secrets, restarted compose projects) and [`templates`] (Jinja).

pub mod cli;
pub mod conventions;
pub mod output;
pub mod references;
pub mod schema;
pub mod templates;
pub mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::yaml::{Loc, Node};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem, at one place.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; 0 when the finding is about the whole file.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub col: usize,
    pub message: String,
    /// The source line, when there is one.
    pub snippet: Option<String>,
}

pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub rationale: &'static str,
}

const fn rule(id: &'static str, severity: Severity, rationale: &'static str) -> Rule {
    Rule {
        id,
        severity,
        rationale,
    }
}

use Severity::{Error as E, Warning as W};

/// Every rule: its id, default severity and why it exists.
pub const RULES: &[Rule] = &[
    rule(
        "file-unreadable",
        E,
        "a file lint cannot read cannot be applied either",
    ),
    rule(
        "file-binary",
        E,
        "a YAML file or template holding binary data is corrupt or misplaced",
    ),
    rule(
        "file-encoding",
        E,
        "Ansible and deployer read YAML and templates as UTF-8",
    ),
    rule(
        "yaml-syntax",
        E,
        "the file does not parse, so nothing in it can run",
    ),
    rule(
        "yaml-duplicate-key",
        E,
        "a duplicated key silently drops one of the values in Ansible",
    ),
    rule(
        "yaml-tabs",
        W,
        "tabs are not YAML indentation and read differently in different tools",
    ),
    rule(
        "yaml-truthy",
        W,
        "yes/no/on/off are booleans only in YAML 1.1; write true/false",
    ),
    rule(
        "yaml-octal-mode",
        E,
        "an unquoted mode is an integer: 644 is 0o1204, and 0644 depends on the YAML version; quote it",
    ),
    rule(
        "schema-play-keyword",
        E,
        "an unknown or unsupported play keyword would be refused at load time",
    ),
    rule(
        "schema-task-keyword",
        E,
        "an unknown or unsupported task keyword would be refused at load time",
    ),
    rule(
        "schema-unknown-module",
        E,
        "the module does not exist in deployer, so the task cannot run",
    ),
    rule(
        "schema-unsupported-module",
        E,
        "deployer knows this module but does not run it yet",
    ),
    rule(
        "module-other-os",
        W,
        "a package module of another operating system loads, but a host that reaches it fails the task: deployer does not run it yet",
    ),
    rule("schema-two-modules", E, "a task runs exactly one module"),
    rule(
        "schema-no-module",
        E,
        "a task that names no module does nothing and is refused",
    ),
    rule(
        "schema-unknown-arg",
        E,
        "the module has no such argument (a typo, or an unsupported option)",
    ),
    rule(
        "schema-missing-arg",
        E,
        "the module cannot run without this argument",
    ),
    rule(
        "schema-arg-type",
        E,
        "the argument's value has the wrong type for the module",
    ),
    rule(
        "schema-structure",
        E,
        "the file does not have the shape its place requires (a list of tasks, a mapping of vars, ...)",
    ),
    rule(
        "ref-role",
        E,
        "the role does not exist in any roles/ directory",
    ),
    rule(
        "ref-role-cycle",
        E,
        "role dependencies that loop can never be loaded",
    ),
    rule(
        "ref-template",
        E,
        "the template src does not exist where deployer looks for it",
    ),
    rule(
        "ref-file",
        E,
        "the copy src does not exist where deployer looks for it",
    ),
    rule(
        "ref-task-file",
        E,
        "the include_tasks/import_tasks target does not exist",
    ),
    rule("ref-vars-file", E, "the vars_files entry does not exist"),
    rule(
        "ref-handler-missing",
        E,
        "a notify that no handler answers to is an error before any host is touched",
    ),
    rule(
        "ref-handler-unused",
        W,
        "a handler that nothing notifies never runs",
    ),
    rule(
        "ref-undefined-var",
        E,
        "no inventory, default, vars, vars_files, set_fact, register or loop defines this variable",
    ),
    rule(
        "fqcn",
        E,
        "the spec's convention: modules by their fully qualified name (ansible.builtin.copy)",
    ),
    rule(
        "command-changed-when",
        E,
        "command/shell always report changed unless changed_when, creates or removes says when",
    ),
    rule(
        "image-pinned",
        E,
        "the spec's convention: images pinned to a version or digest, never latest/stable/untagged",
    ),
    rule(
        "image-not-locked",
        W,
        "with an images.lock, apply refuses an image that is not in it: run `deployer pin` after changing a version",
    ),
    rule(
        "compose-cap-drop",
        W,
        "the spec's convention: cap_drop: [ALL] on every compose service, capabilities added back one by one",
    ),
    rule(
        "compose-mem-limit",
        W,
        "the spec's convention: every compose service has a memory limit",
    ),
    rule(
        "compose-healthcheck",
        W,
        "the spec's convention: every compose service has a healthcheck",
    ),
    rule(
        "plaintext-secret",
        E,
        "secrets come from the vault (!vault or a vault-backed variable), never a literal in a tracked file",
    ),
    rule(
        "compose-restarted-env",
        E,
        "state: restarted does not reload env_file: use state: present with recreate: always",
    ),
    rule(
        "jinja-syntax",
        E,
        "the template or expression does not compile",
    ),
    rule(
        "jinja-unknown-filter",
        E,
        "deployer does not implement this filter",
    ),
    rule(
        "jinja-unknown-test",
        E,
        "deployer does not implement this test",
    ),
    rule(
        "jinja-unknown-lookup",
        E,
        "a lookup()/query() plugin Ansible does not have, or deployer does not run yet",
    ),
    rule(
        "jinja-unsupported-var",
        E,
        "a template variable Ansible's template module sets that deployer does not provide yet",
    ),
    rule(
        "load-error",
        E,
        "the engine's own loader refuses the playbook (a problem lint's rules do not model)",
    ),
    rule("inventory-load", E, "the inventory does not load"),
    rule(
        "vault-decrypt",
        E,
        "(check/plan/apply/rollback only) a vault value or file the run needs is damaged, or does not decrypt with the passwords given",
    ),
    rule(
        "lint-ignore-reason",
        E,
        "a silenced finding must say why (`# deployer-lint: ignore[rule] reason`)",
    ),
    rule(
        "lint-ignore-unknown",
        W,
        "the ignore comment names a rule that does not exist",
    ),
];

pub fn rule_info(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// What lint reads and the project it belongs to.
#[derive(Debug, Default, Clone)]
pub struct Target {
    /// The project root: `roles/` and `playbooks/` are looked up from here.
    pub root: PathBuf,
    /// Files to lint (YAML and templates; others are checked for references only).
    pub files: Vec<PathBuf>,
    /// Inventories to load (`-i`, or `inventory/` when present).
    pub inventories: Vec<PathBuf>,
}

/// What the pass learns while walking, for the checks that need the whole project.
#[derive(Default)]
pub struct Knowledge {
    /// Every variable name something could define.
    pub defined: HashSet<String>,
    /// Literal values of variables (for resolving `image: x:{{ tag }}`).
    pub values: HashMap<String, Node>,
    /// Variable uses: name, where, and the source text (for `is defined` guards).
    pub uses: Vec<(String, Loc)>,
    /// Handlers: name (and where), and the topics they listen to.
    pub handlers: Vec<HandlerDef>,
    /// Notified names.
    pub notified: Vec<(String, Loc)>,
    /// A whole-file vault vars file exists: its names are unknown.
    pub has_vault_file: bool,
    /// Role name -> (dependencies with their locations).
    pub role_deps: BTreeMap<String, Vec<(String, Loc)>>,
    /// Roles that template a `.env` file, by role directory.
    pub env_templating_roles: HashSet<PathBuf>,
    /// Compose tasks with `state: restarted`, by role directory or playbook.
    pub restarted_compose: Vec<(PathBuf, Loc)>,
    /// Images named in compose files and docker tasks, checked once all values are known.
    pub images: Vec<(String, Loc)>,
    /// Literal values of secret-named variables: never printed (findings
    /// show the key and `********`).
    pub secret_values: Vec<String>,
    /// An `include_vars` whose names cannot be known before the run (a
    /// directory, a templated or vault-encrypted file): any name may come
    /// from it, so no variable is reported as defined nowhere.
    pub names_unknown: bool,
    /// The images of the project's `images.lock` (None: there is none).
    pub locked_images: Option<std::collections::BTreeSet<String>>,
    /// `images.lock` could not be read: the message, reported once.
    pub lock_error: Option<(Loc, String)>,
}

#[derive(Clone, Debug)]
pub struct HandlerDef {
    pub name: Option<String>,
    pub topics: Vec<String>,
    pub loc: Loc,
}

pub struct Linter {
    pub findings: Vec<Finding>,
    pub know: Knowledge,
    pub env: minijinja::Environment<'static>,
    filter_known: HashMap<String, bool>,
    test_known: HashMap<String, bool>,
    /// Source text by file, for snippets and ignore comments.
    sources: HashMap<PathBuf, String>,
    /// Where relative display paths are relative to.
    display_base: PathBuf,
}

impl Default for Linter {
    fn default() -> Self {
        Linter::new()
    }
}

impl Linter {
    pub fn new() -> Linter {
        Linter {
            findings: Vec::new(),
            know: Knowledge::default(),
            env: crate::template::environment(),
            filter_known: HashMap::new(),
            test_known: HashMap::new(),
            sources: HashMap::new(),
            display_base: std::env::current_dir().unwrap_or_default(),
        }
    }

    /// Reports a finding for `rule` at `loc` (rule ids are from [`RULES`]).
    pub fn report(&mut self, rule: &'static str, loc: &Loc, message: impl Into<String>) {
        let severity = rule_info(rule)
            .map(|r| r.severity)
            .unwrap_or(Severity::Error);
        self.findings.push(Finding {
            rule,
            severity,
            file: loc.file.as_ref().clone(),
            line: loc.line,
            col: if loc.line == 0 { 0 } else { loc.col + 1 },
            message: message.into(),
            snippet: None,
        });
    }

    pub fn report_at(
        &mut self,
        rule: &'static str,
        file: &Path,
        line: usize,
        col: usize,
        msg: impl Into<String>,
    ) {
        let loc = Loc::new(file, line, col.saturating_sub(1));
        self.report(rule, &loc, msg);
        if col == 0
            && let Some(f) = self.findings.last_mut()
        {
            f.col = 0;
        }
    }

    pub fn remember_source(&mut self, file: &Path, text: &str) {
        self.sources.insert(file.to_path_buf(), text.to_string());
    }

    /// Line `line` (1-based) of a file already read.
    pub fn source_line(&self, file: &Path, line: usize) -> Option<&str> {
        self.sources.get(file)?.lines().nth(line.checked_sub(1)?)
    }

    /// Is `name` a filter the environment knows? (probed once per name)
    pub fn filter_exists(&mut self, name: &str) -> bool {
        if let Some(k) = self.filter_known.get(name) {
            return *k;
        }
        let known = match self.env.render_str(&format!("{{{{ 1 | {name} }}}}"), ()) {
            Err(e) => e.kind() != minijinja::ErrorKind::UnknownFilter,
            Ok(_) => true,
        };
        self.filter_known.insert(name.to_string(), known);
        known
    }

    pub fn test_exists(&mut self, name: &str) -> bool {
        if let Some(k) = self.test_known.get(name) {
            return *k;
        }
        let known = match self.env.render_str(&format!("{{{{ 1 is {name} }}}}"), ()) {
            Err(e) => e.kind() != minijinja::ErrorKind::UnknownTest,
            Ok(_) => true,
        };
        self.test_known.insert(name.to_string(), known);
        known
    }

    /// Runs every rule on the target and returns the findings, sorted, with
    /// snippets, ignore comments applied.
    pub fn run(mut self, target: &Target) -> Vec<Finding> {
        let mut project = schema::Project::discover(target);
        for f in &target.files {
            self.lint_file(f, &mut project);
        }
        for inv in &target.inventories {
            references::load_inventory(&mut self, inv);
        }
        references::finish(&mut self, &project);
        match crate::project::images_lock::ImagesLock::load(&target.root) {
            Ok(lock) => {
                self.know.locked_images = lock.map(|l| l.images.into_keys().collect());
            }
            Err(e) => self.know.lock_error = Some((e.loc.clone(), e.msg.clone())),
        }
        conventions::finish(&mut self);
        // The real loader: what it refuses that the rules above did not catch.
        let own_errors = self.findings.iter().any(|f| f.severity == Severity::Error);
        if !own_errors {
            for pb in &project.playbooks {
                if let Err(e) =
                    crate::project::load_playbook(pb, &crate::modules::registry::Registry)
                {
                    self.report("load-error", &e.loc, e.msg);
                }
            }
        }
        self.finalize()
    }

    fn lint_file(&mut self, path: &Path, project: &mut schema::Project) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_yaml = name.ends_with(".yml") || name.ends_with(".yaml");
        let is_j2 = name.ends_with(".j2");
        let in_files_dir = path.components().any(|c| c.as_os_str() == "files");
        if !is_yaml && !is_j2 {
            // Only YAML and templates are parsed; static files may be anything.
            return;
        }
        if in_files_dir && !is_yaml {
            return;
        }
        let Some(text) = yaml::read_text(self, path) else {
            return;
        };
        self.remember_source(path, &text);
        if crate::vault::is_encrypted(text.as_bytes()) {
            // A whole-file vault: its names are unknown until decrypted.
            self.know.has_vault_file = true;
            return;
        }
        if is_yaml {
            let Some(node) = yaml::check_yaml_text(self, path, &text) else {
                return;
            };
            schema::lint_yaml_file(self, project, path, &node);
            if conventions::is_compose_file(name) {
                conventions::check_compose(self, path, &node);
            }
        } else {
            templates::check_template_file(self, path, &text);
            if conventions::is_compose_file(name) {
                conventions::check_compose_template(self, path, &text);
            }
            if name.ends_with(".env.j2") || name == ".env.j2" || name == "env.j2" {
                conventions::check_env_template(self, path, &text);
            }
        }
    }

    /// Sorts, deduplicates, attaches snippets, and applies ignore comments.
    fn finalize(mut self) -> Vec<Finding> {
        let mut findings = std::mem::take(&mut self.findings);
        // Sources of files only reported on (the loader's files).
        for f in &findings {
            if !self.sources.contains_key(&f.file)
                && let Ok(t) = std::fs::read_to_string(&f.file)
            {
                self.sources.insert(f.file.clone(), t);
            }
        }
        let mut extra = Vec::new();
        let mut ignores: HashMap<PathBuf, Ignores> = HashMap::new();
        for (file, text) in &self.sources {
            let ig = parse_ignores(file, text, &mut extra);
            ignores.insert(file.clone(), ig);
        }
        findings.retain(|f| {
            let Some(ig) = ignores.get(&f.file) else {
                return true;
            };
            !ig.silences(f.rule, f.line)
        });
        findings.extend(extra);
        let mut secrets: Vec<&str> = self
            .know
            .secret_values
            .iter()
            .flat_map(|v| v.lines())
            .map(str::trim)
            .filter(|v| v.len() >= 3)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let hide = |text: &str| -> String {
            let mut t = crate::secrets::mask(text);
            for v in &secrets {
                t = t.replace(v, "********");
            }
            t
        };
        for f in &mut findings {
            if f.line > 0
                && let Some(t) = self.sources.get(&f.file)
            {
                f.snippet = t.lines().nth(f.line - 1).map(|l| {
                    if f.rule == "plaintext-secret" {
                        mask_secret_line(l, f.col)
                    } else {
                        l.to_string()
                    }
                });
            }
            f.snippet = f.snippet.as_deref().map(&hide);
            f.message = hide(&f.message);
            f.file = display_path(&self.display_base, &f.file);
        }
        findings.sort_by(|a, b| {
            (&a.file, a.line, a.col, a.rule).cmp(&(&b.file, b.line, b.col, b.rule))
        });
        findings.dedup_by(|a, b| {
            a.file == b.file && a.line == b.line && a.rule == b.rule && a.message == b.message
        });
        findings
    }
}

/// The source line of a plaintext secret: the key stays, the value is masked.
/// `col` (1-based) is where the value starts; at column 1 (an env file line)
/// the value is what follows the first `=` or `:`.
fn mask_secret_line(line: &str, col: usize) -> String {
    let cut = if col > 1 && col - 1 < line.len() && line.is_char_boundary(col - 1) {
        Some(col - 1)
    } else {
        line.find(['=', ':']).map(|p| p + 1)
    };
    match cut {
        Some(c) => {
            let (key, value) = line.split_at(c);
            let lead = &value[..value.len() - value.trim_start().len()];
            format!("{key}{lead}********")
        }
        None => "********".to_string(),
    }
}

fn display_path(base: &Path, p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    match abs.strip_prefix(base) {
        Ok(r) => r.to_path_buf(),
        Err(_) => p.to_path_buf(),
    }
}

#[derive(Default)]
struct Ignores {
    file: HashSet<String>,
    /// line -> rules silenced on that line and the next.
    lines: HashMap<usize, HashSet<String>>,
}

impl Ignores {
    fn silences(&self, rule: &str, line: usize) -> bool {
        if self.file.contains(rule) {
            return true;
        }
        let on = |l: usize| self.lines.get(&l).is_some_and(|s| s.contains(rule));
        on(line) || (line > 1 && on(line - 1))
    }
}

const IGNORE_MARK: &str = "deployer-lint:";

/// `# deployer-lint: ignore[rule-a,rule-b] reason` and `ignore-file[...]`.
fn parse_ignores(file: &Path, text: &str, extra: &mut Vec<Finding>) -> Ignores {
    let mut ig = Ignores::default();
    for (i, line) in text.lines().enumerate() {
        let Some(pos) = line.find(IGNORE_MARK) else {
            continue;
        };
        let rest = line[pos + IGNORE_MARK.len()..].trim_start();
        let (whole_file, rest) = if let Some(r) = rest.strip_prefix("ignore-file[") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix("ignore[") {
            (false, r)
        } else {
            continue;
        };
        let Some(end) = rest.find(']') else {
            continue;
        };
        let ids: Vec<&str> = rest[..end]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let reason = rest[end + 1..]
            .trim()
            .trim_end_matches("#}")
            .trim_end_matches("-->")
            .trim();
        let mk = |rule: &'static str, msg: String| Finding {
            rule,
            severity: rule_info(rule)
                .map(|r| r.severity)
                .unwrap_or(Severity::Error),
            file: file.to_path_buf(),
            line: i + 1,
            col: pos + 1,
            message: msg,
            snippet: Some(line.to_string()),
        };
        if reason.is_empty() {
            extra.push(mk(
                "lint-ignore-reason",
                format!(
                    "this ignore comment gives no reason, so it silences nothing: write `{IGNORE_MARK} ignore[{}] <why>`",
                    ids.join(",")
                ),
            ));
            continue;
        }
        for id in ids {
            if rule_info(id).is_none() {
                extra.push(mk(
                    "lint-ignore-unknown",
                    format!("no lint rule is called '{id}'"),
                ));
                continue;
            }
            if whole_file {
                ig.file.insert(id.to_string());
            } else {
                ig.lines.entry(i + 1).or_default().insert(id.to_string());
            }
        }
    }
    ig
}

/// The files `deployer lint` reads when given no paths: the project in `root`.
pub fn default_target(root: &Path, inventories: &[PathBuf]) -> Target {
    let mut t = Target {
        root: root.to_path_buf(),
        ..Default::default()
    };
    for d in [
        "playbooks",
        "roles",
        "inventory",
        "inventories",
        "group_vars",
        "host_vars",
    ] {
        let p = root.join(d);
        if p.is_dir() {
            walk(&p, &mut t.files);
        }
    }
    // Playbooks at the top (site.yml) count too.
    let dir = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut top: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|e| e == "yml" || e == "yaml")
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        top.sort();
        t.files.extend(top.into_iter().map(|p| {
            if root.as_os_str().is_empty() {
                p.strip_prefix(".").map(Path::to_path_buf).unwrap_or(p)
            } else {
                p
            }
        }));
    }
    for d in ["inventory", "inventories"] {
        let p = root.join(d);
        if p.is_dir() && inventories.is_empty() && d == "inventory" {
            t.inventories.push(p);
        }
    }
    t.inventories.extend(inventories.iter().cloned());
    t
}

/// A target from explicit paths: directories that look like a project are
/// linted as one; other directories and files are linted as given.
pub fn target_for(paths: &[PathBuf], inventories: &[PathBuf]) -> Vec<Target> {
    let mut out = Vec::new();
    let mut loose = Target::default();
    for p in paths {
        if p.is_dir()
            && ["playbooks", "roles", "inventory"]
                .iter()
                .any(|d| p.join(d).is_dir())
        {
            out.push(default_target(p, &[]));
        } else if p.is_dir() {
            walk(p, &mut loose.files);
            if loose.root.as_os_str().is_empty() {
                loose.root = project_root_of(p);
            }
        } else {
            loose.files.push(p.clone());
            if loose.root.as_os_str().is_empty() {
                loose.root = project_root_of(p);
            }
        }
    }
    if !loose.files.is_empty() {
        out.push(loose);
    }
    if let Some(first) = out.first_mut() {
        first.inventories.extend(inventories.iter().cloned());
    } else if !inventories.is_empty() {
        out.push(Target {
            root: PathBuf::from("."),
            files: Vec::new(),
            inventories: inventories.to_vec(),
        });
    }
    out
}

/// The nearest ancestor with `roles/` or `playbooks/`, else the path's directory.
fn project_root_of(p: &Path) -> PathBuf {
    let start = if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut cur = Some(start.as_path());
    while let Some(d) = cur {
        let d2 = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        if d2.join("roles").is_dir() || d2.join("playbooks").is_dir() {
            return d2.to_path_buf();
        }
        cur = d.parent();
    }
    start
}

/// Files under `dir`, sorted, skipping hidden entries and build output.
/// Symbolic links are followed only within the project that holds `dir`
/// (the nearest ancestor with `roles/` or `playbooks/`): never out of it, and
/// never back into a directory already walked (a role linking to its parent,
/// as molecule layouts do, would otherwise be walked again and again).
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let root = project_root_of(dir);
    let root = root.canonicalize().unwrap_or(root);
    let mut seen = HashSet::new();
    if let Ok(c) = dir.canonicalize() {
        seen.insert(c);
    }
    walk_in(&root, dir, out, &mut seen);
}

fn walk_in(root: &Path, dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') && !name.starts_with(".env") {
            continue;
        }
        if name == "target" || name == "node_modules" {
            continue;
        }
        let is_link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            // Out of the project, or dangling: not ours to read.
            match p.canonicalize() {
                Ok(real) if real.starts_with(root) => {}
                _ => continue,
            }
        }
        if p.is_dir() {
            let real = p.canonicalize().unwrap_or_else(|_| p.clone());
            if !seen.insert(real) {
                continue;
            }
            walk_in(root, &p, out, seen);
        } else {
            out.push(p);
        }
    }
}

/// Lints the targets and returns all findings.
pub fn lint(targets: &[Target]) -> Vec<Finding> {
    let mut all = Vec::new();
    for t in targets {
        all.extend(Linter::new().run(t));
    }
    all
}

#[cfg(test)]
mod tests;
