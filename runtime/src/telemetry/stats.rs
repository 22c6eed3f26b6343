//! What a worker did: counters shared by its tasks, and the report it returns.

use std::process::{ExitCode, Termination};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::contract::StopReason;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by the worker's tasks.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// What a worker did during one run, and why the run ended.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct RunReport {
            $($(#[$doc])* pub $name: u64,)*
            /// Wall time from start to the end of shutdown.
            pub elapsed: Duration,
            /// What began the shutdown.
            pub stop_reason: StopReason,
        }

        impl Counters {
            pub(crate) fn report(&self, elapsed: Duration, stop_reason: StopReason) -> RunReport {
                RunReport {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    elapsed,
                    stop_reason,
                }
            }
        }
    };
}

counters! {
    /// Messages received.
    received,
    /// Handlers that acknowledged their message.
    succeeded,
    /// Handlers that failed, panicked or timed out.
    failed,
    /// Messages made visible again after a failure or a requested retry.
    retried,
    /// Messages whose handler handed the work on in a new message (then deleted).
    continued,
    /// Messages released at shutdown (visibility set to 0) before their handler finished.
    released,
    /// Messages deleted from the queue.
    deleted,
    /// Deletes that failed (the message will be received again: at-least-once).
    delete_failed,
    /// Visibility changes that failed.
    visibility_failed,
    /// Deletes or visibility changes refused because the receipt handle was stale, and
    /// deletes sent after their message's visibility lapsed (heartbeats off), which a
    /// standard queue accepts without a word.
    stale_receipts,
    /// Visibility extensions of long-running handlers.
    heartbeats,
    /// Receive calls that failed.
    receive_errors,
}

impl RunReport {
    /// The exit code of a worker binary after this run: failure when the run ended on a
    /// fatal error, success otherwise ([`StopReason::exit_code`]).
    pub fn exit_code(&self) -> ExitCode {
        self.stop_reason.exit_code()
    }

    /// The exit code of a binary that ran several workers
    /// ([`spotq::run`](crate::run), [`run_all`](crate::shutdown::run_all)): failure when
    /// any of their runs ended on a fatal error, success otherwise.
    pub fn exit_code_of(reports: &[RunReport]) -> ExitCode {
        if reports.iter().any(|report| report.stop_reason.is_fatal()) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// A worker binary's `main` may return the report, or `Result<RunReport, spotq::Error>`
/// (an error that stopped the start exits non-zero too):
///
/// ```
/// use std::time::Duration;
///
/// use spotq::{EmbeddedQueue, Message, RunReport, Worker};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<RunReport, spotq::Error> {
///     // `SqsBackend::from_env("jobs").await?` in a real job.
///     let queue = EmbeddedQueue::new("jobs");
///     queue.send_many(["a", "b", "c"]);
///     // Exits 0 once a receive finds the queue empty, or on SIGTERM.
///     Worker::builder(queue)
///         .exit_after_empty_receives(1)
///         .wait_time(Duration::ZERO)
///         .handler(|_: Message| async {})
///         .run()
///         .await
/// }
/// ```
impl Termination for RunReport {
    fn report(self) -> ExitCode {
        self.exit_code()
    }
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
