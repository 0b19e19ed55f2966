//! Query parameter values, parsed with errors that name the parameter.
//! Query structs take every value as a string so that a bad value is
//! reported here, in words, rather than by a deserializer.

use std::collections::{BTreeSet, HashSet};

use tidefeed_engine::Seq;
use tidefeed_feed::{EventOp, Filter, Format};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::{valid_table_name, AppState};

/// Largest `limit` of a page (rows or changes).
pub const MAX_PAGE: usize = 1000;
/// `limit` when none is given.
pub const DEFAULT_PAGE: usize = 100;

fn bad(message: String) -> ApiError {
    ApiError::BadQuery(message)
}

/// A seq: a non-negative integer.
pub fn seq(name: &str, value: &str) -> Result<Seq, ApiError> {
    value.parse::<Seq>().map_err(|_| {
        bad(format!(
            "{name}={value:?} is not a seq (a non-negative integer)"
        ))
    })
}

pub fn optional_seq(name: &str, value: Option<&str>) -> Result<Option<Seq>, ApiError> {
    value.map(|value| seq(name, value)).transpose()
}

/// `since`: a seq or `now`; absent means now (`None`).
pub fn since(value: Option<&str>) -> Result<Option<Seq>, ApiError> {
    match value {
        None | Some("now") => Ok(None),
        Some(value) => seq("since", value)
            .map(Some)
            .map_err(|_| bad(format!("since={value:?} must be a seq or \"now\""))),
    }
}

/// `limit`: 1 to [`MAX_PAGE`], default [`DEFAULT_PAGE`].
pub fn limit(value: Option<&str>) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(DEFAULT_PAGE);
    };
    match value.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        _ => Err(bad(format!(
            "limit={value:?} must be an integer from 1 to {MAX_PAGE}"
        ))),
    }
}

/// `true` or `false`; absent is false.
pub fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(bad(format!("{name}={other:?} must be true or false"))),
    }
}

/// `format`: `native` (default) or `debezium`.
pub fn format(value: Option<&str>) -> Result<Format, ApiError> {
    match value {
        None => Ok(Format::Native),
        Some(value) => value
            .parse()
            .map_err(|message: String| bad(format!("format: {message}"))),
    }
}

/// `tables=a,b` and `ops=insert,update` as a feed filter, with the table
/// names (for the caller's token check). Every named table must exist;
/// the token may only use tables it is allowed.
pub fn filter(
    state: &AppState,
    principal: &Principal,
    tables: Option<&str>,
    ops: Option<&str>,
) -> Result<Filter, ApiError> {
    let mut names = BTreeSet::new();
    for name in list(tables) {
        if !valid_table_name(name) {
            return Err(bad(format!(
                "tables: {name:?} is not a table name ([a-z][a-z0-9_]{{0,62}})"
            )));
        }
        names.insert(name.to_owned());
    }
    // The token first, so a limited token learns nothing of other tables.
    principal.require_filter(&names)?;
    for name in &names {
        state.table(name)?;
    }
    let mut op_set = HashSet::new();
    for op in list(ops) {
        op_set.insert(match op {
            "insert" => EventOp::Insert,
            "update" => EventOp::Update,
            "delete" => EventOp::Delete,
            other => {
                return Err(bad(format!(
                    "ops: {other:?} is not one of insert, update, delete"
                )))
            }
        });
    }
    Ok(Filter {
        tables: names.into_iter().collect(),
        ops: op_set,
    })
}

fn list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_parsed_or_refused_by_name() {
        assert_eq!(since(None).unwrap(), None);
        assert_eq!(since(Some("now")).unwrap(), None);
        assert_eq!(since(Some("12")).unwrap(), Some(12));
        for value in ["-1", "x", "", "1.0"] {
            let error = since(Some(value)).unwrap_err();
            assert!(error.to_string().contains("since"), "{error}");
        }
        assert_eq!(limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(limit(Some("1000")).unwrap(), 1000);
        for value in ["0", "1001", "ten", "-3"] {
            assert!(limit(Some(value)).is_err(), "{value}");
        }
        assert!(flag("snapshot", Some("true")).unwrap());
        assert!(flag("snapshot", Some("yes")).is_err());
        assert_eq!(format(Some("debezium")).unwrap(), Format::Debezium);
        assert!(format(Some("avro")).is_err());
    }
}
