//! The engine's lifecycle: [`Engine::start`] checks the settings, reads the queue and
//! starts every part (pollers, settler, reporters, task protection); [`Engine::ended`]
//! resolves when the engine ends its run by itself (drained, its maximum run time, a
//! fatal error); [`Engine::stop`] carries out the shutdown contract and stops the
//! reporters. The worker builder only collects settings.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, QueueAttributes};
use crate::backoff::{CALL_RETRY, retry};
use crate::config::WorkerConfig;
use crate::contract::{Contract, StopReason};
#[cfg(feature = "ecs")]
use crate::ecs::protection::{ProtectionReport, TaskProtection};
use crate::engine::capacity::Capacity;
use crate::engine::completion::Completion;
use crate::engine::settle::Settler;
use crate::engine::stop::{self, Parts};
use crate::engine::{Dispatch, Shared, poll};
use crate::error::{BackendError, Error};
use crate::telemetry::emf::{EmfOutput, spawn_emf_reporter};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::WorkerMetrics;
use crate::telemetry::report::{BacklogSample, Reporter, emf_record, report};
use crate::telemetry::stats::{Counters, RunReport};

/// Without feature `ecs` there is no task protection: a driver that is never built.
#[cfg(not(feature = "ecs"))]
enum TaskProtection {}

#[cfg(not(feature = "ecs"))]
type ProtectionReport = ();

#[cfg(not(feature = "ecs"))]
impl TaskProtection {
    fn run<F>(self, _in_flight: F, _stop: CancellationToken) -> std::future::Ready<()> {
        match self {}
    }
}

/// Attempts at reading the queue's attributes before the worker gives up starting.
const PREFLIGHT_ATTEMPTS: u32 = 5;

/// What a worker is made of before it starts.
pub(crate) struct Setup<H> {
    pub backend: Arc<dyn Backend>,
    pub config: WorkerConfig,
    pub handler: H,
    pub health: Option<Health>,
    pub emf: Option<EmfOutput>,
}

/// A started worker: its parts, owned together until [`stop`](Self::stop).
pub(crate) struct Engine<H> {
    started: Instant,
    shared: Arc<Shared<H>>,
    settler: Arc<Settler>,
    counters: Arc<Counters>,
    pollers: TaskTracker,
    reporting_stop: CancellationToken,
    reporting: JoinHandle<()>,
    emf: Option<JoinHandle<()>>,
    protection_stop: CancellationToken,
    protection: Option<JoinHandle<ProtectionReport>>,
}

/// The reporter's view of a started worker; the preflight's read of the queue is its
/// first backlog sample, so the sample's age counts from the start.
fn reporter<H: Dispatch>(
    shared: &Arc<Shared<H>>,
    metrics: Arc<WorkerMetrics>,
    attributes: QueueAttributes,
) -> Arc<Reporter> {
    Arc::new(Reporter {
        backend: Arc::clone(&shared.backend),
        counters: Arc::clone(&shared.counters),
        metrics,
        held: Box::new({
            let shared = Arc::clone(shared);
            move || shared.messages_held()
        }),
        concurrency: shared.config.concurrency,
        backlog_interval: shared.config.backlog_interval,
        running_tasks: shared.config.running_tasks,
        last_backlog: std::sync::Mutex::new(Some(BacklogSample {
            attributes,
            running_tasks: None,
            at: Instant::now(),
        })),
    })
}

impl<H: Dispatch> Engine<H> {
    /// Checks every setting, reads the queue's attributes (a queue that does not exist or
    /// cannot be read fails the start), then starts pollers, reporters and protection.
    pub(crate) async fn start(setup: Setup<H>) -> Result<Self, Error> {
        let Setup {
            backend,
            config,
            handler,
            health,
            emf,
        } = setup;
        let started = Instant::now();
        config.validate()?;
        if let Some(emf) = &emf {
            emf.settings.validate()?;
        }
        #[cfg(feature = "ecs")]
        let protection = match config.task_protection {
            Some(protection) => TaskProtection::from_env(protection)?,
            None => None,
        };
        #[cfg(not(feature = "ecs"))]
        let protection: Option<TaskProtection> = None;
        let attributes = preflight(&*backend).await?;
        let fifo = is_fifo(backend.name(), &attributes);
        let resolved = config.resolve(attributes.visibility_timeout, H::serial_groups(fifo))?;
        let counters = Arc::new(Counters::default());
        let metrics = Arc::new(WorkerMetrics::register(
            backend.name(),
            config.name.as_deref().unwrap_or(backend.name()),
        ));
        let settler = Settler::start(
            Arc::clone(&backend),
            Arc::clone(&counters),
            config.flush_interval,
        );
        let contract = Contract::new(resolved.grace, config.stop_timeout);
        let shared = Arc::new(Shared {
            backend,
            handler,
            capacity: Capacity::new(config.concurrency),
            poller_turn: tokio::sync::Mutex::new(()),
            completion: Completion::new(config.exit_after_empty_receives),
            config,
            resolved,
            fifo,
            counters: Arc::clone(&counters),
            settler: Arc::clone(&settler),
            shutdown: Arc::new(contract),
            metrics: Arc::clone(&metrics),
            health: health.as_ref().map(Health::attach),
        });
        let reporter = reporter(&shared, metrics, attributes);
        tracing::info!(
            queue = shared.backend.name(),
            concurrency = shared.config.concurrency,
            pollers = resolved.pollers,
            visibility = ?resolved.visibility,
            fifo,
            "worker started"
        );
        // Started before anything else runs: it is the one start step that can fail.
        let reporting_stop = CancellationToken::new();
        let emf = match emf {
            Some(EmfOutput { settings, out }) => Some(spawn_emf_reporter(
                settings.interval,
                emf_record(Arc::clone(&reporter), settings.clone()),
                out,
                reporting_stop.clone(),
            )?),
            None => None,
        };
        let pollers = TaskTracker::new();
        for _ in 0..resolved.pollers {
            pollers.spawn(poll(Arc::clone(&shared)));
        }
        pollers.close();
        if let Some(health) = &shared.health {
            health.receiving();
        }
        let reporting = tokio::spawn(report(reporter, reporting_stop.clone()));
        let protection_stop = CancellationToken::new();
        let protection = protection.map(|protection| {
            let shared = Arc::clone(&shared);
            let stop = protection_stop.clone();
            tokio::spawn(protection.run(move || shared.capacity.messages_in_tasks(), stop))
        });
        Ok(Self {
            started,
            shared,
            settler,
            counters,
            pollers,
            reporting_stop,
            reporting,
            emf,
            protection_stop,
            protection,
        })
    }

    /// Resolves when the engine ends its run by itself: its queue drained, a fatal
    /// error, or [`max_run_time`](WorkerConfig::max_run_time) since the start. Shutdown
    /// has then begun; [`stop`](Self::stop) carries it out.
    pub(crate) async fn ended(&self) -> StopReason {
        let contract = &self.shared.shutdown;
        let Some(limit) = self.shared.config.max_run_time else {
            return contract.ended().await;
        };
        tokio::select! {
            reason = contract.ended() => reason,
            () = sleep_until(self.started + limit) => {
                tracing::info!(max_run_time = ?limit, "the maximum run time has passed; stopping");
                contract.end(StopReason::MaxRunTime);
                contract.reason()
            }
        }
    }

    /// Shuts down by the [shutdown contract](crate::shutdown) for `reason` (unless the
    /// engine ended its run for another first; `immediate` when shutdown asked to release
    /// running handlers at once; a later `hurry` does the same), stops the reporters
    /// after the last batch, and reports the run.
    pub(crate) async fn stop(
        self,
        reason: StopReason,
        immediate: bool,
        hurry: std::pin::Pin<&mut impl std::future::Future>,
    ) -> RunReport {
        let Self {
            started,
            shared,
            settler,
            counters,
            pollers,
            reporting_stop,
            reporting,
            emf,
            protection_stop,
            protection,
        } = self;
        shared.shutdown.record(reason);
        if let Some(health) = &shared.health {
            health.stopping();
        }
        let parts = Parts {
            capacity: &shared.capacity,
            pollers: &pollers,
            settler: &settler,
        };
        stop::carry_out(&shared.shutdown, parts, immediate, hurry).await;
        // Every message is settled and its batches sent (or given up at the hard
        // deadline): no handler runs, protection goes off.
        protection_stop.cancel();
        let reason = shared.shutdown.reason();
        drop(shared);
        // The last publish comes after the last batch, so the final counts are exact.
        reporting_stop.cancel();
        if let Err(error) = reporting.await {
            tracing::error!(%error, "the reporter task failed");
        }
        if let Some(Err(error)) = match emf {
            Some(emf) => Some(emf.await),
            None => None,
        } {
            tracing::error!(%error, "the EMF reporter failed");
        }
        if let Some(protection) = protection {
            match protection.await {
                Ok(report) => tracing::info!(?report, "task protection stopped"),
                Err(error) => tracing::error!(%error, "task protection driver failed"),
            }
        }
        let report = counters.report(started.elapsed(), reason);
        tracing::info!(?report, "worker stopped");
        report
    }
}

/// Whether the queue is a FIFO queue: its name ends in `.fifo` (as every FIFO queue's
/// does, and no standard queue's) or its `FifoQueue` attribute says so. Either is
/// enough: a backend may report no attributes, or a name that is not the queue's.
fn is_fifo(name: &str, attributes: &QueueAttributes) -> bool {
    attributes.fifo || name.ends_with(".fifo")
}

/// Reads the queue's attributes: the worker learns the default visibility timeout, and a
/// queue that does not exist or cannot be read fails the start.
async fn preflight(backend: &dyn Backend) -> Result<QueueAttributes, BackendError> {
    let retryable = |error: &BackendError| {
        let retryable = error.is_retryable();
        if retryable {
            tracing::warn!(%error, "reading queue attributes failed");
        }
        retryable
    };
    retry(CALL_RETRY, PREFLIGHT_ATTEMPTS, retryable, || {
        backend.attributes()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_fifo_by_its_name_or_its_attribute() {
        let standard = QueueAttributes::default();
        let fifo = QueueAttributes {
            fifo: true,
            ..QueueAttributes::default()
        };
        assert!(!is_fifo("orders", &standard));
        assert!(is_fifo("orders.fifo", &standard));
        assert!(is_fifo("orders", &fifo));
        assert!(is_fifo("orders.fifo", &fifo));
        assert!(!is_fifo("orders.fifo.dlq", &standard));
    }
}
