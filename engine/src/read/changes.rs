//! The seq-ordered change scan.

use std::sync::Arc;

use crate::catalog::CatalogSnapshot;
use crate::change::Change;
use crate::error::{Error, Result};
use crate::state::LsmState;
use crate::Seq;

/// Committed changes with seq in `(since, upto]`, in seq order.
///
/// The iterator holds a snapshot of the engine state and looks each seq up
/// in O(1); it buffers nothing, so its memory does not depend on how far
/// back it starts.
pub struct ChangeIter {
    state: Arc<LsmState>,
    catalog: Arc<CatalogSnapshot>,
    next: Seq,
    upto: Seq,
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
        }
    }

    /// The seq the next item will have, if any remain.
    pub fn position(&self) -> Seq {
        self.next - 1
    }
}

impl Iterator for ChangeIter {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        if self.next > self.upto {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        let Some(record) = self.state.by_seq(seq) else {
            self.next = self.upto + 1;
            return Some(Err(Error::MissingChange { seq }));
        };
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
