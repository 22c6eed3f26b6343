//! What a worker tells the world: the metric catalog and the counters behind
//! [`RunReport`](crate::RunReport), the backlog sampler, CloudWatch EMF lines, health,
//! the Prometheus recorder, the `/metrics` + `/health` endpoint, and log setup.
//!
//! The catalog, the counters, EMF and health are always there; the recorder, the
//! endpoint and the log setup belong to a binary and are features (`prometheus`,
//! `serve`, `logging`).

pub mod emf;
pub mod health;
#[cfg(feature = "logging")]
pub mod logging;
pub(crate) mod metrics;
pub use metrics::names;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub(crate) mod report;
#[cfg(feature = "serve")]
pub mod serve;
pub(crate) mod stats;
