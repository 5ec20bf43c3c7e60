//! The pre-flight: what `check`, `plan`, `apply` and `rollback` validate
//! before opening any connection. It is `deployer lint`'s error rules (the
//! same code: [`crate::lint::Linter`], so module arguments come from the
//! module registry, templates from the engine's Jinja environment, references
//! from the same lookups) on the files the run uses, plus the vault: every
//! vault-encrypted vars file must decrypt with the passwords given, and every
//! vault value (inline or whole file) must be intact and, when a password is
//! given, decrypt with it. Every problem is reported at once, with
//! file:line:column; the run then exits 1 having contacted no host.
//!
//! The spec's conventions (`fqcn`, `command-changed-when`, `image-pinned`,
//! `plaintext-secret`, ...) are lint's business, not the run's: they never
//! stop a run. Findings in files the run does not use (another playbook, a
//! role no play reaches, an inventory not given with `-i`) are not reported.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::lint::{self, Finding, Severity};
use crate::yaml::{Node, Yaml};

/// Lint rules that describe the project's conventions rather than something
/// the run cannot do: the pre-flight does not stop a run for them.
pub const CONVENTION_RULES: &[&str] = &[
    "fqcn",
    "command-changed-when",
    "image-pinned",
    "plaintext-secret",
    "compose-restarted-env",
    "yaml-octal-mode",
    "lint-ignore-reason",
    "lint-ignore-unknown",
];

/// What a run is about to use.
pub struct RunInput<'a> {
    /// The playbook (`None` for `rollback`, which runs no playbook).
    pub playbook: Option<&'a Path>,
    /// `-i` inventories.
    pub inventories: &'a [PathBuf],
    /// Names given with `-e` (they count as defined).
    pub extra_var_names: Vec<String>,
    pub passwords: Option<&'a crate::vault::VaultPasswords>,
}

/// The project root of a playbook: its directory, or the parent of a
/// `playbooks/` directory.
fn project_root(playbook: &Path) -> PathBuf {
    let dir = playbook
        .parent()
        .map(Path::to_path_buf)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    if dir.file_name().is_some_and(|n| n == "playbooks")
        && let Some(p) = dir.parent()
    {
        return if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        };
    }
    dir
}

fn canon(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// The role directory holding `file` (an ancestor whose parent is `roles`).
fn role_dir_of(file: &Path) -> Option<PathBuf> {
    let mut cur = file.parent();
    while let Some(d) = cur {
        if d.parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "roles")
        {
            return Some(d.to_path_buf());
        }
        cur = d.parent();
    }
    None
}

/// Every error the run can know without a host. Empty: go ahead.
pub fn check(input: &RunInput) -> Vec<Finding> {
    check_deferring(input).0
}

/// [`check`], and apart the findings in a role's task files that no task
/// of the loaded play comes from: files only an `include_tasks` reads (a
/// templated name such as `setup-{{ ansible_os_family }}.yml`, or a fixed
/// one under a `when`). Ansible reads those when the include runs, so a
/// file for another distribution never stops a run; deployer says what it
/// found in them (warnings) and fails the include, if it runs, with the
/// same error.
pub fn check_deferring(input: &RunInput) -> (Vec<Finding>, Vec<Finding>) {
    let (findings, deferred, _) = check_and_load(input);
    (findings, deferred)
}

/// [`check_deferring`], and the playbook as the check loaded it (to find the
/// files the run uses) when it loads: the run uses it rather than loading
/// the same files again.
pub fn check_and_load(
    input: &RunInput,
) -> (Vec<Finding>, Vec<Finding>, Option<crate::project::Playbook>) {
    let mut loaded = None;
    let mut findings = Vec::new();
    let mut deferred = Vec::new();
    let root = input
        .playbook
        .map(project_root)
        .unwrap_or_else(|| PathBuf::from("."));
    let inventories: Vec<PathBuf> = input
        .inventories
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect();
    if let Some(pb) = input.playbook {
        let mut target = lint::default_target(&root, &inventories);
        // A playbook's own templates/, files/, tasks/ and vars/ (no role).
        for d in ["templates", "files", "tasks", "vars", "handlers"] {
            let dir = root.join(d);
            if dir.is_dir() {
                lint::walk(&dir, &mut target.files);
            }
        }
        if !target.files.iter().any(|f| canon(f) == canon(pb)) {
            target.files.push(pb.to_path_buf());
        }
        let mut linter = lint::Linter::new();
        linter
            .know
            .defined
            .extend(input.extra_var_names.iter().cloned());
        // Whole-file vaults of variables: their names count as defined when
        // they decrypt; when they cannot be read (no password), any name may
        // come from them, so undefined names are not judged.
        let (vault_names, unreadable_vault) = whole_file_vault_names(input, &root);
        linter.know.defined.extend(vault_names);
        let all = linter.run(&target);
        let (used, book) = Used::of(pb, &root, &inventories);
        loaded = book;
        for f in all {
            if (unreadable_vault && f.rule == "ref-undefined-var")
                || f.severity != Severity::Error
                || CONVENTION_RULES.contains(&f.rule)
                || !used.keeps(&f.file)
            {
                continue;
            }
            if used.only_included(&f.file) {
                deferred.push(f);
            } else {
                findings.push(f);
            }
        }
    }
    if input.playbook.is_none() && !inventories.is_empty() {
        // `rollback` runs no playbook: its inventories (with their
        // group_vars/ and host_vars/) are what it loads.
        let mut target = lint::Target {
            root: root.clone(),
            files: Vec::new(),
            inventories: inventories.clone(),
        };
        for inv in &inventories {
            if inv.is_dir() {
                lint::walk(inv, &mut target.files);
            } else {
                target.files.push(inv.clone());
                if let Some(d) = inv.parent() {
                    for v in ["group_vars", "host_vars"] {
                        lint::walk(&d.join(v), &mut target.files);
                    }
                }
            }
        }
        let all = lint::Linter::new().run(&target);
        findings.extend(all.into_iter().filter(|f| {
            f.severity == Severity::Error
                && !CONVENTION_RULES.contains(&f.rule)
                // Names used in the inventory may come from a playbook's
                // vars; the rollback templates none of them but the
                // connection settings, checked per host.
                && f.rule != "ref-undefined-var"
        }));
    }
    findings.extend(vault_findings(input, &root));
    findings
        .sort_by(|a, b| (&a.file, a.line, a.col, a.rule).cmp(&(&b.file, b.line, b.col, b.rule)));
    findings.dedup_by(|a, b| a.file == b.file && a.line == b.line && a.message == b.message);
    deferred
        .sort_by(|a, b| (&a.file, a.line, a.col, a.rule).cmp(&(&b.file, b.line, b.col, b.rule)));
    deferred.dedup_by(|a, b| a.file == b.file && a.line == b.line && a.message == b.message);
    (findings, deferred, loaded)
}

/// Which files the run uses, to keep only findings about them.
struct Used {
    /// Role directories the loaded playbook reaches (`None`: unknown, the
    /// playbook does not load, so every role counts).
    roles: Option<HashSet<PathBuf>>,
    /// Playbook files (the playbook and what it imports).
    playbooks: HashSet<PathBuf>,
    /// The files the loaded play's tasks come from (`None`: the playbook
    /// does not load).
    task_files: Option<HashSet<PathBuf>>,
    root: PathBuf,
    inventories: Vec<PathBuf>,
}

impl Used {
    /// The files `pb` uses, and the playbook when it loads.
    fn of(
        pb: &Path,
        root: &Path,
        inventories: &[PathBuf],
    ) -> (Used, Option<crate::project::Playbook>) {
        let mut playbooks = HashSet::from([canon(pb)]);
        let mut task_files = None;
        let mut loaded = None;
        let roles = match crate::project::load_playbook(pb, &crate::modules::registry::Registry) {
            Ok(book) => {
                let mut roles = HashSet::new();
                let mut files = HashSet::new();
                for play in &book.plays {
                    playbooks.insert(canon(&play.loc.file));
                    let tasks = play.tasks.iter().chain(play.handlers.iter());
                    let all: Vec<_> = tasks.cloned().collect();
                    for t in crate::project::flatten_tasks(&all) {
                        files.insert(canon(&t.loc.file));
                        if let Some(r) = role_dir_of(&t.loc.file) {
                            roles.insert(canon(&r));
                        }
                    }
                    // Files that are only included (their tasks are not
                    // the play's until the include runs) still make their
                    // role used.
                    for t in all.iter().flat_map(dynamic_files) {
                        if let Some(r) = role_dir_of(&t) {
                            roles.insert(canon(&r));
                        }
                    }
                }
                task_files = Some(files);
                loaded = Some(book);
                Some(roles)
            }
            Err(_) => None,
        };
        let used = Used {
            roles,
            playbooks,
            task_files,
            root: canon(root),
            inventories: inventories
                .iter()
                .flat_map(|p| {
                    // An inventory file's group_vars/ and host_vars/ are its own.
                    let mut v = vec![canon(p)];
                    if p.is_file()
                        && let Some(d) = p.parent()
                    {
                        v.push(canon(&d.join("group_vars")));
                        v.push(canon(&d.join("host_vars")));
                    }
                    v
                })
                .collect(),
        };
        (used, loaded)
    }

    /// A task file of a role that no task of the loaded play comes from:
    /// read only if an include reaches it.
    fn only_included(&self, file: &Path) -> bool {
        let f = canon(file);
        let Some(files) = &self.task_files else {
            return false;
        };
        let Some(role) = role_dir_of(&f) else {
            return false;
        };
        let in_tasks = ["tasks", "handlers"]
            .iter()
            .any(|d| f.starts_with(canon(&role).join(d)));
        in_tasks && !files.contains(&f)
    }

    fn keeps(&self, file: &Path) -> bool {
        let f = canon(file);
        if self.playbooks.contains(&f) || self.inventories.iter().any(|i| f.starts_with(i)) {
            return true;
        }
        if let Some(r) = role_dir_of(&f) {
            return self.roles.as_ref().is_none_or(|roles| roles.contains(&r));
        }
        let Ok(rel) = f.strip_prefix(&self.root) else {
            // Outside the project (a vars file given by path): used.
            return true;
        };
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        match first.as_str() {
            // Inventories not given with -i are not this run's.
            "inventory" | "inventories" => false,
            // Other playbooks are not this run's.
            "playbooks" => rel.components().count() > 2,
            _ => {
                let top_level_yaml = rel.components().count() == 1
                    && rel.extension().is_some_and(|e| e == "yml" || e == "yaml");
                !top_level_yaml
            }
        }
    }
}

/// The files of the include choices under a task (blocks opened up).
fn dynamic_files(t: &crate::project::Task) -> Vec<PathBuf> {
    use crate::project::TaskKind;
    match &t.kind {
        TaskKind::Block {
            block,
            rescue,
            always,
        } => block
            .iter()
            .chain(rescue)
            .chain(always)
            .flat_map(dynamic_files)
            .collect(),
        TaskKind::IncludeTasks { tasks, dynamic, .. } => {
            let mut out: Vec<PathBuf> = tasks.iter().flatten().flat_map(dynamic_files).collect();
            for d in dynamic {
                for inner in d.tasks.iter().flatten() {
                    out.push(inner.loc.file.to_path_buf());
                    out.extend(dynamic_files(inner));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Vault material the run may need: whole-file vaults among the vars files
/// and inline `!vault` values, in the inventories, `group_vars/`, `host_vars/`,
/// the playbook's `vars_files` and the roles' `vars/` and `defaults/`.
fn vault_findings(input: &RunInput, root: &Path) -> Vec<Finding> {
    let mut files: Vec<PathBuf> = Vec::new();
    for inv in input.inventories {
        if inv.is_dir() {
            lint::walk(inv, &mut files);
        } else {
            files.push(inv.clone());
            if let Some(d) = inv.parent() {
                for v in ["group_vars", "host_vars"] {
                    lint::walk(&d.join(v), &mut files);
                }
            }
        }
    }
    let mut used_roles: Option<HashSet<PathBuf>> = None;
    if let Some(pb) = input.playbook {
        let pb_dir = pb.parent().unwrap_or(Path::new("."));
        for v in ["group_vars", "host_vars"] {
            lint::walk(&pb_dir.join(v), &mut files);
        }
        if let Ok(book) = crate::project::load_playbook(pb, &crate::modules::registry::Registry) {
            let mut roles = HashSet::new();
            for play in &book.plays {
                for (vf, _) in &play.vars_files {
                    if !vf.contains("{{") {
                        files.push(play.base_dir.join(vf));
                    }
                }
                let all: Vec<_> = play
                    .tasks
                    .iter()
                    .chain(play.handlers.iter())
                    .cloned()
                    .collect();
                for t in crate::project::flatten_tasks(&all) {
                    if let Some(r) = role_dir_of(&t.loc.file) {
                        roles.insert(r);
                    }
                }
            }
            used_roles = Some(roles);
        }
    }
    for r in used_roles.into_iter().flatten() {
        for d in ["vars", "defaults"] {
            lint::walk(&r.join(d), &mut files);
        }
    }
    let _ = root;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for f in files {
        if !seen.insert(canon(&f)) {
            continue;
        }
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_yaml = name.ends_with(".yml") || name.ends_with(".yaml") || !name.contains('.');
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        if crate::vault::is_encrypted(&bytes) {
            // A whole vault file of variables: Ansible decrypts it when it
            // loads the vars, so a password is required.
            if let Some(msg) =
                vault_problem(&bytes, input.passwords, &f.display().to_string(), true)
            {
                out.push(vault_finding(&f, 1, 1, msg));
            }
            continue;
        }
        if !is_yaml {
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if !text.contains("!vault") {
            continue;
        }
        let Ok(node) = crate::yaml::parse_str(&text, &f) else {
            continue;
        };
        let mut inline = Vec::new();
        collect_vault(&node, &mut inline);
        for n in inline {
            let Yaml::Vault(cipher) = &n.value else {
                continue;
            };
            let origin = format!("{}:{}", f.display(), n.loc.line);
            if let Some(msg) =
                vault_problem(cipher.trim().as_bytes(), input.passwords, &origin, false)
            {
                out.push(vault_finding(&f, n.loc.line, n.loc.col + 1, msg));
            }
        }
    }
    out
}

/// Names defined by whole-file vault vars files next to the inventories and
/// the playbook, and whether one of them could not be decrypted.
fn whole_file_vault_names(input: &RunInput, root: &Path) -> (Vec<String>, bool) {
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for inv in input.inventories {
        let d = if inv.is_dir() {
            Some(inv.as_path())
        } else {
            inv.parent()
        };
        if let Some(d) = d {
            dirs.push(d.join("group_vars"));
            dirs.push(d.join("host_vars"));
        }
    }
    dirs.push(root.join("group_vars"));
    dirs.push(root.join("host_vars"));
    if let Some(pb) = input.playbook.and_then(Path::parent) {
        dirs.push(pb.join("group_vars"));
        dirs.push(pb.join("host_vars"));
        dirs.push(pb.join("vars"));
    }
    for d in dirs {
        lint::walk(&d, &mut files);
    }
    let (mut names, mut unreadable) = (Vec::new(), false);
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        if !crate::vault::is_encrypted(&bytes) {
            continue;
        }
        let plain = input
            .passwords
            .and_then(|pw| crate::vault::decrypt(&bytes, pw, &f.display().to_string()).ok());
        let node = plain
            .and_then(|p| String::from_utf8(p).ok())
            .and_then(|t| crate::yaml::parse_str(&t, &f).ok());
        match node.as_ref().and_then(|n| n.as_map()) {
            Some(m) => names.extend(m.iter().filter_map(|(k, _)| k.as_str().map(str::to_string))),
            None => unreadable = true,
        }
    }
    (names, unreadable)
}

fn collect_vault<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    match &n.value {
        Yaml::Vault(_) => out.push(n),
        Yaml::Seq(items) => items.iter().for_each(|i| collect_vault(i, out)),
        Yaml::Map(m) => m.iter().for_each(|(_, v)| collect_vault(v, out)),
        _ => {}
    }
}

/// Why a vault blob cannot be used, if it cannot. Without a password, a
/// vault (inline value or whole vars file) is only checked for its format:
/// it is decrypted when a variable of it is used, and a run that uses none
/// needs no password.
fn vault_problem(
    data: &[u8],
    passwords: Option<&crate::vault::VaultPasswords>,
    origin: &str,
    whole_file: bool,
) -> Option<String> {
    if let Err(e) = crate::vault::parse(data, origin) {
        return Some(crate::secrets::mask(&e.to_string()));
    }
    let _ = whole_file;
    match passwords {
        // Decrypted when used (a run that uses no secret needs no password).
        None => None,
        Some(pw) => crate::vault::decrypt(data, pw, origin)
            .err()
            .map(|e| crate::secrets::mask(&e.to_string())),
    }
}

fn vault_finding(file: &Path, line: usize, col: usize, message: String) -> Finding {
    Finding {
        rule: "vault-decrypt",
        severity: Severity::Error,
        file: file.to_path_buf(),
        line,
        col,
        message,
        snippet: None,
    }
}

/// Prints the findings (stderr) the way `deployer lint` does, and the verdict.
pub fn report(findings: &[Finding]) {
    let mut text = lint::output::human(findings);
    // lint's summary line, said for a run.
    if let Some(p) = text.rfind("deployer lint:") {
        text.truncate(p);
    }
    eprint!("{}", crate::secrets::mask(&text));
}

/// Prints (stderr) what the pre-flight found in task files only an include
/// reads: they do not stop the run.
pub fn report_deferred(findings: &[Finding]) {
    let mut text = format!(
        "warning: {} problem(s) in task files that only an include_tasks reads; as in Ansible they stop nothing unless the include runs (the include then fails with the problem):\n",
        findings.len()
    );
    for f in findings {
        // The list of modules deployer runs is long and said elsewhere.
        let msg = f
            .message
            .split(" (deployer runs:")
            .next()
            .unwrap_or(&f.message);
        text.push_str(&format!(
            "  {}:{}:{}: [{}] {msg}\n",
            f.file.display(),
            f.line,
            f.col,
            f.rule
        ));
    }
    eprint!("{}", crate::secrets::mask(&text));
}
