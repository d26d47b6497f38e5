//! The node's metrics: one Prometheus registry holding every crate's metrics (storage, write
//! path, statements, views, Postgres and HTTP connections), encoded for `GET /metrics`.
//!
//! Each crate owns its metrics and says what they mean where they are updated; this module
//! only gathers them, and refreshes the gauges that are read from state rather than counted
//! (memtable bytes, flush backlog, view checkpoint lag) just before each scrape.

use std::sync::Arc;

use eddy_ingest::Ingest;
use eddy_pg::PgMetrics;
use eddy_query::QueryEngine;
use eddy_query::continuous::ViewRegistry;
use eddy_storage::Db;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of a scrape: the OpenMetrics text format, which prometheus-client
/// writes (counters end in `_total`, the text ends with `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP API's connection metrics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    accepted: Counter,
    open: Gauge,
}

impl HttpMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "eddy_http_connections_accepted",
            "HTTP connections accepted",
            self.accepted.clone(),
        );
        registry.register(
            "eddy_http_connections_open",
            "HTTP connections open now",
            self.open.clone(),
        );
    }

    /// A connection was accepted: counted, and open until the guard is dropped.
    pub(crate) fn accepted(&self) -> OpenConnection {
        self.accepted.inc();
        self.open.inc();
        OpenConnection {
            open: self.open.clone(),
        }
    }
}

/// Counts one HTTP connection as open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    open: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Every metric of a node, and what refreshes the gauges read from state.
pub struct NodeMetrics {
    registry: Registry,
    db: Db,
    views: Arc<ViewRegistry>,
    /// The Postgres front end's connection metrics, for `PgFrontEnd::with_metrics`.
    pub pg: PgMetrics,
    /// The HTTP API's connection metrics.
    pub http: HttpMetrics,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// One registry over the metrics of the node's parts.
    pub fn new(
        db: &Db,
        views: &Arc<ViewRegistry>,
        ingest: &Ingest,
        query: &QueryEngine,
    ) -> NodeMetrics {
        let mut registry = Registry::default();
        let pg = PgMetrics::default();
        let http = HttpMetrics::default();
        db.metrics().register(&mut registry);
        ingest.metrics().register(&mut registry);
        query.running().metrics().register(&mut registry);
        views.metrics().register(&mut registry);
        pg.register(&mut registry);
        http.register(&mut registry);
        NodeMetrics {
            registry,
            db: db.clone(),
            views: views.clone(),
            pg,
            http,
        }
    }

    /// Every metric as of now, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.db.refresh_metrics();
        self.views.refresh_metrics();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
