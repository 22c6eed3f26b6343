//! spotq: SQS queue workers for Amazon ECS Fargate Spot.

pub mod backend;
mod backoff;
mod config;
pub mod embedded;
mod engine;
pub mod error;
mod handler;
mod message;
mod worker;

pub use backend::{Backend, QueueAttributes, ReceiptHandle, ReceivedMessage, SqsBackend};
pub use backoff::Backoff;
pub use config::{Heartbeat, RetryPolicy, WorkerConfig};
pub use embedded::EmbeddedQueue;
pub use engine::stats::RunReport;
pub use error::{BackendError, ConfigError, Error, HandlerError};
pub use handler::{Handler, IntoOutcome, Outcome};
pub use message::{Context, Message};
pub use worker::{Worker, WorkerBuilder};
