//! The unit the engine stores and the feed streams: one committed mutation.

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{key, row};
use crate::error::{Error, Result};
use crate::schema::{Row, Table, Value};
use crate::Seq;

/// What a committed mutation did, decided at commit time from the
/// before-image and stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            ChangeKind::Insert => 1,
            ChangeKind::Update => 2,
            ChangeKind::Delete => 3,
        }
    }

    /// Whether images of this presence fit the kind: inserts have no
    /// before-image, deletes no after-image, updates both.
    pub(crate) fn fits_images(self, before: bool, after: bool) -> bool {
        match self {
            ChangeKind::Insert => !before && after,
            ChangeKind::Update => before && after,
            ChangeKind::Delete => before && !after,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<ChangeKind> {
        match tag {
            1 => Some(ChangeKind::Insert),
            2 => Some(ChangeKind::Update),
            3 => Some(ChangeKind::Delete),
            _ => None,
        }
    }
}

/// Where a change sits in its atomic batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchPosition {
    /// Seq of the batch's first change.
    pub first_seq: Seq,
    /// Index of this change in the batch, from 0.
    pub index: u32,
    /// Number of changes in the batch.
    pub size: u32,
}

/// One committed mutation as stored: the internal key and the encoded
/// before- and after-images.
///
/// Architecture invariant: `before` is `None` exactly for inserts and `after`
/// is `None` exactly for deletes. A delete's record is its tombstone, so the
/// captured pre-image travels with it wherever the tombstone goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeRecord {
    pub seq: Seq,
    pub ts_micros: i64,
    pub kind: ChangeKind,
    /// Table id prefix followed by the memcomparable primary key.
    pub key: Bytes,
    pub before: Option<Bytes>,
    pub after: Option<Bytes>,
    pub batch_index: u32,
    pub batch_size: u32,
}

impl ChangeRecord {
    /// Bytes this record occupies, for memtable accounting.
    pub(crate) fn footprint(&self) -> usize {
        const OVERHEAD: usize = 160;
        OVERHEAD
            + self.key.len()
            + self.before.as_ref().map_or(0, Bytes::len)
            + self.after.as_ref().map_or(0, Bytes::len)
    }
}

/// A committed change, decoded on demand against its table.
#[derive(Debug, Clone)]
pub struct Change {
    record: Arc<ChangeRecord>,
    table: Arc<Table>,
}

impl Change {
    pub(crate) fn new(record: Arc<ChangeRecord>, table: Arc<Table>) -> Change {
        Change { record, table }
    }

    pub fn seq(&self) -> Seq {
        self.record.seq
    }

    /// Commit timestamp, microseconds since the Unix epoch. Non-decreasing
    /// in seq order.
    pub fn ts_micros(&self) -> i64 {
        self.record.ts_micros
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    pub fn kind(&self) -> ChangeKind {
        self.record.kind
    }

    pub fn batch(&self) -> BatchPosition {
        BatchPosition {
            first_seq: self.record.seq - u64::from(self.record.batch_index),
            index: self.record.batch_index,
            size: self.record.batch_size,
        }
    }

    /// The primary key values, in key order.
    pub fn key(&self) -> Result<Vec<Value>> {
        key::decode(&self.table, &self.record.key).map_err(|what| self.undecodable(what))
    }

    /// The memcomparable encoded key (table prefix included).
    pub fn encoded_key(&self) -> &[u8] {
        &self.record.key
    }

    pub fn before(&self) -> Result<Option<Row>> {
        self.decode_image(self.record.before.as_ref())
    }

    pub fn after(&self) -> Result<Option<Row>> {
        self.decode_image(self.record.after.as_ref())
    }

    /// Encoded size of the key and both images, a proxy for event size.
    pub fn encoded_len(&self) -> usize {
        self.record.footprint()
    }

    fn decode_image(&self, image: Option<&Bytes>) -> Result<Option<Row>> {
        image
            .map(|bytes| {
                row::decode(self.table.columns(), bytes).map_err(|what| self.undecodable(what))
            })
            .transpose()
    }

    fn undecodable(&self, what: &'static str) -> Error {
        Error::Undecodable {
            table: self.table.name().to_owned(),
            seq: self.record.seq,
            what,
        }
    }
}
