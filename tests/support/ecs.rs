//! ECS services in moto for the controller's tests: a cluster, a task definition and a
//! service at desired count 0 (moto places no tasks: its running count follows the
//! desired count).

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode};

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
    register_task_definition(client, &family, None).await;
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

/// Registers `family`: one small container (small enough to place on moto's EC2
/// container instances), in `network_mode` if given.
async fn register_task_definition(
    client: &Client,
    family: &str,
    network_mode: Option<NetworkMode>,
) {
    client
        .register_task_definition()
        .family(family)
        .set_network_mode(network_mode)
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

/// A subnet of moto's default VPC, for tasks in `awsvpc` mode (whose network interface
/// moto creates in it). The tests build no EC2 client: one `DescribeSubnets` through
/// EC2's query protocol, with curl (moto checks no signature).
pub fn default_subnet() -> String {
    let endpoint = emulator_endpoint();
    let output = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-X", "POST"])
        .args([
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        ])
        .args(["-d", "Action=DescribeSubnets&Version=2016-11-15"])
        .arg(&endpoint)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_once("<subnetId>")
        .and_then(|(_, rest)| rest.split_once("</subnetId>"))
        .map(|(subnet, _)| subnet.to_owned())
        .unwrap_or_else(|| panic!("no subnet in moto's answer: {text}"))
}

/// Runs one task of `family` (registered again here in `awsvpc` mode when `awsvpc`) on
/// FARGATE, as a task of `service`: moto places no tasks for a service itself.
pub async fn run_service_task(
    client: &Client,
    cluster: &str,
    family: &str,
    service: &str,
    awsvpc: bool,
) -> String {
    let mut run = client
        .run_task()
        .cluster(cluster)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .group(format!("service:{service}"));
    if awsvpc {
        let family = format!("{family}-awsvpc");
        register_task_definition(client, &family, Some(NetworkMode::Awsvpc)).await;
        run = run.task_definition(family).network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .subnets(default_subnet())
                        .security_groups("sg-12345678")
                        .build()
                        .expect("an awsvpc configuration"),
                )
                .build(),
        );
    } else {
        run = run.task_definition(family);
    }
    let output = run.send().await.expect("run task");
    output
        .tasks()
        .first()
        .and_then(|task| task.task_arn())
        .expect("a task")
        .to_owned()
}
