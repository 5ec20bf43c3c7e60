//! Database modules against the real thing: the same roles run by
//! ansible-playbook (the `ansible` 12.2.0 package: community.postgresql and
//! community.mysql, psycopg2/PyMySQL on the host) on db1 and by deployer on
//! db2, two hosts running PostgreSQL 15 and MariaDB under systemd. Compared:
//! per-task changed/failed, check mode's prediction, the registered results,
//! the servers' state (databases, owners, encodings, roles and attributes,
//! comments, whether each password logs in), a second run that changes
//! nothing, and bad input failing with the collection's message.
//!
//! Needs the plain testbed (`tests/testbed/up.sh 3`, for its key), the
//! database hosts (`tests/testbed/up-systemd.sh --db 2`) and the CI venv;
//! FAILS (never skips) when any is missing. Only this binary uses the
//! database hosts; its tests touch disjoint objects (PostgreSQL and MariaDB),
//! so they run in parallel.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as Json;

use common::{deployer, repo};

const ANSIBLE_HOST: &str = "db1";
const DEPLOYER_HOST: &str = "db2";

fn ansible_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("DEPLOYER_ANSIBLE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/deployer-ci/venv/bin"));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} not found: run tests/testbed/install-deps.sh (it installs ansible==12.2.0 there)",
        bin.display()
    );
    bin
}

fn inventory() -> PathBuf {
    let p = repo().join("tests/testbed/inventory-db.yml");
    assert!(
        p.exists(),
        "{} missing: run tests/testbed/up-systemd.sh --db 2 first",
        p.display()
    );
    p
}

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/db_modules")
}

/// A shell script on a database host as root; its stdout (it must succeed).
fn root_sh(host: &str, script: &str) -> String {
    let o = Command::new("timeout")
        .arg("120")
        .arg("ssh")
        .arg("-F")
        .arg(repo().join("tests/testbed/state/db/ssh_config"))
        .arg(format!("root@{host}"))
        .arg(script)
        .output()
        .expect("ssh");
    assert!(
        o.status.success(),
        "on {host}: {script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One task's outcome: (task name, changed, failed, msg).
type Outcome = (String, bool, bool, String);

fn ansible_cmd(bin: &str, home: &Path) -> Command {
    let mut c = Command::new(ansible_bin(bin));
    c.current_dir(home)
        .env("ANSIBLE_HOME", home.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        // A loaded CI machine: an SSH hiccup is retried, not a verdict.
        .env("ANSIBLE_SSH_RETRIES", "3")
        .env("ANSIBLE_ROLES_PATH", fixture().join("roles"))
        .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
        .stdin(Stdio::null());
    c
}

/// Per task, in order, from ansible-playbook's `ansible.posix.json` callback.
fn ansible_playbook(playbook: &str, check: bool) -> (i32, Vec<Outcome>) {
    let home = tempfile::tempdir().expect("tempdir");
    let mut c = ansible_cmd("ansible-playbook", home.path());
    c.arg("-i")
        .arg(inventory())
        .args(["-l", ANSIBLE_HOST])
        .arg(fixture().join(playbook))
        .env("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json");
    if check {
        c.arg("--check");
    }
    let o = c.output().expect("ansible-playbook");
    let out = String::from_utf8_lossy(&o.stdout);
    let v: Json = serde_json::from_str(&out[out.find('{').unwrap_or(0)..]).unwrap_or_else(|e| {
        panic!(
            "ansible json ({e}): {out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let mut tasks = Vec::new();
    for play in v["plays"].as_array().into_iter().flatten() {
        for t in play["tasks"].as_array().into_iter().flatten() {
            // "role : task" in Ansible's callback; deployer names the task.
            let full = t["task"]["name"].as_str().unwrap_or("");
            let name = full.split_once(" : ").map_or(full, |(_, n)| n).to_string();
            let h = &t["hosts"][ANSIBLE_HOST];
            if h.is_null() || name == "Gathering Facts" {
                continue;
            }
            tasks.push((
                name,
                h["changed"].as_bool().unwrap_or(false),
                h["failed"].as_bool().unwrap_or(false),
                h["msg"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    (o.status.code().unwrap_or(-1), tasks)
}

/// The same from deployer's JSON events.
fn deployer_run(playbook: &str, cmd: &str) -> (i32, Vec<Outcome>) {
    let inv = inventory().display().to_string();
    let pb = fixture().join(playbook).display().to_string();
    let mut args = vec![
        cmd,
        "-i",
        &inv,
        "-l",
        DEPLOYER_HOST,
        "--format",
        "json",
        &pb,
    ];
    if cmd == "apply" {
        args.extend(["--lock-wait", "900s"]);
    }
    let o = deployer(&fixture(), &args);
    let tasks = common::events(&o.stdout)
        .into_iter()
        .filter(|e| e["event"] == "task_result")
        .map(|e| {
            (
                e["task"].as_str().unwrap_or("").to_string(),
                e["status"] == "changed",
                e["status"] == "failed",
                e["msg"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    if o.code != 0 && o.code != 2 && cmd != "apply" {
        panic!("deployer {cmd}: {}", o.all());
    }
    (o.code, tasks)
}

fn outcomes(t: &[Outcome], volatile: &[&str]) -> Vec<(String, bool, bool)> {
    t.iter()
        .filter(|(n, ..)| !volatile.contains(&n.as_str()))
        .map(|(n, c, f, _)| (n.clone(), *c, *f))
        .collect()
}

/// One differential run: reset both hosts, `prep`, then `playbook` in check
/// mode, for real, and again; `state` prints what must be identical.
struct Differential<'a> {
    prep: &'a str,
    playbook: &'a str,
    reset: &'a str,
    state: &'a str,
    volatile: &'a [&'a str],
    /// More checks of deployer's host after the first run.
    after_first: &'a dyn Fn(),
}

fn differential(d: &Differential<'_>) {
    root_sh(ANSIBLE_HOST, d.reset);
    root_sh(DEPLOYER_HOST, d.reset);
    let (code, a) = ansible_playbook(d.prep, false);
    assert_eq!(code, 0, "ansible {}: {a:?}", d.prep);
    let (code, dp) = deployer_run(d.prep, "apply");
    assert_eq!(code, 0, "deployer {}: {dp:?}", d.prep);
    assert_eq!(outcomes(&a, &[]), outcomes(&dp, &[]), "{}", d.prep);

    let before = root_sh(DEPLOYER_HOST, d.state);
    let (_, predicted) = deployer_run(d.playbook, "check");
    let (_, a_predicted) = ansible_playbook(d.playbook, true);
    assert_eq!(
        outcomes(&a_predicted, d.volatile),
        outcomes(&predicted, d.volatile),
        "{}: check mode",
        d.playbook
    );
    assert_eq!(
        root_sh(DEPLOYER_HOST, d.state),
        before,
        "{}: check mode changed the host",
        d.playbook
    );

    let (code, a1) = ansible_playbook(d.playbook, false);
    assert_eq!(code, 0, "ansible {}: {a1:?}", d.playbook);
    let (code, d1) = deployer_run(d.playbook, "apply");
    assert_eq!(code, 0, "deployer {}: {d1:?}", d.playbook);
    assert_eq!(
        outcomes(&a1, &[]),
        outcomes(&d1, &[]),
        "{}: first run",
        d.playbook
    );
    assert!(
        d1.iter().any(|t| t.1),
        "{}: the first run changed nothing: {d1:?}",
        d.playbook
    );
    assert_eq!(
        outcomes(&predicted, d.volatile),
        outcomes(&d1, d.volatile),
        "{}: check mode's prediction of the first run",
        d.playbook
    );
    assert_eq!(
        root_sh(ANSIBLE_HOST, d.state),
        root_sh(DEPLOYER_HOST, d.state),
        "{}: host state after the first run",
        d.playbook
    );
    (d.after_first)();

    let (_, a2) = ansible_playbook(d.playbook, false);
    let (code, d2) = deployer_run(d.playbook, "apply");
    assert_eq!(code, 0, "deployer {} again: {d2:?}", d.playbook);
    assert_eq!(
        outcomes(&a2, &[]),
        outcomes(&d2, &[]),
        "{}: second run",
        d.playbook
    );
    assert!(
        outcomes(&d2, d.volatile).iter().all(|t| !t.1),
        "{}: the second run changed something: {d2:?}",
        d.playbook
    );
    assert_eq!(
        root_sh(ANSIBLE_HOST, d.state),
        root_sh(DEPLOYER_HOST, d.state),
        "{}: host state after the second run",
        d.playbook
    );
}

/// Bad input: the same tasks fail under both with the same message, and
/// nothing changes on deployer's host.
fn bad_input(playbook: &str, state: &str, expect: &[(&str, &str)]) {
    let before = root_sh(DEPLOYER_HOST, state);
    let (_, a) = ansible_playbook(playbook, false);
    let (code, d) = deployer_run(playbook, "apply");
    assert_eq!(code, 0, "{playbook}: every task ignores its error: {d:?}");
    assert_eq!(
        a.len(),
        expect.len().max(a.len()),
        "{playbook}: ansible ran every task: {a:?}"
    );
    assert_eq!(outcomes(&a, &[]), outcomes(&d, &[]), "{playbook}");
    for (task, needle) in expect {
        let find = |t: &[Outcome]| {
            t.iter()
                .find(|o| o.0 == *task)
                .map(|o| (o.2, o.3.clone()))
                .unwrap_or_else(|| panic!("{playbook}: no task '{task}' in {t:?}"))
        };
        let (failed, msg) = find(&d);
        assert!(failed && msg.contains(needle), "{task}: {msg}");
        assert_eq!(find(&a).1, msg, "{task}: the collection's message");
    }
    assert_eq!(
        root_sh(DEPLOYER_HOST, state),
        before,
        "{playbook}: a failed task changed the host"
    );
}

const PG_RESET: &str = "cd /tmp; export PGAPPNAME=reset; \
     for d in $(runuser -u postgres -- psql -X -Atc \"SELECT datname FROM pg_database WHERE datname LIKE 'dpl%'\"); do \
       runuser -u postgres -- psql -X -qc \"DROP DATABASE \\\"$d\\\" WITH (FORCE)\" || exit 1; done; \
     for r in $(runuser -u postgres -- psql -X -Atc \"SELECT rolname FROM pg_roles WHERE rolname LIKE 'dpl%'\"); do \
       runuser -u postgres -- psql -X -qc \"DROP ROLE \\\"$r\\\"\" || exit 1; done; \
     rm -f /root/dpl-pg-results.json";

const PG_STATE: &str = "cd /tmp; \
     runuser -u postgres -- psql -X -At -F ' | ' -c \"SELECT rolname, rolsuper, rolcreatedb, rolcanlogin, rolinherit, rolconnlimit, rolvaliduntil, \
       CASE WHEN rolpassword IS NULL THEN 'no password' WHEN rolpassword LIKE 'md5%' OR rolname = 'dpl_scram' THEN rolpassword ELSE left(rolpassword, 14) END, \
       shobj_description(oid, 'pg_authid') FROM pg_authid WHERE rolname LIKE 'dpl%' ORDER BY 1\" \
       -c \"SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datconnlimit, \
       shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE 'dpl%' ORDER BY 1\"; \
     for up in dpl_app:app-Secret-1 dpl_ro:ro-pass-1 dpl_scram:pencil dpl_exp:exp-Secret-2 dpl_rotate:rotate-after-2 dpl_rotate:rotate-before-1; do \
       u=${up%%:*}; printf '%s login: ' \"$up\"; \
       PGPASSWORD=${up#*:} psql -X -h 127.0.0.1 -U $u -d postgres -Atc 'SELECT current_user' 2>/dev/null || echo refused; done; \
     cat /root/dpl-pg-results.json 2>/dev/null; true";

/// postgresql_user and postgresql_db.
/// Held by the tests that reset the PostgreSQL server (every `dpl%`
/// database and role): they would drop each other's.
fn pg_lock() -> std::sync::MutexGuard<'static, ()> {
    static PG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PG.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn postgresql_matches_ansible() {
    let _pg = pg_lock();
    differential(&Differential {
        prep: "pg_prep.yml",
        playbook: "pg.yml",
        reset: PG_RESET,
        state: PG_STATE,
        // The role made earlier in the run does not exist yet in check mode.
        volatile: &[
            "registered results",
            "application role again (same password)",
        ],
        after_first: &|| {
            let results = root_sh(DEPLOYER_HOST, "cat /root/dpl-pg-results.json");
            assert!(
                results.contains(
                    "CREATE USER \\\"dpl_app\\\" WITH ENCRYPTED PASSWORD %(password)s CONNECTION LIMIT 5 CREATEDB"
                ) && !results.contains("app-Secret-1"),
                "the registered queries name no password: {results}"
            );
        },
    });
    // Passwords never reach deployer's output, even the scripts' text at -vv,
    // when a role logs in with its password to change it.
    let (_, a) = ansible_playbook("pg_secret.yml", false);
    let inv = inventory().display().to_string();
    let o = deployer(
        &fixture(),
        &[
            "apply",
            "-vv",
            "--diff",
            "--format",
            "json",
            "-i",
            &inv,
            "-l",
            DEPLOYER_HOST,
            "--lock-wait",
            "900s",
            "pg_secret.yml",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    let d: Vec<(bool, bool, String)> = common::events(&o.stdout)
        .into_iter()
        .filter(|e| e["event"] == "task_result")
        .map(|e| {
            (
                e["status"] == "changed",
                e["status"] == "failed",
                e["msg"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = vec![
        (true, false, String::new()),
        (
            false,
            false,
            "ALTER USER \"dpl_app\" WITH ENCRYPTED PASSWORD %(password)s ".to_string(),
        ),
    ];
    assert_eq!(
        a.iter()
            .map(|t| (t.1, t.2, t.3.clone()))
            .collect::<Vec<_>>(),
        expected,
        "ansible-playbook"
    );
    assert_eq!(d, expected, "deployer");
    assert!(
        o.stderr.contains("psql"),
        "-vv shows the scripts: {}",
        o.all()
    );
    assert!(
        !o.all().contains("app-Secret-1"),
        "a password in deployer's output"
    );
    bad_input(
        "pg_bad.yml",
        PG_STATE,
        &[
            (
                "unknown role attribute",
                "Invalid role_attr_flags specified: FLY",
            ),
            ("no server on that port", "unable to connect to database"),
            (
                "owner that does not exist",
                "role \"dpl_nobody\" does not exist",
            ),
            (
                "encoding of an existing database",
                "Changing database encoding is not supported",
            ),
        ],
    );
}

const MY_RESET: &str = "mysql --protocol=SOCKET -N -B -e \"SELECT CONCAT('DROP DATABASE \\`', SCHEMA_NAME, '\\`;') FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'dpl%'; \
     SELECT CONCAT('DROP USER \\'', User, '\\'@\\'', Host, '\\';') FROM mysql.user WHERE User LIKE 'dpl%'\" | mysql --protocol=SOCKET && \
     rm -f /root/dpl-my-results.json";

const MY_STATE: &str = "mysql --protocol=SOCKET -N -B -e \"SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'dpl%' ORDER BY 1; \
     SELECT User, Host, plugin, authentication_string FROM mysql.user WHERE User LIKE 'dpl%' ORDER BY 1, 2\" && \
     for a in dpl_app@localhost dpl_ro@% dpl_rw@localhost dpl_extra@localhost; do mysql --protocol=SOCKET -N -B -e \"SHOW GRANTS FOR '${a%@*}'@'${a#*@}'\" 2>&1 | sort; done; \
     for up in dpl_app:app-My-Secret-1 dpl_ro:secret dpl_rw:rw-after-2 dpl_rw:rw-before-1; do printf '%s login: ' \"$up\"; \
       MYSQL_PWD=${up#*:} mysql --no-defaults --protocol=TCP -h 127.0.0.1 -u ${up%%:*} -N -B -e 'SELECT CURRENT_USER()' 2>/dev/null || echo refused; done; \
     cat /root/dpl-my-results.json 2>/dev/null; true";

/// mysql_db and mysql_user.
#[test]
fn mysql_matches_ansible() {
    let _server = MARIADB.lock().unwrap_or_else(|e| e.into_inner());
    differential(&Differential {
        prep: "my_prep.yml",
        playbook: "my.yml",
        reset: MY_RESET,
        state: MY_STATE,
        // The account made earlier in the run does not exist yet in check mode.
        volatile: &["registered results", "application account again"],
        after_first: &|| {
            let results = root_sh(DEPLOYER_HOST, "cat /root/dpl-my-results.json");
            assert!(
                results.contains("Privileges updated: granted ['UPDATE'], revoked ['INSERT']")
                    && !results.contains("app-My-Secret-1"),
                "{results}"
            );
        },
    });
    bad_input(
        "my_bad.yml",
        MY_STATE,
        &[
            (
                "privilege that does not exist",
                "Error granting privileges, invalid priv string: FLY",
            ),
            (
                "character set that does not exist",
                "error creating database: (1115",
            ),
        ],
    );
    // A missing server: both fail as the collection words it; deployer's
    // error (the client's) also names the socket.
    let (_, a) = ansible_playbook("my_bad.yml", false);
    let (_, d) = deployer_run("my_bad.yml", "apply");
    let find = |t: &[Outcome]| {
        t.iter()
            .find(|t| t.0 == "no server on that socket")
            .cloned()
            .expect("task ran")
    };
    let (a, d) = (find(&a), find(&d));
    assert!(
        a.2 && a
            .3
            .starts_with("unable to find /root/.my.cnf. Exception message: (2"),
        "{a:?}"
    );
    assert!(
        d.2 && d
            .3
            .starts_with("unable to find /root/.my.cnf. Exception message: (2002, ")
            && d.3.contains("/nonexistent/mysqld.sock"),
        "{d:?}"
    );
}

/// mysql_matches_ansible and mysql_replication_matches_ansible use the same
/// MariaDB servers (the replication test restarts them and replicates db1
/// into db2 for a while): one at a time.
static MARIADB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Each host's (task, changed, failed, msg), in order: both hosts' tasks.
type HostOutcome = (String, String, bool, bool, String);

fn repl_ansible(check: bool, extra: &str) -> Vec<HostOutcome> {
    let home = tempfile::tempdir().expect("tempdir");
    let mut c = ansible_cmd("ansible-playbook", home.path());
    c.arg("-i")
        .arg(inventory())
        .args(["-e", extra])
        .arg(fixture().join("repl.yml"))
        .env("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json");
    if check {
        c.arg("--check");
    }
    let o = c.output().expect("ansible-playbook");
    let out = String::from_utf8_lossy(&o.stdout);
    let v: Json = serde_json::from_str(&out[out.find('{').unwrap_or(0)..])
        .unwrap_or_else(|e| panic!("ansible json ({e}): {out}"));
    assert_eq!(o.status.code(), Some(0), "ansible-playbook: {out}");
    let mut tasks = Vec::new();
    for play in v["plays"].as_array().into_iter().flatten() {
        for t in play["tasks"].as_array().into_iter().flatten() {
            let full = t["task"]["name"].as_str().unwrap_or("");
            let name = full.split_once(" : ").map_or(full, |(_, n)| n).to_string();
            if name == "Gathering Facts" {
                continue;
            }
            for (host, h) in t["hosts"].as_object().into_iter().flatten() {
                tasks.push((
                    host.clone(),
                    name.clone(),
                    h["changed"].as_bool().unwrap_or(false),
                    h["failed"].as_bool().unwrap_or(false),
                    h["msg"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    tasks
}

fn repl_deployer(cmd: &str, extra: &str) -> (Vec<HostOutcome>, String) {
    let inv = inventory().display().to_string();
    let pb = fixture().join("repl.yml").display().to_string();
    let mut args = vec![cmd, "-i", &inv, "-e", extra, "--format", "json", &pb];
    if cmd == "apply" {
        // The PostgreSQL test may hold db2's deploy lock.
        args.extend(["--lock-wait", "900s"]);
    }
    let o = deployer(&fixture(), &args);
    // check exits 2 when it would change something.
    assert!(
        o.code == 0 || (cmd == "check" && o.code == 2),
        "deployer {cmd}: {}",
        o.all()
    );
    let tasks = common::events(&o.stdout)
        .into_iter()
        .filter(|e| e["event"] == "task_result")
        .map(|e| {
            (
                e["host"].as_str().unwrap_or("").to_string(),
                e["task"].as_str().unwrap_or("").to_string(),
                e["status"] == "changed",
                e["status"] == "failed",
                e["msg"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (tasks, o.all())
}

/// (host, task, changed, failed) without the message.
fn repl_outcomes(t: &[HostOutcome]) -> Vec<(String, String, bool, bool)> {
    t.iter()
        .map(|(h, n, c, f, _)| (h.clone(), n.clone(), *c, *f))
        .collect()
}

/// Binary logs and server ids on both servers, listening on the docker
/// network (restarted only when that changes).
fn repl_servers() {
    for (id, host) in [(1, ANSIBLE_HOST), (2, DEPLOYER_HOST)] {
        root_sh(
            host,
            &format!(
                "f=/etc/mysql/mariadb.conf.d/99-deployer-repl.cnf; \
                 want=$(printf '[mysqld]\\nserver-id={id}\\nlog_bin=mysql-bin\\nbind-address=0.0.0.0'); \
                 if [ \"$(cat $f 2>/dev/null)\" != \"$want\" ]; then \
                   printf '%s\\n' \"$want\" >$f && systemctl restart mariadb; fi"
            ),
        );
    }
}

/// No replica on db2, no replication account and fresh binary logs on db1.
fn repl_reset() {
    root_sh(
        ANSIBLE_HOST,
        "mysql -e \"DROP USER IF EXISTS 'repl'@'%'; RESET MASTER\"",
    );
    root_sh(
        DEPLOYER_HOST,
        "mysql -e 'STOP REPLICA; RESET REPLICA ALL; RESET MASTER'; rm -f /root/repl_result.json",
    );
}

/// The registered results, without what depends on timing and on how many
/// events replicated (positions, counters, thread states).
fn repl_results() -> Json {
    let mut v: Json = serde_json::from_str(&root_sh(DEPLOYER_HOST, "cat /root/repl_result.json"))
        .expect("results json");
    const VOLATILE: &[&str] = &[
        "Position",
        "Read_Master_Log_Pos",
        "Exec_Master_Log_Pos",
        "Relay_Log_Pos",
        "Relay_Log_Space",
        "Relay_Log_File",
        "Seconds_Behind_Master",
        "Slave_IO_State",
        "Slave_SQL_Running_State",
        "Gtid_IO_Pos",
        "Slave_DDL_Groups",
        "Slave_Non_Transactional_Groups",
        "Slave_Transactional_Groups",
    ];
    for (_, r) in v.as_object_mut().expect("results object").iter_mut() {
        if let Some(m) = r.as_object_mut() {
            // Ansible's "(traceback unavailable)" on a failed module.
            m.remove("exception");
            for k in VOLATILE {
                if m.contains_key(*k) {
                    m.insert((*k).into(), Json::String("(volatile)".into()));
                }
            }
            for q in m
                .get_mut("queries")
                .and_then(Json::as_array_mut)
                .into_iter()
                .flatten()
            {
                // The primary's binary log position in CHANGE MASTER.
                if let Some(s) = q.as_str()
                    && let Some(i) = s.find("MASTER_LOG_POS=")
                {
                    *q = Json::String(format!("{}MASTER_LOG_POS=(volatile)", &s[..i]));
                }
            }
        }
    }
    v
}

/// mysql_replication: db1 the primary, db2 its replica, the same playbook
/// under ansible-playbook and under deployer (the servers reset between).
#[test]
fn mysql_replication_matches_ansible() {
    let _server = MARIADB.lock().unwrap_or_else(|e| e.into_inner());
    repl_servers();
    let ip = root_sh(ANSIBLE_HOST, "hostname -I");
    let ip = ip.split_whitespace().next().expect("db1 address");
    let extra = format!("primary_ip={ip}");

    repl_reset();
    let a_check = repl_ansible(true, &extra);
    let (d_check, _) = repl_deployer("check", &extra);
    assert_eq!(
        repl_outcomes(&a_check),
        repl_outcomes(&d_check),
        "check mode"
    );
    assert!(
        d_check
            .iter()
            .filter(
                |t| !["replication account", "let the threads connect", "results"]
                    .contains(&t.1.as_str())
            )
            .all(|t| t.4
                == "remote module (community.mysql.mysql_replication) does not support check mode"),
        "{d_check:?}"
    );
    assert_eq!(
        root_sh(DEPLOYER_HOST, "mysql -Nse 'SHOW REPLICA STATUS' | wc -l"),
        "0\n",
        "check mode made a replica"
    );

    let a1 = repl_ansible(false, &extra);
    let a_results = repl_results();
    repl_reset();
    let (d1, out) = repl_deployer("apply", &extra);
    let d_results = repl_results();
    assert_eq!(repl_outcomes(&a1), repl_outcomes(&d1), "first run");
    assert_eq!(a_results, d_results, "registered results");
    assert!(
        !out.contains("Repl-s3cret-pw"),
        "the password in the output: {out}"
    );
    assert_eq!(
        d_results["reset_primary"]["queries"],
        serde_json::json!(["RESET MASTER"]),
        "{d_results}"
    );
    assert_eq!(
        d_results["status"]["Slave_IO_Running"], "Yes",
        "replicating: {d_results}"
    );
    // Failures as the collection words them (the server's errors).
    for task in ["change while running", "start without a primary, failing"] {
        let msg = |t: &[HostOutcome]| {
            t.iter()
                .find(|o| o.1 == task)
                .map(|o| (o.3, o.4.clone()))
                .expect("task ran")
        };
        assert!(msg(&d1).0, "{task} failed");
        assert_eq!(msg(&a1), msg(&d1), "{task}");
    }
    let unreachable = d1
        .iter()
        .find(|o| o.1 == "unreachable server")
        .expect("task ran");
    assert!(
        unreachable.3
            && unreachable
                .4
                .starts_with("unable to find /root/.my.cnf. Exception message: (200"),
        "{unreachable:?}"
    );

    // Again, from the state each run left (no replica, the account exists).
    let a2 = repl_ansible(false, &extra);
    repl_reset();
    root_sh(
        ANSIBLE_HOST,
        "mysql -e \"CREATE USER 'repl'@'%' IDENTIFIED BY 'Repl-s3cret-pw'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'\"",
    );
    let (d2, _) = repl_deployer("apply", &extra);
    assert_eq!(repl_outcomes(&a2), repl_outcomes(&d2), "second run");
    repl_reset();

    // An unknown mode is refused at load, naming the place.
    let bad = fixture().join("repl_bad.yml").display().to_string();
    let inv = inventory().display().to_string();
    let o = deployer(&fixture(), &["check", "-i", &inv, &bad]);
    assert_ne!(o.code, 0);
    assert!(
        o.all().contains("repl_bad.yml:") && o.all().contains("mode must be one of"),
        "{}",
        o.all()
    );
}

const PGP_STATE: &str = "cd /tmp; \
     runuser -u postgres -- psql -X -At -d dpl_privs -F ' | ' \
       -c \"SELECT n.nspname, c.relname, c.relacl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ('books','a','b','seq1') ORDER BY 1, 2\" \
       -c \"SELECT nspname, nspacl FROM pg_namespace WHERE nspname = 'app'\" \
       -c \"SELECT proname, proacl FROM pg_proc WHERE proname = 'add'\" \
       -c \"SELECT datname, datacl FROM pg_database WHERE datname = 'dpl_privs'\" 2>&1; \
     cat /root/dpl-pgp-results.json 2>/dev/null; rm -f /root/dpl-pgp-results.json; true";

/// postgresql_privs: the same ACLs on tables (one, every one of a schema),
/// a sequence, a function, a schema and the database, `changed` and
/// `queries` as the collection's, with grant options given and taken back
/// and a privilege revoked from PUBLIC; a role or privilege that does not
/// exist fails with the collection's message and changes nothing.
#[test]
fn postgresql_privs_match_ansible() {
    let _pg = pg_lock();
    differential(&Differential {
        prep: "pgp_prep.yml",
        playbook: "pgp.yml",
        reset: PG_RESET,
        state: PGP_STATE,
        // Check mode rolls the first grant back: the second still changes.
        volatile: &["registered results", "the same again"],
        after_first: &|| {},
    });
    bad_input(
        "pgp_bad.yml",
        PGP_STATE,
        &[
            (
                "a role that does not exist",
                "Role 'dpl_nobody' does not exist",
            ),
            (
                "a privilege that does not exist",
                "Invalid privileges specified: frozenset({'FLY'})",
            ),
        ],
    );
}
