//! Incoming peer requests: decode the endpoint, hand the message to the subsystem that owns
//! it, frame its reply. The only module that knows every subsystem's messages.

use crate::node::Node;
use crate::rpc::{Endpoint, Message, Reply, RequestMeta, decode_endpoint, decode_message};
use crate::trace::{SLOW_REQUEST, with_request_id};
use bytes::Bytes;
use riftkv_core::net::{Handler, PeerInfo};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Adapts a node to the transport's handler seam.
pub struct RpcHandler(pub Arc<Node>);

#[async_trait::async_trait]
impl Handler for RpcHandler {
    async fn handle(&self, from: PeerInfo, request: Bytes) -> Bytes {
        let node = &self.0;
        let _in_flight = InFlight::enter(node);
        // Any message proves the sender is up (unless it announced going down).
        node.detector
            .lock()
            .heartbeat(&from.node_id, node.clock.now_ms());
        let reply = match decode_endpoint(&request) {
            Ok((endpoint, body)) => route(node, &from, endpoint, body).await,
            Err(e) => failed(&from, e),
        };
        Bytes::from(reply)
    }
}

/// Counts one peer request in `Node::peer_requests_in_flight` while it is handled.
struct InFlight<'a>(&'a Node);

impl<'a> InFlight<'a> {
    fn enter(node: &'a Node) -> Self {
        node.peer_requests_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(node)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .peer_requests_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn failed(from: &PeerInfo, why: String) -> Vec<u8> {
    tracing::warn!(peer = %from.node_id, error = %why, "undecodable request from peer");
    encode_reply::<()>(Reply::Failed(why))
}

fn encode_reply<R: Serialize>(reply: Reply<R>) -> Vec<u8> {
    match postcard::to_stdvec(&reply) {
        Ok(v) => v,
        Err(e) => postcard::to_stdvec(&Reply::<()>::Failed(format!("unencodable response: {e}")))
            .unwrap_or_default(),
    }
}

async fn route(node: &Arc<Node>, from: &PeerInfo, endpoint: Endpoint, body: &[u8]) -> Vec<u8> {
    match endpoint {
        Endpoint::Membership => {
            serve(from, body, |m| async move {
                Ok(crate::membership::rpc::handle(node, from, m).await)
            })
            .await
        }
        Endpoint::Replica => {
            serve(from, body, |m| async move {
                Ok(crate::replica::rpc::handle(node, m).await)
            })
            .await
        }
        Endpoint::Handoff => serve(from, body, |m| crate::handoff::rpc::handle(node, m)).await,
        Endpoint::Aae => {
            serve(from, body, |m| {
                crate::aae::rpc::handle(node, &from.node_id, m)
            })
            .await
        }
        Endpoint::Coordinate => {
            serve(from, body, |m| async move {
                Ok(crate::coordinator::put::handle_forwarded(node, m).await)
            })
            .await
        }
    }
}

/// Decodes one message of type `M`, runs its handler under the caller's request id (when it
/// sent one) and encodes the reply. A handler's `Err` is sent as a [`Reply::Failed`].
async fn serve<M, F, Fut>(from: &PeerInfo, body: &[u8], handler: F) -> Vec<u8>
where
    M: Message,
    F: FnOnce(M) -> Fut,
    Fut: Future<Output = Result<M::Reply, String>>,
{
    let (msg, meta) = match decode_message::<M>(body) {
        Ok(x) => x,
        Err(e) => return failed(from, format!("undecodable request: {e}")),
    };
    let label = msg.label();
    let result = match meta {
        RequestMeta { request_id: None } => handler(msg).await,
        RequestMeta {
            request_id: Some(id),
        } => {
            // The same field name as the client request's span, so one grep for the id finds
            // the request on its coordinator and on every replica it reached.
            let span = tracing::info_span!("peer_request", request_id = %id,
                msg = label, from = %from.node_id);
            let started = Instant::now();
            let r = with_request_id(id.into(), handler(msg))
                .instrument(span.clone())
                .await;
            let elapsed = started.elapsed();
            let ms = elapsed.as_millis() as u64;
            span.in_scope(|| {
                if elapsed >= SLOW_REQUEST {
                    tracing::info!(ms, "slow peer request");
                } else {
                    tracing::debug!(ms, "peer request done");
                }
            });
            r
        }
    };
    match result {
        Ok(r) => encode_reply(Reply::Ok(r)),
        Err(e) => encode_reply::<M::Reply>(Reply::Failed(e)),
    }
}
