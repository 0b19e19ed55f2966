use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, RowProblem, SchemaProblem};
use crate::schema::{NamedValues, Row, Value};

/// The stable numeric id of a table; it prefixes every key of the table.
pub type TableId = u32;

/// The most columns a table may declare.
pub const MAX_COLUMNS: usize = 1024;

/// The deepest nesting a `json` value may have. Events wrap a value a few
/// levels deeper still, and common JSON parsers (serde_json among them)
/// refuse documents nested past 128 levels: what is accepted must stay
/// readable by every consumer, forever.
pub const MAX_JSON_DEPTH: usize = 64;

/// Timestamps are RFC 3339 on the wire, which has four-digit years:
/// 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z, in microseconds.
pub const MIN_TIMESTAMP_MICROS: i64 = -62_167_219_200_000_000;
pub const MAX_TIMESTAMP_MICROS: i64 = 253_402_300_799_999_999;

/// The nesting depth of a JSON value (a scalar is 0), computed without
/// recursion so that no value can exhaust the stack.
fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            serde_json::Value::Array(items) => {
                stack.extend(items.iter().map(|v| (v, depth + 1)));
                deepest = deepest.max(depth + 1);
            }
            serde_json::Value::Object(fields) => {
                stack.extend(fields.values().map(|v| (v, depth + 1)));
                deepest = deepest.max(depth + 1);
            }
            _ => {}
        }
    }
    deepest
}

/// The type of a column. JSON names: `int64`, `float64`, `bool`, `string`,
/// `bytes`, `timestamp`, `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Int64,
    Float64,
    Bool,
    String,
    Bytes,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    Json,
}

impl ColumnType {
    /// Whether values of this type may be part of a primary key.
    pub fn is_keyable(self) -> bool {
        !matches!(self, ColumnType::Json)
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Bool => "bool",
            ColumnType::String => "string",
            ColumnType::Bytes => "bytes",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Json => "json",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    #[serde(default)]
    pub nullable: bool,
}

/// A table as a client declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
}

/// A validated, catalogued table.
///
/// Architecture invariant: a `Table` is immutable once created; its id and
/// column order never change, so encoded keys and rows stay decodable.
#[derive(Debug)]
pub struct Table {
    id: TableId,
    schema: TableSchema,
    /// Column index of each primary key column, in key order.
    key_columns: Vec<usize>,
    by_name: HashMap<String, usize>,
}

fn is_identifier(name: &str, first_may_be_underscore: bool) -> bool {
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    bytes.len() <= 63
        && (first.is_ascii_lowercase() || (first_may_be_underscore && first == b'_'))
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

impl TableSchema {
    /// Checks the schema and returns the catalogued form under `id`.
    pub(crate) fn validate(self, id: TableId) -> Result<Table> {
        let problem = |problem| Error::InvalidSchema {
            table: self.name.clone(),
            problem,
        };
        if !is_identifier(&self.name, false) {
            return Err(problem(SchemaProblem::BadTableName));
        }
        if self.columns.is_empty() {
            return Err(problem(SchemaProblem::NoColumns));
        }
        if self.columns.len() > MAX_COLUMNS {
            return Err(problem(SchemaProblem::TooManyColumns {
                limit: MAX_COLUMNS,
            }));
        }
        let mut by_name = HashMap::with_capacity(self.columns.len());
        for (index, column) in self.columns.iter().enumerate() {
            if !is_identifier(&column.name, true) {
                return Err(problem(SchemaProblem::BadColumnName(column.name.clone())));
            }
            if by_name.insert(column.name.clone(), index).is_some() {
                return Err(problem(SchemaProblem::DuplicateColumn(column.name.clone())));
            }
        }
        if self.primary_key.is_empty() {
            return Err(problem(SchemaProblem::EmptyPrimaryKey));
        }
        let mut key_columns = Vec::with_capacity(self.primary_key.len());
        for name in &self.primary_key {
            let Some(&index) = by_name.get(name) else {
                return Err(problem(SchemaProblem::UnknownKeyColumn(name.clone())));
            };
            if key_columns.contains(&index) {
                return Err(problem(SchemaProblem::DuplicateKeyColumn(name.clone())));
            }
            let column = &self.columns[index];
            if column.nullable {
                return Err(problem(SchemaProblem::NullableKeyColumn(name.clone())));
            }
            if !column.ty.is_keyable() {
                return Err(problem(SchemaProblem::UnkeyableType {
                    column: name.clone(),
                    ty: column.ty,
                }));
            }
            key_columns.push(index);
        }
        Ok(Table {
            id,
            schema: self,
            key_columns,
            by_name,
        })
    }
}

impl Table {
    pub fn id(&self) -> TableId {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.schema.name
    }

    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    pub fn columns(&self) -> &[Column] {
        &self.schema.columns
    }

    /// Column indexes of the primary key, in key order.
    pub fn key_columns(&self) -> &[usize] {
        &self.key_columns
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn reject(&self, column: &str, problem: RowProblem) -> Error {
        Error::invalid_row(self.name(), column, problem)
    }

    fn check_value(&self, index: usize, value: &Value) -> Result<()> {
        let column = &self.schema.columns[index];
        match value {
            Value::Null if column.nullable => Ok(()),
            Value::Null => Err(self.reject(&column.name, RowProblem::Null)),
            value if value.fits(column.ty) => match value {
                Value::Float64(f) if f.is_nan() && self.key_columns.contains(&index) => {
                    Err(self.reject(&column.name, RowProblem::NaNKey))
                }
                Value::Timestamp(t)
                    if !(MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS).contains(t) =>
                {
                    Err(self.reject(&column.name, RowProblem::TimestampOutOfRange))
                }
                Value::Json(json) => match json_depth(json) {
                    depth if depth > MAX_JSON_DEPTH => Err(self.reject(
                        &column.name,
                        RowProblem::TooDeep {
                            depth,
                            limit: MAX_JSON_DEPTH,
                        },
                    )),
                    _ => Ok(()),
                },
                _ => Ok(()),
            },
            value => Err(self.reject(
                &column.name,
                RowProblem::TypeMismatch {
                    expected: column.ty,
                    found: value.type_name(),
                },
            )),
        }
    }

    /// Places named values into column order, checking names, types and
    /// duplicates. Columns not named stay `None`.
    fn place(&self, values: NamedValues) -> Result<Vec<Option<Value>>> {
        let mut slots: Vec<Option<Value>> = vec![None; self.schema.columns.len()];
        for (name, value) in values {
            let Some(index) = self.column_index(&name) else {
                return Err(self.reject(&name, RowProblem::UnknownColumn));
            };
            // JSON `null` in a json column is SQL NULL: one meaning for
            // `null`, so a row read back (or an event) round-trips.
            let value = match value {
                Value::Json(serde_json::Value::Null) => Value::Null,
                value => value,
            };
            self.check_value(index, &value)?;
            // The key codec maps -0.0 and +0.0 to one key; storing the key
            // column as +0.0 keeps the row consistent with its decoded key.
            let value = match value {
                Value::Float64(f) if f == 0.0 && self.key_columns.contains(&index) => {
                    Value::Float64(0.0)
                }
                value => value,
            };
            if slots[index].replace(value).is_some() {
                return Err(self.reject(&name, RowProblem::Duplicate));
            }
        }
        Ok(slots)
    }

    /// Validates a full row: every non-nullable column must be present;
    /// absent nullable columns become null.
    pub fn full_row(&self, values: NamedValues) -> Result<Row> {
        let slots = self.place(values)?;
        let mut row = Vec::with_capacity(slots.len());
        for (index, slot) in slots.into_iter().enumerate() {
            match slot {
                Some(value) => row.push(value),
                None if self.schema.columns[index].nullable => row.push(Value::Null),
                None => {
                    return Err(self.reject(&self.schema.columns[index].name, RowProblem::Missing))
                }
            }
        }
        Ok(Row::new(row))
    }

    /// Validates key values given in key order.
    pub fn check_key(&self, key: &[Value]) -> Result<()> {
        self.check_key_prefix(key)?;
        if key.len() < self.key_columns.len() {
            let missing = &self.schema.columns[self.key_columns[key.len()]].name;
            return Err(self.reject(missing, RowProblem::Missing));
        }
        Ok(())
    }

    /// Validates leading key values (a prefix of the key), as range bounds use.
    pub fn check_key_prefix(&self, key: &[Value]) -> Result<()> {
        if key.len() > self.key_columns.len() {
            return Err(Error::invalid_row(
                self.name(),
                &format!("<key component {}>", key.len()),
                RowProblem::UnknownColumn,
            ));
        }
        for (value, &index) in key.iter().zip(&self.key_columns) {
            self.check_value(index, value)?;
        }
        Ok(())
    }

    /// Validates a key given by name: exactly the primary key columns.
    /// Returns the key values in key order.
    pub fn key_values(&self, values: NamedValues) -> Result<Vec<Value>> {
        let slots = self.place(values)?;
        for (index, slot) in slots.iter().enumerate() {
            if slot.is_some() && !self.key_columns.contains(&index) {
                return Err(
                    self.reject(&self.schema.columns[index].name, RowProblem::NotAKeyColumn)
                );
            }
        }
        let mut slots = slots;
        self.key_columns
            .iter()
            .map(|&index| {
                slots[index].take().ok_or_else(|| {
                    self.reject(&self.schema.columns[index].name, RowProblem::Missing)
                })
            })
            .collect()
    }

    /// Validates the columns of a patch. Key columns may be named only with
    /// their current value (checked against `key` at merge time).
    pub fn patch_values(&self, values: NamedValues) -> Result<Vec<Option<Value>>> {
        self.place(values)
    }

    /// Merges a validated patch into an existing row. Fails if the patch
    /// would change a key column.
    pub(crate) fn merge_patch(&self, current: &Row, patch: &[Option<Value>]) -> Result<Row> {
        let mut merged = current.values().to_vec();
        for (index, value) in patch.iter().enumerate() {
            if let Some(value) = value {
                if self.key_columns.contains(&index) && !value.same_key_value(&merged[index]) {
                    return Err(
                        self.reject(&self.schema.columns[index].name, RowProblem::KeyChange)
                    );
                }
                merged[index] = value.clone();
            }
        }
        Ok(Row::new(merged))
    }

    /// The key values of a full row, in key order.
    pub fn row_key(&self, row: &Row) -> Vec<Value> {
        self.key_columns
            .iter()
            .map(|&i| row.values()[i].clone())
            .collect()
    }

    /// Names the key values, for display and wire formats.
    pub fn named_key<'a>(&'a self, key: &'a [Value]) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.key_columns
            .iter()
            .zip(key)
            .map(|(&i, v)| (self.schema.columns[i].name.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(columns: &[(&str, ColumnType, bool)], key: &[&str]) -> TableSchema {
        TableSchema {
            name: "users".into(),
            columns: columns
                .iter()
                .map(|(n, ty, nullable)| Column {
                    name: (*n).into(),
                    ty: *ty,
                    nullable: *nullable,
                })
                .collect(),
            primary_key: key.iter().map(|s| (*s).into()).collect(),
        }
    }

    fn problem(err: Error) -> SchemaProblem {
        match err {
            Error::InvalidSchema { problem, .. } => problem,
            other => panic!("expected InvalidSchema, got {other:?}"),
        }
    }

    #[test]
    fn schema_errors_name_the_column() {
        use ColumnType::*;
        let cases: Vec<(TableSchema, SchemaProblem)> = vec![
            (
                schema(&[("id", Int64, true)], &["id"]),
                SchemaProblem::NullableKeyColumn("id".into()),
            ),
            (
                schema(&[("id", Int64, false)], &["nope"]),
                SchemaProblem::UnknownKeyColumn("nope".into()),
            ),
            (
                schema(&[("id", Int64, false), ("id", Bool, false)], &["id"]),
                SchemaProblem::DuplicateColumn("id".into()),
            ),
            (
                schema(&[("doc", Json, false)], &["doc"]),
                SchemaProblem::UnkeyableType {
                    column: "doc".into(),
                    ty: Json,
                },
            ),
            (
                schema(&[("Bad", Int64, false)], &["Bad"]),
                SchemaProblem::BadColumnName("Bad".into()),
            ),
            (
                schema(&[("id", Int64, false)], &[]),
                SchemaProblem::EmptyPrimaryKey,
            ),
        ];
        for (schema, expected) in cases {
            assert_eq!(problem(schema.validate(1).unwrap_err()), expected);
        }
        let mut bad_name = schema(&[("id", Int64, false)], &["id"]);
        bad_name.name = "9users".into();
        assert_eq!(
            problem(bad_name.validate(1).unwrap_err()),
            SchemaProblem::BadTableName
        );
    }

    #[test]
    fn rows_are_checked_column_by_column() {
        use ColumnType::*;
        let table = schema(
            &[
                ("id", Int64, false),
                ("score", Float64, false),
                ("email", String, true),
            ],
            &["id"],
        )
        .validate(1)
        .unwrap();
        let row = table
            .full_row(vec![
                ("id".into(), Value::Int64(1)),
                ("score".into(), Value::Float64(2.5)),
            ])
            .unwrap();
        assert_eq!(row.values()[2], Value::Null);

        let err = table
            .full_row(vec![("id".into(), Value::Int64(1))])
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRow { column, problem: RowProblem::Missing, .. } if column == "score"),
            "{err}"
        );
        let err = table
            .full_row(vec![
                ("id".into(), Value::Int64(1)),
                ("score".into(), Value::String("x".into())),
            ])
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRow { column, problem: RowProblem::TypeMismatch { .. }, .. } if column == "score")
        );
        let err = table
            .full_row(vec![
                ("id".into(), Value::Int64(1)),
                ("nick".into(), Value::Null),
            ])
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRow { column, problem: RowProblem::UnknownColumn, .. } if column == "nick")
        );
        let err = table
            .key_values(vec![("score".into(), Value::Float64(1.0))])
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRow { column, problem: RowProblem::NotAKeyColumn, .. } if column == "score")
        );
    }

    #[test]
    fn nan_is_rejected_in_keys_only() {
        use ColumnType::*;
        let table = schema(&[("k", Float64, false), ("v", Float64, false)], &["k"])
            .validate(1)
            .unwrap();
        let err = table
            .full_row(vec![
                ("k".into(), Value::Float64(f64::NAN)),
                ("v".into(), Value::Float64(1.0)),
            ])
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRow { column, problem: RowProblem::NaNKey, .. } if column == "k")
        );
        table
            .full_row(vec![
                ("k".into(), Value::Float64(1.0)),
                ("v".into(), Value::Float64(f64::NAN)),
            ])
            .unwrap();
    }
}
