//! The raw seam beneath the record store: ordered byte maps, one per column family.
//!
//! Everything RiftKV-specific (key layout, envelopes, corruption handling, migrations) lives
//! above this trait in `store.rs`, once, so RocksDB and the in-memory engine cannot drift apart.

use super::StorageError;

/// The column families of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Objects: (partition, bucket, key) -> encoded object.
    Objects,
    /// Hinted handoff: (target, partition, bucket, key) -> encoded object.
    Hints,
    /// Node state: node id, format version, ring.
    Meta,
    /// Anti-entropy trees.
    Aae,
    /// The expiry index: (instant, partition, bucket, key) -> nothing, so the reaper finds
    /// expired objects by a range read up to "now" instead of a scan of every object.
    Expiry,
    /// The tombstone index: (partition, bucket, key) -> nothing, for every object whose
    /// versions are all tombstones, so the reaper finds dead keys without reading live ones.
    Tombstones,
}

impl Cf {
    pub const ALL: [Cf; 6] = [
        Cf::Objects,
        Cf::Hints,
        Cf::Meta,
        Cf::Aae,
        Cf::Expiry,
        Cf::Tombstones,
    ];

    /// Name of the RocksDB column family.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Objects => "objects",
            Cf::Hints => "hints",
            Cf::Meta => "meta",
            Cf::Aae => "aae",
            Cf::Expiry => "expiry",
            Cf::Tombstones => "tombstones",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Cf::Objects => 0,
            Cf::Hints => 1,
            Cf::Meta => 2,
            Cf::Aae => 3,
            Cf::Expiry => 4,
            Cf::Tombstones => 5,
        }
    }
}

/// One change to a raw column family; values here are already sealed records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawOp {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
}

/// Whether a scan visitor wants more entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What a scan is for, so the engine can keep bulk passes from evicting what requests read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// A pass over many entries (anti-entropy, handoff, the reaper, listings, migrations):
    /// each block is read once, so it must not push hot blocks out of the cache.
    Bulk,
    /// A few entries (a probe, a small page): read like point lookups, through the cache.
    Short,
}

impl ScanKind {
    /// Pages of at most this many entries count as short.
    pub const SHORT_ENTRIES: usize = 16;

    /// The kind of a scan that stops after `limit` entries.
    pub fn for_limit(limit: usize) -> ScanKind {
        if limit <= Self::SHORT_ENTRIES {
            ScanKind::Short
        } else {
            ScanKind::Bulk
        }
    }
}

/// What the storage engine is doing in the background, for operators: compaction debt left by
/// a burst of writes slows reads and writes until it is paid, and a cache too small for the
/// hot set shows as reads that miss it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Bytes compaction estimates it still has to rewrite to bring every level within its
    /// target size, summed over column families.
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Memtable flushes running now.
    pub running_flushes: u64,
    /// Bytes held by the block cache.
    pub block_cache_bytes: u64,
    /// Bytes of blob files that no key refers to any more, waiting for garbage collection.
    pub blob_garbage_bytes: u64,
}

/// Ordered byte maps with atomic multi-column-family batches.
pub trait Backend: Send + Sync + 'static {
    fn raw_get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Applies every op or none; `sync` makes the batch durable before returning.
    fn raw_write(&self, ops: Vec<RawOp>, sync: bool) -> Result<(), StorageError>;
    /// Visits entries with key >= `from` in key order until the visitor stops or the column
    /// family ends, as a [`ScanKind::Bulk`] pass. The visitor must not call back into the
    /// backend.
    fn raw_scan(
        &self,
        cf: Cf,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError> {
        self.raw_scan_as(cf, from, ScanKind::Bulk, visit)
    }
    /// [`Backend::raw_scan`] for a scan of the given kind.
    fn raw_scan_as(
        &self,
        cf: Cf,
        from: &[u8],
        kind: ScanKind,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError>;
    fn approximate_bytes(&self) -> u64;
    /// The engine's background work and cache (zero for an engine without them).
    fn engine_stats(&self) -> EngineStats {
        EngineStats::default()
    }
    fn flush(&self) -> Result<(), StorageError>;
    /// Makes every write that returned before this call durable (one WAL sync), without
    /// flushing memtables: the syncer of group commit ([`super::group_commit`]).
    fn sync_wal(&self) -> Result<(), StorageError>;
    /// A consistent point-in-time copy of every column family in `dir` (see
    /// `Storage::checkpoint`); unsupported unless the engine overrides it.
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StorageError> {
        let _ = dir;
        Err(StorageError::Unsupported(
            "the in-memory engine cannot take a checkpoint (only RocksDB can)".into(),
        ))
    }
}

/// Whether a column family holds at least one entry.
pub fn cf_is_empty(b: &dyn Backend, cf: Cf) -> Result<bool, StorageError> {
    let mut empty = true;
    b.raw_scan_as(cf, &[], ScanKind::Short, &mut |_, _| {
        empty = false;
        Flow::Stop
    })?;
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::ScanKind;

    #[test]
    fn small_pages_are_short_scans_and_larger_ones_bulk() {
        assert_eq!(ScanKind::for_limit(1), ScanKind::Short);
        assert_eq!(
            ScanKind::for_limit(ScanKind::SHORT_ENTRIES),
            ScanKind::Short
        );
        assert_eq!(
            ScanKind::for_limit(ScanKind::SHORT_ENTRIES + 1),
            ScanKind::Bulk
        );
        assert_eq!(ScanKind::for_limit(usize::MAX), ScanKind::Bulk);
    }
}
