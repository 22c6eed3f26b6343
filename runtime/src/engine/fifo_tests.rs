//! The engine on FIFO embedded queues, on paused time: how it tells a FIFO queue, the
//! attempt ids of its receives, the deduplication ids of its continuations.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{Instant, sleep};

use crate::EmbeddedQueue;
use crate::backend::Operation;
use crate::backend::fifo::sha256_hex;
use crate::backend::{
    Backend, Intercept, Intercepted, QueueAttributes, ReceiveRequest, ReceivedMessage, SendMessage,
};
use crate::error::BackendError;
use crate::{Message, Outcome, Worker};

const VISIBILITY: Duration = Duration::from_secs(30);

/// An embedded queue under another name and `FifoQueue` attribute, recording every
/// receive request.
#[derive(Debug)]
struct Observed {
    queue: EmbeddedQueue,
    name: String,
    fifo_attribute: bool,
    requests: Mutex<Vec<ReceiveRequest>>,
}

impl Observed {
    fn new(queue: &EmbeddedQueue, name: &str, fifo_attribute: bool) -> Arc<Self> {
        Arc::new(Self {
            queue: queue.clone(),
            name: name.to_owned(),
            fifo_attribute,
            requests: Mutex::default(),
        })
    }

    fn requests(&self) -> MutexGuard<'_, Vec<ReceiveRequest>> {
        self.requests.lock().expect("the requests' lock")
    }
}

#[async_trait]
impl Intercept for Observed {
    type Inner = EmbeddedQueue;

    fn inner(&self) -> &EmbeddedQueue {
        &self.queue
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        self.requests().push(request);
        self.queue.receive(request).await
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        let attributes = self.queue.attributes().await?;
        Ok(QueueAttributes {
            fifo: self.fifo_attribute,
            ..attributes
        })
    }
}

/// What a handler saw of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    id: String,
    body: String,
    receive_count: u32,
    group: Option<String>,
    deduplication_id: Option<String>,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, message: &Message) {
    let attribute = |name: &str| message.attributes().get(name).cloned();
    log.lock().expect("the log's lock").push(Seen {
        id: message.id().to_owned(),
        body: message.body().to_owned(),
        receive_count: message.receive_count(),
        group: attribute("MessageGroupId"),
        deduplication_id: attribute("MessageDeduplicationId"),
        at: Instant::now(),
    });
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().expect("the log's lock").clone()
}

/// Resolves once `log` holds `count` entries and a second has passed (so a receive
/// that follows can happen), or after two minutes of virtual time.
async fn logged(log: Log, count: usize) {
    for _ in 0..1200 {
        if log.lock().expect("the log's lock").len() >= count {
            sleep(Duration::from_secs(1)).await;
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

fn fifo_queue(name: &str, content_based_deduplication: bool) -> EmbeddedQueue {
    let builder = EmbeddedQueue::builder(name)
        .fifo()
        .visibility_timeout(VISIBILITY);
    let builder = if content_based_deduplication {
        builder.content_based_deduplication()
    } else {
        builder
    };
    builder.build().expect("a valid FIFO queue")
}

/// Runs a worker with `pollers` on `backend` that acks every message, until `count`
/// were handled.
async fn ack_all(backend: Arc<Observed>, pollers: usize, count: usize) -> Vec<Seen> {
    let log = Log::default();
    let handler_log = Arc::clone(&log);
    Worker::builder(Intercepted(backend))
        .pollers(pollers)
        .handler(move |message: Message| {
            record(&handler_log, &message);
            async {}
        })
        .run_until(logged(Arc::clone(&log), count))
        .await
        .expect("worker runs");
    seen(&log)
}

fn send(queue: &EmbeddedQueue, group: &str, body: &str) -> String {
    queue
        .send_with(
            SendMessage::new(body)
                .group_id(group)
                .deduplication_id(body),
        )
        .expect("accepted")
}

#[tokio::test(start_paused = true)]
async fn a_receive_whose_answer_was_lost_is_retried_with_the_same_attempt_id() {
    let queue = fifo_queue("lost.fifo", false);
    let id = send(&queue, "g", "first");
    queue.faults().lose_next_responses(Operation::Receive, 1);
    let observed = Observed::new(&queue, "lost.fifo", true);
    let started = Instant::now();

    // Two pollers share the slots: the retry may have fewer than the lost attempt.
    let handled = ack_all(Arc::clone(&observed), 2, 1).await;

    assert_eq!(queue.faults().injected(Operation::Receive).lost, 1);
    let [message] = handled.as_slice() else {
        panic!("handled once: {handled:?}");
    };
    // The retry got the message the lost answer held, as the same receive: no wait for
    // its visibility timeout, no second receive counted.
    assert_eq!(message.id, id);
    assert_eq!(message.receive_count, 1);
    assert!(
        message.at - started < VISIBILITY / 2,
        "handled after {:?}",
        message.at - started
    );
    assert_eq!(queue.stats().replayed_receives, 1);
    let attempts: Vec<_> = observed
        .requests()
        .iter()
        .map(|request| request.attempt_id)
        .collect();
    assert!(attempts.len() >= 3, "{attempts:?}");
    assert!(attempts.iter().all(Option::is_some), "{attempts:?}");
    let uses = |id| attempts.iter().filter(|attempt| **attempt == id).count();
    // The lost attempt's id is sent twice; every other receive has its own.
    assert_eq!(uses(attempts[0]), 2, "{attempts:?}");
    assert!(
        attempts[1..]
            .iter()
            .all(|&id| id == attempts[0] || uses(id) == 1),
        "{attempts:?}"
    );
    assert_eq!(queue.counts().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_receive_starts_a_fresh_attempt_and_a_failed_one_does_not() {
    let queue = fifo_queue("faults.fifo", false);
    send(&queue, "g", "only");
    // A call consumes one armed fault, the throttle first.
    queue.faults().throttle_next(Operation::Receive, 1);
    queue.faults().fail_next(Operation::Receive, 1);
    let observed = Observed::new(&queue, "faults.fifo", true);

    let handled = ack_all(Arc::clone(&observed), 1, 1).await;

    assert_eq!(handled.len(), 1);
    let attempts: Vec<_> = observed
        .requests()
        .iter()
        .map(|request| request.attempt_id)
        .collect();
    assert!(attempts.len() >= 3, "{attempts:?}");
    assert_ne!(attempts[0], attempts[1], "throttled: a fresh id");
    assert_eq!(attempts[1], attempts[2], "failed: the same id again");
}

#[tokio::test(start_paused = true)]
async fn a_standard_queue_s_receives_carry_no_attempt_id() {
    let queue = EmbeddedQueue::new("standard");
    queue.send("one");
    let observed = Observed::new(&queue, "standard", false);
    ack_all(Arc::clone(&observed), 1, 1).await;
    let requests = observed.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|request| request.attempt_id.is_none()));
}

/// Handles `step-1` by handing on `step-2` (naming neither group nor deduplication id)
/// and acks `step-2`; returns what the handler saw.
async fn hand_on_once(backend: Arc<Observed>) -> Vec<Seen> {
    let log = Log::default();
    let handler_log = Arc::clone(&log);
    let report = Worker::builder(Intercepted(backend))
        .handler(move |message: Message| {
            record(&handler_log, &message);
            let outcome = match message.body() {
                "step-1" => Outcome::Continue(SendMessage::new("step-2")),
                _ => Outcome::Ack,
            };
            async move { outcome }
        })
        .run_until(logged(Arc::clone(&log), 2))
        .await
        .expect("worker runs");
    assert_eq!((report.continued, report.failed), (1, 0), "{report:?}");
    seen(&log)
}

#[tokio::test(start_paused = true)]
async fn a_fifo_queue_is_known_by_its_name_or_its_attribute() {
    // (the name the worker sees, the `FifoQueue` attribute it reads)
    for (name, fifo_attribute) in [("orders.fifo", false), ("orders", true)] {
        let queue = fifo_queue("orders.fifo", false);
        let first = send(&queue, "tenant-7", "step-1");
        let seen = hand_on_once(Observed::new(&queue, name, fifo_attribute)).await;

        // A worker that took the queue for a standard one would have sent the
        // continuation without group or deduplication id, and the queue refused it.
        let bodies: Vec<_> = seen.iter().map(|seen| seen.body.as_str()).collect();
        assert_eq!(bodies, ["step-1", "step-2"], "{name}");
        let step_2 = &seen[1];
        assert_eq!(step_2.group.as_deref(), Some("tenant-7"), "{name}");
        assert_eq!(
            step_2.deduplication_id.as_deref(),
            Some(first.as_str()),
            "{name}: deduplicated by the message it continues"
        );
        assert_eq!(queue.counts().total(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn with_content_based_deduplication_a_continuation_is_still_deduplicated_by_its_message() {
    let queue = fifo_queue("content.fifo", true);
    let first = queue
        .send_with(SendMessage::new("step-1").group_id("tenant-7"))
        .expect("accepted");
    let seen = hand_on_once(Observed::new(&queue, "content.fifo", true)).await;
    let step_2 = &seen[1];
    assert_eq!(step_2.body, "step-2");
    assert_eq!(step_2.group.as_deref(), Some("tenant-7"));
    assert_eq!(
        step_2.deduplication_id.as_deref(),
        Some(first.as_str()),
        "the message's id, not the body's SHA-256 ({})",
        sha256_hex(b"step-2")
    );
}

#[tokio::test(start_paused = true)]
async fn with_content_based_deduplication_a_continuation_equal_to_its_message_is_not_dropped() {
    let queue = fifo_queue("checkpoint.fifo", true);
    queue
        .send_with(SendMessage::new("checkpoint").group_id("g"))
        .expect("accepted");
    let log = Log::default();
    let handler_log = Arc::clone(&log);
    // A job that checkpoints before making progress: its continuation's body is the
    // body of the message it continues. The second run acks.
    let report = Worker::builder(Intercepted(Observed::new(&queue, "checkpoint.fifo", true)))
        .handler(move |message: Message| {
            record(&handler_log, &message);
            let outcome = if seen(&handler_log).len() == 1 {
                Outcome::Continue(SendMessage::new(message.body()))
            } else {
                Outcome::Ack
            };
            async move { outcome }
        })
        .run_until(logged(Arc::clone(&log), 2))
        .await
        .expect("worker runs");
    let runs = seen(&log);
    assert_eq!(
        runs.iter()
            .map(|seen| seen.body.as_str())
            .collect::<Vec<_>>(),
        ["checkpoint", "checkpoint"],
        "the continuation was dropped as a duplicate of its message: {report:?}"
    );
    assert_ne!(runs[0].id, runs[1].id, "two messages, not one redelivered");
    assert_eq!(queue.stats().deduplicated_sends, 0);
    assert_eq!(queue.counts().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_continuation_handed_on_twice_is_sent_once() {
    let queue = fifo_queue("twice.fifo", false);
    send(&queue, "g", "step-1");
    // The first delete of step-1 is refused: it comes back after its visibility timeout
    // and is handed on again, within the deduplication window.
    queue.faults().reject_next(Operation::DeleteBatch, 1);
    let log = Log::default();
    let handler_log = Arc::clone(&log);
    let report = Worker::builder(Intercepted(Observed::new(&queue, "twice.fifo", true)))
        .handler(move |message: Message| {
            record(&handler_log, &message);
            let outcome = match message.body() {
                "step-1" => Outcome::Continue(SendMessage::new("step-2")),
                _ => Outcome::Ack,
            };
            async move { outcome }
        })
        .run_until(logged(Arc::clone(&log), 3))
        .await
        .expect("worker runs");
    let bodies: Vec<_> = seen(&log).into_iter().map(|seen| seen.body).collect();
    assert_eq!(bodies.iter().filter(|body| *body == "step-1").count(), 2);
    assert_eq!(
        bodies.iter().filter(|body| *body == "step-2").count(),
        1,
        "{bodies:?}"
    );
    assert_eq!(report.continued, 2);
    assert_eq!(queue.stats().deduplicated_sends, 1);
}
