//! Memcomparable key encoding.
//!
//! An encoded key is the table id (4 bytes, big-endian) followed by each key
//! column's encoding, in primary-key order:
//!
//! | type | encoding |
//! |---|---|
//! | int64, timestamp | 8 bytes big-endian with the sign bit flipped |
//! | float64 | 8 bytes: positive values with the sign bit flipped, negative values with every bit flipped; -0.0 encodes as +0.0; NaN is rejected before encoding |
//! | bool | one byte, 0 or 1 |
//! | string, bytes | each 0x00 as 0x00 0xFF, then the terminator 0x00 0x01 |
//!
//! Architecture invariant: every component is self-delimiting (fixed width,
//! or terminated by a sequence that cannot occur inside it), so no encoded key
//! of a table is a proper prefix of another, and byte-wise order of encoded
//! keys equals lexicographic order of the value tuples.

use crate::codec::varint::{DecodeResult, Reader};
use crate::schema::{ColumnType, Table, TableId, Value};

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// The 4-byte prefix every key of `table` starts with.
pub(crate) fn table_prefix(table: TableId) -> [u8; 4] {
    table.to_be_bytes()
}

/// The table id a key belongs to.
pub(crate) fn table_of(key: &[u8]) -> Option<TableId> {
    Some(TableId::from_be_bytes(key.get(..4)?.try_into().ok()?))
}

fn encode_component(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Int64(v) | Value::Timestamp(v) => {
            out.extend_from_slice(&((*v as u64) ^ (1 << 63)).to_be_bytes())
        }
        Value::Float64(v) => {
            debug_assert!(!v.is_nan(), "NaN keys are rejected by validation");
            let bits = if *v == 0.0 { 0 } else { v.to_bits() };
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::String(s) => encode_escaped(out, s.as_bytes()),
        Value::Bytes(b) => encode_escaped(out, b),
        Value::Null | Value::Json(_) => {
            unreachable!("validation rejects null and json key components")
        }
    }
}

fn encode_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == ESCAPE {
            out.push(ESCAPED_ZERO);
        }
    }
    out.extend_from_slice(&[ESCAPE, TERMINATOR]);
}

/// Encodes validated key values (or a prefix of them, for range bounds).
pub(crate) fn encode(table: TableId, values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + values.len() * 9);
    out.extend_from_slice(&table_prefix(table));
    for value in values {
        encode_component(&mut out, value);
    }
    out
}

fn decode_component(r: &mut Reader<'_>, ty: ColumnType) -> DecodeResult<Value> {
    const WHAT: &str = "key component";
    Ok(match ty {
        ColumnType::Int64 | ColumnType::Timestamp => {
            let raw = u64::from_be_bytes(r.bytes(8, WHAT)?.try_into().expect("8 bytes"));
            let v = (raw ^ (1 << 63)) as i64;
            if ty == ColumnType::Int64 {
                Value::Int64(v)
            } else {
                Value::Timestamp(v)
            }
        }
        ColumnType::Float64 => {
            let raw = u64::from_be_bytes(r.bytes(8, WHAT)?.try_into().expect("8 bytes"));
            let bits = if raw >> 63 == 1 {
                raw & !(1 << 63)
            } else {
                !raw
            };
            let v = f64::from_bits(bits);
            if v.is_nan() {
                return Err("NaN in key");
            }
            Value::Float64(v)
        }
        ColumnType::Bool => match r.u8(WHAT)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            _ => return Err("bool key component is not 0 or 1"),
        },
        ColumnType::String => {
            let bytes = decode_escaped(r)?;
            Value::String(String::from_utf8(bytes).map_err(|_| "string key is not UTF-8")?)
        }
        ColumnType::Bytes => Value::Bytes(decode_escaped(r)?),
        ColumnType::Json => return Err("json cannot be a key type"),
    })
}

fn decode_escaped(r: &mut Reader<'_>) -> DecodeResult<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let b = r.u8("unterminated string key")?;
        if b != ESCAPE {
            out.push(b);
            continue;
        }
        match r.u8("unterminated string key")? {
            ESCAPED_ZERO => out.push(ESCAPE),
            TERMINATOR => return Ok(out),
            _ => return Err("bad escape in string key"),
        }
    }
}

/// Decodes a full key of `table` into its values, in key order.
pub(crate) fn decode(table: &Table, key: &[u8]) -> DecodeResult<Vec<Value>> {
    if table_of(key) != Some(table.id()) {
        return Err("key belongs to another table");
    }
    let mut r = Reader::new(&key[4..]);
    let values = table
        .key_columns()
        .iter()
        .map(|&i| decode_component(&mut r, table.columns()[i].ty))
        .collect::<DecodeResult<Vec<_>>>()?;
    if !r.is_empty() {
        return Err("trailing bytes after key");
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::*;
    use crate::schema::{Column, TableSchema};

    fn table(types: &[ColumnType]) -> Table {
        let columns: Vec<Column> = types
            .iter()
            .enumerate()
            .map(|(i, ty)| Column {
                name: format!("k{i}"),
                ty: *ty,
                nullable: false,
            })
            .collect();
        TableSchema {
            name: "t".into(),
            primary_key: columns.iter().map(|c| c.name.clone()).collect(),
            columns,
        }
        .validate(7)
        .unwrap()
    }

    /// The order the key codec must implement: tuple order, component by
    /// component, with floats by numeric value.
    fn value_cmp(a: &Value, b: &Value) -> Ordering {
        match (a, b) {
            (Value::Int64(a), Value::Int64(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => {
                a.cmp(b)
            }
            (Value::Float64(a), Value::Float64(b)) => a.partial_cmp(b).expect("no NaN"),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            _ => unreachable!("same types only"),
        }
    }

    fn tuple_cmp(a: &[Value], b: &[Value]) -> Ordering {
        a.iter()
            .zip(b)
            .map(|(a, b)| value_cmp(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(a.len().cmp(&b.len()))
    }

    fn value_of(ty: ColumnType) -> BoxedStrategy<Value> {
        match ty {
            ColumnType::Int64 => any::<i64>().prop_map(Value::Int64).boxed(),
            ColumnType::Timestamp => any::<i64>().prop_map(Value::Timestamp).boxed(),
            ColumnType::Float64 => prop_oneof![
                any::<f64>().prop_filter("no NaN", |f| !f.is_nan()),
                Just(0.0),
                Just(-0.0),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::MIN_POSITIVE),
                Just(-f64::MIN_POSITIVE),
            ]
            .prop_map(Value::Float64)
            .boxed(),
            ColumnType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            // Small alphabets with 0x00 and 0xFF make escapes and shared
            // prefixes common.
            ColumnType::String => "[a\\x00b\\u{ff}]{0,6}".prop_map(Value::String).boxed(),
            ColumnType::Bytes => proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(0xff), any::<u8>()],
                0..6,
            )
            .prop_map(Value::Bytes)
            .boxed(),
            ColumnType::Json => unreachable!(),
        }
    }

    const KEY_TYPES: [ColumnType; 6] = [
        ColumnType::Int64,
        ColumnType::Float64,
        ColumnType::Bool,
        ColumnType::String,
        ColumnType::Bytes,
        ColumnType::Timestamp,
    ];

    fn typed_pair() -> impl Strategy<Value = (Vec<ColumnType>, Vec<Value>, Vec<Value>)> {
        proptest::collection::vec(proptest::sample::select(KEY_TYPES.to_vec()), 1..4).prop_flat_map(
            |types| {
                let a: Vec<_> = types.iter().map(|t| value_of(*t)).collect();
                let b: Vec<_> = types.iter().map(|t| value_of(*t)).collect();
                (Just(types), a, b)
            },
        )
    }

    fn normalized(values: &[Value]) -> Vec<Value> {
        values
            .iter()
            .map(|v| match v {
                Value::Float64(f) if *f == 0.0 => Value::Float64(0.0),
                v => v.clone(),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn byte_order_equals_value_order((types, a, b) in typed_pair()) {
            let ka = encode(7, &a);
            let kb = encode(7, &b);
            prop_assert_eq!(ka.cmp(&kb), tuple_cmp(&a, &b));
            let _ = types;
        }

        #[test]
        fn keys_round_trip((types, a, _b) in typed_pair()) {
            let t = table(&types);
            prop_assert_eq!(decode(&t, &encode(7, &a)).unwrap(), normalized(&a));
        }

        #[test]
        fn no_key_is_a_prefix_of_another((_types, a, b) in typed_pair()) {
            let ka = encode(7, &a);
            let kb = encode(7, &b);
            if ka != kb {
                prop_assert!(!kb.starts_with(&ka) && !ka.starts_with(&kb));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let t = table(&[ColumnType::String, ColumnType::Float64]);
            let mut key = table_prefix(7).to_vec();
            key.extend_from_slice(&bytes);
            let _ = decode(&t, &key);
        }
    }

    #[test]
    fn negative_and_positive_zero_are_one_key() {
        assert_eq!(
            encode(1, &[Value::Float64(-0.0)]),
            encode(1, &[Value::Float64(0.0)])
        );
        assert!(
            encode(1, &[Value::Float64(-f64::MIN_POSITIVE)]) < encode(1, &[Value::Float64(0.0)])
        );
    }

    #[test]
    fn tables_do_not_interleave() {
        let high = encode(1, &[Value::Int64(i64::MAX)]);
        let low = encode(2, &[Value::Int64(i64::MIN)]);
        assert!(high < low);
        assert_eq!(table_of(&low), Some(2));
    }
}
