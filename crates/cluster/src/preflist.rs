//! Preference lists as served: which reachable nodes take a key's request, and in which
//! role (a primary, or a fallback standing in for a primary that is down).

use riftkv_core::types::NodeId;

/// The part a serving node plays for one key (riak_core tags its preference lists the same
/// way). A fallback keeps what it receives as a hint for `for_node`, never as its own copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Fallback { for_node: NodeId },
}

impl Role {
    /// The wire and storage form: the primary a fallback holds data for (None = primary).
    pub fn from_hinted_for(hinted_for: Option<NodeId>) -> Role {
        match hinted_for {
            None => Role::Primary,
            Some(for_node) => Role::Fallback { for_node },
        }
    }

    /// The primary this node stands in for, or None when it is one.
    pub fn hinted_for(&self) -> Option<&NodeId> {
        match self {
            Role::Primary => None,
            Role::Fallback { for_node } => Some(for_node),
        }
    }

    pub fn is_primary(&self) -> bool {
        matches!(self, Role::Primary)
    }
}

/// The nodes serving one key, primaries first, each with its role.
pub type Serving = Vec<(NodeId, Role)>;

/// The nodes that serve a request (sloppy quorum): the reachable primaries, and for each
/// unreachable primary the next reachable node of the walk beyond the primaries, which holds
/// the write as a hint for that primary.
pub fn serving_set(
    primaries: &[NodeId],
    walk: &[NodeId],
    reachable: impl Fn(&NodeId) -> bool,
) -> Serving {
    let mut out: Serving = primaries
        .iter()
        .filter(|p| reachable(p))
        .map(|p| (p.clone(), Role::Primary))
        .collect();
    let mut fallbacks = walk
        .iter()
        .filter(|x| !primaries.contains(x) && reachable(x));
    for down in primaries.iter().filter(|p| !reachable(p)) {
        match fallbacks.next() {
            Some(f) => out.push((
                f.clone(),
                Role::Fallback {
                    for_node: down.clone(),
                },
            )),
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
            vec![
                ("a".into(), Role::Primary),
                ("b".into(), Role::Primary),
                ("c".into(), Role::Primary)
            ]
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
                ("a".into(), Role::Primary),
                (
                    "e".into(),
                    Role::Fallback {
                        for_node: "b".into()
                    }
                ),
                (
                    "f".into(),
                    Role::Fallback {
                        for_node: "c".into()
                    }
                )
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
