//! Anti-entropy trees kept between calls: building one reads every object of a partition, so a
//! tree is reused until a write to its partition (or another ring) makes it stale.
//!
//! Staleness is decided by a write generation per partition: every object write bumps it once
//! stored, and a tree is kept only if no write landed between reading the generation and
//! storing the tree, so a tree never hides a write that finished before it was asked for.
//! Bounded: at most [`MAX_TREES`] trees, the least recently used goes first.

use parking_lot::Mutex;
use riftkv_core::merkle::MerkleTree;
use riftkv_core::types::{NodeId, PartitionId};
use std::collections::HashMap;
use std::sync::Arc;

/// Trees kept at most (each holds a partition's keys and leaf hashes).
pub const MAX_TREES: usize = 16;

/// What a tree was built over: partition, the peer whose shared buckets it covers, its
/// segment count and the ring version that decided which buckets those are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TreeKey {
    pub partition: PartitionId,
    pub peer: NodeId,
    pub segments: u32,
    pub ring_version: u64,
}

struct Kept {
    tree: Arc<MerkleTree>,
    /// Use order: higher was used more recently.
    used: u64,
}

#[derive(Default)]
struct Inner {
    generations: HashMap<PartitionId, u64>,
    trees: HashMap<TreeKey, Kept>,
    uses: u64,
}

/// The kept trees and the write generations that invalidate them.
#[derive(Default)]
pub struct TreeCache {
    inner: Mutex<Inner>,
}

impl TreeCache {
    /// A write to `partition` has been stored: its trees are stale.
    pub fn note_write(&self, partition: PartitionId) {
        let mut inner = self.inner.lock();
        *inner.generations.entry(partition).or_default() += 1;
        inner.trees.retain(|k, _| k.partition != partition);
    }

    /// The write generation of `partition`; read it before scanning for a tree.
    pub fn generation(&self, partition: PartitionId) -> u64 {
        self.inner
            .lock()
            .generations
            .get(&partition)
            .copied()
            .unwrap_or(0)
    }

    /// The kept tree for `key`, if any.
    pub fn get(&self, key: &TreeKey) -> Option<Arc<MerkleTree>> {
        let mut inner = self.inner.lock();
        inner.uses += 1;
        let now = inner.uses;
        let kept = inner.trees.get_mut(key)?;
        kept.used = now;
        Some(kept.tree.clone())
    }

    /// Keeps `tree`, built from a scan that began at `generation`, unless a write to its
    /// partition has landed since (then the next call builds again).
    pub fn keep(&self, key: TreeKey, generation: u64, tree: Arc<MerkleTree>) {
        let mut inner = self.inner.lock();
        let current = inner.generations.get(&key.partition).copied().unwrap_or(0);
        if current != generation {
            return;
        }
        if !inner.trees.contains_key(&key) && inner.trees.len() >= MAX_TREES {
            let oldest = inner
                .trees
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.trees.remove(&oldest);
            }
        }
        inner.uses += 1;
        let used = inner.uses;
        inner.trees.insert(key, Kept { tree, used });
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

    #[test]
    fn a_write_makes_its_partitions_trees_stale() {
        let c = TreeCache::default();
        let g = c.generation(1);
        c.keep(key(1, "a"), g, tree());
        c.keep(key(2, "a"), c.generation(2), tree());
        assert!(c.get(&key(1, "a")).is_some());
        assert!(c.get(&key(1, "b")).is_none(), "another peer's buckets");
        c.note_write(1);
        assert!(c.get(&key(1, "a")).is_none());
        assert!(
            c.get(&key(2, "a")).is_some(),
            "other partitions keep theirs"
        );
    }

    #[test]
    fn a_tree_scanned_across_a_write_is_not_kept() {
        let c = TreeCache::default();
        let g = c.generation(1);
        c.note_write(1);
        c.keep(key(1, "a"), g, tree());
        assert!(c.get(&key(1, "a")).is_none());
    }

    #[test]
    fn the_least_recently_used_tree_goes_first() {
        let c = TreeCache::default();
        for p in 0..MAX_TREES as u32 {
            c.keep(key(p, "a"), 0, tree());
        }
        assert!(c.get(&key(0, "a")).is_some());
        c.keep(key(99, "a"), 0, tree());
        assert!(c.get(&key(0, "a")).is_some(), "used last: kept");
        assert!(c.get(&key(1, "a")).is_none(), "least recently used: gone");
        assert!(c.get(&key(99, "a")).is_some());
    }
}
