//! Outgoing calls to peers: one typed request, its metrics, and the failure detector's
//! bookkeeping.

use super::Node;
use crate::rpc::{Message, Reply, RequestMeta, RpcError, encode_request};
use crate::trace::current_request_id;
use bytes::Bytes;
use riftkv_core::net::NetError;
use riftkv_core::types::NodeId;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Node {
    /// Sends one request to a member by node id, with metrics and failure-detector bookkeeping.
    pub async fn call<M: Message>(
        self: &Arc<Self>,
        to: &NodeId,
        req: M,
        timeout: Duration,
    ) -> Result<M::Reply, RpcError> {
        let addr = {
            let s = self.state.read();
            s.peer_addr_of(to).map(str::to_string)
        }
        .ok_or_else(|| RpcError::UnknownPeer(to.clone()))?;
        self.call_addr(&addr, Some(to), req, timeout).await
    }

    /// Sends one request to a peer address (used before the peer's id is known, e.g. seeds).
    pub async fn call_addr<M: Message>(
        self: &Arc<Self>,
        addr: &str,
        to: Option<&NodeId>,
        req: M,
        timeout: Duration,
    ) -> Result<M::Reply, RpcError> {
        let label = req.label();
        let lane = req.lane();
        let meta = RequestMeta {
            request_id: current_request_id().map(|id| id.to_string()),
        };
        let payload = encode_request(&req, &meta).map_err(|e| RpcError::Codec(e.to_string()))?;
        let started = Instant::now();
        let result = self
            .transport
            .call_on(lane, addr, Bytes::from(payload), timeout)
            .await;
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
                Err(e) if e.says_peer_down() => {
                    self.detector.lock().suspect(to, self.clock.now_ms())
                }
                Err(_) => {}
            }
        }
        let bytes = result?;
        match postcard::from_bytes::<Reply<M::Reply>>(&bytes) {
            Ok(Reply::Ok(r)) => Ok(r),
            Ok(Reply::Failed(e)) => Err(RpcError::Remote(e)),
            Err(e) => Err(RpcError::Codec(e.to_string())),
        }
    }
}
