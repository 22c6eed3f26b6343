//! A job binding's loop: every poll interval, read the queue and the binding's tasks,
//! size them ([`JobScaler`]), and start the tasks the backlog needs. Tasks are never
//! stopped: they exit by themselves once the queue is drained.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Polls, count_target_error, every_poll, publish_queue, read_queue};
use crate::config::Binding;
use crate::decision::job::{JobDecision, JobObservation, JobPolicy, JobScaler, JobTasks};
use crate::inputs::{CALL_RETRY, QueueSource};
use crate::targets::{JobTarget, Started, TargetError};

/// A poll of a job binding, as sent to [`Controller::job_decisions`](super::Controller::job_decisions)
/// subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// The binding's name.
    pub binding: String,
    /// When the poll began, before its reads.
    pub polled_at: Instant,
    /// The decision.
    pub decision: JobDecision,
    /// Tasks this poll started (none for a hold or a dry run).
    pub started: u32,
    /// Of those, the tasks started on `FARGATE` because `FARGATE_SPOT` had no capacity.
    pub fallbacks: u32,
    /// Whether fewer tasks started than the decision asked for.
    pub fell_short: bool,
}

/// One job binding's loop.
pub struct JobLoop {
    binding: Binding,
    queue: Arc<dyn QueueSource>,
    target: Arc<dyn JobTarget>,
    scaler: JobScaler,
    dry_run: bool,
    /// The tasks a dry run pretended to start, for their made-up ids.
    pretended: u64,
    events: broadcast::Sender<JobEvent>,
}

impl JobLoop {
    /// A loop for the job binding `binding`, sizing its tasks by `policy` (see
    /// [`Binding::job_policy`]), over a queue and a target.
    pub fn new(
        binding: Binding,
        policy: JobPolicy,
        queue: Arc<dyn QueueSource>,
        target: Arc<dyn JobTarget>,
        dry_run: bool,
    ) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            binding,
            queue,
            target,
            scaler: JobScaler::new(policy),
            dry_run,
            pretended: 0,
            events,
        }
    }

    /// Polls as they are made.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Polls every interval until `stop` is cancelled, then shuts the target down
    /// (local processes get SIGTERM; ECS tasks run on).
    pub async fn run(self, stop: CancellationToken) {
        every_poll(self, stop).await;
    }

    /// One poll: read, size, start. Returns what it did.
    pub async fn poll(&mut self) -> JobEvent {
        let polled_at = Instant::now();
        let name = self.binding.name.clone();
        counter!("spotq_controller_polls_total", "binding" => name.clone()).increment(1);
        let (queue, tasks) = tokio::join!(read_queue(&name, &*self.queue), self.read_tasks());
        if let Some(tasks) = &tasks {
            count_exits(&name, tasks);
        }
        let observation = JobObservation { queue, tasks };
        let decision = self.scaler.decide(polled_at, &observation);
        self.publish(&observation, &decision);
        let mut event = JobEvent {
            binding: name.clone(),
            polled_at,
            decision,
            started: 0,
            fallbacks: 0,
            fell_short: false,
        };
        if decision.starts > 0 {
            self.log_start(&observation, &decision);
            counter!(
                "spotq_controller_decisions_total",
                "binding" => name.clone(),
                "reason" => decision.reason.as_str()
            )
            .increment(1);
            if self.dry_run {
                // Counted as started (and never listed) for the grace, as a start
                // would be: the next polls do not log the same start again.
                let pretended: Vec<String> = (0..decision.starts)
                    .map(|_| {
                        self.pretended += 1;
                        format!("dry-run-{}", self.pretended)
                    })
                    .collect();
                self.scaler.started(polled_at, &pretended, false);
            } else {
                let started = self.start(decision.starts).await;
                let retry_in = self
                    .scaler
                    .started(polled_at, &started.tasks, started.fell_short());
                self.report(&decision, &started, retry_in);
                event.started = u32::try_from(started.tasks.len()).unwrap_or(u32::MAX);
                event.fallbacks = started.fallbacks;
                event.fell_short = started.fell_short();
            }
        } else {
            tracing::debug!(
                binding = %name,
                reason = %decision.reason,
                active = decision.active,
                wanted = decision.wanted,
                "no job task started"
            );
        }
        // Nobody listening is fine.
        let _ = self.events.send(event.clone());
        event
    }

    async fn read_tasks(&self) -> Option<JobTasks> {
        let name = &self.binding.name;
        let operation = self.target.list_operation();
        CALL_RETRY
            .run(
                || self.target.tasks(),
                |error: &TargetError| {
                    tracing::warn!(binding = %name, %error, "could not read the job tasks");
                    count_target_error(name, error, operation);
                },
            )
            .await
            .ok()
    }

    async fn start(&self, count: u32) -> Started {
        let name = &self.binding.name;
        let operation = self.target.start_operation();
        let on_error = |error: &TargetError| {
            tracing::error!(binding = %name, tasks = count, %error, "could not start job tasks");
            count_target_error(name, error, operation);
        };
        self.target.start(count, &on_error).await
    }

    fn publish(&self, observation: &JobObservation, decision: &JobDecision) {
        let name = self.binding.name.clone();
        gauge!("spotq_controller_desired_tasks", "binding" => name.clone())
            .set(f64::from(decision.wanted));
        gauge!("spotq_controller_backlog_per_task", "binding" => name.clone())
            .set(self.scaler.policy().messages_per_task as f64);
        if let Some(tasks) = &observation.tasks {
            gauge!("spotq_controller_running_tasks", "binding" => name.clone())
                .set(f64::from(tasks.running));
            gauge!("spotq_controller_pending_tasks", "binding" => name.clone())
                .set(f64::from(tasks.pending.saturating_add(decision.unlisted)));
        }
        if let Some(queue) = &observation.queue {
            publish_queue(&name, queue);
        }
    }

    /// The one line per start: what was read, what was decided, and why.
    fn log_start(&self, observation: &JobObservation, decision: &JobDecision) {
        let queue = observation.queue.unwrap_or_default();
        let tasks = observation.tasks.clone().unwrap_or_default();
        tracing::info!(
            binding = %self.binding.name,
            starts = decision.starts,
            reason = %decision.reason,
            visible = queue.visible,
            not_visible = queue.not_visible,
            delayed = queue.delayed,
            pending = tasks.pending,
            running = tasks.running,
            unlisted = decision.unlisted,
            needed = decision.needed,
            wanted = decision.wanted,
            messages_per_task = self.scaler.policy().messages_per_task,
            dry_run = self.dry_run,
            "starting job tasks"
        );
    }

    /// Counts what a start did, and logs a shortfall with the wait before the next.
    fn report(&self, decision: &JobDecision, started: &Started, retry_in: Option<Duration>) {
        let name = self.binding.name.clone();
        let count = |metric: &'static str, value: u32| {
            counter!(metric, "binding" => name.clone()).increment(u64::from(value));
        };
        count(
            "spotq_controller_job_tasks_started_total",
            u32::try_from(started.tasks.len()).unwrap_or(u32::MAX),
        );
        count("spotq_controller_spot_fallbacks_total", started.fallbacks);
        for (reason, tasks) in [
            ("no_capacity", started.no_capacity),
            ("failed", started.failed),
        ] {
            counter!(
                "spotq_controller_job_start_failures_total",
                "binding" => name.clone(),
                "reason" => reason
            )
            .increment(u64::from(tasks));
        }
        if started.fell_short() {
            tracing::warn!(
                binding = %name,
                asked = decision.starts,
                started = started.tasks.len(),
                no_capacity = started.no_capacity,
                failed = started.failed,
                error = started.error.as_ref().map(tracing::field::display),
                retry_in = ?retry_in,
                "job tasks not started; retrying after the backoff"
            );
        }
    }
}

/// Counts the job processes seen to have exited since the last read.
fn count_exits(name: &str, tasks: &JobTasks) {
    for (outcome, exits) in [
        ("succeeded", tasks.exited.saturating_sub(tasks.failed)),
        ("failed", tasks.failed),
    ] {
        if exits > 0 {
            counter!(
                "spotq_controller_job_exits_total",
                "binding" => name.to_owned(),
                "outcome" => outcome
            )
            .increment(u64::from(exits));
        }
    }
}

impl Polls for JobLoop {
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
