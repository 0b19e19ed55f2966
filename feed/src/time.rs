//! RFC 3339 timestamps for `timestamp` columns and event times:
//! microseconds since the Unix epoch, UTC.
//!
//! The grammar and the calendar are the `time` crate's (its well-known
//! `Rfc3339` format); this module narrows them to tidefeed's contract:
//!
//! - Written as `YYYY-MM-DDTHH:MM:SS.ffffffZ`: always six fraction digits,
//!   always UTC with an upper-case `T` and `Z`.
//! - Read: `YYYY-MM-DDTHH:MM:SS[.f](Z|+HH:MM|-HH:MM)` with 1 to 9 fraction
//!   digits, of which those below the microsecond must be zero (a
//!   timestamp is stored in microseconds and nothing is rounded away
//!   silently). As RFC 3339 section 5.6 allows, `t` and `z` may be lower
//!   case and the date and time may be separated by a space; no other
//!   separator is accepted. Leap seconds (`:60`) are refused: they have no
//!   distinct instant in Unix time.
//! - RFC 3339 has four-digit years, so timestamps are the instants from
//!   0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z
//!   ([`MIN_MICROS`]..=[`MAX_MICROS`]): parsing refuses anything else
//!   (also a four-digit year that an offset moves out of range in UTC),
//!   and formatting refuses to write anything else rather than write text
//!   that is not RFC 3339.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// 0000-01-01T00:00:00Z, the first instant RFC 3339 can write.
pub const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// 9999-12-31T23:59:59.999999Z, the last instant RFC 3339 can write.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Why a timestamp cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not RFC 3339 at all, or no such date, time or offset.
    #[error("not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SS[.f](Z|+HH:MM)): {0}")]
    Syntax(time::error::Parse),
    #[error("date and time are separated by 'T' (or 't', or a space)")]
    Separator,
    #[error("a fraction has 1 to 9 digits")]
    FractionDigits,
    #[error("timestamps have microsecond precision")]
    SubMicrosecond,
    #[error("leap seconds are not accepted")]
    LeapSecond,
    /// Outside years 0000-9999 in UTC.
    #[error("{micros} microseconds since the epoch is outside years 0000-9999 (UTC)")]
    OutOfRange { micros: i64 },
}

/// `Ok` for an instant RFC 3339 can write.
pub(crate) fn check_range(micros: i64) -> Result<(), TimestampError> {
    in_range(micros).map(drop)
}

fn in_range(micros: i64) -> Result<i64, TimestampError> {
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(TimestampError::OutOfRange { micros })
    }
}

/// Serialises microseconds since the epoch as [`format_rfc3339`] does; an
/// instant outside years 0000-9999 is a serialisation error.
pub(crate) struct Rfc3339Micros(pub i64);

impl serde::Serialize for Rfc3339Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = format_rfc3339(self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fraction digits,
/// always UTC), the form the interface contract shows. Fails outside
/// years 0000-9999.
pub fn format_rfc3339(micros: i64) -> Result<String, TimestampError> {
    let micros = in_range(micros)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("years 0000-9999 are within the time crate's range");
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    ))
}

/// Parses an RFC 3339 timestamp (see the module docs for what is
/// accepted) into microseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimestampError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(TimestampError::Syntax)?;
    // Parsed, so the text has RFC 3339's fixed layout up to the seconds:
    // `YYYY-MM-DD?HH:MM:SS` in bytes 0..19. What the `time` crate leaves
    // open is narrowed here.
    let b = text.as_bytes();
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return Err(TimestampError::Separator);
    }
    if b.get(17..19) == Some(b"60") {
        return Err(TimestampError::LeapSecond);
    }
    let fraction_digits = match b.get(19) {
        Some(b'.') => b[20..].iter().take_while(|c| c.is_ascii_digit()).count(),
        _ => 0,
    };
    if fraction_digits > 9 {
        return Err(TimestampError::FractionDigits);
    }
    let nanos = parsed.unix_timestamp_nanos();
    if nanos % 1000 != 0 {
        return Err(TimestampError::SubMicrosecond);
    }
    // Four-digit years with an offset stay far inside i64 microseconds.
    let micros = i64::try_from(nanos / 1000).expect("four-digit years fit in i64 microseconds");
    in_range(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_and_parse() {
        assert_eq!(format_rfc3339(0).unwrap(), "1970-01-01T00:00:00.000000Z");
        let t = parse_rfc3339("2026-11-24T10:00:00.123456Z").unwrap();
        assert_eq!(format_rfc3339(t).unwrap(), "2026-11-24T10:00:00.123456Z");
        assert_eq!(t, 1_795_514_400_123_456);
        assert_eq!(parse_rfc3339("2026-11-24T11:00:00.123456+01:00"), Ok(t));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.5Z"), Ok(-500_000));
        assert_eq!(
            format_rfc3339(-500_000).unwrap(),
            "1969-12-31T23:59:59.500000Z"
        );
        assert_eq!(
            format_rfc3339(parse_rfc3339("2024-02-29T00:00:00Z").unwrap()).unwrap(),
            "2024-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn years_outside_0000_to_9999_are_neither_read_nor_written() {
        assert_eq!(
            format_rfc3339(MIN_MICROS).unwrap(),
            "0000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format_rfc3339(MAX_MICROS).unwrap(),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(parse_rfc3339("0000-01-01T00:00:00Z"), Ok(MIN_MICROS));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999999Z"), Ok(MAX_MICROS));
        for micros in [MIN_MICROS - 1, MAX_MICROS + 1, i64::MIN, i64::MAX] {
            assert_eq!(
                format_rfc3339(micros),
                Err(TimestampError::OutOfRange { micros }),
                "{micros}"
            );
        }
        // Four-digit years that an offset moves out of range in UTC.
        for text in [
            "0000-01-01T00:00:00+00:01",
            "0000-01-01T00:59:59.999999+01:00",
            "9999-12-31T23:59:59-00:01",
            "9999-12-31T23:30:00-01:00",
        ] {
            assert!(
                matches!(parse_rfc3339(text), Err(TimestampError::OutOfRange { .. })),
                "{text}: {:?}",
                parse_rfc3339(text)
            );
        }
        // What tidefeed once wrote for such instants is not RFC 3339.
        for text in [
            "-001-12-31T23:59:59.999999Z",
            "10000-01-01T00:00:00.000000Z",
        ] {
            assert!(parse_rfc3339(text).is_err(), "{text}");
        }
    }

    #[test]
    fn malformed_or_impossible_timestamps_are_rejected() {
        for bad in [
            "2026-11-24",
            "2026-11-24T10:00:00",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T10:00:00.1234567Z",
            "2026-11-24T10:00:00.Z",
            "2026-11-24T10:00:00+1:00",
            "2026-11-24T10:00:00Zjunk",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad} was accepted");
        }
        assert!(
            parse_rfc3339("2026-11-24T10:00:00.1234560Z").is_ok(),
            "trailing zero digits are exact"
        );
    }

    #[test]
    fn the_library_grammar_is_narrowed_to_the_contract() {
        let t = 1_795_514_400_000_000;
        for ok in [
            "2026-11-24t10:00:00z",
            "2026-11-24 10:00:00Z",
            "2026-11-24T10:00:00-00:00",
            "2026-11-24T10:00:00.000000000Z",
            "2026-11-24T11:30:00+01:30",
        ] {
            assert_eq!(parse_rfc3339(ok), Ok(t), "{ok}");
        }
        // `None`: the `time` crate's grammar refuses it.
        let cases = [
            ("2026-11-24X10:00:00Z", Some(TimestampError::Separator)),
            ("2026-11-24_10:00:00Z", Some(TimestampError::Separator)),
            ("2016-12-31T23:59:60Z", Some(TimestampError::LeapSecond)),
            (
                "2026-11-24T10:00:00.0000000000Z",
                Some(TimestampError::FractionDigits),
            ),
            (
                "2026-11-24T10:00:00.0000000001Z",
                Some(TimestampError::FractionDigits),
            ),
            (
                "2026-11-24T10:00:00.000000001Z",
                Some(TimestampError::SubMicrosecond),
            ),
            ("2026-11-24T10:00Z", None),
            ("20261124T100000Z", None),
            ("2026-11-24T10:00:00,5Z", None),
            ("2026-11-24T10:00:00Z[UTC]", None),
            ("2026-11-24T10:00:00+24:00", None),
            ("2026-11-24T10:00:00+01:60", None),
            ("+2026-11-24T10:00:00Z", None),
            ("２０２６-11-24T10:00:00Z", None),
        ];
        for (bad, expected) in cases {
            let err = parse_rfc3339(bad).expect_err(bad);
            match expected {
                Some(expected) => assert_eq!(err, expected, "{bad}"),
                None => assert!(matches!(err, TimestampError::Syntax(_)), "{bad}: {err}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn formatting_round_trips(micros in MIN_MICROS..=MAX_MICROS) {
            proptest::prop_assert_eq!(parse_rfc3339(&format_rfc3339(micros).unwrap()), Ok(micros));
        }

        #[test]
        fn every_instant_formats_or_fails_and_never_writes_a_bad_year(micros in proptest::prelude::any::<i64>()) {
            match format_rfc3339(micros) {
                Ok(text) => {
                    proptest::prop_assert_eq!(text.len(), 27, "{}", text);
                    proptest::prop_assert_eq!(parse_rfc3339(&text), Ok(micros));
                }
                Err(err) => proptest::prop_assert_eq!(err, TimestampError::OutOfRange { micros }),
            }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
        }
    }
}
