//! Every key set, and what the worker's settings become.
#![deny(warnings)]

use std::time::Duration;

use spotq::{config::Backoff, config::Heartbeat, config::QueueSource, config::RetryPolicy, config::WorkerConfig};

#[spotq::worker(
    queue = "orders.fifo",
    concurrency = 32,
    pollers = 4,
    batch_size = 5,
    wait_time = "10s",
    visibility_timeout = "2m",
    handler_timeout = "1m30s",
    heartbeat = "20s",
    retry_backoff = ("500ms", "10m"),
    exit_after_empty_receives = 3,
    max_run_time = "1h30m",
    name = "orders",
    fifo = true,
    crate = "::spotq",
)]
async fn handle(body: String) {
    let _ = body;
}

#[spotq::worker(
    queue = "slow",
    visibility_timeout = "12h",
    handler_timeout = "11h59m",
    heartbeat = false,
    retry_backoff = false,
    wait_time = "0s",
)]
async fn slow(body: String) {
    let _ = body;
}

#[spotq::worker(queue = "auto", heartbeat = true)]
async fn auto(body: String) {
    let _ = body;
}

fn main() {
    let spec = handle_worker();
    assert_eq!(spec.queue(), &QueueSource::name("orders.fifo"));
    assert_eq!(
        spec.config(),
        &WorkerConfig {
            concurrency: 32,
            pollers: Some(4),
            batch_size: 5,
            wait_time: Duration::from_secs(10),
            visibility_timeout: Some(Duration::from_secs(120)),
            handler_timeout: Some(Duration::from_secs(90)),
            heartbeat: Heartbeat::Every(Duration::from_secs(20)),
            retry: RetryPolicy::Backoff(Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(600),
            )),
            exit_after_empty_receives: Some(3),
            max_run_time: Some(Duration::from_secs(90 * 60)),
            name: Some("orders".to_owned()),
            ..WorkerConfig::default()
        }
    );
    spec.config().validate().expect("valid");

    let spec = slow_worker();
    let config = spec.config();
    assert_eq!(config.visibility_timeout, Some(Duration::from_secs(12 * 3600)));
    assert_eq!(config.handler_timeout, Some(Duration::from_secs(12 * 3600 - 60)));
    assert_eq!(config.heartbeat, Heartbeat::Off);
    assert_eq!(config.retry, RetryPolicy::VisibilityTimeout);
    assert_eq!(config.wait_time, Duration::ZERO);
    config.validate().expect("valid");

    assert_eq!(auto_worker().config(), &WorkerConfig::default());
}
