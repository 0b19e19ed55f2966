//! `/v1/consumers`: durable consumers, named positions that hold
//! retention until acknowledged.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::blocking;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, OptionalJson, Path};
use crate::model::{AckRequest, ConsumerBody, ConsumerList, CreateConsumerRequest, ErrorBody};
use crate::state::AppState;

/// Creates a consumer at `position` (default: now).
#[utoipa::path(
    put, path = "/v1/consumers/{name}", tag = "consumers",
    params(("name" = String, Path, description = "1 to 64 characters of a-z, 0-9, _, -, .")),
    request_body(content = Option<CreateConsumerRequest>, description = "Optional; an empty body starts at the current head"),
    responses(
        (status = 201, description = "Created", body = ConsumerBody),
        (status = 400, description = "bad_consumer_name, invalid_json, future_seq", body = ErrorBody),
        (status = 409, description = "consumer_exists", body = ErrorBody),
        (status = 410, description = "history_lost: position below the low-water mark", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn create_consumer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<CreateConsumerRequest>,
) -> Result<Response, ApiError> {
    principal.require_every_table()?;
    let position = body.unwrap_or_default().position;
    let engine = state.engine().clone();
    let info = blocking(move || {
        engine.create_consumer(&name, position)?;
        Ok(engine.consumer(&name)?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(ConsumerBody::from(info))).into_response())
}

/// A consumer, valid or invalidated (with the reason).
#[utoipa::path(
    get, path = "/v1/consumers/{name}", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses(
        (status = 200, description = "The consumer", body = ConsumerBody),
        (status = 404, description = "consumer_not_found", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn get_consumer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<axum::Json<ConsumerBody>, ApiError> {
    principal.require_every_table()?;
    Ok(axum::Json(state.engine().consumer(&name)?.into()))
}

/// Every consumer, by name, with its lag.
#[utoipa::path(
    get, path = "/v1/consumers", tag = "consumers",
    responses((status = 200, description = "Consumers", body = ConsumerList)),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn list_consumers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<axum::Json<ConsumerList>, ApiError> {
    // Consumers span every table: their names and lag say what others read.
    principal.require_every_table()?;
    Ok(axum::Json(ConsumerList {
        consumers: state
            .engine()
            .consumers()
            .into_iter()
            .map(ConsumerBody::from)
            .collect(),
    }))
}

/// Deletes a consumer; it no longer holds retention.
#[utoipa::path(
    delete, path = "/v1/consumers/{name}", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "consumer_not_found", body = ErrorBody),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn delete_consumer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_every_table()?;
    let engine = state.engine().clone();
    blocking(move || Ok(engine.delete_consumer(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Acknowledges every change up to `seq`; positions never move back.
#[utoipa::path(
    post, path = "/v1/consumers/{name}/ack", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    request_body = AckRequest,
    responses(
        (status = 200, description = "The consumer after the ack", body = ConsumerBody),
        (status = 400, description = "invalid_json, future_seq", body = ErrorBody),
        (status = 404, description = "consumer_not_found", body = ErrorBody),
        (status = 410, description = "consumer_invalidated", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn ack_consumer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Json(body): Json<AckRequest>,
) -> Result<axum::Json<ConsumerBody>, ApiError> {
    principal.require_every_table()?;
    let engine = state.engine();
    engine.ack_consumer(&name, body.seq)?;
    Ok(axum::Json(engine.consumer(&name)?.into()))
}
