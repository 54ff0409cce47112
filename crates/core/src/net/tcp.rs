//! TCP transport: length-delimited postcard frames, an authenticated handshake, and one
//! multiplexed outbound connection per peer address.
//!
//! Connections are one-directional: a node sends its requests on the connection it dialled
//! and serves the peer's requests on the connection the peer dialled. That keeps each side's
//! task simple (an outbound connection only reads responses, an inbound one only requests).
//!
//! Each [`Lane`] dials a connection of its own, so the receiver serves it with its own read
//! loop, write queue and in-flight bound: heartbeats never wait behind data frames.

use super::backoff::Backoff;
use super::conn::{
    FrameReader, FrameWriter, OutConn, ReadHalf, WRITE_QUEUE, WriteHalf, codec, next_envelope,
    send_envelope, split_io, split_plain, write_frames,
};
use super::frame::{self, Envelope, Nonce, Payload, Refusal};
use super::handshake::{self, Identity, Side};
use super::limit::{ConnLimiter, ConnPermit};
use super::{HANDSHAKE_MAX_FRAME_BYTES, Handler, Lane, NetConfig, NetError, PeerInfo, Transport};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

type SharedDial = Shared<BoxFuture<'static, Result<Arc<OutConn>, NetError>>>;

/// Requests one inbound connection may have inside the handler at once. Beyond it the
/// connection stops reading, which pushes back on the sender through TCP flow control.
const MAX_INFLIGHT_PER_CONN: usize = 1024;
/// Refusal reasons kept for status pages and tests.
const RECENT_REFUSALS: usize = 32;

/// Counters for dashboards and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub inbound_accepted: u64,
    pub inbound_authenticated: u64,
    pub outbound_connected: u64,
    pub handshakes_refused: u64,
    /// Connections closed because the peer sent an oversized, undecodable or unexpected frame.
    pub bad_frame_closes: u64,
    pub handler_panics: u64,
    /// Inbound connections closed at accept: over the per-address or total bound.
    pub inbound_rejected: u64,
}

#[derive(Default)]
struct Counters {
    inbound_accepted: AtomicU64,
    inbound_authenticated: AtomicU64,
    outbound_connected: AtomicU64,
    handshakes_refused: AtomicU64,
    bad_frame_closes: AtomicU64,
    handler_panics: AtomicU64,
    inbound_rejected: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The TCP transport of one node.
pub struct TcpTransport {
    inner: Arc<Inner>,
    listen_addr: SocketAddr,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    ident: Identity,
    max_frame: usize,
    connect_timeout: Duration,
    handler: RwLock<Option<Arc<dyn Handler>>>,
    /// Outbound links by peer address and lane.
    peers: Mutex<HashMap<(String, Lane), PeerLink>>,
    /// Cancelled by `shutdown`; every connection's token is a child of it.
    shutdown: CancellationToken,
    counters: Counters,
    refusals: Mutex<VecDeque<String>>,
    /// Open inbound connections, per remote IP and in total.
    inbound: Arc<ConnLimiter>,
    /// Mutual TLS around every connection, when configured.
    tls: Option<Arc<super::tls::Tls>>,
}

/// Outbound state for one peer address.
#[derive(Default)]
struct PeerLink {
    state: LinkState,
    backoff: Backoff,
    last_error: Option<NetError>,
}

#[derive(Default)]
enum LinkState {
    #[default]
    Idle,
    /// A dial is under way; every caller waits on the same one.
    Connecting(SharedDial),
    Up(Arc<OutConn>),
}

impl TcpTransport {
    /// Binds the listener and starts accepting. The handler is set later (`set_handler`) so a
    /// node can be assembled in two steps; requests arriving before are answered with an
    /// error frame.
    ///
    /// An empty advertise address, or one ending in `:0`, is replaced by the bound address.
    pub async fn bind(cfg: NetConfig) -> Result<Arc<TcpTransport>, NetError> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| NetError::Bind(format!("{}: {e}", cfg.listen)))?;
        let listen_addr = listener
            .local_addr()
            .map_err(|e| NetError::Bind(format!("{}: {e}", cfg.listen)))?;
        let advertise = if cfg.advertise.is_empty() || cfg.advertise.ends_with(":0") {
            listen_addr.to_string()
        } else {
            cfg.advertise.clone()
        };
        let inner = Arc::new(Inner {
            ident: Identity {
                node_id: cfg.node_id.clone(),
                cluster_name: cfg.cluster_name.clone(),
                secret: cfg.cluster_secret.clone(),
                advertise,
            },
            max_frame: cfg.max_frame_bytes,
            connect_timeout: cfg.connect_timeout,
            handler: RwLock::new(None),
            peers: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            counters: Counters::default(),
            refusals: Mutex::new(VecDeque::new()),
            inbound: ConnLimiter::new(cfg.max_inbound_total, cfg.max_inbound_per_ip),
            tls: cfg.tls.clone(),
        });
        let task = tokio::spawn(inner.clone().accept_loop(listener));
        Ok(Arc::new(TcpTransport {
            inner,
            listen_addr,
            accept_task: Mutex::new(Some(task)),
        }))
    }

    /// Attaches (or replaces) the handler serving inbound requests.
    pub fn set_handler(&self, h: Arc<dyn Handler>) {
        *self.inner.handler.write() = Some(h);
    }

    /// The socket address actually bound (useful with port 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn node_id(&self) -> &crate::types::NodeId {
        &self.inner.ident.node_id
    }

    /// Stops accepting, closes every connection and fails pending calls with `ShuttingDown`.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let links: Vec<PeerLink> = self.inner.peers.lock().drain().map(|(_, l)| l).collect();
        for link in links {
            if let LinkState::Up(conn) = link.state {
                conn.close(NetError::ShuttingDown);
            }
        }
        let task = self.accept_task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            inbound_accepted: get(&c.inbound_accepted),
            inbound_authenticated: get(&c.inbound_authenticated),
            outbound_connected: get(&c.outbound_connected),
            handshakes_refused: get(&c.handshakes_refused),
            bad_frame_closes: get(&c.bad_frame_closes),
            handler_panics: get(&c.handler_panics),
            inbound_rejected: get(&c.inbound_rejected),
        }
    }

    /// The latest handshake refusals this node took part in, oldest first, worded from this
    /// node's side.
    pub fn recent_refusals(&self) -> Vec<String> {
        self.inner.refusals.lock().iter().cloned().collect()
    }

    /// Peer addresses with an open outbound data connection.
    pub fn connected_peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .peers
            .lock()
            .iter()
            .filter(|((_, lane), l)| {
                *lane == Lane::Data && matches!(&l.state, LinkState::Up(c) if c.is_open())
            })
            .map(|((a, _), _)| a.clone())
            .collect();
        v.sort();
        v
    }

    /// Calls sent and still waiting for a response, over all peers.
    pub fn pending_calls(&self) -> usize {
        self.inner
            .peers
            .lock()
            .values()
            .map(|l| match &l.state {
                LinkState::Up(c) => c.pending.lock().calls.len(),
                _ => 0,
            })
            .sum()
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        // Background tasks hold `inner`; without this they would outlive the transport.
        self.inner.shutdown.cancel();
    }
}

#[async_trait::async_trait]
impl Transport for TcpTransport {
    async fn call(&self, to: &str, request: Bytes, timeout: Duration) -> Result<Bytes, NetError> {
        self.call_on(Lane::Data, to, request, timeout).await
    }

    async fn call_on(
        &self,
        lane: Lane,
        to: &str,
        request: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(NetError::ShuttingDown);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = match tokio::time::timeout_at(deadline, self.inner.connection(to, lane)).await {
            Ok(r) => r?,
            Err(_) => return Err(NetError::Timeout),
        };
        match tokio::time::timeout_at(deadline, conn.call(request)).await {
            Ok(r) => r,
            Err(_) => {
                // A slow handler and a dead link look the same from here; ask the peer.
                conn.probe(self.inner.connect_timeout);
                Err(NetError::Timeout)
            }
        }
    }

    fn local_addr(&self) -> String {
        self.inner.ident.advertise.clone()
    }
}

fn random_nonce() -> Nonce {
    rand::random()
}

/// The text of an error without its variant prefix, for nesting in another message.
fn reason(e: &NetError) -> String {
    match e {
        NetError::Unreachable(s) | NetError::Refused(s) | NetError::Codec(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Inner {
    fn record_refusal(&self, msg: String) {
        bump(&self.counters.handshakes_refused);
        let mut r = self.refusals.lock();
        if r.len() == RECENT_REFUSALS {
            r.pop_front();
        }
        r.push_back(msg);
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, from)) => {
                    bump(&self.counters.inbound_accepted);
                    match self.inbound.try_admit(from.ip()) {
                        Some(slot) => {
                            tokio::spawn(self.clone().serve_inbound(stream, from, slot));
                        }
                        None => {
                            bump(&self.counters.inbound_rejected);
                            debug!(node = %self.ident.node_id, %from, "too many inbound peer connections; closing");
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    // E.g. out of file descriptors: pause instead of spinning.
                    warn!(error = %e, "accepting a peer connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        debug!(node = %self.ident.node_id, "stopped accepting peer connections");
    }

    /// Sends a refusal frame (best effort) after logging and recording it.
    async fn refuse(&self, writer: &mut FrameWriter, refusal: Refusal, peer: &str) {
        let msg = handshake::describe(&refusal, Side::Refuser, peer);
        warn!(node = %self.ident.node_id, "refused peer connection: {msg}");
        self.record_refusal(msg);
        let _ = send_envelope(writer, &Envelope::Refuse(refusal), self.max_frame).await;
    }

    /// Listener side of the handshake. Logs every failure itself; `None` closes the socket.
    async fn accept_handshake(
        &self,
        reader: &mut FrameReader,
        writer: &mut FrameWriter,
        from: SocketAddr,
    ) -> Option<PeerInfo> {
        let hello = match next_envelope(reader).await {
            Ok(Envelope::Hello(h)) => h,
            Ok(other) => {
                let why = format!("expected Hello, got {}", other.kind());
                self.refuse(writer, Refusal::Unexpected(why), &from.to_string())
                    .await;
                return None;
            }
            Err(e) => {
                self.bad_frame(&from.to_string(), &e);
                return None;
            }
        };
        let label = format!("{} (node {}, from {from})", hello.advertise, hello.node_id);
        let nonce = random_nonce();
        let challenge = match handshake::answer_hello(&self.ident, &hello, nonce) {
            Ok(c) => c,
            Err(r) => {
                self.refuse(writer, r, &label).await;
                return None;
            }
        };
        if send_envelope(writer, &Envelope::Challenge(challenge), self.max_frame)
            .await
            .is_err()
        {
            return None;
        }
        match next_envelope(reader).await {
            Ok(Envelope::Auth { proof }) => {
                if let Err(r) = handshake::check_auth(&self.ident, &hello, &nonce, &proof) {
                    self.refuse(writer, r, &label).await;
                    return None;
                }
            }
            Ok(Envelope::Refuse(r)) => {
                let msg = handshake::describe(&r, Side::Refused, &label);
                warn!(node = %self.ident.node_id, "peer refused the handshake: {msg}");
                self.record_refusal(msg);
                return None;
            }
            Ok(other) => {
                let why = format!("expected Auth, got {}", other.kind());
                self.refuse(writer, Refusal::Unexpected(why), &label).await;
                return None;
            }
            Err(e) => {
                self.bad_frame(&label, &e);
                return None;
            }
        }
        send_envelope(writer, &Envelope::Welcome, self.max_frame)
            .await
            .ok()?;
        Some(PeerInfo {
            node_id: hello.node_id,
            peer_addr: hello.advertise,
        })
    }

    fn bad_frame(&self, peer: &str, e: &NetError) {
        match e {
            NetError::Closed => debug!(peer, "peer closed the connection"),
            _ => {
                bump(&self.counters.bad_frame_closes);
                warn!(node = %self.ident.node_id, peer, error = %e, "closing peer connection after a bad frame");
            }
        }
    }

    /// The halves of an accepted connection: as they are, or after a TLS handshake in which
    /// the peer's certificate chained to the CA (bounded by the handshake timeout).
    async fn accept_io(
        &self,
        stream: TcpStream,
        from: SocketAddr,
    ) -> Option<(ReadHalf, WriteHalf)> {
        let Some(tls) = &self.tls else {
            return Some(split_plain(stream));
        };
        let accept = tls.peer_acceptor().accept(stream);
        let outcome = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            r = tokio::time::timeout(self.connect_timeout, accept) => r,
        };
        match outcome {
            Ok(Ok(s)) => Some(split_io(s)),
            Ok(Err(e)) => {
                let msg = format!("TLS handshake with {from} failed: {e}");
                warn!(node = %self.ident.node_id, "refused peer connection: {msg}");
                self.record_refusal(msg);
                None
            }
            Err(_) => {
                warn!(node = %self.ident.node_id, %from, "peer TLS handshake timed out; closing connection");
                None
            }
        }
    }

    /// Serves one inbound connection: handshake, then requests until either side closes.
    async fn serve_inbound(
        self: Arc<Self>,
        stream: TcpStream,
        from: SocketAddr,
        _slot: ConnPermit,
    ) {
        let _ = stream.set_nodelay(true);
        let Some((r, w)) = self.accept_io(stream, from).await else {
            return;
        };
        // Until the peer proves it is a member, only handshake-sized frames.
        let mut reader = FramedRead::new(r, codec(HANDSHAKE_MAX_FRAME_BYTES));
        let mut writer = FramedWrite::new(w, codec(self.max_frame));
        let handshake = tokio::time::timeout(
            self.connect_timeout,
            self.accept_handshake(&mut reader, &mut writer, from),
        );
        let peer = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            hs = handshake => match hs {
                Ok(Some(peer)) => peer,
                Ok(None) => return,
                Err(_) => {
                    warn!(node = %self.ident.node_id, %from, "peer handshake timed out; closing connection");
                    return;
                }
            },
        };
        bump(&self.counters.inbound_authenticated);
        reader.decoder_mut().set_max_frame_length(self.max_frame);
        let label = format!("{} (node {})", peer.peer_addr, peer.node_id);
        debug!(node = %self.ident.node_id, peer = %label, "accepted peer connection");
        // The peer just proved it is up: our own calls to it need not wait out a backoff
        // earned while it was down (it would refuse requests to a node known to be alive).
        for lane in [Lane::Data, Lane::Liveness] {
            if let Some(link) = self.peers.lock().get_mut(&(peer.peer_addr.clone(), lane))
                && matches!(link.state, LinkState::Idle)
            {
                link.backoff.record_success();
                link.last_error = None;
            }
        }

        let cancel = self.shutdown.child_token();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_task = tokio::spawn(write_frames(writer, rx, cancel.clone(), label.clone()));
        let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT_PER_CONN));
        loop {
            let permit = tokio::select! {
                _ = cancel.cancelled() => break,
                p = inflight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let next = tokio::select! {
                _ = cancel.cancelled() => break,
                n = next_envelope(&mut reader) => n,
            };
            match next {
                Ok(Envelope::Ping) => {
                    if let Ok(pong) = frame::encode(&Envelope::Pong, self.max_frame) {
                        drop(permit);
                        let _ = tx.send(pong).await;
                    }
                }
                Ok(Envelope::Request { id, payload }) => {
                    tokio::spawn(self.clone().serve_request(
                        peer.clone(),
                        id,
                        payload.0,
                        tx.clone(),
                        permit,
                    ));
                }
                Ok(other) => {
                    let e = NetError::Codec(format!("unexpected {} frame", other.kind()));
                    self.bad_frame(&label, &e);
                    break;
                }
                Err(e) => {
                    self.bad_frame(&label, &e);
                    break;
                }
            }
        }
        cancel.cancel();
        let _ = writer_task.await;
    }

    /// Runs the handler for one request on this request's task and queues the response. A
    /// panic is caught here and answered as a failure: the connection and its other requests
    /// carry on. (A second task per request only to contain a panic cost a spawn and a
    /// wake-up on every peer request.)
    async fn serve_request(
        self: Arc<Self>,
        peer: PeerInfo,
        id: u64,
        request: Bytes,
        tx: mpsc::Sender<Bytes>,
        _permit: OwnedSemaphorePermit,
    ) {
        let handler = self.handler.read().clone();
        let result = match handler {
            None => Err("node is starting: no request handler is attached yet".to_string()),
            Some(h) => {
                let from = peer.clone();
                match AssertUnwindSafe(h.handle(from, request))
                    .catch_unwind()
                    .await
                {
                    Ok(resp) => Ok(Payload(resp)),
                    Err(_) => {
                        bump(&self.counters.handler_panics);
                        error!(node = %self.ident.node_id, peer = %peer.node_id, "request handler panicked");
                        Err("request handler panicked".to_string())
                    }
                }
            }
        };
        let frame = match frame::encode(&Envelope::Response { id, result }, self.max_frame) {
            Ok(f) => f,
            Err(e) => {
                warn!(node = %self.ident.node_id, peer = %peer.node_id, error = %e, "response cannot be sent");
                let fallback = Envelope::Response {
                    id,
                    result: Err(format!("response cannot be sent: {e}")),
                };
                match frame::encode(&fallback, self.max_frame) {
                    Ok(f) => f,
                    Err(_) => return,
                }
            }
        };
        let _ = tx.send(frame).await;
    }

    /// The open connection to `to`, dialling if needed; fails fast while in backoff.
    async fn connection(self: &Arc<Self>, to: &str, lane: Lane) -> Result<Arc<OutConn>, NetError> {
        let dial = {
            let mut peers = self.peers.lock();
            let link = peers.entry((to.to_string(), lane)).or_default();
            match &link.state {
                LinkState::Up(c) if c.is_open() => return Ok(c.clone()),
                LinkState::Connecting(d) => d.clone(),
                _ => {
                    let now = Instant::now();
                    if !link.backoff.may_dial(now) {
                        let wait = link.backoff.remaining(now);
                        return Err(match &link.last_error {
                            Some(NetError::Refused(r)) => NetError::Refused(r.clone()),
                            Some(e) => NetError::Unreachable(format!(
                                "{}; next attempt in {wait:?}",
                                reason(e)
                            )),
                            None => NetError::Unreachable(format!(
                                "{to} is down; next attempt in {wait:?}"
                            )),
                        });
                    }
                    let d = self.clone().start_dial(to.to_string(), lane);
                    link.state = LinkState::Connecting(d.clone());
                    d
                }
            }
        };
        dial.await
    }

    /// Dials in a task of its own, so the outcome is recorded even if every waiting caller
    /// times out first.
    fn start_dial(self: Arc<Self>, addr: String, lane: Lane) -> SharedDial {
        let task = tokio::spawn(async move {
            let res = self.dial(&addr).await;
            let mut peers = self.peers.lock();
            if let Some(link) = peers.get_mut(&(addr, lane)) {
                match &res {
                    Ok(c) => {
                        link.backoff.record_success();
                        link.last_error = None;
                        link.state = LinkState::Up(c.clone());
                    }
                    Err(e) => {
                        if *e != NetError::ShuttingDown {
                            link.backoff.record_failure(Instant::now());
                        }
                        link.last_error = Some(e.clone());
                        link.state = LinkState::Idle;
                    }
                }
            }
            res
        });
        async move {
            task.await
                .unwrap_or_else(|_| Err(NetError::Unreachable("dial task failed".to_string())))
        }
        .boxed()
        .shared()
    }

    async fn dial(self: &Arc<Self>, addr: &str) -> Result<Arc<OutConn>, NetError> {
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| NetError::Unreachable(format!("cannot connect to {addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (r, w) = match &self.tls {
                None => split_plain(stream),
                Some(tls) => {
                    let name = super::tls::server_name(addr).map_err(NetError::Refused)?;
                    let s = tls
                        .peer_connector()
                        .connect(name, stream)
                        .await
                        .map_err(|e| {
                            let msg = format!("TLS handshake with {addr} failed: {e}");
                            warn!(node = %self.ident.node_id, "peer refused: {msg}");
                            self.record_refusal(msg.clone());
                            NetError::Refused(msg)
                        })?;
                    split_io(s)
                }
            };
            // The listener is not authenticated until it answers the challenge either.
            let mut reader = FramedRead::new(r, codec(HANDSHAKE_MAX_FRAME_BYTES));
            let mut writer = FramedWrite::new(w, codec(self.max_frame));
            let peer = self.dial_handshake(addr, &mut reader, &mut writer).await?;
            reader.decoder_mut().set_max_frame_length(self.max_frame);
            Ok::<_, NetError>((peer, reader, writer))
        };
        let limit = self.connect_timeout;
        let (peer, reader, writer) = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(NetError::ShuttingDown),
            r = tokio::time::timeout(limit, connect) => match r {
                Ok(r) => r?,
                Err(_) => {
                    return Err(NetError::Unreachable(format!(
                        "connecting to {addr} timed out after {limit:?}"
                    )));
                }
            },
        };
        bump(&self.counters.outbound_connected);
        debug!(node = %self.ident.node_id, peer = addr, remote = %peer.node_id, "connected to peer");
        Ok(OutConn::start(
            &self.shutdown,
            self.max_frame,
            peer,
            reader,
            writer,
        ))
    }

    /// Dialler side of the handshake.
    async fn dial_handshake(
        &self,
        addr: &str,
        reader: &mut FrameReader,
        writer: &mut FrameWriter,
    ) -> Result<PeerInfo, NetError> {
        let nonce = random_nonce();
        let hello = handshake::hello(&self.ident, nonce);
        send_envelope(writer, &Envelope::Hello(hello), self.max_frame).await?;
        let challenge = match next_envelope(reader).await? {
            Envelope::Challenge(c) => c,
            Envelope::Refuse(r) => return Err(self.refused_by_peer(&r, addr)),
            other => {
                return Err(NetError::Codec(format!(
                    "peer {addr} answered Hello with {}",
                    other.kind()
                )));
            }
        };
        let proof = match handshake::answer_challenge(&self.ident, &nonce, &challenge) {
            Ok(p) => p,
            Err(r) => {
                let msg = handshake::describe(&r, Side::Refuser, addr);
                warn!(node = %self.ident.node_id, "refused peer connection: {msg}");
                self.record_refusal(msg.clone());
                let _ = send_envelope(writer, &Envelope::Refuse(r), self.max_frame).await;
                return Err(NetError::Refused(msg));
            }
        };
        send_envelope(writer, &Envelope::Auth { proof }, self.max_frame).await?;
        match next_envelope(reader).await? {
            Envelope::Welcome => Ok(PeerInfo {
                node_id: challenge.node_id,
                peer_addr: addr.to_string(),
            }),
            Envelope::Refuse(r) => Err(self.refused_by_peer(&r, addr)),
            other => Err(NetError::Codec(format!(
                "peer {addr} answered Auth with {}",
                other.kind()
            ))),
        }
    }

    fn refused_by_peer(&self, r: &Refusal, addr: &str) -> NetError {
        let msg = handshake::describe(r, Side::Refused, addr);
        warn!(node = %self.ident.node_id, "peer refused the handshake: {msg}");
        self.record_refusal(msg.clone());
        NetError::Refused(msg)
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
