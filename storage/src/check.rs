//! `eddy check`: verifies a whole data directory offline, changing nothing, and says what is
//! damaged.
//!
//! It reads the catalog and the manifest (checksums, versions), checks that they agree with
//! each other, with the WAL and with the files under `data/` (the same rules start-up refuses
//! by), verifies every live segment (its checksum file, every block, and that it decodes to the
//! rows the manifest says), every WAL record (frame, checksum, decoding), and the view files
//! (`views.json`, `views/checkpoint.json` and the chunk files it names, by their checksums).
//! Files that are not damage but that start-up would remove, or leaves alone, are warnings.
//!
//! The view files belong to the query layer; their envelope is the generic one of `format.rs`,
//! so they are checked here with the versions the caller passes in.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::catalog::Catalog;
use crate::checksum::{
    FileChecksum, decode_parquet, read_parquet_verified, read_segment_bytes, sidecar_path,
};
use crate::datadir::{self, Accounted, Verdict};
use crate::error::{IoContext, Result, StorageError};
use crate::format::{CATALOG_FORMAT_VERSION, MANIFEST_FORMAT_VERSION, from_json_versioned};
use crate::manifest::Manifest;
use crate::recovery::inconsistencies;
use crate::wal;

/// Format versions of the files other crates keep in the data directory.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Newest version of `views.json` this Eddy reads.
    pub views_format_version: u32,
    /// Newest version of `views/checkpoint.json` this Eddy reads.
    pub checkpoint_format_version: u32,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Damaged, missing or inconsistent: data is at risk, or start-up refuses.
    Damaged,
    /// Not damage: a file start-up removes as garbage, leaves alone, or rewrites.
    Warning,
}

/// One file and what is wrong with it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The file.
    pub path: PathBuf,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong, and what start-up does about it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Damaged => "DAMAGED",
            Severity::Warning => "warning",
        };
        write!(f, "{label} {}: {}", self.path.display(), self.message)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Every damaged or unexpected file, in the order found.
    pub findings: Vec<Finding>,
    /// Files read and verified.
    pub files_checked: u64,
    /// Live segments verified.
    pub segments_checked: u64,
    /// Rows decoded from them.
    pub rows_checked: u64,
    /// WAL records verified.
    pub wal_records_checked: u64,
}

impl CheckReport {
    /// Findings that are damage.
    pub fn damaged(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Damaged)
            .count()
    }

    /// Findings that are warnings.
    pub fn warnings(&self) -> usize {
        self.findings.len() - self.damaged()
    }

    /// No damage found (warnings allowed).
    pub fn is_clean(&self) -> bool {
        self.damaged() == 0
    }

    fn damaged_file(&mut self, path: impl Into<PathBuf>, message: impl Into<String>) {
        self.findings.push(Finding {
            path: path.into(),
            severity: Severity::Damaged,
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<PathBuf>, message: impl Into<String>) {
        self.findings.push(Finding {
            path: path.into(),
            severity: Severity::Warning,
            message: message.into(),
        });
    }

    /// Records a storage error as damage of the file it names (or of `path`).
    fn error(&mut self, path: &Path, e: StorageError) {
        match e {
            StorageError::Corrupt {
                path: named,
                offset,
                reason,
            } => self.damaged_file(named, format!("corrupt at offset {offset}: {reason}")),
            StorageError::Inconsistent {
                path: named,
                reason,
            } => self.damaged_file(named, reason),
            StorageError::Io {
                path: named,
                source,
            } => self.damaged_file(named, format!("cannot be read: {source}")),
            other => self.damaged_file(path, other.to_string()),
        }
    }
}

/// Verifies the data directory `dir` without changing anything. An error only when `dir`
/// cannot be read at all; everything found in it is in the report.
pub fn check(dir: &Path, options: &CheckOptions) -> Result<CheckReport> {
    std::fs::read_dir(dir).at(dir)?;
    let mut report = CheckReport::default();

    let catalog = match Catalog::read(dir) {
        Ok(Some((catalog, version))) => {
            report.files_checked += 1;
            older_format(
                &mut report,
                &Catalog::path(dir),
                version,
                CATALOG_FORMAT_VERSION,
            );
            Some(catalog)
        }
        Ok(None) => None,
        Err(e) => {
            report.error(&Catalog::path(dir), e);
            None
        }
    };
    let manifest_path = Manifest::path(dir);
    let (manifest, manifest_version) = match Manifest::read(dir) {
        Ok(Some((manifest, version))) => {
            report.files_checked += 1;
            older_format(
                &mut report,
                &manifest_path,
                version,
                MANIFEST_FORMAT_VERSION,
            );
            (Some(manifest), version)
        }
        Ok(None) => (None, 0),
        Err(e) => {
            report.error(&manifest_path, e);
            (None, 0)
        }
    };
    let files = datadir::list(dir)?;
    // A damaged catalog or manifest was reported above; what follows would only repeat it as
    // "missing".
    let catalog_damaged = catalog.is_none() && Catalog::path(dir).exists();
    let manifest_damaged = manifest.is_none() && manifest_path.exists();
    for problem in inconsistencies(dir, catalog.as_ref(), manifest.as_ref(), &files)? {
        let repeats = match &problem {
            StorageError::Inconsistent { path, .. } => {
                (catalog_damaged && *path == Catalog::path(dir))
                    || (manifest_damaged && *path == manifest_path)
            }
            _ => false,
        };
        if !repeats {
            report.error(dir, problem);
        }
    }

    if let Some(manifest) = &manifest {
        check_segments(&mut report, dir, manifest, manifest_version);
    }
    let wal_last_seq = check_wal(&mut report, dir)?;
    if let Some(manifest) = &manifest {
        classify_data_files(&mut report, dir, manifest, &files, wal_last_seq);
    } else {
        for f in &files {
            report.warn(
                &f.path,
                "cannot be told live from garbage without a readable manifest.json",
            );
        }
    }
    check_views(&mut report, dir, options);
    Ok(report)
}

fn older_format(report: &mut CheckReport, path: &Path, version: u32, current: u32) {
    if version < current {
        report.warn(
            path,
            format!(
                "format version {version}, without a checksum: start-up rewrites it in format \
                 {current}"
            ),
        );
    }
}

/// Every live segment: its checksum file, every block, and a full decode to the rows the
/// manifest records.
fn check_segments(report: &mut CheckReport, dir: &Path, manifest: &Manifest, version: u32) {
    for s in &manifest.segments {
        let path = dir.join(&s.path);
        if !path.exists() {
            // Reported as an inconsistency already.
            continue;
        }
        report.files_checked += 1;
        let legacy = version < MANIFEST_FORMAT_VERSION && !sidecar_path(&path).exists();
        let data = if legacy {
            report.warn(
                &path,
                "written before segments had checksum files: checked by decoding only; \
                 start-up adds its checksum file",
            );
            match std::fs::read(&path).at(&path) {
                Ok(d) => Bytes::from(d),
                Err(e) => {
                    report.error(&path, e);
                    continue;
                }
            }
        } else {
            report.files_checked += 1;
            match read_segment_bytes(&path) {
                Ok(d) => d,
                Err(e) => {
                    report.error(&path, e);
                    continue;
                }
            }
        };
        if data.len() as u64 != s.bytes {
            report.damaged_file(
                &path,
                format!("{} bytes, manifest.json recorded {}", data.len(), s.bytes),
            );
            continue;
        }
        match decode_parquet(&path, data) {
            Ok(batches) => {
                let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
                if rows != s.rows {
                    report.damaged_file(
                        &path,
                        format!("holds {rows} rows, manifest.json recorded {}", s.rows),
                    );
                }
                report.segments_checked += 1;
                report.rows_checked += rows;
            }
            Err(e) => report.error(&path, e),
        }
    }
}

/// Every WAL record; returns the highest sequence number a sound record holds (0 if none).
fn check_wal(report: &mut CheckReport, dir: &Path) -> Result<u64> {
    let wal_dir = dir.join("wal");
    if !wal_dir.exists() {
        return Ok(0);
    }
    let mut last_seq = 0;
    for f in wal::check_files(&wal_dir)? {
        report.files_checked += 1;
        report.wal_records_checked += f.records;
        last_seq = last_seq.max(f.last_seq);
        if let Some(damage) = f.damage {
            report.damaged_file(
                &f.path,
                format!("{damage}: start-up refuses this WAL (acknowledged writes follow it)"),
            );
        }
        if let Some(tail) = f.torn_tail {
            report.warn(
                &f.path,
                format!("torn tail of the newest WAL file, {tail}: start-up cuts it"),
            );
        }
    }
    Ok(last_seq)
}

/// Files under `data/` the manifest does not list as live.
fn classify_data_files(
    report: &mut CheckReport,
    dir: &Path,
    manifest: &Manifest,
    files: &[datadir::DataFile],
    wal_last_seq: u64,
) {
    let accounted = Accounted::of(dir, manifest);
    for f in files {
        match accounted.verdict(f) {
            Verdict::Live => {}
            Verdict::Temporary => report.warn(&f.path, "unfinished write: start-up removes it"),
            Verdict::Retired => report.warn(
                &f.path,
                "segment taken out by retention, DROP TABLE or compaction, or an unfinished compaction's output: start-up removes it",
            ),
            Verdict::Unflushed if wal_last_seq > manifest.flushed_seq => report.warn(
                &f.path,
                "written by a flush that stopped before its manifest (its rows are in the WAL): \
                 start-up removes it",
            ),
            Verdict::Unflushed => report.damaged_file(
                &f.path,
                format!(
                    "segment id beyond manifest.json's next id {}, and the WAL holds no writes \
                     it could have come from: manifest.json is older than data/, start-up \
                     refuses",
                    manifest.next_segment_id
                ),
            ),
            Verdict::Unknown => report.warn(
                &f.path,
                "not listed in manifest.json (not a live segment of this data directory): \
                 left in place",
            ),
        }
    }
}

/// The parts of `views/checkpoint.json` that name files (the rest is the query layer's).
#[derive(Deserialize)]
struct CheckpointFiles {
    #[serde(default)]
    views: Vec<CheckpointView>,
}

#[derive(Deserialize)]
struct CheckpointView {
    #[serde(default)]
    chunks: Vec<CheckpointChunk>,
}

#[derive(Deserialize)]
struct CheckpointChunk {
    file: String,
    #[serde(default)]
    checksum: Option<FileChecksum>,
}

/// `views.json`, `views/checkpoint.json` and the chunk files it names.
fn check_views(report: &mut CheckReport, dir: &Path, options: &CheckOptions) {
    let views = dir.join("views.json");
    if let Some(bytes) = read_if_exists(report, &views) {
        report.files_checked += 1;
        let bare_array = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'[');
        if bare_array {
            match serde_json::from_slice::<IgnoredAny>(&bytes) {
                Ok(_) => older_format(report, &views, 1, options.views_format_version),
                Err(e) => report.damaged_file(&views, format!("not readable JSON: {e}")),
            }
        } else {
            match from_json_versioned::<IgnoredAny>(&views, &bytes, options.views_format_version) {
                Ok((_, version)) => {
                    older_format(report, &views, version, options.views_format_version)
                }
                Err(e) => report.error(&views, e),
            }
        }
    }
    let views_dir = dir.join("views");
    let checkpoint = views_dir.join("checkpoint.json");
    let Some(bytes) = read_if_exists(report, &checkpoint) else {
        return;
    };
    report.files_checked += 1;
    let files = match from_json_versioned::<CheckpointFiles>(
        &checkpoint,
        &bytes,
        options.checkpoint_format_version,
    ) {
        Ok((files, version)) => {
            older_format(
                report,
                &checkpoint,
                version,
                options.checkpoint_format_version,
            );
            files
        }
        Err(e) => {
            report.error(&checkpoint, e);
            return;
        }
    };
    let mut named = HashSet::new();
    for chunk in files.views.iter().flat_map(|v| &v.chunks) {
        let path = views_dir.join(&chunk.file);
        named.insert(path.clone());
        if !path.exists() {
            report.damaged_file(
                &path,
                "named by views/checkpoint.json but missing: start-up rebuilds the view from \
                 its source, which loses buckets the source no longer keeps",
            );
            continue;
        }
        report.files_checked += 1;
        if let Err(e) = read_parquet_verified(&path, chunk.checksum.as_ref()) {
            report.error(&path, e);
        }
    }
    // Chunk files of older checkpoints are removed by the next checkpoint.
    let Ok(entries) = std::fs::read_dir(&views_dir) else {
        return;
    };
    for view_dir in entries.flatten().filter(|e| e.path().is_dir()) {
        for f in std::fs::read_dir(view_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = f.path();
            if !named.contains(&path) {
                report.warn(
                    &path,
                    "not named by views/checkpoint.json: the next checkpoint removes it",
                );
            }
        }
    }
}

fn read_if_exists(report: &mut CheckReport, path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            report.damaged_file(path, format!("cannot be read: {e}"));
            None
        }
    }
}
