//! The in-memory write buffer.
//!
//! A memtable holds the newest committed changes twice over without copying
//! them: a crossbeam skiplist ordered by (key ascending, seq descending) for
//! reads, and an append-only [`SeqIndex`] ordered by seq for the change feed.
//! Both hold the same `Arc<ChangeRecord>`, and an update's before-image
//! shares its bytes with the previous version's after-image.
//!
//! Architecture invariant: a memtable covers one contiguous run of seqs
//! starting at `first_seq`; every committed seq lands in exactly one
//! memtable. The commit thread is the only writer.

mod seq_index;

use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;

use crate::change::ChangeRecord;
use crate::Seq;
use seq_index::SeqIndex;

/// Skiplist key: user key ascending, then seq descending, so the newest
/// version of a key comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionKey {
    pub key: Bytes,
    pub seq: Seq,
}

impl Ord for VersionKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key
            .cmp(&other.key)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for VersionKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

pub(crate) struct Memtable {
    first_seq: Seq,
    by_key: SkipMap<VersionKey, Arc<ChangeRecord>>,
    by_seq: SeqIndex,
    approx_bytes: AtomicUsize,
}

impl Memtable {
    pub(crate) fn new(first_seq: Seq) -> Memtable {
        Memtable {
            first_seq,
            by_key: SkipMap::new(),
            by_seq: SeqIndex::default(),
            approx_bytes: AtomicUsize::new(0),
        }
    }

    /// Seq of the first change this memtable holds (or will hold).
    pub(crate) fn first_seq(&self) -> Seq {
        self.first_seq
    }

    /// Seq of the last change inserted, or `first_seq - 1` when empty.
    pub(crate) fn last_seq(&self) -> Seq {
        self.first_seq + self.by_seq.len() - 1
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_seq.len() == 0
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.approx_bytes.load(Ordering::Relaxed)
    }

    /// Adds the next change. Only the commit thread calls this, in seq order.
    pub(crate) fn insert(&self, record: Arc<ChangeRecord>) {
        assert_eq!(
            record.seq,
            self.last_seq() + 1,
            "memtable insert out of seq order"
        );
        self.approx_bytes
            .fetch_add(record.footprint(), Ordering::Relaxed);
        self.by_key.insert(
            VersionKey {
                key: record.key.clone(),
                seq: record.seq,
            },
            record.clone(),
        );
        self.by_seq.push(record);
    }

    /// The newest version of `key` with seq <= `at`, tombstones included.
    pub(crate) fn get(&self, key: &Bytes, at: Seq) -> Option<Arc<ChangeRecord>> {
        let probe = VersionKey {
            key: key.clone(),
            seq: at,
        };
        let entry = self.by_key.lower_bound(Bound::Included(&probe))?;
        (entry.key().key == *key).then(|| entry.value().clone())
    }

    /// The change with this seq, if this memtable holds it.
    pub(crate) fn by_seq(&self, seq: Seq) -> Option<Arc<ChangeRecord>> {
        self.by_seq.get(seq.checked_sub(self.first_seq)?)
    }

    /// Every version with key in `[start, end)`, in (key asc, seq desc) order.
    pub(crate) fn range<'a>(
        &'a self,
        start: &Bytes,
        end: Option<&Bytes>,
    ) -> impl Iterator<Item = Arc<ChangeRecord>> + 'a {
        let lower = VersionKey {
            key: start.clone(),
            seq: Seq::MAX,
        };
        let upper = end.map(|end| VersionKey {
            key: end.clone(),
            seq: Seq::MAX,
        });
        let upper = match upper {
            Some(ref k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        self.by_key
            .range((Bound::Included(lower), upper))
            .map(|entry| entry.value().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeKind;

    fn record(seq: Seq, key: &'static [u8], after: Option<&'static [u8]>) -> Arc<ChangeRecord> {
        Arc::new(ChangeRecord {
            seq,
            ts_micros: 0,
            kind: if after.is_some() {
                ChangeKind::Update
            } else {
                ChangeKind::Delete
            },
            key: Bytes::from_static(key),
            before: None,
            after: after.map(Bytes::from_static),
            batch_index: 0,
            batch_size: 1,
        })
    }

    #[test]
    fn reads_see_the_newest_version_at_or_below_a_seq() {
        let mem = Memtable::new(10);
        mem.insert(record(10, b"a", Some(b"1")));
        mem.insert(record(11, b"b", Some(b"x")));
        mem.insert(record(12, b"a", Some(b"2")));
        mem.insert(record(13, b"a", None));
        let a = Bytes::from_static(b"a");
        assert_eq!(mem.get(&a, 9), None);
        assert_eq!(mem.get(&a, 11).unwrap().seq, 10);
        assert_eq!(mem.get(&a, 12).unwrap().after.as_deref(), Some(&b"2"[..]));
        assert_eq!(mem.get(&a, Seq::MAX).unwrap().after, None);
        assert_eq!(mem.get(&Bytes::from_static(b"c"), Seq::MAX), None);
        assert_eq!(mem.by_seq(11).unwrap().key, Bytes::from_static(b"b"));
        assert_eq!(mem.by_seq(14), None);
        assert_eq!(mem.by_seq(9), None);
        assert_eq!(mem.last_seq(), 13);
        let order: Vec<_> = mem
            .range(&Bytes::from_static(b"a"), Some(&Bytes::from_static(b"b")))
            .map(|r| r.seq)
            .collect();
        assert_eq!(order, vec![13, 12, 10]);
    }

    #[test]
    #[should_panic(expected = "out of seq order")]
    fn inserts_must_be_contiguous() {
        let mem = Memtable::new(1);
        mem.insert(record(2, b"a", None));
    }
}
