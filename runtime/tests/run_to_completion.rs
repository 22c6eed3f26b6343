//! Run to completion on the embedded queue, under paused tokio time: a job worker exits
//! once its receives find the queue empty while it holds nothing, and not before (a
//! handler running, a FIFO group waiting, a retry not yet sent); a message waiting out
//! its retry backoff is held by no one and does not keep it; `max_run_time` ends a run by
//! the shutdown contract; a shutdown from outside ends it as before; a queue that refuses
//! every receive ends it as fatal, with a failing exit code.

use std::process::{ExitCode, Termination};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spotq::backend::Operation;
use spotq::{
    EmbeddedQueue, Error, Message, Outcome, Worker, backend::SendMessage, config::Backoff,
    config::RetryPolicy, shutdown::ShutdownHandle, shutdown::StopReason,
    testing::run_until_drained,
};
use tokio::time::{Instant, sleep};

const fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// A handler whose first attempt at a message fails and whose next succeeds.
async fn fails_once(message: Message) -> Outcome {
    if message.receive_count() == 1 {
        Outcome::fail("the first attempt fails")
    } else {
        Outcome::Ack
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_exits_once_its_receives_find_the_queue_empty() {
    let queue = EmbeddedQueue::new("nightly");
    queue.send_many((0..200).map(|n| n.to_string()));
    // Three pollers, which count their empty receives together.
    let report = Worker::builder(queue.clone())
        .concurrency(30)
        .exit_after_empty_receives(3)
        .handler(|_: Message| async {
            sleep(Duration::from_millis(fastrand::u64(10..200))).await;
        })
        .run_with(ShutdownHandle::new())
        .await
        .expect("the job runs");

    assert_eq!(report.stop_reason, StopReason::Drained);
    assert_eq!(report.exit_code(), ExitCode::SUCCESS);
    assert_eq!((report.succeeded, report.deleted), (200, 200));
    assert_eq!(report.released, 0, "nothing was held when it stopped");
    assert_eq!(queue.counts().total(), 0);
    assert!(queue.stats().empty_receives >= 3, "{:?}", queue.stats());
}

#[tokio::test(start_paused = true)]
async fn the_empty_receives_are_counted_in_a_row() {
    let queue = EmbeddedQueue::new("one");
    queue.send("job");
    let started = Instant::now();
    let report = Worker::builder(queue.clone())
        .concurrency(1)
        .exit_after_empty_receives(3)
        .handler(|_: Message| async {})
        .run_with(ShutdownHandle::new())
        .await
        .expect("the job runs");

    assert_eq!(report.stop_reason, StopReason::Drained);
    assert_eq!(report.deleted, 1);
    // One receive took the message; the next three long polls (20 s each) came back
    // empty, and the third ended the run.
    let stats = queue.stats();
    assert_eq!((stats.receive_calls, stats.empty_receives), (4, 3));
    assert!(started.elapsed() >= secs(60), "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_running_handler_holds_the_exit_back() {
    let queue = EmbeddedQueue::builder("long")
        .visibility_timeout(secs(60))
        .build()
        .expect("queue");
    queue.send("five minutes");
    let started = Instant::now();
    // Two permits: one poller keeps receiving (and finding nothing) while the handler
    // runs; those empty receives do not count.
    let report = Worker::builder(queue.clone())
        .concurrency(2)
        .exit_after_empty_receives(1)
        .handler(|_: Message| async {
            sleep(secs(300)).await;
        })
        .run_with(ShutdownHandle::new())
        .await
        .expect("the job runs");

    assert_eq!(report.stop_reason, StopReason::Drained);
    assert_eq!((report.succeeded, report.deleted), (1, 1));
    assert_eq!(report.released, 0);
    assert!(started.elapsed() >= secs(300), "{:?}", started.elapsed());
    assert!(queue.stats().empty_receives > 10, "{:?}", queue.stats());
    assert!(report.heartbeats > 0, "kept invisible while it ran");
}

#[tokio::test(start_paused = true)]
async fn a_fifo_group_with_messages_waiting_holds_the_exit_back() {
    let queue = EmbeddedQueue::builder("steps.fifo")
        .fifo()
        .content_based_deduplication()
        .visibility_timeout(secs(60))
        .build()
        .expect("a FIFO queue");
    for step in 0..3 {
        queue
            .send_with(SendMessage::new(format!("step {step}")).group_id("job"))
            .expect("sent");
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&order);
    let report = Worker::builder(queue.clone())
        .concurrency(2)
        .exit_after_empty_receives(1)
        .handler(move |message: Message| {
            let recorder = Arc::clone(&recorder);
            async move {
                sleep(secs(30)).await;
                recorder
                    .lock()
                    .expect("lock")
                    .push(message.body().to_owned());
            }
        })
        .run_with(ShutdownHandle::new())
        .await
        .expect("the job runs");

    assert_eq!(report.stop_reason, StopReason::Drained);
    assert_eq!(
        *order.lock().expect("lock"),
        ["step 0", "step 1", "step 2"],
        "the group ran to its end, in order"
    );
    assert_eq!((report.deleted, report.released), (3, 0));
    assert_eq!(queue.counts().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_not_yet_sent_holds_the_exit_back() {
    let queue = EmbeddedQueue::new("throttled");
    queue.send("fails once");
    // The failed message's retry (visible again at once) is throttled for a while.
    queue
        .faults()
        .throttle_next(Operation::ChangeVisibilityBatch, 4);
    let report = Worker::builder(queue.clone())
        .wait_time(Duration::ZERO)
        .exit_after_empty_receives(1)
        .retry(RetryPolicy::Backoff(Backoff::new(
            Duration::ZERO,
            Duration::ZERO,
        )))
        .handler(fails_once)
        .run_with(ShutdownHandle::new())
        .await
        .expect("the job runs");

    assert_eq!(report.stop_reason, StopReason::Drained);
    assert_eq!((report.failed, report.succeeded), (1, 1));
    assert_eq!(
        report.deleted, 1,
        "the retry went out, and the second attempt ran"
    );
    assert_eq!(queue.counts().total(), 0);
}

/// The choice for a message waiting out its retry backoff: the queue keeps it invisible
/// and no worker holds it, so a job may exit before it is visible again; the next job
/// task takes it then.
#[tokio::test(start_paused = true)]
async fn a_message_in_its_retry_backoff_does_not_hold_the_exit_back() {
    let queue = EmbeddedQueue::builder("later")
        .visibility_timeout(secs(30))
        .build()
        .expect("queue");
    queue.send("fails once");
    let backoff = RetryPolicy::Backoff(Backoff {
        base: secs(600),
        max: secs(600),
        jitter: false,
    });
    let job = |queue: &EmbeddedQueue| {
        Worker::builder(queue.clone())
            .exit_after_empty_receives(1)
            .retry(backoff)
            .handler(fails_once)
            .run_with(ShutdownHandle::new())
    };
    let started = Instant::now();
    let first = job(&queue).await.expect("the first job runs");
    assert_eq!(first.stop_reason, StopReason::Drained);
    assert_eq!((first.failed, first.retried, first.deleted), (1, 1, 0));
    assert!(
        started.elapsed() < secs(600),
        "it did not wait for the retry"
    );
    assert_eq!(queue.counts().not_visible, 1, "back after its backoff");

    sleep(secs(600)).await;
    let second = job(&queue).await.expect("the next job runs");
    assert_eq!(second.stop_reason, StopReason::Drained);
    assert_eq!((second.succeeded, second.deleted), (1, 1));
    assert_eq!(queue.counts().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn max_run_time_shuts_down_and_releases_what_is_held() {
    let queue = EmbeddedQueue::builder("endless")
        .visibility_timeout(secs(300))
        .build()
        .expect("queue");
    queue.send_many((0..20).map(|n| n.to_string()));
    let started = Instant::now();
    let report = Worker::builder(queue.clone())
        .concurrency(5)
        .exit_after_empty_receives(1)
        .max_run_time(secs(60))
        .handler(|_: Message| std::future::pending::<()>())
        .run_with(ShutdownHandle::new())
        .await
        .expect("the worker runs");

    assert_eq!(report.stop_reason, StopReason::MaxRunTime);
    assert_eq!(report.exit_code(), ExitCode::SUCCESS);
    assert_eq!(report.received, 5, "receiving stopped at the limit");
    assert_eq!(report.released, 5);
    // At once, not after the 300 s visibility timeout.
    assert_eq!(queue.counts().visible, 20);
    // The limit, then the default grace (25 s of a 30 s stop timeout), then the release.
    let elapsed = started.elapsed();
    assert!(elapsed >= secs(85) && elapsed < secs(90), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_before_the_queue_is_drained_is_the_usual_one() {
    let queue = EmbeddedQueue::builder("interrupted")
        .visibility_timeout(secs(300))
        .build()
        .expect("queue");
    queue.send_many(["quick", "slow"]);
    let shutdown = ShutdownHandle::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        sleep(secs(5)).await;
        stop.begin();
    });
    let report = Worker::builder(queue.clone())
        .concurrency(2)
        .exit_after_empty_receives(1)
        .handler(|message: Message| async move {
            let work = if message.body() == "quick" { 10 } else { 600 };
            sleep(secs(work)).await;
        })
        .run_with(shutdown)
        .await
        .expect("the worker runs");

    assert_eq!(report.stop_reason, StopReason::Requested);
    assert_eq!(report.exit_code(), ExitCode::SUCCESS);
    // The quick handler finished within the grace period, the slow one was released.
    assert_eq!((report.deleted, report.released), (1, 1));
    assert_eq!(queue.counts().visible, 1);
}

#[tokio::test(start_paused = true)]
async fn a_queue_that_refuses_every_receive_ends_the_job_as_fatal() {
    let queue = EmbeddedQueue::new("revoked");
    queue.send("never received");
    queue.faults().reject_next(Operation::Receive, u64::MAX);
    // One poller, so that the refusals it counts are all the receives made.
    let report = Worker::builder(queue.clone())
        .concurrency(1)
        .exit_after_empty_receives(2)
        .handler(|_: Message| async {})
        .run_with(ShutdownHandle::new())
        .await
        .expect("the worker started");

    assert_eq!(report.stop_reason, StopReason::Fatal);
    assert_eq!(report.exit_code(), ExitCode::FAILURE);
    assert_eq!(report.report(), ExitCode::FAILURE, "as `main` returns it");
    assert_eq!(report.receive_errors, 5);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_runs_until_shutdown_keeps_retrying_refused_receives() {
    let queue = EmbeddedQueue::new("flaky-permissions");
    queue.send_many(["a", "b"]);
    queue.faults().reject_next(Operation::Receive, 8);
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let worker = Worker::builder(queue.clone()).handler(move |_: Message| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let report = run_until_drained(worker, &queue)
        .await
        .expect("the worker runs");

    assert_eq!(report.stop_reason, StopReason::Requested);
    assert_eq!(report.receive_errors, 8);
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_start_that_fails_exits_non_zero() {
    let result = Worker::builder(EmbeddedQueue::new("misconfigured"))
        .exit_after_empty_receives(0)
        .handler(|_: Message| async {})
        .run_with(ShutdownHandle::new())
        .await;
    let Err(Error::Config(error)) = &result else {
        panic!("expected a configuration error: {result:?}");
    };
    assert_eq!(error.setting, "exit_after_empty_receives");
    // What `main` exits with when it returns the result.
    assert_eq!(result.report(), ExitCode::FAILURE);
}

#[tokio::test(start_paused = true)]
async fn several_workers_exit_non_zero_when_one_ended_on_a_fatal_error() {
    let done = EmbeddedQueue::new("done");
    done.send_many(["a", "b"]);
    let revoked = EmbeddedQueue::new("gone");
    revoked.faults().reject_next(Operation::Receive, u64::MAX);
    let spec = |queue: &EmbeddedQueue| {
        spotq::WorkerSpec::new(
            spotq::config::QueueSource::name("unused"),
            spotq::config::WorkerConfig::default(),
            |_: Message| async {},
        )
        .configure(|config| config.exit_after_empty_receives = Some(1))
        .worker(queue.clone())
        .expect("bound")
    };
    let reports = spotq::shutdown::run_all([spec(&done), spec(&revoked)], ShutdownHandle::new())
        .await
        .expect("both ran");

    let reasons: Vec<_> = reports.iter().map(|report| report.stop_reason).collect();
    assert_eq!(reasons, [StopReason::Drained, StopReason::Fatal]);
    assert_eq!(reports[0].deleted, 2);
    assert_eq!(spotq::RunReport::exit_code_of(&reports), ExitCode::FAILURE);
    assert_eq!(
        spotq::RunReport::exit_code_of(&reports[..1]),
        ExitCode::SUCCESS
    );
}
