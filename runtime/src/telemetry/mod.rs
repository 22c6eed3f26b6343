//! What a worker tells the world: the metric catalog and the counters behind
//! [`RunReport`](crate::RunReport), the backlog sampler, CloudWatch EMF lines, health,
//! the `/metrics` + `/health` endpoint, and log setup.

pub mod emf;
pub mod health;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod report;
pub mod serve;
pub(crate) mod stats;
