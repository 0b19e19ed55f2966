//! Engine configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::fault::FaultInjector;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the write's commit group is fdatasynced (the default).
    Sync,
    /// After write(2); the WAL is fdatasynced at least every `interval`
    /// while there is unsynced data. A crash may lose up to that much.
    Async { interval: Duration },
}

/// Size limits of what one write may hold, checked before it is
/// committed; a write over a limit is rejected whole with
/// [`crate::Error::TooLarge`] naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The encoded primary key of a row.
    pub max_key_bytes: usize,
    /// The encoded row (after-image), including a patch's merged row.
    pub max_row_bytes: usize,
    /// One batch as logged: its keys, before-images and after-images.
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_key_bytes: 4 << 10,
            max_row_bytes: 1 << 20,
            max_batch_bytes: 64 << 20,
        }
    }
}

/// The most `max_batch_bytes` may be: a logged batch is one WAL frame,
/// whose payload is at most 256 MiB, and record framing adds a little.
pub const MAX_BATCH_BYTES_LIMIT: usize = 192 << 20;

/// An engine option outside what the engine can work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("engine option {field} = {value} is invalid: {reason}")]
pub struct OptionsError {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// A WAL segment is sealed and a new one started past this size.
    pub wal_segment_bytes: u64,
    /// The active memtable becomes immutable past this size.
    pub memtable_bytes: usize,
    /// Immutable memtables waiting for flush at which writes stall; from
    /// half of it on, writes are slowed.
    pub max_immutable_memtables: usize,
    /// L0 files waiting for compaction at which writes stall; from half of
    /// it on, writes are slowed.
    pub max_l0_files: usize,
    /// How long history is retained: changes committed longer ago than this
    /// fall below the low-water mark once flushed. `None` keeps everything.
    pub history_window: Option<Duration>,
    /// At most this many bytes of flushed history are retained (measured
    /// as bytes written by flushes since a point). Both windows apply when
    /// both are set. `None`: no bytes bound.
    pub history_bytes: Option<u64>,
    /// Retained table bytes past which the durable consumer holding the
    /// oldest history is invalidated (so a dead consumer cannot fill the
    /// disk). `None`: no cap.
    pub max_retention_bytes: Option<u64>,
    /// A durable consumer that has not acked for this long is invalidated.
    /// `None`: consumers never expire.
    pub consumer_idle_expiry: Option<Duration>,
    /// L0 files that trigger a compaction into L1.
    pub l0_compaction_trigger: usize,
    /// Target size of L1; each deeper level is ten times larger.
    pub level_base_bytes: u64,
    /// Compaction outputs are cut at about this size.
    pub table_file_bytes: u64,
    /// Memory for cached table-file blocks (point reads, range scans and
    /// the before-image lookups of writes).
    pub block_cache_bytes: usize,
    /// The most write requests one commit group takes.
    pub max_group_requests: usize,
    /// Size limits of keys, rows and batches.
    pub limits: Limits,
    /// Test hook: injected WAL failures.
    pub faults: Option<Arc<FaultInjector>>,
}

impl EngineOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            data_dir: data_dir.into(),
            durability: Durability::Sync,
            wal_segment_bytes: 64 << 20,
            memtable_bytes: 64 << 20,
            max_immutable_memtables: 4,
            max_l0_files: 20,
            history_window: Some(Duration::from_secs(24 * 3600)),
            history_bytes: None,
            max_retention_bytes: Some(64 << 30),
            consumer_idle_expiry: Some(Duration::from_secs(7 * 24 * 3600)),
            l0_compaction_trigger: 4,
            level_base_bytes: 256 << 20,
            table_file_bytes: 64 << 20,
            block_cache_bytes: 64 << 20,
            max_group_requests: 1024,
            limits: Limits::default(),
            faults: None,
        }
    }

    /// Checks that the options can work together. Nothing is corrected:
    /// `Engine::open` refuses options that fail this.
    pub fn validate(&self) -> Result<(), OptionsError> {
        fn check(
            ok: bool,
            field: &'static str,
            value: impl std::fmt::Display,
            reason: &'static str,
        ) -> Result<(), OptionsError> {
            if ok {
                Ok(())
            } else {
                Err(OptionsError {
                    field,
                    value: value.to_string(),
                    reason,
                })
            }
        }
        let o = self;
        check(
            (256..=1 << 30).contains(&o.memtable_bytes),
            "memtable_bytes",
            o.memtable_bytes,
            "must be between 256 bytes and 1 GiB",
        )?;
        check(
            (1 << 10..=4 << 30).contains(&o.wal_segment_bytes),
            "wal_segment_bytes",
            o.wal_segment_bytes,
            "must be between 1 KiB and 4 GiB",
        )?;
        check(
            o.max_immutable_memtables >= 1,
            "max_immutable_memtables",
            o.max_immutable_memtables,
            "must be at least 1",
        )?;
        check(
            o.l0_compaction_trigger >= 1,
            "l0_compaction_trigger",
            o.l0_compaction_trigger,
            "must be at least 1",
        )?;
        check(
            o.max_l0_files >= o.l0_compaction_trigger,
            "max_l0_files",
            o.max_l0_files,
            "must be at least l0_compaction_trigger, or writes would stall with no compaction to end the stall",
        )?;
        check(
            o.level_base_bytes >= 256,
            "level_base_bytes",
            o.level_base_bytes,
            "must be at least 256 bytes",
        )?;
        check(
            o.table_file_bytes >= 256,
            "table_file_bytes",
            o.table_file_bytes,
            "must be at least 256 bytes",
        )?;
        check(
            o.max_group_requests >= 1,
            "max_group_requests",
            o.max_group_requests,
            "must be at least 1",
        )?;
        if let Durability::Async { interval } = o.durability {
            check(
                !interval.is_zero() && interval <= Duration::from_secs(3600),
                "durability.interval",
                format_args!("{interval:?}"),
                "must be between 1 ns and 1 hour",
            )?;
        }
        let l = o.limits;
        check(
            (16..=64 << 10).contains(&l.max_key_bytes),
            "limits.max_key_bytes",
            l.max_key_bytes,
            "must be between 16 bytes and 64 KiB",
        )?;
        check(
            l.max_row_bytes >= l.max_key_bytes && l.max_row_bytes <= l.max_batch_bytes,
            "limits.max_row_bytes",
            l.max_row_bytes,
            "must be at least max_key_bytes and at most max_batch_bytes",
        )?;
        check(
            l.max_batch_bytes <= MAX_BATCH_BYTES_LIMIT,
            "limits.max_batch_bytes",
            l.max_batch_bytes,
            "must be at most 192 MiB (one WAL frame)",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_cannot_work_are_refused_naming_the_field() {
        assert_eq!(EngineOptions::new("d").validate(), Ok(()));
        type Tweak = fn(&mut EngineOptions);
        let cases: &[(Tweak, &str)] = &[
            (|o| o.memtable_bytes = 0, "memtable_bytes"),
            (|o| o.memtable_bytes = 2 << 30, "memtable_bytes"),
            (|o| o.wal_segment_bytes = 0, "wal_segment_bytes"),
            (|o| o.max_immutable_memtables = 0, "max_immutable_memtables"),
            (|o| o.l0_compaction_trigger = 0, "l0_compaction_trigger"),
            (
                |o| o.max_l0_files = o.l0_compaction_trigger - 1,
                "max_l0_files",
            ),
            (|o| o.table_file_bytes = 1, "table_file_bytes"),
            (|o| o.level_base_bytes = 0, "level_base_bytes"),
            (|o| o.max_group_requests = 0, "max_group_requests"),
            (
                |o| {
                    o.durability = Durability::Async {
                        interval: Duration::ZERO,
                    }
                },
                "durability.interval",
            ),
            (|o| o.limits.max_key_bytes = 0, "limits.max_key_bytes"),
            (|o| o.limits.max_row_bytes = 1 << 30, "limits.max_row_bytes"),
            (
                |o| {
                    o.limits.max_batch_bytes = 1 << 30;
                    o.limits.max_row_bytes = 1 << 20;
                },
                "limits.max_batch_bytes",
            ),
        ];
        for (tweak, field) in cases {
            let mut options = EngineOptions::new("d");
            tweak(&mut options);
            let err = options.validate().unwrap_err();
            assert_eq!(err.field, *field, "{err}");
        }
    }
}
