//! `mysql_db` and `mysql_user` (`community.mysql.*`): databases and accounts
//! of a MySQL/MariaDB server on the host, driven with the host's `mysql`
//! client (the collection uses PyMySQL on the host). As PyMySQL, the client
//! reads only `config_file` (default `~/.my.cnf`, when it exists), connects
//! over TCP to `login_host`:`login_port` unless `login_unix_socket` is given,
//! and logs in as `login_user` (default: the become user's name).
//!
//! SQL reaches the client on its standard input (base64 in the script, which
//! travels on the SSH channel's stdin); the login password is the client's
//! `MYSQL_PWD` environment variable, never an argument; both passwords are
//! registered as secrets (the collection marks them `no_log`). Account
//! passwords are compared and set as `mysql_native_password` hashes computed
//! here, so a clear-text account password is never sent to the server.
//!
//! Connection arguments: `login_user`, `login_password`, `login_host`,
//! `login_port`, `login_unix_socket`, `config_file`, `connect_timeout`,
//! `client_cert` (`ssl_cert`), `client_key` (`ssl_key`), `ca_cert`
//! (`ssl_ca`), `check_implicit_admin`. Not supported yet: `check_hostname`.
//!
//! `mysql_db`: `name` (`db`, a list), `state` present/absent, `encoding`,
//! `collation`, `sql_log_bin`. Not supported yet: `state` dump/import and
//! their arguments.
//!
//! `mysql_user`: `name` (`user`), `host`, `password`, `encrypted`, `priv`
//! (string `db.table:PRIV,PRIV/...` or mapping), `append_privs`, `state`,
//! `update_password` always/on_create, `column_case_sensitive`,
//! `sql_log_bin`, `force_context`. Not supported yet: `host_all`,
//! `subtract_privs`, `plugin*`, `salt`, `tls_requires`, `attributes`,
//! `resource_limits`, `session_vars`, `password_expire*`, `locked`,
//! `update_password: on_new_username`.
//!
//! `mysql_replication` (MariaDB): the modes and return values of the
//! collection (3.16.1); no check mode (the task is skipped, as Ansible
//! skips it). Not supported yet: `changereplication`, `channel`,
//! `primary_auto_position` and MySQL servers.

use base64::Engine as _;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{
    de_bool, de_opt_bool, de_opt_list, de_opt_string, de_opt_u64, de_present, de_string,
};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

fn default_login_host() -> String {
    "localhost".into()
}
fn default_config_file() -> String {
    "~/.my.cnf".into()
}
fn default_true() -> bool {
    true
}

/// The connection arguments every community.mysql module takes, plus the
/// module's own fields.
macro_rules! mysql_args {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(default, deserialize_with = "de_opt_string")]
            pub login_user: Option<String>,
            #[serde(default, deserialize_with = "de_opt_string")]
            pub login_password: Option<String>,
            #[serde(default = "default_login_host", deserialize_with = "de_string")]
            pub login_host: String,
            #[serde(default, deserialize_with = "de_opt_u64")]
            pub login_port: Option<u64>,
            #[serde(default, deserialize_with = "de_opt_string")]
            pub login_unix_socket: Option<String>,
            #[serde(default = "default_config_file", deserialize_with = "de_string")]
            pub config_file: String,
            #[serde(default, deserialize_with = "de_opt_u64")]
            pub connect_timeout: Option<u64>,
            #[serde(default, alias = "ssl_cert", deserialize_with = "de_opt_string")]
            pub client_cert: Option<String>,
            #[serde(default, alias = "ssl_key", deserialize_with = "de_opt_string")]
            pub client_key: Option<String>,
            #[serde(default, alias = "ssl_ca", deserialize_with = "de_opt_string")]
            pub ca_cert: Option<String>,
            #[serde(default, deserialize_with = "de_present")]
            pub check_hostname: Option<Json>,
            #[serde(default, deserialize_with = "de_bool")]
            pub check_implicit_admin: bool,
            #[serde(default = "default_true", deserialize_with = "de_bool")]
            pub sql_log_bin: bool,
            $($body)*
        }

        impl $name {
            fn login(&self) -> MyLogin<'_> {
                MyLogin {
                    user: self.login_user.as_deref(),
                    password: self.login_password.as_deref(),
                    host: &self.login_host,
                    port: self.login_port.unwrap_or(3306),
                    socket: self.login_unix_socket.as_deref().filter(|s| !s.is_empty()),
                    config_file: &self.config_file,
                    connect_timeout: self.connect_timeout.unwrap_or(30),
                    cert: self.client_cert.as_deref(),
                    key: self.client_key.as_deref(),
                    ca: self.ca_cert.as_deref(),
                    check_hostname: self.check_hostname.as_ref(),
                    implicit_admin: self.check_implicit_admin,
                    sql_log_bin: self.sql_log_bin,
                }
            }
        }
    };
}

/// How to reach the server.
pub struct MyLogin<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: u64,
    socket: Option<&'a str>,
    config_file: &'a str,
    connect_timeout: u64,
    cert: Option<&'a str>,
    key: Option<&'a str>,
    ca: Option<&'a str>,
    check_hostname: Option<&'a Json>,
    implicit_admin: bool,
    sql_log_bin: bool,
}

impl MyLogin<'_> {
    fn check(&self, module: &str) -> Result<(), String> {
        if self.check_hostname.is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "{module}: check_hostname is not supported yet by deployer"
            ));
        }
        if self.port > 65535 {
            return Err("login_port must be a valid unix port number (0-65535)".into());
        }
        if let Some(p) = self.password.filter(|p| !p.is_empty()) {
            crate::secrets::register(p);
        }
        Ok(())
    }

    /// The client's command line (no secret in it) after `cfg` is set.
    fn command(&self, user: Option<&str>) -> String {
        let mut c = String::from("mysql");
        // Only the config file, as PyMySQL's read_default_file; must be first.
        c.push_str(" $defaults");
        if let Some(u) = user {
            c.push_str(&format!(" --user={}", shell_quote(u)));
        }
        match self.socket {
            Some(s) => c.push_str(&format!(" --protocol=SOCKET --socket={}", shell_quote(s))),
            None => c.push_str(&format!(
                " --protocol=TCP --host={} --port={}",
                shell_quote(self.host),
                self.port
            )),
        }
        for (opt, v) in [
            ("--ssl-cert", self.cert),
            ("--ssl-key", self.key),
            ("--ssl-ca", self.ca),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                c.push_str(&format!(" {opt}={}", shell_quote(v)));
            }
        }
        c.push_str(&format!(
            " --connect-timeout={} --batch --skip-column-names --raw",
            self.connect_timeout
        ));
        c
    }
}

/// A SQL string literal as PyMySQL escapes one.
pub fn lit(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A backquoted identifier (`name`), as the collection quotes one.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// What the client answered.
pub enum MyOutcome {
    /// Output lines (after the connection marker).
    Lines(Vec<String>),
    /// The server refused a statement: PyMySQL's exception text,
    /// `(1115, "Unknown character set: 'x'")`.
    SqlError(String),
}

const CONNECTED: &str = "deployer-connected";

/// PyMySQL's `(errno, 'message')` from the client's `ERROR 1115 (42000) at line 2: message`.
pub fn pymysql_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ERROR "))
        .unwrap_or(stderr.trim());
    let Some(rest) = line.strip_prefix("ERROR ") else {
        return line.to_string();
    };
    let (code, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    // "(42000) at line 2: msg" or "(HY000): msg"
    let msg = rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest);
    format!("({code}, {})", py_str_repr(msg))
}

/// Python's repr of a str.
pub fn py_str_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// Runs `sql` with the host's `mysql` client as the task's become user.
/// `Err` when the client is missing or cannot connect (the collection's
/// message, naming the config file).
pub async fn mysql(
    ctx: &ModuleCtx<'_>,
    login: &MyLogin<'_>,
    database: Option<&str>,
    sql: &str,
) -> Result<MyOutcome, String> {
    mysql_with(ctx, login, database, sql, false).await
}

/// [`mysql`], with `named`: the result sets come with their column names
/// (a header line) and escaped values (`\t`, `\n`, `\\`; NULL is `NULL`),
/// the client's plain batch format.
pub async fn mysql_with(
    ctx: &ModuleCtx<'_>,
    login: &MyLogin<'_>,
    database: Option<&str>,
    sql: &str,
    named: bool,
) -> Result<MyOutcome, String> {
    let mut full = format!("SELECT '{CONNECTED}';\n");
    if !login.sql_log_bin {
        full.push_str("SET SQL_LOG_BIN=0;\n");
    }
    if let Some(d) = database {
        full.push_str(&format!("USE {};\n", ident(d)));
    }
    full.push_str(sql);
    let b64 = base64::engine::general_purpose::STANDARD.encode(full.as_bytes());
    let cfg = match login.config_file.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", shell_quote(rest)),
        None => shell_quote(login.config_file),
    };
    let run = |user: Option<&str>, password: Option<&str>| {
        let pw = match password {
            Some(p) => format!("MYSQL_PWD={}; export MYSQL_PWD\n", shell_quote(p)),
            None => "unset MYSQL_PWD\n".into(),
        };
        let mut cmd = login.command(user).replace('\n', " ");
        if named {
            cmd = cmd.replace(" --skip-column-names --raw", "");
        }
        format!("{pw}printf '%s' '{b64}' | base64 -d | {cmd}\n")
    };
    let mut script = format!(
        "command -v mysql >/dev/null 2>&1 || {{ echo 'mysql is not installed' >&2; exit 127; }}\n\
         cfg={cfg}\n\
         printf 'deployer-cfg-path %s\\n' \"$cfg\"\n\
         if [ -f \"$cfg\" ]; then defaults=\"--defaults-file=$cfg\"; echo 'deployer-cfg'; else defaults=--no-defaults; fi\n"
    );
    if login.implicit_admin {
        // As the collection: root without a password first, then the login.
        script.push_str(&format!(
            "if out=$({} 2>/dev/null); then printf '%s\\n' \"$out\"; exit 0; fi\n",
            run(Some("root"), Some("")).trim_end().replace('\n', "; ")
        ));
    }
    script.push_str(&run(login.user, login.password));
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let stdout = out.stdout_str();
    let cfg_exists = stdout.lines().any(|l| l == "deployer-cfg");
    // The path as the collection shows it (`~` expanded on the host).
    let cfg_path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("deployer-cfg-path "))
        .unwrap_or(login.config_file)
        .to_string();
    if out.rc == 127 {
        return Err("mysql is not installed on the host (deployer drives MySQL/MariaDB with its client, package mariadb-client or mysql-client)".into());
    }
    let mut lines = stdout
        .lines()
        .filter(|l| *l != "deployer-cfg" && !l.starts_with("deployer-cfg-path "));
    let connected = lines.next() == Some(CONNECTED);
    if !connected {
        let e = pymysql_error(&out.stderr_str());
        return Err(if cfg_exists {
            format!(
                "unable to connect to database, check login_user and login_password are correct or {cfg_path} has the credentials. Exception message: {e}"
            )
        } else {
            format!("unable to find {cfg_path}. Exception message: {e}")
        });
    }
    let mut lines: Vec<String> = lines.map(str::to_string).collect();
    // Named: the marker came as a header and a value.
    if named && lines.first().map(String::as_str) == Some(CONNECTED) {
        lines.remove(0);
    }
    if out.rc != 0 {
        return Ok(MyOutcome::SqlError(pymysql_error(&out.stderr_str())));
    }
    Ok(MyOutcome::Lines(lines))
}

// ---------------------------------------------------------------------------
// mysql_db
// ---------------------------------------------------------------------------

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DbState {
    Present,
    Absent,
    Dump,
    Import,
}

fn default_db_state() -> DbState {
    DbState::Present
}

mysql_args! {
    pub struct MyDbArgs {
        #[serde(alias = "db", deserialize_with = "de_opt_list")]
        pub name: Option<Vec<String>>,
        #[serde(default = "default_db_state")]
        pub state: DbState,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub encoding: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub collation: Option<String>,
        #[serde(default, deserialize_with = "de_present")]
        pub target: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub single_transaction: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub quick: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub ignore_tables: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub hex_blob: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub force: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub master_data: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub skip_lock_tables: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub dump_extra_args: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub use_shell: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub unsafe_login_password: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub restrict_config_file: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub config_overrides_defaults: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub chdir: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub pipefail: Option<Json>,
    }
}

pub struct MysqlDb;

const DUMP_IMPORT: &str = "mysql_db: state dump and import are not supported yet by deployer";

impl Module for MysqlDb {
    fn name(&self) -> &'static str {
        "mysql_db"
    }
    fn fqcn(&self) -> &'static str {
        "community.mysql.mysql_db"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<MyDbArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        super::args::check_choice(args, "state", &["present", "absent"])
            .map_err(|e| format!("{e} ({DUMP_IMPORT})"))
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Which of the databases exist.
pub struct DbObserved {
    existing: Vec<String>,
}

pub struct DbChanges {
    statements: Vec<String>,
    args: MyDbArgs,
}

impl PlanApply for MysqlDb {
    type Args = MyDbArgs;
    type Observed = DbObserved;
    type Changes = DbChanges;

    fn observe<'a>(
        &'a self,
        a: &'a MyDbArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<DbObserved, String>> {
        Box::pin(async move {
            if !matches!(a.state, DbState::Present | DbState::Absent)
                || a.target.is_some()
                || a.dump_extra_args.is_some()
                || a.ignore_tables.is_some()
            {
                return Err(DUMP_IMPORT.into());
            }
            let login = a.login();
            login.check("mysql_db")?;
            let names: Vec<String> = a
                .name
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|n| n.trim().to_string())
                .collect();
            if names.is_empty() {
                return Ok(DbObserved { existing: vec![] });
            }
            if names == ["all"] {
                return Err(
                    "name is not allowed to equal 'all' unless state equals import, or dump."
                        .into(),
                );
            }
            let list = names.iter().map(|n| lit(n)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({list});\n"
            );
            match mysql(ctx, &login, None, &sql).await? {
                MyOutcome::Lines(l) => Ok(DbObserved { existing: l }),
                MyOutcome::SqlError(e) => Err(e),
            }
        })
    }

    fn plan(
        &self,
        a: MyDbArgs,
        o: DbObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<DbChanges>, String> {
        let names: Vec<String> = a
            .name
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|n| n.trim().to_string())
            .collect();
        let mut r = ModuleResult::ok();
        r.data.insert("db".into(), json!(names.join(" ")));
        r.data.insert("db_list".into(), json!(names));
        if !ctx.check {
            r.data.insert("executed_commands".into(), json!([]));
        }
        let exists = |n: &String| o.existing.contains(n);
        let mut statements = Vec::new();
        match a.state {
            DbState::Absent => {
                for n in names.iter().filter(|n| exists(n)) {
                    statements.push(format!("DROP DATABASE {}", ident(n)));
                }
            }
            _ => {
                for n in names.iter().filter(|n| !exists(n)) {
                    let mut q = vec![format!("CREATE DATABASE {}", ident(n))];
                    if let Some(e) = a.encoding.as_deref().filter(|e| !e.is_empty()) {
                        q.push(format!("CHARACTER SET {}", lit(e)));
                    }
                    if let Some(c) = a.collation.as_deref().filter(|c| !c.is_empty()) {
                        q.push(format!("COLLATE {}", lit(c)));
                    }
                    statements.push(q.join(" "));
                }
            }
        }
        if statements.is_empty() {
            return Ok(Plan::unchanged(r));
        }
        r.changed = true;
        Ok(Plan {
            result: r,
            changes: Some(DbChanges {
                statements,
                args: a,
            }),
        })
    }

    fn apply<'a>(
        &'a self,
        changes: DbChanges,
        mut planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a = &changes.args;
            let login = a.login();
            let mut done = Vec::new();
            for s in &changes.statements {
                match mysql(ctx, &login, None, &format!("{s};\n")).await? {
                    MyOutcome::Lines(_) => done.push(json!(s)),
                    MyOutcome::SqlError(e) => {
                        let what = if a.state == DbState::Absent {
                            "error deleting database"
                        } else {
                            "error creating database"
                        };
                        return Ok(ModuleResult::failed(format!("{what}: {e}")));
                    }
                }
            }
            planned
                .data
                .insert("executed_commands".into(), Json::Array(done));
            Ok(planned)
        })
    }
}

// ---------------------------------------------------------------------------
// mysql_user
// ---------------------------------------------------------------------------

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    Present,
    Absent,
}

fn default_user_state() -> UserState {
    UserState::Present
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePassword {
    Always,
    OnCreate,
    OnNewUsername,
}

fn default_update_password() -> UpdatePassword {
    UpdatePassword::Always
}

mysql_args! {
    pub struct MyUserArgs {
        #[serde(alias = "user", deserialize_with = "de_string")]
        pub name: String,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub password: Option<String>,
        #[serde(default, deserialize_with = "de_bool")]
        pub encrypted: bool,
        #[serde(default = "default_login_host", deserialize_with = "de_string")]
        pub host: String,
        #[serde(default, deserialize_with = "de_bool")]
        pub host_all: bool,
        #[serde(default = "default_user_state")]
        pub state: UserState,
        #[serde(default, rename = "priv", deserialize_with = "de_present")]
        pub priv_: Option<Json>,
        #[serde(default, deserialize_with = "de_bool")]
        pub append_privs: bool,
        #[serde(default, deserialize_with = "de_bool")]
        pub subtract_privs: bool,
        #[serde(default = "default_update_password")]
        pub update_password: UpdatePassword,
        #[serde(default, deserialize_with = "de_opt_bool")]
        pub column_case_sensitive: Option<bool>,
        #[serde(default, deserialize_with = "de_bool")]
        pub force_context: bool,
        #[serde(default, deserialize_with = "de_present")]
        pub tls_requires: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub attributes: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub plugin: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub plugin_hash_string: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub plugin_auth_string: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub salt: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub resource_limits: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub session_vars: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub password_expire: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub password_expire_interval: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub locked: Option<Json>,
    }
}

pub struct MysqlUser;

impl Module for MysqlUser {
    fn name(&self) -> &'static str {
        "mysql_user"
    }
    fn fqcn(&self) -> &'static str {
        "community.mysql.mysql_user"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<MyUserArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        for k in NOT_YET_USER {
            // A template may still render to nothing (`default({})`): decided at run time.
            let templated = args
                .get(*k)
                .and_then(Json::as_str)
                .is_some_and(|s| s.contains("{{") || s.contains("{%"));
            if args.get(*k).is_some_and(given) && !templated {
                return Err(format!("mysql_user: {k} is not supported yet by deployer"));
            }
        }
        super::args::check_not_yet(args, "host_all")?;
        super::args::check_not_yet(args, "subtract_privs")?;
        super::args::check_choice(args, "state", &["present", "absent"])?;
        super::args::check_choice(args, "update_password", &["always", "on_create"])
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// Whether an argument deployer does not implement is given a value (the
/// public roles pass `tls_requires: "{{ x | default({}) }}"`: empty is absent,
/// as the collection reads it).
fn given(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::String(s) => !s.is_empty(),
        Json::Object(m) => !m.is_empty(),
        Json::Array(a) => !a.is_empty(),
        _ => true,
    }
}

const NOT_YET_USER: &[&str] = &[
    "tls_requires",
    "attributes",
    "plugin",
    "plugin_hash_string",
    "plugin_auth_string",
    "salt",
    "resource_limits",
    "session_vars",
    "password_expire",
    "password_expire_interval",
    "locked",
];

/// Privileges per object (`*.*`, `` `db`.* ``), as the collection's
/// `privileges_unpack`/`privileges_get` make them.
pub type Privs = IndexMap<String, Vec<String>>;

/// `priv` (`db.*:SELECT,INSERT/other.*:ALL` or a mapping) as the collection's
/// `privileges_unpack`.
pub fn privileges_unpack(priv_: &str, ansi: bool, case_sensitive: bool) -> Result<Privs, String> {
    let quote = if ansi { '"' } else { '`' };
    let mut out = Privs::new();
    for item in priv_.trim().split('/') {
        let Some((obj, privs)) = item.trim().rsplit_once(':') else {
            return Err(format!(
                "invalid privileges string: '{item}' (expected db.table:PRIV[,PRIV...], several joined by /)"
            ));
        };
        let mut dbpriv: Vec<String> = match obj.rsplit_once('.') {
            Some((a, b)) => vec![a.to_string(), b.to_string()],
            None => vec![obj.to_string()],
        };
        let mut object_type = String::new();
        if let Some((kind, rest)) = dbpriv[0].clone().split_once(' ')
            && (kind == "FUNCTION" || kind == "PROCEDURE")
        {
            object_type = format!("{kind} ");
            dbpriv[0] = rest.to_string();
        }
        for side in dbpriv.iter_mut() {
            let bare = side.trim_matches('`');
            if bare != "*" {
                *side = format!("{quote}{bare}{quote}");
            }
        }
        let key = format!("{object_type}{}", dbpriv.join("."));
        let list: Vec<String> = if privs.contains('(') {
            let text = if case_sensitive {
                privs.to_string()
            } else {
                privs.to_uppercase()
            };
            split_outside_parens(&text)
        } else {
            privs
                .to_uppercase()
                .split(',')
                .map(str::to_string)
                .collect()
        };
        out.insert(key, normalize_col_grants(list));
    }
    if !out.contains_key("*.*") {
        out.insert("*.*".into(), vec!["USAGE".into()]);
    }
    Ok(out)
}

/// `re.split(r',\s*(?=[^)]*(?:\(|$))', s)`: commas not inside parentheses.
fn split_outside_parens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth <= 0 => {
                out.push(std::mem::take(&mut cur));
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The collection's `normalize_col_grants`: `SELECT (b, a)` with its columns
/// sorted, split pieces joined again.
fn normalize_col_grants(mut privileges: Vec<String>) -> Vec<String> {
    for grant in ["SELECT", "UPDATE", "INSERT", "REFERENCES"] {
        let mut start = None;
        let mut end = None;
        for (n, p) in privileges.iter().enumerate() {
            if p.contains(&format!("{grant} (")) {
                start = Some(n);
            }
            if start.is_some() && p.contains(')') {
                end = Some(n);
                break;
            }
        }
        if let (Some(s), Some(e)) = (start, end) {
            let joined = privileges[s..=e].join(", ");
            let sorted = sort_column_order(&joined);
            privileges.splice(s..=e, [sorted]);
        }
    }
    privileges
}

fn sort_column_order(statement: &str) -> String {
    let (name, rest) = statement.split_once('(').unwrap_or((statement, ""));
    let cols = rest.trim_end_matches(')');
    let mut cols: Vec<String> = cols
        .split(',')
        .map(|c| c.trim().trim_matches('`').to_string())
        .collect();
    cols.sort();
    format!("{name}({})", cols.join(", "))
}

/// `SHOW GRANTS` lines as the collection's `privileges_get`.
pub fn privileges_get(lines: &[String]) -> Result<Privs, String> {
    let mut out = Privs::new();
    for g in lines {
        let parsed = g.strip_prefix("GRANT ").and_then(|rest| {
            let (privs, rest) = rest.split_once(" ON ")?;
            let (obj, tail) = rest.split_once(" TO ")?;
            let quoted = tail.starts_with(['\'', '`', '"']);
            quoted.then_some((privs, obj, tail))
        });
        let Some((privs, obj, tail)) = parsed else {
            if g.starts_with("GRANT ") || g.starts_with("SET DEFAULT ROLE ") {
                continue;
            }
            return Err(format!("unable to parse the MySQL grant string: {g}"));
        };
        let mut list: Vec<String> = privs
            .split(',')
            .map(|p| {
                let p = p.trim();
                if p == "ALL PRIVILEGES" {
                    "ALL".to_string()
                } else {
                    p.to_string()
                }
            })
            .collect();
        list = normalize_col_grants(list);
        if tail.contains("WITH GRANT OPTION") {
            list.push("GRANT".into());
        }
        out.entry(obj.to_string()).or_default().extend(list);
    }
    Ok(out)
}

/// `*` + upper-case hex of SHA1(SHA1(password)): `mysql_native_password`.
pub fn native_hash(password: &str) -> String {
    use sha1::{Digest, Sha1};
    let inner = Sha1::digest(password.as_bytes());
    let outer = Sha1::digest(inner);
    format!("*{}", hex::encode_upper(outer))
}

fn is_hash(p: &str) -> bool {
    p.len() == 41 && p.starts_with('*') && p[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// What the server says of the account.
pub struct UserObserved {
    exists: bool,
    /// COALESCE(Password, authentication_string), as the collection reads it.
    hash: Option<String>,
    ansi: bool,
    /// Current privileges (`SHOW GRANTS`), when the account exists.
    privs: Option<Privs>,
}

pub struct UserChanges {
    statements: Vec<String>,
    /// Privileges before (to decide `changed` as the collection: before != after).
    before: Option<Privs>,
    /// `changed` regardless of the privileges compare (account made,
    /// password set, grants on new objects, revokes).
    forced: bool,
    args: MyUserArgs,
}

fn account(a: &MyUserArgs) -> String {
    format!("{}@{}", lit(&a.name), lit(&a.host.to_lowercase()))
}

fn priv_string(a: &MyUserArgs) -> Result<Option<String>, String> {
    match &a.priv_ {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Object(m)) if m.is_empty() => Ok(None),
        Some(Json::Object(m)) => Ok(Some(
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    format!("{k}:{v}")
                })
                .collect::<Vec<_>>()
                .join("/"),
        )),
        Some(other) => Err(format!(
            "priv parameter must be str or dict but {} was passed",
            match other {
                Json::Array(_) => "<class 'list'>",
                Json::Bool(_) => "<class 'bool'>",
                _ => "<class 'int'>",
            }
        )),
    }
}

fn grant_sql(acct: &str, obj: &str, privs: &[String]) -> String {
    let list: Vec<&str> = privs
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "GRANT")
        .collect();
    let mut q = format!("GRANT {} ON {obj} TO {acct}", list.join(","));
    if privs.iter().any(|p| p == "GRANT") {
        q.push_str(" WITH GRANT OPTION");
    }
    q
}

fn revoke_sql(acct: &str, obj: &str, privs: &[String], grant_option: bool) -> Vec<String> {
    let mut out = Vec::new();
    if grant_option {
        out.push(format!("REVOKE GRANT OPTION ON {obj} FROM {acct}"));
    }
    let list: Vec<&str> = privs
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "GRANT")
        .collect();
    let s = list.join(",");
    if !(s.is_empty() || grant_option && s == "USAGE") {
        out.push(format!("REVOKE {s} ON {obj} FROM {acct}"));
    }
    out.push("FLUSH PRIVILEGES".into());
    out
}

impl PlanApply for MysqlUser {
    type Args = MyUserArgs;
    type Observed = UserObserved;
    type Changes = UserChanges;

    fn observe<'a>(
        &'a self,
        a: &'a MyUserArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<UserObserved, String>> {
        Box::pin(async move {
            for (k, v) in [
                ("tls_requires", &a.tls_requires),
                ("attributes", &a.attributes),
                ("plugin", &a.plugin),
                ("plugin_hash_string", &a.plugin_hash_string),
                ("plugin_auth_string", &a.plugin_auth_string),
                ("salt", &a.salt),
                ("resource_limits", &a.resource_limits),
                ("session_vars", &a.session_vars),
                ("password_expire", &a.password_expire),
                ("password_expire_interval", &a.password_expire_interval),
                ("locked", &a.locked),
            ] {
                if v.as_ref().is_some_and(given) {
                    return Err(format!("mysql_user: {k} is not supported yet by deployer"));
                }
            }
            if a.host_all || a.subtract_privs {
                return Err(
                    "mysql_user: host_all and subtract_privs are not supported yet by deployer"
                        .into(),
                );
            }
            if a.update_password == UpdatePassword::OnNewUsername {
                return Err(
                    "mysql_user: update_password: on_new_username is not supported yet by deployer"
                        .into(),
                );
            }
            if let Some(p) = a.password.as_deref().filter(|p| !p.is_empty()) {
                crate::secrets::register(p);
            }
            let login = a.login();
            login.check("mysql_user")?;
            let acct_where = format!(
                "user = {} AND host = {}",
                lit(&a.name),
                lit(&a.host.to_lowercase())
            );
            let sql = format!(
                "SELECT IF(@@sql_mode LIKE '%ANSI%', 'ANSI', 'NOTANSI');\n\
                 SELECT CONCAT('U', COALESCE(NULLIF(Password, ''), NULLIF(authentication_string, ''), '')) FROM mysql.user WHERE {acct_where};\n"
            );
            let db = a.force_context.then_some("mysql");
            let lines = match mysql(ctx, &login, db, &sql).await? {
                MyOutcome::Lines(l) => l,
                MyOutcome::SqlError(e) => return Err(e),
            };
            let ansi = lines.first().map(String::as_str) == Some("ANSI");
            let user_line = lines.iter().find_map(|l| l.strip_prefix('U'));
            let exists = user_line.is_some();
            let hash = user_line.filter(|h| !h.is_empty()).map(str::to_string);
            let privs = if exists {
                let sql = format!("SHOW GRANTS FOR {};\n", account(a));
                match mysql(ctx, &login, db, &sql).await? {
                    MyOutcome::Lines(l) => Some(privileges_get(&l)?),
                    MyOutcome::SqlError(e) => return Err(e),
                }
            } else {
                None
            };
            Ok(UserObserved {
                exists,
                hash,
                ansi,
                privs,
            })
        })
    }

    fn plan(
        &self,
        a: MyUserArgs,
        o: UserObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<UserChanges>, String> {
        let mut r = ModuleResult::ok();
        r.data.insert("user".into(), json!(a.name));
        let acct = account(&a);
        let new_priv = match priv_string(&a) {
            Ok(Some(p)) => {
                match privileges_unpack(&p, o.ansi, a.column_case_sensitive.unwrap_or(false)) {
                    Ok(p) => Some(p),
                    Err(e) => return Ok(Plan::unchanged(ModuleResult::failed(e))),
                }
            }
            Ok(None) => None,
            Err(e) => return Ok(Plan::unchanged(ModuleResult::failed(e))),
        };
        let mut statements = Vec::new();
        let mut changed = false;
        let mut msg;
        let mut password_changed = json!(false);
        let mut attributes = Json::Null;
        let mut before = None;
        match (a.state, o.exists) {
            (UserState::Absent, true) => {
                changed = true;
                msg = "User deleted".to_string();
                statements.push(format!("DROP USER IF EXISTS {acct}"));
            }
            (UserState::Absent, false) => {
                msg = "User doesn't exist".to_string();
            }
            (UserState::Present, false) => {
                changed = true;
                msg = "User added".to_string();
                password_changed = if ctx.check { Json::Null } else { json!(true) };
                let q = match a.password.as_deref().filter(|p| !p.is_empty()) {
                    Some(p) if a.encrypted => {
                        format!("CREATE USER {acct} IDENTIFIED BY PASSWORD {}", lit(p))
                    }
                    Some(p) => format!(
                        "CREATE USER {acct} IDENTIFIED WITH mysql_native_password AS {}",
                        lit(&native_hash(p))
                    ),
                    None => format!("CREATE USER {acct}"),
                };
                statements.push(q);
                for (obj, privs) in new_priv.iter().flatten() {
                    statements.push(grant_sql(&acct, obj, privs));
                }
            }
            (UserState::Present, true) => {
                msg = "User unchanged".to_string();
                attributes = json!({});
                let password = match a.update_password {
                    UpdatePassword::Always => a.password.as_deref().filter(|p| !p.is_empty()),
                    _ => None,
                };
                if let Some(p) = password {
                    let hash = if a.encrypted {
                        if !is_hash(p) {
                            return Ok(Plan::unchanged(ModuleResult::failed(
                                "encrypted was specified however it does not appear to be a valid hash expecting: *SHA1(SHA1(your_password))",
                            )));
                        }
                        p.to_string()
                    } else {
                        native_hash(p)
                    };
                    if o.hash.as_deref() != Some(hash.as_str()) {
                        password_changed = json!(true);
                        msg = if ctx.check {
                            "Password updated".into()
                        } else {
                            "Password updated (new style)".into()
                        };
                        statements.push(format!(
                            "ALTER USER {acct} IDENTIFIED WITH mysql_native_password AS {}",
                            lit(&hash)
                        ));
                        changed = true;
                    }
                }
                if let Some(new_priv) = &new_priv {
                    let curr = o.privs.clone().unwrap_or_default();
                    let mut grant_option = false;
                    let mut priv_statements = Vec::new();
                    if !a.append_privs {
                        for (obj, privs) in &curr {
                            if privs.iter().any(|p| p == "GRANT") {
                                grant_option = true;
                            }
                            if !new_priv.contains_key(obj)
                                && a.name != "root"
                                && !privs.iter().any(|p| p == "PROXY")
                            {
                                msg = "Privileges updated".into();
                                priv_statements.extend(revoke_sql(&acct, obj, privs, grant_option));
                                changed = true;
                            }
                        }
                    }
                    for (obj, privs) in new_priv {
                        if !curr.contains_key(obj) {
                            msg = "New privileges granted".into();
                            priv_statements.push(grant_sql(&acct, obj, privs));
                            changed = true;
                        }
                    }
                    for (obj, want) in new_priv {
                        let Some(have) = curr.get(obj) else { continue };
                        let minus = |x: &Vec<String>, y: &Vec<String>| -> Vec<String> {
                            let mut v: Vec<String> = Vec::new();
                            for p in x {
                                if !y.contains(p) && !v.contains(p) {
                                    v.push(p.clone());
                                }
                            }
                            v
                        };
                        let mut grant_privs = minus(want, have);
                        let mut revoke_privs = Vec::new();
                        let mut grant_opt = grant_option;
                        if !a.append_privs {
                            revoke_privs = minus(have, want);
                            if grant_privs
                                .iter()
                                .any(|p| p == "ALL" || p == "ALL PRIVILEGES")
                            {
                                revoke_privs.retain(|p| p == "GRANT" || p == "PROXY");
                            }
                            grant_opt = revoke_privs.iter().any(|p| p == "GRANT")
                                && !grant_privs.iter().any(|p| p == "GRANT");
                            grant_option = grant_opt;
                        }
                        if grant_privs == ["GRANT"] {
                            grant_privs.push("USAGE".into());
                        }
                        if !grant_privs.is_empty() || !revoke_privs.is_empty() {
                            msg = format!(
                                "Privileges updated: granted {}, revoked {}",
                                py_list(&grant_privs),
                                py_list(&revoke_privs)
                            );
                            if !revoke_privs.is_empty() {
                                priv_statements.extend(revoke_sql(
                                    &acct,
                                    obj,
                                    &revoke_privs,
                                    grant_opt,
                                ));
                            }
                            if !grant_privs.is_empty() {
                                priv_statements.push(grant_sql(&acct, obj, &grant_privs));
                            }
                            if ctx.check {
                                changed = true;
                            }
                        }
                    }
                    if !priv_statements.is_empty() {
                        before = Some(curr);
                        statements.extend(priv_statements);
                    }
                }
            }
        }
        r.msg = Some(msg.clone());
        r.data.insert("msg".into(), json!(msg));
        r.data.insert("password_changed".into(), password_changed);
        r.data.insert("attributes".into(), attributes);
        r.changed = changed;
        if statements.is_empty() {
            return Ok(Plan::unchanged(r));
        }
        Ok(Plan {
            result: r,
            changes: Some(UserChanges {
                statements,
                before,
                forced: changed,
                args: a,
            }),
        })
    }

    fn apply<'a>(
        &'a self,
        changes: UserChanges,
        mut planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let a = &changes.args;
            let login = a.login();
            let db = a.force_context.then_some("mysql");
            // One statement at a time: a GRANT the server refuses names
            // itself, and an account made by this task is dropped again so a
            // refused privilege leaves the host as it was.
            let created = changes
                .statements
                .first()
                .is_some_and(|s| s.starts_with("CREATE USER "));
            for s in &changes.statements {
                if let MyOutcome::SqlError(e) = mysql(ctx, &login, db, &format!("{s};\n")).await? {
                    let msg = match s.strip_prefix("GRANT ") {
                        Some(rest) => {
                            let (privs, rest) = rest.split_once(" ON ").unwrap_or((rest, ""));
                            let obj = rest.split_once(" TO ").map_or(rest, |(o, _)| o);
                            let tail = if s.ends_with(" WITH GRANT OPTION") {
                                " WITH GRANT OPTION"
                            } else {
                                ""
                            };
                            format!(
                                "Error granting privileges, invalid priv string: {privs} , params: ({}, {}), query: GRANT {privs} ON {obj} TO %s@%s{tail} , exception: {e}.",
                                py_str_repr(&a.name),
                                py_str_repr(&a.host.to_lowercase())
                            )
                        }
                        None => e,
                    };
                    if created {
                        let _ = mysql(
                            ctx,
                            &login,
                            db,
                            &format!("DROP USER IF EXISTS {};\n", account(a)),
                        )
                        .await;
                    }
                    return Ok(ModuleResult::failed(msg));
                }
            }
            if let Some(before) = &changes.before {
                let sql = format!("SHOW GRANTS FOR {};\n", account(a));
                match mysql(ctx, &login, db, &sql).await? {
                    MyOutcome::Lines(lines) => {
                        let after = privileges_get(&lines)?;
                        planned.changed = changes.forced || *before != after;
                    }
                    MyOutcome::SqlError(e) => return Ok(ModuleResult::failed(e)),
                }
            }
            Ok(planned)
        })
    }
}

/// Python's repr of a list of str.
fn py_list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| py_str_repr(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

// ---------------------------------------------------------------------------
// mysql_replication
// ---------------------------------------------------------------------------

fn default_repl_mode() -> String {
    "getreplica".into()
}

mysql_args! {
    pub struct MyReplArgs {
        #[serde(default = "default_repl_mode", deserialize_with = "de_string")]
        pub mode: String,
        #[serde(default, alias = "master_host", deserialize_with = "de_opt_string")]
        pub primary_host: Option<String>,
        #[serde(default, alias = "master_user", deserialize_with = "de_opt_string")]
        pub primary_user: Option<String>,
        #[serde(default, alias = "master_password", deserialize_with = "de_opt_string")]
        pub primary_password: Option<String>,
        #[serde(default, alias = "master_port", deserialize_with = "de_opt_u64")]
        pub primary_port: Option<u64>,
        #[serde(default, alias = "master_connect_retry", deserialize_with = "de_opt_u64")]
        pub primary_connect_retry: Option<u64>,
        #[serde(default, alias = "master_log_file", deserialize_with = "de_opt_string")]
        pub primary_log_file: Option<String>,
        #[serde(default, alias = "master_log_pos", deserialize_with = "de_opt_u64")]
        pub primary_log_pos: Option<u64>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub relay_log_file: Option<String>,
        #[serde(default, deserialize_with = "de_opt_u64")]
        pub relay_log_pos: Option<u64>,
        #[serde(default, alias = "master_ssl", deserialize_with = "de_opt_bool")]
        pub primary_ssl: Option<bool>,
        #[serde(default, alias = "master_ssl_ca", deserialize_with = "de_opt_string")]
        pub primary_ssl_ca: Option<String>,
        #[serde(default, alias = "master_ssl_capath", deserialize_with = "de_opt_string")]
        pub primary_ssl_capath: Option<String>,
        #[serde(default, alias = "master_ssl_cert", deserialize_with = "de_opt_string")]
        pub primary_ssl_cert: Option<String>,
        #[serde(default, alias = "master_ssl_key", deserialize_with = "de_opt_string")]
        pub primary_ssl_key: Option<String>,
        #[serde(default, alias = "master_ssl_cipher", deserialize_with = "de_opt_string")]
        pub primary_ssl_cipher: Option<String>,
        #[serde(default, deserialize_with = "de_opt_bool")]
        pub primary_ssl_verify_server_cert: Option<bool>,
        #[serde(default, alias = "master_auto_position", deserialize_with = "de_bool")]
        pub primary_auto_position: bool,
        #[serde(default, alias = "master_use_gtid", deserialize_with = "de_opt_string")]
        pub primary_use_gtid: Option<String>,
        #[serde(default, alias = "master_delay", deserialize_with = "de_opt_u64")]
        pub primary_delay: Option<u64>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub connection_name: Option<String>,
        #[serde(default, deserialize_with = "de_present")]
        pub channel: Option<Json>,
        #[serde(default, deserialize_with = "de_bool")]
        pub fail_on_error: bool,
    }
}

const REPL_MODES: &[&str] = &[
    "getprimary",
    "getreplica",
    "changeprimary",
    "stopreplica",
    "startreplica",
    "resetprimary",
    "resetreplica",
    "resetreplicaall",
    "changereplication",
];

const NOT_YET_REPL: &str = "mysql_replication: changereplication, channel and primary_auto_position \
                            (MySQL only) are not supported yet by deployer, which drives MariaDB";

/// `mysql_replication`: a MariaDB server's primary/replica status and
/// replication settings, as the collection's module (no check mode: the
/// task is skipped, as Ansible skips it).
pub struct MysqlReplication;

impl Module for MysqlReplication {
    fn name(&self) -> &'static str {
        "mysql_replication"
    }
    fn fqcn(&self) -> &'static str {
        "community.mysql.mysql_replication"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<MyReplArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        for k in ["sql_log_bin", "check_implicit_admin"] {
            if args.contains_key(k) {
                return Err(format!("mysql_replication: unsupported parameter {k}"));
            }
        }
        if let Some(Json::String(m)) = args.get("mode")
            && !m.contains("{{")
        {
            if !REPL_MODES.contains(&m.as_str()) {
                return Err(format!(
                    "mode must be one of {}, got '{m}'",
                    REPL_MODES.join(", ")
                ));
            }
            if m == "changereplication" {
                return Err(NOT_YET_REPL.into());
            }
        }
        if args.get("channel").is_some_and(given) {
            return Err(NOT_YET_REPL.into());
        }
        super::args::check_not_yet(args, "primary_auto_position")?;
        super::args::check_not_yet(args, "master_auto_position")?;
        super::args::check_choice(
            args,
            "primary_use_gtid",
            &["current_pos", "replica_pos", "disabled"],
        )?;
        super::args::check_choice(
            args,
            "master_use_gtid",
            &["current_pos", "replica_pos", "disabled"],
        )
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        Box::pin(replication(args, ctx))
    }
}

/// Columns of SHOW REPLICA STATUS / SHOW BINLOG STATUS that PyMySQL returns
/// as integers (the others are strings; NULL is None).
const INT_COLUMNS: &[&str] = &[
    "Position",
    "Master_Port",
    "Connect_Retry",
    "Read_Master_Log_Pos",
    "Relay_Log_Pos",
    "Last_Errno",
    "Skip_Counter",
    "Exec_Master_Log_Pos",
    "Relay_Log_Space",
    "Until_Log_Pos",
    "Seconds_Behind_Master",
    "Last_IO_Errno",
    "Last_SQL_Errno",
    "Master_Server_Id",
    "SQL_Delay",
    "SQL_Remaining_Delay",
    "Slave_DDL_Groups",
    "Slave_Non_Transactional_Groups",
    "Slave_Transactional_Groups",
];

/// The client's batch escaping undone.
fn batch_unescape(v: &str) -> String {
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// The first row of a named batch result as PyMySQL's DictCursor row.
pub fn first_row(lines: &[String]) -> Option<Map<String, Json>> {
    let header = lines.first()?;
    let row = lines.get(1)?;
    let mut m = Map::new();
    for (k, v) in header.split('\t').zip(row.split('\t')) {
        let k = batch_unescape(k);
        let val = if v == "NULL" {
            Json::Null
        } else if INT_COLUMNS.contains(&k.as_str())
            && let Ok(n) = v.parse::<i64>()
        {
            json!(n)
        } else {
            json!(batch_unescape(v))
        };
        m.insert(k, val);
    }
    Some(m)
}

/// Whether a version string is at least `want` (dotted numbers).
fn version_at_least(v: &str, want: &[u64]) -> bool {
    let have: Vec<u64> = v
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    have.as_slice() >= want
}

async fn replication(args: Json, ctx: &mut ModuleCtx<'_>) -> Result<ModuleResult, String> {
    let a: MyReplArgs = super::parse_args("mysql_replication", args)?;
    if let Some(p) = a.primary_password.as_deref().filter(|p| !p.is_empty()) {
        crate::secrets::register(p);
    }
    let login = a.login();
    login.check("mysql_replication")?;
    let mode = a.mode.clone();
    if !REPL_MODES.contains(&mode.as_str()) {
        return Err(format!(
            "value of mode must be one of: {}, got: {}",
            REPL_MODES.join(", "),
            a.mode
        ));
    }
    if mode == "changereplication"
        || a.primary_auto_position
        || a.channel.as_ref().is_some_and(given)
    {
        return Err(NOT_YET_REPL.into());
    }
    if let Some(g) = a.primary_use_gtid.as_deref()
        && !["current_pos", "replica_pos", "disabled"].contains(&g)
    {
        return Err(format!(
            "value of primary_use_gtid must be one of: current_pos, replica_pos, disabled, got: {g}"
        ));
    }
    if ctx.check {
        // The collection does not support check mode: Ansible skips the task.
        let mut r = ModuleResult::ok();
        r.skipped = true;
        r.msg = Some(
            "remote module (community.mysql.mysql_replication) does not support check mode".into(),
        );
        return Ok(r);
    }
    let version = match mysql(ctx, &login, None, "SELECT VERSION();\n").await? {
        MyOutcome::Lines(l) => l.first().cloned().unwrap_or_default(),
        MyOutcome::SqlError(e) => return Err(format!("mysql_replication: SELECT VERSION(): {e}")),
    };
    if !version.to_lowercase().contains("mariadb") {
        return Err(format!(
            "mysql_replication on MySQL ({version}) is not supported yet by deployer (MariaDB is)"
        ));
    }
    let term = if version_at_least(&version, &[10, 5, 1]) {
        "REPLICA"
    } else {
        "SLAVE"
    };
    let conn = a.connection_name.as_deref().filter(|c| !c.is_empty());
    let mut r = ModuleResult::ok();
    let mut queries: Vec<String> = Vec::new();
    // The password as Ansible's no_log shows it in the results.
    let mask = |q: &str| match a.primary_password.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => q.replace(p, "********"),
        None => q.to_string(),
    };
    match mode.as_str() {
        "getprimary" | "getreplica" => {
            let q = if mode == "getprimary" {
                if version_at_least(&version, &[10, 5, 2]) {
                    "SHOW BINLOG STATUS".to_string()
                } else {
                    "SHOW MASTER STATUS".to_string()
                }
            } else {
                match conn {
                    Some(c) => format!("SHOW {term} {} STATUS", lit(c)),
                    None => format!("SHOW {term} STATUS"),
                }
            };
            let row = match mysql_with(ctx, &login, None, &format!("{q};\n"), true).await? {
                MyOutcome::Lines(l) => first_row(&l),
                MyOutcome::SqlError(e) => return Err(format!("{q}: {e}")),
            };
            let (flag, ok) = if mode == "getprimary" {
                let ok = row
                    .as_ref()
                    .is_some_and(|m| m.contains_key("File") && m.contains_key("Position"));
                ("Is_Primary", ok)
            } else {
                let ok = row.as_ref().is_some_and(|m| {
                    m.contains_key("Slave_IO_Running") || m.contains_key("Replica_IO_Running")
                });
                ("Is_Replica", ok)
            };
            match row.filter(|_| ok) {
                Some(m) => {
                    r.data = m;
                    r.data.insert(flag.into(), json!(true));
                }
                None => {
                    r.data.insert(flag.into(), json!(false));
                    r.msg = Some(if mode == "getprimary" {
                        "Server is not configured as mysql primary. Meaning: Binary logs are disabled"
                            .into()
                    } else {
                        "Server is not configured as mysql replica".into()
                    });
                }
            }
        }
        "changeprimary" => {
            let mut chm: Vec<String> = Vec::new();
            let s = |k: &str, v: &Option<String>, chm: &mut Vec<String>| {
                if let Some(v) = v {
                    chm.push(format!("{k}={}", lit(v)));
                }
            };
            let n = |k: &str, v: Option<u64>, chm: &mut Vec<String>| {
                if let Some(v) = v {
                    chm.push(format!("{k}={v}"));
                }
            };
            let b = |k: &str, v: Option<bool>, chm: &mut Vec<String>| {
                if let Some(v) = v {
                    chm.push(format!("{k}={}", u8::from(v)));
                }
            };
            s("MASTER_HOST", &a.primary_host, &mut chm);
            s("MASTER_USER", &a.primary_user, &mut chm);
            s("MASTER_PASSWORD", &a.primary_password, &mut chm);
            n("MASTER_PORT", a.primary_port, &mut chm);
            n("MASTER_CONNECT_RETRY", a.primary_connect_retry, &mut chm);
            s("MASTER_LOG_FILE", &a.primary_log_file, &mut chm);
            n("MASTER_LOG_POS", a.primary_log_pos, &mut chm);
            n("MASTER_DELAY", a.primary_delay, &mut chm);
            s("RELAY_LOG_FILE", &a.relay_log_file, &mut chm);
            n("RELAY_LOG_POS", a.relay_log_pos, &mut chm);
            b("MASTER_SSL", a.primary_ssl, &mut chm);
            s("MASTER_SSL_CA", &a.primary_ssl_ca, &mut chm);
            s("MASTER_SSL_CAPATH", &a.primary_ssl_capath, &mut chm);
            s("MASTER_SSL_CERT", &a.primary_ssl_cert, &mut chm);
            s("MASTER_SSL_KEY", &a.primary_ssl_key, &mut chm);
            s("MASTER_SSL_CIPHER", &a.primary_ssl_cipher, &mut chm);
            b(
                "MASTER_SSL_VERIFY_SERVER_CERT",
                a.primary_ssl_verify_server_cert,
                &mut chm,
            );
            if let Some(g) = a.primary_use_gtid.as_deref() {
                let g = match g {
                    "disabled" => "no",
                    "replica_pos" if term == "SLAVE" => "slave_pos",
                    g => g,
                };
                chm.push(format!("MASTER_USE_GTID={g}"));
            }
            let q = match conn {
                Some(c) => format!("CHANGE MASTER {} TO {}", lit(c), chm.join(",")),
                None => format!("CHANGE MASTER TO {}", chm.join(",")),
            };
            queries.push(mask(&q));
            if let MyOutcome::SqlError(e) = mysql(ctx, &login, None, &format!("{q};\n")).await? {
                let shown: Vec<String> = chm.iter().map(|c| mask(c)).collect();
                return Err(format!(
                    "{e}. Query == CHANGE MASTER TO {}",
                    py_list(&shown)
                ));
            }
            r.changed = true;
        }
        _ => {
            let (verb, what, suffix, ok_msg, no_msg) = match mode.as_str() {
                "startreplica" => (
                    "START",
                    term,
                    "",
                    "Replica started ",
                    "Replica already started (Or cannot be started)",
                ),
                "stopreplica" => (
                    "STOP",
                    term,
                    "",
                    "Replica stopped",
                    "Replica already stopped",
                ),
                "resetreplica" => ("RESET", term, "", "Replica reset", "Replica already reset"),
                "resetreplicaall" => (
                    "RESET",
                    term,
                    " ALL",
                    "Replica reset",
                    "Replica already reset",
                ),
                _ => (
                    "RESET",
                    "MASTER",
                    "",
                    "Primary reset",
                    "Primary already reset",
                ),
            };
            let q = match conn {
                Some(c) if what != "MASTER" => format!("{verb} {what} {}{suffix}", lit(c)),
                _ => format!("{verb} {what}{suffix}"),
            };
            queries.push(q.clone());
            let failed_as = match mode.as_str() {
                "startreplica" => "START REPLICA",
                "stopreplica" => "STOP REPLICA",
                "resetreplica" => "RESET REPLICA",
                "resetreplicaall" => "RESET REPLICA ALL",
                _ => "RESET MASTER",
            };
            match mysql(ctx, &login, None, &format!("{q};\n")).await? {
                MyOutcome::Lines(_) => {
                    r.changed = true;
                    r.msg = Some(ok_msg.into());
                }
                MyOutcome::SqlError(e) => {
                    if a.fail_on_error {
                        return Err(format!("{failed_as} failed: {e}"));
                    }
                    r.msg = Some(no_msg.into());
                }
            }
        }
    }
    r.data.insert("queries".into(), json!(queries));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_strings_unpack_as_the_collection() {
        let p =
            privileges_unpack("app.*:ALL/shop.orders:SELECT,insert", false, false).expect("valid");
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            vec![
                ("`app`.*".to_string(), vec!["ALL".to_string()]),
                (
                    "`shop`.`orders`".to_string(),
                    vec!["SELECT".to_string(), "INSERT".to_string()]
                ),
                ("*.*".to_string(), vec!["USAGE".to_string()]),
            ]
        );
        let p = privileges_unpack("db.t:SELECT (b, a),UPDATE", false, false).expect("valid");
        assert_eq!(p["`db`.`t`"], vec!["SELECT (A, B)", "UPDATE"]);
        assert!(privileges_unpack("no-colon", false, false).is_err());
    }

    #[test]
    fn show_grants_parse_as_the_collection() {
        let lines = vec![
            "GRANT USAGE ON *.* TO `u`@`localhost` IDENTIFIED BY PASSWORD '*ABC'".to_string(),
            "GRANT ALL PRIVILEGES ON `app`.* TO `u`@`localhost` WITH GRANT OPTION".to_string(),
            "GRANT SELECT, INSERT ON `shop`.`orders` TO `u`@`localhost`".to_string(),
        ];
        let p = privileges_get(&lines).expect("parsed");
        assert_eq!(p["*.*"], vec!["USAGE"]);
        assert_eq!(p["`app`.*"], vec!["ALL", "GRANT"]);
        assert_eq!(p["`shop`.`orders`"], vec!["SELECT", "INSERT"]);
    }

    #[test]
    fn native_password_hash_and_errors() {
        // SELECT PASSWORD('secret') on MariaDB.
        assert_eq!(
            native_hash("secret"),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
        assert_eq!(
            pymysql_error("ERROR 1115 (42000) at line 2: Unknown character set: 'foo'\n"),
            "(1115, \"Unknown character set: 'foo'\")"
        );
        assert_eq!(lit("it's"), "'it\\'s'");
    }

    #[test]
    fn replication_status_rows_as_pymysql_dict_rows() {
        let lines = vec![
            "File\tPosition\tBinlog_Do_DB".to_string(),
            "mysql-bin.000001\t328\t".to_string(),
        ];
        let row = first_row(&lines).expect("a row");
        assert_eq!(
            Json::Object(row),
            json!({"File": "mysql-bin.000001", "Position": 328, "Binlog_Do_DB": ""})
        );
        let lines = vec![
            "Last_Error\tSeconds_Behind_Master".to_string(),
            "a\\tb\\nc\tNULL".to_string(),
        ];
        let row = first_row(&lines).expect("a row");
        assert_eq!(
            Json::Object(row),
            json!({"Last_Error": "a\tb\nc", "Seconds_Behind_Master": null})
        );
        assert!(first_row(&[]).is_none());
        assert!(version_at_least("10.11.18-MariaDB-0+deb12u1", &[10, 5, 1]));
        assert!(!version_at_least("10.4.2-MariaDB", &[10, 5, 1]));
    }
}
