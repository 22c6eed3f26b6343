//! A worker's settings: [`WorkerConfig`], its defaults and validation, where its queue
//! comes from ([`QueueSource`]), and how failed messages are retried ([`RetryPolicy`],
//! [`Backoff`]).
//!
//! Every setting is checked before the worker makes its first queue call; a value out of
//! range is a [`ConfigError`] that names the setting and the allowed range.

pub(crate) mod fields;

use std::fmt;
use std::time::Duration;

use spotq_settings::{Invalid, check, defaults};

use crate::config::fields::config_fields;
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

config_fields! {
    /// The settings of one worker. Build it through [`Worker::builder`](crate::Worker::builder),
    /// whose setters carry the docs below, or write it with `..Default::default()`.
    ///
    /// The limits are spotq-settings' checks, the ones the `#[spotq::worker]` attribute
    /// runs on its arguments: [`validate`](Self::validate) refuses what the attribute
    /// refuses, with the same words.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct WorkerConfig {
        /// Handlers running at once, at least 1. Default 16.
        pub concurrency: usize,
        /// Receive loops, 1 to `concurrency`. Default: one per 10 slots of concurrency,
        /// at most 16.
        pub pollers: Option<usize> => Some(usize),
        /// Messages asked for per receive, 1 to 10. Default 10. A poller never asks for
        /// more than the free slots.
        pub batch_size: usize,
        /// Long-poll wait per receive, whole seconds, at most 20 s. Default 20 s.
        pub wait_time: Duration,
        /// Visibility timeout asked for on receive, whole seconds from 1 s to 12 h.
        /// Default: the queue's own.
        pub visibility_timeout: Option<Duration> => Some(Duration),
        /// Time a handler may run before it counts as failed, above 0 and at most 12 h.
        /// With heartbeats off, shorter than the visibility timeout. Default: none.
        pub handler_timeout: Option<Duration> => Some(Duration),
        /// How long-running handlers keep their messages invisible. Default: every half
        /// visibility timeout.
        pub heartbeat: Heartbeat,
        /// What happens to a message whose handler failed. Default: a backoff from 1 s
        /// to 5 min.
        pub retry: RetryPolicy,
        /// How long a partial batch waits to fill: deletes and visibility changes waiting
        /// for more entries, and, while every slot is in use, a poller waiting for more
        /// slots to come back before it receives. At most 1 s. Default 5 ms.
        pub flush_interval: Duration,
        /// The time between SIGTERM and SIGKILL (ECS `stopTimeout`), 3 s to 120 s.
        /// Default 30 s, as on Fargate; set 120 s for Spot tasks.
        pub stop_timeout: Duration,
        /// How long running handlers may continue after shutdown begins. It must leave
        /// 3 s of the stop timeout for releasing the messages of the handlers still
        /// running, flushing and exiting ([`shutdown::ROOM`](crate::shutdown::ROOM)).
        /// Default: the stop timeout less 5 s (less half of it, when that is shorter, but
        /// never less than 3 s).
        pub shutdown_grace: Option<Duration> => Some(Duration),
        /// Released messages become visible again after a random delay up to this (whole
        /// seconds), so that many stopping tasks do not hand a burst to one survivor.
        /// At most 60 s. Default 0: visible at once.
        pub release_jitter: Duration,
        /// Run to completion, for batch jobs (a standalone ECS task started for a
        /// backlog, which costs nothing once it exits): the worker shuts down by itself
        /// once this many receives in a row came back empty while it held no message
        /// (none running, none waiting behind its FIFO group, no delete or visibility
        /// change unsent). At least 1. Default: none, the worker runs until shutdown.
        ///
        /// The run then ends with [`StopReason::Drained`](crate::shutdown::StopReason::Drained),
        /// by the shutdown contract, and the binary exits 0
        /// ([`RunReport::exit_code`](crate::RunReport::exit_code)). With the default
        /// long poll (`wait_time` 20 s) one empty receive means no message became
        /// visible for 20 s; short polls (`wait_time` 0) sample only some of SQS's
        /// servers, so ask for more of them. A message waiting out a retry backoff (or
        /// a send delay) is invisible and held by no one: the worker may exit before it
        /// is visible again, and the next job task receives it. A queue that refuses
        /// five receives in a row (deleted, or access to it revoked) ends the run with
        /// [`StopReason::Fatal`](crate::shutdown::StopReason::Fatal): the job could never finish.
        pub exit_after_empty_receives: Option<u32> => Some(u32),
        /// The longest a worker runs: this long after it started, it shuts down as on
        /// SIGTERM (stops receiving, lets running handlers go on for the grace period,
        /// releases what it still holds) and the run ends with
        /// [`StopReason::MaxRunTime`](crate::shutdown::StopReason::MaxRunTime). Above 0.
        /// Default: no limit.
        pub max_run_time: Option<Duration> => Some(Duration),
        /// ECS task scale-in protection while handlers run, through the agent at
        /// `$ECS_AGENT_URI` (nothing happens where that is unset). `None` turns it off.
        /// Default: on, with [`ProtectionConfig::default`]. Feature `ecs`: without it
        /// there is no setting, and no protection.
        #[cfg(feature = "ecs")]
        #[cfg_attr(docsrs, doc(cfg(feature = "ecs")))]
        pub task_protection: Option<ProtectionConfig>,
        /// The `worker` label of the metrics, not empty. Default: the queue's name.
        pub name: Option<String> => Some(impl Into<String>),
        /// How often the backlog sampler reads the queue's approximate counts
        /// (`GetQueueAttributes`, one call each time). 1 s to 1 h; `None` turns it off.
        /// Default 20 s.
        pub backlog_interval: Option<Duration>,
        /// Tasks sharing the queue, for `spotq_backlog_per_task`. Without it, a worker in
        /// an ECS service reads its service's running count (task metadata, then
        /// `ecs:DescribeTasks` and `ecs:DescribeServices`; feature `ecs`); elsewhere the
        /// gauge is not published.
        pub running_tasks: Option<u64> => Some(u64),
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: defaults::CONCURRENCY,
            pollers: None,
            batch_size: defaults::BATCH_SIZE,
            wait_time: defaults::WAIT_TIME,
            visibility_timeout: None,
            handler_timeout: None,
            heartbeat: Heartbeat::Auto,
            retry: RetryPolicy::default(),
            flush_interval: defaults::FLUSH_INTERVAL,
            stop_timeout: defaults::STOP_TIMEOUT,
            shutdown_grace: None,
            release_jitter: Duration::ZERO,
            exit_after_empty_receives: None,
            max_run_time: None,
            #[cfg(feature = "ecs")]
            task_protection: Some(ProtectionConfig::default()),
            name: None,
            backlog_interval: Some(defaults::BACKLOG_INTERVAL),
            running_tasks: None,
        }
    }
}

impl WorkerConfig {
    /// Checks every setting that does not depend on the queue, with the checks the
    /// `#[spotq::worker]` attribute runs on its arguments.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::concurrency(self.concurrency)?;
        if let Some(pollers) = self.pollers {
            check::pollers(pollers, self.concurrency)?;
        }
        check::batch_size(self.batch_size)?;
        check::wait_time(self.wait_time)?;
        if let Some(visibility) = self.visibility_timeout {
            check::visibility_timeout(visibility)?;
        }
        if let Some(timeout) = self.handler_timeout {
            check::handler_timeout(timeout)?;
        }
        if let Heartbeat::Every(interval) = self.heartbeat {
            check::heartbeat(interval, self.visibility_timeout)?;
        }
        if let RetryPolicy::Backoff(backoff) = self.retry {
            check::retry_backoff(backoff.base, backoff.max)?;
        }
        check::flush_interval(self.flush_interval)?;
        check::release_jitter(self.release_jitter)?;
        if let Some(receives) = self.exit_after_empty_receives {
            check::exit_after_empty_receives(receives)?;
        }
        if let Some(limit) = self.max_run_time {
            check::max_run_time(limit)?;
        }
        if let Some(interval) = self.backlog_interval {
            check::backlog_interval(interval)?;
        }
        #[cfg(feature = "ecs")]
        if let Some(protection) = &self.task_protection {
            protection.validate()?;
        }
        if let Some(name) = &self.name {
            check::name(name)?;
        }
        check::stop_timeout(self.stop_timeout)?;
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
