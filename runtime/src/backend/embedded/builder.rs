//! The settings of an embedded queue, checked as SQS checks them at `CreateQueue`.

use std::time::Duration;

use super::{
    DEFAULT_VISIBILITY, EmbeddedQueue, FIFO_SUFFIX, MAX_DELAY, MAX_RECEIVE_COUNT, Redrive,
    Settings, whole_seconds_within,
};
use crate::backend::MAX_VISIBILITY;
use crate::error::ConfigError;

impl EmbeddedQueue {
    /// Starts configuring a queue; see [`EmbeddedQueueBuilder`].
    pub fn builder(name: impl Into<String>) -> EmbeddedQueueBuilder {
        EmbeddedQueueBuilder::new(name.into())
    }
}

/// Configures an [`EmbeddedQueue`]; from [`EmbeddedQueue::builder`].
#[derive(Debug)]
#[must_use]
pub struct EmbeddedQueueBuilder {
    name: String,
    visibility_timeout: Duration,
    delay: Duration,
    redrive: Option<(EmbeddedQueue, u32)>,
    fifo: bool,
    content_based_deduplication: bool,
}

impl EmbeddedQueueBuilder {
    pub(super) fn new(name: String) -> Self {
        Self {
            name,
            visibility_timeout: DEFAULT_VISIBILITY,
            delay: Duration::ZERO,
            redrive: None,
            fifo: false,
            content_based_deduplication: false,
        }
    }

    /// The default visibility timeout of received messages (SQS `VisibilityTimeout`):
    /// at most 12 h, a fraction of a second rounded up. Default 30 s.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// The delay of every message sent without its own (SQS `DelaySeconds`): at most
    /// 15 min, a fraction of a second rounded up. Default none.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Moves a message to `dead_letter` when it would be received for the
    /// `max_receive_count + 1`th time (SQS `RedrivePolicy`); 1 to 1000. The dead-letter
    /// queue of a FIFO queue is a FIFO queue, that of a standard queue a standard one.
    pub fn redrive(mut self, dead_letter: &EmbeddedQueue, max_receive_count: u32) -> Self {
        self.redrive = Some((dead_letter.clone(), max_receive_count));
        self
    }

    /// Makes a FIFO queue (SQS `FifoQueue`), whose name must end in `.fifo`: every
    /// message is sent with a group, the messages of a group are handed out in order
    /// and not while one of them is in flight, and sends are deduplicated. See the
    /// [queue docs](crate::EmbeddedQueue#fifo-queues).
    pub fn fifo(mut self) -> Self {
        self.fifo = true;
        self
    }

    /// Deduplicates the messages of a FIFO queue sent without a deduplication id by
    /// the SHA-256 of their body (SQS `ContentBasedDeduplication`).
    pub fn content_based_deduplication(mut self) -> Self {
        self.content_based_deduplication = true;
        self
    }

    /// Builds the queue.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting when the visibility timeout is over 12 h,
    /// the delay over 15 min, `max_receive_count` is 0 or over 1000, the name ends in
    /// `.fifo` but the queue is not FIFO or the other way round, content-based
    /// deduplication is asked of a standard queue, or the dead-letter queue is not of
    /// the queue's kind.
    pub fn build(self) -> Result<EmbeddedQueue, ConfigError> {
        let visibility_timeout = whole_seconds_within(self.visibility_timeout, MAX_VISIBILITY)
            .ok_or_else(|| {
                ConfigError::new(
                    "visibility_timeout",
                    self.visibility_timeout,
                    "at most 12 hours (43200 s)",
                )
            })?;
        let delay = whole_seconds_within(self.delay, MAX_DELAY)
            .ok_or_else(|| ConfigError::new("delay", self.delay, "at most 15 minutes (900 s)"))?;
        if self.name.ends_with(FIFO_SUFFIX) != self.fifo {
            let allowed = if self.fifo {
                "a FIFO queue's name ends in `.fifo`"
            } else {
                "only a FIFO queue's name ends in `.fifo` (call `fifo()`)"
            };
            return Err(ConfigError::new("name", &self.name, allowed));
        }
        if self.content_based_deduplication && !self.fifo {
            return Err(ConfigError::new(
                "content_based_deduplication",
                true,
                "only on a FIFO queue (call `fifo()`)",
            ));
        }
        let redrive = match self.redrive {
            None => None,
            Some((_, count)) if count == 0 || count > MAX_RECEIVE_COUNT => {
                return Err(ConfigError::new(
                    "max_receive_count",
                    count,
                    "from 1 to 1000",
                ));
            }
            Some((dead_letter, _)) if dead_letter.inner.fifo != self.fifo => {
                return Err(ConfigError::new(
                    "redrive",
                    dead_letter.name(),
                    "a dead-letter queue of the queue's kind: FIFO for a FIFO queue, \
                     standard for a standard one",
                ));
            }
            Some((dead_letter, max_receive_count)) => Some(Redrive {
                dead_letter,
                max_receive_count,
            }),
        };
        Ok(EmbeddedQueue::with(Settings {
            name: self.name,
            visibility_timeout,
            delay,
            redrive,
            fifo: self.fifo,
            content_based_deduplication: self.content_based_deduplication,
        }))
    }
}
