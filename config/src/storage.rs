//! `[storage]`: where data lives, when a write is durable, and the sizes of
//! the engine's buffers and of what one write may carry.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{
    choice, duration_in, format_size, invalid, memory_size_in, ms, size_in, RawDuration, RawSize,
    GIB, KIB, MIB, MINUTE,
};
use crate::ConfigError;

/// The validated `[storage]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// A WAL segment is sealed and a new one started past this size.
    pub wal_segment_bytes: u64,
    /// The active memtable becomes immutable past this size.
    pub memtable_bytes: usize,
    /// Largest encoded primary key of one row.
    pub max_key_bytes: usize,
    /// Largest encoded row (key and columns).
    pub max_row_bytes: usize,
    /// Largest encoded batch (all rows of one atomic write).
    pub max_batch_bytes: usize,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After fdatasync.
    Sync,
    /// After write(2), with fdatasync at least every `interval`.
    Async { interval: Duration },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    data_dir: String,
    durability: String,
    async_sync_interval: RawDuration,
    wal_segment_size: RawSize,
    memtable_size: RawSize,
    max_key_bytes: RawSize,
    max_row_bytes: RawSize,
    max_batch_bytes: RawSize,
}

pub(crate) const ASYNC_SYNC_INTERVAL: RangeInclusive<Duration> = ms(1)..=MINUTE;
pub(crate) const WAL_SEGMENT_SIZE: RangeInclusive<u64> = 64 * KIB..=GIB;
pub(crate) const MEMTABLE_SIZE: RangeInclusive<u64> = 64 * KIB..=GIB;
pub(crate) const MAX_KEY_BYTES: RangeInclusive<u64> = 16..=64 * KIB;
pub(crate) const MAX_ROW_BYTES: RangeInclusive<u64> = KIB..=96 * MIB;
/// The engine writes a batch as one WAL frame of at most 256 MiB, and the
/// frame carries each change's before-image as well as its new row, so up
/// to about twice the batch: 96 MiB keeps every frame well under the limit.
pub(crate) const MAX_BATCH_BYTES: RangeInclusive<u64> = 64 * KIB..=96 * MIB;

impl RawStorage {
    pub(crate) fn validate(
        self,
        data_dir_flag: Option<PathBuf>,
    ) -> Result<StorageConfig, ConfigError> {
        let data_dir = data_dir_flag.unwrap_or_else(|| PathBuf::from(&self.data_dir));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "", "must not be empty"));
        }
        let interval = duration_in(
            "storage.async_sync_interval",
            &self.async_sync_interval,
            ASYNC_SYNC_INTERVAL,
        )?;
        #[derive(Clone, Copy)]
        enum Mode {
            Sync,
            Async,
        }
        let durability = match choice(
            "storage.durability",
            &self.durability,
            &[("sync", Mode::Sync), ("async", Mode::Async)],
        )? {
            Mode::Sync => Durability::Sync,
            Mode::Async => Durability::Async { interval },
        };
        let max_key_bytes =
            memory_size_in("storage.max_key_bytes", &self.max_key_bytes, MAX_KEY_BYTES)?;
        let max_row_bytes =
            memory_size_in("storage.max_row_bytes", &self.max_row_bytes, MAX_ROW_BYTES)?;
        let max_batch_bytes = memory_size_in(
            "storage.max_batch_bytes",
            &self.max_batch_bytes,
            MAX_BATCH_BYTES,
        )?;
        if max_key_bytes > max_row_bytes {
            return Err(invalid(
                "storage.max_key_bytes",
                &self.max_key_bytes,
                format!(
                    "a key is part of its row, so it must not exceed storage.max_row_bytes ({})",
                    format_size(max_row_bytes as u64)
                ),
            ));
        }
        if max_row_bytes > max_batch_bytes {
            return Err(invalid(
                "storage.max_row_bytes",
                &self.max_row_bytes,
                format!(
                    "a single-row write is a batch, so it must not exceed storage.max_batch_bytes ({})",
                    format_size(max_batch_bytes as u64)
                ),
            ));
        }
        Ok(StorageConfig {
            data_dir,
            durability,
            wal_segment_bytes: size_in(
                "storage.wal_segment_size",
                &self.wal_segment_size,
                WAL_SEGMENT_SIZE,
            )?,
            memtable_bytes: memory_size_in(
                "storage.memtable_size",
                &self.memtable_size,
                MEMTABLE_SIZE,
            )?,
            max_key_bytes,
            max_row_bytes,
            max_batch_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::{load_env, load_file, Valid};
    use crate::units::secs;

    #[test]
    fn defaults() {
        let storage = load_env(&[]).unwrap().storage;
        assert_eq!(storage.data_dir, PathBuf::from("./tidefeed-data"));
        assert_eq!(storage.durability, Durability::Sync);
        assert_eq!(storage.wal_segment_bytes, 64 << 20);
        assert_eq!(storage.memtable_bytes, 64 << 20);
        assert_eq!(storage.max_key_bytes, 4 << 10);
        assert_eq!(storage.max_row_bytes, 1 << 20);
        assert_eq!(storage.max_batch_bytes, 64 << 20);
    }

    #[test]
    fn valid_values_including_both_bounds() {
        let cases: &[Valid<StorageConfig>] = &[
            ("DATA_DIR", "/var/lib/tidefeed", |s| {
                s.data_dir == Path::new("/var/lib/tidefeed")
            }),
            ("DURABILITY", "async", |s| {
                s.durability == Durability::Async { interval: ms(100) }
            }),
            ("WAL_SEGMENT_SIZE", "64KiB", |s| {
                s.wal_segment_bytes == 64 << 10
            }),
            ("WAL_SEGMENT_SIZE", "1GiB", |s| {
                s.wal_segment_bytes == 1 << 30
            }),
            ("MEMTABLE_SIZE", "65536", |s| s.memtable_bytes == 64 << 10),
            ("MEMTABLE_SIZE", "1GiB", |s| s.memtable_bytes == 1 << 30),
            ("MAX_KEY_BYTES", "16", |s| s.max_key_bytes == 16),
            ("MAX_KEY_BYTES", "64KiB", |s| s.max_key_bytes == 64 << 10),
            ("MAX_ROW_BYTES", "4KiB", |s| s.max_row_bytes == 4 << 10),
            ("MAX_ROW_BYTES", "64MiB", |s| s.max_row_bytes == 64 << 20),
            ("MAX_BATCH_BYTES", "1MiB", |s| s.max_batch_bytes == 1 << 20),
            ("MAX_BATCH_BYTES", "96MiB", |s| {
                s.max_batch_bytes == 96 << 20
            }),
        ];
        for (key, value, check) in cases {
            let var = format!("TIDEFEED_STORAGE__{key}");
            let storage = load_env(&[(&var, value)])
                .unwrap_or_else(|e| panic!("{var}={value}: {e}"))
                .storage;
            assert!(check(&storage), "{var}={value}: {storage:?}");
        }
        let storage = load_env(&[
            ("TIDEFEED_STORAGE__DURABILITY", "async"),
            ("TIDEFEED_STORAGE__ASYNC_SYNC_INTERVAL", "1m"),
        ])
        .unwrap()
        .storage;
        assert_eq!(storage.durability, Durability::Async { interval: secs(60) });
        let storage = load_env(&[
            ("TIDEFEED_STORAGE__MAX_KEY_BYTES", "1KiB"),
            ("TIDEFEED_STORAGE__MAX_ROW_BYTES", "1KiB"),
            ("TIDEFEED_STORAGE__MAX_BATCH_BYTES", "64KiB"),
        ])
        .unwrap()
        .storage;
        assert_eq!(
            (
                storage.max_key_bytes,
                storage.max_row_bytes,
                storage.max_batch_bytes
            ),
            (1 << 10, 1 << 10, 64 << 10)
        );
    }

    #[test]
    fn invalid_values_name_the_field_the_value_and_the_range() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("DATA_DIR", "", "storage.data_dir", "empty"),
            (
                "DURABILITY",
                "sometimes",
                "storage.durability",
                "\"sync\", \"async\"",
            ),
            (
                "ASYNC_SYNC_INTERVAL",
                "0ms",
                "storage.async_sync_interval",
                "between 1ms and 1m",
            ),
            (
                "ASYNC_SYNC_INTERVAL",
                "61s",
                "storage.async_sync_interval",
                "between 1ms and 1m",
            ),
            (
                "ASYNC_SYNC_INTERVAL",
                "soon",
                "storage.async_sync_interval",
                "unit",
            ),
            (
                "WAL_SEGMENT_SIZE",
                "1KiB",
                "storage.wal_segment_size",
                "between 64KiB and 1GiB",
            ),
            (
                "WAL_SEGMENT_SIZE",
                "2GiB",
                "storage.wal_segment_size",
                "between 64KiB and 1GiB",
            ),
            (
                "MEMTABLE_SIZE",
                "1000000GiB",
                "storage.memtable_size",
                "between 64KiB and 1GiB",
            ),
            (
                "MEMTABLE_SIZE",
                "65535",
                "storage.memtable_size",
                "between 64KiB and 1GiB",
            ),
            (
                "MEMTABLE_SIZE",
                "99999999999999GiB",
                "storage.memtable_size",
                "too large",
            ),
            (
                "MAX_KEY_BYTES",
                "15",
                "storage.max_key_bytes",
                "between 16B and 64KiB",
            ),
            (
                "MAX_KEY_BYTES",
                "65KiB",
                "storage.max_key_bytes",
                "between 16B and 64KiB",
            ),
            (
                "MAX_ROW_BYTES",
                "1023",
                "storage.max_row_bytes",
                "between 1KiB and 96MiB",
            ),
            (
                "MAX_ROW_BYTES",
                "97MiB",
                "storage.max_row_bytes",
                "between 1KiB and 96MiB",
            ),
            (
                "MAX_ROW_BYTES",
                "65MiB",
                "storage.max_row_bytes",
                "storage.max_batch_bytes (64MiB)",
            ),
            (
                "MAX_BATCH_BYTES",
                "63KiB",
                "storage.max_batch_bytes",
                "between 64KiB and 96MiB",
            ),
            (
                "MAX_BATCH_BYTES",
                "256MiB",
                "storage.max_batch_bytes",
                "between 64KiB and 96MiB",
            ),
            (
                "MAX_BATCH_BYTES",
                "512KiB",
                "storage.max_row_bytes",
                "storage.max_batch_bytes (512KiB)",
            ),
        ];
        for (key, value, field, reason) in cases {
            let var = format!("TIDEFEED_STORAGE__{key}");
            let error = load_env(&[(&var, value)]).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.field(), Some(*field), "{var}={value}: {message}");
            assert!(message.contains(reason), "{var}={value}: {message}");
        }
        let error = load_file("[storage]\nmax_key_bytes = \"8KiB\"\nmax_row_bytes = \"4KiB\"\n")
            .unwrap_err();
        assert_eq!(error.field(), Some("storage.max_key_bytes"), "{error}");
        assert!(
            error.to_string().contains("storage.max_row_bytes (4KiB)"),
            "{error}"
        );
    }

    #[test]
    fn wrong_types_are_rejected_naming_the_key() {
        for (text, key) in [
            ("durability = true", "storage.durability"),
            ("memtable_size = true", "storage.memtable_size"),
            ("memtable_size = -65536", "storage.memtable_size"),
            ("async_sync_interval = 100", "storage.async_sync_interval"),
            ("data_dir = 1", "storage.data_dir"),
        ] {
            let error = load_file(&format!("[storage]\n{text}\n")).unwrap_err();
            assert!(
                matches!(error, ConfigError::Schema { .. }) && error.to_string().contains(key),
                "{text}: {error}"
            );
        }
    }
}
