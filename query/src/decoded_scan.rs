//! Segment scans through the storage engine's decoded-column cache: a physical optimizer
//! rule that replaces the Parquet scan of segments by [`DecodedSegmentExec`], which slices
//! each row group's decoded arrays (from the cache, or decoded once and cached) and applies
//! the scan's predicate and projection itself.
//!
//! Decompressing and decoding pages was the largest part of a grouped query over a day of
//! data (40% of its CPU); a segment is immutable, so its decoded columns stay valid as long
//! as the segment lives. The rule runs after DataFusion's own, so the plan already carries
//! what they decided from the Parquet scan (statistics, pushed filters); it leaves the scan
//! alone where the Parquet reader does something the cache cannot (a dynamic filter from a
//! top-k or a join prunes files and row groups as the query runs, an output ordering).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult, internal_err};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, DynamicFilterPhysicalExpr};
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use eddy_storage::{Db, SegmentFile};

use crate::run_aggregate::{SeriesOrder, visit_each};

/// The physical optimizer rule that reads segments through the decoded-column cache.
#[derive(Debug)]
pub struct DecodedScan {
    db: Db,
}

impl DecodedScan {
    /// The rule's name, as sessions list it.
    pub const NAME: &'static str = "eddy_decoded_segment_scan";

    /// The rule for scans of `db`'s segments.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl PhysicalOptimizerRule for DecodedScan {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // With filter pushdown off, DataFusion keeps its filter above the scan and the
        // source's predicate only prunes: the rows are filtered there, once.
        let filters_rows = config.execution.parquet.pushdown_filters;
        if !self.db.decoded_cache_enabled() {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            match DecodedSegmentExec::replacing(&node, &self.db, filters_rows)? {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        Self::NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One segment of a scan, with the rows its indexes selected (ranges over the file's rows).
#[derive(Debug)]
struct SegmentScan {
    file: Arc<SegmentFile>,
    rows: Option<Vec<Range<usize>>>,
}

/// A scan of segments that reads their row groups' decoded columns from the storage engine's
/// cache (decoding and caching those it misses), keeps the rows the segments' indexes
/// selected, then applies the scan's predicate and projection.
#[derive(Debug)]
pub struct DecodedSegmentExec {
    scan: Arc<ScanSpec>,
    limit: Option<usize>,
    order: SeriesOrder,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DecodedSegmentExec {
    /// The scan that does `node`'s work, when `node` is a Parquet scan of segments the cache
    /// can serve; `None` otherwise.
    fn replacing(
        node: &Arc<dyn ExecutionPlan>,
        db: &Db,
        filters_rows: bool,
    ) -> DfResult<Option<Self>> {
        let Some(source) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(None);
        };
        let Some(config) = source.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(None);
        };
        let file_source = config.file_source();
        if file_source.file_type() != "parquet"
            || !config.output_ordering.is_empty()
            || !config.table_partition_cols().is_empty()
        {
            return Ok(None);
        }
        let predicate = file_source.filter();
        if let Some(p) = &predicate
            && p.exists(|e| Ok(e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()))?
        {
            return Ok(None);
        }
        let predicate = predicate.filter(|_| filters_rows);
        // Every file is a segment of an Eddy scan (`table.rs` marks them); a segment cut
        // into byte ranges appears once per range.
        let mut order: Option<SeriesOrder> = None;
        let mut seen = HashSet::new();
        let mut segments = Vec::new();
        for file in config.file_groups.iter().flat_map(|g| g.files()) {
            let (Some(segment), Some(mark)) = (
                file.extensions.get_arc::<SegmentFile>(),
                file.extensions.get::<SeriesOrder>(),
            ) else {
                return Ok(None);
            };
            order.get_or_insert_with(|| mark.clone());
            if seen.insert(segment.meta.id) {
                let rows = file
                    .extensions
                    .get::<ParquetRowSelection>()
                    .map(|s| selected_ranges(s.selection().iter().map(|r| (r.skip, r.row_count))));
                segments.push(SegmentScan {
                    file: segment,
                    rows,
                });
            }
        }
        let Some(order) = order else {
            return Ok(None);
        };
        let table = Arc::clone(config.file_schema());
        let projection: Vec<Arc<dyn PhysicalExpr>> = match file_source.projection() {
            Some(p) => p.expr_iter().collect(),
            None => table
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
                .collect(),
        };
        let mut read: Vec<usize> = projection
            .iter()
            .chain(predicate.iter())
            .flat_map(|e| collect_columns(e).into_iter().map(|c| c.index()))
            .collect();
        read.sort_unstable();
        read.dedup();
        if read.iter().any(|&i| i >= table.fields().len()) {
            return Ok(None);
        }
        let read_schema = Arc::new(table.project(&read)?);
        // A scan larger than the cache would only push out what it is about to read again,
        // and decode whole row groups where the Parquet reader skips pages its filter rules
        // out: it stays with the reader.
        let rows: u64 = segments.iter().map(|s| s.file.meta.rows).sum();
        let row_bytes: u64 = read_schema
            .fields()
            .iter()
            .map(|f| decoded_width(f.data_type()))
            .sum();
        if rows.saturating_mul(row_bytes) > (db.decoded_cache_limit() / 2) as u64 {
            return Ok(None);
        }
        let projection = projection
            .into_iter()
            .map(|e| reassign_expr_columns(e, &read_schema))
            .collect::<DfResult<Vec<_>>>()?;
        let predicate = predicate
            .map(|p| reassign_expr_columns(p, &read_schema))
            .transpose()?;
        let schema = node.schema();
        let properties = Arc::new(PlanProperties::new(
            node.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(node.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Some(Self {
            scan: Arc::new(ScanSpec {
                db: db.clone(),
                segments,
                fields: read_schema.fields().iter().cloned().collect(),
                read_schema,
                predicate,
                projection,
                schema,
            }),
            limit: config.limit,
            order,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    /// The order of the rows of each segment it reads.
    pub(crate) fn series_order(&self) -> &SeriesOrder {
        &self.order
    }
}

/// About how many bytes a decoded value of `data_type` takes (strings and other variable-size
/// values counted at 16: offsets and a short text).
fn decoded_width(data_type: &DataType) -> u64 {
    match data_type.primitive_width() {
        Some(w) => w as u64,
        None if *data_type == DataType::Boolean => 1,
        None => 16,
    }
}

/// What every partition of a [`DecodedSegmentExec`] reads and how it turns row groups into
/// output rows.
#[derive(Debug)]
struct ScanSpec {
    db: Db,
    segments: Vec<SegmentScan>,
    /// The table's columns read, in table order.
    fields: Vec<FieldRef>,
    read_schema: SchemaRef,
    /// Over `read_schema`.
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// Over `read_schema`, one per output column.
    projection: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

/// The selected row ranges of a selection given as (skip, count) steps.
fn selected_ranges(steps: impl Iterator<Item = (bool, usize)>) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut at = 0;
    for (skip, count) in steps {
        if !skip && count > 0 {
            match out.last_mut() {
                Some(last) if last.end == at => last.end += count,
                _ => out.push(at..at + count),
            }
        }
        at += count;
    }
    out
}

/// The parts of `rows` (sorted, disjoint ranges over a file) inside `group`, relative to its
/// start.
fn ranges_within(rows: &[Range<usize>], group: Range<usize>) -> Vec<Range<usize>> {
    let first = rows.partition_point(|r| r.end <= group.start);
    rows[first..]
        .iter()
        .take_while(|r| r.start < group.end)
        .map(|r| r.start.max(group.start) - group.start..r.end.min(group.end) - group.start)
        .filter(|r| !r.is_empty())
        .collect()
}

impl DisplayAs for DecodedSegmentExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let files = self
            .scan
            .segments
            .iter()
            .map(|s| {
                s.file
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(", ");
        let columns = self
            .scan
            .projection
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                let partitions = self.properties.output_partitioning().partition_count();
                write!(
                    f,
                    "DecodedSegmentExec: partitions={partitions}, segments=[{files}], \
                     projection=[{columns}]"
                )?;
                if let Some(p) = &self.scan.predicate {
                    write!(f, ", predicate={p}")?;
                }
                if let Some(l) = self.limit {
                    write!(f, ", limit={l}")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => write!(f, "segments={files}\nprojection={columns}"),
        }
    }
}

impl ExecutionPlan for DecodedSegmentExec {
    fn name(&self) -> &str {
        "DecodedSegmentExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        let scan = &self.scan;
        visit_each(scan.predicate.iter().chain(&scan.projection).cloned(), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("DecodedSegmentExec has no inputs, got {}", children.len());
        }
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let partitions = self.properties.output_partitioning().partition_count();
        if partition >= partitions {
            return internal_err!(
                "DecodedSegmentExec has {partitions} partitions, not {partition}"
            );
        }
        let counter =
            |name: &'static str| MetricBuilder::new(&self.metrics).counter(name, partition);
        let scan = PartitionScan {
            spec: Arc::clone(&self.scan),
            partition,
            partitions,
            batch_size: context.session_config().batch_size().max(1),
            left: self.limit,
            work: None,
            ready: VecDeque::new(),
            done: false,
            baseline: BaselineMetrics::new(&self.metrics, partition),
            row_groups_cached: counter("row_groups_cached"),
            row_groups_decoded: counter("row_groups_decoded"),
            rows_selected: counter("rows_selected"),
        };
        let stream = futures::stream::unfold(scan, |mut scan| async move {
            let next = scan.next().await.transpose()?;
            Some((next, scan))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.scan.schema),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// A row group to read: segment number, row group number, its rows within the segment and
/// the selected parts of them (`None`: all).
type RowGroupWork = (usize, usize, Option<Vec<Range<usize>>>);

/// One partition's share of a [`DecodedSegmentExec`]: every `partitions`-th row group with a
/// selected row, in segment order.
struct PartitionScan {
    spec: Arc<ScanSpec>,
    partition: usize,
    partitions: usize,
    batch_size: usize,
    /// Rows still wanted under the scan's limit.
    left: Option<usize>,
    /// Decided on the first poll (reading footers may touch the disk).
    work: Option<VecDeque<RowGroupWork>>,
    ready: VecDeque<RecordBatch>,
    done: bool,
    baseline: BaselineMetrics,
    row_groups_cached: Count,
    row_groups_decoded: Count,
    rows_selected: Count,
}

impl PartitionScan {
    async fn next(&mut self) -> DfResult<Option<RecordBatch>> {
        loop {
            if self.done || self.left == Some(0) {
                return Ok(None);
            }
            if let Some(batch) = self.ready.pop_front() {
                let batch = match &mut self.left {
                    Some(left) if batch.num_rows() >= *left => {
                        let cut = batch.slice(0, *left);
                        *left = 0;
                        cut
                    }
                    Some(left) => {
                        *left -= batch.num_rows();
                        batch
                    }
                    None => batch,
                };
                self.baseline.record_output(batch.num_rows());
                return Ok(Some(batch));
            }
            let result = self.step().await;
            if result.is_err() {
                self.done = true;
            }
            result?;
        }
    }

    /// Plans the partition's row groups, or reads the next one into `ready`.
    async fn step(&mut self) -> DfResult<()> {
        let Some(work) = &mut self.work else {
            self.work = Some(self.plan().await?);
            return Ok(());
        };
        let Some((segment, row_group, rows)) = work.pop_front() else {
            self.done = true;
            return Ok(());
        };
        let spec = Arc::clone(&self.spec);
        let decoded = tokio::task::spawn_blocking(move || {
            let file = &spec.segments[segment].file;
            spec.db.decoded_row_group(file, row_group, &spec.fields)
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if decoded.misses > 0 {
            self.row_groups_decoded.add(1);
        } else {
            self.row_groups_cached.add(1);
        }
        let _timer = self.baseline.elapsed_compute().timer();
        let options = RecordBatchOptions::new().with_row_count(Some(decoded.rows));
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.spec.read_schema),
            decoded.columns,
            &options,
        )?;
        let batch = match rows {
            None => batch,
            Some(ranges) if ranges.len() == 1 => batch.slice(ranges[0].start, ranges[0].len()),
            Some(ranges) => {
                let mut keep = vec![false; batch.num_rows()];
                for r in &ranges {
                    keep[r.clone()].fill(true);
                }
                filter_record_batch(&batch, &BooleanArray::new(BooleanBuffer::from(keep), None))?
            }
        };
        self.rows_selected.add(batch.num_rows());
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = self.batch_size.min(batch.num_rows() - offset);
            let chunk = batch.slice(offset, len);
            offset += len;
            let chunk = match &self.spec.predicate {
                None => chunk,
                Some(p) => {
                    let mask = p.evaluate(&chunk)?.into_array(chunk.num_rows())?;
                    let Some(mask) = mask.as_any().downcast_ref::<BooleanArray>() else {
                        return internal_err!("scan predicate {p} is not boolean");
                    };
                    filter_record_batch(&chunk, mask)?
                }
            };
            if chunk.num_rows() == 0 {
                continue;
            }
            let columns = self
                .spec
                .projection
                .iter()
                .map(|e| e.evaluate(&chunk)?.into_array(chunk.num_rows()))
                .collect::<DfResult<Vec<_>>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(chunk.num_rows()));
            self.ready.push_back(RecordBatch::try_new_with_options(
                Arc::clone(&self.spec.schema),
                columns,
                &options,
            )?);
        }
        Ok(())
    }

    /// This partition's row groups: those with a selected row, dealt out in turn.
    async fn plan(&self) -> DfResult<VecDeque<RowGroupWork>> {
        let spec = Arc::clone(&self.spec);
        let sizes = tokio::task::spawn_blocking(move || {
            spec.segments
                .iter()
                .map(|s| spec.db.segment_row_groups(&s.file))
                .collect::<eddy_storage::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut work = VecDeque::new();
        let mut k = 0;
        for (s, (segment, sizes)) in self.spec.segments.iter().zip(sizes).enumerate() {
            let mut start = 0;
            for (g, rows) in sizes.into_iter().enumerate() {
                let group = start..start + rows;
                start += rows;
                let selected = match &segment.rows {
                    None => None,
                    Some(ranges) => {
                        let within = ranges_within(ranges, group.clone());
                        if within.is_empty() {
                            continue;
                        }
                        if within.len() == 1 && within[0].len() == rows {
                            None
                        } else {
                            Some(within)
                        }
                    }
                };
                if k % self.partitions == self.partition {
                    work.push_back((s, g, selected));
                }
                k += 1;
            }
        }
        Ok(work)
    }
}

#[cfg(test)]
mod tests {
    use eddy_storage::ColumnKind::{Field, Tag, Time};
    use eddy_storage::FieldType;

    use super::{DecodedScan, ranges_within, selected_ranges};
    use crate::test_support::{Rng, assert_same, engine, engine_with, plan_text, session_without};

    #[test]
    fn selections_become_ranges_and_are_cut_by_row_group() {
        let steps = [
            (true, 10),
            (false, 5),
            (false, 5),
            (true, 0),
            (true, 3),
            (false, 7),
        ];
        let ranges = selected_ranges(steps.into_iter());
        assert_eq!(ranges, vec![10..20, 23..30]);
        assert!(ranges_within(&ranges, 0..10).is_empty());
        assert_eq!(ranges_within(&ranges, 0..15), vec![10..15]);
        assert_eq!(ranges_within(&ranges, 15..25), vec![0..5, 8..10]);
        assert_eq!(ranges_within(&ranges, 25..100), vec![0..5]);
    }

    /// Random rows in compacted segments (one written before a column was added), an
    /// overlapping flushed one and memory: every scan read through the decoded-column cache
    /// answers as DataFusion's Parquet reader does, cold and then from the cache.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decoded_scans_equal_parquet_scans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let columns = [
            ("time", Time),
            ("host", Tag),
            ("dc", Tag),
            ("usage", Field(FieldType::Float)),
            ("n", Field(FieldType::Integer)),
            ("msg", Field(FieldType::String)),
        ];
        let (db, ingest, engine) = engine(dir.path(), &columns).await;
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let day: i64 = 86_400_000_000_000;
        let start: i64 = 1_704_067_200_000_000_000; // 2024-01-01
        // (day, whether rows carry the new field `extra`, what follows the write)
        let rounds = [
            (0, false, "flush"),
            (0, false, "compact"),
            (1, true, "compact"),
            (2, true, "flush"),
            (2, true, "flush"),
            (3, true, "memory"),
        ];
        for (d, extra, then) in rounds {
            let mut lp = String::new();
            for _ in 0..4000 {
                let host = rng.below(12);
                let t = start + d * day + (rng.below(86_400) * 1_000_000_000) as i64;
                let mut fields = Vec::new();
                if rng.below(8) > 0 {
                    fields.push(format!("usage={}", rng.below(10_000) as f64 / 100.0));
                }
                if rng.below(8) > 0 {
                    fields.push(format!("n={}i", rng.below(1000) as i64 - 500));
                }
                if rng.below(3) == 0 {
                    fields.push(format!("msg=\"m{}\"", rng.below(50)));
                }
                if extra && rng.below(2) == 0 {
                    fields.push(format!("extra={}i", rng.below(100)));
                }
                if fields.is_empty() {
                    fields.push("n=0i".into());
                }
                lp.push_str(&format!(
                    "cpu,host=h{host},dc=d{} {} {t}\n",
                    host % 3,
                    fields.join(",")
                ));
            }
            let outcome = ingest
                .write_lp(lp.as_bytes(), eddy_ingest::Precision::Nanosecond, 0)
                .await
                .expect("write");
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
            match then {
                "flush" => db.flush().expect("flush"),
                "compact" => {
                    db.flush().expect("flush");
                    db.compact().expect("compact");
                }
                _ => {}
            }
        }
        let with = engine.session();
        let without = session_without(&engine, DecodedScan::NAME);
        let queries = [
            "SELECT * FROM cpu",
            "SELECT host, time, usage FROM cpu WHERE host = 'h3'",
            "SELECT count(*) FROM cpu WHERE host IN ('h1', 'h5') \
             AND time >= '2024-01-01T06:00:00Z' AND time < '2024-01-02T18:00:00Z'",
            "SELECT host, n, msg FROM cpu WHERE usage > 50 AND n < 0",
            "SELECT host, extra, time FROM cpu WHERE extra IS NOT NULL OR host = 'h2'",
            "SELECT dc, count(*), sum(n), max(msg) FROM cpu WHERE dc <> 'd1' GROUP BY dc",
            "SELECT host, upper(dc), n + 1 FROM cpu WHERE host LIKE 'h1%' AND msg IS NULL",
            "SELECT count(*) FROM (SELECT host FROM cpu LIMIT 123) AS t",
            "SELECT date_trunc('hour', time) AS h, host, avg(usage) FROM cpu GROUP BY h, host",
        ];
        for pass in ["cold", "cached"] {
            for sql in queries {
                let plan = plan_text(&with, sql).await;
                assert!(plan.contains("DecodedSegmentExec"), "{sql}:\n{plan}");
                let oracle = plan_text(&without, sql).await;
                assert!(!oracle.contains("DecodedSegmentExec"), "{sql}:\n{oracle}");
                let got = with.query(sql).await.expect("query");
                let want = without.query(sql).await.expect("oracle");
                assert_same(&format!("{sql} ({pass})"), &got, &want);
            }
        }
        assert!(db.decoded_cache_bytes() > 0);
        // With filter pushdown off, DataFusion's filter above the scan filters the rows.
        let unpushed = engine.session();
        unpushed
            .query("SET datafusion.execution.parquet.pushdown_filters = false")
            .await
            .expect("set");
        for sql in &queries[1..5] {
            let plan = plan_text(&unpushed, sql).await;
            assert!(plan.contains("DecodedSegmentExec"), "{sql}:\n{plan}");
            let got = unpushed.query(sql).await.expect("query");
            let want = without.query(sql).await.expect("oracle");
            assert_same(&format!("{sql} (no pushdown)"), &got, &want);
        }
        // A top-k pushes a dynamic filter into the scan as it runs: the Parquet reader keeps
        // it, and prunes by it.
        let sql = "SELECT time, host FROM cpu ORDER BY time DESC LIMIT 5";
        let plan = plan_text(&with, sql).await;
        assert!(!plan.contains("DecodedSegmentExec"), "{sql}:\n{plan}");
        assert_same(
            sql,
            &with.query(sql).await.expect("query"),
            &without.query(sql).await.expect("oracle"),
        );
    }

    /// A scan that would not fit in half the cache stays with the Parquet reader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scans_larger_than_the_cache_read_parquet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = eddy_storage::StorageConfig::new(dir.path());
        // 2,000 rows of (time, v) are 32,000 bytes decoded.
        config.decoded_cache_bytes = 48_000;
        let columns = [("time", Time), ("v", Field(FieldType::Integer))];
        let (db, ingest, engine) = engine_with(config, &columns).await;
        let lp: String = (0..2000)
            .map(|i| format!("cpu v={i}i {}\n", 1_704_067_200_000_000_000i64 + i))
            .collect();
        ingest
            .write_lp(lp.as_bytes(), eddy_ingest::Precision::Nanosecond, 0)
            .await
            .expect("write");
        db.flush().expect("flush");
        let session = engine.session();
        // One column fits (16,000 bytes of 24,000), two do not.
        let plan = plan_text(&session, "SELECT sum(v) FROM cpu").await;
        assert!(plan.contains("DecodedSegmentExec"), "{plan}");
        let plan = plan_text(&session, "SELECT max(time), sum(v) FROM cpu").await;
        assert!(!plan.contains("DecodedSegmentExec"), "{plan}");
        assert!(plan.contains("DataSourceExec"), "{plan}");
    }
}
