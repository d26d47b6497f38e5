//! `information_schema` as PostgreSQL clients read it. DataFusion's own provider builds the
//! tables; this one rewrites `columns.data_type` from Arrow names (`Float64`, `Utf8`) to
//! PostgreSQL's (`double precision`, `text`), which Grafana's query builder, Metabase and
//! psycopg-based tools match on to offer time filters and numeric aggregates.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

/// The `information_schema` schema of the `eddy` catalog.
#[derive(Debug)]
pub struct PgInformationSchema {
    inner: InformationSchemaProvider,
}

impl PgInformationSchema {
    /// The schema over every catalog of `catalogs`.
    pub fn new(catalogs: Arc<dyn CatalogProviderList>) -> Self {
        Self {
            inner: InformationSchemaProvider::new(catalogs),
        }
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(t) = self.inner.table(name).await? else {
            return Ok(None);
        };
        if name == "columns" {
            return Ok(Some(Arc::new(PgColumns { inner: t })));
        }
        Ok(Some(t))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `information_schema.columns` with PostgreSQL type names.
#[derive(Debug)]
struct PgColumns {
    inner: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for PgColumns {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
        let schema = self.inner.schema();
        let col = schema.index_of("data_type")?;
        let batches = batches
            .into_iter()
            .map(|b| {
                let names = datafusion::common::cast::as_string_array(b.column(col))?;
                let pg: StringArray = names.iter().map(|n| n.map(pg_type_name)).collect();
                let mut cols: Vec<ArrayRef> = b.columns().to_vec();
                cols[col] = Arc::new(pg);
                Ok(RecordBatch::try_new(b.schema(), cols)?)
            })
            .collect::<DfResult<Vec<_>>>()?;
        MemTable::try_new(schema, vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// PostgreSQL's `information_schema` name of the type DataFusion prints as `arrow`.
fn pg_type_name(arrow: &str) -> String {
    let Ok(t) = arrow.parse::<DataType>() else {
        return arrow.to_string();
    };
    match t {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Interval(_) | DataType::Duration(TimeUnit::Nanosecond) => "interval",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "ARRAY",
        DataType::Dictionary(_, v) => return pg_type_name(&v.to_string()),
        _ => return arrow.to_string(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::pg_type_name;

    #[test]
    fn arrow_names_become_postgresql_names() {
        for (arrow, pg) in [
            ("Timestamp(ns)", "timestamp without time zone"),
            ("Timestamp(Nanosecond, None)", "timestamp without time zone"),
            ("Float64", "double precision"),
            ("Utf8", "text"),
            ("Int64", "bigint"),
            ("Boolean", "boolean"),
        ] {
            assert_eq!(pg_type_name(arrow), pg, "{arrow}");
        }
    }
}
