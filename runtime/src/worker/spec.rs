//! Workers defined ahead of their queue: what `#[spotq::worker]` produces, and
//! [`run`], which runs several of them in one process.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use tower::{Layer, Service};

use crate::api::batch::{BatchHandler, BatchOutcome, IntoBatchOutcome};
use crate::api::handler::{Handler, IntoOutcome, Outcome};
use crate::api::message::Message;
use crate::api::service::{HandlerService, ServiceHandler};
use crate::backend::Backend;
#[cfg(feature = "sqs")]
use crate::backend::sqs::SqsBackend;
use crate::config::{QueueSource, WorkerConfig};
use crate::contract::ShutdownHandle;
use crate::engine::{PerBatch, PerMessage};
use crate::error::{BoxError, ConfigError, Error};
use crate::telemetry::health::Health;
use crate::telemetry::stats::RunReport;
use crate::worker::builder::Worker;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A worker defined ahead of its queue: where the queue comes from, the settings and
/// the handler. `#[spotq::worker]` generates a function returning one; [`run`] runs
/// several in one process, and [`worker`](Self::worker) binds one to any backend (an
/// [`EmbeddedQueue`](crate::EmbeddedQueue) in tests).
#[must_use = "a worker spec does nothing until it is run"]
pub struct WorkerSpec {
    queue: QueueSource,
    config: WorkerConfig,
    fifo: bool,
    health: Option<Health>,
    handler: AnyHandler,
    /// A layer for the other kind of handler, reported when the worker starts.
    misfit: Option<ConfigError>,
}

impl fmt::Debug for WorkerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSpec")
            .field("queue", &self.queue)
            .field("config", &self.config)
            .field("fifo", &self.fifo)
            .field("batch", &matches!(self.handler, AnyHandler::Batch(_)))
            .finish_non_exhaustive()
    }
}

enum AnyHandler {
    Message(BoxedHandler),
    Batch(BoxedBatchHandler),
}

/// A handler of requests `R` (a message, or a batch's messages) with outcome `O`,
/// object-safe.
trait DynHandler<R, O>: Send + Sync {
    fn handle(&self, request: R) -> BoxFuture<O>;
    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<H: Handler> DynHandler<Message, Outcome> for H {
    fn handle(&self, message: Message) -> BoxFuture<Outcome> {
        Box::pin(Handler::handle(self, message))
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Handler::ready(self))
    }
}

impl<B: BatchHandler> DynHandler<Vec<Message>, BatchOutcome> for B {
    fn handle(&self, messages: Vec<Message>) -> BoxFuture<BatchOutcome> {
        Box::pin(BatchHandler::handle(self, messages))
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(BatchHandler::ready(self))
    }
}

/// A handler behind a pointer, so workers of different handlers share a type:
/// [`BoxedHandler`] or [`BoxedBatchHandler`].
pub struct Boxed<R, O>(Arc<dyn DynHandler<R, O>>);

/// A per-message handler behind a pointer.
pub type BoxedHandler = Boxed<Message, Outcome>;

/// A batch handler behind a pointer.
pub type BoxedBatchHandler = Boxed<Vec<Message>, BatchOutcome>;

impl<R, O> Clone for Boxed<R, O> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<R, O> fmt::Debug for Boxed<R, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Boxed")
    }
}

impl BoxedHandler {
    fn new<H: Handler>(handler: H) -> Self {
        Self(Arc::new(handler))
    }
}

impl BoxedBatchHandler {
    fn new<B: BatchHandler>(handler: B) -> Self {
        Self(Arc::new(handler))
    }
}

#[diagnostic::do_not_recommend]
impl Handler for BoxedHandler {
    fn handle(&self, message: Message) -> impl Future<Output = Outcome> + Send + 'static {
        self.0.handle(message)
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        self.0.ready()
    }
}

#[diagnostic::do_not_recommend]
impl BatchHandler for BoxedBatchHandler {
    fn handle(
        &self,
        messages: Vec<Message>,
    ) -> impl Future<Output = BatchOutcome> + Send + 'static {
        self.0.handle(messages)
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        self.0.ready()
    }
}

impl WorkerSpec {
    /// A worker that calls `handler` once per message.
    pub fn new<H: Handler>(queue: QueueSource, config: WorkerConfig, handler: H) -> Self {
        Self::with(
            queue,
            config,
            AnyHandler::Message(BoxedHandler::new(handler)),
        )
    }

    /// A worker that calls `handler` once per receive, with all its messages.
    pub fn batch<B: BatchHandler>(queue: QueueSource, config: WorkerConfig, handler: B) -> Self {
        Self::with(
            queue,
            config,
            AnyHandler::Batch(BoxedBatchHandler::new(handler)),
        )
    }

    fn with(queue: QueueSource, config: WorkerConfig, handler: AnyHandler) -> Self {
        Self {
            queue,
            config,
            fifo: false,
            health: None,
            handler,
            misfit: None,
        }
    }

    /// Wraps a per-message handler in a [`tower::Layer`], as
    /// [`WorkerBuilder::layer`](crate::WorkerBuilder::layer) does (the service it makes
    /// is cloned per call); the first layer added is the outermost. On a batch spec this
    /// is a configuration error, reported when the worker starts: use
    /// [`batch_layer`](Self::batch_layer).
    pub fn layer<L, S>(mut self, layer: L) -> Self
    where
        L: Layer<HandlerService<BoxedHandler>, Service = S>,
        S: Service<Message> + Clone + Send + 'static,
        S::Response: IntoOutcome,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        self.handler = match self.handler {
            AnyHandler::Message(handler) => AnyHandler::Message(BoxedHandler::new(
                ServiceHandler::new(layer.layer(HandlerService::new(handler))),
            )),
            batch @ AnyHandler::Batch(_) => {
                self.misfit
                    .get_or_insert_with(|| misfit("layer", "batch_layer"));
                batch
            }
        };
        self
    }

    /// Wraps a batch handler in a [`tower::Layer`] over `Vec<Message>`. On a
    /// per-message spec this is a configuration error, reported when the worker starts:
    /// use [`layer`](Self::layer).
    pub fn batch_layer<L, S>(mut self, layer: L) -> Self
    where
        L: Layer<HandlerService<BoxedBatchHandler>, Service = S>,
        S: Service<Vec<Message>> + Clone + Send + 'static,
        S::Response: IntoBatchOutcome,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        self.handler = match self.handler {
            AnyHandler::Batch(handler) => AnyHandler::Batch(BoxedBatchHandler::new(
                ServiceHandler::new(layer.layer(HandlerService::new(handler))),
            )),
            message @ AnyHandler::Message(_) => {
                self.misfit
                    .get_or_insert_with(|| misfit("batch_layer", "layer"));
                message
            }
        };
        self
    }

    /// Requires a FIFO queue (its name ends in `.fifo`); checked when the worker starts.
    pub fn fifo(mut self, fifo: bool) -> Self {
        self.fifo = fifo;
        self
    }

    /// Reports this worker's liveness and readiness to `health`.
    pub fn health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Changes settings (e.g. from the environment) before the worker runs.
    pub fn configure(mut self, configure: impl FnOnce(&mut WorkerConfig)) -> Self {
        configure(&mut self.config);
        self
    }

    /// Where the queue comes from.
    pub fn queue(&self) -> &QueueSource {
        &self.queue
    }

    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Whether the handler takes whole batches.
    pub fn is_batch(&self) -> bool {
        matches!(self.handler, AnyHandler::Batch(_))
    }

    /// The per-message handler, unless the handler takes whole batches.
    pub fn handler(&self) -> Option<&BoxedHandler> {
        match &self.handler {
            AnyHandler::Message(handler) => Some(handler),
            AnyHandler::Batch(_) => None,
        }
    }

    /// The batch handler, if the handler takes whole batches.
    pub fn batch_handler(&self) -> Option<&BoxedBatchHandler> {
        match &self.handler {
            AnyHandler::Batch(handler) => Some(handler),
            AnyHandler::Message(_) => None,
        }
    }

    /// Binds the worker to `backend`, whatever its [`QueueSource`] says.
    pub fn worker(self, backend: impl Backend) -> Result<AnyWorker, ConfigError> {
        if let Some(misfit) = self.misfit {
            return Err(misfit);
        }
        check_fifo(self.fifo, backend.name())?;
        let mut builder = Worker::builder(backend).config(self.config);
        if let Some(health) = self.health {
            builder = builder.health(health);
        }
        Ok(AnyWorker(match self.handler {
            AnyHandler::Message(handler) => Bound::Message(builder.handler(handler)),
            AnyHandler::Batch(handler) => Bound::Batch(builder.batch_handler(handler)),
        }))
    }

    /// Connects to the SQS queue its [`QueueSource`] names, through the standard AWS
    /// configuration chain (`AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL` included).
    #[cfg(feature = "sqs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
    pub async fn connect(self) -> Result<AnyWorker, Error> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        self.connect_with(&aws_sdk_sqs::Client::new(&config)).await
    }

    #[cfg(feature = "sqs")]
    async fn connect_with(self, client: &aws_sdk_sqs::Client) -> Result<AnyWorker, Error> {
        if let Some(misfit) = &self.misfit {
            return Err(misfit.clone().into());
        }
        let queue = self.queue.resolve()?;
        check_fifo(self.fifo, &queue)?;
        let backend = SqsBackend::connect(client.clone(), &queue).await?;
        Ok(self.worker(backend)?)
    }
}

/// A layer given to a spec whose handler is of the other kind.
fn misfit(used: &'static str, instead: &str) -> ConfigError {
    ConfigError::new(
        used,
        "a layer",
        format!("`WorkerSpec::{instead}`: this spec's handler is of the other kind"),
    )
}

fn check_fifo(fifo: bool, queue: &str) -> Result<(), ConfigError> {
    if fifo && !queue.ends_with(".fifo") {
        return Err(ConfigError::new(
            "fifo",
            queue,
            "a FIFO queue, whose name ends in `.fifo`",
        ));
    }
    Ok(())
}

/// A worker built from a [`WorkerSpec`]: per-message or batch, behind one type.
#[derive(Debug)]
pub struct AnyWorker(Bound);

#[derive(Debug)]
enum Bound {
    Message(Worker<PerMessage<BoxedHandler>>),
    Batch(Worker<PerBatch<BoxedBatchHandler>>),
}

impl AnyWorker {
    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        match &self.0 {
            Bound::Message(worker) => worker.config(),
            Bound::Batch(worker) => worker.config(),
        }
    }

    /// As [`Worker::run`]: until SIGTERM or SIGINT, or the worker's own end.
    pub async fn run(self) -> Result<RunReport, Error> {
        match self.0 {
            Bound::Message(worker) => worker.run().await,
            Bound::Batch(worker) => worker.run().await,
        }
    }

    /// As [`Worker::run_until`].
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<RunReport, Error> {
        match self.0 {
            Bound::Message(worker) => worker.run_until(shutdown).await,
            Bound::Batch(worker) => worker.run_until(shutdown).await,
        }
    }

    /// As [`Worker::run_with`].
    pub async fn run_with(self, shutdown: ShutdownHandle) -> Result<RunReport, Error> {
        match self.0 {
            Bound::Message(worker) => worker.run_with(shutdown).await,
            Bound::Batch(worker) => worker.run_with(shutdown).await,
        }
    }
}

/// Runs several workers in one process until SIGTERM or SIGINT: one shutdown for all
/// (a second signal releases everything at once), one metrics registry (the `metrics`
/// facade's). Every queue is resolved and connected before any worker starts, so a
/// missing variable or queue fails the start. A worker that ends its run by itself
/// (drained, [`max_run_time`](WorkerConfig::max_run_time)) leaves the others running;
/// this returns once every worker has stopped, with each worker's report, in order.
/// [`RunReport::exit_code_of`] is what the binary exits with.
///
/// ```no_run
/// # async fn orders(_: spotq::Message) {}
/// # async fn invoices(_: spotq::Message) {}
/// use std::process::ExitCode;
///
/// use spotq::{config::QueueSource, config::WorkerConfig, WorkerSpec};
///
/// #[tokio::main]
/// async fn main() -> Result<ExitCode, spotq::Error> {
///     let reports = spotq::run([
///         WorkerSpec::new(QueueSource::env("ORDERS_QUEUE"), WorkerConfig::default(), orders),
///         WorkerSpec::new(QueueSource::name("invoices"), WorkerConfig::default(), invoices),
///     ])
///     .await?;
///     Ok(spotq::RunReport::exit_code_of(&reports))
/// }
/// ```
///
/// Feature `sqs`. Without it, bind each spec to its backend with
/// [`WorkerSpec::worker`] and run them with [`run_all`].
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub async fn run(specs: impl IntoIterator<Item = WorkerSpec>) -> Result<Vec<RunReport>, Error> {
    let shutdown = ShutdownHandle::new();
    shutdown.on_termination_signals().map_err(Error::Signals)?;
    run_with(specs, shutdown).await
}

/// As [`run`], until `shutdown` begins instead of a signal.
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub async fn run_with(
    specs: impl IntoIterator<Item = WorkerSpec>,
    shutdown: ShutdownHandle,
) -> Result<Vec<RunReport>, Error> {
    let specs: Vec<_> = specs.into_iter().collect();
    // Settings and queue sources first: nothing is called for a start that cannot work.
    for spec in &specs {
        spec.config.validate()?;
        spec.queue.resolve()?;
    }
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_sqs::Client::new(&config);
    let mut workers = Vec::with_capacity(specs.len());
    for spec in specs {
        workers.push(spec.connect_with(&client).await?);
    }
    run_all(workers, shutdown).await
}

/// Runs bound workers under one shutdown. A worker that fails to start shuts the others
/// down (gracefully) and its error is returned.
pub async fn run_all(
    workers: impl IntoIterator<Item = AnyWorker>,
    shutdown: ShutdownHandle,
) -> Result<Vec<RunReport>, Error> {
    let mut running: FuturesUnordered<_> = workers
        .into_iter()
        .enumerate()
        .map(|(index, worker)| {
            let shutdown = shutdown.clone();
            async move { (index, worker.run_with(shutdown).await) }
        })
        .collect();
    let mut reports = Vec::with_capacity(running.len());
    let mut failure = None;
    while let Some((index, result)) = running.next().await {
        match result {
            Ok(report) => reports.push((index, report)),
            Err(error) => {
                tracing::error!(%error, worker = index, "a worker failed; stopping the others");
                shutdown.begin();
                failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    reports.sort_by_key(|(index, _)| *index);
    Ok(reports.into_iter().map(|(_, report)| report).collect())
}
