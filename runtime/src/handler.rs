//! Handlers: what a worker calls for its messages, and the machinery around them.
//!
//! A handler is an `async fn` of a [`Message`](crate::Message) (or of a typed input, see
//! [`input`]) that returns an [`Outcome`](crate::Outcome) — or anything
//! [`IntoOutcome`], such as a `Result`. [`Handler`] is the trait behind it;
//! [`BatchHandler`] takes all the messages of one receive and answers with a
//! [`BatchOutcome`].
//!
//! Handlers are [`tower::Service`]s too: [`HandlerService`] turns a handler into one,
//! [`ServiceHandler`] turns any service back into a handler, so a worker takes tower's
//! layers ([`WorkerBuilder::layer`](crate::WorkerBuilder::layer)).
//!
//! [`PerMessage`], [`PerBatch`], [`Dispatch`] and [`Wrap`] are how a worker calls its
//! handler and wraps it in layers; they appear in the types of
//! [`Worker`](crate::Worker) and [`WorkerBuilder`](crate::WorkerBuilder), and user code
//! implements none of them. [`BoxedHandler`] and [`BoxedBatchHandler`] are the handlers
//! of a [`WorkerSpec`](crate::WorkerSpec).

pub use crate::api::batch::{BatchHandler, BatchOutcome, IntoBatchOutcome, ItemFailure};
pub use crate::api::handler::{Handler, IntoOutcome};
pub use crate::api::input;
pub use crate::api::service::{HandlerService, ServiceHandler};
pub use crate::engine::{Dispatch, PerBatch, PerMessage, Wrap};
pub use crate::error::{BoxError, DecodeError, DecodeErrorKind, HandlerError};
pub use crate::worker::spec::{Boxed, BoxedBatchHandler, BoxedHandler};
/// Lambda's event types (`aws_lambda_events`), for handlers that take an
/// [`SqsMessage`](lambda_events::sqs::SqsMessage) or return an
/// [`SqsBatchResponse`](lambda_events::sqs::SqsBatchResponse).
pub use aws_lambda_events as lambda_events;
