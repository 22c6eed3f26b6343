//! SNS and EventBridge envelopes as handler inputs: the decoders on fixtures written as
//! the services document them (`tests/fixtures`), raw and wrapped SNS delivery, the
//! errors of bodies that are not the envelope they claim (which never quote the body),
//! and workers on the embedded queue whose bad envelopes end in the dead-letter queue.

use std::collections::HashMap;
use std::sync::Mutex;

use spotq::backend::{MessageAttribute, ReceiptHandle, ReceivedMessage, SendMessage};
use spotq::handler::input::{self, EventBridge, Sns};
use spotq::handler::{DecodeError, DecodeErrorKind, HandlerError};
use spotq::{EmbeddedQueue, Message, testing::run_until_drained};

const NOTIFICATION: &str = include_str!("fixtures/sns-notification.json");
const CONFIRMATION: &str = include_str!("fixtures/sns-subscription-confirmation.json");
const EVENT: &str = include_str!("fixtures/eventbridge-event.json");

/// What a body that must never appear in an error's text carries.
const SECRET: &str = "hunter2-do-not-log";

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Order {
    id: u64,
    item: String,
}

fn message(body: &str) -> Message {
    message_with(body, HashMap::new())
}

fn message_with(body: &str, message_attributes: HashMap<String, MessageAttribute>) -> Message {
    Message::detached(ReceivedMessage {
        message_id: "m-1".to_owned(),
        receipt_handle: ReceiptHandle::new("r-1"),
        body: body.to_owned(),
        md5_of_body: None,
        attributes: HashMap::new(),
        message_attributes,
    })
}

fn decode_error(error: HandlerError) -> DecodeError {
    error.decode_error().expect("a decode error").clone()
}

/// The body of a wrapped delivery whose `Message` is `message` (JSON-escaped here).
fn notification(message: &str) -> String {
    let mut envelope: serde_json::Value = serde_json::from_str(NOTIFICATION).expect("fixture");
    envelope["Message"] = serde_json::Value::String(message.to_owned());
    envelope.to_string()
}

#[test]
fn a_wrapped_notification_gives_its_message_and_the_notifications_fields() {
    let (order, cx) = input::sns::<Order>(message(NOTIFICATION)).expect("decodes");
    assert_eq!(order.id, 42, "derefs to the message");
    assert_eq!(
        order.message,
        Order {
            id: 42,
            item: "keyboard".to_owned()
        }
    );
    assert_eq!(
        order.topic_arn(),
        Some("arn:aws:sns:us-west-2:123456789012:orders")
    );
    assert_eq!(
        order.message_id(),
        Some("63a3f6b6-d533-4a47-aef9-fcf5cf758c76")
    );
    assert_eq!(order.subject(), Some("order placed"));
    assert_eq!(
        order.timestamp().map(|time| time.to_rfc3339()),
        Some("2012-03-29T05:12:16.901+00:00".to_owned())
    );
    assert_eq!(order.attribute("store"), Some("example_corp"));
    assert_eq!(order.attributes["priority"].data_type, "Number");
    let notification = order.notification.as_ref().expect("wrapped");
    assert!(notification.message.is_empty(), "decoded, not kept twice");
    assert!(notification.message_attributes.is_empty(), "moved");
    assert_eq!(cx.message_id(), "m-1", "the SQS message's context");
}

#[test]
fn a_raw_delivery_gives_the_body_and_the_sqs_attributes_written_as_sns_writes_them() {
    let attributes = HashMap::from([
        ("store".to_owned(), MessageAttribute::string("example_corp")),
        (
            "blob".to_owned(),
            MessageAttribute {
                data_type: "Binary".to_owned(),
                string_value: None,
                binary_value: Some(b"\x00\x01spotq".to_vec()),
            },
        ),
        (
            "count".to_owned(),
            MessageAttribute {
                data_type: "Number.int".to_owned(),
                string_value: Some("7".to_owned()),
                binary_value: None,
            },
        ),
    ]);
    let body = r#"{"id": 7, "item": "mouse"}"#;
    let (order, _) = input::sns::<Order>(message_with(body, attributes)).expect("decodes");
    assert_eq!(order.id, 7);
    assert!(order.notification.is_none());
    assert_eq!(order.topic_arn(), None);
    assert_eq!(order.subject(), None);
    assert_eq!(order.attribute("store"), Some("example_corp"));
    assert_eq!(order.attribute("blob"), Some("AAFzcG90cQ=="));
    assert_eq!(order.attributes["blob"].data_type, "Binary");
    assert_eq!(order.attributes["count"].data_type, "Number");
}

#[test]
fn a_raw_body_that_names_a_topic_arn_of_its_own_is_still_the_message() {
    #[derive(serde::Deserialize)]
    struct Audit {
        #[serde(rename = "TopicArn")]
        topic_arn: String,
    }
    let (audit, _) =
        input::sns::<Audit>(message(r#"{"TopicArn": "arn:aws:sns:x:1:t"}"#)).expect("decodes");
    assert_eq!(audit.topic_arn, "arn:aws:sns:x:1:t");
    assert!(audit.notification.is_none());
}

#[test]
fn a_subscription_confirmation_fails_as_an_envelope_saying_what_it_is() {
    let error = decode_error(input::sns::<Order>(message(CONFIRMATION)).expect_err("fails"));
    assert_eq!(error.kind(), DecodeErrorKind::Envelope);
    assert_eq!(error.within(), Some("an SNS notification"));
    let text = error.to_string();
    assert!(text.contains("SubscriptionConfirmation"), "{text}");
    assert!(text.contains("SubscribeURL"), "{text}");
    assert!(text.contains("Order"), "names the input type: {text}");
}

#[test]
fn a_body_naming_a_topic_without_a_notifications_fields_fails_as_an_envelope() {
    let body = format!(r#"{{"Type": "Notification", "TopicArn": "{SECRET}"}}"#);
    let error = decode_error(input::sns::<Order>(message(&body)).expect_err("fails"));
    assert_eq!(error.kind(), DecodeErrorKind::Envelope);
    let text = error.to_string();
    assert!(
        text.starts_with("the body is not an SNS notification"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
    assert!(!format!("{error:?}").contains(SECRET));
}

#[test]
fn a_notification_whose_message_is_not_the_type_fails_inside_the_message() {
    let body = notification(&format!(r#"{{"id": "{SECRET}", "item": "x"}}"#));
    let error = decode_error(input::sns::<Order>(message(&body)).expect_err("fails"));
    assert_eq!(error.kind(), DecodeErrorKind::Data);
    assert_eq!(error.within(), Some("the SNS notification's `Message`"));
    let text = error.to_string();
    assert!(
        text.contains("in the SNS notification's `Message`"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        error.detail().contains(SECRET),
        "the detail is for the handler"
    );

    let text_message = notification("plain text, not JSON");
    let error = decode_error(input::sns::<Order>(message(&text_message)).expect_err("fails"));
    assert_eq!(error.kind(), DecodeErrorKind::Syntax);
}

#[test]
fn a_body_that_is_neither_json_nor_a_notification_fails_as_syntax() {
    let error = decode_error(input::sns::<Order>(message(SECRET)).expect_err("fails"));
    assert_eq!(error.kind(), DecodeErrorKind::Syntax);
    assert_eq!(error.within(), None);
    assert!(!error.to_string().contains(SECRET));
}

#[test]
fn an_event_gives_its_detail_and_its_fields() {
    let (event, _) = input::event_bridge::<Order>(message(EVENT)).expect("decodes");
    assert_eq!(event.id, 42, "derefs to the detail");
    assert_eq!(event.source(), "com.example.orders");
    assert_eq!(event.detail_type(), "Order Placed");
    assert_eq!(event.id(), Some("6a7e8feb-b491-4cf7-a9f1-bf3703467718"));
    assert_eq!(
        event.time().map(|time| time.to_rfc3339()),
        Some("2017-12-22T18:43:48+00:00".to_owned())
    );
    assert_eq!(event.event.region.as_deref(), Some("us-west-1"));
    assert_eq!(event.into_detail().item, "keyboard");
}

#[test]
fn a_body_that_is_not_an_event_fails_as_an_envelope_and_a_bad_detail_inside_it() {
    let not_an_event = format!(r#"{{"detail": {{"id": 1, "item": "{SECRET}"}}}}"#);
    let error =
        decode_error(input::event_bridge::<Order>(message(&not_an_event)).expect_err("fails"));
    assert_eq!(error.kind(), DecodeErrorKind::Envelope);
    assert_eq!(error.within(), Some("an EventBridge event"));
    assert!(!error.to_string().contains(SECRET), "{error}");

    let mut event: serde_json::Value = serde_json::from_str(EVENT).expect("fixture");
    event["detail"] = serde_json::json!({ "id": SECRET });
    let error =
        decode_error(input::event_bridge::<Order>(message(&event.to_string())).expect_err("fails"));
    assert_eq!(error.kind(), DecodeErrorKind::Data);
    assert_eq!(error.within(), Some("the EventBridge event's `detail`"));
    assert!(!error.to_string().contains(SECRET), "{error}");
}

/// The orders the SNS workers saw, by SNS message id (`None`: a raw delivery).
static SEEN: Mutex<Vec<(u64, Option<String>)>> = Mutex::new(Vec::new());

#[spotq::worker(queue = "orders", retry_backoff = ("0s", "0s"))]
async fn take_order(order: Sns<Order>) -> Result<(), String> {
    let id = order.message_id().map(str::to_owned);
    SEEN.lock()
        .map_err(|error| error.to_string())?
        .push((order.id, id));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_sns_worker_takes_both_deliveries_and_dead_letters_what_is_not_a_notification() {
    let dead_letters = EmbeddedQueue::new("orders-dlq");
    let queue = EmbeddedQueue::builder("orders")
        .redrive(&dead_letters, 2)
        .build()
        .expect("queue");
    queue.send(NOTIFICATION);
    queue.send(r#"{"id": 7, "item": "mouse"}"#);
    queue.send(CONFIRMATION);

    let report = run_until_drained(take_order_worker(), &queue)
        .await
        .expect("worker runs");

    let mut seen = SEEN.lock().expect("lock").clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            (7, None),
            (42, Some("63a3f6b6-d533-4a47-aef9-fcf5cf758c76".to_owned()))
        ]
    );
    assert_eq!(report.deleted, 2);
    assert_eq!(report.failed, 2, "the confirmation, once per receive");
    assert_eq!(dead_letters.counts().visible, 1, "the confirmation");
}

/// The total of each batch the EventBridge worker saw.
static EVENT_BATCHES: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

#[spotq::worker(queue = "events", batch_size = 10, retry_backoff = ("0s", "0s"))]
async fn take_events(events: Vec<EventBridge<Order>>) -> Result<(), String> {
    let ids = events.iter().map(|event| event.id).collect();
    EVENT_BATCHES
        .lock()
        .map_err(|error| error.to_string())?
        .push(ids);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_event_batch_fails_only_the_bodies_that_are_not_events() {
    let dead_letters = EmbeddedQueue::new("events-dlq");
    let queue = EmbeddedQueue::builder("events")
        .redrive(&dead_letters, 1)
        .build()
        .expect("queue");
    let mut second: serde_json::Value = serde_json::from_str(EVENT).expect("fixture");
    second["detail"]["id"] = 43.into();
    queue.send_with(SendMessage::new(EVENT)).expect("send");
    queue.send(second.to_string());
    queue.send(r#"{"id": 44, "item": "not an event"}"#);

    let report = run_until_drained(take_events_worker(), &queue)
        .await
        .expect("worker runs");

    let mut ids: Vec<u64> = EVENT_BATCHES.lock().expect("lock").concat();
    ids.sort_unstable();
    assert_eq!(ids, [42, 43]);
    assert_eq!(report.deleted, 2);
    assert_eq!(dead_letters.counts().visible, 1);
}

#[cfg(feature = "lambda")]
mod lambda {
    use spotq::handler::lambda_events::sqs::{SqsEvent, SqsMessage};

    use super::*;

    #[spotq::worker(queue = "lambda-orders")]
    async fn lambda_order(order: Sns<Order>) -> Result<(), String> {
        if order.item.is_empty() {
            return Err("no item".to_owned());
        }
        Ok(())
    }

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.to_owned());
        record.receipt_handle = Some(format!("r-{id}"));
        record.body = Some(body.to_owned());
        record
    }

    #[tokio::test]
    async fn a_lambda_function_takes_the_same_envelopes_and_reports_the_bad_ones() {
        let mut event = SqsEvent::default();
        event.records = vec![
            record("wrapped", NOTIFICATION),
            record("raw", r#"{"id": 8, "item": "pen"}"#),
            record("confirmation", CONFIRMATION),
        ];
        let response = spotq::lambda::handle_event(&lambda_order_worker(), event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["confirmation"]);
    }
}
