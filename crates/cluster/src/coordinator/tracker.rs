//! The one quorum tracker behind reads, writes and the fail-fast check: which replies count
//! toward which requirement, and when a request is met or can no longer be met.
//!
//! Pure data, no I/O: the get and put cores wrap it with what they do with the answers
//! (merging copies, nothing at all for acks).

use crate::preflist::{Role, Serving};
use riftkv_core::types::NodeId;
use std::collections::BTreeMap;

/// A quorum requirement that cannot be met, with what it needed and what it could get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumError {
    pub which: &'static str,
    pub needed: u32,
    pub got: u32,
    pub errors: Vec<(NodeId, String)>,
}

/// What a requirement counts among the successful replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counts {
    /// Every successful reply, fallbacks included (sloppy quorum: `r`, `w`).
    Answers,
    /// Replies that report their write durable on disk (`dw`).
    Durable,
    /// Replies of primaries serving as themselves (`pr`, `pw`).
    Primaries,
}

/// One requirement of a request, such as `w = 2`; `which` names it in a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub which: &'static str,
    pub needed: u32,
    pub counts: Counts,
}

impl Need {
    pub fn new(which: &'static str, needed: u32, counts: Counts) -> Need {
        Need {
            which,
            needed,
            counts,
        }
    }
}

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not met yet, and still possible.
    Pending,
    /// Every requirement is met.
    Met,
    /// The first requirement (in the order given) that can no longer be met, with the most
    /// it could still have got and the errors received so far.
    Unmet(QuorumError),
}

/// Replies of the serving nodes to one request, counted against its requirements.
///
/// Replies from nodes outside the serving set and second replies from a node are ignored, so
/// a confused or replayed answer can never be counted twice.
#[derive(Clone, Debug)]
pub struct QuorumTracker<T> {
    serving: Serving,
    needs: Vec<Need>,
    durable: fn(&T) -> bool,
    replies: BTreeMap<NodeId, Result<T, String>>,
}

impl<T> QuorumTracker<T> {
    /// A request over `serving` with `needs` checked in order; `durable` says whether a reply
    /// counts toward [`Counts::Durable`].
    pub fn new(serving: Serving, needs: Vec<Need>, durable: fn(&T) -> bool) -> Self {
        QuorumTracker {
            serving,
            needs,
            durable,
            replies: BTreeMap::new(),
        }
    }

    /// The serving set the request was sent to.
    pub fn serving(&self) -> &Serving {
        &self.serving
    }

    fn role(&self, node: &NodeId) -> Option<&Role> {
        self.serving.iter().find(|(n, _)| n == node).map(|(_, r)| r)
    }

    /// Records one node's reply; false (and nothing recorded) for a stray or repeated one.
    pub fn add(&mut self, node: NodeId, reply: Result<T, String>) -> bool {
        if self.role(&node).is_none() || self.replies.contains_key(&node) {
            return false;
        }
        self.replies.insert(node, reply);
        true
    }

    /// The reply of `node`, if it has answered.
    pub fn reply(&self, node: &NodeId) -> Option<&Result<T, String>> {
        self.replies.get(node)
    }

    /// Every successful reply so far, in node order.
    pub fn answers(&self) -> impl Iterator<Item = &T> {
        self.replies.values().filter_map(|r| r.as_ref().ok())
    }

    /// True once every serving node has replied.
    pub fn all_replied(&self) -> bool {
        self.replies.len() >= self.serving.len()
    }

    /// Nodes that have not replied yet, in serving order.
    pub fn waiting_for(&self) -> Vec<NodeId> {
        self.serving
            .iter()
            .filter(|(n, _)| !self.replies.contains_key(n))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The errors received so far, in node order.
    pub fn errors(&self) -> Vec<(NodeId, String)> {
        self.replies
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.clone())))
            .collect()
    }

    /// Whether a successful reply `reply` of a node in `role` counts toward `counts`.
    fn counts_toward(&self, counts: Counts, role: &Role, reply: &T) -> bool {
        match counts {
            Counts::Answers => true,
            Counts::Durable => (self.durable)(reply),
            Counts::Primaries => role.is_primary(),
        }
    }

    /// Whether a node that has not replied could still count toward `counts`.
    fn could_count(counts: Counts, role: &Role) -> bool {
        match counts {
            Counts::Answers | Counts::Durable => true,
            Counts::Primaries => role.is_primary(),
        }
    }

    /// Met once every requirement has enough counting replies; unmet as soon as one cannot
    /// get there even if every node still silent answers in its favour. Once met or unmet it
    /// stays so: replies only add.
    pub fn decision(&self) -> Decision {
        let mut got = vec![0u32; self.needs.len()];
        let mut possible = vec![0u32; self.needs.len()];
        for (node, role) in &self.serving {
            for (i, need) in self.needs.iter().enumerate() {
                match self.replies.get(node) {
                    Some(Ok(reply)) if self.counts_toward(need.counts, role, reply) => {
                        got[i] += 1;
                        possible[i] += 1;
                    }
                    Some(_) => {}
                    None if Self::could_count(need.counts, role) => possible[i] += 1,
                    None => {}
                }
            }
        }
        if self.needs.iter().zip(&got).all(|(n, g)| *g >= n.needed) {
            return Decision::Met;
        }
        for (need, most) in self.needs.iter().zip(&possible) {
            if *most < need.needed {
                return Decision::Unmet(QuorumError {
                    which: need.which,
                    needed: need.needed,
                    got: *most,
                    errors: self.errors(),
                });
            }
        }
        Decision::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn fallback(node: &str, for_node: &str) -> (NodeId, Role) {
        (
            id(node),
            Role::Fallback {
                for_node: id(for_node),
            },
        )
    }

    fn acks(serving: Serving, needs: Vec<Need>) -> QuorumTracker<bool> {
        QuorumTracker::new(serving, needs, |d| *d)
    }

    #[test]
    fn no_replies_is_the_fail_fast_check() {
        let serving = vec![(id("a"), Role::Primary), fallback("d", "b")];
        let t = acks(
            serving.clone(),
            vec![
                Need::new("w", 2, Counts::Answers),
                Need::new("pw", 2, Counts::Primaries),
            ],
        );
        match t.decision() {
            Decision::Unmet(q) => {
                assert_eq!((q.which, q.needed, q.got), ("pw", 2, 1));
                assert!(q.errors.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let t = acks(serving, vec![Need::new("w", 2, Counts::Answers)]);
        assert_eq!(t.decision(), Decision::Pending);
    }

    #[test]
    fn requirements_are_reported_in_the_order_given() {
        let serving = vec![(id("a"), Role::Primary)];
        let t = acks(
            serving,
            vec![
                Need::new("w", 2, Counts::Answers),
                Need::new("dw", 3, Counts::Durable),
            ],
        );
        match t.decision() {
            Decision::Unmet(q) => assert_eq!((q.which, q.needed, q.got), ("w", 2, 1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn durable_counts_only_durable_replies_and_errors_are_kept() {
        let serving = vec![
            (id("a"), Role::Primary),
            (id("b"), Role::Primary),
            (id("c"), Role::Primary),
        ];
        let mut t = acks(
            serving,
            vec![
                Need::new("w", 1, Counts::Answers),
                Need::new("dw", 2, Counts::Durable),
            ],
        );
        assert!(t.add(id("a"), Ok(false)));
        assert_eq!(t.decision(), Decision::Pending);
        assert!(t.add(id("b"), Err("disk full".into())));
        match t.decision() {
            Decision::Unmet(q) => {
                assert_eq!((q.which, q.needed, q.got), ("dw", 2, 1));
                assert_eq!(q.errors, vec![(id("b"), "disk full".to_string())]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strays_and_repeats_are_not_counted() {
        let mut t = acks(
            vec![(id("a"), Role::Primary), (id("b"), Role::Primary)],
            vec![Need::new("w", 2, Counts::Answers)],
        );
        assert!(t.add(id("a"), Ok(true)));
        assert!(!t.add(id("a"), Ok(true)), "a second reply of a");
        assert!(!t.add(id("z"), Ok(true)), "a node outside the serving set");
        assert_eq!(t.decision(), Decision::Pending);
        assert_eq!(t.waiting_for(), vec![id("b")]);
        assert!(t.add(id("b"), Ok(false)));
        assert_eq!(t.decision(), Decision::Met);
        assert!(t.all_replied());
    }

    #[test]
    fn a_fallback_never_counts_as_a_primary() {
        let mut t = acks(
            vec![(id("a"), Role::Primary), fallback("d", "b")],
            vec![
                Need::new("w", 1, Counts::Answers),
                Need::new("pw", 1, Counts::Primaries),
            ],
        );
        t.add(id("d"), Ok(true));
        assert_eq!(t.decision(), Decision::Pending, "w met, pw not yet");
        t.add(id("a"), Err("down".into()));
        match t.decision() {
            Decision::Unmet(q) => assert_eq!((q.which, q.needed, q.got), ("pw", 1, 0)),
            other => panic!("{other:?}"),
        }
    }
}
