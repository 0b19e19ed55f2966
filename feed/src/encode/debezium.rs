//! The Debezium envelope, so existing Debezium consumers can read the feed:
//! `{"before":..,"after":..,"source":{"name":"tidefeed","table":"users","seq":42,"ts_ms":..,"snapshot":"false"},"op":"c|u|d|r","ts_ms":..}`.
//!
//! `source.ts_ms` is the commit time, as in Debezium. The top-level
//! `ts_ms` is Debezium's "time the connector processed the event"; tidefeed
//! commits and publishes in one step, so it is the commit time too, which
//! also keeps an event's bytes identical on every delivery.

use serde::Serialize;

use crate::event::{ChangeEvent, EventOp};
use crate::json::{JsonKey, JsonRow};

#[derive(Serialize)]
pub(super) struct Envelope<'a> {
    before: Option<JsonRow<'a>>,
    after: Option<JsonRow<'a>>,
    source: Source<'a>,
    op: &'static str,
    ts_ms: i64,
    /// Present (true) only on key-only events of the oversized policy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Serialize)]
struct Source<'a> {
    name: &'static str,
    table: &'a str,
    seq: u64,
    ts_ms: i64,
    snapshot: &'static str,
    /// The row's key, on key-only events (their images are null).
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<JsonKey<'a>>,
}

impl<'a> Envelope<'a> {
    pub(super) fn of(event: &'a ChangeEvent, key_only: bool) -> Envelope<'a> {
        let table = &*event.table;
        let ts_ms = event.ts_micros.div_euclid(1000);
        Envelope {
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
            source: Source {
                name: "tidefeed",
                table: table.name(),
                seq: event.seq,
                ts_ms,
                snapshot: if event.op == EventOp::Read {
                    "true"
                } else {
                    "false"
                },
                key: key_only.then_some(JsonKey {
                    table,
                    key: &event.key,
                }),
            },
            op: event.op.debezium_code(),
            ts_ms,
            truncated: key_only,
        }
    }
}
