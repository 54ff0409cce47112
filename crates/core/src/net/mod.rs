//! Inter-node transport: moves opaque request/response payloads between RiftKV nodes.
//!
//! Higher layers serialize their own message enums into `Bytes`; this module only frames,
//! authenticates and multiplexes them. Two implementations share the [`Transport`] seam:
//!
//! - [`TcpTransport`]: length-delimited frames over TCP, one multiplexed outbound connection
//!   per peer, a challenge-response handshake under the cluster secret.
//! - [`SimNetwork`] / [`SimTransport`]: an in-process network with seeded fault filters
//!   (partition, isolate, drop, delay, kill) for reproducible cluster tests. Compiled only
//!   for tests and with the `testkit` feature: a product build has no fault filters.

pub mod backoff;
mod conn;
pub mod frame;
pub mod handshake;
pub mod limit;
#[cfg(any(test, feature = "testkit"))]
pub mod sim;
pub mod tcp;
pub mod tls;

use crate::types::NodeId;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(any(test, feature = "testkit"))]
pub use sim::{SimNetwork, SimTransport};
pub use tcp::{NetStats, TcpTransport};

/// Version of the inter-node wire protocol; peers speaking another version are refused.
/// 2: objects carry write identities (object encoding 2), reaping carries the ring version.
/// 3: each subsystem owns an endpoint (anti-entropy and forwarded writes got their own),
///    replicas answer with typed errors.
/// 4: forwarded writes carry typed quorum values and the decoded causal context; the ring
///    state carries each bucket's props as JSON (later props need no new version), and a
///    forwarded write may be a data type update; versions carry an optional expiry (object
///    encoding 3) and forwarded writes their TTL.
/// 5: pings and their answers carry the sender's wall clock (cluster time for expiry); the
///    ring state carries the security state (users, token hashes, grants) as JSON.
/// 6: the ring state's pending plan says whether it is staged (waits for an operator's commit).
pub const PROTOCOL_VERSION: u32 = 6;

/// Default bound on one frame; larger frames close the connection that sent them.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Default bound on TCP connect plus handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Frame bound before a peer has authenticated: a handshake message is a few hundred bytes, so
/// a stranger cannot make the node buffer up to the full frame bound per connection.
pub const HANDSHAKE_MAX_FRAME_BYTES: usize = 16 * 1024;

/// Default bound on inbound peer connections from one IP address (a member keeps one, plus
/// a few while it redials; a whole cluster on one host's loopback stays far below).
pub const DEFAULT_MAX_INBOUND_PER_IP: usize = 64;

/// Default bound on inbound peer connections in total.
pub const DEFAULT_MAX_INBOUND_TOTAL: usize = 1024;

/// Who sent a request: known only after the peer proved knowledge of the cluster secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerInfo {
    pub node_id: NodeId,
    /// The peer's advertised inter-node address, usable with [`Transport::call`].
    pub peer_addr: String,
}

/// Serves requests arriving from other nodes.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one request from an authenticated peer and returns the response payload.
    async fn handle(&self, from: PeerInfo, request: Bytes) -> Bytes;
}

/// Which connection to a peer a call travels on. Liveness traffic (heartbeats, going-down
/// notices) has a lane of its own, so it never waits behind data traffic in a socket, a
/// write queue or an in-flight bound: a heartbeat that queues behind load makes a busy peer
/// look dead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lane {
    #[default]
    Data,
    Liveness,
}

/// Sends requests to other nodes, addressed by their peer address string.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` to the node at `to` and waits at most `timeout` for its response.
    async fn call(&self, to: &str, request: Bytes, timeout: Duration) -> Result<Bytes, NetError>;
    /// As [`Transport::call`], on the given lane. A transport without lanes (the in-process
    /// one) sends everything the same way.
    async fn call_on(
        &self,
        lane: Lane,
        to: &str,
        request: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        let _ = lane;
        self.call(to, request, timeout).await
    }
    /// The address other nodes use to reach this one.
    fn local_addr(&self) -> String;
}

/// Everything a transport needs to know about the local node and its cluster.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub node_id: NodeId,
    pub cluster_name: String,
    /// Shared by every member; proves membership during the handshake.
    pub cluster_secret: Vec<u8>,
    pub listen: SocketAddr,
    /// The address announced to peers (what they will dial back).
    pub advertise: String,
    pub max_frame_bytes: usize,
    pub connect_timeout: Duration,
    /// Inbound connections accepted from one IP address at once; more are closed at accept.
    pub max_inbound_per_ip: usize,
    /// Inbound connections accepted at once in total.
    pub max_inbound_total: usize,
    /// Mutual TLS around every peer connection (the HMAC handshake then runs inside it).
    pub tls: Option<Arc<tls::Tls>>,
}

impl NetConfig {
    /// A config with default frame bound and connect timeout; `advertise` is the listen address.
    pub fn new(
        node_id: NodeId,
        cluster_name: impl Into<String>,
        cluster_secret: impl Into<Vec<u8>>,
        listen: SocketAddr,
    ) -> NetConfig {
        NetConfig {
            node_id,
            cluster_name: cluster_name.into(),
            cluster_secret: cluster_secret.into(),
            listen,
            advertise: listen.to_string(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_inbound_per_ip: DEFAULT_MAX_INBOUND_PER_IP,
            max_inbound_total: DEFAULT_MAX_INBOUND_TOTAL,
            tls: None,
        }
    }
}

/// Failures of the transport layer. Cloneable so one connection failure can fail many calls.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    #[error("request timed out")]
    Timeout,
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The handshake was refused: other cluster, failed authentication, or protocol version.
    #[error("handshake refused: {0}")]
    Refused(String),
    #[error("connection closed")]
    Closed,
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("codec error: {0}")]
    Codec(String),
    /// The peer received the request but could not produce a response.
    #[error("remote error: {0}")]
    Remote(String),
    #[error("transport is shutting down")]
    ShuttingDown,
    /// The listener could not be bound (address in use, no permission, ...).
    #[error("cannot listen: {0}")]
    Bind(String),
}

impl NetError {
    /// True when the request may not have reached the peer's handler at all, so trying
    /// another node (or the same one later) cannot duplicate an effect already applied.
    /// Timeouts, closed connections and shutdowns are ambiguous and return false.
    pub fn never_delivered(&self) -> bool {
        matches!(
            self,
            NetError::Unreachable(_) | NetError::Refused(_) | NetError::FrameTooLarge { .. }
        )
    }

    /// True when the failure says the peer itself is down or refuses us, so the failure
    /// detector may suspect it. A frame too large to send is a local encoding failure: it
    /// says nothing about the peer, and suspecting a healthy peer for it would route traffic
    /// around the peer and fail `pr`/`pw` requests.
    pub fn says_peer_down(&self) -> bool {
        matches!(self, NetError::Unreachable(_) | NetError::Refused(_))
    }
}
