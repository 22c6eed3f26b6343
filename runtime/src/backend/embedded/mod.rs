//! The embedded queue: [`EmbeddedQueue`](crate::EmbeddedQueue), its store, FIFO rules,
//! faults and request counts.

mod builder;
mod checks;
mod faults;
mod fifo;
#[cfg(test)]
mod fifo_tests;
mod ids;
mod stats;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use self::builder::EmbeddedQueueBuilder;
pub use self::faults::{Faults, InjectedFaults, Operation};
pub use self::stats::RequestStats;
use crate::backend::QueueCounts;
use crate::backend::SendMessage;

use self::checks::invalid_parameter;
use self::ids::{HandleParts, MessageId};
use self::store::{ChangeError, HandedOut, NewMessage, Store, StoredMessage, UserAttributes};
use crate::backend::{
    Backend, EntryError, EntryErrorKind, EntryResult, MAX_BATCH, MAX_VISIBILITY, MAX_WAIT,
    MessageAttribute, QueueAttributes, ReceiptHandle, ReceiveAttemptId, ReceiveRequest,
    ReceivedMessage, RedrivePolicy, VisibilityChange, whole_seconds,
};
use crate::error::BackendError;
use crate::waiting::Waiting;

/// The default visibility timeout of a queue, as on SQS.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// The longest delay SQS allows, for a queue or a single message.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// The largest `maxReceiveCount` of an SQS redrive policy.
const MAX_RECEIVE_COUNT: u32 = 1000;
/// The `SenderId` attribute of every message: there is no IAM principal in process.
const SENDER_ID: &str = "AIDAEMBEDDEDSPOTQ";
// The names of the system attributes returned with every message.
const RECEIVE_COUNT: &str = "ApproximateReceiveCount";
const SENT_TIMESTAMP: &str = "SentTimestamp";
const FIRST_RECEIVE_TIMESTAMP: &str = "ApproximateFirstReceiveTimestamp";
const SENDER: &str = "SenderId";
const GROUP_ID: &str = "MessageGroupId";
const DEDUPLICATION_ID: &str = "MessageDeduplicationId";
const SEQUENCE_NUMBER: &str = "SequenceNumber";
/// `send_many` converts this many bodies outside the lock, then inserts them under it.
const SEND_CHUNK: usize = 256;

/// The largest message SQS accepts, body and message attributes together.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The suffix of every FIFO queue's name, and of no standard queue's.
const FIFO_SUFFIX: &str = ".fifo";

/// The most message attributes one message may carry.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// Gives each queue a distinct id, so a receipt handle of one queue is invalid on any other.
static NEXT_QUEUE_ID: AtomicU32 = AtomicU32::new(1);

/// An in-process queue with the semantics of an Amazon SQS standard or FIFO queue.
///
/// The zero-setup [`Backend`](crate::backend::Backend) for examples, tests and benchmarks:
/// visibility timeouts, receipt handles that go stale when a message is received
/// again, `ApproximateReceiveCount`, delays, long polls, redrive to a dead-letter queue,
/// FIFO message groups and approximate counts all behave as on SQS, and it refuses on
/// send what SQS refuses:
/// an empty body, a message over 1 MiB (body and attributes), characters outside the
/// ones SQS allows, more than 10 message attributes. It counts every call
/// ([`stats`](Self::stats)) and can be made to fail
/// ([`faults`](Self::faults)).
///
/// Every timer runs on tokio's clock, so tests can use paused time
/// (`#[tokio::test(start_paused = true)]`) and skip a 30 s visibility timeout at once.
///
/// ```
/// use std::time::Duration;
///
/// use spotq::backend::{Backend, ReceiveRequest};
/// use spotq::EmbeddedQueue;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dead_letters = EmbeddedQueue::new("jobs-dlq");
/// let queue = EmbeddedQueue::builder("jobs")
///     .visibility_timeout(Duration::from_secs(60))
///     .redrive(&dead_letters, 3)
///     .build()?;
///
/// queue.send(r#"{"job": 1}"#);
/// let request = ReceiveRequest {
///     max_messages: 10,
///     wait_time: Duration::from_secs(20),
///     visibility_timeout: None,
///     attempt_id: None,
/// };
/// let messages = queue.receive(request).await?;
/// assert_eq!(messages[0].receive_count(), 1);
///
/// let handles: Vec<_> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
/// for result in queue.delete_batch(&handles).await? {
///     result?;
/// }
/// assert_eq!(queue.counts().total(), 0);
/// # Ok(())
/// # }
/// ```
///
/// # FIFO queues
///
/// [`EmbeddedQueueBuilder::fifo`](crate::backend::EmbeddedQueueBuilder::fifo) (or a name ending in `.fifo` given to
/// [`EmbeddedQueue::new`](Self::new)) makes a FIFO queue, as SQS documents them:
/// - every message is sent with a `MessageGroupId` ([`SendMessage::group_id`](crate::backend::SendMessage::group_id)), and
///   with a `MessageDeduplicationId` unless the queue has content-based deduplication
///   (then the SHA-256 of the body stands in); a message sent with the deduplication
///   id of one sent in the last 5 minutes is accepted and not stored again. Delays are
///   the queue's only;
/// - the messages of a group are handed out in the order they were sent, and none
///   while one of the group is in flight (received, and neither deleted nor back to
///   visible). A receive hands out as many of one group as it can, in order, before it
///   moves on to the next, so one receive may hold several messages of a group;
/// - received messages carry `MessageGroupId`, `MessageDeduplicationId` and
///   `SequenceNumber` (increasing across the queue) among their system attributes;
/// - a receive retried with the [`ReceiveAttemptId`](crate::backend::ReceiveAttemptId) of one in the last 5 minutes
///   whose messages are untouched gets those messages again, with the same receipt
///   handles;
/// - redrive moves a message to the (FIFO) dead-letter queue in its group's order, and
///   it no longer holds its group back.
///
/// ```
/// use std::time::Duration;
///
/// use spotq::backend::{Backend, ReceiveRequest, SendMessage};
/// use spotq::EmbeddedQueue;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = EmbeddedQueue::builder("orders.fifo")
///     .fifo()
///     .content_based_deduplication()
///     .build()?;
/// for step in ["created", "paid", "shipped"] {
///     queue.send_with(SendMessage::new(step).group_id("order-1"))?;
/// }
/// let request = ReceiveRequest {
///     max_messages: 10,
///     wait_time: Duration::ZERO,
///     visibility_timeout: None,
///     attempt_id: None,
/// };
/// let bodies: Vec<_> = queue.receive(request).await?.into_iter().map(|m| m.body).collect();
/// assert_eq!(bodies, ["created", "paid", "shipped"]);
/// // The group is in flight: nothing more of it until those are deleted or visible again.
/// queue.send_with(SendMessage::new("delivered").group_id("order-1"))?;
/// assert!(queue.receive(request).await?.is_empty());
/// # Ok(())
/// # }
/// ```
///
/// Cheap to clone: clones share one queue. Sending is synchronous and works from any
/// thread; receiving and the batch calls go through the [`Backend`] trait.
#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

struct Inner {
    id: u32,
    /// Cosmetic bits for message ids; see [`MessageId`].
    salt: u32,
    name: String,
    visibility_timeout: Duration,
    delay: Duration,
    redrive: Option<Redrive>,
    fifo: bool,
    content_based_deduplication: bool,
    next_seq: AtomicU64,
    store: Mutex<Store>,
    /// Wakes long polls when a message may have become visible or a deadline moved up.
    notify: Notify,
    /// Long polls that may be waiting: senders skip the notify when there are none.
    waiting: AtomicUsize,
    faults: Faults,
    /// The system attribute names with empty values, cloned for every delivery.
    attribute_template: HashMap<String, String>,
}

struct Redrive {
    dead_letter: EmbeddedQueue,
    max_receive_count: u32,
}

/// The settings of a queue, checked.
struct Settings {
    name: String,
    visibility_timeout: Duration,
    delay: Duration,
    redrive: Option<Redrive>,
    fifo: bool,
    content_based_deduplication: bool,
}

impl EmbeddedQueue {
    /// A queue with SQS defaults: 30 s visibility timeout, no delay, no redrive. A name
    /// that ends in `.fifo` makes a FIFO queue (without content-based deduplication), as
    /// SQS allows that suffix on FIFO queues only.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        // The defaults are within every limit: no need to go through `build`'s checks.
        Self::with(Settings {
            fifo: name.ends_with(FIFO_SUFFIX),
            name,
            visibility_timeout: DEFAULT_VISIBILITY,
            delay: Duration::ZERO,
            redrive: None,
            content_based_deduplication: false,
        })
    }

    /// A queue from settings already checked.
    fn with(settings: Settings) -> Self {
        let mut attributes = vec![
            RECEIVE_COUNT,
            SENT_TIMESTAMP,
            FIRST_RECEIVE_TIMESTAMP,
            SENDER,
        ];
        if settings.fifo {
            attributes.extend([GROUP_ID, DEDUPLICATION_ID, SEQUENCE_NUMBER]);
        }
        let inner = Inner {
            id: NEXT_QUEUE_ID.fetch_add(1, Ordering::Relaxed),
            salt: fastrand::u32(..),
            name: settings.name,
            visibility_timeout: settings.visibility_timeout,
            delay: settings.delay,
            redrive: settings.redrive,
            fifo: settings.fifo,
            content_based_deduplication: settings.content_based_deduplication,
            next_seq: AtomicU64::new(0),
            store: Mutex::new(if settings.fifo {
                Store::fifo()
            } else {
                Store::default()
            }),
            notify: Notify::new(),
            waiting: AtomicUsize::new(0),
            faults: Faults::default(),
            attribute_template: attributes
                .into_iter()
                .map(|name| (name.to_owned(), String::new()))
                .collect(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Sends a message with the queue's delay; returns its message id.
    ///
    /// # Panics
    ///
    /// On a body SQS refuses (empty, over [`MAX_MESSAGE_BYTES`], or with characters
    /// outside those SQS allows), and on a FIFO queue, whose messages need a group;
    /// [`send_with`](Self::send_with) returns the error instead.
    pub fn send(&self, body: impl Into<String>) -> String {
        let inner = &*self.inner;
        let body = body.into();
        inner.refuse_fifo("send");
        if let Err(error) = check_message("SendMessage", &body, &HashMap::new()) {
            panic!("EmbeddedQueue::send: {error}");
        }
        let message = inner.new_message(body, None, inner.delay, epoch_millis());
        let id = message.id;
        inner.push(std::iter::once(message));
        id.render()
    }

    /// Sends a message with its own delay, attributes, or (FIFO queues) group and
    /// deduplication id; returns its message id. On a FIFO queue, a message whose
    /// deduplication id was sent in the last 5 minutes is accepted but not stored
    /// again: the id returned is that of the message sent first.
    ///
    /// # Errors
    ///
    /// [`BackendError::Rejected`] with the code SQS answers with: `MissingParameter`
    /// for an empty body or a FIFO message without a group, `InvalidMessageContents`
    /// for characters outside those SQS allows (`#x9 | #xA | #xD | #x20 to #xD7FF |
    /// #xE000 to #xFFFD | #x10000 to #x10FFFF`), `InvalidParameterValue` for a message
    /// over [`MAX_MESSAGE_BYTES`] (body, attribute names, types and values), more than
    /// [`MAX_MESSAGE_ATTRIBUTES`] attributes, a delay over 15 min, a delay of its own
    /// on a FIFO queue, a FIFO message without a deduplication id on a queue without
    /// content-based deduplication, a group or deduplication id SQS would refuse, or a
    /// deduplication id on a standard queue.
    pub fn send_with(&self, message: SendMessage) -> Result<String, BackendError> {
        let inner = &*self.inner;
        check_message("SendMessage", &message.body, &message.attributes)?;
        let fifo = if inner.fifo {
            Some(fifo::check_send(
                &message,
                inner.content_based_deduplication,
            )?)
        } else {
            fifo::check_standard_send(&message)?;
            None
        };
        let delay = match message.delay {
            None => inner.delay,
            Some(delay) => whole_seconds_within(delay, MAX_DELAY).ok_or_else(|| {
                invalid_parameter(
                    "SendMessage",
                    format!("DelaySeconds {delay:?} is over the 900 s limit"),
                )
            })?,
        };
        let attributes = (!message.attributes.is_empty()).then(|| Arc::new(message.attributes));
        let mut message = inner.new_message(message.body, attributes, delay, epoch_millis());
        if fifo.is_some() {
            message.fifo = fifo;
            return Ok(inner.push_deduplicated(message).render());
        }
        let id = message.id;
        inner.push(std::iter::once(message));
        Ok(id.render())
    }

    /// Sends one message per body, with the queue's delay; returns how many were sent.
    /// Cheaper than [`send`](Self::send) in a loop: the lock is taken once per few
    /// hundred messages. Use `send` when the message ids matter.
    ///
    /// # Panics
    ///
    /// On a body SQS refuses, as [`send`](Self::send) does (the bodies before it are
    /// sent), and on a FIFO queue.
    pub fn send_many<I>(&self, bodies: I) -> usize
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let inner = &*self.inner;
        inner.refuse_fifo("send_many");
        let mut bodies = bodies.into_iter();
        let mut chunk = Vec::with_capacity(SEND_CHUNK);
        let mut sent = 0;
        loop {
            let now_ms = epoch_millis();
            chunk.extend(bodies.by_ref().take(SEND_CHUNK).map(|body| {
                let body = body.into();
                if let Err(error) = check_message("SendMessage", &body, &HashMap::new()) {
                    panic!("EmbeddedQueue::send_many: {error}");
                }
                inner.new_message(body, None, inner.delay, now_ms)
            }));
            if chunk.is_empty() {
                return sent;
            }
            sent += chunk.len();
            inner.push(chunk.drain(..));
        }
    }

    /// The approximate counts, as [`attributes`](Backend::attributes) reports them, without
    /// counting as a call or going through injected faults.
    pub fn counts(&self) -> QueueCounts {
        let now = Instant::now();
        self.inner.lock().counts(now)
    }

    /// The calls served and messages moved since the queue was built or
    /// [`reset_stats`](Self::reset_stats) was last called.
    pub fn stats(&self) -> RequestStats {
        self.inner.lock().stats
    }

    /// Zeroes the [`stats`](Self::stats), e.g. after a benchmark's warm-up.
    pub fn reset_stats(&self) {
        self.inner.lock().stats = RequestStats::default();
    }

    /// The faults to inject into this queue's calls, shared by all its clones.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }
}

impl fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No counts here: Debug must not take the store's lock.
        let inner = &*self.inner;
        f.debug_struct("EmbeddedQueue")
            .field("name", &inner.name)
            .field("visibility_timeout", &inner.visibility_timeout)
            .field("delay", &inner.delay)
            .field("fifo", &inner.fifo)
            .field(
                "dead_letter",
                &inner
                    .redrive
                    .as_ref()
                    .map(|redrive| (redrive.dead_letter.name(), redrive.max_receive_count)),
            )
            .finish_non_exhaustive()
    }
}

/// Validated parameters of one receive call.
struct ReceiveParams {
    max_messages: usize,
    wait_time: Duration,
    visibility: Duration,
    attempt_id: Option<ReceiveAttemptId>,
}

/// One look at the store by a receive call.
enum Attempt {
    Delivered(Vec<ReceivedMessage>),
    /// Nothing visible and the wait has run out.
    Empty,
    /// Nothing visible yet; look again at the earliest deadline, if there is one.
    Wait(Option<Instant>),
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // No code panics while holding the lock with the store half-updated, so a
        // poisoned store is still consistent: keep serving rather than fail every call.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_message(
        &self,
        body: String,
        attributes: UserAttributes,
        delay: Duration,
        sent_at_ms: u64,
    ) -> NewMessage {
        NewMessage {
            id: MessageId {
                queue: self.id,
                salt: self.salt,
                seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            },
            body: Arc::from(body),
            attributes,
            sent_at_ms,
            delay,
            fifo: None,
        }
    }

    /// Panics in `method`, a send of bodies alone, on a FIFO queue.
    fn refuse_fifo(&self, method: &str) {
        assert!(
            !self.fifo,
            "EmbeddedQueue::{method}: a FIFO queue's messages need a group \
             (MessageGroupId): use send_with"
        );
    }

    /// Adds a FIFO message unless one with its deduplication id was sent in the last
    /// 5 minutes; returns the id of the message added, or of that one.
    fn push_deduplicated(&self, message: NewMessage) -> MessageId {
        let now = Instant::now();
        let deduplication_id = message
            .fifo
            .as_ref()
            .map(|fifo| Arc::clone(&fifo.deduplication_id));
        let id = message.id;
        let wake = {
            let mut store = self.lock();
            if let Some(original) = deduplication_id.and_then(|dedup| store.original(now, &dedup)) {
                store.stats.deduplicated_sends += 1;
                return original;
            }
            store.stats.messages_sent += 1;
            store.push(message, now)
        };
        if wake {
            self.wake();
        }
        id
    }

    fn push(&self, messages: impl Iterator<Item = NewMessage>) {
        let now = Instant::now();
        let mut wake = false;
        {
            let mut store = self.lock();
            for message in messages {
                store.stats.messages_sent += 1;
                wake |= store.push(message, now);
            }
        }
        if wake {
            self.wake();
        }
    }

    /// Wakes every waiting long poll so it looks at the store again.
    fn wake(&self) {
        // Pollers register before they look at the store, under the same lock a sender
        // takes before this check, so a poller that missed the change is counted here.
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Takes up to `max_messages` visible messages, or says how long to wait.
    fn attempt(&self, params: &ReceiveParams, deadline: Instant, first: bool) -> Attempt {
        let now = Instant::now();
        let now_ms = epoch_millis();
        let max_receive_count = self
            .redrive
            .as_ref()
            .map(|redrive| redrive.max_receive_count);
        let mut deliveries = Vec::with_capacity(params.max_messages);
        let mut dead_letters = Vec::new();
        let (wake, wait) = {
            let mut store = self.lock();
            if first {
                store.stats.receive_calls += 1;
            }
            let wake = store.receive(
                now,
                now_ms,
                params.max_messages,
                params.visibility,
                max_receive_count,
                params.attempt_id,
                &mut deliveries,
                &mut dead_letters,
            );
            let wait = if !deliveries.is_empty() {
                None
            } else if now >= deadline {
                store.stats.empty_receives += 1;
                None
            } else {
                Some(store.next_deadline())
            };
            (wake, wait)
        };
        if wake {
            self.wake();
        }
        if let Some(redrive) = &self.redrive
            && !dead_letters.is_empty()
        {
            redrive.dead_letter.inner.accept_dead_letters(dead_letters);
        }
        match wait {
            Some(next_deadline) => Attempt::Wait(next_deadline),
            None if deliveries.is_empty() => Attempt::Empty,
            // Built outside the lock: the strings and maps are most of a receive's cost.
            None => Attempt::Delivered(deliveries.into_iter().map(|d| self.deliver(d)).collect()),
        }
    }

    fn accept_dead_letters(&self, messages: Vec<StoredMessage>) {
        self.lock().accept_dead_letters(messages);
        self.wake();
    }

    fn deliver(&self, delivery: HandedOut) -> ReceivedMessage {
        // Cloning a prebuilt map copies its table without hashing a key again; only the
        // values differ per message. Hashing four keys was a tenth of a receive's cost.
        let mut attributes = self.attribute_template.clone();
        for (name, value) in &mut attributes {
            *value = match name.as_str() {
                RECEIVE_COUNT => delivery.receive_count.to_string(),
                SENT_TIMESTAMP => delivery.sent_at_ms.to_string(),
                FIRST_RECEIVE_TIMESTAMP => delivery.first_received_at_ms.to_string(),
                SENDER => SENDER_ID.to_owned(),
                // Only a FIFO queue's template has the names below, and its messages
                // all carry a tag.
                GROUP_ID => fifo_attribute(&delivery, |tag| String::from(&*tag.group)),
                DEDUPLICATION_ID => {
                    fifo_attribute(&delivery, |tag| String::from(&*tag.deduplication_id))
                }
                _ => fifo_attribute(&delivery, |tag| sequence_number(tag.sequence)),
            };
        }
        let handle = HandleParts {
            queue: self.id,
            index: delivery.index,
            token: delivery.token,
        };
        ReceivedMessage {
            message_id: delivery.id.render(),
            receipt_handle: ReceiptHandle::new(handle.render()),
            body: String::from(&*delivery.body),
            md5_of_body: None,
            attributes,
            message_attributes: delivery
                .attributes
                .map(|attributes| HashMap::clone(&attributes))
                .unwrap_or_default(),
        }
    }

    /// Where a handle points in this queue's store; `None` for another queue's handle
    /// or anything that is not a handle.
    fn locate(&self, handle: &ReceiptHandle) -> Option<HandleParts> {
        HandleParts::parse(handle.as_str()).filter(|parts| parts.queue == self.id)
    }

    /// Counts a call that failed before reaching the store.
    fn count_failed_call(&self, operation: Operation, entries: usize) {
        let mut store = self.lock();
        let stats = &mut store.stats;
        match operation {
            Operation::Receive => stats.receive_calls += 1,
            Operation::DeleteBatch => {
                stats.delete_batch_calls += 1;
                stats.delete_batch_entries += entries as u64;
            }
            Operation::ChangeVisibilityBatch => {
                stats.change_visibility_batch_calls += 1;
                stats.change_visibility_batch_entries += entries as u64;
            }
            Operation::Attributes => stats.attributes_calls += 1,
            // Sends are not among the calls a worker's run is billed for here.
            Operation::Send => {}
        }
    }

    /// Applies injected faults and checks the batch size, counting a failed call.
    async fn start_batch(&self, operation: Operation, entries: usize) -> Result<(), BackendError> {
        let checked = match self.faults.before_call(operation).await {
            Ok(()) => check_batch_size(operation, entries),
            Err(error) => Err(error),
        };
        if checked.is_err() {
            self.count_failed_call(operation, entries);
        }
        checked
    }
}

#[async_trait]
impl Backend for EmbeddedQueue {
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Messages are taken only as a receive returns: dropping one loses nothing.
    fn receive_cancel_safe(&self) -> bool {
        true
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        let inner = &*self.inner;
        let checked = match inner.faults.before_call(Operation::Receive).await {
            Ok(()) => check_receive(&request, inner.visibility_timeout),
            Err(error) => Err(error),
        };
        let params = match checked {
            Ok(params) => params,
            Err(error) => {
                inner.count_failed_call(Operation::Receive, 0);
                return Err(error);
            }
        };
        let deadline = Instant::now() + params.wait_time;
        // Messages are only ever taken inside `attempt`, synchronously, right before
        // returning them: dropping this future at an await point loses nothing.
        let mut first = true;
        loop {
            // Register before looking, so a message sent after the look still wakes us;
            // on the first look there is nothing to miss yet and no need to pay for it.
            let registered = (!first).then(|| Waiting::register(&inner.waiting));
            let notified = inner.notify.notified();
            let next_deadline = match inner.attempt(&params, deadline, first) {
                Attempt::Delivered(messages) => {
                    inner.faults.after_call(Operation::Receive)?;
                    return Ok(messages);
                }
                Attempt::Empty => {
                    inner.faults.after_call(Operation::Receive)?;
                    return Ok(Vec::new());
                }
                Attempt::Wait(next_deadline) => next_deadline,
            };
            if first {
                // Look again, registered this time, before sleeping.
                first = false;
                continue;
            }
            let wake_at = next_deadline.map_or(deadline, |next| next.min(deadline));
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
            drop(registered);
        }
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let inner = &*self.inner;
        let operation = Operation::DeleteBatch;
        inner.start_batch(operation, handles.len()).await?;
        let now = Instant::now();
        let mut results = Vec::with_capacity(handles.len());
        // Deleted messages are dropped after the lock is released: freeing their bodies
        // is work other callers need not wait for.
        let mut deleted: [Option<StoredMessage>; MAX_BATCH] = Default::default();
        {
            let mut store = inner.lock();
            store.stats.delete_batch_calls += 1;
            store.stats.delete_batch_entries += handles.len() as u64;
            for (handle, removed) in handles.iter().zip(&mut deleted) {
                if let Some(error) = inner.faults.entry_fault(operation) {
                    results.push(Err(error));
                    continue;
                }
                *removed = inner
                    .locate(handle)
                    .and_then(|parts| store.delete(now, parts.index, parts.token));
                results.push(match removed {
                    Some(_) => Ok(()),
                    None => Err(invalid_receipt_handle()),
                });
            }
        }
        // On a FIFO queue a delete may unblock its group: a long poll waiting for that
        // group's next message must look again, as SQS answers it.
        if inner.fifo && deleted.iter().any(Option::is_some) {
            inner.wake();
        }
        drop(deleted);
        inner.faults.after_call(operation)?;
        Ok(results)
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let inner = &*self.inner;
        let operation = Operation::ChangeVisibilityBatch;
        inner.start_batch(operation, changes.len()).await?;
        let now = Instant::now();
        let mut results = Vec::with_capacity(changes.len());
        let mut wake = false;
        {
            let mut store = inner.lock();
            store.stats.change_visibility_batch_calls += 1;
            store.stats.change_visibility_batch_entries += changes.len() as u64;
            for change in changes {
                if let Some(error) = inner.faults.entry_fault(operation) {
                    results.push(Err(error));
                    continue;
                }
                let Some(parts) = inner.locate(&change.receipt_handle) else {
                    results.push(Err(invalid_receipt_handle()));
                    continue;
                };
                let Some(timeout) = whole_seconds_within(change.timeout, MAX_VISIBILITY) else {
                    results.push(Err(past_visibility_cap(change.timeout)));
                    continue;
                };
                results.push(
                    match store.change_visibility(now, parts.index, parts.token, timeout) {
                        Ok(woke) => {
                            wake |= woke;
                            Ok(())
                        }
                        Err(ChangeError::InvalidHandle) => Err(invalid_receipt_handle()),
                        Err(ChangeError::PastCap) => Err(past_visibility_cap(timeout)),
                    },
                );
            }
        }
        if wake {
            inner.wake();
        }
        inner.faults.after_call(operation)?;
        Ok(results)
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        self.inner.faults.before_call(Operation::Send).await?;
        let id = self.send_with(message)?;
        self.inner.faults.after_call(Operation::Send)?;
        Ok(id)
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        let inner = &*self.inner;
        if let Err(error) = inner.faults.before_call(Operation::Attributes).await {
            inner.count_failed_call(Operation::Attributes, 0);
            return Err(error);
        }
        let now = Instant::now();
        let counts = {
            let mut store = inner.lock();
            store.stats.attributes_calls += 1;
            store.counts(now)
        };
        inner.faults.after_call(Operation::Attributes)?;
        Ok(QueueAttributes {
            counts,
            visibility_timeout: inner.visibility_timeout,
            redrive_policy: inner.redrive.as_ref().map(|redrive| RedrivePolicy {
                dead_letter_target: redrive.dead_letter.name().to_owned(),
                max_receive_count: redrive.max_receive_count,
            }),
            fifo: inner.fifo,
            content_based_deduplication: inner.content_based_deduplication,
        })
    }
}

/// A FIFO system attribute of a delivery; empty for a message without a tag.
fn fifo_attribute(delivery: &HandedOut, value: impl FnOnce(&fifo::Tag) -> String) -> String {
    delivery.fifo.as_deref().map(value).unwrap_or_default()
}

/// A `SequenceNumber` as SQS writes one: twenty digits, so that the numbers are ordered
/// as text as they are as numbers. Written by hand: `format!` took a tenth of a FIFO
/// receive.
fn sequence_number(mut sequence: u64) -> String {
    let mut digits = [b'0'; 20];
    for digit in digits.iter_mut().rev() {
        // A digit, so below 10: the cast keeps it.
        *digit = b'0' + (sequence % 10) as u8;
        sequence /= 10;
    }
    String::from_utf8(digits.to_vec()).unwrap_or_default()
}

/// Checks a receive request the way SQS does.
fn check_receive(
    request: &ReceiveRequest,
    default_visibility: Duration,
) -> Result<ReceiveParams, BackendError> {
    let operation = Operation::Receive.api_name();
    if !(1..=MAX_BATCH).contains(&request.max_messages) {
        return Err(invalid_parameter(
            operation,
            format!(
                "MaxNumberOfMessages {} is not between 1 and {MAX_BATCH}",
                request.max_messages
            ),
        ));
    }
    // Like the SQS backend, wait whole seconds (`WaitTimeSeconds` is an integer).
    let wait_time = whole_seconds_within(request.wait_time, MAX_WAIT).ok_or_else(|| {
        invalid_parameter(
            operation,
            format!(
                "WaitTimeSeconds {:?} is over the 20 s limit",
                request.wait_time
            ),
        )
    })?;
    let visibility = match request.visibility_timeout {
        None => default_visibility,
        Some(timeout) => whole_seconds_within(timeout, MAX_VISIBILITY).ok_or_else(|| {
            invalid_parameter(
                operation,
                format!("VisibilityTimeout {timeout:?} is over the 12 h limit"),
            )
        })?,
    };
    Ok(ReceiveParams {
        max_messages: request.max_messages,
        wait_time,
        visibility,
        attempt_id: request.attempt_id,
    })
}

fn check_batch_size(operation: Operation, entries: usize) -> Result<(), BackendError> {
    let (code, message) = match entries {
        0 => ("EmptyBatchRequest", "the batch request contains no entries"),
        1..=MAX_BATCH => return Ok(()),
        _ => (
            "TooManyEntriesInBatchRequest",
            "the batch request contains more than 10 entries",
        ),
    };
    Err(BackendError::Rejected {
        operation: operation.api_name(),
        code: code.to_owned(),
        message: message.to_owned(),
    })
}

/// `duration` rounded up to whole seconds, if that is at most `max`.
fn whole_seconds_within(duration: Duration, max: Duration) -> Option<Duration> {
    // Compare first: rounding `Duration::MAX` up would overflow.
    if duration > max {
        return None;
    }
    let rounded = Duration::from_secs(whole_seconds(duration));
    (rounded <= max).then_some(rounded)
}

/// What SQS refuses in a message it is sent, with its error codes.
fn check_message(
    operation: &'static str,
    body: &str,
    attributes: &HashMap<String, MessageAttribute>,
) -> Result<(), BackendError> {
    let rejected = |code: &str, message: String| BackendError::Rejected {
        operation,
        code: code.to_owned(),
        message,
    };
    if body.is_empty() {
        return Err(rejected(
            "MissingParameter",
            "The request must contain the parameter MessageBody.".to_owned(),
        ));
    }
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    let strings = std::iter::once(body).chain(
        attributes
            .values()
            .filter_map(|attribute| attribute.string_value.as_deref()),
    );
    for text in strings {
        if let Some(position) = text.find(|c: char| !allowed(c)) {
            return Err(rejected(
                "InvalidMessageContents",
                format!(
                    "Invalid characters found at byte {position}. Valid unicode characters \
                     are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to \
                     #x10FFFF"
                ),
            ));
        }
    }
    if attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(invalid_parameter(
            operation,
            format!(
                "Number of message attributes [{}] exceeds the allowed maximum \
                 [{MAX_MESSAGE_ATTRIBUTES}].",
                attributes.len()
            ),
        ));
    }
    let size = body.len()
        + attributes
            .iter()
            .map(|(name, attribute)| {
                name.len()
                    + attribute.data_type.len()
                    + attribute.string_value.as_ref().map_or(0, String::len)
                    + attribute.binary_value.as_ref().map_or(0, Vec::len)
            })
            .sum::<usize>();
    if size > MAX_MESSAGE_BYTES {
        return Err(invalid_parameter(
            operation,
            format!(
                "One or more parameters are invalid. Reason: Message must be shorter than \
                 {MAX_MESSAGE_BYTES} bytes (is {size})."
            ),
        ));
    }
    Ok(())
}

fn invalid_receipt_handle() -> EntryError {
    EntryError {
        kind: EntryErrorKind::InvalidReceiptHandle,
        code: "ReceiptHandleIsInvalid".to_owned(),
        message: "the receipt handle is stale, unknown, or from another queue".to_owned(),
    }
}

fn past_visibility_cap(timeout: Duration) -> EntryError {
    EntryError {
        kind: EntryErrorKind::Rejected,
        code: "InvalidParameterValue".to_owned(),
        message: format!(
            "VisibilityTimeout {timeout:?} would end more than 12 h after the receive"
        ),
    }
}

/// Wall-clock epoch milliseconds, for the timestamp attributes (tokio's clock has no epoch).
fn epoch_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
