//! Preference lists as served: which reachable nodes take a key's request, and in which
//! role (a primary, or a fallback standing in for a primary that is down).

use riftkv_core::membership::detector::Liveness;
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

/// The nodes that serve a request (sloppy quorum): every primary not known down, and for each
/// primary known down the next node of the walk beyond the primaries, which holds the write
/// as a hint for that primary. A merely suspected primary keeps its place and is asked with
/// the normal timeout: refusing or rerouting on suspicion alone turns a stall or a burst of
/// load into failed requests. Fallbacks are taken from the up nodes of the walk first, then
/// from the suspected ones.
///
/// `walk` (every node in ring order from the partition) is asked for only when a primary is
/// down: it costs a copy of every member's id, which a request in a healthy cluster of any
/// size should not pay.
pub fn serving_set<W: AsRef<[NodeId]>>(
    primaries: &[NodeId],
    walk: impl FnOnce() -> W,
    liveness: impl Fn(&NodeId) -> Liveness,
) -> Serving {
    let primary_health: Vec<(&NodeId, Liveness)> =
        primaries.iter().map(|p| (p, liveness(p))).collect();
    let mut out: Serving = primary_health
        .iter()
        .filter(|(_, l)| *l != Liveness::Down)
        .map(|(p, _)| ((*p).clone(), Role::Primary))
        .collect();
    if out.len() == primary_health.len() {
        return out;
    }
    let walk = walk();
    let beyond: Vec<(&NodeId, Liveness)> = walk
        .as_ref()
        .iter()
        .filter(|x| !primaries.contains(x))
        .map(|x| (x, liveness(x)))
        .collect();
    let mut fallbacks = [Liveness::Up, Liveness::Suspected]
        .into_iter()
        .flat_map(|want| beyond.iter().filter(move |(_, l)| *l == want))
        .map(|(x, _)| *x);
    for (down, _) in primary_health.iter().filter(|(_, l)| *l == Liveness::Down) {
        match fallbacks.next() {
            Some(f) => out.push((
                f.clone(),
                Role::Fallback {
                    for_node: (*down).clone(),
                },
            )),
            None => break,
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<NodeId> {
        v.iter().map(|s| NodeId::from(*s)).collect()
    }

    #[test]
    fn all_primaries_up() {
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            || ids(&["a", "b", "c", "d", "e"]),
            |_| Liveness::Up,
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
            || ids(&["a", "b", "c", "d", "e", "f"]),
            |x| {
                if down.contains(x) {
                    Liveness::Down
                } else {
                    Liveness::Up
                }
            },
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
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            || ids(&["a", "b", "c"]),
            |x| {
                if x.as_str() == "b" {
                    Liveness::Down
                } else {
                    Liveness::Up
                }
            },
        );
        assert_eq!(s.len(), 2);
    }

    /// The detector's view for a test: the named nodes suspected or down, every other up.
    pub(crate) fn health<'a>(
        suspected: &'a [&str],
        down: &'a [&str],
    ) -> impl Fn(&NodeId) -> Liveness + 'a {
        move |x| {
            if down.contains(&x.as_str()) {
                Liveness::Down
            } else if suspected.contains(&x.as_str()) {
                Liveness::Suspected
            } else {
                Liveness::Up
            }
        }
    }

    #[test]
    fn suspected_primaries_still_serve_as_primaries() {
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            || ids(&["a", "b", "c", "d", "e"]),
            health(&["b", "c"], &[]),
        );
        assert_eq!(
            s,
            vec![
                ("a".into(), Role::Primary),
                ("b".into(), Role::Primary),
                ("c".into(), Role::Primary)
            ]
        );
        // A whole cluster merely suspected (e.g. right after a stall of the machine) is
        // still asked: nothing is refused before it is tried.
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            || ids(&["a", "b", "c"]),
            health(&["a", "b", "c"], &[]),
        );
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn only_known_down_primaries_get_fallbacks_up_ones_first() {
        // b is down: its stand-in is the first *up* node beyond the primaries (e is up, d
        // only suspected); c is suspected and keeps its place.
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            || ids(&["a", "b", "c", "d", "e", "f"]),
            health(&["c", "d"], &["b"]),
        );
        assert_eq!(
            s,
            vec![
                ("a".into(), Role::Primary),
                ("c".into(), Role::Primary),
                (
                    "e".into(),
                    Role::Fallback {
                        for_node: "b".into()
                    }
                ),
            ]
        );
        // With no up node left beyond the primaries, a suspected one is better than none.
        let s = serving_set(
            &ids(&["a", "b", "c"]),
            || ids(&["a", "b", "c", "d", "e"]),
            health(&["d"], &["b", "c", "e"]),
        );
        assert_eq!(
            s,
            vec![
                ("a".into(), Role::Primary),
                (
                    "d".into(),
                    Role::Fallback {
                        for_node: "b".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_walk_is_read_only_when_a_primary_is_down() {
        let asked = std::cell::Cell::new(0);
        let walk = || {
            asked.set(asked.get() + 1);
            ids(&["a", "b", "c", "d"])
        };
        let s = serving_set(&ids(&["a", "b", "c"]), walk, health(&["c"], &[]));
        assert_eq!(s.len(), 3);
        assert_eq!(
            asked.get(),
            0,
            "a healthy (or merely suspected) set needs no walk"
        );
        let s = serving_set(&ids(&["a", "b", "c"]), walk, health(&[], &["c"]));
        assert_eq!(
            s.last(),
            Some(&(
                "d".into(),
                Role::Fallback {
                    for_node: "c".into()
                }
            ))
        );
        assert_eq!(asked.get(), 1);
    }
}
