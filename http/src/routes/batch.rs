//! `POST /v1/batch`: an atomic batch across tables, all or nothing.

use std::time::Instant;

use axum::extract::State;
use axum::Extension;
use tidefeed_engine::{Mutation, Outcome};
use tidefeed_feed::json::named_values_from_json;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Json;
use crate::key::check_addressable;
use crate::model::{BatchOp, BatchRequest, BatchResponse, BatchResult, ErrorBody};
use crate::state::AppState;

/// Commits every operation or none. Errors name the failing operation
/// (`index`); a rejected batch consumes no seq.
#[utoipa::path(
    post, path = "/v1/batch", tag = "rows",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Committed as one contiguous run of seqs", body = BatchResponse),
        (status = 400, description = "invalid_json, invalid_row, invalid_batch, bad_table_name (with index)", body = ErrorBody),
        (status = 403, description = "forbidden: a table outside the token's tables", body = ErrorBody),
        (status = 404, description = "table_not_found, row_not_found (with index)", body = ErrorBody),
        (status = 412, description = "precondition_failed (with index)", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    ),
    security(("bearer" = ["write"]))
)]
pub(crate) async fn batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<BatchRequest>,
) -> Result<axum::Json<BatchResponse>, ApiError> {
    let mut mutations = Vec::with_capacity(request.ops.len());
    for (index, op) in request.ops.into_iter().enumerate() {
        let mutation = mutation(&state, &principal, op).map_err(|error| ApiError::InBatch {
            index,
            error: Box::new(error),
        })?;
        mutations.push(mutation);
    }
    let tables: Vec<String> = mutations.iter().map(|m| m.table.clone()).collect();
    let started = Instant::now();
    let result = state.write(mutations).await?;
    let committed: Vec<(&str, _)> = tables
        .iter()
        .zip(&result.outcomes)
        .filter_map(|(table, outcome)| match outcome {
            Outcome::Committed { kind, .. } => Some((table.as_str(), *kind)),
            Outcome::NoOp => None,
        })
        .collect();
    state
        .metrics()
        .record_write("batch", started.elapsed(), &committed);
    Ok(axum::Json(BatchResponse {
        first_seq: result.first_seq(),
        last_seq: result.last_seq(),
        results: result
            .outcomes
            .iter()
            .map(|outcome| match outcome {
                Outcome::Committed { seq, kind } => BatchResult {
                    seq: Some(*seq),
                    op: kind.name(),
                },
                Outcome::NoOp => BatchResult {
                    seq: None,
                    op: "none",
                },
            })
            .collect(),
    }))
}

fn mutation(state: &AppState, principal: &Principal, op: BatchOp) -> Result<Mutation, ApiError> {
    let (table, if_match) = match &op {
        BatchOp::Upsert {
            table, if_match, ..
        }
        | BatchOp::Patch {
            table, if_match, ..
        }
        | BatchOp::Delete {
            table, if_match, ..
        } => {
            // The token first, so a limited token learns nothing of other
            // tables.
            principal.require_table(table)?;
            (state.table(table)?, *if_match)
        }
    };
    let mutation = match op {
        BatchOp::Upsert { row, .. } => {
            let values = named_values_from_json(&table, &row)?;
            check_addressable(&table, &values)?;
            Mutation::upsert(table.name(), values)
        }
        BatchOp::Patch { key, row, .. } => Mutation::patch(
            table.name(),
            table.key_values(named_values_from_json(&table, &key)?)?,
            named_values_from_json(&table, &row)?,
        ),
        BatchOp::Delete { key, .. } => Mutation::delete(
            table.name(),
            table.key_values(named_values_from_json(&table, &key)?)?,
        ),
    };
    Ok(match if_match {
        Some(seq) => mutation.if_match(seq),
        None => mutation,
    })
}
