//! Appends commit groups to the active segment and makes them durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, Stage};
use crate::fault::FaultInjector;
use crate::fsutil;
use crate::metrics::EngineMetrics;
use crate::wal::format::{segment_header, SEGMENT_HEADER_LEN};
use crate::wal::segment_path;
use crate::wal::segments::SealedSegments;
use crate::Seq;

/// The zero-filled region kept ahead of the write position grows in steps
/// of this size; only those steps change the file size.
const EXTEND_STEP: u64 = 1 << 20;

/// A failed WAL step, with the segment it failed on.
pub(crate) type WalFailure = (Stage, Error);

struct ActiveSegment {
    id: u64,
    path: PathBuf,
    file: File,
    /// End of the last frame written.
    written: u64,
    /// End of the zero-filled region.
    zeroed_end: u64,
}

pub(crate) struct WalWriter {
    dir: PathBuf,
    segment: ActiveSegment,
    segment_bytes: u64,
    faults: Option<Arc<FaultInjector>>,
    metrics: Arc<EngineMetrics>,
    sealed: Arc<SealedSegments>,
    /// Last seq written to the WAL so far.
    last_seq: Seq,
}

impl WalWriter {
    /// Starts a fresh segment `id` in `dir`. Recovery never appends to an
    /// existing segment, so stale bytes can never follow new frames.
    pub(crate) fn create(
        dir: &Path,
        id: u64,
        segment_bytes: u64,
        faults: Option<Arc<FaultInjector>>,
        metrics: Arc<EngineMetrics>,
        sealed: Arc<SealedSegments>,
        last_seq: Seq,
    ) -> Result<WalWriter> {
        let segment = Self::new_segment(dir, id).map_err(Error::io(segment_path(dir, id)))?;
        fsutil::sync_dir(dir)?;
        Ok(WalWriter {
            dir: dir.to_owned(),
            segment,
            segment_bytes,
            faults,
            metrics,
            sealed,
            last_seq,
        })
    }

    fn new_segment(dir: &Path, id: u64) -> io::Result<ActiveSegment> {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(&segment_header(), 0)?;
        file.sync_all()?;
        Ok(ActiveSegment {
            id,
            path,
            file,
            written: SEGMENT_HEADER_LEN,
            zeroed_end: SEGMENT_HEADER_LEN,
        })
    }

    /// Writes `frames`, whose last change has seq `last_seq`, after the
    /// last frame. Not durable until [`sync`].
    pub(crate) fn append(&mut self, frames: &[u8], last_seq: Seq) -> Result<(), WalFailure> {
        let len = frames.len() as u64;
        if self.segment.written > SEGMENT_HEADER_LEN
            && self.segment.written + len > self.segment_bytes
        {
            self.rotate()
                .map_err(|e| (Stage::Rotate, self.io_error(e)))?;
        }
        let write = || -> io::Result<()> {
            if let Some(faults) = &self.faults {
                faults.before_write()?;
            }
            let segment = &self.segment;
            let end = segment.written + len;
            if end > segment.zeroed_end {
                let new_zeroed = end.div_ceil(EXTEND_STEP).max(1) * EXTEND_STEP;
                let zeros = vec![0u8; (new_zeroed - end) as usize];
                segment.file.write_all_at(&zeros, end)?;
            }
            segment.file.write_all_at(frames, segment.written)
        };
        write().map_err(|e| (Stage::Write, self.io_error(e)))?;
        let end = self.segment.written + len;
        self.segment.zeroed_end = self
            .segment
            .zeroed_end
            .max(end.div_ceil(EXTEND_STEP).max(1) * EXTEND_STEP);
        self.segment.written = end;
        self.last_seq = last_seq;
        self.metrics.wal_bytes.add(len);
        Ok(())
    }

    /// fdatasync of the active segment.
    pub(crate) fn sync(&mut self) -> Result<(), WalFailure> {
        let sync = || -> io::Result<()> {
            if let Some(faults) = &self.faults {
                faults.before_sync()?;
            }
            self.segment.file.sync_data()
        };
        sync().map_err(|e| (Stage::Sync, self.io_error(e)))?;
        self.metrics.wal_syncs.add(1);
        Ok(())
    }

    /// Seals the active segment (truncated to its last frame, synced) and
    /// starts the next one.
    fn rotate(&mut self) -> io::Result<()> {
        let sealed = &self.segment;
        sealed.file.set_len(sealed.written)?;
        sealed.file.sync_all()?;
        let next = Self::new_segment(&self.dir, sealed.id + 1)?;
        File::open(&self.dir)?.sync_all()?;
        tracing::debug!(sealed = %sealed.path.display(), next = next.id, "rotated WAL segment");
        self.sealed.push(sealed.id, self.last_seq);
        self.segment = next;
        self.metrics.wal_rotations.add(1);
        Ok(())
    }

    /// Seals the active segment on orderly shutdown, so that reopening
    /// finds a log that ends exactly at its last frame.
    pub(crate) fn close(self) -> Result<(), WalFailure> {
        let segment = &self.segment;
        segment
            .file
            .set_len(segment.written)
            .and_then(|()| segment.file.sync_all())
            .map_err(|e| (Stage::Sync, self.io_error(e)))
    }

    fn io_error(&self, source: io::Error) -> Error {
        Error::Io {
            path: self.segment.path.clone(),
            source,
        }
    }
}
