//! A worker on a queue an SNS topic fans out to: `Sns<Order>` unwraps SNS's
//! notification (or takes the body as it is when the subscription delivers raw), so the
//! handler gets the order with the topic, subject and message attributes beside it.
//!
//! Anything on the queue that is not a notification of an order (here an SNS
//! `SubscriptionConfirmation`) fails as a decode error and ends in the dead-letter queue.
//!
//! Run with: `cargo run --features sqs --example advanced-sns-fanout` (on the embedded
//! queue: no AWS account, no server), or `ORDERS_QUEUE=orders cargo run --features sqs
//! --example advanced-sns-fanout` for an SQS queue subscribed to a topic (standard AWS
//! configuration), until SIGTERM.

use std::time::Duration;

use serde::Deserialize;
use spotq::handler::input::Sns;
use spotq::testing::run_until_drained;
use spotq::{Context, EmbeddedQueue};

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    amount_cents: u64,
}

#[spotq::worker(queue = env("ORDERS_QUEUE"), concurrency = 32, retry_backoff = ("1s", "5m"))]
async fn handle_order(order: Sns<Order>, cx: &Context) -> Result<(), std::io::Error> {
    // `Sns<Order>` derefs to the `Order`; the notification's fields are beside it.
    tracing::info!(
        order = order.id,
        amount_cents = order.amount_cents,
        topic = order.topic_arn().unwrap_or("(raw delivery)"),
        store = order.attribute("store"),
        sqs_message_id = cx.message_id(),
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
    let (processed, dead_lettered) = on_embedded_queue(10).await?;
    println!("embedded queue: {processed} orders processed, {dead_lettered} dead-lettered");
    Ok(())
}

/// What SNS puts on a subscribed queue for one published order (wrapped delivery).
fn notification(id: u64) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": format!("00000000-0000-4000-8000-{id:012}"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Subject": "order placed",
        "Message": format!(r#"{{"id":{id},"amount_cents":1250}}"#),
        "Timestamp": "2026-12-08T00:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": {"store": {"Type": "String", "Value": "example_corp"}}
    })
    .to_string()
}

/// Runs the worker on an embedded queue holding `orders` notifications, one order
/// delivered raw and one subscription confirmation. Returns (deleted, dead-lettered).
async fn on_embedded_queue(orders: u64) -> anyhow::Result<(u64, u64)> {
    let dead_letters = EmbeddedQueue::new("orders-dlq");
    let queue = EmbeddedQueue::builder("orders")
        .redrive(&dead_letters, 3)
        .build()?;
    queue.send_many((1..=orders).map(notification));
    queue.send(r#"{"id":0,"amount_cents":990}"#);
    queue.send(
        serde_json::json!({
            "Type": "SubscriptionConfirmation",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        })
        .to_string(),
    );
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
    async fn notifications_and_raw_orders_are_processed_and_a_confirmation_dead_lettered() {
        let (processed, dead_lettered) = on_embedded_queue(20).await.expect("worker runs");
        assert_eq!(processed, 21, "20 notifications and the raw order");
        assert_eq!(dead_lettered, 1, "the subscription confirmation");
    }
}
