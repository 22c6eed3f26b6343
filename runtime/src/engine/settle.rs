//! Settling messages: deletes and visibility changes, gathered into batch calls.
//!
//! Message tasks send their decision to one settle loop, which gathers entries into
//! batches of up to 10 and sends a batch when it is full or when its first entry has
//! waited `flush_interval`. Each batch call runs in its own task, so a slow call does not
//! hold up the next batch. Calls that fail as a whole are retried with backoff; entries
//! that fail on their own are retried when the queue says that may help, and otherwise
//! counted and logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};
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

enum Settle {
    Delete(ReceiptHandle),
    Change(VisibilityChange, ChangeKind),
}

/// The sending side, held by message tasks. The settle loop ends once every `Settler`
/// is dropped and all pending entries are sent.
#[derive(Clone, Debug)]
pub(crate) struct Settler {
    tx: mpsc::UnboundedSender<Settle>,
}

impl Settler {
    pub(crate) fn delete(&self, handle: ReceiptHandle) {
        self.send(Settle::Delete(handle));
    }

    pub(crate) fn change(&self, receipt_handle: ReceiptHandle, timeout: Duration, kind: ChangeKind) {
        let change = VisibilityChange {
            receipt_handle,
            timeout,
        };
        self.send(Settle::Change(change, kind));
    }

    fn send(&self, settle: Settle) {
        // The loop outlives every Settler (it ends when they are all dropped), so a send
        // cannot fail while one exists.
        if self.tx.send(settle).is_err() {
            tracing::error!("settle loop ended early; a delete or visibility change was dropped");
        }
    }
}

/// Starts the settle loop; await the handle after dropping every [`Settler`].
pub(crate) fn spawn(
    backend: Arc<dyn Backend>,
    counters: Arc<Counters>,
    flush_interval: Duration,
) -> (Settler, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(settle_loop(rx, backend, counters, flush_interval));
    (Settler { tx }, task)
}

/// A batch being gathered, with the instant its first entry must be sent by.
struct Pending<T> {
    entries: Vec<T>,
    due: Option<Instant>,
}

impl<T> Pending<T> {
    fn new() -> Self {
        Self {
            entries: Vec::with_capacity(MAX_BATCH),
            due: None,
        }
    }

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

    fn take_if_due(&mut self, now: Instant) -> Option<Vec<T>> {
        self.due.filter(|due| *due <= now).map(|_| self.take())
    }
}

async fn settle_loop(
    mut rx: mpsc::UnboundedReceiver<Settle>,
    backend: Arc<dyn Backend>,
    counters: Arc<Counters>,
    flush_interval: Duration,
) {
    let calls = TaskTracker::new();
    let send = |batch: Batch| {
        calls.spawn(batch.send(Arc::clone(&backend), Arc::clone(&counters)));
    };
    let mut deletes = Pending::new();
    let mut changes = Pending::new();
    let mut received = Vec::with_capacity(64);
    loop {
        let due = match (deletes.due, changes.due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            biased;
            count = rx.recv_many(&mut received, 64) => {
                if count == 0 {
                    break;
                }
                for settle in received.drain(..) {
                    match settle {
                        Settle::Delete(handle) => {
                            if let Some(batch) = deletes.push(handle, flush_interval) {
                                send(Batch::Delete(batch));
                            }
                        }
                        Settle::Change(change, kind) => {
                            if let Some(batch) = changes.push((change, kind), flush_interval) {
                                send(Batch::Change(batch));
                            }
                        }
                    }
                }
            }
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                if let Some(batch) = deletes.take_if_due(now) {
                    send(Batch::Delete(batch));
                }
                if let Some(batch) = changes.take_if_due(now) {
                    send(Batch::Change(batch));
                }
            }
        }
    }
    if !deletes.entries.is_empty() {
        send(Batch::Delete(deletes.take()));
    }
    if !changes.entries.is_empty() {
        send(Batch::Change(changes.take()));
    }
    calls.close();
    calls.wait().await;
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

    fn record_success(&self, index: usize, counters: &Counters) {
        match self {
            Self::Delete(_) => Counters::add(&counters.deleted, 1),
            Self::Change(entries) => {
                if entries[index].1 == ChangeKind::Heartbeat {
                    Counters::add(&counters.heartbeats, 1);
                }
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
        (0..self.len())
            .map(|index| match results.get(index) {
                Some(Ok(())) => {
                    self.record_success(index, counters);
                    false
                }
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
