//! Byte encodings of keys and rows.
//!
//! Keys are memcomparable: comparing encoded keys byte-wise gives the same
//! order as comparing the key values ([`key`]). Rows are compact and carry
//! a format version ([`row`]).

pub(crate) mod key;
pub(crate) mod row;
pub(crate) mod varint;
