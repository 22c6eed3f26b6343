//! `spotq-controller`: scales ECS services with their SQS queues, down to zero and back
//! up on the first message, and local worker processes the same way for demos and
//! tests.
//!
//! Every poll interval (5 s by default) and for every binding (queue → service), the
//! controller reads `GetQueueAttributes` and `DescribeServices`, feeds both to the
//! binding's [`Scaler`](decision::Scaler), and calls `UpdateService` only when the
//! desired count changes, logging one line with the inputs and the reason. A job
//! binding starts standalone tasks for the backlog instead (`RunTask`, or local
//! processes), sized by [`decision::job`] and never stopped: they exit by themselves
//! once the queue is drained.
//!
//! ```no_run
//! use clap::Parser;
//! use spotq_controller::config::{Cli, Config};
//! use spotq_controller::run::Controller;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let cli = Cli::parse_from([
//!     "spotq-controller", "--queue", "orders", "--cluster", "jobs", "--service", "orders-worker",
//! ]);
//! let controller = Controller::start(Config::load(&cli)?).await?;
//! let mut decisions = controller.decisions();
//! while let Ok(event) = decisions.recv().await {
//!     println!("{}: {:?}", event.binding, event.decision);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! - [`decision`]: the pure decision core, and the rules it follows; [`decision::job`]
//!   for job bindings.
//! - [`config`]: flags, environment and the TOML file, checked at start.
//! - [`inputs`]: the queue's counts, workers' throughput, retries.
//! - [`targets`]: ECS services, ECS job tasks and local worker processes.
//! - [`run`]: the loops (services and jobs), their metrics and decision log lines.

pub mod config;
pub mod decision;
pub mod inputs;
pub mod run;
pub mod targets;
