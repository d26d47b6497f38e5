//! The SQL engine: a DataFusion session per client over the Eddy catalog, with the statements
//! DataFusion would run in memory (DDL) routed to storage and the continuous aggregates, and
//! statements that would reach the server's file system refused.
//!
//! It is protocol-neutral: it takes parsed statements and answers rows or a [`Completion`].
//! Session statements of one protocol (PostgreSQL's BEGIN, SET, cursors) and the catalog
//! tables its clients read are the front end's, added through [`QueryEngine::extend`] and
//! [`QueryEngine::session_with`].

use eddy_ingest::sources::SourceManager;
use std::sync::Arc;

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::common::ParamValues;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{collect, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ObjectType, Query, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use eddy_ingest::Ingest;
use eddy_storage::{Db, TableDef};
use futures::StreamExt;
use parking_lot::Mutex;

use crate::catalog::{DATABASE, EddySchema, SCHEMA};
use crate::continuous::{ViewDef, ViewRegistry};
use crate::ddl;
use crate::error::{ErrorKind, QueryError, Result};
use crate::executor::QueryRuntime;
use crate::functions::{FirstLast, TimeBucket};
use crate::latest::LatestRowQuery;
use crate::metrics::QueryMetrics;
use crate::naming::ColumnNames;
use crate::running::RunningQueries;

/// Shared state of the SQL engine; one per server.
#[derive(Clone)]
pub struct QueryEngine {
    db: Db,
    ingest: Ingest,
    views: Arc<ViewRegistry>,
    /// Where statements are planned and run, apart from the connections' threads.
    runtime: QueryRuntime,
    /// Catalog, functions and front-end extensions set up once; each session starts from a
    /// copy, so a connection costs no catalog loading and OIDs stay the same across sessions.
    template: Arc<SessionState>,
    /// The statements running now, of every front end (`eddy_queries`).
    running: Arc<RunningQueries>,
    /// The stream sources (`CREATE SOURCE`, `eddy_sources`).
    sources: Arc<SourceManager>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

/// A statement as the engine takes it.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything DataFusion's parser reads.
    Sql(DfStatement),
    /// `REFRESH MATERIALIZED VIEW name`, which the parser does not know.
    RefreshView(String),
    /// `CREATE | DROP | ALTER SOURCE`, which the parser does not know either.
    Source(crate::sources::SourceCommand),
}

/// A parsed, planned statement, ready to run (possibly many times with parameters).
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A DataFusion plan (queries, INSERT, EXPLAIN, ...); may hold `$n` placeholders. The
    /// names are the SQL dialect's for the result columns DataFusion names differently.
    Plan(LogicalPlan, ColumnNames),
    /// `CREATE TABLE`.
    CreateTable {
        /// The definition.
        def: TableDef,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
    },
    /// `DROP TABLE`.
    DropTable {
        /// Tables to drop.
        names: Vec<String>,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `CREATE MATERIALIZED VIEW`.
    CreateView {
        /// The definition.
        def: ViewDef,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
    },
    /// `DROP MATERIALIZED VIEW`.
    DropView {
        /// Views to drop.
        names: Vec<String>,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `REFRESH MATERIALIZED VIEW`.
    RefreshView(String),
    /// `CREATE | DROP | ALTER SOURCE`.
    Source(crate::sources::SourceCommand),
    /// `CREATE INDEX name ON table USING fulltext (column)`.
    CreateIndex {
        /// The index name.
        name: String,
        /// The table.
        table: String,
        /// The text column.
        column: String,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
    },
    /// `DROP INDEX`.
    DropIndex {
        /// Indexes to drop.
        names: Vec<String>,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `ALTER TABLE ... SET (retention = ...)`.
    SetRetention {
        /// The table.
        table: String,
        /// The new retention; `None` keeps rows forever.
        retention_ns: Option<i64>,
    },
}

/// What a statement that returns no rows did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Rows inserted.
    Inserted(u64),
    /// A table was created.
    CreatedTable,
    /// Tables were dropped.
    DroppedTable,
    /// A continuous aggregate was created.
    CreatedView,
    /// Continuous aggregates were dropped.
    DroppedView,
    /// A continuous aggregate was recomputed.
    RefreshedView,
    /// A table's settings changed.
    AlteredTable,
    /// A stream source was created.
    CreatedSource,
    /// A stream source was dropped.
    DroppedSource,
    /// A stream source was paused or resumed.
    AlteredSource,
    /// A full-text index was created.
    CreatedIndex,
    /// Full-text indexes were dropped.
    DroppedIndex,
}

/// What running a statement produced.
pub enum Output {
    /// Rows.
    Rows {
        /// Their schema.
        schema: SchemaRef,
        /// The rows, as they are computed.
        stream: SendableRecordBatchStream,
    },
    /// What a statement without rows did.
    Done(Completion),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            Output::Done(c) => write!(f, "Done({c:?})"),
        }
    }
}

/// A query started for a caller that pulls its rows at its own pace (a cursor).
pub struct RowStream {
    /// The result's schema, with the dialect's column names.
    pub schema: SchemaRef,
    /// The rows.
    pub stream: SendableRecordBatchStream,
    /// The memory pool the query counts against, for a caller that keeps rows.
    pub memory_pool: Arc<dyn MemoryPool>,
}

impl QueryEngine {
    /// An engine over the write path (and its storage engine) and the continuous aggregates,
    /// which are opened first ([`ViewRegistry::open`], then [`Ingest::new`]).
    pub fn open(
        ingest: Ingest,
        views: Arc<ViewRegistry>,
        query_memory_bytes_max: usize,
    ) -> Result<Self> {
        let db = ingest.db().clone();
        let running = RunningQueries::new(QueryMetrics::new());
        let sources = SourceManager::new(ingest.clone());
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let _ = catalog.register_schema(
            SCHEMA,
            Arc::new(EddySchema::new(
                ingest.clone(),
                views.clone(),
                running.clone(),
                sources.clone(),
            )),
        );
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_create_default_catalog_and_schema(false);
        let options = config.options_mut();
        // Segment scans apply filters while decoding, so a point query materializes only the
        // rows it selects; a session may turn it off (`SET datafusion.execution.parquet.
        // pushdown_filters = false`) for a query whose filter keeps most rows.
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        // A min()/max() without GROUP BY would push `col > max so far` into that decoding: an
        // OR over every aggregated column, evaluated row by row, which can prune nothing in a
        // series-sorted segment (every page spans the whole value range) and made a ten-column
        // max() over half a day of TSBS data twice as slow (80 ms against 46).
        options.optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        // One pool for all sessions: the limit is on what the server's queries hold together.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(query_memory_bytes_max, 1.0)
            .build_arc()?;
        // Both run last, on the plan DataFusion's own rules produced: the first reads segments
        // through the decoded-column cache, the second swaps a partial aggregate for one
        // that reads the segments' (tags, time) order.
        let state = datafusion::execution::session_state::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::decoded_scan::DecodedScan::new(
                db.clone(),
            )))
            .with_physical_optimizer_rule(Arc::new(crate::run_aggregate::RunAggregation))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(DATABASE, catalog as Arc<dyn CatalogProvider>);
        ctx.register_udf(TimeBucket::udf());
        ctx.register_udf(crate::fulltext::Matches::udf());
        ctx.register_udaf(FirstLast::first());
        ctx.register_udaf(FirstLast::last());
        crate::functions::register_bounded_string_functions(&ctx);
        crate::overflow::register(&ctx);
        crate::formatting::register(&ctx);
        crate::postgres_semantics::register(&ctx);
        Ok(Self {
            db,
            ingest,
            views,
            runtime: QueryRuntime::new()?,
            template: Arc::new(ctx.state()),
            running,
            sources,
        })
    }

    /// Lets a front end add what its clients need to every session (a protocol's catalog
    /// tables and functions): `setup` gets a context over the template and hands it back.
    pub async fn extend<F, Fut>(&mut self, setup: F) -> Result<()>
    where
        F: FnOnce(SessionContext) -> Fut,
        Fut: std::future::Future<Output = Result<SessionContext>>,
    {
        let ctx = SessionContext::new_with_state((*self.template).clone());
        let ctx = setup(ctx).await?;
        self.template = Arc::new(ctx.state());
        Ok(())
    }

    /// The write path: every write (INSERT, COPY) goes through it.
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// The stream sources: started by the node once it is open, stopped at shutdown.
    pub fn sources(&self) -> &Arc<SourceManager> {
        &self.sources
    }

    /// The continuous aggregates.
    pub fn views(&self) -> &Arc<ViewRegistry> {
        &self.views
    }

    /// The statements running now: front ends register theirs here, `eddy_queries` lists
    /// them, and the statement metrics are counted here.
    pub fn running(&self) -> &Arc<RunningQueries> {
        &self.running
    }

    /// The threads statements are planned and run on. Front ends parse there too: a deep
    /// statement must never be walked on a thread that serves connections.
    pub fn runtime(&self) -> &QueryRuntime {
        &self.runtime
    }

    /// The storage engine.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A new session (one per client connection): its own settings, shared tables.
    pub fn session(&self) -> QuerySession {
        self.session_with(|_| {})
    }

    /// A new session whose state a front end adjusts first (its per-session functions and
    /// config extensions).
    pub fn session_with(&self, setup: impl FnOnce(&mut SessionState)) -> QuerySession {
        let mut state = (*self.template).clone();
        setup(&mut state);
        let ctx = SessionContext::new_with_state(state);
        let snapshot = Mutex::new(Snapshot::of(&ctx));
        QuerySession {
            engine: self.clone(),
            ctx,
            snapshot,
        }
    }
}

/// One client's session.
pub struct QuerySession {
    engine: QueryEngine,
    ctx: SessionContext,
    snapshot: Mutex<Snapshot>,
}

/// The session's planning state and the task context its queries run in. One snapshot serves
/// every statement (SessionContext::state() and TaskContext::from copy the function
/// registries each time); it is taken again only when `SET datafusion.*` changes the context.
struct Snapshot {
    state: Arc<SessionState>,
    task: Arc<TaskContext>,
}

impl Snapshot {
    fn of(ctx: &SessionContext) -> Self {
        let state = Arc::new(ctx.state());
        let task = Arc::new(TaskContext::from(state.as_ref()));
        Snapshot { state, task }
    }
}

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySession").finish_non_exhaustive()
    }
}

/// Splits SQL text into statements with the PostgreSQL dialect (Eddy's SQL dialect), for
/// front ends that need no client-specific rewriting.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    if let Some(name) = refresh_target(sql) {
        return Ok(vec![Statement::RefreshView(name)]);
    }
    if let Some(pieces) = crate::sources::split_source_statements(sql) {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                crate::sources::Piece::Source(cmd) => out.push(Statement::Source(cmd?)),
                crate::sources::Piece::Sql(text) => out.extend(parse(&text)?),
            }
        }
        return Ok(out);
    }
    let stmts = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?;
    stmts
        .into_iter()
        .map(|s| {
            crate::complexity::check_df_statement(&s)?;
            Ok(Statement::Sql(s))
        })
        .collect()
}

impl QuerySession {
    /// The engine this session belongs to.
    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// The DataFusion context of this session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans one parsed statement.
    pub async fn prepare(&self, stmt: Statement) -> Result<Prepared> {
        let stmt = match stmt {
            Statement::RefreshView(name) => return Ok(Prepared::RefreshView(name)),
            Statement::Source(cmd) => return Ok(Prepared::Source(cmd)),
            Statement::Sql(s) => s,
        };
        let sql_stmt = match stmt {
            DfStatement::CreateExternalTable(_) => {
                return Err(QueryError::new(
                    ErrorKind::PermissionDenied,
                    "CREATE EXTERNAL TABLE is disabled: SQL clients may not read the server's file system",
                ));
            }
            DfStatement::CopyTo(_) => {
                return Err(QueryError::new(
                    ErrorKind::PermissionDenied,
                    "COPY ... TO a file is disabled: SQL clients may not write the server's file system",
                ));
            }
            DfStatement::Statement(mut s) => {
                crate::naming::name_derived_columns(&mut s);
                s
            }
            other => return self.plan(other).await,
        };
        match *sql_stmt {
            SqlStatement::CreateTable(ct) => {
                if ct.external {
                    return Err(QueryError::new(
                        ErrorKind::PermissionDenied,
                        "CREATE EXTERNAL TABLE is disabled: SQL clients may not read the server's file system",
                    ));
                }
                Ok(Prepared::CreateTable {
                    if_not_exists: ct.if_not_exists,
                    def: ddl::table_def(&ct)?,
                })
            }
            SqlStatement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                ..
            } => Ok(Prepared::DropTable {
                names: names.iter().map(ddl::table_name).collect::<Result<_>>()?,
                if_exists,
            }),
            SqlStatement::CreateIndex(ci) => ddl::create_index(&ci),
            SqlStatement::Drop {
                object_type: ObjectType::Index,
                if_exists,
                names,
                ..
            } => Ok(Prepared::DropIndex {
                names: names.iter().map(ddl::table_name).collect::<Result<_>>()?,
                if_exists,
            }),
            SqlStatement::Copy { .. } => Err(QueryError::unsupported(
                "COPY is not supported yet; write with INSERT or line protocol over HTTP",
            )),
            SqlStatement::AlterTable(at) => {
                use datafusion::sql::sqlparser::ast::AlterTableOperation;
                let name = ddl::table_name(&at.name)?;
                match at.operations.as_slice() {
                    [AlterTableOperation::SetOptionsParens { options }] => {
                        let text = retention_option(options)?.ok_or_else(|| {
                            QueryError::unsupported(
                                "ALTER TABLE ... SET supports (retention = '...')",
                            )
                        })?;
                        let retention_ns = match text.to_lowercase().as_str() {
                            "none" | "forever" | "infinite" => None,
                            _ => Some(crate::continuous::parse_retention(&text)?),
                        };
                        Ok(Prepared::SetRetention {
                            table: name,
                            retention_ns,
                        })
                    }
                    _ => Err(QueryError::unsupported(
                        "ALTER TABLE supports only SET (retention = '30 days'); columns are added by writing them",
                    )),
                }
            }
            SqlStatement::CreateView(cv) if cv.materialized => {
                use datafusion::sql::sqlparser::ast::CreateTableOptions;
                let retention = match &cv.options {
                    CreateTableOptions::None => None,
                    CreateTableOptions::With(options) => {
                        let r = retention_option(options)?;
                        if let Some(r) = &r {
                            crate::continuous::parse_retention(r)?;
                        }
                        r
                    }
                    other => {
                        return Err(QueryError::unsupported(format!(
                            "view options {other} are not supported; use WITH (retention = '90 days')"
                        )));
                    }
                };
                if !cv.columns.is_empty() {
                    return Err(QueryError::unsupported(
                        "a column list on CREATE MATERIALIZED VIEW is not supported; name the columns with AS in the SELECT",
                    ));
                }
                Ok(Prepared::CreateView {
                    def: ViewDef {
                        name: ddl::table_name(&cv.name)?,
                        query: cv.query.to_string(),
                        id: 0,
                        retention,
                    },
                    if_not_exists: cv.if_not_exists,
                })
            }
            SqlStatement::CreateView(_) => Err(QueryError::unsupported(
                "CREATE VIEW is not supported yet; CREATE MATERIALIZED VIEW makes a continuous aggregate",
            )),
            SqlStatement::Drop {
                object_type: ObjectType::MaterializedView,
                if_exists,
                names,
                ..
            } => Ok(Prepared::DropView {
                names: names.iter().map(ddl::table_name).collect::<Result<_>>()?,
                if_exists,
            }),
            SqlStatement::Query(q) => {
                let (plan, names) = self.plan_query(q).await?;
                Ok(Prepared::Plan(plan, names))
            }
            SqlStatement::Set(set) => {
                check_setting(&set.to_string())?;
                self.plan(DfStatement::Statement(Box::new(SqlStatement::Set(set))))
                    .await
            }
            other => self.plan(DfStatement::Statement(Box::new(other))).await,
        }
    }

    /// The planning state and task context for a statement starting now: `now()` and
    /// `current_timestamp` are this moment, as PostgreSQL's are the statement's start (within a
    /// transaction, PostgreSQL keeps the transaction's start; Eddy has no such transactions).
    fn begin(&self) -> (Arc<SessionState>, Arc<TaskContext>) {
        let mut snapshot = self.snapshot.lock();
        // Copies the state only while an earlier statement still holds it.
        Arc::make_mut(&mut snapshot.state).mark_start_execution();
        (snapshot.state.clone(), snapshot.task.clone())
    }

    async fn plan(&self, stmt: DfStatement) -> Result<Prepared> {
        let plan = self.to_plan(stmt).await?;
        check_plan(&plan)?;
        Ok(Prepared::Plan(plan, ColumnNames::default()))
    }

    /// Plans a query, with the dialect's names for its result columns. PostgreSQL lets result
    /// columns share a name (`SELECT h, h::text`) and a plan may not, so repeated names get
    /// unique aliases in the plan and their own names back in the result.
    pub async fn plan_query(&self, mut q: Box<Query>) -> Result<(LogicalPlan, ColumnNames)> {
        crate::naming::name_derived_columns(&mut *q);
        let names = match crate::naming::alias_repeated(&mut q) {
            Some(names) => names,
            None => ColumnNames::of(&q),
        };
        let plan = self
            .to_plan(DfStatement::Statement(Box::new(SqlStatement::Query(q))))
            .await?;
        check_plan(&plan)?;
        Ok((plan, names))
    }

    /// Plans `stmt` on the query threads.
    async fn to_plan(&self, stmt: DfStatement) -> Result<LogicalPlan> {
        let (state, _) = self.begin();
        self.engine
            .runtime
            .run(async move {
                // Here, on the query threads: the rewrite walks the whole statement.
                let stmt = crate::postgres_semantics::rewrite_statement(stmt);
                Ok::<_, QueryError>(state.statement_to_plan(stmt).await?)
            })
            .await
    }

    /// Optimizes and starts `plan` on the query threads, whose batches come back as they are
    /// computed.
    async fn start(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        let (state, task) = self.begin();
        let pool = state.runtime_env().memory_pool.clone();
        let runtime = &self.engine.runtime;
        let stream = runtime
            .run(async move {
                let physical = state.create_physical_plan(&plan).await?;
                Ok::<_, QueryError>(execute_stream(physical, task)?)
            })
            .await?;
        Ok(runtime.offload(stream, &pool))
    }

    /// Starts a planned query for a caller that pulls its rows at its own pace.
    pub async fn stream(
        &self,
        plan: &LogicalPlan,
        names: &ColumnNames,
        params: Option<ParamValues>,
    ) -> Result<RowStream> {
        let plan = match params {
            Some(p) => plan.clone().with_param_values(p)?,
            None => plan.clone(),
        };
        let schema = names.apply(Arc::new(plan.schema().as_arrow().clone()));
        let memory_pool = self.begin().0.runtime_env().memory_pool.clone();
        let stream = renamed(schema.clone(), self.start(plan).await?);
        Ok(RowStream {
            schema,
            stream,
            memory_pool,
        })
    }

    /// Runs a prepared statement with parameter values for its placeholders.
    pub async fn execute(
        &self,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<Output> {
        match prepared {
            Prepared::Plan(plan, names) => {
                let plan = match params {
                    Some(p) => plan.clone().with_param_values(p)?,
                    None => plan.clone(),
                };
                let is_insert = matches!(
                    &plan,
                    LogicalPlan::Dml(DmlStatement {
                        op: WriteOp::Insert(_),
                        ..
                    })
                );
                if matches!(
                    &plan,
                    LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::Copy(_)
                ) {
                    // DataFusion's own DDL and statements run through the context; a
                    // `SET datafusion.*` changes it, so later statements take a new snapshot.
                    let df = self.ctx.execute_logical_plan(plan).await?;
                    *self.snapshot.lock() = Snapshot::of(&self.ctx);
                    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                    let stream = df.execute_stream().await?;
                    return Ok(Output::Rows { schema, stream });
                }
                if let Some(latest) = LatestRowQuery::recognize(&plan) {
                    let schema = names.apply(latest.schema().clone());
                    if let Some(row) = latest.run().await? {
                        let row = RecordBatch::try_new(schema.clone(), row.columns().to_vec())
                            .map_err(QueryError::from)?;
                        let stream = Box::pin(RecordBatchStreamAdapter::new(
                            schema.clone(),
                            futures::stream::iter([Ok(row)]),
                        ));
                        return Ok(Output::Rows { schema, stream });
                    }
                }
                if is_insert {
                    let (state, task) = self.begin();
                    let n = self
                        .engine
                        .runtime
                        .run(async move {
                            let physical = state.create_physical_plan(&plan).await?;
                            Ok::<_, QueryError>(inserted_rows(&collect(physical, task).await?))
                        })
                        .await?;
                    return Ok(Output::Done(Completion::Inserted(n)));
                }
                let schema = names.apply(Arc::new(plan.schema().as_arrow().clone()));
                let stream = renamed(schema.clone(), self.start(plan).await?);
                Ok(Output::Rows { schema, stream })
            }
            Prepared::CreateTable { def, if_not_exists } => {
                if self.engine.views.get(&def.name).is_some() {
                    return Err(QueryError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "relation \"{}\" already exists (a materialized view)",
                            def.name
                        ),
                    ));
                }
                self.engine
                    .db
                    .catalog()
                    .create_table(def.clone(), *if_not_exists)?;
                Ok(Output::Done(Completion::CreatedTable))
            }
            Prepared::CreateView { def, if_not_exists } => {
                self.engine
                    .views
                    .create(def.clone(), *if_not_exists)
                    .await?;
                Ok(Output::Done(Completion::CreatedView))
            }
            Prepared::DropView { names, if_exists } => {
                for n in names {
                    self.engine.views.drop_view(n, *if_exists).await?;
                }
                Ok(Output::Done(Completion::DroppedView))
            }
            Prepared::SetRetention {
                table,
                retention_ns,
            } => {
                self.engine
                    .db
                    .catalog()
                    .set_retention(table, *retention_ns)?;
                Ok(Output::Done(Completion::AlteredTable))
            }
            Prepared::CreateIndex {
                name,
                table,
                column,
                if_not_exists,
            } => {
                self.engine
                    .db
                    .create_text_index(name, table, column, *if_not_exists)?;
                Ok(Output::Done(Completion::CreatedIndex))
            }
            Prepared::DropIndex { names, if_exists } => {
                for n in names {
                    match self.engine.db.drop_text_index(n) {
                        Ok(_) => {}
                        Err(eddy_storage::StorageError::IndexNotFound(_)) if *if_exists => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Output::Done(Completion::DroppedIndex))
            }
            Prepared::RefreshView(name) => {
                self.engine.views.refresh(name).await?;
                Ok(Output::Done(Completion::RefreshedView))
            }
            Prepared::Source(cmd) => {
                use crate::sources::SourceCommand;
                let sources = &self.engine.sources;
                Ok(Output::Done(match cmd {
                    SourceCommand::Create {
                        name,
                        kind,
                        options,
                        if_not_exists,
                    } => {
                        sources.create(name, kind, options.clone(), *if_not_exists)?;
                        Completion::CreatedSource
                    }
                    SourceCommand::Drop { name, if_exists } => {
                        sources.drop_source(name, *if_exists).await?;
                        Completion::DroppedSource
                    }
                    SourceCommand::SetPaused { name, paused } => {
                        sources.set_paused(name, *paused)?;
                        Completion::AlteredSource
                    }
                }))
            }
            Prepared::DropTable { names, if_exists } => {
                for n in names {
                    let deps = self.engine.views.dependents(n);
                    if !deps.is_empty() {
                        return Err(QueryError::new(
                            ErrorKind::HasDependents,
                            format!(
                                "cannot drop table \"{n}\": materialized view(s) {} depend on it; drop them first",
                                deps.join(", ")
                            ),
                        ));
                    }
                    match self.engine.db.drop_table(n) {
                        Ok(()) => {}
                        Err(eddy_storage::StorageError::TableNotFound(_)) if *if_exists => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Output::Done(Completion::DroppedTable))
            }
        }
    }

    /// Parses, plans and runs every statement of `sql` in order.
    pub async fn sql(&self, sql: &str) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        for stmt in parse(sql)? {
            let p = self.prepare(stmt).await?;
            out.push(self.execute(&p, None).await?);
        }
        Ok(out)
    }

    /// Runs `sql` and collects all rows of its last statement (for tests and tools).
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut last = Vec::new();
        for o in self.sql(sql).await? {
            last = match o {
                Output::Rows { mut stream, .. } => {
                    let mut v = Vec::new();
                    while let Some(b) = stream.next().await {
                        v.push(b?);
                    }
                    v
                }
                Output::Done(_) => Vec::new(),
            };
        }
        Ok(last)
    }
}

/// `stream` with its batches relabelled with `schema`'s column names (PostgreSQL's; see
/// [`ColumnNames`]); the same stream when the names already agree. Only names change: the
/// batches keep their own types, which may be wider than the plan's (a decimal's precision).
fn renamed(schema: SchemaRef, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let own = stream.schema();
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    if names(&own) == names(&schema) || own.fields().len() != schema.fields().len() {
        return stream;
    }
    let wanted = names(&schema);
    let relabel = move |b: RecordBatch| -> datafusion::error::Result<RecordBatch> {
        let own = b.schema();
        let fields: Vec<Field> = own
            .fields()
            .iter()
            .zip(&wanted)
            .map(|(f, name)| f.as_ref().clone().with_name(name))
            .collect();
        let schema = Schema::new_with_metadata(fields, own.metadata().clone());
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            b.columns().to_vec(),
        )?)
    };
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.map(move |b| b.and_then(&relabel)),
    ))
}

/// Refuses a `SET` of an engine setting that is the operator's: the memory, disk, spill and
/// file-system settings (`SET datafusion.runtime.memory_limit = '8G'` would lift the server's
/// query memory limit, `datafusion.runtime.temp_directory` would create directories anywhere).
/// Settings of planning and formatting stay the session's.
fn check_setting(set: &str) -> Result<()> {
    let text = set.trim().to_lowercase();
    let Some(rest) = text.strip_prefix("set ") else {
        return Ok(());
    };
    let rest = rest
        .trim_start_matches("session ")
        .trim_start_matches("local ");
    let name: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '=')
        .collect();
    let name = name.trim_matches('"');
    let Some(option) = name.strip_prefix("datafusion.") else {
        return Ok(());
    };
    const OPERATORS: [&str; 8] = [
        "runtime.",
        "catalog.",
        "spill",
        "memory",
        "temp",
        "directory",
        "_bytes",
        "file",
    ];
    if OPERATORS
        .iter()
        .any(|p| option.starts_with(p) || option.contains(p))
    {
        return Err(QueryError::new(
            ErrorKind::PermissionDenied,
            format!(
                "permission denied to set parameter \"{name}\": memory, disk and file-system settings are the server's (see query_memory_bytes_max)"
            ),
        ));
    }
    Ok(())
}

/// Refuses plans that DataFusion would run against memory or the file system instead of Eddy.
fn check_plan(plan: &LogicalPlan) -> Result<()> {
    match plan {
        LogicalPlan::Ddl(ddl) => Err(QueryError::unsupported(format!(
            "{} is not supported",
            ddl.name()
        ))),
        LogicalPlan::Copy(_) => Err(QueryError::new(
            ErrorKind::PermissionDenied,
            "COPY ... TO a file is disabled: SQL clients may not write the server's file system",
        )),
        LogicalPlan::Dml(d) if !matches!(d.op, WriteOp::Insert(_)) => Err(QueryError::unsupported(
            format!("{} is not supported on table \"{}\"", d.op, d.table_name),
        )),
        _ => Ok(()),
    }
}

fn inserted_rows(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.columns().first())
        .filter_map(|c| c.as_any().downcast_ref::<UInt64Array>())
        .flat_map(|a| a.iter().flatten())
        .sum()
}

/// The `retention` of a `WITH (...)`/`SET (...)` option list, as written; other options are
/// errors naming them.
fn retention_option(
    options: &[datafusion::sql::sqlparser::ast::SqlOption],
) -> Result<Option<String>> {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, SqlOption, Value};
    let mut retention = None;
    for o in options {
        match o {
            SqlOption::KeyValue { key, value } if key.value.eq_ignore_ascii_case("retention") => {
                let SqlExpr::Value(v) = value else {
                    return Err(QueryError::new(
                        ErrorKind::InvalidParameter,
                        format!(
                            "retention must be a quoted interval such as '90 days', got {value}"
                        ),
                    ));
                };
                match &v.value {
                    Value::SingleQuotedString(s) => retention = Some(s.clone()),
                    other => {
                        return Err(QueryError::new(
                            ErrorKind::InvalidParameter,
                            format!(
                                "retention must be a quoted interval such as '90 days', got {other}"
                            ),
                        ));
                    }
                }
            }
            other => {
                return Err(QueryError::unsupported(format!(
                    "option {other} is not supported; the only option is retention"
                )));
            }
        }
    }
    Ok(retention)
}

/// `REFRESH MATERIALIZED VIEW name` (the only statement of `sql`), as the view name.
pub fn refresh_target(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    match words.as_slice() {
        [r, m, v, name]
            if r.eq_ignore_ascii_case("refresh")
                && m.eq_ignore_ascii_case("materialized")
                && v.eq_ignore_ascii_case("view") =>
        {
            Some(if name.starts_with('"') {
                name.trim_matches('"').to_string()
            } else {
                name.to_lowercase()
            })
        }
        _ => None,
    }
}
