//! `run_once`: one host runs the task, every other host of the play takes its
//! result, as Ansible's linear strategy does (`plugins/strategy/linear.py`
//! queues a `run_once` task for the first host only; `strategy/__init__.py`
//! registers the result and sets the facts on every host of the play, and a
//! failure fails them all).
//!
//! deployer runs hosts side by side, not in lock step, so "the first host"
//! needs a rule: a task's runner is the first host, in the play's host order,
//! that reaches it while every host before it has finished the play. A host
//! that reaches the task earlier waits, so the runner is the same host
//! Ansible picks and nobody reads a result that does not exist yet. The first
//! host still running never waits (there is nobody before it), so some host
//! always makes progress. A task reached several times (in a handler flushed
//! twice, an included file run per item) is a new task each time: the key is
//! the task and how often this host has reached it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use tokio::sync::watch;

/// One reach of a `run_once` task: the task's address and the how-many-th
/// time the host reaches it.
pub(super) type Key = (usize, usize);

/// What the runner's task leaves on every host.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    /// The value `register` stores.
    pub registered: Json,
    /// Variables set by the task (`set_fact`).
    pub facts: Vec<(String, Json)>,
    /// The task failed (errors not ignored): every host stops.
    pub failed: bool,
}

impl Shared {
    fn abandoned() -> Shared {
        Shared {
            registered: serde_json::json!({
                "failed": true, "changed": false,
                "msg": "the host running this run_once task stopped before it finished",
            }),
            facts: Vec::new(),
            failed: true,
        }
    }
}

enum Slot {
    Running,
    Done(Arc<Shared>),
}

#[derive(Default)]
struct State {
    /// Hosts that run no more tasks of this play.
    finished: HashSet<String>,
    slots: HashMap<Key, Slot>,
}

/// The play's `run_once` bookkeeping, shared by its hosts.
pub(super) struct RunOnce {
    order: Vec<String>,
    state: Mutex<State>,
    /// Bumped whenever a slot is filled or a host finishes.
    changed: watch::Sender<u64>,
}

/// What a host does at a `run_once` task.
pub(super) enum Turn<'a> {
    /// Run it; hand the result to [`Runner::finish`].
    Run(Runner<'a>),
    /// Another host ran it: take its result.
    Take(Arc<Shared>),
}

/// The host running a `run_once` task. Dropped without [`Runner::finish`]
/// (the run stopped), the others take a failure instead of waiting forever.
pub(super) struct Runner<'a> {
    once: &'a RunOnce,
    key: Key,
    done: bool,
}

impl Runner<'_> {
    pub fn finish(mut self, result: Shared) {
        self.done = true;
        self.once.fill(self.key, result);
    }
}

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.once.fill(self.key, Shared::abandoned());
        }
    }
}

impl RunOnce {
    pub fn new(order: &[String]) -> RunOnce {
        RunOnce {
            order: order.to_vec(),
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        }
    }

    /// `host` reached the task `key`: run it, or wait for the host that runs
    /// it and take its result.
    pub async fn reach(&self, host: &str, key: Key) -> Turn<'_> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let mut st = self.lock();
                match st.slots.get(&key) {
                    Some(Slot::Done(r)) => return Turn::Take(r.clone()),
                    Some(Slot::Running) => {}
                    None => {
                        let before = self.order.iter().take_while(|h| *h != host);
                        if before.into_iter().all(|h| st.finished.contains(h)) {
                            st.slots.insert(key, Slot::Running);
                            return Turn::Run(Runner {
                                once: self,
                                key,
                                done: false,
                            });
                        }
                    }
                }
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`: unreachable, but never hang.
                return Turn::Take(Arc::new(Shared::abandoned()));
            }
        }
    }

    /// `host` runs no more tasks of this play.
    pub fn finished(&self, host: &str) {
        self.lock().finished.insert(host.to_string());
        self.changed.send_modify(|n| *n += 1);
    }

    fn fill(&self, key: Key, result: Shared) {
        self.lock().slots.insert(key, Slot::Done(Arc::new(result)));
        self.changed.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hosts() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    fn result(v: i64) -> Shared {
        Shared {
            registered: serde_json::json!({ "v": v }),
            facts: Vec::new(),
            failed: false,
        }
    }

    #[tokio::test]
    async fn a_later_host_waits_for_the_first_and_takes_its_result() {
        let once = Arc::new(RunOnce::new(&hosts()));
        let o = once.clone();
        let waiter = tokio::spawn(async move {
            match o.reach("b", (1, 0)).await {
                Turn::Take(r) => r.registered.clone(),
                Turn::Run(_) => panic!("b must not run the task while a has not finished"),
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "b took a result before a ran the task"
        );
        match once.reach("a", (1, 0)).await {
            Turn::Run(r) => r.finish(result(7)),
            Turn::Take(_) => panic!("a is first: it runs the task"),
        }
        assert_eq!(waiter.await.expect("join"), serde_json::json!({"v": 7}));
    }

    #[tokio::test]
    async fn the_next_host_runs_the_task_when_the_first_finished_the_play() {
        let once = RunOnce::new(&hosts());
        once.finished("a");
        match once.reach("b", (1, 0)).await {
            Turn::Run(r) => r.finish(result(1)),
            Turn::Take(_) => panic!("b is the first host still running"),
        }
        match once.reach("c", (1, 0)).await {
            Turn::Take(r) => assert_eq!(r.registered, serde_json::json!({"v": 1})),
            Turn::Run(_) => panic!("c must take b's result"),
        }
    }

    #[tokio::test]
    async fn each_reach_of_a_task_is_run_once() {
        let once = RunOnce::new(&hosts());
        for n in 0..2 {
            match once.reach("a", (1, n)).await {
                Turn::Run(r) => r.finish(result(n as i64)),
                Turn::Take(_) => panic!("a runs every reach"),
            }
        }
        match once.reach("b", (1, 1)).await {
            Turn::Take(r) => assert_eq!(r.registered, serde_json::json!({"v": 1})),
            Turn::Run(_) => panic!("b takes a's second result"),
        }
    }

    #[tokio::test]
    async fn a_runner_dropped_unfinished_fails_the_others_instead_of_hanging() {
        let once = RunOnce::new(&hosts());
        match once.reach("a", (1, 0)).await {
            Turn::Run(r) => drop(r),
            Turn::Take(_) => panic!("a is first"),
        }
        match once.reach("b", (1, 0)).await {
            Turn::Take(r) => assert!(r.failed),
            Turn::Run(_) => panic!("the slot is filled"),
        }
    }
}
