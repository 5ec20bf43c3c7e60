//! `find`: files of the host selected by name, age, size, content, type and
//! mode, as Ansible's `ansible.builtin.find`: registered `files` (each with
//! `path` and the stat fields Ansible's gives), `matched`, `examined`, `msg`
//! and `skipped_paths`. It changes nothing, so check mode runs it too.
//!
//! The host lists each path once with GNU `find -printf` (names NUL-separated,
//! so any byte but NUL is fine in a name); the walk Ansible does with
//! `os.walk` (a directory's files, then its directories, then into each) and
//! the filters run here on what was listed. File contents (`contains`) and
//! checksums are read in a second execution, for the candidates only.
//!
//! Supported: `paths` (`name`, `path`), `patterns` (`pattern`), `excludes`
//! (`exclude`), `use_regex`, `contains`, `read_whole_file`, `encoding`
//! (UTF-8 or Latin-1), `file_type`, `age`, `age_stamp`, `size`, `recurse`,
//! `depth`, `hidden`, `get_checksum`, `checksum_algorithm`, `mode` (octal),
//! `exact_mode`, `limit`. Not supported yet: `follow: true` and symbolic
//! `mode`s (the task fails saying so).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_list, de_opt_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Any,
    Directory,
    #[default]
    File,
    Link,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AgeStamp {
    Atime,
    Ctime,
    #[default]
    Mtime,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    Md5,
    #[default]
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Checksum {
    fn tool(self) -> &'static str {
        match self {
            Checksum::Md5 => "md5sum",
            Checksum::Sha1 => "sha1sum",
            Checksum::Sha224 => "sha224sum",
            Checksum::Sha256 => "sha256sum",
            Checksum::Sha384 => "sha384sum",
            Checksum::Sha512 => "sha512sum",
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FindArgs {
    #[serde(alias = "name", alias = "path", deserialize_with = "de_list")]
    pub paths: Vec<String>,
    #[serde(default, alias = "pattern", deserialize_with = "de_opt_list")]
    pub patterns: Option<Vec<String>>,
    #[serde(default, alias = "exclude", deserialize_with = "de_opt_list")]
    pub excludes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub contains: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub read_whole_file: bool,
    #[serde(default)]
    pub file_type: FileType,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub age: Option<String>,
    #[serde(default)]
    pub age_stamp: AgeStamp,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub size: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub recurse: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub hidden: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub follow: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub get_checksum: bool,
    #[serde(default, alias = "checksum", alias = "checksum_algo")]
    pub checksum_algorithm: Checksum,
    #[serde(default, deserialize_with = "de_bool")]
    pub use_regex: bool,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub depth: Option<i64>,
    #[serde(default)]
    pub mode: Option<Json>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub exact_mode: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub encoding: Option<String>,
    #[serde(default, deserialize_with = "de_opt_int")]
    pub limit: Option<i64>,
}

fn yes() -> bool {
    true
}

/// `paths`: a list, or one string (comma-separated, as Ansible splits it).
fn de_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    de_opt_list(d)?.ok_or_else(|| serde::de::Error::custom("expected a list of paths, got null"))
}

/// An integer that may be negative, as a number or its text.
fn de_opt_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Json::deserialize(d)?;
    match &v {
        Json::Null => Ok(None),
        Json::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {v}"))),
        Json::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {v}"))),
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {v}"
        ))),
    }
}

pub struct Find;

impl Module for Find {
    fn name(&self) -> &'static str {
        "find"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.find"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<FindArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !["paths", "path", "name"]
            .iter()
            .any(|k| args.contains_key(*k))
        {
            return Err("missing required argument: paths".into());
        }
        if let Some(Json::Number(_)) = args.get("mode") {
            return Err("argument 'mode' is not a string and conversion is not allowed, value is of type int (quote it: mode: '0644')".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// One entry `find -printf` listed.
#[derive(Debug, Clone)]
struct Entry {
    /// The path relative to the searched directory (`a/b`).
    rel: String,
    /// `lstat`'s type letter (`f`, `d`, `l`, `p`, `s`, `c`, `b`).
    kind: char,
    /// Whether `os.walk` counts it as a directory (it follows links for that).
    walk_dir: bool,
    mode: u32,
    uid: u64,
    gid: u64,
    user: String,
    group: String,
    size: u64,
    inode: u64,
    dev: u64,
    nlink: u64,
    atime: f64,
    mtime: f64,
    ctime: f64,
}

/// One searched path as listed on the host.
#[derive(Debug, Clone)]
struct Listed {
    /// The path as given, after `~` expansion.
    path: String,
    /// `None` when it is not a directory.
    entries: Option<Vec<Entry>>,
    /// What `find` said on stderr (unreadable directories).
    errors: String,
}

/// What the walk found (before checksums are read).
struct Walked {
    files: Vec<(String, Entry)>,
    examined: u64,
    msg: &'static str,
    skipped: Map<String, Json>,
    warnings: Vec<String>,
}

/// The parsed filters (what Ansible computes before walking).
struct Filters {
    patterns: Vec<Matcher>,
    excludes: Vec<Matcher>,
    age: Option<i64>,
    size: Option<i64>,
    mode: Option<u32>,
    contains: Option<regex::Regex>,
}

enum Matcher {
    Glob(regex::Regex),
    Re(regex::Regex),
}

impl Matcher {
    fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Glob(r) | Matcher::Re(r) => r.is_match(name),
        }
    }
}

/// Python's `fnmatch.translate`: `*`, `?`, `[...]` (`[!...]` negated), the
/// rest literal; the whole name must match.
fn glob_regex(p: &str) -> Result<regex::Regex, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::from("^(?s:");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                let mut j = i;
                if j < chars.len() && chars[j] == '!' {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push_str("\\[");
                } else {
                    let mut body: String = chars[i..j].iter().collect();
                    i = j + 1;
                    let negate = body.starts_with('!');
                    if negate {
                        body.remove(0);
                    }
                    let escaped: String = body
                        .chars()
                        .map(|ch| match ch {
                            '\\' | '[' | ']' | '&' | '~' | '|' | '^' => format!("\\{ch}"),
                            _ => ch.to_string(),
                        })
                        .collect();
                    out.push('[');
                    if negate {
                        out.push('^');
                    }
                    out.push_str(&escaped);
                    out.push(']');
                }
            }
            _ => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push_str(")$");
    regex::Regex::new(&out).map_err(|e| format!("bad pattern '{p}': {e}"))
}

/// Python's `re.match`: anchored at the start only.
fn match_regex(p: &str, what: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{p})"))
        .map_err(|e| format!("bad regular expression in {what} '{p}': {e}"))
}

/// `age`/`size` with their unit suffixes, as Ansible reads them.
fn with_unit(v: &str, units: &[(char, i64)]) -> Option<i64> {
    let v = v.to_lowercase();
    let (num, unit) = match v.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => (&v[..v.len() - 1], Some(c)),
        _ => (v.as_str(), None),
    };
    let digits = num.strip_prefix('-').unwrap_or(num);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: i64 = num.parse().ok()?;
    let mul = match unit {
        None => 1,
        Some(u) => units.iter().find(|(c, _)| *c == u)?.1,
    };
    n.checked_mul(mul)
}

fn filters(a: &FindArgs) -> Result<Filters, Box<ModuleResult>> {
    let fail = |m: String| Box::new(ModuleResult::failed(m));
    let mut patterns = a.patterns.clone().unwrap_or_default();
    if patterns.is_empty() {
        patterns.push(if a.use_regex { ".*" } else { "*" }.to_string());
    }
    let compile = |p: &String, what: &str| -> Result<Matcher, Box<ModuleResult>> {
        if a.use_regex {
            match_regex(p, what).map(Matcher::Re).map_err(fail)
        } else {
            glob_regex(p).map(Matcher::Glob).map_err(fail)
        }
    };
    let patterns = patterns
        .iter()
        .map(|p| compile(p, "patterns"))
        .collect::<Result<Vec<_>, _>>()?;
    let excludes = a
        .excludes
        .iter()
        .flatten()
        .map(|p| compile(p, "excludes"))
        .collect::<Result<Vec<_>, _>>()?;
    let age = match &a.age {
        None => None,
        Some(s) => Some(
            with_unit(
                s,
                &[
                    ('s', 1),
                    ('m', 60),
                    ('h', 3600),
                    ('d', 86400),
                    ('w', 604800),
                ],
            )
            .ok_or_else(|| {
                let mut r = ModuleResult::failed("failed to process age");
                r.data.insert("age".into(), json!(s));
                Box::new(r)
            })?,
        ),
    };
    let size = match &a.size {
        None => None,
        Some(s) => Some(
            with_unit(
                s,
                &[
                    ('b', 1),
                    ('k', 1024),
                    ('m', 1024 * 1024),
                    ('g', 1024 * 1024 * 1024),
                    ('t', 1024_i64.pow(4)),
                ],
            )
            .ok_or_else(|| {
                let mut r = ModuleResult::failed("failed to process size");
                r.data.insert("size".into(), json!(s));
                Box::new(r)
            })?,
        ),
    };
    let mode = match &a.mode {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s.is_empty() => None,
        Some(Json::String(s)) => Some(u32::from_str_radix(s.trim(), 8).map(|m| m & 0o7777).map_err(|_| {
            fail(format!(
                "find: symbolic mode '{s}' is not supported yet by deployer: give an octal mode such as '0644'"
            ))
        })?),
        Some(other) => {
            let ty = match other {
                Json::Number(n) if n.is_f64() => "float",
                Json::Number(_) => "int",
                Json::Bool(_) => "bool",
                Json::Array(_) => "list",
                _ => "dict",
            };
            return Err(fail(format!(
                "argument 'mode' is not a string and conversion is not allowed, value is of type {ty}"
            )));
        }
    };
    let contains = match &a.contains {
        None => None,
        Some(p) => Some(
            regex::Regex::new(&if a.read_whole_file {
                p.clone()
            } else {
                format!("^(?:{p})")
            })
            .map_err(|e| fail(format!("bad regular expression in contains '{p}': {e}")))?,
        ),
    };
    if let Some(l) = a.limit
        && l <= 0
    {
        return Err(fail(format!(
            "limit cannot be {l} (use None for unlimited)"
        )));
    }
    if a.follow {
        return Err(fail(
            "find: follow: true is not supported yet by deployer".to_string(),
        ));
    }
    if let Some(e) = &a.encoding
        && decoder(Some(e)).is_none()
    {
        return Err(fail(format!(
            "find: encoding '{e}' is not supported yet by deployer (utf-8 and latin-1 are)"
        )));
    }
    Ok(Filters {
        patterns,
        excludes,
        age,
        size,
        mode,
        contains,
    })
}

type Decoder = fn(&[u8]) -> Option<String>;

fn decoder(encoding: Option<&str>) -> Option<Decoder> {
    let norm = encoding.map(|e| e.to_ascii_lowercase().replace(['-', '_'], ""));
    match norm.as_deref() {
        None | Some("utf8") => Some(|b| String::from_utf8(b.to_vec()).ok()),
        Some("latin1" | "iso88591" | "l1") => {
            Some(|b| Some(b.iter().map(|c| *c as char).collect()))
        }
        Some("ascii" | "usascii") => Some(|b| {
            b.is_ascii()
                .then(|| String::from_utf8_lossy(b).into_owned())
        }),
        _ => None,
    }
}

/// Ansible's `pfilter`: a pattern matches and no exclude does.
fn pfilter(name: &str, f: &Filters) -> bool {
    f.patterns.iter().any(|p| p.matches(name)) && !f.excludes.iter().any(|e| e.matches(name))
}

fn stamp(e: &Entry, s: AgeStamp) -> f64 {
    match s {
        AgeStamp::Atime => e.atime,
        AgeStamp::Ctime => e.ctime,
        AgeStamp::Mtime => e.mtime,
    }
}

fn agefilter(e: &Entry, now: f64, f: &Filters, s: AgeStamp) -> bool {
    match f.age {
        None => true,
        Some(age) if age >= 0 => now - stamp(e, s) >= age.unsigned_abs() as f64,
        Some(age) => now - stamp(e, s) <= age.unsigned_abs() as f64,
    }
}

fn sizefilter(e: &Entry, f: &Filters) -> bool {
    match f.size {
        None => true,
        Some(size) if size >= 0 => e.size >= size.unsigned_abs(),
        Some(size) => e.size <= size.unsigned_abs(),
    }
}

fn modefilter(e: &Entry, f: &Filters, exact: bool) -> bool {
    match f.mode {
        None | Some(0) => true,
        Some(m) if exact => e.mode & 0o7777 == m,
        Some(m) => e.mode & m != 0,
    }
}

/// `os.path.normpath` of a POSIX path.
fn normpath(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// What the content filter needs: `Ok(true)` a line (or the whole text)
/// matches, `Err` the text could not be decoded (Ansible then gives up on the
/// whole searched path).
type ContentCheck<'a> = &'a dyn Fn(&str) -> Result<bool, String>;

/// Ansible's walk over one searched path: `os.walk` top-down, a directory's
/// files then its directories, filters per entry; `looked` counts every entry
/// of every directory walked.
#[allow(clippy::too_many_arguments)]
fn walk_one(
    a: &FindArgs,
    f: &Filters,
    now: f64,
    listed: &Listed,
    out: &mut Walked,
    content: ContentCheck<'_>,
) -> Result<(), String> {
    let Some(entries) = &listed.entries else {
        return Err(format!("'{}' is not a directory", listed.path));
    };
    let mut children: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        let parent = e.rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        children.entry(parent).or_default().push(e);
    }
    // Top-down: a stack of directories still to walk, each walked in order.
    let mut queue: Vec<&str> = vec![""];
    while let Some(root) = queue.pop() {
        let kids = children.get(root).cloned().unwrap_or_default();
        let (dirs, files): (Vec<&Entry>, Vec<&Entry>) = kids.iter().partition(|e| e.walk_dir);
        out.examined += (dirs.len() + files.len()) as u64;
        let mut descend = true;
        for e in files.iter().chain(dirs.iter()) {
            let fsname = normpath(&format!("{}/{}", listed.path, e.rel));
            let depth = e.rel.split('/').count() as i64;
            if let Some(d) = a.depth
                && d != 0
                && depth > d
            {
                descend = false;
                continue;
            }
            let name = e.rel.rsplit('/').next().unwrap_or(&e.rel);
            if name.starts_with('.') && !a.hidden {
                continue;
            }
            let common = |e: &Entry| {
                pfilter(name, f)
                    && agefilter(e, now, f, a.age_stamp)
                    && modefilter(e, f, a.exact_mode)
            };
            let hit = match a.file_type {
                FileType::Any => common(e) && (e.kind != 'f' || sizefilter(e, f)),
                FileType::Directory => e.kind == 'd' && common(e),
                FileType::Link => e.kind == 'l' && common(e),
                FileType::File => {
                    e.kind == 'f'
                        && pfilter(name, f)
                        && agefilter(e, now, f, a.age_stamp)
                        && sizefilter(e, f)
                        && (f.contains.is_none() || content(&fsname)?)
                        && modefilter(e, f, a.exact_mode)
                }
            };
            if hit {
                out.files.push((fsname, (*e).clone()));
            }
            if a.limit.is_some_and(|l| out.files.len() as i64 == l) {
                out.msg = "Limit of matches reached";
                break;
            }
        }
        if !a.recurse || a.limit.is_some_and(|l| out.files.len() as i64 == l) {
            break;
        }
        if descend {
            // Directories are walked in order: push them reversed.
            for d in dirs.iter().rev() {
                if d.kind == 'd' {
                    queue.push(d.rel.as_str());
                }
            }
        }
    }
    if !listed.errors.trim().is_empty() {
        for line in listed.errors.lines() {
            // find: '/x/y': Permission denied
            let p = line
                .split(['\'', '‘', '’'])
                .nth(1)
                .unwrap_or(listed.path.as_str());
            let why = line.rsplit(": ").next().unwrap_or(line);
            out.skipped.insert(p.to_string(), json!(why));
        }
    }
    Ok(())
}

/// Every path's walk: Ansible's result less the checksums.
fn walk(
    a: &FindArgs,
    f: &Filters,
    now: f64,
    listed: &[Listed],
    content: ContentCheck<'_>,
) -> Walked {
    let mut out = Walked {
        files: Vec::new(),
        examined: 0,
        msg: "All paths examined",
        skipped: Map::new(),
        warnings: Vec::new(),
    };
    let mut warned = false;
    for l in listed {
        let skipped_before = out.skipped.len();
        if let Err(e) = walk_one(a, f, now, l, &mut out, content) {
            out.warnings.push(format!(
                "Skipped '{}' path due to this access issue: {e}\n",
                l.path
            ));
            out.skipped.insert(l.path.clone(), json!(e));
            warned = true;
        } else if out.skipped.len() > skipped_before {
            warned = true;
        }
    }
    if warned {
        out.msg = "Not all paths examined, check warnings for details";
    }
    out
}

fn statinfo(path: &str, e: &Entry) -> Map<String, Json> {
    let m = e.mode;
    let bit = |b: u32| json!(m & b != 0);
    let mut r = Map::new();
    r.insert("path".into(), json!(path));
    r.insert("mode".into(), json!(format!("{:04o}", m & 0o7777)));
    r.insert("isdir".into(), json!(e.kind == 'd'));
    r.insert("ischr".into(), json!(e.kind == 'c'));
    r.insert("isblk".into(), json!(e.kind == 'b'));
    r.insert("isreg".into(), json!(e.kind == 'f'));
    r.insert("isfifo".into(), json!(e.kind == 'p'));
    r.insert("islnk".into(), json!(e.kind == 'l'));
    r.insert("issock".into(), json!(e.kind == 's'));
    r.insert("uid".into(), json!(e.uid));
    r.insert("gid".into(), json!(e.gid));
    r.insert("size".into(), json!(e.size));
    r.insert("inode".into(), json!(e.inode));
    r.insert("dev".into(), json!(e.dev));
    r.insert("nlink".into(), json!(e.nlink));
    r.insert("atime".into(), json!(e.atime));
    r.insert("mtime".into(), json!(e.mtime));
    r.insert("ctime".into(), json!(e.ctime));
    r.insert("gr_name".into(), json!(e.group));
    r.insert("pw_name".into(), json!(e.user));
    r.insert("wusr".into(), bit(0o200));
    r.insert("rusr".into(), bit(0o400));
    r.insert("xusr".into(), bit(0o100));
    r.insert("wgrp".into(), bit(0o020));
    r.insert("rgrp".into(), bit(0o040));
    r.insert("xgrp".into(), bit(0o010));
    r.insert("woth".into(), bit(0o002));
    r.insert("roth".into(), bit(0o004));
    r.insert("xoth".into(), bit(0o001));
    r.insert("isuid".into(), bit(0o4000));
    r.insert("isgid".into(), bit(0o2000));
    r
}

/// The `find -printf` format: 15 NUL-terminated fields per entry.
const FORMAT: &str =
    "%y\\0%Y\\0%m\\0%U\\0%G\\0%u\\0%g\\0%s\\0%i\\0%D\\0%n\\0%A@\\0%T@\\0%C@\\0%P\\0";

/// A path as shell text: `~` and `~/...` are the (become) user's home, the
/// rest is quoted.
fn path_word(p: &str) -> String {
    if p == "~" {
        "\"$HOME\"".into()
    } else if let Some(rest) = p.strip_prefix("~/") {
        format!("\"$HOME\"/{}", shell_quote(rest))
    } else {
        shell_quote(p)
    }
}

/// Seconds since the epoch as Python's `st_*time` computes them.
fn time_of(s: &str) -> f64 {
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let sec: f64 = sec.parse().unwrap_or(0.0);
    let digits: String = frac.chars().take(9).collect();
    let nsec: f64 = format!("{digits:0<9}").parse().unwrap_or(0.0);
    sec + nsec * 1e-9
}

fn parse_listing(stdout: &[u8]) -> Result<(f64, Vec<Listed>), String> {
    let fields: Vec<String> = stdout
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let mut it = fields.into_iter();
    let bad = || "find: unexpected listing from the host".to_string();
    let now = it.next().map(|s| time_of(s.trim())).ok_or_else(bad)?;
    let mut listed: Vec<Listed> = Vec::new();
    while let Some(tag) = it.next() {
        match tag.as_str() {
            "P" => {
                let path = it.next().ok_or_else(bad)?;
                listed.push(Listed {
                    path,
                    entries: None,
                    errors: String::new(),
                });
            }
            "D" => {
                listed.last_mut().ok_or_else(bad)?.entries = Some(Vec::new());
            }
            "E" => {
                let err = it.next().ok_or_else(bad)?;
                listed.last_mut().ok_or_else(bad)?.errors = err;
            }
            "F" => {
                let f: Vec<String> = (0..15)
                    .map(|_| it.next())
                    .collect::<Option<_>>()
                    .ok_or_else(bad)?;
                let num = |i: usize| f[i].trim().parse::<u64>().unwrap_or(0);
                let uid = num(3);
                let gid = num(4);
                // find prints the number when the id has no name; Ansible "".
                let name = |s: &str, id: u64| {
                    if s == id.to_string() {
                        String::new()
                    } else {
                        s.to_string()
                    }
                };
                let e = Entry {
                    kind: f[0].chars().next().unwrap_or('U'),
                    walk_dir: f[1] == "d",
                    mode: u32::from_str_radix(f[2].trim(), 8).unwrap_or(0),
                    uid,
                    gid,
                    user: name(&f[5], uid),
                    group: name(&f[6], gid),
                    size: num(7),
                    inode: num(8),
                    dev: num(9),
                    nlink: num(10),
                    atime: time_of(&f[11]),
                    mtime: time_of(&f[12]),
                    ctime: time_of(&f[13]),
                    rel: f[14].clone(),
                };
                listed
                    .last_mut()
                    .and_then(|l| l.entries.as_mut())
                    .ok_or_else(bad)?
                    .push(e);
            }
            "" => {}
            _ => return Err(bad()),
        }
    }
    Ok((now, listed))
}

/// Runs `body` over a list of paths (each base64-encoded, so no name
/// becomes shell text): `$f` is each path, one output field each.
async fn per_path(
    ctx: &mut ModuleCtx<'_>,
    paths: &[String],
    body: &str,
) -> Result<Vec<Vec<u8>>, String> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let engine = &base64::engine::general_purpose::STANDARD;
    let list: Vec<String> = paths.iter().map(|p| engine.encode(p.as_bytes())).collect();
    let script = format!(
        "for b in {}; do f=$(printf '%s' \"$b\" | base64 -d; printf x); f=${{f%x}}; {body}; printf '\\n'; done\n",
        list.join(" ")
    );
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(format!("find: {}", out.stderr_str().trim()));
    }
    let lines: Vec<Vec<u8>> = out
        .stdout
        .split(|b| *b == b'\n')
        .map(|l| l.to_vec())
        .collect();
    if lines.len() < paths.len() {
        return Err("find: unexpected output from the host".into());
    }
    Ok(lines.into_iter().take(paths.len()).collect())
}

/// The result, or the failure Ansible reports for the arguments.
pub type Found = ModuleResult;

impl PlanApply for Find {
    type Args = FindArgs;
    type Observed = Found;
    type Changes = std::convert::Infallible;

    fn observe<'a>(
        &'a self,
        a: &'a FindArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Found, String>> {
        Box::pin(async move {
            let f = match filters(a) {
                Ok(f) => f,
                Err(r) => return Ok(*r),
            };
            let maxdepth = match (a.recurse, a.depth) {
                (false, _) => Some(1),
                (true, Some(d)) if d > 0 => Some(d + 1),
                _ => None,
            };
            let maxdepth = maxdepth
                .map(|d| format!(" -maxdepth {d}"))
                .unwrap_or_default();
            let mut script = String::from("date +%s.%N | tr -d '\\n'; printf '\\0'\n");
            for p in &a.paths {
                script.push_str(&format!(
                    "p={w}\nprintf 'P\\0%s\\0' \"$p\"\nif [ -d \"$p\" ]; then printf 'D\\0'; \
                     {{ err=$(find \"$p\" -mindepth 1{maxdepth} -printf 'F\\0{FORMAT}' 2>&1 >&3 3>&-); }} 3>&1; \
                     printf 'E\\0%s\\0' \"$err\"; fi\n",
                    w = path_word(p),
                ));
            }
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(format!("find: {}", out.stderr_str().trim()));
            }
            let (now, listed) = parse_listing(&out.stdout)?;

            // Contents of the files the other filters keep, when `contains` is set.
            let mut texts: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            if f.contains.is_some() && a.file_type == FileType::File {
                let all = |_: &str| -> Result<bool, String> { Ok(true) };
                let unlimited = FindArgs {
                    limit: None,
                    ..a.clone()
                };
                let candidates: Vec<String> = walk(&unlimited, &f, now, &listed, &all)
                    .files
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                let got = per_path(ctx, &candidates, "base64 -w0 < \"$f\" 2>/dev/null").await?;
                for (p, b) in candidates.into_iter().zip(got) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b.trim_ascii())
                        .unwrap_or_default();
                    texts.insert(p, bytes);
                }
            }
            let decode =
                decoder(a.encoding.as_deref()).unwrap_or(|b| String::from_utf8(b.to_vec()).ok());
            let check = |p: &str| -> Result<bool, String> {
                let Some(re) = &f.contains else {
                    return Ok(true);
                };
                let Some(bytes) = texts.get(p) else {
                    return Ok(false);
                };
                let Some(text) = decode(bytes) else {
                    let enc = a.encoding.clone().unwrap_or_else(|| {
                        "None (default determined by the Python built-in function \"open\")".into()
                    });
                    return Err(format!(
                        "Failed to read the file {p} due to an encoding error. current encoding: {enc}"
                    ));
                };
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                if a.read_whole_file {
                    return Ok(re.is_match(&text));
                }
                Ok(text
                    .split_inclusive('\n')
                    .any(|l| re.is_match(l.strip_suffix('\n').unwrap_or(l))))
            };
            let walked = walk(a, &f, now, &listed, &check);

            let mut checksums: BTreeMap<String, String> = BTreeMap::new();
            if a.get_checksum {
                let regular: Vec<String> = walked
                    .files
                    .iter()
                    .filter(|(_, e)| e.kind == 'f')
                    .map(|(p, _)| p.clone())
                    .collect();
                let tool = a.checksum_algorithm.tool();
                let got = per_path(
                    ctx,
                    &regular,
                    &format!("{tool} < \"$f\" | cut -d' ' -f1 | tr -d '\\n'"),
                )
                .await?;
                for (p, c) in regular.into_iter().zip(got) {
                    checksums.insert(p, String::from_utf8_lossy(&c).trim().to_string());
                }
            }

            let files: Vec<Json> = walked
                .files
                .iter()
                .map(|(p, e)| {
                    let mut m = statinfo(p, e);
                    if let Some(c) = checksums.get(p)
                        && e.kind == 'f'
                    {
                        m.insert("checksum".into(), json!(c));
                    }
                    Json::Object(m)
                })
                .collect();
            let mut r = ModuleResult::ok();
            r.msg = Some(walked.msg.to_string());
            r.data.insert("matched".into(), json!(files.len()));
            r.data.insert("files".into(), Json::Array(files));
            r.data.insert("examined".into(), json!(walked.examined));
            r.data
                .insert("skipped_paths".into(), Json::Object(walked.skipped));
            if !walked.warnings.is_empty() {
                r.data.insert("warnings".into(), json!(walked.warnings));
            }
            Ok(r)
        })
    }

    fn plan(
        &self,
        _: FindArgs,
        found: Found,
        _: &ModuleCtx<'_>,
    ) -> Result<Plan<std::convert::Infallible>, String> {
        Ok(Plan::unchanged(found))
    }

    fn apply<'a>(
        &'a self,
        changes: std::convert::Infallible,
        _: ModuleResult,
        _: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        super::misc::nothing_to_apply(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_fnmatch() {
        let g = |p: &str, n: &str| glob_regex(p).expect("glob").is_match(n);
        assert!(g("*.log", "a.log"));
        assert!(!g("*.log", "a.log.1"));
        assert!(g("a?c", "abc"));
        assert!(g("[!x]*", "abc"));
        assert!(!g("[!a]*", "abc"));
        assert!(g("[a-c].txt", "b.txt"));
        assert!(g("a[", "a["));
        assert!(g("a.b", "a.b") && !g("a.b", "axb"));
    }

    #[test]
    fn units_and_paths() {
        let t = [('s', 1), ('m', 60), ('d', 86400)];
        assert_eq!(with_unit("2d", &t), Some(172800));
        assert_eq!(with_unit("-5M", &t), Some(-300));
        assert_eq!(with_unit("10", &t), Some(10));
        assert_eq!(with_unit("x", &t), None);
        assert_eq!(with_unit("1y", &t), None);
        assert_eq!(normpath("/a//b/./c/"), "/a/b/c");
        assert_eq!(normpath("/a/b/../c"), "/a/c");
        assert_eq!(path_word("~/x y"), "\"$HOME\"/'x y'");
    }
}
