//! Engine throughput and queue requests per message, against a baseline in the same run.
//!
//! Each run drains the same number of messages from a fresh embedded queue with a no-op
//! handler on a 2-thread runtime (mimalloc as the allocator, as a worker binary would
//! use):
//! - **bare loop** (the baseline): tasks that receive 10, run the handler inline, delete
//!   the 10 in one batch, and repeat: the least work any consumer can do per message;
//! - **task loop**: the same, but each message's handler runs in a task of its own, as
//!   any consumer that runs handlers concurrently must;
//! - **spotq engine**: a `Worker` with permits, one task per message, batched settling;
//! - **layered engine**: the same worker with a layer that adds nothing, so the handler
//!   is called as a tower service (`ServiceHandler`): the cost of that path alone.
//!
//! Then FIFO, on queues of 100 groups at concurrency 64: the FIFO queue's group-serial
//! dispatch with a no-op handler against the standard queue's (the same messages and
//! group ids), and with 5 ms handlers against the bound `min(groups, concurrency) /
//! handler time`, the handler time measured in the same run (a 5 ms tokio sleep lasts
//! longer: the nominal bound of 12,800 msgs/s is printed too), with the standard
//! queue's figure and a loop of 64 tasks that only sleep beside it.
//!
//! Run with: `cargo bench -p spotq --bench throughput [-- MESSAGES] [--only bare|engine|layered]`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use spotq::backend::{
    Backend, Intercept, Intercepted, QueueAttributes, ReceiptHandle, ReceiveRequest,
    ReceivedMessage,
};
use spotq::{EmbeddedQueue, Message, Worker, backend::BackendError};
use tokio::sync::Notify;
use tower::layer::util::Identity;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 3;
const BARE_TASKS: usize = 4;

struct Run {
    seconds: f64,
    requests: u64,
    /// The handlers' mean time, for handlers that work (none for no-op ones).
    handler_time: Option<Duration>,
}

fn filled_queue(messages: u64) -> EmbeddedQueue {
    let queue = EmbeddedQueue::new("bench");
    queue.send_many((0..messages).map(|n| n.to_string()));
    queue.reset_stats();
    queue
}

/// The no-op handler of every run: look at the body, count the message.
fn handle(message: ReceivedMessage, handled: &AtomicU64) -> ReceiptHandle {
    black_box(&message.body);
    handled.fetch_add(1, Ordering::Relaxed);
    message.receipt_handle
}

/// `BARE_TASKS` tasks that receive 10, hand the batch to `run_batch`, delete what it
/// returns in one call, and repeat until the queue is empty.
async fn receive_loop<F, Fut>(messages: u64, run_batch: F) -> Run
where
    F: Fn(Vec<ReceivedMessage>, Arc<AtomicU64>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<ReceiptHandle>> + Send,
{
    let queue = filled_queue(messages);
    let handled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..BARE_TASKS)
        .map(|_| {
            let (queue, handled, run_batch) =
                (queue.clone(), Arc::clone(&handled), run_batch.clone());
            tokio::spawn(async move {
                let request = ReceiveRequest {
                    max_messages: 10,
                    wait_time: Duration::ZERO,
                    visibility_timeout: None,
                    attempt_id: None,
                };
                loop {
                    let batch = queue.receive(request).await.expect("receive");
                    if batch.is_empty() {
                        break;
                    }
                    let handles = run_batch(batch, Arc::clone(&handled)).await;
                    queue.delete_batch(&handles).await.expect("delete");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("receive loop");
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(handled.load(Ordering::Relaxed), messages);
    assert_eq!(queue.counts().total(), 0);
    Run {
        seconds,
        requests: queue.stats().api_calls(),
        handler_time: None,
    }
}

/// The handler runs inline.
async fn bare_loop(messages: u64) -> Run {
    receive_loop(messages, |batch, handled| async move {
        batch
            .into_iter()
            .map(|message| handle(message, &handled))
            .collect()
    })
    .await
}

/// Each message's handler runs in a task of its own.
async fn task_loop(messages: u64) -> Run {
    receive_loop(messages, |batch, handled| async move {
        let handlers: Vec<_> = batch
            .into_iter()
            .map(|message| {
                let handled = Arc::clone(&handled);
                tokio::spawn(async move { handle(message, &handled) })
            })
            .collect();
        let mut handles = Vec::with_capacity(handlers.len());
        for handler in handlers {
            handles.push(handler.await.expect("handler task"));
        }
        handles
    })
    .await
}

async fn engine(messages: u64, layered: bool) -> Run {
    let queue = filled_queue(messages);
    engine_on(queue, false, messages, 512, Some(2), None, layered).await
}

/// A `Worker` with `concurrency` permits drains `queue` of its `messages` (taking a
/// FIFO queue for a standard one when `as_standard`), each handler sleeping `work`
/// (none: a no-op, which counts the message in the call and returns a ready future, so
/// its task carries no timer). A `layered` no-op handler is called through a layer that
/// adds nothing: as a tower service.
async fn engine_on(
    queue: EmbeddedQueue,
    as_standard: bool,
    messages: u64,
    concurrency: usize,
    pollers: Option<usize>,
    work: Option<Duration>,
    layered: bool,
) -> Run {
    let handled = Arc::new(AtomicU64::new(0));
    let busy_nanos = Arc::new(AtomicU64::new(0));
    let all_handled = Arc::new(Notify::new());
    let count = {
        let (handled, done) = (Arc::clone(&handled), Arc::clone(&all_handled));
        move || {
            if handled.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                done.notify_one();
            }
        }
    };
    let started = Instant::now();
    let builder = if as_standard {
        Worker::builder(Intercepted(AsStandard(queue.clone())))
    } else {
        Worker::builder(queue.clone())
    };
    let mut builder = builder.concurrency(concurrency);
    if let Some(pollers) = pollers {
        builder = builder.pollers(pollers);
    }
    let until = async move { all_handled.notified().await };
    let report = match work {
        None => {
            let handler = move |message: Message| {
                black_box(message.body());
                count();
                async {}
            };
            if layered {
                builder
                    .layer(Identity::new())
                    .handler(handler)
                    .run_until(until)
                    .await
            } else {
                builder.handler(handler).run_until(until).await
            }
        }
        Some(work) => {
            let count = Arc::new(count);
            let busy = Arc::clone(&busy_nanos);
            builder
                .handler(move |message: Message| {
                    black_box(message.body());
                    let (count, busy) = (Arc::clone(&count), Arc::clone(&busy));
                    async move {
                        let slept = Instant::now();
                        tokio::time::sleep(work).await;
                        busy.fetch_add(nanos(slept.elapsed()), Ordering::Relaxed);
                        count();
                    }
                })
                .run_until(until)
                .await
        }
    }
    .expect("worker runs");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(report.deleted, messages);
    assert_eq!(queue.counts().total(), 0);
    Run {
        seconds,
        requests: queue.stats().api_calls(),
        handler_time: work.map(|_| mean(&busy_nanos, messages)),
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn mean(total_nanos: &AtomicU64, count: u64) -> Duration {
    Duration::from_nanos(total_nanos.load(Ordering::Relaxed) / count.max(1))
}

/// The bound itself, measured: `tasks` tasks that each sleep `work` back to back, with
/// no queue and no worker, `messages` sleeps in all. A 5 ms tokio sleep lasts a little
/// longer (the timer's millisecond ticks), and this is how much.
async fn sleep_loop(messages: u64, tasks: u64, work: Duration) -> Run {
    let busy_nanos = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let loops: Vec<_> = (0..tasks)
        .map(|task| {
            let busy = Arc::clone(&busy_nanos);
            // The sleeps shared out as evenly as they go.
            let sleeps = messages / tasks + u64::from(task < messages % tasks);
            tokio::spawn(async move {
                for _ in 0..sleeps {
                    let slept = Instant::now();
                    tokio::time::sleep(work).await;
                    busy.fetch_add(nanos(slept.elapsed()), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in loops {
        task.await.expect("sleep loop");
    }
    Run {
        seconds: started.elapsed().as_secs_f64(),
        requests: 0,
        handler_time: Some(mean(&busy_nanos, messages)),
    }
}

/// FIFO: groups, and the handler time and concurrency of the FIFO goal.
const GROUPS: u64 = 100;
const FIFO_CONCURRENCY: usize = 64;
const FIFO_WORK: Duration = Duration::from_millis(5);

/// A queue of `messages` spread over `GROUPS` groups (round robin, as producers would
/// interleave them); FIFO or standard with the same group ids (where they only mean
/// fairness).
fn grouped_queue(messages: u64, fifo: bool) -> EmbeddedQueue {
    let builder = EmbeddedQueue::builder(if fifo { "bench.fifo" } else { "bench" });
    let queue = if fifo {
        builder.fifo().content_based_deduplication()
    } else {
        builder
    }
    .build()
    .expect("queue");
    for n in 0..messages {
        let message =
            spotq::backend::SendMessage::new(n.to_string()).group_id(format!("g{}", n % GROUPS));
        queue.send_with(message).expect("sent");
    }
    queue.reset_stats();
    queue
}

/// What a FIFO run drains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Standard,
    Fifo,
    /// A FIFO queue run with the standard dispatch ([`AsStandard`]).
    FifoAsStandard,
    /// No queue: tasks that only sleep.
    SleepLoop,
}

/// A FIFO queue that a worker takes for a standard one (another name, no `FifoQueue`):
/// the worker then runs every message of a receive at once, as on a standard queue,
/// while the queue does a FIFO queue's work. Against the FIFO run on the same queue this
/// is the cost of the group-serial dispatch alone.
#[derive(Debug)]
struct AsStandard(EmbeddedQueue);

#[async_trait]
impl Intercept for AsStandard {
    type Inner = EmbeddedQueue;

    fn inner(&self) -> &EmbeddedQueue {
        &self.0
    }

    fn name(&self) -> &str {
        "bench-as-standard"
    }

    async fn attributes(&self) -> Result<QueueAttributes, BackendError> {
        let mut attributes = self.0.attributes().await?;
        attributes.fifo = false;
        Ok(attributes)
    }
}

/// The FIFO runs: dispatch cost with a no-op handler against the standard queue's, and
/// 5 ms handlers against the bound `min(groups, concurrency) / handler time`, where the
/// handler time is the handlers' own mean in that run (a tokio sleep of 5 ms lasts a
/// little longer); beside them the standard queue's figure, and the bound measured by
/// tasks that only sleep.
fn fifo_runs(runtime: &tokio::runtime::Runtime, messages: u64, only: Option<&str>) {
    let timed = (GROUPS * 100).min(messages);
    let lanes = GROUPS.min(FIFO_CONCURRENCY as u64);
    println!();
    println!(
        "FIFO: {GROUPS} groups, concurrency {FIFO_CONCURRENCY}; no-op runs {messages} messages, \
         5 ms runs {timed}"
    );
    println!(
        "{:<20} {:>5} {:>10} {:>12} {:>13} {:>13}",
        "run", "round", "seconds", "msgs/s", "requests/msg", "handler ms"
    );
    // (name, the queue, the handler's work, messages)
    let runs: [(&str, Kind, Option<Duration>, u64); 6] = [
        ("standard no-op", Kind::Standard, None, messages),
        ("fifo as standard", Kind::FifoAsStandard, None, messages),
        ("fifo no-op", Kind::Fifo, None, messages),
        ("sleep loop 5 ms", Kind::SleepLoop, Some(FIFO_WORK), timed),
        ("standard 5 ms", Kind::Standard, Some(FIFO_WORK), timed),
        ("fifo 5 ms", Kind::Fifo, Some(FIFO_WORK), timed),
    ];
    // Per run: the best rate, and for the 5 ms runs that rate against the bound its own
    // handler time gives.
    let mut best = [0.0f64; 6];
    let mut of_bound = [0.0f64; 6];
    for round in 1..=ROUNDS {
        for (index, &(name, kind, work, count)) in runs.iter().enumerate() {
            if only.is_some_and(|only| !name.contains(only)) {
                continue;
            }
            let run = match (kind, work) {
                (Kind::SleepLoop, Some(work)) => runtime.block_on(sleep_loop(count, lanes, work)),
                _ => {
                    let queue = grouped_queue(count, kind != Kind::Standard);
                    let as_standard = kind == Kind::FifoAsStandard;
                    runtime.block_on(engine_on(
                        queue,
                        as_standard,
                        count,
                        FIFO_CONCURRENCY,
                        None,
                        work,
                        false,
                    ))
                }
            };
            let rate = count as f64 / run.seconds;
            if rate > best[index] {
                best[index] = rate;
                of_bound[index] = run.handler_time.map_or(0.0, |time| {
                    rate / (lanes as f64 / time.as_secs_f64().max(f64::EPSILON))
                });
            }
            let handler_ms = run.handler_time.map_or_else(
                || "-".to_owned(),
                |time| format!("{:.2}", time.as_secs_f64() * 1e3),
            );
            println!(
                "{name:<20} {round:>5} {:>10.3} {rate:>12.0} {:>13.3} {handler_ms:>13}",
                run.seconds,
                run.requests as f64 / count as f64
            );
        }
    }
    let nominal = lanes as f64 / FIFO_WORK.as_secs_f64();
    println!();
    println!(
        "fifo no-op / fifo as standard = {:.2} (the group-serial dispatch alone, goal >= 0.8); \
         fifo no-op / standard no-op = {:.2} (the FIFO queue's own work too)",
        best[2] / best[1],
        best[2] / best[0]
    );
    println!(
        "against min(groups, concurrency) / mean handler time: fifo 5 ms = {:.2} (goal >= 0.9), \
         standard 5 ms = {:.2}, sleep loop = {:.2}",
        of_bound[5], of_bound[4], of_bound[3]
    );
    println!(
        "against the nominal {nominal:.0} msgs/s (5 ms exactly): fifo 5 ms = {:.2}, standard \
         5 ms = {:.2}, sleep loop = {:.2}",
        best[5] / nominal,
        best[4] / nominal,
        best[3] / nominal
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let messages: u64 = args
        .iter()
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(500_000);
    // `--only NAME` runs one side, for profiling.
    let only = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|index| args.get(index + 1).cloned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    println!("{messages} messages per run, no-op handler, embedded queue, 2 worker threads");
    println!(
        "{:<14} {:>5} {:>10} {:>12} {:>13}",
        "run", "round", "seconds", "msgs/s", "requests/msg"
    );
    let mut best = [0.0f64; 4];
    for round in 1..=ROUNDS {
        for (index, name) in ["bare loop", "task loop", "spotq engine", "layered engine"]
            .into_iter()
            .enumerate()
        {
            if only.as_deref().is_some_and(|only| !name.contains(only)) {
                continue;
            }
            let run = runtime.block_on(async {
                match index {
                    0 => bare_loop(messages).await,
                    1 => task_loop(messages).await,
                    2 => engine(messages, false).await,
                    _ => engine(messages, true).await,
                }
            });
            let rate = messages as f64 / run.seconds;
            best[index] = best[index].max(rate);
            println!(
                "{name:<14} {round:>5} {:>10.3} {rate:>12.0} {:>13.3}",
                run.seconds,
                run.requests as f64 / messages as f64
            );
        }
    }
    println!();
    println!(
        "best: bare loop {:.0} msgs/s, task loop {:.0} msgs/s, engine {:.0} msgs/s, \
         layered engine {:.0} msgs/s",
        best[0], best[1], best[2], best[3]
    );
    println!(
        "engine/bare = {:.2}, engine/task loop = {:.2}, layered engine/engine = {:.2}",
        best[2] / best[0],
        best[2] / best[1],
        best[3] / best[2]
    );
    fifo_runs(&runtime, messages.min(100_000), only.as_deref());
}
