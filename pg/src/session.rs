//! A PostgreSQL client's session: the query core's session plus what PostgreSQL adds around
//! it: statement text as PostgreSQL clients send it (rewritten so DataFusion can plan it),
//! transaction statements (accepted; Eddy has no multi-statement transactions), `SET`/`SHOW`/
//! `RESET` settings, cursors (`DECLARE`, `FETCH`, `MOVE`, `CLOSE`), `PREPARE`/`DEALLOCATE`,
//! `DISCARD`, `LISTEN`/`UNLISTEN`/`NOTIFY` (Eddy has no notifications), and the session's
//! advisory locks.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{DeclareType, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use eddy_query::naming::ColumnNames;
use eddy_query::{Completion, QueryEngine, QuerySession};
use futures::StreamExt;
use parking_lot::Mutex;

use crate::activity::BackendPid;
use crate::advisory::{SessionGuard, SessionLocks, StatementLocks};
use crate::cancel::Interrupt;
use crate::cursor::command::CursorCommand;
use crate::cursor::{Cursors, Declaration};
use crate::error::{PgError, Result};
use crate::settings::{
    SESSION_AUTHORIZATION, SessionVars, assign, assign_local, parse_set, setting, timeout_millis,
};

/// A statement as a PostgreSQL client sends it.
#[derive(Debug, Clone)]
pub enum Statement {
    /// A statement for the query core.
    Query(eddy_query::Statement),
    /// `FETCH` or `MOVE`, which the parser knows only in part.
    Cursor(CursorCommand),
}

/// The `Prepared::Accept` of `ROLLBACK TO SAVEPOINT`, told apart from the `ROLLBACK` that ends
/// the transaction.
pub const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT";

/// A parsed, planned statement, ready to run (possibly many times with parameters).
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A statement of the query core (queries, INSERT, DDL, ...).
    Query(eddy_query::Prepared),
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
        declaration: Declaration,
        /// The query; may hold `$n` placeholders.
        plan: LogicalPlan,
        /// PostgreSQL's names for its result columns.
        names: ColumnNames,
    },
    /// `FETCH` or `MOVE`.
    Fetch(CursorCommand),
    /// `CLOSE name`, or `CLOSE ALL` (`None`).
    CloseCursor(Option<String>),
    /// `RESET name`, or `RESET ALL` (`None`).
    Reset(Option<String>),
    /// `DEALLOCATE [PREPARE] name`, or `DEALLOCATE ALL` (`None`).
    Deallocate(Option<String>),
    /// `DISCARD ALL`.
    DiscardAll,
}

impl Prepared {
    /// The plan of a statement the query core plans with DataFusion, if it is one.
    pub fn plan(&self) -> Option<(&LogicalPlan, &ColumnNames)> {
        match self {
            Prepared::Query(eddy_query::Prepared::Plan(plan, names)) => Some((plan, names)),
            _ => None,
        }
    }
}

/// What running a statement produced, as PostgreSQL reports it.
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

/// PostgreSQL's command tag for what a statement did.
pub fn command_tag(c: Completion) -> String {
    match c {
        Completion::Inserted(n) => format!("INSERT 0 {n}"),
        Completion::CreatedTable => "CREATE TABLE".into(),
        Completion::DroppedTable => "DROP TABLE".into(),
        Completion::CreatedView => "CREATE MATERIALIZED VIEW".into(),
        Completion::DroppedView => "DROP MATERIALIZED VIEW".into(),
        Completion::RefreshedView => "REFRESH MATERIALIZED VIEW".into(),
        Completion::AlteredTable => "ALTER TABLE".into(),
        Completion::CreatedSource => "CREATE SOURCE".into(),
        Completion::DroppedSource => "DROP SOURCE".into(),
        Completion::AlteredSource => "ALTER SOURCE".into(),
        Completion::CreatedIndex => "CREATE INDEX".into(),
        Completion::DroppedIndex => "DROP INDEX".into(),
    }
}

/// One PostgreSQL client's session.
pub struct PgSession {
    query: QuerySession,
    vars: SessionVars,
    cursors: Arc<Cursors>,
    /// What `pg_backend_pid()` answers.
    backend_pid: BackendPid,
    /// The session's advisory locks, released when the session is dropped (the connection
    /// ended, however it ended).
    locks: SessionGuard,
    /// Names of the statements `PREPARE` made (DataFusion keeps the plans but cannot list
    /// them, and `DEALLOCATE ALL` must remove each).
    prepared: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for PgSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSession").finish_non_exhaustive()
    }
}

impl PgSession {
    /// A new session over the engine (one per client connection).
    pub fn new(engine: &QueryEngine) -> Self {
        // pg_cursors lists the session's own cursors: it finds them in the session's config.
        let cursors: Arc<Cursors> = Arc::default();
        let vars = SessionVars::default();
        let backend_pid = BackendPid::default();
        let locks = SessionLocks::new(
            crate::advisory::LockTable::global(),
            backend_pid.clone(),
            vars.clone(),
        );
        let query = engine.session_with(|state| {
            state.config_mut().set_extension(cursors.clone());
            // INSERTs of this session are counted as the Postgres front end's writes.
            state
                .config_mut()
                .set_extension(Arc::new(eddy_ingest::FrontEnd::PgInsert));
            use datafusion::execution::FunctionRegistry;
            let _ =
                state.register_udf(Arc::new(crate::settings::current_setting_udf(vars.clone())));
            let _ = state.register_udf(Arc::new(crate::settings::session_user_udf(vars.clone())));
            let _ = state.register_udf(Arc::new(crate::settings::set_config_udf(vars.clone())));
            let _ = state.register_udf(Arc::new(crate::activity::pg_backend_pid_udf(
                backend_pid.clone(),
            )));
            for udf in crate::advisory::udfs(&locks) {
                let _ = state.register_udf(Arc::new(udf));
            }
        });
        PgSession {
            query,
            vars,
            cursors,
            backend_pid,
            locks: SessionGuard::new(locks),
            prepared: Mutex::default(),
        }
    }

    /// The query core's session.
    pub fn query(&self) -> &QuerySession {
        &self.query
    }

    /// The engine this session belongs to.
    pub fn engine(&self) -> &QueryEngine {
        self.query.engine()
    }

    /// The DataFusion context of this session.
    pub fn context(&self) -> &SessionContext {
        self.query.context()
    }

    /// Plans one parsed statement.
    pub async fn prepare(&self, stmt: Statement) -> Result<Prepared> {
        let stmt = match stmt {
            Statement::Cursor(c) => return Ok(Prepared::Fetch(c)),
            Statement::Query(s) => s,
        };
        let eddy_query::Statement::Sql(DfStatement::Statement(sql_stmt)) = stmt else {
            return Ok(Prepared::Query(self.query.prepare(stmt).await?));
        };
        match *sql_stmt {
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
                            return Err(PgError::unsupported(
                                "BINARY cursors are not supported; fetch in binary through the extended protocol (a driver's binary result format) instead",
                            ));
                        }
                        let (plan, names) = self.query.plan_query(q.clone()).await?;
                        Ok(Prepared::DeclareCursor {
                            declaration: Declaration {
                                name: eddy_query::ddl::ident_name(name),
                                statement: format!("DECLARE {d}"),
                                hold: d.hold == Some(true),
                                scroll: d.scroll == Some(true),
                            },
                            plan,
                            names,
                        })
                    }
                    _ => Err(PgError::unsupported(format!(
                        "{d} is not supported; the DECLARE Eddy runs is DECLARE name [SCROLL | NO SCROLL] CURSOR [WITH HOLD | WITHOUT HOLD] FOR query"
                    ))),
                }
            }
            SqlStatement::Close { cursor } => {
                use datafusion::sql::sqlparser::ast::CloseCursor;
                Ok(Prepared::CloseCursor(match cursor {
                    CloseCursor::All => None,
                    CloseCursor::Specific { name } => Some(eddy_query::ddl::ident_name(&name)),
                }))
            }
            SqlStatement::Discard { object_type } => {
                use datafusion::sql::sqlparser::ast::DiscardObject;
                Ok(match object_type {
                    DiscardObject::ALL => Prepared::DiscardAll,
                    // Eddy has no plan cache, temporary tables or sequences to discard.
                    DiscardObject::PLANS => Prepared::Accept("DISCARD PLANS"),
                    DiscardObject::SEQUENCES => Prepared::Accept("DISCARD SEQUENCES"),
                    DiscardObject::TEMP => Prepared::Accept("DISCARD TEMP"),
                })
            }
            SqlStatement::Set(datafusion::sql::sqlparser::ast::Set::SetSessionAuthorization(
                param,
            )) => {
                use datafusion::sql::sqlparser::ast::SetSessionAuthorizationParamKind as Kind;
                match &param.kind {
                    Kind::Default => self.vars.lock().reset(SESSION_AUTHORIZATION),
                    Kind::User(user) => self.vars.lock().set(
                        SESSION_AUTHORIZATION.to_string(),
                        eddy_query::ddl::ident_name(user),
                    ),
                }
                Ok(Prepared::Accept("SET"))
            }
            SqlStatement::Set(set) => {
                use datafusion::sql::sqlparser::ast::{ContextModifier, Set};
                let text = set.to_string();
                if text.to_lowercase().starts_with("set datafusion.") {
                    return self.core(SqlStatement::Set(set)).await;
                }
                let local = matches!(
                    set,
                    Set::SingleAssignment {
                        scope: Some(ContextModifier::Local),
                        ..
                    }
                );
                if let Some((name, value)) = parse_set(&text) {
                    // Stored as PostgreSQL shows it: `SET statement_timeout = 5000` is `5s`.
                    if local {
                        assign_local(&self.vars, &name, &value)?;
                    } else {
                        assign(&self.vars, &name, &value)?;
                    }
                }
                Ok(Prepared::Accept("SET"))
            }
            SqlStatement::Reset(r) => {
                use datafusion::sql::sqlparser::ast::Reset;
                Ok(Prepared::Reset(match r.reset {
                    Reset::ALL => None,
                    Reset::ConfigurationParameter(name) => Some(name.to_string().to_lowercase()),
                }))
            }
            SqlStatement::Deallocate { name, .. } => {
                let all = name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all");
                Ok(Prepared::Deallocate(
                    (!all).then(|| eddy_query::ddl::ident_name(&name)),
                ))
            }
            // Eddy has no notifications: nobody listens, so there is nothing to stop.
            SqlStatement::UNLISTEN { .. } => Ok(Prepared::Accept("UNLISTEN")),
            SqlStatement::LISTEN { .. } => Err(PgError::unsupported(
                "LISTEN is not supported: Eddy has no notifications (LISTEN/NOTIFY); poll with a query instead",
            )),
            SqlStatement::NOTIFY { .. } => Err(PgError::unsupported(
                "NOTIFY is not supported: Eddy has no notifications (LISTEN/NOTIFY)",
            )),
            SqlStatement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(eddy_query::ddl::ident_name)
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(value) = self.setting(&name) {
                    return Ok(Prepared::Show { name, value });
                }
                self.core(SqlStatement::ShowVariable { variable }).await
            }
            other => self.core(other).await,
        }
    }

    /// Plans a statement in the query core.
    async fn core(&self, stmt: SqlStatement) -> Result<Prepared> {
        let stmt = eddy_query::Statement::Sql(DfStatement::Statement(Box::new(stmt)));
        Ok(Prepared::Query(self.query.prepare(stmt).await?))
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
    /// `session_user`, `current_user` and `SHOW session_authorization`; the first call wins,
    /// and no `RESET` or `DISCARD` changes it.
    pub fn set_user(&self, user: &str) {
        self.vars.lock().log_in(user);
    }

    /// Records the backend pid the client was given at start-up, for `pg_backend_pid()`.
    pub fn set_backend_pid(&self, pid: i32) {
        self.backend_pid
            .store(pid, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long a statement may run (`SET statement_timeout`), if limited.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let value = self
            .vars
            .lock()
            .get("statement_timeout")
            .map(str::to_string)?;
        let ms = timeout_millis("statement_timeout", &value).ok()?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// A statement starts: `interrupt` (its cancel request and `statement_timeout`) also
    /// stops its advisory lock waits.
    pub(crate) fn start_statement(&self, interrupt: &Interrupt) {
        self.locks.locks().statement_started(interrupt.clone());
    }

    /// Held as long as a statement runs, its rows included: dropping it ends the statement's
    /// transaction (releasing its transaction-level advisory locks) unless `BEGIN` opened one.
    pub(crate) fn statement_locks(&self) -> StatementLocks {
        self.locks.locks().statement()
    }

    /// Removes the statement `PREPARE name` made (every one for `None`); false if there is no
    /// statement of that name. A connection's protocol-level statements (`Parse`) are not the
    /// session's: the connection removes those (`wire.rs`).
    pub async fn deallocate(&self, name: Option<&str>) -> Result<bool> {
        let names: Vec<String> = match name {
            Some(name) => {
                if !self.prepared.lock().remove(name) {
                    return Ok(false);
                }
                vec![name.to_string()]
            }
            None => self.prepared.lock().drain().collect(),
        };
        for name in names {
            let plan = LogicalPlan::Statement(datafusion::logical_expr::Statement::Deallocate(
                datafusion::logical_expr::Deallocate { name },
            ));
            // An error means DataFusion has no such plan: gone either way.
            let _ = self
                .query
                .execute(
                    &eddy_query::Prepared::Plan(plan, ColumnNames::default()),
                    None,
                )
                .await;
        }
        Ok(true)
    }

    /// `DISCARD ALL`, which PostgreSQL defines as `CLOSE ALL; SET SESSION AUTHORIZATION
    /// DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD
    /// PLANS; DISCARD TEMP; DISCARD SEQUENCES;`. Eddy has no notifications, plan cache,
    /// temporary tables or sequences, so the last four parts are done by doing nothing; the
    /// connection closes its protocol-level portals and statements (`wire.rs`).
    async fn discard_all(&self) -> Result<()> {
        if self.vars.lock().in_block() {
            return Err(PgError::new(
                "25001",
                "DISCARD ALL cannot run inside a transaction block",
            ));
        }
        self.cursors.close(None)?;
        self.vars.lock().discard_all();
        self.deallocate(None).await?;
        self.locks.locks().unlock_all();
        Ok(())
    }

    /// Runs a prepared statement with parameter values for its placeholders.
    pub async fn execute(
        &self,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<Output> {
        match prepared {
            Prepared::Query(p) => {
                let out = self.query.execute(p, params).await?;
                if let eddy_query::Prepared::Plan(
                    LogicalPlan::Statement(datafusion::logical_expr::Statement::Prepare(prepare)),
                    _,
                ) = p
                {
                    // DataFusion answers PREPARE with an empty result; PostgreSQL with a tag.
                    self.prepared.lock().insert(prepare.name.clone());
                    return Ok(Output::Command("PREPARE".into()));
                }
                Ok(match out {
                    eddy_query::Output::Rows { schema, stream } => Output::Rows { schema, stream },
                    eddy_query::Output::Done(c) => Output::Command(command_tag(c)),
                })
            }
            Prepared::Reset(name) => {
                match name {
                    None => self.vars.lock().reset_all(),
                    Some(name) => self.vars.lock().reset(name),
                }
                Ok(Output::Command("RESET".into()))
            }
            Prepared::Deallocate(name) => {
                if !self.deallocate(name.as_deref()).await?
                    && let Some(name) = name
                {
                    return Err(statement_missing(name));
                }
                Ok(Output::Command(
                    if name.is_some() {
                        "DEALLOCATE"
                    } else {
                        "DEALLOCATE ALL"
                    }
                    .into(),
                ))
            }
            Prepared::DiscardAll => {
                self.discard_all().await?;
                Ok(Output::Command("DISCARD ALL".into()))
            }
            Prepared::Accept(tag) => {
                match *tag {
                    "BEGIN" => self.vars.lock().begin(),
                    "COMMIT" | "ROLLBACK" => {
                        self.cursors.end_transaction();
                        self.vars.lock().end_transaction();
                        self.locks.locks().end_block();
                    }
                    _ => {}
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
                let rows = self.query.stream(plan, names, params).await?;
                self.cursors.declare(
                    declaration.clone(),
                    rows.schema,
                    rows.stream,
                    &rows.memory_pool,
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
                // PostgreSQL's tags.
                let tag = match name {
                    Some(_) => "CLOSE CURSOR",
                    None => "CLOSE CURSOR ALL",
                };
                Ok(Output::Command(tag.into()))
            }
            Prepared::Show { name, value } => {
                let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
                        value.as_str(),
                    ]))],
                )?;
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
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<RecordBatch>> {
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

/// `DEALLOCATE` of a name no prepared statement has (SQLSTATE 26000, as PostgreSQL).
pub fn statement_missing(name: &str) -> PgError {
    PgError::new(
        "26000",
        format!("prepared statement \"{name}\" does not exist"),
    )
}

/// Splits SQL text as a PostgreSQL client sends it into statements.
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
    if let Some(name) = eddy_query::engine::refresh_target(sql) {
        return Ok(vec![Statement::Query(eddy_query::Statement::RefreshView(
            name,
        ))]);
    }
    if let Some(pieces) = eddy_query::sources::split_source_statements(sql) {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                eddy_query::sources::Piece::Source(cmd) => {
                    out.push(Statement::Query(eddy_query::Statement::Source(cmd?)))
                }
                eddy_query::sources::Piece::Sql(text) => out.extend(parse_statements(&text)?),
            }
        }
        return Ok(out);
    }
    // PostgreSQL clients' catalog queries need rewriting (`OPERATOR(pg_catalog.~)`,
    // `'t'::regclass`, `pg_catalog.` qualifiers) before DataFusion can plan them; Eddy's
    // rules come after pg-catalog's (set-returning calls, correlated subqueries, ...).
    let parsed = if expands_search_path(sql) {
        // pg-catalog's token blacklist replaces Grafana's search_path expansion with `''`
        // (so its table and column listings came back empty); Eddy's rewrite plans it instead.
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .map(|stmts| stmts.into_iter().map(|s| PG_PARSER.rewrite(s)).collect())
    } else {
        PG_PARSER.parse(sql)
    };
    let query = |s: DfStatement| -> Result<Statement> {
        eddy_query::complexity::check_df_statement(&s)?;
        Ok(Statement::Query(eddy_query::Statement::Sql(s)))
    };
    match parsed {
        Ok(stmts) => stmts
            .into_iter()
            .map(|s| {
                // Before the rewrites, which walk the whole tree.
                eddy_query::complexity::check_statement(&s)?;
                query(DfStatement::Statement(Box::new(crate::catalog::rewrite(s))))
            })
            .collect(),
        // DataFusion's own statements (and its error messages with positions).
        Err(_) => {
            let stmts = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
                .map_err(eddy_query::QueryError::from)?;
            stmts.into_iter().map(query).collect()
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

#[cfg(test)]
mod tests {
    use super::{Statement, parse};

    #[test]
    fn session_statements_parse_as_postgresql_writes_them() {
        use datafusion::sql::parser::Statement as DfStatement;
        use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
        let stmts = parse(
            "UNLISTEN *; DEALLOCATE ALL; DEALLOCATE \"_PLAN0x1\"; DEALLOCATE PREPARE p; \
             DISCARD ALL; LISTEN ch; NOTIFY ch",
        )
        .expect("parses");
        let sql: Vec<&SqlStatement> = stmts
            .iter()
            .map(|s| match s {
                Statement::Query(eddy_query::Statement::Sql(DfStatement::Statement(s))) => {
                    s.as_ref()
                }
                other => panic!("not a SQL statement: {other:?}"),
            })
            .collect();
        assert!(
            matches!(sql[0], SqlStatement::UNLISTEN { .. }),
            "{}",
            sql[0]
        );
        assert!(
            matches!(sql[1], SqlStatement::Deallocate { name, .. }
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all")),
            "{}",
            sql[1]
        );
        assert!(
            matches!(sql[2], SqlStatement::Deallocate { name, .. }
                if name.quote_style.is_some() && name.value == "_PLAN0x1"),
            "{}",
            sql[2]
        );
        assert!(
            matches!(sql[3], SqlStatement::Deallocate { name, prepare: true }
                if name.value == "p"),
            "{}",
            sql[3]
        );
        assert!(matches!(sql[4], SqlStatement::Discard { .. }), "{}", sql[4]);
        assert!(matches!(sql[5], SqlStatement::LISTEN { .. }), "{}", sql[5]);
        assert!(matches!(sql[6], SqlStatement::NOTIFY { .. }), "{}", sql[6]);
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
        let [Statement::Query(eddy_query::Statement::Sql(stmt))] = stmts.as_slice() else {
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
}
