//! Property tests of the engine on the embedded queue, under paused tokio time.
//!
//! Each case is a random worker run: a few to about 60 messages, each with a plan of
//! what its handler does on each receive (how long it works, from nothing to beyond the
//! visibility timeout so heartbeats happen, and how it ends: ack, fail, retry after a
//! delay, continue in a new message, panic, hang until its timeout, or checkpoint when
//! the worker stops); random settings; random faults armed on every kind of queue call
//! at random moments (throttling, transient failures, failed batch entries, latency);
//! and a random shutdown (graceful, immediate, or graceful then a second signal).
//!
//! A recording backend wraps the queue and logs every call, in the order the queue
//! applied them, with its virtual instant, its entries and each entry's result; the
//! handlers log when they start and how they end. After `run_with` returns, the log and
//! the queue's state are checked against what a worker promises. Each family of promises
//! is its own test, so that one failing does not hide the others.
//!
//! Every run checks the same cases, drawn from a fixed seed: 512 by default,
//! `PROPTEST_CASES=N` for more, `PROPTEST_RNG_SEED=S` for others. The families draw the
//! same cases, and each case's worker run is made once and checked by every family
//! ([`shared_run`]): each promise is checked on 512 runs, for the time of 512 runs
//! rather than seven times as many. Failures are not persisted: a failing case prints
//! its shrunk input.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt as _;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestCaseError};
use spotq::backend::Operation;
use spotq::backend::{
    Backend, EntryResult, MAX_VISIBILITY, QueueAttributes, ReceiptHandle, ReceiveRequest,
    ReceivedMessage, SendMessage, VisibilityChange,
};
use spotq::{
    Context, EmbeddedQueue, Error, Message, Outcome, Worker, backend::BackendError,
    config::Backoff, config::RetryPolicy, shutdown::ShutdownHandle,
};
use tokio::time::{Instant, sleep, sleep_until};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 512;
/// The seed of the runs' cases unless `PROPTEST_RNG_SEED` says otherwise.
const SEED: u64 = 11;
/// The properties that check worker runs: the families of promises, one test each,
/// that [`shared_run`] shares each run between.
const RUN_PROPERTIES: usize = 7;
/// The [`config`] of the properties that check worker runs: one seed, so that they draw
/// the same cases.
const RUNS: u64 = 1;
/// How many times a piece of work may be handed on (`Outcome::Continue`) before its
/// handler acknowledges instead, so that every run's work ends.
const MAX_DEPTH: usize = 2;
/// The payload of the panics the plans ask for; the panic hook keeps them quiet.
const PLANNED_PANIC: &str = "planned handler panic";
/// How long after the moment the shutdown contract names (the grace deadline, or an
/// immediate shutdown) a running handler must be cancelled and its release sent.
const PROMPT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// The random case.

/// How one handler call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Ack,
    Fail,
    /// `Outcome::RetryAfter` this many milliseconds.
    RetryAfter(u64),
    /// `Outcome::Continue` (an ack once the work was handed on `MAX_DEPTH` times).
    Continue,
    Panic,
    /// Works for an hour: ends by the handler timeout or the shutdown deadline.
    Hang,
    /// Works for its time, but checkpoints (`Continue`) as soon as the worker stops.
    CheckpointOnStop,
}

/// What the handler does on one receive of a message.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    /// How long it works, in thousandths of the visibility timeout.
    work_permille: u64,
    act: Act,
}

#[derive(Clone, Copy, Debug)]
enum FaultKind {
    Throttle(u64),
    Transient(u64),
    FailEntries(u64),
    LatencyMs(u64),
    NoLatency,
}

/// A fault armed on the queue at a moment of the run.
#[derive(Clone, Copy, Debug)]
struct Fault {
    at_ms: u64,
    operation: Operation,
    kind: FaultKind,
}

/// How the worker is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// `ShutdownHandle::begin`.
    Graceful,
    /// `ShutdownHandle::now`.
    Immediate,
    /// `begin`, then `now` this many milliseconds later (a second signal).
    GracefulThenNow(u64),
}

#[derive(Clone, Debug)]
struct Case {
    /// Per message, its handler's plan; receive `n` of hand-on depth `d` follows
    /// attempt `(n - 1 + d) % len`.
    messages: Vec<Vec<Attempt>>,
    concurrency: usize,
    pollers: usize,
    batch_size: usize,
    visibility_secs: u64,
    wait_secs: u64,
    handler_timeout_ms: Option<u64>,
    retry_base_ms: u64,
    retry_max_ms: u64,
    max_receive_count: u32,
    stop_timeout_ms: u64,
    /// What the grace leaves of the stop timeout (the grace is 0 when this is more); the
    /// default grace when `None`.
    grace_room_ms: Option<u64>,
    stop_at_ms: u64,
    stop: Stop,
    faults: Vec<Fault>,
    /// What the recording backend says of dropping a receive: `false` is SQS's answer
    /// (a receive under way is let finish at shutdown), `true` the embedded queue's.
    receive_cancel_safe: bool,
    /// Seeds the engine's jitter (fastrand), so that a case replays alike.
    seed: u64,
}

impl Case {
    fn visibility(&self) -> Duration {
        Duration::from_secs(self.visibility_secs)
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_millis(self.retry_base_ms),
            max: Duration::from_millis(self.retry_max_ms),
            jitter: false,
        }
    }

    fn grace(&self) -> Option<Duration> {
        self.grace_room_ms
            .map(|room| Duration::from_millis(self.stop_timeout_ms.saturating_sub(room)))
    }

    fn attempt(&self, plan: usize, depth: usize, receive_count: u32) -> Attempt {
        let attempts = &self.messages[plan];
        let index = (receive_count as usize).saturating_sub(1) + depth;
        attempts[index % attempts.len()]
    }
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => Just(Act::Ack),
        2 => Just(Act::Fail),
        2 => (0..30_000u64).prop_map(Act::RetryAfter),
        2 => Just(Act::Continue),
        1 => Just(Act::Panic),
        1 => Just(Act::Hang),
        1 => Just(Act::CheckpointOnStop),
    ]
}

fn attempt() -> impl Strategy<Value = Attempt> {
    let work = prop_oneof![2 => Just(0u64), 3 => 0..1000u64, 2 => 1000..2500u64];
    (work, act()).prop_map(|(work_permille, act)| Attempt { work_permille, act })
}

fn fault() -> impl Strategy<Value = Fault> {
    let operation = prop_oneof![
        3 => Just(Operation::Receive),
        3 => Just(Operation::DeleteBatch),
        3 => Just(Operation::ChangeVisibilityBatch),
        2 => Just(Operation::Send),
        1 => Just(Operation::Attributes),
    ];
    let kind = prop_oneof![
        (1..=4u64).prop_map(FaultKind::Throttle),
        (1..=4u64).prop_map(FaultKind::Transient),
        (1..=6u64).prop_map(FaultKind::FailEntries),
        (1..=3000u64).prop_map(FaultKind::LatencyMs),
        Just(FaultKind::NoLatency),
    ];
    (1..60_000u64, operation, kind).prop_map(|(at_ms, operation, kind)| Fault {
        at_ms,
        operation,
        kind,
    })
}

fn stop() -> impl Strategy<Value = Stop> {
    prop_oneof![
        Just(Stop::Graceful),
        Just(Stop::Immediate),
        (0..30_000u64).prop_map(Stop::GracefulThenNow),
    ]
}

fn cases() -> impl Strategy<Value = Case> {
    let work = (
        prop::collection::vec(prop::collection::vec(attempt(), 1..=3), 1..=60),
        1..=16usize,
        1..=3usize,
        1..=10usize,
        2..=12u64,
        0..=20u64,
        prop::option::weighted(0.3, 500..30_000u64),
    );
    let policy = (
        500..5_000u64,
        0..25_000u64,
        1..=5u32,
        // Most settings leave the 3 s a worker needs after the grace to release, flush
        // and exit; some leave less, which the worker must refuse or survive.
        prop_oneof![1 => 500..3_000u64, 7 => 3_000..=40_000u64],
        prop::option::weighted(0.6, prop_oneof![1 => 1..3_000u64, 4 => 3_000..40_000u64]),
    );
    let chaos = (
        0..40_000u64,
        stop(),
        prop::collection::vec(fault(), 0..=12),
        any::<bool>(),
        any::<u64>(),
    );
    (work, policy, chaos).prop_map(
        |(
            (messages, concurrency, pollers, batch_size, visibility_secs, wait_secs, timeout),
            (retry_base_ms, retry_extra_ms, max_receive_count, stop_timeout_ms, grace_room_ms),
            (stop_at_ms, stop, faults, receive_cancel_safe, seed),
        )| Case {
            messages,
            concurrency,
            pollers: pollers.min(concurrency),
            batch_size,
            visibility_secs,
            wait_secs,
            handler_timeout_ms: timeout,
            retry_base_ms,
            retry_max_ms: retry_base_ms + retry_extra_ms,
            max_receive_count,
            stop_timeout_ms,
            grace_room_ms,
            stop_at_ms,
            stop,
            faults,
            receive_cancel_safe,
            seed,
        },
    )
}

/// The configuration of one property: `CASES` cases (or `PROPTEST_CASES`) drawn from a
/// fixed seed (`SEED + property`), so that every run of the suite checks the same cases
/// (or from `PROPTEST_RNG_SEED`, to explore others); nothing written to the source tree.
fn config(property: u64) -> ProptestConfig {
    // Reads PROPTEST_CASES, PROPTEST_RNG_SEED and proptest's other variables.
    let from_env = ProptestConfig::default();
    let cases = match std::env::var_os("PROPTEST_CASES") {
        Some(_) => from_env.cases,
        None => CASES,
    };
    let rng_seed = match from_env.rng_seed {
        RngSeed::Random => RngSeed::Fixed(SEED + property),
        seed @ RngSeed::Fixed(_) => seed,
    };
    ProptestConfig {
        cases,
        rng_seed,
        // Cases whose settings the worker refuses are rejected, not counted.
        max_global_rejects: cases.saturating_mul(2).max(1024),
        failure_persistence: None,
        ..from_env
    }
}

// ---------------------------------------------------------------------------------------
// The log of a run.

#[derive(Clone, Debug)]
enum Request {
    Receive,
    Delete(Vec<ReceiptHandle>),
    Change(Vec<(ReceiptHandle, Duration)>),
    Send(String),
    Attributes,
}

#[derive(Clone, Debug)]
struct Delivered {
    id: String,
    receipt: ReceiptHandle,
    receive_count: u32,
}

#[derive(Clone, Debug)]
enum Response {
    Received(Vec<Delivered>),
    Entries(Vec<EntryResult>),
    Sent(String),
    Attributes,
    Failed(String),
}

/// How a handler call ended, as the handler itself saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ended {
    Ack,
    Fail,
    RetryAfter(Duration),
    /// Handed on in a message with this body.
    Continue(String),
    Panicked,
}

#[derive(Clone, Debug)]
enum Event {
    /// A queue call began.
    Begin {
        call: usize,
        at: Instant,
        request: Request,
    },
    /// A queue call returned: the queue applied it at this instant.
    End {
        call: usize,
        at: Instant,
        response: Response,
    },
    /// A handler started on a receive.
    Started { receipt: ReceiptHandle, at: Instant },
    /// A handler returned (or panicked, by plan).
    Returned {
        receipt: ReceiptHandle,
        at: Instant,
        ended: Ended,
    },
    /// A handler's future was dropped before it returned (timeout or cancellation).
    Dropped {
        receipt: ReceiptHandle,
        at: Instant,
        deadline: Option<Instant>,
    },
}

#[derive(Debug, Default)]
struct Log {
    events: Mutex<Vec<Event>>,
    next_call: AtomicUsize,
}

impl Log {
    fn push(&self, event: Event) {
        self.events.lock().expect("log").push(event);
    }

    fn begin(&self, request: Request) -> usize {
        let call = self.next_call.fetch_add(1, Ordering::SeqCst);
        self.push(Event::Begin {
            call,
            at: Instant::now(),
            request,
        });
        call
    }

    fn end(&self, call: usize, response: Response) {
        self.push(Event::End {
            call,
            at: Instant::now(),
            response,
        });
    }
}

/// The embedded queue, recording every call in the log.
#[derive(Debug)]
struct Recorder {
    queue: EmbeddedQueue,
    receive_cancel_safe: bool,
    log: Arc<Log>,
}

fn failed(error: &BackendError) -> Response {
    Response::Failed(error.to_string())
}

#[async_trait]
impl Backend for Recorder {
    fn name(&self) -> &str {
        self.queue.name()
    }

    fn receive_cancel_safe(&self) -> bool {
        self.receive_cancel_safe
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, BackendError> {
        let call = self.log.begin(Request::Receive);
        let result = self.queue.receive(request).await;
        self.log.end(
            call,
            match &result {
                Ok(messages) => Response::Received(
                    messages
                        .iter()
                        .map(|message| Delivered {
                            id: message.message_id.clone(),
                            receipt: message.receipt_handle.clone(),
                            receive_count: message.receive_count(),
                        })
                        .collect(),
                ),
                Err(error) => failed(error),
            },
        );
        result
    }

    async fn delete_batch(
        &self,
        handles: &[ReceiptHandle],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let call = self.log.begin(Request::Delete(handles.to_vec()));
        let result = self.queue.delete_batch(handles).await;
        self.log.end(
            call,
            match &result {
                Ok(results) => Response::Entries(results.clone()),
                Err(error) => failed(error),
            },
        );
        result
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<Vec<EntryResult>, BackendError> {
        let entries = changes
            .iter()
            .map(|change| (change.receipt_handle.clone(), change.timeout))
            .collect();
        let call = self.log.begin(Request::Change(entries));
        let result = self.queue.change_visibility_batch(changes).await;
        self.log.end(
            call,
            match &result {
                Ok(results) => Response::Entries(results.clone()),
                Err(error) => failed(error),
            },
        );
        result
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        let call = self.log.begin(Request::Attributes);
        let result = self.queue.attributes().await;
        self.log.end(
            call,
            match &result {
                Ok(_) => Response::Attributes,
                Err(error) => failed(error),
            },
        );
        result
    }

    async fn send(&self, message: SendMessage) -> Result<String, BackendError> {
        let call = self.log.begin(Request::Send(message.body.clone()));
        let result = Backend::send(&self.queue, message).await;
        self.log.end(
            call,
            match &result {
                Ok(id) => Response::Sent(id.clone()),
                Err(error) => failed(error),
            },
        );
        result
    }
}

// ---------------------------------------------------------------------------------------
// The handler.

#[derive(Debug)]
struct Handlers {
    case: Case,
    log: Arc<Log>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    next_body: AtomicU64,
}

/// A handler call in progress: counts it as running and logs a drop before its return.
struct Running<'a> {
    handlers: &'a Handlers,
    receipt: ReceiptHandle,
    context: Context,
    returned: bool,
}

impl<'a> Running<'a> {
    fn start(handlers: &'a Handlers, message: &Message) -> Self {
        let now = handlers.running.fetch_add(1, Ordering::SeqCst) + 1;
        handlers.max_running.fetch_max(now, Ordering::SeqCst);
        let receipt = message.receipt_handle().clone();
        handlers.log.push(Event::Started {
            receipt: receipt.clone(),
            at: Instant::now(),
        });
        Self {
            handlers,
            receipt,
            context: message.context().clone(),
            returned: false,
        }
    }

    fn returned(&mut self, ended: Ended) {
        self.returned = true;
        self.handlers.log.push(Event::Returned {
            receipt: self.receipt.clone(),
            at: Instant::now(),
            ended,
        });
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.handlers.running.fetch_sub(1, Ordering::SeqCst);
        if !self.returned {
            self.handlers.log.push(Event::Dropped {
                receipt: self.receipt.clone(),
                at: Instant::now(),
                deadline: self.context.deadline(),
            });
        }
    }
}

/// `plan.depth.unique`: which plan a message follows and how often it was handed on.
fn parse_body(body: &str) -> (usize, usize) {
    let mut fields = body
        .split('.')
        .map(|field| field.parse().expect("a planned body"));
    let plan = fields.next().expect("plan");
    let depth = fields.next().expect("depth");
    (plan, depth)
}

async fn handle(handlers: Arc<Handlers>, message: Message) -> Outcome {
    let (plan, depth) = parse_body(message.body());
    let attempt = handlers.case.attempt(plan, depth, message.receive_count());
    let mut running = Running::start(&handlers, &message);
    let work = Duration::from_millis(handlers.case.visibility_secs * attempt.work_permille);
    let act = match attempt.act {
        Act::Hang => {
            sleep(Duration::from_secs(3600)).await;
            Act::Ack
        }
        Act::CheckpointOnStop => {
            tokio::select! {
                () = sleep(work) => Act::Ack,
                () = message.context().stopping() => Act::Continue,
            }
        }
        act => {
            sleep(work).await;
            act
        }
    };
    match act {
        Act::Ack | Act::Hang | Act::CheckpointOnStop => {
            running.returned(Ended::Ack);
            Outcome::Ack
        }
        Act::Continue if depth >= MAX_DEPTH => {
            running.returned(Ended::Ack);
            Outcome::Ack
        }
        Act::Continue => {
            let unique = handlers.next_body.fetch_add(1, Ordering::SeqCst);
            let body = format!("{plan}.{}.{unique}", depth + 1);
            running.returned(Ended::Continue(body.clone()));
            Outcome::Continue(SendMessage::new(body))
        }
        Act::Fail => {
            running.returned(Ended::Fail);
            Outcome::fail("planned failure")
        }
        Act::RetryAfter(millis) => {
            let delay = Duration::from_millis(millis);
            running.returned(Ended::RetryAfter(delay));
            Outcome::RetryAfter(delay)
        }
        Act::Panic => {
            running.returned(Ended::Panicked);
            std::panic::panic_any(PLANNED_PANIC)
        }
    }
}

/// Keeps the planned panics out of the test output; every other panic prints as usual.
fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PLANNED_PANIC) {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------
// Running a case.

/// What a run left behind.
#[derive(Debug)]
struct Run {
    case: Case,
    started: Instant,
    /// `Err` with the error's text when the worker did not run.
    result: Result<(), String>,
    /// The worker refused its settings.
    config_rejected: bool,
    returned_at: Instant,
    /// The first shutdown signal.
    stopped_at: Option<Instant>,
    /// `ShutdownHandle::now`, first or second signal.
    now_at: Option<Instant>,
    events: Vec<Event>,
    max_running: usize,
    /// The messages sent before the run: `(body, id)`.
    originals: Vec<(String, String)>,
    /// Messages visible in the queue, and in the dead-letter queue, as the worker returned.
    visible: HashSet<String>,
    dead_lettered: HashSet<String>,
}

impl Run {
    /// Seconds since the start of the run, for messages.
    fn secs(&self, at: Instant) -> f64 {
        (at - self.started).as_secs_f64()
    }
}

/// A case's run, shared by the properties that check runs: made by the first property to
/// reach the case (a second one that reaches it meanwhile waits for it), and dropped
/// once every one of them has taken it. A case met only while shrinking a failure stays.
fn shared_run(case: &Case) -> Arc<Run> {
    type Cell = Arc<OnceLock<Arc<Run>>>;
    static RUNS: LazyLock<Mutex<HashMap<String, (Cell, usize)>>> = LazyLock::new(Mutex::default);
    let key = format!("{case:?}");
    let cell = {
        let mut runs = RUNS.lock().unwrap_or_else(PoisonError::into_inner);
        let (cell, taken) = runs.entry(key.clone()).or_default();
        *taken += 1;
        let cell = Arc::clone(cell);
        if *taken == RUN_PROPERTIES {
            runs.remove(&key);
        }
        cell
    };
    Arc::clone(cell.get_or_init(|| Arc::new(run(case))))
}

fn run(case: &Case) -> Run {
    quiet_planned_panics();
    fastrand::seed(case.seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(run_paused(case.clone()))
}

/// The ids of every message a receive can take now. Called right as the worker returns:
/// it never yields, so nothing the run left in flight moves meanwhile.
fn take_visible(queue: &EmbeddedQueue) -> HashSet<String> {
    let mut ids = HashSet::new();
    loop {
        let request = ReceiveRequest {
            max_messages: 10,
            wait_time: Duration::ZERO,
            visibility_timeout: Some(MAX_VISIBILITY),
            attempt_id: None,
        };
        let messages = queue
            .receive(request)
            .now_or_never()
            .expect("a short poll of the embedded queue does not wait")
            .expect("the embedded queue receives");
        if messages.is_empty() {
            return ids;
        }
        ids.extend(messages.into_iter().map(|message| message.message_id));
    }
}

async fn run_paused(case: Case) -> Run {
    let started = Instant::now();
    let dead_letters = EmbeddedQueue::new("properties-dlq");
    let queue = EmbeddedQueue::builder("properties")
        .visibility_timeout(case.visibility())
        .redrive(&dead_letters, case.max_receive_count)
        .build()
        .expect("queue settings");
    let originals: Vec<(String, String)> = (0..case.messages.len())
        .map(|plan| {
            let body = format!("{plan}.0.0");
            let id = queue.send(body.clone());
            (body, id)
        })
        .collect();
    let log = Arc::new(Log::default());

    // Faults, armed at their moments.
    let mut faults = case.faults.clone();
    faults.sort_by_key(|fault| fault.at_ms);
    let armed = queue.clone();
    let arming = tokio::spawn(async move {
        for fault in faults {
            sleep_until(started + Duration::from_millis(fault.at_ms)).await;
            let faults = armed.faults();
            match fault.kind {
                FaultKind::Throttle(calls) => faults.throttle_next(fault.operation, calls),
                FaultKind::Transient(calls) => faults.fail_next(fault.operation, calls),
                FaultKind::FailEntries(entries) => {
                    faults.fail_next_entries(fault.operation, entries);
                }
                FaultKind::LatencyMs(millis) => {
                    faults.set_latency(fault.operation, Some(Duration::from_millis(millis)));
                }
                FaultKind::NoLatency => faults.set_latency(fault.operation, None),
            }
        }
    });

    // The shutdown, at its moment.
    let shutdown = ShutdownHandle::new();
    let signals = Arc::new(Mutex::new((None, None)));
    let (trigger, signalled) = (shutdown.clone(), Arc::clone(&signals));
    let stop = case.stop;
    let stop_at = started + Duration::from_millis(case.stop_at_ms);
    let stopping = tokio::spawn(async move {
        sleep_until(stop_at).await;
        let now = Instant::now();
        match stop {
            Stop::Immediate => {
                *signalled.lock().expect("signals") = (Some(now), Some(now));
                trigger.now();
            }
            Stop::Graceful | Stop::GracefulThenNow(_) => {
                signalled.lock().expect("signals").0 = Some(now);
                trigger.begin();
            }
        }
        if let Stop::GracefulThenNow(after) = stop {
            sleep(Duration::from_millis(after)).await;
            signalled.lock().expect("signals").1 = Some(Instant::now());
            trigger.now();
        }
    });

    let handlers = Arc::new(Handlers {
        case: case.clone(),
        log: Arc::clone(&log),
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        next_body: AtomicU64::new(1),
    });
    let backend = Recorder {
        queue: queue.clone(),
        receive_cancel_safe: case.receive_cancel_safe,
        log: Arc::clone(&log),
    };
    let mut worker = Worker::builder(backend)
        .concurrency(case.concurrency)
        .pollers(case.pollers)
        .batch_size(case.batch_size)
        .wait_time(Duration::from_secs(case.wait_secs))
        .retry(RetryPolicy::Backoff(case.backoff()))
        .stop_timeout(Duration::from_millis(case.stop_timeout_ms));
    #[cfg(feature = "ecs")]
    {
        worker = worker.task_protection(None);
    }
    if let Some(timeout) = case.handler_timeout_ms {
        worker = worker.handler_timeout(Duration::from_millis(timeout));
    }
    if let Some(grace) = case.grace() {
        worker = worker.shutdown_grace(grace);
    }
    let calls = Arc::clone(&handlers);
    let result = worker
        .handler(move |message: Message| handle(Arc::clone(&calls), message))
        .run_with(shutdown)
        .await;
    let returned_at = Instant::now();
    // The state at return, before anything the run left behind moves on.
    queue.faults().clear();
    dead_letters.faults().clear();
    let visible = take_visible(&queue);
    let dead_lettered = take_visible(&dead_letters);
    let events = log.events.lock().expect("log").clone();
    arming.abort();
    stopping.abort();
    let (stopped_at, now_at) = *signals.lock().expect("signals");
    Run {
        config_rejected: matches!(result, Err(Error::Config(_))),
        result: result.map(drop).map_err(|error| error.to_string()),
        case,
        started,
        returned_at,
        stopped_at,
        now_at,
        events,
        max_running: handlers.max_running.load(Ordering::SeqCst),
        originals,
        visible,
        dead_lettered,
    }
}

// ---------------------------------------------------------------------------------------
// Reading the log.

/// How one handler call on one receive went.
#[derive(Clone, Debug, Default)]
struct Call {
    started: Option<Instant>,
    /// Position in the log and instant of its return, and how it ended.
    returned: Option<(usize, Instant, Ended)>,
    /// Position in the log, instant, and the shutdown deadline it saw.
    dropped: Option<(usize, Instant, Option<Instant>)>,
}

/// One entry of a delete or change call for one receipt.
#[derive(Clone, Debug)]
struct Entry {
    begun: usize,
    begun_at: Instant,
    /// `None` for a delete.
    timeout: Option<Duration>,
    /// Log position and instant of the call's return, and whether this entry was applied.
    ended: Option<(usize, Instant, bool)>,
}

/// What one receive of a message (one receipt handle) went through.
#[derive(Clone, Debug)]
struct Receive {
    id: String,
    receive_count: u32,
    at: Instant,
    call: Call,
    entries: Vec<Entry>,
}

/// One attempt at sending a continuation.
#[derive(Debug)]
struct SendAttempt {
    /// Where in the log it began.
    begun: usize,
    /// Where in the log it returned, with the message id or the error.
    ended: Option<(usize, Result<String, String>)>,
}

#[derive(Debug, Default)]
struct Sends {
    /// Each body's attempts, in order.
    by_body: HashMap<String, Vec<SendAttempt>>,
}

#[derive(Debug)]
struct History {
    receives: HashMap<ReceiptHandle, Receive>,
    /// Each message's receipts, in receive order.
    receipts_of: HashMap<String, Vec<ReceiptHandle>>,
    sends: Sends,
}

impl History {
    fn of(run: &Run) -> Self {
        let mut receives: HashMap<ReceiptHandle, Receive> = HashMap::new();
        let mut receipts_of: HashMap<String, Vec<ReceiptHandle>> = HashMap::new();
        let mut sends = Sends::default();
        let mut begun: HashMap<usize, (usize, Instant, &Request)> = HashMap::new();
        for (position, event) in run.events.iter().enumerate() {
            match event {
                Event::Begin { call, at, request } => {
                    begun.insert(*call, (position, *at, request));
                    let entries: Vec<(ReceiptHandle, Option<Duration>)> = match request {
                        Request::Delete(handles) => handles
                            .iter()
                            .map(|handle| (handle.clone(), None))
                            .collect(),
                        Request::Change(changes) => changes
                            .iter()
                            .map(|(handle, timeout)| (handle.clone(), Some(*timeout)))
                            .collect(),
                        Request::Send(body) => {
                            sends
                                .by_body
                                .entry(body.clone())
                                .or_default()
                                .push(SendAttempt {
                                    begun: position,
                                    ended: None,
                                });
                            Vec::new()
                        }
                        Request::Receive | Request::Attributes => Vec::new(),
                    };
                    for (receipt, timeout) in entries {
                        if let Some(receive) = receives.get_mut(&receipt) {
                            receive.entries.push(Entry {
                                begun: position,
                                begun_at: *at,
                                timeout,
                                ended: None,
                            });
                        }
                    }
                }
                Event::End { call, at, response } => {
                    let Some(&(begun_at, _, request)) = begun.get(call) else {
                        continue;
                    };
                    match (request, response) {
                        (_, Response::Received(delivered)) => {
                            for delivery in delivered {
                                receipts_of
                                    .entry(delivery.id.clone())
                                    .or_default()
                                    .push(delivery.receipt.clone());
                                receives.insert(
                                    delivery.receipt.clone(),
                                    Receive {
                                        id: delivery.id.clone(),
                                        receive_count: delivery.receive_count,
                                        at: *at,
                                        call: Call::default(),
                                        entries: Vec::new(),
                                    },
                                );
                            }
                        }
                        (Request::Delete(handles), _) => {
                            end_entries(&mut receives, handles, begun_at, position, *at, response);
                        }
                        (Request::Change(changes), _) => {
                            let handles: Vec<ReceiptHandle> =
                                changes.iter().map(|(handle, _)| handle.clone()).collect();
                            end_entries(&mut receives, &handles, begun_at, position, *at, response);
                        }
                        (Request::Send(body), _) => {
                            let result = match response {
                                Response::Sent(id) => Ok(id.clone()),
                                Response::Failed(error) => Err(error.clone()),
                                other => Err(format!("{other:?}")),
                            };
                            if let Some(attempt) =
                                sends.by_body.get_mut(body).and_then(|attempts| {
                                    attempts
                                        .iter_mut()
                                        .find(|attempt| attempt.begun == begun_at)
                                })
                            {
                                attempt.ended = Some((position, result));
                            }
                        }
                        _ => {}
                    }
                }
                Event::Started { receipt, at } => {
                    if let Some(receive) = receives.get_mut(receipt) {
                        receive.call.started = Some(*at);
                    }
                }
                Event::Returned { receipt, at, ended } => {
                    if let Some(receive) = receives.get_mut(receipt) {
                        receive.call.returned = Some((position, *at, ended.clone()));
                    }
                }
                Event::Dropped {
                    receipt,
                    at,
                    deadline,
                } => {
                    if let Some(receive) = receives.get_mut(receipt) {
                        receive.call.dropped = Some((position, *at, *deadline));
                    }
                }
            }
        }
        Self {
            receives,
            receipts_of,
            sends,
        }
    }

    /// The message id a continuation with this body was sent as, if a send succeeded
    /// (and where in the log).
    fn sent(&self, body: &str) -> Option<(usize, &str)> {
        self.sends
            .by_body
            .get(body)?
            .iter()
            .find_map(|attempt| match &attempt.ended {
                Some((position, Ok(id))) => Some((*position, id.as_str())),
                _ => None,
            })
    }

    /// Whether a send of this body is still under way.
    fn sending(&self, body: &str) -> bool {
        self.sends
            .by_body
            .get(body)
            .is_some_and(|attempts| attempts.iter().any(|attempt| attempt.ended.is_none()))
    }

    fn continuation_ids(&self) -> Vec<String> {
        self.sends
            .by_body
            .values()
            .flatten()
            .filter_map(|attempt| match &attempt.ended {
                Some((_, Ok(id))) => Some(id.clone()),
                _ => None,
            })
            .collect()
    }
}

fn end_entries(
    receives: &mut HashMap<ReceiptHandle, Receive>,
    handles: &[ReceiptHandle],
    begun: usize,
    position: usize,
    at: Instant,
    response: &Response,
) {
    for (index, handle) in handles.iter().enumerate() {
        let applied = match response {
            Response::Entries(results) => matches!(results.get(index), Some(Ok(()))),
            _ => false,
        };
        if let Some(entry) = receives.get_mut(handle).and_then(|receive| {
            receive
                .entries
                .iter_mut()
                .find(|entry| entry.begun == begun)
        }) {
            entry.ended = Some((position, at, applied));
        }
    }
}

/// What the worker owes a receive once its handler is done with it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owed {
    /// A delete (the handler succeeded, or its continuation was sent).
    Delete,
    /// A change to the retry delay the policy asks; or, when `true`, a release (a
    /// continuation not sent when the worker gave up on running handlers is abandoned
    /// and its message released).
    Retry(Duration, bool),
    /// A release: visibility 0 (cancelled at shutdown, or never started).
    Release,
    /// The handler still runs, or its continuation is still being sent.
    Unsettled(&'static str),
}

impl Run {
    /// Whether the handler was dropped at its timeout (rather than cancelled at
    /// shutdown: at the same instant, cancellation wins).
    fn timed_out(&self, receive: &Receive) -> bool {
        match (self.case.handler_timeout_ms, receive.call.dropped) {
            (Some(timeout), Some((_, dropped_at, deadline))) => {
                let gives_up = [deadline, self.now_at].into_iter().flatten().min();
                dropped_at - receive.at >= Duration::from_millis(timeout)
                    && gives_up.is_none_or(|gives_up| dropped_at < gives_up)
            }
            _ => false,
        }
    }

    /// What the worker owes this receive, and from which log position on.
    fn owed(&self, history: &History, receive: &Receive) -> (Owed, usize) {
        let backoff = self.case.backoff().delay(receive.receive_count);
        let retry = Owed::Retry(backoff, false);
        if let Some((position, _, ended)) = &receive.call.returned {
            let owed = match ended {
                Ended::Ack => Owed::Delete,
                Ended::Fail | Ended::Panicked => retry,
                Ended::RetryAfter(delay) => Owed::Retry(*delay, false),
                Ended::Continue(body) => match history.sent(body) {
                    Some(_) => Owed::Delete,
                    None if history.sending(body) => Owed::Unsettled("its continuation"),
                    None => Owed::Retry(backoff, self.stopped_at.is_some()),
                },
            };
            return (owed, *position);
        }
        match receive.call.dropped {
            Some((position, _, _)) if self.timed_out(receive) => (retry, position),
            Some((position, _, _)) => (Owed::Release, position),
            None if receive.call.started.is_some() => (Owed::Unsettled("its handler"), 0),
            None => (Owed::Release, 0),
        }
    }
}

fn describe(run: &Run, receive: &Receive) -> String {
    let entries: Vec<String> = receive
        .entries
        .iter()
        .map(|entry| {
            let what = match entry.timeout {
                None => "delete".to_owned(),
                Some(timeout) => format!("change {timeout:?}"),
            };
            let ended = match entry.ended {
                None => "never returned".to_owned(),
                Some((_, at, applied)) => format!(
                    "{} at {:.3}",
                    if applied { "applied" } else { "failed" },
                    run.secs(at)
                ),
            };
            format!("{what} sent at {:.3}, {ended}", run.secs(entry.begun_at))
        })
        .collect();
    let call = &receive.call;
    let handler = match (call.started, &call.returned, call.dropped) {
        (None, _, _) => "never started".to_owned(),
        (Some(started), Some((_, at, ended)), _) => format!(
            "started at {:.3}, returned {ended:?} at {:.3}",
            run.secs(started),
            run.secs(*at)
        ),
        (Some(started), None, Some((_, at, deadline))) => format!(
            "started at {:.3}, dropped at {:.3} (deadline {:?})",
            run.secs(started),
            run.secs(at),
            deadline.map(|deadline| run.secs(deadline))
        ),
        (Some(started), None, None) => {
            format!("started at {:.3}, still running", run.secs(started))
        }
    };
    format!(
        "message {} receive #{} at {:.3}s; handler {handler}; stop at {:?}, now at {:?}, \
         returned at {:.3}; calls: [{}]",
        receive.id,
        receive.receive_count,
        run.secs(receive.at),
        run.stopped_at.map(|at| run.secs(at)),
        run.now_at.map(|at| run.secs(at)),
        run.secs(run.returned_at),
        entries.join("; ")
    )
}

// ---------------------------------------------------------------------------------------
// The promises.

/// Every message ends deleted, in the dead-letter queue, or visible; none is invisible
/// after the worker returns, except one waiting out the retry delay its handler asked
/// for, one whose delete, retry or release the queue refused until the worker gave up
/// (injected faults: that message comes back when its timeout lapses), or one with a
/// call still unanswered as the worker returned (injected latency).
fn check_outcomes(run: &Run) -> Result<(), TestCaseError> {
    prop_assert!(run.result.is_ok(), "the worker failed: {:?}", run.result);
    let history = History::of(run);
    let ids = run
        .originals
        .iter()
        .map(|(_, id)| id.clone())
        .chain(history.continuation_ids());
    for id in ids {
        let receipts = history.receipts_of.get(&id).cloned().unwrap_or_default();
        let deleted = receipts.iter().any(|receipt| {
            history.receives[receipt]
                .entries
                .iter()
                .any(|entry| entry.timeout.is_none() && matches!(entry.ended, Some((_, _, true))))
        });
        if deleted || run.visible.contains(&id) || run.dead_lettered.contains(&id) {
            continue;
        }
        let Some(last) = receipts.last() else {
            return Err(TestCaseError::fail(format!(
                "message {id} is lost: not deleted, not visible, not dead-lettered, never received"
            )));
        };
        let receive = &history.receives[last];
        let (owed, from) = run.owed(&history, receive);
        if let Owed::Unsettled(what) = owed {
            return Err(TestCaseError::fail(format!(
                "invisible after the worker returned with {what} unsettled: {}",
                describe(run, receive)
            )));
        }
        if receive.entries.iter().any(|entry| entry.ended.is_none()) {
            // A call for it was still unanswered as the worker returned (injected
            // latency): what becomes of the message is the queue's to say, not the
            // worker's, which sent what it owed or holds it behind that call.
            continue;
        }
        let settles: Vec<&Entry> = receive
            .entries
            .iter()
            .filter(|entry| entry.begun > from || from == 0)
            .collect();
        match owed {
            Owed::Unsettled(_) => {}
            Owed::Delete => prop_assert!(
                settles.iter().any(|entry| entry.timeout.is_none()),
                "a finished message's delete was never sent, and it is invisible: {}",
                describe(run, receive)
            ),
            Owed::Retry(delay, _) => {
                let changes: Vec<&&Entry> = settles
                    .iter()
                    .filter(|entry| entry.timeout.is_some())
                    .collect();
                prop_assert!(
                    !changes.is_empty(),
                    "a failed message's retry (in {delay:?}) was never sent, and it is \
                     invisible: {}",
                    describe(run, receive)
                );
                // The last change the queue applied after the handler's end, if any (none:
                // the queue refused the retry, and the message comes back when its last
                // timeout lapses).
                let last_applied = receive
                    .entries
                    .iter()
                    .filter(|entry| entry.timeout.is_some())
                    .filter_map(|entry| match entry.ended {
                        Some((position, _, true)) if position > from => Some((position, entry)),
                        _ => None,
                    })
                    .max_by_key(|(position, _)| *position);
                if let Some((_, entry)) = last_applied {
                    prop_assert!(
                        entry.begun > from && entry.timeout.is_some_and(|t| t <= delay),
                        "invisible after the worker returned, hidden by a change other than \
                         its retry (in {delay:?}): {}",
                        describe(run, receive)
                    );
                }
            }
            Owed::Release => {
                let releases: Vec<&Entry> = receive
                    .entries
                    .iter()
                    .filter(|entry| entry.timeout == Some(Duration::ZERO))
                    .collect();
                prop_assert!(
                    !releases.is_empty(),
                    "a message the worker did not finish is invisible and its release was \
                     never sent: {}",
                    describe(run, receive)
                );
                prop_assert!(
                    !releases
                        .iter()
                        .any(|entry| matches!(entry.ended, Some((_, _, true)))),
                    "a released message is invisible again after the worker returned: {}",
                    describe(run, receive)
                );
            }
        }
    }
    Ok(())
}

/// Never more handlers running at once than the concurrency.
fn check_concurrency(run: &Run) -> Result<(), TestCaseError> {
    prop_assert!(run.result.is_ok(), "the worker failed: {:?}", run.result);
    prop_assert!(
        run.max_running <= run.case.concurrency,
        "{} handlers ran at once with concurrency {}",
        run.max_running,
        run.case.concurrency
    );
    Ok(())
}

/// A delete is sent only after that receive's handler succeeded, or after its
/// continuation was sent.
fn check_deletes(run: &Run) -> Result<(), TestCaseError> {
    let history = History::of(run);
    for receive in history.receives.values() {
        for entry in receive
            .entries
            .iter()
            .filter(|entry| entry.timeout.is_none())
        {
            let allowed = match &receive.call.returned {
                Some((position, _, Ended::Ack)) => *position < entry.begun,
                Some((_, _, Ended::Continue(body))) => history
                    .sent(body)
                    .is_some_and(|(sent, _)| sent < entry.begun),
                _ => false,
            };
            prop_assert!(
                allowed,
                "a delete was sent without a success before it: {}",
                describe(run, receive)
            );
        }
    }
    Ok(())
}

/// For one receipt, the last visibility change the queue applied is its release (a
/// change to 0 for a message whose handler was cancelled or never started), or the retry
/// its handler's outcome asked for: the latest intent wins, in the order the queue
/// applied the calls. (An earlier change whose call outlasted the hold-back limit may
/// land after it; it is then sent again.)
fn check_no_change_after_release(run: &Run) -> Result<(), TestCaseError> {
    let history = History::of(run);
    for receive in history.receives.values() {
        let (owed, from) = run.owed(&history, receive);
        let final_timeout = match owed {
            Owed::Release => Duration::ZERO,
            Owed::Retry(delay, or_release) => {
                let released = receive
                    .entries
                    .iter()
                    .any(|entry| entry.begun > from && entry.timeout == Some(Duration::ZERO));
                if or_release && released {
                    Duration::ZERO
                } else {
                    delay
                }
            }
            Owed::Delete | Owed::Unsettled(_) => continue,
        };
        let mut applied: Vec<(usize, &Entry)> = receive
            .entries
            .iter()
            .filter(|entry| entry.timeout.is_some())
            .filter_map(|entry| match entry.ended {
                Some((position, _, true)) => Some((position, entry)),
                _ => None,
            })
            .collect();
        applied.sort_by_key(|(position, _)| *position);
        let settled = applied.iter().position(|(_, entry)| {
            entry.timeout == Some(final_timeout) && (from == 0 || entry.begun > from)
        });
        if let Some(settled) = settled {
            let later: Vec<Duration> = applied[settled + 1..]
                .iter()
                .filter_map(|(_, entry)| entry.timeout)
                .filter(|timeout| *timeout != final_timeout)
                .collect();
            // An earlier change that landed after it (its call outlasted the hold-back
            // limit, or the settler was closing) is followed by it again: the latest
            // intent is the one that stays.
            let last = applied.last().and_then(|(_, entry)| entry.timeout);
            prop_assert!(
                last == Some(final_timeout),
                "{} ({final_timeout:?}) was overtaken by changes to {later:?}, not sent again: {}",
                if owed == Owed::Release {
                    "a release"
                } else {
                    "a retry"
                },
                describe(run, receive)
            );
        }
    }
    Ok(())
}

/// The worker returns by the stop timeout, counted from the first signal.
fn check_stop_timeout(run: &Run) -> Result<(), TestCaseError> {
    prop_assert!(run.result.is_ok(), "the worker failed: {:?}", run.result);
    let stopped_at = run
        .stopped_at
        .expect("the run ends after its shutdown began");
    let took = run.returned_at - stopped_at;
    let stop_timeout = Duration::from_millis(run.case.stop_timeout_ms);
    prop_assert!(
        took <= stop_timeout,
        "the worker took {took:?} from the shutdown to return, stop timeout {stop_timeout:?}"
    );
    Ok(())
}

/// A handler still running when the shutdown contract gives up on it (the grace
/// deadline, or an immediate shutdown: a first `now` or a second signal) is cancelled
/// and its release sent at once, whatever receives are still under way; a message a
/// receive returned as the worker stopped is released at once too.
fn check_prompt_release(run: &Run) -> Result<(), TestCaseError> {
    let history = History::of(run);
    for receive in history.receives.values() {
        let (owed, _) = run.owed(&history, receive);
        if owed != Owed::Release {
            continue;
        }
        let due = match receive.call.dropped {
            Some((_, dropped_at, deadline)) => {
                let gives_up = [deadline, run.now_at].into_iter().flatten().min();
                let Some(gives_up) = gives_up else {
                    return Err(TestCaseError::fail(format!(
                        "a handler was cancelled before any shutdown: {}",
                        describe(run, receive)
                    )));
                };
                prop_assert!(
                    dropped_at <= gives_up + PROMPT,
                    "a handler was cancelled {:?} after the moment to give up on it ({:.3}s): {}",
                    dropped_at - gives_up,
                    run.secs(gives_up),
                    describe(run, receive)
                );
                gives_up
            }
            None => receive.at,
        };
        // A release waits for a call for the same message that began before it to end
        // (the latest intent must land last).
        let earlier: Vec<&Entry> = receive
            .entries
            .iter()
            .filter(|entry| entry.begun_at <= due && entry.timeout != Some(Duration::ZERO))
            .collect();
        if earlier.iter().any(|entry| entry.ended.is_none()) {
            continue;
        }
        let held_until = earlier
            .iter()
            .filter_map(|entry| entry.ended.map(|(_, at, _)| at))
            .fold(due, Instant::max);
        let first_release = receive
            .entries
            .iter()
            .find(|entry| entry.timeout == Some(Duration::ZERO))
            .map(|entry| entry.begun_at);
        let by = (held_until + PROMPT).min(run.returned_at);
        prop_assert!(
            first_release.is_some_and(|at| at <= by),
            "a release was not sent by {:.3}s: {}",
            run.secs(by),
            describe(run, receive)
        );
    }
    Ok(())
}

/// A failure's backoff and a `RetryAfter` delay are sent as asked, not cut short to the
/// shutdown deadline (the queue keeps its timer after the worker exits), and nothing
/// the retry supersedes is sent after it.
fn check_retry_delays(run: &Run) -> Result<(), TestCaseError> {
    let history = History::of(run);
    for receive in history.receives.values() {
        let (Owed::Retry(delay, or_release), from) = run.owed(&history, receive) else {
            continue;
        };
        let after: Vec<&Entry> = receive
            .entries
            .iter()
            .filter(|entry| entry.begun > from)
            .collect();
        // A continuation's send is heartbeated while it runs: then only the last change
        // is the retry (or the release).
        let sending = matches!(&receive.call.returned, Some((_, _, Ended::Continue(_))));
        let owed = if sending {
            after.last().into_iter().copied().collect()
        } else {
            after
        };
        for entry in owed {
            prop_assert!(
                entry.timeout == Some(delay)
                    || (or_release && entry.timeout == Some(Duration::ZERO)),
                "after the handler's end, the retry (in {delay:?}) was sent as {:?}: {}",
                entry.timeout,
                describe(run, receive)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The tests, one family of promises each.

proptest! {
    #![proptest_config(config(RUNS))]
    #[test]
    fn every_message_ends_deleted_dead_lettered_or_visible(case in cases()) {
        let run = shared_run(&case);
        prop_assume!(!run.config_rejected);
        check_outcomes(&run)?;
    }
}

proptest! {
    #![proptest_config(config(RUNS))]
    #[test]
    fn never_more_handlers_than_the_concurrency(case in cases()) {
        let run = shared_run(&case);
        prop_assume!(!run.config_rejected);
        check_concurrency(&run)?;
    }
}

proptest! {
    #![proptest_config(config(RUNS))]
    #[test]
    fn deletes_only_after_success(case in cases()) {
        let run = shared_run(&case);
        prop_assume!(!run.config_rejected);
        check_deletes(&run)?;
    }
}

proptest! {
    #![proptest_config(config(RUNS))]
    #[test]
    fn no_visibility_change_lands_after_a_release_or_retry(case in cases()) {
        let run = shared_run(&case);
        prop_assume!(!run.config_rejected);
        check_no_change_after_release(&run)?;
    }
}

proptest! {
    #![proptest_config(config(RUNS))]
    #[test]
    fn the_worker_returns_by_the_stop_timeout(case in cases()) {
        let run = shared_run(&case);
        prop_assume!(!run.config_rejected);
        check_stop_timeout(&run)?;
    }
}

proptest! {
    #![proptest_config(config(RUNS))]
    #[test]
    fn handlers_given_up_on_are_released_at_once(case in cases()) {
        let run = shared_run(&case);
        prop_assume!(!run.config_rejected);
        check_prompt_release(&run)?;
    }
}

proptest! {
    #![proptest_config(config(RUNS))]
    #[test]
    fn retries_wait_what_was_asked(case in cases()) {
        let run = shared_run(&case);
        prop_assume!(!run.config_rejected);
        check_retry_delays(&run)?;
    }
}

proptest! {
    #![proptest_config(config(8))]
    /// The retry backoff a worker is configured with: without jitter, `base · 2^(n − 1)`
    /// capped at `max` and never shorter for a later attempt; with jitter, within the
    /// upper half of that.
    #[test]
    fn backoff_grows_to_its_cap_and_jitters_in_the_upper_half(
        base_ms in 0..60_000u64,
        extra_ms in 0..600_000u64,
        attempt in 1..=64u32,
    ) {
        let (base, max) = (
            Duration::from_millis(base_ms),
            Duration::from_millis(base_ms + extra_ms),
        );
        let exact = Backoff { base, max, jitter: false };
        let doubled = (u128::from(base_ms) * 1_000_000) << (attempt - 1);
        let full = Duration::from_nanos(
            u64::try_from(doubled.min(max.as_nanos())).expect("at most max"),
        );
        prop_assert_eq!(exact.delay(attempt), full, "attempt {}", attempt);
        prop_assert!(
            exact.delay(attempt + 1) >= full,
            "attempt {} waits {:?}, less than attempt {} ({:?})",
            attempt + 1,
            exact.delay(attempt + 1),
            attempt,
            full
        );
        let jittered = Backoff { jitter: true, ..exact }.delay(attempt);
        prop_assert!(
            jittered >= full / 2 && jittered <= full,
            "jittered delay {:?} outside [{:?}, {:?}]",
            jittered,
            full / 2,
            full
        );
    }
}
