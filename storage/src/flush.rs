//! Flushing: freezing the active memtable, writing it as Parquet segments per time partition,
//! replacing the manifest, trimming the WAL, and holding writers back when flushing lags.
//!
//! One background thread (the flusher) flushes when asked, when the memtable is big, or when
//! its oldest write is old; `flush_lock` serializes it with every other manifest change. The
//! manifest is stored before the new segments become visible, and WAL files go only after the
//! manifest (and the commit hook's checkpoint) covers them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;

use crate::dedup::{filter_time, sort_dedup, time_bounds};
use crate::engine::Inner;
use crate::error::Result;
use crate::latest::SegmentLatest;
use crate::limits::{
    BACKPRESSURE_RECHECK_MS, FLUSH_RETRY_DELAY_MS, FLUSHER_WAKE_MS, PARTITION_NANOS,
};
use crate::manifest::SegmentMeta;
use crate::memtable::FrozenMemtable;
use crate::schema::{TableSchema, dir_name};
use crate::segment::{SegmentFile, write_segment};
use crate::time::partition_date;

/// What the flusher is asked to do when woken.
#[derive(Default)]
pub(crate) struct FlushSignal {
    /// Flush now, whatever the memtable's size and age.
    pub(crate) requested: bool,
    /// Exit: the engine is closing.
    pub(crate) stop: bool,
}

impl Inner {
    /// Memory held by memtables (active and being flushed), in bytes.
    pub(crate) fn memtable_bytes(&self) -> usize {
        let st = self.state.read();
        st.active.bytes + st.frozen.iter().map(|f| f.mem.bytes).sum::<usize>()
    }

    /// Waits while the memtables hold more than allowed, so writers slow down to the speed of
    /// flushing instead of exhausting memory.
    pub(crate) async fn wait_for_memory(&self) {
        loop {
            let notified = self.flushed.notified();
            let held = self.memtable_bytes();
            if held < self.config.memtable_bytes_max {
                return;
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

    /// Flushes until nothing is left in memory.
    pub(crate) fn flush_all(&self) -> Result<()> {
        while self.flush_once()? {}
        Ok(())
    }

    /// Flushes the oldest frozen memtable, freezing the active one first if none is frozen.
    /// Returns whether anything was flushed.
    fn flush_once(&self) -> Result<bool> {
        let _guard = self.flush_lock.lock();
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
        let mut rows = 0u64;
        let mut written = Vec::new();
        let mut summaries = Vec::new();
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
                let rel = format!(
                    "data/{}/{}/{id:020}.parquet",
                    dir_name(schema.name()),
                    partition_date(partition)
                );
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
        manifest.flushed_seq = manifest.flushed_seq.max(frozen.mem.last_seq);
        manifest.store(&self.config.data_dir)?;
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
        self.flushed.notify_waiters();
        // Derived state (views) is saved after the data; the WAL is kept for whichever of
        // the two is older.
        let hook = self.hook.read().clone();
        let keep_above = hook
            .and_then(|h| h.checkpoint())
            .map_or(flushed_seq, |p| p.min(flushed_seq));
        if let Err(e) = self.wal.lock().remove_flushed(keep_above) {
            tracing::warn!(error = %e, "could not remove flushed WAL files");
        }
        Ok(true)
    }
}

/// The flusher thread: flushes when due and enforces retention, until told to stop.
pub(crate) fn run_flusher(inner: &Inner) {
    let (lock, cv) = &inner.flush_wake;
    loop {
        {
            let mut sig = lock.lock();
            if !sig.requested && !sig.stop {
                cv.wait_for(&mut sig, Duration::from_millis(FLUSHER_WAKE_MS));
            }
            if sig.stop {
                return;
            }
            sig.requested = false;
        }
        let due = {
            let st = inner.state.read();
            !st.frozen.is_empty()
                || st.active.bytes >= inner.config.memtable_flush_bytes
                || st.active.first_write.is_some_and(|t| {
                    t.elapsed() >= Duration::from_millis(inner.config.flush_interval_ms)
                })
        };
        if due && let Err(e) = inner.flush_once() {
            tracing::error!(error = %e, "flush failed; data stays in memory and WAL, will retry");
            std::thread::sleep(Duration::from_millis(FLUSH_RETRY_DELAY_MS));
        }
        if let Err(e) = inner.enforce_retention() {
            tracing::error!(error = %e, "could not drop expired segments; will retry");
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
