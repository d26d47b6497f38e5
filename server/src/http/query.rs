//! `/api/v3/query_sql`, InfluxDB 3's SQL endpoint: one statement, given as the `q` parameter of
//! a GET or in a POST's JSON body, answered in the format the request asks for (see
//! [`encode`](super::encode)).
//!
//! The statement runs as the Postgres front end runs its statements: parsed and planned on the
//! query threads, listed in `eddy_queries` (with an HTTP id, so `pg_cancel_backend` stops it)
//! until its last row is sent. Rows stream: the response body is encoded batch by batch as the
//! client reads it, so memory stays bounded by a batch (a Parquet row group), and a client that
//! goes away drops the body, which drops the query's stream and stops the query.
//!
//! The status is sent once the encoder has its first bytes (the first batch, the first Parquet
//! row group, the whole pretty table), so an error up to then is a JSON error with its own
//! status. An error after that cannot change the status any more: the body is cut off (the
//! chunked encoding is not terminated), which clients report as an incomplete response, and the
//! error is logged.

mod params;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use eddy_query::catalog::DATABASE;
use eddy_query::running::{Protocol, QueryInfo, RunningQuery};
use eddy_query::{Completion, ErrorKind, Output, QueryError, Statement};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::cancel::unless_cancelled;

use self::params::JsonParams;
use super::AppState;
use super::encode::{self, Encoder, Format};

/// Largest POST body of the query API (the JSON holding the statement and its parameters);
/// `request_bytes_max` when that is smaller.
pub const QUERY_BODY_BYTES_MAX: usize = 1 << 20;

/// The client's address of a connection, recorded when it is accepted, for `eddy_queries`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientAddr(SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, super::listener::Limited>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, super::listener::Limited>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// What a request asks, however it was sent.
#[derive(Debug)]
struct Request {
    db: Option<String>,
    q: Option<String>,
    format: Option<String>,
    params: Option<Value>,
}

/// `GET /api/v3/query_sql?db=&q=&format=&params=` (`params` is JSON text).
pub(super) async fn get(
    State(st): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let request = match from_parameters(query) {
        Ok(r) => r,
        Err(message) => return invalid(message),
    };
    run(&st, request, &headers, &extensions).await
}

/// `POST /api/v3/query_sql` with `{"db": ..., "q": ..., "format": ..., "params": ...}`; a
/// field the body leaves out is taken from the URL's parameters.
pub(super) async fn post(
    State(st): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Response {
    let body = match read_body(&st, body).await {
        Ok(body) => body,
        Err(refused) => return refused.response(),
    };
    let mut fields = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => {
            return invalid("the request body must be a JSON object such as {\"q\": \"SELECT 1\"}");
        }
        Err(e) => return invalid(format!("the request body is not JSON: {e}")),
    };
    drop(body);
    let mut request = match from_parameters(query) {
        Ok(r) => r,
        Err(message) => return invalid(message),
    };
    for (name, slot) in [
        ("db", &mut request.db),
        ("q", &mut request.q),
        ("format", &mut request.format),
    ] {
        match fields.remove(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => *slot = Some(s),
            Some(other) => return invalid(format!("\"{name}\" must be a string, got {other}")),
        }
    }
    if let Some(params) = fields.remove("params") {
        request.params = Some(params);
    }
    run(&st, request, &headers, &extensions).await
}

/// The request of a URL's query parameters; the error says which is malformed.
fn from_parameters(mut query: HashMap<String, String>) -> Result<Request, String> {
    let params = match query.remove("params").filter(|p| !p.trim().is_empty()) {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(v) => Some(v),
            Err(e) => return Err(format!("the params parameter is not JSON: {e}")),
        },
    };
    Ok(Request {
        db: query.remove("db"),
        q: query.remove("q"),
        format: query.remove("format"),
        params,
    })
}

/// Why a POST body was not read.
#[derive(Debug)]
enum Refused {
    /// Over the size limit, which it names.
    TooLarge(usize),
    /// The in-flight budget, whose size it names, is spent.
    Busy(usize),
    /// The connection failed while the body was read.
    Unreadable(String),
}

impl Refused {
    fn response(self) -> Response {
        match self {
            Refused::TooLarge(max) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body exceeds the limit of {max} bytes"),
            ),
            Refused::Busy(budget) => {
                let message = format!(
                    "the server is busy: request bodies in flight already hold \
                     http_inflight_bytes_max ({budget} bytes); retry after 1 second"
                );
                let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                response
            }
            Refused::Unreadable(e) => invalid(format!("cannot read the request body: {e}")),
        }
    }
}

/// The POST body, at most [`QUERY_BODY_BYTES_MAX`] bytes, counted in the in-flight budget
/// while it is read.
async fn read_body(st: &AppState, mut body: Body) -> Result<Vec<u8>, Refused> {
    let max = st.request_bytes_max.min(QUERY_BODY_BYTES_MAX);
    let declared = body.size_hint().exact();
    let window = match declared.map(usize::try_from) {
        None => max,
        Some(Ok(n)) if n <= max => n,
        Some(_) => return Err(Refused::TooLarge(max)),
    };
    let Some(_window) = st.budget.reserve(window) else {
        return Err(Refused::Busy(st.budget.max()));
    };
    let mut out = Vec::with_capacity(window.min(64 << 10));
    while let Some(data) = super::next_data(&mut body).await {
        let data = data.map_err(|e| Refused::Unreadable(e.to_string()))?;
        if out.len() + data.len() > max {
            return Err(Refused::TooLarge(max));
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// Checks the request, runs its statement and answers its outcome.
async fn run(
    st: &AppState,
    request: Request,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Response {
    let format = match Format::of_request(request.format.as_deref(), headers) {
        Ok(f) => f,
        Err(message) => return invalid(message),
    };
    if let Some(db) = request.db.as_deref().filter(|db| !db.is_empty())
        && db != DATABASE
    {
        return error(
            StatusCode::NOT_FOUND,
            "database_not_found",
            format!("database not found: \"{db}\" (Eddy has one database, \"{DATABASE}\")"),
        );
    }
    let Some(sql) = request.q.filter(|q| !q.trim().is_empty()) else {
        return invalid("missing query parameter \"q\": the SQL statement to run");
    };
    let params = match request.params.map(JsonParams::of).transpose() {
        Ok(p) => p.flatten(),
        Err(message) => return invalid(message),
    };

    let engine = st.query.clone();
    // Parsed on the query threads, as every front end parses: a deep statement is walked there.
    let text = sql.clone();
    let stmt = match engine
        .runtime()
        .compute(move || eddy_query::parse(&text))
        .await
        .map(<[Statement; 1]>::try_from)
    {
        Err(e) => return query_error(&e),
        Ok(Ok([stmt])) => stmt,
        Ok(Err(stmts)) if stmts.is_empty() => return invalid("the query holds no statement"),
        Ok(Err(stmts)) => {
            return invalid(format!(
                "the query holds {} statements; the query API runs one statement per request",
                stmts.len()
            ));
        }
    };

    let (cancel_handle, mut cancel) = crate::cancel::cancel_pair();
    let running = engine.running();
    let info = QueryInfo {
        pid: running.next_http_pid(),
        protocol: Protocol::Http,
        user: user_name(headers),
        client_addr: extensions
            .get::<ConnectInfo<ClientAddr>>()
            .map(|ConnectInfo(ClientAddr(addr))| addr.to_string()),
        query: sql,
    };
    let mut running = running.start(info, cancel_handle);
    // INSERTs run here are counted as the HTTP front end's writes.
    let session = engine.session_with(|state| {
        state
            .config_mut()
            .set_extension(std::sync::Arc::new(eddy_ingest::FrontEnd::Http));
    });
    let output = unless_cancelled(&mut cancel, async move {
        let prepared = session.prepare(stmt).await?;
        let values = match params {
            Some(p) => Some(p.bind(&prepared)?),
            None => None,
        };
        session.execute(&prepared, values).await
    })
    .await;
    match output {
        Err(e) => {
            running.fail();
            query_error(&e)
        }
        Ok(Output::Done(completion)) => done(completion),
        Ok(Output::Rows { schema, stream }) => {
            let rows = Rows {
                stream,
                cancel,
                running,
            };
            respond(format, &schema, rows).await
        }
    }
}

/// A statement's rows on their way out, with what ends them: the client going away (dropping
/// this), `pg_cancel_backend` (`cancel`), or their end. `running` is the statement's entry in
/// `eddy_queries`, which goes when this is dropped.
struct Rows {
    stream: SendableRecordBatchStream,
    cancel: watch::Receiver<bool>,
    running: RunningQuery,
}

impl Rows {
    /// The next batch; `None` at the end.
    async fn next(&mut self) -> Result<Option<RecordBatch>, QueryError> {
        let stream = &mut self.stream;
        unless_cancelled(&mut self.cancel, async move {
            stream.next().await.transpose().map_err(QueryError::from)
        })
        .await
    }

    /// Records a failure after the status was sent; the body then ends in error.
    fn failed_midway(&mut self, e: &QueryError) -> std::io::Error {
        self.running.fail();
        tracing::warn!(
            kind = ?e.kind,
            error = %e.message,
            "query_sql: the result failed after its first bytes were sent; the response is cut off"
        );
        std::io::Error::other(e.message.clone())
    }
}

/// Pulls batches until the encoder has bytes to send, then answers 200 with them and streams
/// the rest; an error until then is answered with its status.
async fn respond(format: Format, schema: &SchemaRef, mut rows: Rows) -> Response {
    let mut encoder: Option<Box<dyn Encoder>> = None;
    let first = loop {
        let batch = match rows.next().await {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                // The whole result is in hand: one body, sent with its length.
                let whole = match encoder {
                    Some(e) => Ok(e),
                    None => encode::encoder(format, schema),
                }
                .and_then(|mut e| e.finish());
                return match whole {
                    Ok(bytes) => ok(format, Body::from(bytes)),
                    Err(e) => {
                        rows.running.fail();
                        query_error(&e)
                    }
                };
            }
            Err(e) => {
                rows.running.fail();
                return query_error(&e);
            }
        };
        // The encoder follows the batches' own schema, which may be wider than the plan's (a
        // decimal's precision), so that the Arrow and Parquet schemas describe the data.
        let made = match encoder.take() {
            Some(e) => Ok(e),
            None => encode::encoder(format, &batch.schema()),
        };
        let mut e = match made {
            Ok(e) => e,
            Err(e) => {
                rows.running.fail();
                return query_error(&e);
            }
        };
        match e.batch(&batch) {
            Ok(bytes) if bytes.is_empty() => encoder = Some(e),
            Ok(bytes) => break (bytes, e),
            Err(err) => {
                rows.running.fail();
                return query_error(&err);
            }
        }
    };
    ok(format, Body::from_stream(stream_body(first, rows)))
}

/// The rest of the body after `first`: each batch encoded as the client reads, the encoder's
/// end, or an error that cuts the body off.
fn stream_body(
    first: (Bytes, Box<dyn Encoder>),
    rows: Rows,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (head, encoder) = first;
    let state = Some((Some(head), encoder, rows));
    futures::stream::unfold(state, |state| async move {
        let (head, mut encoder, mut rows) = state?;
        if let Some(head) = head {
            return Some((Ok(head), Some((None, encoder, rows))));
        }
        loop {
            let step = match rows.next().await {
                Ok(Some(batch)) => encoder.batch(&batch).map(|b| (b, false)),
                Ok(None) => encoder.finish().map(|b| (b, true)),
                Err(e) => Err(e),
            };
            match step {
                Ok((bytes, false)) if bytes.is_empty() => {}
                Ok((bytes, false)) => return Some((Ok(bytes), Some((None, encoder, rows)))),
                // The state, and with it the statement's entry, is dropped here.
                Ok((bytes, true)) if bytes.is_empty() => return None,
                Ok((bytes, true)) => return Some((Ok(bytes), None)),
                Err(e) => return Some((Err(rows.failed_midway(&e)), None)),
            }
        }
    })
}

/// The user a request's `Authorization: Basic` names, for `eddy_queries` (checked by the
/// auth layer when users are configured); empty for a token, which names no user.
fn user_name(headers: &HeaderMap) -> String {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return String::new();
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return String::new();
    }
    super::auth::base64_decode(credentials.trim())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| pair.split_once(':').map(|(user, _)| user.to_string()))
        .unwrap_or_default()
}

/// 200 with a body in `format`.
fn ok(format: Format, body: Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// The answer to a statement without rows, whatever the format asked.
fn done(completion: Completion) -> Response {
    let (command, rows) = match completion {
        Completion::Inserted(n) => ("INSERT", Some(n)),
        Completion::CreatedTable => ("CREATE TABLE", None),
        Completion::DroppedTable => ("DROP TABLE", None),
        Completion::CreatedView => ("CREATE MATERIALIZED VIEW", None),
        Completion::DroppedView => ("DROP MATERIALIZED VIEW", None),
        Completion::RefreshedView => ("REFRESH MATERIALIZED VIEW", None),
        Completion::AlteredTable => ("ALTER TABLE", None),
        Completion::CreatedSource => ("CREATE SOURCE", None),
        Completion::DroppedSource => ("DROP SOURCE", None),
        Completion::AlteredSource => ("ALTER SOURCE", None),
        Completion::CreatedIndex => ("CREATE INDEX", None),
        Completion::DroppedIndex => ("DROP INDEX", None),
    };
    let mut body = json!({"ok": true, "command": command});
    if let Some(n) = rows {
        body["rows_affected"] = json!(n);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A JSON error: `{"error": message, "kind": kind}`.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let message: String = message.into();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": message, "kind": kind}).to_string(),
    )
        .into_response()
}

/// 400 for a request that is malformed before any SQL is looked at.
fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn query_error(e: &QueryError) -> Response {
    let (status, kind) = status_and_kind(e.kind);
    error(status, kind, e.message.clone())
}

/// The HTTP status and the `kind` name of each query error kind: the statement's fault is 400,
/// except a refusal (403), a configured limit (413), the server's state (503, 507 for a full
/// disk as the write routes answer) and a bug or damaged data (500).
fn status_and_kind(kind: ErrorKind) -> (StatusCode, &'static str) {
    use ErrorKind as K;
    let bad = StatusCode::BAD_REQUEST;
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    let internal = StatusCode::INTERNAL_SERVER_ERROR;
    match kind {
        K::Syntax => (bad, "syntax"),
        K::TableNotFound => (bad, "table_not_found"),
        K::ColumnNotFound => (bad, "column_not_found"),
        K::FunctionNotFound => (bad, "function_not_found"),
        K::SchemaNotFound => (bad, "schema_not_found"),
        K::ObjectNotFound => (bad, "object_not_found"),
        K::AmbiguousColumn => (bad, "ambiguous_column"),
        K::DuplicateColumn => (bad, "duplicate_column"),
        K::AlreadyExists => (bad, "already_exists"),
        K::HasDependents => (bad, "has_dependents"),
        K::TypeMismatch => (bad, "type_mismatch"),
        K::NullValue => (bad, "null_value"),
        K::InvalidDefinition => (bad, "invalid_definition"),
        K::BeyondRetention => (bad, "beyond_retention"),
        K::InvalidParameter => (bad, "invalid_parameter"),
        K::InvalidData => (bad, "invalid_data"),
        K::InvalidTextRepresentation => (bad, "invalid_text_representation"),
        K::DivisionByZero => (bad, "division_by_zero"),
        K::InvalidEscapeSequence => (bad, "invalid_escape_sequence"),
        K::NumericOutOfRange => (bad, "numeric_out_of_range"),
        K::DatetimeOutOfRange => (bad, "datetime_out_of_range"),
        K::Grouping => (bad, "grouping"),
        K::Plan => (bad, "plan"),
        K::Unsupported => (bad, "unsupported"),
        K::TooComplex => (bad, "too_complex"),
        K::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        K::LimitExceeded => (StatusCode::PAYLOAD_TOO_LARGE, "limit_exceeded"),
        K::ResourcesExhausted => (unavailable, "resources_exhausted"),
        K::Cancelled => (unavailable, "cancelled"),
        K::ShuttingDown => (unavailable, "shutting_down"),
        K::Io => (unavailable, "io"),
        K::DiskFull => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
        K::Corrupt => (internal, "corrupt"),
        K::Internal => (internal, "internal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_of_basic_credentials() {
        let mut headers = HeaderMap::new();
        assert_eq!(user_name(&headers), "");
        // alice:s3cret
        headers.insert(
            header::AUTHORIZATION,
            "Basic YWxpY2U6czNjcmV0".parse().unwrap(),
        );
        assert_eq!(user_name(&headers), "alice");
        headers.insert(
            header::AUTHORIZATION,
            "Bearer alice:s3cret".parse().unwrap(),
        );
        assert_eq!(user_name(&headers), "");
    }

    #[test]
    fn statement_faults_are_400_and_the_servers_are_5xx() {
        assert_eq!(
            status_and_kind(ErrorKind::Syntax),
            (StatusCode::BAD_REQUEST, "syntax")
        );
        assert_eq!(
            status_and_kind(ErrorKind::TableNotFound),
            (StatusCode::BAD_REQUEST, "table_not_found")
        );
        assert_eq!(
            status_and_kind(ErrorKind::PermissionDenied).0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_and_kind(ErrorKind::Internal).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
