//! `postgresql_db` and `postgresql_user` (`community.postgresql.*`): databases
//! and roles of a PostgreSQL server on the host, driven with the host's `psql`
//! (the collection uses psycopg on the host; both speak libpq, so sockets,
//! `~/.pgpass` and peer authentication behave the same).
//!
//! SQL and passwords reach `psql` on its standard input (base64 inside the
//! script, which itself travels on the SSH channel's stdin): never in a
//! process's argv. The login password is exported to `psql` as `PGPASSWORD`
//! inside that script; it and the role password are registered as secrets, so
//! every printer masks them (the collection marks both `no_log`). The
//! registered `queries` carry `%(password)s` in place of the password, as the
//! collection's do.
//!
//! Observed in one read-only `psql` run, planned (pure), then applied in one
//! more; check mode reports what the collection reports in check mode
//! (`postgresql_db`: `changed` only, no commands; `postgresql_user`: the
//! queries it would run, as the collection runs them in a transaction it
//! rolls back).
//!
//! Connection arguments (both modules): `login_user` (`login`, default
//! `postgres`), `login_password`, `login_host` (`host`), `login_unix_socket`
//! (`unix_socket`), `login_port` (`port`), `ssl_mode`, `ca_cert`
//! (`ssl_rootcert`), `ssl_cert`, `ssl_key`, `session_role`, `trust_input`
//! (true only). Not supported yet: `connect_params`, `trust_input: false`.
//!
//! `postgresql_db`: `name` (`db`), `state` present/absent, `owner`,
//! `template`, `encoding`, `lc_collate`, `lc_ctype`, `icu_locale`,
//! `locale_provider`, `conn_limit`, `tablespace`, `comment`, `force`,
//! `maintenance_db`. Not supported yet: `state` dump/restore/rename.
//!
//! `postgresql_user`: `name` (`user`), `password` (clear text, or an md5 or
//! SCRAM-SHA-256 hash, compared as the collection compares them),
//! `encrypted`, `role_attr_flags`, `expires`, `conn_limit`, `comment`,
//! `no_password_changes`, `state` present/absent, `fail_on_user`
//! (`fail_on_role`), `login_db` (`db`). `priv` is refused as the collection
//! (4.x) refuses it: grants are `postgresql_privs`' job. Not supported yet:
//! `configuration`, `reset_unspecified_configuration`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_string, de_opt_u64, de_present, de_string};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};
use crate::connection::shell_quote;

pub(crate) fn default_login_user() -> String {
    "postgres".into()
}
pub(crate) fn default_true() -> bool {
    true
}
fn default_maintenance_db() -> String {
    "postgres".into()
}

/// The connection arguments every community.postgresql module takes, plus the
/// module's own fields.
macro_rules! pg_args {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(default = "default_login_user", alias = "login", deserialize_with = "de_string")]
            pub login_user: String,
            #[serde(default, deserialize_with = "de_opt_string")]
            pub login_password: Option<String>,
            #[serde(default, alias = "host", deserialize_with = "de_opt_string")]
            pub login_host: Option<String>,
            #[serde(default, alias = "unix_socket", deserialize_with = "de_opt_string")]
            pub login_unix_socket: Option<String>,
            #[serde(default, alias = "port", deserialize_with = "de_opt_u64")]
            pub login_port: Option<u64>,
            #[serde(default, deserialize_with = "de_opt_string")]
            pub ssl_mode: Option<String>,
            #[serde(default, alias = "ssl_rootcert", deserialize_with = "de_opt_string")]
            pub ca_cert: Option<String>,
            #[serde(default, deserialize_with = "de_opt_string")]
            pub ssl_cert: Option<String>,
            #[serde(default, deserialize_with = "de_opt_string")]
            pub ssl_key: Option<String>,
            #[serde(default, deserialize_with = "de_present")]
            pub connect_params: Option<Json>,
            #[serde(default, deserialize_with = "de_opt_string")]
            pub session_role: Option<String>,
            #[serde(default = "default_true", deserialize_with = "de_bool")]
            pub trust_input: bool,
            $($body)*
        }

        impl $name {
            fn login(&self) -> PgLogin<'_> {
                PgLogin {
                    user: &self.login_user,
                    password: self.login_password.as_deref().filter(|p| !p.is_empty()),
                    host: self.login_host.as_deref().filter(|h| !h.is_empty()),
                    socket: self.login_unix_socket.as_deref().filter(|s| !s.is_empty()),
                    port: self.login_port.unwrap_or(5432),
                    ssl_mode: self.ssl_mode.as_deref().unwrap_or("prefer"),
                    ca_cert: self.ca_cert.as_deref(),
                    ssl_cert: self.ssl_cert.as_deref(),
                    ssl_key: self.ssl_key.as_deref(),
                    connect_params: self.connect_params.as_ref(),
                    session_role: self.session_role.as_deref(),
                    trust_input: self.trust_input,
                }
            }
        }
    };
}
pub(crate) use pg_args;

/// How to reach the server (libpq's environment for `psql`).
pub struct PgLogin<'a> {
    pub(crate) user: &'a str,
    pub(crate) password: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) socket: Option<&'a str>,
    pub(crate) port: u64,
    pub(crate) ssl_mode: &'a str,
    pub(crate) ca_cert: Option<&'a str>,
    pub(crate) ssl_cert: Option<&'a str>,
    pub(crate) ssl_key: Option<&'a str>,
    pub(crate) connect_params: Option<&'a Json>,
    pub(crate) session_role: Option<&'a str>,
    pub(crate) trust_input: bool,
}

const SSL_MODES: &[&str] = &[
    "allow",
    "disable",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

impl PgLogin<'_> {
    /// What deployer refuses before connecting.
    pub(crate) fn check(&self, module: &str) -> Result<(), String> {
        if let Some(p) = self.connect_params
            && !(p.is_null() || p.as_object().is_some_and(Map::is_empty))
        {
            return Err(format!(
                "{module}: connect_params is not supported yet by deployer"
            ));
        }
        if !self.trust_input {
            return Err(format!(
                "{module}: trust_input: false is not supported yet by deployer"
            ));
        }
        if !SSL_MODES.contains(&self.ssl_mode) {
            return Err(format!(
                "{module}: ssl_mode must be one of {}, got '{}'",
                SSL_MODES.join(", "),
                self.ssl_mode
            ));
        }
        if let Some(p) = self.password {
            crate::secrets::register(p);
        }
        Ok(())
    }

    /// Shell lines exporting libpq's variables (values single-quoted).
    fn exports(&self, dbname: Option<&str>) -> String {
        let mut vars: Vec<(&str, String)> = vec![
            ("PGUSER", self.user.to_string()),
            ("PGPORT", self.port.to_string()),
            ("PGSSLMODE", self.ssl_mode.to_string()),
            ("PGAPPNAME", "deployer".to_string()),
        ];
        // As the collection: a socket applies when no host (or localhost) is given.
        match (self.host, self.socket) {
            (None | Some("localhost"), Some(s)) => vars.push(("PGHOST", s.to_string())),
            (Some(h), _) => vars.push(("PGHOST", h.to_string())),
            (None, None) => {}
        }
        if let Some(p) = self.password {
            vars.push(("PGPASSWORD", p.to_string()));
        }
        if let Some(d) = dbname.filter(|d| !d.is_empty()) {
            vars.push(("PGDATABASE", d.to_string()));
        }
        for (k, v) in [
            ("PGSSLROOTCERT", self.ca_cert),
            ("PGSSLCERT", self.ssl_cert),
            ("PGSSLKEY", self.ssl_key),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                vars.push((k, v.to_string()));
            }
        }
        let mut out = String::from(
            "unset PGHOST PGHOSTADDR PGPASSWORD PGDATABASE PGSERVICE PGOPTIONS PGSSLROOTCERT PGSSLCERT PGSSLKEY\n",
        );
        for (k, v) in vars {
            out.push_str(&format!("{k}={}; export {k}\n", shell_quote(&v)));
        }
        out
    }
}

/// A SQL string literal, as psycopg writes one (standard_conforming_strings).
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A double-quoted identifier, as the collection writes one (`"name"`).
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// What `psql` answered: the JSON rows it printed, or why it failed.
pub enum PsqlOutcome {
    Rows(Vec<Json>),
    /// The server refused a statement: its message, as psycopg words it.
    SqlError(String),
}

/// Runs `sql` with `psql` on the host (as the task's become user), one JSON
/// value per output row expected. A connection failure or a missing `psql`
/// is an `Err` carrying the collection's message.
pub async fn psql(
    ctx: &ModuleCtx<'_>,
    login: &PgLogin<'_>,
    dbname: Option<&str>,
    sql: &str,
) -> Result<PsqlOutcome, String> {
    let mut full = String::new();
    if let Some(r) = login.session_role.filter(|r| !r.is_empty()) {
        full.push_str(&format!("SET ROLE {};\n", ident(r)));
    }
    full.push_str(sql);
    let b64 = base64::engine::general_purpose::STANDARD.encode(full.as_bytes());
    let script = format!(
        "command -v psql >/dev/null 2>&1 || {{ echo 'psql is not installed' >&2; exit 127; }}\n\
         {}printf '%s' '{b64}' | base64 -d | psql -X -q -A -t -w -v ON_ERROR_STOP=1\n",
        login.exports(dbname)
    );
    let out = ctx
        .conn
        .run_script(&script, ctx.become_.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let stderr = out.stderr_str();
    match out.rc {
        0 => {
            let mut rows = Vec::new();
            for line in out.stdout_str().lines().filter(|l| !l.trim().is_empty()) {
                rows.push(
                    serde_json::from_str(line)
                        .map_err(|e| format!("unexpected output from psql ({e}): {line}"))?,
                );
            }
            Ok(PsqlOutcome::Rows(rows))
        }
        127 => Err(
            "psql is not installed on the host (deployer drives PostgreSQL with the server's client, package postgresql-client)"
                .into(),
        ),
        2 => Err(format!(
            "unable to connect to database: {}",
            stderr
                .trim_start()
                .strip_prefix("psql: error: ")
                .unwrap_or(&stderr)
        )),
        _ => Ok(PsqlOutcome::SqlError(sql_error(&stderr))),
    }
}

/// The server's message from psql's stderr (`psql:<stdin>:3: ERROR:  x`),
/// as psycopg's exception text (`x\n`, with a DETAIL line when given).
pub fn sql_error(stderr: &str) -> String {
    let mut out = String::new();
    for line in stderr.lines() {
        let l = match line.strip_prefix("psql:<stdin>:") {
            Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
            None => line,
        };
        let l = l
            .strip_prefix("ERROR:  ")
            .or_else(|| l.strip_prefix("FATAL:  "))
            .unwrap_or(l);
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn rows(o: PsqlOutcome) -> Result<Vec<Json>, String> {
    match o {
        PsqlOutcome::Rows(r) => Ok(r),
        PsqlOutcome::SqlError(e) => Err(format!("Database query failed: {e}")),
    }
}

fn get_str(v: &Json, k: &str) -> Option<String> {
    match &v[k] {
        Json::String(s) => Some(s.clone()),
        Json::Null => None,
        other => Some(other.to_string()),
    }
}

// ---------------------------------------------------------------------------
// postgresql_db
// ---------------------------------------------------------------------------

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DbState {
    Present,
    Absent,
    Dump,
    Restore,
    Rename,
}

fn default_db_state() -> DbState {
    DbState::Present
}

pg_args! {
    pub struct PgDbArgs {
        #[serde(alias = "db", deserialize_with = "de_string")]
        pub name: String,
        #[serde(default = "default_db_state")]
        pub state: DbState,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub owner: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub template: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub encoding: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub lc_collate: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub lc_ctype: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub icu_locale: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub locale_provider: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub conn_limit: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub tablespace: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub comment: Option<String>,
        #[serde(default, deserialize_with = "de_bool")]
        pub force: bool,
        #[serde(default = "default_maintenance_db", deserialize_with = "de_string")]
        pub maintenance_db: String,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub target: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub target_opts: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub dump_extra_args: Option<String>,
    }
}

pub struct PostgresqlDb;

fn nonempty(o: &Option<String>) -> Option<&str> {
    o.as_deref().filter(|s| !s.is_empty())
}

impl Module for PostgresqlDb {
    fn name(&self) -> &'static str {
        "postgresql_db"
    }
    fn fqcn(&self) -> &'static str {
        "community.postgresql.postgresql_db"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PgDbArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        super::args::check_choice(args, "state", &["present", "absent"]).map_err(|e| {
            format!("{e} (dump, restore and rename are not supported yet by deployer)")
        })?;
        super::args::check_choice(args, "ssl_mode", SSL_MODES)
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// The database as the server describes it (None: it does not exist), and
/// the id of the wanted encoding.
pub struct DbObserved {
    db: Option<Json>,
    encoding_id: Option<i64>,
}

/// Statements to run, in order (each in its own transaction: CREATE DATABASE
/// cannot run in one).
pub struct DbChanges {
    statements: Vec<String>,
    args: PgDbArgs,
}

impl PlanApply for PostgresqlDb {
    type Args = PgDbArgs;
    type Observed = DbObserved;
    type Changes = DbChanges;

    fn observe<'a>(
        &'a self,
        a: &'a PgDbArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<DbObserved, String>> {
        Box::pin(async move {
            if !matches!(a.state, DbState::Present | DbState::Absent) {
                return Err(
                    "postgresql_db: state dump, restore and rename are not supported yet by deployer"
                        .into(),
                );
            }
            let login = a.login();
            login.check("postgresql_db")?;
            let enc = nonempty(&a.encoding)
                .map(|e| format!("pg_char_to_encoding({})", lit(e)))
                .unwrap_or_else(|| "NULL".into());
            let sql = format!(
                "SELECT json_build_object('encoding_id', {enc});\n\
                 SELECT json_build_object('owner', r.rolname, 'encoding', pg_encoding_to_char(d.encoding), \
                 'encoding_id', d.encoding, 'lc_collate', d.datcollate, 'lc_ctype', d.datctype, \
                 'row', to_jsonb(d), 'conn_limit', d.datconnlimit, 'tablespace', t.spcname, \
                 'comment', pg_catalog.shobj_description(d.oid, 'pg_database')) \
                 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
                 JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = {};\n",
                lit(&a.name)
            );
            let r = rows(psql(ctx, &login, Some(&a.maintenance_db), &sql).await?)?;
            Ok(DbObserved {
                encoding_id: r.first().and_then(|v| v["encoding_id"].as_i64()),
                db: r.get(1).cloned(),
            })
        })
    }

    fn plan(
        &self,
        a: PgDbArgs,
        o: DbObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<DbChanges>, String> {
        let mut r = ModuleResult::ok();
        r.data.insert("db".into(), json!(a.name));
        r.data.insert("executed_commands".into(), json!([]));
        let db = ident(&a.name);
        let mut statements = Vec::new();
        match (a.state, &o.db) {
            (DbState::Absent, None) => return Ok(Plan::unchanged(r)),
            (DbState::Absent, Some(_)) => {
                statements.push(if a.force {
                    format!("DROP DATABASE {db} WITH (FORCE)")
                } else {
                    format!("DROP DATABASE {db}")
                });
            }
            (_, None) => {
                let mut q = vec![format!("CREATE DATABASE {db}")];
                if let Some(o) = nonempty(&a.owner) {
                    q.push(format!("OWNER {}", ident(o)));
                }
                if let Some(t) = nonempty(&a.template) {
                    q.push(format!("TEMPLATE {}", ident(t)));
                }
                if let Some(e) = nonempty(&a.encoding) {
                    q.push(format!("ENCODING {}", lit(e)));
                }
                if let Some(c) = nonempty(&a.lc_collate) {
                    q.push(format!("LC_COLLATE {}", lit(c)));
                }
                if let Some(c) = nonempty(&a.lc_ctype) {
                    q.push(format!("LC_CTYPE {}", lit(c)));
                }
                if let Some(c) = nonempty(&a.icu_locale) {
                    q.push(format!("ICU_LOCALE {}", lit(c)));
                }
                if let Some(c) = nonempty(&a.locale_provider) {
                    q.push(format!("LOCALE_PROVIDER {}", lit(c)));
                }
                if let Some(t) = nonempty(&a.tablespace) {
                    q.push(format!("TABLESPACE {}", ident(t)));
                }
                if let Some(c) = nonempty(&a.conn_limit) {
                    q.push(format!("CONNECTION LIMIT {}", conn_limit_sql(c)?));
                }
                statements.push(q.join(" "));
                if let Some(c) = nonempty(&a.comment) {
                    statements.push(format!("COMMENT ON DATABASE {db} IS {}", lit(c)));
                }
            }
            (_, Some(cur)) => {
                let cur_str = |k: &str| get_str(cur, k).unwrap_or_default();
                let row_str = |k: &str| get_str(&cur["row"], k);
                let mismatch: Option<String> = if nonempty(&a.encoding).is_some()
                    && o.encoding_id != cur["encoding_id"].as_i64()
                {
                    Some(format!(
                        "Changing database encoding is not supported. Current encoding: {}",
                        cur_str("encoding")
                    ))
                } else if nonempty(&a.lc_collate).is_some_and(|c| c != cur_str("lc_collate")) {
                    Some(format!(
                        "Changing LC_COLLATE is not supported. Current LC_COLLATE: {}",
                        cur_str("lc_collate")
                    ))
                } else if nonempty(&a.lc_ctype).is_some_and(|c| c != cur_str("lc_ctype")) {
                    Some(format!(
                        "Changing LC_CTYPE is not supported.Current LC_CTYPE: {}",
                        cur_str("lc_ctype")
                    ))
                } else if let Some(c) = nonempty(&a.icu_locale)
                    && Some(c.to_string())
                        != row_str("daticulocale").or_else(|| row_str("datlocale"))
                {
                    Some(format!(
                        "Changing ICU_LOCALE is not supported.Current ICU_LOCALE: {}",
                        row_str("daticulocale")
                            .or_else(|| row_str("datlocale"))
                            .unwrap_or_else(|| "None".into())
                    ))
                } else if let Some(p) = nonempty(&a.locale_provider) {
                    let cur_p = match row_str("datlocprovider").as_deref() {
                        Some("c") => Some("libc"),
                        Some("i") => Some("icu"),
                        _ => None,
                    };
                    (Some(p) != cur_p).then(|| {
                        format!(
                            "Changing LOCALE_PROVIDER is not supported.Current LOCALE_PROVIDER: {}",
                            cur_p.unwrap_or("None")
                        )
                    })
                } else {
                    None
                };
                if let Some(msg) = mismatch {
                    if ctx.check {
                        // The collection's check mode only says it does not match.
                        r.changed = true;
                        return Ok(Plan::unchanged(r));
                    }
                    return Ok(Plan::unchanged(ModuleResult::failed(msg)));
                }
                if let Some(o) = nonempty(&a.owner).filter(|o| *o != cur_str("owner")) {
                    statements.push(format!("ALTER DATABASE {db} OWNER TO {}", ident(o)));
                }
                if let Some(c) = nonempty(&a.conn_limit).filter(|c| *c != cur_str("conn_limit")) {
                    statements.push(format!(
                        "ALTER DATABASE {db} CONNECTION LIMIT {}",
                        conn_limit_sql(c)?
                    ));
                }
                if let Some(t) = nonempty(&a.tablespace).filter(|t| *t != cur_str("tablespace")) {
                    statements.push(format!("ALTER DATABASE {db} SET TABLESPACE {}", ident(t)));
                }
                if let Some(c) = a.comment.as_deref().filter(|c| *c != cur_str("comment")) {
                    statements.push(format!("COMMENT ON DATABASE {db} IS {}", lit(c)));
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
                match psql(ctx, &login, Some(&a.maintenance_db), &format!("{s};\n")).await? {
                    PsqlOutcome::Rows(_) => done.push(json!(s)),
                    PsqlOutcome::SqlError(e) => {
                        let mut f = ModuleResult::failed(format!("Database query failed: {e}"));
                        f.changed = false;
                        return Ok(f);
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

/// `conn_limit` as the statement takes it (an integer).
fn conn_limit_sql(c: &str) -> Result<String, String> {
    c.trim()
        .parse::<i64>()
        .map(|n| n.to_string())
        .map_err(|_| format!("conn_limit: expected an integer, got '{c}'"))
}

// ---------------------------------------------------------------------------
// postgresql_user
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

pg_args! {
    pub struct PgUserArgs {
        #[serde(alias = "user", deserialize_with = "de_string")]
        pub name: String,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub password: Option<String>,
        #[serde(default = "default_user_state")]
        pub state: UserState,
        #[serde(default, alias = "db", deserialize_with = "de_opt_string")]
        pub login_db: Option<String>,
        #[serde(default = "default_true", alias = "fail_on_role", deserialize_with = "de_bool")]
        pub fail_on_user: bool,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub role_attr_flags: Option<String>,
        #[serde(default = "default_true", deserialize_with = "de_bool")]
        pub encrypted: bool,
        #[serde(default, deserialize_with = "de_bool")]
        pub no_password_changes: bool,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub expires: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub conn_limit: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub comment: Option<String>,
        #[serde(default, deserialize_with = "de_present")]
        pub configuration: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub reset_unspecified_configuration: Option<Json>,
        #[serde(default, deserialize_with = "de_present")]
        pub quote_configuration_values: Option<Json>,
        #[serde(default, rename = "priv", deserialize_with = "de_present")]
        pub priv_: Option<Json>,
    }
}

pub struct PostgresqlUser;

const PRIV_REMOVED: &str = "postgresql_user: priv was removed from community.postgresql in 3.0.0 \
     (Ansible 12 ships 4.x, which refuses it too): grant privileges with postgresql_privs";

impl Module for PostgresqlUser {
    fn name(&self) -> &'static str {
        "postgresql_user"
    }
    fn fqcn(&self) -> &'static str {
        "community.postgresql.postgresql_user"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PgUserArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        if args.contains_key("priv") {
            return Err(PRIV_REMOVED.into());
        }
        super::args::check_choice(args, "state", &["present", "absent"])?;
        super::args::check_choice(args, "ssl_mode", SSL_MODES)
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// The server's settings and the role as `pg_authid` holds it.
pub struct UserObserved {
    version: i64,
    password_encryption: String,
    role: Option<Json>,
}

/// What to run: statements (with the password in them) and what the
/// registered `queries` say of each.
pub struct UserChanges {
    statements: Vec<(String, String)>,
    drop: bool,
    args: PgUserArgs,
}

const FLAGS: &[(&str, &str)] = &[
    ("SUPERUSER", "rolsuper"),
    ("CREATEROLE", "rolcreaterole"),
    ("CREATEDB", "rolcreatedb"),
    ("INHERIT", "rolinherit"),
    ("LOGIN", "rolcanlogin"),
    ("REPLICATION", "rolreplication"),
    ("BYPASSRLS", "rolbypassrls"),
];

/// `role_attr_flags` ("CREATEDB,NOSUPERUSER") as the statement's words, each
/// once, upper-cased; an unknown flag is the collection's error.
pub fn parse_flags(flags: &str, version: i64) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    for f in flags.split(',').filter(|f| !f.is_empty()) {
        let f = f.to_uppercase();
        let base = f.strip_prefix("NO").unwrap_or(&f);
        let known = FLAGS
            .iter()
            .any(|(n, _)| *n == base && (*n != "BYPASSRLS" || version >= 90500));
        if !known {
            if !bad.contains(&f) {
                bad.push(f);
            }
        } else if !out.contains(&f) {
            out.push(f);
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "Invalid role_attr_flags specified: {}",
            bad.join(" ")
        ));
    }
    Ok(out)
}

/// Whether the role's attributes differ from the flags.
fn flags_differ(flags: &[String], role: &Json) -> bool {
    let mut want: BTreeMap<&str, bool> = BTreeMap::new();
    for f in flags {
        match FLAGS.iter().find(|(n, _)| *n == f) {
            Some((_, col)) => {
                want.insert(col, true);
            }
            None => {
                if let Some((_, col)) = FLAGS.iter().find(|(n, _)| Some(*n) == f.strip_prefix("NO"))
                {
                    want.insert(col, false);
                }
            }
        }
    }
    want.iter().any(|(col, v)| role[*col].as_bool() != Some(*v))
}

/// SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
fn scram_parts(s: &str) -> Option<(u32, Vec<u8>, Vec<u8>)> {
    let rest = s.strip_prefix("SCRAM-SHA-256$")?;
    let (iter_salt, keys) = rest.split_once('$')?;
    let (iter, salt) = iter_salt.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    let b64ok = |x: &str| {
        !x.is_empty()
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    };
    if iter.is_empty()
        || !iter.chars().all(|c| c.is_ascii_digit())
        || !b64ok(salt)
        || !b64ok(stored)
        || !b64ok(server)
    {
        return None;
    }
    let dec = |x: &str| base64::engine::general_purpose::STANDARD.decode(x).ok();
    Some((iter.parse().ok()?, dec(salt)?, dec(server)?))
}

fn is_scram(s: &str) -> bool {
    s.strip_prefix("SCRAM-SHA-256$").is_some() && {
        let rest = &s["SCRAM-SHA-256$".len()..];
        let ok = |x: &str| {
            !x.is_empty()
                && x.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        };
        rest.split_once('$').is_some_and(|(is, keys)| {
            is.split_once(':').is_some_and(|(i, s)| {
                !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()) && ok(s)
            }) && keys.split_once(':').is_some_and(|(a, b)| ok(a) && ok(b))
        })
    }
}

/// Whether `password` (clear text) is the one the SCRAM verifier was made from.
pub fn scram_matches(verifier: &str, password: &str) -> Option<bool> {
    use hmac::{Hmac, KeyInit, Mac};
    let (iter, salt, server_key) = scram_parts(verifier)?;
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, iter, &mut salted);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&salted).ok()?;
    mac.update(b"Server Key");
    Some(mac.finalize().into_bytes().as_slice() == server_key.as_slice())
}

fn is_md5_hash(p: &str) -> bool {
    p.starts_with("md5") && p.len() == 35
}

/// The collection's `user_should_we_change_password`.
pub fn password_differs(
    current: Option<&str>,
    password: Option<&str>,
    encrypted: bool,
    user: &str,
    password_encryption: &str,
) -> bool {
    let Some(password) = password else {
        return false;
    };
    if password.is_empty() {
        return current.is_some();
    }
    if is_scram(password) {
        return Some(password) != current;
    }
    if let Some(cur) = current.filter(|c| is_scram(c)) {
        return scram_matches(cur, password) != Some(true);
    }
    if is_md5_hash(password) || !encrypted {
        return Some(password) != current;
    }
    match password_encryption {
        "md5" => {
            use md5::{Digest, Md5};
            let mut h = Md5::new();
            h.update(password.as_bytes());
            h.update(user.as_bytes());
            let hashed = format!("md5{}", hex::encode(h.finalize()));
            Some(hashed.as_str()) != current
        }
        "scram-sha-256" => true,
        _ => false,
    }
}

impl PlanApply for PostgresqlUser {
    type Args = PgUserArgs;
    type Observed = UserObserved;
    type Changes = UserChanges;

    fn observe<'a>(
        &'a self,
        a: &'a PgUserArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<UserObserved, String>> {
        Box::pin(async move {
            if a.priv_.is_some() {
                return Err(PRIV_REMOVED.into());
            }
            if a.configuration
                .as_ref()
                .is_some_and(|c| !(c.is_null() || c.as_object().is_some_and(Map::is_empty)))
                || a.reset_unspecified_configuration.is_some()
                || a.quote_configuration_values.is_some()
            {
                return Err(
                    "postgresql_user: configuration is not supported yet by deployer".into(),
                );
            }
            if a.name.is_empty() {
                return Err("postgresql_user: name must not be empty".into());
            }
            if let Some(p) = a.password.as_deref().filter(|p| !p.is_empty()) {
                crate::secrets::register(p);
            }
            let login = a.login();
            login.check("postgresql_user")?;
            let expires = match a.expires.as_deref() {
                Some(e) => format!(
                    "a.rolvaliduntil IS NOT DISTINCT FROM {}::timestamptz",
                    lit(e)
                ),
                None => "true".into(),
            };
            // pg_authid (with the password hash) when the login may read
            // it, else pg_roles (password shown as ********), as the collection.
            let select = |table: &str| {
                format!(
                    "SELECT json_build_object('role', to_jsonb(a), 'expires_same', {expires}, \
                     'comment', pg_catalog.shobj_description(a.oid, 'pg_authid')) \
                     FROM pg_catalog.{table} a WHERE a.rolname = {};\n",
                    lit(&a.name)
                )
            };
            let sql = format!(
                "SELECT json_build_object('version', current_setting('server_version_num')::int, \
                 'password_encryption', current_setting('password_encryption'));\n\
                 SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS deployer_authid \\gset\n\
                 \\if :deployer_authid\n{}\\else\n{}\\endif\n",
                select("pg_authid"),
                select("pg_roles")
            );
            let r = rows(psql(ctx, &login, a.login_db.as_deref(), &sql).await?)?;
            Ok(UserObserved {
                version: r.first().and_then(|v| v["version"].as_i64()).unwrap_or(0),
                password_encryption: r
                    .first()
                    .and_then(|v| v["password_encryption"].as_str())
                    .unwrap_or("")
                    .to_string(),
                role: r.get(1).cloned(),
            })
        })
    }

    fn plan(
        &self,
        a: PgUserArgs,
        o: UserObserved,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<UserChanges>, String> {
        let mut r = ModuleResult::ok();
        r.data.insert("user".into(), json!(a.name));
        let flags = match parse_flags(a.role_attr_flags.as_deref().unwrap_or(""), o.version) {
            Ok(f) => f.join(" "),
            Err(e) => return Ok(Plan::unchanged(ModuleResult::failed(e))),
        };
        let user = ident(&a.name);
        let crypt = if a.encrypted {
            "ENCRYPTED"
        } else {
            "UNENCRYPTED"
        };
        let conn_limit = match a.conn_limit.as_deref() {
            Some(c) => Some(
                c.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("conn_limit: expected an integer, got '{c}'"))?,
            ),
            None => None,
        };
        // (statement as reported, with %(password)s / %(expires)s)
        let mut queries: Vec<String> = Vec::new();
        let mut drop = false;
        match (a.state, &o.role) {
            (UserState::Absent, None) => {}
            (UserState::Absent, Some(_)) => {
                drop = true;
                if ctx.check {
                    r.changed = true;
                    r.data.insert("user_removed".into(), json!(true));
                } else {
                    queries.push(format!("DROP USER {user}"));
                }
            }
            (UserState::Present, None) => {
                let mut q = vec![format!("CREATE USER {user}")];
                if a.password.as_deref().is_some_and(|p| !p.is_empty()) {
                    q.push(format!("WITH {crypt}"));
                    q.push("PASSWORD %(password)s".into());
                }
                if a.expires.is_some() {
                    q.push("VALID UNTIL %(expires)s".into());
                }
                if let Some(c) = conn_limit {
                    q.push(format!("CONNECTION LIMIT {c}"));
                }
                q.push(flags.clone());
                queries.push(q.join(" "));
                if let Some(c) = a.comment.as_deref().filter(|c| !c.is_empty()) {
                    queries.push(format!("COMMENT ON ROLE {user} IS {}", lit(c)));
                }
            }
            (UserState::Present, Some(cur)) => {
                let role = &cur["role"];
                let flag_words: Vec<String> = flags
                    .split(' ')
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect();
                if !a.no_password_changes
                    && (a.password.is_some()
                        || !flags.is_empty()
                        || a.expires.is_some()
                        || conn_limit.is_some())
                {
                    let pw_changing = password_differs(
                        role["rolpassword"].as_str(),
                        a.password.as_deref(),
                        a.encrypted,
                        &a.name,
                        &o.password_encryption,
                    );
                    let flags_changing = flags_differ(&flag_words, role);
                    let expires_changing =
                        a.expires.is_some() && cur["expires_same"].as_bool() != Some(true);
                    let conn_changing =
                        conn_limit.is_some_and(|c| role["rolconnlimit"].as_i64() != Some(c));
                    if pw_changing || flags_changing || expires_changing || conn_changing {
                        let mut q = vec![format!("ALTER USER {user}")];
                        if pw_changing {
                            if a.password.as_deref() != Some("") {
                                q.push(format!("WITH {crypt}"));
                                q.push("PASSWORD %(password)s".into());
                            } else {
                                q.push("WITH PASSWORD NULL".into());
                            }
                            q.push(flags.clone());
                        } else if !flags.is_empty() {
                            q.push(format!("WITH {flags}"));
                        }
                        if a.expires.is_some() {
                            q.push("VALID UNTIL %(expires)s".into());
                        }
                        if let Some(c) = conn_limit {
                            q.push(format!("CONNECTION LIMIT {c}"));
                        }
                        queries.push(q.join(" "));
                    }
                } else if a.no_password_changes
                    && !flags.is_empty()
                    && flags_differ(&flag_words, role)
                {
                    queries.push(format!("ALTER USER {user} WITH {flags}"));
                }
                let current_comment = get_str(cur, "comment").unwrap_or_default();
                if let Some(c) = a.comment.as_deref().filter(|c| *c != current_comment) {
                    queries.push(format!("COMMENT ON ROLE {user} IS {}", lit(c)));
                }
            }
        }
        r.data.insert("queries".into(), json!(queries));
        if queries.is_empty() && !drop {
            return Ok(Plan::unchanged(r));
        }
        r.changed = true;
        let pw = a
            .password
            .as_deref()
            .map(lit)
            .unwrap_or_else(|| "NULL".into());
        let exp = a
            .expires
            .as_deref()
            .map(lit)
            .unwrap_or_else(|| "NULL".into());
        let statements = queries
            .iter()
            .map(|q| {
                (
                    q.replace("%(password)s", &pw).replace("%(expires)s", &exp),
                    q.clone(),
                )
            })
            .collect();
        if drop && ctx.check {
            return Ok(Plan::unchanged(r));
        }
        Ok(Plan {
            result: r,
            changes: Some(UserChanges {
                statements,
                drop,
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
            let mut sql = String::from("BEGIN;\n");
            for (s, _) in &changes.statements {
                sql.push_str(s);
                sql.push_str(";\n");
            }
            sql.push_str("COMMIT;\n");
            match psql(ctx, &login, a.login_db.as_deref(), &sql).await? {
                PsqlOutcome::Rows(_) => {
                    if changes.drop {
                        planned.data.insert("user_removed".into(), json!(true));
                    }
                    Ok(planned)
                }
                PsqlOutcome::SqlError(e) if changes.drop => {
                    if a.fail_on_user {
                        Ok(ModuleResult::failed(format!("Unable to remove user: {e}")))
                    } else {
                        planned.changed = false;
                        planned.data.insert("user_removed".into(), json!(false));
                        Ok(planned)
                    }
                }
                PsqlOutcome::SqlError(e) => Ok(ModuleResult::failed(format!(
                    "Unable to add user with given requirement due to : {e}"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_and_kept_once() {
        assert_eq!(
            parse_flags("createdb,NOSUPERUSER,CREATEDB", 150000),
            Ok(vec!["CREATEDB".to_string(), "NOSUPERUSER".to_string()])
        );
        assert_eq!(
            parse_flags("CREATEDB,FLY", 150000),
            Err("Invalid role_attr_flags specified: FLY".to_string())
        );
        assert!(parse_flags("BYPASSRLS", 90400).is_err());
        assert_eq!(parse_flags("", 150000), Ok(vec![]));
    }

    #[test]
    fn passwords_compare_as_the_collection_compares_them() {
        // Made by PostgreSQL 15 (the testbed's) for the password "pencil".
        let v = "SCRAM-SHA-256$4096:eFbQJjQgUJaLsxrW4JjEaw==$rcEtIl8dbc0ELYbBU9CgHwtWahKlxIFIRUhkhX8T7+I=:3ev96/k50k6iSFONRmJvu+XshAxcqU64NC8xxxevg2k=";
        let (iter, salt, _) = scram_parts(v).expect("a verifier");
        assert_eq!((iter, salt.len()), (4096, 16));
        assert!(is_scram(v));
        assert_eq!(scram_matches(v, "pencil"), Some(true));
        assert_eq!(scram_matches(v, "pencil2"), Some(false));
        assert!(!password_differs(
            Some(v),
            Some("pencil"),
            true,
            "u",
            "scram-sha-256"
        ));
        assert!(password_differs(
            Some(v),
            Some("other"),
            true,
            "u",
            "scram-sha-256"
        ));
        assert!(!password_differs(
            Some(v),
            Some(v),
            true,
            "u",
            "scram-sha-256"
        ));
        assert!(!password_differs(
            Some("x"),
            None,
            true,
            "u",
            "scram-sha-256"
        ));
        assert!(password_differs(
            Some("x"),
            Some(""),
            true,
            "u",
            "scram-sha-256"
        ));
        assert!(!password_differs(
            None,
            Some(""),
            true,
            "u",
            "scram-sha-256"
        ));
        // md5: "md5" + md5(password || user)
        let md5 = "md521f3163f8f86fa10bdefbfbd502a8f06";
        assert!(!password_differs(
            Some(md5),
            Some("secret"),
            true,
            "bob",
            "md5"
        ));
        assert!(password_differs(
            Some(md5),
            Some("secret2"),
            true,
            "bob",
            "md5"
        ));
        assert!(!password_differs(
            Some(md5),
            Some(md5),
            true,
            "bob",
            "scram-sha-256"
        ));
        // A clear-text password over no password, SCRAM by default: changes.
        assert!(password_differs(
            None,
            Some("x"),
            true,
            "u",
            "scram-sha-256"
        ));
    }

    #[test]
    fn quoting_and_errors() {
        assert_eq!(lit("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            sql_error("psql:<stdin>:2: ERROR:  role \"nobody\" does not exist\n"),
            "role \"nobody\" does not exist\n"
        );
    }
}
