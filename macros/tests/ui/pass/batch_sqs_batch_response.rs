//! A batch of raw messages reporting partial failures as Lambda does.
#![deny(warnings)]

use spotq::Message;
use spotq::handler::lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};

#[spotq::worker(queue = "batch", batch_size = 10)]
async fn handle_batch(messages: Vec<Message>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in &messages {
        if message.body().is_empty() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.id().to_owned();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

#[spotq::worker(queue = "batch")]
async fn handle_records(
    records: std::vec::Vec<spotq::handler::lambda_events::sqs::SqsMessage>,
) -> spotq::handler::BatchOutcome {
    let failures = records
        .into_iter()
        .filter(|record| record.body.is_none())
        .filter_map(|record| record.message_id)
        .map(|id| spotq::handler::ItemFailure::new(id, "no body"));
    spotq::handler::BatchOutcome::failures(failures)
}

fn main() {
    let spec: spotq::WorkerSpec = handle_batch_worker();
    assert!(spec.is_batch());
    assert!(spec.batch_handler().is_some());
    assert_eq!(spec.config().batch_size, 10);
    assert!(handle_records_worker().is_batch());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let response = runtime.block_on(handle_batch(Vec::new()));
    assert!(response.batch_item_failures.is_empty());
}
