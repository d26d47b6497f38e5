//! One continuous aggregate: its plans, its state, and how writes, reads, repairs, checkpoints
//! and retention change that state.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, Session,
    TableProvider,
};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion::prelude::{SessionConfig, SessionContext};
use eddy_storage::{Db, TableSchema};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::df_err;
use super::shape::{
    bucket_of, bucket_output_name, find_aggregate, source_table_name, unsupported, validate_shape,
};
use super::state::{Chunk, SeriesKeys, ViewState, filter_rows, times};
use crate::catalog::{DATABASE, SCHEMA};
use crate::error::{ErrorKind, QueryError, Result};
use crate::functions::TimeBucket;

/// Buckets per chunk: the unit of caching finalized rows, of checkpoint files and of
/// retention. Streaming writes touch the newest chunk only, so reads and checkpoints redo
/// one chunk's work rather than the whole view's.
const BUCKETS_PER_CHUNK: i64 = 1024;

/// A view definition as persisted in `views.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDef {
    /// View name.
    pub name: String,
    /// The defining `SELECT`.
    pub query: String,
    /// Identifies this incarnation of the view (checkpoints belong to one); 0 in definitions
    /// written before ids existed.
    #[serde(default)]
    pub id: u64,
    /// How long buckets are kept, as written (`90 days`); `None` keeps them forever.
    #[serde(default)]
    pub retention: Option<String>,
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

/// Where a view's rows come from.
#[derive(Debug)]
pub enum ViewSource {
    /// A table: each write is merged into the state as partial aggregates.
    Table(Arc<TableSchema>),
    /// Another view: buckets touched by writes below it are recomputed from its rows.
    View(Arc<ContinuousAggregate>),
}

/// One continuous aggregate.
#[derive(Debug)]
pub struct ContinuousAggregate {
    def: ViewDef,
    source: ViewSource,
    /// Schema of the rows the defining query reads (the table's, or the upstream view's).
    source_schema: SchemaRef,
    /// Column of `source_schema` that the bucket is computed from.
    source_time_index: usize,
    output_schema: SchemaRef,
    width_ns: i64,
    origin_ns: i64,
    chunk_ns: i64,
    retention_ns: Option<i64>,
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

/// What a write batch contributes to one view, derived in the writer.
pub(super) struct PreparedWrite {
    /// Partial states of the batch; `None` when they could not be derived.
    states: Option<Vec<RecordBatch>>,
    rows: Vec<(u64, i64)>,
}

/// One chunk as taken for reading or saving.
pub(super) struct ChunkCopy {
    pub start: i64,
    pub version: u64,
    pub states: Vec<RecordBatch>,
    pub finished: Option<Vec<RecordBatch>>,
    pub saved: Option<String>,
}

/// Parses a retention such as `90 days` or `12 hours` into nanoseconds, with the one span
/// parser the command line uses too.
pub fn parse_retention(text: &str) -> Result<i64> {
    eddy_storage::time::parse_span_ns(text).map_err(|e| {
        QueryError::new(
            ErrorKind::InvalidParameter,
            format!("retention '{text}': {e}"),
        )
    })
}

impl ContinuousAggregate {
    /// Plans and validates a definition; `view` looks up existing views by name, for views
    /// defined over views.
    pub async fn plan(
        db: &Db,
        def: ViewDef,
        view: &(dyn Fn(&str) -> Option<Arc<ContinuousAggregate>> + Sync),
    ) -> Result<ContinuousAggregate> {
        let stmts = crate::engine::parse(&def.query)?;
        let [crate::engine::Statement::Sql(stmt)] = stmts.as_slice() else {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                "a view is defined by exactly one SELECT",
            ));
        };
        let retention_ns = def.retention.as_deref().map(parse_retention).transpose()?;
        let source_name = source_table_name(stmt)?;
        let source = if let Some(t) = db.catalog().get(&source_name) {
            ViewSource::Table(t)
        } else if let Some(v) = view(&source_name) {
            ViewSource::View(v)
        } else {
            return Err(QueryError::new(
                ErrorKind::TableNotFound,
                format!(
                    "source \"{source_name}\" of view \"{}\" is neither a table nor a materialized view",
                    def.name
                ),
            ));
        };
        let (source_schema, time_column) = match &source {
            ViewSource::Table(t) => (t.arrow_schema().clone(), t.time_column().to_string()),
            ViewSource::View(v) => {
                let col = v.bucket_column().ok_or_else(|| {
                    unsupported(
                        format!(
                            "the view \"{}\" as a source, because it does not return its bucket as a column",
                            v.name()
                        ),
                        "select the upstream view's time_bucket(...) under a name",
                    )
                })?;
                (v.output_schema().clone(), col.to_string())
            }
        };
        let source_time_index = source_schema
            .index_of(&time_column)
            .map_err(|e| df_err(e.into()))?;
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
                    schema: source_schema.clone(),
                }),
            )
            .map_err(df_err)?;
        catalog.register_schema(SCHEMA, schema).map_err(df_err)?;
        ctx.register_catalog(DATABASE, catalog);
        ctx.register_udf(TimeBucket::udf());
        ctx.register_udf(crate::fulltext::Matches::udf());
        ctx.register_udaf(crate::functions::FirstLast::first());
        ctx.register_udaf(crate::functions::FirstLast::last());
        // A view's aggregates must fail on overflow as the same query would.
        crate::overflow::register(&ctx);
        crate::formatting::register(&ctx);
        // And plan its expressions as the same query would (`interval * n`, `b = 'f'`).
        crate::postgres_semantics::register(&ctx);

        let logical = ctx
            .state()
            .statement_to_plan(crate::postgres_semantics::rewrite_statement(stmt.clone()))
            .await
            .map_err(df_err)?;
        validate_shape(&logical)?;
        let optimized = ctx.state().optimize(&logical).map_err(df_err)?;
        let (width_ns, origin_ns, bucket_index) = bucket_of(&optimized, &time_column)?;
        let output_schema: SchemaRef = Arc::new(logical.schema().as_arrow().clone());
        let bucket_output = bucket_output_name(&logical, bucket_index);
        let planned = ctx
            .state()
            .create_physical_plan(&logical)
            .await
            .map_err(df_err)?;
        let agg = find_aggregate(&planned).ok_or_else(|| {
            QueryError::new(ErrorKind::Grouping, "a continuous aggregate needs GROUP BY")
        })?;
        let pre_aggregate = match agg.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                let partial = find_aggregate(agg.input()).ok_or_else(|| {
                    QueryError::new(
                        ErrorKind::Internal,
                        "planned final aggregate without a partial one",
                    )
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
        let status = match source {
            ViewSource::Table(_) => ViewStatus::Backfilling { done: 0, total: 0 },
            ViewSource::View(_) => ViewStatus::Ready,
        };
        Ok(ContinuousAggregate {
            def,
            source,
            source_schema,
            source_time_index,
            output_schema,
            width_ns,
            origin_ns,
            chunk_ns: width_ns.saturating_mul(BUCKETS_PER_CHUNK),
            retention_ns,
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
            state: Mutex::new(ViewState::new(status)),
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

    /// Where the view reads from.
    pub fn source(&self) -> &ViewSource {
        &self.source
    }

    /// Name of the table or view the view reads from.
    pub fn source_name(&self) -> &str {
        match &self.source {
            ViewSource::Table(t) => t.name(),
            ViewSource::View(v) => v.name(),
        }
    }

    /// The table at the bottom of the chain of views.
    pub fn root_table(&self) -> &Arc<TableSchema> {
        match &self.source {
            ViewSource::Table(t) => t,
            ViewSource::View(v) => v.root_table(),
        }
    }

    /// How many views lie between this one and its table (0 when it reads a table).
    pub fn depth(&self) -> usize {
        match &self.source {
            ViewSource::Table(_) => 0,
            ViewSource::View(v) => v.depth() + 1,
        }
    }

    /// The view's output columns.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Schema of the partial states (what checkpoints store).
    pub(super) fn state_schema(&self) -> &SchemaRef {
        &self.state_schema
    }

    /// Backfill progress.
    pub fn status(&self) -> ViewStatus {
        self.state.lock().status
    }

    /// (dirty buckets, state rows) for monitoring.
    pub fn state_sizes(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.dirty.len(), st.state_rows())
    }

    /// Start of the bucket holding `t`.
    pub(super) fn bucket_of(&self, t: i64) -> i64 {
        self.origin_ns.saturating_add(
            t.saturating_sub(self.origin_ns).div_euclid(self.width_ns) * self.width_ns,
        )
    }

    fn chunk_of(&self, bucket: i64) -> i64 {
        self.origin_ns.saturating_add(
            bucket
                .saturating_sub(self.origin_ns)
                .div_euclid(self.chunk_ns)
                * self.chunk_ns,
        )
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
        let schema = self.source_schema.clone();
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

    /// Merges states into one batch of states, one row per group.
    pub(super) fn reduce(&self, states: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        if states.len() <= 1 {
            return Ok(states);
        }
        let plan = AggregateExec::try_new(
            AggregateMode::PartialReduce,
            Arc::new(self.group_by.as_final()),
            self.aggregates.clone(),
            self.filters.clone(),
            self.states_source(states).map_err(df_err)?,
            self.input_schema.clone(),
        )
        .map_err(df_err)?;
        let reduced = self.run(Arc::new(plan)).map_err(df_err)?;
        if reduced.len() <= 1 {
            return Ok(reduced);
        }
        Ok(vec![
            datafusion::arrow::compute::concat_batches(&self.state_schema, &reduced)
                .map_err(|e| df_err(e.into()))?,
        ])
    }

    /// Finalizes states into the view's rows.
    fn finish(&self, states: Vec<RecordBatch>) -> DfResult<Vec<RecordBatch>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
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

    /// Adds partial states (of any buckets) to the chunks their buckets belong to.
    fn add_states(&self, st: &mut ViewState, states: Vec<RecordBatch>) -> Result<()> {
        for b in states {
            let buckets = b
                .column(self.bucket_index)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| {
                    QueryError::new(ErrorKind::Internal, "view bucket is not a timestamp")
                })?;
            let (Some(min), Some(max)) = (
                datafusion::arrow::compute::min(buckets),
                datafusion::arrow::compute::max(buckets),
            ) else {
                continue;
            };
            let (first, last) = (self.chunk_of(min), self.chunk_of(max));
            if first == last {
                st.touch(first).states.push(b);
                continue;
            }
            let chunks: BTreeSet<i64> =
                buckets.iter().flatten().map(|v| self.chunk_of(v)).collect();
            for c in chunks {
                let part = filter_rows(std::slice::from_ref(&b), self.bucket_index, |v| {
                    v.is_some_and(|v| self.chunk_of(v) == c)
                })?;
                st.touch(c).states.extend(part);
            }
        }
        Ok(())
    }

    /// Derives what a write batch contributes; runs in the writer, outside locks.
    pub(super) fn prepare(&self, batch: &RecordBatch, hashes: &[u64]) -> PreparedWrite {
        let times = times(batch, self.source_time_index);
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
    pub(super) fn apply(&self, w: PreparedWrite) {
        let mut st = self.state.lock();
        let merged = match w.states {
            Some(states) => self.add_states(&mut st, states),
            None => Err(QueryError::new(ErrorKind::Internal, "no partial states")),
        };
        if let Err(e) = merged {
            tracing::error!(view = %self.name(), error = %e, "cannot merge a write; its buckets will be recomputed");
            for &(_, t) in &w.rows {
                let b = self.bucket_of(t);
                st.dirty.insert(b);
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

    /// Marks buckets (of this view) for recomputation from the source.
    pub(super) fn mark_dirty(&self, buckets: impl IntoIterator<Item = i64>) {
        self.state.lock().dirty.extend(buckets);
    }

    /// Records a written key; marks its bucket dirty when it may overwrite an existing key.
    fn check_row(&self, st: &mut ViewState, h: u64, t: i64) {
        let new = st.series.entry(h).or_default().insert(t);
        if !new || t < st.exact_from {
            let b = self.bucket_of(t);
            st.dirty.insert(b);
        }
    }

    /// Fills the state from the source as of now. For a table, the snapshot was taken under
    /// the commit barrier when the view was registered and writes since are pending; for a
    /// view over a view the caller holds the barrier.
    pub(super) fn backfill(
        &self,
        db: &Db,
        snapshot: Option<eddy_storage::TableSnapshot>,
    ) -> Result<()> {
        let Some(snapshot) = snapshot else {
            let ViewSource::View(up) = &self.source else {
                return Err(QueryError::new(
                    ErrorKind::Internal,
                    "backfill of a table view without a snapshot",
                ));
            };
            let rows = up.read_locked(db, i64::MIN, i64::MAX)?;
            let states = self.partial(rows).map_err(df_err)?;
            let mut st = self.state.lock();
            st.chunks.clear();
            st.dirty.clear();
            self.add_states(&mut st, states)?;
            st.status = ViewStatus::Ready;
            return Ok(());
        };
        let ViewSource::Table(table) = &self.source else {
            return Err(QueryError::new(
                ErrorKind::Internal,
                "backfill of a view over a view from a table",
            ));
        };
        let total = snapshot.row_count();
        self.state.lock().status = ViewStatus::Backfilling { done: 0, total };
        let plan = snapshot.read_plan(i64::MIN, i64::MAX)?;
        let mut states = Vec::new();
        let mut series: HashMap<u64, SeriesKeys> = HashMap::new();
        let mut done = 0u64;
        let mut take = |batches: Vec<RecordBatch>| -> Result<()> {
            for b in batches {
                let hashes = db.series_hashes(table, &b)?;
                for (h, t) in hashes.iter().zip(times(&b, self.source_time_index)) {
                    series.entry(*h).or_default().insert(*t);
                }
                done += b.num_rows() as u64;
                states.extend(self.partial(vec![b]).map_err(df_err)?);
                self.state.lock().status = ViewStatus::Backfilling { done, total };
            }
            if states.len() > 64 {
                let merged = self.reduce(std::mem::take(&mut states))?;
                states = merged;
            }
            Ok(())
        };
        for f in &plan.files {
            take(eddy_storage::segment::read_segment(
                &f.path,
                table.arrow_schema(),
            )?)?;
        }
        take(plan.batches.clone())?;
        let _barrier = db.commit_barrier();
        let mut st = self.state.lock();
        self.add_states(&mut st, states)?;
        st.series = series;
        st.exact_from = i64::MIN;
        let pending = std::mem::take(&mut st.pending);
        for (h, t) in pending {
            self.check_row(&mut st, h, t);
        }
        st.status = ViewStatus::Ready;
        Ok(())
    }

    /// Installs state loaded from a checkpoint: chunks as saved, buckets still to recompute.
    pub(super) fn restore(&self, chunks: Vec<(i64, String, Vec<RecordBatch>)>, dirty: &[i64]) {
        let mut st = self.state.lock();
        st.chunks.clear();
        for (start, file, states) in chunks {
            let c = st.touch(start);
            c.states = states;
            c.saved = Some(file);
        }
        st.dirty.extend(dirty.iter().copied());
        st.status = ViewStatus::Ready;
    }

    /// Forgets a restored state (it could not be completed) so the view is backfilled.
    pub(super) fn reset(&self) {
        *self.state.lock() = ViewState::new(ViewStatus::Backfilling { done: 0, total: 0 });
    }

    /// After a restore, loads the keys of the last [`OVERWRITE_WINDOW_NS`] of the table so
    /// overwrites are detected exactly there; older rows are treated as overwrites.
    pub(super) fn load_recent_keys(&self, db: &Db) -> Result<()> {
        let ViewSource::Table(table) = &self.source else {
            return Ok(());
        };
        let snapshot = db.snapshot_of(table);
        let Some(max) = snapshot.max_time() else {
            return Ok(());
        };
        let from = max.saturating_sub(super::OVERWRITE_WINDOW_NS);
        let mut series: HashMap<u64, SeriesKeys> = HashMap::new();
        for b in snapshot.read_all(from, i64::MAX)? {
            let hashes = db.series_hashes(table, &b)?;
            for (h, t) in hashes.iter().zip(times(&b, self.source_time_index)) {
                series.entry(*h).or_default().insert(*t);
            }
        }
        let mut st = self.state.lock();
        st.series = series;
        st.exact_from = from;
        Ok(())
    }

    /// The view's rows with bucket in `[lo, hi]` (whole chunks: the caller filters rows).
    pub fn read(&self, db: &Db, lo: i64, hi: i64) -> Result<Vec<RecordBatch>> {
        if let Some(rows) = self.read_raw_while_backfilling(db)? {
            return Ok(rows);
        }
        let parts = {
            let _barrier = db.commit_barrier();
            self.collect_locked(db, lo, hi)?
        };
        self.finish_chunks(parts)
    }

    /// [`Self::read`] for a caller that holds the commit barrier.
    fn read_locked(&self, db: &Db, lo: i64, hi: i64) -> Result<Vec<RecordBatch>> {
        if let Some(rows) = self.read_raw_while_backfilling(db)? {
            return Ok(rows);
        }
        let parts = self.collect_locked(db, lo, hi)?;
        self.finish_chunks(parts)
    }

    /// While a table view backfills, its state lacks part of the source: answer from raw data.
    fn read_raw_while_backfilling(&self, db: &Db) -> Result<Option<Vec<RecordBatch>>> {
        if !matches!(self.status(), ViewStatus::Backfilling { .. }) {
            return Ok(None);
        }
        let ViewSource::Table(table) = &self.source else {
            return Ok(None);
        };
        let raw = db.snapshot_of(table).read_all(i64::MIN, i64::MAX)?;
        let states = self.partial(raw).map_err(df_err)?;
        Ok(Some(self.finish(states).map_err(df_err)?))
    }

    /// Recomputes dirty buckets and copies the chunks overlapping `[lo, hi]`; the caller
    /// holds the commit barrier, so the copy matches the committed data write for write.
    fn collect_locked(&self, db: &Db, lo: i64, hi: i64) -> Result<Vec<ChunkCopy>> {
        self.recompute_dirty_locked(db)?;
        let st = self.state.lock();
        let first = if lo == i64::MIN {
            i64::MIN
        } else {
            self.chunk_of(self.bucket_of(lo))
        };
        Ok(st
            .chunks
            .range(first..=hi)
            .map(|(&start, c)| copy_chunk(start, c))
            .collect())
    }

    /// Finalizes chunks (reusing rows cached per chunk) and caches what it computed.
    fn finish_chunks(&self, parts: Vec<ChunkCopy>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for p in parts {
            if let Some(rows) = p.finished {
                out.extend(rows);
                continue;
            }
            let reduced = self.reduce(p.states)?;
            let rows = self.finish(reduced.clone()).map_err(df_err)?;
            let mut st = self.state.lock();
            if let Some(c) = st.chunks.get_mut(&p.start)
                && c.version == p.version
            {
                c.states = reduced;
                c.finished = Some(rows.clone());
            }
            drop(st);
            out.extend(rows);
        }
        Ok(out)
    }

    /// Name of the bucket column in the view's output, for pruning reads by bucket.
    pub fn bucket_column(&self) -> Option<&str> {
        self.bucket_output.as_deref()
    }

    /// Recomputes dirty buckets from the source; the caller holds the commit barrier.
    fn recompute_dirty_locked(&self, db: &Db) -> Result<()> {
        let dirty = {
            let mut st = self.state.lock();
            if st.dirty.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut st.dirty)
        };
        let (Some(&lo), Some(&last)) = (dirty.first(), dirty.last()) else {
            return Ok(());
        };
        let hi = last.saturating_add(self.width_ns - 1);
        let rows = match &self.source {
            ViewSource::Table(t) => {
                let snapshot = db.snapshot_of(t);
                // Rows of expired partitions are gone: recomputing their buckets would drop
                // what the view still holds of them.
                let floor = db.retention_floor(t);
                let skipped = dirty.range(..floor).count();
                if skipped > 0 {
                    tracing::warn!(view = %self.name(), buckets = skipped, "not recomputing buckets older than the source table's retention");
                }
                let raw = snapshot.read_all(lo.max(floor), hi)?;
                // Only buckets wholly within retention are recomputed: one that straddles the
                // floor keeps its state, so none of its rows may be added again.
                filter_rows(&raw, self.source_time_index, |t| {
                    t.is_some_and(|t| {
                        let b = self.bucket_of(t);
                        b >= floor && dirty.contains(&b)
                    })
                })?
            }
            ViewSource::View(up) => {
                let rows = up.read_locked(db, lo, hi)?;
                filter_rows(&rows, self.source_time_index, |t| {
                    t.is_some_and(|t| dirty.contains(&self.bucket_of(t)))
                })?
            }
        };
        let floor = match &self.source {
            ViewSource::Table(t) => db.retention_floor(t),
            ViewSource::View(_) => i64::MIN,
        };
        let fresh = self.partial(rows).map_err(df_err)?;
        let mut st = self.state.lock();
        let chunks: BTreeSet<i64> = dirty.range(floor..).map(|&b| self.chunk_of(b)).collect();
        for c in chunks {
            let Some(old) = st.chunks.get(&c) else {
                continue;
            };
            let kept = filter_rows(&old.states, self.bucket_index, |b| {
                b.is_none_or(|b| b < floor || !dirty.contains(&b))
            })?;
            st.touch(c).states = kept;
        }
        self.add_states(&mut st, fresh)?;
        st.chunks.retain(|_, c| !c.states.is_empty());
        Ok(())
    }

    /// Copies the state for a checkpoint (recomputation of dirty buckets is left to reads:
    /// the dirty set is saved with it). `None` while backfilling: the state is incomplete.
    pub(super) fn copy_for_checkpoint(&self) -> Option<(Vec<ChunkCopy>, Vec<i64>)> {
        let st = self.state.lock();
        if !matches!(st.status, ViewStatus::Ready) {
            return None;
        }
        let chunks = st
            .chunks
            .iter()
            .map(|(&start, c)| copy_chunk(start, c))
            .collect();
        Some((chunks, st.dirty.iter().copied().collect()))
    }

    /// Records that a chunk, as of `version`, is saved in `file` (with its states reduced).
    pub(super) fn mark_saved(
        &self,
        start: i64,
        version: u64,
        file: &str,
        reduced: Vec<RecordBatch>,
    ) {
        let mut st = self.state.lock();
        if let Some(c) = st.chunks.get_mut(&start)
            && c.version == version
        {
            c.states = reduced;
            c.saved = Some(file.to_string());
        }
    }

    /// Finalizes (and caches) what changed, once the view has had no write for one tick of
    /// the caller, so the first read after a burst of writes finds its rows ready. Skipped
    /// while writes continue: reads then finalize what they need themselves.
    pub(super) fn warm(&self, db: &Db) {
        let due = {
            let mut st = self.state.lock();
            let cold = !st.dirty.is_empty() || st.chunks.values().any(|c| c.finished.is_none());
            let idle = st.clock == st.warm_seen;
            st.warm_seen = st.clock;
            cold && idle && matches!(st.status, ViewStatus::Ready)
        };
        if due && let Err(e) = self.read(db, i64::MIN, i64::MAX) {
            tracing::warn!(view = %self.name(), error = %e, "background finalization failed; reads will retry");
        }
    }

    /// Drops buckets that ended before `now - retention`.
    pub(super) fn enforce_retention(&self, now_ns: i64) {
        let Some(retention) = self.retention_ns else {
            return;
        };
        let horizon = now_ns.saturating_sub(retention);
        // A bucket is expired when it ended at or before the horizon.
        let keep_from = horizon.saturating_sub(self.width_ns).saturating_add(1);
        let mut st = self.state.lock();
        let expired: Vec<i64> = st
            .chunks
            .range(..self.chunk_of(self.bucket_of(keep_from)).saturating_add(1))
            .map(|(&s, _)| s)
            .collect();
        for start in expired {
            if start.saturating_add(self.chunk_ns) <= keep_from {
                st.chunks.remove(&start);
                continue;
            }
            let Some(c) = st.chunks.get(&start) else {
                continue;
            };
            let Ok(kept) = filter_rows(&c.states, self.bucket_index, |b| {
                b.is_some_and(|b| b >= keep_from)
            }) else {
                continue;
            };
            let before: usize = c.states.iter().map(|b| b.num_rows()).sum();
            let after: usize = kept.iter().map(|b| b.num_rows()).sum();
            if after != before {
                st.touch(start).states = kept;
            }
        }
        st.chunks.retain(|_, c| !c.states.is_empty());
        st.dirty = st.dirty.split_off(&keep_from);
    }
}

fn copy_chunk(start: i64, c: &Chunk) -> ChunkCopy {
    ChunkCopy {
        start,
        version: c.version,
        states: c.states.clone(),
        finished: c.finished.clone(),
        saved: c.saved.clone(),
    }
}
