//! Settling messages: deletes and visibility changes, gathered into batch calls.
//!
//! Message tasks add their decision to a pending batch (one for deletes, one for
//! visibility changes). The task whose entry fills a batch to 10 sends it; a timer task
//! sends a partial batch once its first entry has waited `flush_interval`. Each batch
//! call runs in its own task, so a slow call holds up nothing else, and under load no
//! task is woken per message. Calls that fail as a whole are retried with backoff;
//! entries that fail on their own are sent again when the queue says that may help, and
//! otherwise counted and logged.
//!
//! For one message the latest intent wins. Every visibility change gets a number; a
//! later change or a delete of the same message supersedes it, and a superseded change
//! is dropped, never sent after the one that replaced it: a pending one is taken out of
//! its batch, one waiting to be retried is dropped at its next attempt, and a change is
//! not sent while an earlier call for the same message is still in flight (once that
//! call has been in flight for [`HOLD_BACK_LIMIT`], or the settler has been closing for
//! [`CLOSING_WAIT`], it is sent anyway, and sent again if the earlier call ends after
//! it). So a heartbeat that was throttled cannot land after the message's release and
//! hide it again, and a call that hangs holds no later heartbeat back.
//!
//! At most [`MAX_CALLS_IN_FLIGHT`] batch calls are in flight at once: behind an endpoint
//! that goes silent, batches wait for a call to end (each is bounded by the backend's
//! timeouts) rather than pile up connections.
//!
//! Until its delete, retry or release is applied (or given up), a message is still held
//! by the worker: [`Settler::holding`] counts those messages, for the gauge of what the
//! worker holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{
    Backend, EntryErrorKind, EntryResult, MAX_BATCH, ReceiptHandle, VisibilityChange,
};
use crate::backoff::CALL_RETRY;
use crate::error::BackendError;
use crate::telemetry::stats::Counters;

/// How long, once the settler closes, a change still waits for an earlier call for its
/// message that has not answered, before it is sent anyway (the stop timeout is near).
const CLOSING_WAIT: Duration = Duration::from_millis(500);

/// How long a change waits for an earlier call for its message that has not answered,
/// counted from that call's start, before it is sent anyway (and sent again should the
/// earlier call end after it). An answer takes milliseconds; a call this slow may hang
/// until its timeouts, and a heartbeat held back behind it would let its message lapse.
const HOLD_BACK_LIMIT: Duration = Duration::from_secs(1);

/// The most batch calls in flight at once.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = 64;

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
    /// Wakes the timer task to send the deletes gathered now: a FIFO group waits for one
    /// of them. Other groups' deletes of the same moment go in the same batch.
    flush_deletes: Notify,
    /// Wakes changes waiting for an earlier call for their message to end.
    change_call_ended: Notify,
    /// When [`close`](Self::close) was first called.
    closed_at: std::sync::OnceLock<Instant>,
    /// Entries handed to batch calls and not yet finished (applied, or given up): deletes, visibility changes.
    unfinished: [AtomicU64; 2],
    /// Retries and releases not yet applied or given up: each pending one carries a
    /// [`Holding`] of this count. (Deletes need none: they are never superseded, so the
    /// pending batch and `unfinished` count them exactly.)
    holding: Arc<AtomicUsize>,
    /// Set by [`abandon`](Settler::abandon): what a call in flight answers later is not
    /// counted again (it was counted as failed).
    abandoned: AtomicBool,
    closed: CancellationToken,
    /// Batch calls in flight, and the timer task.
    calls: TaskTracker,
    /// Bounds the batch calls in flight ([`MAX_CALLS_IN_FLIGHT`]).
    call_slots: Semaphore,
}

#[derive(Debug, Default)]
struct Pending {
    deletes: Gathering<ReceiptHandle>,
    /// What callers asked beyond the deletes gathering in `deletes`; the notes go with
    /// the batch the gathering becomes.
    delete_notes: Vec<Noted>,
    changes: Gathering<Change>,
    /// The timer task waits for a first entry (rather than sleeping until a due time).
    timer_waiting: bool,
    /// The latest intent of each message with a visibility change pending, waiting to
    /// be retried or in flight.
    intents: HashMap<ReceiptHandle, Intent>,
    /// The number of the next visibility change.
    next_intent: u64,
}

/// What a delete's caller asked beyond the delete.
#[derive(Debug)]
enum Note {
    /// Tell whether it was applied: `true` once applied, `false` once given up.
    Confirm(oneshot::Sender<bool>),
    /// The message's visibility had lapsed before its delete: a success says nothing of
    /// whether it was deleted (a standard queue accepts a stale receipt handle, and may
    /// keep the message), so it counts as a stale receipt, not as a delete.
    Lapsed,
}

/// A delete's handle and its note.
type Noted = (ReceiptHandle, Note);

/// One visibility change and the number that orders it among its message's intents.
#[derive(Debug)]
struct Change {
    change: VisibilityChange,
    kind: ChangeKind,
    intent: u64,
    /// A retry or a release counts its message as held until the change is dropped
    /// (applied, given up, or superseded); a heartbeat's message is held by its task.
    /// A resend carries none: the change it repeats counted the message.
    #[expect(dead_code, reason = "a guard: only its drop matters")]
    holding: Option<Holding>,
}

/// One message counted in [`Settler::holding`] for as long as this lives.
#[derive(Debug)]
struct Holding(Arc<AtomicUsize>);

impl Holding {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the settler knows of one message's visibility changes.
#[derive(Debug, Default)]
struct Intent {
    /// The number of the latest change, or [`DELETED`].
    latest: u64,
    /// Calls in flight with a change of this message: more than one only once one of
    /// them has been in flight for [`HOLD_BACK_LIMIT`], or the settler is closing (see
    /// [`CLOSING_WAIT`]).
    in_flight: u32,
    /// When the oldest of those calls started.
    in_flight_since: Option<Instant>,
    /// The latest change was applied, or given up.
    latest_done: bool,
    /// The latest change, sent while an earlier call was in flight: sent again if that
    /// call ends last, so the latest intent still wins.
    resend: Option<(Duration, ChangeKind)>,
}

/// The intent of a message that was deleted: every change before it is superseded.
const DELETED: u64 = u64::MAX;

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

impl Pending {
    /// Records `intent` as the latest of the message `handle`, and takes the message's
    /// change waiting in the batch being gathered out of it.
    fn supersede(&mut self, handle: &ReceiptHandle, intent: u64) {
        let in_flight = match self.intents.get_mut(handle) {
            Some(known) => {
                known.latest = intent;
                known.latest_done = false;
                known.resend = None;
                known.in_flight > 0
            }
            None if intent == DELETED => return,
            None => {
                self.intents.insert(
                    handle.clone(),
                    Intent {
                        latest: intent,
                        ..Intent::default()
                    },
                );
                false
            }
        };
        let entries = &mut self.changes.entries;
        if let Some(index) = entries
            .iter()
            .position(|change| change.change.receipt_handle == *handle)
        {
            entries.remove(index);
            if entries.is_empty() {
                self.changes.due = None;
            }
        }
        if intent == DELETED && !in_flight {
            // Nothing of it in flight: a change waiting for a retry finds no intent and
            // is dropped.
            self.intents.remove(handle);
        }
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
            flush_deletes: Notify::new(),
            change_call_ended: Notify::new(),
            closed_at: std::sync::OnceLock::new(),
            unfinished: [AtomicU64::new(0), AtomicU64::new(0)],
            holding: Arc::new(AtomicUsize::new(0)),
            abandoned: AtomicBool::new(false),
            closed: CancellationToken::new(),
            calls: TaskTracker::new(),
            call_slots: Semaphore::new(MAX_CALLS_IN_FLIGHT),
        });
        settler.calls.spawn(Arc::clone(&settler).flush_on_time());
        settler
    }

    /// Deletes a message (batched). Its visibility changes not yet sent are dropped.
    pub(crate) fn delete(self: &Arc<Self>, handle: ReceiptHandle) {
        self.delete_noted(handle, None, false);
    }

    /// Deletes a message whose visibility lapsed before its handler finished: another
    /// consumer may hold it now, so its delete counts as a stale receipt even where the
    /// queue accepts it.
    pub(crate) fn delete_lapsed(self: &Arc<Self>, handle: ReceiptHandle) {
        self.delete_noted(handle, Some(Note::Lapsed), false);
    }

    /// Deletes a message at once (with what gathered before it), and tells whether the
    /// delete was applied (`false`: given up, the message will be received again). A
    /// FIFO group's next message waits for it, so a lost delete never lets the queue
    /// hand the message out again after a later one of its group.
    pub(crate) fn delete_confirmed(
        self: &Arc<Self>,
        handle: ReceiptHandle,
    ) -> oneshot::Receiver<bool> {
        let (confirm, confirmed) = oneshot::channel();
        self.delete_noted(handle, Some(Note::Confirm(confirm)), true);
        confirmed
    }

    /// Adds a delete, with its note, to the gathering batch; sends the batch when full,
    /// closing, or `at_once`.
    fn delete_noted(self: &Arc<Self>, handle: ReceiptHandle, note: Option<Note>, at_once: bool) {
        let mut pending = self.lock();
        if !pending.intents.is_empty() {
            pending.supersede(&handle, DELETED);
        }
        if let Some(note) = note {
            pending.delete_notes.push((handle.clone(), note));
        }
        let started = pending.deletes.entries.is_empty();
        let full = pending.deletes.push(handle, self.flush_interval);
        if full.is_none() && at_once {
            pending.deletes.due = Some(Instant::now());
            self.flush_deletes.notify_one();
        }
        self.wake_timer(&mut pending, started);
        let batch = self.closing_batch(&mut pending.deletes, full);
        if let Some(batch) = batch {
            let notes = std::mem::take(&mut pending.delete_notes);
            self.send(Batch::Delete(batch, notes));
        }
    }

    /// Changes a message's visibility (batched). It supersedes the message's earlier
    /// changes not yet sent.
    pub(crate) fn change(
        self: &Arc<Self>,
        receipt_handle: ReceiptHandle,
        timeout: Duration,
        kind: ChangeKind,
    ) {
        let mut pending = self.lock();
        let intent = pending.next_intent;
        pending.next_intent += 1;
        pending.supersede(&receipt_handle, intent);
        let change = Change {
            change: VisibilityChange {
                receipt_handle,
                timeout,
            },
            kind,
            intent,
            holding: (kind != ChangeKind::Heartbeat).then(|| Holding::new(&self.holding)),
        };
        let started = pending.changes.entries.is_empty();
        let full = pending.changes.push(change, self.flush_interval);
        self.wake_timer(&mut pending, started);
        if let Some(batch) = self.closing_batch(&mut pending.changes, full) {
            self.send(Batch::Change(batch));
        }
    }

    /// Once the settler is closing, its timer has sent its last batches: an entry that
    /// comes later (from a message task that outlived the wait for it) goes out at once
    /// rather than wait for a flush that will not come.
    fn closing_batch<T>(
        &self,
        gathering: &mut Gathering<T>,
        full: Option<Vec<T>>,
    ) -> Option<Vec<T>> {
        if full.is_none() && self.closed.is_cancelled() && !gathering.entries.is_empty() {
            return Some(gathering.take());
        }
        full
    }

    /// Takes the changes of a batch about to be sent: drops those a later intent
    /// superseded and marks the rest in flight. A change whose message has an earlier
    /// call still in flight is held back: it goes on in a batch of its own, which waits
    /// for that call to end, so it holds up none of the others. Waits only when every
    /// change is held back, and only until the earlier call has been in flight for
    /// [`HOLD_BACK_LIMIT`] (or the settler has been closing for [`CLOSING_WAIT`]): a call
    /// that never answers must not hold back a heartbeat until its message lapses, nor
    /// the last releases until the worker exits. Returns how many changes went on in a
    /// batch of their own.
    async fn claim(self: &Arc<Self>, changes: &mut Vec<Change>) -> usize {
        loop {
            let ended = self.change_call_ended.notified();
            tokio::pin!(ended);
            // Registered before the check, so a call ending in between wakes us.
            ended.as_mut().enable();
            // Once the settler has been closing for a moment, a call that has not answered
            // by then holds nothing back any more.
            let now = Instant::now();
            let closing_gave_up_at = self.closed_at.get().map(|closed| *closed + CLOSING_WAIT);
            let closing = closing_gave_up_at.is_some_and(|at| now >= at);
            // The soonest a held-back change stops waiting.
            let mut gave_up_at = closing_gave_up_at;
            {
                let mut pending = self.lock();
                let intents = &mut pending.intents;
                let mut held_back = Vec::new();
                for change in std::mem::take(changes) {
                    match intents.get_mut(&change.change.receipt_handle) {
                        Some(intent) if intent.latest == change.intent => {
                            let stuck_at =
                                intent.in_flight_since.map(|since| since + HOLD_BACK_LIMIT);
                            if intent.in_flight == 0
                                || closing
                                || stuck_at.is_some_and(|at| now >= at)
                            {
                                if intent.in_flight > 0 {
                                    intent.resend = Some((change.change.timeout, change.kind));
                                } else {
                                    intent.in_flight_since = Some(now);
                                }
                                intent.in_flight += 1;
                                changes.push(change);
                            } else {
                                gave_up_at = match (gave_up_at, stuck_at) {
                                    (Some(a), Some(b)) => Some(a.min(b)),
                                    (a, b) => a.or(b),
                                };
                                held_back.push(change);
                            }
                        }
                        // Superseded: a later change or a delete replaced it.
                        _ => {}
                    }
                }
                if changes.is_empty() {
                    *changes = held_back;
                    if changes.is_empty() {
                        return 0;
                    }
                } else {
                    drop(pending);
                    let moved = held_back.len();
                    if moved > 0 {
                        self.send(Batch::Change(held_back));
                    }
                    return moved;
                }
            }
            tokio::select! {
                () = ended => {}
                () = self.closed.cancelled(), if closing_gave_up_at.is_none() => {}
                () = sleep_until(gave_up_at.unwrap_or_else(Instant::now)), if gave_up_at.is_some() => {}
            }
        }
    }

    /// Whether nothing is left to send: no entry gathering for a batch, and none in a
    /// batch call not yet finished.
    pub(crate) fn is_idle(&self) -> bool {
        let pending = self.lock();
        pending.deletes.entries.is_empty()
            && pending.changes.entries.is_empty()
            && self
                .unfinished
                .iter()
                .all(|entries| entries.load(Ordering::Acquire) == 0)
    }

    /// Counts every entry not yet finished as failed: the worker gives up on them (its
    /// stop timeout is at hand). Their messages will be received again.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
        let deletes = self.unfinished[0].swap(0, Ordering::AcqRel);
        let changes = self.unfinished[1].swap(0, Ordering::AcqRel);
        Counters::add(&self.counters.delete_failed, deletes);
        Counters::add(&self.counters.visibility_failed, changes);
        if deletes + changes > 0 {
            tracing::error!(
                deletes,
                visibility_changes = changes,
                "shutdown: given up unsent at the stop timeout"
            );
        }
    }

    /// A change call ended: `done[i]` tells whether change `i` is done (applied, or
    /// given up) rather than to be sent again.
    fn unclaim(self: &Arc<Self>, changes: &[Change], done: &[bool]) {
        let mut resends = Vec::new();
        {
            let mut pending = self.lock();
            for (change, done) in changes.iter().zip(done) {
                let handle = &change.change.receipt_handle;
                let Some(intent) = pending.intents.get_mut(handle) else {
                    continue;
                };
                intent.in_flight = intent.in_flight.saturating_sub(1);
                if intent.in_flight == 0 {
                    intent.in_flight_since = None;
                }
                if *done && intent.latest == change.intent {
                    intent.latest_done = true;
                }
                if intent.in_flight > 0 {
                    continue;
                }
                match intent.resend.take() {
                    // An earlier call ended after the latest one: send the latest again.
                    Some((timeout, kind))
                        if intent.latest != DELETED && change.intent != intent.latest =>
                    {
                        intent.latest_done = false;
                        resends.push(Change {
                            change: VisibilityChange {
                                receipt_handle: handle.clone(),
                                timeout,
                            },
                            kind,
                            intent: intent.latest,
                            holding: None,
                        });
                    }
                    _ if intent.latest == DELETED || intent.latest_done => {
                        pending.intents.remove(handle);
                    }
                    _ => {}
                }
            }
        }
        if !resends.is_empty() {
            self.send(Batch::Change(resends));
        }
        self.change_call_ended.notify_waiters();
    }

    /// Messages whose delete, retry or release is pending or in a call: still held by the
    /// worker, though no task has them any more.
    pub(crate) fn holding(&self) -> usize {
        let pending_deletes = self.lock().deletes.entries.len();
        let deletes =
            usize::try_from(self.unfinished[0].load(Ordering::Acquire)).unwrap_or(usize::MAX);
        pending_deletes
            .saturating_add(deletes)
            .saturating_add(self.holding.load(Ordering::Relaxed))
    }

    /// Sends every pending entry and waits for all batch calls to end. Call it once no
    /// task will settle anything more.
    pub(crate) async fn close(&self) {
        let _ = self.closed_at.set(Instant::now());
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

    /// Sends a batch in a call of its own. Entries taken out of the pending batches are
    /// sent before the lock is let go, so they are always counted in one place or the
    /// other.
    fn send(self: &Arc<Self>, batch: Batch) {
        self.unfinished[batch.kind()].fetch_add(batch.len() as u64, Ordering::AcqRel);
        self.calls.spawn(batch.send(Arc::clone(self)));
    }

    /// Sends partial batches when due; at close, sends whatever is left.
    async fn flush_on_time(self: Arc<Self>) {
        loop {
            let closing = self.closed.is_cancelled();
            let next_due = {
                let mut pending = self.lock();
                let now = Instant::now();
                if let Some(batch) = pending.deletes.take_due(now, closing) {
                    let notes = std::mem::take(&mut pending.delete_notes);
                    self.send(Batch::Delete(batch, notes));
                }
                if let Some(batch) = pending.changes.take_due(now, closing) {
                    self.send(Batch::Change(batch));
                }
                let next_due = match (pending.deletes.due, pending.changes.due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                pending.timer_waiting = next_due.is_none();
                next_due
            };
            if closing {
                return;
            }
            tokio::select! {
                () = self.closed.cancelled() => {}
                () = self.batch_started.notified(), if next_due.is_none() => {}
                () = self.flush_deletes.notified() => {}
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
            }
        }
    }
}

/// One batch call's entries.
enum Batch {
    /// The handles, and what the callers of some of them asked besides.
    Delete(Vec<ReceiptHandle>, Vec<Noted>),
    Change(Vec<Change>),
}

impl Batch {
    /// The index of this batch's kind in [`Settler::unfinished`].
    fn kind(&self) -> usize {
        match self {
            Self::Delete(..) => 0,
            Self::Change(_) => 1,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Delete(entries, _) => entries.len(),
            Self::Change(entries) => entries.len(),
        }
    }

    async fn call(&self, backend: &dyn Backend) -> Result<Vec<EntryResult>, BackendError> {
        match self {
            Self::Delete(handles, _) => backend.delete_batch(handles).await,
            Self::Change(entries) => {
                let changes: Vec<VisibilityChange> =
                    entries.iter().map(|entry| entry.change.clone()).collect();
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
            Self::Delete(entries, _) => entries.retain(|_| keep_next()),
            Self::Change(entries) => entries.retain(|_| keep_next()),
        }
    }

    /// Counts the entries that succeeded, `ok[i]` for entry `i`.
    fn record_successes(&self, ok: &[bool], counters: &Counters) {
        match self {
            Self::Delete(handles, notes) => {
                let lapsed = |handle: &ReceiptHandle| {
                    notes
                        .iter()
                        .any(|(of, note)| of == handle && matches!(note, Note::Lapsed))
                };
                let (mut deleted, mut stale) = (0, 0);
                for (handle, ok) in handles.iter().zip(ok) {
                    match (ok, !notes.is_empty() && lapsed(handle)) {
                        (false, _) => {}
                        (true, false) => deleted += 1,
                        (true, true) => stale += 1,
                    }
                }
                Counters::add(&counters.deleted, deleted);
                Counters::add(&counters.stale_receipts, stale);
            }
            Self::Change(entries) => {
                let heartbeats = entries
                    .iter()
                    .zip(ok)
                    .filter(|(entry, ok)| **ok && entry.kind == ChangeKind::Heartbeat)
                    .count();
                Counters::add(&counters.heartbeats, heartbeats as u64);
            }
        }
    }

    fn record_failure(&self, index: usize, error: &dyn std::fmt::Display, counters: &Counters) {
        match self {
            Self::Delete(..) => {
                Counters::add(&counters.delete_failed, 1);
                tracing::warn!(%error, "delete failed; the message will be received again");
            }
            Self::Change(entries) => {
                Counters::add(&counters.visibility_failed, 1);
                let kind = entries[index].kind;
                tracing::warn!(%error, ?kind, "visibility change failed");
            }
        }
    }

    /// Sends the batch, retrying what may succeed on a later attempt.
    async fn send(mut self, settler: Arc<Settler>) {
        let mut accounted = self.len();
        let kind = self.kind();
        self.attempts(&settler, &mut accounted).await;
        settler.unfinished[kind]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                Some(left.saturating_sub(accounted as u64))
            })
            .ok();
    }

    /// The attempts of [`send`](Self::send); `accounted` drops by the entries that went on
    /// in a batch of their own.
    async fn attempts(&mut self, settler: &Arc<Settler>, accounted: &mut usize) {
        let (backend, counters) = (&*settler.backend, &*settler.counters);
        for attempt in 1..=MAX_ATTEMPTS {
            let last = attempt == MAX_ATTEMPTS;
            if let Self::Change(changes) = self {
                *accounted -= settler.claim(changes).await;
                if changes.is_empty() {
                    return;
                }
            }
            let result = {
                // Never closed, so always granted.
                let _slot = settler.call_slots.acquire().await;
                self.call(backend).await
            };
            if settler.abandoned.load(Ordering::Acquire) {
                // Counted as failed when the worker gave up on it: counted once.
                tracing::debug!(
                    ok = result.is_ok(),
                    "a batch call ended after the stop timeout"
                );
                if let Self::Change(changes) = &*self {
                    settler.unclaim(changes, &vec![true; changes.len()]);
                }
                return;
            }
            let retry = match &result {
                Ok(results) => self.record(results, last, counters),
                Err(error) if error.is_retryable() && !last => {
                    tracing::debug!(%error, attempt, "batch call failed; retrying");
                    vec![true; self.len()]
                }
                Err(error) => {
                    for index in 0..self.len() {
                        self.record_failure(index, error, counters);
                    }
                    vec![false; self.len()]
                }
            };
            match self {
                Self::Change(changes) => {
                    let done: Vec<bool> = retry.iter().map(|retry| !retry).collect();
                    settler.unclaim(changes, &done);
                }
                Self::Delete(handles, notes) if !notes.is_empty() => {
                    let applied = |index: usize| matches!(&result, Ok(results) if matches!(results.get(index), Some(Ok(()))));
                    for (index, handle) in handles.iter().enumerate() {
                        if retry[index] {
                            continue;
                        }
                        if let Some(at) = notes.iter().position(|(of, _)| of == handle)
                            && let (_, Note::Confirm(confirm)) = notes.swap_remove(at)
                        {
                            let _ = confirm.send(applied(index));
                        }
                    }
                }
                Self::Delete(..) => {}
            }
            if !retry.contains(&true) {
                return;
            }
            self.retain(&retry);
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::EmbeddedQueue;
    use crate::backend::embedded::Operation;
    use crate::backend::{Intercept, Intercepted, ReceiveRequest};

    async fn receive_one(queue: &EmbeddedQueue) -> ReceiptHandle {
        let request = ReceiveRequest {
            max_messages: 1,
            wait_time: Duration::ZERO,
            visibility_timeout: Some(Duration::from_secs(30)),
            attempt_id: None,
        };
        let mut received = queue.receive(request).await.expect("receive");
        received.pop().expect("a message").receipt_handle
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_that_comes_after_close_is_sent_not_left_behind() {
        let queue = EmbeddedQueue::new("late");
        queue.send("a");
        let handle = receive_one(&queue).await;
        let settler = Settler::start(
            Arc::new(queue.clone()),
            Arc::default(),
            Duration::from_millis(5),
        );
        settler.close().await;
        settler.delete(handle);
        settler.close().await;
        assert_eq!(queue.counts().total(), 0, "the late delete was sent");
    }

    /// The embedded queue, with every delete batch taking 10 s to answer.
    #[derive(Debug)]
    struct SlowDeletes(EmbeddedQueue);

    #[async_trait]
    impl Intercept for SlowDeletes {
        type Inner = EmbeddedQueue;

        fn inner(&self) -> &EmbeddedQueue {
            &self.0
        }

        async fn delete_batch(
            &self,
            handles: &[ReceiptHandle],
        ) -> Result<Vec<EntryResult>, BackendError> {
            sleep(Duration::from_secs(10)).await;
            self.0.delete_batch(handles).await
        }
    }

    /// The embedded queue whose first visibility change call never answers.
    #[derive(Debug)]
    struct FirstChangeHangs(EmbeddedQueue, std::sync::atomic::AtomicBool);

    #[async_trait]
    impl Intercept for FirstChangeHangs {
        type Inner = EmbeddedQueue;

        fn inner(&self) -> &EmbeddedQueue {
            &self.0
        }

        async fn change_visibility_batch(
            &self,
            changes: &[VisibilityChange],
        ) -> Result<Vec<EntryResult>, BackendError> {
            if !self.1.swap(true, Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.0.change_visibility_batch(changes).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_call_that_never_answers_does_not_hold_back_the_next_one() {
        let queue = EmbeddedQueue::new("hung-heartbeat");
        queue.send("a");
        let handle = receive_one(&queue).await; // invisible for 30 s
        let settler = Settler::start(
            Arc::new(Intercepted(FirstChangeHangs(
                queue.clone(),
                AtomicBool::new(false),
            ))),
            Arc::default(),
            Duration::from_millis(5),
        );
        let heartbeat = Duration::from_secs(30);
        settler.change(handle.clone(), heartbeat, ChangeKind::Heartbeat);
        sleep(Duration::from_secs(15)).await; // the first call hangs
        settler.change(handle, heartbeat, ChangeKind::Heartbeat);
        sleep(Duration::from_secs(25)).await;
        assert_eq!(
            queue.counts().visible,
            0,
            "40 s after the receive: extended at 15 s to 45 s"
        );
        sleep(Duration::from_secs(10)).await;
        assert_eq!(queue.counts().visible, 1, "and no further");
    }

    /// The embedded queue whose delete calls never answer, counting those in flight.
    #[derive(Debug, Default)]
    struct SilentDeletes(AtomicUsize);

    #[async_trait]
    impl Intercept for SilentDeletes {
        type Inner = EmbeddedQueue;

        fn inner(&self) -> &EmbeddedQueue {
            unreachable!("only delete_batch is called")
        }

        async fn delete_batch(
            &self,
            _handles: &[ReceiptHandle],
        ) -> Result<Vec<EntryResult>, BackendError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batch_calls_in_flight_are_bounded_behind_a_silent_endpoint() {
        let silent = Arc::new(SilentDeletes::default());
        let settler = Settler::start(
            Arc::new(Intercepted(Arc::clone(&silent))),
            Arc::default(),
            Duration::from_millis(5),
        );
        for n in 0..10 * (MAX_CALLS_IN_FLIGHT + 36) {
            settler.delete(ReceiptHandle::new(format!("handle-{n}")));
        }
        sleep(Duration::from_secs(60)).await;
        assert_eq!(silent.0.load(Ordering::SeqCst), MAX_CALLS_IN_FLIGHT);
        assert_eq!(settler.holding(), 10 * (MAX_CALLS_IN_FLIGHT + 36));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_message_s_delete_counts_as_stale_even_when_accepted() {
        let queue = EmbeddedQueue::new("lapsed");
        queue.send_many(["a", "b"]);
        let (a, b) = (receive_one(&queue).await, receive_one(&queue).await);
        let counters = Arc::new(Counters::default());
        let settler = Settler::start(
            Arc::new(queue.clone()),
            Arc::clone(&counters),
            Duration::from_millis(5),
        );
        settler.delete_lapsed(a);
        settler.delete(b);
        settler.close().await;
        assert_eq!(queue.counts().total(), 0, "both accepted");
        let counted = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        assert_eq!(
            (
                counted(&counters.deleted),
                counted(&counters.stale_receipts)
            ),
            (1, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_answers_after_it_was_abandoned_is_counted_once() {
        let queue = EmbeddedQueue::new("abandoned");
        queue.send("a");
        let handle = receive_one(&queue).await;
        let counters = Arc::new(Counters::default());
        let settler = Settler::start(
            Arc::new(Intercepted(SlowDeletes(queue.clone()))),
            Arc::clone(&counters),
            Duration::from_millis(5),
        );
        settler.delete(handle);
        sleep(Duration::from_secs(1)).await;
        settler.abandon();
        settler.close().await;
        assert_eq!(queue.counts().total(), 0, "the call did go through");
        let counted = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        assert_eq!(
            (counted(&counters.deleted), counted(&counters.delete_failed)),
            (0, 1),
            "given up at the stop timeout: counted failed, once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deletes_retries_and_releases_are_held_until_applied_heartbeats_are_not() {
        let queue = EmbeddedQueue::new("holding");
        queue.send_many(["a", "b", "c"]);
        let (a, b, c) = (
            receive_one(&queue).await,
            receive_one(&queue).await,
            receive_one(&queue).await,
        );
        let settler = Settler::start(
            Arc::new(queue.clone()),
            Arc::default(),
            Duration::from_millis(5),
        );
        settler.change(a.clone(), Duration::from_secs(600), ChangeKind::Heartbeat);
        assert_eq!(settler.holding(), 0, "a heartbeat's message is its task's");
        settler.change(a, Duration::ZERO, ChangeKind::Release);
        settler.change(b, Duration::from_secs(30), ChangeKind::Retry);
        settler.delete(c);
        assert_eq!(settler.holding(), 3, "the release replaced the heartbeat");
        settler.close().await;
        assert_eq!(settler.holding(), 0);
        assert_eq!(queue.counts().visible, 1, "the release was applied");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_waiting_for_a_retry_is_dropped_once_a_later_one_supersedes_it() {
        let queue = EmbeddedQueue::new("superseded");
        queue.send("a");
        let handle = receive_one(&queue).await;
        let settler = Settler::start(
            Arc::new(queue.clone()),
            Arc::default(),
            Duration::from_millis(5),
        );
        queue
            .faults()
            .throttle_next(Operation::ChangeVisibilityBatch, 1);
        settler.change(
            handle.clone(),
            Duration::from_secs(600),
            ChangeKind::Heartbeat,
        );
        // Sent at 5 ms, throttled, retried 25–50 ms later; the release comes between.
        sleep(Duration::from_millis(10)).await;
        settler.change(handle, Duration::ZERO, ChangeKind::Release);
        settler.close().await;
        assert_eq!(
            queue
                .faults()
                .injected(Operation::ChangeVisibilityBatch)
                .throttled,
            1
        );
        assert_eq!(queue.counts().visible, 1, "the release won");
        assert_eq!(
            queue.stats().change_visibility_batch_entries,
            2,
            "the heartbeat's retry was dropped"
        );
    }

    /// A queue whose visibility calls take `latency`, and which counts calls for one
    /// message that overlap.
    #[derive(Debug)]
    struct Overlaps {
        queue: EmbeddedQueue,
        latency: Duration,
        in_flight: Mutex<HashSet<ReceiptHandle>>,
        /// Calls that began while another for one of their messages was in flight.
        overlaps: AtomicU64,
        /// Each call's start and its changes.
        calls: Mutex<Vec<Call>>,
    }

    /// When a visibility call started, and its changes.
    type Call = (Instant, Vec<(ReceiptHandle, Duration)>);

    impl Overlaps {
        fn new(queue: &EmbeddedQueue, latency: Duration) -> Arc<Self> {
            Arc::new(Self {
                queue: queue.clone(),
                latency,
                in_flight: Mutex::default(),
                overlaps: AtomicU64::new(0),
                calls: Mutex::default(),
            })
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().expect("calls").clone()
        }
    }

    #[async_trait]
    impl Intercept for Overlaps {
        type Inner = EmbeddedQueue;

        fn inner(&self) -> &EmbeddedQueue {
            &self.queue
        }

        async fn change_visibility_batch(
            &self,
            changes: &[VisibilityChange],
        ) -> Result<Vec<EntryResult>, BackendError> {
            self.calls.lock().expect("calls").push((
                Instant::now(),
                changes
                    .iter()
                    .map(|change| (change.receipt_handle.clone(), change.timeout))
                    .collect(),
            ));
            for change in changes {
                let fresh = self
                    .in_flight
                    .lock()
                    .expect("in flight")
                    .insert(change.receipt_handle.clone());
                if !fresh {
                    self.overlaps.fetch_add(1, Ordering::SeqCst);
                }
            }
            sleep(self.latency).await;
            let results = self.queue.change_visibility_batch(changes).await;
            let mut in_flight = self.in_flight.lock().expect("in flight");
            for change in changes {
                in_flight.remove(&change.receipt_handle);
            }
            results
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_waits_while_an_earlier_call_for_its_message_is_in_flight() {
        let queue = EmbeddedQueue::new("in-flight");
        queue.send_many(["a", "b"]);
        let (a, b) = (receive_one(&queue).await, receive_one(&queue).await);
        let backend = Overlaps::new(&queue, Duration::from_millis(500));
        let settler = Settler::start(
            Arc::new(Intercepted(Arc::clone(&backend))) as Arc<dyn Backend>,
            Arc::default(),
            Duration::from_millis(5),
        );
        let started = Instant::now();
        settler.change(a.clone(), Duration::from_secs(600), ChangeKind::Heartbeat);
        sleep(Duration::from_millis(100)).await; // a's heartbeat is in flight
        // One batch: a's release must wait for a's heartbeat; b's must not.
        settler.change(a.clone(), Duration::ZERO, ChangeKind::Release);
        settler.change(b.clone(), Duration::ZERO, ChangeKind::Release);
        sleep(Duration::from_secs(2)).await;
        settler.close().await;
        let calls: Vec<(u128, Vec<(ReceiptHandle, Duration)>)> = backend
            .calls()
            .into_iter()
            .map(|(at, changes)| ((at - started).as_millis(), changes))
            .collect();
        assert_eq!(
            calls,
            [
                (5, vec![(a.clone(), Duration::from_secs(600))]),
                (105, vec![(b, Duration::ZERO)]),
                (505, vec![(a, Duration::ZERO)]),
            ],
            "b's release went out at once, a's after a's heartbeat call ended"
        );
        assert_eq!(backend.overlaps.load(Ordering::SeqCst), 0);
        assert_eq!(queue.counts().visible, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_holds_a_later_change_back_only_for_the_hold_back_limit() {
        let queue = EmbeddedQueue::new("hung");
        queue.send("a");
        let a = receive_one(&queue).await;
        let backend = Overlaps::new(&queue, Duration::from_secs(3600));
        let counters = Arc::new(Counters::default());
        let settler = Settler::start(
            Arc::new(Intercepted(Arc::clone(&backend))) as Arc<dyn Backend>,
            Arc::clone(&counters),
            Duration::from_millis(5),
        );
        settler.change(a.clone(), Duration::from_secs(600), ChangeKind::Heartbeat);
        sleep(Duration::from_millis(100)).await; // the heartbeat's call hangs
        settler.change(a, Duration::ZERO, ChangeKind::Release);
        sleep(Duration::from_millis(500)).await;
        assert_eq!(
            backend.calls().len(),
            1,
            "the release waits for the earlier call for a while"
        );
        sleep(Duration::from_secs(1)).await;
        let calls = backend.calls();
        assert_eq!(calls.len(), 2, "then goes out, the settler still open");
        assert_eq!(
            calls[1].0 - calls[0].0,
            HOLD_BACK_LIMIT,
            "once the earlier call had been in flight for the limit"
        );
        assert_eq!(calls[1].1[0].1, Duration::ZERO);
        let closing = tokio::time::timeout(Duration::from_secs(2), settler.close()).await;
        assert!(closing.is_err(), "both calls hang");
        settler.abandon();
        assert_eq!(
            counters.visibility_failed.load(Ordering::Relaxed),
            2,
            "both unfinished changes are counted as failed"
        );
    }
}
