//! Key-ordered merging of version streams.
//!
//! Each source yields versions in (key ascending, seq descending) order; the
//! merge yields them in the same order across sources, and [`LatestAt`]
//! keeps, per key, only the newest version at or below a seq.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::change::ChangeRecord;
use crate::error::Result;
use crate::Seq;

/// Versions in (key asc, seq desc) order; reading a table file can fail.
pub(crate) type VersionSource<'a> = Box<dyn Iterator<Item = Result<Arc<ChangeRecord>>> + 'a>;

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
    /// A source's error, reported before anything else; it ends the merge.
    error: Option<crate::error::Error>,
}

impl<'a> MergeIter<'a> {
    pub(crate) fn new(sources: Vec<VersionSource<'a>>) -> MergeIter<'a> {
        let mut merge = MergeIter {
            heap: BinaryHeap::with_capacity(sources.len()),
            error: None,
        };
        for source in sources {
            merge.advance(source);
        }
        merge
    }

    fn advance(&mut self, mut source: VersionSource<'a>) {
        match source.next() {
            Some(Ok(record)) => self.heap.push(Head { record, source }),
            Some(Err(e)) => self.error = self.error.take().or(Some(e)),
            None => {}
        }
    }
}

impl Iterator for MergeIter<'_> {
    type Item = Result<Arc<ChangeRecord>>;

    fn next(&mut self) -> Option<Result<Arc<ChangeRecord>>> {
        if let Some(e) = self.error.take() {
            self.heap.clear();
            return Some(Err(e));
        }
        let Head { record, source } = self.heap.pop()?;
        self.advance(source);
        Some(Ok(record))
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
    type Item = Result<Arc<ChangeRecord>>;

    fn next(&mut self) -> Option<Result<Arc<ChangeRecord>>> {
        for record in self.inner.by_ref() {
            let record = match record {
                Ok(record) => record,
                Err(e) => return Some(Err(e)),
            };
            if self.decided.as_ref() == Some(&record.key) || record.seq > self.at {
                continue;
            }
            // The first version at or below `at` decides the key.
            self.decided = Some(record.key.clone());
            if record.after.is_some() {
                return Some(Ok(record));
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
        Box::new(versions.into_iter().map(Ok))
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
                .map(|r| r.unwrap())
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
        let all: Vec<Seq> = MergeIter::new(vec![old, new])
            .map(|r| r.unwrap().seq)
            .collect();
        assert_eq!(all, vec![5, 1, 4, 2, 7, 3, 6]);
    }

    #[test]
    fn a_source_error_ends_the_merge_and_is_reported() {
        let failing: VersionSource<'static> = Box::new(
            vec![
                Ok(v("a", 1, true)),
                Err(crate::error::Error::MissingChange { seq: 9 }),
            ]
            .into_iter(),
        );
        let results: Vec<_> =
            MergeIter::new(vec![failing, source(vec![v("b", 2, true)])]).collect();
        assert!(results[0].is_ok());
        assert!(matches!(
            results[1],
            Err(crate::error::Error::MissingChange { seq: 9 })
        ));
        assert_eq!(results.len(), 2, "nothing after the error");
    }
}
