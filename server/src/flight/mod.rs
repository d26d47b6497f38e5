//! Arrow Flight SQL: queries answered as Arrow record batches over gRPC, for clients that want
//! columns rather than rows (ADBC, pyarrow, polars, DuckDB through ADBC, the Flight SQL JDBC
//! driver, Grafana's Flight SQL data source), and bulk ingest of Arrow data.
//!
//! It is a codec like the other front ends: statements run through `eddy-query` (on its
//! threads, listed in `eddy_queries`, cancellable with `pg_cancel_backend`), writes go through
//! `eddy-ingest`, and query error kinds become gRPC codes in one place ([`status`]). The parts:
//!
//! - [`front`]: the gRPC service; credentials on every call ([`auth`]), plain Flight routing;
//! - [`service`]: the Flight SQL commands; [`statements`] runs one statement and streams its
//!   rows; [`prepared`] keeps prepared statements; [`tickets`] says what ticket bytes mean;
//! - [`metadata`]: `GetSqlInfo`, catalogs, schemas, tables, types, keys;
//! - [`ingest`]: `DoPut` uploads; [`plain`]: SQL tickets, paths and `ListFlights`;
//! - [`endpoints`]: a large scan answered as several endpoints, one per time slice.
//!
//! Limits: every gRPC message is at most [`FlightConfig::message_bytes_max`] (a larger one is
//! refused by gRPC with `ResourceExhausted`; results are sent in messages of about 2 MiB
//! whatever their size), at most [`FlightConfig::prepared_statements_max`] prepared
//! statements are kept, at most [`TOKENS_MAX`] login tokens, at most [`PARAMETER_ROWS_MAX`]
//! parameter rows per bind. At shutdown, calls in progress get [`SHUTDOWN_GRACE`] to finish.

mod auth;
mod endpoints;
mod front;
mod ingest;
mod metadata;
mod plain;
mod prepared;
mod service;
mod statements;
mod status;
mod tickets;

use std::path::PathBuf;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use eddy_ingest::FrontEnd;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::node::Node;

pub use auth::TOKENS_MAX;
pub use prepared::PARAMETER_ROWS_MAX;

/// Default of [`FlightConfig::message_bytes_max`]: 64 MiB, room for a large ingest batch.
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Default of [`FlightConfig::prepared_statements_max`]: JDBC prepares every statement, so
/// this is sized for many clients that never close theirs (a plan is a few kilobytes).
pub const PREPARED_STATEMENTS_MAX: usize = 10_000;

/// How long calls in progress at shutdown may go on before they are cut off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings of the Flight SQL front end.
#[derive(Clone)]
pub struct FlightConfig {
    /// Users and their passwords (the Postgres front end's); when there are any, every call
    /// needs credentials.
    pub users: Vec<(String, String)>,
    /// PEM certificate chain and private key; when set, the server speaks only TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest gRPC message received or sent.
    pub message_bytes_max: usize,
    /// Most prepared statements kept at once; preparing one more forgets the least recently
    /// used.
    pub prepared_statements_max: usize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            users: Vec::new(),
            tls: None,
            message_bytes_max: MESSAGE_BYTES_MAX,
            prepared_statements_max: PREPARED_STATEMENTS_MAX,
        }
    }
}

impl std::fmt::Debug for FlightConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("FlightConfig")
            .field("users", &users)
            .field("tls", &self.tls)
            .field("message_bytes_max", &self.message_bytes_max)
            .field("prepared_statements_max", &self.prepared_statements_max)
            .finish()
    }
}

impl FlightConfig {
    /// Whether clients must give credentials (so listening beyond loopback is safe).
    pub fn requires_password(&self) -> bool {
        !self.users.is_empty()
    }

    /// Refuses settings the server cannot run with: reads and checks the TLS certificate and
    /// key, so a bad file stops the server at start-up rather than leaving Flight down.
    pub fn check(&self) -> Result<(), String> {
        if self.message_bytes_max < 1 << 20 {
            return Err("the Flight message limit must be at least 1 MiB".to_string());
        }
        if self.prepared_statements_max == 0 {
            return Err("the Flight prepared statement limit must be at least 1".to_string());
        }
        builder(self).map(|_| ()).map_err(|e| chain(&e))
    }
}

/// Why the Flight SQL server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A TLS file could not be read.
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    ReadTls {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is not usable.
    #[error("invalid TLS certificate or key for Flight SQL")]
    Tls(#[source] tonic::transport::Error),
    /// The gRPC server failed.
    #[error("the Flight SQL server failed")]
    Transport(#[source] tonic::transport::Error),
}

/// An error with its chain of causes, for people (tonic's own messages are terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// The gRPC server, with TLS when configured.
fn builder(config: &FlightConfig) -> Result<Server, ServeError> {
    let server = Server::builder().tcp_nodelay(true);
    let Some((cert, key)) = &config.tls else {
        return Ok(server);
    };
    let read = |what: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| ServeError::ReadTls {
            what,
            path: path.clone(),
            source,
        })
    };
    let identity = Identity::from_pem(read("certificate", cert)?, read("key", key)?);
    server
        .tls_config(ServerTlsConfig::new().identity(identity))
        .map_err(ServeError::Tls)
}

/// Serves Flight SQL on `listener` over the node until `shutdown` resolves; calls in progress
/// then get [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    config: FlightConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut server = builder(&config)?;
    let uploads = ingest::Uploads {
        ingest: node.ingest.for_front_end(FrontEnd::Flight),
        views: node.views.clone(),
    };
    let sql = service::FlightSql::new(node.query.clone(), uploads, config.prepared_statements_max);
    let front = front::FlightFront::new(auth::Auth::new(&config.users), sql);
    let service = FlightServiceServer::new(front)
        .max_decoding_message_size(config.message_bytes_max)
        .max_encoding_message_size(config.message_bytes_max);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(());
    };
    let serving = server
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(serving);
    // A result still streaming, or an idle client connection, would hold the graceful
    // shutdown open; past the grace period the server stops without them.
    let grace = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        served = &mut serving => served.map_err(ServeError::Transport),
        () = grace => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "Flight SQL calls still running at shutdown were cut off"
            );
            Ok(())
        }
    }
}
