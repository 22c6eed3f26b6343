//! The loop over a scripted queue and a recording target, on paused time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use super::*;
use crate::config::LocalConfig;
use crate::decision::{Policy, Reason};

#[derive(Default)]
struct ScriptedQueue {
    counts: Mutex<QueueCounts>,
    /// Calls that fail (throttled) before one succeeds.
    failures: AtomicU32,
}

#[async_trait]
impl QueueSource for ScriptedQueue {
    async fn counts(&self) -> Result<QueueCounts, BackendError> {
        if self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            return Err(BackendError::Throttled {
                operation: "GetQueueAttributes",
                message: "Rate exceeded".to_owned(),
            });
        }
        Ok(*self.counts.lock().expect("counts"))
    }
}

#[derive(Default)]
struct RecordingTarget {
    desired: Mutex<u32>,
    updates: Mutex<Vec<u32>>,
    unreadable: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Target for RecordingTarget {
    async fn counts(&self) -> Result<ServiceCounts, TargetError> {
        if self.unreadable.load(Ordering::Acquire) {
            return Err(TargetError::Api(BackendError::Transient {
                operation: "DescribeServices",
                message: "timeout".to_owned(),
                source: None,
            }));
        }
        let desired = *self.desired.lock().expect("desired");
        Ok(ServiceCounts {
            desired,
            running: desired,
            ..ServiceCounts::default()
        })
    }

    async fn set_desired(&self, desired: u32) -> Result<(), TargetError> {
        *self.desired.lock().expect("desired") = desired;
        self.updates.lock().expect("updates").push(desired);
        Ok(())
    }

    fn update_operation(&self) -> &'static str {
        "UpdateService"
    }
}

fn binding(policy: Policy) -> Binding {
    Binding {
        name: "jobs".to_owned(),
        queue: "jobs".to_owned(),
        target: TargetConfig::Local(LocalConfig {
            command: vec!["unused".to_owned()],
            env: vec![],
            stop_timeout: Duration::from_secs(1),
        }),
        policy,
        poll_interval: Duration::from_secs(5),
        metrics_urls: vec![],
        metrics_port: None,
    }
}

/// Workers whose figures the test sets: how many messages they hold (`None`: one could
/// not be read); counts the reads.
#[derive(Clone, Default)]
struct ScriptedWorkers {
    held: Arc<Mutex<Option<u64>>>,
    reads: Arc<AtomicU32>,
}

impl ScriptedWorkers {
    fn hold(&self, held: Option<u64>) {
        *self.held.lock().expect("held") = held;
    }
}

#[async_trait]
impl WorkerSource for ScriptedWorkers {
    async fn read(&mut self) -> WorkerFigures {
        self.reads.fetch_add(1, Ordering::AcqRel);
        WorkerFigures {
            throughput: None,
            held: *self.held.lock().expect("held"),
        }
    }
}

/// A counter's name, labels and a value read.
type CounterValue = (String, Vec<(String, String)>, u64);

struct Rig {
    queue: Arc<ScriptedQueue>,
    target: Arc<RecordingTarget>,
    binding: BindingLoop,
    snapshotter: Snapshotter,
    counters: Mutex<Vec<CounterValue>>,
    _guard: metrics::LocalRecorderGuard<'static>,
}

fn rig(dry_run: bool) -> Rig {
    rig_reading(dry_run, None)
}

/// A rig whose loop reads `workers`, if given.
fn rig_reading(dry_run: bool, workers: Option<ScriptedWorkers>) -> Rig {
    let recorder = Box::leak(Box::new(DebuggingRecorder::new()));
    let snapshotter = recorder.snapshotter();
    let guard = metrics::set_default_local_recorder(recorder);
    let queue = Arc::new(ScriptedQueue::default());
    let target = Arc::new(RecordingTarget::default());
    let binding = BindingLoop::new(
        binding(Policy {
            scale_in_cooldown: Duration::from_secs(15),
            ..Policy::default()
        }),
        Arc::clone(&queue) as Arc<dyn QueueSource>,
        Arc::clone(&target) as Arc<dyn Target>,
        dry_run,
    );
    let binding = match workers {
        Some(workers) => binding.with_workers(workers),
        None => binding,
    };
    Rig {
        queue,
        target,
        binding,
        snapshotter,
        counters: Mutex::default(),
        _guard: guard,
    }
}

impl Rig {
    fn set_queue(&self, visible: u64, not_visible: u64) {
        *self.queue.counts.lock().expect("counts") = QueueCounts {
            visible,
            not_visible,
            delayed: 0,
        };
    }

    async fn poll(&mut self) -> Decision {
        tokio::time::advance(Duration::from_secs(5)).await;
        self.binding.poll().await
    }

    fn updates(&self) -> Vec<u32> {
        self.target.updates.lock().expect("updates").clone()
    }

    /// The counter's value summed over its label sets, with `label` = `value` if given.
    /// (A snapshot resets the counters, so every value read is kept.)
    fn counter(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        let mut seen = self.counters.lock().expect("counters");
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            if let DebugValue::Counter(count) = value {
                let labels = key
                    .key()
                    .labels()
                    .map(|label| (label.key().to_owned(), label.value().to_owned()))
                    .collect();
                seen.push((key.key().name().to_owned(), labels, count));
            }
        }
        seen.iter()
            .filter(|(found, ..)| found == name)
            .filter(|(_, labels, _)| {
                label.is_none_or(|(label, value)| {
                    labels
                        .iter()
                        .any(|(key, found)| key == label && found == value)
                })
            })
            .map(|(.., count)| count)
            .sum()
    }
}

#[tokio::test(start_paused = true)]
async fn the_target_is_updated_only_when_the_count_changes() {
    let mut rig = rig(false);
    rig.poll().await;
    rig.set_queue(35, 0);
    let decision = rig.poll().await;
    assert_eq!((decision.desired, decision.reason), (4, Reason::Wake));
    for _ in 0..20 {
        rig.poll().await;
    }
    rig.set_queue(0, 0);
    for _ in 0..10 {
        rig.poll().await;
    }
    assert_eq!(rig.updates(), [4, 0], "woken, then to zero once empty");
    assert_eq!(rig.counter("spotq_controller_decisions_total", None), 2);
    assert_eq!(
        rig.counter("spotq_controller_decisions_total", Some(("reason", "wake"))),
        1
    );
    assert_eq!(rig.counter("spotq_controller_polls_total", None), 32);
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_changes_nothing_and_counts_each_change_once() {
    let mut rig = rig(true);
    rig.set_queue(35, 0);
    let mut events = rig.binding.subscribe();
    for _ in 0..10 {
        rig.poll().await;
    }
    assert!(rig.updates().is_empty(), "nothing set in a dry run");
    assert_eq!(rig.counter("spotq_controller_decisions_total", None), 1);
    let first = events.recv().await.expect("an event");
    assert_eq!((first.decision.desired, first.applied), (4, false));
    let second = events.recv().await.expect("an event");
    assert_eq!(
        (second.decision.current, second.decision.change()),
        (4, None),
        "the next poll starts from the count the dry run would have set"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_reads_are_retried_and_then_hold_the_count() {
    let mut rig = rig(false);
    rig.set_queue(35, 0);
    rig.queue.failures.store(2, Ordering::Release);
    let decision = rig.poll().await;
    assert_eq!(decision.desired, 4, "the third attempt read the queue");
    assert_eq!(
        rig.counter(
            "spotq_controller_errors_total",
            Some(("operation", "GetQueueAttributes"))
        ),
        2
    );

    rig.queue.failures.store(u32::MAX, Ordering::Release);
    rig.set_queue(500, 0);
    let decision = rig.poll().await;
    assert_eq!(
        (decision.desired, decision.reason),
        (4, Reason::QueueUnreadable)
    );
    rig.queue.failures.store(0, Ordering::Release);

    rig.target.unreadable.store(true, Ordering::Release);
    let decision = rig.poll().await;
    assert_eq!(
        (decision.desired, decision.reason),
        (4, Reason::ServiceUnreadable)
    );
    assert_eq!(
        rig.counter(
            "spotq_controller_errors_total",
            Some(("operation", "DescribeServices"))
        ),
        3,
        "each attempt counted"
    );
    assert_eq!(rig.updates(), [4]);
}

#[tokio::test(start_paused = true)]
async fn a_service_whose_only_message_waits_out_a_retry_goes_to_zero_and_wakes_for_it() {
    let workers = ScriptedWorkers::default();
    let mut rig = rig_reading(false, Some(workers.clone()));
    rig.set_queue(1, 0);
    let decision = rig.poll().await;
    assert_eq!((decision.desired, decision.reason), (1, Reason::Wake));
    // The worker takes the message; its handler runs...
    rig.set_queue(0, 1);
    workers.hold(Some(1));
    for _ in 0..10 {
        rig.poll().await;
    }
    assert_eq!(rig.updates(), [1], "a held message keeps its task");
    // ... and answers RetryAfter(1 h): the message is invisible, and no worker holds it.
    workers.hold(Some(0));
    let mut last = rig.poll().await;
    while last.desired > 0 {
        last = rig.poll().await;
        assert!(
            matches!(last.reason, Reason::EmptyPending | Reason::ToZero),
            "{last:?}"
        );
    }
    assert_eq!((last.reason, last.in_flight), (Reason::ToZero, 0));
    assert_eq!(
        rig.updates(),
        [1, 0],
        "to zero with the message still in flight"
    );

    // At zero no task runs, so there is no worker to read and none holds anything: the
    // message in flight wakes nothing however long it stays there.
    let reads = workers.reads.load(Ordering::Acquire);
    workers.hold(None);
    for _ in 0..100 {
        let decision = rig.poll().await;
        assert_eq!((decision.desired, decision.reason), (0, Reason::Idle));
    }
    assert_eq!(workers.reads.load(Ordering::Acquire), reads);
    // An hour later it is visible again, and wakes the service.
    rig.set_queue(1, 0);
    let decision = rig.poll().await;
    assert_eq!((decision.desired, decision.reason), (1, Reason::Wake));
    assert_eq!(rig.updates(), [1, 0, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_cannot_be_read_keeps_its_service_awake() {
    let workers = ScriptedWorkers::default();
    let mut rig = rig_reading(false, Some(workers.clone()));
    rig.set_queue(1, 0);
    rig.poll().await;
    rig.set_queue(0, 1);
    workers.hold(None);
    for _ in 0..100 {
        let decision = rig.poll().await;
        assert_eq!(decision.desired, 1, "{decision:?}");
    }
    assert_eq!(rig.updates(), [1]);
}

#[test]
fn every_metric_is_in_the_readme_table() {
    let readme = include_str!("../../../README.md");
    for (name, kind, ..) in CATALOG {
        let row = format!("| `{name}` | {kind} |");
        assert!(readme.contains(&row), "README has no row for {name}");
    }
}
