//! Bearer tokens: missing and wrong tokens are 401, missing scopes and
//! tables 403, on writes, reads, streams, consumers and metrics;
//! `access_token` works on stream routes only.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use tidefeed_http::{Scope, TokenRule, TokenSecret};

use crate::common::{json_of, users_schema, Server};

fn rule(token: &str, scopes: &[Scope], tables: Option<&[&str]>) -> TokenRule {
    TokenRule {
        secret: TokenSecret::Plain(token.to_owned()),
        scopes: scopes.to_vec(),
        tables: tables.map(|t| t.iter().map(|s| s.to_string()).collect()),
    }
}

async fn server() -> Server {
    let hashed: [u8; 32] = Sha256::digest(b"hashed-secret").into();
    let mut server = Server::start_with(
        |_| {},
        |options| {
            options.tokens = vec![
                rule("reader", &[Scope::Read], None),
                rule("writer", &[Scope::Write], None),
                rule("admin", &[Scope::Admin], None),
                rule("users-rw", &[Scope::Read, Scope::Write], Some(&["users"])),
                TokenRule {
                    secret: TokenSecret::Sha256(hashed),
                    scopes: vec![Scope::Read],
                    tables: None,
                },
            ]
        },
    )
    .await;
    server.token = Some("admin".into());
    server.create_users().await;
    let (status, _) = server
        .put(
            "/v1/tables/orders",
            json!({"columns": [{"name": "id", "type": "int64"}], "primary_key": ["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server.token = Some("writer".into());
    server.put_user(1, "a").await;
    server.token = None;
    server
}

async fn call(
    server: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Json>,
) -> (StatusCode, Json) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    if response.status() == StatusCode::UNAUTHORIZED {
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
    if !json {
        return (response.status(), Json::Null);
    }
    json_of(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_the_token_its_scope_and_its_tables() {
    let server = server().await;
    let user = || Some(json!({"id": 1, "email": "x"}));
    let order = || Some(json!({"id": 1}));
    use Method as M;
    /// (token, method, path, body, expected status)
    type Case = (
        Option<&'static str>,
        Method,
        &'static str,
        Option<Json>,
        u16,
    );
    let cases: Vec<Case> = vec![
        // Writes.
        (None, M::PUT, "/v1/tables/users/rows/1", user(), 401),
        (
            Some("wrong"),
            M::PUT,
            "/v1/tables/users/rows/1",
            user(),
            401,
        ),
        (
            Some("reader"),
            M::PUT,
            "/v1/tables/users/rows/1",
            user(),
            403,
        ),
        (
            Some("admin"),
            M::PUT,
            "/v1/tables/users/rows/1",
            user(),
            403,
        ),
        (
            Some("writer"),
            M::PUT,
            "/v1/tables/users/rows/1",
            user(),
            200,
        ),
        (
            Some("users-rw"),
            M::PUT,
            "/v1/tables/users/rows/1",
            user(),
            200,
        ),
        (
            Some("users-rw"),
            M::PUT,
            "/v1/tables/orders/rows/1",
            order(),
            403,
        ),
        (
            Some("users-rw"),
            M::POST,
            "/v1/batch",
            Some(json!({"ops": [{"op": "upsert", "table": "orders", "row": {"id": 2}}]})),
            403,
        ),
        (
            Some("users-rw"),
            M::POST,
            "/v1/batch",
            Some(json!({"ops": [{"op": "upsert", "table": "users", "row": {"id": 2}}]})),
            200,
        ),
        (
            Some("reader"),
            M::DELETE,
            "/v1/tables/users/rows/2",
            None,
            403,
        ),
        // Reads.
        (None, M::GET, "/v1/tables/users/rows/1", None, 401),
        (Some("writer"), M::GET, "/v1/tables/users/rows/1", None, 403),
        (Some("reader"), M::GET, "/v1/tables/users/rows/1", None, 200),
        (
            Some("hashed-secret"),
            M::GET,
            "/v1/tables/users/rows/1",
            None,
            200,
        ),
        (Some("users-rw"), M::GET, "/v1/tables/orders", None, 403),
        (Some("reader"), M::GET, "/v1/status", None, 200),
        (None, M::GET, "/v1/openapi.json", None, 401),
        // Tables and consumers: admin.
        (
            Some("writer"),
            M::PUT,
            "/v1/tables/more",
            Some(users_schema()),
            403,
        ),
        (
            Some("admin"),
            M::PUT,
            "/v1/tables/more",
            Some(users_schema()),
            201,
        ),
        (Some("reader"), M::PUT, "/v1/consumers/c", None, 403),
        (Some("admin"), M::PUT, "/v1/consumers/c", None, 201),
        (None, M::GET, "/v1/consumers/c", None, 401),
        (Some("reader"), M::GET, "/v1/consumers", None, 200),
        (
            Some("reader"),
            M::POST,
            "/v1/consumers/c/ack",
            Some(json!({"seq": 1})),
            200,
        ),
        // A table-limited token cannot move a consumer that spans every
        // table (its readers would skip other tables' changes).
        (
            Some("users-rw"),
            M::POST,
            "/v1/consumers/c/ack",
            Some(json!({"seq": 1})),
            403,
        ),
        (Some("users-rw"), M::DELETE, "/v1/consumers/c", None, 403),
        (Some("writer"), M::DELETE, "/v1/consumers/c", None, 403),
        (Some("admin"), M::DELETE, "/v1/consumers/c", None, 204),
        // Changes and streams, with header tokens.
        (None, M::GET, "/v1/changes?since=0", None, 401),
        (Some("writer"), M::GET, "/v1/changes?since=0", None, 403),
        (Some("reader"), M::GET, "/v1/changes?since=0", None, 200),
        (Some("users-rw"), M::GET, "/v1/changes?since=0", None, 403),
        (
            Some("users-rw"),
            M::GET,
            "/v1/changes?since=0&tables=users",
            None,
            200,
        ),
        (
            Some("users-rw"),
            M::GET,
            "/v1/changes?since=0&tables=users,orders",
            None,
            403,
        ),
        (None, M::GET, "/v1/changes/stream", None, 401),
        (Some("writer"), M::GET, "/v1/changes/stream", None, 403),
        (Some("users-rw"), M::GET, "/v1/changes/stream", None, 403),
        (
            Some("users-rw"),
            M::GET,
            "/v1/changes/stream?tables=orders",
            None,
            403,
        ),
        (
            Some("users-rw"),
            M::GET,
            "/v1/changes/stream?tables=users",
            None,
            200,
        ),
        // Tokens in the query: stream routes only.
        (
            None,
            M::GET,
            "/v1/changes/stream?access_token=reader",
            None,
            200,
        ),
        (
            None,
            M::GET,
            "/v1/changes/stream?access_token=wrong",
            None,
            401,
        ),
        (
            None,
            M::GET,
            "/v1/changes/stream?access_token=writer",
            None,
            403,
        ),
        (None, M::GET, "/v1/changes?access_token=reader", None, 200),
        (None, M::GET, "/v1/tables?access_token=reader", None, 401),
        // Metrics need a token by default; health does not.
        (None, M::GET, "/metrics", None, 401),
        (Some("writer"), M::GET, "/metrics", None, 403),
        (Some("reader"), M::GET, "/metrics", None, 200),
        (None, M::GET, "/healthz", None, 200),
        (None, M::GET, "/readyz", None, 200),
    ];
    for (token, method, path, body, expected) in cases {
        let (status, response) = call(&server, token, method.clone(), path, body).await;
        assert_eq!(
            status.as_u16(),
            expected,
            "{token:?} {method} {path}: {response}"
        );
        match expected {
            401 => assert_eq!(response["error"]["code"], "unauthorized"),
            403 => assert_eq!(response["error"]["code"], "forbidden"),
            _ => {}
        }
    }

    // A token limited to tables lists only its tables.
    let (_, list) = call(&server, Some("users-rw"), Method::GET, "/v1/tables", None).await;
    let names: Vec<&str> = list["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_tokens_are_options() {
    let server = Server::start_with(
        |_| {},
        |options| {
            options.tokens = vec![rule("reader", &[Scope::Read], None)];
            options.metrics_require_token = false;
            options.health_require_token = true;
        },
    )
    .await;
    assert_eq!(
        call(&server, None, Method::GET, "/metrics", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, None, Method::GET, "/healthz", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&server, None, Method::GET, "/readyz", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&server, Some("reader"), Method::GET, "/readyz", None)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_everything_is_open_on_loopback() {
    let server = Server::start().await;
    server.create_users().await;
    assert_eq!(
        call(&server, None, Method::GET, "/metrics", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, None, Method::GET, "/v1/tables", None).await.0,
        StatusCode::OK
    );
}
