//! The public face of the engine: [`Worker`] and its builder.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;
use tower::layer::util::{Identity, Stack};

use crate::api::batch::BatchHandler;
use crate::api::handler::Handler;
use crate::api::service::ServiceHandler;
use crate::backend::Backend;
use crate::backoff::Backoff;
use crate::config::{Heartbeat, RetryPolicy, WorkerConfig, config_setters};
use crate::contract::{ShutdownHandle, StopReason};
#[cfg(feature = "ecs")]
use crate::ecs::protection::ProtectionConfig;
use crate::engine::{Dispatch, Engine, PerBatch, PerMessage, Setup, Wrap};
use crate::error::Error;
use crate::telemetry::emf::EmfOutput;
use crate::telemetry::emf::EmfSettings;
use crate::telemetry::health::Health;
use crate::telemetry::stats::{Counters, RunReport};

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

/// Builds a [`Worker`]: settings and [layers](Self::layer) first, the handler last.
#[derive(Debug)]
#[must_use = "a builder does nothing until `.handler(…)` and a run"]
pub struct WorkerBuilder<L = Identity> {
    backend: Arc<dyn Backend>,
    config: WorkerConfig,
    health: Option<Health>,
    emf: Option<EmfOutput>,
    layers: L,
}

impl Worker<()> {
    /// Starts building a worker for a queue.
    pub fn builder(backend: impl Backend) -> WorkerBuilder {
        WorkerBuilder {
            backend: Arc::new(backend),
            config: WorkerConfig::default(),
            health: None,
            emf: None,
            layers: Identity::new(),
        }
    }
}

impl<L> WorkerBuilder<L> {
    /// Replaces every setting at once.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    // One setter per `WorkerConfig` field, with the field's doc.
    config_setters!();

    /// Retry failed messages after a jittered exponential backoff from `base` to `max`
    /// (default 1 s to 5 min).
    pub fn retry_backoff(self, base: Duration, max: Duration) -> Self {
        self.retry(RetryPolicy::Backoff(Backoff::new(base, max)))
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

    /// Wraps the handler in a [`tower::Layer`]: tower's `Timeout`, `ConcurrencyLimit`,
    /// `Buffer`, a `ServiceBuilder` of several, or a user's own middleware. The handler
    /// is a [`HandlerService`](crate::handler::HandlerService) inside them (a `Service<Message>`,
    /// or `Service<Vec<Message>>` for a batch handler). The first layer added is the
    /// outermost, as with `ServiceBuilder`.
    ///
    /// The service the layers make is cloned per call, so it must be `Clone`; one that
    /// is not (tower's `RateLimit`) goes behind a `Buffer`, as below
    /// ([`ServiceHandler`](crate::handler::ServiceHandler) says why a bound of 1).
    ///
    /// A layer that is not ready holds receiving back: pollers wait for the service to
    /// be ready before they take slots, so a rate limit of N messages a second keeps
    /// the worker to N a second without messages piling up received and waiting (the
    /// few of one receive that wait for their turn are heartbeated). A layer's error
    /// (tower's `Elapsed`, say) fails the message.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use spotq::{EmbeddedQueue, Message, Worker};
    /// use tower::ServiceBuilder;
    ///
    /// async fn handle(_message: Message) {}
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Inside the runtime: the buffer spawns its task, and tower's rate limit starts a
    /// // timer, when they are made.
    /// let worker = Worker::builder(EmbeddedQueue::new("jobs"))
    ///     .layer(ServiceBuilder::new().buffer(1).rate_limit(50, Duration::from_secs(1)))
    ///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(30)))
    ///     .handler(handle);
    /// # drop(worker);
    /// # }
    /// ```
    pub fn layer<T>(self, layer: T) -> WorkerBuilder<Stack<T, L>> {
        WorkerBuilder {
            backend: self.backend,
            config: self.config,
            health: self.health,
            emf: self.emf,
            layers: Stack::new(layer, self.layers),
        }
    }

    /// Sets the handler, called once per message, and finishes the worker.
    pub fn handler<H: Handler>(self, handler: H) -> Worker<L::Dispatch>
    where
        L: Wrap<PerMessage<H>>,
    {
        self.dispatch(PerMessage(handler))
    }

    /// Sets a [`tower::Service`] over [`Message`](crate::Message) as the handler (inside
    /// the builder's layers), and finishes the worker. Its response is what a handler
    /// may return, its error fails the message.
    pub fn service<S>(self, service: S) -> Worker<PerMessage<ServiceHandler<L::Service>>>
    where
        L: Layer<S>,
        ServiceHandler<L::Service>: Handler,
    {
        self.finish(|layers| PerMessage(ServiceHandler::new(layers.layer(service))))
    }

    /// Sets a batch handler, called once per receive with all its messages (up to
    /// [`batch_size`](Self::batch_size)), and finishes the worker. Its
    /// [`BatchOutcome`](crate::handler::BatchOutcome) says which messages failed: those are
    /// retried, the rest deleted.
    pub fn batch_handler<B: BatchHandler>(self, handler: B) -> Worker<L::Dispatch>
    where
        L: Wrap<PerBatch<B>>,
    {
        self.dispatch(PerBatch(handler))
    }

    /// Finishes the worker with a handler wrapped in the builder's layers.
    pub(crate) fn dispatch<D>(self, handler: D) -> Worker<L::Dispatch>
    where
        L: Wrap<D>,
    {
        self.finish(|layers| layers.wrap(handler))
    }

    /// Finishes the worker with the handler `wrap` makes of the builder's layers.
    fn finish<D>(self, wrap: impl FnOnce(L) -> D) -> Worker<D> {
        Worker {
            backend: self.backend,
            config: self.config,
            health: self.health,
            emf: self.emf,
            handler: wrap(self.layers),
        }
    }
}

impl<H: Dispatch> Worker<H> {
    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Runs the worker until `shutdown` resolves, then shuts down by the
    /// [shutdown contract](crate::shutdown): receiving stops, running handlers get the
    /// grace period, and every message still held goes back to the queue before the stop
    /// timeout.
    ///
    /// Settings are checked before any queue call; a queue that cannot be read at start
    /// (missing, access denied) is an error. After the start, queue errors are retried
    /// with backoff and never end the run, except in a worker that runs to completion
    /// ([`exit_after_empty_receives`](WorkerBuilder::exit_after_empty_receives)).
    ///
    /// The worker may also end its run by itself, by the same contract: once its queue
    /// is drained (run to completion), or after its
    /// [`max_run_time`](WorkerBuilder::max_run_time). The report's
    /// [`stop_reason`](RunReport::stop_reason) says which;
    /// [`RunReport::exit_code`] is what a worker binary exits with.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<RunReport, Error> {
        let shutdown = async {
            shutdown.await;
            StopReason::Requested
        };
        self.run_inner(shutdown, std::future::pending()).await
    }

    /// Runs the worker until SIGTERM or SIGINT (or until it ends its run by itself), then
    /// shuts down as [`run_until`](Self::run_until) does; a second signal cancels the
    /// running handlers at once and releases their messages. This is what a worker binary
    /// in an ECS task calls; its `main` may return the result
    /// ([`RunReport`] is a [`Termination`](std::process::Termination)).
    pub async fn run(self) -> Result<RunReport, Error> {
        let shutdown = ShutdownHandle::new();
        shutdown.on_termination_signals().map_err(Error::Signals)?;
        self.run_with(shutdown).await
    }

    /// Runs the worker until `shutdown` begins (graceful, as [`run_until`](Self::run_until))
    /// or fires [`now`](ShutdownHandle::now) (running handlers cancelled at once).
    pub async fn run_with(self, shutdown: ShutdownHandle) -> Result<RunReport, Error> {
        let begun = async {
            shutdown.begun().await;
            shutdown.reason()
        };
        let immediate = async {
            shutdown.immediate().await;
            shutdown.reason()
        };
        self.run_inner(begun, immediate).await
    }

    /// Runs until `shutdown` or `immediate` resolves with why, or the engine ends the run
    /// by itself; then stops.
    async fn run_inner(
        self,
        shutdown: impl Future<Output = StopReason>,
        immediate: impl Future<Output = StopReason>,
    ) -> Result<RunReport, Error> {
        let started = tokio::time::Instant::now();
        let start = Engine::start(Setup {
            backend: self.backend,
            config: self.config,
            handler: self.handler,
            health: self.health,
            emf: self.emf,
        });
        tokio::pin!(shutdown, immediate, start);
        // A shutdown while the engine starts (its preflight may wait out retries and call
        // timeouts) ends the start: nothing has been received yet, so nothing is held.
        let engine = tokio::select! {
            biased;
            engine = &mut start => engine?,
            reason = &mut shutdown => return Ok(stopped_while_starting(started, reason)),
            reason = &mut immediate => return Ok(stopped_while_starting(started, reason)),
        };
        // `immediate` may already have fired (and must not be polled again).
        let (reason, now) = tokio::select! {
            reason = &mut shutdown => (reason, false),
            reason = &mut immediate => (reason, true),
            reason = engine.ended() => (reason, false),
        };
        Ok(engine.stop(reason, now, immediate).await)
    }
}

/// The report of a run whose shutdown began before its engine had started.
fn stopped_while_starting(started: tokio::time::Instant, reason: StopReason) -> RunReport {
    tracing::info!(
        ?reason,
        "shutdown began while the worker was starting; nothing was received"
    );
    Counters::default().report(started.elapsed(), reason)
}
