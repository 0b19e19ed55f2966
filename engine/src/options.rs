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
            faults: None,
        }
    }
}
