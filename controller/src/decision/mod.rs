//! The decision core: what one poll's readings mean for a service's desired count.
//!
//! [`Scaler::decide`] is pure and deterministic: the same policy, readings and times
//! give the same decisions, with no clock, I/O or randomness inside. The run loop feeds
//! it one [`Observation`] per poll; tests and the reaction bench feed it scripted ones.
//!
//! The rules, in order:
//!
//! 1. Hold while the service or the queue could not be read, or while a deployment
//!    rolls out: a count read mid-rollout, or not at all, is no reason to act.
//! 2. Wake from zero on the first poll where the waiting messages (visible, plus
//!    delayed when they count) exceed the activation level. Messages only in flight on
//!    an idle service (an approximate count's spike, KEDA #7845, or another consumer)
//!    wake it only once they have been seen on several polls in a row.
//!
//!    "In flight" is what the service's workers hold when every one of them could be
//!    read ([`Observation::held`]), else the queue's not-visible count. A message
//!    waiting out a retry backoff or a `RetryAfter` is not visible but held by no
//!    worker: when the workers can be read it keeps no task running, and it wakes the
//!    service again once it is visible.
//! 3. Otherwise aim at `ceil((waiting + in flight) / backlog per task)` within
//!    `[max(min, 1), max]`. Scale out at once; scale in only to the highest target seen
//!    over the scale-in cooldown, plus the tolerance as headroom: a lower target must
//!    last that long, and the same noise does not scale out again right after. Changes within
//!    the tolerance (a fraction of the current count) are not made: count noise does not
//!    flap the service. No change moves more than `max_step` tasks.
//! 4. Go to zero only once the queue read empty (visible, in flight and delayed all 0)
//!    on `empty_polls` consecutive polls, the first of them at least the cooldown ago.
//!    So messages a worker holds, or that may be held (the workers could not all be
//!    read), never let a service go to zero.
//!
//! A job binding starts standalone tasks instead of setting a count: [`job`] sizes
//! them, with rules of its own.

pub mod job;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// A queue's approximate counts, from `GetQueueAttributes`: the runtime's type.
pub use spotq::backend::QueueCounts;
use tokio::time::Instant;

/// How many tasks a service needs for its queue's backlog.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BacklogTarget {
    /// A fixed number of messages (waiting or in flight) one task should have.
    PerTask(f64),
    /// A latency goal: a task should get through its share of the backlog within
    /// `goal`. Backlog per task is `goal × per-task throughput`, where the throughput is
    /// the one measured from the workers' `/metrics` when known, else `concurrency /
    /// message_time`.
    Latency {
        /// How long a message may wait, at most, in the steady state.
        goal: Duration,
        /// How long one message takes to process.
        message_time: Duration,
        /// How many messages one task processes at once.
        concurrency: u32,
    },
}

impl BacklogTarget {
    /// The messages per task to aim at, given a measured per-task throughput
    /// (messages per second); at least 1.
    pub fn backlog_per_task(&self, measured_throughput: Option<f64>) -> f64 {
        let per_task = match *self {
            Self::PerTask(backlog) => backlog,
            Self::Latency {
                goal,
                message_time,
                concurrency,
            } => {
                let estimated = f64::from(concurrency) / message_time.as_secs_f64().max(1e-6);
                let throughput = measured_throughput
                    .filter(|rate| rate.is_finite() && *rate > 0.0)
                    .unwrap_or(estimated);
                goal.as_secs_f64() * throughput
            }
        };
        // Fewer than one message per task would ask for more tasks than messages.
        if per_task.is_finite() {
            per_task.max(1.0)
        } else {
            1.0
        }
    }
}

/// How one binding scales: the settings the decision core needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The fewest tasks (0 lets the service scale to zero).
    pub min: u32,
    /// The most tasks; at least 1.
    pub max: u32,
    /// Messages per task to aim at.
    pub target: BacklogTarget,
    /// Waiting messages at or below this do not wake a service at zero.
    pub activation: u64,
    /// How long a lower target must last before scaling in, and how long the queue must
    /// have read empty before going to zero.
    pub scale_in_cooldown: Duration,
    /// Consecutive empty polls before going to zero.
    pub empty_polls: u32,
    /// The largest change of one decision; `None` for no limit.
    pub max_step: Option<u32>,
    /// Whether delayed messages count as waiting.
    pub count_delayed: bool,
    /// Consecutive polls with messages in flight (and none waiting) before those alone
    /// wake a service at zero.
    pub in_flight_wake_polls: u32,
    /// Changes smaller than this fraction of the current count are not made.
    pub tolerance: f64,
}

impl Default for Policy {
    /// 0 to 10 tasks, 10 messages per task, wake on any message, 60 s cooldown, 3 empty
    /// polls, no step limit, delayed messages not counted, 3 polls for in-flight
    /// messages alone, 10 % tolerance.
    fn default() -> Self {
        Self {
            min: 0,
            max: 10,
            target: BacklogTarget::PerTask(10.0),
            activation: 0,
            scale_in_cooldown: Duration::from_secs(60),
            empty_polls: 3,
            max_step: None,
            count_delayed: false,
            in_flight_wake_polls: 3,
            tolerance: 0.1,
        }
    }
}

/// A service's task counts, from `DescribeServices` (or the local target).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    /// The desired count.
    pub desired: u32,
    /// Tasks running.
    pub running: u32,
    /// Tasks starting.
    pub pending: u32,
    /// Whether a deployment is rolling out (more than one deployment is live).
    pub deployment_in_progress: bool,
}

/// What one poll read. `None` where the read failed (after its retries).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observation {
    /// The queue's counts.
    pub queue: Option<QueueCounts>,
    /// The service's counts.
    pub service: Option<ServiceCounts>,
    /// Messages per second one task gets through, measured from the workers' metrics.
    pub throughput: Option<f64>,
    /// Messages the service's workers hold (received and not yet settled), summed over
    /// every worker; `None` when unknown (no worker to read, or one could not be read):
    /// then every message in flight counts as held.
    pub held: Option<u64>,
}

/// Why the desired count is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Messages wait on a service at zero.
    Wake,
    /// Messages have been in flight, with none waiting, on an idle service for
    /// several polls.
    SustainedInFlight,
    /// The backlog needs more tasks.
    ScaleOut,
    /// The backlog has needed fewer tasks for the whole cooldown.
    ScaleIn,
    /// The queue read empty for the required polls and the cooldown.
    ToZero,
    /// The count was below the minimum.
    BelowMin,
    /// The count was above the maximum.
    AboveMax,
    /// The count fits the backlog (or differs by less than the tolerance).
    Steady,
    /// Nothing waits and the service is at zero.
    Idle,
    /// Messages wait on a service at zero, but no more than the activation level.
    BelowActivation,
    /// Messages are in flight on a service at zero, not yet on enough polls to wake it.
    InFlightNotSustained,
    /// The backlog needs fewer tasks, but not yet for the whole cooldown.
    ScaleInPending,
    /// The queue is empty, but not yet for enough polls and the cooldown.
    EmptyPending,
    /// A deployment is rolling out.
    DeploymentInProgress,
    /// The queue's counts could not be read.
    QueueUnreadable,
    /// The service's counts could not be read.
    ServiceUnreadable,
}

impl Reason {
    /// A short, stable name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wake => "wake",
            Self::SustainedInFlight => "sustained_in_flight",
            Self::ScaleOut => "scale_out",
            Self::ScaleIn => "scale_in",
            Self::ToZero => "to_zero",
            Self::BelowMin => "below_min",
            Self::AboveMax => "above_max",
            Self::Steady => "steady",
            Self::Idle => "idle",
            Self::BelowActivation => "below_activation",
            Self::InFlightNotSustained => "in_flight_not_sustained",
            Self::ScaleInPending => "scale_in_pending",
            Self::EmptyPending => "empty_pending",
            Self::DeploymentInProgress => "deployment_in_progress",
            Self::QueueUnreadable => "queue_unreadable",
            Self::ServiceUnreadable => "service_unreadable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One poll's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// The desired count read from the service (the last one known if it could not be
    /// read).
    pub current: u32,
    /// The desired count to set.
    pub desired: u32,
    /// Why.
    pub reason: Reason,
    /// Messages waiting (visible, plus delayed when they count) as read.
    pub waiting: u64,
    /// Messages in flight as counted: those the workers hold when known, else the
    /// queue's not-visible count.
    pub in_flight: u64,
    /// The messages per task aimed at.
    pub backlog_per_task: f64,
    /// `ceil((waiting + in flight) / backlog per task)` before clamping.
    pub needed: u32,
}

impl Decision {
    /// The count to set, when it differs from the current one.
    pub fn change(&self) -> Option<u32> {
        (self.desired != self.current).then_some(self.desired)
    }
}

/// The decision core of one binding: its policy and what it remembers between polls.
#[derive(Clone, Debug)]
pub struct Scaler {
    policy: Policy,
    /// Consecutive polls that read the queue empty, and when the first of them was.
    empty: Streak,
    /// Consecutive polls with messages in flight and none waiting.
    in_flight_only: Streak,
    /// Targets of the polls within the cooldown, oldest first.
    recent: VecDeque<(Instant, u32)>,
    /// The last desired count read.
    last_known: u32,
    /// The last measured throughput, kept while no new one comes.
    throughput: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Streak {
    polls: u32,
    since: Option<Instant>,
}

impl Streak {
    fn update(&mut self, holds: bool, now: Instant) {
        if holds {
            self.polls = self.polls.saturating_add(1);
            self.since.get_or_insert(now);
        } else {
            *self = Self::default();
        }
    }

    fn lasted(&self, polls: u32, period: Duration, now: Instant) -> bool {
        self.polls >= polls
            && self
                .since
                .is_some_and(|since| now.saturating_duration_since(since) >= period)
    }
}

impl Scaler {
    /// A scaler with nothing seen yet.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            empty: Streak::default(),
            in_flight_only: Streak::default(),
            recent: VecDeque::new(),
            last_known: 0,
            throughput: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides the desired count for a poll at `now` that read `observation`.
    pub fn decide(&mut self, now: Instant, observation: &Observation) -> Decision {
        if let Some(rate) = observation.throughput {
            self.throughput = Some(rate);
        }
        let backlog_per_task = self.policy.target.backlog_per_task(self.throughput);
        let hold = |current: u32, reason: Reason| Decision {
            current,
            desired: current,
            reason,
            waiting: 0,
            in_flight: 0,
            backlog_per_task,
            needed: current,
        };
        let Some(service) = observation.service else {
            return hold(self.last_known, Reason::ServiceUnreadable);
        };
        let current = service.desired;
        self.last_known = current;
        let Some(queue) = observation.queue else {
            return hold(current, Reason::QueueUnreadable);
        };

        let backlog = self.backlog(&queue, observation.held, backlog_per_task);
        // Remembered during a deployment too: the streaks and the cooldown's targets
        // are the queue's, which a rollout does not change.
        self.remember(now, current, &backlog);
        let (desired, reason) = if service.deployment_in_progress {
            (current, Reason::DeploymentInProgress)
        } else {
            self.resize(now, current, &backlog)
        };
        Decision {
            current,
            desired,
            reason,
            waiting: backlog.waiting,
            in_flight: backlog.in_flight,
            backlog_per_task,
            needed: backlog.needed,
        }
    }

    /// Counts one poll's backlog from the queue's counts and the messages the workers
    /// hold (when known), and sizes the service for it.
    fn backlog(&self, queue: &QueueCounts, held: Option<u64>, backlog_per_task: f64) -> Backlog {
        let policy = &self.policy;
        let waiting = queue.visible
            + if policy.count_delayed {
                queue.delayed
            } else {
                0
            };
        // What keeps a service busy: the messages its workers hold, when that is known;
        // else every message in flight (some may only wait out a retry, but that cannot
        // be told).
        let in_flight = held.unwrap_or(queue.not_visible);
        let backlog = waiting.saturating_add(in_flight);
        let needed = ceil_div(backlog, backlog_per_task);
        // Scale-in aims a tolerance above the need, so that the count it lands on is
        // not exceeded (by more than the tolerance) by the same noise a moment later:
        // that would be a scale-out right after the scale-in.
        let roomy = ceil_div(backlog, backlog_per_task / (1.0 + policy.tolerance));
        Backlog {
            waiting,
            in_flight,
            empty: queue.visible == 0 && queue.delayed == 0 && in_flight == 0,
            needed,
            sized: needed.clamp(self.floor(), policy.max),
            roomy: roomy.clamp(self.floor(), policy.max),
        }
    }

    /// Keeps what later polls decide on: the empty and in-flight-only streaks, and the
    /// scale-in targets of the cooldown.
    fn remember(&mut self, now: Instant, current: u32, backlog: &Backlog) {
        self.empty.update(backlog.empty, now);
        self.in_flight_only
            .update(backlog.waiting == 0 && backlog.in_flight > 0, now);
        if self.recent.is_empty() {
            // A controller that just started has seen no history: the count it finds
            // stands for one cooldown, as if it had been the target until now.
            let found = current.clamp(self.floor(), self.policy.max);
            self.recent.push_back((now, found));
        }
        self.recent.push_back((now, backlog.roomy));
        while let Some(&(at, _)) = self.recent.front() {
            if now.saturating_duration_since(at) > self.policy.scale_in_cooldown {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }

    /// The desired count and its reason for a service that is not rolling out: rules 2
    /// to 4 of the module docs.
    fn resize(&self, now: Instant, current: u32, backlog: &Backlog) -> (u32, Reason) {
        let policy = &self.policy;
        let step = policy.max_step.unwrap_or(u32::MAX).max(1);
        if current == 0 {
            return self.at_zero(backlog, step);
        }
        if current < policy.min {
            return (policy.min, Reason::BelowMin);
        }
        if current > policy.max {
            return (policy.max, Reason::AboveMax);
        }
        if policy.min == 0
            && self
                .empty
                .lasted(policy.empty_polls, policy.scale_in_cooldown, now)
        {
            return (0, Reason::ToZero);
        }
        if backlog.sized > current {
            if self.within_tolerance(current, backlog.sized) {
                return (current, Reason::Steady);
            }
            return (
                backlog.sized.min(current.saturating_add(step)),
                Reason::ScaleOut,
            );
        }
        self.scale_in(current, backlog, step)
    }

    /// The desired count of a service at zero: woken (rule 2) with a first step of tasks,
    /// raised to the minimum, or left at zero.
    fn at_zero(&self, backlog: &Backlog, step: u32) -> (u32, Reason) {
        let policy = &self.policy;
        let first = backlog.sized.min(step.max(self.floor()));
        if backlog.waiting > policy.activation {
            (first, Reason::Wake)
        } else if self.in_flight_only.polls >= policy.in_flight_wake_polls.max(1) {
            (first, Reason::SustainedInFlight)
        } else if policy.min > 0 {
            (policy.min, Reason::BelowMin)
        } else if backlog.waiting > 0 {
            (0, Reason::BelowActivation)
        } else if backlog.in_flight > 0 {
            (0, Reason::InFlightNotSustained)
        } else {
            (0, Reason::Idle)
        }
    }

    /// Whether a running service that the backlog does not need more of may scale in
    /// (rule 3): only to the highest target of the cooldown, and not within the
    /// tolerance.
    fn scale_in(&self, current: u32, backlog: &Backlog, step: u32) -> (u32, Reason) {
        // The highest target of the cooldown: scale in only as far as every poll of it
        // agrees.
        let settled = self
            .recent
            .iter()
            .map(|&(_, target)| target)
            .max()
            .unwrap_or(backlog.sized);
        if settled >= current {
            let reason = if backlog.sized < current {
                Reason::ScaleInPending
            } else if backlog.empty {
                Reason::EmptyPending
            } else {
                Reason::Steady
            };
            return (current, reason);
        }
        if self.within_tolerance(current, settled) {
            let reason = if backlog.empty {
                Reason::EmptyPending
            } else {
                Reason::Steady
            };
            return (current, reason);
        }
        (settled.max(current.saturating_sub(step)), Reason::ScaleIn)
    }

    /// Whether moving from `current` to `target` tasks is a change within the tolerance,
    /// and so not worth making.
    fn within_tolerance(&self, current: u32, target: u32) -> bool {
        f64::from(target.abs_diff(current)) <= self.policy.tolerance * f64::from(current)
    }

    /// The fewest tasks a running service is sized to: the minimum, and at least one.
    fn floor(&self) -> u32 {
        self.policy.min.max(1)
    }
}

/// One poll's backlog, as the rules count it.
#[derive(Clone, Copy, Debug)]
struct Backlog {
    /// Messages waiting: visible, plus delayed when they count.
    waiting: u64,
    /// Messages in flight: those the workers hold when known, else the queue's
    /// not-visible count.
    in_flight: u64,
    /// Whether the queue read empty: nothing visible, delayed or in flight.
    empty: bool,
    /// `ceil((waiting + in flight) / backlog per task)`.
    needed: u32,
    /// `needed` within `[max(min, 1), max]`: the count the backlog asks for.
    sized: u32,
    /// The count a scale-in aims at: `sized` with the tolerance as headroom.
    roomy: u32,
}

/// `ceil(messages / per_task)` as a task count, saturating.
fn ceil_div(messages: u64, per_task: f64) -> u32 {
    let tasks = (messages as f64 / per_task).ceil();
    if tasks >= f64::from(u32::MAX) {
        u32::MAX
    } else if tasks > 0.0 {
        tasks as u32
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
