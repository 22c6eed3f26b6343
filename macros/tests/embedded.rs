//! `#[spotq::worker]` handlers run on the embedded queue, under paused tokio time: what
//! the generated `<name>_worker()` does with good bodies, bodies that do not decode and
//! the partial failures of a batch.

use std::sync::Mutex;

use spotq::handler::lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use spotq::{Context, EmbeddedQueue, Message, testing::run_until_drained};

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

/// The order ids handled, with the receive count of each call.
static ORDERS: Mutex<Vec<(u64, u32)>> = Mutex::new(Vec::new());

#[spotq::worker(queue = "orders", concurrency = 4, retry_backoff = ("0s", "0s"))]
async fn handle_order(order: Order, cx: &Context) -> Result<(), String> {
    ORDERS
        .lock()
        .map_err(|error| error.to_string())?
        .push((order.id, cx.receive_count()));
    // Order 13 fails on its first receive, then succeeds.
    if order.id == 13 && cx.receive_count() == 1 {
        return Err("unlucky".to_owned());
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn typed_handler_retries_failures_and_dead_letters_bodies_that_do_not_decode() {
    let dead_letters = EmbeddedQueue::new("orders-dlq");
    let queue = EmbeddedQueue::builder("orders")
        .redrive(&dead_letters, 2)
        .build()
        .expect("queue");
    queue.send_many(["{\"id\": 1}", "{\"id\": 13}", "not json", "{\"id\": 2}"]);

    let spec = handle_order_worker();
    assert_eq!(spec.config().concurrency, 4);
    let report = run_until_drained(spec, &queue).await.expect("worker runs");

    let mut handled = ORDERS.lock().expect("lock").clone();
    handled.sort_unstable();
    // The body that does not decode never reaches the handler.
    assert_eq!(handled, [(1, 1), (2, 1), (13, 1), (13, 2)]);
    // It fails on each of its 2 receives, then the redrive moves it.
    assert_eq!(dead_letters.counts().visible, 1);
    assert_eq!(report.deleted, 3);
    assert_eq!(report.failed, 3);
}

/// The bodies of every batch handled.
static BATCHES: Mutex<Vec<Vec<String>>> = Mutex::new(Vec::new());

#[spotq::worker(queue = "batches", batch_size = 10, retry_backoff = ("0s", "0s"))]
async fn handle_batch(messages: Vec<Message>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in &messages {
        // "retry" fails once; every other message is done.
        if message.body() == "retry" && message.receive_count() == 1 {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.id().to_owned();
            response.batch_item_failures.push(failure);
        }
    }
    if let Ok(mut batches) = BATCHES.lock() {
        batches.push(messages.iter().map(|m| m.body().to_owned()).collect());
    }
    response
}

#[tokio::test(start_paused = true)]
async fn batch_handler_retries_only_the_items_it_names() {
    let queue = EmbeddedQueue::new("batches");
    queue.send_many(["a", "retry", "b"]);

    let spec = handle_batch_worker();
    assert!(spec.is_batch());
    let report = run_until_drained(spec, &queue).await.expect("worker runs");

    let batches = BATCHES.lock().expect("lock").clone();
    let mut seen: Vec<&str> = batches.iter().flatten().map(String::as_str).collect();
    seen.sort_unstable();
    // "a" and "b" once; "retry" on its first receive and again after failing.
    assert_eq!(seen, ["a", "b", "retry", "retry"]);
    assert_eq!(report.deleted, 3);
}

#[derive(serde::Deserialize)]
struct Invoice {
    cents: u64,
}

/// The totals each batch handler call saw.
static TOTALS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[spotq::worker(queue = "invoices", retry_backoff = ("0s", "0s"))]
async fn book(invoices: Vec<Invoice>) -> Result<(), String> {
    let total = invoices.iter().map(|invoice| invoice.cents).sum();
    TOTALS
        .lock()
        .map_err(|error| error.to_string())?
        .push(total);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn typed_batch_fails_only_the_bodies_that_do_not_decode() {
    let dead_letters = EmbeddedQueue::new("invoices-dlq");
    let queue = EmbeddedQueue::builder("invoices")
        .redrive(&dead_letters, 1)
        .build()
        .expect("queue");
    queue.send_many(["{\"cents\": 5}", "{\"cents\": 7}", "{\"cents\": \"seven\"}"]);

    let report = run_until_drained(book_worker(), &queue)
        .await
        .expect("worker runs");

    let totals = TOTALS.lock().expect("lock").clone();
    assert_eq!(totals.iter().sum::<u64>(), 12, "{totals:?}");
    assert_eq!(report.deleted, 2);
    assert_eq!(dead_letters.counts().visible, 1);
}

/// The bodies handled, as they were sent.
static TEXTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[spotq::worker(queue = "texts")]
async fn handle_text(body: String, cx: &Context) -> Result<(), String> {
    if cx.message_id().is_empty() {
        return Err("no message id".to_owned());
    }
    TEXTS.lock().map_err(|error| error.to_string())?.push(body);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_string_handler_gets_the_body_as_it_is() {
    let queue = EmbeddedQueue::new("texts");
    // Not JSON: a `String` is the body itself, not a JSON string, whitespace and all
    // (an empty body SQS refuses, and so does the embedded queue).
    queue.send_many(["plain text", "{\"id\": 1}", " "]);

    let report = run_until_drained(handle_text_worker(), &queue)
        .await
        .expect("worker runs");

    let mut texts = TEXTS.lock().expect("lock").clone();
    texts.sort_unstable();
    assert_eq!(texts, [" ", "plain text", "{\"id\": 1}"]);
    assert_eq!(report.deleted, 3);
    assert_eq!(report.failed, 0);
}

#[spotq::worker(queue = "plain.fifo", fifo = true)]
async fn handle_plain(message: Message) {
    let _ = message;
}

#[test]
fn fifo_worker_refuses_a_queue_that_is_not_fifo() {
    let error = handle_plain_worker()
        .worker(EmbeddedQueue::new("plain"))
        .expect_err("not FIFO");
    assert!(error.to_string().contains("fifo"), "{error}");
    handle_plain_worker()
        .worker(EmbeddedQueue::new("plain.fifo"))
        .expect("FIFO");
}
