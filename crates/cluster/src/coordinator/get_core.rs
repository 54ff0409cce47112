//! The read quorum as plain data: add a replica's reply, ask whether the read is decided, take
//! the merged answer, and list the replicas read repair must bring up to date.
//!
//! A "not found" reply is an answer like any other (it counts toward `r`); errors do not count.

use super::quorum::{QuorumError, ReadQuorum};
use super::tracker::{Decision, QuorumTracker};
use crate::preflist::{Role, Serving};
use riftkv_core::types::NodeId;
use riftkv_core::version::{ConflictMode, Object};
use std::collections::BTreeSet;

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
    r: u32,
    pr: u32,
    /// The coordinator itself, asked first when it serves the key.
    local: Option<NodeId>,
    /// Nodes a replica read was sent to.
    asked: BTreeSet<NodeId>,
    /// Asked nodes still silent when a hedge fired: no longer relied on to answer.
    suspect: BTreeSet<NodeId>,
    /// Replicas still catching up on hints after a restart (stale copies likely): asked
    /// only when the others cannot decide the read.
    last: BTreeSet<NodeId>,
}

impl GetCore {
    /// A read over `serving` needing `r` answers, `pr` of them from primaries serving as
    /// themselves. Merges in `Siblings` mode unless [`Self::mode`].
    pub fn new(serving: Serving, r: u32, pr: u32) -> GetCore {
        let q = ReadQuorum { n: 0, r, pr };
        GetCore {
            tracker: QuorumTracker::new(serving, q.needs(), |_| false),
            mode: ConflictMode::Siblings,
            r,
            pr,
            local: None,
            asked: BTreeSet::new(),
            suspect: BTreeSet::new(),
            last: BTreeSet::new(),
        }
    }

    /// Asks `nodes` (replicas catching up) after every other one, the coordinator included.
    pub fn ask_last(mut self, nodes: BTreeSet<NodeId>) -> GetCore {
        self.last = nodes;
        self
    }

    /// Prefers `node` (the coordinator) when choosing whom to ask.
    pub fn prefer(mut self, node: &NodeId) -> GetCore {
        self.local = Some(node.clone());
        self
    }

    /// The nodes to send a replica read to now, marked asked: as few as can still decide
    /// the read. First `pr` primaries, then the rest of `r`, the coordinator first, then in
    /// serving order (primaries first); afterwards one more for each asked node that failed
    /// or was given up on by [`Self::hedge`]. Nobody once the read is decided.
    pub fn to_ask(&mut self) -> Vec<(NodeId, Role)> {
        // The decision alone: `status` would also merge the answers of a decided read.
        if !matches!(self.tracker.decision(), Decision::Pending) {
            return Vec::new();
        }
        // What the answers in and the answers still expected can give.
        let (mut r_left, mut pr_left) = (self.r, self.pr);
        for (node, role) in self.tracker.serving() {
            let may_count = match self.tracker.reply(node) {
                Some(reply) => reply.is_ok(),
                None => self.asked.contains(node) && !self.suspect.contains(node),
            };
            if may_count {
                r_left = r_left.saturating_sub(1);
                if role.is_primary() {
                    pr_left = pr_left.saturating_sub(1);
                }
            }
        }
        let mut order: Vec<&(NodeId, Role)> = self
            .tracker
            .serving()
            .iter()
            .filter(|(n, _)| !self.asked.contains(n))
            .collect();
        // Stable: the coordinator moves to the front, replicas catching up to the back, the
        // rest keeps the serving order.
        order.sort_by_key(|(n, _)| (self.last.contains(n), Some(n) != self.local.as_ref()));
        let mut picked: Vec<(NodeId, Role)> = Vec::new();
        for (node, role) in order.iter().filter(|(_, role)| role.is_primary()) {
            if pr_left == 0 {
                break;
            }
            pr_left -= 1;
            r_left = r_left.saturating_sub(1);
            picked.push((node.clone(), role.clone()));
        }
        for (node, role) in order {
            if r_left == 0 {
                break;
            }
            if picked.iter().any(|(n, _)| n == node) {
                continue;
            }
            r_left -= 1;
            picked.push((node.clone(), role.clone()));
        }
        // Keep the preference order among the picked (primaries for `pr` were picked first).
        picked.sort_by_key(|(n, _)| {
            (
                self.last.contains(n),
                Some(n) != self.local.as_ref(),
                self.tracker.serving().iter().position(|(s, _)| s == n),
            )
        });
        self.asked.extend(picked.iter().map(|(n, _)| n.clone()));
        picked
    }

    /// The hedge delay has passed: every asked node still silent is no longer relied on
    /// (its answer still counts if it comes), and the nodes to ask in their stead.
    pub fn hedge(&mut self) -> Vec<(NodeId, Role)> {
        let silent: Vec<NodeId> = self
            .asked
            .iter()
            .filter(|n| self.tracker.reply(n).is_none())
            .cloned()
            .collect();
        self.suspect.extend(silent);
        self.to_ask()
    }

    /// The nodes asked so far, in node order.
    pub fn asked(&self) -> Vec<NodeId> {
        self.asked.iter().cloned().collect()
    }

    /// True once every asked node has replied: nothing more will arrive.
    pub fn settled(&self) -> bool {
        self.asked.iter().all(|n| self.tracker.reply(n).is_some())
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
        match self.merged() {
            Some(merged) => self.repairs_for(&merged),
            None => Vec::new(),
        }
    }

    /// [`Self::repairs`] given the merge of the answers so far ([`Self::merged`], or the
    /// object of a `Done` status), so a caller holding it does not merge again.
    pub fn repairs_for(&self, merged: &Object) -> Vec<RepairTarget> {
        self.tracker
            .serving()
            .iter()
            .filter(|(node, _)| match self.tracker.reply(node) {
                Some(Ok(None)) => true,
                Some(Ok(Some(copy))) => copy != merged,
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
        abc(2)
    }

    /// Primaries a, b and c, reading with `r`.
    fn abc(r: u32) -> GetCore {
        let serving = ["a", "b", "c"].map(|n| (id(n), Role::Primary)).to_vec();
        GetCore::new(serving, r, 0)
    }

    fn names(asked: &[(NodeId, Role)]) -> Vec<&str> {
        asked.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// A replica catching up on hints is asked after the others, even when it coordinates,
    /// and still when the others cannot decide the read.
    #[test]
    fn a_replica_catching_up_is_asked_last() {
        let mut g = abc(1).prefer(&id("a")).ask_last([id("a")].into());
        assert_eq!(names(&g.to_ask()), ["b"]);
        g.add_reply(id("b"), Err("down".into()));
        assert_eq!(names(&g.to_ask()), ["c"]);
        g.add_reply(id("c"), Err("down".into()));
        assert_eq!(names(&g.to_ask()), ["a"], "the last resort is still asked");
        let mut g = abc(2).ask_last([id("a")].into());
        assert_eq!(names(&g.to_ask()), ["b", "c"]);
        let mut g = abc(3).prefer(&id("b")).ask_last([id("a")].into());
        assert_eq!(names(&g.to_ask()), ["b", "c", "a"]);
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

    fn ids(v: &[(NodeId, Role)]) -> Vec<NodeId> {
        v.iter().map(|(n, _)| n.clone()).collect()
    }

    #[test]
    fn asks_the_first_r_with_the_coordinator_first() {
        let mut g = abc(2).prefer(&id("c"));
        assert_eq!(ids(&g.to_ask()), vec![id("c"), id("a")]);
        assert!(g.to_ask().is_empty(), "nothing more while both may answer");
        let mut g = abc(1).prefer(&id("z"));
        assert_eq!(
            ids(&g.to_ask()),
            vec![id("a")],
            "a coordinator that is no replica"
        );
        let mut g = abc(3).prefer(&id("b"));
        assert_eq!(
            ids(&g.to_ask()),
            vec![id("b"), id("a"), id("c")],
            "r = n asks all"
        );
    }

    #[test]
    fn pr_is_met_from_primaries_before_the_local_fallback() {
        let serving = vec![
            (id("a"), Role::Primary),
            (id("b"), Role::Primary),
            (id("d"), Role::from_hinted_for(Some(id("c")))),
        ];
        let mut g = GetCore::new(serving.clone(), 1, 1).prefer(&id("d"));
        assert_eq!(ids(&g.to_ask()), vec![id("a")]);
        let mut g = GetCore::new(serving.clone(), 2, 1).prefer(&id("d"));
        assert_eq!(ids(&g.to_ask()), vec![id("d"), id("a")]);
        // pr may exceed r: pr primaries are asked all the same.
        let mut g = GetCore::new(serving, 1, 2).prefer(&id("d"));
        assert_eq!(ids(&g.to_ask()), vec![id("a"), id("b")]);
    }

    #[test]
    fn an_error_asks_the_next_replica_and_its_answer_decides() {
        let mut g = abc(2).prefer(&id("a"));
        assert_eq!(ids(&g.to_ask()), vec![id("a"), id("b")]);
        g.add_reply(id("a"), Ok(None));
        assert!(g.to_ask().is_empty());
        g.add_reply(id("b"), Err("disk".into()));
        assert_eq!(ids(&g.to_ask()), vec![id("c")]);
        assert_eq!(g.status(), GetStatus::Pending);
        assert!(!g.settled());
        g.add_reply(id("c"), Ok(None));
        assert_eq!(g.status(), GetStatus::Done(None));
        assert!(g.settled());
    }

    #[test]
    fn a_hedge_asks_one_more_for_each_silent_replica_and_late_answers_still_count() {
        let v = write(None, "a", "v");
        let mut g = abc(2).prefer(&id("a"));
        g.to_ask();
        g.add_reply(id("a"), Ok(Some(v.clone())));
        assert_eq!(ids(&g.hedge()), vec![id("c")], "b is silent");
        assert!(g.hedge().is_empty(), "nobody left to ask");
        g.add_reply(id("b"), Ok(Some(v.clone())));
        assert_eq!(g.status(), GetStatus::Done(Some(v)));
        assert!(!g.settled(), "c's answer is still awaited for read repair");
        g.add_reply(id("c"), Ok(None));
        assert!(g.settled());
        assert_eq!(g.repairs().len(), 1);
    }

    #[test]
    fn a_decided_read_asks_nobody_more() {
        let mut g = abc(1).prefer(&id("b"));
        assert_eq!(ids(&g.to_ask()), vec![id("b")]);
        g.add_reply(id("b"), Ok(None));
        assert_eq!(
            g.status(),
            GetStatus::Done(None),
            "not found counts as an answer"
        );
        assert!(g.to_ask().is_empty());
        assert!(g.hedge().is_empty());
        assert!(g.settled());
        assert_eq!(g.asked(), vec![id("b")]);
    }

    #[test]
    fn replicas_not_asked_are_not_repaired() {
        let v1 = write(None, "a", "one");
        let v2 = write(Some(&v1), "a", "two");
        let mut g = abc(2).prefer(&id("a"));
        g.to_ask();
        g.add_reply(id("a"), Ok(Some(v2.clone())));
        g.add_reply(id("b"), Ok(Some(v1)));
        assert_eq!(g.status(), GetStatus::Done(Some(v2)));
        assert!(g.settled());
        let targets: Vec<NodeId> = g.repairs().into_iter().map(|t| t.node).collect();
        assert_eq!(targets, vec![id("b")]);
    }

    #[test]
    fn failing_asks_everyone_and_fails_as_asking_everyone_does() {
        let mut g = abc(2).prefer(&id("a"));
        g.to_ask();
        g.add_reply(id("a"), Err("down".into()));
        assert_eq!(ids(&g.to_ask()), vec![id("c")]);
        g.add_reply(id("c"), Err("down".into()));
        let mut all = abc(2);
        all.add_reply(id("a"), Err("down".into()));
        all.add_reply(id("c"), Err("down".into()));
        assert_eq!(g.status(), all.status());
        assert!(matches!(g.status(), GetStatus::Failed(_)));
    }

    mod props {
        use super::super::*;
        use super::ids;
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
                let serving = serving_of(nodes.iter().map(|(primary, _)| *primary));
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

        /// Nodes n0, n1, ...: a primary where `primary` says so, else a fallback.
        fn serving_of(primary: impl Iterator<Item = bool>) -> Serving {
            primary
                .enumerate()
                .map(|(i, p)| {
                    let hinted_for = (!p).then(|| NodeId::from("p"));
                    (
                        NodeId::new(format!("n{i}")),
                        Role::from_hinted_for(hinted_for),
                    )
                })
                .collect()
        }

        /// What happens to one replica asked by the read.
        #[derive(Clone, Copy, Debug)]
        enum Outcome {
            Fails,
            Silent,
            Answers(u8),
        }

        fn outcome() -> impl Strategy<Value = Outcome> {
            prop_oneof![
                Just(Outcome::Fails),
                Just(Outcome::Silent),
                (0u8..3).prop_map(Outcome::Answers),
            ]
        }

        proptest! {
            /// Asking the first `r` and widening on errors and hedges decides every read as
            /// asking everyone does: done exactly when every replica's answer would make it
            /// done, with the merge of at least `r` answers (`pr` from primaries), or failed
            /// with the error asking everyone gives after the same replies. Only asked
            /// replicas are repaired.
            #[test]
            fn the_plan_decides_as_asking_everyone(
                nodes in proptest::collection::vec((any::<bool>(), outcome()), 1..6),
                r_seed in 0u32..6, pr_seed in 0u32..6, local in 0usize..7,
                events in proptest::collection::vec(0u8..8, 0..40),
            ) {
                let k = nodes.len() as u32;
                let (r, pr) = (1 + r_seed % k, pr_seed % (k + 1));
                let serving = serving_of(nodes.iter().map(|(primary, _)| *primary));
                let mut versions = vec![None];
                for v in 0..2u8 {
                    let prev: Option<Object> = versions.last().cloned().flatten();
                    versions.push(Some(Object::update(
                        prev.as_ref(), &prev.as_ref().map(|o| o.context()).unwrap_or_default(),
                        NodeId::from("a"), Sibling::new(vec![v], "t", 1),
                        ConflictMode::Siblings, &Limits::default(),
                    ).unwrap()));
                }
                let reply_of = |i: usize| -> Option<ReadReply> {
                    match nodes[i].1 {
                        Outcome::Fails => Some(Err("down".to_string())),
                        Outcome::Silent => None,
                        Outcome::Answers(v) => Some(Ok(versions[usize::from(v)].clone())),
                    }
                };
                let index = |n: &NodeId| serving.iter().position(|(s, _)| s == n).unwrap();

                // Everyone asked, every reply in.
                let mut everyone = GetCore::new(serving.clone(), r, pr);
                for (i, (n, _)) in serving.iter().enumerate() {
                    if let Some(reply) = reply_of(i) {
                        everyone.add_reply(n.clone(), reply);
                    }
                }

                let mut plan = GetCore::new(serving.clone(), r, pr)
                    .prefer(&NodeId::new(format!("n{local}")));
                let mut outstanding: Vec<NodeId> = ids(&plan.to_ask());
                prop_assert!(outstanding.len() as u32 <= r.max(pr));
                let mut received: Vec<(NodeId, ReadReply)> = Vec::new();
                let mut first: Option<(GetStatus, Vec<(NodeId, ReadReply)>)> = None;
                let mut events = events.into_iter();
                loop {
                    if first.is_none() && plan.status() != GetStatus::Pending {
                        first = Some((plan.status(), received.clone()));
                    }
                    let answering: Vec<NodeId> = outstanding
                        .iter()
                        .filter(|n| reply_of(index(n)).is_some())
                        .cloned()
                        .collect();
                    let e = events.next().unwrap_or(0);
                    if !answering.is_empty() && e != 7 {
                        let n = answering[usize::from(e) % answering.len()].clone();
                        outstanding.retain(|o| o != &n);
                        let reply = reply_of(index(&n)).unwrap();
                        received.push((n.clone(), reply.clone()));
                        prop_assert!(plan.add_reply(n, reply));
                        outstanding.extend(ids(&plan.to_ask()));
                    } else {
                        let more = ids(&plan.hedge());
                        if more.is_empty() && answering.is_empty() {
                            break;
                        }
                        outstanding.extend(more);
                    }
                }
                let done = matches!(everyone.status(), GetStatus::Done(_));
                match first {
                    Some((GetStatus::Done(obj), got)) => {
                        prop_assert!(done);
                        let ok: Vec<&(NodeId, ReadReply)> = got.iter().filter(|(_, x)| x.is_ok()).collect();
                        prop_assert!(ok.len() as u32 >= r);
                        let prim = ok.iter().filter(|(n, _)| serving[index(n)].1.is_primary()).count();
                        prop_assert!(prim as u32 >= pr);
                        // The answer is the merge of the replies in.
                        let mut again = GetCore::new(serving.clone(), r, pr);
                        for (n, x) in got {
                            again.add_reply(n, x);
                        }
                        prop_assert_eq!(obj, again.merged());
                    }
                    Some((GetStatus::Failed(e), got)) => {
                        prop_assert!(!done);
                        let mut same = GetCore::new(serving.clone(), r, pr);
                        for (n, x) in got {
                            same.add_reply(n, x);
                        }
                        prop_assert_eq!(GetStatus::Failed(e.clone()), same.status());
                        prop_assert!(e.got < e.needed);
                        // Asking everyone fails too, with at most as many reachable.
                        let GetStatus::Failed(all) = everyone.status() else {
                            return Err(TestCaseError::fail("asking everyone did not fail"));
                        };
                        if all.which == e.which {
                            prop_assert!(all.got <= e.got);
                        }
                    }
                    Some((GetStatus::Pending, _)) => unreachable!(),
                    // Undecided to the end: only silent replicas keep it open, as they would
                    // keep a read of everyone open until its deadline.
                    None => prop_assert_eq!(everyone.status(), GetStatus::Pending),
                }
                let asked = plan.asked();
                for t in plan.repairs() {
                    prop_assert!(asked.contains(&t.node));
                }
            }
        }
    }
}
