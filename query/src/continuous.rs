//! Continuous aggregates: materialized views kept equal to their defining query as data
//! arrives, by merging DataFusion accumulator states instead of re-scanning raw data.
//!
//! The defining query is planned once against a placeholder source. Its aggregate gives three
//! plans that share one set of accumulators:
//! - `Partial` over each committed write batch (derived before the WAL append, merged into the
//!   view's state by the committer in sequence order, so a read after an acknowledgement sees
//!   the write);
//! - `PartialReduce` to compact accumulated states;
//! - `Final` (and the query's projection) to answer reads.
//!
//! A write that may overwrite an existing key (its time is not newer than the newest time of its
//! series) cannot be merged without counting twice: its bucket is marked dirty and recomputed
//! from the raw rows of that bucket at the next read.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, Session,
    TableProvider,
};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion::prelude::{SessionConfig, SessionContext};
use eddy_storage::{CommitHook, CommitPrepared, Db, TableSchema};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::catalog::{DATABASE, SCHEMA};
use crate::error::{QueryError, Result};
use crate::functions::TimeBucket;

/// Aggregates whose partial state merges exactly (or, for the approximate ones, as the
/// approximation defines).
const MERGEABLE: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "mean",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "var",
    "variance",
    "var_samp",
    "var_pop",
    "first_value",
    "last_value",
    "first",
    "last",
    "approx_distinct",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "bool_and",
    "bool_or",
];

/// A view definition as persisted in `views.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDef {
    /// View name.
    pub name: String,
    /// The defining `SELECT`.
    pub query: String,
}

/// Whether a view's state covers all of its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewStatus {
    /// Filling from data that existed at creation; reads compute from raw data meanwhile.
    Backfilling {
        /// Source rows processed.
        done: u64,
        /// Source rows to process.
        total: u64,
    },
    /// Maintained incrementally.
    Ready,
}

#[derive(Debug)]
struct ViewState {
    status: ViewStatus,
    /// Partial accumulator states, in the `Partial` output schema.
    states: Vec<RecordBatch>,
    /// Bumped whenever `states` is rewritten other than by appending.
    generation: u64,
    /// Bumped on every change of the view's content (appends included; compaction, which
    /// keeps the content, leaves it alone).
    version: u64,
    /// Buckets to recompute from raw data before the next read.
    dirty: BTreeSet<i64>,
    /// Keys seen per series (by hash of its tags) within the overwrite window.
    series: HashMap<u64, SeriesKeys>,
    /// Rows written during backfill, checked against the backfilled data when it completes.
    pending: Vec<(u64, i64)>,
}

/// One continuous aggregate.
#[derive(Debug)]
pub struct ContinuousAggregate {
    def: ViewDef,
    source: Arc<TableSchema>,
    output_schema: SchemaRef,
    width_ns: i64,
    origin_ns: i64,
    /// Index of the bucket among the group-by columns (= its column in the state schema).
    bucket_index: usize,
    /// Name of the bucket in the output, when the query returns it as a plain column.
    bucket_output: Option<String>,
    /// The plan from the scan up to the aggregate's input, over a placeholder memory source.
    pre_aggregate: Arc<dyn ExecutionPlan>,
    /// The full planned query (its top above the aggregate is reused for reads).
    planned: Arc<dyn ExecutionPlan>,
    group_by: Arc<PhysicalGroupBy>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    input_schema: SchemaRef,
    state_schema: SchemaRef,
    task: Arc<TaskContext>,
    state: Mutex<ViewState>,
    /// The finalized rows of the whole view at a state version: reads at rest reuse them.
    finished: Mutex<Option<(u64, Vec<RecordBatch>)>>,
}

/// Table provider that stands in for the source while the defining query is planned.
#[derive(Debug)]
struct Placeholder {
    schema: SchemaRef,
}

#[async_trait::async_trait]
impl TableProvider for Placeholder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

fn unsupported(part: impl std::fmt::Display, instead: &str) -> QueryError {
    QueryError::unsupported(format!(
        "a continuous aggregate cannot be maintained incrementally with {part}; {instead}"
    ))
}

fn df_err(e: DataFusionError) -> QueryError {
    e.into()
}

impl ContinuousAggregate {
    /// Plans and validates a definition over the current source table.
    pub async fn plan(db: &Db, def: ViewDef) -> Result<ContinuousAggregate> {
        let stmts = crate::engine::parse(&def.query)?;
        let [crate::engine::Statement::Sql(stmt)] = stmts.as_slice() else {
            return Err(QueryError::new(
                "42601",
                "a view is defined by exactly one SELECT",
            ));
        };
        let source_name = source_table_name(stmt)?;
        let source = db.catalog().get(&source_name).ok_or_else(|| {
            QueryError::new(
                "42P01",
                format!(
                    "source table \"{source_name}\" of view \"{}\" does not exist",
                    def.name
                ),
            )
        })?;
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_target_partitions(1);
        let ctx = SessionContext::new_with_config(config);
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let schema = Arc::new(MemorySchemaProvider::new());
        schema
            .register_table(
                source_name.clone(),
                Arc::new(Placeholder {
                    schema: source.arrow_schema().clone(),
                }),
            )
            .map_err(df_err)?;
        catalog.register_schema(SCHEMA, schema).map_err(df_err)?;
        ctx.register_catalog(DATABASE, catalog);
        ctx.register_udf(TimeBucket::udf());
        ctx.register_udaf(crate::functions::FirstLast::first());
        ctx.register_udaf(crate::functions::FirstLast::last());

        let logical = ctx
            .state()
            .statement_to_plan(stmt.clone())
            .await
            .map_err(df_err)?;
        validate_shape(&logical)?;
        let optimized = ctx.state().optimize(&logical).map_err(df_err)?;
        let (width_ns, origin_ns, bucket_index) = bucket_of(&optimized, source.time_column())?;
        let output_schema: SchemaRef = Arc::new(logical.schema().as_arrow().clone());
        let bucket_output = bucket_output_name(&logical, bucket_index);
        let planned = ctx
            .state()
            .create_physical_plan(&logical)
            .await
            .map_err(df_err)?;
        let agg = find_aggregate(&planned)
            .ok_or_else(|| QueryError::new("42803", "a continuous aggregate needs GROUP BY"))?;
        let pre_aggregate = match agg.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                let partial = find_aggregate(agg.input()).ok_or_else(|| {
                    QueryError::new("XX000", "planned final aggregate without a partial one")
                })?;
                partial.input().clone()
            }
            _ => agg.input().clone(),
        };
        let group_by = Arc::new(agg.group_expr().clone());
        let aggregates = agg.aggr_expr().to_vec();
        let filters = agg.filter_expr().to_vec();
        let input_schema = agg.input_schema();
        let probe = AggregateExec::try_new(
            AggregateMode::Partial,
            group_by.clone(),
            aggregates.clone(),
            filters.clone(),
            pre_aggregate.clone(),
            input_schema.clone(),
        )
        .map_err(df_err)?;
        let state_schema = probe.schema();
        Ok(ContinuousAggregate {
            def,
            source,
            output_schema,
            width_ns,
            origin_ns,
            bucket_index,
            bucket_output,
            pre_aggregate,
            planned,
            group_by,
            aggregates,
            filters,
            input_schema,
            state_schema,
            task: ctx.task_ctx(),
            state: Mutex::new(ViewState {
                status: ViewStatus::Backfilling { done: 0, total: 0 },
                states: Vec::new(),
                generation: 0,
                version: 0,
                dirty: BTreeSet::new(),
                series: HashMap::new(),
                pending: Vec::new(),
            }),
            finished: Mutex::new(None),
        })
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The definition.
    pub fn def(&self) -> &ViewDef {
        &self.def
    }

    /// The source table.
    pub fn source(&self) -> &Arc<TableSchema> {
        &self.source
    }

    /// Schema of the rows the view returns.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Current status.
    pub fn status(&self) -> ViewStatus {
        self.state.lock().status
    }

    /// (dirty buckets, state rows) for monitoring.
    pub fn state_sizes(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.dirty.len(), st.states.iter().map(|b| b.num_rows()).sum())
    }

    fn bucket_of(&self, t: i64) -> i64 {
        self.origin_ns + (t - self.origin_ns).div_euclid(self.width_ns) * self.width_ns
    }

    fn run(&self, plan: Arc<dyn ExecutionPlan>) -> DfResult<Vec<RecordBatch>> {
        // Every plan here reads one in-memory partition and does no I/O, so it runs to
        // completion when polled, without a runtime.
        futures::executor::block_on(async {
            let mut out = Vec::new();
            let mut stream = plan.execute(0, self.task.clone())?;
            while let Some(b) = stream.next().await {
                let b = b?;
                if b.num_rows() > 0 {
                    out.push(b);
                }
            }
            Ok(out)
        })
    }

    /// Partial accumulator states of source rows (in the source's schema).
    fn partial(&self, batches: Vec<RecordBatch>) -> DfResult<Vec<RecordBatch>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let schema = self.source.arrow_schema().clone();
        let input = self
            .pre_aggregate
            .clone()
            .transform_up(|node| {
                let Some(ds) = node.downcast_ref::<DataSourceExec>() else {
                    return Ok(Transformed::no(node));
                };
                let Some(mem) = ds.data_source().downcast_ref::<MemorySourceConfig>() else {
                    return Ok(Transformed::no(node));
                };
                let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
                    std::slice::from_ref(&batches),
                    schema.clone(),
                    mem.projection().clone(),
                )?;
                Ok(Transformed::yes(exec))
            })?
            .data;
        let plan = AggregateExec::try_new(
            AggregateMode::Partial,
            self.group_by.clone(),
            self.aggregates.clone(),
            self.filters.clone(),
            input,
            self.input_schema.clone(),
        )?;
        self.run(Arc::new(plan))
    }

    fn states_source(&self, states: Vec<RecordBatch>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[states],
            self.state_schema.clone(),
            None,
        )?)
    }

    /// Merges states into one set of states, one row per group.
    fn reduce(&self, states: Vec<RecordBatch>) -> DfResult<Vec<RecordBatch>> {
        let plan = AggregateExec::try_new(
            AggregateMode::PartialReduce,
            Arc::new(self.group_by.as_final()),
            self.aggregates.clone(),
            self.filters.clone(),
            self.states_source(states)?,
            self.input_schema.clone(),
        )?;
        self.run(Arc::new(plan))
    }

    /// Finalizes states into the view's rows.
    fn finish(&self, states: Vec<RecordBatch>) -> DfResult<Vec<RecordBatch>> {
        let final_agg: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
            AggregateMode::Final,
            Arc::new(self.group_by.as_final()),
            self.aggregates.clone(),
            self.filters.clone(),
            self.states_source(states)?,
            self.input_schema.clone(),
        )?);
        let plan = self
            .planned
            .clone()
            .transform_down(|node| {
                if node.is::<AggregateExec>() {
                    Ok(Transformed::new(
                        final_agg.clone(),
                        true,
                        TreeNodeRecursion::Jump,
                    ))
                } else {
                    Ok(Transformed::no(node))
                }
            })?
            .data;
        self.run(plan)
    }

    /// Derives what a write batch contributes; runs in the writer, outside locks.
    fn prepare(&self, batch: &RecordBatch, hashes: &[u64]) -> PreparedWrite {
        let times: &[i64] = batch
            .column(self.source.time_index())
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .map(|a| a.values().as_ref())
            .unwrap_or_default();
        let states = match self.partial(vec![batch.clone()]) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(view = %self.name(), error = %e, "cannot derive view state; its buckets will be recomputed");
                None
            }
        };
        PreparedWrite {
            states,
            rows: hashes.iter().copied().zip(times.iter().copied()).collect(),
        }
    }

    /// Merges a prepared write; runs in the committer, in sequence order, so the rows are in
    /// the table when the state changes.
    fn apply(&self, w: PreparedWrite) {
        let mut st = self.state.lock();
        st.version += 1;
        match w.states {
            Some(states) => st.states.extend(states),
            None => {
                // Could not merge: recompute the touched buckets from the (committed) rows.
                for &(_, t) in &w.rows {
                    let b = self.bucket_of(t);
                    st.dirty.insert(b);
                }
            }
        }
        if matches!(st.status, ViewStatus::Backfilling { .. }) {
            st.pending.extend(w.rows);
            return;
        }
        for (h, t) in w.rows {
            self.check_row(&mut st, h, t);
        }
    }

    /// Records a written key; marks its bucket dirty when it may overwrite an existing key.
    fn check_row(&self, st: &mut ViewState, h: u64, t: i64) {
        let keys = st.series.entry(h).or_default();
        if keys.insert(t) {
            return;
        }
        let b = self.bucket_of(t);
        st.dirty.insert(b);
    }

    /// Fills the state from the source's data as of the snapshot (taken under the commit
    /// barrier when the view was registered), then switches to incremental maintenance.
    fn backfill(&self, db: &Db, snapshot: eddy_storage::TableSnapshot) -> Result<()> {
        let total = snapshot.row_count();
        self.state.lock().status = ViewStatus::Backfilling { done: 0, total };
        let plan = snapshot.read_plan(i64::MIN, i64::MAX)?;
        let mut states = Vec::new();
        let mut series: HashMap<u64, SeriesKeys> = HashMap::new();
        let mut done = 0u64;
        let mut take = |batches: Vec<RecordBatch>| -> Result<()> {
            for b in batches {
                let hashes = db.series_hashes(&self.source, &b)?;
                if let Some(times) = b
                    .column(self.source.time_index())
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                {
                    for (h, t) in hashes.iter().zip(times.values().iter()) {
                        series.entry(*h).or_default().insert(*t);
                    }
                }
                done += b.num_rows() as u64;
                states.extend(self.partial(vec![b]).map_err(df_err)?);
                self.state.lock().status = ViewStatus::Backfilling { done, total };
            }
            if states.len() > 64 {
                let merged = self.reduce(std::mem::take(&mut states)).map_err(df_err)?;
                states = merged;
            }
            Ok(())
        };
        for f in &plan.files {
            take(eddy_storage::segment::read_segment(
                &f.path,
                self.source.arrow_schema(),
            )?)?;
        }
        take(plan.batches.clone())?;
        let _barrier = db.commit_barrier();
        let mut st = self.state.lock();
        st.states.extend(states);
        st.series = series;
        let pending = std::mem::take(&mut st.pending);
        for (h, t) in pending {
            self.check_row(&mut st, h, t);
        }
        st.status = ViewStatus::Ready;
        st.generation += 1;
        st.version += 1;
        Ok(())
    }

    /// The view's rows with bucket in `[lo, hi]`: recomputes dirty buckets, compacts the state
    /// and finalizes it.
    pub fn read(&self, db: &Db, lo: i64, hi: i64) -> Result<Vec<RecordBatch>> {
        if matches!(self.status(), ViewStatus::Backfilling { .. }) {
            // Not all of the source is in the state yet: answer from the raw data.
            let snap = db.snapshot_of(&self.source);
            let raw = snap.read_all(i64::MIN, i64::MAX)?;
            let states = self.partial(raw).map_err(df_err)?;
            return self.finish(states).map_err(df_err);
        }
        // Dirty buckets and the state must be taken at one instant: a write in between could
        // add an overwrite's partial state without its bucket being recomputed.
        let (states, n, generation, version) = {
            let _barrier = db.commit_barrier();
            self.recompute_dirty_locked(db)?;
            let st = self.state.lock();
            (
                st.states.clone(),
                st.states.len(),
                st.generation,
                st.version,
            )
        };
        let states = if n > 1 {
            let reduced = self.reduce(states).map_err(df_err)?;
            let one = if reduced.is_empty() {
                Vec::new()
            } else {
                vec![
                    datafusion::arrow::compute::concat_batches(&self.state_schema, &reduced)
                        .map_err(|e| df_err(e.into()))?,
                ]
            };
            let mut st = self.state.lock();
            if st.generation == generation && st.states.len() >= n {
                st.states.splice(0..n, one.iter().cloned());
            }
            one
        } else {
            states
        };
        if lo == i64::MIN && hi == i64::MAX {
            if let Some((v, rows)) = self.finished.lock().as_ref()
                && *v == version
            {
                return Ok(rows.clone());
            }
            let rows = self.finish(states).map_err(df_err)?;
            *self.finished.lock() = Some((version, rows.clone()));
            return Ok(rows);
        }
        let states = self.bucket_range(states, lo, hi)?;
        self.finish(states).map_err(df_err)
    }

    fn bucket_range(&self, states: Vec<RecordBatch>, lo: i64, hi: i64) -> Result<Vec<RecordBatch>> {
        filter_rows(&states, self.bucket_index, |v| {
            v.is_some_and(|v| v >= lo && v <= hi)
        })
    }

    /// Name of the bucket column in the view's output, for pruning reads by bucket.
    pub fn bucket_column(&self) -> Option<&str> {
        self.bucket_output.as_deref()
    }

    /// Recomputes dirty buckets from raw rows; the caller holds the commit barrier.
    fn recompute_dirty_locked(&self, db: &Db) -> Result<()> {
        if self.state.lock().dirty.is_empty() {
            return Ok(());
        }
        let snapshot = db.snapshot_of(&self.source);
        let mut st = self.state.lock();
        if st.dirty.is_empty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut st.dirty);
        let lo = *dirty.first().unwrap_or(&0);
        let hi = dirty
            .last()
            .map_or(0, |b| b.saturating_add(self.width_ns - 1));
        let raw = snapshot.read_all(lo, hi)?;
        let keep_raw = filter_rows(&raw, self.source.time_index(), |t| {
            t.is_some_and(|t| dirty.contains(&self.bucket_of(t)))
        })?;
        let fresh = self.partial(keep_raw).map_err(df_err)?;
        let mut kept = filter_rows(&st.states, self.bucket_index, |b| {
            b.is_none_or(|b| !dirty.contains(&b))
        })?;
        kept.extend(fresh);
        st.states = kept;
        st.generation += 1;
        st.version += 1;
        Ok(())
    }
}

/// Keeps the rows of `batches` whose timestamp in column `col` satisfies `keep`; drops batches
/// left empty. A batch whose column is not a nanosecond timestamp is kept whole.
fn filter_rows(
    batches: &[RecordBatch],
    col: usize,
    keep: impl Fn(Option<i64>) -> bool,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let Some(ts) = b
            .column(col)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
        else {
            out.push(b.clone());
            continue;
        };
        let mask: BooleanArray = ts.iter().map(|v| Some(keep(v))).collect();
        let f = datafusion::arrow::compute::filter_record_batch(b, &mask)
            .map_err(|e| df_err(e.into()))?;
        if f.num_rows() > 0 {
            out.push(f);
        }
    }
    Ok(out)
}

/// How far behind the newest row of its series a row may be and still be checked exactly for
/// being an overwrite; older rows are assumed to overwrite (their bucket is recomputed).
pub const OVERWRITE_WINDOW_NS: i64 = 3_600_000_000_000;

/// The keys of one series within [`OVERWRITE_WINDOW_NS`] of its newest row, sorted. Rows
/// mostly arrive in time order, so the common case is a push at the back and a pop at the front.
#[derive(Debug, Default)]
struct SeriesKeys {
    recent: std::collections::VecDeque<i64>,
}

impl SeriesKeys {
    /// Adds a key; returns whether it is certainly new (so merging it cannot double count).
    fn insert(&mut self, t: i64) -> bool {
        let Some(&max) = self.recent.back() else {
            self.recent.push_back(t);
            return true;
        };
        if t > max {
            self.recent.push_back(t);
            let floor = t - OVERWRITE_WINDOW_NS;
            while self.recent.front().is_some_and(|&f| f < floor) {
                self.recent.pop_front();
            }
            return true;
        }
        if t < max - OVERWRITE_WINDOW_NS {
            return false;
        }
        match self.recent.binary_search(&t) {
            Ok(_) => false,
            Err(pos) => {
                self.recent.insert(pos, t);
                true
            }
        }
    }
}

struct PreparedWrite {
    /// Partial states of the batch; `None` when they could not be derived.
    states: Option<Vec<RecordBatch>>,
    rows: Vec<(u64, i64)>,
}

/// What the registry prepared for one write batch: the batch itself, so views registered
/// between preparation and commit still get their share, and each view's partial states.
struct ViewsPrepared {
    batch: RecordBatch,
    hashes: Vec<u64>,
    views: Vec<(Arc<ContinuousAggregate>, PreparedWrite)>,
}

fn source_table_name(stmt: &datafusion::sql::parser::Statement) -> Result<String> {
    use datafusion::sql::parser::Statement as Df;
    use datafusion::sql::sqlparser::ast::{SetExpr, Statement, TableFactor};
    let Df::Statement(s) = stmt else {
        return Err(QueryError::new("42601", "a view is defined by a SELECT"));
    };
    let Statement::Query(q) = s.as_ref() else {
        return Err(QueryError::new("42601", "a view is defined by a SELECT"));
    };
    if q.with.is_some() {
        return Err(unsupported("WITH", "define the view with a single SELECT"));
    }
    if q.order_by.is_some() || q.limit_clause.is_some() {
        return Err(unsupported(
            "ORDER BY or LIMIT",
            "sort or limit when reading the view",
        ));
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(unsupported("set operations", "define one view per SELECT"));
    };
    match sel.from.as_slice() {
        [twj] if twj.joins.is_empty() => match &twj.relation {
            TableFactor::Table { name, .. } => crate::ddl::table_name(name),
            other => Err(unsupported(format!("FROM {other}"), "select from a table")),
        },
        [_] => Err(unsupported("a join", "aggregate one table per view")),
        _ => Err(unsupported(
            "several tables in FROM",
            "aggregate one table per view",
        )),
    }
}

fn validate_shape(plan: &LogicalPlan) -> Result<()> {
    let mut seen_aggregate = false;
    let mut err = None;
    plan.apply(|node| {
        let bad = match node {
            LogicalPlan::Projection(_) | LogicalPlan::TableScan(_) | LogicalPlan::SubqueryAlias(_) => None,
            LogicalPlan::Filter(_) if seen_aggregate => None,
            LogicalPlan::Filter(_) => Some(unsupported(
                "HAVING",
                "filter the view's rows when reading it",
            )),
            LogicalPlan::Aggregate(a) => {
                seen_aggregate = true;
                check_aggregates(&a.aggr_expr).err()
            }
            LogicalPlan::Join(_) => Some(unsupported("a join", "aggregate one table per view")),
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
                Some(unsupported("ORDER BY or LIMIT", "sort or limit when reading the view"))
            }
            LogicalPlan::Window(_) => Some(unsupported(
                "window functions",
                "apply them when reading the view",
            )),
            LogicalPlan::Distinct(_) => Some(unsupported(
                "DISTINCT",
                "group by the columns instead",
            )),
            other => Some(unsupported(
                format!("a {} step", other.display()),
                "use SELECT time_bucket(...), columns, aggregates FROM table [WHERE ...] GROUP BY ...",
            )),
        };
        if let Some(e) = bad {
            err = Some(e);
            return Ok(TreeNodeRecursion::Stop);
        }
        // Non-deterministic functions would make the view depend on when rows arrived.
        for e in node.expressions() {
            if let Some(f) = non_deterministic(&e) {
                err = Some(unsupported(
                    format!("the non-deterministic function {f}()"),
                    "use only deterministic functions (a view must not depend on when rows arrive)",
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(df_err)?;
    if let Some(e) = err {
        return Err(e);
    }
    if !seen_aggregate {
        return Err(QueryError::new(
            "42803",
            "a continuous aggregate needs aggregates and GROUP BY time_bucket(...)",
        ));
    }
    Ok(())
}

/// The first function in `e` whose result can change between calls with the same arguments
/// (`now()`, `random()`, ...).
fn non_deterministic(e: &Expr) -> Option<String> {
    use datafusion::logical_expr::Volatility;
    let mut found = None;
    let _ = e.apply(|x| {
        if let Expr::ScalarFunction(f) = x
            && f.func.signature().volatility != Volatility::Immutable
        {
            found = Some(f.name().to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn check_aggregates(exprs: &[Expr]) -> Result<()> {
    use datafusion::logical_expr::expr::AggregateFunction;
    for e in exprs {
        let mut inner = e;
        while let Expr::Alias(a) = inner {
            inner = a.expr.as_ref();
        }
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return Err(unsupported(
                format!("the expression {e}"),
                "aggregate columns",
            ));
        };
        let name = func.name().to_lowercase();
        if params.distinct {
            return Err(unsupported(
                format!("{name}(DISTINCT ...)"),
                "use approx_distinct(...) for distinct counts",
            ));
        }
        if !MERGEABLE.contains(&name.as_str()) {
            let instead = match name.as_str() {
                "median" | "percentile_cont" => "use approx_percentile_cont(...)",
                "array_agg" | "string_agg" => {
                    "aggregate into a mergeable value such as count or max"
                }
                _ => {
                    "use count, sum, min, max, avg, stddev, variance, first_value, last_value, approx_distinct or approx_percentile_cont"
                }
            };
            return Err(unsupported(format!("the aggregate {name}"), instead));
        }
    }
    Ok(())
}

/// Finds the bucket among the group-by expressions of the optimized plan: its width, origin
/// and position. Exactly one `date_bin`/`time_bucket` over the time column with a fixed width.
fn bucket_of(plan: &LogicalPlan, time_column: &str) -> Result<(i64, i64, usize)> {
    let mut found = None;
    plan.apply(|node| {
        if let LogicalPlan::Aggregate(a) = node {
            found = Some(a.group_expr.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(df_err)?;
    let groups = found.ok_or_else(|| QueryError::new("42803", "no GROUP BY"))?;
    let mut bucket = None;
    for (i, g) in groups.iter().enumerate() {
        let mut g = g;
        while let Expr::Alias(a) = g {
            g = a.expr.as_ref();
        }
        match g {
            Expr::ScalarFunction(f) if f.name() == "date_bin" => {
                if bucket.is_some() {
                    return Err(unsupported(
                        "two time buckets",
                        "group by one time_bucket(...)",
                    ));
                }
                let width = match f.args.first() {
                    Some(Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)) => {
                        if v.months != 0 {
                            return Err(unsupported(
                                "a bucket width in months",
                                "use a fixed width such as '30 days'",
                            ));
                        }
                        v.days as i64 * 86_400_000_000_000 + v.nanoseconds
                    }
                    Some(Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _)) => {
                        v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000
                    }
                    other => {
                        return Err(unsupported(
                            format!("the bucket width {other:?}"),
                            "give the width as a constant interval, e.g. '1 minute'",
                        ));
                    }
                };
                match f.args.get(1) {
                    Some(Expr::Column(c)) if c.name == time_column => {}
                    other => {
                        return Err(unsupported(
                            format!("a bucket over {other:?}"),
                            &format!("bucket the time column \"{time_column}\""),
                        ));
                    }
                }
                let origin = match f.args.get(2) {
                    None => 0,
                    Some(Expr::Literal(v, _)) => match v {
                        ScalarValue::TimestampNanosecond(Some(t), _) => *t,
                        ScalarValue::TimestampMicrosecond(Some(t), _) => t * 1_000,
                        ScalarValue::TimestampMillisecond(Some(t), _) => t * 1_000_000,
                        ScalarValue::TimestampSecond(Some(t), _) => t * 1_000_000_000,
                        other => {
                            return Err(unsupported(
                                format!("the bucket origin {other}"),
                                "give the origin as a constant timestamp",
                            ));
                        }
                    },
                    Some(other) => {
                        return Err(unsupported(
                            format!("the bucket origin {other}"),
                            "give the origin as a constant timestamp",
                        ));
                    }
                };
                if width <= 0 {
                    return Err(QueryError::new("22023", "bucket width must be positive"));
                }
                bucket = Some((width, origin, i));
            }
            Expr::Column(_) => {}
            other => {
                return Err(unsupported(
                    format!("GROUP BY {other}"),
                    "group by time_bucket(...) and plain columns",
                ));
            }
        }
    }
    bucket.ok_or_else(|| {
        QueryError::new(
            "42803",
            "a continuous aggregate must GROUP BY time_bucket(width, time) or date_bin(width, time)",
        )
    })
}

/// The output column that returns the bucket unchanged (`time_bucket(...) AS bucket`).
fn bucket_output_name(plan: &LogicalPlan, bucket_index: usize) -> Option<String> {
    let LogicalPlan::Projection(p) = plan else {
        return None;
    };
    let LogicalPlan::Aggregate(a) = p.input.as_ref() else {
        return None;
    };
    let group_field = a.schema.field(bucket_index).name().clone();
    p.expr.iter().enumerate().find_map(|(i, e)| {
        let mut inner = e;
        while let Expr::Alias(al) = inner {
            inner = al.expr.as_ref();
        }
        match inner {
            Expr::Column(c) if c.name == group_field => Some(plan.schema().field(i).name().clone()),
            _ => None,
        }
    })
}

fn find_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    if let Some(a) = plan.downcast_ref::<AggregateExec>() {
        return Some(a);
    }
    plan.children().into_iter().find_map(find_aggregate)
}

/// All continuous aggregates, persisted in `views.json`; the storage engine's commit hook.
#[derive(Debug)]
pub struct ViewRegistry {
    db: Db,
    path: PathBuf,
    views: RwLock<HashMap<String, Arc<ContinuousAggregate>>>,
    /// Definitions that could not be planned at start (kept so they are not lost).
    broken: Mutex<Vec<ViewDef>>,
    change: tokio::sync::Mutex<()>,
}

impl ViewRegistry {
    /// Loads the definitions and starts rebuilding each view's state from its source.
    pub async fn open(db: Db) -> Result<Arc<ViewRegistry>> {
        let path = db.config().data_dir.join("views.json");
        let defs: Vec<ViewDef> = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| QueryError::new("XX001", format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(QueryError::new("58030", format!("{}: {e}", path.display()))),
        };
        let reg = Arc::new(ViewRegistry {
            db: db.clone(),
            path,
            views: RwLock::new(HashMap::new()),
            broken: Mutex::new(Vec::new()),
            change: tokio::sync::Mutex::new(()),
        });
        db.set_commit_hook(reg.clone());
        for def in defs {
            match ContinuousAggregate::plan(&db, def.clone()).await {
                Ok(ca) => reg.register_and_backfill(Arc::new(ca), true).await?,
                Err(e) => {
                    tracing::error!(view = %def.name, error = %e, "cannot restore view; its definition is kept");
                    reg.broken.lock().push(def);
                }
            }
        }
        Ok(reg)
    }

    /// The view of that name.
    pub fn get(&self, name: &str) -> Option<Arc<ContinuousAggregate>> {
        self.views.read().get(name).cloned()
    }

    /// All views, by name.
    pub fn list(&self) -> Vec<Arc<ContinuousAggregate>> {
        let mut v: Vec<_> = self.views.read().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// Creates a view and fills it from existing data in the background.
    pub async fn create(&self, def: ViewDef, if_not_exists: bool) -> Result<()> {
        let _change = self.change.lock().await;
        if def.name == crate::catalog::VIEWS_TABLE {
            return Err(QueryError::new(
                "42P07",
                format!("\"{}\" is the system table of views", def.name),
            ));
        }
        let broken = self.broken.lock().iter().any(|d| d.name == def.name);
        if broken || self.get(&def.name).is_some() || self.db.catalog().get(&def.name).is_some() {
            if if_not_exists {
                return Ok(());
            }
            return Err(QueryError::new(
                "42P07",
                format!("relation \"{}\" already exists", def.name),
            ));
        }
        let ca = Arc::new(ContinuousAggregate::plan(&self.db, def).await?);
        self.register_and_backfill(ca, false).await?;
        self.persist()
    }

    async fn register_and_backfill(&self, ca: Arc<ContinuousAggregate>, wait: bool) -> Result<()> {
        let snapshot = {
            let _barrier = self.db.commit_barrier();
            self.views.write().insert(ca.name().to_string(), ca.clone());
            self.db.snapshot_of(ca.source())
        };
        let db = self.db.clone();
        let task = {
            let ca = ca.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = ca.backfill(&db, snapshot) {
                    tracing::error!(view = %ca.name(), error = %e, "backfill failed");
                }
            })
        };
        if wait {
            let _ = task.await;
        }
        Ok(())
    }

    /// Drops a view.
    pub async fn drop_view(&self, name: &str, if_exists: bool) -> Result<()> {
        let _change = self.change.lock().await;
        let was_broken = {
            let mut b = self.broken.lock();
            let n = b.len();
            b.retain(|d| d.name != name);
            b.len() != n
        };
        if self.views.write().remove(name).is_none() && !was_broken && !if_exists {
            return Err(QueryError::new(
                "42P01",
                format!("materialized view \"{name}\" does not exist"),
            ));
        }
        self.persist()
    }

    /// Recomputes a view from its source (repair).
    pub async fn refresh(&self, name: &str) -> Result<()> {
        let _change = self.change.lock().await;
        let old = self.get(name).ok_or_else(|| {
            QueryError::new(
                "42P01",
                format!("materialized view \"{name}\" does not exist"),
            )
        })?;
        let ca = Arc::new(ContinuousAggregate::plan(&self.db, old.def().clone()).await?);
        self.register_and_backfill(ca, true).await
    }

    /// Names of views reading from a table.
    pub fn dependents(&self, table: &str) -> Vec<String> {
        self.views
            .read()
            .values()
            .filter(|v| v.source().name() == table)
            .map(|v| v.name().to_string())
            .collect()
    }

    fn persist(&self) -> Result<()> {
        let mut defs: Vec<ViewDef> = self.list().iter().map(|v| v.def().clone()).collect();
        defs.extend(self.broken.lock().iter().cloned());
        let bytes = serde_json::to_vec_pretty(&defs)
            .map_err(|e| QueryError::new("XX000", e.to_string()))?;
        eddy_storage::fsutil::write_atomic(Path::new(&self.path), &bytes)?;
        Ok(())
    }
}

impl CommitHook for ViewRegistry {
    fn prepare(
        &self,
        table: &Arc<TableSchema>,
        batch: &RecordBatch,
        series_hashes: &[u64],
    ) -> Option<CommitPrepared> {
        let views: Vec<Arc<ContinuousAggregate>> = self
            .views
            .read()
            .values()
            .filter(|v| v.source().def().id == table.def().id)
            .cloned()
            .collect();
        let views = views
            .into_iter()
            .map(|v| {
                let p = v.prepare(batch, series_hashes);
                (v, p)
            })
            .collect();
        Some(Box::new(ViewsPrepared {
            batch: batch.clone(),
            hashes: series_hashes.to_vec(),
            views,
        }))
    }

    fn apply(&self, table_id: u64, prepared: CommitPrepared) {
        let Ok(prepared) = prepared.downcast::<ViewsPrepared>() else {
            return;
        };
        let ViewsPrepared {
            batch,
            hashes,
            mut views,
        } = *prepared;
        let current: Vec<Arc<ContinuousAggregate>> = self
            .views
            .read()
            .values()
            .filter(|v| v.source().def().id == table_id)
            .cloned()
            .collect();
        for v in current {
            // A view registered after this write was prepared derives its share now; views
            // dropped or replaced meanwhile are skipped.
            let p = match views.iter().position(|(pv, _)| Arc::ptr_eq(pv, &v)) {
                Some(i) => views.swap_remove(i).1,
                None => v.prepare(&batch, &hashes),
            };
            v.apply(p);
        }
    }
}

/// The view as a table.
#[derive(Debug)]
pub struct ViewTable {
    db: Db,
    view: Arc<ContinuousAggregate>,
}

impl ViewTable {
    /// A provider over a view.
    pub fn new(db: Db, view: Arc<ContinuousAggregate>) -> Self {
        Self { db, view }
    }
}

#[async_trait::async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.output_schema().clone()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Bucket ranges prune the state before finalizing; rows are still checked above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (lo, hi) = match self.view.bucket_column() {
            Some(col) => crate::table::time_range(filters, col),
            None => (i64::MIN, i64::MAX),
        };
        let (db, view) = (self.db.clone(), self.view.clone());
        let batches = tokio::task::spawn_blocking(move || view.read(&db, lo, hi))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let schema = self.view.output_schema().clone();
        let batches = batches
            .into_iter()
            .map(|b| {
                // The final plan names columns as the query did; the view's schema is the same
                // up to field metadata and nullability, so re-wrap the columns.
                RecordBatch::try_new(schema.clone(), b.columns().to_vec())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            schema,
            projection.cloned(),
        )?)
    }
}

/// Columns of the `eddy_views` system table.
pub fn views_table(reg: &ViewRegistry) -> DfResult<RecordBatch> {
    use datafusion::arrow::array::{StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Schema};
    let views = reg.list();
    let mut status = Vec::new();
    let mut done = Vec::new();
    let mut total = Vec::new();
    let mut dirty = Vec::new();
    let mut rows = Vec::new();
    for v in &views {
        match v.status() {
            ViewStatus::Ready => {
                status.push("ready");
                done.push(0);
                total.push(0);
            }
            ViewStatus::Backfilling { done: d, total: t } => {
                status.push("backfilling");
                done.push(d);
                total.push(t);
            }
        }
        let (d, r) = v.state_sizes();
        dirty.push(d as u64);
        rows.push(r as u64);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("backfill_rows_done", DataType::UInt64, false),
        Field::new("backfill_rows_total", DataType::UInt64, false),
        Field::new("dirty_buckets", DataType::UInt64, false),
        Field::new("state_rows", DataType::UInt64, false),
        Field::new("definition", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.name()),
            )),
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.source().name()),
            )),
            Arc::new(StringArray::from(status)),
            Arc::new(UInt64Array::from(done)),
            Arc::new(UInt64Array::from(total)),
            Arc::new(UInt64Array::from(dirty)),
            Arc::new(UInt64Array::from(rows)),
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.def().query.as_str()),
            )),
        ],
    )?)
}
