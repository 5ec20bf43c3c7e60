//! `cron`: a named job (`#Ansible: <name>` above its line) or an environment
//! variable in a user's crontab or in a file under `/etc/cron.d`, edited line
//! for line as Ansible's `ansible.builtin.cron` does.
//!
//! Observe (one execution): `crontab -u USER -l` (its header lines dropped as
//! Ansible drops them) or the `cron_file`. Plan (pure): the new crontab.
//! Apply: a user crontab is installed with `crontab -u USER -` from standard
//! input; a `cron_file` is written with
//! [`crate::connection::write::RemoteWrite`] (a new file 0644, an existing
//! one keeps owner and mode) and removed when its last job goes.
//!
//! Supported: `name`, `user`, `job` (`value`), `cron_file`, `state`,
//! `minute`, `hour`, `day` (`dom`), `month`, `weekday` (`dow`),
//! `special_time`, `disabled`, `env`, `insertafter`, `insertbefore`. Not
//! supported yet: `backup: true`.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::accounts::valid_account_name;
use super::args::{de_bool, de_opt_string, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{FileDiff, ModuleCtx, ModuleResult};
use crate::connection::shell_quote;
use crate::connection::write::RemoteWrite;

fn star() -> String {
    "*".into()
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum CronState {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Special {
    Reboot,
    Yearly,
    Annually,
    Monthly,
    Weekly,
    Daily,
    Hourly,
}

impl Special {
    fn as_str(self) -> &'static str {
        match self {
            Special::Reboot => "reboot",
            Special::Yearly => "yearly",
            Special::Annually => "annually",
            Special::Monthly => "monthly",
            Special::Weekly => "weekly",
            Special::Daily => "daily",
            Special::Hourly => "hourly",
        }
    }
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct CronArgs {
    #[serde(deserialize_with = "de_string")]
    pub name: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub user: Option<String>,
    #[serde(default, alias = "value", deserialize_with = "de_opt_string")]
    pub job: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub cron_file: Option<String>,
    #[serde(default)]
    pub state: CronState,
    #[serde(default, deserialize_with = "de_bool")]
    pub backup: bool,
    #[serde(default = "star", deserialize_with = "de_string")]
    pub minute: String,
    #[serde(default = "star", deserialize_with = "de_string")]
    pub hour: String,
    #[serde(default = "star", alias = "dom", deserialize_with = "de_string")]
    pub day: String,
    #[serde(default = "star", deserialize_with = "de_string")]
    pub month: String,
    #[serde(default = "star", alias = "dow", deserialize_with = "de_string")]
    pub weekday: String,
    #[serde(default)]
    pub special_time: Option<Special>,
    #[serde(default, deserialize_with = "de_bool")]
    pub disabled: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub env: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub insertafter: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub insertbefore: Option<String>,
}

pub struct Cron;

impl Module for Cron {
    fn name(&self) -> &'static str {
        "cron"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.cron"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<CronArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") {
            return Err("missing required argument: name".into());
        }
        if args.contains_key("insertafter") && args.contains_key("insertbefore") {
            return Err("parameters are mutually exclusive: insertafter|insertbefore".into());
        }
        if super::args::literal(args, "backup")
            .and_then(super::args::parse_bool)
            .unwrap_or(false)
        {
            return Err("cron: backup: true is not supported yet by deployer".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

const ANSIBLE: &str = "#Ansible: ";

/// The crontab as the module edits it: its lines, and the text as read.
#[derive(Debug, Clone, Default)]
pub struct CronTab {
    pub lines: Vec<String>,
    pub existing: String,
    /// The `cron_file` exists.
    pub file_exists: bool,
}

/// Drops the header `crontab -l` may print (Ansible's `read`).
fn from_crontab_l(out: &str) -> CronTab {
    let mut t = CronTab {
        existing: out.to_string(),
        ..Default::default()
    };
    for (count, l) in out.lines().enumerate() {
        let header = l.starts_with("# DO NOT EDIT THIS FILE - edit the master and reinstall.")
            || (l.starts_with("# (/tmp/") && l.contains("installed on"))
            || (l.starts_with("# (") && l.contains("version"));
        if count > 2 || !header {
            t.lines.push(l.to_string());
        } else if let Some(i) = t.existing.find(l) {
            let mut end = i + l.len();
            if t.existing[end..].starts_with(['\r', '\n']) {
                end += 1;
            }
            t.existing.replace_range(i..end, "");
        }
    }
    t
}

fn comment(name: &str) -> String {
    format!("{ANSIBLE}{name}")
}

impl CronTab {
    fn find_job(&mut self, name: &str, job: Option<&str>) -> Vec<String> {
        let mut cmt: Option<String> = None;
        for l in &self.lines {
            if let Some(c) = &cmt {
                if c == name {
                    return vec![c.clone(), l.clone()];
                }
                cmt = None;
            } else if let Some(rest) = l.strip_prefix(ANSIBLE) {
                cmt = Some(rest.replace(ANSIBLE, ""));
            }
        }
        if let Some(job) = job {
            for i in 0..self.lines.len() {
                if self.lines[i] == job {
                    // Python's lines[i - 1] at 0 is the last line.
                    let prev = if i == 0 {
                        self.lines.last().cloned().unwrap_or_default()
                    } else {
                        self.lines[i - 1].clone()
                    };
                    if !prev.starts_with(ANSIBLE) {
                        self.lines.insert(i, comment(name));
                        return vec![self.lines[i].clone(), job.to_string(), "True".into()];
                    } else if prev == comment("None") {
                        let at = if i == 0 { self.lines.len() - 1 } else { i - 1 };
                        self.lines[at] = comment(name);
                        return vec![self.lines[at].clone(), job.to_string(), "True".into()];
                    }
                }
            }
        }
        Vec::new()
    }

    fn update_job(&mut self, name: &str, job: Option<&str>) {
        let ansiblename = comment(name);
        let mut out = Vec::new();
        let mut cmt: Option<String> = None;
        for l in &self.lines {
            if let Some(c) = cmt.take() {
                if let Some(j) = job {
                    out.push(c);
                    out.push(j.to_string());
                }
            } else if *l == ansiblename {
                cmt = Some(l.clone());
            } else {
                out.push(l.clone());
            }
        }
        self.lines = out;
    }

    fn find_env(&self, name: &str) -> Option<(usize, String)> {
        let prefix = format!("{name}=");
        self.lines
            .iter()
            .position(|l| l.starts_with(&prefix))
            .map(|i| (i, self.lines[i].clone()))
    }

    fn update_env(&mut self, name: &str, decl: Option<&str>) {
        let prefix = format!("{name}=");
        let mut out = Vec::new();
        for l in &self.lines {
            if l.starts_with(&prefix) {
                if let Some(d) = decl {
                    out.push(d.to_string());
                }
            } else {
                out.push(l.clone());
            }
        }
        self.lines = out;
    }

    fn jobnames(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(ANSIBLE).map(|r| r.replace(ANSIBLE, "")))
            .collect()
    }

    fn envnames(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| {
                l.split_once('=')
                    .is_some_and(|(k, _)| !k.is_empty() && !k.chars().any(char::is_whitespace))
            })
            .map(|l| l.split('=').next().unwrap_or("").to_string())
            .collect()
    }

    pub fn render(&self) -> String {
        let r = self.lines.join("\n");
        if r.is_empty() {
            r
        } else {
            format!("{}\n", r.trim_end_matches(['\r', '\n']))
        }
    }

    fn is_empty(&self) -> bool {
        self.lines.iter().all(|l| l.trim().is_empty())
    }
}

/// The `cron_file` as a path (relative names live in `/etc/cron.d`).
fn cron_path(f: &str) -> String {
    if f.starts_with('/') {
        f.to_string()
    } else {
        format!("/etc/cron.d/{f}")
    }
}

/// What apply does.
pub enum CronWork {
    /// Install `content` as the crontab (user's, or the file).
    Write(String),
    /// Remove the cron file (its last job went).
    RemoveFile,
}

/// The plan: pure. Returns the work (None: nothing to change) and the result.
pub fn plan_cron(
    a: &CronArgs,
    mut t: CronTab,
    diff: bool,
) -> Result<(Option<CronWork>, ModuleResult), String> {
    let mut r = ModuleResult::ok();
    let file = a.cron_file.as_deref().map(cron_path);
    if a.cron_file.as_deref() == Some("/etc/crontab") {
        return Err("Will not manage /etc/crontab via cron_file, see documentation.".into());
    }
    let header = match (&file, &a.user) {
        (Some(f), _) => f.clone(),
        (None, Some(u)) => format!("crontab for user \"{u}\""),
        (None, None) => "crontab".into(),
    };
    let before = t.existing.clone();
    if a.special_time.is_some()
        && [&a.minute, &a.hour, &a.day, &a.month, &a.weekday]
            .iter()
            .any(|x| *x != "*")
    {
        return Err(
            "You cannot combine special_time with any of the time or day/date parameters.".into(),
        );
    }
    let install = a.state == CronState::Present;
    if install {
        if file.is_some() && a.user.is_none() {
            return Err("To use cron_file=... parameter you must specify user=... as well".into());
        }
        if a.job.is_none() {
            return Err("You must specify 'job' to install a new cron job or variable".into());
        }
        if (a.insertafter.is_some() || a.insertbefore.is_some()) && !a.env {
            return Err(
                "Insertafter and insertbefore parameters are valid only with env=yes".into(),
            );
        }
    }
    let mut changed = false;
    if a.env {
        if a.name.contains(' ') {
            return Err("Invalid name for environment variable".into());
        }
        let decl = format!("{}=\"{}\"", a.name, a.job.clone().unwrap_or_default());
        let old = t.find_env(&a.name);
        if install {
            match old {
                None => {
                    let other = a.insertafter.as_ref().or(a.insertbefore.as_ref());
                    match other {
                        None => t.lines.insert(0, decl),
                        Some(o) => match t.find_env(o) {
                            Some((i, _)) => {
                                let at = if a.insertafter.is_some() { i + 1 } else { i };
                                t.lines.insert(at, decl);
                            }
                            None => return Err(format!("Variable named '{o}' not found.")),
                        },
                    }
                    changed = true;
                }
                Some((_, l)) if l != decl => {
                    t.update_env(&a.name, Some(&decl));
                    changed = true;
                }
                Some(_) => {}
            }
        } else if old.is_some() {
            t.update_env(&a.name, None);
            changed = true;
        }
    } else if install {
        let raw = a.job.clone().unwrap_or_default();
        if raw.trim_matches(['\r', '\n']).contains(['\r', '\n']) {
            r.data.insert(
                "warnings".into(),
                json!(["Job should not contain line breaks"]),
            );
        }
        let job = raw.trim_matches(['\r', '\n']);
        let prefix = if a.disabled { "#" } else { "" };
        let user = a.user.clone().unwrap_or_default();
        let line = match (a.special_time, &file) {
            (Some(s), Some(_)) => format!("{prefix}@{} {user} {job}", s.as_str()),
            (Some(s), None) => format!("{prefix}@{} {job}", s.as_str()),
            (None, Some(_)) => format!(
                "{prefix}{} {} {} {} {} {user} {job}",
                a.minute, a.hour, a.day, a.month, a.weekday
            ),
            (None, None) => format!(
                "{prefix}{} {} {} {} {} {job}",
                a.minute, a.hour, a.day, a.month, a.weekday
            ),
        };
        let old = t.find_job(&a.name, Some(&line));
        if old.is_empty() {
            t.lines.push(comment(&a.name));
            t.lines.push(line.clone());
            changed = true;
        }
        if old.len() > 1 && old[1] != line || old.len() > 2 {
            t.update_job(&a.name, Some(&line));
            changed = true;
        }
    } else {
        let old = t.find_job(&a.name, None);
        if !old.is_empty() {
            t.update_job(&a.name, None);
            changed = true;
            if file.is_some() && t.is_empty() {
                let mut rr = ModuleResult::ok();
                rr.changed = t.file_exists;
                rr.data.insert("cron_file".into(), json!(a.cron_file));
                rr.data.insert("state".into(), json!("absent"));
                if diff {
                    rr.diffs.push(FileDiff {
                        path: header,
                        before: Some(before),
                        after: Some(String::new()),
                        attributes: Vec::new(),
                        note: None,
                    });
                }
                let work = t.file_exists.then_some(CronWork::RemoveFile);
                return Ok((work, rr));
            }
        }
    }
    if !changed && !t.existing.is_empty() && !t.existing.ends_with(['\r', '\n']) {
        changed = true;
    }
    r.data.insert("jobs".into(), json!(t.jobnames()));
    r.data.insert("envs".into(), json!(t.envnames()));
    if let Some(f) = &a.cron_file {
        r.data.insert("cron_file".into(), json!(f));
    }
    r.changed = changed;
    if !changed {
        return Ok((None, r));
    }
    let after = t.render();
    if diff {
        r.diffs.push(FileDiff {
            path: header,
            before: Some(before),
            after: Some(after.clone()),
            attributes: Vec::new(),
            note: None,
        });
    }
    Ok((Some(CronWork::Write(after)), r))
}

const MARK: &str = "__deployer_cron__";

impl PlanApply for Cron {
    type Args = CronArgs;
    type Observed = CronTab;
    type Changes = (CronArgs, CronWork);

    fn observe<'a>(
        &'a self,
        a: &'a CronArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<CronTab, String>> {
        Box::pin(async move {
            if a.backup {
                return Err("cron: backup: true is not supported yet by deployer".into());
            }
            if let Some(u) = &a.user
                && !valid_account_name(u)
            {
                return Err(format!("'{u}' is not a valid user name"));
            }
            let script = match &a.cron_file {
                Some(f) => format!(
                    "f={}\nif [ -f \"$f\" ]; then echo '{MARK}'; cat -- \"$f\"; fi\nexit 0\n",
                    shell_quote(&cron_path(f))
                ),
                None => {
                    let u = a
                        .user
                        .as_deref()
                        .map(|u| format!("-u {} ", shell_quote(u)))
                        .unwrap_or_default();
                    format!(
                        "command -v crontab >/dev/null 2>&1 || {{ echo 'crontab not found on the host (install cron)' >&2; exit 3; }}\n\
                         echo '{MARK}'\ncrontab {u}-l 2>/dev/null\nrc=$?; [ $rc -le 1 ] || {{ echo 'Unable to read crontab' >&2; exit 3; }}\nexit 0\n"
                    )
                }
            };
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if out.rc != 0 {
                return Err(out.stderr_str().trim().to_string());
            }
            let stdout = out.stdout_str();
            let Some(body) = stdout.split_once(&format!("{MARK}\n")).map(|(_, b)| b) else {
                return Ok(CronTab::default());
            };
            if a.cron_file.is_some() {
                Ok(CronTab {
                    lines: body.lines().map(str::to_string).collect(),
                    existing: body.to_string(),
                    file_exists: true,
                })
            } else {
                Ok(from_crontab_l(body))
            }
        })
    }

    fn plan(
        &self,
        a: CronArgs,
        t: CronTab,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<(CronArgs, CronWork)>, String> {
        match plan_cron(&a, t, ctx.diff) {
            Ok((Some(w), r)) => Ok(Plan {
                result: r,
                changes: Some((a, w)),
            }),
            Ok((None, r)) => Ok(Plan::unchanged(r)),
            Err(e) => Ok(Plan::unchanged(ModuleResult::failed(e))),
        }
    }

    fn apply<'a>(
        &'a self,
        (a, w): (CronArgs, CronWork),
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let script = match (&w, &a.cron_file) {
                (CronWork::RemoveFile, Some(f)) => {
                    let p = cron_path(f);
                    format!("{}rm -f -- {}\n", ctx.release_save(&p), shell_quote(&p))
                }
                (CronWork::Write(content), Some(f)) => {
                    let p = cron_path(f);
                    format!(
                        "{}{}",
                        ctx.release_save(&p),
                        RemoteWrite::new(&p, content.as_bytes()).script()?
                    )
                }
                (CronWork::Write(content), None) => {
                    let u = a
                        .user
                        .as_deref()
                        .map(|u| format!("-u {} ", shell_quote(u)))
                        .unwrap_or_default();
                    let b64 = base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        content.as_bytes(),
                    );
                    format!("printf '%s' '{b64}' | base64 -d | crontab {u}-\n")
                }
                (CronWork::RemoveFile, None) => return Ok(r),
            };
            let out = ctx
                .conn
                .run_script(&script, ctx.become_.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(f) = &a.cron_file {
                ctx.release_saved(&cron_path(f), &out.stdout_str());
            }
            if out.rc != 0 {
                r.failed = true;
                r.msg = Some(format!(
                    "Failed to install new cronfile: {}",
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

    fn args(name: &str, job: &str) -> CronArgs {
        CronArgs {
            name: name.into(),
            job: Some(job.into()),
            minute: "*".into(),
            hour: "*".into(),
            day: "*".into(),
            month: "*".into(),
            weekday: "*".into(),
            ..Default::default()
        }
    }

    fn tab(s: &str) -> CronTab {
        from_crontab_l(s)
    }

    #[test]
    fn jobs_and_envs_as_ansible() {
        let mut a = args("backup", "/usr/local/bin/backup");
        a.minute = "5".into();
        a.hour = "2".into();
        let (w, r) = plan_cron(&a, tab(""), false).unwrap();
        let Some(CronWork::Write(c)) = w else {
            panic!("no write")
        };
        assert_eq!(c, "#Ansible: backup\n5 2 * * * /usr/local/bin/backup\n");
        assert_eq!(r.data["jobs"], json!(["backup"]));
        let (w, r) = plan_cron(&a, tab(&c), false).unwrap();
        assert!(w.is_none() && !r.changed);
        a.hour = "3".into();
        let (w, _) = plan_cron(&a, tab(&c), false).unwrap();
        let Some(CronWork::Write(c2)) = w else {
            panic!("no write")
        };
        assert_eq!(c2, "#Ansible: backup\n5 3 * * * /usr/local/bin/backup\n");
        let mut e = args("PATH", "/bin:/usr/bin");
        e.env = true;
        let (w, r) = plan_cron(&e, tab(&c2), false).unwrap();
        let Some(CronWork::Write(c3)) = w else {
            panic!("no write")
        };
        assert_eq!(c3, format!("PATH=\"/bin:/usr/bin\"\n{c2}"));
        assert_eq!(r.data["envs"], json!(["PATH"]));
        let mut gone = args("backup", "");
        gone.state = CronState::Absent;
        let (w, _) = plan_cron(&gone, tab(&c3), false).unwrap();
        let Some(CronWork::Write(c4)) = w else {
            panic!("no write")
        };
        assert_eq!(c4, "PATH=\"/bin:/usr/bin\"\n");
        // A header of crontab -l is not part of the crontab.
        let t = tab(
            "# DO NOT EDIT THIS FILE - edit the master and reinstall.\n# (/tmp/x installed on now)\n# (Cron version 1)\nA=1\n",
        );
        assert_eq!(t.lines, vec!["A=1"]);
        assert_eq!(t.existing, "A=1\n");
    }
}
