//! One Eddy node: opens storage, then the continuous aggregates, then the write path over
//! both, then the query engine, in that order, so that no front end can write before the views
//! are restored and every write goes through view maintenance.

use std::sync::Arc;

use eddy_ingest::Ingest;
use eddy_query::QueryEngine;
use eddy_query::continuous::ViewRegistry;
use eddy_storage::{Db, StorageConfig};

use crate::metrics::NodeMetrics;

/// The parts of a running node, each a cheap handle.
#[derive(Clone)]
pub struct Node {
    /// The storage engine.
    pub db: Db,
    /// The continuous aggregates (the storage commit hook).
    pub views: Arc<ViewRegistry>,
    /// The write path; every front end writes through it.
    pub ingest: Ingest,
    /// The SQL engine; every front end queries through it.
    pub query: QueryEngine,
    /// Every metric of the node, served at `GET /metrics`.
    pub metrics: Arc<NodeMetrics>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens a node: storage (replaying the WAL), the views (from their checkpoint or their
    /// sources), the write path, the query engine. The error says which step failed.
    pub async fn open(
        storage: StorageConfig,
        query_memory_bytes_max: usize,
    ) -> Result<Node, String> {
        let data_dir = storage.data_dir.clone();
        let db = tokio::task::spawn_blocking(move || Db::open(storage))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot open data directory: {e}"))?;
        let report = db.recovery_report();
        tracing::info!(
            data_dir = %data_dir.display(),
            replayed = report.records_replayed,
            torn_bytes_cut = report.torn_bytes_cut,
            "storage open"
        );
        // Continuous aggregates are rebuilt before anything can write.
        let views = ViewRegistry::open(db.clone())
            .await
            .map_err(|e| format!("cannot restore continuous aggregates: {e}"))?;
        let ingest = Ingest::new(db.clone(), views.clone());
        let mut query = QueryEngine::open(ingest.clone(), views.clone(), query_memory_bytes_max)
            .map_err(|e| format!("cannot start the query engine: {e}"))?;
        // PostgreSQL's catalog tables and functions are there for every session; other front
        // ends ignore them.
        eddy_pg::catalog::install(&mut query)
            .await
            .map_err(|e| format!("cannot set up pg_catalog: {e}"))?;
        let metrics = Arc::new(NodeMetrics::new(&db, &views, &ingest, &query));
        Ok(Node {
            db,
            views,
            ingest,
            query,
            metrics,
        })
    }
}
