//! What unwrapping an envelope costs per message, beside a bare JSON decode of the same
//! small message in the same run: an SNS notification (wrapped delivery: the envelope,
//! then its `Message`), an SNS raw delivery (the body is the message), and an
//! EventBridge event (the event, then its `detail`). Each decoder takes a
//! `spotq::Message` as a worker's handler would; building the message is timed in the
//! baseline too, so the differences are the decoding alone.
//!
//! Run with: `cargo bench -p spotq --bench decode [-- ITERATIONS]`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use spotq::Message;
use spotq::backend::{ReceiptHandle, ReceivedMessage};
use spotq::handler::input;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 5;

#[derive(serde::Deserialize)]
#[allow(dead_code)] // Read by the decoder only.
struct Order {
    id: u64,
    item: String,
    quantity: u32,
}

const ORDER: &str = r#"{"id": 42, "item": "keyboard", "quantity": 2}"#;

fn notification() -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "63a3f6b6-d533-4a47-aef9-fcf5cf758c76",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Subject": "order placed",
        "Message": ORDER,
        "Timestamp": "2026-12-08T05:12:16.901Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:orders:c7fe3a54-ab0e-4ec2-88e0-db410a0f2bee",
        "MessageAttributes": {"store": {"Type": "String", "Value": "example_corp"}}
    })
    .to_string()
}

fn event() -> String {
    serde_json::json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Order Placed",
        "source": "com.example.orders",
        "account": "123456789012",
        "time": "2026-12-08T05:12:16Z",
        "region": "us-east-1",
        "resources": [],
        "detail": serde_json::from_str::<serde_json::Value>(ORDER).expect("order"),
    })
    .to_string()
}

fn message(body: &str) -> Message {
    Message::detached(ReceivedMessage {
        message_id: "m-1".to_owned(),
        receipt_handle: ReceiptHandle::new("r-1"),
        body: body.to_owned(),
        md5_of_body: None,
        attributes: HashMap::new(),
        message_attributes: HashMap::new(),
    })
}

/// The best of [`ROUNDS`] rounds of `iterations` decodes of `body`, in ns per message.
fn time<T>(iterations: u32, body: &str, decode: impl Fn(Message) -> T) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(decode(message(black_box(body))));
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let iterations = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(200_000);
    let (notification, event) = (notification(), event());
    // Every row times a decode that succeeds, not an error path.
    assert!(input::json::<Order>(message(ORDER)).is_ok());
    assert!(
        input::sns::<Order>(message(&notification)).is_ok_and(|(o, _)| o.notification.is_some())
    );
    assert!(input::sns::<Order>(message(ORDER)).is_ok_and(|(o, _)| o.notification.is_none()));
    assert!(input::event_bridge::<Order>(message(&event)).is_ok());
    let rows = [
        (
            "bare JSON (baseline)",
            ORDER.len(),
            time(iterations, ORDER, |m| input::json::<Order>(m).is_ok()),
        ),
        (
            "SNS, wrapped",
            notification.len(),
            time(iterations, &notification, |m| {
                input::sns::<Order>(m).is_ok()
            }),
        ),
        (
            "SNS, raw delivery",
            ORDER.len(),
            time(iterations, ORDER, |m| input::sns::<Order>(m).is_ok()),
        ),
        (
            "EventBridge",
            event.len(),
            time(iterations, &event, |m| {
                input::event_bridge::<Order>(m).is_ok()
            }),
        ),
    ];
    let baseline = rows[0].2;
    println!("decoding one small message, best of {ROUNDS} rounds of {iterations}");
    println!("| input | body bytes | ns/message | over the baseline |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, bytes, ns) in rows {
        println!(
            "| {name} | {bytes} | {ns:.0} | {:+.0} ns ({:.2} µs) |",
            ns - baseline,
            (ns - baseline) / 1000.0
        );
    }
}
