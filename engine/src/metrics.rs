//! Engine counters, read by the service's `/metrics` endpoint.
//!
//! Plain relaxed atomics: the engine knows nothing of Prometheus; the HTTP
//! layer exports a [`MetricsSnapshot`] under `tidefeed_engine_*` names.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct EngineMetrics {
    pub wal_syncs: Counter,
    pub wal_bytes: Counter,
    pub wal_rotations: Counter,
    pub commit_groups: Counter,
    pub committed_batches: Counter,
    pub committed_changes: Counter,
    pub rejected_batches: Counter,
    pub memtable_rotations: Counter,
    pub flushes: Counter,
    pub flushed_bytes: Counter,
    pub write_stalls: Counter,
    pub compactions: Counter,
    pub compacted_bytes: Counter,
    pub consumers_invalidated: Counter,
}

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// fdatasync calls on the WAL.
    pub wal_syncs: u64,
    /// Bytes of frames written to the WAL.
    pub wal_bytes: u64,
    pub wal_rotations: u64,
    /// Commit groups processed (each shares at most one fdatasync).
    pub commit_groups: u64,
    /// Write requests (single writes and batches) that committed.
    pub committed_batches: u64,
    /// Changes (seqs) committed.
    pub committed_changes: u64,
    /// Write requests rejected before commit (validation, preconditions).
    pub rejected_batches: u64,
    pub memtable_rotations: u64,
    /// Memtables written to L0 table files.
    pub flushes: u64,
    pub flushed_bytes: u64,
    /// Commit groups that waited for a flush because too many memtables
    /// were waiting (flow control).
    pub write_stalls: u64,
    pub compactions: u64,
    /// Bytes of table files written by compactions.
    pub compacted_bytes: u64,
    /// Durable consumers invalidated (retention cap or idle expiry).
    pub consumers_invalidated: u64,
    /// Gauge: memtables waiting for flush.
    pub immutable_memtables: u64,
    /// Gauge: table files in level 0.
    pub l0_files: u64,
    /// Gauge: every seq up to this one is in table files.
    pub flushed_seq: u64,
    /// Gauge: changes above this seq are retained.
    pub low_water: u64,
    /// Gauge: table files in all levels.
    pub table_files: u64,
    /// Gauge: bytes held by memtables (active and immutable).
    pub memtable_bytes: u64,
    /// Gauge: bytes of table files per level, L0 first.
    pub level_bytes: [u64; MAX_LEVELS],
    /// Gauge: bytes of all table files: the history and rows on disk.
    pub table_bytes: u64,
}

/// Levels the engine uses, L0 included.
pub const MAX_LEVELS: usize = 7;

impl EngineMetrics {
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            wal_syncs: self.wal_syncs.get(),
            wal_bytes: self.wal_bytes.get(),
            wal_rotations: self.wal_rotations.get(),
            commit_groups: self.commit_groups.get(),
            committed_batches: self.committed_batches.get(),
            committed_changes: self.committed_changes.get(),
            rejected_batches: self.rejected_batches.get(),
            memtable_rotations: self.memtable_rotations.get(),
            flushes: self.flushes.get(),
            flushed_bytes: self.flushed_bytes.get(),
            write_stalls: self.write_stalls.get(),
            compactions: self.compactions.get(),
            compacted_bytes: self.compacted_bytes.get(),
            consumers_invalidated: self.consumers_invalidated.get(),
            immutable_memtables: 0,
            l0_files: 0,
            flushed_seq: 0,
            low_water: 0,
            table_files: 0,
            memtable_bytes: 0,
            level_bytes: [0; MAX_LEVELS],
            table_bytes: 0,
        }
    }
}
