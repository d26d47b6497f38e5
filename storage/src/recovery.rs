//! Opening a data directory: load the catalog and the manifest, check that they agree with each
//! other and with the WAL and the segment files, replay the WAL above the manifest's position
//! (cutting a torn tail), remove only the files that are provably garbage, and open the WAL for
//! new writes.
//!
//! A data directory whose files disagree (a missing catalog or manifest where data exists, a
//! manifest older than the WAL, a segment the manifest names but the disk lacks) is refused
//! with [`StorageError::Inconsistent`] naming the file: starting anyway would mean deleting or
//! hiding data on a guess.
//!
//! Recovery only rebuilds state; [`Db::open`](crate::Db::open) assembles the engine from it and
//! starts the threads, so everything here runs before any write can arrive.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;

use crate::catalog::Catalog;
use crate::checksum::{BlockChecksums, sidecar_path};
use crate::commit::series_hashes;
use crate::datadir::{self, Accounted, Kind, Verdict};
use crate::dedup::conform;
use crate::engine::StorageConfig;
use crate::error::{IoContext, Result, StorageError};
use crate::format::{CATALOG_FORMAT_VERSION, MANIFEST_FORMAT_VERSION};
use crate::fsutil::sync_dir;
use crate::limits::SEGMENT_CHECKSUM_BLOCK_BYTES;
use crate::manifest::{Manifest, SegmentMeta};
use crate::memtable::Memtable;
use crate::segment::SegmentFile;
use crate::wal::{self, WalWriter};

/// What recovery did at open.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// WAL records replayed into the memtable.
    pub records_replayed: u64,
    /// Bytes of a torn WAL tail that were cut.
    pub torn_bytes_cut: u64,
    /// Garbage files removed under `data/`: unfinished writes, segments of a flush that
    /// stopped before its manifest, and retired segments.
    pub orphan_files_removed: u64,
    /// Files under `data/` that are not Eddy's or that the manifest does not account for:
    /// left in place, with a warning.
    pub unknown_files: u64,
    /// Segments written before segments had checksum files, given one.
    pub checksums_written: u64,
}

/// The state recovered from a data directory, ready to become the engine's.
pub(crate) struct Recovered {
    pub(crate) catalog: Catalog,
    pub(crate) manifest: Manifest,
    /// The memtable rebuilt from the WAL.
    pub(crate) active: Memtable,
    /// Open for the next sequence number.
    pub(crate) wal: WalWriter,
    /// The manifest's segments by id.
    pub(crate) files: BTreeMap<u64, Arc<SegmentFile>>,
    pub(crate) report: RecoveryReport,
}

fn refuse(path: PathBuf, reason: String) -> StorageError {
    StorageError::Inconsistent { path, reason }
}

/// Recovers the state of `config.data_dir` (which exists and is absolute).
pub(crate) fn recover(config: &StorageConfig) -> Result<Recovered> {
    let dir = config.data_dir.clone();
    let wal_dir = dir.join("wal");
    std::fs::create_dir_all(&wal_dir).at(&wal_dir)?;
    let catalog = Catalog::read(&dir)?;
    let manifest = Manifest::read(&dir)?;
    let files = datadir::list(&dir)?;
    let mut problems = inconsistencies(
        &dir,
        catalog.as_ref().map(|(c, _)| c),
        manifest.as_ref().map(|(m, _)| m),
        &files,
    )?;
    if !problems.is_empty() {
        let first = problems.remove(0);
        return Err(match (first, problems.len()) {
            (StorageError::Inconsistent { path, reason }, more) if more > 0 => {
                StorageError::Inconsistent {
                    path,
                    reason: format!(
                        "{reason} ({more} more problems: `eddy check --data-dir {}` lists them)",
                        dir.display()
                    ),
                }
            }
            (first, _) => first,
        });
    }
    // A new data directory (version 0: written below), or, for the manifest, one that never
    // flushed: nothing is in segments yet.
    let (catalog, catalog_version) = match catalog {
        Some(found) => found,
        None => (Catalog::open(&dir)?, 0),
    };
    let (mut manifest, manifest_version) = manifest.unwrap_or_else(|| (Manifest::empty(), 0));

    // Replay before anything is deleted: a write to a table the catalog never handed out
    // stops start-up here, with nothing changed but a torn WAL tail.
    let next_table_id = catalog.next_table_id();
    let catalog_path = Catalog::path(&dir);
    let mut active = Memtable::default();
    let stats = wal::replay(&wal_dir, manifest.flushed_seq, |rec| {
        for (table_id, batch) in rec.parts {
            if table_id >= next_table_id {
                return Err(refuse(
                    catalog_path.clone(),
                    format!(
                        "WAL record {} writes to table id {table_id}, but catalog.json has handed \
                         out table ids only below {next_table_id}: catalog.json is older than the \
                         WAL; refusing to start. Restore the catalog.json that goes with this \
                         data directory",
                        rec.seq
                    ),
                ));
            }
            let Some(schema) = catalog.get_by_id(table_id) else {
                // The table was dropped after this write: its rows are gone by request.
                continue;
            };
            let batch = conform(&batch, schema.arrow_schema())?;
            let hashes = series_hashes(&schema, &batch)?;
            active.apply(
                rec.seq,
                table_id,
                schema.time_index(),
                schema.tag_indices().len(),
                batch,
                &hashes,
            );
        }
        if let Some(progress) = &rec.progress {
            active.apply_progress(rec.seq, progress);
        }
        Ok(())
    })?;
    active.last_seq = active.last_seq.max(stats.last_seq);
    active.first_write = (!active.is_empty()).then(Instant::now);
    if stats.records_applied > 0 || stats.torn_bytes_cut > 0 {
        tracing::info!(
            records = stats.records_applied,
            torn_bytes_cut = stats.torn_bytes_cut,
            "replayed WAL"
        );
    }

    let cleanup = remove_garbage(&dir, &manifest, &files, stats.last_seq)?;
    let checksums_written = if manifest_version < MANIFEST_FORMAT_VERSION {
        adopt_segments(&dir, &manifest.segments)?
    } else {
        let on_disk: HashSet<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        for s in &manifest.segments {
            let path = dir.join(&s.path);
            if !on_disk.contains(sidecar_path(&path).as_path()) {
                tracing::error!(
                    file = %path.display(),
                    "segment has no checksum file: reads of it fail until it is restored from a backup"
                );
            }
        }
        0
    };

    // Files older Eddys wrote are rewritten in today's format (with checksums); a new data
    // directory gets its catalog and manifest now, so its next start is not mistaken for a
    // damaged one. The catalog first: a crash in between leaves a catalog without a manifest
    // and no segments, which opens as a directory that never flushed.
    if catalog_version < CATALOG_FORMAT_VERSION {
        catalog.store()?;
    }
    // Stored again when it lists retired segments or unfinished compactions: their files are
    // gone now.
    let unfinished = !manifest.compacting.is_empty();
    manifest.compacting.clear();
    if manifest_version < MANIFEST_FORMAT_VERSION || !manifest.retired.is_empty() || unfinished {
        manifest.store(&dir)?;
    }

    let next_seq = stats.last_seq.max(manifest.flushed_seq) + 1;
    let writer = WalWriter::create(&wal_dir, next_seq, config.wal_segment_bytes_max)?;
    let segments = manifest
        .segments
        .iter()
        .map(|s| {
            let file = SegmentFile::new(dir.join(&s.path), s.clone());
            (s.id, Arc::new(file))
        })
        .collect();
    Ok(Recovered {
        catalog,
        manifest,
        active,
        wal: writer,
        files: segments,
        report: RecoveryReport {
            records_replayed: stats.records_applied,
            torn_bytes_cut: stats.torn_bytes_cut,
            orphan_files_removed: cleanup.removed,
            unknown_files: cleanup.unknown,
            checksums_written,
        },
    })
}

/// Every reason the catalog, manifest, WAL and `data/` of `dir` do not belong together (each a
/// [`StorageError::Inconsistent`] naming the file and what to do); empty when they do. A
/// missing catalog or manifest is fine only where nothing exists that they would describe.
pub(crate) fn inconsistencies(
    dir: &Path,
    catalog: Option<&Catalog>,
    manifest: Option<&Manifest>,
    files: &[datadir::DataFile],
) -> Result<Vec<StorageError>> {
    let wal_dir = dir.join("wal");
    let mut out = Vec::new();
    let segment_files = files
        .iter()
        .filter(|f| matches!(f.kind, Kind::Segment(_)))
        .count();
    if catalog.is_none() {
        let mut held = Vec::new();
        if manifest.is_some() {
            held.push("manifest.json".to_string());
        }
        if segment_files > 0 {
            held.push(format!("{segment_files} segment files under data/"));
        }
        if wal::holds_records(&wal_dir)? {
            held.push("WAL records under wal/".to_string());
        }
        if dir.join("views.json").exists() {
            held.push("views.json".to_string());
        }
        if !held.is_empty() {
            out.push(refuse(
                Catalog::path(dir),
                format!(
                    "catalog.json is missing, but the data directory holds {}; refusing to \
                     start: without it table ids would be handed out again and tables would \
                     show each other's rows. Restore catalog.json from a backup",
                    held.join(", ")
                ),
            ));
        }
    }
    let empty = Manifest::empty();
    let manifest = match manifest {
        Some(m) => m,
        None if segment_files == 0 => &empty,
        None => {
            out.push(refuse(
                Manifest::path(dir),
                format!(
                    "manifest.json is missing, but data/ holds {segment_files} segment files; \
                     refusing to start: without it no file can be told live from garbage. \
                     Restore manifest.json from a backup"
                ),
            ));
            return Ok(out);
        }
    };
    // The flusher removes a WAL file only once the manifest covers all of its records, so the
    // oldest WAL file starts at most one record after the manifest's position. A later start
    // means records that are in no segment the manifest knows and no longer in the WAL.
    if let Some(first) = wal::first_file_seq(&wal_dir)?
        && first > manifest.flushed_seq.saturating_add(1)
    {
        out.push(refuse(
            Manifest::path(dir),
            format!(
                "manifest.json covers WAL records up to {}, but the WAL starts at record {first}: \
                 records {} to {} are in neither. manifest.json is older than the WAL (restored \
                 from an old backup, or replaced?); refusing to start. Restore the manifest.json \
                 that goes with this WAL",
                manifest.flushed_seq,
                manifest.flushed_seq + 1,
                first - 1
            ),
        ));
    }
    if let Some(catalog) = catalog {
        let next_table_id = catalog.next_table_id();
        for s in manifest
            .segments
            .iter()
            .filter(|s| s.table_id >= next_table_id)
        {
            out.push(refuse(
                Catalog::path(dir),
                format!(
                    "manifest.json lists segment {} ({}) of table id {}, but catalog.json has \
                     handed out table ids only below {next_table_id}: catalog.json is older than \
                     the data; refusing to start. Restore the catalog.json that goes with this \
                     data directory",
                    s.id, s.path, s.table_id
                ),
            ));
        }
    }
    let on_disk: HashSet<&Path> = files.iter().map(|f| f.path.as_path()).collect();
    for s in &manifest.segments {
        let path = dir.join(&s.path);
        if !on_disk.contains(path.as_path()) {
            out.push(refuse(
                path,
                "manifest.json lists this segment but the file is missing; refusing to start \
                 rather than answer without its rows. Restore the missing file from a backup"
                    .to_string(),
            ));
        }
    }
    Ok(out)
}

/// What garbage collection at start did.
struct Cleanup {
    removed: u64,
    unknown: u64,
}

/// Deletes what is provably garbage under `data/`: unfinished writes (`.tmp`), segments with
/// ids the manifest has not handed out (a flush that stopped before its manifest: their rows
/// are still in the WAL), and retired segments. Anything else the manifest does not account
/// for is left where it is, with a warning.
fn remove_garbage(
    dir: &Path,
    manifest: &Manifest,
    files: &[datadir::DataFile],
    wal_last_seq: u64,
) -> Result<Cleanup> {
    let accounted = Accounted::of(dir, manifest);
    let mut garbage = Vec::new();
    let mut cleanup = Cleanup {
        removed: 0,
        unknown: 0,
    };
    for f in files {
        match accounted.verdict(f) {
            Verdict::Live => {}
            Verdict::Temporary | Verdict::Retired => garbage.push(&f.path),
            Verdict::Unflushed => {
                // Such a file's rows are in WAL records above the manifest's position. If the
                // WAL holds none, the file did not come from a crashed flush: the manifest is
                // older than the data.
                if wal_last_seq <= manifest.flushed_seq {
                    let id = match f.kind {
                        Kind::Segment(id) | Kind::Checksums(id) => id,
                        Kind::Temporary | Kind::Other => 0,
                    };
                    return Err(refuse(
                        Manifest::path(dir),
                        format!(
                            "{} has segment id {} but manifest.json hands out ids only from {}, \
                             and the WAL holds no writes it could have been flushed from: \
                             manifest.json is older than data/; refusing to start. Restore the \
                             manifest.json that goes with this data directory",
                            f.path.display(),
                            id,
                            manifest.next_segment_id
                        ),
                    ));
                }
                garbage.push(&f.path);
            }
            Verdict::Unknown => {
                cleanup.unknown += 1;
                tracing::warn!(
                    file = %f.path.display(),
                    "file under data/ that manifest.json does not account for: left in place (eddy check lists such files)"
                );
            }
        }
    }
    let mut dirs = BTreeSet::new();
    for path in garbage {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(path),
        }
        tracing::info!(file = %path.display(), "removed garbage file");
        cleanup.removed += 1;
        if let Some(parent) = path.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    Ok(cleanup)
}

/// Gives every live segment without a checksum file (written before segments had them) one,
/// after checking that the file has the length the manifest recorded and that its footer
/// reads. A segment that fails either check gets none: reads of it then fail as corrupt.
fn adopt_segments(dir: &Path, segments: &[SegmentMeta]) -> Result<u64> {
    let mut written = 0;
    let mut dirs = BTreeSet::new();
    for s in segments {
        let path = dir.join(&s.path);
        if sidecar_path(&path).exists() {
            continue;
        }
        let data = std::fs::read(&path).at(&path)?;
        if data.len() as u64 != s.bytes {
            tracing::error!(
                file = %path.display(),
                bytes = data.len(),
                expected = s.bytes,
                "segment written before checksums has another length than the manifest recorded: left without checksums, reads of it fail"
            );
            continue;
        }
        let sums = BlockChecksums::of(&data, SEGMENT_CHECKSUM_BLOCK_BYTES);
        if let Err(e) = ParquetMetaDataReader::new().parse_and_finish(&Bytes::from(data)) {
            tracing::error!(
                file = %path.display(),
                error = %e,
                "segment written before checksums has an unreadable footer: left without checksums, reads of it fail"
            );
            continue;
        }
        sums.store(&path)?;
        written += 1;
        if let Some(parent) = path.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    if written > 0 {
        tracing::info!(
            segments = written,
            "wrote checksum files for segments written before checksums"
        );
    }
    Ok(written)
}
