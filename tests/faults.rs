//! Fault injection on the real SDK path: `aws-sdk-sqs` through `spotq-fault-proxy`
//! in front of moto. Each test checks that the faults fired (the proxy's stats) and
//! that no message was lost: every one deleted once its handler succeeded, and the
//! queue empty at the end.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata as _;
use aws_sdk_sqs::types::QueueAttributeName;
use spotq::backend::{Backend, ReceiveRequest};
use spotq::{
    Message, Outcome, SqsBackend, Worker, backend::BackendError, config::Heartbeat,
    telemetry::health::Health,
};
use support::in_turn::InTurn;
use support::process::{Settings, WorkerProcess, signal};
use support::proxy::FaultProxy;
use support::{counts, create_queue, send, unique, until};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};

/// The proxy's throttling answer is throttling to the SDK (which retries it, three
/// attempts in all by default) and to spotq's classifier; a 500 is transient; a reset
/// is a connection error; without a rule, calls pass through on a kept-alive
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_are_sorted_as_real_ones() {
    let queue = create_queue(&unique("sorted"), &[]).await;
    let proxy = FaultProxy::start(&["GetQueueAttributes:throttle:always"], 1);
    let through = proxy.backend(&queue).await;

    let error = through.attributes().await.expect_err("always throttled");
    assert!(matches!(error, BackendError::Throttled { .. }), "{error:?}");
    let stats = proxy.stats().await;
    assert_eq!(
        stats.faults("GetQueueAttributes", "throttle"),
        3,
        "{stats:?}"
    );
    assert_eq!(stats.requests("GetQueueAttributes"), 3, "the SDK retried");
    // The SDK reads it as SQS's modeled throttling error, whose code its retry
    // classifier lists among the throttling errors.
    let error = through
        .client()
        .get_queue_attributes()
        .queue_url(through.queue_url())
        .send()
        .await
        .expect_err("always throttled")
        .into_service_error();
    assert!(error.is_request_throttled(), "{error:?}");
    assert_eq!(error.code(), Some("RequestThrottled"));

    proxy.set_rules(&["GetQueueAttributes:500:always"]).await;
    let error = through.attributes().await.expect_err("always 500");
    assert!(matches!(error, BackendError::Transient { .. }), "{error:?}");
    proxy.set_rules(&["GetQueueAttributes:reset:count=3"]).await;
    let error = through.attributes().await.expect_err("three resets");
    assert!(matches!(error, BackendError::Transient { .. }), "{error:?}");

    proxy.set_rules(&[]).await;
    let before = proxy.stats().await;
    for _ in 0..10 {
        through.attributes().await.expect("no rule: forwarded");
    }
    let stats = proxy.stats().await;
    // moto closes every connection it serves; the proxy keeps the client's alive. (A
    // connection is back in its pool a moment after its answer, so a call right after
    // one may still open another.)
    let opened = stats.connections - before.connections;
    assert!(opened <= 4, "10 calls in a row opened {opened} connections");
    assert_eq!(stats.faults("GetQueueAttributes", "500"), 3, "{stats:?}");
    assert_eq!(stats.faults("GetQueueAttributes", "reset"), 3, "{stats:?}");
    assert_eq!(stats.requests("GetQueueAttributes"), 22, "{stats:?}");
    assert!(proxy.stop(), "the proxy exits 0 on SIGTERM");
}

/// What the handlers saw, by message id: attempts, successes (after which the worker
/// deletes the message) and bodies.
#[derive(Debug, Default)]
struct Ledger {
    attempts: HashMap<String, u32>,
    successes: HashMap<String, u32>,
    bodies: HashMap<String, String>,
    /// Each delivery's receive count and time, by message id.
    deliveries: HashMap<String, Vec<(u32, Instant)>>,
}

impl Ledger {
    /// The bodies of the messages that succeeded.
    fn succeeded(&self) -> BTreeSet<&str> {
        self.successes
            .keys()
            .filter_map(|id| self.bodies.get(id))
            .map(String::as_str)
            .collect()
    }
}

type SharedLedger = Arc<Mutex<Ledger>>;

fn lock(ledger: &SharedLedger) -> MutexGuard<'_, Ledger> {
    ledger.lock().expect("the ledger's lock")
}

fn bodies(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

/// Every tenth body fails its first attempt (and is retried through a visibility
/// change); the rest succeed at once.
fn fails_once(body: &str) -> bool {
    body.ends_with('0')
}

/// A handler that records into `ledger`, failing the first attempt of the bodies
/// `fail_first` picks.
fn recording(
    ledger: &SharedLedger,
    fail_first: fn(&str) -> bool,
) -> impl Fn(Message) -> std::future::Ready<Outcome> + Send + Sync + 'static {
    let ledger = Arc::clone(ledger);
    move |message: Message| {
        let mut ledger = lock(&ledger);
        let id = message.id().to_owned();
        let body = message.body().to_owned();
        let attempt = {
            let attempts = ledger.attempts.entry(id.clone()).or_default();
            *attempts += 1;
            *attempts
        };
        let fails = attempt == 1 && fail_first(&body);
        ledger
            .deliveries
            .entry(id.clone())
            .or_default()
            .push((message.receive_count(), Instant::now()));
        ledger.bodies.insert(id.clone(), body);
        if fails {
            return std::future::ready(Outcome::fail("the first attempt fails"));
        }
        *ledger.successes.entry(id).or_default() += 1;
        std::future::ready(Outcome::Ack)
    }
}

/// Resolves once `count` distinct bodies have succeeded.
fn all_succeeded(ledger: &SharedLedger, count: usize, limit: Duration) -> impl Future<Output = ()> {
    let ledger = Arc::clone(ledger);
    until(limit, move || lock(&ledger).succeeded().len() == count)
}

/// A queue whose messages a lapsed visibility timeout cannot bring back during a test,
/// so every second receive of a message is one the worker asked for.
async fn queue_with(prefix: &str, count: usize) -> SqsBackend {
    let queue = create_queue(
        &unique(prefix),
        &[(QueueAttributeName::VisibilityTimeout, "120".to_owned())],
    )
    .await;
    send(&queue, bodies(prefix, count)).await;
    assert_eq!(counts(&queue).await, (count as u64, 0, 0));
    queue
}

/// A worker with two pollers and quick retries, as the tests below run it. Its receives
/// (and deletes) reach moto one at a time: moto's receive checks a message's visibility
/// and marks it received without a lock, so two at once could both take a message and
/// the counts below would not be the worker's.
fn worker(backend: SqsBackend) -> spotq::WorkerBuilder {
    Worker::builder(InTurn::new(&backend))
        .concurrency(20)
        .pollers(2)
        .wait_time(Duration::from_secs(1))
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(1))
}

/// What [`each_succeeded_once`] counted.
#[derive(Debug)]
struct Tally {
    /// Handler successes, each followed by a delete.
    successes: u64,
    /// Deliveries, as the worker counts receives.
    deliveries: u64,
}

/// Every message (by id) was delivered as often as its handler asked (twice for the
/// bodies `fail_first` picks, once for the rest) and succeeded once; every body in `all`
/// was among them, and no other. Each body was sent once, so there is one message per
/// body.
fn each_succeeded_once(
    ledger: &SharedLedger,
    all: &[String],
    fail_first: fn(&str) -> bool,
) -> Tally {
    let ledger = lock(ledger);
    let mut tally = Tally {
        successes: 0,
        deliveries: 0,
    };
    for (id, deliveries) in &ledger.deliveries {
        let body = &ledger.bodies[id];
        let successes = ledger.successes.get(id).copied().unwrap_or(0);
        let expected = if fail_first(body) { 2 } else { 1 };
        assert_eq!(
            deliveries.len(),
            expected,
            "{body} ({id}): delivered {deliveries:?}"
        );
        assert_eq!(
            successes, 1,
            "{body} ({id}) succeeded {successes} times, delivered {deliveries:?}"
        );
        tally.successes += u64::from(successes);
        tally.deliveries += deliveries.len() as u64;
    }
    let expected: BTreeSet<&str> = all.iter().map(String::as_str).collect();
    assert_eq!(ledger.succeeded(), expected);
    assert_eq!(
        ledger.deliveries.len(),
        all.len(),
        "one message per body: {ledger:?}"
    );
    tally
}

fn ledger_of(deliveries: &[(&str, &str, u64, bool)]) -> SharedLedger {
    let ledger = SharedLedger::default();
    let start = Instant::now();
    {
        let mut ledger = lock(&ledger);
        for (id, body, millis, succeeded) in deliveries {
            let at = start + Duration::from_millis(*millis);
            ledger.bodies.insert((*id).to_owned(), (*body).to_owned());
            ledger
                .deliveries
                .entry((*id).to_owned())
                .or_default()
                .push((1, at));
            *ledger.attempts.entry((*id).to_owned()).or_default() += 1;
            if *succeeded {
                *ledger.successes.entry((*id).to_owned()).or_default() += 1;
            }
        }
    }
    ledger
}

#[test]
fn each_message_delivered_and_succeeded_once_passes() {
    let ledger = ledger_of(&[("m1", "a-1", 0, true), ("m2", "a-2", 3, true)]);
    let all = ["a-1".to_owned(), "a-2".to_owned()];
    let tally = each_succeeded_once(&ledger, &all, |_| false);
    assert_eq!((tally.successes, tally.deliveries), (2, 2));
}

/// However close together: with receives in turn, two receives never share a message.
#[test]
#[should_panic(expected = "delivered")]
fn a_second_delivery_moments_later_fails() {
    let ledger = ledger_of(&[("m1", "a-1", 0, true), ("m1", "a-1", 3, true)]);
    each_succeeded_once(&ledger, &["a-1".to_owned()], |_| false);
}

#[test]
#[should_panic(expected = "delivered")]
fn a_redelivery_the_worker_could_have_caused_fails() {
    let ledger = ledger_of(&[("m1", "a-1", 0, true), ("m1", "a-1", 1_500, true)]);
    each_succeeded_once(&ledger, &["a-1".to_owned()], |_| false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_deletes_and_visibility_changes_lose_nothing() {
    const COUNT: usize = 100;
    let queue = queue_with("throttled", COUNT).await;
    // The first call of each action is throttled in each of the SDK's three attempts,
    // so spotq retries it; then 30% of the calls.
    let proxy = FaultProxy::start(
        &[
            "DeleteMessageBatch:throttle:count=3",
            "DeleteMessageBatch:throttle:30%",
            "ChangeMessageVisibilityBatch:throttle:count=3",
            "ChangeMessageVisibilityBatch:throttle:30%",
        ],
        11,
    );
    let ledger = SharedLedger::default();
    let report = worker(proxy.backend(&queue).await)
        .handler(recording(&ledger, fails_once))
        .run_until(all_succeeded(&ledger, COUNT, Duration::from_secs(40)))
        .await
        .expect("the worker runs");

    let stats = proxy.stats().await;
    eprintln!("{stats:?}\n{report:?}");
    assert!(
        stats.faults("DeleteMessageBatch", "throttle") >= 1,
        "{stats:?}"
    );
    assert!(
        stats.faults("ChangeMessageVisibilityBatch", "throttle") >= 1,
        "{stats:?}"
    );
    let tally = each_succeeded_once(&ledger, &bodies("throttled", COUNT), fails_once);
    assert!(
        report.failed >= 10 && report.failed == report.retried,
        "{report:?}"
    );
    assert_eq!(report.succeeded, tally.successes);
    assert_eq!(report.deleted, tally.successes, "{report:?}");
    assert_eq!(
        (report.delete_failed, report.visibility_failed),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(counts(&queue).await, (0, 0, 0), "every message deleted");
}

/// `partial` reports entries failed that the queue did delete: the worker sends them
/// again (SQS, and moto, accept a second delete of a deleted message), so each counts
/// as deleted once and none is received again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_reported_failed_in_a_batch_are_sent_again() {
    const COUNT: usize = 60;
    let queue = queue_with("partial", COUNT).await;
    // A count, not a rate: at 50 % a lone entry sent again could draw eight partial
    // answers in a row (1 in 128) and be given up, which is not what this checks.
    let proxy = FaultProxy::start(&["DeleteMessageBatch:partial:count=4"], 12);
    let ledger = SharedLedger::default();
    let report = worker(proxy.backend(&queue).await)
        .handler(recording(&ledger, |_| false))
        .run_until(all_succeeded(&ledger, COUNT, Duration::from_secs(30)))
        .await
        .expect("the worker runs");

    let stats = proxy.stats().await;
    eprintln!("{stats:?}\n{report:?}");
    let partial = stats.faults("DeleteMessageBatch", "partial");
    assert!(partial >= 1, "{stats:?}");
    // Each partial answer was followed by a call that sent its failed entries again.
    assert!(stats.requests("DeleteMessageBatch") > partial, "{stats:?}");
    let tally = each_succeeded_once(&ledger, &bodies("partial", COUNT), |_| false);
    assert_eq!(report.deleted, tally.successes, "{report:?}");
    assert_eq!(
        (report.delete_failed, report.stale_receipts),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(report.received, tally.deliveries, "no message came back");
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

/// Receives that fail (500, 503, a reset connection) or answer slowly: the worker goes
/// on receiving. The proxy faults a receive before forwarding it, so no message is
/// taken by a receive whose answer is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_slow_receives_do_not_stop_the_worker() {
    const COUNT: usize = 100;
    let queue = queue_with("receives", COUNT).await;
    let proxy = FaultProxy::start(
        &[
            // One of each first, in this order (a rule sees a request only when no
            // earlier rule fired for it), then at a rate.
            "ReceiveMessage:reset:count=1",
            "ReceiveMessage:500:count=1",
            "ReceiveMessage:503:count=1",
            "ReceiveMessage:slow=500:count=1",
            "ReceiveMessage:reset:5%",
            "ReceiveMessage:500:5%",
            "ReceiveMessage:503:5%",
            "ReceiveMessage:slow=200:10%",
        ],
        13,
    );
    let ledger = SharedLedger::default();
    let report = worker(proxy.backend(&queue).await)
        .handler(recording(&ledger, fails_once))
        .run_until(all_succeeded(&ledger, COUNT, Duration::from_secs(40)))
        .await
        .expect("the worker runs");

    let stats = proxy.stats().await;
    eprintln!("{stats:?}\n{report:?}");
    for fault in ["reset", "500", "503", "slow"] {
        assert!(
            stats.faults("ReceiveMessage", fault) >= 1,
            "{fault}: {stats:?}"
        );
    }
    let tally = each_succeeded_once(&ledger, &bodies("receives", COUNT), fails_once);
    assert_eq!(report.deleted, tally.successes, "{report:?}");
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

/// The worker's first call, `GetQueueAttributes`, is throttled: five times, more than
/// the SDK's three attempts of one call, so spotq's own preflight retry is needed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_start_is_retried() {
    const COUNT: usize = 10;
    let queue = queue_with("start", COUNT).await;
    let proxy = FaultProxy::start(&["GetQueueAttributes:throttle:count=5"], 14);
    let ledger = SharedLedger::default();
    let report = worker(proxy.backend(&queue).await)
        .backlog_interval(None)
        .handler(recording(&ledger, |_| false))
        .run_until(all_succeeded(&ledger, COUNT, Duration::from_secs(30)))
        .await
        .expect("the worker starts despite the throttling");

    let stats = proxy.stats().await;
    eprintln!("{stats:?}\n{report:?}");
    assert_eq!(
        stats.faults("GetQueueAttributes", "throttle"),
        5,
        "{stats:?}"
    );
    assert_eq!(stats.requests("GetQueueAttributes"), 6, "{stats:?}");
    let tally = each_succeeded_once(&ledger, &bodies("start", COUNT), |_| false);
    assert_eq!(report.deleted, tally.successes);
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

/// The endpoint goes away for 5 s mid-run (every connection closed at once, as an
/// unreachable endpoint would) and comes back: the pollers back off (50 ms doubling to
/// 5 s, jittered) rather than spin, the worker recovers without a restart, and the
/// messages sent during the outage are processed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_waited_out_with_backoff_and_nothing_is_lost() {
    const BEFORE: usize = 20;
    let queue = queue_with("outage", BEFORE).await;
    let during = bodies("outage-late", 20);
    let proxy = FaultProxy::start(&[], 15);
    let ledger = SharedLedger::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = worker(proxy.backend(&queue).await)
        .backlog_interval(None)
        .handler(recording(&ledger, |_| false))
        .run_until(async {
            let _ = stopped.await;
        });
    let script = async {
        all_succeeded(&ledger, BEFORE, Duration::from_secs(20)).await;
        let before = proxy.stats().await;
        proxy.down().await;
        send(&queue, during.clone()).await;
        sleep(Duration::from_secs(5)).await;
        let after = proxy.stats().await;
        proxy.up().await;
        all_succeeded(&ledger, BEFORE + during.len(), Duration::from_secs(20)).await;
        let _ = stop.send(());
        (before, after)
    };
    let (report, (before, after)) = tokio::join!(worker, script);
    let report = report.expect("the worker runs");

    let attempts = after.requests("ReceiveMessage") - before.requests("ReceiveMessage");
    let refused = after.faults("ReceiveMessage", "down") - before.faults("ReceiveMessage", "down");
    eprintln!("outage: {attempts} receive attempts in 5 s, {refused} refused; {report:?}");
    assert!(
        refused >= 2,
        "both pollers tried during the outage: {after:?}"
    );
    assert!(
        attempts < 100,
        "{attempts} receive attempts in 5 s with 2 pollers: a busy loop"
    );
    let mut all = bodies("outage", BEFORE);
    all.extend(during);
    let tally = each_succeeded_once(&ledger, &all, |_| false);
    assert!(report.receive_errors >= 2, "{report:?}");
    assert_eq!(report.deleted, tally.successes, "{report:?}");
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

/// Readiness follows the queue: after 3 receives in a row fail the worker reports
/// itself not ready, and ready again on the next receive that succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_lost_while_receives_fail_and_comes_back() {
    let queue = queue_with("ready", 0).await;
    let proxy = FaultProxy::start(&[], 16);
    let health = Health::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = Worker::builder(proxy.backend(&queue).await)
        .wait_time(Duration::from_secs(1))
        .backlog_interval(None)
        .health(health.clone())
        .handler(|_: Message| async {})
        .run_until(async {
            let _ = stopped.await;
        });
    let script = async {
        until(Duration::from_secs(10), || health.is_ready()).await;
        proxy.down().await;
        let lost = timeout(Duration::from_secs(10), async {
            while health.is_ready() {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let refused = proxy.stats().await.faults("ReceiveMessage", "down");
        proxy.up().await;
        let back = timeout(Duration::from_secs(15), async {
            while !health.is_ready() {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let _ = stop.send(());
        (lost.is_ok(), refused, back.is_ok())
    };
    let (report, (lost, refused, back)) = tokio::join!(worker, script);
    report.expect("the worker runs");
    assert!(refused >= 3, "receives failed: {refused}");
    assert!(
        lost,
        "still ready after {refused} receives failed in a row (10 s of outage)"
    );
    assert!(back, "not ready again within 15 s of the endpoint's return");
}

/// A worker process SIGTERMed while half its visibility changes are throttled (and the
/// first release batch in all three of the SDK's attempts): the releases of the
/// messages it held are retried, and once it has exited every one is visible at once
/// (the queue's visibility timeout is 120 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_messages_are_released_at_sigterm_through_throttling() {
    const HELD: usize = 16;
    let queue = create_queue(
        &unique("release"),
        &[(QueueAttributeName::VisibilityTimeout, "120".to_owned())],
    )
    .await;
    let held: BTreeSet<String> = (0..HELD).map(|n| format!("held{n}:600000")).collect();
    send(&queue, held.iter().cloned()).await;
    let proxy = FaultProxy::start(
        &[
            "ChangeMessageVisibilityBatch:throttle:count=3",
            "ChangeMessageVisibilityBatch:throttle:50%",
        ],
        17,
    );
    let settings = Settings {
        grace_secs: 1,
        stop_timeout_secs: 10,
        concurrency: HELD,
        env: vec![
            ("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint()),
            ("AWS_ENDPOINT_URL_SQS".to_owned(), proxy.endpoint()),
        ],
        ..Settings::default()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    worker.wait_for("start", HELD).await;
    assert_eq!(counts(&queue).await, (0, HELD as u64, 0));

    signal(worker.worker_pid(false), "TERM");
    let status = worker.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    let stats = proxy.stats().await;
    eprintln!("release: {stats:?}");
    assert!(
        stats.faults("ChangeMessageVisibilityBatch", "throttle") >= 1,
        "{stats:?}"
    );
    assert!(worker.bodies("done").is_empty());
    assert_eq!(
        counts(&queue).await,
        (HELD as u64, 0, 0),
        "every held message visible right after the exit"
    );
    let request = ReceiveRequest {
        max_messages: 10,
        wait_time: Duration::ZERO,
        visibility_timeout: Some(Duration::from_secs(60)),
        attempt_id: None,
    };
    let mut received = BTreeSet::new();
    for _ in 0..10 {
        let batch = queue.receive(request).await.expect("receive");
        if batch.is_empty() {
            break;
        }
        received.extend(batch.into_iter().map(|message| message.body));
    }
    assert_eq!(
        received, held,
        "a receive right after the exit gets them all"
    );
}

/// Deletes and visibility changes that never get an answer (the proxy holds them for a
/// minute) do not hold a SIGTERMed worker past its stop timeout: it gives them up at the
/// hard deadline and exits 0 before SIGKILL would come. What they leave is what a
/// queue that never answered leaves: the messages are received again after their
/// visibility timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_never_answer_do_not_hold_the_exit_past_the_stop_timeout() {
    const QUICK: usize = 8;
    const LONG: usize = 8;
    let queue = create_queue(
        &unique("hang"),
        &[(QueueAttributeName::VisibilityTimeout, "120".to_owned())],
    )
    .await;
    let mut all: Vec<String> = (0..QUICK).map(|n| format!("quick{n}:10")).collect();
    all.extend((0..LONG).map(|n| format!("long{n}:600000")));
    send(&queue, all).await;
    let proxy = FaultProxy::start(
        &[
            "DeleteMessageBatch:slow=60000:always",
            "ChangeMessageVisibilityBatch:slow=60000:always",
        ],
        18,
    );
    let settings = Settings {
        grace_secs: 1,
        stop_timeout_secs: 5,
        concurrency: QUICK + LONG,
        env: vec![
            ("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint()),
            ("AWS_ENDPOINT_URL_SQS".to_owned(), proxy.endpoint()),
        ],
        ..Settings::default()
    };
    let mut worker = WorkerProcess::start(&queue, &settings);
    worker.wait_for("start", QUICK + LONG).await;
    worker.wait_for("done", QUICK).await;

    let signalled = Instant::now();
    signal(worker.worker_pid(false), "TERM");
    let status = worker.wait_exit(Duration::from_secs(20)).await;
    let took = signalled.elapsed();
    let stats = proxy.stats().await;
    eprintln!("{status} after {took:?}; {stats:?}");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(settings.stop_timeout_secs),
        "exited {took:?} after SIGTERM, past the {} s stop timeout",
        settings.stop_timeout_secs
    );
    assert!(stats.faults("DeleteMessageBatch", "slow") >= 1, "{stats:?}");
    assert!(
        stats.faults("ChangeMessageVisibilityBatch", "slow") >= 1,
        "{stats:?}"
    );
    // Requests given up during their delay never reach the queue.
    assert_eq!(counts(&queue).await, (0, (QUICK + LONG) as u64, 0));
}

/// Heartbeats of long handlers under heavy throttling (60% of the visibility changes,
/// which the SDK retries inside a call with backoffs of up to seconds), then shutdown:
/// no heartbeat (or an SDK retry of one) lands after the release of its message, so
/// every released message stays visible from the worker's return on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_heartbeats_never_hide_a_released_message() {
    const HELD: usize = 16;
    let queue = queue_with("rehide", HELD).await;
    let proxy = FaultProxy::start(&["ChangeMessageVisibilityBatch:throttle:60%"], 19);
    let started = Arc::new(AtomicUsize::new(0));
    let handler_started = Arc::clone(&started);
    let report = worker(proxy.backend(&queue).await)
        .concurrency(HELD)
        .backlog_interval(None)
        .visibility_timeout(Duration::from_secs(4))
        .heartbeat(Heartbeat::Every(Duration::from_secs(1)))
        .stop_timeout(Duration::from_secs(8))
        .shutdown_grace(Duration::from_secs(2))
        .handler(move |_: Message| {
            handler_started.fetch_add(1, Ordering::SeqCst);
            async { sleep(Duration::from_secs(600)).await }
        })
        .run_until(async {
            until(Duration::from_secs(20), || {
                started.load(Ordering::SeqCst) == HELD
            })
            .await;
            // Heartbeats (and their retries) under way when shutdown begins.
            sleep(Duration::from_secs(2)).await;
        })
        .await
        .expect("the worker runs");
    let returned = Instant::now();

    let mut seen = Vec::new();
    while returned.elapsed() < Duration::from_secs(4) {
        seen.push(counts(&queue).await);
        sleep(Duration::from_millis(100)).await;
    }
    let stats = proxy.stats().await;
    eprintln!("{stats:?}\n{report:?}");
    assert!(
        stats.faults("ChangeMessageVisibilityBatch", "throttle") >= 3,
        "{stats:?}"
    );
    assert!(report.heartbeats >= 1, "{report:?}");
    assert_eq!(report.released, HELD as u64, "{report:?}");
    assert!(
        seen.iter().all(|counts| *counts == (HELD as u64, 0, 0)),
        "a released message was hidden again after the worker returned: {seen:?}"
    );
}

/// A heartbeat call that never gets an answer (the SDK sets no call timeout, so a
/// connection that goes silent holds a call for as long as TCP does) must not keep its
/// messages from being released at shutdown, and the report must not count a release
/// that was never sent as released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_call_that_never_answers_does_not_hold_back_the_release() {
    const HELD: usize = 16;
    let queue = queue_with("hungbeat", HELD).await;
    let proxy = FaultProxy::start(&[], 20);
    let started = Arc::new(AtomicUsize::new(0));
    let handler_started = Arc::clone(&started);
    let report = worker(proxy.backend(&queue).await)
        .concurrency(HELD)
        .backlog_interval(None)
        .visibility_timeout(Duration::from_secs(30))
        .heartbeat(Heartbeat::Every(Duration::from_secs(1)))
        .stop_timeout(Duration::from_secs(6))
        .shutdown_grace(Duration::from_secs(1))
        .handler(move |_: Message| {
            handler_started.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_secs(600))
        })
        .run_until(async {
            until(Duration::from_secs(20), || {
                started.load(Ordering::SeqCst) == HELD
            })
            .await;
            // The next heartbeat batch (10 of the 16 messages) hangs; the rest pass.
            proxy
                .set_rules(&["ChangeMessageVisibilityBatch:slow=60000:count=1"])
                .await;
            sleep(Duration::from_secs(2)).await;
        })
        .await
        .expect("the worker runs");
    let left = counts(&queue).await;

    let stats = proxy.stats().await;
    eprintln!("{stats:?}\n{report:?}\n{left:?}");
    assert_eq!(stats.faults("ChangeMessageVisibilityBatch", "slow"), 1);
    assert_eq!(
        left,
        (HELD as u64, 0, 0),
        "every held message visible after the worker returned"
    );
    assert_eq!(report.released, left.0, "{report:?}");
}

/// A continuation whose send never gets an answer when shutdown comes: the send is
/// given up and the message released, visible at once after the worker returns (long
/// before the stop timeout), with no continuation sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_stuck_in_sending_at_shutdown_releases_its_message() {
    let queue = queue_with("handon", 1).await;
    let proxy = FaultProxy::start(&["SendMessage:slow=60000:always"], 21);
    let handed = Arc::new(AtomicUsize::new(0));
    let handler_handed = Arc::clone(&handed);
    let shutdown_at = Mutex::new(None);
    let report = worker(proxy.backend(&queue).await)
        .backlog_interval(None)
        .stop_timeout(Duration::from_secs(6))
        .shutdown_grace(Duration::from_secs(1))
        .handler(move |_: Message| {
            handler_handed.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Outcome::Continue(spotq::backend::SendMessage::new("next")))
        })
        .run_until(async {
            until(Duration::from_secs(20), || {
                handed.load(Ordering::SeqCst) == 1
            })
            .await;
            // The send is under way: the proxy holds it.
            while proxy.stats().await.faults("SendMessage", "slow") == 0 {
                sleep(Duration::from_millis(20)).await;
            }
            *shutdown_at.lock().expect("lock") = Some(Instant::now());
        })
        .await
        .expect("the worker runs");
    let took = shutdown_at
        .lock()
        .expect("lock")
        .expect("the shutdown began")
        .elapsed();
    let left = counts(&queue).await;

    let stats = proxy.stats().await;
    eprintln!("{stats:?}\n{report:?}\n{left:?}");
    assert_eq!(stats.faults("SendMessage", "slow"), 1, "{stats:?}");
    // A long poll still open as shutdown began may take the message again once it is
    // released; it releases it too: every receive ends in a release, none handed on.
    assert_eq!(report.continued, 0, "{report:?}");
    assert!(report.released >= 1, "{report:?}");
    assert_eq!(report.released, report.received, "{report:?}");
    assert_eq!(
        left,
        (1, 0, 0),
        "the message released, no continuation sent"
    );
    assert!(
        took < Duration::from_secs(6),
        "{took:?} from the shutdown: the worker waited for the send past the stop timeout"
    );
}

/// A client whose attempts time out after `attempt` and whose calls after `operation`.
async fn with_timeouts(
    proxy: &FaultProxy,
    queue: &SqsBackend,
    attempt: u64,
    operation: u64,
) -> SqsBackend {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(attempt))
                .operation_timeout(Duration::from_secs(operation))
                .build(),
        )
        .load()
        .await;
    let sqs = aws_sdk_sqs::config::Builder::from(&config)
        .endpoint_url(proxy.endpoint())
        .build();
    SqsBackend::new(aws_sdk_sqs::Client::from_conf(sqs), queue.queue_url())
}

/// An endpoint that accepts a call and never answers: the call ends by the client's
/// timeouts as a transient error (retried like any), and a client configured without
/// them gets spotq's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_answers_ends_by_its_timeout() {
    let queue = create_queue(&unique("silent"), &[]).await;
    let proxy = FaultProxy::start(&["GetQueueAttributes:hang:always"], 21);
    let defaults = proxy.backend(&queue).await;
    let timeouts = defaults
        .client()
        .config()
        .timeout_config()
        .expect("timeouts")
        .clone();
    assert_eq!(
        (
            timeouts.operation_attempt_timeout(),
            timeouts.operation_timeout()
        ),
        (
            Some(spotq::backend::ATTEMPT_TIMEOUT),
            Some(spotq::backend::OPERATION_TIMEOUT)
        ),
        "a client without timeouts gets the defaults"
    );

    let through = with_timeouts(&proxy, &queue, 1, 3).await;
    let error = timeout(Duration::from_secs(30), through.attributes())
        .await
        .expect("bounded by the client's timeouts")
        .expect_err("never answered");
    assert!(matches!(error, BackendError::Transient { .. }), "{error:?}");
    assert!(error.is_retryable());
    let stats = proxy.stats().await;
    assert!(
        stats.faults("GetQueueAttributes", "hang") >= 2,
        "the SDK tried again after a timed-out attempt: {stats:?}"
    );
}

/// A long poll is not cut by the attempt timeout: it gets its wait on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_outlasts_the_attempt_timeout_by_its_wait() {
    let queue = create_queue(&unique("long-poll"), &[]).await;
    let proxy = FaultProxy::start(&[], 22);
    let through = with_timeouts(&proxy, &queue, 1, 2).await;
    let request = ReceiveRequest {
        max_messages: 10,
        wait_time: Duration::from_secs(3),
        visibility_timeout: None,
        attempt_id: None,
    };
    let started = Instant::now();
    let received = through
        .receive(request)
        .await
        .expect("an empty long poll is no timeout");
    assert!(received.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "moto held the poll for its wait: {:?}",
        started.elapsed()
    );
}

/// As a new user would meet it: the queue's endpoint accepts connections and never
/// answers, and the task is stopped 3 s after it started. The worker, still reading
/// its queue's attributes, exits 0 well before its 10 s stop timeout, when ECS would
/// SIGKILL it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_endpoint_never_answers_exits_before_its_stop_timeout() {
    let queue = create_queue(&unique("silent-start"), &[]).await;
    send(&queue, ["job:10".to_owned()]).await;
    let proxy = FaultProxy::start(&["*:hang:always"], 23);
    let settings = Settings {
        grace_secs: 5,
        stop_timeout_secs: 10,
        env: vec![
            ("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint()),
            ("AWS_ENDPOINT_URL_SQS".to_owned(), proxy.endpoint()),
        ],
        ..Settings::default()
    };
    let started = Instant::now();
    let mut worker = WorkerProcess::start(&queue, &settings);
    // The worker is in its start, waiting on the call the endpoint never answers.
    while proxy.stats().await.faults("GetQueueAttributes", "hang") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no call reached the proxy"
        );
        sleep(Duration::from_millis(50)).await;
    }
    sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    signal(worker.worker_pid(false), "TERM");
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(counts(&queue).await, (1, 0, 0), "nothing was received");
}

/// A delete call that never answers does not keep a job from ending: the call times out
/// (the client's timeouts), the SDK sends it again, and the job stops once drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ends_although_a_delete_call_never_answers() {
    let queue = create_queue(&unique("hung-delete"), &[]).await;
    send(&queue, (0..10).map(|n| format!("job-{n}"))).await;
    let proxy = FaultProxy::start(&["DeleteMessageBatch:hang:count=1"], 24);
    let through = with_timeouts(&proxy, &queue, 1, 3).await;
    let run = Worker::builder(through)
        .concurrency(10)
        .wait_time(Duration::from_secs(1))
        .exit_after_empty_receives(2)
        .handler(|_: Message| async {})
        .run_with(spotq::shutdown::ShutdownHandle::new());
    let report = timeout(Duration::from_secs(120), run)
        .await
        .expect("the job ended by itself")
        .expect("the job runs");
    let stats = proxy.stats().await;
    assert_eq!(stats.faults("DeleteMessageBatch", "hang"), 1, "{stats:?}");
    assert_eq!(report.stop_reason, spotq::shutdown::StopReason::Drained);
    assert_eq!(
        (report.deleted, report.delete_failed),
        (10, 0),
        "{report:?}"
    );
    assert_eq!(counts(&queue).await, (0, 0, 0));
}

/// A heartbeat call that never answers does not let the message lapse while its handler
/// runs: on a FIFO queue no other consumer gets the group meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_heartbeat_call_does_not_hand_a_running_fifo_group_to_another_consumer() {
    let queue = create_queue(
        &format!("{}.fifo", unique("hung-beat")),
        &[
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "true".to_owned(),
            ),
            (QueueAttributeName::VisibilityTimeout, "4".to_owned()),
        ],
    )
    .await;
    for body in ["first", "second"] {
        queue
            .send(spotq::backend::SendMessage::new(body).group_id("g"))
            .await
            .expect("send");
    }
    let proxy = FaultProxy::start(&["ChangeMessageVisibilityBatch:hang:count=1"], 25);
    let through = with_timeouts(&proxy, &queue, 1, 3).await;
    let (started, started_rx) = oneshot::channel();
    let started = Mutex::new(Some(started));
    let run = Worker::builder(through)
        .pollers(1)
        .wait_time(Duration::from_secs(1))
        .handler(move |message: Message| {
            if let Some(started) = started.lock().expect("lock").take() {
                let _ = started.send(());
            }
            async move {
                if message.body() == "first" {
                    // Two visibility timeouts: heartbeats (every 2 s) must carry it.
                    sleep(Duration::from_secs(8)).await;
                }
            }
        })
        .run_until(async {
            started_rx.await.expect("the first handler started");
            // Another consumer polls the queue while the group runs.
            let request = ReceiveRequest {
                max_messages: 10,
                wait_time: Duration::ZERO,
                visibility_timeout: Some(Duration::from_secs(30)),
                attempt_id: None,
            };
            for _ in 0..9 {
                sleep(Duration::from_secs(1)).await;
                let got = queue.receive(request).await.expect("receive");
                assert!(got.is_empty(), "another consumer got the group: {got:?}");
            }
            while counts(&queue).await != (0, 0, 0) {
                sleep(Duration::from_millis(200)).await;
            }
        });
    let report = timeout(Duration::from_secs(60), run)
        .await
        .expect("bounded")
        .expect("worker runs");
    let stats = proxy.stats().await;
    assert_eq!(
        stats.faults("ChangeMessageVisibilityBatch", "hang"),
        1,
        "{stats:?}"
    );
    assert_eq!((report.received, report.deleted), (2, 2), "{report:?}");
}

/// A continuation whose send is slower than the visibility timeout: its message is
/// heartbeated while the send runs, so no other poller takes it and hands it on again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_continuation_send_neither_lets_its_message_lapse_nor_forks_the_chain() {
    let queue = create_queue(
        &unique("slow-send"),
        &[(QueueAttributeName::VisibilityTimeout, "4".to_owned())],
    )
    .await;
    send(&queue, ["step-1".to_owned()]).await;
    let proxy = FaultProxy::start(&["SendMessage:slow=7000:count=1"], 26);
    let through = InTurn::new(&proxy.backend(&queue).await);
    let runs = Arc::new(Mutex::new(Vec::new()));
    let (handler_runs, done) = (Arc::clone(&runs), Arc::clone(&runs));
    let report = Worker::builder(through)
        .pollers(2)
        .wait_time(Duration::from_secs(1))
        .handler(move |message: Message| {
            handler_runs
                .lock()
                .expect("runs")
                .push(message.body().to_owned());
            let outcome = match message.body() {
                "step-1" => Outcome::Continue(spotq::backend::SendMessage::new("step-2")),
                _ => Outcome::Ack,
            };
            async move { outcome }
        })
        .run_until(async move {
            until(Duration::from_secs(30), || {
                done.lock().expect("runs").len() >= 2
            })
            .await;
            // Long enough for a lapsed step-1 to come back (4 s) and run again.
            sleep(Duration::from_secs(5)).await;
        })
        .await
        .expect("worker runs");
    let stats = proxy.stats().await;
    assert_eq!(stats.faults("SendMessage", "slow"), 1, "{stats:?}");
    assert_eq!(
        *runs.lock().expect("runs"),
        ["step-1", "step-2"],
        "{report:?}"
    );
    assert!(report.heartbeats >= 2, "{report:?}");
    assert_eq!((report.continued, report.deleted), (1, 2), "{report:?}");
    assert_eq!(counts(&queue).await, (0, 0, 0));
}
