//! Batch handlers: one call for every message of a receive, with partial failures.
//!
//! A batch handler reports which messages failed with the meaning of Lambda's
//! `SqsBatchResponse` (`batchItemFailures`): the listed messages are retried per the
//! worker's retry policy, the rest are deleted. A failure that names a message not in
//! the batch fails the whole batch, as on Lambda.

use std::future::Future;

use aws_lambda_events::sqs::SqsBatchResponse;

use crate::api::message::Message;
use crate::error::{BoxError, HandlerError};

/// What the worker does with the messages of a batch once its handler returns.
#[derive(Debug)]
#[non_exhaustive]
pub enum BatchOutcome {
    /// Every message is done: delete them all.
    Ack,
    /// These messages failed and are retried; every other message is deleted.
    Partial(Vec<ItemFailure>),
    /// The whole batch failed: every message is retried.
    Fail(HandlerError),
}

impl BatchOutcome {
    /// Every message failed with this error.
    pub fn fail(error: impl Into<BoxError>) -> Self {
        Self::Fail(HandlerError::failed(error))
    }

    /// The failures of a batch: [`Ack`](Self::Ack) when there are none.
    pub fn failures(failures: impl IntoIterator<Item = ItemFailure>) -> Self {
        let failures: Vec<_> = failures.into_iter().collect();
        if failures.is_empty() {
            Self::Ack
        } else {
            Self::Partial(failures)
        }
    }
}

impl BatchOutcome {
    /// The outcome for a batch whose messages are those `is_member` accepts: a partial
    /// failure that names a message outside the batch fails the whole batch, as Lambda
    /// does with an invalid `itemIdentifier` (deleting the rest could lose work).
    pub(crate) fn within(self, is_member: impl Fn(&str) -> bool) -> Self {
        let Self::Partial(failures) = &self else {
            return self;
        };
        match failures
            .iter()
            .find(|failure| !is_member(&failure.message_id))
        {
            Some(stranger) => Self::Fail(HandlerError::failed(format!(
                "the batch's failures name `{}`, which is not one of its messages",
                stranger.message_id
            ))),
            None => self,
        }
    }
}

/// One failed message of a batch.
#[derive(Debug)]
pub struct ItemFailure {
    /// The failed message's id ([`Message::id`]).
    pub message_id: String,
    /// Why it failed.
    pub error: HandlerError,
}

impl ItemFailure {
    /// The message with this id failed with `error`.
    pub fn new(message_id: impl Into<String>, error: impl Into<BoxError>) -> Self {
        Self {
            message_id: message_id.into(),
            error: HandlerError::failed(error),
        }
    }
}

/// Values a batch handler may return: `()`, [`BatchOutcome`], Lambda's
/// [`SqsBatchResponse`], or a `Result` of one of them whose error (any `E` that converts
/// into a boxed error) fails the whole batch.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch handler's result",
    note = "a batch handler returns `()`, `spotq::handler::BatchOutcome`, \
            `aws_lambda_events::sqs::SqsBatchResponse`, or `Result<_, E>` of one of them \
            with `E: Into<BoxError>`"
)]
pub trait IntoBatchOutcome {
    /// The outcome this value stands for.
    fn into_batch_outcome(self) -> BatchOutcome;
}

impl IntoBatchOutcome for BatchOutcome {
    fn into_batch_outcome(self) -> BatchOutcome {
        self
    }
}

impl IntoBatchOutcome for () {
    fn into_batch_outcome(self) -> BatchOutcome {
        BatchOutcome::Ack
    }
}

impl IntoBatchOutcome for SqsBatchResponse {
    fn into_batch_outcome(self) -> BatchOutcome {
        BatchOutcome::failures(self.batch_item_failures.into_iter().map(|failure| {
            ItemFailure::new(failure.item_identifier, "listed in batchItemFailures")
        }))
    }
}

impl<T: IntoBatchOutcome, E: Into<BoxError>> IntoBatchOutcome for Result<T, E> {
    fn into_batch_outcome(self) -> BatchOutcome {
        self.map_or_else(BatchOutcome::fail, T::into_batch_outcome)
    }
}

/// Processes the messages of one receive (up to the batch size) in one call.
///
/// Any `Fn(Vec<Message>) -> impl Future<Output = R>` is a batch handler, where `R` is an
/// [`IntoBatchOutcome`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a spotq batch handler",
    note = "a batch handler is an `async fn(Vec<spotq::Message>) -> R` (or a closure returning \
            a future) that is `Send + Sync + 'static`, whose future is `Send`, and whose `R` \
            is `()`, `spotq::handler::BatchOutcome`, `SqsBatchResponse` or a `Result` of one of them"
)]
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles the messages of one receive.
    fn handle(&self, messages: Vec<Message>)
    -> impl Future<Output = BatchOutcome> + Send + 'static;

    /// Resolves once the handler can take another batch; as [`Handler::ready`].
    ///
    /// [`Handler::ready`]: crate::handler::Handler::ready
    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::ready(())
    }
}

impl<F, Fut, R> BatchHandler for F
where
    F: Fn(Vec<Message>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoBatchOutcome,
{
    fn handle(
        &self,
        messages: Vec<Message>,
    ) -> impl Future<Output = BatchOutcome> + Send + 'static {
        let future = self(messages);
        async move { future.await.into_batch_outcome() }
    }
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::sqs::BatchItemFailure;

    use super::*;

    #[test]
    fn a_lambda_response_lists_the_failed_messages() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = "m-2".to_owned();
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures.push(failure);
        let BatchOutcome::Partial(failures) = response.into_batch_outcome() else {
            panic!("expected a partial failure");
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].message_id, "m-2");
    }

    #[test]
    fn an_empty_lambda_response_acks_the_batch() {
        assert!(matches!(
            SqsBatchResponse::default().into_batch_outcome(),
            BatchOutcome::Ack
        ));
    }

    #[test]
    fn a_failure_naming_a_stranger_fails_the_whole_batch() {
        let members = |id: &str| id == "m-1" || id == "m-2";
        let named = BatchOutcome::failures([ItemFailure::new("m-2", "bad")]).within(members);
        assert!(matches!(named, BatchOutcome::Partial(ref failures) if failures.len() == 1));
        let stranger = BatchOutcome::failures([ItemFailure::new("m-9", "bad")]).within(members);
        let BatchOutcome::Fail(error) = stranger else {
            panic!("expected the whole batch to fail");
        };
        assert!(error.to_string().contains("m-9"), "{error}");
    }

    #[test]
    fn an_error_fails_the_whole_batch() {
        let result: Result<(), std::io::Error> = Err(std::io::Error::other("db down"));
        let BatchOutcome::Fail(error) = result.into_batch_outcome() else {
            panic!("expected the batch to fail");
        };
        assert!(error.to_string().contains("db down"), "{error}");
    }
}
