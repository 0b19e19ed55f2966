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
//!
//! `Subscription::next` is cancel-safe: a blocking read, once started, is
//! kept in the subscription (its `JoinHandle`) and resumed by the next
//! call, and the subscription's state changes only once a read's result
//! is in hand, never across an await.

mod snapshot;

use std::collections::VecDeque;
use std::time::Duration;

use tidefeed_engine::Seq;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cursor::{scan, ChangePage, Filter};
use crate::encode::{EncodedEvent, Format};
use crate::error::FeedError;
use crate::feed::{Feed, FeedItem, SubscribeOptions};

pub(crate) use snapshot::Snapshot;
use snapshot::SnapshotPage;

/// Matching events one catch-up read may collect: the most a subscriber
/// ever holds.
pub const BATCH_EVENTS: usize = 256;

/// Encoded bytes after which a catch-up read stops (at least one event):
/// a lagging subscriber holds about this much, not `BATCH_EVENTS` times
/// the largest event.
pub const BATCH_BYTES: usize = 1 << 20;

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

/// A blocking read in flight; its result is applied by the `next` call
/// that finds it finished.
enum Read {
    Changes(ChangePage),
    Snapshot(SnapshotPage),
}

/// Which durable consumer a subscription reads as: a consumer deleted and
/// created again under the same name is another one (its creation time
/// differs), and the old subscription must not read as it.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerIdentity {
    pub name: String,
    pub created_micros: i64,
}

/// A live position over the feed. Dropping it ends it.
pub struct Subscription {
    feed: Feed,
    /// The durable consumer this subscription reads as, if any.
    consumer: Option<ConsumerIdentity>,
    /// Present until every snapshot row has been read.
    snapshot: Option<Snapshot>,
    position: Seq,
    filter: std::sync::Arc<Filter>,
    format: Format,
    visible: watch::Receiver<Seq>,
    closed: watch::Receiver<bool>,
    /// The current batch, at most `BATCH_EVENTS` events (a snapshot page
    /// and the row held back from the one before it, in snapshot mode).
    ready: VecDeque<(Seq, EncodedEvent)>,
    /// The read that will refill `ready`, started by a `next` call whose
    /// future may have been dropped since. Only started when `ready` is
    /// empty.
    in_flight: Option<JoinHandle<Result<Read, FeedError>>>,
    resolved_interval: Duration,
    resolved_sent: Seq,
    next_resolved_at: Instant,
}

impl Subscription {
    pub(crate) fn new(
        feed: Feed,
        options: SubscribeOptions,
        consumer: Option<ConsumerIdentity>,
        position: Seq,
        snapshot: Option<Snapshot>,
        visible: watch::Receiver<Seq>,
    ) -> Subscription {
        let closed = feed.engine.watch_closed();
        Subscription {
            feed,
            consumer,
            snapshot,
            position,
            filter: std::sync::Arc::new(options.filter),
            format: options.format,
            visible,
            closed,
            ready: VecDeque::new(),
            in_flight: None,
            resolved_interval: options.resolved_interval,
            resolved_sent: position,
            next_resolved_at: deadline_after(Instant::now(), options.resolved_interval),
        }
    }

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
    /// closed) ends the subscription: it never skips ahead. Once the
    /// engine is closing every call fails with [`FeedError::Closed`],
    /// promptly, whether it was waiting at the head or catching up.
    ///
    /// Cancel-safe: dropping the returned future (in a `select!`, on a
    /// timeout) loses nothing and repeats nothing; the next call goes on
    /// where this one was.
    pub async fn next(&mut self) -> Result<FeedItem, FeedError> {
        loop {
            if self.feed.engine.is_closed() {
                return Err(FeedError::Closed);
            }
            if let Some(read) = self.in_flight.as_mut() {
                let joined = tokio::select! {
                    joined = read => joined,
                    _ = self.closed.wait_for(|closed| *closed) => return Err(FeedError::Closed),
                };
                // The result is in hand: from here to `apply` nothing
                // awaits, so the state moves exactly once per read.
                self.in_flight = None;
                let read = match joined {
                    Ok(read) => read?,
                    Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                    // The runtime is shutting down.
                    Err(_) => return Err(FeedError::Closed),
                };
                self.apply(read);
                continue;
            }
            if let Some((seq, bytes)) = self.ready.pop_front() {
                return Ok(FeedItem::Event { seq, bytes });
            }
            if let Some(snapshot) = &self.snapshot {
                if snapshot.is_complete() {
                    // Every row as of S has been sent, which a client may
                    // checkpoint as S.
                    self.snapshot = None;
                    self.resolved_sent = self.position;
                    return Ok(FeedItem::Resolved { seq: self.position });
                }
                let read = snapshot.read_next_page(&self.feed, self.format);
                self.in_flight = Some(tokio::task::spawn_blocking(move || {
                    read().map(Read::Snapshot)
                }));
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
                self.in_flight = Some(self.start_batch(visible));
                continue;
            }
            tokio::select! {
                changed = self.visible.changed() => {
                    if changed.is_err() {
                        return Err(FeedError::Closed);
                    }
                }
                _ = self.closed.wait_for(|closed| *closed) => return Err(FeedError::Closed),
                _ = tokio::time::sleep_until(self.next_resolved_at) => {}
            }
        }
    }

    /// Moves the subscription past a finished read.
    fn apply(&mut self, read: Read) {
        match read {
            Read::Changes(page) => {
                self.position = page.next;
                self.ready.extend(page.events);
            }
            Read::Snapshot(page) => {
                let snapshot = self
                    .snapshot
                    .as_mut()
                    .expect("snapshot reads run only while a snapshot is pending");
                self.ready.extend(snapshot.advance(page));
            }
        }
    }

    /// Starts reading the next batch after the position, up to `upto`, on
    /// the blocking pool: it may read table files.
    fn start_batch(&self, upto: Seq) -> JoinHandle<Result<Read, FeedError>> {
        let (feed, filter, format, since) = (
            self.feed.clone(),
            self.filter.clone(),
            self.format,
            self.position,
        );
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(identity) = &consumer {
                // An invalidated consumer is told so on its next read, a
                // deleted (or deleted and re-created) one too.
                let info = feed.engine.consumer(&identity.name)?;
                if info.created_micros != identity.created_micros {
                    return Err(tidefeed_engine::Error::NoSuchConsumer {
                        name: identity.name.clone(),
                    }
                    .into());
                }
                if let Some(reason) = info.invalidated {
                    return Err(tidefeed_engine::Error::ConsumerInvalidated {
                        name: identity.name.clone(),
                        reason,
                    }
                    .into());
                }
            }
            scan(
                &feed.engine,
                since,
                Some(upto),
                BATCH_EVENTS,
                BATCH_BYTES,
                &filter,
                format,
                Some(&feed.shared()),
            )
            .map(Read::Changes)
        })
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
