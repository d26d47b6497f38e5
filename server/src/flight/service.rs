//! The Flight SQL commands, as arrow-flight's [`FlightSqlService`] dispatches them.
//!
//! Queries are planned when a client asks for their `FlightInfo` (so a bad statement fails
//! there, with the result schema known up front) and run when it fetches the ticket, which
//! holds the SQL (see [`StatementTicket`]). Statements without rows (DDL, INSERT) run as soon
//! as they are asked for, whichever way they come: `CommandStatementUpdate`, or a query
//! command, as JDBC and ADBC send every statement; their ticket then answers the outcome.
//! Prepared statements are kept server-side ([`PreparedStatements`]).
//!
//! An answer has one endpoint, except a large scan of one table, which has one per time
//! slice so clients can fetch them in parallel (see [`endpoints`]; Grafana's data source
//! refuses more than one and gets one when it sends `x-eddy-endpoints: 1`).

use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, Command,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, DoPutUpdateResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, PutResult, SchemaAsIpc,
    Ticket,
};
use bytes::Bytes;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use eddy_query::{Prepared, QueryEngine};
use futures::StreamExt;
use prost::Message as _;
use tonic::{Request, Response, Status};

use super::endpoints;
use super::ingest::{Target, Uploads};
use super::metadata;
use super::prepared::{self, PreparedStatement, PreparedStatements};
use super::statements::{self, Caller, FlightStream};
use super::status::query_status;
use super::tickets::StatementTicket;

/// The Flight SQL service over a node's query engine and write path.
pub(super) struct FlightSql {
    engine: QueryEngine,
    uploads: Uploads,
    prepared: PreparedStatements,
}

impl FlightSql {
    /// The service; at most `prepared_statements_max` prepared statements are kept.
    pub(super) fn new(
        engine: QueryEngine,
        uploads: Uploads,
        prepared_statements_max: usize,
    ) -> FlightSql {
        FlightSql {
            engine,
            uploads,
            prepared: PreparedStatements::new(prepared_statements_max),
        }
    }

    /// The query engine.
    pub(super) fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// The result schema of a prepared statement.
    pub(super) fn prepared_schema(&self, handle: &[u8]) -> Result<SchemaRef, Status> {
        let statement = self.prepared.get(handle)?;
        Ok(statements::result_schema(&statement.prepared))
    }

    /// Writes an upload (a plain `DoPut` to a path, or `CommandStatementIngest`).
    pub(super) async fn upload(
        &self,
        target: &Target,
        data: PeekableFlightDataStream,
    ) -> Result<u64, Status> {
        self.uploads.ingest(target, data).await
    }

    /// The `FlightInfo` of a statement, planned: a query's ticket runs it when fetched; a
    /// statement without rows runs now and its ticket answers what it did.
    pub(super) async fn statement_info(
        &self,
        sql: &str,
        caller: &Caller,
        descriptor: FlightDescriptor,
        wanted_endpoints: usize,
    ) -> Result<FlightInfo, Status> {
        let prepared = statements::plan(&self.engine, sql).await?;
        let schema = statements::result_schema(&prepared);
        let ticket = |t: StatementTicket| {
            TicketStatementQuery {
                statement_handle: t.encode().into(),
            }
            .as_any()
            .encode_to_vec()
        };
        if !statements::returns_rows(&prepared) {
            let done = statements::run_now(&self.engine, caller, sql, &prepared, None).await?;
            return flight_info(&schema, descriptor, ticket(StatementTicket::Done(done)));
        }
        let slices = match &prepared {
            Prepared::Plan(plan, _) => endpoints::slices(&self.engine, plan, wanted_endpoints),
            _ => Vec::new(),
        };
        if slices.len() <= 1 {
            return flight_info(
                &schema,
                descriptor,
                ticket(StatementTicket::Query(sql.to_string())),
            );
        }
        let mut info = flight_info_without_endpoints(&schema, descriptor)?;
        for slice in slices {
            info = info.with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket(
                StatementTicket::Slice(sql.to_string(), slice),
            ))));
        }
        Ok(info)
    }

    /// A prepared statement's parameters for one run of a query: none, or the one row bound.
    fn query_params(statement: &PreparedStatement) -> Result<Option<ParamValues>, Status> {
        match statement.params.as_deref().map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one.clone())),
            Some(many) => Err(Status::invalid_argument(format!(
                "{} parameter rows are bound; a query runs with one (bind one row, or run an \
                 update once per row)",
                many.len()
            ))),
        }
    }
}

/// A `FlightInfo` with one endpoint holding `ticket`.
pub(super) fn flight_info(
    schema: &Schema,
    descriptor: FlightDescriptor,
    ticket: Vec<u8>,
) -> Result<FlightInfo, Status> {
    Ok(flight_info_without_endpoints(schema, descriptor)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket))))
}

/// A `FlightInfo` with its schema and descriptor, and no endpoint yet.
fn flight_info_without_endpoints(
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
        .with_descriptor(descriptor))
}

/// A schema as an IPC message (what prepared statement results carry).
fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let options = IpcWriteOptions::default();
    IpcMessage::try_from(SchemaAsIpc::new(schema, &options))
        .map(|m| m.0)
        .map_err(|e| Status::internal(format!("cannot encode a schema: {e}")))
}

/// One batch as a `DoGet` answer.
fn batch_stream(batch: RecordBatch) -> FlightStream {
    let schema = batch.schema();
    let encoded = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok::<_, FlightError>(batch)]))
        .map(|r| r.map_err(Status::from));
    Box::pin(encoded)
}

/// The `FlightInfo` of a metadata command: its answer's schema, and the command itself as the
/// ticket.
fn metadata_info(
    schema: &Schema,
    command: &impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(
        schema,
        request.into_inner(),
        command.as_any().encode_to_vec(),
    )
    .map(Response::new)
}

/// Refuses a transaction id: Eddy has no transactions.
fn no_transaction(transaction_id: Option<&Bytes>) -> Result<(), Status> {
    match transaction_id {
        Some(_) => Err(no_transactions()),
        None => Ok(()),
    }
}

fn no_transactions() -> Status {
    Status::unimplemented(
        "transactions are not supported: every statement and every ingested batch commits on \
         its own",
    )
}

/// The record batches a `DoPut` carries (parameter values), decoded.
async fn read_batches(data: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, Status> {
    use arrow_flight::decode::FlightRecordBatchStream;
    use futures::TryStreamExt;
    let data = data
        .try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
        .map_err(FlightError::from);
    let mut decoded = FlightRecordBatchStream::new_from_flight_data(data);
    let mut out = Vec::new();
    while let Some(batch) = decoded.next().await {
        match batch {
            Ok(b) => out.push(b),
            Err(FlightError::Tonic(status)) => return Err(*status),
            Err(e) => {
                return Err(Status::invalid_argument(format!(
                    "cannot read the parameter batches: {e}"
                )));
            }
        }
    }
    Ok(out)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        no_transaction(query.transaction_id.as_ref())?;
        let caller = Caller::of(&request);
        let wanted = endpoints::wanted(request.metadata())?;
        self.statement_info(&query.query, &caller, request.into_inner(), wanted)
            .await
            .map(Response::new)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = Caller::of(&request);
        match StatementTicket::decode(&ticket.statement_handle)? {
            StatementTicket::Query(sql) => {
                let prepared = statements::plan(&self.engine, &sql).await?;
                statements::stream(&self.engine, &caller, &sql, &prepared, None)
                    .await
                    .map(Response::new)
            }
            StatementTicket::Slice(sql, slice) => {
                let (plan, names) = match statements::plan(&self.engine, &sql).await? {
                    Prepared::Plan(plan, names) => (plan, names),
                    _ => {
                        return Err(Status::failed_precondition(
                            "the statement no longer answers rows; call GetFlightInfo again",
                        ));
                    }
                };
                let plan = endpoints::restrict(&self.engine, plan, slice)?;
                let prepared = Prepared::Plan(plan, names);
                statements::stream(&self.engine, &caller, &sql, &prepared, None)
                    .await
                    .map(Response::new)
            }
            StatementTicket::Done(inserted) => Ok(Response::new(statements::done_stream(inserted))),
        }
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = Caller::of(&request);
        let statement = self.prepared.get(&cmd.prepared_statement_handle)?;
        let schema = statements::result_schema(&statement.prepared);
        let ticket = if statements::returns_rows(&statement.prepared) {
            let params = Self::query_params(&statement)?;
            // Bad parameters fail here rather than when the rows are fetched.
            if let (Prepared::Plan(plan, _), Some(p)) = (statement.prepared.as_ref(), &params) {
                plan.clone()
                    .with_param_values(p.clone())
                    .map_err(|e| query_status(&e.into()))?;
            }
            cmd.as_any().encode_to_vec()
        } else {
            let rows = statement.params.as_deref().cloned().unwrap_or_default();
            let mut inserted: Option<u64> = None;
            let runs: Vec<Option<ParamValues>> = if rows.is_empty() {
                vec![None]
            } else {
                rows.into_iter().map(Some).collect()
            };
            for params in runs {
                let done = statements::run_now(
                    &self.engine,
                    &caller,
                    &statement.sql,
                    &statement.prepared,
                    params,
                )
                .await?;
                if let Some(n) = done {
                    inserted = Some(inserted.unwrap_or(0) + n);
                }
            }
            TicketStatementQuery {
                statement_handle: StatementTicket::Done(inserted).encode().into(),
            }
            .as_any()
            .encode_to_vec()
        };
        flight_info(&schema, request.into_inner(), ticket).map(Response::new)
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = Caller::of(&request);
        let statement = self.prepared.get(&cmd.prepared_statement_handle)?;
        let params = Self::query_params(&statement)?;
        statements::stream(
            &self.engine,
            &caller,
            &statement.sql,
            &statement.prepared,
            params,
        )
        .await
        .map(Response::new)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&metadata::catalogs_schema(), &query, request)
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::catalogs()?)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&schema, &query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::db_schemas(query)?)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&metadata::tables_schema(&query), &query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = metadata::tables(&self.engine, query).await?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&metadata::table_types_schema(), &query, request)
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::table_types()?)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = metadata::sql_info()?;
        metadata_info(&info.schema(), &query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let info = metadata::sql_info()?;
        let batch = query
            .into_builder(&info)
            .build()
            .map_err(|e| Status::internal(format!("cannot build GetSqlInfo: {e}")))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&metadata::primary_keys_schema(), &query, request)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = metadata::primary_keys(&self.engine, &query)?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&metadata::foreign_keys_schema(), &query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::foreign_keys()?)))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&metadata::foreign_keys_schema(), &query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::foreign_keys()?)))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&metadata::foreign_keys_schema(), &query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::foreign_keys()?)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let types = metadata::xdbc_type_info()?;
        metadata_info(&types.schema(), &query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let types = metadata::xdbc_type_info()?;
        let batch = query
            .into_builder(&types)
            .build()
            .map_err(|e| Status::internal(format!("cannot build GetXdbcTypeInfo: {e}")))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_fallback(
        &self,
        cmd: Command,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(format!(
            "GetFlightInfo: {} is not supported",
            cmd.type_url()
        )))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "DoGet: a ticket of type {} is not supported",
            message.type_url
        )))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        no_transaction(cmd.transaction_id.as_ref())?;
        let caller = Caller::of(&request);
        let prepared = statements::plan(&self.engine, &cmd.query).await?;
        statements::run_update(&self.engine, &caller, &cmd.query, &prepared, None).await
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let target = Target::of_command(&cmd)?;
        let rows = self.upload(&target, request.into_inner()).await?;
        Ok(i64::try_from(rows).unwrap_or(i64::MAX))
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = cmd.prepared_statement_handle;
        let statement = self.prepared.get(&handle)?;
        let batches = read_batches(request.into_inner()).await?;
        let rows = prepared::parameter_rows(&statement.prepared, &batches)?;
        self.prepared.bind(&handle, rows)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = Caller::of(&request);
        let statement = self.prepared.get(&cmd.prepared_statement_handle)?;
        let batches = read_batches(request.into_inner()).await?;
        let rows = if batches.iter().all(|b| b.num_rows() == 0) {
            statement.params.as_deref().cloned().unwrap_or_default()
        } else {
            prepared::parameter_rows(&statement.prepared, &batches)?
        };
        if rows.is_empty() {
            return statements::run_update(
                &self.engine,
                &caller,
                &statement.sql,
                &statement.prepared,
                None,
            )
            .await;
        }
        let mut total = 0i64;
        for params in rows {
            let n = statements::run_update(
                &self.engine,
                &caller,
                &statement.sql,
                &statement.prepared,
                Some(params),
            )
            .await?;
            total = if n < 0 || total < 0 {
                -1
            } else {
                total.saturating_add(n)
            };
        }
        Ok(total)
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        use arrow_flight::flight_descriptor::DescriptorType;
        let mut data = request.into_inner();
        let descriptor = match data.peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            _ => None,
        };
        let path = match descriptor {
            Some(d) if d.r#type == DescriptorType::Path as i32 => d.path,
            _ => {
                return Err(Status::unimplemented(format!(
                    "DoPut: {} is not supported; send a Flight SQL command, or a path naming \
                     the table to write",
                    if message.type_url.is_empty() {
                        "a command that is not a Flight SQL command"
                    } else {
                        message.type_url.as_str()
                    }
                )));
            }
        };
        let target = Target::of_path(&path)?;
        let rows = self.upload(&target, data).await?;
        let result = DoPutUpdateResult {
            record_count: i64::try_from(rows).unwrap_or(i64::MAX),
        };
        let answer = PutResult {
            app_metadata: result.encode_to_vec().into(),
        };
        let answer = futures::stream::iter([Ok::<_, Status>(answer)]);
        Ok(Response::new(Box::pin(answer)))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        no_transaction(query.transaction_id.as_ref())?;
        let prepared = statements::plan(&self.engine, &query.query).await?;
        let dataset = statements::result_schema(&prepared);
        let parameters = prepared::parameter_schema(&prepared)?;
        let result = ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::new(),
            dataset_schema: ipc_schema(&dataset)?,
            parameter_schema: ipc_schema(&parameters)?,
        };
        let handle = self.prepared.insert(&query.query, prepared);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::copy_from_slice(&handle),
            ..result
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.prepared.close(&query.prepared_statement_handle)
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(no_transactions())
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(no_transactions())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
