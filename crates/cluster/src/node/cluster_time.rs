//! Cluster time for expiry: this node's clock, corrected by what its peers' clocks say.
//!
//! Expiry is an absolute instant carried with each version, but each node judges "has it
//! passed?" with a clock. A node whose clock lags would keep showing an expired value (and a
//! lagging coordinator would stamp expiries in the past). Pings carry the sender's wall clock,
//! so each node knows every peer's offset from its own; the cluster's time is this node's
//! clock plus the *lower median* of the offsets of itself (0) and its recently heard peers.
//! A majority of correct clocks therefore decides: one lagging node corrects itself, and one
//! node running ahead moves nobody (a median ignores it). The version timestamps that decide
//! last-writer-wins are untouched; only expiry uses this.

use parking_lot::Mutex;
use riftkv_core::types::NodeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Offsets heard longer ago than this no longer count (a stopped peer's clock says nothing).
pub const FRESH: Duration = Duration::from_secs(30);

/// The lower median of `offsets` together with this node's own offset, 0. With an even count
/// the lower of the middle two wins, so a correction needs a strict majority.
pub fn lower_median_with_self(offsets: &[i64]) -> i64 {
    let mut all: Vec<i64> = Vec::with_capacity(offsets.len() + 1);
    all.push(0);
    all.extend_from_slice(offsets);
    all.sort_unstable();
    all[(all.len() - 1) / 2]
}

/// Estimated offset of a peer's clock from ours: its reading `peer_ms` against the midpoint of
/// our clock before and after the exchange that carried it.
pub fn offset_of(peer_ms: u64, sent_ms: u64, received_ms: u64) -> i64 {
    let mid = sent_ms / 2 + received_ms / 2 + (sent_ms % 2 + received_ms % 2) / 2;
    i128::from(peer_ms)
        .saturating_sub(i128::from(mid))
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The peers' clock offsets this node has heard, and the correction they give.
///
/// The correction is read on every read and write (expiry) but changes only when a ping is
/// heard or an offset goes stale, so it is computed then and cached: a reader loads two
/// atomics and takes the lock only once the cached value may have changed.
#[derive(Debug)]
pub struct PeerClocks {
    heard: Mutex<HashMap<NodeId, (i64, Instant)>>,
    /// Time origin of `valid_until_ms`.
    origin: Instant,
    /// The correction of the fresh offsets, as last computed.
    cached_ms: AtomicI64,
    /// Milliseconds after `origin` at which the first offset counted in `cached_ms` goes stale.
    valid_until_ms: AtomicU64,
}

impl Default for PeerClocks {
    fn default() -> Self {
        PeerClocks {
            heard: Mutex::new(HashMap::new()),
            origin: Instant::now(),
            cached_ms: AtomicI64::new(0),
            valid_until_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl PeerClocks {
    pub fn observe(&self, peer: &NodeId, offset_ms: i64) {
        let mut heard = self.heard.lock();
        heard.insert(peer.clone(), (offset_ms, Instant::now()));
        self.recompute(&mut heard);
    }

    /// Drops stale offsets and caches the median of the rest, with the instant it holds until.
    fn recompute(&self, heard: &mut HashMap<NodeId, (i64, Instant)>) -> i64 {
        heard.retain(|_, (_, at)| at.elapsed() < FRESH);
        let offsets: Vec<i64> = heard.values().map(|(o, _)| *o).collect();
        let median = lower_median_with_self(&offsets);
        let until = heard
            .values()
            .map(|(_, at)| (*at + FRESH).saturating_duration_since(self.origin))
            .min()
            .map_or(u64::MAX, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            });
        self.cached_ms.store(median, Ordering::Relaxed);
        self.valid_until_ms.store(until, Ordering::Relaxed);
        median
    }

    /// The correction to add to this node's clock for cluster time.
    pub fn offset_ms(&self) -> i64 {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now < self.valid_until_ms.load(Ordering::Relaxed) {
            return self.cached_ms.load(Ordering::Relaxed);
        }
        self.recompute(&mut self.heard.lock())
    }

    /// `now_ms` (this node's clock) corrected to cluster time.
    pub fn cluster_now(&self, now_ms: u64) -> u64 {
        let corrected = i128::from(now_ms) + i128::from(self.offset_ms());
        corrected.clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_clocks_decides() {
        // Alone: no correction.
        assert_eq!(lower_median_with_self(&[]), 0);
        // A lagging node among two correct ones catches up.
        assert_eq!(lower_median_with_self(&[30_000, 30_000]), 30_000);
        // A correct node ignores one peer ahead and one behind.
        assert_eq!(lower_median_with_self(&[120_000, -30_000]), 0);
        // The lagging node with one correct and one fast peer: the correct one wins.
        assert_eq!(lower_median_with_self(&[30_000, 150_000]), 30_000);
        // Two nodes: one peer is no majority.
        assert_eq!(lower_median_with_self(&[30_000]), 0);
        assert_eq!(lower_median_with_self(&[-30_000]), -30_000);
    }

    #[test]
    fn offsets_come_from_the_midpoint_of_the_exchange() {
        assert_eq!(offset_of(1_030, 1_000, 1_000), 30);
        assert_eq!(offset_of(1_000, 990, 1_010), 0);
        assert_eq!(offset_of(0, 1_000, 1_002), -1_001);
        assert_eq!(offset_of(u64::MAX, 0, 0), i64::MAX);
    }

    #[test]
    fn cluster_now_follows_the_heard_majority_and_forgets_nobody_too_soon() {
        let p = PeerClocks::default();
        assert_eq!(p.cluster_now(1_000), 1_000);
        p.observe(&NodeId::from("a"), 30_000);
        assert_eq!(
            p.cluster_now(1_000),
            1_000,
            "one peer of two is no majority"
        );
        p.observe(&NodeId::from("b"), 29_000);
        assert_eq!(p.cluster_now(1_000), 30_000);
        p.observe(&NodeId::from("b"), -5);
        assert_eq!(p.cluster_now(1_000), 1_000);
        assert_eq!(PeerClocks::default().cluster_now(0), 0);
    }

    #[test]
    fn a_stale_offset_stops_counting_without_a_new_ping() {
        let p = PeerClocks::default();
        // (A machine up for less than that has no instant so old to use.)
        let Some(long_ago) = Instant::now().checked_sub(FRESH + Duration::from_secs(1)) else {
            return;
        };
        {
            let mut heard = p.heard.lock();
            heard.insert(NodeId::from("a"), (30_000, long_ago));
            heard.insert(NodeId::from("b"), (30_000, Instant::now()));
        }
        // As if both had been heard fresh: the cache says 30 s until it expires.
        p.cached_ms.store(30_000, Ordering::Relaxed);
        p.valid_until_ms.store(0, Ordering::Relaxed);
        assert_eq!(p.offset_ms(), 0, "one fresh peer of two is no majority");
        assert_eq!(p.heard.lock().len(), 1);
    }
}
