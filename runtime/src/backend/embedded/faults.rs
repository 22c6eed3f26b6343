//! Fault injection: make the embedded queue fail the way SQS fails.
//!
//! Faults are armed per [`Operation`] and consumed by the calls that follow, so a test
//! can say "throttle the next two receives" and then assert, through
//! [`Faults::injected`], that both throttles actually fired. Most faults fail a call
//! before it does anything; a lost response fails it after it did everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{EntryError, EntryErrorKind};
use crate::error::BackendError;

/// A queue operation that faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `ReceiveMessage`.
    Receive,
    /// `DeleteMessageBatch`.
    DeleteBatch,
    /// `ChangeMessageVisibilityBatch`.
    ChangeVisibilityBatch,
    /// `GetQueueAttributes`.
    Attributes,
    /// `SendMessage` (through [`Backend::send`](crate::backend::Backend::send)).
    Send,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Receive,
        Self::DeleteBatch,
        Self::ChangeVisibilityBatch,
        Self::Attributes,
        Self::Send,
    ];

    /// The SQS API name, as errors report it in [`BackendError::operation`].
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Receive => "ReceiveMessage",
            Self::DeleteBatch => "DeleteMessageBatch",
            Self::ChangeVisibilityBatch => "ChangeMessageVisibilityBatch",
            Self::Attributes => "GetQueueAttributes",
            Self::Send => "SendMessage",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Receive => 0,
            Self::DeleteBatch => 1,
            Self::ChangeVisibilityBatch => 2,
            Self::Attributes => 3,
            Self::Send => 4,
        }
    }
}

/// How many faults of each kind fired for one operation. Cumulative:
/// [`Faults::clear`] disarms faults but does not reset these counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectedFaults {
    /// Calls failed with [`BackendError::Throttled`].
    pub throttled: u64,
    /// Calls failed with [`BackendError::Transient`].
    pub failed: u64,
    /// Calls failed with [`BackendError::Rejected`].
    pub rejected: u64,
    /// Batch entries failed with [`EntryErrorKind::Internal`].
    pub failed_entries: u64,
    /// Calls slowed down by an added latency.
    pub delayed: u64,
    /// Calls served whose response was then lost ([`BackendError::Transient`]).
    pub lost: u64,
}

/// The faults armed on one [`EmbeddedQueue`](super::EmbeddedQueue), per operation.
///
/// Obtained with [`EmbeddedQueue::faults`](super::EmbeddedQueue::faults); shared by
/// every clone of the queue. Arming a count replaces what was left of the previous
/// one, so `throttle_next(op, 0)` disarms. When several call faults are armed for one
/// operation, a call consumes only one of them, in the order throttle, transient
/// failure, rejection. A call that fails as a whole changes nothing in the queue,
/// except one whose response is lost ([`lose_next_responses`](Self::lose_next_responses)).
#[derive(Debug, Default)]
pub struct Faults {
    operations: [OperationFaults; 5],
}

#[derive(Debug, Default)]
struct OperationFaults {
    throttle: AtomicU64,
    fail: AtomicU64,
    reject: AtomicU64,
    lose: AtomicU64,
    fail_entries: AtomicU64,
    /// Zero means no added latency.
    latency_nanos: AtomicU64,
    fired: Fired,
}

#[derive(Debug, Default)]
struct Fired {
    throttled: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    failed_entries: AtomicU64,
    delayed: AtomicU64,
    lost: AtomicU64,
}

impl Faults {
    /// Fails the next `calls` calls of `operation` with [`BackendError::Throttled`], as
    /// SQS does when a caller exceeds its request rate.
    pub fn throttle_next(&self, operation: Operation, calls: u64) {
        self.of(operation).throttle.store(calls, Ordering::Release);
    }

    /// Fails the next `calls` calls of `operation` with [`BackendError::Transient`], like
    /// an HTTP 500 or a dropped connection.
    pub fn fail_next(&self, operation: Operation, calls: u64) {
        self.of(operation).fail.store(calls, Ordering::Release);
    }

    /// Fails the next `calls` calls of `operation` with [`BackendError::Rejected`]
    /// (code `AccessDenied`), like a permissions error.
    pub fn reject_next(&self, operation: Operation, calls: u64) {
        self.of(operation).reject.store(calls, Ordering::Release);
    }

    /// Serves the next `calls` calls of `operation`, then fails them with
    /// [`BackendError::Transient`] as if the response were lost on its way back: the
    /// queue did what was asked (a receive's messages are in flight, a delete deleted).
    /// What a retry then finds is what SQS would show it: nothing for a receive of a
    /// standard queue until the visibility timeout lapses; the same messages for a
    /// FIFO receive retried with the same `ReceiveRequestAttemptId`.
    pub fn lose_next_responses(&self, operation: Operation, calls: u64) {
        self.of(operation).lose.store(calls, Ordering::Release);
    }

    /// Fails the next `entries` entries of batch calls of `operation` with an
    /// [`EntryErrorKind::Internal`] entry error (code `InternalError`) inside an
    /// otherwise successful call; a failed entry is not applied.
    ///
    /// Only [`Operation::DeleteBatch`] and [`Operation::ChangeVisibilityBatch`] have
    /// entries: for the other operations this arms nothing that could fire.
    pub fn fail_next_entries(&self, operation: Operation, entries: u64) {
        self.of(operation)
            .fail_entries
            .store(entries, Ordering::Release);
    }

    /// Adds `latency` to every call of `operation` before it does anything, as a tokio
    /// sleep (so paused test time skips it). `None` or zero removes it.
    pub fn set_latency(&self, operation: Operation, latency: Option<Duration>) {
        let nanos = latency.map_or(0, |latency| {
            u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
        });
        self.of(operation)
            .latency_nanos
            .store(nanos, Ordering::Release);
    }

    /// Disarms every fault of every operation and removes added latencies. The counts
    /// of [`injected`](Self::injected) are kept.
    pub fn clear(&self) {
        for faults in &self.operations {
            for armed in [
                &faults.throttle,
                &faults.fail,
                &faults.reject,
                &faults.lose,
                &faults.fail_entries,
                &faults.latency_nanos,
            ] {
                armed.store(0, Ordering::Release);
            }
        }
    }

    /// How many faults fired for `operation` so far.
    pub fn injected(&self, operation: Operation) -> InjectedFaults {
        let fired = &self.of(operation).fired;
        InjectedFaults {
            throttled: fired.throttled.load(Ordering::Acquire),
            failed: fired.failed.load(Ordering::Acquire),
            rejected: fired.rejected.load(Ordering::Acquire),
            failed_entries: fired.failed_entries.load(Ordering::Acquire),
            delayed: fired.delayed.load(Ordering::Acquire),
            lost: fired.lost.load(Ordering::Acquire),
        }
    }

    /// Applies the armed latency, then fails the call if a call fault is armed.
    pub(super) async fn before_call(&self, operation: Operation) -> Result<(), BackendError> {
        let faults = self.of(operation);
        let nanos = faults.latency_nanos.load(Ordering::Acquire);
        if nanos > 0 {
            faults.fired.delayed.fetch_add(1, Ordering::AcqRel);
            tokio::time::sleep(Duration::from_nanos(nanos)).await;
        }
        let name = operation.api_name();
        if take_one(&faults.throttle) {
            faults.fired.throttled.fetch_add(1, Ordering::AcqRel);
            return Err(BackendError::Throttled {
                operation: name,
                message: "Rate exceeded (injected fault)".to_owned(),
            });
        }
        if take_one(&faults.fail) {
            faults.fired.failed.fetch_add(1, Ordering::AcqRel);
            return Err(BackendError::Transient {
                operation: name,
                message: "InternalError: we encountered an internal error (injected fault)"
                    .to_owned(),
                source: None,
            });
        }
        if take_one(&faults.reject) {
            faults.fired.rejected.fetch_add(1, Ordering::AcqRel);
            return Err(BackendError::Rejected {
                operation: name,
                code: "AccessDenied".to_owned(),
                message: "access to the resource is denied (injected fault)".to_owned(),
            });
        }
        Ok(())
    }

    /// Fails a call that was served if a lost response is armed.
    pub(super) fn after_call(&self, operation: Operation) -> Result<(), BackendError> {
        let faults = self.of(operation);
        if !take_one(&faults.lose) {
            return Ok(());
        }
        faults.fired.lost.fetch_add(1, Ordering::AcqRel);
        Err(BackendError::Transient {
            operation: operation.api_name(),
            message: "the response was lost (injected fault)".to_owned(),
            source: None,
        })
    }

    /// The entry error for the next entry of a batch call, if an entry fault is armed.
    pub(super) fn entry_fault(&self, operation: Operation) -> Option<EntryError> {
        let faults = self.of(operation);
        if !take_one(&faults.fail_entries) {
            return None;
        }
        faults.fired.failed_entries.fetch_add(1, Ordering::AcqRel);
        Some(EntryError {
            kind: EntryErrorKind::Internal,
            code: "InternalError".to_owned(),
            message: "we encountered an internal error (injected fault)".to_owned(),
        })
    }

    fn of(&self, operation: Operation) -> &OperationFaults {
        &self.operations[operation.index()]
    }
}

/// Consumes one armed fault, if any. On the hot path nothing is armed and this is a
/// single load: `fetch_update` does not write when the closure declines.
fn take_one(armed: &AtomicU64) -> bool {
    armed
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}
