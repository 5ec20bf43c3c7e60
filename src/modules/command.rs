//! Modules that run something on the host: command, shell, wait_for, uri.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::args::{de_bool, de_opt_string, de_opt_u64};
use super::observe::Want;
use super::registry::{ArgSchema, Module, ModuleFuture};
use super::{ModuleCtx, ModuleResult, parse_args};
use crate::connection::shell_quote;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    _raw_params: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    cmd: Option<String>,
    #[serde(default)]
    argv: Option<Vec<Json>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    chdir: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    creates: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    removes: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    executable: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    stdin: Option<String>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    stdin_add_newline: bool,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    strip_empty_ends: bool,
}

fn yes() -> bool {
    true
}

pub async fn command(
    args: Json,
    ctx: &mut ModuleCtx<'_>,
    shell: bool,
) -> Result<ModuleResult, String> {
    let module = if shell { "shell" } else { "command" };
    let a: CommandArgs = parse_args(module, args)?;
    let text = match (&a._raw_params, &a.cmd, &a.argv) {
        (Some(r), _, _) if !r.is_empty() => r.clone(),
        (_, Some(c), _) => c.clone(),
        (_, _, Some(argv)) if !shell => argv
            .iter()
            .map(|v| match v {
                Json::String(s) => shell_quote(s),
                other => shell_quote(&other.to_string()),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => return Err(format!("{module}: no command given")),
    };
    // creates/removes: Ansible skips the command when the condition already holds.
    for (path, want_exists) in [(&a.creates, true), (&a.removes, false)] {
        if let Some(p) = path {
            let exists = if p.contains(['*', '?', '[']) {
                // The pattern is expanded from a variable: globbing happens,
                // command substitution and word splitting do not.
                let o = ctx
                    .conn
                    .run_script(
                        &format!(
                            "__p={}\nIFS=\nfor f in $__p; do [ -e \"$f\" ] && exit 0; done; exit 1\n",
                            shell_quote(p)
                        ),
                        ctx.become_.as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                o.rc == 0
            } else {
                ctx.observed
                    .one(ctx.conn, ctx.become_.as_ref(), p, Want::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .exists
            };
            if exists == want_exists {
                let mut r = ModuleResult::ok();
                r.msg = Some(if want_exists {
                    format!("Did not run command since '{p}' exists")
                } else {
                    format!("Did not run command since '{p}' does not exist")
                });
                r.data.insert("cmd".into(), json!(text));
                r.data.insert("rc".into(), json!(0));
                r.data.insert(
                    "stdout".into(),
                    json!(format!(
                        "skipped, since {p} {}",
                        if want_exists {
                            "exists"
                        } else {
                            "does not exist"
                        }
                    )),
                );
                r.data.insert("stdout_lines".into(), json!([]));
                r.data.insert("stderr".into(), json!(""));
                r.data.insert("stderr_lines".into(), json!([]));
                return Ok(r);
            }
        }
    }
    if ctx.check {
        // Ansible does not run commands in check mode and reports them skipped.
        let mut r = ModuleResult::ok();
        r.skipped = true;
        r.msg = Some("Command would have run if not in check mode".into());
        return Ok(r);
    }
    let body = if shell {
        let exe = a.executable.clone().unwrap_or_else(|| "/bin/sh".into());
        format!("{} -c {}", shell_quote(&exe), shell_quote(&text))
    } else {
        let words = crate::shell::split(&text)
            .ok_or_else(|| format!("{module}: unbalanced quotes in '{text}'"))?;
        words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut script = ctx.environment_exports()?;
    if let Some(d) = &a.chdir {
        script.push_str(&format!("cd {} || exit 1\n", shell_quote(d)));
    }
    match &a.stdin {
        Some(input) => {
            let mut data = input.clone();
            if a.stdin_add_newline {
                data.push('\n');
            }
            // Base64 in a single-quoted word: no delimiter or quote in the
            // data can end it, and `printf` is a shell builtin (no argv).
            script.push_str(&format!(
                "printf '%s' '{}' | base64 -d | {body}\n",
                base64::engine::general_purpose::STANDARD.encode(data.as_bytes())
            ));
        }
        None => script.push_str(&format!("{body} </dev/null\n")),
    }
    // The command may create, change or remove any file (Ansible's later tasks
    // see that), so what was observed before is no longer trusted. When the
    // cached paths were read as the user the command runs as, the same execution
    // stats them right after the command (one process, no extra round trip):
    // what did not move keeps its observation, the rest is observed again when
    // a task asks for it.
    //
    // When the next task runs a command too, this one leaves that check to
    // it (`restamp_later`): its stat, after both, covers what either changed.
    let refresh = ctx
        .observed
        .refresh_after_command(ctx.become_.as_ref())
        .filter(|_| !ctx.restamp_later);
    let leave_unstamped = ctx.restamp_later && refresh.is_none();
    let marker = refresh.as_ref().map(|_| end_marker());
    if let (Some(todo), Some(marker)) = (&refresh, &marker) {
        script = format!(
            "(\n{script})\n__deployer_rc=$?\nprintf '\\n%s\\n' '{marker}'\n{{\n{}}} 2>/dev/null\nexit $__deployer_rc\n",
            super::observe::stamp_script(todo)
        );
    }
    let start = chrono_now();
    let t0 = std::time::Instant::now();
    let mut out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let delta = t0.elapsed();
    match (refresh, marker) {
        (Some(todo), Some(marker)) => {
            let sep = format!("\n{marker}\n");
            match find_last(&out.stdout, sep.as_bytes()) {
                Some(at) => {
                    let observed =
                        String::from_utf8_lossy(&out.stdout[at + sep.len()..]).into_owned();
                    out.stdout.truncate(at);
                    ctx.observed.restamped_after_command(todo, &observed);
                }
                // The command ended the shell itself: refetch when next asked.
                None => ctx.observed.invalidate_all(),
            }
        }
        _ if leave_unstamped => ctx.observed.leave_unstamped(ctx.become_.as_ref()),
        _ => ctx.observed.invalidate_all(),
    }
    let strip = |s: String| {
        if a.strip_empty_ends {
            s.trim_end_matches(['\n', '\r']).to_string()
        } else {
            s
        }
    };
    let stdout = strip(out.stdout_str());
    let stderr = strip(out.stderr_str());
    let mut r = ModuleResult {
        changed: true,
        ..Default::default()
    };
    r.data.insert(
        "cmd".into(),
        if shell {
            json!(text)
        } else {
            json!(crate::shell::split(&text).unwrap_or_default())
        },
    );
    r.data.insert("rc".into(), json!(out.rc));
    r.data.insert(
        "stdout_lines".into(),
        json!(stdout.lines().collect::<Vec<_>>()),
    );
    r.data.insert(
        "stderr_lines".into(),
        json!(stderr.lines().collect::<Vec<_>>()),
    );
    r.data.insert("stdout".into(), json!(stdout));
    r.data.insert("stderr".into(), json!(stderr));
    r.data.insert("start".into(), json!(start));
    r.data.insert(
        "delta".into(),
        json!(format!("0:00:{:09.6}", delta.as_secs_f64())),
    );
    if out.rc != 0 {
        r.failed = true;
        r.msg = Some("non-zero return code".into());
    } else {
        r.data.insert("msg".into(), json!(""));
    }
    Ok(r)
}

/// A line the command cannot print by chance: it separates the command's own
/// stdout from the re-observation that follows it in the same execution.
fn end_marker() -> String {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    if rand::rngs::SysRng.try_fill_bytes(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    format!("__DEPLOYER_OBSERVE_{}__", hex::encode(bytes))
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&i| &haystack[i..i + needle.len()] == needle)
}

fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    secs.to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitForArgs {
    #[serde(default, deserialize_with = "de_opt_string")]
    host: Option<String>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    port: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    path: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    timeout: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    delay: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    sleep: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    search_regex: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    msg: Option<String>,
}

/// One execution that polls on the host until the port or path is ready.
pub async fn wait_for(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: WaitForArgs = parse_args("wait_for", args)?;
    let timeout = a.timeout.unwrap_or(300);
    let state = a.state.clone().unwrap_or_else(|| "started".into());
    let check = match (&a.port, &a.path) {
        (Some(port), None) => {
            let host = a.host.clone().unwrap_or_else(|| "127.0.0.1".into());
            let probe = format!(
                "bash -c {} 2>/dev/null",
                shell_quote(&format!("exec 3<>/dev/tcp/{host}/{port}"))
            );
            match state.as_str() {
                "started" | "present" => probe,
                "stopped" | "absent" => format!("! {probe}"),
                other => {
                    return Err(format!(
                        "wait_for: state '{other}' is not supported for ports (started, stopped)"
                    ));
                }
            }
        }
        (None, Some(path)) => {
            let q = shell_quote(path);
            match (state.as_str(), &a.search_regex) {
                ("present" | "started", Some(re)) => {
                    format!("grep -qE {} {q} 2>/dev/null", shell_quote(re))
                }
                ("present" | "started", None) => format!("[ -e {q} ]"),
                ("absent" | "stopped", _) => format!("[ ! -e {q} ]"),
                (other, _) => {
                    return Err(format!(
                        "wait_for: state '{other}' is not supported for paths (present, absent)"
                    ));
                }
            }
        }
        (None, None) => {
            let secs = a.timeout.unwrap_or(0) + a.delay.unwrap_or(0);
            format!("sleep {secs}; true")
        }
        (Some(_), Some(_)) => return Err("wait_for: port and path are mutually exclusive".into()),
    };
    if ctx.check {
        return Ok(ModuleResult::ok());
    }
    let script = format!(
        "sleep {delay}\nend=$(( $(date +%s) + {timeout} ))\nwhile :; do\n  if {check}; then echo ok; exit 0; fi\n  [ $(date +%s) -ge $end ] && exit 1\n  sleep {sleep}\ndone\n",
        delay = a.delay.unwrap_or(0),
        sleep = a.sleep.unwrap_or(1),
    );
    let t0 = std::time::Instant::now();
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mut r = ModuleResult::ok();
    r.data
        .insert("elapsed".into(), json!(t0.elapsed().as_secs()));
    r.data.insert("state".into(), json!(state));
    if out.rc != 0 {
        r.failed = true;
        r.msg = Some(a.msg.unwrap_or_else(|| {
            format!(
                "Timeout when waiting for {}",
                a.path.clone().unwrap_or_else(|| format!(
                    "{}:{}",
                    a.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                    a.port.unwrap_or(0)
                ))
            )
        }));
    }
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UriArgs {
    #[serde(deserialize_with = "super::args::de_string")]
    url: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    method: Option<String>,
    #[serde(default)]
    status_code: Option<Json>,
    #[serde(default)]
    body: Option<Json>,
    #[serde(default, deserialize_with = "de_opt_string")]
    body_format: Option<String>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, Json>>,
    #[serde(default, deserialize_with = "de_bool")]
    return_content: bool,
    #[serde(default, deserialize_with = "de_opt_u64")]
    timeout: Option<u64>,
    #[serde(default = "yes", deserialize_with = "de_bool")]
    validate_certs: bool,
    /// Ansible's choices: `safe` (the default: GET and HEAD only), `all`
    /// (`yes`, `urllib2`), `none` (`no`); a boolean is `all` or `none`.
    #[serde(default)]
    follow_redirects: Option<Json>,
}

/// HTTP from the target itself (as Ansible's uri does), with the target's curl.
pub async fn uri(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: UriArgs = parse_args("uri", args)?;
    let method = a
        .method
        .clone()
        .unwrap_or_else(|| "GET".into())
        .to_uppercase();
    let expected: Vec<i64> = match &a.status_code {
        None => vec![200],
        Some(Json::Array(v)) => v
            .iter()
            .filter_map(|x| {
                x.as_i64()
                    .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            })
            .collect(),
        Some(Json::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Json::String(s)) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Some(other) => {
            return Err(format!(
                "uri: status_code must be a number or list, got {other}"
            ));
        }
    };
    if ctx.check && method != "GET" && method != "HEAD" {
        let mut r = ModuleResult::ok();
        r.skipped = true;
        r.msg = Some("uri: non-GET requests are not run in check mode".into());
        return Ok(r);
    }
    // Everything the task gives (URL, headers, body) reaches curl through a
    // config file and a body file in a private temp directory, never through
    // curl's argv (which every local user sees in `ps`) nor as shell text.
    let mut cfg = String::new();
    cfg.push_str(&format!("request = {}\n", curl_quote(&method)));
    cfg.push_str(&format!("max-time = {}\n", a.timeout.unwrap_or(30)));
    if !a.validate_certs {
        cfg.push_str("insecure\n");
    }
    let follow = match &a.follow_redirects {
        None => "safe".to_string(),
        Some(Json::Bool(b)) => if *b { "all" } else { "none" }.to_string(),
        Some(Json::String(s)) => match crate::args::parse_bool(&Json::String(s.clone())) {
            Some(true) if s != "yes" => "all".to_string(),
            Some(false) => "none".to_string(),
            _ => s.clone(),
        },
        Some(other) => other.to_string(),
    };
    let follow = match follow.as_str() {
        "all" | "yes" | "urllib2" => true,
        "safe" => method == "GET" || method == "HEAD",
        "none" | "no" => false,
        other => {
            return Err(format!(
                "uri: follow_redirects must be one of all, no, none, safe, urllib2, yes, got '{other}'"
            ));
        }
    };
    if follow {
        cfg.push_str("location\n");
    }
    if let Some(h) = &a.headers {
        for (k, v) in h {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
                return Err(format!(
                    "uri: header '{}' has a line break (or a ':' in its name): a header is one line",
                    k.replace(['\r', '\n'], " ")
                ));
            }
            cfg.push_str(&format!("header = {}\n", curl_quote(&format!("{k}: {v}"))));
        }
    }
    let mut body_file = String::new();
    if let Some(b) = &a.body {
        let (data, ctype) = match (a.body_format.as_deref(), b) {
            (Some("json"), v) => (
                serde_json::to_string(v).map_err(|e| e.to_string())?,
                Some("application/json"),
            ),
            (_, Json::String(s)) => (s.clone(), None),
            (_, v) => (v.to_string(), None),
        };
        if let Some(ct) = ctype {
            cfg.push_str(&format!(
                "header = {}\n",
                curl_quote(&format!("Content-Type: {ct}"))
            ));
        }
        cfg.push_str("data-binary = \"@body\"\n");
        body_file = format!(
            "printf '%s' '{}' | base64 -d > body\n",
            base64::engine::general_purpose::STANDARD.encode(data.as_bytes())
        );
    }
    cfg.push_str(&format!("url = {}\n", curl_quote(&a.url)));
    let script = format!(
        "{env}command -v curl >/dev/null || {{ echo 'uri needs curl on the target' >&2; exit 127; }}\n\
         umask 077\nd=$(mktemp -d)\ntrap 'rm -rf -- \"$d\"' EXIT\ncd \"$d\"\n\
         printf '%s' '{cfg}' | base64 -d > cfg\n{body_file}\
         s=$(curl -sS -o out -w '%{{http_code}}' -K cfg </dev/null) || {{ echo \"$s\"; exit 2; }}\n\
         echo \"$s\"\nbase64 -w0 < out\n",
        env = ctx.environment_exports()?,
        cfg = base64::engine::general_purpose::STANDARD.encode(cfg),
    );
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc == 127 {
        return Err("uri: curl is not installed on the target".into());
    }
    let stdout = out.stdout_str();
    let mut lines = stdout.lines();
    let status: i64 = lines
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1);
    let content = lines
        .next()
        .and_then(|b| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()).ok()
        })
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut r = ModuleResult::ok();
    r.data.insert("status".into(), json!(status));
    r.data.insert("url".into(), json!(a.url));
    if a.return_content {
        r.data.insert("content".into(), json!(content));
    }
    if let Ok(j) = serde_json::from_str::<Json>(&content) {
        r.data.insert("json".into(), j);
    }
    if !expected.contains(&status) {
        r.failed = true;
        r.msg = Some(if status <= 0 {
            format!(
                "Status code was -1 and not {expected:?}: Request failed: {}",
                out.stderr_str().trim()
            )
        } else {
            format!("Status code was {status} and not {expected:?}: HTTP Error {status}")
        });
    } else {
        r.msg = Some(format!("OK ({} bytes)", content.len()));
    }
    Ok(r)
}

// The registry's entries for these modules. Not yet split into plan and apply (plans, and outside check mode applies, in one function).

/// `command`: runs a program (no shell).
pub struct Command;

impl Module for Command {
    fn name(&self) -> &'static str {
        "command"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.command"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<CommandArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        let no_raw = args
            .get("_raw_params")
            .is_none_or(|v| v.as_str() == Some(""));
        if no_raw && !args.contains_key("cmd") && !args.contains_key("argv") {
            return Err("no command given".into());
        }
        Ok(())
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[
            (
                "creates",
                Want {
                    content: false,
                    sha1: false,
                },
            ),
            (
                "removes",
                Want {
                    content: false,
                    sha1: false,
                },
            ),
        ]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(command(args, ctx, false))
    }
}

/// `shell`: runs a command through the shell.
pub struct Shell;

impl Module for Shell {
    fn name(&self) -> &'static str {
        "shell"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.shell"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<CommandArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        let no_raw = args
            .get("_raw_params")
            .is_none_or(|v| v.as_str() == Some(""));
        if no_raw && !args.contains_key("cmd") && !args.contains_key("argv") {
            return Err("no command given".into());
        }
        Ok(())
    }
    fn prefetch(&self) -> &'static [(&'static str, Want)] {
        &[
            (
                "creates",
                Want {
                    content: false,
                    sha1: false,
                },
            ),
            (
                "removes",
                Want {
                    content: false,
                    sha1: false,
                },
            ),
        ]
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(command(args, ctx, true))
    }
}

/// `wait_for`: waits for a port or a path on the host.
pub struct WaitFor;

impl Module for WaitFor {
    fn name(&self) -> &'static str {
        "wait_for"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.wait_for"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<WaitForArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("port") && !args.contains_key("path") {
            return Err("one of port or path is required".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(wait_for(args, ctx))
    }
}

/// `uri`: HTTP from the target with its curl.
pub struct Uri;

impl Module for Uri {
    fn name(&self) -> &'static str {
        "uri"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.uri"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<UriArgs>()
    }
    fn check_combination(&self, args: &serde_json::Map<String, Json>) -> Result<(), String> {
        match super::args::literal(args, "status_code") {
            None | Some(Json::Number(_) | Json::Array(_) | Json::String(_)) => {}
            Some(other) => {
                return Err(format!("status_code must be a number or list, got {other}"));
            }
        }
        super::args::check_choice(
            args,
            "follow_redirects",
            &["all", "no", "none", "safe", "urllib2", "yes"],
        )
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(uri(args, ctx))
    }
}

/// A double-quoted curl config parameter (curl unescapes `\\`, `\"`, `\t`,
/// `\n`, `\r`, `\v` inside quotes).
fn curl_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn curl_config_values_are_quoted() {
        assert_eq!(super::curl_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
