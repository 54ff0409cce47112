//! One RiftKV node assembled from its parts: storage, transport, the replicated ring state,
//! the failure detector, metrics and clock. Background duties (gossip, claimant, handoff, hint
//! delivery) run as workers (`crate::worker`) that stop on the node's shutdown token.

mod call;
pub mod catch_up;
pub mod cluster_time;
pub mod fence;
pub mod incarnation;
pub mod persist;
#[cfg(test)]
mod persist_tests;
pub mod trees;

use crate::metrics::Metrics;
use parking_lot::{Mutex, RwLock};
use riftkv_core::membership::detector::{Detector, DetectorConfig, Liveness};
use riftkv_core::membership::state::{ChangeMode, MemberInfo, RingState};
use riftkv_core::net::Transport;
use riftkv_core::storage::Storage;
use riftkv_core::storage::group_commit::GroupCommit;
use riftkv_core::types::{Clock, NodeId, PartitionId};
use riftkv_core::version::{ContextKey, Limits};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use fence::ReapFence;

/// Meta key under which the ring state is persisted.
pub const META_RING_STATE: &str = riftkv_core::membership::state::RING_STATE_META;
/// Meta key holding the node id chosen at first start.
pub const META_NODE_ID: &str = "node_id";

/// Everything a node needs to know about itself, independent of how it was configured.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub node_id: NodeId,
    /// Client API address announced to other members and operators.
    pub api_addr: String,
    /// Inter-node address announced to other members.
    pub peer_addr: String,
    pub zone: Option<String>,
    pub cluster_name: String,
    pub cluster_secret: Vec<u8>,
    /// Peer addresses of existing members; empty founds a new cluster.
    pub seeds: Vec<String>,
    pub ring_size: u32,
    /// Default replication for buckets without props, and the replication placement uses.
    pub n_val: u32,
    pub hinted_handoff: bool,
    pub gossip_interval: Duration,
    /// Silence tolerated on top of the gossip interval before the failure detector suspects a
    /// peer (a stall of the machine, a GC pause).
    pub acceptable_pause: Duration,
    pub handoff_interval: Duration,
    pub request_timeout: Duration,
    /// Timeout of one inter-node call made by a background duty.
    pub rpc_timeout: Duration,
    /// Age after which a delete's tombstone may be reaped (see `coordinator::reap`).
    pub tombstone_grace: Duration,
    /// Pause between active anti-entropy exchanges (one partition with one peer each).
    pub aae_interval: Duration,
    /// Age after which a kept anti-entropy tree is rebuilt though no write touched its
    /// partition (finds damage no write announced).
    pub aae_tree_max_age: Duration,
    pub limits: Limits,
    /// Partition streams of ownership handoff running at once (at least 1).
    pub transfer_concurrency: usize,
    /// Bytes per second ownership handoff may send, across its streams; 0 = no limit.
    pub transfer_max_bytes_per_sec: u64,
    /// Whether the ring changes this node plans apply at once or wait for a commit
    /// (`--staged-changes`).
    pub change_mode: ChangeMode,
    /// The current machine boot (Linux `boot_id`), to tell a process crash, which loses no
    /// written data, from a machine crash, which may (see [`incarnation`]).
    pub boot_id: Option<String>,
    /// Planted bugs (test builds only; all off otherwise).
    pub faults: riftkv_core::fault::Faults,
    /// How long a restarted node waits at most for its peers' hints before it is ready anyway
    /// (see [`catch_up`]).
    pub catch_up_timeout: Duration,
}

impl NodeSettings {
    /// Settings suited to tests: fast gossip and handoff.
    pub fn for_test(node_id: &str, peer_addr: &str, cluster: &str) -> NodeSettings {
        NodeSettings {
            node_id: NodeId::from(node_id),
            api_addr: format!("{peer_addr}-api"),
            peer_addr: peer_addr.to_string(),
            zone: None,
            cluster_name: cluster.to_string(),
            cluster_secret: b"test-secret".to_vec(),
            seeds: Vec::new(),
            ring_size: 32,
            n_val: 3,
            hinted_handoff: true,
            gossip_interval: Duration::from_millis(100),
            acceptable_pause: Duration::from_millis(300),
            handoff_interval: Duration::from_millis(100),
            request_timeout: Duration::from_secs(2),
            rpc_timeout: Duration::from_secs(1),
            tombstone_grace: Duration::from_secs(3600),
            aae_interval: Duration::from_secs(2),
            aae_tree_max_age: trees::DEFAULT_TREE_MAX_AGE,
            limits: Limits::default(),
            transfer_concurrency: 2,
            transfer_max_bytes_per_sec: 0,
            change_mode: ChangeMode::Immediate,
            boot_id: Some("test-boot".to_string()),
            faults: riftkv_core::fault::Faults::default(),
            catch_up_timeout: Duration::from_secs(5),
        }
    }

    pub fn member_info(&self) -> MemberInfo {
        MemberInfo::new(
            self.node_id.clone(),
            self.api_addr.clone(),
            self.peer_addr.clone(),
            self.zone.clone(),
        )
    }
}

/// A running node. Shared as `Arc<Node>` by the API, the RPC handler and background tasks.
pub struct Node {
    pub id: NodeId,
    pub settings: NodeSettings,
    pub storage: Arc<dyn Storage>,
    /// Group commit over `storage`: durable writes share WAL syncs.
    pub wal: Arc<GroupCommit>,
    pub transport: Arc<dyn Transport>,
    pub state: RwLock<RingState>,
    pub detector: Mutex<Detector>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub context_key: ContextKey,
    /// This run's incarnation: custody of write identities taken in another one is void.
    pub incarnation: u64,
    /// Tombstones reaped here recently, so stale copies are not stored again.
    pub reap_fence: fence::ReapFence,
    /// Where the reaper's last walk of the expiry index stopped (instant, key), so a long run
    /// of entries it cannot reap (other owners' keys) does not hide the ones behind it.
    pub expiry_cursor: parking_lot::Mutex<Option<(u64, riftkv_core::storage::ObjectKey)>>,
    /// Anti-entropy trees kept between calls, made stale by writes to their partition.
    pub aae_trees: trees::TreeCache,
    /// Ring version each peer last reported (for `ring_settled`).
    pub peer_ring_versions: Mutex<HashMap<NodeId, u64>>,
    /// Peers' clock offsets, for cluster time (expiry).
    pub peer_clocks: cluster_time::PeerClocks,
    pub shutdown: CancellationToken,
    /// Stops the gossip duty alone (before a going-down notice); a child of `shutdown`.
    pub gossip_stop: CancellationToken,
    /// Random id of this process run, sent with going-down notices and hellos so a member
    /// tells this run's notice from the next run's hello.
    pub run_id: u64,
    /// Members that have answered this run's hello (see `membership::going_down`).
    pub greeted: Mutex<std::collections::HashSet<NodeId>>,
    /// Requests from peers being handled right now (a stopping node lets them finish).
    pub peer_requests_in_flight: std::sync::atomic::AtomicUsize,
    /// The background duties running on this node and their latest state.
    pub workers: Arc<crate::worker::Workers>,
    /// Set once the node has joined a cluster and knows a ring (for `/ready`).
    pub joined: std::sync::atomic::AtomicBool,
    /// Set once the process is stopping (for `/ready`: a load balancer moves clients away
    /// while the node still serves them).
    pub stopping: std::sync::atomic::AtomicBool,
    /// Becomes true once this node has left the cluster (or was removed): the process exits.
    pub left: tokio::sync::watch::Sender<bool>,
    /// Ownership-handoff bytes this node sent or received for the pending plan.
    pub transfer_bytes: TransferMeter,
    /// Recent latency of replica reads this node sent, which sets the reads' hedge delay.
    pub replica_reads: Mutex<crate::hedge::ReplicaLatency>,
    /// Writes the ring state and other synced metadata off the async threads.
    pub persister: persist::Persister,
    /// Whether this node is still catching up on hints after a restart, and which peers are.
    pub catch_up: catch_up::CatchUp,
}

/// Bytes of ownership handoff moved for one plan, for `/v1/admin/status`: a new plan starts
/// again from zero, so the figure always describes the change in progress.
#[derive(Debug, Default)]
pub struct TransferMeter {
    inner: Mutex<(Option<u64>, u64)>,
    /// The plan this node last reported on and when it first saw it (ms), for the ETA.
    seen: Mutex<Option<(u64, u64)>>,
}

impl TransferMeter {
    /// Counts `bytes` moved for `plan` (None: outside any plan, e.g. a drain after a commit).
    pub fn add(&self, plan: Option<u64>, bytes: u64) {
        let mut g = self.inner.lock();
        if g.0 != plan {
            *g = (plan, 0);
        }
        g.1 = g.1.saturating_add(bytes);
    }

    /// Bytes moved for `plan` so far.
    pub fn bytes(&self, plan: Option<u64>) -> u64 {
        let g = self.inner.lock();
        if g.0 == plan { g.1 } else { 0 }
    }

    /// Milliseconds since this node first reported on `plan` (0 the first time).
    pub fn elapsed_ms(&self, plan: u64, now_ms: u64) -> u64 {
        let mut g = self.seen.lock();
        match *g {
            Some((p, since)) if p == plan => now_ms.saturating_sub(since),
            _ => {
                *g = Some((plan, now_ms));
                0
            }
        }
    }
}

impl Node {
    /// Builds a node over its parts. The ring state is loaded from storage when present,
    /// else a one-member cluster is founded (joining via seeds replaces it later).
    pub fn new(
        settings: NodeSettings,
        storage: Arc<dyn Storage>,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Node>, NodeError> {
        let loaded = match storage.get_meta(META_RING_STATE)? {
            Some(bytes) => Some(
                postcard::from_bytes::<RingState>(&bytes)
                    .map_err(|e| NodeError::Damaged(format!("stored ring state: {e}")))?,
            ),
            None => None,
        };
        let had_state = loaded.is_some();
        let others = loaded.as_ref().map_or(0, |s| {
            s.active_members()
                .filter(|m| m.node_id != settings.node_id)
                .count()
        });
        let no_seeds = settings.seeds.is_empty();
        let mut state = match loaded {
            Some(s) => {
                if s.cluster_name != settings.cluster_name {
                    return Err(NodeError::Config(format!(
                        "data dir belongs to cluster '{}', not '{}'",
                        s.cluster_name, settings.cluster_name
                    )));
                }
                s
            }
            None => RingState::found(
                settings.cluster_name.clone(),
                settings.ring_size,
                settings.n_val,
                settings.member_info(),
            ),
        };
        // Addresses may change between restarts; our own entry is ours to update.
        let _ = state.add_member(settings.member_info());
        let context_key = ContextKey::derive(&settings.cluster_secret);
        let (incarnation_record, start) =
            incarnation::choose(storage.as_ref(), settings.boot_id.as_deref())?;
        let incarnation = incarnation_record.id;
        match start {
            incarnation::Start::Keep => {}
            why => tracing::warn!(
                node_id = %settings.node_id,
                reason = ?why,
                "new incarnation: this node takes new write identities for every key it writes next"
            ),
        }
        let shutdown = CancellationToken::new();
        let detector = Detector::with_config(DetectorConfig {
            interval_ms: millis(settings.gossip_interval),
            acceptable_pause_ms: millis(settings.acceptable_pause),
            ..DetectorConfig::default()
        })
        .started_at(clock.now_ms());
        // The persister reads the ring state through a weak handle, set once the node exists.
        let handle: Arc<std::sync::OnceLock<std::sync::Weak<Node>>> = Arc::default();
        let encode: persist::RingEncoder = {
            let handle = handle.clone();
            Box::new(move || {
                let node = handle.get()?.upgrade()?;
                let s = node.state.read();
                Some(postcard::to_stdvec(&*s).map_err(|e| e.to_string()))
            })
        };
        let persister = persist::Persister::spawn(storage.clone(), META_RING_STATE, encode)
            .map_err(|e| NodeError::Config(format!("cannot start the metadata writer: {e}")))?;
        let aae_trees = trees::TreeCache::new(settings.aae_tree_max_age);
        let node = Arc::new(Node {
            id: settings.node_id.clone(),
            settings,
            wal: GroupCommit::new(storage.clone()),
            storage,
            transport,
            state: RwLock::new(state),
            detector: Mutex::new(detector),
            metrics,
            clock: clock.clone(),
            context_key,
            incarnation,
            reap_fence: fence::ReapFence::default(),
            expiry_cursor: parking_lot::Mutex::new(None),
            aae_trees,
            peer_ring_versions: Mutex::new(HashMap::new()),
            peer_clocks: cluster_time::PeerClocks::default(),
            gossip_stop: shutdown.child_token(),
            shutdown,
            run_id: rand::random(),
            greeted: Mutex::new(std::collections::HashSet::new()),
            peer_requests_in_flight: std::sync::atomic::AtomicUsize::new(0),
            workers: Arc::new(crate::worker::Workers::new(clock.clone())),
            joined: std::sync::atomic::AtomicBool::new(had_state || no_seeds),
            stopping: std::sync::atomic::AtomicBool::new(false),
            left: tokio::sync::watch::channel(false).0,
            transfer_bytes: TransferMeter::default(),
            replica_reads: Mutex::new(crate::hedge::ReplicaLatency::default()),
            persister,
            catch_up: catch_up::CatchUp::new(catch_up::starts_catching_up(had_state, others)),
        });
        let _ = handle.set(Arc::downgrade(&node));
        node.metrics
            .catching_up
            .set(i64::from(node.catch_up.is_catching_up()));
        // The running incarnation is on disk before the node serves anything.
        let mut generation = node.persister.ask_record(
            incarnation::META_INCARNATION,
            incarnation::encode(&incarnation_record)?,
        );
        // A joiner's founding state is a placeholder until a seed answers: persisting it would
        // make a restart before the join believe it founded its own cluster.
        if node.joined.load(std::sync::atomic::Ordering::SeqCst) {
            generation = node.persister.ask_ring();
        }
        node.persister.wait_blocking(generation)?;
        Ok(node)
    }

    /// Applies `f` to the ring state; when it reports a change, the state is written (synced,
    /// by the persister thread) and the future completes once it is durable. The change is
    /// made at once, visible to readers before it is durable; await the future before telling
    /// anyone about it.
    pub fn update_state<'a, T: 'a>(
        &'a self,
        f: impl FnOnce(&mut RingState) -> (bool, T),
    ) -> impl std::future::Future<Output = Result<T, NodeError>> + 'a {
        let (changed, out) = {
            let mut s = self.state.write();
            f(&mut s)
        };
        let generation = changed.then(|| self.persister.ask_ring());
        async move {
            if let Some(g) = generation {
                self.persister.wait(g).await?;
            }
            Ok(out)
        }
    }

    /// Applies `f` to the ring state; a change is written soon without waiting for it. For
    /// changes nobody is told about (gossip merges, the claimant's steps): a crash before the
    /// write loses only what gossip brings back.
    pub fn update_state_soon<T>(&self, f: impl FnOnce(&mut RingState) -> (bool, T)) -> T {
        let (changed, out) = {
            let mut s = self.state.write();
            f(&mut s)
        };
        if changed {
            self.persister.ask_ring();
        }
        out
    }

    /// Replicas that reads ask last: peers catching up on hints after a restart, and this
    /// node while it does.
    pub fn catching_up_nodes(&self) -> std::collections::BTreeSet<NodeId> {
        let mut nodes = self.catch_up.peers_catching_up(self.clock.now_ms());
        if self.catch_up.is_catching_up() {
            nodes.insert(self.id.clone());
        }
        nodes
    }

    /// Waits until every metadata change made so far is durable (before a clean stop).
    pub async fn persist_all(&self) -> Result<(), NodeError> {
        let g = self.persister.latest();
        self.persister.wait(g).await?;
        Ok(())
    }

    /// Whether the failure detector currently believes `peer` is up. Self is always up.
    /// The instant expiry is judged and stamped by: this node's clock corrected to what a
    /// majority of the cluster's clocks say ([`cluster_time`]).
    pub fn expiry_now_ms(&self) -> u64 {
        self.peer_clocks.cluster_now(self.clock.now_ms())
    }

    pub fn is_reachable(&self, peer: &NodeId) -> bool {
        peer == &self.id || self.detector.lock().is_reachable(peer, self.clock.now_ms())
    }

    /// How the failure detector sees `peer` now (self is always up): routing asks the
    /// suspected too and routes around only the peers known down.
    pub fn liveness(&self, peer: &NodeId) -> Liveness {
        if peer == &self.id {
            return Liveness::Up;
        }
        self.detector.lock().liveness(peer, self.clock.now_ms())
    }

    /// Replicas and fallbacks of a partition: the first `n` reachable nodes of its walk, each
    /// with its role.
    pub fn serving(&self, partition: PartitionId, n: usize) -> crate::preflist::Serving {
        let primaries = self
            .state
            .read()
            .ring
            .preference_list(partition, n)
            .to_vec();
        // The walk is read again only when a primary is down; a ring changed in between
        // offers fallbacks from the newer ring, as a request a moment later would.
        crate::preflist::serving_set(
            &primaries,
            || self.state.read().ring.walk(partition),
            |id| self.liveness(id),
        )
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(#[from] riftkv_core::storage::StorageError),
    #[error("damaged node state: {0}")]
    Damaged(String),
    #[error("{0}")]
    Config(String),
    #[error("network: {0}")]
    Net(#[from] riftkv_core::net::NetError),
    #[error("membership: {0}")]
    Membership(#[from] riftkv_core::membership::state::MembershipError),
    #[error("{0}")]
    Persist(#[from] persist::PersistError),
}
