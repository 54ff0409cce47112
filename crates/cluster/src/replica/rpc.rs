//! Messages a coordinator (or the reaper) sends a replica, and the replica's side of each.

use super::copy::{
    blocking, fault_drop_write, live_keys, read_copy, store_copy_deferred, try_store_copy_deferred,
};
use super::error::ReplicaError;
use super::reap::delete_if_unchanged;
use crate::node::Node;
use crate::preflist::Role;
use crate::rpc::{Endpoint, Message, RpcError};
use riftkv_core::storage::ObjectKey;
use riftkv_core::types::NodeId;
use riftkv_core::version::Object;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReplicaRequest {
    /// Read the receiver's copy of one key; as a fallback (`hinted_for`), its hint for that
    /// primary merged with any copy of its own.
    ReplicaGet {
        partition: u32,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        bucket: Vec<u8>,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        key: Vec<u8>,
        hinted_for: Option<NodeId>,
    },
    /// Merge an object into the receiver's copy (as a hint for `hinted_for` when set).
    /// `sync` makes the write durable before the answer.
    ReplicaPut {
        partition: u32,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        bucket: Vec<u8>,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        key: Vec<u8>,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        object: Vec<u8>,
        sync: bool,
        hinted_for: Option<NodeId>,
    },
    /// Live keys of a bucket in the given partitions, strictly after `after`.
    ListKeys {
        partitions: Vec<u32>,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        bucket: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    },
    /// Delete the receiver's copy of a key if it is still exactly `expected` (a tombstone
    /// every primary holds); a copy that changed meanwhile stays.
    Reap {
        partition: u32,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        bucket: Vec<u8>,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        key: Vec<u8>,
        #[serde(with = "riftkv_core::bytes_field::vec")]
        expected: Vec<u8>,
        /// The reaper's ring version; a replica on another ring refuses.
        ring_version: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReplicaResponse {
    /// The encoded object, or None when the replica holds nothing.
    Object(#[serde(with = "riftkv_core::bytes_field::option_vec")] Option<Vec<u8>>),
    /// The write is merged; `durable` when it was synced to disk.
    Stored { durable: bool },
    /// Sorted live keys, and whether more remain beyond them.
    Keys { keys: Vec<Vec<u8>>, more: bool },
    /// Whether the reaped copy was deleted (false: it had changed or was absent).
    Reaped { deleted: bool },
}

impl Message for ReplicaRequest {
    const ENDPOINT: Endpoint = Endpoint::Replica;
    type Reply = Result<ReplicaResponse, ReplicaError>;

    fn label(&self) -> &'static str {
        match self {
            ReplicaRequest::ReplicaGet { .. } => "replica_get",
            ReplicaRequest::ReplicaPut { .. } => "replica_put",
            ReplicaRequest::ListKeys { .. } => "list_keys",
            ReplicaRequest::Reap { .. } => "reap",
        }
    }
}

/// Sends one request to a replica. A replica's typed refusal surfaces as
/// [`RpcError::Remote`], like any failure the peer reports: to the caller both mean "this
/// replica did not do it".
pub async fn call(
    node: &Arc<Node>,
    to: &NodeId,
    req: ReplicaRequest,
    timeout: Duration,
) -> Result<ReplicaResponse, RpcError> {
    match node.call(to, req, timeout).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(RpcError::Remote(e.to_string())),
        Err(e) => Err(e),
    }
}

/// The replica's side of every [`ReplicaRequest`].
pub async fn handle(
    node: &Arc<Node>,
    req: ReplicaRequest,
) -> Result<ReplicaResponse, ReplicaError> {
    match req {
        ReplicaRequest::ReplicaGet {
            partition,
            bucket,
            key,
            hinted_for,
        } => {
            let mode = node.state.read().bucket_props(&bucket).conflict;
            let k = ObjectKey::new(partition, bucket, key);
            // On this task, not the blocking pool: see `read_copy`.
            let o = read_copy(node, &k, &Role::from_hinted_for(hinted_for), mode)?;
            Ok(ReplicaResponse::Object(o.map(|o| o.encode())))
        }
        ReplicaRequest::ReplicaPut {
            partition,
            bucket,
            key,
            object,
            sync,
            hinted_for,
        } => {
            let obj = Object::decode(&object).map_err(|e| {
                ReplicaError::BadRequest(format!("replica write carries a bad object: {e}"))
            })?;
            if fault_drop_write() {
                // Planted bug for the harness (off by default): acknowledge without storing.
                return Ok(ReplicaResponse::Stored { durable: sync });
            }
            let mode = node.state.read().bucket_props(&bucket).conflict;
            let k = ObjectKey::new(partition, bucket, key);
            let role = Role::from_hinted_for(hinted_for);
            let written = match try_store_copy_deferred(node, &k, &obj, mode, sync, &role) {
                Some(r) => r?,
                None => {
                    let n = node.clone();
                    blocking(move || {
                        store_copy_deferred(&n, &k, &obj, mode, sync, &role)
                            .map_err(ReplicaError::from)
                    })
                    .await?
                }
            };
            // The key's lock is free again: the shared WAL sync is awaited without a thread.
            written.durable(node).await?;
            Ok(ReplicaResponse::Stored { durable: sync })
        }
        ReplicaRequest::ListKeys {
            partitions,
            bucket,
            after,
            limit,
        } => {
            let n = node.clone();
            let (keys, more) = blocking(move || {
                live_keys(&n, &partitions, &bucket, after.as_deref(), limit as usize)
            })
            .await?;
            Ok(ReplicaResponse::Keys { keys, more })
        }
        ReplicaRequest::Reap {
            partition,
            bucket,
            key,
            expected,
            ring_version,
        } => {
            let k = ObjectKey::new(partition, bucket, key);
            let n = node.clone();
            let deleted =
                blocking(move || delete_if_unchanged(&n, &k, &expected, ring_version)).await?;
            Ok(ReplicaResponse::Reaped { deleted })
        }
    }
}
