//! `#[spotq::worker]` needs only feature `macros`: its spec binds to the embedded queue
//! and runs there, with no SQS backend compiled in (`.ci/run` runs this file with
//! `--no-default-features --features macros`).

use std::time::Duration;

use spotq::{EmbeddedQueue, Message};
use tokio::time::sleep;

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
    let drained = {
        let queue = queue.clone();
        async move {
            while queue.counts().total() > 0 {
                sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let spec = handle_job_worker();
    assert_eq!(spec.config().concurrency, 2);
    let report = spec
        .worker(queue.clone())
        .expect("settings are valid")
        .run_until(drained)
        .await
        .expect("worker runs");
    assert_eq!(report.deleted, 2);
    assert_eq!(dead_letters.counts().visible, 1);
}
