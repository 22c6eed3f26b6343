//! ECS in moto for the controller's tests: a cluster, a task definition and a service at
//! desired count 0 (moto places no tasks: its running count follows the desired count);
//! the standalone tasks of a job binding, and moto's task lifecycle held at `RUNNING`.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{ContainerDefinition, Task, TaskField};

use super::{emulator_endpoint, post_to_emulator, unique};

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

/// Holds moto's tasks at `RUNNING` until `StopTask`: by default moto moves a task one
/// state towards `STOPPED` each time `DescribeTasks` describes it, as if every task
/// exited on its own at once. Moto-wide (its state manager), and harmless to the other
/// tests, which read no task's status.
pub async fn keep_tasks_running() {
    let body =
        r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000000}}"#;
    let response = post_to_emulator(
        "/moto-api/state-manager/set-transition",
        "Content-Type: application/json\r\n",
        body,
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 201") || response.starts_with("HTTP/1.0 201"),
        "moto refused the transition: {response}"
    );
}

/// Creates a cluster (named from `prefix`) and a task definition in it, for job tasks;
/// returns `(cluster, family)`.
pub async fn job_cluster(client: &Client, prefix: &str) -> (String, String) {
    let Service {
        cluster, family, ..
    } = service_at_zero(client, prefix).await;
    (cluster, family)
}

/// The tasks ECS lists as started by `started_by` (desired status `RUNNING`, as
/// `ListTasks` lists by default), described with their tags.
pub async fn tasks_started_by(client: &Client, cluster: &str, started_by: &str) -> Vec<Task> {
    let arns = client
        .list_tasks()
        .cluster(cluster)
        .started_by(started_by)
        .send()
        .await
        .expect("list tasks")
        .task_arns()
        .to_vec();
    if arns.is_empty() {
        return Vec::new();
    }
    let tasks = client
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .include(TaskField::Tags)
        .send()
        .await
        .expect("describe tasks")
        .tasks()
        .to_vec();
    tasks
        .into_iter()
        .filter(|task| task.desired_status() == Some("RUNNING"))
        .collect()
}

/// Stops a task, as its exit would: `StopTask`.
pub async fn stop_task(client: &Client, cluster: &str, task: &Task) {
    client
        .stop_task()
        .cluster(cluster)
        .task(task.task_arn().expect("a task ARN"))
        .reason("the job drained its queue")
        .send()
        .await
        .expect("stop task");
}
