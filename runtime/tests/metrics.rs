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
