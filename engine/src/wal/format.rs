//! Byte layout of WAL segments, frames and batch records.
//!
//! Batch payload, format version 1:
//!
//! ```text
//! u8      record version (1)
//! u8      record type (1 = batch)
//! u64 LE  first seq
//! i64 LE  commit timestamp, microseconds since the Unix epoch
//! varint  change count n (> 0); the changes take seqs first..first+n
//! n times:
//!   u8      kind (1 insert, 2 update, 3 delete)
//!   varint  key length, key bytes
//!   varint  before length + 1, before bytes (0 = no before-image)
//!   varint  after length + 1, after bytes (0 = no after-image)
//! ```

use std::sync::Arc;

use bytes::Bytes;

use crate::change::{ChangeKind, ChangeRecord};
use crate::codec::varint::{self, DecodeResult, Reader};
use crate::Seq;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"TFWALSEG";
pub(crate) const SEGMENT_FORMAT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Upper bound of one frame's payload; larger length fields are corrupt.
pub(crate) const MAX_PAYLOAD_LEN: usize = 256 << 20;

const RECORD_VERSION: u8 = 1;
const RECORD_TYPE_BATCH: u8 = 1;

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header
}

fn frame_crc(len_field: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_field), payload)
}

/// Appends one frame holding a batch of consecutive changes.
pub(crate) fn encode_batch(out: &mut Vec<u8>, records: &[Arc<ChangeRecord>]) {
    let first = records.first().expect("a batch has at least one change");
    let frame_start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.push(RECORD_VERSION);
    out.push(RECORD_TYPE_BATCH);
    out.extend_from_slice(&first.seq.to_le_bytes());
    out.extend_from_slice(&first.ts_micros.to_le_bytes());
    varint::put_u64(out, records.len() as u64);
    for record in records {
        out.push(record.kind.tag());
        varint::put_u64(out, record.key.len() as u64);
        out.extend_from_slice(&record.key);
        varint::put_opt_bytes(out, record.before.as_deref());
        varint::put_opt_bytes(out, record.after.as_deref());
    }
    let payload_len = out.len() - frame_start - FRAME_HEADER_LEN;
    assert!(
        payload_len <= MAX_PAYLOAD_LEN,
        "batch exceeds the WAL frame limit"
    );
    let len_field = (payload_len as u32).to_le_bytes();
    let crc = frame_crc(&len_field, &out[frame_start + FRAME_HEADER_LEN..]);
    out[frame_start..frame_start + 4].copy_from_slice(&crc.to_le_bytes());
    out[frame_start + 4..frame_start + 8].copy_from_slice(&len_field);
}

/// What one frame position holds.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    /// A frame whose checksum verifies; `len` is its total size.
    Valid {
        payload: &'a [u8],
        len: usize,
    },
    /// A zero length field: no data was ever written here.
    Zero,
    /// Not enough bytes for the frame the header announces.
    Truncated,
    BadLength,
    BadChecksum,
}

pub(crate) fn read_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) {
            Frame::Zero
        } else {
            Frame::Truncated
        };
    }
    let crc = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return if crc == 0 {
            Frame::Zero
        } else {
            Frame::BadLength
        };
    }
    if len > MAX_PAYLOAD_LEN {
        return Frame::BadLength;
    }
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Frame::Truncated;
    };
    if frame_crc(&buf[4..8], payload) != crc {
        return Frame::BadChecksum;
    }
    Frame::Valid {
        payload,
        len: FRAME_HEADER_LEN + len,
    }
}

/// Decodes a verified payload into its change records.
pub(crate) fn decode_batch(payload: &[u8]) -> DecodeResult<Vec<ChangeRecord>> {
    let mut r = Reader::new(payload);
    if r.u8("record version")? != RECORD_VERSION {
        return Err("unsupported record version");
    }
    if r.u8("record type")? != RECORD_TYPE_BATCH {
        return Err("unknown record type");
    }
    let first_seq: Seq = r.u64_le("first seq")?;
    let ts_micros = r.u64_le("timestamp")? as i64;
    let count = r.varint("change count")?;
    if count == 0 || count > u64::from(u32::MAX) || first_seq == 0 {
        return Err("bad change count or seq");
    }
    let mut records = Vec::with_capacity(count.min(1 << 16) as usize);
    for index in 0..count {
        let kind = ChangeKind::from_tag(r.u8("kind")?).ok_or("unknown change kind")?;
        let key = Bytes::copy_from_slice(r.len_prefixed("key")?);
        let before = r.opt_bytes("before-image")?.map(Bytes::copy_from_slice);
        let after = r.opt_bytes("after-image")?.map(Bytes::copy_from_slice);
        let shape_ok = kind.fits_images(before.is_some(), after.is_some());
        if !shape_ok || key.len() < 4 {
            return Err("change images do not match its kind");
        }
        records.push(ChangeRecord {
            seq: first_seq.checked_add(index).ok_or("seq overflow")?,
            ts_micros,
            kind,
            key,
            before,
            after,
            batch_index: index as u32,
            batch_size: count as u32,
        });
    }
    if !r.is_empty() {
        return Err("trailing bytes after batch");
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(first_seq: Seq, n: u32) -> Vec<Arc<ChangeRecord>> {
        (0..n)
            .map(|i| {
                Arc::new(ChangeRecord {
                    seq: first_seq + u64::from(i),
                    ts_micros: 1_700_000_000_000_000,
                    kind: if i % 2 == 0 {
                        ChangeKind::Insert
                    } else {
                        ChangeKind::Delete
                    },
                    key: Bytes::from(vec![0, 0, 0, 1, i as u8]),
                    before: (i % 2 == 1).then(|| Bytes::from_static(b"old")),
                    after: (i % 2 == 0).then(|| Bytes::from_static(b"new")),
                    batch_index: i,
                    batch_size: n,
                })
            })
            .collect()
    }

    #[test]
    fn batches_round_trip_through_a_frame() {
        let records = sample(42, 3);
        let mut buf = Vec::new();
        encode_batch(&mut buf, &records);
        let Frame::Valid { payload, len } = read_frame(&buf) else {
            panic!("frame does not verify")
        };
        assert_eq!(len, buf.len());
        let decoded = decode_batch(payload).unwrap();
        assert_eq!(
            decoded,
            records.iter().map(|r| (**r).clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn damaged_frames_are_classified() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, &sample(1, 2));
        assert_eq!(read_frame(&buf[..buf.len() - 1]), Frame::Truncated);
        let mut flipped = buf.clone();
        flipped[12] ^= 1;
        assert_eq!(read_frame(&flipped), Frame::BadChecksum);
        assert_eq!(read_frame(&[0; 20]), Frame::Zero);
        assert_eq!(read_frame(&[0; 3]), Frame::Zero);
        let mut huge = buf.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_frame(&huge), Frame::BadLength);
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_payloads_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = decode_batch(&bytes);
            let _ = read_frame(&bytes);
        }
    }
}
