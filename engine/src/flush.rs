//! The background worker: flushes immutable memtables to L0, advances the
//! low-water mark, and compacts.
//!
//! Owned by the engine: started in `open`, stopped in `close` after the
//! commit thread. It is the only writer of the manifest. For each
//! immutable memtable, oldest first, it writes the table file (every
//! version, tombstones with their before-images), fsyncs it and its
//! directory, commits a manifest that references it and moves
//! `flushed_seq`, swaps the memtable for the file in the engine state, and
//! only then deletes the WAL segments the manifest now covers. Compactions
//! follow the same order: outputs durable, manifest committed, state
//! swapped, inputs marked obsolete (deleted when no reader pins them).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::compaction::gc::HistoryFilter;
use crate::compaction::pick::{self, CompactionLimits, FileSummary, Task};
use crate::compaction::worker::{install, write_outputs};
use crate::consumers::InvalidationReason;
use crate::engine::Shared;
use crate::error::{Error, Result, Stage};
use crate::fault::FaultInjector;
use crate::manifest::Manifest;
use crate::memtable::Memtable;
use crate::retention::{self, Checkpoint, Window};
use crate::sst::builder::SstBuilder;
use crate::sst::cache::BlockCache;
use crate::sst::sst_path;
use crate::wal::segments::SealedSegments;

/// How often the worker re-checks retention when nothing else wakes it.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// A failed step of background work: what it was doing and why.
pub(crate) type StageError = (Stage, Error);
type StageResult<T = ()> = std::result::Result<T, StageError>;

fn at(stage: Stage) -> impl FnOnce(Error) -> StageError {
    move |error| (stage, error)
}

pub(crate) enum FlushSignal {
    /// A memtable became immutable.
    Work,
    /// Compact every table file into one bottom level.
    CompactAll(Sender<Result<()>>),
    /// Run one round now (flush, retention, compactions over limits) and
    /// report when it is done.
    Settle(Sender<Result<()>>),
    Shutdown,
}

pub(crate) struct BackgroundConfig {
    pub history_window: Option<Duration>,
    pub history_bytes: Option<u64>,
    pub limits: CompactionLimits,
    pub table_file_bytes: u64,
    pub max_retention_bytes: Option<u64>,
    pub consumer_idle_expiry: Option<Duration>,
}

pub(crate) struct FlushWorker {
    pub shared: Arc<Shared>,
    pub data_dir: PathBuf,
    pub sst_dir: PathBuf,
    pub manifest: Manifest,
    pub sealed: Arc<SealedSegments>,
    pub faults: Option<Arc<FaultInjector>>,
    pub config: BackgroundConfig,
    pub cache: Arc<BlockCache>,
}

impl FlushWorker {
    pub(crate) fn run(mut self, signals: Receiver<FlushSignal>) {
        loop {
            let mut full = false;
            let mut reply = None;
            match signals.recv_timeout(IDLE_TICK) {
                Ok(FlushSignal::Work) | Err(RecvTimeoutError::Timeout) => {}
                Ok(FlushSignal::CompactAll(sender)) => {
                    full = true;
                    reply = Some(sender);
                }
                Ok(FlushSignal::Settle(sender)) => reply = Some(sender),
                Ok(FlushSignal::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    if let Err(error) = self.shared.consumers.persist_acks(self.shared.durable()) {
                        tracing::error!(%error, "could not write consumer acks at shutdown");
                    }
                    return;
                }
            }
            let result = self.round(full);
            if let Err((stage, error)) = result {
                tracing::error!(%stage, %error, "background work failed; the engine is poisoned");
                let poisoned = self.shared.poison(stage, Arc::new(error));
                if let Some(reply) = reply {
                    let _ = reply.send(Err(poisoned));
                }
                return;
            }
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Flushes what waits, moves low-water, compacts what is over limits
    /// (or everything, for a full compaction).
    fn round(&mut self, full: bool) -> StageResult {
        if let Some(faults) = &self.faults {
            faults.before_background_round();
        }
        while let Some(memtable) = self.shared.state().oldest_immutable().cloned() {
            self.flush(&memtable)?;
        }
        // Acks are written before low-water moves: retention is held by
        // written positions, so this round can let go of what was acked.
        self.shared
            .consumers
            .persist_acks(self.shared.durable())
            .map_err(at(Stage::Consumers))?;
        self.advance_low_water()?;
        if full {
            if let Some(task) = pick::full(&self.summaries()) {
                self.compact(task)?;
            }
        }
        while let Some(task) = pick::pick(&self.summaries(), self.config.limits) {
            self.compact(task)?;
        }
        Ok(())
    }

    fn commit_manifest(&self, next: &Manifest) -> StageResult {
        if let Some(faults) = &self.faults {
            faults.before_manifest().map_err(|source| {
                (
                    Stage::Manifest,
                    Error::Io {
                        path: Manifest::path(&self.data_dir),
                        source,
                    },
                )
            })?;
        }
        next.commit(&self.data_dir).map_err(at(Stage::Manifest))?;
        self.shared.set_checkpoints(next.checkpoints.clone());
        Ok(())
    }

    fn summaries(&self) -> Vec<Vec<FileSummary>> {
        self.shared
            .state()
            .levels
            .iter()
            .map(|files| {
                files
                    .iter()
                    .map(|f| FileSummary {
                        id: f.id,
                        bytes: f.bytes,
                        smallest: f.smallest.clone(),
                        largest: f.largest.clone(),
                    })
                    .collect()
            })
            .collect()
    }

    fn flush(&mut self, memtable: &Arc<Memtable>) -> StageResult {
        let id = self.manifest.next_file_id;
        let path = sst_path(&self.sst_dir, id);
        let written = match &self.faults {
            Some(faults) => faults.before_flush(),
            None => Ok(()),
        }
        .and_then(|()| Self::write_file(&path, memtable));
        let meta = match written {
            Ok(meta) => meta,
            Err(source) => {
                let _ = std::fs::remove_file(&path);
                return Err((Stage::Flush, Error::Io { path, source }));
            }
        };
        crate::fsutil::sync_dir(&self.sst_dir).map_err(at(Stage::Flush))?;
        let output = install(id, &meta, &self.cache).map_err(at(Stage::Flush))?;

        let last = memtable
            .by_seq(memtable.last_seq())
            .expect("a flushed memtable is not empty");
        let mut next = self.manifest.clone();
        next.next_file_id = id + 1;
        next.flushed_seq = memtable.last_seq();
        next.levels[0].push(output.entry);
        next.flushed_bytes += meta.file_bytes;
        next.checkpoints.push(Checkpoint {
            ts_micros: last.ts_micros,
            seq: last.seq,
            flushed_bytes: next.flushed_bytes,
        });
        self.commit_manifest(&next)?;
        self.manifest = next;

        self.shared
            .update_state(|state| Some(state.with_flushed(memtable, output.file)));
        self.shared.notify_progress();
        let deleted = self
            .sealed
            .delete_through(self.manifest.flushed_seq)
            .map_err(at(Stage::Flush))?;
        let metrics = &self.shared.metrics;
        metrics.flushes.add(1);
        metrics.flushed_bytes.add(meta.file_bytes);
        tracing::debug!(
            file = id,
            entries = meta.entries,
            bytes = meta.file_bytes,
            wal_segments_deleted = deleted,
            "flushed a memtable"
        );
        Ok(())
    }

    fn write_file(
        path: &std::path::Path,
        memtable: &Memtable,
    ) -> std::io::Result<crate::sst::builder::SstMeta> {
        let mut builder = SstBuilder::create(path)?;
        for record in memtable.range(&Bytes::new(), None) {
            builder.add(&record)?;
        }
        builder.finish()
    }

    /// Moves low-water to what the history window allows, held back by
    /// the written positions of valid durable consumers. Consumers idle
    /// past their expiry, or holding more than `max_retention_bytes` of
    /// history beyond the window, are invalidated first.
    fn advance_low_water(&mut self) -> StageResult {
        let shared = self.shared.clone();
        let _retention = shared.retention.lock().expect("retention lock poisoned");
        let consumers = &shared.consumers;
        let now = crate::engine::now_micros();
        consumers.touch_caught_up(shared.visible(), now);
        if let Some(expiry) = self.config.consumer_idle_expiry {
            let horizon = now.saturating_sub(i64::try_from(expiry.as_micros()).unwrap_or(i64::MAX));
            for (name, acked_micros) in consumers.idle_before(horizon) {
                let idle = now.saturating_sub(acked_micros).max(0) as u64 / 1_000_000;
                let reason = InvalidationReason::IdleExpiry {
                    idle_secs: idle,
                    expiry_secs: expiry.as_secs(),
                };
                consumers
                    .invalidate(&name, reason, shared.durable())
                    .map_err(at(Stage::Consumers))?;
                shared.metrics.consumers_invalidated.add(1);
            }
        }
        let window = retention::low_water(
            self.manifest.low_water,
            &self.manifest.checkpoints,
            now,
            Window {
                time: self.config.history_window,
                bytes: self.config.history_bytes,
            },
        );
        let decision = retention::decide(
            self.manifest.low_water,
            window,
            &consumers.holders(),
            &self.manifest.checkpoints,
            self.config.max_retention_bytes,
        );
        for (name, held_bytes) in decision.invalidate {
            let reason = InvalidationReason::RetentionCap {
                held_bytes,
                max_bytes: self.config.max_retention_bytes.unwrap_or(0),
            };
            consumers
                .invalidate(&name, reason, shared.durable())
                .map_err(at(Stage::Consumers))?;
            shared.metrics.consumers_invalidated.add(1);
        }
        let low_water = decision.low_water;
        if low_water == self.manifest.low_water {
            return Ok(());
        }
        let mut next = self.manifest.clone();
        next.low_water = low_water;
        retention::prune(&mut next.checkpoints, low_water);
        // Durable before any reader is refused or any history dropped.
        self.commit_manifest(&next)?;
        self.manifest = next;
        self.shared.update_state(|state| {
            let mut next = state.clone();
            next.low_water = low_water;
            Some(next)
        });
        tracing::debug!(low_water, "low-water mark advanced");
        Ok(())
    }

    fn compact(&mut self, task: Task) -> StageResult {
        let state = self.shared.state();
        let inputs: Vec<_> = state
            .files()
            .filter(|f| task.inputs.contains(&f.id))
            .cloned()
            .collect();
        if let Some(faults) = &self.faults {
            faults.before_compaction().map_err(|source| {
                (
                    Stage::Compaction,
                    Error::Io {
                        path: self.sst_dir.clone(),
                        source,
                    },
                )
            })?;
        }
        let filter = HistoryFilter::new(self.manifest.low_water, task.bottom);
        let mut next_id = self.manifest.next_file_id;
        let outputs = write_outputs(
            &inputs,
            filter,
            &self.sst_dir,
            &mut next_id,
            self.config.table_file_bytes,
            &self.cache,
        )
        .map_err(at(Stage::Compaction))?;

        let mut next = self.manifest.clone();
        next.next_file_id = next_id;
        for level in &mut next.levels {
            level.retain(|f| !task.inputs.contains(&f.id));
        }
        while next.levels.len() <= task.output_level {
            next.levels.push(Vec::new());
        }
        let level = &mut next.levels[task.output_level];
        level.extend(outputs.iter().map(|o| o.entry.clone()));
        level.sort_by(|a, b| a.smallest_key.cmp(&b.smallest_key));
        self.commit_manifest(&next)?;
        self.manifest = next;

        let (input_bytes, output_bytes): (u64, u64) = (
            inputs.iter().map(|f| f.bytes).sum(),
            outputs.iter().map(|o| o.file.bytes).sum(),
        );
        let added = outputs.into_iter().map(|o| o.file).collect();
        self.shared.update_state(|state| {
            Some(state.with_compacted(&task.inputs, task.output_level, added))
        });
        for input in &inputs {
            input.reader.mark_obsolete();
        }
        // Fewer L0 files may end a write stall.
        self.shared.notify_progress();
        let metrics = &self.shared.metrics;
        metrics.compactions.add(1);
        metrics.compacted_bytes.add(output_bytes);
        tracing::debug!(
            inputs = inputs.len(),
            input_bytes,
            output_bytes,
            level = task.output_level,
            "compacted"
        );
        Ok(())
    }
}
