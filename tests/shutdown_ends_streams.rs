//! SIGTERM while a change stream is open: the stream gets an `error` event
//! (`shutting_down`) and ends, and the process exits 0 within the grace
//! period; the data directory then opens again with everything in it.

mod common;

use std::time::Duration;

use common::sse::Sse;
use common::Tidefeed;
use serde_json::{json, Value as Json};

const PATIENCE: Duration = Duration::from_secs(30);
/// `[server] shutdown_grace` default.
const GRACE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_with_an_error_event_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let client = reqwest::Client::new();
    let mut server = Tidefeed::start(&data, &log);

    let response = client
        .put(server.url("/v1/tables/t"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let mut stream = Sse::new(
        client
            .get(server.url("/v1/changes/stream"))
            .send()
            .await
            .unwrap(),
    );
    let response = client
        .put(server.url("/v1/tables/t/rows/1"))
        .json(&json!({"id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    loop {
        let event = stream.next(PATIENCE).await.expect("stream open");
        if event.event == "message" {
            assert_eq!(event.id, "1");
            break;
        }
    }

    server.signal("TERM");
    let error = loop {
        let event = stream
            .next(PATIENCE)
            .await
            .expect("an error event before the end");
        if event.event != "resolved" {
            break event;
        }
    };
    assert_eq!(error.event, "error", "{error:?}");
    let body: Json = serde_json::from_str(&error.data).unwrap();
    assert_eq!(body["error"]["code"], "shutting_down");
    assert!(stream.next(PATIENCE).await.is_none(), "the stream ends");

    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_timeout(GRACE + Duration::from_secs(5));
        (status, server)
    })
    .await
    .unwrap();
    let (status, server) = status;
    let status = status.unwrap_or_else(|| panic!("still running; log: {}", server.log_text()));
    assert!(
        status.success(),
        "exit {status:?}; log: {}",
        server.log_text()
    );
    let log_text = server.log_text();
    assert!(
        log_text.contains("SIGTERM") && log_text.contains("stopped cleanly"),
        "{log_text}"
    );
    drop(server);

    // Restarted, it has the row and serves it.
    let server = Tidefeed::start(&data, &log);
    let row: Json = client
        .get(server.url("/v1/tables/t/rows/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(row, json!({"id": 1}));
}
