//! The read side: consistent snapshots of a table, and the plan that says which segment files
//! can be scanned as they are and which rows had to be merged here.
//!
//! A snapshot holds `Arc`s to its segments and memtable chunks, so it stays readable while
//! writes, flushes and retention go on. Merging (sort and field-wise dedup) is paid only where
//! sources overlap in time; everything else is handed to the reader untouched.

use std::sync::Arc;

use parking_lot::Mutex;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use crate::dedup::{conform, filter_time, sort_dedup};
use crate::engine::Inner;
use crate::error::{Result, StorageError};
use crate::latest::SegmentLatest;
use crate::memtable::MemChunk;
use crate::schema::TableSchema;
use crate::segment::{MetadataCache, SegmentFile, SegmentRange, read_segment, read_segment_range};
use crate::tag_index::TagSelection;

/// The data of one table as of one instant, for a reader.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// The table's schema at that instant.
    pub schema: Arc<TableSchema>,
    /// Live segments of the table, by increasing id; held, so their files stay readable.
    pub segments: Vec<Arc<SegmentFile>>,
    /// In-memory chunks, oldest first.
    pub memory: Vec<MemChunk>,
    /// The engine's cache of verified segment footers.
    pub(crate) footers: Arc<Mutex<MetadataCache>>,
}

/// How to read a snapshot for a time range: files that can be scanned as they are, plus rows
/// that had to be merged in memory because their sources overlap.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// Segments that overlap no other source in the range: read directly (hold the
    /// `Arc` until the read is done; see [`SegmentFile`]).
    pub files: Vec<Arc<SegmentFile>>,
    /// Rows from memory and from overlapping segments, deduplicated, in the table schema.
    pub batches: Vec<RecordBatch>,
    /// Segments of the table skipped because their time range misses the query's.
    pub segments_pruned: usize,
}

/// Selects rows of a batch (in the table schema) by their key columns; see
/// [`TableSnapshot::read_plan_filtered`].
pub type KeyFilter =
    dyn Fn(&RecordBatch) -> std::result::Result<BooleanArray, ArrowError> + Send + Sync;

/// The rows of `batch` (in the table schema) that `tags` accepts, as the memtable's tag index
/// would select them (a null tag matches no value); `None` when `tags` selects nothing.
fn tag_mask(batch: &RecordBatch, tags: &TagSelection) -> Result<Option<BooleanArray>> {
    use datafusion::arrow::compute::kernels::boolean;
    if tags.is_empty() {
        return Ok(None);
    }
    let mut all: Option<BooleanArray> = None;
    for (column, values) in &tags.any_of {
        let Ok(idx) = batch.schema().index_of(column) else {
            return Ok(Some(BooleanArray::from(vec![false; batch.num_rows()])));
        };
        let any = crate::tag_index::any_of_mask(batch.column(idx), values)?;
        all = Some(match all {
            Some(a) => boolean::and_kleene(&a, &any)?,
            None => any,
        });
    }
    Ok(all)
}

impl Inner {
    /// The data of a table as of now, for a table looked up already.
    pub(crate) fn snapshot_of(&self, schema: &Arc<TableSchema>) -> TableSnapshot {
        let id = schema.def().id;
        let st = self.state.read();
        let mut memory: Vec<MemChunk> = st
            .frozen
            .iter()
            .filter_map(|f| f.mem.tables.get(&id).map(|t| t.chunk()))
            .collect();
        if let Some(t) = st.active.tables.get(&id) {
            memory.push(t.chunk());
        }
        let segments = st
            .files
            .values()
            .filter(|s| s.meta.table_id == id)
            .cloned()
            .collect();
        TableSnapshot {
            schema: schema.clone(),
            segments,
            memory,
            footers: self.segment_metadata.clone(),
        }
    }

    /// The body of [`Db::latest_row`](crate::Db::latest_row): segment summaries come from the
    /// cache, or are read from the file once and cached.
    pub(crate) fn latest_row(
        &self,
        snapshot: &TableSnapshot,
        tags: &[(String, String)],
    ) -> Result<Option<RecordBatch>> {
        let table = &snapshot.schema;
        crate::latest::latest_row(table, &snapshot.memory, &snapshot.segments, tags, |f| {
            if let Some(s) = self.latest.lock().get(f.meta.id) {
                return Ok(Some(s));
            }
            let Some(summary) = SegmentLatest::read(f, table)? else {
                return Ok(None);
            };
            let summary = Arc::new(summary);
            self.latest.lock().insert(f.meta.id, summary.clone());
            Ok(Some(summary))
        })
    }
}

impl TableSnapshot {
    /// Every row of the snapshot with time in `[lo, hi]`, each key once, in the table schema.
    pub fn read_all(&self, lo: i64, hi: i64) -> Result<Vec<RecordBatch>> {
        let plan = self.read_plan(lo, hi)?;
        let mut out = Vec::new();
        for f in &plan.files {
            for b in read_segment(&f.path, self.schema.arrow_schema())? {
                out.push(filter_time(&b, self.schema.time_index(), lo, hi)?);
            }
        }
        for b in plan.batches {
            out.push(filter_time(&b, self.schema.time_index(), lo, hi)?);
        }
        out.retain(|b| b.num_rows() > 0);
        Ok(out)
    }

    /// The newest time held, if any rows are.
    pub fn max_time(&self) -> Option<i64> {
        self.segments
            .iter()
            .map(|s| s.meta.max_time)
            .chain(self.memory.iter().map(|m| m.max_time))
            .max()
    }

    /// Rows in the snapshot (before deduplication of overlapping sources).
    pub fn row_count(&self) -> u64 {
        let seg: u64 = self.segments.iter().map(|s| s.meta.rows).sum();
        let mem: usize = self
            .memory
            .iter()
            .flat_map(|m| m.batches.iter())
            .map(|b| b.num_rows())
            .sum();
        seg + mem as u64
    }

    /// Decides how to read the rows with time in `[lo, hi]`: sources that overlap no other
    /// source are read as they are; overlapping ones (and memory that may hold duplicate
    /// keys) are merged and deduplicated here, so the reader sees each key once.
    pub fn read_plan(&self, lo: i64, hi: i64) -> Result<ReadPlan> {
        self.read_plan_filtered(lo, hi, &TagSelection::default(), None, None)
    }

    /// The rows of overlapping segments for a merge (see [`read_segment_range`]), in the order
    /// given. Several are read at once, one thread per core: a point query pays a few
    /// milliseconds of page decoding in each, and they are independent.
    fn read_overlapping(
        &self,
        segments: &[&Arc<SegmentFile>],
        range: (i64, i64),
        tags: &TagSelection,
        columns: Option<&[String]>,
    ) -> Vec<Result<SegmentRange>> {
        let schema = self.schema.arrow_schema();
        let time = self.schema.time_column();
        let read = |s: &SegmentFile| {
            let started = std::time::Instant::now();
            let read = read_segment_range(s, &self.footers, schema, time, range, tags, columns);
            if let Ok(r) = &read {
                tracing::debug!(
                    segment = s.meta.id,
                    rows = r.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                    bytes_read = r.bytes_read,
                    us = started.elapsed().as_micros() as u64,
                    "read an overlapping segment for a merge"
                );
            }
            read
        };
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(segments.len());
        if threads <= 1 {
            return segments.iter().map(|s| read(s)).collect();
        }
        let mut out: Vec<Option<Result<SegmentRange>>> = segments.iter().map(|_| None).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|k| {
                    let read = &read;
                    scope.spawn(move || {
                        segments
                            .iter()
                            .enumerate()
                            .skip(k)
                            .step_by(threads)
                            .map(|(i, s)| (i, read(s)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for w in workers {
                match w.join() {
                    Ok(done) => {
                        for (i, r) in done {
                            out[i] = Some(r);
                        }
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(StorageError::ShutDown("a segment read was lost".into())))
            })
            .collect()
    }

    /// [`read_plan`](Self::read_plan) keeping, among the rows that are read here (memory and
    /// overlapping segments), only those `tags` (through the memtable's tag index) and `keep`
    /// select. Both must look at key columns (tags, time) only: every version of a key then
    /// shares their verdict, so filtering before deduplication gives the same rows as filtering
    /// after it, and a point query merges a handful of rows instead of the memtable.
    ///
    /// With `columns`, rows merged from overlapping segments hold only those columns and the
    /// key columns (the others are null): the reader projects them away anyway.
    pub fn read_plan_filtered(
        &self,
        lo: i64,
        hi: i64,
        tags: &TagSelection,
        keep: Option<&KeyFilter>,
        columns: Option<&[String]>,
    ) -> Result<ReadPlan> {
        let columns: Option<Vec<String>> = columns.map(|c| {
            let fields = self.schema.arrow_schema().fields();
            let mut names: Vec<String> = c.to_vec();
            names.push(self.schema.time_column().to_string());
            names.extend(
                self.schema
                    .tag_indices()
                    .iter()
                    .filter_map(|&i| fields.get(i).map(|f| f.name().clone())),
            );
            names
        });
        let select = |b: &RecordBatch| -> Result<RecordBatch> {
            let b = conform(b, self.schema.arrow_schema())?;
            match keep {
                Some(keep) => Ok(datafusion::arrow::compute::filter_record_batch(
                    &b,
                    &keep(&b)?,
                )?),
                None => Ok(b),
            }
        };
        enum Source<'a> {
            Segment(&'a Arc<SegmentFile>),
            Memory(usize, &'a MemChunk),
        }
        let mut items: Vec<(i64, i64, Source)> = Vec::new();
        let mut pruned = 0;
        for s in &self.segments {
            if s.meta.max_time < lo || s.meta.min_time > hi {
                pruned += 1;
            } else {
                items.push((s.meta.min_time, s.meta.max_time, Source::Segment(s)));
            }
        }
        for (i, m) in self.memory.iter().enumerate() {
            if !m.batches.is_empty() && m.max_time >= lo && m.min_time <= hi {
                items.push((m.min_time, m.max_time, Source::Memory(i, m)));
            }
        }
        // Clusters of transitively overlapping time ranges, each kept in write order.
        items.sort_by_key(|(lo, _, _)| *lo);
        let mut clusters: Vec<Vec<(i64, i64, Source)>> = Vec::new();
        let mut cluster_hi = i64::MIN;
        for item in items {
            match clusters.last_mut() {
                Some(c) if item.0 <= cluster_hi => {
                    cluster_hi = cluster_hi.max(item.1);
                    c.push(item);
                }
                _ => {
                    cluster_hi = item.1;
                    clusters.push(vec![item]);
                }
            }
        }
        let mut plan = ReadPlan {
            files: Vec::new(),
            batches: Vec::new(),
            segments_pruned: pruned,
        };
        for mut cluster in clusters {
            if cluster.len() == 1 {
                match &cluster[0].2 {
                    Source::Segment(s) => {
                        plan.files.push(Arc::clone(s));
                        continue;
                    }
                    Source::Memory(_, m) if !m.may_have_duplicates => {
                        for b in &m.select(tags)? {
                            let b = select(b)?;
                            if b.num_rows() > 0 {
                                plan.batches.push(b);
                            }
                        }
                        continue;
                    }
                    Source::Memory(..) => {}
                }
            }
            // Write order: segments by id, then memory (which is newer than every segment).
            cluster.sort_by_key(|(_, _, s)| match s {
                Source::Segment(s) => (0, s.meta.id),
                Source::Memory(i, _) => (1, *i as u64),
            });
            // Only the selected series go into the merge: a point query over a day that
            // overlaps the memtable then sorts a handful of rows, not the whole segment.
            let segments: Vec<&Arc<SegmentFile>> = cluster
                .iter()
                .filter_map(|(_, _, s)| match s {
                    Source::Segment(s) => Some(*s),
                    Source::Memory(..) => None,
                })
                .collect();
            let mut reads = self
                .read_overlapping(&segments, (lo, hi), tags, columns.as_deref())
                .into_iter();
            let mut batches = Vec::new();
            for (_, _, s) in &cluster {
                match s {
                    Source::Segment(_) => {
                        let Some(read) = reads.next() else { break };
                        for b in read?.batches {
                            let b = select(&b)?;
                            let b = match tag_mask(&b, tags)? {
                                Some(mask) => {
                                    datafusion::arrow::compute::filter_record_batch(&b, &mask)?
                                }
                                None => b,
                            };
                            if b.num_rows() > 0 {
                                batches.push(b);
                            }
                        }
                    }
                    Source::Memory(_, m) => {
                        let started = std::time::Instant::now();
                        for b in &m.select(tags)? {
                            batches.push(select(b)?);
                        }
                        tracing::debug!(
                            us = started.elapsed().as_micros() as u64,
                            "selected memory rows for a merge"
                        );
                    }
                }
            }
            let started = std::time::Instant::now();
            if let Some(b) = sort_dedup(&self.schema, &batches)? {
                plan.batches.push(b);
            }
            tracing::debug!(
                us = started.elapsed().as_micros() as u64,
                "merged overlapping sources"
            );
        }
        Ok(plan)
    }
}
