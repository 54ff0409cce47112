//! Membership messages between nodes: liveness probes, push-pull gossip of the ring state, and
//! joins.

use crate::node::Node;
use crate::rpc::{Endpoint, Message};
use riftkv_core::membership::state::{MemberInfo, RingState};
use riftkv_core::net::PeerInfo;
use riftkv_core::types::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MembershipRequest {
    /// Liveness probe carrying the sender's ring version and wall clock (cluster time).
    Ping { ring_version: u64, now_ms: u64 },
    /// Push-pull gossip: the receiver merges and answers with its merged state.
    Gossip { state: Box<RingState> },
    /// A new node asks to join; the receiver adds it as joining and answers with its state.
    /// The cluster name is repeated here so a transport without a handshake still refuses
    /// a node of another cluster.
    Join {
        member: MemberInfo,
        cluster_name: String,
    },
    /// The sender (in its process run `run`) is shutting down: route around it now. It still
    /// answers calls while it drains, so the receiver ignores its heartbeats for a quarantine
    /// that only a [`MembershipRequest::Hello`] from another run ends early.
    GoingDown { run: u64 },
    /// A Ping that also says which process run sent it; sent to each member until it has
    /// answered once after this process started, so a member that holds this node in
    /// going-down quarantine learns at once that it was restarted.
    Hello {
        run: u64,
        ring_version: u64,
        now_ms: u64,
    },
    /// How many hints does the receiver hold for the sender? Sent by a restarted node while
    /// it catches up (`catching_up`: the receiver asks it last for reads and delivers its
    /// hints at once), and once more with `false` when it is done. An older member cannot
    /// decode it and fails the call, which the sender takes as "cannot tell".
    HintsHeld { catching_up: bool },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MembershipResponse {
    Pong {
        ring_version: u64,
        now_ms: u64,
    },
    Gossip {
        state: Box<RingState>,
    },
    Joined {
        state: Box<RingState>,
    },
    Refused {
        reason: String,
    },
    /// A going-down notice was acted on.
    Noted,
    /// Hints the receiver holds for the asker.
    HintsHeld {
        count: u64,
    },
}

impl Message for MembershipRequest {
    const ENDPOINT: Endpoint = Endpoint::Membership;
    type Reply = MembershipResponse;

    fn label(&self) -> &'static str {
        match self {
            MembershipRequest::Ping { .. } => "ping",
            MembershipRequest::Gossip { .. } => "gossip",
            MembershipRequest::Join { .. } => "join",
            MembershipRequest::GoingDown { .. } => "going_down",
            MembershipRequest::Hello { .. } => "hello",
            MembershipRequest::HintsHeld { .. } => "hints_held",
        }
    }

    /// Heartbeats and going-down notices never wait behind data traffic; their handlers
    /// touch no storage either.
    fn lane(&self) -> riftkv_core::net::Lane {
        match self {
            MembershipRequest::Ping { .. }
            | MembershipRequest::Hello { .. }
            | MembershipRequest::GoingDown { .. } => riftkv_core::net::Lane::Liveness,
            _ => riftkv_core::net::Lane::Data,
        }
    }
}

/// Answers a liveness probe; records the sender's ring version and clock.
fn pong(node: &Arc<Node>, from: &PeerInfo, ring_version: u64, now_ms: u64) -> MembershipResponse {
    node.peer_ring_versions
        .lock()
        .insert(from.node_id.clone(), ring_version);
    let here = node.clock.now_ms();
    // One way: a lower bound only (the ping's transit time is unknown).
    node.peer_clocks.observe(
        &from.node_id,
        crate::node::cluster_time::OffsetBounds::one_way(now_ms, here),
    );
    MembershipResponse::Pong {
        ring_version: node.state.read().ring_version,
        now_ms: here,
    }
}

fn refused(reason: impl Into<String>) -> MembershipResponse {
    MembershipResponse::Refused {
        reason: reason.into(),
    }
}

/// How long heartbeats of a member that announced going down are ignored, unless its next run
/// says hello first. Longer than the slowest shutdown (10 s drain, 5 s for duties, 5 s for the
/// transport), so the draining process never looks up again. A member restarted by a version
/// that does not say hello is routed around for this long: fallbacks serve, nothing fails.
pub const QUARANTINE: Duration = Duration::from_secs(30);

/// What a node does with a going-down notice from `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Mark the sender down in the failure detector, with a quarantine.
    MarkDown,
    /// Ignore the notice and say why.
    Refuse(String),
}

/// Decides on a going-down notice: only another member of the ring may be marked down (the
/// transport has already authenticated `from` as a node of this cluster).
pub fn judge(me: &NodeId, from: &NodeId, known_member: bool) -> Verdict {
    if from == me {
        return Verdict::Refuse(format!("node {me} cannot mark itself down"));
    }
    if !known_member {
        return Verdict::Refuse(format!("node {from} is not a member of this ring"));
    }
    Verdict::MarkDown
}

pub async fn handle(
    node: &Arc<Node>,
    from: &PeerInfo,
    req: MembershipRequest,
) -> MembershipResponse {
    let joined = node.joined.load(Ordering::SeqCst);
    match req {
        MembershipRequest::Ping {
            ring_version,
            now_ms,
        } => pong(node, from, ring_version, now_ms),
        MembershipRequest::Hello {
            run,
            ring_version,
            now_ms,
        } => {
            let here = node.clock.now_ms();
            let revived = {
                let mut d = node.detector.lock();
                let quarantined = d.in_quarantine(&from.node_id, here);
                d.hello(&from.node_id, run, here) && quarantined
            };
            if revived {
                tracing::info!(peer = %from.node_id, "member is back after going down");
                node.metrics.set_peer_up(from.node_id.as_str(), true);
            }
            pong(node, from, ring_version, now_ms)
        }
        MembershipRequest::GoingDown { run } => {
            node.metrics.going_down_received_total.inc();
            let known = node.state.read().member(&from.node_id).is_some();
            match judge(&node.id, &from.node_id, known) {
                Verdict::MarkDown => {
                    let quarantine = QUARANTINE.as_millis() as u64;
                    node.detector.lock().mark_down(
                        &from.node_id,
                        run,
                        node.clock.now_ms(),
                        quarantine,
                    );
                    node.metrics.set_peer_up(from.node_id.as_str(), false);
                    tracing::info!(peer = %from.node_id, "member announced it is going down");
                    MembershipResponse::Noted
                }
                Verdict::Refuse(reason) => refused(reason),
            }
        }
        MembershipRequest::HintsHeld { catching_up } => {
            hints_held(node, &from.node_id, catching_up).await
        }
        MembershipRequest::Gossip { state } => {
            // Before joining, our state is a placeholder that must not mix with the cluster's.
            if !joined {
                return refused(format!("node {} has not joined a cluster yet", node.id));
            }
            if state.cluster_name != node.settings.cluster_name {
                return refused(format!(
                    "cluster '{}' is not '{}'",
                    state.cluster_name, node.settings.cluster_name
                ));
            }
            node.peer_ring_versions
                .lock()
                .insert(from.node_id.clone(), state.ring_version);
            // The answer is what the peer relies on: durable first (one write for a burst).
            let merged = node
                .update_state(|s| {
                    let changed = s.merge(&state);
                    (changed, s.clone())
                })
                .await;
            match merged {
                Ok(s) => MembershipResponse::Gossip { state: Box::new(s) },
                Err(e) => refused(e.to_string()),
            }
        }
        MembershipRequest::Join {
            member,
            cluster_name,
        } => {
            if !joined {
                return refused(format!(
                    "node {} has not joined a cluster yet; use a member as seed",
                    node.id
                ));
            }
            if cluster_name != node.settings.cluster_name {
                return refused(format!(
                    "this node belongs to cluster '{}', not '{}'",
                    node.settings.cluster_name, cluster_name
                ));
            }
            if let Some(reason) = join_conflict(node, &member) {
                return refused(reason);
            }
            tracing::info!(node = %member.node_id, addr = %member.peer_addr, "member joining");
            let result = node
                .update_state(|s| {
                    let before = s.members.get(&member.node_id).cloned();
                    match s.add_member(member.clone()) {
                        Ok(()) => {
                            let changed = s.members.get(&member.node_id) != before.as_ref();
                            (changed, Ok(s.clone()))
                        }
                        Err(e) => (false, Err(e)),
                    }
                })
                .await;
            match result {
                Ok(Ok(s)) => MembershipResponse::Joined { state: Box::new(s) },
                Ok(Err(e)) => refused(e.to_string()),
                Err(e) => refused(e.to_string()),
            }
        }
    }
}

/// Answers a catching-up member: the hints held for it, and its delivery starts at once rather
/// than at the next handoff tick. Counting reads storage (the first time a scan), so this
/// travels on the data lane and counts on the blocking pool.
async fn hints_held(node: &Arc<Node>, from: &NodeId, catching_up: bool) -> MembershipResponse {
    node.catch_up
        .note_peer(from, catching_up, node.clock.now_ms());
    let n = node.clone();
    let counts = tokio::task::spawn_blocking(move || n.storage.hint_counts()).await;
    let count = match counts {
        Ok(Ok(counts)) => counts
            .iter()
            .find(|(t, _)| t == from)
            .map_or(0, |(_, c)| *c),
        Ok(Err(e)) => return refused(format!("cannot count hints: {e}")),
        Err(e) => return refused(format!("cannot count hints: {e}")),
    };
    if catching_up && count > 0 && node.settings.hinted_handoff {
        node.workers.wake(crate::handoff::hints::WORKER_NAME);
    }
    MembershipResponse::HintsHeld { count }
}

/// A join under the id of a member that is alive elsewhere would steal its identity.
fn join_conflict(node: &Arc<Node>, member: &MemberInfo) -> Option<String> {
    if member.node_id == node.id {
        return Some(format!("node id {} is this node's own id", node.id));
    }
    let existing = node.state.read().member(&member.node_id).cloned()?;
    if existing.peer_addr != member.peer_addr && node.is_reachable(&member.node_id) {
        return Some(format!(
            "node id {} is in use by a reachable member at {}",
            member.node_id, existing.peer_addr
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New variants go at the end: the variants older nodes know keep their wire tags.
    #[test]
    fn variant_tags_are_stable() {
        let tag = |m: &MembershipRequest| postcard::to_stdvec(m).unwrap()[0];
        let ping = MembershipRequest::Ping {
            ring_version: 1,
            now_ms: 2,
        };
        assert_eq!(tag(&ping), 0);
        assert_eq!(tag(&MembershipRequest::GoingDown { run: 7 }), 3);
        let hello = MembershipRequest::Hello {
            run: 7,
            ring_version: 1,
            now_ms: 2,
        };
        assert_eq!(tag(&hello), 4);
        assert_eq!(tag(&MembershipRequest::HintsHeld { catching_up: true }), 5);
        let rtag = |m: &MembershipResponse| postcard::to_stdvec(m).unwrap()[0];
        let refused = MembershipResponse::Refused { reason: "x".into() };
        assert_eq!(rtag(&refused), 3);
        assert_eq!(rtag(&MembershipResponse::Noted), 4);
        assert_eq!(rtag(&MembershipResponse::HintsHeld { count: 1 }), 5);
        let bytes = postcard::to_stdvec(&MembershipRequest::GoingDown { run: 9 }).unwrap();
        assert!(matches!(
            postcard::from_bytes::<MembershipRequest>(&bytes),
            Ok(MembershipRequest::GoingDown { run: 9 })
        ));
    }

    /// Liveness traffic never shares a connection with data: pings, hellos and going-down
    /// notices on the liveness lane, the ring state's gossip and joins on the data lane.
    #[test]
    fn liveness_messages_take_the_liveness_lane() {
        use riftkv_core::net::Lane;
        let liveness = [
            MembershipRequest::Ping {
                ring_version: 1,
                now_ms: 2,
            },
            MembershipRequest::Hello {
                run: 7,
                ring_version: 1,
                now_ms: 2,
            },
            MembershipRequest::GoingDown { run: 7 },
        ];
        for m in &liveness {
            assert_eq!(m.lane(), Lane::Liveness, "{}", m.label());
        }
        let state = RingState::found(
            "c".into(),
            8,
            3,
            MemberInfo::new("a".into(), "x".into(), "y".into(), None),
        );
        let gossip = MembershipRequest::Gossip {
            state: Box::new(state),
        };
        assert_eq!(gossip.lane(), Lane::Data);
    }
}
