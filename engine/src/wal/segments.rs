//! Sealed WAL segments and the seq each ends at, so that segments whose
//! contents are all flushed can be deleted.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::wal::segment_path;
use crate::Seq;

pub(crate) struct SealedSegments {
    dir: PathBuf,
    /// (segment id, last seq written up to the end of that segment), in id order.
    segments: Mutex<Vec<(u64, Seq)>>,
}

impl SealedSegments {
    pub(crate) fn new(dir: PathBuf, segments: Vec<(u64, Seq)>) -> SealedSegments {
        SealedSegments {
            dir,
            segments: Mutex::new(segments),
        }
    }

    pub(crate) fn push(&self, id: u64, end_seq: Seq) {
        self.segments
            .lock()
            .expect("segments lock poisoned")
            .push((id, end_seq));
    }

    /// Deletes the sealed segments whose every seq is <= `flushed_seq`.
    /// Only call once a committed manifest covers `flushed_seq`.
    pub(crate) fn delete_through(&self, flushed_seq: Seq) -> Result<usize> {
        let doomed: Vec<u64> = {
            let mut segments = self.segments.lock().expect("segments lock poisoned");
            let keep_from = segments.partition_point(|&(_, end)| end <= flushed_seq);
            segments.drain(..keep_from).map(|(id, _)| id).collect()
        };
        for &id in &doomed {
            let path = segment_path(&self.dir, id);
            std::fs::remove_file(&path).map_err(Error::io(&path))?;
        }
        if !doomed.is_empty() {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(doomed.len())
    }
}
