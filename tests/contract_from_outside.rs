//! The interface contract (DESIGN.md §7 and §9, README's API section)
//! checked from outside: a real `tidefeed serve` child process, driven
//! over HTTP with reqwest and read over SSE both as raw bytes and through
//! `eventsource-stream`, exactly as a client would. Every JSON field name
//! and type, every status code and error code the contract names, the SSE
//! framing, `since` / `Last-Event-ID` edges, snapshots, the Debezium
//! envelope, ETags and `If-Match` on every write route, the consumer
//! lifecycle, HEAD, and percent-encoded and composite keys.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::sse::Sse;
use common::Tidefeed;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const PATIENCE: Duration = Duration::from_secs(30);

/// A server on a temporary directory, with a client.
struct Harness {
    server: Tidefeed,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// One answer: status, headers and the body as JSON (`Null` when empty,
/// a JSON string holding the text when it is not JSON).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Json,
    raw: String,
}

impl Answer {
    fn etag(&self) -> Option<String> {
        self.headers
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Asserts the contract's error shape: `{"error":{"code","message"}}`
    /// with the expected status and code.
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{code}: {}", self.raw);
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some("application/json".to_owned()),
            "errors are JSON: {}",
            self.raw
        );
        let error = &self.body["error"];
        assert!(error.is_object(), "no error object: {}", self.raw);
        assert_eq!(error["code"], code, "{}", self.raw);
        let message = error["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "a human message: {}", self.raw);
    }
}

impl Harness {
    fn start() -> Harness {
        Harness::start_with_env(&[])
    }

    fn start_with_env(env: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let server =
            Tidefeed::start_with_env(&dir.path().join("data"), &dir.path().join("log"), env);
        Harness {
            server,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Json>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, self.server.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response.text().await.unwrap();
        let body = if raw.is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&raw).unwrap_or_else(|_| Json::String(raw.clone()))
        };
        Answer {
            status,
            headers,
            body,
            raw,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[]).await
    }

    async fn put(&self, path: &str, body: Json) -> Answer {
        self.call(Method::PUT, path, Some(body), &[]).await
    }

    async fn create_users(&self) {
        let answer = self.put("/v1/tables/users", users_schema()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.raw);
    }

    /// Upserts a user and returns its seq.
    async fn put_user(&self, id: i64, email: &str) -> u64 {
        let answer = self
            .put(
                &format!("/v1/tables/users/rows/{id}"),
                json!({"id": id, "email": email}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.raw);
        answer.body["seq"].as_u64().unwrap()
    }

    async fn stream_response(&self, query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .client
            .get(self.server.url(&format!("/v1/changes/stream?{query}")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    async fn raw_stream(&self, query: &str, headers: &[(&str, &str)]) -> RawStream {
        RawStream::new(self.stream_response(query, headers).await)
    }

    async fn pull(&self, query: &str) -> Json {
        let answer = self.get(&format!("/v1/changes?{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.raw);
        answer.body
    }
}

fn users_schema() -> Json {
    json!({
        "columns": [
            {"name": "id", "type": "int64"},
            {"name": "email", "type": "string", "nullable": true}
        ],
        "primary_key": ["id"]
    })
}

fn percent(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One SSE frame, read as raw text.
#[derive(Debug, Clone)]
struct Frame {
    text: String,
    event: Option<String>,
    id: Option<String>,
    data: Vec<String>,
    comments: Vec<String>,
}

impl Frame {
    fn data_json(&self) -> Json {
        assert_eq!(self.data.len(), 1, "one data line: {:?}", self.text);
        serde_json::from_str(&self.data[0]).expect("data is one JSON value")
    }

    fn is_comment(&self) -> bool {
        self.event.is_none() && self.id.is_none() && self.data.is_empty()
    }
}

struct RawStream {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: Vec<u8>,
}

impl RawStream {
    fn new(response: reqwest::Response) -> RawStream {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        RawStream {
            body: response
                .bytes_stream()
                .map(|chunk| chunk.map(|bytes| bytes.to_vec()))
                .boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next frame, `None` at the end of the stream; panics after
    /// `patience` without one.
    async fn frame_within(&mut self, patience: Duration) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let bytes: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(bytes[..end].to_vec()).expect("UTF-8 frames");
                assert!(!text.contains('\r'), "no CR: {text:?}");
                let mut frame = Frame {
                    text: text.clone(),
                    event: None,
                    id: None,
                    data: Vec::new(),
                    comments: Vec::new(),
                };
                for line in text.split('\n') {
                    if let Some(comment) = line.strip_prefix(':') {
                        frame.comments.push(comment.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        assert!(frame.id.is_none(), "two ids: {text:?}");
                        frame.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        assert!(frame.event.is_none(), "two events: {text:?}");
                        frame.event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data.push(v.to_owned());
                    } else {
                        panic!("unexpected line {line:?} in {text:?}");
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout(patience, self.body.next())
                .await
                .expect("a frame within the patience")?;
            self.buffer
                .extend_from_slice(&chunk.expect("the stream reads"));
        }
    }

    async fn frame(&mut self) -> Option<Frame> {
        self.frame_within(PATIENCE).await
    }

    /// The next frame that is not a comment or a resolved marker.
    async fn change(&mut self) -> Frame {
        loop {
            let frame = self.frame().await.expect("the stream is open");
            if frame.is_comment() || frame.event.as_deref() == Some("resolved") {
                continue;
            }
            return frame;
        }
    }

    /// Asserts that no change (non-comment, non-resolved frame) arrives
    /// within `quiet`.
    async fn assert_no_change(&mut self, quiet: Duration) {
        let extra = tokio::time::timeout(quiet, async {
            loop {
                match self.frame_within(PATIENCE).await {
                    None => return None,
                    Some(f) if f.is_comment() || f.event.as_deref() == Some("resolved") => {}
                    Some(f) => return Some(f),
                }
            }
        })
        .await;
        if let Ok(Some(frame)) = extra {
            panic!("an unexpected frame: {frame:?}");
        }
    }
}

fn assert_native_event(event: &Json) {
    let object = event.as_object().expect("an event object");
    let keys: BTreeSet<&str> = object.keys().map(|k| k.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "seq", "ts", "table", "op", "key", "before", "after", "batch",
    ]
    .into_iter()
    .collect();
    assert!(
        expected.is_subset(&keys),
        "a native event has every field: {event}"
    );
    assert!(event["seq"].is_u64(), "{event}");
    let ts = event["ts"].as_str().expect("ts is a string");
    assert!(
        ts.ends_with('Z') && ts.len() >= 20 && ts.as_bytes()[10] == b'T',
        "RFC 3339 UTC ts: {ts}"
    );
    assert!(event["table"].is_string());
    assert!(["insert", "update", "delete", "read"].contains(&event["op"].as_str().unwrap()));
    assert!(event["key"].is_object(), "key is an object: {event}");
    assert!(event["before"].is_object() || event["before"].is_null());
    assert!(event["after"].is_object() || event["after"].is_null());
    if event["op"] == "read" {
        assert!(event["batch"].is_null(), "{event}");
    } else {
        let batch = &event["batch"];
        assert!(batch["first_seq"].is_u64(), "{event}");
        assert!(batch["index"].is_u64(), "{event}");
        assert!(batch["size"].is_u64(), "{event}");
        assert_eq!(
            batch["first_seq"].as_u64().unwrap() + batch["index"].as_u64().unwrap(),
            event["seq"].as_u64().unwrap(),
            "{event}"
        );
    }
}

// ---------------------------------------------------------------- tables

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_routes_answer_the_documented_shapes_and_codes() {
    let h = Harness::start();
    let created = h.put("/v1/tables/users", users_schema()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert_eq!(created.body["name"], "users");
    assert_eq!(created.body["primary_key"], json!(["id"]));
    let columns = created.body["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 2);
    assert_eq!(columns[0]["name"], "id");
    assert_eq!(columns[0]["type"], "int64");
    assert_eq!(columns[1]["name"], "email");
    assert_eq!(columns[1]["type"], "string");
    assert_eq!(columns[1]["nullable"], true);

    let again = h.put("/v1/tables/users", users_schema()).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "identical exists: {}",
        again.raw
    );
    assert_eq!(again.body, created.body);

    let mut different = users_schema();
    different["columns"][1]["nullable"] = json!(false);
    h.put("/v1/tables/users", different)
        .await
        .assert_error(StatusCode::CONFLICT, "schema_conflict");

    let list = h.get("/v1/tables").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body, json!({"tables": [created.body.clone()]}));
    let one = h.get("/v1/tables/users").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body, created.body);

    h.get("/v1/tables/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "table_not_found");
    for bad in ["Users", "1users", "_users", "us-ers", &"a".repeat(64)] {
        h.put(&format!("/v1/tables/{bad}"), users_schema())
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_table_name");
        h.get(&format!("/v1/tables/{bad}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_table_name");
    }
    let longest = format!("a{}", "b".repeat(62));
    let answer = h
        .put(&format!("/v1/tables/{longest}"), users_schema())
        .await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "63 chars: {}",
        answer.raw
    );

    // Every column type of §3 is accepted and described back.
    let all_types = json!({
        "columns": [
            {"name": "k", "type": "string"},
            {"name": "i", "type": "int64", "nullable": true},
            {"name": "f", "type": "float64", "nullable": true},
            {"name": "b", "type": "bool", "nullable": true},
            {"name": "y", "type": "bytes", "nullable": true},
            {"name": "t", "type": "timestamp", "nullable": true},
            {"name": "j", "type": "json", "nullable": true}
        ],
        "primary_key": ["k"]
    });
    let answer = h.put("/v1/tables/kinds", all_types).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.raw);
    let types: Vec<&str> = answer.body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "string",
            "int64",
            "float64",
            "bool",
            "bytes",
            "timestamp",
            "json"
        ]
    );
}

// ------------------------------------------------------------------ rows

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_writes_return_seq_op_and_an_etag_of_that_seq() {
    let h = Harness::start();
    h.create_users().await;

    let insert = h
        .put("/v1/tables/users/rows/7", json!({"id": 7, "email": "a@x"}))
        .await;
    assert_eq!(insert.status, StatusCode::OK, "{}", insert.raw);
    let seq = insert.body["seq"].as_u64().unwrap();
    assert_eq!(insert.body, json!({"seq": seq, "op": "insert"}));
    assert_eq!(insert.etag(), Some(format!("\"{seq}\"")));

    let update = h
        .put("/v1/tables/users/rows/7", json!({"id": 7, "email": "b@x"}))
        .await;
    assert_eq!(update.body, json!({"seq": seq + 1, "op": "update"}));
    assert_eq!(update.etag(), Some(format!("\"{}\"", seq + 1)));

    let patch = h
        .call(
            Method::PATCH,
            "/v1/tables/users/rows/7",
            Some(json!({"email": "c@x"})),
            &[],
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.raw);
    assert_eq!(patch.body, json!({"seq": seq + 2, "op": "update"}));
    assert_eq!(patch.etag(), Some(format!("\"{}\"", seq + 2)));

    let read = h.get("/v1/tables/users/rows/7").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, json!({"id": 7, "email": "c@x"}));
    assert_eq!(read.etag(), Some(format!("\"{}\"", seq + 2)));

    // as_of gives the row and the ETag of its last change at that seq.
    let old = h.get(&format!("/v1/tables/users/rows/7?as_of={seq}")).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.raw);
    assert_eq!(old.body, json!({"id": 7, "email": "a@x"}));
    assert_eq!(old.etag(), Some(format!("\"{seq}\"")));

    let delete = h
        .call(Method::DELETE, "/v1/tables/users/rows/7", None, &[])
        .await;
    assert_eq!(delete.status, StatusCode::OK, "{}", delete.raw);
    assert_eq!(delete.body, json!({"seq": seq + 3, "op": "delete"}));

    h.get("/v1/tables/users/rows/7")
        .await
        .assert_error(StatusCode::NOT_FOUND, "row_not_found");
    h.call(Method::DELETE, "/v1/tables/users/rows/7", None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "row_not_found");
    h.call(
        Method::PATCH,
        "/v1/tables/users/rows/7",
        Some(json!({"email": "d@x"})),
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "row_not_found");
    // Neither 404 consumed a seq: the next write is contiguous.
    assert_eq!(h.put_user(8, "e@x").await, seq + 4);
    // ... and the feed holds no event for them.
    let page = h.pull(&format!("since={}", seq + 3)).await;
    let seqs: Vec<u64> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [seq + 4]);

    // Writes to a table that does not exist.
    h.put("/v1/tables/nope/rows/1", json!({"id": 1}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "table_not_found");
    h.get("/v1/tables/nope/rows/1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "table_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_keys_and_bodies_get_their_stable_codes() {
    let h = Harness::start();
    h.create_users().await;
    let before = h.get("/v1/status").await.body["visible_seq"].clone();

    let unknown = h
        .put("/v1/tables/users/rows/1", json!({"id": 1, "nick": "x"}))
        .await;
    unknown.assert_error(StatusCode::BAD_REQUEST, "invalid_row");
    assert!(
        unknown.raw.contains("nick"),
        "names the column: {}",
        unknown.raw
    );
    let wrong = h
        .put("/v1/tables/users/rows/1", json!({"id": 1, "email": 5}))
        .await;
    wrong.assert_error(StatusCode::BAD_REQUEST, "invalid_row");
    assert!(wrong.raw.contains("email"), "{}", wrong.raw);
    let missing = h
        .put("/v1/tables/users/rows/1", json!({"email": "x"}))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.raw);
    assert!(
        ["invalid_row", "key_mismatch"].contains(&missing.body["error"]["code"].as_str().unwrap()),
        "{}",
        missing.raw
    );
    h.put("/v1/tables/users/rows/1", json!({"id": 2, "email": "x"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "key_mismatch");
    h.put("/v1/tables/users/rows/abc", json!({"id": 1}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_key");
    h.get("/v1/tables/users/rows/abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_key");
    h.call(Method::DELETE, "/v1/tables/users/rows/1.5", None, &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_key");

    let response = h
        .client
        .put(h.server.url("/v1/tables/users/rows/1"))
        .header("content-type", "application/json")
        .body("{\"id\": 1,")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");

    let response = h
        .client
        .put(h.server.url("/v1/tables/users/rows/1"))
        .header("content-type", "text/plain")
        .body("{\"id\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");

    h.get("/v1/tables/users/rows/1?as_of=abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_query");
    h.get("/v1/tables/users/rows/1?as_of=999")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "future_seq");
    h.get("/v1/tables/users/rows?limit=abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_query");

    // Nothing above wrote anything.
    assert_eq!(h.get("/v1/status").await.body["visible_seq"], before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_payload_too_large() {
    let h = Harness::start_with_env(&[("TIDEFEED_SERVER__MAX_BODY_BYTES", "4KiB")]);
    h.create_users().await;
    let answer = h
        .put(
            "/v1/tables/users/rows/1",
            json!({"id": 1, "email": "x".repeat(8 << 10)}),
        )
        .await;
    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    h.get("/v1/tables/users/rows/1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "row_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_put_patch_and_delete_and_never_writes_on_412() {
    let h = Harness::start();
    h.create_users().await;
    let seq = h.put_user(1, "a@x").await;
    let stale = format!("\"{}\"", seq + 50);
    let current = format!("\"{seq}\"");

    h.call(
        Method::PUT,
        "/v1/tables/users/rows/1",
        Some(json!({"id": 1, "email": "b@x"})),
        &[("If-Match", &stale)],
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    h.call(
        Method::PATCH,
        "/v1/tables/users/rows/1",
        Some(json!({"email": "b@x"})),
        &[("If-Match", &stale)],
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    h.call(
        Method::DELETE,
        "/v1/tables/users/rows/1",
        None,
        &[("If-Match", &stale)],
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let read = h.get("/v1/tables/users/rows/1").await;
    assert_eq!(read.body, json!({"id": 1, "email": "a@x"}));
    assert_eq!(read.etag(), Some(current.clone()));
    assert_eq!(
        h.pull(&format!("since={seq}")).await["changes"],
        json!([]),
        "a refused write leaves no event"
    );

    let put = h
        .call(
            Method::PUT,
            "/v1/tables/users/rows/1",
            Some(json!({"id": 1, "email": "b@x"})),
            &[("If-Match", &current)],
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.raw);
    let tag = put.etag().unwrap();
    let patch = h
        .call(
            Method::PATCH,
            "/v1/tables/users/rows/1",
            Some(json!({"email": "c@x"})),
            &[("If-Match", &tag)],
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.raw);
    let tag = patch.etag().unwrap();
    // The old tag no longer matches.
    h.call(
        Method::DELETE,
        "/v1/tables/users/rows/1",
        None,
        &[("If-Match", &current)],
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let delete = h
        .call(
            Method::DELETE,
            "/v1/tables/users/rows/1",
            None,
            &[("If-Match", &tag)],
        )
        .await;
    assert_eq!(delete.status, StatusCode::OK, "{}", delete.raw);
    assert_eq!(delete.body["op"], "delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_on_read_routes_matches_get_without_a_body() {
    let h = Harness::start();
    h.create_users().await;
    let seq = h.put_user(1, "a@x").await;
    for path in [
        "/v1/tables",
        "/v1/tables/users",
        "/v1/tables/users/rows/1",
        "/v1/tables/users/rows",
        "/v1/status",
        "/healthz",
        "/readyz",
        "/v1/tables/users/rows/2",
    ] {
        let get = h.get(path).await;
        let head = h.call(Method::HEAD, path, None, &[]).await;
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(head.raw, "", "HEAD has no body: {path}");
        assert_eq!(
            head.headers.get("content-type"),
            get.headers.get("content-type"),
            "{path}"
        );
        assert_eq!(head.etag(), get.etag(), "{path}");
    }
    let head = h
        .call(Method::HEAD, "/v1/tables/users/rows/1", None, &[])
        .await;
    assert_eq!(head.etag(), Some(format!("\"{seq}\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json_404_and_405() {
    let h = Harness::start();
    h.create_users().await;
    let answer = h.get("/v1/nothing/here").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.raw);
    assert!(answer.body["error"]["code"].is_string(), "{}", answer.raw);
    for (method, path) in [
        (Method::POST, "/v1/tables/users"),
        (Method::DELETE, "/v1/tables"),
        (Method::POST, "/v1/tables/users/rows/1"),
        (Method::PUT, "/v1/changes"),
        (Method::GET, "/v1/batch"),
        (Method::POST, "/v1/consumers/c"),
        (Method::GET, "/v1/consumers/c/ack"),
    ] {
        let answer = h.call(method.clone(), path, None, &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            answer.raw
        );
        assert!(answer.body["error"]["code"].is_string(), "{}", answer.raw);
        assert!(answer.headers.get("allow").is_some(), "{method} {path}");
    }
}

// ------------------------------------------------------------------ keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_string_keys_address_exactly_their_row() {
    let h = Harness::start();
    let answer = h
        .put(
            "/v1/tables/words",
            json!({"columns": [{"name": "w", "type": "string"}, {"name": "n", "type": "int64"}], "primary_key": ["w"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let keys = [
        "a+b",
        "a b",
        "100%",
        "x/y",
        "café",
        "?q=1&r",
        "#frag",
        "[\"not\",\"composite\"]",
        "tab\there",
        "ümlaut/ß",
    ];
    for (n, key) in keys.iter().enumerate() {
        let path = format!("/v1/tables/words/rows/{}", percent(key));
        let answer = h.put(&path, json!({"w": key, "n": n})).await;
        assert_eq!(answer.status, StatusCode::OK, "{key:?}: {}", answer.raw);
        assert_eq!(answer.body["op"], "insert", "{key:?} is a new row");
    }
    for (n, key) in keys.iter().enumerate() {
        let path = format!("/v1/tables/words/rows/{}", percent(key));
        let answer = h.get(&path).await;
        assert_eq!(answer.status, StatusCode::OK, "{key:?}: {}", answer.raw);
        assert_eq!(answer.body, json!({"w": key, "n": n}), "{key:?}");
    }
    // '+' in a path is a plus, not a space.
    let plus = h.get("/v1/tables/words/rows/a+b").await;
    assert_eq!(plus.body["w"], "a+b");
    // The events carry the key as an object.
    let page = h.pull("since=0&limit=100").await;
    let event_keys: Vec<Json> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].clone())
        .collect();
    let expected: Vec<Json> = keys.iter().map(|k| json!({"w": k})).collect();
    assert_eq!(event_keys, expected);
    // A range scan lists them all once, in byte order of the key.
    let rows = h.get("/v1/tables/words/rows?limit=1000").await;
    let listed: Vec<String> = rows.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["w"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(listed, sorted);
    assert_eq!(rows.body["next"], Json::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_travel_as_percent_encoded_json_arrays() {
    let h = Harness::start();
    let answer = h
        .put(
            "/v1/tables/pairs",
            json!({"columns": [
                {"name": "region", "type": "string"},
                {"name": "id", "type": "int64"},
                {"name": "note", "type": "string", "nullable": true}
            ], "primary_key": ["region", "id"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.raw);
    let rows = [("eu", 1), ("eu/west", 2), ("us", -3), ("a,b", 4)];
    for (region, id) in rows {
        let key = percent(&json!([region, id]).to_string());
        let answer = h
            .put(
                &format!("/v1/tables/pairs/rows/{key}"),
                json!({"region": region, "id": id, "note": "n"}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{region}/{id}: {}",
            answer.raw
        );
    }
    for (region, id) in rows {
        let key = percent(&json!([region, id]).to_string());
        let read = h.get(&format!("/v1/tables/pairs/rows/{key}")).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.raw);
        assert_eq!(read.body, json!({"region": region, "id": id, "note": "n"}));
        assert!(read.etag().is_some());
        let patch = h
            .call(
                Method::PATCH,
                &format!("/v1/tables/pairs/rows/{key}"),
                Some(json!({"note": "p"})),
                &[],
            )
            .await;
        assert_eq!(patch.status, StatusCode::OK, "{}", patch.raw);
    }
    // Wrong arity, wrong types and a bare value are bad keys.
    for bad in [
        json!(["eu"]).to_string(),
        json!(["eu", 1, 2]).to_string(),
        json!([1, "eu"]).to_string(),
        "eu".to_owned(),
    ] {
        h.get(&format!("/v1/tables/pairs/rows/{}", percent(&bad)))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_key");
    }
    // The event key is the object of the key columns, in key order.
    let page = h.get("/v1/changes?since=0&limit=100&ops=insert").await;
    let first = &page.body["changes"][0];
    assert_eq!(first["key"], json!({"region": "eu", "id": 1}));
    assert!(
        page.raw.contains(r#""key":{"region":"eu","id":1}"#),
        "{}",
        page.raw
    );
    // A delete by composite key.
    let key = percent(&json!(["eu/west", 2]).to_string());
    let delete = h
        .call(
            Method::DELETE,
            &format!("/v1/tables/pairs/rows/{key}"),
            None,
            &[],
        )
        .await;
    assert_eq!(delete.status, StatusCode::OK, "{}", delete.raw);
    assert_eq!(delete.body["op"], "delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_scans_page_in_key_order_with_next_and_as_of() {
    let h = Harness::start();
    h.create_users().await;
    let mut last = 0;
    for id in [5, -2, 10, 0, 3] {
        last = h.put_user(id, &format!("u{id}")).await;
    }
    let page = h.get("/v1/tables/users/rows?limit=2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.raw);
    let ids: Vec<i64> = page.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [-2, 0]);
    assert!(!page.body["next"].is_null(), "{}", page.raw);

    // Walk the pages with `start=` the previous `next`.
    let mut all = Vec::new();
    let mut start: Option<String> = None;
    for _ in 0..10 {
        let query = match &start {
            None => "limit=2".to_owned(),
            Some(s) => format!("limit=2&start={}", percent(s)),
        };
        let page = h.get(&format!("/v1/tables/users/rows?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.raw);
        for row in page.body["rows"].as_array().unwrap() {
            all.push(row["id"].as_i64().unwrap());
        }
        match &page.body["next"] {
            Json::Null => break,
            Json::String(s) => start = Some(s.clone()),
            other => start = Some(other.to_string()),
        }
    }
    assert_eq!(all, [-2, 0, 3, 5, 10]);

    // start inclusive, end exclusive, as_of the past.
    let page = h.get("/v1/tables/users/rows?start=0&end=5").await;
    let ids: Vec<i64> = page.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [0, 3]);
    let past = h
        .get(&format!("/v1/tables/users/rows?as_of={}", last - 3))
        .await;
    assert_eq!(past.status, StatusCode::OK, "{}", past.raw);
    let ids: Vec<i64> = past.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [-2, 5]);
    h.get(&format!("/v1/tables/users/rows?as_of={}", last + 1))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "future_seq");
    h.get("/v1/tables/nope/rows")
        .await
        .assert_error(StatusCode::NOT_FOUND, "table_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_travels_in_its_json_form_in_rows_and_events() {
    let h = Harness::start();
    let answer = h
        .put(
            "/v1/tables/kinds",
            json!({
                "columns": [
                    {"name": "k", "type": "string"},
                    {"name": "i", "type": "int64", "nullable": true},
                    {"name": "f", "type": "float64", "nullable": true},
                    {"name": "b", "type": "bool", "nullable": true},
                    {"name": "y", "type": "bytes", "nullable": true},
                    {"name": "t", "type": "timestamp", "nullable": true},
                    {"name": "j", "type": "json", "nullable": true}
                ],
                "primary_key": ["k"]
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let row = json!({
        "k": "one",
        "i": i64::MIN,
        "f": 1.5,
        "b": true,
        "y": "AAEC/w==",
        "t": "2026-01-02T03:04:05.123456Z",
        "j": {"nested": [1, "two", null, {"x": true}]}
    });
    let put = h.put("/v1/tables/kinds/rows/one", row.clone()).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.raw);
    let read = h.get("/v1/tables/kinds/rows/one").await;
    assert_eq!(read.body["i"], row["i"]);
    assert_eq!(read.body["f"], row["f"]);
    assert_eq!(read.body["b"], row["b"]);
    assert_eq!(read.body["y"], row["y"]);
    assert_eq!(read.body["j"], row["j"]);
    let t = read.body["t"].as_str().unwrap();
    assert!(t.starts_with("2026-01-02T03:04:05.123456"), "{t}");
    let nan = h
        .put(
            "/v1/tables/kinds/rows/two",
            json!({"k": "two", "f": "NaN", "i": null}),
        )
        .await;
    assert_eq!(nan.status, StatusCode::OK, "{}", nan.raw);
    let read = h.get("/v1/tables/kinds/rows/two").await;
    assert_eq!(read.body["f"], "NaN");
    assert_eq!(read.body["i"], Json::Null);
    for special in ["Infinity", "-Infinity"] {
        let put = h
            .put(
                "/v1/tables/kinds/rows/three",
                json!({"k": "three", "f": special}),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.raw);
        assert_eq!(
            h.get("/v1/tables/kinds/rows/three").await.body["f"],
            special
        );
    }
    let page = h.pull("since=0").await;
    let events = page["changes"].as_array().unwrap();
    assert_eq!(events[0]["after"]["y"], "AAEC/w==");
    assert_eq!(events[0]["after"]["i"], json!(i64::MIN));
    assert_eq!(events[1]["after"]["f"], "NaN");
    assert_eq!(events[3]["before"]["f"], "Infinity");
    assert_eq!(events[3]["after"]["f"], "-Infinity");
}

// ----------------------------------------------------------------- batch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_first_last_and_results_and_is_all_or_nothing() {
    let h = Harness::start();
    h.create_users().await;
    let answer = h
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "total", "type": "float64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let base = h.put_user(1, "a@x").await;

    let batch = h
        .call(
            Method::POST,
            "/v1/batch",
            Some(json!({"ops": [
                {"op": "upsert", "table": "users", "row": {"id": 2, "email": "b@x"}},
                {"op": "upsert", "table": "orders", "row": {"id": 1, "total": 9.5}},
                {"op": "patch", "table": "users", "key": {"id": 1}, "row": {"email": "z@x"}},
                {"op": "upsert", "table": "users", "row": {"id": 2, "email": "c@x"}},
                {"op": "delete", "table": "users", "key": {"id": 1}}
            ]})),
            &[],
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.raw);
    let first = base + 1;
    assert_eq!(
        batch.body,
        json!({
            "first_seq": first,
            "last_seq": first + 4,
            "results": [
                {"seq": first, "op": "insert"},
                {"seq": first + 1, "op": "insert"},
                {"seq": first + 2, "op": "update"},
                {"seq": first + 3, "op": "update"},
                {"seq": first + 4, "op": "delete"}
            ]
        })
    );
    // The events carry the batch position.
    let page = h.pull(&format!("since={base}")).await;
    let events = page["changes"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    for (index, event) in events.iter().enumerate() {
        assert_native_event(event);
        assert_eq!(
            event["batch"],
            json!({"first_seq": first, "index": index, "size": 5})
        );
    }
    assert_eq!(events[3]["before"], json!({"id": 2, "email": "b@x"}));
    assert_eq!(events[4]["before"], json!({"id": 1, "email": "z@x"}));

    // A bad op anywhere: nothing written, no seq consumed.
    let refused = h
        .call(
            Method::POST,
            "/v1/batch",
            Some(json!({"ops": [
                {"op": "upsert", "table": "users", "row": {"id": 3, "email": "d@x"}},
                {"op": "upsert", "table": "users", "row": {"id": 4, "email": 7}}
            ]})),
            &[],
        )
        .await;
    refused.assert_error(StatusCode::BAD_REQUEST, "invalid_row");
    let missing = h
        .call(
            Method::POST,
            "/v1/batch",
            Some(json!({"ops": [
                {"op": "upsert", "table": "users", "row": {"id": 3, "email": "d@x"}},
                {"op": "upsert", "table": "nope", "row": {"id": 4}}
            ]})),
            &[],
        )
        .await;
    missing.assert_error(StatusCode::NOT_FOUND, "table_not_found");
    h.get("/v1/tables/users/rows/3")
        .await
        .assert_error(StatusCode::NOT_FOUND, "row_not_found");
    assert_eq!(h.put_user(9, "n@x").await, first + 5);
}

// ------------------------------------------------------------ pull pages

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_pages_have_changes_next_and_resolved_and_edge_positions() {
    let h = Harness::start();
    h.create_users().await;
    let mut seqs = Vec::new();
    for id in 1..=5 {
        seqs.push(h.put_user(id, &format!("u{id}@x")).await);
    }
    let head = *seqs.last().unwrap();

    let page = h.pull("since=0&limit=2").await;
    let keys: BTreeSet<&str> = page
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert!(
        ["changes", "next", "resolved"]
            .iter()
            .all(|k| keys.contains(k)),
        "{page}"
    );
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    for event in changes {
        assert_native_event(event);
    }
    assert_eq!(changes[0]["seq"], seqs[0]);
    assert_eq!(changes[1]["seq"], seqs[1]);
    assert_eq!(page["next"], seqs[1], "next resumes after the page");
    assert!(page["resolved"].is_u64());

    // Following `next` covers the log exactly once.
    let mut since = 0;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = h.pull(&format!("since={since}&limit=2")).await;
        for e in page["changes"].as_array().unwrap() {
            seen.push(e["seq"].as_u64().unwrap());
        }
        let next = page["next"].as_u64().unwrap();
        if next == since {
            break;
        }
        since = next;
    }
    assert_eq!(seen, seqs);

    // At the head: empty, next stays, resolved is the head.
    let page = h.pull(&format!("since={head}")).await;
    assert_eq!(page, json!({"changes": [], "next": head, "resolved": head}));
    h.get(&format!("/v1/changes?since={}", head + 1))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "future_seq");
    for bad in [
        "since=abc",
        "since=-1",
        "since=1.5",
        "limit=0",
        "limit=x",
        "ops=upsert",
        "format=xml",
    ] {
        h.get(&format!("/v1/changes?{bad}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_query");
    }
    h.get("/v1/changes?since=0&tables=nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "table_not_found");

    // An ops filter and the resolved position on a filtered page.
    let page = h.pull("since=0&ops=delete").await;
    assert_eq!(page["changes"], json!([]));
    assert_eq!(page["resolved"], head, "{page}");
    assert_eq!(page["next"], head, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_in_debezium_format_has_the_envelope_layout() {
    let h = Harness::start();
    h.create_users().await;
    h.put_user(1, "a@x").await;
    h.put_user(1, "b@x").await;
    let delete = h
        .call(Method::DELETE, "/v1/tables/users/rows/1", None, &[])
        .await;
    assert_eq!(delete.status, StatusCode::OK);
    let native = h.pull("since=0").await;
    let page = h.pull("since=0&format=debezium").await;
    assert_eq!(page["next"], native["next"]);
    assert_eq!(page["resolved"], native["resolved"]);
    let envelopes = page["changes"].as_array().unwrap();
    let events = native["changes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 3);
    for ((envelope, event), op) in envelopes.iter().zip(events).zip(["c", "u", "d"]) {
        let keys: BTreeSet<&str> = envelope
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["after", "before", "op", "source", "ts_ms"]
                .into_iter()
                .collect(),
            "{envelope}"
        );
        assert_eq!(envelope["op"], op);
        assert_eq!(envelope["before"], event["before"]);
        assert_eq!(envelope["after"], event["after"]);
        let source = &envelope["source"];
        assert_eq!(source["name"], "tidefeed");
        assert_eq!(source["table"], "users");
        assert_eq!(source["seq"], event["seq"]);
        assert_eq!(source["snapshot"], "false");
        assert!(source["ts_ms"].is_u64(), "{envelope}");
        assert!(envelope["ts_ms"].is_u64(), "{envelope}");
        // The commit time, the same instant as the native `ts`.
        assert_eq!(envelope["ts_ms"], source["ts_ms"], "{envelope}");
    }
}

// ------------------------------------------------------------ SSE framing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_frames_are_id_and_data_for_changes_and_resolved_with_id() {
    let h = Harness::start_with_env(&[("TIDEFEED_FEED__RESOLVED_INTERVAL", "100ms")]);
    h.create_users().await;
    let s1 = h.put_user(1, "a@x").await;
    let s2 = h.put_user(1, "multi\nline\r\u{2028}text").await;

    let response = h.stream_response("since=0", &[]).await;
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("no-cache".to_owned())
    );
    let mut stream = RawStream::new(response);
    let mut changes = Vec::new();
    let mut resolved = Vec::new();
    while changes.len() < 2 {
        let frame = stream.frame().await.expect("open");
        if frame.is_comment() {
            continue;
        }
        match frame.event.as_deref() {
            None => {
                let id = frame.id.clone().expect("a change has an id");
                let data = frame.data_json();
                assert_native_event(&data);
                assert_eq!(id, data["seq"].to_string(), "id is the seq");
                changes.push(data);
            }
            Some("resolved") => {
                let id: u64 = frame
                    .id
                    .clone()
                    .expect("resolved has an id")
                    .parse()
                    .unwrap();
                assert_eq!(frame.data_json(), json!({"seq": id}), "{frame:?}");
                resolved.push(id);
            }
            Some(other) => panic!("unexpected event {other}: {frame:?}"),
        }
    }
    assert_eq!(changes[0]["seq"], s1);
    assert_eq!(changes[1]["seq"], s2);
    assert_eq!(changes[1]["after"]["email"], "multi\nline\r\u{2028}text");
    // A resolved marker at (or after) the last change follows.
    loop {
        let frame = stream.frame().await.expect("open");
        if frame.event.as_deref() == Some("resolved") {
            let id: u64 = frame.id.clone().unwrap().parse().unwrap();
            assert!(id >= s2);
            assert_eq!(frame.data_json(), json!({"seq": id}));
            break;
        }
        assert!(frame.is_comment(), "{frame:?}");
    }
    // Resolved markers never go backwards.
    for pair in resolved.windows(2) {
        assert!(pair[0] <= pair[1], "{resolved:?}");
    }

    // The same stream, through a real SSE parser: onmessage gets changes.
    let mut parsed = Sse::new(h.stream_response("since=0", &[]).await);
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let event = parsed.next(PATIENCE).await.expect("open");
        if event.event == "message" {
            messages.push(event.id.parse::<u64>().unwrap());
        } else {
            assert_eq!(event.event, "resolved");
        }
    }
    assert_eq!(messages, [s1, s2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_keep_alive_comments_and_resolved_markers() {
    let h = Harness::start_with_env(&[
        ("TIDEFEED_SERVER__KEEP_ALIVE_INTERVAL", "200ms"),
        ("TIDEFEED_FEED__RESOLVED_INTERVAL", "300ms"),
    ]);
    h.create_users().await;
    let head = h.put_user(1, "a@x").await;
    let mut stream = h.raw_stream("tables=users&ops=delete", &[]).await;
    // Idle: keep-alive comments keep coming.
    let mut comments = 0;
    let mut resolved = Vec::new();
    for _ in 0..30 {
        let frame = stream.frame_within(Duration::from_secs(5)).await.unwrap();
        if frame.is_comment() {
            comments += 1;
        } else {
            assert_eq!(frame.event.as_deref(), Some("resolved"), "{frame:?}");
            assert_eq!(frame.id, Some(head.to_string()));
            assert_eq!(frame.data_json(), json!({"seq": head}));
            resolved.push(head);
        }
        if comments >= 3 {
            break;
        }
    }
    assert!(comments >= 3, "{comments}");
    assert!(!resolved.is_empty(), "the position is announced");
    // Filtered out: the resolved marker still moves past the writes.
    let last = h.put_user(2, "b@x").await;
    loop {
        let frame = stream.frame_within(Duration::from_secs(5)).await.unwrap();
        if frame.is_comment() {
            continue;
        }
        assert_eq!(frame.event.as_deref(), Some("resolved"), "{frame:?}");
        let id: u64 = frame.id.clone().unwrap().parse().unwrap();
        assert_eq!(frame.data_json(), json!({"seq": id}));
        if id == last {
            break;
        }
    }
}

// ------------------------------------------------------ stream positions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_positions_since_and_last_event_id_at_every_edge() {
    let h = Harness::start();
    h.create_users().await;
    let mut seqs = Vec::new();
    for id in 1..=4 {
        seqs.push(h.put_user(id, "x").await);
    }
    let head = seqs[3];

    // since=0: everything.
    let mut s = h.raw_stream("since=0", &[]).await;
    for seq in &seqs {
        assert_eq!(s.change().await.id, Some(seq.to_string()));
    }
    // since=head, since=now and no since: nothing old, then the next write.
    let mut at_head = h.raw_stream(&format!("since={head}"), &[]).await;
    let mut now = h.raw_stream("since=now", &[]).await;
    let mut bare = h.raw_stream("", &[]).await;
    // Let the streams settle on their position before writing.
    for stream in [&mut at_head, &mut now, &mut bare] {
        let first = stream.frame().await.unwrap();
        assert_eq!(first.event.as_deref(), Some("resolved"), "{first:?}");
        assert_eq!(first.id, Some(head.to_string()));
    }
    let next = h.put_user(5, "y").await;
    for stream in [&mut at_head, &mut now, &mut bare] {
        assert_eq!(stream.change().await.id, Some(next.to_string()));
    }

    // Beyond the head: 400 future_seq as JSON before any event.
    let response = h.stream_response(&format!("since={}", next + 1), &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "future_seq", "{body}");
    let response = h
        .stream_response("", &[("Last-Event-ID", &(next + 10).to_string())])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "future_seq", "{body}");

    // Non-numeric since: bad_query.
    for bad in ["since=abc", "since=-1", "since=", "since=1e3"] {
        let response = h.stream_response(bad, &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Json = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_query", "{bad}: {body}");
    }

    // Both given: Last-Event-ID wins, whichever is larger.
    let mut both = h.raw_stream("since=1", &[("Last-Event-ID", "3")]).await;
    assert_eq!(both.change().await.id, Some("4".to_owned()));
    let mut both = h.raw_stream("since=3", &[("Last-Event-ID", "1")]).await;
    assert_eq!(both.change().await.id, Some("2".to_owned()));
    // Last-Event-ID: 0 means from the start.
    let mut zero = h.raw_stream("since=now", &[("Last-Event-ID", "0")]).await;
    assert_eq!(zero.change().await.id, Some("1".to_owned()));
    // Last-Event-ID at the head: only new events.
    let mut tip = h
        .raw_stream("since=0", &[("Last-Event-ID", &next.to_string())])
        .await;
    tip.assert_no_change(Duration::from_millis(300)).await;
    let later = h.put_user(6, "z").await;
    assert_eq!(tip.change().await.id, Some(later.to_string()));
}

// -------------------------------------------------------------- snapshot

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_read_rows_at_s_then_resolved_s_then_live() {
    let h = Harness::start();
    h.create_users().await;
    h.put_user(1, "a@x").await;
    h.put_user(2, "b@x").await;
    h.put_user(1, "c@x").await;
    let gone = h
        .call(Method::DELETE, "/v1/tables/users/rows/2", None, &[])
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    let s = h.put_user(3, "d@x").await;

    let mut stream = h.raw_stream("snapshot=true&tables=users", &[]).await;
    let mut rows = Vec::new();
    loop {
        let frame = stream.frame().await.expect("open");
        if frame.is_comment() {
            continue;
        }
        if frame.event.as_deref() == Some("resolved") {
            assert_eq!(frame.id, Some(s.to_string()), "resolved at S: {frame:?}");
            assert_eq!(frame.data_json(), json!({"seq": s}));
            break;
        }
        assert_eq!(frame.event, None, "{frame:?}");
        assert_eq!(frame.id, None, "snapshot rows carry no id: {frame:?}");
        let event = frame.data_json();
        assert_native_event(&event);
        assert_eq!(event["op"], "read");
        assert_eq!(event["seq"], s);
        assert_eq!(event["batch"], Json::Null);
        assert_eq!(event["before"], Json::Null);
        rows.push(event["after"].clone());
    }
    assert_eq!(
        rows,
        [
            json!({"id": 1, "email": "c@x"}),
            json!({"id": 3, "email": "d@x"})
        ]
    );
    let live = h.put_user(4, "e@x").await;
    assert_eq!(live, s + 1);
    let frame = stream.change().await;
    assert_eq!(frame.id, Some(live.to_string()));
    assert_eq!(frame.data_json()["op"], "insert");

    // An EventSource reconnecting with the snapshot URL and the last id
    // skips the snapshot and goes on after that id.
    let mut resumed = h
        .raw_stream(
            "snapshot=true&tables=users",
            &[("Last-Event-ID", &s.to_string())],
        )
        .await;
    let frame = resumed.change().await;
    assert_eq!(frame.id, Some(live.to_string()), "{frame:?}");

    // Debezium snapshot rows are op "r".
    let mut dbz = h
        .raw_stream("snapshot=true&tables=users&format=debezium", &[])
        .await;
    let frame = dbz.change().await;
    let envelope = frame.data_json();
    assert_eq!(envelope["op"], "r", "{envelope}");
    assert_eq!(envelope["before"], Json::Null);
    assert_eq!(envelope["source"]["seq"], live);
    assert_ne!(envelope["source"]["snapshot"], "false", "{envelope}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_an_empty_store_is_just_resolved_then_live() {
    let h = Harness::start();
    h.create_users().await;
    let mut stream = h.raw_stream("snapshot=true", &[]).await;
    let first = stream.frame().await.unwrap();
    assert_eq!(first.event.as_deref(), Some("resolved"), "{first:?}");
    assert_eq!(first.id, Some("0".to_owned()));
    assert_eq!(first.data_json(), json!({"seq": 0}));
    let seq = h.put_user(1, "a@x").await;
    assert_eq!(stream.change().await.id, Some(seq.to_string()));
}

// ----------------------------------------------------- stream filters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_filters_by_tables_and_ops_and_refuses_unknown_ones() {
    let h = Harness::start();
    h.create_users().await;
    let answer = h
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    h.put_user(1, "a@x").await;
    let order = h.put("/v1/tables/orders/rows/1", json!({"id": 1})).await;
    let order_seq = order.body["seq"].as_u64().unwrap();
    h.put_user(1, "b@x").await;
    let delete = h
        .call(Method::DELETE, "/v1/tables/users/rows/1", None, &[])
        .await;
    let delete_seq = delete.body["seq"].as_u64().unwrap();

    let mut orders = h.raw_stream("since=0&tables=orders", &[]).await;
    assert_eq!(orders.change().await.id, Some(order_seq.to_string()));
    let mut deletes = h.raw_stream("since=0&ops=delete", &[]).await;
    assert_eq!(deletes.change().await.id, Some(delete_seq.to_string()));
    let mut both = h
        .raw_stream("since=0&tables=orders,users&ops=insert", &[])
        .await;
    assert_eq!(both.change().await.id, Some("1".to_owned()));
    assert_eq!(both.change().await.id, Some(order_seq.to_string()));

    let response = h.stream_response("tables=nope", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "table_not_found", "{body}");
    for bad in ["ops=upsert", "format=avro", "snapshot=yes"] {
        let response = h.stream_response(bad, &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Json = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_query", "{bad}: {body}");
    }
}

// ------------------------------------------------------------- consumers

fn assert_consumer(consumer: &Json, name: &str) {
    assert_eq!(consumer["name"], name, "{consumer}");
    assert!(consumer["position"].is_u64(), "{consumer}");
    assert!(consumer["lag"].is_u64(), "{consumer}");
    assert!(consumer["lag_bytes"].is_u64(), "{consumer}");
    assert!(consumer["created"].is_string(), "{consumer}");
    assert!(consumer["acked"].is_string(), "{consumer}");
    assert!(
        consumer.as_object().unwrap().contains_key("invalidated"),
        "{consumer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_lifecycle_from_create_to_delete() {
    let h = Harness::start();
    h.create_users().await;
    for id in 1..=3 {
        h.put_user(id, "x").await;
    }
    let created = h
        .call(
            Method::PUT,
            "/v1/consumers/app",
            Some(json!({"position": 1})),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert_consumer(&created.body, "app");
    assert_eq!(created.body["position"], 1);
    assert_eq!(created.body["lag"], 2, "two changes after position 1");
    assert_eq!(created.body["invalidated"], Json::Null);

    h.call(Method::PUT, "/v1/consumers/app", None, &[])
        .await
        .assert_error(StatusCode::CONFLICT, "consumer_exists");
    h.call(
        Method::PUT,
        "/v1/consumers/app",
        Some(json!({"position": 1})),
        &[],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "consumer_exists");
    h.call(
        Method::PUT,
        "/v1/consumers/later",
        Some(json!({"position": 99})),
        &[],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "future_seq");

    let got = h.get("/v1/consumers/app").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_consumer(&got.body, "app");
    let list = h.get("/v1/consumers").await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<&str> = list.body["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app"]);

    // The consumer's stream starts after its position.
    let mut stream = h.raw_stream("consumer=app", &[]).await;
    assert_eq!(stream.change().await.id, Some("2".to_owned()));
    assert_eq!(stream.change().await.id, Some("3".to_owned()));
    drop(stream);

    let acked = h
        .call(
            Method::POST,
            "/v1/consumers/app/ack",
            Some(json!({"seq": 3})),
            &[],
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.raw);
    assert_consumer(&acked.body, "app");
    assert_eq!(acked.body["position"], 3);
    assert_eq!(acked.body["lag"], 0);

    // Backwards: never moves the consumer back.
    let back = h
        .call(
            Method::POST,
            "/v1/consumers/app/ack",
            Some(json!({"seq": 2})),
            &[],
        )
        .await;
    assert!(
        back.status == StatusCode::OK || back.status.is_client_error(),
        "{}",
        back.raw
    );
    assert_eq!(h.get("/v1/consumers/app").await.body["position"], 3);
    // Beyond the head: future_seq, nothing moves.
    h.call(
        Method::POST,
        "/v1/consumers/app/ack",
        Some(json!({"seq": 4})),
        &[],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "future_seq");
    h.call(
        Method::POST,
        "/v1/consumers/app/ack",
        Some(json!({"seq": "3"})),
        &[],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(h.get("/v1/consumers/app").await.body["position"], 3);

    // Lag follows writes.
    h.put_user(4, "y").await;
    assert_eq!(h.get("/v1/consumers/app").await.body["lag"], 1);

    let deleted = h.call(Method::DELETE, "/v1/consumers/app", None, &[]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.raw);
    assert_eq!(deleted.raw, "");
    h.get("/v1/consumers/app")
        .await
        .assert_error(StatusCode::NOT_FOUND, "consumer_not_found");
    h.call(Method::DELETE, "/v1/consumers/app", None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "consumer_not_found");
    h.call(
        Method::POST,
        "/v1/consumers/app/ack",
        Some(json!({"seq": 1})),
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "consumer_not_found");
    let response = h.stream_response("consumer=app", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "consumer_not_found", "{body}");
    assert_eq!(h.get("/v1/consumers").await.body, json!({"consumers": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_created_without_a_position_starts_at_the_head() {
    let h = Harness::start();
    h.create_users().await;
    let head = h.put_user(1, "a@x").await;
    let created = h.call(Method::PUT, "/v1/consumers/fresh", None, &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert_eq!(created.body["position"], head);
    assert_eq!(created.body["lag"], 0);
    let mut stream = h.raw_stream("consumer=fresh", &[]).await;
    let next = h.put_user(2, "b@x").await;
    assert_eq!(stream.change().await.id, Some(next.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_consumer_ends_its_open_stream_with_an_error_event() {
    let h = Harness::start();
    h.create_users().await;
    let created = h.call(Method::PUT, "/v1/consumers/gone", None, &[]).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let mut stream = h.raw_stream("consumer=gone", &[]).await;
    let seq = h.put_user(1, "a@x").await;
    assert_eq!(stream.change().await.id, Some(seq.to_string()));
    let deleted = h
        .call(Method::DELETE, "/v1/consumers/gone", None, &[])
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    h.put_user(2, "b@x").await;
    let mut error = None;
    loop {
        match stream.frame().await {
            None => break,
            Some(frame) if frame.event.as_deref() == Some("error") => {
                error = Some(frame.data_json());
            }
            Some(frame) if frame.is_comment() => {}
            Some(frame) if frame.event.as_deref() == Some("resolved") => {}
            Some(frame) => assert!(error.is_none(), "nothing after the error: {frame:?}"),
        }
    }
    let error = error.expect("an error event before the end");
    assert!(error["error"]["code"].is_string(), "{error}");
    assert!(error["error"]["message"].is_string(), "{error}");
}

// -------------------------------------------------------------- operational

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_health_metrics_and_openapi_answer() {
    let h = Harness::start();
    h.create_users().await;
    let seq = h.put_user(1, "a@x").await;
    let status = h.get("/v1/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["visible_seq"], seq, "{}", status.raw);
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(h.get("/readyz").await.status, StatusCode::OK);
    let metrics = h.client.get(h.server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let content_type = metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = metrics.text().await.unwrap();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("tidefeed_"), "{line}");
    }
    let openapi = h.get("/v1/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    let paths = openapi.body["paths"].as_object().unwrap();
    for path in [
        "/v1/tables",
        "/v1/tables/{table}",
        "/v1/tables/{table}/rows",
        "/v1/tables/{table}/rows/{key}",
        "/v1/batch",
        "/v1/changes",
        "/v1/changes/stream",
        "/v1/consumers/{name}",
        "/v1/consumers/{name}/ack",
        "/v1/status",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
}

// ------------------------------------------------- across restarts

/// Every page of the log, as raw text, in one format.
async fn all_pages(h: &Harness, format: &str) -> Vec<String> {
    let mut since = 0;
    let mut pages = Vec::new();
    loop {
        let answer = h
            .get(&format!(
                "/v1/changes?since={since}&limit=37&format={format}"
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.raw);
        let next = answer.body["next"].as_u64().unwrap();
        if answer.body["changes"].as_array().unwrap().is_empty() {
            return pages;
        }
        pages.push(answer.raw.clone());
        since = next;
    }
}

/// The data lines of every change on a stream from 0 up to `head`.
async fn stream_data(h: &Harness, query: &str, head: u64) -> Vec<String> {
    let mut stream = h.raw_stream(query, &[]).await;
    let mut data = Vec::new();
    loop {
        let frame = stream.change().await;
        data.push(frame.data[0].clone());
        if frame.id == Some(head.to_string()) {
            return data;
        }
    }
}

/// What a client can observe of a store: every page (native and
/// Debezium, raw), the streamed bytes, some rows with ETags now and as of
/// a past seq, a past scan, and a consumer.
type Observed = (
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<(
        StatusCode,
        Option<String>,
        String,
        StatusCode,
        Option<String>,
        String,
    )>,
    String,
    Json,
);

async fn capture(h: &Harness, head: u64) -> Observed {
    let native = all_pages(h, "native").await;
    let debezium = all_pages(h, "debezium").await;
    let streamed = stream_data(h, "since=0", head).await;
    let mut rows = Vec::new();
    for id in [0, 3, 50, 59, 1002] {
        let answer = h.get(&format!("/v1/tables/users/rows/{id}")).await;
        let old = h
            .get(&format!("/v1/tables/users/rows/{id}?as_of=100"))
            .await;
        rows.push((
            answer.status,
            answer.etag(),
            answer.raw,
            old.status,
            old.etag(),
            old.raw,
        ));
    }
    let scan = h
        .get("/v1/tables/users/rows?limit=1000&as_of=150")
        .await
        .raw;
    let mut keeper = h.get("/v1/consumers/keeper").await.body;
    keeper["acked"] = Json::Null;
    (native, debezium, streamed, rows, scan, keeper)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_rows_etags_and_consumers_are_the_same_after_a_flush_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let env = [("TIDEFEED_STORAGE__MEMTABLE_SIZE", "64KiB")];
    let mut h = Harness {
        server: Tidefeed::start_with_env(&data, &log, &env),
        client: reqwest::Client::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    h.create_users().await;
    let mut head = 0;
    for round in 0..3 {
        for id in 0..60 {
            h.put_user(id, &format!("r{round}-{id}-{}", "p".repeat(200)))
                .await;
        }
        let batch = h
            .call(
                Method::POST,
                "/v1/batch",
                Some(json!({"ops": [
                    {"op": "delete", "table": "users", "key": {"id": round}},
                    {"op": "patch", "table": "users", "key": {"id": 50}, "row": {"email": null}},
                    {"op": "upsert", "table": "users", "row": {"id": 1000 + round, "email": "b"}}
                ]})),
                &[],
            )
            .await;
        assert_eq!(batch.status, StatusCode::OK, "{}", batch.raw);
        head = batch.body["last_seq"].as_u64().unwrap();
    }
    let consumer = h
        .call(
            Method::PUT,
            "/v1/consumers/keeper",
            Some(json!({"position": 10})),
            &[],
        )
        .await;
    assert_eq!(consumer.status, StatusCode::CREATED, "{}", consumer.raw);

    let before = capture(&h, head).await;
    assert!(before.0.len() >= 5, "several pages");
    assert_eq!(before.2.len() as u64, head);

    // SIGKILL and restart.
    h.server.kill();
    h.server = Tidefeed::start_with_env(&data, &log, &env);
    let after_kill = capture(&h, head).await;
    assert!(
        before.0 == after_kill.0,
        "native pages differ after SIGKILL"
    );
    assert!(
        before.1 == after_kill.1,
        "debezium pages differ after SIGKILL"
    );
    assert!(
        before.2 == after_kill.2,
        "stream bytes differ after SIGKILL"
    );
    assert_eq!(before.3, after_kill.3, "rows and ETags after SIGKILL");
    assert_eq!(before.4, after_kill.4, "scan as_of after SIGKILL");
    assert_eq!(before.5, after_kill.5, "consumer after SIGKILL");

    // SIGTERM and restart.
    h.server.signal("TERM");
    let status = h.server.wait_timeout(PATIENCE).expect("exits");
    assert!(status.success(), "{status:?}");
    h.server = Tidefeed::start_with_env(&data, &log, &env);
    let after_term = capture(&h, head).await;
    assert!(
        before.0 == after_term.0,
        "native pages differ after SIGTERM"
    );
    assert!(
        before.1 == after_term.1,
        "debezium pages differ after SIGTERM"
    );
    assert!(
        before.2 == after_term.2,
        "stream bytes differ after SIGTERM"
    );
    assert_eq!(before.3, after_term.3, "rows and ETags after SIGTERM");
    assert_eq!(before.4, after_term.4);
    assert_eq!(before.5, after_term.5);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bytes_history_window_loses_history_with_410_unless_a_consumer_holds_it() {
    let h = Harness::start_with_env(&[
        ("TIDEFEED_FEED__HISTORY_BYTES", "0B"),
        ("TIDEFEED_STORAGE__MEMTABLE_SIZE", "64KiB"),
    ]);
    h.create_users().await;
    let created = h
        .call(
            Method::PUT,
            "/v1/consumers/keeper",
            Some(json!({"position": 0})),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let mut head = 0;
    for id in 0..400 {
        head = h.put_user(id, &"x".repeat(300)).await;
    }
    // Held by the consumer: the whole log stays readable.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = h.pull("since=0&limit=1").await;
    assert_eq!(page["changes"][0]["seq"], 1, "{page}");
    let mut stream = h.raw_stream("consumer=keeper", &[]).await;
    assert_eq!(stream.change().await.id, Some("1".to_owned()));
    drop(stream);

    // Released: the bytes window (0B) moves the low-water mark.
    let acked = h
        .call(
            Method::POST,
            "/v1/consumers/keeper/ack",
            Some(json!({"seq": head})),
            &[],
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.raw);
    for id in 0..400 {
        h.put_user(id, &"y".repeat(300)).await;
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    let lost = loop {
        let answer = h.get("/v1/changes?since=0&limit=1").await;
        if answer.status == StatusCode::GONE {
            break answer;
        }
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.raw);
        assert!(
            std::time::Instant::now() < deadline,
            "history_bytes = 0B never moved the low-water mark"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    lost.assert_error(StatusCode::GONE, "history_lost");
    assert_eq!(lost.body["error"]["requested"], 0, "{}", lost.raw);
    let low_water = lost.body["error"]["low_water"].as_u64().unwrap();
    assert!(low_water > 0 && low_water <= head, "{}", lost.raw);

    let response = h.stream_response("since=0", &[]).await;
    assert_eq!(response.status(), StatusCode::GONE);
    let body: Json = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "history_lost", "{body}");
    let answer = h
        .get(&format!("/v1/tables/users/rows/1?as_of={}", low_water - 1))
        .await;
    answer.assert_error(StatusCode::GONE, "history_lost");
    let answer = h
        .call(
            Method::PUT,
            "/v1/consumers/late",
            Some(json!({"position": 0})),
            &[],
        )
        .await;
    answer.assert_error(StatusCode::GONE, "history_lost");
    // At the low-water mark itself, reads work.
    let page = h.pull(&format!("since={low_water}&limit=1")).await;
    assert_eq!(page["changes"][0]["seq"], low_water + 1, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_does_not_cut_streams() {
    let h = Harness::start_with_env(&[
        ("TIDEFEED_SERVER__REQUEST_TIMEOUT", "50ms"),
        ("TIDEFEED_SERVER__KEEP_ALIVE_INTERVAL", "100ms"),
    ]);
    h.create_users().await;
    let mut stream = h.raw_stream("since=0", &[]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seq = h.put_user(1, "a@x").await;
    assert_eq!(stream.change().await.id, Some(seq.to_string()));
}
