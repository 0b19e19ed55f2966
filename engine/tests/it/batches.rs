//! Atomic batches: all or nothing, contiguous seqs, exact positions.

use tidefeed_engine::{ChangeKind, Error, Mutation, Outcome, RowProblem, Value};

use crate::common::{account, all_changes, open_with_tables};

#[test]
fn a_batch_with_one_invalid_row_writes_nothing_and_takes_no_seq() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    engine
        .write(vec![Mutation::upsert("accounts", account(1, "a", 10))])
        .unwrap();
    assert_eq!(engine.visible_seq(), 1);

    let mut bad = account(3, "c", 30);
    bad[2].1 = Value::String("thirty".into());
    let err = engine
        .write(vec![
            Mutation::upsert("accounts", account(2, "b", 20)),
            Mutation::upsert("accounts", bad),
        ])
        .unwrap_err();
    match err {
        Error::InBatch { index: 1, source } => assert!(
            matches!(&*source, Error::InvalidRow { column, problem: RowProblem::TypeMismatch { .. }, .. } if column == "balance"),
            "{source}"
        ),
        other => panic!("expected InBatch, got {other}"),
    }
    // A batch that fails at commit time (patch of a missing row) as well.
    let err = engine
        .write(vec![
            Mutation::upsert("accounts", account(2, "b", 20)),
            Mutation::patch("accounts", vec![Value::Int64(99)], vec![]),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InBatch { index: 1, source } if matches!(**source, Error::RowNotFound { .. })),
        "{err}"
    );

    assert_eq!(engine.visible_seq(), 1);
    assert!(engine
        .get("accounts", &[Value::Int64(2)], None)
        .unwrap()
        .is_none());
    let next = engine
        .write(vec![Mutation::upsert("accounts", account(2, "b", 20))])
        .unwrap();
    assert_eq!(
        next.first_seq(),
        Some(2),
        "the rejected batches consumed no seq"
    );
    assert_eq!(
        engine.metrics().rejected_batches,
        1,
        "validation errors never reach the commit thread"
    );
}

#[test]
fn put_then_delete_in_one_batch_gives_the_delete_the_put_as_before_image() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    let result = engine
        .write(vec![
            Mutation::upsert("accounts", account(7, "x", 1)),
            Mutation::delete("accounts", vec![Value::Int64(7)]),
        ])
        .unwrap();
    assert_eq!(
        result.outcomes,
        vec![
            Outcome::Committed {
                seq: 1,
                kind: ChangeKind::Insert
            },
            Outcome::Committed {
                seq: 2,
                kind: ChangeKind::Delete
            },
        ]
    );
    let changes = all_changes(&engine);
    assert_eq!(changes[1].before, changes[0].after);
    assert!(changes[1].after.is_none());
    assert!(engine
        .get("accounts", &[Value::Int64(7)], None)
        .unwrap()
        .is_none());
}

#[test]
fn batches_span_tables_with_contiguous_seqs_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    engine
        .write(vec![Mutation::upsert("accounts", account(1, "a", 1))])
        .unwrap();
    let result = engine
        .write(vec![
            Mutation::upsert(
                "events",
                vec![
                    ("stream".into(), Value::String("s".into())),
                    ("n".into(), Value::Int64(1)),
                    (
                        "payload".into(),
                        Value::Json(serde_json::json!({"k": [1, 2]})),
                    ),
                ],
            ),
            Mutation::delete("accounts", vec![Value::Int64(404)]),
            Mutation::patch(
                "accounts",
                vec![Value::Int64(1)],
                vec![("balance".into(), Value::Int64(2))],
            ),
        ])
        .unwrap();
    assert_eq!(
        result.outcomes[1],
        Outcome::NoOp,
        "deleting a missing key is a no-op"
    );
    assert_eq!((result.first_seq(), result.last_seq()), (Some(2), Some(3)));
    let changes = all_changes(&engine);
    let positions: Vec<_> = changes
        .iter()
        .map(|c| (c.seq, c.batch.first_seq, c.batch.index, c.batch.size))
        .collect();
    assert_eq!(positions, vec![(1, 1, 0, 1), (2, 2, 0, 2), (3, 2, 1, 2)]);
    assert_eq!(changes[1].table, "events");
    assert_eq!(changes[2].kind, ChangeKind::Update);
    assert_eq!(
        changes[1].ts_micros, changes[2].ts_micros,
        "a batch commits at one timestamp"
    );
}

#[test]
fn deleting_a_missing_key_alone_takes_no_seq() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    let result = engine
        .write(vec![Mutation::delete("accounts", vec![Value::Int64(1)])])
        .unwrap();
    assert_eq!(result.outcomes, vec![Outcome::NoOp]);
    assert_eq!(result.first_seq(), None);
    assert_eq!(engine.visible_seq(), 0);
    assert_eq!(
        engine.metrics().wal_syncs,
        0,
        "a no-op writes nothing to the WAL"
    );
}

#[test]
fn conditional_writes_check_the_row_version() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    engine
        .write(vec![Mutation::upsert("accounts", account(1, "a", 1))])
        .unwrap();
    engine
        .write(vec![
            Mutation::upsert("accounts", account(1, "a", 2)).if_match(1)
        ])
        .unwrap();
    let err = engine
        .write(vec![
            Mutation::upsert("accounts", account(1, "a", 3)).if_match(1)
        ])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PreconditionFailed {
                expected: tidefeed_engine::Precondition::Version(1),
                actual: Some(2),
                ..
            }
        ),
        "{err}"
    );
    let err = engine
        .write(vec![
            Mutation::delete("accounts", vec![Value::Int64(9)]).if_match(1)
        ])
        .unwrap_err();
    assert!(
        matches!(err, Error::PreconditionFailed { actual: None, .. }),
        "{err}"
    );
    assert_eq!(engine.visible_seq(), 2);
}

#[test]
fn patches_merge_and_cannot_change_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    engine
        .write(vec![Mutation::upsert("accounts", account(1, "a", 1))])
        .unwrap();
    engine
        .write(vec![Mutation::patch(
            "accounts",
            vec![Value::Int64(1)],
            vec![
                ("note".into(), Value::String("hi".into())),
                ("id".into(), Value::Int64(1)),
            ],
        )])
        .unwrap();
    let row = engine
        .get("accounts", &[Value::Int64(1)], None)
        .unwrap()
        .unwrap();
    assert_eq!(
        row.row.values(),
        &[
            Value::Int64(1),
            Value::String("a".into()),
            Value::Int64(1),
            Value::String("hi".into())
        ]
    );
    let err = engine
        .write(vec![Mutation::patch(
            "accounts",
            vec![Value::Int64(1)],
            vec![("id".into(), Value::Int64(2))],
        )])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRow { column, problem: RowProblem::KeyChange, .. } if column == "id"),
        "{err}"
    );
}

#[test]
fn empty_and_oversized_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    assert!(matches!(engine.write(vec![]), Err(Error::EmptyBatch)));
    let huge: Vec<_> = (0..=tidefeed_engine::MAX_BATCH_OPS as i64)
        .map(|i| Mutation::delete("accounts", vec![Value::Int64(i)]))
        .collect();
    assert!(matches!(
        engine.write(huge),
        Err(Error::BatchTooLarge { .. })
    ));
    let err = engine
        .write(vec![Mutation::upsert("nope", vec![])])
        .unwrap_err();
    assert!(matches!(&err, Error::NoSuchTable { table } if table == "nope"));
}
