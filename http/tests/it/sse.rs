//! The SSE change stream, read by a real SSE parser: order and ids,
//! resuming with Last-Event-ID, resolved markers, snapshots under
//! concurrent writes, Debezium, consumer invalidation, keep-alive,
//! shutdown, and the stream limit.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::{assert_error, json_of, Server, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_in_order_with_their_seq_as_id() {
    let server = Server::start().await;
    server.create_users().await;
    let mut stream = server.stream("", None).await;
    for id in 1..=5 {
        server.put_user(id, &format!("u{id}")).await;
    }
    server
        .call(Method::DELETE, "/v1/tables/users/rows/3", None)
        .await;
    let changes = stream.changes(6).await;
    for (i, (id, event)) in changes.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(id, &seq.to_string());
        assert_eq!(event["seq"], seq);
        assert_eq!(event["table"], "users");
        assert!(event["ts"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(changes[0].1["op"], "insert");
    assert_eq!(changes[0].1["before"], Json::Null);
    assert_eq!(
        changes[0].1["batch"],
        json!({"first_seq": 1, "index": 0, "size": 1})
    );
    let delete = &changes[5].1;
    assert_eq!(delete["op"], "delete");
    assert_eq!(delete["key"], json!({"id": 3}));
    assert_eq!(
        delete["before"],
        json!({"id": 3, "email": "u3", "age": null})
    );
    assert_eq!(delete["after"], Json::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_exactly_and_wins_over_since() {
    let server = Server::start().await;
    server.create_users().await;
    for id in 1..=10 {
        server.put_user(id, "a").await;
    }
    let mut first = server.stream("since=0", None).await;
    let seen: Vec<String> = first
        .changes(4)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(seen, ["1", "2", "3", "4"]);
    drop(first);

    // As an EventSource reconnects: the same URL (since=0) plus the id.
    let mut resumed = server.stream("since=0", Some(4)).await;
    let rest: Vec<String> = resumed
        .changes(6)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(rest, ["5", "6", "7", "8", "9", "10"]);
    server.put_user(11, "live").await;
    let live = resumed.changes(1).await;
    assert_eq!(live[0].0, "11");

    // since alone.
    let mut from_eight = server.stream("since=8", None).await;
    assert_eq!(from_eight.changes(1).await[0].0, "9");
    // since=now: only what comes next.
    let mut now = server.stream("since=now", None).await;
    server.put_user(12, "next").await;
    assert_eq!(now.changes(1).await[0].0, "12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_filtered_stream_still_gets_resolved_markers() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/other",
            json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut stream = server.stream("tables=other", None).await;
    let mut last = 0;
    for id in 1..=3 {
        last = server.put_user(id, "filtered out").await;
    }
    loop {
        let event = stream.next().await.expect("stream open");
        assert_eq!(
            event.event, "resolved",
            "only resolved markers pass: {event:?}"
        );
        let data: Json = serde_json::from_str(&event.data).unwrap();
        let seq = data["seq"].as_u64().unwrap();
        assert_eq!(event.id, seq.to_string(), "resolved carries its seq as id");
        if seq >= last {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_under_concurrent_writes_has_no_gap_and_no_duplicate() {
    let server = Server::start().await;
    server.create_users().await;
    for id in 0..300 {
        server.put_user(id, "initial").await;
    }
    let writers = {
        let client = server.client.clone();
        let base = server.base.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..300i64 {
                let id = (i * 7) % 400;
                let response = client
                    .put(format!("{base}/v1/tables/users/rows/{id}"))
                    .json(&json!({"id": id, "email": format!("w{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let body: Json = response.json().await.unwrap();
                last = body["seq"].as_u64().unwrap();
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut stream = server.stream("snapshot=true", None).await;

    // Snapshot rows: op read, one seq S, no id; then resolved at S.
    let mut rows = BTreeMap::new();
    let snapshot_seq = loop {
        let event = stream.next().await.expect("stream open");
        if event.event == "resolved" {
            let seq: u64 = event.id.parse().unwrap();
            break seq;
        }
        assert_eq!(event.event, "message");
        assert_eq!(event.id, "", "snapshot rows carry no id");
        let data: Json = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["op"], "read");
        assert_eq!(data["batch"], Json::Null);
        let id = data["key"]["id"].as_i64().unwrap();
        assert!(
            rows.insert(id, (data["seq"].as_u64().unwrap(), data["after"].clone()))
                .is_none(),
            "row {id} twice"
        );
    };
    assert!(rows.values().all(|(seq, _)| *seq == snapshot_seq));

    // The snapshot equals the table as of S.
    let mut expected = BTreeMap::new();
    let mut query = format!("as_of={snapshot_seq}&limit=1000");
    loop {
        let (status, page) = server.get(&format!("/v1/tables/users/rows?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for row in page["rows"].as_array().unwrap() {
            expected.insert(row["id"].as_i64().unwrap(), row.clone());
        }
        match page["next"].as_str() {
            Some(next) => query = format!("as_of={snapshot_seq}&limit=1000&next={next}"),
            None => break,
        }
    }
    let got: BTreeMap<i64, Json> = rows.into_iter().map(|(id, (_, row))| (id, row)).collect();
    assert_eq!(got, expected);

    // Then every change after S, each once, in order.
    let last = writers.await.unwrap();
    let mut next = snapshot_seq + 1;
    while next <= last {
        let (id, event) = stream.changes(1).await.remove(0);
        assert_eq!(id, next.to_string());
        assert_eq!(event["seq"], next);
        next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_format_streams_envelopes() {
    let server = Server::start().await;
    server.create_users().await;
    let mut stream = server.stream("format=debezium", None).await;
    server.put_user(1, "a").await;
    server.put_user(1, "b").await;
    let changes = stream.changes(2).await;
    let (id, create) = &changes[0];
    assert_eq!(id, "1");
    assert_eq!(create["op"], "c");
    assert_eq!(create["before"], Json::Null);
    assert_eq!(create["source"]["name"], "tidefeed");
    assert_eq!(create["source"]["table"], "users");
    assert_eq!(create["source"]["seq"], 1);
    assert!(create["ts_ms"].is_u64());
    let update = &changes[1].1;
    assert_eq!(update["op"], "u");
    assert_eq!(update["before"]["email"], "a");
    assert_eq!(update["after"]["email"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stream_ends_with_an_error_event_once_invalidated() {
    let expiry = Duration::from_secs(3);
    let server = Server::start_with(
        |options| options.consumer_idle_expiry = Some(expiry),
        |_| {},
    )
    .await;
    server.create_users().await;
    let (status, body) = server.call(Method::PUT, "/v1/consumers/worker", None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut stream = server.stream("consumer=worker", None).await;
    let seq = server.put_user(1, "a").await;
    assert_eq!(stream.changes(1).await[0].0, seq.to_string());

    // Idle past its expiry: the next round of the background worker
    // invalidates it.
    tokio::time::sleep(expiry + Duration::from_millis(500)).await;
    server.blocking(|engine| engine.compact().unwrap()).await;
    let (_, info) = server.get("/v1/consumers/worker").await;
    assert_eq!(info["invalidated"]["kind"], "idle_expiry", "{info}");

    server.put_user(2, "b").await;
    let event = loop {
        let event = stream.next().await.expect("an error event before the end");
        if event.event != "resolved" {
            break event;
        }
    };
    assert_eq!(event.event, "error", "{event:?}");
    let error: Json = serde_json::from_str(&event.data).unwrap();
    assert_eq!(error["error"]["code"], "consumer_invalidated", "{error}");
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the error"
    );

    // Reconnecting is refused before streaming.
    let (status, body) = json_of(server.open_stream("consumer=worker", None).await).await;
    assert_error(status, &body, 410, "consumer_invalidated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_streams_send_keep_alive_comments() {
    let server = Server::start_with(
        |_| {},
        |options| {
            options.keep_alive_interval = Duration::from_millis(50);
            options.resolved_interval = Duration::from_secs(3600);
        },
    )
    .await;
    let response = server.open_stream("", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut bytes = response.bytes_stream();
    let mut text = String::new();
    while !text.contains(": keep-alive\n\n") {
        let chunk = tokio::time::timeout(PATIENCE, bytes.next())
            .await
            .expect("bytes within the patience")
            .expect("stream open")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_with_an_error_event() {
    let server = Server::start().await;
    server.create_users().await;
    let mut stream = server.stream("", None).await;
    server.put_user(1, "a").await;
    stream.changes(1).await;
    let stopping = tokio::spawn(server.stop());
    let event = loop {
        let event = stream.next().await.expect("an error event before the end");
        if event.event != "resolved" {
            break event;
        }
    };
    assert_eq!(event.event, "error");
    let error: Json = serde_json::from_str(&event.data).unwrap();
    assert_eq!(error["error"]["code"], "shutting_down");
    assert!(stream.next().await.is_none());
    assert_eq!(stopping.await.unwrap(), tidefeed_http::Stopped::Drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_are_refused_until_one_ends() {
    let server = Server::start_with(
        |_| {},
        |options| {
            options.max_streams = 1;
            options.keep_alive_interval = Duration::from_millis(50);
        },
    )
    .await;
    let first = server.stream("", None).await;
    let (status, body) = json_of(server.open_stream("", None).await).await;
    assert_error(status, &body, 503, "too_many_streams");
    drop(first);
    // The server notices the closed connection at its next write.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = server.open_stream("", None).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_snapshot_stream_skips_the_snapshot() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;
    server.put_user(2, "b").await;
    let mut resumed = server.stream("snapshot=true", Some(1)).await;
    let change = resumed.changes(1).await.remove(0);
    assert_eq!(change.0, "2");
    assert_eq!(change.1["op"], "insert");
}

/// A stream opened at `now` says where it starts before any change: a
/// client disconnected before its first change resumes from that id and
/// misses nothing written in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_starts_with_its_position_as_an_id() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "before").await;
    let mut stream = server.stream("since=now", None).await;
    let opening = stream.next().await.expect("an opening event");
    assert_eq!(opening.event, "resolved");
    assert_eq!(opening.id, "1");
    assert_eq!(opening.data, r#"{"seq":1}"#);
    drop(stream);
    // Written while the client is away.
    server.put_user(2, "meanwhile").await;
    let mut resumed = server
        .stream("since=now", Some(opening.id.parse().unwrap()))
        .await;
    let changes = resumed.changes(1).await;
    assert_eq!(changes[0].0, "2");
    assert_eq!(changes[0].1["after"]["email"], "meanwhile");
}
