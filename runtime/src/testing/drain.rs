//! Running a worker on the embedded queue until the queue is drained.

use std::future::Future;
use std::time::Duration;

use tokio::time::sleep;

use crate::backend::embedded::EmbeddedQueue;
use crate::engine::Dispatch;
use crate::error::Error;
use crate::telemetry::stats::RunReport;
use crate::worker::builder::Worker;
use crate::worker::spec::{AnyWorker, WorkerSpec};

/// How often [`run_until_drained`] reads the queue's counts: the most a run goes on
/// after its queue is drained, in real time or paused.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Runs `worker` until `queue` is drained, then stops it by the
/// [shutdown contract](crate::shutdown) and returns its report.
///
/// Drained means the queue holds no message in any state: none visible, none in flight
/// (a handler's, or one waiting for its retry), none delayed. By then the worker holds
/// nothing, so it stops at once. `worker` is a [`Worker`] from the builder, a
/// [`WorkerSpec`] (what `#[spotq::worker]` generates), bound here to `queue` whatever
/// its queue source says, or the [`AnyWorker`](crate::shutdown::AnyWorker) a spec was
/// bound to. A worker that cannot start (settings that fail their checks, a spec that
/// does not fit the queue) returns its error; one that ends its run by itself first
/// (run to completion, `max_run_time`) returns that run's report.
///
/// The counts are read from the queue itself every 10 ms, not through
/// `GetQueueAttributes`: [`EmbeddedQueue::stats`] counts only the worker's requests.
/// Those reads are timers, so this works under paused tokio time
/// (`#[tokio::test(start_paused = true)]`). A queue that never drains (a message failing
/// for ever with no redrive policy) keeps the worker running: bound a test with
/// [`tokio::time::timeout`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), spotq::Error> {
/// use spotq::{EmbeddedQueue, Message, Worker};
///
/// let queue = EmbeddedQueue::new("jobs");
/// queue.send_many(["a", "b", "c"]);
/// let worker = Worker::builder(queue.clone()).handler(|_: Message| async {});
/// let report = spotq::testing::run_until_drained(worker, &queue).await?;
/// assert_eq!(report.deleted, 3);
/// # Ok(())
/// # }
/// ```
pub async fn run_until_drained(
    worker: impl Runnable,
    queue: &EmbeddedQueue,
) -> Result<RunReport, Error> {
    worker.run_until_drained(queue.clone()).await
}

/// A worker [`run_until_drained`] runs: a [`Worker`] from the builder, a
/// [`WorkerSpec`] or an [`AnyWorker`](crate::shutdown::AnyWorker).
///
/// Sealed: these are the workers there are.
pub trait Runnable: sealed::Sealed {}

mod sealed {
    use super::{EmbeddedQueue, Error, Future, RunReport};

    pub trait Sealed {
        /// Runs until `queue` is drained.
        fn run_until_drained(
            self,
            queue: EmbeddedQueue,
        ) -> impl Future<Output = Result<RunReport, Error>> + Send;
    }
}

impl<H: Dispatch> Runnable for Worker<H> {}

impl<H: Dispatch> sealed::Sealed for Worker<H> {
    fn run_until_drained(
        self,
        queue: EmbeddedQueue,
    ) -> impl Future<Output = Result<RunReport, Error>> + Send {
        self.run_until(drained(queue))
    }
}

impl Runnable for AnyWorker {}

impl sealed::Sealed for AnyWorker {
    fn run_until_drained(
        self,
        queue: EmbeddedQueue,
    ) -> impl Future<Output = Result<RunReport, Error>> + Send {
        self.run_until(drained(queue))
    }
}

impl Runnable for WorkerSpec {}

impl sealed::Sealed for WorkerSpec {
    async fn run_until_drained(self, queue: EmbeddedQueue) -> Result<RunReport, Error> {
        let worker = self.worker(queue.clone())?;
        worker.run_until(drained(queue)).await
    }
}

/// Resolves once `queue` holds no message in any state.
async fn drained(queue: EmbeddedQueue) {
    while !queue.counts().is_empty() {
        sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::{Instant, timeout};

    use super::*;
    use crate::backend::SendMessage;
    use crate::config::{QueueSource, WorkerConfig};
    use crate::{Message, Outcome};

    #[tokio::test(start_paused = true)]
    async fn it_returns_once_the_queue_is_drained() {
        let queue = EmbeddedQueue::new("jobs");
        queue.send_many((0..10).map(|n| n.to_string()));
        let started = Instant::now();
        let worker = Worker::builder(queue.clone())
            .concurrency(2)
            .handler(|_: Message| sleep(Duration::from_secs(1)));
        let report = run_until_drained(worker, &queue).await.expect("runs");
        assert_eq!(report.deleted, 10);
        assert!(queue.counts().is_empty());
        // Ten jobs of a second, two at a time: drained after 5 s, and stopped soon after.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_millis(5_100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn it_does_not_return_while_a_message_is_in_flight_or_delayed() {
        let queue = EmbeddedQueue::new("slow");
        queue.send("slow");
        queue
            .send_with(SendMessage::new("later").delay(Duration::from_secs(120)))
            .expect("send");
        let handled = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&handled);
        let started = Instant::now();
        let worker = Worker::builder(queue.clone()).handler(move |message: Message| {
            recorder
                .lock()
                .expect("lock")
                .push(message.body().to_owned());
            // Longer than the visibility timeout: heartbeats keep it in flight.
            let work = if message.body() == "slow" { 90 } else { 1 };
            async move {
                sleep(Duration::from_secs(work)).await;
                Outcome::Ack
            }
        });
        let run = run_until_drained(worker, &queue);
        tokio::pin!(run);

        let early = timeout(Duration::from_secs(60), &mut run).await;
        assert!(early.is_err(), "returned with a message in flight");
        assert_eq!((queue.counts().not_visible, queue.counts().delayed), (1, 1));
        let early = timeout(Duration::from_secs(40), &mut run).await;
        assert!(early.is_err(), "returned with a message delayed");
        assert_eq!(queue.counts().total(), 1, "only the delayed one left");

        let report = run.await.expect("runs");
        assert_eq!(report.deleted, 2);
        assert_eq!(*handled.lock().expect("lock"), ["slow", "later"]);
        assert!(started.elapsed() > Duration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spec_is_bound_to_the_queue_it_drains() {
        let queue = EmbeddedQueue::new("orders");
        let spec = || {
            // No `ORDERS_QUEUE` needed: the spec runs on the queue given.
            WorkerSpec::new(
                QueueSource::env("ORDERS_QUEUE"),
                WorkerConfig::default(),
                |_: Message| async {},
            )
        };
        queue.send_many(["1", "2"]);
        let report = run_until_drained(spec(), &queue).await.expect("runs");
        assert_eq!(report.deleted, 2);

        queue.send_many(["3", "4", "5"]);
        let bound = spec().worker(queue.clone()).expect("valid settings");
        let report = run_until_drained(bound, &queue).await.expect("runs");
        assert_eq!(report.deleted, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_cannot_start_gives_its_error() {
        let queue = EmbeddedQueue::new("jobs");
        queue.send("job");
        let worker = Worker::builder(queue.clone())
            .concurrency(0)
            .handler(|_: Message| async {});
        let error = run_until_drained(worker, &queue)
            .await
            .expect_err("a worker needs a slot");
        assert!(
            matches!(&error, Error::Config(config) if config.setting == "concurrency"),
            "{error}"
        );

        let spec = WorkerSpec::new(
            QueueSource::name("jobs"),
            WorkerConfig::default(),
            |_: Message| async {},
        )
        .fifo(true);
        let error = run_until_drained(spec, &queue)
            .await
            .expect_err("jobs is not a FIFO queue");
        assert!(
            matches!(&error, Error::Config(config) if config.setting == "fifo"),
            "{error}"
        );
        assert_eq!(queue.counts().visible, 1, "nothing was received");
    }
}
