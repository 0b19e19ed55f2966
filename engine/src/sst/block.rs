//! Record encoding inside data blocks, and the checksummed block trailer.
//!
//! A record:
//!
//! ```text
//! u64 LE  seq
//! i64 LE  commit timestamp (microseconds)
//! u8      kind (1 insert, 2 update, 3 delete)
//! varint  batch index, varint batch size
//! varint  key length, key
//! varint  before length + 1, before (0 = none)
//! varint  after length + 1, after (0 = none)
//! ```

use bytes::Bytes;

use crate::change::{ChangeKind, ChangeRecord};
use crate::codec::varint::{self, DecodeResult, Reader};
use crate::Seq;

pub(crate) fn encode_record(out: &mut Vec<u8>, record: &ChangeRecord) {
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&record.ts_micros.to_le_bytes());
    out.push(record.kind.tag());
    varint::put_u64(out, u64::from(record.batch_index));
    varint::put_u64(out, u64::from(record.batch_size));
    varint::put_u64(out, record.key.len() as u64);
    out.extend_from_slice(&record.key);
    varint::put_opt_bytes(out, record.before.as_deref());
    varint::put_opt_bytes(out, record.after.as_deref());
}

/// Decodes the record at the reader's position. `block` is the verified
/// block the reader reads from; images are sliced from it without copying.
pub(crate) fn decode_record(block: &Bytes, r: &mut Reader<'_>) -> DecodeResult<ChangeRecord> {
    let seq = r.u64_le("seq")?;
    let ts_micros = r.u64_le("timestamp")? as i64;
    let kind = ChangeKind::from_tag(r.u8("kind")?).ok_or("unknown change kind")?;
    let batch_index = u32::try_from(r.varint("batch index")?).map_err(|_| "batch index")?;
    let batch_size = u32::try_from(r.varint("batch size")?).map_err(|_| "batch size")?;
    if batch_index >= batch_size {
        return Err("batch index out of range");
    }
    let key = block.slice_ref(r.len_prefixed("key")?);
    let before = r.opt_bytes("before-image")?.map(|b| block.slice_ref(b));
    let after = r.opt_bytes("after-image")?.map(|b| block.slice_ref(b));
    let shape_ok = kind.fits_images(before.is_some(), after.is_some());
    if !shape_ok || key.len() < 4 {
        return Err("record images do not match its kind");
    }
    Ok(ChangeRecord {
        seq,
        ts_micros,
        kind,
        key,
        before,
        after,
        batch_index,
        batch_size,
    })
}

/// Reads past one record, returning its seq and key without building it.
pub(crate) fn skip_record<'a>(r: &mut Reader<'a>) -> DecodeResult<(Seq, &'a [u8])> {
    let seq = r.u64_le("seq")?;
    r.bytes(9, "timestamp and kind")?;
    r.varint("batch index")?;
    r.varint("batch size")?;
    let key = r.len_prefixed("key")?;
    r.opt_bytes("before-image")?;
    r.opt_bytes("after-image")?;
    Ok((seq, key))
}

/// Appends the block trailer: entry count and crc32c of everything before.
pub(crate) fn seal(block: &mut Vec<u8>, entries: u32) {
    block.extend_from_slice(&entries.to_le_bytes());
    let crc = crc32c::crc32c(block);
    block.extend_from_slice(&crc.to_le_bytes());
}

/// Verifies a sealed block; returns its payload and entry count.
pub(crate) fn open(block: &[u8]) -> Option<(&[u8], u32)> {
    let body_len = block.len().checked_sub(4)?;
    let crc = u32::from_le_bytes(block[body_len..].try_into().ok()?);
    if crc32c::crc32c(&block[..body_len]) != crc {
        return None;
    }
    let payload_len = body_len.checked_sub(4)?;
    let entries = u32::from_le_bytes(block[payload_len..body_len].try_into().ok()?);
    Some((&block[..payload_len], entries))
}
