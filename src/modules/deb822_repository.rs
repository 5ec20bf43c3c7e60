//! `deb822_repository`: an APT source in the deb822 format, as Ansible's
//! `ansible.builtin.deb822_repository` writes it: the file
//! `/etc/apt/sources.list.d/<slug>.sources` (the slug made from `name` as
//! Ansible makes it) holds one stanza, fields in the order of the arguments'
//! names (`X-Repolib-Name` for `name`, `URIs`, the rest title-cased),
//! booleans `yes`/`no`, lists space-separated, multi-line values (an inline
//! `signed_by` key) indented with `.` for empty lines. `changed` when the
//! text or the mode differs; written with [`RemoteWrite`]. `absent` removes
//! the file and the `.asc`/`.gpg` key files of the slug in `/etc/apt/keyrings`.
//!
//! Supported: every deb822 argument (`allow_downgrade_to_insecure`,
//! `allow_insecure`, `allow_weak`, `architectures`, `by_hash`, `check_date`,
//! `check_valid_until`, `components`, `date_max_future`, `enabled`,
//! `inrelease_path`, `languages`, `name`, `pdiffs`, `signed_by` (a key file
//! on the host or the key itself), `suites`, `targets`, `trusted`, `types`,
//! `uris`), `mode` (octal), `state`. Returns `repo`, `dest`,
//! `key_filename`. Not supported yet: a URL as `signed_by` (a key downloaded):
//! the task fails saying so.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::apt_repository::write_all;
use super::args::{Mode, de_opt_bool, de_opt_list, de_opt_mode, de_opt_string, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Deb822State {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Deb822Args {
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub allow_downgrade_to_insecure: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub allow_insecure: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub allow_weak: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub by_hash: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub check_date: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub check_valid_until: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub components: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub date_max_future: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub inrelease_path: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub languages: Option<Vec<String>>,
    #[serde(deserialize_with = "de_string")]
    pub name: String,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub pdiffs: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub signed_by: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub suites: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub targets: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub trusted: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub uris: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_mode")]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub state: Deb822State,
}

pub struct Deb822Repository;

impl Module for Deb822Repository {
    fn name(&self) -> &'static str {
        "deb822_repository"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.deb822_repository"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<Deb822Args>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") {
            return Err("missing required argument: name".into());
        }
        if let Some(Json::Array(types)) = args.get("types") {
            for t in types {
                if let Some(s) = t.as_str()
                    && !s.contains("{{")
                    && s != "deb"
                    && s != "deb-src"
                {
                    return Err(format!(
                        "value of types must be one or more of: deb, deb-src. Got no match for: {s}"
                    ));
                }
            }
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Ansible's slug of `name`: lower case, `_` and white space runs to `-`,
/// then only `[a-z0-9-]` kept.
fn slug(name: &str) -> String {
    let lower = name.to_lowercase();
    let mut dashed = String::new();
    let mut in_run = false;
    for c in lower.chars() {
        if c == '_' || c.is_whitespace() {
            if !in_run {
                dashed.push('-');
            }
            in_run = true;
        } else {
            dashed.push(c);
            in_run = false;
        }
    }
    dashed
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect()
}

fn field_name(arg: &str) -> String {
    match arg {
        "name" => "X-Repolib-Name".into(),
        "uris" => "URIs".into(),
        _ => arg
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// `format_multiline`: a new line, then each line indented, `.` for blanks.
fn multiline(v: &str) -> String {
    let lines: Vec<String> = v
        .trim()
        .lines()
        .map(|l| {
            let t = l.trim();
            format!("    {}", if t.is_empty() { "." } else { t })
        })
        .collect();
    format!("\n{}", lines.join("\n"))
}

/// The stanza Ansible writes (python-debian's `Deb822.dump`).
fn stanza(a: &Deb822Args) -> String {
    let b = |v: Option<bool>| v.map(|v| if v { "yes" } else { "no" }.to_string());
    let l = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.join(" "));
    // In the order of the argument names (sorted), as Ansible iterates them.
    let fields: Vec<(&str, Option<String>)> = vec![
        (
            "allow_downgrade_to_insecure",
            b(a.allow_downgrade_to_insecure),
        ),
        ("allow_insecure", b(a.allow_insecure)),
        ("allow_weak", b(a.allow_weak)),
        ("architectures", l(&a.architectures)),
        ("by_hash", b(a.by_hash)),
        ("check_date", b(a.check_date)),
        ("check_valid_until", b(a.check_valid_until)),
        ("components", l(&a.components)),
        ("date_max_future", a.date_max_future.clone()),
        ("enabled", b(a.enabled)),
        ("inrelease_path", a.inrelease_path.clone()),
        ("languages", l(&a.languages)),
        ("name", Some(a.name.clone())),
        ("pdiffs", b(a.pdiffs)),
        ("signed_by", a.signed_by.clone()),
        ("suites", l(&a.suites)),
        ("targets", l(&a.targets)),
        ("trusted", b(a.trusted)),
        (
            "types",
            Some(
                a.types
                    .clone()
                    .unwrap_or_else(|| vec!["deb".into()])
                    .join(" "),
            ),
        ),
        ("uris", l(&a.uris)),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        let Some(mut v) = v else { continue };
        if v.contains('\n') {
            v = multiline(&v);
        }
        if v.is_empty() || v.starts_with('\n') {
            out.push_str(&format!("{}:{v}\n", field_name(k)));
        } else {
            out.push_str(&format!("{}: {v}\n", field_name(k)));
        }
    }
    out
}

/// What was read: the sources file (text, mode) and which key files exist.
pub struct Observed {
    current: Option<(String, u32)>,
    /// The file's `uid gid owner group nlink`, as `stat` prints them.
    owner: Option<String>,
    key_files: Vec<String>,
    /// `signed_by` names a file on the host.
    signed_by_is_file: bool,
}

pub enum Change {
    Write(String, u32),
    Remove(Vec<String>),
}

impl PlanApply for Deb822Repository {
    type Args = Deb822Args;
    type Observed = Observed;
    type Changes = (String, Change);

    fn observe<'a>(
        &'a self,
        a: &'a Deb822Args,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<Observed, String>> {
        Box::pin(async move {
            let s = slug(&a.name);
            let dest = format!("/etc/apt/sources.list.d/{s}.sources");
            let keys = [
                format!("/etc/apt/keyrings/{s}.asc"),
                format!("/etc/apt/keyrings/{s}.gpg"),
            ];
            let signed = a
                .signed_by
                .as_deref()
                .map(shell_quote)
                .unwrap_or_else(|| "''".into());
            let script = format!(
                "d={d}\nif [ -f \"$d\" ]; then printf 'M %s\\n' \"$(stat -c '%a %u %g %U %G %h' \"$d\")\"; base64 -w0 < \"$d\"; echo; fi\n\
                 for k in {k0} {k1}; do [ -e \"$k\" ] && printf 'K %s\\n' \"$k\"; done\n\
                 [ -n {signed} ] && [ -f {signed} ] && echo S\ntrue\n",
                d = shell_quote(&dest),
                k0 = shell_quote(&keys[0]),
                k1 = shell_quote(&keys[1]),
            );
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(format!(
                    "deb822_repository: reading {dest} failed: {}",
                    out.stderr_str().trim()
                ));
            }
            let text = out.stdout_str();
            let mut lines = text.lines();
            let mut o = Observed {
                current: None,
                owner: None,
                key_files: Vec::new(),
                signed_by_is_file: false,
            };
            while let Some(l) = lines.next() {
                if let Some(m) = l.strip_prefix("M ") {
                    let (m, owner) = m.split_once(' ').unwrap_or((m, ""));
                    o.owner = Some(owner.to_string());
                    let mode = u32::from_str_radix(m.trim(), 8).unwrap_or(0);
                    let b = lines.next().unwrap_or("");
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .map_err(|e| format!("deb822_repository: bad read of {dest}: {e}"))?;
                    o.current = Some((String::from_utf8_lossy(&bytes).into_owned(), mode));
                } else if let Some(k) = l.strip_prefix("K ") {
                    o.key_files.push(k.to_string());
                } else if l == "S" {
                    o.signed_by_is_file = true;
                }
            }
            Ok(o)
        })
    }

    fn plan(
        &self,
        a: Deb822Args,
        o: Observed,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<Self::Changes>, String> {
        let s = slug(&a.name);
        let dest = format!("/etc/apt/sources.list.d/{s}.sources");
        let mut r = ModuleResult::ok();
        r.data.insert("dest".into(), json!(dest));
        if a.state == Deb822State::Absent {
            r.data.insert("repo".into(), Json::Null);
            r.data.insert(
                "key_filename".into(),
                json!(format!("/etc/apt/keyrings/{s}.gpg")),
            );
            if ctx.check
                && let (Some((text, mode)), Some(owner)) = (&o.current, &o.owner)
            {
                path_info(&mut r, *mode, owner, text.len());
            }
            let mut gone = o.key_files.clone();
            if o.current.is_some() {
                gone.insert(0, dest.clone());
            }
            if gone.is_empty() {
                return Ok(Plan::unchanged(r));
            }
            r.changed = true;
            return Ok(Plan {
                result: r,
                changes: Some((dest, Change::Remove(gone))),
            });
        }
        let mode = match &a.mode {
            None => 0o644,
            Some(Mode::Octal(m)) => *m,
            Some(Mode::Symbolic(m)) => {
                return Ok(Plan::unchanged(ModuleResult::failed(format!(
                    "deb822_repository: symbolic mode '{m}' is not supported yet by deployer: give an octal mode such as '0644'"
                ))));
            }
        };
        if let Some(v) = &a.signed_by
            && !o.signed_by_is_file
            && regex::Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*:")
                .map(|re| re.is_match(v))
                .unwrap_or(false)
        {
            return Ok(Plan::unchanged(ModuleResult::failed(format!(
                "deb822_repository: signed_by '{v}' is a URL: keys downloaded from a URL are not supported yet by deployer (give the key itself or a file on the host)"
            ))));
        }
        let repo = stanza(&a);
        r.data.insert("repo".into(), json!(repo));
        r.data.insert("key_filename".into(), Json::Null);
        let same_text = o.current.as_ref().map(|(t, _)| t) == Some(&repo);
        let same_mode = o.current.as_ref().map(|(_, m)| *m) == Some(mode);
        if let (Some((text, m)), Some(owner)) = (&o.current, &o.owner) {
            path_info(&mut r, *m, owner, text.len());
        }
        if same_text && same_mode {
            return Ok(Plan::unchanged(r));
        }
        r.changed = true;
        if ctx.diff && !same_text {
            r.diffs.push(FileDiff {
                path: dest.clone(),
                before: o.current.as_ref().map(|(t, _)| t.clone()),
                after: Some(repo.clone()),
                attributes: Vec::new(),
                note: None,
            });
        }
        Ok(Plan {
            result: r,
            changes: Some((dest, Change::Write(repo, mode))),
        })
    }

    fn apply<'a>(
        &'a self,
        (dest, change): Self::Changes,
        r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let mut r = r;
            let written = matches!(change, Change::Write(..));
            let writes: Vec<(String, Option<String>, Option<u32>)> = match change {
                Change::Write(text, mode) => vec![(dest.clone(), Some(text), Some(mode))],
                Change::Remove(paths) => paths.into_iter().map(|p| (p, None, None)).collect(),
            };
            if let Err(m) = write_all(ctx, &writes).await? {
                return Ok(ModuleResult::failed(m));
            }
            if written {
                let out = ctx
                    .conn
                    .run_script(
                        &format!("stat -c '%a %s %u %g %U %G %h' {}\n", shell_quote(&dest)),
                        ctx.become_.as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let text = out.stdout_str();
                let mut f = text.trim().splitn(3, ' ');
                let mode = u32::from_str_radix(f.next().unwrap_or("0"), 8).unwrap_or(0);
                let size: usize = f.next().unwrap_or("0").parse().unwrap_or(0);
                path_info(&mut r, mode, f.next().unwrap_or(""), size);
            }
            Ok(r)
        })
    }
}

/// What Ansible's `add_path_info` adds for a result's `dest` that exists:
/// `owner` is `stat`'s `uid gid user group nlink`.
fn path_info(r: &mut ModuleResult, mode: u32, owner: &str, size: usize) {
    let f: Vec<&str> = owner.split(' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    r.data.insert("uid".into(), json!(num(0)));
    r.data.insert("gid".into(), json!(num(1)));
    r.data
        .insert("owner".into(), json!(f.get(2).copied().unwrap_or("")));
    r.data
        .insert("group".into(), json!(f.get(3).copied().unwrap_or("")));
    r.data
        .insert("mode".into(), json!(format!("0{:03o}", mode & 0o7777)));
    r.data.insert(
        "state".into(),
        json!(if num(4) > 1 { "hard" } else { "file" }),
    );
    r.data.insert("size".into(), json!(size));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_fields_and_stanzas() {
        assert_eq!(slug("Docker CE_stable  repo!"), "docker-ce-stable-repo");
        assert_eq!(
            field_name("allow_downgrade_to_insecure"),
            "Allow-Downgrade-To-Insecure"
        );
        assert_eq!(field_name("uris"), "URIs");
        assert_eq!(multiline("a\n\n b \n"), "\n    a\n    .\n    b");
    }
}
