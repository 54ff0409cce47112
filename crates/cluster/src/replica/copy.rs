//! What one node does with its own copy of a key, for either role it plays in a request:
//! a primary keeps the key under `objects`, a fallback keeps it as a hint for the primary it
//! stands in for. These functions are blocking (storage is); async callers use [`blocking`],
//! or first try a write on their own task with the `try_` forms (free key lock, no sync).

use super::error::{ReplicaError, UpdateError};
use super::locks::{lock_key, try_lock_key};
use crate::node::Node;
use crate::preflist::Role;
use crate::replica::store::{StoreError, Written};
use bytes::Bytes;
use riftkv_core::bucket::DataType;
use riftkv_core::datatype;
use riftkv_core::storage::{HintKey, ObjectKey};
use riftkv_core::version::identity;
use riftkv_core::version::{
    Actor, ConflictMode, Custody, Limits, Object, Sibling, StoredCopy, VersionVector,
};

/// Environment switch of the planted-bug fault below (with the `planted-bug` feature only).
#[cfg(feature = "planted-bug")]
pub const FAULT_DROP_WRITES_ENV: &str = "RIFTKV_FAULT_DROP_WRITES";

/// Test-only fault injection, compiled only with the `planted-bug` feature (test builds and
/// `fault-injection` builds) and off unless `RIFTKV_FAULT_DROP_WRITES=F` (a fraction in
/// (0, 1]) is set: that share of replica writes, and of the coordinator's own local writes, is
/// acknowledged without being stored. It exists so the partition-testing harness
/// (`riftkv-jepsen`) can prove that its checker finds lost writes.
#[cfg(feature = "planted-bug")]
pub fn fault_drop_write() -> bool {
    static FRACTION: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let fraction = *FRACTION.get_or_init(|| {
        let f = std::env::var(FAULT_DROP_WRITES_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f > 0.0)
            .map_or(0.0, |f| f.min(1.0));
        if f > 0.0 {
            tracing::warn!(
                fraction = f,
                "{FAULT_DROP_WRITES_ENV} is set: this node silently drops writes (test-only fault)"
            );
        }
        f
    });
    fraction > 0.0 && rand::random::<f64>() < fraction
}

/// A product build cannot be told to drop writes: always false.
#[cfg(not(feature = "planted-bug"))]
#[inline(always)]
pub fn fault_drop_write() -> bool {
    false
}

/// Runs blocking storage work off the async workers.
pub async fn blocking<T: Send + 'static, E: From<ReplicaError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(ReplicaError::Internal(format!("storage task failed: {e}"))))?
}

/// This node's copy of `k` in `role`: as a fallback, the hint held for that primary merged
/// with any `objects` copy; as a primary, the `objects` copy.
///
/// A damaged record reads as missing: the reader then sees this replica as lacking the key, so
/// read repair (and anti-entropy) write the merged copy back over the damage.
///
/// Async callers run this on their own task rather than through [`blocking`]: it takes no lock
/// and, with the working set in RocksDB's block cache, costs microseconds, while a hop to the
/// blocking pool and back costs two thread wake-ups (under YCSB-A about a quarter of a node's
/// CPU went to task switching; BENCHMARKS.md). A cache miss reads from disk on the async worker,
/// a fraction of a millisecond. Writes take the key's stripe lock: they run on the asking task
/// too when it is free ([`try_store_copy_deferred`]), else on the blocking pool.
pub fn read_copy(
    node: &Node,
    k: &ObjectKey,
    role: &Role,
    mode: ConflictMode,
) -> Result<Option<Object>, StoreError> {
    let own = undamaged(node.local_copy(k))?.map(|c| c.object);
    let Role::Fallback { for_node: primary } = role else {
        return Ok(own);
    };
    let hk = HintKey::for_object(primary.clone(), k);
    let hint = undamaged(node.hint_copy(&hk))?.map(|c| c.object);
    Ok(match (own, hint) {
        (Some(a), Some(b)) => Some(a.sync_mode(&b, mode)),
        (a, b) => a.or(b),
    })
}

/// A damaged record as missing (logged and already counted by storage); other errors pass.
fn undamaged(r: Result<Option<StoredCopy>, StoreError>) -> Result<Option<StoredCopy>, StoreError> {
    match r {
        Err(StoreError::Damaged(e)) => {
            tracing::warn!(error = %e, "reading a damaged local copy as missing");
            Ok(None)
        }
        Err(StoreError::Storage(riftkv_core::storage::StorageError::Corrupt { what })) => {
            tracing::warn!(%what, "reading a damaged local record as missing");
            Ok(None)
        }
        other => other,
    }
}

/// Merges `incoming` into this node's copy in `role`, under the key's lock, and returns the
/// stored result once it is durable (with `sync`: the lock is released before the wait).
pub fn store_copy(
    node: &Node,
    k: &ObjectKey,
    incoming: &Object,
    mode: ConflictMode,
    sync: bool,
    role: &Role,
) -> Result<Object, StoreError> {
    store_copy_deferred(node, k, incoming, mode, sync, role)?.durable_blocking(node)
}

/// [`store_copy`] without the wait for durability: the caller awaits [`Written::durable`]
/// (on its async task, holding no thread).
pub fn store_copy_deferred(
    node: &Node,
    k: &ObjectKey,
    incoming: &Object,
    mode: ConflictMode,
    sync: bool,
    role: &Role,
) -> Result<Written, StoreError> {
    let _guard = lock_key(k);
    node.merge_copy(k, incoming, mode, sync, role)
}

/// [`store_copy_deferred`] on the calling task when the key's lock is free right now, so the
/// common write costs no hop to the blocking pool and back (about half a node's CPU per
/// YCSB-A operation; BENCHMARKS.md, "Durable writes: group commit"); `None` when the lock is
/// taken: the caller then waits on the blocking pool, never on an async worker. The write is
/// never synced here (no lock is ever held across a sync): a durable write waits for its
/// shared sync afterwards, on its task. A RocksDB write stall would hold the async worker
/// while it lasts, as it would hold a pool thread.
pub fn try_store_copy_deferred(
    node: &Node,
    k: &ObjectKey,
    incoming: &Object,
    mode: ConflictMode,
    sync: bool,
    role: &Role,
) -> Option<Result<Written, StoreError>> {
    let _guard = try_lock_key(k)?;
    Some(node.merge_copy(k, incoming, mode, sync, role))
}

/// This node's copy of `k` for a write it coordinates, with the custody of the slot it will
/// write to: the `objects` copy as a primary; as a fallback, the hint it holds for `primary`
/// merged with any `objects` copy, custody from the hint alone (the slot it writes). A damaged
/// record counts as missing: the write takes a fresh identity and replaces it.
fn read_for_write(
    node: &Node,
    k: &ObjectKey,
    role: &Role,
    mode: ConflictMode,
) -> Result<(Option<Object>, Option<Custody>), ReplicaError> {
    let own = undamaged(node.local_copy(k))?;
    let Role::Fallback { for_node: primary } = role else {
        return Ok(match own {
            Some(c) => (Some(c.object), c.custody),
            None => (None, None),
        });
    };
    let hint = undamaged(node.hint_copy(&HintKey::for_object(primary.clone(), k)))?;
    let custody = hint.as_ref().and_then(|h| h.custody);
    let object = match (own, hint) {
        (Some(a), Some(b)) => Some(a.object.sync_mode(&b.object, mode)),
        (a, b) => a.or(b).map(|c| c.object),
    };
    Ok((object, custody))
}

/// The write identity of this node's next write of a key, from the custody its copy holds
/// (see `version::identity`); counts fresh identities.
fn writer_for(node: &Node, custody: Option<Custody>) -> identity::Writer {
    let w = if node.settings.faults.old_dot_rule() {
        // Planted bug for the simulation's self-test: the pre-epoch rule (node id as actor).
        identity::Writer {
            actor: Actor::from(&node.id),
            custody: Custody {
                epoch: 0,
                incarnation: node.incarnation,
            },
            fresh: false,
        }
    } else {
        identity::writer(&node.id, custody, node.incarnation, identity::fresh_epoch())
    };
    if w.fresh {
        node.metrics.write_identities_total.inc();
    }
    w
}

/// The coordinator's read-modify-write: add `sibling` as a new version of `k` superseding what
/// `ctx` has seen, under a write identity this node can vouch for (see
/// `version::identity`), and persist it in this node's role. Returns the new object and, with
/// `sync`, the WAL sync to wait for once the key's lock is released.
#[allow(clippy::too_many_arguments)]
pub fn coordinate_write(
    node: &Node,
    k: &ObjectKey,
    ctx: &VersionVector,
    sibling: Sibling,
    mode: ConflictMode,
    limits: &Limits,
    sync: bool,
    role: &Role,
) -> Result<Written, ReplicaError> {
    let _guard = lock_key(k);
    coordinate_write_locked(node, k, ctx, sibling, mode, limits, sync, role)
}

/// [`coordinate_write`] on the calling task when the key's lock is free right now (see
/// [`try_store_copy_deferred`]); `None` when it is taken.
#[allow(clippy::too_many_arguments)]
pub fn try_coordinate_write(
    node: &Node,
    k: &ObjectKey,
    ctx: &VersionVector,
    sibling: &Sibling,
    mode: ConflictMode,
    limits: &Limits,
    sync: bool,
    role: &Role,
) -> Option<Result<Written, ReplicaError>> {
    let _guard = try_lock_key(k)?;
    Some(coordinate_write_locked(
        node,
        k,
        ctx,
        sibling.clone(),
        mode,
        limits,
        sync,
        role,
    ))
}

/// The body of [`coordinate_write`], under the key's lock.
#[allow(clippy::too_many_arguments)]
fn coordinate_write_locked(
    node: &Node,
    k: &ObjectKey,
    ctx: &VersionVector,
    mut sibling: Sibling,
    mode: ConflictMode,
    limits: &Limits,
    sync: bool,
    role: &Role,
) -> Result<Written, ReplicaError> {
    let (stored, custody) = read_for_write(node, k, role, mode)?;
    let w = writer_for(node, custody);
    if mode == ConflictMode::Lww
        && let Some(s) = &stored
    {
        // Last write wins must never go backwards on one key: a coordinator whose clock lags
        // still stamps its write after every version it has seen.
        sibling.last_modified_ms = sibling
            .last_modified_ms
            .max(s.max_last_modified_ms().saturating_add(1));
    }
    let obj = Object::update(stored.as_ref(), ctx, &w.actor, sibling, mode, limits)?;
    if obj.sibling_count() > limits.warn_siblings {
        tracing::warn!(
            siblings = obj.sibling_count(),
            bucket = %String::from_utf8_lossy(&k.bucket),
            "key has many siblings: clients should write with the context of a read"
        );
    }
    if fault_drop_write() {
        // Planted bug for the harness: acknowledge without storing.
        return Ok(Written::settled(obj));
    }
    Ok(node.store_written(k, role, &obj, w.custody, mode, sync)?)
}

/// The coordinator's read-modify-write of a data type value: under the key's lock, join the
/// states of every live sibling of this node's copy (concurrent coordinators leave siblings),
/// apply `op` (JSON, for `data_type`) as a write of this node's write identity, and store the
/// result as a new version superseding everything the copy held. The identity is chosen
/// exactly as for a plain write, so a node that may have forgotten its writes (wiped disk,
/// power cut) takes a fresh epoch and never reissues a data type dot either.
#[allow(clippy::too_many_arguments)]
pub fn coordinate_update(
    node: &Node,
    k: &ObjectKey,
    data_type: DataType,
    op: &str,
    context: Option<&riftkv_crdt::Context<Actor>>,
    limits: &Limits,
    sync: bool,
    role: &Role,
) -> Result<Written, UpdateError> {
    let op = riftkv_crdt::Op::from_json_str(data_type, op)?;
    // Concurrent states must all be kept to be joined: never last-write-wins.
    let mode = ConflictMode::Siblings;
    let _guard = lock_key(k);
    let (stored, custody) = read_for_write(node, k, role, mode)?;
    let mut state = datatype::merged_state(stored.as_ref(), data_type)?
        .unwrap_or_else(|| datatype::State::new(data_type));
    let w = writer_for(node, custody);
    let now = node.clock.now_ms();
    let type_limits = datatype::limits(limits.max_value_bytes);
    state.apply(&w.actor, &op, context, now, &type_limits)?;
    let sibling = Sibling::new(Bytes::from(state.encode()?), datatype::CONTENT_TYPE, now);
    let seen = stored.as_ref().map(Object::context).unwrap_or_default();
    let obj = Object::update(stored.as_ref(), &seen, &w.actor, sibling, mode, limits)?;
    if fault_drop_write() {
        return Ok(Written::settled(obj));
    }
    Ok(node.store_written(k, role, &obj, w.custody, mode, sync)?)
}

/// Live keys of `bucket` in `partitions` after `after`, merged in byte order, at most `limit`;
/// the flag says whether more live keys remain beyond them. A key whose versions are all
/// tombstones or expired (by this node's clock) is not live.
pub fn live_keys(
    node: &Node,
    partitions: &[u32],
    bucket: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Vec<u8>>, bool), ReplicaError> {
    let want = limit.saturating_add(1);
    let page = want.clamp(16, 1024);
    // Expired versions are invisible from their instant on, by cluster time.
    let now = node.expiry_now_ms();
    let mut all: Vec<Vec<u8>> = Vec::new();
    for &p in partitions {
        let mut cursor: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
        let mut found = 0usize;
        // Each round either returns a short page (the end) or advances the cursor past a full
        // page, so the loop ends after at most keys/page rounds.
        loop {
            let batch = node
                .storage
                .list_bucket(p, bucket, cursor.as_deref(), page)
                .map_err(|e| ReplicaError::Internal(e.to_string()))?;
            let short = batch.len() < page;
            for (key, bytes) in batch {
                cursor = Some(key.clone());
                match Object::decode(&bytes) {
                    Ok(o) if !o.live_siblings(now).is_empty() => {
                        all.push(key);
                        found += 1;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "skipping undecodable object in listing")
                    }
                }
                if found >= want {
                    break;
                }
            }
            if short || found >= want {
                break;
            }
        }
    }
    all.sort_unstable();
    all.dedup();
    let more = all.len() > limit;
    all.truncate(limit);
    Ok((all, more))
}
