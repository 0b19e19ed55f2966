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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
    let bytes = match format {
        Format::Native => serde_json::to_vec(&native::Native::of(event)),
        Format::Debezium => serde_json::to_vec(&debezium::Envelope::of(event)),
    };
    // Serialising owned values into a Vec cannot fail: every map key is a
    // string and there are no I/O errors.
    EncodedEvent::from(bytes.expect("events serialise"))
}
