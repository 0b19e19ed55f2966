//! The seq-ordered change scan, across table files and memtables.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::catalog::CatalogSnapshot;
use crate::change::{Change, ChangeRecord};
use crate::error::{Error, Result};
use crate::sst::reader::SeqIter;
use crate::state::LsmState;
use crate::Seq;

/// One table file's seq-ordered reader, keyed by its next record's seq.
struct FileHead {
    record: ChangeRecord,
    rest: SeqIter,
}

impl PartialEq for FileHead {
    fn eq(&self, other: &Self) -> bool {
        self.record.seq == other.record.seq
    }
}
impl Eq for FileHead {}
impl PartialOrd for FileHead {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for FileHead {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.record.seq.cmp(&other.record.seq)
    }
}

/// Committed changes with seq in `(since, upto]`, in seq order.
///
/// The iterator holds a snapshot of the engine state, which pins the files
/// it reads. Flushed seqs come from a k-way merge by seq over the table
/// files whose seq ranges overlap the scan, each read through its seq
/// index; the rest from the memtables by direct lookup. It holds one head
/// record and a few blocks per file, so memory does not grow with how far
/// back it starts.
pub struct ChangeIter {
    state: Arc<LsmState>,
    catalog: Arc<CatalogSnapshot>,
    next: Seq,
    upto: Seq,
    heads: Option<BinaryHeap<Reverse<FileHead>>>,
}

impl ChangeIter {
    pub(crate) fn new(
        state: Arc<LsmState>,
        catalog: Arc<CatalogSnapshot>,
        since: Seq,
        upto: Seq,
    ) -> ChangeIter {
        ChangeIter {
            state,
            catalog,
            next: since + 1,
            upto,
            heads: None,
        }
    }

    /// The seq of the last item returned (or the `since` it started from).
    pub fn position(&self) -> Seq {
        self.next - 1
    }

    fn open_files(&self) -> Result<BinaryHeap<Reverse<FileHead>>> {
        let since = self.next - 1;
        let upto = self.upto.min(self.state.flushed_seq);
        let mut heads = BinaryHeap::new();
        for file in self.state.files() {
            let reader = &file.reader;
            if reader.max_seq() <= since || reader.min_seq() > upto {
                continue;
            }
            let mut rest = reader.seq_range(since, upto);
            if let Some(record) = rest.next().transpose()? {
                heads.push(Reverse(FileHead { record, rest }));
            }
        }
        Ok(heads)
    }

    fn flushed_record(&mut self, seq: Seq) -> Result<ChangeRecord> {
        if self.heads.is_none() {
            self.heads = Some(self.open_files()?);
        }
        let heads = self.heads.as_mut().expect("opened above");
        let Some(Reverse(FileHead { record, mut rest })) = heads.pop() else {
            return Err(Error::MissingChange { seq });
        };
        if let Some(next) = rest.next().transpose()? {
            heads.push(Reverse(FileHead { record: next, rest }));
        }
        if record.seq != seq {
            // A gap (or a seq stored twice) in retained history: never skip
            // over it silently.
            return Err(Error::MissingChange { seq });
        }
        Ok(record)
    }

    fn record(&mut self, seq: Seq) -> Result<Arc<ChangeRecord>> {
        if seq > self.state.flushed_seq {
            // Flushed files are no longer needed once the scan reaches the
            // memtables; let their blocks go.
            self.heads = None;
            return self
                .state
                .memtable_by_seq(seq)
                .ok_or(Error::MissingChange { seq });
        }
        self.flushed_record(seq).map(Arc::new)
    }
}

impl Iterator for ChangeIter {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        if self.next > self.upto {
            return None;
        }
        let seq = self.next;
        let record = match self.record(seq) {
            Ok(record) => record,
            Err(e) => {
                // An error ends the scan: it never skips a seq.
                self.next = self.upto + 1;
                self.heads = None;
                return Some(Err(e));
            }
        };
        self.next += 1;
        let table_id = crate::codec::key::table_of(&record.key).unwrap_or_default();
        Some(match self.catalog.by_id(table_id) {
            Some(table) => Ok(Change::new(record, table.clone())),
            None => Err(Error::MissingChange { seq }),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.upto + 1).saturating_sub(self.next) as usize;
        (n, Some(n))
    }
}
