//! Server-sent events: the framing of DESIGN.md section 9 and the body of
//! a change stream.
//!
//! - a change: `id: <seq>` and `data: <event JSON>`, no `event:` field, so
//!   `EventSource.onmessage` receives it;
//! - a snapshot row (op `read`): `data:` only. It carries no `id:`, so a
//!   client that reconnects in the middle of a snapshot sends the id it had
//!   before (none) and gets the whole snapshot again rather than resuming
//!   past rows it never received. The snapshot's end, `resolved` at S,
//!   carries `id: S`; from there the stream resumes like any other;
//! - `event: resolved`, `id: <seq>`, `data: {"seq":N}`;
//! - `event: error`, `data: {"error":{..}}`, then the stream ends;
//! - `: keep-alive` comments after `keep_alive_interval` of silence;
//! - at the start of a stream that is not a snapshot, a `resolved` event
//!   at the starting position, so a client has an id to resume from even
//!   if it is disconnected before its first change (an `EventSource`
//!   opened at `now` would otherwise reconnect at `now` again and miss the
//!   changes in between).
//!
//! Event JSON never holds a raw newline (JSON escapes them), so one `data:`
//! line carries it whole.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use tidefeed_engine::Seq;
use tidefeed_feed::{FeedError, FeedItem, Subscription};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::{ApiError, ErrorParts};
use crate::state::AppState;

/// Frames coalesced into one write while events are ready without
/// waiting.
const COALESCE_BYTES: usize = 64 * 1024;

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

fn event_frame(out: &mut BytesMut, id: Option<Seq>, data: &[u8]) {
    out.reserve(data.len() + 32);
    if let Some(id) = id {
        out.put_slice(format!("id: {id}\n").as_bytes());
    }
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

fn resolved_frame(out: &mut BytesMut, seq: Seq) {
    out.put_slice(format!("event: resolved\nid: {seq}\ndata: {{\"seq\":{seq}}}\n\n").as_bytes());
}

/// The `error` event for `parts`.
pub(crate) fn error_frame(out: &mut BytesMut, parts: &ErrorParts) {
    out.put_slice(b"event: error\ndata: ");
    out.put_slice(parts.body().to_string().as_bytes());
    out.put_slice(b"\n\n");
}

/// An open change stream: the subscription, its slot among the allowed
/// streams, and what it reports to.
pub(crate) struct ChangeStream {
    subscription: Subscription,
    state: AppState,
    /// Until the snapshot's closing `resolved`, events are snapshot rows.
    in_snapshot: bool,
    /// The `resolved` sent first, at the starting position.
    opening: Option<Seq>,
    keep_alive: Duration,
    finished: bool,
    _permit: OwnedSemaphorePermit,
}

impl ChangeStream {
    pub(crate) fn new(
        subscription: Subscription,
        state: AppState,
        snapshot: bool,
        permit: OwnedSemaphorePermit,
    ) -> ChangeStream {
        let metrics = state.metrics();
        metrics.sse_subscribers.inc();
        metrics.sse_streams_opened.inc();
        ChangeStream {
            opening: (!snapshot).then(|| subscription.position()),
            subscription,
            keep_alive: state.options().keep_alive_interval,
            state,
            in_snapshot: snapshot,
            finished: false,
            _permit: permit,
        }
    }

    /// The next bytes to send: events (as many as are ready, up to
    /// [`COALESCE_BYTES`]), a resolved marker, a keep-alive comment, or the
    /// closing `error` event. `None` once the stream has ended.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let mut out = BytesMut::new();
        if let Some(position) = self.opening.take() {
            resolved_frame(&mut out, position);
            self.state.metrics().sse_sent_bytes.inc_by(out.len() as u64);
            return Some(out.freeze());
        }
        let shutdown = self.state.shutdown_token().clone();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                self.finished = true;
                error_frame(&mut out, &ApiError::ShuttingDown.parts());
            }
            item = self.subscription.next() => {
                self.push(item, &mut out);
                // `next` is cancel-safe and returns at once while events
                // are buffered, so ready events share one write.
                while !self.finished && out.len() < COALESCE_BYTES && self.subscription.buffered() > 0 {
                    match self.subscription.next().now_or_never() {
                        Some(item) => self.push(item, &mut out),
                        None => break,
                    }
                }
            }
            _ = tokio::time::sleep(self.keep_alive) => out.put_slice(KEEP_ALIVE),
        }
        self.state.metrics().sse_sent_bytes.inc_by(out.len() as u64);
        Some(out.freeze())
    }

    fn push(&mut self, item: Result<FeedItem, FeedError>, out: &mut BytesMut) {
        match item {
            Ok(FeedItem::Event { seq, bytes }) => {
                let id = (!self.in_snapshot).then_some(seq);
                event_frame(out, id, &bytes);
                self.state
                    .metrics()
                    .events_sent
                    .with_label_values(&["sse"])
                    .inc();
            }
            Ok(FeedItem::Resolved { seq }) => {
                self.in_snapshot = false;
                resolved_frame(out, seq);
            }
            Err(error) => {
                self.finished = true;
                let error = ApiError::from(error);
                tracing::info!(%error, "change stream ended by an error");
                error_frame(out, &error.parts());
            }
        }
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        self.state.metrics().sse_subscribers.dec();
    }
}

/// The response for an open stream.
pub(crate) fn response(stream: ChangeStream) -> Response {
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let frame = stream.next_frame().await?;
        Some((Ok::<Bytes, Infallible>(frame), stream))
    });
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                axum::http::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_contract() {
        let mut out = BytesMut::new();
        event_frame(&mut out, Some(42), br#"{"seq":42}"#);
        assert_eq!(&out[..], b"id: 42\ndata: {\"seq\":42}\n\n");
        out.clear();
        event_frame(&mut out, None, b"{}");
        assert_eq!(&out[..], b"data: {}\n\n");
        out.clear();
        resolved_frame(&mut out, 7);
        assert_eq!(&out[..], b"event: resolved\nid: 7\ndata: {\"seq\":7}\n\n");
        out.clear();
        error_frame(&mut out, &ApiError::ShuttingDown.parts());
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("event: error\ndata: {\"error\":{"),
            "{text}"
        );
        assert!(text.contains("\"code\":\"shutting_down\""), "{text}");
        assert!(text.ends_with("\n\n") && text.matches('\n').count() == 3);
    }
}
