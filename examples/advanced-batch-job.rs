//! A scale-to-zero batch job: a task started for a backlog (ECS `RunTask`, or a service
//! that `spotq-controller` wakes from zero) works the queue until two receives in a row
//! find it empty with nothing held (`exit_after_empty_receives`), then exits 0. A
//! SIGTERM (a Spot interruption) still stops it the usual way: handlers get the grace
//! period and every message they hold goes back to the queue at once. After six hours it
//! stops the same way (`max_run_time`); a queue that refuses its receives (deleted, or
//! access revoked) makes it exit 1.
//!
//! Run with: `cargo run --features sqs --example advanced-batch-job` (on the embedded
//! queue), or `JOBS_QUEUE=jobs cargo run --features sqs --example advanced-batch-job` for
//! an SQS queue.

use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use spotq::shutdown::AnyWorker;
use spotq::{EmbeddedQueue, config::ConfigError};

#[derive(Debug, Deserialize)]
struct Job {
    report: String,
    rows: u32,
}

#[spotq::worker(
    queue = env("JOBS_QUEUE"),
    concurrency = 8,
    visibility_timeout = "5m",
    exit_after_empty_receives = 2,
    max_run_time = "6h"
)]
async fn handle_job(job: Job) -> Result<(), std::io::Error> {
    // Rendering a report: a little time per row.
    tokio::time::sleep(Duration::from_millis(u64::from(job.rows))).await;
    tracing::info!(report = job.report, rows = job.rows, "report rendered");
    Ok(())
}

/// The job on an embedded queue, with 1 s long polls: it finds the queue empty 2 s after
/// the last job, not 40 s.
fn on_embedded(queue: EmbeddedQueue) -> Result<AnyWorker, ConfigError> {
    handle_job_worker()
        .configure(|config| config.wait_time = Duration::from_secs(1))
        .worker(queue)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    spotq::telemetry::logging::init(spotq::telemetry::logging::LogFormat::from_env());
    let worker = match std::env::var_os("JOBS_QUEUE") {
        Some(_) => handle_job_worker().connect().await?,
        None => {
            let queue = EmbeddedQueue::new("jobs");
            queue.send_many(sample_jobs(200));
            on_embedded(queue)?
        }
    };
    // Until the queue is drained, or SIGTERM / SIGINT.
    let report = worker.run().await?;
    println!(
        "{:?}: {} jobs done in {:.1} s; exiting",
        report.stop_reason,
        report.deleted,
        report.elapsed.as_secs_f64()
    );
    Ok(report.exit_code())
}

fn sample_jobs(count: u32) -> impl Iterator<Item = String> {
    (0..count).map(|n| format!(r#"{{"report":"r-{n}","rows":{}}}"#, 10 + n % 40))
}

#[cfg(test)]
mod tests {
    use spotq::{shutdown::ShutdownHandle, shutdown::StopReason};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_job_exits_once_the_queue_is_drained() {
        let queue = EmbeddedQueue::new("jobs");
        queue.send_many(sample_jobs(50));
        let report = on_embedded(queue.clone())
            .expect("valid settings")
            .run_with(ShutdownHandle::new())
            .await
            .expect("runs to completion");
        assert_eq!(report.stop_reason, StopReason::Drained);
        assert_eq!(report.exit_code(), ExitCode::SUCCESS);
        assert_eq!(report.deleted, 50);
        assert_eq!(queue.counts().total(), 0);
    }
}
