//! What a setting is when it is not given.

use std::time::Duration;

use crate::limits::{MAX_BATCH, MAX_WAIT};

/// Handlers running at once.
pub const CONCURRENCY: usize = 16;
/// The most receive loops a worker starts by itself (see [`pollers`]).
pub const MAX_POLLERS: usize = 16;
/// Messages asked for per receive: as many as SQS returns.
pub const BATCH_SIZE: usize = MAX_BATCH;
/// The long poll of a receive: the longest, which costs the fewest empty receives.
pub const WAIT_TIME: Duration = MAX_WAIT;
/// The first delay of the retry backoff.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// The cap of the retry backoff.
pub const RETRY_MAX: Duration = Duration::from_secs(5 * 60);
/// How long a partial batch waits to fill.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// The time between SIGTERM and SIGKILL: Fargate's default `stopTimeout`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The time between two reads of the queue's approximate counts.
pub const BACKLOG_INTERVAL: Duration = Duration::from_secs(20);

/// The receive loops for `concurrency` handlers when `pollers` is not given: one per
/// [`MAX_BATCH`] slots, at least 1 and at most [`MAX_POLLERS`].
pub fn pollers(concurrency: usize) -> usize {
    concurrency.div_ceil(MAX_BATCH).clamp(1, MAX_POLLERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_poller_per_ten_slots() {
        assert_eq!(pollers(0), 1);
        assert_eq!(pollers(1), 1);
        assert_eq!(pollers(10), 1);
        assert_eq!(pollers(11), 2);
        assert_eq!(pollers(CONCURRENCY), 2);
        assert_eq!(pollers(160), 16);
        assert_eq!(pollers(10_000), MAX_POLLERS);
    }
}
