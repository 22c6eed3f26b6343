//! Bad input on the embedded queue, under paused tokio time: bodies that are not the
//! handler's JSON, what the logs say about them (ids and kinds, never the bodies), and
//! the messages SQS refuses on send (empty, over the size limit, characters outside
//! its set, too many attributes), refused the same way here.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use spotq::backend::{Backend, ReceiveRequest};
use spotq::error::DecodeErrorKind;
use spotq::{Context, EmbeddedQueue, HandlerError, RetryPolicy, input};
use tokio::time::sleep;
use tracing_subscriber::EnvFilter;

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
    /// Installs a subscriber for this thread (the test's current-thread runtime) that
    /// logs as `spotq::logging::init` does with `RUST_LOG` unset: `info` and above, as
    /// JSON lines when `json`.
    fn install(&self, json: bool) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info"))
            .with_writer(move || writer.clone())
            .with_ansi(false);
        if json {
            tracing::subscriber::set_default(builder.json().flatten_event(true).finish())
        } else {
            tracing::subscriber::set_default(builder.finish())
        }
    }

    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
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
    RetryPolicy::Backoff(spotq::Backoff::new(Duration::ZERO, Duration::ZERO))
}

async fn drained(queue: EmbeddedQueue) {
    while queue.counts().total() > 0 {
        sleep(Duration::from_millis(100)).await;
    }
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
    for json in [false, true] {
        HANDLED.lock().expect("lock").clear();
        let logs = Captured::default();
        let _guard = logs.install(json);
        let dead_letters = EmbeddedQueue::new("orders-dlq");
        let queue = EmbeddedQueue::builder("orders")
            .redrive(&dead_letters, 2)
            .build()
            .expect("queue");
        queue.send_many((0..30).map(|id| format!(r#"{{"id":{id},"amount_cents":100}}"#)));
        let bad: BTreeSet<String> = bad_bodies().into_iter().collect();
        let ids: BTreeSet<String> = bad.iter().map(|body| queue.send(body.clone())).collect();
        let report = handle_order_worker()
            .configure(|config| config.retry = no_backoff())
            .worker(queue.clone())
            .expect("bind")
            .run_until(drained(queue.clone()))
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
        // The failures are logged, with the message id, the kind and where it broke.
        let failures: Vec<_> = lines
            .iter()
            .filter(|line| line.contains("handler failed"))
            .collect();
        assert_eq!(failures.len(), 2 * bad.len(), "{lines:#?}");
        for id in &ids {
            assert_eq!(
                failures
                    .iter()
                    .filter(|line| line.contains(id.as_str()))
                    .count(),
                2,
                "{id} in {failures:#?}"
            );
        }
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
    let logs = Captured::default();
    let _guard = logs.install(false);
    let dead_letters = EmbeddedQueue::new("invoices-dlq");
    let queue = EmbeddedQueue::builder("invoices")
        .redrive(&dead_letters, 1)
        .build()
        .expect("queue");
    queue.send_many((0..9).map(|number| format!(r#"{{"number":{number}}}"#)));
    queue.send(format!(r#"{{"number":"{SECRET}"}}"#));
    let report = handle_invoices_worker()
        .configure(|config| config.retry = no_backoff())
        .worker(queue.clone())
        .expect("bind")
        .run_until(drained(queue.clone()))
        .await
        .expect("worker runs");

    assert_eq!((report.deleted, report.failed), (9, 1));
    assert_eq!(dead_letters.counts().visible, 1);
    let lines = logs.lines();
    assert_no_secret(&lines);
    assert!(
        lines
            .iter()
            .any(|line| line.contains("handler failed") && line.contains("decode")),
        "{lines:#?}"
    );
}
#[test]
fn a_decode_error_says_where_and_what_kind_but_not_the_value() {
    let message = spotq::Message::detached(spotq::input::from_lambda({
        let mut record = spotq::lambda_events::sqs::SqsMessage::default();
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
