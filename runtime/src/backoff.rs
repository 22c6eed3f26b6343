//! Exponential backoff with jitter, for failed messages and failed queue calls.

use std::time::Duration;

/// Exponential backoff: `base · 2^(attempt − 1)`, capped at `max`, with "equal jitter"
/// (a uniform pick in the upper half) so that many workers failing together spread out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay of the first attempt (before jitter).
    pub base: Duration,
    /// The cap on any delay.
    pub max: Duration,
    /// Whether to spread delays over `[d/2, d]`.
    pub jitter: bool,
}

impl Backoff {
    /// A jittered backoff from `base` up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: true,
        }
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let full = self
            .base
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |delay| delay.min(self.max));
        if !self.jitter || full.is_zero() {
            return full;
        }
        let half = full / 2;
        let spread = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=spread))
    }
}

/// Backoff for retrying queue calls that failed as a whole (throttling, 5xx, network).
pub(crate) const CALL_RETRY: Backoff =
    Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
            jitter: false,
        };
        let delays: Vec<_> = (1..=6).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
        for _ in 0..1000 {
            let delay = backoff.delay(2);
            assert!(
                delay >= Duration::from_secs(4) && delay <= Duration::from_secs(8),
                "{delay:?}"
            );
        }
    }
}
