//! `spotq-controller`'s local target end to end, against moto on loopback: no workers
//! while the queue is idle; messages arrive, worker processes (`spotq-test-worker`)
//! start; the queue drains, the workers get SIGTERM and exit, and the count is back to
//! zero, with every message processed and none left in the queue. A controller that
//! stops SIGTERMs its workers mid-work, and they release every message at once. Also:
//! the throughput probe reads a real worker's `/metrics`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq_controller::config::{Cli, Config};
use spotq_controller::decision::Reason;
use spotq_controller::inputs::ThroughputProbe;
use spotq_controller::run::Controller;
use support::decisions::{next_change, woken_by_first_poll_after};
use support::process::{Settings, WorkerProcess};
use support::unique;
use tokio::time::{Instant, timeout};

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

[binding.local]
command = ["{worker}"]
stop_timeout = "15s"
env = {{ SPOTQ_QUEUE = "{queue}", SPOTQ_EVENTS = "{events}", SPOTQ_CONCURRENCY = "4", SPOTQ_GRACE_SECS = "5", SPOTQ_STOP_TIMEOUT_SECS = "10", RUST_LOG = "warn" }}
"#,
        queue = queue.queue_url(),
        worker = env!("CARGO_BIN_EXE_spotq-test-worker"),
        events = events.display(),
    );
    let config = Config::from_parts(&Cli::default(), Some(&file)).expect("valid config");
    let controller = Controller::start(config).await.expect("started");
    let local = controller.local_target("local").expect("a local target");
    let mut decisions = controller.decisions();

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
async fn the_throughput_probe_reads_a_worker_s_metrics() {
    let queue = support::create_queue(&unique("ctl-probe"), &[]).await;
    let settings = Settings {
        concurrency: 4,
        http: true,
        ..Settings::default()
    };
    let worker = WorkerProcess::start(&queue, &settings);
    let addr = worker.http_addr().await;
    let mut probe = ThroughputProbe::new(vec![format!("http://{addr}/metrics")]);
    assert_eq!(probe.measure().await, None, "no message handled yet");

    support::send(&queue, (0..8).map(|n| format!("p{n}:50"))).await;
    worker.wait_for("done", 8).await;
    // The worker publishes its figures every second.
    let mut measured = None;
    for _ in 0..50 {
        measured = probe.measure().await;
        if measured.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rate = measured.expect("a rate within 10 s");
    // 4 at once, about 50 ms each: far above 1 message a second, and finite.
    assert!(rate.is_finite() && rate > 1.0, "{rate}");
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

[binding.local]
command = ["{worker}"]
stop_timeout = "15s"
env = {{ SPOTQ_QUEUE = "{queue}", SPOTQ_EVENTS = "{events}", SPOTQ_CONCURRENCY = "4", SPOTQ_GRACE_SECS = "1", SPOTQ_STOP_TIMEOUT_SECS = "10", RUST_LOG = "warn" }}
"#,
        queue = queue.queue_url(),
        worker = env!("CARGO_BIN_EXE_spotq-test-worker"),
        events = events.display(),
    );
    let sent: BTreeSet<String> = (0..8).map(|n| format!("long{n}:30000")).collect();
    support::send(&queue, sent.iter().cloned()).await;
    let config = Config::from_parts(&Cli::default(), Some(&file)).expect("valid config");
    let controller = Controller::start(config).await.expect("started");
    let local = controller.local_target("stop").expect("a local target");
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
