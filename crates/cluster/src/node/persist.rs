//! The node's synced metadata writes (ring state, incarnation), made by one thread of their own.
//!
//! A synced write waits for an fsync: milliseconds on a real disk, during which a tokio worker
//! that made it serves nothing else (a node has as few workers as cores). So nothing on the
//! async threads writes metadata: a change bumps a *generation* and returns, the persister
//! thread writes the latest state once for every generation asked so far (a burst of gossip
//! costs one write), and whoever must not acknowledge before the change is durable (an admin
//! answer, a props change, a join) awaits its generation.
//!
//! The bookkeeping ([`Ledger`]) is plain data; the thread only drives it.

use parking_lot::{Condvar, Mutex};
use riftkv_core::storage::{Storage, WriteBatch};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How far the writes have come: what waiters look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every generation up to this one is on disk.
    pub durable: u64,
    /// The last write that failed: its generation and why. Generations up to it that are not
    /// durable failed (a later successful write makes them durable after all).
    pub failed: Option<(u64, String)>,
}

/// What became of one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Durable,
    Failed(String),
    Pending,
}

impl Progress {
    pub fn outcome(&self, generation: u64) -> Outcome {
        if self.durable >= generation {
            return Outcome::Durable;
        }
        match &self.failed {
            Some((g, why)) if *g >= generation => Outcome::Failed(why.clone()),
            _ => Outcome::Pending,
        }
    }
}

/// One write for the thread: everything asked up to `generation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub generation: u64,
    /// Write the ring state as it is when the job runs (it holds every change asked so far).
    pub ring: bool,
    /// Other meta records, latest value per name.
    pub records: Vec<(String, Vec<u8>)>,
}

/// The persister's bookkeeping: generations asked, the work they stand for, one write at a time.
#[derive(Debug, Default)]
pub struct Ledger {
    requested: u64,
    in_flight: bool,
    ring: bool,
    records: BTreeMap<String, Vec<u8>>,
    progress: Progress,
}

impl Ledger {
    /// The ring state changed: returns the generation that covers the change.
    pub fn ask_ring(&mut self) -> u64 {
        self.ring = true;
        self.bump()
    }

    /// Meta record `name` must become `value`: returns the generation that covers it.
    pub fn ask_record(&mut self, name: &str, value: Vec<u8>) -> u64 {
        self.records.insert(name.to_string(), value);
        self.bump()
    }

    /// The generation of everything asked so far (to wait for all of it).
    pub fn latest(&self) -> u64 {
        self.requested
    }

    fn bump(&mut self) -> u64 {
        self.requested += 1;
        self.requested
    }

    /// The next write, when none is running and something was asked since the last write
    /// ended. A failed write is retried only with the next ask, so a broken disk is not
    /// hammered in a loop.
    pub fn take(&mut self) -> Option<Job> {
        let settled = self
            .progress
            .durable
            .max(self.progress.failed.as_ref().map_or(0, |f| f.0));
        if self.in_flight || self.requested <= settled {
            return None;
        }
        self.in_flight = true;
        let job = Job {
            generation: self.requested,
            ring: self.ring,
            records: std::mem::take(&mut self.records).into_iter().collect(),
        };
        self.ring = false;
        Some(job)
    }

    /// The write of `job` ended with `result`. A failed job's work is asked again with the
    /// next write (records that a newer ask replaced stay replaced).
    pub fn finish(&mut self, job: Job, result: Result<(), String>) {
        self.in_flight = false;
        match result {
            Ok(()) => self.progress.durable = self.progress.durable.max(job.generation),
            Err(why) => {
                self.ring |= job.ring;
                for (name, value) in job.records {
                    self.records.entry(name).or_insert(value);
                }
                self.progress.failed = Some((job.generation, why));
            }
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }
}

/// Encodes the ring state for a write; `None` once the node is gone.
pub type RingEncoder = Box<dyn Fn() -> Option<Result<Vec<u8>, String>> + Send>;

struct Shared {
    ledger: Mutex<Ledger>,
    /// Wakes the thread (work asked, or stop) and blocking waiters (progress).
    changed: Condvar,
    /// Set by [`Persister::halt`]: no write starts any more.
    halted: AtomicBool,
    /// Held for the whole of a write, so [`Persister::halt`] returns only after it.
    writing: Mutex<()>,
    progress: tokio::sync::watch::Sender<Progress>,
}

/// The handle of the persister thread. Dropping it stops the thread (what was not written yet
/// is not written: call [`Persister::wait`] on [`Persister::latest`] first for a clean stop).
pub struct Persister {
    shared: Arc<Shared>,
}

/// Why a metadata write is not durable.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("metadata write failed: {0}")]
    Failed(String),
    #[error("the metadata writer has stopped")]
    Stopped,
}

impl Persister {
    /// Starts the thread writing to `storage` under meta key `ring_key`.
    pub fn spawn(
        storage: Arc<dyn Storage>,
        ring_key: &'static str,
        encode_ring: RingEncoder,
    ) -> Result<Persister, std::io::Error> {
        let shared = Arc::new(Shared {
            ledger: Mutex::new(Ledger::default()),
            changed: Condvar::new(),
            halted: AtomicBool::new(false),
            writing: Mutex::new(()),
            progress: tokio::sync::watch::channel(Progress::default()).0,
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("riftkv-meta".into())
            .spawn(move || run(&s, storage.as_ref(), ring_key, &encode_ring))?;
        Ok(Persister { shared })
    }

    /// The ring state changed: it will be written soon. Returns the generation to wait for.
    pub fn ask_ring(&self) -> u64 {
        let g = self.shared.ledger.lock().ask_ring();
        self.shared.changed.notify_all();
        g
    }

    /// Meta record `name` must become `value`. Returns the generation to wait for.
    pub fn ask_record(&self, name: &str, value: Vec<u8>) -> u64 {
        let g = self.shared.ledger.lock().ask_record(name, value);
        self.shared.changed.notify_all();
        g
    }

    /// The generation covering everything asked so far.
    pub fn latest(&self) -> u64 {
        self.shared.ledger.lock().latest()
    }

    /// Waits (without blocking the thread) until `generation` is durable.
    pub async fn wait(&self, generation: u64) -> Result<(), PersistError> {
        let mut rx = self.shared.progress.subscribe();
        let halted = &self.shared.halted;
        let seen = rx
            .wait_for(|p| {
                p.outcome(generation) != Outcome::Pending || halted.load(Ordering::SeqCst)
            })
            .await
            .map_err(|_| PersistError::Stopped)?;
        to_result(seen.outcome(generation))
    }

    /// Blocks the calling thread until `generation` is durable: only for code that runs
    /// before the node serves (startup), or on a thread of its own.
    pub fn wait_blocking(&self, generation: u64) -> Result<(), PersistError> {
        let mut ledger = self.shared.ledger.lock();
        loop {
            match ledger.progress().outcome(generation) {
                Outcome::Pending => {}
                done => return to_result(done),
            }
            if self.shared.halted.load(Ordering::SeqCst) {
                return Err(PersistError::Stopped);
            }
            self.shared.changed.wait(&mut ledger);
        }
    }

    /// Stops the thread as a killed process would stop: a write under way finishes, no other
    /// starts. Waiters of what was not written get [`PersistError::Stopped`].
    pub fn halt(&self) {
        self.shared.halted.store(true, Ordering::SeqCst);
        drop(self.shared.writing.lock());
        let _ledger = self.shared.ledger.lock();
        self.shared.changed.notify_all();
        self.shared.progress.send_modify(|_| {});
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.halt();
    }
}

fn to_result(o: Outcome) -> Result<(), PersistError> {
    match o {
        Outcome::Durable => Ok(()),
        Outcome::Failed(why) => Err(PersistError::Failed(why)),
        Outcome::Pending => Err(PersistError::Stopped),
    }
}

/// The thread: take the next job, write it synced, report.
fn run(shared: &Shared, storage: &dyn Storage, ring_key: &str, encode_ring: &RingEncoder) {
    loop {
        let job = {
            let mut ledger = shared.ledger.lock();
            loop {
                if shared.halted.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(job) = ledger.take() {
                    break job;
                }
                shared.changed.wait(&mut ledger);
            }
        };
        // Encoded before the write lock: the last handle on the node may be dropped here,
        // and dropping it halts this persister, which takes that lock.
        let ring = if job.ring { Some(encode_ring()) } else { None };
        let result = {
            let _writing = shared.writing.lock();
            if shared.halted.load(Ordering::SeqCst) {
                return;
            }
            write(storage, ring_key, ring, &job.records)
        };
        let mut ledger = shared.ledger.lock();
        ledger.finish(job, result);
        let progress = ledger.progress().clone();
        drop(ledger);
        shared.progress.send_replace(progress);
        shared.changed.notify_all();
    }
}

fn write(
    storage: &dyn Storage,
    ring_key: &str,
    ring: Option<Option<Result<Vec<u8>, String>>>,
    records: &[(String, Vec<u8>)],
) -> Result<(), String> {
    let mut batch = WriteBatch::default();
    match ring {
        None => {}
        Some(None) => return Err("the node has stopped".into()),
        Some(Some(encoded)) => {
            batch.put_meta(ring_key, encoded?);
        }
    }
    for (name, value) in records {
        batch.put_meta(name.clone(), value.clone());
    }
    storage.write(batch, true).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::storage::MemoryStorage;

    #[test]
    fn a_burst_of_changes_costs_one_write() {
        let mut l = Ledger::default();
        let g1 = l.ask_ring();
        let job = l.take().unwrap();
        assert_eq!(job.generation, g1);
        // Changes while the write runs wait for the next one, which covers all of them.
        let g2 = l.ask_ring();
        let g3 = l.ask_ring();
        let g4 = l.ask_record("incarnation", vec![1]);
        assert_eq!(l.take(), None, "one write at a time");
        l.finish(job, Ok(()));
        assert_eq!(l.progress().outcome(g1), Outcome::Durable);
        assert_eq!(l.progress().outcome(g2), Outcome::Pending);
        let next = l.take().unwrap();
        assert_eq!(next.generation, g4);
        assert!(next.ring);
        assert_eq!(next.records, vec![("incarnation".to_string(), vec![1])]);
        l.finish(next, Ok(()));
        for g in [g2, g3, g4] {
            assert_eq!(l.progress().outcome(g), Outcome::Durable);
        }
        assert_eq!(l.take(), None, "nothing asked since");
    }

    #[test]
    fn a_failed_write_fails_its_waiters_and_is_retried_with_the_next_ask() {
        let mut l = Ledger::default();
        l.ask_record("a", vec![1]);
        let g1 = l.ask_ring();
        let job = l.take().unwrap();
        l.finish(job, Err("disk full".into()));
        assert_eq!(
            l.progress().outcome(g1),
            Outcome::Failed("disk full".into())
        );
        assert_eq!(l.take(), None, "no retry loop on a broken disk");
        let g2 = l.ask_record("a", vec![2]);
        let retry = l.take().unwrap();
        assert!(retry.ring, "the failed ring write is asked again");
        assert_eq!(
            retry.records,
            vec![("a".to_string(), vec![2])],
            "newest value wins"
        );
        l.finish(retry, Ok(()));
        assert_eq!(l.progress().outcome(g1), Outcome::Durable);
        assert_eq!(l.progress().outcome(g2), Outcome::Durable);
    }

    #[test]
    fn the_thread_writes_what_was_asked_and_stops_when_halted() {
        let storage = Arc::new(MemoryStorage::new());
        let p = Persister::spawn(
            storage.clone(),
            "ring_state",
            Box::new(|| Some(Ok(b"ring".to_vec()))),
        )
        .unwrap();
        let g = p.ask_record("incarnation", vec![7]);
        p.ask_ring();
        p.wait_blocking(p.latest()).unwrap();
        assert!(p.latest() >= g);
        assert_eq!(storage.get_meta("incarnation").unwrap(), Some(vec![7]));
        assert_eq!(
            storage.get_meta("ring_state").unwrap(),
            Some(b"ring".to_vec())
        );
        p.halt();
        let late = p.ask_record("incarnation", vec![8]);
        assert!(matches!(p.wait_blocking(late), Err(PersistError::Stopped)));
        assert_eq!(storage.get_meta("incarnation").unwrap(), Some(vec![7]));
    }
}
