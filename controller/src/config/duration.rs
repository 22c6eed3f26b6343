//! How the flags, their environment variables and the file write a duration: spotq's
//! one duration syntax (`"250ms"`, `"1.5s"`, `"1m30s"`, `"2h"`), or a bare number of
//! seconds.

use std::time::Duration;

/// Parses `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1m30s"`, `"1h"`, or a number of seconds
/// (`"30"`, `"0.5"`), to the millisecond; the error says what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    spotq_settings::duration::parse_or_seconds(text).map_err(|error| error.to_string())
}

/// A number of seconds as the file writes it without quotes (`stop_timeout = 30`), to
/// the millisecond like a text.
pub(super) fn from_seconds(seconds: f64) -> Result<Duration, String> {
    // `Display` of an `f64` is the shortest text that reads back as the same number, and
    // never an exponent: `0.001`, `30`, `-1`, `NaN`, `inf`.
    parse_duration(&seconds.to_string())
}
