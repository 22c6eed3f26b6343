//! The worker's metrics through the `metrics` facade, read back with `metrics-util`'s
//! debugging recorder after a run on the embedded queue.

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use spotq::backend::Backend as _;
use spotq::{EmbeddedQueue, Message, Outcome, Worker, testing::run_until_drained};
use tokio::time::sleep;

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn value<'a>(snapshot: &'a Snapshot, name: &str) -> &'a DebugValue {
    let (key, _, _, value) = snapshot
        .iter()
        .find(|(key, ..)| key.key().name() == name)
        .unwrap_or_else(|| panic!("no metric {name}"));
    let labels: HashMap<_, _> = key
        .key()
        .labels()
        .map(|label| (label.key(), label.value()))
        .collect();
    assert_eq!(
        labels,
        HashMap::from([("queue", "jobs"), ("worker", "billing")]),
        "{name}"
    );
    value
}

fn counter(snapshot: &Snapshot, name: &str) -> u64 {
    match value(snapshot, name) {
        DebugValue::Counter(count) => *count,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn gauge(snapshot: &Snapshot, name: &str) -> f64 {
    match value(snapshot, name) {
        DebugValue::Gauge(gauge) => gauge.into_inner(),
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_is_counted_with_bounded_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let queue = EmbeddedQueue::new("jobs");
    queue.send_many((0..100).map(|n| n.to_string()));
    let worker = Worker::builder(queue.clone())
        .name("billing")
        .concurrency(8)
        .running_tasks(2)
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(1))
        .handler(|message: Message| async move {
            sleep(Duration::from_secs(1)).await;
            let n: u32 = message.body().parse().unwrap_or_default();
            if n.is_multiple_of(10) && message.receive_count() == 1 {
                Outcome::fail("every tenth fails once")
            } else {
                Outcome::Ack
            }
        });
    run_until_drained(worker, &queue)
        .await
        .expect("worker runs");

    let snapshot: Snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&snapshot, "spotq_messages_received_total"), 110);
    assert_eq!(counter(&snapshot, "spotq_messages_succeeded_total"), 100);
    assert_eq!(counter(&snapshot, "spotq_messages_failed_total"), 10);
    assert_eq!(counter(&snapshot, "spotq_messages_retried_total"), 10);
    assert_eq!(counter(&snapshot, "spotq_messages_deleted_total"), 100);
    assert_eq!(counter(&snapshot, "spotq_delete_failures_total"), 0);
    match value(&snapshot, "spotq_handler_duration_seconds") {
        DebugValue::Histogram(durations) => {
            assert_eq!(durations.len(), 110);
            assert!(durations.iter().all(|seconds| seconds.into_inner() >= 1.0));
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(gauge(&snapshot, "spotq_concurrency"), 8.0);
    assert_eq!(gauge(&snapshot, "spotq_messages_in_flight"), 0.0);
    // The first backlog sample, at start: 100 messages over 2 tasks.
    assert_eq!(gauge(&snapshot, "spotq_backlog_per_task"), 50.0);
    for (key, unit, description, _) in &snapshot {
        assert!(description.is_some(), "{} is described", key.key().name());
        // A ratio has no unit of `metrics` (`Percent` would read 1 as 1 %).
        let ratio = key.key().name() == "spotq_utilization";
        assert_eq!(unit.is_some(), !ratio, "{}: {unit:?}", key.key().name());
    }
}

/// A writer tests can read back.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn emf_lines_carry_backlog_per_task_in_flight_and_throughput() {
    let queue = EmbeddedQueue::new("orders");
    queue.send_many((0..40).map(|n| n.to_string()));
    let lines = Lines::default();
    let mut settings = spotq::telemetry::emf::EmfSettings::new("Spotq", "queue-processor");
    settings.interval = Duration::from_secs(8);
    Worker::builder(queue.clone())
        .concurrency(4)
        .running_tasks(4)
        .backlog_interval(Some(Duration::from_secs(5)))
        .emf_to(settings, lines.clone())
        .handler(|_message: Message| async {
            sleep(Duration::from_millis(1500)).await;
        })
        .run_until(sleep(Duration::from_secs(25)))
        .await
        .expect("worker runs");

    let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        records.len(),
        4,
        "at 8, 16 and 24 s, and the last one at stop: {text}"
    );
    let first = &records[0];
    let directive = &first["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Spotq");
    assert_eq!(
        directive["Dimensions"][0],
        serde_json::json!(spotq::telemetry::emf::names::DIMENSIONS)
    );
    assert_eq!(first["QueueName"], "orders");
    assert_eq!(first["ServiceName"], "queue-processor");
    // 4 handlers of 1.5 s each: 20 messages done by 8 s, all 40 by 15 s.
    assert_eq!(first["Throughput"], 2.5);
    assert_eq!(first["MessagesInFlight"], 4.0);
    // The sample at 5 s: 12 done, 28 left (in flight or visible) over 4 tasks.
    assert_eq!(first["BacklogPerTask"], 7.0);
    // Every metric of the catalog, with its unit, once the backlog and the task count
    // are known.
    let metrics: Vec<(&str, &str)> = directive["Metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|metric| {
            let name = metric["Name"].as_str().expect("name");
            (name, metric["Unit"].as_str().expect("unit"))
        })
        .collect();
    let catalog: Vec<(&str, &str)> = spotq::telemetry::emf::names::METRICS
        .iter()
        .map(|(name, unit, _)| (*name, unit.as_str()))
        .collect();
    let mut sorted = metrics.clone();
    sorted.sort_unstable();
    let mut expected = catalog.clone();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    for (name, _) in &metrics {
        assert!(first[name].is_number(), "{name} is a top-level number");
    }
    assert_eq!(records[1]["Throughput"], 2.5);
    assert_eq!(
        records[2]["Throughput"], 0.0,
        "idle after the queue drained"
    );
    assert_eq!(records[2]["BacklogPerTask"], 0.0);
}

/// The last value of the gauge `name` (a snapshot reads a gauge and sets it to 0; the
/// worker sets it again every second).
fn gauge_now(snapshotter: &metrics_util::debugging::Snapshotter, name: &str) -> f64 {
    let snapshot: Snapshot = snapshotter.snapshot().into_vec();
    match snapshot.iter().find(|(key, ..)| key.key().name() == name) {
        Some((_, _, _, DebugValue::Gauge(value))) => value.into_inner(),
        other => panic!("no gauge {name}: {other:?}"),
    }
}

/// Runs a worker on `queue` (concurrency 1, a handler of `handler_time` that answers
/// `outcome()`) and reads `spotq_messages_in_flight` and the queue's not-visible count at
/// each of `at` (from the start); then stops it.
async fn held_over_time(
    queue: &EmbeddedQueue,
    handler_time: Duration,
    outcome: fn() -> Outcome,
    at: &[Duration],
) -> Vec<(f64, u64)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::builder(queue.clone())
        .concurrency(1)
        .backlog_interval(None)
        .handler(move |_message: Message| async move {
            sleep(handler_time).await;
            outcome()
        })
        .run_until(async {
            let _ = stopped.await;
        });
    let readings = async {
        let started = tokio::time::Instant::now();
        let mut readings = Vec::new();
        for at in at {
            tokio::time::sleep_until(started + *at).await;
            readings.push((
                gauge_now(&snapshotter, "spotq_messages_in_flight"),
                queue.counts().not_visible,
            ));
        }
        let _ = stop.send(());
        readings
    };
    let (report, readings) = tokio::join!(worker, readings);
    report.expect("worker runs");
    readings
}

#[tokio::test(start_paused = true)]
async fn the_in_flight_gauge_counts_fifo_messages_waiting_behind_their_group() {
    let queue = EmbeddedQueue::builder("held.fifo")
        .fifo()
        .content_based_deduplication()
        .visibility_timeout(Duration::from_secs(60))
        .build()
        .expect("a FIFO queue");
    for (group, n) in [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)] {
        queue
            .send_with(spotq::backend::SendMessage::new(format!("{group}:{n}")).group_id(group))
            .expect("sent");
    }
    // One handler slot: a:0 runs, a:1 and a:2 wait behind it, b waits for the slot.
    let readings = held_over_time(
        &queue,
        Duration::from_secs(10),
        || Outcome::Ack,
        &[Duration::from_millis(2500), Duration::from_millis(12_500)],
    )
    .await;
    assert_eq!(readings[0], (5.0, 5), "one running, four waiting: all held");
    assert_eq!(readings[1], (4.0, 4), "a:0 deleted, a:1 running");
}

#[tokio::test(start_paused = true)]
async fn a_message_put_back_for_a_retry_is_held_until_the_change_is_applied_then_by_nobody() {
    let queue = EmbeddedQueue::new("retried");
    queue.send("later");
    // The put-back takes 5 s to answer: until then the worker still holds the message.
    queue.faults().set_latency(
        spotq::backend::Operation::ChangeVisibilityBatch,
        Some(Duration::from_secs(5)),
    );
    let readings = held_over_time(
        &queue,
        Duration::from_millis(500),
        || Outcome::RetryAfter(Duration::from_secs(3600)),
        &[
            Duration::from_millis(300),
            Duration::from_millis(2500),
            Duration::from_millis(8500),
        ],
    )
    .await;
    assert_eq!(readings[0], (1.0, 1), "running");
    assert_eq!(
        readings[1],
        (1.0, 1),
        "settled by its task, the change in its call"
    );
    assert_eq!(
        readings[2],
        (0.0, 1),
        "invisible for an hour, held by no worker"
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_is_held_until_its_delete_is_applied() {
    let queue = EmbeddedQueue::new("deleted");
    queue.send("done");
    queue.faults().set_latency(
        spotq::backend::Operation::DeleteBatch,
        Some(Duration::from_secs(5)),
    );
    let readings = held_over_time(
        &queue,
        Duration::from_millis(500),
        || Outcome::Ack,
        &[Duration::from_millis(2500), Duration::from_millis(8500)],
    )
    .await;
    assert_eq!(readings[0], (1.0, 1), "the delete in its call");
    assert_eq!(readings[1], (0.0, 0), "deleted");
}

/// The embedded queue whose `GetQueueAttributes` answers once (the worker's start) and
/// then never again, as an endpoint gone silent for the backlog sampler.
#[derive(Debug)]
struct SilentAfterStart(EmbeddedQueue, std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl spotq::backend::Intercept for SilentAfterStart {
    type Inner = EmbeddedQueue;

    fn inner(&self) -> &EmbeddedQueue {
        &self.0
    }

    async fn attributes(
        &self,
    ) -> Result<spotq::backend::QueueAttributes, spotq::backend::BackendError> {
        if self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.0.attributes().await
    }
}

#[tokio::test(start_paused = true)]
async fn the_figures_go_on_while_the_backlog_sample_hangs_and_its_age_tells() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let queue = EmbeddedQueue::new("jobs");
    queue.send_many((0..5).map(|n| n.to_string()));
    let silent = SilentAfterStart(queue.clone(), std::sync::atomic::AtomicBool::new(false));
    let during = std::sync::Arc::new(std::sync::Mutex::new(None));
    let read = std::sync::Arc::clone(&during);
    Worker::builder(spotq::backend::Intercepted(silent))
        .name("billing")
        .concurrency(8)
        .running_tasks(1)
        .backlog_interval(Some(Duration::from_secs(1)))
        .handler(|_: Message| async {
            sleep(Duration::from_secs(60)).await;
        })
        .run_until(async move {
            // The sampler's second call hangs from 1 s on; the handlers hold all five.
            sleep(Duration::from_secs(10)).await;
            let snapshot: Snapshot = snapshotter.snapshot().into_vec();
            *read.lock().expect("lock") = Some((
                gauge(&snapshot, "spotq_messages_in_flight"),
                gauge(&snapshot, "spotq_queue_sample_age_seconds"),
            ));
        })
        .await
        .expect("worker runs");

    let (in_flight, age) = during.lock().expect("lock").expect("read during the run");
    assert_eq!(in_flight, 5.0, "published while the sample hangs");
    assert!(age >= 8.0, "the last sample reads as old: {age} s");
}
