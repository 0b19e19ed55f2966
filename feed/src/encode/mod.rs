//! Wire encodings of change events (DESIGN.md section 9).
//!
//! An event is encoded once per format and the bytes are shared by every
//! consumer that wants that format.

mod debezium;
mod native;

use std::str::FromStr;
use std::sync::Arc;

use tidefeed_engine::Value;

use crate::error::FeedError;
use crate::event::ChangeEvent;
use crate::time;

/// Encoded event bytes, immutable and shared by every consumer.
pub type EncodedEvent = Arc<[u8]>;

/// The event encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Format {
    /// tidefeed's own event JSON.
    #[default]
    Native,
    /// The Debezium envelope (`before`, `after`, `source`, `op`, `ts_ms`).
    Debezium,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "native" => Ok(Format::Native),
            "debezium" => Ok(Format::Debezium),
            other => Err(format!(
                "unknown format {other:?}; expected \"native\" or \"debezium\""
            )),
        }
    }
}

/// Encodes `event` in `format` as JSON. Fails only for a value that has
/// no JSON form (a timestamp outside years 0000-9999).
pub fn encode(event: &ChangeEvent, format: Format) -> Result<EncodedEvent, FeedError> {
    check_encodable(event)?;
    Ok(encode_as(event, format, false))
}

/// The oversized-event policy: encodes `event`, and if the result is
/// larger than `max_bytes`, encodes its key-only form instead, flagged
/// `"truncated": true`. The native form has null images (its `key` holds
/// the key); the Debezium form replaces each image the event has by its
/// key columns, as Debezium consumers need a `before` on u and d and an
/// `after` on c, u and r, and carries the key in `source.key` too.
/// Returns whether it was truncated.
pub fn encode_bounded(
    event: &ChangeEvent,
    format: Format,
    max_bytes: usize,
) -> Result<(EncodedEvent, bool), FeedError> {
    check_encodable(event)?;
    let full = encode_as(event, format, false);
    if full.len() <= max_bytes {
        return Ok((full, false));
    }
    Ok((encode_as(event, format, true), true))
}

/// Every timestamp of the event (its commit time and its timestamp
/// columns) has an RFC 3339 form, so serialising it cannot fail.
fn check_encodable(event: &ChangeEvent) -> Result<(), FeedError> {
    let unencodable = |field: &str, problem| FeedError::Unencodable {
        seq: event.seq,
        table: event.table.name().to_owned(),
        field: field.to_owned(),
        problem,
    };
    time::check_range(event.ts_micros).map_err(|problem| unencodable("ts", problem))?;
    let columns = event.table.columns();
    let images = [&event.before, &event.after];
    for row in images.into_iter().flatten() {
        for (column, value) in columns.iter().zip(row.values()) {
            if let Value::Timestamp(micros) = value {
                time::check_range(*micros).map_err(|problem| unencodable(&column.name, problem))?;
            }
        }
    }
    for (name, value) in event.table.named_key(&event.key) {
        if let Value::Timestamp(micros) = value {
            time::check_range(*micros).map_err(|problem| unencodable(name, problem))?;
        }
    }
    Ok(())
}

fn encode_as(event: &ChangeEvent, format: Format, key_only: bool) -> EncodedEvent {
    let bytes = match format {
        Format::Native => serde_json::to_vec(&native::Native::of(event, key_only)),
        Format::Debezium => serde_json::to_vec(&debezium::Envelope::of(event, key_only)),
    };
    // Serialising into a Vec fails only on a value without a JSON form,
    // which `check_encodable` has ruled out: every map key is a string and
    // there is no I/O.
    EncodedEvent::from(bytes.expect("checked events serialise"))
}
