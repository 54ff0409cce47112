//! The inter-node message envelope. Each layer owns its message enum; this file only wraps
//! them, dispatches incoming requests to their layer, and instruments outgoing calls.

use super::Node;
use crate::net::{Handler, NetError, PeerInfo};
use crate::types::NodeId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Membership(crate::membership::rpc::MembershipRequest),
    Kv(crate::coordinator::rpc::KvRequest),
    Handoff(crate::handoff::rpc::HandoffRequest),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Membership(crate::membership::rpc::MembershipResponse),
    Kv(crate::coordinator::rpc::KvResponse),
    Handoff(crate::handoff::rpc::HandoffResponse),
    /// The request could not be decoded or handled; the text says why.
    Error(String),
}

impl Request {
    /// Short, bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Request::Membership(m) => m.label(),
            Request::Kv(k) => k.label(),
            Request::Handoff(h) => h.label(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    #[error("peer answered with an error: {0}")]
    Remote(String),
    #[error("malformed message: {0}")]
    Codec(String),
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
}

impl RpcError {
    /// True when the request certainly did not take effect on the peer.
    pub fn never_delivered(&self) -> bool {
        match self {
            RpcError::Net(e) => e.never_delivered(),
            RpcError::UnknownPeer(_) => true,
            _ => false,
        }
    }
}

impl Node {
    /// Sends one request to a member by node id, with metrics and failure-detector bookkeeping.
    pub async fn call(
        self: &Arc<Self>,
        to: &NodeId,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let addr = {
            let s = self.state.read();
            s.peer_addr_of(to).map(str::to_string)
        }
        .ok_or_else(|| RpcError::UnknownPeer(to.clone()))?;
        self.call_addr(&addr, Some(to), req, timeout).await
    }

    /// Sends one request to a peer address (used before the peer's id is known, e.g. seeds).
    pub async fn call_addr(
        self: &Arc<Self>,
        addr: &str,
        to: Option<&NodeId>,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let label = req.label();
        let payload = postcard::to_stdvec(&req).map_err(|e| RpcError::Codec(e.to_string()))?;
        let started = Instant::now();
        let result = self.transport.call(addr, Bytes::from(payload), timeout).await;
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics
            .rpc_duration_seconds
            .with_label_values(&[label])
            .observe(elapsed);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(NetError::Timeout) => "timeout",
            Err(NetError::Unreachable(_)) => "unreachable",
            Err(_) => "error",
        };
        self.metrics
            .rpc_requests_total
            .with_label_values(&[label, outcome])
            .inc();
        if let Some(to) = to {
            match &result {
                Ok(_) => self.detector.lock().heartbeat(to, self.clock.now_ms()),
                Err(e) if e.never_delivered() => {
                    self.detector.lock().suspect(to, self.clock.now_ms())
                }
                Err(_) => {}
            }
        }
        let bytes = result?;
        let resp: Response =
            postcard::from_bytes(&bytes).map_err(|e| RpcError::Codec(e.to_string()))?;
        if let Response::Error(e) = resp {
            return Err(RpcError::Remote(e));
        }
        Ok(resp)
    }

    /// Handles one decoded request from a peer.
    pub async fn dispatch(self: &Arc<Self>, from: PeerInfo, req: Request) -> Response {
        // Any message proves the sender is up.
        self.detector
            .lock()
            .heartbeat(&from.node_id, self.clock.now_ms());
        match req {
            Request::Membership(m) => {
                Response::Membership(crate::membership::rpc::handle(self, &from, m).await)
            }
            Request::Kv(k) => crate::coordinator::rpc::handle(self, &from, k).await,
            Request::Handoff(h) => crate::handoff::rpc::handle(self, &from, h).await,
        }
    }
}

/// Adapts a node to the transport's handler seam.
pub struct RpcHandler(pub Arc<Node>);

#[async_trait::async_trait]
impl Handler for RpcHandler {
    async fn handle(&self, from: PeerInfo, request: Bytes) -> Bytes {
        let resp = match postcard::from_bytes::<Request>(&request) {
            Ok(req) => self.0.dispatch(from, req).await,
            Err(e) => {
                tracing::warn!(peer = %from.node_id, error = %e, "undecodable request from peer");
                Response::Error(format!("undecodable request: {e}"))
            }
        };
        match postcard::to_stdvec(&resp) {
            Ok(v) => Bytes::from(v),
            Err(e) => Bytes::from(
                postcard::to_stdvec(&Response::Error(format!("unencodable response: {e}")))
                    .unwrap_or_default(),
            ),
        }
    }
}
