//! The seq-ordered change scan, across table files and memtables.

use std::sync::Arc;

use crate::catalog::CatalogSnapshot;
use crate::change::{Change, ChangeRecord};
use crate::error::{Error, Result};
use crate::sst::reader::SeqIter;
use crate::state::LsmState;
use crate::Seq;

/// Committed changes with seq in `(since, upto]`, in seq order.
///
/// The iterator holds a snapshot of the engine state (which pins the files
/// it reads). Seqs up to the snapshot's `flushed_seq` come from L0 files,
/// one file at a time through its seq index; later ones from the memtables
/// by direct lookup. Memory does not depend on how far back it starts.
pub struct ChangeIter {
    state: Arc<LsmState>,
    catalog: Arc<CatalogSnapshot>,
    next: Seq,
    upto: Seq,
    /// Reader of the L0 file that holds `next`, when `next` is flushed.
    file: Option<SeqIter>,
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
            file: None,
        }
    }

    /// The seq of the last item returned (or the `since` it started from).
    pub fn position(&self) -> Seq {
        self.next - 1
    }

    fn record(&mut self, seq: Seq) -> Result<Arc<ChangeRecord>> {
        if seq > self.state.flushed_seq {
            return self
                .state
                .memtable_by_seq(seq)
                .ok_or(Error::MissingChange { seq });
        }
        if self.file.is_none() {
            let file = self
                .state
                .l0_file_for(seq)
                .ok_or(Error::MissingChange { seq })?;
            self.file = Some(file.seq_range(seq - 1, file.max_seq().min(self.upto)));
        }
        match self.file.as_mut().and_then(Iterator::next) {
            Some(Ok(record)) if record.seq == seq => Ok(Arc::new(record)),
            Some(Err(e)) => Err(e),
            // The file ended or skipped a seq: look the next file up.
            Some(Ok(_)) | None => {
                self.file = None;
                let file = self
                    .state
                    .l0_file_for(seq)
                    .ok_or(Error::MissingChange { seq })?;
                let mut iter = file.seq_range(seq - 1, file.max_seq().min(self.upto));
                let record = iter.next().transpose()?.filter(|r| r.seq == seq);
                self.file = Some(iter);
                record.map(Arc::new).ok_or(Error::MissingChange { seq })
            }
        }
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
