//! The backend seam: what the engine needs from a queue.
//!
//! A [`Backend`] receives messages, deletes them in batches, changes their visibility in
//! batches and reads the queue's attributes. Two implementations ship with spotq:
//! [`SqsBackend`](crate::SqsBackend) over `aws-sdk-sqs` (feature `sqs`, on by default),
//! and the in-process [`EmbeddedQueue`](crate::EmbeddedQueue) with SQS semantics (always
//! there: its [builder](EmbeddedQueueBuilder), [fault injection](Faults) and
//! [request counts](RequestStats) are here).
//!
//! Batch calls return one result per entry, in the order of the request: like SQS, a
//! batch call can succeed as a whole (HTTP 200) while single entries fail.
//!
//! A wrapper that changes a call or two of another backend (fault injection, recording)
//! implements [`Intercept`] and runs as an [`Intercepted`].
//!
//! Every call spotq makes goes through one retry loop, [`retry`] with a [`Backoff`](crate::config::Backoff)
//! (`spotq::config::Backoff`), and an SDK failure is sorted into a [`BackendError`] by
//! [`classify`]; programs that make their own SQS or ECS calls (`spotq-controller`) use
//! the same. [`Drained`] waits for a queue's counts to read empty.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::backoff::retry;
pub use crate::error::BackendError;

mod drain;
pub(crate) mod embedded;
pub(crate) mod fifo;
mod intercept;
#[cfg(any(feature = "sqs", feature = "ecs"))]
pub(crate) mod sdk_error;
#[cfg(any(feature = "sqs", feature = "ecs"))]
pub(crate) mod sdk_timeouts;
#[cfg(feature = "sqs")]
pub(crate) mod sqs;

pub use drain::Drained;
pub use embedded::{
    EmbeddedQueueBuilder, Faults, InjectedFaults, MAX_MESSAGE_ATTRIBUTES, MAX_MESSAGE_BYTES,
    Operation, RequestStats,
};
pub use fifo::{MAX_FIFO_ID_LEN, ReceiveAttemptId};
pub use intercept::{Intercept, Intercepted};
#[cfg(any(feature = "sqs", feature = "ecs"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqs", feature = "ecs"))))]
pub use sdk_error::classify;
#[cfg(any(feature = "sqs", feature = "ecs"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqs", feature = "ecs"))))]
pub use sdk_timeouts::{ATTEMPT_TIMEOUT, OPERATION_TIMEOUT};
pub use spotq_settings::limits::{MAX_BATCH, MAX_VISIBILITY, MAX_WAIT};

/// An opaque token that identifies one receive of one message.
///
/// It goes stale when the message is received again: deleting or changing the
/// visibility of a message through a stale handle fails with
/// [`EntryErrorKind::InvalidReceiptHandle`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(Arc<str>);

impl ReceiptHandle {
    /// Wraps a receipt handle string as returned by the queue.
    pub fn new(handle: impl Into<Arc<str>>) -> Self {
        Self(handle.into())
    }

    /// The handle as the queue returned it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ReceiptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Receipt handles are long and grant delete rights: show a short prefix only.
        let prefix: String = self.0.chars().take(12).collect();
        write!(f, "ReceiptHandle({prefix}…)")
    }
}

/// A user-defined message attribute (SQS `MessageAttributes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageAttribute {
    /// `String`, `Number`, `Binary`, or one of those with a custom suffix (`Number.int`).
    pub data_type: String,
    /// The value of a `String` or `Number` attribute.
    pub string_value: Option<String>,
    /// The value of a `Binary` attribute.
    pub binary_value: Option<Vec<u8>>,
}

impl MessageAttribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        Self {
            data_type: "String".to_owned(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }
}

/// One message as the queue handed it out.
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    /// The queue-assigned message id; stable across receives.
    pub message_id: String,
    /// The handle of this receive, needed to delete the message or change its visibility.
    pub receipt_handle: ReceiptHandle,
    /// The message body.
    pub body: String,
    /// MD5 of the body, as SQS reports it (hex), where the backend provides it.
    pub md5_of_body: Option<String>,
    /// System attributes (`ApproximateReceiveCount`, `SentTimestamp`, `MessageGroupId`, …).
    pub attributes: HashMap<String, String>,
    /// User-defined message attributes.
    pub message_attributes: HashMap<String, MessageAttribute>,
}

impl ReceivedMessage {
    /// How many times the message has been received, this receive included
    /// (`ApproximateReceiveCount`; 1 when the backend did not report it).
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1)
    }
}

/// A message to send: a body plus the optional parameters of SQS `SendMessage`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendMessage {
    /// The message body.
    pub body: String,
    /// `DelaySeconds` of this message, overriding the queue's delay; at most 15 min,
    /// a fraction of a second rounded up.
    pub delay: Option<Duration>,
    /// User-defined message attributes, returned with every receive.
    pub attributes: HashMap<String, MessageAttribute>,
    /// `MessageGroupId`: required on FIFO queues (messages of one group are delivered
    /// in order), optional on standard ones. At most [`MAX_FIFO_ID_LEN`] ASCII letters,
    /// digits and punctuation marks.
    pub group_id: Option<String>,
    /// `MessageDeduplicationId` (FIFO queues only): a message sent with the id of one
    /// sent in the last 5 minutes is accepted but not stored again. Required on FIFO
    /// queues without content-based deduplication; on those with it, it replaces the
    /// SHA-256 of the body. Same characters as the group id.
    pub deduplication_id: Option<String>,
}

impl SendMessage {
    /// A message with this body, the queue's delay and no attributes.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Delays this message by `delay` instead of the queue's delay.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Adds a user-defined message attribute.
    #[must_use]
    pub fn attribute(mut self, name: impl Into<String>, value: MessageAttribute) -> Self {
        self.attributes.insert(name.into(), value);
        self
    }

    /// Sets the message group (FIFO order).
    #[must_use]
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets the deduplication id (FIFO queues).
    #[must_use]
    pub fn deduplication_id(mut self, deduplication_id: impl Into<String>) -> Self {
        self.deduplication_id = Some(deduplication_id.into());
        self
    }
}

/// What a receive call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// How many messages at most, 1 to [`MAX_BATCH`].
    pub max_messages: usize,
    /// How long to wait for a first message (long poll), at most [`MAX_WAIT`].
    pub wait_time: Duration,
    /// The visibility timeout of the received messages; the queue's default when `None`.
    pub visibility_timeout: Option<Duration>,
    /// `ReceiveRequestAttemptId` (FIFO queues): a receive retried with the id of one
    /// whose answer was lost gets that one's messages back. See [`ReceiveAttemptId`].
    pub attempt_id: Option<ReceiveAttemptId>,
}

/// Why one entry of a batch call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryErrorKind {
    /// The receipt handle is stale or unknown (`ReceiptHandleIsInvalid`): the message was
    /// received again or already deleted. Not retryable.
    InvalidReceiptHandle,
    /// The request was invalid for this entry, e.g. a visibility past the 12 h cap
    /// (`InvalidParameterValue`, `MessageNotInflight`). Not retryable.
    Rejected,
    /// The queue failed on its side for this entry. Retryable.
    Internal,
}

/// The failure of one entry of a batch call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EntryError {
    /// What the failure means for the caller.
    pub kind: EntryErrorKind,
    /// The queue's error code, e.g. `ReceiptHandleIsInvalid`.
    pub code: String,
    /// The queue's message.
    pub message: String,
}

impl EntryError {
    /// Whether sending the same entry again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == EntryErrorKind::Internal
    }
}

/// The result of one entry of a batch call.
pub type EntryResult = Result<(), EntryError>;

/// One entry of a change-visibility batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisibilityChange {
    /// The receive to change.
    pub receipt_handle: ReceiptHandle,
    /// The new timeout, counted from the call; zero makes the message visible at once.
    /// Queues count whole seconds: a fraction is rounded up.
    pub timeout: Duration,
}

/// A queue's redrive policy: where messages go after too many receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// The dead-letter queue's ARN (or name, for the embedded queue).
    pub dead_letter_target: String,
    /// Receives after which the next receive moves the message to the dead-letter queue.
    pub max_receive_count: u32,
}

/// Approximate counts of a queue, as `GetQueueAttributes` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// `ApproximateNumberOfMessages`: messages a receive could take now, including
    /// received messages whose visibility timeout has lapsed.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: messages in flight (received, not yet
    /// deleted, visibility timeout not lapsed).
    pub not_visible: u64,
    /// `ApproximateNumberOfMessagesDelayed`: messages whose delay has not passed yet.
    pub delayed: u64,
}

impl QueueCounts {
    /// All messages in the queue, whatever their state.
    pub fn total(&self) -> u64 {
        self.visible + self.not_visible + self.delayed
    }

    /// Whether all three counts are 0.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// The approximate counts and settings of a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueAttributes {
    /// `ApproximateNumberOfMessages`, `…NotVisible` and `…Delayed`.
    pub counts: QueueCounts,
    /// The queue's default visibility timeout.
    pub visibility_timeout: Duration,
    /// The redrive policy, if the queue has one.
    pub redrive_policy: Option<RedrivePolicy>,
    /// Whether the queue is a FIFO queue (`FifoQueue`).
    pub fifo: bool,
    /// Whether a FIFO queue derives the deduplication id of a message sent without one
    /// from its body (`ContentBasedDeduplication`).
    pub content_based_deduplication: bool,
}

/// What the engine needs from a queue.
///
/// Implementations return [`BackendError`] for a failed call as a whole and an
/// [`EntryResult`] per entry for batch calls. They must be cheap to share: the engine
/// holds one `Arc<dyn Backend>` across all its tasks.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and metrics labels, e.g. the queue name.
    fn name(&self) -> &str;

    /// Receives up to `request.max_messages` messages, waiting up to `request.wait_time`
    /// for the first one. An empty vector means the wait ran out.
    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError>;

    /// Whether dropping a [`receive`](Self::receive) in progress loses nothing. SQS may
    /// already have handed messages to a request its client abandons; they would stay
    /// invisible until their visibility timeout. So, by default (`false`), a worker that
    /// begins to shut down lets a receive under way finish for a moment and releases
    /// what it returns; a backend that takes messages only as it returns them (the
    /// embedded queue) answers `true`, and its receives are dropped at once.
    fn receive_cancel_safe(&self) -> bool {
        false
    }

    /// Deletes up to [`MAX_BATCH`] messages; one result per handle, in order.
    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError>;

    /// Changes the visibility of up to [`MAX_BATCH`] messages; one result per entry, in order.
    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError>;

    /// Reads the queue's approximate counts and settings.
    async fn attributes(&self) -> Result<QueueAttributes, BackendError>;

    /// Sends one message to the queue; returns its message id. The engine sends a
    /// handler's continuation with it.
    async fn send(&self, message: SendMessage) -> Result<String, BackendError>;
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn receive_cancel_safe(&self) -> bool {
        (**self).receive_cancel_safe()
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        (**self).receive(request).await
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        (**self).delete_batch(handles).await
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        (**self).change_visibility_batch(changes).await
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        (**self).attributes().await
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        (**self).send(message).await
    }
}

/// Rounds a duration up to whole seconds, as queues count visibility and delays.
pub(crate) fn whole_seconds(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    }
}
