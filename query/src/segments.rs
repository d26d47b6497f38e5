//! The `eddy_segments` system table: one row per live Parquet segment, so operators can see
//! what compaction did (files per partition, their size and level); and `eddy_indexes`, the
//! full-text indexes and how many segments each covers so far.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::Result as DfResult;
use eddy_storage::Db;

/// Name of the system table listing live segments.
pub const SEGMENTS_TABLE: &str = "eddy_segments";

/// The schema of `eddy_segments`.
pub fn segments_schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Nanosecond, None);
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("partition", DataType::Date32, false),
        Field::new("segment_id", DataType::Int64, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("min_time", time.clone(), false),
        Field::new("max_time", time, false),
        Field::new("level", DataType::Int32, false),
    ]))
}

/// The rows of `eddy_segments`: segments of tables still in the catalog, by table, partition
/// and id.
pub fn segments_table(db: &Db) -> DfResult<RecordBatch> {
    let catalog = db.catalog();
    let mut rows: Vec<(String, eddy_storage::SegmentMeta)> = db
        .segments()
        .into_iter()
        .filter_map(|s| Some((catalog.get_by_id(s.table_id)?.name().to_string(), s)))
        .collect();
    rows.sort_by(|a, b| (&a.0, a.1.partition, a.1.id).cmp(&(&b.0, b.1.partition, b.1.id)));
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        )),
        Arc::new(Date32Array::from_iter_values(
            rows.iter()
                .map(|r| i32::try_from(r.1.partition).unwrap_or(i32::MAX)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| int(r.1.id)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.1.path.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| int(r.1.rows)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| int(r.1.bytes)),
        )),
        Arc::new(TimestampNanosecondArray::from_iter_values(
            rows.iter().map(|r| r.1.min_time),
        )),
        Arc::new(TimestampNanosecondArray::from_iter_values(
            rows.iter().map(|r| r.1.max_time),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter()
                .map(|r| i32::try_from(r.1.level).unwrap_or(i32::MAX)),
        )),
    ];
    Ok(RecordBatch::try_new(segments_schema(), columns)?)
}

/// Name of the system table listing full-text indexes and how far they are built.
pub const INDEXES_TABLE: &str = "eddy_indexes";

/// The schema of `eddy_indexes`.
pub fn indexes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("index_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("segments", DataType::Int64, false),
        Field::new("segments_indexed", DataType::Int64, false),
    ]))
}

/// The rows of `eddy_indexes`: each full-text index, the live segments of its table and how
/// many of them have their index built (the others are read whole until it is).
pub fn indexes_table(db: &Db) -> DfResult<RecordBatch> {
    let rows = db.text_index_progress();
    let int = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.table.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.column.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|_| "fulltext"),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| int(r.1)))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| int(r.2)))),
    ];
    Ok(RecordBatch::try_new(indexes_schema(), columns)?)
}
