//! Deletes: a tombstone version written like a put. With the client's context it supersedes
//! what the client saw; without one, what a quorum read at the coordinator sees first.

use super::error::KvError;
use super::placement::check_names;
use super::put::{Change, PutOutcome, WriteOp, write};
use super::quorum::ConsistencyParams;
use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;

/// A client's DELETE.
#[derive(Clone, Debug)]
pub struct DeleteRequest {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    /// The causal context of an earlier read (decoded at the edge), if any.
    pub context: Option<riftkv_core::version::VersionVector>,
    pub params: ConsistencyParams,
    pub timeout: Option<Duration>,
}

/// Writes a tombstone for the key. Succeeds also when there was nothing to delete; the
/// outcome holds the stored object (its siblings are tombstones unless concurrent writes the
/// delete had not seen survive beside it).
pub async fn delete(node: &Arc<Node>, req: DeleteRequest) -> Result<PutOutcome, KvError> {
    check_names(&req.bucket, &req.key)?;
    let timeout = req.timeout.unwrap_or(node.settings.request_timeout);
    let op = WriteOp {
        bucket: req.bucket,
        key: req.key,
        change: Change::Delete,
        context: req.context,
        if_none_match: false,
        params: req.params,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    write(node, op, "delete")
        .await
        .map(|object| PutOutcome { object })
}
