//! What the controller reads every poll: the queue's counts (`GetQueueAttributes`) and,
//! optionally, the workers' `/metrics` (at fixed addresses, or at the private addresses
//! of an ECS service's tasks): their measured throughput and the messages they hold;
//! and the retry with backoff every call goes through.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::types::{DesiredStatus, Task};
use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics::counter;
use spotq::backend::Backend;
use spotq::backend::classify;
use spotq::{SqsBackend, backend::BackendError, config::Backoff, telemetry::names as metric_names};

use crate::decision::QueueCounts;

/// How a failed call is retried within one poll: 3 attempts, 100 ms then 200 ms
/// apart (jittered), so a poll's reads end well within a poll interval.
pub const CALL_RETRY: Retry = Retry {
    attempts: 3,
    backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
};

/// How many times a call is tried, and how long to wait between tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, at least 1.
    pub attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
}

/// An error that may or may not go away when the call is repeated.
pub trait Retryable {
    /// Whether the same call may succeed later.
    fn is_retryable(&self) -> bool;
}

impl Retryable for BackendError {
    fn is_retryable(&self) -> bool {
        BackendError::is_retryable(self)
    }
}

impl Retry {
    /// Runs `call` until it succeeds, fails for good, or the attempts are used up
    /// ([`spotq::backend::retry`]); `on_error` sees every failure (for logs and error counters).
    pub async fn run<T, E, F, Fut>(&self, call: F, mut on_error: impl FnMut(&E)) -> Result<T, E>
    where
        E: Retryable + fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let is_retryable = |error: &E| {
            on_error(error);
            error.is_retryable()
        };
        spotq::backend::retry(self.backoff, self.attempts, is_retryable, call).await
    }
}

/// A queue whose counts the controller reads.
#[async_trait]
pub trait QueueSource: Send + Sync + 'static {
    /// The queue's approximate counts, with one call.
    async fn counts(&self) -> Result<QueueCounts, BackendError>;
}

/// An SQS queue, read with `GetQueueAttributes`.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    backend: SqsBackend,
}

impl SqsQueue {
    /// Uses `client` for `queue`, a URL or a name (resolved once with `GetQueueUrl`).
    pub async fn connect(client: aws_sdk_sqs::Client, queue: &str) -> Result<Self, BackendError> {
        Ok(Self {
            backend: SqsBackend::connect(client, queue).await?,
        })
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        self.backend.queue_url()
    }
}

#[async_trait]
impl QueueSource for SqsQueue {
    async fn counts(&self) -> Result<QueueCounts, BackendError> {
        let attributes = self.backend.attributes().await?;
        Ok(attributes.counts)
    }
}

/// The figures of one worker process's `/metrics`: what throughput is measured from, and
/// the messages it holds. Each is summed over the process's workers of one queue (the
/// series whose `queue` label is its name), or of every queue it works.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerSample {
    /// `spotq_handler_duration_seconds_sum` (0 before a handler has finished).
    pub duration_sum: f64,
    /// `spotq_handler_duration_seconds_count`.
    pub duration_count: f64,
    /// `spotq_concurrency`: handlers allowed at once.
    pub concurrency: f64,
    /// `spotq_messages_in_flight`: messages held (received, not yet settled).
    pub held: f64,
}

impl WorkerSample {
    /// Reads the sample of the workers of `queue` (a queue's name, as the runtime labels
    /// its series: `queue="orders"`), or with `None` of every queue, from a Prometheus
    /// text exposition; `None` when the concurrency or the messages held are missing
    /// (not a spotq worker, no worker of that queue, or not started: a worker publishes
    /// both from its start).
    pub fn parse(text: &str, queue: Option<&str>) -> Option<Self> {
        let mut sample = Self::default();
        let (mut has_held, mut has_concurrency) = (false, false);
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let name = name.trim();
            if let Some(queue) = queue
                && label(labels, "queue").as_deref() != Some(queue)
            {
                continue;
            }
            // The handler duration is a summary: its `_sum` and `_count` series.
            let duration_series = name.strip_prefix(metric_names::HANDLER_DURATION_SECONDS);
            match duration_series {
                Some("_sum") => sample.duration_sum += value,
                Some("_count") => sample.duration_count += value,
                _ if name == metric_names::CONCURRENCY => {
                    sample.concurrency += value;
                    has_concurrency = true;
                }
                _ if name == metric_names::MESSAGES_IN_FLIGHT => {
                    sample.held += value;
                    has_held = true;
                }
                _ => {}
            }
        }
        (has_held && has_concurrency).then_some(sample)
    }

    /// Messages per second this worker gets through when busy: its concurrency over the
    /// mean handler time since `previous` (or since it started, when no handler has
    /// finished since, or there is no previous sample).
    pub fn throughput_since(&self, previous: Option<&Self>) -> Option<f64> {
        let windowed = previous.and_then(|previous| {
            let count = self.duration_count - previous.duration_count;
            let sum = self.duration_sum - previous.duration_sum;
            (count > 0.0 && sum > 0.0).then(|| sum / count)
        });
        let mean = windowed.or_else(|| {
            (self.duration_count > 0.0 && self.duration_sum > 0.0)
                .then(|| self.duration_sum / self.duration_count)
        })?;
        let rate = self.concurrency / mean;
        (rate.is_finite() && rate > 0.0).then_some(rate)
    }
}

/// The value of the label `key` in a series' labels (`queue="orders",worker="w"}`, the
/// text after `{`), unescaped; `None` if it has no such label.
fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        let (name, after) = rest.split_once('=')?;
        let quoted = after.trim_start().strip_prefix('"')?;
        let mut chars = quoted.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (index, '"') => break index,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, other) => value.push(other),
            }
        };
        if name.trim() == key {
            return Some(value);
        }
        rest = quoted[end + 1..].trim_start().strip_prefix(',')?;
    }
}

/// The most of a `/metrics` answer read.
const MAX_METRICS_BODY: usize = 4 * 1024 * 1024;

/// How long a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one read of a binding's workers found.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerFigures {
    /// The mean per-task throughput of the workers that answered and have finished a
    /// message; `None` if none has.
    pub throughput: Option<f64>,
    /// The messages every worker holds, summed; `None` unless every worker was found and
    /// answered (a worker that cannot be read may hold messages).
    pub held: Option<u64>,
}

impl WorkerFigures {
    /// The figures of a service that runs no task: no worker holds a message.
    pub const NONE_RUNNING: Self = Self {
        throughput: None,
        held: Some(0),
    };
}

/// What the controller reads from a binding's workers every poll.
#[async_trait]
pub trait WorkerSource: Send + Sync + 'static {
    /// Reads every worker once.
    async fn read(&mut self) -> WorkerFigures;
}

/// Where a binding's workers serve `/metrics`.
#[derive(Clone, Debug)]
pub enum WorkerAddresses {
    /// These URLs (plain `http://`).
    Fixed(Vec<String>),
    /// The tasks of an ECS service.
    Ecs(EcsTasks),
}

/// The `/metrics` URLs of an ECS service's tasks: `ListTasks` (the tasks meant to run)
/// and `DescribeTasks`, each task's private IPv4 address (its `awsvpc` network
/// interface) with the port the workers serve on. Tasks being stopped are not read: they
/// finish or release what they hold by themselves.
///
/// The controller's role needs `ecs:ListTasks` (on the cluster's container instances,
/// or on `*` with the condition `ecs:cluster`) and `ecs:DescribeTasks` on
/// `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/*`.
#[derive(Clone, Debug)]
pub struct EcsTasks {
    client: aws_sdk_ecs::Client,
    cluster: String,
    service: String,
    port: u16,
}

/// The tasks of a service, as [`EcsTasks::addresses`] found them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskAddresses {
    /// The `/metrics` URL of each task with an address.
    pub urls: Vec<String>,
    /// Tasks without an address yet (still starting), or that `DescribeTasks` did not
    /// describe.
    pub unaddressed: usize,
}

/// The most tasks one `DescribeTasks` call takes.
const DESCRIBE_TASKS_MAX: usize = 100;

impl EcsTasks {
    /// The tasks of `service` (a name or an ARN) in `cluster`, whose workers serve
    /// `/metrics` on `port`.
    pub fn new(
        client: aws_sdk_ecs::Client,
        cluster: impl Into<String>,
        service: impl Into<String>,
        port: u16,
    ) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            service: service.into(),
            port,
        }
    }

    /// The service's tasks now.
    pub async fn addresses(&self) -> Result<TaskAddresses, BackendError> {
        // `ListTasks` filters by the service's name, not its ARN.
        let service = self.service.rsplit('/').next().unwrap_or(&self.service);
        let mut arns = Vec::new();
        let mut pages = self
            .client
            .list_tasks()
            .cluster(&self.cluster)
            .service_name(service)
            .desired_status(DesiredStatus::Running)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| classify("ListTasks", error))?;
            arns.extend(page.task_arns().iter().cloned());
        }
        let mut found = TaskAddresses::default();
        for chunk in arns.chunks(DESCRIBE_TASKS_MAX) {
            let described = self
                .client
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|error| classify("DescribeTasks", error))?;
            found.unaddressed += described.failures().len();
            for task in described.tasks() {
                match private_ipv4(task) {
                    Some(ip) => found
                        .urls
                        .push(format!("http://{ip}:{}/metrics", self.port)),
                    None => found.unaddressed += 1,
                }
            }
        }
        Ok(found)
    }
}

/// The private IPv4 address of a task's network interface, once it has one.
fn private_ipv4(task: &Task) -> Option<&str> {
    task.attachments()
        .iter()
        .filter(|attachment| attachment.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|attachment| attachment.details())
        .find(|detail| detail.name() == Some("privateIPv4Address"))
        .and_then(|detail| detail.value())
        .filter(|ip| !ip.is_empty())
}

/// Reads the `/metrics` of a binding's workers: their per-task throughput and the
/// messages they hold, from the series of the binding's queue ([`WorkerProbe::for_queue`]).
#[derive(Debug)]
pub struct WorkerProbe {
    binding: String,
    addresses: WorkerAddresses,
    queue: Option<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
    previous: HashMap<String, WorkerSample>,
}

impl WorkerProbe {
    /// A probe of the workers at `addresses`, for the binding named `binding` (in logs
    /// and metric labels). It sums the series of every queue a worker process works:
    /// [`for_queue`](Self::for_queue) reads one queue's.
    pub fn new(binding: impl Into<String>, addresses: WorkerAddresses) -> Self {
        Self {
            binding: binding.into(),
            addresses,
            queue: None,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            previous: HashMap::new(),
        }
    }

    /// Reads only the series of `queue`, a queue's name (the runtime's `queue` label): a
    /// process may run workers of several queues, and another queue's messages held or
    /// throughput are not this binding's. A process with no worker of `queue` counts as
    /// a worker that could not be read.
    #[must_use]
    pub fn for_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Scrapes every worker at once. A worker that does not answer is skipped for the
    /// throughput (logged at debug: tasks come and go) and leaves the messages held
    /// unknown.
    pub async fn measure(&mut self) -> WorkerFigures {
        let (urls, unaddressed) = match &self.addresses {
            WorkerAddresses::Fixed(urls) => (urls.clone(), 0),
            WorkerAddresses::Ecs(tasks) => match tasks.addresses().await {
                Ok(found) => (found.urls, found.unaddressed),
                Err(error) => {
                    tracing::warn!(binding = %self.binding, %error, "could not list the service's tasks");
                    counter!(
                        "spotq_controller_errors_total",
                        "binding" => self.binding.clone(),
                        "operation" => error.operation()
                    )
                    .increment(1);
                    return WorkerFigures::default();
                }
            },
        };
        let scrapes = join_all(urls.iter().map(|url| self.scrape(url))).await;
        let mut read = Vec::new();
        for (url, scraped) in urls.into_iter().zip(scrapes) {
            match scraped {
                Ok(Some(sample)) => read.push((url, Some(sample))),
                Ok(None) => {
                    tracing::debug!(%url, queue = ?self.queue, "no spotq worker figures at this URL");
                    read.push((url, None));
                }
                Err(error) => {
                    tracing::debug!(%url, %error, "could not scrape a worker");
                    read.push((url, None));
                }
            }
        }
        let figures = figures_of(&read, unaddressed, &self.previous);
        // Tasks come and go: only the workers just read are remembered.
        self.previous = read
            .into_iter()
            .filter_map(|(url, sample)| Some((url, sample?)))
            .collect();
        figures
    }

    async fn scrape(&self, url: &str) -> Result<Option<WorkerSample>, String> {
        let uri: Uri = url.parse().map_err(|error| format!("{error}"))?;
        let exchange = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|error| error.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_METRICS_BODY)
                .collect()
                .await
                .map_err(|error| error.to_string())?
                .to_bytes();
            Ok(WorkerSample::parse(
                &String::from_utf8_lossy(&body),
                self.queue.as_deref(),
            ))
        };
        tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {SCRAPE_TIMEOUT:?}"))?
    }
}

/// The figures of one read: each worker's sample (`None` for one that could not be
/// read), `unaddressed` more workers that could not even be asked, and the samples of
/// the read before (for the throughput since).
fn figures_of(
    read: &[(String, Option<WorkerSample>)],
    unaddressed: usize,
    previous: &HashMap<String, WorkerSample>,
) -> WorkerFigures {
    let rates: Vec<f64> = read
        .iter()
        .filter_map(|(url, sample)| sample.as_ref()?.throughput_since(previous.get(url)))
        .collect();
    let held = if unaddressed == 0 {
        read.iter().try_fold(0u64, |sum, (_, sample)| {
            // A gauge of messages: a whole, non-negative number.
            let held = sample.as_ref()?.held.max(0.0).round() as u64;
            Some(sum.saturating_add(held))
        })
    } else {
        None
    };
    WorkerFigures {
        throughput: (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64),
        held,
    }
}

#[async_trait]
impl WorkerSource for WorkerProbe {
    async fn read(&mut self) -> WorkerFigures {
        self.measure().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# TYPE spotq_handler_duration_seconds summary
spotq_handler_duration_seconds{queue=\"jobs\",worker=\"jobs\",quantile=\"0.5\"} 0.25
spotq_handler_duration_seconds_sum{queue=\"jobs\",worker=\"jobs\"} 50
spotq_handler_duration_seconds_count{queue=\"jobs\",worker=\"jobs\"} 100
# TYPE spotq_concurrency gauge
spotq_concurrency{queue=\"jobs\",worker=\"jobs\"} 8
spotq_messages_in_flight{queue=\"jobs\",worker=\"jobs\"} 3
";

    #[test]
    fn a_worker_s_metrics_give_its_throughput_when_busy() {
        let sample = WorkerSample::parse(METRICS, None).expect("a spotq worker");
        assert_eq!(
            sample,
            WorkerSample {
                duration_sum: 50.0,
                duration_count: 100.0,
                concurrency: 8.0,
                held: 3.0,
            }
        );
        // 0.5 s a message, 8 at once.
        assert_eq!(sample.throughput_since(None), Some(16.0));
        // Since the last scrape: 20 more messages in 20 s, 1 s each.
        let later = WorkerSample {
            duration_sum: 70.0,
            duration_count: 120.0,
            ..sample
        };
        assert_eq!(later.throughput_since(Some(&sample)), Some(8.0));
        // Nothing finished since: the whole run's mean.
        assert_eq!(sample.throughput_since(Some(&sample)), Some(16.0));
        assert_eq!(
            WorkerSample {
                duration_count: 0.0,
                duration_sum: 0.0,
                ..sample
            }
            .throughput_since(None),
            None
        );
        assert_eq!(WorkerSample::parse("up 1\n", None), None);
    }

    #[test]
    fn a_worker_that_has_handled_nothing_yet_still_says_what_it_holds() {
        let fresh = "\
spotq_concurrency{queue=\"jobs\",worker=\"jobs\"} 8
spotq_messages_in_flight{queue=\"jobs\",worker=\"jobs\"} 0
";
        let sample = WorkerSample::parse(fresh, None).expect("a spotq worker");
        assert_eq!((sample.held, sample.throughput_since(None)), (0.0, None));
    }

    #[test]
    fn a_process_s_figures_are_those_of_the_queue_asked_for() {
        let two = format!(
            "{METRICS}\
spotq_concurrency{{queue=\"other, \\\"odd\\\" = name\",worker=\"o\"}} 2
spotq_messages_in_flight{{worker=\"o\",queue=\"other, \\\"odd\\\" = name\"}} 5
spotq_messages_in_flight{{queue=\"jobs.fifo\",worker=\"f\"}} 7
spotq_concurrency{{queue=\"jobs.fifo\",worker=\"f\"}} 1
"
        );
        let jobs = WorkerSample::parse(&two, Some("jobs")).expect("a worker of jobs");
        assert_eq!((jobs.held, jobs.concurrency), (3.0, 8.0));
        assert_eq!(jobs.throughput_since(None), Some(16.0));
        let other = WorkerSample::parse(&two, Some("other, \"odd\" = name")).expect("escaped");
        assert_eq!((other.held, other.concurrency), (5.0, 2.0));
        assert_eq!(other.throughput_since(None), None, "nothing handled");
        let all = WorkerSample::parse(&two, None).expect("every queue");
        assert_eq!((all.held, all.concurrency), (15.0, 11.0));
        assert_eq!(
            WorkerSample::parse(&two, Some("job")),
            None,
            "no worker of it"
        );

        assert_eq!(
            label("queue=\"a\",worker=\"b\"}", "worker").as_deref(),
            Some("b")
        );
        assert_eq!(
            label("queue=\"a\\\\b\\nc\"}", "queue").as_deref(),
            Some("a\\b\nc")
        );
        assert_eq!(label("worker=\"b\"}", "queue"), None);
        assert_eq!(label("", "queue"), None);
        assert_eq!(label("queue=unquoted}", "queue"), None);
    }

    #[test]
    fn the_messages_held_are_known_only_when_every_worker_was_read() {
        let worker = |held: f64| WorkerSample {
            duration_sum: 10.0,
            duration_count: 20.0,
            concurrency: 4.0,
            held,
        };
        let none = HashMap::new();
        let read = |samples: &[Option<WorkerSample>]| -> Vec<(String, Option<WorkerSample>)> {
            samples
                .iter()
                .enumerate()
                .map(|(index, sample)| (format!("http://10.0.0.{index}:8080/metrics"), *sample))
                .collect()
        };
        let both = figures_of(&read(&[Some(worker(2.0)), Some(worker(0.0))]), 0, &none);
        assert_eq!(both.held, Some(2));
        // 4 at once, 0.5 s each.
        assert_eq!(both.throughput, Some(8.0));
        let idle = figures_of(&read(&[Some(worker(0.0)), Some(worker(0.0))]), 0, &none);
        assert_eq!(idle.held, Some(0));
        // A worker that did not answer may hold messages: unknown, but the throughput of
        // the others still counts.
        let one_silent = figures_of(&read(&[Some(worker(0.0)), None]), 0, &none);
        assert_eq!((one_silent.held, one_silent.throughput), (None, Some(8.0)));
        // So may a task not asked (no address yet).
        assert_eq!(figures_of(&read(&[Some(worker(0.0))]), 1, &none).held, None);
        // No task at all: nobody holds anything.
        assert_eq!(figures_of(&[], 0, &none).held, Some(0));
    }

    #[test]
    fn a_task_s_address_is_its_network_interface_s_private_ipv4() {
        use aws_sdk_ecs::types::{Attachment, KeyValuePair};
        let detail =
            |name: &str, value: &str| KeyValuePair::builder().name(name).value(value).build();
        let eni = Attachment::builder()
            .r#type("ElasticNetworkInterface")
            .details(detail("subnetId", "subnet-12345678"))
            .details(detail("privateIPv4Address", "10.0.1.17"))
            .build();
        let running = Task::builder().attachments(eni).build();
        assert_eq!(private_ipv4(&running), Some("10.0.1.17"));
        let provisioning = Task::builder()
            .attachments(
                Attachment::builder()
                    .r#type("ElasticNetworkInterface")
                    .details(detail("subnetId", "subnet-12345678"))
                    .build(),
            )
            .build();
        assert_eq!(private_ipv4(&provisioning), None, "no address yet");
        assert_eq!(private_ipv4(&Task::builder().build()), None);
    }

    #[derive(Debug)]
    struct Flaky(bool);

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "flaky (retryable: {})", self.0)
        }
    }

    impl Retryable for Flaky {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_what_may_pass_and_only_so_often() {
        let mut calls = 0;
        let mut seen = 0;
        let result: Result<(), Flaky> = CALL_RETRY
            .run(
                || {
                    calls += 1;
                    async { Err(Flaky(true)) }
                },
                |_| seen += 1,
            )
            .await;
        assert!(result.is_err());
        assert_eq!((calls, seen), (3, 3));

        let mut calls = 0;
        let result: Result<(), Flaky> = CALL_RETRY
            .run(
                || {
                    calls += 1;
                    async { Err(Flaky(false)) }
                },
                |_| {},
            )
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a refused call is not repeated");

        let mut calls = 0;
        let result = CALL_RETRY
            .run(
                || {
                    calls += 1;
                    let attempt = calls;
                    async move {
                        if attempt < 2 {
                            Err(Flaky(true))
                        } else {
                            Ok(attempt)
                        }
                    }
                },
                |_| {},
            )
            .await;
        assert_eq!(result.ok(), Some(2));
    }
}
