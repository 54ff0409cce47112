//! Preference lists as served: which reachable nodes take a key's request, and in which
//! role (a primary, or a fallback standing in for a primary that is down).

use riftkv_core::types::NodeId;

/// The nodes that serve a request (sloppy quorum): the reachable primaries, and for each
/// unreachable primary the next reachable node of the walk beyond the primaries, which holds
/// the write as a hint for that primary. Returns (node, Some(primary it stands in for)).
pub fn serving_set(
    primaries: &[NodeId],
    walk: &[NodeId],
    reachable: impl Fn(&NodeId) -> bool,
) -> Vec<(NodeId, Option<NodeId>)> {
    let mut out: Vec<(NodeId, Option<NodeId>)> = primaries
        .iter()
        .filter(|p| reachable(p))
        .map(|p| (p.clone(), None))
        .collect();
    let mut fallbacks = walk
        .iter()
        .filter(|x| !primaries.contains(x) && reachable(x));
    for down in primaries.iter().filter(|p| !reachable(p)) {
        match fallbacks.next() {
            Some(f) => out.push((f.clone(), Some(down.clone()))),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<NodeId> {
        v.iter().map(|s| NodeId::from(*s)).collect()
    }

    #[test]
    fn all_primaries_up() {
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            &ids(&["a", "b", "c", "d", "e"]),
            |_| true,
        );
        assert_eq!(
            s,
            vec![("a".into(), None), ("b".into(), None), ("c".into(), None)]
        );
    }

    #[test]
    fn fallbacks_stand_in_for_down_primaries_in_walk_order() {
        let down = ids(&["b", "c", "d"]);
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            &ids(&["a", "b", "c", "d", "e", "f"]),
            |x| !down.contains(x),
        );
        assert_eq!(
            s,
            vec![
                ("a".into(), None),
                ("e".into(), Some("b".into())),
                ("f".into(), Some("c".into()))
            ]
        );
    }

    #[test]
    fn too_few_nodes_gives_a_short_set() {
        let s = serving_set(&ids(&["a", "b", "c"]), &ids(&["a", "b", "c"]), |x| {
            x.as_str() != "b"
        });
        assert_eq!(s.len(), 2);
    }
}
