//! Anti-entropy trees kept between calls: building one reads every object of a partition, so a
//! tree is reused until a write to its partition (or another ring) makes it stale.
//!
//! Two tiers. The *hashes* of a tree (segment hashes and inner levels, a few KiB) are kept for
//! every (partition, peer) a node exchanges, so a quiet node answers and starts every exchange
//! of its rotation without reading an object; only a partition that changed is scanned again.
//! Whole trees (with each segment's keys, as big as the partition's key list) are kept for a
//! few partitions only: they serve the key lists of differing segments, which an exchange asks
//! for right after the hashes.
//!
//! Staleness is decided by a write generation per partition: every object write bumps it once
//! stored, and an entry is used only while the generation it was scanned at is still current,
//! so a tree never hides a write that finished before it was asked for. An entry also expires
//! after a maximum age, so damage that no write announced (a flipped bit, a lost file) is
//! found by a rebuild within that age. Bounded: at most [`MAX_TREES`] whole trees and
//! [`MAX_HASH_BYTES`] of hashes, stale entries and then the least recently used go first.

use parking_lot::{Mutex, RwLock};
use riftkv_core::merkle::{MerkleTree, SegmentTree};
use riftkv_core::types::{NodeId, PartitionId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Whole trees kept at most (each holds a partition's keys and leaf hashes).
pub const MAX_TREES: usize = 16;
/// Bytes of kept hashes at most: 4,000 trees of the default 1,024 segments, every partition
/// with every peer of a ring of 1,024 at n = 3 with room to spare.
pub const MAX_HASH_BYTES: usize = 32 << 20;
/// Default age after which a kept tree is rebuilt even if no write touched its partition: a
/// quiet node re-reads its data about every 6 hours (under 0.3% of it a minute).
pub const DEFAULT_TREE_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// What a tree was built over: partition, the peer whose shared buckets it covers, its
/// segment count and the ring version that decided which buckets those are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TreeKey {
    pub partition: PartitionId,
    pub peer: NodeId,
    pub segments: u32,
    pub ring_version: u64,
}

/// When an entry was scanned: the partition's write generation then, and the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    pub generation: u64,
    pub at_ms: u64,
}

struct Kept<T> {
    value: Arc<T>,
    scanned: Scanned,
    /// Use order: higher was used more recently.
    used: u64,
}

#[derive(Default)]
struct Inner {
    trees: HashMap<TreeKey, Kept<MerkleTree>>,
    hashes: HashMap<TreeKey, Kept<SegmentTree>>,
    hash_bytes: usize,
    uses: u64,
}

/// The kept trees and the write generations that invalidate them.
pub struct TreeCache {
    /// Write generation per partition; a write takes the read lock only once its partition
    /// has an entry.
    generations: RwLock<HashMap<PartitionId, AtomicU64>>,
    inner: Mutex<Inner>,
    max_age_ms: u64,
}

impl Default for TreeCache {
    fn default() -> Self {
        TreeCache::new(DEFAULT_TREE_MAX_AGE)
    }
}

impl TreeCache {
    /// A cache whose entries expire after `max_age`.
    pub fn new(max_age: Duration) -> TreeCache {
        TreeCache {
            generations: RwLock::new(HashMap::new()),
            inner: Mutex::new(Inner::default()),
            max_age_ms: max_age.as_millis().min(u128::from(u64::MAX)) as u64,
        }
    }

    /// A write to `partition` has been stored: its trees are stale.
    pub fn note_write(&self, partition: PartitionId) {
        if let Some(g) = self.generations.read().get(&partition) {
            g.fetch_add(1, Ordering::AcqRel);
            return;
        }
        self.generations
            .write()
            .entry(partition)
            .or_default()
            .fetch_add(1, Ordering::AcqRel);
    }

    /// The write generation of `partition`; read it before scanning for a tree.
    pub fn generation(&self, partition: PartitionId) -> u64 {
        self.generations
            .read()
            .get(&partition)
            .map(|g| g.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Stamps a scan of `partition` starting now.
    pub fn scan_started(&self, partition: PartitionId, now_ms: u64) -> Scanned {
        Scanned {
            generation: self.generation(partition),
            at_ms: now_ms,
        }
    }

    fn fresh(&self, partition: PartitionId, scanned: Scanned, now_ms: u64) -> bool {
        scanned.generation == self.generation(partition)
            && now_ms.saturating_sub(scanned.at_ms) < self.max_age_ms
    }

    /// The kept hashes for `key`, if still fresh (from a kept whole tree as well).
    pub fn hashes(&self, key: &TreeKey, now_ms: u64) -> Option<Arc<SegmentTree>> {
        let mut inner = self.inner.lock();
        inner.uses += 1;
        let now = inner.uses;
        if let Some(kept) = inner.hashes.get_mut(key) {
            if self.fresh(key.partition, kept.scanned, now_ms) {
                kept.used = now;
                return Some(kept.value.clone());
            }
            if let Some(gone) = inner.hashes.remove(key) {
                inner.hash_bytes -= gone.value.bytes();
            }
        }
        None
    }

    /// The kept whole tree for `key`, if still fresh.
    pub fn tree(&self, key: &TreeKey, now_ms: u64) -> Option<Arc<MerkleTree>> {
        let mut inner = self.inner.lock();
        inner.uses += 1;
        let now = inner.uses;
        let kept = inner.trees.get_mut(key)?;
        if self.fresh(key.partition, kept.scanned, now_ms) {
            kept.used = now;
            return Some(kept.value.clone());
        }
        inner.trees.remove(key);
        None
    }

    /// Keeps the hashes of `tree`, and the whole tree too when `whole`, unless a write to
    /// its partition has landed since the scan began (then the next call scans again).
    pub fn keep(&self, key: TreeKey, scanned: Scanned, tree: &Arc<MerkleTree>, whole: bool) {
        if scanned.generation != self.generation(key.partition) {
            return;
        }
        let hashes = Arc::new(tree.hashes().clone());
        let mut inner = self.inner.lock();
        inner.uses += 1;
        let used = inner.uses;
        if whole {
            if !inner.trees.contains_key(&key) && inner.trees.len() >= MAX_TREES {
                self.evict_tree(&mut inner);
            }
            inner.trees.insert(
                key.clone(),
                Kept {
                    value: tree.clone(),
                    scanned,
                    used,
                },
            );
        }
        let bytes = hashes.bytes();
        if bytes > MAX_HASH_BYTES {
            return;
        }
        if let Some(old) = inner.hashes.remove(&key) {
            inner.hash_bytes -= old.value.bytes();
        }
        while inner.hash_bytes + bytes > MAX_HASH_BYTES && self.evict_hashes(&mut inner) {}
        inner.hash_bytes += bytes;
        inner.hashes.insert(
            key,
            Kept {
                value: hashes,
                scanned,
                used,
            },
        );
    }

    fn evict_tree(&self, inner: &mut Inner) {
        remove_least_recent(&mut inner.trees);
    }

    /// Drops every stale hash entry, or else the least recently used one. False when there
    /// was nothing to drop.
    fn evict_hashes(&self, inner: &mut Inner) -> bool {
        let before = inner.hashes.len();
        let generations = self.generations.read();
        inner.hashes.retain(|k, kept| {
            let current = generations
                .get(&k.partition)
                .map(|g| g.load(Ordering::Acquire))
                .unwrap_or(0);
            kept.scanned.generation == current
        });
        drop(generations);
        if inner.hashes.len() == before {
            remove_least_recent(&mut inner.hashes);
        }
        inner.hash_bytes = inner.hashes.values().map(|k| k.value.bytes()).sum();
        inner.hashes.len() < before
    }

    /// Hash entries kept (fresh or not yet found stale).
    pub fn hash_entries(&self) -> usize {
        self.inner.lock().hashes.len()
    }
}

/// Drops the entry of `kept` used least recently, if any.
fn remove_least_recent<T>(kept: &mut HashMap<TreeKey, Kept<T>>) {
    let oldest = kept
        .iter()
        .min_by_key(|(_, k)| k.used)
        .map(|(k, _)| k.clone());
    if let Some(oldest) = oldest {
        kept.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: PartitionId, peer: &str) -> TreeKey {
        TreeKey {
            partition,
            peer: NodeId::from(peer),
            segments: 4,
            ring_version: 1,
        }
    }

    fn tree() -> Arc<MerkleTree> {
        Arc::new(MerkleTree::from_leaves(4, Vec::new()))
    }

    fn at(c: &TreeCache, p: PartitionId) -> Scanned {
        c.scan_started(p, 0)
    }

    #[test]
    fn a_write_makes_its_partitions_trees_stale() {
        let c = TreeCache::default();
        c.keep(key(1, "a"), at(&c, 1), &tree(), true);
        c.keep(key(2, "a"), at(&c, 2), &tree(), true);
        assert!(c.tree(&key(1, "a"), 0).is_some());
        assert!(c.hashes(&key(1, "a"), 0).is_some());
        assert!(c.tree(&key(1, "b"), 0).is_none(), "another peer's buckets");
        c.note_write(1);
        assert!(c.tree(&key(1, "a"), 0).is_none());
        assert!(c.hashes(&key(1, "a"), 0).is_none());
        assert!(
            c.tree(&key(2, "a"), 0).is_some(),
            "other partitions keep theirs"
        );
        assert!(c.hashes(&key(2, "a"), 0).is_some());
    }

    #[test]
    fn a_tree_scanned_across_a_write_is_not_kept() {
        let c = TreeCache::default();
        let s = at(&c, 1);
        c.note_write(1);
        c.keep(key(1, "a"), s, &tree(), true);
        assert!(c.tree(&key(1, "a"), 0).is_none());
        assert!(c.hashes(&key(1, "a"), 0).is_none());
    }

    #[test]
    fn the_least_recently_used_whole_tree_goes_first_but_hashes_stay() {
        let c = TreeCache::default();
        for p in 0..MAX_TREES as u32 {
            c.keep(key(p, "a"), at(&c, p), &tree(), true);
        }
        assert!(c.tree(&key(0, "a"), 0).is_some());
        c.keep(key(99, "a"), at(&c, 99), &tree(), true);
        assert!(c.tree(&key(0, "a"), 0).is_some(), "used last: kept");
        assert!(
            c.tree(&key(1, "a"), 0).is_none(),
            "least recently used: gone"
        );
        assert!(c.tree(&key(99, "a"), 0).is_some());
        for p in 0..MAX_TREES as u32 {
            assert!(c.hashes(&key(p, "a"), 0).is_some(), "hashes of {p}");
        }
    }

    #[test]
    fn entries_expire_after_the_maximum_age() {
        let c = TreeCache::new(Duration::from_secs(10));
        c.keep(key(1, "a"), c.scan_started(1, 1_000), &tree(), true);
        assert!(c.hashes(&key(1, "a"), 10_999).is_some());
        assert!(c.tree(&key(1, "a"), 10_999).is_some());
        assert!(c.hashes(&key(1, "a"), 11_000).is_none());
        assert!(c.tree(&key(1, "a"), 11_000).is_none());
        assert_eq!(c.hash_entries(), 0);
    }

    #[test]
    fn hashes_stay_within_their_byte_bound_dropping_stale_ones_first() {
        let c = TreeCache::default();
        let big = Arc::new(MerkleTree::from_leaves(64 * 1024, Vec::new()));
        let per = big.hashes().bytes();
        let fit = MAX_HASH_BYTES / per;
        for p in 0..fit as u32 {
            c.keep(key(p, "a"), at(&c, p), &big, false);
        }
        assert_eq!(c.hash_entries(), fit);
        // Partition 5 went stale: the next entry takes its room, the others stay.
        c.note_write(5);
        c.keep(key(1000, "a"), at(&c, 1000), &big, false);
        assert_eq!(c.hash_entries(), fit);
        assert!(c.hashes(&key(0, "a"), 0).is_some());
        assert!(c.hashes(&key(1000, "a"), 0).is_some());
        // None stale: the least recently used goes (partition 1; 0 and 1000 were just used).
        c.keep(key(1001, "a"), at(&c, 1001), &big, false);
        assert_eq!(c.hash_entries(), fit);
        assert!(c.hashes(&key(1, "a"), 0).is_none());
        assert!(c.hashes(&key(0, "a"), 0).is_some());
        assert!(c.inner.lock().hash_bytes <= MAX_HASH_BYTES);
    }
}
