//! Runs a schedule on an in-process cluster and records its history.
//!
//! Client requests go through the real coordinator drivers (`put`, `get`, `delete`); faults
//! through the test cluster (partitions, kills, wipes, damaged records, power cuts); repairs
//! through the real duties' round functions (hint delivery, anti-entropy exchange, reaping),
//! called from the schedule rather than on timers so a schedule decides when they run. Only
//! gossip and ownership handoff run on their own. Every wait is bounded.

use super::model::{self, Fault, Final, History, Kind, Outcome, Read, Violation, Write, WriteCtx};
use super::schedule::{Ctx, Schedule, Step, Who};
use crate::coordinator::{
    ConsistencyParams, DeleteRequest, GetRequest, KvError, PutRequest, delete, get, put,
};
use crate::node::Node;
use crate::replica::store::StoreError;
use crate::testkit::{ClusterOptions, TestCluster, id_of, live_values};
use bytes::Bytes;
use parking_lot::Mutex;
use riftkv_core::bucket::Quorum;
use riftkv_core::storage::{HintKey, ObjectKey, Storage, StorageError};
use riftkv_core::types::PartitionId;
use riftkv_core::version::{Object, StoredCopy, VersionVector, decode_context, encode_context};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub const BUCKET: &[u8] = b"sim";
/// Replication of every key (the cluster default).
const N: usize = 3;
/// Client request deadline: partitions and kills fail fast in the simulated network, so
/// this only bounds the rare request that waits on a dying node.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(800);
const SETTLE: Duration = Duration::from_secs(15);
/// Bound of the final convergence loop.
const CONVERGE: Duration = Duration::from_secs(10);

/// How a run is set up beyond its schedule.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// The planted bug: every node writes under its bare node id.
    pub old_dot_rule: bool,
}

/// What the repair steps of a run did (to tell whether schedules exercise them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub hints_delivered: u64,
    pub aae_keys_repaired: u64,
    pub tombstones_reaped: u64,
    pub power_cut_batches_lost: u64,
}

impl Activity {
    pub fn add(&mut self, o: &Activity) {
        self.hints_delivered += o.hints_delivered;
        self.aae_keys_repaired += o.aae_keys_repaired;
        self.tombstones_reaped += o.tombstones_reaped;
        self.power_cut_batches_lost += o.power_cut_batches_lost;
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub history: History,
    pub violations: Vec<Violation>,
    /// Steps skipped because the cluster's state did not allow them.
    pub skipped: usize,
    pub elapsed: Duration,
    pub coverage: model::Coverage,
    /// Repairs done by the schedule's steps (not by the final convergence).
    pub activity: Activity,
}

impl RunResult {
    pub fn failed(&self) -> bool {
        !self.violations.is_empty()
    }

    /// The most severe kind found (the order of [`Kind`]'s variants is not severity, so lost
    /// writes are preferred explicitly: they are what the self-test looks for).
    pub fn main_kind(&self) -> Option<Kind> {
        if self.violations.iter().any(|v| v.kind == Kind::LostWrite) {
            return Some(Kind::LostWrite);
        }
        self.violations.iter().map(|v| v.kind).min()
    }
}

/// The history under construction, shared with writes running in the background.
#[derive(Default)]
struct Recorder {
    seq: AtomicU64,
    h: Mutex<History>,
}

impl Recorder {
    fn tick(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn start_write(&self, mut w: Write) -> usize {
        w.start = self.tick();
        let mut h = self.h.lock();
        h.writes.push(w);
        h.writes.len() - 1
    }

    fn end_write(&self, i: usize, r: &Result<Object, KvError>) {
        let end = self.tick();
        let mut h = self.h.lock();
        let w = &mut h.writes[i];
        w.end = Some(end);
        match r {
            Ok(_) => w.outcome = Outcome::Acked,
            Err(e) => {
                w.outcome = classify(e);
                w.error = Some(e.to_string());
            }
        }
    }
}

/// What a failed write tells the client about whether it was applied.
pub fn classify(e: &KvError) -> Outcome {
    match e {
        KvError::BadRequest(_)
        | KvError::PreconditionFailed
        | KvError::TooLarge { .. }
        | KvError::TooManySiblings { .. }
        | KvError::ObjectTooLarge { .. } => Outcome::Failed,
        // The read of a context-less delete failed (nothing written yet); the fail-fast check
        // refused it (no errors collected: nothing was sent); or no node agreed to coordinate
        // it (a coordinator's own store always counts one ack).
        KvError::Quorum {
            which, got, errors, ..
        } if *which == "r" || *which == "pr" || errors.is_empty() || *got == 0 => Outcome::Failed,
        _ => Outcome::Indeterminate,
    }
}

fn key_name(key: u8) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

struct Runner<'a> {
    s: &'a Schedule,
    c: TestCluster,
    rec: Arc<Recorder>,
    /// Per key: (read index, context token) of each recorded read, oldest first.
    reads: Vec<Vec<(usize, Option<String>)>>,
    bg: Vec<JoinHandle<()>>,
    skipped: usize,
    activity: Activity,
}

/// Runs `s` and checks its history.
pub async fn run(s: &Schedule, opts: RunOptions) -> RunResult {
    let t0 = Instant::now();
    let old_rule = opts.old_dot_rule;
    let ring_size = s.ring_size;
    let options = ClusterOptions {
        cluster_name: format!("sim-{}", s.seed),
        settings: Some(Arc::new(move |st: &mut crate::node::NodeSettings| {
            st.ring_size = ring_size;
            st.n_val = N as u32;
            st.gossip_interval = Duration::from_millis(20);
            st.handoff_interval = Duration::from_millis(20);
            st.request_timeout = REQUEST_TIMEOUT;
            st.rpc_timeout = Duration::from_millis(300);
            st.tombstone_grace = Duration::from_millis(5);
            st.aae_interval = Duration::from_secs(3600);
            st.faults.old_dot_rule = old_rule;
        })),
        duties: None,
        fence_dead_processes: true,
        ..ClusterOptions::default()
    };
    let c = TestCluster::start_with(usize::from(s.nodes), s.seed, options);
    let mut r = Runner {
        s,
        c,
        rec: Arc::new(Recorder::default()),
        reads: vec![Vec::new(); usize::from(s.keys)],
        bg: Vec::new(),
        skipped: 0,
        activity: Activity::default(),
    };
    let mut violations = Vec::new();
    let mut coverage = model::Coverage::default();
    if let Err(e) = r.settle().await {
        violations.push(Violation {
            kind: Kind::NotConverged,
            key: 0,
            detail: format!("the cluster did not settle at start: {e}"),
        });
    } else {
        for i in 1..=r.c.len() {
            r.c.track_durability(i);
        }
        for step in &s.steps {
            if let Some(v) = r.step(step).await {
                violations = v;
                break;
            }
        }
        for h in r.bg.drain(..) {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 4, h).await;
        }
        if violations.is_empty() {
            let fin = r.finish().await;
            r.rec.h.lock().fin = Some(fin);
            (violations, coverage) = model::check_with_coverage(&r.rec.h.lock());
        }
    }
    let history = std::mem::take(&mut *r.rec.h.lock());
    RunResult {
        history,
        violations,
        skipped: r.skipped,
        elapsed: t0.elapsed(),
        coverage,
        activity: r.activity,
    }
}

impl Runner<'_> {
    fn key(&self, key: u8) -> u8 {
        key % self.s.keys.max(1)
    }

    /// Partition and primary node indexes of `key` in the ring of any running joined node.
    fn placement(&self, key: u8) -> Option<(PartitionId, Vec<usize>)> {
        let node = self
            .c
            .running()
            .into_iter()
            .filter_map(|i| self.c.try_node(i))
            .find(|n| n.joined.load(Ordering::SeqCst))?;
        let s = node.state.read();
        let p = riftkv_core::ring::partition_for(BUCKET, &key_name(key), s.ring_size());
        let prims = s
            .ring
            .preference_list(p, N)
            .iter()
            .filter_map(|id| id.as_str().trim_start_matches('n').parse::<usize>().ok())
            .collect();
        Some((p, prims))
    }

    fn object_key(&self, key: u8) -> ObjectKey {
        let p = riftkv_core::ring::partition_for(BUCKET, &key_name(key), self.s.ring_size);
        ObjectKey::new(p, BUCKET.to_vec(), key_name(key))
    }

    fn resolve(&self, who: Who) -> Option<usize> {
        match who {
            Who::Node(i) => {
                let i = usize::from(i);
                (i >= 1 && i <= self.c.len()).then_some(i)
            }
            Who::Primary { key, rank } => {
                let (_, prims) = self.placement(self.key(key))?;
                prims.get(usize::from(rank) % N).copied()
            }
        }
    }

    /// A node a client can talk to: running and joined.
    fn client(&self, who: Who) -> Option<(usize, Arc<Node>)> {
        let i = self.resolve(who)?;
        let n = self.c.try_node(i)?;
        n.joined.load(Ordering::SeqCst).then_some((i, n))
    }

    async fn settle(&self) -> Result<(), String> {
        self.c.wait_settled(SETTLE).await?;
        self.wait_all_reachable(SETTLE).await
    }

    async fn wait_all_reachable(&self, timeout: Duration) -> Result<(), String> {
        let running = self.c.running();
        self.c
            .wait_for(timeout, "every node to see every other as up", |c| {
                running.iter().all(|i| {
                    c.try_node(*i)
                        .is_some_and(|n| running.iter().all(|j| n.is_reachable(&id_of(*j))))
                })
            })
            .await
            .map_err(|e| format!("{e}\n{}", self.c.describe()))
    }

    /// The context token a client would send, decoded at the edge by the node it writes
    /// through, as the API does. Every token came from this cluster, so one that does not
    /// decode is a bug of the cluster under test.
    fn decode(node: &Node, key: u8, token: Option<String>) -> Option<VersionVector> {
        token.map(|t| {
            decode_context(&t, BUCKET, &key_name(key), &node.context_key)
                .unwrap_or_else(|e| panic!("a context token of this cluster is refused: {e}"))
        })
    }

    /// The context for a write of `key`, and where it came from.
    fn context(&self, key: u8, ctx: Ctx) -> (WriteCtx, Option<String>) {
        let reads = &self.reads[usize::from(key)];
        let pick = match ctx {
            Ctx::Blind => None,
            Ctx::Latest => reads.last(),
            Ctx::Older => reads
                .len()
                .checked_sub(2)
                .and_then(|i| reads.get(i))
                .or(reads.last()),
        };
        match pick {
            Some((i, Some(token))) => (WriteCtx::Read(*i), Some(token.clone())),
            _ => (WriteCtx::None, None),
        }
    }

    /// Runs one step; returns the violations when a read broke an invariant.
    async fn step(&mut self, step: &Step) -> Option<Vec<Violation>> {
        match step {
            Step::Put {
                id,
                key,
                via,
                ctx,
                w,
                dw,
                bg,
            } => {
                let key = self.key(*key);
                let Some((i, node)) = self.client(*via) else {
                    self.skipped += 1;
                    return None;
                };
                let (wctx, token) = self.context(key, *ctx);
                let value = self.s.value(*id);
                let req = PutRequest {
                    bucket: BUCKET.to_vec(),
                    key: key_name(key),
                    value: Bytes::from(value.clone().into_bytes()),
                    content_type: "text/plain".into(),
                    context: Self::decode(&node, key, token),
                    if_none_match: false,
                    params: ConsistencyParams {
                        w: Some(Quorum::Count(u32::from(*w))),
                        dw: Some(Quorum::Count(u32::from(*dw))),
                        ..ConsistencyParams::default()
                    },
                    timeout: Some(REQUEST_TIMEOUT),
                    ttl: None,
                };
                let idx = self.rec.start_write(Write {
                    id: *id,
                    key,
                    value: Some(value),
                    ctx: wctx,
                    start: 0,
                    end: None,
                    outcome: Outcome::Pending,
                    via: i as u8,
                    error: None,
                });
                let rec = self.rec.clone();
                let task = async move {
                    let r = put(&node, req).await.map(|o| o.object);
                    rec.end_write(idx, &r);
                };
                self.launch(*bg, task).await;
            }
            Step::Delete {
                id,
                key,
                via,
                ctx,
                w,
                bg,
            } => {
                let key = self.key(*key);
                let Some((i, node)) = self.client(*via) else {
                    self.skipped += 1;
                    return None;
                };
                let (wctx, token) = match ctx {
                    Ctx::Blind => (WriteCtx::Blind, None),
                    c => match self.context(key, *c) {
                        (WriteCtx::None, _) => (WriteCtx::Blind, None),
                        x => x,
                    },
                };
                let req = DeleteRequest {
                    bucket: BUCKET.to_vec(),
                    key: key_name(key),
                    context: Self::decode(&node, key, token),
                    params: ConsistencyParams {
                        w: Some(Quorum::Count(u32::from(*w))),
                        ..ConsistencyParams::default()
                    },
                    timeout: Some(REQUEST_TIMEOUT),
                };
                let idx = self.rec.start_write(Write {
                    id: *id,
                    key,
                    value: None,
                    ctx: wctx,
                    start: 0,
                    end: None,
                    outcome: Outcome::Pending,
                    via: i as u8,
                    error: None,
                });
                let rec = self.rec.clone();
                let task = async move {
                    let r = delete(&node, req).await.map(|o| o.object);
                    rec.end_write(idx, &r);
                };
                self.launch(*bg, task).await;
            }
            Step::Get { key, via, r } => {
                let key = self.key(*key);
                let Some((i, node)) = self.client(*via) else {
                    self.skipped += 1;
                    return None;
                };
                let start = self.rec.tick();
                let req = GetRequest {
                    bucket: BUCKET.to_vec(),
                    key: key_name(key),
                    params: ConsistencyParams {
                        r: Some(Quorum::Count(u32::from(*r))),
                        ..ConsistencyParams::default()
                    },
                    timeout: Some(REQUEST_TIMEOUT),
                };
                let got = get(&node, req).await;
                let end = self.rec.tick();
                let Ok(out) = got else { return None };
                let read = Read {
                    key,
                    values: out.object.as_ref().map(live_values).unwrap_or_default(),
                    tombstones: out
                        .object
                        .as_ref()
                        .is_some_and(|o| o.siblings().iter().any(|(_, s)| s.deleted)),
                    start,
                    end,
                    via: i as u8,
                };
                let token = out.object.as_ref().map(|o| {
                    encode_context(&o.context(), BUCKET, &key_name(key), &node.context_key)
                });
                let (idx, bad) = {
                    let mut h = self.rec.h.lock();
                    let bad = model::check_read(&h, &read);
                    h.reads.push(read);
                    (h.reads.len() - 1, bad)
                };
                self.reads[usize::from(key)].push((idx, token));
                if !bad.is_empty() {
                    return Some(bad);
                }
            }
            Step::Partition { side } => {
                let (a, b): (Vec<usize>, Vec<usize>) =
                    (1..=self.c.len()).partition(|i| side & (1 << (i - 1)) != 0);
                if a.is_empty() || b.is_empty() {
                    self.skipped += 1;
                } else {
                    self.c.partition(&a, &b);
                }
            }
            Step::Heal => self.c.heal(),
            Step::Kill(who) => match self.resolve(*who) {
                Some(i) if self.c.try_node(i).is_some() && self.c.running().len() > 2 => {
                    self.c.kill(i)
                }
                _ => self.skipped += 1,
            },
            Step::Restart(who) => match self.resolve(*who) {
                Some(i) => self.c.restart(i),
                None => self.skipped += 1,
            },
            Step::Wipe(who) => match self.resolve(*who) {
                // A wiped node rejoins through a running one.
                Some(i) if self.c.running().iter().any(|j| *j != i) => {
                    self.fault(i, None, "wipe");
                    self.c.wipe(i);
                    self.c.track_durability(i);
                    let _ = self
                        .c
                        .wait_for(Duration::from_millis(500), "the wiped node to join", |c| {
                            c.try_node(i)
                                .is_some_and(|n| n.joined.load(Ordering::SeqCst))
                        })
                        .await;
                }
                _ => self.skipped += 1,
            },
            Step::Damage { who, key } => {
                let key = self.key(*key);
                match self.resolve(*who) {
                    Some(i) if self.c.try_node(i).is_some() => {
                        let survivors = self.survivors(i, Some(key));
                        if self.c.damage(i, BUCKET, &key_name(key)) {
                            self.record_fault(i, survivors, "damage");
                        }
                    }
                    _ => self.skipped += 1,
                }
            }
            Step::PowerCut { who, keep } => match self.resolve(*who) {
                Some(i) => {
                    self.fault(i, None, "power cut");
                    let keep = if *keep == 255 {
                        usize::MAX
                    } else {
                        usize::from(*keep)
                    };
                    self.activity.power_cut_batches_lost += self.c.power_cut(i, keep) as u64;
                }
                None => self.skipped += 1,
            },
            Step::Hints(who) => match self.resolve(*who).and_then(|i| self.c.try_node(i)) {
                Some(n) => {
                    if let Ok(d) = crate::handoff::hints::deliver_once(&n).await {
                        self.activity.hints_delivered += d;
                    }
                }
                None => self.skipped += 1,
            },
            Step::HintsAll => self.activity.hints_delivered += self.hints_all().await,
            Step::Aae { key, a, b } => {
                let key = self.key(*key);
                let Some((p, prims)) = self.placement(key) else {
                    self.skipped += 1;
                    return None;
                };
                let (a, b) = (usize::from(*a) % N, usize::from(*b) % N);
                let b = if a == b { (a + 1) % N } else { b };
                match (prims.get(a).and_then(|i| self.c.try_node(*i)), prims.get(b)) {
                    (Some(n), Some(peer)) => {
                        if let Ok(rep) = crate::aae::exchange(&n, p, &id_of(*peer)).await {
                            self.activity.aae_keys_repaired += rep.keys_repaired;
                        }
                    }
                    _ => self.skipped += 1,
                }
            }
            Step::Reap { key } => {
                let key = self.key(*key);
                match self
                    .placement(key)
                    .and_then(|(_, prims)| prims.first().and_then(|i| self.c.try_node(*i)))
                {
                    Some(n) => {
                        if let Ok(k) = crate::reaper::reap_once(&n).await {
                            self.activity.tombstones_reaped += k;
                        }
                    }
                    None => self.skipped += 1,
                }
            }
            Step::Pause { ms } => tokio::time::sleep(Duration::from_millis(u64::from(*ms))).await,
            Step::Jitter { max_ms } => self
                .c
                .net
                .set_delay(Duration::ZERO, Duration::from_millis(u64::from(*max_ms))),
        }
        None
    }

    /// Runs a client request in the foreground, or in the background when `bg`.
    async fn launch(
        &mut self,
        bg: bool,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        if bg {
            self.bg.push(tokio::spawn(task));
        } else {
            task.await;
        }
    }

    /// One delivery round on every running node; returns the hints delivered.
    async fn hints_all(&self) -> u64 {
        let mut delivered = 0;
        for i in self.c.running() {
            if let Some(n) = self.c.try_node(i) {
                delivered += crate::handoff::hints::deliver_once(&n).await.unwrap_or(0);
            }
        }
        delivered
    }

    /// Live values of `key` held by node `j` (objects and hints for any target).
    fn held(&self, j: usize, k: &ObjectKey) -> BTreeSet<String> {
        let st = self.c.storage(j);
        let mut out = BTreeSet::new();
        let mut add = |bytes: Option<Vec<u8>>| {
            if let Some(o) = bytes.and_then(|b| StoredCopy::decode(&b).ok()) {
                out.extend(live_values(&o.object));
            }
        };
        add(st.get_object(k).ok().flatten());
        for t in 1..=self.c.len() {
            add(st
                .get_hint(&HintKey::for_object(id_of(t), k))
                .ok()
                .flatten());
        }
        out
    }

    /// For each key a fault on `node` may touch (`only`, or all): what other nodes hold.
    fn survivors(&self, node: usize, only: Option<u8>) -> BTreeMap<u8, BTreeSet<String>> {
        let keys: Vec<u8> = match only {
            Some(k) => vec![k],
            None => (0..self.s.keys).collect(),
        };
        keys.into_iter()
            .map(|key| {
                let k = self.object_key(key);
                let held = (1..=self.c.len())
                    .filter(|j| *j != node)
                    .flat_map(|j| self.held(j, &k))
                    .collect();
                (key, held)
            })
            .collect()
    }

    fn record_fault(&self, node: usize, survivors: BTreeMap<u8, BTreeSet<String>>, what: &str) {
        let at = self.rec.tick();
        self.rec.h.lock().faults.push(Fault {
            at,
            node: node as u8,
            what: what.to_string(),
            survivors,
        });
    }

    fn fault(&self, node: usize, only: Option<u8>, what: &str) {
        let s = self.survivors(node, only);
        self.record_fault(node, s, what);
    }

    /// Heals everything, restarts every node, lets repair run until the primaries of every
    /// key hold equal copies and no hints remain (bounded), then reads every key with r = all
    /// from every node.
    async fn finish(&mut self) -> Final {
        let mut fin = Final::default();
        self.c.heal();
        for i in 1..=self.c.len() {
            self.c.restart(i);
        }
        if let Err(e) = self.settle().await {
            fin.unconverged
                .push((0, format!("the cluster did not settle after healing: {e}")));
            return fin;
        }
        let deadline = Instant::now() + CONVERGE;
        let last = loop {
            self.hints_all().await;
            for key in 0..self.s.keys {
                let Some((p, prims)) = self.placement(key) else {
                    continue;
                };
                for (a, b) in [(0, 1), (1, 2), (0, 2)] {
                    let initiator = prims.get(a).and_then(|i| self.c.try_node(*i));
                    if let (Some(n), Some(peer)) = (initiator, prims.get(b)) {
                        let _ = crate::aae::exchange(&n, p, &id_of(*peer)).await;
                    }
                }
            }
            let diff = self.differences();
            if diff.is_empty() || Instant::now() >= deadline {
                break diff;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        fin.unconverged = last;
        for key in 0..self.s.keys {
            for i in 1..=self.c.len() {
                fin.answers
                    .push((key, i as u8, self.read_all(i, key).await));
            }
        }
        fin
    }

    /// Keys whose primaries hold different copies, and nodes still holding hints.
    fn differences(&self) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        for i in 1..=self.c.len() {
            let held: u64 = self
                .c
                .storage(i)
                .hint_counts()
                .map(|v| v.iter().map(|(_, n)| *n).sum())
                .unwrap_or(u64::MAX);
            if held > 0 {
                out.push((0, format!("n{i} still holds {held} hints")));
            }
        }
        for key in 0..self.s.keys {
            let Some((_, prims)) = self.placement(key) else {
                out.push((key, "no node knows the ring".into()));
                continue;
            };
            let k = self.object_key(key);
            let copies: Vec<(usize, Result<Option<Object>, String>)> = prims
                .iter()
                .map(|i| {
                    let c = match self.c.try_node(*i) {
                        // A damaged record reads as missing (replicas replace it, and when
                        // none holds the key there is nothing to replace it with).
                        Some(n) => match n.local_object(&k) {
                            Ok(o) => Ok(o),
                            Err(StoreError::Damaged(_))
                            | Err(StoreError::Storage(StorageError::Corrupt { .. })) => Ok(None),
                            Err(e) => Err(e.to_string()),
                        },
                        None => Err("not running".into()),
                    };
                    (*i, c)
                })
                .collect();
            let equal = copies.windows(2).all(|w| w[0].1 == w[1].1)
                && copies.iter().all(|(_, c)| c.is_ok());
            if !equal {
                let desc: Vec<String> = copies
                    .iter()
                    .map(|(i, c)| match c {
                        Ok(Some(o)) => {
                            format!("n{i}={:?}/{} actors", live_values(o), o.clock_entries())
                        }
                        Ok(None) => format!("n{i}=none"),
                        Err(e) => format!("n{i}=error({e})"),
                    })
                    .collect();
                out.push((key, format!("primaries differ: {}", desc.join(" "))));
            }
        }
        out
    }

    /// Live values of `key` read through node `i` with r = all (retried while replicas come
    /// back, bounded).
    async fn read_all(&self, i: usize, key: u8) -> Result<Vec<String>, String> {
        let mut last = String::from("node not running");
        for _ in 0..40 {
            if let Some(n) = self.c.try_node(i) {
                let req = GetRequest {
                    bucket: BUCKET.to_vec(),
                    key: key_name(key),
                    params: ConsistencyParams {
                        r: Some(Quorum::All),
                        ..ConsistencyParams::default()
                    },
                    timeout: Some(Duration::from_secs(1)),
                };
                match get(&n, req).await {
                    Ok(o) => return Ok(o.object.as_ref().map(live_values).unwrap_or_default()),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::types::NodeId;

    #[test]
    fn failures_before_sending_are_failed_for_sure() {
        let q = |which: &'static str, got: u32, errors: Vec<(NodeId, String)>| KvError::Quorum {
            needed: 3,
            got,
            which,
            errors,
        };
        let e = vec![(NodeId::from("n1"), "down".to_string())];
        assert_eq!(classify(&KvError::BadRequest("x".into())), Outcome::Failed);
        assert_eq!(classify(&q("w", 2, vec![])), Outcome::Failed);
        assert_eq!(classify(&q("r", 1, e.clone())), Outcome::Failed);
        assert_eq!(classify(&q("w", 0, e.clone())), Outcome::Failed);
        assert_eq!(classify(&q("w", 2, e.clone())), Outcome::Indeterminate);
        assert_eq!(classify(&q("dw", 1, e)), Outcome::Indeterminate);
        assert_eq!(classify(&KvError::Timeout), Outcome::Indeterminate);
        assert_eq!(
            classify(&KvError::Internal("x".into())),
            Outcome::Indeterminate
        );
    }
}
