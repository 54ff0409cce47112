//! Dots and version vectors: the causal bookkeeping every type shares.

use crate::Actor;
use crate::error::CrdtError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One write event: the `counter`-th operation issued under `actor` on one object.
///
/// Sound only while an actor never issues the same dot twice, which is what RiftKV's write
/// identities `(node id, epoch)` guarantee.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot<A> {
    pub actor: A,
    pub counter: u64,
}

impl<A> Dot<A> {
    pub fn new(actor: A, counter: u64) -> Self {
        Dot { actor, counter }
    }
}

/// A version vector: for each actor, how many of its events have been seen (events `1..=n`).
///
/// It summarises a causal history in one entry per writer, never per member or field, so its
/// size is bounded by the number of actors that ever wrote the object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: Actor"))]
pub struct VClock<A: Ord> {
    entries: BTreeMap<A, u64>,
}

/// What a reader saw: the version vector of the state it read. A remove carries it back so
/// that only the dots it covers are removed.
pub type Context<A> = VClock<A>;

impl<A: Ord> Default for VClock<A> {
    fn default() -> Self {
        VClock {
            entries: BTreeMap::new(),
        }
    }
}

impl<A: Actor> VClock<A> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Events of `actor` seen (0 = none).
    pub fn get(&self, actor: &A) -> u64 {
        self.entries.get(actor).copied().unwrap_or(0)
    }

    /// Whether the event `dot` is part of this history.
    pub fn contains(&self, dot: &Dot<A>) -> bool {
        dot.counter <= self.get(&dot.actor)
    }

    /// Whether this history includes every event of `other`.
    pub fn descends(&self, other: &VClock<A>) -> bool {
        other.entries.iter().all(|(a, n)| self.get(a) >= *n)
    }

    /// Least upper bound, in place.
    pub fn join(&mut self, other: &VClock<A>) {
        for (a, n) in &other.entries {
            let e = self.entries.entry(a.clone()).or_insert(0);
            if *n > *e {
                *e = *n;
            }
        }
    }

    /// Issue the next dot of `actor` and record it as seen.
    pub fn next_dot(&mut self, actor: &A) -> Result<Dot<A>, CrdtError> {
        let n = self
            .get(actor)
            .checked_add(1)
            .ok_or(CrdtError::Overflow("the actor's event counter"))?;
        self.entries.insert(actor.clone(), n);
        Ok(Dot::new(actor.clone(), n))
    }

    /// Record `dot` as seen (used when rebuilding from the wire).
    pub(crate) fn set(&mut self, actor: A, n: u64) {
        self.entries.insert(actor, n);
    }

    /// Number of actors named.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&A, u64)> {
        self.entries.iter().map(|(a, n)| (a, *n))
    }
}

impl<A: Actor> FromIterator<(A, u64)> for VClock<A> {
    /// Builds a clock from `(actor, count)` pairs; zero counts are dropped and repeated actors
    /// keep their largest count, so any input gives a well-formed clock.
    fn from_iter<I: IntoIterator<Item = (A, u64)>>(iter: I) -> Self {
        let mut c = VClock::new();
        for (a, n) in iter {
            if n > c.get(&a) {
                c.entries.insert(a, n);
            }
        }
        c
    }
}
