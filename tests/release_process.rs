//! Release latency of a real worker process over the SQS protocol, against the baseline
//! of a process that dies without releasing.
//!
//! A worker binary holds 1,000 messages (handlers that never finish) while a second
//! worker in this process long-polls the same queue. Then the first gets SIGTERM with no
//! grace period (the moment a grace period ends), or SIGKILL. Figures: SIGTERM → the
//! worker exits (its last release call completed before it exits), and stop → the
//! other worker has received all 1,000.
//!
//! Run with: `scripts/bench-release` (starts fauxqs on loopback).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq::{Message, SqsBackend, Worker, shutdown::ShutdownHandle};
use support::process::{Settings, WorkerProcess, signal};
use support::{create_queue, send, unique};
use tokio::time::{Instant, sleep};

const HELD: usize = 1_000;

struct Figures {
    to_exit: Duration,
    to_taken: Duration,
}

async fn wait_until(limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "not done within {limit:?}");
        sleep(Duration::from_millis(5)).await;
    }
}

async fn run(signal_name: &str, visibility_secs: u64) -> Figures {
    let queue = create_queue(
        &unique("release"),
        &[(
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )],
    )
    .await;
    send(&queue, (0..HELD).map(|n| format!("held{n}:3600000"))).await;
    let settings = Settings {
        grace_secs: 0,
        stop_timeout_secs: 30,
        concurrency: HELD,
        ..Settings::default()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    worker.wait_for("start", HELD).await;

    let taken = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&taken);
    let taking = ShutdownHandle::new();
    let taker = Worker::builder(
        SqsBackend::from_env(queue.queue_url())
            .await
            .expect("queue"),
    )
    .concurrency(HELD)
    .handler(move |_message: Message| {
        counter.fetch_add(1, Ordering::Relaxed);
        async {}
    })
    .run_with(taking.clone());
    let taker = tokio::spawn(taker);
    sleep(Duration::from_millis(500)).await; // the taker is long-polling

    let stopped = Instant::now();
    signal(worker.worker_pid(false), signal_name);
    worker.wait_exit(Duration::from_secs(30)).await;
    let to_exit = stopped.elapsed();
    wait_until(Duration::from_secs(visibility_secs + 30), async || {
        taken.load(Ordering::Relaxed) == HELD as u64
    })
    .await;
    let to_taken = stopped.elapsed();
    taking.begin();
    taker.await.expect("taker").expect("taker runs");
    Figures { to_exit, to_taken }
}

#[tokio::main]
async fn main() {
    let endpoint = support::emulator_endpoint();
    println!("{HELD} held messages, SQS protocol at {endpoint}");
    println!(
        "{:<34} {:>18} {:>30}",
        "stop", "worker exited (ms)", "all received elsewhere (ms)"
    );
    for (name, signal_name, visibility) in [
        ("SIGTERM (release, spotq)", "TERM", 120),
        ("SIGKILL (no release), 10 s timeout", "KILL", 10),
    ] {
        let figures = run(signal_name, visibility).await;
        println!(
            "{name:<34} {:>18.0} {:>30.0}",
            figures.to_exit.as_secs_f64() * 1e3,
            figures.to_taken.as_secs_f64() * 1e3
        );
    }
}
