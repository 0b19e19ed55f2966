//! Replays the WAL at startup.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::change::ChangeRecord;
use crate::error::{Corruption, Error, Result};
use crate::fsutil;
use crate::wal::{reader, segment_id};
use crate::Seq;

/// What replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReplay {
    /// Segment files read.
    pub segments: usize,
    /// Batches replayed.
    pub batches: u64,
    /// Last seq replayed (or the seq replay started after, if none).
    pub last_seq: Seq,
    /// Bytes of a torn tail that were discarded.
    pub torn_bytes: u64,
    /// Id for the next segment to create.
    pub(crate) next_segment_id: u64,
    /// Each remaining segment with the last seq written up to its end.
    pub(crate) sealed: Vec<(u64, Seq)>,
}

fn list_segments(wal_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(wal_dir).map_err(Error::io(wal_dir))? {
        let path = entry.map_err(Error::io(wal_dir))?.path();
        if let Some(id) = segment_id(&path) {
            segments.push((id, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Feeds every batch with seqs after `after_seq` to `apply`, in seq order,
/// checking that seqs continue without gap or repeat. A torn tail of the
/// newest segment is cut off (and the cut made durable) so that the log on
/// disk ends at its last valid frame.
pub(crate) fn replay(
    wal_dir: &Path,
    after_seq: Seq,
    mut apply: impl FnMut(Vec<ChangeRecord>) -> Result<()>,
) -> Result<WalReplay> {
    let segments = list_segments(wal_dir)?;
    let mut expected = after_seq + 1;
    let mut batches = 0;
    let mut torn_bytes = 0;
    let mut sealed = Vec::with_capacity(segments.len());
    for (i, (id, path)) in segments.iter().enumerate() {
        let is_sealed = i + 1 < segments.len();
        let end = reader::read_segment(path, is_sealed, expected, |offset, records| {
            let first = records[0].seq;
            let last = records[records.len() - 1].seq;
            if last < expected {
                // Already flushed to a table file before the crash.
                return Ok(());
            }
            if first != expected {
                return Err(Error::Corruption {
                    file: path.clone(),
                    offset,
                    problem: Corruption::SeqDiscontinuity {
                        previous: expected - 1,
                        found: first,
                    },
                });
            }
            expected = last + 1;
            batches += 1;
            apply(records)
        })?;
        if !is_sealed {
            let len = fs::metadata(path).map_err(Error::io(path))?.len();
            if end.valid_end < len {
                if end.torn_bytes > 0 {
                    tracing::warn!(
                        file = %path.display(),
                        offset = end.valid_end,
                        bytes = end.torn_bytes,
                        "discarding the torn tail of the WAL"
                    );
                }
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(Error::io(path))?;
                file.set_len(end.valid_end)
                    .and_then(|()| file.sync_all())
                    .map_err(Error::io(path))?;
            }
            torn_bytes = end.torn_bytes;
            if end.valid_end == 0 {
                fs::remove_file(path).map_err(Error::io(path))?;
                fsutil::sync_dir(wal_dir)?;
                continue;
            }
        }
        sealed.push((*id, expected - 1));
    }
    Ok(WalReplay {
        segments: segments.len(),
        batches,
        last_seq: expected - 1,
        torn_bytes,
        next_segment_id: segments.last().map_or(1, |(id, _)| id + 1),
        sealed,
    })
}
