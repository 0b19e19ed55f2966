//! Tables, columns and typed values (DESIGN.md section 3).
//!
//! A [`TableSchema`] is what a client declares; [`Table`] is the validated,
//! catalogued form with a stable [`TableId`] and precomputed column lookups.
//! Rows enter as named values ([`NamedValues`]) and are validated against the
//! table into a dense [`Row`] in column order.

mod table;
mod value;

pub use table::{
    Column, ColumnType, Table, TableId, TableSchema, MAX_COLUMNS, MAX_JSON_DEPTH,
    MAX_TIMESTAMP_MICROS, MIN_TIMESTAMP_MICROS,
};
pub use value::{NamedValues, Row, Value};
