//! The reporter task: publishes the worker's figures every second and samples the
//! queue's backlog at the configured interval.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::config::EmfSettings;
use crate::emf::{EmfRecord, Unit};
use crate::engine::Shared;
use crate::engine::metrics::{PUBLISH_EVERY, backlog_per_task};

/// Runs until `stop`, then publishes once more so the final counts are exact.
pub(crate) async fn report<H>(shared: Arc<Shared<H>>, stop: CancellationToken) {
    let mut publish = interval(PUBLISH_EVERY);
    publish.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backlog = shared.config.backlog_interval.map(|every| {
        let mut ticks = interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    });
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = publish.tick() => publish_now(&shared),
            Some(_) = async {
                match backlog.as_mut() {
                    Some(ticks) => Some(ticks.tick().await),
                    None => None,
                }
            } => {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = sample(&shared) => {}
                }
            }
        }
    }
    publish_now(&shared);
}

fn publish_now<H>(shared: &Shared<H>) {
    shared.metrics.publish(
        &shared.counters,
        shared.capacity.messages_in_flight(),
        shared.config.concurrency,
    );
}

/// One `GetQueueAttributes`; a failure is logged and the gauges keep their last value.
async fn sample<H>(shared: &Shared<H>) {
    match shared.backend.attributes().await {
        Ok(attributes) => {
            shared
                .metrics
                .publish_backlog(&attributes, shared.config.running_tasks);
            *shared
                .last_backlog
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(attributes);
        }
        Err(error) => tracing::warn!(%error, "backlog sample failed"),
    }
}

/// The EMF record of one interval: backlog per task (when the task count is known),
/// messages in flight, and messages succeeded per second since the last record.
pub(crate) fn emf_record<H: Send + Sync + 'static>(
    shared: Arc<Shared<H>>,
    settings: EmfSettings,
) -> impl FnMut() -> Option<EmfRecord> + Send + 'static {
    let mut last = (Instant::now(), 0u64);
    move || {
        let now = Instant::now();
        let succeeded = shared.counters.succeeded.load(Ordering::Relaxed);
        let seconds = (now - last.0).as_secs_f64();
        let throughput = if seconds > 0.0 {
            (succeeded - last.1) as f64 / seconds
        } else {
            0.0
        };
        last = (now, succeeded);
        let mut record = EmfRecord::new(settings.namespace.as_str())
            .dimension("QueueName", shared.backend.name())
            .dimension("ServiceName", settings.service_name.as_str())
            .metric(
                "MessagesInFlight",
                Unit::Count,
                shared.capacity.messages_in_flight() as f64,
            )
            .metric("Throughput", Unit::CountPerSecond, throughput);
        let backlog = shared
            .last_backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(sample) = backlog {
            record = record
                .metric("MessagesVisible", Unit::Count, sample.visible as f64)
                .metric("MessagesNotVisible", Unit::Count, sample.not_visible as f64);
            if let Some(tasks) = shared.config.running_tasks {
                record = record.metric(
                    "BacklogPerTask",
                    Unit::Count,
                    backlog_per_task(&sample, tasks),
                );
            }
        }
        Some(record)
    }
}
