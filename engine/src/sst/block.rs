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
    for image in [&record.before, &record.after] {
        match image {
            None => out.push(0),
            Some(bytes) => {
                varint::put_u64(out, bytes.len() as u64 + 1);
                out.extend_from_slice(bytes);
            }
        }
    }
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
    let before = image(block, r, "before-image")?;
    let after = image(block, r, "after-image")?;
    let shape_ok = match kind {
        ChangeKind::Insert => before.is_none() && after.is_some(),
        ChangeKind::Update => before.is_some() && after.is_some(),
        ChangeKind::Delete => before.is_some() && after.is_none(),
    };
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

fn image(block: &Bytes, r: &mut Reader<'_>, what: &'static str) -> DecodeResult<Option<Bytes>> {
    match r.varint(what)? {
        0 => Ok(None),
        n => {
            let len = usize::try_from(n - 1).map_err(|_| what)?;
            Ok(Some(block.slice_ref(r.bytes(len, what)?)))
        }
    }
}

/// Reads past one record, returning its seq and key without building it.
pub(crate) fn skip_record<'a>(r: &mut Reader<'a>) -> DecodeResult<(Seq, &'a [u8])> {
    let seq = r.u64_le("seq")?;
    r.bytes(9, "timestamp and kind")?;
    r.varint("batch index")?;
    r.varint("batch size")?;
    let key = r.len_prefixed("key")?;
    for what in ["before-image", "after-image"] {
        let n = r.varint(what)?;
        if n > 0 {
            r.bytes(usize::try_from(n - 1).map_err(|_| what)?, what)?;
        }
    }
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
