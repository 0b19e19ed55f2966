//! `/v1/tables`: create, list, describe.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tidefeed_engine::CreateTable;

use super::blocking;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::model::{CreateTableRequest, ErrorBody, TableInfo, TableList};
use crate::state::{valid_table_name, AppState};

/// Creates a table. Creating it again with the identical schema answers
/// 200 with the schema; a different schema is a 409.
#[utoipa::path(
    put, path = "/v1/tables/{table}", tag = "tables",
    params(("table" = String, Path, description = "Table name, [a-z][a-z0-9_]{0,62}")),
    request_body = CreateTableRequest,
    responses(
        (status = 201, description = "Created", body = TableInfo),
        (status = 200, description = "An identical table exists", body = TableInfo),
        (status = 400, description = "invalid_json, invalid_schema, bad_table_name", body = ErrorBody),
        (status = 409, description = "schema_conflict", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn create_table(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<CreateTableRequest>,
) -> Result<Response, ApiError> {
    if !valid_table_name(&name) {
        return Err(ApiError::BadTableName { table: name });
    }
    if let Some(named) = body.name.as_deref().filter(|named| *named != name) {
        return Err(ApiError::InvalidSchema(format!(
            "the body names table {named:?}, the path {name:?}"
        )));
    }
    let schema = body.into_schema(&name);
    let engine = state.engine().clone();
    let created = blocking(move || Ok(engine.create_table(schema)?)).await?;
    Ok(match created {
        CreateTable::Created(table) => {
            (StatusCode::CREATED, axum::Json(TableInfo::from(&*table))).into_response()
        }
        CreateTable::Exists(table) => {
            (StatusCode::OK, axum::Json(TableInfo::from(&*table))).into_response()
        }
    })
}

/// Every table the token may use, in creation order.
#[utoipa::path(
    get, path = "/v1/tables", tag = "tables",
    responses((status = 200, description = "Tables", body = TableList)),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn list_tables(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> axum::Json<TableList> {
    let tables = state
        .engine()
        .tables()
        .iter()
        .filter(|table| principal.may_use_table(table.name()))
        .map(|table| TableInfo::from(&**table))
        .collect();
    axum::Json(TableList { tables })
}

/// A table's schema.
#[utoipa::path(
    get, path = "/v1/tables/{table}", tag = "tables",
    params(("table" = String, Path, description = "Table name")),
    responses(
        (status = 200, description = "The schema", body = TableInfo),
        (status = 400, description = "bad_table_name", body = ErrorBody),
        (status = 404, description = "table_not_found", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn describe_table(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<TableInfo>, ApiError> {
    let table = state.table(&name)?;
    Ok(axum::Json(TableInfo::from(&*table)))
}
