//! One authenticated peer connection: framing functions, the writer task, and the outbound
//! side that multiplexes many requests by id over one socket.

use super::NetError;
use super::PeerInfo;
use super::frame::{self, Envelope, Payload};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The read half of a peer connection: plain TCP or TLS.
pub(super) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a peer connection: plain TCP or TLS.
pub(super) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;
pub(super) type FrameReader = FramedRead<ReadHalf, LengthDelimitedCodec>;
pub(super) type FrameWriter = FramedWrite<WriteHalf, LengthDelimitedCodec>;

/// Splits a connection into boxed halves (TLS streams split through a lock, TCP without).
pub(super) fn split_plain(stream: tokio::net::TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

pub(super) fn split_io<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (Box::new(r), Box::new(w))
}

/// Frames queued for a connection's writer task.
pub(super) const WRITE_QUEUE: usize = 1024;
/// Frames written before one flush when many are queued.
const WRITE_BATCH: usize = 64;
/// Bytes of queued frames buffered before a write to the socket.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

pub(super) fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .new_codec()
}

/// Reads the next envelope; `Closed` at end of stream, `Codec` for a bad or oversized frame.
pub(super) async fn next_envelope(reader: &mut FrameReader) -> Result<Envelope, NetError> {
    match reader.next().await {
        None => Err(NetError::Closed),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(NetError::Codec(e.to_string()))
        }
        Some(Err(_)) => Err(NetError::Closed),
        Some(Ok(buf)) => frame::decode(&buf),
    }
}

pub(super) async fn send_envelope(
    writer: &mut FrameWriter,
    env: &Envelope,
    max_frame: usize,
) -> Result<(), NetError> {
    let buf = frame::encode(env, max_frame)?;
    SinkExt::<Bytes>::send(writer, buf)
        .await
        .map_err(|_| NetError::Closed)
}

/// Drains a connection's outgoing queue into the socket, batching flushes. Cancelling the
/// token (or a write error) ends it and cancels the token so the reader side stops too.
pub(super) async fn write_frames(
    mut writer: FrameWriter,
    mut rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
    label: String,
) {
    // A batch is written in one go up to this size (the codec's default flushes every 8 KiB).
    writer.set_backpressure_boundary(WRITE_BUFFER_BYTES);
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        let write = async {
            // Let the tasks that are ready to run queue their frames first, so one write
            // carries them all. Without this the woken writer runs straight after the task
            // that queued one frame (tokio runs a freshly woken task next) and every frame
            // cost a syscall and a wake-up of the peer's reader (BENCHMARKS.md, "GET r=2").
            tokio::task::yield_now().await;
            SinkExt::<Bytes>::feed(&mut writer, first).await?;
            for _ in 1..WRITE_BATCH {
                match rx.try_recv() {
                    Ok(f) => SinkExt::<Bytes>::feed(&mut writer, f).await?,
                    Err(_) => break,
                }
            }
            SinkExt::<Bytes>::flush(&mut writer).await
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => break,
            r = write => r,
        };
        if let Err(e) = result {
            debug!(peer = %label, error = %e, "write to peer failed; closing connection");
            break;
        }
    }
    cancel.cancel();
}

/// Calls in flight on one outbound connection.
pub(super) struct Pending {
    pub(super) calls: HashMap<u64, oneshot::Sender<Result<Bytes, NetError>>>,
    /// Set once the connection is closed; later calls fail with it at once.
    closed: Option<NetError>,
}

/// One authenticated outbound connection multiplexing many requests by id.
pub(super) struct OutConn {
    peer: PeerInfo,
    frames: mpsc::Sender<Bytes>,
    pub(super) pending: Mutex<Pending>,
    next_id: AtomicU64,
    cancel: CancellationToken,
    max_frame: usize,
    label: String,
    /// Frames received so far; a probe compares it before and after waiting.
    received: AtomicU64,
    probing: AtomicBool,
}

/// Removes a call's pending entry however the call ends (response, timeout, cancellation).
struct PendingGuard<'a> {
    conn: &'a OutConn,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.pending.lock().calls.remove(&self.id);
    }
}

impl OutConn {
    /// Starts the reader and writer tasks of a freshly authenticated connection. `root` is
    /// the transport's shutdown token.
    pub(super) fn start(
        root: &CancellationToken,
        max_frame: usize,
        peer: PeerInfo,
        reader: FrameReader,
        writer: FrameWriter,
    ) -> Arc<OutConn> {
        let cancel = root.child_token();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let label = format!("{} (node {})", peer.peer_addr, peer.node_id);
        let conn = Arc::new(OutConn {
            peer,
            frames: tx,
            pending: Mutex::new(Pending {
                calls: HashMap::new(),
                closed: None,
            }),
            next_id: AtomicU64::new(1),
            cancel: cancel.clone(),
            max_frame,
            label: label.clone(),
            received: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        });
        tokio::spawn(write_frames(writer, rx, cancel, label.clone()));
        tokio::spawn(conn.clone().read_responses(reader, root.clone(), label));
        conn
    }

    pub(super) fn is_open(&self) -> bool {
        !self.cancel.is_cancelled()
    }

    /// Closes the connection and fails every pending call with `why`.
    pub(super) fn close(&self, why: NetError) {
        self.cancel.cancel();
        let calls = {
            let mut p = self.pending.lock();
            if p.closed.is_none() {
                p.closed = Some(why.clone());
            }
            std::mem::take(&mut p.calls)
        };
        for (_, tx) in calls {
            let _ = tx.send(Err(why.clone()));
        }
    }

    /// After a call timed out: sends a Ping and closes the connection if nothing at all
    /// arrives within `grace`. A peer that vanished without closing its socket (power loss,
    /// a firewall dropping packets) would otherwise keep every later call timing out on a
    /// dead connection instead of failing fast and redialling. A live but busy peer answers
    /// the Ping at once, so its slow requests keep running.
    pub(super) fn probe(self: &Arc<Self>, grace: Duration) {
        if !self.is_open() || self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let conn = self.clone();
        tokio::spawn(async move {
            let before = conn.received.load(Ordering::Relaxed);
            if let Ok(ping) = frame::encode(&Envelope::Ping, conn.max_frame) {
                let _ = conn.frames.try_send(ping);
            }
            tokio::select! {
                _ = conn.cancel.cancelled() => return,
                _ = tokio::time::sleep(grace) => {}
            }
            if conn.received.load(Ordering::Relaxed) == before {
                warn!(peer = %conn.label, "peer silent for {grace:?} after a timed-out call; closing connection");
                conn.close(NetError::Closed);
            }
            conn.probing.store(false, Ordering::Release);
        });
    }

    fn closed_reason(&self) -> NetError {
        self.pending
            .lock()
            .closed
            .clone()
            .unwrap_or(NetError::Closed)
    }

    async fn read_responses(
        self: Arc<Self>,
        mut reader: FrameReader,
        root: CancellationToken,
        label: String,
    ) {
        let why = loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => {
                    break if root.is_cancelled() { NetError::ShuttingDown } else { NetError::Closed };
                }
                n = next_envelope(&mut reader) => n,
            };
            if next.is_ok() {
                self.received.fetch_add(1, Ordering::Relaxed);
            }
            match next {
                Ok(Envelope::Pong) => {}
                Ok(Envelope::Response { id, result }) => {
                    let tx = self.pending.lock().calls.remove(&id);
                    if let Some(tx) = tx {
                        let _ = tx.send(result.map(|p| p.0).map_err(NetError::Remote));
                    }
                }
                Ok(other) => {
                    warn!(peer = %label, "closing connection: peer sent an unexpected {} frame", other.kind());
                    break NetError::Closed;
                }
                Err(NetError::Closed) => {
                    debug!(peer = %label, "peer closed the connection");
                    break NetError::Closed;
                }
                Err(e) => {
                    warn!(peer = %label, error = %e, "closing connection after a bad frame");
                    break NetError::Closed;
                }
            }
        };
        self.close(why);
    }

    pub(super) async fn call(&self, request: Bytes) -> Result<Bytes, NetError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = frame::encode(
            &Envelope::Request {
                id,
                payload: Payload(request),
            },
            self.max_frame,
        )?;
        let rx = {
            let mut p = self.pending.lock();
            if let Some(e) = &p.closed {
                return Err(e.clone());
            }
            let (tx, rx) = oneshot::channel();
            p.calls.insert(id, tx);
            rx
        };
        let _guard = PendingGuard { conn: self, id };
        if self.frames.send(frame).await.is_err() {
            return Err(self.closed_reason());
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.closed_reason()),
        }
    }
}

impl std::fmt::Debug for OutConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutConn")
            .field("peer", &self.peer)
            .field("open", &self.is_open())
            .finish()
    }
}
