//! The errors of spotq: configuration, queue calls, handlers.

use std::error::Error as StdError;
use std::time::Duration;

/// A boxed error from user code or a dependency.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The top-level error of running a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// A setting that failed one of spotq-settings' checks: the ones `#[spotq::worker]` runs
/// on its arguments.
impl From<spotq_settings::Invalid> for ConfigError {
    fn from(invalid: spotq_settings::Invalid) -> Self {
        Self {
            setting: invalid.setting,
            allowed: invalid.allowed(),
            value: invalid.value,
        }
    }
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum HandlerError {
    /// The handler returned an error.
    #[error("handler failed: {0}")]
    Failed(#[source] BoxError),
    /// The message body could not be decoded into the handler's input type. The
    /// decoders of [`spotq::handler::input`](crate::api::input) put a [`DecodeError`] here, whose
    /// text never quotes the body: see [`decode_error`](Self::decode_error).
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

    /// What the decoder said, when this is a [`Decode`](Self::Decode) failure of a
    /// [`spotq::handler::input`](crate::api::input) decoder.
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            Self::Decode(error) => error.downcast_ref(),
            _ => None,
        }
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

/// A message body that did not decode into a handler's input type.
///
/// Its `Display` and `Debug` say what kind of error it is, the input type and where in
/// the body it broke (`the JSON does not fit `app::Order` at line 1 column 26`), but
/// never the body's content, so the engine logs it as it logs any failure. The
/// decoder's own text, which quotes the offending values (`invalid type: string
/// "hunter2", expected u64`), is [`detail`](Self::detail): for the handler's code, not
/// for logs.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    input_type: &'static str,
    /// The part of an envelope the error is in (`the SNS notification's `Message``), or
    /// for [`DecodeErrorKind::Envelope`] the envelope the body is not.
    within: Option<&'static str>,
    /// Why a body is not its envelope, in words that never quote it.
    reason: Option<String>,
    line: usize,
    column: usize,
    detail: String,
}

/// What kind of decode error: the body's syntax, or a body that parses but does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not valid JSON.
    Syntax,
    /// The body ends in the middle of a value.
    Eof,
    /// Valid JSON of the wrong shape: a wrong type, a missing field, an unknown variant.
    Data,
    /// Not the envelope the input type unwraps: a body that names a `TopicArn` but is
    /// not an SNS notification (an SNS `SubscriptionConfirmation`, a required field
    /// missing), or one that is not an EventBridge event.
    Envelope,
}

impl DecodeError {
    /// A JSON decode error of a body meant for `input_type`.
    pub(crate) fn json(error: &serde_json::Error, input_type: &'static str) -> Self {
        use serde_json::error::Category;
        let kind = match error.classify() {
            Category::Syntax | Category::Io => DecodeErrorKind::Syntax,
            Category::Eof => DecodeErrorKind::Eof,
            Category::Data => DecodeErrorKind::Data,
        };
        Self {
            kind,
            input_type,
            within: None,
            reason: None,
            line: error.line(),
            column: error.column(),
            detail: error.to_string(),
        }
    }

    /// The same error, found inside an envelope's `place`.
    pub(crate) fn inside(mut self, place: &'static str) -> Self {
        self.within = Some(place);
        self
    }

    /// A body meant for `input_type` inside `envelope` that is not that envelope, for
    /// `reason` (which must not quote the body); `error` is the parse's, if one failed.
    pub(crate) fn envelope(
        envelope: &'static str,
        input_type: &'static str,
        reason: String,
        error: Option<&serde_json::Error>,
    ) -> Self {
        Self {
            kind: DecodeErrorKind::Envelope,
            input_type,
            within: Some(envelope),
            line: error.map_or(0, serde_json::Error::line),
            column: error.map_or(0, serde_json::Error::column),
            detail: error.map_or_else(|| reason.clone(), ToString::to_string),
            reason: Some(reason),
        }
    }

    /// What kind of error.
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// The type the body was decoded into, as [`std::any::type_name`] spells it.
    pub fn input_type(&self) -> &'static str {
        self.input_type
    }

    /// The part of an envelope the error is in (for [`DecodeErrorKind::Envelope`]: the
    /// envelope the body is not), e.g. ``the SNS notification's `Message` ``.
    pub fn within(&self) -> Option<&'static str> {
        self.within
    }

    /// The line of the body where decoding stopped, from 1 (0: the body parsed, but was
    /// not what it claims).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column (byte) of that line where decoding stopped, from 1.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The decoder's full message. **It may quote the message body** (the value of a
    /// field, an unknown key): do not log it where bodies must not go.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            DecodeErrorKind::Syntax => "the body is not valid JSON",
            DecodeErrorKind::Eof => "the body ends early",
            DecodeErrorKind::Data => "the JSON does not fit",
            DecodeErrorKind::Envelope => {
                let envelope = self.within.unwrap_or("its envelope");
                let reason = self.reason.as_deref().unwrap_or("it does not parse");
                write!(
                    f,
                    "the body is not {envelope}: {reason} (input type `{}`)",
                    self.input_type
                )?;
                if self.line > 0 {
                    write!(f, " at line {} column {}", self.line, self.column)?;
                }
                return Ok(());
            }
        };
        write!(f, "{what} (input type `{}`", self.input_type)?;
        if let Some(place) = self.within {
            write!(f, ", in {place}")?;
        }
        write!(f, ") at line {} column {}", self.line, self.column)
    }
}

impl std::fmt::Debug for DecodeError {
    /// As `Display`'s fields: no [`detail`](Self::detail), which may quote the body.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeError")
            .field("kind", &self.kind)
            .field("input_type", &self.input_type)
            .field("within", &self.within)
            .field("reason", &self.reason)
            .field("line", &self.line)
            .field("column", &self.column)
            .finish_non_exhaustive()
    }
}

impl StdError for DecodeError {}
