//! What a data directory must hold before the engine trusts it.
//!
//! The metadata files (`MANIFEST`, `catalog.json`, `consumers.json`) are
//! created together when a directory is first opened, before anything
//! else is written to it. From then on each of them must exist: a
//! directory that holds data but lacks one of them is damaged (a file
//! deleted by hand, a partial restore, a bad copy), and guessing would
//! be worse than stopping. Without its manifest the engine would take
//! the directory for a new one and its table files for crash leftovers;
//! without its catalog a new table would take an old table's id and
//! show the old table's rows. So start-up refuses with an error naming
//! the missing file and the data that proves the directory is not new,
//! and changes nothing.
//!
//! Architecture invariant: this check runs before start-up writes,
//! truncates or deletes anything in the directory.

use std::fs;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CATALOG_FILE};
use crate::consumers::{Consumers, CONSUMERS_FILE};
use crate::error::{Corruption, Error, Result};
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::sst::SST_DIR;
use crate::wal::format::SEGMENT_HEADER_LEN;
use crate::wal::WAL_DIR;

/// What was found in the directory besides the metadata files.
#[derive(Debug, Default)]
struct Contents {
    manifest: bool,
    catalog: bool,
    consumers: bool,
    /// Table files, by path.
    table_files: Vec<PathBuf>,
    /// WAL segments holding at least one byte past their header.
    wal_with_records: Vec<PathBuf>,
}

impl Contents {
    fn read(dir: &Path) -> Result<Contents> {
        let exists = |name: &str| -> Result<bool> {
            let path = dir.join(name);
            path.try_exists().map_err(Error::io(&path))
        };
        Ok(Contents {
            manifest: exists(MANIFEST_FILE)?,
            catalog: exists(CATALOG_FILE)?,
            consumers: exists(CONSUMERS_FILE)?,
            table_files: files_in(&dir.join(SST_DIR), |_| Ok(true))?,
            wal_with_records: files_in(&dir.join(WAL_DIR), |path| {
                let len = fs::metadata(path).map_err(Error::io(path))?.len();
                // Zero fill ahead of the write position is not a record.
                Ok(len > SEGMENT_HEADER_LEN
                    && fs::read(path)
                        .map_err(Error::io(path))?
                        .iter()
                        .skip(SEGMENT_HEADER_LEN as usize)
                        .any(|&b| b != 0))
            })?,
        })
    }

    /// Why the directory cannot be new, if it cannot.
    fn evidence(&self, manifest: Option<&Manifest>) -> Option<String> {
        let mut found = Vec::new();
        if let Some(manifest) = manifest {
            if manifest.flushed_seq > 0 || manifest.levels.iter().any(|l| !l.is_empty()) {
                found.push(format!(
                    "the manifest records data up to seq {}",
                    manifest.flushed_seq
                ));
            }
        }
        if let Some(file) = self.table_files.first() {
            found.push(format!(
                "{} table file(s) such as {}",
                self.table_files.len(),
                file.display()
            ));
        }
        if let Some(file) = self.wal_with_records.first() {
            found.push(format!("WAL records in {}", file.display()));
        }
        (!found.is_empty()).then(|| found.join("; "))
    }
}

fn files_in(dir: &Path, keep: impl Fn(&Path) -> Result<bool>) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.is_file() && keep(&path)? {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn missing(dir: &Path, file: &str, evidence: String) -> Error {
    Error::Corruption {
        file: dir.join(file),
        offset: 0,
        problem: Corruption::MissingMetadata { evidence },
    }
}

/// Checks that the directory's metadata is complete, creating it for a
/// new directory, and returns the manifest. Refuses (changing nothing) a
/// directory that holds data but lacks a metadata file.
pub(crate) fn check_metadata(dir: &Path) -> Result<Manifest> {
    let contents = Contents::read(dir)?;
    let manifest = if contents.manifest {
        Manifest::load(dir)?
    } else {
        // Any other metadata file means the directory was initialised,
        // which writes the manifest first.
        let others: Vec<&str> = [
            (contents.catalog, CATALOG_FILE),
            (contents.consumers, CONSUMERS_FILE),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
        let evidence = match (contents.evidence(None), others.is_empty()) {
            (evidence, true) => evidence,
            (None, false) => Some(format!("{} exist", others.join(" and "))),
            (Some(e), false) => Some(format!("{e}; {} exist", others.join(" and "))),
        };
        if let Some(evidence) = evidence {
            return Err(missing(dir, MANIFEST_FILE, evidence));
        }
        let manifest = Manifest::default();
        manifest.commit(dir)?;
        manifest
    };
    let evidence = contents.evidence(Some(&manifest));
    if !contents.catalog {
        if let Some(evidence) = evidence.clone() {
            return Err(missing(dir, CATALOG_FILE, evidence));
        }
        Catalog::initialise(dir)?;
    }
    if !contents.consumers {
        if let Some(evidence) = evidence {
            return Err(missing(dir, CONSUMERS_FILE, evidence));
        }
        Consumers::initialise(dir)?;
    }
    Ok(manifest)
}
