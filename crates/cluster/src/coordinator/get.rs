//! The read path: ask the first `r` serving nodes (`pr` of them primaries, this node first
//! when it serves the key, replicas catching up on hints after a restart last), ask more when one fails or stays silent past the hedge delay,
//! answer after `r` answers (`pr` from primaries) with the merge of the copies received, then
//! keep collecting the asked nodes' answers in the background and read-repair every asked
//! replica that answered with a stale or missing copy.

use super::error::KvError;
use super::get_core::{GetCore, GetStatus, ReadReply};
use super::placement::{Placement, check_names, place};
use super::quorum::{ConsistencyParams, ReadQuorum, check_read};
use crate::node::Node;
use crate::preflist::Role;
use crate::replica::read_copy;
use crate::replica::rpc::{ReplicaRequest, ReplicaResponse};
use riftkv_core::storage::ObjectKey;
use riftkv_core::types::NodeId;
use riftkv_core::version::{ConflictMode, Object};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A client's GET.
#[derive(Clone, Debug)]
pub struct GetRequest {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    pub params: ConsistencyParams,
    /// Overall deadline; the node's request timeout when absent.
    pub timeout: Option<Duration>,
}

/// The merged object of the read quorum as a reader at this node sees it: expired versions
/// are left out (the clock still covers them). `None`: no replica holds anything. An object
/// with no live version is a deleted or expired key (404) that still has a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetOutcome {
    pub object: Option<Object>,
}

/// Coordinates a client GET from any node.
pub async fn get(node: &Arc<Node>, req: GetRequest) -> Result<GetOutcome, KvError> {
    check_names(&req.bucket, &req.key)?;
    let deadline = Instant::now() + req.timeout.unwrap_or(node.settings.request_timeout);
    let pl = place(node, &req.bucket, &req.key);
    let rq = req.params.read(&pl.props)?;
    let r = read_quorum(node, &pl, &req.bucket, &req.key, rq, deadline).await;
    match &r {
        Ok(Some(o)) => node.metrics.siblings.observe(o.sibling_count() as f64),
        Ok(None) => {}
        Err(KvError::Quorum { .. } | KvError::Timeout) => node
            .metrics
            .quorum_failures_total
            .with_label_values(&["get"])
            .inc(),
        Err(_) => {}
    }
    // Expired versions are hidden from their instant on, by cluster time.
    let now = node.expiry_now_ms();
    r.map(|object| GetOutcome {
        object: object.map(|o| o.visible_at(now)),
    })
}

/// A quorum read of one key (also the read behind `If-None-Match` and context-less deletes).
pub(crate) async fn read_quorum(
    node: &Arc<Node>,
    pl: &Placement,
    bucket: &[u8],
    key: &[u8],
    rq: ReadQuorum,
    deadline: Instant,
) -> Result<Option<Object>, KvError> {
    check_read(&pl.serving, &rq)?;
    let (answer_tx, answer_rx) = oneshot::channel();
    let k = ObjectKey::new(pl.partition, bucket.to_vec(), key.to_vec());
    tokio::spawn(crate::trace::traced(drive_read(
        node.clone(),
        pl.clone(),
        k,
        rq,
        deadline,
        answer_tx,
    )));
    match tokio::time::timeout_at(deadline, answer_rx).await {
        Ok(Ok(r)) => r,
        // The driver gave up at the deadline without a decision.
        Ok(Err(_)) | Err(_) => Err(KvError::Timeout),
    }
}

/// Owns the read: asks the first replicas the plan picks, more when one fails or the hedge
/// delay passes in silence, sends the answer as soon as it is decided, then collects the
/// asked replicas' remaining replies until the deadline and repairs the ones that need it.
async fn drive_read(
    node: Arc<Node>,
    pl: Placement,
    k: ObjectKey,
    rq: ReadQuorum,
    deadline: Instant,
    answer: oneshot::Sender<Result<Option<Object>, KvError>>,
) {
    let mode = pl.props.conflict;
    let mut core = GetCore::new(pl.serving.clone(), rq.r, rq.pr)
        .mode(mode)
        .prefer(&node.id)
        .ask_last(node.catching_up_nodes());
    let (tx, mut rx) = mpsc::unbounded_channel::<(NodeId, ReadReply)>();
    let hedge_delay = node.replica_reads.lock().hedge_delay();
    send_reads(&node, &k, mode, core.to_ask(), deadline, &tx);
    let mut hedge_at = Instant::now() + hedge_delay;
    let mut answer = Some(answer);
    loop {
        if answer.is_some() {
            let decided = match core.status() {
                GetStatus::Done(o) => Some(Ok(o)),
                GetStatus::Failed(q) => Some(Err(q.into())),
                GetStatus::Pending => None,
            };
            if let Some(d) = decided
                && let Some(tx) = answer.take()
            {
                let _ = tx.send(d);
            }
        }
        if core.settled() {
            break;
        }
        // Hedging only speeds up an answer still awaited.
        let hedging = answer.is_some() && hedge_at < deadline;
        tokio::select! {
            got = rx.recv() => match got {
                Some((peer, r)) => {
                    core.add_reply(peer, r);
                    send_reads(&node, &k, mode, core.to_ask(), deadline, &tx);
                }
                None => break,
            },
            _ = tokio::time::sleep_until(hedge_at), if hedging => {
                send_reads(&node, &k, mode, core.hedge(), deadline, &tx);
                hedge_at = Instant::now() + hedge_delay;
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    // An undecided read at the deadline: dropping `answer` reports the timeout.
    drop(answer);
    super::read_repair::repair(&node, &pl, &k, &core).await;
}

/// Sends a replica read to each of `targets`; replies arrive on `tx`. Remote reads that
/// answer feed the node's replica read latency.
fn send_reads(
    node: &Arc<Node>,
    k: &ObjectKey,
    mode: ConflictMode,
    targets: Vec<(NodeId, Role)>,
    deadline: Instant,
    tx: &mpsc::UnboundedSender<(NodeId, ReadReply)>,
) {
    let left = deadline.saturating_duration_since(Instant::now());
    for (peer, role) in targets {
        if peer == node.id {
            // The local copy is read right here: no task, no hop (see `read_copy`).
            let r = read_copy(node, k, &role, mode).map_err(|e| KvError::from(e).to_string());
            let _ = tx.send((peer, r));
            continue;
        }
        let (node, tx, k) = (node.clone(), tx.clone(), k.clone());
        tokio::spawn(crate::trace::traced(async move {
            let sent = Instant::now();
            let r = ask(&node, &peer, k, &role, left).await;
            if r.is_ok() {
                node.replica_reads.lock().observe(sent.elapsed());
            }
            let _ = tx.send((peer, r));
        }));
    }
}

/// One replica read over the network.
async fn ask(
    node: &Arc<Node>,
    peer: &NodeId,
    k: ObjectKey,
    role: &Role,
    timeout: Duration,
) -> ReadReply {
    let req = ReplicaRequest::ReplicaGet {
        partition: k.partition,
        bucket: k.bucket,
        key: k.key,
        hinted_for: role.hinted_for().cloned(),
    };
    match crate::replica::rpc::call(node, peer, req, timeout).await {
        Ok(ReplicaResponse::Object(None)) => Ok(None),
        Ok(ReplicaResponse::Object(Some(bytes))) => Object::decode(&bytes)
            .map(Some)
            .map_err(|e| format!("replica answered a bad object: {e}")),
        Ok(_) => Err("unexpected answer to a replica read".into()),
        Err(e) => Err(e.to_string()),
    }
}
