//! The replica's half of reaping: delete a dead key (tombstones, expired versions) only if it
//! is still exactly the copy the reaper checked, then fence it (see `crate::reaper` for the
//! whole protocol).

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
    // Only keys whose every version dies (tombstones, expiring values). Whether they have been
    // dead for the grace delay is the reaper's check, by its clock: all copies go in one round
    // even when this node's clock lags (it would show the value until its own clock passed
    // the expiry; reaping ends that early, which hides nothing that should be seen).
    if current.as_ref() != Some(&expected) || expected.dead_since_ms().is_none() {
        return Ok(false);
    }
    node.reap_fence
        .fence(k, expected.context(), node.clock.now_ms());
    let mut batch = WriteBatch::default();
    batch.delete_object(k.clone());
    if let Some(t) = expected.expiry_index_ms() {
        batch.delete_expiry(t, k.clone());
    }
    if expected.in_tombstone_index() {
        batch.delete_tombstone(k.clone());
    }
    node.storage
        .write(batch, false)
        .map_err(|e| ReplicaError::Internal(e.to_string()))?;
    node.aae_trees.note_write(k.partition);
    Ok(true)
}
