//! An append-only, seq-ordered view of a memtable's records.
//!
//! Records are stored in fixed-size chunks so that appends never move
//! existing entries and readers can look a seq up in O(1) while the commit
//! thread appends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::change::ChangeRecord;

const CHUNK_LEN: usize = 4096;

type Chunk = Arc<[OnceLock<Arc<ChangeRecord>>]>;

#[derive(Default)]
pub(crate) struct SeqIndex {
    chunks: RwLock<Vec<Chunk>>,
    /// Number of published entries.
    ///
    /// NOTE: `push` fills the slot before the Release store of `len`, and
    /// `get` checks `len` with Acquire before reading the slot, so a reader
    /// never sees an index below `len` whose slot is still empty.
    len: AtomicU64,
}

impl SeqIndex {
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Appends a record. Single writer only.
    pub(crate) fn push(&self, record: Arc<ChangeRecord>) {
        let index = self.len.load(Ordering::Relaxed) as usize;
        let (chunk, slot) = (index / CHUNK_LEN, index % CHUNK_LEN);
        let target = {
            let chunks = self.chunks.read().expect("seq index lock poisoned");
            chunks.get(chunk).cloned()
        };
        let target = target.unwrap_or_else(|| {
            let fresh: Chunk = (0..CHUNK_LEN).map(|_| OnceLock::new()).collect();
            self.chunks
                .write()
                .expect("seq index lock poisoned")
                .push(fresh.clone());
            fresh
        });
        assert!(
            target[slot].set(record).is_ok(),
            "seq index slot written twice"
        );
        self.len.store(index as u64 + 1, Ordering::Release);
    }

    pub(crate) fn get(&self, index: u64) -> Option<Arc<ChangeRecord>> {
        if index >= self.len() {
            return None;
        }
        let index = index as usize;
        let chunks = self.chunks.read().expect("seq index lock poisoned");
        chunks[index / CHUNK_LEN][index % CHUNK_LEN].get().cloned()
    }
}
