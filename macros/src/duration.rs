//! Readable duration literals: `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1m30s"`.
//!
//! A duration is one or more `<digits><unit>` parts with the units `h`, `m`, `s` and `ms`,
//! largest first, each at most once. There is no fraction (`"1.5s"` is `"1500ms"`), no
//! sign and no space: what the attribute says is exactly what the worker gets.

use std::time::Duration;

/// The units, largest first, as written and in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration literal; the error says what is wrong in words for a compile error.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "write a duration as a number and a unit (`h`, `m`, `s`, `ms`), \
                            e.g. \"30s\", \"5m\", \"1m30s\" or \"500ms\"";
    if text.is_empty() {
        return Err(format!("empty duration: {EXPECTED}"));
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    // Index into UNITS of the last unit seen: each next unit must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration: {EXPECTED}"));
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            let hint = match after.chars().next() {
                Some('.') => format!(
                    "`{text}` has a fraction: write it in a smaller unit, e.g. \"1500ms\" for 1.5 s"
                ),
                Some(_) => format!("`{text}` is not a duration: {EXPECTED}"),
                None => format!("`{text}` has no unit: {EXPECTED}"),
            };
            return Err(hint);
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: the units are `h`, `m`, `s` and `ms`"
            ));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!(
                "`{text}` repeats a unit or puts a larger one after a smaller one: \
                 write the parts largest first, e.g. \"1m30s\""
            ));
        }
        last_unit = Some(index);
        let too_long = || format!("`{text}` is too long a duration");
        let value: u64 = number.parse().map_err(|_| too_long())?;
        let part = value.checked_mul(UNITS[index].1).ok_or_else(too_long)?;
        millis = millis.checked_add(part).ok_or_else(too_long)?;
        rest = after;
    }
    Ok(Duration::from_millis(millis))
}

/// A duration the way the documentation writes it: `"1m30s"`, `"500ms"`, `"0s"`.
pub(crate) fn display(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (name, size) in UNITS {
        let size = u128::from(size);
        if millis >= size {
            text.push_str(&format!("{}{name}", millis / size));
            millis %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Result<u128, String> {
        parse(text).map(|duration| duration.as_millis())
    }

    #[test]
    fn single_units() {
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("2h"), Ok(7_200_000));
        assert_eq!(ms("0s"), Ok(0));
        assert_eq!(ms("0ms"), Ok(0));
        assert_eq!(ms("007s"), Ok(7_000));
    }

    #[test]
    fn compound_durations_largest_first() {
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1h1m1s1ms"), Ok(3_661_001));
        assert_eq!(ms("12h"), Ok(43_200_000));
        assert_eq!(ms("2s500ms"), Ok(2_500));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in [
            "", "30", "s", "1.5s", "30 s", " 30s", "30s ", "-1s", "+1s", "1d", "1sec",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn rejects_repeated_or_ascending_units() {
        for text in ["1s1s", "30s1m", "1ms1s", "1m1h"] {
            let error = parse(text).expect_err(text);
            assert!(error.contains("largest first"), "{text:?}: {error}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("30").expect_err("no unit").contains("has no unit"));
        assert!(parse("1.5s").expect_err("fraction").contains("1500ms"));
        assert!(parse("3d").expect_err("unit").contains("unknown unit `d`"));
        assert!(
            parse("99999999999999999999s")
                .expect_err("overflow")
                .contains("too long")
        );
        assert!(
            parse("18446744073709551615h")
                .expect_err("overflow")
                .contains("too long")
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "0s",
            "500ms",
            "30s",
            "5m",
            "2h",
            "1m30s",
            "1h1m1s1ms",
            "12h",
        ] {
            let duration = parse(text).expect(text);
            assert_eq!(display(duration), text);
            assert_eq!(parse(&display(duration)), Ok(duration));
        }
    }
}
