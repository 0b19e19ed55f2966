//! The change event: one committed change (or one snapshot row), decoded
//! and ready to encode.

use std::sync::Arc;

use tidefeed_engine::{BatchPosition, Change, ChangeKind, Row, Seq, Table, Value};

use crate::error::FeedError;

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventOp {
    Insert,
    Update,
    Delete,
    /// A row of a snapshot, consistent at the event's seq.
    Read,
}

impl EventOp {
    pub fn name(self) -> &'static str {
        match self {
            EventOp::Insert => "insert",
            EventOp::Update => "update",
            EventOp::Delete => "delete",
            EventOp::Read => "read",
        }
    }

    /// Debezium's op code.
    pub fn debezium_code(self) -> &'static str {
        match self {
            EventOp::Insert => "c",
            EventOp::Update => "u",
            EventOp::Delete => "d",
            EventOp::Read => "r",
        }
    }
}

impl From<ChangeKind> for EventOp {
    fn from(kind: ChangeKind) -> EventOp {
        match kind {
            ChangeKind::Insert => EventOp::Insert,
            ChangeKind::Update => EventOp::Update,
            ChangeKind::Delete => EventOp::Delete,
        }
    }
}

/// A change event with decoded images.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// The change's seq; for snapshot rows, the seq the snapshot is
    /// consistent at.
    pub seq: Seq,
    /// Commit time, microseconds since the Unix epoch.
    pub ts_micros: i64,
    pub table: Arc<Table>,
    pub op: EventOp,
    /// Primary key values, in key order.
    pub key: Vec<Value>,
    pub before: Option<Row>,
    pub after: Option<Row>,
    /// The change's place in its atomic batch; `None` for snapshot rows.
    pub batch: Option<BatchPosition>,
    /// True only on the final row of a snapshot (the Debezium envelope
    /// marks it `source.snapshot = "last"`).
    pub last_of_snapshot: bool,
}

impl ChangeEvent {
    pub fn from_change(change: &Change) -> Result<ChangeEvent, FeedError> {
        Ok(ChangeEvent {
            seq: change.seq(),
            ts_micros: change.ts_micros(),
            table: change.table().clone(),
            op: change.kind().into(),
            key: change.key()?,
            before: change.before()?,
            after: change.after()?,
            batch: Some(change.batch()),
            last_of_snapshot: false,
        })
    }

    /// A snapshot row, consistent at `seq` (committed at `ts_micros`).
    pub fn snapshot_read(table: Arc<Table>, row: Row, seq: Seq, ts_micros: i64) -> ChangeEvent {
        ChangeEvent {
            seq,
            ts_micros,
            key: table.row_key(&row),
            table,
            op: EventOp::Read,
            before: None,
            after: Some(row),
            batch: None,
            last_of_snapshot: false,
        }
    }
}
