//! Values in JSON, by column type.
//!
//! | type | JSON |
//! |---|---|
//! | int64 | integer |
//! | float64 | number; non-finite values as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (JSON has no such numbers, and writing them as `null` would lose them) |
//! | bool | `true` / `false` |
//! | string | string |
//! | bytes | base64 string (RFC 4648, padded) |
//! | timestamp | RFC 3339 string, UTC, microseconds (`2026-11-24T10:00:00.123456Z`) |
//! | json | any JSON value but a top-level `null` |
//!
//! `null` is SQL NULL for every column type, json included: a json column
//! has no separate "JSON null" value (nested nulls are ordinary JSON).
//! NULL is written as `null` and read back as NULL, so rows round-trip;
//! a non-nullable column refuses it (the engine's check).
//!
//! Rows and keys are JSON objects in the table's column order, written
//! straight to the output without an intermediate JSON tree.
//!
//! Integers are written exactly, but JavaScript clients (`JSON.parse`, a
//! browser `EventSource`) read every number as a float64, which holds
//! integers exactly only up to 2^53 (9007199254740992) in magnitude:
//! larger int64 values, in int64 columns or inside json columns, lose
//! precision there. Such clients need a parser with big-integer support,
//! or the value kept in a string column.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tidefeed_engine::{Column, ColumnType, NamedValues, Row, Table, Value};

use crate::error::{FeedError, JsonProblem};
use crate::{base64, time};

/// Serialises one value as its JSON form.
pub struct JsonValue<'a>(pub &'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Int64(v) => s.serialize_i64(*v),
            Value::Float64(v) if v.is_finite() => s.serialize_f64(*v),
            Value::Float64(v) if v.is_nan() => s.serialize_str("NaN"),
            Value::Float64(v) if *v > 0.0 => s.serialize_str("Infinity"),
            Value::Float64(_) => s.serialize_str("-Infinity"),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(v) => s.serialize_str(&base64::encode(v)),
            Value::Timestamp(v) => time::Rfc3339Micros(*v).serialize(s),
            Value::Json(v) => v.serialize(s),
        }
    }
}

/// Serialises a full row as an object in column order.
pub struct JsonRow<'a> {
    pub table: &'a Table,
    pub row: &'a Row,
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let columns = self.table.columns();
        let mut map = s.serialize_map(Some(columns.len()))?;
        for (column, value) in columns.iter().zip(self.row.values()) {
            map.serialize_entry(&column.name, &JsonValue(value))?;
        }
        map.end()
    }
}

/// Serialises key values (in key order) as an object of the key columns.
pub struct JsonKey<'a> {
    pub table: &'a Table,
    pub key: &'a [Value],
}

impl Serialize for JsonKey<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.key.len()))?;
        for (name, value) in self.table.named_key(self.key) {
            map.serialize_entry(name, &JsonValue(value))?;
        }
        map.end()
    }
}

/// Reads a JSON value into a column's type. `null` becomes `Value::Null`
/// for every type, json included (never `Value::Json(Null)`); whether the
/// column accepts null is the engine's check.
pub fn value_from_json(json: &serde_json::Value, column: &Column) -> Result<Value, JsonProblem> {
    use serde_json::Value as J;
    Ok(match (column.ty, json) {
        (_, J::Null) => Value::Null,
        (ColumnType::Int64, J::Number(n)) => {
            Value::Int64(n.as_i64().ok_or(JsonProblem::ExpectedInteger)?)
        }
        (ColumnType::Int64, _) => return Err(JsonProblem::ExpectedInteger),
        (ColumnType::Float64, J::Number(n)) => {
            Value::Float64(n.as_f64().ok_or(JsonProblem::ExpectedNumber)?)
        }
        (ColumnType::Float64, J::String(s)) => Value::Float64(match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => return Err(JsonProblem::ExpectedNumber),
        }),
        (ColumnType::Float64, _) => return Err(JsonProblem::ExpectedNumber),
        (ColumnType::Bool, J::Bool(b)) => Value::Bool(*b),
        (ColumnType::Bool, _) => return Err(JsonProblem::ExpectedBool),
        (ColumnType::String, J::String(s)) => Value::String(s.clone()),
        (ColumnType::Bytes, J::String(s)) => {
            Value::Bytes(base64::decode(s).map_err(JsonProblem::BadBase64)?)
        }
        (ColumnType::Timestamp, J::String(s)) => {
            Value::Timestamp(time::parse_rfc3339(s).map_err(JsonProblem::BadTimestamp)?)
        }
        (ColumnType::String | ColumnType::Bytes | ColumnType::Timestamp, _) => {
            return Err(JsonProblem::ExpectedString)
        }
        (ColumnType::Json, json) => Value::Json(json.clone()),
    })
}

/// Reads a JSON object of column values. Unknown columns pass through by
/// name, so the engine's validation reports them.
pub fn named_values_from_json(
    table: &Table,
    json: &serde_json::Value,
) -> Result<NamedValues, FeedError> {
    let object = json.as_object().ok_or_else(|| FeedError::NotAnObject {
        table: table.name().to_owned(),
    })?;
    object
        .iter()
        .map(|(name, json)| {
            let value = match table.column_index(name) {
                Some(index) => {
                    value_from_json(json, &table.columns()[index]).map_err(|problem| {
                        FeedError::InvalidValue {
                            table: table.name().to_owned(),
                            column: name.clone(),
                            problem,
                        }
                    })?
                }
                // The engine rejects it with UnknownColumn, naming it.
                None => Value::Null,
            };
            Ok((name.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tidefeed_engine::{Column, ColumnType, TableSchema};

    use super::*;

    fn column(ty: ColumnType) -> Column {
        Column {
            name: "c".into(),
            ty,
            nullable: true,
        }
    }

    #[test]
    fn every_type_round_trips_through_json() {
        let cases = [
            (ColumnType::Int64, Value::Int64(i64::MIN), json!(i64::MIN)),
            (ColumnType::Float64, Value::Float64(2.5), json!(2.5)),
            (
                ColumnType::Float64,
                Value::Float64(f64::NEG_INFINITY),
                json!("-Infinity"),
            ),
            (ColumnType::Bool, Value::Bool(true), json!(true)),
            (
                ColumnType::String,
                Value::String("é\"".into()),
                json!("é\""),
            ),
            (
                ColumnType::Bytes,
                Value::Bytes(vec![0, 255, 7]),
                json!("AP8H"),
            ),
            (
                ColumnType::Timestamp,
                Value::Timestamp(1_795_514_400_123_456),
                json!("2026-11-24T10:00:00.123456Z"),
            ),
            (
                ColumnType::Json,
                Value::Json(json!({"a": [1, null]})),
                json!({"a": [1, null]}),
            ),
            (ColumnType::Int64, Value::Null, json!(null)),
        ];
        for (ty, value, expected) in cases {
            let encoded = serde_json::to_value(JsonValue(&value)).unwrap();
            assert_eq!(encoded, expected, "{ty}");
            assert_eq!(
                value_from_json(&encoded, &column(ty)).unwrap(),
                value,
                "{ty}"
            );
        }
        let nan = serde_json::to_value(JsonValue(&Value::Float64(f64::NAN))).unwrap();
        assert!(
            matches!(value_from_json(&nan, &column(ColumnType::Float64)), Ok(Value::Float64(f)) if f.is_nan())
        );
    }

    #[test]
    fn null_is_sql_null_for_every_type_and_json_null_writes_as_null() {
        for ty in [
            ColumnType::Int64,
            ColumnType::Float64,
            ColumnType::Bool,
            ColumnType::String,
            ColumnType::Bytes,
            ColumnType::Timestamp,
            ColumnType::Json,
        ] {
            assert_eq!(
                value_from_json(&json!(null), &column(ty)),
                Ok(Value::Null),
                "{ty}"
            );
        }
        // A JSON-null value (the engine treats it as NULL) is written as
        // NULL is, so it reads back as NULL.
        let written = serde_json::to_value(JsonValue(&Value::Json(json!(null)))).unwrap();
        assert_eq!(written, json!(null));
        assert_eq!(
            value_from_json(&written, &column(ColumnType::Json)),
            Ok(Value::Null)
        );
        // Nested nulls are JSON.
        assert_eq!(
            value_from_json(&json!([null]), &column(ColumnType::Json)),
            Ok(Value::Json(json!([null])))
        );
    }

    #[test]
    fn a_timestamp_without_an_rfc_3339_form_does_not_serialise() {
        for micros in [time::MIN_MICROS - 1, time::MAX_MICROS + 1] {
            let err = serde_json::to_string(&JsonValue(&Value::Timestamp(micros))).unwrap_err();
            assert!(err.to_string().contains("0000-9999"), "{err}");
        }
        assert_eq!(
            serde_json::to_string(&JsonValue(&Value::Timestamp(time::MAX_MICROS))).unwrap(),
            r#""9999-12-31T23:59:59.999999Z""#
        );
    }

    #[test]
    fn mismatched_json_is_rejected_with_the_reason() {
        let cases = [
            (ColumnType::Int64, json!(1.5), JsonProblem::ExpectedInteger),
            (
                ColumnType::Int64,
                json!(u64::MAX),
                JsonProblem::ExpectedInteger,
            ),
            (ColumnType::Int64, json!("1"), JsonProblem::ExpectedInteger),
            (
                ColumnType::Float64,
                json!("fast"),
                JsonProblem::ExpectedNumber,
            ),
            (ColumnType::Bool, json!(1), JsonProblem::ExpectedBool),
            (ColumnType::String, json!(1), JsonProblem::ExpectedString),
        ];
        for (ty, json, problem) in cases {
            assert_eq!(
                value_from_json(&json, &column(ty)),
                Err(problem),
                "{ty} {json}"
            );
        }
        for bad in ["***", "AP8", "AP9=", "AP8=\n"] {
            assert!(
                matches!(
                    value_from_json(&json!(bad), &column(ColumnType::Bytes)),
                    Err(JsonProblem::BadBase64(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            value_from_json(&json!("yesterday"), &column(ColumnType::Timestamp)),
            Err(JsonProblem::BadTimestamp(_))
        ));
    }

    #[test]
    fn row_objects_name_the_offending_column_and_keep_column_order() {
        let table = TableSchema {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "z".into(),
                    ty: ColumnType::Int64,
                    nullable: false,
                },
                Column {
                    name: "a".into(),
                    ty: ColumnType::String,
                    nullable: true,
                },
            ],
            primary_key: vec!["z".into()],
        };
        let dir = tempfile::tempdir().unwrap();
        let engine =
            tidefeed_engine::Engine::open(tidefeed_engine::EngineOptions::new(dir.path())).unwrap();
        engine.create_table(table).unwrap();
        let table = engine.table("t").unwrap();
        let err = named_values_from_json(&table, &json!({"z": "x"})).unwrap_err();
        assert!(
            matches!(&err, FeedError::InvalidValue { column, .. } if column == "z"),
            "{err}"
        );
        assert!(matches!(
            named_values_from_json(&table, &json!([1])),
            Err(FeedError::NotAnObject { .. })
        ));
        let row = table
            .full_row(named_values_from_json(&table, &json!({"a": "s", "z": 1})).unwrap())
            .unwrap();
        assert_eq!(
            serde_json::to_string(&JsonRow {
                table: &table,
                row: &row
            })
            .unwrap(),
            r#"{"z":1,"a":"s"}"#
        );
        engine.close().unwrap();
    }
}
