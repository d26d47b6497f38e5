//! The HTTP API: InfluxDB-compatible line-protocol writes (v1 `/write`, v2 `/api/v2/write`,
//! v3 `/api/v3/write_lp`), `/health` and `/ping` (the process is alive), `/ready` (the node
//! accepts writes) and `/metrics` (Prometheus, see [`crate::metrics`]).
//!
//! The write routes are a codec over [`Ingest::write_lp`]: they decode the request (precision,
//! gzip, size) and encode its outcome. A write is acknowledged (204) only after every accepted
//! line is durable. When some lines are bad, the good ones are still written and the response
//! is 400 with a JSON body counting both and listing the first errors with their line numbers
//! (InfluxDB's partial-write behaviour). A write refused because the disk under the data
//! directory is full is answered 507 (Insufficient Storage); other storage failures 503.
//!
//! Bodies are written as they stream in (see [`body`]): a body larger than [`CHUNK_BYTES`] is
//! cut into chunks of whole lines, each written when complete, so a request holds at most one
//! chunk in memory; gzip is decompressed as it arrives too. All request bodies together hold at
//! most `http_inflight_bytes_max`; a request that finds no room is answered 503 with
//! `Retry-After` before its body is read. The number of open connections is limited too
//! (`http_connections_max`, see [`listener`]). When users are configured, every route but
//! `/health`, `/ping` and `/ready` needs credentials (see [`auth`]).
//!
//! `/api/v3/query_sql` runs one SQL statement and streams its rows back as JSON, JSON lines,
//! CSV, a text table, Parquet or Arrow IPC (see [`query`] and [`encode`]).

mod auth;
mod body;
mod encode;
mod listener;
mod query;

use std::collections::HashMap;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eddy_ingest::{FrontEnd, Ingest, Precision};
use eddy_query::QueryEngine;
use eddy_storage::Db;
use serde_json::json;

use crate::metrics::NodeMetrics;
use crate::node::Node;

pub use body::CHUNK_BYTES;

use self::body::{Budget, LineStream, Stop, Written, window_bytes};

/// Most errors listed in a partial-write response.
pub const ERRORS_LISTED_MAX: usize = 100;

/// Settings of the HTTP API.
#[derive(Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, after gzip decompression too.
    pub request_bytes_max: usize,
    /// Most bytes all request bodies may hold in memory together; a request over it gets 503
    /// with `Retry-After`. At least [`CHUNK_BYTES`].
    pub inflight_bytes_max: usize,
    /// Most HTTP connections open at once; more wait to be accepted.
    pub connections_max: usize,
    /// Users and their passwords; when there are any, requests need credentials.
    pub users: Vec<(String, String)>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_bytes_max: 64 * 1024 * 1024,
            inflight_bytes_max: 256 * 1024 * 1024,
            connections_max: 1024,
            users: Vec::new(),
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("HttpConfig")
            .field("request_bytes_max", &self.request_bytes_max)
            .field("inflight_bytes_max", &self.inflight_bytes_max)
            .field("connections_max", &self.connections_max)
            .field("users", &users)
            .finish()
    }
}

impl HttpConfig {
    /// Whether clients must give credentials (so listening beyond loopback is safe).
    pub fn requires_password(&self) -> bool {
        !self.users.is_empty()
    }

    /// Refuses settings the server cannot run with.
    pub fn check(&self) -> Result<(), String> {
        if self.inflight_bytes_max < CHUNK_BYTES {
            return Err(format!(
                "http_inflight_bytes_max must be at least {CHUNK_BYTES} (4 MiB, the most one \
                 request holds at a time)"
            ));
        }
        if self.connections_max == 0 {
            return Err("http_connections_max must be at least 1".to_string());
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    ingest: Ingest,
    db: Db,
    query: QueryEngine,
    metrics: Arc<NodeMetrics>,
    request_bytes_max: usize,
    budget: Arc<Budget>,
}

/// The router of the HTTP API, writing through the node's write path.
pub fn router(node: &Node, config: HttpConfig) -> Router {
    let state = AppState {
        ingest: node.ingest.for_front_end(FrontEnd::Http),
        db: node.db.clone(),
        query: node.query.clone(),
        metrics: node.metrics.clone(),
        request_bytes_max: config.request_bytes_max,
        budget: Budget::new(config.inflight_bytes_max),
    };
    let users = Arc::new(auth::Users::new(&config.users));
    let mut routes = Router::new()
        .route("/write", post(write))
        .route("/api/v2/write", post(write))
        .route("/api/v3/write_lp", post(write))
        .route("/api/v3/query_sql", get(query::get).post(query::post))
        .route("/metrics", get(metrics));
    if users.required() {
        // Only the routes above: /health, /ping and /ready answer anyone, as InfluxDB's
        // health checks do, so load balancers and orchestrators need no credentials.
        routes = routes.route_layer(axum::middleware::from_fn_with_state(users, auth::require));
    }
    routes
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/ping", get(ping).head(ping))
        .with_state(state)
}

/// Serves the HTTP API of `node` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener =
        listener::Limited::new(listener, config.connections_max, node.metrics.http.clone());
    // With each connection's client address, which `eddy_queries` shows for HTTP statements.
    let service = router(&node, config).into_make_service_with_connect_info::<query::ClientAddr>();
    axum::serve(listener, service)
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

/// 200 while the node accepts writes; 503 with the reason while it refuses or holds them
/// back (a full disk, a failed WAL). `/health` stays 200 meanwhile: the process is alive and
/// still answers queries, so it must not be restarted for it.
async fn ready(State(st): State<AppState>) -> Response {
    match st.db.write_stall() {
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"status": "ready"}).to_string(),
        )
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"status": "not ready", "reason": reason}).to_string(),
        )
            .into_response(),
    }
}

/// Every metric of the node, for Prometheus to scrape.
async fn metrics(State(st): State<AppState>) -> Response {
    match st.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot encode the metrics: {e}"),
        ),
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"code": code, "error": message, "message": message}).to_string(),
    )
        .into_response()
}

/// An error after part of the body may have been written: says how many lines were.
fn error_after(status: StatusCode, code: &str, message: String, lines_written: usize) -> Response {
    if lines_written == 0 {
        return error(status, code, message);
    }
    let message = format!("{message}; {lines_written} lines before it were written");
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "code": code,
            "error": message,
            "message": message,
            "lines_written": lines_written,
        })
        .to_string(),
    )
        .into_response()
}

/// 503 for a request that finds the in-flight budget spent.
fn busy(budget: &Budget) -> Response {
    let message = format!(
        "the server is busy: request bodies in flight already hold http_inflight_bytes_max \
         ({} bytes); retry after 1 second",
        budget.max()
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::RETRY_AFTER, "1"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        json!({"code": "unavailable", "error": message, "message": message}).to_string(),
    )
        .into_response()
}

/// The next piece of data of a body; trailers are skipped.
async fn next_data(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// Compressed bytes in; decompressed bytes fed to `stream` about 32 KiB at a time, so that a
/// small compressed frame never becomes a large buffer.
async fn gunzip_into(
    decoder: &mut flate2::write::GzDecoder<Vec<u8>>,
    ended: &mut bool,
    mut input: &[u8],
    stream: &mut LineStream<'_>,
) -> Result<(), Result<Stop, std::io::Error>> {
    while !input.is_empty() && !*ended {
        let n = decoder.write(input).map_err(Err)?;
        if n == 0 {
            // The gzip member has ended: what follows it is ignored, as it always was.
            *ended = true;
        }
        input = &input[n..];
        // The decoder's output buffer is taken, fed on, and given back empty.
        let mut out = std::mem::take(decoder.get_mut());
        stream.feed(&out).await.map_err(Ok)?;
        out.clear();
        *decoder.get_mut() = out;
    }
    Ok(())
}

/// The three write routes: decodes the request, writes it as it streams in, encodes the
/// outcome.
async fn write(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    mut body: Body,
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
    let max = st.request_bytes_max;
    let too_large = |what: &str| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
            format!("{what} exceeds the limit of {max} bytes"),
        )
    };
    // Refused before a byte of the body is read: too large by its Content-Length, or no room
    // in the budget.
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > max as u64) {
        return too_large("request body");
    }
    let Some(window) = st.budget.reserve(window_bytes(declared, gzip, max)) else {
        return busy(&st.budget);
    };
    let mut stream = LineStream::new(
        &st.ingest,
        precision,
        eddy_storage::time::now_ns(),
        max,
        window,
    );
    let mut decoder = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
    let mut gzip_ended = false;
    let mut received = 0usize;
    let stopped = |stop: Stop, lines_written: usize| match stop {
        Stop::TooLarge if gzip => error_after(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
            format!("decompressed body exceeds the limit of {max} bytes"),
            lines_written,
        ),
        Stop::TooLarge => error_after(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
            format!("request body exceeds the limit of {max} bytes"),
            lines_written,
        ),
        Stop::Busy => busy(&st.budget),
        // A full disk is not the server being unavailable: reads go on, and writes resume
        // once space is freed, which the client cannot make happen by retrying at once.
        Stop::Failed(e) if e.storage_error().is_disk_full() => error_after(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient storage",
            format!("write refused, nothing from this request was acknowledged: {e}"),
            lines_written,
        ),
        Stop::Failed(e) => error_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("write failed, nothing from this request was acknowledged: {e}"),
            lines_written,
        ),
    };
    let invalid_gzip = |e: std::io::Error, lines_written: usize| {
        error_after(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("invalid gzip body: {e}"),
            lines_written,
        )
    };
    loop {
        let data = match next_data(&mut body).await {
            None => break,
            Some(Ok(data)) => data,
            Some(Err(e)) => {
                return error_after(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("cannot read the request body: {e}"),
                    stream.lines_written(),
                );
            }
        };
        received = received.saturating_add(data.len());
        if received > max {
            // Only a body without Content-Length (chunked) gets here.
            return error_after(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too large",
                format!("request body exceeds the limit of {max} bytes"),
                stream.lines_written(),
            );
        }
        let fed = match decoder.as_mut() {
            None => stream.feed(&data).await.map_err(Ok),
            Some(decoder) => gunzip_into(decoder, &mut gzip_ended, &data, &mut stream).await,
        };
        match fed {
            Ok(()) => {}
            Err(Ok(stop)) => return stopped(stop, stream.lines_written()),
            Err(Err(e)) => return invalid_gzip(e, stream.lines_written()),
        }
    }
    if let Some(mut decoder) = decoder {
        // The rest of the output, and the check of the gzip trailer (CRC and length).
        if let Err(e) = decoder.try_finish() {
            return invalid_gzip(e, stream.lines_written());
        }
        let out = std::mem::take(decoder.get_mut());
        if let Err(stop) = stream.feed(&out).await {
            return stopped(stop, stream.lines_written());
        }
    }
    let lines_written_before = stream.lines_written();
    match stream.finish().await {
        Ok(written) => answer(&written),
        // `finish` writes the last chunk only, so the lines written before it are known.
        Err(stop) => stopped(stop, lines_written_before),
    }
}

/// The answer to a write whose good lines are durable: 204, or 400 listing the bad lines.
fn answer(written: &Written) -> Response {
    let Some(first) = written.listed.first() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let listed: Vec<_> = written
        .listed
        .iter()
        .map(|e| json!({"line": e.line, "message": e.message}))
        .collect();
    let message = format!(
        "partial write: {} lines rejected, {} written; first error at line {}: {}",
        written.lines_rejected, written.lines_written, first.line, first.message
    );
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "code": "invalid",
            "error": message,
            "message": message,
            "lines_written": written.lines_written,
            "lines_rejected": written.lines_rejected,
            "errors": listed,
        })
        .to_string(),
    )
        .into_response()
}
