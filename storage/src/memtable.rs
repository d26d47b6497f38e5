//! The in-memory buffer of recent writes, per table, in write order.
//!
//! Batches are kept as written (Arrow, already validated). For each table the memtable tracks
//! the time range and whether two rows could share a key: it remembers the newest time of each
//! series (hash of its tag values), and a row that is not strictly newer than its series' last
//! row marks the table as possibly holding duplicates. Readers only pay for sorting and
//! deduplication when that flag is set.
//!
//! The same pass marks each series' newest row in a roaring bitmap (two bitmap updates per
//! row that advances its series), so a latest-row lookup intersects that bitmap with the tag
//! index's rows instead of reading the time of every row of the series.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use roaring::RoaringBitmap;

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
    /// Per series (hash of its tags): its newest time and the row number (across `batches`,
    /// in write order) that holds it.
    series_last: HashMap<u64, (i64, u32)>,
    /// The row numbers `series_last` points at: each series' newest row, for latest-row
    /// lookups. Exact unless `newest_inexact`.
    newest_rows: RoaringBitmap,
    /// No series received two rows with one time, and the tags never changed: every series'
    /// newest row is one row, not a merge of several.
    newest_inexact: bool,
    rows: u32,
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
            self.newest_inexact = true;
        }
        for (i, &h) in series_hashes.iter().enumerate() {
            let t = times.value(i);
            let row = self.rows + i as u32;
            self.min_time = self.min_time.min(t);
            self.max_time = self.max_time.max(t);
            match self.series_last.get_mut(&h) {
                Some((last, _)) if *last > t => self.may_have_duplicates = true,
                Some((last, _)) if *last == t => {
                    self.may_have_duplicates = true;
                    self.newest_inexact = true;
                }
                Some((last, at)) => {
                    self.newest_rows.remove(*at);
                    self.newest_rows.insert(row);
                    (*last, *at) = (t, row);
                }
                None => {
                    self.series_last.insert(h, (t, row));
                    self.newest_rows.insert(row);
                }
            }
        }
        self.rows += batch.num_rows() as u32;
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
    /// Stream sources' positions as of `last_seq`, from the records applied here: saved in
    /// the manifest when this memtable is flushed.
    pub source_offsets: crate::source::SourceOffsets,
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

    /// Records how far a source had consumed with the record `seq` (which may hold no rows).
    pub fn apply_progress(&mut self, seq: u64, progress: &crate::source::SourceProgress) {
        crate::source::merge_progress(&mut self.source_offsets, progress);
        self.last_seq = self.last_seq.max(seq);
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
    /// Each series' newest row (row numbers across `batches`), when that is one row.
    newest_rows: Option<RoaringBitmap>,
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
        self.index.lock().positions(&self.batches, selection, None)
    }

    /// The positions of the newest row of each series `selection` accepts, or `None` when
    /// a series' newest row may be a merge of several (then use [`positions`](Self::positions)).
    pub fn newest_positions(&self, selection: &TagSelection) -> Option<Vec<(usize, usize)>> {
        let newest = self.newest_rows.as_ref()?;
        let positions = self
            .index
            .lock()
            .positions(&self.batches, selection, Some(newest));
        Some(positions.unwrap_or_default())
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
            // Copied: writers move these marks as newer rows arrive. Roaring keeps one mark
            // per series in a few kilobytes, so the copy is cheap.
            newest_rows: (!self.newest_inexact).then(|| self.newest_rows.clone()),
            index: self.index.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::TableMemtable;
    use crate::tag_index::TagSelection;

    /// Rows of (host, time); the host's string is its series hash too.
    fn apply(m: &mut TableMemtable, rows: &[(&str, i64)]) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", crate::schema::time_data_type(), false),
            Field::new("host", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            ],
        )
        .expect("batch");
        let hashes: Vec<u64> = rows.iter().map(|r| r.0.as_bytes()[0] as u64).collect();
        m.apply(batch, 0, 1, &hashes);
    }

    fn host(h: &str) -> TagSelection {
        TagSelection {
            any_of: vec![("host".into(), vec![h.into()])],
        }
    }

    #[test]
    fn marks_each_series_newest_row_until_a_time_repeats() {
        let mut m = TableMemtable::default();
        apply(&mut m, &[("a", 1), ("b", 5), ("a", 3)]);
        // Out of order: the newest stays where it was.
        apply(&mut m, &[("a", 2), ("b", 6)]);
        let chunk = m.chunk();
        assert_eq!(chunk.newest_positions(&host("a")), Some(vec![(0, 2)]));
        assert_eq!(chunk.newest_positions(&host("b")), Some(vec![(1, 1)]));
        assert_eq!(chunk.newest_positions(&host("c")), Some(vec![]));
        assert_eq!(
            chunk.newest_positions(&TagSelection::default()),
            Some(vec![(0, 2), (1, 1)])
        );
        // A snapshot keeps its marks while writers move on.
        apply(&mut m, &[("a", 9)]);
        assert_eq!(chunk.newest_positions(&host("a")), Some(vec![(0, 2)]));
        assert_eq!(m.chunk().newest_positions(&host("a")), Some(vec![(2, 0)]));
        // A repeated time needs a merge: no marks from then on.
        apply(&mut m, &[("b", 6)]);
        assert_eq!(m.chunk().newest_positions(&host("b")), None);
    }
}
