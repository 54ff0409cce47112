//! Last-write-wins resolution for buckets with `conflict = "lww"`.
//!
//! LWW here is a pure max-register over versions: the winner is the version with the highest
//! `last_modified_ms`; ties go to the higher dot (actor, then counter), then to the larger
//! content. Because the winner of a union is the winner of the winners, resolving before or after
//! any merge gives the same result, so replicas converge whatever the order of syncs.
//! Causality is deliberately not consulted when choosing: a causal rule would make the result
//! depend on which versions a replica happened to drop earlier.

use super::sibling::Sibling;
use super::vv::Actor;
use std::cmp::Ordering;

/// A version seen through its dot, for comparison.
#[derive(Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub actor: &'a Actor,
    pub counter: u64,
    pub sibling: &'a Sibling,
}

/// Total order used to pick the LWW winner (the greatest wins).
pub(crate) fn lww_cmp(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    a.sibling
        .last_modified_ms
        .cmp(&b.sibling.last_modified_ms)
        .then_with(|| a.actor.cmp(b.actor))
        .then_with(|| a.counter.cmp(&b.counter))
        .then_with(|| a.sibling.content_cmp(b.sibling))
}

/// The winner among `candidates`, or `None` when there are none.
pub(crate) fn winner<'a, I>(candidates: I) -> Option<Candidate<'a>>
where
    I: IntoIterator<Item = Candidate<'a>>,
{
    candidates.into_iter().max_by(lww_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(actor: &'a Actor, counter: u64, sibling: &'a Sibling) -> Candidate<'a> {
        Candidate {
            actor,
            counter,
            sibling,
        }
    }

    #[test]
    fn highest_timestamp_wins_then_dot() {
        let (a, b) = (Actor::from("a"), Actor::from("b"));
        let old = Sibling::new(&b"old"[..], "t", 10);
        let new = Sibling::new(&b"new"[..], "t", 20);
        let w = winner([cand(&b, 5, &old), cand(&a, 1, &new)]).unwrap();
        assert_eq!(w.sibling, &new);

        // equal timestamps: the higher actor wins, whatever the input order
        let x = Sibling::new(&b"x"[..], "t", 20);
        let w1 = winner([cand(&a, 1, &new), cand(&b, 1, &x)]).unwrap();
        let w2 = winner([cand(&b, 1, &x), cand(&a, 1, &new)]).unwrap();
        assert_eq!(w1.sibling, &x);
        assert_eq!(w2.sibling, &x);
        assert!(winner(std::iter::empty()).is_none());
    }
}
