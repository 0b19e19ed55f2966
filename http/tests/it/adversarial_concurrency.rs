//! Adversarial probes of concurrency over HTTP: read-your-writes right
//! after an acknowledgement, optimistic concurrency with If-Match under a
//! race, concurrent creates, and batches that readers never see half of.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::common::Server;

/// A client that got `{"seq": N}` reads its own write at once: the row
/// (ETag N), the row as of N, and the change at N in a pull page —
/// never `future_seq` for a seq it was just given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_is_readable_at_once() {
    let server = Arc::new(Server::start().await);
    server.create_users().await;
    let mut tasks = Vec::new();
    for task in 0..8i64 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60i64 {
                let id = task * 1000 + i % 5;
                let email = format!("{task}-{i}");
                let (status, body) = server
                    .put(
                        &format!("/v1/tables/users/rows/{id}"),
                        json!({"id": id, "email": email}),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let seq = body["seq"].as_u64().unwrap();
                let response = server
                    .request(Method::GET, &format!("/v1/tables/users/rows/{id}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                assert_eq!(response.headers()["etag"], format!("\"{seq}\""));
                let row: Json = response.json().await.unwrap();
                assert_eq!(row["email"], email.as_str());
                let (status, row) = server
                    .get(&format!("/v1/tables/users/rows/{id}?as_of={seq}"))
                    .await;
                assert_eq!(status, StatusCode::OK, "as_of={seq}: {row}");
                let (status, page) = server
                    .get(&format!("/v1/changes?since={}&limit=1", seq - 1))
                    .await;
                assert_eq!(status, StatusCode::OK, "since={}: {page}", seq - 1);
                assert_eq!(page["changes"][0]["seq"], seq, "{page}");
                let (status, page) = server.get(&format!("/v1/changes?since={seq}")).await;
                assert_eq!(status, StatusCode::OK, "since={seq}: {page}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Racing conditional writes with the same ETag: exactly one wins, the
/// others get 412 and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_conditional_writes_have_exactly_one_winner() {
    let server = Arc::new(Server::start().await);
    server.create_users().await;
    for round in 0..10 {
        let etag = server.put_user(1, &format!("base{round}")).await;
        let before = server.engine.visible_seq();
        let mut tasks = Vec::new();
        for contender in 0..10 {
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                let method = match contender % 3 {
                    0 => Method::PUT,
                    1 => Method::PATCH,
                    _ => Method::DELETE,
                };
                let mut request = server
                    .request(method.clone(), "/v1/tables/users/rows/1")
                    .header("if-match", format!("\"{etag}\""));
                if method != Method::DELETE {
                    request = request.json(&json!({"id": 1, "email": format!("c{contender}")}));
                }
                request.send().await.unwrap().status()
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                StatusCode::OK => winners += 1,
                StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => {}
                other => panic!("{other}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        assert_eq!(server.engine.visible_seq(), before + 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_have_one_creator() {
    let server = Arc::new(Server::start().await);
    let schema = |extra: bool| {
        let mut columns = vec![json!({"name": "id", "type": "int64"})];
        if extra {
            columns.push(json!({"name": "x", "type": "string", "nullable": true}));
        }
        json!({"columns": columns, "primary_key": ["id"]})
    };
    let mut tasks = Vec::new();
    for i in 0..12 {
        let table_server = server.clone();
        let body = schema(i % 2 == 1);
        tasks.push(tokio::spawn(async move {
            let (status, body) = table_server.put("/v1/tables/t", body).await;
            (i % 2 == 1, status, body)
        }));
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = server.call(Method::PUT, "/v1/consumers/c", None).await;
            (false, status, body)
        }));
    }
    let mut table_created = 0;
    let mut consumer_created = 0;
    let mut winner_extra = None;
    let mut outcomes = Vec::new();
    for task in tasks {
        let (extra, status, body) = task.await.unwrap();
        let is_table = body.get("columns").is_some() || body["error"]["code"] == "schema_conflict";
        if status == StatusCode::CREATED {
            if is_table {
                table_created += 1;
                winner_extra = Some(body["columns"].as_array().unwrap().len() == 2);
            } else {
                consumer_created += 1;
            }
        }
        outcomes.push((extra, status, body));
    }
    assert_eq!((table_created, consumer_created), (1, 1), "{outcomes:?}");
    let winner_extra = winner_extra.unwrap();
    for (extra, status, body) in outcomes {
        if body.get("columns").is_some() || body["error"]["code"] == "schema_conflict" {
            let expected = if status == StatusCode::CREATED {
                StatusCode::CREATED
            } else if extra == winner_extra {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            };
            assert_eq!(status, expected, "{body}");
        } else if status != StatusCode::CREATED {
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["error"]["code"], "consumer_exists");
        }
    }
}

/// A batch sets two rows to the same value; readers that do not name a
/// seq (point reads as of the head, range pages, pull pages) never see
/// one updated without the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_half_a_batch() {
    let server = Arc::new(Server::start().await);
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "v", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let write = |v: i64| {
        json!({"ops": [
            {"op": "upsert", "table": "users", "row": {"id": 1, "age": v}},
            {"op": "upsert", "table": "orders", "row": {"id": 1, "v": v}},
            {"op": "upsert", "table": "users", "row": {"id": 2, "age": v}},
        ]})
    };
    let (status, _) = server.post("/v1/batch", write(0)).await;
    assert_eq!(status, StatusCode::OK);
    let writer = {
        let server = server.clone();
        tokio::spawn(async move {
            for v in 1..=300 {
                let (status, body) = server.post("/v1/batch", write(v)).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() {
        let (status, page) = server.get("/v1/tables/users/rows").await;
        assert_eq!(status, StatusCode::OK);
        let ages: Vec<i64> = page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["age"].as_i64().unwrap())
            .collect();
        assert_eq!(ages.len(), 2);
        assert_eq!(ages[0], ages[1], "half a batch in a range page: {page}");
        let at = page["as_of"].as_u64().unwrap();
        let (status, order) = server
            .get(&format!("/v1/tables/orders/rows/1?as_of={at}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(order["v"], ages[0], "orders at the page's seq");
        // A pull page from the head backwards ends at batch boundaries.
        let (_, status_body) = server.get("/v1/status").await;
        let visible = status_body["visible_seq"].as_u64().unwrap();
        assert_eq!(visible % 3, 0, "visible_seq inside a batch: {visible}");
        checks += 1;
    }
    writer.await.unwrap();
    assert!(checks >= 1, "the reader never ran");
}

/// Commit timestamps follow the commit order: under concurrent writers,
/// `ts` (and Debezium `ts_ms`) never decrease with seq, and events of one
/// batch share one commit time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_times_follow_seq_order() {
    let server = Arc::new(Server::start().await);
    server.create_users().await;
    let mut tasks = Vec::new();
    for task in 0..6i64 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40i64 {
                if i % 5 == 0 {
                    let (status, _) = server
                        .post(
                            "/v1/batch",
                            json!({"ops": [
                                {"op": "upsert", "table": "users", "row": {"id": task * 1000 + i}},
                                {"op": "upsert", "table": "users", "row": {"id": task * 1000 + i + 1}},
                            ]}),
                        )
                        .await;
                    assert_eq!(status, StatusCode::OK);
                } else {
                    server.put_user(task * 1000 + i, "a").await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (_, page) = server.get("/v1/changes?since=0&limit=1000").await;
    let events = page["changes"].as_array().unwrap();
    for pair in events.windows(2) {
        let (a, b) = (
            pair[0]["ts"].as_str().unwrap(),
            pair[1]["ts"].as_str().unwrap(),
        );
        assert!(
            a <= b,
            "ts goes back: {} at {} then {} at {}",
            a,
            pair[0]["seq"],
            b,
            pair[1]["seq"]
        );
        if pair[0]["batch"]["first_seq"] == pair[1]["batch"]["first_seq"] {
            assert_eq!(a, b, "one batch, two commit times");
        }
    }
    let (_, page) = server
        .get("/v1/changes?since=0&limit=1000&format=debezium")
        .await;
    let ts: Vec<u64> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ts_ms"].as_u64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
}
