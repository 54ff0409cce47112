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
    /// The peer said it is going down (see [`Detector::mark_down`]).
    going_down: Option<GoingDown>,
}

/// A peer's "going down" notice: which run of the peer sent it, and until when its
/// heartbeats do not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GoingDown {
    run: u64,
    quarantine_until_ms: u64,
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

    /// Records that `peer` answered or sent something at `now_ms`. Ignored while the peer is
    /// in quarantine after a "going down" notice: a node that is going down still answers
    /// and finishes in-flight calls for a while, which proves nothing about it staying up.
    pub fn heartbeat(&mut self, peer: &NodeId, now_ms: u64) {
        let h = self.peers.entry(peer.clone()).or_default();
        if let Some(d) = h.going_down {
            if now_ms < d.quarantine_until_ms {
                return;
            }
            h.going_down = None;
        }
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

    /// `peer` (in its run `run`) said at `now_ms` that it is going down: it is unreachable at
    /// once, and its heartbeats are ignored for `quarantine_ms`, unless it says hello from
    /// another run first ([`Detector::hello`]). Its arrival history is dropped, so the
    /// downtime never counts as an inter-arrival sample.
    pub fn mark_down(&mut self, peer: &NodeId, run: u64, now_ms: u64, quarantine_ms: u64) {
        let h = self.peers.entry(peer.clone()).or_default();
        h.last_ms = None;
        h.intervals.clear();
        h.suspected = true;
        h.going_down = Some(GoingDown {
            run,
            quarantine_until_ms: now_ms.saturating_add(quarantine_ms),
        });
    }

    /// `peer` says hello from its run `run` (its first contact after starting). A hello from
    /// another run than the one that announced going down ends the quarantine: the peer was
    /// restarted. A hello from the same run is stale and ignored during the quarantine.
    /// Returns whether the hello counted as a heartbeat.
    pub fn hello(&mut self, peer: &NodeId, run: u64, now_ms: u64) -> bool {
        if let Some(h) = self.peers.get_mut(peer)
            && let Some(d) = h.going_down
        {
            if d.run == run && now_ms < d.quarantine_until_ms {
                return false;
            }
            h.going_down = None;
        }
        self.heartbeat(peer, now_ms);
        true
    }

    /// Whether `peer` announced going down and is still in quarantine at `now_ms`.
    pub fn in_quarantine(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.peers
            .get(peer)
            .and_then(|h| h.going_down)
            .is_some_and(|d| now_ms < d.quarantine_until_ms)
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
    fn going_down_is_unreachable_at_once_and_ignores_heartbeats_in_quarantine() {
        let mut d = Detector::default();
        let p = NodeId::from("p");
        for i in 0..10 {
            d.heartbeat(&p, i * 1000);
        }
        assert!(d.is_reachable(&p, 9_100));
        d.mark_down(&p, 7, 9_200, 30_000);
        assert!(!d.is_reachable(&p, 9_200));
        assert!(d.in_quarantine(&p, 9_200));
        // The dying process keeps answering calls while it drains: no revival.
        d.heartbeat(&p, 9_300);
        d.heartbeat(&p, 20_000);
        assert!(!d.is_reachable(&p, 20_100));
        // A stale hello of the same run does not revive it either.
        assert!(!d.hello(&p, 7, 20_200));
        assert!(!d.is_reachable(&p, 20_300));
        // After the quarantine, ordinary heartbeats count again (e.g. a peer of an older
        // version that never says hello).
        assert!(!d.in_quarantine(&p, 39_200));
        assert!(!d.is_reachable(&p, 39_300));
        d.heartbeat(&p, 39_400);
        assert!(d.is_reachable(&p, 39_500));
        // The downtime was not taken as an inter-arrival sample: regular beats stay up.
        for i in 1..5 {
            d.heartbeat(&p, 39_400 + i * 1000);
        }
        assert!(d.phi(&p, 43_400 + 1_000) < 1.0);
    }

    #[test]
    fn hello_from_a_new_run_ends_the_quarantine() {
        let mut d = Detector::default();
        let p = NodeId::from("p");
        d.heartbeat(&p, 0);
        d.heartbeat(&p, 1000);
        d.mark_down(&p, 1, 1_100, 30_000);
        assert!(!d.is_reachable(&p, 1_200));
        assert!(d.hello(&p, 2, 3_000));
        assert!(d.is_reachable(&p, 3_100));
        assert!(!d.in_quarantine(&p, 3_100));
        // A later notice of the new run marks it down again.
        d.mark_down(&p, 2, 4_000, 30_000);
        assert!(!d.is_reachable(&p, 4_100));
        // A hello from a peer never marked down is a plain heartbeat.
        let q = NodeId::from("q");
        assert!(d.hello(&q, 5, 4_000));
        assert!(d.is_reachable(&q, 4_100));
    }

    #[test]
    fn going_down_of_a_never_heard_peer_stays_down_until_hello() {
        let mut d = Detector::default();
        let p = NodeId::from("p");
        d.mark_down(&p, 1, 0, 30_000);
        d.heartbeat(&p, 10);
        assert!(!d.is_reachable(&p, 20));
        assert!(d.hello(&p, 2, 30));
        assert!(d.is_reachable(&p, 40));
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
