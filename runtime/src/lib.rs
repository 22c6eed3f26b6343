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
//!   embed it; [`shutdown`]: the Spot shutdown contract, its steps and deadlines;
//!   [`protection`] for task scale-in protection.
//! - Batch jobs: [`WorkerConfig::exit_after_empty_receives`] runs a worker to
//!   completion (it stops once its receives find the queue empty with nothing held),
//!   [`WorkerConfig::max_run_time`] bounds a run; [`RunReport::stop_reason`] says why a
//!   run ended ([`StopReason`]) and [`RunReport::exit_code`] / [`exit_code`] is what the
//!   binary exits with.
//! - [`engine`]: the machinery that appears in the types of [`Worker`] and
//!   [`WorkerSpec`] (how handlers are called); [`retry`] and [`Backoff`]: the one retry
//!   loop; [`input`]: decoders from a message to a handler's input; [`error`]: the
//!   error types.
//! - [`serve`], [`prometheus`], [`emf`], [`logging`], [`Health`], [`ecs`]: what a worker
//!   binary exposes (`/metrics`, `/health`, `/ready`, EMF lines, JSON logs) and the task
//!   count behind backlog per task; [`metric_names`] for programs that read `/metrics`.
//!
//! # Features
//!
//! Libraries emit, binaries export: spotq emits through the [`metrics`] and `tracing`
//! facades only, and the parts a worker binary adds are cargo features. The defaults are
//! what a worker binary in an ECS task uses; a library that depends on spotq turns them
//! off (`default-features = false`) and names what it needs. The engine, the embedded
//! queue, the [`Backend`] seam, [`WorkerSpec`] and [`run_all`], [`emf`] and [`Health`]
//! need none.
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `macros` | yes | `#[spotq::worker]` |
//! | `sqs` | yes | [`SqsBackend`] (`aws-sdk-sqs`, `aws-config`), [`WorkerSpec::connect`], [`run`] and [`run_with`] (queues by name or URL), [`error::classify`] |
//! | `ecs` | yes | [`ecs`] (`aws-sdk-ecs`): the running-task count behind backlog per task; [`protection`] and [`WorkerConfig::task_protection`] |
//! | `serve` | yes | [`serve`]: `/metrics`, `/health`, `/ready` (turns on `prometheus`) |
//! | `logging` | yes | [`logging`]: the `tracing-subscriber` setup |
//! | `prometheus` | through `serve` | [`prometheus`]: the Prometheus recorder |
//! | `lambda` | no | [`lambda`]: the same handlers as an SQS-triggered Lambda function |
//! | `test-util` | no | [`testing`]: a stand-in for the ECS agent (turns on `ecs`) |
//!
//! Without `ecs`, a worker holds no task scale-in protection and publishes backlog per
//! task only with [`WorkerConfig::running_tasks`] set. Without `sqs`, a
//! `#[spotq::worker]` spec runs on any backend through [`WorkerSpec::worker`] and
//! [`run_all`]; `spotq::run` (queues by name) is not there.

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
#[cfg(all(feature = "ecs", any(test, feature = "test-util")))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
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
