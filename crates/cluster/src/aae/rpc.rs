//! Anti-entropy messages: a peer's segment hashes of one partition's tree, then the keys and
//! leaf hashes of the segments that differ.

use crate::node::Node;
use crate::rpc::{Endpoint, Message};
use riftkv_core::merkle::KeyHash;
use riftkv_core::types::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AaeRequest {
    /// The receiver's segment hashes of `partition` in a tree of `n` segments, over the keys
    /// of buckets both nodes replicate; refused unless the receiver routes by `ring_version`
    /// with no ring change pending.
    Segments {
        partition: u32,
        n: u32,
        ring_version: u64,
    },
    /// The receiver's keys and leaf hashes in the given segments of that tree.
    Keys {
        partition: u32,
        n: u32,
        ring_version: u64,
        segments: Vec<u32>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AaeResponse {
    /// Segment hashes of an anti-entropy tree, by segment index.
    Segments(Vec<u64>),
    /// Keys with leaf hashes of the requested segments.
    Keys(Vec<KeyHash>),
}

impl Message for AaeRequest {
    const ENDPOINT: Endpoint = Endpoint::Aae;
    type Reply = AaeResponse;

    fn label(&self) -> &'static str {
        match self {
            AaeRequest::Segments { .. } => "aae_segments",
            AaeRequest::Keys { .. } => "aae_keys",
        }
    }
}

/// The peer's side of every [`AaeRequest`]; an error is the refusal sent back.
pub async fn handle(
    node: &Arc<Node>,
    from: &NodeId,
    req: AaeRequest,
) -> Result<AaeResponse, String> {
    match req {
        AaeRequest::Segments {
            partition,
            n,
            ring_version,
        } => super::answer_segments(node, from, partition, n, ring_version)
            .await
            .map(AaeResponse::Segments)
            .map_err(|e| e.to_string()),
        AaeRequest::Keys {
            partition,
            n,
            ring_version,
            segments,
        } => super::answer_keys(node, from, partition, n, ring_version, segments)
            .await
            .map(AaeResponse::Keys)
            .map_err(|e| e.to_string()),
    }
}
