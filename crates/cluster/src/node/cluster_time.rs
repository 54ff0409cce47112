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

/// The peers' clock offsets this node has heard.
#[derive(Debug, Default)]
pub struct PeerClocks {
    heard: Mutex<HashMap<NodeId, (i64, Instant)>>,
}

impl PeerClocks {
    pub fn observe(&self, peer: &NodeId, offset_ms: i64) {
        self.heard
            .lock()
            .insert(peer.clone(), (offset_ms, Instant::now()));
    }

    /// The correction to add to this node's clock for cluster time.
    pub fn offset_ms(&self) -> i64 {
        let mut heard = self.heard.lock();
        heard.retain(|_, (_, at)| at.elapsed() < FRESH);
        let offsets: Vec<i64> = heard.values().map(|(o, _)| *o).collect();
        lower_median_with_self(&offsets)
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
}
