//! Run to completion against moto server on loopback: a job worker on an SQS queue,
//! through the real `aws-sdk-sqs` client, works the queue and stops by itself once its
//! receives find it empty; the worker binary does the same as a process and exits 0, exits
//! 0 after a SIGTERM before the queue is drained (releasing what it holds), and exits 1
//! when its queue is deleted under it.
//!
//! The time limits below only bound a test that would otherwise hang; nothing is
//! measured against them.

mod support;

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq::{Worker, shutdown::ShutdownHandle, shutdown::StopReason};
use support::process::{Settings, WorkerProcess, signal};
use support::{Seen, counts, create_queue, send, unique};
use tokio::time::timeout;

/// Bounds a run that should end by itself.
const HANG: Duration = Duration::from_secs(120);

/// The worker binary's settings for a job: it exits after two empty receives.
fn job(concurrency: usize, empty_receives: u32) -> Settings {
    Settings {
        concurrency,
        json_logs: true,
        env: vec![(
            "SPOTQ_EXIT_AFTER_EMPTY_RECEIVES".to_owned(),
            empty_receives.to_string(),
        )],
        ..Settings::default()
    }
}

/// The `worker stopped` line the worker logs as it stops, with its run report.
fn stopped_line(worker: &WorkerProcess) -> String {
    let lines = worker.log_lines();
    lines
        .iter()
        .find(|line| line.contains("worker stopped"))
        .cloned()
        .unwrap_or_else(|| panic!("no `worker stopped` line: {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_sqs_handles_every_message_and_stops_by_itself() {
    let queue = create_queue(&unique("job"), &[]).await;
    send(&queue, (0..30).map(|n| format!("job-{n}"))).await;

    let seen = Seen::default();
    let run = Worker::builder(queue.clone())
        .concurrency(8)
        .wait_time(Duration::from_secs(1))
        .exit_after_empty_receives(2)
        .handler(seen.handler())
        // Never fired: the run ends by itself.
        .run_with(ShutdownHandle::new());
    let report = timeout(HANG, run)
        .await
        .expect("the job stopped by itself")
        .expect("the job runs");

    assert_eq!(report.stop_reason, StopReason::Drained);
    assert_eq!((report.received, report.deleted), (30, 30));
    assert_eq!(report.released, 0);
    let seen = seen.counts();
    assert_eq!(seen.len(), 30);
    assert!(seen.values().all(|count| *count == 1), "{seen:?}");
    assert_eq!(counts(&queue).await, (0, 0, 0), "every message deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_exits_0_once_the_queue_is_drained() {
    let queue = create_queue(&unique("job-process"), &[]).await;
    send(&queue, (0..30).map(|n| format!("job{n}:20"))).await;
    let mut worker = WorkerProcess::start(&queue, &job(8, 2));

    let status = worker.wait_exit(HANG).await;
    assert!(status.success(), "{status}");
    assert_eq!(worker.bodies("done").len(), 30);
    assert_eq!(counts(&queue).await, (0, 0, 0), "every message deleted");
    assert!(stopped_line(&worker).contains("stop_reason: Drained"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_before_the_queue_is_drained_exits_0_and_releases_what_is_held() {
    let queue = create_queue(
        &unique("job-sigterm"),
        &[(QueueAttributeName::VisibilityTimeout, "300".to_owned())],
    )
    .await;
    send(&queue, (0..4).map(|n| format!("slow{n}:600000"))).await;
    let settings = Settings {
        grace_secs: 1,
        ..job(4, 2)
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    worker.wait_for("start", 4).await;

    signal(worker.worker_pid(false), "TERM");
    let status = worker.wait_exit(HANG).await;
    assert!(status.success(), "{status}");
    // Released, so visible at once rather than after the 300 s visibility timeout.
    assert_eq!(counts(&queue).await, (4, 0, 0));
    assert!(stopped_line(&worker).contains("stop_reason: Signal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_queue_is_deleted_exits_non_zero() {
    let queue = create_queue(&unique("job-deleted"), &[]).await;
    send(&queue, ["first:10".to_owned()]).await;
    // Too many empty receives to drain before the queue goes.
    let mut worker = WorkerProcess::start(&queue, &job(2, 1_000));
    worker.wait_for("done", 1).await;

    queue
        .client()
        .delete_queue()
        .queue_url(queue.queue_url())
        .send()
        .await
        .expect("delete the queue");
    let status = worker.wait_exit(HANG).await;
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(stopped_line(&worker).contains("stop_reason: Fatal"));
}
