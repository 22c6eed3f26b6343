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

#[test]
fn every_metric_is_in_the_readme_table() {
    let readme = include_str!("../../../README.md");
    for (name, kind, ..) in CATALOG {
        let row = format!("| `{name}` | {kind} |");
        assert!(readme.contains(&row), "README has no row for {name}");
    }
}
