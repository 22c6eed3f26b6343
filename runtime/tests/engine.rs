//! The engine on the embedded queue, under paused tokio time: what a worker promises
//! about deletes, retries, dead letters, heartbeats, permits, batching, failures and
//! shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use spotq::backend::Operation;
use spotq::backend::{
    Backend, EntryResult, Intercept, Intercepted, QueueAttributes, ReceiptHandle, ReceiveRequest,
    ReceivedMessage, SendMessage, VisibilityChange,
};
use spotq::{
    EmbeddedQueue, Error, Message, Outcome, Worker, backend::BackendError, config::Backoff,
    config::Heartbeat, config::RetryPolicy, shutdown::ShutdownHandle, telemetry::health::Health,
    testing::run_until_drained,
};
use tokio::time::{Instant, sleep};

/// Records the virtual instant of every handler call, per body.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<String, Vec<Instant>>>>);

impl Calls {
    fn record(&self, message: &Message) {
        let mut calls = self.0.lock().expect("lock");
        calls
            .entry(message.body().to_owned())
            .or_default()
            .push(Instant::now());
    }

    fn of(&self, body: &str) -> Vec<Instant> {
        self.0
            .lock()
            .expect("lock")
            .get(body)
            .cloned()
            .unwrap_or_default()
    }

    fn counts(&self) -> Vec<usize> {
        self.0
            .lock()
            .expect("lock")
            .values()
            .map(Vec::len)
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn each_successful_message_is_deleted_exactly_once() {
    let queue = EmbeddedQueue::new("once");
    queue.send_many((0..500).map(|n| n.to_string()));
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(32)
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&message);
                sleep(Duration::from_millis(fastrand::u64(1..50))).await;
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    let counts = calls.counts();
    assert_eq!(counts.len(), 500);
    assert!(
        counts.iter().all(|count| *count == 1),
        "a message was handled twice"
    );
    assert_eq!(
        (report.received, report.succeeded, report.deleted),
        (500, 500, 500)
    );
    assert_eq!(report.stale_receipts + report.delete_failed, 0);
    let stats = queue.stats();
    assert_eq!(stats.messages_deleted, 500);
    assert_eq!(
        stats.delete_batch_entries, 500,
        "no message was deleted twice"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_then_reach_the_dead_letter_queue() {
    let dead_letters = EmbeddedQueue::new("dlq");
    let queue = EmbeddedQueue::builder("poison")
        .visibility_timeout(Duration::from_secs(300))
        .redrive(&dead_letters, 4)
        .build()
        .expect("queue");
    queue.send("poison");
    let calls = Calls::default();
    let recorder = calls.clone();
    let backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(30),
        jitter: false,
    };
    let worker = Worker::builder(queue.clone())
        .retry(RetryPolicy::Backoff(backoff))
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&message);
                Err::<(), _>(format!("cannot handle attempt {}", message.receive_count()))
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    let attempts = calls.of("poison");
    assert_eq!(attempts.len(), 4, "handled maxReceiveCount times");
    let gaps: Vec<u64> = attempts
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).as_secs())
        .collect();
    assert_eq!(
        gaps,
        [10, 20, 30],
        "exponential backoff, capped, far below the 300 s timeout"
    );
    assert_eq!((report.failed, report.retried, report.deleted), (4, 4, 0));
    assert_eq!(dead_letters.counts().visible, 1);
    assert_eq!(queue.stats().messages_dead_lettered, 1);
}

#[tokio::test(start_paused = true)]
async fn leaving_failures_to_the_visibility_timeout_changes_nothing() {
    let queue = EmbeddedQueue::builder("timeout")
        .visibility_timeout(Duration::from_secs(45))
        .build()
        .expect("queue");
    queue.send("flaky");
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone())
        .retry(RetryPolicy::VisibilityTimeout)
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&message);
                if message.receive_count() == 1 {
                    Outcome::fail("once")
                } else {
                    Outcome::Ack
                }
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    let attempts = calls.of("flaky");
    assert_eq!(attempts.len(), 2);
    assert_eq!((attempts[1] - attempts[0]).as_secs(), 45);
    assert_eq!(report.retried, 0);
    assert_eq!(queue.stats().change_visibility_batch_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_handler_running_five_visibility_timeouts() {
    let queue = EmbeddedQueue::builder("long")
        .visibility_timeout(Duration::from_secs(10))
        .build()
        .expect("queue");
    queue.send("long job");
    let calls = Calls::default();
    let recorder = calls.clone();
    // Several pollers stand ready to receive the message again should it ever lapse.
    let worker = Worker::builder(queue.clone())
        .concurrency(8)
        .pollers(4)
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&message);
                sleep(Duration::from_secs(50)).await;
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    assert_eq!(calls.of("long job").len(), 1, "never received twice");
    // A heartbeat every 5 s (half the timeout) over 50 s.
    assert!(
        (9..=10).contains(&report.heartbeats),
        "heartbeats: {}",
        report.heartbeats
    );
    assert_eq!(report.deleted, 1);
    assert_eq!(report.stale_receipts, 0);
}

#[tokio::test(start_paused = true)]
async fn without_heartbeats_a_lapsed_message_is_received_again_and_its_stale_delete_is_counted() {
    let queue = EmbeddedQueue::builder("lapse")
        .visibility_timeout(Duration::from_secs(10))
        .build()
        .expect("queue");
    queue.send("slow");
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(4)
        .pollers(2)
        .heartbeat(Heartbeat::Off)
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&message);
                if message.receive_count() == 1 {
                    sleep(Duration::from_secs(25)).await;
                }
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker survives a stale receipt");

    assert_eq!(calls.of("slow").len(), 2);
    assert_eq!(
        report.stale_receipts, 1,
        "the first handler's delete used a stale handle"
    );
    assert_eq!(report.deleted, 1);
}

/// A backend over the embedded queue that watches what the engine asks of it: with a
/// `concurrency` above 0 it checks the engine never receives more than it can start,
/// and it records every visibility change.
#[derive(Debug)]
struct Spy {
    queue: EmbeddedQueue,
    concurrency: usize,
    held: Arc<AtomicUsize>,
    max_held: AtomicUsize,
    largest_request: AtomicUsize,
    /// Receives that asked for more than the free permits, for the test to check: a
    /// panic in `receive` would only end the poller that called it.
    overasked: Mutex<Vec<String>>,
    changes: Mutex<Vec<(Instant, Duration)>>,
}

impl Spy {
    fn new(queue: &EmbeddedQueue) -> Self {
        Self {
            queue: queue.clone(),
            concurrency: 0,
            held: Arc::default(),
            max_held: AtomicUsize::new(0),
            largest_request: AtomicUsize::new(0),
            overasked: Mutex::default(),
            changes: Mutex::default(),
        }
    }
}

#[async_trait]
impl Backend for Spy {
    fn name(&self) -> &str {
        self.queue.name()
    }

    fn receive_cancel_safe(&self) -> bool {
        self.queue.receive_cancel_safe()
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        self.largest_request
            .fetch_max(request.max_messages, Ordering::SeqCst);
        let held = self.held.load(Ordering::SeqCst);
        if self.concurrency > 0 && held + request.max_messages > self.concurrency {
            self.overasked.lock().expect("overasked").push(format!(
                "asked for {} while holding {held} of {}",
                request.max_messages, self.concurrency
            ));
        }
        let messages = self.queue.receive(request).await?;
        let held = self.held.fetch_add(messages.len(), Ordering::SeqCst) + messages.len();
        self.max_held.fetch_max(held, Ordering::SeqCst);
        Ok(messages)
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        self.queue.delete_batch(handles).await
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let now = Instant::now();
        self.changes
            .lock()
            .expect("changes")
            .extend(changes.iter().map(|change| (now, change.timeout)));
        self.queue.change_visibility_batch(changes).await
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        self.queue.attributes().await
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        Backend::send(&self.queue, message).await
    }
}

#[tokio::test(start_paused = true)]
async fn never_more_handlers_or_received_messages_than_permits() {
    let queue = EmbeddedQueue::new("permits");
    queue.send_many((0..300).map(|n| n.to_string()));
    let held = Arc::new(AtomicUsize::new(0));
    let backend = Arc::new(Spy {
        concurrency: 7,
        held: Arc::clone(&held),
        ..Spy::new(&queue)
    });
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let (handler_running, handler_max) = (Arc::clone(&running), Arc::clone(&max_running));
    let worker = Worker::builder(Arc::clone(&backend))
        .concurrency(7)
        .pollers(3)
        .handler(move |_message: Message| {
            let (running, max_running, held) = (
                Arc::clone(&handler_running),
                Arc::clone(&handler_max),
                Arc::clone(&held),
            );
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                sleep(Duration::from_millis(fastrand::u64(1..30))).await;
                running.fetch_sub(1, Ordering::SeqCst);
                // The handler is done with its message before its permit is returned.
                held.fetch_sub(1, Ordering::SeqCst);
            }
        });
    run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    assert_eq!(
        max_running.load(Ordering::SeqCst),
        7,
        "the bound is reached, never passed"
    );
    let overasked = backend.overasked.lock().expect("overasked").clone();
    assert!(overasked.is_empty(), "{overasked:?}");
    assert_eq!(backend.max_held.load(Ordering::SeqCst), 7);
    assert_eq!(
        backend.largest_request.load(Ordering::SeqCst),
        7,
        "asks for min(10, free permits)"
    );
}

#[tokio::test(start_paused = true)]
async fn deletes_are_batched() {
    let queue = EmbeddedQueue::new("batched");
    queue.send_many((0..1000).map(|n| n.to_string()));
    let worker = Worker::builder(queue.clone())
        .concurrency(100)
        .handler(|_message: Message| async {});
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    let stats = queue.stats();
    assert_eq!(report.deleted, 1000);
    assert_eq!(stats.delete_batch_entries, 1000);
    assert!(
        stats.delete_batch_calls <= 110,
        "{} delete calls for 1000 messages",
        stats.delete_batch_calls
    );
    let per_message = stats.api_calls() as f64 / 1000.0;
    assert!(per_message <= 0.22, "{per_message:.3} requests per message");
}

#[tokio::test(start_paused = true)]
async fn panics_and_timeouts_are_failures_not_crashes() {
    let queue = EmbeddedQueue::new("faulty");
    queue.send_many(["panic", "hang", "fine"].map(str::to_owned));
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(4)
        .handler_timeout(Duration::from_secs(5))
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(1))
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&message);
                let first = message.receive_count() == 1;
                match message.body() {
                    "panic" if first => panic!("handler bug"),
                    "hang" if first => sleep(Duration::from_secs(3600)).await,
                    _ => {}
                }
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker keeps running");

    assert_eq!(calls.of("panic").len(), 2);
    assert_eq!(calls.of("hang").len(), 2);
    let hang = calls.of("hang");
    assert!(
        hang[1] - hang[0] >= Duration::from_secs(5),
        "timed out after 5 s"
    );
    assert!(
        hang[1] - hang[0] < Duration::from_secs(10),
        "then retried after the backoff"
    );
    assert_eq!((report.failed, report.succeeded, report.deleted), (2, 3, 3));
}

#[tokio::test(start_paused = true)]
async fn queue_errors_are_retried_with_backoff() {
    let queue = EmbeddedQueue::new("faults");
    queue.send_many((0..200).map(|n| n.to_string()));
    queue.faults().throttle_next(Operation::Receive, 3);
    queue.faults().fail_next(Operation::Receive, 2);
    queue.faults().fail_next(Operation::DeleteBatch, 2);
    queue.faults().throttle_next(Operation::DeleteBatch, 1);
    queue.faults().fail_next_entries(Operation::DeleteBatch, 5);
    let worker = Worker::builder(queue.clone())
        .concurrency(20)
        .handler(|_message: Message| async {});
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    assert_eq!(report.deleted, 200);
    assert_eq!(report.delete_failed, 0, "failed entries were sent again");
    assert_eq!(report.received, 200, "no message was received twice");
    assert_eq!(report.receive_errors, 5);
    let injected = queue.faults().injected(Operation::DeleteBatch);
    assert_eq!(
        (injected.failed, injected.throttled, injected.failed_entries),
        (2, 1, 5)
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_queue_is_not_polled_in_a_busy_loop() {
    let queue = EmbeddedQueue::new("idle");
    let started = Instant::now();
    Worker::builder(queue.clone())
        .pollers(1)
        .concurrency(1)
        .wait_time(Duration::ZERO)
        .handler(|_message: Message| async {})
        .run_until(sleep(Duration::from_secs(60)))
        .await
        .expect("worker runs");
    assert!(started.elapsed() >= Duration::from_secs(60));
    // Empty short polls back off to one every 1 to 2 s.
    let receives = queue.stats().receive_calls;
    assert!(
        receives <= 65,
        "{receives} receives in 60 s of an empty queue"
    );

    let receives_failing = EmbeddedQueue::new("failing");
    receives_failing
        .faults()
        .fail_next(Operation::Receive, u64::MAX);
    Worker::builder(receives_failing.clone())
        .pollers(1)
        .concurrency(1)
        .handler(|_message: Message| async {})
        .run_until(sleep(Duration::from_secs(60)))
        .await
        .expect("worker runs");
    let receives = receives_failing.stats().receive_calls;
    assert!(receives <= 40, "{receives} failing receives in 60 s");
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_short_handlers_finish_and_releases_the_rest() {
    let queue = EmbeddedQueue::builder("shutdown")
        .visibility_timeout(Duration::from_secs(60))
        .build()
        .expect("queue");
    queue.send_many(["short", "long"].map(str::to_owned));
    let deadlines = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&deadlines);
    let started = Instant::now();
    let report = Worker::builder(queue.clone())
        .concurrency(4)
        .stop_timeout(Duration::from_secs(30))
        .shutdown_grace(Duration::from_secs(20))
        .handler(move |message: Message| {
            let seen = Arc::clone(&seen);
            async move {
                let work = if message.body() == "short" { 15 } else { 3600 };
                sleep(Duration::from_secs(work)).await;
                seen.lock()
                    .expect("lock")
                    .push(message.context().deadline());
            }
        })
        .run_until(sleep(Duration::from_secs(1)))
        .await
        .expect("worker runs");

    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(21) && elapsed < Duration::from_secs(22),
        "{elapsed:?}"
    );
    assert_eq!(
        (report.succeeded, report.released, report.deleted),
        (1, 1, 1)
    );
    let deadline = deadlines.lock().expect("lock")[0].expect("deadline set at shutdown");
    assert_eq!(deadline - started, Duration::from_secs(21));
    // The released message is receivable at once, not after its 60 s timeout.
    assert_eq!(queue.counts().visible, 1);
    assert_eq!(queue.counts().not_visible, 0);
}

#[tokio::test(start_paused = true)]
async fn bad_settings_fail_before_any_queue_call() {
    let queue = EmbeddedQueue::new("config");
    let error = Worker::builder(queue.clone())
        .batch_size(11)
        .handler(|_message: Message| async {})
        .run_until(std::future::pending())
        .await
        .expect_err("batch size 11 is invalid");
    let Error::Config(config) = &error else {
        panic!("expected a config error, got {error:?}")
    };
    assert_eq!(config.setting, "batch_size");
    assert!(error.to_string().contains("batch_size"), "{error}");
    assert_eq!(queue.stats().api_calls(), 0);

    // Heartbeat against the queue's own timeout: checked after reading it, before receiving.
    let error = Worker::builder(queue.clone())
        .heartbeat(Heartbeat::Every(Duration::from_secs(45)))
        .handler(|_message: Message| async {})
        .run_until(std::future::pending())
        .await
        .expect_err("heartbeat beyond the 30 s queue timeout");
    assert!(
        matches!(&error, Error::Config(config) if config.setting == "heartbeat"),
        "{error}"
    );
    assert_eq!(queue.stats().receive_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn shutting_down_now_releases_running_handlers_at_once() {
    let queue = EmbeddedQueue::builder("now")
        .visibility_timeout(Duration::from_secs(60))
        .build()
        .expect("queue");
    queue.send_many(["a", "b", "c"].map(str::to_owned));
    let shutdown = ShutdownHandle::new();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&cancelled);
    let trigger = shutdown.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        trigger.begin();
        sleep(Duration::from_secs(2)).await;
        trigger.now();
    });
    let report = Worker::builder(queue.clone())
        .concurrency(4)
        .stop_timeout(Duration::from_secs(120))
        .handler(move |message: Message| {
            let seen = Arc::clone(&seen);
            async move {
                tokio::select! {
                    () = sleep(Duration::from_secs(3600)) => {}
                    () = message.context().cancelled() => {
                        seen.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                }
            }
        })
        .run_with(shutdown)
        .await
        .expect("worker runs");

    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "no wait for the 115 s grace"
    );
    assert_eq!((report.released, report.deleted), (3, 0));
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        3,
        "handlers saw Context::cancelled()"
    );
    assert_eq!(queue.counts().visible, 3, "released, receivable at once");
}

#[tokio::test(start_paused = true)]
async fn a_continuation_is_sent_before_the_original_is_deleted() {
    let queue = EmbeddedQueue::new("continue");
    queue.send("step:1");
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone()).handler(move |message: Message| {
        let recorder = recorder.clone();
        async move {
            recorder.record(&message);
            assert_eq!(message.receive_count(), 1, "continuations start afresh");
            let step: u32 = message.body()["step:".len()..].parse().expect("step");
            if step < 3 {
                Outcome::Continue(SendMessage::new(format!("step:{}", step + 1)))
            } else {
                Outcome::Ack
            }
        }
    });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    for step in ["step:1", "step:2", "step:3"] {
        assert_eq!(calls.of(step).len(), 1, "{step}");
    }
    assert_eq!(
        (report.continued, report.succeeded, report.deleted),
        (2, 1, 3)
    );
    assert_eq!(report.failed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_continuation_that_cannot_be_sent_deletes_nothing() {
    let queue = EmbeddedQueue::builder("continue-fails")
        .visibility_timeout(Duration::from_secs(60))
        .build()
        .expect("queue");
    queue.send("job");
    queue.faults().reject_next(Operation::Send, 1);
    let calls = Calls::default();
    let recorder = calls.clone();
    let worker = Worker::builder(queue.clone())
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(1))
        .handler(move |message: Message| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&message);
                if message.body() == "job" && message.receive_count() == 1 {
                    Outcome::Continue(SendMessage::new("rest of job"))
                } else {
                    Outcome::Ack
                }
            }
        });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    assert_eq!(
        calls.of("job").len(),
        2,
        "the original came back after the failed send"
    );
    assert!(calls.of("rest of job").is_empty());
    assert_eq!((report.continued, report.failed, report.deleted), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_long_job_checkpoints_when_its_task_is_stopping() {
    let queue = EmbeddedQueue::new("checkpoint");
    queue.send("0");
    let shutdown = ShutdownHandle::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(35)).await;
        trigger.begin();
    });
    let started = Instant::now();
    let report = Worker::builder(queue.clone())
        .handler(|message: Message| async move {
            let mut done: u64 = message.body().parse().expect("progress");
            loop {
                tokio::select! {
                    () = sleep(Duration::from_secs(10)) => done += 1,
                    () = message.context().stopping() => {
                        return Outcome::Continue(SendMessage::new(done.to_string()));
                    }
                }
            }
        })
        .run_with(shutdown)
        .await
        .expect("worker runs");

    assert!(
        started.elapsed() < Duration::from_secs(36),
        "no wait for the grace period"
    );
    assert_eq!(
        (report.continued, report.released, report.deleted),
        (1, 0, 1)
    );
    // The checkpoint is on the queue, visible, carrying the progress made.
    let request = ReceiveRequest {
        max_messages: 10,
        wait_time: Duration::ZERO,
        visibility_timeout: None,
        attempt_id: None,
    };
    let left = queue.receive(request).await.expect("receive");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body, "3");
}

#[tokio::test(start_paused = true)]
async fn release_jitter_spreads_released_messages_over_the_configured_window() {
    let queue = EmbeddedQueue::builder("jitter")
        .visibility_timeout(Duration::from_secs(300))
        .build()
        .expect("queue");
    queue.send_many((0..40).map(|n| n.to_string()));
    let shutdown = ShutdownHandle::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        trigger.now();
    });
    let report = Worker::builder(queue.clone())
        .concurrency(40)
        .release_jitter(Duration::from_secs(20))
        .handler(|_message: Message| std::future::pending::<()>())
        .run_with(shutdown)
        .await
        .expect("worker runs");
    assert_eq!(report.released, 40);

    let released_at = Instant::now();
    let mut visible_after = Vec::new();
    while visible_after.len() < 40 {
        let visible = queue.counts().visible as usize;
        visible_after.resize(visible.max(visible_after.len()), released_at.elapsed());
        sleep(Duration::from_millis(500)).await;
    }
    let last = *visible_after.iter().max().expect("40 releases");
    assert!(
        last <= Duration::from_secs(21),
        "all visible within the jitter window: {last:?}"
    );
    assert!(last >= Duration::from_secs(10), "not all at once: {last:?}");
    assert!(queue.counts().visible == 40);
}

#[tokio::test(start_paused = true)]
async fn shutting_down_now_before_anything_runs_stops_cleanly() {
    let queue = EmbeddedQueue::new("early");
    queue.send("left alone");
    let shutdown = ShutdownHandle::new();
    shutdown.now();
    let report = Worker::builder(queue.clone())
        .handler(|_message: Message| async {})
        .run_with(shutdown)
        .await
        .expect("worker stops");
    assert_eq!(report.deleted + report.released, report.received);
    assert_eq!(queue.counts().not_visible, 0, "nothing held after the run");
}

#[tokio::test(start_paused = true)]
async fn health_is_ready_while_receiving_and_not_live_when_a_receive_hangs() {
    let health = Health::default();
    let queue = EmbeddedQueue::new("health");
    let shutdown = ShutdownHandle::new();
    let (probe, trigger, stalled) = (health.clone(), shutdown.clone(), queue.clone());
    let observed = tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        let running = (probe.is_ready(), probe.is_live());
        // Every receive from now on hangs for 10 minutes: the pollers are wedged.
        stalled
            .faults()
            .set_latency(Operation::Receive, Some(Duration::from_secs(600)));
        sleep(Duration::from_secs(90)).await;
        let wedged = (probe.is_ready(), probe.is_live());
        trigger.begin();
        (running, wedged)
    });
    Worker::builder(queue.clone())
        .wait_time(Duration::from_secs(1))
        .health(health.clone())
        .handler(|_message: Message| async {})
        .run_with(shutdown)
        .await
        .expect("worker runs");

    let (running, wedged) = observed.await.expect("probe");
    assert_eq!(running, (true, true));
    assert_eq!(wedged, (true, false), "receives stuck for 90 s");
    assert!(!health.is_ready(), "not ready once stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_thread_does_not_hold_up_the_exit() {
    let queue = EmbeddedQueue::builder("stuck")
        .visibility_timeout(Duration::from_secs(60))
        .build()
        .expect("queue");
    queue.send_many(["blocks", "waits"].map(str::to_owned));
    const STOP_TIMEOUT: Duration = Duration::from_secs(4);
    let running = Arc::new(AtomicUsize::new(0));
    let handler_running = Arc::clone(&running);
    let stopping = Arc::new(Mutex::new(None));
    let began = Arc::clone(&stopping);
    let report = Worker::builder(queue.clone())
        .concurrency(2)
        .stop_timeout(STOP_TIMEOUT)
        .shutdown_grace(Duration::from_secs(1))
        .handler(move |message: Message| {
            handler_running.fetch_add(1, Ordering::SeqCst);
            async move {
                if message.body() == "blocks" {
                    // Blocks its thread past the stop timeout: cancellation cannot reach it.
                    std::thread::sleep(STOP_TIMEOUT + Duration::from_secs(2));
                } else {
                    sleep(Duration::from_secs(3600)).await;
                }
            }
        })
        // Shutdown begins once both handlers run.
        .run_until(async move {
            while running.load(Ordering::SeqCst) < 2 {
                sleep(Duration::from_millis(10)).await;
            }
            *began.lock().expect("lock") = Some(std::time::Instant::now());
        })
        .await
        .expect("worker stops");

    let took = stopping
        .lock()
        .expect("lock")
        .expect("shutdown began")
        .elapsed();
    assert!(
        took < STOP_TIMEOUT,
        "returned {took:?} after shutdown began, not before the stop timeout"
    );
    assert_eq!(
        report.released, 1,
        "the cancellable handler's message was released"
    );
    assert_eq!(queue.counts().visible, 1);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_during_shutdown_never_extend_past_the_deadline() {
    let queue = EmbeddedQueue::builder("deadline")
        .visibility_timeout(Duration::from_secs(10))
        .build()
        .expect("queue");
    queue.send("long");
    let backend = Arc::new(Spy::new(&queue));
    let started = Instant::now();
    Worker::builder(Arc::clone(&backend))
        .stop_timeout(Duration::from_secs(30))
        .shutdown_grace(Duration::from_secs(7))
        .handler(|_message: Message| std::future::pending::<()>())
        .run_until(sleep(Duration::from_secs(12)))
        .await
        .expect("worker runs");

    // Heartbeats every 5 s extend by the 10 s timeout, until shutdown at 12 s sets the
    // deadline at 19 s: the beat at 15 s extends by 4 s only; at 19 s, the release.
    let changes: Vec<(u64, Duration)> = backend
        .changes
        .lock()
        .expect("changes")
        .iter()
        .map(|(at, timeout)| ((*at - started).as_secs(), *timeout))
        .collect();
    let secs = Duration::from_secs;
    assert_eq!(
        changes,
        [
            (5, secs(10)),
            (10, secs(10)),
            (15, secs(4)),
            (19, Duration::ZERO)
        ]
    );
}

/// A queue whose receives answer late or with more than asked for.
#[derive(Debug)]
struct Receives {
    queue: EmbeddedQueue,
    /// As SQS does for a request its client abandons: the messages are taken (and made
    /// invisible) when the request reaches the queue, and the response arrives this much
    /// later. Dropping the receive in between would strand them.
    late: Duration,
    /// Messages every receive takes at least, as a retried receive whose attempt id
    /// SQS answers with an earlier, larger set.
    at_least: usize,
}

impl Receives {
    fn slow(queue: EmbeddedQueue) -> Intercepted<Self> {
        Intercepted(Self {
            queue,
            late: Duration::from_millis(300),
            at_least: 0,
        })
    }
}

#[async_trait]
impl Intercept for Receives {
    type Inner = EmbeddedQueue;

    fn inner(&self) -> &EmbeddedQueue {
        &self.queue
    }

    /// As SQS's: a receive dropped under way may have taken messages.
    fn receive_cancel_safe(&self) -> bool {
        false
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        let mut request = request;
        request.max_messages = request.max_messages.max(self.at_least);
        let messages = self.queue.receive(request).await?;
        sleep(self.late).await;
        Ok(messages)
    }
}

#[tokio::test(start_paused = true)]
async fn messages_a_receive_returns_as_shutdown_begins_are_released_not_stranded() {
    let queue = EmbeddedQueue::builder("in-transit")
        .visibility_timeout(Duration::from_secs(600))
        .build()
        .expect("queue");
    queue.send_many((0..100).map(|n| n.to_string()));
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let report = Worker::builder(Receives::slow(queue.clone()))
        .concurrency(40)
        .pollers(4)
        .handler(move |_: Message| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        // Mid-response: every poller's receive has taken its messages, none has returned.
        .run_until(sleep(Duration::from_millis(150)))
        .await
        .expect("worker runs");

    assert_eq!(handled.load(Ordering::SeqCst), 0, "nothing started");
    assert_eq!(report.received, 40, "four receives of ten were in transit");
    assert_eq!(report.released, 40);
    let counts = queue.counts();
    assert_eq!(
        (counts.visible, counts.not_visible),
        (100, 0),
        "every message is visible again at once, none waits out its 600 s timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn messages_beyond_what_a_receive_asked_for_are_released_at_once() {
    let queue = EmbeddedQueue::builder("overfilled")
        .visibility_timeout(Duration::from_secs(600))
        .build()
        .expect("queue");
    queue.send_many((0..20).map(|n| n.to_string()));
    let began = Instant::now();
    let backend = Intercepted(Receives {
        queue: queue.clone(),
        late: Duration::ZERO,
        at_least: 10,
    });
    let worker = Worker::builder(backend)
        .concurrency(2)
        .pollers(1)
        .handler(|_: Message| async {});
    let report = run_until_drained(worker, &queue).await.expect("run");
    assert_eq!(report.succeeded, 20);
    assert!(report.released > 0, "the extras were released: {report:?}");
    // Released, not left to their 600 s visibility timeout.
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "{:?}",
        began.elapsed()
    );
}
