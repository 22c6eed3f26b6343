//! An ECS service: `DescribeServices` (through [`spotq::ecs::describe_service`]) for
//! its counts, `UpdateService` for its desired count.

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Service;
use spotq::backend::classify;
use spotq::ecs::{EcsError, describe_service};

use super::{Target, TargetError};
use crate::decision::ServiceCounts;

/// An ECS service whose desired count the controller sets.
///
/// The controller's role needs `ecs:DescribeServices` and `ecs:UpdateService` on
/// `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/SERVICE`.
#[derive(Clone, Debug)]
pub struct EcsTarget {
    client: Client,
    cluster: String,
    service: String,
}

impl EcsTarget {
    /// Uses `client` for `service` in `cluster` (names or ARNs), without any call.
    pub fn new(client: Client, cluster: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            service: service.into(),
        }
    }

    fn not_found(&self, reason: String) -> TargetError {
        TargetError::ServiceNotFound {
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            reason,
        }
    }
}

/// The counts of a described service; a rollout is in progress while more than one
/// deployment is live (the new one starting, the old one draining).
pub(crate) fn counts_of(service: &Service) -> ServiceCounts {
    let count = |value: i32| u32::try_from(value).unwrap_or(0);
    ServiceCounts {
        desired: count(service.desired_count()),
        running: count(service.running_count()),
        pending: count(service.pending_count()),
        deployment_in_progress: service.deployments().len() > 1,
    }
}

#[async_trait]
impl Target for EcsTarget {
    async fn counts(&self) -> Result<ServiceCounts, TargetError> {
        let described = describe_service(&self.client, &self.cluster, &self.service)
            .await
            .map_err(|error| match error {
                EcsError::Api(error) => TargetError::Api(error),
                EcsError::ServiceNotFound { reason, .. } => self.not_found(reason),
                // `describe_service` fails only in the two ways above.
                other => self.not_found(other.to_string()),
            })?;
        Ok(counts_of(&described))
    }

    async fn set_desired(&self, desired: u32) -> Result<(), TargetError> {
        self.client
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .desired_count(i32::try_from(desired).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|error| classify("UpdateService", error))?;
        Ok(())
    }

    fn update_operation(&self) -> &'static str {
        "UpdateService"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_ecs::types::Deployment;

    #[test]
    fn a_second_live_deployment_is_a_rollout_in_progress() {
        let deployment = |status: &str| Deployment::builder().status(status).build();
        let steady = Service::builder()
            .desired_count(3)
            .running_count(2)
            .pending_count(1)
            .deployments(deployment("PRIMARY"))
            .build();
        assert_eq!(
            counts_of(&steady),
            ServiceCounts {
                desired: 3,
                running: 2,
                pending: 1,
                deployment_in_progress: false
            }
        );
        let rolling = Service::builder()
            .desired_count(3)
            .deployments(deployment("PRIMARY"))
            .deployments(deployment("ACTIVE"))
            .build();
        assert!(counts_of(&rolling).deployment_in_progress);
    }
}
