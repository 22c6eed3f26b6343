//! The one way spotq writes a duration: in `#[spotq::worker(...)]` arguments, the
//! controller's flags, environment variables and TOML file, and in error messages.
//!
//! A duration is one or more parts, each a number and a unit: `h`, `m` (or `min`), `s`,
//! `ms`. The parts go largest unit first, each unit at most once, and only the last part
//! may have a decimal fraction: `"250ms"`, `"30s"`, `"1.5s"`, `"1m30s"`, `"1h2m3.5s"`,
//! `"2h"`. No sign, no space. A duration is a whole number of milliseconds: a fraction
//! finer than that (`"1.0005s"`) is an error, never rounded.
//!
//! ```
//! use std::time::Duration;
//!
//! use spotq_settings::duration;
//!
//! assert_eq!(duration::parse("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(duration::display(Duration::from_millis(90_500)), "1m30.5s");
//! assert_eq!(duration::parse_or_seconds("30"), Ok(Duration::from_secs(30)));
//! assert!(duration::parse("30").is_err());
//! ```

use std::fmt;
use std::time::Duration;

/// The units, largest first: their names and their length in milliseconds.
const UNITS: [(&[&str], u64); 4] = [
    (&["h"], 3_600_000),
    (&["m", "min"], 60_000),
    (&["s"], 1_000),
    (&["ms"], 1),
];

/// Parses a duration: `"250ms"`, `"1.5s"`, `"1m30s"`, `"1h2m3.5s"`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    parse_parts(text, text)
}

/// Parses a duration, or a bare number as that many seconds: `"30"` is `"30s"`,
/// `"0.25"` is `"250ms"`. For settings that have always taken seconds.
pub fn parse_or_seconds(text: &str) -> Result<Duration, DurationError> {
    let bare_number = text.bytes().any(|byte| byte.is_ascii_digit())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || byte == b'.');
    if bare_number {
        parse_parts(&format!("{text}s"), text)
    } else {
        parse(text)
    }
}

/// A duration in its canonical form, which [`parse`] reads back: `"0s"`, `"250ms"`,
/// `"1.5s"`, `"1m30s"`, `"1h500ms"`. Hours, minutes and seconds as far as they go, the
/// milliseconds as the fraction of the seconds, or as `ms` where there are no seconds.
///
/// A duration finer than a millisecond, which no duration text writes, is shown as
/// `Debug` shows it (`"1.5µs"`), so that an error message never rounds a value.
pub fn display(duration: Duration) -> String {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{duration:?}");
    }
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, fraction) = (millis / 1_000 % 60, millis % 1_000);
    let mut text = String::new();
    if hours > 0 {
        text += &format!("{hours}h");
    }
    if minutes > 0 {
        text += &format!("{minutes}m");
    }
    match (seconds, fraction) {
        (0, 0) => {}
        (0, fraction) => text += &format!("{fraction}ms"),
        (seconds, 0) => text += &format!("{seconds}s"),
        (seconds, fraction) => {
            let fraction = format!("{fraction:03}");
            text += &format!("{seconds}.{}s", fraction.trim_end_matches('0'));
        }
    }
    text
}

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    kind: DurationErrorKind,
}

/// What is wrong with a duration text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationErrorKind {
    /// The text is empty.
    Empty,
    /// A part does not start with a number, or has something other than a unit after
    /// its number (`"s"`, `"-1s"`, `".5s"`, `"30 s"`).
    NotADuration,
    /// A number without a unit (`"30"`, `"1m30"`).
    NoUnit,
    /// A unit that is not `h`, `m`, `min`, `s` or `ms`.
    UnknownUnit(String),
    /// A unit repeated, or larger than the one before it (`"1s1s"`, `"30s1m"`).
    Order,
    /// A fraction on a part that is not the last (`"1.5m30s"`).
    FractionNotLast,
    /// A fraction finer than a millisecond (`"1.0005s"`, `"0.5ms"`).
    FinerThanMillisecond,
    /// More milliseconds than a `u64` holds.
    TooLong,
}

impl DurationError {
    fn new(text: &str, kind: DurationErrorKind) -> Self {
        Self {
            text: text.to_owned(),
            kind,
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> &DurationErrorKind {
        &self.kind
    }

    /// The text that was given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const EXPECTED: &str = "write a duration as numbers with units, largest first \
                                (`h`, `m` or `min`, `s`, `ms`), e.g. \"30s\", \"1m30s\", \
                                \"1.5s\" or \"250ms\"";
        let text = &self.text;
        match &self.kind {
            DurationErrorKind::Empty => write!(f, "empty duration: {EXPECTED}"),
            DurationErrorKind::NotADuration => write!(f, "`{text}` is not a duration: {EXPECTED}"),
            DurationErrorKind::NoUnit => write!(f, "`{text}` has no unit: {EXPECTED}"),
            DurationErrorKind::UnknownUnit(unit) => write!(
                f,
                "unknown unit `{unit}` in `{text}`: the units are `h`, `m` (or `min`), `s` and `ms`"
            ),
            DurationErrorKind::Order => write!(
                f,
                "`{text}` repeats a unit or puts a larger one after a smaller one: \
                 write the parts largest first, e.g. \"1m30s\""
            ),
            DurationErrorKind::FractionNotLast => write!(
                f,
                "`{text}` has a fraction before its last part: only the last part may have \
                 one, e.g. \"1m30.5s\""
            ),
            DurationErrorKind::FinerThanMillisecond => write!(
                f,
                "`{text}` is finer than a millisecond: a duration is whole milliseconds"
            ),
            DurationErrorKind::TooLong => write!(f, "`{text}` is too long a duration"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `text`; errors quote `written`, the text as the user wrote it.
fn parse_parts(text: &str, written: &str) -> Result<Duration, DurationError> {
    let error = |kind| DurationError::new(written, kind);
    if text.is_empty() {
        return Err(error(DurationErrorKind::Empty));
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    // Index into UNITS of the last part's unit: each next one must be smaller.
    let mut last_unit: Option<usize> = None;
    let mut had_fraction = false;
    while !rest.is_empty() {
        if had_fraction {
            return Err(error(DurationErrorKind::FractionNotLast));
        }
        let (whole, after) = split_digits(rest);
        if whole.is_empty() {
            return Err(error(DurationErrorKind::NotADuration));
        }
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let (fraction, after) = split_digits(after);
                if fraction.is_empty() {
                    return Err(error(DurationErrorKind::NotADuration));
                }
                had_fraction = true;
                (fraction, after)
            }
            None => ("", after),
        };
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            let kind = if after.is_empty() {
                DurationErrorKind::NoUnit
            } else {
                DurationErrorKind::NotADuration
            };
            return Err(error(kind));
        }
        let Some(index) = UNITS.iter().position(|(names, _)| names.contains(&unit)) else {
            return Err(error(DurationErrorKind::UnknownUnit(unit.to_owned())));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(error(DurationErrorKind::Order));
        }
        last_unit = Some(index);
        let part = part_millis(whole, fraction, UNITS[index].1).map_err(error)?;
        millis = millis
            .checked_add(part)
            .ok_or_else(|| error(DurationErrorKind::TooLong))?;
        rest = after;
    }
    Ok(Duration::from_millis(millis))
}

/// `text` split after its leading ASCII digits.
fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(text.bytes().take_while(u8::is_ascii_digit).count())
}

/// The milliseconds of `whole.fraction` units of `unit` milliseconds each.
fn part_millis(whole: &str, fraction: &str, unit: u64) -> Result<u64, DurationErrorKind> {
    let whole: u64 = whole.parse().map_err(|_| DurationErrorKind::TooLong)?;
    let whole = whole.checked_mul(unit).ok_or(DurationErrorKind::TooLong)?;
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        return Ok(whole);
    }
    // The longest fraction that can still be whole milliseconds is 7 digits (of an hour:
    // 0.0000001 h = 0.36 ms is not, 0.0000125 h = 45 ms is); longer ones never are.
    if fraction.len() > 7 {
        return Err(DurationErrorKind::FinerThanMillisecond);
    }
    let scale = 10_u64.pow(fraction.len() as u32);
    let digits: u64 = fraction
        .parse()
        .map_err(|_| DurationErrorKind::NotADuration)?;
    // At most 9,999,999 × 3,600,000: well within a u64.
    let scaled = digits * unit;
    if !scaled.is_multiple_of(scale) {
        return Err(DurationErrorKind::FinerThanMillisecond);
    }
    whole
        .checked_add(scaled / scale)
        .ok_or(DurationErrorKind::TooLong)
}

#[cfg(test)]
mod tests;
