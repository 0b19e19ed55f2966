//! `GET /v1/changes`: a page of change events for simple pollers.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;

use super::blocking;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Query;
use crate::model::{ChangesPage, ErrorBody};
use crate::params;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangesQuery {
    /// Events with seq > since; `now` or absent: the current head (an
    /// empty page whose `next` is where to poll from).
    since: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    limit: Option<String>,
    /// Only these tables (comma-separated). Required for tokens limited
    /// to tables.
    tables: Option<String>,
    /// Only these ops: insert, update, delete (comma-separated).
    ops: Option<String>,
    /// `native` (default) or `debezium`.
    format: Option<String>,
    /// The bearer token, for clients that cannot set headers (read by
    /// the auth check, never logged).
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// Events after `since`, in seq order, plus where to continue.
#[utoipa::path(
    get, path = "/v1/changes", tag = "changes",
    params(ChangesQuery),
    responses(
        (status = 200, description = "A page of events", body = ChangesPage),
        (status = 400, description = "bad_query, future_seq", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "table_not_found (in tables)", body = ErrorBody),
        (status = 410, description = "history_lost: since is below the low-water mark", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn pull(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ChangesQuery>,
) -> Result<Response, ApiError> {
    let filter = params::filter(
        &state,
        &principal,
        query.tables.as_deref(),
        query.ops.as_deref(),
    )?;
    let format = params::format(query.format.as_deref())?;
    let limit = params::limit(query.limit.as_deref())?;
    let visible = state.engine().visible_seq();
    let since = params::since(query.since.as_deref())?.unwrap_or(visible);
    if since > visible {
        return Err(tidefeed_engine::Error::FutureSeq {
            requested: since,
            visible,
        }
        .into());
    }
    let feed = state.feed().clone();
    let page = blocking(move || Ok(feed.read_page(since, limit, &filter, format)?)).await?;
    state
        .metrics()
        .events_sent
        .with_label_values(&["pull"])
        .inc_by(page.events.len() as u64);
    let size: usize = page.events.iter().map(|(_, event)| event.len() + 1).sum();
    let mut body = Vec::with_capacity(size + 64);
    body.extend_from_slice(b"{\"changes\":[");
    for (i, (_, event)) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    // `next` is the last seq examined: every matching event up to it is in
    // this page or an earlier one, which makes it the resolved watermark.
    body.extend_from_slice(
        format!("],\"next\":{next},\"resolved\":{next}}}", next = page.next).as_bytes(),
    );
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}
