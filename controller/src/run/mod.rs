//! The controller's loops: per binding, every poll interval, read the queue and the
//! target, decide, and change the desired count when the decision differs (a job
//! binding: start the tasks its backlog needs, [`JobLoop`]); log each change with its
//! inputs and reason, and publish the figures through `metrics`.

mod job;

pub use job::{JobEvent, JobLoop};

use std::sync::Arc;
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use spotq::backend::BackendError;
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Binding, Config, JobRunner, TargetConfig, queue_name};
use crate::decision::job::JobPolicy;
use crate::decision::{Decision, Observation, QueueCounts, Scaler, ServiceCounts};
use crate::inputs::{
    CALL_RETRY, EcsTasks, QueueSource, Retryable as _, SqsQueue, WorkerAddresses, WorkerFigures,
    WorkerProbe, WorkerSource,
};
use crate::targets::{EcsJobTarget, EcsTarget, JobTarget, LocalTarget, Target, TargetError};

/// How long one AWS call may take before it counts as failed (and is retried).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to an AWS endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Every metric the controller publishes: name, kind, unit, help. Labels: `binding`,
/// plus `reason` on decisions and start failures, `operation` on errors, `state` on
/// queue messages, `outcome` on job exits.
pub const CATALOG: &[(&str, &str, Unit, &str)] = &[
    (
        "spotq_controller_desired_tasks",
        "gauge",
        Unit::Count,
        "The desired count after the last decision (a job binding: the tasks its backlog wants).",
    ),
    (
        "spotq_controller_running_tasks",
        "gauge",
        Unit::Count,
        "Tasks running, as last read.",
    ),
    (
        "spotq_controller_pending_tasks",
        "gauge",
        Unit::Count,
        "Tasks starting, as last read (a job binding: with those started and not listed yet).",
    ),
    (
        "spotq_controller_queue_messages",
        "gauge",
        Unit::Count,
        "The queue's approximate counts, by state: visible, not_visible, delayed.",
    ),
    (
        "spotq_controller_backlog_per_task",
        "gauge",
        Unit::Count,
        "The messages per task aimed at.",
    ),
    (
        "spotq_controller_held_messages",
        "gauge",
        Unit::Count,
        "Messages the service's workers hold, as last read from every one of them.",
    ),
    (
        "spotq_controller_decisions_total",
        "counter",
        Unit::Count,
        "Changes of the desired count (a job binding: polls that start tasks), by reason.",
    ),
    (
        "spotq_controller_job_tasks_started_total",
        "counter",
        Unit::Count,
        "Job tasks started (ECS RunTask, or local processes).",
    ),
    (
        "spotq_controller_spot_fallbacks_total",
        "counter",
        Unit::Count,
        "Job tasks started on FARGATE because FARGATE_SPOT had no capacity.",
    ),
    (
        "spotq_controller_job_start_failures_total",
        "counter",
        Unit::Count,
        "Job tasks asked for and not started, by reason: no_capacity, failed.",
    ),
    (
        "spotq_controller_job_exits_total",
        "counter",
        Unit::Count,
        "Local job processes that exited by themselves, by outcome: succeeded, failed.",
    ),
    (
        "spotq_controller_errors_total",
        "counter",
        Unit::Count,
        "Failed calls (each attempt), by operation.",
    ),
    (
        "spotq_controller_polls_total",
        "counter",
        Unit::Count,
        "Polls made.",
    ),
];

fn describe_metrics() {
    for (name, kind, unit, help) in CATALOG {
        match *kind {
            "counter" => describe_counter!(*name, *unit, *help),
            _ => describe_gauge!(*name, *unit, *help),
        }
    }
}

/// A decision some binding made, as sent to [`Controller::decisions`] subscribers.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionEvent {
    /// The binding's name.
    pub binding: String,
    /// When the poll began, before its reads.
    pub polled_at: Instant,
    /// The decision.
    pub decision: Decision,
    /// Whether the target was changed (false for a hold, a dry run, or a failed
    /// update).
    pub applied: bool,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A binding's queue could not be found (or `GetQueueUrl` failed for good).
    #[error("binding {binding}: cannot find queue {queue}: {source}")]
    Queue {
        /// The binding's name.
        binding: String,
        /// The queue as configured.
        queue: String,
        /// The failed call.
        #[source]
        source: BackendError,
    },
    /// A binding's ECS service (or a job binding's cluster) does not exist, or may not be
    /// read.
    #[error(
        "binding {binding}: check its `cluster` and `service` (or its `[binding.job]`): {source}"
    )]
    Target {
        /// The binding's name.
        binding: String,
        /// The failed read.
        #[source]
        source: TargetError,
    },
}

/// One binding's loop.
pub struct BindingLoop {
    binding: Binding,
    queue: Arc<dyn QueueSource>,
    target: Arc<dyn Target>,
    workers: Option<Box<dyn WorkerSource>>,
    scaler: Scaler,
    dry_run: bool,
    /// In a dry run, the count the last change would have set: the next decisions start
    /// from it, so a change is logged once rather than on every poll.
    assumed: Option<u32>,
    decisions: broadcast::Sender<DecisionEvent>,
}

impl BindingLoop {
    /// A loop for `binding` over a queue and a target; it reads the workers at the
    /// binding's `metrics_urls`, if any (the series of the binding's queue).
    pub fn new(
        binding: Binding,
        queue: Arc<dyn QueueSource>,
        target: Arc<dyn Target>,
        dry_run: bool,
    ) -> Self {
        let workers = (!binding.metrics_urls.is_empty()).then(|| {
            Box::new(worker_probe(
                &binding,
                WorkerAddresses::Fixed(binding.metrics_urls.clone()),
            )) as Box<dyn WorkerSource>
        });
        let scaler = Scaler::new(binding.policy.clone());
        let (decisions, _) = broadcast::channel(256);
        Self {
            binding,
            queue,
            target,
            workers,
            scaler,
            dry_run,
            assumed: None,
            decisions,
        }
    }

    /// Reads the workers from `workers` instead (an ECS service's tasks, or a test's).
    #[must_use]
    pub fn with_workers(mut self, workers: impl WorkerSource) -> Self {
        self.workers = Some(Box::new(workers));
        self
    }

    /// Decisions as they are made.
    pub fn subscribe(&self) -> broadcast::Receiver<DecisionEvent> {
        self.decisions.subscribe()
    }

    /// Polls every interval until `stop` is cancelled, then shuts the target down.
    pub async fn run(self, stop: CancellationToken) {
        every_poll(self, stop).await;
    }

    /// One poll: read, decide, act. Returns the decision.
    pub async fn poll(&mut self) -> Decision {
        let polled_at = Instant::now();
        let name = self.binding.name.clone();
        counter!("spotq_controller_polls_total", "binding" => name.clone()).increment(1);
        let (queue, service) = tokio::join!(read_queue(&name, &*self.queue), self.read_target());
        let workers = match (&mut self.workers, &service) {
            // No task runs or starts: no worker holds a message, and none is there to
            // read.
            (Some(_), Some(service)) if service.running == 0 && service.pending == 0 => {
                WorkerFigures::NONE_RUNNING
            }
            (Some(workers), _) => workers.read().await,
            (None, _) => WorkerFigures::default(),
        };
        let throughput = workers.throughput;
        let mut observed = service;
        if let (true, Some(assumed), Some(service)) = (self.dry_run, self.assumed, &mut observed) {
            service.desired = assumed;
        }
        let observation = Observation {
            queue,
            service: observed,
            throughput,
            held: workers.held,
        };
        let decision = self.scaler.decide(polled_at, &observation);
        self.publish(&observation, &decision);
        let mut applied = false;
        if let Some(desired) = decision.change() {
            self.log_change(&observation, &decision, throughput);
            counter!(
                "spotq_controller_decisions_total",
                "binding" => name.clone(),
                "reason" => decision.reason.as_str()
            )
            .increment(1);
            if self.dry_run {
                self.assumed = Some(desired);
            } else {
                applied = self.apply(desired).await;
            }
        } else {
            tracing::debug!(
                binding = %name,
                desired = decision.desired,
                reason = %decision.reason,
                "no change"
            );
        }
        // Nobody listening is fine.
        let _ = self.decisions.send(DecisionEvent {
            binding: name,
            polled_at,
            decision,
            applied,
        });
        decision
    }

    async fn read_target(&self) -> Option<ServiceCounts> {
        let name = &self.binding.name;
        CALL_RETRY
            .run(
                || self.target.counts(),
                |error: &TargetError| {
                    tracing::warn!(binding = %name, %error, "could not read the service");
                    count_target_error(name, error, "DescribeServices");
                },
            )
            .await
            .ok()
    }

    async fn apply(&self, desired: u32) -> bool {
        let name = &self.binding.name;
        let operation = self.target.update_operation();
        CALL_RETRY
            .run(
                || self.target.set_desired(desired),
                |error: &TargetError| {
                    tracing::error!(binding = %name, desired, %error, "could not set the desired count");
                    count_target_error(name, error, operation);
                },
            )
            .await
            .is_ok()
    }

    fn publish(&self, observation: &Observation, decision: &Decision) {
        let name = self.binding.name.clone();
        gauge!("spotq_controller_desired_tasks", "binding" => name.clone())
            .set(f64::from(decision.desired));
        gauge!("spotq_controller_backlog_per_task", "binding" => name.clone())
            .set(decision.backlog_per_task);
        if let Some(held) = observation.held {
            gauge!("spotq_controller_held_messages", "binding" => name.clone()).set(held as f64);
        }
        if let Some(service) = observation.service {
            gauge!("spotq_controller_running_tasks", "binding" => name.clone())
                .set(f64::from(service.running));
            gauge!("spotq_controller_pending_tasks", "binding" => name.clone())
                .set(f64::from(service.pending));
        }
        if let Some(queue) = &observation.queue {
            publish_queue(&name, queue);
        }
    }

    /// The one line per change: what was read, what was decided, and why.
    fn log_change(&self, observation: &Observation, decision: &Decision, throughput: Option<f64>) {
        let queue = observation.queue.unwrap_or_default();
        let service = observation.service.unwrap_or_default();
        tracing::info!(
            binding = %self.binding.name,
            from = decision.current,
            to = decision.desired,
            reason = %decision.reason,
            visible = queue.visible,
            not_visible = queue.not_visible,
            delayed = queue.delayed,
            held = observation.held,
            running = service.running,
            pending = service.pending,
            needed = decision.needed,
            backlog_per_task = decision.backlog_per_task,
            throughput,
            dry_run = self.dry_run,
            "desired count changed"
        );
    }
}

impl Polls for BindingLoop {
    fn interval(&self) -> Duration {
        self.binding.poll_interval
    }

    async fn poll_once(&mut self) {
        self.poll().await;
    }

    async fn finish(&self) {
        self.target.shutdown().await;
    }
}

/// A binding's loop, as [`every_poll`] runs it.
trait Polls: Send {
    /// The poll interval.
    fn interval(&self) -> Duration;
    /// One poll.
    fn poll_once(&mut self) -> impl Future<Output = ()> + Send;
    /// Once the loop stops.
    fn finish(&self) -> impl Future<Output = ()> + Send;
}

/// Polls every interval (a late poll delays the next rather than bunching them) until
/// `stop` is cancelled, then finishes.
async fn every_poll(mut looped: impl Polls, stop: CancellationToken) {
    let mut ticker = interval(looped.interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {
                looped.poll_once().await;
            }
        }
    }
    looped.finish().await;
}

/// The queue's counts, retried; each failed attempt logged and counted.
async fn read_queue(name: &str, queue: &dyn QueueSource) -> Option<QueueCounts> {
    CALL_RETRY
        .run(
            || queue.counts(),
            |error: &BackendError| {
                tracing::warn!(binding = %name, %error, "could not read the queue");
                counter!(
                    "spotq_controller_errors_total",
                    "binding" => name.to_owned(),
                    "operation" => error.operation()
                )
                .increment(1);
            },
        )
        .await
        .ok()
}

/// The queue's counts as gauges.
fn publish_queue(name: &str, queue: &QueueCounts) {
    for (state, value) in [
        ("visible", queue.visible),
        ("not_visible", queue.not_visible),
        ("delayed", queue.delayed),
    ] {
        gauge!(
            "spotq_controller_queue_messages",
            "binding" => name.to_owned(),
            "state" => state
        )
        .set(value as f64);
    }
}

/// Counts a failed call of a target (each attempt).
fn count_target_error(name: &str, error: &TargetError, fallback: &'static str) {
    counter!(
        "spotq_controller_errors_total",
        "binding" => name.to_owned(),
        "operation" => target_operation(error, fallback)
    )
    .increment(1);
}

/// The operation a target error names, `fallback` for errors without one.
fn target_operation(error: &TargetError, fallback: &'static str) -> &'static str {
    match error {
        TargetError::Api(error) => error.operation(),
        TargetError::ServiceNotFound { .. } | TargetError::Spawn { .. } => fallback,
    }
}

/// Every binding's loop, running.
#[derive(Debug)]
pub struct Controller {
    stop: CancellationToken,
    tracker: TaskTracker,
    decisions: broadcast::Sender<DecisionEvent>,
    job_decisions: broadcast::Sender<JobEvent>,
    local_targets: Vec<(String, Arc<LocalTarget>)>,
}

/// What a binding's target is, built; a job's with the sizing of its tasks.
enum Built {
    Service(Arc<dyn Target>),
    Job(Arc<dyn JobTarget>, JobPolicy),
}

impl Built {
    /// The target `binding` names, on `ecs` or local; a local one is also added to
    /// `local_targets`, by binding name.
    fn new(
        ecs: &aws_sdk_ecs::Client,
        binding: &Binding,
        local_targets: &mut Vec<(String, Arc<LocalTarget>)>,
    ) -> Self {
        let mut local = |config: &crate::config::LocalConfig| {
            let target = Arc::new(LocalTarget::new(config.clone()));
            local_targets.push((binding.name.clone(), Arc::clone(&target)));
            target
        };
        match &binding.target {
            TargetConfig::Ecs { cluster, service } => {
                Self::Service(Arc::new(EcsTarget::new(ecs.clone(), cluster, service)))
            }
            TargetConfig::Local(config) => Self::Service(local(config)),
            TargetConfig::Job(job) => {
                let policy = job.policy(&binding.policy, binding.poll_interval);
                let target: Arc<dyn JobTarget> = match &job.runner {
                    JobRunner::Ecs(tasks) => {
                        Arc::new(EcsJobTarget::new(ecs.clone(), &binding.name, tasks.clone()))
                    }
                    JobRunner::Local(config) => local(config),
                };
                Self::Job(target, policy)
            }
        }
    }
}

/// The SQS and ECS clients of the standard AWS configuration (which honours
/// `AWS_ENDPOINT_URL`), every call bounded and none retried by the SDK.
async fn aws_clients() -> (aws_sdk_sqs::Client, aws_sdk_ecs::Client) {
    // The loop retries failed calls itself (counting each attempt); a call must not
    // hang a binding's loop for longer than a few polls.
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(CALL_TIMEOUT)
                .build(),
        )
        .load()
        .await;
    (
        aws_sdk_sqs::Client::new(&aws),
        aws_sdk_ecs::Client::new(&aws),
    )
}

/// The binding's queue, its URL looked up (retried).
async fn connect_queue(
    sqs: &aws_sdk_sqs::Client,
    binding: &Binding,
) -> Result<SqsQueue, StartError> {
    CALL_RETRY
        .run(|| SqsQueue::connect(sqs.clone(), &binding.queue), |_| {})
        .await
        .map_err(|source| StartError::Queue {
            binding: binding.name.clone(),
            queue: binding.queue.clone(),
            source,
        })
}

/// Reads the binding's queue and target once (retried). A queue or target that does not
/// exist (or may not be read) is a setting to fix: an error. A passing failure only
/// leaves the first polls to retry: a warning.
async fn read_once(binding: &Binding, queue: &SqsQueue, target: &Built) -> Result<(), StartError> {
    match CALL_RETRY.run(|| queue.counts(), |_| {}).await {
        Err(source) if !source.is_retryable() => {
            return Err(StartError::Queue {
                binding: binding.name.clone(),
                queue: binding.queue.clone(),
                source,
            });
        }
        Err(error) => {
            tracing::warn!(binding = %binding.name, %error, "cannot read the queue yet");
        }
        Ok(_) => {}
    }
    let read = match target {
        Built::Service(target) => CALL_RETRY.run(|| target.counts(), |_| {}).await.err(),
        Built::Job(target, _) => CALL_RETRY.run(|| target.tasks(), |_| {}).await.err(),
    };
    match read {
        Some(source) if !source.is_retryable() => {
            return Err(StartError::Target {
                binding: binding.name.clone(),
                source,
            });
        }
        Some(error) => {
            tracing::warn!(binding = %binding.name, %error, "cannot read the target yet");
        }
        None => {}
    }
    Ok(())
}

/// The loop of a service binding. An ECS service with a `metrics_port` has its workers
/// read at its tasks' addresses; any other binding at its `metrics_urls`, if any.
fn service_loop(
    ecs: &aws_sdk_ecs::Client,
    binding: Binding,
    queue: Arc<dyn QueueSource>,
    target: Arc<dyn Target>,
    dry_run: bool,
) -> BindingLoop {
    let workers = match (&binding.target, binding.metrics_port) {
        (TargetConfig::Ecs { cluster, service }, Some(port)) => Some(worker_probe(
            &binding,
            WorkerAddresses::Ecs(EcsTasks::new(ecs.clone(), cluster, service, port)),
        )),
        _ => None,
    };
    let binding = BindingLoop::new(binding, queue, target, dry_run);
    match workers {
        Some(workers) => binding.with_workers(workers),
        None => binding,
    }
}

impl Controller {
    /// Connects every binding (SQS and ECS clients from the standard AWS
    /// configuration, which honours `AWS_ENDPOINT_URL`), reads each queue and target
    /// once, and starts their loops. Fails for a queue, service or job cluster that does
    /// not exist or may not be read; passing failures (throttling, network) are left to
    /// the loops.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        describe_metrics();
        let (sqs, ecs) = aws_clients().await;
        let mut loops = Vec::new();
        let mut job_loops = Vec::new();
        let mut local_targets = Vec::new();
        for binding in config.bindings {
            let queue = connect_queue(&sqs, &binding).await?;
            let target = Built::new(&ecs, &binding, &mut local_targets);
            read_once(&binding, &queue, &target).await?;
            tracing::info!(
                binding = %binding.name,
                queue = queue.url(),
                target = ?binding.target,
                poll_interval = ?binding.poll_interval,
                dry_run = config.dry_run,
                "binding started"
            );
            let queue: Arc<dyn QueueSource> = Arc::new(queue);
            match target {
                Built::Service(target) => {
                    loops.push(service_loop(&ecs, binding, queue, target, config.dry_run));
                }
                Built::Job(target, policy) => {
                    job_loops.push(JobLoop::new(binding, policy, queue, target, config.dry_run));
                }
            }
        }
        Ok(Self::spawn(loops, job_loops, local_targets))
    }

    /// Runs loops built by hand (other queue sources or targets).
    pub fn spawn(
        loops: Vec<BindingLoop>,
        job_loops: Vec<JobLoop>,
        local_targets: Vec<(String, Arc<LocalTarget>)>,
    ) -> Self {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (decisions, _) = broadcast::channel(1024);
        let (job_decisions, _) = broadcast::channel(1024);
        for binding in loops {
            forward(&tracker, &stop, binding.subscribe(), decisions.clone());
            tracker.spawn(binding.run(stop.clone()));
        }
        for job in job_loops {
            forward(&tracker, &stop, job.subscribe(), job_decisions.clone());
            tracker.spawn(job.run(stop.clone()));
        }
        tracker.close();
        Self {
            stop,
            tracker,
            decisions,
            job_decisions,
            local_targets,
        }
    }

    /// Every service binding's decisions from now on.
    pub fn decisions(&self) -> broadcast::Receiver<DecisionEvent> {
        self.decisions.subscribe()
    }

    /// Every job binding's decisions from now on.
    pub fn job_decisions(&self) -> broadcast::Receiver<JobEvent> {
        self.job_decisions.subscribe()
    }

    /// The local target of the binding `name`, if it has one.
    pub fn local_target(&self, name: &str) -> Option<Arc<LocalTarget>> {
        self.local_targets
            .iter()
            .find(|(binding, _)| binding == name)
            .map(|(_, target)| Arc::clone(target))
    }

    /// Stops every loop (a local target stops its workers) and waits for them.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.wait().await;
    }
}

/// The probe of a binding's workers at `addresses`: it reads the series of the binding's
/// queue only (a worker process may work several queues).
pub(crate) fn worker_probe(binding: &Binding, addresses: WorkerAddresses) -> WorkerProbe {
    WorkerProbe::new(binding.name.clone(), addresses).for_queue(queue_name(&binding.queue))
}

/// Passes a loop's events on to the controller's subscribers until `stop`.
fn forward<T: Clone + Send + 'static>(
    tracker: &TaskTracker,
    stop: &CancellationToken,
    mut events: broadcast::Receiver<T>,
    to: broadcast::Sender<T>,
) {
    let stop = stop.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                event = events.recv() => match event {
                    // Nobody listening is fine.
                    Ok(event) => { let _ = to.send(event); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
}

#[cfg(test)]
mod tests;
