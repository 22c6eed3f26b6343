//! Handlers and their outcomes.

use std::future::Future;
use std::time::Duration;

use crate::api::message::Message;
use crate::backend::SendMessage;
use crate::error::{BoxError, HandlerError};

/// What the worker does with a message once its handler returns.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The message is done: delete it.
    Ack,
    /// Make the message visible again after this delay (whole seconds, at most 12 h from
    /// the receive), without counting it as a failure.
    RetryAfter(Duration),
    /// The handler failed: retry per the worker's [`RetryPolicy`](crate::config::RetryPolicy);
    /// after the queue's `maxReceiveCount` the queue's redrive policy moves the message to
    /// its dead-letter queue.
    Fail(HandlerError),
    /// Hand the rest of the work on: send this message (the work's state) to the same
    /// queue, then delete the one being handled. A long job checkpoints this way when
    /// its task is stopping ([`Context::stopping`](crate::Context::stopping)), and goes
    /// on elsewhere without a receive counted towards the dead-letter queue. On a FIFO
    /// queue the continuation keeps the message's group unless it names its own, and
    /// on one without content-based deduplication it is sent with the message's id as
    /// its deduplication id unless it names its own: a message handed on twice (its
    /// delete failed) hands on once. If the send fails, nothing is deleted and the
    /// message counts as failed.
    Continue(SendMessage),
}

impl Outcome {
    /// A failure from any error.
    pub fn fail(error: impl Into<BoxError>) -> Self {
        Self::Fail(HandlerError::failed(error))
    }
}

/// Values a handler may return: [`Outcome`], `()`, `Result<(), E>` or
/// `Result<Outcome, E>`, where `E` converts into a boxed error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler's result",
    note = "a handler returns `()`, `spotq::Outcome`, `Result<(), E>` or \
            `Result<spotq::Outcome, E>` with `E: Into<Box<dyn Error + Send + Sync>>`"
)]
pub trait IntoOutcome {
    /// The outcome this value stands for.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Ack
    }
}

impl<E: Into<BoxError>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(()) => Outcome::Ack,
            Err(error) => Outcome::fail(error),
        }
    }
}

impl<E: Into<BoxError>> IntoOutcome for Result<Outcome, E> {
    fn into_outcome(self) -> Outcome {
        self.unwrap_or_else(Outcome::fail)
    }
}

/// Processes one message at a time; the worker runs many calls concurrently.
///
/// Any `Fn(Message) -> impl Future<Output = R>` is a handler, where `R` is an
/// [`IntoOutcome`] (`()`, `Result<(), E>`, [`Outcome`], …).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a spotq handler",
    note = "a handler is an `async fn(spotq::Message) -> R` (or a closure returning a future) \
            that is `Send + Sync + 'static`, whose future is `Send`, and whose `R` is `()`, \
            `spotq::Outcome`, `Result<(), E>` or `Result<spotq::Outcome, E>` with `E: Into<BoxError>`"
)]
pub trait Handler: Send + Sync + 'static {
    /// Handles one message. The future owns what it needs (it does not borrow the
    /// handler), so the worker can start it before its task exists.
    fn handle(&self, message: Message) -> impl Future<Output = Outcome> + Send + 'static;

    /// Resolves once the handler can take another message. The poller waits for it
    /// before it takes slots and receives, so a handler that is not ready (a rate
    /// limit, say) holds receiving back instead of leaving messages received and
    /// waiting. Plain functions are always ready; a [`ServiceHandler`] is ready when
    /// its service is.
    ///
    /// [`ServiceHandler`]: crate::handler::ServiceHandler
    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::ready(())
    }
}

impl<F, Fut, R> Handler for F
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoOutcome,
{
    fn handle(&self, message: Message) -> impl Future<Output = Outcome> + Send + 'static {
        // Called at once, so the wrapper holds the handler's future, not the message.
        let future = self(message);
        async move { future.await.into_outcome() }
    }
}
