//! Sorting by primary key and field-wise last-write-wins deduplication of Arrow batches.
//!
//! Rows are given in write order. Rows with the same key (tags, time) collapse into one whose
//! every field is the value of the latest row that set it (non-null), which is line protocol's
//! upsert semantics: a later point that sets only `f2` keeps the earlier `f1`.

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array, new_null_array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::Result;
use crate::schema::TableSchema;

/// Reshapes `batch` to `schema`: columns are matched by name, a column the batch lacks (it was
/// written before the column existed) becomes all nulls.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let bs = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match bs.index_of(f.name()) {
            Ok(i) if batch.column(i).data_type() == f.data_type() => Ok(batch.column(i).clone()),
            Ok(i) => datafusion::arrow::compute::cast(batch.column(i), f.data_type()),
            Err(_) => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Concatenates `batches` (in write order, each conformed to the table's schema), sorts the
/// rows by (tags, time) and merges rows with equal keys field by field, later wins.
pub fn sort_dedup(table: &TableSchema, batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
    let schema = table.arrow_schema();
    let conformed = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| conform(b, schema))
        .collect::<Result<Vec<_>>>()?;
    if conformed.is_empty() {
        return Ok(None);
    }
    let all = concat_batches(schema, &conformed)?;
    let n = all.num_rows();
    let mut key_cols: Vec<ArrayRef> = table
        .tag_indices()
        .iter()
        .map(|&i| all.column(i).clone())
        .collect();
    key_cols.push(all.column(table.time_index()).clone());
    let converter = RowConverter::new(
        key_cols
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&key_cols)?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    // Stable: rows with equal keys stay in write order, so the last of a run is the latest.
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));

    // Runs of equal keys, as [start, end) into `order`.
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(n);
    let mut start = 0;
    for i in 1..=n {
        if i == n || rows.row(order[i] as usize) != rows.row(order[start] as usize) {
            runs.push((start, i));
            start = i;
        }
    }
    if runs.len() == n {
        let idx = UInt32Array::from(order);
        let cols = all
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        return Ok(Some(RecordBatch::try_new(schema.clone(), cols)?));
    }

    let first_of_run = UInt32Array::from_iter_values(runs.iter().map(|&(s, _)| order[s]));
    let mut cols = Vec::with_capacity(all.num_columns());
    for (ci, col) in all.columns().iter().enumerate() {
        let is_key = ci == table.time_index() || table.tag_indices().contains(&ci);
        let idx = if is_key {
            first_of_run.clone()
        } else {
            UInt32Array::from_iter_values(runs.iter().map(|&(s, e)| {
                (s..e)
                    .rev()
                    .map(|k| order[k])
                    .find(|&r| col.is_valid(r as usize))
                    .unwrap_or(order[e - 1])
            }))
        };
        cols.push(take(col.as_ref(), &idx, None)?);
    }
    Ok(Some(RecordBatch::try_new(schema.clone(), cols)?))
}

/// Minimum and maximum of a time column (nanoseconds), if it has any value.
pub(crate) fn time_bounds(batch: &RecordBatch, time_index: usize) -> Option<(i64, i64)> {
    use datafusion::arrow::array::TimestampNanosecondArray;
    let col = batch.column(time_index);
    if col.data_type()
        != &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None)
    {
        return None;
    }
    let arr = col.as_any().downcast_ref::<TimestampNanosecondArray>()?;
    let min = datafusion::arrow::compute::min(arr)?;
    let max = datafusion::arrow::compute::max(arr)?;
    Some((min, max))
}

/// Keeps the rows of `batch` whose time lies in `[lo, hi]`.
pub(crate) fn filter_time(
    batch: &RecordBatch,
    time_index: usize,
    lo: i64,
    hi: i64,
) -> Result<RecordBatch> {
    use datafusion::arrow::array::{BooleanArray, TimestampNanosecondArray};
    let Some(arr) = batch
        .column(time_index)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
    else {
        return Ok(batch.clone());
    };
    let mask: BooleanArray = arr.iter().map(|v| v.map(|t| t >= lo && t <= hi)).collect();
    Ok(datafusion::arrow::compute::filter_record_batch(
        batch, &mask,
    )?)
}
