//! Reconnect backoff: a dead peer is dialled again only after an exponentially growing pause,
//! so a node never hammers it; calls in between fail fast.

use std::time::{Duration, Instant};

/// Pause after the first failed dial.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest pause between two dials of the same dead peer.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The pause after `failures` consecutive failed dials (0 failures: no pause).
pub fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(16);
    BACKOFF_BASE
        .checked_mul(1u32 << shift)
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

/// Dial history of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// Whether a dial may be attempted at `now`.
    pub fn may_dial(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// How long until the next dial is allowed.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.retry_at
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(Duration::ZERO)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failed dial at `now` and schedules the next allowed one.
    pub fn record_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + backoff_delay(self.failures));
    }

    /// A successful dial forgets the history.
    pub fn record_success(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_then_caps() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), BACKOFF_BASE);
        assert_eq!(backoff_delay(2), BACKOFF_BASE * 2);
        assert_eq!(backoff_delay(3), BACKOFF_BASE * 4);
        assert_eq!(backoff_delay(10), BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn failure_blocks_dials_until_the_pause_ends() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.may_dial(t0));
        b.record_failure(t0);
        assert!(!b.may_dial(t0));
        assert_eq!(b.remaining(t0), BACKOFF_BASE);
        assert!(b.may_dial(t0 + BACKOFF_BASE));
        b.record_failure(t0 + BACKOFF_BASE);
        assert!(!b.may_dial(t0 + BACKOFF_BASE * 2));
        assert!(b.may_dial(t0 + BACKOFF_BASE * 3));
        assert_eq!(b.failures(), 2);
        b.record_success();
        assert!(b.may_dial(t0));
        assert_eq!(b.failures(), 0);
    }

    proptest::proptest! {
        #[test]
        fn delay_is_monotonic_and_bounded(n in 0u32..200) {
            proptest::prop_assert!(backoff_delay(n) <= backoff_delay(n + 1));
            proptest::prop_assert!(backoff_delay(n) <= BACKOFF_MAX);
        }
    }
}
