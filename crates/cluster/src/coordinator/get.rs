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
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use riftkv_core::storage::ObjectKey;
use riftkv_core::types::NodeId;
use riftkv_core::version::{ConflictMode, Object};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
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
        object: object.map(|o| o.into_visible_at(now)),
    })
}

/// A quorum read of one key (also the read behind `If-None-Match` and context-less deletes).
///
/// Driven on the asking task until the answer is decided: the local copy is read right here
/// and the remote replica reads are futures of this task, so a reply wakes the request
/// itself rather than a driver task that then wakes it (each hop is a thread wake-up, the
/// largest cost of a quorum GET beyond the replica reads; BENCHMARKS.md, "GET r=2: profile").
/// What is left after the answer (stragglers, read repair) moves to a task of its own, also
/// when the caller gives up on the read early.
pub(crate) async fn read_quorum(
    node: &Arc<Node>,
    pl: &Placement,
    bucket: &[u8],
    key: &[u8],
    rq: ReadQuorum,
    deadline: Instant,
) -> Result<Option<Object>, KvError> {
    check_read(&pl.serving, &rq)?;
    let k = ObjectKey::new(pl.partition, bucket.to_vec(), key.to_vec());
    let mut read = Unfinished(Some(ReadDriver::start(node, pl, k, rq, deadline)));
    match read.0.as_mut() {
        Some(driver) => driver.decide().await,
        None => Err(KvError::Timeout),
    }
    // Dropping `read` hands what is left to the background.
}

/// A remote replica read in flight, polled by whichever task owns the read.
type InFlight = Pin<Box<dyn Future<Output = (NodeId, ReadReply)> + Send>>;

/// One read: whom it asked, what they answered, when to hedge and when to give up.
struct ReadDriver {
    node: Arc<Node>,
    pl: Placement,
    k: ObjectKey,
    mode: ConflictMode,
    core: GetCore,
    in_flight: FuturesUnordered<InFlight>,
    hedge_delay: Duration,
    hedge_at: Instant,
    deadline: Instant,
    /// Set when the answer was decided with every asked replica in and none needing repair:
    /// nothing is left to do after it.
    done_clean: bool,
}

impl ReadDriver {
    /// Plans the read and sends its first replica reads (the local one is answered at once).
    fn start(
        node: &Arc<Node>,
        pl: &Placement,
        k: ObjectKey,
        rq: ReadQuorum,
        deadline: Instant,
    ) -> ReadDriver {
        let mode = pl.props.conflict;
        let core = GetCore::new(pl.serving.clone(), rq.r, rq.pr)
            .mode(mode)
            .prefer(&node.id)
            .ask_last(node.catching_up_nodes());
        let hedge_delay = node.replica_reads.lock().hedge_delay();
        let mut driver = ReadDriver {
            node: node.clone(),
            pl: pl.clone(),
            k,
            mode,
            core,
            in_flight: FuturesUnordered::new(),
            hedge_delay,
            hedge_at: Instant::now() + hedge_delay,
            deadline,
            done_clean: false,
        };
        let first = driver.core.to_ask();
        driver.send(first);
        driver
    }

    /// Sends a replica read to each of `targets`. The local copy is read right here (no
    /// task, no hop: see `read_copy`) and its answer may call for more reads, which are sent
    /// too; remote reads join `in_flight`.
    fn send(&mut self, mut targets: Vec<(NodeId, Role)>) {
        while !targets.is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let mut local = None;
            for (peer, role) in targets {
                if peer == self.node.id {
                    let r = read_copy(&self.node, &self.k, &role, self.mode)
                        .map_err(|e| KvError::from(e).to_string());
                    local = Some((peer, r));
                    continue;
                }
                let (node, k) = (self.node.clone(), self.k.clone());
                self.in_flight.push(Box::pin(async move {
                    let sent = Instant::now();
                    let r = ask(&node, &peer, k, &role, left).await;
                    if r.is_ok() {
                        node.replica_reads.lock().observe(sent.elapsed());
                    }
                    (peer, r)
                }));
            }
            targets = match local {
                Some((peer, r)) => {
                    self.core.add_reply(peer, r);
                    self.core.to_ask()
                }
                None => Vec::new(),
            };
        }
    }

    /// Counts a remote replica's reply and asks whoever it makes necessary (someone else when
    /// it failed; nobody once the read is decided).
    fn answered(&mut self, peer: NodeId, r: ReadReply) {
        self.core.add_reply(peer, r);
        let more = self.core.to_ask();
        self.send(more);
    }

    /// Waits for replies (asking more when one fails, hedging when the asked stay silent)
    /// until the read is decided or its deadline passes.
    async fn decide(&mut self) -> Result<Option<Object>, KvError> {
        loop {
            match self.core.status() {
                GetStatus::Done(o) => {
                    // Judged on the merge just made rather than merging again afterwards.
                    self.done_clean = self.core.settled()
                        && o.as_ref()
                            .is_none_or(|m| self.core.repairs_for(m).is_empty());
                    return Ok(o);
                }
                GetStatus::Failed(q) => return Err(q.into()),
                GetStatus::Pending => {}
            }
            let hedging = self.hedge_at < self.deadline;
            tokio::select! {
                Some((peer, r)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.answered(peer, r);
                }
                _ = tokio::time::sleep_until(self.hedge_at), if hedging => {
                    let more = self.core.hedge();
                    self.send(more);
                    self.hedge_at = Instant::now() + self.hedge_delay;
                }
                _ = tokio::time::sleep_until(self.deadline) => return Err(KvError::Timeout),
            }
        }
    }

    /// After the answer: collects the asked replicas' remaining replies until the deadline,
    /// then repairs the ones that need it.
    async fn finish(mut self) {
        while !self.core.settled() && !self.in_flight.is_empty() {
            tokio::select! {
                // Nobody new is asked once the read is decided; a read undecided at its
                // deadline asks nobody either.
                Some((peer, r)) = self.in_flight.next() => self.answered(peer, r),
                _ = tokio::time::sleep_until(self.deadline) => break,
            }
        }
        super::read_repair::repair(&self.node, &self.pl, &self.k, &self.core).await;
    }
}

/// A read whose driver has not finished: on drop (answered, timed out, or abandoned by its
/// caller), what is left runs in the background, so stragglers still count and stale
/// replicas are still repaired. The common read, settled with identical copies, spawns
/// nothing.
struct Unfinished(Option<ReadDriver>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(driver) = self.0.take() else { return };
        if driver.done_clean || (driver.core.settled() && driver.core.repairs().is_empty()) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(crate::trace::traced(driver.finish()));
        }
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
