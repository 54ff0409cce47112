//! The one background-worker model: every periodic duty of a node (gossip, hint delivery,
//! ownership handoff, anti-entropy, reaping) is a [`Worker`] driven by the same runner, so the
//! timer, the early wake-up, the shutdown and the state an operator sees are written once.
//!
//! A worker only says what one step does; [`spawn`] waits for the next tick (or an early
//! [`WorkerHandle::wake`]), runs the step, records its outcome in the node's [`Workers`]
//! registry, and stops on the cancellation token. The last error is kept after later
//! successes, with its time, so an intermittent failure stays visible; `state` tells whether
//! the worker is failing now.

use parking_lot::Mutex;
use riftkv_core::types::Clock;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Work was done.
    Busy,
    /// Nothing to do this time.
    Idle,
    /// The duty is over for good (e.g. the node has left); the runner stops.
    Done,
}

/// The state of a worker, as `/v1/admin/status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Running a step, or its last step did work.
    Active,
    /// Its last step found nothing to do (or it has not run yet).
    Idle,
    /// Its last step failed.
    Error,
    /// It has stopped (shutdown, or the duty is over).
    Stopped,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Idle => "idle",
            WorkerState::Error => "error",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// When a worker's first step runs; later steps follow every period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstTick {
    Immediately,
    AfterPeriod,
}

/// One periodic duty.
pub trait Worker: Send + 'static {
    /// Stable name, shown to operators.
    fn name(&self) -> &'static str;
    /// Pause between steps; a step that outlasts it delays the next tick (no burst).
    fn period(&self) -> Duration;
    fn first_tick(&self) -> FirstTick {
        FirstTick::Immediately
    }
    /// Whether shutdown abandons a running step (true) or lets it finish first (false, for
    /// steps whose rounds are short and bounded).
    fn cancel_step_on_shutdown(&self) -> bool {
        true
    }
    /// One round of work. Errors are recorded; the worker keeps running.
    fn step(&mut self) -> impl Future<Output = Result<Step, String>> + Send;
}

/// What the registry knows of one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// The most recent failure, kept after later successes.
    pub last_error: Option<String>,
    /// When `last_error` happened (ms since the Unix epoch, the node's clock).
    pub last_error_at_ms: Option<u64>,
    /// Steps run since start.
    pub steps: u64,
    /// Steps that failed since start.
    pub errors: u64,
}

struct Entry {
    status: Mutex<WorkerStatus>,
    wake: Notify,
}

/// The workers of one node and their latest state (held by `Node`).
pub struct Workers {
    clock: Arc<dyn Clock>,
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl Workers {
    pub fn new(clock: Arc<dyn Clock>) -> Workers {
        Workers {
            clock,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Every registered worker, in start order. A worker started twice (a restarted duty)
    /// appears under one name: the latest start wins.
    pub fn list(&self) -> Vec<WorkerStatus> {
        let entries = self.entries.lock();
        entries.iter().map(|e| e.status.lock().clone()).collect()
    }

    /// Wakes the named worker for an early step; no-op for an unknown name. A wake while the
    /// worker is busy is kept and runs one more step right after.
    pub fn wake(&self, name: &str) {
        let entries = self.entries.lock();
        if let Some(e) = entries.iter().find(|e| e.status.lock().name == name) {
            e.wake.notify_one();
        }
    }

    fn register(&self, name: &str) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            status: Mutex::new(WorkerStatus {
                name: name.to_string(),
                state: WorkerState::Idle,
                last_error: None,
                last_error_at_ms: None,
                steps: 0,
                errors: 0,
            }),
            wake: Notify::new(),
        });
        let mut entries = self.entries.lock();
        entries.retain(|e| e.status.lock().name != name);
        entries.push(entry.clone());
        entry
    }

    fn record(&self, entry: &Entry, outcome: &Result<Step, String>) {
        let now = self.clock.now_ms();
        let mut s = entry.status.lock();
        s.steps += 1;
        match outcome {
            Ok(Step::Busy) => s.state = WorkerState::Active,
            Ok(Step::Idle) => s.state = WorkerState::Idle,
            Ok(Step::Done) => s.state = WorkerState::Stopped,
            Err(e) => {
                s.state = WorkerState::Error;
                s.errors += 1;
                s.last_error = Some(e.clone());
                s.last_error_at_ms = Some(now);
            }
        }
    }
}

/// A handle to wake one running worker early (new work arrived).
#[derive(Clone)]
pub struct WorkerHandle {
    entry: Arc<Entry>,
}

impl WorkerHandle {
    pub fn wake(&self) {
        self.entry.wake.notify_one();
    }
}

/// Starts `worker` on its own task: it steps on every tick or wake-up until `shutdown` is
/// cancelled or a step answers [`Step::Done`].
pub fn spawn<W: Worker>(
    workers: &Arc<Workers>,
    shutdown: &CancellationToken,
    worker: W,
) -> (JoinHandle<()>, WorkerHandle) {
    let entry = workers.register(worker.name());
    let handle = WorkerHandle {
        entry: entry.clone(),
    };
    let task = tokio::spawn(run(workers.clone(), entry, shutdown.clone(), worker));
    (task, handle)
}

async fn run<W: Worker>(
    workers: Arc<Workers>,
    entry: Arc<Entry>,
    shutdown: CancellationToken,
    mut worker: W,
) {
    // A zero period would make tokio's interval panic; 1 ms is as good as "always".
    let period = worker.period().max(Duration::from_millis(1));
    let start = match worker.first_tick() {
        FirstTick::Immediately => tokio::time::Instant::now(),
        FirstTick::AfterPeriod => tokio::time::Instant::now() + period,
    };
    let mut ticker = tokio::time::interval_at(start, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
            _ = entry.wake.notified() => {}
        }
        entry.status.lock().state = WorkerState::Active;
        let outcome = if worker.cancel_step_on_shutdown() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = worker.step() => r,
            }
        } else {
            worker.step().await
        };
        workers.record(&entry, &outcome);
        if outcome == Ok(Step::Done) {
            break;
        }
    }
    entry.status.lock().state = WorkerState::Stopped;
    tracing::debug!(worker = worker.name(), "worker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct FixedClock(AtomicU64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Answers its scripted outcomes in order, then idles; reports each step on a channel.
    struct Fake {
        period: Duration,
        script: Vec<Result<Step, String>>,
        steps: tokio::sync::mpsc::UnboundedSender<u64>,
        n: u64,
        hang: bool,
    }

    impl Worker for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn period(&self) -> Duration {
            self.period
        }
        async fn step(&mut self) -> Result<Step, String> {
            self.n += 1;
            let _ = self.steps.send(self.n);
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.script.is_empty() {
                Ok(Step::Idle)
            } else {
                self.script.remove(0)
            }
        }
    }

    fn setup(
        period: Duration,
        script: Vec<Result<Step, String>>,
        hang: bool,
    ) -> (
        Arc<Workers>,
        CancellationToken,
        JoinHandle<()>,
        WorkerHandle,
        tokio::sync::mpsc::UnboundedReceiver<u64>,
    ) {
        let workers = Arc::new(Workers::new(Arc::new(FixedClock(AtomicU64::new(42)))));
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let fake = Fake {
            period,
            script,
            steps: tx,
            n: 0,
            hang,
        };
        let (task, handle) = spawn(&workers, &shutdown, fake);
        (workers, shutdown, task, handle, rx)
    }

    const LONG: Duration = Duration::from_secs(3600);

    /// Waits until the runner has recorded `n` steps (the step reports itself before it
    /// returns, so poll the registry briefly).
    async fn until_steps(workers: &Workers, n: u64) -> WorkerStatus {
        for _ in 0..1000 {
            let s = workers.list()[0].clone();
            if s.steps >= n {
                return s;
            }
            tokio::task::yield_now().await;
        }
        panic!("worker did not reach {n} steps");
    }

    #[tokio::test]
    async fn states_follow_the_steps_and_the_last_error_is_kept() {
        let script = vec![
            Ok(Step::Busy),
            Err("disk full".to_string()),
            Ok(Step::Idle),
            Ok(Step::Busy),
        ];
        // A period of an hour: every step after the first is driven by a wake-up, no sleeps.
        let (workers, shutdown, task, handle, mut rx) = setup(LONG, script, false);
        assert_eq!(rx.recv().await, Some(1));
        let s = until_steps(&workers, 1).await;
        assert_eq!((s.name.as_str(), s.state), ("fake", WorkerState::Active));
        assert_eq!(s.last_error, None);

        handle.wake();
        assert_eq!(rx.recv().await, Some(2));
        let s = until_steps(&workers, 2).await;
        assert_eq!(s.state, WorkerState::Error);
        assert_eq!(s.last_error.as_deref(), Some("disk full"));
        assert_eq!((s.last_error_at_ms, s.errors), (Some(42), 1));

        workers.wake("fake");
        assert_eq!(rx.recv().await, Some(3));
        let s = until_steps(&workers, 3).await;
        assert_eq!(s.state, WorkerState::Idle);
        assert_eq!(
            s.last_error.as_deref(),
            Some("disk full"),
            "kept after a success"
        );

        handle.wake();
        let s = until_steps(&workers, 4).await;
        assert_eq!(s.state, WorkerState::Active);

        shutdown.cancel();
        task.await.unwrap();
        let s = workers.list()[0].clone();
        assert_eq!((s.state, s.steps), (WorkerState::Stopped, 4));
    }

    #[tokio::test]
    async fn the_period_drives_steps_without_a_wake() {
        let (workers, shutdown, task, _handle, mut rx) =
            setup(Duration::from_millis(2), vec![], false);
        for i in 1..=3 {
            assert_eq!(rx.recv().await, Some(i));
        }
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(workers.list()[0].state, WorkerState::Stopped);
    }

    #[tokio::test]
    async fn a_wake_during_a_step_is_not_lost() {
        let (workers, shutdown, task, handle, mut rx) = setup(LONG, vec![], false);
        handle.wake(); // arrives while the first (immediate) step may still run
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        until_steps(&workers, 2).await;
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_stops_a_waiting_or_running_worker_promptly() {
        let (workers, shutdown, task, _h, mut rx) = setup(LONG, vec![], false);
        assert_eq!(rx.recv().await, Some(1));
        until_steps(&workers, 1).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a waiting worker stops")
            .unwrap();

        let (workers, shutdown, task, _h, mut rx) = setup(LONG, vec![], true);
        assert_eq!(rx.recv().await, Some(1)); // now inside a step that never ends
        assert_eq!(workers.list()[0].state, WorkerState::Active);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a running step is abandoned")
            .unwrap();
        assert_eq!(workers.list()[0].state, WorkerState::Stopped);
    }

    #[tokio::test]
    async fn done_stops_the_worker() {
        let (workers, _shutdown, task, _h, _rx) = setup(LONG, vec![Ok(Step::Done)], false);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a finished duty stops")
            .unwrap();
        let s = workers.list()[0].clone();
        assert_eq!((s.state, s.steps), (WorkerState::Stopped, 1));
    }
}
