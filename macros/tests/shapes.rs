//! Every handler shape and every key in one crate that `cargo clippy --all-targets -D
//! warnings` lints, so that the expansion stays free of warnings in users' crates; and
//! what each generated spec holds.

use std::time::Duration;

use spotq::handler::input::{EventBridge, Sns};
use spotq::handler::lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use spotq::{
    Context, Message, Outcome, WorkerSpec, config::Backoff, config::Heartbeat, config::QueueSource,
    config::RetryPolicy, config::WorkerConfig, handler::BatchOutcome,
};

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[spotq::worker(queue = "json")]
async fn json(order: Order) -> Result<(), String> {
    if order.id == 0 {
        return Err("no id".to_owned());
    }
    Ok(())
}

#[spotq::worker(queue = "json")]
async fn json_with_context(order: Order, cx: Context) -> Outcome {
    if order.id == 0 && cx.receive_count() < 3 {
        return Outcome::RetryAfter(Duration::from_secs(10));
    }
    Outcome::Ack
}

#[spotq::worker(queue = "raw")]
async fn raw(message: Message) {
    let _ = message.body();
}

#[spotq::worker(queue = "raw")]
async fn raw_with_context(message: Message, cx: &Context) -> Result<Outcome, std::io::Error> {
    let _ = (message.id(), cx.message_id());
    Ok(Outcome::Ack)
}

#[spotq::worker(queue = "text")]
async fn text(body: String) {
    let _ = body;
}

#[spotq::worker(queue = "lambda")]
async fn lambda(record: SqsMessage) {
    let _ = record.body;
}

#[spotq::worker(queue = "lambda")]
async fn lambda_with_context(record: SqsMessage, cx: &Context) {
    let _ = (record.message_id, cx.receive_count());
}

#[spotq::worker(queue = "batch")]
async fn batch_raw(messages: Vec<Message>) -> SqsBatchResponse {
    let _ = messages;
    SqsBatchResponse::default()
}

#[spotq::worker(queue = "batch")]
async fn batch_text(bodies: Vec<String>) -> BatchOutcome {
    let _ = bodies;
    BatchOutcome::Ack
}

#[spotq::worker(queue = "batch")]
async fn batch_lambda(records: Vec<SqsMessage>) -> Result<SqsBatchResponse, String> {
    let _ = records;
    Ok(SqsBatchResponse::default())
}

#[spotq::worker(queue = "batch")]
async fn batch_json(orders: Vec<Order>) {
    let _ = orders.iter().map(|order| order.id).sum::<u64>();
}

#[spotq::worker(queue = "sns")]
async fn sns(order: Sns<Order>) {
    let _ = (order.id, order.topic_arn());
}

#[spotq::worker(queue = "sns")]
async fn sns_with_context(order: spotq::handler::input::Sns<Order>, cx: &Context) {
    let _ = (order.subject(), cx.receive_count());
}

#[spotq::worker(queue = "events")]
async fn event_bridge(event: EventBridge<Order>) -> Result<(), String> {
    let _ = (event.source(), event.detail.id);
    Ok(())
}

#[spotq::worker(queue = "batch")]
async fn batch_sns(orders: Vec<Sns<Order>>) {
    let _ = orders.iter().map(|order| order.id).sum::<u64>();
}

#[spotq::worker(queue = "batch")]
async fn batch_event_bridge(events: Vec<EventBridge<Order>>) -> BatchOutcome {
    let _ = events.len();
    BatchOutcome::Ack
}

#[spotq::worker(
    queue = env("EVERY_KEY_QUEUE"),
    concurrency = 20,
    pollers = 2,
    batch_size = 4,
    wait_time = "5s",
    visibility_timeout = "10m",
    handler_timeout = "9m59s500ms",
    heartbeat = false,
    retry_backoff = ("250ms", "2h"),
    name = "every-key",
    fifo = true,
    crate = "::spotq",
)]
async fn every_key(order: Order) {
    let _ = order.id;
}

#[test]
fn each_shape_becomes_a_spec_of_its_kind() {
    let per_message: [fn() -> WorkerSpec; 11] = [
        json_worker,
        json_with_context_worker,
        raw_worker,
        raw_with_context_worker,
        text_worker,
        lambda_worker,
        lambda_with_context_worker,
        sns_worker,
        sns_with_context_worker,
        event_bridge_worker,
        every_key_worker,
    ];
    for spec in per_message {
        let spec = spec();
        assert!(!spec.is_batch(), "{spec:?}");
        assert!(spec.handler().is_some());
    }
    let batches: [fn() -> WorkerSpec; 6] = [
        batch_raw_worker,
        batch_text_worker,
        batch_lambda_worker,
        batch_json_worker,
        batch_sns_worker,
        batch_event_bridge_worker,
    ];
    for spec in batches {
        let spec = spec();
        assert!(spec.is_batch(), "{spec:?}");
        assert!(spec.batch_handler().is_some());
    }
}

#[test]
fn a_spec_without_keys_has_the_default_settings() {
    let spec = json_worker();
    assert_eq!(spec.queue(), &QueueSource::name("json"));
    assert_eq!(spec.config(), &WorkerConfig::default());
}

#[test]
fn every_key_reaches_the_settings() {
    let spec = every_key_worker();
    assert_eq!(spec.queue(), &QueueSource::env("EVERY_KEY_QUEUE"));
    assert_eq!(
        spec.config(),
        &WorkerConfig {
            concurrency: 20,
            pollers: Some(2),
            batch_size: 4,
            wait_time: Duration::from_secs(5),
            visibility_timeout: Some(Duration::from_secs(600)),
            handler_timeout: Some(Duration::from_millis(599_500)),
            heartbeat: Heartbeat::Off,
            retry: RetryPolicy::Backoff(Backoff::new(
                Duration::from_millis(250),
                Duration::from_secs(7200),
            )),
            name: Some("every-key".to_owned()),
            ..WorkerConfig::default()
        }
    );
    // What the attribute accepted, the runtime accepts too.
    spec.config().validate().expect("valid settings");
    assert!(format!("{spec:?}").contains("fifo: true"), "{spec:?}");
}
