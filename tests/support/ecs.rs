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

/// Creates a cluster (named from `prefix`), a task definition and a service at desired
/// count 0; returns the cluster's and the service's names.
pub async fn service_at_zero(client: &Client, prefix: &str) -> (String, String) {
    let cluster = unique(prefix);
    client
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("create cluster");
    client
        .register_task_definition()
        .family(&cluster)
        .container_definitions(
            ContainerDefinition::builder()
                .name("worker")
                .image("spotq-worker")
                .memory(512)
                .build(),
        )
        .send()
        .await
        .expect("register task definition");
    let service = format!("{cluster}-worker");
    client
        .create_service()
        .cluster(&cluster)
        .service_name(&service)
        .task_definition(&cluster)
        .desired_count(0)
        .send()
        .await
        .expect("create service");
    (cluster, service)
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
