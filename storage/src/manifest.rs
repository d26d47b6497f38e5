//! The manifest: the list of live segments and the WAL position they cover, replaced atomically.
//!
//! It is the one record of which segment files are live: a flush writes its files first and
//! the manifest last, so a crash in between leaves orphans (removed at the next start), never a
//! manifest naming a missing file. `format_version` is written in front of the fields so a
//! newer Eddy's manifest is refused by name (see `format.rs`); a manifest without one is
//! version 1.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::format::{MANIFEST_FORMAT_VERSION, from_json, to_json};
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
pub(crate) struct Manifest {
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
            Ok(bytes) => from_json(&path, &bytes, MANIFEST_FORMAT_VERSION),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                next_segment_id: 1,
                ..Default::default()
            }),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Writes the manifest atomically.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let bytes = to_json(&path, self, MANIFEST_FORMAT_VERSION, false)?;
        write_atomic(&path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StorageError;

    #[test]
    fn a_manifest_without_a_version_opens_as_version_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The exact shape Eddy wrote before manifests carried a version.
        let today = r#"{"flushed_seq":42,"next_segment_id":3,"segments":[{"id":2,"table_id":1,"partition":19000,"path":"data/cpu/2022-01-08/00000000000000000002.parquet","min_time":1641600000000000000,"max_time":1641600060000000000,"rows":120,"bytes":4096}]}"#;
        std::fs::write(Manifest::path(dir.path()), today).expect("write");
        let m = Manifest::load(dir.path()).expect("load");
        assert_eq!(m.flushed_seq, 42);
        assert_eq!(m.next_segment_id, 3);
        assert_eq!(
            m.segments,
            [SegmentMeta {
                id: 2,
                table_id: 1,
                partition: 19000,
                path: "data/cpu/2022-01-08/00000000000000000002.parquet".into(),
                min_time: 1_641_600_000_000_000_000,
                max_time: 1_641_600_060_000_000_000,
                rows: 120,
                bytes: 4096,
            }]
        );
        // Stored again, it carries the version, and reads back the same.
        m.store(dir.path()).expect("store");
        let text = std::fs::read_to_string(Manifest::path(dir.path())).expect("read");
        assert!(text.starts_with(r#"{"format_version":1,"#), "{text}");
        let again = Manifest::load(dir.path()).expect("reload");
        assert_eq!(again.segments, m.segments);
        assert_eq!(again.flushed_seq, 42);
    }

    #[test]
    fn a_manifest_from_a_newer_eddy_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let newer = format!(
            r#"{{"format_version":{},"segments":"a shape this Eddy does not know"}}"#,
            MANIFEST_FORMAT_VERSION + 1
        );
        std::fs::write(Manifest::path(dir.path()), newer).expect("write");
        let err = Manifest::load(dir.path()).expect_err("newer");
        assert!(
            matches!(err, StorageError::UnsupportedFormat { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("manifest.json"), "{msg}");
        assert!(msg.contains("written by a newer Eddy"), "{msg}");
    }
}
