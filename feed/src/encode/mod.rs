//! Wire encodings of change events (DESIGN.md section 9).
//!
//! An event is encoded once per format and the bytes are shared by every
//! consumer that wants that format.

mod debezium;
mod native;

use std::str::FromStr;
use std::sync::Arc;

use crate::event::ChangeEvent;

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

/// Encodes `event` in `format` as JSON.
pub fn encode(event: &ChangeEvent, format: Format) -> EncodedEvent {
    encode_as(event, format, false)
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
) -> (EncodedEvent, bool) {
    let full = encode_as(event, format, false);
    if full.len() <= max_bytes {
        return (full, false);
    }
    (encode_as(event, format, true), true)
}

fn encode_as(event: &ChangeEvent, format: Format, key_only: bool) -> EncodedEvent {
    let bytes = match format {
        Format::Native => serde_json::to_vec(&native::Native::of(event, key_only)),
        Format::Debezium => serde_json::to_vec(&debezium::Envelope::of(event, key_only)),
    };
    // Serialising owned values into a Vec cannot fail: every map key is a
    // string and there are no I/O errors.
    EncodedEvent::from(bytes.expect("events serialise"))
}
