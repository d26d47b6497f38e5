//! The manifest: the list of live segments and the WAL position they cover, replaced atomically.
//!
//! It is the one record of which segment files are live: a flush writes its files first and
//! the manifest last, so a crash in between leaves files with ids the manifest has not handed
//! out yet (removed at the next start), never a manifest naming a missing file. Segments that
//! retention or `DROP TABLE` took out are listed as `retired` until their files are gone, so
//! the next start knows those files are garbage. Nothing else under `data/` is ever deleted.
//!
//! The file is a checksummed envelope (see `format.rs`); a manifest from before that (version
//! 1, with or without `format_version`) still opens and is rewritten in today's format.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksum::sidecar_path;
use crate::error::{IoContext, Result};
use crate::format::{MANIFEST_FORMAT_VERSION, from_json_versioned, to_json};
use crate::fsutil::{AtomicWriteError, write_atomic_reporting};

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
    /// How many times its rows were rewritten by compaction: 0 for a flushed segment, one more
    /// than the highest of its inputs for a compacted one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub level: u32,
}

fn is_zero(level: &u32) -> bool {
    *level == 0
}

/// Path, relative to the data directory, of segment `id` of table `table` in `partition`.
pub(crate) fn segment_path(table: &str, partition: i64, id: u64) -> String {
    format!(
        "data/{}/{}/{id:020}.parquet",
        crate::schema::dir_name(table),
        crate::time::partition_date(partition)
    )
}

/// A segment taken out of the manifest whose file may still exist (a query held it, or the
/// engine stopped before it was deleted): garbage, deleted at the next start at the latest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredSegment {
    /// Its segment id.
    pub id: u64,
    /// Path relative to the data directory.
    pub path: String,
}

impl From<&SegmentMeta> for RetiredSegment {
    fn from(s: &SegmentMeta) -> Self {
        Self {
            id: s.id,
            path: s.path.clone(),
        }
    }
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
    /// Segments taken out whose files may still exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredSegment>,
    /// Segments a running compaction is writing: ids handed out, files not yet live. Whatever
    /// of them a start finds is garbage (the compaction did not finish).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacting: Vec<RetiredSegment>,
    /// Stream sources' positions as of `flushed_seq` (later ones are in the WAL records).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub source_offsets: crate::source::SourceOffsets,
}

impl Manifest {
    /// Path of the manifest in a data directory.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// The manifest of a data directory that has none yet.
    pub fn empty() -> Self {
        Self {
            next_segment_id: 1,
            ..Default::default()
        }
    }

    /// Reads the manifest and the format version it was written in; `None` if there is no
    /// manifest (whether that is allowed is recovery's decision).
    pub fn read(dir: &Path) -> Result<Option<(Self, u32)>> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => from_json_versioned(&path, &bytes, MANIFEST_FORMAT_VERSION).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Writes the manifest atomically, first forgetting retired segments whose files (and
    /// checksum files) are gone.
    pub fn store(&mut self, dir: &Path) -> Result<()> {
        self.try_store(dir).map_err(|failed| failed.error)
    }

    /// [`Manifest::store`], saying on failure whether the new manifest may be in place
    /// already (see [`AtomicWriteError`]).
    pub(crate) fn try_store(&mut self, dir: &Path) -> std::result::Result<(), AtomicWriteError> {
        self.retired.retain(|r| {
            let file = dir.join(&r.path);
            file.exists() || sidecar_path(&file).exists()
        });
        let path = Self::path(dir);
        let bytes = to_json(&path, self, MANIFEST_FORMAT_VERSION, false).map_err(|error| {
            AtomicWriteError {
                error,
                renamed: false,
            }
        })?;
        write_atomic_reporting(&path, &bytes)
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
        let (mut m, version) = Manifest::read(dir.path()).expect("load").expect("present");
        assert_eq!(version, 1);
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
                level: 0,
            }]
        );
        // Stored again, it carries the version, and reads back the same.
        m.store(dir.path()).expect("store");
        let text = std::fs::read_to_string(Manifest::path(dir.path())).expect("read");
        assert!(
            text.starts_with(r#"{"format_version":2,"crc32":"#),
            "{text}"
        );
        let (again, version) = Manifest::read(dir.path())
            .expect("reload")
            .expect("present");
        assert_eq!(version, MANIFEST_FORMAT_VERSION);
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
        let err = Manifest::read(dir.path()).expect_err("newer");
        assert!(
            matches!(err, StorageError::UnsupportedFormat { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("manifest.json"), "{msg}");
        assert!(msg.contains("written by a newer Eddy"), "{msg}");
    }

    #[test]
    fn retired_segments_stay_listed_until_their_files_are_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rel = "data/t/2024-01-01/00000000000000000005.parquet";
        let file = dir.path().join(rel);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"x").expect("write");
        std::fs::write(sidecar_path(&file), b"y").expect("write");
        let mut m = Manifest::empty();
        m.retired.push(RetiredSegment {
            id: 5,
            path: rel.into(),
        });
        m.store(dir.path()).expect("store");
        let (back, _) = Manifest::read(dir.path()).expect("read").expect("present");
        assert_eq!(back.retired, m.retired);
        std::fs::remove_file(&file).expect("rm");
        m.store(dir.path()).expect("store");
        assert_eq!(m.retired.len(), 1, "the checksum file is still there");
        std::fs::remove_file(sidecar_path(&file)).expect("rm");
        m.store(dir.path()).expect("store");
        assert!(m.retired.is_empty());
        let (back, _) = Manifest::read(dir.path()).expect("read").expect("present");
        assert!(back.retired.is_empty());
    }

    #[test]
    fn a_damaged_manifest_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Manifest::empty();
        m.flushed_seq = 1234;
        m.store(dir.path()).expect("store");
        let path = Manifest::path(dir.path());
        let good = std::fs::read(&path).expect("read");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x02;
            std::fs::write(&path, &bad).expect("write");
            match Manifest::read(dir.path()) {
                Err(e) => assert!(e.to_string().contains("manifest.json"), "{e}"),
                Ok(read) => panic!("byte {i} flipped was read as {read:?}"),
            }
        }
    }
}
