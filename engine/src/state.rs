//! The engine's readable state: an immutable snapshot behind an `Arc`.
//!
//! Readers clone the current `Arc<LsmState>` and release the lock at once;
//! the commit thread (memtable rotation) and the background worker (flush,
//! compaction, retention) build a new state and swap it in under the write
//! lock. Holding a snapshot pins its table files.
//!
//! Architecture invariant: every retained seq (low_water, visible_seq] is in
//! exactly one place of any state: a table file if `seq <= flushed_seq`,
//! else a memtable. A flush removes a memtable and adds its file in one
//! swap, a compaction replaces its inputs by its outputs in one swap, so no
//! reader sees a change twice or misses one.

use std::sync::Arc;

use bytes::Bytes;

use crate::change::ChangeRecord;
use crate::error::Result;
use crate::memtable::Memtable;
use crate::sst::reader::SstReader;
use crate::Seq;

/// A table file in a level.
#[derive(Debug)]
pub(crate) struct TableFile {
    pub id: u64,
    pub reader: Arc<SstReader>,
    pub smallest: Bytes,
    pub largest: Bytes,
    pub bytes: u64,
}

impl TableFile {
    fn may_hold(&self, key: &[u8]) -> bool {
        &self.smallest[..] <= key && key <= &self.largest[..]
    }

    pub(crate) fn overlaps(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        &self.largest[..] >= start && end.is_none_or(|end| &self.smallest[..] < end)
    }
}

#[derive(Clone)]
pub(crate) struct LsmState {
    /// Memtables in seq order; the last one is active, the rest immutable
    /// and waiting for flush. Their seq ranges are contiguous and adjacent,
    /// starting at `flushed_seq + 1`.
    pub memtables: Vec<Arc<Memtable>>,
    /// `levels[0]` is L0 (oldest first, disjoint seq ranges); deeper levels
    /// are sorted by key with non-overlapping files.
    pub levels: Vec<Vec<Arc<TableFile>>>,
    pub flushed_seq: Seq,
    pub low_water: Seq,
}

impl LsmState {
    pub(crate) fn active(&self) -> &Arc<Memtable> {
        self.memtables
            .last()
            .expect("there is always an active memtable")
    }

    pub(crate) fn immutable_count(&self) -> usize {
        self.memtables.len() - 1
    }

    pub(crate) fn oldest_immutable(&self) -> Option<&Arc<Memtable>> {
        (self.memtables.len() > 1).then(|| &self.memtables[0])
    }

    pub(crate) fn files(&self) -> impl Iterator<Item = &Arc<TableFile>> {
        self.levels.iter().flatten()
    }

    /// A new state whose active memtable starts at `first_seq`.
    pub(crate) fn with_new_active(&self, first_seq: Seq) -> LsmState {
        let mut next = self.clone();
        next.memtables.push(Arc::new(Memtable::new(first_seq)));
        next
    }

    /// A new state in which `flushed` (the oldest immutable memtable) is
    /// replaced by its table file in L0.
    pub(crate) fn with_flushed(&self, flushed: &Arc<Memtable>, file: Arc<TableFile>) -> LsmState {
        assert!(
            self.oldest_immutable()
                .is_some_and(|m| Arc::ptr_eq(m, flushed)),
            "only the oldest immutable memtable is flushed"
        );
        let mut next = self.clone();
        next.memtables.remove(0);
        next.flushed_seq = flushed.last_seq();
        next.levels[0].push(file);
        next
    }

    /// A new state in which the files `removed` are replaced by `added` in
    /// `level` (kept sorted by key).
    pub(crate) fn with_compacted(
        &self,
        removed: &[u64],
        level: usize,
        added: Vec<Arc<TableFile>>,
    ) -> LsmState {
        let mut next = self.clone();
        for files in &mut next.levels {
            files.retain(|f| !removed.contains(&f.id));
        }
        while next.levels.len() <= level {
            next.levels.push(Vec::new());
        }
        next.levels[level].extend(added);
        next.levels[level].sort_by(|a, b| a.smallest.cmp(&b.smallest));
        next
    }

    /// The newest version of `key` with seq <= `at`, tombstones included.
    pub(crate) fn get(&self, key: &Bytes, at: Seq) -> Result<Option<Arc<ChangeRecord>>> {
        if let Some(found) = self
            .memtables
            .iter()
            .rev()
            .filter(|m| m.first_seq() <= at)
            .find_map(|m| m.get(key, at))
        {
            return Ok(Some(found));
        }
        // L0 newest first, then each deeper level: versions in a level are
        // newer than those of the same key below it, so the first file with
        // a version at or below `at` has the answer.
        let l0 = self.levels[0].iter().rev();
        let deeper = self.levels.iter().skip(1).filter_map(|files| {
            let index = files.partition_point(|f| f.largest[..] < key[..]);
            files.get(index)
        });
        for file in l0
            .chain(deeper)
            .filter(|f| f.may_hold(key) && f.reader.min_seq() <= at)
        {
            if let Some(record) = file.reader.get(key, at)? {
                return Ok(Some(Arc::new(record)));
            }
        }
        Ok(None)
    }

    /// The change with this seq, if a memtable holds it.
    pub(crate) fn memtable_by_seq(&self, seq: Seq) -> Option<Arc<ChangeRecord>> {
        let index = self.memtables.partition_point(|m| m.first_seq() <= seq);
        self.memtables.get(index.checked_sub(1)?)?.by_seq(seq)
    }
}
