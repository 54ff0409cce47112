//! Dots and version vectors: the causal vocabulary of RiftKV's versions.
//!
//! Actors are the node ids of *coordinating replicas*, never client ids, so a vector has at
//! most one entry per replica that ever coordinated a write of the key.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One write event: the `counter`-th write coordinated by `actor` for this key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub actor: NodeId,
    pub counter: u64,
}

impl Dot {
    pub fn new(actor: impl Into<NodeId>, counter: u64) -> Dot {
        Dot {
            actor: actor.into(),
            counter,
        }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor, self.counter)
    }
}

/// A stable, short (16 hex digits) tag for one version, used as the HTTP `ETag`.
///
/// Derived from the dot alone, so every replica names the same version the same way and the
/// tag never changes when siblings come and go. The separator byte 0xFF cannot occur in UTF-8,
/// so distinct dots never hash the same input.
pub fn etag(dot: &Dot) -> String {
    let mut buf = Vec::with_capacity(dot.actor.0.len() + 9);
    buf.extend_from_slice(dot.actor.0.as_bytes());
    buf.push(0xFF);
    buf.extend_from_slice(&dot.counter.to_be_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buf))
}

/// A version vector: for each actor, how many of its writes have been seen (all of `1..=n`).
///
/// This is the causal context handed to clients. Zero counters are never stored, so two
/// vectors that mean the same thing compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<NodeId, u64>", into = "BTreeMap<NodeId, u64>")]
pub struct VersionVector(BTreeMap<NodeId, u64>);

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector(BTreeMap::new())
    }

    /// How many of `actor`'s writes this vector has seen (0 when absent).
    pub fn get(&self, actor: &NodeId) -> u64 {
        self.0.get(actor).copied().unwrap_or(0)
    }

    /// Raise `actor`'s counter to at least `counter`; counters never go down.
    pub fn observe(&mut self, actor: &NodeId, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.0.get_mut(actor) {
            Some(c) => *c = (*c).max(counter),
            None => {
                self.0.insert(actor.clone(), counter);
            }
        }
    }

    /// Whether this vector has seen the write `dot`.
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(&dot.actor)
    }

    /// True when this vector has seen everything `other` has (equal vectors descend each other).
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(a, n)| self.get(a) >= *n)
    }

    /// True when neither vector has seen everything the other has.
    pub fn concurrent(&self, other: &VersionVector) -> bool {
        !self.descends(other) && !other.descends(self)
    }

    /// Pointwise maximum, in place.
    pub fn merge(&mut self, other: &VersionVector) {
        for (a, n) in &other.0 {
            self.observe(a, *n);
        }
    }

    /// Pointwise maximum, as a new vector.
    pub fn join(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        out.merge(other);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of actors with a non-zero counter.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Entries in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.0.iter().map(|(a, n)| (a, *n))
    }
}

impl FromIterator<(NodeId, u64)> for VersionVector {
    fn from_iter<T: IntoIterator<Item = (NodeId, u64)>>(iter: T) -> Self {
        let mut vv = VersionVector::new();
        for (a, n) in iter {
            vv.observe(&a, n);
        }
        vv
    }
}

impl TryFrom<BTreeMap<NodeId, u64>> for VersionVector {
    type Error = String;
    fn try_from(map: BTreeMap<NodeId, u64>) -> Result<Self, Self::Error> {
        if let Some((a, _)) = map.iter().find(|(_, n)| **n == 0) {
            return Err(format!("zero counter for actor {a}"));
        }
        Ok(VersionVector(map))
    }
}

impl From<VersionVector> for BTreeMap<NodeId, u64> {
    fn from(vv: VersionVector) -> Self {
        vv.0
    }
}

impl fmt::Display for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (a, n)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}:{n}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        pairs.iter().map(|(a, n)| (NodeId::from(*a), *n)).collect()
    }

    #[test]
    fn descends_is_pointwise() {
        let a = vv(&[("x", 2), ("y", 1)]);
        let b = vv(&[("x", 1)]);
        assert!(a.descends(&b));
        assert!(!b.descends(&a));
        assert!(a.descends(&a));
        assert!(a.descends(&VersionVector::new()));
        let c = vv(&[("y", 3)]);
        assert!(a.concurrent(&c));
        assert!(!a.concurrent(&b));
    }

    #[test]
    fn merge_takes_pointwise_max_and_skips_zeros() {
        let mut a = vv(&[("x", 2), ("y", 1)]);
        a.merge(&vv(&[("y", 5), ("z", 0), ("w", 1)]));
        assert_eq!(a, vv(&[("x", 2), ("y", 5), ("w", 1)]));
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(&NodeId::from("z")), 0);
        assert!(a.covers(&Dot::new("y", 5)));
        assert!(!a.covers(&Dot::new("y", 6)));
        assert!(!a.covers(&Dot::new("z", 1)));
    }

    #[test]
    fn zero_counters_are_rejected_on_deserialize() {
        let mut map = BTreeMap::new();
        map.insert(NodeId::from("x"), 0u64);
        let bytes = postcard::to_allocvec(&map).unwrap();
        assert!(postcard::from_bytes::<VersionVector>(&bytes).is_err());
        let good = vv(&[("x", 3)]);
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<VersionVector>(&bytes).unwrap(), good);
    }

    #[test]
    fn etag_is_stable_and_distinct() {
        let a = etag(&Dot::new("node-a", 1));
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, etag(&Dot::new("node-a", 1)));
        assert_ne!(a, etag(&Dot::new("node-a", 2)));
        assert_ne!(a, etag(&Dot::new("node-b", 1)));
    }
}
