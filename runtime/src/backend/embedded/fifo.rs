//! FIFO bookkeeping of the embedded queue: message groups, the deduplication window,
//! receive attempts, and what a send to a FIFO queue must carry. Plain data structures
//! the store drives under its lock; the store keeps the messages themselves.
//!
//! A group lists its messages in sequence order, whatever their state. It is *blocked*
//! while one of them is in flight, and then hands out nothing. Groups that may have a
//! message to hand out wait in `ready`, oldest first; a receive serves the first one as
//! far as it can (every visible message up to the first delayed one, in order), then
//! the next, as SQS returns as many messages of one group as it can before moving on.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::checks::invalid_parameter;
use super::ids::MessageId;
use crate::backend::fifo::{is_valid_fifo_id, sha256_hex};
use crate::backend::{ReceiveAttemptId, SendMessage, whole_seconds};
use crate::error::BackendError;

/// How long SQS remembers a deduplication id, and a receive attempt id.
pub(super) const WINDOW: Duration = Duration::from_secs(5 * 60);

/// What a message of a FIFO queue carries besides a standard one's fields.
#[derive(Debug)]
pub(super) struct Tag {
    pub(super) group: Arc<str>,
    pub(super) deduplication_id: Arc<str>,
    /// `SequenceNumber`: increasing across the queue, in the order messages entered it.
    pub(super) sequence: u64,
}

/// The FIFO parameters of a message being sent, checked.
#[derive(Debug)]
pub(super) struct FifoSend {
    pub(super) group: Arc<str>,
    pub(super) deduplication_id: Arc<str>,
}

impl FifoSend {
    /// What a message that reached a FIFO store without FIFO parameters is filed under:
    /// the empty group. None does (the queue's sends check, and a FIFO queue's
    /// dead-letter queue is FIFO too); this keeps such a message receivable.
    pub(super) fn unchecked() -> Self {
        Self {
            group: Arc::from(""),
            deduplication_id: Arc::from(""),
        }
    }
}

/// Checks a send to a FIFO queue the way SQS does, and finds its deduplication id:
/// the given one, or the SHA-256 of the body with content-based deduplication.
pub(super) fn check_send(
    message: &SendMessage,
    content_based_deduplication: bool,
) -> Result<FifoSend, BackendError> {
    let operation = "SendMessage";
    let Some(group) = &message.group_id else {
        return Err(BackendError::Rejected {
            operation,
            code: "MissingParameter".to_owned(),
            message: "The request must contain the parameter MessageGroupId.".to_owned(),
        });
    };
    check_id(operation, "MessageGroupId", group)?;
    if let Some(delay) = message.delay
        && !delay.is_zero()
    {
        return Err(invalid_parameter(
            operation,
            format!(
                "Value {} for parameter DelaySeconds is invalid. Reason: The request \
                 include parameter that is not valid for this queue type.",
                whole_seconds(delay)
            ),
        ));
    }
    let deduplication_id = match &message.deduplication_id {
        Some(id) => {
            check_id(operation, "MessageDeduplicationId", id)?;
            Arc::from(id.as_str())
        }
        None if content_based_deduplication => Arc::from(sha256_hex(message.body.as_bytes())),
        None => {
            return Err(invalid_parameter(
                operation,
                "The queue should either have ContentBasedDeduplication enabled or \
                 MessageDeduplicationId provided explicitly"
                    .to_owned(),
            ));
        }
    };
    Ok(FifoSend {
        group: Arc::from(group.as_str()),
        deduplication_id,
    })
}

/// Checks a send to a standard queue for what only FIFO queues take.
pub(super) fn check_standard_send(message: &SendMessage) -> Result<(), BackendError> {
    match &message.deduplication_id {
        None => Ok(()),
        Some(id) => Err(invalid_parameter(
            "SendMessage",
            format!(
                "Value {id} for parameter MessageDeduplicationId is invalid. Reason: The \
                 request include parameter that is not valid for this queue type."
            ),
        )),
    }
}

fn check_id(operation: &'static str, parameter: &str, id: &str) -> Result<(), BackendError> {
    if is_valid_fifo_id(id) {
        return Ok(());
    }
    Err(invalid_parameter(
        operation,
        format!(
            "Value {id} for parameter {parameter} is invalid. Reason: {parameter} can only \
             include alphanumeric and punctuation characters. 1 to 128 in length."
        ),
    ))
}

/// The FIFO state of one queue.
#[derive(Debug, Default)]
pub(super) struct Fifo {
    pub(super) groups: Groups,
    pub(super) deduplication: Deduplication,
    pub(super) attempts: Attempts,
    /// The last `SequenceNumber` handed out.
    last_sequence: u64,
}

impl Fifo {
    /// The tag of a message entering the queue: the next sequence number.
    pub(super) fn tag(&mut self, group: Arc<str>, deduplication_id: Arc<str>) -> Arc<Tag> {
        self.last_sequence += 1;
        Arc::new(Tag {
            group,
            deduplication_id,
            sequence: self.last_sequence,
        })
    }
}

/// One message of a group: its index, and its sequence number, which tells the entry of
/// a live message from one whose message is gone (and whose index may hold another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) index: usize,
    pub(super) sequence: u64,
}

/// The messages of one group in sequence order: delayed, visible and in flight alike,
/// and entries of messages since deleted or dead-lettered until they reach the front.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) entries: VecDeque<Entry>,
    /// Messages of the group in flight: while there is one, the group hands out nothing.
    in_flight: usize,
    /// Messages of the group still in the queue.
    live: usize,
    /// Whether the group waits in [`Groups::ready`].
    queued: bool,
}

impl Group {
    /// One of its messages was handed out.
    pub(super) fn handed_out(&mut self) {
        self.in_flight += 1;
    }

    /// One of its visible messages left the queue (to the dead-letter queue).
    pub(super) fn lost_visible(&mut self) {
        self.live = self.live.saturating_sub(1);
    }
}

/// The groups of a queue and the order in which they are served.
#[derive(Debug, Default)]
pub(super) struct Groups {
    groups: HashMap<Arc<str>, Group>,
    /// Groups that may have a message to hand out, in the order they became so. Keys
    /// of groups since blocked or gone are skipped when they surface.
    ready: VecDeque<Arc<str>>,
}

impl Groups {
    /// A message joins the end of its group.
    pub(super) fn add(&mut self, key: &Arc<str>, entry: Entry, visible: bool) {
        let group = match self.groups.get_mut(key) {
            Some(group) => group,
            None => self.groups.entry(Arc::clone(key)).or_default(),
        };
        group.entries.push_back(entry);
        group.live += 1;
        if visible {
            offer(&mut self.ready, key, group);
        }
    }

    /// A message of the group became visible: its delay passed, or it was in flight and
    /// its visibility timeout lapsed or was set to zero.
    pub(super) fn became_visible(&mut self, key: &Arc<str>, was_in_flight: bool) {
        if let Some(group) = self.groups.get_mut(key) {
            if was_in_flight {
                group.in_flight = group.in_flight.saturating_sub(1);
            }
            offer(&mut self.ready, key, group);
        }
    }

    /// A visible message of the group was made invisible by a visibility change.
    pub(super) fn hidden(&mut self, key: &Arc<str>) {
        if let Some(group) = self.groups.get_mut(key) {
            group.in_flight += 1;
        }
    }

    /// A message of the group was deleted.
    pub(super) fn removed(&mut self, key: &Arc<str>, was_in_flight: bool) {
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        group.live = group.live.saturating_sub(1);
        if was_in_flight {
            group.in_flight = group.in_flight.saturating_sub(1);
        }
        if group.live == 0 {
            self.groups.remove(key);
        } else {
            offer(&mut self.ready, key, group);
        }
    }

    /// Takes out the next group that is not blocked, to be served; give it back with
    /// [`put_back`](Self::put_back).
    pub(super) fn take_ready(&mut self) -> Option<(Arc<str>, Group)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.queued = false;
            if group.in_flight > 0 {
                // Offered again once nothing of it is in flight.
                continue;
            }
            if let Some(group) = self.groups.remove(&key) {
                return Some((key, group));
            }
        }
        None
    }

    /// Gives back a group taken out by [`take_ready`](Self::take_ready) and served. It
    /// is not offered again: it is blocked now, or it stopped at a delayed message,
    /// which offers it when it becomes visible.
    pub(super) fn put_back(&mut self, key: Arc<str>, group: Group) {
        if group.live > 0 {
            self.groups.insert(key, group);
        }
    }
}

/// Puts a group that is not blocked among the ready ones, once.
fn offer(ready: &mut VecDeque<Arc<str>>, key: &Arc<str>, group: &mut Group) {
    if group.in_flight == 0 && !group.queued && group.live > 0 {
        group.queued = true;
        ready.push_back(Arc::clone(key));
    }
}

/// The deduplication ids sent in the last 5 minutes, with the message each one sent.
#[derive(Debug, Default)]
pub(super) struct Deduplication {
    sent: HashMap<Arc<str>, (Instant, MessageId)>,
    /// The same ids, oldest first, to forget them in order.
    order: VecDeque<(Instant, Arc<str>)>,
}

impl Deduplication {
    /// The message sent with `id` in the 5 minutes before `now`, if any.
    pub(super) fn original(&mut self, now: Instant, id: &str) -> Option<MessageId> {
        self.forget_before(now);
        self.sent.get(id).map(|&(_, message)| message)
    }

    /// Remembers that `message` was sent with `id` at `now`.
    pub(super) fn record(&mut self, now: Instant, id: &Arc<str>, message: MessageId) {
        self.order.push_back((now, Arc::clone(id)));
        self.sent.insert(Arc::clone(id), (now, message));
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.order.front() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            if let Some((_, id)) = self.order.pop_front()
                && self
                    .sent
                    .get(&id)
                    .is_some_and(|&(sent_at, _)| sent_at == at)
            {
                self.sent.remove(&id);
            }
        }
    }
}

/// One message a receive handed out: enough to hand it out again unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Handed {
    pub(super) index: usize,
    /// The receive's token: the receipt handle stays the same.
    pub(super) token: u64,
    /// The message's stamp after the receive; any change since gives it a new one.
    pub(super) stamp: u64,
}

/// The receives made with an attempt id in the last 5 minutes, with what each handed
/// out.
#[derive(Debug, Default)]
pub(super) struct Attempts {
    attempts: HashMap<ReceiveAttemptId, (Instant, Vec<Handed>)>,
    order: VecDeque<(Instant, ReceiveAttemptId)>,
}

impl Attempts {
    /// Takes out what the receive with `id` handed out in the 5 minutes before `now`,
    /// with when it did; [`restore`](Self::restore) puts it back.
    pub(super) fn take(
        &mut self,
        now: Instant,
        id: ReceiveAttemptId,
    ) -> Option<(Instant, Vec<Handed>)> {
        self.forget_before(now);
        self.attempts.remove(&id)
    }

    /// Puts back what [`take`](Self::take) took out: the attempt keeps its time.
    pub(super) fn restore(&mut self, id: ReceiveAttemptId, at: Instant, handed: Vec<Handed>) {
        self.attempts.insert(id, (at, handed));
    }

    /// Remembers what the receive with `id` handed out at `now`.
    pub(super) fn record(&mut self, now: Instant, id: ReceiveAttemptId, handed: Vec<Handed>) {
        self.order.push_back((now, id));
        self.attempts.insert(id, (now, handed));
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.order.front() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            if let Some((_, id)) = self.order.pop_front()
                && self.attempts.get(&id).is_some_and(|&(made, _)| made == at)
            {
                self.attempts.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn entry(index: usize) -> Entry {
        Entry {
            index,
            sequence: index as u64,
        }
    }

    #[test]
    fn a_group_is_served_once_until_nothing_of_it_is_in_flight() {
        let mut groups = Groups::default();
        let (a, b) = (key("a"), key("b"));
        groups.add(&a, entry(1), true);
        groups.add(&b, entry(2), true);
        groups.add(&a, entry(3), true);

        let (first, mut group) = groups.take_ready().expect("a is ready");
        assert_eq!(first, a);
        assert_eq!(group.entries, [entry(1), entry(3)]);
        group.handed_out();
        groups.put_back(first, group);
        let (second, group) = groups.take_ready().expect("b is ready");
        assert_eq!(second, b);
        groups.put_back(second, group);
        assert!(groups.take_ready().is_none(), "a is blocked, b was served");

        // A lapse unblocks a; it is offered once, however often it is offered.
        groups.became_visible(&a, true);
        groups.became_visible(&a, false);
        let (again, group) = groups.take_ready().expect("a is ready again");
        assert_eq!(again, a);
        groups.put_back(again, group);
        assert!(groups.take_ready().is_none());
    }

    #[test]
    fn a_group_whose_messages_are_all_gone_is_forgotten() {
        let mut groups = Groups::default();
        let a = key("a");
        groups.add(&a, entry(1), false);
        groups.hidden(&a);
        groups.removed(&a, true);
        assert!(groups.groups.is_empty());
        assert!(groups.take_ready().is_none());
    }

    #[test]
    fn a_deduplication_id_is_remembered_for_five_minutes() {
        let mut seen = Deduplication::default();
        let start = Instant::now();
        let id = key("order-1");
        let message = MessageId {
            queue: 1,
            salt: 0,
            seq: 7,
        };
        assert_eq!(seen.original(start, &id), None);
        seen.record(start, &id, message);
        let almost = start + WINDOW - Duration::from_secs(1);
        assert_eq!(seen.original(almost, &id), Some(message));
        assert_eq!(seen.original(start + WINDOW, &id), None);
        assert!(seen.order.is_empty());
    }

    #[test]
    fn an_attempt_keeps_its_time_when_restored() {
        let mut attempts = Attempts::default();
        let start = Instant::now();
        let id = ReceiveAttemptId::random();
        let handed = vec![Handed {
            index: 0,
            token: 1,
            stamp: 1,
        }];
        attempts.record(start, id, handed.clone());
        let (at, taken) = attempts
            .take(start + Duration::from_secs(60), id)
            .expect("recorded a minute ago");
        assert_eq!((at, &taken), (start, &handed));
        attempts.restore(id, at, taken);
        assert!(attempts.take(start + WINDOW, id).is_none(), "expired");
    }
}
