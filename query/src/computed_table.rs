//! A read-only table whose rows are computed on every scan: Eddy's system tables
//! (`eddy_views`) and the catalog views the Postgres front end adds (`pg_class`, `pg_cursors`,
//! `information_schema`'s key tables). One mechanism for all of them, so a new system table is
//! a schema and a function, not another `TableProvider`.
//!
//! Rows are computed at scan time, not when the table is looked up, so a statement sees the
//! catalog as it is when it runs.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;

/// Computes a table's rows for the session scanning it.
pub type Rows = dyn Fn(&dyn Session) -> BoxFuture<'static, DfResult<RecordBatch>> + Send + Sync;

/// A table whose rows a function computes at each scan.
pub struct ComputedTable {
    schema: SchemaRef,
    table_type: TableType,
    rows: Box<Rows>,
}

impl ComputedTable {
    /// A view of `schema` whose rows `rows` computes from the scanning session.
    pub fn new(
        schema: SchemaRef,
        rows: impl Fn(&dyn Session) -> DfResult<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self::new_async(schema, move |session| {
            let batch = rows(session);
            Box::pin(std::future::ready(batch))
        })
    }

    /// A view of `schema` whose rows take waiting to compute (a catalog snapshot).
    pub fn new_async(
        schema: SchemaRef,
        rows: impl Fn(&dyn Session) -> BoxFuture<'static, DfResult<RecordBatch>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            schema,
            table_type: TableType::View,
            rows: Box::new(rows),
        }
    }

    /// The same table reported as another type (PostgreSQL lists `pg_class` as a table).
    pub fn with_table_type(mut self, table_type: TableType) -> Self {
        self.table_type = table_type;
        self
    }
}

impl std::fmt::Debug for ComputedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputedTable")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for ComputedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.table_type
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.rows)(state).await?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
