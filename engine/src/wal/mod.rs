//! The write-ahead log.
//!
//! The log is a directory of segment files `wal/NNNNNNNNNN.log`. Each segment
//! starts with a 16-byte header (magic, format version) followed by frames:
//!
//! ```text
//! u32 LE  crc32c over the length field and the payload
//! u32 LE  payload length (> 0)
//! [u8]    payload: one committed batch (see `format`)
//! ```
//!
//! The active segment is zero-filled ahead of the write position in
//! `EXTEND_STEP` chunks, so most appends overwrite allocated blocks and
//! fdatasync need not update the file size. A zero length field therefore
//! marks the end of written data. Sealed segments are truncated to their
//! last frame before the next segment is created.
//!
//! Architecture invariant: one batch is one frame; a frame is either wholly
//! valid or discarded, so batches are atomic across crashes.

pub(crate) mod format;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod segments;
pub(crate) mod writer;

use std::path::{Path, PathBuf};

pub(crate) const WAL_DIR: &str = "wal";

pub(crate) fn segment_path(wal_dir: &Path, id: u64) -> PathBuf {
    wal_dir.join(format!("{id:010}.log"))
}

/// Parses a segment file name back into its id.
pub(crate) fn segment_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}
