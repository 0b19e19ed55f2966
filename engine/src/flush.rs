//! The flush worker: writes immutable memtables to L0 table files.
//!
//! Owned by the engine: started in `open`, stopped in `close` after the
//! commit thread. For each immutable memtable, oldest first, it writes the
//! table file (every version, tombstones with their before-images), fsyncs
//! it and its directory, commits a manifest that references it and moves
//! `flushed_seq`, swaps the memtable for the file in the engine state, and
//! only then deletes the WAL segments the manifest now covers.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use bytes::Bytes;

use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::fault::FaultInjector;
use crate::fsutil;
use crate::manifest::{FileEntry, Manifest};
use crate::memtable::Memtable;
use crate::sst::builder::SstBuilder;
use crate::sst::reader::SstReader;
use crate::sst::sst_path;
use crate::wal::segments::SealedSegments;

pub(crate) enum FlushSignal {
    /// A memtable became immutable.
    Work,
    Shutdown,
}

pub(crate) struct FlushWorker {
    pub shared: Arc<Shared>,
    pub data_dir: PathBuf,
    pub sst_dir: PathBuf,
    pub manifest: Manifest,
    pub sealed: Arc<SealedSegments>,
    pub faults: Option<Arc<FaultInjector>>,
}

impl FlushWorker {
    pub(crate) fn run(mut self, signals: Receiver<FlushSignal>) {
        loop {
            match signals.recv() {
                Ok(FlushSignal::Work) => {}
                Ok(FlushSignal::Shutdown) | Err(_) => return,
            }
            while let Some(memtable) = self.shared.state().oldest_immutable().cloned() {
                if let Err(error) = self.flush(&memtable) {
                    tracing::error!(%error, first_seq = memtable.first_seq(), "memtable flush failed; the engine is poisoned");
                    self.shared.poison_background(error);
                    return;
                }
            }
        }
    }

    fn flush(&mut self, memtable: &Arc<Memtable>) -> Result<()> {
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
                return Err(Error::Io { path, source });
            }
        };
        fsutil::sync_dir(&self.sst_dir)?;
        let file = Arc::new(SstReader::open(&path)?);

        let mut next = self.manifest.clone();
        next.next_file_id = id + 1;
        next.flushed_seq = memtable.last_seq();
        next.l0.push(FileEntry {
            id,
            min_seq: meta.min_seq,
            max_seq: meta.max_seq,
            entries: meta.entries,
            file_bytes: meta.file_bytes,
        });
        next.commit(&self.data_dir)?;
        self.manifest = next;

        self.shared
            .update_state(|state| Some(state.with_flushed(memtable, file)));
        self.shared.notify_flushed();
        let deleted = self.sealed.delete_through(self.manifest.flushed_seq)?;
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
}
