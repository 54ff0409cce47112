//! Partition ownership and preference lists.
//!
//! A [`Ring`] is plain data (who owns which partition) that membership gossips. Preference
//! lists are derived from it: the owner of `p`, then the owners of `p+1`, `p+2`, … skipping
//! nodes already listed. They sit on the hot path of every request, so each ring builds them
//! once per `n` on first use and hands out slices.

use super::RingError;
use super::hash::validate_ring_size;
use crate::types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Lists for `n` up to this bound are cached per `n`; larger `n` share one table of full walks.
const CACHED_N: usize = 16;

/// Which node owns each partition. `owners[p]` owns partition `p`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RingRepr", into = "RingRepr")]
pub struct Ring {
    ring_size: u32,
    owners: Vec<NodeId>,
    /// Distinct owners, sorted; indices into it are used by the caches.
    nodes: Vec<NodeId>,
    /// `owner_idx[p]` = index in `nodes` of `owners[p]`.
    owner_idx: Vec<u32>,
    /// Derived data, shared by clones (a ring never changes after construction).
    cache: Arc<PrefCache>,
}

#[derive(Serialize, Deserialize)]
struct RingRepr {
    ring_size: u32,
    owners: Vec<NodeId>,
}

impl TryFrom<RingRepr> for Ring {
    type Error = RingError;
    fn try_from(r: RingRepr) -> Result<Self, RingError> {
        if r.owners.len() as u64 != r.ring_size as u64 {
            return Err(RingError::OwnerCount {
                ring_size: r.ring_size,
                owners: r.owners.len(),
            });
        }
        Ring::from_owners(r.owners)
    }
}

impl From<Ring> for RingRepr {
    fn from(r: Ring) -> Self {
        RingRepr {
            ring_size: r.ring_size,
            owners: r.owners,
        }
    }
}

/// Preference lists per `n`, built lazily. `by_n[n-1]` holds `ring_size` lists of
/// `min(n, nodes)` entries each, flattened; `full` holds the complete walks.
#[derive(Default)]
struct PrefCache {
    by_n: [OnceLock<Vec<NodeId>>; CACHED_N],
    full: OnceLock<Vec<NodeId>>,
}

impl PartialEq for Ring {
    fn eq(&self, other: &Self) -> bool {
        self.ring_size == other.ring_size && self.owners == other.owners
    }
}
impl Eq for Ring {}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("ring_size", &self.ring_size)
            .field("owners", &self.owners)
            .finish()
    }
}

impl Ring {
    /// Builds a ring from its owner table; its length is the ring size and must be valid.
    pub fn from_owners(owners: Vec<NodeId>) -> Result<Ring, RingError> {
        let len = owners.len();
        if len == 0 || len > u32::MAX as usize {
            return Err(RingError::InvalidRingSize {
                size: len as u64,
                max: super::hash::MAX_RING_SIZE,
            });
        }
        validate_ring_size(len as u32)?;
        let mut nodes = owners.clone();
        nodes.sort();
        nodes.dedup();
        let owner_idx = owners
            .iter()
            .map(|o| nodes.binary_search(o).unwrap_or(0) as u32)
            .collect();
        Ok(Ring {
            ring_size: len as u32,
            owners,
            nodes,
            owner_idx,
            cache: Arc::new(PrefCache::default()),
        })
    }

    /// Number of partitions.
    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    /// True when `p` names a partition of this ring (check ids that come from peers).
    pub fn contains_partition(&self, p: PartitionId) -> bool {
        p < self.ring_size
    }

    /// Reduces an id to this ring: accessors take ids modulo the ring size so that a bad id
    /// never panics; callers validate foreign ids with [`Ring::contains_partition`].
    fn slot(&self, p: PartitionId) -> usize {
        (p % self.ring_size) as usize
    }

    /// The owner of partition `p` (taken modulo the ring size).
    pub fn owner(&self, p: PartitionId) -> &NodeId {
        &self.owners[self.slot(p)]
    }

    /// The whole owner table, indexed by partition.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// Distinct owners, sorted.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.nodes.clone()
    }

    /// Distinct owners, sorted, without copying.
    pub fn node_set(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Partitions owned by `node`, ascending.
    pub fn partitions_of(&self, node: &NodeId) -> Vec<PartitionId> {
        (0..self.ring_size)
            .filter(|&p| &self.owners[p as usize] == node)
            .collect()
    }

    /// Indices (into `nodes`) of the walk from `p`, stopping after `limit` distinct nodes.
    fn walk_indices(&self, p: usize, limit: usize) -> Vec<u32> {
        let q = self.owners.len();
        let limit = limit.min(self.nodes.len());
        let mut out = Vec::with_capacity(limit);
        // Short lists check membership linearly; long ones use a bitmap over the nodes.
        let mut seen = if limit > 32 {
            vec![false; self.nodes.len()]
        } else {
            Vec::new()
        };
        for step in 0..q {
            if out.len() == limit {
                break;
            }
            let i = self.owner_idx[(p + step) % q];
            let new = if seen.is_empty() {
                !out.contains(&i)
            } else {
                !std::mem::replace(&mut seen[i as usize], true)
            };
            if new {
                out.push(i);
            }
        }
        out
    }

    fn build_table(&self, depth: usize) -> Vec<NodeId> {
        let mut table = Vec::with_capacity(self.owners.len() * depth);
        for p in 0..self.owners.len() {
            let walk = self.walk_indices(p, depth);
            table.extend(walk.into_iter().map(|i| self.nodes[i as usize].clone()));
        }
        table
    }

    /// The key's replicas: `min(n, nodes)` distinct nodes, the owner of `p` first, then the
    /// owners of the following partitions, skipping nodes already listed. `n = 0` is empty.
    pub fn preference_list(&self, p: PartitionId, n: usize) -> &[NodeId] {
        let depth = n.min(self.nodes.len());
        if depth == 0 {
            return &[];
        }
        let p = self.slot(p);
        if depth <= CACHED_N {
            let table = self.cache.by_n[depth - 1].get_or_init(|| self.build_table(depth));
            &table[p * depth..(p + 1) * depth]
        } else {
            let k = self.nodes.len();
            let table = self.cache.full.get_or_init(|| self.build_table(k));
            &table[p * k..p * k + depth]
        }
    }

    /// Every distinct node in ring order from `p`: the preference list first, then the
    /// fallbacks a sloppy quorum uses when primaries are unreachable.
    pub fn walk(&self, p: PartitionId) -> Vec<NodeId> {
        self.walk_indices(self.slot(p), usize::MAX)
            .into_iter()
            .map(|i| self.nodes[i as usize].clone())
            .collect()
    }

    /// Partitions whose preference list (for `n`) includes `node`, ascending.
    pub fn replicated_partitions(&self, node: &NodeId, n: usize) -> Vec<PartitionId> {
        (0..self.ring_size)
            .filter(|&p| self.preference_list(p, n).contains(node))
            .collect()
    }

    /// Partitions owned per node, in `nodes()` order.
    pub fn ownership_counts(&self) -> Vec<(NodeId, usize)> {
        let mut counts = vec![0usize; self.nodes.len()];
        for &i in &self.owner_idx {
            counts[i as usize] += 1;
        }
        self.nodes.iter().cloned().zip(counts).collect()
    }

    /// Partitions whose owner differs between `self` and `other` (all of them when the
    /// ring sizes differ): the ownership transfers a ring change implies.
    pub fn moved_partitions(&self, other: &Ring) -> Vec<PartitionId> {
        if self.ring_size != other.ring_size {
            return (0..self.ring_size).collect();
        }
        (0..self.ring_size)
            .filter(|&p| self.owners[p as usize] != other.owners[p as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(owners: &[&str]) -> Ring {
        Ring::from_owners(owners.iter().map(|s| NodeId::from(*s)).collect()).unwrap()
    }

    fn ids(v: &[NodeId]) -> Vec<&str> {
        v.iter().map(|n| n.as_str()).collect()
    }

    #[test]
    fn from_owners_checks_size() {
        assert!(Ring::from_owners(vec![]).is_err());
        assert!(Ring::from_owners(vec![NodeId::from("a"); 3]).is_err());
        assert!(Ring::from_owners(vec![NodeId::from("a"); 1]).is_ok());
    }

    #[test]
    fn preference_list_skips_repeats_and_wraps() {
        let r = ring(&["a", "a", "b", "a", "c", "b", "d", "a"]);
        assert_eq!(ids(r.preference_list(0, 3)), ["a", "b", "c"]);
        assert_eq!(ids(r.preference_list(6, 3)), ["d", "a", "b"]);
        assert_eq!(ids(r.preference_list(7, 2)), ["a", "b"]);
        assert_eq!(ids(r.preference_list(7, 10)), ["a", "b", "c", "d"]);
        assert!(r.preference_list(3, 0).is_empty());
        assert_eq!(ids(&r.walk(5)), ["b", "d", "a", "c"]);
        // Ids past the end wrap instead of panicking.
        assert_eq!(r.preference_list(8, 2), r.preference_list(0, 2));
        assert!(!r.contains_partition(8));
    }

    #[test]
    fn large_n_uses_full_walks() {
        let owners: Vec<NodeId> = (0..32).map(|i| NodeId::new(format!("n{i:02}"))).collect();
        let r = Ring::from_owners(owners).unwrap();
        let list = r.preference_list(30, 20);
        assert_eq!(list.len(), 20);
        assert_eq!(list[0].as_str(), "n30");
        assert_eq!(list[2].as_str(), "n00");
        assert_eq!(list, &r.walk(30)[..20]);
    }

    #[test]
    fn partition_queries() {
        let r = ring(&["b", "a", "b", "c"]);
        assert_eq!(ids(&r.nodes()), ["a", "b", "c"]);
        assert_eq!(r.partitions_of(&NodeId::from("b")), vec![0, 2]);
        assert!(r.partitions_of(&NodeId::from("zz")).is_empty());
        // a is in the lists of partitions 0 (b,a) and 1 (a,b); c in 2 (b,c) and 3 (c,b).
        assert_eq!(r.replicated_partitions(&NodeId::from("a"), 2), vec![0, 1]);
        assert_eq!(r.replicated_partitions(&NodeId::from("c"), 2), vec![2, 3]);
        assert_eq!(r.owner(3).as_str(), "c");
        let counts = r.ownership_counts();
        assert_eq!(counts[1], (NodeId::from("b"), 2));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let r = ring(&["a", "b", "a", "b"]);
        let _ = r.preference_list(0, 2); // a filled cache must not leak into the encoding
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"ring_size":4,"owners":["a","b","a","b"]}"#);
        let back: Ring = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let bytes = postcard::to_stdvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<Ring>(&bytes).unwrap(), r);
        assert!(serde_json::from_str::<Ring>(r#"{"ring_size":3,"owners":["a","b","c"]}"#).is_err());
        assert!(serde_json::from_str::<Ring>(r#"{"ring_size":4,"owners":["a","b"]}"#).is_err());
    }
}
