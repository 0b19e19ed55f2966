//! SSTables: immutable files of change records.
//!
//! ```text
//! data blocks        records in (key asc, seq desc) order, each block
//!                    followed by u32 entry count and u32 crc32c
//! seq index blocks   fixed 16-byte entries (seq, data block, offset in
//!                    block) sorted by seq, same block trailer
//! bloom filter       over user keys, with crc32c
//! key index          per data block: offset, length, last (key, seq)
//! seq directory      per seq index block: first seq, offset, length
//! footer             fixed size: section offsets, [min_seq, max_seq],
//!                    entry count, format version, crc32c, magic
//! ```
//!
//! Every version of a key is kept; a delete is stored as its tombstone
//! record with the captured before-image. Reads go through the key index
//! and the bloom filter; the change scan reads the file in seq order through
//! the seq index without loading or sorting the file.
//!
//! Architecture invariant: every byte read from an SSTable is covered by a
//! checksum verified before use; a mismatch is reported as corruption with
//! the file and the offset of the damaged section.

pub(crate) mod block;
pub(crate) mod bloom;
pub(crate) mod builder;
pub(crate) mod reader;

use std::path::{Path, PathBuf};

pub(crate) const SST_DIR: &str = "sst";

pub(crate) fn sst_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:010}.sst"))
}

#[cfg(test)]
mod tests;
