//! Controller reaction: spotq-controller's decision core against the scaling patterns it
//! must beat, over the same arrival traces in simulated time (0.1 s steps, seeded
//! noise), in the same run.
//!
//! Run with: `cargo bench -p spotq-controller --bench reaction` (the figures are
//! simulated seconds, so `cargo test -p spotq-controller --bench reaction` prints the
//! same table without a release build). With `AWS_ENDPOINT_URL` pointing at moto on
//! loopback (as `scripts/test` sets it), it then also measures the real controller
//! against a moto queue and ECS service: one message → `UpdateService`, drained → 0;
//! and its job mode: one burst of 500 messages → the tasks `RunTask` started.
//!
//! The world: an SQS queue and an ECS service whose tasks take 40 s to start, handle 10
//! messages at once, 2 s each (5 msgs/s a task), and release what they hold when
//! stopped. Every scaler reads the same queue, whose approximate counts read ±20 % off
//! in the noisy trace. The scalers:
//!
//! - **spotq**: `Scaler` with its defaults (poll 5 s, 10 messages per task, cooldown
//!   60 s, 3 empty polls), max 20.
//! - **CloudWatch alarms** (the ECS guide's pattern): `ApproximateNumberOfMessagesVisible`
//!   as 1-minute averages, available 1 minute after their minute; scale out (+2 tasks a
//!   minute) while the last datapoint is above 100, scale to 0 after 3 datapoints at 0.
//! - **KEDA** aws-sqs-queue: polls every 30 s and activates a service at zero when any
//!   message is visible or in flight (activation 0, scaleOnInFlight); the HPA syncs every
//!   15 s to `ceil((visible + in flight) / 10)`, up by at most max(4, 100 %) per sync, down
//!   to the highest target of the last 300 s; to zero 300 s (cooldownPeriod) after the
//!   last poll that saw messages.
//! - **Copilot** BacklogPerTask: `visible / running` (or `visible` with no task) as a
//!   1-minute metric, ECS target tracking at 10: out after 3 datapoints above 10, in
//!   after 15 below 9, to `ceil(running × metric / 10)`.
//! - **deploy/autoscaling** (AWS-native, no controller): spotq's own Application Auto
//!   Scaling kit, as [`AwsNative`] describes: a wake alarm on one visible message while
//!   no task runs, target tracking on the workers' `BacklogPerTask` at 10, and a zero
//!   alarm after 5 minutes with nothing visible, sent or held; 1-minute datapoints
//!   available a minute late.
//!
//! A second table compares the job mode (standalone tasks that exit once the queue is
//! drained, started by `JobScaler`) with KEDA's ScaledJob: the [`jobs`] module says
//! what it models.

use std::collections::VecDeque;
use std::time::Duration;

use spotq_controller::decision::{Observation, Policy, QueueCounts, Scaler, ServiceCounts};
use tokio::time::Instant;

mod jobs;

const TICK: f64 = 0.1;
const TASK_START: f64 = 40.0;
const CONCURRENCY: u64 = 10;
const MESSAGE_TIME: f64 = 2.0;
const MAX_TASKS: u32 = 20;
const BACKLOG_PER_TASK: f64 = 10.0;

/// The queue and the service, as they really are.
struct World {
    now: f64,
    visible: u64,
    /// Completion times of the messages in flight.
    in_flight: VecDeque<f64>,
    desired: u32,
    /// Start times of tasks not yet running.
    starting: Vec<f64>,
    running: u32,
    arrived: u64,
    done: u64,
    first_arrival: Option<f64>,
    first_done: Option<f64>,
    /// Arrival times of the messages waiting, for their wait.
    waiting_since: VecDeque<f64>,
    waited: f64,
    task_seconds: f64,
    updates: u32,
    /// (time, desired count) of every change.
    changes: Vec<(f64, u32)>,
    noise: Option<fastrand::Rng>,
}

impl World {
    fn new(noisy: bool) -> Self {
        Self {
            now: 0.0,
            visible: 0,
            in_flight: VecDeque::new(),
            desired: 0,
            starting: Vec::new(),
            running: 0,
            arrived: 0,
            done: 0,
            first_arrival: None,
            first_done: None,
            waiting_since: VecDeque::new(),
            waited: 0.0,
            task_seconds: 0.0,
            updates: 0,
            changes: Vec::new(),
            noise: noisy.then(|| fastrand::Rng::with_seed(42)),
        }
    }

    fn arrive(&mut self, count: u64) {
        if count > 0 {
            self.first_arrival.get_or_insert(self.now);
        }
        self.visible += count;
        self.arrived += count;
        for _ in 0..count {
            self.waiting_since.push_back(self.now);
        }
    }

    /// The counts a `GetQueueAttributes` would return now.
    fn counts(&mut self) -> QueueCounts {
        let in_flight = self.in_flight.len() as u64;
        let visible = self.visible;
        match &mut self.noise {
            Some(rng) => {
                let mut jitter =
                    |value: u64| (value as f64 * rng.f64().mul_add(0.4, 0.8)).round() as u64;
                QueueCounts {
                    visible: jitter(visible),
                    not_visible: jitter(in_flight),
                    delayed: 0,
                }
            }
            None => QueueCounts {
                visible,
                not_visible: in_flight,
                delayed: 0,
            },
        }
    }

    fn service(&self) -> ServiceCounts {
        ServiceCounts {
            desired: self.desired,
            running: self.running,
            pending: self.starting.len() as u32,
            deployment_in_progress: false,
        }
    }

    fn set_desired(&mut self, desired: u32) {
        let desired = desired.min(MAX_TASKS);
        if desired == self.desired {
            return;
        }
        self.updates += 1;
        self.changes.push((self.now, desired));
        if desired > self.desired {
            for _ in self.desired..desired {
                self.starting.push(self.now + TASK_START);
            }
        } else {
            let mut stop = self.desired - desired;
            // Tasks still starting go first, then running ones.
            while stop > 0 && self.starting.pop().is_some() {
                stop -= 1;
            }
            self.running -= stop.min(self.running);
        }
        self.desired = desired;
    }

    fn step(&mut self) {
        let now = self.now;
        let started = self.starting.iter().filter(|at| **at <= now).count() as u32;
        self.starting.retain(|at| *at > now);
        self.running += started;
        while self.in_flight.front().is_some_and(|at| *at <= now) {
            self.in_flight.pop_front();
            self.done += 1;
            self.first_done.get_or_insert(now);
        }
        // Stopped tasks released what they held: it is visible again at once.
        let capacity = u64::from(self.running) * CONCURRENCY;
        while self.in_flight.len() as u64 > capacity {
            self.in_flight.pop_back();
            self.visible += 1;
            self.waiting_since.push_front(now);
        }
        let free = capacity - self.in_flight.len() as u64;
        let take = free.min(self.visible);
        for _ in 0..take {
            self.in_flight.push_back(now + MESSAGE_TIME);
            if let Some(since) = self.waiting_since.pop_front() {
                self.waited += now - since;
            }
        }
        self.visible -= take;
        self.task_seconds += f64::from(self.running + self.starting.len() as u32) * TICK;
        self.now += TICK;
    }

    fn drained(&self) -> bool {
        self.visible == 0 && self.in_flight.is_empty()
    }
}

/// A scaling pattern: called every tick, it may set the desired count.
trait Autoscaler {
    fn name(&self) -> &'static str;
    fn tick(&mut self, world: &mut World);
}

/// True on the ticks where `period` seconds have passed since the last.
fn every(now: f64, period: f64) -> bool {
    let ticks = (period / TICK).round() as u64;
    ((now / TICK).round() as u64).is_multiple_of(ticks)
}

struct Spotq {
    scaler: Scaler,
    origin: Instant,
}

impl Spotq {
    fn new() -> Self {
        Self {
            scaler: Scaler::new(Policy {
                max: MAX_TASKS,
                ..Policy::default()
            }),
            origin: Instant::now(),
        }
    }
}

impl Autoscaler for Spotq {
    fn name(&self) -> &'static str {
        "spotq-controller (5 s)"
    }

    fn tick(&mut self, world: &mut World) {
        if !every(world.now, 5.0) {
            return;
        }
        let observation = Observation {
            queue: Some(world.counts()),
            service: Some(world.service()),
            throughput: None,
            held: None,
        };
        let now = self.origin + Duration::from_secs_f64(world.now);
        let decision = self.scaler.decide(now, &observation);
        if let Some(desired) = decision.change() {
            world.set_desired(desired);
        }
    }
}

/// How one minute of a reading becomes its datapoint.
#[derive(Clone, Copy, Default)]
enum Stat {
    #[default]
    Average,
    Maximum,
    Sum,
}

/// One-minute datapoints of a reading (averages unless told), each available `lag`
/// seconds after its minute. A minute without a sample has no datapoint.
#[derive(Default)]
struct Minutely {
    stat: Stat,
    sum: f64,
    peak: f64,
    samples: u32,
    /// (available at, the minute's number, value)
    datapoints: VecDeque<(f64, u64, f64)>,
}

impl Minutely {
    fn of(stat: Stat) -> Self {
        Self {
            stat,
            ..Self::default()
        }
    }

    fn sample(&mut self, now: f64, value: f64, lag: f64) {
        self.record(now, Some(value), lag);
    }

    /// Adds a sample, if any, and closes the minute at its end.
    fn record(&mut self, now: f64, value: Option<f64>, lag: f64) {
        if let Some(value) = value {
            self.sum += value;
            self.peak = if self.samples == 0 {
                value
            } else {
                self.peak.max(value)
            };
            self.samples += 1;
        }
        if every(now + TICK, 60.0) {
            if self.samples > 0 {
                let value = match self.stat {
                    Stat::Average => self.sum / f64::from(self.samples),
                    Stat::Maximum => self.peak,
                    Stat::Sum => self.sum,
                };
                let minute = ((now + TICK) / 60.0).round() as u64 - 1;
                self.datapoints.push_back((now + lag, minute, value));
            }
            self.sum = 0.0;
            self.samples = 0;
        }
    }

    /// The last `n` datapoints available at `now`, newest last.
    fn last(&self, now: f64, n: usize) -> Vec<f64> {
        let available: Vec<f64> = self
            .datapoints
            .iter()
            .filter(|(at, ..)| *at <= now)
            .map(|(.., value)| *value)
            .collect();
        available[available.len().saturating_sub(n)..].to_vec()
    }

    /// The datapoint of minute `minute`, once available at `now`.
    fn at(&self, now: f64, minute: u64) -> Option<f64> {
        self.datapoints
            .iter()
            .find(|(at, of, _)| *at <= now && *of == minute)
            .map(|(.., value)| *value)
    }

    /// The number of the newest minute with a datapoint available at `now`.
    fn newest(&self, now: f64) -> Option<u64> {
        self.datapoints
            .iter()
            .filter(|(at, ..)| *at <= now)
            .map(|(_, minute, _)| *minute)
            .max()
    }

    /// The datapoints of the `n` minutes up to `newest`, if every one has one (else
    /// the data is insufficient).
    fn window(&self, now: f64, newest: u64, n: u64) -> Option<Vec<f64>> {
        (newest + 1).checked_sub(n)?;
        (newest + 1 - n..=newest)
            .map(|minute| self.at(now, minute))
            .collect()
    }
}

struct CloudWatchAlarms {
    visible: Minutely,
}

impl Autoscaler for CloudWatchAlarms {
    fn name(&self) -> &'static str {
        "CloudWatch alarms (guide)"
    }

    fn tick(&mut self, world: &mut World) {
        let counts = world.counts();
        self.visible.sample(world.now, counts.visible as f64, 60.0);
        if !every(world.now, 60.0) {
            return;
        }
        let last = self.visible.last(world.now, 3);
        if last.last().is_some_and(|value| *value > 100.0) {
            world.set_desired(world.desired + 2);
        } else if last.len() == 3 && last.iter().all(|value| *value <= 0.0) {
            world.set_desired(0);
        }
    }
}

struct Keda {
    last_active: f64,
    recommendations: VecDeque<(f64, u32)>,
}

impl Autoscaler for Keda {
    fn name(&self) -> &'static str {
        "KEDA aws-sqs-queue (30 s)"
    }

    fn tick(&mut self, world: &mut World) {
        if every(world.now, 30.0) {
            let counts = world.counts();
            if counts.visible + counts.not_visible > 0 {
                self.last_active = world.now;
                if world.desired == 0 {
                    world.set_desired(1);
                }
            } else if world.desired > 0 && world.now - self.last_active >= 300.0 {
                world.set_desired(0);
                self.recommendations.clear();
            }
        }
        if world.desired > 0 && every(world.now, 15.0) {
            let counts = world.counts();
            let metric = (counts.visible + counts.not_visible) as f64;
            let current = world.desired;
            let wanted = ((metric / BACKLOG_PER_TASK).ceil() as u32).clamp(1, MAX_TASKS);
            let ratio = metric / (f64::from(current) * BACKLOG_PER_TASK);
            self.recommendations.push_back((world.now, wanted));
            while self
                .recommendations
                .front()
                .is_some_and(|(at, _)| world.now - at > 300.0)
            {
                self.recommendations.pop_front();
            }
            if (ratio - 1.0).abs() <= 0.1 {
                return;
            }
            if wanted > current {
                let limit = current + (current).max(4);
                world.set_desired(wanted.min(limit));
            } else {
                let stable = self
                    .recommendations
                    .iter()
                    .map(|(_, wanted)| *wanted)
                    .max()
                    .unwrap_or(wanted);
                if stable < current {
                    world.set_desired(stable);
                }
            }
        }
    }
}

struct Copilot {
    backlog: Minutely,
}

impl Autoscaler for Copilot {
    fn name(&self) -> &'static str {
        "Copilot BacklogPerTask"
    }

    fn tick(&mut self, world: &mut World) {
        let counts = world.counts();
        let per_task = counts.visible as f64 / f64::from(world.running.max(1));
        self.backlog.sample(world.now, per_task, 0.0);
        if !every(world.now, 60.0) {
            return;
        }
        let target = BACKLOG_PER_TASK;
        let out = self.backlog.last(world.now, 3);
        let scale_in = self.backlog.last(world.now, 15);
        let base = f64::from(world.running.max(1));
        if out.len() == 3 && out.iter().all(|value| *value > target) {
            let metric = out.last().copied().unwrap_or_default();
            world.set_desired(((base * metric / target).ceil() as u32).max(world.desired + 1));
        } else if world.desired > 0
            && scale_in.len() == 15
            && scale_in.iter().all(|value| *value < 0.9 * target)
        {
            let metric = scale_in.last().copied().unwrap_or_default();
            world.set_desired((f64::from(world.running) * metric / target).ceil() as u32);
        }
    }
}

/// The AWS-native kit of `deploy/autoscaling/` (Application Auto Scaling, no
/// controller), every datapoint a minute, available a minute after its minute, the
/// alarms evaluated every minute: the wake alarm sets 1 task once the visible maximum
/// of a minute without any running task (no CPU datapoint) is at least 1; target
/// tracking on the workers' EMF `BacklogPerTask` ((visible + in flight) / running, as
/// the worker computes it) at 10, out after 3 datapoints above, in after 15 below 90 %;
/// the zero alarm sets 0 after 5 minutes in a row of visible + sent + held (the workers'
/// `MessagesInFlight` maximum) at 0, the held datapoint present (a task ran).
struct AwsNative {
    visible: Minutely,
    sent: Minutely,
    backlog: Minutely,
    held: Minutely,
    running: Minutely,
    arrived: u64,
}

impl AwsNative {
    fn new() -> Self {
        Self {
            visible: Minutely::of(Stat::Maximum),
            sent: Minutely::of(Stat::Sum),
            backlog: Minutely::of(Stat::Average),
            held: Minutely::of(Stat::Maximum),
            running: Minutely::of(Stat::Maximum),
            arrived: 0,
        }
    }
}

impl Autoscaler for AwsNative {
    fn name(&self) -> &'static str {
        "deploy/autoscaling (AWS-native)"
    }

    fn tick(&mut self, world: &mut World) {
        const LAG: f64 = 60.0;
        let now = world.now;
        let counts = world.counts();
        self.visible.sample(now, counts.visible as f64, LAG);
        self.sent
            .sample(now, (world.arrived - self.arrived) as f64, LAG);
        self.arrived = world.arrived;
        let running = (world.running > 0).then_some(f64::from(world.running));
        let per_task = running.map(|tasks| (counts.visible + counts.not_visible) as f64 / tasks);
        self.backlog.record(now, per_task, LAG);
        self.held
            .record(now, running.map(|_| world.in_flight.len() as f64), LAG);
        self.running.record(now, running, LAG);
        if !every(now, 60.0) {
            return;
        }
        let Some(minute) = self.visible.newest(now) else {
            return;
        };
        // Wake: visible messages in a minute no task ran.
        let visible = self.visible.at(now, minute).unwrap_or_default();
        if visible >= 1.0 && self.running.at(now, minute).is_none() {
            world.set_desired(1);
            return;
        }
        // To zero: nothing visible, sent or held for 5 minutes, as the workers said.
        let quiet = [&self.visible, &self.sent, &self.held]
            .iter()
            .map(|series| series.window(now, minute, 5))
            .collect::<Option<Vec<_>>>()
            .is_some_and(|windows| windows.iter().flatten().all(|value| *value <= 0.0));
        if quiet && world.desired > 0 {
            world.set_desired(0);
            return;
        }
        // Target tracking, only on datapoints of every minute (else insufficient data).
        let target = BACKLOG_PER_TASK;
        let base = f64::from(world.running.max(1));
        if let Some(out) = self.backlog.window(now, minute, 3)
            && out.iter().all(|value| *value > target)
        {
            let metric = out.last().copied().unwrap_or_default();
            world.set_desired(((base * metric / target).ceil() as u32).max(world.desired));
        } else if let Some(scale_in) = self.backlog.window(now, minute, 15)
            && scale_in.iter().all(|value| *value < 0.9 * target)
        {
            let metric = scale_in.last().copied().unwrap_or_default();
            world.set_desired((f64::from(world.running) * metric / target).ceil() as u32);
        }
    }
}

fn scalers() -> Vec<Box<dyn Autoscaler>> {
    vec![
        Box::new(Spotq::new()),
        Box::new(CloudWatchAlarms {
            visible: Minutely::default(),
        }),
        Box::new(Keda {
            last_active: 0.0,
            recommendations: VecDeque::new(),
        }),
        Box::new(Copilot {
            backlog: Minutely::default(),
        }),
        Box::new(AwsNative::new()),
    ]
}

/// What one scaler did with one trace.
struct Outcome {
    wake: Option<f64>,
    first_done: Option<f64>,
    drained: Option<f64>,
    to_zero: Option<f64>,
    updates: u32,
    updates_after_settling: u32,
    mean_wait: f64,
    task_minutes: f64,
    changes: Vec<(f64, u32)>,
}

/// Runs `scaler` over `arrivals(second) -> messages` for `horizon` seconds.
fn simulate(
    scaler: &mut dyn Autoscaler,
    horizon: f64,
    noisy: bool,
    settle_at: f64,
    mut arrivals: impl FnMut(f64, &mut fastrand::Rng) -> u64,
) -> Outcome {
    let mut world = World::new(noisy);
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut wake, mut drained, mut to_zero) = (None, None, None);
    let mut updates_at_settling = None;
    while world.now < horizon {
        world.arrive(arrivals(world.now, &mut rng));
        scaler.tick(&mut world);
        if world.desired > 0 {
            wake = wake.or(world.first_arrival.map(|arrival| world.now - arrival));
        }
        world.step();
        if world.arrived > 0 && world.done == world.arrived && world.drained() {
            drained.get_or_insert(world.now);
        }
        if let Some(drained_at) = drained
            && world.desired == 0
        {
            to_zero.get_or_insert(world.now - drained_at);
        }
        if world.now >= settle_at {
            updates_at_settling.get_or_insert(world.updates);
        }
    }
    let first = world.first_arrival.unwrap_or_default();
    Outcome {
        wake,
        first_done: world.first_done.map(|at| at - first),
        drained: drained.map(|at| at - first),
        to_zero,
        updates: world.updates,
        updates_after_settling: world.updates - updates_at_settling.unwrap_or(world.updates),
        mean_wait: world.waited / world.done.max(1) as f64,
        task_minutes: world.task_seconds / 60.0,
        changes: world.changes,
    }
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "never".to_owned(), |seconds| format!("{seconds:.1} s"))
}

fn main() {
    println!(
        "controller reaction, simulated (tasks start in {TASK_START} s; 10 at once, 2 s a message)\n"
    );
    println!(
        "| trace | scaler | first msg → desired ≥ 1 | → first done | → all done | done → 0 | UpdateService | after settling | mean wait | task-min |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // One message at 62.3 s on an idle service; an hour.
    // 500 messages at once at 62.3 s; an hour.
    // 40 msgs/s for an hour, counts read ± 20 %; the same with arrivals ± 20 % a tick.
    // Both settled after 10 minutes.
    let single_at = (62.3 / TICK).round() as u64;
    let traces: [(&str, f64, bool, f64); 4] = [
        ("1 message", 3600.0, false, 3600.0),
        ("burst of 500", 3600.0, false, 3600.0),
        ("steady 40/s, counts ±20 %", 3600.0, true, 600.0),
        ("40/s ±20 %, counts ±20 %", 3600.0, true, 600.0),
    ];
    let mut logs = Vec::new();
    for (index, (trace, horizon, noisy, settle)) in traces.into_iter().enumerate() {
        for mut scaler in scalers() {
            let arrivals = |now: f64, rng: &mut fastrand::Rng| -> u64 {
                let tick = (now / TICK).round() as u64;
                match index {
                    0 => u64::from(tick == single_at),
                    1 => 500 * u64::from(tick == single_at),
                    2 => 4,
                    _ => {
                        // 4 a tick on average, ± 20 %, spread by a seeded coin.
                        let rate = 40.0 * TICK * rng.f64().mul_add(0.4, 0.8);
                        let whole = rate.floor();
                        whole as u64 + u64::from(rng.f64() < rate - whole)
                    }
                }
            };
            let outcome = simulate(scaler.as_mut(), horizon, noisy, settle, arrivals);
            let steady = index >= 2;
            println!(
                "| {trace} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {:.0} |",
                scaler.name(),
                seconds(outcome.wake),
                seconds(outcome.first_done),
                if steady {
                    "—".to_owned()
                } else {
                    seconds(outcome.drained)
                },
                if steady {
                    "—".to_owned()
                } else {
                    seconds(outcome.to_zero)
                },
                outcome.updates,
                if steady {
                    outcome.updates_after_settling.to_string()
                } else {
                    "—".to_owned()
                },
                outcome.mean_wait,
                outcome.task_minutes,
            );
            if steady {
                let changes: Vec<String> = outcome
                    .changes
                    .iter()
                    .map(|(at, count)| format!("{at:.0} s→{count}"))
                    .collect();
                logs.push(format!(
                    "{trace}, {}: {}",
                    scaler.name(),
                    changes.join(", ")
                ));
            }
        }
    }
    println!("\nchanges of the desired count in the steady traces:");
    for line in logs {
        println!("- {line}");
    }
    jobs::table();
    emulated();
}

/// The real controller against moto: a queue and an ECS service at 0, polled every
/// second; one message, then drained, a few times. Skipped without an emulator.
fn emulated() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !(endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:")) {
        println!("\nmoto run skipped: AWS_ENDPOINT_URL does not point at an emulator on loopback");
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("\nmoto run skipped: {error}");
            return;
        }
    };
    if let Err(error) = runtime.block_on(measure_on_moto()) {
        println!("\nmoto run failed: {error}");
    }
    if let Err(error) = runtime.block_on(jobs::measure_on_moto(&endpoint)) {
        println!("\nmoto job run failed: {error}");
    }
}

/// The next decision applied to the target, from now on.
fn next_applied(
    decisions: &tokio::sync::broadcast::Receiver<spotq_controller::run::DecisionEvent>,
) -> impl Future<Output = Option<spotq_controller::run::DecisionEvent>> + use<> {
    let mut decisions = decisions.resubscribe();
    async move {
        loop {
            match decisions.recv().await {
                Ok(event) if event.applied => return Some(event),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

/// A failed step of a moto run (sendable: the job run sends its burst from a task).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A queue, and a cluster with a task definition (one small container), in moto, all
/// named `name`.
struct Moto {
    sqs: aws_sdk_sqs::Client,
    ecs: aws_sdk_ecs::Client,
    name: String,
    queue_url: String,
}

impl Moto {
    async fn create() -> Result<Self, BoxError> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let ecs = aws_sdk_ecs::Client::new(&config);
        let name = format!("reaction-{}-{:08x}", std::process::id(), fastrand::u32(..));
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await?
            .queue_url
            .ok_or("no queue URL")?;
        ecs.create_cluster().cluster_name(&name).send().await?;
        ecs.register_task_definition()
            .family(&name)
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("worker")
                    .image("busybox")
                    .memory(64)
                    .build(),
            )
            .send()
            .await?;
        Ok(Self {
            sqs,
            ecs,
            name,
            queue_url,
        })
    }
}

async fn measure_on_moto() -> Result<(), BoxError> {
    use spotq_controller::config::{Cli, Config};
    use spotq_controller::run::Controller;

    let Moto {
        sqs,
        ecs,
        name,
        queue_url,
    } = Moto::create().await?;
    ecs.create_service()
        .cluster(&name)
        .service_name(&name)
        .task_definition(&name)
        .desired_count(0)
        .send()
        .await?;
    let file = format!(
        "[[binding]]\nname = \"moto\"\nqueue = \"{queue_url}\"\ncluster = \"{name}\"\n\
         service = \"{name}\"\npoll_interval = \"1s\"\nscale_in_cooldown = \"3s\"\n"
    );
    let controller = Controller::start(Config::from_parts(&Cli::default(), Some(&file))?).await?;
    let decisions = controller.decisions();
    let (mut wakes, mut zeros, mut updates) = (Vec::new(), Vec::new(), 0);
    for _ in 0..3 {
        // Send at a random point of the poll cycle.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        let waiting = next_applied(&decisions);
        let sent = std::time::Instant::now();
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body("one")
            .send()
            .await?;
        let woken = waiting.await.ok_or("no wake")?;
        wakes.push(sent.elapsed());
        updates += 1;
        let received = sqs.receive_message().queue_url(&queue_url).send().await?;
        let waiting = next_applied(&decisions);
        let drained = std::time::Instant::now();
        for message in received.messages() {
            sqs.delete_message()
                .queue_url(&queue_url)
                .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                .send()
                .await?;
        }
        let zero = waiting.await.ok_or("no scale to zero")?;
        zeros.push(drained.elapsed());
        updates += 1;
        if (woken.decision.desired, zero.decision.desired) != (1, 0) {
            return Err(format!("unexpected changes: {woken:?}, {zero:?}").into());
        }
    }
    controller.stop().await;
    let show = |values: &[Duration]| {
        values
            .iter()
            .map(|value| format!("{:.2} s", value.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("\nmoto, the real controller (poll 1 s, cooldown 3 s, 3 empty polls), 3 rounds:");
    println!("- one message sent → UpdateService to 1: {}", show(&wakes));
    println!("- queue drained → UpdateService to 0: {}", show(&zeros));
    println!("- UpdateService calls: {updates} (one per change)");
    Ok(())
}
