//! What writers ask for and what they get back.

use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::CatalogSnapshot;
use crate::change::ChangeKind;
use crate::codec::{key, row};
use crate::error::{Error, Result, SizeLimit};
use crate::options::Limits;
use crate::schema::{NamedValues, Table, Value};
use crate::Seq;

/// The most operations one atomic batch may hold.
pub const MAX_BATCH_OPS: usize = 10_000;

/// One operation of an atomic write.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub table: String,
    pub op: MutationOp,
    /// Commit only if the row's current version satisfies this (HTTP
    /// `If-Match` / `If-None-Match`); checked inside the commit order.
    pub precondition: Option<Precondition>,
}

/// What a conditional write requires of the row's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// The row exists and its last change has this seq (`If-Match: "N"`).
    Version(Seq),
    /// The row exists, whatever its version (`If-Match: *`).
    Exists,
    /// The row does not exist (`If-None-Match: *`): insert only.
    Absent,
}

impl Precondition {
    /// Whether a row whose last change has seq `current` (`None`: no row)
    /// satisfies it.
    pub fn holds(self, current: Option<Seq>) -> bool {
        match self {
            Precondition::Version(seq) => current == Some(seq),
            Precondition::Exists => current.is_some(),
            Precondition::Absent => current.is_none(),
        }
    }
}

impl std::fmt::Display for Precondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precondition::Version(seq) => write!(f, "version {seq}"),
            Precondition::Exists => f.write_str("an existing row"),
            Precondition::Absent => f.write_str("no row"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum MutationOp {
    /// Insert the row, or replace it whole if its key exists.
    Upsert { row: NamedValues },
    /// Merge columns into an existing row; fails with `RowNotFound` if absent.
    Patch {
        key: Vec<Value>,
        columns: NamedValues,
    },
    /// Remove a row. Deleting a missing key is a no-op that takes no seq.
    Delete { key: Vec<Value> },
}

impl Mutation {
    pub fn upsert(table: impl Into<String>, row: NamedValues) -> Mutation {
        Mutation {
            table: table.into(),
            op: MutationOp::Upsert { row },
            precondition: None,
        }
    }

    pub fn patch(table: impl Into<String>, key: Vec<Value>, columns: NamedValues) -> Mutation {
        Mutation {
            table: table.into(),
            op: MutationOp::Patch { key, columns },
            precondition: None,
        }
    }

    pub fn delete(table: impl Into<String>, key: Vec<Value>) -> Mutation {
        Mutation {
            table: table.into(),
            op: MutationOp::Delete { key },
            precondition: None,
        }
    }

    /// Commit only if the row's last change has seq `seq`.
    pub fn if_match(self, seq: Seq) -> Mutation {
        self.when(Precondition::Version(seq))
    }

    /// Commit only if the row's current version satisfies `precondition`.
    pub fn when(mut self, precondition: Precondition) -> Mutation {
        self.precondition = Some(precondition);
        self
    }
}

/// The result of one operation of a committed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed {
        seq: Seq,
        kind: ChangeKind,
    },
    /// A delete of a key that did not exist: no seq, no change event.
    NoOp,
}

/// The result of a committed write, one outcome per operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    pub outcomes: Vec<Outcome>,
}

impl WriteResult {
    fn seqs(&self) -> impl Iterator<Item = Seq> + '_ {
        self.outcomes.iter().filter_map(|o| match o {
            Outcome::Committed { seq, .. } => Some(*seq),
            Outcome::NoOp => None,
        })
    }

    /// The seq of the first committed operation, if any committed.
    pub fn first_seq(&self) -> Option<Seq> {
        self.seqs().next()
    }

    /// The seq of the last committed operation, if any committed.
    pub fn last_seq(&self) -> Option<Seq> {
        self.seqs().last()
    }
}

/// A validated, encoded operation, ready for the commit thread.
#[derive(Debug)]
pub(crate) struct PreparedOp {
    pub table: Arc<Table>,
    pub key: Bytes,
    pub action: Action,
    pub precondition: Option<Precondition>,
}

#[derive(Debug)]
pub(crate) enum Action {
    Upsert(Bytes),
    Patch(Vec<Option<Value>>),
    Delete,
}

/// Validates and encodes a batch on the caller's thread, so the commit
/// thread spends its time only on what must be serial.
pub(crate) fn prepare(
    catalog: &CatalogSnapshot,
    batch: Vec<Mutation>,
    limits: &Limits,
) -> Result<Vec<PreparedOp>> {
    if batch.is_empty() {
        return Err(Error::EmptyBatch);
    }
    if batch.len() > MAX_BATCH_OPS {
        return Err(Error::BatchTooLarge {
            ops: batch.len(),
            limit: MAX_BATCH_OPS,
        });
    }
    let single = batch.len() == 1;
    let ops: Vec<PreparedOp> = batch
        .into_iter()
        .enumerate()
        .map(|(index, mutation)| {
            prepare_one(catalog, mutation, limits).map_err(|source| {
                if single {
                    source
                } else {
                    Error::InBatch {
                        index,
                        source: Box::new(source),
                    }
                }
            })
        })
        .collect::<Result<_>>()?;
    // The logged batch holds at least its keys and new rows; before-images
    // are known only in the commit order, where the full size is checked.
    let known: usize = ops
        .iter()
        .map(|op| {
            op.key.len()
                + match &op.action {
                    Action::Upsert(row) => row.len(),
                    Action::Patch(_) | Action::Delete => 0,
                }
        })
        .sum();
    check_size(SizeLimit::Batch, known, limits.max_batch_bytes)?;
    Ok(ops)
}

pub(crate) fn check_size(what: SizeLimit, size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(Error::TooLarge { what, size, limit });
    }
    Ok(())
}

fn prepare_one(
    catalog: &CatalogSnapshot,
    mutation: Mutation,
    limits: &Limits,
) -> Result<PreparedOp> {
    let table = catalog
        .by_name(&mutation.table)
        .cloned()
        .ok_or_else(|| Error::NoSuchTable {
            table: mutation.table.clone(),
        })?;
    let (key_values, action) = match mutation.op {
        MutationOp::Upsert { row: values } => {
            let row = table.full_row(values)?;
            let encoded = row::encode(&row);
            check_size(SizeLimit::Row, encoded.len(), limits.max_row_bytes)?;
            (table.row_key(&row), Action::Upsert(Bytes::from(encoded)))
        }
        MutationOp::Patch { key, columns } => {
            table.check_key(&key)?;
            (key, Action::Patch(table.patch_values(columns)?))
        }
        MutationOp::Delete { key } => {
            table.check_key(&key)?;
            (key, Action::Delete)
        }
    };
    let key = key::encode(table.id(), &key_values);
    check_size(SizeLimit::Key, key.len(), limits.max_key_bytes)?;
    Ok(PreparedOp {
        key: Bytes::from(key),
        table,
        action,
        precondition: mutation.precondition,
    })
}
