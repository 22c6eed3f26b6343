//! Release latency: how fast a stopping worker hands back the messages it holds, and how
//! soon another worker has them — against the baseline of a worker that dies without
//! releasing (SIGKILL), whose messages wait out their visibility timeout.
//!
//! 1,000 messages are held by handlers that never finish, on an embedded queue whose
//! every call takes a simulated round trip, while a second worker long-polls the same
//! queue. Then the first worker is told to stop now (what a second SIGTERM, or the end
//! of the grace period, does).
//!
//! Run with: `cargo bench -p spotq --bench release [-- RTT_MS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spotq::backend::Operation;
use spotq::{EmbeddedQueue, Message, Worker, shutdown::ShutdownHandle};
use tokio::time::{Instant, sleep};

const HELD: u64 = 1_000;
const VISIBILITY: Duration = Duration::from_secs(5);

fn queue(rtt: Duration) -> EmbeddedQueue {
    let queue = EmbeddedQueue::builder("release")
        .visibility_timeout(VISIBILITY)
        .build()
        .expect("queue");
    for operation in Operation::ALL {
        queue.faults().set_latency(operation, Some(rtt));
    }
    queue
}

/// Starts a worker that holds every message it receives until told to stop, on a
/// runtime of its own (the "process" a SIGKILL ends).
fn holder(
    queue: &EmbeddedQueue,
    shutdown: ShutdownHandle,
) -> (tokio::runtime::Runtime, tokio::task::JoinHandle<()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("holder runtime");
    let worker = Worker::builder(queue.clone())
        .concurrency(HELD as usize)
        .pollers(10)
        .handler(|_message: Message| std::future::pending::<()>());
    let task = runtime.spawn(async move {
        worker.run_with(shutdown).await.expect("holder runs");
    });
    (runtime, task)
}

/// Starts a worker that takes every message at once; returns the count it has seen.
fn taker(queue: &EmbeddedQueue, shutdown: ShutdownHandle) -> Arc<AtomicU64> {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let worker = Worker::builder(queue.clone())
        .concurrency(HELD as usize)
        .pollers(10)
        .handler(move |_message: Message| {
            counter.fetch_add(1, Ordering::Relaxed);
            async {}
        });
    tokio::spawn(async move {
        worker.run_with(shutdown).await.expect("taker runs");
    });
    seen
}

async fn until(mut done: impl FnMut() -> bool) -> Instant {
    while !done() {
        sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

struct Figures {
    /// Until the stopping worker returned: its last release call had completed.
    to_released: Option<Duration>,
    /// Until the other worker had received every held message.
    to_taken: Duration,
}

/// Held messages, then `stop`: released (`release = true`) or abandoned.
async fn run(rtt: Duration, release: bool) -> Figures {
    let queue = queue(rtt);
    queue.send_many((0..HELD).map(|n| n.to_string()));
    let holding = ShutdownHandle::new();
    let (holder_runtime, first) = holder(&queue, holding.clone());
    until(|| queue.counts().not_visible == HELD).await;

    let taking = ShutdownHandle::new();
    let taken = taker(&queue, taking.clone());
    sleep(Duration::from_millis(100)).await; // the taker is long-polling

    let stopped = Instant::now();
    let to_released = if release {
        holding.now();
        first.await.expect("holder stops");
        let took = stopped.elapsed();
        holder_runtime.shutdown_background(); // its work is done; dropping it would block
        Some(took)
    } else {
        // SIGKILL: every task of the holder ends at once, nothing is released.
        holder_runtime.shutdown_background();
        None
    };
    let all_taken = until(|| taken.load(Ordering::Relaxed) == HELD).await;
    taking.begin();
    Figures {
        to_released,
        to_taken: all_taken - stopped,
    }
}

fn main() {
    let rtt_ms: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(10);
    let rtt = Duration::from_millis(rtt_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{HELD} held messages, {rtt_ms} ms per queue call, visibility timeout {}s",
        VISIBILITY.as_secs()
    );
    println!(
        "{:<24} {:>26} {:>30}",
        "stop", "last release done (ms)", "all received elsewhere (ms)"
    );
    for (name, release) in [("release (spotq)", true), ("no release (SIGKILL)", false)] {
        let figures = runtime.block_on(run(rtt, release));
        let released = figures.to_released.map_or_else(
            || "-".to_owned(),
            |took| format!("{:.0}", took.as_secs_f64() * 1e3),
        );
        println!(
            "{name:<24} {released:>26} {:>30.0}",
            figures.to_taken.as_secs_f64() * 1e3
        );
    }
}
