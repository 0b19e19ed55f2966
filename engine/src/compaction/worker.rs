//! Performing a compaction: merge the inputs by key, keep what the history
//! filter keeps, write size-bounded output files.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::compaction::gc::HistoryFilter;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::FileEntry;
use crate::read::merge::{MergeIter, VersionSource};
use crate::sst::builder::{SstBuilder, SstMeta};
use crate::sst::cache::BlockCache;
use crate::sst::reader::SstReader;
use crate::sst::sst_path;
use crate::state::TableFile;

pub(crate) struct Output {
    pub entry: FileEntry,
    pub file: Arc<TableFile>,
}

/// Opens a finished table file and describes it for the manifest and state.
pub(crate) fn install(id: u64, meta: &SstMeta, cache: &Arc<BlockCache>) -> Result<Output> {
    let reader = Arc::new(SstReader::open(&meta.path, Some((id, cache.clone())))?);
    Ok(Output {
        entry: FileEntry {
            id,
            min_seq: meta.min_seq,
            max_seq: meta.max_seq,
            entries: meta.entries,
            file_bytes: meta.file_bytes,
            smallest_key: meta.smallest_key.to_vec(),
            largest_key: meta.largest_key.to_vec(),
        },
        file: Arc::new(TableFile {
            id,
            reader,
            smallest: meta.smallest_key.clone(),
            largest: meta.largest_key.clone(),
            bytes: meta.file_bytes,
        }),
    })
}

/// Writes the merged, filtered inputs as files of about `target_bytes`,
/// cutting only between keys so files of a level never share a key. Ids
/// come from `next_id`. On error, files written so far are removed.
pub(crate) fn write_outputs(
    inputs: &[Arc<TableFile>],
    mut filter: HistoryFilter,
    sst_dir: &Path,
    next_id: &mut u64,
    target_bytes: u64,
    cache: &Arc<BlockCache>,
) -> Result<Vec<Output>> {
    let sources: Vec<VersionSource<'_>> = inputs
        .iter()
        .map(|f| Box::new(f.reader.scan_uncached().map(|r| r.map(Arc::new))) as VersionSource<'_>)
        .collect();
    let first_id = *next_id;
    let mut written: Vec<(u64, SstMeta)> = Vec::new();
    let mut current: Option<(u64, SstBuilder)> = None;
    let result = (|| -> Result<()> {
        let mut last_key: Option<Bytes> = None;
        for record in MergeIter::new(sources) {
            let record = record?;
            if !filter.keep(&record) {
                continue;
            }
            let new_key = last_key.as_ref() != Some(&record.key);
            if new_key {
                if let Some((id, builder)) =
                    current.take_if(|(_, b)| b.approx_bytes() >= target_bytes)
                {
                    let path = sst_path(sst_dir, id);
                    written.push((id, builder.finish().map_err(Error::io(path))?));
                }
                last_key = Some(record.key.clone());
            }
            if current.is_none() {
                let id = *next_id;
                *next_id += 1;
                let path = sst_path(sst_dir, id);
                current = Some((id, SstBuilder::create(&path).map_err(Error::io(path))?));
            }
            let (id, builder) = current.as_mut().expect("created above");
            builder
                .add(&record)
                .map_err(Error::io(sst_path(sst_dir, *id)))?;
        }
        if let Some((id, builder)) = current.take() {
            let path = sst_path(sst_dir, id);
            written.push((id, builder.finish().map_err(Error::io(path))?));
        }
        fsutil::sync_dir(sst_dir)
    })();
    let outputs = result.and_then(|()| {
        written
            .iter()
            .map(|(id, meta)| install(*id, meta, cache))
            .collect()
    });
    if outputs.is_err() {
        // Every file this call created, finished or not (a builder whose
        // `finish` failed is no longer in `current`).
        drop(current);
        for id in first_id..*next_id {
            let _ = std::fs::remove_file(sst_path(sst_dir, id));
        }
    }
    outputs
}
