//! Backups and restore on the real testbed, with the real PostgreSQL image
//! built from Debian's packages (tests/testbed/build-service-images.sh):
//! rows made, backed up through the Docker API into the host's backup
//! directory, broken, restored, compared by row count and a table checksum;
//! volumes and directories as tars; and the bad input the feature must
//! refuse without touching live data. Needs `tests/testbed/up.sh`.

mod common;

use common::*;
use std::path::Path;

const PG_IMAGE: &str = "deployer-postgresql:15-bookworm";

fn ensure_service_images() {
    let o = std::process::Command::new(repo().join("tests/testbed/build-service-images.sh"))
        .output()
        .expect("build-service-images.sh");
    assert!(
        o.status.success(),
        "building the service images: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A PostgreSQL container (database `app`, role `app`), ready for queries.
struct Pg {
    name: String,
}

impl Pg {
    fn start(name: &str) -> Pg {
        ensure_service_images();
        let name = scoped(name);
        let _ = docker(&["rm", "-f", "-v", &name]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "-e",
            "POSTGRES_USER=app",
            "-e",
            "POSTGRES_DB=app",
            "-e",
            "POSTGRES_PASSWORD=testbed-only",
            PG_IMAGE,
        ]);
        let pg = Pg { name };
        for _ in 0..120 {
            let o = std::process::Command::new("docker")
                .args(["exec", &pg.name, "pg_isready", "-U", "app", "-d", "app"])
                .output()
                .expect("docker exec");
            if o.status.success() {
                return pg;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!(
            "{} did not become ready: {}",
            pg.name,
            docker(&["logs", &pg.name])
        );
    }

    /// psql in the container (as `app`); stdout, trimmed. Panics on error.
    fn sql(&self, db: &str, sql: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("docker")
            .args([
                "exec",
                "-i",
                &self.name,
                "psql",
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "app",
                "-d",
                db,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .expect("write sql");
        let o = child.wait_with_output().expect("psql");
        assert!(
            o.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Row count and an md5 over every row of `items`, in id order.
    fn fingerprint(&self, db: &str) -> String {
        self.sql(
            db,
            "SELECT count(*) || ' ' || md5(string_agg(id || ':' || name || ':' || email, ',' ORDER BY id)) FROM items;",
        )
    }

    fn fill(&self, rows: u32) {
        self.sql(
            "app",
            &format!(
                "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL);\n\
                 INSERT INTO items (name, email) SELECT 'user ' || i || ' ' || md5(i::text) || md5((i * 7)::text), \
                 'u' || i || '@example.com' FROM generate_series(1, {rows}) AS i;\n"
            ),
        );
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

fn playbook(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write playbook");
    path.display().to_string()
}

fn backups_json(dir: &Path, host: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let inv = inv();
    let mut args = vec!["backups", "-i", &inv, "-l", host, "--format", "json"];
    args.extend_from_slice(extra);
    let o = deployer(dir, &args);
    assert_eq!(o.code, 0, "{}", o.all());
    serde_json::from_str::<serde_json::Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn of_project<'a>(list: &'a [serde_json::Value], project: &str) -> Vec<&'a serde_json::Value> {
    list.iter().filter(|m| m["project"] == project).collect()
}

/// Create rows, back up, break the data, restore, and the table is back:
/// same row count, same checksum. The backup is a 0600 file in 0700
/// directories with a matching sha256, copied to the control machine too;
/// without --yes nothing changes.
#[test]
fn backup_break_restore_gives_the_same_rows_back() {
    let pg = Pg::start("bk-pg-restore");
    pg.fill(20_000);
    let before = pg.fingerprint("app");
    assert!(before.starts_with("20000 "), "{before}");
    let dir = project(&[]);
    let project_name = format!("{}-restore", testbed_id());
    let pb = playbook(
        dir.path(),
        "backup.yml",
        &format!(
            "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - name: back up the app database\n      deployer.backup.postgres:\n        container: {}\n        database: app\n        login_user: app\n        project: {project_name}\n        copy_to_control: control-backups\n",
            pg.name
        ),
    );
    let inv = inv();
    let o = deployer(dir.path(), &["apply", "-i", &inv, &pb]);
    assert_eq!(o.code, 0, "{}", o.all());
    let list = backups_json(dir.path(), "tb1", &[]);
    let mine = of_project(&list, &project_name);
    assert_eq!(mine.len(), 1, "{list:?}");
    let m = mine[0];
    let id = m["id"].as_str().expect("id").to_string();
    let file = m["file"].as_str().expect("file").to_string();
    assert_eq!(
        file,
        format!("/var/backups/deployer/{project_name}/app/{id}.dump")
    );
    // On the host: modes, owner, and the sum of the manifest.
    let seen = on_host(
        "tb1",
        &format!(
            "stat -c '%a %U' /var/backups/deployer /var/backups/deployer/{project_name} /var/backups/deployer/{project_name}/app {file} /var/backups/deployer/{project_name}/app/{id}.json; sha256sum {file}; head -c 5 {file}; echo; ls -A /var/backups/deployer/{project_name}/app"
        ),
    );
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        &lines[..5],
        &["700 root", "700 root", "700 root", "600 root", "600 root"],
        "{seen}"
    );
    assert_eq!(
        lines[5].split_whitespace().next(),
        m["sha256"].as_str(),
        "{seen}"
    );
    assert_eq!(lines[6], "PGDMP", "a pg_dump custom-format file: {seen}");
    assert_eq!(lines.len(), 9, "only the dump and its manifest: {seen}");
    assert!(m["size"].as_u64().expect("size") > 100_000, "{m}");
    // copy_to_control: the same bytes on this machine, 0600 in 0700
    // directories, its manifest beside it.
    {
        use std::os::unix::fs::PermissionsExt;
        let local_dir = dir
            .path()
            .join("control-backups/tb1")
            .join(&project_name)
            .join("app");
        let local = local_dir.join(format!("{id}.dump"));
        let bytes = std::fs::read(&local).expect("the control copy");
        let sum = std::process::Command::new("sha256sum")
            .arg(&local)
            .output()
            .expect("sha256sum");
        assert_eq!(
            String::from_utf8_lossy(&sum.stdout)
                .split_whitespace()
                .next(),
            m["sha256"].as_str()
        );
        assert_eq!(bytes.len() as u64, m["size"].as_u64().expect("size"));
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&local), 0o600);
        assert_eq!(mode(&local_dir), 0o700);
        assert_eq!(mode(&dir.path().join("control-backups")), 0o700);
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(local_dir.join(format!("{id}.json"))).expect("manifest"),
        )
        .expect("json");
        assert_eq!(manifest["sha256"], m["sha256"]);
        assert_eq!(std::fs::read_dir(&local_dir).expect("ls").count(), 2);
    }

    // Break the data.
    pg.sql(
        "app",
        "DELETE FROM items WHERE id % 3 = 0; UPDATE items SET email = 'broken' WHERE id < 100;",
    );
    let broken = pg.fingerprint("app");
    assert_ne!(broken, before);

    // Without --yes: the plan, exit 2, nothing changed.
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb1", "--backup", &id],
    );
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(
        o.stdout.contains("verify") && o.stdout.contains("--yes"),
        "{}",
        o.all()
    );
    assert_eq!(pg.fingerprint("app"), broken);

    // With --yes: the rows are back.
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb1", "--backup", &id, "--yes"],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stdout.contains("restored backup"), "{}", o.all());
    assert_eq!(pg.fingerprint("app"), before);
    // No temporary or previous copy is left behind.
    let dbs = pg.sql("postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'app%';");
    assert_eq!(dbs, "app");

    // --into: a second copy next to the live one, the live one untouched.
    pg.sql("app", "DELETE FROM items WHERE id > 10;");
    let o = deployer(
        dir.path(),
        &[
            "restore", "-i", &inv, "-l", "tb1", "--backup", &id, "--into", "app_copy", "--yes",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(pg.fingerprint("app_copy"), before);
    assert!(pg.fingerprint("app").starts_with("10 "));
    on_host(
        "tb1",
        &format!("rm -rf /var/backups/deployer/{project_name}"),
    );
}

/// Each bad input is a clear error naming host, container and path, and the
/// live data stays as it was.
#[test]
fn bad_input_is_refused_naming_host_container_and_path() {
    let pg = Pg::start("bk-pg-bad");
    pg.fill(20_000);
    let before = pg.fingerprint("app");
    let dir = project(&[]);
    let inv = inv();
    let project_name = format!("{}-bad", testbed_id());
    let task = |container: &str, db: &str, dest: &str| {
        format!(
            "- hosts: tb2\n  gather_facts: false\n  tasks:\n    - deployer.backup.postgres:\n        container: {container}\n        database: {db}\n        login_user: app\n        project: {project_name}\n        dest: {dest}\n"
        )
    };
    // A container that is not running.
    let stopped = scoped("bk-pg-stopped");
    let _ = docker(&["rm", "-f", &stopped]);
    docker_ok(&["create", "--name", &stopped, PG_IMAGE]);
    let pb = playbook(
        dir.path(),
        "stopped.yml",
        &task(&stopped, "app", "/var/backups/deployer"),
    );
    let o = deployer(dir.path(), &["apply", "-i", &inv, &pb]);
    let _ = docker(&["rm", "-f", &stopped]);
    assert_ne!(o.code, 0);
    assert!(
        o.all()
            .contains(&format!("host tb2: container '{stopped}' is not running")),
        "{}",
        o.all()
    );
    // A database that does not exist: checked before anything is written
    // (check mode says it too).
    let pb = playbook(
        dir.path(),
        "nodb.yml",
        &task(&pg.name, "nosuch", "/var/backups/deployer"),
    );
    for cmd in ["check", "apply"] {
        let o = deployer(dir.path(), &[cmd, "-i", &inv, &pb]);
        assert_ne!(o.code, 0);
        assert!(
            o.all().contains(&format!(
                "host tb2: container '{}': database 'nosuch' does not exist; nothing was written to /var/backups/deployer/{project_name}/nosuch",
                pg.name
            )),
            "{cmd}: {}",
            o.all()
        );
    }
    // A full disk: the host's /dev/shm (a 64 MB tmpfs) filled up to 64 KB.
    let full = format!("/dev/shm/{project_name}");
    on_host(
        "tb2",
        &format!(
            "mkdir -p {full}; avail=$(df -k --output=avail /dev/shm | tail -1); dd if=/dev/zero of=/dev/shm/filler bs=1k count=$((avail - 64)) 2>/dev/null"
        ),
    );
    let pb = playbook(dir.path(), "full.yml", &task(&pg.name, "app", &full));
    let o = deployer(dir.path(), &["apply", "-i", &inv, &pb]);
    let left = on_host(
        "tb2",
        &format!("find {full} -mindepth 1 | sort; rm -f /dev/shm/filler; rm -rf {full}"),
    );
    assert_ne!(o.code, 0);
    let text = o.all();
    assert!(
        text.contains("host tb2: writing ")
            && text.contains(&format!("{full}/{project_name}/app/app-"))
            && text.contains("No space left on device")
            && text.contains(&format!("nothing was kept at {full}/{project_name}/app/"))
            && text.contains(&format!("(container '{}')", pg.name)),
        "{text}"
    );
    // Only the (empty) directories: no partial file, no staging directory.
    assert_eq!(
        left.trim(),
        format!("{full}/{project_name}\n{full}/{project_name}/app"),
        "{left}"
    );

    // A good backup, then a damaged file: restore refuses before touching anything.
    let pb = playbook(
        dir.path(),
        "good.yml",
        &task(&pg.name, "app", "/var/backups/deployer"),
    );
    let o = deployer(dir.path(), &["apply", "-i", &inv, &pb]);
    assert_eq!(o.code, 0, "{}", o.all());
    let list = backups_json(dir.path(), "tb2", &[]);
    let mine = of_project(&list, &project_name);
    let id = mine[0]["id"].as_str().expect("id").to_string();
    let file = mine[0]["file"].as_str().expect("file").to_string();
    on_host("tb2", &format!("printf x >> {file}"));
    pg.sql("app", "DELETE FROM items WHERE id > 5;");
    let changed = pg.fingerprint("app");
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb2", "--backup", &id, "--yes"],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains(&format!(
            "host tb2: backup {id} at {file} fails its checksum"
        )) && o.stderr.contains(&format!(
            "database 'app' in container '{}' on tb2 is untouched",
            pg.name
        )),
        "{}",
        o.all()
    );
    assert_eq!(pg.fingerprint("app"), changed);
    assert_ne!(changed, before);
    // An unknown id, a malformed one, and more than one host.
    let o = deployer(
        dir.path(),
        &[
            "restore",
            "-i",
            &inv,
            "-l",
            "tb2",
            "--backup",
            "app-19990101T000000Z",
            "--yes",
        ],
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("host tb2: no backup 'app-19990101T000000Z' in /var/backups/deployer"),
        "{}",
        o.all()
    );
    let o = deployer(
        dir.path(),
        &[
            "restore",
            "-i",
            &inv,
            "-l",
            "tb2",
            "--backup",
            "../../etc/passwd",
            "--yes",
        ],
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("backup id '../../etc/passwd' is malformed"),
        "{}",
        o.all()
    );
    let o = deployer(
        dir.path(),
        &[
            "restore", "-i", &inv, "-l", "tb1:tb2", "--backup", &id, "--yes",
        ],
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("restore works on one host"),
        "{}",
        o.all()
    );
    assert_eq!(pg.fingerprint("app"), changed);
    on_host(
        "tb2",
        &format!("rm -rf /var/backups/deployer/{project_name}"),
    );
}

/// A named volume (read through the container that mounts it) and a host
/// directory, each kept as a tar with its manifest, changed, then restored
/// (under the deploy lock: refused while another run holds it).
#[test]
fn volumes_and_directories_are_kept_as_tars() {
    ensure_test_image();
    let vol = scoped("bk-uploads");
    let holder = scoped("bk-uploads-holder");
    let _ = docker(&["rm", "-f", &holder]);
    let _ = docker(&["volume", "rm", "-f", &vol]);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &holder,
        "-v",
        &format!("{vol}:/uploads"),
        TEST_IMAGE,
        "sh",
        "-c",
        "echo hello > /uploads/a.txt; mkdir /uploads/sub; echo deep > /uploads/sub/b.txt; sleep 600",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let dir = project(&[]);
    let inv = inv();
    let project_name = format!("{}-vol", testbed_id());
    on_host(
        "tb3",
        &format!("rm -rf /var/backups/deployer/{project_name} /srv/bk-files"),
    );
    on_host(
        "tb3",
        "mkdir -p /srv/bk-files/x && echo one > /srv/bk-files/x/f.txt",
    );
    let pb = playbook(
        dir.path(),
        "vol.yml",
        &format!(
            "- hosts: tb3\n  gather_facts: false\n  tasks:\n    - deployer.backup.volume:\n        volume: {vol}\n        name: uploads\n        project: {project_name}\n    - deployer.backup.volume:\n        path: /srv/bk-files\n        project: {project_name}\n"
        ),
    );
    let o = deployer(dir.path(), &["apply", "-i", &inv, &pb]);
    assert_eq!(o.code, 0, "{}", o.all());
    let list = backups_json(dir.path(), "tb3", &[]);
    let mine = of_project(&list, &project_name);
    assert_eq!(mine.len(), 2, "{list:?}");
    let by_name = |n: &str| {
        *mine
            .iter()
            .find(|m| m["name"] == n)
            .unwrap_or_else(|| panic!("no backup {n}: {mine:?}"))
    };
    let up = by_name("uploads");
    let files = by_name("bk-files");
    assert_eq!(
        (up["kind"].as_str(), up["container"].as_str()),
        (Some("volume"), Some(holder.as_str()))
    );
    let listing = on_host(
        "tb3",
        &format!(
            "tar -tf {} | sort; echo ---; tar -tf {} | sort; echo ---; sha256sum {} | cut -d' ' -f1; stat -c %a {}",
            up["file"].as_str().expect("file"),
            files["file"].as_str().expect("file"),
            files["file"].as_str().expect("file"),
            files["file"].as_str().expect("file"),
        ),
    );
    let parts: Vec<&str> = listing.split("---\n").collect();
    assert!(
        parts[0].contains("uploads/a.txt") && parts[0].contains("uploads/sub/b.txt"),
        "{listing}"
    );
    assert!(parts[1].contains("./x/f.txt"), "{listing}");
    let tail: Vec<&str> = parts[2].lines().collect();
    assert_eq!(
        tail,
        vec![files["sha256"].as_str().expect("sum"), "600"],
        "{listing}"
    );
    // The volume and the directory change (a file edited, one removed, one
    // added), then each backup is restored: exactly the backed-up files again.
    let listing_of_volume = |c: &str| {
        docker(&[
            "exec",
            c,
            "sh",
            "-c",
            "cd /uploads && find . | sort && cat a.txt && (cat sub/b.txt 2>/dev/null || echo no-b)",
        ])
    };
    let before_vol = listing_of_volume(&holder);
    docker_ok(&[
        "exec",
        &holder,
        "sh",
        "-c",
        "echo changed > /uploads/a.txt; rm -r /uploads/sub; echo new > /uploads/c.txt",
    ]);
    assert_ne!(listing_of_volume(&holder), before_vol);
    let before_dir = "./x\n./x/f.txt\none\n";
    on_host(
        "tb3",
        "echo two > /srv/bk-files/x/f.txt; echo extra > /srv/bk-files/y.txt",
    );
    let dir_listing = || {
        on_host(
            "tb3",
            "cd /srv/bk-files && find . -mindepth 1 | sort && cat x/f.txt",
        )
    };
    // Without --yes: the plan, nothing changed.
    let id = up["id"].as_str().expect("id");
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb3", "--backup", id],
    );
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(
        o.stdout.contains(&format!("inside volume '{vol}'")),
        "{}",
        o.all()
    );
    assert!(listing_of_volume(&holder).contains("./c.txt"));
    // A deploy lock held by another run: refused, nothing changed.
    let sd = format!(
        "/var/lib/deployer/{}",
        dir.path().file_name().expect("name").to_string_lossy()
    );
    let ghost = r#"{"run_id":"20260101T000000Z-dead","who":"ghost@elsewhere","since":"2026-01-01T00:00:00Z","revision":null,"dirty":false,"command":"deployer apply site.yml","message":null,"pid":4242}"#;
    on_host(
        "tb3",
        &format!("mkdir -p {sd} && echo '{ghost}' > {sd}/lock"),
    );
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb3", "--backup", id, "--yes"],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr
            .contains("host tb3: the deploy lock is held by ghost@elsewhere")
            && o.stderr.contains("nothing was restored"),
        "{}",
        o.all()
    );
    assert!(listing_of_volume(&holder).contains("./c.txt"));
    on_host("tb3", &format!("rm -f {sd}/lock"));
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb3", "--backup", id, "--yes"],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stdout.contains(&format!("into volume '{vol}'")),
        "{}",
        o.all()
    );
    assert_eq!(listing_of_volume(&holder), before_vol);
    // The lock was given back.
    assert_eq!(
        on_host("tb3", &format!("test ! -e {sd}/lock && echo free")).trim(),
        "free"
    );
    // The host directory.
    let fid = files["id"].as_str().expect("id");
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb3", "--backup", fid, "--yes"],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(dir_listing(), before_dir);
    // No temporary or previous copy left next to it.
    assert_eq!(on_host("tb3", "ls -A /srv | grep bk-files"), "bk-files\n");
    // A damaged volume backup is refused before anything changes.
    on_host(
        "tb3",
        &format!("printf x >> {}", up["file"].as_str().expect("file")),
    );
    docker_ok(&["exec", &holder, "sh", "-c", "echo after > /uploads/a.txt"]);
    let o = deployer(
        dir.path(),
        &["restore", "-i", &inv, "-l", "tb3", "--backup", id, "--yes"],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("fails its checksum")
            && o.stderr
                .contains(&format!("volume '{vol}' on tb3 is untouched")),
        "{}",
        o.all()
    );
    assert!(listing_of_volume(&holder).contains("after"));
    let _ = docker(&["rm", "-f", &holder]);
    let _ = docker(&["volume", "rm", "-f", &vol]);
    on_host(
        "tb3",
        &format!("rm -rf /var/backups/deployer/{project_name} /srv/bk-files {sd}"),
    );
}

/// An inventory of one testbed host, as `inventory/<env>/hosts.yml` of a
/// project laid out by environment.
fn env_inventory(dir: &Path, env: &str, host: &str) -> String {
    let testbed = std::fs::read_to_string(testbed_inventory()).expect("testbed inventory");
    let line = testbed
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with(&format!("{host}: {{ansible_host"))
        })
        .unwrap_or_else(|| panic!("{host} not in the testbed inventory"));
    let state = repo().join("tests/testbed/state");
    let text = format!(
        "all:\n  hosts:\n    {}\n  vars:\n    ansible_user: deploy\n    ansible_become: true\n    ansible_ssh_private_key_file: {}\n    ansible_ssh_common_args: \"-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes\"\n    deployer_environment: {env}\n",
        line.trim(),
        state.join("id_ed25519").display(),
        state.join("known_hosts").display(),
    );
    let path = dir.join("inventory").join(env);
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::write(path.join("hosts.yml"), text).expect("write inventory");
    path.display().to_string()
}

/// Production (tb1) and staging (tb2), each with its own PostgreSQL: staging
/// refreshed from production's newest backup shows production's rows, every
/// one anonymised; production is untouched.
#[test]
fn staging_refreshed_from_production_shows_anonymised_data_only() {
    let prod = Pg::start("bk-pg-prod");
    prod.fill(5_000);
    let staging = Pg::start("bk-pg-staging");
    staging.sql(
        "app",
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL);\n\
         INSERT INTO items (name, email) VALUES ('old staging row', 'old@staging.invalid');\n",
    );
    let prod_before = prod.fingerprint("app");
    let dir = project(&[(
        "anonymise.sql",
        "UPDATE items SET name = 'person ' || id, email = 'user' || id || '@staging.invalid';\n",
    )]);
    let p_inv = env_inventory(dir.path(), "production", "tb1");
    let s_inv = env_inventory(dir.path(), "staging", "tb2");
    let project_name = format!("{}-env", testbed_id());
    let pb = playbook(
        dir.path(),
        "backup.yml",
        &format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - deployer.backup.postgres:\n        container: {}\n        database: app\n        login_user: app\n        project: {project_name}\n",
            prod.name
        ),
    );
    let o = deployer(dir.path(), &["apply", "-i", &p_inv, &pb]);
    assert_eq!(o.code, 0, "{}", o.all());
    let args = |yes: bool| {
        let mut v = vec![
            "refresh-staging".to_string(),
            "--production".into(),
            p_inv.clone(),
            "--staging".into(),
            s_inv.clone(),
            "--database".into(),
            "app".into(),
            "--project".into(),
            project_name.clone(),
            "--container".into(),
            staging.name.clone(),
            "--anonymise".into(),
            "anonymise.sql".into(),
        ];
        if yes {
            v.push("--yes".into());
        }
        v
    };
    let plan: Vec<String> = args(false);
    let o = deployer(
        dir.path(),
        &plan.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(
        o.stdout.contains("run anonymise.sql in that new database"),
        "{}",
        o.all()
    );
    assert_eq!(staging.sql("app", "SELECT count(*) FROM items;"), "1");
    let go: Vec<String> = args(true);
    let o = deployer(
        dir.path(),
        &go.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(staging.sql("app", "SELECT count(*) FROM items;"), "5000");
    assert_eq!(
        staging.sql(
            "app",
            "SELECT count(*) FROM items WHERE email NOT LIKE '%@staging.invalid' OR name NOT LIKE 'person %';"
        ),
        "0"
    );
    assert_eq!(
        staging.sql(
            "app",
            "SELECT count(*) FROM items WHERE email LIKE '%@example.com';"
        ),
        "0"
    );
    assert_eq!(prod.fingerprint("app"), prod_before);
    // The same host as production and staging is refused.
    let o = deployer(
        dir.path(),
        &[
            "refresh-staging",
            "--production",
            &p_inv,
            "--staging",
            &p_inv,
            "--database",
            "app",
            "--anonymise",
            "anonymise.sql",
            "--yes",
        ],
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("refusing to refresh production from itself"),
        "{}",
        o.all()
    );
    on_host(
        "tb1",
        &format!("rm -rf /var/backups/deployer/{project_name}"),
    );
}

/// The Makefile's targets are one deployer command each; ENV picks the
/// inventory (prod: inventory/production/hosts.yml), and a missing ENV or ROLE stops make
/// before anything runs.
#[test]
fn makefile_targets_call_deployer() {
    let make = |args: &[&str]| {
        let o = std::process::Command::new("make")
            .arg("-n")
            .args(args)
            .current_dir(repo())
            .output()
            .expect("make (tests/testbed/install-deps.sh installs it)");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(make(&["lint"]).1, "deployer lint");
    assert_eq!(
        make(&["check", "ROLE=plane", "ENV=prod"]).1,
        "deployer check -i inventory/production/hosts.yml --diff --tags plane playbooks/site.yml"
    );
    assert_eq!(
        make(&["deploy-role", "ROLE=plane", "ENV=staging"]).1,
        "deployer apply -i inventory/staging/hosts.yml --tags plane playbooks/site.yml"
    );
    assert_eq!(
        make(&["rollback", "ENV=prod"]).1,
        "deployer rollback -i inventory/production/hosts.yml"
    );
    assert_eq!(
        make(&["backup", "ENV=prod"]).1,
        "deployer apply -i inventory/production/hosts.yml playbooks/backup.yml"
    );
    let (ok, _, err) = make(&["deploy-role", "ROLE=plane"]);
    assert!(!ok && err.contains("ENV is required"), "{err}");
    let (ok, _, err) = make(&["check", "ENV=prod"]);
    assert!(!ok && err.contains("ROLE is required"), "{err}");
}

/// A release takes a backup, then its migration deletes rows and fails:
/// `rollback --with-data` puts the release's files back and restores the
/// backup taken during it (with --check: the plan, nothing changed), found in
/// the backup module's own `dest:` with `--backup-dir`; a rollback of a release
/// without a backup is refused with --with-data.
#[test]
fn failed_migration_then_rollback_with_data_gives_the_rows_back() {
    let pg = Pg::start("bk-pg-rollback");
    pg.fill(2_000);
    let before = pg.fingerprint("app");
    let project_name = format!("{}-wd", testbed_id());
    let srv = format!("/srv/{project_name}");
    // Kept outside the default directory: rollback finds it with --backup-dir.
    let kept = format!("/var/backups/{project_name}-kept");
    on_host("tb1", &format!("rm -rf {kept} {srv}"));
    let release1 = format!(
        "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - file: {{path: {srv}, state: directory, mode: '0755'}}\n    - copy: {{dest: {srv}/version, content: \"v1\\n\"}}\n"
    );
    let release2 = format!(
        "- hosts: tb1\n  gather_facts: false\n  tasks:\n    - name: back up before the migration\n      deployer.backup.postgres:\n        container: {pg}\n        database: app\n        login_user: app\n        project: {project_name}\n        dest: {kept}\n    - copy: {{dest: {srv}/version, content: \"v2\\n\"}}\n    - name: migrate\n      command:\n        argv: [docker, exec, {pg}, psql, -X, -q, -U, app, -d, app, -v, ON_ERROR_STOP=1, -c, 'DELETE FROM items WHERE id > 100', -c, 'ALTER TABLE nosuch ADD COLUMN x int']\n",
        pg = pg.name
    );
    let dir = project(&[("r1.yml", &release1), ("r2.yml", &release2)]);
    let inv = inv();
    let sd = format!(
        "/var/lib/deployer/{}",
        dir.path().file_name().expect("name").to_string_lossy()
    );
    let o = deployer(dir.path(), &["apply", "-i", &inv, "r1.yml"]);
    assert_eq!(o.code, 0, "{}", o.all());
    let o = deployer(dir.path(), &["apply", "-i", &inv, "r2.yml"]);
    assert_ne!(o.code, 0, "the migration fails: {}", o.all());
    assert!(o.all().contains("failed: [tb1] migrate"), "{}", o.all());
    let broken = pg.fingerprint("app");
    assert!(broken.starts_with("100 "), "{broken}");
    assert_eq!(on_host("tb1", &format!("cat {srv}/version")), "v2\n");
    // The backup names the release it was taken during.
    let list = backups_json(dir.path(), "tb1", &["--dir", &kept]);
    let mine = of_project(&list, &project_name);
    assert_eq!(mine.len(), 1, "{list:?}");
    let id = mine[0]["id"].as_str().expect("id").to_string();
    let release = mine[0]["release"].as_str().expect("release").to_string();
    let releases = deployer(dir.path(), &["releases", "-i", &inv, "-l", "tb1"]);
    assert!(releases.stdout.contains(&release), "{}", releases.all());
    // Not in the default directory: refused, naming where it looked.
    let o = deployer(
        dir.path(),
        &[
            "rollback",
            "-i",
            &inv,
            "-l",
            "tb1",
            "--with-data",
            "--check",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("--backup-dir"), "{}", o.all());
    // --check: the plan, nothing changed.
    let o = deployer(
        dir.path(),
        &[
            "rollback",
            "-i",
            &inv,
            "-l",
            "tb1",
            "--with-data",
            "--backup-dir",
            &kept,
            "--check",
        ],
    );
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(
        o.all()
            .contains(&format!("--with-data: would restore backup {id}")),
        "{}",
        o.all()
    );
    assert_eq!(pg.fingerprint("app"), broken);
    assert_eq!(on_host("tb1", &format!("cat {srv}/version")), "v2\n");
    // The rollback: files back, then the data.
    let o = deployer(
        dir.path(),
        &[
            "rollback",
            "-i",
            &inv,
            "-l",
            "tb1",
            "--with-data",
            "--backup-dir",
            &kept,
        ],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.all().contains(&format!("restored backup {id}")),
        "{}",
        o.all()
    );
    assert_eq!(on_host("tb1", &format!("cat {srv}/version")), "v1\n");
    assert_eq!(pg.fingerprint("app"), before);
    // The newest release is now the rollback, which took no backup:
    // --with-data refuses, nothing changes.
    pg.sql("app", "DELETE FROM items WHERE id > 1000;");
    let o = deployer(
        dir.path(),
        &[
            "rollback",
            "-i",
            &inv,
            "-l",
            "tb1",
            "--with-data",
            "--backup-dir",
            &kept,
        ],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr
            .contains("rollback --with-data refused, nothing was changed")
            && o.stderr.contains(&format!(
                "no backup in /var/backups/deployer, {kept} was taken during the release(s) to undo"
            )),
        "{}",
        o.all()
    );
    assert_eq!(on_host("tb1", &format!("cat {srv}/version")), "v1\n");
    assert!(pg.fingerprint("app").starts_with("1000 "));
    on_host("tb1", &format!("rm -rf {kept} {srv} {sd}"));
}

/// The PostgreSQL role backs up every application database before an apply
/// that changes the server (its compose file or environment), and only then:
/// nothing on the first install (no container yet), nothing on an apply
/// without change, one backup naming the apply's release when the server's
/// settings change, taken before the container is recreated. Deployed with
/// `make deploy-role ROLE=postgresql ENV=staging` on a project laid out by
/// environment (inventory/staging/ is a testbed host).
#[test]
fn postgresql_role_backs_up_before_a_change_of_the_server() {
    ensure_service_images();
    let name = scoped("bkrole");
    let network = format!("{name}_backend");
    let base = format!("/srv/{name}");
    let cleanup = || {
        let _ = docker(&["rm", "-f", "-v", &format!("{name}_postgresql")]);
        let _ = docker(&["volume", "rm", "-f", &format!("{name}_postgresql_data")]);
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &network])
            .output();
        on_host(
            "tb2",
            &format!("rm -rf {base} /var/backups/deployer/{name}"),
        );
    };
    cleanup();
    docker_ok(&["network", "create", &network]);
    let vars = |mem: &str| {
        format!(
            "project_name: {name}\nproject_base_dir: {base}\npostgresql_image: {PG_IMAGE}\npostgresql_password: testbed-only\ndocker_network_backend: {network}\npostgresql_healthcheck_interval: 1s\npostgresql_healthcheck_retries: 120\npostgresql_mem_limit: {mem}\npostgresql_databases:\n  - {{name: app, user: app}}\n"
        )
    };
    // The project laid out by environment, deployed with the Makefile's
    // `make deploy-role ROLE=postgresql ENV=staging` (inventory/staging/).
    let dir = project(&[
        (
            "playbooks/site.yml",
            "- hosts: all\n  gather_facts: false\n  roles:\n    - {role: postgresql, tags: [postgresql]}\n",
        ),
        ("ansible.cfg", "[defaults]\nroles_path = roles\n"),
    ]);
    env_inventory(dir.path(), "staging", "tb2");
    let set_vars = |mem: &str| {
        std::fs::create_dir_all(dir.path().join("inventory/staging/group_vars")).expect("mkdir");
        std::fs::write(
            dir.path().join("inventory/staging/group_vars/all.yml"),
            vars(mem),
        )
        .expect("group_vars");
    };
    let make_deploy = || {
        let o = std::process::Command::new("make")
            .arg("-s")
            .arg("-f")
            .arg(repo().join("Makefile"))
            .args(["deploy-role", "ROLE=postgresql", "ENV=staging"])
            .arg(format!("DEPLOYER={}", env!("CARGO_BIN_EXE_deployer")))
            .current_dir(dir.path())
            .output()
            .expect("make");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let o = std::process::Command::new("cp")
        .arg("-r")
        .arg(repo().join("roles"))
        .arg(dir.path())
        .output()
        .expect("cp");
    assert!(o.status.success());
    set_vars("1G");
    let mine = |d: &Path| {
        of_project(&backups_json(d, "tb2", &[]), &name)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    // The first install: no container to back up yet.
    let o = make_deploy();
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stdout
            .contains("nothing to back up on tb2 (if_present): container"),
        "{}",
        o.all()
    );
    assert!(mine(dir.path()).is_empty());
    let c = format!("{name}_postgresql");
    let psql = |sql: &str| {
        docker(&[
            "exec", &c, "psql", "-X", "-q", "-t", "-A", "-U", "postgres", "-d", "app", "-c", sql,
        ])
    };
    psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 500);");
    // No change: no backup.
    let o = make_deploy();
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(mine(dir.path()).is_empty(), "{}", o.all());
    // A change of the server: the backup first, then the new container.
    set_vars("768M");
    let o = make_deploy();
    assert_eq!(o.code, 0, "{}", o.all());
    let list = mine(dir.path());
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "app");
    assert!(list[0]["release"].as_str().is_some_and(|r| !r.is_empty()));
    let backed = o
        .stdout
        .find("PostgreSQL databases backed up before the change")
        .expect("the backup task ran");
    let recreated = o
        .stdout
        .find("changed: [tb2] PostgreSQL is up and healthy")
        .expect("the server changed");
    assert!(backed < recreated, "{}", o.stdout);
    assert_eq!(psql("SELECT count(*) FROM t;").trim(), "500");
    cleanup();
}
