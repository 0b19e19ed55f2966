//! Operations: `/v1/status`, `/metrics`, `/healthz`, `/readyz`, and the
//! OpenAPI document.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::model::{ErrorBody, HealthBody, StatusBody};
use crate::state::AppState;

/// Sequence positions, counts and stream usage.
#[utoipa::path(
    get, path = "/v1/status", tag = "operations",
    responses((status = 200, description = "Status", body = StatusBody)),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn status(State(state): State<AppState>) -> axum::Json<StatusBody> {
    let engine = state.engine();
    let metrics = engine.metrics();
    axum::Json(StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        visible_seq: engine.visible_seq(),
        low_water: metrics.low_water,
        flushed_seq: metrics.flushed_seq,
        tables: engine.tables().len(),
        consumers: engine.consumers().len(),
        open_streams: state.open_streams(),
        max_streams: state.options().max_streams,
        uptime_seconds: state.uptime().as_secs(),
        shutting_down: state.is_shutting_down(),
        components: state
            .components()
            .iter()
            .map(|c| (c.name().to_owned(), c.status()))
            .collect(),
    })
}

/// Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "unauthorized (when metrics need a token)", body = ErrorBody),
    ),
    security((), ("bearer" = ["read"]))
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
) -> Result<Response, ApiError> {
    // Metrics are labelled by table and consumer: not for a token that may
    // see only some tables.
    principal.require_every_table()?;
    let samples: Vec<_> = state
        .components()
        .iter()
        .flat_map(|c| c.samples())
        .collect();
    let text = state
        .metrics()
        .render(state.engine(), state.feed(), &samples);
    Ok((
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// Liveness: the process serves requests.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthBody)),
    security((), ("bearer" = ["read"]))
)]
pub(crate) async fn healthz() -> axum::Json<HealthBody> {
    axum::Json(HealthBody { status: "ok" })
}

/// Readiness: the engine is open, no write has found it failed, and the
/// server is not shutting down.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthBody),
        (status = 503, description = "engine_failed, shutting_down", body = ErrorBody),
    ),
    security((), ("bearer" = ["read"]))
)]
pub(crate) async fn readyz(
    State(state): State<AppState>,
) -> Result<axum::Json<HealthBody>, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    if state.engine().is_closed() {
        return Err(tidefeed_engine::Error::Closed.into());
    }
    if state.engine_failed() {
        return Err(ApiError::EngineFailed);
    }
    Ok(axum::Json(HealthBody { status: "ready" }))
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn openapi_json() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        crate::openapi::document_json(),
    )
        .into_response()
}
