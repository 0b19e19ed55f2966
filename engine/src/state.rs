//! The engine's readable state: an immutable snapshot behind an `Arc`.
//!
//! Readers clone the current `Arc<LsmState>` and release the lock at once;
//! the commit thread (memtable rotation) and the flush worker build a new
//! state and swap it in under the write lock.
//!
//! Architecture invariant: every seq in `1..=visible_seq` is in exactly one
//! place of any state: an L0 file if `seq <= flushed_seq`, else a memtable.
//! A flush removes a memtable and adds its file in one swap, so no reader
//! sees a change twice or misses it.

use std::sync::Arc;

use bytes::Bytes;

use crate::change::ChangeRecord;
use crate::error::Result;
use crate::memtable::Memtable;
use crate::sst::reader::SstReader;
use crate::Seq;

#[derive(Clone)]
pub(crate) struct LsmState {
    /// Memtables in seq order; the last one is active, the rest immutable
    /// and waiting for flush. Their seq ranges are contiguous and adjacent,
    /// starting at `flushed_seq + 1`.
    pub memtables: Vec<Arc<Memtable>>,
    /// Level 0, oldest first: one file per flushed memtable, with disjoint
    /// contiguous seq ranges ending at `flushed_seq`.
    pub l0: Vec<Arc<SstReader>>,
    pub flushed_seq: Seq,
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

    /// A new state whose active memtable starts at `first_seq`.
    pub(crate) fn with_new_active(&self, first_seq: Seq) -> LsmState {
        let mut next = self.clone();
        next.memtables.push(Arc::new(Memtable::new(first_seq)));
        next
    }

    /// A new state in which `flushed` (the oldest immutable memtable) is
    /// replaced by its table file.
    pub(crate) fn with_flushed(&self, flushed: &Arc<Memtable>, file: Arc<SstReader>) -> LsmState {
        assert!(
            self.oldest_immutable()
                .is_some_and(|m| Arc::ptr_eq(m, flushed)),
            "only the oldest immutable memtable is flushed"
        );
        let mut next = self.clone();
        next.memtables.remove(0);
        next.flushed_seq = flushed.last_seq();
        next.l0.push(file);
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
        for file in self.l0.iter().rev().filter(|f| f.min_seq() <= at) {
            if let Some(record) = file.get(key, at)? {
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

    /// The L0 file whose seq range holds `seq`.
    pub(crate) fn l0_file_for(&self, seq: Seq) -> Option<&Arc<SstReader>> {
        let index = self.l0.partition_point(|f| f.max_seq() < seq);
        self.l0.get(index).filter(|f| f.min_seq() <= seq)
    }
}
