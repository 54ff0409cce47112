//! Drives a [`Target`]: the load phase, then the measured run, closed or open loop.
//!
//! Closed loop: `concurrency` workers, each sending its next operation when the previous
//! one answered; latency is from send to answer.
//!
//! Open loop (`--target-rate R`): operation `i` is scheduled at its intended start
//! `t0 + i/R`, whatever happened to earlier ones. `concurrency` workers take operations in
//! order, wait for the intended start, send, and record the latency from the *intended*
//! start: when the target stalls, the operations that should have been sent meanwhile are
//! sent late and their waiting is counted (no coordinated omission). An operation still not
//! sent [`OPEN_LOOP_GRACE`] after the run's end is not sent at all and counts as a `missed`
//! error, its latency the time it had waited.

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::generator::{Distribution, InsertCounter, KeyChooser};
use crate::report::{LoadSummary, Recorder};
use crate::target::{ErrorKind, OpError, Target};
use crate::workload::{OpChooser, OpKind, Workload, key_name, scan_length};

/// How long after its end an open-loop run still sends late operations.
pub const OPEN_LOOP_GRACE: Duration = Duration::from_secs(10);

/// What ends the measured run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    Duration(Duration),
    Operations(u64),
}

/// Closed or open loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    Closed,
    /// Operations per second, over all workers.
    Open(f64),
}

/// Settings of a measured run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub workload: Workload,
    pub distribution: Distribution,
    /// Records that exist before the run: keys `0..records`.
    pub records: u64,
    pub value_size: usize,
    pub concurrency: usize,
    pub bound: Bound,
    pub pace: Pace,
    pub seed: u64,
    /// Open loop: how long after the run's end late operations are still sent
    /// ([`OPEN_LOOP_GRACE`] from the command line).
    pub grace: Duration,
}

/// Values to write: slices of one random buffer, so making one costs nothing.
#[derive(Clone, Debug)]
pub struct Values {
    pool: Bytes,
    size: usize,
}

impl Values {
    pub fn new(size: usize, seed: u64) -> Values {
        let mut rng = StdRng::seed_from_u64(seed);
        // Any of 64 Ki offsets starts a value: variety without copying.
        let len = size + (1 << 16);
        let pool: Vec<u8> = (0..len).map(|_| rng.gen_range(b'a'..=b'z')).collect();
        Values {
            pool: Bytes::from(pool),
            size,
        }
    }

    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> Bytes {
        let off = rng.gen_range(0..=self.pool.len() - self.size);
        self.pool.slice(off..off + self.size)
    }
}

/// Runs one operation of `kind`.
async fn execute(
    target: &dyn Target,
    kind: OpKind,
    keys: &mut KeyChooser,
    inserts: &InsertCounter,
    values: &Values,
    rng: &mut StdRng,
) -> Result<(), OpError> {
    let existing = inserts.acknowledged();
    match kind {
        OpKind::Insert => {
            let n = inserts.next();
            let r = target.insert(&key_name(n), values.next(rng)).await;
            inserts.acknowledge(n);
            r
        }
        OpKind::Read => target.read(&key_name(keys.next(existing, rng))).await,
        OpKind::Update => {
            let key = key_name(keys.next(existing, rng));
            target.update(&key, values.next(rng)).await
        }
        OpKind::Rmw => {
            let key = key_name(keys.next(existing, rng));
            target.read_modify_write(&key, values.next(rng)).await
        }
        OpKind::Scan => {
            let start = key_name(keys.next(existing, rng));
            let len = scan_length(rng);
            target.scan(&start, len).await.map(drop)
        }
    }
}

/// The shared state of a run's workers.
struct Shared {
    target: Arc<dyn Target>,
    cfg: RunConfig,
    inserts: InsertCounter,
    values: Values,
    /// Each worker starts from a clone: building one sums zeta, too slow to do per worker
    /// once the run's clock is ticking.
    keys: KeyChooser,
    issued: AtomicU64,
    t0: Instant,
    recorder: Mutex<Recorder>,
}

impl Shared {
    /// The operation budget: a count, or for an open loop the operations scheduled within
    /// the duration.
    fn limit(&self) -> Option<u64> {
        match (self.cfg.bound, self.cfg.pace) {
            (Bound::Operations(n), _) => Some(n),
            (Bound::Duration(d), Pace::Open(rate)) => Some((d.as_secs_f64() * rate).ceil() as u64),
            (Bound::Duration(_), Pace::Closed) => None,
        }
    }

    fn record(&self, kind: OpKind, latency: Duration, error: Option<ErrorKind>, end: Instant) {
        self.recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(kind, latency, error, end - self.t0);
    }
}

async fn worker(shared: Arc<Shared>, index: usize) {
    let cfg = &shared.cfg;
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(index as u64 * 0x9e37_79b9));
    let ops = OpChooser::new(cfg.workload);
    let mut keys = shared.keys.clone();
    let limit = shared.limit();
    let deadline = match (cfg.bound, cfg.pace) {
        (Bound::Duration(d), Pace::Closed) => Some(shared.t0 + d),
        (_, Pace::Open(rate)) => {
            limit.map(|n| shared.t0 + Duration::from_secs_f64(n as f64 / rate) + cfg.grace)
        }
        (Bound::Operations(_), Pace::Closed) => None,
    };
    loop {
        let i = shared.issued.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|n| i >= n) {
            break;
        }
        let kind = ops.next(&mut rng);
        let now = Instant::now();
        let intended = match cfg.pace {
            Pace::Closed => {
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
            Pace::Open(rate) => shared.t0 + Duration::from_secs_f64(i as f64 / rate),
        };
        if let Pace::Open(_) = cfg.pace
            && deadline.is_some_and(|d| now >= d)
        {
            shared.record(kind, now - intended, Some(ErrorKind::Missed), now);
            continue;
        }
        tokio::time::sleep_until(intended).await;
        let result = execute(
            shared.target.as_ref(),
            kind,
            &mut keys,
            &shared.inserts,
            &shared.values,
            &mut rng,
        )
        .await;
        let end = Instant::now();
        shared.record(kind, end - intended, result.err().map(|e| e.kind), end);
    }
}

/// Runs the measured phase; answers what it recorded and how long it took.
pub async fn run(target: Arc<dyn Target>, cfg: RunConfig) -> (Recorder, Duration) {
    let workers = cfg.concurrency.max(1);
    // Everything slow to build is built before the clock starts.
    let keys = KeyChooser::new(cfg.distribution, cfg.records);
    let values = Values::new(cfg.value_size, cfg.seed);
    let shared = Arc::new(Shared {
        target,
        inserts: InsertCounter::new(cfg.records),
        values,
        keys,
        issued: AtomicU64::new(0),
        t0: Instant::now(),
        recorder: Mutex::new(Recorder::default()),
        cfg,
    });
    let handles: Vec<_> = (0..workers)
        .map(|i| tokio::spawn(worker(shared.clone(), i)))
        .collect();
    for h in handles {
        // A worker that panicked loses only its own in-flight operation.
        let _ = h.await;
    }
    let elapsed = shared.t0.elapsed();
    let rec = shared
        .recorder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    (rec, elapsed)
}

/// Inserts keys `0..records` with `concurrency` workers; `progress` shows a bar on stderr
/// (hidden when stderr is not a terminal).
pub async fn load(
    target: Arc<dyn Target>,
    records: u64,
    value_size: usize,
    concurrency: usize,
    seed: u64,
    progress: bool,
) -> LoadSummary {
    let bar = if progress {
        ProgressBar::new(records)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("load {bar:30} {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    let values = Values::new(value_size, seed);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..concurrency.max(1))
        .map(|w| {
            let (target, values, next, errors, bar) = (
                target.clone(),
                values.clone(),
                next.clone(),
                errors.clone(),
                bar.clone(),
            );
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (w as u64 + 1));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= records {
                        break;
                    }
                    if target
                        .insert(&key_name(i), values.next(&mut rng))
                        .await
                        .is_err()
                    {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    bar.inc(1);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    LoadSummary {
        records,
        errors: errors.load(Ordering::Relaxed),
        duration_s: (secs * 1000.0).round() / 1000.0,
        throughput: (records as f64 / secs.max(1e-9)).round(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::collections::BTreeMap;

    /// An in-memory ordered store: reads of keys never written are `not_found`, and a
    /// read-modify-write must find its key.
    #[derive(Default)]
    struct Memory {
        data: Mutex<BTreeMap<String, Bytes>>,
    }

    impl Memory {
        fn data(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
            self.data
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        fn get(&self, key: &str) -> Result<(), OpError> {
            match self.data().contains_key(key) {
                true => Ok(()),
                false => Err(OpError::new(ErrorKind::NotFound, key)),
            }
        }
    }

    #[async_trait]
    impl Target for Memory {
        async fn read(&self, key: &str) -> Result<(), OpError> {
            self.get(key)
        }
        async fn update(&self, key: &str, value: Bytes) -> Result<(), OpError> {
            self.get(key)?;
            self.data().insert(key.to_string(), value);
            Ok(())
        }
        async fn insert(&self, key: &str, value: Bytes) -> Result<(), OpError> {
            self.data().insert(key.to_string(), value);
            Ok(())
        }
        async fn scan(&self, start: &str, len: usize) -> Result<usize, OpError> {
            Ok(self.data().range(start.to_string()..).take(len).count())
        }
        async fn read_modify_write(&self, key: &str, value: Bytes) -> Result<(), OpError> {
            self.update(key, value).await
        }
        async fn check(&self) -> Result<(), OpError> {
            Ok(())
        }
    }

    fn config(workload: Workload, bound: Bound, pace: Pace, concurrency: usize) -> RunConfig {
        RunConfig {
            workload,
            distribution: workload.default_distribution(),
            records: 500,
            value_size: 20,
            concurrency,
            bound,
            pace,
            seed: 9,
            grace: OPEN_LOOP_GRACE,
        }
    }

    async fn loaded() -> Arc<Memory> {
        let m = Arc::new(Memory::default());
        let load = load(m.clone(), 500, 20, 4, 1, false).await;
        assert_eq!((load.records, load.errors), (500, 0));
        assert_eq!(m.data().len(), 500);
        m
    }

    #[tokio::test]
    async fn every_workload_runs_clean_on_a_loaded_store() {
        for w in Workload::ALL {
            let m = loaded().await;
            let cfg = config(w, Bound::Operations(3000), Pace::Closed, 8);
            let (rec, _) = run(m.clone(), cfg).await;
            // Reads, updates and scans only ever pick keys that exist, inserts included
            // once acknowledged.
            assert_eq!(rec.errors(), 0, "{w:?}: {:?}", rec.ops);
            assert_eq!(rec.total(), 3000, "{w:?}");
            let inserts = rec.ops.get(&OpKind::Insert).map_or(0, |s| s.count);
            assert_eq!(m.data().len() as u64, 500 + inserts, "{w:?}");
            for (op, _) in w.mix() {
                assert!(rec.ops.get(&op).is_some_and(|s| s.count > 0), "{w:?} {op}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_keeps_its_rate_from_the_first_second() {
        let m = loaded().await;
        // Many workers: nothing slow may happen per worker once the clock runs.
        let cfg = config(
            Workload::A,
            Bound::Duration(Duration::from_secs(2)),
            Pace::Open(500.0),
            64,
        );
        let (rec, elapsed) = run(m, cfg).await;
        assert_eq!(rec.total(), 1000);
        assert_eq!(rec.errors(), 0);
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        let first = &rec.timeline[0];
        assert!(
            first.ops >= 450,
            "only {} operations in the first second",
            first.ops
        );
        let p99_ms = first.latency.value_at_quantile(0.99) / 1000;
        assert!(p99_ms < 100, "first-second p99 {p99_ms} ms against memory");
    }

    #[tokio::test]
    async fn a_target_too_slow_for_the_rate_misses_operations() {
        struct Slow;
        #[async_trait]
        impl Target for Slow {
            async fn read(&self, _: &str) -> Result<(), OpError> {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            }
            async fn update(&self, _: &str, _: Bytes) -> Result<(), OpError> {
                Ok(())
            }
            async fn insert(&self, _: &str, _: Bytes) -> Result<(), OpError> {
                Ok(())
            }
            async fn scan(&self, _: &str, _: usize) -> Result<usize, OpError> {
                Ok(0)
            }
            async fn read_modify_write(&self, _: &str, _: Bytes) -> Result<(), OpError> {
                Ok(())
            }
            async fn check(&self) -> Result<(), OpError> {
                Ok(())
            }
        }
        // One worker can do 20 reads a second; 1000 are scheduled in 1 s.
        let cfg = RunConfig {
            grace: Duration::from_secs(1),
            ..config(
                Workload::C,
                Bound::Duration(Duration::from_secs(1)),
                Pace::Open(1000.0),
                1,
            )
        };
        let (rec, elapsed) = run(Arc::new(Slow), cfg).await;
        let read = &rec.ops[&OpKind::Read];
        assert_eq!(read.count, 1000);
        let missed = read.errors.get(&ErrorKind::Missed).copied().unwrap_or(0);
        let sent = 1000 - missed;
        // Sent until the grace after the end: (1 s + 1 s) at 20 a second at most.
        assert!((10..=41).contains(&sent), "{sent} sent");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        // The latest sent waited almost 2 s, and so did the missed: all of it is counted.
        assert!(read.latency.max() >= 1_800_000, "{}", read.latency.max());
    }
}
