//! The shutdown contract under faults, on the embedded queue with paused tokio time:
//! settings that leave no room to release, a throttled heartbeat racing a release, a
//! continuation that cannot be sent, a second signal during a long poll, and retries
//! that outlive the worker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use spotq::backend::Operation;
use spotq::backend::{Backend, EntryResult, Intercept, Intercepted, SendMessage, VisibilityChange};
use spotq::{
    EmbeddedQueue, Error, Message, Outcome, Worker, backend::BackendError, shutdown::ShutdownHandle,
};
use tokio::time::{Instant, sleep, sleep_until};

const fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn queue(name: &str, visibility: Duration) -> EmbeddedQueue {
    EmbeddedQueue::builder(name)
        .visibility_timeout(visibility)
        .build()
        .expect("queue")
}

/// The embedded queue as SQS behaves for a receive its client abandons: not safe to
/// drop (the worker lets a receive under way finish at shutdown), and long-polling.
/// Records when it was asked to release messages (visibility 0).
#[derive(Debug)]
struct NotCancelSafe(EmbeddedQueue, Mutex<Vec<Instant>>);

#[async_trait]
impl Intercept for NotCancelSafe {
    type Inner = EmbeddedQueue;

    fn inner(&self) -> &EmbeddedQueue {
        &self.0
    }

    fn receive_cancel_safe(&self) -> bool {
        false
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        if changes.iter().any(|change| change.timeout.is_zero()) {
            self.1.lock().expect("releases").push(Instant::now());
        }
        self.0.change_visibility_batch(changes).await
    }
}

/// The embedded queue behind an endpoint that never answers a `GetQueueAttributes`.
#[derive(Debug)]
struct SilentAttributes(EmbeddedQueue);

#[async_trait]
impl Intercept for SilentAttributes {
    type Inner = EmbeddedQueue;

    fn inner(&self) -> &EmbeddedQueue {
        &self.0
    }

    async fn attributes(&self) -> Result<spotq::backend::QueueAttributes, BackendError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_while_the_worker_starts_ends_the_start() {
    let queue = queue("silent-start", secs(60));
    queue.send("job");
    let started = Instant::now();
    let run = Worker::builder(Intercepted(SilentAttributes(queue.clone())))
        .stop_timeout(secs(10))
        .handler(|_: Message| async {})
        .run_until(sleep(secs(3)));
    // Ten minutes of virtual time: a start that waits on the silent call for ever fails
    // here rather than hanging the test.
    let report = tokio::time::timeout(secs(600), run)
        .await
        .expect("the shutdown ended the start")
        .expect("a run stopped before it started is no error");
    assert_eq!(started.elapsed(), secs(3), "out at the shutdown, not later");
    assert_eq!(report.stop_reason, spotq::shutdown::StopReason::Requested);
    assert_eq!(report.received, 0);
    assert_eq!(queue.stats().receive_calls, 0, "nothing was received");
    assert_eq!(queue.counts().visible, 1);
}

#[tokio::test(start_paused = true)]
async fn a_grace_period_that_leaves_no_room_to_release_fails_at_start() {
    // As a new user would: SIGTERM to SIGKILL 4 s, handlers given 3.5 s of it.
    let queue = queue("no-room", secs(60));
    queue.send("job");
    let result = Worker::builder(queue.clone())
        .stop_timeout(secs(4))
        .shutdown_grace(Duration::from_millis(3500))
        .handler(|_: Message| async {})
        .run_until(sleep(secs(1)))
        .await;
    let Err(Error::Config(error)) = result else {
        panic!("the worker started: {result:?}");
    };
    assert_eq!(error.setting, "shutdown_grace");
    let text = error.to_string();
    assert!(
        text.contains("stop_timeout (4s)"),
        "names both settings: {text}"
    );
    assert!(text.contains("less 3s"), "and the room needed: {text}");
    assert_eq!(queue.stats().receive_calls, 0, "before any receive");

    // A stop timeout too short for any grace at all names itself.
    let result = Worker::builder(queue.clone())
        .stop_timeout(secs(2))
        .handler(|_: Message| async {})
        .run_until(sleep(secs(1)))
        .await;
    let Err(Error::Config(error)) = result else {
        panic!("the worker started: {result:?}");
    };
    assert_eq!(error.setting, "stop_timeout");
}

#[tokio::test(start_paused = true)]
async fn a_throttled_heartbeat_retried_after_the_release_does_not_hide_the_message_again() {
    // Heartbeats every 5 s (half the visibility timeout). The one at 5 s is sent at
    // 5.005 s (the flush interval), throttled, and retried 25–50 ms later; an immediate
    // shutdown at 5.012 s releases the message in between. The retry must be dropped,
    // not sent after the release.
    let queue = queue("heartbeat-race", secs(10));
    queue.send("long");
    let shutdown = ShutdownHandle::new();
    let started = Instant::now();
    let stop = shutdown.clone();
    let faults = queue.clone();
    tokio::spawn(async move {
        sleep_until(started + Duration::from_millis(4990)).await;
        faults
            .faults()
            .throttle_next(Operation::ChangeVisibilityBatch, 1);
        sleep_until(started + Duration::from_millis(5012)).await;
        stop.now();
    });
    let report = Worker::builder(queue.clone())
        .handler(|_: Message| std::future::pending::<()>())
        .run_with(shutdown)
        .await
        .expect("worker runs");

    let injected = queue.faults().injected(Operation::ChangeVisibilityBatch);
    assert_eq!(injected.throttled, 1, "the heartbeat was throttled");
    assert_eq!(report.released, 1);
    assert_eq!(
        queue.counts().visible,
        1,
        "visible right after the worker returned: {:?}",
        queue.counts()
    );
}

#[tokio::test(start_paused = true)]
async fn a_continuation_that_cannot_be_sent_by_the_deadline_releases_its_message() {
    // The handler checkpoints when shutdown begins, but sending the continuation hangs
    // (a queue that does not answer): at the grace deadline the send is abandoned and the
    // message released, not left invisible for its visibility timeout.
    let queue = queue("continuation", secs(300));
    queue.send("step-1");
    queue
        .faults()
        .set_latency(Operation::Send, Some(secs(3600)));
    let shutdown = ShutdownHandle::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        sleep(secs(1)).await;
        stop.begin();
    });
    let started = Instant::now();
    let report = Worker::builder(queue.clone())
        .stop_timeout(secs(10))
        .shutdown_grace(secs(3))
        .handler(|message: Message| async move {
            message.context().stopping().await;
            Outcome::Continue(SendMessage::new("step-2"))
        })
        .run_with(shutdown)
        .await
        .expect("worker runs");

    assert!(
        started.elapsed() <= secs(10),
        "returned within the stop timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(report.released, 1, "{report:?}");
    assert_eq!(report.deleted, 0);
    let counts = queue.counts();
    assert_eq!((counts.visible, counts.not_visible), (1, 0), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_releases_at_once_while_a_receive_is_in_transit() {
    // Two pollers: one hands the message to a handler that runs for an hour, the other
    // long-polls an empty queue for 20 s. Shutdown begins at 1 s (the long poll is let
    // finish, since its messages may already be taken); the second signal at 2 s must
    // release the running handler's message then, not after the long poll.
    let queue = queue("second-signal", secs(600));
    queue.send("long");
    let shutdown = ShutdownHandle::new();
    let stop = shutdown.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        sleep_until(started + secs(1)).await;
        stop.begin();
        sleep_until(started + secs(2)).await;
        stop.now();
    });
    let backend = Arc::new(Intercepted(NotCancelSafe(queue.clone(), Mutex::default())));
    let report = Worker::builder(Arc::clone(&backend))
        .concurrency(2)
        .pollers(2)
        .batch_size(1)
        .stop_timeout(secs(120))
        .handler(|_: Message| sleep(secs(3600)))
        .run_with(shutdown)
        .await
        .expect("worker runs");

    let releases = backend.0.1.lock().expect("releases").clone();
    let first = *releases.first().expect("a release");
    assert!(
        first - started < Duration::from_millis(2100),
        "released {:?} after the start; the second signal came at 2 s",
        first - started
    );
    assert!(report.released >= 1, "{report:?}");
    assert_eq!(queue.counts().visible, 1, "{:?}", queue.counts());
}

#[tokio::test(start_paused = true)]
async fn retries_during_shutdown_keep_their_whole_backoff() {
    // Handlers fail (and ask to come back later) as shutdown begins. The queue keeps the
    // visibility timer after the worker exits: the messages come back after their
    // backoff (60 s) and their delay (1 h), not at the grace deadline (5 s), which would
    // burn receives toward the dead-letter queue.
    let queue = queue("retries", secs(600));
    queue.send_many(["fails", "later"].map(str::to_owned));
    let started = Instant::now();
    let report = Worker::builder(queue.clone())
        .stop_timeout(secs(30))
        .shutdown_grace(secs(5))
        .retry_backoff(secs(60), secs(60))
        .handler(|message: Message| async move {
            message.context().stopping().await;
            if message.body() == "fails" {
                Outcome::fail("the downstream is down")
            } else {
                Outcome::RetryAfter(secs(3600))
            }
        })
        .run_until(sleep(secs(1)))
        .await
        .expect("worker runs");
    assert_eq!((report.failed, report.retried), (1, 2), "{report:?}");

    sleep_until(started + secs(20)).await;
    assert_eq!(
        queue.counts().visible,
        0,
        "nothing back early: {:?}",
        queue.counts()
    );
    // The backoff is jittered into its upper half: between 30 s and 60 s.
    sleep_until(started + secs(62)).await;
    assert_eq!(
        queue.counts().visible,
        1,
        "the failure is back after its backoff"
    );
    sleep_until(started + secs(3602)).await;
    assert_eq!(
        queue.counts().visible,
        2,
        "the retry-after is back after its delay"
    );
}

/// The embedded queue whose sends take `delay` to answer.
#[derive(Debug)]
struct SlowSends(EmbeddedQueue, Duration);

#[async_trait]
impl Intercept for SlowSends {
    type Inner = EmbeddedQueue;

    fn inner(&self) -> &EmbeddedQueue {
        &self.0
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        sleep(self.1).await;
        Backend::send(&self.0, message).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_continuation_send_is_heartbeated_so_its_message_neither_lapses_nor_forks() {
    // The send takes longer than the visibility timeout.
    let queue = queue("slow-send", secs(30));
    queue.send("step-1");
    let runs = Arc::new(Mutex::new(Vec::new()));
    let handler_runs = Arc::clone(&runs);
    let run = Worker::builder(Intercepted(SlowSends(queue.clone(), secs(70))))
        .pollers(2)
        .handler(move |message: Message| {
            handler_runs
                .lock()
                .expect("runs")
                .push(message.body().to_owned());
            let outcome = match message.body() {
                "step-1" => Outcome::Continue(SendMessage::new("step-2")),
                _ => Outcome::Ack,
            };
            async move { outcome }
        })
        .run_until({
            let queue = queue.clone();
            async move {
                sleep(secs(10)).await;
                while queue.counts().total() > 0 {
                    sleep(secs(1)).await;
                }
            }
        });
    // Virtual time: a step-1 that lapses is handed on again and again, never drained.
    let report = tokio::time::timeout(secs(900), run)
        .await
        .unwrap_or_else(|_| panic!("not drained: {:?}", runs.lock().expect("runs")))
        .expect("worker runs");
    assert_eq!(
        *runs.lock().expect("runs"),
        ["step-1", "step-2"],
        "step-1 ran once: it stayed invisible while its continuation was sent"
    );
    assert_eq!((report.continued, report.deleted), (1, 2), "{report:?}");
    assert!(report.heartbeats >= 2, "{report:?}");
}
