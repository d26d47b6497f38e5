//! The manifest: the list of live segments and the WAL position they cover, replaced atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::write_atomic;

/// One Parquet segment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Unique, increasing id: a higher id holds later writes.
    pub id: u64,
    /// Id of the table incarnation.
    pub table_id: u64,
    /// Time partition (days since the Unix epoch).
    pub partition: i64,
    /// Path relative to the data directory.
    pub path: String,
    /// Smallest time in the segment, ns.
    pub min_time: i64,
    /// Largest time in the segment, ns.
    pub max_time: i64,
    /// Number of rows.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
}

/// The persisted state of flushed data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Every WAL record with a sequence number up to this one is in a segment.
    pub flushed_seq: u64,
    /// Next segment id to hand out.
    pub next_segment_id: u64,
    /// Live segments, by increasing id.
    pub segments: Vec<SegmentMeta>,
}

impl Manifest {
    /// Path of the manifest in a data directory.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// Loads the manifest, or an empty one for a new data directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path,
                offset: 0,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                next_segment_id: 1,
                ..Default::default()
            }),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Writes the manifest atomically.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| StorageError::Corrupt {
            path: Self::path(dir),
            offset: 0,
            reason: e.to_string(),
        })?;
        write_atomic(&Self::path(dir), &bytes)
    }
}
