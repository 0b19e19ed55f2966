//! Writes are checked against size and shape limits before they commit:
//! what is refused names the limit and writes nothing; what is accepted
//! stays readable forever.

use tidefeed_engine::{
    ColumnType, Engine, EngineOptions, Error, Limits, Mutation, RowProblem, SizeLimit, TableSchema,
    Value, MAX_JSON_DEPTH, MAX_TIMESTAMP_MICROS, MIN_TIMESTAMP_MICROS,
};

use crate::common::{account, accounts_schema, column};

fn docs_schema() -> TableSchema {
    TableSchema {
        name: "docs".into(),
        columns: vec![
            column("id", ColumnType::Int64, false),
            column("doc", ColumnType::Json, true),
            column("required", ColumnType::Json, false),
            column("at", ColumnType::Timestamp, true),
        ],
        primary_key: vec!["id".into()],
    }
}

fn doc(id: i64, doc: serde_json::Value) -> Vec<(String, Value)> {
    vec![
        ("id".into(), Value::Int64(id)),
        ("doc".into(), Value::Json(doc)),
        ("required".into(), Value::Json(serde_json::json!({}))),
    ]
}

fn note(id: i64, bytes: usize) -> Vec<(String, Value)> {
    let mut row = account(id, "o", id);
    row.push(("note".into(), Value::String("n".repeat(bytes))));
    row
}

fn too_large(err: &Error) -> Option<SizeLimit> {
    match err {
        Error::TooLarge { what, .. } => Some(*what),
        Error::InBatch { source, .. } => too_large(source),
        _ => None,
    }
}

fn engine(dir: &std::path::Path, limits: Limits) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.limits = limits;
    let engine = Engine::open(options).unwrap();
    engine.create_table(accounts_schema()).unwrap();
    engine.create_table(docs_schema()).unwrap();
    engine
}

#[test]
fn keys_rows_and_batches_over_their_limits_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(
        dir.path(),
        Limits {
            max_key_bytes: 64,
            max_row_bytes: 600 << 10,
            max_batch_bytes: 1 << 20,
        },
    );
    engine
        .write(vec![
            Mutation::upsert("accounts", note(1, 500 << 10)),
            Mutation::upsert("accounts", note(2, 400 << 10)),
        ])
        .unwrap();
    let visible = engine.visible_seq();

    let row = engine
        .write(vec![Mutation::upsert("accounts", note(3, 700 << 10))])
        .unwrap_err();
    assert_eq!(too_large(&row), Some(SizeLimit::Row), "{row}");
    assert!(row.to_string().contains("max_row_bytes"), "{row}");

    // A patch whose merged row outgrows the limit: known only in the
    // commit order.
    let grown = engine
        .write(vec![Mutation::patch(
            "accounts",
            vec![Value::Int64(2)],
            vec![("note".into(), Value::String("m".repeat(650 << 10)))],
        )])
        .unwrap_err();
    assert_eq!(too_large(&grown), Some(SizeLimit::Row), "{grown}");

    // New rows alone fit the batch limit; with the before-images they
    // replace, the logged batch does not.
    let batch = engine
        .write(vec![
            Mutation::upsert("accounts", note(1, 450 << 10)),
            Mutation::upsert("accounts", note(2, 450 << 10)),
        ])
        .unwrap_err();
    assert_eq!(too_large(&batch), Some(SizeLimit::Batch), "{batch}");
    assert!(batch.to_string().contains("max_batch_bytes"), "{batch}");

    let key = Mutation::upsert(
        "docs",
        vec![
            ("id".into(), Value::Int64(1)),
            ("required".into(), Value::Json(serde_json::json!(1))),
        ],
    );
    engine.write(vec![key]).unwrap();
    let long_key = TableSchema {
        name: "names".into(),
        columns: vec![column("name", ColumnType::String, false)],
        primary_key: vec!["name".into()],
    };
    engine.create_table(long_key).unwrap();
    let err = engine
        .write(vec![Mutation::upsert(
            "names",
            vec![("name".into(), Value::String("k".repeat(100)))],
        )])
        .unwrap_err();
    assert_eq!(too_large(&err), Some(SizeLimit::Key), "{err}");

    assert_eq!(
        engine.visible_seq(),
        visible + 1,
        "refused writes took no seq"
    );
    engine
        .write(vec![Mutation::upsert("accounts", note(9, 10))])
        .unwrap();
    engine.close().unwrap();
}

/// A batch far beyond the WAL's frame size is refused before the commit
/// thread sees it; the engine goes on (it used to panic the commit thread
/// and answer "closed" forever).
#[test]
fn a_huge_batch_is_refused_and_the_engine_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Limits::default());
    let batch: Vec<Mutation> = (0..80)
        .map(|i| Mutation::upsert("accounts", note(i, 900 << 10)))
        .collect();
    let err = engine.write(batch).unwrap_err();
    assert_eq!(too_large(&err), Some(SizeLimit::Batch), "{err}");
    engine
        .write(vec![Mutation::upsert("accounts", note(1, 10))])
        .unwrap();
    assert_eq!(engine.visible_seq(), 1);
    engine.close().unwrap();
}

fn nested(depth: usize) -> serde_json::Value {
    let mut value = serde_json::json!(1);
    for _ in 0..depth {
        value = serde_json::json!([value]);
    }
    value
}

#[test]
fn json_nested_past_the_limit_is_refused_and_what_is_accepted_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Limits::default());
    let err = engine
        .write(vec![Mutation::upsert("docs", doc(1, nested(200)))])
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidRow { column, problem: RowProblem::TooDeep { depth: 200, limit }, .. }
                if column == "doc" && *limit == MAX_JSON_DEPTH
        ),
        "{err}"
    );
    let deepest = nested(MAX_JSON_DEPTH);
    engine
        .write(vec![Mutation::upsert("docs", doc(2, deepest.clone()))])
        .unwrap();
    engine.flush().unwrap();
    let row = engine
        .get("docs", &[Value::Int64(2)], None)
        .unwrap()
        .unwrap();
    assert_eq!(row.row.values()[1], Value::Json(deepest));
    assert_eq!(engine.changes(0, None).unwrap().count(), 1);
}

#[test]
fn timestamps_outside_four_digit_years_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Limits::default());
    let at = |id: i64, micros: i64| {
        let mut row = doc(id, serde_json::json!(null));
        row.push(("at".into(), Value::Timestamp(micros)));
        Mutation::upsert("docs", row)
    };
    for bad in [
        MIN_TIMESTAMP_MICROS - 1,
        MAX_TIMESTAMP_MICROS + 1,
        i64::MIN,
        i64::MAX,
    ] {
        let err = engine.write(vec![at(1, bad)]).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::InvalidRow { column, problem: RowProblem::TimestampOutOfRange, .. } if column == "at"
            ),
            "{bad}: {err}"
        );
    }
    engine.write(vec![at(1, MIN_TIMESTAMP_MICROS)]).unwrap();
    engine.write(vec![at(2, MAX_TIMESTAMP_MICROS)]).unwrap();
    assert_eq!(engine.visible_seq(), 2);
}

#[test]
fn json_null_is_sql_null() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Limits::default());
    let err = engine
        .write(vec![Mutation::upsert(
            "docs",
            vec![
                ("id".into(), Value::Int64(1)),
                ("required".into(), Value::Json(serde_json::Value::Null)),
            ],
        )])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRow { column, problem: RowProblem::Null, .. } if column == "required"),
        "{err}"
    );
    engine
        .write(vec![Mutation::upsert(
            "docs",
            doc(1, serde_json::Value::Null),
        )])
        .unwrap();
    let row = engine
        .get("docs", &[Value::Int64(1)], None)
        .unwrap()
        .unwrap();
    assert_eq!(
        row.row.values()[1],
        Value::Null,
        "stored and read back as NULL"
    );
}

#[test]
fn options_that_cannot_work_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EngineOptions::new(dir.path());
    options.l0_compaction_trigger = 4;
    options.max_l0_files = 3;
    let err = match Engine::open(options) {
        Err(err) => err,
        Ok(_) => panic!("opened with l0_compaction_trigger > max_l0_files"),
    };
    assert!(
        matches!(&err, Error::InvalidOptions(e) if e.field == "max_l0_files"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created"
    );
}
