//! The message store of one embedded queue: the SQS state machine, without locks,
//! clocks or async. The queue holds it behind one mutex and passes `now` in.
//!
//! A message is delayed, visible, or in flight. Messages live in a slab (`entries`, with
//! a free list); two indexes point into it: `ready`, the visible messages oldest first,
//! and `timers`, a min-heap of the deadlines of delayed and in-flight messages. Every
//! state change gives the message a fresh `stamp`; an index entry whose stamp no longer
//! matches is stale and skipped when it surfaces (lazy invalidation), so no operation
//! has to search an index. Stale entries are compacted away once they outnumber live
//! ones, which keeps each operation O(batch · log n) amortized and memory bounded.
//!
//! A FIFO queue leaves `ready` empty: its visible messages are ordered by their groups
//! (see [`super::fifo`]), and its receives serve groups instead (`store/fifo.rs`).
//! Everything else is shared: states, entries, timers, stamps, counts.

mod fifo;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::fifo::{Entry, Fifo, FifoSend, Tag};
use super::ids::MessageId;
use super::stats::RequestStats;
use crate::backend::{MAX_VISIBILITY, MessageAttribute, QueueCounts, ReceiveAttemptId};

/// User attributes of a message; `None` when there are none, to skip an allocation.
pub(super) type UserAttributes = Option<Arc<HashMap<String, MessageAttribute>>>;

/// Stale index entries tolerated beyond the live ones before compacting.
const COMPACT_SLACK: usize = 1024;

/// A message as it enters a queue.
pub(super) struct NewMessage {
    pub(super) id: MessageId,
    pub(super) body: Arc<str>,
    pub(super) attributes: UserAttributes,
    /// `SentTimestamp`, epoch millis.
    pub(super) sent_at_ms: u64,
    /// Visible at once when zero.
    pub(super) delay: Duration,
    /// Group and deduplication id, on a FIFO queue.
    pub(super) fifo: Option<FifoSend>,
}

/// A message held by the store.
pub(super) struct StoredMessage {
    id: MessageId,
    body: Arc<str>,
    attributes: UserAttributes,
    sent_at_ms: u64,
    /// `ApproximateFirstReceiveTimestamp`, epoch millis; meaningless before a receive.
    first_received_at_ms: u64,
    receive_count: u32,
    /// The current receive; `None` before the first one.
    receipt: Option<Receipt>,
    /// Changes with every state change; index entries carry the stamp they were made for.
    stamp: u64,
    state: State,
    /// Group, deduplication id and sequence number, on a FIFO queue.
    fifo: Option<Arc<Tag>>,
}

#[derive(Clone, Copy)]
struct Receipt {
    token: u64,
    /// When the receive happened: the 12 h visibility cap counts from here.
    at: Instant,
}

#[derive(Clone, Copy)]
enum State {
    Delayed,
    Visible,
    InFlight,
}

/// What a receive takes out of the store to build a
/// [`ReceivedMessage`](crate::backend::ReceivedMessage) after the lock is released.
pub(super) struct HandedOut {
    pub(super) id: MessageId,
    pub(super) body: Arc<str>,
    pub(super) attributes: UserAttributes,
    pub(super) sent_at_ms: u64,
    pub(super) first_received_at_ms: u64,
    pub(super) receive_count: u32,
    pub(super) index: usize,
    pub(super) token: u64,
    pub(super) fifo: Option<Arc<Tag>>,
}

/// Why a change of visibility was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChangeError {
    /// The handle is not the message's current one, or the message is gone.
    InvalidHandle,
    /// The new deadline would be more than 12 h after the receive.
    PastCap,
}

/// A deadline in the timer heap; ordered by time, then by stamp (age).
type Timer = Reverse<(Instant, u64, usize)>;

/// The state machine. See the module docs.
#[derive(Default)]
pub(super) struct Store {
    entries: Vec<Option<StoredMessage>>,
    free: Vec<usize>,
    /// `(index, stamp)` of visible messages, in the order they became visible.
    ready: VecDeque<(usize, u64)>,
    timers: BinaryHeap<Timer>,
    /// The last stamp handed out; stamps double as receive tokens, so neither repeats.
    last_stamp: u64,
    counts: QueueCounts,
    pub(super) stats: RequestStats,
    /// Groups, deduplication and receive attempts, on a FIFO queue.
    fifo: Option<Fifo>,
}

impl Store {
    /// The store of a FIFO queue.
    pub(super) fn fifo() -> Self {
        Self {
            fifo: Some(Fifo::default()),
            ..Self::default()
        }
    }

    /// The message a FIFO queue took with `deduplication_id` in the last 5 minutes: a
    /// send with that id is a duplicate of it.
    pub(super) fn original(&mut self, now: Instant, deduplication_id: &str) -> Option<MessageId> {
        self.fifo
            .as_mut()
            .and_then(|fifo| fifo.deduplication.original(now, deduplication_id))
    }

    /// Adds a message; returns whether long polls should look again. On a FIFO queue,
    /// the message joins the end of its group and its deduplication id is remembered.
    pub(super) fn push(&mut self, message: NewMessage, now: Instant) -> bool {
        let stamp = self.next_stamp();
        let (state, deadline) = if message.delay.is_zero() {
            (State::Visible, None)
        } else {
            (State::Delayed, Some(now + message.delay))
        };
        let tag = self.fifo.as_mut().map(|fifo| {
            let send = message.fifo.unwrap_or_else(FifoSend::unchecked);
            fifo.deduplication
                .record(now, &send.deduplication_id, message.id);
            fifo.tag(send.group, send.deduplication_id)
        });
        let index = self.insert(StoredMessage {
            id: message.id,
            body: message.body,
            attributes: message.attributes,
            sent_at_ms: message.sent_at_ms,
            first_received_at_ms: 0,
            receive_count: 0,
            receipt: None,
            stamp,
            state,
            fifo: tag.clone(),
        });
        self.join_group(tag.as_ref(), index, deadline.is_none());
        match deadline {
            None => {
                self.counts.visible += 1;
                if self.fifo.is_none() {
                    self.ready.push_back((index, stamp));
                }
                true
            }
            Some(deadline) => {
                self.counts.delayed += 1;
                self.schedule(deadline, stamp, index)
            }
        }
    }

    /// Receives up to `max` visible messages into `out`, oldest first (on a FIFO queue,
    /// group by group: see `receive_fifo`, which also answers a retried `attempt`).
    ///
    /// With `max_receive_count`, a message already received that many times is moved
    /// into `dead_letters` instead (removed from this store). Returns whether long polls
    /// should look again because an earlier deadline now exists.
    #[allow(clippy::too_many_arguments)] // One call site; a parameter struct would only rename them.
    pub(super) fn receive(
        &mut self,
        now: Instant,
        now_ms: u64,
        max: usize,
        visibility: Duration,
        max_receive_count: Option<u32>,
        attempt: Option<ReceiveAttemptId>,
        out: &mut Vec<HandedOut>,
        dead_letters: &mut Vec<StoredMessage>,
    ) -> bool {
        if self.fifo.is_some() {
            return self.receive_fifo(
                now,
                now_ms,
                max,
                visibility,
                max_receive_count,
                attempt,
                out,
                dead_letters,
            );
        }
        self.promote(now);
        let mut wake = false;
        while out.len() < max {
            let Some((index, stamp)) = self.ready.pop_front() else {
                break;
            };
            let Some(message) = live_mut(&mut self.entries, index, stamp) else {
                continue;
            };
            if max_receive_count.is_some_and(|max| message.receive_count >= max) {
                if let Some(message) = self.remove(index) {
                    self.counts.visible -= 1;
                    self.stats.messages_dead_lettered += 1;
                    dead_letters.push(message);
                }
                continue;
            }
            self.last_stamp += 1;
            let token = self.last_stamp;
            hand_out(message, token, now, now_ms);
            out.push(delivery(message, index, token));
            self.counts.visible -= 1;
            self.counts.not_visible += 1;
            wake |= self.schedule(now + visibility, token, index);
        }
        self.stats.messages_received += out.len() as u64;
        self.compact_ready();
        wake
    }

    /// Takes in messages moved here from another queue's redrive: visible at once, with
    /// their id, body, attributes and sent time, and a fresh receive count. On a FIFO
    /// queue they keep their group and deduplication id, in the order they came, with
    /// sequence numbers of this queue.
    pub(super) fn accept_dead_letters(&mut self, messages: Vec<StoredMessage>) {
        for message in messages {
            let stamp = self.next_stamp();
            let tag = self.fifo.as_mut().map(|fifo| {
                let (group, deduplication_id) = match &message.fifo {
                    Some(tag) => (Arc::clone(&tag.group), Arc::clone(&tag.deduplication_id)),
                    None => {
                        let send = FifoSend::unchecked();
                        (send.group, send.deduplication_id)
                    }
                };
                fifo.tag(group, deduplication_id)
            });
            let index = self.insert(StoredMessage {
                first_received_at_ms: 0,
                receive_count: 0,
                receipt: None,
                stamp,
                state: State::Visible,
                fifo: tag.clone(),
                ..message
            });
            self.counts.visible += 1;
            self.join_group(tag.as_ref(), index, true);
            if self.fifo.is_none() {
                self.ready.push_back((index, stamp));
            }
        }
    }

    /// Deletes the message if `token` is its current receive; returns it so the caller
    /// can drop it (and free its body) after releasing the lock.
    pub(super) fn delete(
        &mut self,
        now: Instant,
        index: usize,
        token: u64,
    ) -> Option<StoredMessage> {
        self.promote(now);
        self.current(index, token)?;
        let message = self.remove(index)?;
        match message.state {
            State::Visible => self.counts.visible -= 1,
            State::InFlight => self.counts.not_visible -= 1,
            State::Delayed => self.counts.delayed -= 1,
        }
        if let (Some(fifo), Some(tag)) = (&mut self.fifo, &message.fifo) {
            let in_flight = matches!(message.state, State::InFlight);
            fifo.groups.removed(&tag.group, in_flight);
        }
        self.stats.messages_deleted += 1;
        self.compact_timers();
        self.compact_ready();
        Some(message)
    }

    /// Sets the message's visibility timeout to `timeout` from `now`; zero makes it
    /// visible at once. Returns whether long polls should look again.
    pub(super) fn change_visibility(
        &mut self,
        now: Instant,
        index: usize,
        token: u64,
        timeout: Duration,
    ) -> Result<bool, ChangeError> {
        self.promote(now);
        let receipt = self
            .current(index, token)
            .ok_or(ChangeError::InvalidHandle)?;
        if now.saturating_duration_since(receipt.at) + timeout > MAX_VISIBILITY {
            return Err(ChangeError::PastCap);
        }
        let stamp = self.next_stamp();
        let Some(message) = self.entries.get_mut(index).and_then(Option::as_mut) else {
            return Err(ChangeError::InvalidHandle);
        };
        let was = message.state;
        message.stamp = stamp;
        match was {
            State::Visible => self.counts.visible -= 1,
            State::InFlight => self.counts.not_visible -= 1,
            State::Delayed => self.counts.delayed -= 1,
        }
        let wake = if timeout.is_zero() {
            message.state = State::Visible;
            self.counts.visible += 1;
            let was_in_flight = matches!(was, State::InFlight);
            made_visible(
                &mut self.ready,
                &mut self.fifo,
                message,
                index,
                was_in_flight,
            );
            true
        } else {
            message.state = State::InFlight;
            self.counts.not_visible += 1;
            if let (Some(fifo), Some(tag), State::Visible) = (&mut self.fifo, &message.fifo, was) {
                fifo.groups.hidden(&tag.group);
            }
            self.schedule(now + timeout, stamp, index)
        };
        self.compact_timers();
        self.compact_ready();
        Ok(wake)
    }

    /// The counts as of `now`.
    pub(super) fn counts(&mut self, now: Instant) -> QueueCounts {
        self.promote(now);
        self.counts
    }

    /// The earliest deadline at which a message may become visible.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        // Drop stale tops so a long poll does not wake for a message already deleted.
        while let Some(&Reverse((at, stamp, index))) = self.timers.peek() {
            if is_live(&self.entries, index, stamp) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Makes every message whose delay or visibility timeout has passed visible.
    fn promote(&mut self, now: Instant) {
        while let Some(&Reverse((at, stamp, index))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(message) = live_mut(&mut self.entries, index, stamp) else {
                continue;
            };
            self.last_stamp += 1;
            let next = self.last_stamp;
            let was = message.state;
            message.state = State::Visible;
            message.stamp = next;
            match was {
                State::Delayed => self.counts.delayed -= 1,
                State::InFlight => self.counts.not_visible -= 1,
                // A timer is only ever live for a delayed or in-flight message.
                State::Visible => self.counts.visible -= 1,
            }
            self.counts.visible += 1;
            let was_in_flight = matches!(was, State::InFlight);
            made_visible(
                &mut self.ready,
                &mut self.fifo,
                message,
                index,
                was_in_flight,
            );
        }
    }

    /// On a FIFO queue, lists a message that just entered the store in its group.
    fn join_group(&mut self, tag: Option<&Arc<Tag>>, index: usize, visible: bool) {
        if let (Some(fifo), Some(tag)) = (&mut self.fifo, tag) {
            let entry = Entry {
                index,
                sequence: tag.sequence,
            };
            fifo.groups.add(&tag.group, entry, visible);
        }
    }

    /// The receipt of the message in `index` if `token` is its current receive.
    fn current(&self, index: usize, token: u64) -> Option<Receipt> {
        self.entries
            .get(index)
            .and_then(Option::as_ref)
            .and_then(|message| message.receipt)
            .filter(|receipt| receipt.token == token)
    }

    /// Adds a deadline; returns whether it is now the earliest, which a long poll
    /// sleeping until the previous earliest would otherwise miss.
    fn schedule(&mut self, at: Instant, stamp: u64, index: usize) -> bool {
        let earliest = self
            .timers
            .peek()
            .is_none_or(|&Reverse((first, _, _))| at < first);
        self.timers.push(Reverse((at, stamp, index)));
        earliest
    }

    fn next_stamp(&mut self) -> u64 {
        self.last_stamp += 1;
        self.last_stamp
    }

    fn insert(&mut self, message: StoredMessage) -> usize {
        match self.free.pop() {
            Some(index) => {
                if let Some(free) = self.entries.get_mut(index) {
                    *free = Some(message);
                    return index;
                }
                // The free list only holds entries below `entries.len()`; if that ever broke,
                // appending still stores the message correctly.
                self.entries.push(Some(message));
                self.entries.len() - 1
            }
            None => {
                self.entries.push(Some(message));
                self.entries.len() - 1
            }
        }
    }

    fn remove(&mut self, index: usize) -> Option<StoredMessage> {
        let message = self.entries.get_mut(index)?.take()?;
        self.free.push(index);
        Some(message)
    }

    /// Rebuilds the timer heap once stale entries outnumber live ones: every deleted
    /// in-flight message leaves one behind until its old deadline passes, which at a
    /// high rate and a long visibility timeout would otherwise pile up to millions.
    fn compact_timers(&mut self) {
        let live = (self.counts.not_visible + self.counts.delayed) as usize;
        if self.timers.len() > 2 * live + COMPACT_SLACK {
            let entries = &self.entries;
            self.timers
                .retain(|&Reverse((_, stamp, index))| is_live(entries, index, stamp));
        }
    }

    /// Like [`compact_timers`](Self::compact_timers), for messages deleted or hidden
    /// again while visible.
    fn compact_ready(&mut self) {
        let live = self.counts.visible as usize;
        if self.ready.len() > 2 * live + COMPACT_SLACK {
            let entries = &self.entries;
            self.ready
                .retain(|&(index, stamp)| is_live(entries, index, stamp));
        }
    }

    #[cfg(test)]
    fn index_sizes(&self) -> (usize, usize) {
        (self.ready.len(), self.timers.len())
    }
}

/// Makes a message that just became visible receivable: a standard queue appends it to
/// `ready`; a FIFO queue (whose group already lists it) offers its group, now that it
/// has a visible message and maybe nothing in flight any more.
fn made_visible(
    ready: &mut VecDeque<(usize, u64)>,
    fifo: &mut Option<Fifo>,
    message: &StoredMessage,
    index: usize,
    was_in_flight: bool,
) {
    match (fifo, &message.fifo) {
        (Some(fifo), Some(tag)) => fifo.groups.became_visible(&tag.group, was_in_flight),
        _ => ready.push_back((index, message.stamp)),
    }
}

/// Moves a visible message in flight under a new receive.
fn hand_out(message: &mut StoredMessage, token: u64, now: Instant, now_ms: u64) {
    message.receive_count = message.receive_count.saturating_add(1);
    if message.receipt.is_none() {
        message.first_received_at_ms = now_ms;
    }
    message.receipt = Some(Receipt { token, at: now });
    message.stamp = token;
    message.state = State::InFlight;
}

/// What a receive of the message in `index` under `token` hands out.
fn delivery(message: &StoredMessage, index: usize, token: u64) -> HandedOut {
    HandedOut {
        id: message.id,
        body: Arc::clone(&message.body),
        attributes: message.attributes.clone(),
        sent_at_ms: message.sent_at_ms,
        first_received_at_ms: message.first_received_at_ms,
        receive_count: message.receive_count,
        index,
        token,
        fifo: message.fifo.clone(),
    }
}

/// The message in `index` if the index entry with `stamp` still describes it. A free
/// function over the slab, so callers can still update the store's other fields.
fn live_mut(
    entries: &mut [Option<StoredMessage>],
    index: usize,
    stamp: u64,
) -> Option<&mut StoredMessage> {
    entries
        .get_mut(index)
        .and_then(Option::as_mut)
        .filter(|message| message.stamp == stamp)
}

/// Whether the index entry with `stamp` still describes the message in `index`.
fn is_live(entries: &[Option<StoredMessage>], index: usize, stamp: u64) -> bool {
    entries
        .get(index)
        .and_then(Option::as_ref)
        .is_some_and(|message| message.stamp == stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, delay: Duration) -> NewMessage {
        NewMessage {
            id: MessageId {
                queue: 1,
                salt: 0,
                seq,
            },
            body: Arc::from(format!("body {seq}")),
            attributes: None,
            sent_at_ms: 0,
            delay,
            fifo: None,
        }
    }

    fn receive(store: &mut Store, now: Instant, max: usize, visibility: u64) -> Vec<HandedOut> {
        let mut out = Vec::new();
        let mut dead = Vec::new();
        store.receive(
            now,
            0,
            max,
            Duration::from_secs(visibility),
            None,
            None,
            &mut out,
            &mut dead,
        );
        out
    }

    #[test]
    fn deleting_in_flight_messages_keeps_the_timer_heap_bounded() {
        let mut store = Store::default();
        let now = Instant::now();
        let rounds = 10 * COMPACT_SLACK;
        for seq in 0..rounds as u64 {
            store.push(message(seq, Duration::ZERO), now);
            for delivery in receive(&mut store, now, 1, 30) {
                assert!(store.delete(now, delivery.index, delivery.token).is_some());
            }
        }
        let (ready, timers) = store.index_sizes();
        assert!(
            timers <= 2 * COMPACT_SLACK + 1,
            "timer heap grew to {timers}"
        );
        assert!(
            ready <= 2 * COMPACT_SLACK + 1,
            "ready queue grew to {ready}"
        );
        assert_eq!(store.counts(now), QueueCounts::default());
        assert_eq!(store.next_deadline(), None);
    }

    #[test]
    fn hiding_visible_messages_again_keeps_the_ready_queue_bounded() {
        let mut store = Store::default();
        let now = Instant::now();
        for seq in 0..4 {
            store.push(message(seq, Duration::ZERO), now);
        }
        let held = receive(&mut store, now, 4, 0);
        // Visibility 0 on receive: all four are visible again, with current handles.
        for _ in 0..COMPACT_SLACK {
            for delivery in &held {
                let hide = store.change_visibility(
                    now,
                    delivery.index,
                    delivery.token,
                    Duration::from_secs(0),
                );
                assert_eq!(hide, Ok(true));
            }
        }
        let (ready, _) = store.index_sizes();
        assert!(
            ready <= 2 * 4 + COMPACT_SLACK + 4,
            "ready queue grew to {ready}"
        );
        assert_eq!(receive(&mut store, now, 10, 30).len(), 4);
    }

    #[test]
    fn a_reused_slot_does_not_revive_an_old_handle() {
        let mut store = Store::default();
        let now = Instant::now();
        store.push(message(1, Duration::ZERO), now);
        let first = receive(&mut store, now, 1, 30);
        let [old] = first.as_slice() else {
            panic!("expected one delivery");
        };
        assert!(store.delete(now, old.index, old.token).is_some());
        store.push(message(2, Duration::ZERO), now);
        let second = receive(&mut store, now, 1, 30);
        let [new] = second.as_slice() else {
            panic!("expected one delivery");
        };
        assert_eq!(new.index, old.index, "the test relies on index reuse");
        assert!(store.delete(now, old.index, old.token).is_none());
        assert_eq!(store.counts(now).not_visible, 1);
    }
}
