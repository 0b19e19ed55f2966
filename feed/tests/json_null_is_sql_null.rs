//! JSON `null` for a column means SQL NULL, for every column type: a json
//! column has no separate "JSON null" value. NULL is emitted as `null`
//! and reads back as NULL, so rows round-trip; a non-nullable column
//! (json included) refuses it.

use serde_json::{json, Value as Json};
use tidefeed_engine::{Column, ColumnType, Engine, EngineOptions, Mutation, TableSchema, Value};
use tidefeed_feed::json::{named_values_from_json, value_from_json};
use tidefeed_feed::{encode, ChangeEvent, Format};

fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
    }
}

/// `t(id int64 key, f float64, j json, nj json nullable)`.
fn engine(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(EngineOptions::new(dir)).unwrap();
    engine
        .create_table(TableSchema {
            name: "t".into(),
            columns: vec![
                column("id", ColumnType::Int64, false),
                column("f", ColumnType::Float64, false),
                column("j", ColumnType::Json, false),
                column("nj", ColumnType::Json, true),
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    engine
}

fn value_of<'a>(values: &'a [(String, Value)], name: &str) -> &'a Value {
    &values.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn json_null_is_sql_null_for_every_column_type_and_round_trips() {
    for ty in [
        ColumnType::Int64,
        ColumnType::Float64,
        ColumnType::Bool,
        ColumnType::String,
        ColumnType::Bytes,
        ColumnType::Timestamp,
        ColumnType::Json,
    ] {
        let value = value_from_json(&Json::Null, &column("c", ty, true)).unwrap();
        assert_eq!(value, Value::Null, "{ty}");
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let table = engine.table("t").unwrap();

    // Nullable json column: `null` is stored as NULL, emitted as `null`,
    // and parses back to NULL again.
    let row = named_values_from_json(
        &table,
        &json!({"id": 1, "f": 1.5, "j": {"a": null}, "nj": null}),
    )
    .unwrap();
    assert_eq!(
        value_of(&row, "nj"),
        &Value::Null,
        "the parser makes no JSON-null value"
    );
    assert_eq!(
        value_of(&row, "j"),
        &Value::Json(json!({"a": null})),
        "nested nulls are JSON"
    );
    engine
        .write(vec![Mutation::upsert("t", row.clone())])
        .unwrap();
    let stored = engine.get("t", &[Value::Int64(1)], None).unwrap().unwrap();
    assert_eq!(stored.row.values()[3], Value::Null);
    let event =
        ChangeEvent::from_change(&engine.changes(0, None).unwrap().next().unwrap().unwrap())
            .unwrap();
    for format in [Format::Native, Format::Debezium] {
        let envelope: Json = serde_json::from_slice(&encode(&event, format).unwrap()).unwrap();
        assert_eq!(envelope["after"]["nj"], Json::Null);
        assert_eq!(envelope["after"]["j"], json!({"a": null}));
        let again = named_values_from_json(&table, &envelope["after"]).unwrap();
        assert_eq!(again, row, "{format:?}: the row round-trips");
        // And it can be written again as it was read.
        engine.write(vec![Mutation::upsert("t", again)]).unwrap();
    }

    // Non-nullable json column: `null` means NULL, which the column refuses.
    let row = named_values_from_json(&table, &json!({"id": 2, "f": 1.5, "j": null})).unwrap();
    assert_eq!(value_of(&row, "j"), &Value::Null);
    let err = engine.write(vec![Mutation::upsert("t", row)]).unwrap_err();
    assert!(
        err.to_string().contains("\"j\""),
        "the error names the column: {err}"
    );
}
