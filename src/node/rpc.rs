//! The inter-node message envelope. Each layer owns its message enum; this file only wraps
//! them, dispatches incoming requests to their layer, and instruments outgoing calls.
//!
//! A call made on behalf of a client request carries that request's id after the request in
//! the same frame ([`RequestMeta`]), so the replica's logs show it too: one slow request can be
//! followed across nodes by its id.

use super::Node;
use crate::net::{Handler, NetError, PeerInfo};
use crate::types::NodeId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

tokio::task_local! {
    /// Id of the client request the current task works for.
    static REQUEST_ID: Arc<str>;
}

/// Runs `fut` as work for the client request `id`: its inter-node calls carry the id.
pub async fn with_request_id<F: Future>(id: Arc<str>, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// Id of the client request the current task works for, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Wraps work about to be spawned for a client request so the new task keeps the request's
/// tracing span and id (spawned tasks inherit neither by themselves).
pub fn traced<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let span = tracing::Span::current();
    let id = current_request_id();
    async move {
        match id {
            Some(id) => REQUEST_ID.scope(id, fut).await,
            None => fut.await,
        }
    }
    .instrument(span)
}

/// Metadata encoded after the [`Request`] in the same frame. Receivers decode the request
/// first and read this from the bytes left over, so a peer that does not know a field (or the
/// trailer at all) still understands the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// Id of the client request this call serves; None for background duties.
    pub request_id: Option<String>,
}

/// Encodes a request followed by its metadata (omitted when empty).
pub fn encode_request(req: &Request, meta: &RequestMeta) -> Result<Vec<u8>, postcard::Error> {
    let mut bytes = postcard::to_stdvec(req)?;
    if meta != &RequestMeta::default() {
        bytes.extend(postcard::to_stdvec(meta)?);
    }
    Ok(bytes)
}

/// Decodes a request and its metadata; metadata that cannot be decoded is ignored, since it
/// never changes what the request does.
pub fn decode_request(bytes: &[u8]) -> Result<(Request, RequestMeta), postcard::Error> {
    let (req, rest) = postcard::take_from_bytes::<Request>(bytes)?;
    let meta = if rest.is_empty() {
        RequestMeta::default()
    } else {
        postcard::from_bytes(rest).unwrap_or_default()
    };
    Ok((req, meta))
}

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
        let meta = RequestMeta {
            request_id: current_request_id().map(|id| id.to_string()),
        };
        let payload = encode_request(&req, &meta).map_err(|e| RpcError::Codec(e.to_string()))?;
        let started = Instant::now();
        let result = self
            .transport
            .call(addr, Bytes::from(payload), timeout)
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
        let resp = match decode_request(&request) {
            Ok((req, meta)) => match meta.request_id {
                None => self.0.dispatch(from, req).await,
                Some(id) => {
                    // The same field name as the client request's span, so one grep for the
                    // id finds the request on its coordinator and on every replica it reached.
                    let span = tracing::info_span!("peer_request", request_id = %id,
                        msg = req.label(), from = %from.node_id);
                    let started = Instant::now();
                    let resp = with_request_id(id.into(), self.0.dispatch(from, req))
                        .instrument(span.clone())
                        .await;
                    let elapsed = started.elapsed();
                    let ms = elapsed.as_millis() as u64;
                    span.in_scope(|| {
                        if elapsed >= crate::api::SLOW_REQUEST {
                            tracing::info!(ms, "slow peer request");
                        } else {
                            tracing::debug!(ms, "peer request done");
                        }
                    });
                    resp
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::rpc::MembershipRequest;

    fn ping() -> Request {
        Request::Membership(MembershipRequest::Ping { ring_version: 7 })
    }

    #[test]
    fn request_id_travels_after_the_request() {
        let meta = RequestMeta {
            request_id: Some("req-42".into()),
        };
        let bytes = encode_request(&ping(), &meta).unwrap();
        let (req, back) = decode_request(&bytes).unwrap();
        assert_eq!(req.label(), "ping");
        assert_eq!(back, meta);
        // A receiver that only knows the request still decodes it.
        let plain: Request = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(
            plain,
            Request::Membership(MembershipRequest::Ping { ring_version: 7 })
        ));
    }

    #[test]
    fn requests_without_metadata_are_unchanged_on_the_wire() {
        let bytes = encode_request(&ping(), &RequestMeta::default()).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&ping()).unwrap());
        assert_eq!(decode_request(&bytes).unwrap().1, RequestMeta::default());
        // Garbage after the request is ignored, not fatal.
        let mut junk = bytes.clone();
        junk.extend([0xff, 0xff, 0xff]);
        assert_eq!(decode_request(&junk).unwrap().1, RequestMeta::default());
    }

    #[tokio::test]
    async fn spawned_work_keeps_the_request_id() {
        assert_eq!(current_request_id(), None);
        let seen = with_request_id(Arc::from("abc"), async {
            tokio::spawn(traced(async { current_request_id() }))
                .await
                .unwrap()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("abc"));
        let untraced = with_request_id(Arc::from("abc"), async {
            tokio::spawn(async { current_request_id() }).await.unwrap()
        })
        .await;
        assert_eq!(untraced, None);
    }
}
