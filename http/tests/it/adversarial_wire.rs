//! Adversarial probes of the wire contract (DESIGN.md section 9): what a
//! hostile or merely unusual client sends, and that every answer is the
//! contract's JSON with its status, and that nothing is written on a
//! refusal.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::{assert_error, enc, json_of, Server};

/// Sends raw bytes on a fresh connection and returns (status, headers
/// text, body text) of the response.
pub async fn raw(server: &Server, request: &[u8]) -> (u16, String, String) {
    raw_for(server, request, Duration::from_secs(10)).await
}

/// [`raw`], reading for at most `patience` (for keep-alive connections).
pub async fn raw_for(server: &Server, request: &[u8], patience: Duration) -> (u16, String, String) {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let request = request.to_vec();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(patience)).unwrap();
        let _ = socket.write_all(&request);
        let mut out = Vec::new();
        let _ = socket.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn is_json_error(body: &str) -> bool {
    // A chunked body: take the JSON object inside it.
    let Some(start) = body.find('{') else {
        return false;
    };
    let Some(end) = body.rfind('}') else {
        return false;
    };
    serde_json::from_str::<Json>(&body[start..=end])
        .map(|json| json["error"]["code"].is_string() && json["error"]["message"].is_string())
        .unwrap_or(false)
}

async fn floats_and_docs(server: &Server) {
    for (name, schema) in [
        (
            "floats",
            json!({"columns": [{"name": "k", "type": "float64"}, {"name": "v", "type": "float64", "nullable": true}], "primary_key": ["k"]}),
        ),
        (
            "docs",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "doc", "type": "json", "nullable": true}], "primary_key": ["id"]}),
        ),
        (
            "times",
            json!({"columns": [{"name": "t", "type": "timestamp"}, {"name": "n", "type": "int64", "nullable": true}], "primary_key": ["t"]}),
        ),
    ] {
        let (status, body) = server.put(&format!("/v1/tables/{name}"), schema).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// Requests that hyper rejects before axum sees them still deserve the
/// contract's JSON error: a request target with raw non-ASCII bytes, a
/// URI over 64 KiB, more than 100 headers, two different Content-Length
/// headers, a garbage request line. Each is answered by hyper with an
/// empty body (400, 414, 431).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known limitation, documented in README: hyper answers requests it cannot parse (non-ASCII target, head over 8 KiB, > 100 headers, conflicting Content-Length, garbage) itself, with an empty 400/414/431, and offers no hook to give them the JSON error"]
async fn requests_hyper_refuses_still_get_json_errors() {
    let server = Server::start().await;
    server.create_users().await;
    let many_headers: String = (0..200).map(|i| format!("X-{i}: a\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "raw non-ASCII path",
            b"GET /v1/tables/us\xffers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "overlong URI",
            format!(
                "GET /v1/tables/users/rows/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                "9".repeat(70_000)
            )
            .into_bytes(),
        ),
        (
            "too many headers",
            format!("GET /v1/tables HTTP/1.1\r\nHost: x\r\n{many_headers}Connection: close\r\n\r\n")
                .into_bytes(),
        ),
        (
            "conflicting Content-Length",
            b"PUT /v1/tables/users/rows/5 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\n{\"id\":5}".to_vec(),
        ),
        ("garbage", b"GARBAGE\r\n\r\n".to_vec()),
    ];
    let mut failures = Vec::new();
    for (what, request) in cases {
        let (status, head, body) = raw(&server, &request).await;
        if !(400..500).contains(&status) || !is_json_error(&body) {
            failures.push(format!("{what}: {head:?} {body:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(server.engine.visible_seq(), 0);
}

/// Paths axum does see, in odd shapes: all JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_paths_and_methods_get_json_errors() {
    let server = Server::start().await;
    server.create_users().await;
    // Long, but within the 8 KiB request head hyper accepts (longer heads
    // get hyper's own empty 431: see requests_hyper_refuses_still_get_json_errors).
    let long_key = "9".repeat(4_000);
    let cases: Vec<(&str, String, u16)> = vec![
        ("GET", "/v1/tables/".into(), 404),
        ("GET", "//v1/tables".into(), 404),
        ("GET", "/v1/tables/users/rows/".into(), 404),
        ("GET", "/v1/tables/users/rows/1/extra".into(), 404),
        ("GET", "/v1/tables/us%zzers".into(), 400),
        ("GET", "/v1/tables/users/rows/%zz".into(), 400),
        ("GET", format!("/v1/tables/users/rows/{long_key}"), 400),
        ("GET", "/v1/tables/%C3%A9".into(), 400),
        ("GET", "/v1/tables/USERS".into(), 400),
        ("GET", format!("/v1/tables/{}", "a".repeat(64)), 400),
        ("TRACE", "/v1/tables".into(), 405),
        ("FOO", "/v1/tables".into(), 405),
        ("OPTIONS", "/v1/tables".into(), 405),
        ("POST", "/v1/tables".into(), 405),
        ("DELETE", "/v1/tables/users".into(), 405),
        ("GET", "/v1/batch".into(), 405),
        ("PUT", "/v1/changes".into(), 405),
        ("GET", "/v1/consumers/x/ack".into(), 405),
    ];
    for (method, path, expected) in cases {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let (status, head, body) = raw(&server, request.as_bytes()).await;
        assert_eq!(status, expected, "{method} {path}: {head} {body}");
        assert!(
            is_json_error(&body),
            "{method} {path}: not our JSON error: {head:?} {body:?}"
        );
    }
    assert_eq!(server.engine.visible_seq(), 0);
}

/// Query strings: repeated, empty, non-numeric, negative, huge and
/// non-UTF-8 values are `bad_query`, named; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_values_are_bad_query_everywhere() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let seq = server.engine.visible_seq();
    let paths = [
        "/v1/changes?limit=1&limit=2",
        "/v1/changes?since=1&since=2",
        "/v1/changes?since=",
        "/v1/changes?since=-1",
        "/v1/changes?since=1.0",
        "/v1/changes?since=1e3",
        "/v1/changes?since=0x10",
        "/v1/changes?since=18446744073709551616",
        "/v1/changes?since=%FF",
        "/v1/changes?since=NOW",
        "/v1/changes?limit=0",
        "/v1/changes?limit=-1",
        "/v1/changes?limit=99999999999999999999999",
        "/v1/changes?limit=",
        "/v1/changes?format=",
        "/v1/changes?format=DEBEZIUM",
        "/v1/changes?ops=read",
        "/v1/changes?ops=upsert",
        "/v1/changes?tables=USERS",
        "/v1/changes?sinc=1",
        "/v1/changes?%FF=1",
        "/v1/tables/users/rows/1?as_of=",
        "/v1/tables/users/rows/1?as_of=-1",
        "/v1/tables/users/rows/1?as_of=1.5",
        "/v1/tables/users/rows/1?as_of=18446744073709551616",
        "/v1/tables/users/rows/1?as_of=1&as_of=1",
        "/v1/tables/users/rows/1?snapshot=true",
        "/v1/tables/users/rows?limit=0",
        "/v1/tables/users/rows?limit=1001",
        "/v1/tables/users/rows?start=1&next=2",
        "/v1/tables/users/rows?as_of=x",
        "/v1/tables/users/rows?bogus",
        "/v1/changes/stream?snapshot=1",
        "/v1/changes/stream?snapshot=TRUE",
        "/v1/changes/stream?since=x",
        "/v1/changes/stream?since=1&since=1",
        "/v1/changes/stream?consumer=c&snapshot=true",
    ];
    for path in paths {
        let (status, body) = server.get(path).await;
        assert_eq!(status.as_u16(), 400, "{path}: {body}");
        assert!(
            body["error"]["code"] == "bad_query" || body["error"]["code"] == "bad_key",
            "{path}: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    assert_eq!(server.engine.visible_seq(), seq);
}

/// `Content-Type` variants: charset parameters and case are fine, other
/// media types are 415, and nothing is written on a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_content_type_variants() {
    let server = Server::start().await;
    server.create_users().await;
    let body = r#"{"id":1,"email":"a"}"#;
    for (content_type, ok) in [
        ("application/json; charset=utf-8", true),
        ("application/json;charset=UTF-8", true),
        ("APPLICATION/JSON", true),
        ("application/json ; charset=\"utf-8\"", true),
        ("text/json", false),
        ("application/jsonx", false),
        ("application/x-www-form-urlencoded", false),
        ("multipart/form-data; boundary=x", false),
        ("", false),
    ] {
        let before = server.engine.visible_seq();
        let response = server
            .request(Method::PUT, "/v1/tables/users/rows/1")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, json) = json_of(response).await;
        if ok {
            assert_eq!(status, StatusCode::OK, "{content_type}: {json}");
        } else {
            assert_error(status, &json, 415, "unsupported_media_type");
            assert_eq!(server.engine.visible_seq(), before, "{content_type}");
        }
    }
}

/// Bodies that are JSON but not the right JSON: 400 with our codes,
/// nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_bodies_are_400_and_write_nothing() {
    let server = Server::start().await;
    server.create_users().await;
    floats_and_docs(&server).await;
    server.put_user(1, "a").await;
    let seq = server.engine.visible_seq();
    let deep_envelope = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(Method, String, String, &[&str])> = vec![
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), "".into(), &["invalid_json"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), "null".into(), &["invalid_row", "invalid_json"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), "[]".into(), &["invalid_row", "invalid_json"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), "\"x\"".into(), &["invalid_row", "invalid_json"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), "{}".into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), "\u{feff}{\"id\":1}".into(), &["invalid_json"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1} {"id":1}"#.into(), &["invalid_json"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), deep_envelope.clone(), &["invalid_json", "invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":"1"}"#.into(), &["invalid_row", "key_mismatch"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1.0}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1e0}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1,"age":9223372036854775808}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1,"age":-9223372036854775809}"#.into(), &["invalid_row", "invalid_json"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1,"age":1e400}"#.into(), &["invalid_json", "invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1,"age":2.5}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1,"age":"NaN"}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1,"email":1}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":1,"Email":"x"}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":2}"#.into(), &["key_mismatch"]),
        (Method::PUT, "/v1/tables/users/rows/1".to_string(), r#"{"id":null}"#.into(), &["invalid_row"]),
        (Method::PATCH, "/v1/tables/users/rows/1".to_string(), r#"{"id":null}"#.into(), &["invalid_row", "key_mismatch"]),
        (Method::PATCH, "/v1/tables/users/rows/1".to_string(), r#"{"id":2}"#.into(), &["invalid_row", "key_mismatch"]),
        (Method::PATCH, "/v1/tables/users/rows/1".to_string(), r#"{"nope":2}"#.into(), &["invalid_row"]),
        (Method::PATCH, "/v1/tables/users/rows/1".to_string(), "null".into(), &["invalid_row", "invalid_json"]),
        (Method::PUT, "/v1/tables/floats/rows/1".to_string(), r#"{"k":1,"v":"nan"}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/floats/rows/1".to_string(), r#"{"k":1,"v":"inf"}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/floats/rows/1".to_string(), r#"{"k":1,"v":NaN}"#.into(), &["invalid_json"]),
        (Method::PUT, "/v1/tables/floats/rows/1".to_string(), r#"{"k":1,"v":"1.5"}"#.into(), &["invalid_row"]),
        (Method::PUT, "/v1/tables/floats/rows/NaN".to_string(), r#"{"k":"NaN"}"#.into(), &["invalid_row", "bad_key"]),
        (Method::PUT, "/v1/tables/floats/rows/1".to_string(), r#"{"k":"NaN"}"#.into(), &["invalid_row", "key_mismatch"]),
        (Method::PUT, "/v1/tables/floats/rows/1e400".to_string(), r#"{"k":1}"#.into(), &["bad_key"]),
        (Method::PUT, "/v1/tables/docs/rows/1".to_string(), r#"{"id":1,"doc":"\ud800"}"#.into(), &["invalid_json"]),
        (Method::PUT, "/v1/tables/times/rows/x".to_string(), r#"{"t":"x"}"#.into(), &["bad_key"]),
        (Method::PUT, format!("/v1/tables/times/rows/{}", enc("2016-12-31T23:59:60Z")), r#"{"t":"2016-12-31T23:59:60Z"}"#.into(), &["bad_key", "invalid_row"]),
        (Method::PUT, format!("/v1/tables/times/rows/{}", enc("10000-01-01T00:00:00Z")), r#"{"t":"10000-01-01T00:00:00Z"}"#.into(), &["bad_key", "invalid_row"]),
        (Method::PUT, format!("/v1/tables/times/rows/{}", enc("0000-01-01T00:00:00+01:00")), r#"{"t":"0000-01-01T00:00:00+01:00"}"#.into(), &["bad_key", "invalid_row"]),
        (Method::PUT, format!("/v1/tables/times/rows/{}", enc("2026-02-30T00:00:00Z")), r#"{"t":"2026-02-30T00:00:00Z"}"#.into(), &["bad_key", "invalid_row"]),
        (Method::PUT, format!("/v1/tables/times/rows/{}", enc("2026-01-01T00:00:00.0000001Z")), r#"{"t":"2026-01-01T00:00:00.0000001Z"}"#.into(), &["bad_key", "invalid_row"]),
        (Method::PUT, format!("/v1/tables/times/rows/{}", enc("2026-01-01T00:00:00")), r#"{"t":"2026-01-01T00:00:00"}"#.into(), &["bad_key", "invalid_row"]),
        (Method::POST, "/v1/batch".to_string(), "null".into(), &["invalid_json"]),
        (Method::POST, "/v1/batch".to_string(), "[]".into(), &["invalid_json"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[]}"#.into(), &["invalid_batch"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"insert","table":"users","row":{"id":5}}]}"#.into(), &["invalid_json"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","op":"upsert","table":"users","row":{"id":5}}]}"#.into(), &["invalid_json"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","table":"users","row":{"id":5}}],"extra":1}"#.into(), &["invalid_json"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","table":"users","row":{"id":5}},{"op":"delete","table":"users","key":{"id":1,"email":"a"}}]}"#.into(), &["invalid_row", "bad_key"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","table":"users","row":{"id":5}},{"op":"delete","table":"users","key":{}}]}"#.into(), &["invalid_row", "bad_key"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","table":"users","row":{"id":5}},{"op":"delete","table":"users","key":[1]}]}"#.into(), &["invalid_row", "bad_key", "invalid_json"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","table":"users","row":{"id":5}},{"op":"patch","table":"users","key":{"id":1},"row":{"id":2}}]}"#.into(), &["invalid_row", "key_mismatch"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","table":"users","row":{"id":5}},{"op":"upsert","table":"Users","row":{"id":5}}]}"#.into(), &["bad_table_name"]),
        (Method::POST, "/v1/batch".to_string(), r#"{"ops":[{"op":"upsert","table":"users","row":{"id":5},"if_match":-1}]}"#.into(), &["invalid_json"]),
        (Method::POST, "/v1/consumers/c/ack".to_string(), r#"{"seq":-1}"#.into(), &["invalid_json"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"id","type":"int64"}],"primary_key":["id"],"name":"t3"}"#.into(), &["invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"id","type":"int64","nullable":true}],"primary_key":["id"]}"#.into(), &["invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"id","type":"int64"},{"name":"id","type":"string"}],"primary_key":["id"]}"#.into(), &["invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"id","type":"int64"}],"primary_key":[]}"#.into(), &["invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"id","type":"int64"}],"primary_key":["id","id"]}"#.into(), &["invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"id","type":"int64"}],"primary_key":["nope"]}"#.into(), &["invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"","type":"int64"}],"primary_key":[""]}"#.into(), &["invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[{"name":"id","type":"uuid"}],"primary_key":["id"]}"#.into(), &["invalid_json", "invalid_schema"]),
        (Method::PUT, "/v1/tables/t2".to_string(), r#"{"columns":[],"primary_key":[]}"#.into(), &["invalid_schema"]),
    ];
    for (method, path, body, codes) in cases {
        let response = server
            .request(method.clone(), &path)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, json) = json_of(response).await;
        let code = json["error"]["code"].as_str().unwrap_or("");
        assert!(
            status.is_client_error() && codes.contains(&code),
            "{method} {path} {body:.80}: {status} {json}"
        );
        assert!(json["error"]["message"].is_string(), "{json}");
        assert_eq!(
            server.engine.visible_seq(),
            seq,
            "{method} {path} {body:.80} wrote something"
        );
    }
    let (_, tables) = server.get("/v1/tables").await;
    assert_eq!(tables["tables"].as_array().unwrap().len(), 4, "{tables}");
}

/// A row object with the same column twice is refused (as JSON whose
/// meaning is ambiguous, naming the key), never parsed into a map that
/// keeps the last one and silently drops the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_with_a_duplicate_column_is_refused() {
    let server = Server::start().await;
    server.create_users().await;
    let response = server
        .request(Method::PUT, "/v1/tables/users/rows/1")
        .header("content-type", "application/json")
        .body(r#"{"id":1,"email":"first","email":"second"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, 400, "invalid_json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"email\" appears twice"),
        "{body}"
    );
    assert_eq!(server.engine.visible_seq(), 0);
}

/// -0.0 and +0.0 are one key: in the path, in the body, in the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_zero_and_zero_are_one_float_key() {
    let server = Server::start().await;
    floats_and_docs(&server).await;
    let (status, body) = server
        .put("/v1/tables/floats/rows/-0.0", json!({"k": -0.0, "v": 1.0}))
        .await;
    assert_eq!(
        (status, &body["op"]),
        (StatusCode::OK, &json!("insert")),
        "{body}"
    );
    let (status, body) = server
        .put("/v1/tables/floats/rows/0", json!({"k": 0.0, "v": 2.0}))
        .await;
    assert_eq!(
        (status, &body["op"]),
        (StatusCode::OK, &json!("update")),
        "{body}"
    );
    // Path -0 with body 0 and vice versa are the same key, not a mismatch.
    let (status, body) = server
        .put("/v1/tables/floats/rows/-0", json!({"k": 0, "v": 3.0}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, row) = server.get("/v1/tables/floats/rows/-0.0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["v"], 3.0);
    let (_, page) = server.get("/v1/tables/floats/rows").await;
    assert_eq!(page["rows"].as_array().unwrap().len(), 1, "{page}");
    let (_, changes) = server.get("/v1/changes?since=0").await;
    let changes = changes["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    for pair in changes.windows(2) {
        assert_eq!(pair[1]["before"], pair[0]["after"], "chain");
        assert_eq!(pair[1]["key"], pair[0]["key"]);
    }
}

/// Float64 extremes and the NaN/Infinity strings round-trip through a
/// row, a read and an event; and as keys, in the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_specials_round_trip_as_values_and_keys() {
    let server = Server::start().await;
    floats_and_docs(&server).await;
    let values = [
        json!("NaN"),
        json!("Infinity"),
        json!("-Infinity"),
        json!(f64::MAX),
        json!(f64::MIN_POSITIVE),
        json!(5e-324),
        json!(-0.0),
        json!(0.1),
    ];
    for (i, v) in values.iter().enumerate() {
        let (status, body) = server
            .put(
                &format!("/v1/tables/floats/rows/{i}"),
                json!({"k": i, "v": v}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}: {body}");
        let (_, row) = server.get(&format!("/v1/tables/floats/rows/{i}")).await;
        assert_eq!(&row["v"], v, "{v}");
        if v.is_f64() && v.as_f64().unwrap().is_sign_negative() {
            assert!(row["v"].as_f64().unwrap().is_sign_negative(), "-0.0 kept");
        }
    }
    for key in ["Infinity", "-Infinity", "1.7976931348623157e308", "5e-324"] {
        let body = match key {
            "Infinity" | "-Infinity" => json!({"k": key}),
            _ => json!({"k": key.parse::<f64>().unwrap()}),
        };
        let (status, response) = server
            .put(&format!("/v1/tables/floats/rows/{}", enc(key)), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{key}: {response}");
        let (status, _) = server
            .get(&format!("/v1/tables/floats/rows/{}", enc(key)))
            .await;
        assert_eq!(status, StatusCode::OK, "{key}");
    }
    // The range scan's `next` of a float key reads back as the same key.
    let mut next: Option<String> = None;
    let mut seen = 0;
    loop {
        let path = match &next {
            Some(n) => format!("/v1/tables/floats/rows?limit=1&next={}", enc(n)),
            None => "/v1/tables/floats/rows?limit=1".to_owned(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        seen += page["rows"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
        assert!(seen < 100);
    }
    assert_eq!(seen, values.len() + 4);
    // Events carry the same forms, keys included, in both formats.
    for format in ["native", "debezium"] {
        let (_, page) = server
            .get(&format!("/v1/changes?since=0&limit=1000&format={format}"))
            .await;
        let text = page.to_string();
        for special in ["\"NaN\"", "\"Infinity\"", "\"-Infinity\""] {
            assert!(text.contains(special), "{format}: {special} missing");
        }
        if format == "native" {
            let keys: Vec<&Json> = page["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| &e["key"]["k"])
                .collect();
            assert!(keys.contains(&&json!("Infinity")) && keys.contains(&&json!("-Infinity")));
        }
    }
}

/// Timestamps: offsets, lower case, a space separator and short fractions
/// name the same instant as the UTC form, in paths and bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_keys_in_other_forms_are_the_same_key() {
    let server = Server::start().await;
    floats_and_docs(&server).await;
    let (status, body) = server
        .put(
            &format!("/v1/tables/times/rows/{}", enc("2026-01-01T00:00:00Z")),
            json!({"t": "2026-01-01T01:00:00+01:00", "n": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for form in [
        "2026-01-01T00:00:00Z",
        "2026-01-01t00:00:00z",
        "2026-01-01 00:00:00Z",
        "2025-12-31T19:00:00-05:00",
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00.000000000Z",
    ] {
        let (status, row) = server
            .get(&format!("/v1/tables/times/rows/{}", enc(form)))
            .await;
        assert_eq!(status, StatusCode::OK, "{form}: {row}");
        assert_eq!(row["t"], "2026-01-01T00:00:00.000000Z", "{form}");
    }
    for edge in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
        let (status, body) = server
            .put(
                &format!("/v1/tables/times/rows/{}", enc(edge)),
                json!({"t": edge}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{edge}: {body}");
    }
    let (_, page) = server.get("/v1/tables/times/rows").await;
    let keys: Vec<&str> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["t"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "0000-01-01T00:00:00.000000Z",
            "2026-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z"
        ]
    );
}

/// A `json` column holds "any JSON value": a number it cannot hold
/// exactly must be refused, not silently rounded (an integer beyond u64
/// comes back as a different number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_columns_keep_big_integers_or_refuse_them() {
    let server = Server::start().await;
    floats_and_docs(&server).await;
    for text in [
        "123456789012345678901234567890",
        "18446744073709551617",
        "-9223372036854775809",
    ] {
        let body = format!(r#"{{"id":1,"doc":{{"n":{text}}}}}"#);
        let response = server
            .request(Method::PUT, "/v1/tables/docs/rows/1")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status == StatusCode::OK {
            let raw = server
                .request(Method::GET, "/v1/tables/docs/rows/1")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(raw.contains(text), "{text} came back as {raw}");
        } else {
            let (_, json) = json_of(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        }
    }
}

/// Bytes keys travel as padded base64 in the path (with `+`, `/` and `=`
/// percent-encoded) and in `next`; every byte value round-trips and
/// orders by bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_keys_round_trip_through_paths_and_pages() {
    let server = Server::start().await;
    let (status, _) = server
        .put(
            "/v1/tables/blobs",
            json!({"columns": [{"name": "k", "type": "bytes"}, {"name": "v", "type": "bytes", "nullable": true}], "primary_key": ["k"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // (base64, bytes) pairs chosen for '+', '/', '=' and high bytes.
    let keys = [
        "AA==", "AAA=", "AAAA", "+/8=", "//79", "gA==", "/w==", "AP8H",
    ];
    for key in keys {
        let (status, body) = server
            .put(
                &format!("/v1/tables/blobs/rows/{}", enc(key)),
                json!({"k": key, "v": key}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{key}: {body}");
        let (status, row) = server
            .get(&format!("/v1/tables/blobs/rows/{}", enc(key)))
            .await;
        assert_eq!((status, &row["k"]), (StatusCode::OK, &json!(key)), "{key}");
    }
    // Non-canonical, unpadded, URL-safe and whitespace forms are refused.
    for bad in ["AB==", "AA", "-_8=", "A A=", "AA==\n", "====", "A"] {
        let (status, body) = server
            .get(&format!("/v1/tables/blobs/rows/{}", enc(bad)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
    }
    let mut next: Option<String> = None;
    let mut got = Vec::new();
    loop {
        let path = match &next {
            Some(n) => format!("/v1/tables/blobs/rows?limit=3&next={}", enc(n)),
            None => "/v1/tables/blobs/rows?limit=3".into(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        got.extend(
            page["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["k"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
    }
    let decode = |s: &str| -> Vec<u8> {
        // A tiny base64 decoder for the test's own check of order.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|&c| c != b'=') {
            bits = (bits << 6) | alphabet.iter().position(|&a| a == c).unwrap() as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    };
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort_by_key(|k| decode(k));
    assert_eq!(got, expected);
}

/// A request refused before its body is read (413 by length, 415, 401,
/// 404, 405) must not leave the body's bytes to be parsed as the next
/// request on the same connection: a body that holds a request line is
/// data, never a second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_body_is_never_parsed_as_a_request() {
    use tidefeed_http::{Scope, TokenRule, TokenSecret};
    for with_token in [false, true] {
        let server = Server::start_with(
            |_| {},
            |options| {
                options.max_body_bytes = 1024;
                if with_token {
                    options.tokens = vec![TokenRule {
                        secret: TokenSecret::Plain("t".into()),
                        scopes: vec![Scope::Read, Scope::Write, Scope::Admin],
                        tables: None,
                    }];
                }
            },
        )
        .await;
        let mut server = server;
        if with_token {
            server.token = Some("t".into());
        }
        server.create_users().await;
        server.put_user(1, "victim").await;
        let smuggled = "DELETE /v1/tables/users/rows/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: 0\r\n\r\n";
        let cases: Vec<(&str, &str, usize)> = vec![
            ("PUT", "application/json", 2000), // 413 by length
            ("PUT", "text/plain", 200),        // 415
            ("PUT", "application/json", 200),  // 401 when tokens are on
            ("POST", "application/json", 200), // 405 (POST on a row)
        ];
        for (method, content_type, length) in cases {
            let mut body = smuggled.to_owned();
            while body.len() < length {
                body.push(' ');
            }
            let path = "/v1/tables/users/rows/1";
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            // Keep-alive: no Connection: close, so a second response would
            // come on this connection.
            let (status, head, rest) =
                raw_for(&server, request.as_bytes(), Duration::from_millis(800)).await;
            assert!(status >= 400, "{head}");
            assert!(
                !rest.contains("HTTP/1.1 200"),
                "a second response on the connection: {rest:?}"
            );
            let (status, row) = server.get("/v1/tables/users/rows/1").await;
            assert_eq!(
                (status, &row["email"]),
                (StatusCode::OK, &json!("victim")),
                "{method} {content_type} {length}: the body ran as a request"
            );
        }
        // And the plain 404 route.
        let body = smuggled;
        let request = format!(
            "PUT /v1/nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = raw_for(&server, request.as_bytes(), Duration::from_millis(800)).await;
        let (status, _) = server.get("/v1/tables/users/rows/1").await;
        assert_eq!(status, StatusCode::OK, "the body of a 404 ran as a request");
    }
}

/// Clients that vanish mid-request (partial headers, partial bodies,
/// mid-stream) leave the server serving, with no stream slot held and
/// nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_request_leave_the_server_healthy() {
    let server = Server::start_with(
        |_| {},
        |options| {
            options.max_streams = 4;
            options.keep_alive_interval = Duration::from_millis(100);
        },
    )
    .await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let partials: Vec<Vec<u8>> = vec![
        b"PUT /v1/tables/users/rows/2 HTTP/1.1\r\nHost: x\r\nContent-Ty".to_vec(),
        b"PUT /v1/tables/users/rows/2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":2,".to_vec(),
        b"PUT /v1/tables/users/rows/2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"id\":2,\r\n".to_vec(),
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ops\":[".to_vec(),
        b"GET /v1/changes/stream?since=0 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        for round in 0..20 {
            for partial in &partials {
                let mut socket = std::net::TcpStream::connect(&addr).unwrap();
                socket.write_all(partial).unwrap();
                if round % 2 == 0 {
                    // Read a little (the stream's first frame), then go.
                    socket
                        .set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                    let mut buffer = [0u8; 64];
                    let _ = socket.read(&mut buffer);
                }
                drop(socket);
            }
        }
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = server.get("/v1/status").await;
        assert_eq!(status, StatusCode::OK);
        if body["open_streams"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stream slots held: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.engine.visible_seq(), 1, "a vanished request wrote");
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(server.stream("since=0", None).await);
    }
    for stream in &mut streams {
        assert_eq!(stream.changes(1).await[0].0, "1");
    }
}

/// `Expect: 100-continue` (curl sends it for bodies over 1 KiB): a body
/// past the limit is refused at once with the JSON 413, before the client
/// sends it; an acceptable one gets `100 Continue` and is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_before_the_body() {
    let server = Server::start_with(|_| {}, |options| options.max_body_bytes = 4096).await;
    server.create_users().await;
    let (status, head, body) = raw_for(
        &server,
        b"PUT /v1/tables/users/rows/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status, 413, "{head} {body}");
    assert!(is_json_error(&body), "{body}");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let body = br#"{"id":1,"email":"continued"}"#;
        socket
            .write_all(
                format!(
                    "PUT /v1/tables/users/rows/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        let mut first = [0u8; 64];
        let n = socket.read(&mut first).unwrap();
        let interim = String::from_utf8_lossy(&first[..n]).into_owned();
        socket.write_all(body).unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest);
        (interim, String::from_utf8_lossy(&rest).into_owned())
    })
    .await
    .unwrap();
    assert!(answer.0.starts_with("HTTP/1.1 100"), "{answer:?}");
    assert!(
        answer.0.contains("HTTP/1.1 200") || answer.1.contains("HTTP/1.1 200"),
        "{answer:?}"
    );
    let (_, row) = server.get("/v1/tables/users/rows/1").await;
    assert_eq!(row["email"], "continued");
}
