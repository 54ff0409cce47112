//! The catching-up duty of a restarted node: every gossip interval it asks each other member
//! how many hints it holds for it, until none does or the catch-up timeout passes (see
//! `node::catch_up` for why and for the decision).

use super::rpc::{MembershipRequest, MembershipResponse};
use crate::node::Node;
use crate::node::catch_up::{PeerAnswer, Verdict, judge};
use crate::worker::{Step, Worker};
use riftkv_core::types::NodeId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Starts the duty when the node is catching up; it ends once caught up.
pub fn spawn(node: Arc<Node>) -> Option<JoinHandle<()>> {
    if !node.catch_up.is_catching_up() {
        return None;
    }
    tracing::info!("restarted: catching up on the hints peers hold for this node");
    let worker = CatchUpWorker {
        node: node.clone(),
        started: Instant::now(),
    };
    Some(crate::worker::spawn(&node.workers, &node.shutdown, worker).0)
}

struct CatchUpWorker {
    node: Arc<Node>,
    started: Instant,
}

impl Worker for CatchUpWorker {
    fn name(&self) -> &'static str {
        "catch_up"
    }
    fn period(&self) -> Duration {
        self.node.settings.gossip_interval
    }
    async fn step(&mut self) -> Result<Step, String> {
        let answers = ask_peers(&self.node, true).await;
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let timeout =
            u64::try_from(self.node.settings.catch_up_timeout.as_millis()).unwrap_or(u64::MAX);
        match judge(&answers, elapsed, timeout) {
            Verdict::CatchingUp { pending } => {
                self.node.catch_up.still_pending(pending);
                Ok(Step::Busy)
            }
            Verdict::CaughtUp => {
                tracing::info!(
                    after_ms = elapsed,
                    "caught up: no peer holds hints for this node"
                );
                self.finish().await;
                Ok(Step::Done)
            }
            Verdict::GaveUp { pending } => {
                let holding: Vec<String> =
                    pending.iter().map(|(p, n)| format!("{p} ({n})")).collect();
                tracing::warn!(
                    after_ms = elapsed,
                    peers = %holding.join(", "),
                    "catch-up timeout: taking traffic while peers still hold hints for this node"
                );
                self.finish().await;
                Ok(Step::Done)
            }
        }
    }
}

impl CatchUpWorker {
    /// Ready from now on; the peers learn it at once (best effort: otherwise their note of
    /// this node catching up expires).
    async fn finish(&self) {
        self.node.metrics.catching_up.set(0);
        self.node.catch_up.finish();
        let _ = ask_peers(&self.node, false).await;
    }
}

/// Asks every other active member at once; a member that cannot tell answers `Unknown`.
async fn ask_peers(node: &Arc<Node>, catching_up: bool) -> BTreeMap<NodeId, PeerAnswer> {
    let peers: Vec<NodeId> = node
        .state
        .read()
        .active_members()
        .map(|m| m.node_id.clone())
        .filter(|id| id != &node.id)
        .collect();
    let asks = peers.into_iter().map(|peer| async move {
        let req = MembershipRequest::HintsHeld { catching_up };
        let answer = match node.call(&peer, req, node.settings.rpc_timeout).await {
            Ok(MembershipResponse::HintsHeld { count }) => PeerAnswer::Holds(count),
            _ => PeerAnswer::Unknown,
        };
        (peer, answer)
    });
    futures::future::join_all(asks).await.into_iter().collect()
}
