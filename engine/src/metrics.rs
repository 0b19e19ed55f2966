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
    /// Commit groups by the number of write requests they held: bucket
    /// `i` counts groups of at most `2^i` requests (and more than
    /// `2^(i-1)`); the last bucket counts everything larger.
    pub group_sizes: [Counter; GROUP_SIZE_BUCKETS],
}

/// Buckets of the group-size distribution: up to 1, 2, 4, ... 1024
/// requests, then larger.
pub const GROUP_SIZE_BUCKETS: usize = 12;

impl EngineMetrics {
    pub(crate) fn record_group(&self, requests: usize) {
        let bucket = (usize::BITS - requests.saturating_sub(1).leading_zeros()) as usize;
        self.group_sizes[bucket.min(GROUP_SIZE_BUCKETS - 1)].add(1);
    }
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
    /// Commit groups by size (write requests per group): entry `i` counts
    /// groups of more than `2^(i-1)` and at most `2^i` requests; the last
    /// entry, larger ones. Not cumulative.
    pub group_sizes: [u64; GROUP_SIZE_BUCKETS],
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
            group_sizes: std::array::from_fn(|i| self.group_sizes[i].get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_sizes_fall_in_power_of_two_buckets() {
        let metrics = EngineMetrics::default();
        for size in [1, 2, 3, 4, 5, 1024, 1025, 5000] {
            metrics.record_group(size);
        }
        let counts = metrics.snapshot().group_sizes;
        assert_eq!(counts[0], 1, "1");
        assert_eq!(counts[1], 1, "2");
        assert_eq!(counts[2], 2, "3 and 4");
        assert_eq!(counts[3], 1, "5");
        assert_eq!(counts[10], 1, "1024");
        assert_eq!(counts[11], 2, "larger");
        assert_eq!(counts.iter().sum::<u64>(), 8);
    }
}
