//! Job mode: standalone tasks started for a backlog, against KEDA's ScaledJob, over
//! the same arrival traces in the same simulated world (0.1 s steps, seeded).
//!
//! The world: a queue whose counts read exactly, and standalone tasks. A task is running
//! 40 s after its start; from then on it works the queue like the service's tasks (10
//! messages at once, 2 s each) with one poller: a receive takes what is visible at once,
//! and one that finds nothing while the task holds nothing is an empty receive after a
//! 20 s long poll (spotq's default `wait_time`). Two empty receives in a row and the task
//! exits by itself, as `examples/advanced-batch-job.rs` (`exit_after_empty_receives = 2`), which
//! `deploy/batch-job-task-definition.json` runs, does. While several tasks poll, each
//! tick's visible messages go to them in a seeded random order, as SQS hands a message
//! to one of the consumers waiting on it. A task costs from its start to its exit.
//!
//! ECS's `ListTasks` lags: a started task is first listed 5–15 s after its start
//! (uniform, seeded: the n-th task started gets the same lag under every launcher), as
//! ECS's eventual consistency does; `DescribeTasks` then reports it `PENDING` until it
//! runs. A task that exited is no longer listed.
//!
//! The launchers:
//!
//! - **spotq job mode**: `JobScaler` with its defaults (10 messages a task, 60 s of
//!   start grace), `max` 20, polled every 5 s (the controller's default poll interval),
//!   fed the queue's counts and the lagging `ListTasks` / `DescribeTasks` counts.
//! - **KEDA ScaledJob**, as KEDA's documentation (2.16: the ScaledJob specification
//!   and the AWS SQS Queue scaler) describes it: every `pollingInterval` (default
//!   30 s) it creates jobs from `maxScale = min(ceil(queueLength / targetAverageValue),
//!   maxReplicaCount)`, where
//!   `runningJobCount` is the jobs not finished (starting ones too) and
//!   `pendingJobCount` those of them whose pod is not running yet. With the `default`
//!   scaling strategy (the documented default) it creates `maxScale −
//!   runningJobCount`; with `accurate`, `maxReplicaCount − runningJobCount` when
//!   `maxScale + runningJobCount > maxReplicaCount`, else `maxScale − pendingJobCount`
//!   (never fewer than 0). The aws-sqs-queue scaler's queue length is
//!   `ApproximateNumberOfMessages + ApproximateNumberOfMessagesNotVisible` (its
//!   documented default, `scaleOnInFlight` true), its target (`queueLength`, default 5)
//!   set to 10 as spotq's `messages_per_task`, and `maxReplicaCount` (default 100) set
//!   to 20 as spotq's `max`. KEDA reads its own jobs from the Kubernetes API with no lag.
//!
//! The table's figures, per trace and launcher: first message → first task started;
//! tasks started (per burst), the tasks a burst needs (`ceil(size / 10)`, at most 20)
//! and the extras (started − needed); tasks that exited without a message; messages
//! lost (arrived and not done at the end of the hour: 0 is the goal); last message →
//! every message done; the mean wait (arrival → receive); task-seconds.
//!
//! With an emulator, [`measure_on_moto`] runs the real controller's job mode against
//! moto: one burst of 500 messages → the tasks `RunTask` started.

use std::collections::VecDeque;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use spotq_controller::config::{Cli, Config, DEFAULT_MESSAGES_PER_TASK, DEFAULT_POLL_INTERVAL};
use spotq_controller::decision::QueueCounts;
use spotq_controller::decision::job::{JobObservation, JobPolicy, JobScaler, JobTasks};
use spotq_controller::run::{Controller, JobEvent};
use tokio::time::Instant;

use super::{
    BoxError, CONCURRENCY, MAX_TASKS, MESSAGE_TIME, Moto, TASK_START, TICK, every, seconds,
};

/// How long after its start `ListTasks` first lists a task: uniform in this range.
const LIST_LAG: (f64, f64) = (5.0, 15.0);
/// Empty receives in a row after which a task exits (`examples/advanced-batch-job.rs`).
const EMPTY_RECEIVES: u32 = 2;
/// The long poll of a task's receive: spotq's default `wait_time`.
const WAIT_TIME: f64 = 20.0;
/// The simulated hour.
const HORIZON: f64 = 3600.0;

/// One standalone task.
struct Task {
    id: String,
    started_at: f64,
    /// When `ListTasks` first lists it.
    listed_at: f64,
    /// Completion times of the messages it holds.
    holding: Vec<f64>,
    /// Messages it received.
    handled: u64,
    /// Empty receives in a row.
    empty: u32,
    /// When its current receive began.
    polling_since: f64,
}

impl Task {
    fn running(&self, now: f64) -> bool {
        now >= self.started_at + TASK_START
    }
}

/// The queue and the job tasks, as they really are.
struct World {
    now: f64,
    visible: u64,
    /// Arrival times of the visible messages, for their wait.
    waiting_since: VecDeque<f64>,
    waited: f64,
    received: u64,
    tasks: Vec<Task>,
    /// The time of every start.
    starts: Vec<f64>,
    /// Tasks that exited without receiving a message.
    idle: u32,
    arrived: u64,
    done: u64,
    first_arrival: Option<f64>,
    last_arrival: f64,
    drained_at: Option<f64>,
    task_seconds: f64,
    /// Each start's listing lag, in start order.
    lags: fastrand::Rng,
    /// The order in which the tasks receive, each tick.
    order: fastrand::Rng,
}

impl World {
    fn new() -> Self {
        Self {
            now: 0.0,
            visible: 0,
            waiting_since: VecDeque::new(),
            waited: 0.0,
            received: 0,
            tasks: Vec::new(),
            starts: Vec::new(),
            idle: 0,
            arrived: 0,
            done: 0,
            first_arrival: None,
            last_arrival: 0.0,
            drained_at: None,
            task_seconds: 0.0,
            lags: fastrand::Rng::with_seed(5),
            order: fastrand::Rng::with_seed(11),
        }
    }

    fn arrive(&mut self, count: u64) {
        if count == 0 {
            return;
        }
        self.first_arrival.get_or_insert(self.now);
        self.last_arrival = self.now;
        self.drained_at = None;
        self.visible += count;
        self.arrived += count;
        self.waiting_since
            .extend(std::iter::repeat_n(self.now, count as usize));
    }

    /// Starts `count` tasks now; their ids, as `RunTask` returns them.
    fn start(&mut self, count: u32) -> Vec<String> {
        (0..count)
            .map(|_| {
                self.starts.push(self.now);
                let id = format!("task-{}", self.starts.len());
                let (low, high) = LIST_LAG;
                self.tasks.push(Task {
                    id: id.clone(),
                    started_at: self.now,
                    listed_at: self.now + self.lags.f64().mul_add(high - low, low),
                    holding: Vec::new(),
                    handled: 0,
                    empty: 0,
                    polling_since: self.now + TASK_START,
                });
                id
            })
            .collect()
    }

    /// The counts `GetQueueAttributes` returns now.
    fn queue(&self) -> QueueCounts {
        QueueCounts {
            visible: self.visible,
            not_visible: self
                .tasks
                .iter()
                .map(|task| task.holding.len() as u64)
                .sum(),
            delayed: 0,
        }
    }

    /// The tasks as `ListTasks` and `DescribeTasks` report them now.
    fn listed(&self) -> JobTasks {
        let listed: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|task| self.now >= task.listed_at)
            .collect();
        let running = listed.iter().filter(|task| task.running(self.now)).count() as u32;
        JobTasks {
            listed: listed.iter().map(|task| task.id.clone()).collect(),
            pending: listed.len() as u32 - running,
            running,
            ..JobTasks::default()
        }
    }

    fn step(&mut self) {
        let now = self.now;
        let count = self.tasks.len();
        let first = if count > 0 {
            self.order.usize(..count)
        } else {
            0
        };
        for index in 0..count {
            let task = &mut self.tasks[(first + index) % count];
            let before = task.holding.len();
            task.holding.retain(|at| *at > now);
            self.done += (before - task.holding.len()) as u64;
            if !task.running(now) {
                continue;
            }
            let free = CONCURRENCY - task.holding.len() as u64;
            if free > 0 && self.visible > 0 {
                let take = free.min(self.visible);
                self.visible -= take;
                self.received += take;
                for since in self.waiting_since.drain(..take as usize) {
                    self.waited += now - since;
                }
                task.holding
                    .extend(std::iter::repeat_n(now + MESSAGE_TIME, take as usize));
                task.handled += take;
                task.empty = 0;
                task.polling_since = now;
            } else if !task.holding.is_empty() {
                // A receive that finds nothing while the task holds a message does not
                // count towards its exit.
                task.empty = 0;
                task.polling_since = now;
            } else if now - task.polling_since >= WAIT_TIME - TICK / 2.0 {
                task.empty += 1;
                task.polling_since = now;
            }
        }
        let exits = |task: &Task| task.empty >= EMPTY_RECEIVES;
        self.idle += self
            .tasks
            .iter()
            .filter(|task| exits(task) && task.handled == 0)
            .count() as u32;
        self.tasks.retain(|task| !exits(task));
        self.task_seconds += self.tasks.len() as f64 * TICK;
        if self.arrived > 0 && self.done == self.arrived {
            self.drained_at.get_or_insert(now);
        }
        self.now += TICK;
    }
}

/// A way of starting job tasks: called every tick, it may start some.
trait Launcher {
    fn name(&self) -> &'static str;
    fn tick(&mut self, world: &mut World);
}

struct Spotq {
    scaler: JobScaler,
    origin: Instant,
    name: &'static str,
}

impl Spotq {
    /// `JobScaler` with its defaults and `max` 20.
    fn new() -> Self {
        Self::with(
            "spotq job mode (5 s)",
            JobPolicy {
                max_tasks: MAX_TASKS,
                ..JobPolicy::default()
            },
        )
    }

    fn with(name: &'static str, policy: JobPolicy) -> Self {
        Self {
            scaler: JobScaler::new(policy),
            origin: Instant::now(),
            name,
        }
    }
}

impl Launcher for Spotq {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tick(&mut self, world: &mut World) {
        if !every(world.now, DEFAULT_POLL_INTERVAL.as_secs_f64()) {
            return;
        }
        let now = self.origin + Duration::from_secs_f64(world.now);
        let observation = JobObservation {
            queue: Some(world.queue()),
            tasks: Some(world.listed()),
        };
        let decision = self.scaler.decide(now, &observation);
        if decision.starts > 0 {
            let ids = world.start(decision.starts);
            self.scaler.started(now, &ids, false);
        }
    }
}

/// ScaledJob's scaling strategies, as its specification documents them.
#[derive(Clone, Copy)]
enum Strategy {
    Default,
    Accurate,
}

struct KedaScaledJob {
    strategy: Strategy,
}

impl Launcher for KedaScaledJob {
    fn name(&self) -> &'static str {
        match self.strategy {
            Strategy::Default => "KEDA ScaledJob (30 s, default)",
            Strategy::Accurate => "KEDA ScaledJob (30 s, accurate)",
        }
    }

    fn tick(&mut self, world: &mut World) {
        if !every(world.now, 30.0) {
            return;
        }
        let queue = world.queue();
        let queue_length = queue.visible + queue.not_visible;
        let max = u64::from(MAX_TASKS);
        let max_scale = queue_length.div_ceil(DEFAULT_MESSAGES_PER_TASK).min(max);
        let running = world.tasks.len() as u64;
        let pending = world
            .tasks
            .iter()
            .filter(|task| !task.running(world.now))
            .count() as u64;
        let starts = match self.strategy {
            Strategy::Default => max_scale.saturating_sub(running),
            Strategy::Accurate if max_scale + running > max => max.saturating_sub(running),
            Strategy::Accurate => max_scale.saturating_sub(pending),
        };
        world.start(u32::try_from(starts).unwrap_or(MAX_TASKS));
    }
}

fn launchers() -> Vec<Box<dyn Launcher>> {
    vec![
        Box::new(Spotq::new()),
        Box::new(KedaScaledJob {
            strategy: Strategy::Accurate,
        }),
        Box::new(KedaScaledJob {
            strategy: Strategy::Default,
        }),
    ]
}

/// When messages arrive.
enum Arrivals {
    /// `size` messages at once at each of these times.
    Bursts { at: &'static [f64], size: u64 },
    /// One message at a seeded random tick, `per_minute` a minute on average, from
    /// `from` to `until`.
    Trickle {
        from: f64,
        until: f64,
        per_minute: f64,
    },
}

impl Arrivals {
    fn at(&self, now: f64, rng: &mut fastrand::Rng) -> u64 {
        match self {
            Self::Bursts { at, size } => {
                let tick = (now / TICK).round() as u64;
                let bursts = at
                    .iter()
                    .filter(|burst| (*burst / TICK).round() as u64 == tick)
                    .count() as u64;
                bursts * size
            }
            Self::Trickle {
                from,
                until,
                per_minute,
            } => {
                let on = (*from..*until).contains(&now);
                // Drawn on every tick, so the trace is the same under every launcher.
                u64::from(rng.f64() < per_minute / 60.0 * TICK && on)
            }
        }
    }

    /// The tasks each burst needs: `ceil(size / messages_per_task)`, at most `max`.
    fn needed(&self) -> Option<u32> {
        match self {
            Self::Bursts { size, .. } => Some(
                u32::try_from(size.div_ceil(DEFAULT_MESSAGES_PER_TASK))
                    .unwrap_or(MAX_TASKS)
                    .min(MAX_TASKS),
            ),
            Self::Trickle { .. } => None,
        }
    }

    /// The starts of each burst (from it until the next), or all of them for a
    /// trickle, from the first message of each.
    fn split(&self, starts: &[f64], first_arrival: f64) -> Vec<Vec<f64>> {
        let since = |from: f64, until: f64| {
            starts
                .iter()
                .filter(|start| (from..until).contains(*start))
                .map(|start| start - from)
                .collect()
        };
        match self {
            Self::Bursts { at, .. } => at
                .iter()
                .enumerate()
                .map(|(index, from)| {
                    since(*from, at.get(index + 1).copied().unwrap_or(f64::INFINITY))
                })
                .collect(),
            Self::Trickle { .. } => vec![since(first_arrival, f64::INFINITY)],
        }
    }
}

/// What one launcher did with one trace.
struct Outcome {
    /// Per burst (one for a trickle): first message → first start.
    first_start: Vec<Option<f64>>,
    /// Per burst (one for a trickle): the tasks started.
    started: Vec<u32>,
    idle: u32,
    lost: u64,
    drained: Option<f64>,
    mean_wait: f64,
    task_seconds: f64,
}

fn simulate(launcher: &mut dyn Launcher, arrivals: &Arrivals) -> Outcome {
    let mut world = World::new();
    let mut rng = fastrand::Rng::with_seed(3);
    while world.now < HORIZON {
        world.arrive(arrivals.at(world.now, &mut rng));
        launcher.tick(&mut world);
        world.step();
    }
    let bursts = arrivals.split(&world.starts, world.first_arrival.unwrap_or_default());
    Outcome {
        first_start: bursts
            .iter()
            .map(|starts| starts.first().copied())
            .collect(),
        started: bursts.iter().map(|starts| starts.len() as u32).collect(),
        idle: world.idle,
        lost: world.arrived - world.done,
        drained: world.drained_at.map(|at| at - world.last_arrival),
        mean_wait: world.waited / world.received.max(1) as f64,
        task_seconds: world.task_seconds,
    }
}

fn list<T: ToString>(values: impl IntoIterator<Item = T>) -> String {
    values
        .into_iter()
        .map(|value| value.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs every launcher over the job traces and prints their table.
pub(super) fn table() {
    println!(
        "\njob mode, simulated (tasks run {TASK_START} s after their start, are listed \
         {}–{} s after it, exit after {EMPTY_RECEIVES} empty {WAIT_TIME} s receives)\n",
        LIST_LAG.0, LIST_LAG.1
    );
    println!(
        "| trace | launcher | first msg → first start | tasks started | needed | extras | idle tasks | lost | last msg → all done | mean wait | task-s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let traces = [
        (
            "1 message",
            Arrivals::Bursts {
                at: &[62.3],
                size: 1,
            },
        ),
        (
            "burst of 500",
            Arrivals::Bursts {
                at: &[62.3],
                size: 500,
            },
        ),
        (
            "3 bursts of 500, about 20 min apart",
            Arrivals::Bursts {
                at: &[62.3, 1281.7, 2497.9],
                size: 500,
            },
        ),
        (
            "trickle, 20/min for 30 min",
            Arrivals::Trickle {
                from: 62.3,
                until: 1862.3,
                per_minute: 20.0,
            },
        ),
    ];
    for (trace, arrivals) in &traces {
        for mut launcher in launchers() {
            let outcome = simulate(launcher.as_mut(), arrivals);
            let (needed, extras) = match arrivals.needed() {
                Some(needed) => (
                    needed.to_string(),
                    list(
                        outcome
                            .started
                            .iter()
                            .map(|started| i64::from(*started) - i64::from(needed)),
                    ),
                ),
                None => ("—".to_owned(), "—".to_owned()),
            };
            println!(
                "| {trace} | {} | {} | {} | {needed} | {extras} | {} | {} | {} | {:.1} s | {:.0} |",
                launcher.name(),
                list(outcome.first_start.into_iter().map(seconds)),
                list(&outcome.started),
                outcome.idle,
                outcome.lost,
                seconds(outcome.drained),
                outcome.mean_wait,
                outcome.task_seconds,
            );
        }
    }
    // What counting the started tasks ECS does not list yet is worth.
    let (_, burst) = &traces[1];
    let mut blind = Spotq::with(
        "spotq, start_grace 0",
        JobPolicy {
            max_tasks: MAX_TASKS,
            start_grace: Duration::ZERO,
            ..JobPolicy::default()
        },
    );
    let outcome = simulate(&mut blind, burst);
    println!(
        "\nwithout counting the tasks it started that ListTasks does not list yet \
         (start_grace 0), spotq would start {} tasks for the burst of 500 ({} idle).",
        list(&outcome.started),
        outcome.idle
    );
}

/// The next poll of the job binding, within 10 s.
async fn next_poll(
    events: &mut tokio::sync::broadcast::Receiver<JobEvent>,
) -> Result<JobEvent, BoxError> {
    Ok(tokio::time::timeout(Duration::from_secs(10), events.recv()).await??)
}

/// Holds moto's `RunTask` tasks at `RUNNING`: by default moto moves a task a state
/// towards `STOPPED` each time `DescribeTasks` describes it, and the controller
/// describes its tasks every poll.
async fn keep_moto_tasks_running(endpoint: &str) -> Result<(), BoxError> {
    const BODY: &str =
        r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000000}}"#;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(format!(
        "{}/moto-api/state-manager/set-transition",
        endpoint.trim_end_matches('/')
    ))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
    let status = client.request(request).await?.status();
    if status != hyper::StatusCode::CREATED {
        return Err(format!("moto refused the task transition: {status}").into());
    }
    Ok(())
}

/// Sends 500 messages in batches of 10; when the last batch was sent.
async fn send_burst(sqs: aws_sdk_sqs::Client, queue_url: String) -> Result<Instant, BoxError> {
    for batch in 0..50 {
        let entries = (0..10)
            .map(|index| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("m{index}"))
                    .message_body(format!("message {batch}-{index}"))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sent = sqs
            .send_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
        if !sent.failed().is_empty() {
            return Err(format!("moto refused messages: {:?}", sent.failed()).into());
        }
    }
    Ok(Instant::now())
}

/// The real controller's job mode against moto: a job binding (`max` 20, the default 10
/// messages a task, polled every second), one burst of 500 messages, and the tasks its
/// `RunTask` calls started until 10 polls after the burst was sent. moto's tasks never
/// take a message (nor exit), so the backlog stays: every poll after the first start
/// must start nothing. moto lists a task as soon as it starts; the listing lag is the
/// simulation's.
pub(super) async fn measure_on_moto(endpoint: &str) -> Result<(), BoxError> {
    keep_moto_tasks_running(endpoint).await?;
    let Moto {
        sqs,
        ecs,
        name,
        queue_url,
    } = Moto::create().await?;
    let file = format!(
        "[[binding]]\nname = \"{name}\"\nqueue = \"{queue_url}\"\ncluster = \"{name}\"\n\
         max = {MAX_TASKS}\npoll_interval = \"1s\"\n\
         [binding.job]\ntask_definition = \"{name}\"\nsubnets = [\"subnet-12345678\"]\n"
    );
    let controller = Controller::start(Config::from_parts(&Cli::default(), Some(&file))?).await?;
    let mut events = controller.job_decisions();
    next_poll(&mut events).await?;
    // The tasks each poll started, from the first poll after sending began until 10
    // polls began after the burst was sent; the first start when its answer came.
    let sending = std::time::Instant::now();
    let mut sender = tokio::spawn(send_burst(sqs, queue_url));
    let (mut per_poll, mut first_start) = (Vec::new(), None);
    let mut record = |event: JobEvent| {
        if event.started > 0 {
            first_start.get_or_insert(sending.elapsed());
        }
        per_poll.push(event.started);
    };
    let sent = loop {
        tokio::select! {
            sent = &mut sender => break sent??,
            event = next_poll(&mut events) => record(event?),
        }
    };
    let send_time = sent.duration_since(Instant::from_std(sending));
    let mut after = 0;
    while after < 10 {
        let event = next_poll(&mut events).await?;
        after += u32::from(event.polled_at >= sent);
        record(event);
    }
    controller.stop().await;
    let listed = ecs
        .list_tasks()
        .cluster(&name)
        .started_by(spotq_controller::targets::started_by(&name))
        .send()
        .await?
        .task_arns()
        .len();
    println!(
        "\nmoto, the real controller's job mode (poll 1 s, max {MAX_TASKS}, \
         {DEFAULT_MESSAGES_PER_TASK} messages a task), one burst of 500 (sent in {:.2} s):",
        send_time.as_secs_f64()
    );
    println!(
        "- first message sent → first RunTask answered: {}",
        first_start.map_or_else(
            || "never".to_owned(),
            |at| format!("{:.2} s", at.as_secs_f64())
        )
    );
    // The polls that started something, then how many polls after the last of them
    // started nothing.
    let starting = per_poll
        .iter()
        .rposition(|started| *started > 0)
        .map_or(0, |at| at + 1);
    println!(
        "- tasks started: {} (needed: {}), by poll: {}, then none in {} polls; \
         ListTasks lists {listed}",
        per_poll.iter().sum::<u32>(),
        500u64
            .div_ceil(DEFAULT_MESSAGES_PER_TASK)
            .min(u64::from(MAX_TASKS)),
        list(&per_poll[..starting]),
        per_poll.len() - starting,
    );
    Ok(())
}
