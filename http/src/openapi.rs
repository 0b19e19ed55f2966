//! The OpenAPI 3.1 description of the API, generated from the handlers'
//! annotations and the body types (`utoipa`), served at
//! `/v1/openapi.json`. A test checks it against the route table, so a
//! route cannot be added without being described.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::model;
use crate::routes::{batch, changes, consumers, rows, status, stream, tables};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tidefeed",
        description = "A change-data-capture store: rows in over REST, an ordered, resumable change feed out (SSE, pull). \
Keys in URLs: the value for one-column keys (typed by the column), the JSON array of the values for composite keys; percent-encoded. \
Errors: {\"error\":{\"code\":..,\"message\":..}} with stable codes. \
Tokens: `Authorization: Bearer <token>` (or `?access_token=` on /v1/changes and /v1/changes/stream) with scopes read, write, admin."
    ),
    paths(
        tables::list_tables,
        tables::create_table,
        tables::describe_table,
        rows::scan_rows,
        rows::get_row,
        rows::upsert_row,
        rows::patch_row,
        rows::delete_row,
        batch::batch,
        changes::pull,
        stream::stream,
        consumers::list_consumers,
        consumers::create_consumer,
        consumers::get_consumer,
        consumers::delete_consumer,
        consumers::ack_consumer,
        status::status,
        status::openapi_json,
        status::metrics,
        status::healthz,
        status::readyz,
    ),
    components(schemas(
        model::ColumnTypeName,
        model::ColumnSpec,
        model::CreateTableRequest,
        model::TableInfo,
        model::TableList,
        model::WriteResponse,
        model::RowsPage,
        model::BatchRequest,
        model::BatchOp,
        model::BatchResult,
        model::BatchResponse,
        model::ChangesPage,
        model::ChangeEventDoc,
        model::BatchPositionDoc,
        model::CreateConsumerRequest,
        model::AckRequest,
        model::ConsumerBody,
        model::ConsumerList,
        model::StatusBody,
        model::HealthBody,
        model::ErrorBody,
        model::ErrorDetail,
    )),
    modifiers(&BearerAuth, &CommonResponses),
    tags(
        (name = "tables", description = "Table schemas"),
        (name = "rows", description = "Row writes and reads"),
        (name = "changes", description = "The change feed: pull pages and SSE streams"),
        (name = "consumers", description = "Durable consumers"),
        (name = "operations", description = "Status, metrics, health"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Answers any route can give, added to every operation so the document
/// lists every status a client may see: 401 and 403 on routes that take
/// a token (when tokens are configured), 408 when a request outlives the
/// request timeout, 500 for an internal error.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let secured = operation
                    .security
                    .as_ref()
                    .is_some_and(|requirements| !requirements.is_empty());
                let responses = &mut operation.responses.responses;
                let mut add = |code: &str, description: &str| {
                    responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                if secured {
                    add(
                        "401",
                        "unauthorized: no valid token (when tokens are configured)",
                    );
                    add(
                        "403",
                        "forbidden: the token lacks the route's scope, or the table",
                    );
                }
                add(
                    "408",
                    "request_timeout: no response within the request timeout",
                );
                add(
                    "500",
                    "internal: an unexpected error (the server log has the detail)",
                );
            }
        }
    }
}

/// The document as JSON, rendered once.
pub(crate) fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serialises")
    })
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use utoipa::openapi::path::HttpMethod;

    use super::*;

    fn http_method(method: &Method) -> HttpMethod {
        match *method {
            Method::GET => HttpMethod::Get,
            Method::PUT => HttpMethod::Put,
            Method::POST => HttpMethod::Post,
            Method::PATCH => HttpMethod::Patch,
            Method::DELETE => HttpMethod::Delete,
            ref other => panic!("no OpenAPI method for {other}"),
        }
    }

    #[test]
    fn every_route_of_the_router_is_described() {
        let document = ApiDoc::openapi();
        let mut missing = Vec::new();
        for route in crate::routes::routes() {
            let described = document.paths.paths.get(route.path).is_some_and(|item| {
                let operation = match http_method(&route.method) {
                    HttpMethod::Get => &item.get,
                    HttpMethod::Put => &item.put,
                    HttpMethod::Post => &item.post,
                    HttpMethod::Patch => &item.patch,
                    HttpMethod::Delete => &item.delete,
                    _ => &None,
                };
                operation.is_some()
            });
            if !described {
                missing.push(format!("{} {}", route.method, route.path));
            }
        }
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
    }

    #[test]
    fn every_described_operation_is_a_route() {
        let routes: Vec<(String, String)> = crate::routes::routes()
            .iter()
            .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_owned()))
            .collect();
        let json: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        for (path, item) in json["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    routes.contains(&(method.clone(), path.clone())),
                    "{method} {path} is described but not routed"
                );
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_auth() {
        let json: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(json["components"]["schemas"]["ErrorBody"].is_object());
    }
}
