//! An in-process RiftKV cluster for tests: nodes over the simulated network and in-memory
//! storage, with their background duties running, and helpers to kill, restart, partition and
//! wait. Nodes are numbered from 1: node `i` has id `n{i}` and address `127.0.0.1:{9000+i}`
//! (a key of the simulated network only; nothing listens there). Node 1 founds the cluster,
//! the others join through seeds. Every wait is bounded by a timeout.

use crate::dispatch::RpcHandler;
use crate::membership::admin;
use crate::metrics::Metrics;
use crate::node::{Node, NodeSettings};
use bytes::Bytes;
use riftkv_core::net::{NetError, Transport};
use riftkv_core::net::{SimNetwork, SimTransport};
use riftkv_core::storage::{
    Entries, ExpiryEntries, HintEntries, HintKey, MemoryStorage, ObjectEntries, ObjectKey, Storage,
    StorageError, WriteBatch,
};
use riftkv_core::types::PartitionId;
use riftkv_core::types::{Clock, NodeId, SystemClock};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Adjusts a node's settings before it starts (ring size, intervals, ...).
pub type SettingsHook = Arc<dyn Fn(&mut NodeSettings) + Send + Sync>;
/// Starts a node's background duties; the default starts the membership and ownership duties.
pub type DutiesHook = Arc<dyn Fn(Arc<Node>) -> Vec<JoinHandle<()>> + Send + Sync>;

/// How a test cluster is built.
#[derive(Clone)]
pub struct ClusterOptions {
    pub cluster_name: String,
    pub settings: Option<SettingsHook>,
    pub duties: Option<DutiesHook>,
    /// Each start of a node reaches its storage and the network through a gate that closes
    /// when the node is killed, so work still in flight in the dead process (a coordinator, a
    /// request handler) can neither write nor send afterwards, as with a real process.
    /// Without it such work goes on against the storage the node restarts over, which a
    /// power cut has rolled back meanwhile.
    pub fence_dead_processes: bool,
    /// Called on the writing thread before every synced write of every node's storage.
    pub on_synced_write: Option<riftkv_core::storage::memory::SyncedWriteHook>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            cluster_name: "test".to_string(),
            settings: None,
            duties: None,
            fence_dead_processes: false,
            on_synced_write: None,
        }
    }
}

impl ClusterOptions {
    /// Nodes that also deliver hinted handoff (besides gossip), for tests of fallbacks.
    pub fn with_hint_delivery(mut self) -> Self {
        self.duties = Some(Arc::new(|node: Arc<Node>| {
            let mut v = crate::membership::start_background(node.clone());
            v.push(crate::handoff::hints::spawn(node));
            v
        }));
        self
    }
}

/// The live values of an object as text, sorted: what tests compare a read against. Objects
/// the coordinator answers are already what a reader sees (expired versions hidden), so every
/// version that is not a tombstone counts.
pub fn live_values(o: &riftkv_core::version::Object) -> Vec<String> {
    let mut v: Vec<String> = o
        .siblings()
        .iter()
        .filter(|(_, s)| !s.deleted)
        .map(|(_, s)| String::from_utf8_lossy(&s.value).into_owned())
        .collect();
    v.sort();
    v
}

struct Slot {
    settings: NodeSettings,
    clock: Arc<dyn Clock>,
    storage: Arc<MemoryStorage>,
    transport: Arc<SimTransport>,
    node: Option<Arc<Node>>,
    tasks: Vec<JoinHandle<()>>,
    /// The gate of the running process (with `fence_dead_processes`).
    gate: Option<Arc<Gate>>,
}

/// A running in-process cluster.
pub struct TestCluster {
    pub net: SimNetwork,
    options: ClusterOptions,
    slots: Vec<Slot>,
}

/// Address of node `i`.
pub fn addr_of(i: usize) -> String {
    format!("127.0.0.1:{}", 9000 + i)
}

/// Node id of node `i`.
pub fn id_of(i: usize) -> NodeId {
    NodeId::new(format!("n{i}"))
}

impl TestCluster {
    /// Starts `n_nodes` nodes with default options over a network seeded with `seed`.
    pub fn start(n_nodes: usize, seed: u64) -> TestCluster {
        TestCluster::start_with(n_nodes, seed, ClusterOptions::default())
    }

    /// Starts `n_nodes` nodes: node 1 founds, the others join through node 1 as seed.
    pub fn start_with(n_nodes: usize, seed: u64, options: ClusterOptions) -> TestCluster {
        let mut c = TestCluster {
            net: SimNetwork::new(seed),
            options,
            slots: Vec::new(),
        };
        for _ in 0..n_nodes {
            c.add_node();
        }
        c
    }

    /// Number of nodes ever started (the highest index).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(
            i >= 1 && i <= self.slots.len(),
            "no node {i} in a cluster of {}",
            self.slots.len()
        );
        &self.slots[i - 1]
    }

    /// Adds a node that joins through every running node as seed; returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.slots.len() + 1;
        let addr = addr_of(i);
        let id = id_of(i);
        let mut settings = NodeSettings::for_test(id.as_str(), &addr, &self.options.cluster_name);
        settings.seeds = self
            .running()
            .into_iter()
            .map(addr_of)
            .filter(|a| a != &addr)
            .collect();
        if let Some(hook) = &self.options.settings {
            hook(&mut settings);
        }
        let storage = self.new_storage();
        let transport = self.net.endpoint(&addr, id);
        self.slots.push(Slot {
            settings,
            clock: Arc::new(SystemClock),
            storage,
            transport,
            node: None,
            tasks: Vec::new(),
            gate: None,
        });
        self.boot(i);
        i
    }

    /// An empty disk for a node, with the cluster's synced-write hook.
    fn new_storage(&self) -> Arc<MemoryStorage> {
        let storage = Arc::new(MemoryStorage::new());
        if let Some(hook) = &self.options.on_synced_write {
            storage.on_synced_write(hook.clone());
        }
        storage
    }

    fn boot(&mut self, i: usize) {
        let duties = self.options.duties.clone();
        let net = self.net.clone();
        let fence = self.options.fence_dead_processes;
        let slot = &mut self.slots[i - 1];
        let clock = slot.clock.clone();
        let (storage, transport): (Arc<dyn Storage>, Arc<dyn Transport>) = if fence {
            let gate = Arc::new(Gate::default());
            slot.gate = Some(gate.clone());
            (
                Arc::new(GatedStorage {
                    inner: slot.storage.clone(),
                    gate: gate.clone(),
                }),
                Arc::new(GatedTransport {
                    inner: slot.transport.clone(),
                    gate,
                }),
            )
        } else {
            (slot.storage.clone(), slot.transport.clone())
        };
        let node = match Node::new(
            slot.settings.clone(),
            storage,
            transport,
            clock,
            Metrics::new(),
        ) {
            Ok(n) => n,
            Err(e) => panic!("node {i} cannot start: {e}"),
        };
        net.revive(&slot.settings.peer_addr);
        slot.transport
            .set_handler(Arc::new(RpcHandler(node.clone())));
        let mut tasks = match duties {
            Some(d) => d(node.clone()),
            None => crate::membership::start_background(node.clone()),
        };
        // A node that has left the cluster stops, as its process would.
        let watcher = {
            let node = node.clone();
            let addr = slot.settings.peer_addr.clone();
            tokio::spawn(async move {
                let mut rx = node.left.subscribe();
                tokio::select! {
                    _ = node.shutdown.cancelled() => {}
                    r = rx.wait_for(|v| *v) => {
                        if r.is_ok() {
                            net.kill(&addr);
                            node.stop();
                        }
                    }
                }
            })
        };
        tasks.push(watcher);
        slot.node = Some(node);
        slot.tasks = tasks;
    }

    /// The running node `i`. Panics when it is killed (a test bug).
    pub fn node(&self, i: usize) -> Arc<Node> {
        match self.try_node(i) {
            Some(n) => n,
            None => panic!("node {i} is not running"),
        }
    }

    /// Node `i` when it is running (not killed, not left).
    pub fn try_node(&self, i: usize) -> Option<Arc<Node>> {
        self.slot(i)
            .node
            .clone()
            .filter(|n| !n.shutdown.is_cancelled())
    }

    /// The node `i`'s storage (kept across restarts).
    pub fn storage(&self, i: usize) -> Arc<MemoryStorage> {
        self.slot(i).storage.clone()
    }

    /// Indices of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (1..=self.slots.len())
            .filter(|i| self.try_node(*i).is_some())
            .collect()
    }

    /// Whether node `i` has left the cluster (left, or was removed and stopped).
    pub fn has_left(&self, i: usize) -> bool {
        self.slot(i).node.as_ref().is_some_and(|n| *n.left.borrow())
    }

    /// Stops node `i` as a crash would: unreachable at once, duties stopped, storage kept.
    pub fn kill(&mut self, i: usize) {
        let addr = self.slot(i).settings.peer_addr.clone();
        self.net.kill(&addr);
        let slot = &mut self.slots[i - 1];
        if let Some(gate) = slot.gate.take() {
            gate.close();
        }
        if let Some(node) = slot.node.take() {
            node.stop();
            // A dead process writes nothing more, not even metadata it had queued.
            node.persister.halt();
        }
        for t in slot.tasks.drain(..) {
            t.abort();
        }
    }

    /// Starts node `i` again over its storage: same id, same address, same data.
    pub fn restart(&mut self, i: usize) {
        if self.try_node(i).is_some() {
            self.kill(i);
        }
        self.boot(i);
    }

    /// Gives node `i` another wall clock (from its next start on).
    pub fn set_clock(&mut self, i: usize, clock: Arc<dyn Clock>) {
        let _ = self.slot(i);
        self.slots[i - 1].clock = clock;
    }

    /// Replaces node `i`'s disk by an empty one and starts it again with the same id: it
    /// rejoins through the running nodes.
    pub fn wipe(&mut self, i: usize) {
        if self.try_node(i).is_some() {
            self.kill(i);
        }
        let seeds: Vec<String> = self
            .running()
            .into_iter()
            .filter(|j| *j != i)
            .map(addr_of)
            .collect();
        let storage = self.new_storage();
        let slot = &mut self.slots[i - 1];
        slot.storage = storage;
        slot.settings.seeds = seeds;
        self.boot(i);
    }

    /// Cuts every node of `a` off from every node of `b` (both ways).
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let a: Vec<String> = a.iter().map(|i| addr_of(*i)).collect();
        let b: Vec<String> = b.iter().map(|i| addr_of(*i)).collect();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        self.net.partition(&a, &b);
    }

    /// Cuts node `i` off from everyone.
    pub fn isolate(&self, i: usize) {
        self.net.isolate(&addr_of(i));
    }

    /// Removes every partition, isolation, drop rate and delay.
    pub fn heal(&self) {
        self.net.heal();
    }

    /// Polls `cond` every 25 ms until it holds or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&TestCluster) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until every running node reports `ring_settled` and all agree on the ring version
    /// and owners. The error describes each node's view.
    pub async fn wait_settled(&self, timeout: Duration) -> Result<(), String> {
        let r = self
            .wait_for(timeout, "the ring to settle", |c| c.settled_now())
            .await;
        r.map_err(|e| format!("{e}\n{}", self.describe()))
    }

    /// Whether the running nodes are settled and agree right now.
    pub fn settled_now(&self) -> bool {
        let nodes: Vec<Arc<Node>> = self.running().into_iter().map(|i| self.node(i)).collect();
        let Some(first) = nodes.first() else {
            return true;
        };
        let (v0, ring0) = {
            let s = first.state.read();
            (s.ring_version, s.ring.clone())
        };
        nodes.iter().all(|n| {
            let same = {
                let s = n.state.read();
                s.ring_version == v0 && s.ring == ring0
            };
            same && admin::is_settled(n)
        })
    }

    /// One line per node: id, joined, ring version, settled, member statuses.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.slots.len() {
            let Some(n) = self.try_node(i) else {
                out.push_str(&format!("n{i}: not running\n"));
                continue;
            };
            let s = n.state.read().clone();
            let members: Vec<String> = s
                .members
                .values()
                .map(|m| {
                    format!(
                        "{}:{}{}",
                        m.node_id,
                        m.status.as_str(),
                        if n.is_reachable(&m.node_id) {
                            ""
                        } else {
                            "(down)"
                        }
                    )
                })
                .collect();
            out.push_str(&format!(
                "n{i}: joined={} v={} plan={:?} settled={} peers={:?} members=[{}]\n",
                n.joined.load(std::sync::atomic::Ordering::SeqCst),
                s.ring_version,
                s.plan.as_ref().map(|p| (p.id, p.transfers.len())),
                admin::is_settled(&n),
                n.peer_ring_versions.lock().clone(),
                members.join(" ")
            ));
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(n) = &slot.node {
                n.stop();
            }
            for t in slot.tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// Whether one start of a node is still alive. Storage calls hold it shared for their whole
/// duration, so closing it waits for them: nothing the dead process started lands after.
#[derive(Default)]
struct Gate {
    closed: parking_lot::RwLock<bool>,
}

impl Gate {
    fn close(&self) {
        *self.closed.write() = true;
    }

    /// Runs `f` while the process is alive; a dead process gets an I/O error.
    fn run<T>(&self, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
        let closed = self.closed.read();
        if *closed {
            return Err(StorageError::Io("the process was killed".into()));
        }
        f()
    }
}

/// A node's storage as one process sees it (see `fence_dead_processes`).
struct GatedStorage {
    inner: Arc<MemoryStorage>,
    gate: Arc<Gate>,
}

impl Storage for GatedStorage {
    fn get_object(&self, k: &ObjectKey) -> Result<Option<Vec<u8>>, StorageError> {
        self.gate.run(|| self.inner.get_object(k))
    }
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        self.gate.run(|| self.inner.write(batch, sync))
    }
    fn scan_partition(
        &self,
        partition: PartitionId,
        after: Option<(&[u8], &[u8])>,
        limit: usize,
    ) -> Result<ObjectEntries, StorageError> {
        self.gate
            .run(|| self.inner.scan_partition(partition, after, limit))
    }
    fn list_bucket(
        &self,
        partition: PartitionId,
        bucket: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError> {
        self.gate
            .run(|| self.inner.list_bucket(partition, bucket, after, limit))
    }
    fn count_partition(&self, partition: PartitionId) -> Result<u64, StorageError> {
        self.gate.run(|| self.inner.count_partition(partition))
    }
    fn get_hint(&self, k: &HintKey) -> Result<Option<Vec<u8>>, StorageError> {
        self.gate.run(|| self.inner.get_hint(k))
    }
    fn scan_hints(
        &self,
        target: &NodeId,
        after: Option<&HintKey>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<HintEntries, StorageError> {
        self.gate
            .run(|| self.inner.scan_hints(target, after, limit, max_bytes))
    }
    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StorageError> {
        self.gate.run(|| self.inner.hint_counts())
    }
    fn scan_expiry(
        &self,
        after: Option<(u64, &ObjectKey)>,
        up_to_ms: u64,
        limit: usize,
    ) -> Result<ExpiryEntries, StorageError> {
        self.gate
            .run(|| self.inner.scan_expiry(after, up_to_ms, limit))
    }
    fn scan_tombstones(
        &self,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StorageError> {
        self.gate.run(|| self.inner.scan_tombstones(after, limit))
    }
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.gate.run(|| self.inner.get_meta(name))
    }
    fn get_aae(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.gate.run(|| self.inner.get_aae(k))
    }
    fn scan_aae_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, StorageError> {
        self.gate.run(|| self.inner.scan_aae_prefix(prefix, limit))
    }
    fn approximate_bytes(&self) -> u64 {
        self.inner.approximate_bytes()
    }
    fn engine_stats(&self) -> riftkv_core::storage::EngineStats {
        self.inner.engine_stats()
    }
    fn corrupt_records(&self) -> u64 {
        self.inner.corrupt_records()
    }
    fn flush(&self) -> Result<(), StorageError> {
        self.gate.run(|| self.inner.flush())
    }
    fn sync_wal(&self) -> Result<(), StorageError> {
        self.gate.run(|| self.inner.sync_wal())
    }
    /// Unsupported, as for the in-memory store it wraps.
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StorageError> {
        self.gate.run(|| self.inner.checkpoint(dir))
    }
    #[cfg(any(test, feature = "fault-injection"))]
    fn damage_objects_for_test(
        &self,
        bucket: &[u8],
        key: Option<&[u8]>,
        fraction: f64,
    ) -> Result<riftkv_core::storage::damage::Damage, StorageError> {
        self.gate
            .run(|| self.inner.damage_objects_for_test(bucket, key, fraction))
    }
}

/// A node's network endpoint as one process sees it (see `fence_dead_processes`).
struct GatedTransport {
    inner: Arc<SimTransport>,
    gate: Arc<Gate>,
}

#[async_trait::async_trait]
impl Transport for GatedTransport {
    async fn call(&self, to: &str, request: Bytes, timeout: Duration) -> Result<Bytes, NetError> {
        if *self.gate.closed.read() {
            return Err(NetError::ShuttingDown);
        }
        self.inner.call(to, request, timeout).await
    }

    fn local_addr(&self) -> String {
        self.inner.local_addr()
    }
}

#[cfg(any(test, feature = "fault-injection"))]
impl TestCluster {
    /// Makes node `i`'s storage remember which writes a power cut would lose.
    pub fn track_durability(&self, i: usize) {
        self.slot(i).storage.track_durability();
    }

    /// A machine crash of node `i`: the process dies, its storage loses every unsynced write
    /// after the first `keep` (see [`MemoryStorage::power_loss`]), and it boots again on a new
    /// machine boot. Returns how many write batches were lost.
    pub fn power_cut(&mut self, i: usize, keep: usize) -> usize {
        if self.try_node(i).is_some() {
            self.kill(i);
        }
        let lost = self.slot(i).storage.power_loss(keep);
        let slot = &mut self.slots[i - 1];
        slot.settings.boot_id = Some(format!("boot-{:016x}", rand::random::<u64>()));
        self.boot(i);
        lost
    }

    /// Damages node `i`'s stored record of `bucket/key` (its checksum fails from now on).
    pub fn damage(&self, i: usize, bucket: &[u8], key: &[u8]) -> bool {
        use riftkv_core::storage::Storage;
        self.slot(i)
            .storage
            .damage_objects_for_test(bucket, Some(key), 1.0)
            .is_ok_and(|d| d.damaged > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work left running in a killed node (here: a write through its old handle) must not
    /// reach the storage its next start uses, or a power cut's rollback could be undone by a
    /// process that is already dead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_process_can_neither_write_nor_send() {
        let options = ClusterOptions {
            fence_dead_processes: true,
            ..ClusterOptions::default()
        };
        let mut c = TestCluster::start_with(2, 1, options);
        c.wait_settled(Duration::from_secs(30)).await.unwrap();
        let old = c.node(2);
        c.kill(2);
        let mut batch = WriteBatch::default();
        batch.put_meta("zombie", vec![1]);
        assert!(old.storage.write(batch, true).is_err());
        let sent = old
            .transport
            .call(
                &addr_of(1),
                Bytes::from_static(b"x"),
                Duration::from_secs(1),
            )
            .await;
        assert!(matches!(sent, Err(NetError::ShuttingDown)));
        // The next start has its own, open gate.
        c.restart(2);
        let mut batch = WriteBatch::default();
        batch.put_meta("alive", vec![1]);
        c.node(2).storage.write(batch, true).unwrap();
        assert_eq!(c.storage(2).get_meta("zombie").unwrap(), None);
    }
}
