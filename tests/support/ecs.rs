//! ECS services in moto for the controller's tests: a cluster, a task definition and a
//! service at desired count 0 (moto places no tasks: its running count follows the
//! desired count).

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::ContainerDefinition;

use super::{emulator_endpoint, unique};

/// An ECS client on the emulator.
pub async fn client() -> Client {
    emulator_endpoint();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Client::new(&config)
}

/// A cluster, its task definition and a service in it, in moto.
pub struct Service {
    /// The cluster's name.
    pub cluster: String,
    /// The cluster's ARN.
    pub cluster_arn: String,
    /// The task definition's family.
    pub family: String,
    /// The service's name.
    pub service: String,
}

/// Creates a cluster (named from `prefix`), a task definition (small enough to place on
/// moto's EC2 container instances) and a service at desired count 0.
pub async fn service_at_zero(client: &Client, prefix: &str) -> Service {
    let cluster = unique(prefix);
    let cluster_arn = client
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("create cluster")
        .cluster
        .and_then(|cluster| cluster.cluster_arn)
        .expect("cluster ARN");
    let family = format!("{cluster}-worker");
    client
        .register_task_definition()
        .family(&family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("worker")
                .image("spotq-worker")
                .memory(64)
                .cpu(10)
                .build(),
        )
        .send()
        .await
        .expect("register task definition");
    let service = format!("{cluster}-svc");
    client
        .create_service()
        .cluster(&cluster)
        .service_name(&service)
        .task_definition(&family)
        .desired_count(0)
        .send()
        .await
        .expect("create service");
    Service {
        cluster,
        cluster_arn,
        family,
        service,
    }
}

/// The service's desired count.
pub async fn desired_count(client: &Client, cluster: &str, service: &str) -> i32 {
    client
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .expect("describe services")
        .services()
        .first()
        .expect("the service")
        .desired_count()
}
