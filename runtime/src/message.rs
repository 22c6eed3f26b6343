//! The message a handler receives, and its context.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;

use crate::backend::{MessageAttribute, ReceivedMessage};
use crate::engine::ShutdownState;

/// One received message, as a handler sees it.
#[derive(Debug)]
pub struct Message {
    received: ReceivedMessage,
    context: Context,
}

impl Message {
    pub(crate) fn new(received: ReceivedMessage, context: Context) -> Self {
        Self { received, context }
    }

    /// The queue-assigned message id.
    pub fn id(&self) -> &str {
        &self.received.message_id
    }

    /// The message body.
    pub fn body(&self) -> &str {
        &self.received.body
    }

    /// Takes the body out of the message.
    pub fn into_body(self) -> String {
        self.received.body
    }

    /// How many times the message has been received, this receive included.
    pub fn receive_count(&self) -> u32 {
        self.received.receive_count()
    }

    /// System attributes (`SentTimestamp`, `ApproximateReceiveCount`, `MessageGroupId`, …).
    pub fn attributes(&self) -> &HashMap<String, String> {
        &self.received.attributes
    }

    /// User-defined message attributes.
    pub fn message_attributes(&self) -> &HashMap<String, MessageAttribute> {
        &self.received.message_attributes
    }

    /// The message as the queue returned it.
    pub fn received(&self) -> &ReceivedMessage {
        &self.received
    }

    /// The context of this delivery: cancellation and the shutdown deadline.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

/// What a handler can learn about the worker around it.
#[derive(Clone, Debug)]
pub struct Context {
    shutdown: Arc<ShutdownState>,
    received_at: Instant,
}

impl Context {
    pub(crate) fn new(shutdown: Arc<ShutdownState>, received_at: Instant) -> Self {
        Self {
            shutdown,
            received_at,
        }
    }

    /// Resolves when the worker gives up on running handlers (the shutdown grace period
    /// ran out). The handler's future is dropped right after and its message released.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancel_handlers.cancelled()
    }

    /// Resolves when the worker begins to shut down (SIGTERM): running handlers may
    /// go on until [`deadline`](Self::deadline), but a long job should checkpoint now,
    /// e.g. by returning [`Outcome::Continue`](crate::Outcome::Continue).
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.stopping.cancelled()
    }

    /// Whether [`cancelled`](Self::cancelled) has fired.
    pub fn is_cancelled(&self) -> bool {
        self.shutdown.cancel_handlers.is_cancelled()
    }

    /// The instant the worker will cancel running handlers, once shutdown has begun.
    pub fn deadline(&self) -> Option<Instant> {
        self.shutdown.deadline.get().copied()
    }

    /// When the message was received.
    pub fn received_at(&self) -> Instant {
        self.received_at
    }
}
