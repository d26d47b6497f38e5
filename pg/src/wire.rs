//! The PostgreSQL wire protocol front end (pgwire): simple and extended query protocols over
//! the query engine, results encoded from Arrow in text or binary format, and COPY. Every
//! failed statement is logged (one line, rate-limited) and counted by SQLSTATE here.

use crate::activity::Activity;
use crate::advisory::StatementLocks;
use crate::auth::{self, PgConfig};
use crate::error::PgError;
use crate::metrics::{PgMetrics, Refusal};
use crate::session::{Output, PgSession as QuerySession, Prepared};
use crate::{cancel, copy, portal};

use std::any::Any;
use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::{PG_OID_ALIAS_KEY, arrow_schema_to_pg_fields, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_query::QueryEngine;
use eddy_query::running::RunningQuery;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{MemPortalStore, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use tokio::net::TcpListener;

/// A statement prepared through the extended protocol.
#[derive(Debug, Clone)]
pub struct PgStatement {
    prepared: Prepared,
    param_types: Vec<Option<DataType>>,
    /// Its text (cut short), for `eddy_queries`.
    sql: Arc<str>,
    /// A COPY statement, run by the COPY sub-protocol rather than the query core.
    copy: Option<copy::CopyRequest>,
    /// Positions of its placeholders cast to `oid[]` (see `oid_array_placeholders`).
    oid_array_params: Vec<usize>,
}

/// The text of the statement a connection runs (cut short), for the log line of a failure
/// pgwire reports: its error handler sees the error, not the statement.
type CurrentStatement = Arc<parking_lot::Mutex<Arc<str>>>;

/// Statements that fail are logged at most this many times per `LOG_INTERVAL`, all
/// connections together (a client can send failing statements as fast as it likes); the
/// metric counts every one.
const FAILED_STATEMENT_LINES: u32 = 100;

/// How much of a failed statement's text its log line shows, in characters.
const LOGGED_STATEMENT_CHARS: usize = 1000;

/// Where failed statements are logged and counted; shared by all connections.
#[derive(Debug, Clone)]
struct FailedStatements {
    metrics: PgMetrics,
    log: Arc<parking_lot::Mutex<LogLimit>>,
}

/// The handlers of one client connection, holding its query session.
pub struct PgConnection {
    pub(crate) session: Arc<QuerySession>,
    pub(crate) parser: Arc<PgQueryParser>,
    /// The statement running now, for its log line if it fails.
    statement: CurrentStatement,
    /// Where its failed statements go.
    failures: FailedStatements,
    /// The COPY FROM STDIN in progress, if any.
    copy_in: tokio::sync::Mutex<Option<copy::CopyIn>>,
    /// Where cancel requests for this connection arrive.
    cancel: cancel::CancelSignal,
    /// Whether the client has logged in: nothing runs before it has.
    admission: Arc<auth::Admission>,
    /// Its statements in the engine's list of running ones (`eddy_queries`).
    activity: Activity,
}

/// Plans SQL of `Parse` messages in the connection's session.
pub struct PgQueryParser {
    pub(crate) session: Arc<QuerySession>,
    admission: Arc<auth::Admission>,
    /// The connection's statement running now (a `Parse` that fails is a failed statement).
    statement: CurrentStatement,
}

/// Refuses to run anything for a connection that has not logged in. pgwire answers a failed
/// login (a wrong password, too many clients) with FATAL but goes on reading the socket, so a
/// query sent after it would otherwise run without credentials.
fn require_login(admission: &auth::Admission) -> PgWireResult<()> {
    if admission.is_logged_in() {
        return Ok(());
    }
    Err(PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        "28000".to_owned(),
        "the connection has not logged in".to_owned(),
    ))))
}

/// Gives the session the user the client logged in as. Authentication has finished before
/// any query arrives, but no hook of pgwire's runs after it for every method, so this is done
/// at the first statement (later calls change nothing).
fn record_user<C: ClientInfo>(session: &QuerySession, client: &C) {
    if let Some(user) = client.metadata().get(pgwire::api::METADATA_USER) {
        session.set_user(user);
    }
    session.set_backend_pid(client.pid_and_secret_key().0);
}

pub(crate) fn error_info(e: PgError) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_owned(), e.sqlstate.to_owned(), e.message)
}

pub(crate) fn user_error(e: PgError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        e.sqlstate.to_owned(),
        e.message,
    )))
}

/// Parses (and rewrites) SQL on the query threads: a deeply nested statement is walked and
/// dropped there, never on a thread that serves connections.
async fn parse_off_thread(
    session: &QuerySession,
    sql: &str,
) -> Result<Vec<crate::session::Statement>, PgError> {
    let sql = sql.to_string();
    session
        .engine()
        .runtime()
        .compute(move || crate::session::parse(&sql))
        .await
}

/// The command tag a statement's rows are reported under (`FETCH 3`, `SELECT 3`).
fn rows_tag(p: &Prepared) -> &'static str {
    match p {
        Prepared::Fetch(_) => "FETCH",
        _ => "SELECT",
    }
}

/// The response to a statement's output; `running` is the statement's entry in
/// `eddy_queries`, and `locks` its transaction's advisory locks: both end with its rows.
fn output_to_response(
    output: Output,
    format: &Format,
    cancel: cancel::Interrupt,
    rows_tag: &str,
    mut running: RunningQuery,
    locks: StatementLocks,
) -> PgWireResult<Response> {
    match output {
        Output::Command(tag) => Ok(Response::Execution(command_tag(&tag))),
        Output::Rows { schema, stream } => {
            let fields = match pg_fields(&schema, format) {
                Ok(fields) => Arc::new(fields),
                Err(e) => {
                    running.fail();
                    return Err(e);
                }
            };
            let f = fields.clone();
            let rows = cancel::rows_until_cancelled(stream, cancel, running)
                .map(move |rb: PgWireResult<RecordBatch>| {
                    // Kept with the rows, dropped with them.
                    let _locks = &locks;
                    let rows = match rb {
                        Ok(rb) => encode_batch(&f, &rb),
                        Err(e) => vec![Err(e)],
                    };
                    stream::iter(rows)
                })
                .flatten();
            let mut response = QueryResponse::new(fields, rows);
            response.set_command_tag(rows_tag);
            Ok(Response::Query(response))
        }
    }
}

/// The wire description of result columns. pg-catalog marks catalog columns with the alias
/// type it resolves names through (`pg_class.relnamespace` as `regnamespace`), but PostgreSQL
/// declares them `oid`, and the values are numbers: reported as `regnamespace`, clients that
/// read oids (tokio-postgres, asyncpg in binary) fail to decode them, and text-format clients
/// expect a name. So every oid alias is reported as `oid`.
fn pg_fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let alias = |f: &Field| {
        f.data_type().is_integer()
            && f.metadata()
                .get(PG_OID_ALIAS_KEY)
                .is_some_and(|kind| kind != "oid")
    };
    if !schema.fields().iter().any(|f| alias(f)) {
        return oid_arrays(schema, arrow_schema_to_pg_fields(schema, format, None)?);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut f = f.as_ref().clone();
            if alias(&f) {
                let mut metadata = f.metadata().clone();
                metadata.insert(PG_OID_ALIAS_KEY.to_string(), "oid".to_string());
                f = f.with_metadata(metadata);
            }
            f
        })
        .collect();
    let pg = arrow_schema_to_pg_fields(
        &Schema::new_with_metadata(fields, schema.metadata().clone()),
        format,
        None,
    )?;
    oid_arrays(schema, pg)
}

/// Whether `f` is a list of integers marked as `oid[]` (see `eddy_oid_array`).
fn is_oid_array(f: &Field) -> bool {
    matches!(f.data_type(), DataType::List(item) if item.data_type().is_integer())
        && f.metadata()
            .get(PG_OID_ALIAS_KEY)
            .is_some_and(|kind| kind == "oid")
}

/// Reports the columns marked as `oid[]` as `oid[]`; arrow-pg knows only scalar oid aliases.
fn oid_arrays(schema: &Schema, fields: Vec<FieldInfo>) -> PgWireResult<Vec<FieldInfo>> {
    if !schema.fields().iter().any(|f| is_oid_array(f)) {
        return Ok(fields);
    }
    Ok(fields
        .into_iter()
        .zip(schema.fields().iter())
        .map(|(pf, af)| {
            if is_oid_array(af) {
                FieldInfo::new(
                    pf.name().to_string(),
                    pf.table_id(),
                    pf.column_id(),
                    Type::OID_ARRAY,
                    pf.format(),
                )
                .with_format_options(pf.format_options().clone())
            } else {
                pf
            }
        })
        .collect())
}

/// Row `row` of an `oid[]` column, as the encoder takes it.
fn oid_array_value(col: &dyn Array, row: usize) -> PgWireResult<Option<Vec<Option<u32>>>> {
    let list = col
        .as_any()
        .downcast_ref::<datafusion::arrow::array::ListArray>()
        .ok_or_else(|| PgWireError::ApiError("an oid[] column that is not a list".into()))?;
    if list.is_null(row) {
        return Ok(None);
    }
    let items = datafusion::arrow::compute::cast(&list.value(row), &DataType::Int64)
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let items = items
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .ok_or_else(|| PgWireError::ApiError("oid[] items are not integers".into()))?;
    Ok(Some(
        items
            .iter()
            .map(|v| v.and_then(|v| u32::try_from(v).ok()))
            .collect(),
    ))
}

/// Encodes a batch as data rows. Timestamps, times and floats in text format are written the
/// way PostgreSQL prints them (no `.000000` fraction, `2` not `2.0`, `1e+20`); clients and
/// tools compare text output, and drivers parse it. Everything else goes through arrow-pg.
fn encode_batch(fields: &Arc<Vec<FieldInfo>>, rb: &RecordBatch) -> Vec<PgWireResult<DataRow>> {
    if let Some(rows) = encode_text_batch(fields, rb) {
        return rows;
    }
    let schema = rb.schema();
    let mut enc = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(rb.num_rows());
    for row in 0..rb.num_rows() {
        let mut result = Ok(());
        for (c, col) in rb.columns().iter().enumerate() {
            let (af, pf) = (schema.field(c), &fields[c]);
            let pg_text = pf.format() == FieldFormat::Text
                && matches!(
                    af.data_type(),
                    DataType::Timestamp(..)
                        | DataType::Time64(_)
                        | DataType::Time32(_)
                        | DataType::Float32
                        | DataType::Float64
                );
            result = if is_oid_array(af) {
                oid_array_value(col.as_ref(), row).and_then(|v| {
                    enc.encode_field_with_type_and_format(
                        &v,
                        pf.datatype(),
                        pf.format(),
                        pf.format_options(),
                    )
                })
            } else if pg_text {
                let v = crate::text::format_value(col.as_ref(), row);
                enc.encode_field_with_type_and_format(
                    &v,
                    pf.datatype(),
                    FieldFormat::Text,
                    pf.format_options(),
                )
            } else {
                arrow_pg::encoder::encode_value(&mut enc, col, row, af, pf)
            };
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => rows.push(Ok(enc.take_row())),
            Err(e) => {
                rows.push(Err(e));
                break;
            }
        }
    }
    rows
}

/// Encodes a batch whose every column is sent as text and printed by [`crate::text`] (what
/// psql, psycopg and most tools ask for): each value is written straight into the row's
/// bytes, with no per-value allocation or type dispatch through arrow-pg, the bulk of the
/// server's time on results of many rows. `None` for any other batch.
fn encode_text_batch(fields: &[FieldInfo], rb: &RecordBatch) -> Option<Vec<PgWireResult<DataRow>>> {
    use bytes::BufMut;
    let schema = rb.schema();
    if fields.len() != rb.num_columns() {
        return None;
    }
    let printable = fields.iter().zip(schema.fields()).all(|(pf, af)| {
        pf.format() == FieldFormat::Text
            && !is_oid_array(af)
            && crate::text::prints_natively(af.data_type())
    });
    if !printable {
        return None;
    }
    let columns = rb.columns();
    let count = i16::try_from(columns.len()).ok()?;
    let mut buf = bytes::BytesMut::new();
    let mut rows = Vec::with_capacity(rb.num_rows());
    for row in 0..rb.num_rows() {
        if buf.capacity() - buf.len() < 1024 {
            // Rows are split off this buffer, so one allocation serves many of them.
            buf.reserve(64 * 1024);
        }
        for col in columns {
            let at = buf.len();
            buf.put_i32(-1);
            if crate::text::write_value(col.as_ref(), row, &mut buf) {
                let len = i32::try_from(buf.len() - at - 4).unwrap_or(i32::MAX);
                buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        rows.push(Ok(DataRow::new(buf.split(), count)));
    }
    Some(rows)
}

fn command_tag(tag: &str) -> Tag {
    if let Some(n) = tag
        .strip_prefix("INSERT 0 ")
        .and_then(|n| n.parse::<usize>().ok())
    {
        return Tag::new("INSERT").with_oid(0).with_rows(n);
    }
    Tag::new(tag)
}

fn transaction_response(tag: &str, response: Response) -> Response {
    match (tag, response) {
        ("BEGIN", Response::Execution(t)) => Response::TransactionStart(t),
        ("COMMIT" | "ROLLBACK", Response::Execution(t)) => Response::TransactionEnd(t),
        (_, r) => r,
    }
}

#[async_trait]
impl SimpleQueryHandler for PgConnection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        require_login(&self.admission)?;
        record_user(&self.session, client);
        self.activity.identify(client);
        *self.statement.lock() = Arc::from(eddy_query::running::clip_query(query));
        let mut cancel = self.start_interrupt(client);
        let stmts = parse_off_thread(&self.session, query)
            .await
            .map_err(user_error)?;
        let mut responses = Vec::with_capacity(stmts.len());
        for stmt in stmts {
            if let Some(request) = copy::copy_request(&stmt) {
                match async { self.start_copy(request?).await }.await {
                    Ok(r @ Response::CopyIn(_)) => {
                        // The client sends the data next; later statements are not run.
                        responses.push(r);
                        break;
                    }
                    Ok(r) => responses.push(r),
                    Err(e) => {
                        responses.push(Response::Error(Box::new(error_info(e))));
                        break;
                    }
                }
                continue;
            }
            if let crate::session::Statement::Cursor(command) = &stmt
                && let Some(target) = portal::find(self, client.portal_store(), &command.name)
            {
                match portal::fetch(self, &target, command, cancel.clone()).await {
                    Ok(r) => responses.push(r),
                    Err(PgWireError::UserError(e)) => {
                        responses.push(Response::Error(e));
                        break;
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            // Listed from here until its rows are sent; PostgreSQL too shows the whole text of
            // a simple query for each of its statements.
            let mut running = self.activity.start(query, self.cancel.remote());
            let locks = self.session.statement_locks();
            let result = cancel::unless_cancelled(&mut cancel, async {
                let p = self.session.prepare(stmt).await?;
                if let Prepared::CloseCursor(Some(name)) = &p
                    && portal::find(self, client.portal_store(), name).is_some()
                {
                    client.portal_store().rm_portal(name);
                    return Ok(("", "", Output::Command("CLOSE CURSOR".into())));
                }
                let tag = match &p {
                    Prepared::Accept(t) => *t,
                    _ => "",
                };
                let out = self
                    .execute_on_connection(client.portal_store(), &p)
                    .await?;
                Ok::<_, PgError>((tag, rows_tag(&p), out))
            })
            .await;
            match result {
                Ok((tag, rows_tag, out)) => {
                    let format = &Format::UnifiedText;
                    let r =
                        output_to_response(out, format, cancel.clone(), rows_tag, running, locks)?;
                    responses.push(transaction_response(tag, r));
                }
                Err(e) => {
                    running.fail();
                    // Like PostgreSQL: report the error and skip the remaining statements.
                    responses.push(Response::Error(Box::new(error_info(e))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        // The failures returned as errors are logged by `on_error`; these are sent as they are.
        for r in &responses {
            if let Response::Error(e) = r {
                self.statement_failed(&*client, e, query);
            }
        }
        Ok(responses)
    }
}

/// Statements that act on the connection's protocol-level statements and portals too:
/// PostgreSQL keeps those in one namespace with `PREPARE`'s statements and `DECLARE`'s
/// cursors.
fn acts_on_connection(p: &Prepared) -> bool {
    matches!(
        p,
        Prepared::Deallocate(_) | Prepared::DiscardAll | Prepared::CloseCursor(None)
    )
}

/// Removes the protocol-level prepared statement `name` (`Parse`'s); whether there was one.
fn remove_protocol_statement<S: PortalStore>(store: &S, name: &str) -> bool {
    let found = store.get_statement(name).is_some();
    if found {
        store.rm_statement(name);
    }
    found
}

/// Removes every protocol-level prepared statement.
fn clear_protocol_statements<S: PortalStore>(store: &S) {
    // The simple-query handler sees the store with a generic statement type; it is always
    // the store of this connection's extended-protocol statements.
    let store: &dyn Any = store;
    if let Some(store) = store.downcast_ref::<MemPortalStore<PgStatement>>() {
        store.clear_statements();
    }
}

impl PgConnection {
    /// Starts a statement's interrupt (a cancel request, `statement_timeout`); the session's
    /// advisory lock waits stop with it too.
    fn start_interrupt<C: ClientInfo>(&self, client: &C) -> cancel::Interrupt {
        let interrupt = self.cancel.start(client, self.session.statement_timeout());
        self.session.start_statement(&interrupt);
        interrupt
    }

    /// Runs a statement without parameters, including what it does to the connection's
    /// protocol-level statements and portals: `DEALLOCATE name` removes a `PREPARE`d or a
    /// `Parse`d statement of that name (SQLSTATE 26000 if neither exists), `DEALLOCATE ALL`
    /// both kinds, `CLOSE ALL` and `DISCARD ALL` every portal too.
    async fn execute_on_connection<S: PortalStore>(
        &self,
        store: &S,
        p: &Prepared,
    ) -> Result<Output, PgError> {
        match p {
            Prepared::Deallocate(Some(name)) => {
                let protocol = remove_protocol_statement(store, name);
                let prepared = self.session.deallocate(Some(name.as_str())).await?;
                if !protocol && !prepared {
                    return Err(crate::session::statement_missing(name));
                }
                Ok(Output::Command("DEALLOCATE".into()))
            }
            Prepared::Deallocate(None) => {
                clear_protocol_statements(store);
                self.session.deallocate(None).await?;
                Ok(Output::Command("DEALLOCATE ALL".into()))
            }
            _ => {
                let out = self.session.execute(p, None).await?;
                match p {
                    Prepared::DiscardAll => {
                        store.clear_portals();
                        clear_protocol_statements(store);
                    }
                    Prepared::CloseCursor(None) => store.clear_portals(),
                    _ => {}
                }
                Ok(out)
            }
        }
    }

    /// Logs a failed statement (one line, rate-limited with all connections' failures) and
    /// counts it by SQLSTATE. Called once per failure: from `do_query` for the errors it
    /// returns as responses, from `on_error` for every other.
    fn statement_failed<C: ClientInfo>(&self, client: &C, error: &ErrorInfo, sql: &str) {
        self.failures.metrics.statement_failed(&error.code);
        let Some(suppressed) = self.failures.log.lock().ready() else {
            return;
        };
        let user = client
            .metadata()
            .get(pgwire::api::METADATA_USER)
            .map(String::as_str)
            .unwrap_or("");
        let pid = client.pid_and_secret_key().0;
        let client_addr = client.socket_addr();
        let statement = logged_statement(sql);
        // Debug formatting quotes and escapes the texts, so the line stays one line.
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    sqlstate = %error.code,
                    error = ?error.message,
                    client = %client_addr,
                    user,
                    pid,
                    suppressed,
                    statement = ?statement,
                    "statement failed"
                )
            };
        }
        // Internal errors and failures of the server's disks are the operator's to look at.
        if matches!(error.code.get(..2), Some("XX" | "58")) {
            emit!(warn);
        } else {
            emit!(info);
        }
    }

    async fn start_copy(&self, request: copy::CopyRequest) -> Result<Response, PgError> {
        match request {
            copy::CopyRequest::In {
                table,
                columns,
                options,
            } => {
                let ingest = self
                    .session
                    .engine()
                    .ingest()
                    .for_front_end(eddy_ingest::FrontEnd::PgCopy);
                let (state, response) = copy::CopyIn::start(&ingest, &table, &columns, options)?;
                *self.copy_in.lock().await = Some(state);
                Ok(Response::CopyIn(response))
            }
            copy::CopyRequest::Out { query, options } => Ok(Response::CopyOut(
                copy::copy_out(&self.session, &query, options).await?,
            )),
        }
    }
}

#[async_trait]
impl pgwire::api::copy::CopyHandler for PgConnection {
    async fn on_copy_data<C>(
        &self,
        _client: &mut C,
        copy_data: pgwire::messages::copy::CopyData,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        require_login(&self.admission)?;
        let mut guard = self.copy_in.lock().await;
        let Some(state) = guard.as_mut() else {
            return Err(user_error(PgError::new(
                "08P01",
                "CopyData without COPY FROM STDIN",
            )));
        };
        if let Err(e) = state.data(&copy_data.data).await {
            *guard = None;
            return Err(user_error(e));
        }
        Ok(())
    }

    async fn on_copy_done<C>(
        &self,
        client: &mut C,
        _done: pgwire::messages::copy::CopyDone,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = self.copy_in.lock().await.take();
        let Some(mut state) = state else {
            return Err(user_error(PgError::new(
                "08P01",
                "CopyDone without COPY FROM STDIN",
            )));
        };
        let n = state.done().await.map_err(user_error)?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(n as usize).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(
        &self,
        _client: &mut C,
        fail: pgwire::messages::copy::CopyFail,
    ) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        *self.copy_in.lock().await = None;
        user_error(PgError::new(
            "57014",
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

#[async_trait]
impl QueryParser for PgQueryParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        require_login(&self.admission)?;
        record_user(&self.session, client);
        let text: Arc<str> = Arc::from(eddy_query::running::clip_query(sql));
        *self.statement.lock() = text.clone();
        let mut stmts = parse_off_thread(&self.session, sql)
            .await
            .map_err(user_error)?;
        let stmt: crate::session::Statement = match stmts.len() {
            0 => return Ok(None),
            1 => stmts.remove(0),
            _ => {
                return Err(user_error(PgError::new(
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                )));
            }
        };
        // tokio-postgres and pgx send COPY through Parse/Bind/Execute, not a simple query.
        if let Some(request) = copy::copy_request(&stmt) {
            return Ok(Some(PgStatement {
                prepared: Prepared::Accept("COPY"),
                param_types: Vec::new(),
                sql: text,
                copy: Some(request.map_err(user_error)?),
                oid_array_params: Vec::new(),
            }));
        }
        let prepared = self.session.prepare(stmt).await.map_err(user_error)?;
        let param_types = match &prepared {
            Prepared::Query(eddy_query::Prepared::Plan(plan, _))
            | Prepared::DeclareCursor { plan, .. } => {
                let types = plan
                    .get_parameter_types()
                    .map_err(|e| user_error(e.into()))?;
                let mut ordered: Vec<(usize, Option<DataType>)> = types
                    .into_iter()
                    .filter_map(|(k, v)| {
                        k.trim_start_matches('$')
                            .parse::<usize>()
                            .ok()
                            .map(|i| (i, v))
                    })
                    .collect();
                // `$1::timestamp`: DataFusion leaves the placeholder untyped, but the client
                // must be told the cast's type to encode the value (asyncpg, pgjdbc).
                let casts = placeholder_cast_types(plan);
                for (k, v) in ordered.iter_mut() {
                    if v.is_none() {
                        *v = casts.get(k).cloned();
                    }
                }
                ordered.sort_by_key(|(i, _)| *i);
                let n = ordered.last().map(|(i, _)| *i).unwrap_or(0);
                let mut out = vec![None; n];
                for (i, t) in ordered {
                    if i >= 1 {
                        out[i - 1] = t;
                    }
                }
                out
            }
            _ => Vec::new(),
        };
        Ok(Some(PgStatement {
            prepared,
            param_types,
            sql: text,
            copy: None,
            oid_array_params: oid_array_placeholders(sql),
        }))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        let oid_arrays = &stmt.oid_array_params;
        Ok(stmt
            .param_types
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                // DataFusion plans `oid` as `int4`; asyncpg can encode only an `oid[]` in
                // its type introspection, which binds `$1::oid[]`.
                Some(DataType::List(_)) if oid_arrays.contains(&(i + 1)) => Type::OID_ARRAY,
                Some(dt) => into_pg_type(dt).unwrap_or(Type::TEXT),
                None => Type::TEXT,
            })
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = column_format.cloned().unwrap_or(Format::UnifiedText);
        match &stmt.prepared {
            Prepared::Query(eddy_query::Prepared::Plan(plan, names)) if returns_rows(plan) => {
                pg_fields(
                    &names.apply(Arc::new(plan.schema().as_arrow().clone())),
                    &format,
                )
            }
            Prepared::Fetch(c) if c.move_only => Ok(Vec::new()),
            Prepared::Fetch(c) => match self.session.cursor_schema(&c.name) {
                Some(schema) => pg_fields(&schema, &format),
                None => Ok(Vec::new()),
            },
            Prepared::Show { name, .. } => Ok(vec![FieldInfo::new(
                name.clone(),
                None,
                None,
                Type::TEXT,
                format.format_for(0),
            )]),
            _ => Ok(Vec::new()),
        }
    }
}

/// Positions of the placeholders cast to `oid[]` in `sql` (`$1::oid[]` -> 1).
fn oid_array_placeholders(sql: &str) -> Vec<usize> {
    let lower = sql.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let after = after.trim_start();
        let cast = after
            .strip_prefix("::")
            .map(|t| t.trim_start())
            .map(|t| t.strip_prefix("pg_catalog.").unwrap_or(t));
        if let (Ok(n), Some(t)) = (number.parse::<usize>(), cast)
            && t.starts_with("oid[]")
        {
            out.push(n);
        }
    }
    out
}

/// Types of placeholders that appear directly under a cast, by position (`$1::int8` -> 1).
fn placeholder_cast_types(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> std::collections::HashMap<usize, DataType> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut out = std::collections::HashMap::new();
    let mut visit = |e: &Expr| {
        let _ = e.apply(|e| {
            let (inner, to) = match e {
                Expr::Cast(Cast { expr, field }) => (expr.as_ref(), field.data_type()),
                Expr::TryCast(TryCast { expr, field }) => (expr.as_ref(), field.data_type()),
                _ => return Ok(TreeNodeRecursion::Continue),
            };
            if let Expr::Placeholder(p) = inner
                && let Ok(i) = p.id.trim_start_matches('$').parse::<usize>()
            {
                out.entry(i).or_insert_with(|| to.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        });
    };
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|e| {
            visit(e);
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

fn returns_rows(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::logical_expr::LogicalPlan;
    !matches!(
        plan,
        LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)
    )
}

#[async_trait]
impl ExtendedQueryHandler for PgConnection {
    type Statement = PgStatement;
    type QueryParser = PgQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_describe<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Describe,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire answers a statement with parameters but no result columns (INSERT ... VALUES
        // ($1)) with an empty RowDescription; PostgreSQL sends NoData, and pgjdbc's
        // executeUpdate fails on anything else.
        if message.target_type == b'S' {
            let name = message.name.as_deref().unwrap_or("");
            if let Some(pgwire::api::store::Entry::Value(stmt)) =
                client.portal_store().get_statement(name)
            {
                let d = self.do_describe_statement(client, &stmt).await?;
                if d.fields.is_empty() {
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            pgwire::messages::data::ParameterDescription::new(
                                d.parameters.iter().map(|t| t.oid()).collect(),
                            ),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(
                            pgwire::messages::data::NoData::new(),
                        ))
                        .await?;
                    return Ok(());
                }
            }
        }
        // A cursor from DECLARE is also a portal in PostgreSQL: psycopg describes it by name
        // to learn its columns.
        if message.target_type == b'P' {
            let name = message.name.as_deref().unwrap_or("");
            if client.portal_store().get_portal(name).is_none()
                && let Some(schema) = self.session.cursor_schema(name)
            {
                let fields = pg_fields(&schema, &Format::UnifiedText)?;
                return pgwire::api::query::send_describe_response(
                    client,
                    &pgwire::api::results::DescribePortalResponse::new(fields),
                )
                .await;
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        require_login(&self.admission)?;
        self.activity.identify(client);
        *self.statement.lock() = portal.statement.statement.sql.clone();
        let interrupt = self.start_interrupt(client);
        if let Some(request) = &portal.statement.statement.copy {
            return self.start_copy(request.clone()).await.map_err(user_error);
        }
        let prepared = &portal.statement.statement.prepared;
        if let Prepared::Fetch(command) = prepared
            && let Some(target) = portal::find(self, client.portal_store(), &command.name)
        {
            return portal::fetch(self, &target, command, interrupt).await;
        }
        if let Prepared::CloseCursor(Some(name)) = prepared
            && portal::find(self, client.portal_store(), name).is_some()
        {
            client.portal_store().rm_portal(name);
            return Ok(Response::Execution(Tag::new("CLOSE CURSOR")));
        }
        if acts_on_connection(prepared) {
            return match self
                .execute_on_connection(client.portal_store(), prepared)
                .await
            {
                Ok(Output::Command(tag)) => Ok(Response::Execution(command_tag(&tag))),
                Ok(Output::Rows { .. }) => Ok(Response::Execution(Tag::new("SELECT"))),
                Err(e) => Err(user_error(e)),
            };
        }
        self.run_portal(portal, interrupt).await
    }
}

impl PgConnection {
    /// Executes a bound portal's statement with its parameters; rows come in the formats Bind
    /// asked for.
    pub(crate) async fn run_portal(
        &self,
        portal: &Portal<PgStatement>,
        mut cancel: cancel::Interrupt,
    ) -> PgWireResult<Response> {
        let stmt = &portal.statement.statement;
        let params = if portal.parameter_len() > 0 {
            let types: Vec<Option<&DataType>> =
                stmt.param_types.iter().map(|t| t.as_ref()).collect();
            Some(crate::params::decode_parameters(portal, &types)?)
        } else {
            None
        };
        let tag = match &stmt.prepared {
            Prepared::Accept(t) => *t,
            _ => "",
        };
        // Listed from here until its rows are sent (a suspended portal stays listed).
        let mut running = self.activity.start(&stmt.sql, self.cancel.remote());
        let locks = self.session.statement_locks();
        let executed =
            cancel::unless_cancelled(&mut cancel, self.session.execute(&stmt.prepared, params))
                .await;
        let out = match executed {
            Ok(out) => out,
            Err(e) => {
                running.fail();
                return Err(user_error(e));
            }
        };
        let r = output_to_response(
            out,
            &portal.result_column_format,
            cancel,
            rows_tag(&stmt.prepared),
            running,
            locks,
        )?;
        Ok(transaction_response(tag, r))
    }

    /// Whether a prepared statement's result is rows (a query), not a command tag.
    pub(crate) fn returns_rows(&self, stmt: &PgStatement) -> bool {
        match &stmt.prepared {
            Prepared::Query(eddy_query::Prepared::Plan(plan, _)) => returns_rows(plan),
            Prepared::Fetch(c) => !c.move_only,
            Prepared::Show { .. } => true,
            _ => false,
        }
    }
}

#[async_trait]
impl NoopStartupHandler for PgConnection {
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire's defaults name itself in server_version and differ from PostgreSQL's
        // DateStyle; clients keep the last value reported, so these replace them.
        for (name, value) in startup_parameters() {
            client
                .feed(PgWireBackendMessage::ParameterStatus(
                    pgwire::messages::startup::ParameterStatus::new(name.into(), value),
                ))
                .await?;
        }
        Ok(())
    }
}

impl pgwire::api::ErrorHandler for PgConnection {
    /// Every error pgwire sends passes here, but for those `do_query` returns as responses
    /// (which it logs itself): the failed statements among them are logged and counted.
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        // A broken socket ends the connection; no statement failed.
        if matches!(error, PgWireError::IoError(_)) {
            return;
        }
        if !matches!(error, PgWireError::UserError(_)) {
            // What pgwire would send for it: the client gets the same error.
            let info = ErrorInfo::from(std::mem::replace(error, PgWireError::InvalidSASLState));
            *error = PgWireError::UserError(Box::new(info));
        }
        let PgWireError::UserError(info) = &*error else {
            return;
        };
        // FATAL ends a login or a connection (a wrong password, a malformed message).
        if info.severity != "ERROR" {
            return;
        }
        let sql = self.statement.lock().clone();
        self.statement_failed(client, info, &sql);
    }
}

/// Parameters reported at start-up as PostgreSQL reports them.
fn startup_parameters() -> [(&'static str, String); 3] {
    [
        (
            "server_version",
            crate::settings::PG_SERVER_VERSION.to_string(),
        ),
        ("DateStyle", "ISO, MDY".to_string()),
        ("TimeZone", "UTC".to_string()),
    ]
}

/// Builds the handlers for each new connection.
struct PgHandlers {
    conn: Arc<PgConnection>,
    startup: Arc<auth::Startup>,
    cancels: Arc<cancel::CancelRegistry>,
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.conn.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.conn.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.conn.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancels.clone()
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        self.conn.clone()
    }
}

/// The Postgres front end, with its authentication and TLS set up from configuration.
pub struct PgFrontEnd {
    users: Arc<auth::Users>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    connections_max: usize,
    startup_packet_timeout: std::time::Duration,
    authentication_timeout: std::time::Duration,
    metrics: PgMetrics,
}

impl PgFrontEnd {
    /// Checks the configuration and loads what it names (TLS files), before any listening.
    pub fn new(config: &PgConfig) -> Result<PgFrontEnd, String> {
        if config.connections_max == 0 {
            return Err("pg_connections_max must be at least 1".to_string());
        }
        if config.startup_packet_timeout.is_zero() {
            return Err("pg_startup_packet_timeout_ms must be at least 1".to_string());
        }
        if config.authentication_timeout < std::time::Duration::from_secs(1) {
            return Err("pg_authentication_timeout_ms must be at least 1000 (1 s)".to_string());
        }
        Ok(PgFrontEnd {
            users: Arc::new(auth::Users::new(config)?),
            tls: auth::tls_acceptor(config)?,
            connections_max: config.connections_max,
            startup_packet_timeout: config.startup_packet_timeout,
            authentication_timeout: config.authentication_timeout,
            metrics: PgMetrics::default(),
        })
    }

    /// Counts connections in `metrics` (registered with the node's registry) instead of in
    /// metrics of its own that nobody scrapes.
    pub fn with_metrics(mut self, metrics: PgMetrics) -> PgFrontEnd {
        self.metrics = metrics;
        self
    }

    /// Accepts Postgres connections until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        engine: QueryEngine,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        serve(self, listener, engine, shutdown).await
    }
}

/// Connections that have not logged in yet (silent, mid-TLS or mid-authentication) allowed per
/// connection slot. Each costs a socket and a small task until it logs in or its timeout
/// closes it. More room lets more real clients log in while a flood of idle sockets is open;
/// less bounds the file descriptors and memory such a flood can take. Beyond it, new
/// connections are closed as soon as they are accepted.
const PENDING_PER_SLOT: usize = 4;

/// The accept loop logs each kind of trouble at most once per this interval.
const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// First pause after `accept` fails for want of resources (file descriptors, memory); it
/// doubles with each further failure up to `ACCEPT_BACKOFF_MAX`.
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts events and says when one may be logged: at most `burst` times per `LOG_INTERVAL`.
#[derive(Debug)]
pub(crate) struct LogLimit {
    /// Start of the interval now counted.
    since: Option<std::time::Instant>,
    logged: u32,
    burst: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Once per interval.
    pub(crate) fn new() -> LogLimit {
        LogLimit::with_burst(1)
    }

    /// Up to `burst` lines per interval.
    pub(crate) fn with_burst(burst: u32) -> LogLimit {
        LogLimit {
            since: None,
            logged: 0,
            burst: burst.max(1),
            suppressed: 0,
        }
    }

    /// Counts one event: `Some(events not logged since the last line)` when it may be logged.
    pub(crate) fn ready(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.since {
            Some(since) if now.duration_since(since) < LOG_INTERVAL => {
                if self.logged >= self.burst {
                    self.suppressed += 1;
                    return None;
                }
                self.logged += 1;
            }
            _ => {
                self.since = Some(now);
                self.logged = 1;
            }
        }
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// `sql` cut to `LOGGED_STATEMENT_CHARS` characters (on a character boundary), with `…` where
/// it was cut.
fn logged_statement(sql: &str) -> Cow<'_, str> {
    match sql.char_indices().nth(LOGGED_STATEMENT_CHARS) {
        Some((end, _)) => Cow::Owned(format!("{}…", &sql[..end])),
        None => Cow::Borrowed(sql),
    }
}

/// Whether a failed `accept` concerns only the one connection being accepted (it was reset or
/// aborted before it was taken, a firewall refused it, a network error was pending on it), so
/// the next accept may be tried at once. Every other error, above all running out of file
/// descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM), leaves the connection
/// queued and would fail again at once: the loop backs off.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::PermissionDenied
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::NetworkDown
    )
}

async fn serve(
    front: PgFrontEnd,
    listener: TcpListener,
    engine: QueryEngine,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use tokio::sync::Semaphore;
    let PgFrontEnd {
        users,
        tls,
        connections_max,
        startup_packet_timeout,
        authentication_timeout,
        metrics,
    } = front;
    let connections_max = connections_max.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(connections_max));
    let pending_max = connections_max
        .saturating_mul(PENDING_PER_SLOT)
        .min(Semaphore::MAX_PERMITS);
    let pending = Arc::new(Semaphore::new(pending_max));
    let cancels = Arc::new(cancel::CancelRegistry::default());
    let failures = FailedStatements {
        metrics: metrics.clone(),
        log: Arc::new(parking_lot::Mutex::new(LogLimit::with_burst(
            FAILED_STATEMENT_LINES,
        ))),
    };
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut resource_log = LogLimit::new();
    let mut error_log = LogLimit::new();
    let mut pending_log = LogLimit::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => r,
        };
        let (socket, peer) = match accepted {
            Ok(x) => {
                backoff = ACCEPT_BACKOFF_MIN;
                x
            }
            Err(e) if is_connection_error(&e) => {
                if let Some(suppressed) = error_log.ready() {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        "accepting a Postgres connection failed"
                    );
                }
                continue;
            }
            Err(e) => {
                // Out of file descriptors or memory, the failed connection stays queued and
                // accept would fail again at once: without a pause this loop would spin.
                let pause = backoff;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                if let Some(suppressed) = resource_log.ready() {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        retry_in_ms = pause.as_millis() as u64,
                        "cannot accept Postgres connections (out of file descriptors or \
                         memory?); retrying with backoff"
                    );
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        let accepted_at = tokio::time::Instant::now();
        let open = metrics.accepted();
        // A bounded number of connections may be logging in; a flood beyond it is shed at once.
        let Ok(pending_permit) = pending.clone().try_acquire_owned() else {
            metrics.refused(Refusal::LoginBacklog);
            if let Some(suppressed) = pending_log.ready() {
                tracing::warn!(
                    %peer,
                    pending_max,
                    suppressed,
                    "closing a new Postgres connection at once: {pending_max} connections are \
                     already waiting to log in"
                );
            }
            drop(socket);
            continue;
        };
        let admission = Arc::new(auth::Admission::new(
            slots.clone(),
            connections_max,
            pending_permit,
            metrics.clone(),
        ));
        let users = users.clone();
        let engine = engine.clone();
        let cancels = cancels.clone();
        let tls = tls.clone();
        let metrics = metrics.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            // Open until this task ends, whichever way it does.
            let _open = open;
            // `checked_add`: a timeout too large for the clock means no timeout.
            let auth_deadline = accepted_at.checked_add(authentication_timeout);
            let first_bytes_by = accepted_at
                .checked_add(startup_packet_timeout)
                .into_iter()
                .chain(auth_deadline)
                .min();
            // Nothing is set up for a connection until it sends something. `peek` waits for
            // a byte to be there (`readable` may wake spuriously) and leaves it for pgwire.
            let mut first = [0u8; 1];
            let arrived = match first_bytes_by {
                Some(t) => tokio::time::timeout_at(t, socket.peek(&mut first)).await,
                None => Ok(socket.peek(&mut first).await),
            };
            match arrived {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "postgres connection failed at once");
                    return;
                }
                Err(_) => {
                    metrics.refused(Refusal::LoginTimeout);
                    tracing::debug!(
                        %peer,
                        "closing a postgres connection that sent nothing within \
                         pg_startup_packet_timeout"
                    );
                    return;
                }
            }
            let _ = socket.set_nodelay(true);
            let session = Arc::new(QuerySession::new(&engine));
            let statement: CurrentStatement = Arc::new(parking_lot::Mutex::new(Arc::from("")));
            let conn = Arc::new(PgConnection {
                parser: Arc::new(PgQueryParser {
                    session: session.clone(),
                    admission: admission.clone(),
                    statement: statement.clone(),
                }),
                admission: admission.clone(),
                session,
                statement,
                failures,
                copy_in: tokio::sync::Mutex::new(None),
                cancel: cancel::CancelSignal::new(cancels.clone()),
                activity: Activity::new(engine.running().clone()),
            });
            let handlers = PgHandlers {
                startup: Arc::new(auth::Startup::new(&users, &conn, admission.clone())),
                conn,
                cancels,
            };
            // The authentication timeout: fires only if login has not completed by then.
            let login = admission;
            let timeout = async move {
                match auth_deadline {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending::<()>().await,
                }
                if login.is_logged_in() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                r = pgwire::tokio::process_socket(socket, tls, handlers) => {
                    if let Err(e) = r {
                        tracing::debug!(
                            %peer,
                            error = %e,
                            "postgres connection ended with an error"
                        );
                    }
                }
                () = timeout => {
                    metrics.refused(Refusal::LoginTimeout);
                    tracing::debug!(
                        %peer,
                        "closing a postgres connection that did not log in within \
                         pg_authentication_timeout"
                    );
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{LOGGED_STATEMENT_CHARS, LogLimit, logged_statement};

    #[test]
    fn logged_statements_are_cut_on_a_character_boundary() {
        assert_eq!(logged_statement("SELECT 1"), "SELECT 1");
        let exact = "x".repeat(LOGGED_STATEMENT_CHARS);
        assert_eq!(logged_statement(&exact), exact.as_str());
        // Two- and four-byte characters: cut after LOGGED_STATEMENT_CHARS of them, not bytes.
        for c in ["é", "𝄞"] {
            let long = c.repeat(LOGGED_STATEMENT_CHARS + 5);
            let cut = logged_statement(&long);
            assert_eq!(cut.chars().count(), LOGGED_STATEMENT_CHARS + 1, "{c}");
            assert!(cut.ends_with('…'));
            assert!(cut.starts_with(&c.repeat(LOGGED_STATEMENT_CHARS)));
        }
        let mixed = format!(
            "{}é{}",
            "a".repeat(LOGGED_STATEMENT_CHARS - 1),
            "b".repeat(10)
        );
        assert_eq!(
            logged_statement(&mixed),
            format!("{}é…", "a".repeat(LOGGED_STATEMENT_CHARS - 1))
        );
    }

    #[test]
    fn log_limit_allows_a_burst_per_interval_and_counts_the_rest() {
        let mut limit = LogLimit::with_burst(3);
        assert_eq!(limit.ready(), Some(0));
        assert_eq!(limit.ready(), Some(0));
        assert_eq!(limit.ready(), Some(0));
        assert_eq!(limit.ready(), None);
        assert_eq!(limit.ready(), None);
        assert_eq!(limit.suppressed, 2);
        let mut once = LogLimit::new();
        assert_eq!(once.ready(), Some(0));
        assert_eq!(once.ready(), None);
    }
}
