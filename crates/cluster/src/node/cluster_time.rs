//! Cluster time for expiry: this node's clock, corrected by what its peers' clocks say.
//!
//! Expiry is an absolute instant carried with each version, but each node judges "has it
//! passed?" with a clock. A node whose clock lags would keep showing an expired value (and a
//! lagging coordinator would stamp expiries in the past). Pings carry the sender's wall clock,
//! so each node bounds every peer's offset from its own (to within the exchange's transit time)
//! and believes the offset nearest its last belief, 0 at first, that the bounds allow: clocks
//! that agree get no correction however slow the network. The cluster's time is this node's
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

/// What one exchange proves about a peer's clock offset from ours: it lies in `lo..=hi`.
///
/// A reading travels for an unknown time, so an exchange bounds the offset rather than
/// measuring it; a point estimate (e.g. the midpoint of a round trip) carries the network's
/// and the schedulers' delays into expiry, shifting it by tens of milliseconds on a loaded
/// machine even between clocks that agree exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetBounds {
    lo: i64,
    hi: i64,
}

impl OffsetBounds {
    /// A round trip: the peer read its clock (`peer_ms`) after we sent (`sent_ms`) and before
    /// we received its answer (`received_ms`).
    pub fn round_trip(peer_ms: u64, sent_ms: u64, received_ms: u64) -> Self {
        let (a, b) = (
            difference(peer_ms, received_ms),
            difference(peer_ms, sent_ms),
        );
        OffsetBounds {
            lo: a.min(b),
            hi: a.max(b),
        }
    }

    /// One way: the peer read its clock (`peer_ms`) before we received it (`received_ms`),
    /// so its clock is at least that far ahead; how far behind it may be, this cannot tell.
    pub fn one_way(peer_ms: u64, received_ms: u64) -> Self {
        OffsetBounds {
            lo: difference(peer_ms, received_ms),
            hi: i64::MAX,
        }
    }

    /// The offset to believe after this exchange: `previous` when the exchange allows it (so
    /// a belief moves only on evidence against it), else the nearest offset it allows. With
    /// no previous belief, 0: no correction beyond what is proven.
    pub fn revise(self, previous: Option<i64>) -> i64 {
        previous.unwrap_or(0).clamp(self.lo, self.hi)
    }
}

/// `a - b` in milliseconds, saturating.
fn difference(a: u64, b: u64) -> i64 {
    (i128::from(a) - i128::from(b)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
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
    /// Records what an exchange with `peer` proved about its offset (see
    /// [`OffsetBounds::revise`]); a belief gone stale counts as none.
    pub fn observe(&self, peer: &NodeId, bounds: OffsetBounds) {
        let mut heard = self.heard.lock();
        let previous = heard
            .get(peer)
            .filter(|(_, at)| at.elapsed() < FRESH)
            .map(|(o, _)| *o);
        heard.insert(peer.clone(), (bounds.revise(previous), Instant::now()));
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
    fn an_exchange_bounds_the_offset_and_the_belief_moves_only_on_evidence() {
        // A peer's reading taken between our send and receive: anywhere from 10 behind to
        // 10 ahead. Clocks that agree are never corrected, however long the exchange took.
        let b = OffsetBounds::round_trip(1_000, 990, 1_010);
        assert_eq!(b, OffsetBounds { lo: -10, hi: 10 });
        assert_eq!(b.revise(None), 0);
        assert_eq!(OffsetBounds::round_trip(1_000, 700, 1_300).revise(None), 0);
        // A peer 30 s ahead, over a 2 ms round trip: no less than the exchange proves.
        let ahead = OffsetBounds::round_trip(31_000, 1_000, 1_002);
        assert_eq!(ahead.revise(None), 29_998);
        assert_eq!(
            ahead.revise(Some(30_000)),
            30_000,
            "a belief inside the bounds stays"
        );
        assert_eq!(ahead.revise(Some(0)), 29_998);
        // A peer 30 s behind.
        assert_eq!(
            OffsetBounds::round_trip(0, 30_000, 30_002).revise(None),
            -30_000
        );
        // One way: the reading was taken before it arrived. A late arrival is no evidence of
        // a lagging clock, and keeps what a round trip proved about one.
        let late = OffsetBounds::one_way(1_000, 1_250);
        assert_eq!(late.revise(None), 0);
        assert_eq!(late.revise(Some(-60_000)), -250);
        assert_eq!(
            OffsetBounds::one_way(940_000, 1_000_250).revise(Some(-60_000)),
            -60_000
        );
        assert_eq!(OffsetBounds::one_way(31_000, 1_000).revise(None), 30_000);
        // Readings at the ends of the range saturate.
        assert_eq!(
            OffsetBounds::round_trip(u64::MAX, 0, 0).revise(None),
            i64::MAX
        );
        assert_eq!(OffsetBounds::one_way(0, u64::MAX).lo, i64::MIN);
    }

    #[test]
    fn cluster_now_follows_the_heard_majority_and_forgets_nobody_too_soon() {
        let p = PeerClocks::default();
        assert_eq!(p.cluster_now(1_000), 1_000);
        let exact = |o: i64| OffsetBounds { lo: o, hi: o };
        p.observe(&NodeId::from("a"), exact(30_000));
        assert_eq!(
            p.cluster_now(1_000),
            1_000,
            "one peer of two is no majority"
        );
        p.observe(&NodeId::from("b"), exact(29_000));
        assert_eq!(p.cluster_now(1_000), 30_000);
        p.observe(&NodeId::from("b"), exact(-5));
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
