//! Adversarial probes of the SSE change stream: framing under hostile
//! values (read as raw bytes, not only through a parser), exactly-once
//! resume over many reconnects under concurrent writes, the position a
//! fresh stream gives its client, the stream limit's slots, slow readers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::{assert_error, enc, json_of, Server, Sse, PATIENCE};

/// The raw text of a stream, read frame by frame.
struct RawStream {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl RawStream {
    fn new(response: reqwest::Response) -> RawStream {
        assert_eq!(response.status(), StatusCode::OK);
        RawStream {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next frame (the text up to a blank line, `\n\n`), as bytes.
    async fn frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame = self.buffer[..end].to_vec();
                self.buffer.drain(..end + 2);
                return Some(frame);
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("a frame within the patience")?
                .expect("the stream reads");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

/// Checks one frame against the contract's framing: only `id:`, `data:`,
/// `event:` lines and comments; no CR; exactly one `data:` line holding a
/// whole JSON value. Returns (event, id, data).
fn check_frame(frame: &[u8]) -> Option<(String, Option<String>, Json)> {
    assert!(
        !frame.contains(&b'\r'),
        "a raw CR in a frame: {:?}",
        String::from_utf8_lossy(frame)
    );
    let text = std::str::from_utf8(frame).expect("frames are UTF-8");
    let mut event = "message".to_owned();
    let mut id = None;
    let mut data = Vec::new();
    let mut comment_only = true;
    for line in text.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        comment_only = false;
        if let Some(value) = line.strip_prefix("id: ") {
            assert!(id.is_none(), "two ids: {text}");
            id = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = value.to_owned();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push(value);
        } else {
            panic!("a line that is not id, event, data or a comment: {line:?} in {text:?}");
        }
    }
    if comment_only {
        return None;
    }
    assert_eq!(data.len(), 1, "one data line per frame: {text:?}");
    let json: Json = serde_json::from_str(data[0]).expect("data is one JSON value");
    Some((event, id, json))
}

async fn create_texts(server: &Server) {
    let (status, body) = server
        .put(
            "/v1/tables/texts",
            json!({"columns": [{"name": "k", "type": "string"}, {"name": "s", "type": "string", "nullable": true}, {"name": "j", "type": "json", "nullable": true}], "primary_key": ["k"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

const HOSTILE: &[&str] = &[
    "line\nbreak",
    "carriage\rreturn",
    "crlf\r\nend",
    "\n\ndata: forged\n\n",
    "id: 999\nevent: error",
    "ls\u{2028}ps\u{2029}",
    "nel\u{0085}",
    "nul\u{0}",
    "\u{feff}bom",
    "tab\tend",
    ": comment",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_data_never_contains_a_raw_newline() {
    let server = Server::start().await;
    create_texts(&server).await;
    // Rows written before a snapshot, then live ones.
    for (i, text) in HOSTILE.iter().enumerate() {
        let key = format!("{i}{text}");
        let (status, body) = server
            .put(
                &format!("/v1/tables/texts/rows/{}", enc(&key)),
                json!({"k": key, "s": text, "j": {"nested": [text, {"k": text}]}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text:?}: {body}");
    }
    let before = server.engine.visible_seq();
    for format in ["native", "debezium"] {
        let mut stream = RawStream::new(
            server
                .open_stream(&format!("snapshot=true&format={format}"), None)
                .await,
        );
        let mut snapshot_rows = 0;
        loop {
            let frame = stream.frame().await.expect("open");
            let Some((event, id, data)) = check_frame(&frame) else {
                continue;
            };
            if event == "resolved" {
                assert_eq!(id.as_deref(), Some(&*before.to_string()));
                assert_eq!(data, json!({"seq": before}));
                break;
            }
            assert_eq!(event, "message");
            assert_eq!(id, None, "snapshot rows carry no id");
            snapshot_rows += 1;
        }
        assert_eq!(snapshot_rows, HOSTILE.len(), "{format}");
    }
    let mut stream = RawStream::new(server.open_stream("since=0", None).await);
    let mut debezium = RawStream::new(server.open_stream("since=0&format=debezium", None).await);
    for (i, text) in HOSTILE.iter().enumerate() {
        let (status, _) = server
            .call(
                Method::PATCH,
                &format!("/v1/tables/texts/rows/{}", enc(&format!("{i}{text}"))),
                Some(json!({"s": format!("{text}{text}")})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let total = before + HOSTILE.len() as u64;
    for raw in [&mut stream, &mut debezium] {
        let mut seen = 0u64;
        while seen < total {
            let frame = raw.frame().await.expect("open");
            let Some((event, id, data)) = check_frame(&frame) else {
                continue;
            };
            if event == "resolved" {
                continue;
            }
            assert_eq!(event, "message");
            seen += 1;
            assert_eq!(id, Some(seen.to_string()));
            let seq = data["seq"].as_u64().or(data["source"]["seq"].as_u64());
            assert_eq!(seq, Some(seen), "id equals the event's seq: {data}");
        }
    }
}

/// Reads changes as an EventSource would, dropping the connection after a
/// few events and reconnecting with the last id it saw (changes and
/// resolved alike), while writers keep writing. Every seq arrives exactly
/// once, in order.
async fn resume_many_times(query: &str, expect: impl Fn(&Json) -> bool) {
    let server = std::sync::Arc::new(Server::start().await);
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let start = server.engine.visible_seq();
    let writer = {
        let server = server.clone();
        tokio::spawn(async move {
            for i in 0..400i64 {
                match i % 5 {
                    0 => {
                        let (status, body) = server
                            .post(
                                "/v1/batch",
                                json!({"ops": [
                                    {"op": "upsert", "table": "users", "row": {"id": i % 37, "email": "b"}},
                                    {"op": "upsert", "table": "orders", "row": {"id": i}},
                                    {"op": "delete", "table": "users", "key": {"id": (i + 3) % 37}},
                                ]}),
                            )
                            .await;
                        assert_eq!(status, StatusCode::OK, "{body}");
                    }
                    1 => {
                        server.put_user(i % 37, "x").await;
                    }
                    _ => {
                        let (status, _) = server
                            .put(&format!("/v1/tables/orders/rows/{i}"), json!({"id": i}))
                            .await;
                        assert_eq!(status, StatusCode::OK);
                    }
                }
            }
        })
    };
    let mut last_id = start;
    let mut seen: Vec<u64> = Vec::new();
    let mut reconnects = 0;
    let mut rng = 12345u64;
    loop {
        let mut stream = server
            .stream(&format!("{query}&since={start}"), Some(last_id))
            .await;
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let take = 1 + (rng >> 33) % 13;
        let mut taken = 0;
        while taken < take {
            let Some(event) = tokio::time::timeout(Duration::from_secs(2), stream.next())
                .await
                .unwrap_or_default()
            else {
                break;
            };
            let id: u64 = event.id.parse().expect("every event here has an id");
            assert!(id >= last_id, "ids never go back: {id} after {last_id}");
            if event.event == "resolved" {
                let data: Json = serde_json::from_str(&event.data).unwrap();
                assert_eq!(data["seq"], id);
            } else {
                let data: Json = serde_json::from_str(&event.data).unwrap();
                assert_eq!(data["seq"], id);
                assert!(expect(&data), "filtered out: {data}");
                assert!(
                    id > last_id,
                    "a change at or below the resume point: {id} <= {last_id}"
                );
                seen.push(id);
                taken += 1;
            }
            last_id = id;
        }
        drop(stream);
        reconnects += 1;
        if writer.is_finished() && last_id >= server.engine.visible_seq() {
            break;
        }
        assert!(reconnects < 5000);
    }
    writer.await.unwrap();
    // The expected seqs: every matching event after start.
    let mut expected = Vec::new();
    let mut since = start;
    loop {
        let (_, page) = server
            .get(&format!("/v1/changes?since={since}&limit=1000&{query}"))
            .await;
        expected.extend(
            page["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        let next = page["next"].as_u64().unwrap();
        if next == since {
            break;
        }
        since = next;
    }
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a change delivered twice");
    assert_eq!(
        seen, expected,
        "every change once, in order ({reconnects} reconnects)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_is_exactly_once_across_many_reconnects_under_concurrent_writes() {
    resume_many_times("format=native", |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_resume_is_exactly_once_across_many_reconnects() {
    resume_many_times("tables=users&ops=insert,delete", |event| {
        event["table"] == "users" && (event["op"] == "insert" || event["op"] == "delete")
    })
    .await;
}

/// An EventSource opened without `since` starts "now"; if its connection
/// drops before any event reached it, it reconnects with no Last-Event-ID
/// and starts "now" again, silently skipping what was written in between.
/// A fresh stream must hand its client its starting position (an `id:`,
/// e.g. a `resolved` at the start seq) so a reconnect resumes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_stream_gives_its_client_a_resume_position() {
    let server = Server::start().await;
    server.create_users().await;
    for id in 1..=3 {
        server.put_user(id, "a").await;
    }
    let head = server.engine.visible_seq();
    let mut stream = server.stream("", None).await;
    // Within a few resolved intervals (100 ms here), the client must hold
    // an id for the head.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last_id = None;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
            Ok(Some(event)) if !event.id.is_empty() => {
                last_id = Some(event.id.clone());
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {}
        }
    }
    drop(stream);
    // What an EventSource does: reconnect to the same URL, with the last
    // id if it has one. Writes happened in between.
    server.put_user(4, "lost?").await;
    let last_id = last_id.map(|id| id.parse::<u64>().unwrap());
    let mut resumed = server.stream("", last_id).await;
    server.put_user(5, "b").await;
    let (id, event) = resumed.changes(1).await.remove(0);
    assert_eq!(
        (id.as_str(), &event["key"]),
        (&*(head + 1).to_string(), &json!({"id": 4})),
        "the write made while disconnected was skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_positions_at_and_past_the_head() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let head = server.engine.visible_seq();
    // Last-Event-ID past the head: 400 future_seq as JSON, not a stream.
    let response = server.open_stream("", Some(head + 1)).await;
    let (status, body) = json_of(response).await;
    assert_error(status, &body, 400, "future_seq");
    // ...even when `since` is fine: Last-Event-ID wins.
    let response = server.open_stream("since=0", Some(head + 5)).await;
    let (status, body) = json_of(response).await;
    assert_error(status, &body, 400, "future_seq");
    let response = server
        .open_stream(&format!("since={}", u64::MAX), None)
        .await;
    let (status, body) = json_of(response).await;
    assert_error(status, &body, 400, "future_seq");
    // At the head: only later writes.
    let mut at_head = server.stream(&format!("since={head}"), None).await;
    let mut now = server.stream("since=now", None).await;
    let next = server.put_user(2, "b").await;
    for stream in [&mut at_head, &mut now] {
        let (id, event) = stream.changes(1).await.remove(0);
        assert_eq!(id, next.to_string());
        assert_eq!(event["key"], json!({"id": 2}));
    }
    // Empty Last-Event-ID (EventSource after id-less events): since applies.
    let mut empty = {
        let response = server
            .request(Method::GET, "/v1/changes/stream?since=0")
            .header("Last-Event-ID", "")
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .unwrap();
        Sse::new(response)
    };
    let (id, _) = empty.changes(1).await.remove(0);
    assert_eq!(id, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_respects_the_table_filter_and_debezium_marks_it() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for id in 1..=3 {
        server.put_user(id, "a").await;
        let (status, _) = server
            .put(&format!("/v1/tables/orders/rows/{id}"), json!({"id": id}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let head = server.engine.visible_seq();
    let mut stream = server
        .stream("snapshot=true&tables=orders&format=debezium", None)
        .await;
    let mut rows = Vec::new();
    loop {
        let event = stream.next().await.expect("open");
        if event.event == "resolved" {
            assert_eq!(event.id, head.to_string());
            break;
        }
        rows.push(serde_json::from_str::<Json>(&event.data).unwrap());
    }
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["op"], "r");
        assert_eq!(row["source"]["table"], "orders");
        assert_eq!(row["before"], Json::Null);
        let marker = if i == 2 { "last" } else { "true" };
        assert_eq!(row["source"]["snapshot"], marker, "{row}");
        assert!(row["ts_ms"].is_u64(), "{row}");
    }
    // An empty table's snapshot: just the resolved at S.
    let (status, _) = server
        .put(
            "/v1/tables/empty",
            json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut stream = server.stream("snapshot=true&tables=empty", None).await;
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("resolved", &*head.to_string())
    );
    // Debezium live events: c/u/d with the commit time at the top.
    let mut live = server.stream("format=debezium&tables=users", None).await;
    server.put_user(9, "a").await;
    server.put_user(9, "b").await;
    server
        .call(Method::DELETE, "/v1/tables/users/rows/9", None)
        .await;
    let events = live.changes(3).await;
    let ops: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "u", "d"]);
    for (id, event) in &events {
        assert_eq!(event["source"]["seq"].to_string(), *id);
        assert_eq!(event["source"]["snapshot"], "false");
        assert_eq!(event["ts_ms"], event["source"]["ts_ms"], "{event}");
    }
}

/// A client that goes away must give its stream slot back promptly, even
/// on an idle server with the default keep-alive (15 s) and a long
/// resolved interval: a browser that reconnects after a network blip must
/// not find every slot held by its own dead connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_stream_frees_its_slot_promptly_on_an_idle_server() {
    let server = Server::start_with(
        |_| {},
        |options| {
            options.max_streams = 1;
            options.resolved_interval = Duration::from_secs(60);
        },
    )
    .await;
    server.create_users().await;
    let first = server.stream("", None).await;
    drop(first);
    let started = Instant::now();
    loop {
        let response = server.open_stream("", None).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the slot of a closed connection is still held after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Many clients open and drop streams; every slot comes back, and a
/// HEAD request does not keep one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_slots_come_back_after_many_clients_leave() {
    let server = Server::start_with(
        |_| {},
        |options| {
            options.max_streams = 8;
            options.keep_alive_interval = Duration::from_millis(50);
        },
    )
    .await;
    server.create_users().await;
    for _ in 0..5 {
        let mut open = Vec::new();
        for _ in 0..8 {
            open.push(server.stream("", None).await);
        }
        let (status, body) = json_of(server.open_stream("", None).await).await;
        assert_error(status, &body, 503, "too_many_streams");
        drop(open);
        let wait_free = || async {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let (_, status) = server.get("/v1/status").await;
                if status["open_streams"] == 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "slots not freed: {status}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        wait_free().await;
        // HEAD answers headers only, and gives its slot back.
        for _ in 0..3 {
            let response = server
                .request(Method::HEAD, "/v1/changes/stream")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        wait_free().await;
    }
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(server.stream("", None).await);
    }
}

/// A stream nobody reads does not slow writers, and everything is still
/// delivered, in order, once it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_blocks_no_writer_and_loses_nothing() {
    let server = Server::start().await;
    create_texts(&server).await;
    let stalled = server.stream("since=0", None).await;
    let payload = "p".repeat(8 * 1024);
    let started = Instant::now();
    let mut last = 0;
    for i in 0..1500 {
        let (status, body) = server
            .put(
                &format!("/v1/tables/texts/rows/{i}"),
                json!({"k": i.to_string(), "s": payload}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body["seq"].as_u64().unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "writes took {:?} with a stalled reader",
        started.elapsed()
    );
    let mut stalled = stalled;
    let changes = stalled.changes(last as usize).await;
    for (i, (id, _)) in changes.iter().enumerate() {
        assert_eq!(id, &(i as u64 + 1).to_string());
    }
}

/// Oversized events arrive key-only and flagged, on streams and pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_events_arrive_key_only_and_flagged() {
    let server = Server::start_with(|_| {}, |options| options.max_event_bytes = 2048).await;
    create_texts(&server).await;
    let mut stream = server.stream("since=0", None).await;
    let mut debezium = server.stream("since=0&format=debezium", None).await;
    let big = "b".repeat(4096);
    let (status, _) = server
        .put("/v1/tables/texts/rows/k", json!({"k": "k", "s": big}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put("/v1/tables/texts/rows/k", json!({"k": "k", "s": "small"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = stream.changes(2).await;
    assert_eq!(events[0].1["truncated"], true, "{}", events[0].1);
    assert_eq!(events[0].1["key"], json!({"k": "k"}));
    assert!(events[0].1.to_string().len() < 2048);
    // The update's before-image is the big row: truncated too.
    assert_eq!(events[1].1["truncated"], true, "{}", events[1].1);
    let events = debezium.changes(2).await;
    assert_eq!(events[1].1["op"], "u");
    assert_eq!(
        events[1].1["source"]["key"],
        json!({"k": "k"}),
        "{}",
        events[1].1
    );
    assert!(!events[1].1["before"].is_null(), "{}", events[1].1);
    let (_, page) = server.get("/v1/changes?since=0").await;
    assert_eq!(page["changes"][0]["truncated"], true);
}

/// A stream whose reader fell so far behind that retention released the
/// history it still needs must say so (`event: error`, `history_lost`)
/// after the last event it can deliver — never skip ahead silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_overtaken_by_retention_gets_history_lost_not_a_gap() {
    let server = Server::start_with(
        |options| options.history_window = Some(Duration::ZERO),
        |_| {},
    )
    .await;
    create_texts(&server).await;
    let mut stream = server.stream("since=0", None).await;
    let payload = "p".repeat(16 * 1024);
    for i in 0..1200 {
        let (status, _) = server
            .put(
                &format!("/v1/tables/texts/rows/{i}"),
                json!({"k": i.to_string(), "s": payload}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        if i == 0 {
            let (id, _) = stream.changes(1).await.remove(0);
            assert_eq!(id, "1");
        }
    }
    server
        .blocking(|engine| {
            engine.flush().unwrap();
            engine.compact().unwrap();
        })
        .await;
    let low_water = server.engine.low_water();
    assert!(low_water > 1000, "history was released: {low_water}");
    let mut expected = 2u64;
    loop {
        let event = stream.next().await.expect("an error event before the end");
        match event.event.as_str() {
            "resolved" => continue,
            "message" => {
                assert_eq!(event.id, expected.to_string(), "a gap in the stream");
                expected += 1;
            }
            "error" => {
                let error: Json = serde_json::from_str(&event.data).unwrap();
                assert_eq!(error["error"]["code"], "history_lost", "{error}");
                assert_eq!(error["error"]["requested"], expected - 1, "{error}");
                break;
            }
            other => panic!("{other}"),
        }
    }
    assert!(
        stream.next().await.is_none(),
        "the stream ends after its error"
    );
    // Resuming from there is the JSON 410.
    let (status, body) = json_of(server.open_stream("", Some(expected - 1)).await).await;
    assert_error(status, &body, 410, "history_lost");
}

/// An event's bytes are the same on every delivery: pulled twice, streamed,
/// in both formats; native `ts` has six fraction digits and a Z.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_the_same_bytes_on_every_delivery() {
    let server = Server::start().await;
    create_texts(&server).await;
    for i in 0..5 {
        let (status, _) = server
            .put(
                &format!("/v1/tables/texts/rows/{i}"),
                json!({"k": i.to_string(), "s": "é\u{2028}\n", "j": {"f": 0.1, "a": [1, -0.0, 1e300]}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    for format in ["native", "debezium"] {
        let raw_page = || async {
            server
                .request(Method::GET, &format!("/v1/changes?since=0&format={format}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        let first = raw_page().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = raw_page().await;
        assert_eq!(first, second, "{format}: a page changed between reads");
        let mut stream = server
            .stream(&format!("since=0&format={format}"), None)
            .await;
        for _ in 0..5 {
            let event = stream.next_change().await;
            assert!(
                first.contains(&event.data),
                "{format}: the streamed bytes differ from the pulled ones: {}",
                event.data
            );
            let data: Json = serde_json::from_str(&event.data).unwrap();
            if format == "native" {
                let ts = data["ts"].as_str().unwrap();
                assert_eq!(ts.len(), "2026-11-24T10:00:00.123456Z".len(), "{ts}");
                assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
            } else {
                assert!(data["ts_ms"].is_u64());
            }
        }
    }
}

/// A Last-Event-ID the server cannot read is a 400 `bad_header` (as
/// "yesterday" is), not silently taken for "no id", which restarts the
/// stream from `since` (here 0: every event again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_last_event_id_is_a_bad_header() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;
    let response = server
        .request(Method::GET, "/v1/changes/stream?since=0")
        .header(
            "Last-Event-ID",
            reqwest::header::HeaderValue::from_bytes(b"1\xff").unwrap(),
        )
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "the stream was opened"
    );
    let (status, body) = json_of(response).await;
    assert_error(status, &body, 400, "bad_header");
}

/// A snapshot read slowly while every row is rewritten and retention
/// releases the history below the new head: the rows it sends are all as
/// of S (never a later version), or it ends with an error event; it never
/// mixes states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_snapshot_overtaken_by_retention_never_mixes_states() {
    let server = Server::start_with(
        |options| options.history_window = Some(Duration::ZERO),
        |_| {},
    )
    .await;
    create_texts(&server).await;
    let payload = "s".repeat(4 * 1024);
    let rows = 1500;
    for i in 0..rows {
        let (status, _) = server
            .put(
                &format!("/v1/tables/texts/rows/{i:05}"),
                json!({"k": format!("{i:05}"), "s": format!("before{payload}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut stream = server.stream("snapshot=true", None).await;
    let first = stream.next().await.unwrap();
    let first: Json = serde_json::from_str(&first.data).unwrap();
    let snapshot_seq = first["seq"].as_u64().unwrap();
    // Rewrite everything and release history past S.
    for i in 0..rows {
        let (status, _) = server
            .put(
                &format!("/v1/tables/texts/rows/{i:05}"),
                json!({"k": format!("{i:05}"), "s": format!("after{payload}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    server
        .blocking(|engine| {
            engine.flush().unwrap();
            engine.compact().unwrap();
        })
        .await;
    assert!(server.engine.low_water() > snapshot_seq);
    let mut count = 1;
    loop {
        let event = stream.next().await.expect("open");
        match event.event.as_str() {
            "message" => {
                let data: Json = serde_json::from_str(&event.data).unwrap();
                assert_eq!(
                    data["op"],
                    "read",
                    "{}",
                    &event.data[..200.min(event.data.len())]
                );
                assert_eq!(data["seq"], snapshot_seq);
                let s = data["after"]["s"].as_str().unwrap();
                assert!(s.starts_with("before"), "a snapshot row from after S");
                count += 1;
            }
            "resolved" => {
                assert_eq!(count, rows, "a complete snapshot");
                assert_eq!(event.id, snapshot_seq.to_string());
                break;
            }
            "error" => {
                let error: Json = serde_json::from_str(&event.data).unwrap();
                assert_eq!(error["error"]["code"], "history_lost", "{error}");
                break;
            }
            other => panic!("{other}"),
        }
    }
}

/// Deleting a consumer that is being streamed ends its stream with an
/// `error` event on the next change, not silently (and a consumer of the
/// same name created again is a new consumer, not the old stream's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_streamed_consumer_ends_its_stream_with_an_error() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server.call(Method::PUT, "/v1/consumers/w", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut stream = server.stream("consumer=w", None).await;
    let seq = server.put_user(1, "a").await;
    assert_eq!(stream.changes(1).await[0].0, seq.to_string());
    let (status, _) = server.call(Method::DELETE, "/v1/consumers/w", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server.put_user(2, "b").await;
    let event = loop {
        let event = stream.next().await.expect("an event");
        if event.event != "resolved" {
            break event;
        }
    };
    assert_eq!(
        event.event, "error",
        "the deleted consumer's stream went on: {event:?}"
    );
    let error: Json = serde_json::from_str(&event.data).unwrap();
    assert!(error["error"]["code"].is_string());
    assert!(stream.next().await.is_none());
}

/// The same, when a consumer of the same name is created again before the
/// next change (here at position 0): the old stream is not the new
/// consumer's reader — it neither delivered seq 1 for it nor started at
/// its position — yet it goes on as if it were, and its client's acks now
/// move the new consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_consumer_does_not_adopt_the_old_stream() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server.call(Method::PUT, "/v1/consumers/w", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut stream = server.stream("consumer=w", None).await;
    let seq = server.put_user(1, "a").await;
    assert_eq!(stream.changes(1).await[0].0, seq.to_string());
    let (status, _) = server.call(Method::DELETE, "/v1/consumers/w", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.put("/v1/consumers/w", json!({"position": 0})).await;
    assert_eq!(status, StatusCode::CREATED);
    server.put_user(2, "b").await;
    let event = loop {
        let event = stream.next().await.expect("an event");
        if event.event != "resolved" {
            break event;
        }
    };
    assert_eq!(event.event, "error", "the old stream went on: {event:?}");
}

/// DESIGN section 1: an EventSource that reconnects with Last-Event-ID
/// gets every event exactly once. A consumer stream ignores the header
/// and restarts at the last ack, so a browser reading as a durable
/// consumer receives everything since its last ack again on every
/// reconnect. (Starting this connection at max(ack, Last-Event-ID)
/// without moving the consumer would keep both promises.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stream_honours_last_event_id_without_moving_the_consumer() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server.put("/v1/consumers/w", json!({"position": 0})).await;
    assert_eq!(status, StatusCode::CREATED);
    for id in 1..=5 {
        server.put_user(id, "a").await;
    }
    let mut first = server.stream("consumer=w", None).await;
    let seen = first.changes(3).await;
    assert_eq!(seen[2].0, "3");
    drop(first);
    let mut again = server.stream("consumer=w", Some(3)).await;
    let (id, _) = again.changes(1).await.remove(0);
    assert_eq!(id, "4", "events 1..3 delivered again after Last-Event-ID 3");
    let (_, consumer) = server.get("/v1/consumers/w").await;
    assert_eq!(consumer["position"], 0, "the consumer moves only by acks");
}

/// Several EventSource-like clients at once (native and Debezium,
/// filtered and not), each dropping its connection at random and
/// resuming with its last id while writers write: each gets every
/// matching change exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_resuming_at_random_each_get_everything_once() {
    let server = std::sync::Arc::new(
        Server::start_with(|options| options.memtable_bytes = 64 << 10, |_| {}).await,
    );
    server.create_users().await;
    let writer = {
        let server = server.clone();
        tokio::spawn(async move {
            for i in 0..600i64 {
                if i % 7 == 0 {
                    let (status, _) = server
                        .call(
                            Method::DELETE,
                            &format!("/v1/tables/users/rows/{}", i % 23),
                            None,
                        )
                        .await;
                    assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND);
                } else {
                    server.put_user(i % 23, &format!("v{i}")).await;
                }
                if i % 150 == 0 {
                    server.blocking(|engine| engine.flush().unwrap()).await;
                }
            }
        })
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for (n, query) in [
        "format=native",
        "format=debezium",
        "ops=delete",
        "ops=insert,update&format=debezium",
    ]
    .into_iter()
    .enumerate()
    {
        let server = server.clone();
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let mut rng = 7919u64 * (n as u64 + 1);
            let mut last_id = 0u64;
            let mut seen = Vec::new();
            loop {
                let mut stream = server
                    .stream(&format!("{query}&since=0"), Some(last_id))
                    .await;
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let take = 1 + (rng >> 33) % 40;
                let mut taken = 0;
                while taken < take {
                    let event =
                        match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                            Ok(Some(event)) => event,
                            _ => break,
                        };
                    let id: u64 = event.id.parse().unwrap();
                    assert!(id >= last_id);
                    if event.event == "message" {
                        assert!(id > last_id, "{query}: {id} again");
                        seen.push(id);
                        taken += 1;
                    }
                    last_id = id;
                }
                if done.load(std::sync::atomic::Ordering::SeqCst)
                    && server.engine.visible_seq() == last_id
                {
                    break;
                }
            }
            (query, seen)
        }));
    }
    writer.await.unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let head = server.engine.visible_seq();
    for client in clients {
        let (query, seen) = tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("the client finishes")
            .unwrap();
        let mut expected = Vec::new();
        let mut since = 0;
        while since < head {
            let (_, page) = server
                .get(&format!("/v1/changes?since={since}&limit=1000&{query}"))
                .await;
            expected.extend(
                page["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["seq"].as_u64().or(e["source"]["seq"].as_u64()).unwrap()),
            );
            since = page["next"].as_u64().unwrap();
        }
        assert_eq!(seen, expected, "{query}");
    }
}

/// Snapshot rows over the event size limit are sent key-only and flagged
/// too (and Debezium's keep the key in `source.key` and an `after`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_snapshot_rows_are_key_only_and_flagged() {
    let server = Server::start_with(|_| {}, |options| options.max_event_bytes = 2048).await;
    create_texts(&server).await;
    let (status, _) = server
        .put(
            "/v1/tables/texts/rows/big",
            json!({"k": "big", "s": "b".repeat(5000)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            "/v1/tables/texts/rows/small",
            json!({"k": "small", "s": "s"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for format in ["native", "debezium"] {
        let mut stream = server
            .stream(&format!("snapshot=true&format={format}"), None)
            .await;
        let mut rows = Vec::new();
        loop {
            let event = stream.next().await.unwrap();
            if event.event == "resolved" {
                break;
            }
            assert!(
                event.data.len() <= 2048,
                "{format}: {} bytes",
                event.data.len()
            );
            rows.push(serde_json::from_str::<Json>(&event.data).unwrap());
        }
        assert_eq!(rows.len(), 2, "{format}");
        let big = &rows[0];
        if format == "native" {
            assert_eq!(big["truncated"], true, "{big}");
            assert_eq!(big["key"], json!({"k": "big"}));
            assert_eq!(big["op"], "read");
            assert!(rows[1]["truncated"].is_null() || rows[1]["truncated"] == false);
        } else {
            assert_eq!(big["source"]["key"], json!({"k": "big"}), "{big}");
            assert_eq!(big["op"], "r");
            assert!(!big["after"].is_null(), "{big}");
            assert_eq!(rows[1]["source"]["snapshot"], "last");
        }
    }
}

/// Fan-out at a moderate scale: 200 streams (mixed formats and filters)
/// each receive every matching change of a burst, in order, and the
/// writers are not slowed to a crawl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_each_receive_the_whole_burst() {
    let server = std::sync::Arc::new(Server::start().await);
    server.create_users().await;
    let mut streams = Vec::new();
    for i in 0..200 {
        let query = match i % 4 {
            0 => "since=0",
            1 => "since=0&format=debezium",
            2 => "since=0&tables=users",
            _ => "since=0&ops=insert",
        };
        streams.push((query, server.stream(query, None).await));
    }
    let started = Instant::now();
    for id in 0..100 {
        server.put_user(id % 60, "x").await;
    }
    let writes = started.elapsed();
    assert!(writes < Duration::from_secs(30), "{writes:?}");
    let mut readers = Vec::new();
    for (query, mut stream) in streams {
        readers.push(tokio::spawn(async move {
            let expected: Vec<u64> = if query.contains("ops=insert") {
                (1..=60).collect()
            } else {
                (1..=100).collect()
            };
            let got: Vec<u64> = stream
                .changes(expected.len())
                .await
                .into_iter()
                .map(|(id, _)| id.parse().unwrap())
                .collect();
            assert_eq!(got, expected, "{query}");
        }));
    }
    for reader in readers {
        reader.await.unwrap();
    }
}
