//! The native event:
//! `{"seq":42,"ts":"2026-11-24T10:00:00.123456Z","table":"users","op":"update","key":{"id":7},"before":{..}|null,"after":{..}|null,"batch":{"first_seq":41,"index":1,"size":2}}`.
//! Snapshot rows (`"op":"read"`) carry `"batch":null`. Key-only events of
//! the oversized policy have null images and `"truncated":true`.

use serde::Serialize;

use crate::event::ChangeEvent;
use crate::json::{JsonKey, JsonRow};
use crate::time::Rfc3339Micros;

#[derive(Serialize)]
pub(super) struct Native<'a> {
    seq: u64,
    ts: Rfc3339Micros,
    table: &'a str,
    op: &'static str,
    key: JsonKey<'a>,
    before: Option<JsonRow<'a>>,
    after: Option<JsonRow<'a>>,
    batch: Option<Batch>,
    /// Present (true) only on key-only events of the oversized policy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Serialize)]
struct Batch {
    first_seq: u64,
    index: u32,
    size: u32,
}

impl<'a> Native<'a> {
    pub(super) fn of(event: &'a ChangeEvent, key_only: bool) -> Native<'a> {
        let table = &*event.table;
        Native {
            seq: event.seq,
            ts: Rfc3339Micros(event.ts_micros),
            table: table.name(),
            op: event.op.name(),
            key: JsonKey {
                table,
                key: &event.key,
            },
            before: event
                .before
                .as_ref()
                .filter(|_| !key_only)
                .map(|row| JsonRow { table, row }),
            after: event
                .after
                .as_ref()
                .filter(|_| !key_only)
                .map(|row| JsonRow { table, row }),
            truncated: key_only,
            batch: event.batch.map(|b| Batch {
                first_seq: b.first_seq,
                index: b.index,
                size: b.size,
            }),
        }
    }
}
