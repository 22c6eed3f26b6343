//! Helpers for tests and demos of programs that run a spotq worker.
//!
//! [`run_until_drained`] runs a worker on an [`EmbeddedQueue`](crate::EmbeddedQueue)
//! until the queue holds no message, the set-up of nearly every test of a handler and
//! of every example on the embedded queue; it needs no feature. With feature
//! `test-util`, [`AgentStandIn`] stands in for the ECS agent's task-protection
//! endpoint.

mod drain;
#[cfg(all(feature = "ecs", any(test, feature = "test-util")))]
mod ecs_agent;

pub use drain::{Runnable, run_until_drained};
#[cfg(all(feature = "ecs", any(test, feature = "test-util")))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use ecs_agent::{AgentStandIn, Call, ENDPOINT_ID, PATIENCE, Reply, STATE};
