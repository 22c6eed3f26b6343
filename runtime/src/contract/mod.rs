//! The shutdown contract's plan: its deadlines, computed once when shutdown begins, the
//! stop reasons and the signal handle. The contract itself is written in the public
//! [`shutdown`](crate::shutdown) module's docs; the engine carries out its steps
//! (`engine::stop`) on the parts it owns.

mod reason;
mod signals;

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

pub use reason::StopReason;
pub use signals::ShutdownHandle;

use crate::backend::MAX_VISIBILITY;
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

    /// Step 4 begins: running handlers are given up (each releases its message as it
    /// drops).
    pub(crate) fn give_up_handlers(&self) {
        self.cancel_handlers.cancel();
    }
}

/// How long a retry from `now` may keep a message received at `received_at` invisible:
/// under the 12 h cap. Not bounded by shutdown: the queue keeps the timer after the
/// worker exits.
pub(crate) fn retry_room(received_at: Instant, now: Instant) -> Duration {
    (received_at + MAX_VISIBILITY - CAP_MARGIN).saturating_duration_since(now)
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
