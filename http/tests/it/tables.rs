//! Tables: create (201, 200 when identical, 409 when different), list,
//! describe; unknown routes and methods answer in our JSON format.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{assert_error, users_schema, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_created_once_listed_and_described() {
    let server = Server::start().await;
    let (status, created) = server.put("/v1/tables/users", users_schema()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "users");
    assert_eq!(created["primary_key"], json!(["id"]));
    assert_eq!(
        created["columns"][1],
        json!({"name": "email", "type": "string", "nullable": true})
    );

    // Identical again: 200 with the same schema.
    let (status, again) = server.put("/v1/tables/users", users_schema()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, created);

    // The schema of a GET can be sent back as is.
    let (status, described) = server.get("/v1/tables/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(described, created);
    let (status, _) = server.put("/v1/tables/users", described).await;
    assert_eq!(status, StatusCode::OK);

    // Different schema: 409.
    let mut different = users_schema();
    different["columns"][1]["nullable"] = json!(false);
    let (status, body) = server.put("/v1/tables/users", different).await;
    assert_error(status, &body, 409, "schema_conflict");

    let (status, body) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "string"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, list) = server.get("/v1/tables").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users", "orders"]);

    let (status, body) = server.get("/v1/tables/nothing").await;
    assert_error(status, &body, 404, "table_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_schemas_are_refused_naming_the_problem() {
    let server = Server::start().await;
    let cases = [
        (
            json!({"columns": [], "primary_key": ["id"]}),
            "invalid_schema",
        ),
        (
            json!({"columns": [{"name": "id", "type": "int64", "nullable": true}], "primary_key": ["id"]}),
            "invalid_schema",
        ),
        (
            json!({"columns": [{"name": "id", "type": "json"}], "primary_key": ["id"]}),
            "invalid_schema",
        ),
        (
            json!({"columns": [{"name": "id", "type": "decimal"}], "primary_key": ["id"]}),
            "invalid_json",
        ),
        (
            json!({"name": "other", "columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
            "invalid_schema",
        ),
    ];
    for (schema, code) in cases {
        let (status, body) = server.put("/v1/tables/t", schema.clone()).await;
        assert_error(status, &body, 400, code);
    }
    let (_, list) = server.get("/v1/tables").await;
    assert_eq!(list["tables"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let server = Server::start().await;
    let (status, body) = server.get("/v1/nothing").await;
    assert_error(status, &body, 404, "route_not_found");
    let (status, body) = server.call(Method::DELETE, "/v1/tables", None).await;
    assert_error(status, &body, 405, "method_not_allowed");
    let (status, body) = server.call(Method::POST, "/v1/tables/users", None).await;
    assert_error(status, &body, 405, "method_not_allowed");
}
