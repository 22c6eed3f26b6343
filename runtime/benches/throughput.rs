//! Engine throughput and queue requests per message, against a baseline in the same run.
//!
//! Each run drains the same number of messages from a fresh embedded queue with a no-op
//! handler on a 2-thread runtime (mimalloc as the allocator, as a worker binary would
//! use):
//! - **bare loop** (the baseline): tasks that receive 10, run the handler inline, delete
//!   the 10 in one batch, and repeat: the least work any consumer can do per message;
//! - **task loop**: the same, but each message's handler runs in a task of its own, as
//!   any consumer that runs handlers concurrently must;
//! - **spotq engine**: a `Worker` with permits, one task per message, batched settling.
//!
//! Then FIFO, on queues of 100 groups at concurrency 64: the FIFO queue's group-serial
//! dispatch with a no-op handler against the standard queue's (the same messages and
//! group ids), and with 5 ms handlers against the bound `min(groups, concurrency) /
//! handler time` (12,800 msgs/s), the standard queue's figure beside it.
//!
//! Run with: `cargo bench -p spotq --bench throughput [-- MESSAGES] [--only bare|engine]`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spotq::backend::{Backend, ReceiptHandle, ReceiveRequest, ReceivedMessage};
use spotq::{EmbeddedQueue, Message, Worker};
use tokio::sync::Notify;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 3;
const BARE_TASKS: usize = 4;

struct Run {
    seconds: f64,
    requests: u64,
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

async fn engine(messages: u64) -> Run {
    engine_on(filled_queue(messages), messages, 512, Some(2), None).await
}

/// A `Worker` with `concurrency` permits drains `queue` of its `messages`, each handler
/// sleeping `work` (none: a no-op, which counts the message in the call and returns a
/// ready future, so its task carries no timer).
async fn engine_on(
    queue: EmbeddedQueue,
    messages: u64,
    concurrency: usize,
    pollers: Option<usize>,
    work: Option<Duration>,
) -> Run {
    let handled = Arc::new(AtomicU64::new(0));
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
    let mut builder = Worker::builder(queue.clone()).concurrency(concurrency);
    if let Some(pollers) = pollers {
        builder = builder.pollers(pollers);
    }
    let until = async move { all_handled.notified().await };
    let report = match work {
        None => {
            builder
                .handler(move |message: Message| {
                    black_box(message.body());
                    count();
                    async {}
                })
                .run_until(until)
                .await
        }
        Some(work) => {
            let count = Arc::new(count);
            builder
                .handler(move |message: Message| {
                    black_box(message.body());
                    let count = Arc::clone(&count);
                    async move {
                        tokio::time::sleep(work).await;
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
        let message = spotq::SendMessage::new(n.to_string()).group_id(format!("g{}", n % GROUPS));
        queue.send_with(message).expect("sent");
    }
    queue.reset_stats();
    queue
}

/// The FIFO runs: dispatch cost with a no-op handler against the standard queue's, and
/// 5 ms handlers against the bound `min(groups, concurrency) / handler time`.
fn fifo_runs(runtime: &tokio::runtime::Runtime, messages: u64, only: Option<&str>) {
    let timed = (GROUPS * 40).min(messages);
    println!();
    println!(
        "FIFO: {GROUPS} groups, concurrency {FIFO_CONCURRENCY}; no-op runs {messages} messages, \
         5 ms runs {timed}"
    );
    println!(
        "{:<20} {:>5} {:>10} {:>12} {:>13}",
        "run", "round", "seconds", "msgs/s", "requests/msg"
    );
    let runs: [(&str, bool, Option<Duration>, u64); 4] = [
        ("standard no-op", false, None, messages),
        ("fifo no-op", true, None, messages),
        ("standard 5 ms", false, Some(FIFO_WORK), timed),
        ("fifo 5 ms", true, Some(FIFO_WORK), timed),
    ];
    let mut best = [0.0f64; 4];
    for round in 1..=ROUNDS {
        for (index, &(name, fifo, work, count)) in runs.iter().enumerate() {
            if only.is_some_and(|only| !name.contains(only)) {
                continue;
            }
            let queue = grouped_queue(count, fifo);
            let run = runtime.block_on(engine_on(queue, count, FIFO_CONCURRENCY, None, work));
            let rate = count as f64 / run.seconds;
            best[index] = best[index].max(rate);
            println!(
                "{name:<20} {round:>5} {:>10.3} {rate:>12.0} {:>13.3}",
                run.seconds,
                run.requests as f64 / count as f64
            );
        }
    }
    let bound = GROUPS.min(FIFO_CONCURRENCY as u64) as f64 / FIFO_WORK.as_secs_f64();
    println!();
    println!(
        "fifo no-op / standard no-op = {:.2} (goal >= 0.8); fifo 5 ms / bound {bound:.0} \
         msgs/s = {:.2} (goal >= 0.9); standard 5 ms / bound = {:.2}",
        best[1] / best[0],
        best[3] / bound,
        best[2] / bound
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
    let mut best = [0.0f64; 3];
    for round in 1..=ROUNDS {
        for (index, name) in ["bare loop", "task loop", "spotq engine"]
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
                    _ => engine(messages).await,
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
        "best: bare loop {:.0} msgs/s, task loop {:.0} msgs/s, engine {:.0} msgs/s",
        best[0], best[1], best[2]
    );
    println!(
        "engine/bare = {:.2}, engine/task loop = {:.2}",
        best[2] / best[0],
        best[2] / best[1]
    );
    fifo_runs(&runtime, messages.min(100_000), only.as_deref());
}
