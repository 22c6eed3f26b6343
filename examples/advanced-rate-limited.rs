//! A worker held to a partner API's rate limit, with tower layers: tower's rate limit
//! (the worker starts at most 5 messages a second, and receives no more than it can
//! start at that rate) behind a buffer of one, and a timing middleware of a few lines.
//! The layers go on the `WorkerSpec` that `#[spotq::worker]` generates.
//!
//! Run with: `cargo run --features sqs --example advanced-rate-limited` (on the embedded
//! queue), or `PARTNER_QUEUE=partner-calls cargo run --features sqs --example
//! advanced-rate-limited` for an SQS queue, until SIGTERM.

use std::time::Duration;

use spotq::testing::run_until_drained;
use spotq::{EmbeddedQueue, Message, Outcome, WorkerSpec};
use tokio::time::Instant;
use tower::ServiceBuilder;

/// Calls per second the partner allows.
const RATE: u64 = 5;

#[spotq::worker(queue = env("PARTNER_QUEUE"), concurrency = 20)]
async fn call_partner(message: Message) -> Result<(), std::num::ParseIntError> {
    let _order: u64 = message.body().parse()?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// The worker with its layers: the rate limit outermost, then the timing middleware
/// (a user's own: it logs each call's time and outcome). The worker clones the service
/// per call and the rate limit is not `Clone` (its window is in the instance): a buffer
/// before it is, and with a bound of 1 it is ready only once the rate limit has taken
/// all but the call it waits with, so receiving still waits for the rate.
fn partner_worker() -> WorkerSpec {
    call_partner_worker().layer(
        ServiceBuilder::new()
            .buffer(1)
            .rate_limit(RATE, Duration::from_secs(1))
            .map_future(|call| async move {
                let started = Instant::now();
                let outcome: Result<Outcome, _> = call.await;
                let failed = matches!(outcome, Ok(Outcome::Fail(_)));
                tracing::info!(elapsed = ?started.elapsed(), failed, "partner call");
                outcome
            }),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotq::telemetry::logging::init(spotq::telemetry::logging::LogFormat::from_env());
    if std::env::var_os("PARTNER_QUEUE").is_some() {
        spotq::run([partner_worker()]).await?;
        return Ok(());
    }
    let (succeeded, elapsed) = on_embedded_queue(20).await?;
    println!("embedded queue: {succeeded} partner calls in {elapsed:.1?} at {RATE} a second");
    Ok(())
}

/// Runs the worker on an embedded queue of `orders` messages until it is drained.
/// Returns (succeeded, time taken).
async fn on_embedded_queue(orders: u64) -> anyhow::Result<(u64, Duration)> {
    let queue = EmbeddedQueue::new("partner-calls");
    queue.send_many((0..orders).map(|n| n.to_string()));
    let started = Instant::now();
    let report = run_until_drained(partner_worker(), &queue).await?;
    Ok((report.succeeded, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_worker_keeps_to_the_partners_rate() {
        let (succeeded, elapsed) = on_embedded_queue(20).await.expect("worker runs");
        assert_eq!(succeeded, 20);
        // 20 calls at 5 a second: four windows of a second at least.
        assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    }
}
