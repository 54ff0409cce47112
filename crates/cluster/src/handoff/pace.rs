//! Pacing of ownership handoff: a byte limit per second, so a ring change cannot take the disk
//! and network from client traffic (Riak's `handoff_concurrency` bounds streams, not bytes,
//! and operators paid for it with latency spikes during every join).
//!
//! Pure: the time comes in as plain milliseconds and the answer is a duration to wait.

use std::time::Duration;

/// Unused allowance kept across idle time, in milliseconds: a stream that was idle may send
/// this much ahead of the limit, no more.
pub const BURST_MS: u64 = 1000;

/// How long to wait after `sent` bytes in `elapsed`, so the average stays at `rate` bytes per
/// second (0 = no limit).
pub fn wait_for(sent: u64, elapsed: Duration, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let due_ms = (u128::from(sent) * 1000).div_ceil(u128::from(rate));
    let due = Duration::from_millis(u64::try_from(due_ms).unwrap_or(u64::MAX));
    due.saturating_sub(elapsed)
}

/// The bytes charged since a window began, shared by every stream of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pacer {
    start_ms: u64,
    sent: u64,
}

impl Pacer {
    /// Charges `bytes` about to be sent at `now_ms` and returns how long to wait before
    /// sending them. Idle time beyond [`BURST_MS`] of allowance is not saved up: the window
    /// starts again.
    pub fn charge(&mut self, now_ms: u64, bytes: u64, rate: u64) -> Duration {
        if rate == 0 {
            return Duration::ZERO;
        }
        let elapsed = now_ms.saturating_sub(self.start_ms);
        let earned_ms =
            u64::try_from(u128::from(self.sent) * 1000 / u128::from(rate)).unwrap_or(u64::MAX);
        if elapsed > earned_ms.saturating_add(BURST_MS) {
            self.start_ms = now_ms;
            self.sent = 0;
        }
        self.sent = self.sent.saturating_add(bytes);
        wait_for(
            self.sent,
            Duration::from_millis(now_ms.saturating_sub(self.start_ms)),
            rate,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn no_limit_never_waits() {
        assert_eq!(wait_for(u64::MAX, Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(Pacer::default().charge(5, 1 << 40, 0), Duration::ZERO);
    }

    #[test]
    fn wait_is_what_the_bytes_are_ahead_of_the_rate() {
        // 1 MB at 1 MB/s is due after one second.
        assert_eq!(wait_for(1_000_000, Duration::ZERO, 1_000_000), MS(1000));
        assert_eq!(wait_for(1_000_000, MS(400), 1_000_000), MS(600));
        assert_eq!(wait_for(1_000_000, MS(1500), 1_000_000), Duration::ZERO);
        // A single byte at a low rate still waits its share, rounded up.
        assert_eq!(wait_for(1, Duration::ZERO, 3), MS(334));
    }

    #[test]
    fn streams_share_the_limit() {
        let mut p = Pacer::default();
        // Two streams charge 500 kB each at the same instant: the second waits for both.
        assert_eq!(p.charge(10_000, 500_000, 1_000_000), MS(500));
        assert_eq!(p.charge(10_000, 500_000, 1_000_000), MS(1000));
        // Half a second later the next chunk is due at 1.5 s from the start.
        assert_eq!(p.charge(10_500, 500_000, 1_000_000), MS(1000));
    }

    #[test]
    fn idle_time_is_not_saved_up() {
        let mut p = Pacer::default();
        p.charge(0, 1_000_000, 1_000_000);
        // An hour idle: the window restarts, so a burst pays as if it started now.
        assert_eq!(p.charge(3_600_000, 2_000_000, 1_000_000), MS(2000));
    }

    proptest! {
        /// Whatever the chunk sizes and pauses, sending only after each wait keeps the bytes
        /// sent within the rate plus one chunk and one burst of allowance, over every run.
        #[test]
        fn sending_after_each_wait_keeps_the_rate(
            rate in 1_000u64..10_000_000,
            chunks in proptest::collection::vec((1u64..5_000_000, 0u64..3_000), 1..40),
        ) {
            let mut p = Pacer::default();
            let mut now = 0u64;
            let mut total = 0u64;
            let mut biggest = 0u64;
            for (bytes, pause) in chunks {
                now += pause;
                let wait = p.charge(now, bytes, rate);
                now += u64::try_from(wait.as_millis()).unwrap();
                total += bytes;
                biggest = biggest.max(bytes);
                let allowed = u128::from(rate) * u128::from(now + BURST_MS) / 1000
                    + u128::from(biggest);
                prop_assert!(u128::from(total) <= allowed, "{total} bytes by {now} ms");
            }
        }
    }
}
