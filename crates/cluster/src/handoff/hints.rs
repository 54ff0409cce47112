//! Hinted handoff delivery: a fallback returns the writes it holds for a primary once that
//! primary is reachable again.
//!
//! Hints live in storage, so they survive restarts. Each tick sends a bounded number of
//! batches (throttle); a hint is deleted only after its target confirmed the batch durable,
//! and only when it was not rewritten meanwhile (a newer write for the same key stays and is
//! delivered on a later tick).
//!
//! The server starts this with `crate::handoff::hints::spawn(node.clone())` after the node is
//! built: a worker (`crate::worker`) named `hinted_handoff`, stopped by the node's shutdown token.

use crate::handoff::rpc::{HandoffRequest, HandoffResponse, ObjectEntry};
use crate::node::Node;
use crate::replica::locks::lock_keys;
use crate::worker::{Step, Worker};
use riftkv_core::storage::{HintKey, ObjectKey, StorageError, WriteBatch};
use riftkv_core::types::NodeId;
use riftkv_core::version::Object;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The delivery worker's name (to wake it early).
pub const WORKER_NAME: &str = "hinted_handoff";

/// Hints sent in one message.
pub const HINT_BATCH: usize = 64;
/// Soft cap on one message's payload: past the first hint, a batch ends once its hints reach
/// this many bytes, so large hints travel one by one and never make a frame over the limit
/// (which would fail the same batch on every tick and never drain).
pub const HINT_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Batches sent per tick over all targets (the throttle).
pub const MAX_BATCHES_PER_TICK: usize = 8;
/// The slowest receiver a delivery waits for, in bytes per second: a batch gets the call
/// timeout plus the time its bytes take at this rate.
const SLOWEST_RECEIVER_BYTES_PER_SEC: u64 = 512 * 1024;

/// How long to wait for a target to store a batch of `bytes`. With the call timeout alone, a
/// loaded target that needed longer to merge one 8 MiB hint timed out on every attempt, and
/// the same hint was resent every tick without ever draining.
pub fn delivery_timeout(rpc_timeout: Duration, bytes: u64) -> Duration {
    let transfer_ms = bytes.saturating_mul(1000) / SLOWEST_RECEIVER_BYTES_PER_SEC;
    rpc_timeout.saturating_add(Duration::from_millis(transfer_ms))
}

#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("delivery task failed: {0}")]
    Task(String),
}

/// Starts the delivery loop: every `handoff_interval`, when `hinted_handoff` is enabled.
/// The `hints_pending` gauge is refreshed every tick either way.
pub fn spawn(node: Arc<Node>) -> JoinHandle<()> {
    let worker = HintWorker { node: node.clone() };
    crate::worker::spawn(&node.workers, &node.shutdown, worker).0
}

/// Hint delivery as a worker: busy when it delivered something.
struct HintWorker {
    node: Arc<Node>,
}

impl Worker for HintWorker {
    fn name(&self) -> &'static str {
        WORKER_NAME
    }
    fn period(&self) -> Duration {
        self.node.settings.handoff_interval
    }
    /// A round is bounded by [`MAX_BATCHES_PER_TICK`]; it finishes before the worker stops.
    fn cancel_step_on_shutdown(&self) -> bool {
        false
    }
    async fn step(&mut self) -> Result<Step, String> {
        let r = if self.node.settings.hinted_handoff {
            deliver_once(&self.node).await
        } else {
            refresh_pending(&self.node).await.map(|_| 0)
        };
        match r {
            Ok(0) => Ok(Step::Idle),
            Ok(_) => Ok(Step::Busy),
            Err(e) => {
                tracing::warn!(error = %e, "hinted handoff tick failed");
                Err(e.to_string())
            }
        }
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HintError> + Send + 'static,
) -> Result<T, HintError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HintError::Task(e.to_string()))?
}

/// Sets `hints_pending` from storage and returns the per-target counts.
pub async fn refresh_pending(node: &Arc<Node>) -> Result<Vec<(NodeId, u64)>, HintError> {
    let n = node.clone();
    let counts = run_blocking(move || Ok(n.storage.hint_counts()?)).await?;
    let total: u64 = counts.iter().map(|(_, c)| *c).sum();
    node.metrics
        .hints_pending
        .set(i64::try_from(total).unwrap_or(i64::MAX));
    Ok(counts)
}

/// One delivery round: up to [`MAX_BATCHES_PER_TICK`] batches to reachable targets.
/// Returns how many hints were delivered and dropped.
pub async fn deliver_once(node: &Arc<Node>) -> Result<u64, HintError> {
    let counts = refresh_pending(node).await?;
    let mut budget = MAX_BATCHES_PER_TICK;
    let mut delivered = 0u64;
    for (target, _) in counts {
        if budget == 0 {
            break;
        }
        let gone = target_is_gone(node, &target);
        if !gone && !node.is_reachable(&target) {
            continue;
        }
        let mut after: Option<HintKey> = None;
        while budget > 0 {
            budget -= 1;
            let (n, t, a) = (node.clone(), target.clone(), after.clone());
            let batch = run_blocking(move || {
                Ok(n.storage
                    .scan_hints(&t, a.as_ref(), HINT_BATCH, HINT_BATCH_BYTES)?)
            })
            .await?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            let bytes: usize = batch.iter().map(|(_, v)| v.len()).sum();
            let full = batch.len() >= HINT_BATCH || bytes >= HINT_BATCH_BYTES;
            let sent = if gone {
                redirect_batch(node, &batch).await
            } else {
                send_batch(node, &target, &batch).await
            };
            match sent {
                Ok(()) => {
                    let n = node.clone();
                    let dropped = run_blocking(move || drop_delivered(&n, &batch)).await?;
                    delivered += dropped;
                    node.metrics.hints_delivered_total.inc_by(dropped);
                }
                Err(e) => {
                    tracing::debug!(%target, error = %e, "hint delivery failed; will retry");
                    break;
                }
            }
            if !full {
                break;
            }
        }
    }
    if delivered > 0 {
        refresh_pending(node).await?;
    }
    Ok(delivered)
}

/// Sends a batch of hints to their target (or merges them here when the target is this
/// node, e.g. after the ring moved a partition back to it).
async fn send_batch(
    node: &Arc<Node>,
    target: &NodeId,
    batch: &[(HintKey, Vec<u8>)],
) -> Result<(), String> {
    let mut entries = Vec::with_capacity(batch.len());
    for (hk, bytes) in batch {
        // An undecodable hint would make the target refuse the whole batch forever: it is
        // not sent, and drop_delivered removes it with the delivered ones.
        if Object::decode(bytes).is_err() {
            tracing::warn!(%target, "dropping an undecodable hint");
            continue;
        }
        entries.push(ObjectEntry {
            partition: hk.partition,
            bucket: hk.bucket.clone(),
            key: hk.key.clone(),
            object: bytes.clone(),
        });
    }
    if entries.is_empty() {
        return Ok(());
    }
    if target == &node.id {
        let n = node.clone();
        return tokio::task::spawn_blocking(move || {
            for e in entries {
                let obj = Object::decode(&e.object).map_err(|e| e.to_string())?;
                let mode = n.state.read().bucket_props(&e.bucket).conflict;
                let k = ObjectKey::new(e.partition, e.bucket, e.key);
                crate::replica::copy::store_copy(
                    &n,
                    &k,
                    &obj,
                    mode,
                    true,
                    &crate::preflist::Role::Primary,
                )
                .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let want = entries.len();
    let bytes: u64 = entries.iter().map(|e| e.object.len() as u64).sum();
    let timeout = delivery_timeout(node.settings.rpc_timeout, bytes);
    let req = HandoffRequest::DeliverHints { entries };
    match node.call(target, req, timeout).await {
        Ok(HandoffResponse::HintsStored { count }) if count as usize == want => Ok(()),
        Ok(other) => Err(format!("unexpected answer to hint delivery: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// True when the hint's target left or was removed: its hints can never be delivered to it.
fn target_is_gone(node: &Node, target: &NodeId) -> bool {
    use riftkv_core::membership::state::MemberStatus;
    let s = node.state.read();
    match s.member(target) {
        Some(m) => m.status == MemberStatus::Removed,
        None => true,
    }
}

/// Delivers hints whose target is gone to the current primaries of each hint's partition
/// instead, so a write held for a removed node still reaches the replicas that own the key
/// now. Succeeds only when every primary confirmed its entries.
async fn redirect_batch(node: &Arc<Node>, batch: &[(HintKey, Vec<u8>)]) -> Result<(), String> {
    let mut per_node: std::collections::BTreeMap<NodeId, Vec<(HintKey, Vec<u8>)>> =
        std::collections::BTreeMap::new();
    {
        let s = node.state.read();
        for (hk, bytes) in batch {
            let n = s.bucket_props(&hk.bucket).n as usize;
            let p = hk.partition % s.ring_size().max(1);
            for primary in s.ring.preference_list(p, n) {
                per_node
                    .entry(primary.clone())
                    .or_default()
                    .push((hk.clone(), bytes.clone()));
            }
        }
    }
    for (primary, entries) in per_node {
        if primary != node.id && !node.is_reachable(&primary) {
            return Err(format!("current primary {primary} is unreachable"));
        }
        send_batch(node, &primary, &entries).await?;
    }
    Ok(())
}

/// Deletes the delivered hints that still hold the delivered bytes, in one synced batch,
/// under the keys' locks so no hint write slips in between the check and the delete.
fn drop_delivered(node: &Node, batch: &[(HintKey, Vec<u8>)]) -> Result<u64, HintError> {
    let keys: Vec<ObjectKey> = batch.iter().map(|(hk, _)| hk.object_key()).collect();
    let _guards = lock_keys(keys.iter());
    let mut wb = WriteBatch::default();
    let mut dropped = 0u64;
    for (hk, sent) in batch {
        let unchanged = match node.storage.get_hint(hk) {
            Ok(Some(now)) => &now == sent,
            Ok(None) => false,
            // A damaged record was what we sent (or worse); removing it loses nothing.
            Err(StorageError::Corrupt { .. }) => true,
            Err(e) => return Err(e.into()),
        };
        if unchanged {
            wb.delete_hint(hk.clone());
            dropped += 1;
        }
    }
    if !wb.is_empty() {
        node.storage.write(wb, true)?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_hint_gets_time_for_its_bytes() {
        let rpc = Duration::from_secs(2);
        assert_eq!(delivery_timeout(rpc, 0), rpc);
        // A batch of small hints: the call timeout and a few milliseconds.
        assert_eq!(
            delivery_timeout(rpc, 64 * 1024),
            Duration::from_millis(2_125)
        );
        // One 8 MiB hint (the largest value) waits 16 s more than a small batch.
        assert_eq!(
            delivery_timeout(rpc, 8 << 20),
            Duration::from_secs(18),
            "an 8 MiB hint"
        );
        assert_eq!(
            delivery_timeout(Duration::MAX, u64::MAX),
            Duration::MAX,
            "saturates"
        );
    }
}
