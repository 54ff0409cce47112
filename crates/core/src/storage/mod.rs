//! Local storage of one node: objects, hints, node metadata and anti-entropy state.
//!
//! The layer stores *opaque value bytes* (encoded objects come from `version`) inside its own
//! checksummed record envelope, so disk damage surfaces as [`StorageError::Corrupt`] for one
//! record instead of a garbled object or a dead node. It is synchronous, because RocksDB is;
//! async callers wrap calls in `spawn_blocking`. Callers hold an `Arc<dyn Storage>` and never
//! see RocksDB: [`RocksStorage`] serves real nodes, [`MemoryStorage`] serves tests with the
//! exact same semantics (both are one [`RecordStore`] over different raw backends).
//!
//! The on-disk format is versioned: `migrations/` holds one file per version, embedded in the
//! binary and applied in order at open (see [`migrate`]).

pub mod backend;
#[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
pub mod damage;
pub mod group_commit;
pub mod keys;
mod legacy_ring_state;
pub mod memory;
pub mod migrate;
pub mod record;
#[cfg(feature = "rocksdb")]
pub mod rocks;
pub mod store;

#[cfg(all(test, feature = "rocksdb"))]
mod conformance;

use crate::types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};

pub use backend::{Cf, EngineStats};
pub use memory::MemoryBackend;
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksBackend, RocksTuning};
pub use store::RecordStore;

/// Default ceiling of the write rate of flushes and compactions, MiB/s; 0 is no limit. With a
/// ceiling of 640 MiB/s (a floor of 32) YCSB-A at 1,000,000 keys ran at 0.79–1.01x (0.88x in
/// the middle) of no limit, as compaction fell behind, while the open-loop tail it smooths at
/// 10,000 keys was as low with staggered memtables alone (BENCHMARKS.md, "Flushes that do not
/// arrive together"). Here rather than beside the RocksDB engine so that builds without RocksDB
/// (the fuzz targets) see the same default.
pub const DEFAULT_BACKGROUND_WRITE_MB_PER_SEC: u64 = 0;

/// Default length from which a stored object goes to a blob file instead of the table files
/// (0: never). A 1 KiB value is past it; a tombstone or a short counter is not, and stays
/// where a read finds it without a second file access. Beside the background write default
/// for the same reason.
pub const DEFAULT_BLOB_MIN_BYTES: u64 = 512;

/// The on-disk format this binary writes; the last file in `migrations/`.
pub const FORMAT_VERSION: u32 = 7;

/// Storage backed by RocksDB in a data dir.
#[cfg(feature = "rocksdb")]
pub type RocksStorage = RecordStore<RocksBackend>;
/// Storage held in memory, for tests.
pub type MemoryStorage = RecordStore<MemoryBackend>;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A stored record failed its checksum or could not be decoded.
    #[error("damaged record: {what}")]
    Corrupt { what: String },
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error(
        "data dir was written by a newer RiftKV: on-disk format {found}, this binary supports up to {supported}"
    )]
    NewerFormat { found: u32, supported: u32 },
    #[error("storage migration failed: {0}")]
    Migration(String),
    /// A request the key layout cannot hold (bucket too long, reserved meta name, ...).
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// The engine cannot do this at all (e.g. a checkpoint of the in-memory test engine).
    #[error("not supported by this storage: {0}")]
    Unsupported(String),
    /// A checkpoint's target directory already exists (RocksDB creates it itself).
    #[error("checkpoint target {0} already exists")]
    CheckpointExists(String),
}

/// Where an object lives: its ring partition, bucket and key.
///
/// The derived `Ord` compares buckets bytewise; scans return objects in *storage* order,
/// which within one partition sorts buckets by length first (keys within a bucket are in
/// byte order either way).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub partition: PartitionId,
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
}

impl ObjectKey {
    pub fn new(
        partition: PartitionId,
        bucket: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        ObjectKey {
            partition,
            bucket: bucket.into(),
            key: key.into(),
        }
    }
}

/// A write held for another node (`target`) until it can be handed off.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HintKey {
    pub target: NodeId,
    pub partition: PartitionId,
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
}

impl HintKey {
    /// The hint for `target` of the object at `k`.
    pub fn for_object(target: NodeId, k: &ObjectKey) -> Self {
        HintKey {
            target,
            partition: k.partition,
            bucket: k.bucket.clone(),
            key: k.key.clone(),
        }
    }

    /// The object this hint carries.
    pub fn object_key(&self) -> ObjectKey {
        ObjectKey {
            partition: self.partition,
            bucket: self.bucket.clone(),
            key: self.key.clone(),
        }
    }
}

/// Raw keys (bucket keys or AAE keys) with their value bytes.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;
/// Objects with their value bytes, as a partition scan returns them.
pub type ObjectEntries = Vec<(ObjectKey, Vec<u8>)>;
/// Hints with their value bytes, as a hint scan returns them.
pub type HintEntries = Vec<(HintKey, Vec<u8>)>;
/// Expiry index entries: the instant (ms) and the object listed at it.
pub type ExpiryEntries = Vec<(u64, ObjectKey)>;

/// One change inside a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    PutObject(ObjectKey, Vec<u8>),
    DeleteObject(ObjectKey),
    PutHint(HintKey, Vec<u8>),
    DeleteHint(HintKey),
    PutMeta(String, Vec<u8>),
    DeleteMeta(String),
    PutAae(Vec<u8>, Vec<u8>),
    DeleteAae(Vec<u8>),
    /// Lists the object at `ObjectKey` in the expiry index at the instant (ms).
    PutExpiry(u64, ObjectKey),
    DeleteExpiry(u64, ObjectKey),
    /// Lists the object at `ObjectKey` in the tombstone index (every version a tombstone).
    PutTombstone(ObjectKey),
    DeleteTombstone(ObjectKey),
}

/// Changes applied all together or not at all; later ops win over earlier ones on one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, op: BatchOp) -> &mut Self {
        self.ops.push(op);
        self
    }
    pub fn put_object(&mut self, k: ObjectKey, value: Vec<u8>) -> &mut Self {
        self.push(BatchOp::PutObject(k, value))
    }
    pub fn delete_object(&mut self, k: ObjectKey) -> &mut Self {
        self.push(BatchOp::DeleteObject(k))
    }
    pub fn put_hint(&mut self, k: HintKey, value: Vec<u8>) -> &mut Self {
        self.push(BatchOp::PutHint(k, value))
    }
    pub fn delete_hint(&mut self, k: HintKey) -> &mut Self {
        self.push(BatchOp::DeleteHint(k))
    }
    pub fn put_meta(&mut self, name: impl Into<String>, value: Vec<u8>) -> &mut Self {
        self.push(BatchOp::PutMeta(name.into(), value))
    }
    pub fn delete_meta(&mut self, name: impl Into<String>) -> &mut Self {
        self.push(BatchOp::DeleteMeta(name.into()))
    }
    pub fn put_aae(&mut self, k: Vec<u8>, value: Vec<u8>) -> &mut Self {
        self.push(BatchOp::PutAae(k, value))
    }
    pub fn delete_aae(&mut self, k: Vec<u8>) -> &mut Self {
        self.push(BatchOp::DeleteAae(k))
    }
    /// Lists `k` in the expiry index at `at_ms`; write it in the batch that stores the object.
    pub fn put_expiry(&mut self, at_ms: u64, k: ObjectKey) -> &mut Self {
        self.push(BatchOp::PutExpiry(at_ms, k))
    }
    pub fn delete_expiry(&mut self, at_ms: u64, k: ObjectKey) -> &mut Self {
        self.push(BatchOp::DeleteExpiry(at_ms, k))
    }
    /// Lists `k` in the tombstone index; write it in the batch that stores the object.
    pub fn put_tombstone(&mut self, k: ObjectKey) -> &mut Self {
        self.push(BatchOp::PutTombstone(k))
    }
    pub fn delete_tombstone(&mut self, k: ObjectKey) -> &mut Self {
        self.push(BatchOp::DeleteTombstone(k))
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}

impl From<Vec<BatchOp>> for WriteBatch {
    fn from(ops: Vec<BatchOp>) -> Self {
        WriteBatch { ops }
    }
}

/// A node's local store. Synchronous; shared as `Arc<dyn Storage>`.
pub trait Storage: Send + Sync + 'static {
    /// The value bytes of one object; `Corrupt` if its record is damaged.
    fn get_object(&self, k: &ObjectKey) -> Result<Option<Vec<u8>>, StorageError>;
    /// All ops applied atomically; `sync` = fsync the WAL before returning (used for `dw`).
    /// An invalid op (e.g. a bucket of 0 or 256 bytes) rejects the whole batch.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError>;
    /// One chunk of a partition in storage order, strictly after `after` (bucket, key); up to
    /// `limit` entries. Damaged records are logged, counted and skipped, never abort the scan.
    fn scan_partition(
        &self,
        partition: PartitionId,
        after: Option<(&[u8], &[u8])>,
        limit: usize,
    ) -> Result<ObjectEntries, StorageError>;
    /// Keys of one bucket within one partition, in byte order, strictly after `after`, up to
    /// `limit`, with their value bytes. Damaged records are skipped as in scans.
    fn list_bucket(
        &self,
        partition: PartitionId,
        bucket: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError>;
    /// Readable objects in a partition (a full scan of it).
    fn count_partition(&self, partition: PartitionId) -> Result<u64, StorageError>;
    fn get_hint(&self, k: &HintKey) -> Result<Option<Vec<u8>>, StorageError>;
    /// Hints for one target node in key order after `after`, up to `limit` entries and,
    /// past the first, until their payloads reach `max_bytes` (so a batch of large hints
    /// still fits one frame).
    fn scan_hints(
        &self,
        target: &NodeId,
        after: Option<&HintKey>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HintEntries, StorageError>;
    /// Every target node that has at least one pending (intact) hint, with its count, by node
    /// id. Kept up to date by writes, so asking costs no scan (only the first ask counts).
    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StorageError>;
    /// Expiry index entries due by `up_to_ms` (instant <= it), in (instant, key) order,
    /// strictly after `after`, up to `limit`. The index lists objects whose versions all
    /// expire or are tombstones; an entry may be stale (its object since rewritten or gone),
    /// so callers check the object and drop stale entries.
    fn scan_expiry(
        &self,
        after: Option<(u64, &ObjectKey)>,
        up_to_ms: u64,
        limit: usize,
    ) -> Result<ExpiryEntries, StorageError>;
    /// Tombstone index entries in storage order (partition, bucket, key), strictly after
    /// `after`, up to `limit`. The index lists objects whose versions are all tombstones; an
    /// entry may be stale (its object since rewritten or gone), so callers check the object.
    /// An entry whose record is damaged but whose key decodes is still returned (and counted),
    /// so the caller re-checks it against the object instead of losing the key.
    fn scan_tombstones(
        &self,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StorageError>;
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    fn get_aae(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// AAE entries whose key starts with `prefix`, in key order, up to `limit`.
    fn scan_aae_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, StorageError>;
    /// Approximate bytes used on disk (for `riftkv_storage_bytes`).
    fn approximate_bytes(&self) -> u64;
    /// The engine's background work and cache (for the `riftkv_storage_*` gauges).
    fn engine_stats(&self) -> EngineStats {
        EngineStats::default()
    }
    /// Damaged records encountered since open (each encounter counts once).
    fn corrupt_records(&self) -> u64;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StorageError>;
    /// Makes every write that returned before this call durable: one WAL sync, shared by all
    /// of them (group commit, see [`group_commit`]); memtables are not flushed.
    fn sync_wal(&self) -> Result<(), StorageError>;
    /// Writes an online, consistent copy of the whole store (every column family, one point
    /// in time) into `dir`, which must not exist yet; the copy opens as a data dir's `db`.
    /// RocksDB hard-links its immutable files where it can, so this is cheap and does not
    /// stop writes. Engines that cannot (the in-memory test engine) answer
    /// [`StorageError::Unsupported`].
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StorageError> {
        let _ = dir;
        Err(StorageError::Unsupported(
            "this storage cannot take a checkpoint".into(),
        ))
    }
    /// Test only (riftkv-jepsen's `corrupt` nemesis): damages `fraction` of the intact object
    /// records of `bucket` (of `key` only, when given) so their checksum fails; see
    /// [`damage`].
    #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
    fn damage_objects_for_test(
        &self,
        bucket: &[u8],
        key: Option<&[u8]>,
        fraction: f64,
    ) -> Result<damage::Damage, StorageError> {
        let _ = (bucket, key, fraction);
        Err(StorageError::Invalid(
            "this storage cannot damage its records".into(),
        ))
    }
}
