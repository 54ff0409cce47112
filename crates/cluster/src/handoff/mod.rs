//! Moving data between nodes: hinted handoff (a fallback returns writes to their owner) and
//! ownership handoff (partitions streamed to their new replicas when the ring changes).

pub mod hints;
pub mod ownership;
pub mod pace;
pub mod rpc;

use crate::node::Node;

/// Hints plus pending ownership handoffs this node holds.
pub fn held_elsewhere(node: &Node) -> Result<u64, crate::replica::ReplicaError> {
    let hints: u64 = node
        .storage
        .hint_counts()
        .map_err(|e| crate::replica::ReplicaError::Internal(e.to_string()))?
        .iter()
        .map(|(_, c)| *c)
        .sum();
    let handoffs = ownership::pending_handoffs(node)
        .map_err(|e| crate::replica::ReplicaError::Internal(e.to_string()))?;
    Ok(hints + handoffs as u64)
}
