//! A small deterministic fuzzer over query strings, headers and bodies of
//! every route: no answer is a 500 or a non-JSON error, and no refused
//! request writes anything.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};
use tidefeed_http::TokenSecret;

use crate::common::Server;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const PARAMS: &[&str] = &[
    "since",
    "limit",
    "tables",
    "ops",
    "format",
    "snapshot",
    "consumer",
    "as_of",
    "start",
    "end",
    "next",
    "access_token",
    "bogus",
];
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "now",
    "true",
    "false",
    "x",
    "%FF",
    "%00",
    "users",
    "users,orders",
    "orders",
    "18446744073709551615",
    "%5B1%5D",
    "%5B%22a%22%5D",
    "NaN",
    "debezium",
    "native",
    "insert",
    "delete,update",
    "c",
    "gone",
    "%2E%2E",
    "1e3",
];
const PATHS: &[&str] = &[
    "/v1/tables",
    "/v1/tables/users",
    "/v1/tables/users/rows",
    "/v1/tables/users/rows/1",
    "/v1/tables/pairs/rows",
    "/v1/tables/pairs/rows/%5B%22a%22%2C1%5D",
    "/v1/changes",
    "/v1/changes/stream",
    "/v1/consumers",
    "/v1/consumers/c",
    "/v1/status",
    "/v1/openapi.json",
    "/metrics",
    "/healthz",
    "/readyz",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_queries_never_answer_500_or_plain_text() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/pairs",
            json!({"columns": [{"name": "a", "type": "string"}, {"name": "b", "type": "int64"}], "primary_key": ["a", "b"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for id in 1..=3 {
        server.put_user(id, "a").await;
    }
    let (status, _) = server.put("/v1/consumers/c", json!({"position": 1})).await;
    assert_eq!(status, StatusCode::CREATED);
    let seq = server.engine.visible_seq();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for round in 0..1500 {
        let path = rng.pick(PATHS);
        let n = rng.next() % 5;
        let query: Vec<String> = (0..n)
            .map(|_| format!("{}={}", rng.pick(PARAMS), rng.pick(VALUES)))
            .collect();
        let url = format!("{path}?{}", query.join("&"));
        let mut request = server
            .request(Method::GET, &url)
            .timeout(Duration::from_secs(5));
        if rng.next().is_multiple_of(4) {
            request = request.header(
                "Last-Event-ID",
                *rng.pick(&["", "0", "2", "99", "-1", "x", " 1 "]),
            );
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "round {round}: GET {url} answered 500"
        );
        if content_type.starts_with("text/event-stream") {
            assert_eq!(status, StatusCode::OK);
            drop(response);
            continue;
        }
        let text = response.text().await.unwrap();
        if !status.is_success() {
            let json: Json = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("round {round}: GET {url}: {status} {text:?}"));
            assert!(
                json["error"]["code"].is_string() && json["error"]["message"].is_string(),
                "round {round}: GET {url}: {text}"
            );
        }
    }
    assert_eq!(server.engine.visible_seq(), seq);
}

const BODIES: &[&str] = &[
    "",
    "{}",
    "[]",
    "null",
    "1",
    "\"x\"",
    r#"{"id":1}"#,
    r#"{"id":1,"email":null}"#,
    r#"{"id":1,"email":"a","age":1.5}"#,
    r#"{"id":"1"}"#,
    r#"{"a":"a","b":1}"#,
    r#"{"a":"a","b":"1"}"#,
    r#"{"seq":1}"#,
    r#"{"seq":-1}"#,
    r#"{"seq":18446744073709551615}"#,
    r#"{"position":1}"#,
    r#"{"position":null}"#,
    r#"{"ops":[]}"#,
    r#"{"ops":[{"op":"delete","table":"users","key":{"id":99}}]}"#,
    r#"{"ops":[{"op":"patch","table":"users","key":{"id":99},"row":{}}]}"#,
    r#"{"ops":[{"op":"upsert","table":"pairs","row":{"a":"a"}}]}"#,
    r#"{"ops":[{"op":"upsert","table":"users","row":{"id":1},"if_match":1}]}"#,
    r#"{"columns":[{"name":"id","type":"int64"}],"primary_key":["id"]}"#,
    r#"{"columns":[{"name":"a","type":"string"},{"name":"b","type":"int64"}],"primary_key":["a","b"]}"#,
    "{\"id\":1,",
];

/// Bodies on every writing route, with odd content types: only the
/// expected successes write, nothing answers 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_bodies_never_answer_500() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/pairs",
            json!({"columns": [{"name": "a", "type": "string"}, {"name": "b", "type": "int64"}], "primary_key": ["a", "b"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server.put_user(1, "a").await;
    let routes: &[(Method, &str)] = &[
        (Method::PUT, "/v1/tables/users/rows/1"),
        (Method::PATCH, "/v1/tables/users/rows/1"),
        (Method::DELETE, "/v1/tables/users/rows/99"),
        (Method::PUT, "/v1/tables/pairs/rows/%5B%22a%22%2C1%5D"),
        (Method::PUT, "/v1/tables/users"),
        (Method::PUT, "/v1/tables/pairs"),
        (Method::POST, "/v1/batch"),
        (Method::PUT, "/v1/consumers/c"),
        (Method::POST, "/v1/consumers/c/ack"),
        (Method::DELETE, "/v1/consumers/zz"),
    ];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..1200 {
        let (method, path) = rng.pick(routes);
        let body = *rng.pick(BODIES);
        let content_type = *rng.pick(&[
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "",
        ]);
        let before = server.engine.visible_seq();
        let mut request = server.request(method.clone(), path).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        if rng.next().is_multiple_of(5) {
            request = request.header(
                "if-match",
                *rng.pick(&["\"1\"", "\"2\"", "*", "x", "W/\"1\""]),
            );
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "round {round}: {method} {path} {body:?}: {text}"
        );
        if !status.is_success() {
            let json: Json = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("round {round}: {method} {path}: {status} {text:?}"));
            assert!(json["error"]["code"].is_string(), "{text}");
            assert_eq!(
                server.engine.visible_seq(),
                before,
                "round {round}: a refused {method} {path} {body:?} wrote"
            );
        }
    }
}

/// `TokenSecret::sha256_hex` is public API for turning configuration text
/// into a digest: it must refuse anything but 64 hex digits, without
/// panicking on non-ASCII text.
#[test]
fn sha256_hex_refuses_non_hex_text_without_panicking() {
    let non_ascii = "é".repeat(32);
    assert_eq!(non_ascii.len(), 64);
    let result = std::panic::catch_unwind(|| TokenSecret::sha256_hex(&non_ascii).is_err());
    assert_eq!(
        result.ok(),
        Some(true),
        "panicked or accepted {non_ascii:?}"
    );
    assert!(
        TokenSecret::sha256_hex(&"+f".repeat(32)).is_err(),
        "'+f' is not two hex digits"
    );
}
