//! The engine's readable state: an immutable snapshot behind an `Arc`.
//!
//! Readers clone the current `Arc<LsmState>` and release the lock at once;
//! the commit thread builds a new state and swaps it in when the set of
//! memtables changes.

use std::sync::Arc;

use bytes::Bytes;

use crate::change::ChangeRecord;
use crate::memtable::Memtable;
use crate::Seq;

pub(crate) struct LsmState {
    /// Memtables in seq order; the last one is active, the rest immutable.
    /// Their seq ranges are contiguous and adjacent.
    pub memtables: Vec<Arc<Memtable>>,
}

impl LsmState {
    pub(crate) fn active(&self) -> &Arc<Memtable> {
        self.memtables
            .last()
            .expect("there is always an active memtable")
    }

    /// A new state whose active memtable starts at `first_seq`.
    pub(crate) fn with_new_active(&self, first_seq: Seq) -> LsmState {
        let mut memtables = self.memtables.clone();
        memtables.push(Arc::new(Memtable::new(first_seq)));
        LsmState { memtables }
    }

    /// The newest version of `key` with seq <= `at`, tombstones included.
    pub(crate) fn get(&self, key: &Bytes, at: Seq) -> Option<Arc<ChangeRecord>> {
        self.memtables
            .iter()
            .rev()
            .filter(|m| m.first_seq() <= at)
            .find_map(|m| m.get(key, at))
    }

    /// The change with this seq.
    pub(crate) fn by_seq(&self, seq: Seq) -> Option<Arc<ChangeRecord>> {
        let index = self.memtables.partition_point(|m| m.first_seq() <= seq);
        self.memtables.get(index.checked_sub(1)?)?.by_seq(seq)
    }
}
