//! The SQL engine: a DataFusion session per connection over the Eddy catalog, with the
//! statements DataFusion would run in memory (DDL) routed to storage, and statements that
//! would reach the server's file system refused.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::common::ParamValues;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{collect, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{DeclareType, ObjectType, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use eddy_storage::{Db, TableDef};
use futures::StreamExt;
use parking_lot::Mutex;

use crate::catalog::{DATABASE, EddySchema, SCHEMA};
use crate::continuous::{ViewDef, ViewRegistry};
use crate::ddl;
use crate::error::{QueryError, Result};
use crate::functions::{FirstLast, TimeBucket};
use crate::latest::LatestRowQuery;
use crate::pg_compat::ColumnNames;

/// The PostgreSQL version Eddy reports to clients.
pub const PG_SERVER_VERSION: &str = "16.6";
/// [`PG_SERVER_VERSION`] as `server_version_num`.
pub const PG_SERVER_VERSION_NUM: &str = "160006";

/// Shared state of the SQL engine; one per server.
#[derive(Clone)]
pub struct QueryEngine {
    db: Db,
    views: Arc<ViewRegistry>,
    /// Catalog, functions and pg_catalog set up once; each session starts from a copy, so
    /// a connection costs no catalog loading and OIDs stay the same across sessions.
    template: Arc<SessionState>,
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
    /// `FETCH` or `MOVE`, which the parser knows only in part.
    Cursor(crate::cursor::command::CursorCommand),
}

/// A parsed, planned statement, ready to run (possibly many times with parameters).
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A DataFusion plan (queries, INSERT, EXPLAIN, ...); may hold `$n` placeholders. The
    /// names are PostgreSQL's for the result columns DataFusion names differently.
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
    /// `ALTER TABLE ... SET (retention = ...)`.
    SetRetention {
        /// The table.
        table: String,
        /// The new retention; `None` keeps rows forever.
        retention_ns: Option<i64>,
    },
    /// A session statement accepted without effect on data (BEGIN, COMMIT, SET ...).
    Accept(&'static str),
    /// `SHOW name` of a PostgreSQL setting.
    Show {
        /// Setting name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `DECLARE name [SCROLL] CURSOR [WITH HOLD] FOR query`.
    DeclareCursor {
        /// Name, options and text.
        declaration: crate::cursor::Declaration,
        /// The query; may hold `$n` placeholders.
        plan: LogicalPlan,
        /// PostgreSQL's names for its result columns.
        names: ColumnNames,
    },
    /// `FETCH` or `MOVE`.
    Fetch(crate::cursor::command::CursorCommand),
    /// `CLOSE name`, or `CLOSE ALL` (`None`).
    CloseCursor(Option<String>),
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
    /// A command completion tag such as `INSERT 0 3` or `CREATE TABLE`.
    Command(String),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            Output::Command(t) => write!(f, "Command({t})"),
        }
    }
}

impl QueryEngine {
    /// An engine over a storage engine; restores continuous aggregates from their source data.
    pub async fn open(db: Db, query_memory_bytes_max: usize) -> Result<Self> {
        let views = ViewRegistry::open(db.clone()).await?;
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let _ =
            catalog.register_schema(SCHEMA, Arc::new(EddySchema::new(db.clone(), views.clone())));
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_create_default_catalog_and_schema(false);
        // One pool for all sessions: the limit is on what the server's queries hold together.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(query_memory_bytes_max, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_catalog(DATABASE, catalog.clone() as Arc<dyn CatalogProvider>);
        // Eddy's information_schema replaces DataFusion's built-in one (which the session
        // would serve ahead of any registered schema), to report PostgreSQL type names.
        let _ = catalog.register_schema(
            "information_schema",
            Arc::new(crate::information_schema::PgInformationSchema::new(
                ctx.state().catalog_list().clone(),
                db.clone(),
            )),
        );
        ctx.register_udf(TimeBucket::udf());
        ctx.register_udaf(FirstLast::first());
        ctx.register_udaf(FirstLast::last());
        // pg_catalog and the functions clients call on connect (format_type,
        // pg_table_is_visible, has_*_privilege, quote_ident, ...), shared by every session.
        datafusion_pg_catalog::setup_pg_catalog(
            &ctx,
            DATABASE,
            datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .map_err(|e| QueryError::from(*e))?;
        ctx.register_udf(crate::functions::version_udf());
        ctx.register_udf(crate::functions::pg_get_serial_sequence_udf());
        // pg_compat: pg_class / pg_attribute / pg_namespace / pg_index / pg_constraint from
        // Eddy's catalog (stable OIDs, primary keys) and the functions clients' introspection
        // queries call (json_build_object, _pg_expandarray, pg_get_indexdef, ...).
        crate::pg_compat::install(&ctx, db.clone(), views.clone()).await?;
        Ok(Self {
            db,
            views,
            template: Arc::new(ctx.state()),
        })
    }

    /// The continuous aggregates.
    pub fn views(&self) -> &Arc<ViewRegistry> {
        &self.views
    }

    /// The storage engine.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A new session (one per client connection): its own settings, shared tables.
    pub fn session(&self) -> QuerySession {
        // pg_cursors lists the session's own cursors: it finds them in the session's config.
        let cursors: Arc<crate::cursor::Cursors> = Arc::default();
        let mut state = (*self.template).clone();
        state.config_mut().set_extension(cursors.clone());
        let ctx = SessionContext::new_with_state(state);
        let vars = Arc::new(Mutex::new(HashMap::new()));
        ctx.register_udf(crate::functions::current_setting_udf(vars.clone()));
        ctx.register_udf(crate::functions::session_user_udf(vars.clone()));
        let snapshot = Mutex::new(Snapshot::of(&ctx));
        QuerySession {
            engine: self.clone(),
            ctx,
            snapshot,
            vars,
            cursors,
        }
    }
}

/// One client's session.
pub struct QuerySession {
    engine: QueryEngine,
    ctx: SessionContext,
    snapshot: Mutex<Snapshot>,
    vars: SessionVars,
    cursors: Arc<crate::cursor::Cursors>,
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

/// Settings a session changed with `SET`, by lower-case name.
pub type SessionVars = Arc<Mutex<HashMap<String, String>>>;

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySession").finish_non_exhaustive()
    }
}

/// The `Prepared::Accept` of `ROLLBACK TO SAVEPOINT`, told apart from the `ROLLBACK` that ends
/// the transaction.
pub const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT";

/// Splits SQL text into statements with the PostgreSQL dialect.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    use crate::cursor::command::{self, Piece};
    let Some(pieces) = command::split(sql) else {
        return parse_statements(sql);
    };
    let mut out = Vec::new();
    for piece in pieces? {
        match piece {
            Piece::Command(c) => out.push(Statement::Cursor(c)),
            Piece::Sql(text) => out.extend(parse_statements(text)?),
        }
    }
    Ok(out)
}

/// Splits SQL text without `FETCH` or `MOVE` into statements.
fn parse_statements(sql: &str) -> Result<Vec<Statement>> {
    if let Some(name) = refresh_target(sql) {
        return Ok(vec![Statement::RefreshView(name)]);
    }
    // PostgreSQL clients' catalog queries need rewriting (`OPERATOR(pg_catalog.~)`,
    // `'t'::regclass`, `pg_catalog.` qualifiers) before DataFusion can plan them; pg_compat
    // adds Eddy's rules after pg-catalog's (set-returning calls, correlated subqueries, ...).
    let parsed = if expands_search_path(sql) {
        // pg-catalog's token blacklist replaces Grafana's search_path expansion with `''`
        // (so its table and column listings came back empty); pg_compat plans it instead.
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .map(|stmts| stmts.into_iter().map(|s| PG_PARSER.rewrite(s)).collect())
    } else {
        PG_PARSER.parse(sql)
    };
    match parsed {
        Ok(stmts) => Ok(stmts
            .into_iter()
            .map(|s| {
                Statement::Sql(DfStatement::Statement(Box::new(crate::pg_compat::rewrite(
                    s,
                ))))
            })
            .collect()),
        // DataFusion's own statements (and its error messages with positions).
        Err(_) => {
            let stmts = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
                .map_err(QueryError::from)?;
            Ok(stmts.into_iter().map(Statement::Sql).collect())
        }
    }
}

/// Whether `sql` holds Grafana's `search_path` expansion (`string_to_array(current_setting(
/// 'search_path'), ',')`), whatever its spacing.
fn expands_search_path(sql: &str) -> bool {
    let compact: String = sql
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    compact.contains("string_to_array(current_setting('search_path'),',')")
}

static PG_PARSER: std::sync::LazyLock<datafusion_pg_catalog::sql::PostgresCompatibilityParser> =
    std::sync::LazyLock::new(datafusion_pg_catalog::sql::PostgresCompatibilityParser::new);

/// `REFRESH MATERIALIZED VIEW name` (the only statement of `sql`), as the view name.
fn refresh_target(sql: &str) -> Option<String> {
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
            Statement::Cursor(c) => return Ok(Prepared::Fetch(c)),
            Statement::Sql(s) => s,
        };
        let sql_stmt = match stmt {
            DfStatement::CreateExternalTable(_) => {
                return Err(QueryError::new(
                    "42501",
                    "CREATE EXTERNAL TABLE is disabled: SQL clients may not read the server's file system",
                ));
            }
            DfStatement::CopyTo(_) => {
                return Err(QueryError::new(
                    "42501",
                    "COPY ... TO a file is disabled: SQL clients may not write the server's file system",
                ));
            }
            DfStatement::Statement(s) => s,
            other => return self.plan(other).await,
        };
        match *sql_stmt {
            SqlStatement::CreateTable(ct) => {
                if ct.external {
                    return Err(QueryError::new(
                        "42501",
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
            SqlStatement::StartTransaction { .. } => Ok(Prepared::Accept("BEGIN")),
            SqlStatement::Commit { .. } => Ok(Prepared::Accept("COMMIT")),
            // Rolling back to a savepoint leaves the transaction (and its cursors) open.
            SqlStatement::Rollback {
                savepoint: Some(_), ..
            } => Ok(Prepared::Accept(ROLLBACK_TO_SAVEPOINT)),
            SqlStatement::Rollback { .. } => Ok(Prepared::Accept("ROLLBACK")),
            SqlStatement::Savepoint { .. } => Ok(Prepared::Accept("SAVEPOINT")),
            SqlStatement::ReleaseSavepoint { .. } => Ok(Prepared::Accept("RELEASE")),
            SqlStatement::Declare { mut stmts } if stmts.len() == 1 => {
                let d = stmts.remove(0);
                match (&d.declare_type, &d.for_query, d.names.as_slice()) {
                    (Some(DeclareType::Cursor), Some(q), [name]) => {
                        if d.binary == Some(true) {
                            return Err(QueryError::unsupported(
                                "BINARY cursors are not supported; fetch in binary through the extended protocol (a driver's binary result format) instead",
                            ));
                        }
                        let Prepared::Plan(plan, names) = self.plan_query(q.clone()).await? else {
                            return Err(QueryError::new("42601", "DECLARE CURSOR needs a query"));
                        };
                        Ok(Prepared::DeclareCursor {
                            declaration: crate::cursor::Declaration {
                                name: ddl::ident_name(name),
                                statement: format!("DECLARE {d}"),
                                hold: d.hold == Some(true),
                                scroll: d.scroll == Some(true),
                            },
                            plan,
                            names,
                        })
                    }
                    _ => Err(QueryError::unsupported(format!(
                        "{d} is not supported; the DECLARE Eddy runs is DECLARE name [SCROLL | NO SCROLL] CURSOR [WITH HOLD | WITHOUT HOLD] FOR query"
                    ))),
                }
            }
            SqlStatement::Close { cursor } => {
                use datafusion::sql::sqlparser::ast::CloseCursor;
                Ok(Prepared::CloseCursor(match cursor {
                    CloseCursor::All => None,
                    CloseCursor::Specific { name } => Some(ddl::ident_name(&name)),
                }))
            }
            SqlStatement::Discard { .. } => {
                self.vars.lock().clear();
                self.cursors.close(None)?;
                Ok(Prepared::Accept("DISCARD ALL"))
            }
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
            SqlStatement::Set(set) => {
                let text = set.to_string();
                if text.to_lowercase().starts_with("set datafusion.") {
                    return self
                        .plan(DfStatement::Statement(Box::new(SqlStatement::Set(set))))
                        .await;
                }
                if let Some((name, mut value)) = parse_set(&text) {
                    if is_timeout(&name) {
                        // Stored as PostgreSQL shows it: `SET statement_timeout = 5000` is `5s`.
                        value = show_millis(timeout_millis(&name, &value)?);
                    }
                    self.vars.lock().insert(name, value);
                }
                Ok(Prepared::Accept("SET"))
            }
            SqlStatement::Reset(r) => {
                use datafusion::sql::sqlparser::ast::Reset;
                match r.reset {
                    Reset::ALL => self.vars.lock().clear(),
                    Reset::ConfigurationParameter(name) => {
                        let name = name.to_string().to_lowercase();
                        self.vars.lock().remove(&name);
                    }
                }
                Ok(Prepared::Accept("RESET"))
            }
            SqlStatement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(ddl::ident_name)
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(value) = self.setting(&name) {
                    return Ok(Prepared::Show { name, value });
                }
                self.plan(DfStatement::Statement(Box::new(
                    SqlStatement::ShowVariable { variable },
                )))
                .await
            }
            SqlStatement::Query(q) => self.plan_query(q).await,
            other => self.plan(DfStatement::Statement(Box::new(other))).await,
        }
    }

    /// The value of a PostgreSQL setting clients ask for, if Eddy knows it.
    pub fn setting(&self, name: &str) -> Option<String> {
        setting(&self.vars, name)
    }

    /// The result columns of the session's open cursor `name` (for a `Describe` of it as a
    /// portal, which psycopg sends after `DECLARE`).
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.schema(name)
    }

    /// Records who logged in (the start-up message's user, after authentication), for
    /// `session_user`, `current_user` and `SHOW session_authorization`; the first call wins.
    pub fn set_user(&self, user: &str) {
        let mut vars = self.vars.lock();
        if !vars.contains_key(SESSION_AUTHORIZATION) {
            vars.insert(SESSION_AUTHORIZATION.to_string(), user.to_string());
        }
    }

    /// How long a statement may run (`SET statement_timeout`), if limited.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let value = self.vars.lock().get("statement_timeout").cloned()?;
        let ms = timeout_millis("statement_timeout", &value).ok()?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
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
        let (state, _) = self.begin();
        let plan = state.statement_to_plan(stmt).await?;
        check_plan(&plan)?;
        Ok(Prepared::Plan(plan, ColumnNames::default()))
    }

    /// Plans a query, with PostgreSQL's names for its result columns. PostgreSQL lets result
    /// columns share a name (`SELECT h, h::text`) and a plan may not, so repeated names get
    /// unique aliases in the plan and their own names back in the result.
    async fn plan_query(
        &self,
        mut q: Box<datafusion::sql::sqlparser::ast::Query>,
    ) -> Result<Prepared> {
        let names = match crate::pg_compat::alias_repeated(&mut q) {
            Some(names) => names,
            None => ColumnNames::of(&q),
        };
        match self
            .plan(DfStatement::Statement(Box::new(SqlStatement::Query(q))))
            .await?
        {
            Prepared::Plan(plan, _) => Ok(Prepared::Plan(plan, names)),
            other => Ok(other),
        }
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
                let (state, task) = self.begin();
                let physical = state.create_physical_plan(&plan).await?;
                if is_insert {
                    let batches = collect(physical, task).await?;
                    let n = inserted_rows(&batches);
                    return Ok(Output::Command(format!("INSERT 0 {n}")));
                }
                let schema = names.apply(Arc::new(plan.schema().as_arrow().clone()));
                let stream = renamed(schema.clone(), execute_stream(physical, task)?);
                Ok(Output::Rows { schema, stream })
            }
            Prepared::CreateTable { def, if_not_exists } => {
                if self.engine.views.get(&def.name).is_some() {
                    return Err(QueryError::new(
                        "42P07",
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
                Ok(Output::Command("CREATE TABLE".into()))
            }
            Prepared::CreateView { def, if_not_exists } => {
                self.engine
                    .views
                    .create(def.clone(), *if_not_exists)
                    .await?;
                Ok(Output::Command("CREATE MATERIALIZED VIEW".into()))
            }
            Prepared::DropView { names, if_exists } => {
                for n in names {
                    self.engine.views.drop_view(n, *if_exists).await?;
                }
                Ok(Output::Command("DROP MATERIALIZED VIEW".into()))
            }
            Prepared::SetRetention {
                table,
                retention_ns,
            } => {
                self.engine
                    .db
                    .catalog()
                    .set_retention(table, *retention_ns)?;
                Ok(Output::Command("ALTER TABLE".into()))
            }
            Prepared::RefreshView(name) => {
                self.engine.views.refresh(name).await?;
                Ok(Output::Command("REFRESH MATERIALIZED VIEW".into()))
            }
            Prepared::DropTable { names, if_exists } => {
                for n in names {
                    let deps = self.engine.views.dependents(n);
                    if !deps.is_empty() {
                        return Err(QueryError::new(
                            "2BP01",
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
                Ok(Output::Command("DROP TABLE".into()))
            }
            Prepared::Accept(tag) => {
                if matches!(*tag, "COMMIT" | "ROLLBACK") {
                    self.cursors.end_transaction();
                }
                // PostgreSQL's tag for ROLLBACK TO SAVEPOINT is ROLLBACK.
                let tag = if *tag == ROLLBACK_TO_SAVEPOINT {
                    "ROLLBACK"
                } else {
                    tag
                };
                Ok(Output::Command(tag.to_string()))
            }
            Prepared::DeclareCursor {
                declaration,
                plan,
                names,
            } => {
                let plan = match params {
                    Some(p) => plan.clone().with_param_values(p)?,
                    None => plan.clone(),
                };
                let (state, task) = self.begin();
                let physical = state.create_physical_plan(&plan).await?;
                let schema = names.apply(Arc::new(plan.schema().as_arrow().clone()));
                let stream = renamed(schema.clone(), execute_stream(physical, task)?);
                self.cursors.declare(
                    declaration.clone(),
                    schema,
                    stream,
                    &state.runtime_env().memory_pool,
                )?;
                Ok(Output::Command("DECLARE CURSOR".into()))
            }
            Prepared::Fetch(command) => {
                let (schema, rows, count) = self.cursors.fetch(command).await?;
                if command.move_only {
                    return Ok(Output::Command(format!("MOVE {count}")));
                }
                let stream = Box::pin(RecordBatchStreamAdapter::new(
                    schema.clone(),
                    futures::stream::iter(rows.into_iter().map(Ok)),
                ));
                Ok(Output::Rows { schema, stream })
            }
            Prepared::CloseCursor(name) => {
                self.cursors.close(name.as_deref())?;
                Ok(Output::Command("CLOSE CURSOR".into()))
            }
            Prepared::Show { name, value } => {
                let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
                        value.as_str(),
                    ]))],
                )
                .map_err(|e| QueryError::new("XX000", e.to_string()))?;
                let stream = Box::pin(RecordBatchStreamAdapter::new(
                    schema.clone(),
                    futures::stream::iter(vec![Ok(batch)]),
                ));
                Ok(Output::Rows { schema, stream })
            }
        }
    }

    /// Parses, plans and runs every statement of `sql` in order (the simple query protocol).
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
                Output::Command(_) => Vec::new(),
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

/// Refuses plans that DataFusion would run against memory or the file system instead of Eddy.
fn check_plan(plan: &LogicalPlan) -> Result<()> {
    match plan {
        LogicalPlan::Ddl(ddl) => Err(QueryError::unsupported(format!(
            "{} is not supported",
            ddl.name()
        ))),
        LogicalPlan::Copy(_) => Err(QueryError::new(
            "42501",
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

/// The session variable holding the logged-in user, as PostgreSQL names it.
pub const SESSION_AUTHORIZATION: &str = "session_authorization";

/// The value of a PostgreSQL setting as a session sees it: what it `SET`, else Eddy's default.
pub fn setting(vars: &SessionVars, name: &str) -> Option<String> {
    let name = name.to_lowercase();
    if let Some(v) = vars.lock().get(&name) {
        return Some(v.clone());
    }
    Some(
        match name.as_str() {
            "server_version" => PG_SERVER_VERSION,
            "server_version_num" => PG_SERVER_VERSION_NUM,
            "timezone" | "time zone" => "UTC",
            "client_encoding" | "server_encoding" => "UTF8",
            "datestyle" => "ISO, MDY",
            "intervalstyle" => "postgres",
            "integer_datetimes" => "on",
            "standard_conforming_strings" => "on",
            "search_path" => "\"$user\", public",
            "transaction isolation level" | "transaction_isolation" => "read committed",
            "default_transaction_isolation" => "read committed",
            "default_transaction_read_only" | "transaction_read_only" => "off",
            "is_superuser" => "on",
            SESSION_AUTHORIZATION => "eddy",
            "max_identifier_length" => "63",
            "max_index_keys" => "32",
            "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric"
            | "lc_time" => "C",
            "application_name" => "",
            // SQLAlchemy's get_table_options compares pg_am.amname with it.
            "default_table_access_method" => "heap",
            "extra_float_digits" => "1",
            "bytea_output" => "hex",
            "block_size" => "8192",
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
            _ => return None,
        }
        .to_string(),
    )
}

/// Whether setting `name` is a timeout in milliseconds.
fn is_timeout(name: &str) -> bool {
    matches!(
        name,
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout"
    )
}

/// A timeout setting's value as PostgreSQL reads it, in whole milliseconds (rounded):
/// milliseconds, or a number with a unit (`us`, `ms`, `s`, `min`, `h`, `d`); 0 means no limit.
fn timeout_millis(name: &str, value: &str) -> Result<u64> {
    let invalid = || {
        QueryError::new(
            "22023",
            format!(
                "invalid value for parameter \"{name}\": \"{value}\" (expected milliseconds, or a number with a unit: us, ms, s, min, h, d)"
            ),
        )
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let ms_per_unit = match unit.trim().to_lowercase().as_str() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(invalid()),
    };
    let ms = (number * ms_per_unit).round();
    if !ms.is_finite() || ms > i32::MAX as f64 {
        return Err(invalid());
    }
    Ok(ms as u64)
}

/// A millisecond setting as PostgreSQL shows it: in the largest unit that divides it exactly.
fn show_millis(ms: u64) -> String {
    if ms == 0 {
        return "0".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `SET name = value` / `SET name TO value` as (lower-case name, value without quotes).
fn parse_set(text: &str) -> Option<(String, String)> {
    let rest = text
        .trim()
        .strip_prefix("SET ")
        .or_else(|| text.trim().strip_prefix("set "))?;
    let rest = rest
        .trim_start()
        .strip_prefix("SESSION ")
        .or_else(|| rest.trim_start().strip_prefix("LOCAL "))
        .unwrap_or(rest);
    let (name, value) = if let Some((n, v)) = rest.split_once('=') {
        (n, v)
    } else if let Some((n, v)) = rest.split_once(" TO ") {
        (n, v)
    } else {
        return None;
    };
    let value = value
        .trim()
        .trim_matches('\'')
        .trim_matches('"')
        .to_string();
    let name = name.trim().to_lowercase();
    if name.is_empty() || value.is_empty() && name.contains(' ') {
        return None;
    }
    Some((name, value))
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
                        "22023",
                        format!(
                            "retention must be a quoted interval such as '90 days', got {value}"
                        ),
                    ));
                };
                match &v.value {
                    Value::SingleQuotedString(s) => retention = Some(s.clone()),
                    other => {
                        return Err(QueryError::new(
                            "22023",
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

#[cfg(test)]
mod tests {
    use super::{Statement, parse, parse_set, show_millis, timeout_millis};

    #[test]
    fn timeouts_read_and_show_as_postgresql_does() {
        for (value, ms, shown) in [
            ("250", 250, "250ms"),
            ("5000", 5_000, "5s"),
            ("1.5s", 1_500, "1500ms"),
            ("3min", 180_000, "3min"),
            ("0.4", 0, "0"),
            ("2500us", 3, "3ms"),
            ("1d", 86_400_000, "1d"),
        ] {
            let got = timeout_millis("statement_timeout", value).expect(value);
            assert_eq!((got, show_millis(got).as_str()), (ms, shown), "{value}");
        }
        for bad in ["-1", "soon", "5 weeks", "1e10"] {
            let e = timeout_millis("lock_timeout", bad).expect_err(bad);
            assert!(e.message.contains("lock_timeout"), "{e}");
        }
    }

    #[test]
    fn grafana_builder_listing_is_rewritten() {
        let sql = "SELECT quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = '\"$user\"' \
                   THEN user ELSE trim(s[i]) END FROM generate_series(\
                   array_lower(string_to_array(current_setting('search_path'),','),1), \
                   array_upper(string_to_array(current_setting('search_path'),','),1)) as i, \
                   string_to_array(current_setting('search_path'),',') s) \
                   FROM information_schema.tables";
        let stmts = parse(sql).expect("parses");
        let [Statement::Sql(stmt)] = stmts.as_slice() else {
            panic!("one SQL statement");
        };
        let text = stmt.to_string();
        assert!(
            text.contains(
                "(SELECT string_to_array(current_setting('search_path'), ',') AS s) AS s"
            ) && text.contains("THEN session_user() ELSE"),
            "{text}"
        );
    }

    #[test]
    fn set_statements_parse() {
        assert_eq!(
            parse_set("SET extra_float_digits = 3"),
            Some(("extra_float_digits".into(), "3".into()))
        );
        assert_eq!(
            parse_set("SET application_name TO 'psql'"),
            Some(("application_name".into(), "psql".into()))
        );
    }
}
