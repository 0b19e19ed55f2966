//! Small durable file-system helpers.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Makes a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

/// Replaces `path` with `contents` atomically: write a temporary file,
/// fsync it, rename it over `path`, fsync the directory. A crash leaves
/// either the old or the new contents, never a mix.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().expect("path has a parent directory");
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(Error::io(&tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(Error::io(&tmp))?;
    fs::rename(&tmp, path).map_err(Error::io(path))?;
    sync_dir(dir)
}
