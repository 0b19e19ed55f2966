//! Reads the change log after a position and turns it into records, a
//! bounded batch at a time, off the async executor.
//!
//! The reader is a position over the engine's log, like a feed
//! subscription: it reads from wherever it is and waits at the head for
//! the visible seq to move. It runs ahead of the producer by at most the
//! channel's capacity in batches; the producer's in-flight bound does the
//! rest. It also checks, on every batch, that its durable consumer is
//! still valid, so an invalidation stops the connector before it reads
//! history that retention no longer keeps for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tidefeed_engine::{Engine, Seq};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::record::{BuildError, OutRecord, RecordBuilder};

/// Changes one batch may hold, at most.
pub(crate) const BATCH_CHANGES: usize = 2048;
/// Encoded bytes after which a batch ends (a single larger change still
/// makes a batch of its own).
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// Batches the reader may have ready ahead of the producer.
const READ_AHEAD: usize = 2;

/// Records of consecutive changes.
#[derive(Debug)]
pub(crate) struct Batch {
    pub records: Vec<OutRecord>,
    /// The last seq read: every change after the previous batch and up to
    /// here is in `records`.
    pub last: Seq,
}

/// Seqs to send as dead letters instead of their records (exactly-once
/// mode, after Kafka refused them in an aborted transaction), with the
/// error Kafka gave.
pub(crate) type DeadLetters = Arc<Mutex<HashMap<Seq, String>>>;

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The engine closed.
    Closed,
    Engine(tidefeed_engine::Error),
    /// A change could not become records.
    Build {
        seq: Seq,
        error: BuildError,
    },
}

/// Reads `(since, upto]`, at most one batch, as records. Blocking.
pub(crate) fn read_batch(
    engine: &Engine,
    builder: &mut RecordBuilder,
    consumer: &str,
    dead_letters: Option<&DeadLetters>,
    since: Seq,
    upto: Seq,
) -> Result<Batch, ReadError> {
    // An invalidated consumer no longer holds retention: say so rather
    // than read on (or fail on history that is gone).
    engine.consumer_position(consumer).map_err(engine_error)?;
    let changes = engine.changes(since, Some(upto)).map_err(engine_error)?;
    let mut records = Vec::with_capacity(BATCH_CHANGES.min((upto - since) as usize) + 8);
    let mut last = since;
    let mut bytes = 0;
    for (i, change) in changes.enumerate() {
        if i == BATCH_CHANGES || bytes >= BATCH_BYTES {
            break;
        }
        let change = change.map_err(engine_error)?;
        let seq = change.seq();
        let dead =
            dead_letters.and_then(|d| d.lock().expect("dead letters lock").get(&seq).cloned());
        let before = records.len();
        match dead {
            Some(error) => builder
                .dead_letter(&change, error, false)
                .map(|record| records.push(record)),
            None => builder.records(&change, &mut records).map(|_| ()),
        }
        .map_err(|error| ReadError::Build { seq, error })?;
        bytes += records[before..].iter().map(OutRecord::size).sum::<usize>();
        last = seq;
    }
    Ok(Batch { records, last })
}

fn engine_error(error: tidefeed_engine::Error) -> ReadError {
    match error {
        tidefeed_engine::Error::Closed => ReadError::Closed,
        other => ReadError::Engine(other),
    }
}

/// Starts reading after `since`; batches arrive on the returned channel
/// in seq order, and an error ends it. Stops when `cancel` fires or the
/// receiver is dropped.
pub(crate) fn spawn(
    engine: Engine,
    mut builder: RecordBuilder,
    consumer: String,
    dead_letters: Option<DeadLetters>,
    since: Seq,
    cancel: CancellationToken,
) -> mpsc::Receiver<Result<Batch, ReadError>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        let mut visible = engine.watch_visible();
        let mut closed = engine.watch_closed();
        let mut position = since;
        loop {
            // NOTE: marked seen before the head is read, so a seq published
            // after the read wakes the wait below.
            visible.borrow_and_update();
            let head = engine.visible_seq();
            if engine.is_closed() {
                let _ = tx.send(Err(ReadError::Closed)).await;
                return;
            }
            if position < head {
                let read_engine = engine.clone();
                let read_consumer = consumer.clone();
                let read_dead = dead_letters.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let batch = read_batch(
                        &read_engine,
                        &mut builder,
                        &read_consumer,
                        read_dead.as_ref(),
                        position,
                        head,
                    );
                    (builder, batch)
                });
                let (returned, batch) = tokio::select! {
                    joined = read => match joined {
                        Ok(done) => done,
                        // The runtime is shutting down.
                        Err(_) => return,
                    },
                    _ = cancel.cancelled() => return,
                };
                builder = returned;
                let failed = batch.is_err();
                if let Ok(batch) = &batch {
                    position = batch.last;
                }
                tokio::select! {
                    sent = tx.send(batch) => if sent.is_err() { return },
                    _ = cancel.cancelled() => return,
                }
                if failed {
                    return;
                }
                continue;
            }
            tokio::select! {
                changed = visible.changed() => if changed.is_err() {
                    let _ = tx.send(Err(ReadError::Closed)).await;
                    return;
                },
                _ = engine_closing(&mut closed) => {
                    let _ = tx.send(Err(ReadError::Closed)).await;
                    return;
                }
                _ = cancel.cancelled() => return,
            }
        }
    });
    rx
}

async fn engine_closing(closed: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}
