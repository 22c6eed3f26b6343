//! The same `#[spotq::worker]` handler as an SQS-triggered AWS Lambda function: records
//! that fail are reported in `batchItemFailures` (enable `ReportBatchItemFailures` on the
//! event source mapping), so Lambda deletes the rest.
//!
//! Run with: `cargo lambda watch --features lambda --example advanced-lambda` and
//! `cargo lambda invoke --data-file examples/fixtures/sqs_event.json`, or build it for
//! the `provided.al2023` runtime. Outside Lambda it exits with an error: there is no
//! runtime API to poll.

use serde::Deserialize;
use spotq::Context;

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    amount_cents: u64,
}

#[spotq::worker(queue = env("ORDERS_QUEUE"))]
async fn handle_order(order: Order, cx: &Context) -> Result<(), String> {
    if order.amount_cents == 0 {
        return Err(format!("order {} has no amount", order.id));
    }
    tracing::info!(
        order = order.id,
        message_id = cx.message_id(),
        "order handled"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), spotq::handler::BoxError> {
    spotq::telemetry::logging::init(spotq::telemetry::logging::LogFormat::Json);
    spotq::lambda::run(handle_order_worker()).await
}

#[cfg(test)]
mod tests {
    use spotq::handler::lambda_events::sqs::SqsEvent;

    use super::*;

    #[tokio::test]
    async fn an_event_with_bad_records_reports_exactly_those() {
        let fixture = include_str!("fixtures/sqs_event.json");
        let event: SqsEvent = serde_json::from_str(fixture).expect("the fixture is an SqsEvent");
        let response = spotq::lambda::handle_event(&handle_order_worker(), event).await;

        let mut failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.as_str())
            .collect();
        failed.sort_unstable();
        // The order with no amount and the body that is not JSON.
        assert_eq!(failed, ["msg-2-no-amount", "msg-3-not-json"]);
        let json = serde_json::to_value(&response).expect("serializes");
        assert!(json["batchItemFailures"][0]["itemIdentifier"].is_string());
    }
}
