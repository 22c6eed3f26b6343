//! The Spot shutdown contract, in one place: its deadlines, computed once when shutdown
//! begins, and its steps, in order.
//!
//! ECS sends SIGTERM, then SIGKILL `stopTimeout` later. From the first signal (or
//! [`ShutdownHandle::begin`], or the worker's own end: its queue drained, its
//! [maximum run time](crate::WorkerConfig::max_run_time) passed; see [`StopReason`]) a
//! worker
//!
//! 1. stops receiving at once. A receive in transit is let finish (the queue may already
//!    have handed it messages), at most for its long poll and a margin and never past
//!    the hard deadline less [`FLUSH_ROOM`];
//! 2. releases (visibility 0) what such a receive returns, unstarted: a worker only
//!    receives what it can start, so nothing else waits;
//! 3. lets running handlers go on until the grace deadline
//!    ([`WorkerConfig::shutdown_grace`](crate::WorkerConfig::shutdown_grace)), their
//!    heartbeats extending visibility only up to it;
//! 4. then cancels the handlers still running and releases their messages. A second
//!    signal ([`ShutdownHandle::now`]) does this at once; the releases go out as the
//!    handlers drop and wait for no receive in transit. A handler that blocks its
//!    thread is given up after [`RELEASE_WAIT`];
//! 5. sends every pending delete and visibility change before the hard deadline, the
//!    stop timeout less [`EXIT_MARGIN`], and returns.
//!
//! Retries and `RetryAfter` delays keep their whole length: the queue keeps the timer
//! after the worker exits. A grace period that leaves less than [`ROOM`] of the stop
//! timeout cannot keep steps 4 and 5 and fails at start, naming both settings.

mod reason;
mod signals;

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::{Instant, timeout_at};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

pub use reason::StopReason;
pub use signals::ShutdownHandle;

use crate::backend::MAX_VISIBILITY;
use crate::engine::capacity::Capacity;
use crate::engine::settle::Settler;
use crate::error::ConfigError;
use spotq_settings::limits::CAP_MARGIN;

/// How long cancelled handlers get to end (they are dropped at once; only one that
/// blocks its thread takes longer) before the worker goes on without them.
pub const RELEASE_WAIT: Duration = Duration::from_secs(1);
/// Time kept for the last batch calls (the releases of step 4 among them).
pub const FLUSH_ROOM: Duration = Duration::from_secs(1);
/// Time kept between the last step and SIGKILL, to exit.
pub const EXIT_MARGIN: Duration = Duration::from_secs(1);
/// What the grace period must leave before the stop timeout: release, flush, exit.
pub const ROOM: Duration = RELEASE_WAIT
    .saturating_add(FLUSH_ROOM)
    .saturating_add(EXIT_MARGIN);
/// The time kept for release, flush and exit by the default grace period, where the stop
/// timeout is long enough to spare it.
const DEFAULT_MARGIN: Duration = Duration::from_secs(5);

/// The grace period for a stop timeout, checked against it: the one given, or by default
/// the stop timeout less 5 s (less [`ROOM`] where that leaves too little, and never less
/// than [`ROOM`] kept).
pub(crate) fn plan(
    stop_timeout: Duration,
    grace: Option<Duration>,
) -> Result<Duration, ConfigError> {
    if stop_timeout < ROOM {
        return Err(ConfigError::new(
            "stop_timeout",
            stop_timeout,
            format!(
                "at least {ROOM:?}: after shutdown_grace, releasing ({RELEASE_WAIT:?}), \
                 flushing ({FLUSH_ROOM:?}) and exiting ({EXIT_MARGIN:?}) must fit before SIGKILL"
            ),
        ));
    }
    match grace {
        Some(grace) if grace.saturating_add(ROOM) > stop_timeout => Err(ConfigError::new(
            "shutdown_grace",
            grace,
            format!(
                "at most stop_timeout ({stop_timeout:?}) less {ROOM:?}, the time releasing \
                 ({RELEASE_WAIT:?}), flushing ({FLUSH_ROOM:?}) and exiting ({EXIT_MARGIN:?}) \
                 need before SIGKILL"
            ),
        )),
        Some(grace) => Ok(grace),
        None => {
            let margin = DEFAULT_MARGIN.min(stop_timeout / 2).max(ROOM);
            Ok(stop_timeout - margin)
        }
    }
}

/// The instants of one shutdown, computed once when it begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadlines {
    /// When shutdown began.
    pub began: Instant,
    /// Running handlers may go on until here; heartbeats extend no further. The moment
    /// shutdown began, for an immediate shutdown.
    pub grace: Instant,
    /// What must be done before SIGKILL: the stop timeout less [`EXIT_MARGIN`].
    pub hard: Instant,
}

impl Deadlines {
    fn new(began: Instant, grace: Duration, stop_timeout: Duration, immediate: bool) -> Self {
        let grace = if immediate { began } else { began + grace };
        Self {
            began,
            grace,
            hard: began + stop_timeout.saturating_sub(EXIT_MARGIN),
        }
    }

    /// The last moment for anything whose messages must still be released and flushed:
    /// the hard deadline less [`FLUSH_ROOM`].
    pub fn release(&self) -> Instant {
        self.hard.checked_sub(FLUSH_ROOM).unwrap_or(self.began)
    }

    /// How long a receive in transit at the start of shutdown (begun at `started`, with
    /// a long poll of `wait_time`) is waited for: its long poll and a margin, never past
    /// [`release`](Self::release), so what it returns can still be released.
    pub fn receive_limit(&self, started: Instant, wait_time: Duration) -> Instant {
        const RECEIVE_MARGIN: Duration = Duration::from_secs(2);
        (started + wait_time + RECEIVE_MARGIN).min(self.release())
    }
}

/// One worker's shutdown: what handlers observe through their
/// [`Context`](crate::Context), what the pollers and message tasks ask, and the steps.
#[derive(Debug, Default)]
pub(crate) struct Contract {
    grace: Duration,
    stop_timeout: Duration,
    /// Cancelled when shutdown begins: pollers stop receiving, handlers see `stopping()`.
    stopping: CancellationToken,
    /// Cancelled when running handlers are given up (step 4).
    cancel_handlers: CancellationToken,
    deadlines: OnceLock<Deadlines>,
    /// Why the run ends: the first cause recorded.
    reason: OnceLock<StopReason>,
    /// Cancelled when the worker ends its run by itself ([`end`](Self::end)).
    ended: CancellationToken,
}

/// The parts of an engine the shutdown steps drive.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub capacity: &'a Capacity,
    pub pollers: &'a TaskTracker,
    pub settler: &'a Settler,
}

impl Contract {
    /// The contract of a worker with this (checked) grace period and stop timeout.
    pub(crate) fn new(grace: Duration, stop_timeout: Duration) -> Self {
        Self {
            grace,
            stop_timeout,
            ..Self::default()
        }
    }

    /// Step 1: shutdown begins now; receiving stops. Returns the deadlines (those of
    /// the first call, if called again).
    pub(crate) fn begin(&self, immediate: bool) -> Deadlines {
        let deadlines = *self.deadlines.get_or_init(|| {
            Deadlines::new(Instant::now(), self.grace, self.stop_timeout, immediate)
        });
        self.stopping.cancel();
        deadlines
    }

    /// The worker ends its run by itself, for `reason` (unless another cause came
    /// first): shutdown begins now, gracefully, and [`ended`](Self::ended) resolves.
    pub(crate) fn end(&self, reason: StopReason) {
        self.record(reason);
        self.begin(false);
        self.ended.cancel();
    }

    /// Resolves once the worker has ended its run by itself; why.
    pub(crate) async fn ended(&self) -> StopReason {
        self.ended.cancelled().await;
        self.reason()
    }

    /// Records `reason` as why the run ends, unless a cause is recorded already.
    pub(crate) fn record(&self, reason: StopReason) {
        let _first = self.reason.set(reason);
    }

    /// Why the run ends: the first cause recorded ([`StopReason::Requested`] if none
    /// was).
    pub(crate) fn reason(&self) -> StopReason {
        *self.reason.get_or_init(|| StopReason::Requested)
    }

    /// The deadlines, once shutdown has begun.
    pub(crate) fn deadlines(&self) -> Option<&Deadlines> {
        self.deadlines.get()
    }

    /// Resolves when shutdown begins: pollers stop receiving.
    pub(crate) fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.stopping.cancelled()
    }

    /// Resolves when running handlers are given up: their messages are released.
    pub(crate) fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel_handlers.cancelled()
    }

    /// Whether running handlers have been given up.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel_handlers.is_cancelled()
    }

    /// How long a heartbeat from `now` may keep a message received at `received_at`
    /// invisible: under the 12 h cap, and not past the grace deadline once shutdown has
    /// begun (after it, the message is released).
    pub(crate) fn heartbeat_room(&self, received_at: Instant, now: Instant) -> Duration {
        let cap = retry_room(received_at, now);
        match self.deadlines() {
            Some(deadlines) => cap.min(deadlines.grace.saturating_duration_since(now)),
            None => cap,
        }
    }

    /// Steps 1 to 5, once `shutdown` has fired (`immediate` when it asked for an
    /// immediate shutdown); a later `hurry` (a second signal) cancels running handlers
    /// at once. Returns when the worker may return.
    pub(crate) async fn carry_out(
        &self,
        parts: Parts<'_>,
        immediate: bool,
        hurry: Pin<&mut impl Future>,
    ) {
        let deadlines = self.begin(immediate);
        let finished = !immediate && let_handlers_finish(parts, &deadlines, hurry).await;
        if !finished {
            release_running(self, parts, &deadlines).await;
        }
        wait_for_receives(parts, &deadlines).await;
        flush(parts.settler, &deadlines).await;
    }
}

/// How long a retry from `now` may keep a message received at `received_at` invisible:
/// under the 12 h cap. Not bounded by shutdown: the queue keeps the timer after the
/// worker exits.
pub(crate) fn retry_room(received_at: Instant, now: Instant) -> Duration {
    (received_at + MAX_VISIBILITY - CAP_MARGIN).saturating_duration_since(now)
}

/// Step 3: waits, until the grace deadline or a second signal, for receives in transit
/// to end and every message to be settled. Whether they all were.
async fn let_handlers_finish(
    parts: Parts<'_>,
    deadlines: &Deadlines,
    hurry: Pin<&mut impl Future>,
) -> bool {
    tracing::info!(
        in_flight = parts.capacity.messages_in_flight(),
        grace = ?deadlines.grace - deadlines.began,
        "shutdown: receiving stopped, waiting for running handlers"
    );
    let settled = async {
        parts.pollers.wait().await;
        parts.capacity.all_returned().await;
    };
    tokio::select! {
        biased;
        _ = hurry => false,
        settled = timeout_at(deadlines.grace, settled) => settled.is_ok(),
    }
}

/// Step 4: cancels the handlers still running; each releases its message as it drops.
/// Waits for them until [`RELEASE_WAIT`] from now (and the release deadline); a handler
/// that blocks its thread cannot be dropped and is given up.
async fn release_running(contract: &Contract, parts: Parts<'_>, deadlines: &Deadlines) {
    tracing::warn!(
        in_flight = parts.capacity.messages_in_flight(),
        "shutdown: releasing the messages of running handlers"
    );
    contract.cancel_handlers.cancel();
    let give_up = (Instant::now() + RELEASE_WAIT).min(deadlines.release());
    if timeout_at(give_up, parts.capacity.messages_settled())
        .await
        .is_err()
    {
        tracing::error!(
            stuck = parts.capacity.messages_in_flight(),
            "shutdown: handlers did not stop; their messages stay invisible until their \
             visibility timeout"
        );
    }
}

/// Waits for the receives in transit when shutdown began (each poller bounds its own by
/// [`Deadlines::receive_limit`]), so what they return is released before the flush.
async fn wait_for_receives(parts: Parts<'_>, deadlines: &Deadlines) {
    if timeout_at(deadlines.release(), parts.pollers.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: a receive did not return by the release deadline");
    }
}

/// Step 5: sends every pending delete and visibility change, until the hard deadline.
async fn flush(settler: &Settler, deadlines: &Deadlines) {
    if timeout_at(deadlines.hard, settler.close()).await.is_err() {
        tracing::error!(
            "shutdown: deletes and visibility changes still failing at the stop timeout; \
             their messages will be received again"
        );
        settler.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_default_grace_always_leaves_room_for_release_flush_and_exit() {
        for millis in (ROOM.as_millis() as u64..=120_000).step_by(250) {
            let stop = Duration::from_millis(millis);
            let grace = plan(stop, None).expect("a stop timeout of at least ROOM has a grace");
            assert!(grace + ROOM <= stop, "{grace:?} in {stop:?}");
        }
        assert_eq!(plan(secs(30), None), Ok(secs(25)));
        assert_eq!(plan(secs(120), None), Ok(secs(115)));
        assert_eq!(plan(secs(6), None), Ok(secs(3)));
        assert_eq!(plan(secs(3), None), Ok(Duration::ZERO));
    }

    #[test]
    fn a_grace_that_leaves_no_room_fails_naming_both_settings_and_the_room() {
        // The stop timeout of 4 s with a grace of 3.5 s: nothing left to release in.
        let error = plan(secs(4), Some(Duration::from_millis(3500))).expect_err("no room");
        assert_eq!(error.setting, "shutdown_grace");
        let text = error.to_string();
        assert!(text.contains("stop_timeout (4s)"), "{text}");
        assert!(text.contains("3s"), "the room needed: {text}");
        let error = plan(secs(120), Some(Duration::from_millis(119_500))).expect_err("no room");
        assert_eq!(error.setting, "shutdown_grace");
        assert_eq!(plan(secs(4), Some(secs(1))), Ok(secs(1)));

        let error = plan(secs(2), None).expect_err("a stop timeout under the room");
        assert_eq!(error.setting, "stop_timeout");
        assert!(error.to_string().contains("shutdown_grace"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_are_computed_once_and_keep_the_flush_room() {
        let contract = Contract::new(secs(20), secs(30));
        let first = contract.begin(false);
        tokio::time::advance(secs(5)).await;
        assert_eq!(
            contract.begin(true),
            first,
            "a second begin changes nothing"
        );
        assert_eq!(first.grace - first.began, secs(20));
        assert_eq!(first.hard - first.began, secs(29));
        assert_eq!(first.release() - first.began, secs(28));
        let started = first.began;
        assert_eq!(
            first.receive_limit(started, secs(20)) - first.began,
            secs(22)
        );
        let immediate = Contract::new(secs(20), secs(30)).begin(true);
        assert_eq!(immediate.grace, immediate.began);
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_stop_at_the_grace_deadline_retries_only_at_the_cap() {
        let contract = Contract::new(secs(10), secs(30));
        let received = Instant::now();
        assert_eq!(
            contract.heartbeat_room(received, received),
            MAX_VISIBILITY - CAP_MARGIN
        );
        contract.begin(false);
        tokio::time::advance(secs(4)).await;
        let now = Instant::now();
        assert_eq!(contract.heartbeat_room(received, now), secs(6));
        assert_eq!(
            retry_room(received, now),
            MAX_VISIBILITY - CAP_MARGIN - secs(4)
        );
    }
}
