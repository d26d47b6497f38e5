//! Compaction: the segments of a time partition are merged into one sorted, deduplicated
//! segment in the background, so a read of the partition needs no merge and its file is dense.
//!
//! A job always takes *every* segment of one (table, partition), and its output's id is handed
//! out when the job starts: segments flushed while it runs get higher ids, so the merged segment
//! sits in write order exactly where its newest input was, and later writes still win over it.
//!
//! Crash safety: the job first stores a manifest listing its output as `compacting` (garbage if
//! found at start), writes the output durably under its final name, then stores a manifest with
//! the output live and the inputs retired. Inputs are deleted only after that, and only once no
//! query holds them. A crash at any instant leaves either the inputs live (and the output
//! garbage) or the output live (and the inputs garbage).
//!
//! Policy, per (table, partition) with at least two segments: merge when the flushed (level 0)
//! segments hold at least as many rows as the compacted ones (so each row is rewritten about
//! log2(partition rows / flush rows) times while a partition grows: size-tiered), when too many
//! flushed segments pile up, or when the partition has been quiet (no new segment) for
//! `compaction_quiet_ms`.
//!
//! The job holds no lock while it merges: flushes, retention and `DROP TABLE` go on. A job whose
//! inputs were dropped meanwhile is abandoned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::checksum::read_segment_bytes;
use crate::dedup::{conform, time_bounds};
use crate::engine::Inner;
use crate::error::{Result, StorageError};
use crate::limits::{
    COMPACTION_BATCH_ROWS_MAX, COMPACTION_BATCH_ROWS_MIN, COMPACTION_FLUSHED_SEGMENTS_MAX,
    COMPACTION_INPUT_MEMORY_BYTES, COMPACTION_LEVEL_MAX,
};
use crate::manifest::{RetiredSegment, SegmentMeta, segment_path};
use crate::merge::{SortedBatches, merge_sorted};
use crate::schema::TableSchema;
use crate::segment::{SegmentFile, SegmentStyle, SegmentWriter};
use crate::time::partition_date;

/// What the compactor is asked to do when woken.
#[derive(Default)]
pub(crate) struct CompactSignal {
    /// Look for work now (a flush added segments, or a caller wants everything compacted).
    pub(crate) requested: bool,
    /// Exit: the engine is closing. A running job is abandoned at its next batch.
    pub(crate) stop: bool,
}

/// One compaction: every segment of one (table, partition), merged into `output`.
struct Job {
    table: Arc<TableSchema>,
    partition: i64,
    inputs: Vec<Arc<SegmentFile>>,
    output: SegmentMeta,
}

/// What a finished compaction did, for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Table name.
    pub table: String,
    /// Partition (days since the Unix epoch).
    pub partition: i64,
    /// Segments merged.
    pub inputs: usize,
    /// Rows read from them.
    pub rows_in: u64,
    /// Rows written (each key once).
    pub rows_out: u64,
    /// Bytes of the inputs.
    pub bytes_in: u64,
    /// Bytes of the output.
    pub bytes_out: u64,
}

/// Whether a partition's segments are due for a merge, by the policy in the module comment.
fn due(segments: &[&Arc<SegmentFile>], quiet: Duration, now: Instant, force: bool) -> bool {
    if segments.len() < 2 {
        return false;
    }
    if force {
        return true;
    }
    let (flushed, compacted): (Vec<&&Arc<SegmentFile>>, Vec<_>) =
        segments.iter().partition(|s| s.meta.level == 0);
    let flushed_rows: u64 = flushed.iter().map(|s| s.meta.rows).sum();
    let compacted_rows: u64 = compacted.iter().map(|s| s.meta.rows).sum();
    let newest = segments.iter().map(|s| s.created()).max().unwrap_or(now);
    (flushed.len() >= 2 && flushed_rows >= compacted_rows)
        || flushed.len() >= COMPACTION_FLUSHED_SEGMENTS_MAX
        || now.saturating_duration_since(newest) >= quiet
}

/// What one call of `compact_once` did.
#[derive(Debug)]
pub(crate) enum Step {
    /// A partition was compacted.
    Ran(CompactionOutcome),
    /// A job ran but was given up (an input left meanwhile, or every input was empty).
    Abandoned,
    /// No partition was due (or every due one is being compacted or waits after a failure).
    Idle,
}

/// Key of a partition: (table id, partition).
type PartitionKey = (u64, i64);

/// Partitions being compacted now, and those whose last job failed, with when they may be
/// tried again: one unreadable segment must not hold back every other partition.
#[derive(Debug, Default)]
pub(crate) struct CompactionBook {
    busy: HashSet<PartitionKey>,
    failed: HashMap<PartitionKey, (u32, Instant)>,
}

impl Inner {
    /// Runs one compaction if one is due (any partition with two segments or more when
    /// `force`).
    pub(crate) fn compact_once(&self, force: bool) -> Result<Step> {
        let Some(job) = self.start_job(force)? else {
            return Ok(Step::Idle);
        };
        let key = (job.output.table_id, job.partition);
        let ran = self.run_job(&job);
        let mut book = self.compaction_book.lock();
        book.busy.remove(&key);
        match &ran {
            Err(e) if !e.is_disk_full() => {
                // This partition waits (doubling, up to the longest retry delay); the
                // others go on.
                let failures = book.failed.get(&key).map_or(0, |f| f.0).saturating_add(1);
                let delay = Duration::from_millis(
                    crate::limits::FLUSH_RETRY_DELAY_MIN_MS
                        .saturating_mul(1 << failures.min(16))
                        .min(crate::limits::FLUSH_RETRY_DELAY_MAX_MS * 20),
                );
                book.failed.insert(key, (failures, Instant::now() + delay));
            }
            Err(_) => {}
            Ok(_) => {
                book.failed.remove(&key);
            }
        }
        ran
    }

    /// Merges and publishes a started job.
    fn run_job(&self, job: &Job) -> Result<Step> {
        let started = Instant::now();
        let output_path = self.config.data_dir.join(&job.output.path);
        let merged = self.merge_job(job, &output_path);
        let (stats, bytes) = match merged {
            Ok(done) => done,
            Err(e) => {
                self.abandon_job(job, &output_path);
                return Err(e);
            }
        };
        let Some((min_time, max_time)) = stats.time else {
            // Every input was empty: nothing to publish.
            self.abandon_job(job, &output_path);
            return Ok(Step::Abandoned);
        };
        let mut output = job.output.clone();
        output.rows = stats.rows_out;
        output.bytes = bytes;
        output.min_time = min_time;
        output.max_time = max_time;
        if !self.finish_job(job, output, &output_path)? {
            return Ok(Step::Abandoned);
        }
        self.request_text_indexes(false);
        let outcome = CompactionOutcome {
            table: job.table.name().to_string(),
            partition: job.partition,
            inputs: job.inputs.len(),
            rows_in: stats.rows_in,
            rows_out: stats.rows_out,
            bytes_in: job.inputs.iter().map(|s| s.meta.bytes).sum(),
            bytes_out: bytes,
        };
        self.metrics.compacted(&outcome, started);
        tracing::debug!(
            table = %outcome.table,
            partition = %partition_date(outcome.partition),
            inputs = outcome.inputs,
            rows_in = outcome.rows_in,
            rows_out = outcome.rows_out,
            bytes_in = outcome.bytes_in,
            bytes_out = outcome.bytes_out,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compacted partition"
        );
        Ok(Step::Ran(outcome))
    }

    /// Compacts until no partition of any table has more than one segment (for tests, benches
    /// and operators who want a dense store now), waiting for the background compactor's job
    /// if it holds one. Returns the jobs it ran; a partition that fails is an error.
    pub(crate) fn compact_all(&self) -> Result<Vec<CompactionOutcome>> {
        let mut done = Vec::new();
        let mut abandoned = 0;
        loop {
            match self.compact_once(true)? {
                Step::Ran(outcome) => done.push(outcome),
                // Given up because retention or DROP TABLE took inputs meanwhile; the next
                // pick sees the partition as it is now. Bounded in case one never settles.
                Step::Abandoned if abandoned < 100 => abandoned += 1,
                Step::Abandoned => return Ok(done),
                Step::Idle if self.compaction_book.lock().busy.is_empty() => return Ok(done),
                Step::Idle => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Picks the due partition with the most segments, hands out its output id and records
    /// the output as `compacting` in the manifest, all under `flush_lock`.
    fn start_job(&self, force: bool) -> Result<Option<Job>> {
        let _guard = self.flush_lock.lock();
        // A flush whose manifest may be on disk ahead of memory retries with the same segment
        // ids; handing one out here would leave its first files unaccounted for.
        if self.flush_wake.0.lock().manifest_ahead {
            return Ok(None);
        }
        let now = Instant::now();
        let mut book = self.compaction_book.lock();
        let quiet = Duration::from_millis(self.config.compaction_quiet_ms);
        let chosen = {
            let st = self.state.read();
            let mut groups: BTreeMap<(u64, i64), Vec<&Arc<SegmentFile>>> = BTreeMap::new();
            for f in st.files.values() {
                groups
                    .entry((f.meta.table_id, f.meta.partition))
                    .or_default()
                    .push(f);
            }
            groups
                .into_iter()
                .filter(|(key, _)| !book.busy.contains(key))
                .filter(|(key, _)| force || book.failed.get(key).is_none_or(|f| f.1 <= now))
                .filter(|(_, segs)| due(segs, quiet, now, force))
                .max_by_key(|(_, segs)| segs.len())
                .map(|((table_id, partition), segs)| {
                    (
                        table_id,
                        partition,
                        segs.into_iter().cloned().collect::<Vec<_>>(),
                    )
                })
        };
        let Some((table_id, partition, inputs)) = chosen else {
            return Ok(None);
        };
        let Some(table) = self.catalog.get_by_id(table_id) else {
            return Ok(None);
        };
        book.busy.insert((table_id, partition));
        drop(book);
        let mut manifest = (*self.state.read().manifest).clone();
        let id = manifest.next_segment_id;
        manifest.next_segment_id += 1;
        let path = segment_path(table.name(), partition, id);
        manifest.compacting.push(RetiredSegment {
            id,
            path: path.clone(),
        });
        if let Err(e) = manifest.store(&self.config.data_dir) {
            self.compaction_book
                .lock()
                .busy
                .remove(&(table_id, partition));
            return Err(e);
        }
        self.state.write().manifest = Arc::new(manifest);
        let level = inputs
            .iter()
            .map(|s| s.meta.level)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
            .min(COMPACTION_LEVEL_MAX);
        let output = SegmentMeta {
            id,
            table_id,
            partition,
            path,
            min_time: 0,
            max_time: 0,
            rows: 0,
            bytes: 0,
            level,
        };
        Ok(Some(Job {
            table,
            partition,
            inputs,
            output,
        }))
    }

    /// Merges the job's inputs into its output file. No lock is held.
    fn merge_job(&self, job: &Job, output_path: &std::path::Path) -> Result<(JobStats, u64)> {
        let schema = job.table.arrow_schema().clone();
        // Memory: one decoded batch per input, sized so all of them fit the budget.
        let row_bytes = (schema.fields().len() * 24).max(1);
        let batch_rows = (COMPACTION_INPUT_MEMORY_BYTES / (job.inputs.len().max(1) * row_bytes))
            .clamp(COMPACTION_BATCH_ROWS_MIN, COMPACTION_BATCH_ROWS_MAX);
        let mut inputs: Vec<(String, SortedBatches)> = Vec::with_capacity(job.inputs.len());
        for f in &job.inputs {
            let name = f.path.display().to_string();
            let data = read_segment_bytes(&f.path)?;
            let path = f.path.clone();
            let undecodable = move |e: &dyn std::fmt::Display| StorageError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("cannot decode: {e}"),
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(data)
                .and_then(|b| b.with_batch_size(batch_rows).build())
                .map_err(|e| undecodable(&e))?;
            let schema = schema.clone();
            let batches = reader.map(move |b| {
                let b = b.map_err(|e| undecodable(&e))?;
                conform(&b, &schema)
            });
            inputs.push((name, Box::new(batches)));
        }
        let mut writer = SegmentWriter::create(output_path, &job.table, SegmentStyle::Compacted)?;
        let mut time: Option<(i64, i64)> = None;
        let time_index = job.table.time_index();
        let merged = merge_sorted(&job.table, inputs, batch_rows, |batch| {
            if self.compact_wake.0.lock().stop {
                return Err(StorageError::ShutDown(
                    "compaction stopped: the engine is closing".into(),
                ));
            }
            if let Some((lo, hi)) = time_bounds(&batch, time_index) {
                time = Some(time.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
            writer.write(&batch)
        })?;
        let bytes = writer.finish()?;
        Ok((
            JobStats {
                rows_in: merged.rows_in,
                rows_out: merged.rows_out,
                time,
            },
            bytes,
        ))
    }

    /// Publishes the output: if every input is still live, the manifest lists the output in
    /// their place and the inputs as retired. Returns `false` when an input left meanwhile
    /// (retention, `DROP TABLE`): the output is then garbage and removed.
    fn finish_job(
        &self,
        job: &Job,
        output: SegmentMeta,
        output_path: &std::path::Path,
    ) -> Result<bool> {
        let guard = self.flush_lock.lock();
        let mut manifest = (*self.state.read().manifest).clone();
        let inputs: HashSet<u64> = job.inputs.iter().map(|s| s.meta.id).collect();
        let live = manifest
            .segments
            .iter()
            .filter(|s| inputs.contains(&s.id))
            .count();
        if live != inputs.len() {
            drop(guard);
            self.abandon_job(job, output_path);
            return Ok(false);
        }
        let (gone, kept): (Vec<_>, Vec<_>) = manifest
            .segments
            .into_iter()
            .partition(|s| inputs.contains(&s.id));
        manifest.segments = kept;
        manifest.segments.push(output.clone());
        manifest.segments.sort_by_key(|s| s.id);
        manifest
            .retired
            .extend(gone.iter().map(RetiredSegment::from));
        manifest.compacting.retain(|c| c.id != output.id);
        if let Err(failed) = manifest.try_store(&self.config.data_dir) {
            // Not renamed: the manifest on disk lists the output as compacting, so it is
            // garbage. Renamed: it may be live on disk, so it stays; memory still lists the
            // inputs, and whichever manifest is stored next is consistent either way.
            if !failed.renamed {
                drop(guard);
                self.abandon_job(job, output_path);
            }
            return Err(failed.error);
        }
        let retired = {
            let mut st = self.state.write();
            st.manifest = Arc::new(manifest);
            st.files.insert(
                output.id,
                Arc::new(SegmentFile::new(output_path.to_path_buf(), output)),
            );
            gone.iter()
                .filter_map(|s| st.files.remove(&s.id))
                .inspect(|f| f.retire())
                .collect::<Vec<_>>()
        };
        self.forget_segments(&gone);
        drop(guard);
        // Files are deleted here unless a running query still reads them.
        drop(retired);
        Ok(true)
    }

    /// Removes an unfinished output and its `compacting` entry (the next start would remove
    /// both anyway; this gives the space back now).
    fn abandon_job(&self, job: &Job, output_path: &std::path::Path) {
        let mut removed = true;
        for path in [
            output_path.to_path_buf(),
            crate::checksum::sidecar_path(output_path),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    removed = false;
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove an abandoned compaction's output; the next start removes it");
                }
            }
        }
        if !removed {
            // Still listed as compacting, so the next start knows the file is garbage.
            return;
        }
        let _guard = self.flush_lock.lock();
        let mut manifest = (*self.state.read().manifest).clone();
        manifest.compacting.retain(|c| c.id != job.output.id);
        match manifest.store(&self.config.data_dir) {
            Ok(()) => self.state.write().manifest = Arc::new(manifest),
            Err(e) => tracing::warn!(error = %e, "cannot record an abandoned compaction"),
        }
    }
}

/// What merging a job's inputs produced.
struct JobStats {
    rows_in: u64,
    rows_out: u64,
    time: Option<(i64, i64)>,
}

/// The compactor thread: looks for due partitions when woken (after flushes) and at least
/// every `COMPACTOR_WAKE_MS`, and runs jobs one at a time until none is due. A failing job is
/// retried with a backoff, so a full disk neither spins nor floods the log.
pub(crate) fn run_compactor(inner: &Inner) {
    use crate::limits::{COMPACTOR_WAKE_MS, FLUSH_RETRY_DELAY_MAX_MS, FLUSH_RETRY_DELAY_MIN_MS};
    use crate::stall::Backoff;
    let (lock, cv) = &inner.compact_wake;
    let mut retry = Backoff::new(
        Duration::from_millis(FLUSH_RETRY_DELAY_MIN_MS),
        Duration::from_millis(FLUSH_RETRY_DELAY_MAX_MS),
    );
    loop {
        {
            let mut sig = lock.lock();
            if !sig.requested && !sig.stop {
                let wake = retry
                    .remaining()
                    .unwrap_or(Duration::from_millis(COMPACTOR_WAKE_MS))
                    .min(Duration::from_millis(COMPACTOR_WAKE_MS));
                cv.wait_for(&mut sig, wake);
            }
            if sig.stop {
                return;
            }
            sig.requested = false;
        }
        if !inner.config.compaction || !retry.ready() {
            continue;
        }
        loop {
            match inner.compact_once(false) {
                Ok(Step::Ran(_) | Step::Abandoned) => {
                    retry.succeeded();
                    if inner.compact_wake.0.lock().stop {
                        return;
                    }
                }
                Ok(Step::Idle) => {
                    retry.succeeded();
                    break;
                }
                Err(e) => {
                    if inner.compact_wake.0.lock().stop {
                        return;
                    }
                    inner.metrics.compaction_failed();
                    if e.is_disk_full() {
                        // Every partition would fail alike: wait before trying any.
                        let retry_in_ms = retry.failed().as_millis() as u64;
                        tracing::error!(
                            error = %e,
                            retry_in_ms,
                            "compaction failed; the partition's segments stay as they are, will retry"
                        );
                        break;
                    }
                    tracing::error!(
                        error = %e,
                        "compaction of a partition failed; its segments stay as they are, and it is retried later while other partitions go on"
                    );
                }
            }
        }
    }
}
