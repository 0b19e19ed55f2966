//! Compact binary row images.
//!
//! ```text
//! u8      format version (1)
//! varint  column count n
//! [u8]    null bitmap, ceil(n / 8) bytes, bit i set = column i is null
//! ...     each non-null column in order:
//!           int64, timestamp  zigzag varint
//!           float64           8 bytes little-endian (bit pattern kept)
//!           bool              one byte, 0 or 1
//!           string, bytes     varint length + bytes
//!           json              varint length + JSON text
//! ```
//!
//! The column count is stored so that a row written before nullable columns
//! are appended to a table still decodes (missing trailing columns are null).

use crate::codec::varint::{self, DecodeResult, Reader};
use crate::schema::{Column, ColumnType, Row, Value};

pub(crate) const ROW_FORMAT_VERSION: u8 = 1;

pub(crate) fn encode(row: &Row) -> Vec<u8> {
    let values = row.values();
    let mut out = Vec::with_capacity(2 + values.len().div_ceil(8) + values.len() * 8);
    out.push(ROW_FORMAT_VERSION);
    varint::put_u64(&mut out, values.len() as u64);
    let bitmap_at = out.len();
    out.resize(bitmap_at + values.len().div_ceil(8), 0);
    for (i, value) in values.iter().enumerate() {
        match value {
            Value::Null => out[bitmap_at + i / 8] |= 1 << (i % 8),
            Value::Int64(v) | Value::Timestamp(v) => varint::put_u64(&mut out, varint::zigzag(*v)),
            Value::Float64(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::String(s) => put_bytes(&mut out, s.as_bytes()),
            Value::Bytes(b) => put_bytes(&mut out, b),
            Value::Json(j) => put_bytes(&mut out, j.to_string().as_bytes()),
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    varint::put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn decode(columns: &[Column], bytes: &[u8]) -> DecodeResult<Row> {
    let mut r = Reader::new(bytes);
    if r.u8("row version")? != ROW_FORMAT_VERSION {
        return Err("unsupported row format version");
    }
    let count = usize::try_from(r.varint("column count")?).map_err(|_| "column count")?;
    if count > columns.len() {
        return Err("row has more columns than its table");
    }
    let bitmap = r.bytes(count.div_ceil(8), "null bitmap")?;
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        if i >= count || bitmap[i / 8] & (1 << (i % 8)) != 0 {
            values.push(Value::Null);
            continue;
        }
        values.push(match column.ty {
            ColumnType::Int64 => Value::Int64(varint::unzigzag(r.varint("int64")?)),
            ColumnType::Timestamp => Value::Timestamp(varint::unzigzag(r.varint("timestamp")?)),
            ColumnType::Float64 => Value::Float64(f64::from_bits(r.u64_le("float64")?)),
            ColumnType::Bool => match r.u8("bool")? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err("bool is not 0 or 1"),
            },
            ColumnType::String => Value::String(
                std::str::from_utf8(r.len_prefixed("string")?)
                    .map_err(|_| "string is not UTF-8")?
                    .to_owned(),
            ),
            ColumnType::Bytes => Value::Bytes(r.len_prefixed("bytes")?.to_vec()),
            ColumnType::Json => Value::Json(
                serde_json::from_slice(r.len_prefixed("json")?)
                    .map_err(|_| "json does not parse")?,
            ),
        });
    }
    if !r.is_empty() {
        return Err("trailing bytes after row");
    }
    Ok(Row::new(values))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn columns() -> Vec<Column> {
        [
            ColumnType::Int64,
            ColumnType::Float64,
            ColumnType::Bool,
            ColumnType::String,
            ColumnType::Bytes,
            ColumnType::Timestamp,
            ColumnType::Json,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, ty)| Column {
            name: format!("c{i}"),
            ty,
            nullable: true,
        })
        .collect()
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z\"\\\\]{0,5}".prop_map(serde_json::Value::from),
            proptest::collection::vec(any::<bool>(), 0..3).prop_map(serde_json::Value::from),
        ]
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(".{0,8}"),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            proptest::option::of(any::<i64>()),
            proptest::option::of(json()),
        )
            .prop_map(|(a, b, c, d, e, f, g)| {
                Row::new(vec![
                    a.map_or(Value::Null, Value::Int64),
                    b.map_or(Value::Null, Value::Float64),
                    c.map_or(Value::Null, Value::Bool),
                    d.map_or(Value::Null, Value::String),
                    e.map_or(Value::Null, Value::Bytes),
                    f.map_or(Value::Null, Value::Timestamp),
                    g.map_or(Value::Null, Value::Json),
                ])
            })
    }

    proptest! {
        #[test]
        fn rows_round_trip(row in row()) {
            let cols = columns();
            prop_assert_eq!(decode(&cols, &encode(&row)).unwrap(), row);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&columns(), &bytes);
        }
    }

    #[test]
    fn rows_written_before_a_column_was_appended_still_decode() {
        let mut cols = columns();
        cols.truncate(2);
        let old = encode(&Row::new(vec![Value::Int64(5), Value::Null]));
        let decoded = decode(&columns(), &old).unwrap();
        assert_eq!(decoded.values()[0], Value::Int64(5));
        assert!(decoded.values()[1..].iter().all(|v| *v == Value::Null));
        assert_eq!(
            decode(&cols, &encode(&decoded)),
            Err("row has more columns than its table")
        );
    }
}
