//! The ceiling for tidefeed's single-row PUT: an axum server with the same
//! features, runtime shape (two worker threads) and socket options as
//! `tidefeed serve`, whose PUT handler reads the body, parses it as JSON
//! and answers `{"seq":N,"op":"insert"}` with an ETag, storing nothing.
//!
//! ```text
//! bare-axum [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `bare-axum ready: listen=ADDR` once it accepts connections; runs
//! until killed. Used by `bench/run-http.sh` beside tidefeed and Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
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

fn main() {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            other => panic!("unknown flag {other}; flags: --listen ADDR"),
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
            .with_state(Arc::new(AtomicU64::new(0)));
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        println!("bare-axum ready: listen={addr}");
        axum::serve(listener, app).await.expect("serving");
    });
}
