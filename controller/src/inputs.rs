//! What the controller reads every poll: the queue's counts (`GetQueueAttributes`) and,
//! optionally, the workers' measured throughput from their `/metrics`; and the retry
//! with backoff every call goes through.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use spotq::backend::Backend;
use spotq::{BackendError, Backoff, SqsBackend, metric_names};

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
    /// ([`spotq::retry`]); `on_error` sees every failure (for logs and error counters).
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
        spotq::retry(self.backoff, self.attempts, is_retryable, call).await
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

/// The figures of one worker's `/metrics` that throughput is measured from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerSample {
    /// `spotq_handler_duration_seconds_sum`, over every worker in the process.
    pub duration_sum: f64,
    /// `spotq_handler_duration_seconds_count`.
    pub duration_count: f64,
    /// `spotq_concurrency`: handlers allowed at once.
    pub concurrency: f64,
}

impl WorkerSample {
    /// Reads the sample from a Prometheus text exposition; `None` when the handler
    /// duration or the concurrency is missing (not a spotq worker, or not started).
    pub fn parse(text: &str) -> Option<Self> {
        let mut sample = Self::default();
        let (mut has_count, mut has_concurrency) = (false, false);
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
            let name = series.split('{').next().unwrap_or(series).trim();
            // The handler duration is a summary: its `_sum` and `_count` series.
            let duration_series = name.strip_prefix(metric_names::HANDLER_DURATION_SECONDS);
            match duration_series {
                Some("_sum") => sample.duration_sum += value,
                Some("_count") => {
                    sample.duration_count += value;
                    has_count = true;
                }
                _ if name == metric_names::CONCURRENCY => {
                    sample.concurrency += value;
                    has_concurrency = true;
                }
                _ => {}
            }
        }
        (has_count && has_concurrency).then_some(sample)
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

/// The most of a `/metrics` answer read.
const MAX_METRICS_BODY: usize = 4 * 1024 * 1024;

/// How long a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Measures per-task throughput from the `/metrics` of the workers at some URLs.
#[derive(Debug)]
pub struct ThroughputProbe {
    urls: Vec<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
    previous: HashMap<String, WorkerSample>,
}

impl ThroughputProbe {
    /// A probe of the workers at `urls` (plain `http://`).
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            previous: HashMap::new(),
        }
    }

    /// The mean per-task throughput of the workers that answered and have finished a
    /// message; `None` if none has. A worker that does not answer is skipped (logged at
    /// debug: tasks come and go).
    pub async fn measure(&mut self) -> Option<f64> {
        let mut rates = Vec::new();
        for url in self.urls.clone() {
            match self.scrape(&url).await {
                Ok(Some(sample)) => {
                    if let Some(rate) = sample.throughput_since(self.previous.get(&url)) {
                        rates.push(rate);
                    }
                    self.previous.insert(url, sample);
                }
                Ok(None) => tracing::debug!(%url, "no spotq worker figures at this URL"),
                Err(error) => tracing::debug!(%url, %error, "could not scrape a worker"),
            }
        }
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
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
            Ok(WorkerSample::parse(&String::from_utf8_lossy(&body)))
        };
        tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {SCRAPE_TIMEOUT:?}"))?
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
        let sample = WorkerSample::parse(METRICS).expect("a spotq worker");
        assert_eq!(
            sample,
            WorkerSample {
                duration_sum: 50.0,
                duration_count: 100.0,
                concurrency: 8.0
            }
        );
        // 0.5 s a message, 8 at once.
        assert_eq!(sample.throughput_since(None), Some(16.0));
        // Since the last scrape: 20 more messages in 20 s, 1 s each.
        let later = WorkerSample {
            duration_sum: 70.0,
            duration_count: 120.0,
            concurrency: 8.0,
        };
        assert_eq!(later.throughput_since(Some(&sample)), Some(8.0));
        // Nothing finished since: the whole run's mean.
        assert_eq!(sample.throughput_since(Some(&sample)), Some(16.0));
        assert_eq!(
            WorkerSample {
                duration_count: 0.0,
                duration_sum: 0.0,
                concurrency: 8.0
            }
            .throughput_since(None),
            None
        );
        assert_eq!(WorkerSample::parse("up 1\n"), None);
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
