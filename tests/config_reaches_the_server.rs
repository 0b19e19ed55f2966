//! Each configuration knob set in the environment changes what the running
//! binary does: the mapping from `[server]`, `[storage]`, `[feed]` and
//! `[auth]` to the engine, the feed and the HTTP service is complete.
//! (The config crate's own tests cover parsing, ranges and precedence; the
//! HTTP and engine suites cover each behaviour in depth.)

mod common;

use std::time::Duration;

use common::sse::Sse;
use common::Tidefeed;
use reqwest::StatusCode;
use serde_json::{json, Value as Json};

const PATIENCE: Duration = Duration::from_secs(20);

struct Running {
    server: Tidefeed,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(env: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let server =
            Tidefeed::start_with_env(&dir.path().join("data"), &dir.path().join("log"), env);
        Running {
            server,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> (StatusCode, Json) {
        let mut request = self
            .client
            .request(method, self.server.url(path))
            .bearer_auth("admin-token");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Json::String(text)),
        )
    }

    async fn table(&self) {
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                "/v1/tables/t",
                Some(json!({"columns": [{"name": "id", "type": "int64"}, {"name": "note", "type": "string", "nullable": true}], "primary_key": ["id"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn put(&self, id: i64, note: &str) -> (StatusCode, Json) {
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/tables/t/rows/{id}"),
            Some(json!({"id": id, "note": note})),
        )
        .await
    }

    async fn stream(&self, query: &str) -> reqwest::Response {
        self.client
            .get(self.server.url(&format!("/v1/changes/stream?{query}")))
            .bearer_auth("admin-token")
            .send()
            .await
            .unwrap()
    }
}

const TOKENS: &str = r#"[{ token = "admin-token", scopes = ["read", "write", "admin"] }]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_storage_limits_from_the_environment_apply() {
    let running = Running::start(&[
        ("TIDEFEED_AUTH__TOKENS", TOKENS),
        ("TIDEFEED_SERVER__MAX_BODY_BYTES", "2KiB"),
        ("TIDEFEED_STORAGE__MAX_ROW_BYTES", "1KiB"),
        ("TIDEFEED_STORAGE__MAX_KEY_BYTES", "512B"),
        ("TIDEFEED_SERVER__MAX_STREAMS", "1"),
    ]);
    // [auth]: without the token, 401.
    let anonymous = running
        .client
        .get(running.server.url("/v1/tables"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    running.table().await;
    // storage.max_row_bytes: a 1.5 KiB row fits the body limit, not the row limit.
    let (status, body) = running.put(1, &"r".repeat(1500)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["limit_name"], "max_row_bytes", "{body}");
    // server.max_body_bytes: a 3 KiB body is refused before parsing.
    let (status, body) = running.put(2, &"b".repeat(3000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_ne!(body["error"]["limit_name"], "max_row_bytes", "{body}");
    // server.max_streams: the second stream is refused.
    let first = running.stream("since=now").await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = running.stream("since=now").await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Json = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_feed_settings_from_the_environment_apply() {
    let running = Running::start(&[
        ("TIDEFEED_AUTH__TOKENS", TOKENS),
        ("TIDEFEED_SERVER__KEEP_ALIVE_INTERVAL", "200ms"),
        ("TIDEFEED_FEED__RESOLVED_INTERVAL", "100ms"),
        ("TIDEFEED_FEED__MAX_EVENT_BYTES", "1KiB"),
    ]);
    running.table().await;
    let raw = running.stream("tables=t").await;
    assert_eq!(raw.status(), StatusCode::OK);
    let mut bytes = raw.bytes_stream();
    use futures_util::StreamExt;
    // server.keep_alive_interval: a comment within well under the 15 s
    // default (after the opening resolved event).
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains(": keep-alive") {
            let chunk = bytes.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no keep-alive comment at the configured interval: {seen:?}"));
    assert!(seen.starts_with("event: resolved\nid: 0\n"), "{seen:?}");
    drop(bytes);

    let mut events = Sse::new(running.stream("tables=t").await);
    let (status, _) = running.put(1, &"e".repeat(2000)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = running.put(2, "small").await;
    assert_eq!(status, StatusCode::OK);
    let mut changes = Vec::new();
    let mut resolved = 0;
    while changes.len() < 2 || resolved == 0 {
        let event = events.next(PATIENCE).await.expect("the stream goes on");
        match event.event.as_str() {
            "resolved" => resolved += 1,
            _ => changes.push(serde_json::from_str::<Json>(&event.data).unwrap()),
        }
    }
    // feed.max_event_bytes: the 2 KB event goes key-only, the small one whole.
    assert_eq!(changes[0]["truncated"], true, "{}", changes[0]);
    assert_eq!(changes[0]["key"], json!({"id": 1}));
    assert_eq!(changes[1]["after"]["note"], "small", "{}", changes[1]);
    // feed.resolved_interval: resolved markers arrive (100 ms, not 1 s).
    assert!(resolved >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_from_the_environment_moves_the_low_water_mark() {
    let running = Running::start(&[
        ("TIDEFEED_AUTH__TOKENS", TOKENS),
        ("TIDEFEED_FEED__RETENTION", "0s"),
        ("TIDEFEED_STORAGE__MEMTABLE_SIZE", "64KiB"),
    ]);
    running.table().await;
    for i in 0..400 {
        let (status, body) = running.put(i, &"x".repeat(300)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // With no history window, flushed history falls below low-water
    // within a background round (about a second).
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = running
            .send(reqwest::Method::GET, "/v1/changes?since=0&limit=1", None)
            .await;
        if status == StatusCode::GONE {
            assert_eq!(body["error"]["code"], "history_lost", "{body}");
            assert!(body["error"]["low_water"].as_u64().unwrap() > 0, "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention 0s never moved the low-water mark: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
