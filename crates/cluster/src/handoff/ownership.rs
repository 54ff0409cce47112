//! Ownership handoff: moving partition data when the ring changes.
//!
//! Two duties, run every `handoff_interval` with at most `transfer_concurrency` streams at
//! once and their chunks paced to `transfer_max_bytes_per_sec` ([`super::pace`]):
//! - **transfers**: each transfer of the pending plan whose source is this node streams its
//!   partition to the new replica, chunk by chunk, waiting for each acknowledgement before the
//!   next (back-pressure). A cursor per (plan, partition, target) is persisted after every
//!   acknowledged chunk, so a restart of either side resumes where it stopped. A finished
//!   transfer is recorded in this node's member entry; gossip carries it to the claimant, which
//!   commits the plan once every transfer is done.
//! - **drains**: a partition this node still holds but no longer replicates (in the committed
//!   ring or the plan's target) is streamed to its new replicas, and each chunk's keys are
//!   deleted locally once every target acknowledged it (and only if unchanged meanwhile). This
//!   carries over the writes that reached the old replicas while the plan was pending.

use crate::handoff::pace::Pacer;
use crate::handoff::rpc::{HandoffEntry, HandoffRequest, HandoffResponse};
use crate::node::{Node, NodeError};
use crate::rpc::RpcError;
use crate::worker::{Step, Worker};
use futures::StreamExt;
use parking_lot::Mutex;
use riftkv_core::membership::state::{RingState, Transfer, TransferDone};
use riftkv_core::storage::{ObjectKey, Storage, StorageError, WriteBatch};
use riftkv_core::types::{NodeId, PartitionId};
use riftkv_core::version::StoredCopy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Entries read from storage per chunk.
pub const CHUNK_ENTRIES: usize = 256;
/// Soft cap on a chunk's payload (a single larger object still goes alone).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Partition streams running at once on one node, unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 2;
/// Meta record holding the resume cursors of the current plan's transfers.
pub const META_CURSORS: &str = "handoff_cursors";
/// Shortest wait for a chunk's acknowledgement (a receiver merges up to 4 MiB).
const CHUNK_TIMEOUT_FLOOR: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("{0}")]
    Rpc(#[from] RpcError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("peer stored {stored} of {sent} entries of a chunk")]
    Short { stored: usize, sent: usize },
    #[error("unexpected answer to a handoff chunk")]
    Unexpected,
    #[error("node is stopping")]
    Stopped,
    #[error("storage task failed: {0}")]
    Task(String),
}

/// Where a transfer stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cursor {
    /// Everything up to and including this (bucket, key) was acknowledged.
    After { bucket: Vec<u8>, key: Vec<u8> },
    /// The whole partition was acknowledged.
    Finished,
}

/// Identifies one transfer of one plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CursorKey {
    pub plan: u64,
    pub partition: PartitionId,
    pub to: NodeId,
}

/// Resume cursors of transfers, as persisted in one meta record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors {
    map: BTreeMap<CursorKey, Cursor>,
}

impl Cursors {
    pub fn get(&self, k: &CursorKey) -> Option<&Cursor> {
        self.map.get(k)
    }

    pub fn set(&mut self, k: CursorKey, c: Cursor) {
        self.map.insert(k, c);
    }

    /// Forgets cursors of every plan but `current`; true when something was dropped.
    pub fn retain_plan(&mut self, current: Option<u64>) -> bool {
        let before = self.map.len();
        self.map.retain(|k, _| Some(k.plan) == current);
        self.map.len() != before
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Cursors, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The cursors of this node, kept in memory and written through to the meta area.
pub struct CursorStore {
    storage: Arc<dyn Storage>,
    inner: Mutex<Cursors>,
}

impl CursorStore {
    /// Loads the persisted cursors. An unreadable record only costs a resend, so it is
    /// logged and replaced.
    pub fn load(storage: Arc<dyn Storage>) -> CursorStore {
        let cursors = match storage.get_meta(META_CURSORS) {
            Ok(Some(bytes)) => Cursors::decode(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "handoff cursors unreadable; transfers restart");
                Cursors::default()
            }),
            Ok(None) => Cursors::default(),
            Err(e) => {
                tracing::warn!(error = %e, "handoff cursors unreadable; transfers restart");
                Cursors::default()
            }
        };
        CursorStore {
            storage,
            inner: Mutex::new(cursors),
        }
    }

    pub fn get(&self, k: &CursorKey) -> Option<Cursor> {
        self.inner.lock().get(k).cloned()
    }

    pub fn set(&self, k: CursorKey, c: Cursor) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        inner.set(k, c);
        self.write(&inner)
    }

    /// Drops the cursors of plans that are no longer pending.
    pub fn prune(&self, current: Option<u64>) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        if inner.retain_plan(current) {
            self.write(&inner)?;
        }
        Ok(())
    }

    fn write(&self, c: &Cursors) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        if c.is_empty() {
            batch.delete_meta(META_CURSORS);
        } else {
            batch.put_meta(META_CURSORS, c.encode());
        }
        self.storage.write(batch, false)
    }
}

/// Transfers of the pending plan that `me` must still send, with the plan id; none while the
/// plan is staged (waiting for an operator's commit).
pub fn my_pending_transfers(state: &RingState, me: &NodeId) -> Vec<(u64, Transfer)> {
    let Some(plan) = state.plan.as_ref().filter(|p| !p.staged) else {
        return Vec::new();
    };
    plan.transfers
        .iter()
        .filter(|t| &t.from == me && !state.transfer_is_done(plan.id, t))
        .map(|t| (plan.id, t.clone()))
        .collect()
}

/// Partitions `me` replicates neither in the committed ring nor in the plan's target: any data
/// it holds for them must go to their replicas.
pub fn unreplicated_partitions(state: &RingState, me: &NodeId) -> Vec<PartitionId> {
    let n = state.n_val as usize;
    let target = state.target_ring();
    (0..state.ring_size())
        .filter(|&p| {
            !state.ring.preference_list(p, n).contains(me)
                && !target.preference_list(p, n).contains(me)
        })
        .collect()
}

/// Where `me` drains partition `p`: the replicas that were not replicas before the last commit
/// (they missed the writes made meanwhile). When `me` was not a replica before either, or that
/// leaves nobody, every replica gets the data (merging is idempotent).
pub fn drain_targets(state: &RingState, me: &NodeId, p: PartitionId) -> Vec<NodeId> {
    let n = state.n_val as usize;
    let now: Vec<NodeId> = state
        .ring
        .preference_list(p, n)
        .iter()
        .filter(|x| *x != me)
        .cloned()
        .collect();
    let before = state
        .previous_ring
        .as_ref()
        .map(|r| r.preference_list(p, n).to_vec())
        .filter(|b| b.contains(me));
    match before {
        Some(before) => {
            let fresh: Vec<NodeId> = now
                .iter()
                .filter(|x| !before.contains(x))
                .cloned()
                .collect();
            if fresh.is_empty() { now } else { fresh }
        }
        None => now,
    }
}

/// Cuts scanned entries to one chunk of at most `cap_bytes` (a single larger entry goes alone).
pub fn cut_chunk(scanned: Vec<(ObjectKey, Vec<u8>)>, cap_bytes: usize) -> Vec<HandoffEntry> {
    let mut out = Vec::new();
    let mut size = 0usize;
    for (k, v) in scanned {
        let e = HandoffEntry {
            bucket: k.bucket,
            key: k.key,
            object: v,
        };
        if !out.is_empty() && size + e.size() > cap_bytes {
            break;
        }
        size += e.size();
        out.push(e);
    }
    out
}

/// The next chunk of partition `p` after `cursor`, and the cursor once it is acknowledged;
/// None when the partition has been sent completely.
pub fn next_chunk(
    storage: &dyn Storage,
    p: PartitionId,
    cursor: Option<&Cursor>,
    cap_bytes: usize,
) -> Result<Option<(Vec<HandoffEntry>, Cursor)>, StorageError> {
    let after = match cursor {
        Some(Cursor::Finished) => return Ok(None),
        Some(Cursor::After { bucket, key }) => Some((bucket.as_slice(), key.as_slice())),
        None => None,
    };
    let scanned = storage.scan_partition(p, after, CHUNK_ENTRIES)?;
    let entries = cut_chunk(scanned, cap_bytes);
    Ok(entries
        .last()
        .map(|e| Cursor::After {
            bucket: e.bucket.clone(),
            key: e.key.clone(),
        })
        .map(|c| (entries, c)))
}

/// Whether this node holds any readable object of `p`.
fn holds_data(storage: &dyn Storage, p: PartitionId) -> Result<bool, StorageError> {
    Ok(!storage.scan_partition(p, None, 1)?.is_empty())
}

/// One unit of work of a handoff tick.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Job {
    Transfer {
        plan: u64,
        transfer: Transfer,
    },
    Drain {
        partition: PartitionId,
        targets: Vec<NodeId>,
    },
}

/// Drains are held back while a peer reports a newer ring: this node's idea of who replicates
/// what may be stale, and dropping data on a stale ring would lose a copy.
fn ring_is_current(node: &Node) -> bool {
    let (mine, members): (u64, Vec<NodeId>) = {
        let s = node.state.read();
        (
            s.ring_version,
            s.visible_members().map(|m| m.node_id.clone()).collect(),
        )
    };
    let versions = node.peer_ring_versions.lock();
    let reported: Vec<u64> = members
        .iter()
        .filter(|m| *m != &node.id)
        .filter_map(|m| versions.get(m).copied())
        .collect();
    reported.iter().all(|v| *v <= mine) && reported.contains(&mine)
}

/// The jobs of this tick, and the id of the pending plan.
fn plan_jobs(node: &Node) -> Result<(Option<u64>, Vec<Job>), StorageError> {
    let (plan_id, transfers, candidates) = {
        let s = node.state.read();
        let transfers = my_pending_transfers(&s, &node.id);
        let candidates: Vec<(PartitionId, Vec<NodeId>)> = unreplicated_partitions(&s, &node.id)
            .into_iter()
            .map(|p| (p, drain_targets(&s, &node.id, p)))
            .collect();
        (s.plan.as_ref().map(|p| p.id), transfers, candidates)
    };
    let mut jobs: Vec<Job> = transfers
        .into_iter()
        .map(|(plan, transfer)| Job::Transfer { plan, transfer })
        .collect();
    for (partition, targets) in candidates {
        if !targets.is_empty() && holds_data(node.storage.as_ref(), partition)? {
            jobs.push(Job::Drain { partition, targets });
        }
    }
    Ok((plan_id, jobs))
}

/// Handoffs this node still has to do: its unfinished transfers of the pending plan plus the
/// partitions it holds but no longer replicates.
pub fn pending_handoffs(node: &Node) -> Result<usize, StorageError> {
    Ok(plan_jobs(node)?.1.len())
}

/// Starts the ownership handoff duty; it stops on the node's shutdown.
pub fn spawn(node: Arc<Node>) -> JoinHandle<()> {
    let worker = OwnershipWorker {
        cursors: Arc::new(CursorStore::load(node.storage.clone())),
        pacer: Arc::new(Mutex::new(Pacer::default())),
        node: node.clone(),
    };
    crate::worker::spawn(&node.workers, &node.shutdown, worker).0
}

/// Ownership handoff as a worker: one [`tick`] per `handoff_interval` once joined.
struct OwnershipWorker {
    node: Arc<Node>,
    cursors: Arc<CursorStore>,
    /// Shared by every stream of this node, so the byte limit holds for all of them together.
    pacer: Arc<Mutex<Pacer>>,
}

impl Worker for OwnershipWorker {
    fn name(&self) -> &'static str {
        "ownership_handoff"
    }
    fn period(&self) -> Duration {
        self.node.settings.handoff_interval
    }
    async fn step(&mut self) -> Result<Step, String> {
        if *self.node.left.borrow() {
            return Ok(Step::Done);
        }
        if !self.node.joined.load(Ordering::SeqCst) {
            return Ok(Step::Idle);
        }
        tick(&self.node, &self.cursors, &self.pacer).await;
        // `tick` logs and retries its own failures; the gauge it sets tells busy from idle.
        if self.node.metrics.handoffs_pending.get() > 0 {
            Ok(Step::Busy)
        } else {
            Ok(Step::Idle)
        }
    }
}

/// One round: plan the jobs, then run them, `transfer_concurrency` at a time.
pub async fn tick(node: &Arc<Node>, cursors: &Arc<CursorStore>, pacer: &Arc<Mutex<Pacer>>) {
    let (plan_id, jobs) = match plan_jobs(node) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "cannot plan ownership handoffs");
            return;
        }
    };
    node.metrics.handoffs_pending.set(jobs.len() as i64);
    if let Err(e) = cursors.prune(plan_id) {
        tracing::warn!(error = %e, "cannot prune handoff cursors");
    }
    let drains_allowed = ring_is_current(node);
    let concurrency = node.settings.transfer_concurrency.max(1);
    futures::stream::iter(jobs)
        .for_each_concurrent(concurrency, |job| async move {
            match job {
                Job::Transfer { plan, transfer } => {
                    if let Err(e) = run_transfer(node, cursors, pacer, plan, &transfer).await {
                        tracing::debug!(partition = transfer.partition, to = %transfer.to,
                            error = %e, "ownership transfer interrupted; retrying next round");
                    }
                }
                Job::Drain { partition, targets } if drains_allowed => {
                    if let Err(e) = run_drain(node, pacer, partition, &targets).await {
                        tracing::debug!(partition, error = %e,
                            "partition drain interrupted; retrying next round");
                    }
                }
                Job::Drain { .. } => {}
            }
        })
        .await;
}

/// How long to wait for the acknowledgement of a chunk of `bytes`: the floor (or the call
/// timeout, if longer) for each [`CHUNK_BYTES`] begun. One object over the cap goes alone; with
/// the wait of a full chunk, a loaded receiver that needs longer to merge it timed out on every
/// attempt and the partition, resent from the same cursor, never finished.
pub fn chunk_timeout(rpc_timeout: Duration, bytes: u64) -> Duration {
    let caps = bytes.div_ceil(CHUNK_BYTES as u64).max(1);
    rpc_timeout
        .max(CHUNK_TIMEOUT_FLOOR)
        .saturating_mul(u32::try_from(caps).unwrap_or(u32::MAX))
}

/// Sends one chunk, once the byte limit allows it, and waits for its acknowledgement.
async fn send_chunk(
    node: &Arc<Node>,
    pacer: &Mutex<Pacer>,
    to: &NodeId,
    partition: PartitionId,
    entries: Vec<HandoffEntry>,
) -> Result<usize, HandoffError> {
    let bytes: u64 = entries.iter().map(|e| e.size() as u64).sum();
    let wait = pacer.lock().charge(
        node.clock.now_ms(),
        bytes,
        node.settings.transfer_max_bytes_per_sec,
    );
    if !wait.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = node.shutdown.cancelled() => return Err(HandoffError::Stopped),
        }
    }
    let plan = node.state.read().plan.as_ref().map(|p| p.id);
    let sent = entries.len();
    let req = HandoffRequest::Chunk { partition, entries };
    let timeout = chunk_timeout(node.settings.rpc_timeout, bytes);
    match node.call(to, req, timeout).await? {
        HandoffResponse::Ack { stored } if stored == sent => {
            node.transfer_bytes.add(plan, bytes);
            Ok(stored)
        }
        HandoffResponse::Ack { stored } => Err(HandoffError::Short { stored, sent }),
        #[allow(unreachable_patterns)]
        _ => Err(HandoffError::Unexpected),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, HandoffError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HandoffError::Task(e.to_string()))?
        .map_err(HandoffError::from)
}

fn plan_is_current(node: &Node, plan: u64) -> bool {
    node.state.read().plan.as_ref().map(|p| p.id) == Some(plan)
}

/// Streams one partition to one new replica, resuming from its persisted cursor, and records
/// the finished transfer.
async fn run_transfer(
    node: &Arc<Node>,
    cursors: &Arc<CursorStore>,
    pacer: &Mutex<Pacer>,
    plan: u64,
    t: &Transfer,
) -> Result<(), HandoffError> {
    let key = CursorKey {
        plan,
        partition: t.partition,
        to: t.to.clone(),
    };
    let mut cursor = cursors.get(&key);
    let mut chunks = 0usize;
    loop {
        if node.shutdown.is_cancelled() {
            return Err(HandoffError::Stopped);
        }
        if !plan_is_current(node, plan) {
            return Ok(());
        }
        let storage = node.storage.clone();
        let c = cursor.clone();
        let p = t.partition;
        let next =
            blocking(move || next_chunk(storage.as_ref(), p, c.as_ref(), CHUNK_BYTES)).await?;
        let Some((entries, after)) = next else {
            break;
        };
        send_chunk(node, pacer, &t.to, t.partition, entries).await?;
        cursors.set(key.clone(), after.clone())?;
        cursor = Some(after);
        chunks += 1;
    }
    if cursor != Some(Cursor::Finished) {
        cursors.set(key, Cursor::Finished)?;
    }
    let me = node.id.clone();
    let done = TransferDone {
        plan,
        partition: t.partition,
        to: t.to.clone(),
    };
    let recorded = node
        .update_state(|s| {
            if s.plan.as_ref().map(|p| p.id) != Some(plan) {
                return (false, false);
            }
            let already = s
                .member(&me)
                .is_some_and(|m| m.transfers_done.contains(&done));
            s.mark_transfer_done(&me, done);
            (!already, !already)
        })
        .await?;
    if recorded {
        tracing::info!(partition = t.partition, to = %t.to, chunks, plan,
            "partition handed off to its new replica");
    }
    Ok(())
}

/// Whether `p` is still not replicated here and the targets still cover its drain.
fn drain_still_valid(node: &Node, p: PartitionId, targets: &[NodeId]) -> bool {
    let s = node.state.read();
    let n = s.n_val as usize;
    !s.ring.preference_list(p, n).contains(&node.id)
        && !s.target_ring().preference_list(p, n).contains(&node.id)
        && drain_targets(&s, &node.id, p)
            .iter()
            .all(|x| targets.contains(x))
}

/// Streams a partition this node no longer replicates to its replicas, deleting each chunk
/// locally once every target acknowledged it.
async fn run_drain(
    node: &Arc<Node>,
    pacer: &Mutex<Pacer>,
    partition: PartitionId,
    targets: &[NodeId],
) -> Result<(), HandoffError> {
    let mut cursor: Option<Cursor> = None;
    let mut dropped = 0usize;
    loop {
        if node.shutdown.is_cancelled() {
            return Err(HandoffError::Stopped);
        }
        let storage = node.storage.clone();
        let c = cursor.clone();
        let next =
            blocking(move || next_chunk(storage.as_ref(), partition, c.as_ref(), CHUNK_BYTES))
                .await?;
        let Some((entries, after)) = next else {
            break;
        };
        for to in targets {
            send_chunk(node, pacer, to, partition, entries.clone()).await?;
        }
        if !drain_still_valid(node, partition, targets) {
            return Ok(());
        }
        let storage = node.storage.clone();
        dropped +=
            blocking(move || delete_unchanged(storage.as_ref(), partition, &entries)).await?;
        node.aae_trees.note_write(partition);
        cursor = Some(after);
    }
    if dropped > 0 {
        tracing::info!(partition, keys = dropped, targets = ?targets,
            "drained a partition this node no longer replicates");
    }
    Ok(())
}

/// Deletes the sent entries whose stored bytes are still the ones sent; a key written again
/// meanwhile stays for the next drain round.
pub fn delete_unchanged(
    storage: &dyn Storage,
    partition: PartitionId,
    entries: &[HandoffEntry],
) -> Result<usize, StorageError> {
    let keys: Vec<ObjectKey> = entries
        .iter()
        .map(|e| ObjectKey::new(partition, e.bucket.clone(), e.key.clone()))
        .collect();
    // Compare and delete under the keys' locks so a write landing in between is never dropped.
    let _guards = crate::replica::locks::lock_keys(keys.iter());
    let mut batch = WriteBatch::default();
    for (e, k) in entries.iter().zip(keys) {
        match storage.get_object(&k) {
            Ok(Some(bytes)) if bytes == e.object => {
                // Its index listings go with it (an unlisted key's delete costs nothing).
                if let Ok(copy) = StoredCopy::decode(&bytes) {
                    if let Some(t) = copy.object.expiry_index_ms() {
                        batch.delete_expiry(t, k.clone());
                    }
                    if copy.object.in_tombstone_index() {
                        batch.delete_tombstone(k.clone());
                    }
                }
                batch.delete_object(k);
            }
            Ok(_) | Err(StorageError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let n = batch.len();
    if n > 0 {
        storage.write(batch, true)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::membership::state::MemberStatus;
    use riftkv_core::membership::state::fixtures::{info, settle};
    use riftkv_core::storage::MemoryStorage;
    use riftkv_core::version::{ConflictMode, Limits, Object, Sibling, VersionVector};
    use std::collections::BTreeSet;

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn obj(v: &[u8]) -> Vec<u8> {
        Object::update(
            None,
            &VersionVector::default(),
            id("a"),
            Sibling::new(v.to_vec(), "application/octet-stream", 1),
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap()
        .encode()
    }

    fn fill(storage: &MemoryStorage, p: PartitionId, count: usize, size: usize) {
        let mut batch = WriteBatch::default();
        for i in 0..count {
            let bucket = if i % 3 == 0 {
                b"bb".to_vec()
            } else {
                b"a".to_vec()
            };
            batch.put_object(
                ObjectKey::new(p, bucket, format!("key{i:05}").into_bytes()),
                obj(&vec![b'x'; size]),
            );
        }
        storage.write(batch, false).unwrap();
    }

    #[test]
    fn a_chunk_over_the_byte_cap_gets_a_proportionally_longer_wait() {
        let rpc = Duration::from_secs(2);
        let cap = CHUNK_BYTES as u64;
        assert_eq!(chunk_timeout(rpc, 0), CHUNK_TIMEOUT_FLOOR);
        assert_eq!(chunk_timeout(rpc, cap), CHUNK_TIMEOUT_FLOOR);
        // The largest object alone (16 MiB) takes four times a full chunk's merge.
        assert_eq!(chunk_timeout(rpc, 4 * cap), CHUNK_TIMEOUT_FLOOR * 4);
        assert_eq!(chunk_timeout(rpc, 4 * cap + 1), CHUNK_TIMEOUT_FLOOR * 5);
        // A configured call timeout above the floor counts per cap too.
        let slow = Duration::from_secs(30);
        assert_eq!(chunk_timeout(slow, 2 * cap), slow * 2);
        assert_eq!(chunk_timeout(rpc, u64::MAX), CHUNK_TIMEOUT_FLOOR * u32::MAX);
    }

    #[test]
    fn chunks_respect_the_byte_cap_but_never_stall() {
        let scanned: Vec<(ObjectKey, Vec<u8>)> = (0..10)
            .map(|i| (ObjectKey::new(0, b"b".to_vec(), vec![i]), vec![0u8; 100]))
            .collect();
        let c = cut_chunk(scanned.clone(), 350);
        assert_eq!(c.len(), 3);
        assert!(c.iter().map(|e| e.size()).sum::<usize>() <= 350);
        let one = cut_chunk(scanned.clone(), 10);
        assert_eq!(one.len(), 1, "an entry larger than the cap still goes");
        assert_eq!(cut_chunk(scanned, usize::MAX).len(), 10);
        assert!(cut_chunk(Vec::new(), 10).is_empty());
    }

    #[test]
    fn streaming_covers_the_partition_once_and_resumes_after_restart() {
        let storage: Arc<MemoryStorage> = Arc::new(MemoryStorage::new());
        fill(&storage, 5, 700, 10);
        fill(&storage, 6, 50, 10);
        let dyn_storage: Arc<dyn Storage> = storage.clone();
        let key = CursorKey {
            plan: 9,
            partition: 5,
            to: id("b"),
        };
        let mut sent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // First run: two chunks, then the "process" dies.
        {
            let cursors = CursorStore::load(dyn_storage.clone());
            for _ in 0..2 {
                let (entries, after) = next_chunk(
                    dyn_storage.as_ref(),
                    5,
                    cursors.get(&key).as_ref(),
                    CHUNK_BYTES,
                )
                .unwrap()
                .unwrap();
                assert!(entries.len() <= CHUNK_ENTRIES);
                sent.extend(entries.into_iter().map(|e| (e.bucket, e.key)));
                cursors.set(key.clone(), after).unwrap();
            }
        }
        assert_eq!(sent.len(), 2 * CHUNK_ENTRIES);
        // Restart: the cursor comes back from the meta area.
        let cursors = CursorStore::load(dyn_storage.clone());
        assert!(matches!(cursors.get(&key), Some(Cursor::After { .. })));
        loop {
            let next = next_chunk(
                dyn_storage.as_ref(),
                5,
                cursors.get(&key).as_ref(),
                CHUNK_BYTES,
            )
            .unwrap();
            let Some((entries, after)) = next else { break };
            sent.extend(entries.into_iter().map(|e| (e.bucket, e.key)));
            cursors.set(key.clone(), after).unwrap();
        }
        cursors.set(key.clone(), Cursor::Finished).unwrap();
        assert_eq!(sent.len(), 700, "every key exactly once");
        let unique: BTreeSet<_> = sent.iter().cloned().collect();
        assert_eq!(unique.len(), 700);
        assert!(
            next_chunk(
                dyn_storage.as_ref(),
                5,
                Some(&Cursor::Finished),
                CHUNK_BYTES
            )
            .unwrap()
            .is_none()
        );
        // Cursors of a replaced plan are forgotten, and persisted so.
        cursors.prune(Some(10)).unwrap();
        assert!(CursorStore::load(dyn_storage).get(&key).is_none());
    }

    #[test]
    fn small_cap_cuts_chunks_by_size() {
        let storage = MemoryStorage::new();
        fill(&storage, 1, 20, 1000);
        let (entries, _) = next_chunk(&storage, 1, None, 3500).unwrap().unwrap();
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn only_unchanged_entries_are_deleted() {
        let storage = MemoryStorage::new();
        fill(&storage, 2, 10, 5);
        let (entries, _) = next_chunk(&storage, 2, None, CHUNK_BYTES).unwrap().unwrap();
        // One key is written again after it was sent.
        let changed = &entries[4];
        let mut b = WriteBatch::default();
        b.put_object(
            ObjectKey::new(2, changed.bucket.clone(), changed.key.clone()),
            obj(b"newer"),
        );
        storage.write(b, false).unwrap();
        assert_eq!(delete_unchanged(&storage, 2, &entries).unwrap(), 9);
        let left = storage.scan_partition(2, None, 100).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0.key, changed.key);
    }

    fn settled(ids: &[&str]) -> RingState {
        let mut s = RingState::found("c".into(), 16, 3, info(ids[0]));
        for i in &ids[1..] {
            s.add_member(info(i)).unwrap();
        }
        settle(&mut s);
        assert!(s.locally_settled());
        s
    }

    #[test]
    fn pending_transfers_are_the_sources_own_and_not_done() {
        let mut s = settled(&["a", "b", "c"]);
        s.add_member(info("d")).unwrap();
        s.claimant_step(&id("a"));
        let plan = s.plan.clone().unwrap();
        let all: usize = ["a", "b", "c", "d"]
            .iter()
            .map(|x| my_pending_transfers(&s, &id(x)).len())
            .sum();
        assert_eq!(all, plan.transfers.len());
        assert!(my_pending_transfers(&s, &id("d")).is_empty());
        let (pid, first) = my_pending_transfers(&s, &plan.transfers[0].from)[0].clone();
        assert_eq!(pid, plan.id);
        s.mark_transfer_done(
            &first.from,
            TransferDone {
                plan: pid,
                partition: first.partition,
                to: first.to.clone(),
            },
        );
        assert!(
            !my_pending_transfers(&s, &first.from)
                .iter()
                .any(|(_, t)| t == &first)
        );
        // The target of a pending transfer does not drain what it receives.
        for t in &plan.transfers {
            assert!(!unreplicated_partitions(&s, &t.to).contains(&t.partition));
        }
    }

    #[test]
    fn a_staged_plan_sends_nothing_until_committed() {
        use riftkv_core::membership::state::ChangeMode;
        let mut s = settled(&["a", "b", "c"]);
        s.add_member(info("d")).unwrap();
        s.claimant_step_in(&id("a"), ChangeMode::Staged);
        let plan = s.plan.clone().unwrap();
        assert!(plan.staged && !plan.transfers.is_empty());
        let pending = |s: &RingState| -> usize {
            ["a", "b", "c", "d"]
                .iter()
                .map(|x| my_pending_transfers(s, &id(x)).len())
                .sum()
        };
        assert_eq!(pending(&s), 0);
        s.commit_staged(&id("b")).unwrap();
        assert_eq!(pending(&s), plan.transfers.len());
    }

    #[test]
    fn a_leaver_drains_to_the_replicas_that_are_new() {
        let mut s = settled(&["a", "b", "c", "d"]);
        let before = s.ring.clone();
        s.set_status(&id("d"), MemberStatus::Leaving).unwrap();
        // While the plan is pending d still replicates its partitions.
        s.claimant_step(&id("a"));
        assert!(s.plan.is_some());
        let held = before.replicated_partitions(&id("d"), 3);
        assert!(
            held.iter()
                .all(|p| !unreplicated_partitions(&s, &id("d")).contains(p))
        );
        settle(&mut s);
        assert!(s.plan.is_none());
        assert_eq!(
            unreplicated_partitions(&s, &id("d")).len(),
            16,
            "d replicates nothing once committed"
        );
        for p in held {
            let targets = drain_targets(&s, &id("d"), p);
            let old = before.preference_list(p, 3);
            let new = s.ring.preference_list(p, 3);
            assert!(!targets.is_empty());
            for t in &targets {
                assert!(
                    new.contains(t) && !old.contains(t),
                    "{t} is a new replica of {p}"
                );
            }
            for x in new {
                assert!(old.contains(x) || targets.contains(x));
            }
        }
        // A node that was never a replica of p sends to the whole list.
        let s2 = settled(&["a", "b", "c", "d", "e"]);
        let p = (0..16)
            .find(|p| !s2.ring.preference_list(*p, 3).contains(&id("e")))
            .unwrap();
        let mut s3 = s2.clone();
        s3.previous_ring = None;
        assert_eq!(drain_targets(&s3, &id("e"), p).len(), 3);
    }
}
