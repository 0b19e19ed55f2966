//! Live subscriptions.
//!
//! A subscriber is a position over the shared, ordered log and nothing
//! more: there is no per-subscriber queue of events. It reads in bounded
//! batches from wherever its position is (table files, then memtables),
//! off the async executor, and at the head it waits for `visible_seq` to
//! move. A slow subscriber simply reads from further back: it never blocks
//! writers, never loses events, and holds at most one batch in memory.
//! Catch-up becomes live with no gap and no duplicate because both are the
//! same loop over the same position.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidefeed_engine::{Engine, KeyRange, Seq, Table, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cursor::{scan, ChangePage, Filter};
use crate::encode::{encode, EncodedEvent, Format};
use crate::error::FeedError;
use crate::event::ChangeEvent;
use crate::shared_encodings::SharedEncodings;

/// Matching events one catch-up read may collect: the most a subscriber
/// ever holds.
pub const BATCH_EVENTS: usize = 256;
/// Encoded events kept for sharing between subscribers.
const SHARED_ENCODINGS: usize = 64 * 1024;

/// A deadline this far away stands for "never": tokio's timer clamps
/// longer sleeps anyway, and `Instant` arithmetic must not overflow.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + interval`, saturating at [`FAR_FUTURE`] for intervals that do
/// not fit (`Duration::MAX` included).
fn deadline_after(now: Instant, interval: Duration) -> Instant {
    now.checked_add(interval.min(FAR_FUTURE))
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The largest encoded event sent whole, by default; larger ones follow
/// the oversized-event policy (see [`crate::encode_bounded`]).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// The feed over one engine: hands out subscriptions that share encodings.
#[derive(Clone)]
pub struct Feed {
    engine: Engine,
    encodings: Arc<SharedEncodings>,
    max_event_bytes: usize,
    oversized: Arc<AtomicU64>,
}

/// Where a subscription starts and what it wants.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Events with seq > `since`; `None` starts at the current head.
    pub since: Option<Seq>,
    pub filter: Filter,
    pub format: Format,
    /// How often a resolved watermark is emitted (default 1 s). Any
    /// duration is accepted; one too long to fall within ~30 years means
    /// "not on a timer" (the end of a snapshot is still marked).
    pub resolved_interval: Duration,
    /// Start with the current rows of the filter's tables (all tables if
    /// it names none) as `read` events consistent at one seq S, then the
    /// changes after S. Needs `since: None`. The ops filter applies to
    /// changes only: snapshot rows are not changes. The end of the
    /// snapshot is marked by `Resolved { seq: S }`.
    pub snapshot: bool,
    /// Read as this durable consumer: start at its position (no `since`)
    /// and fail, saying why, once it is invalidated. Acks stay explicit
    /// (`Engine::ack_consumer`).
    pub consumer: Option<String>,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions {
            since: None,
            filter: Filter::default(),
            format: Format::Native,
            resolved_interval: Duration::from_secs(1),
            snapshot: false,
            consumer: None,
        }
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Event {
        seq: Seq,
        bytes: EncodedEvent,
    },
    /// Every event with seq <= `seq` that passes the filter has been
    /// delivered: a position a client can checkpoint even when filtered
    /// or idle.
    Resolved {
        seq: Seq,
    },
}

impl Feed {
    pub fn new(engine: Engine) -> Feed {
        Feed::with_max_event_bytes(engine, DEFAULT_MAX_EVENT_BYTES)
    }

    /// A feed whose events larger than `max_event_bytes` (encoded) are
    /// sent key-only, flagged `"truncated": true`, and counted.
    pub fn with_max_event_bytes(engine: Engine, max_event_bytes: usize) -> Feed {
        Feed {
            engine,
            encodings: Arc::new(SharedEncodings::new(SHARED_ENCODINGS)),
            max_event_bytes,
            oversized: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Events sent key-only because they exceeded the maximum size.
    pub fn oversized_events(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }

    fn shared(&self) -> crate::cursor::Shared<'_> {
        crate::cursor::Shared {
            encodings: &self.encodings,
            max_event_bytes: self.max_event_bytes,
            oversized: &self.oversized,
        }
    }

    /// [`crate::read_page`] with this feed's shared encodings and
    /// oversized-event policy.
    pub fn read_page(
        &self,
        since: Seq,
        limit: usize,
        filter: &Filter,
        format: Format,
    ) -> Result<ChangePage, FeedError> {
        scan(
            &self.engine,
            since,
            None,
            limit,
            filter,
            format,
            Some(&self.shared()),
        )
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Starts a subscription. Fails with `BelowRetention` if `since` is
    /// older than retained history, and with `FutureSeq` if it is ahead of
    /// the log (never for a `since` read from `Engine::visible_seq` before
    /// this call).
    pub fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, FeedError> {
        let since = match &options.consumer {
            Some(_) if options.since.is_some() || options.snapshot => {
                return Err(FeedError::ConsumerWithPosition)
            }
            Some(name) => Some(self.engine.consumer_position(name)?),
            None => options.since,
        };
        if options.snapshot && options.since.is_some() {
            return Err(FeedError::SnapshotWithPosition);
        }
        // NOTE: the receiver is taken before the head is read, so a seq
        // published after the read wakes the subscription. The head comes
        // from `visible_head` (which is never behind the watch's value),
        // so a position a caller just read from `visible_seq` is never in
        // the future.
        let visible = self.engine.watch_visible();
        let (head, head_ts) = self.engine.visible_head();
        let position = since.unwrap_or(head);
        if position > head {
            // A position the log never reached (a stale id from another
            // data directory, say): waiting would hide the mistake.
            return Err(tidefeed_engine::Error::FutureSeq {
                requested: position,
                visible: head,
            }
            .into());
        }
        let low_water = self.engine.low_water();
        if position < low_water {
            return Err(tidefeed_engine::Error::BelowRetention {
                requested: position,
                low_water,
            }
            .into());
        }
        let snapshot = options.snapshot.then(|| {
            let tables = self
                .engine
                .tables()
                .into_iter()
                .filter(|t| {
                    options.filter.tables.is_empty() || options.filter.tables.contains(t.name())
                })
                .collect();
            // `head_ts` is the commit time of `head` itself, read with it:
            // no history below the snapshot seq is needed.
            Snapshot {
                tables,
                next_key: None,
                at: head,
                ts: head_ts,
            }
        });
        Ok(Subscription {
            feed: self.clone(),
            consumer: options.consumer,
            snapshot,
            position,
            filter: Arc::new(options.filter),
            format: options.format,
            visible,
            ready: VecDeque::new(),
            resolved_interval: options.resolved_interval,
            resolved_sent: position,
            next_resolved_at: deadline_after(Instant::now(), options.resolved_interval),
        })
    }
}

/// Rows still to send before the live stream, all as of seq `at`.
struct Snapshot {
    tables: VecDeque<Arc<Table>>,
    /// Where the current table's next page starts.
    next_key: Option<Vec<Value>>,
    at: Seq,
    /// Commit time of `at`.
    ts: i64,
}

/// Rows per snapshot page.
const SNAPSHOT_PAGE: usize = 256;

/// A live position over the feed. Dropping it ends it.
pub struct Subscription {
    feed: Feed,
    /// The durable consumer this subscription reads as, if any.
    consumer: Option<String>,
    /// Present until every snapshot row has been read.
    snapshot: Option<Snapshot>,
    position: Seq,
    filter: Arc<Filter>,
    format: Format,
    visible: watch::Receiver<Seq>,
    /// The current batch, at most `BATCH_EVENTS` events.
    ready: VecDeque<(Seq, EncodedEvent)>,
    resolved_interval: Duration,
    resolved_sent: Seq,
    next_resolved_at: Instant,
}

impl Subscription {
    /// The last seq examined: every matching event up to it has been read
    /// into this subscription (delivered, or next in line).
    pub fn position(&self) -> Seq {
        self.position
    }

    /// Events read from the log but not yet returned: at most one batch.
    pub fn buffered(&self) -> usize {
        self.ready.len()
    }

    /// The next event or resolved watermark. Waits at the head of the log.
    /// An error (history gone below low-water, storage failure, engine
    /// closed) ends the subscription: it never skips ahead.
    pub async fn next(&mut self) -> Result<FeedItem, FeedError> {
        loop {
            if let Some((seq, bytes)) = self.ready.pop_front() {
                return Ok(FeedItem::Event { seq, bytes });
            }
            if let Some(snapshot) = &self.snapshot {
                if snapshot.tables.is_empty() {
                    // The snapshot is complete: every row as of S has been
                    // sent, which a client may checkpoint as S.
                    self.snapshot = None;
                    self.resolved_sent = self.position;
                    return Ok(FeedItem::Resolved { seq: self.position });
                }
                self.read_snapshot_page().await?;
                continue;
            }
            let now = Instant::now();
            if now >= self.next_resolved_at {
                self.next_resolved_at = deadline_after(now, self.resolved_interval);
                if self.position > self.resolved_sent {
                    self.resolved_sent = self.position;
                    return Ok(FeedItem::Resolved { seq: self.position });
                }
            }
            // NOTE: the watch is marked seen before the head is read, so a
            // seq published after the read wakes `changed()` below. The
            // head itself comes from `visible_seq`, which is never behind
            // the watch's value.
            self.visible.borrow_and_update();
            let visible = self.feed.engine.visible_seq();
            if self.position < visible {
                let page = self.read_batch(visible).await?;
                self.position = page.next;
                self.ready.extend(page.events);
                continue;
            }
            tokio::select! {
                changed = self.visible.changed() => {
                    if changed.is_err() {
                        return Err(FeedError::Closed);
                    }
                }
                _ = tokio::time::sleep_until(self.next_resolved_at) => {}
            }
        }
    }

    /// Reads the next page of snapshot rows into `ready`, as of the
    /// snapshot seq, so concurrent writes never leak in.
    async fn read_snapshot_page(&mut self) -> Result<(), FeedError> {
        let snapshot = self
            .snapshot
            .as_mut()
            .expect("called while a snapshot is pending");
        let table = snapshot
            .tables
            .front()
            .cloned()
            .expect("called while tables remain");
        let (engine, at, ts, format) = (
            self.feed.engine.clone(),
            snapshot.at,
            snapshot.ts,
            self.format,
        );
        let range = KeyRange {
            start: snapshot.next_key.take(),
            end: None,
        };
        let (events, next) = tokio::task::spawn_blocking(move || -> Result<_, FeedError> {
            let page = engine.scan(table.name(), &range, SNAPSHOT_PAGE, Some(at))?;
            let events: Vec<(Seq, EncodedEvent)> = page
                .rows
                .into_iter()
                .map(|row| {
                    (
                        at,
                        encode(
                            &ChangeEvent::snapshot_read(table.clone(), row.row, at, ts),
                            format,
                        ),
                    )
                })
                .collect();
            Ok((events, page.next))
        })
        .await
        .map_err(|_| FeedError::Closed)??;
        self.ready.extend(events);
        let snapshot = self.snapshot.as_mut().expect("still pending");
        match next {
            Some(key) => snapshot.next_key = Some(key),
            None => {
                snapshot.tables.pop_front();
            }
        }
        Ok(())
    }

    /// Reads the next batch on the blocking pool: it may read table files.
    async fn read_batch(&self, upto: Seq) -> Result<ChangePage, FeedError> {
        let (feed, filter, format, since) = (
            self.feed.clone(),
            self.filter.clone(),
            self.format,
            self.position,
        );
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(name) = &consumer {
                // An invalidated consumer is told so on its next read.
                feed.engine.consumer_position(name)?;
            }
            scan(
                &feed.engine,
                since,
                Some(upto),
                BATCH_EVENTS,
                &filter,
                format,
                Some(&feed.shared()),
            )
        })
        .await
        .map_err(|_| FeedError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let now = Instant::now();
        for interval in [
            Duration::MAX,
            Duration::from_secs(u64::MAX / 2),
            Duration::from_secs(1 << 40),
            FAR_FUTURE + Duration::from_secs(1),
        ] {
            assert_eq!(
                deadline_after(now, interval),
                now + FAR_FUTURE,
                "{interval:?}"
            );
        }
        assert_eq!(
            deadline_after(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
        assert_eq!(deadline_after(now, Duration::ZERO), now);
    }
}
