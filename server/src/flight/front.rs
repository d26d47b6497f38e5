//! The Flight service the server runs, in front of the Flight SQL commands: it checks
//! credentials on every call but the handshake (see [`super::auth`]), and routes what Flight
//! SQL does not cover to plain Flight (see [`super::plain`]): SQL text in tickets and command
//! descriptors, path descriptors, `ListFlights` and `GetSchema`. Everything else goes to
//! arrow-flight's Flight SQL dispatcher over [`FlightSql`].

use std::time::Duration;

use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::Command;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest,
    HandshakeResponse, PollInfo, SchemaAsIpc, SchemaResult, Ticket,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use super::auth::Auth;
use super::plain;
use super::service::FlightSql;
use super::statements::{self, Caller};
use super::tickets::{Incoming, classify};

/// How long a handshake without an `authorization` header may take to send the first
/// message that carries its credentials.
const HANDSHAKE_PAYLOAD_WAIT: Duration = Duration::from_secs(10);

/// The Flight service: authentication, plain Flight, then Flight SQL.
pub(super) struct FlightFront {
    auth: Auth,
    sql: FlightSql,
}

impl FlightFront {
    /// The service checking `auth` in front of `sql`.
    pub(super) fn new(auth: Auth, sql: FlightSql) -> FlightFront {
        FlightFront { auth, sql }
    }

    /// Checks a call's credentials and records its user in the request, for `eddy_queries`.
    fn authorize<T>(&self, request: &mut Request<T>) -> Result<(), Status> {
        let user = self.auth.check(request.metadata())?;
        request.extensions_mut().insert(user);
        Ok(())
    }
}

/// Whether a descriptor names a path (a table) rather than a command.
fn is_path(descriptor: &FlightDescriptor) -> bool {
    descriptor.r#type == DescriptorType::Path as i32
}

/// A schema as `GetSchema` answers it.
fn schema_result(schema: &SchemaRef) -> Result<Response<SchemaResult>, Status> {
    let options = IpcWriteOptions::default();
    SchemaResult::try_from(SchemaAsIpc::new(schema, &options))
        .map(Response::new)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))
}

#[tonic::async_trait]
impl FlightService for FlightFront {
    type HandshakeStream = <FlightSql as FlightService>::HandshakeStream;
    type ListFlightsStream = <FlightSql as FlightService>::ListFlightsStream;
    type DoGetStream = <FlightSql as FlightService>::DoGetStream;
    type DoPutStream = <FlightSql as FlightService>::DoPutStream;
    type DoExchangeStream = <FlightSql as FlightService>::DoExchangeStream;
    type DoActionStream = <FlightSql as FlightService>::DoActionStream;
    type ListActionsStream = <FlightSql as FlightService>::ListActionsStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let (metadata, _, mut stream) = request.into_parts();
        // Credentials come in the header (arrow-rs, pyarrow, ADBC, Grafana); older clients
        // send a BasicAuth message as the first payload instead.
        let payload = if self.auth.wants_payload(&metadata) {
            match tokio::time::timeout(HANDSHAKE_PAYLOAD_WAIT, stream.message()).await {
                Ok(Ok(Some(first))) => Some(first.payload),
                _ => None,
            }
        } else {
            None
        };
        let (_, token) = self.auth.handshake(&metadata, payload.as_deref())?;
        let header: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("cannot encode the token as a header"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let replies: Self::HandshakeStream =
            Box::pin(futures::stream::iter([Ok::<_, Status>(reply)]));
        let mut response = Response::new(replies);
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn list_flights(
        &self,
        mut request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.authorize(&mut request)?;
        let infos = plain::list_flights(self.sql.engine()).await;
        Ok(Response::new(Box::pin(futures::stream::iter(infos))))
    }

    async fn get_flight_info(
        &self,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&mut request)?;
        if is_path(request.get_ref()) {
            return plain::path_info(self.sql.engine(), request.into_inner())
                .await
                .map(Response::new);
        }
        match classify(&request.get_ref().cmd, "the descriptor's command")? {
            Incoming::FlightSql(_) => FlightService::get_flight_info(&self.sql, request).await,
            Incoming::Sql(sql) => {
                let caller = Caller::of(&request);
                let wanted = super::endpoints::wanted(request.metadata())?;
                self.sql
                    .statement_info(&sql, &caller, request.into_inner(), wanted)
                    .await
                    .map(Response::new)
            }
        }
    }

    async fn poll_flight_info(
        &self,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.authorize(&mut request)?;
        Err(Status::unimplemented(
            "PollFlightInfo is not supported; use GetFlightInfo",
        ))
    }

    async fn get_schema(
        &self,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.authorize(&mut request)?;
        let engine = self.sql.engine();
        let descriptor = request.get_ref().clone();
        if is_path(&descriptor) {
            return schema_result(&plain::path_schema(engine, &descriptor).await?);
        }
        // The schema of a statement without running it (GetFlightInfo runs DDL).
        let schema = match classify(&descriptor.cmd, "the descriptor's command")? {
            Incoming::Sql(sql) => statements::result_schema(&statements::plan(engine, &sql).await?),
            Incoming::FlightSql(Command::CommandStatementQuery(q)) => {
                statements::result_schema(&statements::plan(engine, &q.query).await?)
            }
            Incoming::FlightSql(Command::CommandPreparedStatementQuery(c)) => {
                self.sql.prepared_schema(&c.prepared_statement_handle)?
            }
            Incoming::FlightSql(_) => {
                let info = FlightService::get_flight_info(&self.sql, request)
                    .await?
                    .into_inner();
                return Ok(Response::new(SchemaResult {
                    schema: info.schema,
                }));
            }
        };
        schema_result(&schema)
    }

    async fn do_get(
        &self,
        mut request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.authorize(&mut request)?;
        match classify(&request.get_ref().ticket, "the ticket")? {
            Incoming::FlightSql(_) => FlightService::do_get(&self.sql, request).await,
            Incoming::Sql(sql) => {
                let caller = Caller::of(&request);
                let engine = self.sql.engine();
                let prepared = statements::plan(engine, &sql).await?;
                statements::stream(engine, &caller, &sql, &prepared, None)
                    .await
                    .map(Response::new)
            }
        }
    }

    async fn do_put(
        &self,
        mut request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.authorize(&mut request)?;
        FlightService::do_put(&self.sql, request).await
    }

    async fn do_exchange(
        &self,
        mut request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.authorize(&mut request)?;
        Err(Status::unimplemented("DoExchange is not supported"))
    }

    async fn do_action(
        &self,
        mut request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.authorize(&mut request)?;
        FlightService::do_action(&self.sql, request).await
    }

    async fn list_actions(
        &self,
        mut request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.authorize(&mut request)?;
        FlightService::list_actions(&self.sql, request).await
    }
}
