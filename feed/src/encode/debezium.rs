//! The Debezium envelope, so existing Debezium consumers can read the feed:
//! `{"before":..,"after":..,"source":{"name":"tidefeed","table":"users","seq":42,"ts_ms":..,"snapshot":"false"},"op":"c|u|d|r","ts_ms":..}`.
//!
//! `source.ts_ms` is the commit time, as in Debezium. The top-level
//! `ts_ms` is Debezium's "time the connector processed the event"; tidefeed
//! commits and publishes in one step, so it is the commit time too, which
//! also keeps an event's bytes identical on every delivery.
//!
//! `source.snapshot` is `"true"` on snapshot rows, `"last"` on the final
//! one, `"false"` on changes.
//!
//! Key-only events (the oversized policy) keep the shape Debezium
//! consumers require (Flink's `debezium-json` rejects an update or delete
//! whose `before` is null): each image the event has is replaced by its
//! key columns, so `before` is non-null for u and d and `after` for c, u
//! and r. The key is also in `source.key`, and `"truncated": true` says
//! the other columns are missing.

use serde::ser::Serializer;
use serde::Serialize;

use crate::event::{ChangeEvent, EventOp};
use crate::json::{JsonKey, JsonRow};

#[derive(Serialize)]
pub(super) struct Envelope<'a> {
    before: Option<Image<'a>>,
    after: Option<Image<'a>>,
    source: Source<'a>,
    op: &'static str,
    ts_ms: i64,
    /// Present (true) only on key-only events of the oversized policy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

/// A row image: the full row, or only its key columns on key-only events.
enum Image<'a> {
    Row(JsonRow<'a>),
    Key(JsonKey<'a>),
}

impl Serialize for Image<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Image::Row(row) => row.serialize(s),
            Image::Key(key) => key.serialize(s),
        }
    }
}

#[derive(Serialize)]
struct Source<'a> {
    name: &'static str,
    table: &'a str,
    seq: u64,
    ts_ms: i64,
    snapshot: &'static str,
    /// The row's key, on key-only events.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<JsonKey<'a>>,
}

impl<'a> Envelope<'a> {
    pub(super) fn of(event: &'a ChangeEvent, key_only: bool) -> Envelope<'a> {
        let table = &*event.table;
        let ts_ms = event.ts_micros.div_euclid(1000);
        let key = JsonKey {
            table,
            key: &event.key,
        };
        let image = |row: &'a Option<tidefeed_engine::Row>| {
            row.as_ref().map(|row| {
                if key_only {
                    Image::Key(JsonKey {
                        table,
                        key: &event.key,
                    })
                } else {
                    Image::Row(JsonRow { table, row })
                }
            })
        };
        Envelope {
            before: image(&event.before),
            after: image(&event.after),
            source: Source {
                name: "tidefeed",
                table: table.name(),
                seq: event.seq,
                ts_ms,
                snapshot: match (event.op, event.last_of_snapshot) {
                    (EventOp::Read, true) => "last",
                    (EventOp::Read, false) => "true",
                    _ => "false",
                },
                key: key_only.then_some(key),
            },
            op: event.op.debezium_code(),
            ts_ms,
            truncated: key_only,
        }
    }
}
