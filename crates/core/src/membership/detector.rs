//! Phi-accrual failure detection (Hayashibara et al.), as Cassandra uses it: instead of a fixed
//! timeout, each peer's heartbeat inter-arrival times give a suspicion level `phi`; a peer is
//! unreachable when phi passes a threshold. It only decides routing, never membership.

use crate::types::NodeId;
use std::collections::{HashMap, VecDeque};

/// Suspicion above which a peer is treated as down (Cassandra's default is 8).
pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;
/// Inter-arrival samples kept per peer.
const WINDOW: usize = 100;
/// Floor on the standard deviation so a perfectly regular peer is not declared dead on the
/// first late heartbeat.
const MIN_STD_MS: f64 = 250.0;
/// A peer never heard from counts as down after this long (and before any sample).
const FIRST_CONTACT_GRACE_MS: u64 = 5_000;

#[derive(Debug, Default, Clone)]
struct PeerHistory {
    last_ms: Option<u64>,
    intervals: VecDeque<f64>,
    /// A failed call that certainly never reached the peer marks it down until it answers.
    suspected: bool,
}

#[derive(Debug, Clone)]
pub struct Detector {
    peers: HashMap<NodeId, PeerHistory>,
    threshold: f64,
    /// Expected heartbeat period, used until real samples exist.
    expected_interval_ms: f64,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(DEFAULT_PHI_THRESHOLD, 1_000.0)
    }
}

impl Detector {
    pub fn new(threshold: f64, expected_interval_ms: f64) -> Self {
        Detector {
            peers: HashMap::new(),
            threshold,
            expected_interval_ms,
        }
    }

    /// Records that `peer` answered or sent something at `now_ms`.
    pub fn heartbeat(&mut self, peer: &NodeId, now_ms: u64) {
        let h = self.peers.entry(peer.clone()).or_default();
        if let Some(last) = h.last_ms
            && now_ms > last
        {
            if h.intervals.len() == WINDOW {
                h.intervals.pop_front();
            }
            h.intervals.push_back((now_ms - last) as f64);
        }
        h.last_ms = Some(now_ms.max(h.last_ms.unwrap_or(0)));
        h.suspected = false;
    }

    /// Records a call that could not reach the peer at all (connection refused).
    pub fn suspect(&mut self, peer: &NodeId, _now_ms: u64) {
        self.peers.entry(peer.clone()).or_default().suspected = true;
    }

    /// Suspicion level of `peer` at `now_ms`; infinite for a peer never heard from.
    pub fn phi(&self, peer: &NodeId, now_ms: u64) -> f64 {
        let Some(h) = self.peers.get(peer) else {
            return f64::INFINITY;
        };
        let Some(last) = h.last_ms else {
            return f64::INFINITY;
        };
        let elapsed = now_ms.saturating_sub(last) as f64;
        let (mean, std) = if h.intervals.is_empty() {
            (self.expected_interval_ms, self.expected_interval_ms / 2.0)
        } else {
            let n = h.intervals.len() as f64;
            let mean = h.intervals.iter().sum::<f64>() / n;
            let var = h.intervals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            (mean, var.sqrt())
        };
        phi_normal(elapsed, mean, std.max(MIN_STD_MS))
    }

    pub fn is_reachable(&self, peer: &NodeId, now_ms: u64) -> bool {
        match self.peers.get(peer) {
            None => false,
            Some(h) if h.suspected => false,
            Some(h) if h.intervals.is_empty() => h
                .last_ms
                .is_some_and(|l| now_ms.saturating_sub(l) < FIRST_CONTACT_GRACE_MS),
            Some(_) => self.phi(peer, now_ms) < self.threshold,
        }
    }

    pub fn forget(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }
}

/// -log10 of the probability that a heartbeat arrives later than `elapsed`, with inter-arrival
/// times modelled as a normal distribution (logistic approximation of its CDF, as Akka does).
fn phi_normal(elapsed: f64, mean: f64, std: f64) -> f64 {
    let y = (elapsed - mean) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let p_later = if elapsed > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    -(p_later.max(1e-300)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_heartbeats_stay_up_and_silence_goes_down() {
        let mut d = Detector::default();
        let p = NodeId::from("p");
        assert!(!d.is_reachable(&p, 0));
        for i in 0..20 {
            d.heartbeat(&p, i * 1000);
        }
        assert!(d.is_reachable(&p, 19_000 + 1_200));
        assert!(d.phi(&p, 19_000 + 1_000) < 1.0);
        assert!(!d.is_reachable(&p, 19_000 + 10_000));
        // phi grows with silence.
        assert!(d.phi(&p, 19_000 + 3_000) < d.phi(&p, 19_000 + 5_000));
        d.heartbeat(&p, 40_000);
        assert!(d.is_reachable(&p, 40_100));
    }

    #[test]
    fn refused_connection_marks_down_until_heard() {
        let mut d = Detector::default();
        let p = NodeId::from("p");
        d.heartbeat(&p, 0);
        d.heartbeat(&p, 1000);
        d.suspect(&p, 1100);
        assert!(!d.is_reachable(&p, 1200));
        d.heartbeat(&p, 1300);
        assert!(d.is_reachable(&p, 1400));
    }
}
