//! A scale-to-zero batch job: a task started for a backlog (ECS `RunTask`, or a service
//! that `spotq-controller` wakes from zero) works the queue until it is drained, then
//! exits 0. A SIGTERM (a Spot interruption) still stops it the usual way: handlers get
//! the grace period and every message they hold goes back to the queue at once.
//!
//! Run with: `cargo run --features sqs --example batch_job` (on the embedded queue), or
//! `JOBS_QUEUE=jobs cargo run --features sqs --example batch_job` for an SQS queue.

use std::time::Duration;

use serde::Deserialize;
use spotq::{Backend, Drained, EmbeddedQueue, RunReport, ShutdownHandle, SqsBackend};

#[derive(Debug, Deserialize)]
struct Job {
    report: String,
    rows: u32,
}

#[spotq::worker(queue = env("JOBS_QUEUE"), concurrency = 8, visibility_timeout = "5m")]
async fn handle_job(job: Job) -> Result<(), std::io::Error> {
    // Rendering a report: a little time per row.
    tokio::time::sleep(Duration::from_millis(u64::from(job.rows))).await;
    tracing::info!(report = job.report, rows = job.rows, "report rendered");
    Ok(())
}

/// Runs the job worker on `queue` until the queue is drained (or a signal stops it).
async fn run_to_completion(
    queue: impl Backend + Clone,
    drained: Drained,
    shutdown: ShutdownHandle,
) -> anyhow::Result<RunReport> {
    let done = shutdown.clone();
    let watched = queue.clone();
    tokio::spawn(async move {
        drained.of(watched).await;
        done.begin();
    });
    Ok(handle_job_worker()
        .worker(queue)?
        .run_with(shutdown)
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotq::logging::init(spotq::logging::LogFormat::from_env());
    let shutdown = ShutdownHandle::new();
    shutdown.on_termination_signals()?;
    let report = match std::env::var("JOBS_QUEUE") {
        Ok(queue) => {
            let queue = SqsBackend::from_env(&queue).await?;
            run_to_completion(queue, Drained::default(), shutdown).await?
        }
        Err(_) => {
            let queue = EmbeddedQueue::new("jobs");
            queue.send_many(sample_jobs(200));
            let drained = Drained {
                interval: Duration::from_millis(200),
                empty_reads: 2,
            };
            run_to_completion(queue, drained, shutdown).await?
        }
    };
    println!(
        "drained: {} jobs done in {:.1} s; exiting",
        report.deleted,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

fn sample_jobs(count: u32) -> impl Iterator<Item = String> {
    (0..count).map(|n| format!(r#"{{"report":"r-{n}","rows":{}}}"#, 10 + n % 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_job_exits_once_the_queue_is_drained() {
        let queue = EmbeddedQueue::new("jobs");
        queue.send_many(sample_jobs(50));
        let report = run_to_completion(queue.clone(), Drained::default(), ShutdownHandle::new())
            .await
            .expect("runs to completion");
        assert_eq!(report.deleted, 50);
        assert_eq!(queue.counts().total(), 0);
    }
}
