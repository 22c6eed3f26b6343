//! The reporter task: publishes the worker's figures every second and samples the
//! queue's backlog at the configured interval.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, QueueAttributes};
#[cfg(feature = "ecs")]
use crate::ecs::EcsService;
use crate::telemetry::emf::{EmfRecord, EmfSettings, names};
use crate::telemetry::metrics::{PUBLISH_EVERY, WorkerMetrics, backlog_per_task};
use crate::telemetry::stats::Counters;

/// What the reporter reads of a running worker: its queue, its counters and metric
/// handles, the messages it holds, and the settings that shape the backlog samples.
pub(crate) struct Reporter {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// The messages the worker holds, read at every publish.
    pub(crate) held: Box<dyn Fn() -> usize + Send + Sync>,
    pub(crate) concurrency: usize,
    /// How often the backlog is sampled; `None`: never.
    pub(crate) backlog_interval: Option<Duration>,
    /// The tasks sharing the queue, where the configuration sets them.
    pub(crate) running_tasks: Option<u64>,
    /// The backlog sampler's last sample, for the EMF lines and its age.
    pub(crate) last_backlog: Mutex<Option<BacklogSample>>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("queue", &self.backend.name())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Runs until `stop`, then publishes once more so the final counts are exact.
///
/// Publishing never waits on a network call: the backlog sampler (`GetQueueAttributes`,
/// the ECS running-task count) runs beside it, and a sample's age is published with it,
/// so a sample that has not come for a while reads as old rather than as fresh.
pub(crate) async fn report(shared: Arc<Reporter>, stop: CancellationToken) {
    let publishing = async {
        let mut publish = interval(PUBLISH_EVERY);
        publish.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            publish.tick().await;
            publish_now(&shared);
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = publishing => {}
        () = sample_backlog(&shared) => {}
    }
    publish_now(&shared);
}

/// Samples the backlog at the configured interval; never returns (without an interval,
/// it waits for ever).
async fn sample_backlog(shared: &Reporter) {
    let Some(every) = shared.backlog_interval else {
        return std::future::pending().await;
    };
    let mut ticks = interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tasks = match shared.running_tasks {
        Some(count) => Tasks::Configured(count),
        None => Tasks::Discover,
    };
    loop {
        ticks.tick().await;
        sample(shared, &mut tasks).await;
    }
}

fn publish_now(shared: &Reporter) {
    shared
        .metrics
        .publish(&shared.counters, (shared.held)(), shared.concurrency);
    let sampled_at = shared
        .last_backlog
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|sample| sample.at);
    if let Some(at) = sampled_at {
        shared.metrics.publish_sample_age(at.elapsed());
    }
}

/// Where the number of tasks sharing the queue comes from.
enum Tasks {
    /// Set in the worker's configuration.
    Configured(u64),
    /// Not looked for yet: the worker may run in an ECS service.
    Discover,
    /// The ECS service this task belongs to.
    #[cfg(feature = "ecs")]
    Ecs(EcsService),
    /// Neither: backlog per task is not published rather than guessed.
    Unknown,
}

impl Tasks {
    /// The current count, discovering the ECS service on first use.
    async fn count(&mut self) -> Option<u64> {
        if let Self::Discover = self {
            #[cfg(feature = "ecs")]
            let found = Self::discover().await;
            #[cfg(not(feature = "ecs"))]
            let found = Some(Self::not_discoverable());
            match found {
                Some(tasks) => *self = tasks,
                None => return None,
            }
        }
        match self {
            Self::Configured(count) => Some(*count),
            #[cfg(feature = "ecs")]
            // Bounded by the client's timeouts (`EcsService` sets them).
            Self::Ecs(service) => match service.running_count().await {
                Ok(count) => Some(count),
                Err(error) => {
                    tracing::warn!(%error, "reading the service's running count failed");
                    None
                }
            },
            Self::Discover | Self::Unknown => None,
        }
    }

    /// The ECS service this task runs in; `None` to try again at the next sample.
    #[cfg(feature = "ecs")]
    async fn discover() -> Option<Self> {
        Some(match EcsService::from_env().await {
            Ok(Some(service)) => {
                tracing::info!(
                    cluster = service.cluster(),
                    service = service.service(),
                    "backlog per task counts the tasks of this ECS service"
                );
                Self::Ecs(service)
            }
            Ok(None) => {
                tracing::info!(
                    "backlog per task is not published: no running-task count \
                         (set running_tasks, or run in an ECS service)"
                );
                Self::Unknown
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "finding this task's ECS service failed; retrying");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, "backlog per task is not published");
                Self::Unknown
            }
        })
    }

    /// Without feature `ecs` there is no service to ask.
    #[cfg(not(feature = "ecs"))]
    fn not_discoverable() -> Self {
        tracing::info!(
            "backlog per task is not published: no running-task count \
             (set running_tasks, or build spotq with feature `ecs` and run in an ECS service)"
        );
        Self::Unknown
    }
}

/// The backlog sampler's last sample, for the EMF lines and the sample's age.
#[derive(Clone, Debug)]
pub(crate) struct BacklogSample {
    pub(crate) attributes: QueueAttributes,
    pub(crate) running_tasks: Option<u64>,
    /// When it was taken.
    pub(crate) at: Instant,
}

/// One `GetQueueAttributes` (and the task count); a failure is logged and the gauges
/// keep their last value (the sample's age tells).
async fn sample(shared: &Reporter, tasks: &mut Tasks) {
    match shared.backend.attributes().await {
        Ok(attributes) => {
            let running_tasks = tasks.count().await;
            shared.metrics.publish_backlog(&attributes, running_tasks);
            *shared
                .last_backlog
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(BacklogSample {
                attributes,
                running_tasks,
                at: Instant::now(),
            });
        }
        Err(error) => tracing::warn!(%error, "backlog sample failed"),
    }
}

/// The EMF record of one interval: backlog per task (when the task count is known),
/// the messages held, and messages succeeded per second since the last record; the
/// names and units of [`names`].
pub(crate) fn emf_record(
    shared: Arc<Reporter>,
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
        let metric = |record: EmfRecord, name: &str, value: f64| {
            record.metric(name, names::unit(name), value)
        };
        let mut record = EmfRecord::new(settings.namespace.as_str())
            .dimension(names::QUEUE_NAME, shared.backend.name())
            .dimension(names::SERVICE_NAME, settings.service_name.as_str());
        record = metric(record, names::MESSAGES_IN_FLIGHT, (shared.held)() as f64);
        record = metric(record, names::THROUGHPUT, throughput);
        let backlog = shared
            .last_backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(BacklogSample {
            attributes: sample,
            running_tasks,
            ..
        }) = backlog
        {
            record = metric(
                record,
                names::MESSAGES_VISIBLE,
                sample.counts.visible as f64,
            );
            record = metric(
                record,
                names::MESSAGES_NOT_VISIBLE,
                sample.counts.not_visible as f64,
            );
            if let Some(tasks) = running_tasks {
                record = metric(
                    record,
                    names::BACKLOG_PER_TASK,
                    backlog_per_task(&sample, tasks),
                );
            }
        }
        Some(record)
    }
}
