//! Announcing a shutdown: a node stopping on SIGTERM tells every member it can reach, so
//! coordinators route around it at once (fallbacks take its place under sloppy quorum)
//! instead of failing requests until their failure detectors notice the silence.
//!
//! The dying node stops its gossip before it announces, but it keeps answering peer calls and
//! finishing its in-flight requests while it drains, and any answer normally counts as a
//! heartbeat. So a receiver ignores the member's heartbeats for [`QUARANTINE`] after the
//! notice; the member's next process ends the quarantine at once with a
//! [`MembershipRequest::Hello`] carrying a new run id (its first heartbeat to every member
//! after it starts). A hello of the announcing run itself never revives it.

// The receiving side's decision lives with the handler in `rpc`, which this module builds on.
use crate::membership::rpc::{MembershipRequest, MembershipResponse};
pub use crate::membership::rpc::{QUARANTINE, Verdict, judge};
use crate::node::Node;
use riftkv_core::types::NodeId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Total time a shutdown may spend announcing itself.
pub const ANNOUNCE_BUDGET: Duration = Duration::from_secs(1);

/// Stops this node's gossip and tells every other member, in parallel and within `budget`,
/// that it is going down. Returns (members that acknowledged, members told).
pub async fn announce(node: &Arc<Node>, budget: Duration) -> (usize, usize) {
    // No ping or hello of ours may follow the notice.
    node.gossip_stop.cancel();
    let peers: Vec<NodeId> = node
        .state
        .read()
        .visible_members()
        .filter(|m| m.node_id != node.id)
        .map(|m| m.node_id.clone())
        .collect();
    let total = peers.len();
    let acked = Arc::new(AtomicUsize::new(0));
    let run = node.run_id;
    let calls = peers.into_iter().map(|peer| {
        let (node, acked) = (node.clone(), acked.clone());
        async move {
            match node
                .call(&peer, MembershipRequest::GoingDown { run }, budget)
                .await
            {
                Ok(MembershipResponse::Noted) => {
                    acked.fetch_add(1, Ordering::SeqCst);
                    node.metrics.going_down_sent_total.inc();
                }
                Ok(other) => {
                    tracing::warn!(peer = %peer, answer = ?other, "going-down notice not taken")
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "cannot announce going down")
                }
            }
        }
    });
    let _ = tokio::time::timeout(budget, futures::future::join_all(calls)).await;
    let acked = acked.load(Ordering::SeqCst);
    tracing::info!(
        acked,
        total,
        "announced going down to {acked} of {total} members"
    );
    (acked, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_member_is_marked_down() {
        let me = NodeId::from("n1");
        let other = NodeId::from("n2");
        assert_eq!(judge(&me, &other, true), Verdict::MarkDown);
        assert!(
            matches!(judge(&me, &other, false), Verdict::Refuse(r) if r.contains("not a member"))
        );
        assert!(matches!(judge(&me, &me, true), Verdict::Refuse(r) if r.contains("itself")));
    }
}
