//! A batch worker with partial failures: one call per receive (up to 10 messages), and
//! Lambda's `SqsBatchResponse` to say which messages failed. The listed ones are retried
//! (and dead-lettered after the queue's `maxReceiveCount`), the rest deleted.
//!
//! Run with: `cargo run --features sqs --example advanced-batch-partial` (on the embedded
//! queue), or `INVOICES_QUEUE=invoices cargo run --features sqs --example
//! advanced-batch-partial` for an SQS queue, until SIGTERM.

use std::time::Duration;

use spotq::EmbeddedQueue;
use spotq::handler::lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use spotq::testing::run_until_drained;

#[spotq::worker(queue = env("INVOICES_QUEUE"), batch_size = 10, concurrency = 40)]
async fn handle_invoices(invoices: Vec<SqsMessage>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for invoice in invoices {
        // One insert for the whole batch in a real worker; here, a check per record.
        let amount = invoice.body.as_deref().unwrap_or_default().parse::<u64>();
        if amount.is_err() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = invoice.message_id.unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotq::telemetry::logging::init(spotq::telemetry::logging::LogFormat::from_env());
    if std::env::var_os("INVOICES_QUEUE").is_some() {
        spotq::run([handle_invoices_worker()]).await?;
        return Ok(());
    }
    let (deleted, dead_lettered) = on_embedded_queue(95).await?;
    println!("embedded queue: {deleted} invoices deleted, {dead_lettered} dead-lettered");
    Ok(())
}

/// Runs the worker on an embedded queue with `invoices` good invoices and one in
/// every ten malformed. Returns (deleted, dead-lettered).
async fn on_embedded_queue(invoices: u64) -> anyhow::Result<(u64, u64)> {
    let dead_letters = EmbeddedQueue::new("invoices-dlq");
    let queue = EmbeddedQueue::builder("invoices")
        .redrive(&dead_letters, 2)
        .build()?;
    queue.send_many((0..invoices).map(|n| {
        if n % 10 == 9 {
            format!("invoice {n}: unreadable")
        } else {
            (n * 100).to_string()
        }
    }));
    // Retry at once instead of after seconds, for the demo.
    let worker = handle_invoices_worker().configure(|config| {
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
    async fn listed_failures_are_retried_then_dead_lettered_and_the_rest_deleted() {
        let (deleted, dead_lettered) = on_embedded_queue(50).await.expect("worker runs");
        assert_eq!((deleted, dead_lettered), (45, 5));
    }
}
