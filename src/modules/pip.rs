//! `pip` (`ansible.builtin.pip`): Python packages through the host's own pip,
//! system-wide or in a virtualenv, as Ansible's module decides.
//!
//! `changed` is what Ansible's is: after `pip install`, whether pip said
//! `Successfully installed`; after `pip uninstall`, `Successfully
//! uninstalled`; with `requirements` (or a VCS URL), whether `pip list`
//! differs before and after; a virtualenv created is a change. Check mode
//! predicts as Ansible's does: a missing virtualenv, `extra_args`,
//! `requirements` or `state: latest` is a change; otherwise each name is
//! compared with `pip list` (its version specifiers read as PEP 440 says).
//!
//! Observe: the paths (`~`), whether the virtualenv exists, which pip runs,
//! and (in check mode, or before a requirements install) `pip list`.
//! Apply: the virtualenv (`virtualenv_command`), then one pip command, run in
//! `chdir` under `umask`, with the task's environment.
//!
//! Supported: `name` (a list, with version specifiers and extras), `version`,
//! `state` (present, absent, latest, forcereinstall), `requirements`,
//! `virtualenv`, `virtualenv_command`, `virtualenv_python`,
//! `virtualenv_site_packages`, `extra_args`, `executable`, `chdir`, `umask`,
//! `break_system_packages`, `editable: false`. Not supported yet:
//! `editable: true`, names with environment markers (`; ...`) or direct
//! references (`name @ url`).

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{check_choice, check_not_yet, de_bool, de_opt_list, de_opt_string};
use super::pep440::{NotRead, Requirement};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum PipState {
    #[default]
    Present,
    Absent,
    Latest,
    Forcereinstall,
}

impl PipState {
    fn as_str(self) -> &'static str {
        match self {
            PipState::Present => "present",
            PipState::Absent => "absent",
            PipState::Latest => "latest",
            PipState::Forcereinstall => "forcereinstall",
        }
    }
    /// pip's words for the state, as Ansible's `state_map`.
    fn words(self) -> &'static [&'static str] {
        match self {
            PipState::Present => &["install"],
            PipState::Absent => &["uninstall", "-y"],
            PipState::Latest => &["install", "-U"],
            PipState::Forcereinstall => &["install", "-U", "--force-reinstall"],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipArgs {
    #[serde(default, deserialize_with = "de_opt_list")]
    pub name: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub version: Option<String>,
    #[serde(default)]
    pub state: PipState,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub requirements: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub virtualenv: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub virtualenv_site_packages: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub virtualenv_command: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub virtualenv_python: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub extra_args: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub editable: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub chdir: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub executable: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub umask: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub break_system_packages: bool,
}

pub struct Pip;

const EDITABLE: &str = "pip: editable is not supported yet by deployer";

impl Module for Pip {
    fn name(&self) -> &'static str {
        "pip"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.pip"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PipArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        check_choice(
            args,
            "state",
            &["present", "absent", "latest", "forcereinstall"],
        )?;
        check_not_yet(args, "editable")?;
        // A templated value that may render to `omit` may be absent when the
        // task runs (`item.virtualenv | default(false) | ternary(omit, ...)`):
        // it cannot make two arguments exclusive before then.
        let surely = |k: &str| {
            args.get(k).is_some_and(|v| {
                !v.as_str()
                    .is_some_and(|s| s.contains("{{") && s.contains("omit"))
            })
        };
        combination(
            surely("name"),
            surely("requirements"),
            surely("executable"),
            surely("virtualenv"),
        )
        .or_else(|e| {
            if e.starts_with("one of the following")
                && (args.contains_key("name") || args.contains_key("requirements"))
            {
                Ok(())
            } else {
                Err(e)
            }
        })
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Ansible's `required_one_of` and `mutually_exclusive` for pip.
fn combination(name: bool, requirements: bool, executable: bool, venv: bool) -> Result<(), String> {
    if name && requirements {
        return Err("parameters are mutually exclusive: name|requirements".into());
    }
    if executable && venv {
        return Err("parameters are mutually exclusive: executable|virtualenv".into());
    }
    if !name && !requirements {
        return Err("one of the following is required: name, requirements".into());
    }
    Ok(())
}

/// Whether a name is a VCS URL (`git+https://...`), as Ansible's `_VCS_RE`.
fn is_vcs_url(name: &str) -> bool {
    ["svn+", "git+", "hg+", "bzr+"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Ansible's `_recover_package_name`: a list whose items were split at
/// commas (`['django>1.11', '<1.12', 'six']`) back into requirements.
pub fn recover_names(names: &[String]) -> Vec<String> {
    let parts: Vec<&str> = names.iter().flat_map(|n| n.split(',')).collect();
    let is_name = |p: &str| {
        let p = p.trim_start();
        !["===", "~=", "==", "!=", "<=", ">=", "<", ">"]
            .iter()
            .any(|op| p.starts_with(op))
    };
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut in_brackets = false;
    for p in parts {
        if is_name(p) && !in_brackets {
            if !cur.is_empty() {
                out.push(cur.join(","));
            }
            cur.clear();
        }
        if p.contains('[') {
            in_brackets = true;
        }
        if in_brackets && p.contains(']') {
            in_brackets = false;
        }
        cur.push(p);
    }
    out.push(cur.join(","));
    out
}

/// One name as Ansible's `Package` holds it: read as a requirement (what
/// pip is given is packaging's spelling of it), or passed as written.
#[derive(Debug, Clone)]
enum Package {
    Read(Requirement),
    AsWritten(String),
}

impl Package {
    fn new(name: &str, version: Option<&str>) -> Result<Package, String> {
        let text = match version {
            Some(v) => {
                let v = v.trim_start();
                let sep = if v.starts_with(|c: char| c.is_ascii_digit()) {
                    "=="
                } else {
                    " "
                };
                format!("{name}{sep}{v}")
            }
            None => name.to_string(),
        };
        match Requirement::parse(&text) {
            Ok(r) => Ok(Package::Read(r)),
            Err(NotRead::Invalid) => Ok(Package::AsWritten(text)),
            Err(NotRead::Unsupported) => Err(format!(
                "pip: '{name}': environment markers and direct references (name @ url) are not supported yet by deployer"
            )),
        }
    }

    fn arg(&self) -> String {
        match self {
            Package::Read(r) => r.to_string(),
            Package::AsWritten(s) => s.clone(),
        }
    }

    fn has_specifier(&self) -> bool {
        matches!(self, Package::Read(r) if r.has_specifier())
    }

    /// Ansible's `_is_present`: a `name==version` line of `pip list` names
    /// this package and satisfies its specifiers.
    fn is_present(&self, listed: &[String]) -> bool {
        let Package::Read(r) = self else {
            return false;
        };
        let want = Requirement::canonical_name(&r.name);
        listed.iter().any(|l| {
            let mut parts = l.split("==");
            match (parts.next(), parts.next(), parts.next()) {
                (Some(n), Some(v), None) => {
                    Requirement::canonical_name(n) == want && r.satisfied_by(v)
                }
                _ => false,
            }
        })
    }
}

/// `pip list` as Ansible's `_get_packages` runs it.
pub struct Listing {
    cmd: String,
    stdout: String,
    stderr: String,
}

/// What the host says.
pub struct PipObserved {
    /// The virtualenv's path (`~` and `chdir` applied).
    env: Option<String>,
    env_exists: bool,
    chdir: String,
    /// `python3`'s path (Ansible's `sys.executable`).
    python: String,
    /// The pip command, or why none was found (not looked for while the
    /// virtualenv does not exist).
    pip: Result<Vec<String>, String>,
    listing: Option<Result<Listing, ModuleResult>>,
}

/// The work `apply` does.
pub struct PipWork {
    o: PipObserved,
    umask: Option<u32>,
    state: PipState,
    packages: Option<Vec<String>>,
    names: Option<Vec<String>>,
    version: Option<String>,
    requirements: Option<String>,
    extra_args: Vec<String>,
    compare_listing: bool,
    venv_command: String,
    venv_python: Option<String>,
    site_packages: bool,
    break_system_packages: bool,
}

/// `~` at the head of a path is the (become) user's home, as Ansible's
/// `path` type expands it on the host.
fn expand_home(p: &str, home: &str) -> String {
    if p == "~" {
        home.to_string()
    } else if let Some(rest) = p.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else {
        p.to_string()
    }
}

/// `os.path.join(a, b)`.
fn join(a: &str, b: &str) -> String {
    if b.starts_with('/') || a.is_empty() {
        b.to_string()
    } else if a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

fn parse_umask(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
}

/// The shell lines every pip script starts with: the task's environment,
/// the umask, the working directory (Ansible ignores one that is not a
/// directory), and the host's sbin directories on PATH as Ansible's
/// `get_bin_path` searches them.
fn preamble(
    ctx: &ModuleCtx<'_>,
    umask: Option<u32>,
    chdir: Option<&str>,
) -> Result<String, String> {
    let mut s = ctx.environment_exports()?;
    s.push_str("PATH=\"$PATH:/sbin:/usr/sbin:/usr/local/sbin\"; export PATH\n");
    if let Some(m) = umask {
        s.push_str(&format!("umask {m:04o}\n"));
    }
    if let Some(d) = chdir {
        s.push_str(&format!("cd -- {} 2>/dev/null\n", shell_quote(d)));
    }
    Ok(s)
}

/// Runs one command (argv) on the host: (rc, stdout, stderr).
async fn run_argv(
    ctx: &ModuleCtx<'_>,
    pre: &str,
    argv: &[String],
    extra_env: &str,
) -> Result<(i32, String, String), String> {
    let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
    let script = format!("{pre}{extra_env}exec {}\n", words.join(" "));
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    Ok((out.rc, out.stdout_str(), out.stderr_str()))
}

/// Ansible's `_get_packages`: `pip list --format=freeze`, or `pip freeze`
/// when that fails.
async fn listing(
    ctx: &ModuleCtx<'_>,
    pre: &str,
    pip: &[String],
) -> Result<Result<Listing, ModuleResult>, String> {
    let mut argv = pip.to_vec();
    argv.extend(["list".to_string(), "--format=freeze".to_string()]);
    let (rc, out, err) = run_argv(
        ctx,
        pre,
        &argv,
        "LANG=C.utf8 LC_ALL=C.utf8 LC_MESSAGES=C.utf8; export LANG LC_ALL LC_MESSAGES\n",
    )
    .await?;
    if rc == 0 {
        return Ok(Ok(Listing {
            cmd: argv.join(" "),
            stdout: out,
            stderr: err,
        }));
    }
    let mut argv = pip.to_vec();
    argv.push("freeze".to_string());
    let (rc, out, err) = run_argv(ctx, pre, &argv, "").await?;
    if rc != 0 {
        return Ok(Err(fail(Json::String(argv.join(" ")), &out, &err)));
    }
    Ok(Ok(Listing {
        cmd: argv.join(" "),
        stdout: out,
        stderr: err,
    }))
}

/// `stdout` and `stderr`, with the `_lines` Ansible adds to a result that
/// has them.
fn put_output(r: &mut ModuleResult, out: &str, err: &str) {
    r.data.insert("stdout".into(), json!(out));
    r.data.insert("stderr".into(), json!(err));
    r.data.insert(
        "stdout_lines".into(),
        json!(out.lines().collect::<Vec<_>>()),
    );
    r.data.insert(
        "stderr_lines".into(),
        json!(err.lines().collect::<Vec<_>>()),
    );
}

/// Ansible's `_fail`: the output as the message, the command alongside.
fn fail(cmd: Json, out: &str, err: &str) -> ModuleResult {
    let mut msg = String::new();
    if !out.is_empty() {
        msg.push_str(&format!("stdout: {out}"));
    }
    if !err.is_empty() {
        msg.push_str(&format!("\n:stderr: {err}"));
    }
    let mut r = ModuleResult::failed(msg);
    r.data.insert("cmd".into(), cmd);
    r
}

/// Finds pip as Ansible's `_get_pip` does. The script prints the command's
/// words, one a line, or `!` and the message.
fn find_pip_script(env: Option<&str>, executable: Option<&str>) -> String {
    match (executable, env) {
        (Some(e), _) if e.starts_with('/') => format!("printf '%s\\n' {}\n", shell_quote(e)),
        (Some(e), _) => format!(
            "command -v -- {q} || echo '!Unable to find any of {e} to use.  pip needs to be installed.'\n",
            q = shell_quote(e),
            e = e.replace('\'', "")
        ),
        (None, Some(env)) => {
            let d = shell_quote(&format!("{}/bin", env.trim_end_matches('/')));
            format!(
                "if [ -f {d}/pip3 ] && [ -x {d}/pip3 ]; then printf '%s\\n' {d}/pip3\n\
                 elif [ -f {d}/pip ] && [ -x {d}/pip ]; then printf '%s\\n' {d}/pip\n\
                 else printf '!%s\\n' {msg}; fi\n",
                msg = shell_quote(&format!(
                    "Unable to find pip in the virtualenv, {env}, under any of these names: pip3, pip. Make sure pip is present in the virtualenv."
                ))
            )
        }
        (None, None) => "if [ -n \"$py\" ] && \"$py\" -c 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(\"pip\") else 1)' >/dev/null 2>&1; then printf '%s\\n' \"$py\" -m pip\n\
             else command -v pip3 || echo '!Unable to find any of pip3 to use.  pip needs to be installed.'; fi\n"
            .to_string(),
    }
}

fn parse_pip(text: &str) -> Result<Vec<String>, String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    match lines.first() {
        Some(l) if l.starts_with('!') => Err(l[1..].to_string()),
        Some(_) => Ok(lines.iter().map(|l| l.to_string()).collect()),
        None => Err("Unable to find any of pip3 to use.  pip needs to be installed.".into()),
    }
}

impl PlanApply for Pip {
    type Args = PipArgs;
    type Observed = PipObserved;
    type Changes = PipWork;

    fn observe<'a>(
        &'a self,
        a: &'a PipArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<PipObserved, String>> {
        Box::pin(async move {
            let out = ctx
                .conn
                .run_script(
                    "printf 'H%s\\n' \"$HOME\"; printf 'P%s\\n' \"$(command -v python3)\"\n",
                    ctx.become_.as_ref(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let text = out.stdout_str();
            let field = |p: char| {
                text.lines()
                    .find_map(|l| l.strip_prefix(p))
                    .unwrap_or_default()
                    .to_string()
            };
            let (home, python) = (field('H'), field('P'));
            let chdir = a.chdir.as_deref().map(|c| expand_home(c, &home));
            let env =
                a.virtualenv
                    .as_deref()
                    .map(|e| expand_home(e, &home))
                    .map(|e| match &chdir {
                        Some(c) => join(c, &e),
                        None => e,
                    });
            let executable = a.executable.as_deref().map(|e| expand_home(e, &home));
            let chdir = chdir.unwrap_or_else(|| "/tmp".to_string());
            let umask = a.umask.as_deref().and_then(parse_umask);
            let pre = preamble(ctx, umask, Some(&chdir))?;
            let mut env_exists = false;
            if let Some(e) = &env {
                let p = shell_quote(&format!("{}/bin/activate", e.trim_end_matches('/')));
                let o = ctx
                    .conn
                    .run_script(&format!("[ -e {p} ]\n"), ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                env_exists = o.rc == 0;
            }
            let pip = if env.is_some() && !env_exists {
                Err(String::new())
            } else {
                let script = format!(
                    "{pre}py={}\n{}",
                    shell_quote(&python),
                    find_pip_script(env.as_deref(), executable.as_deref())
                );
                let o = ctx
                    .conn
                    .run_script(&script, ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                parse_pip(&o.stdout_str())
            };
            let has_vcs = a.name.iter().flatten().any(|n| is_vcs_url(n));
            let listing = match &pip {
                Ok(p) if ctx.check || a.requirements.is_some() || has_vcs => {
                    Some(listing(ctx, &pre, p).await?)
                }
                _ => None,
            };
            Ok(PipObserved {
                env,
                env_exists,
                chdir,
                python,
                pip,
                listing,
            })
        })
    }

    fn plan(
        &self,
        a: PipArgs,
        o: PipObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<PipWork>, String> {
        if a.editable {
            return Err(EDITABLE.into());
        }
        combination(
            a.name.is_some(),
            a.requirements.is_some(),
            a.executable.is_some(),
            a.virtualenv.is_some(),
        )?;
        let failed = |m: &str| Ok(Plan::unchanged(ModuleResult::failed(m)));
        let umask = match a.umask.as_deref() {
            Some(u) => match parse_umask(u) {
                Some(m) => Some(m),
                None => return failed("umask must be an octal integer"),
            },
            None => None,
        };
        if a.state == PipState::Latest && a.version.is_some() {
            return failed("version is incompatible with state=latest");
        }
        let mut packages = None;
        if let Some(names) = &a.name {
            let mut ps = recover_names(names)
                .iter()
                .map(|n| Package::new(n, None))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(v) = &a.version {
                if ps.len() > 1 {
                    return failed(
                        "'version' argument is ambiguous when installing multiple package distributions. Please specify version restrictions next to each package in 'name' argument.",
                    );
                }
                if ps[0].has_specifier() {
                    return failed(
                        "The 'version' argument conflicts with any version specifier provided along with a package name. Please keep the version specifier, but remove the 'version' argument.",
                    );
                }
                ps[0] = Package::new(&ps[0].arg(), Some(v))?;
            }
            packages = Some(ps);
        }
        let extra_args = match &a.extra_args {
            Some(e) => crate::shell::split(e)
                .ok_or_else(|| format!("pip: extra_args: unbalanced quotes in '{e}'"))?,
            None => Vec::new(),
        };
        let has_vcs = a.name.iter().flatten().any(|n| is_vcs_url(n));
        let venv_command = a
            .virtualenv_command
            .clone()
            .unwrap_or_else(|| "virtualenv".into());

        // What check mode reports (and what `apply` starts from).
        let mut r = ModuleResult::ok();
        let creates_env = o.env.is_some() && !o.env_exists;
        if creates_env {
            r.changed = true;
        } else {
            if let Err(m) = &o.pip {
                return failed(m);
            }
            if ctx.check {
                if a.extra_args.is_some()
                    || a.requirements.is_some()
                    || a.state == PipState::Latest
                    || a.name.is_none()
                {
                    r.changed = true;
                } else {
                    match &o.listing {
                        Some(Ok(l)) => {
                            let listed: Vec<String> = l
                                .stdout
                                .split('\n')
                                .filter(|p| {
                                    !p.is_empty()
                                        && !p.starts_with("You are using")
                                        && !p.starts_with("You should consider")
                                })
                                .map(str::to_string)
                                .collect();
                            r.changed = packages.iter().flatten().any(|p| {
                                let present = p.is_present(&listed);
                                (a.state == PipState::Present && !present)
                                    || (a.state == PipState::Absent && present)
                            });
                            r.data.insert("cmd".into(), Json::String(l.cmd.clone()));
                            put_output(&mut r, &l.stdout, &l.stderr);
                        }
                        Some(Err(f)) => return Ok(Plan::unchanged(f.clone())),
                        None => {}
                    }
                }
            }
        }
        let compare_listing = a.requirements.is_some() || has_vcs;
        if let Some(Some(Err(f))) = (!ctx.check && compare_listing).then_some(&o.listing) {
            return Ok(Plan::unchanged(f.clone()));
        }
        Ok(Plan {
            result: r,
            changes: Some(PipWork {
                o,
                umask,
                state: a.state,
                packages: packages.map(|ps| ps.iter().map(Package::arg).collect()),
                names: a.name,
                version: a.version,
                requirements: a.requirements,
                extra_args,
                compare_listing,
                venv_command,
                venv_python: a.virtualenv_python,
                site_packages: a.virtualenv_site_packages,
                break_system_packages: a.break_system_packages,
            }),
        })
    }

    fn apply<'a>(
        &'a self,
        w: PipWork,
        _planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let pre = preamble(ctx, w.umask, Some(&w.o.chdir))?;
            let mut out = String::new();
            let mut err = String::new();
            let mut venv_created = false;
            let mut pip = w.o.pip.clone();
            if let (Some(env), false) = (&w.o.env, w.o.env_exists) {
                venv_created = true;
                if let Some(f) = create_venv(ctx, &pre, &w, env, &mut out, &mut err).await? {
                    return Ok(f);
                }
                let script = format!("{pre}{}", find_pip_script(Some(env), None));
                let o = ctx
                    .conn
                    .run_script(&script, ctx.become_.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                pip = parse_pip(&o.stdout_str());
            }
            let pip = match pip {
                Ok(p) => p,
                Err(m) => return Ok(ModuleResult::failed(m)),
            };
            let mut cmd = pip.clone();
            cmd.extend(w.state.words().iter().map(|s| s.to_string()));
            cmd.extend(w.extra_args.iter().cloned());
            if let Some(ps) = &w.packages {
                cmd.extend(ps.iter().cloned());
            } else if let Some(req) = &w.requirements {
                cmd.extend(["-r".to_string(), req.clone()]);
            }
            let before = if w.compare_listing {
                if venv_created {
                    match listing(ctx, &pre, &pip).await? {
                        Ok(l) => Some(l.stdout),
                        Err(f) => return Ok(f),
                    }
                } else {
                    match &w.o.listing {
                        Some(Ok(l)) => Some(l.stdout.clone()),
                        _ => None,
                    }
                }
            } else {
                None
            };
            let mut extra_env = String::new();
            if let Some(env) = &w.o.env {
                extra_env.push_str(&format!(
                    "PATH={}:\"$PATH\"; export PATH\n",
                    shell_quote(&format!("{}/bin", env.trim_end_matches('/')))
                ));
            }
            if w.break_system_packages {
                extra_env
                    .push_str("PIP_BREAK_SYSTEM_PACKAGES=1; export PIP_BREAK_SYSTEM_PACKAGES\n");
            }
            let (rc, out_pip, err_pip) = run_argv(ctx, &pre, &cmd, &extra_env).await?;
            out.push_str(&out_pip);
            err.push_str(&err_pip);
            let cmd_json = json!(cmd);
            let not_installed = w.state == PipState::Absent
                && rc == 1
                && (out_pip.contains("not installed") || err_pip.contains("not installed"));
            if rc != 0 && !not_installed {
                return Ok(fail(cmd_json, &out, &err));
            }
            let changed = if w.state == PipState::Absent {
                out_pip.contains("Successfully uninstalled")
            } else {
                match before {
                    None => out_pip.contains("Successfully installed"),
                    Some(b) => match listing(ctx, &pre, &pip).await? {
                        Ok(after) => after.stdout != b,
                        Err(f) => return Ok(f),
                    },
                }
            };
            let mut r = ModuleResult::ok();
            r.changed = changed || venv_created;
            let opt = |v: &Option<String>| v.clone().map_or(Json::Null, Json::String);
            r.data.insert("cmd".into(), cmd_json);
            r.data.insert("name".into(), json!(w.names));
            r.data.insert("version".into(), opt(&w.version));
            r.data.insert("state".into(), json!(w.state.as_str()));
            r.data.insert("requirements".into(), opt(&w.requirements));
            r.data.insert("virtualenv".into(), opt(&w.o.env));
            put_output(&mut r, &out, &err);
            Ok(r)
        })
    }
}

/// Ansible's `setup_virtualenv`: `Some(failure)` when it failed.
async fn create_venv(
    ctx: &ModuleCtx<'_>,
    pre: &str,
    w: &PipWork,
    env: &str,
    out: &mut String,
    err: &mut String,
) -> Result<Option<ModuleResult>, String> {
    let Some(mut cmd) = crate::shell::split(&w.venv_command).filter(|c| !c.is_empty()) else {
        return Ok(Some(ModuleResult::failed(format!(
            "pip: virtualenv_command '{}' is not a command",
            w.venv_command
        ))));
    };
    if !cmd[0].contains('/') {
        let o = ctx
            .conn
            .run_script(
                &format!(
                    "{pre}command -v -- {} || printf '!%s\\n' \"$PATH\"\n",
                    shell_quote(&cmd[0])
                ),
                ctx.become_.as_ref(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let found = o.stdout_str().trim().to_string();
        if let Some(paths) = found.strip_prefix('!') {
            return Ok(Some(ModuleResult::failed(format!(
                "Failed to find required executable \"{}\" in paths: {paths}",
                cmd[0]
            ))));
        }
        cmd[0] = found;
    }
    if w.site_packages {
        cmd.push("--system-site-packages".into());
    } else {
        let (rc, help_out, help_err) =
            run_argv(ctx, pre, &[cmd[0].clone(), "--help".into()], "").await?;
        if rc != 0 {
            return Ok(Some(ModuleResult::failed(format!(
                "Could not get output from {} --help: {help_out}{help_err}",
                cmd[0]
            ))));
        }
        if help_out
            .split_whitespace()
            .any(|w| w == "--no-site-packages")
        {
            cmd.push("--no-site-packages".into());
        }
    }
    if !is_venv_command(&w.venv_command) {
        cmd.push(format!(
            "-p{}",
            w.venv_python.clone().unwrap_or_else(|| w.o.python.clone())
        ));
    } else if w.venv_python.is_some() {
        return Ok(Some(ModuleResult::failed(
            "virtualenv_python should not be used when using the venv module or pyvenv as virtualenv_command",
        )));
    }
    cmd.push(env.to_string());
    let (rc, o, e) = run_argv(ctx, pre, &cmd, "").await?;
    out.push_str(&o);
    err.push_str(&e);
    if rc != 0 {
        return Ok(Some(fail(json!(cmd), out, err)));
    }
    Ok(None)
}

/// Ansible's `_is_venv_command`: `pyvenv`, or a command run with `-m venv`.
fn is_venv_command(command: &str) -> bool {
    let Some(argv) = crate::shell::split(command) else {
        return false;
    };
    if argv.first().map(String::as_str) == Some("pyvenv") {
        return true;
    }
    let mut m = None;
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "-m" {
            m = it.next().cloned();
        } else if let Some(v) = a.strip_prefix("-m") {
            m = Some(v.trim_start_matches('=').to_string());
        }
    }
    m.as_deref() == Some("venv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_a_template_may_omit_are_not_exclusive_before_the_run() {
        let m = |v: Json| match v {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        let omitted = m(serde_json::json!({
            "name": "{{ item.name | default(item) }}",
            "virtualenv": "{{ item.virtualenv | default(omit) }}",
            "executable": "{{ item.virtualenv | default(false) | ternary(omit, 'pip3') }}",
        }));
        assert_eq!(Pip.check_combination(&omitted), Ok(()));
        let both = m(serde_json::json!({"name": "x", "virtualenv": "/v", "executable": "pip3"}));
        assert_eq!(
            Pip.check_combination(&both),
            Err("parameters are mutually exclusive: executable|virtualenv".into())
        );
        let none = m(serde_json::json!({"virtualenv": "/v"}));
        assert_eq!(
            Pip.check_combination(&none),
            Err("one of the following is required: name, requirements".into())
        );
    }

    #[test]
    fn names_split_at_commas_are_put_back_as_ansible_does() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            recover_names(&v(&[
                "django>1.11.1",
                "<1.11.3",
                "ipaddress",
                "simpleproject>1.1.0",
                "<2.0.0"
            ])),
            v(&[
                "django>1.11.1,<1.11.3",
                "ipaddress",
                "simpleproject>1.1.0,<2.0.0"
            ])
        );
        assert_eq!(
            recover_names(&v(&["a[x,y]>=1", "b"])),
            v(&["a[x,y]>=1", "b"])
        );
    }

    #[test]
    fn a_version_joins_the_name_as_ansible_does() {
        let p = Package::new("dplpip", Some("1.0")).unwrap();
        assert_eq!(p.arg(), "dplpip==1.0");
        let p = Package::new("dplpip", Some(">=1.0, <3")).unwrap();
        assert_eq!(p.arg(), "dplpip<3,>=1.0");
        let listed = vec!["DplPip==2.0".to_string(), "other==1".to_string()];
        assert!(p.is_present(&listed));
        assert!(
            !Package::new("dplpip==1.0", None)
                .unwrap()
                .is_present(&listed)
        );
        assert!(Package::new("x; os_name=='nt'", None).is_err());
        assert!(
            !Package::new("/srv/x.whl", None)
                .unwrap()
                .is_present(&listed)
        );
    }

    #[test]
    fn venv_commands_are_recognised() {
        assert!(is_venv_command("python3 -m venv"));
        assert!(is_venv_command("/usr/bin/python3.11 -m venv"));
        assert!(is_venv_command("pyvenv"));
        assert!(!is_venv_command("virtualenv"));
        assert!(!is_venv_command("python3 -m virtualenv"));
    }

    #[test]
    fn paths_expand_as_ansible_does() {
        assert_eq!(expand_home("~/v", "/root"), "/root/v");
        assert_eq!(expand_home("/opt/v", "/root"), "/opt/v");
        assert_eq!(join("/srv", "v"), "/srv/v");
        assert_eq!(join("/srv", "/opt/v"), "/opt/v");
        assert_eq!(parse_umask("0022"), Some(0o22));
        assert_eq!(parse_umask("18"), None);
    }
}
