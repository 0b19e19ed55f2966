//! tidefeed's change feed.
//!
//! Today: the change event ([`ChangeEvent`]), its wire encodings (the
//! native JSON event and the Debezium envelope, [`encode`]), the JSON form
//! of typed values by column type ([`json`]), which the HTTP API uses for
//! rows too, the pull cursor ([`read_page`]) with table and op filters,
//! and live subscriptions ([`Feed::subscribe`]) that share encodings and
//! emit resolved watermarks.
//!
//! Events larger than the feed's maximum are sent key-only with
//! `"truncated": true` and counted ([`Feed::oversized_events`]); nothing is
//! dropped.

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

pub use cursor::{read_page, ChangePage, Filter};
pub use encode::{encode, encode_bounded, EncodedEvent, Format};
pub use error::{FeedError, JsonProblem};
pub use event::{ChangeEvent, EventOp};
pub use feed::{
    Feed, FeedItem, FeedOptions, SubscribeOptions, DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_SHARED_ENCODING_BYTES,
};
pub use subscription::{Subscription, BATCH_EVENTS};
