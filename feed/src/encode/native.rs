//! The native event:
//! `{"seq":42,"ts":"2026-11-24T10:00:00.123456Z","table":"users","op":"update","key":{"id":7},"before":{..}|null,"after":{..}|null,"batch":{"first_seq":41,"index":1,"size":2}}`.
//! Snapshot rows (`"op":"read"`) carry `"batch":null`.

use serde::Serialize;

use crate::event::ChangeEvent;
use crate::json::{JsonKey, JsonRow};
use crate::time::format_rfc3339;

#[derive(Serialize)]
pub(super) struct Native<'a> {
    seq: u64,
    ts: String,
    table: &'a str,
    op: &'static str,
    key: JsonKey<'a>,
    before: Option<JsonRow<'a>>,
    after: Option<JsonRow<'a>>,
    batch: Option<Batch>,
}

#[derive(Serialize)]
struct Batch {
    first_seq: u64,
    index: u32,
    size: u32,
}

impl<'a> Native<'a> {
    pub(super) fn of(event: &'a ChangeEvent) -> Native<'a> {
        let table = &*event.table;
        Native {
            seq: event.seq,
            ts: format_rfc3339(event.ts_micros),
            table: table.name(),
            op: event.op.name(),
            key: JsonKey {
                table,
                key: &event.key,
            },
            before: event.before.as_ref().map(|row| JsonRow { table, row }),
            after: event.after.as_ref().map(|row| JsonRow { table, row }),
            batch: event.batch.map(|b| Batch {
                first_seq: b.first_seq,
                index: b.index,
                size: b.size,
            }),
        }
    }
}
