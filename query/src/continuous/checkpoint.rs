//! Checkpoints of view state: each chunk's reduced partial states in a Parquet file under
//! `views/<view id>/`, and `views/checkpoint.json` naming the files and the WAL position the
//! states cover. Files are never rewritten in place: a chunk that changed gets a new file
//! named by the checkpoint's number, so the previous manifest stays valid until the new one
//! replaces it atomically.
//!
//! `checkpoint.json` is a checksummed envelope (`eddy_storage::format`), and it records each
//! chunk file's length and CRC-32, checked whenever the file is read back: a damaged
//! checkpoint is an error naming the file (and the views are rebuilt from their sources),
//! never different states.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use eddy_storage::checksum::{FileChecksum, read_file_verified, read_parquet_verified};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, QueryError, Result};

const MANIFEST: &str = "checkpoint.json";

/// Version of `views/checkpoint.json` and the chunk files it names. Bump when the manifest or
/// the layout of saved partial states changes so that an older Eddy would misread them.
/// Version 2: the checksummed envelope, and a checksum per chunk file.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 2;

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
    /// Length and CRC-32 of the file (absent in checkpoints from before version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<FileChecksum>,
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

/// Writes one chunk's states (durably) to `rel` under `dir`; returns the file's checksum.
pub(super) fn write_chunk(
    dir: &Path,
    rel: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<FileChecksum> {
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
    Ok(FileChecksum::of(&bytes))
}

/// The checksum of a chunk file a checkpoint from before checksums named (it was read back
/// whole when the views were restored from it).
pub(super) fn chunk_checksum(dir: &Path, rel: &str) -> Result<FileChecksum> {
    let data = read_file_verified(&dir.join(rel), None)?;
    Ok(FileChecksum::of(&data))
}

/// Reads one chunk's states back, in `schema`, after checking the file against the checksum
/// the checkpoint recorded for it.
pub(super) fn read_chunk(
    dir: &Path,
    chunk: &SavedChunk,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let path = dir.join(&chunk.file);
    let mut out = Vec::new();
    for b in read_parquet_verified(&path, chunk.checksum.as_ref())? {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn a_changed_byte_in_a_chunk_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..500))],
        )
        .expect("batch");
        let rel = "7/0_1.parquet";
        let checksum =
            write_chunk(dir.path(), rel, &schema, std::slice::from_ref(&batch)).expect("write");
        let chunk = SavedChunk {
            start: 0,
            file: rel.into(),
            checksum: Some(checksum),
        };
        assert_eq!(
            read_chunk(dir.path(), &chunk, &schema).expect("read"),
            [batch]
        );
        assert_eq!(chunk_checksum(dir.path(), rel).expect("checksum"), checksum);

        let path = dir.path().join(rel);
        let good = std::fs::read(&path).expect("read");
        for i in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).expect("write");
            let err = read_chunk(dir.path(), &chunk, &schema).expect_err("damaged chunk");
            assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
            assert!(err.message.contains("0_1.parquet"), "{err}");
        }
    }

    #[test]
    fn a_checkpoint_manifest_is_checksummed_and_older_ones_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = CheckpointManifest {
            number: 3,
            position: 42,
            views: Vec::new(),
        };
        store(dir.path(), &manifest).expect("store");
        let path = dir.path().join(MANIFEST);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with(r#"{"format_version":2,"crc32":"#),
            "{text}"
        );
        assert_eq!(load(dir.path()).expect("load").expect("some").position, 42);

        let bad = text.replace("\"position\":42", "\"position\":43");
        std::fs::write(&path, bad).expect("write");
        let err = load(dir.path()).expect_err("damaged");
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(err.message.contains("checkpoint.json"), "{err}");

        // Version 1, as written before checksums: chunk entries without one.
        std::fs::write(
            &path,
            r#"{"format_version":1,"number":1,"position":5,"views":[{"id":1,"name":"v","query":"q","dirty":[],"chunks":[{"start":0,"file":"1/0_1.parquet"}]}]}"#,
        )
        .expect("write");
        let old = load(dir.path()).expect("load").expect("some");
        assert_eq!(old.position, 5);
        assert!(old.views[0].chunks[0].checksum.is_none());
    }
}
