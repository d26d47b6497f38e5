//! The HTTP API: InfluxDB-compatible line-protocol writes (v1 `/write`, v2 `/api/v2/write`,
//! v3 `/api/v3/write_lp`) and `/health`.
//!
//! The write routes are a codec over [`Ingest::write_lp`]: they decode the request (precision,
//! gzip, size) and encode its outcome. A write is acknowledged (204) only after every accepted
//! line is durable. When some lines are bad, the good ones are still written and the response
//! is 400 with a JSON body counting both and listing the first errors with their line numbers
//! (InfluxDB's partial-write behaviour).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eddy_ingest::{Ingest, LineOutcome, Precision};
use serde_json::json;

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
    ingest: Ingest,
    config: HttpConfig,
}

/// The router of the HTTP API, writing through `ingest`.
pub fn router(ingest: Ingest, config: HttpConfig) -> Router {
    let limit = config.request_bytes_max;
    Router::new()
        .route("/health", get(health))
        .route("/ping", get(ping).head(ping))
        .route("/write", post(write))
        .route("/api/v2/write", post(write))
        .route("/api/v3/write_lp", post(write))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(AppState { ingest, config })
}

/// Serves the HTTP API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Ingest,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(ingest, config).into_make_service_with_connect_info::<SocketAddr>(),
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

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"code": code, "error": message, "message": message}).to_string(),
    )
        .into_response()
}

/// The three write routes: decodes the request, writes it, encodes the outcome.
async fn write(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let precision = match q.get("precision").map(String::as_str) {
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
    match st
        .ingest
        .write_lp(&body, precision, eddy_storage::time::now_ns())
        .await
    {
        Ok(outcome) => written(&outcome),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("write failed, nothing from this request was acknowledged: {e}"),
        ),
    }
}

/// The answer to a write whose good lines are durable: 204, or 400 listing the bad lines.
fn written(outcome: &LineOutcome) -> Response {
    let Some(first) = outcome.errors.first() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let listed: Vec<_> = outcome
        .errors
        .iter()
        .take(ERRORS_LISTED_MAX)
        .map(|e| json!({"line": e.line, "message": e.message}))
        .collect();
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
