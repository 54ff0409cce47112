//! RocksDB engine: one column family per kind of record, batches as RocksDB write batches.

use super::backend::{Backend, Cf, EngineStats, Flow, RawOp, ScanKind};
use super::store::RecordStore;
use super::{StorageError, migrate};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options,
    ReadOptions, WriteOptions,
};
use std::path::Path;

/// The RocksDB sizes a node's operator chooses (`riftkv server --block-cache-mb`,
/// `--background-write-mb-per-sec`) and the one derived from the node's id (the objects
/// memtable); every other setting is fixed in this file, each with its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RocksTuning {
    /// The block cache shared by every column family, in bytes.
    pub block_cache_bytes: usize,
    /// Total size of the live WAL files past which RocksDB flushes the column families that
    /// still hold the oldest one, so a column family that is rarely written cannot keep every
    /// log file alive.
    pub max_total_wal_bytes: u64,
    /// The objects memtable, in bytes: the column family that takes nearly every write.
    pub objects_write_buffer_bytes: usize,
    /// Ceiling of the write rate of flushes and compactions, bytes per second (0: no limit).
    /// The rate adapts below it to what the background work needs, down to a twentieth of
    /// it while little is written, so a flush is spread over time instead of taking the
    /// cores from requests in one burst.
    pub background_write_bytes_per_sec: u64,
    /// Values of the objects column family at least this long (stored records, bytes) go to
    /// blob files, the table files keeping the key and a reference (0: every value stays in
    /// the table files). Compaction then rewrites keys and references, not values.
    pub blob_min_bytes: u64,
    /// Target size of one blob file. Space comes back a whole file at a time, when garbage
    /// collection has moved its live values out, so smaller files return it sooner.
    pub blob_file_bytes: u64,
}

impl RocksTuning {
    /// Block cache of a store opened without the operator's sizes (tests and tools); a node's
    /// comes from `--block-cache-mb` (256 MiB unless set).
    pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 64 << 20;
    /// Twice the objects memtable: that memtable still flushes on its own size, and the cap only
    /// forces out the quiet column families. RocksDB's own default is four times the sum of
    /// every column family's memtables (2.5 GB here), which is what a node's data dir grew to.
    pub const DEFAULT_MAX_TOTAL_WAL_BYTES: u64 = 2 * OBJECTS_WRITE_BUFFER_BYTES as u64;
    /// [`super::DEFAULT_BACKGROUND_WRITE_MB_PER_SEC`] in bytes: no limit unless set.
    pub const DEFAULT_BACKGROUND_WRITE_BYTES_PER_SEC: u64 =
        super::DEFAULT_BACKGROUND_WRITE_MB_PER_SEC << 20;
    /// A quarter of RocksDB's default (256 MiB): a node holding a few GiB still has enough
    /// files for the oldest quarter (the garbage collection's share) to be a fine cut.
    pub const DEFAULT_BLOB_FILE_BYTES: u64 = 64 << 20;

    /// The tuning of the node `node_id`: its objects memtable is sized between 3/4 and 5/4
    /// of [`OBJECTS_WRITE_BUFFER_BYTES`] by a hash of its id. Replicas receive the same writes,
    /// so with equal memtables they flush, and then compact, in the same second; a quorum
    /// then waits on a busy replica whichever two it asks. Sizes that differ spread those
    /// moments apart (BENCHMARKS.md, "Flushes that do not arrive together").
    pub fn for_node(node_id: &str) -> Self {
        let objects_write_buffer_bytes =
            staggered_write_buffer(OBJECTS_WRITE_BUFFER_BYTES, node_id);
        RocksTuning {
            objects_write_buffer_bytes,
            max_total_wal_bytes: 2 * objects_write_buffer_bytes as u64,
            ..RocksTuning::default()
        }
    }
}

/// `base` scaled into [3/4, 5/4) by a hash of `node_id`, in steps of 1/64 of `base`.
fn staggered_write_buffer(base: usize, node_id: &str) -> usize {
    // The hash's top five bits pick one of 32 steps.
    let step = (xxhash_rust::xxh3::xxh3_64(node_id.as_bytes()) >> 59) as usize;
    base / 4 * 3 + base / 64 * step
}

impl Default for RocksTuning {
    fn default() -> Self {
        RocksTuning {
            block_cache_bytes: Self::DEFAULT_BLOCK_CACHE_BYTES,
            max_total_wal_bytes: Self::DEFAULT_MAX_TOTAL_WAL_BYTES,
            objects_write_buffer_bytes: OBJECTS_WRITE_BUFFER_BYTES,
            background_write_bytes_per_sec: Self::DEFAULT_BACKGROUND_WRITE_BYTES_PER_SEC,
            blob_min_bytes: super::DEFAULT_BLOB_MIN_BYTES,
            blob_file_bytes: Self::DEFAULT_BLOB_FILE_BYTES,
        }
    }
}

/// The objects memtable (RocksDB's default size) of a node whose id is not known.
const OBJECTS_WRITE_BUFFER_BYTES: usize = 64 << 20;

/// Refill period of the background write limiter. Short, so a throttled flush writes in
/// small steps; the limiter retunes its rate every 100 periods (each second).
const BACKGROUND_WRITE_REFILL_US: i64 = 10_000;

/// WAL buffer of the power-loss mode: big enough that no test run fills it, so an unsynced
/// write reaches the OS only with a later synced write, a memtable flush or a clean stop.
const POWERLOSS_WAL_BUFFER_BYTES: u64 = 64 << 20;

/// A RocksDB database holding the four column families.
pub struct RocksBackend {
    db: DB,
    /// The block cache shared by the column families (its handle, for its usage).
    cache: Cache,
    /// The WAL is written to its file only by a synced write or [`Backend::flush`] (the
    /// test-only power-loss mode, see [`crate::fault::powerloss_mode`]).
    manual_wal_flush: bool,
}

impl std::fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.db.path())
            .finish()
    }
}

fn io(context: &str, e: rocksdb::Error) -> StorageError {
    StorageError::Io(format!("{context}: {e}"))
}

fn db_options(powerloss: bool, tuning: &RocksTuning) -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_max_total_wal_size(tuning.max_total_wal_bytes);
    o.create_missing_column_families(true);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    o.increase_parallelism(cores.clamp(2, 16) as i32);
    o.set_max_background_jobs(cores.clamp(2, 8) as i32);
    o.set_keep_log_file_num(5);
    if tuning.background_write_bytes_per_sec > 0 {
        // Flushes go first, compactions get a turn one time in ten (RocksDB's fairness).
        o.set_auto_tuned_ratelimiter(
            i64::try_from(tuning.background_write_bytes_per_sec).unwrap_or(i64::MAX),
            BACKGROUND_WRITE_REFILL_US,
            10,
        );
    }
    // The write thread's settings stay RocksDB's (adaptive yield and concurrent memtable
    // writes on, pipelined writes off): turning each the other way measured no better under
    // YCSB-A (BENCHMARKS.md, "Durable writes: group commit").
    if powerloss {
        // Unsynced writes stay in this process (WAL buffer and memtable) instead of the OS
        // page cache, so SIGKILL drops them as a power cut drops the page cache. A synced
        // write still flushes the buffer and fsyncs (RocksDB flushes before it syncs), which
        // makes it and everything before it durable, as on a real disk.
        o.set_manual_wal_flush(true);
        o.set_writable_file_max_buffer_size(POWERLOSS_WAL_BUFFER_BYTES);
    }
    o
}

/// Memtable of every column family but objects: hints, meta, AAE and the expiry index take a
/// small share of the writes, and each memtable counts fully in the process's memory (RocksDB's
/// 64 MB default, twice, in four column families would be 512 MB of RSS at worst).
const QUIET_WRITE_BUFFER_BYTES: usize = 8 << 20;

fn cf_options(cache: &Cache, cf: Cf, tuning: &RocksTuning) -> Options {
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(cache);
    // Index and filter blocks live in the cache, so their memory is bounded by it (RocksDB 10
    // gives them the cache's high-priority pool); those of L0 files, read by every lookup that
    // misses the memtable, stay pinned while their file lives.
    t.set_cache_index_and_filter_blocks(true);
    t.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Point lookups (`raw_get`) read objects and hints, whole keys, often absent: a full
    // whole-key bloom filter answers most misses without a data block. Meta and AAE are tiny;
    // the expiry index is only range-read.
    if matches!(cf, Cf::Objects | Cf::Hints) {
        t.set_bloom_filter(10.0, false);
        t.set_whole_key_filtering(true);
    }
    let mut o = Options::default();
    o.set_block_based_table_factory(&t);
    if matches!(cf, Cf::Objects | Cf::Hints) {
        // The memtable gets a whole-key bloom filter too (2% of its size): once the data
        // outgrows the memtable most point lookups (every GET, and the read before every
        // write) miss it, and the filter answers that without walking its skiplist, 6-7% of
        // a node's CPU under YCSB-A (BENCHMARKS.md, "Storage at key scale").
        o.set_memtable_prefix_bloom_ratio(0.02);
        o.set_memtable_whole_key_filtering(true);
    }
    o.set_write_buffer_size(match cf {
        Cf::Objects => tuning.objects_write_buffer_bytes,
        _ => QUIET_WRITE_BUFFER_BYTES,
    });
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    o.set_level_compaction_dynamic_level_bytes(true);
    if cf == Cf::Objects {
        blob_options(&mut o, tuning);
    }
    o
}

/// Key-value separation for the objects column family (RocksDB's integrated blob files).
/// Without it every compaction rewrites the values with their keys; at 1,000,000 keys of
/// 1 KiB that was most of a node's background work. With blob files such a node ran 5% faster
/// over 5 minutes of updates and used half the memory, for 1.4x the disk and about 1 ms more
/// open-loop read p99 at 10,000 keys (BENCHMARKS.md, "Values out of the tree"). Hints stay in
/// their tables: each is written once and deleted once delivered.
fn blob_options(o: &mut Options, tuning: &RocksTuning) {
    o.set_enable_blob_files(tuning.blob_min_bytes > 0);
    o.set_min_blob_size(tuning.blob_min_bytes);
    o.set_blob_file_size(tuning.blob_file_bytes);
    // LZ4 as in the upper levels of the tables: cheap enough to pay on every read of a value,
    // and what keeps a compressible value's space near what it was in the tables.
    o.set_blob_compression_type(DBCompressionType::Lz4);
    // A blob file's space returns only once no key refers to it. Compactions move the live
    // values out of the oldest quarter of the files (RocksDB's age cut-off) as they pass, and
    // once half of those files is garbage, RocksDB schedules compactions of just the keys that
    // refer to them, so overwritten values cannot pile up in files no compaction reaches.
    // Collection stays on with blob files off, and then takes every file, not the oldest
    // quarter (which is none of three files): a value it moves passes the size test again,
    // so the files of a data dir whose threshold was lowered to 0 drain back into the tables
    // as compactions pass. Without it they would stay, garbage and all, as long as one key
    // refers to them.
    o.set_enable_blob_gc(true);
    o.set_blob_gc_age_cutoff(match tuning.blob_min_bytes {
        0 => 1.0,
        _ => BLOB_GC_AGE_CUTOFF,
    });
    o.set_blob_gc_force_threshold(BLOB_GC_FORCE_THRESHOLD);
}

/// Bytes of a column family's blob files, garbage included (RocksDB names no constant for it).
const TOTAL_BLOB_FILE_SIZE: &std::ffi::CStr = c"rocksdb.total-blob-file-size";

/// Bytes of a column family's blob files that no key refers to any more.
const BLOB_GARBAGE_SIZE: &std::ffi::CStr = c"rocksdb.live-blob-file-garbage-size";

/// Share of the blob files, oldest first, whose live values compactions move out.
const BLOB_GC_AGE_CUTOFF: f64 = 0.25;

/// Garbage ratio of those oldest files past which RocksDB compacts to collect them.
const BLOB_GC_FORCE_THRESHOLD: f64 = 0.5;

impl RocksBackend {
    fn open(dir: &Path, tuning: &RocksTuning) -> Result<RocksBackend, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Io(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let manual_wal_flush = crate::fault::powerloss_mode();
        if manual_wal_flush {
            tracing::warn!(
                "fault injection: power-loss storage mode, unsynced writes die with the process"
            );
        }
        let opts = db_options(manual_wal_flush, tuning);
        let cache = Cache::new_lru_cache(tuning.block_cache_bytes);
        let mut descriptors: Vec<ColumnFamilyDescriptor> = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(&cache, *cf, tuning)))
            .collect();
        // Column families this binary does not know (a newer format) must still be opened, or
        // RocksDB fails before the format version can be read and reported clearly.
        if let Ok(existing) = DB::list_cf(&opts, dir) {
            for name in existing {
                if !Cf::ALL.iter().any(|cf| cf.name() == name) && name != "default" {
                    descriptors.push(ColumnFamilyDescriptor::new(name, Options::default()));
                }
            }
        }
        let db = DB::open_cf_descriptors(&opts, dir, descriptors)
            .map_err(|e| io(&format!("cannot open RocksDB in {}", dir.display()), e))?;
        Ok(RocksBackend {
            db,
            cache,
            manual_wal_flush,
        })
    }

    /// Bytes the block cache holds now.
    pub fn block_cache_bytes(&self) -> usize {
        self.cache.get_usage()
    }

    /// An integer property of one column family, 0 when RocksDB has none to give.
    fn cf_int(&self, cf: Cf, prop: &std::ffi::CStr) -> u64 {
        self.cf(cf)
            .ok()
            .and_then(|h| self.db.property_int_value_cf(h, prop).ok().flatten())
            .unwrap_or(0)
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StorageError::Io(format!("column family {} is missing", cf.name())))
    }
}

impl Backend for RocksBackend {
    fn raw_get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf(self.cf(cf)?, key)
            .map_err(|e| io("RocksDB read", e))
    }

    fn raw_write(&self, ops: Vec<RawOp>, sync: bool) -> Result<(), StorageError> {
        let mut batch = rocksdb::WriteBatch::default();
        for op in ops {
            match op {
                RawOp::Put(cf, k, v) => batch.put_cf(self.cf(cf)?, k, v),
                RawOp::Delete(cf, k) => batch.delete_cf(self.cf(cf)?, k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| io("RocksDB write", e))
    }

    fn raw_scan_as(
        &self,
        cf: Cf,
        from: &[u8],
        kind: ScanKind,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError> {
        let mut ro = ReadOptions::default();
        // A bulk pass reads each block once: caching it would only evict the blocks requests
        // read again. No explicit readahead: RocksDB's iterators already grow theirs (up to
        // 256 KiB) once reads run sequential, and a short scan would waste a large one.
        ro.fill_cache(kind == ScanKind::Short);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, ro);
        it.seek(from);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if visit(k, v) == Flow::Stop {
                break;
            }
            it.next();
        }
        it.status().map_err(|e| io("RocksDB scan", e))
    }

    fn engine_stats(&self) -> EngineStats {
        let int = |prop: &std::ffi::CStr| -> u64 {
            self.db.property_int_value(prop).ok().flatten().unwrap_or(0)
        };
        let pending = Cf::ALL.iter().fold(0u64, |sum, &cf| {
            sum.saturating_add(self.cf_int(
                cf,
                rocksdb::properties::ESTIMATE_PENDING_COMPACTION_BYTES.as_c_str(),
            ))
        });
        EngineStats {
            pending_compaction_bytes: pending,
            running_compactions: int(rocksdb::properties::NUM_RUNNING_COMPACTIONS),
            running_flushes: int(rocksdb::properties::NUM_RUNNING_FLUSHES),
            block_cache_bytes: self.cache.get_usage() as u64,
            blob_garbage_bytes: self.cf_int(Cf::Objects, BLOB_GARBAGE_SIZE),
        }
    }

    fn approximate_bytes(&self) -> u64 {
        let mut total = 0u64;
        for cf in Cf::ALL {
            for prop in [
                rocksdb::properties::TOTAL_SST_FILES_SIZE.as_c_str(),
                rocksdb::properties::SIZE_ALL_MEM_TABLES.as_c_str(),
                TOTAL_BLOB_FILE_SIZE,
            ] {
                total = total.saturating_add(self.cf_int(cf, prop));
            }
        }
        total
    }

    fn flush(&self) -> Result<(), StorageError> {
        // WAL first: with a manually flushed WAL its buffer holds writes no file has seen yet.
        self.db
            .flush_wal(true)
            .map_err(|e| io("RocksDB WAL flush", e))?;
        for cf in Cf::ALL {
            self.db
                .flush_cf(self.cf(cf)?)
                .map_err(|e| io("RocksDB flush", e))?;
        }
        self.db
            .flush_wal(true)
            .map_err(|e| io("RocksDB WAL flush", e))
    }

    fn sync_wal(&self) -> Result<(), StorageError> {
        // RocksDB's FlushWAL(sync): hands a manually flushed WAL's buffer to its file, then
        // SyncWAL, the same fsync of every live log that a synced write does. Writers go on
        // appending meanwhile; only what was written before the call is promised.
        self.db
            .flush_wal(true)
            .map_err(|e| io("RocksDB WAL sync", e))
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        if dir.exists() {
            return Err(StorageError::CheckpointExists(dir.display().to_string()));
        }
        // With a manually flushed WAL its buffer may hold writes no file has seen; a
        // checkpoint copies files, so hand them over first.
        if self.manual_wal_flush {
            self.db
                .flush_wal(true)
                .map_err(|e| io("RocksDB WAL flush", e))?;
        }
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)
            .map_err(|e| io("RocksDB checkpoint", e))?;
        cp.create_checkpoint(dir)
            .map_err(|e| io(&format!("RocksDB checkpoint into {}", dir.display()), e))
    }
}

impl Drop for RocksBackend {
    /// An orderly close keeps every write even in the power-loss mode; only a kill loses them.
    fn drop(&mut self) {
        if self.manual_wal_flush
            && let Err(e) = self.db.flush_wal(true)
        {
            tracing::error!(error = %e, "flushing the WAL at close failed");
        }
    }
}

impl RecordStore<RocksBackend> {
    /// Opens (or creates) the database in `dir` and brings it to the current on-disk format.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_tuned(dir, &RocksTuning::default())
    }

    /// [`Self::open`] with the operator's sizes.
    pub fn open_tuned(dir: &Path, tuning: &RocksTuning) -> Result<Self, StorageError> {
        let migrations = migrate::embedded()?;
        Self::open_migrated(dir, tuning, &migrations).map(|(s, _)| s)
    }

    /// Opens with an explicit migration list; returns the versions applied. Lets tests prove
    /// upgrades through formats this binary does not ship.
    #[doc(hidden)]
    pub fn open_with_migrations(
        dir: &Path,
        migrations: &[migrate::Migration],
    ) -> Result<(Self, Vec<u32>), StorageError> {
        Self::open_migrated(dir, &RocksTuning::default(), migrations)
    }

    fn open_migrated(
        dir: &Path,
        tuning: &RocksTuning,
        migrations: &[migrate::Migration],
    ) -> Result<(Self, Vec<u32>), StorageError> {
        let store = RecordStore::from_backend(RocksBackend::open(dir, tuning)?);
        let applied = migrate::run(store.backend(), migrations)?;
        Ok((store, applied))
    }
}

/// The power-loss mode, proven on a real process: a child test process writes and then dies by
/// SIGKILL, and the parent reopens what it left on disk.
#[cfg(all(test, feature = "fault-injection"))]
mod powerloss_tests {
    use super::*;
    use crate::storage::{RocksStorage, Storage, WriteBatch};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    /// Set for the child: its data dir.
    const CHILD_DIR: &str = "RIFTKV_TEST_POWERLOSS_CHILD_DIR";
    /// Set for the child: close the store before dying.
    const CHILD_CLOSES: &str = "RIFTKV_TEST_POWERLOSS_CHILD_CLOSES";
    /// Set for the child: make "synced" durable by a WAL sync after an unsynced write.
    const CHILD_SYNCS_WAL: &str = "RIFTKV_TEST_POWERLOSS_CHILD_SYNCS_WAL";
    const CHILD_TEST: &str = "storage::rocks::powerloss_tests::child_writes_then_is_killed";

    fn put(s: &RocksStorage, name: &str, sync: bool) {
        let mut b = WriteBatch::new();
        b.put_meta(name, b"x".to_vec());
        s.write(b, sync).unwrap();
    }

    /// Only does something when started by the tests below.
    #[test]
    fn child_writes_then_is_killed() {
        let Ok(dir) = std::env::var(CHILD_DIR) else {
            return;
        };
        let s = RocksStorage::open(Path::new(&dir)).unwrap();
        put(&s, "before-sync", false);
        if std::env::var_os(CHILD_SYNCS_WAL).is_some() {
            // Group commit's way: an unsynced write, then a WAL sync of its own.
            put(&s, "synced", false);
            s.sync_wal().unwrap();
        } else {
            put(&s, "synced", true);
        }
        put(&s, "after-sync", false);
        if std::env::var_os(CHILD_CLOSES).is_some() {
            drop(s);
        }
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }

    /// Runs the child on a fresh data dir; returns which of its writes survived.
    fn survivors(powerloss: bool, closes: bool) -> Vec<&'static str> {
        survivors_of(powerloss, closes, false)
    }

    fn survivors_of(powerloss: bool, closes: bool, syncs_wal: bool) -> Vec<&'static str> {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", CHILD_TEST, "--test-threads", "1", "--nocapture"])
            .env(CHILD_DIR, tmp.path())
            .env_remove(crate::fault::POWERLOSS_ENV)
            .env_remove(CHILD_CLOSES)
            .env_remove(CHILD_SYNCS_WAL);
        if syncs_wal {
            cmd.env(CHILD_SYNCS_WAL, "1");
        }
        if powerloss {
            cmd.env(crate::fault::POWERLOSS_ENV, "1");
        }
        if closes {
            cmd.env(CHILD_CLOSES, "1");
        }
        let status = cmd.status().unwrap();
        assert_eq!(status.signal(), Some(9), "the child must die by SIGKILL");
        let s = RocksStorage::open(tmp.path()).unwrap();
        ["before-sync", "synced", "after-sync"]
            .into_iter()
            .filter(|n| s.get_meta(n).unwrap().is_some())
            .collect()
    }

    #[test]
    fn sigkill_loses_exactly_the_writes_after_the_last_sync() {
        if std::env::var_os(CHILD_DIR).is_some() {
            return;
        }
        assert_eq!(survivors(true, false), ["before-sync", "synced"]);
    }

    #[test]
    fn a_wal_sync_after_unsynced_writes_keeps_them_as_a_synced_write_does() {
        if std::env::var_os(CHILD_DIR).is_some() {
            return;
        }
        assert_eq!(survivors_of(true, false, true), ["before-sync", "synced"]);
    }

    #[test]
    fn without_the_mode_or_after_a_close_nothing_is_lost() {
        if std::env::var_os(CHILD_DIR).is_some() {
            return;
        }
        let all = ["before-sync", "synced", "after-sync"];
        assert_eq!(survivors(false, false), all);
        assert_eq!(survivors(true, true), all);
    }
}

/// Bytes of the files with this extension (`log`, `blob`) in a RocksDB directory.
#[cfg(test)]
fn files_bytes(dir: &Path, ext: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        // A file may be deleted between the listing and this look (it became obsolete).
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod checkpoint_tests {
    use crate::storage::{
        MemoryStorage, ObjectKey, RocksStorage, Storage, StorageError, WriteBatch,
    };

    #[test]
    fn a_checkpoint_reopens_with_the_same_data_and_later_writes_stay_out() {
        // Short values stay in the table files, long ones go to blob files.
        let value_of = |i: u32| match i % 2 {
            0 => format!("v{i}").into_bytes(),
            _ => format!("v{i}").repeat(200).into_bytes(),
        };
        let tmp = tempfile::tempdir().unwrap();
        let s = RocksStorage::open(&tmp.path().join("db")).unwrap();
        let mut b = WriteBatch::new();
        for i in 0..100u32 {
            b.put_object(
                ObjectKey::new(i % 8, b"bk".to_vec(), format!("k{i}").into_bytes()),
                value_of(i),
            );
        }
        b.put_meta("node_id", b"n1".to_vec());
        b.put_aae(b"cursor".to_vec(), b"7".to_vec());
        s.write(b, false).unwrap();

        let cp = tmp.path().join("snap");
        s.checkpoint(&cp).unwrap();
        // Written after the checkpoint: not in it.
        let mut b = WriteBatch::new();
        b.put_object(
            ObjectKey::new(0, b"bk".to_vec(), b"late".to_vec()),
            b"x".to_vec(),
        );
        s.write(b, false).unwrap();
        // The target must not exist yet.
        assert!(matches!(
            s.checkpoint(&cp),
            Err(StorageError::CheckpointExists(_))
        ));

        // Long values live in blob files, which the checkpoint must carry too.
        assert!(
            super::files_bytes(&cp, "blob") > 0,
            "the checkpoint holds no blob file"
        );
        let c = RocksStorage::open(&cp).unwrap();
        for i in 0..100u32 {
            let k = ObjectKey::new(i % 8, b"bk".to_vec(), format!("k{i}").into_bytes());
            assert_eq!(c.get_object(&k).unwrap(), Some(value_of(i)));
        }
        assert_eq!(c.get_meta("node_id").unwrap(), Some(b"n1".to_vec()));
        assert_eq!(c.get_aae(b"cursor").unwrap(), Some(b"7".to_vec()));
        assert_eq!(
            c.get_object(&ObjectKey::new(0, b"bk".to_vec(), b"late".to_vec()))
                .unwrap(),
            None
        );
        assert_eq!(c.format_version().unwrap(), s.format_version().unwrap());
    }

    #[test]
    fn the_memory_engine_refuses_a_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let s = MemoryStorage::new();
        assert!(matches!(
            s.checkpoint(&tmp.path().join("snap")),
            Err(StorageError::Unsupported(_))
        ));
    }
}

/// The settings of this file, proven on real RocksDB stores in temp dirs.
#[cfg(test)]
mod tuning_tests {
    use super::{RocksTuning, files_bytes};
    use crate::storage::{ObjectKey, RocksStorage, Storage, WriteBatch};
    use std::time::{Duration, Instant};

    #[test]
    fn a_busy_column_family_beside_idle_ones_keeps_the_wal_under_its_cap() {
        const CAP: u64 = 1 << 20;
        let tmp = tempfile::tempdir().unwrap();
        let tuning = RocksTuning {
            max_total_wal_bytes: CAP,
            ..RocksTuning::default()
        };
        let s = RocksStorage::open_tuned(tmp.path(), &tuning).unwrap();
        // The meta column family (already holding the format version) is written once and
        // then left idle, so its memtable keeps the first log file in use.
        let mut b = WriteBatch::new();
        b.put_meta("node_id", b"n1".to_vec());
        s.write(b, false).unwrap();
        // Eight times the cap into the objects column family alone.
        let value = vec![7u8; 1024];
        for i in 0..(8 * CAP / 1024) {
            let mut b = WriteBatch::new();
            b.put_object(
                ObjectKey::new(
                    (i % 16) as u32,
                    b"bk".to_vec(),
                    format!("k{i}").into_bytes(),
                ),
                value.clone(),
            );
            s.write(b, false).unwrap();
        }
        // Flushes and the deletion of obsolete logs run in the background, on threads every
        // database of this test process shares: give them time when other tests keep them busy.
        let deadline = Instant::now() + Duration::from_secs(60);
        while files_bytes(tmp.path(), "log") > 2 * CAP && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let end = files_bytes(tmp.path(), "log");
        assert!(end <= 2 * CAP, "WAL files hold {end} bytes, cap {CAP}");
        assert_eq!(s.get_meta("node_id").unwrap(), Some(b"n1".to_vec()));
    }

    #[test]
    fn background_scans_leave_the_block_cache_to_point_reads() {
        let tmp = tempfile::tempdir().unwrap();
        // Values in the table files: what the cache holds of blob files is nothing (they are
        // read through the page cache), so only tables show what scans do to the cache.
        let tuning = RocksTuning {
            blob_min_bytes: 0,
            ..RocksTuning::default()
        };
        let s = RocksStorage::open_tuned(tmp.path(), &tuning).unwrap();
        // 16 MiB of values that do not compress, in 16 partitions, flushed to table files
        // (memtable reads never touch the block cache).
        let keys: Vec<ObjectKey> = (0..16_384u32)
            .map(|i| ObjectKey::new(i % 16, b"bk".to_vec(), format!("k{i}").into_bytes()))
            .collect();
        for chunk in keys.chunks(512) {
            let mut b = WriteBatch::new();
            for k in chunk {
                let mut value = vec![0u8; 1024];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut value);
                b.put_object(k.clone(), value);
            }
            s.write(b, false).unwrap();
        }
        s.flush().unwrap();
        let before = s.backend().block_cache_bytes();

        // What anti-entropy and handoff do: every partition, a chunk at a time.
        let mut scanned = 0;
        for p in 0..16 {
            let mut after: Option<(Vec<u8>, Vec<u8>)> = None;
            loop {
                let chunk = s
                    .scan_partition(p, after.as_ref().map(|(b, k)| (&b[..], &k[..])), 1000)
                    .unwrap();
                let Some((last, _)) = chunk.last() else { break };
                after = Some((last.bucket.clone(), last.key.clone()));
                scanned += chunk.len();
            }
        }
        assert_eq!(scanned, keys.len());
        let after_scans = s.backend().block_cache_bytes();
        assert!(
            after_scans < before + (1 << 20),
            "bulk scans grew the cache from {before} to {after_scans} bytes"
        );

        for k in &keys {
            assert!(s.get_object(k).unwrap().is_some());
        }
        let after_reads = s.backend().block_cache_bytes();
        assert!(
            after_reads > after_scans + (8 << 20),
            "point reads grew the cache only from {after_scans} to {after_reads} bytes"
        );
        // What the `riftkv_storage_*` gauges show: the same cache, and no work left after a
        // flush of data that fits one level.
        let stats = s.engine_stats();
        assert!(
            stats.block_cache_bytes >= after_reads as u64 / 2,
            "{stats:?}"
        );
        assert_eq!(stats.running_flushes, 0, "{stats:?}");
    }

    /// Compaction debt shows while it is owed: many overlapping level-0 files written in a
    /// burst are counted as pending until compaction has merged them.
    #[test]
    fn compaction_debt_is_reported_until_paid() {
        let tmp = tempfile::tempdir().unwrap();
        let s = RocksStorage::open(tmp.path()).unwrap();
        assert_eq!(s.engine_stats().pending_compaction_bytes, 0);
        let mut peak = 0;
        for round in 0..12u32 {
            let mut b = WriteBatch::new();
            for i in 0..2_000u32 {
                let k = ObjectKey::new(0, b"bk".to_vec(), format!("k{i}").into_bytes());
                b.put_object(k, format!("value {round} {i}").repeat(20).into_bytes());
            }
            s.write(b, false).unwrap();
            s.flush().unwrap();
            let stats = s.engine_stats();
            peak = peak.max(stats.pending_compaction_bytes + stats.running_compactions);
        }
        assert!(
            peak > 0,
            "twelve overlapping level-0 files never showed as compaction work"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while s.engine_stats().pending_compaction_bytes > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                s.engine_stats()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Memtable, log cap and blob files of 1 MiB: against a few MiB of data, the proportions
    /// of a node holding 1,000,000 values of 1 KiB, so a test sees many flushes and files.
    fn scaled_down() -> RocksTuning {
        RocksTuning {
            objects_write_buffer_bytes: 1 << 20,
            max_total_wal_bytes: 2 << 20,
            blob_file_bytes: 1 << 20,
            ..RocksTuning::default()
        }
    }

    /// Values overwritten at random leave garbage in every blob file, and a file's space
    /// returns only once no key refers to it. Garbage collection keeps the blob files near
    /// 1.65x the live values (at this scale: memtable, blob files and live data in the
    /// proportions of a node holding 1,000,000 1 KiB values); without it they grew to 7.8x in
    /// the same run and were still growing.
    #[test]
    fn blob_garbage_levels_off_under_random_overwrites() {
        const KEYS: u32 = 16_384;
        const ROUNDS: u32 = 12;
        let tmp = tempfile::tempdir().unwrap();
        let s = RocksStorage::open_tuned(tmp.path(), &scaled_down()).unwrap();
        let live = u64::from(KEYS) * 1024;
        let mut rng = rand::thread_rng();
        let mut ratios = Vec::new();
        for round in 0..ROUNDS {
            // After a first round that writes every key, a round writes as many values as there
            // are keys, each to a key drawn at random: about a third of the keys keep their
            // value, so old files hold live values long.
            for chunk in 0..KEYS / 256 {
                let mut b = WriteBatch::new();
                for j in 0..256 {
                    let i = match round {
                        0 => chunk * 256 + j,
                        _ => rand::Rng::gen_range(&mut rng, 0..KEYS),
                    };
                    let mut value = vec![0u8; 1024];
                    rand::RngCore::fill_bytes(&mut rng, &mut value);
                    b.put_object(
                        ObjectKey::new(i % 16, b"bk".to_vec(), format!("k{i}").into_bytes()),
                        value,
                    );
                }
                s.write(b, false).unwrap();
            }
            ratios.push(files_bytes(tmp.path(), "blob") as f64 / live as f64);
        }
        assert!(ratios[0] > 0.5, "values went to blob files: {ratios:?}");
        // Past the first rounds (the data still growing), bounded at every round.
        assert!(
            ratios[6..].iter().all(|r| *r < 2.5),
            "blob files over live values, round by round: {ratios:?}"
        );
        // Every key still reads back whole (relocated values included).
        for i in 0..KEYS {
            let k = ObjectKey::new(i % 16, b"bk".to_vec(), format!("k{i}").into_bytes());
            assert_eq!(s.get_object(&k).unwrap().map(|v| v.len()), Some(1024));
        }
        // What the `riftkv_storage_bytes` gauge shows counts the blob files (the tables alone
        // hold only keys and references), and the garbage gauge sees what overwrites left.
        assert!(s.approximate_bytes() > live, "{}", s.approximate_bytes());
        assert!(
            s.engine_stats().blob_garbage_bytes > 0,
            "{:?}",
            s.engine_stats()
        );
    }

    /// A data dir written with blob files and reopened with them off (`--blob-min-bytes 0`)
    /// reads every value, and as compactions pass, the values move back into the table files
    /// and the blob files go away.
    #[test]
    fn blob_values_drain_back_into_the_tables_once_blob_files_are_off() {
        const KEYS: u32 = 8192;
        let tmp = tempfile::tempdir().unwrap();
        let on = scaled_down();
        let key = |i: u32| ObjectKey::new(i % 16, b"bk".to_vec(), format!("k{i}").into_bytes());
        let value = |i: u32, round: u32| format!("{i:08}{round:08}").repeat(64).into_bytes();
        {
            let s = RocksStorage::open_tuned(tmp.path(), &on).unwrap();
            for chunk in 0..KEYS / 256 {
                let mut b = WriteBatch::new();
                for i in chunk * 256..(chunk + 1) * 256 {
                    b.put_object(key(i), value(i, 0));
                }
                s.write(b, false).unwrap();
            }
            s.flush().unwrap();
        }
        // (The values compress well, so the files are small.)
        assert!(
            files_bytes(tmp.path(), "blob") > 0,
            "no blob file was written"
        );

        let off = RocksTuning {
            blob_min_bytes: 0,
            ..on
        };
        let s = RocksStorage::open_tuned(tmp.path(), &off).unwrap();
        for i in 0..KEYS {
            assert_eq!(s.get_object(&key(i)).unwrap(), Some(value(i, 0)));
        }
        // Updates of every other key: their compactions pass over the keys left alone too.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut round = 0;
        while files_bytes(tmp.path(), "blob") > 0 {
            assert!(
                Instant::now() < deadline,
                "blob files still hold {} bytes after {round} rounds",
                files_bytes(tmp.path(), "blob")
            );
            round += 1;
            for chunk in 0..KEYS / 512 {
                let mut b = WriteBatch::new();
                for i in (chunk * 512..(chunk + 1) * 512).step_by(2) {
                    b.put_object(key(i), value(i, round));
                }
                s.write(b, false).unwrap();
            }
        }
        for i in 0..KEYS {
            let want = value(i, if i % 2 == 0 { round } else { 0 });
            assert_eq!(s.get_object(&key(i)).unwrap(), Some(want), "key {i}");
        }
    }

    /// A blob file damaged on disk: the value it held reads as an error, never as other
    /// bytes, and the values in the tables still read.
    #[test]
    fn a_damaged_blob_file_is_an_error_not_wrong_data() {
        let tmp = tempfile::tempdir().unwrap();
        let long = ObjectKey::new(0, b"bk".to_vec(), b"long".to_vec());
        let short = ObjectKey::new(0, b"bk".to_vec(), b"short".to_vec());
        {
            let s = RocksStorage::open(tmp.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put_object(long.clone(), vec![b'x'; 4096]);
            b.put_object(short.clone(), b"v".to_vec());
            s.write(b, false).unwrap();
            s.flush().unwrap();
        }
        let blob = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "blob"))
            .expect("a blob file");
        let mut bytes = std::fs::read(&blob).unwrap();
        // Past the file header: inside the record of the one value.
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(&blob, bytes).unwrap();

        let s = RocksStorage::open(tmp.path()).unwrap();
        assert!(s.get_object(&long).is_err(), "{:?}", s.get_object(&long));
        assert_eq!(s.get_object(&short).unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn each_node_gets_its_own_memtable_size_within_a_quarter_of_the_default() {
        let base = RocksTuning::default().objects_write_buffer_bytes;
        let tunings: Vec<RocksTuning> = (1..=64)
            .map(|i| RocksTuning::for_node(&format!("node{i}")))
            .collect();
        let sizes: Vec<usize> = tunings
            .iter()
            .map(|t| t.objects_write_buffer_bytes)
            .collect();
        for (i, t) in tunings.iter().enumerate() {
            let size = t.objects_write_buffer_bytes;
            assert!(
                size >= base / 4 * 3 && size < base / 4 * 5,
                "node{}: {size}",
                i + 1
            );
            // The WAL cap follows the memtable it must not force out.
            assert_eq!(t.max_total_wal_bytes, 2 * size as u64);
        }
        // The same id always gets the same size (it is recomputed at every start).
        assert_eq!(
            RocksTuning::for_node("node1"),
            RocksTuning::for_node("node1")
        );
        // Spread over the range rather than bunched: at least 16 of the 32 steps taken.
        let distinct: std::collections::BTreeSet<usize> = sizes.iter().copied().collect();
        assert!(distinct.len() >= 16, "{distinct:?}");
        // The three nodes of `riftkv dev` flush at moments apart: sizes at least 1/16 apart.
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            assert!(
                sizes[a].abs_diff(sizes[b]) >= base / 16,
                "node{} {} and node{} {}",
                a + 1,
                sizes[a],
                b + 1,
                sizes[b]
            );
        }
    }
}
