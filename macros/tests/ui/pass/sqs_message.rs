//! The Lambda form of a message, as an SQS-triggered Lambda function gets it.
#![deny(warnings)]

use spotq::handler::lambda_events::sqs::SqsMessage;

#[spotq::worker(queue = "lambda")]
async fn handle(record: SqsMessage) -> Result<(), String> {
    match record.body {
        Some(_) => Ok(()),
        None => Err("no body".to_owned()),
    }
}

#[spotq::worker(queue = "lambda")]
async fn handle_with_context(
    record: spotq::handler::lambda_events::sqs::SqsMessage,
    cx: &spotq::Context,
) -> Result<(), &'static str> {
    if record.message_id.as_deref() != Some(cx.message_id()) {
        return Err("another message");
    }
    Ok(())
}

fn main() {
    let _: spotq::WorkerSpec = handle_worker();
    let _: spotq::WorkerSpec = handle_with_context_worker();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert!(runtime.block_on(handle(SqsMessage::default())).is_err());
}
