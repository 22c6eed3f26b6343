//! The table of settings: every setting of a worker, once, with its type, its default,
//! what it allows, its check and its doc, and, for the settings the `#[spotq::worker]`
//! attribute takes, its key.
//!
//! [`for_each_setting!`](crate::for_each_setting) holds the table as Rust tokens and hands
//! it to a callback macro: that is how the runtime declares `WorkerConfig` (its fields and
//! their docs, its `Default`, the checks of `validate`) and the builder's setters, how the
//! attribute checks its keys, and how its docs list them. [`SETTINGS`] is the same table
//! as data: the attribute parses its keys and writes the config literal from it, and a
//! test holds the README's settings table to it, cell by cell.
//!
//! ```
//! use spotq_settings::{SETTINGS, Syntax};
//!
//! let retry = SETTINGS.iter().find(|setting| setting.name == "retry").expect("retry");
//! let key = retry.attribute.expect("an attribute key");
//! assert_eq!((key.key, key.example, key.syntax), ("retry_backoff", r#"("1s", "5m")"#, Syntax::Backoff));
//! let grace = SETTINGS.iter().find(|setting| setting.name == "shutdown_grace").expect("grace");
//! assert!(grace.attribute.is_none(), "only the builder sets it");
//! ```

/// The table of settings, handed to `$callback!` as one list of entries (a callback
/// matches them as written here):
///
/// ```text
/// /// The field's doc (its default and what it allows are added to it).
/// name: FieldType [=> Some(SetterType)] {
///     [feature: "ecs",]
///     default: expression, shown as "the default, in words",
///     allowed: "what the value may be, in words",
///     [check: |value, others| ...,]
///     [attribute: key = example as Syntax,]
/// }
/// ```
///
/// - `name` is the `WorkerConfig` field and the builder's method. The field has
///   `FieldType`; the setter takes it, or after `=> Some(...)` the type inside the
///   `Option` it fills (`Some(impl Into<String>)` takes anything that converts).
/// - `feature`: the Cargo feature of `spotq` without which the setting does not exist.
/// - `default` is what `WorkerConfig::default()` holds; `shown as` and `allowed` are the
///   cells of the README's settings table and the attribute's key table, and end the
///   field's doc.
/// - `check` takes the value as [`Checked`](crate::check::Checked) gives it (an
///   `Option`'s content; an unset option is not checked) and
///   [`Others`](crate::check::Others), and returns spotq-settings' verdict. Both
///   `WorkerConfig::validate` and the attribute run it. A setting without one is not
///   checked alone: `shutdown_grace` is the shutdown contract's to check, with
///   `stop_timeout`.
/// - `attribute`: the key `#[spotq::worker(...)]` takes, an example value and how the
///   value is written ([`Syntax`]). A setting without it is the builder's only.
///
/// Types and defaults are Rust tokens resolved where the callback expands them: in
/// spotq's `config` module (its `Duration`, `Heartbeat`, `RetryPolicy`,
/// `ProtectionConfig`). Only the checks of attribute keys expand in the macro crate too.
///
/// Adding a setting is adding an entry here (with its check in [`check`](crate::check) if
/// it has a new one) and the code that uses the value; the README's settings table
/// gets its row from the test that holds it to the table.
#[macro_export]
macro_rules! for_each_setting {
    ($($callback:ident)::+) => {
        $($callback)::+! {
            /// Handlers running at once.
            concurrency: usize {
                default: $crate::defaults::CONCURRENCY, shown as "16",
                allowed: "at least 1",
                check: |concurrency, _| $crate::check::concurrency(concurrency),
                attribute: concurrency = 32 as Count,
            }
            /// Receive loops. A poller receives only for free handler slots.
            pollers: Option<usize> => Some(usize) {
                default: None, shown as "one per 10 slots of `concurrency`, at most 16",
                allowed: "1 to `concurrency`",
                check: |pollers, others| $crate::check::pollers(pollers, others.concurrency),
                attribute: pollers = 2 as Count,
            }
            /// Messages asked for per receive. A poller never asks for more than the free
            /// slots.
            batch_size: usize {
                default: $crate::defaults::BATCH_SIZE, shown as "10",
                allowed: "1 to 10",
                check: |batch_size, _| $crate::check::batch_size(batch_size),
                attribute: batch_size = 10 as Count,
            }
            /// The long poll of a receive: how long it waits for a message to arrive.
            wait_time: Duration {
                default: $crate::defaults::WAIT_TIME, shown as "20s",
                allowed: "0s to 20s, whole seconds",
                check: |wait, _| $crate::check::wait_time(wait),
                attribute: wait_time = "20s" as Duration,
            }
            /// The visibility timeout asked for on each receive.
            visibility_timeout: Option<Duration> => Some(Duration) {
                default: None, shown as "the queue's own",
                allowed: "1s to 12h, whole seconds",
                check: |visibility, _| $crate::check::visibility_timeout(visibility),
                attribute: visibility_timeout = "2m" as Duration,
            }
            /// The time a handler may run before it counts as failed.
            handler_timeout: Option<Duration> => Some(Duration) {
                default: None, shown as "none",
                allowed: "above 0s, at most 11h59m (heartbeats stop 1m short of SQS's 12h \
                          cap); with heartbeats off, shorter than the visibility timeout",
                check: |timeout, others| $crate::check::handler_timeout(timeout, others),
                attribute: handler_timeout = "5m" as Duration,
            }
            /// How a long-running handler keeps its message invisible: `Auto` extends the
            /// visibility every half visibility timeout, `Every(interval)` at that interval,
            /// `Off` never (a handler that outlives the visibility timeout lets its message
            /// be received again elsewhere). The attribute writes them `true`, `"20s"` and
            /// `false`.
            heartbeat: Heartbeat {
                default: Heartbeat::Auto, shown as "every half visibility timeout",
                allowed: "an interval above 0s and shorter than the visibility timeout; or \
                          off, except on a FIFO queue with a per-message handler",
                check: |interval, others| {
                    $crate::check::heartbeat(interval, others.visibility_timeout)
                },
                attribute: heartbeat = "20s" as Heartbeat,
            }
            /// What happens to a message whose handler failed: `Backoff` makes it visible
            /// again after a jittered delay that doubles with each receive, from its base to
            /// its cap; `VisibilityTimeout` leaves it until its visibility timeout lapses.
            /// The attribute writes them `("1s", "5m")` and `false`.
            retry: RetryPolicy {
                default: RetryPolicy::default(), shown as "a backoff from 1s to 5m",
                allowed: "a backoff with base ≤ cap ≤ 12h, or the visibility timeout",
                check: |(base, max): (Duration, Duration), _| {
                    $crate::check::retry_backoff(base, max)
                },
                attribute: retry_backoff = ("1s", "5m") as Backoff,
            }
            /// How long a partial batch waits to fill: deletes and visibility changes
            /// waiting for more entries, and, while every slot is in use, a poller waiting
            /// for more slots to come back before it receives.
            flush_interval: Duration {
                default: $crate::defaults::FLUSH_INTERVAL, shown as "5ms",
                allowed: "at most 1s",
                check: |interval, _| $crate::check::flush_interval(interval),
            }
            /// The time between SIGTERM and SIGKILL (ECS `stopTimeout`): the task
            /// definition's.
            stop_timeout: Duration {
                default: $crate::defaults::STOP_TIMEOUT,
                shown as "30s, as on Fargate; set 120s for Spot tasks",
                allowed: "3s to 120s",
                check: |stop_timeout, _| $crate::check::stop_timeout(stop_timeout),
            }
            /// How long running handlers may continue after shutdown begins. It must leave
            /// [`shutdown::ROOM`](crate::shutdown::ROOM) of the stop timeout for releasing
            /// the messages of the handlers still running, flushing and exiting: the
            /// shutdown contract checks it with the stop timeout
            /// ([`WorkerConfig::grace_period`](crate::config::WorkerConfig::grace_period)).
            shutdown_grace: Option<Duration> => Some(Duration) {
                default: None,
                shown as "the stop timeout less 5s (less half of it, when that is shorter, \
                          but never less than 3s)",
                allowed: "at most `stop_timeout` less 3s: releasing (1s), flushing (1s) and \
                          exiting (1s) must fit before SIGKILL",
            }
            /// Released messages become visible again after a random delay up to this
            /// (whole seconds), so that many stopping tasks do not hand a burst to one
            /// survivor.
            release_jitter: Duration {
                default: Duration::ZERO, shown as "0s: visible at once",
                allowed: "at most 60s",
                check: |jitter, _| $crate::check::release_jitter(jitter),
            }
            /// Run to completion, for batch jobs (a standalone ECS task started for a
            /// backlog, which costs nothing once it exits): the worker shuts down by itself
            /// once this many receives in a row came back empty while it held no message
            /// (none running, none waiting behind its FIFO group, no delete or visibility
            /// change unsent).
            ///
            /// The run then ends with
            /// [`StopReason::Drained`](crate::shutdown::StopReason::Drained), by the
            /// shutdown contract, and the binary exits 0
            /// ([`RunReport::exit_code`](crate::RunReport::exit_code)). With the default
            /// long poll (`wait_time` 20s) one empty receive means no message became
            /// visible for 20s; short polls (`wait_time` 0s) sample only some of SQS's
            /// servers, so ask for more of them. A message waiting out a retry backoff (or
            /// a send delay) is invisible and held by no one: the worker may exit before it
            /// is visible again, and the next job task receives it. A queue that refuses
            /// five receives in a row (deleted, or access to it revoked) ends the run with
            /// [`StopReason::Fatal`](crate::shutdown::StopReason::Fatal): the job could
            /// never finish.
            exit_after_empty_receives: Option<u32> => Some(u32) {
                default: None, shown as "none: the worker runs until shutdown",
                allowed: "at least 1 empty receive in a row, with nothing held",
                check: |receives, _| $crate::check::exit_after_empty_receives(receives),
                attribute: exit_after_empty_receives = 2 as Count,
            }
            /// The longest a worker runs: this long after it started, it shuts down as on
            /// SIGTERM (stops receiving, lets running handlers go on for the grace period,
            /// releases what it still holds) and the run ends with
            /// [`StopReason::MaxRunTime`](crate::shutdown::StopReason::MaxRunTime).
            max_run_time: Option<Duration> => Some(Duration) {
                default: None, shown as "no limit",
                allowed: "above 0s",
                check: |limit, _| $crate::check::max_run_time(limit),
                attribute: max_run_time = "1h" as Duration,
            }
            /// ECS task scale-in protection while handlers run, through the agent at
            /// `$ECS_AGENT_URI` (nothing happens where that is unset); `None` turns it off.
            /// Feature `ecs`: without it there is no setting, and no protection.
            task_protection: Option<ProtectionConfig> {
                feature: "ecs",
                default: Some(ProtectionConfig::default()),
                shown as "on where `$ECS_AGENT_URI` is set: 60m at a time, renewed 10m before \
                          it expires, dropped after 30s without a running handler",
                allowed: "`None`, or an expiry of whole minutes from 1m to 48h",
                check: |protection: &ProtectionConfig, _| protection.validate(),
            }
            /// The `worker` label of the metrics.
            name: Option<String> => Some(impl Into<String>) {
                default: None, shown as "the queue's name",
                allowed: "not empty",
                check: |name, _| $crate::check::name(name),
                attribute: name = "orders" as Text,
            }
            /// How often the backlog sampler reads the queue's approximate counts
            /// (`GetQueueAttributes`, one call each time); `None` turns it off.
            backlog_interval: Option<Duration> {
                default: Some($crate::defaults::BACKLOG_INTERVAL), shown as "20s",
                allowed: "1s to 1h, or `None` (off)",
                check: |interval, _| $crate::check::backlog_interval(interval),
            }
            /// Tasks sharing the queue, for `spotq_backlog_per_task`.
            running_tasks: Option<u64> => Some(u64) {
                default: None,
                shown as "a worker in an ECS service reads its service's running count (task \
                          metadata, then `ecs:DescribeTasks` and `ecs:DescribeServices`; \
                          feature `ecs`); elsewhere the gauge is not published",
                allowed: "any count; 0 counts as 1",
            }
        }
    };
}

/// One setting of [`SETTINGS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The `WorkerConfig` field and the builder's method: `batch_size`.
    pub name: &'static str,
    /// The field is an `Option` that its setter fills with `Some`: so does the attribute.
    pub optional: bool,
    /// The Cargo feature of `spotq` without which the setting does not exist.
    pub feature: Option<&'static str>,
    /// What the setting is when it is not given, in words: `"16"`, `"the queue's own"`.
    pub default: &'static str,
    /// What it may be, in words: `"1 to 10"`.
    pub allowed: &'static str,
    /// The field's doc, one line per line, as written in the table.
    pub doc: &'static str,
    /// Its key in `#[spotq::worker(...)]`; `None` for a setting only the builder sets.
    pub attribute: Option<Attribute>,
}

/// A setting's key in the `#[spotq::worker]` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The key: the setting's name, but `retry_backoff` for `retry`.
    pub key: &'static str,
    /// A value as the attribute writes it: `32`, `"20s"`, `("1s", "5m")`.
    pub example: &'static str,
    /// How the value is written.
    pub syntax: Syntax,
}

/// How an attribute key's value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// A whole number: `concurrency = 32`.
    Count,
    /// A duration string: `wait_time = "20s"`.
    Duration,
    /// A string: `name = "orders"`.
    Text,
    /// An interval (`"20s"`), `true` (every half visibility timeout) or `false` (off).
    Heartbeat,
    /// The first delay and the cap of the retry backoff (`("1s", "5m")`), or `false`
    /// (leave a failed message until its visibility timeout lapses).
    Backoff,
}

/// `Some(x)` for `x`, `None` for nothing: an optional part of an entry as a value.
macro_rules! option {
    () => {
        None
    };
    ($($value:tt)+) => {
        Some($($value)+)
    };
}

/// `true` for any tokens, `false` for none: whether an entry has an optional part.
macro_rules! given {
    () => {
        false
    };
    ($($tokens:tt)+) => {
        true
    };
}

/// [`SETTINGS`] from the table.
macro_rules! settings_data {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty $(=> Some($($setter:tt)+))? {
            $(feature: $feature:literal,)?
            default: $default:expr, shown as $shown:literal,
            allowed: $allowed:literal,
            $(check: $check:expr,)?
            $(attribute: $key:ident = $example:tt as $syntax:ident,)?
        }
    )*) => {
        /// Every setting of a worker, in the table's order (the order of `WorkerConfig`'s
        /// fields, the README's rows and the attribute's keys).
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                optional: given!($($($setter)+)?),
                feature: option!($($feature)?),
                default: $shown,
                allowed: $allowed,
                doc: concat!($($doc, "\n"),*),
                attribute: option!($(Attribute {
                    key: stringify!($key),
                    example: stringify!($example),
                    syntax: Syntax::$syntax,
                })?),
            },
        )*];
    };
}

crate::for_each_setting!(settings_data);

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_and_keys_are_unique() {
        let names: HashSet<_> = SETTINGS.iter().map(|setting| setting.name).collect();
        assert_eq!(names.len(), SETTINGS.len());
        let keys: Vec<_> = SETTINGS
            .iter()
            .filter_map(|setting| setting.attribute)
            .map(|attribute| attribute.key)
            .collect();
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
    }

    #[test]
    fn every_setting_is_documented_in_cells_a_markdown_table_can_hold() {
        for setting in SETTINGS {
            for cell in [setting.default, setting.allowed] {
                assert!(!cell.is_empty(), "{}", setting.name);
                assert!(!cell.contains(['|', '\n']), "{}: {cell}", setting.name);
                assert_eq!(cell.trim(), cell, "{}", setting.name);
            }
            assert!(!setting.doc.trim().is_empty(), "{}", setting.name);
        }
    }

    /// The attribute cannot know which features its user's spotq has: a setting behind a
    /// feature is the builder's only.
    #[test]
    fn no_attribute_key_depends_on_a_feature() {
        for setting in SETTINGS {
            assert!(
                setting.feature.is_none() || setting.attribute.is_none(),
                "{}",
                setting.name
            );
        }
    }

    #[test]
    fn the_table_reads_as_written() {
        let pollers = SETTINGS[1];
        assert_eq!((pollers.name, pollers.optional), ("pollers", true));
        assert_eq!(
            pollers.doc,
            " Receive loops. A poller receives only for free handler slots.\n"
        );
        let protection = SETTINGS
            .iter()
            .find(|setting| setting.name == "task_protection")
            .expect("task_protection");
        assert_eq!(protection.feature, Some("ecs"));
        assert!(!protection.optional, "its setter takes the `Option`");
        let name = SETTINGS
            .iter()
            .find(|setting| setting.name == "name")
            .and_then(|setting| setting.attribute)
            .expect("name is a key");
        assert_eq!((name.example, name.syntax), ("\"orders\"", Syntax::Text));
    }
}
