//! tidefeed's change feed.
//!
//! Today: the change event ([`ChangeEvent`]), its wire encodings (the
//! native JSON event and the Debezium envelope, [`encode`]), the JSON form
//! of typed values by column type ([`json`]), which the HTTP API uses for
//! rows too, and the pull cursor ([`read_page`]) with table and op filters.
//!
//! Still to come with issue [3/6]: live subscriptions (waiting for new
//! seqs, encode-once sharing between subscribers), periodic resolved
//! watermarks, retention with durable consumers, snapshots, and the
//! oversized-event policy. Nothing here pretends to provide them.

mod base64;
mod cursor;
mod encode;
mod error;
mod event;
pub mod json;
pub mod time;

pub use cursor::{read_page, ChangePage, Filter};
pub use encode::{encode, EncodedEvent, Format};
pub use error::{FeedError, JsonProblem};
pub use event::{ChangeEvent, EventOp};
