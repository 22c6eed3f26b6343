//! Request counters of the embedded queue: what a run would have cost on SQS.

/// How many calls an [`EmbeddedQueue`](super::EmbeddedQueue) served and how many
/// messages went through it, since it was built or since the last
/// [`reset_stats`](super::EmbeddedQueue::reset_stats).
///
/// Calls count whether they succeeded or not (a throttled or rejected call is still a
/// request), the way SQS bills them. Read with
/// [`EmbeddedQueue::stats`](super::EmbeddedQueue::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// `ReceiveMessage` calls.
    pub receive_calls: u64,
    /// Receive calls that returned no message (SQS bills these too).
    pub empty_receives: u64,
    /// `DeleteMessageBatch` calls.
    pub delete_batch_calls: u64,
    /// Entries across all delete-batch calls, failed entries included.
    pub delete_batch_entries: u64,
    /// `ChangeMessageVisibilityBatch` calls.
    pub change_visibility_batch_calls: u64,
    /// Entries across all change-visibility-batch calls, failed entries included.
    pub change_visibility_batch_entries: u64,
    /// `GetQueueAttributes` calls.
    pub attributes_calls: u64,
    /// Messages sent by `send`, `send_with` and `send_many` (not those moved in by a
    /// redrive from another queue).
    pub messages_sent: u64,
    /// Messages handed out by receive calls; a message received twice counts twice.
    pub messages_received: u64,
    /// Messages deleted.
    pub messages_deleted: u64,
    /// Messages this queue moved to its dead-letter queue.
    pub messages_dead_lettered: u64,
    /// Sends to a FIFO queue accepted without storing the message: a message with the
    /// same deduplication id was sent in the 5 minutes before.
    pub deduplicated_sends: u64,
    /// Receive calls of a FIFO queue answered with the messages of an earlier one with
    /// the same `ReceiveRequestAttemptId`.
    pub replayed_receives: u64,
}

impl RequestStats {
    /// All calls of the [`Backend`](crate::backend::Backend) operations together: what
    /// a worker's run would have been billed for, sends aside.
    pub fn api_calls(&self) -> u64 {
        self.receive_calls
            + self.delete_batch_calls
            + self.change_visibility_batch_calls
            + self.attributes_calls
    }
}
