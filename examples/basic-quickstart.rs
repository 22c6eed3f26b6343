//! The main job on the embedded queue: no AWS account, no server.
//!
//! Fills an in-process queue with 10,000 messages, processes them with a handler that
//! does simulated work and fails a few, and prints what happened: processed, retried,
//! dead-lettered, throughput, and the queue requests each message cost.
//!
//! Run with: `cargo run --release --example basic-quickstart [-- MESSAGES]`

use std::time::Duration;

use anyhow::Context as _;
use spotq::testing::run_until_drained;
use spotq::{EmbeddedQueue, Message, Outcome, Worker};
use tokio::time::{Instant, sleep};

/// Every 500th message is poison: it fails every time and ends in the dead-letter queue.
const POISON_EVERY: u64 = 500;
/// Every 50th message fails on its first receive and succeeds on its second.
const FLAKY_EVERY: u64 = 50;
/// Receives before the queue moves a message to its dead-letter queue.
const MAX_RECEIVE_COUNT: u32 = 3;

async fn handle(message: Message) -> Outcome {
    let Ok(n) = message.body().parse::<u64>() else {
        return Outcome::fail(format!("not a job number: {:?}", message.body()));
    };
    // Simulated work: 0.2 to 2 ms of waiting on "I/O".
    sleep(Duration::from_micros(fastrand::u64(200..2_000))).await;
    if n % POISON_EVERY == 0 {
        return Outcome::fail(format!("job {n} is poison"));
    }
    if n % FLAKY_EVERY == 0 && message.receive_count() == 1 {
        return Outcome::fail(format!("job {n} failed on its first try"));
    }
    Outcome::Ack
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // Failed handlers log a warning each (target `spotq::engine::task`, the
                // module of a message's task); the summary below counts them.
                .unwrap_or_else(|_| "warn,spotq=info,spotq::engine::task=error".into()),
        )
        .init();
    let messages: u64 = match std::env::args().nth(1) {
        Some(count) => count.parse().context("MESSAGES must be a whole number")?,
        None => 10_000,
    };

    let dead_letters = EmbeddedQueue::new("quickstart-dlq");
    let queue = EmbeddedQueue::builder("quickstart")
        .visibility_timeout(Duration::from_secs(30))
        .redrive(&dead_letters, MAX_RECEIVE_COUNT)
        .build()?;
    queue.send_many((1..=messages).map(|n| n.to_string()));
    println!("queued {messages} messages on the embedded queue");

    let worker = Worker::builder(queue.clone())
        .concurrency(256)
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(2))
        .handler(handle);
    let started = Instant::now();
    // A worker binary runs until SIGTERM (`worker.run()`); this one until the queue holds
    // no message.
    let report = run_until_drained(worker, &queue).await?;
    let elapsed = started.elapsed();

    let stats = queue.stats();
    let dead_lettered = dead_letters.counts().total();
    println!();
    println!(
        "processed      {:>8}  (deleted after success)",
        report.deleted
    );
    println!(
        "failed         {:>8}  (handler errors, each retried by visibility)",
        report.failed
    );
    println!("retried        {:>8}", report.retried);
    println!(
        "dead-lettered  {:>8}  (after {MAX_RECEIVE_COUNT} receives)",
        dead_lettered
    );
    println!(
        "received       {:>8}  (deliveries, retries included)",
        report.received
    );
    println!(
        "elapsed        {:>8.2} s  ({:.0} msgs/s; the tail waits out 1-2 s retry backoffs)",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    );
    println!(
        "queue requests {:>8}  ({:.3} per message: {} receives, {} delete batches, {} visibility batches)",
        stats.api_calls(),
        stats.api_calls() as f64 / messages as f64,
        stats.receive_calls,
        stats.delete_batch_calls,
        stats.change_visibility_batch_calls,
    );
    anyhow::ensure!(
        report.deleted + dead_lettered == messages,
        "every message is either processed or dead-lettered"
    );
    Ok(())
}
