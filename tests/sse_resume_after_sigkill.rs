//! A change stream resumed with `Last-Event-ID` after the server process
//! was killed with SIGKILL and restarted on the same data directory gets
//! every later event exactly once, in order: nothing lost, nothing
//! repeated.

mod common;

use std::time::Duration;

use common::sse::Sse;
use common::Tidefeed;
use serde_json::{json, Value as Json};

const PATIENCE: Duration = Duration::from_secs(30);

async fn put_user(client: &reqwest::Client, server: &Tidefeed, id: i64) -> u64 {
    let response = client
        .put(server.url(&format!("/v1/tables/users/rows/{id}")))
        .json(&json!({"id": id, "email": format!("user{id}@example.com")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Json = response.json().await.unwrap();
    body["seq"].as_u64().unwrap()
}

async fn stream(
    client: &reqwest::Client,
    server: &Tidefeed,
    query: &str,
    last_event_id: Option<u64>,
) -> Sse {
    let mut request = client.get(server.url(&format!("/v1/changes/stream?{query}")));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    Sse::new(request.send().await.unwrap())
}

/// The next change event as (id, data), skipping resolved markers.
async fn next_change(stream: &mut Sse) -> (u64, Json) {
    loop {
        let event = stream.next(PATIENCE).await.expect("stream open");
        if event.event == "resolved" {
            continue;
        }
        assert_eq!(event.event, "message", "{event:?}");
        return (
            event.id.parse().unwrap(),
            serde_json::from_str(&event.data).unwrap(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_last_event_id_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("tidefeed.log");
    let client = reqwest::Client::new();

    let mut server = Tidefeed::start(&data, &log);
    let response = client
        .put(server.url("/v1/tables/users"))
        .json(&json!({"columns": [{"name": "id", "type": "int64"}, {"name": "email", "type": "string"}], "primary_key": ["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let mut acknowledged = Vec::new();
    for id in 1..=20 {
        acknowledged.push(put_user(&client, &server, id).await);
    }
    let mut first = stream(&client, &server, "since=0", None).await;
    let mut last_id = 0;
    for expected in 1..=10u64 {
        let (id, event) = next_change(&mut first).await;
        assert_eq!((id, event["seq"].as_u64()), (expected, Some(expected)));
        last_id = id;
    }

    server.kill();
    drop(first);

    let server = Tidefeed::start(&data, &log);
    for id in 21..=25 {
        acknowledged.push(put_user(&client, &server, id).await);
    }
    assert_eq!(acknowledged, (1..=25).collect::<Vec<u64>>());

    // As a reconnecting EventSource: the original URL plus the last id.
    let mut resumed = stream(&client, &server, "since=0", Some(last_id)).await;
    for expected in last_id + 1..=25 {
        let (id, event) = next_change(&mut resumed).await;
        assert_eq!(id, expected, "resumed in order, no gap, no repeat");
        assert_eq!(event["op"], "insert");
        assert_eq!(
            event["after"]["email"],
            format!("user{expected}@example.com")
        );
    }
    // Nothing more than what was written.
    let extra = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let event = resumed.next(PATIENCE).await.expect("stream open");
            if event.event != "resolved" {
                return event;
            }
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "an unexpected event after the last write: {extra:?}"
    );
}
