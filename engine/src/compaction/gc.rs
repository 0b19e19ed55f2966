//! Which versions a compaction keeps.

use bytes::Bytes;

use crate::change::ChangeRecord;
use crate::Seq;

/// Filters a (key asc, seq desc) stream of versions.
pub(crate) struct HistoryFilter {
    low_water: Seq,
    /// No level below the output can hold versions of these keys.
    bottom: bool,
    key: Option<Bytes>,
    /// Whether the newest version at or below low-water of `key` was seen.
    settled: bool,
}

impl HistoryFilter {
    pub(crate) fn new(low_water: Seq, bottom: bool) -> HistoryFilter {
        HistoryFilter {
            low_water,
            bottom,
            key: None,
            settled: false,
        }
    }

    pub(crate) fn keep(&mut self, record: &ChangeRecord) -> bool {
        if self.key.as_ref() != Some(&record.key) {
            self.key = Some(record.key.clone());
            self.settled = false;
        }
        if record.seq > self.low_water {
            return true;
        }
        if self.settled {
            // Older than the state at low-water: no reader may ask for it.
            return false;
        }
        self.settled = true;
        // The state at low-water. A tombstone there only hides older
        // versions, and at the bottom there are none left to hide.
        record.after.is_some() || !self.bottom
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeKind;

    fn v(key: &'static [u8], seq: Seq, live: bool) -> ChangeRecord {
        ChangeRecord {
            seq,
            ts_micros: 0,
            kind: if live {
                ChangeKind::Update
            } else {
                ChangeKind::Delete
            },
            key: Bytes::from_static(key),
            before: Some(Bytes::new()),
            after: live.then(Bytes::new),
            batch_index: 0,
            batch_size: 1,
        }
    }

    fn kept(low_water: Seq, bottom: bool, versions: &[ChangeRecord]) -> Vec<(&'static str, Seq)> {
        let mut filter = HistoryFilter::new(low_water, bottom);
        versions
            .iter()
            .filter(|r| filter.keep(r))
            .map(|r| (if &r.key[..] == b"a" { "a" } else { "b" }, r.seq))
            .collect()
    }

    #[test]
    fn history_above_low_water_is_kept_and_below_it_collapses() {
        let versions = [
            v(b"a", 9, true),
            v(b"a", 7, false),
            v(b"a", 5, true),
            v(b"a", 2, true),
            v(b"b", 6, false),
            v(b"b", 3, true),
        ];
        type Case<'a> = (Seq, bool, &'a [(&'a str, Seq)]);
        let table: &[Case<'_>] = &[
            (
                0,
                true,
                &[("a", 9), ("a", 7), ("a", 5), ("a", 2), ("b", 6), ("b", 3)],
            ),
            // a: 5 is the state at 5; 2 goes. b: the tombstone 6 is above 5.
            (5, true, &[("a", 9), ("a", 7), ("a", 5), ("b", 6), ("b", 3)]),
            // b's state at 6 is a tombstone: dropped at the bottom with all below.
            (6, true, &[("a", 9), ("a", 7), ("a", 5)]),
            // Not the bottom: the tombstone stays to hide older versions below.
            (6, false, &[("a", 9), ("a", 7), ("a", 5), ("b", 6)]),
            (8, true, &[("a", 9)]),
            (100, true, &[("a", 9)]),
        ];
        for (low_water, bottom, expected) in table {
            assert_eq!(
                kept(*low_water, *bottom, &versions),
                expected.to_vec(),
                "low-water {low_water}, bottom {bottom}"
            );
        }
    }
}
