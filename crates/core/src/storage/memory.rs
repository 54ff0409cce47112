//! In-memory engine for tests: the same record store over BTreeMaps.
//!
//! It stores the exact bytes RocksDB would (encoded keys, sealed records), so ordering,
//! envelopes and corruption behave identically and the conformance suite runs on both.

use super::backend::{Backend, Cf, Flow, RawOp, ScanKind};
use super::store::RecordStore;
use super::{StorageError, migrate};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// One map per column family.
const CFS: usize = Cf::ALL.len();

/// One ordered map per column family behind one lock, so a batch is atomic to readers.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    cfs: RwLock<[Map; CFS]>,
    /// When tracked: the state a power cut would leave (every synced batch and what preceded
    /// it) and the unsynced batches since, oldest first.
    durability: parking_lot::Mutex<Option<Durability>>,
    /// Entries read per column family (point hits and scanned entries), so tests can show
    /// what background work costs.
    reads: [AtomicU64; CFS],
    /// WAL syncs asked for (synced writes and [`Backend::sync_wal`]), so tests can show that
    /// durable writes share them.
    syncs: AtomicU64,
    /// How long each sync takes, in microseconds (0 unless a test models a slow disk).
    sync_micros: AtomicU64,
    /// Called before every synced write (tests: which thread waits for an fsync).
    #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
    on_synced_write: parking_lot::Mutex<Option<SyncedWriteHook>>,
}

/// What [`RecordStore::on_synced_write`] installs.
#[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
#[derive(Clone)]
pub struct SyncedWriteHook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

#[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
impl std::fmt::Debug for SyncedWriteHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncedWriteHook")
    }
}

#[derive(Debug, Default)]
struct Durability {
    durable: [Map; CFS],
    unsynced: Vec<Vec<RawOp>>,
}

fn apply(cfs: &mut [Map; CFS], ops: &[RawOp]) {
    for op in ops {
        match op {
            RawOp::Put(cf, k, v) => {
                cfs[cf.index()].insert(k.clone(), v.clone());
            }
            RawOp::Delete(cf, k) => {
                cfs[cf.index()].remove(k);
            }
        }
    }
}

impl Backend for MemoryBackend {
    fn raw_get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let found = self.cfs.read()[cf.index()].get(key).cloned();
        if found.is_some() {
            self.reads[cf.index()].fetch_add(1, Ordering::Relaxed);
        }
        Ok(found)
    }

    fn raw_write(&self, ops: Vec<RawOp>, sync: bool) -> Result<(), StorageError> {
        #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
        if sync {
            let hook = self.on_synced_write.lock().clone();
            if let Some(hook) = hook {
                (hook.0)();
            }
        }
        {
            let mut cfs = self.cfs.write();
            apply(&mut cfs, &ops);
            if let Some(d) = self.durability.lock().as_mut() {
                // A synced write makes the whole WAL before it durable, as RocksDB's does.
                d.unsynced.push(ops);
                if sync {
                    for batch in d.unsynced.drain(..) {
                        apply(&mut d.durable, &batch);
                    }
                }
            }
        }
        if sync {
            self.count_sync();
        }
        Ok(())
    }

    /// There is no cache to spare here: every kind reads the same.
    fn raw_scan_as(
        &self,
        cf: Cf,
        from: &[u8],
        _kind: ScanKind,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError> {
        let cfs = self.cfs.read();
        for (k, v) in cfs[cf.index()]
            .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
        {
            self.reads[cf.index()].fetch_add(1, Ordering::Relaxed);
            if visit(k, v) == Flow::Stop {
                break;
            }
        }
        Ok(())
    }

    fn approximate_bytes(&self) -> u64 {
        let cfs = self.cfs.read();
        cfs.iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.make_durable();
        Ok(())
    }

    fn sync_wal(&self) -> Result<(), StorageError> {
        #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
        {
            let hook = self.on_synced_write.lock().clone();
            if let Some(hook) = hook {
                (hook.0)();
            }
        }
        self.make_durable();
        self.count_sync();
        Ok(())
    }
}

impl MemoryBackend {
    /// Every write so far survives a power cut from now on.
    fn make_durable(&self) {
        if let Some(d) = self.durability.lock().as_mut() {
            for batch in d.unsynced.drain(..) {
                apply(&mut d.durable, &batch);
            }
        }
    }

    /// Counts one sync and takes as long as the modelled disk's fsync (no lock held).
    fn count_sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let micros = self.sync_micros.load(Ordering::Relaxed);
        if micros > 0 {
            std::thread::sleep(std::time::Duration::from_micros(micros));
        }
    }
}

#[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
impl RecordStore<MemoryBackend> {
    /// Entries read from `cf` since the store was made: point lookups that found a record
    /// and every entry a scan visited.
    pub fn entries_read(&self, cf: Cf) -> u64 {
        self.backend().reads[cf.index()].load(Ordering::Relaxed)
    }

    /// Calls `hook` on the writing thread before every synced write from now on.
    pub fn on_synced_write(&self, hook: SyncedWriteHook) {
        *self.backend().on_synced_write.lock() = Some(hook);
    }

    /// WAL syncs asked of this store so far (synced writes and WAL syncs).
    pub fn wal_syncs(&self) -> u64 {
        self.backend().syncs.load(Ordering::Relaxed)
    }

    /// Makes every WAL sync from now on take `latency`, like a disk's fsync.
    pub fn set_sync_latency(&self, latency: std::time::Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.backend().sync_micros.store(micros, Ordering::Relaxed);
    }

    /// Whether the object record of `k` would survive a power cut now (with durability
    /// tracked; without it every write counts as durable).
    pub fn durable_object(&self, k: &super::ObjectKey) -> bool {
        let Ok(key) = super::keys::encode_object(k) else {
            return false;
        };
        match self.backend().durability.lock().as_ref() {
            Some(d) => d.durable[Cf::Objects.index()].contains_key(&key),
            None => self.backend().cfs.read()[Cf::Objects.index()].contains_key(&key),
        }
    }

    /// From now on, remember which writes a power cut would lose (writes not followed by a
    /// synced one), for [`RecordStore::power_loss`].
    pub fn track_durability(&self) {
        let cfs = self.backend().cfs.read().clone();
        *self.backend().durability.lock() = Some(Durability {
            durable: cfs,
            unsynced: Vec::new(),
        });
    }

    /// A power cut: every unsynced write after the first `keep` is gone, as a WAL tail that
    /// never reached the disk. Returns how many batches were lost.
    pub fn power_loss(&self, keep: usize) -> usize {
        let mut cfs = self.backend().cfs.write();
        let mut guard = self.backend().durability.lock();
        let Some(d) = guard.as_mut() else {
            return 0;
        };
        let lost = d.unsynced.len().saturating_sub(keep);
        for batch in d.unsynced.drain(..).take(keep) {
            apply(&mut d.durable, &batch);
        }
        *cfs = d.durable.clone();
        drop((cfs, guard));
        // A process that lost its WAL tail starts again and counts its hints afresh; a count
        // kept from before the cut would still include hints the cut took away, and the node
        // would wait forever to deliver them.
        self.forget_derived();
        lost
    }
}

impl RecordStore<MemoryBackend> {
    /// An empty store at the current on-disk format.
    pub fn new() -> Self {
        let store = RecordStore::from_backend(MemoryBackend::default());
        // A fresh in-memory store has no data, so only the initial layout steps run; they
        // cannot fail on an empty map, and if they ever did the store would still be usable.
        if let Err(e) = migrate::embedded().and_then(|m| migrate::run(store.backend(), &m)) {
            tracing::error!(error = %e, "in-memory storage migration failed");
        }
        store
    }
}

impl Default for RecordStore<MemoryBackend> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::{HintKey, MemoryStorage, ObjectKey, Storage, WriteBatch};
    use crate::types::NodeId;

    #[test]
    fn a_power_cut_that_takes_a_hint_away_takes_it_out_of_the_counts() {
        let s = MemoryStorage::new();
        s.track_durability();
        let k = ObjectKey::new(3, b"b".to_vec(), b"k".to_vec());
        let mut batch = WriteBatch::default();
        batch.put_hint(HintKey::for_object(NodeId::new("n2"), &k), b"v".to_vec());
        s.write(batch, false).expect("unsynced hint write");
        assert_eq!(
            s.hint_counts().expect("counts"),
            vec![(NodeId::new("n2"), 1)]
        );
        assert_eq!(s.power_loss(0), 1);
        assert_eq!(s.hint_counts().expect("counts"), vec![]);
    }
}
