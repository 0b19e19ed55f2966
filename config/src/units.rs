//! Durations and byte sizes as people write them, and the range check every
//! numeric key goes through.
//!
//! Parsing is done by libraries: `humantime` for durations (`"250ms"`,
//! `"30s"`, `"15m"`, `"24h"`, `"7d"`, `"1h 30m"`) and `parse-size` for sizes
//! (`"64MiB"`, `"512KiB"`, `"1GiB"`, `"8MB"`, or a whole number of bytes).
//! Sizes follow SI and IEC: `KB`/`MB`/`GB` are powers of 1000, `KiB`/`MiB`/
//! `GiB` powers of 1024; the unit is case-insensitive and its `B` optional.
//! What is ours is the range check: every duration and size key has a lower
//! *and* an upper bound, and a value outside it is an error that names the
//! field, the value as written and the allowed range.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::ConfigError;

pub(crate) const KIB: u64 = 1 << 10;
pub(crate) const MIB: u64 = 1 << 20;
pub(crate) const GIB: u64 = 1 << 30;
pub(crate) const TIB: u64 = 1 << 40;
pub(crate) const PIB: u64 = 1 << 50;

pub(crate) const MINUTE: Duration = Duration::from_secs(60);
pub(crate) const TEN_MINUTES: Duration = Duration::from_secs(600);
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
#[cfg(test)]
pub(crate) const DAY: Duration = Duration::from_secs(24 * 3600);
/// 100 years of 365.25 days, the year `humantime` uses, so that `"100y"` is
/// exactly the bound.
pub(crate) const CENTURY: Duration = Duration::from_secs(100 * 31_557_600);

pub(crate) const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `"250ms"`, `"30s"`, `"15m"`, `"24h"`, `"7d"`, `"1h 30m"`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| {
        format!("{error} (write a number with a unit, such as \"250ms\", \"30s\", \"15m\", \"24h\" or \"7d\")")
    })
}

/// `"64MiB"`, `"512KiB"`, `"1GiB"`, `"8MB"` (10^6), `"100B"` or `"4096"`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    parse_size::parse_size(text).map_err(|error| {
        let what = match error {
            parse_size::Error::Empty => "is empty",
            parse_size::Error::PosOverflow => "is too large",
            _ => "is not a number with an optional unit",
        };
        format!("{what} (write a whole number of bytes or a number with a unit: B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB for powers of 1000)")
    })
}

/// A size in the largest binary unit that divides it: `"64KiB"`, `"1GiB"`,
/// `"1000B"`. The result parses back to the same number.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, name) in [
        (PIB, "PiB"),
        (TIB, "TiB"),
        (GIB, "GiB"),
        (MIB, "MiB"),
        (KIB, "KiB"),
    ] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

pub(crate) fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A size as written: a string with a unit, or a whole number of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RawSize {
    Bytes(u64),
    Text(String),
}

impl fmt::Display for RawSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSize::Bytes(n) => write!(f, "{n}"),
            RawSize::Text(text) => f.write_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a whole number of bytes")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawSize, E> {
                u64::try_from(n)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(text.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration as written; it must carry a unit, so it is always a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawDuration(pub(crate) String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"30s\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(text.to_owned()))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

pub(crate) fn invalid(
    field: &str,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn out_of_range<T: Copy>(
    field: &str,
    value: impl fmt::Display,
    range: &RangeInclusive<T>,
    format: impl Fn(T) -> String,
) -> ConfigError {
    invalid(
        field,
        value,
        format!(
            "must be between {} and {}",
            format(*range.start()),
            format(*range.end())
        ),
    )
}

/// A size within `range`.
pub(crate) fn size_in(
    field: &str,
    raw: &RawSize,
    range: RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let bytes = match raw {
        RawSize::Bytes(n) => *n,
        RawSize::Text(text) => parse_size(text).map_err(|reason| invalid(field, raw, reason))?,
    };
    if !range.contains(&bytes) {
        return Err(out_of_range(field, raw, &range, format_size));
    }
    Ok(bytes)
}

/// A size within `range` that fits memory (`usize`); every such range ends
/// far below `usize::MAX` on the 64-bit targets tidefeed supports.
pub(crate) fn memory_size_in(
    field: &str,
    raw: &RawSize,
    range: RangeInclusive<u64>,
) -> Result<usize, ConfigError> {
    let bytes = size_in(field, raw, range)?;
    usize::try_from(bytes)
        .map_err(|_| invalid(field, raw, "does not fit this machine's address space"))
}

/// `none_word` (such as `"none"`) or a size within `range`.
pub(crate) fn optional_size_in(
    field: &str,
    raw: &RawSize,
    none_word: &str,
    range: RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    match raw {
        RawSize::Text(text) if text == none_word => Ok(None),
        raw => size_in(field, raw, range)
            .map(Some)
            .map_err(|error| with_alternative(error, none_word)),
    }
}

/// A duration within `range`.
pub(crate) fn duration_in(
    field: &str,
    raw: &RawDuration,
    range: RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    let duration = parse_duration(&raw.0).map_err(|reason| invalid(field, &raw.0, reason))?;
    if !range.contains(&duration) {
        return Err(out_of_range(field, &raw.0, &range, format_duration));
    }
    Ok(duration)
}

/// `none_word` (such as `"forever"`) or a duration within `range`.
pub(crate) fn optional_duration_in(
    field: &str,
    raw: &RawDuration,
    none_word: &str,
    range: RangeInclusive<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    if raw.0 == none_word {
        return Ok(None);
    }
    duration_in(field, raw, range)
        .map(Some)
        .map_err(|error| with_alternative(error, none_word))
}

fn with_alternative(error: ConfigError, word: &str) -> ConfigError {
    match error {
        ConfigError::Invalid {
            field,
            value,
            reason,
        } => ConfigError::Invalid {
            field,
            value,
            reason: format!("{reason}, or \"{word}\""),
        },
        other => other,
    }
}

/// A whole number within `range`.
pub(crate) fn count_in(
    field: &str,
    n: u64,
    range: RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    if !range.contains(&n) {
        return Err(out_of_range(field, n, &range, |n| n.to_string()));
    }
    Ok(n)
}

/// One of a fixed set of words.
pub(crate) fn choice<T: Copy>(
    field: &str,
    text: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    choices
        .iter()
        .find(|(word, _)| *word == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let words: Vec<String> = choices
                .iter()
                .map(|(word, _)| format!("\"{word}\""))
                .collect();
            invalid(field, text, format!("expected one of {}", words.join(", ")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_a_unit_only() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("2m"), Ok(secs(120)));
        assert_eq!(parse_duration("5 sec"), Ok(secs(5)));
        assert_eq!(parse_duration("1h 30m"), Ok(secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(7 * DAY));
        assert_eq!(parse_duration("100y"), Ok(CENTURY));
        for bad in [
            "fast",
            "30",
            "",
            "-1s",
            "5 parsecs",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("30").unwrap_err().contains("unit"));
    }

    #[test]
    fn sizes_parse_with_iec_and_si_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 * MIB));
        assert_eq!(parse_size("64 mib"), Ok(64 * MIB));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("lots").unwrap_err().contains("MiB"));
        assert!(parse_size("99999999999GiB")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn formatted_sizes_and_durations_parse_back() {
        for bytes in [1, 1000, KIB, 64 * KIB, 96 * MIB, GIB, 3 * PIB] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
        assert_eq!(format_size(64 * KIB), "64KiB");
        for duration in [ms(10), secs(1), HOUR, 7 * DAY, CENTURY] {
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }

    #[test]
    fn ranges_reject_both_ends_and_say_which_range() {
        let range = 64 * KIB..=GIB;
        assert_eq!(
            size_in("s", &RawSize::Text("64KiB".into()), range.clone()).unwrap(),
            64 * KIB
        );
        assert_eq!(
            size_in("s", &RawSize::Bytes(GIB), range.clone()).unwrap(),
            GIB
        );
        for raw in [
            RawSize::Bytes(64 * KIB - 1),
            RawSize::Text("1000000GiB".into()),
        ] {
            let message = size_in("s", &raw, range.clone()).unwrap_err().to_string();
            assert!(message.contains("between 64KiB and 1GiB"), "{message}");
        }
        let range = ms(10)..=HOUR;
        let message = duration_in("d", &RawDuration("2h".into()), range.clone())
            .unwrap_err()
            .to_string();
        assert!(message.contains("between 10ms and 1h"), "{message}");
        assert!(duration_in("d", &RawDuration("9ms".into()), range).is_err());
        assert_eq!(
            optional_duration_in("d", &RawDuration("never".into()), "never", secs(1)..=HOUR)
                .unwrap(),
            None
        );
        let message = optional_size_in("s", &RawSize::Text("nil".into()), "none", 0..=GIB)
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"none\""), "{message}");
    }
}
