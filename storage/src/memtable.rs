//! The in-memory buffer of recent writes, per table, in write order.
//!
//! Batches are kept as written (Arrow, already validated). For each table the memtable tracks
//! the time range and whether two rows could share a key: it remembers the newest time of each
//! series (hash of its tag values), and a row that is not strictly newer than its series' last
//! row marks the table as possibly holding duplicates. Readers only pay for sorting and
//! deduplication when that flag is set.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;

use crate::error::Result;
use crate::tag_index::{TagIndex, TagSelection};

/// Recent rows of one table.
#[derive(Debug, Clone, Default)]
pub struct TableMemtable {
    /// Batches in write (sequence) order.
    pub batches: Vec<RecordBatch>,
    /// Approximate memory held, in bytes.
    pub bytes: usize,
    /// Smallest time held.
    pub min_time: i64,
    /// Largest time held.
    pub max_time: i64,
    /// Whether two rows may share a (tags, time) key.
    pub may_have_duplicates: bool,
    series_last_time: HashMap<u64, i64>,
    tag_count: usize,
    /// Tag indexes over `batches`, built by readers as they need them.
    index: Arc<Mutex<TagIndex>>,
}

impl TableMemtable {
    fn apply(
        &mut self,
        batch: RecordBatch,
        time_index: usize,
        tag_count: usize,
        series_hashes: &[u64],
    ) {
        let Some(times) = batch
            .column(time_index)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
        else {
            return;
        };
        if batch.num_rows() == 0 {
            return;
        }
        if self.batches.is_empty() {
            self.min_time = i64::MAX;
            self.max_time = i64::MIN;
            self.tag_count = tag_count;
        } else if self.tag_count != tag_count {
            // A tag was added: series hashes are no longer comparable with earlier ones.
            self.may_have_duplicates = true;
        }
        for (i, &h) in series_hashes.iter().enumerate() {
            let t = times.value(i);
            self.min_time = self.min_time.min(t);
            self.max_time = self.max_time.max(t);
            match self.series_last_time.get_mut(&h) {
                Some(last) if *last >= t => self.may_have_duplicates = true,
                Some(last) => *last = t,
                None => {
                    self.series_last_time.insert(h, t);
                }
            }
        }
        self.bytes += batch.get_array_memory_size() + series_hashes.len() * 16;
        self.batches.push(batch);
    }
}

/// Recent rows of all tables, keyed by table id.
#[derive(Debug, Default)]
pub struct Memtable {
    /// Per-table buffers.
    pub tables: HashMap<u64, TableMemtable>,
    /// Approximate memory held, in bytes.
    pub bytes: usize,
    /// Highest sequence number applied.
    pub last_seq: u64,
    /// When the first write since the last freeze arrived.
    pub first_write: Option<std::time::Instant>,
}

impl Memtable {
    /// Adds a batch written with sequence number `seq`.
    pub fn apply(
        &mut self,
        seq: u64,
        table_id: u64,
        time_index: usize,
        tag_count: usize,
        batch: RecordBatch,
        series_hashes: &[u64],
    ) {
        let t = self.tables.entry(table_id).or_default();
        let before = t.bytes;
        t.apply(batch, time_index, tag_count, series_hashes);
        self.bytes += t.bytes - before;
        self.last_seq = self.last_seq.max(seq);
        self.first_write.get_or_insert_with(std::time::Instant::now);
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// A memtable that no longer takes writes and is being flushed to segments.
#[derive(Debug)]
pub struct FrozenMemtable {
    /// Its contents.
    pub mem: Memtable,
}

/// A chunk of in-memory rows of one table handed to a reader.
#[derive(Debug, Clone)]
pub struct MemChunk {
    /// Rows, in write order.
    pub batches: Vec<RecordBatch>,
    /// Smallest time held.
    pub min_time: i64,
    /// Largest time held.
    pub max_time: i64,
    /// Whether two rows may share a (tags, time) key.
    pub may_have_duplicates: bool,
    index: Arc<Mutex<TagIndex>>,
}

impl MemChunk {
    /// The rows `selection` accepts, by the tag index (all rows when it selects nothing).
    pub fn select(&self, selection: &TagSelection) -> Result<Vec<RecordBatch>> {
        if selection.is_empty() {
            return Ok(self.batches.clone());
        }
        self.index.lock().select(&self.batches, selection)
    }
}

impl MemChunk {
    /// The (batch, row) positions of the rows `selection` accepts, in write order, by the tag
    /// index; `None` when it selects nothing (all rows).
    pub fn positions(&self, selection: &TagSelection) -> Option<Vec<(usize, usize)>> {
        if selection.is_empty() {
            return None;
        }
        self.index.lock().positions(&self.batches, selection)
    }
}

impl TableMemtable {
    /// A read-only view of the rows, for a reader.
    pub fn chunk(&self) -> MemChunk {
        MemChunk {
            batches: self.batches.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            may_have_duplicates: self.may_have_duplicates,
            index: self.index.clone(),
        }
    }
}
