//! Parquet segment files: sorted by (tags, time), zstd, dictionary-encoded tags, delta-encoded
//! time, with statistics and page index so any Parquet engine can read and prune them.
//!
//! Segments are immutable once renamed into place; the engine holds them as `Arc<SegmentFile>`
//! so a segment that leaves the manifest is deleted only when its last reader is done.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use crate::dedup::conform;
use crate::error::{IoContext, Result};
use crate::fsutil::sync_dir;
use crate::limits::{
    DATA_PAGE_ROWS_MAX, ROW_GROUP_ROWS_MAX, SEGMENT_READ_BATCH_ROWS, SEGMENT_ZSTD_LEVEL,
};
use crate::manifest::SegmentMeta;
use crate::schema::TableSchema;

/// A live segment file as the engine and its readers hold it (`Arc<SegmentFile>`). A segment
/// that leaves the manifest (retention, `DROP TABLE`) is retired, and its file is deleted when
/// the last holder lets go: a query that took a snapshot before keeps reading the file instead
/// of failing half-way. A crash with retired files still held leaves them behind as orphans,
/// which the next start removes.
#[derive(Debug)]
pub struct SegmentFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Its metadata.
    pub meta: SegmentMeta,
    retired: AtomicBool,
}

impl SegmentFile {
    /// A live segment at `path`.
    pub(crate) fn new(path: PathBuf, meta: SegmentMeta) -> Self {
        Self {
            path,
            meta,
            retired: AtomicBool::new(false),
        }
    }

    /// Marks the segment as gone from the manifest: the last holder deletes the file.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        if !*self.retired.get_mut() {
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot remove retired segment")
            }
        }
    }
}

/// Writes `batch` (sorted and deduplicated) to `path` durably: a temporary file is written and
/// fsynced, then renamed into place. Returns the file size.
pub fn write_segment(path: &Path, table: &TableSchema, batch: &RecordBatch) -> Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).at(dir)?;
    let tmp = path.with_extension("parquet.tmp");
    let mut sorting: Vec<SortingColumn> = table
        .tag_indices()
        .iter()
        .map(|&i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: true,
        })
        .collect();
    sorting.push(SortingColumn {
        column_idx: table.time_index() as i32,
        descending: false,
        nulls_first: false,
    });
    let time_path = ColumnPath::from(table.time_column());
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(SEGMENT_ZSTD_LEVEL)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS_MAX))
        // Small pages let the page index narrow a lookup of one series to a few thousand
        // rows; the default (20,000) made a point query decode 40,000.
        .set_data_page_row_count_limit(DATA_PAGE_ROWS_MAX)
        .set_sorting_columns(Some(sorting))
        .set_column_dictionary_enabled(time_path.clone(), false)
        .set_column_encoding(time_path, Encoding::DELTA_BINARY_PACKED)
        .build();
    let file = File::create(&tmp).at(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    writer.write(batch)?;
    let file = writer.into_inner()?;
    file.sync_all().at(&tmp)?;
    let bytes = file.metadata().at(&tmp)?.len();
    drop(file);
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)?;
    Ok(bytes)
}

/// Reads a whole segment, conformed to `schema` (columns added since it was written are null).
pub fn read_segment(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).at(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(SEGMENT_READ_BATCH_ROWS)
        .build()?;
    let mut out = Vec::new();
    for b in reader {
        out.push(conform(&b?, schema)?);
    }
    Ok(out)
}
