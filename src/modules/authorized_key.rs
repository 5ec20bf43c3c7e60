//! `authorized_key` (`ansible.posix.authorized_key`): SSH public keys in a
//! user's `authorized_keys`, parsed, merged and written back line for line as
//! the collection's module does (key options, comments, `exclusive`, the
//! order of lines, Ansible's `"<type> <key> <comment>"` form of a written key).
//!
//! Observe (one execution): the user's passwd entry and the key file. Plan
//! (pure): the new file. Apply: `~/.ssh` made (0700, owned by the user, never
//! through a link) when `manage_dir`, then the file written with
//! [`crate::connection::write::RemoteWrite`] (owner the user, mode 0600).
//!
//! Supported: `user`, `key` (one or more keys, one a line), `path`,
//! `manage_dir`, `state`, `key_options`, `exclusive`, `comment`,
//! `validate_certs` (accepted; keys are not fetched), `follow: false`. Not
//! supported yet: a `key` given as an `http(s)://` or `file://` URL,
//! `follow: true`.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::accounts::valid_account_name;
use super::args::{de_bool, de_opt_string, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::shell_quote;
use crate::connection::write::{PathAttrs, RemoteWrite, attributes_script};

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthorizedKeyArgs {
    #[serde(deserialize_with = "de_string")]
    pub user: String,
    #[serde(deserialize_with = "de_string")]
    pub key: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub path: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub manage_dir: bool,
    #[serde(default)]
    pub state: KeyState,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub key_options: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub exclusive: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub comment: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub validate_certs: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub follow: bool,
}

pub struct AuthorizedKey;

impl Module for AuthorizedKey {
    fn name(&self) -> &'static str {
        "authorized_key"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.posix.authorized_key"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<AuthorizedKeyArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        for k in ["user", "key"] {
            if !args.contains_key(k) {
                return Err(format!("missing required argument: {k}"));
            }
        }
        if let Some(Json::String(k)) = super::args::literal(args, "key") {
            url_key(k)?;
        }
        if super::args::literal(args, "follow")
            .and_then(super::args::parse_bool)
            .unwrap_or(false)
        {
            return Err("follow: true is not supported yet by deployer".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

fn url_key(k: &str) -> Result<(), String> {
    if k.starts_with("http") || k.starts_with("file") {
        return Err(
            "a key given as a URL (http://, https://, file://) is not supported yet by deployer: give the key itself (lookup('file', ...) reads it on the control machine)".into(),
        );
    }
    Ok(())
}

const KEY_TYPES: &[&str] = &[
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-dss",
    "ssh-rsa",
    "ssh-xmss@openssh.com",
    "ssh-xmss-cert-v01@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "ssh-rsa-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
];

/// Key options in order, repeated names kept (the module's `keydict`).
type Options = Vec<(String, Option<String>)>;

/// `parseoptions`: split at commas outside quotes.
fn parse_options(s: Option<&str>) -> Options {
    let mut out = Vec::new();
    let Some(s) = s else { return out };
    let mut part = String::new();
    let mut quote: Option<char> = None;
    let mut parts = Vec::new();
    for c in s.chars() {
        match quote {
            Some(q) => {
                part.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                part.push(c);
            }
            None if c == ',' => parts.push(std::mem::take(&mut part)),
            None => part.push(c),
        }
    }
    parts.push(part);
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((p, None)),
        }
    }
    out
}

/// Options compared as the module's dicts are: by name, values per name.
fn options_eq(a: &Options, b: &Options) -> bool {
    fn norm(o: &Options) -> std::collections::BTreeMap<&str, Vec<Option<&str>>> {
        let mut m: std::collections::BTreeMap<&str, Vec<Option<&str>>> = Default::default();
        for (k, v) in o {
            m.entry(k.as_str()).or_default().push(v.as_deref());
        }
        m
    }
    norm(a) == norm(b)
}

/// One line of the file, as `parsekey` reads it.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Key {
        key: String,
        ktype: String,
        options: Options,
        comment: String,
    },
    /// A comment or anything that is not a key: kept as written.
    Other(String),
}

impl Line {
    /// The name the module files a line under.
    fn id(&self) -> &str {
        match self {
            Line::Key { key, .. } => key,
            Line::Other(l) => l,
        }
    }
    fn serialize(&self) -> String {
        match self {
            Line::Other(l) => l.clone(),
            Line::Key {
                key,
                ktype,
                options,
                comment,
            } => {
                let mut opt = options
                    .iter()
                    .map(|(k, v)| match v {
                        None => k.clone(),
                        Some(v) => format!("{k}={v}"),
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                if !opt.is_empty() {
                    opt.push(' ');
                }
                format!("{opt}{ktype} {key} {comment}\n")
            }
        }
    }
}

/// `parsekey`: None when the line holds no key of a known type.
fn parse_key(raw: &str) -> Option<Line> {
    let raw = raw.replace("\\#", "#");
    let parts: Vec<&str> = raw.split_whitespace().collect();
    if parts.first() == Some(&"#") {
        return Some(Line::Other(raw));
    }
    let ti = parts.iter().position(|p| KEY_TYPES.contains(p))?;
    let options = if ti > 0 {
        parse_options(Some(&parts[..ti].join(" ")))
    } else {
        Vec::new()
    };
    let key = parts.get(ti + 1)?.to_string();
    Some(Line::Key {
        key,
        ktype: parts[ti].to_string(),
        options,
        comment: parts.get(ti + 2..).map(|c| c.join(" ")).unwrap_or_default(),
    })
}

/// Lines of the file, each filed under its id with its rank (the module's
/// dict: a later line with the same id replaces the earlier one in place).
fn parse_file(content: &str) -> Vec<(Line, usize)> {
    let mut out: Vec<(Line, usize)> = Vec::new();
    for (rank, line) in content.split_inclusive('\n').enumerate() {
        let l = match parse_key(line) {
            Some(Line::Other(_)) | None => Line::Other(line.to_string()),
            Some(k) => k,
        };
        match out.iter_mut().find(|(e, _)| e.id() == l.id()) {
            Some(slot) => *slot = (l, rank),
            None => out.push((l, rank)),
        }
    }
    out
}

/// The plan: the file's new content, or None when nothing changes.
pub fn plan_keys(a: &AuthorizedKeyArgs, existing: &str) -> Result<Option<String>, String> {
    let mut keys = parse_file(existing);
    let max_rank = keys.len();
    let mut to_exist = Vec::new();
    let mut write = false;
    let new_keys: Vec<&str> = a
        .key
        .lines()
        .filter(|s| !s.is_empty() && !s.starts_with('#'))
        .collect();
    for (rank, nk) in new_keys.iter().enumerate() {
        let Some(Line::Key {
            key,
            ktype,
            mut options,
            mut comment,
        }) = parse_key(nk)
        else {
            return Err(format!("invalid key specified: {nk}"));
        };
        if let Some(o) = &a.key_options {
            options = parse_options(Some(o));
        }
        if let Some(c) = &a.comment {
            comment = c.clone();
        }
        let pos = keys.iter().position(|(e, _)| e.id() == key);
        let mut matched = false;
        let mut replace = false;
        if let Some(p) = pos {
            let same = match &keys[p].0 {
                Line::Key {
                    ktype: t,
                    options: o,
                    comment: c,
                    ..
                } => *t == ktype && options_eq(o, &options) && *c == comment,
                Line::Other(_) => false,
            };
            if !same && a.state == KeyState::Present {
                replace = true;
            } else {
                matched = true;
            }
        }
        match a.state {
            KeyState::Present => {
                to_exist.push(key.clone());
                if replace && let Some(p) = pos {
                    keys.remove(p);
                    write = true;
                }
                if !matched {
                    keys.push((
                        Line::Key {
                            key,
                            ktype,
                            options,
                            comment,
                        },
                        max_rank + rank,
                    ));
                    write = true;
                }
            }
            KeyState::Absent => {
                if matched && let Some(p) = pos {
                    keys.remove(p);
                    write = true;
                }
            }
        }
    }
    if a.state == KeyState::Present && a.exclusive {
        let before = keys.len();
        keys.retain(|(l, _)| to_exist.iter().any(|k| k == l.id()));
        write |= keys.len() != before;
    }
    if !write {
        return Ok(None);
    }
    // Stable: lines of equal rank keep the order they were filed in.
    keys.sort_by_key(|(_, r)| *r);
    Ok(Some(keys.iter().map(|(l, _)| l.serialize()).collect()))
}

#[derive(Debug, Default)]
pub struct KeysObserved {
    /// uid, gid, home of the user; None when there is no such user.
    pub user: Option<(u64, u64, String)>,
    pub file: String,
}

const MARK: &str = "__deployer_authorized_key__";

fn keyfile(a: &AuthorizedKeyArgs, home: Option<&str>) -> Option<String> {
    a.path
        .clone()
        .or_else(|| home.map(|h| format!("{}/.ssh/authorized_keys", h.trim_end_matches('/'))))
}

/// What apply does: the file and its new content, the user's ids.
pub struct KeysWork {
    file: String,
    content: String,
    uid: u64,
    gid: u64,
    manage_dir: bool,
}

impl PlanApply for AuthorizedKey {
    type Args = AuthorizedKeyArgs;
    type Observed = KeysObserved;
    type Changes = KeysWork;

    fn observe<'a>(
        &'a self,
        a: &'a AuthorizedKeyArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<KeysObserved, String>> {
        Box::pin(async move {
            url_key(&a.key)?;
            if a.follow {
                return Err("authorized_key: follow: true is not supported yet by deployer".into());
            }
            if !valid_account_name(&a.user) {
                return Err(format!("'{}' is not a valid user name", a.user));
            }
            let u = shell_quote(&a.user);
            let path = a.path.as_deref().map(shell_quote);
            let file = match &path {
                Some(p) => p.clone(),
                None => "\"$(printf '%s' \"$p\" | cut -d: -f6)/.ssh/authorized_keys\"".into(),
            };
            let script = format!(
                "p=$(getent passwd -- {u}) && printf '{MARK}P\\t%s\\n' \"$p\"\n\
                 if [ -n \"$p\" ] || [ -n {has_path} ]; then f={file}; if [ -f \"$f\" ]; then echo '{MARK}F'; cat -- \"$f\"; fi; fi\n\
                 exit 0\n",
                has_path = shell_quote(if path.is_some() { "1" } else { "" }),
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let stdout = out.stdout_str();
            let mut o = KeysObserved::default();
            let mut rest = stdout.as_str();
            if let Some(l) = rest.strip_prefix(&format!("{MARK}P\t")) {
                let (line, after) = l.split_once('\n').unwrap_or((l, ""));
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 7 {
                    o.user = Some((
                        f[2].parse().unwrap_or(u64::MAX),
                        f[3].parse().unwrap_or(u64::MAX),
                        f[5].to_string(),
                    ));
                }
                rest = after;
            }
            if let Some(content) = rest.strip_prefix(&format!("{MARK}F\n")) {
                o.file = content.to_string();
            }
            Ok(o)
        })
    }

    fn plan(
        &self,
        a: AuthorizedKeyArgs,
        o: KeysObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<KeysWork>, String> {
        let Some(file) = keyfile(&a, o.user.as_ref().map(|u| u.2.as_str())) else {
            return Ok(Plan::unchanged(ModuleResult::failed(if ctx.check {
                "Either user must exist or you must provide full path to key file in check mode"
                    .to_string()
            } else {
                format!(
                    "Failed to lookup user {}: \"getpwnam(): name not found: '{}'\"",
                    a.user, a.user
                )
            })));
        };
        let mut r = ModuleResult::ok();
        for (k, v) in [
            ("user", json!(a.user)),
            ("key", json!(a.key)),
            ("path", json!(a.path)),
            ("manage_dir", json!(a.manage_dir)),
            (
                "state",
                json!(match a.state {
                    KeyState::Present => "present",
                    KeyState::Absent => "absent",
                }),
            ),
            ("key_options", json!(a.key_options)),
            ("exclusive", json!(a.exclusive)),
            ("comment", json!(a.comment)),
            ("validate_certs", json!(a.validate_certs)),
            ("follow", json!(a.follow)),
            ("keyfile", json!(file)),
        ] {
            r.data.insert(k.into(), v);
        }
        let new = match plan_keys(&a, &o.file) {
            Ok(n) => n,
            Err(e) => return Ok(Plan::unchanged(ModuleResult::failed(e))),
        };
        let Some(content) = new else {
            return Ok(Plan::unchanged(r));
        };
        let Some((uid, gid, _)) = o.user else {
            if ctx.check {
                r.changed = true;
                return Ok(Plan::unchanged(r));
            }
            return Ok(Plan::unchanged(ModuleResult::failed(format!(
                "Failed to lookup user {}: \"getpwnam(): name not found: '{}'\"",
                a.user, a.user
            ))));
        };
        r.changed = true;
        if ctx.diff {
            r.diffs.push(FileDiff {
                path: file.clone(),
                before: Some(o.file.clone()),
                after: Some(content.clone()),
                attributes: Vec::new(),
                note: None,
            });
        }
        Ok(Plan {
            result: r,
            changes: Some(KeysWork {
                file,
                content,
                uid,
                gid,
                manage_dir: a.manage_dir,
            }),
        })
    }

    fn apply<'a>(
        &'a self,
        w: KeysWork,
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let uid = w.uid.to_string();
            let gid = w.gid.to_string();
            let mut script = String::from("set -e\n");
            let dir = std::path::Path::new(&w.file)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| ".".into());
            if w.manage_dir {
                script.push_str(&format!(
                    "[ -e {d} ] || mkdir -m 0700 -- {d}\n",
                    d = shell_quote(&dir)
                ));
                script.push_str(&attributes_script(
                    &dir,
                    &PathAttrs {
                        owner: Some(&uid),
                        group: Some(&gid),
                        mode: Some(0o700),
                    },
                    false,
                )?);
            } else {
                script.push_str(&format!("mkdir -p -- {}\n", shell_quote(&dir)));
            }
            let write = RemoteWrite::new(&w.file, w.content.as_bytes())
                .owner(Some(&uid))
                .group(Some(&gid))
                .mode(Some(0o600));
            script.push_str(&ctx.release_save(&w.file));
            script.push_str(&write.script()?);
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            ctx.release_saved(&w.file, &out.stdout_str());
            if out.rc != 0 {
                r.failed = true;
                r.msg = Some(format!(
                    "writing {} failed: {}",
                    w.file,
                    out.stderr_str().trim()
                ));
            }
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(key: &str) -> AuthorizedKeyArgs {
        AuthorizedKeyArgs {
            user: "u".into(),
            key: key.into(),
            manage_dir: true,
            validate_certs: true,
            ..Default::default()
        }
    }

    #[test]
    fn merges_as_the_collection_does() {
        let k1 = "ssh-ed25519 AAAA1 alice@a";
        let k2 = "ssh-ed25519 AAAA2";
        let file = "# keys\nssh-rsa BBBB bob\n";
        let out = plan_keys(&args(k1), file).unwrap().unwrap();
        assert_eq!(out, "# keys\nssh-rsa BBBB bob\nssh-ed25519 AAAA1 alice@a\n");
        assert!(plan_keys(&args(k1), &out).unwrap().is_none());
        // No comment: Ansible writes a trailing space.
        assert_eq!(
            plan_keys(&args(k2), "").unwrap().unwrap(),
            "ssh-ed25519 AAAA2 \n"
        );
        let mut a = args(k1);
        a.key_options = Some("no-pty,from=\"10.0.0.1,10.0.0.2\"".into());
        let with = plan_keys(&a, &out).unwrap().unwrap();
        assert_eq!(
            with,
            "# keys\nssh-rsa BBBB bob\nno-pty,from=\"10.0.0.1,10.0.0.2\" ssh-ed25519 AAAA1 alice@a\n"
        );
        let mut a = args(k1);
        a.exclusive = true;
        assert_eq!(
            plan_keys(&a, &out).unwrap().unwrap(),
            "ssh-ed25519 AAAA1 alice@a\n"
        );
        let mut a = args(k1);
        a.state = KeyState::Absent;
        assert_eq!(
            plan_keys(&a, &out).unwrap().unwrap(),
            "# keys\nssh-rsa BBBB bob\n"
        );
        assert!(plan_keys(&args("not a key"), "").is_err());
    }
}
