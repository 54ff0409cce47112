//! Reaping dead keys: a deleted key's tombstone, or a key whose versions have all expired, is
//! removed once it can no longer hide a live version anywhere. Keeping tombstones forever grows
//! storage with every delete; dropping one too early lets an older copy of the value come back
//! (delete resurrection, a classic pain of Dynamo-style stores). Expired versions are the same
//! case: a version with a TTL may have superseded an older value that a stale replica still
//! holds, so they go through the same checks. A dead key is reaped only when
//! - every version has been dead (deleted, or past its expiry) for the grace delay
//!   (`--tombstone-grace-ms`), and
//! - every primary replica of its key holds exactly this copy, and
//! - no node of the cluster holds hints or pending ownership handoffs (either may carry an
//!   older version of the key), every member is reachable, and no ring change is in flight.
//!
//! The partition's owner runs the check and then asks each primary to delete its copy only if
//! it is still exactly the copy that was checked (compare-and-delete under the key's lock),
//! so a write racing with the reap is never dropped.
//!
//! Tombstones are found by the tombstone index (`storage::Storage::scan_tombstones`, walked
//! with a cursor persisted in `meta`, so a restart continues where the walk was); expired
//! keys by the expiry index (`storage::Storage::scan_expiry`), a range read of the entries
//! due by now minus the grace. Finding either reads no live object.

use crate::handoff::held_elsewhere;
use crate::handoff::rpc::{HandoffRequest, HandoffResponse};
use crate::node::Node;
use crate::replica::locks::lock_key;
use crate::replica::reap::delete_if_unchanged;
use crate::replica::rpc::{ReplicaRequest, ReplicaResponse};
use crate::replica::{ReplicaError, blocking};
use crate::worker::{Step, Worker};
use riftkv_core::storage::{ObjectKey, WriteBatch};
use riftkv_core::types::{NodeId, PartitionId};
use riftkv_core::version::Object;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Tombstones examined per round (the throttle).
pub const MAX_CANDIDATES_PER_ROUND: usize = 256;
/// Tombstone index entries read per round at most (the walk continues there next round).
pub const MAX_TOMBSTONE_ENTRIES_PER_ROUND: usize = 4096;
/// Meta record of where the walk of the tombstone index stopped (postcard of the last object
/// key visited; absent = start from the beginning), so a restart continues where it was.
pub const TOMBSTONE_CURSOR_META: &str = "reaper.tombstone_cursor";
/// Expiry index entries read per round at most (entries of partitions this node does not own
/// stay for their owner to reap; the bound keeps a round short whatever they number).
pub const MAX_EXPIRY_ENTRIES_PER_ROUND: usize = 4096;

/// Whether an object is dead (every version a tombstone or expired) and has been for the
/// grace delay (pure). A version dead only by a clock ahead of `now_ms` does not count.
pub fn is_reapable(obj: &Object, now_ms: u64, grace_ms: u64) -> bool {
    obj.dead_since_ms()
        .and_then(|t| now_ms.checked_sub(t))
        .is_some_and(|dead_for| dead_for >= grace_ms)
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
    let mut candidates = expired_candidates(node, &partitions, now, grace_ms).await?;
    let room = MAX_CANDIDATES_PER_ROUND.saturating_sub(candidates.len());
    if room > 0 {
        let walk = TombstoneWalk {
            owned: partitions.into_iter().collect(),
            now_ms: now,
            grace_ms,
            page: MAX_TOMBSTONE_ENTRIES_PER_ROUND,
            room,
        };
        let n = node.clone();
        candidates.extend(blocking(move || walk.run(&n)).await?);
    }
    let mut reaped = 0u64;
    for (k, obj) in candidates {
        if reap_one(node, &k, &obj).await? {
            reaped += 1;
        }
    }
    Ok(reaped)
}

/// One round's walk of the tombstone index: up to `page` entries after the persisted cursor,
/// keeping the reapable keys of `owned` partitions (at most `room`).
pub(crate) struct TombstoneWalk {
    pub owned: HashSet<PartitionId>,
    pub now_ms: u64,
    pub grace_ms: u64,
    pub page: usize,
    pub room: usize,
}

impl TombstoneWalk {
    /// Reads the entries, checks each owned one against its object (under the key's lock, so
    /// a write listing the key again is kept) and drops stale entries; then stores the cursor:
    /// after the last entry examined when the page or the room ran out, else from the start.
    pub(crate) fn run(&self, node: &Node) -> Result<Vec<(ObjectKey, Object)>, ReplicaError> {
        let internal =
            |e: riftkv_core::storage::StorageError| ReplicaError::Internal(e.to_string());
        let cursor = read_cursor(node);
        let entries = node
            .storage
            .scan_tombstones(cursor.as_ref(), self.page)
            .map_err(internal)?;
        let mut next = if entries.len() >= self.page {
            entries.last().cloned()
        } else {
            None
        };
        let mut out = Vec::new();
        for k in entries {
            // Other owners' keys stay listed for them (or for the drain that drops them).
            if !self.owned.contains(&k.partition) {
                continue;
            }
            if out.len() >= self.room {
                next = Some(k);
                break;
            }
            let _guard = lock_key(&k);
            match node.local_object(&k) {
                // A damaged copy is left to repair, which lists it again if it is dead.
                Err(_) => {}
                Ok(Some(o)) if o.in_tombstone_index() => {
                    if is_reapable(&o, self.now_ms, self.grace_ms) {
                        out.push((k, o));
                    }
                }
                Ok(_) => {
                    let mut batch = WriteBatch::default();
                    batch.delete_tombstone(k);
                    node.storage.write(batch, false).map_err(internal)?;
                }
            }
        }
        if next != cursor {
            let mut batch = WriteBatch::default();
            match &next {
                Some(k) => {
                    let bytes = postcard::to_stdvec(k)
                        .map_err(|e| ReplicaError::Internal(e.to_string()))?;
                    batch.put_meta(TOMBSTONE_CURSOR_META, bytes)
                }
                None => batch.delete_meta(TOMBSTONE_CURSOR_META),
            };
            node.storage.write(batch, false).map_err(internal)?;
        }
        Ok(out)
    }
}

/// The persisted cursor of the tombstone walk. A missing or damaged one starts the walk over:
/// it only costs a pass over the index, never a key.
fn read_cursor(node: &Node) -> Option<ObjectKey> {
    match node.storage.get_meta(TOMBSTONE_CURSOR_META) {
        Ok(Some(bytes)) => match postcard::from_bytes(&bytes) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable reaper cursor; walking from the start");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable reaper cursor; walking from the start");
            None
        }
    }
}

/// Reapable expired keys of the partitions this node owns, from the expiry index entries due
/// by `now_ms - grace_ms`. Entries whose object is gone or no longer listed at that instant
/// are stale and dropped (under the key's lock, so a write listing the key again is kept).
async fn expired_candidates(
    node: &Arc<Node>,
    owned: &[PartitionId],
    now_ms: u64,
    grace_ms: u64,
) -> Result<Vec<(ObjectKey, Object)>, ReplicaError> {
    let owned: HashSet<PartitionId> = owned.iter().copied().collect();
    let n = node.clone();
    blocking(move || {
        let mut out = Vec::new();
        let cursor = n.expiry_cursor.lock().clone();
        let due = n
            .storage
            .scan_expiry(
                cursor.as_ref().map(|(at, k)| (*at, k)),
                now_ms.saturating_sub(grace_ms),
                MAX_EXPIRY_ENTRIES_PER_ROUND,
            )
            .map_err(|e| ReplicaError::Internal(e.to_string()))?;
        // A full page: the next round continues after it; a short one reached the end of
        // what is due, and the next round starts over.
        *n.expiry_cursor.lock() = if due.len() >= MAX_EXPIRY_ENTRIES_PER_ROUND {
            due.last().cloned()
        } else {
            None
        };
        for (at, k) in due {
            let _guard = lock_key(&k);
            let obj = match n.local_object(&k) {
                Ok(o) => o,
                // A damaged copy is left to repair; its listing stays.
                Err(_) => continue,
            };
            match obj {
                Some(o) if o.expiry_index_ms() == Some(at) => {
                    if owned.contains(&k.partition)
                        && is_reapable(&o, now_ms, grace_ms)
                        && out.len() < MAX_CANDIDATES_PER_ROUND
                    {
                        out.push((k, o));
                    }
                }
                _ => {
                    let mut batch = WriteBatch::default();
                    batch.delete_expiry(at, k);
                    n.storage
                        .write(batch, false)
                        .map_err(|e| ReplicaError::Internal(e.to_string()))?;
                }
            }
        }
        Ok(out)
    })
    .await
}

/// Checks every primary's copy of one dead key, then compare-and-deletes it everywhere.
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
    fn expired_keys_are_reapable_after_the_grace_delay() {
        let sib = |v: &str, ts, at| {
            Sibling::new(bytes::Bytes::from(v.to_string()), "text/plain", ts).expiring(at)
        };
        let obj = |s: Sibling| {
            Object::update(
                None,
                &VersionVector::new(),
                NodeId::from("a"),
                s,
                ConflictMode::Siblings,
                &Limits::default(),
            )
            .unwrap()
        };
        let exp = obj(sib("x", 1_000, Some(5_000)));
        assert!(!is_reapable(&exp, 4_999, 0), "not expired yet");
        assert!(!is_reapable(&exp, 5_500, 1_000), "inside the grace delay");
        assert!(is_reapable(&exp, 6_000, 1_000));
        // A value that never expires keeps the key, whatever else expired beside it.
        assert!(!is_reapable(&obj(sib("y", 1, None)), u64::MAX, 0));
        let both = Object::update(
            Some(&exp),
            &VersionVector::new(),
            NodeId::from("b"),
            sib("y", 2_000, None),
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap();
        assert!(!is_reapable(&both, u64::MAX, 0));
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
