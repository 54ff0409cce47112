//! Handoff messages: chunks of a partition or of hints, acknowledged one at a time so the
//! sender never runs ahead of the receiver (back-pressure), and the count of what a node still
//! holds for others (the reaper waits until nobody holds anything).

use crate::node::Node;
use crate::replica::{ReplicaError, store_copy};
use crate::rpc::{Endpoint, Message};
use riftkv_core::storage::ObjectKey;
use riftkv_core::types::PartitionId;
use riftkv_core::version::Object;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One entry moved by handoff: a key of a partition with its encoded object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffEntry {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    pub object: Vec<u8>,
}

impl HandoffEntry {
    /// Bytes this entry adds to a chunk (what the chunk size cap counts).
    pub fn size(&self) -> usize {
        self.bucket.len() + self.key.len() + self.object.len()
    }
}

/// One hinted object delivered to its primary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub partition: u32,
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    /// [`Object::encode`] bytes.
    pub object: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HandoffRequest {
    /// A chunk of partition data; the receiver merges every entry into its copy.
    Chunk {
        partition: u32,
        entries: Vec<HandoffEntry>,
    },
    /// Hints delivered to their primary: merge every entry into `objects`, durably.
    DeliverHints { entries: Vec<ObjectEntry> },
    /// How many hints and pending ownership handoffs the receiver holds: tombstones are
    /// reaped only when no node holds either, since both may carry an older version of a key.
    HintsHeld,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HandoffResponse {
    /// Every entry of the chunk is merged and persisted.
    Ack { stored: usize },
    /// Every delivered hint is merged and synced.
    HintsStored { count: u32 },
    /// Hints and pending handoffs held by the answering node.
    HintsHeld { count: u64 },
}

impl Message for HandoffRequest {
    const ENDPOINT: Endpoint = Endpoint::Handoff;
    type Reply = HandoffResponse;

    fn label(&self) -> &'static str {
        match self {
            HandoffRequest::Chunk { .. } => "handoff_chunk",
            HandoffRequest::DeliverHints { .. } => "deliver_hints",
            HandoffRequest::HintsHeld => "hints_held",
        }
    }
}

/// Why a received chunk was refused (nothing of it was stored).
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("partition {partition} is outside this ring of {ring_size} partitions")]
    NoSuchPartition {
        partition: PartitionId,
        ring_size: u32,
    },
    #[error("entry {index} of the chunk does not belong to partition {partition}")]
    WrongPartition {
        index: usize,
        partition: PartitionId,
    },
    #[error("entry {index} of the chunk holds an undecodable object: {reason}")]
    BadObject { index: usize, reason: String },
    #[error("could not store the chunk: {0}")]
    Store(#[from] crate::replica::store::StoreError),
}

/// The receiver's side of every [`HandoffRequest`]; an error is the refusal sent back.
pub async fn handle(node: &Arc<Node>, req: HandoffRequest) -> Result<HandoffResponse, String> {
    match req {
        HandoffRequest::Chunk { partition, entries } => {
            let bytes: u64 = entries.iter().map(|e| e.size() as u64).sum();
            let plan = node.state.read().plan.as_ref().map(|p| p.id);
            node.transfer_bytes.add(plan, bytes);
            let node = node.clone();
            // Merging reads and writes storage, which blocks.
            let res =
                tokio::task::spawn_blocking(move || receive_chunk(&node, partition, entries)).await;
            match res {
                Ok(Ok(stored)) => Ok(HandoffResponse::Ack { stored }),
                Ok(Err(e)) => {
                    tracing::warn!(partition, error = %e, "refused a handoff chunk");
                    Err(e.to_string())
                }
                Err(e) => Err(format!("handoff chunk was not stored: {e}")),
            }
        }
        HandoffRequest::DeliverHints { entries } => {
            let n = node.clone();
            crate::replica::blocking(move || store_entries(&n, entries))
                .await
                .map(|count| HandoffResponse::HintsStored { count })
                .map_err(|e| e.to_string())
        }
        HandoffRequest::HintsHeld => {
            let n = node.clone();
            crate::replica::blocking(move || super::held_elsewhere(&n))
                .await
                .map(|count| HandoffResponse::HintsHeld { count })
                .map_err(|e| e.to_string())
        }
    }
}

/// Merges delivered hints into `objects`; the last write syncs, which makes the whole
/// sequence durable (the write-ahead log is sequential).
fn store_entries(node: &Node, entries: Vec<ObjectEntry>) -> Result<u32, ReplicaError> {
    // Decode everything first so a bad entry rejects the batch before anything is written.
    let mut decoded = Vec::with_capacity(entries.len());
    for e in entries {
        let obj = Object::decode(&e.object).map_err(|err| {
            ReplicaError::BadRequest(format!("delivered hint carries a bad object: {err}"))
        })?;
        decoded.push((ObjectKey::new(e.partition, e.bucket, e.key), obj));
    }
    let last = decoded.len().saturating_sub(1);
    for (i, (k, obj)) in decoded.iter().enumerate() {
        let mode = node.state.read().bucket_props(&k.bucket).conflict;
        store_copy(
            node,
            k,
            obj,
            mode,
            i == last,
            &crate::preflist::Role::Primary,
        )?;
    }
    Ok(u32::try_from(decoded.len()).unwrap_or(u32::MAX))
}

/// Decodes and checks every entry first, so a bad chunk is refused whole, then merges the
/// entries in order with their bucket's conflict mode. The last write is synced, which makes
/// the whole chunk durable before the acknowledgement.
pub fn receive_chunk(
    node: &Node,
    partition: PartitionId,
    entries: Vec<HandoffEntry>,
) -> Result<usize, ChunkError> {
    let ring_size = node.state.read().ring_size();
    let decoded = decode_chunk(partition, ring_size, entries)?;
    let count = decoded.len();
    for (i, (k, obj)) in decoded.iter().enumerate() {
        let mode = node.state.read().bucket_props(&k.bucket).conflict;
        // Under the key's lock, like every other local read-modify-write, so a concurrent
        // coordinator write or repair of the same key cannot lose this merge (or vice versa).
        let _guard = crate::replica::locks::lock_key(k);
        node.merge_local(k, obj, mode, i + 1 == count)?;
    }
    Ok(count)
}

/// Checks and decodes a received chunk (pure).
pub fn decode_chunk(
    partition: PartitionId,
    ring_size: u32,
    entries: Vec<HandoffEntry>,
) -> Result<Vec<(ObjectKey, Object)>, ChunkError> {
    if partition >= ring_size {
        return Err(ChunkError::NoSuchPartition {
            partition,
            ring_size,
        });
    }
    let mut out = Vec::with_capacity(entries.len());
    for (index, e) in entries.into_iter().enumerate() {
        if riftkv_core::ring::partition_for(&e.bucket, &e.key, ring_size) != partition {
            return Err(ChunkError::WrongPartition { index, partition });
        }
        let obj = Object::decode(&e.object).map_err(|err| ChunkError::BadObject {
            index,
            reason: err.to_string(),
        })?;
        out.push((ObjectKey::new(partition, e.bucket, e.key), obj));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::types::NodeId;
    use riftkv_core::version::{ConflictMode, Limits, Sibling, VersionVector};

    fn obj(v: &str) -> Vec<u8> {
        Object::update(
            None,
            &VersionVector::default(),
            NodeId::from("a"),
            Sibling::new(v.as_bytes().to_vec(), "text/plain", 1),
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap()
        .encode()
    }

    /// A key of `bucket` that falls in `p` (found by a bounded search).
    fn key_in(p: PartitionId, q: u32) -> Vec<u8> {
        (0..10_000u32)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| riftkv_core::ring::partition_for(b"b", k, q) == p)
            .unwrap()
    }

    #[test]
    fn good_chunk_decodes_in_order() {
        let entries = vec![
            HandoffEntry {
                bucket: b"b".to_vec(),
                key: key_in(3, 16),
                object: obj("x"),
            },
            HandoffEntry {
                bucket: b"b".to_vec(),
                key: key_in(3, 16),
                object: obj("y"),
            },
        ];
        let d = decode_chunk(3, 16, entries).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0.partition, 3);
    }

    #[test]
    fn bad_chunks_are_refused_whole() {
        let good = HandoffEntry {
            bucket: b"b".to_vec(),
            key: key_in(3, 16),
            object: obj("x"),
        };
        let garbage = HandoffEntry {
            object: vec![0xff, 0x00, 0x13],
            ..good.clone()
        };
        assert!(matches!(
            decode_chunk(3, 16, vec![good.clone(), garbage]),
            Err(ChunkError::BadObject { index: 1, .. })
        ));
        let elsewhere = HandoffEntry {
            key: key_in(4, 16),
            ..good.clone()
        };
        assert!(matches!(
            decode_chunk(3, 16, vec![elsewhere]),
            Err(ChunkError::WrongPartition { index: 0, .. })
        ));
        assert!(matches!(
            decode_chunk(16, 16, vec![good]),
            Err(ChunkError::NoSuchPartition { .. })
        ));
    }
}
