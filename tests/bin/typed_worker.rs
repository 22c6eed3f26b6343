//! A typed worker binary for the process tests: `#[spotq::worker]` on a handler of JSON
//! jobs (`{"name": "...", "millis": N}`: wait N ms, then succeed), run by `spotq::run`,
//! the way a user's binary is written. A body that is not such a job fails to decode,
//! is retried, and goes to the dead-letter queue through the queue's redrive policy.
//!
//! Settings come from the environment: `SPOTQ_QUEUE` (the queue, read by `spotq::run`
//! through `queue = env("SPOTQ_QUEUE")`), `SPOTQ_HTTP_ADDR` (`/metrics`, `/health`,
//! `/ready`; default `0.0.0.0:8080`), `SPOTQ_LOG_FORMAT` and `RUST_LOG`. It runs until
//! SIGTERM or SIGINT; a bad setting stops it at start with an error naming it.

use std::time::Duration;

use serde::Deserialize;
use spotq::Context;

/// One job.
#[derive(Debug, Deserialize)]
struct Job {
    /// What the job is called (not logged: it is message content).
    #[allow(dead_code)]
    name: String,
    /// How long the job takes.
    millis: u64,
}

#[spotq::worker(
    queue = env("SPOTQ_QUEUE"),
    concurrency = 8,
    wait_time = "1s",
    retry_backoff = ("100ms", "100ms")
)]
async fn handle_job(job: Job, _cx: &Context) -> Result<(), std::io::Error> {
    tokio::time::sleep(Duration::from_millis(job.millis)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotq::telemetry::logging::init(spotq::telemetry::logging::LogFormat::from_env());
    let health = spotq::telemetry::health::Health::default();
    let server =
        spotq::telemetry::serve::serve(spotq::telemetry::serve::addr_from_env()?, health.clone())
            .await?;
    spotq::run([handle_job_worker().health(health)]).await?;
    server.shutdown().await;
    Ok(())
}
