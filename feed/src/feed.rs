//! `Feed`: the change feed over one engine. It owns what its readers
//! share (the encode-once cache, the oversized-event policy and its
//! counter) and hands out pages and live subscriptions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidefeed_engine::{Engine, Seq};

use crate::cursor::{scan, ChangePage, Filter, Shared};
use crate::encode::{EncodedEvent, Format};
use crate::error::FeedError;
use crate::shared_encodings::SharedEncodings;
use crate::subscription::{ConsumerIdentity, Snapshot, Subscription};

/// The largest encoded event sent whole, by default; larger ones follow
/// the oversized-event policy (see [`crate::encode_bounded`]).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// The default bound of the encode-once cache.
pub const DEFAULT_SHARED_ENCODING_BYTES: usize = 64 << 20;

/// How a feed treats the events it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOptions {
    /// Events whose encoding is larger are sent key-only, flagged
    /// `"truncated": true`, and counted.
    pub max_event_bytes: usize,
    /// The most the encode-once cache shared by all readers may hold,
    /// event bytes plus a small per-event overhead. Events over 1/16 of it
    /// are not shared.
    pub shared_encoding_bytes: usize,
}

impl Default for FeedOptions {
    fn default() -> FeedOptions {
        FeedOptions {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            shared_encoding_bytes: DEFAULT_SHARED_ENCODING_BYTES,
        }
    }
}

/// The feed over one engine: hands out subscriptions that share encodings.
#[derive(Clone)]
pub struct Feed {
    pub(crate) engine: Engine,
    encodings: Arc<SharedEncodings>,
    pub(crate) max_event_bytes: usize,
    pub(crate) oversized: Arc<AtomicU64>,
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
    /// snapshot is marked by `Resolved { seq: S }`; in the Debezium form
    /// the last snapshot row carries `source.snapshot = "last"`.
    pub snapshot: bool,
    /// Read as this durable consumer: start at its position, or at `since`
    /// if that is later (a reader that saw events past the last ack), and
    /// fail, saying why, once it is invalidated, or deleted (even if a new
    /// consumer takes its name). Acks stay explicit
    /// (`Engine::ack_consumer`); no snapshot.
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
        Feed::with_options(engine, FeedOptions::default())
    }

    /// A feed whose events larger than `max_event_bytes` (encoded) are
    /// sent key-only, flagged `"truncated": true`, and counted.
    pub fn with_max_event_bytes(engine: Engine, max_event_bytes: usize) -> Feed {
        Feed::with_options(
            engine,
            FeedOptions {
                max_event_bytes,
                ..FeedOptions::default()
            },
        )
    }

    pub fn with_options(engine: Engine, options: FeedOptions) -> Feed {
        Feed {
            engine,
            encodings: Arc::new(SharedEncodings::new(options.shared_encoding_bytes)),
            max_event_bytes: options.max_event_bytes,
            oversized: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Events sent key-only because they exceeded the maximum size.
    pub fn oversized_events(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }

    pub(crate) fn shared(&self) -> Shared<'_> {
        Shared {
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
            crate::cursor::PAGE_BYTES,
            filter,
            format,
            Some(&self.shared()),
        )
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Starts a subscription. Fails with `BelowRetention` if `since` is
    /// older than retained history, with `FutureSeq` if it is ahead of the
    /// log (never for a `since` read from `Engine::visible_seq` before
    /// this call), and with `Closed` once the engine is closing.
    pub fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, FeedError> {
        if self.engine.is_closed() {
            return Err(FeedError::Closed);
        }
        let (since, consumer) = match &options.consumer {
            Some(_) if options.snapshot => return Err(FeedError::ConsumerWithPosition),
            Some(name) => {
                let info = self.engine.consumer(name)?;
                if let Some(reason) = info.invalidated {
                    return Err(tidefeed_engine::Error::ConsumerInvalidated {
                        name: name.clone(),
                        reason,
                    }
                    .into());
                }
                // A reader that has seen events past the acknowledged
                // position (an EventSource's Last-Event-ID) goes on after
                // them; the consumer itself moves only on acks.
                let start = options
                    .since
                    .map_or(info.position, |s| s.max(info.position));
                (
                    Some(start),
                    Some(ConsumerIdentity {
                        name: name.clone(),
                        created_micros: info.created_micros,
                    }),
                )
            }
            None => (options.since, None),
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
            Snapshot::new(tables, head, head_ts)
        });
        Ok(Subscription::new(
            self.clone(),
            options,
            consumer,
            position,
            snapshot,
            visible,
        ))
    }
}
