//! Durable consumers over HTTP: create, get, list with lag, ack, delete,
//! and streaming as a consumer from its acknowledged position.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{assert_error, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_created_acked_listed_and_deleted() {
    let server = Server::start().await;
    server.create_users().await;
    server.put_user(1, "a").await;

    let (status, created) = server
        .put("/v1/consumers/etl", json!({"position": 0}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "etl");
    assert_eq!(created["position"], 0);
    assert_eq!(created["lag"], 1);
    assert_eq!(created["invalidated"], json!(null));
    assert!(created["created"].as_str().unwrap().ends_with('Z'));

    let (status, body) = server.put("/v1/consumers/etl", json!({})).await;
    assert_error(status, &body, 409, "consumer_exists");
    // No body at all: created at the head.
    let (status, head) = server.call(Method::PUT, "/v1/consumers/audit", None).await;
    assert_eq!(status, StatusCode::CREATED, "{head}");
    assert_eq!(head["position"], 1);

    server.put_user(2, "b").await;
    let (status, list) = server.get("/v1/consumers").await;
    assert_eq!(status, StatusCode::OK);
    let lags: Vec<(String, u64)> = list["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["lag"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lags, [("audit".to_owned(), 1), ("etl".to_owned(), 2)]);

    let (status, acked) = server
        .post("/v1/consumers/etl/ack", json!({"seq": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(
        (acked["position"].as_u64(), acked["lag"].as_u64()),
        (Some(2), Some(0))
    );
    // Acks never move back.
    let (_, acked) = server
        .post("/v1/consumers/etl/ack", json!({"seq": 1}))
        .await;
    assert_eq!(acked["position"], 2);
    let (status, body) = server
        .post("/v1/consumers/etl/ack", json!({"seq": 99}))
        .await;
    assert_error(status, &body, 400, "future_seq");
    let (status, body) = server
        .post("/v1/consumers/etl/ack", json!({"sequence": 1}))
        .await;
    assert_error(status, &body, 400, "invalid_json");

    let (status, body) = server.call(Method::DELETE, "/v1/consumers/etl", None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, json!(null)));
    let (status, body) = server.get("/v1/consumers/etl").await;
    assert_error(status, &body, 404, "consumer_not_found");
    let (status, body) = server.call(Method::DELETE, "/v1/consumers/etl", None).await;
    assert_error(status, &body, 404, "consumer_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stream_starts_at_the_acknowledged_position() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, _) = server
        .put("/v1/consumers/reader", json!({"position": 0}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for id in 1..=4 {
        server.put_user(id, "a").await;
    }
    let mut stream = server.stream("consumer=reader", None).await;
    let ids: Vec<String> = stream
        .changes(2)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["1", "2"]);
    let (status, _) = server
        .post("/v1/consumers/reader/ack", json!({"seq": 2}))
        .await;
    assert_eq!(status, StatusCode::OK);
    drop(stream);

    // Reconnecting without an id starts after the ack: unacknowledged
    // events come again.
    let mut stream = server.stream("consumer=reader", None).await;
    let ids: Vec<String> = stream
        .changes(2)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["3", "4"]);
    drop(stream);
    // An EventSource reconnecting with the last id it received goes on
    // after it; the consumer stays where it was acknowledged.
    let mut stream = server.stream("consumer=reader", Some(3)).await;
    assert_eq!(stream.changes(1).await[0].0, "4");
    let (_, info) = server.get("/v1/consumers/reader").await;
    assert_eq!(info["position"], 2, "{info}");

    let (status, body) = crate::common::json_of(
        server
            .open_stream("consumer=reader&snapshot=true", None)
            .await,
    )
    .await;
    assert_error(status, &body, 400, "bad_query");
}
