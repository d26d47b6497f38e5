//! The HTTP API: InfluxDB-compatible line-protocol writes (v1 `/write`, v2 `/api/v2/write`,
//! v3 `/api/v3/write_lp`) and `/health`.
//!
//! A write is acknowledged (204) only after every accepted line is durable. When some lines are
//! bad, the good ones are still written and the response is 400 with a JSON body counting both
//! and listing the first errors with their line numbers (InfluxDB's partial-write behaviour).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datafusion::arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use datafusion::arrow::record_batch::RecordBatch;
use eddy_storage::{Db, StorageError, TableSchema};
use serde_json::json;

use crate::lineproto::{self, LineError, Precision};

/// Most errors listed in a partial-write response.
pub const ERRORS_LISTED_MAX: usize = 100;

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, after gzip decompression too.
    pub request_bytes_max: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_bytes_max: 64 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
struct AppState {
    db: Db,
    config: HttpConfig,
}

/// The router of the HTTP API.
pub fn router(db: Db, config: HttpConfig) -> Router {
    let limit = config.request_bytes_max;
    Router::new()
        .route("/health", get(health))
        .route("/ping", get(ping).head(ping))
        .route("/write", post(write_v1))
        .route("/api/v2/write", post(write_v2))
        .route("/api/v3/write_lp", post(write_v3))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(AppState { db, config })
}

/// Serves the HTTP API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Db,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(db, config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn health() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"status": "pass", "name": "eddy", "version": env!("CARGO_PKG_VERSION")}).to_string(),
    )
        .into_response()
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn write_v1(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(st, q.get("precision").map(String::as_str), &headers, body).await
}

async fn write_v2(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(st, q.get("precision").map(String::as_str), &headers, body).await
}

async fn write_v3(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(st, q.get("precision").map(String::as_str), &headers, body).await
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"code": code, "error": message, "message": message}).to_string(),
    )
        .into_response()
}

async fn write(
    st: AppState,
    precision: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let precision = match precision {
        None | Some("") => Precision::Nanosecond,
        Some(p) => match Precision::parse(p) {
            Some(p) => p,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("invalid precision \"{p}\": use ns, us, ms, s, m or h"),
                );
            }
        },
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let gzip = match encoding.as_str() {
        "gzip" | "x-gzip" => true,
        "identity" | "" => false,
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported",
                format!("Content-Encoding \"{other}\" is not supported: send gzip or plain text"),
            );
        }
    };
    let body = if gzip {
        match gunzip(&body, st.config.request_bytes_max) {
            Ok(b) => Bytes::from(b),
            Err(GunzipError::TooLarge) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too large",
                    format!(
                        "decompressed body exceeds the limit of {} bytes",
                        st.config.request_bytes_max
                    ),
                );
            }
            Err(GunzipError::Invalid(e)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("invalid gzip body: {e}"),
                );
            }
        }
    } else {
        body
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default();
    match ingest(&st.db, &body, precision, now).await {
        Ok(outcome) if outcome.errors.is_empty() => StatusCode::NO_CONTENT.into_response(),
        Ok(outcome) => {
            let listed: Vec<_> = outcome
                .errors
                .iter()
                .take(ERRORS_LISTED_MAX)
                .map(|e| json!({"line": e.line, "message": e.message}))
                .collect();
            let first = &outcome.errors[0];
            let message = format!(
                "partial write: {} lines rejected, {} written; first error at line {}: {}",
                outcome.errors.len(),
                outcome.lines_written,
                first.line,
                first.message
            );
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                json!({
                    "code": "invalid",
                    "error": message,
                    "message": message,
                    "lines_written": outcome.lines_written,
                    "lines_rejected": outcome.errors.len(),
                    "errors": listed,
                })
                .to_string(),
            )
                .into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("write failed, nothing from this request was acknowledged: {e}"),
        ),
    }
}

/// Result of ingesting one request body.
#[derive(Debug, Default)]
pub struct IngestOutcome {
    /// Lines written durably.
    pub lines_written: usize,
    /// Lines rejected, by line number.
    pub errors: Vec<LineError>,
}

/// Parses line protocol and writes it: schema on write, then one durable write per table.
/// A table whose rows cannot be written (its schema changed in a conflicting way meanwhile)
/// has all its lines reported as rejected; a storage failure is returned as an error.
pub async fn ingest(
    db: &Db,
    body: &[u8],
    precision: Precision,
    now: i64,
) -> Result<IngestOutcome, StorageError> {
    let parsed = lineproto::parse(body, precision, now, db.catalog());
    let mut outcome = IngestOutcome {
        lines_written: 0,
        errors: parsed.errors,
    };
    for rows in parsed.tables {
        let schema = match db.catalog().ensure_columns(&rows.table, &rows.columns) {
            Ok(s) => s,
            Err(
                e @ (StorageError::TypeConflict { .. } | StorageError::InvalidSchema { .. })
                | e @ StorageError::LimitExceeded(_),
            ) => {
                let message = e.to_string();
                outcome
                    .errors
                    .extend(rows.lines.iter().map(|&line| LineError {
                        line,
                        message: message.clone(),
                    }));
                continue;
            }
            Err(e) => return Err(e),
        };
        let lines = rows.lines.clone();
        let batch = match rows.into_batch(&schema) {
            Ok(b) => b,
            Err(message) => {
                outcome.errors.extend(lines.iter().map(|&line| LineError {
                    line,
                    message: message.clone(),
                }));
                continue;
            }
        };
        let (batch, lines) = match drop_expired(db, &schema, batch, lines, &mut outcome.errors) {
            Ok(kept) => kept,
            Err(e) => return Err(e.into()),
        };
        if lines.is_empty() {
            continue;
        }
        match db.write_to(&schema, batch).await {
            Ok(_) => outcome.lines_written += lines.len(),
            Err(e @ StorageError::TypeConflict { .. }) => {
                let message = e.to_string();
                outcome.errors.extend(lines.iter().map(|&line| LineError {
                    line,
                    message: message.clone(),
                }));
            }
            Err(e) => return Err(e),
        }
    }
    outcome.errors.sort_by_key(|e| e.line);
    Ok(outcome)
}

/// Removes the rows older than the table's retention, reporting their lines; returns the rest.
fn drop_expired(
    db: &Db,
    schema: &TableSchema,
    batch: RecordBatch,
    lines: Vec<usize>,
    errors: &mut Vec<LineError>,
) -> Result<(RecordBatch, Vec<usize>), datafusion::arrow::error::ArrowError> {
    let floor = db.retention_floor(schema);
    if floor == i64::MIN {
        return Ok((batch, lines));
    }
    let Some(times) = batch
        .column(schema.time_index())
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
    else {
        return Ok((batch, lines));
    };
    if times.values().iter().all(|&t| t >= floor) {
        return Ok((batch, lines));
    }
    let keep: BooleanArray = times.values().iter().map(|&t| Some(t >= floor)).collect();
    let retention = schema
        .def()
        .retention_ns
        .or_else(|| {
            db.catalog()
                .get(schema.name())
                .and_then(|t| t.def().retention_ns)
        })
        .unwrap_or_default();
    let message = format!(
        "table \"{}\" keeps {}: rows before {} are rejected",
        schema.name(),
        eddy_storage::db::describe_span(retention),
        eddy_storage::db::rfc3339(floor)
    );
    let mut kept_lines = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        if keep.value(i) {
            kept_lines.push(line);
        } else {
            errors.push(LineError {
                line,
                message: message.clone(),
            });
        }
    }
    let batch = datafusion::arrow::compute::filter_record_batch(&batch, &keep)?;
    Ok((batch, kept_lines))
}

enum GunzipError {
    TooLarge,
    Invalid(std::io::Error),
}

fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(body).take(max as u64 + 1);
    dec.read_to_end(&mut out).map_err(GunzipError::Invalid)?;
    if out.len() > max {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}
