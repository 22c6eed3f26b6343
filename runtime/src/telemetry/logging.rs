//! Logs for worker binaries: `tracing` to stderr, as text or as one JSON object per
//! line for CloudWatch Logs (the awslogs driver ships each line as one event).
//!
//! The library logs through `tracing` only and never installs a subscriber; a binary
//! calls [`init`] once. spotq logs message ids, receive counts and error texts, never
//! message bodies or credentials.

use tracing_subscriber::EnvFilter;

/// The environment variable that picks the format: `json` or `text` (the default).
pub const FORMAT_VAR: &str = "SPOTQ_LOG_FORMAT";

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields flattened in.
    Json,
}

impl LogFormat {
    /// The format named by `$SPOTQ_LOG_FORMAT` (`json` or `text`, any case); text when
    /// unset or unknown.
    pub fn from_env() -> Self {
        Self::parse(std::env::var(FORMAT_VAR).ok().as_deref())
    }

    fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some(value) if value.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// Installs a `tracing` subscriber writing to stderr in `format`, filtered by
/// `$RUST_LOG` (default `info`). Returns false, changing nothing, when a subscriber is
/// installed already.
pub fn init(format: LogFormat) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_named_by_the_environment_value() {
        assert_eq!(LogFormat::parse(Some("json")), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some(" JSON ")), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some("text")), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("yaml")), LogFormat::Text);
        assert_eq!(LogFormat::parse(None), LogFormat::Text);
    }
}
