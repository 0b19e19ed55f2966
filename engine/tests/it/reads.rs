//! Point reads and range scans, now and as of a seq.

use tidefeed_engine::{Engine, EngineOptions, Error, KeyRange, Mutation, RowProblem, Value};

use crate::common::{account, events_schema, open_with_tables};

fn event(stream: &str, n: i64) -> Vec<(String, Value)> {
    vec![
        ("stream".into(), Value::String(stream.into())),
        ("n".into(), Value::Int64(n)),
    ]
}

fn keys(page: &tidefeed_engine::ScanPage) -> Vec<(String, i64)> {
    page.rows
        .iter()
        .map(|r| match &r.row.values()[..2] {
            [Value::String(s), Value::Int64(n)] => (s.clone(), *n),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

#[test]
fn reads_as_of_a_seq_see_the_state_at_that_seq() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    let s1 = engine
        .write(vec![Mutation::upsert("accounts", account(1, "a", 10))])
        .unwrap();
    let s2 = engine
        .write(vec![Mutation::upsert("accounts", account(1, "a", 20))])
        .unwrap();
    let s3 = engine
        .write(vec![Mutation::delete("accounts", vec![Value::Int64(1)])])
        .unwrap();
    let at = |seq| {
        engine
            .get("accounts", &[Value::Int64(1)], Some(seq))
            .unwrap()
    };
    assert_eq!(at(0), None);
    let v1 = at(s1.last_seq().unwrap()).unwrap();
    assert_eq!((v1.seq, v1.row.values()[2].clone()), (1, Value::Int64(10)));
    assert_eq!(
        at(s2.last_seq().unwrap()).unwrap().row.values()[2],
        Value::Int64(20)
    );
    assert_eq!(at(s3.last_seq().unwrap()), None);
    assert!(engine
        .get("accounts", &[Value::Int64(1)], None)
        .unwrap()
        .is_none());
    let err = engine
        .get("accounts", &[Value::Int64(1)], Some(99))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FutureSeq {
                requested: 99,
                visible: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn scans_follow_key_order_with_prefixes_pagination_and_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.memtable_bytes = 2 << 10;
    let engine = Engine::open(options).unwrap();
    engine.create_table(events_schema()).unwrap();
    engine
        .create_table(crate::common::accounts_schema())
        .unwrap();
    for stream in ["b", "a", "c", "a\u{0}"] {
        for n in [3, -1, 2] {
            engine
                .write(vec![Mutation::upsert("events", event(stream, n))])
                .unwrap();
        }
    }
    engine
        .write(vec![Mutation::upsert(
            "accounts",
            account(1, "other table", 1),
        )])
        .unwrap();
    let before_delete = engine.visible_seq();
    engine
        .write(vec![Mutation::delete(
            "events",
            vec![Value::String("a".into()), Value::Int64(2)],
        )])
        .unwrap();
    assert!(engine.metrics().memtable_rotations > 0);
    // Wait for the flush worker, so the scans below read table files.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.metrics().flushes == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(engine.metrics().flushes > 0);

    let all = engine
        .scan("events", &KeyRange::default(), 100, None)
        .unwrap();
    assert_eq!(
        keys(&all),
        vec![
            ("a".into(), -1),
            ("a".into(), 3),
            ("a\u{0}".into(), -1),
            ("a\u{0}".into(), 2),
            ("a\u{0}".into(), 3),
            ("b".into(), -1),
            ("b".into(), 2),
            ("b".into(), 3),
            ("c".into(), -1),
            ("c".into(), 2),
            ("c".into(), 3),
        ]
    );
    let prefix = KeyRange {
        start: Some(vec![Value::String("b".into())]),
        end: Some(vec![Value::String("c".into())]),
    };
    assert_eq!(
        keys(&engine.scan("events", &prefix, 100, None).unwrap()).len(),
        3
    );

    // Pagination: `next` starts the following page exactly where this one ended.
    let mut pages = Vec::new();
    let mut range = KeyRange::default();
    loop {
        let page = engine.scan("events", &range, 4, None).unwrap();
        pages.extend(keys(&page));
        match page.next {
            Some(next) => range.start = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, keys(&all));

    let old = engine
        .scan("events", &KeyRange::default(), 100, Some(before_delete))
        .unwrap();
    assert_eq!(
        old.rows.len(),
        12,
        "the deleted row is visible as of a seq before the delete"
    );
}

#[test]
fn bad_keys_are_rejected_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_tables(dir.path());
    let err = engine
        .get("accounts", &[Value::String("1".into())], None)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRow { column, problem: RowProblem::TypeMismatch { .. }, .. } if column == "id"),
        "{err}"
    );
    let err = engine
        .get("events", &[Value::String("s".into())], None)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRow { column, problem: RowProblem::Missing, .. } if column == "n"),
        "{err}"
    );
    let err = engine.get("missing", &[Value::Int64(1)], None).unwrap_err();
    assert!(matches!(err, Error::NoSuchTable { .. }));
}

#[test]
fn float_keys_treat_negative_zero_as_zero_and_reject_nan() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::common::open(dir.path());
    engine
        .create_table(tidefeed_engine::TableSchema {
            name: "points".into(),
            columns: vec![
                crate::common::column("x", tidefeed_engine::ColumnType::Float64, false),
                crate::common::column("label", tidefeed_engine::ColumnType::String, true),
            ],
            primary_key: vec!["x".into()],
        })
        .unwrap();
    let row = |x: f64, label: &str| {
        vec![
            ("x".into(), Value::Float64(x)),
            ("label".into(), Value::String(label.into())),
        ]
    };
    engine
        .write(vec![Mutation::upsert("points", row(-0.0, "neg"))])
        .unwrap();
    let second = engine
        .write(vec![Mutation::upsert("points", row(0.0, "pos"))])
        .unwrap();
    assert_eq!(
        second.outcomes[0],
        tidefeed_engine::Outcome::Committed {
            seq: 2,
            kind: tidefeed_engine::ChangeKind::Update
        }
    );
    let found = engine
        .get("points", &[Value::Float64(-0.0)], None)
        .unwrap()
        .unwrap();
    assert_eq!(found.row.values()[1], Value::String("pos".into()));
    let err = engine
        .write(vec![Mutation::upsert("points", row(f64::NAN, "nan"))])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRow { column, problem: RowProblem::NaNKey, .. } if column == "x"),
        "{err}"
    );
}
