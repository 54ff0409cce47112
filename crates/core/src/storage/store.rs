//! The record store: key layout, checksummed envelopes and damage handling over a raw backend.

use super::backend::{Backend, Cf, EngineStats, Flow, RawOp, ScanKind};
use super::keys::{self, show};
use super::record;
use super::{
    BatchOp, Entries, ExpiryEntries, HintEntries, HintKey, ObjectEntries, ObjectKey, Storage,
    StorageError, WriteBatch, migrate,
};
use crate::types::{NodeId, PartitionId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A [`Storage`] over any raw [`Backend`]; `RocksStorage` and `MemoryStorage` are instances.
#[derive(Debug)]
pub struct RecordStore<B: Backend> {
    backend: B,
    corrupt: AtomicU64,
    /// Pending hints per target, counted once (on first use) and then kept up to date by every
    /// batch that puts or deletes hints, so asking costs no scan. `None` = count again.
    hint_counts: parking_lot::Mutex<Option<BTreeMap<NodeId, u64>>>,
    /// Set when a read meets a damaged hint: it is no longer pending, so the next ask recounts.
    hints_damaged: AtomicBool,
}

/// How one batch changes the number of intact hints of a target.
type HintDeltas = BTreeMap<NodeId, i64>;

/// How much one scan returns: at most `entries` entries and, past the first, until their
/// payloads reach `bytes`.
#[derive(Clone, Copy)]
struct Budget {
    entries: usize,
    bytes: usize,
}

impl Budget {
    fn entries(entries: usize) -> Budget {
        Budget {
            entries,
            bytes: usize::MAX,
        }
    }
}

impl<B: Backend> RecordStore<B> {
    pub(crate) fn from_backend(backend: B) -> Self {
        RecordStore {
            backend,
            corrupt: AtomicU64::new(0),
            hint_counts: parking_lot::Mutex::new(None),
            hints_damaged: AtomicBool::new(false),
        }
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// Drops what this handle derived from the records (the hint counts), for a backend whose
    /// contents changed under it the way a crash changes a disk: the next use counts afresh.
    #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
    pub(crate) fn forget_derived(&self) {
        *self.hint_counts.lock() = None;
    }

    /// The on-disk format version recorded in `meta`, if any.
    pub fn format_version(&self) -> Result<Option<u32>, StorageError> {
        migrate::read_version(&self.backend)
    }

    /// Overwrites one raw record, bypassing keys and envelopes, so tests can damage data
    /// "on disk" through the real engine.
    #[doc(hidden)]
    pub fn raw_put_for_test(
        &self,
        cf: Cf,
        raw_key: &[u8],
        raw_value: &[u8],
    ) -> Result<(), StorageError> {
        if cf == Cf::Hints {
            self.hints_damaged.store(true, Ordering::Relaxed);
        }
        self.backend.raw_write(
            vec![RawOp::Put(cf, raw_key.to_vec(), raw_value.to_vec())],
            false,
        )
    }

    /// Reads one raw record as stored (envelope included).
    #[doc(hidden)]
    pub fn raw_get_for_test(
        &self,
        cf: Cf,
        raw_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.backend.raw_get(cf, raw_key)
    }

    /// Counts intact hints per target with one scan of the hints.
    fn count_hints(&self) -> Result<BTreeMap<NodeId, u64>, StorageError> {
        let mut counts: BTreeMap<NodeId, u64> = BTreeMap::new();
        self.backend.raw_scan(Cf::Hints, &[], &mut |k, v| {
            match (keys::decode_hint(k), record::open(v)) {
                (Some(h), Ok(_)) => *counts.entry(h.target).or_default() += 1,
                (None, _) => {
                    let _ = self.damaged(format!("hints key {}: undecodable key", show(k)));
                }
                (_, Err(d)) => {
                    let _ = self.damaged(format!("hints key {}: {d}", show(k)));
                }
            }
            Flow::Continue
        })?;
        Ok(counts)
    }

    /// What `ops` change in the intact hints per target, against what is stored now (later
    /// ops on one key win, as in the batch).
    fn hint_deltas(&self, ops: &[RawOp]) -> Result<HintDeltas, StorageError> {
        let mut after: BTreeMap<&[u8], bool> = BTreeMap::new();
        for op in ops {
            match op {
                RawOp::Put(Cf::Hints, k, v) => {
                    after.insert(k, record::open(v).is_ok());
                }
                RawOp::Delete(Cf::Hints, k) => {
                    after.insert(k, false);
                }
                _ => {}
            }
        }
        let mut deltas = HintDeltas::new();
        for (k, present) in after {
            let before = self
                .backend
                .raw_get(Cf::Hints, k)?
                .is_some_and(|v| record::open(&v).is_ok());
            let change = i64::from(present) - i64::from(before);
            if change != 0
                && let Some((target, _)) = keys::split_target(k)
            {
                *deltas.entry(target).or_default() += change;
            }
        }
        Ok(deltas)
    }

    fn damaged(&self, what: String) -> StorageError {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%what, "damaged storage record");
        StorageError::Corrupt { what }
    }

    /// Opens a sealed record read by a point lookup; damage is an error.
    fn unseal(
        &self,
        raw: Option<Vec<u8>>,
        what: impl FnOnce() -> String,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match raw {
            None => Ok(None),
            Some(raw) => match record::open(&raw) {
                Ok(payload) => Ok(Some(payload.to_vec())),
                Err(d) => Err(self.damaged(format!("{}: {d}", what()))),
            },
        }
    }

    /// Scans `cf` from `from` (skipping `from` itself when `exclusive`) while keys are
    /// `within` the range, decoding each entry with `decode`. Damaged entries are counted,
    /// logged and skipped; they never shorten a page below `limit` while more good entries
    /// follow.
    fn scan<T>(
        &self,
        cf: Cf,
        within: impl Fn(&[u8]) -> bool,
        from: &[u8],
        exclusive: bool,
        budget: Budget,
        mut decode: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<Vec<(T, Vec<u8>)>, StorageError> {
        let Budget {
            entries: limit,
            bytes: max_bytes,
        } = budget;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if limit == 0 {
            return Ok(out);
        }
        let kind = ScanKind::for_limit(limit);
        self.backend.raw_scan_as(cf, from, kind, &mut |k, v| {
            if !within(k) {
                return Flow::Stop;
            }
            if exclusive && k == from {
                return Flow::Continue;
            }
            let Some(key) = decode(k) else {
                let _ = self.damaged(format!("{} key {}: undecodable key", cf.name(), show(k)));
                return Flow::Continue;
            };
            if cf == Cf::Hints && record::open(v).is_err() {
                self.hints_damaged.store(true, Ordering::Relaxed);
            }
            match record::open(v) {
                Ok(payload) => {
                    bytes = bytes.saturating_add(payload.len());
                    out.push((key, payload.to_vec()));
                }
                Err(d) => {
                    let _ = self.damaged(format!("{} key {}: {d}", cf.name(), show(k)));
                    return Flow::Continue;
                }
            }
            // The first entry always fits, so one larger than the budget still moves.
            if out.len() >= limit || bytes >= max_bytes {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })?;
        Ok(out)
    }

    /// Turns a batch into raw ops, validating everything before anything is written.
    fn to_raw(batch: WriteBatch) -> Result<Vec<RawOp>, StorageError> {
        batch
            .into_ops()
            .into_iter()
            .map(|op| {
                Ok(match op {
                    BatchOp::PutObject(k, v) => {
                        RawOp::Put(Cf::Objects, keys::encode_object(&k)?, record::seal(&v))
                    }
                    BatchOp::DeleteObject(k) => {
                        RawOp::Delete(Cf::Objects, keys::encode_object(&k)?)
                    }
                    BatchOp::PutHint(k, v) => {
                        RawOp::Put(Cf::Hints, keys::encode_hint(&k)?, record::seal(&v))
                    }
                    BatchOp::DeleteHint(k) => RawOp::Delete(Cf::Hints, keys::encode_hint(&k)?),
                    BatchOp::PutMeta(name, v) => {
                        RawOp::Put(Cf::Meta, meta_key(&name)?, record::seal(&v))
                    }
                    BatchOp::DeleteMeta(name) => RawOp::Delete(Cf::Meta, meta_key(&name)?),
                    BatchOp::PutAae(k, v) => RawOp::Put(Cf::Aae, k, record::seal(&v)),
                    BatchOp::DeleteAae(k) => RawOp::Delete(Cf::Aae, k),
                    BatchOp::PutExpiry(at, k) => {
                        RawOp::Put(Cf::Expiry, keys::encode_expiry(at, &k)?, record::seal(&[]))
                    }
                    BatchOp::DeleteExpiry(at, k) => {
                        RawOp::Delete(Cf::Expiry, keys::encode_expiry(at, &k)?)
                    }
                    BatchOp::PutTombstone(k) => {
                        RawOp::Put(Cf::Tombstones, keys::encode_object(&k)?, record::seal(&[]))
                    }
                    BatchOp::DeleteTombstone(k) => {
                        RawOp::Delete(Cf::Tombstones, keys::encode_object(&k)?)
                    }
                })
            })
            .collect()
    }
}

/// Meta names under this prefix belong to the storage layer itself (format version).
pub const RESERVED_META_PREFIX: &str = "storage.";

fn meta_key(name: &str) -> Result<Vec<u8>, StorageError> {
    if name.starts_with(RESERVED_META_PREFIX) {
        return Err(StorageError::Invalid(format!(
            "meta name {name:?} is reserved for the storage layer"
        )));
    }
    Ok(name.as_bytes().to_vec())
}

impl<B: Backend> Storage for RecordStore<B> {
    fn get_object(&self, k: &ObjectKey) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self
            .backend
            .raw_get(Cf::Objects, &keys::encode_object(k)?)?;
        self.unseal(raw, || {
            format!(
                "object partition {} bucket {} key {}",
                k.partition,
                show(&k.bucket),
                show(&k.key)
            )
        })
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let touches_hints = batch
            .ops()
            .iter()
            .any(|op| matches!(op, BatchOp::PutHint(..) | BatchOp::DeleteHint(..)));
        let ops = Self::to_raw(batch)?;
        if !touches_hints {
            return self.backend.raw_write(ops, sync);
        }
        // Held across read, write and update, so two batches on one hint cannot both count it.
        let mut counts = self.hint_counts.lock();
        let Some(map) = counts.as_mut() else {
            return self.backend.raw_write(ops, sync);
        };
        let deltas = self.hint_deltas(&ops)?;
        self.backend.raw_write(ops, sync)?;
        for (target, change) in deltas {
            let n = map.entry(target.clone()).or_default();
            *n = n.saturating_add_signed(change);
            if *n == 0 {
                map.remove(&target);
            }
        }
        Ok(())
    }

    fn scan_partition(
        &self,
        partition: PartitionId,
        after: Option<(&[u8], &[u8])>,
        limit: usize,
    ) -> Result<ObjectEntries, StorageError> {
        let prefix = keys::partition_prefix(partition);
        let (from, exclusive) = match after {
            Some((bucket, key)) => (keys::object_key(partition, bucket, key)?, true),
            None => (prefix.clone(), false),
        };
        self.scan(
            Cf::Objects,
            |k| k.starts_with(&prefix),
            &from,
            exclusive,
            Budget::entries(limit),
            keys::decode_object,
        )
    }

    fn list_bucket(
        &self,
        partition: PartitionId,
        bucket: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError> {
        let prefix = keys::bucket_prefix(partition, bucket)?;
        let mut from = prefix.clone();
        if let Some(a) = after {
            from.extend_from_slice(a);
        }
        let plen = prefix.len();
        self.scan(
            Cf::Objects,
            |k| k.starts_with(&prefix),
            &from,
            after.is_some(),
            Budget::entries(limit),
            |k| Some(k[plen..].to_vec()),
        )
    }

    fn count_partition(&self, partition: PartitionId) -> Result<u64, StorageError> {
        let prefix = keys::partition_prefix(partition);
        let mut n = 0u64;
        self.backend.raw_scan(Cf::Objects, &prefix, &mut |k, v| {
            if !k.starts_with(&prefix) {
                return Flow::Stop;
            }
            match (keys::decode_object(k), record::open(v)) {
                (Some(_), Ok(_)) => n += 1,
                (None, _) => {
                    let _ = self.damaged(format!("objects key {}: undecodable key", show(k)));
                }
                (_, Err(d)) => {
                    let _ = self.damaged(format!("objects key {}: {d}", show(k)));
                }
            }
            Flow::Continue
        })?;
        Ok(n)
    }

    fn get_hint(&self, k: &HintKey) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.backend.raw_get(Cf::Hints, &keys::encode_hint(k)?)?;
        self.unseal(raw, || {
            format!(
                "hint for {} partition {} bucket {} key {}",
                k.target,
                k.partition,
                show(&k.bucket),
                show(&k.key)
            )
        })
    }

    fn scan_hints(
        &self,
        target: &NodeId,
        after: Option<&HintKey>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HintEntries, StorageError> {
        let prefix = keys::target_prefix(target)?;
        let (from, exclusive) = match after {
            Some(a) if &a.target != target => {
                return Err(StorageError::Invalid(format!(
                    "hint scan for {target} continued after a hint for {}",
                    a.target
                )));
            }
            Some(a) => (keys::encode_hint(a)?, true),
            None => (prefix.clone(), false),
        };
        self.scan(
            Cf::Hints,
            |k| k.starts_with(&prefix),
            &from,
            exclusive,
            Budget {
                entries: limit,
                bytes: max_bytes,
            },
            keys::decode_hint,
        )
    }

    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StorageError> {
        let mut counts = self.hint_counts.lock();
        if self.hints_damaged.swap(false, Ordering::Relaxed) {
            *counts = None;
        }
        let map = match counts.as_mut() {
            Some(map) => map,
            None => counts.insert(self.count_hints()?),
        };
        Ok(map.iter().map(|(t, n)| (t.clone(), *n)).collect())
    }

    fn scan_expiry(
        &self,
        after: Option<(u64, &ObjectKey)>,
        up_to_ms: u64,
        limit: usize,
    ) -> Result<ExpiryEntries, StorageError> {
        let (from, exclusive) = match after {
            Some((at, k)) => (keys::encode_expiry(at, k)?, true),
            None => (Vec::new(), false),
        };
        // Instants sort first: the first entry past `up_to_ms` ends the range (an undecodable
        // key does not end it; the scan counts and skips it).
        let due = |k: &[u8]| keys::decode_expiry(k).is_none_or(|(at, _)| at <= up_to_ms);
        let entries = self.scan(
            Cf::Expiry,
            due,
            &from,
            exclusive,
            Budget::entries(limit),
            keys::decode_expiry,
        )?;
        Ok(entries.into_iter().map(|(e, _)| e).collect())
    }

    fn scan_tombstones(
        &self,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StorageError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let from = match after {
            Some(k) => keys::encode_object(k)?,
            None => Vec::new(),
        };
        // Not `scan`: the entry's payload is empty, so a damaged envelope loses nothing; the
        // key still goes to the caller, who checks the object itself.
        self.backend.raw_scan(Cf::Tombstones, &from, &mut |k, v| {
            if after.is_some() && k == from.as_slice() {
                return Flow::Continue;
            }
            let Some(key) = keys::decode_object(k) else {
                let _ = self.damaged(format!("tombstones key {}: undecodable key", show(k)));
                return Flow::Continue;
            };
            if let Err(d) = record::open(v) {
                let _ = self.damaged(format!("tombstones key {}: {d}", show(k)));
            }
            out.push(key);
            if out.len() >= limit {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })?;
        Ok(out)
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.backend.raw_get(Cf::Meta, name.as_bytes())?;
        self.unseal(raw, || format!("meta {name:?}"))
    }

    fn get_aae(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.backend.raw_get(Cf::Aae, k)?;
        self.unseal(raw, || format!("aae key {}", show(k)))
    }

    fn scan_aae_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, StorageError> {
        self.scan(
            Cf::Aae,
            |k| k.starts_with(prefix),
            prefix,
            false,
            Budget::entries(limit),
            |k| Some(k.to_vec()),
        )
    }

    fn approximate_bytes(&self) -> u64 {
        self.backend.approximate_bytes()
    }

    fn engine_stats(&self) -> EngineStats {
        self.backend.engine_stats()
    }

    fn corrupt_records(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.backend.flush()
    }

    fn sync_wal(&self) -> Result<(), StorageError> {
        self.backend.sync_wal()
    }

    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StorageError> {
        self.backend.checkpoint(dir)
    }

    #[cfg(any(test, feature = "fault-injection", feature = "testkit"))]
    fn damage_objects_for_test(
        &self,
        bucket: &[u8],
        key: Option<&[u8]>,
        fraction: f64,
    ) -> Result<super::damage::Damage, StorageError> {
        self.damage_objects(bucket, key, fraction, &mut rand::thread_rng())
    }
}
