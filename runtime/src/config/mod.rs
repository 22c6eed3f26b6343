//! A worker's settings: [`WorkerConfig`], its defaults and validation, where its queue
//! comes from ([`QueueSource`]), and how failed messages are retried ([`RetryPolicy`],
//! [`Backoff`]).
//!
//! Every setting is checked before the worker makes its first queue call; a value out of
//! range is a [`ConfigError`] that names the setting and the allowed range.

pub(crate) mod fields;

use std::fmt;
use std::time::Duration;

use spotq_settings::{Checked, Invalid, check, defaults};

#[cfg(feature = "ecs")]
use crate::ecs::protection::ProtectionConfig;

pub use crate::backoff::Backoff;
pub use crate::error::ConfigError;

/// Where a worker's queue comes from: a name or URL fixed in the code, or an
/// environment variable read when the worker starts (queue URLs differ per deployment).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueSource {
    /// A queue name (resolved with `GetQueueUrl`) or URL.
    Name(&'static str),
    /// The environment variable that holds the queue's name or URL.
    Env(&'static str),
}

impl QueueSource {
    /// A queue name or URL.
    pub const fn name(queue: &'static str) -> Self {
        Self::Name(queue)
    }

    /// The environment variable that holds the queue's name or URL.
    pub const fn env(variable: &'static str) -> Self {
        Self::Env(variable)
    }

    /// The queue's name or URL; an unset or empty variable is an error that names it.
    pub fn resolve(&self) -> Result<String, ConfigError> {
        match *self {
            Self::Name(queue) => Ok(queue.to_owned()),
            Self::Env(variable) => match std::env::var(variable) {
                Ok(queue) if !queue.trim().is_empty() => Ok(queue),
                _ => Err(ConfigError::new(
                    "queue",
                    format!("env({variable})"),
                    format!("set the environment variable `{variable}` to a queue name or URL"),
                )),
            },
        }
    }
}

impl fmt::Display for QueueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(queue) => f.write_str(queue),
            Self::Env(variable) => write!(f, "${variable}"),
        }
    }
}

/// What happens to a message whose handler failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Make the message visible again after a backoff that grows with its receive count,
    /// by changing its visibility timeout.
    Backoff(Backoff),
    /// Leave the message alone: it becomes visible again when its visibility timeout
    /// lapses.
    VisibilityTimeout,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::Backoff(Backoff::new(defaults::RETRY_BASE, defaults::RETRY_MAX))
    }
}

/// How a long-running handler keeps its message invisible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Heartbeat {
    /// Extend the visibility every half visibility timeout (the default).
    #[default]
    Auto,
    /// Extend the visibility at this interval; it must be shorter than the visibility
    /// timeout.
    Every(Duration),
    /// Never extend: a handler that outlives the visibility timeout lets its message be
    /// received again elsewhere.
    Off,
}

// `WorkerConfig`: one field per setting of spotq-settings' table, with its doc, its
// default and its check; and the builder's setters (`config_setters!`). See `fields`.
spotq_settings::for_each_setting!(crate::config::fields::declare);

/// A heartbeat's check takes its interval; `Auto` and `Off` have nothing to check.
impl Checked<'_, Duration> for Heartbeat {
    fn checked(&self) -> Option<Duration> {
        match *self {
            Self::Every(interval) => Some(interval),
            Self::Auto | Self::Off => None,
        }
    }
}

/// A retry policy's check takes its backoff's first delay and cap.
impl Checked<'_, (Duration, Duration)> for RetryPolicy {
    fn checked(&self) -> Option<(Duration, Duration)> {
        match *self {
            Self::Backoff(backoff) => Some((backoff.base, backoff.max)),
            Self::VisibilityTimeout => None,
        }
    }
}

impl WorkerConfig {
    /// Checks every setting that does not depend on the queue, with the checks the
    /// `#[spotq::worker]` attribute runs on its arguments, and the shutdown contract's
    /// check of the stop timeout and the grace period together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_each()?;
        self.grace_period()?;
        Ok(())
    }

    /// The grace period these settings give running handlers once shutdown begins:
    /// [`shutdown_grace`](Self::shutdown_grace), or the default derived from
    /// [`stop_timeout`](Self::stop_timeout); an error when it leaves no room to release,
    /// flush and exit before SIGKILL.
    pub fn grace_period(&self) -> Result<Duration, ConfigError> {
        crate::contract::plan(self.stop_timeout, self.shutdown_grace)
    }

    /// The settings that depend on the queue's own visibility timeout, resolved and checked.
    /// `serial_groups`: the messages of a FIFO group run one after another (a FIFO queue
    /// with a per-message handler), which needs heartbeats.
    pub(crate) fn resolve(
        &self,
        queue_visibility: Duration,
        serial_groups: bool,
    ) -> Result<Resolved, ConfigError> {
        self.validate()?;
        let visibility = match self.visibility_timeout {
            Some(visibility) => visibility,
            None => {
                check::visibility_timeout(queue_visibility).map_err(|invalid| Invalid {
                    setting: "queue VisibilityTimeout",
                    ..invalid
                })?;
                queue_visibility
            }
        };
        let heartbeat = match self.heartbeat {
            Heartbeat::Off => None,
            Heartbeat::Auto => Some(visibility / 2),
            Heartbeat::Every(interval) => {
                check::heartbeat(interval, Some(visibility))?;
                Some(interval)
            }
        };
        if heartbeat.is_none() && serial_groups {
            check::heartbeat_off_with_fifo_groups()?;
        }
        if let (Some(timeout), None) = (self.handler_timeout, heartbeat) {
            check::handler_timeout_without_heartbeat(timeout, visibility)?;
        }
        let pollers = self
            .pollers
            .unwrap_or_else(|| defaults::pollers(self.concurrency));
        let grace = self.grace_period()?;
        Ok(Resolved {
            visibility,
            heartbeat,
            pollers,
            grace,
        })
    }
}

/// Settings resolved against the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub visibility: Duration,
    pub heartbeat: Option<Duration>,
    pub pollers: usize,
    pub grace: Duration,
}

#[cfg(test)]
mod tests {
    use spotq_settings::limits::MAX_VISIBILITY;

    use super::*;

    fn setting_of(config: WorkerConfig) -> &'static str {
        match config.validate() {
            Err(error) => error.setting,
            Ok(()) => "(valid)",
        }
    }

    #[test]
    fn defaults_are_valid() {
        let resolved = WorkerConfig::default()
            .resolve(Duration::from_secs(30), false)
            .expect("defaults are valid");
        assert_eq!(resolved.heartbeat, Some(Duration::from_secs(15)));
        assert_eq!(resolved.pollers, 2);
        assert_eq!(resolved.grace, Duration::from_secs(25));
    }

    #[test]
    fn each_out_of_range_setting_is_named() {
        let base = WorkerConfig::default;
        let cases = [
            (
                WorkerConfig {
                    concurrency: 0,
                    ..base()
                },
                "concurrency",
            ),
            (
                WorkerConfig {
                    pollers: Some(0),
                    ..base()
                },
                "pollers",
            ),
            (
                WorkerConfig {
                    batch_size: 0,
                    ..base()
                },
                "batch_size",
            ),
            (
                WorkerConfig {
                    batch_size: 11,
                    ..base()
                },
                "batch_size",
            ),
            (
                WorkerConfig {
                    wait_time: Duration::from_secs(21),
                    ..base()
                },
                "wait_time",
            ),
            (
                WorkerConfig {
                    visibility_timeout: Some(MAX_VISIBILITY + Duration::from_secs(1)),
                    ..base()
                },
                "visibility_timeout",
            ),
            (
                WorkerConfig {
                    visibility_timeout: Some(Duration::ZERO),
                    ..base()
                },
                "visibility_timeout",
            ),
            (
                WorkerConfig {
                    handler_timeout: Some(Duration::ZERO),
                    ..base()
                },
                "handler_timeout",
            ),
            (
                WorkerConfig {
                    heartbeat: Heartbeat::Every(Duration::ZERO),
                    ..base()
                },
                "heartbeat",
            ),
            (
                WorkerConfig {
                    retry: RetryPolicy::Backoff(Backoff::new(
                        Duration::from_secs(10),
                        Duration::from_secs(1),
                    )),
                    ..base()
                },
                "retry_backoff.base",
            ),
            (
                WorkerConfig {
                    flush_interval: Duration::from_secs(2),
                    ..base()
                },
                "flush_interval",
            ),
            (
                WorkerConfig {
                    stop_timeout: Duration::from_secs(121),
                    ..base()
                },
                "stop_timeout",
            ),
            (
                WorkerConfig {
                    shutdown_grace: Some(Duration::from_secs(30)),
                    ..base()
                },
                "shutdown_grace",
            ),
            (
                // Grace close to the stop timeout: nothing left to release in.
                WorkerConfig {
                    stop_timeout: Duration::from_secs(4),
                    shutdown_grace: Some(Duration::from_millis(3500)),
                    ..base()
                },
                "shutdown_grace",
            ),
            (
                WorkerConfig {
                    stop_timeout: Duration::from_secs(2),
                    ..base()
                },
                "stop_timeout",
            ),
            (
                WorkerConfig {
                    release_jitter: Duration::from_secs(61),
                    ..base()
                },
                "release_jitter",
            ),
            (
                // SQS takes whole seconds: a fraction is refused, not rounded.
                WorkerConfig {
                    wait_time: Duration::from_millis(1_500),
                    ..base()
                },
                "wait_time",
            ),
            (
                WorkerConfig {
                    visibility_timeout: Some(Duration::from_millis(1_500)),
                    ..base()
                },
                "visibility_timeout",
            ),
            (
                WorkerConfig {
                    visibility_timeout: Some(Duration::from_secs(10)),
                    heartbeat: Heartbeat::Every(Duration::from_secs(10)),
                    ..base()
                },
                "heartbeat",
            ),
            (
                WorkerConfig {
                    name: Some(String::new()),
                    ..base()
                },
                "name",
            ),
            (
                WorkerConfig {
                    exit_after_empty_receives: Some(0),
                    ..base()
                },
                "exit_after_empty_receives",
            ),
            (
                WorkerConfig {
                    max_run_time: Some(Duration::ZERO),
                    ..base()
                },
                "max_run_time",
            ),
        ];
        for (config, setting) in cases {
            assert_eq!(setting_of(config), setting);
        }
    }

    #[test]
    fn the_error_names_the_setting_the_value_and_the_limit() {
        let error = WorkerConfig {
            batch_size: 11,
            ..WorkerConfig::default()
        }
        .validate()
        .expect_err("11 messages");
        assert_eq!(
            error.to_string(),
            "invalid setting `batch_size` = 11: 1 to 10 (SQS returns at most 10 messages per receive)"
        );
        let error = WorkerConfig {
            wait_time: Duration::from_secs(21),
            ..WorkerConfig::default()
        }
        .validate()
        .expect_err("21 s");
        assert_eq!((error.value.as_str(), error.setting), ("21s", "wait_time"));
    }

    #[test]
    fn the_queue_s_own_visibility_timeout_is_checked_at_start() {
        let error = WorkerConfig::default()
            .resolve(Duration::ZERO, false)
            .expect_err("a visibility timeout of 0");
        assert_eq!(error.setting, "queue VisibilityTimeout");
        assert!(error.allowed.starts_with("1s to 12h"), "{error}");
    }

    #[test]
    fn heartbeat_must_be_shorter_than_visibility() {
        let config = WorkerConfig {
            visibility_timeout: Some(Duration::from_secs(10)),
            heartbeat: Heartbeat::Every(Duration::from_secs(10)),
            ..WorkerConfig::default()
        };
        let error = config
            .resolve(Duration::from_secs(30), false)
            .expect_err("heartbeat too long");
        assert_eq!(error.setting, "heartbeat");
        assert!(
            error
                .to_string()
                .contains("shorter than the visibility timeout (10s)"),
            "{error}"
        );
    }

    #[test]
    fn handler_timeout_without_heartbeat_must_fit_visibility() {
        let config = WorkerConfig {
            handler_timeout: Some(Duration::from_secs(60)),
            heartbeat: Heartbeat::Off,
            ..WorkerConfig::default()
        };
        let error = config
            .resolve(Duration::from_secs(30), false)
            .expect_err("timeout too long");
        assert_eq!(error.setting, "handler_timeout");
        let with_heartbeat = WorkerConfig {
            heartbeat: Heartbeat::Auto,
            ..config
        };
        assert!(
            with_heartbeat
                .resolve(Duration::from_secs(30), false)
                .is_ok()
        );
    }

    #[test]
    fn heartbeat_off_is_refused_where_fifo_groups_run_one_message_at_a_time() {
        let off = WorkerConfig {
            heartbeat: Heartbeat::Off,
            ..WorkerConfig::default()
        };
        let error = off
            .resolve(Duration::from_secs(30), true)
            .expect_err("a group's waiting messages would lapse");
        assert_eq!(error.setting, "heartbeat");
        assert!(error.to_string().contains("FIFO"), "{error}");
        // A standard queue, or a batch handler on a FIFO queue, may run without.
        assert!(off.resolve(Duration::from_secs(30), false).is_ok());
        let auto = WorkerConfig::default();
        assert!(auto.resolve(Duration::from_secs(30), true).is_ok());
    }
}
