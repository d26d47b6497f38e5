//! Opening a data directory: load the catalog and the manifest, remove files a crashed flush
//! left behind, replay the WAL above the manifest's position (cutting a torn tail), and open
//! the WAL for new writes.
//!
//! Recovery only rebuilds state; [`Db::open`](crate::Db::open) assembles the engine from it and
//! starts the threads, so everything here runs before any write can arrive.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::catalog::Catalog;
use crate::commit::series_hashes;
use crate::dedup::conform;
use crate::engine::StorageConfig;
use crate::error::{IoContext, Result};
use crate::manifest::Manifest;
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
    /// Segment files on disk that no manifest listed (left by a crashed flush), removed.
    pub orphan_files_removed: u64,
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

/// Recovers the state of `config.data_dir` (which exists and is absolute).
pub(crate) fn recover(config: &StorageConfig) -> Result<Recovered> {
    let dir = config.data_dir.clone();
    let wal_dir = dir.join("wal");
    std::fs::create_dir_all(&wal_dir).at(&wal_dir)?;
    let catalog = Catalog::open(&dir)?;
    let manifest = Manifest::load(&dir)?;
    let orphans = remove_orphans(&dir, &manifest)?;

    let mut active = Memtable::default();
    let stats = wal::replay(&wal_dir, manifest.flushed_seq, |rec| {
        let Some(schema) = catalog.get_by_id(rec.table_id) else {
            // The table was dropped after this write: its rows are gone by request.
            return Ok(());
        };
        let batch = conform(&rec.batch, schema.arrow_schema())?;
        let hashes = series_hashes(&schema, &batch)?;
        active.apply(
            rec.seq,
            rec.table_id,
            schema.time_index(),
            schema.tag_indices().len(),
            batch,
            &hashes,
        );
        Ok(())
    })?;
    active.last_seq = active.last_seq.max(stats.last_seq);
    active.first_write = (!active.is_empty()).then(Instant::now);
    let next_seq = stats.last_seq.max(manifest.flushed_seq) + 1;
    let writer = WalWriter::create(&wal_dir, next_seq, config.wal_segment_bytes_max)?;
    if stats.records_applied > 0 || stats.torn_bytes_cut > 0 {
        tracing::info!(
            records = stats.records_applied,
            torn_bytes_cut = stats.torn_bytes_cut,
            "replayed WAL"
        );
    }

    let files = manifest
        .segments
        .iter()
        .map(|s| {
            let file = SegmentFile::new(config.data_dir.join(&s.path), s.clone());
            (s.id, Arc::new(file))
        })
        .collect();
    Ok(Recovered {
        catalog,
        manifest,
        active,
        wal: writer,
        files,
        report: RecoveryReport {
            records_replayed: stats.records_applied,
            torn_bytes_cut: stats.torn_bytes_cut,
            orphan_files_removed: orphans,
        },
    })
}

/// Deletes segment files that the manifest does not list (left by a flush that crashed before
/// its manifest was written), and temporary files.
fn remove_orphans(dir: &Path, manifest: &Manifest) -> Result<u64> {
    let live: HashSet<PathBuf> = manifest
        .segments
        .iter()
        .map(|s| dir.join(&s.path))
        .collect();
    let data = dir.join("data");
    if !data.exists() {
        return Ok(0);
    }
    let mut removed = 0;
    let mut stack = vec![data];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).at(&d)? {
            let path = entry.at(&d)?.path();
            if path.is_dir() {
                stack.push(path);
            } else if !live.contains(&path) {
                std::fs::remove_file(&path).at(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
