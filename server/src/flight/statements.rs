//! Running one statement for a Flight call, as the other front ends run theirs: parsed and
//! planned on the query threads, listed in `eddy_queries` (protocol `flight`, with an id
//! `pg_cancel_backend` stops) until its last row is sent, and answered as a stream of
//! `FlightData` encoded batch by batch as the client reads. A client that goes away drops
//! the stream, which drops the query's stream and stops the query.
//!
//! The first batch is computed before the call is answered, so an error up to then is the
//! call's status; after that an error ends the stream with its status.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use eddy_query::running::{Protocol, QueryInfo, RunningQuery};
use eddy_query::{Completion, Output, Prepared, QueryEngine, QueryError, Statement};
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use crate::cancel::unless_cancelled;
use tonic::{Request, Status};

use super::auth::User;
use super::status::query_status;

/// The stream a `DoGet` answers.
pub(super) type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// Who runs a statement, for `eddy_queries`.
#[derive(Debug, Clone, Default)]
pub(super) struct Caller {
    /// The user the call authenticated as.
    pub user: String,
    /// The client's address.
    pub addr: Option<String>,
}

impl Caller {
    /// The caller of a request: the user the auth check put in its extensions, its address.
    pub(super) fn of<T>(request: &Request<T>) -> Caller {
        Caller {
            user: request
                .extensions()
                .get::<User>()
                .map(|u| u.0.clone())
                .unwrap_or_default(),
            addr: request.remote_addr().map(|a| a.to_string()),
        }
    }
}

/// Parses `sql`, which must hold exactly one statement, on the query threads.
pub(super) async fn parse_one(engine: &QueryEngine, sql: &str) -> Result<Statement, Status> {
    let text = sql.to_string();
    let parsed = engine
        .runtime()
        .compute(move || eddy_query::parse(&text))
        .await
        .map_err(|e| query_status(&e))?;
    match <[Statement; 1]>::try_from(parsed) {
        Ok([stmt]) => Ok(stmt),
        Err(stmts) if stmts.is_empty() => {
            Err(Status::invalid_argument("the SQL text holds no statement"))
        }
        Err(stmts) => Err(Status::invalid_argument(format!(
            "the SQL text holds {} statements; Flight SQL runs one statement per command",
            stmts.len()
        ))),
    }
}

/// Parses and plans the one statement of `sql`.
pub(super) async fn plan(engine: &QueryEngine, sql: &str) -> Result<Prepared, Status> {
    let stmt = parse_one(engine, sql).await?;
    engine
        .session()
        .prepare(stmt)
        .await
        .map_err(|e| query_status(&e))
}

/// Whether a planned statement answers rows (a query), rather than doing something (DDL,
/// INSERT, SET), which Flight runs as soon as it is asked for.
pub(super) fn returns_rows(prepared: &Prepared) -> bool {
    match prepared {
        Prepared::Plan(plan, _) => !matches!(
            plan,
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)
        ),
        _ => false,
    }
}

/// The columns a planned statement answers, with the SQL dialect's names: a query's rows, an
/// INSERT's `count`, nothing for the rest.
pub(super) fn result_schema(prepared: &Prepared) -> SchemaRef {
    match prepared {
        Prepared::Plan(plan, names) if returns_rows(prepared) => {
            names.apply(Arc::new(plan.schema().as_arrow().clone()))
        }
        Prepared::Plan(LogicalPlan::Dml(_), _) => count_schema(),
        _ => Arc::new(Schema::empty()),
    }
}

/// The one column an INSERT answers.
fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// The rows an INSERT reports, or `None` for a statement that reports none.
pub(super) fn inserted(completion: Completion) -> Option<u64> {
    match completion {
        Completion::Inserted(n) => Some(n),
        _ => None,
    }
}

/// A started statement.
pub(super) enum Started {
    /// Its rows, not yet read.
    Rows(Rows),
    /// What it did.
    Done(Completion),
}

/// Runs a planned statement (`sql` is its text, for `eddy_queries`) with parameter values.
pub(super) async fn start(
    engine: &QueryEngine,
    caller: &Caller,
    sql: &str,
    prepared: &Prepared,
    params: Option<ParamValues>,
) -> Result<Started, Status> {
    let (cancel_handle, mut cancel) = crate::cancel::cancel_pair();
    let running = engine.running();
    let info = QueryInfo {
        pid: running.next_http_pid(),
        protocol: Protocol::Flight,
        user: caller.user.clone(),
        client_addr: caller.addr.clone(),
        query: sql.to_string(),
    };
    let mut running = running.start(info, cancel_handle);
    // INSERTs run here are counted as Flight's writes.
    let session = engine.session_with(|state| {
        state
            .config_mut()
            .set_extension(Arc::new(eddy_ingest::FrontEnd::Flight));
    });
    let output = unless_cancelled(&mut cancel, session.execute(prepared, params)).await;
    match output {
        Err(e) => {
            running.fail();
            Err(query_status(&e))
        }
        Ok(Output::Done(completion)) => Ok(Started::Done(completion)),
        Ok(Output::Rows { stream, .. }) => Ok(Started::Rows(Rows {
            stream,
            cancel,
            running,
        })),
    }
}

/// Runs a statement to its end without reading rows: the rows an INSERT wrote, 0 for a
/// statement that reports none, -1 for a query (whose rows are not read).
pub(super) async fn run_update(
    engine: &QueryEngine,
    caller: &Caller,
    sql: &str,
    prepared: &Prepared,
    params: Option<ParamValues>,
) -> Result<i64, Status> {
    match start(engine, caller, sql, prepared, params).await? {
        Started::Done(c) => Ok(inserted(c).map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))),
        Started::Rows(_) if returns_rows(prepared) => Ok(-1),
        // A statement answered with an empty stream (SET): it took effect when it ran.
        Started::Rows(mut rows) => {
            while rows.next().await.map_err(|e| query_status(&e))?.is_some() {}
            Ok(0)
        }
    }
}

/// Runs a statement that answers no rows (DDL, INSERT) now, and returns what a ticket for
/// its outcome holds: the rows an INSERT wrote, or `None`.
pub(super) async fn run_now(
    engine: &QueryEngine,
    caller: &Caller,
    sql: &str,
    prepared: &Prepared,
    params: Option<ParamValues>,
) -> Result<Option<u64>, Status> {
    match start(engine, caller, sql, prepared, params).await? {
        Started::Done(c) => Ok(inserted(c)),
        Started::Rows(mut rows) => {
            while rows.next().await.map_err(|e| query_status(&e))?.is_some() {}
            Ok(None)
        }
    }
}

/// Starts a statement and answers its rows as Flight data; a statement without rows answers
/// what [`done_stream`] does.
pub(super) async fn stream(
    engine: &QueryEngine,
    caller: &Caller,
    sql: &str,
    prepared: &Prepared,
    params: Option<ParamValues>,
) -> Result<FlightStream, Status> {
    match start(engine, caller, sql, prepared, params).await? {
        Started::Rows(rows) => encode(rows, result_schema(prepared)).await,
        Started::Done(c) => Ok(done_stream(inserted(c))),
    }
}

/// The answer of a statement that already ran: one row with the rows an INSERT wrote, or a
/// schema without rows.
pub(super) fn done_stream(inserted: Option<u64>) -> FlightStream {
    let (schema, batches) = match inserted {
        Some(n) => {
            let schema = count_schema();
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(vec![n]))])
                    .map_err(FlightError::from);
            (schema, vec![batch])
        }
        None => (Arc::new(Schema::empty()), Vec::new()),
    };
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches))
        .map(|r| r.map_err(Status::from));
    Box::pin(encoded)
}

/// Pulls the first batch (an error until then is the call's status), then answers the rows
/// as Flight data, each batch encoded as the client reads.
pub(super) async fn encode(mut rows: Rows, planned: SchemaRef) -> Result<FlightStream, Status> {
    let first = match rows.next().await {
        Ok(first) => first,
        Err(e) => {
            rows.running.fail();
            return Err(query_status(&e));
        }
    };
    // The stream says the schema `FlightInfo` announced (ADBC checks that they are equal),
    // unless the batches' own types differ from the plan's (a decimal's precision may be
    // wider): the schema message must describe the data that follows.
    let schema = match &first {
        Some(b) if !same_types(b.schema_ref(), &planned) => b.schema(),
        _ => planned,
    };
    let state = (first, Some(rows));
    let announced = schema.clone();
    let batches = futures::stream::unfold(state, move |(pending, rows)| {
        let schema = announced.clone();
        async move {
            if let Some(batch) = pending {
                return Some((conform(batch, &schema), (None, rows)));
            }
            let mut rows = rows?;
            match rows.next().await {
                Ok(Some(batch)) => Some((conform(batch, &schema), (None, Some(rows)))),
                // The rows, and with them the statement's entry, are dropped here.
                Ok(None) => None,
                Err(e) => {
                    rows.running.fail();
                    tracing::warn!(
                        kind = ?e.kind,
                        error = %e.message,
                        "flight: the result failed after its first batch; the stream ends in \
                         error"
                    );
                    let status = query_status(&e);
                    Some((Err(FlightError::Tonic(Box::new(status))), (None, None)))
                }
            }
        }
    });
    // The encoder splits a batch by the size of the buffers its columns point into, which
    // for a slice of a larger batch (most of what a scan yields) is the whole parent: a
    // 2 MiB cap then cuts results into messages of a few dozen rows. Batches are cut here by
    // the bytes they hold instead, and the encoder is left to encode.
    let batches = batches.flat_map(|batch| {
        futures::stream::iter(match batch.and_then(messages) {
            Ok(pieces) => pieces.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    });
    let encoded = FlightDataEncoderBuilder::new()
        .with_max_flight_data_size(usize::MAX)
        .with_schema(schema)
        .build(batches)
        .map(|r| r.map_err(Status::from));
    Ok(Box::pin(encoded))
}

/// About the most bytes of column data one `FlightData` message carries: well under gRPC's
/// usual 4 MiB receive limit (Go and Java clients keep it), large enough that per-message
/// costs vanish.
const MESSAGE_BYTES_TARGET: usize = 2 << 20;

/// `batch` with dictionary columns as their values (what Flight sends; see
/// `DictionaryHandling::Hydrate`), cut into slices of about [`MESSAGE_BYTES_TARGET`] bytes
/// each, measured by the bytes the slices hold rather than the buffers they point into.
fn messages(batch: RecordBatch) -> Result<Vec<RecordBatch>, FlightError> {
    let batch = hydrate(batch)?;
    let bytes: usize = batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_buffer_memory_size())
        })
        .sum();
    let rows = batch.num_rows();
    let pieces = bytes.div_ceil(MESSAGE_BYTES_TARGET).max(1);
    if pieces == 1 || rows <= 1 {
        return Ok(vec![batch]);
    }
    let per = rows.div_ceil(pieces);
    Ok((0..rows)
        .step_by(per)
        .map(|offset| batch.slice(offset, per.min(rows - offset)))
        .collect())
}

/// `batch` with each dictionary column cast to its value type.
fn hydrate(batch: RecordBatch) -> Result<RecordBatch, FlightError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(..)))
    {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Dictionary(_, value) => {
                columns.push(datafusion::arrow::compute::cast(column, value)?);
                fields.push(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(value.as_ref().clone()),
                );
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        batch.schema().metadata().clone(),
    ));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Whether two schemas have the same columns of the same types (names and nullability
/// aside).
fn same_types(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.data_type() == y.data_type())
}

/// `batch` under the stream's schema: relabelled, or converted where a type differs.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, FlightError> {
    if batch.schema_ref() == schema {
        return Ok(batch);
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast_with_options(c, f.data_type(), &options)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A statement's rows on their way out, with what ends them: the client going away (dropping
/// this), `pg_cancel_backend` (`cancel`), or their end. `running` is the statement's entry in
/// `eddy_queries`, which goes when this is dropped.
pub(super) struct Rows {
    stream: SendableRecordBatchStream,
    cancel: watch::Receiver<bool>,
    running: RunningQuery,
}

impl Rows {
    /// The next batch; `None` at the end.
    pub(super) async fn next(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        let stream = &mut self.stream;
        unless_cancelled(&mut self.cancel, async move {
            stream.next().await.transpose().map_err(QueryError::from)
        })
        .await
    }
}
