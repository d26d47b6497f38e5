//! Full-text indexes of segments (`CREATE INDEX ... USING fulltext (column)`): for each such
//! index and each live segment of its table, a tantivy index of the column's text in
//! `<segment>.fts/<column, hex>/` (see `fulltext.rs` for the index itself).
//!
//! They are accelerators, never the truth: `matches()` is evaluated on every row a scan
//! returns, and a segment without its index (not built yet, built by a run that crashed,
//! removed by hand) is simply read whole. So one background thread, `eddy-index`, can build
//! them all the same way: for segments written by flushes and compactions (woken by both), and
//! for every segment that existed when the index was created. An index directory is built
//! under a temporary name and renamed into place, so a directory under its final name is
//! complete; leftovers (a temporary directory, the directory of a segment or index that is
//! gone) are removed by the same thread.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ProjectionMask;
use parking_lot::Mutex;
use roaring::RoaringBitmap;

use crate::engine::Inner;
use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::sync_dir;
use crate::fulltext::{SegmentTextIndex, build_index};
use crate::limits::{SEGMENT_READ_BATCH_ROWS, TEXT_INDEX_RETRY_SECS, TEXT_INDEXER_WAKE_MS};
use crate::segment::{MetadataCache, SegmentFile, partial_reader};

/// The directory that holds a segment's full-text indexes.
pub fn text_root(segment: &Path) -> PathBuf {
    let mut s = segment.as_os_str().to_owned();
    s.push(".fts");
    PathBuf::from(s)
}

/// The directory of the index of `column` in `segment` (the column name in hex: any name is
/// a valid file name then).
pub fn text_index_dir(segment: &Path, column: &str) -> PathBuf {
    let hex: String = column.bytes().map(|b| format!("{b:02x}")).collect();
    text_root(segment).join(hex)
}

/// Wakes the indexer, or tells it to stop.
#[derive(Debug, Default)]
pub(crate) struct IndexSignal {
    pub(crate) requested: bool,
    pub(crate) stop: bool,
    /// Look for index directories no segment or index needs (after `DROP INDEX`).
    pub(crate) sweep: bool,
}

/// Opened indexes of one segment, by column; `None` for an index found damaged, which this
/// segment is read without until the indexer has built it again.
#[derive(Debug, Default)]
pub(crate) struct OpenTextIndexes {
    by_column: HashMap<String, Option<Arc<SegmentTextIndex>>>,
}

impl SegmentFile {
    /// The rows of this segment whose `column` matches the full-text `query`, by its index;
    /// `None` when the segment has no usable index of the column, so the caller reads it
    /// whole. Only a bad query is an error: an index that cannot be opened or searched (a
    /// flipped byte, a missing file) is logged and removed, the segment is read without it,
    /// and the indexer builds it again on its next pass.
    pub fn text_search(&self, column: &str, query: &str) -> Result<Option<RoaringBitmap>> {
        let open = self.text_indexes().lock().by_column.get(column).cloned();
        let index = match open {
            Some(Some(index)) => index,
            Some(None) => return Ok(None),
            None => {
                let dir = text_index_dir(&self.path, column);
                if !dir.exists() {
                    return Ok(None);
                }
                let opened = std::panic::catch_unwind(|| SegmentTextIndex::open(&dir))
                    .unwrap_or_else(|_| {
                        Err(crate::fulltext::FullTextError::Index {
                            path: dir.clone(),
                            message: "opening it panicked".into(),
                        })
                    });
                let index = match opened {
                    Ok(index) if index.rows() == self.meta.rows => Arc::new(index),
                    Ok(index) => {
                        let reason = format!(
                            "it covers {} rows, the segment has {}",
                            index.rows(),
                            self.meta.rows
                        );
                        self.discard_text_index(column, &dir, &reason);
                        return Ok(None);
                    }
                    Err(e) => {
                        self.discard_text_index(column, &dir, &e.to_string());
                        return Ok(None);
                    }
                };
                self.text_indexes()
                    .lock()
                    .by_column
                    .insert(column.to_string(), Some(index.clone()));
                index
            }
        };
        match index.search(query) {
            Ok(rows) => Ok(Some(rows)),
            Err(e @ crate::fulltext::FullTextError::Query(_)) => Err(text_error(e)),
            Err(e) => {
                let dir = text_index_dir(&self.path, column);
                self.discard_text_index(column, &dir, &e.to_string());
                Ok(None)
            }
        }
    }

    /// Stops using a damaged index of `column` and removes it, so the indexer rebuilds it.
    fn discard_text_index(&self, column: &str, dir: &Path, reason: &str) {
        tracing::warn!(dir = %dir.display(), %reason, "damaged full-text index: the segment is read without it, and it will be built again");
        self.text_indexes()
            .lock()
            .by_column
            .insert(column.to_string(), None);
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a damaged full-text index");
        }
    }

    /// Forgets what scans knew of the index of `column` (it was just built again).
    fn forget_text_index(&self, column: &str) {
        self.text_indexes().lock().by_column.remove(column);
    }
}

/// A full-text error as a storage error: a bad query is the user's ([`StorageError::InvalidQuery`]),
/// anything else is the index's.
pub(crate) fn text_error(e: crate::fulltext::FullTextError) -> StorageError {
    match e {
        crate::fulltext::FullTextError::Query(m) => StorageError::InvalidQuery(m),
        crate::fulltext::FullTextError::Index { path, message } => StorageError::Io {
            path,
            source: std::io::Error::other(message),
        },
    }
}

/// The column's values of a segment, verified, for indexing: only that column's pages are
/// read from the file.
fn read_column(
    file: &SegmentFile,
    footers: &Mutex<MetadataCache>,
    column: &str,
) -> Result<Vec<Arc<dyn Array>>> {
    let path = &file.path;
    let undecodable = |e: &dyn std::fmt::Display| StorageError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: format!("cannot decode: {e}"),
    };
    let (builder, _) = partial_reader(file, footers)?;
    let Some(index) = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == column)
    else {
        // A segment written before the column existed: every row is null there.
        return Ok(Vec::new());
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(SEGMENT_READ_BATCH_ROWS)
        .build()
        .map_err(|e| undecodable(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| undecodable(&e))?;
        out.push(batch.column(0).clone());
    }
    Ok(out)
}

/// Builds the index of `column` for `file` under a temporary name and renames it into place.
fn build(file: &SegmentFile, footers: &Mutex<MetadataCache>, column: &str) -> Result<u64> {
    let dir = text_index_dir(&file.path, column);
    let mut tmp = dir.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    let root = text_root(&file.path);
    std::fs::create_dir_all(&root).at(&root)?;
    let arrays = read_column(file, footers, column)?;
    let rows: usize = arrays.iter().map(|a| a.len()).sum();
    let strings: Vec<_> = arrays
        .iter()
        .filter(|a| a.data_type() == &DataType::Utf8)
        .map(|a| a.as_string::<i32>())
        .collect();
    let built = if rows == 0 {
        // The column is not in the file: every row is null.
        build_index(&tmp, (0..file.meta.rows).map(|_| None))
    } else if strings.len() != arrays.len() {
        return Err(StorageError::InvalidQuery(format!(
            "column \"{column}\" of {} is not text",
            file.path.display()
        )));
    } else {
        build_index(
            &tmp,
            strings
                .iter()
                .flat_map(|s| (0..s.len()).map(move |i| s.is_valid(i).then(|| s.value(i)))),
        )
    };
    let indexed = match built {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(text_error(e).or_disk_full(&tmp));
        }
    };
    std::fs::rename(&tmp, &dir).at(&dir)?;
    sync_dir(&root)?;
    file.forget_text_index(column);
    Ok(indexed)
}

impl Inner {
    /// Builds every missing full-text index of a live segment and, with `sweep`, removes
    /// index directories that no segment or index needs any more. Returns how many it built;
    /// stops early when asked to stop.
    pub(crate) fn build_text_indexes(
        &self,
        failed: &mut HashMap<(u64, String), Instant>,
        sweep: bool,
    ) -> Result<usize> {
        let indexes = self.catalog.indexes();
        let files: Vec<Arc<SegmentFile>> = self.state.read().files.values().cloned().collect();
        let mut wanted: HashMap<u64, Vec<String>> = HashMap::new();
        for idx in &indexes {
            if let Some(t) = self.catalog.get(&idx.table)
                && t.def().id == idx.table_id
            {
                wanted
                    .entry(idx.table_id)
                    .or_default()
                    .push(idx.column.clone());
            }
        }
        let live: HashSet<u64> = files.iter().map(|f| f.meta.id).collect();
        failed.retain(|(id, _), _| live.contains(id));
        let mut built = 0;
        for f in &files {
            for column in wanted.get(&f.meta.table_id).into_iter().flatten() {
                if self.index_wake.0.lock().stop {
                    return Ok(built);
                }
                let key = (f.meta.id, column.clone());
                let waiting = failed
                    .get(&key)
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(TEXT_INDEX_RETRY_SECS));
                if waiting || text_index_dir(&f.path, column).exists() {
                    continue;
                }
                let started = std::time::Instant::now();
                match build(f, &self.segment_metadata, column) {
                    Ok(rows) => {
                        failed.remove(&key);
                        built += 1;
                        tracing::info!(
                            segment = %f.path.display(),
                            column = %column,
                            rows,
                            ms = started.elapsed().as_millis() as u64,
                            "built full-text index"
                        );
                    }
                    Err(e) if e.is_disk_full() => return Err(e),
                    Err(e) => {
                        // Retried after a while: the segment is read whole meanwhile.
                        tracing::error!(segment = %f.path.display(), column = %column, error = %e, retry_in_s = TEXT_INDEX_RETRY_SECS, "cannot build full-text index; queries read this segment without it");
                        failed.insert(key, Instant::now());
                    }
                }
            }
        }
        if sweep {
            self.remove_stale_text_indexes(&files, &wanted);
        }
        Ok(built)
    }

    /// Removes the index directories of segments that are gone and of indexes that were
    /// dropped, and unfinished builds.
    fn remove_stale_text_indexes(
        &self,
        files: &[Arc<SegmentFile>],
        wanted: &HashMap<u64, Vec<String>>,
    ) {
        let live: HashMap<PathBuf, &Arc<SegmentFile>> =
            files.iter().map(|f| (text_root(&f.path), f)).collect();
        let data = self.config.data_dir.join("data");
        let mut stack = vec![data];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                if path.extension().is_none_or(|e| e != "fts") {
                    stack.push(path);
                    continue;
                }
                // Only this thread creates index directories, and only for segments live
                // when it started this pass: any other is left over.
                let keep: HashSet<PathBuf> = match live.get(&path) {
                    Some(f) => wanted
                        .get(&f.meta.table_id)
                        .into_iter()
                        .flatten()
                        .map(|c| text_index_dir(&f.path, c))
                        .collect(),
                    None => HashSet::new(),
                };
                let mut any_kept = false;
                for sub in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let p = sub.path();
                    if keep.contains(&p) {
                        any_kept = true;
                        continue;
                    }
                    if let Err(e) = std::fs::remove_dir_all(&p) {
                        tracing::warn!(dir = %p.display(), error = %e, "cannot remove stale full-text index");
                    }
                }
                if !any_kept {
                    let _ = std::fs::remove_dir(&path);
                }
            }
        }
    }
}

/// The indexer thread: builds missing full-text indexes when woken (after flushes,
/// compactions and `CREATE INDEX`) and at least every `TEXT_INDEXER_WAKE_MS`.
pub(crate) fn run_indexer(inner: &Inner) {
    use crate::limits::{FLUSH_RETRY_DELAY_MAX_MS, FLUSH_RETRY_DELAY_MIN_MS};
    use crate::stall::Backoff;
    let (lock, cv) = &inner.index_wake;
    let mut failed = HashMap::new();
    // Directories left by a crash or a dropped index are looked for once at start, then
    // after each `DROP INDEX` (a retired segment removes its own).
    let mut sweep = true;
    let mut retry = Backoff::new(
        Duration::from_millis(FLUSH_RETRY_DELAY_MIN_MS),
        Duration::from_millis(FLUSH_RETRY_DELAY_MAX_MS),
    );
    loop {
        {
            let mut sig = lock.lock();
            if !sig.requested && !sig.stop {
                cv.wait_for(&mut sig, Duration::from_millis(TEXT_INDEXER_WAKE_MS));
            }
            if sig.stop {
                return;
            }
            sig.requested = false;
            sweep |= std::mem::take(&mut sig.sweep);
        }
        if !retry.ready() {
            continue;
        }
        let sweeping = std::mem::take(&mut sweep);
        match inner.build_text_indexes(&mut failed, sweeping) {
            Ok(_) => {
                retry.succeeded();
            }
            Err(e) => {
                let retry_in_ms = retry.failed().as_millis() as u64;
                tracing::error!(error = %e, retry_in_ms, "building full-text indexes failed; queries read segments without them, will retry");
                sweep |= sweeping;
            }
        }
    }
}
