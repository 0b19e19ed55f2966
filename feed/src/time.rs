//! RFC 3339 timestamps for `timestamp` columns and event times, without a
//! date library: microseconds since the Unix epoch, UTC.
//!
//! RFC 3339 has four-digit years, so tidefeed's timestamps are the
//! instants from 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z
//! ([`MIN_MICROS`]..=[`MAX_MICROS`]): parsing refuses anything else (also
//! a four-digit year that an offset moves out of range in UTC), and
//! formatting refuses to write anything else rather than write text that
//! is not RFC 3339.
//!
//! Days are converted to civil dates with the proleptic Gregorian
//! algorithm of Howard Hinnant (`days_from_civil` / `civil_from_days`).

/// 0000-01-01T00:00:00Z, the first instant RFC 3339 can write.
pub const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// 9999-12-31T23:59:59.999999Z, the last instant RFC 3339 can write.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Why a timestamp cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("{0}")]
    Malformed(&'static str),
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
pub(crate) struct Rfc3339(pub i64);

impl serde::Serialize for Rfc3339 {
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
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// Parses RFC 3339 (`2026-11-24T10:00:00Z`, fractions up to nanoseconds,
/// offsets like `+01:00`), years 0000-9999 in UTC. Sub-microsecond digits
/// must be zero: a timestamp is stored in microseconds and nothing is
/// rounded away silently.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimestampError> {
    parse_fields(text)
        .map_err(TimestampError::Malformed)
        .and_then(in_range)
}

fn parse_fields(text: &str) -> Result<i64, &'static str> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let part = b.get(range).ok_or("too short")?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err("expected digits");
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, what: &[u8]| -> Result<(), &'static str> {
        match b.get(at) {
            Some(c) if what.contains(c) => Ok(()),
            _ => Err("not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SS[.f](Z|+HH:MM))"),
        }
    };
    let year = digits(0..4)?;
    expect(4, b"-")?;
    let month = digits(5..7)?;
    expect(7, b"-")?;
    let day = digits(8..10)?;
    expect(10, b"Tt ")?;
    let hour = digits(11..13)?;
    expect(13, b":")?;
    let minute = digits(14..16)?;
    expect(16, b":")?;
    let second = digits(17..19)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("no such time of day (leap seconds are not accepted)");
    }
    let mut at = 19;
    let mut micros = 0i64;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start || end - start > 9 {
            return Err("a fraction has 1 to 9 digits");
        }
        for (i, d) in b[start..end].iter().enumerate() {
            let d = i64::from(d - b'0');
            if i < 6 {
                micros += d * 10i64.pow(5 - i as u32);
            } else if d != 0 {
                return Err("timestamps have microsecond precision");
            }
        }
        at = end;
    }
    let offset_secs = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
            expect(at + 3, b":")?;
            let (h, m) = (digits(at + 1..at + 3)?, digits(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return Err("bad UTC offset");
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return Err("missing or malformed UTC offset (Z or +HH:MM)"),
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Ok(secs * 1_000_000 + micros)
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
