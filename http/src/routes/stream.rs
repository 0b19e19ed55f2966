//! `GET /v1/changes/stream`: the live change stream over server-sent
//! events (framing in [`crate::sse`]).

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use tidefeed_feed::SubscribeOptions;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{LastEventId, Query};
use crate::model::ErrorBody;
use crate::params;
use crate::sse::{self, ChangeStream};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Events with seq > since; `now` or absent: from the current head.
    /// A `Last-Event-ID` header wins over it.
    since: Option<String>,
    /// Only these tables (comma-separated). Required for tokens limited
    /// to tables.
    tables: Option<String>,
    /// Only these ops: insert, update, delete (comma-separated).
    ops: Option<String>,
    /// `native` (default) or `debezium`.
    format: Option<String>,
    /// `true`: first the current rows (op `read`, consistent at one seq S,
    /// without `id:`), then `resolved` at S, then changes after S. Not
    /// with `since`; ignored when resuming with `Last-Event-ID`.
    snapshot: Option<String>,
    /// Read as this durable consumer, from its acknowledged position
    /// (`since` and `Last-Event-ID` do not apply; ack with
    /// `POST /v1/consumers/{name}/ack`).
    consumer: Option<String>,
    /// The bearer token, for browser `EventSource`, which cannot set
    /// headers (read by the auth check, never logged).
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// Opens a change stream. Errors known before streaming (history lost,
/// bad query, unknown consumer) are answered as JSON with their status;
/// a stream that cannot continue ends with an `error` event.
#[utoipa::path(
    get, path = "/v1/changes/stream", tag = "changes",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq (sent by EventSource on reconnect); wins over since"),
    ),
    responses(
        (status = 200, description = "text/event-stream: `id: <seq>` + `data: <event>` per change; `event: resolved` (`data: {\"seq\":N}`); `event: error` before closing", content_type = "text/event-stream", body = String),
        (status = 400, description = "bad_query, bad_header, future_seq", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "table_not_found, consumer_not_found", body = ErrorBody),
        (status = 410, description = "history_lost, consumer_invalidated", body = ErrorBody),
        (status = 503, description = "too_many_streams, shutting_down", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    LastEventId(last_event_id): LastEventId,
    Query(query): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let filter = params::filter(
        &state,
        &principal,
        query.tables.as_deref(),
        query.ops.as_deref(),
    )?;
    let format = params::format(query.format.as_deref())?;
    let snapshot = params::flag("snapshot", query.snapshot.as_deref())?;
    let since = params::since(query.since.as_deref())?;
    let consumer = query.consumer;
    // A consumer starts at its acknowledged position, or after the last
    // event this client received if that is later (an EventSource sends
    // it as Last-Event-ID when it reconnects); the consumer itself moves
    // only on acks. Last-Event-ID wins over `since` and ends a snapshot.
    let (since, snapshot) = match last_event_id {
        Some(id) => (Some(id), false),
        None => (since, snapshot),
    };
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let permit =
        state
            .streams()
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyStreams {
                limit: state.options().max_streams,
            })?;
    let subscription = state.feed().subscribe(SubscribeOptions {
        since,
        filter,
        format,
        resolved_interval: state.options().resolved_interval,
        snapshot,
        consumer,
    })?;
    Ok(sse::response(ChangeStream::new(
        subscription,
        state,
        snapshot,
        permit,
    )))
}
