//! Dot stores: the join rule shared by every type that tracks causality.
//!
//! A state is a store of dots plus the clock of everything its replica has seen. A dot in one
//! store but not the other survives a join only if the other replica never saw it; if the other
//! saw it and no longer holds it, it was removed there. So a removal is just "drop the dots",
//! with no tombstone, and the clock (one entry per writer) is the only memory of it.

use crate::Actor;
use crate::clock::{Dot, VClock};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) type DotSet<A> = BTreeSet<Dot<A>>;

/// Join of two dot sets held under clocks `ac` and `bc`.
pub(crate) fn dotset_join<A: Actor>(
    a: &DotSet<A>,
    ac: &VClock<A>,
    b: &DotSet<A>,
    bc: &VClock<A>,
) -> DotSet<A> {
    let mut out: DotSet<A> = a.intersection(b).cloned().collect();
    out.extend(a.iter().filter(|d| !bc.contains(d)).cloned());
    out.extend(b.iter().filter(|d| !ac.contains(d)).cloned());
    out
}

/// Members of a set, each with the dots of the adds that keep it.
pub(crate) type Members<A> = BTreeMap<String, DotSet<A>>;

pub(crate) fn members_join<A: Actor>(
    a: &Members<A>,
    ac: &VClock<A>,
    b: &Members<A>,
    bc: &VClock<A>,
) -> Members<A> {
    let empty = DotSet::new();
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Members::new();
    for name in names {
        let da = a.get(name).unwrap_or(&empty);
        let db = b.get(name).unwrap_or(&empty);
        let d = dotset_join(da, ac, db, bc);
        if !d.is_empty() {
            out.insert(name.clone(), d);
        }
    }
    out
}

/// Drop every dot `ctx` covers, and members left with none.
pub(crate) fn members_forget<A: Actor>(m: &mut Members<A>, ctx: &VClock<A>) {
    m.retain(|_, dots| {
        dots.retain(|d| !ctx.contains(d));
        !dots.is_empty()
    });
}

/// Remove one member as far as `ctx` saw it: adds it did not see keep it.
pub(crate) fn member_remove<A: Actor>(m: &mut Members<A>, member: &str, ctx: &VClock<A>) {
    if let Some(dots) = m.get_mut(member) {
        dots.retain(|d| !ctx.contains(d));
        if dots.is_empty() {
            m.remove(member);
        }
    }
}

/// Add a member as the write `dot`: it supersedes every add of it this replica holds.
pub(crate) fn member_add<A: Actor>(m: &mut Members<A>, member: &str, dot: &Dot<A>) {
    m.insert(member.to_owned(), BTreeSet::from([dot.clone()]));
}
