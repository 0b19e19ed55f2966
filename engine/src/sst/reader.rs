//! Reads SSTables: footer and index sections at open, data blocks on demand.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::change::ChangeRecord;
use crate::codec::varint::Reader;
use crate::error::{Corruption, Error, Result};
use crate::sst::cache::BlockCache;
use crate::sst::{block, bloom};
use crate::Seq;

pub(crate) const FOOTER_LEN: usize = 76;
const MAGIC: &[u8; 8] = b"TFSST001";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub key_index: (u64, u32),
    pub seq_dir: (u64, u32),
    pub bloom: (u64, u32),
    pub min_seq: Seq,
    pub max_seq: Seq,
    pub entries: u64,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        for (offset, len) in [self.key_index, self.seq_dir, self.bloom] {
            put(&offset.to_le_bytes());
            put(&len.to_le_bytes());
        }
        put(&self.min_seq.to_le_bytes());
        put(&self.max_seq.to_le_bytes());
        put(&self.entries.to_le_bytes());
        put(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32c::crc32c(&out[..64]);
        out[64..68].copy_from_slice(&crc.to_le_bytes());
        out[68..76].copy_from_slice(MAGIC);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Footer, Corruption> {
        if bytes.len() != FOOTER_LEN || &bytes[68..76] != MAGIC {
            return Err(Corruption::BadMagic {
                expected: "SSTable",
            });
        }
        if crc32c::crc32c(&bytes[..64])
            != u32::from_le_bytes(bytes[64..68].try_into().expect("4 bytes"))
        {
            return Err(Corruption::BlockChecksum {
                section: "SSTable footer",
            });
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let version = u32_at(60);
        if version != FORMAT_VERSION {
            return Err(Corruption::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Footer {
            key_index: (u64_at(0), u32_at(8)),
            seq_dir: (u64_at(12), u32_at(20)),
            bloom: (u64_at(24), u32_at(32)),
            min_seq: u64_at(36),
            max_seq: u64_at(44),
            entries: u64_at(52),
        })
    }
}

#[derive(Debug)]
struct BlockHandle {
    offset: u64,
    len: u32,
    last_key: Bytes,
    last_seq: Seq,
}

#[derive(Debug)]
struct SeqDirEntry {
    first_seq: Seq,
    offset: u64,
    len: u32,
}

/// An open SSTable. Index sections are verified and held in memory; data
/// and seq index blocks are read and verified on demand.
///
/// The `Arc<SstReader>` is the pin: a file replaced by flush or compaction
/// is marked obsolete, and deleted when its last reader lets go.
#[derive(Debug)]
pub(crate) struct SstReader {
    path: PathBuf,
    /// The engine's block cache and this file's id in it.
    cache: Option<(u64, Arc<BlockCache>)>,
    obsolete: AtomicBool,
    file: File,
    footer: Footer,
    blocks: Vec<BlockHandle>,
    seq_dir: Vec<SeqDirEntry>,
    bloom: Bytes,
}

/// (key asc, seq desc) comparison of a version against a probe.
fn version_before(key: &[u8], seq: Seq, probe_key: &[u8], probe_seq: Seq) -> bool {
    key < probe_key || (key == probe_key && seq > probe_seq)
}

impl SstReader {
    pub(crate) fn open(path: &Path, cache: Option<(u64, Arc<BlockCache>)>) -> Result<SstReader> {
        let file = File::open(path).map_err(Error::io(path))?;
        let len = file.metadata().map_err(Error::io(path))?.len();
        let corrupt = |offset, problem| Error::Corruption {
            file: path.to_owned(),
            offset,
            problem,
        };
        if len < FOOTER_LEN as u64 {
            return Err(corrupt(
                0,
                Corruption::BadFooter("file is shorter than a footer"),
            ));
        }
        let footer_at = len - FOOTER_LEN as u64;
        let mut footer_bytes = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer_bytes, footer_at)
            .map_err(Error::io(path))?;
        let footer = Footer::decode(&footer_bytes).map_err(|p| corrupt(footer_at, p))?;
        for (offset, section_len) in [footer.key_index, footer.seq_dir, footer.bloom] {
            if offset + u64::from(section_len) > footer_at {
                return Err(corrupt(
                    footer_at,
                    Corruption::BadFooter("a section lies outside the file"),
                ));
            }
        }
        let mut reader = SstReader {
            path: path.to_owned(),
            cache,
            obsolete: AtomicBool::new(false),
            file,
            footer,
            blocks: Vec::new(),
            seq_dir: Vec::new(),
            bloom: Bytes::new(),
        };
        let (bloom, _) = reader.read_section(footer.bloom, "bloom filter")?;
        reader.bloom = bloom;

        let (index, count) = reader.read_section(footer.key_index, "key index")?;
        let bad_index = |what| {
            corrupt(
                footer.key_index.0,
                Corruption::BadBlock {
                    section: "key index",
                    what,
                },
            )
        };
        let mut r = Reader::new(&index);
        for _ in 0..count {
            let offset = r.varint("block offset").map_err(bad_index)?;
            let len = u32::try_from(r.varint("block length").map_err(bad_index)?)
                .map_err(|_| bad_index("block length"))?;
            let last_key = index.slice_ref(r.len_prefixed("last key").map_err(bad_index)?);
            let last_seq = r.u64_le("last seq").map_err(bad_index)?;
            if offset + u64::from(len) > footer_at {
                return Err(bad_index("block outside the file"));
            }
            reader.blocks.push(BlockHandle {
                offset,
                len,
                last_key,
                last_seq,
            });
        }

        let (dir, count) = reader.read_section(footer.seq_dir, "seq directory")?;
        let bad_dir = |what| {
            corrupt(
                footer.seq_dir.0,
                Corruption::BadBlock {
                    section: "seq directory",
                    what,
                },
            )
        };
        let mut r = Reader::new(&dir);
        for _ in 0..count {
            let first_seq = r.u64_le("first seq").map_err(bad_dir)?;
            let offset = r.varint("offset").map_err(bad_dir)?;
            let len = u32::try_from(r.varint("length").map_err(bad_dir)?)
                .map_err(|_| bad_dir("length"))?;
            if offset + u64::from(len) > footer_at {
                return Err(bad_dir("log block outside the file"));
            }
            reader.seq_dir.push(SeqDirEntry {
                first_seq,
                offset,
                len,
            });
        }
        Ok(reader)
    }

    /// Offset of the first log block (tests damage it on purpose).
    #[cfg(test)]
    pub(crate) fn first_log_block_offset(&self) -> u64 {
        self.seq_dir[0].offset
    }

    /// Deletes the file once no reader holds it any more.
    #[allow(dead_code)] // compaction replaces files through this (issue [2/6])
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    pub(crate) fn min_seq(&self) -> Seq {
        self.footer.min_seq
    }

    pub(crate) fn max_seq(&self) -> Seq {
        self.footer.max_seq
    }

    pub(crate) fn entries(&self) -> u64 {
        self.footer.entries
    }

    /// Reads and verifies a sealed section; returns its payload and count.
    fn read_section(
        &self,
        (offset, len): (u64, u32),
        section: &'static str,
    ) -> Result<(Bytes, u32)> {
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(Error::io(&self.path))?;
        let Some((payload, count)) = block::open(&buf) else {
            return Err(Error::Corruption {
                file: self.path.clone(),
                offset,
                problem: Corruption::BlockChecksum { section },
            });
        };
        let payload_len = payload.len();
        buf.truncate(payload_len);
        Ok((Bytes::from(buf), count))
    }

    /// A data block, from the cache or the file; a block read from the
    /// file enters the cache when `fill_cache` (compaction reads every
    /// block once and would evict what readers use).
    fn read_block(&self, index: usize, fill_cache: bool) -> Result<Bytes> {
        let handle = &self.blocks[index];
        let Some((id, cache)) = &self.cache else {
            return Ok(self
                .read_section((handle.offset, handle.len), "data block")?
                .0);
        };
        if let Some(block) = cache.get((*id, handle.offset)) {
            return Ok(block);
        }
        let block = self
            .read_section((handle.offset, handle.len), "data block")?
            .0;
        if fill_cache {
            cache.insert((*id, handle.offset), block.clone());
        }
        Ok(block)
    }

    fn bad_record(&self, block: usize, what: &'static str) -> Error {
        Error::Corruption {
            file: self.path.clone(),
            offset: self.blocks[block].offset,
            problem: Corruption::BadBlock {
                section: "data block",
                what,
            },
        }
    }

    /// The newest version of `key` with seq <= `at`, tombstones included.
    pub(crate) fn get(&self, key: &[u8], at: Seq) -> Result<Option<ChangeRecord>> {
        if at < self.footer.min_seq || !bloom::may_contain(&self.bloom, key) {
            return Ok(None);
        }
        let first = self
            .blocks
            .partition_point(|b| version_before(&b.last_key, b.last_seq, key, at));
        for index in first..self.blocks.len() {
            let block = self.read_block(index, true)?;
            let mut r = Reader::new(&block);
            while !r.is_empty() {
                // Only the key and seq are read until the version is found.
                let start = block.len() - r.remaining();
                let (seq, found) =
                    block::skip_record(&mut r).map_err(|what| self.bad_record(index, what))?;
                if version_before(found, seq, key, at) {
                    continue;
                }
                if found != key {
                    return Ok(None);
                }
                let record = block::decode_record(&block, &mut Reader::new(&block[start..]))
                    .map_err(|what| self.bad_record(index, what))?;
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Records with key in `[start, end)`, in (key asc, seq desc) order.
    pub(crate) fn range(self: &Arc<Self>, start: Bytes, end: Option<Bytes>) -> RangeIter {
        let block = self.blocks.partition_point(|b| b.last_key < start);
        RangeIter {
            sst: self.clone(),
            next_block: block,
            current: None,
            start,
            end,
            fill_cache: true,
        }
    }

    /// Every record, as `range` would give them, without filling the block
    /// cache: for compaction.
    pub(crate) fn scan_uncached(self: &Arc<Self>) -> RangeIter {
        RangeIter {
            fill_cache: false,
            ..self.range(Bytes::new(), None)
        }
    }

    /// Records with seq in `(since, upto]`, in seq order.
    pub(crate) fn seq_range(self: &Arc<Self>, since: Seq, upto: Seq) -> SeqIter {
        let dir = self
            .seq_dir
            .partition_point(|d| d.first_seq <= since)
            .saturating_sub(1);
        SeqIter {
            sst: self.clone(),
            next_dir: dir,
            block: Bytes::new(),
            pos: 0,
            since,
            upto,
        }
    }
}

/// A data block being read: its bytes and the read position.
struct OpenBlock {
    index: usize,
    bytes: Bytes,
    pos: usize,
}

pub(crate) struct RangeIter {
    sst: Arc<SstReader>,
    next_block: usize,
    current: Option<OpenBlock>,
    start: Bytes,
    end: Option<Bytes>,
    fill_cache: bool,
}

impl Iterator for RangeIter {
    type Item = Result<ChangeRecord>;

    fn next(&mut self) -> Option<Result<ChangeRecord>> {
        loop {
            if self.current.as_ref().is_none_or(|b| b.pos == b.bytes.len()) {
                if self.next_block >= self.sst.blocks.len() {
                    return None;
                }
                let index = self.next_block;
                self.next_block += 1;
                match self.sst.read_block(index, self.fill_cache) {
                    Ok(bytes) => {
                        self.current = Some(OpenBlock {
                            index,
                            bytes,
                            pos: 0,
                        })
                    }
                    Err(e) => {
                        self.next_block = self.sst.blocks.len();
                        return Some(Err(e));
                    }
                }
            }
            let block = self.current.as_mut().expect("a block is open");
            let mut r = Reader::new(&block.bytes[block.pos..]);
            let record = match block::decode_record(&block.bytes, &mut r) {
                Ok(record) => record,
                Err(what) => {
                    self.next_block = self.sst.blocks.len();
                    let index = block.index;
                    self.current = None;
                    return Some(Err(self.sst.bad_record(index, what)));
                }
            };
            block.pos = block.bytes.len() - r.remaining();
            if record.key < self.start {
                continue;
            }
            if self.end.as_ref().is_some_and(|end| record.key >= *end) {
                self.next_block = self.sst.blocks.len();
                self.current = None;
                return None;
            }
            return Some(Ok(record));
        }
    }
}

pub(crate) struct SeqIter {
    sst: Arc<SstReader>,
    next_dir: usize,
    /// The current log block and the read position in it.
    block: Bytes,
    pos: usize,
    since: Seq,
    upto: Seq,
}

impl SeqIter {
    fn step(&mut self) -> Result<Option<ChangeRecord>> {
        loop {
            if self.pos == self.block.len() {
                let Some(dir) = self.sst.seq_dir.get(self.next_dir) else {
                    return Ok(None);
                };
                if dir.first_seq > self.upto {
                    return Ok(None);
                }
                self.next_dir += 1;
                self.block = self.sst.read_section((dir.offset, dir.len), "log block")?.0;
                self.pos = 0;
            }
            let offset = self.sst.seq_dir[self.next_dir - 1].offset;
            let mut r = Reader::new(&self.block[self.pos..]);
            let record =
                block::decode_record(&self.block, &mut r).map_err(|what| Error::Corruption {
                    file: self.sst.path.clone(),
                    offset,
                    problem: Corruption::BadBlock {
                        section: "log block",
                        what,
                    },
                })?;
            self.pos = self.block.len() - r.remaining();
            if record.seq <= self.since {
                continue;
            }
            if record.seq > self.upto {
                self.next_dir = self.sst.seq_dir.len();
                self.block = Bytes::new();
                self.pos = 0;
                return Ok(None);
            }
            return Ok(Some(record));
        }
    }
}

impl Iterator for SeqIter {
    type Item = Result<ChangeRecord>;

    fn next(&mut self) -> Option<Result<ChangeRecord>> {
        match self.step() {
            Ok(record) => record.map(Ok),
            Err(e) => {
                self.next_dir = self.sst.seq_dir.len();
                self.block = Bytes::new();
                self.pos = 0;
                Some(Err(e))
            }
        }
    }
}

impl Drop for SstReader {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(%error, file = %self.path.display(), "could not delete an obsolete table file");
            }
        }
    }
}
