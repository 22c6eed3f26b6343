//! Settling messages: deletes and visibility changes, gathered into batch calls.
//!
//! Message tasks add their decision to a pending batch (one for deletes, one for
//! visibility changes). The task whose entry fills a batch to 10 sends it; a timer task
//! sends a partial batch once its first entry has waited `flush_interval`. Each batch
//! call runs in its own task, so a slow call holds up nothing else, and under load no
//! task is woken per message. Calls that fail as a whole are retried with backoff;
//! entries that fail on their own are sent again when the queue says that may help, and
//! otherwise counted and logged.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{
    Backend, EntryErrorKind, EntryResult, MAX_BATCH, ReceiptHandle, VisibilityChange,
};
use crate::backoff::CALL_RETRY;
use crate::engine::stats::Counters;
use crate::error::BackendError;

/// Attempts per batch call before its entries are given up (the SDK retries inside each).
const MAX_ATTEMPTS: u32 = 8;

/// Why a visibility changes; decides which counter a success or failure lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Retry,
    Heartbeat,
    Release,
}

/// Gathers settle decisions into batch calls. Cheap to share behind the worker's `Arc`.
#[derive(Debug)]
pub(crate) struct Settler {
    backend: Arc<dyn Backend>,
    counters: Arc<Counters>,
    flush_interval: Duration,
    pending: Mutex<Pending>,
    /// Wakes the timer task when a batch starts while it waits for one.
    batch_started: Notify,
    closed: CancellationToken,
    /// Batch calls in flight, and the timer task.
    calls: TaskTracker,
}

#[derive(Debug, Default)]
struct Pending {
    deletes: Gathering<ReceiptHandle>,
    changes: Gathering<(VisibilityChange, ChangeKind)>,
    /// The timer task waits for a first entry (rather than sleeping until a due time).
    timer_waiting: bool,
}

/// A batch being gathered, with the instant its first entry must be sent by.
#[derive(Debug)]
struct Gathering<T> {
    entries: Vec<T>,
    due: Option<Instant>,
}

impl<T> Default for Gathering<T> {
    fn default() -> Self {
        Self {
            entries: Vec::with_capacity(MAX_BATCH),
            due: None,
        }
    }
}

impl<T> Gathering<T> {
    /// Adds an entry; returns a full batch to send.
    fn push(&mut self, entry: T, flush_interval: Duration) -> Option<Vec<T>> {
        if self.entries.is_empty() {
            self.due = Some(Instant::now() + flush_interval);
        }
        self.entries.push(entry);
        (self.entries.len() == MAX_BATCH).then(|| self.take())
    }

    fn take(&mut self) -> Vec<T> {
        self.due = None;
        std::mem::replace(&mut self.entries, Vec::with_capacity(MAX_BATCH))
    }

    /// Takes the batch if its due time has come (or `all`) and it has entries.
    fn take_due(&mut self, now: Instant, all: bool) -> Option<Vec<T>> {
        let due = self.due.is_some_and(|due| all || due <= now);
        (due && !self.entries.is_empty()).then(|| self.take())
    }
}

impl Settler {
    /// Starts the timer task that sends partial batches.
    pub(crate) fn start(
        backend: Arc<dyn Backend>,
        counters: Arc<Counters>,
        flush_interval: Duration,
    ) -> Arc<Self> {
        let settler = Arc::new(Self {
            backend,
            counters,
            flush_interval,
            pending: Mutex::default(),
            batch_started: Notify::new(),
            closed: CancellationToken::new(),
            calls: TaskTracker::new(),
        });
        settler.calls.spawn(Arc::clone(&settler).flush_on_time());
        settler
    }

    /// Deletes a message (batched).
    pub(crate) fn delete(&self, handle: ReceiptHandle) {
        let full = {
            let mut pending = self.lock();
            let started = pending.deletes.entries.is_empty();
            let full = pending.deletes.push(handle, self.flush_interval);
            self.wake_timer(&mut pending, started);
            full
        };
        if let Some(batch) = full {
            self.send(Batch::Delete(batch));
        }
    }

    /// Changes a message's visibility (batched).
    pub(crate) fn change(
        &self,
        receipt_handle: ReceiptHandle,
        timeout: Duration,
        kind: ChangeKind,
    ) {
        let change = VisibilityChange {
            receipt_handle,
            timeout,
        };
        let full = {
            let mut pending = self.lock();
            let started = pending.changes.entries.is_empty();
            let full = pending.changes.push((change, kind), self.flush_interval);
            self.wake_timer(&mut pending, started);
            full
        };
        if let Some(batch) = full {
            self.send(Batch::Change(batch));
        }
    }

    /// Sends every pending entry and waits for all batch calls to end. Call it once no
    /// task will settle anything more.
    pub(crate) async fn close(&self) {
        self.closed.cancel();
        self.calls.close();
        self.calls.wait().await;
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The lock guards plain data and no code under it panics; a poisoned lock's data
        // is still consistent.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake_timer(&self, pending: &mut Pending, batch_started: bool) {
        if batch_started && pending.timer_waiting {
            pending.timer_waiting = false;
            self.batch_started.notify_one();
        }
    }

    fn send(&self, batch: Batch) {
        self.calls
            .spawn(batch.send(Arc::clone(&self.backend), Arc::clone(&self.counters)));
    }

    /// Sends partial batches when due; at close, sends whatever is left.
    async fn flush_on_time(self: Arc<Self>) {
        loop {
            let closing = self.closed.is_cancelled();
            let (deletes, changes, next_due) = {
                let mut pending = self.lock();
                let now = Instant::now();
                let deletes = pending.deletes.take_due(now, closing);
                let changes = pending.changes.take_due(now, closing);
                let next_due = match (pending.deletes.due, pending.changes.due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                pending.timer_waiting = next_due.is_none();
                (deletes, changes, next_due)
            };
            if let Some(batch) = deletes {
                self.send(Batch::Delete(batch));
            }
            if let Some(batch) = changes {
                self.send(Batch::Change(batch));
            }
            if closing {
                return;
            }
            tokio::select! {
                () = self.closed.cancelled() => {}
                () = self.batch_started.notified(), if next_due.is_none() => {}
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
            }
        }
    }
}

/// One batch call's entries.
enum Batch {
    Delete(Vec<ReceiptHandle>),
    Change(Vec<(VisibilityChange, ChangeKind)>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Self::Delete(entries) => entries.len(),
            Self::Change(entries) => entries.len(),
        }
    }

    async fn call(&self, backend: &dyn Backend) -> Result<Vec<EntryResult>, BackendError> {
        match self {
            Self::Delete(handles) => backend.delete_batch(handles).await,
            Self::Change(entries) => {
                let changes: Vec<VisibilityChange> =
                    entries.iter().map(|(change, _)| change.clone()).collect();
                backend.change_visibility_batch(&changes).await
            }
        }
    }

    /// Keeps the entries whose index `keep` says.
    fn retain(&mut self, keep: &[bool]) {
        let mut index = 0;
        let mut keep_next = || {
            index += 1;
            keep[index - 1]
        };
        match self {
            Self::Delete(entries) => entries.retain(|_| keep_next()),
            Self::Change(entries) => entries.retain(|_| keep_next()),
        }
    }

    /// Counts the entries that succeeded, `ok[i]` for entry `i`.
    fn record_successes(&self, ok: &[bool], counters: &Counters) {
        match self {
            Self::Delete(_) => {
                let deleted = ok.iter().filter(|ok| **ok).count();
                Counters::add(&counters.deleted, deleted as u64);
            }
            Self::Change(entries) => {
                let heartbeats = entries
                    .iter()
                    .zip(ok)
                    .filter(|((_, kind), ok)| **ok && *kind == ChangeKind::Heartbeat)
                    .count();
                Counters::add(&counters.heartbeats, heartbeats as u64);
            }
        }
    }

    fn record_failure(&self, index: usize, error: &dyn std::fmt::Display, counters: &Counters) {
        match self {
            Self::Delete(_) => {
                Counters::add(&counters.delete_failed, 1);
                tracing::warn!(%error, "delete failed; the message will be received again");
            }
            Self::Change(entries) => {
                Counters::add(&counters.visibility_failed, 1);
                let kind = entries[index].1;
                tracing::warn!(%error, ?kind, "visibility change failed");
            }
        }
    }

    /// Sends the batch, retrying what may succeed on a later attempt.
    async fn send(mut self, backend: Arc<dyn Backend>, counters: Arc<Counters>) {
        for attempt in 1..=MAX_ATTEMPTS {
            let last = attempt == MAX_ATTEMPTS;
            match self.call(&*backend).await {
                Ok(results) => {
                    let retry = self.record(&results, last, &counters);
                    if !retry.contains(&true) {
                        return;
                    }
                    self.retain(&retry);
                }
                Err(error) if error.is_retryable() && !last => {
                    tracing::debug!(%error, attempt, "batch call failed; retrying");
                }
                Err(error) => {
                    for index in 0..self.len() {
                        self.record_failure(index, &error, &counters);
                    }
                    return;
                }
            }
            sleep(CALL_RETRY.delay(attempt)).await;
        }
    }

    /// Counts each entry's result; returns which entries to send again.
    fn record(&self, results: &[EntryResult], last: bool, counters: &Counters) -> Vec<bool> {
        let ok: Vec<bool> = (0..self.len())
            .map(|index| matches!(results.get(index), Some(Ok(()))))
            .collect();
        self.record_successes(&ok, counters);
        (0..self.len())
            .map(|index| match results.get(index) {
                Some(Ok(())) => false,
                Some(Err(error)) if error.kind == EntryErrorKind::InvalidReceiptHandle => {
                    // The message was received again elsewhere (its visibility lapsed) or is
                    // gone: nothing to retry, but worth knowing about.
                    Counters::add(&counters.stale_receipts, 1);
                    self.record_failure(index, error, counters);
                    false
                }
                Some(Err(error)) if error.is_retryable() && !last => true,
                Some(Err(error)) => {
                    self.record_failure(index, error, counters);
                    false
                }
                None if !last => true,
                None => {
                    self.record_failure(index, &"no result for this entry", counters);
                    false
                }
            })
            .collect()
    }
}
