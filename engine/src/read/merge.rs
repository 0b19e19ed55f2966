//! Key-ordered merging of version streams.
//!
//! Each source yields versions in (key ascending, seq descending) order; the
//! merge yields them in the same order across sources, and [`LatestAt`]
//! keeps, per key, only the newest version at or below a seq.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::change::ChangeRecord;
use crate::Seq;

pub(crate) type VersionSource<'a> = Box<dyn Iterator<Item = Arc<ChangeRecord>> + 'a>;

struct Head<'a> {
    record: Arc<ChangeRecord>,
    source: VersionSource<'a>,
}

impl Ord for Head<'_> {
    /// Reversed, so that the max-heap pops the smallest (key, -seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .record
            .key
            .cmp(&self.record.key)
            .then_with(|| self.record.seq.cmp(&other.record.seq))
    }
}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

pub(crate) struct MergeIter<'a> {
    heap: BinaryHeap<Head<'a>>,
}

impl<'a> MergeIter<'a> {
    pub(crate) fn new(sources: Vec<VersionSource<'a>>) -> MergeIter<'a> {
        let heap = sources
            .into_iter()
            .filter_map(|mut source| source.next().map(|record| Head { record, source }))
            .collect();
        MergeIter { heap }
    }
}

impl Iterator for MergeIter<'_> {
    type Item = Arc<ChangeRecord>;

    fn next(&mut self) -> Option<Arc<ChangeRecord>> {
        let Head { record, mut source } = self.heap.pop()?;
        if let Some(next) = source.next() {
            self.heap.push(Head {
                record: next,
                source,
            });
        }
        Some(record)
    }
}

/// Per key, the newest version with seq <= `at`; keys whose newest such
/// version is a tombstone are skipped.
pub(crate) struct LatestAt<'a> {
    inner: MergeIter<'a>,
    at: Seq,
    /// The last key whose visible version was decided; its older versions
    /// are skipped.
    decided: Option<bytes::Bytes>,
}

impl<'a> LatestAt<'a> {
    pub(crate) fn new(inner: MergeIter<'a>, at: Seq) -> LatestAt<'a> {
        LatestAt {
            inner,
            at,
            decided: None,
        }
    }
}

impl Iterator for LatestAt<'_> {
    type Item = Arc<ChangeRecord>;

    fn next(&mut self) -> Option<Arc<ChangeRecord>> {
        for record in self.inner.by_ref() {
            if self.decided.as_ref() == Some(&record.key) || record.seq > self.at {
                continue;
            }
            // The first version at or below `at` decides the key.
            self.decided = Some(record.key.clone());
            if record.after.is_some() {
                return Some(record);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::change::ChangeKind;

    fn v(key: &'static str, seq: Seq, live: bool) -> Arc<ChangeRecord> {
        Arc::new(ChangeRecord {
            seq,
            ts_micros: 0,
            kind: if live {
                ChangeKind::Insert
            } else {
                ChangeKind::Delete
            },
            key: Bytes::from_static(key.as_bytes()),
            before: (!live).then(Bytes::new),
            after: live.then(Bytes::new),
            batch_index: 0,
            batch_size: 1,
        })
    }

    fn source(versions: Vec<Arc<ChangeRecord>>) -> VersionSource<'static> {
        Box::new(versions.into_iter())
    }

    #[test]
    fn newest_visible_version_per_key_wins_across_sources() {
        let old = source(vec![v("a", 1, true), v("b", 2, true), v("c", 3, true)]);
        let new = source(vec![
            v("a", 5, false),
            v("b", 4, true),
            v("c", 7, false),
            v("d", 6, true),
        ]);
        let at = |seq| -> Vec<(&'static str, Seq)> {
            let old = source(vec![v("a", 1, true), v("b", 2, true), v("c", 3, true)]);
            let new = source(vec![
                v("a", 5, false),
                v("b", 4, true),
                v("c", 7, false),
                v("d", 6, true),
            ]);
            LatestAt::new(MergeIter::new(vec![old, new]), seq)
                .map(|r| {
                    (
                        std::str::from_utf8(&r.key).unwrap().to_owned().leak() as &str,
                        r.seq,
                    )
                })
                .collect()
        };
        assert_eq!(at(3), vec![("a", 1), ("b", 2), ("c", 3)]);
        assert_eq!(at(5), vec![("b", 4), ("c", 3)]);
        assert_eq!(at(7), vec![("b", 4), ("d", 6)]);
        let all: Vec<Seq> = MergeIter::new(vec![old, new]).map(|r| r.seq).collect();
        assert_eq!(all, vec![5, 1, 4, 2, 7, 3, 6]);
    }
}
