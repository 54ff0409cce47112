//! Tests of the TCP transport over 127.0.0.1.

use super::*;
use crate::net::Lane;
use crate::types::NodeId;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const CALL: Duration = Duration::from_secs(5);

/// Echoes `node@addr:` + payload. `slow:<ms>:...` sleeps first; `panic` panics.
#[derive(Default)]
struct TestHandler {
    calls: AtomicU64,
}

#[async_trait::async_trait]
impl Handler for TestHandler {
    async fn handle(&self, from: PeerInfo, request: Bytes) -> Bytes {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = String::from_utf8_lossy(&request).to_string();
        if text == "panic" {
            panic!("test handler asked to panic");
        }
        if let Some(rest) = text.strip_prefix("slow:") {
            let ms: u64 = rest.split(':').next().unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Bytes::from(format!("{}@{}:{}", from.node_id, from.peer_addr, text))
    }
}

fn config(id: &str, cluster: &str, secret: &[u8]) -> NetConfig {
    let mut c = NetConfig::new(
        NodeId::new(id),
        cluster,
        secret.to_vec(),
        "127.0.0.1:0".parse().unwrap(),
    );
    c.connect_timeout = Duration::from_secs(1);
    c
}

async fn start(cfg: NetConfig) -> (Arc<TcpTransport>, Arc<TestHandler>) {
    let t = TcpTransport::bind(cfg).await.unwrap();
    let h = Arc::new(TestHandler::default());
    t.set_handler(h.clone());
    (t, h)
}

async fn node(id: &str) -> (Arc<TcpTransport>, Arc<TestHandler>) {
    start(config(id, "riftkv", b"secret")).await
}

/// As [`node`], with the config adjusted by `tweak` first (timeouts, limits, address).
async fn node_with(
    id: &str,
    tweak: impl FnOnce(&mut NetConfig),
) -> (Arc<TcpTransport>, Arc<TestHandler>) {
    let mut cfg = config(id, "riftkv", b"secret");
    tweak(&mut cfg);
    start(cfg).await
}

/// Nodes "a" and "b", b's handler and b's address: most tests call from a to b.
async fn pair() -> (
    Arc<TcpTransport>,
    Arc<TcpTransport>,
    Arc<TestHandler>,
    String,
) {
    let (a, _) = node("a").await;
    let (srv, h) = node("b").await;
    let to = srv.local_addr();
    (a, srv, h, to)
}

/// Shuts the nodes down in order, so a test leaves no listener or task behind.
async fn shutdown_all(nodes: &[&Arc<TcpTransport>]) {
    for t in nodes {
        t.shutdown().await;
    }
}

/// The identity a hand-driven peer of cluster "riftkv" presents.
fn identity(id: &str, secret: &[u8]) -> Identity {
    Identity {
        node_id: NodeId::new(id),
        cluster_name: "riftkv".into(),
        secret: secret.to_vec(),
        advertise: "127.0.0.1:1".into(),
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test exceeded its time bound")
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

/// Writes `bytes` on a fresh raw connection to `to` and expects the server to close it.
async fn raw_write_is_closed(to: &str, bytes: &[u8]) {
    let mut raw = TcpStream::connect(to).await.unwrap();
    raw.write_all(bytes).await.unwrap();
    expect_closed(&mut raw).await;
}

/// Expects the server to close a raw connection (EOF or reset) without answering.
async fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("server answered {n} bytes instead of closing"),
        Err(_) => panic!("server kept the connection open"),
    }
}

/// A hand-driven dialler, to send what a well-behaved node never would.
async fn raw_handshake(
    addr: &str,
    id: &str,
    secret: &[u8],
    forge_auth: bool,
) -> (Framed<TcpStream, LengthDelimitedCodec>, Envelope) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut framed = Framed::new(stream, codec(1 << 20));
    let me = identity(id, secret);
    let nonce = [3u8; 32];
    let hello = frame::encode(&Envelope::Hello(handshake::hello(&me, nonce)), 1 << 20);
    framed.send(hello.unwrap()).await.unwrap();
    let ch = match frame::decode(&framed.next().await.unwrap().unwrap()).unwrap() {
        Envelope::Challenge(c) => c,
        other => panic!("expected Challenge, got {other:?}"),
    };
    let proof = if forge_auth {
        [0u8; 32]
    } else {
        handshake::answer_challenge(&me, &nonce, &ch).unwrap()
    };
    let auth = frame::encode(&Envelope::Auth { proof }, 1 << 20).unwrap();
    framed.send(auth).await.unwrap();
    let answer = frame::decode(&framed.next().await.unwrap().unwrap()).unwrap();
    (framed, answer)
}

#[tokio::test]
async fn request_response_round_trip_names_the_caller() {
    bounded(async {
        let (a, b_node, h, to) = pair().await;
        let resp = a.call(&to, b("ping"), CALL).await.unwrap();
        assert_eq!(resp, format!("a@{}:ping", a.local_addr()));
        assert_eq!(h.calls.load(Ordering::SeqCst), 1);
        assert_eq!(a.connected_peers(), vec![to]);
        // Both directions work; each side dials its own connection.
        let back = b_node.call(&a.local_addr(), b("pong"), CALL).await.unwrap();
        assert_eq!(back, format!("b@{}:pong", b_node.local_addr()));
        shutdown_all(&[&a, &b_node]).await;
    })
    .await;
}

#[tokio::test]
async fn two_hundred_concurrent_requests_share_one_connection() {
    bounded(async {
        let (a, srv, h, to) = pair().await;
        let started = Instant::now();
        let calls = (0..200).map(|i| {
            let a = a.clone();
            let to = to.clone();
            async move {
                // Varying delays make responses come back out of order.
                let req = format!("slow:{}:{i}", 100 + (i * 7) % 50);
                let resp = a.call(&to, b(&req), CALL).await.unwrap();
                (req, resp)
            }
        });
        let results = futures::future::join_all(calls).await;
        let elapsed = started.elapsed();
        for (req, resp) in &results {
            assert_eq!(*resp, format!("a@{}:{req}", a.local_addr()));
        }
        assert_eq!(h.calls.load(Ordering::SeqCst), 200);
        // Serially this would take over 20 s: the handler calls overlapped.
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        assert_eq!(a.stats().outbound_connected, 1);
        assert_eq!(srv.stats().inbound_authenticated, 1);
        assert_eq!(a.pending_calls(), 0);
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

#[tokio::test]
async fn a_slow_response_times_out_and_frees_its_slot() {
    bounded(async {
        let (a, _) = node_with("a", |c| c.connect_timeout = Duration::from_millis(200)).await;
        let (srv, _) = node("b").await;
        let to = srv.local_addr();
        a.call(&to, b("warm"), CALL).await.unwrap();
        let t0 = Instant::now();
        let r = a
            .call(&to, b("slow:3000:x"), Duration::from_millis(150))
            .await;
        assert_eq!(r, Err(NetError::Timeout));
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(a.pending_calls(), 0);
        // The timeout triggered a liveness probe; the busy but live peer answers it, so
        // the connection survives the probe's grace period and serves other requests.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(a.connected_peers(), vec![to.clone()]);
        assert!(a.call(&to, b("after"), CALL).await.is_ok());
        assert_eq!(a.stats().outbound_connected, 1);
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

/// A listener that completes the handshake and then never reads or writes again, like a
/// peer whose host vanished without closing its sockets. Returns its address and a count
/// of accepted connections.
async fn silent_peer() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let me = identity("silent", b"secret");
        let mut held = Vec::new();
        for _ in 0..5 {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let mut f = Framed::new(stream, codec(1 << 20));
            let Ok(Envelope::Hello(h)) = frame::decode(&f.next().await.unwrap().unwrap()) else {
                panic!("expected Hello");
            };
            let nonce = [4u8; 32];
            let ch = handshake::answer_hello(&me, &h, nonce).unwrap();
            let ch = frame::encode(&Envelope::Challenge(ch), 1 << 20).unwrap();
            f.send(ch).await.unwrap();
            let Ok(Envelope::Auth { proof }) = frame::decode(&f.next().await.unwrap().unwrap())
            else {
                panic!("expected Auth");
            };
            handshake::check_auth(&me, &h, &nonce, &proof).unwrap();
            f.send(frame::encode(&Envelope::Welcome, 64).unwrap())
                .await
                .unwrap();
            held.push(f);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_silent_connection_is_dropped_and_redialled() {
    bounded(async {
        let (a, _) = node_with("a", |c| c.connect_timeout = Duration::from_millis(200)).await;
        let (to, accepted) = silent_peer().await;
        let r = a.call(&to, b("x"), Duration::from_millis(100)).await;
        assert_eq!(r, Err(NetError::Timeout));
        assert_eq!(a.connected_peers(), vec![to.clone()]);
        // The Ping goes unanswered: the connection is closed after the grace period.
        eventually(|| a.connected_peers().is_empty().then_some(())).await;
        let r = a.call(&to, b("x"), Duration::from_millis(100)).await;
        assert_eq!(r, Err(NetError::Timeout));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        a.shutdown().await;
    })
    .await;
}

/// An address a node listened on and released: nothing listens there now.
async fn free_address() -> std::net::SocketAddr {
    let (tmp, _) = node("b").await;
    let listen = tmp.listen_addr();
    tmp.shutdown().await;
    listen
}

#[tokio::test]
async fn peer_down_is_unreachable_with_backoff_then_reconnects() {
    bounded(async {
        let (a, _) = node("a").await;
        let listen = free_address().await;
        let to = listen.to_string();

        let r = a.call(&to, b("x"), CALL).await;
        assert!(matches!(r, Err(NetError::Unreachable(_))), "{r:?}");
        // In backoff: fails fast without dialling.
        let t0 = Instant::now();
        let r = a.call(&to, b("x"), CALL).await;
        match r {
            Err(NetError::Unreachable(m)) => assert!(m.contains("next attempt"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_millis(100));

        // The peer comes up on the same address: calls succeed again after the pause.
        let (srv, _) = node_with("b", |c| c.listen = listen).await;
        let ok = retry_until_ok(&a, &to).await;
        assert_eq!(ok, format!("a@{}:x", a.local_addr()));

        // It dies: calls fail, then it returns and the connection is re-established.
        srv.shutdown().await;
        drop(srv);
        let mut saw_unreachable = false;
        for _ in 0..20 {
            match a.call(&to, b("x"), CALL).await {
                Err(NetError::Unreachable(_)) => {
                    saw_unreachable = true;
                    break;
                }
                Err(NetError::Closed) => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(saw_unreachable);
        let (srv, _) = node_with("b", |c| c.listen = listen).await;
        retry_until_ok(&a, &to).await;
        assert_eq!(a.stats().outbound_connected, 2);
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

/// Polls `f` (bounded: 200 tries, 10 ms apart) until it yields a value.
async fn eventually<T>(f: impl Fn() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

/// Waits until `t` has recorded a refusal: the refused side learns it after the call returns.
async fn refusals_of(t: &TcpTransport) -> Vec<String> {
    eventually(|| {
        let r = t.recent_refusals();
        (!r.is_empty()).then_some(r)
    })
    .await
}

async fn retry_until_ok(a: &TcpTransport, to: &str) -> Bytes {
    for _ in 0..100 {
        match a.call(to, b("x"), CALL).await {
            Ok(r) => return r,
            Err(NetError::Unreachable(_)) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    panic!("peer never became reachable");
}

#[tokio::test]
async fn other_cluster_is_refused_with_a_clear_reason_on_both_sides() {
    bounded(async {
        let (a, ha) = start(config("a", "riftkv", b"secret")).await;
        let (o, ho) = start(config("o", "other", b"secret")).await;
        let r = a.call(&o.local_addr(), b("x"), CALL).await;
        let expected = format!(
            "peer {} belongs to cluster 'other', not 'riftkv'",
            o.local_addr()
        );
        assert_eq!(r, Err(NetError::Refused(expected.clone())));
        // The listener logged and recorded it, worded from its own side.
        let theirs = refusals_of(&o).await;
        assert_eq!(theirs.len(), 1);
        assert!(
            theirs[0].starts_with(&format!("peer {} (node a", a.local_addr())),
            "{theirs:?}"
        );
        assert!(
            theirs[0].ends_with("belongs to cluster 'riftkv', not 'other'"),
            "{theirs:?}"
        );
        assert_eq!(a.recent_refusals(), vec![expected.clone()]);
        // A refused peer is not redialled at once; the reason stays the same.
        assert_eq!(
            a.call(&o.local_addr(), b("x"), CALL).await,
            Err(NetError::Refused(expected))
        );
        // And the other way round.
        let r = o.call(&a.local_addr(), b("x"), CALL).await;
        assert_eq!(
            r,
            Err(NetError::Refused(format!(
                "peer {} belongs to cluster 'riftkv', not 'other'",
                a.local_addr()
            )))
        );
        assert_eq!(ha.calls.load(Ordering::SeqCst), 0);
        assert_eq!(ho.calls.load(Ordering::SeqCst), 0);
        shutdown_all(&[&a, &o]).await;
    })
    .await;
}

#[tokio::test]
async fn wrong_secret_is_refused() {
    bounded(async {
        let (a, _) = start(config("a", "riftkv", b"right")).await;
        let (srv, h) = start(config("b", "riftkv", b"wrong")).await;
        match a.call(&srv.local_addr(), b("x"), CALL).await {
            Err(NetError::Refused(m)) => {
                assert!(m.contains("failed authentication"), "{m}");
                assert!(m.contains(&srv.local_addr()), "{m}");
            }
            other => panic!("{other:?}"),
        }
        // The dialler refused first; the listener learns it from the Refuse frame.
        let theirs = refusals_of(&srv).await;
        assert_eq!(theirs.len(), 1);
        assert!(theirs[0].contains("cluster secrets differ"), "{theirs:?}");
        assert_eq!(h.calls.load(Ordering::SeqCst), 0);
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

#[tokio::test]
async fn listener_refuses_a_forged_proof() {
    bounded(async {
        let (srv, h) = node("b").await;
        let (mut conn, answer) = raw_handshake(&srv.local_addr(), "intruder", b"guess", true).await;
        assert_eq!(answer, Envelope::Refuse(Refusal::BadProof));
        assert!(conn.next().await.is_none(), "connection should be closed");
        assert!(srv.recent_refusals()[0].contains("failed authentication"));
        assert_eq!(h.calls.load(Ordering::SeqCst), 0);
        srv.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_and_huge_frames_close_only_their_connection() {
    bounded(async {
        let (a, srv, _, to) = pair().await;
        a.call(&to, b("before"), CALL).await.unwrap();

        // A frame whose content is not an envelope.
        raw_write_is_closed(&to, b"\x00\x00\x00\x05hello").await;

        // A header announcing 1 GiB.
        raw_write_is_closed(&to, &(1u32 << 30).to_be_bytes()).await;

        // Plain text (an HTTP request) reads as an absurd length.
        raw_write_is_closed(&to, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;

        // An authenticated peer that then sends garbage is cut off too.
        let (mut conn, answer) = raw_handshake(&to, "c", b"secret", false).await;
        assert_eq!(answer, Envelope::Welcome);
        conn.send(Bytes::from_static(&[0xff, 0xff, 0xff]))
            .await
            .unwrap();
        assert!(conn.next().await.is_none(), "connection should be closed");

        assert_eq!(srv.stats().bad_frame_closes, 4);
        // The established connection and new ones still work.
        assert!(a.call(&to, b("after"), CALL).await.is_ok());
        let (c, _) = node("c").await;
        assert!(c.call(&to, b("new"), CALL).await.is_ok());
        shutdown_all(&[&a, &c, &srv]).await;
    })
    .await;
}

#[tokio::test]
async fn oversized_requests_fail_without_harming_the_node() {
    bounded(async {
        let (a, _) = node_with("a", |c| c.max_frame_bytes = 1024).await;
        let (small, _) = node_with("b", |c| c.max_frame_bytes = 1024).await;
        let (big, _) = node("big").await;
        let huge = Bytes::from(vec![b'x'; 4000]);

        // Caught before sending: the connection stays.
        let r = a.call(&small.local_addr(), huge.clone(), CALL).await;
        assert!(
            matches!(r, Err(NetError::FrameTooLarge { limit: 1024, .. })),
            "{r:?}"
        );
        assert!(a.call(&small.local_addr(), b("ok"), CALL).await.is_ok());

        // A sender with a larger limit: the receiver closes that connection only.
        let r = big.call(&small.local_addr(), huge, CALL).await;
        assert_eq!(r, Err(NetError::Closed));
        assert_eq!(small.stats().bad_frame_closes, 1);
        assert!(big.call(&small.local_addr(), b("ok"), CALL).await.is_ok());
        assert!(a.call(&small.local_addr(), b("ok"), CALL).await.is_ok());
        shutdown_all(&[&a, &small, &big]).await;
    })
    .await;
}

#[tokio::test]
async fn handler_panic_becomes_an_error_response() {
    bounded(async {
        let (a, srv, _, to) = pair().await;
        let r = a.call(&to, b("panic"), CALL).await;
        assert_eq!(
            r,
            Err(NetError::Remote("request handler panicked".to_string()))
        );
        assert_eq!(srv.stats().handler_panics, 1);
        assert!(a.call(&to, b("still here"), CALL).await.is_ok());
        assert_eq!(a.stats().outbound_connected, 1);
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

#[tokio::test]
async fn requests_before_the_handler_is_set_get_an_error() {
    bounded(async {
        let (a, _) = node("a").await;
        let srv = TcpTransport::bind(config("b", "riftkv", b"secret"))
            .await
            .unwrap();
        let to = srv.local_addr();
        match a.call(&to, b("early"), CALL).await {
            Err(NetError::Remote(m)) => assert!(m.contains("no request handler"), "{m}"),
            other => panic!("{other:?}"),
        }
        srv.set_handler(Arc::new(TestHandler::default()));
        assert!(a.call(&to, b("later"), CALL).await.is_ok());
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

/// Starts a call from `a` to `to` that the handler holds for 20 s, and waits (bounded) until
/// it is in flight, so a test can see what ends it early.
async fn slow_call_in_flight(
    a: &Arc<TcpTransport>,
    to: &str,
) -> tokio::task::JoinHandle<Result<Bytes, NetError>> {
    let caller = a.clone();
    let dest = to.to_string();
    let pending = tokio::spawn(async move {
        caller
            .call(&dest, b("slow:20000:x"), Duration::from_secs(25))
            .await
    });
    for _ in 0..200 {
        if a.pending_calls() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pending
}

#[tokio::test]
async fn shutdown_fails_pending_calls() {
    bounded(async {
        let (a, srv, _, to) = pair().await;
        let pending = slow_call_in_flight(&a, &to).await;
        assert_eq!(a.pending_calls(), 1);
        let t0 = Instant::now();
        a.shutdown().await;
        assert_eq!(pending.await.unwrap(), Err(NetError::ShuttingDown));
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(a.call(&to, b("x"), CALL).await, Err(NetError::ShuttingDown));
        srv.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_shutting_down_closes_calls_waiting_on_it() {
    bounded(async {
        let (a, srv, _, to) = pair().await;
        let pending = slow_call_in_flight(&a, &to).await;
        srv.shutdown().await;
        assert_eq!(pending.await.unwrap(), Err(NetError::Closed));
        a.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_calls_in_is_no_longer_in_backoff() {
    bounded(async {
        let (a, _) = node("a").await;
        let listen = free_address().await;
        let to = listen.to_string();
        // Several failed dials: a's backoff towards b grows well past the test's patience.
        for _ in 0..4 {
            let _ = a.call(&to, b("x"), CALL).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let r = a.call(&to, b("x"), CALL).await;
        assert!(
            matches!(r, Err(NetError::Unreachable(ref m)) if m.contains("next attempt")),
            "{r:?}"
        );

        // b restarts and talks to a first: a now knows b is up and dials it right away.
        let (srv, _) = node_with("b", |c| c.listen = listen).await;
        srv.call(&a.local_addr(), b("hello"), CALL).await.unwrap();
        let ok = a.call(&to, b("x"), CALL).await;
        assert_eq!(ok.unwrap(), format!("a@{}:x", a.local_addr()));
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

/// Whether the server closes `stream` within `within` (EOF or reset, no answer).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("server answered {n} bytes instead of closing"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_peer_that_has_not_authenticated_cannot_send_a_large_frame() {
    bounded(async {
        // A long handshake timeout: the close below must come from the frame bound.
        let (srv, _) = node_with("b", |c| c.connect_timeout = Duration::from_secs(20)).await;
        let to = srv.local_addr();
        // 1 MiB is far under the frame bound of authenticated peers, far over a handshake's.
        let mut raw = TcpStream::connect(&to).await.unwrap();
        raw.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
        raw.write_all(&[0u8; 1024]).await.unwrap();
        assert!(
            closed_within(&mut raw, Duration::from_secs(2)).await,
            "a 1 MiB frame before the handshake must be refused at once"
        );
        assert_eq!(srv.stats().bad_frame_closes, 1);
        // Authenticated peers still exchange large frames.
        let (a, _) = node("a").await;
        let big = Bytes::from(vec![b'x'; 2 << 20]);
        let answer = a.call(&to, big, CALL).await.unwrap();
        assert!(answer.len() > 2 << 20);
        shutdown_all(&[&a, &srv]).await;
    })
    .await;
}

#[tokio::test]
async fn inbound_connections_are_bounded_per_address_and_in_total() {
    bounded(async {
        let slow = Duration::from_secs(20);
        let (srv, _) = node_with("b", |c| {
            c.connect_timeout = slow;
            c.max_inbound_per_ip = 2;
        })
        .await;
        let to = srv.local_addr();
        let mut first = TcpStream::connect(&to).await.unwrap();
        let mut second = TcpStream::connect(&to).await.unwrap();
        let mut third = TcpStream::connect(&to).await.unwrap();
        assert!(closed_within(&mut third, Duration::from_secs(2)).await);
        assert!(!closed_within(&mut first, Duration::from_millis(200)).await);
        assert!(!closed_within(&mut second, Duration::from_millis(200)).await);
        assert_eq!(srv.stats().inbound_rejected, 1);
        // A slot freed is a slot to use: a real peer from the same address gets in.
        drop(first);
        drop(second);
        let (a, _) = node("a").await;
        retry_until_ok(&a, &to).await;
        shutdown_all(&[&a, &srv]).await;

        // The total bound counts every address together.
        let (srv, _) = node_with("b", |c| {
            c.connect_timeout = slow;
            c.max_inbound_total = 3;
        })
        .await;
        let to = srv.local_addr();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(&to).await.unwrap());
        }
        let mut over = TcpStream::connect(&to).await.unwrap();
        assert!(closed_within(&mut over, Duration::from_secs(2)).await);
        assert_eq!(srv.stats().inbound_rejected, 1);
        drop(held);
        shutdown_all(&[&srv]).await;
    })
    .await;
}

mod tls {
    use super::*;
    use crate::net::tls::Tls;
    use crate::net::tls::tests::TestCa;

    async fn tls_node(
        id: &str,
        files: crate::net::tls::TlsFiles,
    ) -> (Arc<TcpTransport>, Arc<TestHandler>) {
        let tls = Tls::load(files).unwrap();
        node_with(id, |c| c.tls = Some(tls)).await
    }

    #[tokio::test]
    async fn peers_with_certificates_of_the_cluster_ca_talk_over_mutual_tls() {
        bounded(async {
            let dir = tempfile::tempdir().unwrap();
            let ca = TestCa::new();
            let (a, _) = tls_node("a", ca.issue(dir.path(), "a", "127.0.0.1")).await;
            let (srv, h) = tls_node("b", ca.issue(dir.path(), "b", "127.0.0.1")).await;
            let to = srv.local_addr();
            let answer = a.call(&to, b("over tls"), CALL).await.unwrap();
            assert!(answer.ends_with(b"over tls"));
            assert_eq!(h.calls.load(Ordering::SeqCst), 1);
            assert_eq!(srv.stats().inbound_authenticated, 1);
            shutdown_all(&[&a, &srv]).await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_peer_with_a_certificate_of_another_ca_or_none_is_refused() {
        bounded(async {
            let dir = tempfile::tempdir().unwrap();
            let ca = TestCa::new();
            let (srv, h) = tls_node("b", ca.issue(dir.path(), "b", "127.0.0.1")).await;
            let to = srv.local_addr();

            // Same secret and cluster, but a certificate from another CA.
            let stranger_ca = TestCa::new();
            let mut stranger_files = stranger_ca.issue(dir.path(), "x", "127.0.0.1");
            // It even trusts the cluster's CA: its own certificate is what gives it away.
            stranger_files.ca = ca.issue(dir.path(), "ca-copy", "127.0.0.1").ca;
            let (x, _) = tls_node("x", stranger_files).await;
            let e = x.call(&to, b("let me in"), CALL).await.unwrap_err();
            // Under TLS 1.3 the dialler learns of the refusal from an alert on its first read.
            assert!(
                matches!(
                    e,
                    NetError::Refused(_) | NetError::Unreachable(_) | NetError::Codec(_)
                ),
                "{e:?}"
            );

            // A node without TLS at all.
            let (plain, _) = node("p").await;
            assert!(plain.call(&to, b("hello?"), CALL).await.is_err());

            assert_eq!(
                h.calls.load(Ordering::SeqCst),
                0,
                "nothing reached the handler"
            );
            assert_eq!(srv.stats().inbound_authenticated, 0);
            let refusals = refusals_of(&srv).await;
            assert!(
                refusals.iter().any(|r| r.contains("TLS handshake")),
                "{refusals:?}"
            );
            shutdown_all(&[&x, &plain, &srv]).await;
        })
        .await;
    }
}

#[tokio::test]
async fn heartbeats_get_through_while_the_data_lane_is_stalled() {
    let (a, srv, h, to) = pair().await;
    // Stall the data lane: more slow requests than the receiver admits at once on one
    // connection, so it stops reading that socket and frames queue behind them.
    let stalled: Vec<_> = (0..MAX_INFLIGHT_PER_CONN + 64)
        .map(|_| {
            let (a, to) = (a.clone(), to.clone());
            tokio::spawn(async move {
                a.call_on(Lane::Data, &to, b("slow:10000:x"), Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    eventually(|| (h.calls.load(Ordering::SeqCst) >= MAX_INFLIGHT_PER_CONN as u64).then_some(()))
        .await;
    // A heartbeat still arrives and is answered at once.
    let started = std::time::Instant::now();
    let r = a
        .call_on(Lane::Liveness, &to, b("ping"), Duration::from_secs(2))
        .await;
    assert!(r.is_ok(), "heartbeat behind the stalled data lane: {r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // ...while the data lane really is stalled.
    let r = a
        .call_on(Lane::Data, &to, b("data"), Duration::from_millis(300))
        .await;
    assert_eq!(r, Err(NetError::Timeout));
    for s in stalled {
        s.abort();
    }
    shutdown_all(&[&a, &srv]).await;
}
