//! Durations and ranges as scenario and config files write them: `250ms`, `1s`, `2m`, `1h30m`,
//! `1ms..10ms`.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

const DURATION_FORMS: &str = r#"a duration like "250ms", "1s", "2m", "1h" or "1m30s""#;

/// Parses `250ms`, `1s`, `2m`, `1h`, and sums like `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected {DURATION_FORMS}, got {text:?}");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, millis) = if rest.starts_with("ms") {
            ("ms", 1)
        } else if rest.starts_with('s') {
            ("s", 1000)
        } else if rest.starts_with('m') {
            ("m", 60_000)
        } else if rest.starts_with('h') {
            ("h", 3_600_000)
        } else {
            return Err(bad());
        };
        rest = &rest[unit.len()..];
        let part = value.checked_mul(millis).ok_or_else(bad)?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Parses `low..high` with two durations, `low <= high`.
pub fn parse_range(text: &str) -> Result<(Duration, Duration), String> {
    let Some((low, high)) = text.split_once("..") else {
        return Err(format!(
            r#"expected a range like "1ms..10ms", got {text:?}"#
        ));
    };
    let (low, high) = (parse_duration(low)?, parse_duration(high)?);
    if low > high {
        return Err(format!("range {text:?} ends before it starts"));
    }
    Ok((low, high))
}

/// A duration field of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

/// A `low..high` field of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurRange(pub Duration, pub Duration);

struct TextVisitor<F>(&'static str, F);

impl<T, F: Fn(&str) -> Result<T, String>> Visitor<'_> for TextVisitor<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.1)(text).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor(DURATION_FORMS, |text: &str| {
            parse_duration(text).map(Dur)
        }))
    }
}

impl<'de> Deserialize<'de> for DurRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor(r#"a range like "1ms..10ms""#, |text: &str| {
            parse_range(text).map(|(low, high)| DurRange(low, high))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        for bad in ["", "10", "10x", "s", "1.5s", "-1s"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("250ms"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("1ms..10ms"),
            Ok((Duration::from_millis(1), Duration::from_millis(10)))
        );
        assert!(parse_range("10ms..1ms")
            .unwrap_err()
            .contains("ends before"));
        assert!(parse_range("10ms").unwrap_err().contains("1ms..10ms"));
    }
}
