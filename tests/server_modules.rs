//! Facts and server modules against the real thing: `ansible -m setup` and
//! ansible-playbook (the `ansible` 12.2.0 package: ansible-core 2.19.14 plus
//! the collections) on the testbed.
//!
//! Needs the plain testbed (`tests/testbed/up.sh 3`), the systemd hosts
//! (`tests/testbed/up-systemd.sh 2`) and the CI venv; FAILS (never skips)
//! when any is missing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value as Json};

use common::{deployer, repo, testbed_inventory};

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

fn systemd_inventory() -> PathBuf {
    let p = repo().join("tests/testbed/inventory-systemd.yml");
    assert!(
        p.exists(),
        "{} missing: run tests/testbed/up-systemd.sh 2 first",
        p.display()
    );
    p
}

/// The inventory that holds `host`.
fn inventory_of(host: &str) -> PathBuf {
    if host.starts_with("sd") {
        systemd_inventory()
    } else {
        testbed_inventory()
    }
}

/// A shell command on a testbed host as root; stdout.
fn root_sh(host: &str, script: &str) -> String {
    let cfg = if host.starts_with("sd") {
        repo().join("tests/testbed/state/systemd/ssh_config")
    } else {
        repo().join("tests/testbed/state/ssh_config")
    };
    let o = Command::new("timeout")
        .arg("120")
        .arg("ssh")
        .arg("-F")
        .arg(&cfg)
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

/// An isolated environment for Ansible's own state.
fn ansible_cmd(bin: &str, home: &Path) -> Command {
    let mut c = Command::new(ansible_bin(bin));
    c.current_dir(home)
        .env("ANSIBLE_HOME", home.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
        .stdin(Stdio::null());
    c
}

/// `ansible HOST -m setup -a gather_subset=SUBSET`: the facts, without the
/// `ansible_` prefix.
fn ansible_setup(host: &str, subset: &str) -> Map<String, Json> {
    let home = tempfile::tempdir().expect("tempdir");
    let o = ansible_cmd("ansible", home.path())
        .arg("-i")
        .arg(inventory_of(host))
        .arg(host)
        .args(["-m", "setup", "-a"])
        .arg(format!("gather_subset={subset}"))
        .output()
        .expect("ansible");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "ansible -m setup on {host}: {out}");
    let json = &out[out.find('{').expect("json in ansible's output")..];
    let v: Json = serde_json::from_str(json).expect("ansible's json");
    strip(v["ansible_facts"].as_object().expect("ansible_facts"))
}

fn strip(m: &Map<String, Json>) -> Map<String, Json> {
    m.iter()
        .map(|(k, v)| {
            (
                k.strip_prefix("ansible_").unwrap_or(k).to_string(),
                v.clone(),
            )
        })
        .collect()
}

/// deployer's facts on `host` with a play's `gather_subset`, as the play sees
/// them in `ansible_facts`.
fn deployer_facts(host: &str, subset: &str) -> Map<String, Json> {
    let dest = format!(
        "/tmp/deployer-facts-{}.json",
        subset.replace(['!', ','], "_")
    );
    let dir = common::project(&[(
        "site.yml",
        &format!(
            "- hosts: {host}\n  gather_subset: {subset:?}\n  tasks:\n    - copy:\n        content: \"{{{{ ansible_facts | to_nice_json }}}}\"\n        dest: {dest}\n"
        ),
    )]);
    let inv = inventory_of(host).display().to_string();
    let o = deployer(dir.path(), &["apply", "-i", &inv, "site.yml"]);
    assert_eq!(o.code, 0, "deployer apply: {}", o.all());
    let text = root_sh(host, &format!("cat {dest}; rm -f {dest}"));
    serde_json::from_str::<Json>(&text)
        .expect("facts json")
        .as_object()
        .cloned()
        .expect("object")
}

/// Facts deployer does not gather (documented in README): the block-device
/// inventory and the per-interface facts (`ansible_eth0`, ...).
fn not_gathered(name: &str, ansible: &Map<String, Json>) -> bool {
    let interfaces: BTreeSet<&str> = ansible
        .get("interfaces")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    name == "devices" || name == "device_links" || interfaces.contains(name)
}

fn keys(m: &Json) -> BTreeSet<String> {
    m.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set_of(v: &Json) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default()
}

/// Compares two fact sets: every name Ansible reports (less the documented
/// ones) must be there with the same value, except values that change from
/// one second to the next, which must have the same shape.
fn compare(host: &str, ansible: &Map<String, Json>, ours: &Map<String, Json>) {
    let mut problems = Vec::new();
    for (k, a) in ansible {
        if not_gathered(k, ansible) {
            continue;
        }
        let Some(d) = ours.get(k) else {
            problems.push(format!("missing fact {k} (ansible: {a})"));
            continue;
        };
        let same = match k.as_str() {
            "date_time" => {
                keys(a) == keys(d)
                    && ["tz", "tz_dst", "tz_offset", "year"]
                        .iter()
                        .all(|f| a[f] == d[f])
                    && {
                        let e =
                            |v: &Json| v["epoch_int"].as_str().and_then(|s| s.parse::<i64>().ok());
                        matches!((e(a), e(d)), (Some(x), Some(y)) if (x - y).abs() < 900)
                    }
            }
            "loadavg" => keys(a) == keys(d),
            "memfree_mb" | "uptime_seconds" => a.is_i64() && d.is_i64(),
            "memory_mb" => {
                keys(a) == keys(d)
                    && a["real"]["total"] == d["real"]["total"]
                    && a["swap"]["total"] == d["swap"]["total"]
            }
            "mounts" => {
                let shape = |v: &Json| -> BTreeSet<String> {
                    v.as_array()
                        .map(|l| {
                            l.iter()
                                .map(|m| {
                                    format!(
                                        "{} {} {} {} {} {} {} {} {}",
                                        m["mount"],
                                        m["device"],
                                        m["fstype"],
                                        m["options"],
                                        m["size_total"],
                                        m["block_total"],
                                        m["block_size"],
                                        m["inode_total"],
                                        m["uuid"]
                                    ) + &format!(" {:?}", keys(m))
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                shape(a) == shape(d)
            }
            "env" => [
                "HOME",
                "USER",
                "LOGNAME",
                "PATH",
                "SHELL",
                "LANG",
                "SUDO_USER",
            ]
            .iter()
            .all(|f| a.get(f) == d.get(f)),
            "interfaces" | "virtualization_tech_guest" | "virtualization_tech_host" => {
                set_of(a) == set_of(d)
            }
            _ => a == d,
        };
        if !same {
            problems.push(format!("{k}: ansible {a}\n    deployer {d}"));
        }
    }
    for k in ours.keys() {
        if !ansible.contains_key(k) {
            problems.push(format!("extra fact {k} = {}", ours[k]));
        }
    }
    assert!(
        problems.is_empty(),
        "facts on {host} differ from ansible -m setup:\n  {}",
        problems.join("\n  ")
    );
}

/// Every fact Ansible gathers on a plain host (PID 1 docker-init, no `ip`)
/// and on a systemd host (PID 1 systemd, iproute2): same names, types and
/// values; then the key sets of narrower `gather_subset`s.
#[test]
fn facts_match_ansible_setup() {
    let _zone = zone_lock();
    for host in ["tb1", "sd1"] {
        let ansible = ansible_setup(host, "all");
        let ours = deployer_facts(host, "all");
        compare(host, &ansible, &ours);
        // Sanity on what roles branch on most.
        assert_eq!(ours["distribution"], "Debian");
        assert_eq!(ours["os_family"], "Debian");
        assert_eq!(ours["pkg_mgr"], "apt");
    }
    assert_eq!(deployer_facts("sd1", "all")["service_mgr"], "systemd");
    for subset in ["!all", "!all,network", "all,!hardware"] {
        let ansible = ansible_setup("sd1", subset);
        let ours = deployer_facts("sd1", subset);
        let a: BTreeSet<&String> = ansible
            .keys()
            .filter(|k| !not_gathered(k, &ansible))
            .collect();
        let d: BTreeSet<&String> = ours.keys().collect();
        assert_eq!(a, d, "gather_subset {subset}: fact names differ");
    }
}

/// `setup` as a task: a narrower gather keeps the facts gathered before, the
/// registered result carries `ansible_facts`, `filter` limits it.
#[test]
fn setup_task_and_ansible_managed() {
    let dir = common::project(&[
        (
            "site.yml",
            "- hosts: tb2\n  gather_facts: false\n  tasks:\n    - assert: {that: [\"ansible_facts.distribution is not defined\"]}\n    - setup: {gather_subset: ['!all'], filter: ['ansible_distribution*', 'ansible_os_family']}\n      register: s\n    - assert:\n        that:\n          - ansible_distribution == 'Debian'\n          - ansible_facts.os_family == 'Debian'\n          - s.ansible_facts.ansible_os_family == 'Debian'\n          - s.ansible_facts.ansible_pkg_mgr is not defined\n          - ansible_pkg_mgr is not defined\n    - setup:\n    - assert: {that: [\"ansible_pkg_mgr == 'apt'\", \"ansible_distribution == 'Debian'\"]}\n    - template: {src: m.j2, dest: /tmp/deployer-managed.txt}\n",
        ),
        ("templates/m.j2", "# {{ ansible_managed }}\n"),
    ]);
    let inv = testbed_inventory().display().to_string();
    let o = deployer(dir.path(), &["apply", "-i", &inv, "site.yml"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(
        root_sh(
            "tb2",
            "cat /tmp/deployer-managed.txt; rm -f /tmp/deployer-managed.txt"
        ),
        "# Ansible managed\n"
    );
    // Unknown subsets and setup arguments are refused before any host is touched.
    let bad = common::project(&[(
        "site.yml",
        "- hosts: tb2\n  gather_subset: [facter]\n  tasks: []\n",
    )]);
    let o = deployer(bad.path(), &["apply", "-i", &inv, "site.yml"]);
    assert_eq!(o.code, 1);
    assert!(
        o.all()
            .contains("gather_subset 'facter' is not supported yet"),
        "{}",
        o.all()
    );
}

const ANSIBLE_SD: &str = "sd1";
const DEPLOYER_SD: &str = "sd2";

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/server_modules")
}

/// One task's outcome: (task name, changed, failed, msg).
type Outcome = (String, bool, bool, String);

/// Per task, in order: (task name, changed, failed, msg) from ansible-playbook's
/// `ansible.posix.json` callback, on the packages test's host.
fn ansible_playbook(playbook: &str, check: bool) -> (i32, Vec<Outcome>) {
    ansible_playbook_on(ANSIBLE_SD, playbook, check)
}

/// The same on `host`.
fn ansible_playbook_on(host: &str, playbook: &str, check: bool) -> (i32, Vec<Outcome>) {
    let home = tempfile::tempdir().expect("tempdir");
    let mut c = ansible_cmd("ansible-playbook", home.path());
    c.arg("-i")
        .arg(inventory_of(host))
        .args(["-l", host])
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
            let name = t["task"]["name"].as_str().unwrap_or("").to_string();
            if name == "Gathering Facts" {
                continue;
            }
            let h = &t["hosts"][host];
            if h.is_null() {
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

/// The same from deployer's JSON events, on the packages test's host.
fn deployer_run(playbook: &str, cmd: &str) -> (i32, Vec<Outcome>) {
    deployer_run_on(DEPLOYER_SD, playbook, cmd)
}

/// The same on `host`. Tests of this file run at once on the same hosts:
/// an apply waits for another's deploy lock.
fn deployer_run_on(host: &str, playbook: &str, cmd: &str) -> (i32, Vec<Outcome>) {
    let inv = inventory_of(host).display().to_string();
    let mut args = vec![cmd, "-i", &inv, "-l", host, "--format", "json", playbook];
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

fn changed_list(t: &[Outcome]) -> Vec<(String, bool)> {
    t.iter().map(|(n, c, _, _)| (n.clone(), *c)).collect()
}

/// What the test compares between the two hosts.
fn host_state(host: &str) -> String {
    root_sh(
        host,
        "for p in hello tree sl ed; do printf '%s ' $p; dpkg-query -W -f='${db:Status-Abbrev}\\n' $p 2>/dev/null || echo none; done; \
         for u in deployer-demo.service cron.service e2scrub_all.timer; do printf '%s %s %s\\n' $u \"$(systemctl is-active $u)\" \"$(systemctl is-enabled $u)\"; done; \
         stat -c '%a %U %G %s' /etc/systemd/system/deployer-demo.service",
    )
}

fn reset(host: &str) {
    // Both hosts start with package lists (another test deletes sd1's), so
    // that `update_cache` reports the same `changed` on both.
    root_sh(
        host,
        "export DEBIAN_FRONTEND=noninteractive; ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q >/dev/null 2>&1; for p in hello tree sl ed; do apt-get remove -y -q $p >/dev/null 2>&1; done; \
         systemctl disable --now deployer-demo.service >/dev/null 2>&1; rm -f /etc/systemd/system/deployer-demo.service; \
         systemctl unmask e2scrub_all.timer >/dev/null 2>&1; systemctl enable --now cron e2scrub_all.timer >/dev/null 2>&1; \
         systemctl daemon-reload; true",
    );
}

/// apt, package, systemd, systemd_service, service and include_vars: the
/// same role under ansible-playbook (sd1) and deployer (sd2) leaves the same
/// packages and units, with the same per-task `changed`; check mode predicts
/// the first run; the second run changes nothing; bad input fails clearly and
/// changes nothing.
#[test]
fn server_modules_match_ansible() {
    let _apt = apt_lock();
    reset(ANSIBLE_SD);
    reset(DEPLOYER_SD);
    let (code, a_prep) = ansible_playbook("prep.yml", false);
    assert_eq!(code, 0, "{a_prep:?}");
    let (code, d_prep) = deployer_run("prep.yml", "apply");
    assert_eq!(code, 0, "{d_prep:?}");
    assert_eq!(changed_list(&a_prep), changed_list(&d_prep), "prep.yml");

    // Check mode: as ansible-playbook --check predicts, and nothing changes.
    let before_check = host_state(DEPLOYER_SD);
    let (_, predicted) = deployer_run("site.yml", "check");
    let (_, a_predicted) = ansible_playbook("site.yml", true);
    assert_eq!(
        changed_list(&a_predicted),
        changed_list(&predicted),
        "check mode's prediction"
    );
    assert_eq!(
        host_state(DEPLOYER_SD),
        before_check,
        "check mode changed the host"
    );
    let (code, a1) = ansible_playbook("site.yml", false);
    assert_eq!(code, 0, "ansible first run: {a1:?}");
    let (code, d1) = deployer_run("site.yml", "apply");
    assert_eq!(code, 0, "deployer first run: {d1:?}");
    assert_eq!(
        changed_list(&a1),
        changed_list(&d1),
        "first run: per-task changed"
    );
    assert_eq!(
        changed_list(&predicted),
        changed_list(&d1),
        "check mode's prediction"
    );
    assert_eq!(
        host_state(ANSIBLE_SD),
        host_state(DEPLOYER_SD),
        "host state after the first run"
    );

    let (_, a2) = ansible_playbook("site.yml", false);
    let (code, d2) = deployer_run("site.yml", "apply");
    assert_eq!(code, 0);
    assert_eq!(changed_list(&a2), changed_list(&d2), "second run");
    assert!(
        d2.iter().all(|t| !t.1),
        "second run changed something: {d2:?}"
    );

    let (_, a3) = ansible_playbook("restart.yml", false);
    let (_, d3) = deployer_run("restart.yml", "apply");
    assert_eq!(changed_list(&a3), changed_list(&d3), "restarted/reloaded");
    assert_eq!(
        host_state(ANSIBLE_SD),
        host_state(DEPLOYER_SD),
        "after restart.yml"
    );

    // Bad input: the task fails naming the package / unit; nothing changed.
    let before = host_state(DEPLOYER_SD);
    let (code, bad) = deployer_run("bad.yml", "apply");
    assert_eq!(code, 1);
    assert!(
        bad[0].2
            && bad[0]
                .3
                .contains("No package matching 'deployer-no-such-package' is available"),
        "{bad:?}"
    );
    let (_, abad) = ansible_playbook("bad.yml", false);
    assert!(
        abad[0].2 && abad[0].3.contains("deployer-no-such-package"),
        "{abad:?}"
    );
    let (code, bad) = deployer_run("bad_unit.yml", "apply");
    assert_eq!(code, 1);
    assert!(
        bad[0].2 && bad[0].3.contains("deployer-no-such-unit"),
        "{bad:?}"
    );
    assert_eq!(
        host_state(DEPLOYER_SD),
        before,
        "a failed task changed the host"
    );
}

/// A differential test of one fixture: `prep` then `playbook`, run by
/// ansible-playbook on [`ANSIBLE_SD`] and by deployer on [`DEPLOYER_SD`]
/// after `reset` on both; `state` (a root shell script) prints what must be
/// identical on the two hosts. `volatile` names tasks whose outcome differs
/// between check mode and the run, or between runs, by design (a task that
/// writes what the others registered).
struct Differential<'a> {
    prep: &'a str,
    playbook: &'a str,
    reset: &'a str,
    state: &'a str,
    volatile: &'a [&'a str],
}

/// (name, changed, failed) per task, without `volatile` tasks. A role's
/// task is `role : name` to Ansible's callback and `name` to deployer; an
/// include that runs is a result of its own to Ansible only (deployer
/// reports the included tasks): `included` names those.
fn outcomes(t: &[Outcome], volatile: &[&str]) -> Vec<(String, bool, bool)> {
    t.iter()
        .map(|(n, c, f, _)| (n.split_once(" : ").map_or(n.as_str(), |(_, n)| n), c, f))
        .filter(|(n, ..)| !volatile.contains(n) && !INCLUDES_THAT_RUN.contains(n))
        .map(|(n, c, f)| (n.to_string(), *c, *f))
        .collect()
}

/// Includes of the fixtures that run (see [`outcomes`]).
const INCLUDES_THAT_RUN: &[&str] = &["the file for this family"];

fn differential(d: &Differential<'_>) {
    root_sh(ANSIBLE_SD, d.reset);
    root_sh(DEPLOYER_SD, d.reset);
    let (code, a) = ansible_playbook(d.prep, false);
    assert_eq!(code, 0, "ansible {}: {a:?}", d.prep);
    let (code, dp) = deployer_run(d.prep, "apply");
    assert_eq!(code, 0, "deployer {}: {dp:?}", d.prep);
    assert_eq!(outcomes(&a, &[]), outcomes(&dp, &[]), "{}", d.prep);

    // Check mode predicts what ansible-playbook --check does, changes nothing.
    let before = root_sh(DEPLOYER_SD, d.state);
    let (_, predicted) = deployer_run(d.playbook, "check");
    let (_, a_predicted) = ansible_playbook(d.playbook, true);
    assert_eq!(
        outcomes(&a_predicted, d.volatile),
        outcomes(&predicted, d.volatile),
        "{}: check mode",
        d.playbook
    );
    assert_eq!(
        root_sh(DEPLOYER_SD, d.state),
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
    assert_eq!(
        outcomes(&predicted, d.volatile),
        outcomes(&d1, d.volatile),
        "{}: check mode's prediction of the first run",
        d.playbook
    );
    assert_eq!(
        root_sh(ANSIBLE_SD, d.state),
        root_sh(DEPLOYER_SD, d.state),
        "{}: host state after the first run",
        d.playbook
    );

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
        root_sh(ANSIBLE_SD, d.state),
        root_sh(DEPLOYER_SD, d.state),
        "{}: host state after the second run",
        d.playbook
    );
}

const ACCOUNTS_RESET: &str = "for u in dpl-alice dpl-bob dpl-svc dpl-tmp dpl-bad; do userdel -r $u >/dev/null 2>&1; done; \
     rm -rf /var/lib/dpl-svc /home/dpl-alice /home/dpl-bob /home/dpl-tmp /root/deployer-accounts.json; \
     for g in dpl-team dpl-sys dpl-extra dpl-old dpl-bob dpl-tmp dpl-alice dpl-svc; do groupdel $g >/dev/null 2>&1; done; true";

const ACCOUNTS_STATE: &str = "getent passwd dpl-alice dpl-bob dpl-svc dpl-tmp dpl-never dpl-bad; \
     getent group dpl-team dpl-sys dpl-extra dpl-old dpl-bob dpl-tmp sudo adm; \
     getent shadow dpl-alice dpl-bob dpl-svc | cut -d: -f1,2,4-; \
     for d in /home/dpl-alice /home/dpl-bob /home/dpl-tmp /var/lib/dpl-svc; do stat -c '%n %a %U %G' $d 2>/dev/null; ls -A $d 2>/dev/null; done; \
     cat /root/deployer-accounts.json 2>/dev/null; true";

/// user, group and getent: same accounts, groups, shadow entries, homes and
/// registered keys as ansible-playbook; a user that cannot be made fails
/// naming its group and changes nothing.
#[test]
fn accounts_match_ansible() {
    differential(&Differential {
        prep: "accounts_prep.yml",
        playbook: "accounts.yml",
        reset: ACCOUNTS_RESET,
        state: ACCOUNTS_STATE,
        volatile: &["what the modules registered"],
    });
    let before = root_sh(DEPLOYER_SD, ACCOUNTS_STATE);
    let (code, bad) = deployer_run("accounts_bad.yml", "apply");
    assert_eq!(code, 1);
    assert!(
        bad[0].2 && bad[0].3.contains("Group dpl-no-such-group does not exist"),
        "{bad:?}"
    );
    let (_, abad) = ansible_playbook("accounts_bad.yml", false);
    assert!(
        abad[0].2 && abad[0].3.contains("dpl-no-such-group"),
        "{abad:?}"
    );
    assert_eq!(root_sh(DEPLOYER_SD, ACCOUNTS_STATE), before);
}

/// Serves /srv/dpl-www on the host's loopback (port 8087) with python3's
/// http.server: the testbed-local web server the get_url tests download
/// from (no internet). Files have a fixed time, so `If-Modified-Since`
/// answers are the same on both hosts.
const WWW_RESET: &str = "if [ -f /run/dpl-www.pid ]; then kill \"$(cat /run/dpl-www.pid)\" 2>/dev/null; rm -f /run/dpl-www.pid; fi; \
     rm -rf /opt/dpl /srv/dpl-www /root/deployer-get_url.json; mkdir -p /srv/dpl-www; cd /srv/dpl-www; \
     printf 'hello from the testbed\\n' > hello.txt; printf 'existing\\n' > existing.txt; printf 'dir\\n' > dir.txt; printf 'data\\n' > data.txt; \
     touch -d '2026-01-01 00:00:00' *.txt; \
     setsid python3 -m http.server 8087 --bind 127.0.0.1 --directory /srv/dpl-www </dev/null >/dev/null 2>&1 & echo $! > /run/dpl-www.pid; \
     for i in $(seq 1 50); do curl -s -o /dev/null http://127.0.0.1:8087/ && break; sleep 0.1; done; true";

const GET_URL_STATE: &str = "cd /opt/dpl 2>/dev/null && for f in $(ls -A); do stat -c '%n %a %U %G %s %F' $f; [ -f $f ] && md5sum < $f; done; \
     cat /root/deployer-get_url.json 2>/dev/null; true";

/// get_url from a testbed-local HTTP server: same files (content, mode,
/// owner), same per-task `changed` and registered keys as ansible-playbook;
/// a checksum mismatch fails naming the file and leaves nothing behind.
#[test]
fn get_url_matches_ansible() {
    differential(&Differential {
        prep: "get_url_prep.yml",
        playbook: "get_url.yml",
        reset: WWW_RESET,
        state: GET_URL_STATE,
        volatile: &["what the modules registered"],
    });
    let before = root_sh(DEPLOYER_SD, GET_URL_STATE);
    let (code, bad) = deployer_run("get_url_bad.yml", "apply");
    assert_eq!(code, 1);
    assert!(
        bad[0].2 && bad[0].3.contains("did not match") && bad[0].3.contains("data.txt"),
        "{bad:?}"
    );
    let (_, abad) = ansible_playbook("get_url_bad.yml", false);
    assert!(abad[0].2 && abad[0].3.contains("did not match"), "{abad:?}");
    assert_eq!(root_sh(DEPLOYER_SD, GET_URL_STATE), before);
}

const REPLACE_RESET: &str = "rm -rf /opt/dpl-text /root/deployer-replace.json; true";
const REPLACE_STATE: &str = "cd /opt/dpl-text 2>/dev/null && find . | sort | while read -r f; do stat -c '%n %a %U %G %F' \"$f\"; [ -f \"$f\" ] && cat -A \"$f\"; done; \
     cat /root/deployer-replace.json 2>/dev/null; true";

/// replace and ini_file: same file contents and modes, same per-task
/// `changed`, messages and registered keys as ansible-playbook; a missing
/// file fails naming it.
#[test]
fn replace_matches_ansible() {
    differential(&Differential {
        prep: "replace_prep.yml",
        playbook: "replace.yml",
        reset: REPLACE_RESET,
        state: REPLACE_STATE,
        volatile: &["what the modules registered"],
    });
    let (code, bad) = deployer_run("replace_bad.yml", "apply");
    assert_eq!(code, 1);
    assert!(
        bad[0].2
            && bad[0]
                .3
                .contains("Path /opt/dpl-text/missing.conf does not exist !"),
        "{bad:?}"
    );
    let (_, abad) = ansible_playbook("replace_bad.yml", false);
    assert_eq!(
        abad[0].3,
        "Path /opt/dpl-text/missing.conf does not exist !"
    );
}

const KEYS_RESET: &str = "for u in dpl-keys dpl-keys2; do userdel -r $u >/dev/null 2>&1; groupdel $u >/dev/null 2>&1; done; \
     rm -rf /home/dpl-keys /home/dpl-keys2 /root/deployer-keys.json; true";
const KEYS_STATE: &str = "for d in /home/dpl-keys/.ssh /home/dpl-keys2/.ssh; do stat -c '%n %a %U %G' $d 2>/dev/null; \
     for f in $(ls -A $d 2>/dev/null); do stat -c '%n %a %U %G %s' $d/$f; cat $d/$f; done; done; \
     cat /root/deployer-keys.json 2>/dev/null; true";

/// authorized_key: same key files (lines, order, options, comments, owner,
/// mode) and ~/.ssh as ansible-playbook; a user that does not exist fails
/// naming the user.
#[test]
fn authorized_key_matches_ansible() {
    differential(&Differential {
        prep: "keys_prep.yml",
        playbook: "keys.yml",
        reset: KEYS_RESET,
        state: KEYS_STATE,
        volatile: &["what the modules registered"],
    });
    let (code, bad) = deployer_run("keys_bad.yml", "apply");
    assert_eq!(code, 1);
    assert!(bad[0].2 && bad[0].3.contains("dpl-no-such-user"), "{bad:?}");
    let (_, abad) = ansible_playbook("keys_bad.yml", false);
    assert!(
        abad[0].2 && abad[0].3.contains("dpl-no-such-user"),
        "{abad:?}"
    );
}

const CRON_RESET: &str = "crontab -u dpl-cron -r >/dev/null 2>&1; userdel -r dpl-cron >/dev/null 2>&1; groupdel dpl-cron >/dev/null 2>&1; \
     rm -f /etc/cron.d/dpl-jobs /etc/cron.d/dpl-lone /root/deployer-cron.json; true";
const CRON_STATE: &str = "crontab -u dpl-cron -l 2>&1; for f in /etc/cron.d/dpl-jobs /etc/cron.d/dpl-lone; do stat -c '%n %a %U %G' $f 2>/dev/null && cat $f; done; \
     cat /root/deployer-cron.json 2>/dev/null; true";

/// cron: same user crontab and /etc/cron.d files (lines, order, modes) as
/// ansible-playbook; bad arguments fail as Ansible's do.
#[test]
fn cron_matches_ansible() {
    differential(&Differential {
        prep: "cron_prep.yml",
        playbook: "cron.yml",
        reset: CRON_RESET,
        state: CRON_STATE,
        volatile: &["what the modules registered"],
    });
    let (code, bad) = deployer_run("cron_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("cron_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert!(bad[0].2 && bad[0].3.contains("special_time"));
}

const SYSCTL_RESET: &str = "rm -f /etc/sysctl.d/60-dpl.conf /etc/sysctl.d/61-dpl.conf /etc/security/limits.d/60-dpl.conf \
     /etc/security/limits.d/61-dpl.conf /root/deployer-sysctl.json; true";
const SYSCTL_STATE: &str = "for f in /etc/sysctl.d/60-dpl.conf /etc/sysctl.d/61-dpl.conf /etc/security/limits.d/60-dpl.conf \
     /etc/security/limits.d/61-dpl.conf; do stat -c '%n %a %U %G' $f 2>/dev/null && cat -A $f; done; \
     ls -A /etc/sysctl.d /etc/security/limits.d; cat /root/deployer-sysctl.json 2>/dev/null; true";

/// sysctl, pam_limits and slurp: same sysctl and limits files (normalized
/// lines, first occurrence kept, comments kept), `changed` and registered
/// keys as ansible-playbook.
#[test]
fn sysctl_matches_ansible() {
    differential(&Differential {
        prep: "sysctl_prep.yml",
        playbook: "sysctl.yml",
        reset: SYSCTL_RESET,
        state: SYSCTL_STATE,
        volatile: &["what the modules registered"],
    });
    let (code, bad) = deployer_run("sysctl_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("sysctl_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert_eq!(bad[0].3, "value cannot be blank");
}

/// Held by the tests that run apt on the systemd hosts or read their
/// packages (one `apt-get` at a time; a sources file another test is adding
/// would fail its cache update).
fn apt_lock() -> std::sync::MutexGuard<'static, ()> {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    APT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held by the tests that change the systemd hosts' time zone and by those
/// that compare `ansible_date_time` there (they run in parallel otherwise).
fn zone_lock() -> std::sync::MutexGuard<'static, ()> {
    static ZONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ZONE.lock().unwrap_or_else(|e| e.into_inner())
}

const TZ_RESET: &str = "timedatectl set-timezone Etc/UTC; rm -f /root/deployer-tz.json; true";
const TZ_STATE: &str = "timedatectl show -p Timezone; readlink /etc/localtime; cat /root/deployer-tz.json 2>/dev/null; true";

/// timezone: the same zone (timedatectl, /etc/localtime), `changed`, `msg`
/// and `diff` as ansible-playbook; a zone that does not exist fails as
/// Ansible's does and changes nothing.
#[test]
fn timezone_matches_ansible() {
    let _zone = zone_lock();
    differential(&Differential {
        prep: "timezone_prep.yml",
        playbook: "timezone.yml",
        reset: TZ_RESET,
        state: TZ_STATE,
        // In check mode the first task changes nothing, so the second
        // still predicts a change (as Ansible's --check does).
        volatile: &["the same zone again", "what the modules registered"],
    });
    let before = root_sh(DEPLOYER_SD, TZ_STATE);
    let (code, bad) = deployer_run("timezone_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("timezone_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert!(bad[0].2 && bad[0].3.contains("Mars/Olympus_Mons"));
    assert_eq!(root_sh(DEPLOYER_SD, TZ_STATE), before);
    root_sh(ANSIBLE_SD, TZ_RESET);
    root_sh(DEPLOYER_SD, TZ_RESET);
}

/// What facts_modules.yml wrote on `host`, less what the packages test
/// changes at the same time on the systemd hosts.
fn fact_modules_output(host: &str) -> Json {
    let mut v: Json = serde_json::from_str(&root_sh(
        host,
        "cat /root/deployer-factmods.json; rm -f /root/deployer-factmods.json",
    ))
    .expect("facts_modules.yml's json");
    for p in ["hello", "tree", "sl", "ed"] {
        v["packages"].as_object_mut().map(|m| m.remove(p));
    }
    for s in [
        "deployer-demo.service",
        "cron.service",
        "cron",
        "e2scrub_all.service",
    ] {
        v["services"].as_object_mut().map(|m| m.remove(s));
    }
    // Counts of the same, without the volatile entries.
    for k in ["top_packages", "top_services"] {
        v.as_object_mut().map(|m| m.remove(k));
    }
    v
}

/// package_facts and service_facts: on a plain and on a systemd host, the
/// same `packages` and `services` facts (every package and unit, every
/// field) and registered keys as ansible-playbook on the same host. (The
/// plain hosts have no python3-apt, which Ansible's package_facts needs, so
/// packages are compared on the systemd host.)
#[test]
fn fact_modules_match_ansible() {
    let _apt = apt_lock();
    // With apt lists, as a server that ran `apt-get update` has them: a
    // package's section then comes from the list's record (lsb-base: misc),
    // not dpkg's status (oldlibs), and its origin from the list's Release.
    root_sh(
        ANSIBLE_SD,
        "ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q >/dev/null 2>&1; ls /var/lib/apt/lists/ | grep -q _Packages",
    );
    for host in ["tb1", "sd1"] {
        let mut tries = 0;
        loop {
            tries += 1;
            let (code, a) = ansible_playbook_on(host, "facts_modules.yml", false);
            assert_eq!(code, 0, "ansible on {host}: {a:?}");
            let ansible = fact_modules_output(host);
            let (code, d) = deployer_run_on(host, "facts_modules.yml", "apply");
            assert_eq!(code, 0, "deployer on {host}: {d:?}");
            assert_eq!(
                changed_list(&a),
                changed_list(&d),
                "{host}: per-task changed"
            );
            let ours = fact_modules_output(host);
            if ansible == ours {
                if host.starts_with("sd") {
                    assert!(ours["packages"].as_object().is_some_and(|p| p.len() > 50));
                }
                assert!(ours["services"].as_object().is_some_and(|s| !s.is_empty()));
                break;
            }
            // Another test may have changed the host between the two runs:
            // once more, then the difference is real.
            assert!(
                tries < 3,
                "{host}: package/service facts differ:\nansible {}\ndeployer {}",
                serde_json::to_string_pretty(&ansible).unwrap_or_default(),
                serde_json::to_string_pretty(&ours).unwrap_or_default()
            );
        }
    }
}

/// Held by the tests that unpack under /opt/dpl-arc.
fn arc_lock() -> std::sync::MutexGuard<'static, ()> {
    static ARC: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ARC.lock().unwrap_or_else(|e| e.into_inner())
}

const ARC_RESET: &str = "rm -rf /opt/dpl-arc /opt/dpl-arc-src /root/deployer-unarchive.json; true";
const ARC_STATE: &str = "cd /opt/dpl-arc 2>/dev/null && find . | sort | while read -r f; do stat -c '%n %a %U %G %F' \"$f\"; \
     case \"$f\" in ./*/*) stat -c '%Y' \"$f\";; esac; [ -f \"$f\" ] && [ ! -L \"$f\" ] && md5sum < \"$f\"; [ -L \"$f\" ] && readlink \"$f\"; done; \
     cat /root/deployer-unarchive.json 2>/dev/null; true";

/// unarchive: the same files (content, mode, owner, mtime, links) from
/// archives on the host and on the controller, same per-task `changed` and
/// registered values as ansible-playbook; a file that is not an archive fails
/// naming it and changes nothing. (Ansible's --check skips tar archives;
/// deployer's predicts from `tar --diff`, checked against its own first run.)
#[test]
fn unarchive_matches_ansible() {
    let _arc = arc_lock();
    differential(&Differential {
        prep: "unarchive_prep.yml",
        playbook: "unarchive.yml",
        reset: ARC_RESET,
        state: ARC_STATE,
        volatile: &[
            "a gzip archive on the host",
            "the same archive again",
            "a plain tar without one file",
            "a gzip archive of the same files",
            "an archive from the controller",
            "creates names a file that exists",
            "what the modules registered",
        ],
    });
    let before = root_sh(DEPLOYER_SD, ARC_STATE);
    let (code, bad) = deployer_run("unarchive_bad.yml", "apply");
    assert_eq!(code, 1);
    assert!(
        bad[0].2
            && bad[0]
                .3
                .contains("Failed to find handler for \"/opt/dpl-arc-src/bogus.tar.gz\""),
        "{bad:?}"
    );
    let (_, abad) = ansible_playbook("unarchive_bad.yml", false);
    assert!(
        abad[0].2 && abad[0].3.contains("Failed to find handler"),
        "{abad:?}"
    );
    assert_eq!(root_sh(DEPLOYER_SD, ARC_STATE), before);
    // Check mode predicts the first run (less the tasks that depend on an
    // earlier one: the repeated archives, the `creates` of a file unpacked).
    root_sh(DEPLOYER_SD, ARC_RESET);
    let (code, _) = deployer_run("unarchive_prep.yml", "apply");
    assert_eq!(code, 0);
    let (_, predicted) = deployer_run("unarchive.yml", "check");
    let (_, first) = deployer_run("unarchive.yml", "apply");
    let unarchive_tasks = |t: &[Outcome]| -> Vec<(String, bool)> {
        changed_list(t)
            .into_iter()
            .filter(|(n, _)| {
                ![
                    "what the modules registered",
                    "the same archive again",
                    "a gzip archive of the same files",
                    "creates names a file that exists",
                ]
                .contains(&n.as_str())
            })
            .collect()
    };
    assert_eq!(unarchive_tasks(&predicted), unarchive_tasks(&first));
}

/// [`ARC_STATE`] without the time of ./f/app, which tar makes (the archive
/// does not list it) when it unpacks the one file included.
const ARC_ATTRS_STATE: &str = "cd /opt/dpl-arc 2>/dev/null && find . | sort | while read -r f; do stat -c '%n %a %U %G %F' \"$f\"; \
     case \"$f\" in ./f/app) ;; ./*/*) stat -c '%Y' \"$f\";; esac; [ -f \"$f\" ] && [ ! -L \"$f\" ] && md5sum < \"$f\"; [ -L \"$f\" ] && readlink \"$f\"; done; true";

/// unarchive's `owner`, `group` and `mode`: given to every path the archive
/// lists and to its top directories (a link its own owner and group), the
/// `Uid/Gid/Mode differs` of what the task sets not counted, `changed` from the
/// attributes alone when only they differ: same files, owners, modes and
/// per-task `changed` as ansible-playbook, twice. An owner that does not exist
/// fails naming it, and under deployer unpacks nothing (Ansible looks the name
/// up after unpacking). Check mode (Ansible's skips tar archives) predicts
/// deployer's own first run.
#[test]
fn unarchive_attributes_match_ansible() {
    let _arc = arc_lock();
    let tasks = [
        "unpacked with owner, group and mode",
        "the same again",
        "only the mode differs",
        "unpacked as the archive says",
        "then a numeric owner and group",
        "one file, its top directory gets the owner too",
    ];
    differential(&Differential {
        prep: "unarchive_attrs_prep.yml",
        playbook: "unarchive_attrs.yml",
        reset: ARC_RESET,
        state: ARC_ATTRS_STATE,
        volatile: &tasks,
    });
    let state = root_sh(DEPLOYER_SD, ARC_ATTRS_STATE);
    for line in [
        "./d/app 700 www-data adm directory",
        "./d/app/run 777 www-data adm symbolic link",
        "./d/app/bin/run.sh 700 www-data adm regular file",
        "./e/app/VERSION 644 nobody nogroup regular file",
        "./f/app 755 www-data root directory",
        "./f/app/VERSION 644 www-data root regular file",
    ] {
        assert!(state.contains(line), "{line} not in:\n{state}");
    }

    let before = root_sh(DEPLOYER_SD, ARC_ATTRS_STATE);
    let (code, bad) = deployer_run("unarchive_attrs_bad.yml", "apply");
    assert_eq!(code, 1);
    let want = "chown failed: failed to look up user dpl-no-such-user";
    assert!(bad[0].2 && bad[0].3 == want, "{bad:?}");
    assert_eq!(
        root_sh(DEPLOYER_SD, ARC_ATTRS_STATE),
        before,
        "the failed task changed the host"
    );
    let (_, abad) = ansible_playbook("unarchive_attrs_bad.yml", false);
    assert!(abad[0].2 && abad[0].3 == want, "{abad:?}");

    // Check mode predicts the first run of the tasks that do not depend on
    // an earlier one.
    root_sh(DEPLOYER_SD, ARC_RESET);
    let (code, _) = deployer_run("unarchive_attrs_prep.yml", "apply");
    assert_eq!(code, 0);
    let independent = |t: &[Outcome]| -> Vec<(String, bool)> {
        changed_list(t)
            .into_iter()
            .filter(|(n, _)| [tasks[0], tasks[3], tasks[5]].contains(&n.as_str()))
            .collect()
    };
    let (_, predicted) = deployer_run("unarchive_attrs.yml", "check");
    assert_eq!(
        root_sh(
            DEPLOYER_SD,
            "find /opt/dpl-arc/d /opt/dpl-arc/e -mindepth 1 | wc -l"
        )
        .trim(),
        "0",
        "check mode unpacked something"
    );
    let (_, first) = deployer_run("unarchive_attrs.yml", "apply");
    assert_eq!(independent(&predicted), independent(&first));
    assert_eq!(independent(&first).len(), 3);
}

const MOUNT_RESET: &str = "for m in $(findmnt -rn -o TARGET | grep '^/srv/dpl-mnt' | sort -r); do umount \"$m\"; done; \
     rm -rf /srv/dpl-mnt /root/deployer-mount.json; sed -i '/dpl-mnt/d' /etc/fstab; true";

/// The fstabs, the mounts, the paths (backups counted: their names hold a
/// PID and a time) and what the module registered.
const MOUNT_STATE: &str = "cat /srv/dpl-mnt/fstab 2>/dev/null; echo ---; cat /etc/fstab; stat -c '%a %U' /etc/fstab; echo ---; \
     findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS | grep dpl-mnt | sort; echo ---; \
     cd /srv/dpl-mnt 2>/dev/null && find . | grep -v '~$' | sort | while read -r f; do stat -c '%n %a %U %F' \"$f\"; done; \
     echo \"backups: $(ls /srv/dpl-mnt 2>/dev/null | grep -c '~$')\"; cat /root/deployer-mount.json 2>/dev/null; true";

/// mount (ansible.posix.mount): tmpfs and bind mounts in a scratch fstab
/// and in /etc/fstab, every state (`mounted`, again, with new options:
/// remounted; `present` with `boot: false` and a backup; `remounted`;
/// `ephemeral`, again; `unmounted`, again; `absent_from_fstab`; `absent`,
/// which unmounts and removes the directory): same fstabs, mounts, paths,
/// per-task `changed` and registered values as ansible-playbook, twice; check
/// mode changes nothing. A mount that fails puts the fstab back, removes the
/// directories it made and fails as Ansible's does.
#[test]
fn mount_matches_ansible() {
    let tasks = [
        "a tmpfs in a scratch fstab, mounted",
        "the same again",
        "new options, remounted",
        "a bind mount in /etc/fstab",
        "the bind mount again",
        "an entry only, not mounted at boot",
        "remounted",
        "an ephemeral mount",
        "the ephemeral mount again",
        "unmounted",
        "unmounted again",
        "absent from the scratch fstab",
        "the bind mount absent",
        "what the module registered",
    ];
    differential(&Differential {
        prep: "mount_prep.yml",
        playbook: "mount.yml",
        reset: MOUNT_RESET,
        state: MOUNT_STATE,
        // Each depends on the ones before: check mode (where nothing is
        // mounted) cannot predict them, and a second run changes them again.
        volatile: &tasks,
    });
    let (_, d) = deployer_run("mount.yml", "apply");
    let unchanged: Vec<&str> = d
        .iter()
        .filter(|(_, c, f, _)| !c && !f)
        .map(|(n, ..)| n.as_str())
        .collect();
    assert_eq!(
        unchanged,
        [
            "the same again",
            "the bind mount again",
            "unmounted again",
            "what the module registered"
        ],
        "{d:?}"
    );
    let state = root_sh(DEPLOYER_SD, MOUNT_STATE);
    assert!(
        state.starts_with("tmpfs /srv/dpl-mnt/t tmpfs size=2m 0 0\n---\n")
            && state.contains("/srv/dpl-mnt/t tmpfs tmpfs rw,relatime,size=2048k"),
        "{state}"
    );

    let before = root_sh(DEPLOYER_SD, MOUNT_STATE);
    let (code, bad) = deployer_run("mount_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("mount_bad.yml", false);
    for (who, t) in [("deployer", &bad), ("ansible", &abad)] {
        assert!(
            t[0].2
                && t[0].3.starts_with(
                    "Error mounting /srv/dpl-mnt/bad/x: mount: /srv/dpl-mnt/bad/x: special device /srv/dpl-mnt/no-such-dir does not exist."
                ),
            "{who}: {t:?}"
        );
    }
    assert_eq!(
        root_sh(DEPLOYER_SD, MOUNT_STATE),
        before,
        "the failed mount changed the host"
    );
}

const CENSUS_RESET: &str = "export DEBIAN_FRONTEND=noninteractive; \
     ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q >/dev/null 2>&1; apt-get purge -y -q at figlet >/dev/null 2>&1; \
     rm -rf /srv/census /usr/sbin/policy-rc.d /tmp/census-groups; gpasswd -d deploy census-grp >/dev/null 2>&1; \
     groupdel census-grp >/dev/null 2>&1; systemctl daemon-reload; true";

const CENSUS_STATE: &str = "stat -c '%n %a %U %Y' /srv/census/kept.log; stat -c '%n %a %U' /srv/census/new.log; \
     stat -c '%n %a %U %G' /srv/census/sgid /srv/census/sgid/conf /srv/census/datadir 2>&1; \
     cat /srv/census/family.txt; \
     for p in at figlet; do printf '%s ' $p; dpkg-query -W -f='${db:Status-Abbrev}\\n' $p 2>/dev/null || echo none; done; \
     echo \"atd $(systemctl is-active atd) $(systemctl is-enabled atd)\"; \
     if [ -e /usr/sbin/policy-rc.d ]; then echo policy-rc.d left behind; fi; \
     echo \"groups: $(cat /tmp/census-groups 2>/dev/null)\"; true";

/// What public roles use (the census): file's `modification_time` and
/// `access_time` (preserve), apt's `policy_rc_d`, package's `allow_downgrade`
/// (handed to apt), service's `daemon_reload` without a name and `sleep`
/// (dropped on systemd, as Ansible's service action does), `meta:
/// reset_connection` (the login user's new group applies after it), a loop
/// over nothing (skipped), file's `setype` on a host without SELinux
/// (unused, as Ansible's module leaves it), and include_tasks
/// of a templated name and of a fixed one under a false `when` whose files
/// use a module deployer does not run: same per-task outcome and host state
/// as ansible-playbook. Then bad input: a yum-only argument through package
/// fails as in Ansible; an include that reaches a file deployer cannot load
/// fails there, naming the file, and changes nothing.
#[test]
fn census_arguments_match_ansible() {
    differential(&Differential {
        prep: "census_prep.yml",
        playbook: "census.yml",
        reset: CENSUS_RESET,
        state: CENSUS_STATE,
        // Its mode is the first touch's: check mode cannot know it.
        volatile: &["a file's mode, access time preserved"],
    });
    let state = root_sh(DEPLOYER_SD, CENSUS_STATE);
    assert!(
        state.contains("/srv/census/kept.log 640 root 1577934245")
            && state.contains("at ii")
            && state.contains("atd inactive enabled")
            && state.contains("census-grp")
            && state.contains("/srv/census/sgid/conf 640 root root")
            && state.contains("/srv/census/datadir 750 root adm")
            && !state.contains("left behind"),
        "{state}"
    );

    let (code, a) = ansible_playbook("census_bad.yml", false);
    assert_ne!(code, 0);
    let (code, d) = deployer_run("census_bad.yml", "apply");
    assert_eq!(code, 1);
    for (who, t) in [("ansible", &a), ("deployer", &d)] {
        assert!(
            t[0].2 && t[0].3.contains("Unsupported parameters") && t[0].3.contains("enablerepo"),
            "{who}: {t:?}"
        );
    }

    let before = root_sh(DEPLOYER_SD, CENSUS_STATE);
    let inv = inventory_of(DEPLOYER_SD).display().to_string();
    let o = deployer(
        &fixture(),
        &[
            "apply",
            "-i",
            &inv,
            "-l",
            DEPLOYER_SD,
            "--lock-wait",
            "900s",
            "census_dyn_bad.yml",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.all().contains("setup-Archlinux.yml:4:") && o.all().contains("snap"),
        "{}",
        o.all()
    );
    assert_eq!(
        root_sh(DEPLOYER_SD, CENSUS_STATE),
        before,
        "the failed include changed the host"
    );
}

const OTHER_OS_RESET: &str = "export DEBIAN_FRONTEND=noninteractive; \
     ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q >/dev/null 2>&1; apt-get purge -y -q figlet >/dev/null 2>&1; \
     rm -rf /srv/other-os; true";

const OTHER_OS_STATE: &str = "printf 'figlet '; dpkg-query -W -f='${db:Status-Abbrev}\\n' figlet 2>/dev/null || echo none; \
     find /srv/other-os -printf '%p %m %u %s\\n' 2>/dev/null | sort; cat /srv/other-os/*.txt 2>/dev/null; \
     ls /etc/yum.repos.d 2>&1 | head -1; true";

/// Other operating systems' package modules (yum, dnf, rpm_key,
/// yum_repository, pacman, zypper, pkgng) in task files a role imports
/// statically under a `when:` on the family: the role loads and runs on
/// Debian with the same per-task outcome (those tasks skipped) and host state
/// as under ansible-playbook. The same module reached without the guard fails
/// the task under deployer, saying it is not supported yet and naming the
/// host's package manager, in check mode too, and changes nothing (the play
/// stops there, as ansible-playbook's, which fails it too).
#[test]
fn other_os_modules_match_ansible() {
    let _apt = apt_lock();
    differential(&Differential {
        prep: "other_os_prep.yml",
        playbook: "other_os.yml",
        reset: OTHER_OS_RESET,
        state: OTHER_OS_STATE,
        volatile: &[],
    });
    let (_, a) = ansible_playbook("other_os.yml", false);
    assert!(
        a.iter()
            .any(|(n, c, f, _)| n.ends_with("the package (RedHat, yum)") && !c && !f),
        "the RedHat tasks ran under ansible-playbook: {a:?}"
    );

    let before = root_sh(DEPLOYER_SD, OTHER_OS_STATE);
    let want = "yum is not supported yet by deployer (this host's package manager is apt)";
    let inv = inventory_of(DEPLOYER_SD).display().to_string();
    for cmd in ["check", "apply"] {
        let o = deployer(
            &fixture(),
            &[
                cmd,
                "-i",
                &inv,
                "-l",
                DEPLOYER_SD,
                "--format",
                "json",
                "other_os_bad.yml",
            ],
        );
        assert_eq!(o.code, 1, "deployer {cmd}: {}", o.all());
        let d: Vec<Json> = common::events(&o.stdout)
            .into_iter()
            .filter(|e| e["event"] == "task_result" && e["task"] != "Gathering Facts")
            .collect();
        assert_eq!(
            d.len(),
            1,
            "deployer {cmd} went on after the failure: {d:?}"
        );
        assert!(
            d[0]["status"] == "failed" && d[0]["msg"] == want,
            "deployer {cmd}: {d:?}"
        );
    }
    assert_eq!(
        root_sh(DEPLOYER_SD, OTHER_OS_STATE),
        before,
        "the refused task changed the host"
    );
    let (code, a) = ansible_playbook("other_os_bad.yml", false);
    assert_ne!(code, 0);
    assert!(a.len() == 1 && a[0].2, "ansible-playbook: {a:?}");
}

const FIND_RESET: &str = "rm -rf /opt/dpl-find /opt/dpl-find.txt /root/deployer-find.json; true";
const FIND_STATE: &str = "cat /root/deployer-find.json 2>/dev/null; true";

/// find: the same matches (paths in the same order, modes, sizes, owners,
/// checksums, every stat key), `examined`, `msg` and `skipped_paths` as
/// ansible-playbook, by name, regex, depth, hidden, type, age, size, content
/// (line, whole file, an encoding), mode and limit; an age it cannot read
/// fails as Ansible's does.
#[test]
fn find_matches_ansible() {
    differential(&Differential {
        prep: "find_prep.yml",
        playbook: "find.yml",
        reset: FIND_RESET,
        state: FIND_STATE,
        volatile: &["what the modules registered"],
    });
    let (code, bad) = deployer_run("find_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("find_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert!(bad[0].2 && bad[0].3 == "failed to process age", "{bad:?}");
}

const APT_SOURCES_RESET: &str = "rm -f /etc/apt/sources.list.d/dpl* /etc/apt/sources.list.d/file_srv_dpl* /etc/apt/trusted.gpg.d/dpl* /etc/apt/keyrings/dpl* /root/dpl-key2.asc /root/deployer-apt-sources.json; \
     export DEBIAN_FRONTEND=noninteractive; dpkg -P dpl-hello >/dev/null 2>&1; rm -rf /srv/dpl-repo /srv/dpl-repo2 /srv/dpl-gone /srv/dpl-third /var/lib/apt/lists/_srv_dpl*; true";
const APT_SOURCES_STATE: &str = "cd /etc/apt/sources.list.d && for f in $(ls -A | grep dpl); do stat -c '%n %a %U %G' $f; cat -A $f; done; \
     ls -A /etc/apt/trusted.gpg.d /etc/apt/keyrings | grep dpl; for k in /etc/apt/trusted.gpg.d/dpl.gpg /etc/apt/trusted.gpg.d/dpl2.gpg; do [ -f $k ] && stat -c '%n %a' $k && \
     GNUPGHOME=$(mktemp -d) gpg -q --no-default-keyring --keyring $k --with-colons --list-keys 2>/dev/null | grep -E '^(pub|fpr)' | cut -d: -f1,5,10; done; \
     dpkg-query -W -f='${db:Status-Abbrev} ${Version}\\n' dpl-hello 2>/dev/null; ls /var/lib/apt/lists | grep dpl; \
     cat /root/deployer-apt-sources.json 2>/dev/null; true";

/// apt_repository, apt_key and deb822_repository against a testbed-local
/// APT repository (a package built with dpkg-deb, read through a file: URI;
/// no internet): the same sources files (text, mode), keyring keys, package
/// installed from the repository, apt lists, per-task `changed` and
/// registered values as ansible-playbook; a repository apt cannot read fails
/// the cache update, and the sources are put back.
#[test]
fn apt_sources_match_ansible() {
    let _apt = apt_lock();
    differential(&Differential {
        prep: "apt_sources_prep.yml",
        playbook: "apt_sources.yml",
        reset: APT_SOURCES_RESET,
        state: APT_SOURCES_STATE,
        // Each depends on an earlier task, which check mode does not run.
        volatile: &[
            "the same repository again",
            "a package from it",
            "the same key by id",
            "the same deb822 source again",
            "what the modules registered",
        ],
    });
    // On clean sources, so only the bad repository fails the update.
    root_sh(ANSIBLE_SD, APT_SOURCES_RESET);
    root_sh(DEPLOYER_SD, APT_SOURCES_RESET);
    let before = root_sh(DEPLOYER_SD, APT_SOURCES_STATE);
    let (code, bad) = deployer_run("apt_sources_bad.yml", "apply");
    assert_eq!(code, 1);
    assert!(
        bad[0].2
            && bad[0]
                .3
                .starts_with("Failed to update apt cache after 2 retries: ")
            && bad[0].3.contains("file:/srv/dpl-no-such-repo"),
        "{bad:?}"
    );
    let (_, abad) = ansible_playbook("apt_sources_bad.yml", false);
    assert!(
        abad[0].2
            && abad[0]
                .3
                .starts_with("Failed to update apt cache after 2 retries: "),
        "{abad:?}"
    );
    assert_eq!(root_sh(DEPLOYER_SD, APT_SOURCES_STATE), before);
    assert_eq!(root_sh(ANSIBLE_SD, APT_SOURCES_STATE), before);
    root_sh(ANSIBLE_SD, APT_SOURCES_RESET);
    root_sh(DEPLOYER_SD, APT_SOURCES_RESET);
}

const LOCALE_RESET: &str = "rm -f /root/deployer-locale.json; true";
const LOCALE_STATE: &str = "stat -c '%n %a %U %G' /etc/locale.gen; grep -v '^#' /etc/locale.gen | grep .; LC_ALL=C locale -a; \
     cat /root/deployer-locale.json 2>/dev/null; true";

/// locale_gen: the same /etc/locale.gen lines and compiled locales
/// (`locale -a`), per-task `changed` and registered keys as
/// ansible-playbook; a locale that does not exist fails naming it and
/// changes nothing. (The collection's check mode reports no change;
/// deployer's predicts, checked against its own first run.)
#[test]
fn locale_gen_matches_ansible() {
    let tasks = [
        "a new locale",
        "two locales, one spelled as locale -a does",
        "a locale that is there",
        "a locale removed",
        "what the modules registered",
    ];
    differential(&Differential {
        prep: "locale_prep.yml",
        playbook: "locale.yml",
        reset: LOCALE_RESET,
        state: LOCALE_STATE,
        volatile: &tasks,
    });
    let before = root_sh(DEPLOYER_SD, LOCALE_STATE);
    let (code, bad) = deployer_run("locale_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("locale_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert_eq!(
        bad[0].3,
        "The following locales you have entered are not available on your system: xx_XX.UTF-8"
    );
    assert_eq!(root_sh(DEPLOYER_SD, LOCALE_STATE), before);
    // Check mode predicts the first run.
    root_sh(DEPLOYER_SD, LOCALE_RESET);
    let (code, _) = deployer_run("locale_prep.yml", "apply");
    assert_eq!(code, 0);
    let (_, predicted) = deployer_run("locale.yml", "check");
    let (_, first) = deployer_run("locale.yml", "apply");
    let without_record = |t: &[Outcome]| outcomes(t, &["what the modules registered"]);
    assert_eq!(without_record(&predicted), without_record(&first));
    assert!(first[0].1, "{first:?}");
}

/// Removes what the pip fixtures make and writes the test's own wheels to
/// /srv/dpl-wheels (tests/fixtures/server_modules/files/dpl_wheels.py), so
/// pip never reaches PyPI.
fn pip_reset() -> String {
    format!(
        "rm -rf /opt/dpl-pip /srv/dpl-wheels /root/deployer-pip.json; \
         PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip uninstall -y -q dplextra >/dev/null 2>&1; \
         python3 - <<'EOF'\n{}\nEOF\n",
        std::fs::read_to_string(fixture().join("files/dpl_wheels.py")).expect("dpl_wheels.py")
    )
}

const PIP_STATE: &str = "for v in /opt/dpl-pip/venv /opt/dpl-pip/venv2; do stat -c '%n %a %U' $v $v/lib 2>/dev/null; \
     $v/bin/pip list --format=freeze 2>/dev/null; done; \
     python3 -m pip list --format=freeze 2>/dev/null | grep -i '^dpl'; \
     cat /root/deployer-pip.json 2>/dev/null; true";

/// pip: the same virtualenvs (made with venv, with the system's packages,
/// under a umask), packages and versions in them and system-wide, per-task
/// `changed` and registered keys as ansible-playbook, from wheels the test
/// makes itself; a package that is not there fails with pip's own message
/// and changes nothing.
#[test]
fn pip_matches_ansible() {
    let reset = pip_reset();
    differential(&Differential {
        prep: "pip_prep.yml",
        playbook: "pip.yml",
        reset: &reset,
        state: PIP_STATE,
        // Ansible's check mode predicts no change for forcereinstall, which
        // always reinstalls.
        volatile: &["forcereinstall", "what the modules registered"],
    });
    let before = root_sh(DEPLOYER_SD, PIP_STATE);
    let (code, bad) = deployer_run("pip_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("pip_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert!(
        bad[0].2
            && bad[0]
                .3
                .contains("No matching distribution found for dpl-no-such"),
        "{bad:?}"
    );
    assert_eq!(root_sh(DEPLOYER_SD, PIP_STATE), before);
    root_sh(ANSIBLE_SD, &reset);
    root_sh(DEPLOYER_SD, &reset);
}

/// With `start`, names a systemd host `dpl-start` (the same on both, so
/// the first task's `diff` is too) and adds names for the fixtures to
/// /etc/hosts (so the fqdn lookups never leave the host); without, puts its
/// name back as the test found it (saved once in /root/.dpl-hostname).
/// Docker bind-mounts /etc/hostname, which hostnamed cannot replace: the
/// mount is taken away (the container's own file under it is written) and
/// hostnamed restarted to see that, as on a real host.
fn hostname_reset(start: bool) -> String {
    format!(
        "[ -s /root/.dpl-hostname ] || uname -n > /root/.dpl-hostname; n={}; \
         if grep -q ' /etc/hostname ' /proc/self/mountinfo; then umount /etc/hostname; systemctl stop systemd-hostnamed; fi; \
         printf '%s\\n' \"$n\" > /etc/hostname; hostnamectl set-hostname \"$n\"; hostnamectl --pretty set-hostname ''; \
         grep -v dpl /etc/hosts > /root/.dpl-hosts; cat /root/.dpl-hosts > /etc/hosts; rm -f /root/.dpl-hosts /root/deployer-hostname.json; \
         {} true",
        if start {
            "dpl-start"
        } else {
            "$(cat /root/.dpl-hostname)"
        },
        if start {
            "printf '127.0.1.4\\tdpl-start\\n127.0.1.6\\tdplhost2.example.test dplhost2\\n' >> /etc/hosts;"
        } else {
            ""
        }
    )
}

const HOSTNAME_STATE: &str = "hostnamectl --static status; hostnamectl --transient status; hostnamectl --pretty status; \
     uname -n; cat /etc/hostname; cat /root/deployer-hostname.json 2>/dev/null; true";

/// hostname: the same static, transient and pretty names, /etc/hostname,
/// `changed`, `diff` and facts (`ansible_hostname`, `ansible_fqdn`, ...) as
/// ansible-playbook, with the strategy Ansible picks (systemd) and with
/// `use`; a name systemd refuses fails as Ansible's does. The hosts get
/// their names back at the end.
#[test]
fn hostname_matches_ansible() {
    // The facts tests compare the hosts' names.
    let _zone = zone_lock();
    differential(&Differential {
        prep: "hostname_prep.yml",
        playbook: "hostname.yml",
        reset: &hostname_reset(true),
        state: HOSTNAME_STATE,
        // In check mode the first task changes nothing, so the second still
        // predicts a change (as Ansible's --check does).
        volatile: &["the same name again", "what the modules registered"],
    });
    let before = root_sh(DEPLOYER_SD, HOSTNAME_STATE);
    let (code, bad) = deployer_run("hostname_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("hostname_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert!(bad[0].2 && bad[0].3.contains("longer than 64 characters"));
    assert_eq!(root_sh(DEPLOYER_SD, HOSTNAME_STATE), before);
    root_sh(ANSIBLE_SD, &hostname_reset(false));
    root_sh(DEPLOYER_SD, &hostname_reset(false));
}

const COPY_REMOTE_RESET: &str =
    "rm -rf /srv/dpl-src /opt/dpl-copy /root/deployer-copy-remote.json; true";
const COPY_REMOTE_STATE: &str = "cd /opt/dpl-copy 2>/dev/null && find . | sort | while read -r f; do stat -c '%n %a %U %G %s %F' \"$f\"; \
     if [ -f \"$f\" ]; then case $f in ./merge/*) ;; *) stat -c %Y \"$f\" ;; esac; md5sum < \"$f\"; fi; done | sed 's/\\.[0-9]*\\.[0-9-]*@[0-9:]*~/.BACKUP~/'; \
     cat /root/deployer-copy-remote.json 2>/dev/null; true";

/// copy with remote_src: the same files (content, mode, owner, time),
/// `changed`, backups and registered values as ansible-playbook for a new
/// file, a directory as dest, a replaced file (the source's mode, no longer
/// the old owner), attributes only, force=false, and directories as src
/// (under their own name, their content merged with an owner, to a new
/// path); a missing source fails naming it.
#[test]
fn copy_remote_src_matches_ansible() {
    differential(&Differential {
        prep: "copy_remote_prep.yml",
        playbook: "copy_remote.yml",
        reset: COPY_REMOTE_RESET,
        state: COPY_REMOTE_STATE,
        volatile: &["the new file again", "what the modules registered"],
    });
    let before = root_sh(DEPLOYER_SD, COPY_REMOTE_STATE);
    let (code, bad) = deployer_run("copy_remote_bad.yml", "apply");
    assert_eq!(code, 1);
    let (_, abad) = ansible_playbook("copy_remote_bad.yml", false);
    assert_eq!(bad[0].3, abad[0].3, "{bad:?}");
    assert_eq!(bad[0].3, "Source /srv/dpl-src/missing.conf not found");
    assert_eq!(root_sh(DEPLOYER_SD, COPY_REMOTE_STATE), before);
}

const SELINUX_RESET: &str = "rm -rf /opt/dpl-se /root/deployer-selinux.json; true";
const SELINUX_STATE: &str = "cd /opt/dpl-se 2>/dev/null && find . | sort | while read -r f; do stat -c '%n %a %U %G %s %F' \"$f\"; \
     [ -f \"$f\" ] && cat \"$f\"; done; cat /root/deployer-selinux.json 2>/dev/null; true";

/// seuser, serole, setype and selevel on file, copy, lineinfile and
/// blockinfile where SELinux is absent (the testbed's Debian): ignored as
/// Ansible ignores them, the same files and `changed` as ansible-playbook,
/// and no `secontext` registered.
#[test]
fn selinux_arguments_without_selinux_match_ansible() {
    root_sh(
        DEPLOYER_SD,
        "! command -v selinuxenabled >/dev/null 2>&1 || ! selinuxenabled; [ ! -e /sys/fs/selinux/enforce ]",
    );
    differential(&Differential {
        prep: "selinux_prep.yml",
        playbook: "selinux.yml",
        reset: SELINUX_RESET,
        state: SELINUX_STATE,
        volatile: &["what the modules registered"],
    });
}
