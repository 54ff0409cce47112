//! Local object storage as every layer uses it: read a key's object, and merge an incoming
//! object into the local copy (the one write path shared by replica writes, read repair,
//! hinted handoff and ownership handoff, so they cannot disagree on how versions merge).

use crate::node::Node;
use riftkv_core::storage::group_commit::Ticket;
use riftkv_core::storage::{HintKey, ObjectKey, StorageError, WriteBatch};
use riftkv_core::version::identity::{self, CustodyAfterMerge};
use riftkv_core::version::{ConflictMode, Custody, Object, StoredCopy, VersionError};

/// Most hints one node holds. A fallback past this bound refuses new hints (the write then
/// counts as failed on it) rather than filling its disk during a long outage.
pub const MAX_PENDING_HINTS: i64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("hint store is full ({MAX_PENDING_HINTS} hints pending)")]
    HintStoreFull,
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored object is damaged: {0}")]
    Damaged(VersionError),
}

/// A stored copy and the WAL sync it still waits for, if it asked for one. Durable writes are
/// applied unsynced under the key's lock; the caller waits for a shared sync (group commit,
/// `riftkv_core::storage::group_commit`) only after releasing the lock, so a hot key's
/// lock is never held across an fsync and concurrent durable writes share one.
#[derive(Debug)]
#[must_use = "a durable write is on disk only once its sync has been waited for"]
pub struct Written {
    pub object: Object,
    /// The write's place in line for the next WAL sync; `None` when it needs none.
    pub pending: Option<Ticket>,
}

impl Written {
    /// A result that needs no sync (nothing was written, or the write asked for none).
    pub fn settled(object: Object) -> Written {
        Written {
            object,
            pending: None,
        }
    }

    /// Waits, without holding a thread, until the write is durable.
    pub async fn durable(self, node: &Node) -> Result<Object, StoreError> {
        if let Some(t) = self.pending {
            node.wal.wait(t).await?;
        }
        Ok(self.object)
    }

    /// [`Written::durable`] on a blocking thread: it syncs the WAL itself unless a shared
    /// sync has already covered the write.
    pub fn durable_blocking(self, node: &Node) -> Result<Object, StoreError> {
        if let Some(t) = self.pending {
            node.wal.wait_blocking(t)?;
        }
        Ok(self.object)
    }
}

impl Node {
    /// This node's own copy of a key (primary or fallback data, not hints).
    pub fn local_object(&self, k: &ObjectKey) -> Result<Option<Object>, StoreError> {
        Ok(self.local_copy(k)?.map(|c| c.object))
    }

    /// This node's own copy of a key with the custody this node holds of it.
    pub fn local_copy(&self, k: &ObjectKey) -> Result<Option<StoredCopy>, StoreError> {
        match self.storage.get_object(k)? {
            None => Ok(None),
            Some(bytes) => StoredCopy::decode(&bytes)
                .map(Some)
                .map_err(StoreError::Damaged),
        }
    }

    /// The hint this node holds of a key for `target`, with its custody.
    pub fn hint_copy(&self, hk: &HintKey) -> Result<Option<StoredCopy>, StoreError> {
        match self.storage.get_hint(hk)? {
            None => Ok(None),
            Some(bytes) => StoredCopy::decode(&bytes)
                .map(Some)
                .map_err(StoreError::Damaged),
        }
    }

    /// Merges `incoming` into the local copy of `k` and persists the result in one batch.
    /// `sync` makes the write durable before returning (the `dw` guarantee); a caller holding
    /// the key's lock holds it across that WAL sync ([`crate::replica::store_copy`] does not).
    /// A damaged local record is replaced by the incoming object rather than blocking writes:
    /// the other replicas still hold the lost versions and repair brings them back. Custody of
    /// the key's write identity survives only if the local copy still holds every write of it.
    pub fn merge_local(
        &self,
        k: &ObjectKey,
        incoming: &Object,
        mode: ConflictMode,
        sync: bool,
    ) -> Result<Object, StoreError> {
        self.merge_into(Slot::Object(k), incoming, mode, sync, None)?
            .durable_blocking(self)
    }

    /// Merges `incoming` into this node's copy of `k` in `role` (objects, or the hint held
    /// for the primary it stands in for) without waiting for durability: see [`Written`].
    pub(crate) fn merge_copy(
        &self,
        k: &ObjectKey,
        incoming: &Object,
        mode: ConflictMode,
        sync: bool,
        role: &crate::preflist::Role,
    ) -> Result<Written, StoreError> {
        match role {
            crate::preflist::Role::Primary => {
                self.merge_into(Slot::Object(k), incoming, mode, sync, None)
            }
            crate::preflist::Role::Fallback { for_node: target } => {
                let hk = HintKey::for_object(target.clone(), k);
                self.merge_into(Slot::Hint(&hk), incoming, mode, sync, None)
            }
        }
    }

    /// Stores `incoming` as a hint for `target`, merged with any hint already held for it.
    pub fn merge_hint(
        &self,
        k: &ObjectKey,
        target: &riftkv_core::types::NodeId,
        incoming: &Object,
        mode: ConflictMode,
        sync: bool,
    ) -> Result<Object, StoreError> {
        let hk = HintKey::for_object(target.clone(), k);
        self.merge_into(Slot::Hint(&hk), incoming, mode, sync, None)?
            .durable_blocking(self)
    }

    /// The coordinator's store: merges its new object into the copy in `slot` (objects, or the
    /// hint of the primary it stands in for) and records the custody it wrote under. A
    /// durable write is waited for by the caller, after it releases the key's lock.
    pub(crate) fn store_written(
        &self,
        k: &ObjectKey,
        role: &crate::preflist::Role,
        obj: &Object,
        custody: Custody,
        mode: ConflictMode,
        sync: bool,
    ) -> Result<Written, StoreError> {
        match role {
            crate::preflist::Role::Primary => {
                self.merge_into(Slot::Object(k), obj, mode, sync, Some(custody))
            }
            crate::preflist::Role::Fallback { for_node: target } => {
                let hk = HintKey::for_object(target.clone(), k);
                self.merge_into(Slot::Hint(&hk), obj, mode, sync, Some(custody))
            }
        }
    }

    /// The one merge-and-persist path. `writer` is the custody of a write this node coordinated
    /// (it holds every write of that identity, having just written it); `None` for copies
    /// received from elsewhere, whose custody follows [`identity::custody_after_merge`].
    /// The batch is written unsynced; with `sync` the result carries the ticket of the shared
    /// WAL sync that will make it durable.
    fn merge_into(
        &self,
        slot: Slot<'_>,
        incoming: &Object,
        mode: ConflictMode,
        sync: bool,
        writer: Option<Custody>,
    ) -> Result<Written, StoreError> {
        let read = match slot {
            Slot::Object(k) => self.local_copy(k),
            Slot::Hint(hk) => self.hint_copy(hk),
        };
        let (local, damaged) = match read {
            Ok(c) => (c, false),
            Err(StoreError::Storage(StorageError::Corrupt { what })) => {
                tracing::warn!(what = %what, "replacing damaged local record with a replica's copy");
                (None, true)
            }
            // Intact record, undecodable object (e.g. written by a buggy build): same remedy.
            Err(StoreError::Damaged(e)) => {
                tracing::warn!(error = %e, "replacing undecodable local object with a replica's copy");
                (None, true)
            }
            Err(e) => return Err(e),
        };
        if let (Slot::Hint(_), None, false) = (&slot, &local, damaged) {
            // The gauge is refreshed from storage by the delivery loop and counted up here
            // between refreshes, so the bound holds without scanning the hints area.
            if self.metrics.hints_pending.get() >= MAX_PENDING_HINTS {
                return Err(StoreError::HintStoreFull);
            }
            self.metrics.hints_pending.inc();
        }
        if let (Slot::Object(k), None, false, None) = (&slot, &local, damaged, writer)
            && self.reap_fence.holds_back(k, incoming, self.clock.now_ms())
        {
            tracing::debug!("not storing a stale copy of a tombstone reaped here");
            return Ok(Written::settled(incoming.clone()));
        }
        if let (Slot::Object(k), Some(_)) = (&slot, writer) {
            self.reap_fence.lift(k);
        }
        let merged = match &local {
            Some(l) => l.object.sync_mode(incoming, mode),
            None => incoming.sync_mode(&Object::new(), mode),
        };
        let custody = match writer {
            Some(c) => Some(c),
            None => match identity::custody_after_merge(&self.id, local.as_ref(), incoming) {
                CustodyAfterMerge::Lost => {
                    tracing::warn!(
                        "a replica holds writes this node issued and no longer has: \
                         its next write of this key takes a new write identity"
                    );
                    self.metrics.custody_lost_total.inc();
                    None
                }
                kept => kept.custody(),
            },
        };
        let copy = StoredCopy::new(merged, custody);
        let bytes = copy.encode();
        let mut batch = WriteBatch::default();
        match slot {
            Slot::Object(k) => {
                let old = local.as_ref().map(|l| &l.object);
                index_expiry(&mut batch, k, old, &copy.object);
                index_tombstone(&mut batch, k, old, &copy.object);
                batch.put_object(k.clone(), bytes)
            }
            // Hints are not reaped (a node holding hints blocks reaping); the primary indexes
            // the object once the hint is delivered.
            Slot::Hint(hk) => batch.put_hint(hk.clone(), bytes),
        };
        self.storage.write(batch, false)?;
        // Issued after the write returned, so the sync that covers it starts after it.
        let pending = sync.then(|| self.wal.ticket());
        if let Slot::Object(k) = slot {
            self.aae_trees.note_write(k.partition);
        }
        Ok(Written {
            object: copy.object,
            pending,
        })
    }
}

/// Keeps the expiry index in step with the object written in `batch`: the new object listed
/// at its instant, the old listing dropped when it moved. (Listings of objects dropped by other
/// paths go stale and are dropped by the reaper when it finds them.)
pub(crate) fn index_expiry(
    batch: &mut WriteBatch,
    k: &ObjectKey,
    old: Option<&Object>,
    new: &Object,
) {
    let (before, after) = (old.and_then(Object::expiry_index_ms), new.expiry_index_ms());
    if let Some(t) = before
        && before != after
    {
        batch.delete_expiry(t, k.clone());
    }
    if let Some(t) = after {
        batch.put_expiry(t, k.clone());
    }
}

/// Keeps the tombstone index in step with the object written in `batch`: listed while every
/// version is a tombstone, dropped when a write brings a live or expiring version back. (An
/// old copy that was damaged may leave a stale listing; the reaper drops it when it finds it.)
pub(crate) fn index_tombstone(
    batch: &mut WriteBatch,
    k: &ObjectKey,
    old: Option<&Object>,
    new: &Object,
) {
    if new.in_tombstone_index() {
        batch.put_tombstone(k.clone());
    } else if old.is_some_and(Object::in_tombstone_index) {
        batch.delete_tombstone(k.clone());
    }
}

/// Where a copy lives: the objects area, or the hints held for another node.
enum Slot<'a> {
    Object(&'a ObjectKey),
    Hint(&'a HintKey),
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::storage::BatchOp;
    use riftkv_core::types::NodeId;
    use riftkv_core::version::{Limits, Sibling};

    fn write(stored: Option<&Object>, at: Option<u64>) -> Object {
        Object::update(
            stored,
            &stored.map(Object::context).unwrap_or_default(),
            NodeId::from("a"),
            Sibling::new(&b"v"[..], "t", 1).expiring(at),
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_tombstone_index_follows_the_object() {
        let k = ObjectKey::new(1, b"b".to_vec(), b"k".to_vec());
        let ops = |old: Option<&Object>, new: &Object| {
            let mut b = WriteBatch::default();
            index_tombstone(&mut b, &k, old, new);
            b.into_ops()
        };
        let live = write(None, None);
        let dead = Object::update(
            Some(&live),
            &live.context(),
            NodeId::from("a"),
            Sibling::tombstone(2),
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap();
        assert!(ops(None, &live).is_empty(), "a live write touches no index");
        assert!(ops(Some(&live), &live).is_empty());
        assert_eq!(
            ops(Some(&live), &dead),
            vec![BatchOp::PutTombstone(k.clone())]
        );
        assert_eq!(ops(None, &dead), vec![BatchOp::PutTombstone(k.clone())]);
        let back = write(Some(&dead), None);
        assert_eq!(
            ops(Some(&dead), &back),
            vec![BatchOp::DeleteTombstone(k.clone())]
        );
        // A dead key whose value expires is the expiry index's, not this one's.
        let expiring = write(Some(&dead), Some(100));
        assert_eq!(
            ops(Some(&dead), &expiring),
            vec![BatchOp::DeleteTombstone(k.clone())]
        );
    }

    #[test]
    fn the_expiry_index_follows_the_object() {
        let k = ObjectKey::new(1, b"b".to_vec(), b"k".to_vec());
        let ops = |old: Option<&Object>, new: &Object| {
            let mut b = WriteBatch::default();
            index_expiry(&mut b, &k, old, new);
            b.into_ops()
        };
        let first = write(None, Some(100));
        assert_eq!(ops(None, &first), vec![BatchOp::PutExpiry(100, k.clone())]);
        // Same instant again: listed once more (idempotent), nothing dropped.
        assert_eq!(
            ops(Some(&first), &first),
            vec![BatchOp::PutExpiry(100, k.clone())]
        );
        // A later expiry moves the listing.
        let later = write(Some(&first), Some(200));
        assert_eq!(
            ops(Some(&first), &later),
            vec![
                BatchOp::DeleteExpiry(100, k.clone()),
                BatchOp::PutExpiry(200, k.clone())
            ]
        );
        // A lasting value ends it; a copy that never expired lists nothing.
        let lasting = write(Some(&later), None);
        assert_eq!(
            ops(Some(&later), &lasting),
            vec![BatchOp::DeleteExpiry(200, k.clone())]
        );
        assert!(ops(None, &lasting).is_empty());
    }
}
