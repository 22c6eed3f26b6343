//! The loop over a scripted queue and a recording target, on paused time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use super::*;
use crate::config::{JobConfig, JobRunner, LocalConfig};
use crate::decision::job::{JobReason, JobTasks};
use crate::decision::{Policy, Reason};
use crate::targets::Started;

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

/// The metrics recorded on this thread.
struct Metrics {
    snapshotter: Snapshotter,
    counters: Mutex<Vec<CounterValue>>,
    _guard: metrics::LocalRecorderGuard<'static>,
}

impl Metrics {
    fn record() -> Self {
        let recorder = Box::leak(Box::new(DebuggingRecorder::new()));
        let snapshotter = recorder.snapshotter();
        let guard = metrics::set_default_local_recorder(recorder);
        Self {
            snapshotter,
            counters: Mutex::default(),
            _guard: guard,
        }
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

struct Rig {
    queue: Arc<ScriptedQueue>,
    target: Arc<RecordingTarget>,
    binding: BindingLoop,
    metrics: Metrics,
}

fn rig(dry_run: bool) -> Rig {
    rig_reading(dry_run, None)
}

/// A rig whose loop reads `workers`, if given.
fn rig_reading(dry_run: bool, workers: Option<ScriptedWorkers>) -> Rig {
    let metrics = Metrics::record();
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
        metrics,
    }
}

impl ScriptedQueue {
    fn set(&self, visible: u64, not_visible: u64) {
        *self.counts.lock().expect("counts") = QueueCounts {
            visible,
            not_visible,
            delayed: 0,
        };
    }
}

impl Rig {
    fn set_queue(&self, visible: u64, not_visible: u64) {
        self.queue.set(visible, not_visible);
    }

    async fn poll(&mut self) -> Decision {
        tokio::time::advance(Duration::from_secs(5)).await;
        self.binding.poll().await
    }

    fn updates(&self) -> Vec<u32> {
        self.target.updates.lock().expect("updates").clone()
    }

    fn counter(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        self.metrics.counter(name, label)
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

/// A job target whose listing can lag and whose starts can fall short.
#[derive(Default)]
struct ScriptedJobs {
    /// Tasks started and not exited.
    tasks: Mutex<Vec<String>>,
    /// The number of tasks asked for, per start.
    starts: Mutex<Vec<u32>>,
    /// Whether a read lists the tasks started (false: ECS has not caught up).
    lagging: std::sync::atomic::AtomicBool,
    /// Starts to come back with no capacity for any task.
    no_capacity: AtomicU32,
    /// Starts whose tasks all go to FARGATE after Spot had none.
    fall_back: AtomicU32,
}

impl ScriptedJobs {
    fn exit_all(&self) {
        self.tasks.lock().expect("tasks").clear();
    }

    fn starts(&self) -> Vec<u32> {
        self.starts.lock().expect("starts").clone()
    }
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

/// Serves `body` as `/metrics` on a loopback port, to every request, from a thread.
fn serve_metrics(body: &'static str) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|end| end == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/metrics")
}

/// One worker process working two queues: `orders` (holding 2 of its messages) and
/// `invoices` (holding 5), as the runtime labels them (`queue` is the queue's name).
const TWO_QUEUES: &str = "\
# TYPE spotq_messages_in_flight gauge
spotq_messages_in_flight{queue=\"orders\",worker=\"orders\"} 2
spotq_messages_in_flight{queue=\"invoices\",worker=\"invoices\"} 5
# TYPE spotq_concurrency gauge
spotq_concurrency{queue=\"orders\",worker=\"orders\"} 4
spotq_concurrency{queue=\"invoices\",worker=\"invoices\"} 16
# TYPE spotq_handler_duration_seconds summary
spotq_handler_duration_seconds_sum{queue=\"orders\",worker=\"orders\"} 50
spotq_handler_duration_seconds_count{queue=\"orders\",worker=\"orders\"} 100
spotq_handler_duration_seconds_sum{queue=\"invoices\",worker=\"invoices\"} 10
spotq_handler_duration_seconds_count{queue=\"invoices\",worker=\"invoices\"} 1000
";

#[tokio::test]
async fn a_binding_reads_only_its_own_queue_s_series_of_a_worker_process() {
    let url = serve_metrics(TWO_QUEUES);
    let mut orders = Binding {
        queue: "https://sqs.eu-west-1.amazonaws.com/123456789012/orders".to_owned(),
        name: "orders-binding".to_owned(),
        metrics_urls: vec![url.clone()],
        ..binding(Policy::default())
    };
    let mut probe = worker_probe(&orders, WorkerAddresses::Fixed(vec![url.clone()]));
    let figures = probe.measure().await;
    // 2 held of orders (not 2 + 5); 4 at once, 0.5 s each: 8 a second.
    assert_eq!(figures.held, Some(2), "{figures:?}");
    assert_eq!(figures.throughput, Some(8.0), "{figures:?}");

    orders.queue = "invoices".to_owned();
    let figures = worker_probe(&orders, WorkerAddresses::Fixed(vec![url.clone()]))
        .measure()
        .await;
    assert_eq!(figures.held, Some(5), "{figures:?}");

    // A process that works none of the binding's queue has nothing to say about it: what
    // its workers hold is unknown, as for a worker that does not answer.
    orders.queue = "refunds".to_owned();
    let figures = worker_probe(&orders, WorkerAddresses::Fixed(vec![url]))
        .measure()
        .await;
    assert_eq!(
        (figures.held, figures.throughput),
        (None, None),
        "{figures:?}"
    );
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

#[async_trait]
impl JobTarget for ScriptedJobs {
    async fn tasks(&self) -> Result<JobTasks, TargetError> {
        if self.lagging.load(Ordering::Acquire) {
            return Ok(JobTasks::default());
        }
        let tasks = self.tasks.lock().expect("tasks").clone();
        Ok(JobTasks {
            running: u32::try_from(tasks.len()).expect("few"),
            listed: tasks,
            ..JobTasks::default()
        })
    }

    async fn start(&self, count: u32, _: &crate::targets::OnError<'_>) -> Started {
        self.starts.lock().expect("starts").push(count);
        if take_one(&self.no_capacity) {
            return Started {
                no_capacity: count,
                ..Started::default()
            };
        }
        let fallbacks = if take_one(&self.fall_back) { count } else { 0 };
        let mut tasks = self.tasks.lock().expect("tasks");
        let ids: Vec<String> = (0..count)
            .map(|n| format!("task-{}-{n}", tasks.len()))
            .collect();
        tasks.extend(ids.iter().cloned());
        Started {
            tasks: ids,
            fallbacks,
            ..Started::default()
        }
    }

    fn list_operation(&self) -> &'static str {
        "ListTasks"
    }

    fn start_operation(&self) -> &'static str {
        "RunTask"
    }
}

struct JobRig {
    queue: Arc<ScriptedQueue>,
    target: Arc<ScriptedJobs>,
    job: JobLoop,
    metrics: Metrics,
}

fn job_rig(dry_run: bool) -> JobRig {
    let metrics = Metrics::record();
    let queue = Arc::new(ScriptedQueue::default());
    let target = Arc::new(ScriptedJobs::default());
    let mut binding = binding(Policy::default());
    binding.target = TargetConfig::Job(JobConfig {
        runner: JobRunner::Local(LocalConfig {
            command: vec!["unused".to_owned()],
            env: vec![],
            stop_timeout: Duration::from_secs(1),
        }),
        messages_per_task: 10,
        start_grace: Duration::from_secs(30),
    });
    let policy = binding.job_policy().expect("a job binding");
    let job = JobLoop::new(
        binding,
        policy,
        Arc::clone(&queue) as Arc<dyn QueueSource>,
        Arc::clone(&target) as Arc<dyn JobTarget>,
        dry_run,
    );
    JobRig {
        queue,
        target,
        job,
        metrics,
    }
}

impl JobRig {
    async fn poll(&mut self) -> JobEvent {
        tokio::time::advance(Duration::from_secs(5)).await;
        self.job.poll().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_binding_starts_tasks_for_the_backlog_once_while_the_listing_lags() {
    let mut rig = job_rig(false);
    assert_eq!(rig.poll().await.decision.reason, JobReason::Idle);
    rig.queue.set(35, 0);
    rig.target.lagging.store(true, Ordering::Release);
    let event = rig.poll().await;
    assert_eq!(
        (event.decision.starts, event.started, event.decision.reason),
        (4, 4, JobReason::Start)
    );
    // ECS does not list them yet, then does: no second start either way.
    for _ in 0..3 {
        let event = rig.poll().await;
        assert_eq!(
            (event.decision.starts, event.decision.unlisted),
            (0, 4),
            "{event:?}"
        );
    }
    rig.target.lagging.store(false, Ordering::Release);
    rig.queue.set(20, 15);
    let event = rig.poll().await;
    assert_eq!(
        (
            event.decision.active,
            event.decision.unlisted,
            event.decision.starts
        ),
        (4, 0, 0)
    );
    // The tasks drain the queue and exit: nothing is started again.
    rig.queue.set(0, 0);
    rig.target.exit_all();
    for _ in 0..5 {
        assert_eq!(rig.poll().await.decision.reason, JobReason::Idle);
    }
    assert_eq!(rig.target.starts(), [4]);
    let metrics = &rig.metrics;
    assert_eq!(
        metrics.counter("spotq_controller_job_tasks_started_total", None),
        4
    );
    assert_eq!(
        metrics.counter(
            "spotq_controller_decisions_total",
            Some(("reason", "start"))
        ),
        1
    );
    assert_eq!(metrics.counter("spotq_controller_polls_total", None), 11);
}

#[tokio::test(start_paused = true)]
async fn a_start_without_capacity_is_counted_and_retried_after_a_backoff() {
    let mut rig = job_rig(false);
    rig.queue.set(20, 0);
    rig.target.no_capacity.store(2, Ordering::Release);
    let event = rig.poll().await;
    assert_eq!((event.started, event.fell_short), (0, true));
    // Retried a poll interval (5 s) later; no capacity again: then 10 s.
    let event = rig.poll().await;
    assert_eq!(
        (event.decision.reason, event.fell_short),
        (JobReason::Start, true)
    );
    assert_eq!(rig.poll().await.decision.reason, JobReason::Backoff);
    let event = rig.poll().await;
    assert_eq!((event.started, event.fell_short), (2, false));
    assert_eq!(rig.target.starts(), [2, 2, 2]);
    assert_eq!(
        rig.metrics.counter(
            "spotq_controller_job_start_failures_total",
            Some(("reason", "no_capacity"))
        ),
        4
    );

    // Spot had none, FARGATE had: counted as fallbacks, and the next start tries Spot.
    rig.queue.set(40, 0);
    rig.target.fall_back.store(1, Ordering::Release);
    let event = rig.poll().await;
    assert_eq!(
        (event.started, event.fallbacks, event.fell_short),
        (2, 2, false)
    );
    assert_eq!(
        rig.metrics
            .counter("spotq_controller_spot_fallbacks_total", None),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_dry_run_starts_nothing_and_logs_a_start_once() {
    let mut rig = job_rig(true);
    rig.queue.set(35, 0);
    let first = rig.poll().await;
    assert_eq!((first.decision.starts, first.started), (4, 0));
    for _ in 0..4 {
        let event = rig.poll().await;
        assert_eq!(event.decision.starts, 0, "{event:?}");
    }
    assert!(
        rig.target.starts().is_empty(),
        "nothing started in a dry run"
    );
    assert_eq!(
        rig.metrics
            .counter("spotq_controller_decisions_total", None),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_queue_starts_no_job_task() {
    let mut rig = job_rig(false);
    rig.queue.set(500, 0);
    rig.queue.failures.store(u32::MAX, Ordering::Release);
    let event = rig.poll().await;
    assert_eq!(
        (event.decision.starts, event.decision.reason),
        (0, JobReason::QueueUnreadable)
    );
    assert!(rig.target.starts().is_empty());
    assert_eq!(
        rig.metrics.counter(
            "spotq_controller_errors_total",
            Some(("operation", "GetQueueAttributes"))
        ),
        3
    );
}

#[test]
fn every_metric_is_in_the_manual_s_table() {
    let manual = include_str!("../../README.md");
    for (name, kind, ..) in CATALOG {
        let row = format!("| `{name}` | {kind} |");
        assert!(
            manual.contains(&row),
            "controller/README.md has no row for {name}"
        );
    }
}
