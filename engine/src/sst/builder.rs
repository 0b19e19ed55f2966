//! Writes an SSTable from records given in (key asc, seq desc) order.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::change::ChangeRecord;
use crate::codec::varint;
use crate::sst::block;
use crate::sst::bloom::BloomBuilder;
use crate::sst::reader::Footer;
use crate::Seq;

/// Data blocks are cut once they reach this size.
pub(crate) const BLOCK_BYTES: usize = 16 << 10;
/// Log blocks (the seq-ordered copy) are cut once they reach this size.
pub(crate) const LOG_BLOCK_BYTES: usize = 64 << 10;
const BLOOM_BITS_PER_KEY: usize = 10;
/// Records copied into the seq-ordered log blocks per sweep over the data
/// blocks: what a builder holds of the data at most (beyond one record),
/// for files up to eight times as large; larger files take an eighth of
/// their data per sweep. Small in unit tests, so that they sweep many
/// times.
const GATHER_BYTES: usize = if cfg!(test) { 48 << 10 } else { 8 << 20 };
/// How much of the data blocks one read takes while gathering.
const GATHER_READ_BYTES: usize = if cfg!(test) { 8 << 10 } else { 1 << 20 };

/// What a finished SSTable holds, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SstMeta {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub entries: u64,
    pub min_seq: Seq,
    pub max_seq: Seq,
    pub smallest_key: Bytes,
    pub largest_key: Bytes,
}

struct BlockHandle {
    offset: u64,
    len: u32,
    last_key: Bytes,
    last_seq: Seq,
}

pub(crate) struct SstBuilder {
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    block: Vec<u8>,
    block_entries: u32,
    handles: Vec<BlockHandle>,
    /// Where each record's encoding lies in the file: (seq, file offset,
    /// length), sorted by seq at `finish`, which copies the records from
    /// the data blocks into the seq-ordered log blocks. A record is encoded
    /// the same in both, so the builder keeps no copy of the data in
    /// memory: a file's records can be many times the memory the engine
    /// means to use (compaction cuts files between keys only, so one key's
    /// history may make a file larger than 4 GiB: offsets are 64-bit).
    log_index: Vec<(Seq, u64, u32)>,
    bloom: BloomBuilder,
    last: Option<(Bytes, Seq)>,
    first_key: Option<Bytes>,
    min_seq: Seq,
    max_seq: Seq,
}

impl SstBuilder {
    pub(crate) fn create(path: &Path) -> io::Result<SstBuilder> {
        // Read too: `finish` reads the data blocks back.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(SstBuilder {
            path: path.to_owned(),
            out: BufWriter::with_capacity(256 << 10, file),
            offset: 0,
            block: Vec::with_capacity(BLOCK_BYTES + 1024),
            block_entries: 0,
            handles: Vec::new(),
            log_index: Vec::new(),
            bloom: BloomBuilder::new(BLOOM_BITS_PER_KEY),
            last: None,
            first_key: None,
            min_seq: Seq::MAX,
            max_seq: 0,
        })
    }

    pub(crate) fn add(&mut self, record: &ChangeRecord) -> io::Result<()> {
        if let Some((key, seq)) = &self.last {
            let ordered = (*key < record.key) || (*key == record.key && *seq > record.seq);
            assert!(
                ordered,
                "SSTable records must be added in (key asc, seq desc) order"
            );
            if *key != record.key {
                self.bloom.add(&record.key);
            }
        } else {
            self.bloom.add(&record.key);
            self.first_key = Some(record.key.clone());
        }
        let start = self.block.len();
        block::encode_record(&mut self.block, record);
        let encoded = &self.block[start..];
        // One record is at most two rows and a key, far below 4 GiB.
        let len = u32::try_from(encoded.len()).expect("a record is smaller than 4 GiB");
        // The block is written at `offset`, as is, with its trailer after
        // the records (see `block::seal`).
        self.log_index
            .push((record.seq, self.offset + start as u64, len));
        self.block_entries += 1;
        self.min_seq = self.min_seq.min(record.seq);
        self.max_seq = self.max_seq.max(record.seq);
        self.last = Some((record.key.clone(), record.seq));
        if self.block.len() >= BLOCK_BYTES {
            self.finish_block()?;
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Bytes written so far, for cutting compaction outputs by size.
    pub(crate) fn approx_bytes(&self) -> u64 {
        self.offset + self.block.len() as u64
    }

    fn write_section(&mut self, bytes: &[u8]) -> io::Result<(u64, u32)> {
        let offset = self.offset;
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok((offset, bytes.len() as u32))
    }

    fn finish_block(&mut self) -> io::Result<()> {
        if self.block_entries == 0 {
            return Ok(());
        }
        let mut block = std::mem::take(&mut self.block);
        block::seal(&mut block, self.block_entries);
        let (offset, len) = self.write_section(&block)?;
        let (last_key, last_seq) = self.last.clone().expect("a block has a last record");
        self.handles.push(BlockHandle {
            offset,
            len,
            last_key,
            last_seq,
        });
        block.clear();
        self.block = block;
        self.block_entries = 0;
        Ok(())
    }

    /// Writes the index sections and the footer, fsyncs the file. The
    /// caller makes the directory entry durable.
    pub(crate) fn finish(mut self) -> io::Result<SstMeta> {
        assert!(!self.is_empty(), "an SSTable holds at least one record");
        self.finish_block()?;

        // The seq-ordered copy: the change scan reads these blocks
        // sequentially instead of jumping between key-ordered blocks. The
        // records are read back from the data blocks just written (still
        // in the page cache), a window of `GATHER_BYTES` at a time, each
        // window in one sweep over the file in large reads.
        self.out.flush()?;
        let data_end = self.offset;
        self.log_index.sort_unstable_by_key(|&(seq, _, _)| seq);
        let log_index = std::mem::take(&mut self.log_index);
        let mut seq_dir = Vec::new();
        let mut seq_dir_entries = 0u32;
        let mut buf = Vec::with_capacity(LOG_BLOCK_BYTES + 1024);
        let mut first_seq = None;
        let mut count = 0u32;
        let mut gathered = Vec::new();
        let mut chunk = Vec::new();
        // At most eight sweeps, whatever the file's size: a window's
        // records (consecutive seqs) may lie anywhere in the file, so each
        // sweep may read all of it.
        let window_limit = GATHER_BYTES.max(usize::try_from(data_end / 8).unwrap_or(usize::MAX));
        let mut window_start = 0;
        while window_start < log_index.len() {
            let mut window_bytes = 0usize;
            let window_end = window_start
                + log_index[window_start..]
                    .iter()
                    .take_while(|&&(_, _, len)| {
                        let fits = window_bytes == 0 || window_bytes + len as usize <= window_limit;
                        if fits {
                            window_bytes += len as usize;
                        }
                        fits
                    })
                    .count();
            let window = &log_index[window_start..window_end];
            gather(
                self.out.get_ref(),
                data_end,
                window,
                &mut gathered,
                &mut chunk,
            )?;
            let mut at = 0;
            for (i, &(seq, _, len)) in window.iter().enumerate() {
                first_seq.get_or_insert(seq);
                buf.extend_from_slice(&gathered[at..at + len as usize]);
                at += len as usize;
                count += 1;
                let last = window_end == log_index.len() && i + 1 == window.len();
                if buf.len() >= LOG_BLOCK_BYTES || last {
                    block::seal(&mut buf, count);
                    let (offset, len) = self.write_section(&buf)?;
                    seq_dir.extend_from_slice(&first_seq.take().expect("set above").to_le_bytes());
                    varint::put_u64(&mut seq_dir, offset);
                    varint::put_u64(&mut seq_dir, u64::from(len));
                    seq_dir_entries += 1;
                    buf.clear();
                    count = 0;
                }
            }
            window_start = window_end;
        }
        block::seal(&mut seq_dir, seq_dir_entries);

        let bloom = std::mem::replace(&mut self.bloom, BloomBuilder::new(0));
        let mut bloom = bloom.finish();
        block::seal(&mut bloom, 0);
        let bloom_handle = self.write_section(&bloom)?;

        let mut index = Vec::new();
        for handle in &self.handles {
            varint::put_u64(&mut index, handle.offset);
            varint::put_u64(&mut index, u64::from(handle.len));
            varint::put_u64(&mut index, handle.last_key.len() as u64);
            index.extend_from_slice(&handle.last_key);
            index.extend_from_slice(&handle.last_seq.to_le_bytes());
        }
        block::seal(&mut index, self.handles.len() as u32);
        let index_handle = self.write_section(&index)?;
        let seq_dir_handle = self.write_section(&seq_dir)?;

        let footer = Footer {
            key_index: index_handle,
            seq_dir: seq_dir_handle,
            bloom: bloom_handle,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            entries: log_index.len() as u64,
        };
        let footer_bytes = footer.encode();
        self.write_section(&footer_bytes)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(SstMeta {
            path: self.path,
            file_bytes: self.offset,
            entries: footer.entries,
            min_seq: footer.min_seq,
            max_seq: footer.max_seq,
            smallest_key: self.first_key.expect("not empty"),
            largest_key: self.last.expect("not empty").0,
        })
    }
}

/// Sets `out` to the bytes of `entries` ((seq, offset, length) in the
/// file, flushed below `data_end`), in the order given. The file is read in
/// offset order, `GATHER_READ_BYTES` at a time, skipping stretches that
/// hold none of the entries.
fn gather(
    file: &File,
    data_end: u64,
    entries: &[(Seq, u64, u32)],
    out: &mut Vec<u8>,
    chunk: &mut Vec<u8>,
) -> io::Result<()> {
    // (offset, length, position in `out`), in file order.
    let mut places: Vec<(u64, usize, usize)> = Vec::with_capacity(entries.len());
    let mut total = 0;
    for &(_, offset, len) in entries {
        places.push((offset, len as usize, total));
        total += len as usize;
    }
    places.sort_unstable_by_key(|&(offset, _, _)| offset);
    out.clear();
    out.resize(total, 0);
    // The file's bytes `chunk_start..chunk_start + chunk.len()`.
    let mut chunk_start = 0u64;
    chunk.clear();
    for (offset, len, at) in places {
        let end = offset + len as u64;
        if offset < chunk_start || end > chunk_start + chunk.len() as u64 {
            let want = (len.max(GATHER_READ_BYTES) as u64).min(data_end - offset);
            chunk.resize(want as usize, 0);
            file.read_exact_at(chunk, offset)?;
            chunk_start = offset;
        }
        let from = (offset - chunk_start) as usize;
        out[at..at + len].copy_from_slice(&chunk[from..from + len]);
    }
    Ok(())
}
