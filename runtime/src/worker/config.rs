//! Worker settings, their defaults, and their validation.
//!
//! Every setting is checked before the worker makes its first queue call; a value out of
//! range is a [`ConfigError`] that names the setting and the allowed range.

use std::time::Duration;

use crate::backend::{MAX_BATCH, MAX_VISIBILITY, MAX_WAIT};
use crate::backoff::Backoff;
#[cfg(feature = "ecs")]
use crate::ecs::protection::ProtectionConfig;
use crate::error::ConfigError;

/// The longest ECS `stopTimeout`: the time between SIGTERM and SIGKILL.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(120);

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
        Self::Backoff(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(300),
        ))
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

/// CloudWatch Embedded Metric Format output of a worker: one JSON line per interval
/// (on stdout, where the awslogs driver ships it to CloudWatch, which turns it into
/// metrics with no API call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmfSettings {
    /// The CloudWatch namespace, e.g. `Spotq`.
    pub namespace: String,
    /// The `ServiceName` dimension: the ECS service the worker runs in.
    pub service_name: String,
    /// Time between lines, at least 1 s. 60 s matches CloudWatch's standard resolution.
    pub interval: Duration,
}

impl EmfSettings {
    /// A line every minute into `namespace`, for the ECS service `service_name`.
    pub fn new(namespace: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            service_name: service_name.into(),
            interval: Duration::from_secs(60),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "emf.interval",
                self.interval,
                "at least 1 s",
            ));
        }
        Ok(())
    }
}

/// The settings of one worker. Build it through [`Worker::builder`](crate::Worker::builder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Handlers running at once, at least 1. Default 16.
    pub concurrency: usize,
    /// Receive loops, at least 1. Default: one per 10 permits of concurrency, at most 16.
    pub pollers: Option<usize>,
    /// Messages asked for per receive, 1 to 10. Default 10. A poller never asks for more
    /// than the free permits.
    pub batch_size: usize,
    /// Long-poll wait per receive, at most 20 s. Default 20 s.
    pub wait_time: Duration,
    /// Visibility timeout asked for on receive, 1 s to 12 h; the queue's own when `None`.
    pub visibility_timeout: Option<Duration>,
    /// Time a handler may run before it counts as failed, if any.
    pub handler_timeout: Option<Duration>,
    /// How long-running handlers keep their messages invisible.
    pub heartbeat: Heartbeat,
    /// What happens to a message whose handler failed.
    pub retry: RetryPolicy,
    /// How long a partial batch waits to fill: deletes and visibility changes waiting for
    /// more entries, and, while every permit is in use, a poller waiting for more permits
    /// to come back before it receives. At most 1 s. Default 5 ms.
    pub flush_interval: Duration,
    /// The time between SIGTERM and SIGKILL (ECS `stopTimeout`), 3 s to 120 s.
    /// Default 30 s, as on Fargate; set 120 s for Spot tasks.
    pub stop_timeout: Duration,
    /// How long running handlers may continue after shutdown begins. It must leave 3 s
    /// of the stop timeout for releasing the messages of the handlers still running,
    /// flushing and exiting ([`shutdown::ROOM`](crate::shutdown::ROOM)). Default: the
    /// stop timeout less 5 s (less half of it, when that is shorter, but never less than
    /// 3 s).
    pub shutdown_grace: Option<Duration>,
    /// Released messages become visible again after a random delay up to this (whole
    /// seconds), so that many stopping tasks do not hand a burst to one survivor.
    /// At most 60 s. Default 0: visible at once.
    pub release_jitter: Duration,
    /// ECS task scale-in protection while handlers run, through the agent at
    /// `$ECS_AGENT_URI` (nothing happens where that is unset). `None` turns it off.
    /// Default: on, with [`ProtectionConfig::default`]. Feature `ecs`: without it there
    /// is no setting, and no protection.
    #[cfg(feature = "ecs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ecs")))]
    pub task_protection: Option<ProtectionConfig>,
    /// The `worker` label of the metrics; the queue's name when `None`.
    pub name: Option<String>,
    /// How often the backlog sampler reads the queue's approximate counts
    /// (`GetQueueAttributes`, one call each time). 1 s to 1 h; `None` turns it off.
    /// Default 20 s.
    pub backlog_interval: Option<Duration>,
    /// Tasks sharing the queue, for `spotq_backlog_per_task`. Without it, a worker in an
    /// ECS service reads its service's running count (task metadata, then
    /// `ecs:DescribeTasks` and `ecs:DescribeServices`; feature `ecs`); elsewhere the
    /// gauge is not published.
    pub running_tasks: Option<u64>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            pollers: None,
            batch_size: MAX_BATCH,
            wait_time: MAX_WAIT,
            visibility_timeout: None,
            handler_timeout: None,
            heartbeat: Heartbeat::Auto,
            retry: RetryPolicy::default(),
            flush_interval: Duration::from_millis(5),
            stop_timeout: Duration::from_secs(30),
            shutdown_grace: None,
            release_jitter: Duration::ZERO,
            #[cfg(feature = "ecs")]
            task_protection: Some(ProtectionConfig::default()),
            name: None,
            backlog_interval: Some(Duration::from_secs(20)),
            running_tasks: None,
        }
    }
}

impl WorkerConfig {
    /// Checks every setting that does not depend on the queue.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 {
            return Err(ConfigError::new(
                "concurrency",
                self.concurrency,
                "at least 1",
            ));
        }
        if let Some(pollers) = self.pollers
            && (pollers == 0 || pollers > self.concurrency)
        {
            return Err(ConfigError::new(
                "pollers",
                pollers,
                format!("1 to concurrency ({})", self.concurrency),
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(ConfigError::new("batch_size", self.batch_size, "1 to 10"));
        }
        if self.wait_time > MAX_WAIT {
            return Err(ConfigError::new("wait_time", self.wait_time, "0 s to 20 s"));
        }
        if let Some(visibility) = self.visibility_timeout {
            check_visibility("visibility_timeout", visibility)?;
        }
        if let Some(timeout) = self.handler_timeout
            && (timeout.is_zero() || timeout > MAX_VISIBILITY)
        {
            return Err(ConfigError::new(
                "handler_timeout",
                timeout,
                "above 0 s, at most 12 h",
            ));
        }
        if let Heartbeat::Every(interval) = self.heartbeat
            && interval.is_zero()
        {
            return Err(ConfigError::new("heartbeat", interval, "above 0 s"));
        }
        if let RetryPolicy::Backoff(backoff) = self.retry {
            if backoff.max > MAX_VISIBILITY {
                return Err(ConfigError::new(
                    "retry_backoff.max",
                    backoff.max,
                    "at most 12 h",
                ));
            }
            if backoff.base > backoff.max {
                return Err(ConfigError::new(
                    "retry_backoff.base",
                    backoff.base,
                    format!("at most retry_backoff.max ({:?})", backoff.max),
                ));
            }
        }
        if self.flush_interval > Duration::from_secs(1) {
            return Err(ConfigError::new(
                "flush_interval",
                self.flush_interval,
                "at most 1 s",
            ));
        }
        if self.release_jitter > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "release_jitter",
                self.release_jitter,
                "at most 60 s",
            ));
        }
        if let Some(interval) = self.backlog_interval
            && (interval < Duration::from_secs(1) || interval > Duration::from_secs(3600))
        {
            return Err(ConfigError::new("backlog_interval", interval, "1 s to 1 h"));
        }
        #[cfg(feature = "ecs")]
        if let Some(protection) = &self.task_protection {
            protection.validate()?;
        }
        if self.stop_timeout > MAX_STOP_TIMEOUT {
            return Err(ConfigError::new(
                "stop_timeout",
                self.stop_timeout,
                "at most 120 s",
            ));
        }
        self.grace_period()?;
        Ok(())
    }

    /// The grace period these settings give running handlers once shutdown begins:
    /// [`shutdown_grace`](Self::shutdown_grace), or the default derived from
    /// [`stop_timeout`](Self::stop_timeout); an error when it leaves no room to release,
    /// flush and exit before SIGKILL.
    pub fn grace_period(&self) -> Result<Duration, ConfigError> {
        crate::shutdown::plan(self.stop_timeout, self.shutdown_grace)
    }

    /// The settings that depend on the queue's own visibility timeout, resolved and checked.
    pub(crate) fn resolve(&self, queue_visibility: Duration) -> Result<Resolved, ConfigError> {
        self.validate()?;
        let visibility = match self.visibility_timeout {
            Some(visibility) => visibility,
            None => {
                check_visibility("queue VisibilityTimeout", queue_visibility)?;
                queue_visibility
            }
        };
        let heartbeat = match self.heartbeat {
            Heartbeat::Off => None,
            Heartbeat::Auto => Some(visibility / 2),
            Heartbeat::Every(interval) if interval < visibility => Some(interval),
            Heartbeat::Every(interval) => {
                return Err(ConfigError::new(
                    "heartbeat",
                    interval,
                    format!("below the visibility timeout ({visibility:?})"),
                ));
            }
        };
        if let (Some(timeout), None) = (self.handler_timeout, heartbeat)
            && timeout >= visibility
        {
            return Err(ConfigError::new(
                "handler_timeout",
                timeout,
                format!(
                    "below the visibility timeout ({visibility:?}) when heartbeats are off, \
                     or the message is received again while its handler still runs"
                ),
            ));
        }
        let pollers = self
            .pollers
            .unwrap_or_else(|| self.concurrency.div_ceil(MAX_BATCH).clamp(1, 16));
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

fn check_visibility(setting: &'static str, visibility: Duration) -> Result<(), ConfigError> {
    if visibility < Duration::from_secs(1) || visibility > MAX_VISIBILITY {
        return Err(ConfigError::new(setting, visibility, "1 s to 12 h"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
            .resolve(Duration::from_secs(30))
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
        ];
        for (config, setting) in cases {
            assert_eq!(setting_of(config), setting);
        }
    }

    #[test]
    fn heartbeat_must_be_shorter_than_visibility() {
        let config = WorkerConfig {
            visibility_timeout: Some(Duration::from_secs(10)),
            heartbeat: Heartbeat::Every(Duration::from_secs(10)),
            ..WorkerConfig::default()
        };
        let error = config
            .resolve(Duration::from_secs(30))
            .expect_err("heartbeat too long");
        assert_eq!(error.setting, "heartbeat");
        assert!(
            error.to_string().contains("below the visibility timeout"),
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
            .resolve(Duration::from_secs(30))
            .expect_err("timeout too long");
        assert_eq!(error.setting, "handler_timeout");
        let with_heartbeat = WorkerConfig {
            heartbeat: Heartbeat::Auto,
            ..config
        };
        assert!(with_heartbeat.resolve(Duration::from_secs(30)).is_ok());
    }
}
