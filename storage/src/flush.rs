//! Flushing: freezing the active memtable, writing it as Parquet segments per time partition,
//! replacing the manifest, trimming the WAL, and holding writers back when flushing lags.
//!
//! One background thread (the flusher) flushes when asked, when the memtable is big, or when
//! its oldest write is old; `flush_lock` serializes it with every other manifest change. The
//! manifest is stored before the new segments become visible, and WAL files go only after the
//! manifest (and the commit hook's checkpoint) covers them.
//!
//! A flush that fails (a full disk) changes nothing: its segment files are removed, the rows
//! stay in memory and in the WAL, and the flusher retries with a backoff. Writers held back
//! by memory are refused while the disk is full instead of waiting for space indefinitely.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;

use crate::checksum::sidecar_path;
use crate::dedup::{filter_time, sort_dedup, time_bounds};
use crate::engine::Inner;
use crate::error::Result;
use crate::latest::SegmentLatest;
use crate::limits::{
    BACKPRESSURE_RECHECK_MS, FLUSH_RETRY_DELAY_MAX_MS, FLUSH_RETRY_DELAY_MIN_MS, FLUSHER_WAKE_MS,
    PARTITION_NANOS,
};
use crate::manifest::{Manifest, SegmentMeta, segment_path};
use crate::memtable::FrozenMemtable;
use crate::schema::TableSchema;
use crate::segment::{SegmentFile, write_segment};
use crate::stall::{Backoff, FlushFailure};

/// What the flusher is asked to do when woken.
#[derive(Default)]
pub(crate) struct FlushSignal {
    /// Flush now, whatever the memtable's size and age.
    pub(crate) requested: bool,
    /// Exit: the engine is closing.
    pub(crate) stop: bool,
    /// Retry failed work now instead of waiting out its backoff (space may be back).
    pub(crate) retry_now: bool,
    /// The commit hook's last checkpoint failed: retry it, so the WAL it holds can go.
    pub(crate) checkpoint_behind: bool,
    /// A manifest write failed after its rename (only the directory's fsync failed): the
    /// manifest on disk may name segments that memory does not list yet, so until a manifest
    /// write succeeds, a failed flush leaves its files (the retry rewrites the same ids).
    pub(crate) manifest_ahead: bool,
}

impl Inner {
    /// Memory held by memtables (active and being flushed), in bytes.
    pub(crate) fn memtable_bytes(&self) -> usize {
        let st = self.state.read();
        st.active.bytes + st.frozen.iter().map(|f| f.mem.bytes).sum::<usize>()
    }

    /// Waits while the memtables hold more than allowed, so writers slow down to the speed of
    /// flushing instead of exhausting memory. When the last flush failed for lack of disk
    /// space the write is refused instead: the wait would last until someone frees space.
    pub(crate) async fn wait_for_memory(&self) -> Result<()> {
        loop {
            let notified = self.flushed.notified();
            let held = self.memtable_bytes();
            if held < self.config.memtable_bytes_max {
                return Ok(());
            }
            let disk_full = self
                .stalls
                .lock()
                .flush
                .as_ref()
                .and_then(FlushFailure::disk_full_error);
            if let Some(e) = disk_full {
                return Err(e);
            }
            self.request_flush();
            let recheck = Duration::from_millis(BACKPRESSURE_RECHECK_MS);
            let _ = tokio::time::timeout(recheck, notified).await;
        }
    }

    /// Wakes the flusher and asks it to flush regardless of size.
    pub(crate) fn request_flush(&self) {
        let (lock, cv) = &self.flush_wake;
        lock.lock().requested = true;
        cv.notify_all();
    }

    /// Wakes the compactor: a flush added segments, so a partition may be due. The new
    /// segments may need full-text indexes too.
    pub(crate) fn request_compaction(&self) {
        let (lock, cv) = &self.compact_wake;
        lock.lock().requested = true;
        cv.notify_all();
        self.request_text_indexes(false);
    }

    /// Wakes the full-text indexer; with `sweep`, it also removes directories of dropped
    /// indexes.
    pub(crate) fn request_text_indexes(&self, sweep: bool) {
        let (lock, cv) = &self.index_wake;
        let mut sig = lock.lock();
        sig.requested = true;
        sig.sweep |= sweep;
        cv.notify_all();
    }

    /// Lets the flusher retry failed work at once instead of waiting out its backoff: a WAL
    /// append worked again, so space may be back.
    pub(crate) fn retry_flush_now(&self) {
        let (lock, cv) = &self.flush_wake;
        lock.lock().retry_now = true;
        cv.notify_all();
    }

    /// Flushes until nothing is left in memory.
    pub(crate) fn flush_all(&self) -> Result<()> {
        while self.flush_once()? {}
        Ok(())
    }

    /// Flushes the oldest memtable (see `flush_oldest`) and records the outcome for writers
    /// and [`Db::write_stall`](crate::Db::write_stall): a failure holds writes back once
    /// memory is full, the next success clears it.
    fn flush_once(&self) -> Result<bool> {
        // The outcome is recorded under the lock, so a slower failed flush never overwrites
        // the success of a later one.
        let _guard = self.flush_lock.lock();
        let flushed = self.flush_oldest();
        self.stalls.lock().flush = flushed.as_ref().err().map(FlushFailure::new);
        flushed
    }

    /// Flushes the oldest frozen memtable, freezing the active one first if none is frozen;
    /// called with `flush_lock` held. Returns whether anything was flushed. On failure
    /// nothing changes but the freeze: the segment files it wrote are removed and its rows
    /// stay in memory and WAL.
    fn flush_oldest(&self) -> Result<bool> {
        let frozen = {
            let mut st = self.state.write();
            if st.frozen.is_empty() {
                if st.active.is_empty() {
                    return Ok(false);
                }
                let mem = std::mem::take(&mut st.active);
                st.active.last_seq = mem.last_seq;
                st.frozen.push(Arc::new(FrozenMemtable { mem }));
            }
            st.frozen[0].clone()
        };
        let mut manifest = (*self.state.read().manifest).clone();
        let started = Instant::now();
        let segments_before = manifest.segments.len();
        let mut written = Vec::new();
        let mut summaries = Vec::new();
        let manifest_ahead = self.flush_wake.0.lock().manifest_ahead;
        let rows = match self.write_segments(&frozen, &mut manifest, &mut written, &mut summaries) {
            Ok(rows) => rows,
            Err(e) => {
                if !manifest_ahead {
                    remove_segments(&written);
                }
                return Err(e);
            }
        };
        manifest.flushed_seq = manifest.flushed_seq.max(frozen.mem.last_seq);
        crate::source::merge_offsets(&mut manifest.source_offsets, &frozen.mem.source_offsets);
        if let Err(failed) = manifest.try_store(&self.config.data_dir) {
            // Before the rename the old manifest stands and the new files are garbage. After
            // it the new manifest may name them: they stay, and the retry, which hands out the
            // same ids, writes the same files again.
            if failed.renamed {
                self.flush_wake.0.lock().manifest_ahead = true;
            } else if !manifest_ahead {
                remove_segments(&written);
            }
            return Err(failed.error);
        }
        self.flush_wake.0.lock().manifest_ahead = false;
        let bytes: u64 = manifest.segments[segments_before.min(manifest.segments.len())..]
            .iter()
            .map(|s| s.bytes)
            .sum();
        {
            let mut st = self.state.write();
            st.manifest = Arc::new(manifest);
            st.files.extend(written.into_iter().map(|f| (f.meta.id, f)));
            st.frozen.retain(|f| !Arc::ptr_eq(f, &frozen));
        }
        // Only now: a failed flush reuses its segment ids.
        for (id, summary) in summaries {
            self.latest.lock().insert(id, summary);
        }
        let flushed_seq = frozen.mem.last_seq;
        tracing::debug!(
            rows,
            elapsed_ms = started.elapsed().as_millis() as u64,
            flushed_seq,
            "flushed memtable"
        );
        self.metrics.flushed(rows, bytes, started);
        self.flushed.notify_waiters();
        self.request_compaction();
        let caught_up = self.checkpoint_and_trim(flushed_seq);
        self.flush_wake.0.lock().checkpoint_behind = !caught_up;
        Ok(true)
    }

    /// Writes one segment per table and day of `frozen`, taking ids from `manifest` and
    /// listing the segments in it. Each file is pushed to `written` once it is in place, so
    /// that the caller can remove them all when a later step fails. Returns the rows written.
    fn write_segments(
        &self,
        frozen: &FrozenMemtable,
        manifest: &mut Manifest,
        written: &mut Vec<Arc<SegmentFile>>,
        summaries: &mut Vec<(u64, Arc<SegmentLatest>)>,
    ) -> Result<u64> {
        let mut rows = 0u64;
        for (&table_id, tm) in &frozen.mem.tables {
            let Some(schema) = self.catalog.get_by_id(table_id) else {
                continue;
            };
            for (partition, batches) in split_by_partition(&schema, &tm.batches)? {
                let Some(sorted) = sort_dedup(&schema, &batches)? else {
                    continue;
                };
                let Some((min_time, max_time)) = time_bounds(&sorted, schema.time_index()) else {
                    continue;
                };
                let id = manifest.next_segment_id;
                manifest.next_segment_id += 1;
                let rel = segment_path(schema.name(), partition, id);
                let path = self.config.data_dir.join(&rel);
                let bytes = write_segment(&path, &schema, &sorted)?;
                rows += sorted.num_rows() as u64;
                let meta = SegmentMeta {
                    id,
                    table_id,
                    partition,
                    path: rel,
                    min_time,
                    max_time,
                    rows: sorted.num_rows() as u64,
                    bytes,
                    level: 0,
                };
                manifest.segments.push(meta.clone());
                // The rows are in hand: summarizing them now spares the first latest-row
                // lookup a read of the new file.
                match SegmentLatest::from_sorted(&schema, &sorted) {
                    Ok(Some(summary)) => summaries.push((id, Arc::new(summary))),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot summarize a new segment"),
                }
                written.push(Arc::new(SegmentFile::new(path, meta)));
            }
        }
        #[cfg(test)]
        if *self.flush_fault.lock() && !written.is_empty() {
            return Err(crate::error::StorageError::DiskFull {
                path: self.config.data_dir.join("data"),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        Ok(rows)
    }

    /// Saves the commit hook's derived state (views) after a flush, then deletes the WAL files
    /// that both the segments (up to `flushed_seq`) and the saved state cover. Returns whether
    /// the saved state covers `flushed_seq`; if not (its checkpoint failed), the WAL it still
    /// needs is kept and the flusher retries.
    fn checkpoint_and_trim(&self, flushed_seq: u64) -> bool {
        let hook = self.hook.read().clone();
        let saved = hook.and_then(|h| h.checkpoint());
        let keep_above = saved.map_or(flushed_seq, |p| p.min(flushed_seq));
        if let Err(e) = self.wal.lock().remove_flushed(keep_above) {
            tracing::warn!(error = %e, "could not remove flushed WAL files");
        }
        saved.is_none_or(|p| p >= flushed_seq)
    }

    /// Retries the checkpoint of the commit hook that failed after a flush; returns whether
    /// it caught up.
    fn retry_checkpoint(&self) -> bool {
        let _guard = self.flush_lock.lock();
        let flushed_seq = self.state.read().manifest.flushed_seq;
        let caught_up = self.checkpoint_and_trim(flushed_seq);
        self.flush_wake.0.lock().checkpoint_behind = !caught_up;
        caught_up
    }
}

/// Deletes the segment files (and checksum files) of a flush that failed: the retry hands out
/// the same ids again, and on a full disk their space is what is missing.
fn remove_segments(written: &[Arc<SegmentFile>]) {
    for f in written {
        for path in [f.path.clone(), sidecar_path(&f.path)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a segment of a failed flush")
                }
            }
        }
    }
}

/// The flusher thread: flushes when due and enforces retention, until told to stop. Work
/// that fails (a full disk) is retried with a backoff, so it neither spins nor floods the log.
pub(crate) fn run_flusher(inner: &Inner) {
    let (lock, cv) = &inner.flush_wake;
    let backoff = || {
        Backoff::new(
            Duration::from_millis(FLUSH_RETRY_DELAY_MIN_MS),
            Duration::from_millis(FLUSH_RETRY_DELAY_MAX_MS),
        )
    };
    let mut flush_retry = backoff();
    let mut retention_retry = backoff();
    let mut checkpoint_retry = backoff();
    loop {
        let checkpoint_behind = {
            let mut sig = lock.lock();
            if !sig.requested && !sig.stop && !sig.retry_now {
                let wake = [
                    flush_retry.remaining(),
                    retention_retry.remaining(),
                    checkpoint_retry.remaining(),
                ]
                .into_iter()
                .flatten()
                .fold(Duration::from_millis(FLUSHER_WAKE_MS), Duration::min);
                cv.wait_for(&mut sig, wake);
            }
            if sig.stop {
                return;
            }
            sig.requested = false;
            if std::mem::take(&mut sig.retry_now) {
                flush_retry.wake();
                retention_retry.wake();
                checkpoint_retry.wake();
            }
            sig.checkpoint_behind
        };
        let due = {
            let st = inner.state.read();
            !st.frozen.is_empty()
                || st.active.bytes >= inner.config.memtable_flush_bytes
                || st.active.first_write.is_some_and(|t| {
                    t.elapsed() >= Duration::from_millis(inner.config.flush_interval_ms)
                })
        };
        if due && flush_retry.ready() {
            match inner.flush_once() {
                Ok(_) => {
                    if flush_retry.succeeded() {
                        tracing::info!("flushes succeed again");
                    }
                }
                Err(e) => {
                    inner.metrics.flush_failed();
                    let retry_in_ms = flush_retry.failed().as_millis() as u64;
                    tracing::error!(
                        error = %e,
                        retry_in_ms,
                        "flush failed; data stays in memory and WAL, will retry"
                    );
                }
            }
        }
        if checkpoint_behind && checkpoint_retry.ready() {
            if inner.retry_checkpoint() {
                checkpoint_retry.succeeded();
            } else {
                checkpoint_retry.failed();
            }
        }
        if retention_retry.ready() {
            match inner.enforce_retention() {
                Ok(()) => {
                    retention_retry.succeeded();
                }
                Err(e) => {
                    let retry_in_ms = retention_retry.failed().as_millis() as u64;
                    tracing::error!(
                        error = %e,
                        retry_in_ms,
                        "could not drop expired segments; will retry"
                    );
                }
            }
        }
    }
}

/// Groups batches by time partition, keeping write order within each partition.
fn split_by_partition(
    schema: &TableSchema,
    batches: &[RecordBatch],
) -> Result<BTreeMap<i64, Vec<RecordBatch>>> {
    let mut out: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        let Some((lo, hi)) = time_bounds(b, schema.time_index()) else {
            continue;
        };
        let (plo, phi) = (
            lo.div_euclid(PARTITION_NANOS),
            hi.div_euclid(PARTITION_NANOS),
        );
        if plo == phi {
            out.entry(plo).or_default().push(b.clone());
            continue;
        }
        for p in plo..=phi {
            let part = filter_time(
                b,
                schema.time_index(),
                p * PARTITION_NANOS,
                p * PARTITION_NANOS + (PARTITION_NANOS - 1),
            )?;
            if part.num_rows() > 0 {
                out.entry(p).or_default().push(part);
            }
        }
    }
    Ok(out)
}
