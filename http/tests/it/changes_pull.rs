//! The pull API: pages of events after `since`, filters, formats, and 410
//! below the low-water mark.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{assert_error, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_cover_the_log_in_order_with_filters() {
    let server = Server::start().await;
    server.create_users().await;
    for id in 1..=5 {
        server.put_user(id, "a").await;
    }
    let (status, body) = server
        .call(reqwest::Method::DELETE, "/v1/tables/users/rows/2", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Without since: the head, an empty page to poll from.
    let (status, page) = server.get("/v1/changes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"changes": [], "next": 6, "resolved": 6}));

    let mut seqs = Vec::new();
    let mut since = 0;
    loop {
        let (status, page) = server
            .get(&format!("/v1/changes?since={since}&limit=2"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let changes = page["changes"].as_array().unwrap();
        if changes.is_empty() {
            break;
        }
        seqs.extend(changes.iter().map(|e| e["seq"].as_u64().unwrap()));
        since = page["next"].as_u64().unwrap();
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);

    let (_, page) = server.get("/v1/changes?since=0&ops=delete").await;
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["op"], "delete");
    assert_eq!(changes[0]["key"], json!({"id": 2}));
    assert_eq!(
        changes[0]["before"],
        json!({"id": 2, "email": "a", "age": null})
    );
    assert_eq!(page["next"], 6);

    let (_, page) = server
        .get("/v1/changes?since=0&limit=1&format=debezium")
        .await;
    let event = &page["changes"][0];
    assert_eq!(event["op"], "c");
    assert_eq!(event["source"]["table"], "users");
    assert_eq!(event["source"]["seq"], 1);
    assert_eq!(event["after"], json!({"id": 1, "email": "a", "age": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_below_the_low_water_mark_is_410_with_both_positions() {
    let server = Server::start_with(
        |options| options.history_window = Some(Duration::ZERO),
        |_| {},
    )
    .await;
    server.create_users().await;
    for id in 1..=20 {
        server.put_user(id, "a").await;
    }
    server
        .blocking(|engine| {
            engine.flush().unwrap();
            engine.compact().unwrap();
        })
        .await;
    let low_water = server.engine.low_water();
    assert!(low_water > 0, "history was released");

    let (status, body) = server.get("/v1/changes?since=0").await;
    assert_error(status, &body, 410, "history_lost");
    assert_eq!(body["error"]["requested"], 0);
    assert_eq!(body["error"]["low_water"], low_water);

    let (status, body) = server.get("/v1/tables/users/rows/1?as_of=1").await;
    assert_error(status, &body, 410, "history_lost");

    // The stream refuses the same position before streaming, as JSON.
    let response = server.open_stream("since=0", None).await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let (status, body) = crate::common::json_of(response).await;
    assert_error(status, &body, 410, "history_lost");
    assert_eq!(body["error"]["low_water"], low_water);
    // And Last-Event-ID below low-water too.
    let response = server.open_stream("", Some(1)).await;
    assert_eq!(response.status(), StatusCode::GONE);

    let (status, _) = server.get(&format!("/v1/changes?since={low_water}")).await;
    assert_eq!(status, StatusCode::OK);
}
