//! Partial aggregation over runs of equal group keys.
//!
//! A segment is sorted by (tags, time), so when a query groups by tags and buckets of time
//! (`GROUP BY date_trunc('hour', time), hostname`) the rows of one group arrive together: a
//! batch holds a few long runs, one per series and bucket. DataFusion's partial aggregation
//! hashes every row's key to find its group (interning the (hour, host) keys was 13% of the
//! CPU of TSBS double-groupby-all). [`RunAggregateExec`] finds the runs instead, by comparing
//! each row's key with the previous one, and feeds DataFusion's own accumulators with the run
//! number as the group index, so the partial states it emits are exactly the ones the hash
//! aggregation would; the final aggregation above merges them as before.
//!
//! Splitting a run where keys are equal is harmless (the final stage merges the two partial
//! rows), so the operator is correct on input in any order; the order only decides how many
//! partial rows it emits. [`RunAggregation`] therefore uses it only where runs are long: a
//! partial aggregate reading segments directly, whose keys are made of tags and the time
//! column only, at least one tag among them.

use std::fmt;
use std::sync::Arc;

use std::ops::Range;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, Float64Array, RecordBatch, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::kernels::partition::partition;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult, internal_err};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{
    AggregateExec, AggregateMode, PhysicalGroupBy, aggregate_expressions, evaluate_group_by,
    evaluate_many,
};
use datafusion::physical_plan::execution_plan::{
    ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    Partitioning, PlanProperties,
};
use futures::StreamExt;

/// Marks a segment handed to a scan: its rows are sorted by these tag columns, then by the time
/// column, so every series is one contiguous, time-ordered stretch of the file.
#[derive(Debug, Clone)]
pub(crate) struct SeriesOrder {
    /// The table's tag columns.
    pub tags: Arc<[String]>,
    /// The table's time column.
    pub time: Arc<str>,
}

/// Physical optimizer rule: a partial aggregate over segments, grouped by tags and time, is
/// replaced by a [`RunAggregateExec`].
#[derive(Debug, Default)]
pub struct RunAggregation;

impl RunAggregation {
    /// The rule's name, as EXPLAIN VERBOSE shows it.
    pub const NAME: &'static str = "eddy_run_aggregation";
}

impl PhysicalOptimizerRule for RunAggregation {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(agg) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if !is_plain_partial(agg) {
                return Ok(Transformed::no(node));
            }
            if runs_are_long(agg, agg.input()) {
                return Ok(Transformed::yes(Arc::new(RunAggregateExec::try_new(
                    agg,
                    Arc::clone(agg.input()),
                )?)
                    as Arc<dyn ExecutionPlan>));
            }
            // Segments beside rows still in memory: a partial aggregate per input of the
            // union (the final stage merges partial rows whatever their partition).
            let Some(union) = agg.input().downcast_ref::<UnionExec>() else {
                return Ok(Transformed::no(node));
            };
            if !union.inputs().iter().any(|i| runs_are_long(agg, i)) {
                return Ok(Transformed::no(node));
            }
            let inputs = union
                .inputs()
                .iter()
                .map(|input| {
                    Ok(if runs_are_long(agg, input) {
                        Arc::new(RunAggregateExec::try_new(agg, Arc::clone(input))?)
                            as Arc<dyn ExecutionPlan>
                    } else {
                        Arc::new(AggregateExec::try_new(
                            AggregateMode::Partial,
                            agg.group_expr().clone(),
                            agg.aggr_expr().to_vec(),
                            agg.filter_expr().to_vec(),
                            Arc::clone(input),
                            agg.input_schema(),
                        )?)
                    })
                })
                .collect::<DfResult<Vec<_>>>()?;
            Ok(Transformed::yes(UnionExec::try_new(inputs)?))
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

/// Whether `agg` is a partial aggregate without grouping sets, limits or aggregates that need
/// more than a groups accumulator fed in any order.
fn is_plain_partial(agg: &AggregateExec) -> bool {
    let group_by = agg.group_expr();
    *agg.mode() == AggregateMode::Partial
        && group_by.is_single()
        && !group_by.expr().is_empty()
        && agg.limit_options().is_none()
        && agg.dynamic_expressions_produced().is_empty()
        && *agg.input_order_mode() == InputOrderMode::Linear
        && agg.aggr_expr().iter().all(|a| {
            a.groups_accumulator_supported() && a.order_bys().is_empty() && !a.is_distinct()
        })
}

/// Whether `input`'s rows come in long runs of `agg`'s keys: it reads segments, and the keys are
/// made of tags and the time column, at least one tag among them.
fn runs_are_long(agg: &AggregateExec, input: &Arc<dyn ExecutionPlan>) -> bool {
    let group_by = agg.group_expr();
    let Some(order) = series_order(input) else {
        return false;
    };
    let schema = agg.input_schema();
    let mut tags = false;
    for (expr, _) in group_by.expr() {
        for column in collect_columns(expr) {
            let Ok(field) = schema.field_with_name(column.name()) else {
                return false;
            };
            let name = field.name().as_str();
            if order.tags.iter().any(|t| t == name) {
                tags = true;
            } else if name != &*order.time {
                // A field in the key: runs are as short as the field's values are varied.
                return false;
            }
        }
    }
    tags
}

/// The series order of `plan`'s rows, when every batch it produces is a slice of segments
/// sorted by series: a segment scan, possibly under filters, which drop rows but keep order.
fn series_order(plan: &Arc<dyn ExecutionPlan>) -> Option<SeriesOrder> {
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        // A projecting filter renames nothing but may reorder columns; names still resolve.
        return series_order(filter.input());
    }
    // Whole batches dealt out to partitions: each keeps its rows' order.
    if let Some(repartition) = plan.downcast_ref::<RepartitionExec>()
        && matches!(repartition.partitioning(), Partitioning::RoundRobinBatch(_))
        && !repartition.preserve_order()
    {
        return series_order(repartition.input());
    }
    if let Some(scan) = plan.downcast_ref::<crate::decoded_scan::DecodedSegmentExec>() {
        return Some(scan.series_order().clone());
    }
    let source = plan.downcast_ref::<DataSourceExec>()?;
    let config = source.data_source().downcast_ref::<FileScanConfig>()?;
    let mut order: Option<SeriesOrder> = None;
    for file in config.file_groups.iter().flat_map(|g| g.files()) {
        let mark = file.extensions.get::<SeriesOrder>()?;
        if order.is_none() {
            order = Some(mark.clone());
        }
    }
    order
}

/// A partial aggregation that finds groups as runs of equal keys in each batch instead of
/// hashing every row; emits the same partial states as the [`AggregateExec`] it replaces.
#[derive(Debug)]
pub struct RunAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    group_by: PhysicalGroupBy,
    aggr_expr: Vec<Arc<AggregateFunctionExpr>>,
    filter_expr: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The replaced partial aggregate's output schema: keys, then each aggregate's state.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RunAggregateExec {
    /// Does `agg`'s work (a partial aggregate) on `input`, `agg`'s input or a part of it.
    fn try_new(agg: &AggregateExec, input: Arc<dyn ExecutionPlan>) -> DfResult<Self> {
        Self::with_parts(
            input,
            agg.group_expr().clone(),
            agg.aggr_expr().to_vec(),
            agg.filter_expr().to_vec(),
            agg.schema(),
        )
    }

    fn with_parts(
        input: Arc<dyn ExecutionPlan>,
        group_by: PhysicalGroupBy,
        aggr_expr: Vec<Arc<AggregateFunctionExpr>>,
        filter_expr: Vec<Option<Arc<dyn PhysicalExpr>>>,
        schema: SchemaRef,
    ) -> DfResult<Self> {
        if aggr_expr.len() != filter_expr.len() {
            return internal_err!("RunAggregateExec: one filter per aggregate expected");
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            input.boundedness(),
        ));
        Ok(Self {
            input,
            group_by,
            aggr_expr,
            filter_expr,
            schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for RunAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys = self
            .group_by
            .expr()
            .iter()
            .map(|(e, name)| format!("{e} as {name}"))
            .collect::<Vec<_>>()
            .join(", ");
        let aggs = self
            .aggr_expr
            .iter()
            .map(|a| a.name().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "RunAggregateExec: gby=[{keys}], aggr=[{aggs}]")
            }
            DisplayFormatType::TreeRender => write!(f, "gby={keys}\naggr={aggs}"),
        }
    }
}

impl ExecutionPlan for RunAggregateExec {
    fn name(&self) -> &str {
        "RunAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        let group = self.group_by.expr().iter().map(|(e, _)| Arc::clone(e));
        let args = self.aggr_expr.iter().flat_map(|a| a.expressions());
        let filters = self.filter_expr.iter().flatten().cloned();
        visit_each(group.chain(args).chain(filters), f)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("RunAggregateExec takes one input, got {}", children.len());
        }
        let input = children.swap_remove(0);
        match options.children_properties {
            ChildrenPropertiesMode::Keep => Ok(Arc::new(Self {
                input,
                group_by: self.group_by.clone(),
                aggr_expr: self.aggr_expr.clone(),
                filter_expr: self.filter_expr.clone(),
                schema: Arc::clone(&self.schema),
                properties: Arc::clone(&self.properties),
                metrics: ExecutionPlanMetricsSet::new(),
            })),
            ChildrenPropertiesMode::Recompute => Ok(Arc::new(Self::with_parts(
                input,
                self.group_by.clone(),
                self.aggr_expr.clone(),
                self.filter_expr.clone(),
                Arc::clone(&self.schema),
            )?)),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let mut runs = RunAggregator {
            group_by: self.group_by.clone(),
            args: aggregate_expressions(&self.aggr_expr, &AggregateMode::Partial, 0)?,
            filters: self.filter_expr.clone(),
            fast: self
                .aggr_expr
                .iter()
                .zip(&self.filter_expr)
                .map(|(a, f)| Fast::of(a, f))
                .collect(),
            accumulators: self
                .aggr_expr
                .iter()
                .map(|a| a.create_groups_accumulator())
                .collect::<DfResult<_>>()?,
            schema: Arc::clone(&self.schema),
            group_indices: Vec::new(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        let stream = input.filter_map(move |batch| {
            let out = batch.and_then(|b| runs.aggregate(&b)).transpose();
            std::future::ready(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Calls `f` on each expression in turn, as `ExecutionPlan::apply_expressions` asks: siblings
/// are visited until one says stop.
pub(crate) fn visit_each(
    exprs: impl IntoIterator<Item = Arc<dyn PhysicalExpr>>,
    f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
) -> DfResult<TreeNodeRecursion> {
    let mut recursion = TreeNodeRecursion::Continue;
    for e in exprs {
        recursion = recursion.visit_sibling(|| f(&e))?;
        if recursion == TreeNodeRecursion::Stop {
            break;
        }
    }
    Ok(recursion)
}

/// The per-partition state of a [`RunAggregateExec`].
struct RunAggregator {
    group_by: PhysicalGroupBy,
    /// Each aggregate's argument expressions.
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Emptied after every batch (`EmitTo::All`): a batch's runs are its groups.
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Aggregates summed run by run here rather than row by row in their accumulator.
    fast: Vec<Fast>,
    schema: SchemaRef,
    /// Reused across batches: the run number of each row.
    group_indices: Vec<usize>,
    metrics: BaselineMetrics,
}

impl RunAggregator {
    /// One partial row per run of equal keys in `batch`; `None` for an empty batch.
    fn aggregate(&mut self, batch: &RecordBatch) -> DfResult<Option<RecordBatch>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(None);
        }
        let timer = self.metrics.elapsed_compute().timer();
        let keys = evaluate_group_by(&self.group_by, batch)?
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("no grouping set".to_string()))?;
        let ranges = partition(&keys)?.ranges();
        let groups = ranges.len();
        self.group_indices.clear();
        self.group_indices.reserve(rows);
        let mut starts = Vec::with_capacity(groups);
        for (group, range) in ranges.iter().enumerate() {
            starts.push(
                u32::try_from(range.start)
                    .map_err(|_| DataFusionError::Internal("batch too long".to_string()))?,
            );
            self.group_indices
                .extend(std::iter::repeat_n(group, range.len()));
        }
        let starts = UInt32Array::from(starts);
        let mut columns: Vec<ArrayRef> = keys
            .iter()
            .map(|k| take(k.as_ref(), &starts, None))
            .collect::<Result<_, _>>()?;
        let args = evaluate_many(&self.args, batch)?;
        for (((acc, values), filter), fast) in self
            .accumulators
            .iter_mut()
            .zip(&args)
            .zip(&self.filters)
            .zip(&self.fast)
        {
            if *fast == Fast::AvgF64
                && let [values] = values.as_slice()
                && let Some(values) = values.as_any().downcast_ref::<Float64Array>()
            {
                columns.extend(avg_runs(values, &ranges));
                continue;
            }
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            let filter = filter
                .as_ref()
                .map(|f| {
                    f.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
                        DataFusionError::Internal("aggregate filter is not boolean".to_string())
                    })
                })
                .transpose()?;
            acc.update_batch(values, &self.group_indices, filter, groups)?;
            columns.extend(acc.state(EmitTo::All)?);
        }
        let out = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        timer.done();
        self.metrics.record_output(out.num_rows());
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use eddy_storage::ColumnKind::{Field, Tag, Time};
    use eddy_storage::FieldType;

    use super::RunAggregation;
    use crate::test_support::{Rng, assert_same, engine, plan_text, session_without};

    /// Random rows (late, duplicated, with missing fields) in overlapping segments and in
    /// memory: every query grouped by tags and time answers as DataFusion's hash aggregation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_aggregation_equals_hash_aggregation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, ingest, engine) = engine(
            dir.path(),
            &[
                ("time", Time),
                ("host", Tag),
                ("dc", Tag),
                ("usage", Field(FieldType::Float)),
                ("n", Field(FieldType::Integer)),
            ],
        )
        .await;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let start: i64 = 1_704_067_200_000_000_000; // 2024-01-01
        let span: u64 = 2 * 86_400_000_000_000;
        for round in 0..4 {
            let mut lp = String::new();
            for _ in 0..3000 {
                let host = rng.below(12);
                let dc = host % 3;
                // The rows left in memory are a day later than the segments' (a memtable
                // overlapping a segment is merged with it at read time, into memory).
                let day = if round == 3 { span as i64 } else { 0 };
                let t = start + day + (rng.below(span / 1_000_000_000) * 1_000_000_000) as i64;
                let mut fields = Vec::new();
                if rng.below(10) > 0 {
                    fields.push(format!("usage={}", rng.below(10_000) as f64 / 100.0));
                }
                if rng.below(10) > 0 || fields.is_empty() {
                    fields.push(format!("n={}i", rng.below(1000) as i64 - 500));
                }
                lp.push_str(&format!(
                    "cpu,host=h{host},dc=d{dc} {} {t}\n",
                    fields.join(",")
                ));
            }
            let outcome = ingest
                .write_lp(lp.as_bytes(), eddy_ingest::Precision::Nanosecond, 0)
                .await
                .expect("write");
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
            // The last round stays in memory, beside the segments.
            if round < 3 {
                db.flush().expect("flush");
            }
            // Overlapping segments are merged in memory at read time; compacted ones are read
            // as files.
            if round == 2 {
                db.compact().expect("compact");
            }
        }
        let with = engine.session();
        let without = session_without(&engine, RunAggregation::NAME);
        let queries = [
            "SELECT date_trunc('hour', time) AS h, host, avg(usage), sum(n), count(*), \
             count(usage), min(usage), max(n) FROM cpu GROUP BY h, host",
            "SELECT date_trunc('hour', time) AS h, host, avg(usage), max(usage) FROM cpu \
             WHERE time >= '2024-01-01T09:36:18Z' AND time < '2024-01-01T21:36:18Z' \
             GROUP BY h, host",
            "SELECT dc, count(*), sum(usage) FILTER (WHERE n > 0), avg(n) FROM cpu GROUP BY dc",
            "SELECT host, dc, date_bin(INTERVAL '17 minutes', time) AS b, min(n), sum(usage) \
             FROM cpu WHERE host IN ('h1', 'h2', 'h7') GROUP BY host, dc, b",
            "SELECT host, time, sum(n), count(*), avg(usage) FROM cpu GROUP BY host, time",
            "SELECT upper(dc) AS d, extract(hour FROM time) AS hr, count(usage), avg(usage) \
             FROM cpu WHERE usage > 50 GROUP BY d, hr",
        ];
        for sql in queries {
            let plan = plan_text(&with, sql).await;
            assert!(plan.contains("RunAggregateExec"), "{sql}:\n{plan}");
            // The rows in memory (the third day) are aggregated by DataFusion, beside the
            // segments.
            if !sql.contains("WHERE time") {
                assert!(
                    plan.contains("AggregateExec: mode=Partial"),
                    "{sql}:\n{plan}"
                );
            }
            let oracle = plan_text(&without, sql).await;
            assert!(!oracle.contains("RunAggregateExec"), "{sql}:\n{oracle}");
            let got = with.query(sql).await.expect("query");
            let want = without.query(sql).await.expect("oracle");
            assert_same(sql, &got, &want);
        }
        // Grouped by a field, or by time alone: runs would be short, DataFusion's plan stays.
        for sql in [
            "SELECT n, count(*) FROM cpu GROUP BY n",
            "SELECT date_trunc('hour', time) AS h, max(usage) FROM cpu GROUP BY h",
            "SELECT host, n, count(*) FROM cpu GROUP BY host, n",
            "SELECT host, count(DISTINCT n) FROM cpu GROUP BY host",
        ] {
            let plan = plan_text(&with, sql).await;
            assert!(!plan.contains("RunAggregateExec"), "{sql}:\n{plan}");
        }
    }
}

/// An aggregate [`RunAggregator`] computes itself over each run's slice of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fast {
    /// `avg` of a `Float64` argument (integers are cast to it), without `FILTER`: the state
    /// is (count `UInt64`, sum `Float64`), as DataFusion's `AvgGroupsAccumulator` emits it.
    AvgF64,
    /// Through the aggregate's own groups accumulator.
    No,
}

impl Fast {
    fn of(agg: &AggregateFunctionExpr, filter: &Option<Arc<dyn PhysicalExpr>>) -> Fast {
        let state = agg.state_fields().unwrap_or_default();
        let types: Vec<&DataType> = state.iter().map(|f| f.data_type()).collect();
        let args = agg.expressions();
        let avg_f64 = agg.fun().name() == "avg"
            && filter.is_none()
            && args.len() == 1
            && types == [&DataType::UInt64, &DataType::Float64]
            && *agg.field().data_type() == DataType::Float64;
        if avg_f64 { Fast::AvgF64 } else { Fast::No }
    }
}

/// The (count, sum) state of `avg` for each run: null where a run has no value, as DataFusion's
/// accumulator leaves a group that saw none.
fn avg_runs(values: &Float64Array, ranges: &[Range<usize>]) -> [ArrayRef; 2] {
    let mut counts = Vec::with_capacity(ranges.len());
    let mut sums = Vec::with_capacity(ranges.len());
    let nulls = match values.nulls().filter(|n| n.null_count() > 0) {
        None => {
            let v = values.values();
            for r in ranges {
                counts.push(r.len() as u64);
                sums.push(sum_lanes(&v[r.clone()]));
            }
            None
        }
        Some(n) => {
            let mut seen = BooleanBufferBuilder::new(ranges.len());
            for r in ranges {
                let (mut count, mut sum) = (0u64, 0.0f64);
                for i in r.clone() {
                    if n.is_valid(i) {
                        count += 1;
                        sum += values.value(i);
                    }
                }
                counts.push(count);
                sums.push(sum);
                seen.append(count > 0);
            }
            Some(NullBuffer::new(seen.finish()))
        }
    };
    [
        Arc::new(UInt64Array::new(counts.into(), nulls.clone())),
        Arc::new(Float64Array::new(sums.into(), nulls)),
    ]
}

/// Sums in four lanes, so additions do not wait on each other (the order of a float sum is
/// not fixed in a parallel aggregation either).
fn sum_lanes(v: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for x in rest {
        sum += x;
    }
    sum
}
