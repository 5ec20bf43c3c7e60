//! `apt_repository`: one `deb`/`deb-src` line in the host's APT sources, as
//! Ansible's `ansible.builtin.apt_repository` manages it: every `.list` file
//! (`/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.list`) is read and
//! parsed as Ansible's `SourcesList` parses it; `present` enables a line that
//! is there (commented out or not) or appends it to a file named after the
//! repository (or `filename`); `absent` removes it. `changed` when the files'
//! normalized text changes; then every file whose text changes is written
//! with [`RemoteWrite`] (a file left empty is removed) and, with
//! `update_cache` (the default), `apt-get update` runs (with Ansible's
//! retries); when that fails, the files are put back and the task fails.
//!
//! Supported: `repo`, `state`, `mode` (octal), `filename`, `update_cache`
//! (`update-cache`), `update_cache_retries`, `update_cache_retry_max_delay`,
//! `codename`, `install_python_apt` and `validate_certs` (accepted; deployer
//! needs no python-apt). Returns `repo`, `state`, `sources_added`,
//! `sources_removed`, `diff`. Not supported yet: `ppa:` repositories (they
//! need Launchpad over the internet): the task fails saying so.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{Mode, de_bool, de_opt_mode, de_opt_string, de_opt_u64, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::shell_quote;
use crate::connection::write::{RemoteWrite, remove_script};

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RepoState {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AptRepositoryArgs {
    #[serde(deserialize_with = "de_string")]
    pub repo: String,
    #[serde(default)]
    pub state: RepoState,
    #[serde(default, deserialize_with = "de_opt_mode")]
    pub mode: Option<Mode>,
    #[serde(default = "yes", alias = "update-cache", deserialize_with = "de_bool")]
    pub update_cache: bool,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub update_cache_retries: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub update_cache_retry_max_delay: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub filename: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub install_python_apt: bool,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub validate_certs: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub codename: Option<String>,
}

pub struct AptRepository;

impl Module for AptRepository {
    fn name(&self) -> &'static str {
        "apt_repository"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.apt_repository"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<AptRepositoryArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("repo") {
            return Err("missing required argument: repo".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// One line of a sources file, as Ansible's `SourcesList` keeps it.
#[derive(Clone, Debug, PartialEq)]
struct Line {
    n: usize,
    valid: bool,
    enabled: bool,
    source: String,
    comment: String,
}

/// Ansible's `_parse`: `Err(text)` is the `InvalidSource` it raises when asked.
fn parse_line(raw: &str, n: usize) -> Line {
    let mut line = raw.trim().to_string();
    let mut enabled = true;
    if let Some(rest) = line.strip_prefix('#') {
        enabled = false;
        line = rest.to_string();
    }
    let mut comment = String::new();
    if let Some(i) = line.find('#')
        && i > 0
    {
        comment = line[i + 1..].trim().to_string();
        line.truncate(i);
    }
    let mut source = line.trim().to_string();
    let mut valid = false;
    if !source.is_empty() {
        let chunks: Vec<&str> = source.split_whitespace().collect();
        if matches!(chunks.first(), Some(&"deb") | Some(&"deb-src")) {
            valid = true;
            source = chunks.join(" ");
        }
    }
    Line {
        n,
        valid,
        enabled,
        source,
        comment,
    }
}

/// The repository line as Ansible's `add_source`/`remove_source` read it.
fn parse_repo(repo: &str) -> Result<String, String> {
    let l = parse_line(repo, 0);
    if !l.valid || !l.enabled {
        // The text InvalidSource carries: stripped, '#' and the comment cut.
        let mut line = repo.trim().to_string();
        if let Some(rest) = line.strip_prefix('#') {
            line = rest.to_string();
        }
        if let Some(i) = line.find('#')
            && i > 0
        {
            line.truncate(i);
        }
        return Err(format!("Invalid repository string: {line}"));
    }
    Ok(l.source)
}

/// `_suggest_filename`: the file a new line goes to.
fn suggest_filename(source: &str, filename: Option<&str>) -> String {
    let opts = regex::Regex::new(r"\[[^\]]+\]").map(|r| r.replace_all(source, "").into_owned());
    let line = opts.unwrap_or_else(|_| source.to_string());
    let line = regex::Regex::new(r"\w+://")
        .map(|r| r.replace_all(&line, "").into_owned())
        .unwrap_or(line);
    let parts: Vec<&str> = line
        .split_whitespace()
        .filter(|p| *p != "deb" && *p != "deb-src")
        .collect();
    let base = match filename {
        Some(f) => f.to_string(),
        None => {
            let first = parts.first().copied().unwrap_or("");
            let first = first.split_once('@').map(|(_, r)| r).unwrap_or(first);
            first
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("_")
        }
    };
    let name = format!("{base}.list");
    if name.contains('/') {
        name
    } else {
        format!("{SOURCES_DIR}/{name}")
    }
}

fn dump_lines(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        if !l.enabled {
            out.push_str("# ");
        }
        out.push_str(&l.source);
        if !l.comment.is_empty() {
            out.push_str(" # ");
            out.push_str(&l.comment);
        }
        out.push('\n');
    }
    out
}

/// One sources file on the host.
#[derive(Clone, Debug)]
pub struct SourceFile {
    path: String,
    /// Where a symbolic link points (Ansible writes there).
    link: Option<String>,
    text: String,
}

/// The files in Ansible's order (sources.list, then the directory's `.list`
/// files as the directory lists them) with their parsed lines.
#[derive(Clone, Debug)]
struct SourcesList {
    files: Vec<(String, Vec<Line>)>,
}

impl SourcesList {
    fn load(files: &[SourceFile]) -> SourcesList {
        SourcesList {
            files: files
                .iter()
                .map(|f| {
                    let lines = f
                        .text
                        .split_inclusive('\n')
                        .enumerate()
                        .map(|(n, l)| parse_line(l, n))
                        .collect();
                    (f.path.clone(), lines)
                })
                .collect(),
        }
    }

    fn dump(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(p, l)| (p.clone(), dump_lines(l)))
            .collect()
    }

    /// `_add_valid_source`: returns the file appended to, if any.
    fn add(&mut self, source: &str, file: String) -> Option<String> {
        let mut found = false;
        for (_, lines) in &mut self.files {
            let hits: Vec<usize> = lines
                .iter()
                .filter(|l| l.valid && l.source == source)
                .map(|l| l.n)
                .collect();
            for n in hits {
                if let Some(l) = lines.get_mut(n) {
                    l.enabled = true;
                    found = true;
                }
            }
        }
        if found {
            return None;
        }
        let idx = match self.files.iter().position(|(p, _)| *p == file) {
            Some(i) => i,
            None => {
                self.files.push((file.clone(), Vec::new()));
                self.files.len() - 1
            }
        };
        let lines = &mut self.files[idx].1;
        lines.push(Line {
            n: lines.len(),
            valid: true,
            enabled: true,
            source: source.to_string(),
            comment: String::new(),
        });
        Some(file)
    }

    /// `_remove_valid_source`, with Python's list iteration while popping by
    /// the remembered line number.
    fn remove(&mut self, source: &str) {
        for (_, lines) in &mut self.files {
            let mut i = 0;
            while i < lines.len() {
                let l = lines[i].clone();
                i += 1;
                if l.valid && l.enabled && l.source == source && l.n < lines.len() {
                    lines.remove(l.n);
                }
            }
        }
    }
}

/// What was read: the files, and whether apt-key or gpg is there.
pub struct Observed {
    files: Vec<SourceFile>,
    has_tool: bool,
}

/// What to write: (path written, content or `None` to remove, mode).
pub struct Changes {
    writes: Vec<(String, Option<String>, Option<u32>)>,
    /// The files as they were (to put back when `apt-get update` fails).
    before: Vec<SourceFile>,
    added: Vec<String>,
    update: Option<(u64, u64)>,
}

/// The observe script: every sources file, its link target and its text.
pub fn read_sources_script() -> String {
    format!(
        "command -v apt-key >/dev/null 2>&1 || command -v gpg >/dev/null 2>&1 && echo T\n\
         show() {{ l=; [ -L \"$1\" ] && l=$(readlink \"$1\" | base64 -w0); printf 'F %s %s %s\\n' \"$(printf '%s' \"$1\" | base64 -w0)\" \"${{l:--}}\" \"$(base64 -w0 < \"$1\")\"; }}\n\
         [ -f {list} ] && show {list}\n\
         if [ -d {dir} ]; then find {dir} -mindepth 1 -maxdepth 1 -name '*.list' ! -name '.*' -print | \
         while IFS= read -r f; do [ -e \"$f\" ] && show \"$f\"; done; fi\n",
        list = SOURCES_LIST,
        dir = SOURCES_DIR,
    )
}

pub fn parse_sources(stdout: &str) -> Result<(Vec<SourceFile>, bool), String> {
    let d = |s: &str| -> Result<String, String> {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("apt sources: bad listing: {e}"))
    };
    let mut files = Vec::new();
    let mut tool = false;
    for line in stdout.lines() {
        if line == "T" {
            tool = true;
            continue;
        }
        let Some(rest) = line.strip_prefix("F ") else {
            continue;
        };
        let mut it = rest.split(' ');
        let path = d(it.next().unwrap_or(""))?;
        let link = match it.next() {
            Some("-") | None => None,
            Some(l) => Some(d(l)?),
        };
        let text = d(it.next().unwrap_or(""))?;
        files.push(SourceFile { path, link, text });
    }
    Ok((files, tool))
}

/// Where a sources file's content is written: a link's target (relative to
/// the link's directory).
fn write_target(f: &SourceFile) -> String {
    match &f.link {
        Some(t) if t.starts_with('/') => t.clone(),
        Some(t) => {
            let dir = f.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            format!("{dir}/{t}")
        }
        None => f.path.clone(),
    }
}

/// `apt-get update` as python-apt's `cache.update()` judges it: any index
/// that could not be fetched is a failure. Retries as Ansible's do.
pub async fn update_cache(
    ctx: &mut ModuleCtx<'_>,
    retries: u64,
    max_delay: u64,
) -> Result<Result<(), String>, String> {
    let mut err = String::new();
    for retry in 0..retries.max(1) {
        let out = ctx
            .conn
            .run_script(
                "export DEBIAN_FRONTEND=noninteractive LC_ALL=C\napt-get update -q 2>&1\n",
                ctx.become_.as_ref(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let text = out.stdout_str();
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W: Failed to fetch"))
            .collect();
        if out.rc == 0 && failed.is_empty() {
            return Ok(Ok(()));
        }
        err = if failed.is_empty() {
            text.trim().to_string()
        } else {
            failed.join(" ")
        };
        if retry + 1 < retries {
            let delay = (1u64 << retry.min(20)).min(max_delay);
            tokio::time::sleep(std::time::Duration::from_secs(delay)).await;
        }
    }
    Ok(Err(format!(
        "Failed to update apt cache after {retries} retries: {}",
        if err.is_empty() {
            "unknown reason"
        } else {
            &err
        }
    )))
}

impl PlanApply for AptRepository {
    type Args = AptRepositoryArgs;
    type Observed = Observed;
    type Changes = Changes;

    fn observe<'a>(
        &'a self,
        _: &'a AptRepositoryArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Observed, String>> {
        Box::pin(async move {
            let out = ctx
                .conn
                .run_script(&read_sources_script(), ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(format!(
                    "apt_repository: reading the APT sources failed: {}",
                    out.stderr_str().trim()
                ));
            }
            let (files, has_tool) = parse_sources(&out.stdout_str())?;
            Ok(Observed { files, has_tool })
        })
    }

    fn plan(
        &self,
        a: AptRepositoryArgs,
        o: Observed,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<Changes>, String> {
        let fail = |m: String| Ok(Plan::unchanged(ModuleResult::failed(m)));
        if !o.has_tool {
            return fail("Either apt-key or gpg binary is required, but neither could be found.The apt-key CLI has been deprecated and removed in modern Debian and derivatives, you might want to use \"deb822_repository\" instead.".into());
        }
        if a.repo.is_empty() {
            return fail("Please set argument 'repo' to a non-empty value".into());
        }
        if a.repo.starts_with("ppa:") {
            return fail(format!(
                "apt_repository: '{}': ppa: repositories are not supported yet by deployer (they need Launchpad over the internet); give the deb line and the key",
                a.repo
            ));
        }
        let mode = match &a.mode {
            None => 0o644,
            Some(Mode::Octal(m)) => *m,
            Some(Mode::Symbolic(s)) => {
                return fail(format!(
                    "apt_repository: symbolic mode '{s}' is not supported yet by deployer: give an octal mode such as '0644'"
                ));
            }
        };
        let source = match parse_repo(&a.repo) {
            Ok(s) => s,
            Err(m) => return fail(m),
        };
        let before = SourcesList::load(&o.files);
        let mut after = before.clone();
        let mut new_file = None;
        match a.state {
            RepoState::Present => {
                new_file = after.add(&source, suggest_filename(&source, a.filename.as_deref()));
            }
            RepoState::Absent => after.remove(&source),
        }
        let (db, da) = (before.dump(), after.dump());
        let changed = db != da;
        let added: Vec<String> = da
            .keys()
            .filter(|k| !db.contains_key(*k))
            .cloned()
            .collect();
        let removed: Vec<String> = db
            .keys()
            .filter(|k| !da.contains_key(*k))
            .cloned()
            .collect();
        let mut r = ModuleResult::ok();
        r.changed = changed;
        r.data.insert("repo".into(), json!(a.repo));
        r.data.insert(
            "state".into(),
            json!(match a.state {
                RepoState::Present => "present",
                RepoState::Absent => "absent",
            }),
        );
        r.data.insert(
            "sources_added".into(),
            json!(if changed { added.clone() } else { vec![] }),
        );
        r.data.insert(
            "sources_removed".into(),
            json!(if changed { removed.clone() } else { vec![] }),
        );
        r.data.insert("diff".into(), json!([]));
        if !changed {
            return Ok(Plan::unchanged(r));
        }
        if ctx.diff {
            for f in added.iter().chain(removed.iter()) {
                r.diffs.push(FileDiff {
                    path: f.clone(),
                    before: db.get(f).cloned(),
                    after: da.get(f).cloned(),
                    attributes: Vec::new(),
                    note: None,
                });
            }
        }
        // Ansible saves every file; only those whose text changes differ.
        let mut writes = Vec::new();
        for (path, lines) in &after.files {
            let existing = o.files.iter().find(|f| f.path == *path);
            let target = existing.map(write_target).unwrap_or_else(|| path.clone());
            let is_new_repo = new_file.as_deref() == Some(path.as_str());
            if lines.is_empty() {
                if existing.is_some() {
                    writes.push((path.clone(), None, None));
                }
                continue;
            }
            let text = dump_lines(lines);
            if existing.map(|f| f.text.as_str()) != Some(text.as_str()) || is_new_repo {
                writes.push((target, Some(text), is_new_repo.then_some(mode)));
            }
        }
        Ok(Plan {
            result: r,
            changes: Some(Changes {
                writes,
                before: o.files,
                added,
                update: a.update_cache.then(|| {
                    (
                        a.update_cache_retries.unwrap_or(5),
                        a.update_cache_retry_max_delay.unwrap_or(12),
                    )
                }),
            }),
        })
    }

    fn apply<'a>(
        &'a self,
        c: Changes,
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            if let Err(m) = write_all(ctx, &c.writes).await? {
                return Ok(ModuleResult::failed(m));
            }
            if let Some((retries, delay)) = c.update
                && let Err(m) = update_cache(ctx, retries, delay).await?
            {
                // Put the files back as they were.
                let mut back: Vec<(String, Option<String>, Option<u32>)> =
                    c.added.iter().map(|p| (p.clone(), None, None)).collect();
                for (p, _, _) in &c.writes {
                    if let Some(f) = c.before.iter().find(|f| write_target(f) == *p) {
                        back.push((p.clone(), Some(f.text.clone()), None));
                    }
                }
                let _ = write_all(ctx, &back).await?;
                r.changed = false;
                r.failed = true;
                r.msg = Some(m);
                return Ok(r);
            }
            Ok(r)
        })
    }
}

/// Writes (or removes) files in one execution each.
pub async fn write_all(
    ctx: &mut ModuleCtx<'_>,
    writes: &[(String, Option<String>, Option<u32>)],
) -> Result<Result<(), String>, String> {
    for (path, content, mode) in writes {
        let body = match content {
            Some(text) => RemoteWrite::new(path, text.as_bytes())
                .mode(*mode)
                .script()?,
            None => format!(
                "if [ -e {p} ] || [ -L {p} ]; then\n{}\nfi\n",
                remove_script(path)?,
                p = shell_quote(path)
            ),
        };
        let script = format!("{}{body}", ctx.release_save(path));
        let out = ctx
            .conn
            .run_script(&script, ctx.become_.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        ctx.release_saved(path, &out.stdout_str());
        if out.rc != 0 {
            return Ok(Err(format!(
                "writing {path} failed: {}",
                out.stderr_str().trim()
            )));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_dump_as_ansible() {
        let l = parse_line("#deb  http://x/  bookworm main # mine\n", 3);
        assert_eq!(
            (l.valid, l.enabled, l.source.as_str(), l.comment.as_str()),
            (true, false, "deb http://x/ bookworm main", "mine")
        );
        let l = parse_line("  deb   [arch=amd64] http://x/ bookworm main\n", 0);
        assert!(l.valid && l.enabled);
        assert_eq!(l.source, "deb [arch=amd64] http://x/ bookworm main");
        assert_eq!(
            parse_repo("foo bar").unwrap_err(),
            "Invalid repository string: foo bar"
        );
        assert_eq!(
            suggest_filename(
                "deb [trusted=yes] http://user:pw@repo.example.com/debian ./",
                None
            ),
            "/etc/apt/sources.list.d/repo_example_com_debian.list"
        );
        assert_eq!(
            suggest_filename("deb file:/srv/dpl-repo ./", Some("dpl")),
            "/etc/apt/sources.list.d/dpl.list"
        );
    }

    #[test]
    fn remove_pops_as_python_does() {
        let files = [SourceFile {
            path: "/x.list".into(),
            link: None,
            text: "deb a b\ndeb a b\n# c\n".into(),
        }];
        let mut s = SourcesList::load(&files);
        s.remove("deb a b");
        // The second copy is skipped by the shifted iteration, as in Ansible.
        assert_eq!(s.dump()["/x.list"], "deb a b\n# c\n");
    }
}
