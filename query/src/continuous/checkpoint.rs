//! Checkpoints of view state: each chunk's reduced partial states in a Parquet file under
//! `views/<view id>/`, and `views/checkpoint.json` naming the files and the WAL position the
//! states cover. Files are never rewritten in place: a chunk that changed gets a new file
//! named by the checkpoint's number, so the previous manifest stays valid until the new one
//! replaces it atomically.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, QueryError, Result};

const MANIFEST: &str = "checkpoint.json";

/// Version of `views/checkpoint.json` and the chunk files it names. Bump when the manifest or
/// the layout of saved partial states changes so that an older Eddy would misread them.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// What one checkpoint holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct CheckpointManifest {
    /// Increases with every checkpoint; names the files it wrote.
    pub number: u64,
    /// Every commit up to this WAL sequence number is in the saved states.
    pub position: u64,
    pub views: Vec<ViewCheckpoint>,
}

/// The saved state of one view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ViewCheckpoint {
    pub id: u64,
    pub name: String,
    pub query: String,
    /// Buckets that were waiting to be recomputed.
    pub dirty: Vec<i64>,
    pub chunks: Vec<SavedChunk>,
}

/// One chunk's file, relative to the views directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SavedChunk {
    pub start: i64,
    pub file: String,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> QueryError {
    QueryError::new(ErrorKind::Io, format!("{}: {e}", path.display()))
}

/// The directory of view checkpoints.
pub(super) fn views_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("views")
}

/// The last checkpoint, if one was written.
pub(super) fn load(dir: &Path) -> Result<Option<CheckpointManifest>> {
    let path = dir.join(MANIFEST);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(eddy_storage::format::from_json(
            &path,
            &b,
            CHECKPOINT_FORMAT_VERSION,
        )?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Replaces the manifest.
pub(super) fn store(dir: &Path, manifest: &CheckpointManifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    let bytes = eddy_storage::format::to_json(&path, manifest, CHECKPOINT_FORMAT_VERSION, false)?;
    eddy_storage::fsutil::write_atomic(&path, &bytes)?;
    Ok(())
}

/// Writes one chunk's states (durably) to `rel` under `dir`.
pub(super) fn write_chunk(
    dir: &Path,
    rel: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut bytes = Vec::new();
    {
        let mut w = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(props))
            .map_err(|e| io_err(&path, e))?;
        for b in batches {
            w.write(b).map_err(|e| io_err(&path, e))?;
        }
        w.close().map_err(|e| io_err(&path, e))?;
    }
    eddy_storage::fsutil::write_atomic(&path, &bytes)?;
    Ok(())
}

/// Reads one chunk's states back, in `schema`.
pub(super) fn read_chunk(dir: &Path, rel: &str, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let path = dir.join(rel);
    let file = std::fs::File::open(&path).map_err(|e| io_err(&path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| io_err(&path, e))?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| io_err(&path, e))?;
        // Same columns; field metadata and nullability may differ after the round trip.
        let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())
            .map_err(|e| io_err(&path, format!("does not match the view's state: {e}")))?;
        out.push(b);
    }
    Ok(out)
}

/// Deletes chunk files and view directories the manifest does not name.
pub(super) fn remove_unreferenced(dir: &Path, manifest: &CheckpointManifest) {
    let live: HashSet<&str> = manifest
        .views
        .iter()
        .flat_map(|v| v.chunks.iter().map(|c| c.file.as_str()))
        .collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for view_dir in entries.flatten() {
        if !view_dir.path().is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(view_dir.path()) else {
            continue;
        };
        let mut left = 0;
        for f in files.flatten() {
            let rel = format!(
                "{}/{}",
                view_dir.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            if live.contains(rel.as_str()) {
                left += 1;
            } else if let Err(e) = std::fs::remove_file(f.path()) {
                tracing::warn!(file = %f.path().display(), error = %e, "cannot remove old view checkpoint file");
            }
        }
        if left == 0 {
            let _ = std::fs::remove_dir(view_dir.path());
        }
    }
}
