//! The one place where failures become HTTP statuses and stable error codes
//! (DESIGN.md section 9).
//!
//! Every handler, extractor and middleware fails with an [`ApiError`];
//! [`ApiError::parts`] decides its status, code, message and extra fields.
//! The same parts become the JSON body of an error response and the `data`
//! of an SSE `error` event. Internal failures are logged with their detail
//! and answered without it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value as Json};
use tidefeed_engine::{Error as EngineError, Precondition, RowProblem, SchemaProblem};
use tidefeed_feed::FeedError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON for this route: {0}")]
    InvalidJson(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    BadKey(String),
    #[error("header {header}: {message}")]
    BadHeader {
        header: &'static str,
        message: String,
    },
    #[error("table name {table:?} must match [a-z][a-z0-9_]{{0,62}}")]
    BadTableName { table: String },
    #[error("{0}")]
    BadPath(String),
    #[error("{0}")]
    InvalidSchema(String),
    #[error("the body's key column {column:?} does not match the key in the path")]
    KeyMismatch { column: String },
    #[error("no row of table {table:?} has that key")]
    RowNotFound { table: String },
    #[error("no route {path}")]
    RouteNotFound { path: String },
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{limit} change streams are open, the most this server allows; retry later")]
    TooManyStreams { limit: usize },
    #[error("the request took longer than the limit of {seconds} s; a write's outcome is unknown, read it back to find out")]
    RequestTimeout { seconds: f64 },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the storage engine failed and accepts no writes; restart the server to recover")]
    EngineFailed,
    #[error("operation {index} of the batch: {error}")]
    InBatch { index: usize, error: Box<ApiError> },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Feed(FeedError),
    #[error("{0}")]
    Internal(String),
}

impl From<FeedError> for ApiError {
    fn from(error: FeedError) -> ApiError {
        match error {
            FeedError::Engine(error) => ApiError::Engine(error),
            error => ApiError::Feed(error),
        }
    }
}

/// A decided error: status, stable code, message and extra fields.
#[derive(Debug)]
pub struct ErrorParts {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Map<String, Json>,
}

impl ErrorParts {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ErrorParts {
        ErrorParts {
            status,
            code,
            message: message.into(),
            fields: Map::new(),
        }
    }

    fn with(mut self, name: &str, value: impl Into<Json>) -> ErrorParts {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// `{"error":{"code":..,"message":..,...fields}}`.
    pub fn body(&self) -> Json {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        error.extend(self.fields.clone());
        json!({ "error": error })
    }
}

impl ApiError {
    /// Decides status, code, message and fields. Internal errors are
    /// logged here, with detail, and returned without it.
    pub fn parts(&self) -> ErrorParts {
        use StatusCode as S;
        let message = self.to_string();
        match self {
            ApiError::InvalidJson(_) => ErrorParts::new(S::BAD_REQUEST, "invalid_json", message),
            ApiError::UnsupportedMediaType => {
                ErrorParts::new(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
            }
            ApiError::PayloadTooLarge { limit } => {
                ErrorParts::new(S::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                    .with("limit", *limit)
            }
            ApiError::BadQuery(_) => ErrorParts::new(S::BAD_REQUEST, "bad_query", message),
            ApiError::BadKey(_) => ErrorParts::new(S::BAD_REQUEST, "bad_key", message),
            ApiError::BadHeader { header, .. } => {
                ErrorParts::new(S::BAD_REQUEST, "bad_header", message).with("header", *header)
            }
            ApiError::BadTableName { table } => {
                ErrorParts::new(S::BAD_REQUEST, "bad_table_name", message)
                    .with("table", table.as_str())
            }
            ApiError::BadPath(_) => ErrorParts::new(S::BAD_REQUEST, "bad_path", message),
            ApiError::InvalidSchema(_) => {
                ErrorParts::new(S::BAD_REQUEST, "invalid_schema", message)
            }
            ApiError::KeyMismatch { column } => {
                ErrorParts::new(S::BAD_REQUEST, "key_mismatch", message)
                    .with("column", column.as_str())
            }
            ApiError::RowNotFound { table } => {
                ErrorParts::new(S::NOT_FOUND, "row_not_found", message)
                    .with("table", table.as_str())
            }
            ApiError::RouteNotFound { .. } => {
                ErrorParts::new(S::NOT_FOUND, "route_not_found", message)
            }
            ApiError::MethodNotAllowed => {
                ErrorParts::new(S::METHOD_NOT_ALLOWED, "method_not_allowed", message)
            }
            ApiError::Unauthorized => ErrorParts::new(S::UNAUTHORIZED, "unauthorized", message),
            ApiError::Forbidden(_) => ErrorParts::new(S::FORBIDDEN, "forbidden", message),
            ApiError::TooManyStreams { limit } => {
                ErrorParts::new(S::SERVICE_UNAVAILABLE, "too_many_streams", message)
                    .with("limit", *limit)
            }
            ApiError::RequestTimeout { .. } => {
                ErrorParts::new(S::REQUEST_TIMEOUT, "request_timeout", message)
            }
            ApiError::ShuttingDown => {
                ErrorParts::new(S::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            ApiError::EngineFailed => {
                ErrorParts::new(S::SERVICE_UNAVAILABLE, "engine_failed", message)
            }
            ApiError::InBatch { index, error } => error.parts().with("index", *index),
            ApiError::Engine(error) => engine_parts(error),
            ApiError::Feed(error) => feed_parts(error),
            ApiError::Internal(detail) => internal(detail),
        }
    }
}

fn internal(detail: &dyn std::fmt::Display) -> ErrorParts {
    tracing::error!(error = %detail, "internal error answered with 500");
    ErrorParts::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the server log has the detail",
    )
}

fn engine_parts(error: &EngineError) -> ErrorParts {
    use StatusCode as S;
    let message = error.to_string();
    match error {
        EngineError::NoSuchTable { table } => {
            ErrorParts::new(S::NOT_FOUND, "table_not_found", message).with("table", table.as_str())
        }
        EngineError::SchemaConflict { table } => {
            ErrorParts::new(S::CONFLICT, "schema_conflict", message).with("table", table.as_str())
        }
        EngineError::InvalidSchema {
            table,
            problem: SchemaProblem::BadTableName,
        } => {
            ErrorParts::new(S::BAD_REQUEST, "bad_table_name", message).with("table", table.as_str())
        }
        EngineError::InvalidSchema { table, .. } => {
            ErrorParts::new(S::BAD_REQUEST, "invalid_schema", message).with("table", table.as_str())
        }
        EngineError::InvalidRow {
            table,
            column,
            problem,
        } => {
            let parts = ErrorParts::new(S::BAD_REQUEST, "invalid_row", message)
                .with("table", table.as_str())
                .with("column", column.as_str());
            match problem {
                RowProblem::TooDeep { limit, .. } => parts.with("limit", *limit),
                _ => parts,
            }
        }
        EngineError::TooLarge { what, size, limit } => {
            ErrorParts::new(S::PAYLOAD_TOO_LARGE, "payload_too_large", message)
                .with("limit_name", what.setting())
                .with("size", *size)
                .with("limit", *limit)
        }
        EngineError::RowNotFound { table } => {
            ErrorParts::new(S::NOT_FOUND, "row_not_found", message).with("table", table.as_str())
        }
        EngineError::PreconditionFailed {
            table,
            expected,
            actual,
        } => ErrorParts::new(S::PRECONDITION_FAILED, "precondition_failed", message)
            .with("table", table.as_str())
            .with(
                "expected",
                match expected {
                    Precondition::Version(seq) => Json::from(*seq),
                    Precondition::Exists => Json::from("*"),
                    Precondition::Absent => Json::from("none"),
                },
            )
            .with("actual", actual.map_or(Json::Null, Json::from)),
        EngineError::InBatch { index, source } => engine_parts(source).with("index", *index),
        EngineError::EmptyBatch => ErrorParts::new(S::BAD_REQUEST, "invalid_batch", message),
        EngineError::BatchTooLarge { limit, .. } => {
            ErrorParts::new(S::BAD_REQUEST, "invalid_batch", message).with("limit", *limit)
        }
        EngineError::BelowRetention {
            requested,
            low_water,
        } => ErrorParts::new(S::GONE, "history_lost", message)
            .with("requested", *requested)
            .with("low_water", *low_water),
        EngineError::FutureSeq { requested, visible } => {
            ErrorParts::new(S::BAD_REQUEST, "future_seq", message)
                .with("requested", *requested)
                .with("visible", *visible)
        }
        EngineError::InvalidConsumerName { name } => {
            ErrorParts::new(S::BAD_REQUEST, "bad_consumer_name", message)
                .with("consumer", name.as_str())
        }
        EngineError::ConsumerExists { name } => {
            ErrorParts::new(S::CONFLICT, "consumer_exists", message).with("consumer", name.as_str())
        }
        EngineError::NoSuchConsumer { name } => {
            ErrorParts::new(S::NOT_FOUND, "consumer_not_found", message)
                .with("consumer", name.as_str())
        }
        EngineError::ConsumerInvalidated { name, reason } => {
            ErrorParts::new(S::GONE, "consumer_invalidated", message)
                .with("consumer", name.as_str())
                .with("reason", reason.kind())
                .with(
                    "details",
                    serde_json::to_value(reason).unwrap_or(Json::Null),
                )
        }
        EngineError::CommitFailed { stage, .. } | EngineError::Poisoned { stage, .. } => {
            // The cause names server files: logged in full, answered with
            // the stage only.
            tracing::error!(error = %error, "the storage engine has failed");
            let message = match error {
                EngineError::CommitFailed { .. } => format!(
                    "the write's {stage} failed and the storage engine stopped; whether it is durable is known after a restart; the server log has the detail"
                ),
                _ => format!(
                    "the storage engine stopped after a failure ({stage}); the server log has the detail; a restart recovers every acknowledged write"
                ),
            };
            ErrorParts::new(S::SERVICE_UNAVAILABLE, "engine_failed", message)
                .with("stage", stage.to_string())
        }
        EngineError::Closed => ErrorParts::new(S::SERVICE_UNAVAILABLE, "engine_failed", message),
        other => internal(other),
    }
}

fn feed_parts(error: &FeedError) -> ErrorParts {
    use StatusCode as S;
    let message = error.to_string();
    match error {
        FeedError::InvalidValue { table, column, .. } => {
            ErrorParts::new(S::BAD_REQUEST, "invalid_row", message)
                .with("table", table.as_str())
                .with("column", column.as_str())
        }
        FeedError::NotAnObject { table } => {
            ErrorParts::new(S::BAD_REQUEST, "invalid_row", message).with("table", table.as_str())
        }
        FeedError::Engine(error) => engine_parts(error),
        FeedError::SnapshotWithPosition | FeedError::ConsumerWithPosition => {
            ErrorParts::new(S::BAD_REQUEST, "bad_query", message)
        }
        FeedError::Closed => ErrorParts::new(S::SERVICE_UNAVAILABLE, "engine_failed", message),
        #[allow(unreachable_patterns)]
        other => internal(other),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.parts();
        let mut response = (parts.status, axum::Json(parts.body())).into_response();
        if parts.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_get_their_contract_status_and_fields() {
        let cases: Vec<(EngineError, u16, &str)> = vec![
            (
                EngineError::BelowRetention {
                    requested: 3,
                    low_water: 9,
                },
                410,
                "history_lost",
            ),
            (
                EngineError::FutureSeq {
                    requested: 9,
                    visible: 3,
                },
                400,
                "future_seq",
            ),
            (EngineError::Closed, 503, "engine_failed"),
            (
                EngineError::NoSuchTable { table: "t".into() },
                404,
                "table_not_found",
            ),
            (
                EngineError::PreconditionFailed {
                    table: "t".into(),
                    expected: tidefeed_engine::Precondition::Version(4),
                    actual: Some(5),
                },
                412,
                "precondition_failed",
            ),
            (EngineError::MissingChange { seq: 4 }, 500, "internal"),
        ];
        for (error, status, code) in cases {
            let parts = ApiError::from(error).parts();
            assert_eq!((parts.status.as_u16(), parts.code), (status, code));
        }
        let lost = ApiError::from(EngineError::BelowRetention {
            requested: 3,
            low_water: 9,
        })
        .parts()
        .body();
        assert_eq!(lost["error"]["requested"], 3);
        assert_eq!(lost["error"]["low_water"], 9);
    }

    #[test]
    fn internal_errors_do_not_leak_their_detail() {
        let parts = ApiError::Internal("secret path /var/x".into()).parts();
        assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!parts.body().to_string().contains("/var/x"));
    }

    #[test]
    fn batch_errors_name_the_operation() {
        let error = ApiError::from(EngineError::InBatch {
            index: 2,
            source: Box::new(EngineError::RowNotFound { table: "t".into() }),
        });
        let body = error.parts().body();
        assert_eq!(body["error"]["code"], "row_not_found");
        assert_eq!(body["error"]["index"], 2);
    }
}
