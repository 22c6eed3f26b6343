//! The worker's metrics through the `metrics` facade, read back with `metrics-util`'s
//! debugging recorder after a run on the embedded queue.

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use spotq::{EmbeddedQueue, Message, Outcome, Worker};
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
    let drained = {
        let queue = queue.clone();
        async move {
            while queue.counts().total() > 0 {
                sleep(Duration::from_millis(100)).await;
            }
        }
    };
    Worker::builder(queue.clone())
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
        })
        .run_until(drained)
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
        assert!(unit.is_some(), "{} has a unit", key.key().name());
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
    let mut settings = spotq::EmfSettings::new("Spotq", "queue-processor");
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
        serde_json::json!(["QueueName", "ServiceName"])
    );
    assert_eq!(first["QueueName"], "orders");
    assert_eq!(first["ServiceName"], "queue-processor");
    // 4 handlers of 1.5 s each: 20 messages done by 8 s, all 40 by 15 s.
    assert_eq!(first["Throughput"], 2.5);
    assert_eq!(first["MessagesInFlight"], 4.0);
    // The sample at 5 s: 12 done, 28 left (in flight or visible) over 4 tasks.
    assert_eq!(first["BacklogPerTask"], 7.0);
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|metric| metric["Name"].as_str().expect("name"))
        .collect();
    for name in &names {
        assert!(first[name].is_number(), "{name} is a top-level number");
    }
    assert_eq!(records[1]["Throughput"], 2.5);
    assert_eq!(
        records[2]["Throughput"], 0.0,
        "idle after the queue drained"
    );
    assert_eq!(records[2]["BacklogPerTask"], 0.0);
}
