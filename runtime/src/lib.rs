//! SQS queue workers for Amazon ECS Fargate Spot that scale to zero.
//!
//! Hand an `async fn` to a [`Worker`] and get concurrent consumers that receive only what
//! they can start, delete in batches, keep long jobs invisible with heartbeats, and on
//! shutdown hand every message they still hold back to the queue at once.
//!
//! ```
//! use std::time::Duration;
//! use spotq::{EmbeddedQueue, Message, Outcome, Worker};
//!
//! async fn handle(message: Message) -> Outcome {
//!     match message.body().parse::<u32>() {
//!         Ok(_) => Outcome::Ack,
//!         Err(error) => Outcome::fail(error),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), spotq::Error> {
//! // The embedded queue behaves like SQS; `SqsBackend::from_env("orders")` is the real one.
//! let dead_letters = EmbeddedQueue::new("jobs-dlq");
//! let queue = EmbeddedQueue::builder("jobs").redrive(&dead_letters, 3).build()?;
//! queue.send_many(["1", "2", "three"]);
//!
//! let drained = {
//!     let queue = queue.clone();
//!     async move {
//!         while queue.counts().total() > 0 {
//!             tokio::time::sleep(Duration::from_millis(10)).await;
//!         }
//!     }
//! };
//! let report = Worker::builder(queue)
//!     .concurrency(8)
//!     .retry_backoff(Duration::ZERO, Duration::ZERO)
//!     .handler(handle)
//!     .run_until(drained)
//!     .await?;
//! assert_eq!(report.deleted, 2);
//! assert_eq!(dead_letters.counts().visible, 1); // "three" failed 3 times
//! # Ok(())
//! # }
//! ```
//!
//! - [`Worker`] and [`WorkerConfig`]: the engine and its settings, checked before the
//!   first queue call.
//! - [`Handler`], [`Message`], [`Context`], [`Outcome`]: what user code sees.
//! - [`Backend`]: the queue seam, with [`SqsBackend`] (`aws-sdk-sqs`) and
//!   [`EmbeddedQueue`] (in-process, SQS semantics, fault injection).
//! - [`Worker::run`]: the ECS task's main loop (SIGTERM/SIGINT); [`ShutdownHandle`] to
//!   embed it; [`protection`] for task scale-in protection.
//! - [`serve`], [`emf`], [`logging`], [`Health`], [`ecs`]: what a worker binary exposes
//!   (`/metrics`, `/health`, `/ready`, EMF lines, JSON logs) and the task count behind
//!   backlog per task; [`metric_names`] for programs that read `/metrics`.

mod api;
pub mod backend;
mod backoff;
pub mod ecs;
pub mod engine;
pub mod error;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod shutdown;
mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod worker;

/// Lambda's event types (`aws_lambda_events`), for handlers that take an
/// [`SqsMessage`](lambda_events::sqs::SqsMessage) or return an
/// [`SqsBatchResponse`](lambda_events::sqs::SqsBatchResponse).
pub use aws_lambda_events as lambda_events;
/// `#[spotq::worker]`: turns an `async fn` into a worker; see [`spotq_macros::worker`].
#[cfg(feature = "macros")]
pub use spotq_macros::worker;

pub use api::batch::{BatchHandler, BatchOutcome, IntoBatchOutcome, ItemFailure};
pub use api::handler::{Handler, IntoOutcome, Outcome};
pub use api::input;
pub use api::message::{Context, Message};
pub use backend::embedded::{self, EmbeddedQueue};
pub use backend::{
    Backend, QueueAttributes, ReceiptHandle, ReceivedMessage, SendMessage, SqsBackend,
};
pub use backoff::{Backoff, retry};
pub use ecs::protection;
pub use error::{BackendError, ConfigError, Error, HandlerError};
pub use shutdown::ShutdownHandle;
pub use telemetry::health::{self, Health};
pub use telemetry::metrics::names as metric_names;
pub use telemetry::stats::RunReport;
pub use telemetry::{emf, logging, serve};
pub use worker::builder::{Worker, WorkerBuilder};
pub use worker::config::{EmfSettings, Heartbeat, RetryPolicy, WorkerConfig};
pub use worker::drain::Drained;
pub use worker::spec::{QueueSource, WorkerSpec, run, run_all, run_with};
