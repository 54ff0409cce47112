//! Group commit: durable (`dw`) writes share WAL syncs instead of paying one each.
//!
//! A durable write is applied unsynced (under its key's lock, which it then releases), takes a
//! [`Ticket`] and waits until a WAL sync that *started after its write returned* has finished.
//! One sync runs at a time; every write that arrives while it runs is covered by the next one,
//! so a burst of N durable writes costs about two syncs, not N, and no key lock is held across
//! an fsync. What to sync and when is [`Batcher`], plain data; [`GroupCommit`] only drives it:
//! the async waiter that finds no sync running starts one on the blocking pool, which goes on
//! syncing while tickets wait; every waiter sleeps on its task until a round covers it.

use super::{Storage, StorageError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A durable write's place in line: issued after the write returned, so any sync that starts
/// later covers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Where a ticket stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketStatus {
    /// No finished sync covers it yet.
    Pending,
    /// A sync that started after its write has finished: the write is on disk.
    Durable,
    /// A sync failed before it was covered. Final: after a failed fsync the kernel may have
    /// dropped the pages, so no later sync can vouch for the write either.
    Failed,
}

/// The batching decisions of group commit (pure): which tickets a sync covers, whether one may
/// start now, and what a finished or failed sync means for each ticket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batcher {
    /// The last ticket issued.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// The sync running now and the last ticket it covers.
    syncing: Option<u64>,
    /// A sync has failed: nothing not yet durable ever will be.
    broken: bool,
}

impl Batcher {
    /// The ticket of a write that has just returned.
    pub fn issue(&mut self) -> Ticket {
        self.issued += 1;
        Ticket(self.issued)
    }

    /// Starts a sync if one should start now: none is running (a running sync cannot cover
    /// writes issued after it began, so they wait for the next one, and together) and some
    /// ticket waits. Returns the last ticket the new sync covers.
    pub fn start(&mut self) -> Option<u64> {
        if self.syncing.is_some() || self.broken || self.issued == self.durable {
            return None;
        }
        self.syncing = Some(self.issued);
        self.syncing
    }

    /// The running sync has ended, successfully or not.
    pub fn finish(&mut self, ok: bool) {
        if let Some(upto) = self.syncing.take() {
            if ok {
                self.durable = self.durable.max(upto);
            } else {
                self.broken = true;
            }
        }
    }

    pub fn status(&self, t: Ticket) -> TicketStatus {
        if t.0 <= self.durable {
            TicketStatus::Durable
        } else if self.broken {
            TicketStatus::Failed
        } else {
            TicketStatus::Pending
        }
    }

    /// A sync outside the batching failed: as [`Batcher::finish`] with a failure.
    pub fn fail(&mut self) {
        self.broken = true;
    }

    /// Whether a sync is running now.
    pub fn syncing(&self) -> bool {
        self.syncing.is_some()
    }
}

/// Group commit over one store: tickets, the one running sync, and waiting for it. Shared by
/// every write path of a node.
pub struct GroupCommit {
    storage: Arc<dyn Storage>,
    batcher: Mutex<Batcher>,
    /// Counts finished syncs, to wake waiters.
    rounds: tokio::sync::watch::Sender<u64>,
    /// Why the first failed sync failed.
    failure: Mutex<Option<String>>,
    syncs: AtomicU64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("batcher", &*self.batcher.lock())
            .finish()
    }
}

impl GroupCommit {
    pub fn new(storage: Arc<dyn Storage>) -> Arc<GroupCommit> {
        Arc::new(GroupCommit {
            storage,
            batcher: Mutex::new(Batcher::default()),
            rounds: tokio::sync::watch::channel(0).0,
            failure: Mutex::new(None),
            syncs: AtomicU64::new(0),
        })
    }

    /// The ticket of a write that has just returned (unsynced) and must become durable.
    pub fn ticket(&self) -> Ticket {
        self.batcher.lock().issue()
    }

    /// WAL syncs this group commit has run.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn failed(&self) -> StorageError {
        let why = self.failure.lock().clone().unwrap_or_default();
        StorageError::Io(format!("WAL sync failed, the write is not durable: {why}"))
    }

    fn sync(&self) -> Result<(), StorageError> {
        let r = self.storage.sync_wal();
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &r {
            tracing::error!(error = %e, "WAL sync failed: durable writes fail from now on");
            self.failure.lock().get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// Runs syncs while tickets wait (the first one already started), waking the waiters
    /// after each.
    fn drive(&self) {
        loop {
            let ok = self.sync().is_ok();
            let next = {
                let mut b = self.batcher.lock();
                b.finish(ok);
                b.start()
            };
            self.rounds.send_modify(|n| *n += 1);
            if next.is_none() {
                return;
            }
        }
    }

    /// Makes `t` durable on this thread, for callers already on a blocking thread (handoff,
    /// hint delivery): it syncs itself rather than wait for a round that may be queued on
    /// the blocking pool behind the very thread that waits.
    pub fn wait_blocking(&self, t: Ticket) -> Result<(), StorageError> {
        match self.batcher.lock().status(t) {
            TicketStatus::Durable => return Ok(()),
            TicketStatus::Failed => return Err(self.failed()),
            TicketStatus::Pending => {}
        }
        if self.sync().is_err() {
            self.batcher.lock().fail();
            return Err(self.failed());
        }
        Ok(())
    }

    /// Waits without holding a thread until `t` is durable. When no sync runs, one is started
    /// on the blocking pool: one thread hop per sync, not per write.
    pub async fn wait(self: &Arc<Self>, t: Ticket) -> Result<(), StorageError> {
        let mut rounds = self.rounds.subscribe();
        loop {
            let start = {
                let mut b = self.batcher.lock();
                match b.status(t) {
                    TicketStatus::Durable => return Ok(()),
                    TicketStatus::Failed => return Err(self.failed()),
                    TicketStatus::Pending => b.start(),
                }
            };
            if start.is_some() {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.drive());
            }
            // The sender lives in `self`, which this future holds: it cannot close.
            if rounds.changed().await.is_err() {
                return Err(self.failed());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStorage, ObjectKey, WriteBatch};
    use std::time::Duration;

    #[test]
    fn a_sync_covers_exactly_the_tickets_issued_before_it_started() {
        let mut b = Batcher::default();
        assert_eq!(b.start(), None, "nothing waits: no sync");
        let (t1, t2) = (b.issue(), b.issue());
        assert_eq!(b.start(), Some(2));
        // Arrives while the sync runs: not covered by it, and no second sync at once.
        let t3 = b.issue();
        assert_eq!(b.start(), None);
        b.finish(true);
        assert_eq!(b.status(t1), TicketStatus::Durable);
        assert_eq!(b.status(t2), TicketStatus::Durable);
        assert_eq!(b.status(t3), TicketStatus::Pending);
        // Every ticket that arrived during the first sync shares the second one.
        let t4 = b.issue();
        assert_eq!(b.start(), Some(4));
        b.finish(true);
        assert_eq!(b.status(t3), TicketStatus::Durable);
        assert_eq!(b.status(t4), TicketStatus::Durable);
        assert_eq!(b.start(), None);
        assert!(!b.syncing());
    }

    #[test]
    fn a_failed_sync_fails_every_write_not_yet_durable_for_good() {
        let mut b = Batcher::default();
        let t1 = b.issue();
        assert_eq!(b.start(), Some(1));
        b.finish(true);
        let t2 = b.issue();
        assert_eq!(b.start(), Some(2));
        let t3 = b.issue();
        b.finish(false);
        assert_eq!(b.status(t1), TicketStatus::Durable);
        assert_eq!(b.status(t2), TicketStatus::Failed);
        assert_eq!(b.status(t3), TicketStatus::Failed);
        assert_eq!(
            b.start(),
            None,
            "no sync can vouch for them after a failed one"
        );
        assert_eq!(b.status(b.clone().issue()), TicketStatus::Failed);
    }

    fn key(i: usize) -> ObjectKey {
        ObjectKey::new(1, b"b".to_vec(), format!("k{i}").into_bytes())
    }

    /// What a durable write does: apply unsynced, then wait for a shared sync.
    fn put(s: &MemoryStorage, k: &ObjectKey) {
        let mut batch = WriteBatch::default();
        batch.put_object(k.clone(), b"v".to_vec());
        s.write(batch, false).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_durable_writers_share_syncs_and_each_returns_durable() {
        const N: usize = 32;
        let s = Arc::new(MemoryStorage::new());
        s.track_durability();
        s.set_sync_latency(Duration::from_millis(5));
        let gc = GroupCommit::new(s.clone());
        // Opening the store synced its format version.
        let before = s.wal_syncs();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..N {
            let (s, gc) = (s.clone(), gc.clone());
            tasks.spawn(async move {
                put(&s, &key(i));
                gc.wait(gc.ticket()).await.unwrap();
                // Checked as soon as the wait returns.
                s.durable_object(&key(i))
            });
        }
        while let Some(durable) = tasks.join_next().await {
            assert!(durable.unwrap(), "a write returned before it was durable");
        }
        let syncs = s.wal_syncs() - before;
        assert!(
            syncs < N as u64 / 2,
            "{N} durable writes cost {syncs} syncs"
        );
        assert_eq!(syncs, gc.syncs());
    }

    #[test]
    fn a_blocking_waiter_returns_durable() {
        let s = Arc::new(MemoryStorage::new());
        s.track_durability();
        let gc = GroupCommit::new(s.clone());
        put(&s, &key(1));
        let t = gc.ticket();
        assert!(!s.durable_object(&key(1)));
        gc.wait_blocking(t).unwrap();
        assert!(s.durable_object(&key(1)));
    }
}
