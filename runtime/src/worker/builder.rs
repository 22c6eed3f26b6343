//! The public face of the engine: [`Worker`] and its builder.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::batch::BatchHandler;
use crate::api::handler::Handler;
use crate::backend::{Backend, QueueAttributes};
use crate::backoff::{Backoff, CALL_RETRY};
#[cfg(feature = "ecs")]
use crate::ecs::protection::{ProtectionConfig, TaskProtection};
use crate::engine::capacity::Capacity;
use crate::engine::settle::Settler;
use crate::engine::{Dispatch, PerBatch, PerMessage};
use crate::engine::{Shared, poll};
use crate::error::{BackendError, Error};
use crate::shutdown::{Contract, Parts, ShutdownHandle};
use crate::telemetry::emf::spawn_emf_reporter;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::WorkerMetrics;
use crate::telemetry::report::{emf_record, report};
use crate::telemetry::stats::{Counters, RunReport};
use crate::worker::config::{EmfSettings, Heartbeat, RetryPolicy, WorkerConfig};

/// Without feature `ecs` there is no task protection: a driver that is never built.
#[cfg(not(feature = "ecs"))]
enum TaskProtection {}

#[cfg(not(feature = "ecs"))]
impl TaskProtection {
    fn run<F>(self, _in_flight: F, _stop: CancellationToken) -> std::future::Ready<()> {
        match self {}
    }
}

/// Attempts at reading the queue's attributes before the worker gives up starting.
const PREFLIGHT_ATTEMPTS: u32 = 5;

/// A queue consumer: pollers, a handler, and the settings that bind them.
///
/// Build one with [`Worker::builder`], then [`run_until`](Worker::run_until) a shutdown
/// future resolves.
#[derive(Debug)]
pub struct Worker<H> {
    backend: Arc<dyn Backend>,
    config: WorkerConfig,
    health: Option<Health>,
    emf: Option<EmfOutput>,
    handler: H,
}

/// Where a worker writes its EMF lines.
struct EmfOutput {
    settings: EmfSettings,
    out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for EmfOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmfOutput")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Worker`]: settings first, the handler last.
#[derive(Debug)]
#[must_use = "a builder does nothing until `.handler(…)` and a run"]
pub struct WorkerBuilder {
    backend: Arc<dyn Backend>,
    config: WorkerConfig,
    health: Option<Health>,
    emf: Option<EmfOutput>,
}

impl Worker<()> {
    /// Starts building a worker for a queue.
    pub fn builder(backend: impl Backend) -> WorkerBuilder {
        WorkerBuilder {
            backend: Arc::new(backend),
            config: WorkerConfig::default(),
            health: None,
            emf: None,
        }
    }
}

impl WorkerBuilder {
    /// Replaces every setting at once.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Handlers running at once (default 16).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency;
        self
    }

    /// Receive loops (default: one per 10 permits, at most 16).
    pub fn pollers(mut self, pollers: usize) -> Self {
        self.config.pollers = Some(pollers);
        self
    }

    /// Messages asked for per receive, 1 to 10 (default 10).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.config.batch_size = batch_size;
        self
    }

    /// Long-poll wait, at most 20 s (default 20 s).
    pub fn wait_time(mut self, wait_time: Duration) -> Self {
        self.config.wait_time = wait_time;
        self
    }

    /// Visibility timeout asked for on receive, 1 s to 12 h (default: the queue's).
    pub fn visibility_timeout(mut self, visibility_timeout: Duration) -> Self {
        self.config.visibility_timeout = Some(visibility_timeout);
        self
    }

    /// Time after which a running handler counts as failed (default: none).
    pub fn handler_timeout(mut self, handler_timeout: Duration) -> Self {
        self.config.handler_timeout = Some(handler_timeout);
        self
    }

    /// How long-running handlers keep their messages invisible (default: every half
    /// visibility timeout).
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.config.heartbeat = heartbeat;
        self
    }

    /// What happens to a message whose handler failed.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// Retry failed messages after a jittered exponential backoff from `base` to `max`
    /// (default 1 s to 5 min).
    pub fn retry_backoff(self, base: Duration, max: Duration) -> Self {
        self.retry(RetryPolicy::Backoff(Backoff::new(base, max)))
    }

    /// How long a partial batch of deletes or visibility changes waits (default 5 ms).
    pub fn flush_interval(mut self, flush_interval: Duration) -> Self {
        self.config.flush_interval = flush_interval;
        self
    }

    /// The task's stop timeout: time from SIGTERM to SIGKILL (default 30 s, at most 120 s).
    pub fn stop_timeout(mut self, stop_timeout: Duration) -> Self {
        self.config.stop_timeout = stop_timeout;
        self
    }

    /// How long running handlers may go on once shutdown begins (default: stop timeout
    /// less 5 s).
    pub fn shutdown_grace(mut self, shutdown_grace: Duration) -> Self {
        self.config.shutdown_grace = Some(shutdown_grace);
        self
    }

    /// Released messages become visible after a random delay up to `release_jitter`
    /// (default 0: at once; at most 60 s).
    pub fn release_jitter(mut self, release_jitter: Duration) -> Self {
        self.config.release_jitter = release_jitter;
        self
    }

    /// ECS task scale-in protection settings, or `None` to turn it off (default: on
    /// wherever `$ECS_AGENT_URI` is set, i.e. inside an ECS task). Feature `ecs`.
    #[cfg(feature = "ecs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ecs")))]
    pub fn task_protection(mut self, task_protection: Option<ProtectionConfig>) -> Self {
        self.config.task_protection = task_protection;
        self
    }

    /// The `worker` label of this worker's metrics (default: the queue's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Reports this worker's liveness and readiness to `health` (served at `/health`
    /// and `/ready`).
    pub fn health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Writes CloudWatch EMF lines (backlog per task, messages in flight, throughput)
    /// to stdout every `settings.interval`.
    pub fn emf(self, settings: EmfSettings) -> Self {
        self.emf_to(settings, std::io::stdout())
    }

    /// As [`emf`](Self::emf), into `out`.
    pub fn emf_to(mut self, settings: EmfSettings, out: impl Write + Send + 'static) -> Self {
        self.emf = Some(EmfOutput {
            settings,
            out: Box::new(out),
        });
        self
    }

    /// How often to sample the queue's approximate counts for the backlog gauges
    /// (default 20 s; `None` turns sampling off; 1 s to 1 h).
    pub fn backlog_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.backlog_interval = interval;
        self
    }

    /// The number of tasks sharing the queue, for `spotq_backlog_per_task`. Without it,
    /// a worker in an ECS service counts its service's running tasks.
    pub fn running_tasks(mut self, running_tasks: u64) -> Self {
        self.config.running_tasks = Some(running_tasks);
        self
    }

    /// Sets the handler, called once per message, and finishes the worker.
    pub fn handler<H: Handler>(self, handler: H) -> Worker<PerMessage<H>> {
        self.dispatch(PerMessage(handler))
    }

    /// Sets a batch handler, called once per receive with all its messages (up to
    /// [`batch_size`](Self::batch_size)), and finishes the worker. Its
    /// [`BatchOutcome`](crate::BatchOutcome) says which messages failed: those are
    /// retried, the rest deleted.
    pub fn batch_handler<B: BatchHandler>(self, handler: B) -> Worker<PerBatch<B>> {
        self.dispatch(PerBatch(handler))
    }

    /// Finishes the worker with any way of calling handlers.
    pub(crate) fn dispatch<H: Dispatch>(self, handler: H) -> Worker<H> {
        Worker {
            backend: self.backend,
            config: self.config,
            health: self.health,
            emf: self.emf,
            handler,
        }
    }
}

impl<H: Dispatch> Worker<H> {
    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Runs the worker until `shutdown` resolves, then shuts down by the
    /// [shutdown contract](crate::shutdown):
    ///
    /// 1. stops receiving at once; a receive under way is let finish (its long-poll wait
    ///    plus a margin) and the messages it returns are released unstarted;
    /// 2. lets running handlers go on until the grace period ends, extending their
    ///    messages' visibility only up to that deadline;
    /// 3. then cancels the handlers still running and releases their messages
    ///    (visibility 0) so another worker receives them at once;
    /// 4. sends every pending delete and visibility change, and returns before the stop
    ///    timeout.
    ///
    /// Settings are checked before any queue call; a queue that cannot be read at start
    /// (missing, access denied) is an error. After the start, queue errors are retried
    /// with backoff and never end the run.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<RunReport, Error> {
        self.run_inner(shutdown, std::future::pending()).await
    }

    /// Runs the worker until SIGTERM or SIGINT, then shuts down as
    /// [`run_until`](Self::run_until) does; a second signal cancels the running handlers
    /// at once and releases their messages. This is what a worker binary in an ECS task
    /// calls.
    pub async fn run(self) -> Result<RunReport, Error> {
        let shutdown = ShutdownHandle::new();
        shutdown.on_termination_signals().map_err(Error::Signals)?;
        self.run_with(shutdown).await
    }

    /// Runs the worker until `shutdown` begins (graceful, as [`run_until`](Self::run_until))
    /// or fires [`now`](ShutdownHandle::now) (running handlers cancelled at once).
    pub async fn run_with(self, shutdown: ShutdownHandle) -> Result<RunReport, Error> {
        self.run_inner(shutdown.begun(), shutdown.immediate()).await
    }

    async fn run_inner(
        self,
        shutdown: impl Future<Output = ()>,
        immediate: impl Future<Output = ()>,
    ) -> Result<RunReport, Error> {
        let started = Instant::now();
        self.config.validate()?;
        if let Some(emf) = &self.emf {
            emf.settings.validate()?;
        }
        #[cfg(feature = "ecs")]
        let protection = match self.config.task_protection {
            Some(config) => TaskProtection::from_env(config)?,
            None => None,
        };
        #[cfg(not(feature = "ecs"))]
        let protection: Option<TaskProtection> = None;
        let attributes = preflight(&*self.backend).await?;
        let resolved = self.config.resolve(attributes.visibility_timeout)?;
        let counters = Arc::new(Counters::default());
        let metrics = WorkerMetrics::register(
            self.backend.name(),
            self.config.name.as_deref().unwrap_or(self.backend.name()),
        );
        let settler = Settler::start(
            Arc::clone(&self.backend),
            Arc::clone(&counters),
            self.config.flush_interval,
        );
        let contract = Contract::new(resolved.grace, self.config.stop_timeout);
        let shared = Arc::new(Shared {
            backend: self.backend,
            handler: self.handler,
            capacity: Capacity::new(self.config.concurrency),
            poller_turn: tokio::sync::Mutex::new(()),
            config: self.config,
            resolved,
            fifo: attributes.fifo,
            counters: Arc::clone(&counters),
            settler: Arc::clone(&settler),
            shutdown: Arc::new(contract),
            metrics,
            health: self.health.as_ref().map(Health::attach),
            last_backlog: std::sync::Mutex::default(),
        });
        tracing::info!(
            queue = shared.backend.name(),
            concurrency = shared.config.concurrency,
            pollers = resolved.pollers,
            visibility = ?resolved.visibility,
            "worker started"
        );
        // Started before anything else runs: it is the one start step that can fail.
        let reporting_stop = CancellationToken::new();
        let emf = match self.emf {
            Some(EmfOutput { settings, out }) => Some(spawn_emf_reporter(
                settings.interval,
                emf_record(Arc::clone(&shared), settings.clone()),
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
        let reporting = tokio::spawn(report(Arc::clone(&shared), reporting_stop.clone()));
        let protection_stop = CancellationToken::new();
        let protection = protection.map(|protection| {
            let shared = Arc::clone(&shared);
            let stop = protection_stop.clone();
            tokio::spawn(protection.run(move || shared.capacity.messages_in_flight(), stop))
        });

        tokio::pin!(immediate);
        // `immediate` may already have fired (and must not be polled again).
        let now = tokio::select! {
            () = shutdown => false,
            () = &mut immediate => true,
        };
        if let Some(health) = &shared.health {
            health.stopping();
        }
        let parts = Parts {
            capacity: &shared.capacity,
            pollers: &pollers,
            settler: &settler,
        };
        shared.shutdown.carry_out(parts, now, immediate).await;
        // Every message is settled and its batches sent (or given up at the hard
        // deadline): no handler runs, protection goes off.
        protection_stop.cancel();
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
        let report = counters.report(started.elapsed());
        tracing::info!(?report, "worker stopped");
        Ok(report)
    }
}

/// Reads the queue's attributes: the worker learns the default visibility timeout, and a
/// queue that does not exist or cannot be read fails the start.
async fn preflight(backend: &dyn Backend) -> Result<QueueAttributes, BackendError> {
    let mut attempt = 1;
    loop {
        match backend.attributes().await {
            Ok(attributes) => return Ok(attributes),
            Err(error) if error.is_retryable() && attempt < PREFLIGHT_ATTEMPTS => {
                tracing::warn!(%error, attempt, "reading queue attributes failed; retrying");
                sleep(CALL_RETRY.delay(attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
