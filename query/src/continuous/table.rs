//! Views as tables for queries, and the `eddy_views` system table.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use eddy_storage::Db;

use super::registry::ViewRegistry;
use super::view::{ContinuousAggregate, ViewStatus};

/// The view as a table.
#[derive(Debug)]
pub struct ViewTable {
    db: Db,
    view: Arc<ContinuousAggregate>,
}

impl ViewTable {
    /// A provider over a view.
    pub fn new(db: Db, view: Arc<ContinuousAggregate>) -> Self {
        Self { db, view }
    }
}

#[async_trait::async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.output_schema().clone()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Bucket ranges prune the state before finalizing; rows are still checked above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (lo, hi) = match self.view.bucket_column() {
            Some(col) => crate::table::time_range(filters, col),
            None => (i64::MIN, i64::MAX),
        };
        let (db, view) = (self.db.clone(), self.view.clone());
        let batches = tokio::task::spawn_blocking(move || view.read(&db, lo, hi))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let schema = self.view.output_schema().clone();
        let batches = batches
            .into_iter()
            .map(|b| {
                // The final plan names columns as the query did; the view's schema is the same
                // up to field metadata and nullability, so re-wrap the columns.
                RecordBatch::try_new(schema.clone(), b.columns().to_vec())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            schema,
            projection.cloned(),
        )?)
    }
}

/// Columns of the `eddy_views` system table.
pub fn views_table(reg: &ViewRegistry) -> DfResult<RecordBatch> {
    use datafusion::arrow::array::{StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Schema};
    let views = reg.list();
    let mut status = Vec::new();
    let mut done = Vec::new();
    let mut total = Vec::new();
    let mut dirty = Vec::new();
    let mut rows = Vec::new();
    for v in &views {
        match v.status() {
            ViewStatus::Ready => {
                status.push("ready");
                done.push(0);
                total.push(0);
            }
            ViewStatus::Backfilling { done: d, total: t } => {
                status.push("backfilling");
                done.push(d);
                total.push(t);
            }
        }
        let (d, r) = v.state_sizes();
        dirty.push(d as u64);
        rows.push(r as u64);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("backfill_rows_done", DataType::UInt64, false),
        Field::new("backfill_rows_total", DataType::UInt64, false),
        Field::new("dirty_buckets", DataType::UInt64, false),
        Field::new("state_rows", DataType::UInt64, false),
        Field::new("retention", DataType::Utf8, true),
        Field::new("definition", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.name()),
            )),
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.source_name()),
            )),
            Arc::new(StringArray::from(status)),
            Arc::new(UInt64Array::from(done)),
            Arc::new(UInt64Array::from(total)),
            Arc::new(UInt64Array::from(dirty)),
            Arc::new(UInt64Array::from(rows)),
            Arc::new(StringArray::from_iter(
                views.iter().map(|v| v.def().retention.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                views.iter().map(|v| v.def().query.as_str()),
            )),
        ],
    )?)
}
