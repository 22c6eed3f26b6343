//! What the controller scales: an ECS service's desired count ([`EcsTarget`]) or worker
//! processes on this machine ([`LocalTarget`]).

mod ecs;
mod local;

use async_trait::async_trait;
use spotq::BackendError;

use crate::decision::ServiceCounts;
use crate::inputs::Retryable;

pub use ecs::EcsTarget;
pub use local::LocalTarget;

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
