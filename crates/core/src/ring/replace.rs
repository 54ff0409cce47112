//! Replacing a member: a new node takes over exactly the partitions of an old one.
//!
//! A replace is a claim that moves nothing but the old node's partitions, each to the same
//! place under the new owner, so no other replica changes and only the data the old node held
//! has to travel. It keeps every claim rule the old ring met (balance, distinct replicas in a
//! window) exactly when the new node owned nothing before; the claimant keeps such a ring as
//! long as [`as_good_as`] holds, instead of reshuffling it into its own choice.

use super::claim::{Member, assess};
use super::{Ring, RingError};
use crate::types::NodeId;

/// The ring in which `new` owns every partition `old` owned and everything else is unchanged.
pub fn replace_owner(ring: &Ring, old: &NodeId, new: &NodeId) -> Result<Ring, RingError> {
    let owners = ring
        .owners()
        .iter()
        .map(|o| if o == old { new.clone() } else { o.clone() })
        .collect();
    Ring::from_owners(owners)
}

/// `Some((old, new))` when `to` is `from` with exactly one owner renamed to a node that owned
/// nothing in `from` (a replace), so a pending replace can be told from other ring changes.
pub fn substitution(from: &Ring, to: &Ring) -> Option<(NodeId, NodeId)> {
    if from.ring_size() != to.ring_size() {
        return None;
    }
    let mut pair: Option<(&NodeId, &NodeId)> = None;
    for (a, b) in from.owners().iter().zip(to.owners()) {
        if a == b {
            continue;
        }
        match pair {
            None => pair = Some((a, b)),
            Some((old, new)) if old == a && new == b => {}
            Some(_) => return None,
        }
    }
    let (old, new) = pair?;
    let old_gone = !to.owners().contains(old);
    let new_fresh = !from.owners().contains(new);
    (old_gone && new_fresh).then(|| (old.clone(), new.clone()))
}

/// Whether `ring` meets the claim rules for `members` as well as `desired` (the claim's own
/// choice) does: owned only by members, balanced, and no more windows with a repeated owner
/// or zone. Such a ring is kept, so a replace is not undone by the next claim.
pub fn as_good_as(ring: &Ring, desired: &Ring, members: &[Member], n: usize) -> bool {
    if ring.ring_size() != desired.ring_size() {
        return false;
    }
    if !ring
        .node_set()
        .iter()
        .all(|o| members.iter().any(|m| &m.id == o))
    {
        return false;
    }
    let mine = assess(ring, members, n);
    let theirs = assess(desired, members, n);
    mine.max_owned - mine.min_owned <= 1
        && mine.node_violations <= theirs.node_violations
        && mine.zone_violations <= theirs.zone_violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::claim;
    use proptest::prelude::*;

    fn members(ids: &[&str]) -> Vec<Member> {
        ids.iter().map(|i| Member::new(*i, None)).collect()
    }

    fn zoned(ids: &[(&str, &str)]) -> Vec<Member> {
        ids.iter().map(|(i, z)| Member::new(*i, Some(z))).collect()
    }

    #[test]
    fn replace_moves_only_the_old_nodes_partitions() {
        let before = claim(64, &members(&["a", "b", "c"]), 3, None);
        let old = NodeId::from("b");
        let new = NodeId::from("d");
        let after = replace_owner(&before, &old, &new).unwrap();
        for p in 0..64 {
            if before.owner(p) == &old {
                assert_eq!(after.owner(p), &new, "partition {p}");
            } else {
                assert_eq!(after.owner(p), before.owner(p), "partition {p}");
            }
        }
        assert!(after.partitions_of(&old).is_empty());
        assert_eq!(
            after.partitions_of(&new),
            before.partitions_of(&old),
            "the new node owns exactly what the old one owned"
        );
        assert_eq!(substitution(&before, &after), Some((old, new)));
    }

    #[test]
    fn the_claim_keeps_a_replaced_ring() {
        let before = claim(64, &members(&["a", "b", "c", "e"]), 3, None);
        let after = replace_owner(&before, &NodeId::from("b"), &NodeId::from("d")).unwrap();
        let now = members(&["a", "c", "d", "e"]);
        let desired = claim(64, &now, 3, Some(&before));
        assert!(as_good_as(&after, &desired, &now, 3));
    }

    #[test]
    fn a_ring_with_a_non_member_or_an_idle_member_is_not_kept() {
        let before = claim(32, &members(&["a", "b", "c"]), 3, None);
        let now = members(&["a", "c", "d"]);
        let desired = claim(32, &now, 3, Some(&before));
        // "b" is gone but still owns partitions.
        assert!(!as_good_as(&before, &desired, &now, 3));
        // Everyone is a member but "x" owns nothing: unbalanced.
        let with_idle = members(&["a", "b", "c", "x"]);
        let desired = claim(32, &with_idle, 3, Some(&before));
        assert!(!as_good_as(&before, &desired, &with_idle, 3));
    }

    #[test]
    fn a_replacement_in_the_old_nodes_zone_keeps_the_spread() {
        let three = zoned(&[("a", "z1"), ("b", "z2"), ("c", "z3")]);
        let before = claim(32, &three, 3, None);
        let after = replace_owner(&before, &NodeId::from("b"), &NodeId::from("d")).unwrap();
        let same_zone = zoned(&[("a", "z1"), ("c", "z3"), ("d", "z2")]);
        let desired = claim(32, &same_zone, 3, Some(&before));
        assert!(as_good_as(&after, &desired, &same_zone, 3));
        // In the zone of "a", every window holding both "a" and "d" repeats a zone.
        let other_zone = zoned(&[("a", "z1"), ("c", "z3"), ("d", "z1")]);
        assert!(assess(&after, &other_zone, 3).zone_violations > 0);
    }

    #[test]
    fn other_ring_changes_are_not_substitutions() {
        let three = claim(32, &members(&["a", "b", "c"]), 3, None);
        let four = claim(32, &members(&["a", "b", "c", "d"]), 3, Some(&three));
        assert_eq!(substitution(&three, &four), None, "a join");
        let two = claim(32, &members(&["a", "c"]), 3, Some(&three));
        assert_eq!(substitution(&three, &two), None, "a removal");
        assert_eq!(substitution(&three, &three), None, "no change");
        // Renaming to a node that already owned partitions is a merge, not a replace.
        let merged = replace_owner(&three, &NodeId::from("b"), &NodeId::from("a")).unwrap();
        assert_eq!(substitution(&three, &merged), None);
    }

    proptest! {
        /// For any cluster size, ring size and old node: only the old node's partitions move,
        /// all to the new node, and the result is balanced and as good as the claim's choice.
        #[test]
        fn replace_keeps_the_claim_rules(k in 2usize..9, qexp in 3u32..8, old in 0usize..8, n in 1usize..4) {
            let q = 1u32 << qexp;
            let ids: Vec<String> = (0..k).map(|i| format!("n{i}")).collect();
            let all: Vec<Member> = ids.iter().map(|i| Member::new(i.as_str(), None)).collect();
            let before = claim(q, &all, n, None);
            let old = NodeId::new(ids[old % k].as_str());
            let new = NodeId::from("fresh");
            let after = replace_owner(&before, &old, &new).unwrap();
            let moved: Vec<u32> = before.moved_partitions(&after);
            prop_assert_eq!(moved, before.partitions_of(&old));
            let now: Vec<Member> = all
                .iter()
                .filter(|m| m.id != old)
                .cloned()
                .chain([Member::new("fresh", None)])
                .collect();
            let desired = claim(q, &now, n, Some(&before));
            let (a, b) = (assess(&before, &all, n), assess(&after, &now, n));
            prop_assert_eq!(a.node_violations, b.node_violations);
            prop_assert_eq!((a.min_owned, a.max_owned), (b.min_owned, b.max_owned));
            // Kept by the claimant whenever the old ring was as good as a fresh claim.
            if as_good_as(&before, &claim(q, &all, n, Some(&before)), &all, n) {
                prop_assert!(as_good_as(&after, &desired, &now, n));
            }
        }
    }
}
