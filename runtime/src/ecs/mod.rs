//! How many tasks share the queue: the running count of the ECS service this worker
//! runs in.
//!
//! Backlog per task, `(visible + in flight) / running tasks`, is the number a
//! target-tracking scaling policy steers by. The running tasks are those of the worker's
//! own ECS service, found once at start:
//!
//! 1. `$ECS_CONTAINER_METADATA_URI_V4/task`, served inside every task, names the task's
//!    cluster and its task ARN.
//! 2. `ecs:DescribeTasks` gives the task's group: `service:NAME` for a task a service
//!    started. Any other group (`family:…` for a standalone `RunTask`, or a group the
//!    caller chose) means there is no service to count: [`EcsError::NotInService`].
//! 3. `ecs:DescribeServices` gives the service's `runningCount`, read again on every
//!    sample by [`EcsService::running_count`].
//!
//! The task role needs `ecs:DescribeTasks` and `ecs:DescribeServices`; their resources
//! can be narrowed to `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/*` and
//! `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/*`. Every `running_count` is one ECS API
//! call, rate-limited per account and shared by every task that samples: sample about
//! as often as the metric is published, not per message.
//!
//! ```no_run
//! use spotq::ecs::EcsService;
//!
//! # async fn example() -> Result<(), spotq::ecs::EcsError> {
//! // `None` outside ECS, where there is no metadata endpoint to ask.
//! if let Some(service) = EcsService::from_env().await? {
//!     let running = service.running_count().await?;
//!     // `runningCount` lags task starts and can read 0 while this task runs.
//!     let tasks = running.max(1);
//!     println!("{} tasks share the queue of {}", tasks, service.service());
//! }
//! # Ok(())
//! # }
//! ```

pub(crate) mod agent;
pub mod protection;

use std::env::VarError;
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Failure, Service, Task};
use hyper::{Method, Uri};
use serde_json::Value;

use crate::backend::sdk_error::classify;
use crate::backend::sdk_timeouts;
use crate::ecs::agent::{LocalHttp, base_uri_from, endpoint, excerpt};
use crate::error::{BackendError, BoxError, ConfigError};

/// The environment variable ECS sets in every container of a task: the base URI of the
/// task metadata endpoint, version 4.
pub const METADATA_URI_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// The task's own metadata, below the metadata URI.
const TASK_PATH: &str = "/task";

/// How long the metadata endpoint may take. It answers from the task's own host, so a
/// few seconds only bounds a stuck call.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The group ECS gives every task a service starts, followed by the service's name.
const SERVICE_GROUP_PREFIX: &str = "service:";

/// `Service.status` of a deleted service: ECS still describes it for a while, with a
/// running count of 0 that says nothing about the tasks sharing the queue.
const INACTIVE: &str = "INACTIVE";

/// The failure reason ECS gives for a task or service it does not know.
const MISSING: &str = "MISSING";

/// Why the service or its running count could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EcsError {
    /// The metadata URI is not a plain `http://` URL.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The task metadata endpoint could not be reached, or did not answer in time.
    #[error("could not read the task metadata at {uri}: {message}")]
    MetadataUnreachable {
        /// The URI asked.
        uri: String,
        /// What went wrong, with its causes.
        message: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The metadata endpoint answered, but not with the task's metadata: an HTTP error
    /// status, a body that is not JSON, or no `Cluster` or `TaskARN`.
    #[error("the task metadata at {uri} answered HTTP {status}: {message}")]
    MetadataInvalid {
        /// The URI asked.
        uri: String,
        /// The HTTP status code.
        status: u16,
        /// What is wrong with the answer, with the start of its body.
        message: String,
    },
    /// The task was not started by an ECS service, so no service's running count
    /// describes the tasks sharing the queue: a standalone `RunTask` task (group
    /// `family:…`) or one started with a group of its own.
    #[error(
        "task {task_arn} is not part of an ECS service (group: {})",
        group.as_deref().unwrap_or("none")
    )]
    NotInService {
        /// The task's ARN.
        task_arn: String,
        /// The task's group, where it has one.
        group: Option<String>,
    },
    /// ECS does not know the task the metadata named.
    #[error("ECS has no task {task_arn} in cluster {cluster}: {reason}")]
    TaskNotFound {
        /// The cluster asked, name or ARN.
        cluster: String,
        /// The task's ARN.
        task_arn: String,
        /// ECS's failure reason, e.g. `MISSING`, with its detail where ECS gave one.
        reason: String,
    },
    /// ECS has no active service of this name in the cluster: it reported a failure
    /// (`MISSING`), or describes the service as `INACTIVE` (deleted).
    #[error("ECS has no active service {service} in cluster {cluster}: {reason}")]
    ServiceNotFound {
        /// The cluster asked, name or ARN.
        cluster: String,
        /// The service's name.
        service: String,
        /// ECS's failure reason (`MISSING`, with its detail where ECS gave one), or
        /// `INACTIVE`.
        reason: String,
    },
    /// An ECS API call failed as a whole: throttled, timed out, unreachable, or refused
    /// (a missing cluster, denied access). [`BackendError::operation`] names the call,
    /// `DescribeTasks` or `DescribeServices`.
    #[error(transparent)]
    Api(#[from] BackendError),
}

impl EcsError {
    /// Whether the same call may succeed later: an unreachable or overloaded endpoint,
    /// throttling, server errors and timeouts. A task outside a service, a missing
    /// service or a denied call get the same answer every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::MetadataUnreachable { .. } => true,
            Self::MetadataInvalid { status, .. } => *status >= 500 || *status == 429,
            Self::Api(error) => error.is_retryable(),
            Self::Config(_)
            | Self::NotInService { .. }
            | Self::TaskNotFound { .. }
            | Self::ServiceNotFound { .. } => false,
        }
    }
}

/// `client` with spotq's default timeouts where its configuration sets none.
fn bounded(client: Client) -> Client {
    let timeouts = sdk_timeouts::with_defaults(client.config().timeout_config());
    Client::from_conf(
        client
            .config()
            .to_builder()
            .timeout_config(timeouts)
            .build(),
    )
}

/// An ECS service whose running tasks share a queue. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct EcsService {
    client: Client,
    cluster: String,
    service: String,
}

impl EcsService {
    /// Uses `client` for `service` (its name or ARN) in `cluster` (name or ARN), without
    /// any call. Its calls are bounded in time as [`SqsBackend`](crate::SqsBackend)'s
    /// are: the client's timeouts, spotq's defaults for those it leaves unset.
    pub fn new(client: Client, cluster: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            client: bounded(client),
            cluster: cluster.into(),
            service: service.into(),
        }
    }

    /// Finds the service of the task this process runs in: reads the task metadata at
    /// `metadata_uri` (the value of `$ECS_CONTAINER_METADATA_URI_V4`, e.g.
    /// `http://169.254.170.2/v4/0123…`), then asks ECS for the task's group with
    /// `DescribeTasks`.
    ///
    /// Fails with [`EcsError::NotInService`] for a task no service started.
    pub async fn discover(client: Client, metadata_uri: &str) -> Result<Self, EcsError> {
        let client = bounded(client);
        let endpoint = task_endpoint(metadata_uri)?;
        let metadata = read_metadata(endpoint).await?;
        let output = client
            .describe_tasks()
            .cluster(&metadata.cluster)
            .tasks(&metadata.task_arn)
            .send()
            .await
            .map_err(|error| classify("DescribeTasks", error))?;
        let service = service_of(&metadata, output.tasks(), output.failures())?;
        // Already bounded above: not through `new`, which would bound it again.
        Ok(Self {
            client,
            cluster: metadata.cluster,
            service,
        })
    }

    /// Finds the service of this task with the standard AWS configuration (which honours
    /// `AWS_ENDPOINT_URL_ECS` and `AWS_ENDPOINT_URL`), or `None` when
    /// `$ECS_CONTAINER_METADATA_URI_V4` is unset or blank: the process is not in an ECS
    /// task, and no service shares its queue.
    pub async fn from_env() -> Result<Option<Self>, EcsError> {
        let Some(metadata_uri) = metadata_uri_from(std::env::var(METADATA_URI_VAR))? else {
            return Ok(None);
        };
        // Checked before loading the configuration, which may take a while to fail.
        task_endpoint(&metadata_uri)?;
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::discover(Client::new(&config), &metadata_uri)
            .await
            .map(Some)
    }

    /// The service's `runningCount`, with one `DescribeServices` call: the tasks in
    /// state `RUNNING`.
    ///
    /// It lags: a starting task counts once it runs, a stopping one until it has
    /// stopped, and it can read 0 moments after this task started. Divide by at least 1.
    pub async fn running_count(&self) -> Result<u64, EcsError> {
        let described = describe_service(&self.client, &self.cluster, &self.service).await?;
        Ok(running_count_of(&described))
    }

    /// The cluster, name or ARN (as the task metadata gave it, after
    /// [`discover`](Self::discover)).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The service: its name after [`discover`](Self::discover).
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// What the task metadata says about the task.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TaskMetadata {
    /// The cluster's ARN (Fargate) or short name.
    cluster: String,
    task_arn: String,
}

/// `$ECS_CONTAINER_METADATA_URI_V4` as read from the environment: `None` when unset or
/// blank.
fn metadata_uri_from(value: Result<String, VarError>) -> Result<Option<String>, ConfigError> {
    base_uri_from(METADATA_URI_VAR, value)
}

/// The task's metadata resource below the metadata URI.
fn task_endpoint(metadata_uri: &str) -> Result<Uri, ConfigError> {
    endpoint(METADATA_URI_VAR, metadata_uri, TASK_PATH)
}

async fn read_metadata(endpoint: Uri) -> Result<TaskMetadata, EcsError> {
    let uri = endpoint.to_string();
    let (status, body) = LocalHttp::new()
        .exchange(Method::GET, endpoint, None, METADATA_TIMEOUT)
        .await
        .map_err(|error| EcsError::MetadataUnreachable {
            uri: uri.clone(),
            message: error.to_string(),
            source: Box::new(error),
        })?;
    if status != 200 {
        return Err(EcsError::MetadataInvalid {
            uri,
            status,
            message: excerpt(&body),
        });
    }
    parse_task_metadata(&body).map_err(|message| EcsError::MetadataInvalid {
        uri,
        status,
        message,
    })
}

/// The cluster and task ARN from a `/task` answer; what is wrong with it otherwise.
fn parse_task_metadata(body: &[u8]) -> Result<TaskMetadata, String> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|error| format!("not JSON ({error}): {}", excerpt(body)))?;
    let field = |name: &str| {
        json.get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("no `{name}` string in {}", excerpt(body)))
    };
    Ok(TaskMetadata {
        cluster: field("Cluster")?,
        task_arn: field("TaskARN")?,
    })
}

/// The service's name in a task group, `service:NAME`; `None` for any other group.
fn service_name(group: &str) -> Option<&str> {
    group
        .strip_prefix(SERVICE_GROUP_PREFIX)
        .filter(|name| !name.is_empty())
}

/// The service of the task a `DescribeTasks` answer describes.
fn service_of(
    metadata: &TaskMetadata,
    tasks: &[Task],
    failures: &[Failure],
) -> Result<String, EcsError> {
    // One task was asked for, so the answer holds that task or a failure for it.
    let Some(task) = tasks.first() else {
        return Err(EcsError::TaskNotFound {
            cluster: metadata.cluster.clone(),
            task_arn: metadata.task_arn.clone(),
            reason: failure_reason(failures),
        });
    };
    let group = task.group();
    group
        .and_then(service_name)
        .map(str::to_owned)
        .ok_or_else(|| EcsError::NotInService {
            task_arn: metadata.task_arn.clone(),
            group: group.map(str::to_owned),
        })
}

/// The running count a `DescribeServices` answer gives for the one service asked.
/// Reads one ECS service with `DescribeServices`: its desired, running and pending
/// counts and its deployments, as ECS reports them.
///
/// A service ECS does not know (a failure such as `MISSING`) or describes as
/// `INACTIVE` (deleted) is [`EcsError::ServiceNotFound`]; a call that failed as a whole
/// is [`EcsError::Api`]. Needs `ecs:DescribeServices` on the service.
pub async fn describe_service(
    client: &Client,
    cluster: &str,
    service: &str,
) -> Result<Service, EcsError> {
    let output = client
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|error| classify("DescribeServices", error))?;
    described_service_of(cluster, service, output.services(), output.failures()).cloned()
}

/// The described service of a `DescribeServices` answer, or why there is none.
fn described_service_of<'a>(
    cluster: &str,
    service: &str,
    services: &'a [Service],
    failures: &[Failure],
) -> Result<&'a Service, EcsError> {
    let not_found = |reason: String| EcsError::ServiceNotFound {
        cluster: cluster.to_owned(),
        service: service.to_owned(),
        reason,
    };
    let Some(described) = services.first() else {
        return Err(not_found(failure_reason(failures)));
    };
    if described.status() == Some(INACTIVE) {
        return Err(not_found(INACTIVE.to_owned()));
    }
    Ok(described)
}

/// A described service's running count; ECS never reports a negative one, and 0 is the
/// honest reading of one if it did.
fn running_count_of(described: &Service) -> u64 {
    u64::try_from(described.running_count()).unwrap_or(0)
}

/// The first failure's reason and detail. An answer with neither the resource nor a
/// failure (moto answers `DescribeTasks` so for an unknown task) is read as `MISSING`.
fn failure_reason(failures: &[Failure]) -> String {
    let Some(failure) = failures.first() else {
        return MISSING.to_owned();
    };
    let reason = failure.reason().unwrap_or(MISSING);
    match failure.detail() {
        Some(detail) if !detail.is_empty() => format!("{reason} ({detail})"),
        _ => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Fargate task's `/task` answer, shortened: the cluster comes as an ARN.
    const FARGATE_TASK: &str = r#"{
        "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/default/e9028f8d5d8e4f258373e7b93ce9a3c3",
        "Family": "orders-worker",
        "Revision": "3",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.25, "Memory": 512},
        "AvailabilityZone": "us-west-2a",
        "LaunchType": "FARGATE",
        "Containers": [{"Name": "worker", "DockerId": "e9028f8d5d8e4f258373e7b93ce9a3c3-3159285215"}]
    }"#;

    const TASK_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/jobs/0123";

    fn metadata() -> TaskMetadata {
        TaskMetadata {
            cluster: "jobs".to_owned(),
            task_arn: TASK_ARN.to_owned(),
        }
    }

    fn task(group: Option<&str>) -> Task {
        Task::builder()
            .task_arn(TASK_ARN)
            .set_group(group.map(str::to_owned))
            .build()
    }

    fn service(status: &str, running: i32) -> Service {
        Service::builder()
            .service_name("orders")
            .status(status)
            .running_count(running)
            .build()
    }

    fn missing(arn: &str) -> Failure {
        Failure::builder().arn(arn).reason(MISSING).build()
    }

    #[test]
    fn task_metadata_gives_the_cluster_and_task_arn() {
        assert_eq!(
            parse_task_metadata(FARGATE_TASK.as_bytes()),
            Ok(TaskMetadata {
                cluster: "arn:aws:ecs:us-west-2:111122223333:cluster/default".to_owned(),
                task_arn:
                    "arn:aws:ecs:us-west-2:111122223333:task/default/e9028f8d5d8e4f258373e7b93ce9a3c3"
                        .to_owned(),
            })
        );
        // On EC2, older agents name the cluster by its short name.
        let ec2 = br#"{"Cluster": "default", "TaskARN": "arn:aws:ecs:us-west-2:1:task/default/1"}"#;
        assert_eq!(
            parse_task_metadata(ec2).map(|metadata| metadata.cluster),
            Ok("default".to_owned())
        );
    }

    #[test]
    fn task_metadata_without_cluster_or_task_arn_says_what_is_missing() {
        let no_arn = parse_task_metadata(br#"{"Cluster": "default"}"#).expect_err("no ARN");
        assert!(no_arn.contains("`TaskARN`"), "{no_arn}");
        let blank = parse_task_metadata(br#"{"Cluster": " ", "TaskARN": "arn"}"#)
            .expect_err("blank cluster");
        assert!(blank.contains("`Cluster`"), "{blank}");
        let number =
            parse_task_metadata(br#"{"Cluster": 7, "TaskARN": "arn"}"#).expect_err("number");
        assert!(number.contains("`Cluster`"), "{number}");
        let html = parse_task_metadata(b"<html>502 Bad Gateway</html>").expect_err("not JSON");
        assert!(
            html.starts_with("not JSON") && html.contains("502 Bad Gateway"),
            "{html}"
        );
    }

    #[test]
    fn only_a_service_group_names_a_service() {
        assert_eq!(service_name("service:orders-worker"), Some("orders-worker"));
        assert_eq!(service_name("family:orders-worker"), None);
        assert_eq!(service_name("service:"), None);
        assert_eq!(service_name("Service:orders"), None);
        assert_eq!(service_name("nightly-batch"), None);
        assert_eq!(service_name(""), None);
    }

    #[test]
    fn a_service_task_names_its_service() {
        let service = service_of(&metadata(), &[task(Some("service:orders"))], &[]);
        assert_eq!(service.expect("in a service"), "orders");
    }

    #[test]
    fn a_standalone_task_is_not_in_a_service() {
        let error =
            service_of(&metadata(), &[task(Some("family:orders"))], &[]).expect_err("standalone");
        match &error {
            EcsError::NotInService { task_arn, group } => {
                assert_eq!(task_arn, TASK_ARN);
                assert_eq!(group.as_deref(), Some("family:orders"));
            }
            other => panic!("expected NotInService, got {other:?}"),
        }
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("family:orders"), "{error}");

        let no_group = service_of(&metadata(), &[task(None)], &[]).expect_err("no group");
        assert!(
            matches!(no_group, EcsError::NotInService { group: None, .. }),
            "{no_group:?}"
        );
    }

    #[test]
    fn an_unknown_task_is_not_found_with_ecs_s_reason() {
        let error = service_of(&metadata(), &[], &[missing(TASK_ARN)]).expect_err("missing");
        match &error {
            EcsError::TaskNotFound {
                cluster, reason, ..
            } => {
                assert_eq!(cluster, "jobs");
                assert_eq!(reason, "MISSING");
            }
            other => panic!("expected TaskNotFound, got {other:?}"),
        }
        assert!(!error.is_retryable());
        // moto answers an unknown task with neither task nor failure.
        assert!(matches!(
            service_of(&metadata(), &[], &[]),
            Err(EcsError::TaskNotFound { reason, .. }) if reason == "MISSING"
        ));
    }

    #[test]
    fn running_count_is_read_from_an_active_or_draining_service() {
        let count = |described: Service| {
            described_service_of("jobs", "orders", &[described], &[]).map(running_count_of)
        };
        assert_eq!(count(service("ACTIVE", 3)).expect("active"), 3);
        // A draining service is being deleted but its tasks still run and share the queue.
        assert_eq!(count(service("DRAINING", 2)).expect("draining"), 2);
        assert_eq!(count(service("ACTIVE", 0)).expect("scaled to zero"), 0);
    }

    #[test]
    fn a_missing_or_deleted_service_is_not_found() {
        let missing = described_service_of(
            "jobs",
            "orders",
            &[],
            &[Failure::builder()
                .arn("arn:aws:ecs:us-east-1:123456789012:service/jobs/orders")
                .reason(MISSING)
                .detail("no such service")
                .build()],
        )
        .expect_err("missing");
        match &missing {
            EcsError::ServiceNotFound {
                cluster,
                service,
                reason,
            } => {
                assert_eq!((cluster.as_str(), service.as_str()), ("jobs", "orders"));
                assert_eq!(reason, "MISSING (no such service)");
            }
            other => panic!("expected ServiceNotFound, got {other:?}"),
        }
        assert!(!missing.is_retryable());

        let deleted = described_service_of("jobs", "orders", &[service("INACTIVE", 0)], &[])
            .expect_err("deleted");
        assert!(
            matches!(&deleted, EcsError::ServiceNotFound { reason, .. } if reason == "INACTIVE"),
            "{deleted:?}"
        );
    }

    #[test]
    fn the_task_endpoint_is_below_the_metadata_uri() {
        for uri in [
            "http://169.254.170.2/v4/0123abcd",
            "http://169.254.170.2/v4/0123abcd/",
            " http://169.254.170.2/v4/0123abcd\n",
        ] {
            assert_eq!(
                task_endpoint(uri).expect("valid").to_string(),
                "http://169.254.170.2/v4/0123abcd/task",
                "{uri:?}"
            );
        }
        for uri in [
            "https://169.254.170.2/v4/0123abcd",
            "169.254.170.2/v4/0123abcd",
            "http:///v4",
            "http://169.254.170.2/v4?x=1",
            "not a uri",
        ] {
            let error = task_endpoint(uri).expect_err(uri);
            assert_eq!(error.setting, METADATA_URI_VAR);
        }
    }

    #[test]
    fn an_unset_or_blank_metadata_uri_means_not_in_ecs() {
        assert_eq!(metadata_uri_from(Err(VarError::NotPresent)), Ok(None));
        assert_eq!(metadata_uri_from(Ok("  ".to_owned())), Ok(None));
        assert_eq!(
            metadata_uri_from(Ok("http://169.254.170.2/v4/ab ".to_owned())),
            Ok(Some("http://169.254.170.2/v4/ab".to_owned()))
        );
    }

    #[test]
    fn only_passing_failures_are_retryable() {
        let metadata_status = |status| EcsError::MetadataInvalid {
            uri: "http://169.254.170.2/v4/ab/task".to_owned(),
            status,
            message: String::new(),
        };
        assert!(metadata_status(500).is_retryable());
        assert!(metadata_status(429).is_retryable());
        assert!(!metadata_status(404).is_retryable());
        assert!(!metadata_status(200).is_retryable());
        let throttled = EcsError::from(BackendError::Throttled {
            operation: "DescribeServices",
            message: "Rate exceeded".to_owned(),
        });
        assert!(throttled.is_retryable());
        let denied = EcsError::from(BackendError::Rejected {
            operation: "DescribeTasks",
            code: "AccessDeniedException".to_owned(),
            message: "not authorized to perform: ecs:DescribeTasks".to_owned(),
        });
        assert!(!denied.is_retryable());
        assert!(denied.to_string().contains("DescribeTasks"), "{denied}");
    }
}
