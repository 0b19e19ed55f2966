//! The HTTP-visible defects of issue 7 ([4/8]), checked again from the
//! outside: through the REST API and the feed, with engine settings that
//! make compaction, retention and history collapse happen.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::{assert_error, Server};

async fn compact(server: &Server) {
    server
        .blocking(|engine| {
            engine.flush().unwrap();
        })
        .await;
}

/// Issue 7, defect 1, through HTTP: a deleted row never comes back after
/// partial compactions (point read, range scan, a second delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_row_never_returns_after_partial_compactions() {
    let server = Server::start_with(
        |options| {
            options.history_window = Some(Duration::ZERO);
            options.l0_compaction_trigger = 1;
            options.level_base_bytes = 4 << 10;
            options.table_file_bytes = 1 << 10;
        },
        |_| {},
    )
    .await;
    server.create_users().await;
    let big = "x".repeat(6 << 10);
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [
                {"op": "upsert", "table": "users", "row": {"id": 1, "email": "small"}},
                {"op": "upsert", "table": "users", "row": {"id": 2, "email": big}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    compact(&server).await;
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [
                {"op": "delete", "table": "users", "key": {"id": 1}},
                {"op": "upsert", "table": "users", "row": {"id": 100, "email": "a"}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    compact(&server).await;
    server.put_user(50, "b").await;
    compact(&server).await;
    for round in 0..20 {
        server.put_user(1000 + round, &"y".repeat(700)).await;
        compact(&server).await;
        let (status, body) = server.get("/v1/tables/users/rows/1").await;
        assert_error(status, &body, 404, "row_not_found");
        let (_, page) = server.get("/v1/tables/users/rows?limit=1000").await;
        assert!(
            page["rows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["id"] != 1),
            "round {round}: row 1 is back in a range scan"
        );
    }
    server
        .blocking(|engine| {
            engine.compact().unwrap();
        })
        .await;
    let (status, body) = server.get("/v1/tables/users/rows/1").await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, body) = server
        .call(Method::DELETE, "/v1/tables/users/rows/1", None)
        .await;
    assert_error(status, &body, 404, "row_not_found");
}

/// Issue 7, defect 4: a snapshot at S == low-water works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_at_the_low_water_mark_works() {
    let server = Server::start_with(
        |options| options.history_window = Some(Duration::ZERO),
        |_| {},
    )
    .await;
    server.create_users().await;
    for id in 1..=10 {
        server.put_user(id, "a").await;
    }
    server
        .blocking(|engine| {
            engine.flush().unwrap();
            engine.compact().unwrap();
        })
        .await;
    let head = server.engine.visible_seq();
    assert_eq!(server.engine.low_water(), head, "history fully released");
    let mut stream = server.stream("snapshot=true", None).await;
    let mut rows = 0;
    loop {
        let event = stream.next().await.expect("open");
        match event.event.as_str() {
            "message" => rows += 1,
            "resolved" => {
                assert_eq!(event.id, head.to_string());
                break;
            }
            other => panic!("{other}: {}", event.data),
        }
    }
    assert_eq!(rows, 10);
    // And the debezium form, and a pull page from the low-water mark.
    let mut stream = server.stream("snapshot=true&format=debezium", None).await;
    let event = stream.next().await.unwrap();
    assert_eq!(event.event, "message", "{}", event.data);
    let (status, page) = server.get(&format!("/v1/changes?since={head}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

/// Issue 7, defect 6: JSON depth is limited at write time; whatever is
/// accepted is readable forever (row, page, stream, both formats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_at_the_depth_limit_is_readable_everywhere_and_past_it_refused() {
    let server = Server::start().await;
    let (status, _) = server
        .put(
            "/v1/tables/docs",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "doc", "type": "json", "nullable": true}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let limit = tidefeed_engine::MAX_JSON_DEPTH;
    let mut accepted = 0;
    for depth in [limit - 1, limit, limit + 1, 100, 127] {
        let body = format!(r#"{{"id":{depth},"doc":{}}}"#, nested(depth));
        let response = server
            .request(Method::PUT, &format!("/v1/tables/docs/rows/{depth}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        if depth <= limit {
            assert_eq!(response.status(), StatusCode::OK, "depth {depth}");
            accepted += 1;
            let (status, row) = server.get(&format!("/v1/tables/docs/rows/{depth}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(row["doc"].to_string(), nested(depth));
        } else {
            let (status, body) = crate::common::json_of(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "depth {depth}: {body}");
        }
    }
    for format in ["native", "debezium"] {
        let (status, page) = server
            .get(&format!("/v1/changes?since=0&format={format}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["changes"].as_array().unwrap().len(), accepted);
        let mut stream = server
            .stream(&format!("since=0&format={format}"), None)
            .await;
        stream.changes(accepted).await;
    }
}

/// Issue 7, defect 10: a stream opened at a seq just acknowledged to the
/// caller is never refused as `future_seq`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_at_a_just_acknowledged_seq_opens() {
    let server = Arc::new(Server::start().await);
    server.create_users().await;
    let mut tasks = Vec::new();
    for task in 0..4i64 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let seq = server.put_user(task * 100 + i, "a").await;
                let response = server.open_stream(&format!("since={seq}"), None).await;
                assert_eq!(response.status(), StatusCode::OK, "since={seq}");
                drop(response);
                let response = server.open_stream("", Some(seq)).await;
                assert_eq!(response.status(), StatusCode::OK, "Last-Event-ID {seq}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Issue 7, defects 15 and 18: floats in float64 and json columns
/// round-trip bit for bit through rows and events; JSON null in a
/// non-nullable json column has one meaning, and what is accepted reads
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floats_round_trip_bit_for_bit_and_json_null_has_one_meaning() {
    let server = Server::start().await;
    let (status, _) = server
        .put(
            "/v1/tables/nums",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "f", "type": "float64"}, {"name": "j", "type": "json"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut values = Vec::new();
    for id in 0..200i64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let f = f64::from_bits(state);
        if !f.is_finite() {
            continue;
        }
        let (status, body) = server
            .put(
                &format!("/v1/tables/nums/rows/{id}"),
                json!({"id": id, "f": f, "j": {"x": f, "list": [f]}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{f:e}: {body}");
        values.push((id, f));
    }
    for (id, f) in &values {
        let (_, row) = server.get(&format!("/v1/tables/nums/rows/{id}")).await;
        assert_eq!(row["f"].as_f64().unwrap().to_bits(), f.to_bits(), "{f:e}");
        assert_eq!(
            row["j"]["x"].as_f64().unwrap().to_bits(),
            f.to_bits(),
            "{f:e}"
        );
    }
    let (_, page) = server.get("/v1/changes?since=0&limit=1000").await;
    for (event, (_, f)) in page["changes"].as_array().unwrap().iter().zip(&values) {
        assert_eq!(event["after"]["f"].as_f64().unwrap().to_bits(), f.to_bits());
        assert_eq!(
            event["after"]["j"]["list"][0].as_f64().unwrap().to_bits(),
            f.to_bits()
        );
    }
    // JSON null in the non-nullable json column.
    let before = server.engine.visible_seq();
    let (status, body) = server
        .put(
            "/v1/tables/nums/rows/9999",
            json!({"id": 9999, "f": 1.0, "j": null}),
        )
        .await;
    if status == StatusCode::OK {
        let (status, row) = server.get("/v1/tables/nums/rows/9999").await;
        assert_eq!(status, StatusCode::OK);
        assert!(row["j"].is_null());
        let (status, page) = server.get(&format!("/v1/changes?since={before}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
    } else {
        assert_error(status, &body, 400, "invalid_row");
        assert_eq!(body["error"]["column"], "j");
        assert_eq!(server.engine.visible_seq(), before);
    }
    // Patching it to null is the same decision.
    let (status, body) = server
        .call(
            Method::PATCH,
            "/v1/tables/nums/rows/0",
            Some(json!({"j": null})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_row");
    let (status, page) = server.get("/v1/changes?since=0&limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    let _: &Json = &page;
}

/// A write whose fsync failed was not acknowledged: no reader may see it —
/// not a point read, not a page, not an open stream — and the streams
/// open at the failure go on serving what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_failed_to_sync_is_never_visible() {
    let faults = Arc::new(tidefeed_engine::FaultInjector::new());
    let injected = faults.clone();
    let server = Server::start_with(move |options| options.faults = Some(injected), |_| {}).await;
    server.create_users().await;
    let committed = server.put_user(1, "a").await;
    let mut stream = server.stream(&format!("since={committed}"), None).await;
    faults.fail_sync_after(1);
    let (status, body) = server
        .put("/v1/tables/users/rows/2", json!({"id": 2, "email": "lost"}))
        .await;
    assert_error(status, &body, 503, "engine_failed");
    let (status, body) = server.get("/v1/tables/users/rows/2").await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, page) = server.get(&format!("/v1/changes?since={committed}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["changes"], json!([]), "{page}");
    assert_eq!(server.engine.visible_seq(), committed);
    // The open stream delivers nothing of it within a few resolved rounds.
    let deadline = std::time::Instant::now() + Duration::from_millis(800);
    while std::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            Ok(Some(event)) => assert_ne!(event.event, "message", "{}", event.data),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let mut fresh = server.stream("since=0", None).await;
    assert_eq!(fresh.changes(1).await[0].0, committed.to_string());
}

/// "Internal errors are logged with detail and answered without it": a
/// storage failure's answer tells every client the server's file paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_answer_does_not_reveal_server_paths() {
    let faults = Arc::new(tidefeed_engine::FaultInjector::new());
    let injected = faults.clone();
    let server = Server::start_with(move |options| options.faults = Some(injected), |_| {}).await;
    server.create_users().await;
    faults.fail_sync_after(1);
    let (status, body) = server
        .put("/v1/tables/users/rows/2", json!({"id": 2}))
        .await;
    assert_error(status, &body, 503, "engine_failed");
    let text = body.to_string();
    assert!(!text.contains("/wal/") && !text.contains("/tmp/"), "{text}");
}
