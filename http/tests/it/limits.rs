//! Limits and browser support: body size, request timeout, CORS, and the
//! OpenAPI document served by the running server.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::{assert_error, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limit_are_413_even_without_a_length() {
    let server = Server::start_with(|_| {}, |options| options.max_body_bytes = 1024).await;
    server.create_users().await;
    let big = json!({"id": 1, "email": "x".repeat(2000)});
    let (status, body) = server.put("/v1/tables/users/rows/1", big.clone()).await;
    assert_error(status, &body, 413, "payload_too_large");
    assert_eq!(body["error"]["limit"], 1024);

    // Chunked, so no Content-Length announces it.
    let bytes = serde_json::to_vec(&big).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let response = server
        .request(Method::PUT, "/v1/tables/users/rows/1")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::json_of(response).await;
    assert_error(status, &body, 413, "payload_too_large");
    assert_eq!(server.engine.visible_seq(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_timeout_are_408_but_streams_are_not_cut() {
    let server = Server::start_with(
        |_| {},
        |options| options.request_timeout = Duration::from_nanos(1),
    )
    .await;
    server
        .blocking(|engine| {
            engine
                .create_table(tidefeed_engine::TableSchema {
                    name: "users".into(),
                    columns: vec![tidefeed_engine::Column {
                        name: "id".into(),
                        ty: tidefeed_engine::ColumnType::Int64,
                        nullable: false,
                    }],
                    primary_key: vec!["id".into()],
                })
                .unwrap();
        })
        .await;
    // A durable write cannot finish within a nanosecond.
    let (status, body) = server
        .put("/v1/tables/users/rows/1", json!({"id": 1}))
        .await;
    assert_error(status, &body, 408, "request_timeout");
    // The write's outcome was unknown to the client; it did commit.
    let deadline = tokio::time::Instant::now() + crate::common::PATIENCE;
    while server.engine.visible_seq() < 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A stream's response starts at once and its body is not limited.
    let mut stream = server.stream("", None).await;
    server
        .blocking(|engine| {
            engine
                .write(vec![tidefeed_engine::Mutation::upsert(
                    "users",
                    vec![("id".into(), tidefeed_engine::Value::Int64(2))],
                )])
                .unwrap();
        })
        .await;
    let change = stream.next_change().await;
    let data: Json = serde_json::from_str(&change.data).unwrap();
    assert_eq!(data["key"], json!({"id": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_allowed_origins_only() {
    let server = Server::start_with(
        |_| {},
        |options| options.cors_allowed_origins = vec!["http://app.example".into()],
    )
    .await;
    let preflight = server
        .client
        .request(Method::OPTIONS, server.url("/v1/changes/stream"))
        .header("Origin", "http://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://app.example"
    );

    let response = server
        .client
        .get(server.url("/v1/tables"))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let response = server
        .client
        .get(server.url("/v1/tables"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // Without configured origins there are no CORS headers at all.
    let plain = Server::start().await;
    let response = plain
        .client
        .get(plain.url("/v1/tables"))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served() {
    let server = Server::start().await;
    let (status, document) = server.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/tables/{table}/rows/{key}",
        "/v1/changes/stream",
        "/v1/consumers/{name}/ack",
        "/metrics",
    ] {
        assert!(document["paths"][path].is_object(), "{path} missing");
    }
    let (status, health) = server.get("/healthz").await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
    let (status, status_body) = server.get("/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_body["visible_seq"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_answers_503_and_readiness_turns_off() {
    let faults = std::sync::Arc::new(tidefeed_engine::FaultInjector::new());
    let injected = faults.clone();
    let server = Server::start_with(move |options| options.faults = Some(injected), |_| {}).await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let (status, _) = server.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);

    faults.fail_sync_after(1);
    let (status, body) = server
        .put("/v1/tables/users/rows/2", json!({"id": 2}))
        .await;
    assert_error(status, &body, 503, "engine_failed");
    // Fail-stop: later writes are refused too, and the server says it is
    // not ready, while it still answers.
    let (status, body) = server
        .put("/v1/tables/users/rows/3", json!({"id": 3}))
        .await;
    assert_error(status, &body, 503, "engine_failed");
    let (status, body) = server.get("/readyz").await;
    assert_error(status, &body, 503, "engine_failed");
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
}
