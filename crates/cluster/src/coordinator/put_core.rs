//! The write quorum as plain data: add a replica's acknowledgement, ask whether the write is
//! decided. `w` counts every ack (fallbacks included: sloppy quorum), `dw` the acks made
//! durable, `pw` the acks of primaries serving as themselves.

use super::quorum::{QuorumError, WriteQuorum};
use super::tracker::{Decision, QuorumTracker};
use crate::preflist::Serving;
use riftkv_core::types::NodeId;

/// One node's answer to a replica write: `Ok(durable)` or why it failed.
pub type WriteReply = Result<bool, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutStatus {
    Pending,
    /// `w` acks, `dw` of them durable, `pw` from primaries.
    Done,
    /// The write can no longer meet its requirements; `got` is the most it could have had.
    Failed(QuorumError),
}

#[derive(Clone, Debug)]
pub struct PutCore {
    tracker: QuorumTracker<bool>,
}

impl PutCore {
    pub fn new(serving: Serving, w: u32, dw: u32, pw: u32) -> PutCore {
        let q = WriteQuorum { n: 0, w, dw, pw };
        PutCore {
            tracker: QuorumTracker::new(serving, q.needs(), |durable| *durable),
        }
    }

    /// Records one node's answer; stray and repeated answers are ignored (returns false).
    pub fn add_ack(&mut self, node: NodeId, reply: WriteReply) -> bool {
        self.tracker.add(node, reply)
    }

    pub fn all_replied(&self) -> bool {
        self.tracker.all_replied()
    }

    pub fn status(&self) -> PutStatus {
        match self.tracker.decision() {
            Decision::Pending => PutStatus::Pending,
            Decision::Met => PutStatus::Done,
            Decision::Unmet(q) => PutStatus::Failed(q),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflist::Role;

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn prim3() -> Serving {
        vec![
            (id("a"), Role::Primary),
            (id("b"), Role::Primary),
            (id("c"), Role::Primary),
        ]
    }

    #[test]
    fn w_acks_decide() {
        let mut p = PutCore::new(prim3(), 2, 0, 0);
        p.add_ack(id("a"), Ok(false));
        assert_eq!(p.status(), PutStatus::Pending);
        p.add_ack(id("b"), Ok(false));
        assert_eq!(p.status(), PutStatus::Done);
    }

    #[test]
    fn dw_needs_durable_acks() {
        let mut p = PutCore::new(prim3(), 1, 2, 0);
        p.add_ack(id("a"), Ok(true));
        p.add_ack(id("b"), Ok(false));
        assert_eq!(p.status(), PutStatus::Pending);
        p.add_ack(id("c"), Ok(false));
        match p.status() {
            PutStatus::Failed(q) => assert_eq!((q.which, q.needed, q.got), ("dw", 2, 1)),
            other => panic!("expected dw failure, got {other:?}"),
        }
        let mut p = PutCore::new(prim3(), 1, 2, 0);
        p.add_ack(id("a"), Ok(true));
        p.add_ack(id("c"), Ok(true));
        assert_eq!(p.status(), PutStatus::Done);
    }

    #[test]
    fn w_fails_as_soon_as_it_is_out_of_reach() {
        let mut p = PutCore::new(prim3(), 3, 0, 0);
        p.add_ack(id("a"), Ok(true));
        assert_eq!(p.status(), PutStatus::Pending);
        p.add_ack(id("b"), Err("unreachable".into()));
        match p.status() {
            PutStatus::Failed(q) => {
                assert_eq!((q.which, q.needed, q.got), ("w", 3, 2));
                assert_eq!(q.errors, vec![(id("b"), "unreachable".to_string())]);
            }
            other => panic!("expected w failure, got {other:?}"),
        }
    }

    #[test]
    fn fallback_acks_count_for_w_not_pw() {
        let serving = vec![
            (id("a"), Role::Primary),
            (id("d"), Role::from_hinted_for(Some(id("b")))),
            (id("e"), Role::from_hinted_for(Some(id("c")))),
        ];
        let mut p = PutCore::new(serving.clone(), 2, 0, 0);
        p.add_ack(id("d"), Ok(false));
        p.add_ack(id("e"), Ok(false));
        assert_eq!(
            p.status(),
            PutStatus::Done,
            "sloppy quorum met by fallbacks"
        );

        let mut p = PutCore::new(serving, 2, 0, 2);
        p.add_ack(id("a"), Ok(false));
        p.add_ack(id("d"), Ok(false));
        match p.status() {
            PutStatus::Failed(q) => assert_eq!((q.which, q.needed, q.got), ("pw", 2, 1)),
            other => panic!("expected pw failure, got {other:?}"),
        }
    }

    #[test]
    fn pw_met_by_primaries() {
        let mut p = PutCore::new(prim3(), 1, 0, 2);
        p.add_ack(id("a"), Ok(false));
        assert_eq!(p.status(), PutStatus::Pending);
        p.add_ack(id("c"), Ok(false));
        assert_eq!(p.status(), PutStatus::Done);
    }

    #[test]
    fn stray_and_duplicate_acks_are_ignored() {
        let mut p = PutCore::new(prim3(), 2, 0, 0);
        assert!(!p.add_ack(id("z"), Ok(true)));
        assert!(p.add_ack(id("a"), Ok(true)));
        assert!(!p.add_ack(id("a"), Ok(true)));
        assert_eq!(p.status(), PutStatus::Pending);
        assert!(!p.all_replied());
    }

    mod props {
        use super::super::*;
        use crate::preflist::Role;
        use proptest::prelude::*;

        proptest! {
            /// The decision never flips, and with every answer in it matches the counts.
            #[test]
            fn decision_is_stable_and_matches_the_counts(
                nodes in proptest::collection::vec((any::<bool>(), 0u8..3), 1..6),
                w_seed in 0u32..6, dw_seed in 0u32..6, pw_seed in 0u32..6,
            ) {
                let k = nodes.len() as u32;
                let (w, dw, pw) = (1 + w_seed % k, dw_seed % (k + 1), pw_seed % (k + 1));
                let serving: Serving = nodes
                    .iter()
                    .enumerate()
                    .map(|(i, (primary, _))| {
                        let id = NodeId::new(format!("n{i}"));
                        (id, Role::from_hinted_for(if *primary { None } else { Some(NodeId::from("p")) }))
                    })
                    .collect();
                let mut core = PutCore::new(serving.clone(), w, dw, pw);
                let mut decided: Option<PutStatus> = None;
                let (mut ok, mut durable, mut prim) = (0u32, 0u32, 0u32);
                for ((id, h), (_, outcome)) in serving.iter().zip(&nodes) {
                    let reply = match outcome {
                        0 => Err("down".to_string()),
                        1 => Ok(false),
                        _ => Ok(true),
                    };
                    if let Ok(d) = &reply {
                        ok += 1;
                        durable += u32::from(*d);
                        prim += u32::from(h.is_primary());
                    }
                    core.add_ack(id.clone(), reply);
                    let st = core.status();
                    if let Some(prev) = &decided {
                        prop_assert_eq!(
                            std::mem::discriminant(prev),
                            std::mem::discriminant(&st)
                        );
                    } else if st != PutStatus::Pending {
                        decided = Some(st.clone());
                    }
                    if let PutStatus::Failed(q) = &st {
                        prop_assert!(q.got < q.needed);
                    }
                }
                let success = ok >= w && durable >= dw && prim >= pw;
                let done = matches!(decided, Some(PutStatus::Done));
                prop_assert_eq!(done, success);
                prop_assert!(decided.is_some(), "every answer in decides");
            }
        }
    }
}
