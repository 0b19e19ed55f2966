//! The ceiling for tidefeed's HTTP service: an axum server with the same
//! features, runtime shape (two worker threads) and socket options as
//! `tidefeed serve`, and nothing behind it.
//!
//! - `PUT /v1/tables/{table}/rows/{key}` reads the body, parses it as JSON
//!   and answers `{"seq":N,"op":"insert"}` with an ETag, storing nothing;
//! - `GET /v1/changes/stream` answers an SSE stream that only ever sends a
//!   `: keep-alive` comment every 15 s (the floor of an idle stream's
//!   memory in axum and hyper).
//!
//! ```text
//! bare-axum [--listen 127.0.0.1:0] [--serve router|make-service|hyper-8k]
//! ```
//!
//! `--serve router` (the default) hands the `Router` to `axum::serve` as
//! tidefeed does; `make-service` hands it `Router::into_make_service()`,
//! which skips axum 0.8's per-connection `Router::with_state(())` (a copy
//! of the route table per connection); `hyper-8k` serves each connection
//! with hyper's own HTTP/1 builder, its read buffer capped at the minimum
//! (`max_buf_size(8192)`), which `axum::serve` cannot configure. Prints `bare-axum ready:
//! listen=ADDR` once it accepts connections; runs until killed. Used by
//! `bench/run-http.sh` beside tidefeed and Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::serve::ListenerExt;
use axum::Router;

async fn upsert_row(
    State(seq): State<Arc<AtomicU64>>,
    Path((_table, _key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let row: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(row) => row,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    if !row.is_object() {
        return (StatusCode::BAD_REQUEST, "not an object").into_response();
    }
    let seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
    let body = format!("{{\"seq\":{seq},\"op\":\"insert\"}}");
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                ETAG,
                HeaderValue::from_str(&format!("\"{seq}\"")).expect("digits are a valid header"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn idle_stream() -> Response {
    let keep_alive = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(std::time::Duration::from_secs(15)).await;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from_static(b": keep-alive\n\n")), ()))
    });
    (
        [(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"))],
        axum::body::Body::from_stream(keep_alive),
    )
        .into_response()
}

fn main() {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut mode = "router".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            "--serve" => mode = args.next().expect("--serve needs a mode"),
            other => panic!("unknown flag {other}; flags: --listen ADDR, --serve router|make-service|hyper-8k"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .expect("binding the listener");
        let addr = listener.local_addr().expect("the bound address");
        let app = Router::new()
            .route("/v1/tables/{table}/rows/{key}", put(upsert_row))
            .route("/v1/changes/stream", get(idle_stream))
            .with_state(Arc::new(AtomicU64::new(0)));
        println!("bare-axum ready: listen={addr}");
        match mode.as_str() {
            "hyper-8k" => serve_hyper(listener, app).await,
            _ => {
                let listener = listener.tap_io(|stream| {
                    let _ = stream.set_nodelay(true);
                });
                match mode.as_str() {
                    "router" => axum::serve(listener, app).await.expect("serving"),
                    "make-service" => axum::serve(listener, app.into_make_service())
                        .await
                        .expect("serving"),
                    other => panic!("--serve takes router, make-service or hyper-8k, not {other}"),
                }
            }
        }
    });
}

/// Serves `app` with hyper's HTTP/1 connection builder directly, with the
/// smallest read buffer hyper allows.
async fn serve_hyper(listener: tokio::net::TcpListener, app: Router) {
    let app = app.with_state::<()>(());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.max_buf_size(8192);
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
