//! The snapshot a subscription may start with: the current rows of its
//! tables as `read` events, all as of one seq S, read page by page.
//!
//! The last row of the whole snapshot is marked (Debezium's
//! `source.snapshot = "last"`), which needs to know that no row follows
//! it, even when the tables after it are empty. So each read holds back
//! its final row and sends it with the next read, once that read has
//! found another row (then it was not the last) or has run out of tables
//! (then it was).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tidefeed_engine::{KeyRange, Seq, Table, Value};

use crate::encode::{encode_bounded, EncodedEvent, Format};
use crate::error::FeedError;
use crate::event::ChangeEvent;
use crate::feed::Feed;

/// Rows per snapshot page.
const SNAPSHOT_PAGE: usize = 256;

/// Rows still to send before the live stream, all as of seq `at`.
pub(crate) struct Snapshot {
    tables: VecDeque<Arc<Table>>,
    /// Where the first table's next page starts.
    next_key: Option<Vec<Value>>,
    /// The last row read, not yet sent: whether it is the snapshot's last
    /// is known only when the next row is found or the tables run out.
    held: Option<ChangeEvent>,
    at: Seq,
    /// Commit time of `at`.
    ts_micros: i64,
}

/// What one snapshot read found, applied by [`Snapshot::advance`].
pub(crate) struct SnapshotPage {
    events: Vec<(Seq, EncodedEvent)>,
    /// How many of the tables were read to their end.
    tables_done: usize,
    next_key: Option<Vec<Value>>,
    held: Option<ChangeEvent>,
}

impl Snapshot {
    pub(crate) fn new(tables: VecDeque<Arc<Table>>, at: Seq, ts_micros: i64) -> Snapshot {
        Snapshot {
            tables,
            next_key: None,
            held: None,
            at,
            ts_micros,
        }
    }

    /// Every row has been read and sent.
    pub(crate) fn is_complete(&self) -> bool {
        self.tables.is_empty() && self.held.is_none()
    }

    /// The next read, to run on the blocking pool. It works on copies:
    /// this snapshot is unchanged until [`Snapshot::advance`] applies the
    /// result, so a read that is abandoned or fails costs nothing.
    pub(crate) fn read_next_page(
        &self,
        feed: &Feed,
        format: Format,
    ) -> impl FnOnce() -> Result<SnapshotPage, FeedError> + Send + 'static {
        let feed = feed.clone();
        let tables: Vec<Arc<Table>> = self.tables.iter().cloned().collect();
        let (mut next_key, mut held) = (self.next_key.clone(), self.held.clone());
        let (at, ts_micros) = (self.at, self.ts_micros);
        move || {
            let mut events = Vec::new();
            let mut encode = |event: &ChangeEvent| -> Result<(), FeedError> {
                let (bytes, truncated) = encode_bounded(event, format, feed.max_event_bytes)?;
                if truncated {
                    feed.oversized.fetch_add(1, Ordering::Relaxed);
                }
                events.push((at, bytes));
                Ok(())
            };
            let mut tables_done = 0;
            while let Some(table) = tables.get(tables_done) {
                let range = KeyRange {
                    start: next_key.take(),
                    end: None,
                };
                let page = feed
                    .engine
                    .scan(table.name(), &range, SNAPSHOT_PAGE, Some(at))?;
                match page.next {
                    Some(key) => next_key = Some(key),
                    None => tables_done += 1,
                }
                let found_rows = !page.rows.is_empty();
                for version in page.rows {
                    let row = ChangeEvent::snapshot_read(table.clone(), version.row, at, ts_micros);
                    if let Some(earlier) = held.replace(row) {
                        encode(&earlier)?;
                    }
                }
                if found_rows && held.is_some() && tables_done < tables.len() {
                    // Rows were read; the held one waits for the next read.
                    return Ok(SnapshotPage {
                        events,
                        tables_done,
                        next_key,
                        held,
                    });
                }
            }
            // Every table is read: the held row is the snapshot's last.
            if let Some(mut last) = held.take() {
                last.last_of_snapshot = true;
                encode(&last)?;
            }
            Ok(SnapshotPage {
                events,
                tables_done,
                next_key: None,
                held: None,
            })
        }
    }

    /// Applies a finished read; returns the events it encoded, in order.
    pub(crate) fn advance(&mut self, page: SnapshotPage) -> Vec<(Seq, EncodedEvent)> {
        self.tables.drain(..page.tables_done);
        self.next_key = page.next_key;
        self.held = page.held;
        page.events
    }
}
