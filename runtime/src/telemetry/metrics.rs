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

/// Every metric a worker publishes: name, kind, unit, help. The table in the docs is
/// this list.
pub(crate) const CATALOG: &[(&str, &str, Unit, &str)] = &[
    (
        "spotq_messages_received_total",
        "counter",
        Unit::Count,
        "Messages received from the queue.",
    ),
    (
        "spotq_messages_succeeded_total",
        "counter",
        Unit::Count,
        "Handlers that acknowledged their message.",
    ),
    (
        "spotq_messages_failed_total",
        "counter",
        Unit::Count,
        "Handlers that failed, panicked or timed out.",
    ),
    (
        "spotq_messages_retried_total",
        "counter",
        Unit::Count,
        "Messages made visible again after a failure or a requested retry.",
    ),
    (
        "spotq_messages_continued_total",
        "counter",
        Unit::Count,
        "Messages whose work was handed on in a new message.",
    ),
    (
        "spotq_messages_released_total",
        "counter",
        Unit::Count,
        "Messages released unfinished at shutdown.",
    ),
    (
        "spotq_messages_deleted_total",
        "counter",
        Unit::Count,
        "Messages deleted from the queue.",
    ),
    (
        "spotq_delete_failures_total",
        "counter",
        Unit::Count,
        "Deletes that failed (the message will be received again).",
    ),
    (
        "spotq_visibility_failures_total",
        "counter",
        Unit::Count,
        "Visibility changes that failed.",
    ),
    (
        "spotq_stale_receipts_total",
        "counter",
        Unit::Count,
        "Deletes or visibility changes refused for a stale receipt handle.",
    ),
    (
        "spotq_heartbeats_total",
        "counter",
        Unit::Count,
        "Visibility extensions of long-running handlers.",
    ),
    (
        "spotq_receive_errors_total",
        "counter",
        Unit::Count,
        "Receive calls that failed.",
    ),
    (
        "spotq_handler_duration_seconds",
        "histogram",
        Unit::Seconds,
        "Time from receive to the handler's outcome.",
    ),
    (
        "spotq_messages_in_flight",
        "gauge",
        Unit::Count,
        "Messages being handled now.",
    ),
    (
        "spotq_concurrency",
        "gauge",
        Unit::Count,
        "Handlers allowed at once.",
    ),
    (
        "spotq_utilization",
        "gauge",
        Unit::Percent,
        "Messages in flight over concurrency, 0 to 1.",
    ),
    (
        "spotq_queue_messages_visible",
        "gauge",
        Unit::Count,
        "ApproximateNumberOfMessages, from the backlog sampler.",
    ),
    (
        "spotq_queue_messages_not_visible",
        "gauge",
        Unit::Count,
        "ApproximateNumberOfMessagesNotVisible, from the backlog sampler.",
    ),
    (
        "spotq_queue_messages_delayed",
        "gauge",
        Unit::Count,
        "ApproximateNumberOfMessagesDelayed, from the backlog sampler.",
    ),
    (
        "spotq_backlog_per_task",
        "gauge",
        Unit::Count,
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
}

impl WorkerMetrics {
    pub(crate) fn register(queue: &str, worker: &str) -> Self {
        for (name, kind, unit, help) in CATALOG {
            match *kind {
                "counter" => metrics::describe_counter!(*name, *unit, *help),
                "gauge" => metrics::describe_gauge!(*name, *unit, *help),
                _ => metrics::describe_histogram!(*name, *unit, *help),
            }
        }
        let labels = [("queue", queue.to_owned()), ("worker", worker.to_owned())];
        let counter = |name: &'static str| metrics::counter!(name, &labels);
        let gauge = |name: &'static str| metrics::gauge!(name, &labels);
        Self {
            // In the order of `Counters::values`.
            counters: vec![
                counter("spotq_messages_received_total"),
                counter("spotq_messages_succeeded_total"),
                counter("spotq_messages_failed_total"),
                counter("spotq_messages_retried_total"),
                counter("spotq_messages_continued_total"),
                counter("spotq_messages_released_total"),
                counter("spotq_messages_deleted_total"),
                counter("spotq_delete_failures_total"),
                counter("spotq_visibility_failures_total"),
                counter("spotq_stale_receipts_total"),
                counter("spotq_heartbeats_total"),
                counter("spotq_receive_errors_total"),
            ],
            handler_duration: metrics::histogram!("spotq_handler_duration_seconds", &labels),
            in_flight: gauge("spotq_messages_in_flight"),
            concurrency: gauge("spotq_concurrency"),
            utilization: gauge("spotq_utilization"),
            visible: gauge("spotq_queue_messages_visible"),
            not_visible: gauge("spotq_queue_messages_not_visible"),
            delayed: gauge("spotq_queue_messages_delayed"),
            backlog_per_task: gauge("spotq_backlog_per_task"),
        }
    }

    /// Copies the live counters and the in-flight figures out.
    pub(crate) fn publish(&self, counters: &Counters, in_flight: usize, concurrency: usize) {
        for (counter, value) in self.counters.iter().zip(counters.values()) {
            counter.absolute(value);
        }
        self.in_flight.set(in_flight as f64);
        self.concurrency.set(concurrency as f64);
        self.utilization
            .set(in_flight as f64 / concurrency.max(1) as f64);
    }

    /// Publishes a backlog sample; `running_tasks` when known.
    pub(crate) fn publish_backlog(&self, sample: &QueueAttributes, running_tasks: Option<u64>) {
        self.visible.set(sample.visible as f64);
        self.not_visible.set(sample.not_visible as f64);
        self.delayed.set(sample.delayed as f64);
        if let Some(tasks) = running_tasks {
            self.backlog_per_task.set(backlog_per_task(sample, tasks));
        }
    }
}

/// Messages waiting or in flight per running task, the divisor at least 1.
pub(crate) fn backlog_per_task(sample: &QueueAttributes, running_tasks: u64) -> f64 {
    (sample.visible + sample.not_visible) as f64 / running_tasks.max(1) as f64
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

    #[test]
    fn every_metric_is_in_the_readme_table() {
        let readme = include_str!("../../../README.md");
        for (name, kind, ..) in CATALOG {
            let row = format!("| `{name}` | {kind} |");
            assert!(readme.contains(&row), "README has no row for {name}");
        }
    }

    #[test]
    fn backlog_per_task_never_divides_by_zero() {
        let sample = QueueAttributes {
            visible: 30,
            not_visible: 10,
            ..QueueAttributes::default()
        };
        assert_eq!(backlog_per_task(&sample, 4), 10.0);
        assert_eq!(backlog_per_task(&sample, 0), 40.0);
    }
}
