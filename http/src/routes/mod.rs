//! The route table: every route of the API with the access it needs, one
//! list used both to build the router and to check the OpenAPI document.

pub(crate) mod batch;
pub(crate) mod changes;
pub(crate) mod consumers;
pub(crate) mod rows;
pub(crate) mod status;
pub(crate) mod stream;
pub(crate) mod tables;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{authorize, Access, RouteAccess};
use crate::error::ApiError;
use crate::options::Scope;
use crate::state::AppState;

/// One route: method, path template, what it needs, and its handler.
pub(crate) struct Route {
    #[cfg_attr(not(test), allow(dead_code))] // read by the OpenAPI check
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// Accepts `?access_token=` (stream routes, for browser `EventSource`).
    pub query_token: bool,
    handler: axum::routing::MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    Route {
        method,
        path,
        access,
        query_token: false,
        handler: on(filter, handler),
    }
}

impl Route {
    fn with_query_token(mut self) -> Route {
        self.query_token = true;
        self
    }
}

/// Every route of the API (DESIGN.md section 9).
///
/// Scopes: `admin` creates tables and creates or deletes durable
/// consumers; `write` changes rows; `read` reads everything else,
/// including streams, and acks consumers (acking is what a reader does).
pub(crate) fn routes() -> Vec<Route> {
    use Access::{Health, Metrics};
    use Method as M;
    const READ: Access = Access::Scope(Scope::Read);
    const WRITE: Access = Access::Scope(Scope::Write);
    const ADMIN: Access = Access::Scope(Scope::Admin);
    vec![
        route(M::GET, "/v1/tables", READ, tables::list_tables),
        route(M::PUT, "/v1/tables/{table}", ADMIN, tables::create_table),
        route(M::GET, "/v1/tables/{table}", READ, tables::describe_table),
        route(M::GET, "/v1/tables/{table}/rows", READ, rows::scan_rows),
        route(M::GET, "/v1/tables/{table}/rows/{key}", READ, rows::get_row),
        route(
            M::PUT,
            "/v1/tables/{table}/rows/{key}",
            WRITE,
            rows::upsert_row,
        ),
        route(
            M::PATCH,
            "/v1/tables/{table}/rows/{key}",
            WRITE,
            rows::patch_row,
        ),
        route(
            M::DELETE,
            "/v1/tables/{table}/rows/{key}",
            WRITE,
            rows::delete_row,
        ),
        route(M::POST, "/v1/batch", WRITE, batch::batch),
        route(M::GET, "/v1/changes", READ, changes::pull).with_query_token(),
        route(M::GET, "/v1/changes/stream", READ, stream::stream).with_query_token(),
        route(M::GET, "/v1/consumers", READ, consumers::list_consumers),
        route(
            M::PUT,
            "/v1/consumers/{name}",
            ADMIN,
            consumers::create_consumer,
        ),
        route(
            M::GET,
            "/v1/consumers/{name}",
            READ,
            consumers::get_consumer,
        ),
        route(
            M::DELETE,
            "/v1/consumers/{name}",
            ADMIN,
            consumers::delete_consumer,
        ),
        route(
            M::POST,
            "/v1/consumers/{name}/ack",
            READ,
            consumers::ack_consumer,
        ),
        route(M::GET, "/v1/status", READ, status::status),
        route(M::GET, "/v1/openapi.json", READ, status::openapi_json),
        route(M::GET, "/metrics", Metrics, status::metrics),
        route(M::GET, "/healthz", Health, status::healthz),
        route(M::GET, "/readyz", Health, status::readyz),
    ]
}

/// The service's router: every route behind its access check, request
/// metrics and timeout, CORS when origins are configured, and JSON errors
/// for unknown routes and methods.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        let access = RouteAccess {
            state: state.clone(),
            access: route.access,
            query_token: route.query_token,
        };
        router = router.route(
            route.path,
            route
                .handler
                .route_layer(from_fn_with_state(access, authorize)),
        );
    }
    let router = router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), track));
    let router = match cors(&state.options().cors_allowed_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH};
    use axum::http::HeaderName;
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::POST,
            ])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                IF_MATCH,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([ETAG]),
    )
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        path: request.uri().path().to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts requests by route template, method and status, and times them;
/// bounds the time until a response starts (a change stream's response
/// starts at once, so its body is not limited). One layer for both: each
/// layer costs every request a boxed future.
async fn track(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map_or("unmatched", |path| path.as_str());
    let method = method_label(request.method());
    let started = Instant::now();
    let limit = state.options().request_timeout;
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout {
            seconds: limit.as_secs_f64(),
        }
        .into_response(),
    };
    let metrics = state.metrics();
    metrics
        .request_duration(route, method)
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[route, method, response.status().as_str()])
        .inc();
    response
}

/// Methods as a bounded label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Runs blocking engine work (reads that may touch table files, file
/// writes) on the blocking pool, never on the async workers.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::Internal(format!("blocking task failed: {error}")))?
}
