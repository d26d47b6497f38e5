//! The latest row of the series a tag filter selects, without a scan: what
//! `SELECT ... WHERE tag = v ORDER BY time DESC LIMIT 1` returns.
//!
//! Segments are immutable and sorted by (tags, time), so the last row of each run of equal
//! tags is that series' latest row in the segment. A [`SegmentLatest`] holds those rows with an
//! index by tag value; it is computed when the segment is flushed (from the rows in hand) or
//! the first time a query needs it (by reading the file), and kept in a [`LatestCache`] under
//! a memory budget. A lookup walks the memtable (through the newest-row marks it keeps per
//! series) and then segments newest first, and stops at the first segment whose newest row is
//! older than the best row found: the answer is exact at any time, with no cache to invalidate.
//!
//! Equal keys in several sources are merged as the read path merges them (field by field,
//! later write wins), so the answer is the row a full scan would have returned.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, TimestampNanosecondArray};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::{concat_batches, partition, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::dedup::{conform, sort_dedup};
use crate::error::Result;
use crate::memtable::MemChunk;
use crate::schema::TableSchema;
use crate::segment::{SegmentFile, read_segment};
use crate::tag_index::TagSelection;

/// The latest row of every series in one segment, indexed by tag value.
#[derive(Debug)]
pub struct SegmentLatest {
    /// One row per series, in the schema the summary was built with.
    rows: RecordBatch,
    times: Vec<i64>,
    /// Tag column name → tag value → rows of `rows` carrying it.
    index: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl SegmentLatest {
    /// Summarizes the rows of a segment, sorted by (tags, time) and deduplicated as segments
    /// are; `None` if the rows lack a time column.
    pub fn from_sorted(table: &TableSchema, batch: &RecordBatch) -> Result<Option<Self>> {
        let Ok(time_index) = batch.schema().index_of(table.time_column()) else {
            return Ok(None);
        };
        let tag_names: Vec<&str> = table
            .tag_indices()
            .iter()
            .map(|&i| table.columns()[i].name.as_str())
            .filter(|n| batch.schema().index_of(n).is_ok())
            .collect();
        let last_of_run: Vec<u32> = if batch.num_rows() == 0 {
            Vec::new()
        } else if tag_names.is_empty() {
            vec![batch.num_rows() as u32 - 1]
        } else {
            let cols = tag_names
                .iter()
                .map(|n| batch.column_by_name(n).cloned())
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default();
            partition(&cols)?
                .ranges()
                .iter()
                .map(|r| r.end as u32 - 1)
                .collect()
        };
        let idx = datafusion::arrow::array::UInt32Array::from(last_of_run);
        let columns = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let rows = RecordBatch::try_new(batch.schema(), columns)?;
        let Some(times) = rows
            .column(time_index)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
        else {
            return Ok(None);
        };
        let times = times.values().to_vec();
        let mut index: HashMap<String, HashMap<String, Vec<u32>>> = HashMap::new();
        for name in tag_names {
            let Some(col) = rows.column_by_name(name) else {
                continue;
            };
            let Some(values) = col.as_string_opt::<i32>() else {
                continue;
            };
            let by_value = index.entry(name.to_string()).or_default();
            for (r, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    by_value.entry(v.to_string()).or_default().push(r as u32);
                }
            }
        }
        Ok(Some(Self { rows, times, index }))
    }

    /// Reads a segment file and summarizes it.
    pub fn read(file: &SegmentFile, table: &TableSchema) -> Result<Option<Self>> {
        let batches = read_segment(&file.path, table.arrow_schema())?;
        let batch = concat_batches(table.arrow_schema(), &batches)?;
        Self::from_sorted(table, &batch)
    }

    /// Rows (of the summary) whose tags hold every `(column, value)` of `tags`.
    fn matching(&self, tags: &[(String, String)]) -> Vec<u32> {
        let Some(((first_col, first_val), rest)) = tags.split_first() else {
            return (0..self.rows.num_rows() as u32).collect();
        };
        let Some(candidates) = self.index.get(first_col).and_then(|m| m.get(first_val)) else {
            return Vec::new();
        };
        candidates
            .iter()
            .copied()
            .filter(|&r| {
                rest.iter().all(|(c, v)| {
                    self.index
                        .get(c)
                        .and_then(|m| m.get(v))
                        .is_some_and(|rows| rows.binary_search(&r).is_ok())
                })
            })
            .collect()
    }

    /// Approximate memory held, in bytes.
    pub fn bytes(&self) -> usize {
        let index: usize = self
            .index
            .values()
            .flat_map(|m| m.iter())
            .map(|(k, v)| k.len() + v.len() * 4 + 48)
            .sum();
        self.rows.get_array_memory_size() + self.times.len() * 8 + index
    }
}

/// Summaries of recently used segments, by segment id, within a memory budget; the least
/// recently used are dropped first.
#[derive(Debug)]
pub struct LatestCache {
    budget: usize,
    bytes: usize,
    tick: u64,
    entries: HashMap<u64, (u64, Arc<SegmentLatest>)>,
}

impl LatestCache {
    /// An empty cache that holds at most `budget` bytes of summaries.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    /// The summary of segment `id`, if cached.
    pub fn get(&mut self, id: u64) -> Option<Arc<SegmentLatest>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(&id).map(|(used, s)| {
            *used = tick;
            s.clone()
        })
    }

    /// Caches the summary of segment `id`, evicting the least recently used over budget.
    pub fn insert(&mut self, id: u64, summary: Arc<SegmentLatest>) {
        self.tick += 1;
        self.bytes += summary.bytes();
        if let Some((_, old)) = self.entries.insert(id, (self.tick, summary)) {
            self.bytes -= old.bytes();
        }
        while self.bytes > self.budget && self.entries.len() > 1 {
            let Some((&victim, _)) = self.entries.iter().min_by_key(|(_, (used, _))| *used) else {
                break;
            };
            self.remove(victim);
        }
    }

    /// Forgets segment `id` (it left the manifest).
    pub fn remove(&mut self, id: u64) {
        if let Some((_, old)) = self.entries.remove(&id) {
            self.bytes -= old.bytes();
        }
    }
}

/// Rows tied for the newest time so far, with their write order.
struct Best {
    time: Option<i64>,
    /// ((0 = segment, 1 = memory), source number, row number) → one row.
    ties: Vec<((u8, u64, u64), RecordBatch)>,
}

impl Best {
    fn beats(&self, t: i64) -> bool {
        self.time.is_some_and(|b| b > t)
    }

    fn offer(&mut self, order: (u8, u64, u64), t: i64, row: impl FnOnce() -> RecordBatch) {
        match self.time {
            Some(b) if b > t => {}
            Some(b) if b == t => self.ties.push((order, row())),
            _ => {
                self.time = Some(t);
                self.ties.clear();
                self.ties.push((order, row()));
            }
        }
    }
}

/// Offers the newest of the rows of memory chunk number `ci` at `positions` (batch, row).
/// Only their times are read, and only the rows at the newest time are sliced: a series in
/// memory has thousands of rows, each newer than the one before.
fn offer_newest(
    best: &mut Best,
    table: &TableSchema,
    ci: usize,
    chunk: &MemChunk,
    positions: impl Iterator<Item = (usize, usize)> + Clone,
) {
    let times: Vec<Option<ScalarBuffer<i64>>> = chunk
        .batches
        .iter()
        .map(|b| {
            b.column_by_name(table.time_column())
                .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
                .map(|t| t.values().clone())
        })
        .collect();
    let time_at = |(bi, r): (usize, usize)| times[bi].as_ref().map(|t| t[r]);
    let Some(newest) = positions.clone().filter_map(time_at).max() else {
        return;
    };
    if best.beats(newest) {
        return;
    }
    for (bi, r) in positions {
        if time_at((bi, r)) == Some(newest) {
            let order = (1, ci as u64, ((bi as u64) << 32) | r as u64);
            best.offer(order, newest, || chunk.batches[bi].slice(r, 1));
        }
    }
}

/// The latest row, in the table schema, among the rows of `memory` and `segments` whose tags
/// hold every `(column, value)` of `tags`; `summary` gives a segment's [`SegmentLatest`].
pub(crate) fn latest_row(
    table: &TableSchema,
    memory: &[MemChunk],
    segments: &[Arc<SegmentFile>],
    tags: &[(String, String)],
    mut summary: impl FnMut(&Arc<SegmentFile>) -> Result<Option<Arc<SegmentLatest>>>,
) -> Result<Option<RecordBatch>> {
    let schema: &SchemaRef = table.arrow_schema();
    let mut best = Best {
        time: None,
        ties: Vec::new(),
    };
    let selection = TagSelection {
        any_of: tags
            .iter()
            .map(|(c, v)| (c.clone(), vec![v.clone()]))
            .collect(),
    };
    // Memory is newer than every segment, and later chunks newer than earlier ones.
    for (ci, chunk) in memory.iter().enumerate().rev() {
        if chunk.batches.is_empty() || best.beats(chunk.max_time) {
            continue;
        }
        // Each series' newest row is marked: look at those few rows only.
        if let Some(newest) = chunk.newest_positions(&selection) {
            offer_newest(&mut best, table, ci, chunk, newest.into_iter());
            continue;
        }
        match chunk.positions(&selection) {
            Some(positions) => offer_newest(&mut best, table, ci, chunk, positions.into_iter()),
            // No tag condition: every row is a candidate.
            None => {
                let all = chunk
                    .batches
                    .iter()
                    .enumerate()
                    .flat_map(|(bi, b)| (0..b.num_rows()).map(move |r| (bi, r)));
                offer_newest(&mut best, table, ci, chunk, all)
            }
        }
    }
    let mut newest_first: Vec<&Arc<SegmentFile>> = segments.iter().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.meta.max_time));
    for segment in newest_first {
        if best.beats(segment.meta.max_time) {
            break;
        }
        let Some(s) = summary(segment)? else {
            continue;
        };
        for r in s.matching(tags) {
            let t = s.times[r as usize];
            best.offer((0, segment.meta.id, r as u64), t, || {
                s.rows.slice(r as usize, 1)
            });
        }
    }
    let mut ties = best.ties;
    match ties.len() {
        0 => Ok(None),
        1 => Ok(Some(conform(&ties[0].1, schema)?)),
        _ => {
            // Several versions of one key (or several series at the same instant): merge as
            // the read path does, in write order, and take the first series.
            ties.sort_by_key(|(order, _)| *order);
            let rows = ties
                .iter()
                .map(|(_, b)| conform(b, schema))
                .collect::<Result<Vec<_>>>()?;
            Ok(sort_dedup(table, &rows)?.map(|b| b.slice(0, 1)))
        }
    }
}
