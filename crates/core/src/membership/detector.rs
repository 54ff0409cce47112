//! Phi-accrual failure detection (Hayashibara et al.), as Cassandra and Akka use it: instead of
//! a fixed timeout, each peer's arrival history gives a suspicion level `phi`. It only decides
//! routing, never membership.
//!
//! Three things keep load from fooling it:
//! - the learned mean never drops below the configured heartbeat interval: any answered call
//!   counts as an arrival, so under load a peer is heard every few milliseconds, and a
//!   detector that learned that scale would convict the peer at the first pause in traffic;
//! - an acceptable pause is added to the mean (Akka's `acceptable-heartbeat-pause`): a stall
//!   of the whole machine or a long GC pause silences every peer at once for seconds, and
//!   Cassandra's users saw exactly that convict healthy nodes;
//! - suspicion is not death ([`Liveness`]): a suspected peer is still sent requests with the
//!   normal timeout; only a peer known down (refused connection, going-down notice, or silent
//!   beyond [`DetectorConfig::down_after_ms`]) is routed around at once. A peer never heard
//!   from counts as silent since the detector started ([`Detector::started_at`]): a node
//!   that has just started asks its peers rather than refusing requests before its first
//!   heartbeats are answered.
//!
//! Bounds, for interval `I`, acceptable pause `P` and deviation floor `S = max(I/4, 250 ms)`:
//! a peer that stops is suspected within `I + P + 5.3·S` of its last arrival (phi 8 is 5.3
//! standard deviations past the mean) and known down within
//! `max(2·(I + P), I + P + 6·S)`: 8 s at the default 1 s interval, 18 s at 6 s. A crashed
//! process whose host still runs refuses the next connection and is known down at once.

use crate::types::NodeId;
use std::collections::{HashMap, VecDeque};

/// Suspicion above which a peer is suspected (Cassandra's and Akka's default is 8).
pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;
/// Silence tolerated on top of the heartbeat interval before suspicion grows (Akka's default
/// acceptable heartbeat pause): longer than a stall of the whole machine or a GC pause.
pub const DEFAULT_ACCEPTABLE_PAUSE_MS: u64 = 3_000;
/// Inter-arrival samples kept per peer.
const WINDOW: usize = 100;
/// Floor on the standard deviation so a perfectly regular peer is not suspected on the first
/// late heartbeat; the floor is at least a quarter of the interval (see [`DetectorConfig`]).
const MIN_STD_MS: f64 = 250.0;

/// How a peer looks to routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from as often as expected.
    Up,
    /// Later than expected (phi over the threshold) but not for long, or not heard from yet
    /// since this node started: still asked, with the normal timeout, and not replaced by a
    /// fallback.
    Suspected,
    /// Known down: routed around at once.
    Down,
}

/// The scale a detector judges by: the configured heartbeat interval and the pause accepted
/// on top of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    pub threshold: f64,
    /// The gossip (heartbeat) interval: the learned mean never goes below it.
    pub interval_ms: u64,
    /// Silence tolerated on top of the interval.
    pub acceptable_pause_ms: u64,
}

impl DetectorConfig {
    /// The default threshold and pause for heartbeats every `interval_ms`.
    pub fn for_interval(interval_ms: u64) -> Self {
        DetectorConfig {
            threshold: DEFAULT_PHI_THRESHOLD,
            interval_ms,
            acceptable_pause_ms: DEFAULT_ACCEPTABLE_PAUSE_MS,
        }
    }

    fn interval(&self) -> f64 {
        self.interval_ms.max(1) as f64
    }

    /// The standard deviation floor: a quarter of the interval, at least [`MIN_STD_MS`].
    fn std_floor(&self) -> f64 {
        (self.interval() / 4.0).max(MIN_STD_MS)
    }

    /// Silence after which a peer is known down whatever phi says: twice the interval plus
    /// the pause, and never before phi has passed the threshold.
    pub fn down_after_ms(&self) -> u64 {
        let base = self.interval() + self.acceptable_pause_ms as f64;
        (2.0 * base).max(base + 6.0 * self.std_floor()) as u64
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig::for_interval(1_000)
    }
}

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
    config: DetectorConfig,
    /// When this detector began listening: a peer never heard from counts as silent since.
    started_ms: u64,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::with_config(DetectorConfig::default())
    }
}

impl Detector {
    /// A detector with the default acceptable pause.
    pub fn new(threshold: f64, expected_interval_ms: f64) -> Self {
        Detector::with_config(DetectorConfig {
            threshold,
            ..DetectorConfig::for_interval(expected_interval_ms.max(1.0) as u64)
        })
    }

    pub fn with_config(config: DetectorConfig) -> Self {
        Detector {
            peers: HashMap::new(),
            config,
            started_ms: 0,
        }
    }

    /// The same detector, listening since `now_ms` (the node's start). Without it the start
    /// is instant 0, so on a wall clock a peer never heard from is down at once.
    pub fn started_at(mut self, now_ms: u64) -> Self {
        self.started_ms = now_ms;
        self
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
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

    /// Suspicion level of `peer` at `now_ms`; infinite for a peer never heard from. The mean
    /// of the arrivals is floored at the configured interval and the acceptable pause added.
    pub fn phi(&self, peer: &NodeId, now_ms: u64) -> f64 {
        let Some(h) = self.peers.get(peer) else {
            return f64::INFINITY;
        };
        let Some(last) = h.last_ms else {
            return f64::INFINITY;
        };
        let elapsed = now_ms.saturating_sub(last) as f64;
        let c = &self.config;
        let (mean, std) = if h.intervals.is_empty() {
            (c.interval(), c.interval() / 2.0)
        } else {
            let n = h.intervals.len() as f64;
            let mean = h.intervals.iter().sum::<f64>() / n;
            let var = h.intervals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            (mean, var.sqrt())
        };
        let mean = mean.max(c.interval()) + c.acceptable_pause_ms as f64;
        phi_normal(elapsed, mean, std.max(c.std_floor()))
    }

    /// How `peer` looks to routing at `now_ms` (see [`Liveness`]).
    pub fn liveness(&self, peer: &NodeId, now_ms: u64) -> Liveness {
        let h = self.peers.get(peer);
        if h.is_some_and(|h| {
            h.suspected || h.going_down.is_some_and(|d| now_ms < d.quarantine_until_ms)
        }) {
            return Liveness::Down;
        }
        let Some(last) = h.and_then(|h| h.last_ms) else {
            // Never heard from: silent since this detector started. Right after a start that
            // says nothing about the peer (its first heartbeat is still on the way), so it is
            // asked like a suspected one until the silence is as long as a crash's.
            return if now_ms.saturating_sub(self.started_ms) >= self.config.down_after_ms() {
                Liveness::Down
            } else {
                Liveness::Suspected
            };
        };
        if now_ms.saturating_sub(last) >= self.config.down_after_ms() {
            return Liveness::Down;
        }
        if self.phi(peer, now_ms) < self.config.threshold {
            Liveness::Up
        } else {
            Liveness::Suspected
        }
    }

    /// Whether `peer` is up (not even suspected): the view of duties that pick one peer
    /// among many (gossip, hint delivery, anti-entropy) and of operators.
    pub fn is_reachable(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.liveness(peer, now_ms) == Liveness::Up
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

    /// Heartbeats every `interval` from `from` to `to`, plus data-traffic arrivals every
    /// `traffic_every` ms in between when given (any answered call counts as a heartbeat).
    fn beats(
        d: &mut Detector,
        p: &NodeId,
        from: u64,
        to: u64,
        interval: u64,
        traffic_every: Option<u64>,
    ) {
        let mut t = from;
        while t <= to {
            d.heartbeat(p, t);
            if let Some(step) = traffic_every {
                let mut x = t + step;
                while x < (t + interval).min(to) {
                    d.heartbeat(p, x);
                    x += step;
                }
            }
            t += interval;
        }
    }

    #[test]
    fn a_two_second_stall_with_a_one_second_interval_does_not_convict() {
        let mut d = Detector::with_config(DetectorConfig::for_interval(1_000));
        let p = NodeId::from("p");
        // Idle heartbeats, then load: answered data calls arrive every 5 ms.
        beats(&mut d, &p, 0, 20_000, 1_000, None);
        beats(&mut d, &p, 21_000, 40_000, 1_000, Some(5));
        let last = 40_000;
        // The whole machine stalls for 2 s right before the next heartbeat was due: on
        // resume the peer has been silent for up to one interval plus the stall.
        for silent in [1_000, 2_000, 3_000, 3_500] {
            assert_eq!(
                d.liveness(&p, last + silent),
                Liveness::Up,
                "convicted after {silent} ms of silence (phi {})",
                d.phi(&p, last + silent)
            );
        }
    }

    #[test]
    fn a_six_second_interval_with_jitter_does_not_suspect() {
        let mut d = Detector::with_config(DetectorConfig::for_interval(6_000));
        let p = NodeId::from("p");
        // First contact: the second heartbeat comes a full interval (plus jitter) later.
        d.heartbeat(&p, 0);
        assert_eq!(d.liveness(&p, 7_000), Liveness::Up, "first contact");
        // Heartbeats 6 s apart with up to 1.5 s of jitter, bursts of data traffic between.
        let jitter = [0i64, 1_500, -1_000, 700, -1_500, 1_200, 300, -600];
        let mut t = 0u64;
        for (i, j) in jitter.iter().cycle().take(40).enumerate() {
            let next = (t as i64 + 6_000 + j) as u64;
            if i % 3 == 0 {
                for x in (t + 10..t + 2_000).step_by(20) {
                    d.heartbeat(&p, x);
                }
            }
            // Checked just before each heartbeat arrives.
            assert_eq!(
                d.liveness(&p, next - 1),
                Liveness::Up,
                "suspected {} ms after the last arrival (phi {})",
                next - 1 - t,
                d.phi(&p, next - 1)
            );
            d.heartbeat(&p, next);
            t = next;
        }
        // Even a late heartbeat (one and a half intervals) leaves it up.
        assert_eq!(d.liveness(&p, t + 9_000), Liveness::Up);
    }

    #[test]
    fn a_crash_is_suspected_then_known_down_within_bounds() {
        for interval in [100u64, 1_000, 6_000] {
            let cfg = DetectorConfig::for_interval(interval);
            let mut d = Detector::with_config(cfg);
            let p = NodeId::from("p");
            beats(&mut d, &p, 0, 60 * interval, interval, Some(interval / 10));
            let last = 60 * interval;
            // The bounds this detector documents: suspected within one interval plus the
            // acceptable pause plus 5.3 standard deviations (at least a quarter interval or
            // 250 ms each); known down, and routed around at once, within `down_after_ms`.
            let std_floor = (interval / 4).max(250);
            let suspect_by = interval + cfg.acceptable_pause_ms + 53 * std_floor / 10 + 1;
            assert_ne!(
                d.liveness(&p, last + suspect_by),
                Liveness::Up,
                "interval {interval}"
            );
            let down_by = 2 * (interval + cfg.acceptable_pause_ms) + 6 * std_floor;
            assert!(cfg.down_after_ms() <= down_by, "interval {interval}");
            assert_eq!(
                d.liveness(&p, last + down_by),
                Liveness::Down,
                "interval {interval}"
            );
            // Never down before it was suspected, and up for a whole interval.
            assert_eq!(
                d.liveness(&p, last + interval),
                Liveness::Up,
                "interval {interval}"
            );
            assert_ne!(
                d.liveness(&p, last + cfg.down_after_ms() - 1),
                Liveness::Down,
                "interval {interval}"
            );
        }
    }

    #[test]
    fn a_peer_never_heard_from_is_tried_until_silent_for_the_down_bound_since_start() {
        // A node that has just started has heard from nobody yet: its peers are asked (a
        // refusal before its first heartbeat round answers would fail requests a healthy
        // cluster can serve), but never counted up, and down once silent for as long as a
        // peer once heard would be.
        let cfg = DetectorConfig::for_interval(1_000);
        let start = 50_000;
        let mut d = Detector::with_config(cfg).started_at(start);
        let p = NodeId::from("p");
        assert_eq!(d.liveness(&p, start), Liveness::Suspected);
        assert!(!d.is_reachable(&p, start));
        assert_eq!(
            d.liveness(&p, start + cfg.down_after_ms() - 1),
            Liveness::Suspected
        );
        assert_eq!(d.liveness(&p, start + cfg.down_after_ms()), Liveness::Down);
        // Heard from: judged by its arrivals from then on.
        d.heartbeat(&p, start + 100);
        assert_eq!(d.liveness(&p, start + 200), Liveness::Up);
        // A refused connection or a going-down notice is down at once, heard from or not.
        let q = NodeId::from("q");
        d.suspect(&q, start + 10);
        assert_eq!(d.liveness(&q, start + 20), Liveness::Down);
        let r = NodeId::from("r");
        d.mark_down(&r, 1, start + 10, 30_000);
        assert_eq!(d.liveness(&r, start + 20), Liveness::Down);
        // A member forgotten (removed) is again one never heard from.
        d.forget(&p);
        assert_eq!(d.liveness(&p, start + 300), Liveness::Suspected);
    }

    #[test]
    fn suspected_is_not_down() {
        let cfg = DetectorConfig::for_interval(1_000);
        let mut d = Detector::with_config(cfg);
        let p = NodeId::from("p");
        beats(&mut d, &p, 0, 30_000, 1_000, None);
        // Past the threshold, yet well within the bound: suspected, still worth a try.
        let t = 30_000 + 6_000;
        assert!(
            d.phi(&p, t) >= DEFAULT_PHI_THRESHOLD,
            "phi {}",
            d.phi(&p, t)
        );
        assert!(!d.is_reachable(&p, t));
        assert_eq!(d.liveness(&p, t), Liveness::Suspected);
        // A refused connection, a going-down notice or a peer never heard from: down at once.
        d.suspect(&p, t);
        assert_eq!(d.liveness(&p, t), Liveness::Down);
        d.heartbeat(&p, t + 10);
        assert_eq!(d.liveness(&p, t + 20), Liveness::Up);
        d.mark_down(&p, 1, t + 30, 30_000);
        assert_eq!(d.liveness(&p, t + 40), Liveness::Down);
        assert_eq!(d.liveness(&NodeId::from("q"), t), Liveness::Down);
    }
}
