//! The PostgreSQL wire protocol front end (pgwire): simple and extended query protocols over
//! the query engine, results encoded from Arrow in text or binary format.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_query::{Output, Prepared, QueryEngine, QueryError, QuerySession};
use futures::{Sink, StreamExt, stream};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
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
}

/// The handlers of one client connection, holding its query session.
pub struct PgConnection {
    session: Arc<QuerySession>,
    parser: Arc<PgQueryParser>,
}

/// Plans SQL of `Parse` messages in the connection's session.
pub struct PgQueryParser {
    session: Arc<QuerySession>,
}

fn user_error(e: QueryError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        e.sqlstate.to_owned(),
        e.message,
    )))
}

fn output_to_response(output: Output, format: &Format) -> PgWireResult<Response> {
    match output {
        Output::Command(tag) => Ok(Response::Execution(command_tag(&tag))),
        Output::Rows { schema, stream } => {
            let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, None)?);
            let f = fields.clone();
            let rows = stream
                .map(move |rb: datafusion::error::Result<RecordBatch>| {
                    let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> =
                        match rb {
                            Ok(rb) => encode_recordbatch(f.clone(), rb),
                            Err(e) => Box::new(std::iter::once(Err(user_error(e.into())))),
                        };
                    stream::iter(rows)
                })
                .flatten();
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
    }
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
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmts = eddy_query::parse(query).map_err(user_error)?;
        let mut responses = Vec::with_capacity(stmts.len());
        for stmt in stmts {
            let result = async {
                let p = self.session.prepare(stmt).await?;
                let tag = match &p {
                    Prepared::Accept(t) => *t,
                    _ => "",
                };
                let out = self.session.execute(&p, None).await?;
                Ok::<_, QueryError>((tag, out))
            }
            .await;
            match result {
                Ok((tag, out)) => {
                    let r = output_to_response(out, &Format::UnifiedText)?;
                    responses.push(transaction_response(tag, r));
                }
                Err(e) => {
                    // Like PostgreSQL: report the error and skip the remaining statements.
                    responses.push(Response::Error(Box::new(ErrorInfo::new(
                        "ERROR".to_owned(),
                        e.sqlstate.to_owned(),
                        e.message,
                    ))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for PgQueryParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = eddy_query::parse(sql).map_err(user_error)?;
        let stmt: eddy_query::Statement = match stmts.len() {
            0 => return Ok(None),
            1 => stmts.remove(0),
            _ => {
                return Err(user_error(QueryError::new(
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                )));
            }
        };
        let prepared = self.session.prepare(stmt).await.map_err(user_error)?;
        let param_types = match &prepared {
            Prepared::Plan(plan) => {
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
        }))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .param_types
            .iter()
            .map(|t| match t {
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
            Prepared::Plan(plan) if returns_rows(plan) => {
                arrow_schema_to_pg_fields(plan.schema().as_arrow(), &format, None)
            }
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

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &portal.statement.statement;
        let params = if portal.parameter_len() > 0 {
            let types: Vec<Option<&DataType>> =
                stmt.param_types.iter().map(|t| t.as_ref()).collect();
            Some(deserialize_parameters(portal, &types)?)
        } else {
            None
        };
        let tag = match &stmt.prepared {
            Prepared::Accept(t) => *t,
            _ => "",
        };
        let out = self
            .session
            .execute(&stmt.prepared, params)
            .await
            .map_err(user_error)?;
        let r = output_to_response(out, &portal.result_column_format)?;
        Ok(transaction_response(tag, r))
    }
}

impl NoopStartupHandler for PgConnection {}

/// Builds the handlers for each new connection.
struct PgHandlers {
    conn: Arc<PgConnection>,
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.conn.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.conn.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.conn.clone()
    }
}

/// Accepts Postgres connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: QueryEngine,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let session = Arc::new(engine.session());
        let conn = Arc::new(PgConnection {
            parser: Arc::new(PgQueryParser {
                session: session.clone(),
            }),
            session,
        });
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, PgHandlers { conn }).await {
                tracing::debug!(%peer, error = %e, "postgres connection ended with an error");
            }
        });
    }
}
