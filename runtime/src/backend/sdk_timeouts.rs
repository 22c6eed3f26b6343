//! Every AWS call the worker makes is bounded in time, through the SDK's own
//! [`TimeoutConfig`]: a connection that goes silent becomes a timeout error, which is
//! retried with backoff like any transient failure, never a wait for as long as TCP
//! allows.
//!
//! A client's own timeouts win: spotq fills in only those its configuration leaves
//! unset (`aws_config::load_defaults` sets only the connect timeout, 3.1 s), with
//! [`ATTEMPT_TIMEOUT`] per attempt and [`OPERATION_TIMEOUT`] per call with the SDK's
//! retries. A long poll is given its wait on top of both.

use std::time::Duration;

use aws_smithy_types::timeout::TimeoutConfig;

/// The default limit on one attempt of a call (the SDK retries a timed-out attempt).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default limit on a call with all its SDK attempts.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeouts a client configured, with spotq's defaults for those it left unset.
pub(crate) fn with_defaults(configured: Option<&TimeoutConfig>) -> TimeoutConfig {
    let mut timeouts = configured
        .cloned()
        .unwrap_or_else(|| TimeoutConfig::builder().build());
    timeouts.take_defaults_from(
        &TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build(),
    );
    timeouts
}

/// The timeouts of a long poll that waits up to `wait`: the client's, each lengthened
/// by the wait (a timeout the client disabled stays disabled).
#[cfg(feature = "sqs")]
pub(crate) fn for_long_poll(client: &TimeoutConfig, wait: Duration) -> TimeoutConfig {
    let mut builder = TimeoutConfig::builder();
    if let Some(attempt) = client.operation_attempt_timeout() {
        builder = builder.operation_attempt_timeout(attempt + wait);
    }
    if let Some(operation) = client.operation_timeout() {
        builder = builder.operation_timeout(operation + wait);
    }
    let mut timeouts = builder.build();
    timeouts.take_defaults_from(client);
    timeouts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_s_own_timeouts_win_and_the_rest_get_the_defaults() {
        let defaults = with_defaults(None);
        assert_eq!(defaults.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(defaults.operation_timeout(), Some(OPERATION_TIMEOUT));

        let configured = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(4))
            .build();
        let timeouts = with_defaults(Some(&configured));
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(4))
        );
        assert_eq!(timeouts.operation_timeout(), Some(OPERATION_TIMEOUT));

        let disabled = with_defaults(Some(&TimeoutConfig::disabled()));
        assert_eq!(
            disabled.operation_timeout(),
            None,
            "disabled stays disabled"
        );
    }

    #[cfg(feature = "sqs")]
    #[test]
    fn a_long_poll_gets_its_wait_on_top_of_each_timeout() {
        let client = with_defaults(Some(
            &TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .build(),
        ));
        let poll = for_long_poll(&client, Duration::from_secs(20));
        assert_eq!(poll.connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(
            poll.operation_attempt_timeout(),
            Some(ATTEMPT_TIMEOUT + Duration::from_secs(20))
        );
        assert_eq!(
            poll.operation_timeout(),
            Some(OPERATION_TIMEOUT + Duration::from_secs(20))
        );
        let unbounded = for_long_poll(&TimeoutConfig::disabled(), Duration::from_secs(20));
        assert_eq!(unbounded.operation_attempt_timeout(), None);
    }
}
