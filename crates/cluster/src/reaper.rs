//! Tombstone reaping: a deleted key's tombstone is removed once it can no longer hide a live
//! version anywhere. Keeping tombstones forever grows storage with every delete; dropping one
//! too early lets an older copy of the value come back (delete resurrection, a classic pain of
//! Dynamo-style stores). A tombstone is reaped only when
//! - it is older than the grace delay (`--tombstone-grace-ms`), and
//! - every primary replica of its key holds exactly this tombstone, and
//! - no node of the cluster holds hints or pending ownership handoffs (either may carry an
//!   older version of the key), every member is reachable, and no ring change is in flight.
//!
//! The partition's owner runs the check and then asks each primary to delete its copy only if
//! it is still exactly the tombstone that was checked (compare-and-delete under the key's lock),
//! so a write racing with the reap is never dropped.

use crate::handoff::held_elsewhere;
use crate::handoff::rpc::{HandoffRequest, HandoffResponse};
use crate::node::Node;
use crate::replica::reap::delete_if_unchanged;
use crate::replica::rpc::{ReplicaRequest, ReplicaResponse};
use crate::replica::{ReplicaError, blocking};
use crate::worker::{Step, Worker};
use riftkv_core::storage::ObjectKey;
use riftkv_core::types::NodeId;
use riftkv_core::version::Object;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Tombstones examined per round (the throttle).
pub const MAX_CANDIDATES_PER_ROUND: usize = 256;
/// Objects scanned per storage read.
const SCAN_CHUNK: usize = 256;

/// Whether an object is a tombstone old enough to reap (pure).
pub fn is_reapable(obj: &Object, now_ms: u64, grace_ms: u64) -> bool {
    obj.all_deleted() && now_ms.saturating_sub(obj.max_last_modified_ms()) >= grace_ms
}

/// Whether every replica's copy is exactly the local tombstone (pure). A missing, damaged or
/// different copy means some replica could still resurrect or lose something: no reap.
pub fn all_copies_match(local: &Object, copies: &[Option<Object>]) -> bool {
    copies.iter().all(|c| c.as_ref() == Some(local))
}

/// Starts the reaper: one round every minute (or every ten gossip rounds, when faster).
pub fn spawn(node: Arc<Node>) -> JoinHandle<()> {
    let worker = ReaperWorker { node: node.clone() };
    crate::worker::spawn(&node.workers, &node.shutdown, worker).0
}

/// The reaper as a worker: busy when a round reaped something.
struct ReaperWorker {
    node: Arc<Node>,
}

impl Worker for ReaperWorker {
    fn name(&self) -> &'static str {
        "reaper"
    }
    fn period(&self) -> Duration {
        (self.node.settings.gossip_interval * 10).min(Duration::from_secs(60))
    }
    /// A round is bounded by [`MAX_CANDIDATES_PER_ROUND`]; it finishes before the worker stops.
    fn cancel_step_on_shutdown(&self) -> bool {
        false
    }
    async fn step(&mut self) -> Result<Step, String> {
        match reap_once(&self.node).await {
            Ok(0) => Ok(Step::Idle),
            Ok(n) => {
                tracing::debug!(reaped = n, "reaped tombstones");
                Ok(Step::Busy)
            }
            Err(e) => {
                tracing::warn!(error = %e, "tombstone reaping round failed");
                Err(e.to_string())
            }
        }
    }
}

/// True when the whole cluster is quiet enough for reaping: settled ring, every member
/// reachable, and no node holding hints or pending handoffs.
async fn cluster_is_quiet(node: &Arc<Node>) -> Result<bool, ReplicaError> {
    let others: Vec<NodeId> = {
        let s = node.state.read();
        if !s.locally_settled() {
            return Ok(false);
        }
        s.visible_members()
            .map(|m| m.node_id.clone())
            .filter(|id| id != &node.id)
            .collect()
    };
    if others.iter().any(|id| !node.is_reachable(id)) {
        return Ok(false);
    }
    let n = node.clone();
    if blocking(move || held_elsewhere(&n)).await? > 0 {
        return Ok(false);
    }
    for id in &others {
        let r = node
            .call(id, HandoffRequest::HintsHeld, node.settings.rpc_timeout)
            .await;
        match r {
            Ok(HandoffResponse::HintsHeld { count: 0 }) => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// One reaping round over the partitions this node owns. Returns how many tombstones went.
pub async fn reap_once(node: &Arc<Node>) -> Result<u64, ReplicaError> {
    if !cluster_is_quiet(node).await? {
        return Ok(0);
    }
    let grace_ms = u64::try_from(node.settings.tombstone_grace.as_millis()).unwrap_or(u64::MAX);
    let now = node.clock.now_ms();
    let partitions = node.state.read().ring.partitions_of(&node.id);
    let mut candidates: Vec<(ObjectKey, Object)> = Vec::new();
    'scan: for p in partitions {
        let mut after: Option<(Vec<u8>, Vec<u8>)> = None;
        loop {
            let (n, a) = (node.clone(), after.clone());
            let chunk = blocking(move || {
                n.storage
                    .scan_partition(
                        p,
                        a.as_ref().map(|(b, k)| (b.as_slice(), k.as_slice())),
                        SCAN_CHUNK,
                    )
                    .map_err(|e| ReplicaError::Internal(e.to_string()))
            })
            .await?;
            let full = chunk.len() >= SCAN_CHUNK;
            for (k, bytes) in chunk {
                after = Some((k.bucket.clone(), k.key.clone()));
                if let Ok(obj) = Object::decode(&bytes)
                    && is_reapable(&obj, now, grace_ms)
                {
                    candidates.push((k, obj));
                    if candidates.len() >= MAX_CANDIDATES_PER_ROUND {
                        break 'scan;
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
    let mut reaped = 0u64;
    for (k, obj) in candidates {
        if reap_one(node, &k, &obj).await? {
            reaped += 1;
        }
    }
    Ok(reaped)
}

/// Checks every primary's copy of one tombstone, then compare-and-deletes it everywhere.
async fn reap_one(node: &Arc<Node>, k: &ObjectKey, obj: &Object) -> Result<bool, ReplicaError> {
    let (primaries, ring_version) = {
        let s = node.state.read();
        let n = s.bucket_props(&k.bucket).n as usize;
        (
            s.ring.preference_list(k.partition, n).to_vec(),
            s.ring_version,
        )
    };
    let others: Vec<&NodeId> = primaries.iter().filter(|id| **id != node.id).collect();
    // Every primary must route by our ring, or "every primary holds it" means nothing.
    {
        let seen = node.peer_ring_versions.lock();
        if others.iter().any(|id| seen.get(*id) != Some(&ring_version)) {
            return Ok(false);
        }
    }
    let mut copies = Vec::with_capacity(others.len());
    for id in &others {
        let req = ReplicaRequest::ReplicaGet {
            partition: k.partition,
            bucket: k.bucket.clone(),
            key: k.key.clone(),
            hinted_for: None,
        };
        let copy = match crate::replica::rpc::call(node, id, req, node.settings.rpc_timeout).await {
            Ok(ReplicaResponse::Object(Some(bytes))) => Object::decode(&bytes).ok(),
            _ => None,
        };
        copies.push(copy);
    }
    if !all_copies_match(obj, &copies) {
        return Ok(false);
    }
    let expected = obj.encode();
    // Replicas first, this node last: until every replica is fenced, this copy is the one
    // stale source a repair could read, and it goes only after them.
    for id in &others {
        let req = ReplicaRequest::Reap {
            partition: k.partition,
            bucket: k.bucket.clone(),
            key: k.key.clone(),
            expected: expected.clone(),
            ring_version,
        };
        // A replica that fails or refuses keeps its tombstone; a later round retries.
        let _ = crate::replica::rpc::call(node, id, req, node.settings.rpc_timeout).await;
    }
    let (n, key) = (node.clone(), k.clone());
    blocking(move || delete_if_unchanged(&n, &key, &expected, ring_version)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::version::{ConflictMode, Limits, Sibling, VersionVector};

    fn write(stored: Option<&Object>, ctx: &VersionVector, v: Option<&str>, ts: u64) -> Object {
        let sib = match v {
            Some(v) => Sibling::new(bytes::Bytes::from(v.to_string()), "text/plain", ts),
            None => Sibling::tombstone(ts),
        };
        Object::update(
            stored,
            ctx,
            NodeId::from("a"),
            sib,
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn only_old_pure_tombstones_are_reapable() {
        let live = write(None, &VersionVector::new(), Some("x"), 1_000);
        assert!(!is_reapable(&live, 10_000_000, 10));
        let dead = write(Some(&live), &live.context(), None, 2_000);
        assert!(dead.all_deleted());
        assert!(!is_reapable(&dead, 2_500, 1_000), "inside the grace delay");
        assert!(is_reapable(&dead, 3_000, 1_000));
        // A concurrent write beside the tombstone keeps the key.
        let both = write(Some(&dead), &VersionVector::new(), Some("y"), 2_100);
        assert!(!is_reapable(&both, 10_000_000, 0));
    }

    #[test]
    fn every_copy_must_be_exactly_the_tombstone() {
        let live = write(None, &VersionVector::new(), Some("x"), 1);
        let dead = write(Some(&live), &live.context(), None, 2);
        assert!(all_copies_match(
            &dead,
            &[Some(dead.clone()), Some(dead.clone())]
        ));
        assert!(!all_copies_match(&dead, &[Some(dead.clone()), None]));
        assert!(!all_copies_match(&dead, &[Some(live.clone())]));
        assert!(all_copies_match(&dead, &[]));
    }
}
