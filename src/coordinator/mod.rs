//! Key-value request coordination: which nodes serve a key, the quorum cores for get, put
//! and delete (plain data and functions), their async drivers, and read repair.
//!
//! - pure: [`quorum`] (parameters, fail-fast checks), [`get_core`], [`put_core`],
//!   [`list::merge_pages`] / [`list::assign_partitions`], [`serving_set`];
//! - drivers: [`get()`], [`put()`], [`delete()`], [`list_keys`], [`read_repair`];
//! - this node's own copy in either role (primary or fallback): [`replica`], serialised per
//!   key by [`locks`]; the replica side of every message: [`rpc`].

#[cfg(test)]
mod cluster_tests;
pub mod delete;
pub mod error;
pub mod get;
pub mod get_core;
#[cfg(test)]
mod identity_tests;
pub mod list;
pub mod locks;
pub mod placement;
pub mod put;
pub mod put_core;
pub mod quorum;
pub mod read_repair;
pub mod reap;
pub mod replica;
pub mod rpc;

pub use delete::{DeleteRequest, delete};
pub use error::{KvError, WireKvError};
pub use get::{GetOutcome, GetRequest, get};
pub use get_core::{GetCore, GetStatus, RepairTarget};
pub use list::{KeyPage, MAX_LIST_LIMIT, list_keys};
pub use put::{PutOutcome, PutRequest, put};
pub use put_core::{PutCore, PutStatus};
pub use quorum::{ConsistencyParams, QuorumError, ReadQuorum, WriteQuorum};

use crate::types::NodeId;

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
