//! The message a handler receives, and its context.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;

use crate::backend::{MessageAttribute, ReceiptHandle, ReceivedMessage};
use crate::contract::Contract;

/// One received message, as a handler sees it.
#[derive(Debug)]
pub struct Message {
    body: String,
    receipt_handle: ReceiptHandle,
    md5_of_body: Option<String>,
    context: Context,
}

impl Message {
    /// A message as the queue handed it out, received at `received_at`, in a worker whose
    /// shutdown is `shutdown`.
    pub(crate) fn new(
        received: ReceivedMessage,
        shutdown: Arc<Contract>,
        received_at: Instant,
    ) -> Self {
        let receive_count = received.receive_count();
        let ReceivedMessage {
            message_id,
            receipt_handle,
            body,
            md5_of_body,
            attributes,
            message_attributes,
        } = received;
        Self {
            body,
            receipt_handle,
            md5_of_body,
            context: Context {
                message_id,
                receive_count,
                attributes,
                message_attributes,
                shutdown,
                received_at,
            },
        }
    }

    /// A message outside any worker (e.g. from a Lambda event, or in a unit test): its
    /// context never reports a shutdown.
    pub fn detached(received: ReceivedMessage) -> Self {
        Self::new(received, Arc::default(), Instant::now())
    }

    /// The queue-assigned message id.
    pub fn id(&self) -> &str {
        self.context.message_id()
    }

    /// The message body.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Takes the body out of the message.
    pub fn into_body(self) -> String {
        self.body
    }

    /// Splits the message into its body and its context.
    pub fn into_parts(self) -> (String, Context) {
        (self.body, self.context)
    }

    /// How many times the message has been received, this receive included.
    pub fn receive_count(&self) -> u32 {
        self.context.receive_count()
    }

    /// System attributes (`SentTimestamp`, `ApproximateReceiveCount`, `MessageGroupId`, …).
    pub fn attributes(&self) -> &HashMap<String, String> {
        self.context.attributes()
    }

    /// User-defined message attributes.
    pub fn message_attributes(&self) -> &HashMap<String, MessageAttribute> {
        self.context.message_attributes()
    }

    /// The handle of this receive. The worker deletes the message or changes its
    /// visibility with it; a handler rarely needs it.
    pub fn receipt_handle(&self) -> &ReceiptHandle {
        &self.receipt_handle
    }

    /// MD5 of the body (hex), where the queue reported it.
    pub fn md5_of_body(&self) -> Option<&str> {
        self.md5_of_body.as_deref()
    }

    /// The context of this delivery: the message's id, attributes and receive count,
    /// cancellation and the shutdown deadline.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

/// What a handler can learn about the message it handles and the worker around it.
#[derive(Clone, Debug)]
pub struct Context {
    message_id: String,
    receive_count: u32,
    attributes: HashMap<String, String>,
    message_attributes: HashMap<String, MessageAttribute>,
    shutdown: Arc<Contract>,
    received_at: Instant,
}

impl Context {
    /// The queue-assigned id of the message being handled.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// How many times the message has been received, this receive included.
    pub fn receive_count(&self) -> u32 {
        self.receive_count
    }

    /// The message's system attributes (`SentTimestamp`, `MessageGroupId`, …).
    pub fn attributes(&self) -> &HashMap<String, String> {
        &self.attributes
    }

    /// The message's user-defined attributes.
    pub fn message_attributes(&self) -> &HashMap<String, MessageAttribute> {
        &self.message_attributes
    }

    /// Resolves when the worker gives up on running handlers (the shutdown grace period
    /// ran out). The handler's future is dropped right after and its message released.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Resolves when the worker begins to shut down (SIGTERM): running handlers may
    /// go on until [`deadline`](Self::deadline), but a long job should checkpoint now,
    /// e.g. by returning [`Outcome::Continue`](crate::Outcome::Continue).
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.stopping()
    }

    /// Whether [`cancelled`](Self::cancelled) has fired.
    pub fn is_cancelled(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The instant the worker will cancel running handlers, once shutdown has begun.
    pub fn deadline(&self) -> Option<Instant> {
        self.shutdown.deadlines().map(|deadlines| deadlines.grace)
    }

    /// When the message was received.
    pub fn received_at(&self) -> Instant {
        self.received_at
    }
}
