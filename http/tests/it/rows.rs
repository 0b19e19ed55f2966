//! Rows: upsert, patch, delete with ETags and If-Match; point reads now
//! and as of a seq; key-range pages; composite keys in URLs.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{assert_error, enc, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_return_seqs_and_etags_and_reads_see_them() {
    let server = Server::start().await;
    server.create_users().await;

    let response = server
        .request(Method::PUT, "/v1/tables/users/rows/7")
        .json(&json!({"id": 7, "email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"seq": 1, "op": "insert"}));

    let (status, body) = server
        .put(
            "/v1/tables/users/rows/7",
            json!({"id": 7, "email": "b@example.com", "age": 30}),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"seq": 2, "op": "update"}))
    );

    let response = server
        .request(Method::GET, "/v1/tables/users/rows/7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let row: serde_json::Value = response.json().await.unwrap();
    assert_eq!(row, json!({"id": 7, "email": "b@example.com", "age": 30}));

    // As of seq 1: the first version, with its own ETag.
    let response = server
        .request(Method::GET, "/v1/tables/users/rows/7?as_of=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let row: serde_json::Value = response.json().await.unwrap();
    assert_eq!(row, json!({"id": 7, "email": "a@example.com", "age": null}));

    // Patch merges.
    let (status, body) = server
        .call(
            Method::PATCH,
            "/v1/tables/users/rows/7",
            Some(json!({"age": 31})),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"seq": 3, "op": "update"}))
    );
    let (_, row) = server.get("/v1/tables/users/rows/7").await;
    assert_eq!(row, json!({"id": 7, "email": "b@example.com", "age": 31}));

    // Patch or delete of a missing row: 404, and no seq is used.
    let (status, body) = server
        .call(
            Method::PATCH,
            "/v1/tables/users/rows/8",
            Some(json!({"age": 1})),
        )
        .await;
    assert_error(status, &body, 404, "row_not_found");
    let (status, body) = server
        .call(Method::DELETE, "/v1/tables/users/rows/8", None)
        .await;
    assert_error(status, &body, 404, "row_not_found");
    assert_eq!(server.engine.visible_seq(), 3);

    let (status, body) = server
        .call(Method::DELETE, "/v1/tables/users/rows/7", None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"seq": 4, "op": "delete"}))
    );
    let (status, body) = server.get("/v1/tables/users/rows/7").await;
    assert_error(status, &body, 404, "row_not_found");
    // Still readable as of before the delete.
    let (status, _) = server.get("/v1/tables/users/rows/7?as_of=3").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get("/v1/tables/users/rows/7?as_of=99").await;
    assert_error(status, &body, 400, "future_seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_writes() {
    let server = Server::start().await;
    server.create_users().await;
    let seq = server.put_user(1, "a").await;

    let stale = server
        .request(Method::PUT, "/v1/tables/users/rows/1")
        .header("If-Match", format!("\"{}\"", seq + 100))
        .json(&json!({"id": 1, "email": "stale"}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::json_of(stale).await;
    assert_error(status, &body, 412, "precondition_failed");
    assert_eq!(body["error"]["actual"], seq);

    let fresh = server
        .request(Method::PATCH, "/v1/tables/users/rows/1")
        .header("If-Match", format!("\"{seq}\""))
        .json(&json!({"email": "fresh"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    let next = fresh.headers()["etag"].to_str().unwrap().to_owned();

    // The old ETag no longer matches a delete.
    let delete = server
        .request(Method::DELETE, "/v1/tables/users/rows/1")
        .header("If-Match", format!("\"{seq}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::PRECONDITION_FAILED);
    let delete = server
        .request(Method::DELETE, "/v1/tables/users/rows/1")
        .header("If-Match", next)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::OK);

    let weak = server
        .request(Method::DELETE, "/v1/tables/users/rows/1")
        .header("If-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::json_of(weak).await;
    assert_error(status, &body, 400, "bad_header");
}

/// `If-Match: *` needs the row to exist (any version); `If-None-Match: *`
/// needs it absent: insert-only writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_preconditions_test_existence() {
    let server = Server::start().await;
    server.create_users().await;
    let put = |id: i64, header: &'static str| {
        server
            .request(Method::PUT, &format!("/v1/tables/users/rows/{id}"))
            .header(header, "*")
            .json(&json!({"id": id, "email": "x"}))
            .send()
    };
    let absent = put(1, "If-Match").await.unwrap();
    let (status, body) = crate::common::json_of(absent).await;
    assert_error(status, &body, 412, "precondition_failed");
    assert_eq!(body["error"]["expected"], "*");

    let created = put(1, "If-None-Match").await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let again = put(1, "If-None-Match").await.unwrap();
    let (status, body) = crate::common::json_of(again).await;
    assert_error(status, &body, 412, "precondition_failed");
    assert_eq!(body["error"]["actual"], 1);

    let exists = put(1, "If-Match").await.unwrap();
    assert_eq!(exists.status(), StatusCode::OK);
    let (_, status) = server.get("/v1/status").await;
    assert_eq!(status["visible_seq"], 2, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_page_in_key_order_at_one_seq() {
    let server = Server::start().await;
    server.create_users().await;
    for id in (0..25).rev() {
        server.put_user(id, &format!("u{id}")).await;
    }
    let mut ids = Vec::new();
    let mut query = "limit=10".to_owned();
    let mut as_of = None;
    loop {
        let (status, page) = server.get(&format!("/v1/tables/users/rows?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if as_of.is_none() {
            as_of = Some(page["as_of"].as_u64().unwrap());
            // Writes after the first page do not show in later pages.
            server.put_user(100, "late").await;
        }
        ids.extend(
            page["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => query = format!("limit=10&next={}&as_of={}", enc(next), as_of.unwrap()),
            None => break,
        }
    }
    assert_eq!(ids, (0..25).collect::<Vec<_>>());

    let (_, page) = server.get("/v1/tables/users/rows?start=5&end=8").await;
    let ids: Vec<i64> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [5, 6, 7]);
    assert_eq!(page["next"], json!(null));

    let (status, body) = server.get("/v1/tables/users/rows?start=1&next=2").await;
    assert_error(status, &body, 400, "bad_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_and_string_keys_travel_percent_encoded() {
    let server = Server::start().await;
    let (status, body) = server
        .put(
            "/v1/tables/events",
            json!({
                "columns": [
                    {"name": "stream", "type": "string"},
                    {"name": "n", "type": "int64"},
                    {"name": "payload", "type": "json", "nullable": true}
                ],
                "primary_key": ["stream", "n"]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = enc(r#"["a/b c",7]"#);
    let (status, body) = server
        .put(
            &format!("/v1/tables/events/rows/{key}"),
            json!({"stream": "a/b c", "n": 7, "payload": {"x": [1]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, row) = server.get(&format!("/v1/tables/events/rows/{key}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        row,
        json!({"stream": "a/b c", "n": 7, "payload": {"x": [1]}})
    );

    // A prefix bound selects the stream.
    let (_, page) = server
        .get(&format!(
            "/v1/tables/events/rows?start={}",
            enc(r#"["a/b c"]"#)
        ))
        .await;
    assert_eq!(page["rows"].as_array().unwrap().len(), 1);

    let (status, body) = server
        .put(
            "/v1/tables/names",
            json!({"columns": [{"name": "name", "type": "string"}], "primary_key": ["name"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let name = "ünï/cödé ?&#";
    let (status, body) = server
        .put(
            &format!("/v1/tables/names/rows/{}", enc(name)),
            json!({"name": name}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, row) = server
        .get(&format!("/v1/tables/names/rows/{}", enc(name)))
        .await;
    assert_eq!((status, row), (StatusCode::OK, json!({"name": name})));
}
