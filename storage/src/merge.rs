//! A k-way merge of sorted, deduplicated inputs (segments of one partition, oldest first) into
//! one sorted, deduplicated stream, with the same field-wise last-write-wins as `dedup.rs`.
//!
//! Each input holds one decoded batch at a time, so memory is bounded by the number of inputs
//! times the batch size, whatever the partition's size. Long runs of one input between the
//! keys of the others are found by binary search and copied as a whole; only keys present in
//! several inputs are merged column by column.

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use crate::error::{Result, StorageError};
use crate::schema::TableSchema;

/// One input: its batches in key order, each already conformed to the table schema.
pub(crate) type SortedBatches<'a> = Box<dyn Iterator<Item = Result<RecordBatch>> + Send + 'a>;

/// The current batch of one input and how far it was consumed.
struct Cursor<'a> {
    source: SortedBatches<'a>,
    name: String,
    batch: Option<RecordBatch>,
    keys: Option<Rows>,
    pos: usize,
    pool_idx: usize,
    last: Option<OwnedRow>,
}

/// The key of an input's current row, if it has one.
fn current<'c>(c: &'c Cursor) -> Option<datafusion::arrow::row::Row<'c>> {
    c.keys.as_ref().map(|k| k.row(c.pos))
}

/// What a merge read and wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeStats {
    /// Rows read from all inputs.
    pub rows_in: u64,
    /// Rows emitted (one per key).
    pub rows_out: u64,
}

/// Merges `inputs` (named for errors, in write order: a later input's values win) into
/// batches of at most `batch_rows` rows handed to `emit` in key order. An input whose keys do
/// not strictly increase is an error naming it: merging it would emit duplicates.
pub(crate) fn merge_sorted<'a>(
    table: &TableSchema,
    inputs: Vec<(String, SortedBatches<'a>)>,
    batch_rows: usize,
    mut emit: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<MergeStats> {
    let schema = table.arrow_schema().clone();
    let mut key_columns: Vec<usize> = table.tag_indices().to_vec();
    key_columns.push(table.time_index());
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let ncols = schema.fields().len();
    let batch_rows = batch_rows.max(1);
    let mut stats = MergeStats::default();
    let mut pool: Vec<RecordBatch> = Vec::new();
    let mut picks: Vec<Vec<(usize, usize)>> = vec![Vec::with_capacity(batch_rows); ncols];
    let mut pending = 0usize;
    let mut cursors: Vec<Cursor> = inputs
        .into_iter()
        .map(|(name, source)| Cursor {
            source,
            name,
            batch: None,
            keys: None,
            pos: 0,
            pool_idx: 0,
            last: None,
        })
        .collect();

    // Loads the next non-empty batch of an input whose batch is used up; returns whether it
    // has rows left.
    let refill = |c: &mut Cursor, pool: &mut Vec<RecordBatch>, rows_in: &mut u64| -> Result<bool> {
        loop {
            if let Some(b) = &c.batch
                && c.pos < b.num_rows()
            {
                return Ok(true);
            }
            c.batch = None;
            c.keys = None;
            let Some(next) = c.source.next() else {
                return Ok(false);
            };
            let batch = next?;
            if batch.num_rows() == 0 {
                continue;
            }
            let cols: Vec<_> = key_columns
                .iter()
                .map(|&i| batch.column(i).clone())
                .collect();
            let keys = converter.convert_columns(&cols)?;
            let unsorted = |at: usize| StorageError::Corrupt {
                path: c.name.clone().into(),
                offset: 0,
                reason: format!(
                    "rows are not in strictly increasing (tags, time) order at row {at} of a \
                     batch: it cannot be merged"
                ),
            };
            if let Some(last) = &c.last
                && keys.row(0) <= last.row()
            {
                return Err(unsorted(0));
            }
            for i in 1..keys.num_rows() {
                if keys.row(i) <= keys.row(i - 1) {
                    return Err(unsorted(i));
                }
            }
            c.last = Some(keys.row(keys.num_rows() - 1).owned());
            *rows_in += batch.num_rows() as u64;
            c.pool_idx = pool.len();
            pool.push(batch.clone());
            c.batch = Some(batch);
            c.keys = Some(keys);
            c.pos = 0;
        }
    };

    let flush = |pool: &mut Vec<RecordBatch>,
                 picks: &mut Vec<Vec<(usize, usize)>>,
                 cursors: &mut Vec<Cursor>,
                 pending: &mut usize,
                 emit: &mut dyn FnMut(RecordBatch) -> Result<()>|
     -> Result<()> {
        if *pending == 0 {
            return Ok(());
        }
        let mut columns = Vec::with_capacity(ncols);
        for (c, idx) in picks.iter().enumerate() {
            let arrays: Vec<&dyn Array> = pool.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(interleave(&arrays, idx)?);
        }
        emit(RecordBatch::try_new(schema.clone(), columns)?)?;
        for p in picks.iter_mut() {
            p.clear();
        }
        *pending = 0;
        // Only the batches inputs are still reading stay held.
        let mut kept = Vec::new();
        for c in cursors.iter_mut() {
            if let Some(b) = &c.batch {
                c.pool_idx = kept.len();
                kept.push(b.clone());
            }
        }
        *pool = kept;
        Ok(())
    };

    let mut live: Vec<usize> = Vec::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        if refill(c, &mut pool, &mut stats.rows_in)? {
            live.push(i);
        }
    }
    while !live.is_empty() {
        // The inputs holding the smallest key, in write order.
        let mut best: Vec<usize> = Vec::with_capacity(2);
        for &i in &live {
            let Some(k) = current(&cursors[i]) else {
                continue;
            };
            match best.first().and_then(|&b| current(&cursors[b])) {
                None => best = vec![i],
                Some(b) => match k.cmp(&b) {
                    std::cmp::Ordering::Less => best = vec![i],
                    std::cmp::Ordering::Equal => best.push(i),
                    std::cmp::Ordering::Greater => {}
                },
            }
        }
        if best.is_empty() {
            break;
        }
        if best.len() == 1 {
            // A run of one input: every row below the other inputs' smallest key.
            let b = best[0];
            let end = {
                let bound = live
                    .iter()
                    .filter(|&&i| i != b)
                    .filter_map(|&i| current(&cursors[i]))
                    .min();
                let c = &cursors[b];
                let (Some(keys), Some(batch)) = (c.keys.as_ref(), c.batch.as_ref()) else {
                    break;
                };
                let (mut lo, mut hi) = (c.pos + 1, batch.num_rows());
                if let Some(bound) = bound {
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if keys.row(mid) < bound {
                            lo = mid + 1;
                        } else {
                            hi = mid;
                        }
                    }
                } else {
                    lo = hi;
                }
                lo.min(c.pos + (batch_rows - pending))
            };
            let c = &mut cursors[b];
            for p in picks.iter_mut() {
                p.extend((c.pos..end).map(|r| (c.pool_idx, r)));
            }
            pending += end - c.pos;
            c.pos = end;
        } else {
            // One key in several inputs: keys from the first, each field from the latest
            // input that set it.
            for (col, p) in picks.iter_mut().enumerate() {
                let from = if key_columns.contains(&col) {
                    best[0]
                } else {
                    best.iter()
                        .rev()
                        .copied()
                        .find(|&i| {
                            let c = &cursors[i];
                            c.batch
                                .as_ref()
                                .is_some_and(|b| b.column(col).is_valid(c.pos))
                        })
                        .unwrap_or(best[best.len() - 1])
                };
                let c = &cursors[from];
                p.push((c.pool_idx, c.pos));
            }
            pending += 1;
            for &i in &best {
                cursors[i].pos += 1;
            }
        }
        let mut still = Vec::with_capacity(live.len());
        for &i in &live {
            if refill(&mut cursors[i], &mut pool, &mut stats.rows_in)? {
                still.push(i);
            }
        }
        live = still;
        if pending >= batch_rows {
            stats.rows_out += pending as u64;
            flush(&mut pool, &mut picks, &mut cursors, &mut pending, &mut emit)?;
        }
    }
    stats.rows_out += pending as u64;
    flush(&mut pool, &mut picks, &mut cursors, &mut pending, &mut emit)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::compute::concat_batches;
    use proptest::prelude::*;

    use super::*;
    use crate::dedup::sort_dedup;
    use crate::schema::{ColumnDef, ColumnKind, FieldType, TableDef};

    fn table() -> TableSchema {
        TableSchema::new(TableDef {
            id: 1,
            name: "t".into(),
            columns: vec![
                ColumnDef::new("time", ColumnKind::Time),
                ColumnDef::new("s", ColumnKind::Tag),
                ColumnDef::new("a", ColumnKind::Field(FieldType::Integer)),
                ColumnDef::new("b", ColumnKind::Field(FieldType::Float)),
            ],
            retention_ns: None,
        })
        .expect("schema")
    }

    type Row = (u8, i64, Option<i64>, Option<f64>);

    fn batch(table: &TableSchema, rows: &[Row]) -> RecordBatch {
        RecordBatch::try_new(
            table.arrow_schema().clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| (r.0 != 9).then(|| format!("s{}", r.0))),
                )),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3))),
            ],
        )
        .expect("batch")
    }

    /// Splits a sorted batch into pieces of `size` rows, as a segment reader hands them out.
    fn pieces(b: &RecordBatch, size: usize) -> Vec<RecordBatch> {
        (0..b.num_rows())
            .step_by(size)
            .map(|o| b.slice(o, size.min(b.num_rows() - o)))
            .collect()
    }

    fn rows() -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec(
            (
                prop_oneof![0u8..4, Just(9u8)],
                0i64..30,
                prop::option::of(-50i64..50),
                prop::option::of(-1e3f64..1e3),
            ),
            0..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Merging sorted, deduplicated inputs equals sorting and deduplicating all their rows
        /// at once (the flush's `sort_dedup`, the oracle), whatever the batch sizes.
        #[test]
        fn merge_equals_sort_dedup_of_everything(
            inputs in prop::collection::vec((rows(), 1usize..7), 0..6),
            out_rows in 1usize..9,
        ) {
            let t = table();
            let sorted: Vec<(Option<RecordBatch>, usize)> = inputs
                .iter()
                .map(|(r, size)| (sort_dedup(&t, &[batch(&t, r)]).expect("sort"), *size))
                .collect();
            let merged_inputs: Vec<(String, SortedBatches)> = sorted
                .iter()
                .enumerate()
                .map(|(i, (b, size))| {
                    let parts = b.as_ref().map(|b| pieces(b, *size)).unwrap_or_default();
                    (format!("input {i}"), Box::new(parts.into_iter().map(Ok)) as SortedBatches)
                })
                .collect();
            let mut out = Vec::new();
            let stats = merge_sorted(&t, merged_inputs, out_rows, |b| {
                assert!(b.num_rows() <= out_rows, "{} > {out_rows}", b.num_rows());
                out.push(b);
                Ok(())
            })
            .expect("merge");
            let all: Vec<RecordBatch> = sorted.iter().filter_map(|(b, _)| b.clone()).collect();
            let want = sort_dedup(&t, &all).expect("oracle");
            let got = (!out.is_empty())
                .then(|| concat_batches(t.arrow_schema(), &out).expect("concat"));
            prop_assert_eq!(got.as_ref(), want.as_ref());
            let rows_in: usize = all.iter().map(|b| b.num_rows()).sum();
            prop_assert_eq!(stats.rows_in, rows_in as u64);
            prop_assert_eq!(stats.rows_out, want.map_or(0, |b| b.num_rows() as u64));
        }
    }

    #[test]
    fn an_input_out_of_order_is_refused_by_name() {
        let t = table();
        let b = batch(&t, &[(1, 5, Some(1), None), (0, 3, Some(2), None)]);
        let inputs: Vec<(String, SortedBatches)> =
            vec![("seg-7.parquet".into(), Box::new(std::iter::once(Ok(b))))];
        let err = merge_sorted(&t, inputs, 10, |_| Ok(())).expect_err("unsorted");
        let msg = err.to_string();
        assert!(msg.contains("seg-7.parquet"), "{msg}");
        assert!(msg.contains("increasing"), "{msg}");
    }
}
