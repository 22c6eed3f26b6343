//! A worker binary for the process tests: handles messages whose body is
//! `NAME:MILLIS` by waiting MILLIS ms, and records each handler's start and success in a
//! log file, so a test can tell which messages were processed.
//!
//! Settings come from the environment: `SPOTQ_QUEUE` (name or URL; the AWS chain, with
//! `AWS_ENDPOINT_URL`, finds it), `SPOTQ_EVENTS` (the log file), `SPOTQ_CONCURRENCY`,
//! `SPOTQ_STOP_TIMEOUT_SECS`, `SPOTQ_GRACE_SECS`, `SPOTQ_RUNNING_TASKS`, `SPOTQ_HTTP_ADDR`
//! (serve /metrics, /health, /ready); logs as `SPOTQ_LOG_FORMAT` says. It
//! runs until SIGTERM or SIGINT.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use spotq::{Message, Outcome, SqsBackend, Worker};

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name} must be a whole number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotq::logging::init(spotq::logging::LogFormat::from_env());
    let queue = std::env::var("SPOTQ_QUEUE").context("SPOTQ_QUEUE is required")?;
    let events = std::env::var("SPOTQ_EVENTS").context("SPOTQ_EVENTS is required")?;
    let events = Arc::new(Mutex::new(
        OpenOptions::new().create(true).append(true).open(&events)?,
    ));
    let record = move |event: &str, body: &str| {
        if let Ok(mut file) = events.lock() {
            // One write per line, so lines from concurrent handlers never interleave.
            let _ = file.write_all(format!("{event} {body}\n").as_bytes());
        }
    };

    // `SPOTQ_HTTP_ADDR` (port 0 allowed): /metrics, /health and /ready; the bound address
    // goes to the event log as `listening ADDR`.
    let health = spotq::Health::default();
    let server = match std::env::var("SPOTQ_HTTP_ADDR") {
        Ok(addr) => {
            let server = spotq::serve::serve(addr.parse()?, health.clone()).await?;
            record("listening", &server.local_addr().to_string());
            Some(server)
        }
        Err(_) => None,
    };

    let backend = SqsBackend::from_env(&queue).await?;
    let mut worker = Worker::builder(backend)
        .health(health)
        .backlog_interval(Some(Duration::from_secs(1)));
    if let Ok(tasks) = std::env::var("SPOTQ_RUNNING_TASKS") {
        worker = worker.running_tasks(tasks.parse().context("SPOTQ_RUNNING_TASKS")?);
    }
    // The worker logs its report as it stops.
    worker
        .concurrency(usize::try_from(env_number("SPOTQ_CONCURRENCY", 16)?)?)
        .wait_time(Duration::from_secs(1))
        .stop_timeout(Duration::from_secs(env_number(
            "SPOTQ_STOP_TIMEOUT_SECS",
            30,
        )?))
        .shutdown_grace(Duration::from_secs(env_number("SPOTQ_GRACE_SECS", 25)?))
        .handler(move |message: Message| {
            let record = record.clone();
            async move {
                let body = message.body().to_owned();
                let Some(millis) = body.split(':').nth(1).and_then(|ms| ms.parse().ok()) else {
                    return Outcome::fail(format!("malformed body {body:?}"));
                };
                record("start", &body);
                tokio::time::sleep(Duration::from_millis(millis)).await;
                record("done", &body);
                Outcome::Ack
            }
        })
        .run()
        .await?;
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}
