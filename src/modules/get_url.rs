//! `get_url`: a file downloaded by the host itself (its `curl`), as Ansible's
//! `ansible.builtin.get_url` decides: an existing `dest` is kept without a
//! request when `checksum` matches (and `force` is off); otherwise a
//! conditional request (`If-Modified-Since` the file's time) that the server
//! may answer "304 Not Modified"; a download that equals the file changes
//! nothing. Check mode asks with `HEAD` and writes nothing.
//!
//! The download lands in the private staging directory of
//! [`crate::connection::write::RemoteWrite`] (owner and mode set before the
//! rename; a link at `dest` replaced, never followed), and its checksum is
//! verified there before anything is replaced. URL, headers and credentials
//! reach curl through a config file in that directory, never its argv.
//!
//! Supported: `url`, `dest`, `checksum` (`<algorithm>:<hex>` with md5, sha1,
//! sha224, sha256, sha384, sha512), `force`, `backup`, `timeout`, `headers`,
//! `url_username` (`username`), `url_password` (`password`),
//! `force_basic_auth`, `validate_certs`, `use_proxy`, `http_agent`,
//! `decompress`, `mode` (octal), `owner`, `group`. Not supported yet
//! (load-time error): `tmp_dest`, `unredirected_headers`, `ciphers`,
//! `use_netrc`, `use_gssapi`, `client_cert`, `client_key`, `checksum` given
//! as a URL, symbolic modes, `seuser`/`serole`/`setype`/`selevel`,
//! `attributes`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{Mode, de_bool, de_opt_mode, de_opt_string, de_opt_u64, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;
use crate::connection::write::{PathAttrs, RemoteWrite, attributes_script};

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct GetUrlArgs {
    #[serde(deserialize_with = "de_string")]
    pub url: String,
    #[serde(deserialize_with = "de_string")]
    pub dest: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub checksum: Option<String>,
    #[serde(default, alias = "thirsty", deserialize_with = "de_bool")]
    pub force: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub headers: Option<Map<String, Json>>,
    #[serde(default, alias = "username", deserialize_with = "de_opt_string")]
    pub url_username: Option<String>,
    #[serde(default, alias = "password", deserialize_with = "de_opt_string")]
    pub url_password: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub force_basic_auth: bool,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub validate_certs: bool,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub use_proxy: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub http_agent: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    pub decompress: bool,
    #[serde(default, deserialize_with = "de_opt_mode")]
    pub mode: Option<Mode>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub group: Option<String>,
}

pub struct GetUrl;

impl Module for GetUrl {
    fn name(&self) -> &'static str {
        "get_url"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.get_url"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<GetUrlArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        for k in ["url", "dest"] {
            if !args.contains_key(k) {
                return Err(format!("missing required argument: {k}"));
            }
        }
        if let Some(Json::String(m)) = super::args::literal(args, "mode")
            && !m.chars().all(|c| c.is_ascii_digit())
        {
            return Err(format!(
                "mode '{m}': symbolic modes are not supported yet by deployer on get_url"
            ));
        }
        if let Some(Json::String(c)) = super::args::literal(args, "checksum") {
            parse_checksum(c)?;
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// `<algorithm>:<hex>` into the coreutils program and the lower-case digest.
fn parse_checksum(c: &str) -> Result<(&'static str, String), String> {
    let (alg, sum) = c
        .split_once(':')
        .ok_or("The checksum parameter has to be in format <algorithm>:<checksum>")?;
    if sum.starts_with("http://") || sum.starts_with("https://") || sum.starts_with("ftp://") {
        return Err("a checksum given as a URL is not supported yet by deployer".into());
    }
    let prog = match alg {
        "md5" => "md5sum",
        "sha1" => "sha1sum",
        "sha224" => "sha224sum",
        "sha256" => "sha256sum",
        "sha384" => "sha384sum",
        "sha512" => "sha512sum",
        other => {
            return Err(format!(
                "checksum algorithm '{other}' is not supported (md5, sha1, sha224, sha256, sha384, sha512)"
            ));
        }
    };
    let sum: String = sum
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_lowercase();
    if sum.is_empty() || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("The checksum format is invalid".into());
    }
    Ok((prog, sum))
}

/// The file name a download into a directory gets: the URL path's last part.
fn url_filename(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() {
        "index.html".into()
    } else {
        name.to_string()
    }
}

/// A double-quoted curl config value.
fn curl_quote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// curl's config for the request (`head`: check mode's HEAD); `since`: a
/// file whose time makes the request conditional.
fn curl_config(a: &GetUrlArgs, head: bool, since: Option<&str>) -> Result<String, String> {
    let mut cfg = String::new();
    if head {
        cfg.push_str("head\n");
    }
    cfg.push_str("location\n");
    cfg.push_str(&format!("max-time = {}\n", a.timeout.unwrap_or(10)));
    if !a.validate_certs {
        cfg.push_str("insecure\n");
    }
    if !a.use_proxy {
        cfg.push_str("noproxy = \"*\"\n");
    }
    if a.decompress {
        cfg.push_str("compressed\n");
    }
    cfg.push_str(&format!(
        "user-agent = {}\n",
        curl_quote(a.http_agent.as_deref().unwrap_or("ansible-httpget"))
    ));
    if let Some(u) = &a.url_username {
        let p = a.url_password.clone().unwrap_or_default();
        cfg.push_str(&format!("user = {}\n", curl_quote(&format!("{u}:{p}"))));
        if a.force_basic_auth {
            cfg.push_str("basic\n");
        }
    }
    for (k, v) in a.headers.iter().flatten() {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(format!("get_url: header '{k}' must be one line"));
        }
        cfg.push_str(&format!("header = {}\n", curl_quote(&format!("{k}: {v}"))));
    }
    if let Some(f) = since {
        cfg.push_str(&format!("time-cond = {}\n", curl_quote(f)));
    }
    cfg.push_str(&format!("url = {}\n", curl_quote(&a.url)));
    Ok(base64::engine::general_purpose::STANDARD.encode(cfg))
}

/// The destination as found.
#[derive(Debug, Default, Clone)]
pub struct DestState {
    pub is_dir: bool,
    pub exists: bool,
    pub parent_dir: bool,
    /// Mode (octal text), owner, group.
    pub attrs: Option<(String, String, String)>,
    /// `stat`'s mode, owner, group, uid, gid, size (Ansible's path info).
    pub stat_line: Option<String>,
    /// The `checksum` algorithm's digest of the existing file.
    pub digest: Option<String>,
}

#[derive(Debug, Default)]
pub struct GetUrlObserved {
    pub dest: DestState,
    /// Check mode's (or a conditional) HEAD: status, or curl's error.
    pub head: Option<Result<u16, String>>,
}

const MARK: &str = "__deployer_get_url__";

fn stat_script(dest: &str, digest_prog: Option<&str>) -> String {
    let d = shell_quote(dest);
    let dig = digest_prog
        .map(|p| format!("printf '{MARK}D\\t%s\\n' \"$({p} < {d} | cut -d' ' -f1)\"\n"))
        .unwrap_or_default();
    format!(
        "if [ -d {d} ]; then echo '{MARK}dir'\n\
         elif [ -f {d} ]; then echo '{MARK}file'; stat -c '{MARK}A\t%a\t%U\t%G\t%u\t%g\t%s' -- {d}\n{dig}\
         fi\n\
         [ -d \"$(dirname -- {d})\" ] && echo '{MARK}parent'\n\
         exit 0\n"
    )
}

fn parse_stat(out: &str) -> DestState {
    let mut s = DestState::default();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix(MARK) else {
            continue;
        };
        match rest {
            "dir" => s.is_dir = true,
            "file" => s.exists = true,
            "parent" => s.parent_dir = true,
            _ => {
                if let Some(a) = rest.strip_prefix("A\t") {
                    let f: Vec<&str> = a.split('\t').collect();
                    if f.len() == 6 {
                        s.attrs = Some((f[0].into(), f[1].into(), f[2].into()));
                        s.stat_line = Some(a.to_string());
                    }
                } else if let Some(d) = rest.strip_prefix("D\t") {
                    s.digest = Some(d.trim().to_string());
                }
            }
        }
    }
    s
}

/// Whether owner, group or mode differ from the file's (None: no file).
fn attrs_differ(a: &GetUrlArgs, d: &DestState) -> bool {
    let Some((mode, owner, group)) = &d.attrs else {
        return false;
    };
    let mode_differs = match &a.mode {
        Some(Mode::Octal(m)) => u32::from_str_radix(mode, 8).ok() != Some(*m),
        _ => false,
    };
    mode_differs
        || a.owner
            .as_ref()
            .is_some_and(|o| o != owner && !is_id_of(o, owner))
        || a.group
            .as_ref()
            .is_some_and(|g| g != group && !is_id_of(g, group))
}

/// A numeric owner can only be compared by name on the host: treat it as
/// different (the attribute script then makes it so).
fn is_id_of(_id: &str, _name: &str) -> bool {
    false
}

/// What the download does, decided by `plan`.
pub enum GetUrlWork {
    /// Download (conditionally on `since`) into `dest`.
    Fetch { dest: String, since: bool },
    /// Only owner, group or mode.
    Attributes { dest: String },
}

fn octal(a: &GetUrlArgs) -> Option<u32> {
    match &a.mode {
        Some(Mode::Octal(m)) => Some(*m),
        _ => None,
    }
}

impl PlanApply for GetUrl {
    type Args = GetUrlArgs;
    type Observed = GetUrlObserved;
    type Changes = (GetUrlArgs, GetUrlWork);

    fn observe<'a>(
        &'a self,
        a: &'a GetUrlArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<GetUrlObserved, String>> {
        Box::pin(async move {
            if let Some(Mode::Symbolic(m)) = &a.mode {
                return Err(format!(
                    "mode '{m}': symbolic modes are not supported yet by deployer on get_url"
                ));
            }
            let checksum = match a.checksum.as_deref().filter(|c| !c.is_empty()) {
                Some(c) => Some(parse_checksum(c)?),
                None => None,
            };
            let out = ctx
                .conn
                .run_script(
                    &stat_script(&a.dest, checksum.as_ref().map(|c| c.0)),
                    ctx.become_.as_ref(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let dest = parse_stat(&out.stdout_str());
            let early = dest.exists
                && !a.force
                && checksum
                    .as_ref()
                    .is_some_and(|(_, sum)| dest.digest.as_deref() == Some(sum.as_str()));
            // Check mode asks the server (HEAD), as Ansible does; a real run
            // asks with the download itself.
            let head = if ctx.check && !early {
                let since = (dest.exists && !a.force && !dest.is_dir).then_some(a.dest.as_str());
                let cfg = curl_config(a, true, since)?;
                let script = format!(
                    "command -v curl >/dev/null || {{ echo 'get_url needs curl on the host' >&2; exit 127; }}\n\
                     umask 077\nd=$(mktemp -d)\ntrap 'rm -rf -- \"$d\"' EXIT\ncd \"$d\"\n\
                     printf '%s' '{cfg}' | base64 -d > cfg\n\
                     curl -sS -o /dev/null -w '%{{http_code}}' -K cfg </dev/null\n"
                );
                let o = ctx
                    .conn
                    .run_script(&script, ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                Some(if o.rc == 0 {
                    Ok(o.stdout_str().trim().parse().unwrap_or(0))
                } else {
                    Err(o.stderr_str().trim().to_string())
                })
            } else {
                None
            };
            Ok(GetUrlObserved { dest, head })
        })
    }

    fn plan(
        &self,
        a: GetUrlArgs,
        o: GetUrlObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<(GetUrlArgs, GetUrlWork)>, String> {
        let mut r = ModuleResult::ok();
        r.data.insert("dest".into(), json!(a.dest));
        r.data.insert("url".into(), json!(a.url));
        r.data.insert("elapsed".into(), json!(0));
        let checksum = match a.checksum.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(parse_checksum(c)?),
            None => None,
        };
        let d = &o.dest;
        if d.exists
            && !a.force
            && checksum
                .as_ref()
                .is_some_and(|(_, sum)| d.digest.as_deref() == Some(sum.as_str()))
        {
            r.data.insert("checksum_dest".into(), Json::Null);
            r.data.insert("checksum_src".into(), Json::Null);
            if attrs_differ(&a, d) {
                r.changed = true;
                r.msg = Some("file already exists but file attributes changed".into());
                let dest = a.dest.clone();
                return Ok(Plan {
                    result: r,
                    changes: Some((a, GetUrlWork::Attributes { dest })),
                });
            }
            r.msg = Some("file already exists".into());
            if let Some(l) = &d.stat_line {
                path_info(&mut r, l);
            }
            return Ok(Plan::unchanged(r));
        }
        if !d.is_dir && !d.exists && !d.parent_dir {
            let parent = std::path::Path::new(&a.dest)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Ok(Plan::unchanged(ModuleResult::failed(format!(
                "Destination {parent} does not exist"
            ))));
        }
        let dest = if d.is_dir {
            format!("{}/{}", a.dest.trim_end_matches('/'), url_filename(&a.url))
        } else {
            a.dest.clone()
        };
        let since = d.exists && !a.force && !d.is_dir;
        if ctx.check {
            match &o.head {
                Some(Ok(304)) => {
                    r.msg = Some("HTTP Error 304: Not Modified".into());
                    r.data.insert("status_code".into(), json!(304));
                    return Ok(Plan::unchanged(r));
                }
                Some(Ok(200)) => {}
                Some(Ok(s)) => {
                    let mut f = ModuleResult::failed("Request failed");
                    f.data = r.data;
                    f.data.insert("status_code".into(), json!(s));
                    return Ok(Plan::unchanged(f));
                }
                Some(Err(e)) => {
                    let mut f = ModuleResult::failed(e.clone());
                    f.data = r.data;
                    return Ok(Plan::unchanged(f));
                }
                None => {}
            }
            // As Ansible: HEAD's empty body against the file: changed.
            r.changed = true;
            r.data.insert("dest".into(), json!(dest));
        }
        Ok(Plan {
            result: r,
            changes: Some((a, GetUrlWork::Fetch { dest, since })),
        })
    }

    fn apply<'a>(
        &'a self,
        (a, work): (GetUrlArgs, GetUrlWork),
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let attrs = PathAttrs {
                owner: a.owner.as_deref(),
                group: a.group.as_deref(),
                mode: octal(&a),
            };
            let dest = match work {
                GetUrlWork::Attributes { dest } => {
                    let s = attributes_script(&dest, &attrs, false)?;
                    let out = ctx
                        .conn
                        .run_script(&s, ctx.become_.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                    if out.rc != 0 {
                        return Ok(ModuleResult::failed(out.stderr_str().trim().to_string()));
                    }
                    dest
                }
                GetUrlWork::Fetch { dest, since } => {
                    let checksum = match a.checksum.as_deref().filter(|c| !c.is_empty()) {
                        Some(c) => Some(parse_checksum(c)?),
                        None => None,
                    };
                    let cfg = curl_config(&a, false, since.then_some(dest.as_str()))?;
                    let verify = checksum
                        .map(|(prog, sum)| {
                            format!(
                                "__gu_sum=$({prog} < new | cut -d' ' -f1)\n\
                                 if [ \"$__gu_sum\" != {q} ]; then printf 'The checksum for %s did not match %s; it was %s.\\n' {u} {q} \"$__gu_sum\" >&2; exit 5; fi\n",
                                q = shell_quote(&sum),
                                u = shell_quote(&a.url),
                            )
                        })
                        .unwrap_or_default();
                    let produce = format!(
                        "command -v curl >/dev/null || __dw_fail 'get_url needs curl on the host'\n\
                         printf '%s' '{cfg}' | base64 -d > cfg\n\
                         __gu_s=$(curl -sS -o new -w '%{{http_code}} %{{size_download}}' -K cfg </dev/null) || {{ rm -f cfg; exit 4; }}\n\
                         rm -f cfg\n\
                         case $__gu_s in\n\
                         '304 '*) printf 'N\\t304\\n'; exit 0 ;;\n\
                         '200 '*) ;;\n\
                         *) printf 'F\\t%s\\n' \"${{__gu_s%% *}}\"; exit 0 ;;\n\
                         esac\n\
                         printf 'Z\\t%s\\n' \"${{__gu_s#* }}\"\n\
                         printf 'K\\t%s\\n' \"$(sha1sum < new | cut -d' ' -f1)\"\n\
                         if [ -f \"../$__dw_name\" ]; then printf 'O\\t%s\\n' \"$(sha1sum < \"../$__dw_name\" | cut -d' ' -f1)\"; fi\n\
                         {verify}"
                    );
                    let w = RemoteWrite::new(&dest, b"")
                        .owner(attrs.owner)
                        .group(attrs.group)
                        .mode(attrs.mode)
                        .backup(a.backup)
                        .produce(Some(&produce))
                        .keep_if_same(true);
                    let script = format!("{}{}", ctx.release_save(&dest), w.script()?);
                    let out = ctx
                        .conn
                        .run_script(&script, ctx.become_.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                    let stdout = out.stdout_str();
                    ctx.release_saved(&dest, &stdout);
                    let field = |k: &str| {
                        stdout
                            .lines()
                            .find_map(|l| l.strip_prefix(&format!("{k}\t")))
                            .map(str::to_string)
                    };
                    if out.rc != 0 {
                        let mut f = ModuleResult::failed(out.stderr_str().trim().to_string());
                        f.data = r.data;
                        return Ok(f);
                    }
                    if let Some(code) = field("F") {
                        let mut f = ModuleResult::failed("Request failed");
                        f.data = r.data;
                        f.data.insert(
                            "status_code".into(),
                            json!(code.parse::<u16>().unwrap_or(0)),
                        );
                        return Ok(f);
                    }
                    if field("N").is_some() {
                        r.changed = false;
                        r.msg = Some("HTTP Error 304: Not Modified".into());
                        r.data.insert("status_code".into(), json!(304));
                        r.data.remove("checksum_src");
                        r.data.remove("checksum_dest");
                        let q = shell_quote(&dest);
                        let out = ctx
                            .conn
                            .run_script(
                                &format!("stat -c '%a\t%U\t%G\t%u\t%g\t%s' -- {q}\n"),
                                ctx.become_.as_ref(),
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                        path_info(&mut r, out.stdout_str().trim());
                        return Ok(r);
                    }
                    let same = field("U").is_some();
                    r.data.insert("dest".into(), json!(dest));
                    r.data
                        .insert("checksum_src".into(), json!(field("K").unwrap_or_default()));
                    r.data.insert("checksum_dest".into(), json!(field("O")));
                    r.data.insert("status_code".into(), json!(200));
                    r.msg = Some(format!("OK ({} bytes)", field("Z").unwrap_or_default()));
                    if let Some(b) = crate::connection::write::backup_file(&stdout) {
                        r.data.insert("backup_file".into(), json!(b));
                    }
                    r.changed = !same;
                    if same && !attrs.is_empty() {
                        let s = attributes_script(&dest, &attrs, false)?;
                        let before = stat_of(ctx, &dest).await?;
                        let out = ctx
                            .conn
                            .run_script(&s, ctx.become_.as_ref())
                            .await
                            .map_err(|e| e.to_string())?;
                        if out.rc != 0 {
                            return Ok(ModuleResult::failed(out.stderr_str().trim().to_string()));
                        }
                        r.changed = before != stat_of(ctx, &dest).await?;
                    }
                    dest
                }
            };
            // The file's attributes and md5, as Ansible adds them.
            let q = shell_quote(&dest);
            let out = ctx
                .conn
                .run_script(
                    &format!(
                        "stat -c '%a\t%U\t%G\t%u\t%g\t%s' -- {q}; md5sum < {q} | cut -d' ' -f1\n"
                    ),
                    ctx.become_.as_ref(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let text = out.stdout_str();
            let mut lines = text.lines();
            if let Some(st) = lines.next() {
                path_info(&mut r, st);
            }
            if let Some(md5) = lines.next() {
                r.data.insert("md5sum".into(), json!(md5.trim()));
            }
            Ok(r)
        })
    }
}

/// Ansible's path info in a result, from `stat -c '%a\t%U\t%G\t%u\t%g\t%s'`.
fn path_info(r: &mut ModuleResult, line: &str) {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != 6 {
        return;
    }
    r.data.insert("mode".into(), json!(format!("{:0>4}", f[0])));
    r.data.insert("owner".into(), json!(f[1]));
    r.data.insert("group".into(), json!(f[2]));
    r.data
        .insert("uid".into(), json!(f[3].parse::<u64>().unwrap_or(0)));
    r.data
        .insert("gid".into(), json!(f[4].parse::<u64>().unwrap_or(0)));
    r.data
        .insert("size".into(), json!(f[5].parse::<u64>().unwrap_or(0)));
    r.data.insert("state".into(), json!("file"));
}

/// Mode, owner and group of a path (to tell whether attributes changed).
async fn stat_of(ctx: &mut ModuleCtx<'_>, path: &str) -> Result<String, String> {
    let out = ctx
        .conn
        .run_script(
            &format!("stat -c '%a %u %g' -- {}\n", shell_quote(path)),
            ctx.become_.as_ref(),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(out.stdout_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_file_names() {
        assert_eq!(
            parse_checksum("sha256:AB12").unwrap(),
            ("sha256sum", "ab12".to_string())
        );
        assert!(parse_checksum("ab12").is_err());
        assert!(parse_checksum("crc:ab").is_err());
        assert!(parse_checksum("sha1:xyz").is_err());
        assert_eq!(url_filename("http://h:8/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_filename("http://h/"), "index.html");
        assert_eq!(url_filename("http://h"), "index.html");
    }
}
