//! Batch handlers, typed inputs and worker specs on the embedded queue, under paused
//! tokio time: partial failures retried and the rest deleted, malformed bodies
//! dead-lettered without touching other messages, heartbeats for a whole batch, and
//! several workers under one shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spotq::handler::lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use spotq::{
    EmbeddedQueue, Message, Outcome, Worker, WorkerSpec, config::QueueSource, config::RetryPolicy,
    config::WorkerConfig, handler::BatchOutcome, handler::ItemFailure, handler::input,
    shutdown::ShutdownHandle, testing::run_until_drained,
};
use tokio::time::sleep;

async fn drained(queues: Vec<EmbeddedQueue>) {
    while queues.iter().any(|queue| queue.counts().total() > 0) {
        sleep(Duration::from_millis(100)).await;
    }
}

/// Retries at once, so tests go from attempt to attempt without waiting.
fn no_backoff() -> RetryPolicy {
    RetryPolicy::Backoff(spotq::config::Backoff::new(Duration::ZERO, Duration::ZERO))
}

/// Handler calls per body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<String, usize>>>);

impl Seen {
    fn saw(&self, body: &str) {
        *self
            .0
            .lock()
            .expect("lock")
            .entry(body.to_owned())
            .or_default() += 1;
    }

    fn times(&self, body: &str) -> usize {
        self.0.lock().expect("lock").get(body).copied().unwrap_or(0)
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_handlers_failed_items_are_retried_and_the_rest_deleted() {
    let dead_letters = EmbeddedQueue::new("batch-dlq");
    let queue = EmbeddedQueue::builder("batch")
        .redrive(&dead_letters, 3)
        .build()
        .expect("queue");
    queue.send_many((0..40).map(|n| format!("item-{n}")));
    queue.send("poison");
    let seen = Seen::default();
    let batches = Arc::new(Mutex::new(Vec::new()));
    let (recorder, sizes) = (seen.clone(), Arc::clone(&batches));
    let worker = Worker::builder(queue.clone())
        .concurrency(20)
        .retry(no_backoff())
        .batch_handler(move |messages: Vec<Message>| {
            let (seen, sizes) = (recorder.clone(), Arc::clone(&sizes));
            async move {
                sizes.lock().expect("lock").push(messages.len());
                let mut response = SqsBatchResponse::default();
                for message in &messages {
                    seen.saw(message.body());
                    // Every item fails on its first receive; "poison" always fails.
                    if message.body() == "poison" || message.receive_count() == 1 {
                        let mut failure = BatchItemFailure::default();
                        failure.item_identifier = message.id().to_owned();
                        response.batch_item_failures.push(failure);
                    }
                }
                response
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    for n in 0..40 {
        assert_eq!(
            seen.times(&format!("item-{n}")),
            2,
            "item-{n}: failed once, then done"
        );
    }
    assert_eq!(seen.times("poison"), 3, "poison: maxReceiveCount receives");
    assert_eq!(dead_letters.counts().visible, 1);
    assert_eq!(report.deleted, 40);
    assert_eq!(report.failed, 40 + 3);
    let sizes = batches.lock().expect("lock");
    assert!(
        sizes.iter().all(|size| (1..=10).contains(size)),
        "batches within the batch size: {sizes:?}"
    );
    assert!(
        sizes.iter().any(|size| *size > 1),
        "messages arrive in batches"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_naming_a_message_outside_the_batch_fails_the_whole_batch() {
    let queue = EmbeddedQueue::new("stranger");
    queue.send_many(["a", "b", "c"]);
    let seen = Seen::default();
    let recorder = seen.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(10)
        .retry(no_backoff())
        .batch_handler(move |messages: Vec<Message>| {
            let seen = recorder.clone();
            async move {
                messages.iter().for_each(|message| seen.saw(message.body()));
                if messages.iter().all(|message| message.receive_count() == 1) {
                    BatchOutcome::failures([ItemFailure::new("not-in-this-batch", "oops")])
                } else {
                    BatchOutcome::Ack
                }
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    for body in ["a", "b", "c"] {
        assert_eq!(
            seen.times(body),
            2,
            "{body}: the first batch failed as a whole"
        );
    }
    assert_eq!((report.failed, report.deleted), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_or_timed_out_batch_fails_every_message_and_the_worker_goes_on() {
    let queue = EmbeddedQueue::new("panics");
    queue.send_many(["panic", "hang"]);
    let worker = Worker::builder(queue.clone())
        .batch_size(1)
        .concurrency(2)
        .handler_timeout(Duration::from_secs(5))
        .retry(no_backoff())
        .batch_handler(|messages: Vec<Message>| async move {
            let first = messages[0].receive_count() == 1;
            match messages[0].body() {
                "panic" if first => panic!("boom"),
                "hang" if first => sleep(Duration::from_secs(3600)).await,
                _ => {}
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker survives");

    assert_eq!((report.failed, report.deleted), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_long_batch_keeps_all_its_messages_invisible() {
    let queue = EmbeddedQueue::builder("long-batch")
        .visibility_timeout(Duration::from_secs(10))
        .build()
        .expect("queue");
    queue.send_many((0..5).map(|n| n.to_string()));
    let seen = Seen::default();
    let recorder = seen.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(10)
        .pollers(3)
        .batch_handler(move |messages: Vec<Message>| {
            let seen = recorder.clone();
            async move {
                messages.iter().for_each(|message| seen.saw(message.body()));
                sleep(Duration::from_secs(50)).await;
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    for n in 0..5 {
        assert_eq!(seen.times(&n.to_string()), 1, "never received twice");
    }
    assert_eq!(report.deleted, 5);
    assert!(
        report.heartbeats >= 5 * 9,
        "heartbeats: {}",
        report.heartbeats
    );
    assert_eq!(report.stale_receipts, 0);
}

#[derive(Debug, serde::Deserialize)]
struct Order {
    id: u32,
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_decode_is_dead_lettered_and_blocks_nothing() {
    let dead_letters = EmbeddedQueue::new("orders-dlq");
    let queue = EmbeddedQueue::builder("orders")
        .redrive(&dead_letters, 2)
        .build()
        .expect("queue");
    queue.send_many((0..50).map(|id| format!(r#"{{"id":{id}}}"#)));
    queue.send("not json");
    let handled = Arc::new(Mutex::new(Vec::new()));
    let ids = Arc::clone(&handled);
    let worker = Worker::builder(queue.clone())
        .concurrency(8)
        .retry(no_backoff())
        .handler(move |message: Message| {
            let ids = Arc::clone(&ids);
            async move {
                match input::json::<Order>(message) {
                    Ok((order, _cx)) => {
                        ids.lock().expect("lock").push(order.id);
                        Outcome::Ack
                    }
                    Err(error) => Outcome::Fail(error),
                }
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    let mut ids = handled.lock().expect("lock").clone();
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
    assert_eq!((report.deleted, report.failed), (50, 2));
    assert_eq!(dead_letters.counts().visible, 1, "the malformed body");
}

#[tokio::test(start_paused = true)]
async fn a_typed_batch_fails_only_the_bodies_that_do_not_decode() {
    let queue = EmbeddedQueue::new("typed-batch");
    queue.send_many([r#"{"id":1}"#, "garbage", r#"{"id":2}"#]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let report = Worker::builder(queue.clone())
        .concurrency(10)
        .retry(RetryPolicy::VisibilityTimeout)
        .batch_handler(move |messages: Vec<Message>| {
            let recorder = Arc::clone(&recorder);
            input::batch(messages, input::json::<Order>, move |orders| async move {
                recorder
                    .lock()
                    .expect("lock")
                    .extend(orders.iter().map(|order| order.id));
                Ok::<(), std::io::Error>(())
            })
        })
        .run_until(sleep(Duration::from_secs(5)))
        .await
        .expect("worker runs");

    let mut ids = seen.lock().expect("lock").clone();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    assert_eq!((report.deleted, report.failed), (2, 1));
    assert_eq!(
        queue.counts().not_visible,
        1,
        "the garbage waits out its timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn lambda_records_carry_the_message() {
    let queue = EmbeddedQueue::new("records");
    queue
        .send_with(
            spotq::backend::SendMessage::new("hello")
                .attribute("tenant", spotq::backend::MessageAttribute::string("t-1")),
        )
        .expect("send");
    let records = Arc::new(Mutex::new(Vec::<SqsMessage>::new()));
    let recorder = Arc::clone(&records);
    let worker = Worker::builder(queue.clone()).handler(move |message: Message| {
        let recorder = Arc::clone(&recorder);
        async move {
            let (record, cx) = input::lambda(message)?;
            assert_eq!(record.message_id.as_deref(), Some(cx.message_id()));
            recorder.lock().expect("lock").push(record);
            Ok::<(), spotq::handler::HandlerError>(())
        }
    });
    run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    let records = records.lock().expect("lock");
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.body.as_deref(), Some("hello"));
    assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
    assert!(record.receipt_handle.is_some());
    assert_eq!(
        record
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        record.message_attributes["tenant"].string_value.as_deref(),
        Some("t-1")
    );
}

#[tokio::test(start_paused = true)]
async fn several_specs_run_under_one_shutdown() {
    let orders = EmbeddedQueue::new("orders-q");
    let invoices = EmbeddedQueue::new("invoices-q");
    orders.send_many((0..30).map(|n| n.to_string()));
    invoices.send_many((0..20).map(|n| n.to_string()));
    let per_message = WorkerSpec::new(
        QueueSource::name("orders-q"),
        WorkerConfig::default(),
        |_: Message| async {},
    );
    let batch = WorkerSpec::batch(
        QueueSource::name("invoices-q"),
        WorkerConfig {
            batch_size: 5,
            ..WorkerConfig::default()
        },
        |_: Vec<Message>| async {},
    );
    let shutdown = ShutdownHandle::new();
    let stop = shutdown.clone();
    let queues = vec![orders.clone(), invoices.clone()];
    tokio::spawn(async move {
        drained(queues).await;
        stop.begin();
    });
    let workers = [
        per_message.worker(orders.clone()).expect("bound"),
        batch.worker(invoices.clone()).expect("bound"),
    ];
    let reports = spotq::shutdown::run_all(workers, shutdown)
        .await
        .expect("workers run");

    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].deleted, 30);
    assert_eq!(reports[1].deleted, 20);
}

#[tokio::test(start_paused = true)]
async fn a_spec_checks_its_queue_source_and_fifo_flag() {
    let missing = QueueSource::env("SPOTQ_TEST_SURELY_UNSET_QUEUE");
    let error = missing.resolve().expect_err("unset variable");
    assert_eq!(error.setting, "queue");
    assert!(
        error.allowed.contains("SPOTQ_TEST_SURELY_UNSET_QUEUE"),
        "{error}"
    );

    let spec = WorkerSpec::new(
        QueueSource::name("jobs"),
        WorkerConfig::default(),
        |_: Message| async {},
    )
    .fifo(true);
    let error = spec
        .worker(EmbeddedQueue::new("jobs"))
        .expect_err("not FIFO");
    assert_eq!(error.setting, "fifo");
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_panics_before_its_future_exists_fails_only_its_message() {
    let queue = EmbeddedQueue::new("early-panic");
    queue.send_many((0..20).map(|n| n.to_string()));
    let worker = Worker::builder(queue.clone())
        .concurrency(4)
        .retry(no_backoff())
        .handler(|message: Message| {
            // The call itself panics (not the future) on every first receive of "7".
            assert!(
                !(message.body() == "7" && message.receive_count() == 1),
                "panic in the call"
            );
            async {}
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("the poller survives");
    assert_eq!((report.failed, report.deleted), (1, 20));

    let queue = EmbeddedQueue::new("early-panic-batch");
    queue.send_many((0..20).map(|n| n.to_string()));
    let worker = Worker::builder(queue.clone())
        .concurrency(4)
        .retry(no_backoff())
        .batch_handler(|messages: Vec<Message>| {
            assert!(
                messages.iter().all(|message| message.receive_count() > 1),
                "panic in the call"
            );
            async {}
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("the worker survives");
    assert_eq!((report.failed, report.deleted), (20, 20));
}
