//! Exponential backoff with jitter, for failed messages and failed queue calls, and
//! [`retry`], the one loop that repeats a failed call.

use std::fmt::Display;
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

/// Runs `call` until it succeeds, fails for good, or `attempts` tries are used up,
/// waiting `backoff.delay(n)` before retry number `n`.
///
/// `is_retryable` sees every failure, in order, including the last one (so it is also
/// the place to log or count them); a failure it calls permanent is returned at once.
/// `attempts` counts the first try: 0 and 1 both mean a single try. Each retry is
/// logged at debug level with its attempt number, delay and error.
///
/// ```
/// use std::time::Duration;
/// use spotq::{config::Backoff, backend::retry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut tries = 0;
/// let result: Result<u32, String> = retry(
///     Backoff::new(Duration::from_millis(1), Duration::from_millis(10)),
///     3,
///     |error: &String| error.as_str() == "throttled",
///     || {
///         tries += 1;
///         let outcome = if tries < 3 { Err("throttled".to_owned()) } else { Ok(tries) };
///         async move { outcome }
///     },
/// )
/// .await;
/// assert_eq!(result, Ok(3));
/// # }
/// ```
pub async fn retry<T, E, Fut>(
    backoff: Backoff,
    attempts: u32,
    mut is_retryable: impl FnMut(&E) -> bool,
    mut call: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: Display,
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = attempts.max(1);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                if !is_retryable(&error) || attempt >= attempts {
                    return Err(error);
                }
                let delay = backoff.delay(attempt);
                tracing::debug!(attempt, of = attempts, ?delay, %error, "retrying a failed call");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::time::Instant;

    use super::*;

    const STEADY: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(3),
        jitter: false,
    };

    /// A call that fails with its try number until try `succeeds_on`.
    fn flaky(
        tries: &Cell<u32>,
        succeeds_on: u32,
    ) -> impl FnMut() -> std::future::Ready<Result<u32, u32>> + '_ {
        move || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            std::future::ready(if n >= succeeds_on { Ok(n) } else { Err(n) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_the_backoff_s_delays_until_the_call_succeeds() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let result = retry(STEADY, 5, |_| true, flaky(&tries, 4)).await;
        assert_eq!(result, Ok(4));
        // 1 s + 2 s + 3 s (capped) before tries 2, 3 and 4.
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_attempts_with_the_last_error() {
        let tries = Cell::new(0);
        let mut seen = Vec::new();
        let start = Instant::now();
        let result = retry(
            STEADY,
            3,
            |error: &u32| {
                seen.push(*error);
                true
            },
            flaky(&tries, u32::MAX),
        )
        .await;
        assert_eq!(result, Err(3));
        assert_eq!(seen, [1, 2, 3], "every failure is seen, the last one too");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "no wait after the last"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_returns_at_once() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let result = retry(
            STEADY,
            10,
            |error: &u32| *error < 2,
            flaky(&tries, u32::MAX),
        )
        .await;
        assert_eq!(result, Err(2));
        assert_eq!(tries.get(), 2);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_attempts_is_one_try() {
        let tries = Cell::new(0);
        let result = retry(STEADY, 0, |_| true, flaky(&tries, u32::MAX)).await;
        assert_eq!(result, Err(1));
        assert_eq!(tries.get(), 1);
    }

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
