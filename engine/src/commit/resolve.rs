//! Turning prepared operations into change records: the before-image, the
//! op kind and the seq of every change are decided here, inside the commit
//! order.
//!
//! This is a pure function of the current state (given as a lookup), the
//! group's earlier writes (the overlay) and the batch, so its rules are
//! tested without a WAL or threads.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::change::{ChangeKind, ChangeRecord};
use crate::codec::row;
use crate::commit::request::{check_size, Action, Outcome, PreparedOp, WriteResult};
use crate::error::{Error, Result, SizeLimit};
use crate::options::Limits;
use crate::Seq;

/// The newest committed version of a key: its seq and its row (`None` for
/// a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    pub seq: Seq,
    pub row: Option<Bytes>,
}

/// Versions written by earlier batches of the commit group, not yet in the
/// memtable.
pub(crate) type Overlay = HashMap<Bytes, Current>;

/// A batch ready to be logged and applied.
#[derive(Debug)]
pub(crate) struct ResolvedBatch {
    pub records: Vec<Arc<ChangeRecord>>,
    pub result: WriteResult,
}

/// Resolves one batch. On success the batch's writes are added to
/// `overlay`; on failure nothing is, and the batch consumes no seq.
pub(crate) fn resolve_batch(
    ops: &[PreparedOp],
    first_seq: Seq,
    ts_micros: i64,
    overlay: &mut Overlay,
    lookup: &mut dyn FnMut(&Bytes) -> Result<Option<Current>>,
    limits: &Limits,
) -> Result<ResolvedBatch> {
    let mut local: Overlay = HashMap::new();
    let mut changes: Vec<(ChangeKind, Bytes, Option<Bytes>, Option<Bytes>)> =
        Vec::with_capacity(ops.len());
    let mut outcomes = Vec::with_capacity(ops.len());
    let single = ops.len() == 1;
    for (index, op) in ops.iter().enumerate() {
        let current = match local.get(&op.key).or_else(|| overlay.get(&op.key)) {
            Some(current) => Some(current.clone()),
            None => lookup(&op.key)?,
        };
        let seq = first_seq + changes.len() as Seq;
        let change = resolve_op(op, current, limits).map_err(|source| {
            if single {
                source
            } else {
                Error::InBatch {
                    index,
                    source: Box::new(source),
                }
            }
        })?;
        match change {
            None => outcomes.push(Outcome::NoOp),
            Some((kind, before, after)) => {
                local.insert(
                    op.key.clone(),
                    Current {
                        seq,
                        row: after.clone(),
                    },
                );
                outcomes.push(Outcome::Committed { seq, kind });
                changes.push((kind, op.key.clone(), before, after));
            }
        }
    }
    // The whole batch as logged, before-images included: one WAL frame.
    let logged: usize = changes
        .iter()
        .map(|(_, key, before, after)| {
            key.len() + before.as_ref().map_or(0, Bytes::len) + after.as_ref().map_or(0, Bytes::len)
        })
        .sum();
    check_size(SizeLimit::Batch, logged, limits.max_batch_bytes)?;
    overlay.extend(local);
    let size = changes.len() as u32;
    let records = changes
        .into_iter()
        .enumerate()
        .map(|(i, (kind, key, before, after))| {
            Arc::new(ChangeRecord {
                seq: first_seq + i as Seq,
                ts_micros,
                kind,
                key,
                before,
                after,
                batch_index: i as u32,
                batch_size: size,
            })
        })
        .collect();
    Ok(ResolvedBatch {
        records,
        result: WriteResult { outcomes },
    })
}

type Resolved = Option<(ChangeKind, Option<Bytes>, Option<Bytes>)>;

fn resolve_op(op: &PreparedOp, current: Option<Current>, limits: &Limits) -> Result<Resolved> {
    let table = &op.table;
    let (current_seq, before) = match current {
        Some(Current { seq, row }) => (row.as_ref().map(|_| seq), row),
        None => (None, None),
    };
    if let Some(expected) = op.precondition {
        if !expected.holds(current_seq) {
            return Err(Error::PreconditionFailed {
                table: table.name().to_owned(),
                expected,
                actual: current_seq,
            });
        }
    }
    Ok(match &op.action {
        Action::Upsert(after) => {
            let kind = if before.is_some() {
                ChangeKind::Update
            } else {
                ChangeKind::Insert
            };
            Some((kind, before, Some(after.clone())))
        }
        Action::Patch(patch) => {
            let Some(before) = before else {
                return Err(Error::RowNotFound {
                    table: table.name().to_owned(),
                });
            };
            let current_row =
                row::decode(table.columns(), &before).map_err(|what| Error::Undecodable {
                    table: table.name().to_owned(),
                    seq: current_seq.unwrap_or_default(),
                    what,
                })?;
            let merged = row::encode(&table.merge_patch(&current_row, patch)?);
            check_size(SizeLimit::Row, merged.len(), limits.max_row_bytes)?;
            Some((ChangeKind::Update, Some(before), Some(Bytes::from(merged))))
        }
        Action::Delete => before.map(|before| (ChangeKind::Delete, Some(before), None)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogSnapshot;
    use crate::commit::request::{prepare, Mutation, Precondition};
    use crate::schema::{Column, ColumnType, TableSchema, Value};

    fn catalog() -> CatalogSnapshot {
        let table = TableSchema {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: ColumnType::Int64,
                    nullable: false,
                },
                Column {
                    name: "v".into(),
                    ty: ColumnType::String,
                    nullable: true,
                },
            ],
            primary_key: vec!["id".into()],
        }
        .validate(1)
        .unwrap();
        CatalogSnapshot::default().with_table(Arc::new(table))
    }

    fn row(id: i64, v: &str) -> Vec<(String, Value)> {
        vec![
            ("id".into(), Value::Int64(id)),
            ("v".into(), Value::String(v.into())),
        ]
    }

    fn kinds(resolved: &ResolvedBatch) -> Vec<(Seq, ChangeKind)> {
        resolved.records.iter().map(|r| (r.seq, r.kind)).collect()
    }

    #[test]
    fn put_then_delete_in_one_batch_captures_the_put_as_before_image() {
        let catalog = catalog();
        let ops = prepare(
            &catalog,
            vec![
                Mutation::upsert("t", row(1, "a")),
                Mutation::delete("t", vec![Value::Int64(1)]),
            ],
            &Limits::default(),
        )
        .unwrap();
        let resolved = resolve_batch(
            &ops,
            10,
            0,
            &mut Overlay::new(),
            &mut |_| Ok(None),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            kinds(&resolved),
            vec![(10, ChangeKind::Insert), (11, ChangeKind::Delete)]
        );
        assert_eq!(resolved.records[1].before, resolved.records[0].after);
        assert_eq!(resolved.records[1].batch_size, 2);
    }

    #[test]
    fn deleting_a_missing_key_takes_no_seq() {
        let catalog = catalog();
        let ops = prepare(
            &catalog,
            vec![
                Mutation::delete("t", vec![Value::Int64(5)]),
                Mutation::upsert("t", row(6, "x")),
            ],
            &Limits::default(),
        )
        .unwrap();
        let resolved = resolve_batch(
            &ops,
            3,
            0,
            &mut Overlay::new(),
            &mut |_| Ok(None),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(resolved.result.outcomes[0], Outcome::NoOp);
        assert_eq!(kinds(&resolved), vec![(3, ChangeKind::Insert)]);
        assert_eq!(resolved.records[0].batch_size, 1);
    }

    #[test]
    fn a_failing_batch_leaves_the_overlay_untouched() {
        let catalog = catalog();
        let ops = prepare(
            &catalog,
            vec![
                Mutation::upsert("t", row(1, "a")),
                Mutation::patch("t", vec![Value::Int64(2)], vec![]),
            ],
            &Limits::default(),
        )
        .unwrap();
        let mut overlay = Overlay::new();
        let err = resolve_batch(
            &ops,
            1,
            0,
            &mut overlay,
            &mut |_| Ok(None),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InBatch { index: 1, .. }), "{err}");
        assert!(overlay.is_empty());
    }

    #[test]
    fn the_overlay_makes_later_batches_see_earlier_ones() {
        let catalog = catalog();
        let mut overlay = Overlay::new();
        let first = prepare(
            &catalog,
            vec![Mutation::upsert("t", row(1, "a"))],
            &Limits::default(),
        )
        .unwrap();
        let first = resolve_batch(
            &first,
            1,
            0,
            &mut overlay,
            &mut |_| Ok(None),
            &Limits::default(),
        )
        .unwrap();
        let second = prepare(
            &catalog,
            vec![
                Mutation::patch("t", vec![Value::Int64(1)], vec![("v".into(), Value::Null)])
                    .if_match(1),
            ],
            &Limits::default(),
        )
        .unwrap();
        let second = resolve_batch(
            &second,
            2,
            0,
            &mut overlay,
            &mut |_| Ok(None),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(second.records[0].kind, ChangeKind::Update);
        assert_eq!(second.records[0].before, first.records[0].after);
        let stale = prepare(
            &catalog,
            vec![Mutation::delete("t", vec![Value::Int64(1)]).if_match(1)],
            &Limits::default(),
        )
        .unwrap();
        let err = resolve_batch(
            &stale,
            3,
            0,
            &mut overlay,
            &mut |_| Ok(None),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::PreconditionFailed {
                    expected: Precondition::Version(1),
                    actual: Some(2),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn preconditions_hold_for_the_versions_they_name() {
        use Precondition::*;
        let table: &[(Precondition, Option<Seq>, bool)] = &[
            (Version(3), Some(3), true),
            (Version(3), Some(4), false),
            (Version(3), None, false),
            (Exists, Some(1), true),
            (Exists, None, false),
            (Absent, None, true),
            (Absent, Some(1), false),
        ];
        for (precondition, current, holds) in table {
            assert_eq!(
                precondition.holds(*current),
                *holds,
                "{precondition} vs {current:?}"
            );
        }
    }

    #[test]
    fn a_tombstone_in_the_state_is_an_absent_row() {
        let catalog = catalog();
        let ops = prepare(
            &catalog,
            vec![Mutation::upsert("t", row(1, "a"))],
            &Limits::default(),
        )
        .unwrap();
        let mut lookup = |_: &Bytes| Ok(Some(Current { seq: 7, row: None }));
        let resolved = resolve_batch(
            &ops,
            8,
            0,
            &mut Overlay::new(),
            &mut lookup,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(resolved.records[0].kind, ChangeKind::Insert);
        assert_eq!(resolved.records[0].before, None);
    }
}
