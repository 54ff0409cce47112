//! Process assembly: configuration to a running node with its API.
//!
//! Order matters: the data dir and storage are checked first (the commonest operator mistakes
//! fail before anything listens), then both listeners are bound (a port in use fails before the
//! node joins a cluster), then background duties start. Shutdown runs the other way: on a
//! signal, tell the other members this node is going down (they route around it at once);
//! stop accepting clients, let in-flight client requests and peer requests finish (bounded),
//! stop background duties, close the transport and flush storage.

use crate::config::ServerConfig;
use riftkv_cluster::dispatch::RpcHandler;
use riftkv_cluster::metrics::Metrics;
use riftkv_cluster::node::{META_NODE_ID, Node, NodeError, NodeSettings};
use riftkv_core::net::{NetConfig, NetError, TcpTransport, Transport};
use riftkv_core::storage::{RocksStorage, RocksTuning, Storage, StorageError, WriteBatch};
use riftkv_core::types::{NodeId, SystemClock};
use riftkv_core::version::Limits;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long in-flight client requests may run after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long background duties and the transport get to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// After announcing it is going down, how long a node keeps serving its peers at least:
/// requests they routed here just before they took the notice may still be arriving.
pub const PEER_LINGER: Duration = Duration::from_millis(500);
/// Timeout of one inter-node call made by a background duty.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the server could not start or stopped abnormally. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data dir {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error("data dir belongs to node {stored}, not {configured}")]
    NodeIdMismatch { stored: String, configured: String },
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen for peers on {addr}: {reason}")]
    PeerBind { addr: String, reason: String },
    #[error("cannot listen for clients on {addr}: {reason}")]
    ApiBind { addr: String, reason: String },
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("cannot install signal handlers: {0}")]
    Signals(String),
    #[error("API server failed: {0}")]
    Serve(String),
    #[error("{0}")]
    Tls(#[from] riftkv_core::net::tls::TlsError),
    #[error("bootstrap token file {path}: {reason}")]
    Bootstrap { path: PathBuf, reason: String },
}

/// Runs one node until SIGTERM/SIGINT or until it has left the cluster.
pub async fn run_server(cfg: ServerConfig) -> Result<(), ServerError> {
    let bootstrap_token = read_bootstrap_token(&cfg)?;
    prepare_data_dir(&cfg.data_dir)?;
    let db_dir = cfg.data_dir.join("db");
    let tuning = RocksTuning {
        block_cache_bytes: usize::try_from(cfg.block_cache_mb << 20).unwrap_or(usize::MAX),
        background_write_bytes_per_sec: cfg.background_write_mb_per_sec.saturating_mul(1 << 20),
        blob_min_bytes: cfg.blob_min_bytes,
        ..RocksTuning::for_node(cfg.node_id.as_str())
    };
    // Opening replays the WAL and claiming the node id is a synced write: both off the
    // async threads, like every synced metadata write of the node.
    let storage: Arc<dyn Storage> = {
        let node_id = cfg.node_id.clone();
        off_runtime(move || {
            let storage = RocksStorage::open_tuned(&db_dir, &tuning)?;
            claim_node_id(&storage, &node_id)?;
            Ok(Arc::new(storage))
        })
        .await?
    };

    let tls = match &cfg.tls {
        Some(files) => Some(riftkv_core::net::tls::Tls::load(files.clone())?),
        None => None,
    };
    let transport = TcpTransport::bind(NetConfig {
        advertise: cfg.advertise_peer_addr.to_string(),
        tls: tls.clone(),
        max_frame_bytes: cfg.max_frame_bytes(),
        ..NetConfig::new(
            cfg.node_id.clone(),
            cfg.cluster_name.clone(),
            cfg.cluster_secret.expose().to_vec(),
            cfg.peer_addr,
        )
    })
    .await
    .map_err(|e| ServerError::PeerBind {
        addr: cfg.peer_addr.to_string(),
        reason: bind_reason(e),
    })?;
    let listener = tokio::net::TcpListener::bind(cfg.api_addr)
        .await
        .map_err(|e| ServerError::ApiBind {
            addr: cfg.api_addr.to_string(),
            reason: e.to_string(),
        })?;

    let node = {
        let (settings, storage) = (settings_from(&cfg), storage.clone());
        let transport = transport.clone() as Arc<dyn Transport>;
        // Node::new waits for its incarnation record to be synced.
        off_runtime(move || {
            Ok(Node::new(
                settings,
                storage,
                transport,
                Arc::new(SystemClock),
                Metrics::new(),
            )?)
        })
        .await?
    };
    transport.set_handler(Arc::new(RpcHandler(node.clone())));
    if cfg.auth == crate::config::AuthMode::On {
        bootstrap_admin(&node, bootstrap_token).await?;
    }
    let duties = start_background(&node);
    tracing::info!(
        node_id = %node.id,
        api = %cfg.api_addr,
        peer = %cfg.peer_addr,
        data_dir = %cfg.data_dir.display(),
        seeds = cfg.seeds.len(),
        request_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        objects_memtable_mib = tuning.objects_write_buffer_bytes >> 20,
        background_write_mib_per_sec = cfg.background_write_mb_per_sec,
        blob_min_bytes = cfg.blob_min_bytes,
        "riftkv node started"
    );

    let api = Api {
        admission: crate::api::admission::Admission::new(cfg.max_in_flight, cfg.client_timeout()),
        auth: cfg.auth == crate::config::AuthMode::On,
        limits: crate::http::ListenerLimits {
            max_connections: cfg.max_connections,
            max_connections_per_ip: cfg.max_connections_per_ip,
            header_timeout: cfg.client_timeout(),
            tls: tls.clone(),
        },
        drain: cfg.shutdown_drain(),
    };
    if let Some(tls) = tls {
        tokio::spawn(reload_tls_on_sighup(tls));
    }
    let outcome = serve_until_stopped(node.clone(), listener, api).await;

    node.stop();
    for d in duties {
        if tokio::time::timeout(STOP_TIMEOUT, d).await.is_err() {
            tracing::warn!("a background duty did not stop in time");
        }
    }
    if tokio::time::timeout(STOP_TIMEOUT, transport.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the peer transport did not close in time");
    }
    // Only a fully synced stop may be marked clean: the next start then keeps this
    // incarnation even across a reboot. Metadata changes still queued are written first.
    if let Err(e) = node.persist_all().await {
        tracing::warn!(error = %e, "the last ring state changes could not be written");
    }
    let flushed = {
        let (storage, id, boot) = (
            storage.clone(),
            node.incarnation,
            node.settings.boot_id.clone(),
        );
        off_runtime(move || {
            storage.flush().and_then(|()| {
                riftkv_cluster::node::incarnation::end_clean(storage.as_ref(), id, boot.as_deref())
            })?;
            Ok(())
        })
        .await
    };
    match (&outcome, &flushed) {
        (Ok(()), Ok(())) => tracing::info!("riftkv node stopped cleanly"),
        (_, Err(e)) => tracing::error!(error = %e, "flushing storage at shutdown failed"),
        (Err(e), _) => tracing::error!(error = %e, "riftkv node stopped after an error"),
    }
    outcome?;
    flushed?;
    Ok(())
}

/// Re-reads the TLS certificates and key on every SIGHUP. New connections (API and peers) use
/// the new ones; open connections keep theirs; a reload that fails keeps the old ones and says
/// why.
async fn reload_tls_on_sighup(tls: Arc<riftkv_core::net::tls::Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS certificates will not reload");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!(
                cert = %tls.files().cert.display(),
                "SIGHUP: TLS certificates reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the certificates in use")
            }
        }
    }
}

/// How the API admits connections and requests.
struct Api {
    admission: Arc<crate::api::admission::Admission>,
    /// Whether requests need bearer tokens.
    auth: bool,
    limits: crate::http::ListenerLimits,
    /// How long a node stopping on a signal keeps serving clients with `/ready` at 503.
    drain: Duration,
}

/// Serves the API until a signal or the node's own stop, then drains in-flight requests.
async fn serve_until_stopped(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    api: Api,
) -> Result<(), ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| ServerError::Signals(e.to_string()))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| ServerError::Signals(e.to_string()))?;
    let mut left = node.left.subscribe();

    let stop_accepting = CancellationToken::new();
    let app = crate::api::router_with(node.clone(), api.admission, api.auth);
    let server = crate::http::serve(listener, app, api.limits, stop_accepting.clone());
    let mut server = tokio::spawn(server);

    // Ok(true): a signal; Ok(false): the node stops on its own; Err: the API server ended.
    let stop = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM received, shutting down"); Ok(true) }
        _ = int.recv() => { tracing::info!("SIGINT received, shutting down"); Ok(true) }
        _ = node.shutdown.cancelled() => { tracing::info!("node stopping"); Ok(false) }
        _ = left.wait_for(|l| *l) => { tracing::info!("node has left the cluster, shutting down"); Ok(false) }
        r = &mut server => Err(r),
    };
    match stop {
        Err(r) => return r.map_err(|e| ServerError::Serve(e.to_string())),
        // Before anything stops: members route around this node from now on, while it still
        // serves what they already sent it.
        Ok(true) => {
            riftkv_cluster::membership::going_down::announce(
                &node,
                riftkv_cluster::membership::going_down::ANNOUNCE_BUDGET,
            )
            .await;
        }
        Ok(false) => {}
    }
    let announced = matches!(stop, Ok(true)).then(std::time::Instant::now);
    node.stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if announced.is_some() && !api.drain.is_zero() {
        // Clients still served while a load balancer that follows `/ready` moves them away;
        // members already route around this node.
        tracing::info!(
            ms = api.drain.as_millis() as u64,
            "draining: /ready answers 503 stopping while clients are still served"
        );
        tokio::select! {
            _ = tokio::time::sleep(api.drain) => {}
            _ = term.recv() => tracing::info!("second SIGTERM: ending the drain"),
            _ = int.recv() => tracing::info!("second SIGINT: ending the drain"),
        }
    }
    stop_accepting.cancel();
    let drained = drain_clients(&mut server).await;
    if let Some(at) = announced {
        finish_peer_requests(&node, at).await;
    }
    drained
}

/// Waits (bounded) for a stopping node's peers: until [`PEER_LINGER`] after its notice, then
/// until no peer request is being handled, so the transport closes none mid-way.
async fn finish_peer_requests(node: &Node, announced: std::time::Instant) {
    use std::sync::atomic::Ordering;
    tokio::time::sleep_until((announced + PEER_LINGER).into()).await;
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    while node.peer_requests_in_flight.load(Ordering::SeqCst) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("requests from peers did not finish in time; closing them");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lets in-flight client requests finish (bounded) after the listener stopped accepting.
async fn drain_clients(server: &mut JoinHandle<()>) -> Result<(), ServerError> {
    match tokio::time::timeout(DRAIN_TIMEOUT, &mut *server).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServerError::Serve(e.to_string())),
        Err(_) => {
            tracing::warn!(
                secs = DRAIN_TIMEOUT.as_secs(),
                "in-flight requests did not finish in time; closing them"
            );
            server.abort();
            Ok(())
        }
    }
}

/// With auth on, the bootstrap token from its file, read and checked before anything is opened
/// or bound (a bad file stops the node with one line; the token is never logged).
fn read_bootstrap_token(cfg: &ServerConfig) -> Result<Option<String>, ServerError> {
    let Some(path) = cfg.bootstrap_token_file.as_deref() else {
        return Ok(None);
    };
    if cfg.auth != crate::config::AuthMode::On {
        return Ok(None);
    }
    let fail = |reason: String| ServerError::Bootstrap {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let token = text.trim().to_string();
    if token.len() < riftkv_core::security::MIN_TOKEN_LEN {
        return Err(fail(
            riftkv_core::security::SecurityError::ShortToken.to_string(),
        ));
    }
    Ok(Some(token))
}

/// Runs blocking storage work (opening, fsyncs) on the blocking pool, not on an async worker.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Serve(format!("a storage task failed: {e}")))?
}

/// With auth on: creates the first admin from the bootstrap token when the cluster has never
/// had a user.
async fn bootstrap_admin(node: &Node, token: Option<String>) -> Result<(), ServerError> {
    let Some(token) = token else {
        if node.state.read().security.never_had_users() {
            tracing::warn!(
                "auth is on and this node knows no users yet: every request but /health and \
                 /ready is refused until users arrive by gossip or --bootstrap-token-file names \
                 the first admin's token"
            );
        }
        return Ok(());
    };
    let me = node.id.clone();
    let created = node
        .update_state(move |s| {
            let r = s.security.bootstrap(&token, &me);
            (matches!(r, Ok(true)), r)
        })
        .await?
        .map_err(|e| ServerError::Bootstrap {
            path: PathBuf::from("--bootstrap-token-file"),
            reason: e.to_string(),
        })?;
    if created {
        tracing::info!(
            user = riftkv_core::security::BOOTSTRAP_USER,
            "no users yet: created the bootstrap admin from the token file"
        );
    }
    Ok(())
}

/// Creates the data dir if needed and proves it is writable.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ServerError> {
    let fail = |reason: String| ServerError::DataDir {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    if !dir.is_dir() {
        return Err(fail("is not a directory".into()));
    }
    let probe = dir.join(format!(".riftkv-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| fail(format!("is not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Records the node id on first start; refuses a data dir that belongs to another node.
pub fn claim_node_id(storage: &dyn Storage, configured: &NodeId) -> Result<(), ServerError> {
    match storage.get_meta(META_NODE_ID)? {
        Some(bytes) => {
            let stored = String::from_utf8_lossy(&bytes).into_owned();
            if stored != configured.as_str() {
                return Err(ServerError::NodeIdMismatch {
                    stored,
                    configured: configured.as_str().to_string(),
                });
            }
            Ok(())
        }
        None => {
            let mut batch = WriteBatch::default();
            batch.put_meta(META_NODE_ID, configured.as_str().as_bytes().to_vec());
            storage.write(batch, true)?;
            Ok(())
        }
    }
}

fn bind_reason(e: NetError) -> String {
    match e {
        NetError::Bind(m) => m,
        other => other.to_string(),
    }
}

/// The node's own view of its configuration.
pub fn settings_from(cfg: &ServerConfig) -> NodeSettings {
    NodeSettings {
        node_id: cfg.node_id.clone(),
        api_addr: cfg.advertise_api_addr.to_string(),
        peer_addr: cfg.advertise_peer_addr.to_string(),
        zone: cfg.zone.clone(),
        cluster_name: cfg.cluster_name.clone(),
        cluster_secret: cfg.cluster_secret.expose().to_vec(),
        seeds: cfg.seeds.iter().map(|s| s.to_string()).collect(),
        ring_size: cfg.ring_size,
        n_val: u32::try_from(cfg.n_val).unwrap_or(u32::MAX),
        hinted_handoff: cfg.hinted_handoff,
        gossip_interval: cfg.gossip_interval(),
        acceptable_pause: Duration::from_millis(
            riftkv_core::membership::detector::DEFAULT_ACCEPTABLE_PAUSE_MS,
        ),
        handoff_interval: cfg.handoff_interval(),
        request_timeout: cfg.request_timeout(),
        rpc_timeout: RPC_TIMEOUT,
        tombstone_grace: cfg.tombstone_grace(),
        aae_interval: cfg.aae_interval(),
        aae_tree_max_age: riftkv_cluster::node::trees::DEFAULT_TREE_MAX_AGE,
        catch_up_timeout: cfg.catch_up_timeout(),
        limits: Limits {
            max_value_bytes: usize::try_from(cfg.max_value_bytes).unwrap_or(usize::MAX),
            max_object_bytes: usize::try_from(cfg.max_object_bytes).unwrap_or(usize::MAX),
            ..Limits::default()
        },
        transfer_concurrency: cfg.transfer_concurrency,
        transfer_max_bytes_per_sec: cfg.transfer_max_bytes_per_sec,
        change_mode: if cfg.staged_changes {
            riftkv_core::membership::state::ChangeMode::Staged
        } else {
            riftkv_core::membership::state::ChangeMode::Immediate
        },
        boot_id: boot_id(),
        faults: riftkv_core::fault::Faults::from_env(),
    }
}

/// The boot this process runs on. In the test-only power-loss mode every process start counts
/// as a new boot, since a killed process loses its unsynced writes there as a power cut would.
fn boot_id() -> Option<String> {
    if riftkv_core::fault::powerloss_mode() {
        return Some(format!("powerloss-{:016x}", rand::random::<u64>()));
    }
    riftkv_cluster::node::incarnation::current_boot_id()
}

/// Starts the node's background duties (membership, ownership handoff, hint delivery,
/// tombstone reaping, anti-entropy): each a `riftkv_cluster::worker`, listed in
/// `/v1/admin/status` and stopped by the node's shutdown token.
fn start_background(node: &Arc<Node>) -> Vec<JoinHandle<()>> {
    let mut duties = riftkv_cluster::membership::start_background(node.clone());
    duties.push(riftkv_cluster::handoff::hints::spawn(node.clone()));
    duties.push(riftkv_cluster::reaper::spawn(node.clone()));
    duties.push(riftkv_cluster::aae::spawn(node.clone()));
    duties
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::storage::MemoryStorage;

    #[test]
    fn node_id_is_claimed_once_and_then_checked() {
        let s = MemoryStorage::new();
        claim_node_id(&s, &NodeId::from("n1")).unwrap();
        claim_node_id(&s, &NodeId::from("n1")).unwrap();
        let e = claim_node_id(&s, &NodeId::from("n2")).unwrap_err();
        assert_eq!(e.to_string(), "data dir belongs to node n1, not n2");
    }

    #[test]
    fn data_dir_is_created_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b");
        prepare_data_dir(&d).unwrap();
        assert!(d.is_dir());
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = prepare_data_dir(&file).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("data dir {}", file.display())),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn data_dir_that_is_not_writable_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("ro");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o500)).unwrap();
        // Root ignores permission bits; the check is only meaningful for other users.
        let probe = d.join("p");
        let root = std::fs::write(&probe, b"x").is_ok();
        let _ = std::fs::remove_file(&probe);
        let r = prepare_data_dir(&d);
        if root {
            assert!(r.is_ok());
        } else {
            assert!(r.unwrap_err().to_string().contains("is not writable"));
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}
