//! Primary keys in URLs (DESIGN.md section 9).
//!
//! A one-column key is the value itself, typed by its column: `7` for an
//! int64, `alice` for a string, base64 for bytes, RFC 3339 for a
//! timestamp, `true` for a bool, a number (or `NaN`, `Infinity`,
//! `-Infinity`) for a float64. A composite key is the JSON array of its
//! values in key order. Either is percent-encoded in the URL; axum decodes
//! it before it gets here. The JSON forms of values are the feed's
//! ([`tidefeed_feed::json`]), so a key reads the same in a URL, a row and
//! an event.

use serde_json::Value as Json;
use tidefeed_engine::{Column, ColumnType, NamedValues, Table, Value};
use tidefeed_feed::json::{value_from_json, JsonValue};

use crate::error::ApiError;

/// Refuses a row whose one-column key could not be named in a URL path:
/// an empty string or empty bytes (an empty path segment), or `.` and
/// `..`, which URL clients resolve as dot-segments before sending. Such a
/// row could be written (by a batch) but never read, patched or deleted
/// by path. Composite keys are JSON arrays in paths, never empty.
pub fn check_addressable(table: &Table, values: &NamedValues) -> Result<(), ApiError> {
    let [column] = table.key_columns() else {
        return Ok(());
    };
    let name = &table.columns()[*column].name;
    let unaddressable = values.iter().any(|(n, value)| {
        n == name
            && match value {
                Value::String(s) => s.is_empty() || s == "." || s == "..",
                Value::Bytes(b) => b.is_empty(),
                _ => false,
            }
    });
    if unaddressable {
        return Err(ApiError::BadKey(format!(
            "key column {name:?}: an empty value, \".\" or \"..\" cannot be named in a URL path, so a row with it could never be read, patched or deleted; use another key"
        )));
    }
    Ok(())
}

/// Parses a full key for `table`.
pub fn parse_key(table: &Table, text: &str) -> Result<Vec<Value>, ApiError> {
    let key = parse(table, text, false)?;
    table.check_key(&key)?;
    Ok(key)
}

/// Parses a key or a prefix of it (leading key columns), as range bounds
/// take. A prefix of a composite key is a shorter JSON array.
pub fn parse_key_prefix(table: &Table, text: &str) -> Result<Vec<Value>, ApiError> {
    let key = parse(table, text, true)?;
    table.check_key_prefix(&key)?;
    Ok(key)
}

fn key_columns(table: &Table) -> impl Iterator<Item = &Column> {
    table.key_columns().iter().map(|&i| &table.columns()[i])
}

fn parse(table: &Table, text: &str, prefix: bool) -> Result<Vec<Value>, ApiError> {
    let columns: Vec<&Column> = key_columns(table).collect();
    if let [column] = columns.as_slice() {
        return Ok(vec![one_column(column, text)?]);
    }
    let items = match serde_json::from_str::<Json>(text) {
        Ok(Json::Array(items)) => items,
        _ => {
            return Err(ApiError::BadKey(format!(
                "table {:?} has a composite key ({}); give it as a JSON array of {} values",
                table.name(),
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                columns.len()
            )))
        }
    };
    let fits = if prefix {
        (1..=columns.len()).contains(&items.len())
    } else {
        items.len() == columns.len()
    };
    if !fits {
        return Err(ApiError::BadKey(format!(
            "table {:?} has {} key columns, the key gives {} values",
            table.name(),
            columns.len(),
            items.len()
        )));
    }
    items
        .iter()
        .zip(&columns)
        .map(|(item, column)| {
            if item.is_null() {
                return Err(ApiError::BadKey(format!(
                    "key column {:?} cannot be null",
                    column.name
                )));
            }
            value_from_json(item, column).map_err(|problem| {
                ApiError::BadKey(format!("key column {:?}: {problem}", column.name))
            })
        })
        .collect()
}

/// A one-column key's text, read by its column's type.
fn one_column(column: &Column, text: &str) -> Result<Value, ApiError> {
    let bad = |what: &str| ApiError::BadKey(format!("key column {:?}: {what}", column.name));
    let json = match column.ty {
        ColumnType::Int64 => match text.parse::<i64>() {
            Ok(n) => Json::from(n),
            Err(_) => return Err(bad(&format!("{text:?} is not an int64"))),
        },
        ColumnType::Float64 => match text {
            "NaN" | "Infinity" | "-Infinity" => Json::String(text.to_owned()),
            _ => match serde_json::from_str::<Json>(text) {
                Ok(number @ Json::Number(_)) => number,
                _ => return Err(bad(&format!("{text:?} is not a number"))),
            },
        },
        ColumnType::Bool => match text {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => return Err(bad(&format!("{text:?} is not true or false"))),
        },
        ColumnType::String | ColumnType::Bytes | ColumnType::Timestamp | ColumnType::Json => {
            Json::String(text.to_owned())
        }
    };
    value_from_json(&json, column).map_err(|problem| bad(&problem.to_string()))
}

/// The URL form of a key (before percent-encoding): what [`parse_key`]
/// reads back, and what range pages return as `next`.
pub fn format_key(table: &Table, key: &[Value]) -> String {
    if key.len() == 1 && table.key_columns().len() == 1 {
        return match serde_json::to_value(JsonValue(&key[0])) {
            Ok(Json::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(_) => String::new(),
        };
    }
    let items: Vec<JsonValue<'_>> = key.iter().map(JsonValue).collect();
    serde_json::to_string(&items).expect("key values serialise")
}

#[cfg(test)]
mod tests {
    use tidefeed_engine::{Engine, EngineOptions, TableSchema};

    use super::*;

    fn tables() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
        let column = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: false,
        };
        for (name, ty) in [
            ("i", ColumnType::Int64),
            ("f", ColumnType::Float64),
            ("s", ColumnType::String),
            ("b", ColumnType::Bytes),
            ("t", ColumnType::Timestamp),
            ("o", ColumnType::Bool),
        ] {
            engine
                .create_table(TableSchema {
                    name: format!("one_{name}"),
                    columns: vec![column("k", ty)],
                    primary_key: vec!["k".into()],
                })
                .unwrap();
        }
        engine
            .create_table(TableSchema {
                name: "pair".into(),
                columns: vec![
                    column("a", ColumnType::String),
                    column("b", ColumnType::Int64),
                ],
                primary_key: vec!["a".into(), "b".into()],
            })
            .unwrap();
        (dir, engine)
    }

    #[test]
    fn one_column_keys_are_typed_by_their_column_and_round_trip() {
        let (_dir, engine) = tables();
        let cases = [
            ("one_i", "-42", Value::Int64(-42)),
            ("one_f", "2.5", Value::Float64(2.5)),
            ("one_f", "Infinity", Value::Float64(f64::INFINITY)),
            ("one_s", "a/b c", Value::String("a/b c".into())),
            ("one_s", "[1]", Value::String("[1]".into())),
            ("one_b", "AP8H", Value::Bytes(vec![0, 255, 7])),
            (
                "one_t",
                "2026-11-24T10:00:00.123456Z",
                Value::Timestamp(1_795_514_400_123_456),
            ),
            ("one_o", "true", Value::Bool(true)),
        ];
        for (table, text, value) in cases {
            let table = engine.table(table).unwrap();
            let key = parse_key(&table, text).unwrap();
            assert_eq!(key, vec![value], "{text}");
            assert_eq!(format_key(&table, &key), text);
        }
    }

    #[test]
    fn composite_keys_are_json_arrays_and_round_trip() {
        let (_dir, engine) = tables();
        let pair = engine.table("pair").unwrap();
        let key = parse_key(&pair, r#"["x",7]"#).unwrap();
        assert_eq!(key, vec![Value::String("x".into()), Value::Int64(7)]);
        assert_eq!(format_key(&pair, &key), r#"["x",7]"#);
        assert_eq!(parse_key_prefix(&pair, r#"["x"]"#).unwrap().len(), 1);
    }

    #[test]
    fn malformed_keys_are_bad_keys() {
        let (_dir, engine) = tables();
        let one_i = engine.table("one_i").unwrap();
        let pair = engine.table("pair").unwrap();
        let one_f = engine.table("one_f").unwrap();
        for (table, text) in [
            (&one_i, "seven"),
            (&one_i, "1.5"),
            (&one_i, "99999999999999999999"),
            (&one_i, ""),
            (&pair, "x"),
            (&pair, r#"["x"]"#),
            (&pair, r#"["x",7,8]"#),
            (&pair, r#"[7,"x"]"#),
            (&pair, r#"["x",null]"#),
            (&pair, r#"{"a":"x","b":7}"#),
            (&one_f, "fast"),
        ] {
            assert!(
                matches!(parse_key(table, text), Err(ApiError::BadKey(_))),
                "{} {text:?}",
                table.name()
            );
        }
        assert!(matches!(
            parse_key(&one_f, "NaN"),
            Err(ApiError::Engine(tidefeed_engine::Error::InvalidRow { .. }))
        ));
    }
}
