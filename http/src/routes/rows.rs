//! `/v1/tables/{table}/rows`: upsert, patch, delete, point reads and
//! key-range scans, each at the head or `as_of` a retained seq.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as Json;
use tidefeed_engine::{KeyRange, Mutation, NamedValues, Outcome, Precondition, Table, Value};
use tidefeed_feed::json::{named_values_from_json, JsonRow};
use utoipa::IntoParams;

use super::blocking;
use crate::error::ApiError;
use crate::extract::{etag, IfMatch, Json as JsonBody, Path, Query};
use crate::key::{format_key, parse_key, parse_key_prefix};
use crate::model::{ErrorBody, RowsPage, WriteResponse};
use crate::params;
use crate::state::AppState;

/// Reads as of a seq.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AsOfQuery {
    /// Read the row as it was at this seq (retained history only);
    /// default: the visible seq.
    as_of: Option<String>,
}

/// A key-range page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeQuery {
    /// First key (inclusive), in the `{key}` form; for composite keys a
    /// JSON array of the leading key values.
    start: Option<String>,
    /// End key (exclusive), same form as `start`.
    end: Option<String>,
    /// The `next` of the previous page (instead of `start`).
    next: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    limit: Option<String>,
    /// Read at this seq; default: the visible seq (returned as `as_of`).
    as_of: Option<String>,
}

/// Inserts or replaces a row. The body is the full row; its key columns
/// must equal the key in the path.
#[utoipa::path(
    put, path = "/v1/tables/{table}/rows/{key}", tag = "rows",
    params(
        ("table" = String, Path, description = "Table name"),
        ("key" = String, Path, description = "Primary key (see the API description)"),
        ("If-Match" = Option<String>, Header, description = "Commit only if the row's ETag is this"),
    ),
    request_body(content = Object, description = "The full row as a JSON object"),
    responses(
        (status = 200, description = "Committed; ETag is the new version", body = WriteResponse),
        (status = 400, description = "invalid_json, invalid_row, key_mismatch, bad_key, bad_table_name", body = ErrorBody),
        (status = 404, description = "table_not_found", body = ErrorBody),
        (status = 412, description = "precondition_failed", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 503, description = "engine_failed", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
pub(crate) async fn upsert_row(
    State(state): State<AppState>,
    Path((table, key)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<Json>,
) -> Result<Response, ApiError> {
    let table = state.table(&table)?;
    let key = parse_key(&table, &key)?;
    let values = named_values_from_json(&table, &body)?;
    check_key_columns(&table, &key, &values)?;
    let mutation = Mutation::upsert(table.name(), values);
    commit_row(&state, &table, mutation, if_match).await
}

/// Merges the given columns into an existing row.
#[utoipa::path(
    patch, path = "/v1/tables/{table}/rows/{key}", tag = "rows",
    params(
        ("table" = String, Path, description = "Table name"),
        ("key" = String, Path, description = "Primary key"),
        ("If-Match" = Option<String>, Header, description = "Commit only if the row's ETag is this"),
    ),
    request_body(content = Object, description = "Some columns of the row"),
    responses(
        (status = 200, description = "Committed", body = WriteResponse),
        (status = 400, description = "invalid_json, invalid_row, key_mismatch, bad_key", body = ErrorBody),
        (status = 404, description = "table_not_found, row_not_found", body = ErrorBody),
        (status = 412, description = "precondition_failed", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
pub(crate) async fn patch_row(
    State(state): State<AppState>,
    Path((table, key)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<Json>,
) -> Result<Response, ApiError> {
    let table = state.table(&table)?;
    let key = parse_key(&table, &key)?;
    let values = named_values_from_json(&table, &body)?;
    check_key_columns(&table, &key, &values)?;
    let mutation = Mutation::patch(table.name(), key, values);
    commit_row(&state, &table, mutation, if_match).await
}

/// Deletes a row. A missing row is a 404 and makes no event.
#[utoipa::path(
    delete, path = "/v1/tables/{table}/rows/{key}", tag = "rows",
    params(
        ("table" = String, Path, description = "Table name"),
        ("key" = String, Path, description = "Primary key"),
        ("If-Match" = Option<String>, Header, description = "Commit only if the row's ETag is this"),
    ),
    responses(
        (status = 200, description = "Committed", body = WriteResponse),
        (status = 400, description = "bad_key, invalid_row", body = ErrorBody),
        (status = 404, description = "table_not_found, row_not_found", body = ErrorBody),
        (status = 412, description = "precondition_failed", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
pub(crate) async fn delete_row(
    State(state): State<AppState>,
    Path((table, key)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    let table = state.table(&table)?;
    let key = parse_key(&table, &key)?;
    let mutation = Mutation::delete(table.name(), key);
    commit_row(&state, &table, mutation, if_match).await
}

/// Refuses a body whose key columns disagree with the key in the path.
/// Missing or null key columns are left to the engine, which names them.
fn check_key_columns(table: &Table, key: &[Value], values: &NamedValues) -> Result<(), ApiError> {
    for (name, value) in values {
        let Some(position) = table
            .key_columns()
            .iter()
            .position(|&index| table.columns()[index].name == *name)
        else {
            continue;
        };
        if matches!(value, Value::Null) {
            continue;
        }
        if !same_key_value(value, &key[position]) {
            return Err(ApiError::KeyMismatch {
                column: name.clone(),
            });
        }
    }
    Ok(())
}

/// Key equality as the key codec has it: -0.0 and +0.0 are one key.
fn same_key_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float64(a), Value::Float64(b)) => a == b,
        _ => a == b,
    }
}

async fn commit_row(
    state: &AppState,
    table: &Arc<Table>,
    mutation: Mutation,
    precondition: Option<Precondition>,
) -> Result<Response, ApiError> {
    let mutation = match precondition {
        Some(precondition) => mutation.when(precondition),
        None => mutation,
    };
    let started = Instant::now();
    let result = state.write(vec![mutation]).await?;
    match result.outcomes.first() {
        Some(Outcome::Committed { seq, kind }) => {
            state
                .metrics()
                .record_write("row", started.elapsed(), &[(table.name(), *kind)]);
            let mut response = axum::Json(WriteResponse {
                seq: *seq,
                op: kind.name(),
            })
            .into_response();
            response.headers_mut().insert(ETAG, etag(*seq));
            Ok(response)
        }
        _ => Err(ApiError::RowNotFound {
            table: table.name().to_owned(),
        }),
    }
}

/// Reads one row, now or as of a seq.
#[utoipa::path(
    get, path = "/v1/tables/{table}/rows/{key}", tag = "rows",
    params(
        ("table" = String, Path, description = "Table name"),
        ("key" = String, Path, description = "Primary key"),
        AsOfQuery,
    ),
    responses(
        (status = 200, description = "The row; ETag is the seq of its last change", content_type = "application/json", body = Object),
        (status = 400, description = "bad_key, bad_query, future_seq", body = ErrorBody),
        (status = 404, description = "table_not_found, row_not_found", body = ErrorBody),
        (status = 410, description = "history_lost", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn get_row(
    State(state): State<AppState>,
    Path((table, key)): Path<(String, String)>,
    Query(query): Query<AsOfQuery>,
) -> Result<Response, ApiError> {
    let table = state.table(&table)?;
    let key = parse_key(&table, &key)?;
    let as_of = params::optional_seq("as_of", query.as_of.as_deref())?;
    let engine = state.engine().clone();
    let name = table.name().to_owned();
    let version = blocking(move || Ok(engine.get(&name, &key, as_of)?)).await?;
    let Some(version) = version else {
        return Err(ApiError::RowNotFound {
            table: table.name().to_owned(),
        });
    };
    let body = serde_json::to_vec(&JsonRow {
        table: &table,
        row: &version.row,
    })
    .map_err(|error| ApiError::Internal(format!("row does not serialise: {error}")))?;
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (ETAG, etag(version.seq)),
        ],
        body,
    )
        .into_response())
}

/// Rows in key order within `[start, end)`, a page at a time.
#[utoipa::path(
    get, path = "/v1/tables/{table}/rows", tag = "rows",
    params(("table" = String, Path, description = "Table name"), RangeQuery),
    responses(
        (status = 200, description = "A page of rows", body = RowsPage),
        (status = 400, description = "bad_key, bad_query, future_seq", body = ErrorBody),
        (status = 404, description = "table_not_found", body = ErrorBody),
        (status = 410, description = "history_lost", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn scan_rows(
    State(state): State<AppState>,
    Path(table): Path<String>,
    Query(query): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    let table = state.table(&table)?;
    let start = match (&query.start, &query.next) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadQuery(
                "give start or next, not both".to_owned(),
            ))
        }
        (start, next) => start.as_ref().or(next.as_ref()),
    };
    let range = KeyRange {
        start: start
            .map(|text| parse_key_prefix(&table, text))
            .transpose()?,
        end: query
            .end
            .as_deref()
            .map(|text| parse_key_prefix(&table, text))
            .transpose()?,
    };
    let limit = params::limit(query.limit.as_deref())?;
    let at = match params::optional_seq("as_of", query.as_of.as_deref())? {
        Some(at) => at,
        None => state.engine().visible_seq(),
    };
    let engine = state.engine().clone();
    let name = table.name().to_owned();
    // Bounded by bytes as well as rows: a page of large rows stays a few
    // MiB whatever `limit` says (`next` continues it).
    let page = blocking(move || {
        Ok(engine.scan_within(&name, &range, limit, tidefeed_feed::PAGE_BYTES, Some(at))?)
    })
    .await?;
    let mut body = Vec::with_capacity(64 + page.rows.len() * 64);
    body.extend_from_slice(b"{\"rows\":[");
    for (i, version) in page.rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(
            &mut body,
            &JsonRow {
                table: &table,
                row: &version.row,
            },
        )
        .map_err(|error| ApiError::Internal(format!("row does not serialise: {error}")))?;
    }
    body.extend_from_slice(b"],\"next\":");
    let next = page.next.as_ref().map(|key| format_key(&table, key));
    serde_json::to_writer(&mut body, &next).expect("a string serialises");
    body.extend_from_slice(format!(",\"as_of\":{at}}}").as_bytes());
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_keys_compare_as_the_codec_does() {
        assert!(same_key_value(&Value::Float64(-0.0), &Value::Float64(0.0)));
        assert!(!same_key_value(&Value::Int64(1), &Value::Int64(2)));
    }
}
