//! In-process network with seeded fault filters, for reproducible cluster tests.
//!
//! Every call crosses the same boundary as on TCP (opaque `Bytes`), runs the handler in a
//! spawned task, and passes the fault filters twice: once for the request leg and once for
//! the response leg. Outcomes:
//!
//! - target killed, never registered, or the caller itself killed: `Unreachable` at once
//!   (like a refused connection);
//! - request leg cut by a partition or isolation: `Unreachable` at once (like a peer already
//!   known to be down), so tests under partition run fast;
//! - request dropped (drop rate): nothing arrives and the caller gets `Timeout` when its
//!   timeout elapses;
//! - response leg cut, dropped, or the target killed while handling: the handler's effects
//!   stay but the answer is lost, so the caller gets `Timeout`;
//! - delays are drawn per leg in `[min, max]`; if they outlast the timeout, `Timeout`.
//!
//! Randomness comes from one `StdRng` per directed link, seeded from the network seed and the
//! two addresses. The same seed and the same sequence of calls on a link give the same drops
//! and delays, whatever happens on other links.

use super::{Handler, NetError, PeerInfo, Transport};
use crate::types::NodeId;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A handle on the simulated network; clones share it.
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<SimInner>,
}

struct SimInner {
    seed: u64,
    state: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    endpoints: HashMap<String, Arc<SimTransport>>,
    /// Directed (from, to) pairs that cannot talk.
    cuts: HashSet<(String, String)>,
    isolated: HashSet<String>,
    killed: HashSet<String>,
    drop_rate: f64,
    delay: Option<(Duration, Duration)>,
    links: HashMap<(String, String), StdRng>,
    /// Largest request or response payload, as the TCP transport's frame limit; `None`:
    /// [`super::DEFAULT_MAX_FRAME_BYTES`].
    max_frame: Option<usize>,
}

/// What happens to one message on one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    Deliver(Duration),
    Dropped,
    Cut,
    Dead,
}

impl SimState {
    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.isolated.contains(from)
            || self.isolated.contains(to)
            || self.cuts.contains(&(from.to_string(), to.to_string()))
    }

    /// Decides the fate of one message from `from` to `to`, drawing from the link's rng.
    fn leg(&mut self, seed: u64, from: &str, to: &str) -> Leg {
        if self.killed.contains(from) || self.killed.contains(to) {
            return Leg::Dead;
        }
        if !self.endpoints.contains_key(to) {
            return Leg::Dead;
        }
        if self.is_cut(from, to) {
            return Leg::Cut;
        }
        let drop_rate = self.drop_rate.clamp(0.0, 1.0);
        let delay = self.delay;
        let rng = self
            .links
            .entry((from.to_string(), to.to_string()))
            .or_insert_with(|| StdRng::seed_from_u64(link_seed(seed, from, to)));
        if drop_rate > 0.0 && rng.r#gen::<f64>() < drop_rate {
            return Leg::Dropped;
        }
        match delay {
            Some((min, max)) if max > min => Leg::Deliver(rng.gen_range(min..=max)),
            Some((min, _)) => Leg::Deliver(min),
            None => Leg::Deliver(Duration::ZERO),
        }
    }
}

fn link_seed(seed: u64, from: &str, to: &str) -> u64 {
    let mut key = Vec::with_capacity(from.len() + to.len() + 1);
    key.extend_from_slice(from.as_bytes());
    key.push(0);
    key.extend_from_slice(to.as_bytes());
    seed ^ xxhash_rust::xxh3::xxh3_64(&key)
}

impl SimNetwork {
    /// Sets the largest payload one message may carry, like `max_frame_bytes` over TCP.
    pub fn set_max_frame_bytes(&self, limit: usize) {
        self.inner.state.lock().max_frame = Some(limit);
    }

    pub fn new(seed: u64) -> SimNetwork {
        SimNetwork {
            inner: Arc::new(SimInner {
                seed,
                state: Mutex::new(SimState::default()),
            }),
        }
    }

    /// The endpoint for `addr`. Asking again for the same address and node id returns the
    /// same endpoint (a restarted node keeps its address); another node id replaces it.
    pub fn endpoint(&self, addr: &str, node_id: NodeId) -> Arc<SimTransport> {
        let mut st = self.inner.state.lock();
        if let Some(t) = st.endpoints.get(addr)
            && t.node_id == node_id
        {
            return t.clone();
        }
        let t = Arc::new(SimTransport {
            net: Arc::downgrade(&self.inner),
            addr: addr.to_string(),
            node_id,
            handler: RwLock::new(None),
        });
        st.endpoints.insert(addr.to_string(), t.clone());
        t
    }

    /// Cuts both directions between every address of `side_a` and every one of `side_b`.
    pub fn partition(&self, side_a: &[&str], side_b: &[&str]) {
        let mut st = self.inner.state.lock();
        for a in side_a {
            for b in side_b {
                st.cuts.insert((a.to_string(), b.to_string()));
                st.cuts.insert((b.to_string(), a.to_string()));
            }
        }
    }

    /// Cuts `addr` off from every other node, present or future.
    pub fn isolate(&self, addr: &str) {
        self.inner.state.lock().isolated.insert(addr.to_string());
    }

    /// Removes cuts, isolation, drop rate and delays (killed nodes stay killed).
    pub fn heal(&self) {
        let mut st = self.inner.state.lock();
        st.cuts.clear();
        st.isolated.clear();
        st.drop_rate = 0.0;
        st.delay = None;
    }

    /// Drops each message (each leg) with probability `p`, drawn from the seeded rngs.
    pub fn set_drop_rate(&self, p: f64) {
        self.inner.state.lock().drop_rate = if p.is_nan() { 0.0 } else { p };
    }

    /// Delays each message (each leg) by a seeded random time in `[min, max]`.
    pub fn set_delay(&self, min: Duration, max: Duration) {
        self.inner.state.lock().delay = Some((min, max.max(min)));
    }

    /// Makes `addr` unreachable and detaches its handler, as if the process died.
    pub fn kill(&self, addr: &str) {
        let mut st = self.inner.state.lock();
        st.killed.insert(addr.to_string());
        if let Some(t) = st.endpoints.get(addr) {
            *t.handler.write() = None;
        }
    }

    /// Makes `addr` reachable again; attach the restarted node's handler with `set_handler`.
    pub fn revive(&self, addr: &str) {
        self.inner.state.lock().killed.remove(addr);
    }

    /// Whether `addr` is currently killed.
    pub fn is_killed(&self, addr: &str) -> bool {
        self.inner.state.lock().killed.contains(addr)
    }
}

/// One node's view of the simulated network.
pub struct SimTransport {
    net: Weak<SimInner>,
    addr: String,
    node_id: NodeId,
    handler: RwLock<Option<Arc<dyn Handler>>>,
}

impl SimTransport {
    /// Attaches (or replaces) the handler serving requests to this address.
    pub fn set_handler(&self, h: Arc<dyn Handler>) {
        *self.handler.write() = Some(h);
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    async fn deliver(&self, to: &str, request: Bytes) -> Result<Bytes, NetError> {
        let net = self.net.upgrade().ok_or(NetError::ShuttingDown)?;
        let seed = net.seed;
        // As over TCP: a request too large for one frame fails here, before it leaves.
        let limit = net
            .state
            .lock()
            .max_frame
            .unwrap_or(super::DEFAULT_MAX_FRAME_BYTES);
        if request.len() > limit {
            return Err(NetError::FrameTooLarge {
                size: request.len(),
                limit,
            });
        }
        let leg = net.state.lock().leg(seed, &self.addr, to);
        match leg {
            Leg::Dead => {
                return Err(NetError::Unreachable(
                    if net.state.lock().killed.contains(&self.addr) {
                        format!("{} is down", self.addr)
                    } else {
                        format!("{to} is down")
                    },
                ));
            }
            Leg::Cut => {
                return Err(NetError::Unreachable(format!(
                    "{} cannot reach {to}: network partition",
                    self.addr
                )));
            }
            Leg::Dropped => return lost().await,
            Leg::Deliver(d) => sleep(d).await,
        }
        // The target may have died while the request was on the wire.
        let target = {
            let st = net.state.lock();
            if st.killed.contains(to) {
                None
            } else {
                st.endpoints.get(to).cloned()
            }
        };
        let Some(target) = target else {
            return lost().await;
        };
        let handler = target.handler.read().clone();
        let result = match handler {
            None => Err(NetError::Remote(
                "node is starting: no request handler is attached yet".to_string(),
            )),
            Some(h) => {
                let from = PeerInfo {
                    node_id: self.node_id.clone(),
                    peer_addr: self.addr.clone(),
                };
                match tokio::spawn(async move { h.handle(from, request).await }).await {
                    // As over TCP: a response too large for a frame is replaced by an error.
                    Ok(resp) if resp.len() > limit => Err(NetError::Remote(format!(
                        "response cannot be sent: frame of {} bytes exceeds the limit of {limit} bytes",
                        resp.len()
                    ))),
                    Ok(resp) => Ok(resp),
                    Err(e) if e.is_panic() => {
                        Err(NetError::Remote("request handler panicked".to_string()))
                    }
                    Err(_) => Err(NetError::Remote(
                        "request handler was cancelled".to_string(),
                    )),
                }
            }
        };
        let back = net.state.lock().leg(seed, to, &self.addr);
        drop(net);
        match back {
            Leg::Deliver(d) => {
                sleep(d).await;
                result
            }
            Leg::Dropped | Leg::Cut | Leg::Dead => lost().await,
        }
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// A message that never arrives: the caller's timeout decides the outcome.
async fn lost() -> Result<Bytes, NetError> {
    std::future::pending().await
}

#[async_trait::async_trait]
impl Transport for SimTransport {
    async fn call(&self, to: &str, request: Bytes, timeout: Duration) -> Result<Bytes, NetError> {
        match tokio::time::timeout(timeout, self.deliver(to, request)).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout),
        }
    }

    fn local_addr(&self) -> String {
        self.addr.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    const CALL: Duration = Duration::from_secs(2);

    /// Echoes `node:` + payload and counts calls; `panic` panics.
    #[derive(Default)]
    struct Echo {
        calls: AtomicU64,
    }

    #[async_trait::async_trait]
    impl Handler for Echo {
        async fn handle(&self, from: PeerInfo, request: Bytes) -> Bytes {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if &request[..] == b"panic" {
                panic!("test handler asked to panic");
            }
            let mut out = format!("{}:", from.node_id).into_bytes();
            out.extend_from_slice(&request);
            Bytes::from(out)
        }
    }

    fn cluster(seed: u64, addrs: &[&str]) -> (SimNetwork, Vec<Arc<SimTransport>>, Vec<Arc<Echo>>) {
        let net = SimNetwork::new(seed);
        let mut ts = Vec::new();
        let mut hs = Vec::new();
        for (i, a) in addrs.iter().enumerate() {
            let t = net.endpoint(a, NodeId::new(format!("n{i}")));
            let h = Arc::new(Echo::default());
            t.set_handler(h.clone());
            ts.push(t);
            hs.push(h);
        }
        (net, ts, hs)
    }

    async fn bounded<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("test exceeded its time bound")
    }

    fn ping() -> Bytes {
        Bytes::from_static(b"ping")
    }

    #[tokio::test]
    async fn round_trip_names_the_caller() {
        bounded(async {
            let (_net, ts, _) = cluster(1, &["a", "b"]);
            let r = ts[0].call("b", ping(), CALL).await.unwrap();
            assert_eq!(&r[..], b"n0:ping");
            assert_eq!(ts[0].local_addr(), "a");
            assert!(matches!(
                ts[0].call("nowhere", ping(), CALL).await,
                Err(NetError::Unreachable(_))
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn partition_cuts_both_ways_until_heal() {
        bounded(async {
            let (net, ts, hs) = cluster(1, &["a", "b", "c"]);
            net.partition(&["a"], &["b", "c"]);
            let t0 = Instant::now();
            for (from, to) in [(0, "b"), (0, "c"), (1, "a"), (2, "a")] {
                let r = ts[from].call(to, ping(), CALL).await;
                assert!(matches!(r, Err(NetError::Unreachable(_))), "{r:?}");
            }
            // Cut links fail fast rather than waiting for the timeout.
            assert!(t0.elapsed() < Duration::from_millis(500));
            assert!(ts[1].call("c", ping(), CALL).await.is_ok());
            assert!(ts[2].call("b", ping(), CALL).await.is_ok());
            assert_eq!(hs[0].calls.load(Ordering::SeqCst), 0);
            net.heal();
            assert!(ts[0].call("b", ping(), CALL).await.is_ok());
            assert!(ts[2].call("a", ping(), CALL).await.is_ok());
        })
        .await;
    }

    #[tokio::test]
    async fn isolate_cuts_one_node_from_all() {
        bounded(async {
            let (net, ts, _) = cluster(1, &["a", "b", "c"]);
            net.isolate("c");
            assert!(matches!(
                ts[0].call("c", ping(), CALL).await,
                Err(NetError::Unreachable(_))
            ));
            assert!(matches!(
                ts[2].call("b", ping(), CALL).await,
                Err(NetError::Unreachable(_))
            ));
            assert!(ts[0].call("b", ping(), CALL).await.is_ok());
            // Nodes added later are cut off from it too.
            let d = net.endpoint("d", NodeId::new("n3"));
            d.set_handler(Arc::new(Echo::default()));
            assert!(matches!(
                d.call("c", ping(), CALL).await,
                Err(NetError::Unreachable(_))
            ));
            net.heal();
            assert!(d.call("c", ping(), CALL).await.is_ok());
        })
        .await;
    }

    /// Outcome pattern of `n` sequential calls a → b under a drop rate.
    async fn drop_pattern(seed: u64, n: usize) -> Vec<bool> {
        let (net, ts, _) = cluster(seed, &["a", "b"]);
        net.set_drop_rate(0.3);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            // Generous next to a delivered call's microseconds, so only drops time out.
            match ts[0].call("b", ping(), Duration::from_millis(60)).await {
                Ok(r) => {
                    assert_eq!(&r[..], b"n0:ping");
                    out.push(true);
                }
                Err(NetError::Timeout) => out.push(false),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn drop_rate_is_reproducible_for_a_seed() {
        bounded(async {
            let (first, second, other) = tokio::join!(
                drop_pattern(7, 60),
                drop_pattern(7, 60),
                drop_pattern(8, 60)
            );
            assert_eq!(first, second, "same seed, same outcomes");
            assert_ne!(first, other, "another seed, another pattern");
            let lost = first.iter().filter(|ok| !**ok).count();
            // Each call survives two legs at 0.7: about half are lost.
            assert!((8..=42).contains(&lost), "lost {lost} of 50");
        })
        .await;
    }

    #[tokio::test]
    async fn dropped_responses_still_ran_the_handler() {
        bounded(async {
            let (net, ts, hs) = cluster(3, &["a", "b"]);
            net.set_drop_rate(1.0);
            let r = ts[0].call("b", ping(), Duration::from_millis(30)).await;
            assert_eq!(r, Err(NetError::Timeout));
            assert_eq!(hs[1].calls.load(Ordering::SeqCst), 0, "request leg dropped");
            net.heal();
            assert!(ts[0].call("b", ping(), CALL).await.is_ok());
        })
        .await;
    }

    #[tokio::test]
    async fn delay_applies_to_both_legs_and_can_time_out() {
        bounded(async {
            let (net, ts, hs) = cluster(5, &["a", "b"]);
            net.set_delay(Duration::from_millis(40), Duration::from_millis(60));
            let t0 = Instant::now();
            assert!(ts[0].call("b", ping(), CALL).await.is_ok());
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(80), "{took:?}");
            assert!(took < Duration::from_millis(1000), "{took:?}");
            // Shorter than one leg: times out before reaching the handler.
            let before = hs[1].calls.load(Ordering::SeqCst);
            let r = ts[0].call("b", ping(), Duration::from_millis(20)).await;
            assert_eq!(r, Err(NetError::Timeout));
            assert_eq!(hs[1].calls.load(Ordering::SeqCst), before);
            net.heal();
            let t0 = Instant::now();
            assert!(ts[0].call("b", ping(), CALL).await.is_ok());
            assert!(t0.elapsed() < Duration::from_millis(80));
        })
        .await;
    }

    #[tokio::test]
    async fn kill_fails_fast_and_revive_needs_a_handler() {
        bounded(async {
            let (net, ts, _) = cluster(1, &["a", "b"]);
            net.kill("b");
            assert!(net.is_killed("b"));
            let t0 = Instant::now();
            let r = ts[0].call("b", ping(), CALL).await;
            assert!(matches!(r, Err(NetError::Unreachable(_))), "{r:?}");
            assert!(t0.elapsed() < Duration::from_millis(100));
            // A dead node cannot send either.
            assert!(matches!(
                ts[1].call("a", ping(), CALL).await,
                Err(NetError::Unreachable(_))
            ));

            net.revive("b");
            // Reachable, but the restarted node has not attached its handler yet.
            match ts[0].call("b", ping(), CALL).await {
                Err(NetError::Remote(m)) => assert!(m.contains("no request handler"), "{m}"),
                other => panic!("{other:?}"),
            }
            let restarted = net.endpoint("b", NodeId::new("n1"));
            assert!(Arc::ptr_eq(&restarted, &ts[1]));
            let h = Arc::new(Echo::default());
            restarted.set_handler(h.clone());
            assert_eq!(
                &ts[0].call("b", ping(), CALL).await.unwrap()[..],
                b"n0:ping"
            );
            assert_eq!(h.calls.load(Ordering::SeqCst), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn handler_panic_is_a_remote_error() {
        bounded(async {
            let (_net, ts, _) = cluster(1, &["a", "b"]);
            let r = ts[0].call("b", Bytes::from_static(b"panic"), CALL).await;
            assert_eq!(
                r,
                Err(NetError::Remote("request handler panicked".to_string()))
            );
            assert!(ts[0].call("b", ping(), CALL).await.is_ok());
        })
        .await;
    }

    #[test]
    fn link_rngs_are_independent_of_other_links() {
        // Traffic on a → c must not shift the draws seen on a → b.
        let mut s1 = SimState::default();
        let mut s2 = SimState::default();
        for st in [&mut s1, &mut s2] {
            st.drop_rate = 0.5;
            st.endpoints.insert("b".into(), dummy("b"));
            st.endpoints.insert("c".into(), dummy("c"));
        }
        let plain: Vec<Leg> = (0..50).map(|_| s1.leg(9, "a", "b")).collect();
        let mixed: Vec<Leg> = (0..50)
            .map(|_| {
                s2.leg(9, "a", "c");
                s2.leg(9, "a", "b")
            })
            .collect();
        assert_eq!(plain, mixed);
        assert!(plain.contains(&Leg::Dropped));
        assert!(plain.iter().any(|l| matches!(l, Leg::Deliver(_))));
    }

    fn dummy(addr: &str) -> Arc<SimTransport> {
        Arc::new(SimTransport {
            net: Weak::new(),
            addr: addr.into(),
            node_id: NodeId::new(addr),
            handler: RwLock::new(None),
        })
    }
}
