//! A typed JSON worker: `#[spotq::worker]` on an `async fn(Order, &Context)`.
//!
//! A body that is not an `Order` never reaches the handler: it fails, is retried, and
//! ends in the dead-letter queue through the queue's redrive policy, like an order the
//! handler rejects.
//!
//! Run with: `cargo run --features sqs --example basic-typed-json` (on the embedded
//! queue: no AWS account, no server), or `ORDERS_QUEUE=orders cargo run --features sqs
//! --example basic-typed-json` for an SQS queue (standard AWS configuration;
//! `AWS_ENDPOINT_URL` for a local endpoint), until SIGTERM.

use std::time::Duration;

use serde::Deserialize;
use spotq::testing::run_until_drained;
use spotq::{Context, EmbeddedQueue};

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    amount_cents: u64,
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order {0} has no amount")]
    NoAmount(u64),
}

#[spotq::worker(
    queue = env("ORDERS_QUEUE"),
    concurrency = 32,
    visibility_timeout = "60s",
    retry_backoff = ("1s", "5m")
)]
async fn handle_order(order: Order, cx: &Context) -> Result<(), OrderError> {
    if order.amount_cents == 0 {
        return Err(OrderError::NoAmount(order.id));
    }
    // The real work: charge, store, notify.
    tokio::time::sleep(Duration::from_millis(5)).await;
    tracing::info!(
        order = order.id,
        message_id = cx.message_id(),
        receive = cx.receive_count(),
        "order handled"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotq::telemetry::logging::init(spotq::telemetry::logging::LogFormat::from_env());
    if std::env::var_os("ORDERS_QUEUE").is_some() {
        spotq::run([handle_order_worker()]).await?;
        return Ok(());
    }
    let (processed, dead_lettered) = on_embedded_queue(100).await?;
    println!("embedded queue: {processed} orders processed, {dead_lettered} dead-lettered");
    Ok(())
}

/// Runs the worker on an embedded queue holding `orders` good orders, one with no
/// amount and one body that is not JSON. Returns (deleted, dead-lettered).
async fn on_embedded_queue(orders: u64) -> anyhow::Result<(u64, u64)> {
    let dead_letters = EmbeddedQueue::new("orders-dlq");
    let queue = EmbeddedQueue::builder("orders")
        .redrive(&dead_letters, 3)
        .build()?;
    queue.send_many((1..=orders).map(|id| format!(r#"{{"id":{id},"amount_cents":1250}}"#)));
    queue.send(r#"{"id":0,"amount_cents":0}"#);
    queue.send("not an order");
    // Retry at once instead of after seconds, for the demo.
    let worker = handle_order_worker().configure(|config| {
        config.retry = spotq::config::RetryPolicy::Backoff(spotq::config::Backoff::new(
            Duration::ZERO,
            Duration::ZERO,
        ));
    });
    let report = run_until_drained(worker, &queue).await?;
    Ok((report.deleted, dead_letters.counts().visible))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn good_orders_are_processed_and_bad_ones_dead_lettered() {
        let (processed, dead_lettered) = on_embedded_queue(40).await.expect("worker runs");
        assert_eq!(processed, 40);
        assert_eq!(
            dead_lettered, 2,
            "the order with no amount and the body that is not JSON"
        );
    }
}
