//! Adversarial probes of auth: a token limited to one table must not
//! reach another table's data or move what other readers depend on by any
//! route; odd Authorization headers; tokens never echoed; CORS preflight
//! with tokens configured.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};
use tidefeed_http::{Scope, TokenRule, TokenSecret};

use crate::common::{json_of, Server, Sse};

const SECRET: &str = "s3cr3t-token-value-0123456789";

fn rule(token: &str, scopes: &[Scope], tables: Option<&[&str]>) -> TokenRule {
    TokenRule {
        secret: TokenSecret::Plain(token.to_owned()),
        scopes: scopes.to_vec(),
        tables: tables.map(|t| t.iter().map(|s| s.to_string()).collect()),
    }
}

async fn server() -> Server {
    let mut server = Server::start_with(
        |_| {},
        |options| {
            options.cors_allowed_origins = vec!["http://app.example".into()];
            options.tokens = vec![
                rule(SECRET, &[Scope::Read, Scope::Write, Scope::Admin], None),
                rule(
                    "users-only",
                    &[Scope::Read, Scope::Write, Scope::Admin],
                    Some(&["users"]),
                ),
            ]
        },
    )
    .await;
    server.token = Some(SECRET.into());
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}, {"name": "secret", "type": "string", "nullable": true}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server.put_user(1, "a").await;
    let (status, _) = server
        .put(
            "/v1/tables/orders/rows/1",
            json!({"id": 1, "secret": "order-secret"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server
}

async fn as_token(
    server: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Json>,
) -> (StatusCode, String) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .unwrap();
    let status = response.status();
    if response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"))
    {
        // Read a little of a stream, then let it go.
        let mut sse = Sse::new(response);
        let mut text = String::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(300), sse.next()).await
        {
            text.push_str(&event.data);
        }
        return (status, text);
    }
    (status, response.text().await.unwrap_or_default())
}

/// Every route a table-limited token can call: it never sees the other
/// table's rows or events, and never changes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_limited_token_never_reaches_another_table() {
    let server = server().await;
    let seq = server.engine.visible_seq();
    let token = Some("users-only");
    use Method as M;
    let cases: Vec<(Method, &str, Option<Json>)> = vec![
        (M::GET, "/v1/tables/orders", None),
        (M::GET, "/v1/tables/orders/rows", None),
        (M::GET, "/v1/tables/orders/rows?as_of=1", None),
        (M::GET, "/v1/tables/orders/rows/1", None),
        (M::GET, "/v1/tables/%6Frders/rows/1", None),
        (M::PUT, "/v1/tables/orders/rows/2", Some(json!({"id": 2}))),
        (
            M::PATCH,
            "/v1/tables/orders/rows/1",
            Some(json!({"secret": "x"})),
        ),
        (M::DELETE, "/v1/tables/orders/rows/1", None),
        (
            M::PUT,
            "/v1/tables/orders",
            Some(json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]})),
        ),
        (
            M::PUT,
            "/v1/tables/orders2",
            Some(json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]})),
        ),
        (M::GET, "/v1/changes?since=0", None),
        (M::GET, "/v1/changes?since=0&tables=orders", None),
        (M::GET, "/v1/changes?since=0&tables=users,orders", None),
        (M::GET, "/v1/changes?since=0&tables=users,%20orders", None),
        (M::GET, "/v1/changes?since=0&tables=,", None),
        (M::GET, "/v1/changes/stream?since=0", None),
        (M::GET, "/v1/changes/stream?since=0&tables=orders", None),
        (M::GET, "/v1/changes/stream?snapshot=true", None),
        (
            M::GET,
            "/v1/changes/stream?snapshot=true&tables=orders",
            None,
        ),
        (
            M::POST,
            "/v1/batch",
            Some(json!({"ops": [
                {"op": "upsert", "table": "users", "row": {"id": 5}},
                {"op": "delete", "table": "orders", "key": {"id": 1}},
            ]})),
        ),
        (
            M::POST,
            "/v1/batch",
            Some(json!({"ops": [
                {"op": "patch", "table": "orders", "key": {"id": 1}, "row": {"secret": "x"}},
            ]})),
        ),
    ];
    for (method, path, body) in cases {
        let (status, text) = as_token(&server, token, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
        assert!(!text.contains("order-secret"), "{method} {path}: {text}");
        let json: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(json["error"]["code"], "forbidden");
    }
    assert_eq!(server.engine.visible_seq(), seq, "something was written");
    // What it may do shows only its table.
    let (status, text) = as_token(&server, token, M::GET, "/v1/tables", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("orders"), "{text}");
    let (status, text) = as_token(
        &server,
        token,
        M::GET,
        "/v1/changes/stream?since=0&snapshot=false&tables=users",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("order-secret"), "{text}");
    let (status, text) = as_token(
        &server,
        token,
        M::GET,
        "/v1/changes/stream?snapshot=true&tables=users",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("\"read\"") && !text.contains("order-secret"),
        "{text}"
    );
}

/// A durable consumer is one position over every table. A token limited
/// to `users` must not be able to move one (an ack past `orders` events
/// makes every reader of that consumer, the Kafka connector included,
/// skip them), nor read as one without its table filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_limited_token_cannot_move_a_durable_consumer() {
    let server = server().await;
    let (status, body) = server
        .put("/v1/consumers/connector", json!({"position": 0}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let head = server.engine.visible_seq();
    let (status, text) = as_token(
        &server,
        Some("users-only"),
        Method::POST,
        "/v1/consumers/connector/ack",
        Some(json!({"seq": head})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    let (_, consumer) = server.get("/v1/consumers/connector").await;
    assert_eq!(consumer["position"], 0, "{consumer}");
    // Nor delete it (its token has admin, but only over `users`).
    let (status, text) = as_token(
        &server,
        Some("users-only"),
        Method::DELETE,
        "/v1/consumers/connector",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    // Nor create one at position 0, which pins every table's history.
    let (status, text) = as_token(
        &server,
        Some("users-only"),
        Method::PUT,
        "/v1/consumers/pin",
        Some(json!({"position": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_limited_token_reads_a_consumer_only_through_its_tables() {
    let server = server().await;
    let (status, body) = server
        .put("/v1/consumers/connector", json!({"position": 0}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, text) = as_token(
        &server,
        Some("users-only"),
        Method::GET,
        "/v1/changes/stream?consumer=connector",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    let (status, text) = as_token(
        &server,
        Some("users-only"),
        Method::GET,
        "/v1/changes/stream?consumer=connector&tables=users",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains("order-secret"), "{text}");
}

/// Authorization header forms: only `Bearer <token>` (any case of the
/// scheme) authenticates; the answer never echoes what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_authorization_headers_are_401_and_never_echoed() {
    let server = server().await;
    let wrong = "wrong-but-distinctive-7f3a9c";
    for header in [
        String::new(),
        "Bearer".into(),
        "Bearer ".into(),
        format!("Basic {wrong}"),
        format!("Token {wrong}"),
        format!("Bearer {wrong}"),
        format!("Bearer {SECRET}x"),
        format!("Bearer {}", &SECRET[..SECRET.len() - 1]),
        format!("Bearer {SECRET} extra"),
        format!("Bearer{SECRET}"),
        wrong.to_owned(),
    ] {
        for path in [
            "/v1/tables",
            "/v1/changes/stream",
            "/metrics",
            "/v1/openapi.json",
            "/v1/status",
            "/v1/nope",
        ] {
            let response = server
                .client
                .get(server.url(path))
                .header("authorization", header.as_str())
                .send()
                .await
                .unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            let expected = if path == "/v1/nope" { 404 } else { 401 };
            assert_eq!(status.as_u16(), expected, "{header:?} {path}: {text}");
            assert!(!text.contains(wrong) && !text.contains(SECRET), "{text}");
            let json: Json = serde_json::from_str(&text).unwrap();
            assert!(json["error"]["code"].is_string());
        }
    }
    for header in [
        format!("bearer {SECRET}"),
        format!("BEARER {SECRET}"),
        format!("Bearer   {SECRET}  "),
    ] {
        let response = server
            .client
            .get(server.url("/v1/tables"))
            .header("authorization", header.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{header:?}");
    }
    // access_token is for stream routes; elsewhere it is not a credential.
    let (status, body) = json_of(
        server
            .client
            .get(server.url(&format!("/v1/tables?access_token={SECRET}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
        "{body}"
    );
    assert!(!body.to_string().contains(SECRET));
}

/// A browser's preflight carries no credentials: it must be answered for
/// an allowed origin even though every route needs a token, and error
/// answers carry the CORS headers so the page can read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_errors_work_with_tokens_configured() {
    let server = server().await;
    for (method, path, headers) in [
        (
            "PUT",
            "/v1/tables/users/rows/1",
            "authorization, content-type, if-match",
        ),
        ("GET", "/v1/changes/stream", "last-event-id"),
        ("DELETE", "/v1/consumers/c", "authorization"),
        ("POST", "/v1/batch", "authorization, content-type"),
    ] {
        let preflight = server
            .client
            .request(Method::OPTIONS, server.url(path))
            .header("Origin", "http://app.example")
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", headers)
            .send()
            .await
            .unwrap();
        assert!(
            preflight.status().is_success(),
            "{method} {path}: {}",
            preflight.status()
        );
        assert_eq!(
            preflight.headers()["access-control-allow-origin"],
            "http://app.example"
        );
        let allowed = preflight.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(allowed.contains(method), "{allowed}");
    }
    let response = server
        .client
        .get(server.url("/v1/tables"))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    // The ETag header is readable by the page.
    let response = server
        .client
        .get(server.url("/v1/tables/users/rows/1"))
        .bearer_auth(SECRET)
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");
    // A disallowed origin's preflight gets no allow-origin.
    let preflight = server
        .client
        .request(Method::OPTIONS, server.url("/v1/tables"))
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// "A token limited to tables reaches only those tables": the operational
/// routes still show a `users`-only token the other tables' names and
/// activity (metrics labels, consumer names and lag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_limited_token_learns_nothing_of_other_tables_from_operational_routes() {
    let server = server().await;
    let (status, _) = server
        .put("/v1/consumers/orders-sync", json!({"position": 0}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for path in ["/metrics", "/v1/consumers", "/v1/status"] {
        let (status, text) = as_token(&server, Some("users-only"), Method::GET, path, None).await;
        assert!(
            status == StatusCode::FORBIDDEN || !text.contains("orders"),
            "{path}: {status} shows other tables: {}",
            text.lines()
                .filter(|l| l.contains("orders"))
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}
