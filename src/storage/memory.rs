//! In-memory engine for tests: the same record store over BTreeMaps.
//!
//! It stores the exact bytes RocksDB would (encoded keys, sealed records), so ordering,
//! envelopes and corruption behave identically and the conformance suite runs on both.

use super::backend::{Backend, Cf, Flow, RawOp};
use super::store::RecordStore;
use super::{StorageError, migrate};
use parking_lot::RwLock;
use std::collections::BTreeMap;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Four ordered maps behind one lock, so a batch is atomic to readers.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    cfs: RwLock<[Map; 4]>,
}

impl Backend for MemoryBackend {
    fn raw_get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.cfs.read()[cf.index()].get(key).cloned())
    }

    fn raw_write(&self, ops: Vec<RawOp>, _sync: bool) -> Result<(), StorageError> {
        let mut cfs = self.cfs.write();
        for op in ops {
            match op {
                RawOp::Put(cf, k, v) => {
                    cfs[cf.index()].insert(k, v);
                }
                RawOp::Delete(cf, k) => {
                    cfs[cf.index()].remove(&k);
                }
            }
        }
        Ok(())
    }

    fn raw_scan(
        &self,
        cf: Cf,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError> {
        let cfs = self.cfs.read();
        for (k, v) in cfs[cf.index()]
            .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
        {
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
        Ok(())
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
