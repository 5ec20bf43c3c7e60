//! Crash safety on the real testbed: a long first apply is interrupted at a
//! random moment, many times in a row, either by SIGKILL of the deployer
//! process or by cutting its SSH link (SIGKILL of the run's SSH master). After
//! each interruption every managed file on the host is absent or complete
//! (never torn), and the next run converges without any manual step: the
//! dead run's deploy lock is taken over (its holder was a process of this
//! machine that no longer exists) and every file ends complete.
//!
//! `DEPLOYER_CRASH_TRIALS` sets the number of trials per kind (default 50).
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const FILES: usize = 8;

fn trials() -> usize {
    std::env::var("DEPLOYER_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// One play writing [`FILES`] files of about 40 KB each under `root`.
fn long_project(host: &str, root: &str) -> tempfile::TempDir {
    let items: Vec<String> = (0..FILES).map(|i| format!("f{i:02}")).collect();
    project(&[
        (
            "site.yml",
            &format!(
                "- name: Many files
  hosts: {host}
  become: true
  gather_facts: false
  tasks:
    - name: The directory
      ansible.builtin.file:
        path: {root}
        state: directory
        mode: \"0755\"
    - name: A big file
      ansible.builtin.template:
        src: big.j2
        dest: \"{root}/{{{{ item }}}}.txt\"
        mode: \"0644\"
      loop: [{}]
",
                items.join(", ")
            ),
        ),
        (
            "templates/big.j2",
            "{% for i in range(1500) %}line {{ i }} of {{ item }}: the quick brown fox\n{% endfor %}END OF {{ item }}\n",
        ),
    ])
}

/// A tiny pseudo-random generator (xorshift), seeded from the clock; the seed
/// is printed so a failing sequence can be replayed with DEPLOYER_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("DEPLOYER_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(42)
                    | 1
            });
        eprintln!("crash trials: DEPLOYER_CRASH_SEED={seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn spawn_apply(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["apply", "-i", &inv(), "site.yml"])
        // The run's own SSH master (not a warm one kept from an earlier run)
        // is the link this test cuts.
        .env("DEPLOYER_FRESH_CONNECTION", "1")
        .current_dir(dir)
        .env_remove("DEPLOYER_INVENTORY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deployer")
}

/// The SSH processes this test's runs started: their working directory is
/// the project (OpenSSH's master keeps it when it goes to the background).
/// `master_only`: just the masters (`ssh -M`).
fn ssh_processes_of(dir: &Path, master_only: bool) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let is_master = cmdline.split(|b| *b == 0).any(|a| a == b"-M");
            comm.trim() == "ssh" && cwd.as_deref() == Some(&dir) && (!master_only || is_master)
        })
        .collect()
}

fn kill9(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// `name -> sha256` of the files under `root` on `host` (as root).
fn hashes(host: &str, root: &str) -> BTreeMap<String, String> {
    on_host(
        host,
        &format!(
            // No directory or no file yet is an answer (an empty map), not a
            // failure: the script succeeds then; ssh or sha256sum failing fails it.
            "if [ -d {root} ]; then cd {root} && for f in f*.txt; do if [ -e \"$f\" ]; then sha256sum \"$f\"; fi; done; fi"
        ),
    )
    .lines()
    .filter_map(|l| {
        let (h, f) = l.split_once("  ")?;
        Some((f.to_string(), h.to_string()))
    })
    .collect()
}

fn wait_with_timeout(mut c: Child, limit: Duration) -> Out {
    let start = Instant::now();
    loop {
        if c.try_wait().expect("try_wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            kill9(c.id());
            let o = c.wait_with_output().expect("wait");
            panic!(
                "deployer did not end within {limit:?} after its link was cut:\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = c.wait_with_output().expect("wait");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Cut {
    /// SIGKILL of the deployer process.
    KillDeployer,
    /// SIGKILL of the run's SSH master: the link drops under a live deployer.
    KillLink,
}

fn trials_of(kind: Cut, host: &str) {
    let root = format!(
        "/srv/dt-crash-{}",
        if kind == Cut::KillDeployer {
            "kill"
        } else {
            "link"
        }
    );
    let p = long_project(host, &root);
    let dir = p.path();
    let name = dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let state = format!("/var/lib/deployer/{name}");
    let reset = || on_host(host, &format!("rm -rf {root} {state}"));
    reset();
    // The complete files, and how long a whole first apply takes.
    let t0 = Instant::now();
    let full = deployer(
        dir,
        &["apply", "--fresh-connection", "-i", &inv(), "site.yml"],
    );
    let whole = t0.elapsed();
    assert_eq!(full.code, 0, "{}", full.all());
    let complete = hashes(host, &root);
    assert_eq!(complete.len(), FILES, "{complete:?}");
    eprintln!("{kind:?}: a whole first apply takes {whole:?}");
    let mut rng = Rng::new();
    let (mut partial, mut took_over) = (0, 0);
    for trial in 0..trials() {
        reset();
        let c = spawn_apply(dir);
        let at = Duration::from_millis(rng.below(whole.as_millis() as u64 + 1));
        std::thread::sleep(at);
        let ended = match kind {
            Cut::KillDeployer => {
                kill9(c.id());
                let o = wait_with_timeout(c, Duration::from_secs(10));
                // Its SSH master lives on in the background, as after a real
                // SIGKILL; the remote side may finish its current script.
                std::thread::sleep(Duration::from_millis(300));
                for pid in ssh_processes_of(dir, false) {
                    kill9(pid);
                }
                o
            }
            Cut::KillLink => {
                for pid in ssh_processes_of(dir, true) {
                    kill9(pid);
                }
                wait_with_timeout(c, Duration::from_secs(120))
            }
        };
        assert!(!ended.all().contains("panicked"), "{}", ended.all());
        let seen = hashes(host, &root);
        for (f, h) in &seen {
            assert_eq!(
                Some(h),
                complete.get(f),
                "trial {trial} ({kind:?} after {at:?}): {f} is torn on {host}"
            );
        }
        if seen.len() < FILES {
            partial += 1;
        }
        let locked = on_host_status(host, &format!("test -e {state}/lock && echo locked"))
            .1
            .contains("locked");
        // The next run converges, with no manual step.
        let again = deployer(
            dir,
            &["apply", "--fresh-connection", "-i", &inv(), "site.yml"],
        );
        assert_eq!(
            again.code,
            0,
            "trial {trial} ({kind:?} after {at:?}, first run: {}): the re-run failed:\n{}",
            ended.all(),
            again.all()
        );
        if locked {
            assert!(
                again.stdout.contains("took over the deploy lock of run"),
                "trial {trial}: a stale lock was there but no takeover was reported:\n{}",
                again.all()
            );
            took_over += 1;
        }
        assert_eq!(
            hashes(host, &root),
            complete,
            "trial {trial} ({kind:?} after {at:?})"
        );
        for pid in ssh_processes_of(dir, false) {
            kill9(pid);
        }
    }
    eprintln!(
        "{kind:?}: {} trials, {partial} left some files absent, {took_over} took a dead run's lock over",
        trials()
    );
    // The trials must have interrupted runs, not only watched finished ones.
    assert!(partial > 0, "no trial interrupted the apply before its end");
    let noop = deployer(
        dir,
        &[
            "apply",
            "--fresh-connection",
            "-i",
            &inv(),
            "site.yml",
            "--format",
            "json",
        ],
    );
    assert_eq!(noop.code, 0, "{}", noop.all());
    assert_eq!(total(&recap(&noop.stdout), "changed"), 0, "{}", noop.stdout);
    reset();
}

#[test]
fn sigkill_of_the_deployer_at_random_points_never_tears_a_file_and_the_rerun_converges() {
    trials_of(Cut::KillDeployer, "tb2");
}

#[test]
fn a_cut_ssh_link_at_random_points_never_tears_a_file_and_the_rerun_converges() {
    trials_of(Cut::KillLink, "tb3");
}
