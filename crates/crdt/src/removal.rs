//! What removes leave behind: the path a remove targets, removes kept until this replica
//! has seen everything their context names, and the rule that limits refuse growth only.
//! Shared by sets and maps, so neither has to name the other.

use crate::Actor;
use crate::clock::VClock;
use crate::error::CrdtError;
use crate::op::FieldType;
use std::collections::{BTreeMap, BTreeSet};

/// A field's identity: its name and its type.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FieldKey {
    pub name: String,
    pub kind: FieldType,
}

/// What a deferred remove targets: a member of the set field at `fields`, or every field
/// named `name` in the map at `fields` (empty `fields` = the top level).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) struct RemovePath {
    pub(crate) fields: Vec<FieldKey>,
    pub(crate) target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) enum Target {
    Member(String),
    Field(String),
}

/// Removes whose context names events this replica has not seen yet, by context.
pub(crate) type Deferred<A> = BTreeMap<VClock<A>, BTreeSet<RemovePath>>;

/// Refuse growth past a limit; a measure already over it (after a merge) may still shrink.
pub(crate) fn check_grow(
    what: &'static str,
    before: usize,
    after: usize,
    limit: usize,
) -> Result<(), CrdtError> {
    if after > limit && after > before {
        Err(CrdtError::TooLarge {
            what,
            size: after,
            limit,
        })
    } else {
        Ok(())
    }
}

/// Keep a remove for later if its context names events this replica has not seen: they may
/// still arrive, and must then be removed too.
pub(crate) fn defer<A: Actor>(
    deferred: &mut Deferred<A>,
    clock: &VClock<A>,
    ctx: &VClock<A>,
    paths: BTreeSet<RemovePath>,
) {
    if !clock.descends(ctx) {
        deferred.entry(ctx.clone()).or_default().extend(paths);
    }
}

pub(crate) fn join_deferred<A: Actor>(into: &mut Deferred<A>, other: &Deferred<A>) {
    for (ctx, paths) in other {
        into.entry(ctx.clone())
            .or_default()
            .extend(paths.iter().cloned());
    }
}

/// Every pending remove (to apply to what a join brought in); those whose context the clock
/// now covers are complete and dropped.
pub(crate) fn pending_after_join<A: Actor>(
    deferred: &mut Deferred<A>,
    clock: &VClock<A>,
) -> Vec<(VClock<A>, BTreeSet<RemovePath>)> {
    let all = deferred
        .iter()
        .map(|(c, p)| (c.clone(), p.clone()))
        .collect();
    deferred.retain(|ctx, _| !clock.descends(ctx));
    all
}
