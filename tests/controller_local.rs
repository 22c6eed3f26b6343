//! `spotq-controller`'s local target end to end, against moto on loopback: no workers
//! while the queue is idle; messages arrive, worker processes (`spotq-test-worker`)
//! start; the queue drains, the workers get SIGTERM and exit, and the count is back to
//! zero, with every message processed and none left in the queue. A controller that
//! stops SIGTERMs its workers mid-work, and they release every message at once. A
//! message waiting out a `RetryAfter` lets the service go to zero (the controller reads
//! the worker's `/metrics`: it holds nothing) and wakes it once visible. Also:
//! the worker probe reads a real worker's `/metrics` (throughput, messages held).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq::SqsBackend;
use spotq_controller::config::{Cli, Config};
use spotq_controller::decision::Reason;
use spotq_controller::inputs::{WorkerAddresses, WorkerProbe};
use spotq_controller::run::{Controller, DecisionEvent};
use spotq_controller::targets::LocalTarget;
use support::decisions::{next_change, woken_by_first_poll_after};
use support::process::{Settings, WorkerProcess};
use support::unique;
use tokio::sync::broadcast::Receiver;
use tokio::time::{Instant, timeout};

/// The `[binding.local]` table of a binding: `spotq-test-worker` processes on `queue`,
/// recording to `events`, given 15 s from SIGTERM to SIGKILL, with `env` (TOML pairs:
/// `KEY = "value", …`) beyond the queue, the log file and the stop timeout.
fn test_workers(queue: &SqsBackend, events: &Path, env: &str) -> String {
    format!(
        r#"
[binding.local]
command = ["{worker}"]
stop_timeout = "15s"
env = {{ SPOTQ_QUEUE = "{queue}", SPOTQ_EVENTS = "{events}", SPOTQ_STOP_TIMEOUT_SECS = "10", RUST_LOG = "warn", {env} }}
"#,
        queue = queue.queue_url(),
        worker = env!("CARGO_BIN_EXE_spotq-test-worker"),
        events = events.display(),
    )
}

/// Starts a controller on `file`, with the local target of its binding `name` and its
/// decisions from now on.
async fn start(file: &str, name: &str) -> (Controller, Arc<LocalTarget>, Receiver<DecisionEvent>) {
    let config = Config::from_parts(&Cli::default(), Some(file)).expect("valid config");
    let controller = Controller::start(config).await.expect("started");
    let local = controller.local_target(name).expect("a local target");
    let decisions = controller.decisions();
    (controller, local, decisions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_start_for_messages_and_get_sigterm_once_the_queue_is_drained() {
    let queue = support::create_queue(
        &unique("ctl-local"),
        &[(QueueAttributeName::VisibilityTimeout, "30".to_owned())],
    )
    .await;
    let events = std::env::temp_dir().join(format!("{}.events", unique("ctl-local")));
    let file = format!(
        r#"
[[binding]]
name = "local"
queue = "{queue}"
max = 3
backlog_per_task = 5
poll_interval = "200ms"
scale_in_cooldown = "1s"
empty_polls = 2
"#,
        queue = queue.queue_url(),
    ) + &test_workers(
        &queue,
        &events,
        r#"SPOTQ_CONCURRENCY = "4", SPOTQ_GRACE_SECS = "5""#,
    );
    let (controller, local, mut decisions) = start(&file, "local").await;

    // Idle: a few polls, no worker.
    for _ in 0..3 {
        let event = timeout(Duration::from_secs(10), decisions.recv())
            .await
            .expect("a poll")
            .expect("decisions");
        assert_eq!(event.decision.reason, Reason::Idle);
    }
    assert!(local.pids().await.is_empty());

    let sent: BTreeSet<String> = (0..30).map(|n| format!("m{n}:100")).collect();
    support::send(&queue, sent.iter().cloned()).await;
    let sent_at = Instant::now();
    let (woken, mut last) =
        woken_by_first_poll_after(&mut decisions, sent_at, Duration::from_secs(10)).await;
    assert_eq!(woken.decision.reason, Reason::Wake, "{woken:?}");
    assert!(woken.decision.desired >= 1 && woken.applied, "{woken:?}");
    let started = local.pids().await;
    assert!(!started.is_empty(), "worker processes started");

    // The workers drain the queue; once it has read empty for the cooldown, they go.
    while last.decision.desired > 0 {
        last = next_change(&mut decisions, Duration::from_secs(60)).await;
        assert!(last.applied, "{last:?}");
    }
    assert_eq!(last.decision.reason, Reason::ToZero);
    assert!(local.pids().await.is_empty());
    // The SIGTERMed workers exit by themselves, well before the SIGKILL.
    support::until(Duration::from_secs(20), || local.stopping() == 0).await;
    // Each stop waited for its process: all exited, none had to be killed.
    assert_eq!(local.killed(), 0, "every worker exited on SIGTERM");
    // No message lost: each was processed, and the queue holds none.
    assert_eq!(support::recorded(&events, "done"), sent);
    assert_eq!(support::counts(&queue).await, (0, 0, 0));
    controller.stop().await;
    let _ = std::fs::remove_file(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_only_message_waits_out_a_retry_goes_to_zero_and_is_woken_for_it() {
    let queue = support::create_queue(
        &unique("ctl-retry"),
        &[(QueueAttributeName::VisibilityTimeout, "30".to_owned())],
    )
    .await;
    let events = std::env::temp_dir().join(format!("{}.events", unique("ctl-retry")));
    // One worker at a time, on a port of its own that the controller reads.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let file = format!(
        r#"
[[binding]]
name = "retry"
queue = "{queue}"
max = 1
poll_interval = "200ms"
scale_in_cooldown = "1s"
empty_polls = 2
metrics_urls = ["http://127.0.0.1:{port}/metrics"]
"#,
        queue = queue.queue_url(),
    ) + &test_workers(
        &queue,
        &events,
        &format!(r#"SPOTQ_HTTP_ADDR = "127.0.0.1:{port}", SPOTQ_GRACE_SECS = "5""#),
    );
    let (controller, local, mut decisions) = start(&file, "retry").await;

    // The handler answers RetryAfter(15 s) on the first receive.
    let body = "later:10:retry=15".to_owned();
    support::send(&queue, [body.clone()]).await;
    let (woken, _) =
        woken_by_first_poll_after(&mut decisions, Instant::now(), Duration::from_secs(10)).await;
    assert_eq!(woken.decision.reason, Reason::Wake, "{woken:?}");

    // Put back for 15 s, the message is in flight but held by no worker: the service
    // goes to zero without waiting for it.
    let to_zero = next_change(&mut decisions, Duration::from_secs(30)).await;
    assert_eq!(
        (
            to_zero.decision.reason,
            to_zero.decision.desired,
            to_zero.applied
        ),
        (Reason::ToZero, 0, true),
        "{to_zero:?}"
    );
    assert_eq!(to_zero.decision.in_flight, 0, "{to_zero:?}");
    assert_eq!(
        support::recorded(&events, "retry"),
        BTreeSet::from([body.clone()])
    );
    assert_eq!(
        support::counts(&queue).await,
        (0, 1, 0),
        "still waiting out its retry"
    );
    support::until(Duration::from_secs(20), || local.stopping() == 0).await;

    // Visible again, it wakes the service, whose worker now handles it.
    let woken = next_change(&mut decisions, Duration::from_secs(40)).await;
    assert_eq!(
        (woken.decision.reason, woken.decision.desired),
        (Reason::Wake, 1),
        "{woken:?}"
    );
    let mut last = next_change(&mut decisions, Duration::from_secs(40)).await;
    while last.decision.desired > 0 {
        last = next_change(&mut decisions, Duration::from_secs(40)).await;
    }
    assert_eq!(last.decision.reason, Reason::ToZero);
    assert_eq!(support::recorded(&events, "done"), BTreeSet::from([body]));
    assert_eq!(support::counts(&queue).await, (0, 0, 0));
    controller.stop().await;
    assert_eq!(local.killed(), 0);
    let _ = std::fs::remove_file(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_probe_reads_a_worker_s_metrics() {
    let queue = support::create_queue(&unique("ctl-probe"), &[]).await;
    let settings = Settings {
        concurrency: 4,
        http: true,
        ..Settings::default()
    };
    let worker = WorkerProcess::start(&queue, &settings);
    let addr = worker.http_addr().await;
    let url = format!("http://{addr}/metrics");
    let mut probe = WorkerProbe::new("probe", WorkerAddresses::Fixed(vec![url.clone()]));
    // The worker publishes its figures every second from its start.
    let mut figures = probe.measure().await;
    for _ in 0..50 {
        if figures.held.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        figures = probe.measure().await;
    }
    assert_eq!(figures.held, Some(0), "an idle worker holds nothing");
    assert_eq!(figures.throughput, None, "no message handled yet");

    // Messages of 3 s: while they run, the worker holds them.
    support::send(&queue, (0..3).map(|n| format!("h{n}:3000"))).await;
    worker.wait_for("start", 3).await;
    let mut held = None;
    for _ in 0..50 {
        held = probe.measure().await.held;
        if held == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held, Some(3), "three handlers running");

    support::send(&queue, (0..8).map(|n| format!("p{n}:50"))).await;
    worker.wait_for("done", 11).await;
    let mut measured = None;
    for _ in 0..50 {
        measured = probe.measure().await.throughput;
        if measured.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rate = measured.expect("a rate within 10 s");
    // 4 at once, 50 ms to 3 s each: above 1 message a second, and finite.
    assert!(rate.is_finite() && rate > 1.0, "{rate}");

    // A worker that does not answer may hold messages: unknown.
    let mut with_a_silent_one = WorkerProbe::new(
        "probe",
        WorkerAddresses::Fixed(vec![url, "http://127.0.0.1:9/metrics".to_owned()]),
    );
    let figures = with_a_silent_one.measure().await;
    assert_eq!(figures.held, None);
    assert!(figures.throughput.is_some(), "the one that answered counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_stopped_mid_work_release_their_messages_at_once() {
    let queue = support::create_queue(
        &unique("ctl-stop"),
        &[(QueueAttributeName::VisibilityTimeout, "300".to_owned())],
    )
    .await;
    let events = std::env::temp_dir().join(format!("{}.events", unique("ctl-stop")));
    // Handlers of 30 s and a grace period of 1 s: a worker stopped now releases what it
    // holds, which a 300 s visibility timeout would otherwise strand.
    let file = format!(
        r#"
[[binding]]
name = "stop"
queue = "{queue}"
max = 2
backlog_per_task = 4
poll_interval = "200ms"
"#,
        queue = queue.queue_url(),
    ) + &test_workers(
        &queue,
        &events,
        r#"SPOTQ_CONCURRENCY = "4", SPOTQ_GRACE_SECS = "1""#,
    );
    let sent: BTreeSet<String> = (0..8).map(|n| format!("long{n}:30000")).collect();
    support::send(&queue, sent.iter().cloned()).await;
    let (controller, local, _) = start(&file, "stop").await;
    support::until(Duration::from_secs(30), || {
        support::recorded(&events, "start").len() == 8
    })
    .await;
    assert_eq!(local.pids().await.len(), 2);

    // The controller stops: its workers get SIGTERM in the middle of their handlers.
    controller.stop().await;
    assert_eq!(local.killed(), 0, "the workers exited on SIGTERM");
    assert!(
        support::recorded(&events, "done").is_empty(),
        "stopped mid-work"
    );
    let (visible, not_visible, _) = support::counts(&queue).await;
    assert_eq!((visible, not_visible), (8, 0), "all 8 released at once");
    let _ = std::fs::remove_file(&events);
}
