//! `[feed]`: how much change history is kept, and the shape of what
//! subscribers receive.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{
    duration_in, memory_size_in, ms, optional_duration_in, optional_size_in, size_in, RawDuration,
    RawSize, CENTURY, HOUR, KIB, MIB, MINUTE, PIB,
};
use crate::ConfigError;

/// The validated `[feed]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// How long change history is kept (the time window). `None`
    /// (`"forever"`): no time bound.
    pub retention: Option<Duration>,
    /// At most this many bytes of flushed history are kept (the bytes
    /// window). `None` (`"none"`): no bytes bound. With both windows set,
    /// the stricter one wins.
    pub history_bytes: Option<u64>,
    /// Bytes of history a durable consumer may hold back beyond the
    /// windows before it is invalidated, so a dead consumer cannot fill
    /// the disk.
    pub max_retention_bytes: u64,
    /// How often live streams emit resolved watermarks.
    pub resolved_interval: Duration,
    /// Events whose encoding is larger are sent key-only, flagged
    /// `"truncated": true`, and counted.
    pub max_event_bytes: usize,
    /// A durable consumer that has not acked for this long is invalidated.
    /// `None` (`"never"`): consumers never expire.
    pub consumer_idle_expiry: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFeed {
    retention: RawDuration,
    history_bytes: RawSize,
    max_retention_bytes: RawSize,
    resolved_interval: RawDuration,
    max_event_bytes: RawSize,
    consumer_idle_expiry: RawDuration,
}

pub(crate) const RETENTION: RangeInclusive<Duration> = Duration::ZERO..=CENTURY;
pub(crate) const HISTORY_BYTES: RangeInclusive<u64> = 0..=PIB;
pub(crate) const MAX_RETENTION_BYTES: RangeInclusive<u64> = 64 * KIB..=PIB;
pub(crate) const RESOLVED_INTERVAL: RangeInclusive<Duration> = ms(10)..=HOUR;
pub(crate) const MAX_EVENT_BYTES: RangeInclusive<u64> = KIB..=64 * MIB;
pub(crate) const CONSUMER_IDLE_EXPIRY: RangeInclusive<Duration> = MINUTE..=CENTURY;

impl RawFeed {
    pub(crate) fn validate(self) -> Result<FeedConfig, ConfigError> {
        Ok(FeedConfig {
            retention: optional_duration_in(
                "feed.retention",
                &self.retention,
                "forever",
                RETENTION,
            )?,
            history_bytes: optional_size_in(
                "feed.history_bytes",
                &self.history_bytes,
                "none",
                HISTORY_BYTES,
            )?,
            max_retention_bytes: size_in(
                "feed.max_retention_bytes",
                &self.max_retention_bytes,
                MAX_RETENTION_BYTES,
            )?,
            resolved_interval: duration_in(
                "feed.resolved_interval",
                &self.resolved_interval,
                RESOLVED_INTERVAL,
            )?,
            max_event_bytes: memory_size_in(
                "feed.max_event_bytes",
                &self.max_event_bytes,
                MAX_EVENT_BYTES,
            )?,
            consumer_idle_expiry: optional_duration_in(
                "feed.consumer_idle_expiry",
                &self.consumer_idle_expiry,
                "never",
                CONSUMER_IDLE_EXPIRY,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{load_env, load_file, Valid};
    use crate::units::{secs, DAY, GIB};

    #[test]
    fn defaults() {
        let feed = load_env(&[]).unwrap().feed;
        assert_eq!(feed.retention, Some(DAY));
        assert_eq!(feed.history_bytes, None);
        assert_eq!(feed.max_retention_bytes, 64 << 30);
        assert_eq!(feed.resolved_interval, secs(1));
        assert_eq!(feed.max_event_bytes, 1 << 20);
        assert_eq!(feed.consumer_idle_expiry, Some(7 * DAY));
    }

    #[test]
    fn valid_values_including_both_bounds() {
        let cases: &[Valid<FeedConfig>] = &[
            ("RETENTION", "forever", |f| f.retention.is_none()),
            ("RETENTION", "0s", |f| f.retention == Some(Duration::ZERO)),
            ("RETENTION", "100y", |f| f.retention == Some(CENTURY)),
            ("RETENTION", "2h 30m", |f| f.retention == Some(secs(9000))),
            ("HISTORY_BYTES", "0", |f| f.history_bytes == Some(0)),
            ("HISTORY_BYTES", "10GiB", |f| {
                f.history_bytes == Some(10 * GIB)
            }),
            ("HISTORY_BYTES", "1PiB", |f| f.history_bytes == Some(PIB)),
            ("MAX_RETENTION_BYTES", "64KiB", |f| {
                f.max_retention_bytes == 64 * KIB
            }),
            ("MAX_RETENTION_BYTES", "1PiB", |f| {
                f.max_retention_bytes == PIB
            }),
            ("RESOLVED_INTERVAL", "10ms", |f| {
                f.resolved_interval == ms(10)
            }),
            ("RESOLVED_INTERVAL", "1h", |f| f.resolved_interval == HOUR),
            ("MAX_EVENT_BYTES", "1KiB", |f| f.max_event_bytes == 1024),
            ("MAX_EVENT_BYTES", "64MiB", |f| {
                f.max_event_bytes == 64 << 20
            }),
            ("CONSUMER_IDLE_EXPIRY", "never", |f| {
                f.consumer_idle_expiry.is_none()
            }),
            ("CONSUMER_IDLE_EXPIRY", "1m", |f| {
                f.consumer_idle_expiry == Some(MINUTE)
            }),
            ("CONSUMER_IDLE_EXPIRY", "100y", |f| {
                f.consumer_idle_expiry == Some(CENTURY)
            }),
        ];
        for (key, value, check) in cases {
            let var = format!("TIDEFEED_FEED__{key}");
            let feed = load_env(&[(&var, value)])
                .unwrap_or_else(|e| panic!("{var}={value}: {e}"))
                .feed;
            assert!(check(&feed), "{var}={value}: {feed:?}");
        }
        let feed = load_file("[feed]\nhistory_bytes = 1048576\nretention = \"2h\"\n")
            .unwrap()
            .feed;
        assert_eq!(feed.history_bytes, Some(1 << 20));
        assert_eq!(feed.retention, Some(2 * HOUR));
    }

    #[test]
    fn invalid_values_name_the_field_the_value_and_the_range() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("RETENTION", "always", "feed.retention", "\"forever\""),
            (
                "RETENTION",
                "101y",
                "feed.retention",
                "between 0s and 100years",
            ),
            (
                "RETENTION",
                "99999999999999h",
                "feed.retention",
                "between 0s and 100years",
            ),
            ("HISTORY_BYTES", "nothing", "feed.history_bytes", "\"none\""),
            (
                "HISTORY_BYTES",
                "2PiB",
                "feed.history_bytes",
                "between 0B and 1PiB",
            ),
            (
                "MAX_RETENTION_BYTES",
                "lots",
                "feed.max_retention_bytes",
                "unit",
            ),
            (
                "MAX_RETENTION_BYTES",
                "1KiB",
                "feed.max_retention_bytes",
                "between 64KiB and 1PiB",
            ),
            (
                "MAX_RETENTION_BYTES",
                "2PiB",
                "feed.max_retention_bytes",
                "between 64KiB and 1PiB",
            ),
            (
                "RESOLVED_INTERVAL",
                "0s",
                "feed.resolved_interval",
                "between 10ms and 1h",
            ),
            (
                "RESOLVED_INTERVAL",
                "9ms",
                "feed.resolved_interval",
                "between 10ms and 1h",
            ),
            (
                "RESOLVED_INTERVAL",
                "61m",
                "feed.resolved_interval",
                "between 10ms and 1h",
            ),
            (
                "RESOLVED_INTERVAL",
                "584542046090y",
                "feed.resolved_interval",
                "feed.resolved_interval",
            ),
            (
                "MAX_EVENT_BYTES",
                "1000",
                "feed.max_event_bytes",
                "between 1KiB and 64MiB",
            ),
            (
                "MAX_EVENT_BYTES",
                "65MiB",
                "feed.max_event_bytes",
                "between 1KiB and 64MiB",
            ),
            (
                "CONSUMER_IDLE_EXPIRY",
                "59s",
                "feed.consumer_idle_expiry",
                "between 1m and 100years",
            ),
            (
                "CONSUMER_IDLE_EXPIRY",
                "1000y",
                "feed.consumer_idle_expiry",
                "\"never\"",
            ),
        ];
        for (key, value, field, reason) in cases {
            let var = format!("TIDEFEED_FEED__{key}");
            let error = load_env(&[(&var, value)]).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.field(), Some(*field), "{var}={value}: {message}");
            assert!(message.contains(reason), "{var}={value}: {message}");
        }
    }

    #[test]
    fn wrong_types_are_rejected_naming_the_key() {
        for (text, key) in [
            ("retention = 86400", "feed.retention"),
            ("history_bytes = false", "feed.history_bytes"),
            ("max_event_bytes = [1]", "feed.max_event_bytes"),
            ("resolved_interval = 1.5", "feed.resolved_interval"),
        ] {
            let error = load_file(&format!("[feed]\n{text}\n")).unwrap_err();
            assert!(
                matches!(error, ConfigError::Schema { .. }) && error.to_string().contains(key),
                "{text}: {error}"
            );
        }
    }
}
