//! CloudWatch Embedded Metric Format (EMF): metrics as JSON log lines.
//!
//! A task whose stdout goes to CloudWatch Logs (the `awslogs` log driver) publishes
//! metrics by printing one EMF line: CloudWatch Logs extracts the figures from it, with
//! no API call and no credentials. [`EmfRecord`] formats such a line;
//! [`spawn_emf_reporter`] prints one every interval, and a last one when told to stop.
//!
//! ```
//! use spotq::telemetry::emf::{EmfRecord, Unit};
//!
//! # fn main() -> Result<(), spotq::telemetry::emf::EmfError> {
//! let line = EmfRecord::new("spotq")
//!     .dimension("QueueName", "orders")
//!     .dimension("ServiceName", "queue-processor")
//!     .metric("BacklogPerTask", Unit::Count, 12.5)
//!     .to_line(1_700_000_000_000)?;
//! assert_eq!(
//!     line,
//!     concat!(
//!         r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"spotq","#,
//!         r#""Dimensions":[["QueueName","ServiceName"]],"#,
//!         r#""Metrics":[{"Name":"BacklogPerTask","Unit":"Count"}]}]},"#,
//!         r#""QueueName":"orders","ServiceName":"queue-processor","BacklogPerTask":12.5}"#,
//!     )
//! );
//! # Ok(())
//! # }
//! ```
//!
//! The limits checked are those of the EMF specification and of CloudWatch metrics: at
//! most 100 metrics and 30 dimensions a record, names of 1 to 255 characters, dimension
//! values of 1 to 1,024 ASCII characters, finite values. A line that breaks one would be
//! dropped by CloudWatch Logs without a word; here it is an [`EmfError`].

use std::fmt::{self, Write as _};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Number, Value};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use crate::error::ConfigError;

/// CloudWatch Embedded Metric Format output of a worker: one JSON line per interval
/// (on stdout, where the awslogs driver ships it to CloudWatch, which turns it into
/// metrics with no API call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmfSettings {
    /// The CloudWatch namespace, e.g. `Spotq`.
    pub namespace: String,
    /// The `ServiceName` dimension: the ECS service the worker runs in.
    pub service_name: String,
    /// Time between lines, at least 1 s. 60 s matches CloudWatch's standard resolution.
    pub interval: Duration,
}

impl EmfSettings {
    /// A line every minute into `namespace`, for the ECS service `service_name`.
    pub fn new(namespace: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            service_name: service_name.into(),
            interval: Duration::from_secs(60),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "emf.interval",
                self.interval,
                "at least 1 s",
            ));
        }
        Ok(())
    }
}

/// The most metrics one record may carry (EMF: at most 100 `MetricDefinition`s).
pub const MAX_METRICS: usize = 100;

/// The most dimensions one record may carry (EMF: at most 30 keys a `DimensionSet`).
pub const MAX_DIMENSIONS: usize = 30;

/// The longest namespace, dimension name or metric name, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// The longest dimension value, in characters.
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;

/// The member of the root object that holds the EMF metadata; no dimension or metric may
/// take its name.
const METADATA_MEMBER: &str = "_aws";

/// The unit of a metric: the units CloudWatch accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// `Seconds`.
    Seconds,
    /// `Microseconds`.
    Microseconds,
    /// `Milliseconds`.
    Milliseconds,
    /// `Bytes`.
    Bytes,
    /// `Kilobytes`.
    Kilobytes,
    /// `Megabytes`.
    Megabytes,
    /// `Gigabytes`.
    Gigabytes,
    /// `Terabytes`.
    Terabytes,
    /// `Bits`.
    Bits,
    /// `Kilobits`.
    Kilobits,
    /// `Megabits`.
    Megabits,
    /// `Gigabits`.
    Gigabits,
    /// `Terabits`.
    Terabits,
    /// `Percent`.
    Percent,
    /// `Count`.
    Count,
    /// `Bytes/Second`.
    BytesPerSecond,
    /// `Kilobytes/Second`.
    KilobytesPerSecond,
    /// `Megabytes/Second`.
    MegabytesPerSecond,
    /// `Gigabytes/Second`.
    GigabytesPerSecond,
    /// `Terabytes/Second`.
    TerabytesPerSecond,
    /// `Bits/Second`.
    BitsPerSecond,
    /// `Kilobits/Second`.
    KilobitsPerSecond,
    /// `Megabits/Second`.
    MegabitsPerSecond,
    /// `Gigabits/Second`.
    GigabitsPerSecond,
    /// `Terabits/Second`.
    TerabitsPerSecond,
    /// `Count/Second`.
    CountPerSecond,
    /// `None`: a figure without a unit.
    None,
}

impl Unit {
    /// The unit as CloudWatch spells it, e.g. `Count/Second`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Seconds => "Seconds",
            Self::Microseconds => "Microseconds",
            Self::Milliseconds => "Milliseconds",
            Self::Bytes => "Bytes",
            Self::Kilobytes => "Kilobytes",
            Self::Megabytes => "Megabytes",
            Self::Gigabytes => "Gigabytes",
            Self::Terabytes => "Terabytes",
            Self::Bits => "Bits",
            Self::Kilobits => "Kilobits",
            Self::Megabits => "Megabits",
            Self::Gigabits => "Gigabits",
            Self::Terabits => "Terabits",
            Self::Percent => "Percent",
            Self::Count => "Count",
            Self::BytesPerSecond => "Bytes/Second",
            Self::KilobytesPerSecond => "Kilobytes/Second",
            Self::MegabytesPerSecond => "Megabytes/Second",
            Self::GigabytesPerSecond => "Gigabytes/Second",
            Self::TerabytesPerSecond => "Terabytes/Second",
            Self::BitsPerSecond => "Bits/Second",
            Self::KilobitsPerSecond => "Kilobits/Second",
            Self::MegabitsPerSecond => "Megabits/Second",
            Self::GigabitsPerSecond => "Gigabits/Second",
            Self::TerabitsPerSecond => "Terabits/Second",
            Self::CountPerSecond => "Count/Second",
            Self::None => "None",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of member a rejected name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameKind {
    /// A dimension's name.
    Dimension,
    /// A metric's name.
    Metric,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dimension => "dimension",
            Self::Metric => "metric",
        })
    }
}

/// A record that CloudWatch would not turn into metrics. The message names the part.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EmfError {
    /// The namespace is empty, too long, starts with `AWS/`, or has a character
    /// CloudWatch does not allow in namespaces.
    #[error("namespace {namespace:?} is not allowed: {reason}")]
    InvalidNamespace {
        /// The namespace given.
        namespace: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A dimension or metric name is empty, blank, too long, or not allowed.
    #[error("{kind} name {name:?} is not allowed: {reason}")]
    InvalidName {
        /// Whose name it is.
        kind: NameKind,
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A dimension's value is empty, blank, too long, or not printable ASCII.
    #[error("the value of dimension {dimension:?} is not allowed: {reason}")]
    InvalidDimensionValue {
        /// The dimension's name.
        dimension: String,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// Two members of the record (dimensions or metrics) have the same name: each is a
    /// member of one JSON object, so one would hide the other.
    #[error("{name:?} names more than one dimension or metric")]
    DuplicateName {
        /// The name used twice.
        name: String,
    },
    /// A metric's value is NaN or infinite, which JSON cannot carry.
    #[error("metric {metric:?} is {value}, not a finite number")]
    NotFinite {
        /// The metric's name.
        metric: String,
        /// Its value.
        value: f64,
    },
    /// More than [`MAX_METRICS`] metrics.
    #[error("{count} metrics in one record; EMF allows at most {MAX_METRICS}")]
    TooManyMetrics {
        /// How many the record has.
        count: usize,
    },
    /// More than [`MAX_DIMENSIONS`] dimensions.
    #[error("{count} dimensions in one record; EMF allows at most {MAX_DIMENSIONS}")]
    TooManyDimensions {
        /// How many the record has.
        count: usize,
    },
    /// The record has no metric, so CloudWatch would publish nothing.
    #[error("the record has no metric")]
    NoMetrics,
}

/// One EMF record: a namespace, dimensions that apply to every metric, and metrics.
///
/// The dimensions form one dimension set, in the order they were added; a record with
/// no dimension publishes its metrics without dimensions. Nothing is checked until
/// [`to_line`](Self::to_line) (or [`validate`](Self::validate)).
#[derive(Clone, Debug, PartialEq)]
pub struct EmfRecord {
    namespace: String,
    dimensions: Vec<(String, String)>,
    metrics: Vec<Metric>,
}

#[derive(Clone, Debug, PartialEq)]
struct Metric {
    name: String,
    unit: Unit,
    value: f64,
}

impl EmfRecord {
    /// An empty record in the CloudWatch namespace `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            dimensions: Vec::new(),
            metrics: Vec::new(),
        }
    }

    /// Adds a dimension, e.g. `("QueueName", "orders")`. Keep values bounded (a queue, a
    /// service): each distinct combination is a separate, separately billed metric.
    #[must_use]
    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// Adds a metric with its unit and value.
    #[must_use]
    pub fn metric(mut self, name: impl Into<String>, unit: Unit, value: f64) -> Self {
        self.metrics.push(Metric {
            name: name.into(),
            unit,
            value,
        });
        self
    }

    /// The CloudWatch namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Checks the record against the limits of EMF and CloudWatch.
    ///
    /// # Errors
    ///
    /// The first part of the record that breaks one, as an [`EmfError`].
    pub fn validate(&self) -> Result<(), EmfError> {
        check_namespace(&self.namespace)?;
        if self.metrics.is_empty() {
            return Err(EmfError::NoMetrics);
        }
        if self.metrics.len() > MAX_METRICS {
            return Err(EmfError::TooManyMetrics {
                count: self.metrics.len(),
            });
        }
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(EmfError::TooManyDimensions {
                count: self.dimensions.len(),
            });
        }
        for (name, value) in &self.dimensions {
            check_name(NameKind::Dimension, name)?;
            check_dimension_value(name, value)?;
        }
        for metric in &self.metrics {
            check_name(NameKind::Metric, &metric.name)?;
            if !metric.value.is_finite() {
                return Err(EmfError::NotFinite {
                    metric: metric.name.clone(),
                    value: metric.value,
                });
            }
        }
        let mut names: Vec<&str> = self
            .dimensions
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(self.metrics.iter().map(|metric| metric.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(EmfError::DuplicateName {
                name: pair[0].to_owned(),
            });
        }
        Ok(())
    }

    /// The record as one EMF line (without the line break), stamped `timestamp_ms`
    /// milliseconds after the Unix epoch.
    ///
    /// # Errors
    ///
    /// What [`validate`](Self::validate) finds.
    pub fn to_line(&self, timestamp_ms: u64) -> Result<String, EmfError> {
        self.validate()?;
        // Written by hand rather than through a `serde_json::Map`, so that `_aws` comes
        // first and members keep the order they were added in, as a reader expects.
        let mut line = String::with_capacity(256);
        line.push_str(r#"{"_aws":{"Timestamp":"#);
        push_display(&mut line, timestamp_ms);
        line.push_str(r#","CloudWatchMetrics":[{"Namespace":"#);
        push_string(&mut line, &self.namespace);
        line.push_str(r#","Dimensions":[["#);
        for (index, (name, _)) in self.dimensions.iter().enumerate() {
            if index > 0 {
                line.push(',');
            }
            push_string(&mut line, name);
        }
        line.push_str(r#"]],"Metrics":["#);
        for (index, metric) in self.metrics.iter().enumerate() {
            if index > 0 {
                line.push(',');
            }
            line.push_str(r#"{"Name":"#);
            push_string(&mut line, &metric.name);
            line.push_str(r#","Unit":"#);
            push_string(&mut line, metric.unit.as_str());
            line.push('}');
        }
        line.push_str("]}]}");
        for (name, value) in &self.dimensions {
            line.push(',');
            push_string(&mut line, name);
            line.push(':');
            push_string(&mut line, value);
        }
        for metric in &self.metrics {
            line.push(',');
            push_string(&mut line, &metric.name);
            line.push(':');
            let value = Number::from_f64(metric.value).ok_or_else(|| EmfError::NotFinite {
                metric: metric.name.clone(),
                value: metric.value,
            })?;
            push_display(&mut line, value);
        }
        line.push('}');
        Ok(line)
    }
}

/// Appends `text` as a JSON string, quoted and escaped.
fn push_string(line: &mut String, text: &str) {
    push_display(line, Value::from(text));
}

fn push_display(line: &mut String, value: impl fmt::Display) {
    // Writing to a `String` cannot fail.
    let _ = write!(line, "{value}");
}

fn check_namespace(namespace: &str) -> Result<(), EmfError> {
    let reject = |reason| {
        Err(EmfError::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        })
    };
    if namespace.trim().is_empty() {
        return reject("it is empty or blank");
    }
    if namespace.chars().count() > MAX_NAME_CHARS {
        return reject("it is longer than 255 characters");
    }
    if namespace.starts_with("AWS/") {
        return reject("namespaces starting with `AWS/` are reserved for AWS services");
    }
    if namespace.starts_with(':') {
        return reject("it starts with `:`");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if !namespace.chars().all(allowed) {
        return reject("only ASCII letters, digits, spaces and `.-_/#:` are allowed");
    }
    Ok(())
}

fn check_name(kind: NameKind, name: &str) -> Result<(), EmfError> {
    let reject = |reason| {
        Err(EmfError::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    if name.trim().is_empty() {
        return reject("it is empty or blank");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return reject("it is longer than 255 characters");
    }
    if name == METADATA_MEMBER {
        return reject("`_aws` holds the EMF metadata");
    }
    if name.chars().any(char::is_control) {
        return reject("it has a control character");
    }
    if kind == NameKind::Dimension {
        if !name.is_ascii() {
            return reject("dimension names are ASCII only");
        }
        if name.starts_with(':') {
            return reject("dimension names cannot start with `:`");
        }
    }
    Ok(())
}

fn check_dimension_value(dimension: &str, value: &str) -> Result<(), EmfError> {
    let reject = |reason| {
        Err(EmfError::InvalidDimensionValue {
            dimension: dimension.to_owned(),
            reason,
        })
    };
    if value.trim().is_empty() {
        return reject("it is empty or blank");
    }
    if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return reject("dimension values are printable ASCII only");
    }
    // ASCII by now, so bytes are characters.
    if value.len() > MAX_DIMENSION_VALUE_CHARS {
        return reject("it is longer than 1024 characters");
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, by the wall clock: EMF timestamps are wall-clock
/// times, not the monotonic clock the intervals run on.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Writes one EMF line to `out` every `interval`, and a last one when `stop` is
/// cancelled; the task then ends.
///
/// `record` is asked for the figures each time; `None` writes nothing that time. The
/// first line comes one interval after the call. A record that fails
/// [`validate`](EmfRecord::validate), or a write that fails, is logged as a warning and
/// skipped: the next interval tries again.
///
/// In production `out` is [`std::io::stdout()`]: each line is written with one
/// `write_all` and flushed, so it is not interleaved with other lines written through
/// `stdout`. The write happens on the runtime's thread; a line is a few hundred bytes,
/// which a log driver's pipe takes without blocking.
///
/// Must be called within a Tokio runtime.
///
/// # Errors
///
/// A [`ConfigError`] if `interval` is zero.
pub fn spawn_emf_reporter<R, W>(
    interval: Duration,
    mut record: R,
    mut out: W,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, ConfigError>
where
    R: FnMut() -> Option<EmfRecord> + Send + 'static,
    W: Write + Send + 'static,
{
    if interval.is_zero() {
        return Err(ConfigError::new(
            "spawn_emf_reporter(interval)",
            interval,
            "more than zero",
        ));
    }
    Ok(tokio::spawn(async move {
        let mut ticks = interval_at(Instant::now() + interval, interval);
        // After a stall, carry on one interval apart rather than writing a burst of
        // lines that would all carry the same figures.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Stopping wins a tie, so the last line is written once.
                biased;
                () = stop.cancelled() => {
                    report(&mut record, &mut out);
                    return;
                }
                _ = ticks.tick() => report(&mut record, &mut out),
            }
        }
    }))
}

/// Writes one line, if there is a valid record.
fn report(record: &mut impl FnMut() -> Option<EmfRecord>, out: &mut impl Write) {
    let Some(record) = record() else {
        return;
    };
    let mut line = match record.to_line(now_ms()) {
        Ok(line) => line,
        Err(error) => {
            tracing::warn!(%error, "an EMF record was not written");
            return;
        }
    };
    line.push('\n');
    if let Err(error) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(%error, "an EMF line could not be written");
    }
}

/// What a worker's EMF lines carry ([`WorkerBuilder::emf`](crate::WorkerBuilder::emf)),
/// for what reads them in CloudWatch (alarms, scaling policies): in the namespace of the
/// worker's [`EmfSettings`], each metric of [`METRICS`](names::METRICS)
/// with the dimensions [`DIMENSIONS`](names::DIMENSIONS), one dimension set.
pub mod names {
    use super::Unit;

    /// `QueueName`: the queue's name (not its URL).
    pub const QUEUE_NAME: &str = "QueueName";
    /// `ServiceName`: the [`EmfSettings::service_name`](super::EmfSettings::service_name).
    pub const SERVICE_NAME: &str = "ServiceName";
    /// The dimensions of every metric, in order.
    pub const DIMENSIONS: [&str; 2] = [QUEUE_NAME, SERVICE_NAME];

    /// `BacklogPerTask`: `spotq_backlog_per_task`; only while the task count is known.
    pub const BACKLOG_PER_TASK: &str = "BacklogPerTask";
    /// `MessagesInFlight`: `spotq_messages_in_flight`, the messages the worker holds.
    pub const MESSAGES_IN_FLIGHT: &str = "MessagesInFlight";
    /// `Throughput`: messages succeeded per second since the last line.
    pub const THROUGHPUT: &str = "Throughput";
    /// `MessagesVisible`: `spotq_queue_messages_visible`; once the backlog is sampled.
    pub const MESSAGES_VISIBLE: &str = "MessagesVisible";
    /// `MessagesNotVisible`: `spotq_queue_messages_not_visible`; once the backlog is
    /// sampled.
    pub const MESSAGES_NOT_VISIBLE: &str = "MessagesNotVisible";

    /// Every metric a worker's line may carry: name, unit, meaning. The README's EMF
    /// table is this list.
    pub const METRICS: [(&str, Unit, &str); 5] = [
        (
            BACKLOG_PER_TASK,
            Unit::Count,
            "(visible + not visible) / running tasks, as `spotq_backlog_per_task`; absent while the task count is unknown.",
        ),
        (
            MESSAGES_IN_FLIGHT,
            Unit::Count,
            "Messages the worker holds, as `spotq_messages_in_flight`.",
        ),
        (
            THROUGHPUT,
            Unit::CountPerSecond,
            "Messages succeeded per second since the last line.",
        ),
        (
            MESSAGES_VISIBLE,
            Unit::Count,
            "ApproximateNumberOfMessages at the last backlog sample.",
        ),
        (
            MESSAGES_NOT_VISIBLE,
            Unit::Count,
            "ApproximateNumberOfMessagesNotVisible at the last backlog sample.",
        ),
    ];

    /// The unit a metric of [`METRICS`] is published with.
    pub(crate) fn unit(name: &str) -> Unit {
        METRICS
            .iter()
            .find(|(metric, ..)| *metric == name)
            .map_or(Unit::None, |(_, unit, _)| *unit)
    }
}

/// Where a worker writes its EMF lines.
pub(crate) struct EmfOutput {
    pub(crate) settings: EmfSettings,
    pub(crate) out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for EmfOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmfOutput")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
