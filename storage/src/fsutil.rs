//! Small file-system helpers for crash-safe replacement of files, and for measuring them.
//!
//! Every file Eddy replaces (catalog, manifest, view checkpoints) goes through
//! [`write_atomic`], so the crash-safety argument is made once, here. (Segment checksum files
//! follow the same steps in `checksum.rs`, under a temporary name of their own, so they never
//! share one with their segment's.)

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result, StorageError, io_error};

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

/// Total length of the files under `dir`, found by walking it now; symbolic links are not
/// followed. A file or directory that disappears during the walk (a flush or retention
/// removing it) counts as gone, and a missing `dir` holds nothing.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(io_error(d, e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(io_error(d.clone(), e)),
            };
            // `DirEntry::metadata` does not follow a symbolic link.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(io_error(entry.path(), e)),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_bytes_adds_up_nested_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(dir_bytes(&dir.path().join("missing")).expect("missing"), 0);
        assert_eq!(dir_bytes(dir.path()).expect("empty"), 0);
        let nested = dir.path().join("a").join("b");
        fs::create_dir_all(&nested).expect("mkdir");
        fs::write(dir.path().join("top"), [0u8; 10]).expect("write");
        fs::write(nested.join("deep"), [0u8; 1000]).expect("write");
        fs::write(dir.path().join("a").join("empty"), b"").expect("write");
        assert_eq!(dir_bytes(dir.path()).expect("walk"), 1010);
        assert_eq!(dir_bytes(&nested).expect("walk"), 1000);
    }
}
