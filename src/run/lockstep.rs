//! `any_errors_fatal` and `max_fail_percentage`: the hosts of a batch meet
//! after every task, as Ansible's linear strategy keeps them in lock step
//! (`plugins/strategy/linear.py`), and the outcome of the task over the whole
//! batch decides whether the others go on:
//!
//! - a task failed on some host and `any_errors_fatal` holds for it (play,
//!   block or task keyword; never with `ignore_errors`): every other host of
//!   the batch is marked failed, without a failure counted for it (a block's
//!   `rescue` still runs, as `PlayIterator.mark_host_failed` leads there);
//! - more than `max_fail_percentage` % of the batch has failed (a failure a
//!   `rescue` or `always` section may still answer is not counted yet): every
//!   host stops at once, `rescue`, `always` and handlers included, and the
//!   playbook ends.
//!
//! deployer runs hosts side by side, so the meeting point is a barrier on a
//! count: every host still running tasks arrives once per task it reaches
//! (skipped ones too) or leaves the play; the step resolves when every host
//! still in the play has arrived. A host never waits for a host that left, so
//! a host that stops early (failed, `end_host`) cannot stall the others.
//! While a host waits it gives back its `--forks` slot.

use std::sync::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::*;

/// What the batch decided for one host after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Go on with the next task.
    Continue,
    /// Another host's failure under `any_errors_fatal`: this host is failed.
    PeerFailed,
    /// `max_fail_percentage` exceeded: stop now, nothing more runs.
    Abort,
}

struct Arrival {
    host: String,
    /// This step's task failed on the host (errors not ignored).
    failed: bool,
    /// The failure counts toward `max_fail_percentage` now (no enclosing
    /// `rescue`/`always` can answer it).
    settled: bool,
    /// `any_errors_fatal` holds for the task.
    fatal: bool,
}

#[derive(Default)]
struct State {
    /// Hosts of the batch that still run tasks.
    active: Vec<String>,
    arrivals: Vec<Arrival>,
    generation: u64,
    /// The verdicts of the last resolved step, by host.
    verdicts: HashMap<String, Verdict>,
    /// Hosts of the batch counted as failed for `max_fail_percentage`.
    failed: Vec<String>,
    aborted: bool,
}

/// The lock step of one batch of a play.
pub(super) struct Lockstep {
    batch_size: usize,
    max_fail_percentage: Option<f64>,
    sem: Arc<Semaphore>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Lockstep {
    pub fn new(
        hosts: &[String],
        batch_size: usize,
        max_fail_percentage: Option<f64>,
        sem: Arc<Semaphore>,
    ) -> Lockstep {
        Lockstep {
            batch_size: batch_size.max(1),
            max_fail_percentage,
            sem,
            state: Mutex::new(State {
                active: hosts.to_vec(),
                ..State::default()
            }),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `max_fail_percentage` was exceeded in this batch: the playbook ends.
    pub fn aborted(&self) -> bool {
        self.lock().aborted
    }

    /// `host` runs no more tasks of this play (done, failed or ended).
    pub fn leave(&self, host: &str) {
        let mut st = self.lock();
        let before = st.active.len();
        st.active.retain(|h| h != host);
        if st.active.len() != before {
            self.resolve_if_complete(&mut st);
        }
    }

    /// `host` finished a task: wait for the batch and take its verdict. The
    /// `--forks` slot `permit` is given back while waiting.
    pub async fn step(
        &self,
        host: &str,
        failed: bool,
        settled: bool,
        fatal: bool,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Verdict {
        let mut rx = self.changed.subscribe();
        let generation = {
            let mut st = self.lock();
            if !st.active.iter().any(|h| h == host) {
                return Verdict::Continue;
            }
            st.arrivals.push(Arrival {
                host: host.to_string(),
                failed,
                settled,
                fatal,
            });
            let generation = st.generation;
            self.resolve_if_complete(&mut st);
            if st.generation != generation {
                return st.verdicts.get(host).copied().unwrap_or(Verdict::Continue);
            }
            generation
        };
        let held = permit.take();
        drop(held);
        loop {
            let verdict = {
                let st = self.lock();
                (st.generation != generation)
                    .then(|| st.verdicts.get(host).copied().unwrap_or(Verdict::Continue))
            };
            if let Some(verdict) = verdict {
                *permit = self.sem.clone().acquire_owned().await.ok();
                return verdict;
            }
            if rx.changed().await.is_err() {
                *permit = self.sem.clone().acquire_owned().await.ok();
                return Verdict::Continue;
            }
        }
    }

    /// Every host still in the play has arrived: decide, as linear.py does
    /// after a task's results are in.
    fn resolve_if_complete(&self, st: &mut State) {
        if st.arrivals.is_empty() || st.arrivals.len() < st.active.len() {
            return;
        }
        let arrivals = std::mem::take(&mut st.arrivals);
        let mut verdicts: HashMap<String, Verdict> = arrivals
            .iter()
            .map(|a| (a.host.clone(), Verdict::Continue))
            .collect();
        for a in &arrivals {
            if a.failed && a.settled && !st.failed.contains(&a.host) {
                st.failed.push(a.host.clone());
            }
        }
        if arrivals.iter().any(|a| a.failed && a.fatal) {
            for a in arrivals.iter().filter(|a| !a.failed) {
                verdicts.insert(a.host.clone(), Verdict::PeerFailed);
                if !st.failed.contains(&a.host) {
                    st.failed.push(a.host.clone());
                }
            }
        }
        if let Some(pct) = self.max_fail_percentage
            && (st.failed.len() as f64 / self.batch_size as f64) > pct / 100.0
        {
            st.aborted = true;
            for v in verdicts.values_mut() {
                *v = Verdict::Abort;
            }
        }
        st.verdicts = verdicts;
        st.generation += 1;
        self.changed.send_modify(|g| *g += 1);
    }
}
