//! What a worker did: counters shared by its tasks, and the report it returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by the worker's tasks.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// What a worker did during one run.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct RunReport {
            $($(#[$doc])* pub $name: u64,)*
            /// Wall time from start to the end of shutdown.
            pub elapsed: Duration,
        }

        impl Counters {
            pub(crate) fn report(&self, elapsed: Duration) -> RunReport {
                RunReport {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    elapsed,
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
    /// Deletes or visibility changes refused because the receipt handle was stale.
    stale_receipts,
    /// Visibility extensions of long-running handlers.
    heartbeats,
    /// Receive calls that failed.
    receive_errors,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
