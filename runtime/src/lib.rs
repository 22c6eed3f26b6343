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
//! let worker = Worker::builder(queue.clone())
//!     .concurrency(8)
//!     .retry_backoff(Duration::ZERO, Duration::ZERO)
//!     .handler(handle);
//! // Until the queue holds no message; `worker.run()` runs until SIGTERM instead.
//! let report = spotq::testing::run_until_drained(worker, &queue).await?;
//! assert_eq!(report.deleted, 2);
//! assert_eq!(dead_letters.counts().visible, 1); // "three" failed 3 times
//! # Ok(())
//! # }
//! ```
//!
//! The root holds the user's path: the [`worker`] attribute and [`run`] (or [`Worker`]
//! and its [`WorkerBuilder`]), what a handler sees ([`Message`], [`Context`],
//! [`Outcome`]), the two backends ([`SqsBackend`], [`EmbeddedQueue`]), a run's
//! [`RunReport`] and the [`Error`]. Everything else lives in a module named for its
//! concern:
//!
//! - [`handler`]: the handler traits, typed inputs ([`handler::input`]), batches, tower
//!   services and layers;
//! - [`config`]: [`WorkerConfig`](config::WorkerConfig) and its parts, checked before
//!   the first queue call;
//! - [`shutdown`]: the Spot shutdown contract (its steps and deadlines), the
//!   [`ShutdownHandle`](shutdown::ShutdownHandle), why a run stopped, and running
//!   several workers under one shutdown;
//! - [`backend`]: the queue seam for implementers, the embedded queue's builder and
//!   faults, and the one retry loop of every call;
//! - [`telemetry`]: the metric names, `/metrics` + `/health` ([`telemetry::serve`]),
//!   CloudWatch EMF lines, health and log setup;
//! - [`ecs`]: the task count behind backlog per task, and task scale-in protection;
//! - [`lambda`]: the same handlers as an SQS-triggered Lambda function;
//! - [`testing`]: running a worker on the embedded queue until it is drained, and a
//!   stand-in for the ECS agent.
//!
//! # Features
//!
//! Libraries emit, binaries export: spotq emits through the [`metrics`] and `tracing`
//! facades only, and the parts a worker binary adds are cargo features. The defaults are
//! what a worker binary in an ECS task uses; a library that depends on spotq turns them
//! off (`default-features = false`) and names what it needs. The engine, the embedded
//! queue and [`testing::run_until_drained`], the [`backend`] seam, [`WorkerSpec`], EMF
//! and health need none.
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `macros` | yes | `#[spotq::worker]` |
//! | `sqs` | yes | [`SqsBackend`] (`aws-sdk-sqs`, `aws-config`), [`WorkerSpec::connect`], [`run`] (queues by name or URL), `backend::classify` for SDK errors |
//! | `ecs` | yes | [`ecs`] (`aws-sdk-ecs`): the running-task count behind backlog per task; task scale-in protection |
//! | `serve` | yes | `telemetry::serve`: `/metrics`, `/health`, `/ready` (turns on `prometheus`) |
//! | `logging` | yes | `telemetry::logging`: the `tracing-subscriber` setup |
//! | `prometheus` | through `serve` | `telemetry::prometheus`: the Prometheus recorder |
//! | `lambda` | no | `lambda`: the same handlers as an SQS-triggered Lambda function |
//! | `test-util` | no | `testing::AgentStandIn`: a stand-in for the ECS agent (turns on `ecs`) |
//!
//! Without `ecs`, a worker holds no task scale-in protection and publishes backlog per
//! task only with `WorkerConfig::running_tasks` set. Without `sqs`, a
//! `#[spotq::worker]` spec runs on any backend through [`WorkerSpec::worker`] and
//! `shutdown::run_all`; `spotq::run` (queues by name) is not there.

#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers, bottom up (ARCHITECTURE.md lists them; tests/architecture.rs checks that
// every `crate::` path points down): leaves, the queue seam, the shutdown plan, what
// handlers see, ECS and telemetry, settings, the engine, the worker, and last the public
// facades (`handler`, `shutdown`) and this root.
mod api;
pub mod backend;
mod backoff;
pub mod config;
mod contract;
#[cfg(feature = "ecs")]
#[cfg_attr(docsrs, doc(cfg(feature = "ecs")))]
pub mod ecs;
mod engine;
mod error;
pub mod handler;
#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod lambda;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
mod waiting;
mod worker;

/// `#[spotq::worker]`: turns an `async fn` into a worker; see [`spotq_macros::worker`].
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use spotq_macros::worker;

pub use api::handler::Outcome;
pub use api::message::{Context, Message};
pub use backend::embedded::EmbeddedQueue;
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub use backend::sqs::SqsBackend;
pub use error::Error;
pub use telemetry::stats::RunReport;
pub use worker::builder::{Worker, WorkerBuilder};
pub use worker::spec::WorkerSpec;
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub use worker::spec::run;

/// The README's program, compiled as a doc test so the README cannot drift from the
/// crate it describes.
#[cfg(all(doctest, feature = "macros", feature = "sqs", feature = "logging"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
