//! One check per setting, shared by the `#[spotq::worker]` macro (at compile time, on the
//! literal written) and `WorkerConfig::validate` (at start): the same value fails both,
//! against the same limit, with the same words.
//!
//! Each entry of the [table](crate::for_each_setting) names its check as a function of
//! the setting's value ([`Checked`] says how a field or a key gives it) and of what it
//! reads of the other settings ([`Others`]); the runtime and the attribute run that one
//! function.

use std::fmt;
use std::time::Duration;

use crate::duration::display;
use crate::limits::{
    MAX_BACKLOG_INTERVAL, MAX_BATCH, MAX_FLUSH_INTERVAL, MAX_HANDLER_TIMEOUT, MAX_RELEASE_JITTER,
    MAX_STOP_TIMEOUT, MAX_VISIBILITY, MAX_WAIT, MIN_BACKLOG_INTERVAL, MIN_VISIBILITY,
};

/// A setting whose value is not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The setting, as the builder method and the attribute key spell it
    /// (`batch_size`; `retry_backoff.base` for a part of one).
    pub setting: &'static str,
    /// The value given, durations in their canonical form (`"21s"`).
    pub value: String,
    /// What is allowed, to follow "must be": `"1 to 10"`, `"at most 20s"`.
    pub expected: String,
    /// Why, where the limit is not obvious: `"SQS returns at most 10 messages per
    /// receive"`.
    pub reason: Option<&'static str>,
}

impl Invalid {
    fn new(setting: &'static str, value: impl fmt::Display, expected: impl Into<String>) -> Self {
        Self {
            setting,
            value: value.to_string(),
            expected: expected.into(),
            reason: None,
        }
    }

    fn duration(setting: &'static str, value: Duration, expected: impl Into<String>) -> Self {
        Self::new(setting, display(value), expected)
    }

    fn because(self, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..self
        }
    }

    /// What is allowed and why, in one phrase: `"1 to 10 (SQS returns at most 10
    /// messages per receive)"`.
    pub fn allowed(&self) -> String {
        match self.reason {
            Some(reason) => format!("{} ({reason})", self.expected),
            None => self.expected.clone(),
        }
    }
}

/// The rule, as a compile error pointing at the value states it: "`batch_size` must be
/// 1 to 10: SQS returns at most 10 messages per receive".
impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` must be {}", self.setting, self.expected)?;
        match self.reason {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Invalid {}

/// What the check of one setting reads of the others. `WorkerConfig::validate` fills it
/// from the config; the attribute from its keys, a key left out counting as its default
/// (and the queue's own visibility timeout as unknown until the worker starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Others {
    /// `concurrency`: `pollers` may not exceed it.
    pub concurrency: usize,
    /// `visibility_timeout`, where set: a heartbeat interval must be shorter, and so must
    /// a handler timeout without heartbeats.
    pub visibility_timeout: Option<Duration>,
    /// `heartbeat` is off: nothing extends the visibility of a running handler's message.
    pub heartbeat_off: bool,
}

/// A setting's value as its check takes it: a number or a duration as it is, the value
/// inside an `Option`, a string as `&str`. The runtime implements it for its own types
/// (a heartbeat gives its interval, a retry backoff its base and cap), the attribute for
/// the values it parses.
pub trait Checked<'a, T> {
    /// The value to check; `None` when there is nothing to check (an option left unset,
    /// a heartbeat that is not an interval).
    fn checked(&'a self) -> Option<T>;
}

impl<T: Copy> Checked<'_, T> for T {
    fn checked(&self) -> Option<T> {
        Some(*self)
    }
}

impl<T: Copy> Checked<'_, T> for Option<T> {
    fn checked(&self) -> Option<T> {
        *self
    }
}

impl<'a, T> Checked<'a, &'a T> for Option<T> {
    fn checked(&'a self) -> Option<&'a T> {
        self.as_ref()
    }
}

impl<'a> Checked<'a, &'a str> for Option<String> {
    fn checked(&'a self) -> Option<&'a str> {
        self.as_deref()
    }
}

/// `concurrency`: handlers running at once, at least 1.
pub fn concurrency(concurrency: usize) -> Result<(), Invalid> {
    if concurrency == 0 {
        return Err(Invalid::new("concurrency", concurrency, "at least 1"));
    }
    Ok(())
}

/// `pollers`: receive loops, 1 to `concurrency`.
pub fn pollers(pollers: usize, concurrency: usize) -> Result<(), Invalid> {
    if pollers == 0 || pollers > concurrency {
        return Err(Invalid::new(
            "pollers",
            pollers,
            format!("1 to `concurrency` ({concurrency})"),
        )
        .because("a poller only receives for free handler slots"));
    }
    Ok(())
}

/// `batch_size`: messages asked for per receive, 1 to [`MAX_BATCH`].
pub fn batch_size(batch_size: usize) -> Result<(), Invalid> {
    if !(1..=MAX_BATCH).contains(&batch_size) {
        return Err(
            Invalid::new("batch_size", batch_size, format!("1 to {MAX_BATCH}"))
                .because("SQS returns at most 10 messages per receive"),
        );
    }
    Ok(())
}

/// `wait_time`: the long poll of a receive, whole seconds up to [`MAX_WAIT`].
pub fn wait_time(wait_time: Duration) -> Result<(), Invalid> {
    at_most("wait_time", wait_time, MAX_WAIT)
        .map_err(|invalid| invalid.because("the longest long poll SQS allows"))?;
    whole_seconds("wait_time", wait_time, "SQS takes `WaitTimeSeconds`")
}

/// `visibility_timeout`: asked for on each receive, whole seconds from
/// [`MIN_VISIBILITY`] to [`MAX_VISIBILITY`].
pub fn visibility_timeout(visibility: Duration) -> Result<(), Invalid> {
    if !(MIN_VISIBILITY..=MAX_VISIBILITY).contains(&visibility) {
        return Err(Invalid::duration(
            "visibility_timeout",
            visibility,
            format!("{} to {}", display(MIN_VISIBILITY), display(MAX_VISIBILITY)),
        )
        .because("the range SQS allows"));
    }
    whole_seconds(
        "visibility_timeout",
        visibility,
        "SQS takes `VisibilityTimeout` in seconds",
    )
}

/// `handler_timeout`: above 0, at most [`MAX_HANDLER_TIMEOUT`]; with heartbeats off,
/// shorter than the visibility timeout where that is known
/// ([`handler_timeout_without_heartbeat`]).
pub fn handler_timeout(timeout: Duration, others: &Others) -> Result<(), Invalid> {
    if timeout.is_zero() || timeout > MAX_HANDLER_TIMEOUT {
        return Err(Invalid::duration(
            "handler_timeout",
            timeout,
            format!("above 0s and at most {}", display(MAX_HANDLER_TIMEOUT)),
        )
        .because(
            "SQS lets a message be held at most 12h from its receive, and heartbeats stop \
             1m short of that",
        ));
    }
    match others.visibility_timeout {
        Some(visibility) if others.heartbeat_off => {
            handler_timeout_without_heartbeat(timeout, visibility)
        }
        _ => Ok(()),
    }
}

/// `heartbeat` off on a FIFO queue whose messages run one at a time per group: refused.
/// The messages of a group wait behind each other with their visibility clocks running
/// from the receive, so without heartbeats a later message would lapse (and another
/// consumer run the group) while an earlier one runs.
pub fn heartbeat_off_with_fifo_groups() -> Result<(), Invalid> {
    Err(Invalid::new(
        "heartbeat",
        "off",
        "on (auto or an interval) on a FIFO queue (`fifo`, or a queue whose FifoQueue \
         attribute is true) with a per-message handler",
    )
    .because(
        "a group's messages wait behind each other; without heartbeats a waiting message's \
         visibility lapses and another consumer runs the group out of order",
    ))
}

/// `handler_timeout` where no heartbeat extends the visibility: shorter than the
/// visibility timeout.
pub fn handler_timeout_without_heartbeat(
    timeout: Duration,
    visibility: Duration,
) -> Result<(), Invalid> {
    if timeout >= visibility {
        return Err(Invalid::duration(
            "handler_timeout",
            timeout,
            format!(
                "shorter than the visibility timeout ({}) when heartbeats are off",
                display(visibility)
            ),
        )
        .because(
            "nothing extends the visibility, so the message would be received again while \
             its handler still runs",
        ));
    }
    Ok(())
}

/// `heartbeat`: an interval above 0, and shorter than the visibility timeout where
/// that is known.
pub fn heartbeat(interval: Duration, visibility: Option<Duration>) -> Result<(), Invalid> {
    if interval.is_zero() {
        return Err(Invalid::duration("heartbeat", interval, "above 0s"));
    }
    if let Some(visibility) = visibility
        && interval >= visibility
    {
        return Err(Invalid::duration(
            "heartbeat",
            interval,
            format!(
                "shorter than the visibility timeout ({})",
                display(visibility)
            ),
        )
        .because("each heartbeat extends the visibility before it runs out"));
    }
    Ok(())
}

/// `retry_backoff`: the first delay and the cap, base ≤ cap ≤ [`MAX_VISIBILITY`].
pub fn retry_backoff(base: Duration, max: Duration) -> Result<(), Invalid> {
    at_most("retry_backoff.max", max, MAX_VISIBILITY)
        .map_err(|invalid| invalid.because("the longest visibility timeout SQS allows"))?;
    if base > max {
        return Err(Invalid::duration(
            "retry_backoff.base",
            base,
            format!("at most the cap, `retry_backoff.max` ({})", display(max)),
        ));
    }
    Ok(())
}

/// `flush_interval`: at most [`MAX_FLUSH_INTERVAL`].
pub fn flush_interval(interval: Duration) -> Result<(), Invalid> {
    at_most("flush_interval", interval, MAX_FLUSH_INTERVAL)
}

/// `stop_timeout`: at most [`MAX_STOP_TIMEOUT`] (the shortest is the shutdown
/// contract's to say: what it needs after the grace period).
pub fn stop_timeout(stop_timeout: Duration) -> Result<(), Invalid> {
    at_most("stop_timeout", stop_timeout, MAX_STOP_TIMEOUT)
        .map_err(|invalid| invalid.because("the longest ECS `stopTimeout`"))
}

/// `release_jitter`: at most [`MAX_RELEASE_JITTER`].
pub fn release_jitter(jitter: Duration) -> Result<(), Invalid> {
    at_most("release_jitter", jitter, MAX_RELEASE_JITTER)
}

/// `backlog_interval`: from [`MIN_BACKLOG_INTERVAL`] to [`MAX_BACKLOG_INTERVAL`].
pub fn backlog_interval(interval: Duration) -> Result<(), Invalid> {
    if !(MIN_BACKLOG_INTERVAL..=MAX_BACKLOG_INTERVAL).contains(&interval) {
        return Err(Invalid::duration(
            "backlog_interval",
            interval,
            format!(
                "{} to {}",
                display(MIN_BACKLOG_INTERVAL),
                display(MAX_BACKLOG_INTERVAL)
            ),
        ));
    }
    Ok(())
}

/// `exit_after_empty_receives`: receives in a row that find the queue empty before a
/// worker running to completion exits, at least 1.
pub fn exit_after_empty_receives(receives: u32) -> Result<(), Invalid> {
    if receives == 0 {
        return Err(Invalid::new(
            "exit_after_empty_receives",
            receives,
            "at least 1",
        ));
    }
    Ok(())
}

/// `max_run_time`: how long a worker runs before it shuts down by itself, above 0.
pub fn max_run_time(limit: Duration) -> Result<(), Invalid> {
    if limit.is_zero() {
        return Err(Invalid::duration("max_run_time", limit, "above 0s"));
    }
    Ok(())
}

/// `name`: not empty.
pub fn name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::new("name", format!("{name:?}"), "non-empty")
            .because("it is the `worker` label of the metrics"));
    }
    Ok(())
}

fn at_most(setting: &'static str, value: Duration, max: Duration) -> Result<(), Invalid> {
    if value > max {
        return Err(Invalid::duration(
            setting,
            value,
            format!("at most {}", display(max)),
        ));
    }
    Ok(())
}

fn whole_seconds(
    setting: &'static str,
    value: Duration,
    reason: &'static str,
) -> Result<(), Invalid> {
    if value.subsec_nanos() != 0 {
        return Err(Invalid::duration(setting, value, "whole seconds").because(reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
