//! Bad input, one row per case: its status and stable code, and nothing
//! written (the visible seq and the tables stay as they were).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{assert_error, enc, json_of, Server};

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    body: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        content_type: (!body.is_empty()).then_some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        code,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_code_and_writes_nothing() {
    let server = Server::start_with(|_| {}, |options| options.max_body_bytes = 4096).await;
    server.create_users().await;
    for (name, schema) in [
        (
            "pair",
            json!({"columns": [{"name": "a", "type": "string"}, {"name": "b", "type": "int64"}], "primary_key": ["a", "b"]}),
        ),
        (
            "floats",
            json!({"columns": [{"name": "k", "type": "float64"}], "primary_key": ["k"]}),
        ),
        (
            "docs",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "doc", "type": "json", "nullable": true}], "primary_key": ["id"]}),
        ),
    ] {
        let (status, body) = server.put(&format!("/v1/tables/{name}"), schema).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    server.put_user(1, "one").await;
    let seq = server.engine.visible_seq();
    let (_, tables_before) = server.get("/v1/tables").await;

    use Method as M;
    let deep = format!(
        "{{\"id\":1,\"doc\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let big = format!("{{\"id\":1,\"email\":\"{}\"}}", "x".repeat(5000));
    let mut cases = vec![
        case(
            "malformed JSON",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"id":1,"#,
            400,
            "invalid_json",
        ),
        case(
            "JSON too deep",
            M::PUT,
            "/v1/tables/docs/rows/1",
            &deep,
            400,
            "invalid_json",
        ),
        case(
            "wrong type",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"id":1,"age":"old"}"#,
            400,
            "invalid_row",
        ),
        case(
            "int64 out of range",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"id":1,"age":18446744073709551615}"#,
            400,
            "invalid_row",
        ),
        case(
            "unknown column",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"id":1,"nickname":"x"}"#,
            400,
            "invalid_row",
        ),
        case(
            "missing key column",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"email":"x"}"#,
            400,
            "invalid_row",
        ),
        case(
            "null key column",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"id":null,"email":"x"}"#,
            400,
            "invalid_row",
        ),
        case(
            "row not an object",
            M::PUT,
            "/v1/tables/users/rows/1",
            "[1]",
            400,
            "invalid_row",
        ),
        case(
            "key in body != key in path",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"id":2,"email":"x"}"#,
            400,
            "key_mismatch",
        ),
        case(
            "patch changing the key",
            M::PATCH,
            "/v1/tables/users/rows/1",
            r#"{"id":2}"#,
            400,
            "key_mismatch",
        ),
        case(
            "NaN key in the path",
            M::PUT,
            "/v1/tables/floats/rows/NaN",
            r#"{"k":"NaN"}"#,
            400,
            "invalid_row",
        ),
        case(
            "NaN key in a batch",
            M::POST,
            "/v1/batch",
            r#"{"ops":[{"op":"upsert","table":"floats","row":{"k":"NaN"}}]}"#,
            400,
            "invalid_row",
        ),
        case(
            "oversized body",
            M::PUT,
            "/v1/tables/users/rows/1",
            &big,
            413,
            "payload_too_large",
        ),
        case(
            "bad table name",
            M::PUT,
            "/v1/tables/Bad-Name",
            r#"{"columns":[{"name":"id","type":"int64"}],"primary_key":["id"]}"#,
            400,
            "bad_table_name",
        ),
        case(
            "bad table name in a row path",
            M::GET,
            "/v1/tables/1abc/rows/1",
            "",
            400,
            "bad_table_name",
        ),
        case(
            "bad one-column key",
            M::GET,
            "/v1/tables/users/rows/abc",
            "",
            400,
            "bad_key",
        ),
        case(
            "one-column key not UTF-8",
            M::GET,
            "/v1/tables/users/rows/%FF",
            "",
            400,
            "bad_key",
        ),
        case(
            "composite key not an array",
            M::GET,
            "/v1/tables/pair/rows/x",
            "",
            400,
            "bad_key",
        ),
        case(
            "composite key of the wrong length",
            M::GET,
            &format!("/v1/tables/pair/rows/{}", enc(r#"["x"]"#)),
            "",
            400,
            "bad_key",
        ),
        case(
            "composite key of the wrong types",
            M::DELETE,
            &format!("/v1/tables/pair/rows/{}", enc(r#"[1,"x"]"#)),
            "",
            400,
            "bad_key",
        ),
        case(
            "bad range bound",
            M::GET,
            "/v1/tables/users/rows?start=abc",
            "",
            400,
            "bad_key",
        ),
        case(
            "bad since",
            M::GET,
            "/v1/changes?since=abc",
            "",
            400,
            "bad_query",
        ),
        case(
            "negative since on a stream",
            M::GET,
            "/v1/changes/stream?since=-1",
            "",
            400,
            "bad_query",
        ),
        case(
            "since in the future",
            M::GET,
            "/v1/changes?since=999",
            "",
            400,
            "future_seq",
        ),
        case(
            "stream since in the future",
            M::GET,
            "/v1/changes/stream?since=999",
            "",
            400,
            "future_seq",
        ),
        case(
            "bad limit",
            M::GET,
            "/v1/changes?limit=0",
            "",
            400,
            "bad_query",
        ),
        case(
            "limit too large",
            M::GET,
            "/v1/tables/users/rows?limit=5000",
            "",
            400,
            "bad_query",
        ),
        case(
            "bad as_of",
            M::GET,
            "/v1/tables/users/rows/1?as_of=x",
            "",
            400,
            "bad_query",
        ),
        case(
            "bad format",
            M::GET,
            "/v1/changes?format=avro",
            "",
            400,
            "bad_query",
        ),
        case(
            "bad op filter",
            M::GET,
            "/v1/changes/stream?ops=read",
            "",
            400,
            "bad_query",
        ),
        case(
            "snapshot with since",
            M::GET,
            "/v1/changes/stream?snapshot=true&since=0",
            "",
            400,
            "bad_query",
        ),
        case(
            "unknown query parameter",
            M::GET,
            "/v1/changes?sinse=1",
            "",
            400,
            "bad_query",
        ),
        case(
            "unknown table",
            M::PUT,
            "/v1/tables/nope/rows/1",
            r#"{"id":1}"#,
            404,
            "table_not_found",
        ),
        case(
            "unknown table in a filter",
            M::GET,
            "/v1/changes?tables=nope",
            "",
            404,
            "table_not_found",
        ),
        case(
            "unknown consumer",
            M::GET,
            "/v1/consumers/ghost",
            "",
            404,
            "consumer_not_found",
        ),
        case(
            "ack of an unknown consumer",
            M::POST,
            "/v1/consumers/ghost/ack",
            r#"{"seq":1}"#,
            404,
            "consumer_not_found",
        ),
        case(
            "stream of an unknown consumer",
            M::GET,
            "/v1/changes/stream?consumer=ghost",
            "",
            404,
            "consumer_not_found",
        ),
        case(
            "bad consumer name",
            M::PUT,
            "/v1/consumers/Bad%20Name",
            "",
            400,
            "bad_consumer_name",
        ),
        case(
            "bad Last-Event-ID",
            M::GET,
            "/v1/changes/stream",
            "",
            400,
            "bad_header",
        ),
    ];
    cases.push(Case {
        content_type: Some("text/plain"),
        ..case(
            "wrong content type",
            M::PUT,
            "/v1/tables/users/rows/1",
            r#"{"id":1}"#,
            415,
            "unsupported_media_type",
        )
    });
    cases.push(Case {
        content_type: None,
        ..case(
            "no content type",
            M::POST,
            "/v1/batch",
            r#"{"ops":[]}"#,
            415,
            "unsupported_media_type",
        )
    });

    for case in cases {
        let mut request = server
            .request(case.method.clone(), &case.path)
            .body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        if case.what == "bad Last-Event-ID" {
            request = request.header("Last-Event-ID", "yesterday");
        }
        let (status, body) = json_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (case.status, Some(case.code)),
            "{}: {body}",
            case.what
        );
        assert_error(status, &body, case.status, case.code);
        assert_eq!(
            server.engine.visible_seq(),
            seq,
            "{} wrote something",
            case.what
        );
    }
    let (_, row) = server.get("/v1/tables/users/rows/1").await;
    assert_eq!(row, json!({"id": 1, "email": "one", "age": null}));
    let (_, tables_after) = server.get("/v1/tables").await;
    assert_eq!(tables_after, tables_before);
    assert!(server.engine.consumers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rows_name_the_column() {
    let server = Server::start().await;
    server.create_users().await;
    let (status, body) = server
        .put("/v1/tables/users/rows/1", json!({"id": 1, "age": "old"}))
        .await;
    assert_error(status, &body, 400, "invalid_row");
    assert_eq!(body["error"]["column"], "age");
    let (_, body) = server
        .put("/v1/tables/users/rows/1", json!({"id": 1, "nick": "x"}))
        .await;
    assert_eq!(body["error"]["column"], "nick");
    let (_, body) = server
        .put("/v1/tables/users/rows/1", json!({"email": "x"}))
        .await;
    assert_eq!(body["error"]["column"], "id");
    let (_, body) = server
        .put("/v1/tables/users/rows/1", json!({"id": 2}))
        .await;
    assert_eq!(body["error"]["column"], "id");
}
