//! The persisted ring state as on-disk formats 2, 4 and 6 laid it out, and the steps that
//! rewrite it: for format 3 (bucket props as JSON, `migrations/0003_bucket_props_json.toml`),
//! format 5 (the security state appended, `migrations/0005_security.toml`) and format 7 (the
//! pending plan's `staged` flag, `migrations/0007_staged_plan.toml`).
//!
//! Only the props entry (format 3), the last field (format 5) and the plan (format 7) changed;
//! every other field keeps its type, so the old layouts name the current membership types for
//! them.

use super::StorageError;
use super::backend::{Backend, Cf, RawOp};
use super::record;
use crate::bucket::{BucketProps, Quorum};
use crate::membership::state::{
    MemberInfo, Plan, PropsEntry, RING_STATE_META, RingState, Transfer,
};
use crate::ring::Ring;
use crate::security::SecurityState;
use crate::types::NodeId;
use crate::version::ConflictMode;
use serde::{Deserialize, Serialize};
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

/// A pending plan before format 7: no `staged` flag (every plan applied at once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PlanBefore7 {
    pub id: u64,
    pub target: Ring,
    pub transfers: Vec<Transfer>,
}

impl From<PlanBefore7> for Plan {
    fn from(p: PlanBefore7) -> Plan {
        Plan {
            id: p.id,
            target: p.target,
            transfers: p.transfers,
            staged: false,
        }
    }
}

/// `RingState` before format 5, field for field, with its props entries of type `E`: format 2
/// held postcard props, formats 3 and 4 JSON props (the current `PropsEntry`); no security
/// state.
#[derive(Serialize, Deserialize)]
pub(super) struct RingStateBefore5<E> {
    pub cluster_name: String,
    pub n_val: u32,
    pub members: BTreeMap<NodeId, MemberInfo>,
    pub ring: Ring,
    pub ring_version: u64,
    pub ring_author: NodeId,
    pub previous_ring: Option<Ring>,
    pub plan: Option<PlanBefore7>,
    pub buckets: BTreeMap<Vec<u8>, E>,
}

/// `RingState` in format 2.
pub(super) type RingStateV2 = RingStateBefore5<PropsEntryV2>;
/// `RingState` in formats 3 and 4.
pub(super) type RingStateV4 = RingStateBefore5<PropsEntry>;

/// `RingState` in formats 5 and 6, field for field: the plan without its `staged` flag.
#[derive(Serialize, Deserialize)]
pub(super) struct RingStateV6 {
    pub cluster_name: String,
    pub n_val: u32,
    pub members: BTreeMap<NodeId, MemberInfo>,
    pub ring: Ring,
    pub ring_version: u64,
    pub ring_author: NodeId,
    pub previous_ring: Option<Ring>,
    pub plan: Option<PlanBefore7>,
    pub buckets: BTreeMap<Vec<u8>, PropsEntry>,
    #[serde(with = "crate::json_field")]
    pub security: SecurityState,
}

impl From<RingStateV4> for RingStateV6 {
    fn from(s: RingStateV4) -> RingStateV6 {
        RingStateV6 {
            cluster_name: s.cluster_name,
            n_val: s.n_val,
            members: s.members,
            ring: s.ring,
            ring_version: s.ring_version,
            ring_author: s.ring_author,
            previous_ring: s.previous_ring,
            plan: s.plan,
            buckets: s.buckets,
            security: SecurityState::default(),
        }
    }
}

impl From<RingStateV6> for RingState {
    fn from(s: RingStateV6) -> RingState {
        RingState {
            cluster_name: s.cluster_name,
            n_val: s.n_val,
            members: s.members,
            ring: s.ring,
            ring_version: s.ring_version,
            ring_author: s.ring_author,
            previous_ring: s.previous_ring,
            plan: s.plan.map(Plan::from),
            buckets: s.buckets,
            security: s.security,
        }
    }
}

impl<P> RingStateBefore5<P> {
    /// The same state with each bucket's props entry converted by `f`.
    fn map_buckets<Q>(self, mut f: impl FnMut(P) -> Q) -> RingStateBefore5<Q> {
        RingStateBefore5 {
            cluster_name: self.cluster_name,
            n_val: self.n_val,
            members: self.members,
            ring: self.ring,
            ring_version: self.ring_version,
            ring_author: self.ring_author,
            previous_ring: self.previous_ring,
            plan: self.plan,
            buckets: self.buckets.into_iter().map(|(b, e)| (b, f(e))).collect(),
        }
    }
}

impl From<RingStateV2> for RingStateV4 {
    fn from(s: RingStateV2) -> RingStateV4 {
        s.map_buckets(|e| {
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
            PropsEntry {
                props,
                version: e.version,
                author: e.author,
            }
        })
    }
}

/// Format 3: rewrites the stored ring state with its bucket props as JSON (in the format-3
/// layout, which format 4 kept). A ring state that cannot be read in the format-2 layout stops
/// the upgrade (the node could not start on it).
pub(super) fn bucket_props_json(b: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    rewrite::<RingStateV2, RingStateV4>(b, "format-2")
}

/// Format 5: rewrites the stored ring state with an empty security state appended. A ring
/// state that cannot be read in the format-4 layout stops the upgrade.
pub(super) fn security(b: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    rewrite::<RingStateV4, RingStateV6>(b, "format-4")
}

/// Format 7: rewrites the stored ring state with a pending plan marked as applying (not
/// staged), which is what every plan of a format-6 node was. A ring state that cannot be read
/// in the format-6 layout stops the upgrade.
pub(super) fn staged_plan(b: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    rewrite::<RingStateV6, RingState>(b, "format-6")
}

/// Decodes the stored ring state in the `Old` layout and returns the write of it in the `New`
/// one; nothing when there is no ring state (a node that never joined).
fn rewrite<Old, New>(b: &dyn Backend, layout: &str) -> Result<Vec<RawOp>, StorageError>
where
    Old: for<'de> Deserialize<'de>,
    New: From<Old> + Serialize,
{
    let Some(raw) = b.raw_get(Cf::Meta, RING_STATE_META.as_bytes())? else {
        return Ok(Vec::new());
    };
    let payload = record::open(&raw)
        .map_err(|d| StorageError::Migration(format!("stored ring state is damaged: {d}")))?;
    let old: Old = postcard::from_bytes(payload).map_err(|e| {
        StorageError::Migration(format!(
            "stored ring state is not in the {layout} layout: {e}"
        ))
    })?;
    let bytes = postcard::to_stdvec(&New::from(old))
        .map_err(|e| StorageError::Migration(format!("encoding the ring state: {e}")))?;
    Ok(vec![RawOp::Put(
        Cf::Meta,
        RING_STATE_META.as_bytes().to_vec(),
        record::seal(&bytes),
    )])
}
