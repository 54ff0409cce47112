//! The read quorum as plain data: add a replica's reply, ask whether the read is decided, take
//! the merged answer, and list the replicas read repair must bring up to date.
//!
//! A "not found" reply is an answer like any other (it counts toward `r`); errors do not count.

use super::quorum::{QuorumError, ReadQuorum};
use super::tracker::{Decision, QuorumTracker};
use crate::preflist::{Role, Serving};
use riftkv_core::types::NodeId;
use riftkv_core::version::{ConflictMode, Object};

/// One node's answer to a replica read: its copy (None = not found) or why it failed.
pub type ReadReply = Result<Option<Object>, String>;

/// Where a read stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetStatus {
    /// Not enough answers yet, and success is still possible.
    Pending,
    /// `r` answers, `pr` of them from primaries: the merge of every answer so far.
    Done(Option<Object>),
    /// The read can no longer succeed.
    Failed(QuorumError),
}

/// A replica read repair must update, in the role it holds the key in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairTarget {
    pub node: NodeId,
    pub role: Role,
}

#[derive(Clone, Debug)]
pub struct GetCore {
    tracker: QuorumTracker<Option<Object>>,
    mode: ConflictMode,
}

impl GetCore {
    /// A read over `serving` needing `r` answers, `pr` of them from primaries serving as
    /// themselves. Merges in `Siblings` mode unless [`Self::mode`].
    pub fn new(serving: Serving, r: u32, pr: u32) -> GetCore {
        let q = ReadQuorum { n: 0, r, pr };
        GetCore {
            tracker: QuorumTracker::new(serving, q.needs(), |_| false),
            mode: ConflictMode::Siblings,
        }
    }

    /// Sets the bucket's conflict mode used to merge answers.
    pub fn mode(mut self, mode: ConflictMode) -> GetCore {
        self.mode = mode;
        self
    }

    /// Records one node's reply. Replies from nodes outside the serving set, and second
    /// replies from a node, are ignored (returns false).
    pub fn add_reply(&mut self, node: NodeId, reply: ReadReply) -> bool {
        self.tracker.add(node, reply)
    }

    /// True once every serving node has replied.
    pub fn all_replied(&self) -> bool {
        self.tracker.all_replied()
    }

    /// Nodes that have not replied yet.
    pub fn waiting_for(&self) -> Vec<NodeId> {
        self.tracker.waiting_for()
    }

    /// Decided or not; once `Done` or `Failed` it stays so (a later reply only refines the
    /// merged object of `Done`).
    pub fn status(&self) -> GetStatus {
        match self.tracker.decision() {
            Decision::Met => GetStatus::Done(self.merged()),
            Decision::Unmet(q) => GetStatus::Failed(q),
            Decision::Pending => GetStatus::Pending,
        }
    }

    /// The merge of every copy received so far (None when every answer was "not found").
    pub fn merged(&self) -> Option<Object> {
        let mut out: Option<Object> = None;
        for obj in self.tracker.answers().flatten() {
            out = Some(match out {
                None => obj.resolve(self.mode),
                Some(acc) => acc.sync_mode(obj, self.mode),
            });
        }
        out
    }

    /// Replicas that answered with a copy lacking something of the merged object (or with
    /// "not found" while a copy exists). Failed replicas are not repaired: their state is
    /// unknown, and anti-entropy covers them.
    pub fn repairs(&self) -> Vec<RepairTarget> {
        let Some(merged) = self.merged() else {
            return Vec::new();
        };
        self.tracker
            .serving()
            .iter()
            .filter(|(node, _)| match self.tracker.reply(node) {
                Some(Ok(None)) => true,
                Some(Ok(Some(copy))) => copy != &merged,
                _ => false,
            })
            .map(|(node, role)| RepairTarget {
                node: node.clone(),
                role: role.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::version::{Limits, Sibling};

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn write(stored: Option<&Object>, actor: &str, v: &str) -> Object {
        Object::update(
            stored,
            &stored.map(|o| o.context()).unwrap_or_default(),
            id(actor),
            Sibling::new(v.as_bytes().to_vec(), "text/plain", 1),
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap()
    }

    fn three_primaries() -> GetCore {
        GetCore::new(
            vec![
                (id("a"), Role::Primary),
                (id("b"), Role::Primary),
                (id("c"), Role::Primary),
            ],
            2,
            0,
        )
    }

    #[test]
    fn r_answers_decide_and_not_found_counts() {
        let mut g = three_primaries();
        assert_eq!(g.status(), GetStatus::Pending);
        g.add_reply(id("a"), Ok(None));
        assert_eq!(g.status(), GetStatus::Pending);
        g.add_reply(id("b"), Ok(None));
        assert_eq!(g.status(), GetStatus::Done(None));
        assert!(g.repairs().is_empty());
    }

    #[test]
    fn merge_of_answers_and_repair_targets() {
        let v1 = write(None, "a", "one");
        let v2 = write(Some(&v1), "a", "two");
        let mut g = three_primaries();
        g.add_reply(id("a"), Ok(Some(v2.clone())));
        g.add_reply(id("b"), Ok(Some(v1.clone())));
        assert_eq!(g.status(), GetStatus::Done(Some(v2.clone())));
        g.add_reply(id("c"), Ok(None));
        assert!(g.all_replied());
        let targets: Vec<NodeId> = g.repairs().into_iter().map(|t| t.node).collect();
        assert_eq!(targets, vec![id("b"), id("c")]);
    }

    #[test]
    fn concurrent_copies_merge_into_siblings_and_both_get_repaired() {
        let x = write(None, "a", "x");
        let y = write(None, "b", "y");
        let mut g = three_primaries();
        g.add_reply(id("a"), Ok(Some(x.clone())));
        g.add_reply(id("b"), Ok(Some(y.clone())));
        let GetStatus::Done(Some(m)) = g.status() else {
            panic!("expected a merged object")
        };
        assert_eq!(m.sibling_count(), 2);
        assert_eq!(g.repairs().len(), 2);
    }

    #[test]
    fn errors_do_not_count_and_fail_once_r_is_out_of_reach() {
        let mut g = three_primaries();
        g.add_reply(id("a"), Err("disk".into()));
        assert_eq!(g.status(), GetStatus::Pending);
        g.add_reply(id("b"), Err("timeout".into()));
        match g.status() {
            GetStatus::Failed(q) => {
                assert_eq!((q.which, q.needed, q.got), ("r", 2, 1));
                assert_eq!(q.errors.len(), 2);
            }
            other => panic!("expected failure, got {other:?}"),
        }
        // A late success does not undo the failure's accounting of what was reachable.
        g.add_reply(id("c"), Ok(None));
        assert!(matches!(g.status(), GetStatus::Failed(_)));
    }

    #[test]
    fn pr_counts_only_primaries_serving_as_themselves() {
        let mut g = GetCore::new(
            vec![
                (id("a"), Role::Primary),
                (id("d"), Role::from_hinted_for(Some(id("b")))),
                (id("e"), Role::from_hinted_for(Some(id("c")))),
            ],
            2,
            1,
        );
        g.add_reply(id("d"), Ok(None));
        g.add_reply(id("e"), Ok(None));
        assert_eq!(g.status(), GetStatus::Pending, "r met, pr not yet");
        g.add_reply(id("a"), Ok(None));
        assert_eq!(g.status(), GetStatus::Done(None));

        let mut g = GetCore::new(
            vec![
                (id("a"), Role::Primary),
                (id("d"), Role::from_hinted_for(Some(id("b")))),
            ],
            1,
            1,
        );
        g.add_reply(id("d"), Ok(None));
        g.add_reply(id("a"), Err("down".into()));
        match g.status() {
            GetStatus::Failed(q) => assert_eq!((q.which, q.needed, q.got), ("pr", 1, 0)),
            other => panic!("expected pr failure, got {other:?}"),
        }
    }

    #[test]
    fn stray_and_duplicate_replies_are_ignored() {
        let mut g = three_primaries();
        assert!(!g.add_reply(id("z"), Ok(None)));
        assert!(g.add_reply(id("a"), Ok(None)));
        assert!(!g.add_reply(id("a"), Ok(None)));
        assert_eq!(g.status(), GetStatus::Pending);
        assert_eq!(g.waiting_for(), vec![id("b"), id("c")]);
    }

    #[test]
    fn fallback_repairs_carry_the_primary() {
        let v = write(None, "a", "v");
        let mut g = GetCore::new(
            vec![
                (id("a"), Role::Primary),
                (id("d"), Role::from_hinted_for(Some(id("b")))),
            ],
            1,
            0,
        );
        g.add_reply(id("a"), Ok(Some(v)));
        g.add_reply(id("d"), Ok(None));
        assert_eq!(
            g.repairs(),
            vec![RepairTarget {
                node: id("d"),
                role: Role::from_hinted_for(Some(id("b")))
            }]
        );
    }

    #[test]
    fn lww_mode_keeps_one_version() {
        let x = write(None, "a", "x");
        let y = write(None, "b", "y");
        let mut g = three_primaries().mode(ConflictMode::Lww);
        g.add_reply(id("a"), Ok(Some(x)));
        g.add_reply(id("b"), Ok(Some(y)));
        let GetStatus::Done(Some(m)) = g.status() else {
            panic!("expected an object")
        };
        assert_eq!(m.sibling_count(), 1);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;
        use riftkv_core::version::{Limits, Sibling};

        proptest! {
            /// The decision never flips; with every answer in it matches the counts; repairs
            /// name exactly the answering replicas whose copy differs from the merge.
            #[test]
            fn decision_is_stable_and_repairs_target_stale_copies(
                nodes in proptest::collection::vec((any::<bool>(), 0u8..4), 1..6),
                r_seed in 0u32..6, pr_seed in 0u32..6,
            ) {
                let k = nodes.len() as u32;
                let (r, pr) = (1 + r_seed % k, pr_seed % (k + 1));
                let serving: Serving = nodes
                    .iter()
                    .enumerate()
                    .map(|(i, (primary, _))| {
                        let id = NodeId::new(format!("n{i}"));
                        (id, Role::from_hinted_for(if *primary { None } else { Some(NodeId::from("p")) }))
                    })
                    .collect();
                let v1 = Object::update(
                    None, &Default::default(), NodeId::from("a"),
                    Sibling::new(b"1".to_vec(), "t", 1), ConflictMode::Siblings, &Limits::default(),
                ).unwrap();
                let v2 = Object::update(
                    Some(&v1), &v1.context(), NodeId::from("a"),
                    Sibling::new(b"2".to_vec(), "t", 2), ConflictMode::Siblings, &Limits::default(),
                ).unwrap();
                let mut core = GetCore::new(serving.clone(), r, pr);
                let mut decided: Option<GetStatus> = None;
                let (mut ok, mut prim) = (0u32, 0u32);
                let mut stale = Vec::new();
                let mut newest_seen = false;
                for ((id, h), (_, outcome)) in serving.iter().zip(&nodes) {
                    let reply = match outcome {
                        0 => Err("down".to_string()),
                        1 => Ok(None),
                        2 => Ok(Some(v1.clone())),
                        _ => Ok(Some(v2.clone())),
                    };
                    match &reply {
                        Ok(Some(o)) if o == &v2 => newest_seen = true,
                        Ok(_) => stale.push(id.clone()),
                        Err(_) => {}
                    }
                    if reply.is_ok() {
                        ok += 1;
                        prim += u32::from(h.is_primary());
                    }
                    core.add_reply(id.clone(), reply);
                    let st = core.status();
                    if let Some(prev) = &decided {
                        prop_assert_eq!(
                            std::mem::discriminant(prev),
                            std::mem::discriminant(&st)
                        );
                    } else if st != GetStatus::Pending {
                        decided = Some(st.clone());
                    }
                }
                prop_assert_eq!(
                    matches!(decided, Some(GetStatus::Done(_))),
                    ok >= r && prim >= pr
                );
                let merged = core.merged();
                let repaired: Vec<NodeId> = core.repairs().into_iter().map(|t| t.node).collect();
                if merged.is_none() {
                    prop_assert!(repaired.is_empty());
                } else {
                    // With v2 anywhere, v1 copies and not-founds are stale; with only v1,
                    // just the not-founds are.
                    let expect: Vec<NodeId> = if newest_seen {
                        stale
                    } else {
                        serving
                            .iter()
                            .zip(&nodes)
                            .filter(|(_, (_, o))| *o == 1)
                            .map(|((n, _), _)| n.clone())
                            .collect()
                    };
                    prop_assert_eq!(repaired, expect);
                }
            }
        }
    }
}
