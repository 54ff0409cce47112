//! Active anti-entropy: replicas of a partition compare Merkle trees of their keys and sync
//! the keys that differ, so copies missed by hinted handoff and read repair (hints disabled or
//! lost, keys never read, damaged records) converge anyway.
//!
//! One exchange = one partition with one peer. The initiator builds its tree by scanning the
//! partition, asks the peer for its segment hashes (one message: [`merkle::DEFAULT_SEGMENTS`]
//! u64s, 8 KiB, so inner levels are not exchanged; each side computes them), compares roots
//! and then descends to the differing segments, fetches the peer's (bucket, key, leaf hash)
//! lists for those, and repairs every key whose hash differs or is missing on either side: it
//! reads both copies, merges them (`sync_mode`) and writes the merge to each side that lacks
//! something. Merging is idempotent and commutative, so a write racing an exchange is never
//! lost, and both directions are repaired by one exchange.
//!
//! Only keys of buckets both nodes are primaries for are compared (a bucket with a smaller `n`
//! lives on fewer replicas); both sides filter their trees by that rule, and each key is
//! checked again before it is repaired.
//!
//! One scan of a partition builds its trees for every peer the partition is shared with, and
//! the node keeps them (`node::trees`) until a write to that partition, a new ring or their
//! maximum age makes them stale: the hashes of every (partition, peer) of the rotation, the
//! whole trees (with keys) of a few. A quiet node therefore answers and starts exchanges
//! without reading an object, and reads a partition's keys again only when it changed or when
//! a segment differs. I/O is bounded by one partition scan per exchange at most, one exchange
//! per `aae_interval`, and at most [`MAX_KEYS_PER_EXCHANGE`] keys repaired per exchange.
//! Exchanges pause while a ring change is pending, and a peer refuses one when its ring
//! differs from the initiator's.

pub mod rpc;

#[cfg(test)]
mod cluster_tests;

use crate::node::Node;
use crate::node::trees::TreeKey;
use crate::replica::copy::store_copy;
use crate::replica::rpc::{ReplicaRequest, ReplicaResponse};
use crate::replica::store::StoreError;
use crate::rpc::RpcError;
use crate::worker::{FirstTick, Step, Worker};
use futures::StreamExt;
use merkle::{KeyHash, MerkleError, MerkleTree, SegmentTree};
use riftkv_core::merkle;
use riftkv_core::storage::{ObjectKey, StorageError, WriteBatch};
use riftkv_core::types::{NodeId, PartitionId};
use riftkv_core::version::Object;
use rpc::{AaeRequest, AaeResponse};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Pause between exchanges on a real node.
pub const DEFAULT_AAE_INTERVAL: Duration = Duration::from_secs(60);
/// Segments whose keys are asked for in one message.
pub const SEGMENTS_PER_CALL: usize = 64;
/// Most keys repaired by one exchange (the rest are found again by a later one).
pub const MAX_KEYS_PER_EXCHANGE: usize = 4096;
/// Keys repaired concurrently.
const REPAIR_CONCURRENCY: usize = 8;
/// Objects read per storage call while building a tree.
const SCAN_CHUNK: usize = 512;
/// AAE-area key of the rotation cursor (which partition and peer come next).
const CURSOR_KEY: &[u8] = b"exchange_cursor";

#[derive(Debug, thiserror::Error)]
pub enum AaeError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Rpc(#[from] RpcError),
    #[error("merkle tree: {0}")]
    Merkle(#[from] MerkleError),
    /// The two nodes do not route by the same ring right now; the exchange waits.
    #[error("ring not settled for anti-entropy: {0}")]
    Ring(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
    #[error("repair failed: {0}")]
    Repair(String),
    #[error("anti-entropy task failed: {0}")]
    Task(String),
}

/// What one exchange found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeReport {
    pub partition: PartitionId,
    pub peer: NodeId,
    /// Keys in the local tree (shared buckets only); 0 when no segment differed, as the keys
    /// were then not read.
    pub local_keys: usize,
    pub segments_differing: usize,
    pub keys_differing: usize,
    /// Keys whose copy changed on either side.
    pub keys_repaired: u64,
    pub keys_failed: u64,
    /// Keys skipped because the peer is not a primary for their bucket.
    pub keys_skipped: u64,
    /// The per-exchange bound stopped the repair early.
    pub truncated: bool,
}

/// Starts the exchange loop: one exchange every `aae_interval`, stopped by the node's
/// shutdown token.
pub fn spawn(node: Arc<Node>) -> JoinHandle<()> {
    let worker = AaeWorker { node: node.clone() };
    crate::worker::spawn(&node.workers, &node.shutdown, worker).0
}

/// Anti-entropy as a worker: the first exchange one period after start.
struct AaeWorker {
    node: Arc<Node>,
}

impl Worker for AaeWorker {
    fn name(&self) -> &'static str {
        "anti_entropy"
    }
    fn period(&self) -> Duration {
        self.node
            .settings
            .aae_interval
            .max(Duration::from_millis(10))
    }
    fn first_tick(&self) -> FirstTick {
        FirstTick::AfterPeriod
    }
    async fn step(&mut self) -> Result<Step, String> {
        match exchange_once(&self.node).await {
            Ok(Some(rep)) if rep.keys_differing > 0 => {
                tracing::info!(
                    partition = rep.partition,
                    peer = %rep.peer,
                    differing = rep.keys_differing,
                    repaired = rep.keys_repaired,
                    failed = rep.keys_failed,
                    "anti-entropy exchange repaired keys"
                );
                Ok(Step::Busy)
            }
            Ok(_) => Ok(Step::Idle),
            // A ring in motion is a reason to wait, not a failure.
            Err(AaeError::Ring(why)) => {
                tracing::debug!(error = %why, "anti-entropy exchange skipped");
                Ok(Step::Idle)
            }
            Err(e) => {
                tracing::debug!(error = %e, "anti-entropy exchange skipped");
                Err(e.to_string())
            }
        }
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AaeError> + Send + 'static,
) -> Result<T, AaeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AaeError::Task(e.to_string()))?
}

/// One exchange with the next (partition, peer) of the rotation: every partition this node
/// is a primary of in turn, and for each the reachable other primaries in turn. None when
/// there is nothing to exchange (no partition with a reachable peer, or a ring change is
/// pending).
pub async fn exchange_once(node: &Arc<Node>) -> Result<Option<ExchangeReport>, AaeError> {
    let n = node.clone();
    let cursor = run_blocking(move || read_cursor(&n)).await?;
    let Some((next, partition, peer)) = pick_target(node, cursor) else {
        return Ok(None);
    };
    let n = node.clone();
    run_blocking(move || write_cursor(&n, next)).await?;
    exchange(node, partition, &peer).await.map(Some)
}

fn read_cursor(node: &Node) -> Result<u64, AaeError> {
    Ok(match node.storage.get_aae(CURSOR_KEY) {
        Ok(Some(b)) => b.try_into().map(u64::from_be_bytes).unwrap_or(0),
        Ok(None) => 0,
        // A damaged cursor only restarts the rotation; the next write replaces it.
        Err(StorageError::Corrupt { .. }) => 0,
        Err(e) => return Err(e.into()),
    })
}

fn write_cursor(node: &Node, cursor: u64) -> Result<(), AaeError> {
    let mut batch = WriteBatch::default();
    batch.put_aae(CURSOR_KEY.to_vec(), cursor.to_be_bytes().to_vec());
    node.storage.write(batch, false)?;
    Ok(())
}

/// The first (partition, reachable peer) at or after `cursor` in the rotation, with the
/// cursor to continue from.
fn pick_target(node: &Node, cursor: u64) -> Option<(u64, PartitionId, NodeId)> {
    // Each partition with its other primaries, read under the state lock and checked for
    // reachability after it is released.
    let candidates: Vec<(PartitionId, Vec<NodeId>)> = {
        let s = node.state.read();
        if s.ownership_moving() {
            return None;
        }
        let n = s.n_val as usize;
        s.ring
            .replicated_partitions(&node.id, n)
            .into_iter()
            .map(|p| (p, s.ring.preference_list(p, n).to_vec()))
            .collect()
    };
    let len = candidates.len() as u64;
    for step in 0..len {
        let c = cursor.wrapping_add(step);
        let (p, primaries) = &candidates[(c % len) as usize];
        let peers: Vec<&NodeId> = primaries
            .iter()
            .filter(|id| **id != node.id && node.is_reachable(id))
            .collect();
        if peers.is_empty() {
            continue;
        }
        let peer = peers[((c / len) % peers.len() as u64) as usize];
        return Some((c.wrapping_add(1), *p, peer.clone()));
    }
    None
}

/// Whether both this node and `peer` are primaries of `bucket`'s keys in `partition`.
fn shares_bucket(node: &Node, partition: PartitionId, peer: &NodeId, bucket: &[u8]) -> bool {
    let s = node.state.read();
    let n = s.bucket_props(bucket).n as usize;
    let pl = s.ring.preference_list(partition, n);
    pl.contains(&node.id) && pl.contains(peer)
}

/// Checks that this node routes by `ring_version` with no change pending, so both sides of
/// an exchange agree on who replicates what.
fn check_ring(node: &Node, partition: PartitionId, ring_version: u64) -> Result<(), AaeError> {
    let s = node.state.read();
    if s.ownership_moving() {
        return Err(AaeError::Ring("a ring change is pending".into()));
    }
    if s.ring_version != ring_version {
        return Err(AaeError::Ring(format!(
            "ring version {} here, {ring_version} asked",
            s.ring_version
        )));
    }
    if partition >= s.ring_size() {
        return Err(AaeError::BadRequest(format!(
            "partition {partition} outside a ring of {}",
            s.ring_size()
        )));
    }
    Ok(())
}

/// Builds this node's trees of `partition`, one per peer in `peers`, each over the buckets
/// this node shares with that peer, in one scan of the partition (blocking). Records whose
/// object cannot be decoded are left out, so the peer's copy shows as missing here.
pub fn build_trees(
    node: &Node,
    partition: PartitionId,
    peers: &[NodeId],
    segments: u32,
) -> Result<Vec<MerkleTree>, AaeError> {
    // Per bucket: which of `peers` share it.
    let mut shared: HashMap<Vec<u8>, Vec<bool>> = HashMap::new();
    let mut leaves: Vec<Vec<KeyHash>> = vec![Vec::new(); peers.len()];
    let mut after: Option<(Vec<u8>, Vec<u8>)> = None;
    // Each full chunk advances `after`; a short chunk is the end of the partition.
    loop {
        let cursor = after.as_ref().map(|(b, k)| (b.as_slice(), k.as_slice()));
        let chunk = node.storage.scan_partition(partition, cursor, SCAN_CHUNK)?;
        let end = chunk.len() < SCAN_CHUNK;
        for (k, bytes) in chunk {
            after = Some((k.bucket.clone(), k.key.clone()));
            let with = shared.entry(k.bucket.clone()).or_insert_with(|| {
                peers
                    .iter()
                    .map(|peer| shares_bucket(node, partition, peer, &k.bucket))
                    .collect()
            });
            if !with.iter().any(|s| *s) {
                continue;
            }
            match Object::decode(&bytes) {
                Ok(o) => {
                    let hash = merkle::leaf_hash(&k.bucket, &k.key, &o.encode());
                    for (i, _) in with.iter().enumerate().filter(|(_, s)| **s) {
                        leaves[i].push(KeyHash {
                            hash,
                            bucket: k.bucket.clone(),
                            key: k.key.clone(),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "anti-entropy skips an undecodable object")
                }
            }
        }
        if end {
            break;
        }
    }
    Ok(leaves
        .into_iter()
        .map(|l| MerkleTree::from_leaves(segments, l))
        .collect())
}

/// The peers one scan of `partition` builds trees for: its other primaries (whom the rotation
/// exchanges it with) and `asked`, so every exchange of an unchanged partition finds its
/// hashes kept.
fn tree_peers(node: &Node, partition: PartitionId, asked: &NodeId) -> Vec<NodeId> {
    let mut peers: Vec<NodeId> = {
        let s = node.state.read();
        s.ring
            .preference_list(partition, s.n_val as usize)
            .iter()
            .filter(|id| **id != node.id)
            .cloned()
            .collect()
    };
    if !peers.contains(asked) {
        peers.push(asked.clone());
    }
    peers
}

fn tree_key(node: &Node, partition: PartitionId, peer: &NodeId, segments: u32) -> TreeKey {
    TreeKey {
        partition,
        peer: peer.clone(),
        segments,
        ring_version: node.state.read().ring_version,
    }
}

/// Scans `partition` once for the trees of every peer of [`tree_peers`], keeps their hashes
/// and `peer`'s whole tree (`node::trees`), and returns `peer`'s tree.
async fn scan_trees(
    node: &Arc<Node>,
    partition: PartitionId,
    peer: &NodeId,
    segments: u32,
) -> Result<Arc<MerkleTree>, AaeError> {
    let peers = tree_peers(node, partition, peer);
    let keys: Vec<TreeKey> = peers
        .iter()
        .map(|p| tree_key(node, partition, p, segments))
        .collect();
    let scanned = node.aae_trees.scan_started(partition, node.clock.now_ms());
    let (n, ps) = (node.clone(), peers.clone());
    let trees = run_blocking(move || build_trees(&n, partition, &ps, segments)).await?;
    let mut asked = None;
    for (key, tree) in keys.into_iter().zip(trees) {
        let tree = Arc::new(tree);
        let whole = &key.peer == peer;
        node.aae_trees.keep(key, scanned, &tree, whole);
        if whole {
            asked = Some(tree);
        }
    }
    asked.ok_or(AaeError::Unexpected("a scan without the asked peer's tree"))
}

/// This node's tree hashes of `partition` over the buckets it shares with `peer`: the kept
/// ones while no write to the partition has landed since they were scanned, else a new scan.
async fn local_hashes(
    node: &Arc<Node>,
    partition: PartitionId,
    peer: &NodeId,
    segments: u32,
) -> Result<Arc<SegmentTree>, AaeError> {
    let key = tree_key(node, partition, peer, segments);
    if let Some(hashes) = node.aae_trees.hashes(&key, node.clock.now_ms()) {
        return Ok(hashes);
    }
    let tree = scan_trees(node, partition, peer, segments).await?;
    Ok(Arc::new(tree.hashes().clone()))
}

/// This node's whole tree (keys included) of `partition` for `peer`: kept or a new scan.
async fn local_tree(
    node: &Arc<Node>,
    partition: PartitionId,
    peer: &NodeId,
    segments: u32,
) -> Result<Arc<MerkleTree>, AaeError> {
    let key = tree_key(node, partition, peer, segments);
    if let Some(tree) = node.aae_trees.tree(&key, node.clock.now_ms()) {
        return Ok(tree);
    }
    scan_trees(node, partition, peer, segments).await
}

/// Timeout of a call that makes the peer scan a whole partition.
fn tree_timeout(node: &Node) -> Duration {
    node.settings.rpc_timeout.max(Duration::from_secs(1)) * 30
}

/// Peer side of [`rpc::AaeRequest::Segments`]: segment hashes of this node's tree of
/// `partition` over the buckets it shares with `from`.
pub async fn answer_segments(
    node: &Arc<Node>,
    from: &NodeId,
    partition: PartitionId,
    n: u32,
    ring_version: u64,
) -> Result<Vec<u64>, AaeError> {
    check_ring(node, partition, ring_version)?;
    let n = merkle::check_segments(n)?;
    let hashes = local_hashes(node, partition, from, n).await?;
    Ok(hashes.segment_hashes().to_vec())
}

/// Peer side of [`rpc::AaeRequest::Keys`]: keys and leaf hashes of the given segments.
pub async fn answer_keys(
    node: &Arc<Node>,
    from: &NodeId,
    partition: PartitionId,
    n: u32,
    ring_version: u64,
    segments: Vec<u32>,
) -> Result<Vec<KeyHash>, AaeError> {
    check_ring(node, partition, ring_version)?;
    let n = merkle::check_segments(n)?;
    let wanted: BTreeSet<u32> = segments.into_iter().collect();
    if let Some(bad) = wanted.iter().find(|s| **s >= n) {
        return Err(AaeError::BadRequest(format!(
            "segment {bad} outside a tree of {n}"
        )));
    }
    let tree = local_tree(node, partition, from, n).await?;
    Ok(wanted
        .into_iter()
        .flat_map(|s| tree.keys_in(s).iter().cloned())
        .collect())
}

/// One exchange of `partition` with `peer`: compare trees and repair the differing keys on
/// both sides. Counts the exchange and each repaired key.
pub async fn exchange(
    node: &Arc<Node>,
    partition: PartitionId,
    peer: &NodeId,
) -> Result<ExchangeReport, AaeError> {
    if peer == &node.id {
        return Err(AaeError::BadRequest(
            "an exchange needs another node".into(),
        ));
    }
    let ring_version = {
        let s = node.state.read();
        if s.ownership_moving() {
            return Err(AaeError::Ring("a ring change is pending".into()));
        }
        s.ring_version
    };
    check_ring(node, partition, ring_version)?;
    let segments = merkle::DEFAULT_SEGMENTS;
    let hashes = local_hashes(node, partition, peer, segments).await?;
    let req = AaeRequest::Segments {
        partition,
        n: segments,
        ring_version,
    };
    let remote = match node.call(peer, req, tree_timeout(node)).await? {
        AaeResponse::Segments(v) => v,
        _ => return Err(AaeError::Unexpected("aae_segments")),
    };
    let differing = hashes.diff_segments(&remote)?;
    // Keys are read only when some segment differs.
    let local = match differing.is_empty() {
        true => None,
        false => Some(local_tree(node, partition, peer, segments).await?),
    };
    let mut report = ExchangeReport {
        partition,
        peer: peer.clone(),
        local_keys: local.as_ref().map_or(0, |t| t.len()),
        segments_differing: differing.len(),
        keys_differing: 0,
        keys_repaired: 0,
        keys_failed: 0,
        keys_skipped: 0,
        truncated: false,
    };
    let ring_size = node.state.read().ring_size();
    let mut budget = MAX_KEYS_PER_EXCHANGE;
    for chunk in differing.chunks(SEGMENTS_PER_CALL) {
        if budget == 0 {
            report.truncated = true;
            break;
        }
        let req = AaeRequest::Keys {
            partition,
            n: segments,
            ring_version,
            segments: chunk.to_vec(),
        };
        let remote_keys = match node.call(peer, req, tree_timeout(node)).await? {
            AaeResponse::Keys(v) => v,
            _ => return Err(AaeError::Unexpected("aae_keys")),
        };
        // A peer's list is input from outside: keep only keys of the asked segments and of
        // this partition.
        let asked: BTreeSet<u32> = chunk.iter().copied().collect();
        let remote_keys: Vec<KeyHash> = remote_keys
            .into_iter()
            .filter(|k| {
                asked.contains(&merkle::segment_of(&k.bucket, &k.key, segments))
                    && riftkv_core::ring::partition_for(&k.bucket, &k.key, ring_size) == partition
            })
            .collect();
        let local_keys: Vec<KeyHash> = local
            .iter()
            .flat_map(|t| chunk.iter().flat_map(|s| t.keys_in(*s).iter().cloned()))
            .collect();
        let mut keys = merkle::diff_keys(&local_keys, &remote_keys);
        report.keys_differing += keys.len();
        keys.retain(|(bucket, _)| {
            let shared = shares_bucket(node, partition, peer, bucket);
            if !shared {
                report.keys_skipped += 1;
            }
            shared
        });
        if keys.len() > budget {
            keys.truncate(budget);
            report.truncated = true;
        }
        budget -= keys.len();
        let results: Vec<Result<bool, AaeError>> = futures::stream::iter(keys)
            .map(|(bucket, key)| {
                let k = ObjectKey::new(partition, bucket, key);
                async move { repair_key(node, peer, k).await }
            })
            .buffer_unordered(REPAIR_CONCURRENCY)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(true) => {
                    report.keys_repaired += 1;
                    node.metrics.aae_keys_repaired_total.inc();
                }
                Ok(false) => {}
                Err(e) => {
                    report.keys_failed += 1;
                    tracing::debug!(partition, %peer, error = %e, "anti-entropy repair of a key failed; a later exchange retries");
                }
            }
        }
    }
    node.metrics.aae_exchanges_total.inc();
    Ok(report)
}

/// Brings both copies of `k` to their merge. Returns whether either side changed.
async fn repair_key(node: &Arc<Node>, peer: &NodeId, k: ObjectKey) -> Result<bool, AaeError> {
    let mode = node.state.read().bucket_props(&k.bucket).conflict;
    let req = ReplicaRequest::ReplicaGet {
        partition: k.partition,
        bucket: k.bucket.clone(),
        key: k.key.clone(),
        hinted_for: None,
    };
    let remote = match crate::replica::rpc::call(node, peer, req, node.settings.rpc_timeout).await?
    {
        ReplicaResponse::Object(Some(bytes)) => Some(
            Object::decode(&bytes)
                .map_err(|e| AaeError::Repair(format!("peer's copy is malformed: {e}")))?,
        ),
        ReplicaResponse::Object(None) => None,
        _ => return Err(AaeError::Unexpected("replica_get")),
    };
    let (n, kk) = (node.clone(), k.clone());
    let local = run_blocking(move || match n.local_object(&kk) {
        Ok(o) => Ok(o),
        // A damaged local record counts as missing: the merge replaces it.
        Err(StoreError::Storage(StorageError::Corrupt { .. })) => Ok(None),
        Err(e) => Err(AaeError::Repair(e.to_string())),
    })
    .await?;
    let merged = match (&local, &remote) {
        (Some(l), Some(r)) => l.sync_mode(r, mode),
        (Some(x), None) | (None, Some(x)) => x.sync_mode(&Object::new(), mode),
        (None, None) => return Ok(false),
    };
    let local_changed = local.as_ref() != Some(&merged);
    let remote_changed = remote.as_ref() != Some(&merged);
    if local_changed {
        let (n, kk, m) = (node.clone(), k.clone(), merged.clone());
        run_blocking(move || {
            store_copy(&n, &kk, &m, mode, false, &crate::preflist::Role::Primary)
                .map(|_| ())
                .map_err(|e| AaeError::Repair(e.to_string()))
        })
        .await?;
    }
    if remote_changed {
        let req = ReplicaRequest::ReplicaPut {
            partition: k.partition,
            bucket: k.bucket,
            key: k.key,
            object: merged.encode(),
            sync: false,
            hinted_for: None,
        };
        match crate::replica::rpc::call(node, peer, req, node.settings.rpc_timeout).await? {
            ReplicaResponse::Stored { .. } => {}
            _ => return Err(AaeError::Unexpected("replica_put")),
        }
    }
    Ok(local_changed || remote_changed)
}
