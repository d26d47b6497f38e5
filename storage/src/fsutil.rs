//! Small file-system helpers for crash-safe replacement of files.
//!
//! Every file Eddy replaces (catalog, manifest, view checkpoints) goes through
//! [`write_atomic`], so the crash-safety argument is made once, here. (Segment checksum files
//! follow the same steps in `checksum.rs`, under a temporary name of their own, so they never
//! share one with their segment's.)

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result, StorageError};

/// Fsyncs a directory so that renames and creations inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

/// Replaces `path` with `bytes` atomically: write a temporary file, fsync, rename, fsync the
/// directory. A crash leaves either the old or the new content, never a mix. On failure the
/// temporary file is removed (on a full disk its space is what is missing), and `path` keeps
/// its old content unless only the final fsync of the directory failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_reporting(path, bytes).map_err(|failed| failed.error)
}

/// A failed [`write_atomic`], and how far it got.
#[derive(Debug)]
pub(crate) struct AtomicWriteError {
    /// What failed.
    pub(crate) error: StorageError,
    /// The rename was done and only fsyncing the directory failed: `path` may hold the new
    /// content already (and may keep it after a crash).
    pub(crate) renamed: bool,
}

/// [`write_atomic`], telling a failure before the rename (the old content stands) from one
/// after it.
pub(crate) fn write_atomic_reporting(
    path: &Path,
    bytes: &[u8],
) -> std::result::Result<(), AtomicWriteError> {
    let tmp = path.with_extension("tmp");
    let written = (|| -> Result<()> {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        drop(f);
        fs::rename(&tmp, path).at(path)
    })();
    if let Err(error) = written {
        remove_if_present(&tmp);
        return Err(AtomicWriteError {
            error,
            renamed: false,
        });
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(|error| AtomicWriteError {
            error,
            renamed: true,
        })?;
    }
    Ok(())
}

/// Removes a file that may not exist, logging (not returning) any other failure: used to
/// clean up after an error that is already being reported.
pub(crate) fn remove_if_present(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove a partly written file")
        }
    }
}
