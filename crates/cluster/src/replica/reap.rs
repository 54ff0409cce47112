//! The replica's half of reaping: delete a tombstone only if it is still exactly the one the
//! reaper checked, then fence it (see `crate::reaper` for the whole protocol).

use super::error::ReplicaError;
use super::locks::lock_key;
use crate::node::Node;
use riftkv_core::storage::{ObjectKey, WriteBatch};
use riftkv_core::version::Object;

/// Deletes this node's copy of `k` if it is still exactly `expected` (encoded object) and this
/// node routes by `ring_version` (the reaper checked the primaries of *its* ring; a node on
/// another ring may hold the key for other reasons). A deleted tombstone is fenced, so read
/// repair and anti-entropy cannot copy it back from a replica that has not deleted it yet.
pub fn delete_if_unchanged(
    node: &Node,
    k: &ObjectKey,
    expected: &[u8],
    ring_version: u64,
) -> Result<bool, ReplicaError> {
    let expected =
        Object::decode(expected).map_err(|e| ReplicaError::BadRequest(format!("reap: {e}")))?;
    if node.state.read().ring_version != ring_version {
        return Ok(false);
    }
    let _guard = lock_key(k);
    let current = node
        .local_object(k)
        .map_err(|e| ReplicaError::Internal(e.to_string()))?;
    if current.as_ref() != Some(&expected) || !expected.all_deleted() {
        return Ok(false);
    }
    node.reap_fence
        .fence(k, expected.context(), node.clock.now_ms());
    let mut batch = WriteBatch::default();
    batch.delete_object(k.clone());
    node.storage
        .write(batch, false)
        .map_err(|e| ReplicaError::Internal(e.to_string()))?;
    Ok(true)
}
