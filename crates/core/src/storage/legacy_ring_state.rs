//! The persisted ring state as on-disk format 2 laid it out, and the step that rewrites it for
//! format 3 (bucket props as JSON, `migrations/0003_bucket_props_json.toml`).
//!
//! Only the props entry changed; every other field keeps its type, so the format-2 layout
//! names the current membership types for them.

use super::StorageError;
use super::backend::{Backend, Cf, RawOp};
use super::record;
use crate::bucket::{BucketProps, Quorum};
use crate::membership::state::{MemberInfo, Plan, PropsEntry, RING_STATE_META, RingState};
use crate::ring::Ring;
use crate::types::NodeId;
use crate::version::ConflictMode;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Bucket props in format 2: postcard fields in this order, nothing else.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct PropsV2 {
    pub n: u32,
    pub r: Quorum,
    pub w: Quorum,
    pub dw: Quorum,
    pub pr: Quorum,
    pub pw: Quorum,
    pub conflict: ConflictMode,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct PropsEntryV2 {
    pub props: PropsV2,
    pub version: u64,
    pub author: NodeId,
}

/// `RingState` in format 2, field for field.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct RingStateV2 {
    pub cluster_name: String,
    pub n_val: u32,
    pub members: BTreeMap<NodeId, MemberInfo>,
    pub ring: Ring,
    pub ring_version: u64,
    pub ring_author: NodeId,
    pub previous_ring: Option<Ring>,
    pub plan: Option<Plan>,
    pub buckets: BTreeMap<Vec<u8>, PropsEntryV2>,
}

impl From<RingStateV2> for RingState {
    fn from(s: RingStateV2) -> RingState {
        let buckets = s
            .buckets
            .into_iter()
            .map(|(bucket, e)| {
                let p = e.props;
                let props = BucketProps {
                    n: p.n,
                    r: p.r,
                    w: p.w,
                    dw: p.dw,
                    pr: p.pr,
                    pw: p.pw,
                    conflict: p.conflict,
                    datatype: None,
                    ttl: 0,
                };
                let entry = PropsEntry {
                    props,
                    version: e.version,
                    author: e.author,
                };
                (bucket, entry)
            })
            .collect();
        RingState {
            cluster_name: s.cluster_name,
            n_val: s.n_val,
            members: s.members,
            ring: s.ring,
            ring_version: s.ring_version,
            ring_author: s.ring_author,
            previous_ring: s.previous_ring,
            plan: s.plan,
            buckets,
        }
    }
}

/// Format 3: rewrites the stored ring state with its bucket props as JSON. A ring state that
/// cannot be read in the format-2 layout stops the upgrade (the node could not start on it).
pub(super) fn bucket_props_json(b: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    let Some(raw) = b.raw_get(Cf::Meta, RING_STATE_META.as_bytes())? else {
        return Ok(Vec::new());
    };
    let payload = record::open(&raw)
        .map_err(|d| StorageError::Migration(format!("stored ring state is damaged: {d}")))?;
    let old: RingStateV2 = postcard::from_bytes(payload).map_err(|e| {
        StorageError::Migration(format!(
            "stored ring state is not in the format-2 layout: {e}"
        ))
    })?;
    let new = RingState::from(old);
    let bytes = postcard::to_stdvec(&new)
        .map_err(|e| StorageError::Migration(format!("encoding the ring state: {e}")))?;
    Ok(vec![RawOp::Put(
        Cf::Meta,
        RING_STATE_META.as_bytes().to_vec(),
        record::seal(&bytes),
    )])
}
