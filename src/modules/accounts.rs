//! `user` and `group`: local accounts through the host's own `useradd`,
//! `usermod`, `userdel`, `groupadd`, `groupmod`, `groupdel` and `chpasswd`,
//! deciding `changed` as Ansible's `ansible.builtin.user` / `group` do on
//! Linux.
//!
//! Observe (one execution): `getent passwd`, `getent shadow` of the user and
//! `getent group` (every group: supplementary membership and the gid/name of
//! each group named). Plan (pure): the commands to run, as argument lists.
//! Apply: those commands (every word quoted), then the account read back for
//! the registered result.
//!
//! A password hash never reaches a command line: it goes to `chpasswd -e` on
//! its standard input, inside the script (`usermod -p` would show it to every
//! local user in the process list). The registered result says
//! `NOT_LOGGING_PASSWORD` as Ansible's does.
//!
//! Supported (user): `name` (`user`), `state`, `uid`, `non_unique`, `group`,
//! `groups`, `append`, `comment`, `home`, `shell`, `password`,
//! `update_password`, `password_lock`, `create_home` (`createhome`),
//! `skeleton`, `system`, `move_home`, `force`, `remove`, `umask`,
//! `password_expire_max`, `password_expire_min`, `password_expire_warn`,
//! `uid_min`, `uid_max`. Not supported yet (load-time error):
//! `generate_ssh_key` and the `ssh_key_*` options, `expires`, `local`,
//! `seuser`, `login_class`, `hidden`, `profile`, `authorization`, `role`,
//! `password_expire_account_disable`.
//!
//! Supported (group): `name`, `state`, `gid`, `system`, `force`,
//! `non_unique`, `gid_min`, `gid_max`. Not supported yet: `local`.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_bool, de_opt_list, de_opt_string, de_opt_u64, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Present,
    Absent,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePassword {
    #[default]
    Always,
    OnCreate,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct UserArgs {
    #[serde(alias = "user", deserialize_with = "de_string")]
    pub name: String,
    #[serde(default)]
    pub state: Presence,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub uid: Option<u64>,
    #[serde(default, deserialize_with = "de_bool")]
    pub non_unique: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub group: Option<String>,
    #[serde(default, deserialize_with = "de_opt_list")]
    pub groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_bool")]
    pub append: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub home: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub shell: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub password: Option<String>,
    #[serde(default)]
    pub update_password: UpdatePassword,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub password_lock: Option<bool>,
    #[serde(default, alias = "createhome", deserialize_with = "de_opt_bool")]
    pub create_home: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub skeleton: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub system: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub move_home: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub force: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub remove: bool,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub umask: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub password_expire_max: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub password_expire_min: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub password_expire_warn: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub uid_min: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub uid_max: Option<u64>,
}

/// An integer that may be negative (`-1` turns an ageing limit off).
fn de_opt_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    let v = Json::deserialize(d)?;
    match &v {
        Json::Null => Ok(None),
        Json::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected an integer, got {v}"))),
        Json::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected an integer, got {v}"))),
        _ => Err(D::Error::custom(format!("expected an integer, got {v}"))),
    }
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct GroupArgs {
    #[serde(deserialize_with = "de_string")]
    pub name: String,
    #[serde(default)]
    pub state: Presence,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub gid: Option<u64>,
    #[serde(default, deserialize_with = "de_bool")]
    pub system: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub force: bool,
    #[serde(default, deserialize_with = "de_bool")]
    pub non_unique: bool,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub gid_min: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub gid_max: Option<u64>,
}

/// An account or group name the shadow tools accept; anything else (a
/// colon, a newline, a leading dash) is refused before the host is touched.
pub fn valid_account_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 256
        && !n.starts_with('-')
        && n.trim_end_matches('$')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// A value that goes into `/etc/passwd` (comment, home, shell): no colon, no
/// newline (they would corrupt the file; the tools refuse them too).
fn valid_field(what: &str, v: &str) -> Result<(), String> {
    if v.contains(':') || v.contains('\n') {
        return Err(format!("{what} '{v}' must not contain ':' or a newline"));
    }
    Ok(())
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u64,
    pub gid: u64,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// One `/etc/shadow` entry (the fields the modules read).
#[derive(Debug, Clone, Default)]
pub struct Shadow {
    pub password: String,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub warn: Option<i64>,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupEnt {
    pub name: String,
    pub gid: u64,
    pub members: Vec<String>,
}

#[derive(Debug, Default)]
pub struct AccountsObserved {
    pub user: Option<Passwd>,
    pub shadow: Option<Shadow>,
    pub groups: Vec<GroupEnt>,
    /// Whether the home directory the plan looks at exists.
    pub home_exists: bool,
    /// Whether the parent of the `home` argument is a directory.
    pub home_parent_exists: bool,
    /// `HOME_MODE` / `UMASK` of `/etc/login.defs`, as the mode of a home
    /// directory made by the module.
    pub home_mode: u32,
}

impl AccountsObserved {
    /// A group named by gid (first) or name, as Ansible's `group_exists`.
    pub fn group(&self, spec: &str) -> Option<&GroupEnt> {
        spec.parse::<u64>()
            .ok()
            .and_then(|gid| self.groups.iter().find(|g| g.gid == gid))
            .or_else(|| self.groups.iter().find(|g| g.name == spec))
    }
}

const MARK: &str = "__deployer_acct__";

/// Reads the user `name` (if any), every group, and whether `home` (the
/// argument, else the passwd home) exists.
fn observe_script(name: Option<&str>, home: Option<&str>) -> String {
    let mut s = String::from(
        "command -v getent >/dev/null 2>&1 || { echo 'getent not found on the host' >&2; exit 3; }\n",
    );
    s.push_str(&format!(
        "getent group | sed 's/^/{MARK}G\\t/'\n\
         m=0; for l in $(sed -n -E 's/^(HOME_MODE|UMASK)[[:space:]]+([0-9]+)[[:space:]]*$/\\1=\\2/p' /etc/login.defs 2>/dev/null); do printf '{MARK}D\\t%s\\n' \"$l\"; done\n"
    ));
    if let Some(n) = name {
        let q = shell_quote(n);
        s.push_str(&format!(
            "p=$(getent passwd -- {q}) && printf '{MARK}P\\t%s\\n' \"$p\"\n\
             sh=$(getent shadow -- {q} 2>/dev/null) && printf '{MARK}S\\t%s\\n' \"$sh\"\n"
        ));
        let h = match home {
            Some(h) => shell_quote(h),
            None => "\"$(printf '%s' \"$p\" | cut -d: -f6)\"".to_string(),
        };
        s.push_str(&format!(
            "h={h}\n\
             if [ -n \"$h\" ] && [ -e \"$h\" ]; then echo '{MARK}H'; fi\n\
             if [ -n \"$h\" ] && [ -d \"$(dirname -- \"$h\")\" ]; then echo '{MARK}Hp'; fi\n"
        ));
    }
    s.push_str("exit 0\n");
    s
}

fn parse_observed(out: &str) -> AccountsObserved {
    let mut o = AccountsObserved {
        home_mode: 0o755,
        ..Default::default()
    };
    let mut home_mode = None;
    let mut umask = None;
    for line in out.lines() {
        let Some(rest) = line.strip_prefix(MARK) else {
            continue;
        };
        if let Some(g) = rest.strip_prefix("G\t") {
            let f: Vec<&str> = g.split(':').collect();
            if f.len() >= 4 {
                o.groups.push(GroupEnt {
                    name: f[0].to_string(),
                    gid: f[2].parse().unwrap_or(u64::MAX),
                    members: f[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                });
            }
        } else if let Some(p) = rest.strip_prefix("P\t") {
            let f: Vec<&str> = p.split(':').collect();
            if f.len() >= 7 {
                o.user = Some(Passwd {
                    name: f[0].to_string(),
                    uid: f[2].parse().unwrap_or(u64::MAX),
                    gid: f[3].parse().unwrap_or(u64::MAX),
                    gecos: f[4].to_string(),
                    home: f[5].to_string(),
                    shell: f[6].to_string(),
                });
            }
        } else if let Some(s) = rest.strip_prefix("S\t") {
            let f: Vec<&str> = s.split(':').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
            o.shadow = Some(Shadow {
                password: f.get(1).unwrap_or(&"").to_string(),
                min: num(3),
                max: num(4),
                warn: num(5),
            });
        } else if rest == "H" {
            o.home_exists = true;
        } else if rest == "Hp" {
            o.home_parent_exists = true;
        } else if let Some(d) = rest.strip_prefix("D\t") {
            if let Some(v) = d.strip_prefix("HOME_MODE=") {
                home_mode = home_mode.or_else(|| u32::from_str_radix(v, 8).ok());
            } else if let Some(v) = d.strip_prefix("UMASK=") {
                umask = u32::from_str_radix(v, 8).ok();
            }
        }
    }
    o.home_mode = home_mode.unwrap_or_else(|| umask.map_or(0o755, |u| 0o777 & !u));
    o
}

async fn observe(
    ctx: &mut ModuleCtx<'_>,
    name: Option<&str>,
    home: Option<&str>,
) -> Result<AccountsObserved, String> {
    let out = ctx
        .conn
        .run_script(&observe_script(name, home), ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if out.rc != 0 {
        return Err(out.stderr_str().trim().to_string());
    }
    Ok(parse_observed(&out.stdout_str()))
}

/// What apply runs: commands as argument lists (each word quoted when the
/// script is made), and the password for `chpasswd -e`'s standard input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Commands {
    /// Directories to make (`mkdir -p`) before the commands (a home's parents).
    pub parents: Vec<String>,
    pub cmds: Vec<Vec<String>>,
    /// `name:hash` for `chpasswd -e`.
    pub chpasswd: Option<String>,
    /// A missing home directory to make: path, skeleton, mode.
    pub make_home: Option<(String, String, u32)>,
    /// Reported result keys that only apply can know (the account as made).
    pub report_user: bool,
}

impl Commands {
    fn script(&self, name: &str) -> String {
        let mut s = String::from("set -e\nexport LC_ALL=C\n");
        for p in &self.parents {
            s.push_str(&format!("mkdir -p -- {}\n", shell_quote(p)));
        }
        for c in &self.cmds {
            let words: Vec<String> = c.iter().map(|w| shell_quote(w)).collect();
            s.push_str(&words.join(" "));
            s.push('\n');
        }
        if let Some(line) = &self.chpasswd {
            // printf is the shell's builtin: the hash is on no command line.
            s.push_str(&format!(
                "printf '%s\\n' {} | chpasswd -e\n",
                shell_quote(line)
            ));
        }
        if let Some((home, skel, mode)) = &self.make_home {
            let h = shell_quote(home);
            let k = shell_quote(skel);
            let n = shell_quote(name);
            s.push_str(&format!(
                "if [ ! -e {h} ]; then\n\
                 if [ -d {k} ] && [ {k} != /dev/null ]; then mkdir -p -- \"$(dirname -- {h})\"; cp -R -P -p -- {k} {h}; else mkdir -p -- {h}; fi\n\
                 chmod {mode:o} -- {h}\n\
                 u=$(id -u -- {n}); g=$(id -g -- {n})\n\
                 chown -R -P -- \"$u:$g\" {h}\n\
                 fi\n"
            ));
        }
        s
    }
}

pub struct User;

impl Module for User {
    fn name(&self) -> &'static str {
        "user"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.user"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<UserArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") && !args.contains_key("user") {
            return Err("missing required argument: name".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Checks the arguments that reach the account files (before the host).
fn check_user_args(a: &UserArgs) -> Result<(), String> {
    if !valid_account_name(&a.name) {
        return Err(format!("'{}' is not a valid user name", a.name));
    }
    for (what, v) in [
        ("comment", &a.comment),
        ("home", &a.home),
        ("shell", &a.shell),
        ("skeleton", &a.skeleton),
    ] {
        if let Some(v) = v {
            valid_field(what, v)?;
        }
    }
    if let Some(g) = &a.group
        && !valid_account_name(g)
    {
        return Err(format!("'{g}' is not a valid group name"));
    }
    for g in a.groups.iter().flatten() {
        if !valid_account_name(g.trim()) {
            return Err(format!("'{g}' is not a valid group name"));
        }
    }
    if let Some(p) = &a.password
        && (p.contains(':') && p != "*************" || p.contains('\n'))
    {
        return Err("password: a password hash must not contain ':' or a newline".into());
    }
    if let Some(u) = &a.umask
        && !(u.len() <= 4 && !u.is_empty() && u.chars().all(|c| ('0'..='7').contains(&c)))
    {
        return Err(format!("umask '{u}' is not an octal umask"));
    }
    Ok(())
}

/// The desired supplementary groups as Ansible joins and splits them.
fn wanted_groups(a: &UserArgs) -> Option<Vec<String>> {
    a.groups.as_ref().map(|g| {
        g.iter()
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
}

/// The plan for `user`: pure.
pub fn plan_user(
    a: &UserArgs,
    o: &AccountsObserved,
    check: bool,
) -> Result<(Commands, ModuleResult), String> {
    let mut r = ModuleResult::ok();
    let mut c = Commands::default();
    r.data.insert("name".into(), json!(a.name));
    r.data.insert(
        "state".into(),
        json!(match a.state {
            Presence::Present => "present",
            Presence::Absent => "absent",
        }),
    );
    let create_home = a.create_home.unwrap_or(true);
    if a.state == Presence::Absent {
        if o.user.is_some() {
            r.changed = true;
            if check {
                return Ok((c, changed_only()));
            }
            let mut cmd = vec!["userdel".to_string()];
            if a.force {
                cmd.push("-f".into());
            }
            if a.remove {
                cmd.push("-r".into());
            }
            cmd.push(a.name.clone());
            c.cmds.push(cmd);
            r.data.insert("force".into(), json!(a.force));
            r.data.insert("remove".into(), json!(a.remove));
        }
        return Ok((c, r));
    }
    let groups = wanted_groups(a);
    let mut group_names = BTreeSet::new();
    for g in groups.iter().flatten() {
        match o.group(g) {
            Some(ge) => {
                group_names.insert(ge.name.clone());
            }
            None => return Err(format!("Group {g} does not exist")),
        }
    }
    let primary = match &a.group {
        Some(g) => Some(
            o.group(g)
                .ok_or_else(|| format!("Group {g} does not exist"))?,
        ),
        None => None,
    };
    let Some(u) = &o.user else {
        // Create.
        r.changed = true;
        if check {
            return Ok((c, changed_only()));
        }
        let mut cmd = vec!["useradd".to_string()];
        if let Some(uid) = a.uid {
            cmd.extend(["-u".into(), uid.to_string()]);
            if a.non_unique {
                cmd.push("-o".into());
            }
        }
        if let Some(g) = &a.group {
            cmd.extend(["-g".into(), g.clone()]);
        } else if o.group(&a.name).is_some() {
            cmd.push("-N".into());
        }
        if let Some(gs) = &groups
            && !gs.is_empty()
        {
            let set: BTreeSet<&String> = gs.iter().collect();
            cmd.extend([
                "-G".into(),
                set.into_iter().cloned().collect::<Vec<_>>().join(","),
            ]);
        }
        if let Some(cm) = &a.comment {
            cmd.extend(["-c".into(), cm.clone()]);
        }
        if let Some(h) = &a.home {
            if create_home && !o.home_parent_exists {
                let parent = std::path::Path::new(h)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                if !parent.is_empty() {
                    c.parents.push(parent);
                }
            }
            cmd.extend(["-d".into(), h.clone()]);
        }
        if let Some(s) = &a.shell {
            cmd.extend(["-s".into(), s.clone()]);
        }
        if create_home {
            cmd.push("-m".into());
            if let Some(k) = &a.skeleton {
                cmd.extend(["-k".into(), k.clone()]);
            }
            if let Some(m) = &a.umask {
                cmd.extend(["-K".into(), format!("UMASK={m}")]);
            }
        } else {
            cmd.push("-M".into());
        }
        if a.system {
            cmd.push("-r".into());
        }
        if let Some(v) = a.uid_min {
            cmd.extend(["-K".into(), format!("UID_MIN={v}")]);
        }
        if let Some(v) = a.uid_max {
            cmd.extend(["-K".into(), format!("UID_MAX={v}")]);
        }
        cmd.push(a.name.clone());
        c.cmds.push(cmd);
        if let Some(p) = &a.password {
            let hash = if a.password_lock == Some(true) {
                format!("!{p}")
            } else {
                p.clone()
            };
            c.chpasswd = Some(format!("{}:{hash}", a.name));
            r.data
                .insert("password".into(), json!("NOT_LOGGING_PASSWORD"));
        }
        expire_cmd(a, None, &mut c);
        r.data.insert("system".into(), json!(a.system));
        r.data.insert("create_home".into(), json!(create_home));
        c.report_user = true;
        return Ok((c, r));
    };
    // Modify.
    let shadow = o.shadow.clone().unwrap_or_default();
    let mut cmd = vec!["usermod".to_string()];
    if let Some(uid) = a.uid
        && uid != u.uid
    {
        cmd.extend(["-u".into(), uid.to_string()]);
        if a.non_unique {
            cmd.push("-o".into());
        }
    }
    if let Some(g) = primary
        && g.gid != u.gid
    {
        cmd.extend(["-g".into(), g.gid.to_string()]);
    }
    if let Some(gs) = &groups {
        let current: BTreeSet<String> = o
            .groups
            .iter()
            .filter(|g| g.members.contains(&a.name))
            .map(|g| g.name.clone())
            .collect();
        let mut need = false;
        let mut append_flag = false;
        if gs.is_empty() {
            need = !current.is_empty() && !a.append;
        } else {
            let diff: BTreeSet<&String> = current.symmetric_difference(&group_names).collect();
            if !diff.is_empty() {
                if a.append {
                    if group_names.iter().any(|g| diff.contains(g)) {
                        append_flag = true;
                        need = true;
                    }
                } else {
                    need = true;
                }
            }
        }
        if need {
            if append_flag {
                cmd.push("-a".into());
            }
            cmd.extend([
                "-G".into(),
                group_names.iter().cloned().collect::<Vec<_>>().join(","),
            ]);
        }
    }
    if let Some(cm) = &a.comment
        && *cm != u.gecos
    {
        cmd.extend(["-c".into(), cm.clone()]);
    }
    if let Some(h) = &a.home
        && *h != u.home
    {
        cmd.extend(["-d".into(), h.clone()]);
        if a.move_home {
            cmd.push("-m".into());
        }
    }
    if let Some(s) = &a.shell
        && *s != u.shell
    {
        cmd.extend(["-s".into(), s.clone()]);
    }
    if a.password_lock == Some(true) && !shadow.password.starts_with('!') {
        cmd.push("-L".into());
    } else if a.password_lock == Some(false) && shadow.password.starts_with('!') {
        cmd.push("-U".into());
    }
    if a.update_password == UpdatePassword::Always
        && let Some(p) = &a.password
        && shadow.password.trim_start_matches('!') != p.trim_start_matches('!')
    {
        cmd.retain(|w| w != "-L" && w != "-U");
        let hash = if a.password_lock == Some(true) {
            format!("!{p}")
        } else {
            p.clone()
        };
        c.chpasswd = Some(format!("{}:{hash}", a.name));
    }
    if cmd.len() > 1 {
        cmd.push(a.name.clone());
        c.cmds.push(cmd);
    }
    if !c.cmds.is_empty() || c.chpasswd.is_some() {
        r.changed = true;
    }
    if a.password.is_some() {
        r.data
            .insert("password".into(), json!("NOT_LOGGING_PASSWORD"));
    }
    r.data.insert("append".into(), json!(a.append));
    r.data.insert("move_home".into(), json!(a.move_home));
    // A missing home directory is made (also for an account made without
    // one), after usermod: a home moved by `move_home` is there by then.
    let moved = a.move_home && a.home.as_ref().is_some_and(|h| *h != u.home);
    if !o.home_exists && create_home && !moved {
        r.changed = true;
        c.make_home = Some((
            a.home.clone().unwrap_or_else(|| u.home.clone()),
            a.skeleton.clone().unwrap_or_else(|| "/etc/skel".into()),
            o.home_mode,
        ));
    }
    if expire_cmd(a, Some(&shadow), &mut c) {
        r.changed = true;
    }
    user_report(&mut r, a, u);
    c.report_user = true;
    Ok((c, r))
}

/// `chage` for the password ageing arguments that differ; whether one does.
fn expire_cmd(a: &UserArgs, shadow: Option<&Shadow>, c: &mut Commands) -> bool {
    let mut cmd = vec!["chage".to_string()];
    let differs = |want: Option<i64>, have: Option<i64>| {
        want.is_some_and(|w| shadow.is_none() || Some(w) != have)
    };
    let sh = shadow.cloned().unwrap_or_default();
    if differs(a.password_expire_min, sh.min) {
        cmd.extend(["-m".into(), a.password_expire_min.unwrap_or(0).to_string()]);
    }
    if differs(a.password_expire_max, sh.max) {
        cmd.extend(["-M".into(), a.password_expire_max.unwrap_or(0).to_string()]);
    }
    if differs(a.password_expire_warn, sh.warn) {
        cmd.extend(["-W".into(), a.password_expire_warn.unwrap_or(0).to_string()]);
    }
    if cmd.len() == 1 {
        return false;
    }
    cmd.push(a.name.clone());
    c.cmds.push(cmd);
    true
}

/// The account's fields in the registered result, as Ansible reports them.
fn user_report(r: &mut ModuleResult, a: &UserArgs, u: &Passwd) {
    r.data.insert("uid".into(), json!(u.uid));
    r.data.insert("group".into(), json!(u.gid));
    r.data.insert("comment".into(), json!(u.gecos));
    r.data.insert("home".into(), json!(u.home));
    r.data.insert("shell".into(), json!(u.shell));
    if let Some(g) = &a.groups {
        r.data.insert("groups".into(), json!(g.join(",")));
    }
}

/// What Ansible's check mode reports for a user or group it would create or
/// remove: `changed` and nothing else.
fn changed_only() -> ModuleResult {
    ModuleResult {
        changed: true,
        ..Default::default()
    }
}

/// Runs the commands; the failure message is the failing tool's stderr.
async fn run_commands(
    ctx: &mut ModuleCtx<'_>,
    c: &Commands,
    name: &str,
    r: &mut ModuleResult,
) -> Result<bool, String> {
    let out = ctx
        .conn
        .run_script(&c.script(name), ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let stdout = out.stdout_str();
    let stderr = out.stderr_str();
    if !stdout.trim().is_empty() {
        r.data.insert("stdout".into(), json!(stdout));
    }
    if !stderr.trim().is_empty() {
        r.data.insert("stderr".into(), json!(stderr));
    }
    if out.rc != 0 {
        r.failed = true;
        r.data.insert("rc".into(), json!(out.rc));
        r.msg = Some(format!("{name}: {}", stderr.trim()));
        return Ok(false);
    }
    Ok(true)
}

impl PlanApply for User {
    type Args = UserArgs;
    type Observed = AccountsObserved;
    type Changes = (UserArgs, Commands);

    fn observe<'a>(
        &'a self,
        a: &'a UserArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<AccountsObserved, String>> {
        Box::pin(async move {
            check_user_args(a)?;
            observe(ctx, Some(&a.name), a.home.as_deref()).await
        })
    }

    fn plan(
        &self,
        a: UserArgs,
        o: AccountsObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<(UserArgs, Commands)>, String> {
        let (c, r) = match plan_user(&a, &o, ctx.check) {
            Ok(p) => p,
            Err(msg) => return Ok(Plan::unchanged(ModuleResult::failed(msg))),
        };
        let work = !c.cmds.is_empty() || c.chpasswd.is_some() || c.make_home.is_some();
        Ok(Plan {
            result: r,
            changes: work.then_some((a, c)),
        })
    }

    fn apply<'a>(
        &'a self,
        (a, c): (UserArgs, Commands),
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            if !run_commands(ctx, &c, &a.name, &mut r).await? {
                return Ok(r);
            }
            if c.report_user && a.state == Presence::Present {
                let o = observe(ctx, Some(&a.name), a.home.as_deref()).await?;
                match &o.user {
                    Some(u) => user_report(&mut r, &a, u),
                    None => {
                        r.failed = true;
                        r.msg = Some(format!("failed to look up user name: {}", a.name));
                    }
                }
            }
            Ok(r)
        })
    }
}

pub struct Group;

impl Module for Group {
    fn name(&self) -> &'static str {
        "group"
    }
    fn fqcn(&self) -> &'static str {
        "ansible.builtin.group"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<GroupArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if !args.contains_key("name") {
            return Err("missing required argument: name".into());
        }
        if args
            .get("non_unique")
            .and_then(super::args::parse_bool)
            .unwrap_or(false)
            && !args.contains_key("gid")
        {
            return Err("non_unique is True but all of the following are missing: gid".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// The plan for `group`: pure.
pub fn plan_group(
    a: &GroupArgs,
    o: &AccountsObserved,
    check: bool,
) -> Result<(Commands, ModuleResult), String> {
    let mut r = ModuleResult::ok();
    let mut c = Commands::default();
    r.data.insert("name".into(), json!(a.name));
    let existing = o.groups.iter().find(|g| g.name == a.name);
    match a.state {
        Presence::Absent => {
            r.data.insert("state".into(), json!("absent"));
            if existing.is_some() {
                r.changed = true;
                if check {
                    return Ok((c, changed_only()));
                }
                let mut cmd = vec!["groupdel".to_string()];
                if a.force {
                    cmd.push("-f".into());
                }
                cmd.push(a.name.clone());
                c.cmds.push(cmd);
            }
        }
        Presence::Present => {
            r.data.insert("state".into(), json!("present"));
            match existing {
                None => {
                    r.changed = true;
                    if check {
                        return Ok((c, changed_only()));
                    }
                    let mut cmd = vec!["groupadd".to_string()];
                    if let Some(gid) = a.gid {
                        cmd.extend(["-g".into(), gid.to_string()]);
                        if a.non_unique {
                            cmd.push("-o".into());
                        }
                    }
                    if a.system {
                        cmd.push("-r".into());
                    }
                    if let Some(v) = a.gid_min {
                        cmd.extend(["-K".into(), format!("GID_MIN={v}")]);
                    }
                    if let Some(v) = a.gid_max {
                        cmd.extend(["-K".into(), format!("GID_MAX={v}")]);
                    }
                    cmd.push(a.name.clone());
                    c.cmds.push(cmd);
                    c.report_user = true;
                }
                Some(g) => {
                    if let Some(gid) = a.gid
                        && gid != g.gid
                    {
                        r.changed = true;
                        let mut cmd = vec!["groupmod".to_string(), "-g".into(), gid.to_string()];
                        if a.non_unique {
                            cmd.push("-o".into());
                        }
                        cmd.push(a.name.clone());
                        c.cmds.push(cmd);
                        c.report_user = true;
                    }
                    r.data.insert("system".into(), json!(a.system));
                    r.data.insert("gid".into(), json!(g.gid));
                }
            }
        }
    }
    Ok((c, r))
}

impl PlanApply for Group {
    type Args = GroupArgs;
    type Observed = AccountsObserved;
    type Changes = (GroupArgs, Commands);

    fn observe<'a>(
        &'a self,
        a: &'a GroupArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<AccountsObserved, String>> {
        Box::pin(async move {
            if !valid_account_name(&a.name) {
                return Err(format!("'{}' is not a valid group name", a.name));
            }
            observe(ctx, None, None).await
        })
    }

    fn plan(
        &self,
        a: GroupArgs,
        o: AccountsObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<(GroupArgs, Commands)>, String> {
        let (c, r) = match plan_group(&a, &o, ctx.check) {
            Ok(p) => p,
            Err(msg) => return Ok(Plan::unchanged(ModuleResult::failed(msg))),
        };
        let work = !c.cmds.is_empty();
        Ok(Plan {
            result: r,
            changes: work.then_some((a, c)),
        })
    }

    fn apply<'a>(
        &'a self,
        (a, c): (GroupArgs, Commands),
        mut r: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            if !run_commands(ctx, &c, &a.name, &mut r).await? {
                r.data.insert("name".into(), json!(a.name));
                return Ok(r);
            }
            if c.report_user {
                let o = observe(ctx, None, None).await?;
                if let Some(g) = o.groups.iter().find(|g| g.name == a.name) {
                    r.data.insert("system".into(), json!(a.system));
                    r.data.insert("gid".into(), json!(g.gid));
                }
            }
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> AccountsObserved {
        parse_observed(&format!(
            "{MARK}G\troot:x:0:\n{MARK}G\tsudo:x:27:alice\n{MARK}G\tadm:x:4:\n{MARK}G\talice:x:1000:\n\
             {MARK}P\talice:x:1000:1000:Alice:/home/alice:/bin/bash\n{MARK}S\talice:$6$s$h:19000:0:99999:7:::\n{MARK}H\n\
             {MARK}D\tUMASK=022\n"
        ))
    }

    fn args(name: &str) -> UserArgs {
        UserArgs {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn modify_only_what_differs() {
        let o = observed();
        assert_eq!(o.home_mode, 0o755);
        let mut a = args("alice");
        a.groups = Some(vec!["sudo".into()]);
        a.shell = Some("/bin/bash".into());
        let (c, r) = plan_user(&a, &o, false).unwrap();
        assert!(!r.changed && c.cmds.is_empty(), "{c:?}");
        a.groups = Some(vec!["adm".into()]);
        a.append = true;
        let (c, r) = plan_user(&a, &o, false).unwrap();
        assert!(r.changed);
        assert_eq!(c.cmds, vec![vec!["usermod", "-a", "-G", "adm", "alice"]]);
        a.groups = Some(vec!["nope".into()]);
        assert_eq!(
            plan_user(&a, &o, false).unwrap_err(),
            "Group nope does not exist"
        );
        let mut a = args("alice");
        a.password = Some("$6$s$h".into());
        a.password_lock = Some(true);
        let (c, _) = plan_user(&a, &o, false).unwrap();
        assert_eq!(c.cmds, vec![vec!["usermod", "-L", "alice"]]);
        assert!(c.chpasswd.is_none());
        a.password = Some("$6$s$other".into());
        let (c, r) = plan_user(&a, &o, false).unwrap();
        assert!(c.cmds.is_empty());
        assert_eq!(c.chpasswd.as_deref(), Some("alice:!$6$s$other"));
        assert_eq!(r.data["password"], "NOT_LOGGING_PASSWORD");
        assert!(!c.script("alice").contains("usermod -p"));
    }

    #[test]
    fn create_and_remove() {
        let mut o = observed();
        // What observe reads for a user that does not exist.
        o.user = None;
        o.shadow = None;
        let mut a = args("bob");
        a.system = true;
        a.groups = Some(vec!["sudo".into(), "adm".into()]);
        let (c, r) = plan_user(&a, &o, false).unwrap();
        assert!(r.changed);
        assert_eq!(
            c.cmds,
            vec![vec!["useradd", "-G", "adm,sudo", "-m", "-r", "bob"]]
        );
        let (c, r) = plan_user(&a, &o, true).unwrap();
        assert!(r.changed && c.cmds.is_empty() && r.data.is_empty());
        let o = observed();
        let mut a = args("alice");
        a.state = Presence::Absent;
        a.remove = true;
        let (c, _) = plan_user(&a, &o, false).unwrap();
        assert_eq!(c.cmds, vec![vec!["userdel", "-r", "alice"]]);
        assert!(!valid_account_name("-x") && !valid_account_name("a:b"));
    }

    #[test]
    fn groups() {
        let o = observed();
        let mut a = GroupArgs {
            name: "adm".into(),
            ..Default::default()
        };
        let (c, r) = plan_group(&a, &o, false).unwrap();
        assert!(!r.changed && c.cmds.is_empty());
        assert_eq!(r.data["gid"], 4);
        a.gid = Some(40);
        let (c, _) = plan_group(&a, &o, false).unwrap();
        assert_eq!(c.cmds, vec![vec!["groupmod", "-g", "40", "adm"]]);
        a.name = "new".into();
        a.system = true;
        let (c, _) = plan_group(&a, &o, false).unwrap();
        assert_eq!(c.cmds, vec![vec!["groupadd", "-g", "40", "-r", "new"]]);
    }
}
