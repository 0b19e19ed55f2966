//! tidefeed's change feed.
//!
//! Today: the change event ([`ChangeEvent`]), its wire encodings (the
//! native JSON event and the Debezium envelope, [`encode`]), and the JSON
//! form of typed values by column type ([`json`]), which the HTTP API uses
//! for rows too.
//!
//! Still to come with issue [3/6]: cursors, live subscriptions, filters,
//! resolved watermarks, retention with durable consumers, snapshots, and
//! the oversized-event policy. Nothing here pretends to provide them.

mod base64;
mod encode;
mod error;
mod event;
pub mod json;
pub mod time;

pub use encode::{encode, EncodedEvent, Format};
pub use error::{FeedError, JsonProblem};
pub use event::{ChangeEvent, EventOp};
