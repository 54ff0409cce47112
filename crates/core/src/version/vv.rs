//! Write identities, dots and version vectors: the causal vocabulary of RiftKV's versions.
//!
//! Actors are *write identities* of coordinating replicas, never client ids: a node id plus
//! the epoch of that node's custody of the key (see [`super::identity`]). A node takes a new
//! epoch whenever it may have forgotten writes it made to a key, so a dot never names two
//! writes, and a vector still has at most a handful of entries per replica.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Who issued a write: a node, and the epoch of its custody of the key.
///
/// Epoch 0 is the identity of writes made before epochs existed (format-1 data); no node ever
/// takes epoch 0 again, so such history is read and merged but never extended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub node: NodeId,
    pub epoch: u64,
}

impl Actor {
    pub fn new(node: impl Into<NodeId>, epoch: u64) -> Actor {
        Actor {
            node: node.into(),
            epoch,
        }
    }
}

/// A bare node id names the legacy identity (epoch 0).
impl From<NodeId> for Actor {
    fn from(node: NodeId) -> Actor {
        Actor { node, epoch: 0 }
    }
}

impl From<&NodeId> for Actor {
    fn from(node: &NodeId) -> Actor {
        Actor {
            node: node.clone(),
            epoch: 0,
        }
    }
}

impl From<&Actor> for Actor {
    fn from(a: &Actor) -> Actor {
        a.clone()
    }
}

impl From<&str> for Actor {
    fn from(node: &str) -> Actor {
        Actor {
            node: NodeId::from(node),
            epoch: 0,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch == 0 {
            write!(f, "{}", self.node)
        } else {
            write!(f, "{}~{:x}", self.node, self.epoch)
        }
    }
}

/// One write event: the `counter`-th write issued under `actor` for this key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub actor: Actor,
    pub counter: u64,
}

impl Dot {
    pub fn new(actor: impl Into<Actor>, counter: u64) -> Dot {
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
/// so distinct dots never hash the same input. Legacy (epoch 0) dots hash exactly as before
/// epochs existed, so their tags survive the upgrade.
pub fn etag(dot: &Dot) -> String {
    let node = dot.actor.node.0.as_bytes();
    let mut buf = Vec::with_capacity(node.len() + 18);
    buf.extend_from_slice(node);
    buf.push(0xFF);
    if dot.actor.epoch != 0 {
        buf.extend_from_slice(&dot.actor.epoch.to_be_bytes());
        buf.push(0xFF);
    }
    buf.extend_from_slice(&dot.counter.to_be_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buf))
}

/// A version vector: for each actor, how many of its writes have been seen (all of `1..=n`).
///
/// This is the causal context handed to clients. Zero counters are never stored, so two
/// vectors that mean the same thing compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<Actor, u64>", into = "BTreeMap<Actor, u64>")]
pub struct VersionVector(BTreeMap<Actor, u64>);

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector(BTreeMap::new())
    }

    /// How many of `actor`'s writes this vector has seen (0 when absent).
    pub fn get(&self, actor: &Actor) -> u64 {
        self.0.get(actor).copied().unwrap_or(0)
    }

    /// Raise `actor`'s counter to at least `counter`; counters never go down.
    pub fn observe(&mut self, actor: &Actor, counter: u64) {
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
    pub fn iter(&self) -> impl Iterator<Item = (&Actor, u64)> {
        self.0.iter().map(|(a, n)| (a, *n))
    }
}

impl FromIterator<(Actor, u64)> for VersionVector {
    fn from_iter<T: IntoIterator<Item = (Actor, u64)>>(iter: T) -> Self {
        let mut vv = VersionVector::new();
        for (a, n) in iter {
            vv.observe(&a, n);
        }
        vv
    }
}

/// Vectors of legacy (epoch 0) actors, for tests and format-1 data.
impl FromIterator<(NodeId, u64)> for VersionVector {
    fn from_iter<T: IntoIterator<Item = (NodeId, u64)>>(iter: T) -> Self {
        iter.into_iter().map(|(a, n)| (Actor::from(a), n)).collect()
    }
}

impl TryFrom<BTreeMap<Actor, u64>> for VersionVector {
    type Error = String;
    fn try_from(map: BTreeMap<Actor, u64>) -> Result<Self, Self::Error> {
        if let Some((a, _)) = map.iter().find(|(_, n)| **n == 0) {
            return Err(format!("zero counter for actor {a}"));
        }
        Ok(VersionVector(map))
    }
}

impl From<VersionVector> for BTreeMap<Actor, u64> {
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
        assert_eq!(a.get(&Actor::from("z")), 0);
        assert!(a.covers(&Dot::new("y", 5)));
        assert!(!a.covers(&Dot::new("y", 6)));
        assert!(!a.covers(&Dot::new("z", 1)));
    }

    #[test]
    fn zero_counters_are_rejected_on_deserialize() {
        let mut map = BTreeMap::new();
        map.insert(Actor::from("x"), 0u64);
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
        let e1 = etag(&Dot::new(Actor::new("node-a", 7), 1));
        assert_ne!(a, e1);
        assert_ne!(e1, etag(&Dot::new(Actor::new("node-a", 8), 1)));
    }

    #[test]
    fn legacy_etags_hash_as_before_epochs() {
        // The pre-epoch layout: node bytes, 0xFF, counter (big endian).
        let mut buf = b"node-a".to_vec();
        buf.push(0xFF);
        buf.extend_from_slice(&3u64.to_be_bytes());
        let old = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buf));
        assert_eq!(etag(&Dot::new("node-a", 3)), old);
    }
}
