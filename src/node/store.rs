//! Local object storage as every layer uses it: read a key's object, and merge an incoming
//! object into the local copy (the one write path shared by replica writes, read repair,
//! hinted handoff and ownership handoff, so they cannot disagree on how versions merge).

use super::Node;
use crate::storage::{HintKey, ObjectKey, StorageError, WriteBatch};
use crate::types::NodeId;
use crate::version::{ConflictMode, Object, VersionError};

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

impl Node {
    /// This node's own copy of a key (primary or fallback data, not hints).
    pub fn local_object(&self, k: &ObjectKey) -> Result<Option<Object>, StoreError> {
        match self.storage.get_object(k)? {
            None => Ok(None),
            Some(bytes) => Object::decode(&bytes)
                .map(Some)
                .map_err(StoreError::Damaged),
        }
    }

    /// Merges `incoming` into the local copy of `k` and persists the result in one batch.
    /// `sync` forces the WAL to disk before returning (the `dw` guarantee).
    /// A damaged local record is replaced by the incoming object rather than blocking writes:
    /// the other replicas still hold the lost versions and read repair brings them back.
    pub fn merge_local(
        &self,
        k: &ObjectKey,
        incoming: &Object,
        mode: ConflictMode,
        sync: bool,
    ) -> Result<Object, StoreError> {
        let merged = match self.local_object(k) {
            Ok(Some(local)) => local.sync_mode(incoming, mode),
            Ok(None) => incoming.sync_mode(&Object::new(), mode),
            Err(StoreError::Storage(StorageError::Corrupt { what })) => {
                tracing::warn!(what = %what, "replacing damaged local record with a replica's copy");
                incoming.sync_mode(&Object::new(), mode)
            }
            // Intact record, undecodable object (e.g. written by a buggy build): same remedy.
            Err(StoreError::Damaged(e)) => {
                tracing::warn!(error = %e, "replacing undecodable local object with a replica's copy");
                incoming.sync_mode(&Object::new(), mode)
            }
            Err(e) => return Err(e),
        };
        let mut batch = WriteBatch::default();
        batch.put_object(k.clone(), merged.encode());
        self.storage.write(batch, sync)?;
        Ok(merged)
    }

    /// Stores `incoming` as a hint for `target`, merged with any hint already held for it.
    pub fn merge_hint(
        &self,
        k: &ObjectKey,
        target: &NodeId,
        incoming: &Object,
        mode: ConflictMode,
        sync: bool,
    ) -> Result<Object, StoreError> {
        let hk = HintKey {
            target: target.clone(),
            partition: k.partition,
            bucket: k.bucket.clone(),
            key: k.key.clone(),
        };
        let merged = match self.storage.get_hint(&hk) {
            Ok(Some(bytes)) => match Object::decode(&bytes) {
                Ok(held) => held.sync_mode(incoming, mode),
                Err(_) => incoming.clone(),
            },
            Ok(None) => {
                // The gauge is refreshed from storage by the delivery loop and counted up here
                // between refreshes, so the bound holds without scanning the hints area.
                if self.metrics.hints_pending.get() >= MAX_PENDING_HINTS {
                    return Err(StoreError::HintStoreFull);
                }
                self.metrics.hints_pending.inc();
                incoming.clone()
            }
            Err(StorageError::Corrupt { .. }) => incoming.clone(),
            Err(e) => return Err(e.into()),
        };
        let mut batch = WriteBatch::default();
        batch.put_hint(hk, merged.encode());
        self.storage.write(batch, sync)?;
        Ok(merged)
    }
}
