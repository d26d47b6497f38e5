//! A read-only table whose rows are computed on every scan, from the scanning session (its
//! cursors) or from the catalog (its keys): the system views Eddy adds to `pg_catalog` and
//! `information_schema`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// Computes a table's rows for the session scanning it.
pub type Rows = dyn Fn(&dyn Session) -> DfResult<RecordBatch> + Send + Sync;

/// A view whose rows `rows` computes at each scan.
pub struct ComputedTable {
    schema: SchemaRef,
    rows: Box<Rows>,
}

impl ComputedTable {
    /// A view of `schema` whose rows `rows` computes.
    pub fn new(
        schema: SchemaRef,
        rows: impl Fn(&dyn Session) -> DfResult<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self {
            schema,
            rows: Box::new(rows),
        }
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
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.rows)(state)?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
