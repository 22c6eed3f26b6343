//! `#[spotq::worker]` needs only feature `macros`: its spec binds to the embedded queue
//! and runs there, with no SQS backend compiled in (`.ci/run` runs this file with
//! `--no-default-features --features macros`).

use std::time::Duration;

use spotq::{EmbeddedQueue, Message, config::Heartbeat, testing::run_until_drained};

#[spotq::worker(queue = env("JOBS_QUEUE"), concurrency = 2, retry_backoff = ("0s", "0s"))]
async fn handle_job(message: Message) -> Result<(), String> {
    match message.body() {
        "bad" => Err("bad job".to_owned()),
        _ => Ok(()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_macro_worker_runs_on_the_embedded_queue() {
    let dead_letters = EmbeddedQueue::new("jobs-dlq");
    let queue = EmbeddedQueue::builder("jobs")
        .redrive(&dead_letters, 2)
        .build()
        .expect("queue");
    queue.send_many(["1", "bad", "2"]);
    let spec = handle_job_worker();
    assert_eq!(spec.config().concurrency, 2);
    let report = run_until_drained(spec, &queue).await.expect("worker runs");
    assert_eq!(report.deleted, 2);
    assert_eq!(dead_letters.counts().visible, 1);
}

#[spotq::worker(queue = "jobs", handler_timeout = "1.5s", heartbeat = "1m0.5s")]
async fn handle_quickly(_message: Message) {}

/// The attribute's durations are spotq's one duration syntax: a fraction on the last part.
#[test]
fn a_duration_may_end_in_a_fraction() {
    let spec = handle_quickly_worker();
    let config = spec.config();
    assert_eq!(config.handler_timeout, Some(Duration::from_millis(1_500)));
    assert_eq!(
        config.heartbeat,
        Heartbeat::Every(Duration::from_millis(60_500))
    );
    config.validate().expect("valid");
}
