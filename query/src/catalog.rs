//! Exposes the storage catalog to DataFusion as the `public` schema of database `eddy`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use eddy_ingest::Ingest;
use eddy_storage::Db;

use crate::computed_table::ComputedTable;
use crate::continuous::{ViewRegistry, ViewTable, views_table};
use crate::running::{QUERIES_TABLE, RunningQueries};
use crate::segments::{
    INDEXES_TABLE, SEGMENTS_TABLE, indexes_schema, indexes_table, segments_schema, segments_table,
};
use crate::sources::{SOURCES_TABLE, sources_schema, sources_table};
use crate::table::EddyTable;
use eddy_ingest::sources::SourceManager;

/// Name of the system table listing continuous aggregates.
pub const VIEWS_TABLE: &str = "eddy_views";

/// Name of the one database.
pub const DATABASE: &str = "eddy";
/// Name of the one schema.
pub const SCHEMA: &str = "public";

/// The tables of the storage catalog, looked up afresh on every query so new tables and new
/// columns show at once.
#[derive(Debug)]
pub struct EddySchema {
    db: Db,
    ingest: Ingest,
    views: Arc<ViewRegistry>,
    running: Arc<RunningQueries>,
    sources: Arc<SourceManager>,
}

impl EddySchema {
    /// The schema over the write path's storage engine, its continuous aggregates and the
    /// statements running now.
    pub fn new(
        ingest: Ingest,
        views: Arc<ViewRegistry>,
        running: Arc<RunningQueries>,
        sources: Arc<SourceManager>,
    ) -> Self {
        Self {
            db: ingest.db().clone(),
            ingest,
            views,
            running,
            sources,
        }
    }
}

#[async_trait]
impl SchemaProvider for EddySchema {
    /// The user's tables and continuous aggregates. The `eddy_views` and `eddy_queries`
    /// system tables are left out: they can be queried, but catalogs listed from these names
    /// (`information_schema`, `pg_class`) would show them beside the user's tables in BI tools
    /// (Metabase, DBeaver), where PostgreSQL keeps its system views in `pg_catalog`.
    fn table_names(&self) -> Vec<String> {
        let mut names = self.db.catalog().names();
        names.extend(self.views.list().iter().map(|v| v.name().to_string()));
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(v) = self.views.get(name) {
            return Ok(Some(Arc::new(ViewTable::new(self.db.clone(), v))));
        }
        if name == VIEWS_TABLE {
            let schema = views_table(&self.views)?.schema();
            let views = self.views.clone();
            let table = ComputedTable::new(schema, move |_| views_table(&views));
            return Ok(Some(Arc::new(table)));
        }
        if name == SOURCES_TABLE {
            let sources = self.sources.clone();
            let table = ComputedTable::new(sources_schema(), move |_| sources_table(&sources));
            return Ok(Some(Arc::new(table)));
        }
        if name == SEGMENTS_TABLE {
            let db = self.db.clone();
            let table = ComputedTable::new(segments_schema(), move |_| segments_table(&db));
            return Ok(Some(Arc::new(table)));
        }
        if name == INDEXES_TABLE {
            let db = self.db.clone();
            let table = ComputedTable::new(indexes_schema(), move |_| indexes_table(&db));
            return Ok(Some(Arc::new(table)));
        }
        if name == QUERIES_TABLE {
            let running = self.running.clone();
            let table =
                ComputedTable::new(RunningQueries::table_schema(), move |_| running.table());
            return Ok(Some(Arc::new(table)));
        }
        Ok(self
            .db
            .catalog()
            .get(name)
            .map(|s| Arc::new(EddyTable::new(self.ingest.clone(), s)) as Arc<dyn TableProvider>))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "cannot register \"{name}\": tables are created with CREATE TABLE or by writing line protocol"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.db.catalog().get(name).is_some()
            || self.views.get(name).is_some()
            || name == VIEWS_TABLE
            || name == QUERIES_TABLE
            || name == SOURCES_TABLE
            || name == SEGMENTS_TABLE
            || name == INDEXES_TABLE
    }
}
