//! How long a read waits for a silent replica before asking another one (a hedged request):
//! pure, from this node's recent replica read latency.
//!
//! The estimate is the one TCP uses for its retransmission timer (a smoothed mean plus four
//! times the smoothed mean deviation), so the delay sits above the usual replica read and a
//! hedge fires only for an outlier. Bounds, because both ends are failure modes:
//! - below [`MIN_HEDGE`]: on an idle loopback or LAN a replica read takes well under a
//!   millisecond and its jitter is of the same size, so a delay of a few hundred microseconds
//!   would hedge a large share of healthy reads and double their replica work;
//! - above [`MAX_HEDGE`]: a replica that has stopped answering but is not yet marked down
//!   would otherwise make every read that asked it wait this long. The estimate only grows
//!   with answers that came back (a dead replica adds no sample), and the cap stops the
//!   feedback loop in which hedged, slower reads raise the delay that decides the next hedge.

use std::time::Duration;

/// Shortest wait before hedging, whatever the recent latency.
pub const MIN_HEDGE: Duration = Duration::from_millis(5);
/// Longest wait before hedging; also the wait before any latency has been seen.
pub const MAX_HEDGE: Duration = Duration::from_millis(200);

/// Smoothed replica read latency of this node, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaLatency {
    /// (smoothed mean, smoothed mean deviation); `None` before the first sample.
    estimate: Option<(u64, u64)>,
}

impl ReplicaLatency {
    /// Folds in the duration of one replica read that answered (gains 1/8 and 1/4).
    pub fn observe(&mut self, took: Duration) {
        let s = u64::try_from(took.as_micros()).unwrap_or(u64::MAX / 8);
        self.estimate = Some(match self.estimate {
            None => (s, s / 2),
            Some((mean, dev)) => {
                let diff = mean.abs_diff(s);
                let dev = dev - dev / 4 + diff / 4;
                let mean = mean - mean / 8 + s / 8;
                (mean, dev)
            }
        });
    }

    /// The wait before a read asks another replica for each one still silent.
    pub fn hedge_delay(&self) -> Duration {
        match self.estimate {
            None => MAX_HEDGE,
            Some((mean, dev)) => Duration::from_micros(mean.saturating_add(dev.saturating_mul(4)))
                .clamp(MIN_HEDGE, MAX_HEDGE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn before_any_sample_the_wait_is_the_longest() {
        assert_eq!(ReplicaLatency::default().hedge_delay(), MAX_HEDGE);
    }

    #[test]
    fn steady_latency_gives_a_delay_above_it() {
        let mut l = ReplicaLatency::default();
        for _ in 0..50 {
            l.observe(ms(20));
        }
        let d = l.hedge_delay();
        assert!(d >= ms(20) && d < ms(30), "{d:?}");
    }

    #[test]
    fn jitter_widens_the_delay() {
        let (mut steady, mut jittery) = (ReplicaLatency::default(), ReplicaLatency::default());
        for i in 0..50 {
            steady.observe(ms(20));
            jittery.observe(ms(if i % 2 == 0 { 10 } else { 30 }));
        }
        assert!(jittery.hedge_delay() > steady.hedge_delay() + ms(10));
    }

    #[test]
    fn fast_replicas_are_bounded_below_and_slow_ones_above() {
        let mut fast = ReplicaLatency::default();
        let mut slow = ReplicaLatency::default();
        for _ in 0..50 {
            fast.observe(Duration::from_micros(150));
            slow.observe(Duration::from_secs(5));
        }
        assert_eq!(fast.hedge_delay(), MIN_HEDGE);
        assert_eq!(slow.hedge_delay(), MAX_HEDGE);
    }

    proptest! {
        /// Whatever the samples, the delay stays within its bounds.
        #[test]
        fn the_delay_stays_within_bounds(samples in proptest::collection::vec(0u64..10_000_000, 0..40)) {
            let mut l = ReplicaLatency::default();
            for s in samples {
                l.observe(Duration::from_micros(s));
                let d = l.hedge_delay();
                prop_assert!((MIN_HEDGE..=MAX_HEDGE).contains(&d));
            }
        }
    }
}
