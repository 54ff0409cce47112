//! What operators see and do: the status, ring and preference-list views of the admin API, and
//! the leave and remove commands. Views are plain serializable data; HTTP lives in `api/`.

use crate::node::Node;
use riftkv_core::membership::state::{MemberStatus, MembershipError, RingState};
use riftkv_core::types::{NodeId, PartitionId};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// One member as `/v1/admin/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    pub node_id: NodeId,
    pub api_addr: String,
    pub peer_addr: String,
    pub zone: Option<String>,
    pub status: MemberStatus,
    pub reachable: bool,
}

/// `/v1/admin/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusView {
    pub node_id: NodeId,
    pub cluster_name: String,
    pub ring_version: u64,
    pub ring_size: u32,
    pub members: Vec<MemberView>,
    pub owned_partitions: usize,
    pub hints_pending: u64,
    pub handoffs_pending: usize,
    pub ring_settled: bool,
    /// The node's background workers and their latest state.
    pub workers: Vec<crate::worker::WorkerStatus>,
    /// Progress of the pending ring change; None while nothing moves.
    pub transfers: Option<TransfersView>,
    /// What this node adds to its own clock to judge and stamp expiry (cluster time).
    pub clock_offset_ms: i64,
    /// Restarted and still waiting for its peers' hints (see `node::catch_up`).
    pub catching_up: bool,
    /// The id of the pending plan while it is staged (waits for a commit).
    pub staged_plan: Option<u64>,
}

/// Progress of the pending plan's transfers as this node sees them, with its own limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransfersView {
    /// Partition transfers of the plan finished (by any source) and planned in total.
    pub partitions_done: usize,
    pub partitions_total: usize,
    /// Bytes this node sent or received for the plan.
    pub bytes_moved: u64,
    /// This node's partition streams at once and bytes per second (0 = no limit).
    pub concurrency: usize,
    pub max_bytes_per_sec: u64,
    /// `(old, new)` when the plan is a replace.
    pub replacing: Option<(NodeId, NodeId)>,
    /// Seconds until the last transfer is done at the pace so far, once one is done.
    pub eta_secs: Option<u64>,
}

/// The transfers part of the status: None unless a plan is moving partitions (a staged plan
/// moves nothing until it is committed).
pub fn transfers_view(
    state: &RingState,
    bytes_moved: u64,
    concurrency: usize,
    max_bytes_per_sec: u64,
    elapsed_ms: u64,
) -> Option<TransfersView> {
    if !state.ownership_moving() {
        return None;
    }
    let (partitions_done, partitions_total) = state.plan_progress()?;
    Some(TransfersView {
        partitions_done,
        partitions_total,
        bytes_moved,
        concurrency,
        max_bytes_per_sec,
        replacing: state.replace_in_flight(),
        eta_secs: eta_secs(elapsed_ms, partitions_done, partitions_total),
    })
}

/// Seconds left for `total - done` transfers at the pace of the `done` finished in
/// `elapsed_ms` (rounded up); unknown before the first is done.
pub fn eta_secs(elapsed_ms: u64, done: usize, total: usize) -> Option<u64> {
    if done == 0 {
        return None;
    }
    let left = total.saturating_sub(done) as u128;
    let ms = u128::from(elapsed_ms) * left / done as u128;
    Some(u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX))
}

/// One partition of `/v1/admin/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionView {
    pub id: PartitionId,
    pub owner: NodeId,
    pub preference_list: Vec<NodeId>,
}

/// `/v1/admin/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingView {
    pub ring_version: u64,
    pub ring_size: u32,
    pub n: u32,
    pub partitions: Vec<PartitionView>,
}

/// `/v1/admin/preflist/{bucket}/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreflistView {
    pub partition: PartitionId,
    pub primaries: Vec<NodeId>,
    pub serving: Vec<NodeId>,
}

/// Whether the ring is settled as seen from `me`: nothing pending locally (every visible member
/// valid, no plan), this node joined, and every member it can reach has reported this node's
/// ring version. Unreachable members cannot report and do not hold it back (the contract's
/// "every reachable member on its ring version").
pub fn ring_settled(
    state: &RingState,
    me: &NodeId,
    joined: bool,
    reachable: impl Fn(&NodeId) -> bool,
    peer_versions: &HashMap<NodeId, u64>,
) -> bool {
    joined
        && state.locally_settled()
        && state
            .visible_members()
            .filter(|m| &m.node_id != me && reachable(&m.node_id))
            .all(|m| peer_versions.get(&m.node_id) == Some(&state.ring_version))
}

/// The member list of the status view, in node id order.
pub fn member_views(state: &RingState, reachable: impl Fn(&NodeId) -> bool) -> Vec<MemberView> {
    state
        .visible_members()
        .map(|m| MemberView {
            node_id: m.node_id.clone(),
            api_addr: m.api_addr.clone(),
            peer_addr: m.peer_addr.clone(),
            zone: m.zone.clone(),
            status: m.status,
            reachable: reachable(&m.node_id),
        })
        .collect()
}

/// Whether this node's view of the ring is settled (see [`ring_settled`]).
pub fn is_settled(node: &Node) -> bool {
    let state = node.state.read();
    let versions = node.peer_ring_versions.lock().clone();
    ring_settled(
        &state,
        &node.id,
        node.joined.load(Ordering::SeqCst),
        |id| node.is_reachable(id),
        &versions,
    )
}

/// `/v1/admin/status` for this node.
pub fn status(node: &Node) -> Result<StatusView, MembershipError> {
    let hints_pending = node
        .storage
        .hint_counts()
        .map_err(|e| MembershipError::Persist(e.to_string()))?
        .iter()
        .map(|(_, n)| *n)
        .sum();
    let handoffs_pending = crate::handoff::ownership::pending_handoffs(node)
        .map_err(|e| MembershipError::Persist(e.to_string()))?;
    let ring_settled = is_settled(node);
    let state = node.state.read();
    let plan = state.plan.as_ref().map(|p| p.id);
    let elapsed_ms = plan.map_or(0, |p| {
        node.transfer_bytes.elapsed_ms(p, node.clock.now_ms())
    });
    let transfers = transfers_view(
        &state,
        node.transfer_bytes.bytes(plan),
        node.settings.transfer_concurrency.max(1),
        node.settings.transfer_max_bytes_per_sec,
        elapsed_ms,
    );
    Ok(StatusView {
        node_id: node.id.clone(),
        cluster_name: state.cluster_name.clone(),
        ring_version: state.ring_version,
        ring_size: state.ring_size(),
        members: member_views(&state, |id| node.is_reachable(id)),
        owned_partitions: state.ring.partitions_of(&node.id).len(),
        hints_pending,
        handoffs_pending,
        ring_settled,
        workers: node.workers.list(),
        transfers,
        clock_offset_ms: node.peer_clocks.offset_ms(),
        catching_up: node.catch_up.is_catching_up(),
        staged_plan: state.plan.as_ref().filter(|p| p.staged).map(|p| p.id),
    })
}

/// `/v1/admin/ring`: the committed ring with each partition's preference list.
pub fn ring_view(node: &Node) -> RingView {
    let state = node.state.read();
    ring_view_of(&state)
}

/// [`ring_view`] over a plain state.
pub fn ring_view_of(state: &RingState) -> RingView {
    let n = state.n_val;
    RingView {
        ring_version: state.ring_version,
        ring_size: state.ring_size(),
        n,
        partitions: (0..state.ring_size())
            .map(|p| PartitionView {
                id: p,
                owner: state.ring.owner(p).clone(),
                preference_list: state.ring.preference_list(p, n as usize).to_vec(),
            })
            .collect(),
    }
}

/// `/v1/admin/preflist/{bucket}/{key}`: the key's primaries (for its bucket's `n`) and the
/// nodes that would serve it now, fallbacks included.
pub fn preflist_view(node: &Node, bucket: &[u8], key: &[u8]) -> PreflistView {
    let (partition, n, primaries) = {
        let state = node.state.read();
        let partition = riftkv_core::ring::partition_for(bucket, key, state.ring_size());
        let n = state.bucket_props(bucket).n as usize;
        let primaries = state.ring.preference_list(partition, n).to_vec();
        (partition, n, primaries)
    };
    let serving = node
        .serving(partition, n)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    PreflistView {
        partition,
        primaries,
        serving,
    }
}

/// Starts this node's departure: it is marked leaving, the claimant moves its partitions to the
/// other members, and once its data is handed off it marks itself removed and exits.
/// Asking again while leaving is accepted and changes nothing.
pub async fn leave(node: &Node) -> Result<(), MembershipError> {
    if !node.joined.load(Ordering::SeqCst) {
        return Err(MembershipError::NotJoined);
    }
    let me = node.id.clone();
    let result = node
        .update_state(|s| match check_leave(s, &me) {
            Ok(true) => match s.set_status(&me, MemberStatus::Leaving) {
                Ok(()) => (true, Ok(())),
                Err(e) => (false, Err(e)),
            },
            Ok(false) => (false, Ok(())),
            Err(e) => (false, Err(e)),
        })
        .await;
    let out = result.map_err(|e| MembershipError::Persist(e.to_string()))?;
    if out.is_ok() {
        tracing::info!("leaving the cluster: handing partitions off");
    }
    out
}

/// Whether `me` may leave: Ok(true) to start, Ok(false) when already leaving.
pub fn check_leave(state: &RingState, me: &NodeId) -> Result<bool, MembershipError> {
    let mine = state
        .member(me)
        .ok_or_else(|| MembershipError::UnknownMember(me.clone()))?;
    match mine.status {
        MemberStatus::Removed => return Err(MembershipError::Removed(me.clone())),
        MemberStatus::Leaving => return Ok(false),
        MemberStatus::Joining | MemberStatus::Valid => {}
    }
    if !state.active_members().any(|m| &m.node_id != me) {
        return Err(MembershipError::OnlyMember);
    }
    Ok(true)
}

/// Drops a (dead) member: its partitions are reassigned by the claimant. If it was the claimant,
/// the next lowest valid node takes over on its own.
pub async fn remove(node: &Node, id: &NodeId) -> Result<(), MembershipError> {
    if !node.joined.load(Ordering::SeqCst) {
        return Err(MembershipError::NotJoined);
    }
    let me = node.id.clone();
    let result = node
        .update_state(|s| match check_remove(s, &me, id) {
            Ok(()) => match s.set_status(id, MemberStatus::Removed) {
                Ok(()) => (true, Ok(())),
                Err(e) => (false, Err(e)),
            },
            Err(e) => (false, Err(e)),
        })
        .await;
    let out = result.map_err(|e| MembershipError::Persist(e.to_string()))?;
    if out.is_ok() {
        node.detector.lock().forget(id);
        node.peer_ring_versions.lock().remove(id);
        node.metrics.forget_peer(id.as_str());
        tracing::info!(node = %id, "member removed by operator");
    }
    out
}

/// Replaces the (dead) member `old` by `new`, a member that joined and owns nothing yet: `old`
/// is removed and `new` receives exactly `old`'s partitions from the surviving replicas
/// (see `RingState::replace`). The node asked must not be `old` itself.
pub async fn replace(node: &Node, old: &NodeId, new: &NodeId) -> Result<(), MembershipError> {
    if !node.joined.load(Ordering::SeqCst) {
        return Err(MembershipError::NotJoined);
    }
    let me = node.id.clone();
    if old == &me {
        return Err(MembershipError::CannotRemoveSelf);
    }
    let out = node
        .update_state(
            |s| match s.replace_in(&me, old, new, node.settings.change_mode) {
                Ok(()) => (true, Ok(())),
                Err(e) => (false, Err(e)),
            },
        )
        .await
        .map_err(|e| MembershipError::Persist(e.to_string()))?;
    if out.is_ok() {
        node.detector.lock().forget(old);
        node.peer_ring_versions.lock().remove(old);
        node.metrics.forget_peer(old.as_str());
        tracing::info!(old = %old, new = %new, "member replaced by operator");
    }
    out
}

/// Whether `me` may remove `id`.
pub fn check_remove(state: &RingState, me: &NodeId, id: &NodeId) -> Result<(), MembershipError> {
    if id == me {
        return Err(MembershipError::CannotRemoveSelf);
    }
    match state.member(id) {
        None => Err(MembershipError::UnknownMember(id.clone())),
        Some(m) if m.status == MemberStatus::Removed => Err(MembershipError::Removed(id.clone())),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::membership::state::fixtures::{info, settle};

    fn three() -> RingState {
        let mut s = RingState::found("c".into(), 16, 3, info("a"));
        s.add_member(info("b")).unwrap();
        s.add_member(info("c")).unwrap();
        settle(&mut s);
        assert!(s.locally_settled());
        s
    }

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    #[test]
    fn settled_needs_every_reachable_peer_on_our_version() {
        let s = three();
        let v = s.ring_version;
        let mut versions = HashMap::new();
        versions.insert(id("b"), v);
        // c has not reported yet.
        assert!(!ring_settled(&s, &id("a"), true, |_| true, &versions));
        versions.insert(id("c"), v - 1);
        assert!(!ring_settled(&s, &id("a"), true, |_| true, &versions));
        versions.insert(id("c"), v);
        assert!(ring_settled(&s, &id("a"), true, |_| true, &versions));
        // Not joined yet: never settled.
        assert!(!ring_settled(&s, &id("a"), false, |_| true, &versions));
        // An unreachable member's silence does not hold the ring back.
        versions.remove(&id("c"));
        assert!(ring_settled(
            &s,
            &id("a"),
            true,
            |x| x != &id("c"),
            &versions
        ));
    }

    #[test]
    fn settled_needs_no_plan_and_only_valid_members() {
        let mut s = three();
        s.add_member(info("d")).unwrap();
        let all: HashMap<NodeId, u64> = ["b", "c", "d"]
            .iter()
            .map(|x| (id(x), s.ring_version))
            .collect();
        assert!(!ring_settled(&s, &id("a"), true, |_| true, &all));
        s.claimant_step(&id("a"));
        assert!(s.plan.is_some());
        let all: HashMap<NodeId, u64> = ["b", "c", "d"]
            .iter()
            .map(|x| (id(x), s.ring_version))
            .collect();
        assert!(!ring_settled(&s, &id("a"), true, |_| true, &all));
        settle(&mut s);
        let all: HashMap<NodeId, u64> = ["b", "c", "d"]
            .iter()
            .map(|x| (id(x), s.ring_version))
            .collect();
        assert!(ring_settled(&s, &id("a"), true, |_| true, &all));
    }

    #[test]
    fn removed_members_are_not_shown_and_do_not_count() {
        let mut s = three();
        s.set_status(&id("c"), MemberStatus::Removed).unwrap();
        settle(&mut s);
        let views = member_views(&s, |x| x != &id("b"));
        let names: Vec<&str> = views.iter().map(|m| m.node_id.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(views[0].reachable && !views[1].reachable);
        let versions: HashMap<NodeId, u64> = [(id("b"), s.ring_version)].into_iter().collect();
        assert!(ring_settled(&s, &id("a"), true, |_| true, &versions));
    }

    #[test]
    fn transfers_show_while_a_plan_moves_partitions() {
        let mut s = three();
        assert_eq!(transfers_view(&s, 0, 2, 0, 0), None, "nothing moves");
        s.add_member(info("d")).unwrap();
        s.replace(&id("a"), &id("b"), &id("d")).unwrap();
        let plan = s.plan.clone().unwrap();
        let first = &plan.transfers[0];
        s.mark_transfer_done(
            &first.from,
            riftkv_core::membership::state::TransferDone {
                plan: plan.id,
                partition: first.partition,
                to: first.to.clone(),
            },
        );
        let t = transfers_view(&s, 4096, 3, 1 << 20, 3_000).unwrap();
        assert_eq!(t.partitions_done, 1);
        assert_eq!(t.partitions_total, plan.transfers.len());
        assert!(t.partitions_total > 1);
        assert_eq!(t.bytes_moved, 4096);
        assert_eq!((t.concurrency, t.max_bytes_per_sec), (3, 1 << 20));
        assert_eq!(t.replacing, Some((id("b"), id("d"))));
        // One transfer done in 3 s: the others take 3 s each.
        assert_eq!(
            t.eta_secs,
            Some(3 * (plan.transfers.len() as u64 - 1)),
            "{t:?}"
        );
        let j = serde_json::to_value(&t).unwrap();
        for f in ["partitions_done", "partitions_total", "bytes_moved"] {
            assert!(j.get(f).is_some(), "missing {f}");
        }
    }

    #[test]
    fn the_eta_follows_the_pace_so_far() {
        assert_eq!(eta_secs(10_000, 0, 8), None, "nothing done yet: unknown");
        assert_eq!(eta_secs(10_000, 2, 8), Some(30));
        assert_eq!(eta_secs(1_001, 1, 2), Some(2), "rounded up");
        assert_eq!(eta_secs(5_000, 8, 8), Some(0));
        assert_eq!(eta_secs(u64::MAX, 1, usize::MAX), Some(u64::MAX));
    }

    #[test]
    fn status_json_has_the_contract_fields() {
        let s = three();
        let v = StatusView {
            node_id: id("a"),
            cluster_name: s.cluster_name.clone(),
            ring_version: s.ring_version,
            ring_size: s.ring_size(),
            members: member_views(&s, |_| true),
            owned_partitions: s.ring.partitions_of(&id("a")).len(),
            hints_pending: 0,
            handoffs_pending: 0,
            ring_settled: true,
            workers: Vec::new(),
            transfers: None,
            clock_offset_ms: 0,
            catching_up: false,
            staged_plan: None,
        };
        let j = serde_json::to_value(&v).unwrap();
        for f in [
            "node_id",
            "cluster_name",
            "ring_version",
            "ring_size",
            "members",
            "owned_partitions",
            "hints_pending",
            "handoffs_pending",
            "ring_settled",
            "workers",
        ] {
            assert!(j.get(f).is_some(), "missing {f}");
        }
        assert_eq!(j["node_id"], "a");
        let m = &j["members"][1];
        assert_eq!(m["node_id"], "b");
        assert_eq!(m["status"], "valid");
        assert_eq!(m["reachable"], true);
        assert_eq!(m["zone"], serde_json::Value::Null);
        assert_eq!(m["peer_addr"], "b-peer");
    }

    #[test]
    fn ring_view_lists_every_partition() {
        let s = three();
        let r = ring_view_of(&s);
        assert_eq!(r.partitions.len(), 16);
        assert_eq!(r.n, 3);
        for p in &r.partitions {
            assert_eq!(p.preference_list.len(), 3);
            assert_eq!(&p.preference_list[0], &p.owner);
        }
        let j = serde_json::to_value(&r).unwrap();
        assert!(j["partitions"][0]["preference_list"].is_array());
    }

    #[test]
    fn leave_and_remove_rules() {
        let solo = RingState::found("c".into(), 8, 3, info("a"));
        assert_eq!(
            check_leave(&solo, &id("a")),
            Err(MembershipError::OnlyMember)
        );
        let mut s = three();
        assert_eq!(check_leave(&s, &id("b")), Ok(true));
        s.set_status(&id("b"), MemberStatus::Leaving).unwrap();
        assert_eq!(check_leave(&s, &id("b")), Ok(false));
        assert_eq!(
            check_remove(&s, &id("a"), &id("a")),
            Err(MembershipError::CannotRemoveSelf)
        );
        assert_eq!(
            check_remove(&s, &id("a"), &id("zz")),
            Err(MembershipError::UnknownMember(id("zz")))
        );
        assert_eq!(check_remove(&s, &id("a"), &id("c")), Ok(()));
        s.set_status(&id("c"), MemberStatus::Removed).unwrap();
        assert_eq!(
            check_remove(&s, &id("a"), &id("c")),
            Err(MembershipError::Removed(id("c")))
        );
    }

    #[test]
    fn removing_the_claimant_hands_the_duty_to_the_next_valid_node() {
        let mut s = three();
        assert_eq!(s.claimant(), Some(&id("a")));
        s.set_status(&id("a"), MemberStatus::Removed).unwrap();
        assert_eq!(s.claimant(), Some(&id("b")));
        assert!(s.claimant_step(&id("b")));
        settle(&mut s);
        assert!(s.ring.partitions_of(&id("a")).is_empty());
    }
}
