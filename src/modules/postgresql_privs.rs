//! `postgresql_privs` (`community.postgresql.postgresql_privs`): privileges
//! on databases, schemas, tables, sequences and functions, granted or
//! revoked with the host's `psql` as the collection does it.
//!
//! The collection builds one `GRANT`/`REVOKE` (and `REVOKE GRANT OPTION
//! FOR` when `grant_option` is false), runs it in a transaction between two
//! reads of the objects' ACLs, and commits only when they differ (never in
//! check mode): `changed` is that difference. deployer sends the same
//! statements in one `psql` session that does the same (`\gset`, `\if`):
//! observe runs it and always rolls back (what check mode reports), apply
//! runs it again and commits when the ACLs changed. Returns `queries`, as the
//! collection's.
//!
//! Supported: `login_db` (`db`, `database`), `state` present/absent, `privs`
//! (`priv`), `type` table, sequence, function, database, schema, `objs`
//! (`obj`; `ALL_IN_SCHEMA` for tables, sequences and functions), `schema`,
//! `roles` (`role`; `PUBLIC` and the other implicit roles), `grant_option`
//! (`admin_option`), `fail_on_role`, and the connection arguments of
//! `postgresql_db`. Not supported yet: `type` procedure, language,
//! tablespace, group, default_privs, foreign_data_wrapper, foreign_server,
//! type, parameter; `target_roles`.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::args::{de_bool, de_opt_bool, de_opt_string, de_opt_u64, de_present, de_string};
use super::postgresql::{
    PgLogin, PsqlOutcome, default_login_user, default_true, ident, lit, pg_args, psql,
};
use super::registry::{ArgSchema, BoxFuture, Module, ModuleFuture, Plan, PlanApply, plan_apply};
use super::{ModuleCtx, ModuleResult};

pg_args! {
    pub struct PgPrivsArgs {
        #[serde(alias = "db", alias = "database", deserialize_with = "de_string")]
        pub login_db: String,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub state: Option<String>,
        #[serde(default, alias = "priv", deserialize_with = "de_opt_string")]
        pub privs: Option<String>,
        #[serde(default, rename = "type", deserialize_with = "de_opt_string")]
        pub type_: Option<String>,
        #[serde(default, alias = "obj", deserialize_with = "de_opt_string")]
        pub objs: Option<String>,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub schema: Option<String>,
        #[serde(alias = "role", deserialize_with = "de_string")]
        pub roles: String,
        #[serde(default, deserialize_with = "de_opt_string")]
        pub target_roles: Option<String>,
        #[serde(default, alias = "admin_option", deserialize_with = "de_opt_bool")]
        pub grant_option: Option<bool>,
        #[serde(default = "default_true", deserialize_with = "de_bool")]
        pub fail_on_role: bool,
    }
}

pub struct PostgresqlPrivs;

const TYPES: &[&str] = &[
    "table",
    "sequence",
    "function",
    "procedure",
    "database",
    "schema",
    "language",
    "tablespace",
    "group",
    "default_privs",
    "foreign_data_wrapper",
    "foreign_server",
    "type",
    "parameter",
];
const SUPPORTED_TYPES: &[&str] = &["table", "sequence", "function", "database", "schema"];
const VALID_PRIVS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "CREATE",
    "CONNECT",
    "TEMPORARY",
    "TEMP",
    "EXECUTE",
    "USAGE",
    "ALL",
    "SET",
    "ALTER_SYSTEM",
];
/// Roles PostgreSQL knows without a `pg_roles` row (with the server version
/// from which they exist).
const IMPLICIT_ROLES: &[(&str, i64)] = &[
    ("PUBLIC", 0),
    ("CURRENT_USER", 95000),
    ("SESSION_USER", 95000),
    ("CURRENT_ROLE", 140000),
];

fn type_of(a: &PgPrivsArgs) -> &str {
    a.type_.as_deref().unwrap_or("table")
}

/// What deployer refuses before connecting.
fn check_args(a: &PgPrivsArgs) -> Result<(), String> {
    let t = type_of(a);
    if !TYPES.contains(&t) {
        return Err(format!(
            "postgresql_privs: type must be one of {}, got '{t}'",
            TYPES.join(", ")
        ));
    }
    if !SUPPORTED_TYPES.contains(&t) {
        return Err(format!(
            "postgresql_privs: type {t} is not supported yet by deployer ({} are)",
            SUPPORTED_TYPES.join(", ")
        ));
    }
    if let Some(s) = a.state.as_deref()
        && s != "present"
        && s != "absent"
    {
        return Err(format!(
            "postgresql_privs: state must be one of present, absent, got '{s}'"
        ));
    }
    if a.target_roles.as_deref().is_some_and(|r| !r.is_empty()) {
        return Err("postgresql_privs: target_roles is not supported yet by deployer".into());
    }
    Ok(())
}

impl Module for PostgresqlPrivs {
    fn name(&self) -> &'static str {
        "postgresql_privs"
    }
    fn fqcn(&self) -> &'static str {
        "community.postgresql.postgresql_privs"
    }
    fn args(&self) -> ArgSchema {
        ArgSchema::of::<PgPrivsArgs>()
    }
    fn check_combination(&self, args: &Map<String, Json>) -> Result<(), String> {
        super::args::check_choice(args, "type", TYPES)?;
        if let Some(Json::String(t)) = super::args::literal(args, "type")
            && !SUPPORTED_TYPES.contains(&t.as_str())
        {
            return Err(format!("type {t} is not supported yet by deployer"));
        }
        super::args::check_choice(args, "state", &["present", "absent"])?;
        if super::args::literal(args, "target_roles").is_some() {
            return Err("target_roles is not supported yet by deployer".into());
        }
        Ok(())
    }
    fn run<'a>(&'a self, args: Json, ctx: &'a mut ModuleCtx<'_>) -> ModuleFuture<'a> {
        plan_apply(self, args, ctx)
    }
}

/// The statement, and the query reading the ACLs it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivsQuery {
    /// What the collection runs (and returns in `queries`).
    pub query: String,
    /// One ACL (text, or NULL) per object.
    pub status: String,
}

/// How the task's arguments read, before the host is asked anything.
#[derive(Debug)]
enum Prepared {
    /// The task fails with this message (the collection's `fail_json`).
    Fail(String),
    Ready {
        privs: Option<Vec<String>>,
        schema: Option<String>,
        /// `None` for `ALL_IN_SCHEMA` (listed on the host).
        objs: Option<Vec<String>>,
    },
}

/// The collection's argument checks, in its order.
fn prepare(a: &PgPrivsArgs) -> Prepared {
    let t = type_of(a);
    let mut schema = a.schema.clone();
    if [
        "table",
        "sequence",
        "function",
        "procedure",
        "type",
        "default_privs",
    ]
    .contains(&t)
    {
        if a.objs.as_deref() == Some("schemas") || schema.as_deref() == Some("not-specified") {
            schema = None;
        } else if schema.as_deref().is_none_or(str::is_empty) {
            schema = Some("public".into());
        }
    } else if schema.as_deref().is_some_and(|s| !s.is_empty()) {
        return Prepared::Fail(format!(
            "Argument \"schema\" is not allowed for type \"{t}\"."
        ));
    }
    let objs_raw = a.objs.clone().filter(|o| !o.is_empty());
    if objs_raw.as_deref() == Some("ALL_IN_SCHEMA")
        && !["table", "sequence", "function", "procedure"].contains(&t)
    {
        return Prepared::Fail(format!(
            "Argument \"objs\": ALL_IN_SCHEMA can be used only for type: table, sequence, function or procedure, {t} was passed."
        ));
    }
    let objs_raw = if t == "database" {
        Some(objs_raw.unwrap_or_else(|| a.login_db.clone()))
    } else {
        match objs_raw {
            Some(o) => Some(o),
            None => {
                return Prepared::Fail(format!("Argument \"objs\" is required for type \"{t}\"."));
            }
        }
    };
    let privs = match a.privs.as_deref().filter(|p| !p.is_empty()) {
        None => {
            return Prepared::Fail(format!("Argument \"privs\" is required for type \"{t}\"."));
        }
        Some(p) => {
            let mut out: Vec<String> = Vec::new();
            for pr in p.split(',').map(|x| x.to_uppercase()) {
                if !out.contains(&pr) {
                    out.push(pr);
                }
            }
            let bad: Vec<&String> = out
                .iter()
                .filter(|p| !VALID_PRIVS.contains(&p.as_str()))
                .collect();
            if !bad.is_empty() {
                return Prepared::Fail(format!(
                    "Invalid privileges specified: frozenset({{{}}})",
                    bad.iter()
                        .map(|b| format!("'{b}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Some(out)
        }
    };
    let objs = match objs_raw.as_deref() {
        Some("ALL_IN_SCHEMA") => None,
        Some(o) => Some(
            o.split(',')
                .map(|x| {
                    if t == "function" {
                        x.replace(':', ",")
                    } else {
                        x.to_string()
                    }
                })
                .collect(),
        ),
        None => Some(Vec::new()),
    };
    Prepared::Ready {
        privs,
        schema,
        objs,
    }
}

/// One grant or revoke as the collection reads the task: `objs` are the
/// names as it has them, `roles` already quoted (or implicit, in capitals).
pub struct Grant<'a> {
    pub t: &'a str,
    pub privs: &'a [String],
    pub objs: &'a [String],
    pub all_in_schema: bool,
    pub schema: Option<&'a str>,
    pub roles: &'a [String],
    pub present: bool,
    pub grant_option: Option<bool>,
}

/// The statement and the status query of a [`Grant`].
pub fn build(g: &Grant<'_>) -> Result<PrivsQuery, String> {
    let Grant {
        t,
        privs,
        objs,
        all_in_schema,
        schema,
        roles,
        present,
        grant_option,
    } = *g;
    let qschema = schema.map(ident);
    let obj_ids: Vec<String> = match t {
        "function" => objs
            .iter()
            .map(|o| {
                let (f, args) = o
                    .split_once('(')
                    .ok_or_else(|| format!("Illegal function / procedure signature: \"{o}\"."))?;
                Ok(format!(
                    "{}.{}({args}",
                    qschema.clone().unwrap_or_default(),
                    ident(f)
                ))
            })
            .collect::<Result<_, String>>()?,
        "table" | "sequence" => objs
            .iter()
            .map(|o| format!("{}.{}", qschema.clone().unwrap_or_default(), ident(o)))
            .collect(),
        _ => objs.iter().map(|o| ident(o)).collect(),
    };
    let what = privs.join(",").replace('_', " ");
    let set_what = if all_in_schema {
        let kind = match t {
            "table" => "ALL TABLES IN SCHEMA",
            "sequence" => "ALL SEQUENCES IN SCHEMA",
            _ => "ALL FUNCTIONS IN SCHEMA",
        };
        format!("{what} ON {kind} {}", qschema.clone().unwrap_or_default())
    } else {
        format!("{what} ON {} {}", t.replace('_', " "), obj_ids.join(","))
    };
    let for_whom = roles.join(",");
    let query = if present {
        let mut q = format!("GRANT {set_what} TO {for_whom}");
        match grant_option {
            Some(true) => q.push_str(" WITH GRANT OPTION;"),
            Some(false) => {
                q.push_str(";\n");
                q.push_str(&format!(
                    "REVOKE GRANT OPTION FOR {set_what} FROM {for_whom};"
                ));
            }
            None => q.push(';'),
        }
        q
    } else {
        format!("REVOKE {set_what} FROM {for_whom};")
    };
    let names = format!(
        "ARRAY[{}]::text[]",
        objs.iter()
            .map(|o| lit(if t == "function" {
                o.split('(').next().unwrap_or(o)
            } else {
                o
            }))
            .collect::<Vec<_>>()
            .join(",")
    );
    let in_schema = |col: &str| match schema {
        Some(s) => format!(" AND {col} = {}", lit(s)),
        None => String::new(),
    };
    let status = match t {
        "table" => format!(
            "SELECT c.relacl::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE relkind IN ('r','p','v','m','f') AND relname = ANY ({names}){}",
            in_schema("nspname")
        ),
        "sequence" => format!(
            "SELECT c.relacl::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE relkind = 'S' AND relname = ANY ({names}){}",
            in_schema("nspname")
        ),
        "function" => format!(
            "SELECT p.proacl::text FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE proname = ANY ({names}){}",
            in_schema("nspname")
        ),
        "schema" => format!(
            "SELECT nspacl::text FROM pg_catalog.pg_namespace WHERE nspname = ANY ({names})"
        ),
        _ => {
            format!("SELECT datacl::text FROM pg_catalog.pg_database WHERE datname = ANY ({names})")
        }
    };
    Ok(PrivsQuery { query, status })
}

/// The psql session: the ACLs, the statement, the ACLs again; commit when
/// they differ and `commit`, else roll back. Prints `{"changed": ...}`; a
/// failing statement stops psql (the server rolls the transaction back).
fn session(q: &PrivsQuery, commit: bool) -> String {
    let agg = |name: &str| {
        format!(
            "SELECT coalesce(json_agg(a ORDER BY a NULLS FIRST), '[]')::text AS {name} FROM ({}) s(a) \\gset\n",
            q.status
        )
    };
    format!(
        "BEGIN;\n{}{}\n{}SELECT (:'dpl_before' = :'dpl_after') AS dpl_same \\gset\n\\if :dpl_same\nROLLBACK;\n\\else\n{}\n\\endif\n\
         SELECT json_build_object('changed', NOT :'dpl_same'::boolean);\n",
        agg("dpl_before"),
        q.query,
        agg("dpl_after"),
        if commit { "COMMIT;" } else { "ROLLBACK;" }
    )
}

/// What the host says.
pub struct PrivsObserved {
    /// The statement to run (None: nothing to do, as the collection
    /// returns when there are no objects or roles).
    query: Option<PrivsQuery>,
    /// What the rolled-back run found, or the collection's failure.
    outcome: Result<bool, String>,
    warnings: Vec<String>,
}

async fn run_session(
    ctx: &ModuleCtx<'_>,
    login: &PgLogin<'_>,
    db: &str,
    q: &PrivsQuery,
    commit: bool,
) -> Result<Result<bool, String>, String> {
    match psql(ctx, login, Some(db), &session(q, commit)).await? {
        PsqlOutcome::Rows(rows) => Ok(Ok(rows
            .last()
            .and_then(|r| r["changed"].as_bool())
            .unwrap_or(false))),
        PsqlOutcome::SqlError(e) => Ok(Err(format!(
            "Cannot execute SQL '{}': {}",
            q.query,
            e.trim_end()
        ))),
    }
}

impl PlanApply for PostgresqlPrivs {
    type Args = PgPrivsArgs;
    type Observed = PrivsObserved;
    /// The statement, and the arguments (to connect again).
    type Changes = (PrivsQuery, PgPrivsArgs);

    fn observe<'a>(
        &'a self,
        a: &'a PgPrivsArgs,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> BoxFuture<'a, Result<PrivsObserved, String>> {
        Box::pin(async move {
            check_args(a)?;
            let login = a.login();
            login.check("postgresql_privs")?;
            let (privs, schema, objs) = match prepare(a) {
                Prepared::Fail(m) => {
                    return Ok(PrivsObserved {
                        query: None,
                        outcome: Err(m),
                        warnings: Vec::new(),
                    });
                }
                Prepared::Ready {
                    privs,
                    schema,
                    objs,
                } => (privs, schema, objs),
            };
            let t = type_of(a);
            let roles_raw: Vec<&str> = a.roles.split(',').collect();
            // One read: the server's version, which roles exist, and with
            // ALL_IN_SCHEMA the schema and its objects.
            let mut sql = String::from(
                "SELECT json_build_object('version', current_setting('server_version_num')::int);\n",
            );
            for r in &roles_raw {
                sql.push_str(&format!(
                    "SELECT json_build_object('role', {}, 'exists', EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {}));\n",
                    lit(r),
                    lit(r)
                ));
            }
            if objs.is_none() {
                let s = schema.clone().unwrap_or_default();
                sql.push_str(&format!(
                    "SELECT json_build_object('schema_exists', EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {}));\n",
                    lit(&s)
                ));
                let list = match t {
                    "table" => "SELECT relname AS o FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE nspname = $S AND relkind IN ('r','v','m','p','f')",
                    "sequence" => "SELECT relname AS o FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE nspname = $S AND relkind = 'S'",
                    _ => "SELECT p.proname || '(' || oidvectortypes(p.proargtypes) || ')' AS o FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE nspname = $S AND p.prokind = 'f'",
                }
                .replace("$S", &lit(&s));
                sql.push_str(&format!(
                    "SELECT json_build_object('obj', o) FROM ({list}) l;\n"
                ));
            }
            let rows = match psql(ctx, &login, Some(&a.login_db), &sql).await? {
                PsqlOutcome::Rows(r) => r,
                PsqlOutcome::SqlError(e) => return Err(format!("Database query failed: {e}")),
            };
            let version = rows
                .first()
                .and_then(|r| r["version"].as_i64())
                .unwrap_or(0);
            let mut roles = Vec::new();
            let mut warnings = Vec::new();
            for r in &roles_raw {
                let upper = r.to_uppercase();
                let implicit = IMPLICIT_ROLES
                    .iter()
                    .any(|(n, v)| *n == upper && version >= *v);
                let exists = implicit
                    || rows
                        .iter()
                        .any(|row| row["role"] == json!(r) && row["exists"] == json!(true));
                if implicit {
                    roles.push(upper);
                } else if exists {
                    roles.push(ident(r));
                } else if a.fail_on_role {
                    return Ok(PrivsObserved {
                        query: None,
                        outcome: Err(format!("Role '{r}' does not exist")),
                        warnings,
                    });
                } else {
                    warnings.push(format!("Role '{r}' does not exist, pass it"));
                }
            }
            let objs = match objs {
                Some(o) => o,
                None => {
                    if !rows.iter().any(|r| r["schema_exists"] == json!(true)) {
                        return Ok(PrivsObserved {
                            query: None,
                            outcome: Err(format!(
                                "Schema \"{}\" does not exist.",
                                schema.clone().unwrap_or_default()
                            )),
                            warnings,
                        });
                    }
                    rows.iter()
                        .filter_map(|r| r["obj"].as_str().map(str::to_string))
                        .collect()
                }
            };
            if roles.is_empty() {
                warnings.push("No valid roles provided, nothing to do".into());
            }
            if objs.is_empty() || roles.is_empty() {
                return Ok(PrivsObserved {
                    query: None,
                    outcome: Ok(false),
                    warnings,
                });
            }
            let q = build(&Grant {
                t,
                privs: privs.as_deref().unwrap_or_default(),
                objs: &objs,
                all_in_schema: a.objs.as_deref() == Some("ALL_IN_SCHEMA"),
                schema: schema.as_deref(),
                roles: &roles,
                present: a.state.as_deref() != Some("absent"),
                grant_option: a.grant_option,
            });
            let q = match q {
                Ok(q) => q,
                Err(m) => {
                    return Ok(PrivsObserved {
                        query: None,
                        outcome: Err(m),
                        warnings,
                    });
                }
            };
            let outcome = run_session(ctx, &login, &a.login_db, &q, false).await?;
            Ok(PrivsObserved {
                query: Some(q),
                outcome,
                warnings,
            })
        })
    }

    fn plan(
        &self,
        a: PgPrivsArgs,
        o: PrivsObserved,
        _ctx: &ModuleCtx<'_>,
    ) -> Result<Plan<(PrivsQuery, PgPrivsArgs)>, String> {
        let changed = match o.outcome {
            Err(m) => {
                let mut r = ModuleResult::failed(m);
                if let Some(q) = &o.query {
                    r.data.insert("queries".into(), json!([q.query]));
                }
                return Ok(Plan::unchanged(r));
            }
            Ok(c) => c,
        };
        let mut r = ModuleResult::ok();
        r.changed = changed;
        r.data.insert(
            "queries".into(),
            json!(o.query.iter().map(|q| q.query.clone()).collect::<Vec<_>>()),
        );
        if !o.warnings.is_empty() {
            r.data.insert("warnings".into(), json!(o.warnings));
        }
        match (changed, o.query) {
            (true, Some(q)) => Ok(Plan {
                result: r,
                changes: Some((q, a)),
            }),
            _ => Ok(Plan::unchanged(r)),
        }
    }

    fn apply<'a>(
        &'a self,
        (q, a): (PrivsQuery, PgPrivsArgs),
        mut planned: ModuleResult,
        ctx: &'a mut ModuleCtx<'_>,
    ) -> ModuleFuture<'a> {
        Box::pin(async move {
            let login = a.login();
            match run_session(ctx, &login, &a.login_db, &q, true).await? {
                Ok(changed) => {
                    planned.changed = changed;
                    Ok(planned)
                }
                Err(m) => {
                    let mut r = ModuleResult::failed(m);
                    r.data.insert("queries".into(), json!([q.query]));
                    Ok(r)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn statements_are_built_as_the_collection_builds_them() {
        let q = build(&Grant {
            t: "table",
            privs: &v(&["SELECT"]),
            objs: &v(&["books"]),
            all_in_schema: false,
            schema: Some("public"),
            roles: &v(&["\"reader\""]),
            present: true,
            grant_option: Some(false),
        })
        .unwrap();
        assert_eq!(
            q.query,
            "GRANT SELECT ON table \"public\".\"books\" TO \"reader\";\nREVOKE GRANT OPTION FOR SELECT ON table \"public\".\"books\" FROM \"reader\";"
        );
        let q = build(&Grant {
            t: "database",
            privs: &v(&["CONNECT", "TEMPORARY"]),
            objs: &v(&["app"]),
            all_in_schema: false,
            schema: None,
            roles: &v(&["PUBLIC"]),
            present: false,
            grant_option: None,
        })
        .unwrap();
        assert_eq!(
            q.query,
            "REVOKE CONNECT,TEMPORARY ON database \"app\" FROM PUBLIC;"
        );
        let q = build(&Grant {
            t: "sequence",
            privs: &v(&["USAGE"]),
            objs: &v(&["a"]),
            all_in_schema: true,
            schema: Some("app"),
            roles: &v(&["\"r\""]),
            present: true,
            grant_option: Some(true),
        })
        .unwrap();
        assert_eq!(
            q.query,
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA \"app\" TO \"r\" WITH GRANT OPTION;"
        );
        let q = build(&Grant {
            t: "function",
            privs: &v(&["EXECUTE"]),
            objs: &v(&["add(integer, integer)"]),
            all_in_schema: false,
            schema: Some("public"),
            roles: &v(&["\"r\""]),
            present: true,
            grant_option: None,
        })
        .unwrap();
        assert_eq!(
            q.query,
            "GRANT EXECUTE ON function \"public\".\"add\"(integer, integer) TO \"r\";"
        );
    }
}
