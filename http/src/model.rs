//! Request and response bodies of the REST API (DESIGN.md section 9), with
//! their OpenAPI schemas. Rows, keys and events are JSON objects whose
//! shape depends on the table; the feed writes them
//! ([`tidefeed_feed::json`], [`tidefeed_feed::encode`]).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tidefeed_engine::{Column, ColumnType, ConsumerInfo, Seq, Table, TableSchema};
use utoipa::ToSchema;

/// A column type's JSON name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnTypeName {
    Int64,
    Float64,
    Bool,
    String,
    /// base64 in JSON (RFC 4648, padded).
    Bytes,
    /// RFC 3339 in JSON, UTC, microseconds.
    Timestamp,
    /// Any JSON value.
    Json,
}

impl From<ColumnTypeName> for ColumnType {
    fn from(ty: ColumnTypeName) -> ColumnType {
        match ty {
            ColumnTypeName::Int64 => ColumnType::Int64,
            ColumnTypeName::Float64 => ColumnType::Float64,
            ColumnTypeName::Bool => ColumnType::Bool,
            ColumnTypeName::String => ColumnType::String,
            ColumnTypeName::Bytes => ColumnType::Bytes,
            ColumnTypeName::Timestamp => ColumnType::Timestamp,
            ColumnTypeName::Json => ColumnType::Json,
        }
    }
}

impl From<ColumnType> for ColumnTypeName {
    fn from(ty: ColumnType) -> ColumnTypeName {
        match ty {
            ColumnType::Int64 => ColumnTypeName::Int64,
            ColumnType::Float64 => ColumnTypeName::Float64,
            ColumnType::Bool => ColumnTypeName::Bool,
            ColumnType::String => ColumnTypeName::String,
            ColumnType::Bytes => ColumnTypeName::Bytes,
            ColumnType::Timestamp => ColumnTypeName::Timestamp,
            ColumnType::Json => ColumnTypeName::Json,
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnTypeName,
    /// Key columns never are.
    #[serde(default)]
    pub nullable: bool,
}

/// The body of `PUT /v1/tables/{table}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"columns":[{"name":"id","type":"int64"},{"name":"email","type":"string","nullable":true}],"primary_key":["id"]}))]
pub struct CreateTableRequest {
    /// Optional; when given it must equal the name in the path.
    #[serde(default)]
    pub name: Option<String>,
    pub columns: Vec<ColumnSpec>,
    pub primary_key: Vec<String>,
}

impl CreateTableRequest {
    pub fn into_schema(self, name: &str) -> TableSchema {
        TableSchema {
            name: name.to_owned(),
            columns: self
                .columns
                .into_iter()
                .map(|c| Column {
                    name: c.name,
                    ty: c.ty.into(),
                    nullable: c.nullable,
                })
                .collect(),
            primary_key: self.primary_key,
        }
    }
}

/// A table's schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnSpec>,
    pub primary_key: Vec<String>,
}

impl From<&Table> for TableInfo {
    fn from(table: &Table) -> TableInfo {
        let schema = table.schema();
        TableInfo {
            name: schema.name.clone(),
            columns: schema
                .columns
                .iter()
                .map(|c| ColumnSpec {
                    name: c.name.clone(),
                    ty: c.ty.into(),
                    nullable: c.nullable,
                })
                .collect(),
            primary_key: schema.primary_key.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableList {
    pub tables: Vec<TableInfo>,
}

/// What a committed row write did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"seq": 42, "op": "update"}))]
pub struct WriteResponse {
    pub seq: Seq,
    /// `insert`, `update` or `delete`.
    pub op: &'static str,
}

/// One page of a key-range scan.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowsPage {
    /// Rows in key order, as JSON objects.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Json>,
    /// The key of the next row, in the `{key}` URL form; pass it back as
    /// `next` (or `start`), with the same `as_of`, for the next page.
    pub next: Option<String>,
    /// The seq this page was read at.
    pub as_of: Seq,
}

/// The body of `POST /v1/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ops":[{"op":"upsert","table":"users","row":{"id":1,"email":"a@example.com"}},{"op":"delete","table":"users","key":{"id":2}}]}))]
pub struct BatchRequest {
    pub ops: Vec<BatchOp>,
}

/// One operation of an atomic batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum BatchOp {
    /// Insert the row or replace it whole.
    Upsert {
        table: String,
        #[schema(value_type = Object)]
        row: Json,
        /// Commit only if the row's last change has this seq.
        #[serde(default)]
        if_match: Option<Seq>,
    },
    /// Merge columns into an existing row (404 row_not_found if absent).
    Patch {
        table: String,
        /// The primary key columns as an object.
        #[schema(value_type = Object)]
        key: Json,
        #[schema(value_type = Object)]
        row: Json,
        #[serde(default)]
        if_match: Option<Seq>,
    },
    /// Remove a row; a missing row is a no-op (no seq, no event).
    Delete {
        table: String,
        #[schema(value_type = Object)]
        key: Json,
        #[serde(default)]
        if_match: Option<Seq>,
    },
}

/// What one batch operation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// `null` for a delete of a missing row.
    pub seq: Option<Seq>,
    /// `insert`, `update`, `delete`, or `none` for a delete of a missing row.
    pub op: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// `null` when no operation changed anything.
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
    pub results: Vec<BatchResult>,
}

/// A page of change events (`GET /v1/changes`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesPage {
    /// Events in seq order, in the requested format.
    pub changes: Vec<ChangeEventDoc>,
    /// Pass as `since` for the next page.
    pub next: Seq,
    /// Every matching event with seq <= resolved is in this page or an
    /// earlier one.
    pub resolved: Seq,
}

/// A native change event (the `format=debezium` envelope is
/// `{"before","after","source","op","ts_ms"}`).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ChangeEventDoc {
    pub seq: Seq,
    /// Commit time, RFC 3339.
    pub ts: String,
    pub table: String,
    /// `insert`, `update`, `delete`, or `read` (snapshot rows).
    pub op: String,
    #[schema(value_type = Object)]
    pub key: Json,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Json>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Json>,
    /// `null` for snapshot rows.
    pub batch: Option<BatchPositionDoc>,
    /// Present and true when the event was over the size limit and is sent key-only.
    pub truncated: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchPositionDoc {
    pub first_seq: Seq,
    pub index: u32,
    pub size: u32,
}

/// The body of `PUT /v1/consumers/{name}` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConsumerRequest {
    /// Start position (every change after it is delivered); default: now.
    #[serde(default)]
    pub position: Option<Seq>,
}

/// The body of `POST /v1/consumers/{name}/ack`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Every change up to this seq is acknowledged.
    pub seq: Seq,
}

/// A durable consumer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumerBody {
    pub name: String,
    /// Every change with seq <= position is acknowledged.
    pub position: Seq,
    /// Changes committed after the position.
    pub lag: u64,
    /// Bytes of history after the position (table-file bytes flushed
    /// since, at flush granularity, plus memtables holding newer changes).
    pub lag_bytes: u64,
    /// RFC 3339.
    pub created: String,
    /// Time of the last ack, RFC 3339.
    pub acked: String,
    /// Why it no longer holds retention, if it was invalidated:
    /// `{"kind": "retention_cap" | "idle_expiry" | "history_lost", "message": "..", ..details}`.
    #[schema(value_type = Option<Object>)]
    pub invalidated: Option<serde_json::Value>,
}

impl From<ConsumerInfo> for ConsumerBody {
    fn from(info: ConsumerInfo) -> ConsumerBody {
        ConsumerBody {
            // Both are wall-clock times the engine took itself, always
            // within RFC 3339's years.
            created: tidefeed_feed::time::format_rfc3339(info.created_micros).unwrap_or_default(),
            acked: tidefeed_feed::time::format_rfc3339(info.acked_micros).unwrap_or_default(),
            invalidated: info.invalidated.map(|reason| {
                let mut body = serde_json::to_value(reason).unwrap_or_default();
                if let Some(fields) = body.as_object_mut() {
                    fields.insert("message".into(), reason.to_string().into());
                }
                body
            }),
            name: info.name,
            position: info.position,
            lag: info.lag,
            lag_bytes: info.lag_bytes,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumerList {
    pub consumers: Vec<ConsumerBody>,
}

/// `GET /v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    pub version: &'static str,
    pub visible_seq: Seq,
    pub low_water: Seq,
    pub flushed_seq: Seq,
    pub tables: usize,
    pub consumers: usize,
    pub open_streams: usize,
    pub max_streams: usize,
    pub uptime_seconds: u64,
    pub shutting_down: bool,
    /// Other parts of the process by name, e.g. `"kafka"`: the Kafka
    /// connector's state, position, lag and counters when it runs.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub components: serde_json::Map<String, serde_json::Value>,
}

/// `/healthz`, `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
}

/// Every error: a stable machine code and a human message, plus fields
/// that depend on the code (`column`, `requested`, `low_water`, `index`..).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// One of the stable codes of DESIGN.md section 9 (`invalid_json`,
    /// `invalid_row`, `key_mismatch`, `bad_key`, `bad_query`,
    /// `bad_table_name`, `unauthorized`, `forbidden`, `table_not_found`,
    /// `row_not_found`, `consumer_not_found`, `schema_conflict`,
    /// `consumer_exists`, `history_lost`, `consumer_invalidated`,
    /// `precondition_failed`, `payload_too_large`,
    /// `unsupported_media_type`, `future_seq`, `too_many_streams`,
    /// `engine_failed`, `internal`) or one added since (`bad_header`,
    /// `bad_path`, `bad_consumer_name`, `invalid_schema`, `invalid_batch`,
    /// `route_not_found`, `method_not_allowed`, `request_timeout`,
    /// `shutting_down`).
    pub code: String,
    pub message: String,
}
