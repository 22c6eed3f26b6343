//! The errors of spotq: configuration, queue calls, handlers.

use std::error::Error as StdError;
use std::time::Duration;

pub use crate::sdk_error::classify;

/// A boxed error from user code or a dependency.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The top-level error of running a worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range; nothing was sent to the queue.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The queue could not be reached or refused a call before the worker started.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("could not install the SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// A setting outside its allowed range. The message names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}` = {value}: {allowed}")]
pub struct ConfigError {
    /// The setting's name, as the builder method or attribute key spells it.
    pub setting: &'static str,
    /// The value that was given.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl ConfigError {
    pub(crate) fn new(
        setting: &'static str,
        value: impl std::fmt::Debug,
        allowed: impl Into<String>,
    ) -> Self {
        Self {
            setting,
            value: format!("{value:?}"),
            allowed: allowed.into(),
        }
    }
}

/// A queue call that failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The queue asked the caller to slow down. Retryable after a backoff.
    #[error("{operation} was throttled: {message}")]
    Throttled {
        /// The queue operation, e.g. `ReceiveMessage`.
        operation: &'static str,
        /// What the queue said.
        message: String,
    },
    /// A timeout, connection failure or server-side error. Retryable after a backoff.
    #[error("{operation} failed: {message}")]
    Transient {
        /// The queue operation.
        operation: &'static str,
        /// What went wrong.
        message: String,
        /// The underlying error, where there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The queue refused the call: missing queue, denied access, invalid request.
    /// Retrying the same call will not help.
    #[error("{operation} was rejected: {code}: {message}")]
    Rejected {
        /// The queue operation.
        operation: &'static str,
        /// The queue's error code, e.g. `AWS.SimpleQueueService.NonExistentQueue`.
        code: String,
        /// What the queue said.
        message: String,
    },
}

impl BackendError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    /// The queue operation that failed.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Throttled { operation, .. }
            | Self::Transient { operation, .. }
            | Self::Rejected { operation, .. } => operation,
        }
    }
}

/// Why a handler did not succeed. Every variant is a failure of one message, never of
/// the worker: the message is retried per the retry policy and, after the queue's
/// `maxReceiveCount`, moved to the dead-letter queue by the queue's redrive policy.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The handler returned an error.
    #[error("handler failed: {0}")]
    Failed(#[source] BoxError),
    /// The message body could not be decoded into the handler's input type.
    #[error("message body could not be decoded: {0}")]
    Decode(#[source] BoxError),
    /// The handler panicked.
    #[error("handler panicked: {0}")]
    Panicked(String),
    /// The handler ran past its timeout and was dropped.
    #[error("handler timed out after {0:?}")]
    TimedOut(Duration),
}

impl HandlerError {
    /// Wraps any error as a handler failure.
    pub fn failed(error: impl Into<BoxError>) -> Self {
        Self::Failed(error.into())
    }

    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Failed(_) => "failed",
            Self::Decode(_) => "decode",
            Self::Panicked(_) => "panicked",
            Self::TimedOut(_) => "timed_out",
        }
    }
}
