//! Admin and operations endpoints: status, ring, preference lists, this node's own copy of a
//! key, leave and remove, the pending ring change and its commit, health, readiness and
//! metrics.

use super::AppState;
use super::error::{ApiError, Code};
use super::params;
use super::render::{LocalJson, TokenSigner, read_json};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use riftkv_cluster::membership::admin as madmin;
use riftkv_cluster::membership::plan as mplan;
use riftkv_core::membership::state::MembershipError;
use riftkv_core::storage::{HintKey, ObjectKey};
use riftkv_core::types::NodeId;
use riftkv_core::version::Object;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

/// One member in `/v1/admin/status`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberBody {
    pub node_id: String,
    pub api_addr: String,
    pub peer_addr: String,
    pub zone: Option<String>,
    /// `joining`, `valid` or `leaving`.
    pub status: String,
    /// Whether this node's failure detector believes the member is up.
    pub reachable: bool,
}

/// One background worker in `/v1/admin/status`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WorkerBody {
    /// `gossip`, `hinted_handoff`, `ownership_handoff`, `anti_entropy` or `reaper`.
    pub name: String,
    /// `active`, `idle`, `error` or `stopped`.
    pub state: String,
    /// The most recent failed step; kept after later successes (`state` tells the present).
    pub last_error: Option<String>,
    /// When `last_error` happened, ms since the Unix epoch.
    pub last_error_at_ms: Option<u64>,
    /// Steps run since the process started.
    pub steps: u64,
    /// Steps that failed since the process started.
    pub errors: u64,
}

/// `GET /v1/admin/status`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StatusBody {
    pub node_id: String,
    pub cluster_name: String,
    pub ring_version: u64,
    pub ring_size: u32,
    pub members: Vec<MemberBody>,
    pub owned_partitions: u64,
    pub hints_pending: u64,
    pub handoffs_pending: u64,
    /// Every member valid, no transfer pending, every reachable member on this ring version.
    pub ring_settled: bool,
    pub workers: Vec<WorkerBody>,
    /// Present while partitions move (a ring change is pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfers: Option<TransfersBody>,
    /// Milliseconds this node adds to its own clock to judge and stamp expiry: the lower
    /// median of its peers' clock offsets (0 until it has heard a majority).
    pub clock_offset_ms: i64,
    /// True after a restart until the peers hold no hints for this node (or the catch-up
    /// timeout passed): `/ready` answers 503 meanwhile and peers read from it last.
    pub catching_up: bool,
    /// Present while a ring change is staged: the plan's id (`GET /v1/admin/plan` shows it,
    /// `POST /v1/admin/plan/commit` applies it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged_plan: Option<u64>,
}

/// Progress of the pending ring change in `/v1/admin/status`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TransfersBody {
    /// Partition transfers of the plan finished so far, by any member.
    pub partitions_done: u64,
    /// Partition transfers the plan needs in total.
    pub partitions_total: u64,
    /// Bytes this node has sent or received for the plan.
    pub bytes_moved: u64,
    /// Partition streams this node runs at once (`--transfer-concurrency`).
    pub concurrency: u64,
    /// Bytes per second this node's streams may send together, 0 = no limit
    /// (`--transfer-max-bytes-per-sec`).
    pub max_bytes_per_sec: u64,
    /// Set when the change is a replace.
    pub replacing: Option<ReplacingBody>,
    /// Seconds until the last transfer is done at the pace so far (null until one is done).
    pub eta_secs: Option<u64>,
}

/// The two members of a replace in flight.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReplacingBody {
    pub old: String,
    pub new: String,
}

impl From<madmin::TransfersView> for TransfersBody {
    fn from(t: madmin::TransfersView) -> TransfersBody {
        TransfersBody {
            partitions_done: t.partitions_done as u64,
            partitions_total: t.partitions_total as u64,
            bytes_moved: t.bytes_moved,
            concurrency: t.concurrency as u64,
            max_bytes_per_sec: t.max_bytes_per_sec,
            replacing: t.replacing.map(|(old, new)| ReplacingBody {
                old: old.0,
                new: new.0,
            }),
            eta_secs: t.eta_secs,
        }
    }
}

impl From<madmin::StatusView> for StatusBody {
    fn from(v: madmin::StatusView) -> StatusBody {
        StatusBody {
            node_id: v.node_id.0,
            cluster_name: v.cluster_name,
            ring_version: v.ring_version,
            ring_size: v.ring_size,
            members: v
                .members
                .into_iter()
                .map(|m| MemberBody {
                    node_id: m.node_id.0,
                    api_addr: m.api_addr,
                    peer_addr: m.peer_addr,
                    zone: m.zone,
                    status: m.status.as_str().to_string(),
                    reachable: m.reachable,
                })
                .collect(),
            owned_partitions: v.owned_partitions as u64,
            hints_pending: v.hints_pending,
            handoffs_pending: v.handoffs_pending as u64,
            ring_settled: v.ring_settled,
            workers: v
                .workers
                .into_iter()
                .map(|w| WorkerBody {
                    name: w.name,
                    state: w.state.as_str().to_string(),
                    last_error: w.last_error,
                    last_error_at_ms: w.last_error_at_ms,
                    steps: w.steps,
                    errors: w.errors,
                })
                .collect(),
            transfers: v.transfers.map(TransfersBody::from),
            clock_offset_ms: v.clock_offset_ms,
            catching_up: v.catching_up,
            staged_plan: v.staged_plan,
        }
    }
}

/// One partition in `/v1/admin/ring`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PartitionBody {
    pub id: u32,
    pub owner: String,
    pub preference_list: Vec<String>,
}

/// `GET /v1/admin/ring`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RingBody {
    pub ring_version: u64,
    pub ring_size: u32,
    /// The replication the preference lists below are computed for.
    pub n: u32,
    pub partitions: Vec<PartitionBody>,
}

impl From<madmin::RingView> for RingBody {
    fn from(v: madmin::RingView) -> RingBody {
        RingBody {
            ring_version: v.ring_version,
            ring_size: v.ring_size,
            n: v.n,
            partitions: v
                .partitions
                .into_iter()
                .map(|p| PartitionBody {
                    id: p.id,
                    owner: p.owner.0,
                    preference_list: ids(p.preference_list),
                })
                .collect(),
        }
    }
}

/// `GET /v1/admin/preflist/{bucket}/{key}`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PreflistBody {
    pub partition: u32,
    /// The key's primary owners (for its bucket's `n`).
    pub primaries: Vec<String>,
    /// The nodes that would serve it now, fallbacks included.
    pub serving: Vec<String>,
}

impl From<madmin::PreflistView> for PreflistBody {
    fn from(v: madmin::PreflistView) -> PreflistBody {
        PreflistBody {
            partition: v.partition,
            primaries: ids(v.primaries),
            serving: ids(v.serving),
        }
    }
}

/// One membership change of the pending plan.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChangeBody {
    /// `join`, `leave`, `remove` or `replace`.
    pub action: String,
    pub node: String,
    /// For a replace: the member that takes over `node`'s partitions.
    pub by: Option<String>,
    /// The pending plan carries this change; false until the claimant has recomputed the
    /// plan for it (a gossip round or two), and a commit waits for that.
    pub planned: bool,
}

/// One partition a node receives before the plan is committed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PlanTransferBody {
    pub partition: u32,
    pub from: String,
    pub to: String,
    /// The source has finished sending it.
    pub done: bool,
}

/// Partitions a node owns now and once the plan is committed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PartitionCountsBody {
    pub before: u64,
    pub after: u64,
}

/// `GET /v1/admin/plan`: the pending ring change.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PlanBody {
    /// A plan is pending (staged or applying); false when the ring is as it will stay.
    pub pending: bool,
    /// The plan waits for `POST /v1/admin/plan/commit` (nodes started with
    /// `--staged-changes`); nothing moves until then.
    pub staged: bool,
    pub plan_id: Option<u64>,
    pub ring_version: u64,
    pub changes: Vec<ChangeBody>,
    pub transfers: Vec<PlanTransferBody>,
    /// Per node id: partitions owned in the committed ring and in the plan's target.
    pub partitions: BTreeMap<String, PartitionCountsBody>,
}

impl From<mplan::PlanView> for PlanBody {
    fn from(v: mplan::PlanView) -> PlanBody {
        let action = |a: mplan::Action| match a {
            mplan::Action::Join => "join",
            mplan::Action::Leave => "leave",
            mplan::Action::Remove => "remove",
            mplan::Action::Replace => "replace",
        };
        PlanBody {
            pending: v.pending,
            staged: v.staged,
            plan_id: v.plan_id,
            ring_version: v.ring_version,
            changes: v
                .changes
                .into_iter()
                .map(|c| ChangeBody {
                    action: action(c.action).to_string(),
                    node: c.node.0,
                    by: c.by.map(|n| n.0),
                    planned: c.planned,
                })
                .collect(),
            transfers: v
                .transfers
                .into_iter()
                .map(|t| PlanTransferBody {
                    partition: t.partition,
                    from: t.from.0,
                    to: t.to.0,
                    done: t.done,
                })
                .collect(),
            partitions: v
                .partitions
                .into_iter()
                .map(|(id, c)| {
                    let counts = PartitionCountsBody {
                        before: c.before as u64,
                        after: c.after as u64,
                    };
                    (id.0, counts)
                })
                .collect(),
        }
    }
}

/// Answer of the leave and remove commands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AcceptedBody {
    /// What the cluster does next.
    pub message: String,
}

/// `GET /health` and `GET /ready`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `ok`, or `not_ready`.
    pub status: String,
    /// Why a node is not ready: `not_joined`, or `catching_up` (restarted, its peers still
    /// hold hints for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// While catching up: the hints its peers reported holding for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hints_pending: Option<u64>,
}

impl HealthBody {
    pub fn ok() -> HealthBody {
        HealthBody {
            status: "ok".into(),
            reason: None,
            hints_pending: None,
        }
    }
}

fn ids(v: Vec<NodeId>) -> Vec<String> {
    v.into_iter().map(|n| n.0).collect()
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> ApiError {
        let code = match &e {
            MembershipError::UnknownMember(_) => Code::NotFound,
            MembershipError::CannotRemoveSelf | MembershipError::ReplaceSameNode(_) => {
                Code::BadRequest
            }
            MembershipError::Removed(_)
            | MembershipError::OnlyMember
            | MembershipError::AlreadyLeaving(_)
            | MembershipError::NotJoined
            | MembershipError::OtherCluster { .. }
            | MembershipError::Refused(_)
            | MembershipError::ReplaceInFlight { .. }
            | MembershipError::ReplacementOwnsPartitions(_)
            | MembershipError::NothingToReplace(_)
            | MembershipError::ReplaceBreaksPlacement(_)
            | MembershipError::NothingStaged
            | MembershipError::PlanApplying(_)
            | MembershipError::PlanOutdated(_) => Code::Conflict,
            MembershipError::Persist(_) => Code::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

/// Runs blocking storage work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
}

#[utoipa::path(get, path = "/v1/admin/status", tag = "admin",
    responses((status = 200, description = "This node's view of the cluster", body = StatusBody)))]
pub async fn status(State(node): State<AppState>, uri: Uri) -> Result<Json<StatusBody>, ApiError> {
    params::no_query(uri.query())?;
    let view = blocking(move || madmin::status(&node).map_err(ApiError::from)).await?;
    Ok(Json(view.into()))
}

#[utoipa::path(get, path = "/v1/admin/ring", tag = "admin",
    responses((status = 200, description = "The committed ring", body = RingBody)))]
pub async fn ring(State(node): State<AppState>, uri: Uri) -> Result<Json<RingBody>, ApiError> {
    params::no_query(uri.query())?;
    Ok(Json(madmin::ring_view(&node).into()))
}

#[utoipa::path(get, path = "/v1/admin/preflist/{bucket}/{key}", tag = "admin",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded"),
           ("key" = String, Path, description = "1..=1024 bytes, URL-encoded")),
    responses((status = 200, description = "Where the key lives", body = PreflistBody),
              (status = 400, description = "Bad bucket or key", body = super::error::ErrorBody)))]
pub async fn preflist(
    State(node): State<AppState>,
    uri: Uri,
) -> Result<Json<PreflistBody>, ApiError> {
    let (bucket, key) = params::bucket_and_key(uri.path(), 3)?;
    params::no_query(uri.query())?;
    Ok(Json(madmin::preflist_view(&node, &bucket, &key).into()))
}

/// This node's own stored copy of a key: its objects copy first, else a hint it holds.
fn local_copy(
    node: &riftkv_cluster::node::Node,
    bucket: &[u8],
    key: &[u8],
) -> Result<Option<(u32, Object, Option<NodeId>)>, ApiError> {
    let ring_size = node.state.read().ring_size();
    let partition = riftkv_core::ring::partition_for(bucket, key, ring_size);
    let k = ObjectKey::new(partition, bucket, key);
    if let Some(o) = node.local_object(&k)?.filter(|o| !o.is_empty()) {
        return Ok(Some((partition, o, None)));
    }
    for (target, _) in node.storage.hint_counts()? {
        let hk = HintKey::for_object(target.clone(), &k);
        if let Some(bytes) = node.storage.get_hint(&hk)? {
            let o = Object::decode(&bytes)
                .map_err(|e| ApiError::internal(format!("stored hint is damaged: {e}")))?;
            if !o.is_empty() {
                return Ok(Some((partition, o, Some(target))));
            }
        }
    }
    Ok(None)
}

#[utoipa::path(get, path = "/v1/admin/local/{bucket}/{key}", tag = "admin",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded"),
           ("key" = String, Path, description = "1..=1024 bytes, URL-encoded")),
    responses((status = 200, description = "This node's copy, without quorum or repair", body = LocalJson),
              (status = 404, description = "This node holds nothing for the key", body = super::error::ErrorBody)))]
pub async fn local(State(node): State<AppState>, uri: Uri) -> Result<Json<LocalJson>, ApiError> {
    let (bucket, key) = params::bucket_and_key(uri.path(), 3)?;
    params::no_query(uri.query())?;
    let (n, b, k) = (node.clone(), bucket.clone(), key.clone());
    let found = blocking(move || local_copy(&n, &b, &k)).await?;
    let Some((partition, obj, hinted_for)) = found else {
        return Err(ApiError::not_found("this node holds no copy of this key"));
    };
    let signer = TokenSigner {
        ctx_key: &node.context_key,
        bucket: &bucket,
        key: &key,
    };
    // The envelope of a GET: expired versions are hidden here as everywhere.
    let env = read_json(&obj.visible_at(node.expiry_now_ms()), &signer);
    Ok(Json(LocalJson {
        context: env.context,
        siblings: env.siblings,
        partition,
        hinted_for: hinted_for.map(|n| n.0),
    }))
}

#[utoipa::path(post, path = "/v1/admin/leave", tag = "admin",
    responses((status = 202, description = "The node hands its partitions off, then leaves", body = AcceptedBody),
              (status = 409, description = "The node cannot leave (only member, not joined)", body = super::error::ErrorBody)))]
pub async fn leave(State(node): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params::no_query(uri.query())?;
    madmin::leave(&node).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AcceptedBody {
            message: "leaving: partitions are handed off, then the node stops".into(),
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/admin/remove/{node_id}", tag = "admin",
    params(("node_id" = String, Path, description = "The member to drop")),
    responses((status = 202, description = "The member is removed; its partitions are reassigned", body = AcceptedBody),
              (status = 404, description = "No such member", body = super::error::ErrorBody),
              (status = 400, description = "A node cannot remove itself", body = super::error::ErrorBody)))]
pub async fn remove(State(node): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params::no_query(uri.query())?;
    let target = node_id_segment(&uri, 3)?;
    let id = target.0.clone();
    madmin::remove(&node, &target).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AcceptedBody {
            message: format!("node {id} removed; its partitions are being reassigned"),
        }),
    )
        .into_response())
}

/// The UTF-8, non-empty path segment at `index` (a node id).
fn node_id_segment(uri: &Uri, index: usize) -> Result<NodeId, ApiError> {
    let raw = params::path_segments(uri.path())
        .into_iter()
        .nth(index)
        .unwrap_or_default();
    let id =
        String::from_utf8(raw).map_err(|_| ApiError::bad_request("a node id is UTF-8 text"))?;
    if id.is_empty() {
        return Err(ApiError::bad_request("a node id must not be empty"));
    }
    Ok(NodeId(id))
}

#[utoipa::path(post, path = "/v1/admin/replace/{old}/{new}", tag = "admin",
    params(("old" = String, Path, description = "The (dead) member to replace"),
           ("new" = String, Path, description = "A member that joined and owns no partitions yet")),
    responses((status = 202, description = "`old` is removed; `new` receives exactly its partitions from the surviving replicas", body = AcceptedBody),
              (status = 400, description = "`old` and `new` are the same node, or `old` is the node asked", body = super::error::ErrorBody),
              (status = 404, description = "`old` or `new` is not a member", body = super::error::ErrorBody),
              (status = 409, description = "A member was removed, `new` already owns partitions, or a replace is in flight", body = super::error::ErrorBody)))]
pub async fn replace(State(node): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params::no_query(uri.query())?;
    let old = node_id_segment(&uri, 3)?;
    let new = node_id_segment(&uri, 4)?;
    let message = format!(
        "node {old} removed; node {new} receives its partitions from the surviving replicas"
    );
    madmin::replace(&node, &old, &new).await?;
    Ok((StatusCode::ACCEPTED, Json(AcceptedBody { message })).into_response())
}

#[utoipa::path(get, path = "/v1/admin/plan", tag = "admin",
    responses((status = 200, description = "The pending ring change (staged or applying) with its transfers and the partitions per node before and after; `pending` is false when nothing is pending", body = PlanBody)))]
pub async fn plan(State(node): State<AppState>, uri: Uri) -> Result<Json<PlanBody>, ApiError> {
    params::no_query(uri.query())?;
    Ok(Json(mplan::view(&node).into()))
}

#[utoipa::path(post, path = "/v1/admin/plan/commit", tag = "admin",
    responses((status = 202, description = "The staged plan applies: its transfers start and ownership changes once they are done (the plan as it now stands)", body = PlanBody),
              (status = 409, description = "Nothing is staged (no plan is pending, the pending plan is already applying, or this node has not joined), or the staged plan does not carry a change yet (look at it again in a moment)", body = super::error::ErrorBody)))]
pub async fn commit_plan(State(node): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    params::no_query(uri.query())?;
    let view = mplan::commit(&node).await?;
    Ok((StatusCode::ACCEPTED, Json(PlanBody::from(view))).into_response())
}

#[utoipa::path(post, path = "/v1/admin/backup", tag = "admin",
    request_body(content = crate::backup::BackupRequest, content_type = "application/json"),
    responses((status = 201, description = "The snapshot is written into `out` on this node's file system: `out/db` and `out/backup.json` (this body)", body = crate::backup::BackupManifest),
              (status = 400, description = "`out` is relative, exists and is not empty, or cannot be created", body = super::error::ErrorBody)))]
pub async fn backup(
    State(node): State<AppState>,
    uri: Uri,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    use crate::backup::{self as b, BackupError};
    params::no_query(uri.query())?;
    let bytes = super::objects::read_body(body, None, 64 * 1024).await?;
    let req: b::BackupRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not the expected JSON: {e}")))?;
    let manifest = {
        let state = node.state.read();
        b::BackupManifest {
            format_version: b::BACKUP_FORMAT_VERSION,
            node_id: node.id.as_str().to_string(),
            cluster_name: node.settings.cluster_name.clone(),
            storage_format_version: riftkv_core::storage::FORMAT_VERSION,
            ring_version: state.ring_version,
            // Before the checkpoint: the recorded time is never later than the data.
            snapshot_ms: node.clock.now_ms(),
            tombstone_grace_ms: u64::try_from(node.settings.tombstone_grace.as_millis())
                .unwrap_or(u64::MAX),
            riftkv_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    };
    let (n, m) = (node.clone(), manifest.clone());
    blocking(move || {
        b::take(n.storage.as_ref(), &req.out, &m).map_err(|e| match e {
            BackupError::BadTarget(msg) => ApiError::bad_request(msg),
            other => ApiError::internal(format!("backup failed: {other}")),
        })?;
        tracing::info!(out = %req.out, snapshot_ms = m.snapshot_ms, "backup written");
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(manifest)).into_response())
}

#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, description = "The process serves", body = HealthBody)))]
pub async fn health() -> Json<HealthBody> {
    Json(HealthBody::ok())
}

#[utoipa::path(get, path = "/ready", tag = "operations", security(()),
    responses((status = 200, description = "Joined with a known ring, and caught up on hints after a restart", body = HealthBody),
              (status = 503, description = "Not joined yet (`not_joined`), restarted and still catching up on the hints peers hold for it (`catching_up`), or stopping (`stopping`, while a stopping node drains its clients)", body = HealthBody)))]
pub async fn ready(State(node): State<AppState>) -> Response {
    let not_ready = |reason: &str, hints_pending: Option<u64>| {
        let body = HealthBody {
            status: "not_ready".into(),
            reason: Some(reason.into()),
            hints_pending,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    };
    if node.stopping.load(Ordering::SeqCst) {
        return not_ready("stopping", None);
    }
    if !node.joined.load(Ordering::SeqCst) || node.state.read().ring_size() == 0 {
        return not_ready("not_joined", None);
    }
    if node.catch_up.is_catching_up() {
        return not_ready("catching_up", Some(node.catch_up.hints_pending()));
    }
    Json(HealthBody::ok()).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(node): State<AppState>) -> Response {
    let n = node.clone();
    let (bytes, engine) = tokio::task::spawn_blocking(move || {
        (n.storage.approximate_bytes(), n.storage.engine_stats())
    })
    .await
    .unwrap_or_default();
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let m = &node.metrics;
    m.storage_bytes.set(gauge(bytes));
    m.storage_pending_compaction_bytes
        .set(gauge(engine.pending_compaction_bytes));
    m.storage_running_compactions
        .set(gauge(engine.running_compactions));
    m.storage_block_cache_bytes
        .set(gauge(engine.block_cache_bytes));
    m.storage_blob_garbage_bytes
        .set(gauge(engine.blob_garbage_bytes));
    node.metrics
        .partitions_owned
        .set(node.state.read().ring.partitions_of(&node.id).len() as i64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(node.metrics.content_type()),
        )],
        node.metrics.render(),
    )
        .into_response()
}
