//! tidefeed's change feed.
//!
//! Today: the change event ([`ChangeEvent`]), its wire encodings (the
//! native JSON event and the Debezium envelope, [`encode`]), the JSON form
//! of typed values by column type ([`json`]), which the HTTP API uses for
//! rows too, the pull cursor ([`read_page`]) with table and op filters,
//! and live subscriptions ([`Feed::subscribe`]) that share encodings
//! (in a cache bounded by bytes, [`FeedOptions`]) and emit resolved
//! watermarks.
//!
//! [`Subscription::next`] is cancel-safe (a `select!` may drop it at any
//! point) and fails with [`FeedError::Closed`] as soon as the engine
//! closes.
//!
//! Events larger than the feed's maximum are sent key-only with
//! `"truncated": true` and counted ([`Feed::oversized_events`]); nothing is
//! dropped.
//!
//! Numbers: int64 values are written exactly, but JavaScript clients read
//! JSON numbers as float64, exact only up to 2^53 in magnitude (see
//! [`json`]). Float64 values round-trip bit for bit; NaN and the
//! infinities travel as strings. JSON `null` is SQL NULL for every column
//! type. Timestamps are RFC 3339 in years 0000-9999 ([`time`]).

mod base64;
mod cursor;
mod encode;
mod error;
mod event;
mod feed;
pub mod json;
mod shared_encodings;
mod subscription;
pub mod time;

pub use cursor::{read_page, ChangePage, Filter, PAGE_BYTES};
pub use encode::{encode, encode_bounded, EncodedEvent, Format};
pub use error::{FeedError, JsonProblem};
pub use event::{ChangeEvent, EventOp};
pub use feed::{
    Feed, FeedItem, FeedOptions, SubscribeOptions, DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_SHARED_ENCODING_BYTES,
};
pub use subscription::{Subscription, BATCH_BYTES, BATCH_EVENTS};
