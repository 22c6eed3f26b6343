//! Protocol tests: the engine and the SQS backend through the real `aws-sdk-sqs` client
//! against moto server on loopback. `scripts/test` starts moto and points the standard
//! AWS configuration chain at it (`AWS_ENDPOINT_URL`), as a worker would be configured.
//!
//! moto's receives are not atomic: two at once can both take one message. The workers
//! that have more than one poller and count deliveries reach moto through
//! [`InTurn`](support::in_turn::InTurn), which sends their receives (and deletes) one at
//! a time, as SQS would answer them; the one the `#[spotq::worker]` attribute builds
//! connects by itself and has one poller.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq::backend::{Backend, EntryErrorKind, ReceiveRequest, SendMessage, VisibilityChange};
use spotq::{
    Error, Message, Outcome, SqsBackend, Worker, WorkerSpec, backend::BackendError,
    config::Heartbeat, config::QueueSource,
};
use support::in_turn::InTurn;
use support::proxy::FaultProxy;
use support::{Seen, counts, create_queue, emulator_endpoint, send, unique, until};
use tokio::time::{Instant, sleep, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_and_deletes_every_message() {
    let queue = create_queue(&unique("all"), &[]).await;
    send(&queue, (0..60).map(|n| format!("job-{n}"))).await;
    assert_eq!(counts(&queue).await, (60, 0, 0));

    let seen = Seen::default();
    let done = seen.clone();
    let report = Worker::builder(InTurn::new(&queue))
        .concurrency(20)
        .wait_time(Duration::from_secs(1))
        .handler(seen.handler())
        .run_until(until(Duration::from_secs(30), move || {
            done.counts().len() == 60
        }))
        .await
        .expect("worker runs");

    assert_eq!(report.received, 60);
    assert_eq!(report.deleted, 60);
    assert_eq!(report.delete_failed, 0);
    assert!(seen.counts().values().all(|count| *count == 1));
    assert_eq!(counts(&queue).await, (0, 0, 0), "every message deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_retried_after_the_backoff_not_the_visibility_timeout() {
    let queue = create_queue(
        &unique("retry"),
        &[(QueueAttributeName::VisibilityTimeout, "60".to_owned())],
    )
    .await;
    send(&queue, ["flaky".to_owned()]).await;

    // Each attempt's receive count and instant; checked after the run, since a panic in
    // the handler would only fail the message.
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handler_attempts = Arc::clone(&attempts);
    let succeeded = Arc::new(AtomicU32::new(0));
    let handler_succeeded = Arc::clone(&succeeded);
    let report = Worker::builder(InTurn::new(&queue))
        .wait_time(Duration::from_secs(1))
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(1))
        .handler(move |message: Message| {
            let attempts = Arc::clone(&handler_attempts);
            let succeeded = Arc::clone(&handler_succeeded);
            async move {
                let attempt = {
                    let mut attempts = attempts.lock().expect("lock");
                    attempts.push((message.receive_count(), Instant::now()));
                    attempts.len()
                };
                if attempt == 1 {
                    return Outcome::fail("first attempt fails");
                }
                succeeded.fetch_add(1, Ordering::SeqCst);
                Outcome::Ack
            }
        })
        .run_until(until(Duration::from_secs(40), {
            let succeeded = Arc::clone(&succeeded);
            move || succeeded.load(Ordering::SeqCst) == 1
        }))
        .await
        .expect("worker runs");

    let attempts = attempts.lock().expect("lock").clone();
    let counts_seen: Vec<u32> = attempts.iter().map(|(count, _)| *count).collect();
    assert_eq!(counts_seen, [1, 2], "one receive per attempt");
    let gap = attempts[1].1 - attempts[0].1;
    assert!(
        gap < Duration::from_secs(30),
        "retried {gap:?} after the failure: after the 1 s backoff, not the 60 s timeout"
    );
    assert_eq!((report.failed, report.retried, report.deleted), (1, 1, 1));
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_handler_s_message_invisible() {
    let queue = create_queue(
        &unique("heartbeat"),
        &[(QueueAttributeName::VisibilityTimeout, "2".to_owned())],
    )
    .await;
    send(&queue, ["slow".to_owned()]).await;

    let runs = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicU32::new(0));
    let (handler_runs, handler_done) = (Arc::clone(&runs), Arc::clone(&done));
    // Two pollers: without heartbeats the second would receive the message again once
    // its 2 s visibility lapsed, while the first handler still runs.
    let report = Worker::builder(InTurn::new(&queue))
        .concurrency(4)
        .pollers(2)
        .wait_time(Duration::from_secs(1))
        .heartbeat(Heartbeat::Every(Duration::from_secs(1)))
        .handler(move |_message: Message| {
            let (runs, done) = (Arc::clone(&handler_runs), Arc::clone(&handler_done));
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_secs(6)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
        .run_until({
            let done = Arc::clone(&done);
            async move {
                until(Duration::from_secs(20), move || {
                    done.load(Ordering::SeqCst) == 1
                })
                .await;
                // Give a lapsed message the chance to be received again before stopping.
                sleep(Duration::from_secs(3)).await;
            }
        })
        .await
        .expect("worker runs");

    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the message was never received twice"
    );
    assert!(report.heartbeats >= 4, "heartbeats: {}", report.heartbeats);
    assert_eq!(report.deleted, 1);
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_reaches_the_dead_letter_queue() {
    let dlq = create_queue(&unique("dlq"), &[]).await;
    let dlq_arn = dlq
        .client()
        .get_queue_attributes()
        .queue_url(dlq.queue_url())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq attributes")
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .expect("dlq arn");
    let policy = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#);
    let queue = create_queue(
        &unique("poison"),
        &[(QueueAttributeName::RedrivePolicy, policy)],
    )
    .await;
    let attributes = queue.attributes().await.expect("attributes");
    assert_eq!(
        attributes
            .redrive_policy
            .map(|policy| policy.max_receive_count),
        Some(2)
    );
    send(&queue, ["{not json".to_owned()]).await;

    let attempts = Arc::new(AtomicU32::new(0));
    let handler_attempts = Arc::clone(&attempts);
    let report = Worker::builder(InTurn::new(&queue))
        .wait_time(Duration::from_secs(1))
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(1))
        .handler(move |message: Message| {
            let attempts = Arc::clone(&handler_attempts);
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                serde_json::from_str::<serde_json::Value>(message.body()).map(|_| ())
            }
        })
        .run_until({
            let dlq = dlq.clone();
            async move {
                let start = Instant::now();
                while counts(&dlq).await.0 == 0 {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "never dead-lettered"
                    );
                    sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .await
        .expect("worker runs");

    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "handled maxReceiveCount times"
    );
    assert_eq!(report.failed, 2);
    assert_eq!(report.deleted, 0);
    assert_eq!(counts(&dlq).await.0, 1);
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_calls_report_each_entry() {
    let queue = create_queue(
        &unique("entries"),
        &[(QueueAttributeName::VisibilityTimeout, "30".to_owned())],
    )
    .await;
    send(&queue, ["a".to_owned(), "b".to_owned()]).await;
    let request = ReceiveRequest {
        max_messages: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: None,
        attempt_id: None,
    };
    let mut received = Vec::new();
    while received.len() < 2 {
        received.extend(queue.receive(request).await.expect("receive"));
    }
    assert_eq!(received[0].receive_count(), 1);
    assert!(received[0].attributes.contains_key("SentTimestamp"));

    // Release the first message and receive it again: its first handle goes stale.
    let stale = received[0].receipt_handle.clone();
    let release = VisibilityChange {
        receipt_handle: stale.clone(),
        timeout: Duration::ZERO,
    };
    assert_eq!(
        queue
            .change_visibility_batch(&[release])
            .await
            .expect("release"),
        vec![Ok(())]
    );
    let again = queue.receive(request).await.expect("receive again");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, received[0].message_id);
    assert_eq!(again[0].receive_count(), 2);

    let results = queue
        .delete_batch(&[
            again[0].receipt_handle.clone(),
            spotq::backend::ReceiptHandle::new("not-a-receipt-handle"),
            received[1].receipt_handle.clone(),
        ])
        .await
        .expect("delete batch");
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let error = results[1].as_ref().expect_err("bogus handle fails alone");
    assert_eq!(
        error.kind,
        EntryErrorKind::InvalidReceiptHandle,
        "{error:?}"
    );
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_fails_the_start_with_a_typed_error() {
    emulator_endpoint();
    let error = SqsBackend::from_env(&unique("missing"))
        .await
        .expect_err("no such queue");
    assert!(matches!(error, BackendError::Rejected { .. }), "{error:?}");
    assert!(!error.is_retryable());

    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_sqs::Client::new(&config);
    let url = format!("{}/000000000000/{}", emulator_endpoint(), unique("missing"));
    let worker = Worker::builder(SqsBackend::new(client, url)).handler(|_: Message| async {});
    let result = timeout(
        Duration::from_secs(20),
        worker.run_until(std::future::pending()),
    )
    .await;
    match result.expect("fails fast, not stuck") {
        Err(Error::Backend(BackendError::Rejected { operation, .. })) => {
            assert_eq!(operation, "GetQueueAttributes");
        }
        other => panic!("expected a rejected GetQueueAttributes, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_in_flight_messages_are_counted() {
    let queue = create_queue(&unique("counts"), &[]).await;
    send(&queue, ["now-1".to_owned(), "now-2".to_owned()]).await;
    queue
        .client()
        .send_message()
        .queue_url(queue.queue_url())
        .message_body("later")
        .delay_seconds(60)
        .send()
        .await
        .expect("send delayed");
    let request = ReceiveRequest {
        max_messages: 1,
        wait_time: Duration::ZERO,
        visibility_timeout: Some(Duration::from_secs(30)),
        attempt_id: None,
    };
    assert_eq!(queue.receive(request).await.expect("receive").len(), 1);
    assert_eq!(counts(&queue).await, (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_goes_through_sqs_send_then_delete() {
    let queue = create_queue(&unique("continue"), &[]).await;
    send(&queue, ["part-1".to_owned()]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler_seen = Arc::clone(&seen);
    let done = Arc::clone(&seen);
    let report = Worker::builder(InTurn::new(&queue))
        .wait_time(Duration::from_secs(1))
        .handler(move |message: Message| {
            let seen = Arc::clone(&handler_seen);
            async move {
                let body = message.body().to_owned();
                seen.lock()
                    .expect("lock")
                    .push((body.clone(), message.receive_count()));
                match body.as_str() {
                    "part-1" => Outcome::Continue(spotq::backend::SendMessage::new("part-2")),
                    _ => Outcome::Ack,
                }
            }
        })
        .run_until(until(Duration::from_secs(20), move || {
            done.lock().expect("lock").len() == 2
        }))
        .await
        .expect("worker runs");

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, [("part-1".to_owned(), 1), ("part-2".to_owned(), 1)]);
    assert_eq!((report.continued, report.deleted), (1, 2));
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_fifo_queue_a_continuation_keeps_its_message_group() {
    let queue = create_queue(
        &format!("{}.fifo", unique("group")),
        &[
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "true".to_owned(),
            ),
        ],
    )
    .await;
    assert!(queue.attributes().await.expect("attributes").fifo);
    queue
        .client()
        .send_message()
        .queue_url(queue.queue_url())
        .message_body("step-1")
        .message_group_id("tenant-7")
        .send()
        .await
        .expect("send");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (handler_seen, done) = (Arc::clone(&seen), Arc::clone(&seen));
    Worker::builder(InTurn::new(&queue))
        .wait_time(Duration::from_secs(1))
        .handler(move |message: Message| {
            let seen = Arc::clone(&handler_seen);
            async move {
                let group = message.attributes().get("MessageGroupId").cloned();
                seen.lock()
                    .expect("lock")
                    .push((message.body().to_owned(), group));
                match message.body() {
                    "step-1" => Outcome::Continue(spotq::backend::SendMessage::new("step-2")),
                    _ => Outcome::Ack,
                }
            }
        })
        .run_until(until(Duration::from_secs(20), move || {
            done.lock().expect("lock").len() == 2
        }))
        .await
        .expect("worker runs");

    let group = Some("tenant-7".to_owned());
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            ("step-1".to_owned(), group.clone()),
            ("step-2".to_owned(), group)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_content_based_deduplication_a_continuation_equal_to_its_message_is_stored() {
    let queue = create_queue(
        &format!("{}.fifo", unique("checkpoint")),
        &[
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "true".to_owned(),
            ),
        ],
    )
    .await;
    assert!(
        queue
            .attributes()
            .await
            .expect("attributes")
            .content_based_deduplication
    );
    queue
        .send(SendMessage::new("checkpoint").group_id("job-1"))
        .await
        .expect("send");
    // A job that checkpoints before it made progress: the continuation's body is its
    // message's body, whose SHA-256 SQS already holds as a deduplication id.
    let ids = Arc::new(Mutex::new(Vec::new()));
    let (handler_ids, done) = (Arc::clone(&ids), Arc::clone(&ids));
    let report = Worker::builder(queue.clone())
        .pollers(1)
        .wait_time(Duration::from_secs(1))
        .handler(move |message: Message| {
            let ids = Arc::clone(&handler_ids);
            async move {
                let mut ids = ids.lock().expect("lock");
                ids.push(message.id().to_owned());
                if ids.len() == 1 {
                    Outcome::Continue(SendMessage::new(message.body()))
                } else {
                    Outcome::Ack
                }
            }
        })
        .run_until(until(Duration::from_secs(20), move || {
            done.lock().expect("lock").len() == 2
        }))
        .await
        .expect("worker runs");

    let ids = ids.lock().expect("lock").clone();
    assert_eq!(
        ids.len(),
        2,
        "the continuation was dropped as a duplicate: {report:?}"
    );
    assert_ne!(ids[0], ids[1], "the continuation, not a redelivery");
    assert_eq!((report.continued, report.deleted), (1, 2), "{report:?}");
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

/// A FIFO queue without content-based deduplication (every send names its
/// deduplication id), with a short visibility timeout.
async fn fifo_queue(prefix: &str) -> SqsBackend {
    create_queue(
        &format!("{}.fifo", unique(prefix)),
        &[
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "false".to_owned(),
            ),
            (QueueAttributeName::VisibilityTimeout, "2".to_owned()),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_messages_come_back_with_their_group_deduplication_id_and_sequence_number() {
    let queue = fifo_queue("fifo-attributes").await;
    let attributes = queue.attributes().await.expect("attributes");
    assert!(attributes.fifo);
    assert!(!attributes.content_based_deduplication);
    for (body, deduplication_id) in [("first", "d-1"), ("second", "d-2")] {
        queue
            .send(
                SendMessage::new(body)
                    .group_id("tenant-7")
                    .deduplication_id(deduplication_id),
            )
            .await
            .expect("send");
    }
    let request = ReceiveRequest {
        max_messages: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: None,
        attempt_id: Some(spotq::backend::ReceiveAttemptId::random()),
    };
    let received = queue.receive(request).await.expect("receive");
    let bodies: Vec<_> = received
        .iter()
        .map(|message| message.body.as_str())
        .collect();
    assert_eq!(bodies, ["first", "second"], "in order, both of one group");
    for (message, deduplication_id) in received.iter().zip(["d-1", "d-2"]) {
        let attribute = |name: &str| message.attributes.get(name).map(String::as_str);
        assert_eq!(attribute("MessageGroupId"), Some("tenant-7"));
        assert_eq!(attribute("MessageDeduplicationId"), Some(deduplication_id));
        let sequence = attribute("SequenceNumber").expect("a sequence number");
        assert!(
            !sequence.is_empty() && sequence.bytes().all(|byte| byte.is_ascii_digit()),
            "{sequence:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_fifo_queue_without_content_based_deduplication_a_continuation_is_deduplicated_by_its_message()
 {
    let queue = fifo_queue("fifo-continue").await;
    let first = queue
        .send(
            SendMessage::new("step-1")
                .group_id("tenant-7")
                .deduplication_id("step-1"),
        )
        .await
        .expect("send");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (handler_seen, done) = (Arc::clone(&seen), Arc::clone(&seen));
    let report = Worker::builder(InTurn::new(&queue))
        .wait_time(Duration::from_secs(1))
        .handler(move |message: Message| {
            let seen = Arc::clone(&handler_seen);
            async move {
                let attribute = |name: &str| message.attributes().get(name).cloned();
                seen.lock().expect("lock").push((
                    message.body().to_owned(),
                    attribute("MessageGroupId"),
                    attribute("MessageDeduplicationId"),
                ));
                match message.body() {
                    // Neither group nor deduplication id: the worker sets both.
                    "step-1" => Outcome::Continue(SendMessage::new("step-2")),
                    _ => Outcome::Ack,
                }
            }
        })
        .run_until(until(Duration::from_secs(20), move || {
            done.lock().expect("lock").len() == 2
        }))
        .await
        .expect("worker runs");

    assert_eq!((report.continued, report.failed), (1, 0), "{report:?}");
    let seen = seen.lock().expect("lock").clone();
    let group = Some("tenant-7".to_owned());
    assert_eq!(
        seen,
        [
            (
                "step-1".to_owned(),
                group.clone(),
                Some("step-1".to_owned())
            ),
            ("step-2".to_owned(), group, Some(first)),
        ]
    );
}

/// The `ReceiveRequestAttemptId` of each receive the proxy saw, in order.
async fn attempt_ids(proxy: &FaultProxy) -> Vec<Option<String>> {
    proxy
        .bodies("ReceiveMessage")
        .await
        .iter()
        .map(|body| {
            let request: serde_json::Value = serde_json::from_str(body).expect("a JSON request");
            request["ReceiveRequestAttemptId"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_receive_retried_after_a_lost_answer_sends_the_same_attempt_id() {
    let queue = fifo_queue("fifo-attempt").await;
    queue
        .send(
            SendMessage::new("only")
                .group_id("tenant-7")
                .deduplication_id("only"),
        )
        .await
        .expect("send");
    // The SDK tries a call three times: the first three answers lost fail the
    // worker's first receive; the worker retries it, and the SDK's second try of that
    // is answered.
    let proxy = FaultProxy::start(&["ReceiveMessage:lost:count=4"], 11);
    let through = proxy.backend(&queue).await;
    let handled = Arc::new(AtomicU32::new(0));
    let handler_handled = Arc::clone(&handled);
    let report = Worker::builder(through)
        .concurrency(1)
        .wait_time(Duration::from_secs(1))
        .handler(move |_message: Message| {
            handler_handled.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .run_until({
            let handled = Arc::clone(&handled);
            let proxy = &proxy;
            async move {
                until(Duration::from_secs(30), move || {
                    handled.load(Ordering::SeqCst) == 1
                })
                .await;
                // One more receive after the answered one: four lost, the answered one,
                // and the next.
                let waiting = Instant::now();
                while attempt_ids(proxy).await.len() < 6 {
                    assert!(
                        waiting.elapsed() < Duration::from_secs(30),
                        "no receive after the answered one: {:?}",
                        attempt_ids(proxy).await
                    );
                    sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .await
        .expect("worker runs");

    let stats = proxy.stats().await;
    assert_eq!(stats.faults("ReceiveMessage", "lost"), 4, "{stats:?}");
    assert_eq!(report.deleted, 1);
    let ids = attempt_ids(&proxy).await;
    assert!(ids.len() >= 6, "{ids:?}");
    let lost = ids[0]
        .clone()
        .expect("a FIFO receive carries an attempt id");
    assert!(
        ids[..5]
            .iter()
            .all(|id| id.as_deref() == Some(lost.as_str())),
        "the SDK's retries and the worker's carry the lost attempt's id: {ids:?}"
    );
    assert!(
        ids[5..]
            .iter()
            .all(|id| id.as_ref().is_some_and(|id| *id != lost)),
        "after an answer, a new attempt: {ids:?}"
    );
    // moto does not replay attempts: the message the lost answer held came back after
    // its visibility timeout.
    assert_eq!(counts(&queue).await, (0, 0, 0));
    assert!(proxy.stop());
}

/// Bodies the `#[spotq::worker]` batch handler below has seen, with their receive counts.
static BATCH_SEEN: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// Fails every `bad-*` message on its first receive, through Lambda's response type.
/// One poller: its receives reach moto one at a time.
#[spotq::worker(
    queue = "spotq-macro-batch",
    pollers = 1,
    batch_size = 10,
    wait_time = "1s",
    retry_backoff = ("1s", "1s")
)]
async fn handle_batch(
    messages: Vec<Message>,
) -> spotq::handler::lambda_events::sqs::SqsBatchResponse {
    let mut response = spotq::handler::lambda_events::sqs::SqsBatchResponse::default();
    let mut seen = BATCH_SEEN.lock().expect("lock");
    for message in messages {
        seen.push((message.body().to_owned(), message.receive_count()));
        if message.body().starts_with("bad") && message.receive_count() == 1 {
            let mut failure = spotq::handler::lambda_events::sqs::BatchItemFailure::default();
            failure.item_identifier = message.id().to_owned();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_macro_batch_worker_connects_by_name_and_retries_only_its_failed_items() {
    let _endpoint = emulator_endpoint();
    // The attribute's spec, its queue named as the attribute names it but unique to this
    // run: moto outlives test runs, and two runs at once would share a fixed name.
    let spec = handle_batch_worker();
    assert_eq!(spec.queue(), &QueueSource::name("spotq-macro-batch"));
    let name: &'static str = Box::leak(unique("spotq-macro-batch").into_boxed_str());
    let spec = WorkerSpec::batch(
        QueueSource::name(name),
        spec.config().clone(),
        spec.batch_handler().expect("a batch handler").clone(),
    );
    let queue = create_queue(name, &[]).await;
    let bodies: Vec<String> = (0..20)
        .map(|n| {
            if n % 4 == 0 {
                format!("bad-{n}")
            } else {
                format!("ok-{n}")
            }
        })
        .collect();
    send(&queue, bodies.clone()).await;

    let shutdown = spotq::shutdown::ShutdownHandle::new();
    let stop = shutdown.clone();
    let watcher = tokio::spawn(async move {
        until(Duration::from_secs(40), || {
            let seen = BATCH_SEEN.lock().expect("lock");
            seen.iter()
                .filter(|(body, count)| body.starts_with("ok") || *count == 2)
                .count()
                >= 20
        })
        .await;
        stop.begin();
    });
    let reports = spotq::shutdown::run_with([spec], shutdown)
        .await
        .expect("the spec connects to the queue by name and runs");
    watcher.await.expect("watcher");

    let report = &reports[0];
    assert_eq!((report.deleted, report.failed), (20, 5));
    let seen = BATCH_SEEN.lock().expect("lock").clone();
    for body in &bodies {
        let receives: Vec<u32> = seen
            .iter()
            .filter(|(seen_body, _)| seen_body == body)
            .map(|(_, count)| *count)
            .collect();
        let expected: &[u32] = if body.starts_with("bad") {
            &[1, 2]
        } else {
            &[1]
        };
        assert_eq!(receives, expected, "{body}");
    }
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

/// Without heartbeats, a message whose handler outlives its visibility timeout is
/// received again by another poller; the first handler's late delete carries a stale
/// receipt handle, which a standard queue accepts. It counts as a stale receipt, not as a
/// second delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_delete_after_the_visibility_lapsed_counts_as_stale_not_deleted() {
    let queue = create_queue(
        &unique("lapsed"),
        &[(QueueAttributeName::VisibilityTimeout, "2".to_owned())],
    )
    .await;
    send(&queue, ["slow".to_owned()]).await;
    let runs = Arc::new(AtomicU32::new(0));
    let (handler_runs, done) = (Arc::clone(&runs), Arc::clone(&runs));
    let report = Worker::builder(InTurn::new(&queue))
        .pollers(2)
        .concurrency(2)
        .wait_time(Duration::from_secs(1))
        .heartbeat(Heartbeat::Off)
        .handler(move |message: Message| {
            let runs = Arc::clone(&handler_runs);
            async move {
                if message.receive_count() == 1 {
                    sleep(Duration::from_secs(4)).await;
                }
                runs.fetch_add(1, Ordering::SeqCst);
            }
        })
        .run_until(async move {
            until(Duration::from_secs(20), || done.load(Ordering::SeqCst) == 2).await;
            sleep(Duration::from_millis(500)).await;
        })
        .await
        .expect("worker runs");
    assert_eq!(report.received, 2, "received again after 2 s: {report:?}");
    assert_eq!(
        (report.deleted, report.stale_receipts),
        (1, 1),
        "the first handler's delete came after its visibility lapsed: {report:?}"
    );
    assert_eq!(counts(&queue).await, (0, 0, 0));
}
