//! The write path (puts and deletes). The coordinator is always a node serving the key (a
//! primary when one is up): it adds a dot to its own copy, persists it, sends the new object
//! to the other serving nodes at once, and answers after `w` acks (`dw` durable, `pw` from
//! primaries). Replicas still writing when the answer leaves keep going in the background.

use super::error::{KvError, WireKvError};
use super::placement::{Placement, check_names, data_type_of, place};
use super::put_core::{PutCore, PutStatus};
use super::quorum::{ConsistencyParams, WriteQuorum, check_write};
use crate::node::Node;
use crate::preflist::Role;
use crate::replica::rpc::{ReplicaRequest, ReplicaResponse};
use crate::replica::{
    Written, blocking, coordinate_update, coordinate_write, try_coordinate_write,
};
use crate::rpc::{Endpoint, Message, RpcError};
use bytes::Bytes;
use riftkv_core::net::NetError;
use riftkv_core::storage::ObjectKey;
use riftkv_core::types::NodeId;
use riftkv_core::version::{Object, Sibling, VersionVector};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A client's PUT.
#[derive(Clone, Debug)]
pub struct PutRequest {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Bytes,
    pub content_type: String,
    /// The causal context of an earlier read (decoded from its token at the edge), if any.
    pub context: Option<VersionVector>,
    /// `If-None-Match: *`: refuse when a live value is visible at the read quorum.
    pub if_none_match: bool,
    pub params: ConsistencyParams,
    /// Overall deadline; the node's request timeout when absent.
    pub timeout: Option<Duration>,
    /// The value expires this long after the coordinator's write time; `None`: never.
    pub ttl: Option<Duration>,
}

/// A successful write: the object as the coordinator stored it, as a reader there sees it
/// (expired versions hidden), for `returnbody` and the new context token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub object: Object,
}

/// What a write adds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Change {
    Value {
        value: Vec<u8>,
        content_type: String,
        /// Milliseconds after the coordinator's write time the value expires; `None`: never.
        ttl_ms: Option<u64>,
    },
    /// A tombstone: a version like any other, marked deleted.
    Delete,
    /// A data type operation (JSON, CONTRACT §6), applied by the coordinator to its copy's
    /// merged state ([`crate::replica::coordinate_update`]). `context` is what the client read;
    /// removes need it.
    Update {
        op: String,
        context: Option<riftkv_crdt::Context<riftkv_core::version::Actor>>,
    },
}

/// A write as the coordinator receives it (also forwarded between nodes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteOp {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    pub change: Change,
    /// What the client had seen; peers are authenticated, so the decoded vector travels.
    pub context: Option<VersionVector>,
    pub if_none_match: bool,
    pub params: ConsistencyParams,
    pub timeout_ms: u64,
}

/// Grace added to a forwarded write's call so the remote coordinator's own timeout answer
/// arrives before ours fires.
const FORWARD_GRACE: Duration = Duration::from_millis(250);

/// Coordinates a client PUT from any node.
pub async fn put(node: &Arc<Node>, req: PutRequest) -> Result<PutOutcome, KvError> {
    check_names(&req.bucket, &req.key)?;
    let timeout = req.timeout.unwrap_or(node.settings.request_timeout);
    let op = WriteOp {
        bucket: req.bucket,
        key: req.key,
        change: Change::Value {
            value: req.value.to_vec(),
            content_type: req.content_type,
            ttl_ms: req
                .ttl
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        },
        context: req.context,
        if_none_match: req.if_none_match,
        params: req.params,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    write(node, op, "put").await.map(|object| PutOutcome {
        object: object.into_visible_at(node.expiry_now_ms()),
    })
}

/// A client write (put or delete): routes it to a coordinator and counts quorum failures.
pub(crate) async fn write(node: &Arc<Node>, op: WriteOp, label: &str) -> Result<Object, KvError> {
    let r = route(node, op).await;
    if matches!(r, Err(KvError::Quorum { .. } | KvError::Timeout)) {
        node.metrics
            .quorum_failures_total
            .with_label_values(&[label])
            .inc();
    }
    r
}

fn deadline_of(op: &WriteOp) -> Instant {
    Instant::now() + Duration::from_millis(op.timeout_ms)
}

/// Coordinates here when this node is a serving primary; otherwise hands the write to a
/// serving primary (or, when none answers, coordinates as a fallback or tries the fallbacks).
async fn route(node: &Arc<Node>, op: WriteOp) -> Result<Object, KvError> {
    let deadline = deadline_of(&op);
    let pl = place(node, &op.bucket, &op.key);
    let wq = op.params.write(&pl.props)?;
    check_write(&pl.serving, &wq)?;
    if let Some(Role::Primary) = pl.role_of(&node.id) {
        return coordinate(node, &op, &pl, wq, &Role::Primary, deadline).await;
    }
    let mut errors: Vec<(NodeId, String)> = Vec::new();
    for (candidate, role) in &pl.serving {
        if candidate == &node.id {
            return coordinate(node, &op, &pl, wq, role, deadline).await;
        }
        if Instant::now() >= deadline {
            return Err(KvError::Timeout);
        }
        match forward(node, candidate, &op, deadline).await {
            Forwarded::Stored(o) => return Ok(o),
            Forwarded::Failed(e) | Forwarded::Unknown(e) => return Err(e),
            Forwarded::TryNext(why) => errors.push((candidate.clone(), why)),
        }
    }
    Err(KvError::Quorum {
        needed: wq.w,
        got: 0,
        which: "w",
        errors,
    })
}

/// A write forwarded by a node that is not a replica of its key to one that is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CoordinateRequest {
    /// Coordinate a write on behalf of a node that is not a replica of the key.
    Put(WriteOp),
}

impl Message for CoordinateRequest {
    const ENDPOINT: Endpoint = Endpoint::Coordinate;
    /// The stored object's encoding, or why the write failed.
    type Reply = Result<Vec<u8>, WireKvError>;

    fn label(&self) -> &'static str {
        match self {
            CoordinateRequest::Put(_) => "coordinate_put",
        }
    }
}

/// The receiving coordinator's side of a [`CoordinateRequest`].
pub async fn handle_forwarded(
    node: &Arc<Node>,
    req: CoordinateRequest,
) -> Result<Vec<u8>, WireKvError> {
    match req {
        CoordinateRequest::Put(op) => coordinate_forwarded(node, op).await.map(|o| o.encode()),
    }
}

/// What a forwarded write's RPC outcome means for the forwarding node.
#[derive(Debug)]
pub(crate) enum Forwarded {
    /// The remote coordinator stored the write: this is the object it stored.
    Stored(Object),
    /// The remote coordinator answered with an error (or an object we cannot read): final.
    Failed(KvError),
    /// The candidate certainly did not coordinate the write: another may.
    TryNext(String),
    /// Sent, but the outcome is unknown: retrying elsewhere could apply the write twice.
    Unknown(KvError),
}

/// Decides from a forwarded write's RPC outcome whether to answer, try the next serving
/// node, or report an unknown outcome. Pure, so every case is tested: a wrong `TryNext`
/// here can apply one client write twice.
pub(crate) fn forward_decision(
    to: &NodeId,
    outcome: Result<Result<Vec<u8>, WireKvError>, RpcError>,
) -> Forwarded {
    match outcome {
        Ok(Ok(bytes)) => match Object::decode(&bytes) {
            Ok(o) => Forwarded::Stored(o),
            Err(e) => Forwarded::Failed(KvError::Internal(format!(
                "coordinator answered a bad object: {e}"
            ))),
        },
        Ok(Err(WireKvError::NotReplica)) => {
            Forwarded::TryNext("not a replica in its view of the ring".into())
        }
        Ok(Err(e)) => Forwarded::Failed(e.into()),
        Err(e) if e.never_delivered() => Forwarded::TryNext(e.to_string()),
        // The peer could not decode or handle the request: it wrote nothing.
        Err(e @ (RpcError::Remote(_) | RpcError::Codec(_))) => Forwarded::TryNext(e.to_string()),
        Err(RpcError::Net(NetError::Timeout)) => Forwarded::Unknown(KvError::Timeout),
        Err(e) => Forwarded::Unknown(KvError::Internal(format!(
            "forwarded write to {to} has an unknown outcome: {e}"
        ))),
    }
}

async fn forward(node: &Arc<Node>, to: &NodeId, op: &WriteOp, deadline: Instant) -> Forwarded {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut op = op.clone();
    op.timeout_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    let req = CoordinateRequest::Put(op);
    forward_decision(to, node.call(to, req, left + FORWARD_GRACE).await)
}

/// A write forwarded by another node: coordinated here when this node serves the key in its
/// own view of the ring, never forwarded again.
pub(crate) async fn coordinate_forwarded(
    node: &Arc<Node>,
    op: WriteOp,
) -> Result<Object, WireKvError> {
    let deadline = deadline_of(&op);
    let run = async {
        check_names(&op.bucket, &op.key)?;
        let pl = place(node, &op.bucket, &op.key);
        let wq = op.params.write(&pl.props)?;
        check_write(&pl.serving, &wq)?;
        match pl.role_of(&node.id) {
            Some(role) => Ok(Some(coordinate(node, &op, &pl, wq, role, deadline).await?)),
            None => Ok(None),
        }
    };
    match run.await {
        Ok(Some(obj)) => Ok(obj),
        Ok(None) => Err(WireKvError::NotReplica),
        Err(e) => Err(WireKvError::from(&e)),
    }
}

/// The coordinator's side of a write, in this node's `role` for the key.
async fn coordinate(
    node: &Arc<Node>,
    op: &WriteOp,
    pl: &Placement,
    wq: WriteQuorum,
    role: &Role,
    deadline: Instant,
) -> Result<Object, KvError> {
    let mut ctx = op.context.clone().unwrap_or_default();
    let is_delete = matches!(op.change, Change::Delete);
    if op.if_none_match || (is_delete && op.context.is_none()) {
        // The request's r/pr (bucket defaults only where absent): a client asking for r=one
        // on a short serving set must not be refused for the bucket's default r.
        let rq = op.params.read(&pl.props)?;
        let seen = super::get::read_quorum(node, pl, &op.bucket, &op.key, rq, deadline).await?;
        if op.if_none_match
            && seen
                .as_ref()
                .is_some_and(|o| !o.live_siblings(node.expiry_now_ms()).is_empty())
        {
            return Err(KvError::PreconditionFailed);
        }
        if is_delete && op.context.is_none() {
            // A delete without context supersedes exactly what the quorum read saw.
            ctx = seen.map(|o| o.context()).unwrap_or_default();
        }
    }

    // The write time, from this coordinator's clock: the version's timestamp and, with a TTL,
    // its absolute expiry, carried by every copy so no replica's clock decides it alone.
    let now = node.clock.now_ms();
    let sync = wq.dw > 0;
    let k = ObjectKey::new(pl.partition, op.bucket.clone(), op.key.clone());
    let (n, role, limits) = (node.clone(), role.clone(), node.settings.limits);
    let sibling = match &op.change {
        Change::Value {
            value,
            content_type,
            ttl_ms,
        } => {
            // The write's own TTL, else the bucket's (as this coordinator's ring state has it).
            // The expiry counts from cluster time, so a lagging coordinator does not stamp an
            // instant that has already passed for the others.
            let ttl_ms = ttl_ms.or_else(|| pl.props.default_ttl_ms());
            let expiry_base = n.expiry_now_ms();
            Sibling::new(Bytes::from(value.clone()), content_type.clone(), now)
                .expiring(ttl_ms.map(|t| expiry_base.saturating_add(t)))
        }
        Change::Delete => Sibling::tombstone(now),
        Change::Update {
            op: type_op,
            context,
        } => {
            let data_type = data_type_of(&pl.props)?;
            let (type_op, context) = (type_op.clone(), context.clone());
            let written = blocking(move || {
                coordinate_update(
                    &n,
                    &k,
                    data_type,
                    &type_op,
                    context.as_ref(),
                    &limits,
                    sync,
                    &role,
                )
            })
            .await?;
            return replicate(node, op, pl, wq, written, deadline).await;
        }
    };
    let mode = pl.props.conflict;
    let inline = try_coordinate_write(&n, &k, &ctx, &sibling, mode, &limits, sync, &role);
    let written = match inline {
        Some(r) => r?,
        None => {
            blocking(move || coordinate_write(&n, &k, &ctx, sibling, mode, &limits, sync, &role))
                .await?
        }
    };
    replicate(node, op, pl, wq, written, deadline).await
}

/// Sends the object the coordinator stored to the other serving nodes and answers once the
/// write quorum is met (or cannot be). A durable local write counts as this node's answer
/// once its WAL sync is done, which runs while the replicas store their copies.
async fn replicate(
    node: &Arc<Node>,
    op: &WriteOp,
    pl: &Placement,
    wq: WriteQuorum,
    written: Written,
    deadline: Instant,
) -> Result<Object, KvError> {
    let sync = wq.dw > 0;
    let Written {
        object: obj,
        pending,
    } = written;
    node.metrics
        .clock_entries
        .observe(obj.clock_entries() as f64);
    if pl.serving.iter().any(|(_, role)| !role.is_primary()) {
        node.metrics.sloppy_writes_total.inc();
    }

    let mut core = PutCore::new(pl.serving.clone(), wq.w, wq.dw, wq.pw);
    let (tx, mut rx) = mpsc::unbounded_channel::<(NodeId, Result<bool, String>)>();
    match pending {
        None => {
            core.add_ack(node.id.clone(), Ok(sync));
        }
        Some(ticket) => {
            let (wal, me, tx) = (node.wal.clone(), node.id.clone(), tx.clone());
            tokio::spawn(async move {
                let r = wal.wait(ticket).await.map(|()| true);
                let _ = tx.send((me, r.map_err(|e| e.to_string())));
            });
        }
    }
    let bytes = obj.encode();
    let left = deadline.saturating_duration_since(Instant::now());
    for (peer, role) in pl.serving.iter().filter(|(n, _)| n != &node.id) {
        let req = ReplicaRequest::ReplicaPut {
            partition: pl.partition,
            bucket: op.bucket.clone(),
            key: op.key.clone(),
            object: bytes.clone(),
            sync,
            hinted_for: role.hinted_for().cloned(),
        };
        let (node, peer, tx) = (node.clone(), peer.clone(), tx.clone());
        // Not cancelled when the answer leaves: stragglers still receive the write.
        tokio::spawn(crate::trace::traced(async move {
            let r = match crate::replica::rpc::call(&node, &peer, req, left).await {
                Ok(ReplicaResponse::Stored { durable }) => Ok(durable),
                Ok(_) => Err("unexpected answer to a replica write".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send((peer, r));
        }));
    }
    drop(tx);
    // Set when this node's own copy, already stored and visible, could not be made durable.
    let mut local_unsynced: Option<String> = None;
    loop {
        match core.status() {
            PutStatus::Done => return Ok(obj),
            PutStatus::Failed(q) => return Err(unmet(q.into(), &node.id, local_unsynced)),
            PutStatus::Pending => {}
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((peer, r))) => {
                if peer == node.id
                    && let Err(e) = &r
                {
                    local_unsynced = Some(e.clone());
                }
                core.add_ack(peer, r);
            }
            Ok(None) => {
                return Err(KvError::Internal(
                    "every replica answered without deciding the write".into(),
                ));
            }
            Err(_) => return Err(KvError::Timeout),
        }
    }
}

/// The error of a write whose quorum was not met. When this node's own copy was stored (and
/// is visible to reads) but its WAL sync failed, the write may well survive, so the answer is
/// an unknown outcome, never a quorum refusal that says nothing was applied.
fn unmet(e: KvError, me: &NodeId, local_unsynced: Option<String>) -> KvError {
    match local_unsynced {
        Some(why) => KvError::Internal(format!(
            "{e}; {me} stored the write but could not make it durable ({why}): the write has \
             an unknown outcome"
        )),
        None => e,
    }
}

#[cfg(test)]
mod forward_tests {
    use super::*;

    fn decide(outcome: Result<Result<Vec<u8>, WireKvError>, RpcError>) -> Forwarded {
        forward_decision(&NodeId::from("b"), outcome)
    }

    fn net(e: NetError) -> Forwarded {
        decide(Err(RpcError::Net(e)))
    }

    #[test]
    fn a_stored_object_is_the_answer() {
        let obj = Object::default();
        match decide(Ok(Ok(obj.encode()))) {
            Forwarded::Stored(o) => assert_eq!(o, obj),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_object_is_a_final_internal_error() {
        assert!(matches!(
            decide(Ok(Ok(vec![0xff, 0x00, 0x13]))),
            Forwarded::Failed(KvError::Internal(m)) if m.contains("bad object")
        ));
    }

    #[test]
    fn not_replica_tries_the_next_node() {
        assert!(matches!(
            decide(Ok(Err(WireKvError::NotReplica))),
            Forwarded::TryNext(_)
        ));
    }

    #[test]
    fn remote_coordinator_errors_are_final() {
        assert!(matches!(
            decide(Ok(Err(WireKvError::PreconditionFailed))),
            Forwarded::Failed(KvError::PreconditionFailed)
        ));
        assert!(matches!(
            decide(Ok(Err(WireKvError::Timeout))),
            Forwarded::Failed(KvError::Timeout)
        ));
        assert!(matches!(
            decide(Ok(Err(WireKvError::Quorum {
                needed: 2,
                got: 1,
                which: "w".into(),
                errors: vec![]
            }))),
            Forwarded::Failed(KvError::Quorum {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            decide(Ok(Err(WireKvError::BadRequest("x".into())))),
            Forwarded::Failed(KvError::BadRequest(_))
        ));
    }

    #[test]
    fn undelivered_or_unhandled_requests_try_the_next_node() {
        assert!(matches!(
            net(NetError::Unreachable("down".into())),
            Forwarded::TryNext(_)
        ));
        assert!(matches!(
            net(NetError::Refused("auth".into())),
            Forwarded::TryNext(_)
        ));
        assert!(matches!(
            net(NetError::FrameTooLarge { size: 9, limit: 1 }),
            Forwarded::TryNext(_)
        ));
        assert!(matches!(
            decide(Err(RpcError::UnknownPeer(NodeId::from("b")))),
            Forwarded::TryNext(_)
        ));
        assert!(matches!(
            decide(Err(RpcError::Remote("panic".into()))),
            Forwarded::TryNext(_)
        ));
        assert!(matches!(
            decide(Err(RpcError::Codec("bad frame".into()))),
            Forwarded::TryNext(_)
        ));
    }

    #[test]
    fn ambiguous_failures_report_an_unknown_outcome() {
        assert!(matches!(
            net(NetError::Timeout),
            Forwarded::Unknown(KvError::Timeout)
        ));
        for e in [
            NetError::Closed,
            NetError::ShuttingDown,
            NetError::Codec("x".into()),
            NetError::Remote("x".into()),
            NetError::Bind("x".into()),
        ] {
            match net(e) {
                Forwarded::Unknown(KvError::Internal(m)) => {
                    assert!(m.contains("unknown outcome"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            decide(Err(RpcError::Unexpected("coordinate_put"))),
            Forwarded::Unknown(KvError::Internal(_))
        ));
    }
}

#[cfg(test)]
mod unmet_tests {
    use super::*;

    /// A refusal whose local copy was stored but not synced is an unknown outcome (a client
    /// must not take it for "nothing applied"); without one it stays the quorum refusal.
    #[test]
    fn a_stored_but_unsynced_local_copy_makes_the_outcome_unknown() {
        let q = || KvError::Quorum {
            needed: 1,
            got: 0,
            which: "w",
            errors: Vec::new(),
        };
        let me = NodeId::from("a");
        assert!(matches!(unmet(q(), &me, None), KvError::Quorum { .. }));
        match unmet(q(), &me, Some("node is stopping".into())) {
            KvError::Internal(m) => assert!(m.contains("unknown outcome"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
