//! Reads one segment back, telling a torn tail from corruption.
//!
//! A crash can leave the end of the active segment half-written: a frame
//! cut short, or bytes that never reached the disk. That is a torn tail, and
//! it is discarded, because nothing in it was acknowledged (a sync write is
//! acknowledged only after its frame is fdatasynced, and later frames are
//! written only after that). A damaged frame *followed by a valid frame* is
//! different: acknowledged data after it would be lost, so it is reported
//! as corruption and startup stops. Sealed segments have no tail at all:
//! any damage in them is corruption.
//!
//! NOTE: the bytes a torn frame announces are its own payload, and a
//! payload is user data, which may hold anything, including bytes that
//! verify as a frame (a `bytes` column holding a copy of a WAL frame, say).
//! So a valid-looking frame *inside* the damaged frame's announced extent
//! does not prove that acknowledged data follows, unless its seqs continue
//! the log: a copy of history carries seqs already replayed. Anything
//! found beyond the extent, or continuing the log's seqs, is corruption.

use std::fs;
use std::path::Path;

use crate::change::ChangeRecord;
use crate::error::{Corruption, Error, Result};
use crate::wal::format::{
    self, read_frame, Frame, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN, SEGMENT_FORMAT_VERSION,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::Seq;

/// How a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SegmentEnd {
    /// Offset just past the last valid frame.
    pub valid_end: u64,
    /// Bytes after `valid_end` up to the last non-zero byte, discarded as a
    /// torn tail (zero fill ahead of the write position is not counted).
    pub torn_bytes: u64,
}

/// Calls `on_batch` with each batch of the segment, in order.
///
/// `sealed` says whether a later segment exists, in which case the segment
/// must end exactly after its last frame.
pub(crate) fn read_segment(
    path: &Path,
    sealed: bool,
    next_seq: Seq,
    mut on_batch: impl FnMut(u64, Vec<ChangeRecord>) -> Result<()>,
) -> Result<SegmentEnd> {
    let buf = fs::read(path).map_err(Error::io(path))?;
    let corrupt = |offset: u64, problem| Error::Corruption {
        file: path.to_owned(),
        offset,
        problem,
    };
    let header_len = SEGMENT_HEADER_LEN as usize;
    if buf.len() < header_len || buf[..header_len].iter().all(|&b| b == 0) {
        // A crash while the segment was being created. Only the newest
        // segment can be in that state.
        if sealed {
            return Err(corrupt(
                0,
                Corruption::BadMagic {
                    expected: "WAL segment",
                },
            ));
        }
        return Ok(SegmentEnd {
            valid_end: 0,
            torn_bytes: written_len(&buf),
        });
    }
    if &buf[..8] != SEGMENT_MAGIC {
        return Err(corrupt(
            0,
            Corruption::BadMagic {
                expected: "WAL segment",
            },
        ));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_FORMAT_VERSION {
        return Err(corrupt(
            8,
            Corruption::UnsupportedVersion {
                found: version,
                supported: SEGMENT_FORMAT_VERSION,
            },
        ));
    }

    let mut pos = header_len;
    // The seq the log continues with: frames found after damage that carry
    // it (or later seqs) are acknowledged data, not copies of history.
    let mut next_seq = next_seq;
    while pos < buf.len() {
        let frame = read_frame(&buf[pos..]);
        let Frame::Valid { payload, len } = frame else {
            return end_of_frames(&buf, pos, frame, sealed, next_seq)
                .map_err(|problem| corrupt(pos as u64, problem));
        };
        let records = format::decode_batch(payload)
            .map_err(|what| corrupt(pos as u64, Corruption::BadRecord(what)))?;
        if let Some(last) = records.last() {
            next_seq = next_seq.max(last.seq + 1);
        }
        on_batch(pos as u64, records)?;
        pos += len;
    }
    Ok(SegmentEnd {
        valid_end: pos as u64,
        torn_bytes: 0,
    })
}

/// Decides what an invalid frame at `pos` means.
fn end_of_frames(
    buf: &[u8],
    pos: usize,
    frame: Frame<'_>,
    sealed: bool,
    next_seq: Seq,
) -> Result<SegmentEnd, Corruption> {
    let rest = &buf[pos..];
    let all_zero = rest.iter().all(|&b| b == 0);
    if sealed {
        return Err(match frame {
            Frame::Truncated => Corruption::TruncatedSealedSegment,
            Frame::BadChecksum => Corruption::ChecksumMismatch,
            _ => Corruption::BadFrame,
        });
    }
    if !all_zero && acknowledged_frame_after(buf, pos, next_seq) {
        return Err(match frame {
            Frame::BadChecksum => Corruption::ChecksumMismatch,
            _ => Corruption::BadFrame,
        });
    }
    Ok(SegmentEnd {
        valid_end: pos as u64,
        torn_bytes: written_len(rest),
    })
}

/// Bytes up to the last non-zero byte: what was written, not zero fill.
fn written_len(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last as u64 + 1)
}

/// Whether a frame that may hold acknowledged data follows the damaged
/// frame at `damaged`: any frame that verifies and decodes, except one
/// lying inside the damaged frame's announced extent whose seqs are all
/// before `next_seq` (user payload that looks like a copy of history; see
/// the module note). Used only after damage is found, so its cost is paid
/// only then.
fn acknowledged_frame_after(buf: &[u8], damaged: usize, next_seq: Seq) -> bool {
    let extent_end = buf
        .get(damaged + 4..damaged + FRAME_HEADER_LEN)
        .map(|len| u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize)
        .filter(|&len| len <= MAX_PAYLOAD_LEN)
        .map_or(damaged, |len| damaged + FRAME_HEADER_LEN + len);
    (damaged + 1..buf.len().saturating_sub(FRAME_HEADER_LEN)).any(|pos| {
        // Cheap filter before the checksum: a payload starts with the
        // record version and type bytes.
        if buf.get(pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + 2) != Some(&[1, 1]) {
            return false;
        }
        let Frame::Valid { payload, len } = read_frame(&buf[pos..]) else {
            return false;
        };
        let Ok(records) = format::decode_batch(payload) else {
            return false;
        };
        let inside = pos + len <= extent_end;
        let continues_the_log = records.last().is_some_and(|r| r.seq >= next_seq);
        !inside || continues_the_log
    })
}
