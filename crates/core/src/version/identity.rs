//! Write identities: which actor a node may issue its next dot under, for one key.
//!
//! A dot `(actor, k)` must name exactly one write. A node issues `(actor, n + 1)` where `n` is
//! the counter its own stored copy holds for `actor`, which is safe only while that copy has
//! seen every write ever issued under `actor`. A node that forgot some of its history (a wiped
//! or replaced data dir, a damaged record, a lost WAL tail after a power cut, a hint delivered
//! and deleted, a tombstone reaped) would otherwise issue a dot that already names another
//! write, and replicas would silently keep one of the two (basho/riak_kv#679).
//!
//! So each stored copy carries, beside the object, this node's *custody*: the epoch of the
//! actor it may extend, and the node *incarnation* in which custody was taken. A node extends
//! an actor only while it holds custody of it in the current incarnation; in every other case
//! it takes a fresh random epoch, a write identity never used before. Custody is lost when:
//! - the copy is missing or damaged (nothing to extend: a fresh epoch);
//! - the incarnation changed (the data dir was empty, or the node restarted after a machine
//!   crash that may have dropped unsynced writes): every older custody is void;
//! - a merged-in copy shows more writes under the custody actor than the local copy holds
//!   (the local copy lost some: riak_kv#1643), or the local record was damaged and replaced.
//!
//! Clocks stay bounded: a node reuses its epoch for a key across any number of clean or
//! crashed restarts on the same boot, and gains one new entry per key only after an event that
//! may really have lost history.

use super::object::{Object, VersionError};
use super::vv::Actor;
use crate::types::NodeId;

pub use super::custody::{Custody, STORED_COPY_TAG};

/// One node's stored copy of a key: the object, and the custody this node holds of it.
/// Custody is local: it is never sent to another node or hashed by anti-entropy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredCopy {
    pub object: Object,
    pub custody: Option<Custody>,
}

impl StoredCopy {
    pub fn new(object: Object, custody: Option<Custody>) -> StoredCopy {
        StoredCopy { object, custody }
    }

    /// `[STORED_COPY_TAG][postcard custody][object encoding]`, or the bare object encoding when
    /// there is no custody.
    pub fn encode(&self) -> Vec<u8> {
        let Some(c) = self.custody else {
            return self.object.encode();
        };
        let mut out = vec![STORED_COPY_TAG];
        // Two integers into a Vec: cannot fail.
        out = postcard::to_extend(&c, out).unwrap_or_else(|_| vec![STORED_COPY_TAG]);
        out.extend_from_slice(&self.object.encode());
        out
    }

    /// Inverse of [`StoredCopy::encode`]; a bare object encoding decodes with no custody.
    pub fn decode(bytes: &[u8]) -> Result<StoredCopy, VersionError> {
        match bytes.split_first() {
            Some((&STORED_COPY_TAG, rest)) => {
                let (custody, obj) = postcard::take_from_bytes::<Custody>(rest)
                    .map_err(|e| VersionError::Decode(format!("custody: {e}")))?;
                if obj.first() == Some(&STORED_COPY_TAG) {
                    return Err(VersionError::Decode("nested stored copy".into()));
                }
                Ok(StoredCopy {
                    object: Object::decode(obj)?,
                    custody: Some(custody),
                })
            }
            _ => Ok(StoredCopy {
                object: Object::decode(bytes)?,
                custody: None,
            }),
        }
    }
}

/// The identity a coordinating node writes under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    pub actor: Actor,
    /// The custody to store with the written copy.
    pub custody: Custody,
    /// True when a fresh epoch was taken (the node could not vouch for any older one).
    pub fresh: bool,
}

/// Chooses the write identity for a coordinated write: extend the actor this node holds
/// custody of when that custody was taken in the current `incarnation`, else take
/// `fresh_epoch` (a random, never-used epoch; the caller draws it, so this stays pure).
pub fn writer(
    node: &NodeId,
    custody: Option<Custody>,
    incarnation: u64,
    fresh_epoch: u64,
) -> Writer {
    match custody {
        Some(c) if c.incarnation == incarnation && c.epoch != 0 => Writer {
            actor: Actor::new(node.clone(), c.epoch),
            custody: c,
            fresh: false,
        },
        _ => Writer {
            actor: Actor::new(node.clone(), fresh_epoch),
            custody: Custody {
                epoch: fresh_epoch,
                incarnation,
            },
            fresh: true,
        },
    }
}

/// What merging a copy received from elsewhere (replica write, read repair, anti-entropy,
/// handoff) does to this node's custody of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustodyAfterMerge {
    /// The local copy still holds every write of the custody actor.
    Kept(Custody),
    /// No custody before, none after.
    None,
    /// The incoming copy holds writes of the custody actor that the local copy lost: custody
    /// is void, and the next write of this key takes a fresh epoch (riak_kv#1643).
    Lost,
}

impl CustodyAfterMerge {
    pub fn custody(self) -> Option<Custody> {
        match self {
            CustodyAfterMerge::Kept(c) => Some(c),
            _ => None,
        }
    }
}

/// Custody after merging `incoming` into `local` (`None` = missing or damaged local copy).
pub fn custody_after_merge(
    node: &NodeId,
    local: Option<&StoredCopy>,
    incoming: &Object,
) -> CustodyAfterMerge {
    let Some(local) = local else {
        return CustodyAfterMerge::None;
    };
    let Some(c) = local.custody else {
        return CustodyAfterMerge::None;
    };
    let actor = Actor::new(node.clone(), c.epoch);
    if incoming.counter_of(&actor) > local.object.counter_of(&actor) {
        CustodyAfterMerge::Lost
    } else {
        CustodyAfterMerge::Kept(c)
    }
}

/// A random epoch, never 0 (0 is the legacy identity). Two draws collide with probability
/// 2^-64, and a collision matters only for one node writing one key under both.
pub fn fresh_epoch() -> u64 {
    loop {
        let e = rand::random::<u64>();
        if e != 0 {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{ConflictMode, Limits, Sibling, VersionVector};

    fn n(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn write(stored: Option<&Object>, actor: &Actor, v: &str) -> Object {
        Object::update(
            stored,
            &VersionVector::new(),
            actor,
            Sibling::new(v.as_bytes().to_vec(), "text/plain", 1),
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn custody_of_this_incarnation_is_extended() {
        let c = Custody {
            epoch: 5,
            incarnation: 9,
        };
        let w = writer(&n("a"), Some(c), 9, 77);
        assert_eq!(w.actor, Actor::new("a", 5));
        assert!(!w.fresh);
        assert_eq!(w.custody, c);
    }

    #[test]
    fn missing_or_old_custody_takes_a_fresh_epoch() {
        for custody in [
            None,
            Some(Custody {
                epoch: 5,
                incarnation: 8,
            }),
            Some(Custody {
                epoch: 0,
                incarnation: 9,
            }),
        ] {
            let w = writer(&n("a"), custody, 9, 77);
            assert_eq!(w.actor, Actor::new("a", 77));
            assert!(w.fresh);
            assert_eq!(
                w.custody,
                Custody {
                    epoch: 77,
                    incarnation: 9
                }
            );
        }
    }

    #[test]
    fn merge_keeps_custody_unless_the_incoming_copy_knows_more_of_our_writes() {
        let me = n("a");
        let mine = Actor::new("a", 5);
        let c = Custody {
            epoch: 5,
            incarnation: 1,
        };
        let v1 = write(None, &mine, "v1");
        let v2 = write(Some(&v1), &mine, "v2");
        let local = StoredCopy::new(v1.clone(), Some(c));
        // An older or equal copy keeps custody.
        assert_eq!(
            custody_after_merge(&me, Some(&local), &v1),
            CustodyAfterMerge::Kept(c)
        );
        // Another node's write does not touch it.
        let other = write(Some(&v1), &Actor::new("b", 3), "b");
        assert_eq!(
            custody_after_merge(&me, Some(&local), &other),
            CustodyAfterMerge::Kept(c)
        );
        // A copy holding our write that we lost voids it.
        assert_eq!(
            custody_after_merge(&me, Some(&local), &v2),
            CustodyAfterMerge::Lost
        );
        // No local copy, or a copy without custody: none.
        assert_eq!(custody_after_merge(&me, None, &v2), CustodyAfterMerge::None);
        let bare = StoredCopy::new(v1, None);
        assert_eq!(
            custody_after_merge(&me, Some(&bare), &v2),
            CustodyAfterMerge::None
        );
    }

    #[test]
    fn stored_copy_round_trips_and_hides_custody_from_object_decode() {
        let o = write(None, &Actor::new("a", 3), "x");
        let with = StoredCopy::new(
            o.clone(),
            Some(Custody {
                epoch: 3,
                incarnation: 42,
            }),
        );
        let bytes = with.encode();
        assert_eq!(bytes[0], STORED_COPY_TAG);
        assert_eq!(StoredCopy::decode(&bytes).unwrap(), with);
        assert_eq!(Object::decode(&bytes).unwrap(), o);
        let without = StoredCopy::new(o.clone(), None);
        assert_eq!(without.encode(), o.encode());
        assert_eq!(StoredCopy::decode(&o.encode()).unwrap(), without);
    }

    #[test]
    fn damaged_stored_copies_are_errors_not_panics() {
        let o = write(None, &Actor::new("a", 3), "x");
        let bytes = StoredCopy::new(
            o,
            Some(Custody {
                epoch: 3,
                incarnation: 42,
            }),
        )
        .encode();
        for cut in 0..bytes.len() {
            let _ = StoredCopy::decode(&bytes[..cut]);
        }
        assert!(StoredCopy::decode(&[STORED_COPY_TAG]).is_err());
        assert!(StoredCopy::decode(&[STORED_COPY_TAG, 1, 1, STORED_COPY_TAG, 1, 1]).is_err());
    }

    #[test]
    fn fresh_epochs_are_never_zero_or_repeated_in_practice() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let e = fresh_epoch();
            assert_ne!(e, 0);
            assert!(seen.insert(e));
        }
    }
}
