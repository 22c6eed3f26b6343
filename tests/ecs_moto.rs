//! Protocol tests: `spotq::ecs` through the real `aws-sdk-ecs` client against moto server
//! on loopback, with a stand-in for the task metadata endpoint on 127.0.0.1.
//!
//! What moto does differently from ECS, and how the tests live with it:
//! - It places no tasks for a service: `runningCount` is 0 after `CreateService`, and
//!   `UpdateService` sets it straight to the desired count. The count tests compare with
//!   what moto itself reports.
//! - `RunTask` (outside Fargate) needs a registered container instance, which needs an
//!   EC2 instance moto knows; with no EC2 SDK in the workspace, the instance comes from a
//!   plain EC2 Query API call. `RunTask` keeps the `group` it is given, so a task can
//!   pose as a service's task with `group = "service:NAME"`.
//! - `DescribeTasks` answers an unknown task with neither a task nor a failure (ECS
//!   reports a `MISSING` failure); both read as a task ECS does not know.

mod support;

use aws_sdk_ecs::Client;
use serde_json::json;
use spotq::backend::BackendError;
use spotq::ecs::{EcsError, EcsService};
use std::time::Duration;

use support::process::{Settings, WorkerProcess, http_get, signal};
use support::{emulator_endpoint, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One of moto's built-in AMIs.
const AMI: &str = "ami-03cf127a";
/// The endpoint id in the stand-in's `$ECS_CONTAINER_METADATA_URI_V4`.
const METADATA_ID: &str = "0123abcd-metadata";

/// An ECS client built the way a worker builds it, checked to reach moto on loopback.
async fn ecs_client() -> Client {
    emulator_endpoint();
    // The ECS client prefers its own endpoint variable over `AWS_ENDPOINT_URL`.
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_ECS") {
        assert!(
            endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
            "AWS_ENDPOINT_URL_ECS must point at an emulator on loopback (got {endpoint:?})"
        );
    }
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Client::new(&config)
}

/// A cluster with a task definition and a service (desired count 0) in it.
struct Cluster {
    client: Client,
    name: String,
    arn: String,
    family: String,
    service: String,
}

impl Cluster {
    async fn create(prefix: &str) -> Self {
        let client = ecs_client().await;
        let support::ecs::Service {
            cluster,
            cluster_arn,
            family,
            service,
        } = support::ecs::service_at_zero(&client, prefix).await;
        Self {
            client,
            name: cluster,
            arn: cluster_arn,
            family,
            service,
        }
    }

    /// What moto itself reports as the service's running count.
    async fn reported_running_count(&self) -> i32 {
        self.client
            .describe_services()
            .cluster(&self.name)
            .services(&self.service)
            .send()
            .await
            .expect("describe services")
            .services()
            .first()
            .expect("the service")
            .running_count()
    }

    async fn set_desired_count(&self, count: i32) {
        self.client
            .update_service()
            .cluster(&self.name)
            .service(&self.service)
            .desired_count(count)
            .send()
            .await
            .expect("update service");
    }

    /// Runs one task in the cluster, with `group` or moto's default (`family:…`);
    /// returns its ARN.
    async fn run_task(&self, group: Option<&str>) -> String {
        let document = json!({
            "instanceId": ec2_instance().await,
            "region": "us-east-1",
            "availabilityZone": "us-east-1a",
            "accountId": "123456789012",
            "instanceType": "t2.micro",
            "imageId": AMI,
            "privateIp": "10.0.0.1",
        });
        self.client
            .register_container_instance()
            .cluster(&self.name)
            .instance_identity_document(document.to_string())
            .send()
            .await
            .expect("register container instance");
        let output = self
            .client
            .run_task()
            .cluster(&self.name)
            .task_definition(&self.family)
            .set_group(group.map(str::to_owned))
            .send()
            .await
            .expect("run task");
        assert!(output.failures().is_empty(), "{:?}", output.failures());
        let task = output.tasks().first().expect("one task");
        if let Some(group) = group {
            assert_eq!(task.group(), Some(group), "moto keeps the group");
        }
        task.task_arn().expect("task ARN").to_owned()
    }
}

/// Starts an EC2 instance in moto and returns its id, with a plain EC2 Query API call.
async fn ec2_instance() -> String {
    let body =
        format!("Action=RunInstances&ImageId={AMI}&MinCount=1&MaxCount=1&Version=2016-11-15");
    support::ecs::first_element(&support::ecs::ec2(&body).await, "instanceId")
}

/// A stand-in for the task metadata endpoint on 127.0.0.1: `GET <uri>/task` gets
/// `status` and `body`, anything else 404. Returns the `$ECS_CONTAINER_METADATA_URI_V4`.
async fn metadata_endpoint(status: u16, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, status, body.clone()));
        }
    });
    format!("http://{addr}/v4/{METADATA_ID}")
}

/// Serves one connection: one request, one answer, then close.
async fn answer(mut stream: TcpStream, status: u16, body: String) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let request_line = head.lines().next().unwrap_or_default();
    let (status, body) = if request_line == format!("GET /v4/{METADATA_ID}/task HTTP/1.1") {
        (status, body)
    } else {
        (404, format!("no route for {request_line}"))
    };
    let response = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

/// The stand-in serving the `/task` answer for this task.
async fn task_metadata(cluster: &str, task_arn: &str) -> String {
    let body = json!({
        "Cluster": cluster,
        "TaskARN": task_arn,
        "Family": "worker",
        "Revision": "1",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "LaunchType": "FARGATE",
        "Containers": [],
    });
    metadata_endpoint(200, body.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_count_is_what_ecs_reports_for_the_service() {
    let cluster = Cluster::create("count").await;
    let by_arn = EcsService::new(cluster.client.clone(), &cluster.arn, &cluster.service);
    let by_name = EcsService::new(cluster.client.clone(), &cluster.name, &cluster.service);
    assert_eq!(cluster.reported_running_count().await, 0);
    assert_eq!(by_arn.running_count().await.expect("count"), 0);

    // moto sets the running count to the desired count on UpdateService.
    cluster.set_desired_count(3).await;
    assert_eq!(cluster.reported_running_count().await, 3);
    assert_eq!(by_arn.running_count().await.expect("count by ARN"), 3);
    assert_eq!(by_name.running_count().await.expect("count by name"), 3);
    assert_eq!(
        (by_arn.cluster(), by_arn.service()),
        (cluster.arn.as_str(), cluster.service.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_deleted_service_is_a_typed_error() {
    let cluster = Cluster::create("gone").await;
    let missing = unique("missing");
    let error = EcsService::new(cluster.client.clone(), &cluster.arn, &missing)
        .running_count()
        .await
        .expect_err("no such service");
    match &error {
        EcsError::ServiceNotFound {
            service, reason, ..
        } => {
            assert_eq!(service, &missing);
            assert_eq!(reason, "MISSING");
        }
        other => panic!("expected ServiceNotFound, got {other:?}"),
    }
    assert!(!error.is_retryable());

    // A deleted service is still described for a while, as INACTIVE with no tasks.
    let service = EcsService::new(cluster.client.clone(), &cluster.arn, &cluster.service);
    cluster
        .client
        .delete_service()
        .cluster(&cluster.name)
        .service(&cluster.service)
        .send()
        .await
        .expect("delete service");
    let error = service.running_count().await.expect_err("deleted service");
    assert!(
        matches!(&error, EcsError::ServiceNotFound { reason, .. } if reason == "INACTIVE"),
        "{error:?}"
    );

    let error = EcsService::new(cluster.client.clone(), unique("no-cluster"), "svc")
        .running_count()
        .await
        .expect_err("no such cluster");
    match &error {
        EcsError::Api(BackendError::Rejected {
            operation, code, ..
        }) => {
            assert_eq!(*operation, "DescribeServices");
            assert_eq!(code, "ClusterNotFoundException");
        }
        other => panic!("expected a rejected DescribeServices, got {other:?}"),
    }
    assert!(!error.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_finds_the_cluster_and_service_of_a_service_task() {
    let cluster = Cluster::create("discover").await;
    let group = format!("service:{}", cluster.service);
    let task_arn = cluster.run_task(Some(&group)).await;
    let metadata_uri = task_metadata(&cluster.arn, &task_arn).await;

    let service = EcsService::discover(ecs_client().await, &metadata_uri)
        .await
        .expect("discovered");
    assert_eq!(service.cluster(), cluster.arn);
    assert_eq!(service.service(), cluster.service);

    cluster.set_desired_count(2).await;
    assert_eq!(service.running_count().await.expect("count"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_task_is_not_in_a_service() {
    let cluster = Cluster::create("standalone").await;
    for (group, expected) in [
        (None, format!("family:{}", cluster.family)),
        (Some("nightly-batch"), "nightly-batch".to_owned()),
    ] {
        let task_arn = cluster.run_task(group).await;
        let metadata_uri = task_metadata(&cluster.arn, &task_arn).await;
        let error = EcsService::discover(ecs_client().await, &metadata_uri)
            .await
            .expect_err("not in a service");
        match &error {
            EcsError::NotInService {
                task_arn: reported,
                group,
            } => {
                assert_eq!(reported, &task_arn);
                assert_eq!(group.as_deref(), Some(expected.as_str()));
            }
            other => panic!("expected NotInService, got {other:?}"),
        }
        assert!(!error.is_retryable());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_failures_are_typed() {
    let cluster = Cluster::create("lost").await;
    let client = ecs_client().await;

    // Nothing listens: the endpoint may come up later.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_uri = format!(
        "http://{}/v4/{METADATA_ID}",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let error = EcsService::discover(client.clone(), &closed_uri)
        .await
        .expect_err("unreachable");
    assert!(
        matches!(error, EcsError::MetadataUnreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());

    let no_arn = metadata_endpoint(200, json!({ "Cluster": cluster.arn }).to_string()).await;
    let error = EcsService::discover(client.clone(), &no_arn)
        .await
        .expect_err("no task ARN");
    assert!(
        matches!(&error, EcsError::MetadataInvalid { status: 200, message, .. }
            if message.contains("TaskARN")),
        "{error:?}"
    );
    assert!(!error.is_retryable());

    let overloaded = metadata_endpoint(503, "busy".to_owned()).await;
    let error = EcsService::discover(client.clone(), &overloaded)
        .await
        .expect_err("503");
    assert!(
        matches!(error, EcsError::MetadataInvalid { status: 503, .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());

    let unknown_task = format!(
        "arn:aws:ecs:us-east-1:123456789012:task/{}/{:032x}",
        cluster.name,
        fastrand::u128(..)
    );
    let metadata_uri = task_metadata(&cluster.arn, &unknown_task).await;
    let error = EcsService::discover(client.clone(), &metadata_uri)
        .await
        .expect_err("unknown task");
    assert!(
        matches!(&error, EcsError::TaskNotFound { task_arn, .. } if *task_arn == unknown_task),
        "{error:?}"
    );

    let metadata_uri = task_metadata(&unique("no-cluster"), &unknown_task).await;
    let error = EcsService::discover(client, &metadata_uri)
        .await
        .expect_err("unknown cluster");
    assert!(
        matches!(&error, EcsError::Api(BackendError::Rejected { operation: "DescribeTasks", code, .. })
            if code == "ClusterNotFoundException"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_in_an_ecs_service_divides_its_backlog_by_the_service_s_running_tasks() {
    let cluster = Cluster::create("backlog").await;
    let group = format!("service:{}", cluster.service);
    let task_arn = cluster.run_task(Some(&group)).await;
    cluster.set_desired_count(4).await;
    let metadata_uri = task_metadata(&cluster.arn, &task_arn).await;

    let queue = support::create_queue(&unique("ecs-backlog"), &[]).await;
    support::send(&queue, (0..8).map(|n| format!("long{n}:600000"))).await;
    let settings = Settings {
        concurrency: 4,
        http: true,
        env: vec![("ECS_CONTAINER_METADATA_URI_V4".to_owned(), metadata_uri)],
        ..Settings::default()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    let addr = worker.http_addr().await;
    worker.wait_for("start", 4).await;

    // 4 in flight and 4 waiting, over the service's 4 running tasks.
    let expected = "spotq_backlog_per_task{";
    let start = tokio::time::Instant::now();
    loop {
        let (_, metrics) = http_get(&addr, "/metrics");
        let value = metrics
            .lines()
            .find(|line| line.starts_with(expected))
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned);
        if value.as_deref() == Some("2") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "backlog per task: {value:?}\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(worker.worker_pid(false), "TERM");
    assert!(worker.wait_exit(Duration::from_secs(10)).await.success());
}
