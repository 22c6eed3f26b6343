//! The worker's figures through the `metrics` facade.
//!
//! The hot path counts in plain atomics ([`Counters`]); a publisher copies them into
//! `metrics` counters (`absolute`) and gauges every second and once at the end of the
//! run, so exporting costs a message nothing. Only the handler duration is recorded per
//! message. Handles are registered when the worker starts, against the recorder
//! installed then (install the exporter first). Labels are bounded: `queue` and
//! `worker`, never a message id.

use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::backend::QueueAttributes;
use crate::telemetry::stats::Counters;

/// The names of the metrics a worker publishes (see the catalog in the crate docs),
/// for programs that read a worker's `/metrics`. A histogram is exported as a
/// Prometheus summary: its series are the name with `_sum` and `_count` appended.
pub mod names {
    /// `spotq_messages_received_total` (counter): Messages received from the queue.
    pub const MESSAGES_RECEIVED: &str = "spotq_messages_received_total";
    /// `spotq_messages_succeeded_total` (counter): Handlers that acknowledged their message.
    pub const MESSAGES_SUCCEEDED: &str = "spotq_messages_succeeded_total";
    /// `spotq_messages_failed_total` (counter): Handlers that failed, panicked or timed out.
    pub const MESSAGES_FAILED: &str = "spotq_messages_failed_total";
    /// `spotq_messages_retried_total` (counter): Messages made visible again after a failure or a requested retry.
    pub const MESSAGES_RETRIED: &str = "spotq_messages_retried_total";
    /// `spotq_messages_continued_total` (counter): Messages whose work was handed on in a new message.
    pub const MESSAGES_CONTINUED: &str = "spotq_messages_continued_total";
    /// `spotq_messages_released_total` (counter): Messages released unfinished at shutdown.
    pub const MESSAGES_RELEASED: &str = "spotq_messages_released_total";
    /// `spotq_messages_deleted_total` (counter): Messages deleted from the queue.
    pub const MESSAGES_DELETED: &str = "spotq_messages_deleted_total";
    /// `spotq_delete_failures_total` (counter): Deletes that failed (the message will be received again).
    pub const DELETE_FAILURES: &str = "spotq_delete_failures_total";
    /// `spotq_visibility_failures_total` (counter): Visibility changes that failed.
    pub const VISIBILITY_FAILURES: &str = "spotq_visibility_failures_total";
    /// `spotq_stale_receipts_total` (counter): Deletes or visibility changes refused for a stale receipt handle, and deletes sent after their message's visibility lapsed.
    pub const STALE_RECEIPTS: &str = "spotq_stale_receipts_total";
    /// `spotq_heartbeats_total` (counter): Visibility extensions of long-running handlers.
    pub const HEARTBEATS: &str = "spotq_heartbeats_total";
    /// `spotq_receive_errors_total` (counter): Receive calls that failed.
    pub const RECEIVE_ERRORS: &str = "spotq_receive_errors_total";
    /// `spotq_handler_duration_seconds` (histogram): Time from receive to the handler's outcome.
    pub const HANDLER_DURATION_SECONDS: &str = "spotq_handler_duration_seconds";
    /// `spotq_messages_in_flight` (gauge): Messages the worker holds: received and not yet deleted, released or put back for a retry (running, waiting in a FIFO group, or with its delete or visibility change not yet applied).
    pub const MESSAGES_IN_FLIGHT: &str = "spotq_messages_in_flight";
    /// `spotq_concurrency` (gauge): Handlers allowed at once.
    pub const CONCURRENCY: &str = "spotq_concurrency";
    /// `spotq_utilization` (gauge): Messages held over concurrency: 1 when every handler is busy (more while FIFO messages wait behind their group's running one).
    pub const UTILIZATION: &str = "spotq_utilization";
    /// `spotq_queue_messages_visible` (gauge): ApproximateNumberOfMessages, from the backlog sampler.
    pub const QUEUE_MESSAGES_VISIBLE: &str = "spotq_queue_messages_visible";
    /// `spotq_queue_messages_not_visible` (gauge): ApproximateNumberOfMessagesNotVisible, from the backlog sampler.
    pub const QUEUE_MESSAGES_NOT_VISIBLE: &str = "spotq_queue_messages_not_visible";
    /// `spotq_queue_messages_delayed` (gauge): ApproximateNumberOfMessagesDelayed, from the backlog sampler.
    pub const QUEUE_MESSAGES_DELAYED: &str = "spotq_queue_messages_delayed";
    /// `spotq_queue_sample_age_seconds` (gauge): Time since the backlog sampler's last sample: the queue gauges are that old.
    pub const QUEUE_SAMPLE_AGE_SECONDS: &str = "spotq_queue_sample_age_seconds";
    /// `spotq_backlog_per_task` (gauge): (visible + not visible) / running tasks (at least 1); absent while the task count is unknown.
    pub const BACKLOG_PER_TASK: &str = "spotq_backlog_per_task";
}

/// Every metric a worker publishes: name, kind, unit, help. The table in the docs is
/// this list.
pub(crate) const CATALOG: &[(&str, &str, Option<Unit>, &str)] = &[
    (
        names::MESSAGES_RECEIVED,
        "counter",
        Some(Unit::Count),
        "Messages received from the queue.",
    ),
    (
        names::MESSAGES_SUCCEEDED,
        "counter",
        Some(Unit::Count),
        "Handlers that acknowledged their message.",
    ),
    (
        names::MESSAGES_FAILED,
        "counter",
        Some(Unit::Count),
        "Handlers that failed, panicked or timed out.",
    ),
    (
        names::MESSAGES_RETRIED,
        "counter",
        Some(Unit::Count),
        "Messages made visible again after a failure or a requested retry.",
    ),
    (
        names::MESSAGES_CONTINUED,
        "counter",
        Some(Unit::Count),
        "Messages whose work was handed on in a new message.",
    ),
    (
        names::MESSAGES_RELEASED,
        "counter",
        Some(Unit::Count),
        "Messages released unfinished at shutdown.",
    ),
    (
        names::MESSAGES_DELETED,
        "counter",
        Some(Unit::Count),
        "Messages deleted from the queue.",
    ),
    (
        names::DELETE_FAILURES,
        "counter",
        Some(Unit::Count),
        "Deletes that failed (the message will be received again).",
    ),
    (
        names::VISIBILITY_FAILURES,
        "counter",
        Some(Unit::Count),
        "Visibility changes that failed.",
    ),
    (
        names::STALE_RECEIPTS,
        "counter",
        Some(Unit::Count),
        "Deletes or visibility changes refused for a stale receipt handle, and deletes sent after their message's visibility lapsed.",
    ),
    (
        names::HEARTBEATS,
        "counter",
        Some(Unit::Count),
        "Visibility extensions of long-running handlers.",
    ),
    (
        names::RECEIVE_ERRORS,
        "counter",
        Some(Unit::Count),
        "Receive calls that failed.",
    ),
    (
        names::HANDLER_DURATION_SECONDS,
        "histogram",
        Some(Unit::Seconds),
        "Time from receive to the handler's outcome.",
    ),
    (
        names::MESSAGES_IN_FLIGHT,
        "gauge",
        Some(Unit::Count),
        "Messages the worker holds: received and not yet deleted, released or put back for a retry (running, waiting in a FIFO group, or with its delete or visibility change not yet applied).",
    ),
    (
        names::CONCURRENCY,
        "gauge",
        Some(Unit::Count),
        "Handlers allowed at once.",
    ),
    (
        names::UTILIZATION,
        "gauge",
        // A ratio (1 is every handler busy): no unit of `metrics` fits, and `Percent`
        // would tell exporters to read 1 as 1 %.
        None,
        "Messages held over concurrency: 1 when every handler is busy (more while FIFO messages wait behind their group's running one).",
    ),
    (
        names::QUEUE_MESSAGES_VISIBLE,
        "gauge",
        Some(Unit::Count),
        "ApproximateNumberOfMessages, from the backlog sampler.",
    ),
    (
        names::QUEUE_MESSAGES_NOT_VISIBLE,
        "gauge",
        Some(Unit::Count),
        "ApproximateNumberOfMessagesNotVisible, from the backlog sampler.",
    ),
    (
        names::QUEUE_MESSAGES_DELAYED,
        "gauge",
        Some(Unit::Count),
        "ApproximateNumberOfMessagesDelayed, from the backlog sampler.",
    ),
    (
        names::QUEUE_SAMPLE_AGE_SECONDS,
        "gauge",
        Some(Unit::Seconds),
        "Time since the backlog sampler's last sample: the queue gauges are that old.",
    ),
    (
        names::BACKLOG_PER_TASK,
        "gauge",
        Some(Unit::Count),
        "(visible + not visible) / running tasks (at least 1); absent while the task count is unknown.",
    ),
];

/// The registered handles of one worker.
#[derive(Debug)]
pub(crate) struct WorkerMetrics {
    counters: Vec<Counter>,
    pub(crate) handler_duration: Histogram,
    in_flight: Gauge,
    concurrency: Gauge,
    utilization: Gauge,
    visible: Gauge,
    not_visible: Gauge,
    delayed: Gauge,
    backlog_per_task: Gauge,
    sample_age: Gauge,
}

impl WorkerMetrics {
    pub(crate) fn register(queue: &str, worker: &str) -> Self {
        for (name, kind, unit, help) in CATALOG {
            match (*kind, *unit) {
                ("counter", Some(unit)) => metrics::describe_counter!(*name, unit, *help),
                ("counter", None) => metrics::describe_counter!(*name, *help),
                ("gauge", Some(unit)) => metrics::describe_gauge!(*name, unit, *help),
                ("gauge", None) => metrics::describe_gauge!(*name, *help),
                (_, Some(unit)) => metrics::describe_histogram!(*name, unit, *help),
                (_, None) => metrics::describe_histogram!(*name, *help),
            }
        }
        let labels = [("queue", queue.to_owned()), ("worker", worker.to_owned())];
        let counter = |name: &'static str| metrics::counter!(name, &labels);
        let gauge = |name: &'static str| metrics::gauge!(name, &labels);
        Self {
            // In the order of `Counters::values`.
            counters: vec![
                counter(names::MESSAGES_RECEIVED),
                counter(names::MESSAGES_SUCCEEDED),
                counter(names::MESSAGES_FAILED),
                counter(names::MESSAGES_RETRIED),
                counter(names::MESSAGES_CONTINUED),
                counter(names::MESSAGES_RELEASED),
                counter(names::MESSAGES_DELETED),
                counter(names::DELETE_FAILURES),
                counter(names::VISIBILITY_FAILURES),
                counter(names::STALE_RECEIPTS),
                counter(names::HEARTBEATS),
                counter(names::RECEIVE_ERRORS),
            ],
            handler_duration: metrics::histogram!(names::HANDLER_DURATION_SECONDS, &labels),
            in_flight: gauge(names::MESSAGES_IN_FLIGHT),
            concurrency: gauge(names::CONCURRENCY),
            utilization: gauge(names::UTILIZATION),
            visible: gauge(names::QUEUE_MESSAGES_VISIBLE),
            not_visible: gauge(names::QUEUE_MESSAGES_NOT_VISIBLE),
            delayed: gauge(names::QUEUE_MESSAGES_DELAYED),
            backlog_per_task: gauge(names::BACKLOG_PER_TASK),
            sample_age: gauge(names::QUEUE_SAMPLE_AGE_SECONDS),
        }
    }

    /// Copies the live counters, the messages held and the concurrency out.
    pub(crate) fn publish(&self, counters: &Counters, held: usize, concurrency: usize) {
        for (counter, value) in self.counters.iter().zip(counters.values()) {
            counter.absolute(value);
        }
        self.in_flight.set(held as f64);
        self.concurrency.set(concurrency as f64);
        self.utilization
            .set(held as f64 / concurrency.max(1) as f64);
    }

    /// Publishes the age of the last backlog sample.
    pub(crate) fn publish_sample_age(&self, age: Duration) {
        self.sample_age.set(age.as_secs_f64());
    }

    /// Publishes a backlog sample; `running_tasks` when known.
    pub(crate) fn publish_backlog(&self, sample: &QueueAttributes, running_tasks: Option<u64>) {
        self.visible.set(sample.counts.visible as f64);
        self.not_visible.set(sample.counts.not_visible as f64);
        self.delayed.set(sample.counts.delayed as f64);
        if let Some(tasks) = running_tasks {
            self.backlog_per_task.set(backlog_per_task(sample, tasks));
        }
    }
}

/// Messages waiting or in flight per running task, the divisor at least 1.
pub(crate) fn backlog_per_task(sample: &QueueAttributes, running_tasks: u64) -> f64 {
    (sample.counts.visible + sample.counts.not_visible) as f64 / running_tasks.max(1) as f64
}

/// How often the publisher copies counters out.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_secs(1);

impl Counters {
    /// The counters in the order [`WorkerMetrics`] registers them.
    pub(crate) fn values(&self) -> [u64; 12] {
        [
            &self.received,
            &self.succeeded,
            &self.failed,
            &self.retried,
            &self.continued,
            &self.released,
            &self.deleted,
            &self.delete_failed,
            &self.visibility_failed,
            &self.stale_receipts,
            &self.heartbeats,
            &self.receive_errors,
        ]
        .map(|counter| counter.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::QueueCounts;

    #[test]
    fn every_metric_is_in_the_readme_table_with_its_unit() {
        let readme = include_str!("../../../README.md");
        for (name, kind, unit, help) in CATALOG {
            let unit = match unit {
                Some(Unit::Count) => "count",
                Some(Unit::Seconds) => "seconds",
                None => "ratio",
                Some(other) => panic!("{name}: no README word for {other:?}"),
            };
            let start = format!("| `{name}` | {kind} | {unit} |");
            let row = readme
                .lines()
                .find(|line| line.starts_with(&start))
                .unwrap_or_else(|| panic!("README has no row starting {start}"));
            assert!(
                row.ends_with(&format!("| {help} |")),
                "README's {name}: {row}"
            );
        }
    }

    #[test]
    fn every_emf_metric_is_in_the_readme_table() {
        let readme = include_str!("../../../README.md");
        for (name, unit, meaning) in crate::telemetry::emf::names::METRICS {
            let row = format!("| `{name}` | {unit} | {meaning} |");
            assert!(readme.contains(&row), "README has no row {row}");
        }
    }

    #[test]
    fn backlog_per_task_never_divides_by_zero() {
        let sample = QueueAttributes {
            counts: QueueCounts {
                visible: 30,
                not_visible: 10,
                delayed: 0,
            },
            ..QueueAttributes::default()
        };
        assert_eq!(backlog_per_task(&sample, 4), 10.0);
        assert_eq!(backlog_per_task(&sample, 0), 40.0);
    }
}
