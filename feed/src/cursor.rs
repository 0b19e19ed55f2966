//! Reading the feed a page at a time: the pull cursor.
//!
//! A page holds the events with seq in `(since, next]` that pass the
//! filter, encoded in the requested format. `next` is where the following
//! page starts: the last seq *examined*, not the last one returned, so
//! filtered-out changes are never re-read and a filter that matches
//! nothing still makes progress. Every event at or below `next` that
//! passes the filter is in this page or an earlier one, which makes
//! `next` a resolved watermark for this reader.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use tidefeed_engine::{Engine, Seq};

use crate::encode::{encode, encode_bounded, EncodedEvent, Format};
use crate::error::FeedError;
use crate::event::{ChangeEvent, EventOp};
use crate::shared_encodings::SharedEncodings;

/// Which events a reader wants. Empty sets mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub tables: HashSet<String>,
    pub ops: HashSet<EventOp>,
}

impl Filter {
    pub fn matches(&self, table: &str, op: EventOp) -> bool {
        (self.tables.is_empty() || self.tables.contains(table))
            && (self.ops.is_empty() || self.ops.contains(&op))
    }
}

/// One page of the feed.
#[derive(Debug, Clone)]
pub struct ChangePage {
    /// (seq, encoded event), in seq order.
    pub events: Vec<(Seq, EncodedEvent)>,
    /// Start the next page after this seq.
    pub next: Seq,
}

/// How many changes one page may examine per event it may return, so a
/// selective filter over a long backlog answers in bounded time.
pub(crate) const SCAN_FACTOR: usize = 64;

/// Encoded bytes after which a pull page stops (it always holds at least
/// one event when one matches): a page of large events stays a few MiB,
/// whatever `limit` says. `next` makes the cut safe.
pub const PAGE_BYTES: usize = 8 << 20;

/// What a scan shares with the other readers of a `Feed`.
pub(crate) struct Shared<'a> {
    pub encodings: &'a SharedEncodings,
    pub max_event_bytes: usize,
    /// Events replaced by their key-only form (counted once per encoding).
    pub oversized: &'a AtomicU64,
}

/// Reads up to `limit` matching events after `since`, with no size limit
/// on events (a `Feed` applies the oversized-event policy). Fails with the
/// engine's `BelowRetention` when `since` is older than retained history,
/// and with its `FutureSeq` when `since` is beyond the visible seq (a
/// position this log never reached, not one to wait for). A `limit` of 0
/// examines nothing: the page is empty and `next == since`.
pub fn read_page(
    engine: &Engine,
    since: Seq,
    limit: usize,
    filter: &Filter,
    format: Format,
) -> Result<ChangePage, FeedError> {
    scan(engine, since, None, limit, PAGE_BYTES, filter, format, None)
}

/// The scan behind pages and subscriptions: at most `limit` matching
/// events, about `max_bytes` of them (at least one), and `limit *
/// SCAN_FACTOR` examined changes in `(since, upto]`, encoded through
/// `encodings` when given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan(
    engine: &Engine,
    since: Seq,
    upto: Option<Seq>,
    limit: usize,
    max_bytes: usize,
    filter: &Filter,
    format: Format,
    shared: Option<&Shared<'_>>,
) -> Result<ChangePage, FeedError> {
    let visible = engine.visible_seq();
    if since > visible {
        return Err(tidefeed_engine::Error::FutureSeq {
            requested: since,
            visible,
        }
        .into());
    }
    let changes = engine.changes(since, upto)?;
    let budget = limit.saturating_mul(SCAN_FACTOR);
    let mut events = Vec::with_capacity(limit.min(1024));
    let mut next = since;
    let mut bytes_so_far = 0;
    if limit == 0 {
        return Ok(ChangePage { events, next });
    }
    for (examined, change) in changes.enumerate() {
        if events.len() == limit || examined == budget || bytes_so_far >= max_bytes {
            break;
        }
        let change = change?;
        next = change.seq();
        if !filter.matches(change.table().name(), change.kind().into()) {
            continue;
        }
        let bytes = match shared {
            Some(shared) => shared.encodings.get_or_encode(
                next,
                format,
                || -> Result<EncodedEvent, FeedError> {
                    let event = ChangeEvent::from_change(&change)?;
                    let (bytes, truncated) =
                        encode_bounded(&event, format, shared.max_event_bytes)?;
                    if truncated {
                        shared.oversized.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(bytes)
                },
            )?,
            None => encode(&ChangeEvent::from_change(&change)?, format)?,
        };
        bytes_so_far += bytes.len();
        events.push((next, bytes));
    }
    Ok(ChangePage { events, next })
}
