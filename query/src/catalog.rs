//! Exposes the storage catalog to DataFusion as the `public` schema of database `eddy`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use eddy_storage::Db;

use crate::table::EddyTable;

/// Name of the one database.
pub const DATABASE: &str = "eddy";
/// Name of the one schema.
pub const SCHEMA: &str = "public";

/// The tables of the storage catalog, looked up afresh on every query so new tables and new
/// columns show at once.
#[derive(Debug)]
pub struct EddySchema {
    db: Db,
}

impl EddySchema {
    /// The schema over a storage engine.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SchemaProvider for EddySchema {
    fn table_names(&self) -> Vec<String> {
        self.db.catalog().names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .db
            .catalog()
            .get(name)
            .map(|s| Arc::new(EddyTable::new(self.db.clone(), s)) as Arc<dyn TableProvider>))
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
    }
}
