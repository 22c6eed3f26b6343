//! Liveness and readiness of the workers in a process, for a health endpoint.
//!
//! A worker attached to a [`Health`] (see
//! [`WorkerBuilder::health`](crate::WorkerBuilder::health)) reports when it is receiving
//! and when its pollers last made progress. [`Health::is_live`] turns false when a
//! poller has been stuck longer than the limit (a wedged worker the orchestrator should
//! restart); [`Health::is_ready`] is true while every attached worker receives, and
//! false from the moment shutdown begins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long a poller may go without progress before the process counts as not live:
/// a long poll lasts at most 20 s, a backoff after errors at most a few seconds.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(60);

/// The health of the workers in a process. Cheap to clone; clones share one state.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    stall_limit: Duration,
    /// Workers attached and not yet stopped.
    workers: AtomicUsize,
    /// Workers attached and receiving.
    receiving: AtomicUsize,
    /// Any worker has begun to shut down.
    stopping: AtomicBool,
    /// Readiness a process without workers reports itself ([`Health::set_ready`]).
    ready: AtomicBool,
    /// Each poller's state, by slot.
    pollers: Mutex<Vec<PollerState>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PollerState {
    /// The slot is free.
    Gone,
    /// Waiting for a handler to finish: not stuck, however long it takes.
    Waiting,
    /// Receiving or backing off since this many milliseconds after `origin`.
    Busy(u64),
}

impl Default for Health {
    fn default() -> Self {
        Self::new(DEFAULT_STALL_LIMIT)
    }
}

impl Health {
    /// A health state that reports a poller stuck for longer than `stall_limit` as not
    /// live.
    pub fn new(stall_limit: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                stall_limit,
                workers: AtomicUsize::new(0),
                receiving: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                ready: AtomicBool::new(false),
                pollers: Mutex::default(),
            }),
        }
    }

    /// Whether every poller made progress within the stall limit.
    pub fn is_live(&self) -> bool {
        let now = self.millis();
        let limit = u64::try_from(self.inner.stall_limit.as_millis()).unwrap_or(u64::MAX);
        self.pollers().iter().all(|state| match state {
            PollerState::Busy(since) => now.saturating_sub(*since) <= limit,
            PollerState::Gone | PollerState::Waiting => true,
        })
    }

    /// Whether at least one worker is attached, every attached worker is receiving,
    /// and none has begun to shut down; in a process without workers, what it last
    /// said with [`set_ready`](Self::set_ready).
    pub fn is_ready(&self) -> bool {
        let workers = self.inner.workers.load(Ordering::Acquire);
        if workers == 0 {
            return self.inner.ready.load(Ordering::Acquire);
        }
        self.inner.receiving.load(Ordering::Acquire) == workers
            && !self.inner.stopping.load(Ordering::Acquire)
    }

    /// Says whether a process that runs no worker (such as `spotq-controller`) is ready:
    /// `true` once it serves, `false` when it begins to stop. Attached workers report
    /// their own readiness, and this is then not consulted.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    fn pollers(&self) -> MutexGuard<'_, Vec<PollerState>> {
        // Plain data, consistent even if a holder panicked.
        self.inner
            .pollers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.inner.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn attach(&self) -> WorkerHealth {
        self.inner.workers.fetch_add(1, Ordering::AcqRel);
        WorkerHealth {
            health: self.clone(),
            receiving: AtomicBool::new(false),
        }
    }
}

/// One worker's link to its [`Health`]; detaches when dropped.
#[derive(Debug)]
pub(crate) struct WorkerHealth {
    health: Health,
    receiving: AtomicBool,
}

impl WorkerHealth {
    pub(crate) fn receiving(&self) {
        if !self.receiving.swap(true, Ordering::AcqRel) {
            self.health.inner.receiving.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Receives keep failing (the queue cannot be reached, or refuses): not ready until
    /// a receive succeeds again ([`receiving`](Self::receiving)).
    pub(crate) fn unreachable(&self) {
        if self.receiving.swap(false, Ordering::AcqRel) {
            self.health.inner.receiving.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn stopping(&self) {
        self.health.inner.stopping.store(true, Ordering::Release);
        if self.receiving.swap(false, Ordering::AcqRel) {
            self.health.inner.receiving.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A slot for one poller's progress.
    pub(crate) fn poller(&self) -> PollerBeat {
        let mut pollers = self.health.pollers();
        let state = PollerState::Busy(self.health.millis());
        let slot = match pollers.iter().position(|state| *state == PollerState::Gone) {
            Some(slot) => {
                pollers[slot] = state;
                slot
            }
            None => {
                pollers.push(state);
                pollers.len() - 1
            }
        };
        PollerBeat {
            health: self.health.clone(),
            slot,
        }
    }
}

impl Drop for WorkerHealth {
    fn drop(&mut self) {
        if self.receiving.swap(false, Ordering::AcqRel) {
            self.health.inner.receiving.fetch_sub(1, Ordering::AcqRel);
        }
        self.health.inner.workers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A poller's progress: it is busy (receiving, backing off) from one call of
/// [`busy`](Self::busy) to the next, and not stuck while [`waiting`](Self::waiting) for
/// a handler to finish.
#[derive(Debug)]
pub(crate) struct PollerBeat {
    health: Health,
    slot: usize,
}

impl PollerBeat {
    pub(crate) fn busy(&self) {
        self.set(PollerState::Busy(self.health.millis()));
    }

    pub(crate) fn waiting(&self) {
        self.set(PollerState::Waiting);
    }

    fn set(&self, state: PollerState) {
        if let Some(slot) = self.health.pollers().get_mut(self.slot) {
            *slot = state;
        }
    }
}

impl Drop for PollerBeat {
    fn drop(&mut self) {
        self.set(PollerState::Gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_without_workers_says_itself_whether_it_is_ready() {
        let health = Health::default();
        assert!(!health.is_ready(), "not ready until it says so");
        health.set_ready(true);
        assert!(health.is_ready());
        let worker = health.attach();
        assert!(
            !health.is_ready(),
            "an attached worker that is not receiving decides"
        );
        worker.receiving();
        assert!(health.is_ready());
        drop(worker);
        health.set_ready(false);
        assert!(!health.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_poller_stuck_past_the_limit_is_not_live_but_a_waiting_one_is() {
        let health = Health::new(Duration::from_secs(60));
        let worker = health.attach();
        let poller = worker.poller();
        assert!(health.is_live());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!health.is_live(), "busy for 61 s");
        poller.waiting();
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(health.is_live(), "waiting for handlers is not being stuck");
        poller.busy();
        assert!(health.is_live());
        drop(poller);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(health.is_live(), "a stopped poller is not stuck");
    }

    #[test]
    fn ready_while_every_worker_receives_and_none_stops() {
        let health = Health::default();
        assert!(!health.is_ready(), "no worker yet");
        let first = health.attach();
        let second = health.attach();
        first.receiving();
        assert!(!health.is_ready(), "the second does not receive yet");
        second.receiving();
        assert!(health.is_ready());
        second.unreachable();
        assert!(!health.is_ready(), "the second cannot reach its queue");
        second.receiving();
        assert!(health.is_ready(), "reached again");
        second.stopping();
        assert!(!health.is_ready(), "shutdown began");
        drop(second);
        drop(first);
        assert!(!health.is_ready());
    }
}
