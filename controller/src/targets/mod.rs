//! What the controller scales: an ECS service's desired count ([`EcsTarget`]) or worker
//! processes on this machine ([`LocalTarget`]) through [`Target`]; and what a job
//! binding starts: standalone ECS tasks ([`EcsJobTarget`]) or local processes
//! ([`LocalTarget`] again) through [`JobTarget`].

mod ecs;
mod ecs_job;
mod local;

use async_trait::async_trait;
use spotq::backend::BackendError;

use crate::decision::ServiceCounts;
use crate::decision::job::JobTasks;
use crate::inputs::Retryable;

pub use ecs::EcsTarget;
pub use ecs_job::{BINDING_TAG, EcsJobTarget, RUN_TASK_MAX, is_capacity_failure, started_by};
pub use local::{Exits, LocalTarget};

/// Why a target could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// An ECS call failed; [`BackendError::operation`] names it.
    #[error(transparent)]
    Api(#[from] BackendError),
    /// ECS has no active service of this name in the cluster.
    #[error("ECS has no active service {service} in cluster {cluster}: {reason}")]
    ServiceNotFound {
        /// The cluster asked.
        cluster: String,
        /// The service asked.
        service: String,
        /// ECS's failure reason, or `INACTIVE`.
        reason: String,
    },
    /// A worker process could not be started.
    #[error("cannot start worker process {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

impl Retryable for TargetError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Api(error) => error.is_retryable(),
            Self::ServiceNotFound { .. } | Self::Spawn { .. } => false,
        }
    }
}

/// Something with a desired count of tasks.
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// The desired, running and pending counts, with one call.
    async fn counts(&self) -> Result<ServiceCounts, TargetError>;

    /// Sets the desired count.
    async fn set_desired(&self, desired: u32) -> Result<(), TargetError>;

    /// The API call [`set_desired`](Self::set_desired) makes, for logs and metrics.
    fn update_operation(&self) -> &'static str;

    /// Called once when the controller stops. The local target stops its workers; an
    /// ECS service keeps its count.
    async fn shutdown(&self) {}
}

/// Sees each failed call of a start, for logs and error counters.
pub type OnError<'a> = dyn for<'e> Fn(&'e TargetError) + Send + Sync + 'a;

/// What one start of job tasks did.
#[derive(Debug, Default)]
pub struct Started {
    /// The ids of the tasks started (ECS task ARNs, process ids).
    pub tasks: Vec<String>,
    /// Of those, the tasks started on `FARGATE` because `FARGATE_SPOT` had no capacity.
    pub fallbacks: u32,
    /// Tasks asked for and not started: no capacity (after the fallback, if any).
    pub no_capacity: u32,
    /// Tasks asked for and not started for another reason ECS gave.
    pub failed: u32,
    /// The call that failed for good; the start went no further.
    pub error: Option<TargetError>,
}

impl Started {
    /// Whether fewer tasks started than were asked for.
    pub fn fell_short(&self) -> bool {
        self.no_capacity > 0 || self.failed > 0 || self.error.is_some()
    }
}

/// Something that starts a job binding's tasks and lists them. The tasks exit by
/// themselves; the controller never stops one, but at its own stop (local processes).
#[async_trait]
pub trait JobTarget: Send + Sync + 'static {
    /// The binding's tasks, with one read.
    async fn tasks(&self) -> Result<JobTasks, TargetError>;

    /// Starts `count` tasks. A call that fails is retried, each failure shown to
    /// `on_error` (for logs and error counters); one that fails for good ends the start,
    /// in [`Started::error`].
    async fn start(&self, count: u32, on_error: &OnError<'_>) -> Started;

    /// The API call [`tasks`](Self::tasks) makes first, for logs and metrics.
    fn list_operation(&self) -> &'static str;

    /// The API call [`start`](Self::start) makes, for logs and metrics.
    fn start_operation(&self) -> &'static str;

    /// Called once when the controller stops. Local processes get SIGTERM; ECS tasks run
    /// on.
    async fn shutdown(&self) {}
}
