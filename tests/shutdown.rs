//! The Spot shutdown contract, with real worker processes and real signals against moto
//! on loopback: SIGTERM (or SIGINT) drains within the grace period and leaves every
//! message either deleted (processed) or receivable at once; a second signal releases
//! everything now; SIGKILL strands messages until their visibility timeout; and a worker
//! that is PID 1 of its own PID namespace drains the same way.
//!
//! The workers send their receives and deletes to moto one at a time
//! ([`Settings::in_turn`]): moto's receive is not atomic, and two pollers at once could
//! both take a message whose receives a test counts. What a test waits for it waits on
//! (an event, a log line, a metric, readiness), never a fixed time; an exit is bounded
//! by the stop timeout the contract promises, counted from the signal.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use spotq::SqsBackend;
use spotq::backend::{Backend, ReceiveRequest};
use spotq::shutdown::ROOM;
use spotq::testing::{AgentStandIn, STATE};
use support::process::{Settings, WorkerProcess, http_get, signal};
use support::{counts, create_queue, send, unique};
use tokio::time::{Instant, sleep};

/// A queue whose messages stay invisible for 2 minutes unless released.
const VISIBILITY_SECS: &str = "120";

/// The default worker process, its calls to moto in turn.
fn in_turn() -> Settings {
    Settings {
        in_turn: true,
        ..Settings::default()
    }
}

/// Resolves once `done` answers true, polling; panics after `limit`, with what
/// `describe` says then.
async fn wait_until(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} not within {limit:?}: {}",
            describe()
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `GET /ready` at `addr` answers `status`.
async fn until_ready_is(addr: &str, status: u16, limit: Duration) {
    wait_until(
        limit,
        &format!("/ready {status}"),
        || http_get(addr, "/ready").0 == status,
        || format!("/ready answers {}", http_get(addr, "/ready").0),
    )
    .await;
}

/// Four messages of each kind: quick ones finish before the signal, medium ones within
/// the grace period, long ones never.
fn workload() -> Vec<String> {
    let mut bodies = Vec::new();
    for n in 0..4 {
        bodies.push(format!("quick{n}:100"));
        bodies.push(format!("medium{n}:1500"));
        bodies.push(format!("long{n}:600000"));
    }
    bodies
}

fn of_kind(kind: &str) -> BTreeSet<String> {
    workload()
        .into_iter()
        .filter(|body| body.starts_with(kind))
        .collect()
}

async fn loaded_queue(prefix: &str) -> SqsBackend {
    let queue = create_queue(
        &unique(prefix),
        &[(
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY_SECS.to_owned(),
        )],
    )
    .await;
    send(&queue, workload()).await;
    queue
}

/// Receives every visible message (releasing none); returns their bodies and receive
/// counts.
async fn receive_visible(queue: &SqsBackend) -> Vec<(String, u32)> {
    let request = ReceiveRequest {
        max_messages: 10,
        wait_time: Duration::ZERO,
        visibility_timeout: Some(Duration::from_secs(60)),
        attempt_id: None,
    };
    let mut received = Vec::new();
    loop {
        let batch = queue.receive(request).await.expect("receive");
        if batch.is_empty() {
            return received;
        }
        received.extend(
            batch
                .iter()
                .map(|message| (message.body.clone(), message.receive_count())),
        );
    }
}

/// Starts a worker, lets it take every message, signals it once, and checks the contract.
async fn drains_on(signal_name: &str, pid1: bool) {
    let queue = loaded_queue(&format!("drain-{}", signal_name.to_lowercase())).await;
    let settings = Settings { pid1, ..in_turn() };
    let mut worker = WorkerProcess::start(&queue, &settings);
    worker.wait_for("start", 12).await;

    let signalled = Instant::now();
    signal(worker.worker_pid(pid1), signal_name);
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();

    assert!(status.success(), "exit status {status}");
    // The long handlers run out the 3 s grace period, then their messages are released:
    // the worker must be gone before the 6 s stop timeout, when ECS would SIGKILL it.
    assert!(
        took < Duration::from_secs(settings.stop_timeout_secs),
        "took {took:?}"
    );
    let done = worker.bodies("done");
    let mut finished = of_kind("quick");
    finished.extend(of_kind("medium"));
    assert_eq!(
        done, finished,
        "quick and medium handlers finished within the grace period"
    );
    // Nothing left invisible: the long ones were released, the rest deleted.
    assert_eq!(counts(&queue).await, (4, 0, 0));
    let visible = receive_visible(&queue).await;
    let bodies: BTreeSet<String> = visible.iter().map(|(body, _)| body.clone()).collect();
    assert_eq!(
        bodies,
        of_kind("long"),
        "only unfinished messages are left, none deleted unprocessed"
    );
    assert!(visible.iter().all(|(_, count)| *count == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_within_the_grace_period_and_releases_the_rest() {
    drains_on("TERM", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_the_same_way() {
    drains_on("INT", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_of_a_fresh_pid_namespace_it_still_drains_on_sigterm() {
    drains_on("TERM", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_releases_everything_at_once() {
    let queue = loaded_queue("fast").await;
    let settings = Settings {
        grace_secs: 20,
        stop_timeout_secs: 30,
        http: true,
        ..in_turn()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    let addr = worker.http_addr().await;
    worker.wait_for("start", 12).await;
    worker.wait_for("done", 4).await;

    signal(worker.worker_pid(false), "TERM");
    // The first signal taken (the worker drains, no longer ready) before the second.
    until_ready_is(&addr, 503, Duration::from_secs(5)).await;
    let signalled = Instant::now();
    signal(worker.worker_pid(false), "TERM");
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();

    assert!(status.success(), "exit status {status}");
    // At once: the release, the last flush and the exit fit in ROOM, what the grace
    // period must leave of the stop timeout; nothing waits for the 20 s grace.
    assert!(
        took < ROOM,
        "took {took:?} after the second signal, more than {ROOM:?}"
    );
    assert_eq!(worker.bodies("done"), of_kind("quick"));
    assert_eq!(
        counts(&queue).await,
        (8, 0, 0),
        "medium and long messages released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_strands_held_messages_until_their_visibility_timeout() {
    let queue = loaded_queue("kill").await;
    let settings = in_turn();
    let mut worker = WorkerProcess::start(&queue, &settings);
    worker.wait_for("start", 12).await;
    worker.wait_for("done", 4).await;
    // The quick ones' deletes are batched: wait until they have landed.
    let start = Instant::now();
    while counts(&queue).await != (0, 8, 0) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            counts(&queue).await
        );
        sleep(Duration::from_millis(20)).await;
    }

    signal(worker.worker_pid(false), "KILL");
    let status = worker.wait_exit(Duration::from_secs(5)).await;
    assert!(!status.success());
    sleep(Duration::from_secs(2)).await;
    // What SIGTERM handling prevents: 8 messages invisible for up to 120 s, nobody's.
    assert_eq!(counts(&queue).await, (0, 8, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_protection_is_held_while_handlers_run_and_dropped_at_shutdown() {
    let agent = AgentStandIn::start().await;
    let queue = create_queue(&unique("protect"), &[]).await;
    let settings = Settings {
        agent_uri: Some(agent.uri()),
        http: true,
        ..in_turn()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    // Idle: a long-polling worker holds no protection. Ready means it runs and a
    // receive (a 1 s long poll of the empty queue) has answered; then two more.
    let addr = worker.http_addr().await;
    until_ready_is(&addr, 200, Duration::from_secs(30)).await;
    sleep(Duration::from_secs(2)).await;
    assert!(agent.calls().is_empty(), "{:?}", agent.calls());

    send(&queue, ["job0:1500".to_owned(), "job1:1500".to_owned()]).await;
    worker.wait_for("start", 2).await;
    let calls = agent.wait_for_calls(1).await;
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("PUT", STATE)
    );
    assert_eq!(calls[0].body["ProtectionEnabled"], serde_json::json!(true));
    assert_eq!(calls[0].body["ExpiresInMinutes"], serde_json::json!(60));
    worker.wait_for("done", 2).await;

    signal(worker.worker_pid(false), "TERM");
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    let calls = agent.calls();
    let states: Vec<_> = calls
        .iter()
        .map(|call| call.body["ProtectionEnabled"].clone())
        .collect();
    assert_eq!(
        states,
        [serde_json::json!(true), serde_json::json!(false)],
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_carry_no_message_body() {
    let queue = create_queue(&unique("logs"), &[]).await;
    send(
        &queue,
        ["secret-payload:10".to_owned(), "not a job".to_owned()],
    )
    .await;
    let settings = Settings {
        concurrency: 4,
        json_logs: true,
        ..in_turn()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    worker.wait_for("done", 1).await;
    // The malformed one fails and is logged.
    wait_until(
        Duration::from_secs(30),
        "a logged failure",
        || {
            worker
                .log_lines()
                .iter()
                .any(|line| line.contains("handler failed"))
        },
        || format!("{:?}", worker.log_lines()),
    )
    .await;
    signal(worker.worker_pid(false), "TERM");
    assert!(worker.wait_exit(Duration::from_secs(10)).await.success());

    let lines = worker.log_lines();
    assert!(lines.len() >= 3, "started, a failure, stopped: {lines:?}");
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
        assert!(
            !line.contains("secret-payload"),
            "a body was logged: {line}"
        );
    }
    assert!(
        lines.iter().any(|line| line.contains("handler failed")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served_and_readiness_drops_while_draining() {
    let queue = create_queue(&unique("http"), &[]).await;
    // The long handler outlasts the test: it still runs when the worker drains.
    send(
        &queue,
        [
            "quick0:10".to_owned(),
            "long0:600000".to_owned(),
            "waiting:1".to_owned(),
        ],
    )
    .await;
    let settings = Settings {
        grace_secs: 5,
        stop_timeout_secs: 8,
        concurrency: 2,
        http: true,
        env: vec![("SPOTQ_RUNNING_TASKS".to_owned(), "2".to_owned())],
        ..in_turn()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    let addr = worker.http_addr().await;
    worker.wait_for("start", 2).await;
    worker.wait_for("done", 1).await;

    let labels = format!(
        "{{queue=\"{}\",worker=\"{}\"}}",
        queue_name(&queue),
        queue_name(&queue)
    );
    let expected = [
        format!("spotq_messages_received_total{labels} 3"),
        format!("spotq_messages_deleted_total{labels} 2"),
        format!("spotq_concurrency{labels} 2"),
        format!("spotq_messages_in_flight{labels} 1"),
        // Sampled from moto: the long message is in flight, nothing waits; over the 2
        // tasks the test worker is told share the queue.
        format!("spotq_queue_messages_visible{labels} 0"),
        format!("spotq_queue_messages_not_visible{labels} 1"),
        format!("spotq_backlog_per_task{labels} 0.5"),
    ];
    // Until the third message is done and counted, and a backlog sample taken after it
    // is published (the worker samples and publishes once a second).
    wait_until(
        Duration::from_secs(30),
        "the metrics",
        || {
            let (status, metrics) = http_get(&addr, "/metrics");
            status == 200 && expected.iter().all(|line| metrics.contains(line))
        },
        || {
            let (status, metrics) = http_get(&addr, "/metrics");
            let missing: Vec<_> = expected
                .iter()
                .filter(|line| !metrics.contains(*line))
                .collect();
            format!("status {status}, no {missing:?} in\n{metrics}")
        },
    )
    .await;
    assert_eq!(http_get(&addr, "/ready").0, 200);
    assert_eq!(http_get(&addr, "/health"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(&addr, "/nope").0, 404);

    signal(worker.worker_pid(false), "TERM");
    // Draining: the long handler runs until the 5 s grace period ends.
    until_ready_is(&addr, 503, Duration::from_secs(3)).await;
    assert_eq!(
        http_get(&addr, "/health").0,
        200,
        "still live while draining"
    );
    assert!(
        worker.running(),
        "the worker still drains: /ready and /health were its answers while draining"
    );
    assert!(worker.wait_exit(Duration::from_secs(10)).await.success());
}

fn queue_name(queue: &SqsBackend) -> String {
    queue
        .queue_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}
