//! Job sizing: how many standalone tasks to start for a queue's backlog.
//!
//! A job binding sets no desired count. It starts tasks (ECS `RunTask`, or local
//! processes) that work the queue and exit by themselves once it is drained; the
//! controller never stops one to scale in. Each poll:
//!
//! 1. Hold (start nothing) while the queue or the tasks could not be read: a count not
//!    read is no reason to start anything.
//! 2. Want `ceil(waiting / messages_per_task)` tasks, at most `max_tasks`. Waiting is
//!    the visible messages, plus the delayed ones when they count; messages in flight
//!    are already some task's.
//! 3. Count as active the tasks the target lists as starting or running, plus the ones
//!    a start returned that it does not list yet, each for up to `start_grace` after its
//!    start: ECS's `ListTasks` catches up with `RunTask` a moment later, and a task
//!    counted twice is better than a task started twice.
//! 4. Start `wanted − active` tasks, at most `max_step` in one poll, none when the
//!    active ones are enough; after a start that fell short (no capacity, a failed
//!    call) start nothing until the backoff has passed.
//!
//! [`size_jobs`] is rules 2 and 4 on given counts, a pure function; [`JobScaler`] adds
//! rules 1 and 3 and the backoff, with no clock inside: each poll's time is passed in.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use spotq::config::Backoff;
use tokio::time::Instant;

use super::QueueCounts;

/// How one job binding sizes its tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPolicy {
    /// Waiting messages one task is started for; at least 1.
    pub messages_per_task: u64,
    /// The most tasks active at once; at least 1.
    pub max_tasks: u32,
    /// The most tasks started in one poll; `None` for no limit but `max_tasks`.
    pub max_step: Option<u32>,
    /// Whether delayed messages count as waiting.
    pub count_delayed: bool,
    /// How long a started task counts as active while the target does not list it.
    pub start_grace: Duration,
    /// The wait after a start that fell short, by how many fell short in a row.
    pub retry: Backoff,
}

impl Default for JobPolicy {
    /// 10 messages a task, at most 10 tasks, no step limit, delayed messages not
    /// counted, 60 s of grace, and a retry 5 s after a start that fell short, doubling
    /// up to 5 minutes (no jitter: the decision is deterministic).
    fn default() -> Self {
        Self {
            messages_per_task: 10,
            max_tasks: 10,
            max_step: None,
            count_delayed: false,
            start_grace: Duration::from_secs(60),
            retry: Backoff {
                base: Duration::from_secs(5),
                max: Duration::from_secs(300),
                jitter: false,
            },
        }
    }
}

impl JobPolicy {
    /// The messages that wait for a task: visible, plus delayed when they count.
    pub fn waiting(&self, queue: &QueueCounts) -> u64 {
        let delayed = if self.count_delayed { queue.delayed } else { 0 };
        queue.visible.saturating_add(delayed)
    }
}

/// A job binding's tasks as the target reports them, with one read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobTasks {
    /// Every task the target reports, whatever its state (starting, running, stopping,
    /// just exited): the ids a start returned are matched against these.
    pub listed: Vec<String>,
    /// Tasks starting (ECS: `PROVISIONING`, `PENDING`, `ACTIVATING`).
    pub pending: u32,
    /// Tasks running.
    pub running: u32,
    /// Tasks seen to have exited since the last read (local processes).
    pub exited: u32,
    /// Of those, the ones that exited with a failure status.
    pub failed: u32,
}

/// What one poll of a job binding read. `None` where the read failed (after its
/// retries).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobObservation {
    /// The queue's counts.
    pub queue: Option<QueueCounts>,
    /// The binding's tasks.
    pub tasks: Option<JobTasks>,
}

/// Why a poll starts the tasks it starts (or none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobReason {
    /// The backlog needs more tasks than are active.
    Start,
    /// The active tasks are enough for the backlog.
    Enough,
    /// The backlog needs more tasks, but `max_tasks` are active.
    AtMax,
    /// Nothing waits.
    Idle,
    /// More tasks are needed, but the last start fell short and its backoff runs.
    Backoff,
    /// The queue's counts could not be read.
    QueueUnreadable,
    /// The tasks could not be read.
    TasksUnreadable,
}

impl JobReason {
    /// A short, stable name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Enough => "enough",
            Self::AtMax => "at_max",
            Self::Idle => "idle",
            Self::Backoff => "backoff",
            Self::QueueUnreadable => "queue_unreadable",
            Self::TasksUnreadable => "tasks_unreadable",
        }
    }
}

impl fmt::Display for JobReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One poll's outcome for a job binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobDecision {
    /// Why.
    pub reason: JobReason,
    /// Messages waiting (visible, plus delayed when they count) as read.
    pub waiting: u64,
    /// `ceil(waiting / messages_per_task)`, before `max_tasks`.
    pub needed: u32,
    /// `needed`, at most `max_tasks`.
    pub wanted: u32,
    /// Tasks counted as active: listed starting or running, plus `unlisted`.
    pub active: u32,
    /// Tasks started that the target does not list yet, counted in `active`.
    pub unlisted: u32,
    /// Tasks to start now.
    pub starts: u32,
}

impl JobDecision {
    fn hold(reason: JobReason, waiting: u64, active: u32, unlisted: u32) -> Self {
        Self {
            reason,
            waiting,
            needed: 0,
            wanted: 0,
            active,
            unlisted,
            starts: 0,
        }
    }
}

/// The tasks to start for `waiting` messages while `active` tasks are starting or
/// running: `min(ceil(waiting / messages_per_task), max_tasks) − active`, at most
/// `max_step`, none when `active` is enough. Pure and deterministic.
///
/// ```
/// use spotq_controller::decision::job::{JobPolicy, JobReason, size_jobs};
///
/// let policy = JobPolicy { messages_per_task: 10, max_tasks: 5, max_step: Some(2), ..JobPolicy::default() };
/// // 80 waiting want 8 tasks, 5 at most; 1 is active, and 2 start a poll at most.
/// let decision = size_jobs(&policy, 80, 1);
/// assert_eq!((decision.wanted, decision.starts, decision.reason), (5, 2, JobReason::Start));
/// assert_eq!(size_jobs(&policy, 80, 5).reason, JobReason::AtMax);
/// assert_eq!(size_jobs(&policy, 30, 3).reason, JobReason::Enough);
/// assert_eq!(size_jobs(&policy, 0, 0).reason, JobReason::Idle);
/// ```
pub fn size_jobs(policy: &JobPolicy, waiting: u64, active: u32) -> JobDecision {
    let per_task = policy.messages_per_task.max(1);
    let needed = u32::try_from(waiting.div_ceil(per_task)).unwrap_or(u32::MAX);
    let wanted = needed.min(policy.max_tasks);
    let step = policy.max_step.unwrap_or(u32::MAX).max(1);
    let starts = wanted.saturating_sub(active).min(step);
    let reason = if starts > 0 {
        JobReason::Start
    } else if waiting == 0 {
        JobReason::Idle
    } else if needed > policy.max_tasks && active >= policy.max_tasks {
        JobReason::AtMax
    } else {
        JobReason::Enough
    };
    JobDecision {
        reason,
        waiting,
        needed,
        wanted,
        active,
        unlisted: 0,
        starts,
    }
}

/// The sizing of one job binding: its policy, the tasks it started that the target
/// does not list yet, and the backoff after a start that fell short.
#[derive(Clone, Debug)]
pub struct JobScaler {
    policy: JobPolicy,
    /// Started tasks not listed yet, with the time of the poll that started them.
    unlisted: Vec<(String, Instant)>,
    /// Starts in a row that fell short.
    shortfalls: u32,
    /// No start before this, after a start that fell short.
    retry_at: Option<Instant>,
}

impl JobScaler {
    /// A scaler that has started nothing yet.
    pub fn new(policy: JobPolicy) -> Self {
        Self {
            policy,
            unlisted: Vec::new(),
            shortfalls: 0,
            retry_at: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &JobPolicy {
        &self.policy
    }

    /// Decides the tasks to start for a poll at `now` that read `observation`.
    pub fn decide(&mut self, now: Instant, observation: &JobObservation) -> JobDecision {
        let Some(tasks) = &observation.tasks else {
            let unlisted = self.unlisted_count();
            return JobDecision::hold(JobReason::TasksUnreadable, 0, 0, unlisted);
        };
        let listed: HashSet<&str> = tasks.listed.iter().map(String::as_str).collect();
        let grace = self.policy.start_grace;
        self.unlisted.retain(|(id, started)| {
            !listed.contains(id.as_str()) && now.saturating_duration_since(*started) < grace
        });
        let unlisted = self.unlisted_count();
        let active = tasks
            .pending
            .saturating_add(tasks.running)
            .saturating_add(unlisted);
        let Some(queue) = observation.queue else {
            return JobDecision::hold(JobReason::QueueUnreadable, 0, active, unlisted);
        };
        let mut decision = size_jobs(&self.policy, self.policy.waiting(&queue), active);
        decision.unlisted = unlisted;
        if decision.starts > 0 && self.retry_at.is_some_and(|at| now < at) {
            decision.starts = 0;
            decision.reason = JobReason::Backoff;
        }
        decision
    }

    /// Records the start made by the poll at `now`: the ids of the tasks that started,
    /// and whether any asked for did not. A start that fell short backs off: the
    /// returned wait, doubled for each in a row; one that did not ends the backoff.
    pub fn started(
        &mut self,
        now: Instant,
        tasks: &[String],
        fell_short: bool,
    ) -> Option<Duration> {
        self.unlisted
            .extend(tasks.iter().map(|id| (id.clone(), now)));
        if fell_short {
            self.shortfalls = self.shortfalls.saturating_add(1);
            let wait = self.policy.retry.delay(self.shortfalls);
            self.retry_at = Some(now + wait);
            Some(wait)
        } else {
            self.shortfalls = 0;
            self.retry_at = None;
            None
        }
    }

    fn unlisted_count(&self) -> u32 {
        u32::try_from(self.unlisted.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests;
