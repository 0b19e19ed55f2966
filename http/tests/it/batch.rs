//! Batches: atomic across tables, contiguous seqs, all or nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{assert_error, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_every_operation_or_none() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, body) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "string"}, {"name": "user_id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.put_user(1, "one").await;
    server.put_user(3, "three").await;

    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [
                {"op": "upsert", "table": "users", "row": {"id": 2, "email": "two"}},
                {"op": "upsert", "table": "orders", "row": {"id": "o-1", "user_id": 2}},
                {"op": "patch", "table": "users", "key": {"id": 1}, "row": {"age": 40}},
                {"op": "delete", "table": "users", "key": {"id": 99}},
                {"op": "delete", "table": "users", "key": {"id": 3}, "if_match": 2},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "first_seq": 3, "last_seq": 6,
            "results": [
                {"seq": 3, "op": "insert"},
                {"seq": 4, "op": "insert"},
                {"seq": 5, "op": "update"},
                {"seq": null, "op": "none"},
                {"seq": 6, "op": "delete"},
            ]
        })
    );

    // One failing operation rejects the whole batch, naming it; no seq is
    // used and no row changes.
    let failing = [
        (
            json!({"op": "patch", "table": "users", "key": {"id": 42}, "row": {"age": 1}}),
            404,
            "row_not_found",
        ),
        (
            json!({"op": "upsert", "table": "nope", "row": {"id": 1}}),
            404,
            "table_not_found",
        ),
        (
            json!({"op": "upsert", "table": "users", "row": {"id": "x"}}),
            400,
            "invalid_row",
        ),
        (
            json!({"op": "delete", "table": "users", "key": {"id": 1}, "if_match": 1}),
            412,
            "precondition_failed",
        ),
        (
            json!({"op": "delete", "table": "users", "key": {"email": "one"}}),
            400,
            "invalid_row",
        ),
    ];
    for (op, status_code, code) in failing {
        let (status, body) = server
            .post(
                "/v1/batch",
                json!({"ops": [
                    {"op": "upsert", "table": "users", "row": {"id": 10, "email": "ten"}},
                    op,
                ]}),
            )
            .await;
        assert_error(status, &body, status_code, code);
        assert_eq!(body["error"]["index"], 1, "{body}");
        assert_eq!(server.engine.visible_seq(), 6, "{body}");
        let (status, _) = server.get("/v1/tables/users/rows/10").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    let (status, body) = server.post("/v1/batch", json!({"ops": []})).await;
    assert_error(status, &body, 400, "invalid_batch");
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [{"op": "merge", "table": "users"}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_json");
    assert_eq!(server.engine.visible_seq(), 6);
}

/// A one-column key that no URL path can name (empty, `.`, `..`) is
/// refused, so no row exists that could not be read, patched or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_whose_key_no_path_can_name_are_refused() {
    let server = Server::start().await;
    let (status, body) = server
        .put(
            "/v1/tables/names",
            json!({"columns": [{"name": "name", "type": "string"}], "primary_key": ["name"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for name in ["", ".", ".."] {
        let (status, body) = server
            .post(
                "/v1/batch",
                json!({"ops": [{"op": "upsert", "table": "names", "row": {"name": name}}]}),
            )
            .await;
        assert_error(status, &body, 400, "bad_key");
    }
    let (status, body) = server
        .post(
            "/v1/batch",
            json!({"ops": [{"op": "upsert", "table": "names", "row": {"name": "..."}}]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "three dots are a plain segment: {body}"
    );
    assert_eq!(body["first_seq"], 1, "nothing was written before");
}
