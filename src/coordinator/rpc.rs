//! Key-value messages between a coordinator and replicas, and the replica side of each.

use super::error::{KvError, WireKvError};
use super::put::WriteOp;
use super::replica::{blocking, live_keys, read_copy, store_copy};
use crate::net::PeerInfo;
use crate::node::{Node, Response};
use crate::storage::ObjectKey;
use crate::types::NodeId;
use crate::version::Object;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One object sent in a batch (hint delivery).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub partition: u32,
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    /// [`Object::encode`] bytes.
    pub object: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum KvRequest {
    /// Read the receiver's copy of one key; as a fallback (`hinted_for`), its hint for that
    /// primary merged with any copy of its own.
    ReplicaGet {
        partition: u32,
        bucket: Vec<u8>,
        key: Vec<u8>,
        hinted_for: Option<NodeId>,
    },
    /// Merge an object into the receiver's copy (as a hint for `hinted_for` when set).
    /// `sync` makes the write durable before the answer.
    ReplicaPut {
        partition: u32,
        bucket: Vec<u8>,
        key: Vec<u8>,
        object: Vec<u8>,
        sync: bool,
        hinted_for: Option<NodeId>,
    },
    /// Coordinate a write on behalf of a node that is not a replica of the key.
    CoordinatePut(WriteOp),
    /// Live keys of a bucket in the given partitions, strictly after `after`.
    ListKeys {
        partitions: Vec<u32>,
        bucket: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    },
    /// Hints delivered to their primary: merge every entry into `objects`, durably.
    DeliverHints { entries: Vec<ObjectEntry> },
    /// How many hints and pending ownership handoffs the receiver holds: tombstones are
    /// reaped only when no node holds either, since both may carry an older version of a key.
    HintsHeld,
    /// Delete the receiver's copy of a key if it is still exactly `expected` (a tombstone
    /// every primary holds); a copy that changed meanwhile stays.
    Reap {
        partition: u32,
        bucket: Vec<u8>,
        key: Vec<u8>,
        expected: Vec<u8>,
        /// The reaper's ring version; a replica on another ring refuses.
        ring_version: u64,
    },
    /// Anti-entropy: the receiver's segment hashes of `partition` in a tree of `n` segments,
    /// over the keys of buckets both nodes replicate; refused unless the receiver routes by
    /// `ring_version` with no ring change pending.
    AaeSegments {
        partition: u32,
        n: u32,
        ring_version: u64,
    },
    /// Anti-entropy: the receiver's keys and leaf hashes in the given segments of that tree.
    AaeKeys {
        partition: u32,
        n: u32,
        ring_version: u64,
        segments: Vec<u32>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum KvResponse {
    /// The encoded object, or None when the replica holds nothing.
    Object(Option<Vec<u8>>),
    /// The write is merged; `durable` when it was synced to disk.
    Stored { durable: bool },
    /// A coordinated write: the stored object's encoding, or why it failed.
    Put(Result<Vec<u8>, WireKvError>),
    /// Sorted live keys, and whether more remain beyond them.
    Keys { keys: Vec<Vec<u8>>, more: bool },
    /// Every delivered hint is merged and synced.
    HintsStored { count: u32 },
    /// Hints held by the answering node.
    HintsHeld { count: u64 },
    /// Whether the reaped copy was deleted (false: it had changed or was absent).
    Reaped { deleted: bool },
    /// Segment hashes of an anti-entropy tree, by segment index.
    AaeSegments(Vec<u64>),
    /// Keys with leaf hashes of the requested anti-entropy segments.
    AaeKeys(Vec<crate::aae::merkle::KeyHash>),
}

impl KvRequest {
    pub fn label(&self) -> &'static str {
        match self {
            KvRequest::ReplicaGet { .. } => "replica_get",
            KvRequest::ReplicaPut { .. } => "replica_put",
            KvRequest::CoordinatePut(_) => "coordinate_put",
            KvRequest::ListKeys { .. } => "list_keys",
            KvRequest::DeliverHints { .. } => "deliver_hints",
            KvRequest::HintsHeld => "hints_held",
            KvRequest::Reap { .. } => "reap",
            KvRequest::AaeSegments { .. } => "aae_segments",
            KvRequest::AaeKeys { .. } => "aae_keys",
        }
    }
}

fn error(e: impl std::fmt::Display) -> Response {
    Response::Error(e.to_string())
}

pub async fn handle(node: &Arc<Node>, from: &PeerInfo, req: KvRequest) -> Response {
    match req {
        KvRequest::ReplicaGet {
            partition,
            bucket,
            key,
            hinted_for,
        } => {
            let mode = node.state.read().bucket_props(&bucket).conflict;
            let k = ObjectKey::new(partition, bucket, key);
            let n = node.clone();
            let r = blocking(move || {
                read_copy(&n, &k, hinted_for.as_ref(), mode).map_err(KvError::from)
            })
            .await;
            match r {
                Ok(o) => Response::Kv(KvResponse::Object(o.map(|o| o.encode()))),
                Err(e) => error(e),
            }
        }
        KvRequest::ReplicaPut {
            partition,
            bucket,
            key,
            object,
            sync,
            hinted_for,
        } => {
            let obj = match Object::decode(&object) {
                Ok(o) => o,
                Err(e) => return error(format!("replica write carries a bad object: {e}")),
            };
            if super::replica::fault_drop_write() {
                // Planted bug for the harness (off by default): acknowledge without storing.
                return Response::Kv(KvResponse::Stored { durable: sync });
            }
            let mode = node.state.read().bucket_props(&bucket).conflict;
            let k = ObjectKey::new(partition, bucket, key);
            let n = node.clone();
            let r = blocking(move || {
                store_copy(&n, &k, &obj, mode, sync, hinted_for.as_ref()).map_err(KvError::from)
            })
            .await;
            match r {
                Ok(_) => Response::Kv(KvResponse::Stored { durable: sync }),
                Err(e) => error(e),
            }
        }
        KvRequest::CoordinatePut(op) => {
            let r = super::put::coordinate_forwarded(node, op).await;
            Response::Kv(KvResponse::Put(r.map(|o| o.encode())))
        }
        KvRequest::ListKeys {
            partitions,
            bucket,
            after,
            limit,
        } => {
            let n = node.clone();
            let r = blocking(move || {
                live_keys(&n, &partitions, &bucket, after.as_deref(), limit as usize)
            })
            .await;
            match r {
                Ok((keys, more)) => Response::Kv(KvResponse::Keys { keys, more }),
                Err(e) => error(e),
            }
        }
        KvRequest::DeliverHints { entries } => {
            let n = node.clone();
            let r = blocking(move || store_entries(&n, entries)).await;
            match r {
                Ok(count) => Response::Kv(KvResponse::HintsStored { count }),
                Err(e) => error(e),
            }
        }
        KvRequest::HintsHeld => {
            let n = node.clone();
            let r = blocking(move || super::reap::held_elsewhere(&n)).await;
            match r {
                Ok(count) => Response::Kv(KvResponse::HintsHeld { count }),
                Err(e) => error(e),
            }
        }
        KvRequest::Reap {
            partition,
            bucket,
            key,
            expected,
            ring_version,
        } => {
            let k = ObjectKey::new(partition, bucket, key);
            let n = node.clone();
            let r =
                blocking(move || super::reap::delete_if_unchanged(&n, &k, &expected, ring_version));
            match r.await {
                Ok(deleted) => Response::Kv(KvResponse::Reaped { deleted }),
                Err(e) => error(e),
            }
        }
        KvRequest::AaeSegments {
            partition,
            n,
            ring_version,
        } => {
            let r = crate::aae::answer_segments(node, &from.node_id, partition, n, ring_version);
            match r.await {
                Ok(hashes) => Response::Kv(KvResponse::AaeSegments(hashes)),
                Err(e) => error(e),
            }
        }
        KvRequest::AaeKeys {
            partition,
            n,
            ring_version,
            segments,
        } => {
            let r =
                crate::aae::answer_keys(node, &from.node_id, partition, n, ring_version, segments);
            match r.await {
                Ok(keys) => Response::Kv(KvResponse::AaeKeys(keys)),
                Err(e) => error(e),
            }
        }
    }
}

/// Merges delivered hints into `objects`; the last write syncs, which makes the whole
/// sequence durable (the write-ahead log is sequential).
fn store_entries(node: &Node, entries: Vec<ObjectEntry>) -> Result<u32, KvError> {
    // Decode everything first so a bad entry rejects the batch before anything is written.
    let mut decoded = Vec::with_capacity(entries.len());
    for e in entries {
        let obj = Object::decode(&e.object).map_err(|err| {
            KvError::BadRequest(format!("delivered hint carries a bad object: {err}"))
        })?;
        decoded.push((ObjectKey::new(e.partition, e.bucket, e.key), obj));
    }
    let last = decoded.len().saturating_sub(1);
    for (i, (k, obj)) in decoded.iter().enumerate() {
        let mode = node.state.read().bucket_props(&k.bucket).conflict;
        store_copy(node, k, obj, mode, i == last, None)?;
    }
    Ok(u32::try_from(decoded.len()).unwrap_or(u32::MAX))
}
