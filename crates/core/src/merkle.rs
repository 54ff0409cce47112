//! Merkle trees of one partition's keys on one replica (pure, no I/O).
//!
//! Each key gets a leaf hash over its bucket, key and canonical object encoding, and falls into
//! one of a fixed number of *segments* chosen by a hash of (bucket, key) alone, so the same key
//! lands in the same segment on every replica whatever its value. A segment's hash is the XOR
//! of its leaf hashes: order-independent, so two replicas holding the same keys and versions
//! agree however their scans were ordered. Inner levels hash groups of [`FAN_OUT`] children
//! up to a single root.
//!
//! Two trees differ exactly in the segments holding a key that was changed, added or removed;
//! [`diff_keys`] then names the keys within those segments.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use xxhash_rust::xxh3::Xxh3;

/// Segments per tree unless the exchange asks for another count. 1024 segment hashes are
/// 8 KiB, small enough to send in one message.
pub const DEFAULT_SEGMENTS: u32 = 1024;
/// Largest segment count a peer may ask for (bounds the memory a request can cost).
pub const MAX_SEGMENTS: u32 = 1 << 16;
/// Children per inner node.
pub const FAN_OUT: usize = 32;

/// Seed of the segment hash, distinct from the ring's key hash: the ring puts every key of a
/// partition in the same top bits, so segments must not reuse them.
const SEGMENT_SEED: u64 = 0x5249_4654_4b56_4141;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("segment count {0} is outside 1..={MAX_SEGMENTS}")]
    BadSegmentCount(u32),
    #[error("segment vectors differ in length: {local} here, {remote} on the peer")]
    LengthMismatch { local: usize, remote: usize },
}

/// Checks a segment count a peer asked for.
pub fn check_segments(n: u32) -> Result<u32, MerkleError> {
    if (1..=MAX_SEGMENTS).contains(&n) {
        Ok(n)
    } else {
        Err(MerkleError::BadSegmentCount(n))
    }
}

/// One key of a tree with its leaf hash (what replicas exchange for a differing segment).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyHash {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    pub hash: u64,
}

fn update_framed(h: &mut Xxh3, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Leaf hash of one key: xxh3-64 of length-framed bucket and key, then the object bytes.
/// The framing keeps `("a", "bc")` and `("ab", "c")` apart.
pub fn leaf_hash(bucket: &[u8], key: &[u8], object: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    update_framed(&mut h, bucket);
    update_framed(&mut h, key);
    h.update(object);
    h.digest()
}

/// The segment of a key in a tree of `segments` segments (0 is treated as 1).
pub fn segment_of(bucket: &[u8], key: &[u8], segments: u32) -> u32 {
    let mut h = Xxh3::with_seed(SEGMENT_SEED);
    update_framed(&mut h, bucket);
    update_framed(&mut h, key);
    (h.digest() % u64::from(segments.max(1))) as u32
}

/// Hash of an inner node over its children's hashes (in index order).
fn inner_hash(children: &[u64]) -> u64 {
    let mut h = Xxh3::new();
    for c in children {
        h.update(&c.to_le_bytes());
    }
    h.digest()
}

/// Every level of a tree over `segments`: level 0 is the segment hashes, each next level
/// groups [`FAN_OUT`] children, and the last level holds the root alone.
pub fn levels_over(segments: &[u64]) -> Vec<Vec<u64>> {
    let mut levels = vec![segments.to_vec()];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let next = levels
            .last()
            .map(|l| l.chunks(FAN_OUT).map(inner_hash).collect())
            .unwrap_or_default();
        levels.push(next);
    }
    levels
}

/// Root of a tree over `segments` (a peer's segment vector gives its root without another
/// message).
pub fn root_of(segments: &[u64]) -> u64 {
    levels_over(segments)
        .last()
        .and_then(|l| l.first().copied())
        .unwrap_or(0)
}

/// The hashes of a tree without its keys: segment hashes and the inner levels above them.
/// A few KiB whatever the partition holds, so a node can keep one for every partition and
/// peer, and answer or start an exchange of an unchanged partition without reading a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentTree {
    /// `levels[0]` = segment hashes, last = `[root]`.
    levels: Vec<Vec<u64>>,
}

impl SegmentTree {
    /// The tree over the given segment hashes.
    pub fn from_segments(segments: &[u64]) -> SegmentTree {
        SegmentTree {
            levels: levels_over(segments),
        }
    }

    pub fn segment_count(&self) -> u32 {
        self.segment_hashes().len() as u32
    }

    pub fn root(&self) -> u64 {
        self.levels
            .last()
            .and_then(|l| l.first().copied())
            .unwrap_or(0)
    }

    /// Levels from the segments (0) up to the root (`depth() - 1`).
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// Hashes of level `i` (0 = segments); empty past the root.
    pub fn level(&self, i: usize) -> &[u64] {
        self.levels.get(i).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn segment_hashes(&self) -> &[u64] {
        self.level(0)
    }

    /// Bytes the hashes take in memory (what a cache of them counts).
    pub fn bytes(&self) -> usize {
        self.levels.iter().map(|l| l.len() * 8).sum()
    }

    /// Segments whose hash differs from a peer's segment vector, ascending. Equal roots
    /// answer at once; otherwise the inner levels are descended so only subtrees that differ
    /// are visited.
    pub fn diff_segments(&self, other: &[u64]) -> Result<Vec<u32>, MerkleError> {
        let mine = self.segment_hashes();
        if mine.len() != other.len() {
            return Err(MerkleError::LengthMismatch {
                local: mine.len(),
                remote: other.len(),
            });
        }
        let theirs = levels_over(other);
        let top = self.levels.len() - 1;
        if self.levels[top] == theirs[top] {
            return Ok(Vec::new());
        }
        // Walk down from the root keeping only the indices whose hashes differ.
        let mut differing: Vec<usize> = vec![0];
        for level in (0..top).rev() {
            let (a, b) = (&self.levels[level], &theirs[level]);
            differing = differing
                .into_iter()
                .flat_map(|parent| {
                    let end = ((parent + 1) * FAN_OUT).min(a.len());
                    parent * FAN_OUT..end
                })
                .filter(|&i| a[i] != b[i])
                .collect();
        }
        Ok(differing.into_iter().map(|i| i as u32).collect())
    }
}

/// A replica's tree of one partition, keeping each segment's keys so differing segments can
/// be answered with their key lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    /// Keys of each segment, sorted by (bucket, key).
    keys: Vec<Vec<KeyHash>>,
    hashes: SegmentTree,
}

impl MerkleTree {
    /// Builds a tree from (bucket, key, canonical object bytes) in any order.
    pub fn build<B, K, O>(segments: u32, items: impl IntoIterator<Item = (B, K, O)>) -> MerkleTree
    where
        B: AsRef<[u8]>,
        K: AsRef<[u8]>,
        O: AsRef<[u8]>,
    {
        MerkleTree::from_leaves(
            segments,
            items.into_iter().map(|(b, k, o)| {
                let (b, k) = (b.as_ref(), k.as_ref());
                KeyHash {
                    hash: leaf_hash(b, k, o.as_ref()),
                    bucket: b.to_vec(),
                    key: k.to_vec(),
                }
            }),
        )
    }

    /// Builds a tree from keys whose leaf hashes are already computed.
    pub fn from_leaves(segments: u32, leaves: impl IntoIterator<Item = KeyHash>) -> MerkleTree {
        let n = segments.max(1);
        let mut keys: Vec<Vec<KeyHash>> = vec![Vec::new(); n as usize];
        let mut hashes = vec![0u64; n as usize];
        for leaf in leaves {
            let s = segment_of(&leaf.bucket, &leaf.key, n) as usize;
            hashes[s] ^= leaf.hash;
            keys[s].push(leaf);
        }
        for seg in &mut keys {
            seg.sort_unstable();
        }
        MerkleTree {
            keys,
            hashes: SegmentTree::from_segments(&hashes),
        }
    }

    pub fn segment_count(&self) -> u32 {
        self.keys.len() as u32
    }

    /// Keys in the tree.
    pub fn len(&self) -> usize {
        self.keys.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.iter().all(Vec::is_empty)
    }

    /// The tree's hashes without its keys.
    pub fn hashes(&self) -> &SegmentTree {
        &self.hashes
    }

    pub fn root(&self) -> u64 {
        self.hashes.root()
    }

    /// Levels from the segments (0) up to the root (`depth() - 1`).
    pub fn depth(&self) -> usize {
        self.hashes.depth()
    }

    /// Hashes of level `i` (0 = segments); empty past the root.
    pub fn level(&self, i: usize) -> &[u64] {
        self.hashes.level(i)
    }

    pub fn segment_hashes(&self) -> &[u64] {
        self.hashes.segment_hashes()
    }

    /// Keys of one segment, sorted; empty for an unknown segment.
    pub fn keys_in(&self, segment: u32) -> &[KeyHash] {
        self.keys
            .get(segment as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Segments whose hash differs from a peer's segment vector
    /// ([`SegmentTree::diff_segments`]).
    pub fn diff_segments(&self, other: &[u64]) -> Result<Vec<u32>, MerkleError> {
        self.hashes.diff_segments(other)
    }
}

/// Keys present on one side only or with different leaf hashes, as (bucket, key), sorted.
/// Both lists may come in any order.
pub fn diff_keys(local: &[KeyHash], remote: &[KeyHash]) -> Vec<(Vec<u8>, Vec<u8>)> {
    // (bucket, key) -> (local hash, remote hash)
    type Sides = (Option<u64>, Option<u64>);
    let mut by_key: BTreeMap<(&[u8], &[u8]), Sides> = BTreeMap::new();
    for k in local {
        by_key.entry((&k.bucket, &k.key)).or_default().0 = Some(k.hash);
    }
    for k in remote {
        by_key.entry((&k.bucket, &k.key)).or_default().1 = Some(k.hash);
    }
    by_key
        .into_iter()
        .filter(|(_, (a, b))| a != b)
        .map(|((b, k), _)| (b.to_vec(), k.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    type Item = (Vec<u8>, Vec<u8>, Vec<u8>);

    fn item(b: &str, k: &str, v: &str) -> Item {
        (b.into(), k.into(), v.into())
    }

    fn sample(count: usize) -> Vec<Item> {
        (0..count)
            .map(|i| {
                item(
                    ["b", "c"][i % 2],
                    &format!("key-{i}"),
                    &format!("value-{i}"),
                )
            })
            .collect()
    }

    fn all_keys(t: &MerkleTree) -> Vec<KeyHash> {
        (0..t.segment_count())
            .flat_map(|s| t.keys_in(s).to_vec())
            .collect()
    }

    #[test]
    fn identical_data_gives_equal_roots_and_no_difference() {
        let a = MerkleTree::build(DEFAULT_SEGMENTS, sample(500));
        let b = MerkleTree::build(DEFAULT_SEGMENTS, sample(500));
        assert_eq!(a.root(), b.root());
        assert_eq!(a, b);
        assert_eq!(a.len(), 500);
        assert_eq!(
            a.diff_segments(b.segment_hashes()).unwrap(),
            Vec::<u32>::new()
        );
        assert_eq!(root_of(a.segment_hashes()), a.root());
        // 1024 segments, 32 inner nodes, one root.
        assert_eq!(a.depth(), 3);
        assert_eq!(
            (a.level(0).len(), a.level(1).len(), a.level(2).len()),
            (1024, 32, 1)
        );
        assert!(a.level(3).is_empty());
    }

    #[test]
    fn a_changed_added_or_removed_key_shows_in_its_segment_only() {
        let base = sample(300);
        let tree = MerkleTree::build(DEFAULT_SEGMENTS, base.clone());

        let mut changed = base.clone();
        changed[7].2 = b"other".to_vec();
        let mut added = base.clone();
        added.push(item("b", "new-key", "v"));
        let mut removed = base.clone();
        let gone = removed.remove(42);

        for (variant, (b, k)) in [
            (changed, (base[7].0.clone(), base[7].1.clone())),
            (added, (b"b".to_vec(), b"new-key".to_vec())),
            (removed, (gone.0.clone(), gone.1.clone())),
        ] {
            let other = MerkleTree::build(DEFAULT_SEGMENTS, variant);
            assert_ne!(tree.root(), other.root());
            let segs = tree.diff_segments(other.segment_hashes()).unwrap();
            assert_eq!(segs, vec![segment_of(&b, &k, DEFAULT_SEGMENTS)]);
            let keys = diff_keys(tree.keys_in(segs[0]), other.keys_in(segs[0]));
            assert_eq!(keys, vec![(b.clone(), k.clone())]);
        }
    }

    #[test]
    fn framing_keeps_bucket_and_key_apart() {
        assert_ne!(leaf_hash(b"a", b"bc", b"v"), leaf_hash(b"ab", b"c", b"v"));
        assert_ne!(leaf_hash(b"a", b"b", b"v1"), leaf_hash(b"a", b"b", b"v2"));
    }

    #[test]
    fn segment_vectors_of_another_size_are_refused() {
        let a = MerkleTree::build(DEFAULT_SEGMENTS, sample(10));
        let b = MerkleTree::build(64, sample(10));
        assert_eq!(
            a.diff_segments(b.segment_hashes()),
            Err(MerkleError::LengthMismatch {
                local: 1024,
                remote: 64
            })
        );
        assert!(check_segments(0).is_err());
        assert!(check_segments(MAX_SEGMENTS + 1).is_err());
        assert_eq!(check_segments(1024), Ok(1024));
    }

    #[test]
    fn odd_segment_counts_and_empty_trees_work() {
        let empty = MerkleTree::build::<Vec<u8>, Vec<u8>, Vec<u8>>(DEFAULT_SEGMENTS, Vec::new());
        assert!(empty.is_empty());
        let one = MerkleTree::build(1, sample(5));
        assert_eq!(one.depth(), 1);
        assert_eq!(one.keys_in(0).len(), 5);
        let odd = MerkleTree::build(1000, sample(50));
        let other = MerkleTree::build(1000, sample(51));
        let d = odd.diff_segments(other.segment_hashes()).unwrap();
        assert_eq!(d, vec![segment_of(b"b", b"key-50", 1000)]);
        assert!(
            MerkleTree::build(1000, Vec::<Item>::new())
                .diff_segments(empty.segment_hashes())
                .is_err()
        );
    }

    fn items() -> impl Strategy<Value = Vec<Item>> {
        // Unique (bucket, key) pairs, as a partition scan yields.
        prop::collection::btree_map(
            (
                prop::sample::select(vec![b"b".to_vec(), b"c".to_vec()]),
                prop::collection::vec(any::<u8>(), 0..6),
            ),
            prop::collection::vec(any::<u8>(), 0..8),
            0..80,
        )
        .prop_map(|m| m.into_iter().map(|((b, k), v)| (b, k, v)).collect())
    }

    proptest! {
        #[test]
        fn insertion_order_does_not_matter(
            items in items(),
            seed in any::<u64>(),
            segments in prop::sample::select(vec![1u32, 7, 64, 1024]),
        ) {
            let a = MerkleTree::build(segments, items.clone());
            let mut shuffled = items.clone();
            // A deterministic shuffle driven by the seed.
            let len = shuffled.len();
            let mut s = seed;
            for i in (1..len).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let b = MerkleTree::build(segments, shuffled);
            prop_assert_eq!(a.root(), b.root());
            prop_assert_eq!(&a, &b);
        }

        #[test]
        fn differing_segments_are_exactly_those_of_changed_keys(
            a in items(),
            b in items(),
        ) {
            let ta = MerkleTree::build(DEFAULT_SEGMENTS, a.clone());
            let tb = MerkleTree::build(DEFAULT_SEGMENTS, b.clone());
            let ma: BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>> =
                a.into_iter().map(|(b, k, v)| ((b, k), v)).collect();
            let mb: BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>> =
                b.into_iter().map(|(b, k, v)| ((b, k), v)).collect();
            let changed: BTreeSet<(Vec<u8>, Vec<u8>)> = ma
                .keys()
                .chain(mb.keys())
                .filter(|k| ma.get(*k) != mb.get(*k))
                .cloned()
                .collect();
            let want: BTreeSet<u32> = changed
                .iter()
                .map(|(b, k)| segment_of(b, k, DEFAULT_SEGMENTS))
                .collect();
            let segs = ta.diff_segments(tb.segment_hashes()).unwrap();
            prop_assert_eq!(segs.iter().copied().collect::<BTreeSet<u32>>(), want);
            prop_assert_eq!(ta.root() == tb.root(), changed.is_empty());
            let mut found = BTreeSet::new();
            for s in segs {
                found.extend(diff_keys(ta.keys_in(s), tb.keys_in(s)));
            }
            prop_assert_eq!(found, changed);
            // Every key lies in exactly its own segment.
            for k in all_keys(&ta) {
                let s = segment_of(&k.bucket, &k.key, DEFAULT_SEGMENTS);
                prop_assert!(ta.keys_in(s).contains(&k));
            }
        }
    }
}
