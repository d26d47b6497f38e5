//! The table provider over an Eddy table: prunes segments by time, scans Parquet segments with
//! DataFusion's reader and memory with a memory source, and takes `INSERT` through the write
//! path ([`Ingest`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::common::stats::Precision;
use datafusion::common::{Result as DfResult, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    ParquetFileMetrics, ParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, memory::MemorySourceConfig};
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Like, Operator, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::RowSelection;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use eddy_ingest::{FrontEnd, Ingest};
use eddy_storage::KeyFilter;
use eddy_storage::segment::row_selection;
use eddy_storage::segment_tags::TagPredicate;
use eddy_storage::tag_index::TagSelection;
use eddy_storage::{Db, SegmentFile, TableSchema};
use futures::StreamExt;

/// An Eddy table as DataFusion sees it.
#[derive(Debug)]
pub struct EddyTable {
    db: Db,
    ingest: Ingest,
    schema: Arc<TableSchema>,
}

impl EddyTable {
    /// A provider for the table as its schema is now, reading the write path's storage.
    pub fn new(ingest: Ingest, schema: Arc<TableSchema>) -> Self {
        Self {
            db: ingest.db().clone(),
            ingest,
            schema,
        }
    }

    /// The table's schema as planned.
    pub fn table_schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// The storage engine it reads.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

#[async_trait]
impl TableProvider for EddyTable {
    fn schema(&self) -> SchemaRef {
        self.schema.arrow_schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune segments and row groups, but rows are still checked above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(snapshot) = self.db.snapshot(self.schema.name()) else {
            return Err(DataFusionError::Plan(format!(
                "table '{}' not found",
                self.schema.name()
            )));
        };
        // The snapshot's schema may have grown since planning; scan with the planned one.
        let schema = self.schema.arrow_schema().clone();
        let (lo, hi) = time_range(filters, self.schema.time_column());
        let keep = key_filter(state, &self.schema, filters)?;
        let predicates = tag_predicates(&self.schema, filters);
        let tags = TagSelection::of(&predicates);
        let texts = crate::fulltext::text_predicates(filters);
        // Columns the plan reads: overlapping segments merged below decode only these (and
        // the key columns), since a page of each column costs a decompression per segment.
        let columns: Option<Vec<String>> = projection.map(|p| {
            p.iter()
                .filter_map(|&i| schema.fields().get(i).map(|f| f.name().clone()))
                .collect()
        });
        let db = self.db.clone();
        let plan = tokio::task::spawn_blocking(move || {
            let plan =
                snapshot.read_plan_filtered(lo, hi, &tags, keep.as_deref(), columns.as_deref())?;
            let selections = plan
                .files
                .iter()
                .map(|f| index_selection(&db, f, &predicates, &texts))
                .collect::<eddy_storage::Result<Vec<_>>>()?;
            Ok::<_, eddy_storage::StorageError>((plan, selections))
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let (plan, selections) = plan;
        let batches = plan
            .batches
            .iter()
            .map(|b| eddy_storage::dedup::conform(b, &schema))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !plan.files.is_empty() {
            let target = state.config().target_partitions().max(1);
            // Fewer files than partitions (a compacted store has one per day): each file is cut
            // into byte ranges, and the Parquet reader takes the row groups whose middle falls
            // in its range, so every core decodes part of the file.
            let pieces_per_file = |rows: u64| -> usize {
                if plan.files.len() >= target {
                    return 1;
                }
                let row_groups = rows.div_ceil(eddy_storage::SEGMENT_ROW_GROUP_ROWS_MAX as u64);
                let share = target.div_ceil(plan.files.len());
                usize::try_from(row_groups)
                    .unwrap_or(usize::MAX)
                    .clamp(1, share)
            };
            // Segments are sorted by (tags, time): a partial aggregate grouped by tags and time
            // can find its groups as runs (`run_aggregate`).
            let order = crate::run_aggregate::SeriesOrder {
                tags: self
                    .schema
                    .tag_indices()
                    .iter()
                    .map(|&i| self.schema.columns()[i].name.clone())
                    .collect(),
                time: self.schema.time_column().into(),
            };
            let mut files: Vec<PartitionedFile> = Vec::new();
            for (f, selection) in plan.files.iter().zip(&selections) {
                // The tag index rules the whole segment out.
                if matches!(selection, Some(None)) {
                    continue;
                }
                let path = f.path.to_string_lossy();
                // The segment's row count and time range are known exactly: DataFusion skips
                // files by them, and for `ORDER BY time DESC LIMIT n` its top-k filter then
                // rules out files older than the rows it already holds.
                let stats = segment_statistics(&schema, self.schema.time_index(), &f.meta);
                let pieces = pieces_per_file(f.meta.rows);
                let len = f.meta.bytes;
                for k in 0..pieces as u64 {
                    let mut file = PartitionedFile::new(path.trim_start_matches('/'), len);
                    // The scan (and each Parquet reader, which keeps its PartitionedFile)
                    // holds the segment, so retention cannot delete it under a running query.
                    file.extensions.insert_arc(Arc::clone(f));
                    file.extensions.insert(order.clone());
                    // The tag index's granules: the reader skips the pages between them.
                    if let Some(Some(rows)) = selection {
                        file.extensions
                            .insert(ParquetRowSelection::new(rows.clone()));
                    }
                    if pieces == 1 {
                        file = file.with_statistics(Arc::new(stats.clone()));
                    } else {
                        let (start, end) = (len * k / pieces as u64, len * (k + 1) / pieces as u64);
                        // A piece's rows are a part of the file's: its statistics are bounds.
                        file = file
                            .with_range(start as i64, end as i64)
                            .with_statistics(Arc::new(stats.clone().to_inexact()));
                    }
                    files.push(file);
                }
            }
            let mut groups: Vec<Vec<PartitionedFile>> =
                vec![Vec::new(); target.min(files.len()).max(1)];
            let n = groups.len();
            for (i, file) in files.into_iter().enumerate() {
                groups[i % n].push(file);
            }
            // Segments are read through storage's verified reader (every byte checked against
            // the segment's checksums; verified footers and page indexes cached across
            // queries); filters are applied while decoding (the session's `pushdown_filters`,
            // on by default), so only the pages and rows a point query selects are
            // materialized.
            let parquet = &state.config_options().execution.parquet;
            let source = Arc::new(
                ParquetSource::new(schema.clone())
                    .with_parquet_file_reader_factory(Arc::new(VerifiedSegmentReaders {
                        db: self.db.clone(),
                    }))
                    .with_pushdown_filters(parquet.pushdown_filters)
                    .with_reorder_filters(parquet.reorder_filters),
            );
            let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        if !batches.is_empty() {
            let mem = MemorySourceConfig::try_new(&[batches], schema.clone(), projection.cloned())?
                .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(mem));
        }
        Ok(match inputs.len() {
            0 => {
                let projected = match projection {
                    Some(p) => Arc::new(schema.project(p)?),
                    None => schema,
                };
                Arc::new(EmptyExec::new(projected))
            }
            1 => inputs.remove(0),
            _ => UnionExec::try_new(inputs)?,
        })
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} is not supported on table \"{}\"; use INSERT INTO (rows with an existing key are merged field by field)",
                self.schema.name()
            )));
        }
        // The front end that set up the session says whose write this is, for the metrics.
        let front_end = state
            .config()
            .get_extension::<FrontEnd>()
            .map_or(FrontEnd::Other, |f| *f);
        let sink = Arc::new(EddySink {
            ingest: self.ingest.for_front_end(front_end),
            schema: self.schema.clone(),
        });
        Ok(Arc::new(DataSinkExec::new(input, sink, None)))
    }
}

/// Opens each segment of a scan with [`Db::segment_reader`]: the Parquet reader then only ever
/// sees bytes verified against the segment's checksum file, and a damaged block fails the
/// query with the storage error naming the file (`StorageError::Corrupt`, kind `Corrupt`).
#[derive(Debug)]
struct VerifiedSegmentReaders {
    db: Db,
}

impl ParquetFileReaderFactory for VerifiedSegmentReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        // `scan` puts the segment beside every file it hands DataFusion.
        let segment = partitioned_file
            .extensions
            .get_arc::<SegmentFile>()
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "{} was planned without its Eddy segment",
                    partitioned_file.object_meta.location
                ))
            })?;
        let bytes_scanned = ParquetFileMetrics::new(
            partition_index,
            partitioned_file.object_meta.location.as_ref(),
            metrics,
        )
        .bytes_scanned;
        let reader = self
            .db
            .segment_reader(segment)
            .on_read(move |bytes| bytes_scanned.add(bytes as usize));
        Ok(Box::new(reader))
    }
}

/// Statistics of a segment for DataFusion: its row count and its time column's range.
fn segment_statistics(
    schema: &SchemaRef,
    time_index: usize,
    meta: &eddy_storage::manifest::SegmentMeta,
) -> Statistics {
    let mut stats = Statistics::new_unknown(schema);
    stats.num_rows = Precision::Exact(meta.rows as usize);
    stats.total_byte_size = Precision::Inexact(meta.bytes as usize);
    if let DataType::Timestamp(TimeUnit::Nanosecond, tz) = schema.field(time_index).data_type()
        && let Some(time) = stats.column_statistics.get_mut(time_index)
    {
        time.null_count = Precision::Exact(0);
        time.min_value = Precision::Exact(ScalarValue::TimestampNanosecond(
            Some(meta.min_time),
            tz.clone(),
        ));
        time.max_value = Precision::Exact(ScalarValue::TimestampNanosecond(
            Some(meta.max_time),
            tz.clone(),
        ));
    }
    stats
}

/// Writes the rows of an `INSERT` through the write path.
#[derive(Debug)]
struct EddySink {
    ingest: Ingest,
    schema: Arc<TableSchema>,
}

impl DisplayAs for EddySink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "EddySink: table={}", self.schema.name())
    }
}

#[async_trait]
impl DataSink for EddySink {
    fn schema(&self) -> &SchemaRef {
        self.schema.arrow_schema()
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let mut rows = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            // The storage error goes on alone, so each front end maps its kind like any other.
            rows += self
                .ingest
                .write_batch(&self.schema, batch)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e.into_storage_error())))?;
        }
        Ok(rows)
    }
}

/// The conjunction of the filters that read only key columns (tags and time), as a function
/// the storage read path applies before merging overlapping rows. Filters on fields stay out:
/// an older version of a row could match one where the merged row does not.
fn key_filter(
    state: &dyn Session,
    table: &TableSchema,
    filters: &[Expr],
) -> DfResult<Option<Box<KeyFilter>>> {
    let schema = table.arrow_schema();
    let is_key = |name: &str| {
        schema
            .index_of(name)
            .is_ok_and(|i| i == table.time_index() || table.tag_indices().contains(&i))
    };
    let keys: Vec<Expr> = filters
        .iter()
        .filter(|f| !f.is_volatile() && f.column_refs().iter().all(|c| is_key(&c.name)))
        .cloned()
        .collect();
    let Some(conjunction) = datafusion::logical_expr::utils::conjunction(keys) else {
        return Ok(None);
    };
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let predicate = state.create_physical_expr(conjunction, &df_schema)?;
    Ok(Some(Box::new(move |batch: &RecordBatch| {
        let mask = predicate
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        mask.as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| ArrowError::ComputeError("key filter is not boolean".into()))
    })))
}

/// What a segment's indexes say about a scan of it: `None` when they cannot narrow it (no
/// predicate an index of this segment answers), `Some(None)` when no row can match,
/// otherwise the rows to read. The tag index answers tag predicates by granules; a full-text
/// index answers `matches(column, 'query')` by rows.
fn index_selection(
    db: &Db,
    file: &SegmentFile,
    predicates: &[TagPredicate],
    texts: &[(String, String)],
) -> eddy_storage::Result<Option<Option<RowSelection>>> {
    let rows = file.meta.rows;
    let mut selection: Option<RowSelection> = None;
    let mut narrow = |s: RowSelection| {
        selection = Some(match selection.take() {
            Some(a) => a.intersection(&s),
            None => s,
        });
    };
    if !predicates.is_empty()
        && let Some(index) = db.segment_tag_index(file)?
        && let Some(granules) = index.granules(predicates)
    {
        let ranges = index.row_ranges(&granules);
        if ranges.is_empty() {
            return Ok(Some(None));
        }
        narrow(row_selection(ranges.into_iter(), rows));
    }
    for (column, query) in texts {
        if let Some(matched) = file.text_search(column, query)? {
            if matched.is_empty() {
                return Ok(Some(None));
            }
            narrow(row_selection(runs(&matched), rows));
        }
    }
    Ok(selection.map(|s| if s.selects_any() { Some(s) } else { None }))
}

/// The runs of consecutive row numbers in `rows`, ascending.
fn runs(rows: &roaring::RoaringBitmap) -> impl Iterator<Item = std::ops::Range<u64>> + '_ {
    let mut it = rows.iter().map(u64::from).peekable();
    std::iter::from_fn(move || {
        let start = it.next()?;
        let mut end = start + 1;
        while it.peek() == Some(&end) {
            it.next();
            end += 1;
        }
        Some(start..end)
    })
}

/// From the filters on tags, every predicate a segment's tag index can answer (`=`, `IN`,
/// `<>`, `NOT IN`, `LIKE 'prefix%'` and `IS NULL`); the `=` and `IN` ones are also what the
/// memtable's tag index answers ([`TagSelection::of`]).
fn tag_predicates(table: &TableSchema, filters: &[Expr]) -> Vec<TagPredicate> {
    let schema = table.arrow_schema();
    let tag = |e: &Expr| match e {
        Expr::Column(c) => schema
            .index_of(&c.name)
            .ok()
            .filter(|i| table.tag_indices().contains(i))
            .map(|_| c.name.clone()),
        _ => None,
    };
    let string = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    };
    let mut predicates = Vec::new();
    let mut conjuncts = Vec::new();
    for f in filters {
        conjuncts.extend(datafusion::logical_expr::utils::split_conjunction(f));
    }
    for e in conjuncts {
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: op @ (Operator::Eq | Operator::NotEq),
                right,
            }) => {
                let pair = match (tag(left), string(right)) {
                    (Some(c), Some(v)) => Some((c, v)),
                    _ => tag(right).zip(string(left)),
                };
                if let Some((column, v)) = pair {
                    if *op == Operator::Eq {
                        predicates.push(TagPredicate::In {
                            column,
                            values: vec![v],
                        });
                    } else {
                        predicates.push(TagPredicate::NotIn {
                            column,
                            values: vec![v],
                        });
                    }
                }
            }
            Expr::InList(list) => {
                if let Some(column) = tag(&list.expr) {
                    let values: Option<Vec<String>> = list.list.iter().map(string).collect();
                    if let Some(values) = values {
                        if list.negated {
                            predicates.push(TagPredicate::NotIn { column, values });
                        } else {
                            predicates.push(TagPredicate::In { column, values });
                        }
                    }
                }
            }
            Expr::Like(Like {
                negated: false,
                expr,
                pattern,
                escape_char: None,
                case_insensitive: false,
            }) => {
                if let (Some(column), Some(pattern)) = (tag(expr), string(pattern))
                    && let Some(prefix) = like_prefix(&pattern)
                {
                    predicates.push(TagPredicate::Prefix { column, prefix });
                }
            }
            Expr::IsNull(e) => {
                if let Some(column) = tag(e) {
                    predicates.push(TagPredicate::IsNull { column });
                }
            }
            _ => {}
        }
    }
    predicates
}

/// The literal prefix of a `LIKE` pattern of the form `'prefix%'` (no other wildcard, no
/// escape), which selects exactly the values starting with it.
fn like_prefix(pattern: &str) -> Option<String> {
    let prefix = pattern.strip_suffix('%')?;
    if prefix.contains(['%', '_', '\\']) {
        return None;
    }
    Some(prefix.to_string())
}

/// The `[lo, hi]` time range (ns, inclusive) that conjunctive filters on the time column allow.
pub fn time_range(filters: &[Expr], time_column: &str) -> (i64, i64) {
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    for f in filters {
        narrow(f, time_column, &mut lo, &mut hi);
    }
    (lo, hi)
}

fn narrow(e: &Expr, col: &str, lo: &mut i64, hi: &mut i64) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                narrow(left, col, lo, hi);
                narrow(right, col, lo, hi);
                return;
            }
            let (op, v) = match (strip_cast(left), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) if c.name == col => (*op, v),
                _ => match (left.as_ref(), strip_cast(right)) {
                    (Expr::Literal(v, _), Expr::Column(c)) if c.name == col => match op.swap() {
                        Some(op) => (op, v),
                        None => return,
                    },
                    _ => return,
                },
            };
            let Some(t) = timestamp_nanos(v) else { return };
            match op {
                Operator::Gt => *lo = (*lo).max(t.saturating_add(1)),
                Operator::GtEq => *lo = (*lo).max(t),
                Operator::Lt => *hi = (*hi).min(t.saturating_sub(1)),
                Operator::LtEq => *hi = (*hi).min(t),
                Operator::Eq => {
                    *lo = (*lo).max(t);
                    *hi = (*hi).min(t);
                }
                _ => {}
            }
        }
        Expr::Between(b) if !b.negated => {
            if let Expr::Column(c) = b.expr.as_ref()
                && c.name == col
            {
                if let Expr::Literal(v, _) = b.low.as_ref()
                    && let Some(t) = timestamp_nanos(v)
                {
                    *lo = (*lo).max(t);
                }
                if let Expr::Literal(v, _) = b.high.as_ref()
                    && let Some(t) = timestamp_nanos(v)
                {
                    *hi = (*hi).min(t);
                }
            }
        }
        _ => {}
    }
}

/// A cast of the nanosecond time column to a nanosecond timestamp with a time zone (as when
/// comparing with `now()`) keeps the instant, so it bounds the column like the column itself.
/// Casts to coarser units truncate and are left alone.
fn strip_cast(e: &Expr) -> &Expr {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let keeps = |t: &DataType| matches!(t, DataType::Timestamp(TimeUnit::Nanosecond, _));
    match e {
        Expr::Cast(c) if keeps(c.field.data_type()) => c.expr.as_ref(),
        Expr::TryCast(c) if keeps(c.field.data_type()) => c.expr.as_ref(),
        other => other,
    }
}

fn timestamp_nanos(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}
