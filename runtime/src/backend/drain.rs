//! A queue drained by its counts: a future that resolves once `GetQueueAttributes` has
//! read the queue empty several times in a row.
//!
//! A worker that is to stop once its queue is drained sets
//! [`exit_after_empty_receives`](crate::config::WorkerConfig::exit_after_empty_receives): its
//! own receives tell, with no extra call. [`Drained`] is for what the worker's receives
//! cannot see: a queue that other consumers share, its delayed messages, or a program
//! that waits for a queue without running a worker on it.

use std::time::Duration;

use tokio::time::sleep;

use crate::backend::Backend;
use crate::backoff::CALL_RETRY;

/// When a queue counts as drained: every approximate count (visible, not visible,
/// delayed) read zero `empty_reads` times in a row, `interval` apart. SQS counts are
/// approximate and can lag after a burst, so one empty read is not enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Time between reads of the queue's counts.
    pub interval: Duration,
    /// Consecutive empty reads before the queue counts as drained, at least 1.
    pub empty_reads: u32,
}

impl Default for Drained {
    /// Three empty reads, 10 s apart.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            empty_reads: 3,
        }
    }
}

impl Drained {
    /// Resolves once `queue` is drained, counted by every consumer's messages, delayed
    /// ones included: pass it to [`Worker::run_until`](crate::Worker::run_until) to
    /// stop a worker then. Failed reads count as not empty and are retried with backoff.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), spotq::Error> {
    /// use spotq::{backend::Drained, EmbeddedQueue, Message, Worker};
    ///
    /// let queue = EmbeddedQueue::new("nightly");
    /// queue.send_many(["a", "b", "c"]);
    /// let report = Worker::builder(queue.clone())
    ///     .handler(|_: Message| async {})
    ///     .run_until(Drained::default().of(queue))
    ///     .await?;
    /// assert_eq!(report.deleted, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn of(self, queue: impl Backend) {
        let mut empty = 0;
        let mut errors = 0;
        loop {
            match queue.attributes().await {
                Ok(attributes) if attributes.counts.is_empty() => {
                    errors = 0;
                    empty += 1;
                    if empty >= self.empty_reads.max(1) {
                        return;
                    }
                    sleep(self.interval).await;
                }
                Ok(_) => {
                    errors = 0;
                    empty = 0;
                    sleep(self.interval).await;
                }
                Err(error) => {
                    errors += 1;
                    empty = 0;
                    let delay = CALL_RETRY.delay(errors).max(self.interval);
                    tracing::warn!(%error, retry_in = ?delay, "reading the queue's counts failed");
                    sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::EmbeddedQueue;

    #[tokio::test(start_paused = true)]
    async fn an_empty_queue_is_drained_after_the_reads_in_a_row() {
        let queue = EmbeddedQueue::new("empty");
        let started = Instant::now();
        Drained {
            interval: Duration::from_secs(5),
            empty_reads: 3,
        }
        .of(queue)
        .await;
        // Reads at 0, 5 and 10 s.
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_in_flight_is_not_drained() {
        let queue = EmbeddedQueue::new("busy");
        queue.send("job");
        let drained = tokio::spawn(Drained::default().of(queue.clone()));
        sleep(Duration::from_secs(60)).await;
        assert!(!drained.is_finished(), "a visible message is not drained");
        let received = queue
            .receive(crate::backend::ReceiveRequest {
                max_messages: 1,
                wait_time: Duration::ZERO,
                visibility_timeout: Some(Duration::from_secs(300)),
                attempt_id: None,
            })
            .await
            .expect("receive");
        sleep(Duration::from_secs(60)).await;
        assert!(!drained.is_finished(), "a message in flight is not drained");
        queue
            .delete_batch(&[received[0].receipt_handle.clone()])
            .await
            .expect("delete");
        sleep(Duration::from_secs(31)).await;
        assert!(drained.is_finished());
    }
}
