//! Bad input on the embedded queue, under paused tokio time: bodies that are not the
//! handler's JSON, what the logs say about them (ids and kinds, never the bodies), and
//! the messages SQS refuses on send (empty, over the size limit, characters outside
//! its set, too many attributes), refused the same way here.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use spotq::backend::{Backend, MessageAttribute, ReceiveRequest};
use spotq::backend::{MAX_MESSAGE_ATTRIBUTES, MAX_MESSAGE_BYTES};
use spotq::handler::DecodeErrorKind;
use spotq::{
    Context, EmbeddedQueue, Error, Outcome, WorkerSpec, backend::BackendError,
    backend::SendMessage, config::QueueSource, config::RetryPolicy, config::WorkerConfig,
    handler::HandlerError, handler::input, shutdown::ShutdownHandle, testing::run_until_drained,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;

/// What a body that must never be logged carries.
const SECRET: &str = "hunter2-do-not-log";

/// Log lines written through `tracing`, captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The logs of every test in this binary, as `spotq::telemetry::logging::init` writes them with
/// `RUST_LOG` unset (`info` and above), once as text and once as JSON lines. One global
/// subscriber: per-thread ones miss events of callsites another test's thread
/// registered first.
struct Logs {
    text: Captured,
    json: Captured,
}

impl Logs {
    fn get() -> &'static Self {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let (text, json) = (Captured::default(), Captured::default());
            let (to_text, to_json) = (text.clone(), json.clone());
            let subscriber = tracing_subscriber::registry()
                .with(EnvFilter::new("info"))
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(move || to_text.clone()),
                )
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_writer(move || to_json.clone()),
                );
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            Logs { text, json }
        })
    }

    /// Every line of both formats.
    fn lines(&self) -> Vec<String> {
        let mut lines = self.text.lines();
        lines.extend(self.json.lines());
        lines
    }
}

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    #[allow(dead_code)]
    amount_cents: u64,
}

/// Orders handled, by id.
static HANDLED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

#[spotq::worker(queue = "orders", concurrency = 4, retry_backoff = false)]
async fn handle_order(order: Order, _cx: &Context) -> Result<(), std::io::Error> {
    HANDLED.lock().expect("lock").insert(order.id);
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Invoice {
    #[allow(dead_code)]
    number: u64,
}

#[spotq::worker(queue = "invoices", batch_size = 10, retry_backoff = false)]
async fn handle_invoices(invoices: Vec<Invoice>) -> Result<(), std::io::Error> {
    assert!(!invoices.is_empty());
    Ok(())
}

/// Bodies that reach no typed handler, each carrying the secret: a string where a
/// number goes, a malformed document, a body cut short, an unknown variant of shape.
fn bad_bodies() -> Vec<String> {
    vec![
        format!(r#"{{"id":"{SECRET}","amount_cents":1}}"#),
        format!(r#"{{"id":7,"amount_cents":1,{SECRET}}}"#),
        format!(r#"{{"id":8,"amount_cents":"{SECRET}""#),
        format!(r#"["{SECRET}"]"#),
        SECRET.to_owned(),
    ]
}

/// Retries at once.
fn no_backoff() -> RetryPolicy {
    RetryPolicy::Backoff(spotq::config::Backoff::new(Duration::ZERO, Duration::ZERO))
}

/// Every body in `queue`, taking them (the queue is not read by anyone else).
async fn bodies(queue: &EmbeddedQueue) -> BTreeSet<String> {
    let mut bodies = BTreeSet::new();
    loop {
        let messages = queue
            .receive(ReceiveRequest {
                max_messages: 10,
                wait_time: Duration::ZERO,
                visibility_timeout: Some(Duration::from_secs(600)),
                attempt_id: None,
            })
            .await
            .expect("receive");
        if messages.is_empty() {
            return bodies;
        }
        bodies.extend(messages.into_iter().map(|message| message.body));
    }
}

fn assert_no_secret(lines: &[String]) {
    let leaks: Vec<_> = lines.iter().filter(|line| line.contains(SECRET)).collect();
    assert!(leaks.is_empty(), "message bodies in the logs: {leaks:#?}");
}

#[tokio::test(start_paused = true)]
async fn bodies_that_do_not_decode_are_dead_lettered_and_never_logged() {
    let logs = Logs::get();
    let dead_letters = EmbeddedQueue::new("orders-dlq");
    let queue = EmbeddedQueue::builder("orders")
        .redrive(&dead_letters, 2)
        .build()
        .expect("queue");
    queue.send_many((0..30).map(|id| format!(r#"{{"id":{id},"amount_cents":100}}"#)));
    let bad: BTreeSet<String> = bad_bodies().into_iter().collect();
    let ids: BTreeSet<String> = bad.iter().map(|body| queue.send(body.clone())).collect();
    let worker = handle_order_worker().configure(|config| config.retry = no_backoff());
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    assert_eq!(
        *HANDLED.lock().expect("lock"),
        (0..30).collect::<BTreeSet<_>>(),
        "the good orders flow on"
    );
    assert_eq!(report.deleted, 30);
    assert_eq!(report.failed, 2 * bad.len() as u64, "each bad one, twice");
    assert_eq!(bodies(&dead_letters).await, bad, "exactly the bad ones");

    let lines = logs.lines();
    assert_no_secret(&lines);
    // The failures are logged, in each format, with the message id, the kind and where
    // the body broke.
    for id in &ids {
        let failures: Vec<_> = lines
            .iter()
            .filter(|line| line.contains("handler failed") && line.contains(id.as_str()))
            .collect();
        assert_eq!(
            failures.len(),
            2 * 2,
            "two receives, two formats: {lines:#?}"
        );
        assert!(
            failures
                .iter()
                .all(|line| line.contains("decode") && line.contains("line 1 column")),
            "{failures:#?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_s_bodies_that_do_not_decode_are_never_logged() {
    let logs = Logs::get();
    let dead_letters = EmbeddedQueue::new("invoices-dlq");
    let queue = EmbeddedQueue::builder("invoices")
        .redrive(&dead_letters, 1)
        .build()
        .expect("queue");
    queue.send_many((0..9).map(|number| format!(r#"{{"number":{number}}}"#)));
    let id = queue.send(format!(r#"{{"number":"{SECRET}"}}"#));
    let worker = handle_invoices_worker().configure(|config| config.retry = no_backoff());
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    assert_eq!((report.deleted, report.failed), (9, 1));
    assert_eq!(dead_letters.counts().visible, 1);
    let lines = logs.lines();
    assert_no_secret(&lines);
    let failures = lines
        .iter()
        .filter(|line| line.contains("handler failed") && line.contains(&id))
        .filter(|line| line.contains("decode"))
        .count();
    assert_eq!(failures, 2, "once in each format: {lines:#?}");
}

#[test]
fn a_decode_error_says_where_and_what_kind_but_not_the_value() {
    let message = spotq::Message::detached(spotq::handler::input::from_lambda({
        let mut record = spotq::handler::lambda_events::sqs::SqsMessage::default();
        record.message_id = Some("m-1".to_owned());
        record.body = Some(format!(r#"{{"id":"{SECRET}","amount_cents":1}}"#));
        record
    }));
    let Err(error) = input::json::<Order>(message) else {
        panic!("a string is not a u64");
    };
    let HandlerError::Decode(inner) = &error else {
        panic!("a decode error: {error:?}");
    };
    for text in [error.to_string(), format!("{inner:#}")] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("line 1 column 26"), "{text}");
    }
    let debug = format!("{error:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(
        error.to_string().contains("Order"),
        "names the type: {error}"
    );
    // The handler's own code may read what the decoder said in full.
    let decode = error.decode_error().expect("a decode error");
    assert!(decode.detail().contains(SECRET), "{}", decode.detail());
    assert_eq!((decode.line(), decode.column()), (1, 7 + SECRET.len() + 1));
    assert_eq!(decode.kind(), DecodeErrorKind::Data);
    assert!(
        decode.input_type().ends_with("Order"),
        "{}",
        decode.input_type()
    );
}

fn rejected_code(result: Result<String, BackendError>) -> String {
    match result {
        Err(BackendError::Rejected { code, .. }) => code,
        other => panic!("refused as SQS refuses it, got {other:?}"),
    }
}

/// Receives the one message `queue` holds.
async fn receive_one(queue: &EmbeddedQueue) -> spotq::backend::ReceivedMessage {
    let mut messages = queue
        .receive(ReceiveRequest {
            max_messages: 10,
            wait_time: Duration::ZERO,
            visibility_timeout: None,
            attempt_id: None,
        })
        .await
        .expect("receive");
    assert_eq!(messages.len(), 1);
    messages.remove(0)
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_is_refused_as_sqs_refuses_it() {
    let queue = EmbeddedQueue::new("empty");
    assert_eq!(
        rejected_code(queue.send_with(SendMessage::new(""))),
        "MissingParameter"
    );
    assert_eq!(
        rejected_code(Backend::send(&queue, SendMessage::new("")).await),
        "MissingParameter"
    );
    let panic = std::panic::catch_unwind(|| queue.send("")).expect_err("send panics");
    let text = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(text.contains("MessageBody"), "{text}");
    assert_eq!(queue.counts().total(), 0, "nothing was queued");
}

#[tokio::test(start_paused = true)]
async fn the_largest_message_sqs_takes_is_taken_and_one_byte_more_is_refused() {
    let queue = EmbeddedQueue::new("large");
    let largest = "x".repeat(MAX_MESSAGE_BYTES);
    queue
        .send_with(SendMessage::new(largest.clone()))
        .expect("1 MiB is the limit, inclusive");
    assert_eq!(receive_one(&queue).await.body, largest, "intact");

    let over = SendMessage::new("x".repeat(MAX_MESSAGE_BYTES + 1));
    let Err(BackendError::Rejected { code, message, .. }) = queue.send_with(over) else {
        panic!("one byte over is refused");
    };
    assert_eq!(code, "InvalidParameterValue");
    assert!(message.contains("1048576 bytes"), "{message}");
    // The attributes count toward the limit: name, type and value.
    let with_attribute = SendMessage::new("x".repeat(MAX_MESSAGE_BYTES - 8))
        .attribute("k", MessageAttribute::string("vv"));
    assert_eq!(
        rejected_code(queue.send_with(with_attribute)),
        "InvalidParameterValue",
        "1 + 6 + 2 attribute bytes over 1 MiB - 8"
    );
    // Multi-byte characters count in bytes.
    let wide = "é".repeat(MAX_MESSAGE_BYTES / 2 + 1);
    assert_eq!(
        rejected_code(queue.send_with(SendMessage::new(wide))),
        "InvalidParameterValue"
    );
}

#[tokio::test(start_paused = true)]
async fn characters_at_the_edges_of_what_sqs_allows_round_trip_and_others_are_refused() {
    let queue = EmbeddedQueue::new("unicode");
    let edges =
        "\t\n\r \u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{10FFFF} ünïcødé ✓ 🚀 \"quoted\" <xml/>&amp;";
    queue
        .send_with(SendMessage::new(edges).attribute("note", MessageAttribute::string(edges)))
        .expect("allowed characters");
    let message = receive_one(&queue).await;
    assert_eq!(message.body, edges);
    assert_eq!(
        message.message_attributes["note"].string_value.as_deref(),
        Some(edges)
    );
    for refused in [
        "\u{0}", "a\u{8}b", "\u{B}", "\u{1F}", "\u{FFFE}", "\u{FFFF}",
    ] {
        assert_eq!(
            rejected_code(queue.send_with(SendMessage::new(refused))),
            "InvalidMessageContents",
            "{refused:?}"
        );
        let in_attribute =
            SendMessage::new("ok").attribute("note", MessageAttribute::string(refused));
        assert_eq!(
            rejected_code(queue.send_with(in_attribute)),
            "InvalidMessageContents"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn ten_attributes_of_every_type_round_trip_and_an_eleventh_is_refused() {
    let queue = EmbeddedQueue::new("attributes");
    let binary: Vec<u8> = (0..=255).collect();
    let mut message = SendMessage::new("with attributes")
        .attribute(
            "blob",
            MessageAttribute {
                data_type: "Binary".to_owned(),
                string_value: None,
                binary_value: Some(binary.clone()),
            },
        )
        .attribute(
            "count",
            MessageAttribute {
                data_type: "Number.int".to_owned(),
                string_value: Some("-12345678901234567890".to_owned()),
                binary_value: None,
            },
        );
    for n in 2..MAX_MESSAGE_ATTRIBUTES {
        message = message.attribute(format!("attr.{n}-x_y"), MessageAttribute::string("v"));
    }
    queue.send_with(message.clone()).expect("ten attributes");
    let received = receive_one(&queue).await;
    assert_eq!(received.message_attributes.len(), MAX_MESSAGE_ATTRIBUTES);
    assert_eq!(
        received.message_attributes["blob"].binary_value.as_deref(),
        Some(binary.as_slice())
    );
    assert_eq!(received.message_attributes["count"].data_type, "Number.int");

    let eleven = message.attribute("one-too-many", MessageAttribute::string("v"));
    assert_eq!(
        rejected_code(queue.send_with(eleven)),
        "InvalidParameterValue"
    );
}

#[tokio::test(start_paused = true)]
async fn a_continuation_the_queue_refuses_fails_its_message_which_is_dead_lettered() {
    let dead_letters = EmbeddedQueue::new("continue-dlq");
    let queue = EmbeddedQueue::builder("continue")
        .redrive(&dead_letters, 2)
        .build()
        .expect("queue");
    queue.send_many(["ok-1", "refused", "ok-2"]);
    let worker = spotq::Worker::builder(queue.clone())
        .retry(no_backoff())
        .handler(|message: spotq::Message| async move {
            match message.body() {
                // The next step's state is empty: SQS refuses the send.
                "refused" => Outcome::Continue(SendMessage::new("")),
                _ => Outcome::Ack,
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    assert_eq!((report.deleted, report.continued), (2, 0));
    assert_eq!(
        report.failed, 2,
        "the refused continuation, on each receive"
    );
    assert_eq!(
        bodies(&dead_letters).await,
        BTreeSet::from(["refused".to_owned()])
    );
}

#[tokio::test(start_paused = true)]
async fn run_fails_at_start_naming_an_unset_queue_variable() {
    const VARIABLE: &str = "SPOTQ_BAD_INPUT_TEST_SURELY_UNSET_QUEUE";
    let spec = WorkerSpec::new(
        QueueSource::env(VARIABLE),
        WorkerConfig::default(),
        |_: spotq::Message| async {},
    );
    // No AWS call is made: the sources are resolved first.
    let error = spotq::shutdown::run_with([spec], ShutdownHandle::new())
        .await
        .expect_err("no queue");
    let Error::Config(config) = &error else {
        panic!("a setting error: {error:?}");
    };
    assert_eq!(config.setting, "queue");
    assert!(error.to_string().contains(VARIABLE), "{error}");
}
