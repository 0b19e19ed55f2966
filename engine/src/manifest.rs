//! The manifest: which SSTables make up the flushed levels, and up to which
//! seq the WAL's contents are in them.
//!
//! Stored as `MANIFEST` (JSON) and replaced atomically (write, fsync,
//! rename, fsync dir) on every change, so a crash leaves either the old or
//! the new version.
//!
//! Architecture invariant: a file is referenced by the manifest only after
//! it is fully written and fsynced; a WAL segment is deleted only after a
//! committed manifest covers every seq in it (`flushed_seq`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Corruption, Error, Result};
use crate::fsutil;
use crate::retention::Checkpoint;
use crate::Seq;

pub(crate) const MANIFEST_FILE: &str = "MANIFEST";
const MANIFEST_FORMAT_VERSION: u32 = 1;

/// One SSTable as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    pub id: u64,
    pub min_seq: Seq,
    pub max_seq: Seq,
    pub entries: u64,
    pub file_bytes: u64,
    pub smallest_key: Vec<u8>,
    pub largest_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    format_version: u32,
    /// Id for the next SSTable.
    pub next_file_id: u64,
    /// Every seq <= this is in the SSTables below; the WAL is replayed
    /// from the next one.
    pub flushed_seq: Seq,
    /// Every change with seq > low_water is retained; reads and change
    /// scans below it are refused. Never decreases.
    pub low_water: Seq,
    /// One per flush, newest last: what the retention window is measured
    /// against.
    pub checkpoints: Vec<Checkpoint>,
    /// Bytes of table files written by flushes, in total.
    pub flushed_bytes: u64,
    /// `levels[0]` is L0: files flushed from memtables, oldest first, with
    /// disjoint seq ranges. Deeper levels are sorted by key, files within a
    /// level do not overlap, and every version in a level is newer than
    /// every version of the same key below it.
    pub levels: Vec<Vec<FileEntry>>,
}

impl Default for Manifest {
    fn default() -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            next_file_id: 1,
            flushed_seq: 0,
            low_water: 0,
            checkpoints: Vec::new(),
            flushed_bytes: 0,
            levels: vec![Vec::new()],
        }
    }
}

impl Manifest {
    pub(crate) fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(MANIFEST_FILE)
    }

    pub(crate) fn load(data_dir: &Path) -> Result<Manifest> {
        let path = Self::path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) => return Err(Error::Io { path, source }),
        };
        let corrupt = |problem| Error::Corruption {
            file: path.clone(),
            offset: 0,
            problem,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(Corruption::BadManifest(e.to_string())))?;
        if manifest.format_version != MANIFEST_FORMAT_VERSION {
            return Err(corrupt(Corruption::UnsupportedVersion {
                found: manifest.format_version,
                supported: MANIFEST_FORMAT_VERSION,
            }));
        }
        Ok(manifest)
    }

    pub(crate) fn commit(&self, data_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        fsutil::write_atomically(&Self::path(data_dir), &bytes)
    }
}
