//! The pending ring change as operators see it (`GET /v1/admin/plan`: the changes, the
//! transfers and the partitions per node before and after) and the commit of a staged plan.
//! The view is plain data computed from the ring state alone, so every node shows the same
//! plan once gossip has spread it.

use crate::node::Node;
use riftkv_core::membership::state::{MemberStatus, MembershipError, RingState};
use riftkv_core::types::{NodeId, PartitionId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// What a membership change does to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Join,
    Leave,
    Remove,
    Replace,
}

/// One change the pending plan carries out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    pub node: NodeId,
    /// The member that takes over `node`'s partitions, for a replace.
    pub by: Option<NodeId>,
    /// The pending plan carries it; false for the gossip round or two until the claimant
    /// recomputes the plan (a commit waits for it).
    pub planned: bool,
}

/// One partition a node must receive before the plan is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransferView {
    pub partition: PartitionId,
    pub from: NodeId,
    pub to: NodeId,
    pub done: bool,
}

/// Partitions a node owns in the committed ring and in the plan's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub before: usize,
    pub after: usize,
}

/// `GET /v1/admin/plan`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanView {
    /// A plan is pending (staged or applying).
    pub pending: bool,
    /// The plan waits for `POST /v1/admin/plan/commit`.
    pub staged: bool,
    pub plan_id: Option<u64>,
    pub ring_version: u64,
    pub changes: Vec<Change>,
    pub transfers: Vec<TransferView>,
    /// Every node that owns partitions before or after, and every joining member.
    pub partitions: BTreeMap<NodeId, Counts>,
}

/// The membership changes behind the pending ownership change, from member statuses: joining
/// members join, leaving members leave, removed members that still own partitions are being
/// removed, and a plan that renames one owner to a fresh one is a replace (shown once, not
/// as a removal and a join).
pub fn changes(state: &RingState) -> Vec<Change> {
    let replace = state.replace_in_flight();
    let mut out: Vec<Change> = Vec::new();
    if let Some((old, new)) = &replace {
        out.push(Change {
            action: Action::Replace,
            node: old.clone(),
            by: Some(new.clone()),
            planned: true,
        });
    }
    let in_replace = |id: &NodeId| {
        replace
            .as_ref()
            .is_some_and(|(old, new)| id == old || id == new)
    };
    for m in state.members.values().filter(|m| !in_replace(&m.node_id)) {
        let action = match m.status {
            MemberStatus::Joining => Action::Join,
            MemberStatus::Leaving => Action::Leave,
            MemberStatus::Removed if !state.ring.partitions_of(&m.node_id).is_empty() => {
                Action::Remove
            }
            MemberStatus::Removed | MemberStatus::Valid => continue,
        };
        out.push(Change {
            action,
            planned: state.plan_carries(&m.node_id),
            node: m.node_id.clone(),
            by: None,
        });
    }
    out
}

/// Partitions per node in the committed ring and in the ring placement converges to (the
/// same ring when nothing is pending).
pub fn partition_counts(state: &RingState) -> BTreeMap<NodeId, Counts> {
    let mut out: BTreeMap<NodeId, Counts> = BTreeMap::new();
    for id in state.ring.owners() {
        out.entry(id.clone())
            .or_insert(Counts {
                before: 0,
                after: 0,
            })
            .before += 1;
    }
    for id in state.target_ring().owners() {
        out.entry(id.clone())
            .or_insert(Counts {
                before: 0,
                after: 0,
            })
            .after += 1;
    }
    for m in state
        .members
        .values()
        .filter(|m| m.status == MemberStatus::Joining)
    {
        out.entry(m.node_id.clone()).or_insert(Counts {
            before: 0,
            after: 0,
        });
    }
    out
}

/// The whole view of `GET /v1/admin/plan` over a plain state.
pub fn plan_view(state: &RingState) -> PlanView {
    let plan = state.plan.as_ref();
    let transfers = plan
        .map(|p| {
            p.transfers
                .iter()
                .map(|t| TransferView {
                    partition: t.partition,
                    from: t.from.clone(),
                    to: t.to.clone(),
                    done: state.transfer_is_done(p.id, t),
                })
                .collect()
        })
        .unwrap_or_default();
    PlanView {
        pending: plan.is_some(),
        staged: plan.is_some_and(|p| p.staged),
        plan_id: plan.map(|p| p.id),
        ring_version: state.ring_version,
        changes: changes(state),
        transfers,
        partitions: partition_counts(state),
    }
}

/// `GET /v1/admin/plan` on this node.
pub fn view(node: &Node) -> PlanView {
    plan_view(&node.state.read())
}

/// Commits the staged plan (`POST /v1/admin/plan/commit`): its transfers start, and the
/// claimant commits its target once they are done. Returns the view after the commit.
pub async fn commit(node: &Node) -> Result<PlanView, MembershipError> {
    if !node.joined.load(Ordering::SeqCst) {
        return Err(MembershipError::NotJoined);
    }
    let me = node.id.clone();
    let out = node
        .update_state(|s| match s.commit_staged(&me) {
            Ok(id) => (true, Ok((id, plan_view(s)))),
            Err(e) => (false, Err(e)),
        })
        .await
        .map_err(|e| MembershipError::Persist(e.to_string()))?;
    let (id, view) = out?;
    tracing::info!(
        plan = id,
        transfers = view.transfers.len(),
        "staged ring change committed by operator"
    );
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::membership::state::ChangeMode;
    use riftkv_core::membership::state::fixtures::{finish_transfers, info, settle};

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn three() -> RingState {
        let mut s = RingState::found("c".into(), 32, 3, info("a"));
        s.add_member(info("b")).unwrap();
        s.add_member(info("c")).unwrap();
        settle(&mut s);
        s
    }

    #[test]
    fn nothing_pending_shows_the_ring_as_it_is() {
        let s = three();
        let v = plan_view(&s);
        assert!(!v.pending && !v.staged);
        assert_eq!(v.plan_id, None);
        assert!(v.changes.is_empty() && v.transfers.is_empty());
        assert_eq!(v.partitions.values().map(|c| c.before).sum::<usize>(), 32);
        assert!(v.partitions.values().all(|c| c.before == c.after));
    }

    #[test]
    fn a_staged_join_shows_the_new_node_from_zero_to_its_share() {
        let mut s = three();
        s.add_member(info("d")).unwrap();
        // Before the claimant has planned: the join is known, nothing is pending yet.
        let v = plan_view(&s);
        assert!(!v.pending);
        assert!(!v.changes[0].planned);
        assert_eq!(
            v.partitions[&id("d")],
            Counts {
                before: 0,
                after: 0
            }
        );
        s.claimant_step_in(&id("a"), ChangeMode::Staged);
        let v = plan_view(&s);
        assert!(v.pending && v.staged);
        assert_eq!(v.plan_id, s.plan.as_ref().map(|p| p.id));
        assert_eq!(
            v.changes,
            vec![Change {
                action: Action::Join,
                node: id("d"),
                by: None,
                planned: true,
            }]
        );
        let d = v.partitions[&id("d")];
        assert_eq!(d.before, 0);
        assert!((6..=10).contains(&d.after), "about a quarter: {d:?}");
        let (before, after): (usize, usize) = v
            .partitions
            .values()
            .fold((0, 0), |(b, a), c| (b + c.before, a + c.after));
        assert_eq!((before, after), (32, 32));
        for x in ["a", "b", "c"] {
            let c = v.partitions[&id(x)];
            assert!(c.after <= c.before, "{x} gives partitions away: {c:?}");
        }
        assert!(!v.transfers.is_empty());
        assert!(v.transfers.iter().all(|t| !t.done));
        // The JSON an operator reads.
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["changes"][0]["action"], "join");
        assert_eq!(j["partitions"]["d"]["before"], 0);
        assert!(j["transfers"][0]["partition"].is_u64());
    }

    #[test]
    fn batched_changes_are_listed_once_each() {
        let mut s = three();
        s.add_member(info("d")).unwrap();
        s.add_member(info("e")).unwrap();
        s.set_status(&id("c"), MemberStatus::Leaving).unwrap();
        s.claimant_step_in(&id("a"), ChangeMode::Staged);
        let v = plan_view(&s);
        let listed: Vec<(Action, &str)> = v
            .changes
            .iter()
            .map(|c| (c.action, c.node.as_str()))
            .collect();
        assert_eq!(
            listed,
            vec![
                (Action::Leave, "c"),
                (Action::Join, "d"),
                (Action::Join, "e")
            ]
        );
        assert_eq!(v.partitions[&id("c")].after, 0);
    }

    #[test]
    fn a_replace_is_one_change_and_a_removal_shows_until_committed() {
        let mut s = three();
        s.add_member(info("d")).unwrap();
        s.replace_in(&id("b"), &id("c"), &id("d"), ChangeMode::Staged)
            .unwrap();
        let v = plan_view(&s);
        assert_eq!(
            v.changes,
            vec![Change {
                action: Action::Replace,
                node: id("c"),
                by: Some(id("d")),
                planned: true,
            }]
        );
        let c = v.partitions[&id("c")];
        assert_eq!(v.partitions[&id("d")].after, c.before);
        assert_eq!(c.after, 0);

        let mut s = three();
        s.set_status(&id("c"), MemberStatus::Removed).unwrap();
        s.claimant_step_in(&id("a"), ChangeMode::Staged);
        let v = plan_view(&s);
        assert_eq!(v.changes[0].action, Action::Remove);
        s.commit_staged(&id("a")).unwrap();
        finish_transfers(&mut s, |_| true);
        settle(&mut s);
        assert!(plan_view(&s).changes.is_empty());
    }

    #[test]
    fn transfers_show_what_is_done_while_applying() {
        let mut s = three();
        s.add_member(info("d")).unwrap();
        s.claimant_step(&id("a"));
        let first = s.plan.as_ref().unwrap().transfers[0].clone();
        finish_transfers(&mut s, |t| t == &first);
        let v = plan_view(&s);
        assert!(v.pending && !v.staged);
        assert_eq!(v.transfers.iter().filter(|t| t.done).count(), 1);
    }
}
