//! The same handlers on AWS Lambda: an SQS-triggered function that reports partial
//! batch failures (`ReportBatchItemFailures`).
//!
//! A [`WorkerSpec`] (what `#[spotq::worker]` generates) serves a Lambda event source
//! mapping through `lambda_runtime`: each record of the [`SqsEvent`] becomes a
//! [`Message`], the handler runs as it would in a worker, and every message that did not
//! succeed is listed in the [`SqsBatchResponse`]'s `batchItemFailures`, so Lambda deletes
//! the rest and the queue's redrive policy sees the same failures as with a worker.
//!
//! ```no_run
//! use spotq::{config::QueueSource, config::WorkerConfig, WorkerSpec};
//!
//! async fn handle(message: spotq::Message) -> Result<(), std::io::Error> {
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), spotq::handler::BoxError> {
//!     let spec = WorkerSpec::new(QueueSource::env("QUEUE"), WorkerConfig::default(), handle);
//!     spotq::lambda::run(spec).await
//! }
//! ```
//!
//! Differences from a worker: Lambda owns receiving, deleting and visibility, so the
//! worker's settings do not apply; a message whose handler asks for
//! [`Outcome::RetryAfter`] or [`Outcome::Continue`] is reported failed (Lambda retries
//! it after the queue's visibility timeout), and a panic fails its message only.

use std::panic::AssertUnwindSafe;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::FutureExt;
use futures_util::future::join_all;

use crate::api::batch::{BatchHandler, BatchOutcome};
use crate::api::handler::{Handler, Outcome};
use crate::api::input::from_lambda;
use crate::api::message::Message;
use crate::error::BoxError;
use crate::worker::spec::WorkerSpec;

/// Runs `spec`'s handler as the Lambda function of this process, until the Lambda
/// runtime stops it.
pub async fn run(spec: WorkerSpec) -> Result<(), BoxError> {
    let spec = &spec;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(handle_event(spec, event.payload).await)
        },
    ))
    .await
}

/// Handles one SQS event with `spec`'s handler and says which records failed.
pub async fn handle_event(spec: &WorkerSpec, event: SqsEvent) -> SqsBatchResponse {
    let messages: Vec<_> = event
        .records
        .into_iter()
        .map(|record| Message::detached(from_lambda(record)))
        .collect();
    let ids: Vec<String> = messages
        .iter()
        .map(|message| message.id().to_owned())
        .collect();
    let failed: Vec<String> = if let Some(handler) = spec.batch_handler() {
        let outcome = AssertUnwindSafe(handler.handle(messages))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| BatchOutcome::fail("the batch handler panicked"));
        // As in a worker: a failure naming a stranger fails the whole batch.
        match outcome.within(|id| ids.iter().any(|known| known == id)) {
            BatchOutcome::Ack => Vec::new(),
            BatchOutcome::Partial(failures) => failures
                .into_iter()
                .map(|failure| failure.message_id)
                .collect(),
            BatchOutcome::Fail(error) => {
                tracing::warn!(%error, "batch failed");
                ids
            }
        }
    } else if let Some(handler) = spec.handler() {
        let outcomes = join_all(messages.into_iter().map(|message| {
            AssertUnwindSafe(handler.handle(message))
                .catch_unwind()
                .map(|result| result.unwrap_or_else(|_| Outcome::fail("the handler panicked")))
        }))
        .await;
        ids.into_iter()
            .zip(outcomes)
            .filter_map(|(id, outcome)| match outcome {
                Outcome::Ack => None,
                Outcome::Fail(error) => {
                    tracing::warn!(message_id = %id, kind = error.kind(), %error, "handler failed");
                    Some(id)
                }
                Outcome::RetryAfter(_) | Outcome::Continue(_) => Some(id),
            })
            .collect()
    } else {
        ids
    };
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
