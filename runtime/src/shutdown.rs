//! The Spot shutdown contract, in one place: its deadlines, computed once when shutdown
//! begins, and its steps, in order.
//!
//! ECS sends SIGTERM, then SIGKILL `stopTimeout` later. From the first signal (or
//! [`ShutdownHandle::begin`], or the worker's own end: its queue drained, its
//! [maximum run time](crate::config::WorkerConfig::max_run_time) passed; see [`StopReason`]) a
//! worker
//!
//! 1. stops receiving at once. A receive in transit is let finish (the queue may already
//!    have handed it messages), at most for its long poll and a margin and never past
//!    the hard deadline less [`FLUSH_ROOM`];
//! 2. releases (visibility 0) what such a receive returns, unstarted: a worker only
//!    receives what it can start, so nothing else waits;
//! 3. lets running handlers go on until the grace deadline
//!    ([`WorkerConfig::shutdown_grace`](crate::config::WorkerConfig::shutdown_grace)), their
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
//!
//! [`run_with`] and [`run_all`] run several workers under one [`ShutdownHandle`];
//! [`spotq::run`](crate::run) is [`run_with`] on SIGTERM/SIGINT.

pub use crate::contract::{
    EXIT_MARGIN, FLUSH_ROOM, RELEASE_WAIT, ROOM, ShutdownHandle, StopReason,
};
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub use crate::worker::spec::run_with;
pub use crate::worker::spec::{AnyWorker, run_all};
