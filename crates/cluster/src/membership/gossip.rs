//! The membership duties of a node, run every `gossip_interval`: heartbeats to every member
//! (the failure detector learns who is up, and who is on which ring version), as a worker of
//! their own; and join through seeds, push-pull gossip with one random member, the claimant's
//! step, finishing a leave, and the membership metrics.
//!
//! Heartbeats are kept apart from everything that can wait: a gossip round waits on a peer
//! answering a large state and on persisting the merged state, and a heartbeat delayed behind
//! it makes this node look silent to its peers. Heartbeats travel on the transport's liveness
//! lane, and their handler touches no storage.

use crate::membership::rpc::{MembershipRequest, MembershipResponse};
use crate::node::Node;
use crate::rpc::RpcError;
use crate::worker::{Step, Worker};
use futures::StreamExt;
use rand::seq::SliceRandom;
use riftkv_core::membership::state::{MemberStatus, RingState};
use riftkv_core::types::NodeId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Heartbeats in flight at once.
const PING_CONCURRENCY: usize = 16;
/// Peers told directly that this node has left, before it exits.
const FAREWELL_PEERS: usize = 2;

/// Starts the membership duty; it stops on the node's shutdown or once the node has left.
pub fn spawn(node: Arc<Node>) -> JoinHandle<()> {
    let worker = GossipWorker {
        joiner: JoinBackoff::new(node.settings.gossip_interval),
        node: node.clone(),
    };
    crate::worker::spawn(&node.workers, &node.gossip_stop, worker).0
}

/// Starts the heartbeat duty; it stops on the node's shutdown, before a going-down notice,
/// or once the node has left.
pub fn spawn_heartbeats(node: Arc<Node>) -> JoinHandle<()> {
    let worker = HeartbeatWorker { node: node.clone() };
    crate::worker::spawn(&node.workers, &node.gossip_stop, worker).0
}

/// Heartbeats to every member, once per `gossip_interval`, whatever the gossip round does.
struct HeartbeatWorker {
    node: Arc<Node>,
}

impl Worker for HeartbeatWorker {
    fn name(&self) -> &'static str {
        "heartbeat"
    }
    fn period(&self) -> Duration {
        self.node.settings.gossip_interval
    }
    async fn step(&mut self) -> Result<Step, String> {
        if *self.node.left.borrow() {
            return Ok(Step::Done);
        }
        if !self.node.joined.load(Ordering::SeqCst) {
            return Ok(Step::Idle);
        }
        heartbeat_all(&self.node).await;
        Ok(Step::Busy)
    }
}

/// The membership duty as a worker: one [`tick`] per `gossip_interval`.
struct GossipWorker {
    node: Arc<Node>,
    joiner: JoinBackoff,
}

impl Worker for GossipWorker {
    fn name(&self) -> &'static str {
        "gossip"
    }
    fn period(&self) -> Duration {
        self.node.settings.gossip_interval
    }
    async fn step(&mut self) -> Result<Step, String> {
        if tick(&self.node, &mut self.joiner).await {
            Ok(Step::Done)
        } else {
            Ok(Step::Busy)
        }
    }
}

/// Retry pacing of joins: doubling pauses, capped.
#[derive(Debug, Clone)]
pub struct JoinBackoff {
    base: Duration,
    max: Duration,
    failures: u32,
    next_at: Option<Instant>,
}

impl JoinBackoff {
    pub fn new(base: Duration) -> Self {
        let base = base.max(Duration::from_millis(10));
        JoinBackoff {
            base,
            max: (base * 64).min(Duration::from_secs(30)).max(base),
            failures: 0,
            next_at: None,
        }
    }

    pub fn may_try(&self, now: Instant) -> bool {
        self.next_at.is_none_or(|t| now >= t)
    }

    /// Records a failed round and returns the pause before the next one.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let shift = (self.failures - 1).min(16);
        let d = self
            .base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max);
        self.next_at = Some(now + d);
        d
    }
}

/// One round of the duty. Returns true once the node has left and the duty should end.
pub async fn tick(node: &Arc<Node>, joiner: &mut JoinBackoff) -> bool {
    if *node.left.borrow() {
        return true;
    }
    if !node.joined.load(Ordering::SeqCst) {
        if joiner.may_try(Instant::now()) {
            try_join(node, joiner).await;
        }
        return false;
    }
    let gossiped = gossip_once(node).await;
    if !gossiped && !any_peer_reachable(node) {
        gossip_with_seed(node).await;
    }
    let me = node.id.clone();
    // Not awaited: the next round gossips the step anyway, and a crash before the write only
    // makes the claimant step again.
    let stepped = node.update_state_soon(|s| {
        let stepped = s.claimant_step_in(&me, node.settings.change_mode);
        if stepped {
            tracing::info!(ring_version = s.ring_version, plan = ?s.plan.as_ref().map(|p| p.id),
                staged = s.plan.as_ref().is_some_and(|p| p.staged), "claimant advanced the ring");
        }
        let pruned = s.prune_transfers_done(&me);
        (stepped || pruned, stepped)
    });
    // A new ring reaches every member at once, not one random member per round: until a
    // member has it, it routes by the old ring (and refuses quorums the new one can meet).
    if stepped {
        gossip_to_all(node).await;
    }
    update_metrics(node);
    if finish_leave_if_done(node).await {
        return true;
    }
    check_removed(node)
}

/// Asks the seeds, in turn, to let this node join; adopts the first answer's state.
async fn try_join(node: &Arc<Node>, joiner: &mut JoinBackoff) {
    let member = node.settings.member_info();
    let mut refusals: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for seed in &node.settings.seeds {
        if seed == &node.settings.peer_addr {
            continue;
        }
        let req = MembershipRequest::Join {
            member: member.clone(),
            cluster_name: node.settings.cluster_name.clone(),
        };
        match node
            .call_addr(seed, None, req, node.settings.rpc_timeout)
            .await
        {
            Ok(MembershipResponse::Joined { state }) => {
                if state.cluster_name != node.settings.cluster_name {
                    refusals.push(format!(
                        "{seed} belongs to cluster '{}', not '{}'",
                        state.cluster_name, node.settings.cluster_name
                    ));
                    continue;
                }
                match adopt(node, *state).await {
                    Ok(()) => {
                        tracing::info!(seed = %seed, "joined the cluster");
                        return;
                    }
                    Err(e) => errors.push(format!("{seed}: {e}")),
                }
            }
            Ok(MembershipResponse::Refused { reason }) => {
                refusals.push(format!("{seed}: {reason}"));
            }
            Ok(_) => errors.push(format!("{seed}: unexpected answer to a join")),
            Err(RpcError::Net(riftkv_core::net::NetError::Refused(reason))) => {
                refusals.push(format!("{seed}: {reason}"));
            }
            Err(e) => errors.push(format!("{seed}: {e}")),
        }
    }
    let pause = joiner.failed(Instant::now());
    if !refusals.is_empty() {
        tracing::error!(
            "cannot join the cluster: refused by {}; retrying in {:?}",
            refusals.join("; "),
            pause
        );
    } else {
        tracing::warn!(
            "cannot join the cluster: no seed answered ({}); retrying in {:?}",
            errors.join("; "),
            pause
        );
    }
}

/// A joiner takes the cluster's state wholesale (its own founding ring was a placeholder), with
/// its own entry refreshed, and persists it before it counts as joined.
async fn adopt(node: &Arc<Node>, state: RingState) -> Result<(), crate::node::NodeError> {
    let me = node.settings.member_info();
    node.update_state(|s| {
        *s = state;
        if let Err(e) = s.add_member(me) {
            tracing::warn!(error = %e, "seed answered a state without this node");
        }
        (true, ())
    })
    .await?;
    node.peer_ring_versions.lock().clear();
    node.joined.store(true, Ordering::SeqCst);
    Ok(())
}

/// Other members a node talks to: everyone visible but itself.
fn peers(node: &Node) -> Vec<NodeId> {
    node.state
        .read()
        .visible_members()
        .filter(|m| m.node_id != node.id)
        .map(|m| m.node_id.clone())
        .collect()
}

fn any_peer_reachable(node: &Node) -> bool {
    peers(node).iter().any(|p| node.is_reachable(p))
}

fn ping_timeout(node: &Node) -> Duration {
    (node.settings.gossip_interval * 2)
        .max(Duration::from_millis(100))
        .min(node.settings.rpc_timeout.max(Duration::from_millis(100)))
}

/// Pings every member; answers feed the failure detector and the peers' ring versions. A
/// member that has not answered this run yet gets a hello instead, which ends the quarantine
/// it may hold this node in after a going-down notice of its previous run.
async fn heartbeat_all(node: &Arc<Node>) {
    let version = node.state.read().ring_version;
    let timeout = ping_timeout(node);
    futures::stream::iter(peers(node))
        .for_each_concurrent(PING_CONCURRENCY, |peer| async move {
            let sent = node.clock.now_ms();
            let greeted = node.greeted.lock().contains(&peer);
            let req = if greeted {
                MembershipRequest::Ping {
                    ring_version: version,
                    now_ms: sent,
                }
            } else {
                MembershipRequest::Hello {
                    run: node.run_id,
                    ring_version: version,
                    now_ms: sent,
                }
            };
            let answer = node.call(&peer, req, timeout).await;
            // A member too old to know hello cannot hold a quarantine either.
            if matches!(answer, Ok(_) | Err(RpcError::Remote(_))) {
                node.greeted.lock().insert(peer.clone());
            }
            if let Ok(MembershipResponse::Pong {
                ring_version,
                now_ms,
            }) = answer
            {
                let received = node.clock.now_ms();
                node.peer_clocks.observe(
                    &peer,
                    crate::node::cluster_time::OffsetBounds::round_trip(now_ms, sent, received),
                );
                node.peer_ring_versions.lock().insert(peer, ring_version);
            }
        })
        .await;
}

/// The peers of `pool` to gossip with next: those whose last ping said they hold a newer ring
/// than `mine` (pulling it from them ends the time this node routes by an old ring), else all.
fn gossip_partners(pool: &[NodeId], versions: &HashMap<NodeId, u64>, mine: u64) -> Vec<NodeId> {
    let ahead: Vec<NodeId> = pool
        .iter()
        .filter(|p| versions.get(*p).is_some_and(|v| *v > mine))
        .cloned()
        .collect();
    if ahead.is_empty() {
        pool.to_vec()
    } else {
        ahead
    }
}

/// Push-pull with one random member, reachable ones first, and among them one known to hold
/// a newer ring. Returns true when it answered.
async fn gossip_once(node: &Arc<Node>) -> bool {
    let all = peers(node);
    let reachable: Vec<NodeId> = all
        .iter()
        .filter(|p| node.is_reachable(p))
        .cloned()
        .collect();
    let pool = if reachable.is_empty() {
        &all
    } else {
        &reachable
    };
    let mine = node.state.read().ring_version;
    let candidates = gossip_partners(pool, &node.peer_ring_versions.lock(), mine);
    let Some(peer) = candidates.choose(&mut rand::thread_rng()).cloned() else {
        return false;
    };
    let state = node.state.read().clone();
    push_pull(node, &peer, state).await
}

/// Sends `state` to `peer` and merges its answer. Returns true when it answered.
async fn push_pull(node: &Arc<Node>, peer: &NodeId, state: RingState) -> bool {
    let req = MembershipRequest::Gossip {
        state: Box::new(state),
    };
    match node.call(peer, req, node.settings.rpc_timeout).await {
        Ok(resp) => merge_answer(node, Some(peer), resp),
        Err(e) => {
            tracing::debug!(peer = %peer, error = %e, "gossip failed");
            false
        }
    }
}

/// Push-pull with every member at once (after this node advanced the ring).
async fn gossip_to_all(node: &Arc<Node>) {
    let state = node.state.read().clone();
    futures::stream::iter(peers(node))
        .for_each_concurrent(PING_CONCURRENCY, |peer| {
            let state = state.clone();
            async move {
                push_pull(node, &peer, state).await;
            }
        })
        .await;
}

/// With no member reachable, a seed may know where the members went (all changed address).
async fn gossip_with_seed(node: &Arc<Node>) {
    let Some(seed) = node
        .settings
        .seeds
        .iter()
        .filter(|s| *s != &node.settings.peer_addr)
        .collect::<Vec<_>>()
        .choose(&mut rand::thread_rng())
        .map(|s| s.to_string())
    else {
        return;
    };
    let state = Box::new(node.state.read().clone());
    let req = MembershipRequest::Gossip { state };
    if let Ok(resp) = node
        .call_addr(&seed, None, req, node.settings.rpc_timeout)
        .await
    {
        merge_answer(node, None, resp);
    }
}

fn merge_answer(node: &Arc<Node>, peer: Option<&NodeId>, resp: MembershipResponse) -> bool {
    match resp {
        MembershipResponse::Gossip { state } => {
            if state.cluster_name != node.settings.cluster_name {
                tracing::warn!(cluster = %state.cluster_name, "gossip answer from another cluster ignored");
                return false;
            }
            if let Some(peer) = peer {
                node.peer_ring_versions
                    .lock()
                    .insert(peer.clone(), state.ring_version);
            }
            // Not awaited: what a peer told us, it tells again if a crash loses it.
            node.update_state_soon(|s| (s.merge(&state), ()));
            true
        }
        MembershipResponse::Refused { reason } => {
            tracing::debug!(peer = ?peer, reason = %reason, "gossip refused");
            false
        }
        _ => false,
    }
}

/// Member counts by status, peer reachability, partitions owned, corrupt records seen.
fn update_metrics(node: &Node) {
    // The storage counts damaged records itself; the counter follows it (never backwards).
    let corrupt = node.storage.corrupt_records();
    let counted = node.metrics.storage_corrupt_records_total.get();
    if corrupt > counted {
        node.metrics
            .storage_corrupt_records_total
            .inc_by(corrupt - counted);
    }
    let state = node.state.read();
    let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
    for m in state.visible_members() {
        *counts.entry(m.status.as_str()).or_default() += 1;
    }
    let counts: Vec<(&str, i64)> = counts.into_iter().collect();
    node.metrics.set_members(&counts);
    for m in state.members.values() {
        if m.node_id == node.id {
            continue;
        }
        if m.status == MemberStatus::Removed {
            node.metrics.forget_peer(m.node_id.as_str());
        } else {
            node.metrics
                .set_peer_up(m.node_id.as_str(), node.is_reachable(&m.node_id));
        }
    }
    node.metrics
        .partitions_owned
        .set(state.ring.partitions_of(&node.id).len() as i64);
}

/// Whether a leaving node has nothing left to do: the committed ring gives it no partition, no
/// plan is pending, it holds no partition data and no hint for a live member.
pub fn leave_complete(state: &RingState, me: &NodeId, holds_data: bool, live_hints: u64) -> bool {
    state
        .member(me)
        .is_some_and(|m| m.status == MemberStatus::Leaving)
        && state.plan.is_none()
        && state.ring.partitions_of(me).is_empty()
        && !holds_data
        && live_hints == 0
}

/// Finishes a leave once its handoffs are done: marks this node removed, tells a couple of
/// peers, and signals the process to exit. Returns true when it left.
async fn finish_leave_if_done(node: &Arc<Node>) -> bool {
    let leaving = node
        .state
        .read()
        .member(&node.id)
        .is_some_and(|m| m.status == MemberStatus::Leaving);
    if !leaving {
        return false;
    }
    let storage = node.storage.clone();
    let ring_size = node.state.read().ring_size();
    let local = tokio::task::spawn_blocking(move || -> Result<(bool, Vec<_>), String> {
        let mut holds = false;
        for p in 0..ring_size {
            if !storage
                .scan_partition(p, None, 1)
                .map_err(|e| e.to_string())?
                .is_empty()
            {
                holds = true;
                break;
            }
        }
        let hints = storage.hint_counts().map_err(|e| e.to_string())?;
        Ok((holds, hints))
    })
    .await;
    let (holds, hints) = match local {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot check what is left to hand off");
            return false;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check what is left to hand off");
            return false;
        }
    };
    let me = node.id.clone();
    let finished = {
        let s = node.state.read();
        let live_hints: u64 = hints
            .iter()
            .filter(|(t, _)| {
                s.member(t)
                    .is_some_and(|m| m.status != MemberStatus::Removed)
            })
            .map(|(_, n)| *n)
            .sum();
        leave_complete(&s, &me, holds, live_hints)
    };
    if !finished {
        return false;
    }
    // Durable before the farewell: the others drop this member on the strength of it.
    let removed = node.update_state(|s| (s.set_status(&me, MemberStatus::Removed).is_ok(), ()));
    if let Err(e) = removed.await {
        tracing::warn!(error = %e, "cannot persist the ring state");
        return false;
    }
    let mut targets = peers(node);
    targets.shuffle(&mut rand::thread_rng());
    let mut told = 0;
    for peer in targets {
        if told >= FAREWELL_PEERS {
            break;
        }
        let state = Box::new(node.state.read().clone());
        let req = MembershipRequest::Gossip { state };
        if node
            .call(&peer, req, node.settings.rpc_timeout)
            .await
            .is_ok()
        {
            told += 1;
        }
    }
    tracing::info!(told, "left the cluster: every partition handed off");
    node.left.send_replace(true);
    true
}

/// An operator removed this node: it must stop serving. Returns true when so.
fn check_removed(node: &Node) -> bool {
    let removed = node
        .state
        .read()
        .member(&node.id)
        .is_some_and(|m| m.status == MemberStatus::Removed);
    if removed && !*node.left.borrow() {
        tracing::error!(
            "this node was removed from the cluster; stopping (start it with a new node id and data dir to rejoin)"
        );
        node.left.send_replace(true);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::membership::state::TransferDone;
    use riftkv_core::membership::state::fixtures::{info, settle};

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    /// A node whose peers' pings say they hold a newer ring gossips with one of them next,
    /// rather than with a random peer that may be as far behind as itself: a node left on the
    /// ring where the others were still joining routes by it (and refuses quorums) until then.
    #[test]
    fn gossip_prefers_a_peer_with_a_newer_ring() {
        let pool = vec![id("b"), id("c"), id("d")];
        let versions: HashMap<NodeId, u64> = [(id("b"), 2), (id("c"), 3), (id("d"), 2)]
            .into_iter()
            .collect();
        for _ in 0..50 {
            assert_eq!(
                gossip_partners(&pool, &versions, 2),
                vec![id("c")],
                "only c is ahead"
            );
        }
        // Nobody ahead: every peer is a candidate.
        assert_eq!(gossip_partners(&pool, &versions, 3), pool);
        assert_eq!(gossip_partners(&pool, &HashMap::new(), 1), pool);
    }

    #[test]
    fn join_backoff_doubles_and_caps() {
        let mut b = JoinBackoff::new(Duration::from_millis(100));
        let now = Instant::now();
        assert!(b.may_try(now));
        assert_eq!(b.failed(now), Duration::from_millis(100));
        assert!(!b.may_try(now));
        assert_eq!(b.failed(now), Duration::from_millis(200));
        for _ in 0..20 {
            b.failed(now);
        }
        assert_eq!(b.failed(now), Duration::from_millis(6400));
        assert!(b.may_try(now + Duration::from_secs(7)));
    }

    #[test]
    fn leave_completes_only_when_nothing_is_left() {
        let mut s = RingState::found("c".into(), 16, 3, info("a"));
        for i in ["b", "c", "d"] {
            s.add_member(info(i)).unwrap();
        }
        settle(&mut s);
        assert!(s.locally_settled());
        assert!(!leave_complete(&s, &id("b"), false, 0), "not leaving");
        s.set_status(&id("b"), MemberStatus::Leaving).unwrap();
        assert!(
            !leave_complete(&s, &id("b"), false, 0),
            "still owns partitions"
        );
        s.claimant_step(&id("a"));
        assert!(s.plan.is_some());
        assert!(!leave_complete(&s, &id("b"), false, 0), "plan pending");
        let plan = s.plan.clone().unwrap();
        for t in &plan.transfers {
            s.mark_transfer_done(
                &t.from,
                TransferDone {
                    plan: plan.id,
                    partition: t.partition,
                    to: t.to.clone(),
                },
            );
        }
        s.claimant_step(&id("a"));
        assert!(s.plan.is_none());
        assert!(!leave_complete(&s, &id("b"), true, 0), "data not drained");
        assert!(
            !leave_complete(&s, &id("b"), false, 3),
            "hints not delivered"
        );
        assert!(leave_complete(&s, &id("b"), false, 0));
    }
}
