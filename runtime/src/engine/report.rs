//! The reporter task: publishes the worker's figures every second and samples the
//! queue's backlog at the configured interval.

use std::sync::Arc;

use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::engine::Shared;
use crate::engine::metrics::PUBLISH_EVERY;

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
        Ok(attributes) => shared
            .metrics
            .publish_backlog(&attributes, shared.config.running_tasks),
        Err(error) => tracing::warn!(%error, "backlog sample failed"),
    }
}
